/*
 * wk_main.c - sluice-worker: consumes sluice.runs and sluice.continues in
 * the "sluice-workers" group and turns each message into a task (wk_run):
 * the poll loop only dispatches, pausing the partitions while
 * SLUICE_WORKER_MAX_IN_FLIGHT messages are in flight; database steps run on
 * SLUICE_WORKER_CONCURRENCY threads with a connection each, model calls on
 * one curl multi thread (with http tools' POSTs), command tools on
 * SLUICE_WORKER_TOOL_THREADS threads, "stdio" tools as lines to their
 * long-running processes. The outbox is relayed on a thread woken as its
 * rows commit, and a message's offset is stored once it and every message
 * before it in its partition are done.
 */
#include "sl_agents.h"
#include "sl_config.h"
#include "sl_db.h"
#include "sl_event.h"
#include "sl_http.h"
#include "sl_kafka.h"
#include "sl_log.h"
#include "sl_relay.h"
#include "wk_fetch.h"
#include "wk_flight.h"
#include "wk_health.h"
#include "wk_model.h"
#include "wk_pool.h"
#include "wk_run.h"
#include "wk_tool.h"
#include "wk_write.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static sl_stop_flag stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* How long a stopping worker lets the messages in flight finish. */
#define DRAIN_MS 10000

typedef struct worker {
	sl_config cfg;
	sl_agents *agents;
	sl_keyset receipt_keys;
	rd_kafka_t *consumer;
	rd_kafka_t *producer; /* dead letters */
	sl_relay *relay;
	wk_health *health; /* NULL unless SLUICE_WORKER_LISTEN is set */
	wk_db *dbs;
	void **db_states; /* the database pool's: &dbs[i] */
	int ndb;
	long max_in_flight;
	long tool_threads;
	long relay_poll_ms;
	char *topic_runs;
	char *topic_continues;
	wk_env env;
} worker;

/* Pauses or resumes every assigned partition. */
static void set_paused(rd_kafka_t *consumer, bool pause)
{
	rd_kafka_topic_partition_list_t *parts = NULL;

	if (rd_kafka_assignment(consumer, &parts) || !parts)
		return;
	if (pause)
		rd_kafka_pause_partitions(consumer, parts);
	else
		rd_kafka_resume_partitions(consumer, parts);
	rd_kafka_topic_partition_list_destroy(parts);
}

/*
 * The poll loop only dispatches: each message goes into the flight and, when
 * no earlier message of its run is in flight, to a task. While the flight is
 * full, the partitions are paused (again after each poll: a rebalance
 * assigns partitions unpaused), and resumed below three quarters.
 */
static void run(worker *w)
{
	size_t max = (size_t)w->max_in_flight, low = max - max / 4;
	bool paused = false;

	while (!stopping) {
		size_t n = wk_flight_count(w->env.flight);
		rd_kafka_message_t *m;

		if (n >= max) {
			if (!paused)
				sl_debug("%zu messages in flight: partitions paused", n);
			set_paused(w->consumer, true);
			paused = true;
		} else if (paused && n < low) {
			set_paused(w->consumer, false);
			paused = false;
			sl_debug("%zu messages in flight: partitions resumed", n);
		}
		m = rd_kafka_consumer_poll(w->consumer, 50);
		if (!m)
			continue;
		if (m->err) {
			if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				sl_warn("kafka: %s", rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			continue;
		}
		m = wk_flight_add(w->env.flight, m);
		if (m)
			wk_run_start(&w->env, m);
	}
}

/* Lets the messages in flight finish, for DRAIN_MS at most, while the
 * consumer stays in its group with its partitions paused. */
static void drain(worker *w)
{
	long long deadline = sl_mono_ms() + DRAIN_MS;
	size_t n;

	set_paused(w->consumer, true);
	while ((n = wk_flight_count(w->env.flight)) > 0 && sl_mono_ms() < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, 20);
		if (m)
			rd_kafka_message_destroy(m); /* not started: delivered again */
	}
	if (n)
		sl_warn("stopping with %zu message(s) unfinished; they will be delivered again", n);
}

