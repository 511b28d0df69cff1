/*
 * sl_httpd.c - libmicrohttpd glue.
 */
#include "sl_httpd.h"
#include "sl_log.h"
#include "sl_text.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* A connection, from libmicrohttpd's notice of its start to the notice of
 * its close (which comes before its socket is closed): the reaper shuts
 * it down when its request is late. */
typedef struct tracked {
	struct tracked *prev, *next;
	int fd;
	long long deadline; /* monotonic ms by which its request must be whole */
	bool busy;          /* its request arrived whole and is being answered */
	bool reaped;
} tracked;

struct sl_httpd {
	struct MHD_Daemon *d;
	size_t max_body;
	sl_httpd_handler handler;
	void *ud;
	long long request_ms;
	pthread_mutex_t mu; /* guards conns, their fields and stopping */
	pthread_cond_t wake;
	tracked *conns;
	bool stopping;
	pthread_t reaper;
	atomic_long timed_out;
};

/* Per-request state kept between libmicrohttpd's calls; a deferred
 * request's answer waits here until its connection is served again. */
typedef struct sl_httpd_deferred {
	sl_buf body;
	bool too_big;
	struct MHD_Connection *conn;
	bool answered;
	unsigned status;
	char *answer;
} request_state;

/* The Content-Security-Policy of answers that are not pages: nothing may
 * be loaded, run or framed. */
static const char *const api_csp = "default-src 'none'; frame-ancestors 'none'";

enum MHD_Result sl_httpd_send_page(struct MHD_Connection *conn, unsigned status,
                                   const char *content_type, const char *body, size_t len,
                                   const char *csp)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	MHD_add_response_header(r, "Content-Type", content_type);
	/* on every answer: no framing, no sniffing, no caching (answers hold
	 * approvals and runs), no referrer */
	MHD_add_response_header(r, "Content-Security-Policy", csp ? csp : api_csp);
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result sl_httpd_send(struct MHD_Connection *conn, unsigned status,
                              const char *content_type, const char *body, size_t len)
{
	return sl_httpd_send_page(conn, status, content_type, body, len, NULL);
}

/* What is sent when an answer cannot be encoded: never a NULL. */
static const char encode_failed[] = "{\"error\":\"internal error\"}";

/* json (stolen) as compact text (free() it); NULL (logged) when json is
 * NULL, as json_pack() returns for a text that is not UTF-8, or cannot be
 * encoded. */
static char *encode(json_t *json)
{
	char *s = json ? json_dumps(json, JSON_COMPACT) : NULL;

	if (!s)
		sl_error("http: an answer could not be encoded as JSON; answering 500");
	json_decref(json);
	return s;
}

enum MHD_Result sl_httpd_send_json(struct MHD_Connection *conn, unsigned status, json_t *json)
{
	char *s = encode(json);
	enum MHD_Result ret;

	if (!s)
		return sl_httpd_send(conn, 500, "application/json", encode_failed,
		                     sizeof(encode_failed) - 1);
	ret = sl_httpd_send(conn, status, "application/json", s, strlen(s));
	free(s);
	return ret;
}

enum MHD_Result sl_httpd_send_error(struct MHD_Connection *conn, unsigned status, const char *fmt,
                                    ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sl_httpd_send_json(conn, status, json_pack("{s:o}", "error", sl_text_json(msg)));
}

static tracked *tracked_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

/* The connection's request arrived whole (busy) or was answered (its next
 * request's time starts). */
static void set_busy(sl_httpd *h, struct MHD_Connection *conn, bool busy)
{
	tracked *t = tracked_of(conn);

	if (!t)
		return;
	pthread_mutex_lock(&h->mu);
	t->busy = busy;
	if (!busy)
		t->deadline = sl_mono_ms() + h->request_ms;
	pthread_mutex_unlock(&h->mu);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	sl_httpd *h = cls;
	tracked *t = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		t = sl_calloc(1, sizeof(*t));
		t->fd = ci ? ci->connect_fd : -1;
		pthread_mutex_lock(&h->mu);
		t->deadline = sl_mono_ms() + h->request_ms;
		t->next = h->conns;
		if (h->conns)
			h->conns->prev = t;
		h->conns = t;
		pthread_mutex_unlock(&h->mu);
		*socket_context = t;
		return;
	}
	if (!t)
		return;
	pthread_mutex_lock(&h->mu);
	if (t->prev)
		t->prev->next = t->next;
	else
		h->conns = t->next;
	if (t->next)
		t->next->prev = t->prev;
	pthread_mutex_unlock(&h->mu);
	free(t);
	*socket_context = NULL;
}

