/*
 * wk_fetch.c - a curl multi handle on its own thread, with timers.
 *
 * Other threads queue requests and timers (sl_queue, whose wake-up is
 * curl_multi_wakeup()); everything else (the multi handle, the active
 * requests, the sorted timer list) belongs to the fetch thread.
 */
#include "wk_fetch.h"
#include "sl_log.h"
#include "sl_queue.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Idle connections kept for reuse: as many as requests are usually in
 * flight, so that a burst does not reconnect. */
#define MAX_IDLE_CONNECTIONS 4096

typedef struct request {
	sl_queue_node node;          /* in the requests queue */
	struct request *next, *prev; /* the active list */
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	sl_buf resp;
	size_t max_body;
	char cerr[CURL_ERROR_SIZE];
	wk_fetch_cb cb;
	void *arg;
} request;

typedef struct timer {
	sl_queue_node node; /* in the timers queue */
	struct timer *next; /* the sorted list */
	long long due;
	wk_timer_cb cb;
	void *arg;
} timer;

struct wk_fetch {
	pthread_t thread;
	CURLM *multi;
	void (*drop)(void *arg);

	sl_queue requests, timers_queued; /* closed when stopping */

	request *active; /* the fetch thread's own */
	timer *timers;   /* sorted by due */
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
	request *r = ud;

	if (sl_buf_append(&r->resp, p, size * n) != SL_OK)
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	return size * n;
}

static void request_free(request *r)
{
	if (r->easy)
		curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->body);
	sl_buf_free(&r->resp);
	free(r);
}

bool wk_fetch_post(wk_fetch *f, const char *url, const char *const *headers, char *body,
                   size_t max_body, long timeout_ms, wk_fetch_cb cb, void *arg)
{
	request *r = sl_calloc(1, sizeof(*r));
	bool ok;

	r->body = body;
	r->max_body = max_body;
	r->cb = cb;
	r->arg = arg;
	sl_buf_init(&r->resp, max_body);
	for (; headers && *headers; headers++)
		r->headers = curl_slist_append(r->headers, *headers);
	r->easy = curl_easy_init();
	if (r->easy) {
		curl_easy_setopt(r->easy, CURLOPT_URL, url);
		curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
		curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
		curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->cerr);
		curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
		curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS,
		                 timeout_ms < 10000 ? timeout_ms : 10000L);
		curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	}
	ok = sl_queue_push(&f->requests, &r->node, NULL);
	if (!ok)
		request_free(r);
	return ok;
}

bool wk_fetch_after(wk_fetch *f, long delay_ms, wk_timer_cb cb, void *arg)
{
	timer *t = sl_calloc(1, sizeof(*t));
	bool ok;

	t->due = sl_mono_ms() + delay_ms;
	t->cb = cb;
	t->arg = arg;
	ok = sl_queue_push(&f->timers_queued, &t->node, NULL);
	if (!ok)
		free(t);
	return ok;
}

static void timer_insert(wk_fetch *f, timer *t)
{
	timer **p = &f->timers;

	while (*p && (*p)->due <= t->due)
		p = &(*p)->next;
	t->next = *p;
	*p = t;
}

/* Adds q to the active requests and to the multi handle. */
static void activate(wk_fetch *f, request *q)
{
	q->prev = NULL;
	q->next = f->active;
	if (f->active)
		f->active->prev = q;
	f->active = q;
	if (!q->easy || curl_multi_add_handle(f->multi, q->easy) != CURLM_OK) {
		/* ends on the next turn as a failed transfer */
		snprintf(q->cerr, sizeof(q->cerr), "cannot start the request");
		if (q->easy)
			curl_easy_cleanup(q->easy);
		q->easy = NULL;
	}
}

static void wake(void *arg)
{
	curl_multi_wakeup(((wk_fetch *)arg)->multi);
}

/* Takes what other threads queued. Returns false when stopping. */
static bool take_queued(wk_fetch *f)
{
	for (sl_queue_node *n = sl_queue_take_all(&f->timers_queued); n; n = n->next)
		timer_insert(f, sl_queue_entry(n, timer, node));
	for (sl_queue_node *n = sl_queue_take_all(&f->requests); n; n = n->next)
		activate(f, sl_queue_entry(n, request, node));
	return !sl_queue_closed(&f->requests);
}

