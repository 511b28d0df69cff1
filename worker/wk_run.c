/*
 * wk_run.c - the agent loop as a task that moves between the database
 * threads, the fetch thread and the tool threads, and the run state
 * transitions it writes.
 *
 * A task's database steps run in a loop on one database thread until the
 * task has to wait (for the model or a tool) or ends; each wait hands it to
 * another part, which hands it back to the database pool when done. A
 * transient failure anywhere starts the message over after a back-off:
 * every step is idempotent against what PostgreSQL already holds (the run
 * row, the continue's claim, tool_executions, processed_events).
 */
#include "wk_run.h"
#include "sl_db.h"
#include "sl_kafka.h"
#include "sl_log.h"
#include "sl_outbox.h"
#include "wk_model.h"
#include "wk_tool.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSUMER "sluice-worker"

/* Back-offs between model attempts; a model call fails after the last. */
static const long model_backoff_ms[] = {200, 1000, 3000};

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
	long retry_ms; /* back-off of the next start-over */

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

static void db_job(void *arg, void *state);

static void run_clear(run *r)
{
	free(r->run_id);
	free(r->session_id);
	free(r->user_id);
	json_decref(r->items);
	memset(r, 0, sizeof(*r));
}

/* Forgets everything learnt since the message arrived. */
static void task_reset(task *t)
{
	run_clear(&t->r);
	PQclear(t->decisions);
	t->decisions = NULL;
	t->ndecisions = 0;
	json_decref(t->claimed_tools);
	t->claimed_tools = NULL;
	t->claim_lost = false;
	if (t->have_reply)
		wk_model_reply_free(&t->reply);
	t->have_reply = false;
	for (size_t i = 0; i < t->nreq; i++)
		json_decref(t->reqs[i].args);
	free(t->reqs);
	t->reqs = NULL;
	t->nreq = 0;
	free(t->model_body);
	t->model_body = NULL;
	json_decref(t->tool_args);
	t->tool_args = NULL;
	free(t->tool_result);
	t->tool_result = NULL;
	t->tool = NULL;
	t->call_id = NULL;
	t->turn = 0;
	t->dec_i = 0;
	t->call_i = 0;
	t->model_attempt = 0;
	free(t->out_text);
	t->out_text = NULL;
	t->outcome = OUT_NONE;
	t->ph = PH_BEGIN;
}

static void task_free(task *t)
{
	task_reset(t);
	if (t->have_ev)
		sl_event_clear(&t->ev);
	if (t->m)
		rd_kafka_message_destroy(t->m);
	free(t);
}

char *wk_run_agent_tools(const sl_agents *agents)
{
	json_t *map = json_object();
	char *text;

	for (size_t i = 0; i < agents->n; i++) {
		const sl_agent *a = &agents->agents[i];
		json_t *names = json_array();
		for (size_t k = 0; k < a->ntools; k++)
			json_array_append_new(names, json_string(a->tools[k].name));
		json_object_set_new(map, a->id, names);
	}
	text = json_dumps(map, JSON_COMPACT);
	json_decref(map);
	return text;
}

void wk_run_drop(void *arg)
{
	task_free(arg);
}

static void to_db(task *t)
{
	if (!wk_pool_push(t->env->db, db_job, wk_run_drop, t))
		task_free(t);
}

void wk_run_start(wk_env *env, rd_kafka_message_t *m)
{
	task *t = sl_calloc(1, sizeof(*t));

	t->env = env;
	t->m = m;
	t->is_run = !strcmp(rd_kafka_topic_name(m->rkt), env->topic_runs);
	t->ph = PH_BEGIN;
	t->retry_ms = 100;
	to_db(t);
}

/* The message is done with: its offset may be stored, and the message
 * that waited for it starts. */
static void task_end(task *t)
{
	wk_env *env = t->env;
	rd_kafka_message_t *waiting = wk_flight_done(env->flight, t->m);

	t->m = NULL;
	task_free(t);
	if (waiting)
		wk_run_start(env, waiting);
}

static void on_retry_timer(void *arg)
{
	to_db(arg);
}

static const char *str_or_null(const char *s)
{
	return s && *s ? s : NULL;
}

static void append_output(json_t *items, const char *call_id, const char *output)
{
	json_array_append_new(items, json_pack("{s:s, s:s, s:s}", "type", "function_call_output",
	                                       "call_id", call_id, "output", output));
}

/*
 * Claims a tool call in tool_executions before it runs, so that it runs at
 * most once. *run is set when this task is to run it; otherwise *output is
 * what the model is told: the recorded result of a finished run, or that an
 * interrupted one is not run again.
 */
static sl_status tool_claim(PGconn *db, task *t, const sl_tool *tool, const char *call_id,
                            bool *run, char **output)
{
	const char *claim[] = {t->r.run_id, call_id, tool->name};
	PGresult *res;
	sl_status st;

	*run = false;
	*output = NULL;
	st = sl_db_exec(db,
	                "INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status) "
	                "VALUES ($1, $2, $3, 'started') ON CONFLICT DO NOTHING",
	                3, claim, &res, t->err, sizeof(t->err));
	if (st)
		return st;
	*run = !strcmp(PQcmdTuples(res), "1");
	PQclear(res);
	if (*run)
		return SL_OK;
	st = sl_db_exec(db,
	                "SELECT status, result FROM tool_executions "
	                "WHERE run_id = $1 AND tool_call_id = $2",
	                2, claim, &res, t->err, sizeof(t->err));
	if (st)
		return st;
	if (PQntuples(res) && !strcmp(PQgetvalue(res, 0, 0), "done")) {
		*output = sl_strdup(PQgetvalue(res, 0, 1));
		sl_info("run %s: tool %s call %s already ran; using its recorded result",
		        t->r.run_id, tool->name, call_id);
	} else {
		*output = sl_asprintf("error: an earlier attempt of tool %s was interrupted; "
		                      "it is not run again",
		                      tool->name);
		sl_warn("run %s: tool %s call %s was interrupted earlier; not run again",
		        t->r.run_id, tool->name, call_id);
	}
	PQclear(res);
	return SL_OK;
}

/* Sets the task up to run tool with args (taken), then come back to ph. */
static next run_tool(task *t, const sl_tool *tool, const char *call_id, json_t *args, phase ph)
{
	t->tool = tool;
	t->call_id = call_id;
	t->tool_args = args;
	t->after_tool = ph;
	sl_info("run %s: running tool %s (call %s)", t->r.run_id, tool->name, call_id);
	return NX_TOOL;
}

static void outcome_queue(task *t);

/* The tool's result is to be recorded, with other tasks' (group commit). */
static void tool_result_queue(task *t)
{
	t->outcome = OUT_TOOL;
	outcome_queue(t);
}

/* On a tool thread: a command tool. */
static void tool_job(void *arg, void *state)
{
	task *t = arg;
	char errbuf[512];

	(void)state;
	if (wk_tool_run_command(t->tool, t->tool_args, &t->tool_result, errbuf, sizeof(errbuf))) {
		sl_error("run %s: %s", t->r.run_id, errbuf);
		t->tool_result = sl_asprintf("error: tool %s could not be started", t->tool->name);
	}
	tool_result_queue(t);
}

/* On the fetch thread: an http tool answered, or could not be reached. */
static void on_http_tool_answer(void *arg, wk_fetch_result *res)
{
	task *t = arg;

	t->tool_result = wk_tool_http_result(t->tool, res->st, res->status, &res->body);
	tool_result_queue(t);
}

/* POSTs the tool's arguments through the fetch thread, so that a slow tool
 * endpoint holds no thread. Returns false when the worker is stopping. */
static bool post_http_tool(task *t)
{
	char *idem = sl_asprintf("Idempotency-Key: %s:%s", t->r.run_id, t->call_id);
	const char *headers[] = {"Content-Type: application/json", idem, NULL};
	bool ok = wk_fetch_post(t->env->fetch, t->tool->url, headers,
	                        json_dumps(t->tool_args, JSON_COMPACT), WK_TOOL_MAX_OUTPUT,
	                        t->tool->timeout_ms, on_http_tool_answer, t);

	free(idem);
	return ok;
}

