/*
 * ap_decide.h - the decisions of the HTTP API, resolved in batches: HTTP
 * threads queue them and go back to serving; one thread with its own
 * connection takes what is queued (up to AP_RESOLVE_BATCH) and resolves it
 * in one transaction (ap_store_resolve_many), so that concurrent decisions
 * share round trips and a commit.
 */
#ifndef AP_DECIDE_H
#define AP_DECIDE_H

#include "ap_store.h"
#include "sl_queue.h"

typedef struct ap_decider ap_decider;

/* A queued decision. The caller owns it (and what v points to) until done
 * is called, on the decider's thread, with v's outcome filled in. */
typedef struct ap_decide_job {
	ap_resolution v;
	void (*done)(struct ap_decide_job *job);
	sl_queue_node node; /* zeroed by the caller; the decider's */
} ap_decide_job;

/* Starts the decider thread; settings gives the store's source and topics
 * (its connection is the decider's own, made on the first batch). NULL
 * with the reason in errbuf. */
ap_decider *ap_decider_start(const char *database_url, const ap_store *settings, char *errbuf,
                             size_t errsize);

/* Queues job. Once the decider is stopping, job is answered at once with
 * SL_RETRY. */
void ap_decider_submit(ap_decider *dc, ap_decide_job *job);

/* Batches resolved so far (for /metrics). */
long ap_decider_batches(ap_decider *dc);

/* Resolves what is queued, then stops the thread; later jobs are answered
 * at once with SL_RETRY. NULL is fine. */
void ap_decider_stop(ap_decider *dc);

/* Frees a stopped decider (after nothing can submit any more); NULL is fine. */
void ap_decider_free(ap_decider *dc);

#endif
