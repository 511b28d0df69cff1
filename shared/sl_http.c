/*
 * sl_http.c - libcurl easy requests with a bounded response body.
 */
#include "sl_http.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

void sl_http_global_init(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
	sl_buf *b = ud;

	if (sl_buf_append(b, p, size * n) != SL_OK)
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	return size * n;
}

sl_status sl_http_request(const char *method, const char *url, const char *const *headers,
                          const char *body, size_t max_body, long timeout_ms,
                          sl_http_response *resp, char *errbuf, size_t errsize)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = NULL;
	char cerr[CURL_ERROR_SIZE] = "";
	sl_status st = SL_OK;
	CURLcode rc;
	sl_buf b;

	memset(resp, 0, sizeof(*resp));
	if (!c)
		return sl_err(errbuf, errsize, SL_FATAL, "curl_easy_init failed");
	sl_buf_init(&b, max_body);
	for (; headers && *headers; headers++)
		hl = curl_slist_append(hl, *headers);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	rc = curl_easy_perform(c);
	if (rc == CURLE_WRITE_ERROR && b.len + CURL_MAX_WRITE_SIZE > max_body) {
		st = sl_err(errbuf, errsize, SL_TOO_BIG, "response from %s is over %zu bytes", url,
		            max_body);
		goto out;
	}
	if (rc != CURLE_OK) {
		st = sl_err(errbuf, errsize, SL_RETRY, "%s %s: %s", method, url,
		            cerr[0] ? cerr : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
	resp->len = b.len;
	resp->body = sl_buf_steal(&b);
out:
	sl_buf_free(&b);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return st;
}

void sl_http_response_free(sl_http_response *resp)
{
	free(resp->body);
	resp->body = NULL;
}
