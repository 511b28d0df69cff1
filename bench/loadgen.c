/*
 * loadgen.c - sluice-bench-loadgen: drives a running Sluice stack with the
 * seed scenario and measures it, the way an external approval client would:
 * it keeps --concurrency runs in flight (and with --rate R submits no more
 * than R runs a second, an offered load), submitting sluice.run.requested
 * events to Kafka, reading sluice.approvals for paused runs and confirming
 * each requirement through the approver's HTTP API at once (curl multi, many
 * requests in flight), and reading sluice.results for finished runs. At the
 * end it counts a run as completed only when PostgreSQL says it completed,
 * its tool ran once and it has one approved audit record. Latencies use one
 * clock: submit (here) -> requirement recorded (the pause's transaction),
 * decision recorded -> run completed (PostgreSQL timestamps). With
 * --distinct-users each run names a user of its own (U-1000000 + its
 * number) instead of the seed's, so that a tool's log tells its calls apart
 * (tests/chaos/kafka counts them).
 *
 * Prints one JSON object on stdout.
 */
#include "sl_common.h"
#include "sl_config.h"
#include "sl_db.h"
#include "sl_event.h"
#include "sl_http.h"
#include "sl_kafka.h"
#include "sl_kafka_props.h"

#include <curl/curl.h>
#include <fcntl.h>

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
	bool distinct_users;
	double *submit_ms; /* epoch ms of each run's submission */
	CURLM *multi;      /* the confirmations in flight */
	struct curl_slist *headers;
} bench;

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	(void)p;
	(void)ud;
	return size * n;
}

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
		char run_id[96], input[64] = "Delete all data for user U-99887.";
		json_t *ev;
		char *payload;
		rd_kafka_resp_err_t err;

		snprintf(run_id, sizeof(run_id), "%s-%ld", b->session, b->submitted);
		if (b->distinct_users)
			snprintf(input, sizeof(input), "Delete all data for user U-%ld.",
			         1000000 + b->submitted);
		ev = sl_event_new(SL_EVENT_RUN_REQUESTED, b->source, run_id,
		                  json_pack("{s:s, s:s, s:s, s:s}", "run_id", run_id, "session_id",
		                            b->session, "agent_id", "data-admin", "input", input));
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

/* Confirms requirement id over HTTP; the answer comes in on_confirmed. */
static void confirm(bench *b, const char *id)
{
	char *url = sl_asprintf("%s/v1/requirements/%s/confirm", b->cfg.approver_url, id);
	CURL *c = curl_easy_init();

	if (!c) {
		fprintf(stderr, "loadgen: curl_easy_init failed\n");
		exit(1);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, b->headers);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_multi_add_handle(b->multi, c);
	free(url);
}

static void on_confirmed(bench *b, CURL *c, CURLcode rc)
{
	long status = 0;

	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (rc != CURLE_OK || (status != 200 && status != 409))
		fprintf(stderr, "loadgen: confirm: %s, HTTP %ld\n", curl_easy_strerror(rc), status);
	curl_multi_remove_handle(b->multi, c);
	curl_easy_cleanup(c);
}

/* One event of sluice.approvals or sluice.results: confirms a paused run's
 * requirements, counts a finished run. Events of other sessions are skipped. */
static void on_event(bench *b, const rd_kafka_message_t *m)
{
	json_t *ev = json_loadb(m->payload, m->len, 0, NULL);
	json_t *data = json_object_get(ev, "data"), *req;
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *session = json_string_value(json_object_get(data, "session_id"));
	size_t i;

	if (!type || !session || strcmp(session, b->session)) {
		json_decref(ev);
		return;
	}
	if (!strcmp(type, SL_EVENT_RUN_PAUSED)) {
		json_array_foreach (json_object_get(data, "requirements"), i, req)
			confirm(b, json_string_value(json_object_get(req, "id")));
	} else if (!strcmp(type, SL_EVENT_RUN_COMPLETED)) {
		b->completed++;
	} else if (!strcmp(type, SL_EVENT_RUN_FAILED)) {
		b->failed++;
	}
	json_decref(ev);
}

/* Reads sluice.approvals and sluice.results from their current ends, so
 * that only this benchmark's events (and those of runs still going) come. */
static rd_kafka_t *listen_events(bench *b)
{
	const char *names[] = {"approvals", "results"};
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(32);
	const struct rd_kafka_metadata *md = NULL;
	const char *const fixed[] = {"group.id", b->session, "enable.auto.commit", "false", NULL};
	char errbuf[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	sl_kafka_props props = {0};
	rd_kafka_t *c;

	/* the deployment's properties too (a broker behind TLS and SASL) */
	if (rd_kafka_conf_set(conf, "bootstrap.servers", b->cfg.kafka_brokers, errbuf,
	                      sizeof(errbuf)) ||
	    rd_kafka_conf_set(conf, "fetch.wait.max.ms", b->cfg.kafka_fetch_wait_ms, errbuf,
	                      sizeof(errbuf)) ||
	    sl_kafka_props_load(&props, NULL, errbuf, sizeof(errbuf)) ||
	    sl_kafka_props_apply(&props, conf, fixed, errbuf, sizeof(errbuf)) ||
	    !(c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, sizeof(errbuf)))) {
		fprintf(stderr, "loadgen: consumer: %s\n", errbuf);
		exit(1);
	}
	sl_kafka_props_free(&props);
	rd_kafka_poll_set_consumer(c);
	if (rd_kafka_metadata(c, 1, NULL, &md, 10000)) {
		fprintf(stderr, "loadgen: no metadata from %s\n", b->cfg.kafka_brokers);
		exit(1);
	}
	for (size_t k = 0; k < 2; k++) {
		char *topic = sl_config_topic(&b->cfg, names[k]);
		for (int t = 0; t < md->topic_cnt; t++) {
			if (strcmp(md->topics[t].topic, topic))
				continue;
			for (int p = 0; p < md->topics[t].partition_cnt; p++) {
				int64_t lo, hi;
				if (rd_kafka_query_watermark_offsets(c, topic, p, &lo, &hi,
				                                     10000)) {
					fprintf(stderr, "loadgen: no offsets for %s\n", topic);
					exit(1);
				}
				rd_kafka_topic_partition_list_add(parts, topic, p)->offset = hi;
			}
		}
		free(topic);
	}
	rd_kafka_metadata_destroy(md);
	if (parts->cnt == 0 || rd_kafka_assign(c, parts)) {
		fprintf(stderr, "loadgen: cannot read the approvals and results topics\n");
		exit(1);
	}
	rd_kafka_topic_partition_list_destroy(parts);
	return c;
}

