/*
 * wk_run.h - a run's life on a worker: a sluice.run.requested or
 * sluice.run.continue message in, the agent loop, and the resulting state
 * change (pause, completion, failure) with its outbox event written in one
 * PostgreSQL transaction.
 *
 * Each consumed message becomes a task that moves between the worker's
 * parts and holds no thread while it waits:
 *
 *   database thread  (decode; a start or a continue's claim goes to the
 *                     write queue, whose result comes back here)
 *     -> fetch thread  (the model call, through curl multi)
 *     -> tool thread   (a command tool's process)
 *        or the fetch thread (an http tool's POST)
 *        or the stdio thread (a call to a long-running tool process)
 *     -> write queue  (the tool's result, written with other runs' tool
 *                       results in one statement by a database thread,
 *                       which takes the task on: wk_write.h, wk_run_written)
 *     -> write queue  (pause or completion, written with other runs'
 *                       outcomes in one statement by a database thread)
 *
 * Only one part touches a task at a time; it is handed on through the
 * parts' queues.
 */
#ifndef WK_RUN_H
#define WK_RUN_H

#include "sl_agents.h"
#include "sl_keys.h"
#include "sl_config.h"
#include "sl_event.h"
#include "sl_relay.h"
#include "wk_fetch.h"
#include "wk_flight.h"
#include "wk_pool.h"
#include "wk_stdio.h"
#include "wk_write.h"

#include <libpq-fe.h>
#include <signal.h>

/* Most model turns one run may take before it is failed. */
#define WK_MAX_TURNS 16

/* What every task shares: settings and the worker's parts. */
typedef struct wk_env {
	const sl_config *cfg;
	const sl_agents *agents;
	const char *source; /* CloudEvents source of this worker */
	const char *topic_runs;
	char *topic_approvals;
	char *topic_results;
	rd_kafka_t *producer; /* dead letters */
	sl_relay *relay;      /* publishes committed outbox rows */
	wk_flight *flight;
	wk_pool *db;    /* thread state: a wk_db */
	wk_pool *tools; /* no thread state */
	wk_fetch *fetch;
	wk_stdio *stdio; /* the "stdio" tools' processes */
	wk_writes *writes;
	char *agent_tools;             /* wk_run_agent_tools() of agents */
	const sl_keyset *receipt_keys; /* SLUICE_RECEIPT_KEYS: a tool runs on a receipt they sign */
	sl_stop_flag *stopping;
} wk_env;

/* Each agent's tool names, {"agent id": ["tool", ...]}, as JSON text (free
 * it): how a continue's claim tells which tools this worker runs. */
char *wk_run_agent_tools(const sl_agents *agents);

/*
 * Starts working on m, which wk_flight_add() let start; m belongs to the
 * task from here. When the task ends, wk_flight_done() is called for m and
 * the message that waited for it, if any, is started.
 */
void wk_run_start(wk_env *env, rd_kafka_message_t *m);

/* The writes' callbacks (wk_writes_config): a task's write was made, or
 * given up. */
void wk_run_written(wk_write *w, void *db_state);
void wk_run_write_dropped(wk_write *w);

/* Frees a task given up on (the worker is stopping): its offset is not
 * stored. The drop callback of the pools and the fetch thread. */
void wk_run_drop(void *task);

/* Run starts put off so far by their agent's max_pending_approvals, and
 * those waiting now (for GET /metrics). */
long wk_run_deferred_total(void);
long wk_run_deferred_now(void);

#endif
