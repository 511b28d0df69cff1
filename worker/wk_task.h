/*
 * wk_task.h - the inside of a task, shared by the two parts of the worker
 * that work on it: wk_run.c (the agent loop: a message decoded, a continue
 * claimed and its decisions applied, the model and the tools) and
 * wk_write.c (the state changes it leads to, written with other tasks' in
 * one statement). Not for the rest of the worker: wk_run.h is the contract.
 */
#ifndef WK_TASK_H
#define WK_TASK_H

#include "wk_model.h"
#include "wk_run.h"
#include "wk_store.h"

#include <jansson.h>
#include <libpq-fe.h>

/* A run as the loop sees it; strings are owned. */
typedef struct wk_run_state {
	char *run_id;
	char *session_id;
	char *user_id;
	const sl_agent *agent;
	json_t *items; /* the conversation, Responses API input items */
} wk_run_state;

/* A tool call that waits for a person. */
typedef struct wk_pending_req {
	char id[37];
	const sl_tool *tool;
	json_t *call; /* the function_call item (borrowed from the reply) */
	json_t *args; /* owned */
} wk_pending_req;

/* The next database step of a task. */
typedef enum wk_phase {
	PH_BEGIN,     /* decode the message, record or claim the wk_run_state */
	PH_DECISIONS, /* turn the recorded decisions into tool results */
	PH_MODEL,     /* send the conversation to the model */
	PH_REPLY,     /* read the model's answer */
	PH_CALLS,     /* run or gate the tool calls of the answer */
	PH_EXISTS,    /* a requested run is in the table already */
} wk_phase;

/* What a database step leads to. */
typedef enum wk_next {
	NX_STEP,  /* another database step, on this thread */
	NX_MODEL, /* the request is posted; the fetch thread has the wk_task */
	NX_TOOL,  /* a tool is to run (tool, fetch or stdio thread) */
	NX_WRITE, /* a write (t->write) is to be made, with others' */
	NX_END,   /* the message is done with */
} wk_next;

/* What a task waits to have written with other tasks' writes of its kind:
 * its run's start, its continue's claim, its outcome, or a tool's result. */
typedef enum wk_write_kind {
	WR_NONE,
	WR_START,
	WR_CLAIM,
	WR_PAUSE,
	WR_FINISH,
	WR_TOOL
} wk_write_kind;

typedef struct wk_task {
	/* the task's place in a queue (the database or tool pool's, the
	 * writes'): it is in one at a time, asserted by sl_queue */
	wk_job job;
	wk_env *env;
	rd_kafka_message_t *m;
	bool is_run;
	sl_event ev;
	bool have_ev;
	wk_phase ph;
	wk_run_state r;
	int turn;
	int attempt;         /* failures so far (sl_consume_failed) */
	sl_status failed_st; /* the failure whose dead-letter is retried */

	/* a continue: the requirements of the pause, and the next to apply */
	wk_decision *decisions;
	int ndecisions, dec_i;
	json_t *claimed_tools; /* call ids whose tool runs the claim claimed */
	bool claim_lost;       /* the batched claim did not claim the wk_run_state */

	/* the model call in progress and its answer */
	int model_attempt;
	sl_status model_st;
	long model_status;
	char *model_body;
	size_t model_len;
	char model_err[256];
	wk_model_reply reply;
	bool have_reply;
	size_t call_i;
	wk_pending_req *reqs;
	size_t nreq;

	/* the tool run in progress */
	const sl_tool *tool;
	const char *call_id; /* borrowed from the reply or the decisions */
	json_t *tool_args;
	char *tool_result;
	wk_phase after_tool;

	/* the write to make */
	wk_write_kind write;
	bool out_ok;
	char *out_text;

	char err[1024];
} wk_task;

/* wk_run.c */

/* On a database thread (a wk_pool job): the task's steps until it waits or
 * ends. */
void wk_task_step(void *task, void *state);

/* The message is done with: its offset may be stored, and the message
 * that waited for it starts. Frees t. */
void wk_task_end(wk_task *t);

/* Ends the message after a failed step: dead-letters bad input, starts
 * over after a back-off on transient failures, stops the worker on fatal
 * ones. */
void wk_task_failed(wk_task *t, sl_status st);

/* The tool's result is recorded: it goes into the conversation and the
 * task goes on where the tool was asked for. */
void wk_task_tool_recorded(wk_task *t);

/* Continues' claims and reads, several at once (wk_store_claims()):
 * wk_claim_row() is a task's row, i its place in the batch (NULL when the
 * event names no requirements by id), and wk_claims_done() takes each task
 * on with what was read for it (read[i], claimed[i]). */
json_t *wk_claim_row(const wk_task *t, int i);
void wk_claims_done(void *state, wk_task **ts, size_t n, wk_continue *read, const bool *claimed);

/* wk_write.c */

/* Queues t's write (t->write) to be made with other tasks' of its kind;
 * the task is the queue's until then. */
void wk_write_queue(wk_task *t);

#endif