/* Shuts down the connections whose request is late: libmicrohttpd then
 * sees them end and closes them on its own threads. */
static void *reap(void *arg)
{
	sl_httpd *h = arg;

	pthread_mutex_lock(&h->mu);
	while (!h->stopping) {
		struct timespec until;
		long long now = sl_mono_ms();

		for (tracked *t = h->conns; t; t = t->next)
			if (!t->busy && !t->reaped && t->fd >= 0 && now >= t->deadline) {
				shutdown(t->fd, SHUT_RDWR);
				t->reaped = true;
				atomic_fetch_add(&h->timed_out, 1);
			}
		sl_deadline_ms(&until, 250);
		pthread_cond_timedwait(&h->wake, &h->mu, &until);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

long sl_httpd_timed_out(const sl_httpd *h)
{
	return atomic_load(&h->timed_out);
}

/* libmicrohttpd's own messages, as Sluice's log lines. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];

	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	sl_warn("http: %s", msg);
}

/* What a request's header fields say about its framing and credentials. */
typedef struct header_check {
	int authorization, content_length;
} header_check;

static enum MHD_Result check_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
	header_check *c = cls;

	(void)kind;
	(void)value;
	c->authorization += !strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION);
	c->content_length += !strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH);
	return MHD_YES;
}

/* Answers 400 (and returns false) for a request whose header fields are
 * ambiguous: two Authorization or Content-Length fields (which one counts
 * depends on who reads them). (libmicrohttpd ends a field's value at a NUL
 * byte before Sluice sees it.) */
static bool headers_sound(struct MHD_Connection *conn, enum MHD_Result *ret)
{
	header_check c = {0};
	const char *why = NULL;

	MHD_get_connection_values(conn, MHD_HEADER_KIND, check_header, &c);
	if (c.authorization > 1)
		why = "more than one Authorization header field";
	else if (c.content_length > 1)
		why = "more than one Content-Length header field";
	if (why)
		*ret = sl_httpd_send_error(conn, 400, "%s", why);
	return !why;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *data_size, void **con_cls)
{
	sl_httpd *h = cls;
	request_state *rs = *con_cls;
	sl_httpd_request req;

	(void)version;
	if (!rs) {
		enum MHD_Result ret = MHD_YES;
		rs = sl_calloc(1, sizeof(*rs));
		sl_buf_init(&rs->body, h->max_body);
		*con_cls = rs;
		/* refused before its body is read */
		if (headers_sound(conn, &ret))
			return MHD_YES;
		set_busy(h, conn, true);
		return ret;
	}
	if (rs->answered) { /* resumed: the deferred answer is ready */
		enum MHD_Result ret = sl_httpd_send(conn, rs->status, "application/json",
		                                    rs->answer, strlen(rs->answer));
		free(rs->answer);
		rs->answer = NULL;
		return ret;
	}
	if (*data_size) {
		if (!rs->too_big && sl_buf_append(&rs->body, data, *data_size) != SL_OK) {
			rs->too_big = true;
			sl_buf_free(&rs->body);
		}
		*data_size = 0;
		return MHD_YES;
	}
	/* the request arrived whole: its answer is not held to its deadline */
	set_busy(h, conn, true);
	if (rs->too_big)
		return sl_httpd_send_error(conn, 413, "request body is over %zu bytes",
		                           h->max_body);
	req.conn = conn;
	req.method = method;
	req.path = url;
	req.body = rs->body.data ? rs->body.data : "";
	req.body_len = rs->body.len;
	req.state = rs;
	rs->conn = conn;
	return h->handler(h->ud, &req);
}

