/*
 * sl_outbox.h - the transactional outbox and the consumer inbox.
 *
 * A state change and the events it causes are written in one PostgreSQL
 * transaction (sl_outbox_put, or the writer's own statement). Once it has
 * committed, the writer hands the rows it wrote to its process's relay
 * (sl_relay.h), which publishes them at once and marks them sent when
 * Kafka has them; the publishing relay (sl_outbox_relay here, one pass)
 * publishes, in id order, every other unsent row: those written without a
 * writer to publish them, and those whose writer did not get them
 * delivered within their lease. A consumer records each event it consumed (sl_inbox_claim) in the
 * transaction of the event's effect, so a redelivered event has no second
 * effect.
 */
#ifndef SL_OUTBOX_H
#define SL_OUTBOX_H

#include "sl_common.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

/* Adds event to the outbox for topic, keyed by key, in the caller's
 * transaction, with a lease (SL_OUTBOX_LEASE): *row gets the row (id,
 * topic, key, payload), which the caller hands to sl_relay_publish() once
 * the transaction has committed, as every writer of the outbox does. The
 * event is not stolen. */
sl_status sl_outbox_put(PGconn *conn, const char *topic, const char *key, const json_t *event,
                        PGresult **row, char *errbuf, size_t errsize);

/*
 * How long a row its writer publishes (sl_relay_publish) is left to it: the
 * publishing relay takes the row only once this is over - its writer
 * stopped before the row was delivered, or Kafka did not take it. The
 * writer's statement sets the row's relay_after to now() + interval
 * SL_OUTBOX_LEASE; a row whose relay_after is NULL is the relay's at once.
 */
#define SL_OUTBOX_LEASE "10 seconds"

/*
 * Publishes up to max unsent outbox rows that no writer holds (relay_after
 * NULL or past), oldest first, and marks the delivered ones sent; *sent
 * receives their count. Concurrent relays skip each other's rows. Returns
 * SL_RETRY when Kafka or PostgreSQL failed (the rows not delivered stay
 * unsent and are tried again).
 */
sl_status sl_outbox_relay(PGconn *conn, rd_kafka_t *producer, int max, int *sent, char *errbuf,
                          size_t errsize);

/* How long sent outbox rows and processed_events rows are kept. An event
 * is not redelivered after Kafka's default retention of 7 days, so its
 * processed_events row is no longer needed then. */
#define SL_OUTBOX_KEEP_SENT "1 hour"
#define SL_INBOX_KEEP "7 days"

/*
 * Deletes sent outbox rows written more than SL_OUTBOX_KEEP_SENT ago and
 * processed_events rows older than SL_INBOX_KEEP, in batches, so that the
 * tables stop growing with the number of runs. Rows never sent are kept.
 * *outbox and *inbox receive the numbers deleted.
 */
sl_status sl_outbox_prune(PGconn *conn, long *outbox, long *inbox, char *errbuf, size_t errsize);

/*
 * Records that consumer processed event_id, in the caller's transaction.
 * *fresh is false when it had been processed already (then the caller rolls
 * back and skips the event).
 */
sl_status sl_inbox_claim(PGconn *conn, const char *consumer, const char *event_id, bool *fresh,
                         char *errbuf, size_t errsize);

#endif
