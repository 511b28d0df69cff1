/*
 * ap_decide.c - decisions queued by the HTTP threads, resolved in batches
 * on one thread and connection.
 */
#include "ap_decide.h"
#include "sl_db.h"
#include "sl_log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

struct ap_decider {
	pthread_t thread;
	bool started;
	sl_queue jobs;
	atomic_long batches;
	char *url;
	ap_store store;
};

static void fail(ap_decide_job *job, sl_status st, const char *why)
{
	job->v.out = NULL;
	job->v.st = st;
	snprintf(job->v.err, sizeof(job->v.err), "%s", why);
	job->done(job);
}

/* The decider's connection plans its two statements once: the locking
 * read's plan for a list of ids is the same probes of the keys whatever the
 * ids, but PostgreSQL's estimate for a generic plan (10 ids) costs more than
 * for one or two, so it planned the read anew for every batch (270 us each,
 * pg_stat_statements). */
#define DECIDER_OPTIONS SL_DB_KEY_LOOKUPS " -c plan_cache_mode=force_generic_plan"

/* Connects the decider's store when it has no working connection. */
static sl_status ready(ap_decider *dc, char *errbuf, size_t errsize)
{
	if (!dc->store.db) {
		dc->store.db = sl_db_connect_with(dc->url, DECIDER_OPTIONS, errbuf, errsize);
		return dc->store.db ? SL_OK : SL_RETRY;
	}
	return sl_db_ensure(dc->store.db, errbuf, errsize);
}

/* Resolves n jobs in one batch and answers each. */
static void resolve(ap_decider *dc, ap_decide_job **jobs, size_t n)
{
	ap_resolution v[AP_RESOLVE_BATCH];
	char errbuf[256];

	if (ready(dc, errbuf, sizeof(errbuf))) {
		sl_warn("decisions: %s", errbuf);
		for (size_t i = 0; i < n; i++)
			fail(jobs[i], SL_RETRY, errbuf);
		return;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = jobs[i]->v;
	ap_store_resolve_many(&dc->store, v, n);
	atomic_fetch_add(&dc->batches, 1);
	for (size_t i = 0; i < n; i++) {
		jobs[i]->v = v[i];
		jobs[i]->done(jobs[i]);
	}
}

static void *decider_main(void *arg)
{
	ap_decider *dc = arg;
	sl_queue_node *taken[AP_RESOLVE_BATCH], *left;
	ap_decide_job *jobs[AP_RESOLVE_BATCH];
	size_t n;

	while ((n = sl_queue_pop(&dc->jobs, taken, AP_RESOLVE_BATCH, true, NULL)) > 0) {
		for (size_t i = 0; i < n; i++)
			jobs[i] = sl_queue_entry(taken[i], ap_decide_job, node);
		resolve(dc, jobs, n);
	}
	/* stopping: what was queued before is still resolved */
	left = sl_queue_take_all(&dc->jobs);
	while (left) {
		for (n = 0; left && n < AP_RESOLVE_BATCH; left = left->next)
			jobs[n++] = sl_queue_entry(left, ap_decide_job, node);
		resolve(dc, jobs, n);
	}
	return NULL;
}

ap_decider *ap_decider_start(const char *database_url, const ap_store *settings, char *errbuf,
                             size_t errsize)
{
	ap_decider *dc = sl_calloc(1, sizeof(*dc));

	sl_queue_init(&dc->jobs, NULL, NULL);
	dc->url = sl_strdup(database_url);
	dc->store = *settings;
	dc->store.db = NULL;
	if (pthread_create(&dc->thread, NULL, decider_main, dc)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot start the decision thread");
		ap_decider_free(dc);
		return NULL;
	}
	dc->started = true;
	return dc;
}

void ap_decider_submit(ap_decider *dc, ap_decide_job *job)
{
	if (!sl_queue_push(&dc->jobs, &job->node, NULL))
		fail(job, SL_RETRY, "the approver is stopping");
}

long ap_decider_batches(ap_decider *dc)
{
	return atomic_load(&dc->batches);
}

void ap_decider_stop(ap_decider *dc)
{
	if (!dc)
		return;
	sl_queue_close(&dc->jobs);
	if (dc->started)
		pthread_join(dc->thread, NULL);
	dc->started = false;
}

void ap_decider_free(ap_decider *dc)
{
	if (!dc)
		return;
	if (dc->store.db)
		PQfinish(dc->store.db);
	sl_queue_destroy(&dc->jobs);
	free(dc->url);
	free(dc);
}
