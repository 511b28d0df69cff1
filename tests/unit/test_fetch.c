/*
 * test_fetch.c - the fetch thread's hand-over: timers and requests queued
 * from several threads at once each come back once, on the fetch thread;
 * what is pending when it stops is dropped, once. Also run under
 * ThreadSanitizer by `make tsan`.
 */
#include "../../worker/wk_fetch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define PUSHERS 3
#define PER_PUSHER 300

typedef struct slot {
	atomic_int fired, dropped, answered;
	long status; /* written on the fetch thread, read after it stopped */
	bool sent;
} slot;

static slot slots[PUSHERS * PER_PUSHER + 8];
static pthread_t fetch_thread;
static atomic_int wrong_thread;

static void on_timer(void *arg)
{
	if (!pthread_equal(pthread_self(), fetch_thread))
		atomic_store(&wrong_thread, 1);
	atomic_fetch_add(&((slot *)arg)->fired, 1);
}

static void on_drop(void *arg)
{
	atomic_fetch_add(&((slot *)arg)->dropped, 1);
}

static void on_answer(void *arg, wk_fetch_result *res)
{
	slot *s = arg;

	s->status = res->st;
	s->sent = res->sent;
	atomic_fetch_add(&s->answered, 1);
}

static void learn_thread(void *arg)
{
	(void)arg;
	fetch_thread = pthread_self();
}

typedef struct pushing {
	wk_fetch *f;
	int from;
} pushing;

static void *pusher(void *arg)
{
	pushing *p = arg;

	for (int i = 0; i < PER_PUSHER; i++)
		if (!wk_fetch_after(p->f, i % 7, on_timer, &slots[p->from + i]))
			abort();
	return NULL;
}

static void timers_from_many_threads_fire_once(void **state)
{
	char err[256];
	wk_fetch *f = wk_fetch_start(on_drop, err, sizeof(err));
	pthread_t th[PUSHERS];
	pushing args[PUSHERS];
	int total = PUSHERS * PER_PUSHER;

	(void)state;
	memset(slots, 0, sizeof(slots));
	assert_non_null(f);
	assert_true(wk_fetch_after(f, 0, learn_thread, NULL));
	usleep(20000);
	for (int k = 0; k < PUSHERS; k++) {
		args[k] = (pushing){f, k * PER_PUSHER};
		assert_int_equal(pthread_create(&th[k], NULL, pusher, &args[k]), 0);
	}
	for (int k = 0; k < PUSHERS; k++)
		pthread_join(th[k], NULL);
	for (int i = 0; i < total; i++)
		while (!atomic_load(&slots[i].fired))
			usleep(500);
	/* pending when stopping: a far timer */
	assert_true(wk_fetch_after(f, 60000, on_timer, &slots[total]));
	wk_fetch_stop(f);
	for (int i = 0; i < total; i++) {
		assert_int_equal(atomic_load(&slots[i].fired), 1);
		assert_int_equal(atomic_load(&slots[i].dropped), 0);
	}
	assert_int_equal(atomic_load(&slots[total].fired), 0);
	assert_int_equal(atomic_load(&slots[total].dropped), 1);
	assert_int_equal(atomic_load(&wrong_thread), 0);
}

/* A request answered (here: refused at once by a closed port) comes back
 * on its callback once; after stop nothing more is accepted. */
static void requests_come_back_once_and_stop_refuses(void **state)
{
	char err[256];
	wk_fetch *f = wk_fetch_start(on_drop, err, sizeof(err));
	slot *s = &slots[0];
	const char *headers[] = {"Content-Type: application/json", NULL};

	(void)state;
	memset(slots, 0, sizeof(slots));
	assert_non_null(f);
	assert_true(wk_fetch_post(f, "http://127.0.0.1:9/", headers, strdup("{}"), 1024, 2000,
	                          on_answer, s));
	while (!atomic_load(&s->answered))
		usleep(1000);
	wk_fetch_stop(f);
	assert_int_equal(atomic_load(&s->answered), 1);
	assert_int_equal(atomic_load(&s->dropped), 0);
	assert_int_equal(s->status, SL_RETRY); /* connection refused */
	assert_false(s->sent);                 /* so the server cannot have acted */
}

/* A request that went out and got no answer (a server that takes the
 * connection and never replies) says it was sent: the server may have
 * acted on it. */
static void a_request_unanswered_was_sent(void **state)
{
	char err[256], url[64];
	wk_fetch *f = wk_fetch_start(on_drop, err, sizeof(err));
	slot *s = &slots[0];
	const char *headers[] = {"Content-Type: application/json", NULL};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	memset(slots, 0, sizeof(slots));
	assert_non_null(f);
	/* listening, never accepting: the kernel completes the connection */
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(l, 4), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", ntohs(a.sin_port));
	assert_true(wk_fetch_post(f, url, headers, strdup("{}"), 1024, 300, on_answer, s));
	while (!atomic_load(&s->answered))
		usleep(1000);
	wk_fetch_stop(f);
	close(l);
	assert_int_equal(s->status, SL_RETRY); /* timed out */
	assert_true(s->sent);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(timers_from_many_threads_fire_once),
	    cmocka_unit_test(requests_come_back_once_and_stop_refuses),
	    cmocka_unit_test(a_request_unanswered_was_sent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
