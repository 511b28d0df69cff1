/*
 * sl_outbox.h - the transactional outbox and the consumer inbox.
 *
 * A state change and the events it causes are written in one PostgreSQL
 * transaction (sl_outbox_put); the relay (sl_outbox_relay) publishes unsent
 * rows in id order with an idempotent producer and marks them sent. A
 * consumer records each event it consumed (sl_inbox_claim) in the
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
 * transaction. The event is not stolen. Once the transaction has committed,
 * sl_relay_wake() has it published at once. */
sl_status sl_outbox_put(PGconn *conn, const char *topic, const char *key, const json_t *event,
                        char *errbuf, size_t errsize);

/*
 * Publishes up to max unsent outbox rows, oldest first, and marks the
 * delivered ones sent; *sent receives their count. Concurrent relays skip
 * each other's rows. Returns SL_RETRY when Kafka or PostgreSQL failed (the
 * rows not delivered stay unsent and are tried again).
 */
sl_status sl_outbox_relay(PGconn *conn, rd_kafka_t *producer, int max, int *sent, char *errbuf,
                          size_t errsize);

/*
 * A relay thread: publishes the outbox when woken (sl_relay_wake) and every
 * poll_ms (SLUICE_RELAY_POLL_MS) anyway, on its own PostgreSQL connection
 * and its own idempotent producer. Of all the relays of a deployment one
 * publishes at a time (it holds an advisory lock and LISTENs on
 * sluice_outbox); the others stand by, pass their process's wakes on to it
 * as a NOTIFY, and take over within poll_ms when its connection ends. It
 * reconnects after failures. Returns NULL with the reason in errbuf.
 */
typedef struct sl_relay sl_relay;
struct sl_config;
/* The relay also prunes (sl_outbox_prune) this often. */
#define SL_PRUNE_INTERVAL_MS (60 * 1000)

sl_relay *sl_relay_start(const struct sl_config *cfg, int poll_ms, char *errbuf, size_t errsize);
/* The range of SLUICE_RELAY_POLL_MS. */
#define SL_RELAY_POLL_MS_MIN 10
#define SL_RELAY_POLL_MS_MAX 3600000
/* Publishes what is left, stops the thread and frees it; NULL is fine. */
void sl_relay_stop(sl_relay *r);

/*
 * Says that a transaction that wrote outbox rows has committed, so that the
 * publishing relay, in this process or another, publishes them now. Call it
 * after the commit, never before. It only counts the wake (an eventfd), so
 * any thread may call it; NULL is fine.
 */
void sl_relay_wake(sl_relay *r);

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
