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
	pthread_mutex_t lock;
	pthread_cond_t wake;
	ap_decide_job *head, **tail; /* FIFO */
	bool stop;
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

static void *decider_main(void *arg)
{
	ap_decider *dc = arg;
	ap_decide_job *jobs[AP_RESOLVE_BATCH];
	ap_resolution v[AP_RESOLVE_BATCH];

	for (;;) {
		char errbuf[256];
		size_t n = 0;

		pthread_mutex_lock(&dc->lock);
		while (!dc->head && !dc->stop)
			pthread_cond_wait(&dc->wake, &dc->lock);
		while (dc->head && n < AP_RESOLVE_BATCH) {
			jobs[n++] = dc->head;
			dc->head = dc->head->next;
		}
		if (!dc->head)
			dc->tail = &dc->head;
		pthread_mutex_unlock(&dc->lock);
		if (n == 0)
			break; /* stopping, and nothing is left */
		if (ready(dc, errbuf, sizeof(errbuf))) {
			sl_warn("decisions: %s", errbuf);
			for (size_t i = 0; i < n; i++)
				fail(jobs[i], SL_RETRY, errbuf);
			continue;
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
	return NULL;
}

ap_decider *ap_decider_start(const char *database_url, const ap_store *settings, char *errbuf,
                             size_t errsize)
{
	ap_decider *dc = sl_calloc(1, sizeof(*dc));

	pthread_mutex_init(&dc->lock, NULL);
	pthread_cond_init(&dc->wake, NULL);
	dc->tail = &dc->head;
	dc->url = sl_strdup(database_url);
	dc->store = *settings;
	dc->store.db = NULL;
	if (pthread_create(&dc->thread, NULL, decider_main, dc)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot start the decision thread");
		dc->stop = true; /* nothing to join */
		ap_decider_free(dc);
		return NULL;
	}
	return dc;
}

void ap_decider_submit(ap_decider *dc, ap_decide_job *job)
{
	pthread_mutex_lock(&dc->lock);
	if (dc->stop) {
		pthread_mutex_unlock(&dc->lock);
		fail(job, SL_RETRY, "the approver is stopping");
		return;
	}
	job->next = NULL;
	*dc->tail = job;
	dc->tail = &job->next;
	pthread_cond_signal(&dc->wake);
	pthread_mutex_unlock(&dc->lock);
}

long ap_decider_batches(ap_decider *dc)
{
	return atomic_load(&dc->batches);
}

void ap_decider_stop(ap_decider *dc)
{
	bool running;

	if (!dc)
		return;
	pthread_mutex_lock(&dc->lock);
	running = !dc->stop;
	dc->stop = true;
	pthread_cond_signal(&dc->wake);
	pthread_mutex_unlock(&dc->lock);
	if (running)
		pthread_join(dc->thread, NULL);
}

void ap_decider_free(ap_decider *dc)
{
	if (!dc)
		return;
	if (dc->store.db)
		PQfinish(dc->store.db);
	pthread_cond_destroy(&dc->wake);
	pthread_mutex_destroy(&dc->lock);
	free(dc->url);
	free(dc);
}
