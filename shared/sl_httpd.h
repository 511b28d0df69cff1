/*
 * sl_httpd.h - a small HTTP server on libmicrohttpd: it gathers request
 * bodies up to a limit (413 past it) and calls one handler per complete
 * request.
 */
#ifndef SL_HTTPD_H
#define SL_HTTPD_H

#include "sl_common.h"

#include <jansson.h>
#include <microhttpd.h>

typedef struct sl_httpd sl_httpd;

/* What one server lets its clients take. A connection past a limit is
 * closed at once; a request that has not arrived whole (header and body)
 * within request_s of its connection's start or of the answer before it is
 * closed, however slowly its bytes trickle in, and so is a connection idle
 * for request_s. */
typedef struct sl_httpd_limits {
	unsigned max_connections;        /* at once, in all */
	unsigned max_client_connections; /* at once, from one client address */
	unsigned request_s;
} sl_httpd_limits;

typedef struct sl_httpd_request {
	struct MHD_Connection *conn;
	const char *method;
	const char *path; /* without the query string */
	const char *body; /* NUL-terminated, "" when none */
	size_t body_len;
	void *state; /* sl_httpd's own */
} sl_httpd_request;

/* A request whose answer comes later (sl_httpd_defer). */
typedef struct sl_httpd_deferred sl_httpd_deferred;

/* Answers req (with sl_httpd_send*) and returns what they return. */
typedef enum MHD_Result (*sl_httpd_handler)(void *ud, const sl_httpd_request *req);

/*
 * Listens on listen ("HOST:PORT"; port 0 picks one) and serves requests on
 * libmicrohttpd's threads: one thread per connection when threads is 0,
 * else that many polling threads sharing the connections, within limits.
 * libmicrohttpd's own messages go to the log. Returns NULL with the reason
 * in errbuf.
 */
sl_httpd *sl_httpd_start(const char *listen, size_t max_body, unsigned threads,
                         const sl_httpd_limits *limits, sl_httpd_handler handler, void *ud,
                         char *errbuf, size_t errsize);

/* Requests closed for taking longer than request_s to arrive. */
long sl_httpd_timed_out(const sl_httpd *h);

/* The port actually bound. */
unsigned sl_httpd_port(const sl_httpd *h);

/* Stops the server and frees it, once the requests being answered have
 * their answers (up to SL_HTTPD_DRAIN_MS); NULL is fine. */
#define SL_HTTPD_DRAIN_MS 5000
void sl_httpd_stop(sl_httpd *h);

/*
 * Parks req's connection: the handler returns MHD_YES at once, and the
 * answer is given later, from any thread, with sl_httpd_answer_json() -
 * which must happen, and before sl_httpd_stop(). Only in a server with
 * threads > 0 (one thread per connection can simply wait).
 */
sl_httpd_deferred *sl_httpd_defer(const sl_httpd_request *req);

/* Answers a deferred request with json (stolen) and status. */
void sl_httpd_answer_json(sl_httpd_deferred *d, unsigned status, json_t *json);

/* Sends body (copied) with status and content type. Every answer carries
 * the security headers (Content-Security-Policy, X-Frame-Options: DENY,
 * X-Content-Type-Options: nosniff, Cache-Control: no-store,
 * Referrer-Policy: no-referrer); a page gives its own csp, anything else
 * NULL (nothing may load, run or frame it). */
enum MHD_Result sl_httpd_send_page(struct MHD_Connection *conn, unsigned status,
                                   const char *content_type, const char *body, size_t len,
                                   const char *csp);
/* Sends body (copied) with status and content type, as a page with no
 * content policy of its own. */
enum MHD_Result sl_httpd_send(struct MHD_Connection *conn, unsigned status,
                              const char *content_type, const char *body, size_t len);
/* Sends json (stolen) as application/json. */
enum MHD_Result sl_httpd_send_json(struct MHD_Connection *conn, unsigned status, json_t *json);
/* Sends {"error": msg}. */
enum MHD_Result sl_httpd_send_error(struct MHD_Connection *conn, unsigned status, const char *fmt,
                                    ...) __attribute__((format(printf, 3, 4)));

#endif