/* On the stdio thread: a long-running tool process answered. */
static void on_stdio_answer(void *arg, char *result)
{
	task *t = arg;

	t->tool_result = result;
	tool_result_queue(t);
}

/* The tool's result is recorded: it goes into the conversation and the
 * task goes on where the tool was asked for. */
static void tool_recorded(task *t)
{
	append_output(t->r.items, t->call_id, t->tool_result);
	free(t->tool_result);
	t->tool_result = NULL;
	json_decref(t->tool_args);
	t->tool_args = NULL;
	if (t->after_tool == PH_DECISIONS)
		t->dec_i++;
	else
		t->call_i++;
	t->ph = t->after_tool;
}

/* Builds the {name, type, description} list of a user-input tool. */
static json_t *user_input_schema(const sl_tool *tool)
{
	json_t *schema = json_array(), *f;
	json_t *props = json_object_get(tool->parameters, "properties");
	size_t i;

	if (!tool->requires_user_input)
		return schema;
	json_array_foreach (tool->user_input_fields, i, f) {
		json_t *p = json_object_get(props, json_string_value(f));
		const char *type = json_string_value(json_object_get(p, "type"));
		const char *desc = json_string_value(json_object_get(p, "description"));
		json_array_append_new(schema, json_pack("{s:O, s:s, s:s}", "name", f, "type",
		                                        type ? type : "string", "description",
		                                        desc ? desc : ""));
	}
	return schema;
}

static json_t *requirement_json(const pending_req *p)
{
	const char *approval = sl_approval_name(p->tool->approval);

	return json_pack(
	    "{s:s, s:O, s:s, s:O, s:b, s:b, s:o, s:b, s:s?}", "id", p->id, "tool_call_id",
	    json_object_get(p->call, "call_id"), "tool_name", p->tool->name, "tool_args", p->args,
	    "needs_confirmation", p->tool->requires_confirmation, "needs_user_input",
	    p->tool->requires_user_input, "user_input_schema", user_input_schema(p->tool),
	    "external_execution", p->tool->external_execution, "approval_type", approval);
}

/*
 * An outcome statement changed nothing: either the consumed event had its
 * effect before (SL_OK: nothing to do) or the run is no longer running
 * (SL_CONFLICT: dead-lettered).
 */
static sl_status outcome_missed(PGconn *db, task *t)
{
	const char *p[] = {CONSUMER, t->ev.id};
	PGresult *res;
	sl_status st;

	st = sl_db_exec(db, "SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2",
	                2, p, &res, t->err, sizeof(t->err));
	if (st)
		return st;
	if (PQntuples(res)) {
		sl_info("run %s: event %s was processed before; nothing to do", t->r.run_id,
		        t->ev.id);
		st = SL_OK;
	} else {
		st = sl_err(t->err, sizeof(t->err), SL_CONFLICT, "run %s is no longer running",
		            t->r.run_id);
	}
	PQclear(res);
	return st;
}

/* The requirements of a pause as rows for jsonb_to_recordset(); list gets
 * their public shape, for the paused event. */
static json_t *requirement_rows(const task *t, json_t *list)
{
	json_t *rows = json_array();

	for (size_t i = 0; i < t->nreq; i++) {
		const pending_req *q = &t->reqs[i];
		json_t *rj = requirement_json(q);
		char approval_id[37];
		json_t *row;

		sl_uuid_v7(approval_id); /* used when the approval is "required" */
		row = json_pack(
		    "{s:s, s:s, s:i, s:O, s:s, s:O, s:b, s:b, s:O, s:b, s:s?, s:o, s:o}", "id",
		    q->id, "approval_id", approval_id, "position", (int)i, "tool_call_id",
		    json_object_get(q->call, "call_id"), "tool_name", q->tool->name, "tool_args",
		    q->args, "needs_confirmation", q->tool->requires_confirmation,
		    "needs_user_input", q->tool->requires_user_input, "user_input_schema",
		    json_object_get(rj, "user_input_schema"), "external_execution",
		    q->tool->external_execution, "approval_type",
		    sl_approval_name(q->tool->approval), "timeout_s",
		    q->tool->approval_timeout_s ? json_integer(q->tool->approval_timeout_s)
		                                : json_null(),
		    "tool_schema",
		    q->tool->parameters ? json_incref(q->tool->parameters) : json_object());

		assert(row && rj);
		json_array_append_new(rows, row);
		json_array_append_new(list, rj);
	}
	return rows;
}

/* A pause as a row of the pause statement. */
static json_t *pause_row(const task *t)
{
	const wk_env *env = t->env;
	const run *r = &t->r;
	json_t *list = json_array();
	json_t *reqs = requirement_rows(t, list);
	json_t *event =
	    sl_event_new(SL_EVENT_RUN_PAUSED, env->source, r->run_id,
	                 json_pack("{s:s, s:s, s:s, s:o}", "run_id", r->run_id, "session_id",
	                           r->session_id, "agent_id", r->agent->id, "requirements", list));
	char *payload = json_dumps(event, JSON_COMPACT);
	json_t *row = json_pack("{s:s, s:O, s:s, s:s, s:o}", "run_id", r->run_id, "messages",
	                        r->items, "event_id", t->ev.id, "payload", payload, "reqs", reqs);

	free(payload);
	json_decref(event);
	return row;
}

/* A completion or failure as a row of the finish statement. */
static json_t *finish_row(const task *t)
{
	const wk_env *env = t->env;
	const run *r = &t->r;
	const char *status = t->out_ok ? "completed" : "failed";
	const char *text = t->out_text;
	json_t *data = json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "run_id", r->run_id, "session_id",
	                         r->session_id, "status", status, "content",
	                         t->out_ok ? text : NULL, "error", t->out_ok ? NULL : text);
	json_t *event = sl_event_new(t->out_ok ? SL_EVENT_RUN_COMPLETED : SL_EVENT_RUN_FAILED,
	                             env->source, r->run_id, data);
	char *payload = json_dumps(event, JSON_COMPACT);
	json_t *row =
	    json_pack("{s:s, s:s, s:s?, s:s?, s:O, s:s, s:s}", "run_id", r->run_id, "status",
	              status, "output", t->out_ok ? text : NULL, "error", t->out_ok ? NULL : text,
	              "messages", r->items, "event_id", t->ev.id, "payload", payload);

	free(payload);
	json_decref(event);
	return row;
}

/*
 * The outcome statements: one statement (one implicit transaction) writes
 * the outcomes of several runs at once - group commit. For each run: its
 * new state, the consumed event and the outbox row, and for a pause its
 * requirements and a pending approval for each of type "required" (an
 * "audit" one is written only when it is resolved). A run whose event had
 * its effect before, or that is no longer running, is left alone; the
 * statement returns, for each run it wrote, the event id and the outbox row
 * (id, topic, key, payload), which its writer publishes (sl_relay_publish:
 * the row has a lease, SL_OUTBOX_LEASE).
 *
 * Plans: a batch is a few rows joined to tables by their keys, and must
 * stay index probes however big the tables grow. PostgreSQL guesses 100
 * rows for jsonb_to_recordset(), and with that it scans and hashes a whole
 * table (or all of a consumer's processed events) until the table is far
 * bigger than 100 probes - a cost that grows with the table. So the rows
 * come through sluice_batch() (migration 0004: estimated at 10), the
 * processed-event check is kept a probe per row ("OFFSET 0" stops it being
 * turned into a join), and the worker's connections do not choose
 * sequential scans (SL_DB_KEY_LOOKUPS): a plan prepared while a table was small
 * would otherwise scan it for ever after.
 */
