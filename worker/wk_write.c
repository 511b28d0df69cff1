/*
 * wk_write.c - the state changes of runs, written for many runs in one
 * statement (group commit): a run's start, a continue's claim, a tool's
 * result, and a run's outcome - a pause with its requirements, or its end -
 * with its outbox row, which goes out once committed (sl_relay_publish).
 * A task that has a write to make waits in the queue (wk_write_queue)
 * until a flush job on a database thread takes it with the others waiting
 * then (the first WRITE_BATCH; another job takes the rest meanwhile),
 * writes those of each kind in one statement (wk_store.h), and hands each
 * task on.
 */
#include "wk_write.h"
#include "sl_db.h"
#include "sl_log.h"
#include "sl_relay.h"
#include "wk_store.h"
#include "wk_task.h"

#include <assert.h>
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

static json_t *requirement_json(const wk_pending_req *p)
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
static sl_status outcome_missed(PGconn *db, wk_task *t)
{
	bool processed;
	sl_status st = wk_store_processed(db, t->ev.id, &processed, t->err, sizeof(t->err));

	if (st)
		return st;
	if (!processed)
		return sl_err(t->err, sizeof(t->err), SL_CONFLICT, "run %s is no longer running",
		              t->r.run_id);
	sl_info("run %s: event %s was processed before; nothing to do", t->r.run_id, t->ev.id);
	return SL_OK;
}

/* The requirements of a pause as rows for jsonb_to_recordset(); list gets
 * their public shape, for the paused event. */
