/*
 * sl_queue.c - the thread-to-thread queue (sl_queue.h).
 */
#include "sl_queue.h"

#include <assert.h>

void sl_queue_init(sl_queue *q, void (*wake)(void *arg), void *wake_arg)
{
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	q->head = NULL;
	q->tail = &q->head;
	q->n = 0;
	q->closed = false;
	q->wake = wake;
	q->wake_arg = wake_arg;
}

void sl_queue_destroy(sl_queue *q)
{
	assert(q->head == NULL && q->n == 0);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
}

bool sl_queue_push(sl_queue *q, sl_queue_node *node, bool *was_empty)
{
	bool ok;

	pthread_mutex_lock(&q->mu);
	ok = !q->closed;
	if (ok) {
		assert(node->in == NULL); /* in one queue at a time */
		node->in = q;
		node->next = NULL;
		if (was_empty)
			*was_empty = q->n == 0;
		*q->tail = node;
		q->tail = &node->next;
		q->n++;
		pthread_cond_signal(&q->cv);
	}
	pthread_mutex_unlock(&q->mu);
	if (ok && q->wake)
		q->wake(q->wake_arg);
	return ok;
}

size_t sl_queue_pop(sl_queue *q, sl_queue_node **out, size_t max, bool wait, size_t *left)
{
	size_t n = 0;

	pthread_mutex_lock(&q->mu);
	while (wait && !q->head && !q->closed)
		pthread_cond_wait(&q->cv, &q->mu);
	while (!q->closed && q->head && n < max) {
		sl_queue_node *node = q->head;

		assert(node->in == q);
		q->head = node->next;
		node->next = NULL;
		node->in = NULL;
		out[n++] = node;
		q->n--;
	}
	if (!q->head)
		q->tail = &q->head;
	if (left)
		*left = q->n;
	pthread_mutex_unlock(&q->mu);
	return n;
}

void sl_queue_close(sl_queue *q)
{
	pthread_mutex_lock(&q->mu);
	q->closed = true;
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	if (q->wake)
		q->wake(q->wake_arg);
}

bool sl_queue_closed(sl_queue *q)
{
	bool closed;

	pthread_mutex_lock(&q->mu);
	closed = q->closed;
	pthread_mutex_unlock(&q->mu);
	return closed;
}

sl_queue_node *sl_queue_take_all(sl_queue *q)
{
	sl_queue_node *all;

	pthread_mutex_lock(&q->mu);
	all = q->head;
	for (sl_queue_node *node = all; node; node = node->next)
		node->in = NULL;
	q->head = NULL;
	q->tail = &q->head;
	q->n = 0;
	pthread_mutex_unlock(&q->mu);
	return all;
}