static const char *const pause_sql =
    "WITH x AS (SELECT x.* FROM sluice_batch($1::jsonb) AS b(r), jsonb_to_record(b.r) AS "
    "x(run_id text, messages jsonb, "
    "event_id text, payload text, reqs jsonb)), "
    "upd AS (UPDATE runs r SET status = 'paused', messages = x.messages, "
    "pause_seq = r.pause_seq + 1, version = r.version + 1, updated_at = now() FROM x "
    "WHERE r.run_id = x.run_id AND r.status = 'running' AND NOT EXISTS "
    "(SELECT 1 FROM processed_events p WHERE p.consumer = $2 AND p.event_id = x.event_id "
    "OFFSET 0) "
    "RETURNING r.run_id, r.session_id, r.agent_id, r.user_id, r.status, r.pause_seq, "
    "x.event_id, x.payload, x.reqs), "
    "claim AS (INSERT INTO processed_events (consumer, event_id) SELECT $2, event_id FROM upd), "
    "reqs AS (INSERT INTO requirements (id, run_id, pause_seq, position, tool_call_id, "
    "tool_name, tool_args, needs_confirmation, needs_user_input, user_input_schema, "
    "external_execution, approval_type, expires_at, tool_schema) "
    "SELECT q.id, upd.run_id, upd.pause_seq, q.position, q.tool_call_id, q.tool_name, "
    "q.tool_args, q.needs_confirmation, q.needs_user_input, q.user_input_schema, "
    "q.external_execution, q.approval_type, now() + make_interval(secs => q.timeout_s), "
    "q.tool_schema FROM upd, jsonb_to_recordset(upd.reqs) AS q(id text, position int, "
    "tool_call_id text, tool_name text, tool_args jsonb, needs_confirmation boolean, "
    "needs_user_input boolean, user_input_schema jsonb, external_execution boolean, "
    "approval_type text, timeout_s int, tool_schema jsonb) "
    "RETURNING id, run_id, approval_type, pause_type, tool_name, tool_args, expires_at), "
    "aid AS (SELECT q.id, q.approval_id FROM upd, jsonb_to_recordset(upd.reqs) AS "
    "q(id text, approval_id text)), "
    "appr AS (INSERT INTO approvals (id, run_id, session_id, requirement_id, agent_id, "
    "user_id, approval_type, pause_type, status, tool_name, tool_args, expires_at, "
    "run_status) SELECT aid.approval_id, q.run_id, upd.session_id, q.id, "
    "upd.agent_id, upd.user_id, 'required', q.pause_type, 'pending', q.tool_name, "
    "q.tool_args, q.expires_at, upd.status FROM reqs q JOIN upd ON upd.run_id = q.run_id "
    "JOIN aid ON aid.id = q.id "
    "WHERE q.approval_type = 'required'), "
    "ob AS (INSERT INTO outbox (topic, key, payload, relay_after) SELECT $3, run_id, payload, "
    "now() + interval '" SL_OUTBOX_LEASE "' FROM upd RETURNING id, topic, key, payload) "
    "SELECT upd.event_id, ob.id, ob.topic, ob.key, ob.payload FROM upd "
    "JOIN ob ON ob.key = upd.run_id";

static const char *const finish_sql =
    "WITH x AS (SELECT x.* FROM sluice_batch($1::jsonb) AS b(r), jsonb_to_record(b.r) AS "
    "x(run_id text, status text, "
    "output text, error text, messages jsonb, event_id text, payload text)), "
    "upd AS (UPDATE runs r SET status = x.status, output = x.output, error = x.error, "
    "messages = x.messages, version = r.version + 1, updated_at = now() FROM x "
    "WHERE r.run_id = x.run_id AND r.status = 'running' AND NOT EXISTS "
    "(SELECT 1 FROM processed_events p WHERE p.consumer = $2 AND p.event_id = x.event_id "
    "OFFSET 0) "
    "RETURNING r.run_id, x.event_id, x.payload), "
    "claim AS (INSERT INTO processed_events (consumer, event_id) SELECT $2, event_id FROM upd), "
    "ob AS (INSERT INTO outbox (topic, key, payload, relay_after) SELECT $3, run_id, payload, "
    "now() + interval '" SL_OUTBOX_LEASE "' FROM upd RETURNING id, topic, key, payload) "
    "SELECT upd.event_id, ob.id, ob.topic, ob.key, ob.payload FROM upd "
    "JOIN ob ON ob.key = upd.run_id";

static const char *const tool_sql =
    "UPDATE tool_executions e SET status = 'done', result = x.result, finished_at = now() "
    "FROM sluice_batch($1::jsonb) AS b(r), "
    "jsonb_to_record(b.r) AS x(run_id text, call_id text, result text) "
    "WHERE e.run_id = x.run_id AND e.tool_call_id = x.call_id";

/*
 * Tool results are committed without waiting for the disk, in one round
 * trip. A recorded result is read only when a continue is taken up again
 * after a crash, and the run's next write that does wait (its pause or its
 * end) makes this one durable too: the log is flushed in order. A crash of
 * PostgreSQL in between may lose it; the tool call then reads as
 * interrupted (the model is told so, and the tool is not run again), as
 * when a worker stops between running a tool and recording its result. The
 * claim before the tool runs still waits: it is what keeps a tool from
 * running twice.
 */
static sl_status write_tool_results(PGconn *db, const char *rows, char *errbuf, size_t errsize)
{
	const sl_db_stmt q[4] = {{"BEGIN", 0, NULL},
	                         {"SET LOCAL synchronous_commit = off", 0, NULL},
	                         {tool_sql, 1, (const char *[]){rows}},
	                         {"COMMIT", 0, NULL}};
	PGresult *res[4];
	sl_status st = sl_db_pipeline(db, 4, q, res, errbuf, errsize);

	sl_db_rollback(db);
	for (int i = 0; i < 4; i++)
		PQclear(res[i]);
	return st;
}

/* Sets the task up to be completed (ok) or failed with text. */
static next to_finish(task *t, bool ok, const char *text)
{
	t->outcome = OUT_FINISH;
	t->out_ok = ok;
	free(t->out_text);
	t->out_text = sl_strdup(text ? text : "");
	return NX_OUTCOME;
}

/* Sets the task up to be failed with a formatted reason. */
static next to_fail(task *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static next to_fail(task *t, const char *fmt, ...)
{
	va_list ap;
	char why[1024];

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return to_finish(t, false, why);
}

/*
 * PH_BEGIN of a sluice.run.requested: the run is set up and queued to be
 * inserted with other runs' starts (group commit); then it goes to the
 * model, or to PH_EXISTS when the run was there already.
 */
static sl_status begin_requested(task *t, next *nx)
{
	json_t *d = t->ev.data;
	const char *agent_id = json_string_value(json_object_get(d, "agent_id"));
	const char *input = json_string_value(json_object_get(d, "input"));
	const char *run_id = str_or_null(json_string_value(json_object_get(d, "run_id")));
	const char *session_id = str_or_null(json_string_value(json_object_get(d, "session_id")));
	const char *user_id = str_or_null(json_string_value(json_object_get(d, "user_id")));
	run *r = &t->r;

	*nx = NX_END;
	r->agent = sl_agents_find(t->env->agents, agent_id);
	if (!r->agent)
		return sl_err(t->err, sizeof(t->err), SL_NOT_FOUND, "unknown agent %s", agent_id);
	/* Without a run id the event id names the run, so a redelivered event
	 * finds the run it started. */
	r->run_id = sl_strdup(run_id ? run_id : t->ev.id);
	r->session_id = sl_strdup(session_id ? session_id : r->run_id);
	r->user_id = user_id ? sl_strdup(user_id) : NULL;
	r->items = json_pack("[{s:s, s:s}]", "role", "user", "content", input);
	t->outcome = OUT_START;
	*nx = NX_OUTCOME;
	return SL_OK;
}

/* A run start as a row of start_sql. */
static json_t *start_row(const task *t)
{
	const run *r = &t->r;

	return json_pack("{s:s, s:s, s:s, s:s?, s:s, s:O}", "run_id", r->run_id, "session_id",
	                 r->session_id, "agent_id", r->agent->id, "user_id", r->user_id, "input",
	                 json_string_value(json_object_get(t->ev.data, "input")), "messages",
	                 r->items);
}

static const char *const start_sql =
    "INSERT INTO runs (run_id, session_id, agent_id, user_id, status, input, messages) "
    "SELECT run_id, session_id, agent_id, user_id, 'running', input, messages "
    "FROM jsonb_to_recordset($1::jsonb) AS x(run_id text, session_id text, agent_id text, "
    "user_id text, input text, messages jsonb) "
    "ON CONFLICT (run_id) DO NOTHING RETURNING run_id";

/* The start found the run in the table: a repeated request, or a
 * redelivery after a crash. A run still running is resumed from its stored
 * conversation; any other is left alone. */
static sl_status begin_existing(PGconn *db, task *t, next *nx)
{
	const char *agent_id = t->r.agent->id;
	const char *p[] = {t->r.run_id};
	run *r = &t->r;
	PGresult *res = NULL;
	sl_status st;

	*nx = NX_END;
	if ((st = sl_db_begin(db, t->err, sizeof(t->err))))
		goto out;
	st = sl_db_exec(db,
	                "SELECT status, messages, agent_id FROM runs WHERE run_id = $1 FOR UPDATE",
	                1, p, &res, t->err, sizeof(t->err));
	if (st)
		goto out;
	if (PQntuples(res) != 1) {
		st = sl_err(t->err, sizeof(t->err), SL_RETRY, "run %s vanished while it started",
		            r->run_id);
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 2), agent_id)) {
		st = sl_err(t->err, sizeof(t->err), SL_CONFLICT,
		            "run %s exists for another agent (%s)", r->run_id,
		            PQgetvalue(res, 0, 2));
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "running")) {
		bool fresh;
		sl_info("run %s is already %s; request %s ignored", r->run_id,
		        PQgetvalue(res, 0, 0), t->ev.id);
		if ((st = sl_inbox_claim(db, CONSUMER, t->ev.id, &fresh, t->err, sizeof(t->err))) ||
		    (st = sl_db_commit(db, t->err, sizeof(t->err))))
			goto out;
		goto out;
	}
	json_decref(r->items);
	r->items = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
	if (!json_is_array(r->items)) {
		st = sl_err(t->err, sizeof(t->err), SL_INVALID,
		            "run %s: stored messages are not a list", r->run_id);
		goto out;
	}
	if ((st = sl_db_commit(db, t->err, sizeof(t->err))))
		goto out;
	sl_info("run %s: resuming an interrupted start", r->run_id);
	t->ph = PH_MODEL;
	*nx = NX_STEP;
