/*
 * wk_store.h - every statement the worker runs on PostgreSQL, as named
 * functions that take their rows and hand back typed ones; no SQL outside
 * wk_store.c. Columns are read by name, each result's checked once.
 *
 * The writes that many runs make at once (starts, continues' claims, tool
 * results, pauses, finishes: wk_write.c batches them) take their rows as
 * one JSON array, each row an object with the fields the function's
 * comment names.
 */
#ifndef WK_STORE_H
#define WK_STORE_H

#include "sl_common.h"

#include <jansson.h>
#include <libpq-fe.h>

/* A database thread's state. */
typedef struct wk_db {
	PGconn *conn;
} wk_db;

/* The worker's name in processed_events. */
#define WK_CONSUMER "sluice-worker"

/* A requirement of a pause with its decision; strings owned, NULL for
 * SQL NULL. */
typedef struct wk_decision {
	char *id;
	char *call_id;
	char *tool_name;
	char *tool_args;  /* JSON: as the model gave them */
	char *status;     /* "pending", "resolved", "expired", ... */
	bool confirmed;   /* the person said yes */
	char *note;       /* the person's note */
	char *user_input; /* JSON: the fields a person filled in */
	char *external_result;
	char *edited_args; /* JSON: the arguments as a person edited them */
	char *receipt;     /* the approver's signature of the decision (sl_receipt.h) */
} wk_decision;

/* A paused run as a continue reads it, with the requirements of its pause;
 * strings owned. */
typedef struct wk_continue {
	char *run_status;
	char *messages; /* JSON: the conversation */
	char *pause_seq;
	char *agent_id;
	char *session_id;
	char *user_id;
	char *claim_event; /* the continue that claimed it last */
	bool processed;    /* the continue was processed before */
	wk_decision *decisions;
	int ndecisions;
	json_t *claimed_tools; /* call ids whose tool runs the claim claimed */
} wk_continue;

void wk_decisions_free(wk_decision *d, int n);
void wk_continue_clear(wk_continue *c);

/*
 * Starts: inserts the runs of rows ({run_id, session_id, agent_id, user_id,
 * input, messages, event_id, gate?}) unless their event was processed or
 * the run exists. *started gets the run ids inserted (an object, ids as
 * keys). gated (NULL: none) lists, as JSON, the agents of rows with a
 * "gate" (their max_pending_approvals): those rows start only as far as
 * their agent's limit leaves room, counted under a lock per agent, and the
 * others go to *deferred (also an object), to be tried again later; a
 * started one holds its place (run_gate) until its run first pauses or
 * finishes (the rows of those statements say "gated").
 */
sl_status wk_store_starts(PGconn *db, const char *rows, const char *gated, json_t **started,
                          json_t **deferred, char *errbuf, size_t errsize);

/*
 * A run a start found in the table (a redelivered or repeated request),
 * locked in the transaction the caller began. *found is false when there is
 * no such run; otherwise status, agent_id and messages are set (owned).
 */
typedef struct wk_stored_run {
	char *status;
	char *agent_id;
	char *messages;
} wk_stored_run;

sl_status wk_store_run_lock(PGconn *db, const char *run_id, bool *found, wk_stored_run *out,
                            char *errbuf, size_t errsize);
void wk_stored_run_clear(wk_stored_run *r);

/*
 * Continues' claims, several at once: each row ({i, run_id, event_id, ids})
 * claims its run when the run is in the pause the event resolves (the event
 * names exactly the pause's requirements, none is pending, the event was
 * not processed, the run's agent is configured here, agent_tools: each
 * agent's tool names, and its conversation is a list). A claimed run moves
 * to running and its confirmed tools' runs are claimed in tool_executions.
 * out[i] is filled for each row i that claimed its run (claimed[i] true).
 */
sl_status wk_store_claims(PGconn *db, const char *rows, const char *agent_tools, size_t n,
                          wk_continue *out, bool *claimed, char *errbuf, size_t errsize);

/*
 * A continue checked under its run's lock (the caller's transaction): the
 * run and the requirements of its pause, and whether event_id was
 * processed. *found is false when there is no such run.
 */
sl_status wk_store_continue_lock(PGconn *db, const char *run_id, const char *event_id, bool *found,
                                 wk_continue *out, char *errbuf, size_t errsize);

/*
 * The claim of a continue read under the lock: moves the run from pause
 * pause_seq to running and claims the tool runs of tools ([{call_id,
 * tool_name}]); *claimed gets the call ids claimed, or NULL when the run
 * was no longer in that pause.
 */
sl_status wk_store_claim(PGconn *db, const char *run_id, const char *pause_seq,
                         const char *event_id, const char *tools, json_t **claimed, char *errbuf,
                         size_t errsize);

/*
 * Claims a tool call before it runs, so that it runs at most once. *run is
 * set when the caller is to run it; otherwise *result is the recorded
 * result of a finished run (owned), or NULL when an earlier attempt was
 * interrupted.
 */
sl_status wk_store_tool_claim(PGconn *db, const char *run_id, const char *call_id,
                              const char *tool_name, bool *run, char **result, char *errbuf,
                              size_t errsize);

/* A claimed tool call refused (its receipt did not check out): recorded
 * done with output, the text the model is told, and a tool.refused ledger
 * entry saying why, in one statement; nothing when it is done already. */
sl_status wk_store_tool_refused(PGconn *db, const char *run_id, const char *call_id,
                                const char *requirement_id, const char *tool_name,
                                const char *output, const char *why, char *errbuf, size_t errsize);

/* Tool results: rows of {run_id, call_id, result}. */
sl_status wk_store_tool_results(PGconn *db, const char *rows, char *errbuf, size_t errsize);

/*
 * Pauses: for each row ({run_id, messages, event_id, payload, reqs: the
 * requirements}) of a run still running whose event was not processed, the
 * run paused, its requirements and pending "required" approvals, the event
 * processed and an outbox row of topic. *res gets, for each run written,
 * its event id and the outbox row (id, topic, key, payload), as
 * sl_relay_publish() reads them from column 1 on.
 */
sl_status wk_store_pauses(PGconn *db, const char *rows, const char *topic, PGresult **res,
                          char *errbuf, size_t errsize);

/* Finishes: as pauses, for rows of {run_id, status, output, error,
 * messages, event_id, payload}. */
sl_status wk_store_finishes(PGconn *db, const char *rows, const char *topic, PGresult **res,
                            char *errbuf, size_t errsize);

/* Whether the worker processed event_id. */
sl_status wk_store_processed(PGconn *db, const char *event_id, bool *processed, char *errbuf,
                             size_t errsize);

#endif
