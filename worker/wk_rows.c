/*
 * wk_rows.c - the rows a task's writes are made with (wk_write.h): a run's
 * start, a continue's claim, a tool's result, a pause with its
 * requirements and its event, a finish with its event.
 */
#include "sl_text.h"
#include "wk_task.h"

#include <assert.h>
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
		json_object_set_new(row, "deciders",
		                    json_pack("{s:O?, s:b, s:i}", "approvers", q->tool->approvers,
		                              "self_approval", q->tool->self_approval, "quorum",
		                              q->tool->quorum ? q->tool->quorum : 1));

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
	if (r->agent->max_pending || t->env->agents->max_pending) /* its start's place ends */
		json_object_set_new(row, "gated", json_true());
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
	if (r->agent->max_pending || t->env->agents->max_pending)
		json_object_set_new(row, "gated", json_true());
	return row;
}

/* A run start as a row of wk_store_starts(); "gate": its agent's
 * max_pending_approvals, "stack_gate" the agents file's, when they have one. */
static json_t *start_row(const wk_task *t)
{
	const wk_run_state *r = &t->r;
	json_t *row =
	    json_pack("{s:s, s:s, s:s, s:s?, s:s, s:O, s:s}", "run_id", r->run_id, "session_id",
	              r->session_id, "agent_id", r->agent->id, "user_id", r->user_id, "input",
	              json_string_value(json_object_get(t->ev.data, "input")), "messages", r->items,
	              "event_id", t->ev.id);

	if (r->agent->max_pending)
		json_object_set_new(row, "gate", json_integer(r->agent->max_pending));
	if (t->env->agents->max_pending)
		json_object_set_new(row, "stack_gate", json_integer(t->env->agents->max_pending));
	return row;
}

/* The task's row of a claim (its place "i" in the batch is the batch's);
 * NULL when the event's decisions do not name requirements by id (the
 * locked check says what is wrong). */
json_t *wk_claim_row(const wk_task *t)
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
	return json_pack("{s:O, s:s, s:o}", "run_id", json_object_get(t->ev.data, "run_id"),
	                 "event_id", t->ev.id, "ids", ids);
}

json_t *wk_write_row(const wk_task *t)
{
	switch (t->wr.kind) {
	case WR_START: return start_row(t);
	case WR_CLAIM: return wk_claim_row(t);
	case WR_TOOL:
		return json_pack("{s:s, s:s, s:s}", "run_id", t->r.run_id, "call_id", t->call_id,
		                 "result", t->tool_result);
	case WR_PAUSE: return pause_row(t);
	case WR_FINISH: return finish_row(t);
	case WR_NONE: break;
	}
	assert(!"a write of no kind");
	return NULL;
}