/* Every model call and tool call in flight holds a socket or pipes: let the
 * process have as many descriptors as it may. */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Settings, arguments, the agents file (with what its tools and models
 * need), number settings and topic names; false, logged, when one is not
 * valid. */
static bool configure(worker *w, int argc, char **argv)
{
	static const char *required[] = {"SLUICE_KAFKA_BROKERS", "SLUICE_DATABASE_URL",
	                                 "SLUICE_AGENTS", "SLUICE_RECEIPT_KEYS", NULL};
	char **rest = sl_calloc((size_t)argc + 1, sizeof(char *));
	char errbuf[1024];
	long ndb;
	int nrest;
	bool ok = false;

	sl_config_from_env(&w->cfg);
	if (sl_config_from_args(&w->cfg, argc, argv, 1, rest, &nrest, errbuf, sizeof(errbuf)) ||
	    sl_config_require(&w->cfg, required, errbuf, sizeof(errbuf))) {
		sl_error("%s", errbuf);
		goto out;
	}
	if (nrest) {
		sl_error("unknown argument %s", rest[0]);
		goto out;
	}
	if (sl_keyset_load(&w->receipt_keys, w->cfg.receipt_keys, errbuf, sizeof(errbuf))) {
		sl_error("SLUICE_RECEIPT_KEYS: %s", errbuf);
		goto out;
	}
	w->env.receipt_keys = &w->receipt_keys;
	if (sl_agents_load(w->cfg.agents, &w->agents, errbuf, sizeof(errbuf)) ||
	    wk_tool_prepare(w->agents, errbuf, sizeof(errbuf)) ||
	    wk_model_prepare(&w->cfg, w->agents, errbuf, sizeof(errbuf))) {
		sl_error("%s", errbuf);
		goto out;
	}
	if (!sl_config_long(&w->cfg, "SLUICE_WORKER_CONCURRENCY", &ndb) ||
	    !sl_config_long(&w->cfg, "SLUICE_WORKER_MAX_IN_FLIGHT", &w->max_in_flight) ||
	    !sl_config_long(&w->cfg, "SLUICE_WORKER_TOOL_THREADS", &w->tool_threads) ||
	    !sl_config_long(&w->cfg, "SLUICE_RELAY_POLL_MS", &w->relay_poll_ms))
		goto out;
	w->ndb = (int)ndb;
	w->topic_runs = sl_config_topic(&w->cfg, "runs");
	w->topic_continues = sl_config_topic(&w->cfg, "continues");
	w->env.topic_runs = w->topic_runs;
	w->env.topic_approvals = sl_config_topic(&w->cfg, "approvals");
	w->env.topic_results = sl_config_topic(&w->cfg, "results");
	w->env.cfg = &w->cfg;
	w->env.agents = w->agents;
	w->env.agent_tools = wk_run_agent_tools(w->agents);
	w->env.source = sl_event_source("worker");
	w->env.stopping = &stopping;
	ok = true;
out:
	free(rest);
	return ok;
}

/* One connection per database thread. */
static bool connect_databases(worker *w)
{
	char errbuf[1024];

	w->dbs = sl_calloc((size_t)w->ndb, sizeof(wk_db));
	w->db_states = sl_calloc((size_t)w->ndb, sizeof(void *));
	for (int i = 0; i < w->ndb; i++) {
		w->dbs[i].conn = sl_db_connect_with(w->cfg.database_url, SL_DB_KEY_LOOKUPS, errbuf,
		                                    sizeof(errbuf));
		if (!w->dbs[i].conn) {
			sl_error("%s", errbuf);
			return false;
		}
		w->db_states[i] = &w->dbs[i];
	}
	return true;
}

