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
 * producer. Every relay marks sent the rows its process's writers handed it
 * (sl_relay_publish) once Kafka has them. Of all the relays of a deployment
 * one also publishes the rest of the outbox (it holds an advisory lock and
 * LISTENs on sluice_outbox), when woken (sl_relay_wake) and every poll_ms
 * (SLUICE_RELAY_POLL_MS) anyway; the others stand by, pass their process's
 * wakes on to it as a NOTIFY, and take over within poll_ms when its
 * connection ends. It reconnects after failures. Returns NULL with the
 * reason in errbuf.
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

/*
 * Says that a transaction that wrote outbox rows without a lease has
 * committed, so that the publishing relay, in this process or another,
 * publishes them now. Call it after the commit, never before. It only
 * counts the wake (an eventfd), so any thread may call it; NULL is fine.
 */
void sl_relay_wake(sl_relay *r);

#endif
