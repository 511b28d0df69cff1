/*
 * sl_httpd.c - libmicrohttpd glue.
 */
#include "sl_httpd.h"
#include "sl_log.h"
#include "sl_text.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sl_httpd {
	struct MHD_Daemon *d;
	size_t max_body;
	sl_httpd_handler handler;
	void *ud;
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
		return headers_sound(conn, &ret) ? MHD_YES : ret;
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

	(void)cls;
	(void)conn;
	(void)toe;
	if (rs) {
		sl_buf_free(&rs->body);
		free(rs->answer);
		free(rs);
		*con_cls = NULL;
	}
}

sl_httpd *sl_httpd_start(const char *listen, size_t max_body, unsigned threads,
                         sl_httpd_handler handler, void *ud, char *errbuf, size_t errsize)
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
	/* poll() rather than select(), so that descriptors past FD_SETSIZE work */
	if (threads == 0)
		flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
	else
		flags |= MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
	h->d = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, &sa,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)60, MHD_OPTION_CONNECTION_LIMIT, (unsigned)SL_HTTPD_MAX_CONNECTIONS,
	    MHD_OPTION_THREAD_POOL_SIZE, threads > 1 ? threads : 0, MHD_OPTION_END);
	if (!h->d) {
		sl_err(errbuf, errsize, SL_FATAL, "cannot listen on %s", listen);
		free(h);
		return NULL;
	}
	return h;
}

unsigned sl_httpd_port(const sl_httpd *h)
{
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
	return i ? i->port : 0;
}

void sl_httpd_stop(sl_httpd *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->d);
	free(h);
}
