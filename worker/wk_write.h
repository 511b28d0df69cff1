/*
 * wk_write.h - writes made together (group commit): runs' starts,
 * continues' claims, tools' results and runs' outcomes, those of each kind
 * in one statement (wk_store.h). A write is queued with its statement's
 * row; a flush job on a database thread takes what is queued, makes the
 * writes, fills in each one's result and hands it back through the
 * written() callback, on that database thread. What a result leads to is
 * the caller's (wk_run.c): this module knows rows and results, not runs.
 */
#ifndef WK_WRITE_H
#define WK_WRITE_H

#include "sl_relay.h"
#include "sl_queue.h"
#include "wk_pool.h"
#include "wk_store.h"

#include <jansson.h>

typedef enum wk_write_kind {
	WR_NONE,
	WR_START,
	WR_CLAIM,
	WR_TOOL,
	WR_PAUSE,
	WR_FINISH
} wk_write_kind;

/* One write, embedded in what makes it (a task). */
typedef struct wk_write {
	sl_queue_node node;
	wk_write_kind kind;
	json_t *row;          /* the statement's row; taken by wk_write_queue */
	const char *run_id;   /* claims are made in run id order */
	const char *event_id; /* an outcome is written when its event is */

	/* the result, for written() */
	sl_status st; /* SL_OK, or the failure that ends the write */
	char err[512];
	bool written;     /* a start inserted its run; an outcome was written */
	bool deferred;    /* a start waits: its agent's max_pending_approvals is reached */
	bool claimed;     /* a claim claimed its run ... */
	wk_continue read; /* ... and read this (the caller's to clear) */
} wk_write;

typedef struct wk_writes wk_writes;

typedef struct wk_writes_config {
	wk_pool *db;               /* flush jobs run here (thread state: a wk_db) */
	sl_relay *relay;           /* publishes the outcomes' outbox rows */
	const char *topic_paused;  /* the outbox topic of pauses */
	const char *topic_results; /* and of finishes */
	const char *agent_tools;   /* claims: each agent's tool names */
	/* a write made (or failed), on a database thread with its state */
	void (*written)(wk_write *w, void *db_state);
	/* a write given up: the worker is stopping */
	void (*drop)(wk_write *w);
} wk_writes_config;

wk_writes *wk_writes_new(const wk_writes_config *cfg);

/* Queues w (not in a queue; its row set); it is the queue's until written()
 * or drop() gives it back. */
void wk_write_queue(wk_writes *ws, wk_write *w);

/* Frees the queue after the pools have stopped: writes still queued are
 * given up (drop()). NULL is fine. */
void wk_writes_free(wk_writes *ws);

#endif