out:
	sl_db_rollback(db);
	PQclear(res);
	return st;
}

/* The tool a decided requirement (a row of the pause's requirements) runs:
 * confirmed, not expired, no external result, the tool still configured;
 * NULL otherwise. */
static const sl_tool *tool_to_run(const task *t, PGresult *reqs, int row)
{
	if (!strcmp(PQgetvalue(reqs, row, 4), "expired") || strcmp(PQgetvalue(reqs, row, 5), "t") ||
	    !PQgetisnull(reqs, row, 8))
		return NULL;
	return sl_agent_tool(t->r.agent, PQgetvalue(reqs, row, 2));
}

/* A continue's read: the requirements of its run's pause with their
 * decisions (columns 0-9, one row each, by position; one row of NULLs when
 * there are none), and on each row the run (RUN_COL on) and whether the
 * event was processed. */
#define CONTINUE_READ                                                                            \
	"SELECT q.id, q.tool_call_id, q.tool_name, q.tool_args, q.status, q.confirmed, q.note, " \
	"q.user_input, q.external_result, q.edited_args, u.status, u.messages, u.pause_seq, "    \
	"u.agent_id, u.session_id, u.user_id, u.claim_event, "                                   \
	"EXISTS (SELECT 1 FROM processed_events WHERE consumer = $2 AND event_id = $3) "         \
	"FROM runs u LEFT JOIN requirements q ON q.run_id = u.run_id "                           \
	"AND q.pause_seq = u.pause_seq WHERE u.run_id = $1 ORDER BY q.position"
#define RUN_COL 10

/*
 * Continues' claims and reads, several in one statement. Each row of $1
 * ({i, run_id, event_id, ids}) claims its run when the run is in the pause
 * the event resolves: the event names exactly the pause's requirements
 * (ids), none is pending, the event (of consumer $2) was not processed, the
 * run's agent is configured here and its conversation is a list. The run
 * moves to running and the tool runs its decisions make are claimed in
 * tool_executions (confirmed, not expired, no external result, the tool
 * configured for the agent: $3, each agent's tool names). Returns, for each
 * claimed row, CONTINUE_READ's columns, the call ids claimed (CLAIMED_COL)
 * and i (CLAIMED_COL + 1); of two continues of one run, one claims it.
 *
 * Plans: as pause_sql's (sluice_batch(), the processed-event check kept a
 * probe per row).
 */
static const char *const claim_read_sql =
    "WITH x AS (SELECT x.* FROM sluice_batch($1::jsonb) AS b(r), jsonb_to_record(b.r) AS "
    "x(i int, run_id text, event_id text, ids jsonb)), "
    "u AS (SELECT x.i, x.event_id, u.run_id, u.pause_seq FROM x JOIN runs u "
    "ON u.run_id = x.run_id WHERE u.status = 'paused' "
    "AND jsonb_typeof(u.messages) = 'array' AND $3::jsonb ? u.agent_id "
    "AND NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = $2 "
    "AND p.event_id = x.event_id OFFSET 0) "
    "AND NOT EXISTS (SELECT 1 FROM requirements q WHERE q.run_id = u.run_id "
    "AND q.pause_seq = u.pause_seq AND (q.status = 'pending' OR NOT x.ids ? q.id)) "
    "AND (SELECT count(*) FROM requirements q WHERE q.run_id = u.run_id "
    "AND q.pause_seq = u.pause_seq) = jsonb_array_length(x.ids) "
    "AND (SELECT count(DISTINCT e) FROM jsonb_array_elements_text(x.ids) AS e) = "
    "jsonb_array_length(x.ids)), "
    "c AS (UPDATE runs r SET status = 'running', claim_event = u.event_id, "
    "version = r.version + 1, updated_at = now() FROM u WHERE r.run_id = u.run_id "
    "AND r.status = 'paused' AND r.pause_seq = u.pause_seq "
    "RETURNING u.i, r.run_id, r.status, r.messages, r.pause_seq, r.agent_id, r.session_id, "
    "r.user_id, r.claim_event), "
    "t AS (INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status) "
    "SELECT q.run_id, q.tool_call_id, q.tool_name, 'started' FROM c JOIN requirements q "
    "ON q.run_id = c.run_id AND q.pause_seq = c.pause_seq WHERE q.status <> 'expired' "
    "AND q.confirmed AND q.external_result IS NULL AND ($3::jsonb -> c.agent_id) ? q.tool_name "
    "ON CONFLICT DO NOTHING RETURNING run_id, tool_call_id) "
    "SELECT q.id, q.tool_call_id, q.tool_name, q.tool_args, q.status, q.confirmed, q.note, "
    "q.user_input, q.external_result, q.edited_args, c.status, c.messages, c.pause_seq, "
    "c.agent_id, c.session_id, c.user_id, c.claim_event, false, "
    "(SELECT coalesce(json_agg(t.tool_call_id), '[]') FROM t WHERE t.run_id = c.run_id), c.i "
    "FROM c LEFT JOIN requirements q ON q.run_id = c.run_id AND q.pause_seq = c.pause_seq "
    "ORDER BY c.i, q.position";
#define CLAIMED_COL (RUN_COL + 8)

/* The same claim for a run whose requirements were checked under its lock:
 * moves it from the pause read ($2) to running and claims the tool runs
 * ($4: [{call_id, tool_name}]); returns the call ids claimed (no row when
 * the run was not in that pause). */
static const char *const claim_sql =
    "WITH c AS (UPDATE runs u SET status = 'running', claim_event = $3, "
    "version = u.version + 1, updated_at = now() "
    "WHERE u.run_id = $1 AND u.status = 'paused' AND u.pause_seq = $2::int "
    "RETURNING u.run_id), "
    "t AS (INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status) "
    "SELECT c.run_id, y.call_id, y.tool_name, 'started' FROM c, "
    "jsonb_to_recordset($4::jsonb) AS y(call_id text, tool_name text) "
    "ON CONFLICT DO NOTHING RETURNING tool_call_id) "
    "SELECT (SELECT coalesce(json_agg(tool_call_id), '[]') FROM t) FROM c";

