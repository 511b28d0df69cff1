/*
 * sl_relay.h - the relay thread of each process that writes outbox rows
 * (sl_outbox.h): what its writers hand it goes out at once, and one relay
 * of a deployment publishes the rest.
 */
#ifndef SL_RELAY_H
#define SL_RELAY_H

#include "sl_outbox.h"

/*
 * A relay thread, on its own PostgreSQL connection and its own idempotent
 * producer. There is one way to publish: every writer of the outbox leases
 * its rows (SL_OUTBOX_LEASE) and hands them, once committed, to its
 * process's relay (sl_relay_publish), which marks each sent once Kafka has
 * it. Of all the relays of a deployment one also publishes the rest of the
 * outbox - rows whose writer stopped, or that Kafka did not take, once
 * their lease is over - every poll_ms (SLUICE_RELAY_POLL_MS) and when a
 * NOTIFY on sluice_outbox comes (it holds an advisory lock and LISTENs);
 * the others stand by and take over within poll_ms when its connection
 * ends. It reconnects after failures. Returns NULL with the reason in
 * errbuf.
 */
typedef struct sl_relay sl_relay;
struct sl_config;
/* The relay also prunes (sl_outbox_prune) this often. */
#define SL_PRUNE_INTERVAL_MS (60 * 1000)

sl_relay *sl_relay_start(const struct sl_config *cfg, int poll_ms, char *errbuf, size_t errsize);
/* Publishes what is left, waits up to 5 s for what was handed to it to be
 * delivered and marks it sent, stops the thread and frees it; NULL is
 * fine. */
void sl_relay_stop(sl_relay *r);

/*
 * Publishes now the outbox rows of a transaction that has committed on
 * conn (which is out of any transaction, asserted), rows its writer wrote
 * with a lease (SL_OUTBOX_LEASE): each row of res holds, from column col
 * on, the outbox row's id, topic, key and payload (a row whose id is NULL
 * is skipped). The messages are copied; the relay marks each sent once
 * Kafka has it. One Kafka does not take stays unsent, and the publishing
 * relay takes it when its lease is over. Any thread may call it; with r
 * NULL nothing is published before the lease is over.
 */
void sl_relay_publish(sl_relay *r, PGconn *conn, const PGresult *res, int col);

#endif
