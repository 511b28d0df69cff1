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

#include <jansson.h>
#include <libpq-fe.h>

/* The worker's name in processed_events. */
#define CONSUMER "sluice-worker"

/* A run as the loop sees it; strings are owned. */
typedef struct run {
	char *run_id;
	char *session_id;
	char *user_id;
	const sl_agent *agent;
	json_t *items; /* the conversation, Responses API input items */
} run;

/* A tool call that waits for a person. */
typedef struct pending_req {
	char id[37];
	const sl_tool *tool;
	json_t *call; /* the function_call item (borrowed from the reply) */
	json_t *args; /* owned */
} pending_req;

/* The next database step of a task. */
typedef enum phase {
	PH_BEGIN,     /* decode the message, record or claim the run */
	PH_DECISIONS, /* turn the recorded decisions into tool results */
	PH_MODEL,     /* send the conversation to the model */
	PH_REPLY,     /* read the model's answer */
	PH_CALLS,     /* run or gate the tool calls of the answer */
	PH_EXISTS,    /* a requested run is in the table already */
} phase;

/* What a database step leads to. */
typedef enum next {
	NX_STEP,    /* another database step, on this thread */
	NX_MODEL,   /* the request is posted; the fetch thread has the task */
	NX_TOOL,    /* a tool is to run (tool, fetch or stdio thread) */
	NX_OUTCOME, /* the run's outcome is to be written, with others' */
	NX_END,     /* the message is done with */
} next;

/* What a task waits to have written with other tasks' writes of its kind:
 * its run's start, its continue's claim, its outcome, or a tool's result. */
typedef enum outcome { OUT_NONE, OUT_START, OUT_CLAIM, OUT_PAUSE, OUT_FINISH, OUT_TOOL } outcome;

typedef struct task {
	wk_env *env;
	rd_kafka_message_t *m;
	bool is_run;
	sl_event ev;
	bool have_ev;
	phase ph;
	run r;
	int turn;
	int attempt;         /* failures so far (sl_consume_failed) */
	sl_status failed_st; /* the failure whose dead-letter is retried */

	/* a continue: the requirements of the pause, and the next to apply */
	PGresult *decisions; /* CONTINUE_READ's rows */
	int ndecisions, dec_i;
	json_t *claimed_tools; /* call ids whose tool runs the claim claimed */
	bool claim_lost;       /* the batched claim did not claim the run */

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
	pending_req *reqs;
	size_t nreq;

	/* the tool run in progress */
	const sl_tool *tool;
	const char *call_id; /* borrowed from the reply or the decisions */
	json_t *tool_args;
	char *tool_result;
	phase after_tool;

	/* the outcome to write, and the queue of outcomes waiting */
	outcome outcome;
	bool out_ok;
	char *out_text;
	struct task *next_out;

	char err[1024];
} task;

/* wk_run.c */

/* On a database thread (a wk_pool job): the task's steps until it waits or
 * ends. */
void wk_task_step(void *task, void *state);

/* The message is done with: its offset may be stored, and the message
 * that waited for it starts. Frees t. */
void wk_task_end(task *t);

/* Ends the message after a failed step: dead-letters bad input, starts
 * over after a back-off on transient failures, stops the worker on fatal
 * ones. */
void wk_task_failed(task *t, sl_status st);

/* The tool's result is recorded: it goes into the conversation and the
 * task goes on where the tool was asked for. */
void wk_task_tool_recorded(task *t);

/* Continues' claims and reads, several in one statement (its parameters:
 * the rows, CONSUMER, env->agent_tools); wk_claim_row() is a task's row, i
 * its place in the batch (NULL when the event names no requirements by
 * id), and wk_claims_done() takes each task on with what the statement
 * answered. */
extern const char *const wk_claim_read_sql;
json_t *wk_claim_row(const task *t, int i);
void wk_claims_done(void *state, task **ts, size_t n, PGresult *res);

/* wk_write.c */

/* Queues t's write (t->outcome) to be made with other tasks' of its kind;
 * the task is the queue's until then. */
void wk_write_queue(task *t);

#endif
