/*
 * ap_chain.h - the ledger's chainer (migrations/0010_ledger.sql): a thread
 * of the approver, on its own PostgreSQL connection, that moves queued
 * ledger entries into the ledger, numbered and hash-chained (sl_ledger.h),
 * in order, at most AP_CHAIN_BATCH in a transaction, shortly after they
 * commit (it looks every AP_CHAIN_IDLE_MS when the queue is empty). One
 * chainer of a deployment works at a time (an advisory lock held by the
 * transaction); the others find it taken and wait their turn.
 */
#ifndef AP_CHAIN_H
#define AP_CHAIN_H

#include "sl_common.h"
#include "sl_keys.h"

#include <libpq-fe.h>

#define AP_CHAIN_BATCH 1000
#define AP_CHAIN_IDLE_MS 200
/* With a signing key it signs a checkpoint this often while the ledger
 * grows (shared/sl_ledger.h). */
#define AP_CHECKPOINT_MS 10000

typedef struct ap_chain ap_chain;

/* Starts the thread; signer (borrowed; NULL: no checkpoints) signs the
 * checkpoints. NULL with the reason in errbuf. */
ap_chain *ap_chain_start(const char *database_url, const sl_signer *signer, char *errbuf,
                         size_t errsize);

/* Stops it (a batch in progress is finished or rolled back) and frees it;
 * NULL is fine. */
void ap_chain_stop(ap_chain *c);

/* One batch on conn: the entries chained in *n (0 when another chainer
 * holds the lock or the queue is empty); then, when signer is given, a
 * checkpoint of the ledger if it grew since the last (*signed_ says). */
sl_status ap_chain_batch(PGconn *conn, const sl_signer *signer, int *n, bool *signed_, char *errbuf,
                         size_t errsize);

#endif
