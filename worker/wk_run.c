/*
 * wk_run.c - the agent loop as a task that moves between the database
 * threads, the fetch thread and the tool threads. Every transition of a
 * task is here: the writes it leads to are made by wk_write.c (with other
 * tasks', rows from wk_rows.c, statements in wk_store.c), which hands each
 * result back to wk_run_written().
 *
 * A task's database steps run in a loop on one database thread until the
 * task has to wait (for the model or a tool) or ends; each wait hands it to
 * another part, which hands it back to the database pool when done. A
 * transient failure anywhere starts the message over after a back-off:
 * every step is idempotent against what PostgreSQL already holds (the run
 * row, the continue's claim, tool_executions, processed_events).
 */
#include "wk_run.h"
#include "sl_receipt.h"
#include "sl_consume.h"
#include "sl_db.h"
#include "sl_kafka.h"
#include "sl_log.h"
#include "sl_outbox.h"
#include "sl_text.h"
#include "wk_model.h"
#include "wk_store.h"

#include <stdatomic.h>
#include "wk_task.h"
#include "wk_tool.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Back-offs between model attempts; a model call fails after the last. */
static const long model_backoff_ms[] = {200, 1000, 3000};
/* Back-offs before an idempotent http tool that gave no answer is asked
 * again (same Idempotency-Key); about a minute in all with its time-outs. */
static const long tool_backoff_ms[] = {500, 1000, 2000, 4000, 8000};

static void task_step(void *task, void *db_state);
static void task_failed(wk_task *t, sl_status st);

static void run_clear(wk_run_state *r)
{
	free(r->run_id);
	free(r->session_id);
	free(r->user_id);
	json_decref(r->items);
	memset(r, 0, sizeof(*r));
}

/* Forgets everything learnt since the message arrived. */
static void task_reset(wk_task *t)
{
	run_clear(&t->r);
	wk_decisions_free(t->decisions, t->ndecisions);
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
	t->wr.kind = WR_NONE;
	t->ph = PH_BEGIN;
}

static void task_free(wk_task *t)
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

/* The task goes to a database thread. (A task is in one queue at a time:
 * the pools' through its job, the writes' through its write.) */
static void to_db(wk_task *t)
{
	assert(!t->wr.node.in);
	if (!wk_pool_push_job(t->env->db, &t->job, task_step, wk_run_drop, t))
		task_free(t);
}

/* The task's write (t->wr.kind) is queued, to be made with others'. */
static void queue_write(wk_task *t)
{
	assert(!t->job.node.in);
	t->wr.row = wk_write_row(t);
	/* (a claim's run is the event's until the claim reads it) */
	t->wr.run_id =
	    t->r.run_id ? t->r.run_id : json_string_value(json_object_get(t->ev.data, "run_id"));
	t->wr.event_id = t->ev.id;
	wk_write_queue(t->env->writes, &t->wr);
}

void wk_run_start(wk_env *env, rd_kafka_message_t *m)
{
	wk_task *t = sl_calloc(1, sizeof(*t));

	t->env = env;
	t->m = m;
	t->is_run = !strcmp(rd_kafka_topic_name(m->rkt), env->topic_runs);
	t->ph = PH_BEGIN;
	to_db(t);
}

/* The message is done with: its offset may be stored, and the message
 * that waited for it starts. Frees t. */
static void task_end(wk_task *t)
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

static atomic_long n_deferred_total, n_deferred_now;

long wk_run_deferred_total(void)
{
	return atomic_load(&n_deferred_total);
}

long wk_run_deferred_now(void)
{
	return atomic_load(&n_deferred_now);
}

static void on_deferred_timer(void *arg)
{
	atomic_fetch_sub(&n_deferred_now, 1);
	to_db(arg);
}

/* The start of t's run is put off: its agent has max_pending_approvals
 * pending or on their way. Tried again after a wait that grows from 200 ms
 * to 2 s; the message stays in flight meanwhile (its partition goes on). */