/* Takes the run and the requirements of its pause from a continue's read
 * (res, whose rows the task keeps). */
static sl_status take_continue(task *t, const char *run_id, PGresult *res)
{
	run *r = &t->r;

	r->run_id = sl_strdup(run_id);
	r->session_id = sl_strdup(PQgetvalue(res, 0, RUN_COL + 4));
	r->user_id = sl_db_value(res, 0, RUN_COL + 5);
	r->agent = sl_agents_find(t->env->agents, PQgetvalue(res, 0, RUN_COL + 3));
	if (!r->agent)
		return sl_err(t->err, sizeof(t->err), SL_NOT_FOUND,
		              "run %s: agent %s is no longer configured", run_id,
		              PQgetvalue(res, 0, RUN_COL + 3));
	r->items = json_loads(PQgetvalue(res, 0, RUN_COL + 1), 0, NULL);
	if (!json_is_array(r->items))
		return sl_err(t->err, sizeof(t->err), SL_INVALID,
		              "run %s: stored messages are not a list", run_id);
	t->decisions = res;
	t->ndecisions = PQgetisnull(res, 0, 0) ? 0 : PQntuples(res);
	t->dec_i = 0;
	return SL_OK;
}

/* The task's row of claim_read_sql (i its place in the batch); NULL when
 * the event's decisions do not name requirements by id (the locked check
 * says what is wrong). */
static json_t *claim_row(const task *t, int i)
{
	json_t *decisions = json_object_get(t->ev.data, "decisions"), *dec;
	json_t *ids = json_array();
	size_t k;

	json_array_foreach (decisions, k, dec) {
		json_t *id = json_object_get(dec, "requirement_id");
		if (!json_is_string(id)) {
			json_decref(ids);
			return NULL;
		}
		json_array_append(ids, id);
	}
	return json_pack("{s:i, s:O, s:s, s:o}", "i", i, "run_id",
	                 json_object_get(t->ev.data, "run_id"), "event_id", t->ev.id, "ids", ids);
}

/* The place in the batch of claim_read_sql's row. */
static int claim_place(const PGresult *res, int row)
{
	return (int)strtol(PQgetvalue(res, row, CLAIMED_COL + 1), NULL, 10);
}

/* Gives the task its claim's rows of res (rows from *row on, of place i),
 * as a result of its own; *row moves past them. */
static sl_status take_claim(task *t, PGresult *res, int *row, int i)
{
	const char *run_id = json_string_value(json_object_get(t->ev.data, "run_id"));
	PGresult *own = PQcopyResult(res, PG_COPYRES_ATTRS);
	sl_status st;
	int n = 0;

	if (!own)
		return sl_err(t->err, sizeof(t->err), SL_RETRY, "out of memory");
	for (; *row < PQntuples(res) && claim_place(res, *row) == i; (*row)++) {
		for (int col = 0; col < PQnfields(res); col++) {
			bool null = PQgetisnull(res, *row, col);
			if (!PQsetvalue(own, n, col, null ? NULL : PQgetvalue(res, *row, col),
			                null ? -1 : PQgetlength(res, *row, col))) {
				PQclear(own);
				return sl_err(t->err, sizeof(t->err), SL_RETRY, "out of memory");
			}
		}
		n++;
	}
	t->claimed_tools = json_loads(PQgetvalue(own, 0, CLAIMED_COL), 0, NULL);
	if ((st = take_continue(t, run_id, own))) /* cannot be: the statement checked */
		PQclear(own);
	return st;
}

/*
 * Checks a sluice.run.continue event against what the approver recorded,
 * claims the paused run (a run is continued once) and loads the
 * requirements of the pause with their decisions, holding the run's row
 * from the read to the claim, so that it waits for whoever is changing the
 * run. This is the continue claim_read_sql did not claim: processed
 * before, taken up again after a crash, refused, or written while a writer
 * of the run was in the middle of its transaction.
 */
static sl_status check_continue(PGconn *db, task *t, next *nx)
{
	const char *run_id = json_string_value(json_object_get(t->ev.data, "run_id"));
	json_t *decisions = json_object_get(t->ev.data, "decisions"), *dec;
	const char *q[] = {run_id, CONSUMER, t->ev.id};
	PGresult *res = NULL;
	sl_status st;
	bool resuming;
	size_t i;
	int n;

	*nx = NX_END;
	/* whoever is changing the run finishes first, and the read (a
	 * statement of its own) sees what they did */
	if ((st = sl_db_begin(db, t->err, sizeof(t->err))) ||
	    (st = sl_db_exec(db, "SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE", 1, q, NULL,
	                     t->err, sizeof(t->err))))
		goto out;
	st = sl_db_exec(db, CONTINUE_READ, 3, q, &res, t->err, sizeof(t->err));
	if (st)
		goto out;
	if (PQntuples(res) >= 1 && !strcmp(PQgetvalue(res, 0, RUN_COL + 7), "t")) {
		sl_info("run %s: continue event %s was processed before; ignored", run_id,
		        t->ev.id);
		goto out;
	}
	if (PQntuples(res) == 0) {
		st = sl_err(t->err, sizeof(t->err), SL_NOT_FOUND, "continue for unknown run %s",
		            run_id);
		goto out;
	}
	/* This very event claimed the run before and its worker stopped before
	 * finishing: carry on from the pause (tools that ran are not run again). */
	resuming = !strcmp(PQgetvalue(res, 0, RUN_COL), "running") &&
	           !strcmp(PQgetvalue(res, 0, RUN_COL + 6), t->ev.id);
	if (!resuming && strcmp(PQgetvalue(res, 0, RUN_COL), "paused")) {
		st = sl_err(t->err, sizeof(t->err), SL_CONFLICT,
		            "run %s is %s, not paused; continue refused", run_id,
		            PQgetvalue(res, 0, RUN_COL));
		goto out;
	}
	n = PQgetisnull(res, 0, 0) ? 0 : PQntuples(res);
	/* Act only on what the approver recorded: the event names exactly the
	 * requirements of this pause, and every one of them is resolved. */
	json_array_foreach (decisions, i, dec) {
		const char *rid = json_string_value(json_object_get(dec, "requirement_id"));
		bool found = false;
		for (int k = 0; k < n && !found && rid; k++)
			found = !strcmp(PQgetvalue(res, k, 0), rid);
		if (!found) {
			st = sl_err(t->err, sizeof(t->err), SL_INVALID,
			            "run %s: continue names requirement %s, which the run is not "
			            "waiting for",
			            run_id, rid ? rid : "(none)");
			goto out;
		}
	}
	if ((int)json_array_size(decisions) != n) {
		st = sl_err(t->err, sizeof(t->err), SL_INVALID,
		            "run %s: continue carries %zu decisions for %d requirements", run_id,
		            json_array_size(decisions), n);
		goto out;
	}
	for (int k = 0; k < n; k++) {
		if (!strcmp(PQgetvalue(res, k, 4), "pending")) {
			st = sl_err(t->err, sizeof(t->err), SL_CONFLICT,
			            "run %s: requirement %s is not resolved; continue refused",
			            run_id, PQgetvalue(res, k, 0));
			goto out;
		}
	}
	if ((st = take_continue(t, run_id, res)))
		goto out;
	res = NULL; /* the task's now */
	/* The claim: only one continue moves the run from paused to running. */
	if (!resuming) {
		json_t *tools = json_array();
		const char *p[4];
		char *tooltext;
		PGresult *claim;
		bool claimed;

		/* The tools the decisions run are claimed in tool_executions with
		 * the run (each runs at most once); apply_decisions runs the ones
		 * claimed then without asking again. */
		for (int k = 0; k < n; k++) {
			const sl_tool *tool = tool_to_run(t, t->decisions, k);
			if (tool)
				json_array_append_new(tools,
				                      json_pack("{s:s, s:s}", "call_id",
				                                PQgetvalue(t->decisions, k, 1),
				                                "tool_name", tool->name));
		}
		tooltext = json_dumps(tools, JSON_COMPACT);
		json_decref(tools);
		p[0] = run_id;
		p[1] = PQgetvalue(t->decisions, 0, RUN_COL + 2);
		p[2] = t->ev.id;
		p[3] = tooltext;
		st = sl_db_exec(db, claim_sql, 4, p, &claim, t->err, sizeof(t->err));
		free(tooltext);
		if (st)
			goto out;
		claimed = PQntuples(claim) == 1;
		t->claimed_tools = claimed ? json_loads(PQgetvalue(claim, 0, 0), 0, NULL) : NULL;
		PQclear(claim);
		if (!claimed) {
			/* changed since it was read (it cannot when locked) */
			st = sl_err(t->err, sizeof(t->err), SL_CONFLICT,
			            "run %s changed while its continue was checked", run_id);
			goto out;
		}
	}
	if ((st = sl_db_commit(db, t->err, sizeof(t->err))))
		goto out;
	if (resuming)
		sl_warn("run %s: resuming continue %s, which an earlier attempt left unfinished",
		        run_id, t->ev.id);
	else
		sl_info("run %s: continuing with %d decision(s)", run_id, n);
	t->ph = PH_DECISIONS;
	*nx = NX_STEP;
out:
	if (st) {
		PQclear(t->decisions);
		t->decisions = NULL;
		json_decref(t->claimed_tools);
		t->claimed_tools = NULL;
	}
	sl_db_rollback(db);
	PQclear(res);
	return st;
}