static void unlink_active(wk_fetch *f, request *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		f->active = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

static void finish(wk_fetch *f, request *r, CURLcode rc)
{
	wk_fetch_result res = {.st = SL_OK, .err = ""};

	unlink_active(f, r);
	if (r->easy)
		curl_multi_remove_handle(f->multi, r->easy);
	if (!r->easy) {
		res.st = SL_RETRY;
		res.err = r->cerr;
	} else if (rc == CURLE_WRITE_ERROR && r->resp.len + CURL_MAX_WRITE_SIZE > r->max_body) {
		res.st = SL_TOO_BIG;
		res.err = "response too big";
	} else if (rc != CURLE_OK) {
		long sent = 0;

		res.st = SL_RETRY;
		res.err = r->cerr[0] ? r->cerr : curl_easy_strerror(rc);
		curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &sent);
		res.sent = sent > 0;
	} else {
		res.sent = true;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
		res.len = r->resp.len;
		res.body = sl_buf_steal(&r->resp);
	}
	r->cb(r->arg, &res);
	free(res.body);
	request_free(r);
}

static void *fetch_main(void *arg)
{
	wk_fetch *f = arg;

	while (take_queued(f)) {
		CURLMsg *msg;
		int running, left;
		long long now;
		long wait_ms = 1000;

		curl_multi_perform(f->multi, &running);
		while ((msg = curl_multi_info_read(f->multi, &left))) {
			request *r = NULL;
			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
			finish(f, r, msg->data.result);
		}
		/* requests that could not even start */
		for (request *r = f->active, *next; r; r = next) {
			next = r->next;
			if (!r->easy)
				finish(f, r, CURLE_FAILED_INIT);
		}
		now = sl_mono_ms();
		while (f->timers && f->timers->due <= now) {
			timer *t = f->timers;
			f->timers = t->next;
			t->cb(t->arg);
			free(t);
		}
		if (f->timers)
			wait_ms =
			    f->timers->due - now < wait_ms ? (long)(f->timers->due - now) : wait_ms;
		curl_multi_poll(f->multi, NULL, 0, (int)(wait_ms > 0 ? wait_ms : 0), NULL);
	}
	return NULL;
}

wk_fetch *wk_fetch_start(void (*drop)(void *arg), char *errbuf, size_t errsize)
{
	wk_fetch *f = sl_calloc(1, sizeof(*f));

	f->drop = drop;
	f->multi = curl_multi_init();
	if (!f->multi) {
		sl_err(errbuf, errsize, SL_FATAL, "curl_multi_init failed");
		free(f);
		return NULL;
	}
	curl_multi_setopt(f->multi, CURLMOPT_MAXCONNECTS, (long)MAX_IDLE_CONNECTIONS);
	sl_queue_init(&f->requests, wake, f);
	sl_queue_init(&f->timers_queued, wake, f);
	if (pthread_create(&f->thread, NULL, fetch_main, f)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot start the fetch thread");
		curl_multi_cleanup(f->multi);
		sl_queue_destroy(&f->requests);
		sl_queue_destroy(&f->timers_queued);
		free(f);
		return NULL;
	}
	return f;
}

void wk_fetch_stop(wk_fetch *f)
{
	if (!f)
		return;
	sl_queue_close(&f->timers_queued);
	sl_queue_close(&f->requests); /* (each wakes the thread) */
	pthread_join(f->thread, NULL);
	/* the thread is gone: what is left is ours, dropped with the rest */
	take_queued(f);
	while (f->active) {
		request *r = f->active;
		unlink_active(f, r);
		if (r->easy)
			curl_multi_remove_handle(f->multi, r->easy);
		f->drop(r->arg);
		request_free(r);
	}
	while (f->timers) {
		timer *t = f->timers;
		f->timers = t->next;
		f->drop(t->arg);
		free(t);
	}
	curl_multi_cleanup(f->multi);
	sl_queue_destroy(&f->requests);
	sl_queue_destroy(&f->timers_queued);
	free(f);
}
