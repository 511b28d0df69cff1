/*
 * test_pool.c - the worker's thread pools: every job runs once, on a
 * thread with that thread's state, or is dropped when the pool stops before
 * it runs; a job embedded in a task is never freed by the pool. Also run
 * under ThreadSanitizer by `make tsan`.
 */
#include "../../worker/wk_pool.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define THREADS 3
#define JOBS 30000

typedef struct counted {
	wk_job job; /* embedded: the pool must not free it */
	atomic_int ran, dropped;
	atomic_int on_state; /* which thread state it ran with (+1) */
} counted;

static int states[THREADS];

static void count_job(void *arg, void *state)
{
	counted *c = arg;

	atomic_fetch_add(&c->ran, 1);
	atomic_store(&c->on_state, (int)((int *)state - states) + 1);
}

static void count_drop(void *arg)
{
	atomic_fetch_add(&((counted *)arg)->dropped, 1);
}

typedef struct pushing {
	wk_pool *pool;
	counted *items;
	int n;
	bool embedded;
} pushing;

static void *pusher(void *arg)
{
	pushing *p = arg;

	for (int i = 0; i < p->n; i++) {
		counted *c = &p->items[i];
		bool ok = p->embedded ? wk_pool_push_job(p->pool, &c->job, count_job, count_drop, c)
		                      : wk_pool_push(p->pool, count_job, count_drop, c);
		if (!ok)
			abort();
	}
	return NULL;
}

static void every_job_runs_once_with_its_thread_state(void **state)
{
	void *st[THREADS];
	counted *items = calloc(JOBS, sizeof(counted));
	pthread_t th[2];
	pushing args[2];
	wk_pool *pool;

	(void)state;
	for (int i = 0; i < THREADS; i++)
		st[i] = &states[i];
	pool = wk_pool_start(THREADS, st);
	assert_non_null(pool);
	/* two threads push at once: one the pool's own jobs, one embedded ones */
	for (int k = 0; k < 2; k++) {
		args[k] = (pushing){pool, items + k * (JOBS / 2), JOBS / 2, k == 1};
		assert_int_equal(pthread_create(&th[k], NULL, pusher, &args[k]), 0);
	}
	for (int k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	for (int i = 0; i < JOBS; i++)
		while (atomic_load(&items[i].ran) == 0)
			usleep(100);
	wk_pool_stop(pool);
	for (int i = 0; i < JOBS; i++) {
		assert_int_equal(atomic_load(&items[i].ran), 1);
		assert_int_equal(atomic_load(&items[i].dropped), 0);
		assert_in_range(atomic_load(&items[i].on_state), 1, THREADS);
	}
	free(items);
}

static atomic_int started, release;

static void blocking_job(void *arg, void *state)
{
	(void)state;
	atomic_store(&started, 1);
	while (!atomic_load(&release))
		usleep(100);
	count_job(arg, &states[0]);
}

static void *release_soon(void *arg)
{
	(void)arg;
	usleep(50000);
	atomic_store(&release, 1);
	return NULL;
}

/* Stopping: the job being run finishes; the ones still queued are dropped,
 * and pushing afterwards is refused. */
static void stop_drops_what_did_not_run(void **state)
{
	counted first = {0}, queued[5];
	pthread_t releaser;
	wk_pool *pool = wk_pool_start(1, NULL);

	(void)state;
	memset(queued, 0, sizeof(queued));
	atomic_store(&release, 0);
	assert_true(wk_pool_push_job(pool, &first.job, blocking_job, count_drop, &first));
	while (!atomic_load(&started)) /* taken by the thread */
		usleep(100);
	for (int i = 0; i < 5; i++)
		assert_true(
		    wk_pool_push_job(pool, &queued[i].job, count_job, count_drop, &queued[i]));
	pthread_create(&releaser, NULL, release_soon, NULL);
	wk_pool_stop(pool);
	pthread_join(releaser, NULL);
	assert_int_equal(atomic_load(&first.ran), 1);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(atomic_load(&queued[i].ran), 0);
		assert_int_equal(atomic_load(&queued[i].dropped), 1);
		assert_null(queued[i].job.node.in);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(every_job_runs_once_with_its_thread_state),
	    cmocka_unit_test(stop_drops_what_did_not_run),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