/*
 * PH_BEGIN of a sluice.run.continue: queued to be claimed and read with
 * other continues (claim_read_sql), which is all a continue the approver
 * wrote after committing its decisions needs. Any other - that statement
 * did not claim it - is decided by the locked check: a writer of the run
 * may have been in the middle of its transaction, or the event is refused.
 */
static sl_status begin_continue(PGconn *db, task *t, next *nx)
{
	json_t *row;

	if (!t->claim_lost && (row = claim_row(t, 0))) {
		json_decref(row);
		t->outcome = OUT_CLAIM;
		*nx = NX_OUTCOME;
		return SL_OK;
	}
	return check_continue(db, t, nx);
}

/* Whether the continue's claim claimed call_id's tool run for this task. */
static bool claimed_here(const task *t, const char *call_id)
{
	json_t *id;
	size_t i;

	json_array_foreach (t->claimed_tools, i, id)
		if (!strcmp(json_string_value(id), call_id))
			return true;
	return false;
}

/* What the model is told for a decided requirement whose tool does not run
 * here (tool_to_run() gave NULL). */
static char *decision_text(PGresult *reqs, int row)
{
	const char *name = PQgetvalue(reqs, row, 2);
	const char *note = PQgetisnull(reqs, row, 6) ? NULL : PQgetvalue(reqs, row, 6);

	if (!strcmp(PQgetvalue(reqs, row, 4), "expired"))
		return sl_asprintf("The tool call %s was not approved in time and was not run.",
		                   name);
	if (strcmp(PQgetvalue(reqs, row, 5), "t"))
		return sl_asprintf("The tool call %s was rejected by the user and was not run.%s%s",
		                   name, note ? " Reason: " : "", note ? note : "");
	if (!PQgetisnull(reqs, row, 8))
		return sl_strdup(PQgetvalue(reqs, row, 8)); /* external result */
	return sl_asprintf("error: tool %s is no longer configured", name);
}

/*
 * PH_DECISIONS: the tool result the model sees for each resolved
 * requirement, in order; a confirmed tool is run (once).
 */
static sl_status apply_decisions(PGconn *db, task *t, next *nx)
{
	PGresult *reqs = t->decisions;

	*nx = NX_STEP;
	for (; t->dec_i < t->ndecisions; t->dec_i++) {
		int row = t->dec_i;
		const char *call_id = PQgetvalue(reqs, row, 1);
		const sl_tool *tool = tool_to_run(t, reqs, row);
		char *output = NULL;

		if (tool) {
			bool run = claimed_here(t, call_id);
			json_t *args;

			if (!run) {
				sl_status st = tool_claim(db, t, tool, call_id, &run, &output);
				if (st)
					return st;
			}
			if (run) {
				/* the arguments as the person edited them, else as the
				 * model gave them, with the person's input filled in */
				args = json_loads(
				    PQgetvalue(reqs, row, PQgetisnull(reqs, row, 9) ? 3 : 9), 0,
				    NULL);
				if (!PQgetisnull(reqs, row, 7)) {
					json_t *values =
					    json_loads(PQgetvalue(reqs, row, 7), 0, NULL);
					json_object_update(args, values);
					json_decref(values);
				}
				*nx = run_tool(t, tool, call_id, args, PH_DECISIONS);
				return SL_OK;
			}
		} else {
			output = decision_text(reqs, row);
		}
		append_output(t->r.items, call_id, output);
		free(output);
	}
	t->ph = PH_MODEL;
	return SL_OK;
}

static void on_model_answer(void *arg, wk_fetch_result *res)
{
	task *t = arg;

	t->model_st = res->st;
	t->model_status = res->status;
	t->model_body = res->body;
	t->model_len = res->len;
	res->body = NULL;
	snprintf(t->model_err, sizeof(t->model_err), "%s", res->err);
	t->ph = PH_REPLY;
	to_db(t);
}

/* PH_MODEL: posts the conversation; the fetch thread has the task then. */
static next send_to_model(task *t)
{
	wk_model_request req;

	wk_model_request_build(t->env->cfg, t->r.agent, t->r.items, &req);
	if (!wk_fetch_post(t->env->fetch, req.url, req.headers, req.body, WK_MODEL_MAX_RESPONSE,
	                   WK_MODEL_TIMEOUT_MS, on_model_answer, t)) {
		req.body = NULL; /* freed by the fetch */
		wk_model_request_free(&req);
		task_free(t);
		return NX_MODEL;
	}
	req.body = NULL;
	wk_model_request_free(&req);
	return NX_MODEL;
}

static void on_model_backoff(void *arg)
{
	task *t = arg;

	t->ph = PH_MODEL;
	to_db(t);
}

/* PH_REPLY: decodes the answer, or retries the call, or fails the run. */
static sl_status read_reply(task *t, next *nx)
{
	sl_status st = t->model_st;
	char errbuf[512];
	size_t nbackoff = sizeof(model_backoff_ms) / sizeof(model_backoff_ms[0]);

	if (st == SL_TOO_BIG)
		st = sl_err(errbuf, sizeof(errbuf), SL_INVALID, "model answer is over %d bytes",
		            WK_MODEL_MAX_RESPONSE);
	else if (st)
		snprintf(errbuf, sizeof(errbuf), "%s", t->model_err);
	else
		st = wk_model_answer(t->r.agent, t->model_status, t->model_body, t->model_len,
		                     &t->reply, errbuf, sizeof(errbuf));
	free(t->model_body);
	t->model_body = NULL;
	if (st == SL_RETRY && (size_t)t->model_attempt < nbackoff) {
		long ms = model_backoff_ms[t->model_attempt++];
		sl_warn("run %s: model call failed (%s); retrying in %ld ms", t->r.run_id, errbuf,
		        ms);
		*nx = NX_MODEL;
		if (!wk_fetch_after(t->env->fetch, ms, on_model_backoff, t))
			task_free(t);
		return SL_OK;
	}
	*nx = NX_END;
	if (st) {
		*nx = to_fail(t, "model call failed: %s", errbuf);
		return SL_OK;
	}
	t->model_attempt = 0;
	t->have_reply = true;
	json_array_extend(t->r.items, t->reply.items);
	if (json_array_size(t->reply.calls) == 0) {
		*nx = to_finish(t, true, t->reply.text);
		return SL_OK;
	}
	t->reqs = sl_calloc(json_array_size(t->reply.calls), sizeof(*t->reqs));
	t->nreq = 0;
	t->call_i = 0;
	t->ph = PH_CALLS;
	*nx = NX_STEP;
	return SL_OK;
}

/* PH_CALLS: runs the answer's ungated tools in order, gates the others,
 * then pauses the run or asks the model again. */