static json_t *requirement_rows(const wk_task *t, json_t *list)
{
	json_t *rows = json_array();

	for (size_t i = 0; i < t->nreq; i++) {
		const wk_pending_req *q = &t->reqs[i];
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
static json_t *pause_row(const wk_task *t)
{
	const wk_env *env = t->env;
	const wk_run_state *r = &t->r;
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
static json_t *finish_row(const wk_task *t)
{
	const wk_env *env = t->env;
	const wk_run_state *r = &t->r;
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

/* A run start as a row of wk_store_starts(). */
static json_t *start_row(const wk_task *t)
{
	const wk_run_state *r = &t->r;

	return json_pack("{s:s, s:s, s:s, s:s?, s:s, s:O, s:s}", "run_id", r->run_id, "session_id",
	                 r->session_id, "agent_id", r->agent->id, "user_id", r->user_id, "input",
	                 json_string_value(json_object_get(t->ev.data, "input")), "messages",
	                 r->items, "event_id", t->ev.id);
}

/* Most writes one flush takes. */
#define WRITE_BATCH 128

/* Writes waiting for a database thread (starts, claims, tool results,
 * outcomes), each task by its job's place (t->job.node); a flush job is
 * queued on the database pool by the write that finds the queue empty, and
 * by a flush that leaves some. */
struct wk_writes {
	sl_queue q;
};

wk_writes *wk_writes_new(void)
{
	wk_writes *w = sl_calloc(1, sizeof(*w));

	sl_queue_init(&w->q, NULL, NULL);
	return w;
}

/* Gives up the queued writes (the worker is stopping). */
static void writes_drop(void *arg)
{
	wk_writes *w = ((wk_env *)arg)->writes;
	sl_queue_node *node = sl_queue_take_all(&w->q);

	while (node) {
		wk_task *t = sl_queue_entry(node, wk_task, job.node);
		node = node->next;
		wk_run_drop(t);
	}
}

void wk_writes_free(wk_env *env)
{
	if (!env->writes)
		return;
	writes_drop(env);
	sl_queue_destroy(&env->writes->q);
	free(env->writes);
	env->writes = NULL;
}

static void flush_job(void *arg, void *state);

/* Queues t's write, and a flush job if none is queued. Under load the
 * writes of many runs gather while the flush job waits its turn. */
void wk_write_queue(wk_task *t)
{
	wk_env *env = t->env;
	bool first;

	if (!sl_queue_push(&env->writes->q, &t->job.node, &first)) {
		wk_run_drop(t); /* never closed: cannot be */
		return;
	}
	if (first && !wk_pool_push(env->db, flush_job, writes_drop, env))
		writes_drop(env);
}

/* After a batch: the run's outcome is written (in_batch) or was not. */
static void outcome_done(PGconn *db, wk_task *t, bool written)
{
	sl_status st = SL_OK;

	if (!written)
		st = outcome_missed(db, t);
	else if (t->write == WR_PAUSE)
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
static void fail_all(wk_task **ts, size_t n, sl_status st, const char *why)
{
	for (size_t i = 0; i < n; i++) {
		snprintf(ts[i]->err, sizeof(ts[i]->err), "%s", why);
		wk_task_failed(ts[i], st);
	}
}

/* Orders tasks by run id. */
static int by_run_id(const void *a, const void *b)
{
	const wk_task *x = *(wk_task *const *)a, *y = *(wk_task *const *)b;

	return strcmp(json_string_value(json_object_get(x->ev.data, "run_id")),
	              json_string_value(json_object_get(y->ev.data, "run_id")));
}

/* A write of tasks of kind, as one statement's row. */
static json_t *outcome_row(const wk_task *t, wk_write_kind kind)
{
	if (kind == WR_START)
		return start_row(t);
	if (kind == WR_PAUSE)
		return pause_row(t);
	if (kind == WR_FINISH)
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
static void write_batch(void *state, wk_task **ts, size_t n, wk_write_kind kind)
{
	PGconn *db = ((wk_db *)state)->conn;
	wk_env *env = ts[0]->env;
	json_t *rows = json_array(), *written = NULL;
	wk_continue *read = NULL;
	bool *claimed = NULL;
	char *text;
	PGresult *res = NULL;
	char errbuf[1024];
	sl_status st;

	/* Claims lock paused runs, as the approver's decisions do: both in run
	 * id order (the statement takes its rows in the order given), so that
	 * neither waits for the other in a cycle. */
	if (kind == WR_CLAIM)
		qsort(ts, n, sizeof(*ts), by_run_id);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(rows, kind == WR_CLAIM ? wk_claim_row(ts[i], (int)i)
		                                             : outcome_row(ts[i], kind));
	text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	switch (kind) {
	case WR_START: st = wk_store_starts(db, text, &written, errbuf, sizeof(errbuf)); break;
	case WR_CLAIM:
		read = sl_calloc(n, sizeof(*read));
		claimed = sl_calloc(n, sizeof(*claimed));
		st = wk_store_claims(db, text, env->agent_tools, n, read, claimed, errbuf,
		                     sizeof(errbuf));
		break;
	case WR_TOOL: st = wk_store_tool_results(db, text, errbuf, sizeof(errbuf)); break;
	case WR_PAUSE:
		st = wk_store_pauses(db, text, env->topic_approvals, &res, errbuf, sizeof(errbuf));
		break;
	default:
		st = wk_store_finishes(db, text, env->topic_results, &res, errbuf, sizeof(errbuf));
		break;
	}
	free(text);
	if (st == SL_OK && kind == WR_TOOL) {
		for (size_t i = 0; i < n; i++) {
			ts[i]->write = WR_NONE;
			wk_task_tool_recorded(ts[i]);
			wk_task_step(ts[i], state);
		}
	} else if (st == SL_OK && kind == WR_CLAIM) {
		wk_claims_done(state, ts, n, read, claimed);
	} else if (st == SL_OK && kind == WR_START) {
		for (size_t i = 0; i < n; i++) {
			wk_task *t = ts[i];
			/* a run id twice in one batch: the first inserts it, the
			 * second finds it */
			bool fresh = json_object_get(written, t->r.run_id) != NULL;

			json_object_del(written, t->r.run_id);
			t->write = WR_NONE;
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
		written = json_object();
		for (int i = 0; i < PQntuples(res); i++)
			json_object_set_new(written, PQgetvalue(res, i, 0), json_true());
		for (size_t i = 0; i < n; i++)
			outcome_done(db, ts[i], json_object_get(written, ts[i]->ev.id) != NULL);
	} else if (st != SL_RETRY && n > 1) {
		sl_warn("%zu writes could not be made together (%s); one at a time", n, errbuf);
		for (size_t i = 0; i < n; i++)
			write_batch(state, &ts[i], 1, kind);
	} else {
		fail_all(ts, n, st, errbuf);
	}
	if (read)
		for (size_t i = 0; i < n; i++)
			wk_continue_clear(&read[i]);
	free(read);
	free(claimed);
	PQclear(res);
	json_decref(written);
}

/* On a database thread: writes the queued writes, WRITE_BATCH at a time,
 * those of each kind in one statement. */
static void flush_job(void *arg, void *state)
{
	wk_env *env = arg;
	PGconn *db = ((wk_db *)state)->conn;
	sl_queue_node *taken[WRITE_BATCH];
	wk_task *batch[5][WRITE_BATCH];
	size_t nb[5] = {0, 0, 0, 0, 0}, n, left;
	char errbuf[256];

	n = sl_queue_pop(&env->writes->q, taken, WRITE_BATCH, false, &left);
	for (size_t i = 0; i < n; i++) {
		wk_task *t = sl_queue_entry(taken[i], wk_task, job.node);
		int k = t->write == WR_PAUSE    ? 0
		        : t->write == WR_FINISH ? 1
		        : t->write == WR_TOOL   ? 2
		        : t->write == WR_START  ? 3
		                                : 4;
		batch[k][nb[k]++] = t;
	}
	/* the rest goes to another thread while this one writes */
	if (left && !wk_pool_push(env->db, flush_job, writes_drop, env))
		writes_drop(env);
	if (sl_db_ensure(db, errbuf, sizeof(errbuf))) {
		for (int k = 0; k < 5; k++)
			fail_all(batch[k], nb[k], SL_RETRY, errbuf);
		return;
	}
	/* starts, claims and tool results first: their runs go on */
	if (nb[3])
		write_batch(state, batch[3], nb[3], WR_START);
	if (nb[4])
		write_batch(state, batch[4], nb[4], WR_CLAIM);
	if (nb[2])
		write_batch(state, batch[2], nb[2], WR_TOOL);
	if (nb[0])
		write_batch(state, batch[0], nb[0], WR_PAUSE);
	if (nb[1])
		write_batch(state, batch[1], nb[1], WR_FINISH);
}