static void report(bench *b, double seconds)
{
	PGresult *res;
	double *paused, *completed;
	int n, np = 0, nc = 0;

	/* Verified: completed, its tool ran once, one approved audit record.
	 * Set-based: with the statistics of tables that were empty when the
	 * benchmark began, per-run subqueries were planned as scans and took
	 * longer than the benchmark itself. */
	res = query(
	    b, "WITH s AS (SELECT run_id, status, updated_at FROM runs WHERE session_id = $1), "
	       "t AS (SELECT run_id, count(*) AS n FROM tool_executions "
	       "WHERE status = 'done' AND run_id IN (SELECT run_id FROM s) GROUP BY run_id), "
	       "a AS (SELECT run_id, count(*) AS n FROM approvals WHERE status = 'approved' "
	       "AND approval_type = 'audit' AND run_id IN (SELECT run_id FROM s) "
	       "GROUP BY run_id) "
	       "SELECT s.run_id, extract(epoch FROM r.created_at) * 1000, "
	       "extract(epoch FROM s.updated_at - r.resolved_at) * 1000, "
	       "s.status = 'completed' AND coalesce(t.n, 0) = 1 AND coalesce(a.n, 0) = 1 "
	       "FROM s JOIN requirements r ON r.run_id = s.run_id AND r.pause_seq = 1 "
	       "LEFT JOIN t ON t.run_id = s.run_id LEFT JOIN a ON a.run_id = s.run_id");
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
	double rate = 0; /* runs submitted per second at most; 0: no limit */
	rd_kafka_t *consumer;
	rd_kafka_queue_t *queue;
	int wake[2];

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
		else if (!strcmp(argv[i], "--distinct-users"))
			b.distinct_users = true;
		else if (!strcmp(argv[i], "--rate") && i + 1 < argc) {
			char *end;
			rate = strtod(argv[++i], &end);
			if (*end || end == argv[i])
				rate = -1; /* refused below */
		} else {
			fprintf(stderr, "usage: sluice-bench-loadgen [--runs N] [--concurrency C] "
			                "[--rate R] [--timeout-s S] [--distinct-users]\n");
			return 2;
		}
	}
	if (b.runs < 1 || b.concurrency < 1 || rate < 0)
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
	b.headers = curl_slist_append(b.headers, b.auth);
	b.headers = curl_slist_append(b.headers, "Content-Type: application/json");
	b.multi = curl_multi_init();
	consumer = listen_events(&b);
	/* the consumer queue writes to a pipe when it has events, so that one
	 * poll waits for Kafka and the HTTP requests together */
	if (pipe2(wake, O_NONBLOCK | O_CLOEXEC)) {
		perror("loadgen: pipe");
		return 1;
	}
	queue = rd_kafka_queue_get_consumer(consumer);
	rd_kafka_queue_io_event_enable(queue, wake[1], "1", 1);
	{
		/* the producer learns the topic's partitions before the clock starts */
		const struct rd_kafka_metadata *md;
		rd_kafka_topic_t *t = rd_kafka_topic_new(b.producer, b.topic, NULL);
		if (rd_kafka_metadata(b.producer, 0, t, &md, 10000) == 0)
			rd_kafka_metadata_destroy(md);
		rd_kafka_topic_destroy(t);
	}
	start = sl_mono_ms();
	deadline = start + timeout_s * 1000;
	while (b.completed + b.failed < b.runs && sl_mono_ms() < deadline) {
		long want;
		struct curl_waitfd wfd = {.fd = wake[0], .events = CURL_WAIT_POLLIN};
		rd_kafka_message_t *m;
		CURLMsg *msg;
		char drain[64];
		int running, left;

		while (read(wake[0], drain, sizeof(drain)) > 0)
			;
		while ((m = rd_kafka_consume_queue(queue, 0))) {
			if (!m->err)
				on_event(&b, m);
			rd_kafka_message_destroy(m);
		}
		want = b.completed + b.failed + b.concurrency;
		if (rate > 0) {
			long due = (long)(rate * (double)(sl_mono_ms() - start) / 1000.0) + 1;
			if (due < want)
				want = due;
		}
		submit(&b, want < b.runs ? want : b.runs);
		curl_multi_perform(b.multi, &running);
		while ((msg = curl_multi_info_read(b.multi, &left)))
			if (msg->msg == CURLMSG_DONE)
				on_confirmed(&b, msg->easy_handle, msg->data.result);
		/* with a rate, awake for the next submission */
		curl_multi_poll(b.multi, &wfd, 1, rate > 0 ? 1 : 100, NULL);
	}
	rd_kafka_queue_destroy(queue);
	rd_kafka_consumer_close(consumer);
	rd_kafka_destroy(consumer);
	curl_multi_cleanup(b.multi);
	curl_slist_free_all(b.headers);
	close(wake[0]);
	close(wake[1]);
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