static sl_status handle_calls(PGconn *db, task *t, next *nx)
{
	json_t *calls = t->reply.calls;
	sl_status st;

	*nx = NX_STEP;
	for (; t->call_i < json_array_size(calls); t->call_i++) {
		json_t *call = json_array_get(calls, t->call_i);
		const char *call_id = json_string_value(json_object_get(call, "call_id"));
		const char *name = json_string_value(json_object_get(call, "name"));
		const char *argstr = json_string_value(json_object_get(call, "arguments"));
		const sl_tool *tool = sl_agent_tool(t->r.agent, name);
		json_t *args = json_loads(argstr, JSON_DECODE_ANY, NULL);
		char *output = NULL;

		if (!tool) {
			output = sl_asprintf("error: there is no tool named %s", name);
		} else if (!json_is_object(args)) {
			output =
			    sl_asprintf("error: the arguments of %s are not a JSON object", name);
		} else if (sl_tool_gated(tool)) {
			pending_req *q = &t->reqs[t->nreq++];
			sl_uuid_v7(q->id);
			q->tool = tool;
			q->call = call;
			q->args = args;
			continue;
		} else {
			bool run;
			if ((st = tool_claim(db, t, tool, call_id, &run, &output))) {
				json_decref(args);
				return st;
			}
			if (run) {
				*nx = run_tool(t, tool, call_id, args, PH_CALLS);
				return SL_OK;
			}
		}
		append_output(t->r.items, call_id, output);
		free(output);
		json_decref(args);
	}
	*nx = NX_END;
	if (t->nreq) {
		t->outcome = OUT_PAUSE;
		*nx = NX_OUTCOME;
		return SL_OK;
	}
	for (size_t i = 0; i < t->nreq; i++)
		json_decref(t->reqs[i].args);
	free(t->reqs);
	t->reqs = NULL;
	wk_model_reply_free(&t->reply);
	t->have_reply = false;
	if (++t->turn >= WK_MAX_TURNS) {
		*nx = to_fail(t, "the model made more than %d tool-call rounds", WK_MAX_TURNS);
		return SL_OK;
	}
	t->ph = PH_MODEL;
	*nx = NX_STEP;
	return SL_OK;
}

/* PH_BEGIN: decodes the message, then starts the run's part. */
static sl_status begin(PGconn *db, task *t, next *nx)
{
	static const char *run_types[] = {SL_EVENT_RUN_REQUESTED, NULL};
	static const char *continue_types[] = {SL_EVENT_RUN_CONTINUE, NULL};
	const rd_kafka_message_t *m = t->m;
	sl_status st;

	*nx = NX_END;
	if (!t->have_ev) {
		st = sl_event_parse(m->payload ? m->payload : "", m->len,
		                    t->is_run ? run_types : continue_types, &t->ev, t->err,
		                    sizeof(t->err));
		if (st)
			return st;
		t->have_ev = true;
	}
	if ((st = sl_db_ensure(db, t->err, sizeof(t->err))))
		return st;
	return t->is_run ? begin_requested(t, nx) : begin_continue(db, t, nx);
}

/* Ends the message after a failed step: dead-letters bad input, starts
 * over after a back-off on transient failures, stops the worker on fatal
 * ones. */
static void step_failed(task *t, sl_status st)
{
	const rd_kafka_message_t *m = t->m;
	const char *topic = rd_kafka_topic_name(m->rkt);
	volatile sig_atomic_t *stopping = t->env->stopping;

	if (st == SL_RETRY) {
		if (*stopping) {
			task_free(t); /* delivered again after the restart */
			return;
		}
		long ms = t->retry_ms;

		sl_warn("%s[%d]@%lld: transient failure, retrying in %ld ms: %s", topic,
		        (int)m->partition, (long long)m->offset, ms, t->err);
		task_reset(t);
		t->retry_ms = ms < 5000 ? ms * 2 : 10000;
		if (!wk_fetch_after(t->env->fetch, ms, on_retry_timer, t))
			task_free(t);
		return;
	}
	if (st == SL_FATAL) {
		sl_error("%s[%d]@%lld: %s; stopping", topic, (int)m->partition,
		         (long long)m->offset, t->err);
		*stopping = 1;
		task_free(t);
		return;
	}
	while (sl_kafka_dead_letter(t->env->producer, t->env->cfg, m, t->err) != SL_OK) {
		if (*stopping) {
			task_free(t);
			return;
		}
		sl_sleep_ms(1000);
	}
	task_end(t);
}

/* Most outcomes one statement writes. */
#define OUTCOME_BATCH 128

/* Writes waiting for a database thread (starts, claims, outcomes, tool
 * results); one flush job is queued on
 * the database pool while the queue is not empty. */
struct wk_outcomes {
	pthread_mutex_t mu;
	task *head, *tail;
	bool flush_queued;
};

wk_outcomes *wk_outcomes_new(void)
{
	wk_outcomes *q = sl_calloc(1, sizeof(*q));

	pthread_mutex_init(&q->mu, NULL);
	return q;
}

/* Gives up the queued outcomes (the worker is stopping). */
static void outcomes_drop(void *arg)
{
	wk_outcomes *q = ((wk_env *)arg)->outcomes;
	task *t;

	pthread_mutex_lock(&q->mu);
	t = q->head;
	q->head = q->tail = NULL;
	q->flush_queued = false;
	pthread_mutex_unlock(&q->mu);
	while (t) {
		task *next = t->next_out;
		task_free(t);
		t = next;
	}
}

void wk_outcomes_free(wk_env *env)
{
	if (!env->outcomes)
		return;
	outcomes_drop(env);
	pthread_mutex_destroy(&env->outcomes->mu);
	free(env->outcomes);
	env->outcomes = NULL;
}

static void flush_job(void *arg, void *state);

/* Queues t's outcome, and a flush job if none is queued. Under load the
 * outcomes of many runs gather while the flush job waits its turn. */
static void outcome_queue(task *t)
{
	wk_env *env = t->env;
	wk_outcomes *q = env->outcomes;
	bool schedule;

	t->next_out = NULL;
	pthread_mutex_lock(&q->mu);
	if (q->tail)
		q->tail->next_out = t;
	else
		q->head = t;
	q->tail = t;
	schedule = !q->flush_queued;
	q->flush_queued = true;
	pthread_mutex_unlock(&q->mu);
	if (schedule && !wk_pool_push(env->db, flush_job, outcomes_drop, env))
		outcomes_drop(env);
}

/* After a batch: the run's outcome is written (in_batch) or was not. */
static void outcome_done(PGconn *db, task *t, bool written)
{
	sl_status st = SL_OK;

	if (!written)
		st = outcome_missed(db, t);
	else if (t->outcome == OUT_PAUSE)
		sl_info("run %s: paused with %zu requirement(s)", t->r.run_id, t->nreq);
	else if (t->out_ok)
		sl_info("run %s: completed", t->r.run_id);
	else
		sl_warn("run %s: failed: %s", t->r.run_id, t->out_text);
	if (st)
		step_failed(t, st);
	else
		task_end(t);
}

/* Ends each of n tasks as a failed step with the reason why. */
static void fail_all(task **ts, size_t n, sl_status st, const char *why)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(ts[i]->err, sizeof(ts[i]->err), "%s", why);
		step_failed(ts[i], st);
	}
}

/* Orders tasks by run id. */
static int by_run_id(const void *a, const void *b)
{
	const task *x = *(task *const *)a, *y = *(task *const *)b;

	return strcmp(json_string_value(json_object_get(x->ev.data, "run_id")),
	              json_string_value(json_object_get(y->ev.data, "run_id")));
}

/* Continues' claims (claim_read_sql): each task that claimed its run goes
 * on to its decisions with the rows it read; the others to the locked
 * check (claim_lost). */
static void claims_done(void *state, task **ts, size_t n, PGresult *res)
{
	int row = 0;

	for (size_t i = 0; i < n; i++) {
		task *t = ts[i];
		sl_status st;

		t->outcome = OUT_NONE;
		while (row < PQntuples(res) && claim_place(res, row) < (int)i)
			row++;
		if (row < PQntuples(res) && claim_place(res, row) == (int)i) {
			if ((st = take_claim(t, res, &row, (int)i))) {
				step_failed(t, st);
				continue;
			}
			sl_info("run %s: continuing with %d decision(s)", t->r.run_id,
			        t->ndecisions);
			t->ph = PH_DECISIONS;
		} else {
			t->claim_lost = true;
			t->ph = PH_BEGIN;
		}
		db_job(t, state);
	}
}

