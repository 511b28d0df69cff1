/*
 * loadgen.c - sluice-bench-loadgen: drives a running Sluice stack with the
 * seed scenario and measures it. It keeps --concurrency runs in flight:
 * submits sluice.run.requested events to Kafka, confirms each pending
 * requirement through the approver's HTTP API as soon as it appears, and
 * counts a run as done only when PostgreSQL says it completed. Latencies
 * use one clock: submit (here) -> requirement recorded (the pause's
 * transaction), decision recorded -> run completed (PostgreSQL timestamps).
 *
 * Prints one JSON object on stdout.
 */
#include "sl_common.h"
#include "sl_config.h"
#include "sl_db.h"
#include "sl_event.h"
#include "sl_http.h"
#include "sl_kafka.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bench {
	sl_config cfg;
	rd_kafka_t *producer;
	PGconn *db;
	char session[64];
	char *topic;
	char *source;
	char *auth;
	long runs, concurrency, submitted, completed, failed;
	double *submit_ms; /* epoch ms of each run's submission */
} bench;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double percentile(double *v, int n, double p)
{
	if (n == 0)
		return -1;
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return v[(int)(p * (n - 1) + 0.5)];
}

/* Runs a query of the benchmark; a failure ends the benchmark. */
static PGresult *query(bench *b, const char *sql)
{
	const char *p[] = {b->session};
	char errbuf[512];
	PGresult *res;

	if (sl_db_exec(b->db, sql, 1, p, &res, errbuf, sizeof(errbuf))) {
		fprintf(stderr, "loadgen: %s\n", errbuf);
		exit(1);
	}
	return res;
}

/* Submits runs until `want` are submitted. */
static void submit(bench *b, long want)
{
	while (b->submitted < want) {
		char run_id[96];
		json_t *ev;
		char *payload;
		rd_kafka_resp_err_t err;

		snprintf(run_id, sizeof(run_id), "%s-%ld", b->session, b->submitted);
		ev = sl_event_new(SL_EVENT_RUN_REQUESTED, b->source, run_id,
		                  json_pack("{s:s, s:s, s:s, s:s}", "run_id", run_id, "session_id",
		                            b->session, "agent_id", "data-admin", "input",
		                            "Delete all data for user U-99887."));
		payload = json_dumps(ev, JSON_COMPACT);
		b->submit_ms[b->submitted] = (double)sl_now_ms();
		err = rd_kafka_producev(b->producer, RD_KAFKA_V_TOPIC(b->topic),
		                        RD_KAFKA_V_KEY(run_id, strlen(run_id)),
		                        RD_KAFKA_V_VALUE(payload, strlen(payload)),
		                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
		free(payload);
		json_decref(ev);
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			rd_kafka_poll(b->producer, 10);
			continue;
		}
		if (err) {
			fprintf(stderr, "loadgen: produce: %s\n", rd_kafka_err2str(err));
			exit(1);
		}
		b->submitted++;
	}
	rd_kafka_poll(b->producer, 0);
}

/* Confirms, over HTTP, every pending requirement of this benchmark's runs;
 * returns how many. */
static int confirm_pending(bench *b)
{
	const char *headers[] = {b->auth, "Content-Type: application/json", NULL};
	PGresult *res;
	char errbuf[512];
	int n = 0;

	res = query(b, "SELECT r.id FROM requirements r JOIN runs u ON u.run_id = r.run_id "
	               "WHERE u.session_id = $1 AND u.status = 'paused' AND r.status = 'pending'");
	for (int i = 0; i < PQntuples(res); i++) {
		char *url = sl_asprintf("%s/v1/requirements/%s/confirm", b->cfg.approver_url,
		                        PQgetvalue(res, i, 0));
		sl_http_response r;

		if (sl_http_request("POST", url, headers, "{}", 65536, 10000, &r, errbuf,
		                    sizeof(errbuf)) == SL_OK) {
			if (r.status == 200)
				n++;
			else if (r.status != 409)
				fprintf(stderr, "loadgen: confirm: HTTP %ld %s\n", r.status,
				        r.body);
			sl_http_response_free(&r);
		}
		free(url);
	}
	PQclear(res);
	return n;
}

static void count_done(bench *b)
{
	PGresult *res;

	res = query(b, "SELECT count(*) FILTER (WHERE status = 'completed'), "
	               "count(*) FILTER (WHERE status IN ('failed', 'cancelled')) "
	               "FROM runs WHERE session_id = $1");
	b->completed = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	b->failed = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
}

