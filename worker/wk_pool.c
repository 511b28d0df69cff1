/*
 * wk_pool.c - threads taking jobs from one queue (sl_queue).
 */
#include "wk_pool.h"
#include "sl_common.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct thread {
	pthread_t id;
	struct wk_pool *pool;
	void *state;
} thread;

struct wk_pool {
	thread *threads;
	int n, started;
	sl_queue jobs;
};

/* Runs j, then frees it if it is the pool's (read first: the job may free
 * what it is embedded in). */
static void job_run(wk_job *j, void *state)
{
	bool owned = j->owned;

	j->fn(j->arg, state);
	if (owned)
		free(j);
}

static void *pool_main(void *arg)
{
	thread *th = arg;
	sl_queue_node *node;

	while (sl_queue_pop(&th->pool->jobs, &node, 1, true, NULL))
		job_run(sl_queue_entry(node, wk_job, node), th->state);
	return NULL;
}

wk_pool *wk_pool_start(int n, void **states)
{
	wk_pool *p = sl_calloc(1, sizeof(*p));

	p->n = n;
	p->threads = sl_calloc((size_t)n, sizeof(thread));
	sl_queue_init(&p->jobs, NULL, NULL);
	for (int i = 0; i < n; i++) {
		p->threads[i].pool = p;
		p->threads[i].state = states ? states[i] : NULL;
		if (pthread_create(&p->threads[i].id, NULL, pool_main, &p->threads[i])) {
			wk_pool_stop(p);
			return NULL;
		}
		p->started++;
	}
	return p;
}

bool wk_pool_push_job(wk_pool *p, wk_job *j, wk_job_fn fn, wk_drop_fn drop, void *arg)
{
	j->fn = fn;
	j->drop = drop;
	j->arg = arg;
	return sl_queue_push(&p->jobs, &j->node, NULL);
}

bool wk_pool_push(wk_pool *p, wk_job_fn fn, wk_drop_fn drop, void *arg)
{
	wk_job *j = sl_calloc(1, sizeof(*j));

	j->owned = true;
	if (wk_pool_push_job(p, j, fn, drop, arg))
		return true;
	free(j);
	return false;
}

void wk_pool_stop(wk_pool *p)
{
	sl_queue_node *node;

	if (!p)
		return;
	sl_queue_close(&p->jobs);
	for (int i = 0; i < p->started; i++)
		pthread_join(p->threads[i].id, NULL);
	node = sl_queue_take_all(&p->jobs);
	while (node) {
		wk_job *j = sl_queue_entry(node, wk_job, node);
		bool owned = j->owned;

		node = node->next;
		j->drop(j->arg);
		if (owned)
			free(j);
	}
	sl_queue_destroy(&p->jobs);
	free(p->threads);
	free(p);
}