/* A write of tasks of kind, as one statement's row. */
static json_t *outcome_row(const task *t, outcome kind)
{
	if (kind == OUT_START)
		return start_row(t);
	if (kind == OUT_PAUSE)
		return pause_row(t);
	if (kind == OUT_FINISH)
		return finish_row(t);
	return json_pack("{s:s, s:s, s:s}", "run_id", t->r.run_id, "call_id", t->call_id, "result",
	                 t->tool_result);
}

/*
 * Writes what tasks (n of them, all of one kind) wait to have written in
 * one statement, then ends each task, or for a tool result takes it on
 * here. A statement that fails transiently starts every task over; one
 * that fails otherwise is tried again one task at a time, so that a bad
 * write fails alone.
 */
static void write_outcomes(void *state, task **ts, size_t n, outcome kind)
{
	PGconn *db = ((wk_db *)state)->conn;
	wk_env *env = ts[0]->env;
	json_t *rows = json_array(), *written = json_object();
	char *text;
	const char *p[3];
	PGresult *res = NULL;
	char errbuf[1024];
	sl_status st;

	/* Claims lock paused runs, as the approver's decisions do: both in run
	 * id order (the statement takes its rows in the order given), so that
	 * neither waits for the other in a cycle. */
	if (kind == OUT_CLAIM)
		qsort(ts, n, sizeof(*ts), by_run_id);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(rows, kind == OUT_CLAIM ? claim_row(ts[i], (int)i)
		                                              : outcome_row(ts[i], kind));
	text = json_dumps(rows, JSON_COMPACT);
	p[0] = text;
	p[1] = CONSUMER;
	p[2] = kind == OUT_PAUSE   ? env->topic_approvals
	       : kind == OUT_CLAIM ? env->agent_tools
	                           : env->topic_results;
	if (kind == OUT_TOOL)
		st = write_tool_results(db, text, errbuf, sizeof(errbuf));
	else
		st = sl_db_exec(db,
		                kind == OUT_START   ? start_sql
		                : kind == OUT_CLAIM ? claim_read_sql
		                : kind == OUT_PAUSE ? pause_sql
		                                    : finish_sql,
		                kind == OUT_START ? 1 : 3, p, &res, errbuf, sizeof(errbuf));
	free(text);
	json_decref(rows);
	if (st == SL_OK && kind == OUT_TOOL) {
		for (size_t i = 0; i < n; i++) {
			ts[i]->outcome = OUT_NONE;
			tool_recorded(ts[i]);
			db_job(ts[i], state);
		}
	} else if (st == SL_OK && kind == OUT_CLAIM) {
		claims_done(state, ts, n, res);
	} else if (st == SL_OK && kind == OUT_START) {
		for (int i = 0; i < PQntuples(res); i++)
			json_object_set_new(written, PQgetvalue(res, i, 0), json_true());
		for (size_t i = 0; i < n; i++) {
			task *t = ts[i];
			/* a run id twice in one batch: the first inserts it, the
			 * second finds it */
			bool fresh = json_object_get(written, t->r.run_id) != NULL;

			json_object_del(written, t->r.run_id);
			t->outcome = OUT_NONE;
			t->ph = fresh ? PH_MODEL : PH_EXISTS;
			if (fresh)
				sl_info("run %s: started for agent %s", t->r.run_id,
				        t->r.agent->id);
			db_job(t, state);
		}
	} else if (st == SL_OK) {
		/* pauses and finishes: an event in the outbox for each row, which
		 * goes out now */
		sl_relay_publish(env->relay, res, 1);
		for (int i = 0; i < PQntuples(res); i++)
			json_object_set_new(written, PQgetvalue(res, i, 0), json_true());
		for (size_t i = 0; i < n; i++)
			outcome_done(db, ts[i], json_object_get(written, ts[i]->ev.id) != NULL);
	} else if (st != SL_RETRY && n > 1) {
		sl_warn("%zu writes could not be made together (%s); one at a time", n, errbuf);
		for (size_t i = 0; i < n; i++)
			write_outcomes(state, &ts[i], 1, kind);
	} else {
		fail_all(ts, n, st, errbuf);
	}
	PQclear(res);
	json_decref(written);
}

/* On a database thread: writes the queued writes, OUTCOME_BATCH at a time,
 * those of each kind in one statement. */
static void flush_job(void *arg, void *state)
{
	wk_env *env = arg;
	wk_outcomes *q = env->outcomes;
	PGconn *db = ((wk_db *)state)->conn;
	task *batch[5][OUTCOME_BATCH];
	size_t nb[5] = {0, 0, 0, 0, 0}, total = 0;
	bool more;
	char errbuf[256];

	pthread_mutex_lock(&q->mu);
	while (q->head && total < OUTCOME_BATCH) {
		task *t = q->head;
		int k = t->outcome == OUT_PAUSE    ? 0
		        : t->outcome == OUT_FINISH ? 1
		        : t->outcome == OUT_TOOL   ? 2
		        : t->outcome == OUT_START  ? 3
		                                   : 4;

		q->head = t->next_out;
		batch[k][nb[k]++] = t;
		total++;
	}
	if (!q->head)
		q->tail = NULL;
	more = q->head != NULL;
	q->flush_queued = more;
	pthread_mutex_unlock(&q->mu);
	/* the rest goes to another thread while this one writes */
	if (more && !wk_pool_push(env->db, flush_job, outcomes_drop, env))
		outcomes_drop(env);
	if (sl_db_ensure(db, errbuf, sizeof(errbuf))) {
		for (int k = 0; k < 5; k++)
			fail_all(batch[k], nb[k], SL_RETRY, errbuf);
		return;
	}
	/* starts, claims and tool results first: their runs go on */
	if (nb[3])
		write_outcomes(state, batch[3], nb[3], OUT_START);
	if (nb[4])
		write_outcomes(state, batch[4], nb[4], OUT_CLAIM);
	if (nb[2])
		write_outcomes(state, batch[2], nb[2], OUT_TOOL);
	if (nb[0])
		write_outcomes(state, batch[0], nb[0], OUT_PAUSE);
	if (nb[1])
		write_outcomes(state, batch[1], nb[1], OUT_FINISH);
}

/* On a database thread: the task's steps until it waits or ends. */
static void db_job(void *arg, void *state)
{
	task *t = arg;
	PGconn *db = ((wk_db *)state)->conn;
	next nx = NX_STEP;
	sl_status st = SL_OK;

	while (st == SL_OK && nx == NX_STEP) {
		switch (t->ph) {
		case PH_BEGIN: st = begin(db, t, &nx); break;
		case PH_DECISIONS: st = apply_decisions(db, t, &nx); break;
		case PH_MODEL: nx = send_to_model(t); break;
		case PH_REPLY: st = read_reply(t, &nx); break;
		case PH_CALLS: st = handle_calls(db, t, &nx); break;
		case PH_EXISTS: st = begin_existing(db, t, &nx); break;
		}
	}
	if (st) {
		step_failed(t, st);
		return;
	}
	if (nx == NX_OUTCOME) {
		outcome_queue(t);
	} else if (nx == NX_TOOL && t->tool->executor == SL_EXEC_HTTP) {
		if (!post_http_tool(t))
			task_free(t);
	} else if (nx == NX_TOOL && t->tool->executor == SL_EXEC_STDIO) {
		if (!wk_stdio_call(t->env->stdio, t->tool, t->r.run_id, t->call_id, t->tool_args,
		                   on_stdio_answer, t))
			task_free(t);
	} else if (nx == NX_TOOL) {
		if (!wk_pool_push(t->env->tools, tool_job, wk_run_drop, t))
			task_free(t);
	} else if (nx == NX_END) {
		task_end(t);
	}
	/* NX_MODEL: the fetch thread has the task (or it was given up) */
}
