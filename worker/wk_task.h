/*
 * wk_task.h - the inside of a task: what wk_run.c (the agent loop: a
 * message decoded, a continue claimed and its decisions applied, the model
 * and the tools, and what each write's result leads to) keeps about one
 * message, and wk_rows.c makes the rows of its writes from. Not for the
 * rest of the worker: wk_run.h is the contract.
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
	PH_BEGIN,     /* decode the message, record or claim the run */
	PH_DECISIONS, /* turn the recorded decisions into tool results */
	PH_MODEL,     /* send the conversation to the model */
	PH_REPLY,     /* read the model's answer */
	PH_CALLS,     /* run or gate the tool calls of the answer */
	PH_EXISTS,    /* a requested run is in the table already */
} wk_phase;

/* What a database step leads to. */
typedef enum wk_next {
	NX_STEP,  /* another database step, on this thread */
	NX_MODEL, /* the request is posted; the fetch thread has the task */
	NX_TOOL,  /* a tool is to run (tool, fetch or stdio thread) */
	NX_WRITE, /* a write (t->wr.kind) is to be made, with others' */
	NX_END,   /* the message is done with */
} wk_next;

typedef struct wk_task {
	/* the task's places in queues: job in the database or tool pool's,
	 * wr in the writes'; it is in one queue at a time (asserted) */
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
	int deferrals;       /* starts put off by the agent's max_pending_approvals */
	sl_status failed_st; /* the failure whose dead-letter is retried */

	/* a continue: the requirements of the pause, and the next to apply */
	wk_decision *decisions;
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
	wk_pending_req *reqs;
	size_t nreq;

	/* the tool run in progress */
	const sl_tool *tool;
	const char *call_id; /* borrowed from the reply or the decisions */
	json_t *tool_args;
	char *tool_result;
	wk_phase after_tool;
	int tool_attempt; /* an idempotent http tool's requests that got no answer */

	/* the write to make, and for an outcome what it says */
	wk_write wr;
	bool out_ok;
	char *out_text;

	char err[1024];
} wk_task;

/* wk_rows.c */

/* The row of the task's write (t->wr.kind), for wk_write_queue(). */
json_t *wk_write_row(const wk_task *t);

/* The row of a continue's claim; NULL when the event's decisions do not
 * name requirements by id. */
json_t *wk_claim_row(const wk_task *t);

#endif