static void start_deferred(wk_task *t)
{
	const sl_agent *a = t->r.agent;
	long ms = t->deferrals < 4 ? 200L << t->deferrals : 2000;

	if (!t->deferrals++)
		sl_info("run %s of agent %s: start deferred, %ld approvals pending or on their "
		        "way (max_pending_approvals)",
		        t->r.run_id, a->id, a->max_pending);
	atomic_fetch_add(&n_deferred_total, 1);
	if (!wk_flight_owns(t->env->flight, t->m)) {
		/* its partition went to another worker, which delivers it again:
		 * waiting here too would start the run twice */
		sl_info("run %s: its deferred start is left to the partition's new owner",
		        t->r.run_id);
		task_end(t);
		return;
	}
	task_reset(t);
	if (*t->env->stopping) {
		task_free(t); /* delivered again after the restart */
		return;
	}
	atomic_fetch_add(&n_deferred_now, 1);
	if (!wk_fetch_after(t->env->fetch, ms, on_deferred_timer, t)) {
		atomic_fetch_sub(&n_deferred_now, 1);
		task_free(t);
	}
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
 * Claims a tool call before it runs, so that it runs at most once. *run is
 * set when this task is to run it: a new call, or one an earlier attempt
 * claimed and never recorded (its worker died in between) of an
 * idempotent tool, made again (an http tool: with the same
 * Idempotency-Key, so that its server answers what it did). Otherwise
 * *output is what the model is told: the recorded result, or, of a tool
 * that is not idempotent, that the interrupted call's outcome is unknown.
 */
static sl_status tool_claim(PGconn *db, wk_task *t, const sl_tool *tool, const char *call_id,
                            bool *run, char **output)
{
	sl_status st = wk_store_tool_claim(db, t->r.run_id, call_id, tool->name, run, output,
	                                   t->err, sizeof(t->err));

	if (st || *run)
		return st;
	if (*output) {
		sl_info("run %s: tool %s call %s already ran; using its recorded result",
		        t->r.run_id, tool->name, call_id);
	} else if (tool->idempotent) {
		sl_warn("run %s: tool %s call %s was interrupted earlier; it is idempotent: made "
		        "again%s",
		        t->r.run_id, tool->name, call_id,
		        tool->executor == SL_EXEC_HTTP ? " with the same Idempotency-Key" : "");
		*run = true;
	} else {
		*output =
		    sl_asprintf("error: an earlier attempt of tool %s was interrupted: it may "
		                "or may not have run, and it is not run again",
		                tool->name);
		sl_warn(
		    "run %s: tool %s call %s was interrupted earlier; its outcome is unknown and "
		    "it is not run again",
		    t->r.run_id, tool->name, call_id);
	}
	return SL_OK;
}

/* Sets the task up to run tool with args (taken), then come back to ph. */
static wk_next run_tool(wk_task *t, const sl_tool *tool, const char *call_id, json_t *args,
                        wk_phase ph)
{
	t->tool = tool;
	t->call_id = call_id;
	t->tool_args = args;
	t->after_tool = ph;
	t->tool_attempt = 0;
	sl_info("run %s: running tool %s (call %s)", t->r.run_id, tool->name, call_id);
	return NX_TOOL;
}

/* The tool's result is to be recorded, with other tasks' (group commit).
 * A tool may write any bytes (Latin-1, a text cut inside a character): the
 * conversation and the database hold valid UTF-8, with what was not
 * replaced by U+FFFD, so that the result is stored and the run goes on. */
static void tool_result_queue(wk_task *t)
{
	size_t len = strlen(t->tool_result);

	if (!sl_text_valid(t->tool_result, len)) {
		char *fixed = sl_text_fix(t->tool_result, len);
		free(t->tool_result);
		t->tool_result = fixed;
	}
	t->wr.kind = WR_TOOL;
	queue_write(t);
}

/* On a tool thread: a command tool. */
static void tool_job(void *arg, void *state)
{
	wk_task *t = arg;
	char errbuf[512];

	(void)state;
	if (wk_tool_run_command(t->tool, t->tool_args, &t->tool_result, errbuf, sizeof(errbuf))) {
		sl_error("run %s: %s", t->r.run_id, errbuf);
		t->tool_result = sl_asprintf("error: tool %s could not be started", t->tool->name);
	}
	tool_result_queue(t);
}

static bool post_http_tool(wk_task *t);

static void on_http_tool_backoff(void *arg)
{
	wk_task *t = arg;

	if (!post_http_tool(t))
		task_free(t);
}

/* On the fetch thread: an http tool answered, or gave no answer. An
 * idempotent one that gave none (a time-out, a dropped connection, a
 * server that was not there) is asked again with the same key, so that
 * the model is told what it did rather than that it may have acted. */
static void on_http_tool_answer(void *arg, wk_fetch_result *res)
{
	wk_task *t = arg;
	size_t nbackoff = sizeof(tool_backoff_ms) / sizeof(tool_backoff_ms[0]);

	if (res->st == SL_RETRY && t->tool->idempotent && (size_t)t->tool_attempt < nbackoff) {
		long ms = tool_backoff_ms[t->tool_attempt++];

		sl_warn("run %s: tool %s call %s gave no answer (%s); asking again with the same "
		        "Idempotency-Key in %ld ms",
		        t->r.run_id, t->tool->name, t->call_id, res->err, ms);
		if (!wk_fetch_after(t->env->fetch, ms, on_http_tool_backoff, t))
			task_free(t);
		return;
	}
	t->tool_result = wk_tool_http_result(t->tool, res);
	tool_result_queue(t);
}

/* POSTs the tool's arguments through the fetch thread, so that a slow tool
 * endpoint holds no thread. Returns false when the worker is stopping. */
static bool post_http_tool(wk_task *t)
{
	char *idem = sl_asprintf("Idempotency-Key: %s:%s", t->r.run_id, t->call_id);
	char **own = t->tool->header_lines;
	size_t n = 0;
	const char **headers;
	bool ok;

	while (own && own[n])
		n++;
	headers = sl_calloc(n + 3, sizeof(char *));
	headers[0] = "Content-Type: application/json";
	headers[1] = idem;
	for (size_t i = 0; i < n; i++)
		headers[2 + i] = own[i]; /* executor.headers, credentials among them */
	ok = wk_fetch_post(t->env->fetch, t->tool->url, headers,
	                   json_dumps(t->tool_args, JSON_COMPACT), WK_TOOL_MAX_OUTPUT,
	                   t->tool->timeout_ms, on_http_tool_answer, t);
	free(headers);
	free(idem);
	return ok;
}

/* On the stdio thread: a long-running tool process answered. */
static void on_stdio_answer(void *arg, char *result)
{
	wk_task *t = arg;

	t->tool_result = result;
	tool_result_queue(t);
}

/* The tool's result is recorded: it goes into the conversation and the
 * task goes on where the tool was asked for. */
static void tool_recorded(wk_task *t)
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

/* Sets the task up to be completed (ok) or failed with text. */
static wk_next to_finish(wk_task *t, bool ok, const char *text)
{
	t->wr.kind = WR_FINISH;
	t->out_ok = ok;
	free(t->out_text);
	/* a failure's reason may quote bytes from outside (a model's answer) */
	t->out_text = text ? sl_text_fix(text, strlen(text)) : sl_strdup("");
	return NX_WRITE;
}

/* Sets the task up to be failed with a formatted reason. */
static wk_next to_fail(wk_task *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static wk_next to_fail(wk_task *t, const char *fmt, ...)
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
static sl_status begin_requested(wk_task *t, wk_next *nx)
{
	json_t *d = t->ev.data;
	const char *agent_id = json_string_value(json_object_get(d, "agent_id"));
	const char *input = json_string_value(json_object_get(d, "input"));
	const char *run_id = str_or_null(json_string_value(json_object_get(d, "run_id")));
	const char *session_id = str_or_null(json_string_value(json_object_get(d, "session_id")));
	const char *user_id = str_or_null(json_string_value(json_object_get(d, "user_id")));
	wk_run_state *r = &t->r;

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
	t->wr.kind = WR_START;
	*nx = NX_WRITE;
	return SL_OK;
}

/* The start found the run in the table: a repeated request, or a
 * redelivery after a crash. A run still running is resumed from its stored
 * conversation; any other is left alone. */
static sl_status begin_existing(PGconn *db, wk_task *t, wk_next *nx)
{
	const char *agent_id = t->r.agent->id;
	wk_run_state *r = &t->r;
	wk_stored_run stored;
	bool found = false, fresh = true;
	sl_status st;

	*nx = NX_END;
	if ((st = sl_db_begin(db, t->err, sizeof(t->err))) ||
	    (st = wk_store_run_lock(db, r->run_id, &found, &stored, t->err, sizeof(t->err))))
		goto out;
	if (!found) {
		/* The start inserts no run for an event id processed already:
		 * this request reuses another one's id. */
		if ((st =
		         sl_inbox_claim(db, WK_CONSUMER, t->ev.id, &fresh, t->err, sizeof(t->err))))
			goto out;
		st = fresh ? sl_err(t->err, sizeof(t->err), SL_RETRY,
		                    "run %s vanished while it started", r->run_id)
		           : sl_err(t->err, sizeof(t->err), SL_CONFLICT,
		                    "event id %s was used by another request; run %s not started",
		                    t->ev.id, r->run_id);
		goto out;
	}
	if (strcmp(stored.agent_id, agent_id)) {
		st = sl_err(t->err, sizeof(t->err), SL_CONFLICT,
		            "run %s exists for another agent (%s)", r->run_id, stored.agent_id);
		goto out;
	}
	if (strcmp(stored.status, "running")) {
		sl_info("run %s is already %s; request %s ignored", r->run_id, stored.status,
		        t->ev.id);
		if (!(st = sl_inbox_claim(db, WK_CONSUMER, t->ev.id, &fresh, t->err,
		                          sizeof(t->err))))
			st = sl_db_commit(db, t->err, sizeof(t->err));
		goto out;
	}
	json_decref(r->items);
	r->items = json_loads(stored.messages, 0, NULL);
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
	if (found)
		wk_stored_run_clear(&stored);
	return st;
}

/* The tool a decided requirement runs: confirmed, not expired, no
 * external result, the tool still configured; NULL otherwise. */
static const sl_tool *tool_to_run(const wk_task *t, const wk_decision *d)
{
	if (!strcmp(d->status, "expired") || !d->confirmed || d->external_result)
		return NULL;
	return sl_agent_tool(t->r.agent, d->tool_name);
}

/* Takes the run and the requirements of its pause from a continue's read
 * (the decisions become the task's). */
static sl_status take_continue(wk_task *t, const char *run_id, wk_continue *c)
{
	wk_run_state *r = &t->r;

	r->run_id = sl_strdup(run_id);
	r->session_id = sl_strdup(c->session_id);
	r->user_id = c->user_id ? sl_strdup(c->user_id) : NULL;
	r->agent = sl_agents_find(t->env->agents, c->agent_id);
	if (!r->agent)
		return sl_err(t->err, sizeof(t->err), SL_NOT_FOUND,
		              "run %s: agent %s is no longer configured", run_id, c->agent_id);
	r->items = json_loads(c->messages, 0, NULL);
	if (!json_is_array(r->items))
		return sl_err(t->err, sizeof(t->err), SL_INVALID,
		              "run %s: stored messages are not a list", run_id);
	t->decisions = c->decisions;
	t->ndecisions = c->ndecisions;
	t->dec_i = 0;
	c->decisions = NULL;
	c->ndecisions = 0;
	return SL_OK;
}

/* Acts only on what the approver recorded: the event names exactly the
 * requirements of the pause c read, and every one of them is resolved. */
static sl_status check_decisions(wk_task *t, const char *run_id, const wk_continue *c)
{
	json_t *decisions = json_object_get(t->ev.data, "decisions"), *dec;
	size_t i;

	json_array_foreach (decisions, i, dec) {
		const char *rid = json_string_value(json_object_get(dec, "requirement_id"));
		bool known = false;
		for (int k = 0; k < c->ndecisions && !known && rid; k++)
			known = !strcmp(c->decisions[k].id, rid);
		if (!known)
			return sl_err(t->err, sizeof(t->err), SL_INVALID,
			              "run %s: continue names requirement %s, which the run is not "
			              "waiting for",
			              run_id, rid ? rid : "(none)");
	}
	if ((int)json_array_size(decisions) != c->ndecisions)
		return sl_err(t->err, sizeof(t->err), SL_INVALID,
		              "run %s: continue carries %zu decisions for %d requirements", run_id,
		              json_array_size(decisions), c->ndecisions);
	for (int k = 0; k < c->ndecisions; k++)
		if (!strcmp(c->decisions[k].status, "pending"))
			return sl_err(t->err, sizeof(t->err), SL_CONFLICT,
			              "run %s: requirement %s is not resolved; continue refused",
			              run_id, c->decisions[k].id);
	return SL_OK;
}

/* The claim of a continue checked under its run's lock: only one continue
 * moves the run from pause pause_seq to running. The tools the decisions
 * (now the task's) run are claimed in tool_executions with it (each runs
 * at most once); apply_decisions runs the ones claimed then without asking
 * again. */
static sl_status claim_checked(PGconn *db, wk_task *t, const char *run_id, const char *pause_seq)
{
	json_t *tools = json_array();
	char *tooltext;
	sl_status st;

	for (int k = 0; k < t->ndecisions; k++) {
		const wk_decision *d = &t->decisions[k];
		const sl_tool *tool = tool_to_run(t, d);
		if (tool)
			json_array_append_new(tools, json_pack("{s:s, s:s}", "call_id", d->call_id,
			                                       "tool_name", tool->name));
	}
	tooltext = json_dumps(tools, JSON_COMPACT);
	json_decref(tools);
	st = wk_store_claim(db, run_id, pause_seq, t->ev.id, tooltext, &t->claimed_tools, t->err,
	                    sizeof(t->err));
	free(tooltext);
	if (st == SL_OK && !t->claimed_tools) /* changed since it was read: cannot be, locked */
		st = sl_err(t->err, sizeof(t->err), SL_CONFLICT,
		            "run %s changed while its continue was checked", run_id);
	return st;
}

/*
 * Checks a sluice.run.continue event against what the approver recorded,
 * claims the paused run (a run is continued once) and loads the
 * requirements of the pause with their decisions, holding the run's row
 * from the read to the claim, so that it waits for whoever is changing the
 * run. This is the continue wk_store_claims() did not claim: processed
 * before, taken up again after a crash, refused, or written while a writer
 * of the run was in the middle of its transaction.
 */
static sl_status check_continue(PGconn *db, wk_task *t, wk_next *nx)
{
	const char *run_id = json_string_value(json_object_get(t->ev.data, "run_id"));
	wk_continue c = {0};
	sl_status st;
	bool resuming, found;

	*nx = NX_END;
	if ((st = sl_db_begin(db, t->err, sizeof(t->err))) ||
	    (st = wk_store_continue_lock(db, run_id, t->ev.id, &found, &c, t->err, sizeof(t->err))))
		goto out;
	if (found && c.processed) {
		sl_info("run %s: continue event %s was processed before; ignored", run_id,
		        t->ev.id);
		goto out;
	}
	if (!found) {
		st = sl_err(t->err, sizeof(t->err), SL_NOT_FOUND, "continue for unknown run %s",
		            run_id);
		goto out;
	}
	/* This very event claimed the run before and its worker stopped before
	 * finishing: carry on from the pause (tools that ran are not run again). */
	resuming =
	    !strcmp(c.run_status, "running") && c.claim_event && !strcmp(c.claim_event, t->ev.id);
	if (!resuming && strcmp(c.run_status, "paused")) {
		st = sl_err(t->err, sizeof(t->err), SL_CONFLICT,
		            "run %s is %s, not paused; continue refused", run_id, c.run_status);
		goto out;
	}
	if ((st = check_decisions(t, run_id, &c)) || (st = take_continue(t, run_id, &c)) ||
	    (!resuming && (st = claim_checked(db, t, run_id, c.pause_seq))) ||
	    (st = sl_db_commit(db, t->err, sizeof(t->err))))
		goto out;
	if (resuming)
		sl_warn("run %s: resuming continue %s, which an earlier attempt left unfinished",
		        run_id, t->ev.id);
	else
		sl_info("run %s: continuing with %d decision(s)", run_id, t->ndecisions);
	t->ph = PH_DECISIONS;
	*nx = NX_STEP;
out:
	if (st) {
		wk_decisions_free(t->decisions, t->ndecisions);
		t->decisions = NULL;
		t->ndecisions = 0;
		json_decref(t->claimed_tools);
		t->claimed_tools = NULL;
	}
	sl_db_rollback(db);
	wk_continue_clear(&c);
	return st;
}

/*
 * PH_BEGIN of a sluice.run.continue: queued to be claimed and read with
 * other continues (wk_store_claims()), which is all a continue the approver
 * wrote after committing its decisions needs. Any other - that statement
 * did not claim it - is decided by the locked check: a writer of the run
 * may have been in the middle of its transaction, or the event is refused.
 */
static sl_status begin_continue(PGconn *db, wk_task *t, wk_next *nx)
{
	json_t *row;

	if (!t->claim_lost && (row = wk_claim_row(t))) {
		json_decref(row);
		t->wr.kind = WR_CLAIM;
		*nx = NX_WRITE;
		return SL_OK;
	}
	return check_continue(db, t, nx);
}

/* Whether the continue's claim claimed call_id's tool run for this task. */
static bool claimed_here(const wk_task *t, const char *call_id)
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
static char *decision_text(const wk_decision *d)
{
	if (!strcmp(d->status, "expired"))
		return sl_asprintf("The tool call %s was not approved in time and was not run.",
		                   d->tool_name);
	if (!d->confirmed)
		return sl_asprintf("The tool call %s was rejected by the user and was not run.%s%s",
		                   d->tool_name, d->note ? " Reason: " : "",
		                   d->note ? d->note : "");
	if (d->external_result)
		return sl_strdup(d->external_result);
	return sl_asprintf("error: tool %s is no longer configured", d->tool_name);
}

/*
 * Whether the tool of decision d must not run with args: the receipt the
 * approver signed for it (sl_receipt.h) does not check out against
 * SLUICE_RECEIPT_KEYS - a decision written into the database by hand, a
 * receipt of another requirement, arguments changed since, an expired one.
 * Then the call is recorded done with what the model is told, *output (NULL
 * when that could not be written), and a tool.refused ledger entry.
 */
static bool refused(PGconn *db, wk_task *t, const wk_decision *d, const json_t *args, char **output)
{
	sl_receipt_of of = {t->r.run_id, d->id, d->call_id, d->tool_name, args};
	char why[256], errbuf[512];

	*output = NULL;
	if (!sl_receipt_check(t->env->receipt_keys, d->receipt, &of, sl_now_ms() / 1000, why,
	                      sizeof(why)))
		return false;
	sl_warn("run %s: tool call %s (%s) refused: %s", t->r.run_id, d->call_id, d->tool_name,
	        why);
	*output = sl_asprintf("The approval of the tool call %s could not be verified (%s); the "
	                      "tool was not run.",
	                      d->tool_name, why);
	if (wk_store_tool_refused(db, t->r.run_id, d->call_id, d->id, d->tool_name, *output, why,
	                          errbuf, sizeof(errbuf))) {
		sl_warn("run %s: %s", t->r.run_id, errbuf);
		free(*output);
		*output = NULL;
	}
	return true;
}

/*
 * PH_DECISIONS: the tool result the model sees for each resolved
 * requirement, in order; a confirmed tool is run (once).
 */
static sl_status apply_decisions(PGconn *db, wk_task *t, wk_next *nx)
{
	*nx = NX_STEP;
	for (; t->dec_i < t->ndecisions; t->dec_i++) {
		const wk_decision *d = &t->decisions[t->dec_i];
		const sl_tool *tool = tool_to_run(t, d);
		char *output = NULL;

		if (tool) {
			bool run = claimed_here(t, d->call_id);

			if (!run) {
				sl_status st = tool_claim(db, t, tool, d->call_id, &run, &output);
				if (st)
					return st;
			}
			if (run) {
				/* the arguments as the person edited them, else as the
				 * model gave them, with the person's input filled in */
				json_t *model = json_loads(d->tool_args, 0, NULL);
				json_t *edited =
				    d->edited_args ? json_loads(d->edited_args, 0, NULL) : NULL;
				json_t *input =
				    d->user_input ? json_loads(d->user_input, 0, NULL) : NULL;
				json_t *args = sl_receipt_args(model, edited, input);

				json_decref(model);
				json_decref(edited);
				json_decref(input);
				if (!refused(db, t, d, args, &output)) {
					*nx = run_tool(t, tool, d->call_id, args, PH_DECISIONS);
					return SL_OK;
				}
				json_decref(args);
				if (!output) /* its refusal not recorded: tried again */
					return sl_err(t->err, sizeof(t->err), SL_RETRY,
					              "run %s: the refusal of tool call %s is not "
					              "recorded yet",
					              t->r.run_id, d->call_id);
			}
		} else {
			output = decision_text(d);
		}
		append_output(t->r.items, d->call_id, output);
		free(output);
	}
	t->ph = PH_MODEL;
	return SL_OK;
}

static void on_model_answer(void *arg, wk_fetch_result *res)
{
	wk_task *t = arg;

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
static wk_next send_to_model(wk_task *t)
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
	wk_task *t = arg;

	t->ph = PH_MODEL;
	to_db(t);
}

/* PH_REPLY: decodes the answer, or retries the call, or fails the run. */
static sl_status read_reply(wk_task *t, wk_next *nx)
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
static sl_status handle_calls(PGconn *db, wk_task *t, wk_next *nx)
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
			wk_pending_req *q = &t->reqs[t->nreq++];
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
		t->wr.kind = WR_PAUSE;
		*nx = NX_WRITE;
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

/* After an outcome's write: it was written, or it was not. */
static void outcome_done(PGconn *db, wk_task *t, bool written)
{
	sl_status st = SL_OK;

	if (!written)
		st = outcome_missed(db, t);
	else if (t->wr.kind == WR_PAUSE)
		sl_info("run %s: paused with %zu requirement(s)", t->r.run_id, t->nreq);
	else if (t->out_ok)
		sl_info("run %s: completed", t->r.run_id);
	else
		sl_warn("run %s: failed: %s", t->r.run_id, t->out_text);
	if (st)
		task_failed(t, st);
	else
		task_end(t);
}

static void on_tool_result_timer(void *arg)
{
	tool_result_queue(arg);
}

/*
 * Recording a tool's result failed transiently (PostgreSQL restarting, a
 * connection dropped). The tool has run: its result is written again
 * after a back-off, by the consumers' one failure policy, and kept until
 * then. Starting the task over instead would find the call claimed and
 * not recorded, and tell the model it was interrupted although it acted.
 * Only a worker stopping meanwhile loses it (the call then reads as
 * interrupted, as after a crash).
 */
static void tool_result_failed(wk_task *t)
{
	long ms;

	if (sl_consume_failed(t->env->producer, t->env->cfg, t->m, SL_RETRY, t->err, ++t->attempt,
	                      &ms) == SL_CONSUME_STOP)
		*t->env->stopping = 1;
	else if (!*t->env->stopping && wk_fetch_after(t->env->fetch, ms, on_tool_result_timer, t))
		return;
	sl_error("run %s: the result of tool %s (call %s) is not recorded: the worker is stopping",
	         t->r.run_id, t->tool->name, t->call_id);
	task_free(t); /* delivered again after the restart */
}

/* After a write (wk_write.h), on a database thread: what its result leads
 * to. */
void wk_run_written(wk_write *w, void *state)
{
	wk_task *t = sl_queue_entry(w, wk_task, wr);
	PGconn *db = ((wk_db *)state)->conn;
	const char *run_id;
	sl_status st;

	if (w->st) {
		snprintf(t->err, sizeof(t->err), "%s", w->err);
		if (w->st == SL_RETRY && w->kind == WR_TOOL) {
			w->kind = WR_NONE;
			tool_result_failed(t);
			return;
		}
		w->kind = WR_NONE;
		task_failed(t, w->st);
		return;
	}
	switch (w->kind) {
	case WR_START:
		if (w->deferred) {
			w->kind = WR_NONE;
			start_deferred(t);
			return;
		}
		t->ph = w->written ? PH_MODEL : PH_EXISTS;
		if (w->written)
			sl_info("run %s: started for agent %s", t->r.run_id, t->r.agent->id);
		break;
	case WR_CLAIM:
		if (!w->claimed) {
			t->claim_lost = true; /* the locked check decides */
			t->ph = PH_BEGIN;
			break;
		}
		run_id = json_string_value(json_object_get(t->ev.data, "run_id"));
		t->claimed_tools = w->read.claimed_tools;
		w->read.claimed_tools = NULL;
		/* cannot fail: the statement checked the agent and the list */
		st = take_continue(t, run_id, &w->read);
		wk_continue_clear(&w->read);
		if (st) {
			w->kind = WR_NONE;
			task_failed(t, st);
			return;
		}
		sl_info("run %s: continuing with %d decision(s)", t->r.run_id, t->ndecisions);
		t->ph = PH_DECISIONS;
		break;
	case WR_TOOL: tool_recorded(t); break;
	case WR_PAUSE:
	case WR_FINISH: outcome_done(db, t, w->written); return;
	case WR_NONE: assert(!"a write of no kind"); break;
	}
	w->kind = WR_NONE;
	task_step(t, state);
}

void wk_run_write_dropped(wk_write *w)
{
	task_free(sl_queue_entry(w, wk_task, wr));
}

/* PH_BEGIN: decodes the message, then starts the run's part. */
static sl_status begin(PGconn *db, wk_task *t, wk_next *nx)
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

/* On a database thread, after a back-off: a dead-letter Kafka did not
 * take is tried again. */
static void dead_letter_job(void *arg, void *state)
{
	wk_task *t = arg;

	(void)state;
	task_failed(t, t->failed_st);
}

static void on_dead_letter_timer(void *arg)
{
	wk_task *t = arg;

	if (!wk_pool_push_job(t->env->db, &t->job, dead_letter_job, wk_run_drop, t))
		task_free(t);
}

/* Ends the message after a failed step, by the consumers' one failure
 * policy (sl_consume_failed): starts over after a back-off on transient
 * failures, dead-letters bad input, stops the worker on fatal ones. No
 * back-off holds a thread: each waits on a timer. */
static void task_failed(wk_task *t, sl_status st)
{
	long ms;

	switch (
	    sl_consume_failed(t->env->producer, t->env->cfg, t->m, st, t->err, ++t->attempt, &ms)) {
	case SL_CONSUME_DONE: task_end(t); return;
	case SL_CONSUME_STOP:
		*t->env->stopping = 1;
		task_free(t); /* delivered again after the restart */
		return;
	case SL_CONSUME_RETRY: break;
	}
	if (*t->env->stopping) {
		task_free(t); /* delivered again after the restart */
		return;
	}
	if (st == SL_RETRY) {
		task_reset(t);
		if (!wk_fetch_after(t->env->fetch, ms, on_retry_timer, t))
			task_free(t);
		return;
	}
	t->failed_st = st;
	if (!wk_fetch_after(t->env->fetch, ms, on_dead_letter_timer, t))
		task_free(t);
}

/* On a database thread: the task's steps until it waits or ends. */
static void task_step(void *arg, void *state)
{
	wk_task *t = arg;
	PGconn *db = ((wk_db *)state)->conn;
	wk_next nx = NX_STEP;
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
		task_failed(t, st);
		return;
	}
	if (nx == NX_WRITE) {
		queue_write(t);
	} else if (nx == NX_TOOL && t->tool->executor == SL_EXEC_HTTP) {
		if (!post_http_tool(t))
			task_free(t);
	} else if (nx == NX_TOOL && t->tool->executor == SL_EXEC_STDIO) {
		if (!wk_stdio_call(t->env->stdio, t->tool, t->r.run_id, t->call_id, t->tool_args,
		                   on_stdio_answer, t))
			task_free(t);
	} else if (nx == NX_TOOL) {
		if (!wk_pool_push_job(t->env->tools, &t->job, tool_job, wk_run_drop, t))
			task_free(t);
	} else if (nx == NX_END) {
		task_end(t);
	}
	/* NX_MODEL: the fetch thread has the task (or it was given up) */
}
