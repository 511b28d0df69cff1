/*
 * sl_queue.h - the one queue that hands work from thread to thread.
 *
 * A FIFO of nodes embedded in what they carry, under a mutex, with one
 * wake-up: a condition variable for threads that wait on the queue, and an
 * optional hook for a thread that waits on something else (a curl multi
 * handle: curl_multi_wakeup()). A node is in at most one queue at a time,
 * and asserted so: pushing a node that is in a queue is a bug.
 *
 * Closing a queue refuses further pushes (the pusher keeps its node and
 * drops it) and wakes every waiter with nothing; what was left is taken
 * with sl_queue_take_all().
 */
#ifndef SL_QUEUE_H
#define SL_QUEUE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct sl_queue_node {
	struct sl_queue_node *next;
	const void *in; /* the queue holding it; NULL when none */
} sl_queue_node;

typedef struct sl_queue {
	pthread_mutex_t mu; /* guards the rest */
	pthread_cond_t cv;
	sl_queue_node *head, **tail;
	size_t n;
	bool closed;
	void (*wake)(void *arg); /* called after each push, unlocked */
	void *wake_arg;
} sl_queue;

/* The struct of type that holds node as its member. */
#define sl_queue_entry(node, type, member) ((type *)((char *)(node)-offsetof(type, member)))

/* wake may be NULL: waiters on the condition variable are woken anyway. */
void sl_queue_init(sl_queue *q, void (*wake)(void *arg), void *wake_arg);

/* The queue must be empty (sl_queue_take_all() first). */
void sl_queue_destroy(sl_queue *q);

/* Appends node. Returns false, leaving the node the caller's, once the
 * queue is closed. *was_empty (when not NULL) says whether the queue was
 * empty before: the push that makes work appear. */
bool sl_queue_push(sl_queue *q, sl_queue_node *node, bool *was_empty);

/* Takes up to max nodes, oldest first, into out and returns how many;
 * *left (when not NULL) gets how many stay. With wait, waits until there is
 * one or the queue is closed. A closed queue gives nothing. */
size_t sl_queue_pop(sl_queue *q, sl_queue_node **out, size_t max, bool wait, size_t *left);

void sl_queue_close(sl_queue *q);
bool sl_queue_closed(sl_queue *q);

/* Takes every node queued, closed or not, in one go, as a list linked by
 * next (NULL when none): a consumer's whole turn, or what is left once it
 * has stopped. */
sl_queue_node *sl_queue_take_all(sl_queue *q);

#endif