sl_httpd_deferred *sl_httpd_defer(const sl_httpd_request *req)
{
	request_state *rs = req->state;

	MHD_suspend_connection(rs->conn);
	return rs;
}

void sl_httpd_answer_json(sl_httpd_deferred *d, unsigned status, json_t *json)
{
	d->answer = encode(json);
	d->status = status;
	if (!d->answer) {
		d->answer = sl_strdup(encode_failed);
		d->status = 500;
	}
	d->answered = true;
	/* libmicrohttpd serves the connection again on one of its threads; the
	 * answer above is published by the lock MHD_resume_connection takes. */
	MHD_resume_connection(d->conn);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	request_state *rs = *con_cls;

	(void)toe;
	set_busy(cls, conn, false);
	if (rs) {
		sl_buf_free(&rs->body);
		free(rs->answer);
		free(rs);
		*con_cls = NULL;
	}
}

sl_httpd *sl_httpd_start(const char *listen, size_t max_body, unsigned threads,
                         const sl_httpd_limits *limits, sl_httpd_handler handler, void *ud,
                         char *errbuf, size_t errsize)
{
	struct sockaddr_in sa;
	const char *colon = strrchr(listen, ':');
	char host[64];
	char *end;
	long port;
	sl_httpd *h;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	if (!colon || (size_t)(colon - listen) >= sizeof(host)) {
		sl_err(errbuf, errsize, SL_INVALID, "listen address %s is not HOST:PORT", listen);
		return NULL;
	}
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	port = strtol(colon + 1, &end, 10);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (*end || port < 0 || port > 65535 ||
	    inet_pton(AF_INET, !strcmp(host, "localhost") ? "127.0.0.1" : host, &sa.sin_addr) !=
	        1) {
		sl_err(errbuf, errsize, SL_INVALID, "listen address %s is not IPV4:PORT", listen);
		return NULL;
	}
	h = sl_calloc(1, sizeof(*h));
	h->max_body = max_body;
	h->handler = handler;
	h->ud = ud;
	h->request_ms = (long long)limits->request_s * 1000;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->wake, NULL);
	atomic_init(&h->timed_out, 0);
	/* poll() rather than select(), so that descriptors past FD_SETSIZE work */
	if (threads == 0)
		flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
	else
		flags |= MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
	h->d = MHD_start_daemon(
	    /* the logger first, so that it takes every message */
	    flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
	    MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_CONNECTION_TIMEOUT,
	    limits->request_s, MHD_OPTION_CONNECTION_LIMIT, limits->max_connections,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, limits->max_client_connections,
	    MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0, MHD_OPTION_END);
	if (!h->d) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot listen on %s", listen);
		goto fail;
	}
	if (pthread_create(&h->reaper, NULL, reap, h)) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot start a thread");
		MHD_stop_daemon(h->d);
		goto fail;
	}
	return h;
fail:
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->mu);
	free(h);
	return NULL;
}

unsigned sl_httpd_port(const sl_httpd *h)
{
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	return i ? i->port : 0;
}

/* Whether a connection's request is being answered (mu held). */
static bool any_busy(const sl_httpd *h)
{
	for (const tracked *t = h->conns; t; t = t->next)
		if (t->busy)
			return true;
	return false;
}

void sl_httpd_stop(sl_httpd *h)
{
	long long until = sl_mono_ms() + SL_HTTPD_DRAIN_MS;

	if (!h)
		return;
	/* An answer given (a deferred request resumed with its answer) goes
	 * out before the connections close: stopping the daemon at once
	 * dropped decisions already recorded, their callers left with no
	 * answer. */
	pthread_mutex_lock(&h->mu);
	while (any_busy(h) && sl_mono_ms() < until) {
		pthread_mutex_unlock(&h->mu);
		sl_sleep_ms(5);
		pthread_mutex_lock(&h->mu);
	}
	h->stopping = true;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->reaper, NULL);
	MHD_stop_daemon(h->d);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