/* The Kafka clients, the relay and the parts a task moves between. */
static bool start_parts(worker *w)
{
	const char *topics[] = {w->topic_runs, w->topic_continues, NULL};
	char errbuf[1024];

	if (!(w->producer = sl_kafka_producer_new(&w->cfg, errbuf, sizeof(errbuf)))) {
		sl_error("kafka producer: %s", errbuf);
		return false;
	}
	w->env.producer = w->producer;
	if (!sl_kafka_topics_ready(w->producer, &w->cfg))
		return false;
	if (!(w->relay = sl_relay_start(&w->cfg, (int)w->relay_poll_ms, errbuf, sizeof(errbuf)))) {
		sl_error("outbox relay: %s", errbuf);
		return false;
	}
	w->env.relay = w->relay;
	w->consumer =
	    sl_kafka_consumer_new(&w->cfg, "sluice-workers", topics, errbuf, sizeof(errbuf));
	if (!w->consumer) {
		sl_error("kafka consumer: %s", errbuf);
		return false;
	}
	w->env.flight = wk_flight_new(w->consumer);
	w->env.fetch = wk_fetch_start(wk_run_drop, errbuf, sizeof(errbuf));
	w->env.db = wk_pool_start(w->ndb, w->db_states);
	w->env.tools = wk_pool_start((int)w->tool_threads, NULL);
	if (!w->env.fetch || !w->env.db || !w->env.tools) {
		sl_error("cannot start the worker's threads");
		return false;
	}
	w->env.writes = wk_writes_new(&(wk_writes_config){.db = w->env.db,
	                                                  .relay = w->relay,
	                                                  .topic_paused = w->env.topic_approvals,
	                                                  .topic_results = w->env.topic_results,
	                                                  .agent_tools = w->env.agent_tools,
	                                                  .written = wk_run_written,
	                                                  .drop = wk_run_write_dropped});
	if (!(w->env.stdio = wk_stdio_start(w->agents, wk_run_drop, errbuf, sizeof(errbuf)))) {
		sl_error("%s", errbuf);
		return false;
	}
	if (w->cfg.worker_listen) {
		w->health = wk_health_start(w->cfg.worker_listen, w->cfg.database_url, w->producer,
		                            errbuf, sizeof(errbuf));
		if (!w->health) {
			sl_error("SLUICE_WORKER_LISTEN: %s", errbuf);
			return false;
		}
		sl_info("probes on %s: GET /healthz, GET /readyz", w->cfg.worker_listen);
	}
	return true;
}

/* Stops and frees whatever was started. Whatever is still in flight is
 * given up (its offset is not stored); the parts stop before the consumer,
 * which commits what they stored. */
static void stop_parts(worker *w)
{
	wk_health_stop(w->health);
	wk_fetch_stop(w->env.fetch);
	wk_stdio_stop(w->env.stdio);
	wk_pool_stop(w->env.tools);
	wk_pool_stop(w->env.db);
	wk_writes_free(w->env.writes);
	if (w->consumer) {
		rd_kafka_consumer_close(w->consumer);
		rd_kafka_destroy(w->consumer);
	}
	wk_flight_free(w->env.flight);
	sl_relay_stop(w->relay);
	if (w->producer) {
		rd_kafka_flush(w->producer, 5000);
		rd_kafka_destroy(w->producer);
	}
	for (int i = 0; w->dbs && i < w->ndb; i++)
		if (w->dbs[i].conn)
			PQfinish(w->dbs[i].conn);
	free(w->dbs);
	free(w->db_states);
	free((char *)w->env.source);
	free(w->topic_runs);
	free(w->topic_continues);
	free(w->env.topic_approvals);
	free(w->env.topic_results);
	free(w->env.agent_tools);
	sl_agents_free(w->agents);
	sl_keyset_free(&w->receipt_keys);
	sl_config_free(&w->cfg);
}

int main(int argc, char **argv)
{
	worker w;
	int rc = 1;

	memset(&w, 0, sizeof(w));
	sl_log_init("sluice-worker");
	sl_http_global_init();
	raise_fd_limit();
	if (!configure(&w, argc, argv))
		goto out;
	wk_tool_shield_worker();
	if (!connect_databases(&w) || !start_parts(&w))
		goto out;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	sl_info("worker started: %zu agent(s), %d database connections, %ld tool threads, "
	        "%ld messages in flight at most, topics %s and %s",
	        w.agents->n, w.ndb, w.tool_threads, w.max_in_flight, w.topic_runs,
	        w.topic_continues);
	run(&w);
	sl_info("worker stopping");
	drain(&w);
	rc = 0;
out:
	stop_parts(&w);
	return rc;
}
