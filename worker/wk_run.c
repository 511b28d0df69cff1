/*
 * wk_run.c - the agent loop and the run state transitions.
 */
#include "wk_run.h"
#include "sl_db.h"
#include "sl_log.h"
#include "sl_outbox.h"
#include "wk_model.h"
#include "wk_tool.h"

#include <stdlib.h>
#include <string.h>

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
	json_t *call; /* the function_call item (borrowed) */
	json_t *args; /* owned */
} pending_req;

static void run_free(run *r)
{
	free(r->run_id);
	free(r->session_id);
	free(r->user_id);
	json_decref(r->items);
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
 * Runs a tool call at most once: the call is claimed in tool_executions
 * first; a call already done gives its recorded result, a call whose earlier
 * attempt was interrupted is not run again.
 */
static sl_status execute_once(wk_ctx *ctx, run *r, const sl_tool *t, const char *call_id,
                              const json_t *args, char **result, char *errbuf, size_t errsize)
{
	const char *claim[] = {r->run_id, call_id, t->name};
	PGresult *res;
	sl_status st;

	*result = NULL;
	st = sl_db_exec(ctx->db,
	                "INSERT INTO tool_executions (run_id, tool_call_id, tool_name, status) "
	                "VALUES ($1, $2, $3, 'started') ON CONFLICT DO NOTHING",
	                3, claim, &res, errbuf, errsize);
	if (st)
		return st;
	if (strcmp(PQcmdTuples(res), "1")) {
		PQclear(res);
		st = sl_db_exec(ctx->db,
		                "SELECT status, result FROM tool_executions "
		                "WHERE run_id = $1 AND tool_call_id = $2",
		                2, claim, &res, errbuf, errsize);
		if (st)
			return st;
		if (PQntuples(res) && !strcmp(PQgetvalue(res, 0, 0), "done")) {
			*result = sl_strdup(PQgetvalue(res, 0, 1));
			sl_info("run %s: tool %s call %s already ran; using its recorded result",
			        r->run_id, t->name, call_id);
		} else {
			*result =
			    sl_asprintf("error: an earlier attempt of tool %s was interrupted; "
			                "it is not run again",
			                t->name);
			sl_warn("run %s: tool %s call %s was interrupted earlier; not run again",
			        r->run_id, t->name, call_id);
		}
		PQclear(res);
		return SL_OK;
	}
	PQclear(res);
	sl_info("run %s: running tool %s (call %s)", r->run_id, t->name, call_id);
	st = wk_tool_execute(t, r->run_id, call_id, args, result, errbuf, errsize);
	if (st) {
		*result = sl_asprintf("error: tool %s could not be started", t->name);
		sl_error("run %s: %s", r->run_id, errbuf);
	}
	{
		const char *done[] = {r->run_id, call_id, *result};
		st = sl_db_exec(ctx->db,
		                "UPDATE tool_executions SET status = 'done', result = $3, "
		                "finished_at = now() WHERE run_id = $1 AND tool_call_id = $2",
		                3, done, NULL, errbuf, errsize);
	}
	if (st) {
		free(*result);
		*result = NULL;
	}
	return st;
}

/* Builds the {name, type, description} list of a user-input tool. */
static json_t *user_input_schema(const sl_tool *t)
{
	json_t *schema = json_array(), *f;
	json_t *props = json_object_get(t->parameters, "properties");
	size_t i;

	if (!t->requires_user_input)
		return schema;
	json_array_foreach (t->user_input_fields, i, f) {
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

/* Claims the consumed event inside the open transaction. *dup is set when it
 * was processed before. */
static sl_status record_event(wk_ctx *ctx, const char *event_id, bool *dup, char *errbuf,
                              size_t errsize)
{
	bool fresh = true;
	sl_status st = SL_OK;

	if (event_id)
		st = sl_inbox_claim(ctx->db, CONSUMER, event_id, &fresh, errbuf, errsize);
	*dup = !fresh;
	return st;
}

/* Tells, without recording it, whether event_id was processed already. */
static sl_status event_seen(wk_ctx *ctx, const char *event_id, bool *seen, char *errbuf,
                            size_t errsize)
{
	const char *p[] = {CONSUMER, event_id};
	PGresult *res;
	sl_status st;

	st = sl_db_exec(ctx->db,
	                "SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2", 2,
	                p, &res, errbuf, errsize);
	if (st)
		return st;
	*seen = PQntuples(res) > 0;
	PQclear(res);
	return SL_OK;
}

/*
 * Opens the transaction of a run's outcome and records the consumed event
 * in it. *dup is set (and the caller leaves it) when the event had its
 * effect before.
 */
static sl_status begin_outcome(wk_ctx *ctx, run *r, const char *event_id, bool *dup, char *errbuf,
                               size_t errsize)
{
	sl_status st;

	if ((st = sl_db_begin(ctx->db, errbuf, errsize)) ||
	    (st = record_event(ctx, event_id, dup, errbuf, errsize)))
		return st;
	if (*dup)
		sl_info("run %s: event %s was processed before; nothing to do", r->run_id,
		        event_id);
	return SL_OK;
}

static sl_status pause_run(wk_ctx *ctx, run *r, pending_req *reqs, size_t n, const char *event_id,
                           char *errbuf, size_t errsize)
{
	char *messages = json_dumps(r->items, JSON_COMPACT);
	const char *up[] = {r->run_id, messages};
	json_t *list = json_array(), *data, *event;
	PGresult *res = NULL;
	char seq[16];
	sl_status st;
	bool dup;

	if ((st = begin_outcome(ctx, r, event_id, &dup, errbuf, errsize)) || dup)
		goto out;
	st = sl_db_exec(ctx->db,
	                "UPDATE runs SET status = 'paused', messages = $2::jsonb, "
	                "pause_seq = pause_seq + 1, version = version + 1, updated_at = now() "
	                "WHERE run_id = $1 AND status = 'running' RETURNING pause_seq",
	                2, up, &res, errbuf, errsize);
	if (st)
		goto out;
	if (PQntuples(res) != 1) {
		st = sl_err(errbuf, errsize, SL_CONFLICT, "run %s is no longer running", r->run_id);
		goto out;
	}
	snprintf(seq, sizeof(seq), "%s", PQgetvalue(res, 0, 0));
	for (size_t i = 0; i < n; i++) {
		json_t *rj = requirement_json(&reqs[i]);
		char *args = json_dumps(reqs[i].args, JSON_COMPACT);
		char *schema = json_dumps(json_object_get(rj, "user_input_schema"), JSON_COMPACT);
		char *tool_schema = reqs[i].tool->parameters
		                        ? json_dumps(reqs[i].tool->parameters, JSON_COMPACT)
		                        : sl_strdup("{}");
		char pos[24], timeout[24];
		const char *p[] = {reqs[i].id,
		                   r->run_id,
		                   seq,
		                   pos,
		                   json_string_value(json_object_get(reqs[i].call, "call_id")),
		                   reqs[i].tool->name,
		                   args,
		                   reqs[i].tool->requires_confirmation ? "true" : "false",
		                   reqs[i].tool->requires_user_input ? "true" : "false",
		                   schema,
		                   reqs[i].tool->external_execution ? "true" : "false",
		                   sl_approval_name(reqs[i].tool->approval),
		                   reqs[i].tool->approval_timeout_s ? timeout : NULL,
		                   tool_schema};

		snprintf(pos, sizeof(pos), "%zu", i);
		snprintf(timeout, sizeof(timeout), "%ld", reqs[i].tool->approval_timeout_s);
		st = sl_db_exec(
		    ctx->db,
		    "INSERT INTO requirements (id, run_id, pause_seq, position, tool_call_id, "
		    "tool_name, tool_args, needs_confirmation, needs_user_input, "
		    "user_input_schema, external_execution, approval_type, expires_at, "
		    "tool_schema) "
		    "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10::jsonb, $11, $12, "
		    "now() + make_interval(secs => $13::int), $14::jsonb)",
		    14, p, NULL, errbuf, errsize);
		free(args);
		free(schema);
		free(tool_schema);
		json_array_append_new(list, rj);
		if (st)
			goto out;
	}
	{
		/* An approval of type "required" is pending from the moment the run
		 * pauses; an "audit" one is written only when it is resolved. */
		const char *p[] = {r->run_id, seq};
		st = sl_db_exec(
		    ctx->db,
		    "INSERT INTO approvals (id, run_id, session_id, requirement_id, agent_id, "
		    "user_id, "
		    "approval_type, pause_type, status, tool_name, tool_args, expires_at, "
		    "run_status) "
		    "SELECT gen_random_uuid()::text, r.run_id, u.session_id, r.id, u.agent_id, "
		    "u.user_id, 'required', r.pause_type, 'pending', r.tool_name, r.tool_args, "
		    "r.expires_at, u.status FROM requirements r JOIN runs u ON u.run_id = r.run_id "
		    "WHERE r.run_id = $1 AND r.pause_seq = $2 AND r.approval_type = 'required'",
		    2, p, NULL, errbuf, errsize);
		if (st)
			goto out;
	}
	data = json_pack("{s:s, s:s, s:s, s:O}", "run_id", r->run_id, "session_id", r->session_id,
	                 "agent_id", r->agent->id, "requirements", list);
	event = sl_event_new(SL_EVENT_RUN_PAUSED, ctx->source, r->run_id, data);
	st = sl_outbox_put(ctx->db, ctx->topic_approvals, r->run_id, event, errbuf, errsize);
	json_decref(event);
	if (st)
		goto out;
	if ((st = sl_db_commit(ctx->db, errbuf, errsize)))
		goto out;
	sl_info("run %s: paused with %zu requirement(s)", r->run_id, n);
out:
	sl_db_rollback(ctx->db);
	PQclear(res);
	json_decref(list);
	free(messages);
	return st;
}

static sl_status finish_run(wk_ctx *ctx, run *r, bool ok, const char *text, const char *event_id,
                            char *errbuf, size_t errsize)
{
	char *messages = json_dumps(r->items, JSON_COMPACT);
	const char *status = ok ? "completed" : "failed";
	const char *up[] = {r->run_id, status, ok ? text : NULL, ok ? NULL : text, messages};
	json_t *data, *event;
	PGresult *res = NULL;
	sl_status st;
	bool dup;

	if ((st = begin_outcome(ctx, r, event_id, &dup, errbuf, errsize)) || dup)
		goto out;
	st = sl_db_exec(
	    ctx->db,
	    "UPDATE runs SET status = $2, output = $3, error = $4, messages = $5::jsonb, "
	    "version = version + 1, updated_at = now() "
	    "WHERE run_id = $1 AND status = 'running'",
	    5, up, &res, errbuf, errsize);
	if (st)
		goto out;
	if (strcmp(PQcmdTuples(res), "1")) {
		st = sl_err(errbuf, errsize, SL_CONFLICT, "run %s is no longer running", r->run_id);
		goto out;
	}
	data = json_pack("{s:s, s:s, s:s, s:s?, s:s?}", "run_id", r->run_id, "session_id",
	                 r->session_id, "status", status, "content", ok ? text : NULL, "error",
	                 ok ? NULL : text);
	event = sl_event_new(ok ? SL_EVENT_RUN_COMPLETED : SL_EVENT_RUN_FAILED, ctx->source,
	                     r->run_id, data);
	st = sl_outbox_put(ctx->db, ctx->topic_results, r->run_id, event, errbuf, errsize);
	json_decref(event);
	if (st)
		goto out;
	if ((st = sl_db_commit(ctx->db, errbuf, errsize)))
		goto out;
	if (ok)
		sl_info("run %s: completed", r->run_id);
	else
		sl_warn("run %s: failed: %s", r->run_id, text);
out:
	sl_db_rollback(ctx->db);
	PQclear(res);
	free(messages);
	return st;
}

/* Calls the model, retrying transient failures a few times. */
static sl_status call_model(wk_ctx *ctx, run *r, wk_model_reply *reply, char *errbuf,
                            size_t errsize)
{
	static const long backoff_ms[] = {200, 1000, 3000};
	sl_status st;

	for (size_t attempt = 0;; attempt++) {
		st = wk_model_call(ctx->cfg, r->agent, r->items, reply, errbuf, errsize);
		if (st != SL_RETRY || attempt == sizeof(backoff_ms) / sizeof(backoff_ms[0]))
			return st;
		sl_warn("run %s: model call failed (%s); retrying in %ld ms", r->run_id, errbuf,
		        backoff_ms[attempt]);
		sl_sleep_ms(backoff_ms[attempt]);
	}
}

/*
 * Carries the run on from its conversation until it pauses, completes or
 * fails, and writes that outcome. event_id, when not NULL, is claimed in the
 * outcome's transaction.
 */
static sl_status agent_loop(wk_ctx *ctx, run *r, const char *event_id, char *errbuf, size_t errsize)
{
	sl_status st = SL_OK;

	for (int turn = 0; turn < WK_MAX_TURNS; turn++) {
		wk_model_reply reply;
		pending_req *reqs;
		size_t nreq = 0, ncalls;
		json_t *call;
		size_t i;

		st = call_model(ctx, r, &reply, errbuf, errsize);
		if (st == SL_RETRY || st == SL_INVALID) {
			char *why = sl_asprintf("model call failed: %s", errbuf);
			st = finish_run(ctx, r, false, why, event_id, errbuf, errsize);
			free(why);
			return st;
		}
		if (st)
			return st;
		json_array_extend(r->items, reply.items);
		ncalls = json_array_size(reply.calls);
		if (ncalls == 0) {
			st = finish_run(ctx, r, true, reply.text, event_id, errbuf, errsize);
			wk_model_reply_free(&reply);
			return st;
		}
		reqs = sl_calloc(ncalls, sizeof(*reqs));
		json_array_foreach (reply.calls, i, call) {
			const char *call_id = json_string_value(json_object_get(call, "call_id"));
			const char *name = json_string_value(json_object_get(call, "name"));
			const char *argstr = json_string_value(json_object_get(call, "arguments"));
			const sl_tool *t = sl_agent_tool(r->agent, name);
			json_t *args = json_loads(argstr, JSON_DECODE_ANY, NULL);
			char *result = NULL;

			if (!t) {
				result = sl_asprintf("error: there is no tool named %s", name);
			} else if (!json_is_object(args)) {
				result = sl_asprintf(
				    "error: the arguments of %s are not a JSON object", name);
			} else if (sl_tool_gated(t)) {
				sl_uuid_v4(reqs[nreq].id);
				reqs[nreq].tool = t;
				reqs[nreq].call = call;
				reqs[nreq].args = args;
				args = NULL;
				nreq++;
				continue;
			} else if ((st = execute_once(ctx, r, t, call_id, args, &result, errbuf,
			                              errsize))) {
				json_decref(args);
				break;
			}
			append_output(r->items, call_id, result);
			free(result);
			json_decref(args);
		}
		if (st == SL_OK && nreq)
			st = pause_run(ctx, r, reqs, nreq, event_id, errbuf, errsize);
		for (i = 0; i < nreq; i++)
			json_decref(reqs[i].args);
		free(reqs);
		wk_model_reply_free(&reply);
		if (st || nreq)
			return st;
	}
	{
		char *why =
		    sl_asprintf("the model made more than %d tool-call rounds", WK_MAX_TURNS);
		st = finish_run(ctx, r, false, why, event_id, errbuf, errsize);
		free(why);
	}
	return st;
}

sl_status wk_run_requested(wk_ctx *ctx, const sl_event *ev, char *errbuf, size_t errsize)
{
	json_t *d = ev->data;
	const char *agent_id = json_string_value(json_object_get(d, "agent_id"));
	const char *input = json_string_value(json_object_get(d, "input"));
	const char *run_id = str_or_null(json_string_value(json_object_get(d, "run_id")));
	const char *session_id = str_or_null(json_string_value(json_object_get(d, "session_id")));
	const char *user_id = str_or_null(json_string_value(json_object_get(d, "user_id")));
	run r = {0};
	PGresult *res = NULL;
	char *messages = NULL;
	sl_status st;

	r.agent = sl_agents_find(ctx->agents, agent_id);
	if (!r.agent)
		return sl_err(errbuf, errsize, SL_NOT_FOUND, "unknown agent %s", agent_id);
	/* Without a run id the event id names the run, so a redelivered event
	 * finds the run it started. */
	r.run_id = sl_strdup(run_id ? run_id : ev->id);
	r.session_id = sl_strdup(session_id ? session_id : r.run_id);
	r.user_id = user_id ? sl_strdup(user_id) : NULL;
	r.items = json_pack("[{s:s, s:s}]", "role", "user", "content", input);
	messages = json_dumps(r.items, JSON_COMPACT);
	{
		const char *p[] = {r.run_id, r.session_id, agent_id, r.user_id, input, messages};
		if ((st = sl_db_begin(ctx->db, errbuf, errsize)))
			goto out;
		st = sl_db_exec(
		    ctx->db,
		    "INSERT INTO runs (run_id, session_id, agent_id, user_id, status, input, "
		    "messages) VALUES ($1, $2, $3, $4, 'running', $5, $6::jsonb) "
		    "ON CONFLICT (run_id) DO NOTHING",
		    6, p, &res, errbuf, errsize);
		if (st)
			goto out;
	}
	if (strcmp(PQcmdTuples(res), "1")) {
		/* The run exists: a repeated request, or a redelivery after a crash. */
		const char *p[] = {r.run_id};
		PQclear(res);
		st = sl_db_exec(
		    ctx->db,
		    "SELECT status, messages, agent_id FROM runs WHERE run_id = $1 FOR UPDATE", 1,
		    p, &res, errbuf, errsize);
		if (st)
			goto out;
		if (strcmp(PQgetvalue(res, 0, 2), agent_id)) {
			st = sl_err(errbuf, errsize, SL_CONFLICT,
			            "run %s exists for another agent (%s)", r.run_id,
			            PQgetvalue(res, 0, 2));
			goto out;
		}
		if (strcmp(PQgetvalue(res, 0, 0), "running")) {
			bool dup;
			sl_info("run %s is already %s; request %s ignored", r.run_id,
			        PQgetvalue(res, 0, 0), ev->id);
			if ((st = record_event(ctx, ev->id, &dup, errbuf, errsize)) ||
			    (st = sl_db_commit(ctx->db, errbuf, errsize)))
				goto out;
			goto out;
		}
		json_decref(r.items);
		r.items = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
		if (!json_is_array(r.items)) {
			st = sl_err(errbuf, errsize, SL_INVALID,
			            "run %s: stored messages are not a list", r.run_id);
			goto out;
		}
		sl_info("run %s: resuming an interrupted start", r.run_id);
	} else {
		sl_info("run %s: started for agent %s", r.run_id, agent_id);
	}
	if ((st = sl_db_commit(ctx->db, errbuf, errsize)))
		goto out;
	st = agent_loop(ctx, &r, ev->id, errbuf, errsize);
out:
	sl_db_rollback(ctx->db);
	PQclear(res);
	free(messages);
	run_free(&r);
	return st;
}

/* The tool result the model sees for a resolved requirement. */
static sl_status decision_output(wk_ctx *ctx, run *r, PGresult *reqs, int row, char **output,
                                 char *errbuf, size_t errsize)
{
	const char *call_id = PQgetvalue(reqs, row, 1);
	const char *name = PQgetvalue(reqs, row, 2);
	const char *status = PQgetvalue(reqs, row, 4);
	bool confirmed = !strcmp(PQgetvalue(reqs, row, 5), "t");
	const char *note = PQgetisnull(reqs, row, 6) ? NULL : PQgetvalue(reqs, row, 6);
	const sl_tool *t = sl_agent_tool(r->agent, name);
	json_t *args;
	sl_status st;

	*output = NULL;
	if (!strcmp(status, "expired")) {
		*output =
		    sl_asprintf("The tool call %s was not approved in time and was not run.", name);
		return SL_OK;
	}
	if (!confirmed) {
		*output =
		    sl_asprintf("The tool call %s was rejected by the user and was not run.%s%s",
		                name, note ? " Reason: " : "", note ? note : "");
		return SL_OK;
	}
	if (!PQgetisnull(reqs, row, 8)) {
		*output = sl_strdup(PQgetvalue(reqs, row, 8)); /* external execution result */
		return SL_OK;
	}
	if (!t) {
		*output = sl_asprintf("error: tool %s is no longer configured", name);
		return SL_OK;
	}
	/* the arguments as the person edited them, else as the model gave them */
	args = json_loads(PQgetvalue(reqs, row, PQgetisnull(reqs, row, 9) ? 3 : 9), 0, NULL);
	if (!PQgetisnull(reqs, row, 7)) {
		json_t *values = json_loads(PQgetvalue(reqs, row, 7), 0, NULL);
		json_object_update(args, values);
		json_decref(values);
	}
	st = execute_once(ctx, r, t, call_id, args, output, errbuf, errsize);
	json_decref(args);
	return st;
}

sl_status wk_run_continue(wk_ctx *ctx, const sl_event *ev, char *errbuf, size_t errsize)
{
	const char *run_id = json_string_value(json_object_get(ev->data, "run_id"));
	json_t *decisions = json_object_get(ev->data, "decisions"), *dec;
	const char *p[] = {run_id, NULL};
	PGresult *res = NULL, *reqs = NULL;
	run r = {0};
	sl_status st;
	bool dup, resuming;
	size_t i;
	int n;

	if ((st = sl_db_begin(ctx->db, errbuf, errsize)))
		goto out;
	if ((st = event_seen(ctx, ev->id, &dup, errbuf, errsize)))
		goto out;
	if (dup) {
		sl_info("run %s: continue event %s was processed before; ignored", run_id, ev->id);
		goto out;
	}
	st = sl_db_exec(ctx->db,
	                "SELECT status, messages, pause_seq, agent_id, session_id, user_id, "
	                "claim_event FROM runs WHERE run_id = $1 FOR UPDATE",
	                1, p, &res, errbuf, errsize);
	if (st)
		goto out;
	if (PQntuples(res) != 1) {
		st = sl_err(errbuf, errsize, SL_NOT_FOUND, "continue for unknown run %s", run_id);
		goto out;
	}
	/* This very event claimed the run before and its worker stopped before
	 * finishing: carry on from the pause (tools that ran are not run again). */
	resuming =
	    !strcmp(PQgetvalue(res, 0, 0), "running") && !strcmp(PQgetvalue(res, 0, 6), ev->id);
	if (!resuming && strcmp(PQgetvalue(res, 0, 0), "paused")) {
		st = sl_err(errbuf, errsize, SL_CONFLICT,
		            "run %s is %s, not paused; continue refused", run_id,
		            PQgetvalue(res, 0, 0));
		goto out;
	}
	r.run_id = sl_strdup(run_id);
	r.session_id = sl_strdup(PQgetvalue(res, 0, 4));
	r.user_id = sl_db_value(res, 0, 5);
	r.agent = sl_agents_find(ctx->agents, PQgetvalue(res, 0, 3));
	if (!r.agent) {
		st = sl_err(errbuf, errsize, SL_NOT_FOUND,
		            "run %s: agent %s is no longer configured", run_id,
		            PQgetvalue(res, 0, 3));
		goto out;
	}
	r.items = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
	if (!json_is_array(r.items)) {
		st = sl_err(errbuf, errsize, SL_INVALID, "run %s: stored messages are not a list",
		            run_id);
		goto out;
	}
	p[1] = PQgetvalue(res, 0, 2);
	st = sl_db_exec(ctx->db,
	                "SELECT id, tool_call_id, tool_name, tool_args, status, confirmed, note, "
	                "user_input, external_result, edited_args FROM requirements "
	                "WHERE run_id = $1 AND pause_seq = $2 ORDER BY position",
	                2, p, &reqs, errbuf, errsize);
	if (st)
		goto out;
	n = PQntuples(reqs);
	/* Act only on what the approver recorded: the event names exactly the
	 * requirements of this pause, and every one of them is resolved. */
	json_array_foreach (decisions, i, dec) {
		const char *rid = json_string_value(json_object_get(dec, "requirement_id"));
		bool found = false;
		for (int k = 0; k < n && !found; k++)
			found = !strcmp(PQgetvalue(reqs, k, 0), rid);
		if (!found) {
			st = sl_err(errbuf, errsize, SL_INVALID,
			            "run %s: continue names requirement %s, which the run is not "
			            "waiting for",
			            run_id, rid);
			goto out;
		}
	}
	if ((int)json_array_size(decisions) != n) {
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "run %s: continue carries %zu decisions for %d requirements", run_id,
		            json_array_size(decisions), n);
		goto out;
	}
	for (int k = 0; k < n; k++) {
		if (!strcmp(PQgetvalue(reqs, k, 4), "pending")) {
			st = sl_err(errbuf, errsize, SL_CONFLICT,
			            "run %s: requirement %s is not resolved; continue refused",
			            run_id, PQgetvalue(reqs, k, 0));
			goto out;
		}
	}
	/* The claim: only one continue moves the run from paused to running. */
	if (!resuming) {
		const char *c[] = {run_id, ev->id};
		st = sl_db_exec(ctx->db,
		                "UPDATE runs SET status = 'running', claim_event = $2, "
		                "version = version + 1, updated_at = now() "
		                "WHERE run_id = $1 AND status = 'paused'",
		                2, c, NULL, errbuf, errsize);
		if (st)
			goto out;
	}
	if ((st = sl_db_commit(ctx->db, errbuf, errsize)))
		goto out;
	if (resuming)
		sl_warn("run %s: resuming continue %s, which an earlier attempt left unfinished",
		        run_id, ev->id);
	else
		sl_info("run %s: continuing with %d decision(s)", run_id, n);
	for (int k = 0; k < n; k++) {
		char *output;
		if ((st = decision_output(ctx, &r, reqs, k, &output, errbuf, errsize)))
			goto out;
		append_output(r.items, PQgetvalue(reqs, k, 1), output);
		free(output);
	}
	st = agent_loop(ctx, &r, ev->id, errbuf, errsize);
out:
	sl_db_rollback(ctx->db);
	PQclear(res);
	PQclear(reqs);
	run_free(&r);
	return st;
}
