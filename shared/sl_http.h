/*
 * sl_http.h - a blocking HTTP client on libcurl, for the model API, http
 * tool executors and the CLI.
 */
#ifndef SL_HTTP_H
#define SL_HTTP_H

#include "sl_common.h"

typedef struct sl_http_response {
	long status;
	char *body; /* NUL-terminated; free() it */
	size_t len;
} sl_http_response;

/* Call once per process before any thread starts. */
void sl_http_global_init(void);

/*
 * Sends method url with the given headers (NULL-terminated "Name: value"
 * strings, may be NULL) and body (may be NULL). On SL_OK resp holds the
 * status and a body of at most max_body bytes (SL_TOO_BIG past it).
 * Transport failures and time-outs are SL_RETRY.
 */
sl_status sl_http_request(const char *method, const char *url, const char *const *headers,
                          const char *body, size_t max_body, long timeout_ms,
                          sl_http_response *resp, char *errbuf, size_t errsize);

void sl_http_response_free(sl_http_response *resp);

#endif
