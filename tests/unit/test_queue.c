/*
 * test_queue.c - the thread-to-thread queue: order, closing, one queue per
 * node, and many producers and consumers at once (also run under
 * ThreadSanitizer by `make tsan`).
 */
#include "sl_queue.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct item {
	int producer, seq;
	sl_queue_node node;
} item;

static void fifo_counts_and_batches(void **state)
{
	sl_queue q;
	item it[5];
	sl_queue_node *out[8];
	bool was_empty;
	size_t left;

	(void)state;
	sl_queue_init(&q, NULL, NULL);
	for (int i = 0; i < 5; i++) {
		it[i] = (item){.seq = i};
		assert_true(sl_queue_push(&q, &it[i].node, &was_empty));
		assert_int_equal(was_empty, i == 0);
	}
	assert_int_equal(sl_queue_pop(&q, out, 3, false, &left), 3);
	assert_int_equal(left, 2);
	for (int i = 0; i < 3; i++)
		assert_int_equal(sl_queue_entry(out[i], item, node)->seq, i);
	assert_int_equal(sl_queue_pop(&q, out, 8, false, &left), 2);
	assert_int_equal(sl_queue_entry(out[1], item, node)->seq, 4);
	assert_int_equal(left, 0);
	assert_int_equal(sl_queue_pop(&q, out, 8, false, NULL), 0);
	/* a node popped may go into a queue again */
	assert_true(sl_queue_push(&q, &it[0].node, &was_empty));
	assert_true(was_empty);
	assert_int_equal(sl_queue_pop(&q, out, 8, false, NULL), 1);
	sl_queue_destroy(&q);
}

static void closed_refuses_and_keeps_the_rest(void **state)
{
	sl_queue q;
	item a = {0}, b = {0}, c = {0};
	sl_queue_node *out[2], *rest;

	(void)state;
	sl_queue_init(&q, NULL, NULL);
	assert_true(sl_queue_push(&q, &a.node, NULL));
	assert_true(sl_queue_push(&q, &b.node, NULL));
	sl_queue_close(&q);
	assert_false(sl_queue_push(&q, &c.node, NULL));
	assert_null(c.node.in); /* still the caller's */
	assert_int_equal(sl_queue_pop(&q, out, 2, true, NULL), 0);
	rest = sl_queue_take_all(&q);
	assert_ptr_equal(rest, &a.node);
	assert_ptr_equal(rest->next, &b.node);
	assert_null(rest->next->next);
	assert_null(a.node.in);
	sl_queue_destroy(&q);
}

/* Pushing a node that is in a queue stops the process (an assert): a task
 * is in one place at a time. */
static void a_node_in_two_queues_is_caught(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sl_queue q1, q2;
		item it = {0};
		sl_queue_init(&q1, NULL, NULL);
		sl_queue_init(&q2, NULL, NULL);
		sl_queue_push(&q1, &it.node, NULL);
		signal(SIGABRT, SIG_DFL);
		close(2); /* the assert's message is expected */
		sl_queue_push(&q2, &it.node, NULL);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGABRT);
}

#define PRODUCERS 4
#define CONSUMERS 3
#define PER_PRODUCER 20000

typedef struct shared {
	sl_queue q;
	item *items;
	int seen[PRODUCERS * PER_PRODUCER];
	int wakes;
	pthread_mutex_t mu;
} shared;

static void count_wake(void *arg)
{
	shared *s = arg;

	pthread_mutex_lock(&s->mu);
	s->wakes++;
	pthread_mutex_unlock(&s->mu);
}

typedef struct producing {
	shared *s;
	item *mine;
} producing;

static void *producer(void *arg)
{
	producing *p = arg;

	for (int i = 0; i < PER_PRODUCER; i++)
		if (!sl_queue_push(&p->s->q, &p->mine[i].node, NULL))
			abort();
	return NULL;
}

static void *consumer(void *arg)
{
	shared *s = arg;
	int last[PRODUCERS];
	sl_queue_node *out[16];
	size_t n;

	for (int p = 0; p < PRODUCERS; p++)
		last[p] = -1;
	while ((n = sl_queue_pop(&s->q, out, 16, true, NULL)) > 0) {
		for (size_t i = 0; i < n; i++) {
			item *it = sl_queue_entry(out[i], item, node);
			/* one producer's items come out in the order it pushed them */
			if (it->seq <= last[it->producer])
				abort();
			last[it->producer] = it->seq;
			s->seen[it->producer * PER_PRODUCER + it->seq]++;
		}
	}
	return NULL;
}

static void many_threads_each_item_once_in_order(void **state)
{
	static shared s;
	pthread_t prod[PRODUCERS], cons[CONSUMERS];
	producing args[PRODUCERS];

	(void)state;
	s.items = calloc(PRODUCERS * PER_PRODUCER, sizeof(item));
	assert_non_null(s.items);
	pthread_mutex_init(&s.mu, NULL);
	sl_queue_init(&s.q, count_wake, &s);
	for (int c = 0; c < CONSUMERS; c++)
		assert_int_equal(pthread_create(&cons[c], NULL, consumer, &s), 0);
	for (int p = 0; p < PRODUCERS; p++) {
		item *mine = &s.items[p * PER_PRODUCER];
		for (int i = 0; i < PER_PRODUCER; i++)
			mine[i] = (item){.producer = p, .seq = i};
		args[p] = (producing){.s = &s, .mine = mine};
		assert_int_equal(pthread_create(&prod[p], NULL, producer, &args[p]), 0);
	}
	for (int p = 0; p < PRODUCERS; p++)
		pthread_join(prod[p], NULL);
	/* let the consumers take everything, then stop them */
	for (;;) {
		pthread_mutex_lock(&s.q.mu);
		size_t n = s.q.n;
		pthread_mutex_unlock(&s.q.mu);
		if (!n)
			break;
		usleep(1000);
	}
	sl_queue_close(&s.q);
	for (int c = 0; c < CONSUMERS; c++)
		pthread_join(cons[c], NULL);
	for (int i = 0; i < PRODUCERS * PER_PRODUCER; i++)
		assert_int_equal(s.seen[i], 1);
	assert_int_equal(s.wakes, PRODUCERS * PER_PRODUCER + 1); /* each push, the close */
	assert_null(sl_queue_take_all(&s.q));
	sl_queue_destroy(&s.q);
	pthread_mutex_destroy(&s.mu);
	free(s.items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(fifo_counts_and_batches),
	    cmocka_unit_test(closed_refuses_and_keeps_the_rest),
	    cmocka_unit_test(a_node_in_two_queues_is_caught),
	    cmocka_unit_test(many_threads_each_item_once_in_order),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
