/*
 * wk_run.h - a run's life on a worker: a sluice.run.requested or
 * sluice.run.continue event in, the agent loop, and the resulting state
 * change (pause, completion, failure) with its outbox event written in one
 * PostgreSQL transaction.
 */
#ifndef WK_RUN_H
#define WK_RUN_H

#include "sl_agents.h"
#include "sl_config.h"
#include "sl_event.h"

#include <libpq-fe.h>

/* Most model turns one run may take before it is failed. */
#define WK_MAX_TURNS 16

typedef struct wk_ctx {
	const sl_config *cfg;
	const sl_agents *agents;
	PGconn *db;
	const char *source; /* CloudEvents source of this worker */
	char *topic_approvals;
	char *topic_results;
} wk_ctx;

/*
 * Handles a validated sluice.run.requested event: records the run, runs the
 * agent loop and pauses, completes or fails it. Returns SL_OK when the event
 * has had its effect (or had it before), SL_RETRY for transient failures
 * (nothing half-done is visible), SL_NOT_FOUND / SL_INVALID / SL_CONFLICT
 * with the reason in errbuf for events to dead-letter.
 */
sl_status wk_run_requested(wk_ctx *ctx, const sl_event *ev, char *errbuf, size_t errsize);

/*
 * Handles a validated sluice.run.continue event: claims the paused run
 * (a run is continued once), applies the decisions the approver recorded in
 * PostgreSQL - not the ones the event claims - runs each confirmed tool once,
 * and carries the run on. Return values as for wk_run_requested.
 */
sl_status wk_run_continue(wk_ctx *ctx, const sl_event *ev, char *errbuf, size_t errsize);

#endif
