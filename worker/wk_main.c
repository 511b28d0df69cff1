/*
 * wk_main.c - sluice-worker: consumes sluice.runs and sluice.continues in
 * the "sluice-workers" group, hands each event to wk_run, dead-letters what
 * cannot be processed, relays its outbox (on a thread woken by NOTIFY), and
 * stores a message's offset only
 * once its effect is in PostgreSQL.
 */
#include "sl_agents.h"
#include "sl_config.h"
#include "sl_consume.h"
#include "sl_db.h"
#include "sl_event.h"
#include "sl_http.h"
#include "sl_kafka.h"
#include "sl_log.h"
#include "sl_outbox.h"
#include "wk_lanes.h"
#include "wk_run.h"
#include "wk_tool.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* Most messages queued on the lanes before the poll loop waits for them. */
#define MAX_BACKLOG_PER_LANE 32

typedef struct worker worker;

/* One lane's state: its own database connection. */
typedef struct lane_ctx {
	wk_ctx ctx;
} lane_ctx;

struct worker {
	sl_config cfg;
	sl_agents *agents;
	rd_kafka_t *consumer;
	rd_kafka_t *producer; /* dead letters */
	sl_relay *relay;
	wk_lanes *lanes;
	lane_ctx *lane;
	int nlanes;
	char *topic_runs;
	char *topic_continues;
	wk_ctx ctx; /* the settings every lane copies */
};

/* The handlers of the two consumed topics. */
static sl_status on_run_requested(void *ud, const sl_event *ev, char *errbuf, size_t errsize)
{
	lane_ctx *lc = ud;
	sl_status st = sl_db_ensure(lc->ctx.db, errbuf, errsize);

	return st ? st : wk_run_requested(&lc->ctx, ev, errbuf, errsize);
}

static sl_status on_run_continue(void *ud, const sl_event *ev, char *errbuf, size_t errsize)
{
	lane_ctx *lc = ud;
	sl_status st = sl_db_ensure(lc->ctx.db, errbuf, errsize);

	return st ? st : wk_run_continue(&lc->ctx, ev, errbuf, errsize);
}

/* Runs on lane threads: one message, start to end. */
static void handle(void *ud, int lane, const rd_kafka_message_t *m)
{
	static const char *run_types[] = {SL_EVENT_RUN_REQUESTED, NULL};
	static const char *continue_types[] = {SL_EVENT_RUN_CONTINUE, NULL};
	worker *w = ud;
	bool is_run = !strcmp(rd_kafka_topic_name(m->rkt), w->topic_runs);

	sl_consume(w->consumer, w->producer, &w->cfg, m, is_run ? run_types : continue_types,
	           is_run ? on_run_requested : on_run_continue, &w->lane[lane], &stopping);
}

/* The poll loop only dispatches: it hands messages to the lanes, and waits
 * while they have enough queued. */
static int run(worker *w)
{
	size_t max_backlog = (size_t)w->nlanes * MAX_BACKLOG_PER_LANE;

	while (!stopping) {
		rd_kafka_message_t *m;

		if (wk_lanes_backlog(w->lanes) >= max_backlog) {
			sl_sleep_ms(2);
			continue;
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
		wk_lanes_push(w->lanes, m);
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const char *required[] = {"SLUICE_KAFKA_BROKERS", "SLUICE_DATABASE_URL",
	                                 "SLUICE_AGENTS", NULL};
	worker w;
	char errbuf[1024];
	char **rest = calloc((size_t)argc + 1, sizeof(char *));
	const char *topics[3];
	int nrest, rc = 1;

	memset(&w, 0, sizeof(w));
	sl_log_init("sluice-worker");
	sl_http_global_init();
	sl_config_from_env(&w.cfg);
	if (sl_config_from_args(&w.cfg, argc, argv, 1, rest, &nrest, errbuf, sizeof(errbuf)) ||
	    sl_config_require(&w.cfg, required, errbuf, sizeof(errbuf))) {
		sl_error("%s", errbuf);
		goto out;
	}
	if (nrest) {
		sl_error("unknown argument %s", rest[0]);
		goto out;
	}
	if (sl_agents_load(w.cfg.agents, &w.agents, errbuf, sizeof(errbuf)) ||
	    wk_tool_check(w.agents, errbuf, sizeof(errbuf))) {
		sl_error("%s", errbuf);
		goto out;
	}
	{
		char *end;
		long n = strtol(w.cfg.worker_concurrency, &end, 10);
		if (*end || n < 1 || n > 256) {
			sl_error("SLUICE_WORKER_CONCURRENCY must be a number from 1 to 256");
			goto out;
		}
		w.nlanes = (int)n;
	}
	w.topic_runs = sl_config_topic(&w.cfg, "runs");
	w.topic_continues = sl_config_topic(&w.cfg, "continues");
	w.ctx.topic_approvals = sl_config_topic(&w.cfg, "approvals");
	w.ctx.topic_results = sl_config_topic(&w.cfg, "results");
	w.ctx.cfg = &w.cfg;
	w.ctx.agents = w.agents;
	w.ctx.source = sl_event_source("worker");
	w.lane = sl_calloc((size_t)w.nlanes, sizeof(lane_ctx));
	for (int i = 0; i < w.nlanes; i++) {
		w.lane[i].ctx = w.ctx;
		w.lane[i].ctx.db = sl_db_connect(w.cfg.database_url, errbuf, sizeof(errbuf));
		if (!w.lane[i].ctx.db) {
			sl_error("%s", errbuf);
			goto out;
		}
	}
	topics[0] = w.topic_runs;
	topics[1] = w.topic_continues;
	topics[2] = NULL;
	w.producer = sl_kafka_producer_new(&w.cfg, errbuf, sizeof(errbuf));
	if (!w.producer) {
		sl_error("kafka producer: %s", errbuf);
		goto out;
	}
	w.relay = sl_relay_start(&w.cfg, 1000, errbuf, sizeof(errbuf));
	if (!w.relay) {
		sl_error("outbox relay: %s", errbuf);
		goto out;
	}
	w.consumer =
	    sl_kafka_consumer_new(&w.cfg, "sluice-workers", topics, errbuf, sizeof(errbuf));
	if (!w.consumer) {
		sl_error("kafka consumer: %s", errbuf);
		goto out;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	sl_info("worker started: %zu agent(s), %d lanes, topics %s and %s", w.agents->n, w.nlanes,
	        w.topic_runs, w.topic_continues);
	w.lanes = wk_lanes_start(w.nlanes, handle, &w);
	if (!w.lanes) {
		sl_error("cannot start %d lane threads", w.nlanes);
		goto out;
	}
	rc = run(&w);
	sl_info("worker stopping");
out:
	/* Lanes first: they use the consumer to store offsets; closing it then
	 * commits what they stored. */
	wk_lanes_stop(w.lanes);
	if (w.consumer) {
		rd_kafka_consumer_close(w.consumer);
		rd_kafka_destroy(w.consumer);
	}
	sl_relay_stop(w.relay);
	if (w.producer) {
		rd_kafka_flush(w.producer, 5000);
		rd_kafka_destroy(w.producer);
	}
	for (int i = 0; w.lane && i < w.nlanes; i++)
		if (w.lane[i].ctx.db)
			PQfinish(w.lane[i].ctx.db);
	free(w.lane);
	free((char *)w.ctx.source);
	free(w.topic_runs);
	free(w.topic_continues);
	free(w.ctx.topic_approvals);
	free(w.ctx.topic_results);
	sl_agents_free(w.agents);
	sl_config_free(&w.cfg);
	free(rest);
	return rc;
}
