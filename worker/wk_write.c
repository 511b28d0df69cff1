/*
 * wk_write.c - the state changes of runs, written for many runs in one
 * statement (group commit): a run's start, a continue's claim, a tool's
 * result, and a run's outcome - a pause with its requirements, or its end -
 * with its outbox row, which goes out once committed (sl_relay_publish).
 * A task that has a write to make waits in the queue (wk_write_queue)
 * until a flush job on a database thread takes it with the others waiting
 * then (the first OUTCOME_BATCH; another job takes the rest meanwhile),
 * writes those of each kind in one statement, and hands each task on.
 */
#include "wk_write.h"
#include "sl_db.h"
#include "sl_log.h"
#include "sl_relay.h"
#include "wk_task.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A run start as a row of start_sql. */
static json_t *start_row(const task *t)
{
	const run *r = &t->r;

	return json_pack("{s:s, s:s, s:s, s:s?, s:s, s:O, s:s}", "run_id", r->run_id, "session_id",
	                 r->session_id, "agent_id", r->agent->id, "user_id", r->user_id, "input",
	                 json_string_value(json_object_get(t->ev.data, "input")), "messages",
	                 r->items, "event_id", t->ev.id);
}

/* A request whose event id was processed already starts nothing: it was
 * either redelivered (its run exists) or reuses another request's id (no
 * run: begin_existing dead-letters it). (OFFSET 0, as in the other
 * statements: a probe of the key per row, never an anti-join over the
 * whole table.) */
static const char *const start_sql =
    "INSERT INTO runs (run_id, session_id, agent_id, user_id, status, input, messages) "
    "SELECT run_id, session_id, agent_id, user_id, 'running', input, messages "
    "FROM jsonb_to_recordset($1::jsonb) AS x(run_id text, session_id text, agent_id text, "
    "user_id text, input text, messages jsonb, event_id text) "
    "WHERE NOT EXISTS (SELECT 1 FROM processed_events p WHERE p.consumer = $2 AND "
    "p.event_id = x.event_id OFFSET 0) "
    "ON CONFLICT (run_id) DO NOTHING RETURNING run_id";

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
		wk_run_drop(t);
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
void wk_write_queue(task *t)
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
		wk_task_failed(t, st);
	else
		wk_task_end(t);
}

/* Ends each of n tasks as a failed step with the reason why. */
static void fail_all(task **ts, size_t n, sl_status st, const char *why)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(ts[i]->err, sizeof(ts[i]->err), "%s", why);
		wk_task_failed(ts[i], st);
	}
}

/* Orders tasks by run id. */
static int by_run_id(const void *a, const void *b)
{
	const task *x = *(task *const *)a, *y = *(task *const *)b;

	return strcmp(json_string_value(json_object_get(x->ev.data, "run_id")),
	              json_string_value(json_object_get(y->ev.data, "run_id")));
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
		json_array_append_new(rows, kind == OUT_CLAIM ? wk_claim_row(ts[i], (int)i)
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
		                : kind == OUT_CLAIM ? wk_claim_read_sql
		                : kind == OUT_PAUSE ? pause_sql
		                                    : finish_sql,
		                kind == OUT_START ? 2 : 3, p, &res, errbuf, sizeof(errbuf));
	free(text);
	json_decref(rows);
	if (st == SL_OK && kind == OUT_TOOL) {
		for (size_t i = 0; i < n; i++) {
			ts[i]->outcome = OUT_NONE;
			wk_task_tool_recorded(ts[i]);
			wk_task_step(ts[i], state);
		}
	} else if (st == SL_OK && kind == OUT_CLAIM) {
		wk_claims_done(state, ts, n, res);
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
			wk_task_step(t, state);
		}
	} else if (st == SL_OK) {
		/* pauses and finishes: an event in the outbox for each row, which
		 * goes out now */
		sl_relay_publish(env->relay, db, res, 1);
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
