/*
 * wk_pool.c - threads and one queue.
 */
#include "wk_pool.h"
#include "sl_common.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct job {
	struct job *next;
	wk_job_fn fn;
	wk_drop_fn drop;
	void *arg;
} job;

typedef struct thread {
	pthread_t id;
	struct wk_pool *pool;
	void *state;
} thread;

struct wk_pool {
	thread *threads;
	int n, started;

	pthread_mutex_t mu; /* guards the queue and stopping */
	pthread_cond_t cv;
	job *head, *tail;
	bool stopping;
};

static void *pool_main(void *arg)
{
	thread *th = arg;
	wk_pool *p = th->pool;

	for (;;) {
		job *j;

		pthread_mutex_lock(&p->mu);
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stopping) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		j = p->head;
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		pthread_mutex_unlock(&p->mu);
		j->fn(j->arg, th->state);
		free(j);
	}
	return NULL;
}

wk_pool *wk_pool_start(int n, void **states)
{
	wk_pool *p = sl_calloc(1, sizeof(*p));

	p->n = n;
	p->threads = sl_calloc((size_t)n, sizeof(thread));
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
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

bool wk_pool_push(wk_pool *p, wk_job_fn fn, wk_drop_fn drop, void *arg)
{
	job *j = sl_malloc(sizeof(*j));
	bool ok;

	j->next = NULL;
	j->fn = fn;
	j->drop = drop;
	j->arg = arg;
	pthread_mutex_lock(&p->mu);
	ok = !p->stopping;
	if (ok) {
		if (p->tail)
			p->tail->next = j;
		else
			p->head = j;
		p->tail = j;
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	if (!ok)
		free(j);
	return ok;
}

void wk_pool_stop(wk_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->started; i++)
		pthread_join(p->threads[i].id, NULL);
	while (p->head) {
		job *j = p->head;
		p->head = j->next;
		j->drop(j->arg);
		free(j);
	}
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->threads);
	free(p);
}