static void report(bench *b, double seconds)
{
	PGresult *res;
	double *paused, *completed;
	int n, np = 0, nc = 0;

	/* Verified: completed, its tool ran once, one approved audit record. */
	res = query(b, "SELECT u.run_id, extract(epoch FROM r.created_at) * 1000, "
	               "extract(epoch FROM u.updated_at - r.resolved_at) * 1000, "
	               "u.status = 'completed' AND (SELECT count(*) FROM tool_executions t "
	               "WHERE t.run_id = u.run_id AND t.status = 'done') = 1 AND "
	               "(SELECT count(*) FROM approvals a WHERE a.run_id = u.run_id AND "
	               "a.status = 'approved' AND a.approval_type = 'audit') = 1 "
	               "FROM runs u JOIN requirements r ON r.run_id = u.run_id "
	               "WHERE u.session_id = $1 AND r.pause_seq = 1");
	n = PQntuples(res);
	paused = sl_calloc((size_t)n + 1, sizeof(double));
	completed = sl_calloc((size_t)n + 1, sizeof(double));
	long verified = 0;
	for (int i = 0; i < n; i++) {
		const char *dash = strrchr(PQgetvalue(res, i, 0), '-');
		long idx = dash ? strtol(dash + 1, NULL, 10) : -1;

		if (idx >= 0 && idx < b->submitted)
			paused[np++] = strtod(PQgetvalue(res, i, 1), NULL) - b->submit_ms[idx];
		if (!PQgetisnull(res, i, 2) && !strcmp(PQgetvalue(res, i, 3), "t")) {
			completed[nc++] = strtod(PQgetvalue(res, i, 2), NULL);
			verified++;
		}
	}
	PQclear(res);
	printf("{\"runs\": %ld, \"completed\": %ld, \"failed\": %ld, \"seconds\": %.3f, "
	       "\"runs_per_s\": %.1f, \"submit_to_paused_p50_ms\": %.2f, "
	       "\"submit_to_paused_p99_ms\": %.2f, \"decision_to_completed_p50_ms\": %.2f, "
	       "\"decision_to_completed_p99_ms\": %.2f}\n",
	       b->runs, verified, b->failed, seconds, seconds > 0 ? verified / seconds : 0.0,
	       percentile(paused, np, 0.5), percentile(paused, np, 0.99),
	       percentile(completed, nc, 0.5), percentile(completed, nc, 0.99));
	free(paused);
	free(completed);
}

int main(int argc, char **argv)
{
	bench b;
	char errbuf[512];
	long long start, deadline;
	long timeout_s = 600;

	memset(&b, 0, sizeof(b));
	b.runs = 1000;
	b.concurrency = 32;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--runs") && i + 1 < argc)
			b.runs = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--concurrency") && i + 1 < argc)
			b.concurrency = strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--timeout-s") && i + 1 < argc)
			timeout_s = strtol(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: sluice-bench-loadgen [--runs N] [--concurrency C] "
			                "[--timeout-s S]\n");
			return 2;
		}
	}
	if (b.runs < 1 || b.concurrency < 1)
		return 2;
	sl_http_global_init();
	sl_config_from_env(&b.cfg);
	b.db = sl_db_connect(b.cfg.database_url ? b.cfg.database_url : "", errbuf, sizeof(errbuf));
	b.producer =
	    b.cfg.kafka_brokers ? sl_kafka_producer_new(&b.cfg, errbuf, sizeof(errbuf)) : NULL;
	if (!b.db || !b.producer || !b.cfg.api_token) {
		fprintf(stderr, "loadgen: needs the env file of `sluice dev up`: %s\n", errbuf);
		return 1;
	}
	snprintf(b.session, sizeof(b.session), "bench-%d-%lld", (int)getpid(), sl_now_ms());
	b.topic = sl_config_topic(&b.cfg, "runs");
	b.source = sl_event_source("bench");
	b.auth = sl_asprintf("Authorization: Bearer %s", b.cfg.api_token);
	b.submit_ms = sl_calloc((size_t)b.runs, sizeof(double));
	start = sl_mono_ms();
	deadline = start + timeout_s * 1000;
	while (b.completed + b.failed < b.runs && sl_mono_ms() < deadline) {
		long want = b.completed + b.failed + b.concurrency;
		int confirmed;

		submit(&b, want < b.runs ? want : b.runs);
		confirmed = confirm_pending(&b);
		count_done(&b);
		if (!confirmed)
			sl_sleep_ms(1);
	}
	rd_kafka_flush(b.producer, 5000);
	report(&b, (double)(sl_mono_ms() - start) / 1000.0);
	rd_kafka_destroy(b.producer);
	PQfinish(b.db);
	free(b.submit_ms);
	free(b.topic);
	free(b.source);
	free(b.auth);
	sl_config_free(&b.cfg);
	return b.completed == b.runs ? 0 : 1;
}
