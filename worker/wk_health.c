/*
 * wk_health.c - the worker's /healthz, /readyz and /metrics. One server thread
 * answers them in turn, so the probe's PostgreSQL connection is used by
 * that thread alone.
 */
#include "wk_health.h"

#include "sl_common.h"
#include "sl_db.h"
#include "sl_httpd.h"
#include "sl_ready.h"
#include "wk_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct wk_health {
	sl_httpd *httpd;
	char *database_url;
	PGconn *db; /* connected at the first probe */
	rd_kafka_t *kafka;
	sl_ready ready;
};

static void ready_db(void *ud, char db[SL_READY_REASON])
{
	wk_health *h = ud;
	PGresult *res = NULL;

	if (!h->db && !(h->db = sl_db_connect(h->database_url, db, SL_READY_REASON)))
		return;
	/* each leaves its reason in db when it fails */
	if (sl_db_ensure(h->db, db, SL_READY_REASON) == SL_OK &&
	    sl_db_exec(h->db, "SELECT 1", 0, NULL, &res, db, SL_READY_REASON) == SL_OK)
		PQclear(res);
}

static enum MHD_Result handle(void *ud, const sl_httpd_request *req)
{
	wk_health *h = ud;

	if (strcmp(req->path, "/healthz") && strcmp(req->path, "/readyz") &&
	    strcmp(req->path, "/metrics"))
		return sl_httpd_send_error(req->conn, 404, "not found");
	if (strcmp(req->method, "GET"))
		return sl_httpd_send_error(req->conn, 405, "only GET");
	if (!strcmp(req->path, "/metrics")) {
		char *text = sl_asprintf("# TYPE sluice_worker_runs_deferred_total counter\n"
		                         "sluice_worker_runs_deferred_total %ld\n"
		                         "# TYPE sluice_worker_runs_deferred gauge\n"
		                         "sluice_worker_runs_deferred %ld\n",
		                         wk_run_deferred_total(), wk_run_deferred_now());
		enum MHD_Result ret =
		    sl_httpd_send(req->conn, 200, "text/plain; version=0.0.4", text, strlen(text));

		free(text);
		return ret;
	}
	if (!strcmp(req->path, "/healthz"))
		return sl_httpd_send_json(req->conn, 200, json_pack("{s:s}", "status", "ok"));
	return sl_ready_answer(&h->ready, req->conn, ready_db, h, h->kafka);
}

wk_health *wk_health_start(const char *listen, const char *database_url, rd_kafka_t *kafka,
                           char *errbuf, size_t errsize)
{
	/* probes come from an orchestrator, a few at a time */
	static const sl_httpd_limits limits = {
	    .max_connections = 64, .max_client_connections = 16, .request_s = 10};
	wk_health *h = sl_calloc(1, sizeof(*h));

	h->database_url = sl_strdup(database_url);
	h->kafka = kafka;
	pthread_mutex_init(&h->ready.lock, NULL);
	h->httpd = sl_httpd_start(listen, 1024, 1, &limits, handle, h, errbuf, errsize);
	if (!h->httpd) {
		wk_health_stop(h);
		return NULL;
	}
	return h;
}

unsigned wk_health_port(const wk_health *h)
{
	return sl_httpd_port(h->httpd);
}

void wk_health_stop(wk_health *h)
{
	if (!h)
		return;
	sl_httpd_stop(h->httpd);
	if (h->db)
		PQfinish(h->db);
	pthread_mutex_destroy(&h->ready.lock);
	free(h->database_url);
	free(h);
}
