/*
 * wk_fetch.h - the worker's asynchronous HTTP client: one thread runs a curl
 * multi handle with every model request of the process in flight at once,
 * plus timers (retry back-offs). A run waiting for the model holds no thread,
 * only its request.
 *
 * Requests and timers may be added from any thread; their callbacks run on
 * the fetch thread and must return quickly (hand the work on, do not do it).
 */
#ifndef WK_FETCH_H
#define WK_FETCH_H

#include "sl_common.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct wk_fetch wk_fetch;

/* What a request ended with: st is SL_OK with the HTTP status and body
 * (NUL-terminated, the callback may take it: set body to NULL), SL_RETRY for
 * a transport failure or time-out, SL_TOO_BIG past max_body; err says why.
 * sent: some of the request went out, so the server may have acted on it
 * (false when no connection was made). */
typedef struct wk_fetch_result {
	sl_status st;
	long status;
	char *body;
	size_t len;
	const char *err;
	bool sent;
} wk_fetch_result;

typedef void (*wk_fetch_cb)(void *arg, wk_fetch_result *res);
typedef void (*wk_timer_cb)(void *arg);

/* Starts the fetch thread. drop(arg) is called for each request or timer
 * still pending when the fetch stops. Returns NULL with the reason in errbuf. */
wk_fetch *wk_fetch_start(void (*drop)(void *arg), char *errbuf, size_t errsize);

/*
 * POSTs body to url with headers (NULL-terminated "Name: value" strings,
 * copied) and calls cb(arg, result) on the fetch thread when it ends.
 * body belongs to the request from here on (freed after). A request that
 * cannot be started ends with SL_RETRY. Returns false (and frees body) only
 * when the fetch is stopping: the caller still owns arg.
 */
bool wk_fetch_post(wk_fetch *f, const char *url, const char *const *headers, char *body,
                   size_t max_body, long timeout_ms, wk_fetch_cb cb, void *arg);

/* Calls cb(arg) on the fetch thread after delay_ms. Returns false when the
 * fetch is stopping. */
bool wk_fetch_after(wk_fetch *f, long delay_ms, wk_timer_cb cb, void *arg);

/*
 * Stops the thread. Requests still in flight and timers still pending are
 * given to drop() instead of their callbacks. Frees f; NULL is fine.
 */
void wk_fetch_stop(wk_fetch *f);

#endif
