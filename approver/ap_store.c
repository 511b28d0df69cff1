/*
 * ap_store.c - approver queries. JSON read models are built by PostgreSQL
 * (json_build_object), so each answer is one statement.
 */
#include "ap_store.h"
#include "ap_query.h"
#include "ap_sql.h"
#include "sl_receipt.h"
#include "sl_db.h"
#include "sl_log.h"
#include "sl_relay.h"
#include "sl_schema.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A requirement and its run, as the batch's locking read found them (the
 * strings point into that read's result). */
typedef struct req_row {
	const char *run_id, *run_status, *run_pause_seq, *status, *pause_seq;
	const char *run_user; /* the run's user_id, NULL when none */
	const char *agent_id, *session_id;
	const sl_policy *policy; /* the rule that applies to it now, NULL: none */
	const char *tool_name, *tool_call_id;
	bool expired, needs_input, external;
	int quorum; /* confirmations needed (deciders.quorum, 1 when absent) */
	json_t *fields, *tool_args, *tool_schema, *deciders;
} req_row;

/* The rule of the agents' policies that applies to the call of r, or NULL. */
static const sl_policy *policy_of(const sl_agents *agents, const req_row *r)
{
	const sl_agent *a = agents && r->agent_id ? sl_agents_find(agents, r->agent_id) : NULL;
	const sl_tool *t = a ? sl_agent_tool(a, r->tool_name) : NULL;
	sl_policy_of of = {r->tool_args, r->agent_id, r->run_user, r->session_id};

	return t ? sl_policy_match(t->policies, t->npolicies, &of) : NULL;
}

/* A grant of scope run (or session) of the run u, of its agent's tool
 * name, in force. */
#define GRANT_IN_FORCE(name)                                                            \
	"g.revoked_at IS NULL AND g.expires_at > now() AND g.tool_name = " name " AND " \
	"g.agent_id = u.agent_id AND ((g.scope = 'run' AND g.scope_id = u.run_id) OR "  \
	"(g.scope = 'session' AND g.scope_id = u.session_id))"

/* The requirements of run_id named in ids (a JSON list) still pending,
 * with what a policy looks at and the grants in force for their tool
 * ([{"id", "args"}], oldest first; NULL when none), in their order. */
#define RULES_READ_SQL                                                                             \
	"SELECT r.id, r.tool_name, r.tool_args, u.agent_id, u.user_id, u.session_id, "             \
	"(SELECT json_agg(json_build_object('id', g.id, 'args', g.args) ORDER BY "                 \
	"g.created_at, g.id) FROM grants g WHERE " GRANT_IN_FORCE(                                 \
	    "r.tool_name") ") "                                                                    \
	                   "FROM requirements r JOIN runs u ON u.run_id = r.run_id WHERE "         \
	                   "r.run_id = $1 AND "                                                    \
	                   "r.id IN (SELECT jsonb_array_elements_text($2::jsonb)) AND r.status = " \
	                   "'pending' "                                                            \
	                   "ORDER BY r.position"

/* A require rule's demands, into a pending requirement's deciders (for what
 * the API shows; each decision applies the rule itself): the larger quorum,
 * and the rule. */
#define POLICY_REQUIRE_SQL                                                                  \
	"UPDATE requirements SET deciders = deciders || jsonb_build_object('quorum', "      \
	"greatest(coalesce((deciders->>'quorum')::int, 1), $2::int), 'policy', $3::jsonb) " \
	"WHERE id = $1 AND status = 'pending'"

/* Applies rule p to pending requirement id: decides it, or records what it
 * requires. A requirement decided meanwhile (or being decided) is left as
 * it is. */
static sl_status apply_policy(ap_store *s, const char *id, const char *run_id, const sl_policy *p,
                              char *errbuf, size_t errsize)
{
	char by[128], quorum[16];
	json_t *out = NULL;
	sl_status st;

	snprintf(by, sizeof(by), "policy:%s", p->name);
	if (p->effect == SL_EFFECT_REQUIRE) {
		json_t *rule = json_pack("{s:s, s:s, s:O?, s:i}", "name", p->name, "sha256",
		                         s->agents->policies_sha256, "approvers", p->approvers,
		                         "quorum", p->quorum ? p->quorum : 1);
		char *text = json_dumps(rule, JSON_COMPACT);

		snprintf(quorum, sizeof(quorum), "%d", p->quorum ? p->quorum : 1);
		st = sl_db_exec(s->db, POLICY_REQUIRE_SQL, 3, (const char *[]){id, quorum, text},
		                NULL, errbuf, errsize);
		if (!st)
			sl_info("requirement %s of run %s: %s requires %s%s", id, run_id, by,
			        p->quorum > 1 ? "a quorum" : "",
			        p->approvers
			            ? (p->quorum > 1 ? " of its approvers" : "its approvers")
			            : "");
		free(text);
		json_decref(rule);
		return st;
	}
	st = ap_store_resolve(
	    s, id,
	    &(ap_decision){.action = p->effect == SL_EFFECT_APPROVE ? AP_CONFIRM : AP_REJECT,
	                   .note = p->note,
	                   .resolved_by = by,
	                   .policy = p},
	    &out, errbuf, errsize);
	json_decref(out);
	if (st == SL_CONFLICT || st == SL_NOT_FOUND || st == SL_INVALID) {
		/* decided by someone first, the run cancelled, or a tool the
		 * workers' agents file does not gate as the approver's does */
		sl_info("requirement %s of run %s: %s not applied: %s", id, run_id, by, errbuf);
		return SL_OK;
	}
	return st;
}

/* Whether a tool of the paused event data's requirements has policies, by
 * what the event says (its agent and tool names): a paused event of no such
 * tool costs no query. An event that lies here leaves its requirements to
 * people, and each decision applies the rules of the run's agent itself. */
static bool has_policies(const sl_agents *agents, const json_t *data)
{
	const char *agent_id = json_string_value(json_object_get(data, "agent_id"));
	const sl_agent *a = agents && agent_id ? sl_agents_find(agents, agent_id) : NULL;
	const json_t *r;
	size_t i;

	json_array_foreach (a ? json_object_get(data, "requirements") : NULL, i, r) {
		const char *name = json_string_value(json_object_get(r, "tool_name"));
		const sl_tool *t = name ? sl_agent_tool(a, name) : NULL;

		if (t && t->npolicies)
			return true;
	}
	return false;
}

/* The first of grants ([{"id", "args"}], oldest first) whose arguments
 * the call's match, or NULL. */
static const char *grant_for(const json_t *grants, const json_t *args)
{
	const json_t *g;
	size_t i;

	json_array_foreach (grants, i, g)
		if (sl_json_matches(args, json_object_get(g, "args")))
			return json_string_value(json_object_get(g, "id"));
	return NULL;
}

/* Approves pending requirement id by grant gid, as a person would. A
 * requirement decided meanwhile is left as it is. */
static sl_status apply_grant(ap_store *s, const char *id, const char *run_id, const char *gid,
                             char *errbuf, size_t errsize)
{
	char by[64];
	json_t *out = NULL;
	sl_status st;

	snprintf(by, sizeof(by), "grant:%s", gid);
	st = ap_store_resolve(
	    s, id, &(ap_decision){.action = AP_CONFIRM, .resolved_by = by, .by_grant = gid}, &out,
	    errbuf, errsize);
	json_decref(out);
	if (st == SL_CONFLICT || st == SL_NOT_FOUND || st == SL_INVALID) {
		sl_info("requirement %s of run %s: %s not applied: %s", id, run_id, by, errbuf);
		return SL_OK;
	}
	return st;
}

/* Applies the tools' policies, and where none applies the grants of the
 * run and its session (granted: the check found some), to the pending
 * requirements of run_id named in ids (of the paused event's data). A
 * policy comes first: a grant never stands in for a rule's reject or for
 * the people a rule requires. */
static sl_status apply_rules(ap_store *s, const char *run_id, const char *ids, const json_t *data,
                             bool granted, char *errbuf, size_t errsize)
{
	PGresult *res = NULL;
	sl_status st;

	if (!granted && !has_policies(s->agents, data))
		return SL_OK;
	if ((st = sl_db_exec(s->db, RULES_READ_SQL, 2, (const char *[]){run_id, ids}, &res, errbuf,
	                     errsize)))
		return st;
	for (int i = 0; i < PQntuples(res) && !st; i++) {
		json_t *args = json_loads(PQgetvalue(res, i, 2), 0, NULL);
		json_t *grants =
		    PQgetisnull(res, i, 6) ? NULL : json_loads(PQgetvalue(res, i, 6), 0, NULL);
		req_row r = {.run_id = run_id,
		             .tool_name = PQgetvalue(res, i, 1),
		             .tool_args = args,
		             .agent_id = sl_db_text(res, i, 3),
		             .run_user = sl_db_text(res, i, 4),
		             .session_id = sl_db_text(res, i, 5)};
		const sl_policy *p = policy_of(s->agents, &r);
		const char *gid = p || !args ? NULL : grant_for(grants, args);

		if (p)
			st = apply_policy(s, PQgetvalue(res, i, 0), run_id, p, errbuf, errsize);
		else if (gid)
			st = apply_grant(s, PQgetvalue(res, i, 0), run_id, gid, errbuf, errsize);
		json_decref(grants);
		json_decref(args);
	}
	PQclear(res);
	return st;
}

/* Notifications of requirements ($1: their ids, a JSON list) for the
 * webhooks of $2 (their URLs, a JSON list) and, for decided ones, $3 (the
 * expired ones'): requirement.pending for those pending, .decided / .expired
 * for those resolved or expired in this transaction. Once each per webhook
 * (a redelivered paused event adds nothing). $4: the inbox's address; $5:
 * "" or why a pending one is told again ("reminder", "escalation"). */
#define HOOKS_SQL                                                                                \
	"INSERT INTO webhook_deliveries (hook, msg_id, event, payload) SELECT h.url, e.name || " \
	"':' || r.id || coalesce(':' || nullif($5::text, ''), ''), e.name, json_build_object("   \
	"'type', e.name, 'timestamp', now(), 'data', " REQUIREMENT_JSON "::jsonb || "            \
	"jsonb_strip_nulls(jsonb_build_object('link', $4::text || '/?requirement=' || r.id, "    \
	"'again', nullif($5::text, ''))))::text FROM requirements r, LATERAL (SELECT CASE "      \
	"r.status WHEN 'pending' "                                                               \
	"THEN 'requirement.pending' WHEN 'expired' THEN 'requirement.expired' ELSE "             \
	"'requirement.decided' END AS name) e, LATERAL jsonb_array_elements_text(CASE WHEN "     \
	"r.status = 'expired' THEN $3::jsonb ELSE $2::jsonb END) AS h(url) WHERE r.id IN "       \
	"(SELECT jsonb_array_elements_text($1::jsonb)) AND (r.status = 'pending' OR "            \
	"(r.status IN ('resolved', 'expired') AND r.resolved_at = now())) "                      \
	"ON CONFLICT (hook, msg_id) DO NOTHING"

sl_status ap_store_record_result(ap_store *s, const sl_event *ev, char *errbuf, size_t errsize)
{
	bool ok = !strcmp(ev->type, SL_EVENT_RUN_COMPLETED);
	const char *urls = ap_hooks_urls(s->hooks, ok ? AP_HOOK_COMPLETED : AP_HOOK_FAILED);
	char *data;
	sl_status st;

	if (!urls)
		return SL_OK;
	data = json_dumps(ev->data, JSON_COMPACT);
	st = sl_db_exec(s->db,
	                "INSERT INTO webhook_deliveries (hook, msg_id, event, payload) SELECT "
	                "h.url, $2, $3, json_build_object('type', $3::text, 'timestamp', now(), "
	                "'data', $4::jsonb || jsonb_build_object('link', $5::text || '/?run=' || "
	                "($4::jsonb->>'run_id')))::text FROM jsonb_array_elements_text($1::jsonb) "
	                "AS h(url) ON CONFLICT (hook, msg_id) DO NOTHING",
	                5,
	                (const char *[]){urls, ev->id, ok ? "run.completed" : "run.failed", data,
	                                 s->public_url ? s->public_url : ""},
	                NULL, errbuf, errsize);
	free(data);
	return st;
}

/* Queues the pending notifications of the requirements of ids (a JSON
 * list) still pending after the rules. */
static sl_status notify_pending(ap_store *s, const char *ids, char *errbuf, size_t errsize)
{
	const char *urls = ap_hooks_urls(s->hooks, AP_HOOK_PENDING);
	sl_status st = SL_OK;

	if (urls)
		st = sl_db_exec(
		    s->db, HOOKS_SQL, 5,
		    (const char *[]){ids, urls, "[]", s->public_url ? s->public_url : "", ""}, NULL,
		    errbuf, errsize);
	return st;
}

sl_status ap_store_record_paused(ap_store *s, const sl_event *ev, char *errbuf, size_t errsize)
{
	const char *run_id = json_string_value(json_object_get(ev->data, "run_id"));
	json_t *reqs = json_object_get(ev->data, "requirements"), *r;
	json_t *ids = json_array();
	char *idlist;
	PGresult *res = NULL;
	sl_status st;
	size_t i;

	json_array_foreach (reqs, i, r)
		json_array_append(ids, json_object_get(r, "id"));
	idlist = json_dumps(ids, JSON_COMPACT);
	/* A read-only check, so a redelivered event is simply checked again:
	 * the run, the requirements the event names that were never recorded
	 * (NULL when none), and whether a grant may apply to one of them. */
	st = sl_db_exec(s->db,
	                "SELECT u.status, (SELECT json_agg(x.id) FROM "
	                "jsonb_array_elements_text($2::jsonb) AS x(id) WHERE NOT EXISTS "
	                "(SELECT 1 FROM requirements q WHERE q.id = x.id AND q.run_id = $1)), "
	                "EXISTS (SELECT 1 FROM grants g, requirements q WHERE q.run_id = $1 AND "
	                "q.status = 'pending' AND " GRANT_IN_FORCE(
	                    "q.tool_name") ") "
	                                   "FROM runs u WHERE u.run_id = $1",
	                2, (const char *[]){run_id, idlist}, &res, errbuf, errsize);
	if (st)
		goto out;
	if (PQntuples(res) != 1) {
		st = sl_err(errbuf, errsize, SL_NOT_FOUND, "paused event for unknown run %s",
		            run_id);
		goto out;
	}
	if (!PQgetisnull(res, 0, 1)) {
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "run %s: paused event names requirements %s, which were never recorded",
		            run_id, PQgetvalue(res, 0, 1));
		goto out;
	}
	sl_info("run %s: paused, %zu requirement(s) awaiting a decision", run_id,
	        json_array_size(reqs));
	st = apply_rules(s, run_id, idlist, ev->data, sl_db_bool(res, 0, 2), errbuf, errsize);
	if (!st)
		st = notify_pending(s, idlist, errbuf, errsize);
out:
	PQclear(res);
	free(idlist);
	json_decref(ids);
	return st;
}

/* Checks user-input values against the requirement's field list: every
 * field given, no other, each of its type. */
static sl_status check_values(const json_t *values, const json_t *fields, char *errbuf,
                              size_t errsize)
{
	const char *key;
	json_t *v, *f;
	size_t i;

	if (!json_is_object(values))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "values must be an object of field values");
	json_array_foreach (fields, i, f) {
		const char *name = json_string_value(json_object_get(f, "name"));
		const char *type = json_string_value(json_object_get(f, "type"));

		v = json_object_get(values, name ? name : "");
		if (!v)
			return sl_err(errbuf, errsize, SL_INVALID, "values: field %s is missing",
			              name);
		if (type && !sl_schema_type_is(v, type))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "values: field %s must be of type %s", name, type);
	}
	json_object_foreach ((json_t *)values, key, v) {
		bool known = false;
		json_array_foreach (fields, i, f)
			known =
			    known || !strcmp(json_string_value(json_object_get(f, "name")), key);
		if (!known)
			return sl_err(errbuf, errsize, SL_INVALID,
			              "values: field %.100s is not asked for", key);
	}
	return SL_OK;
}

/* One decision of a batch on its way through ap_store_resolve_many(). */
typedef struct resolving {
	ap_resolution *v;
	req_row r;
	bool planned; /* checked; its statement is in the batch */
	bool late;    /* came after expires_at: it expires the requirement, then 409 */
	bool voted;   /* a vote short of the quorum: recorded, the requirement stays pending */
	ap_action action;
	char *values, *edited, *cont;
	char approval_id[37];
	char grant_id[37]; /* the grant the decision makes, "" when none */
	json_t *event;
} resolving;

static void resolving_clear(resolving *g)
{
	json_decref(g->r.fields);
	json_decref(g->r.tool_args);
	json_decref(g->r.tool_schema);
	json_decref(g->r.deciders);
	json_decref(g->event);
	free(g->values);
	free(g->edited);
	free(g->cont);
	memset(g, 0, sizeof(*g));
}

/*
 * Turns d into what is stored, checked against the requirement: the action
 * (APPROVE resolved to the one the tool needs), the user input and edited
 * arguments as JSON text (NULL when none).
 */
static sl_status plan(const req_row *r, const ap_decision *d, ap_action *action, char **values,
                      char **edited, char *errbuf, size_t errsize)
{
	sl_status st;

	*values = *edited = NULL;
	*action = d->action;
	if (*action == AP_APPROVE)
		*action = r->needs_input ? AP_INPUT : r->external ? AP_RESULT : AP_CONFIRM;
	switch (*action) {
	case AP_CONFIRM:
		if (r->needs_input)
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "this requirement asks for user input: send the values to /input");
		if (r->external)
			return sl_err(errbuf, errsize, SL_INVALID,
			              "this tool runs outside Sluice: send its result to /result");
		if (d->tool_args) {
			if (!json_is_object(d->tool_args))
				return sl_err(errbuf, errsize, SL_INVALID,
				              "tool_args must be an object");
			if ((st = sl_schema_validate(r->tool_schema, d->tool_args, "tool_args",
			                             errbuf, errsize)))
				return st;
			*edited = json_dumps(d->tool_args, JSON_COMPACT);
		}
		return SL_OK;
	case AP_INPUT: {
		json_t *merged;

		if (!r->needs_input)
			return sl_err(errbuf, errsize, SL_INVALID,
			              "this requirement asks for no input");
		if ((st = check_values(d->values, r->fields, errbuf, errsize)))
			return st;
		merged = sl_receipt_args(r->tool_args, NULL, d->values);
		st = sl_schema_validate(r->tool_schema, merged, "tool_args", errbuf, errsize);
		json_decref(merged);
		if (st == SL_OK)
			*values = json_dumps(d->values, JSON_COMPACT);
		return st;
	}
	case AP_RESULT:
		if (!r->external)
			return sl_err(errbuf, errsize, SL_INVALID,
			              "this tool is not executed externally; confirm or reject it");
		if (!d->result)
			return sl_err(errbuf, errsize, SL_INVALID, "result must be a string");
		return SL_OK;
	default: return SL_OK;
	}
}

/*
 * Locks the batch's requirements and their runs, and reads them, in one
 * statement. Runs are locked before their requirements and in run_id order
 * (the sort is below the row locks): resolutions of one run's requirements
 * are serialised, so exactly one of them sees the last pending one go, and
 * two batches lock in the same order. Rows are read as they are once locked.
 */
#define LOAD_SQL                                                                                 \
	"SELECT r.id, u.run_id, u.status AS run_status, u.pause_seq AS run_pause_seq, "          \
	"r.status, r.pause_seq, r.expires_at IS NOT NULL AND r.expires_at <= now() AS expired, " \
	"r.needs_user_input, r.external_execution, r.user_input_schema, r.tool_args, "           \
	"r.tool_schema, u.user_id AS run_user_id, r.tool_name, r.deciders, r.tool_call_id, "     \
	"u.agent_id, u.session_id "                                                              \
	"FROM runs u JOIN requirements r ON r.run_id = u.run_id "                                \
	"WHERE r.id = ANY ($1::text[]) "                                                         \
	"ORDER BY u.run_id, r.id FOR UPDATE OF u, r"

/* Whether name is in the JSON list of names. */
static bool listed(const json_t *list, const char *name)
{
	const json_t *v;
	size_t i;

	json_array_foreach (list, i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), name))
			return true;
	return false;
}

/* Whether d's identity is among approvers ({"users", "groups"}), by name
 * or by one of its groups. */
static bool among(const json_t *approvers, const ap_decision *d)
{
	bool named = listed(json_object_get(approvers, "users"), d->resolved_by);

	for (size_t i = 0; !named && i < d->ngroups; i++)
		named = listed(json_object_get(approvers, "groups"), d->groups[i]);
	return named;
}

/* Whether d's identity may decide requirement id (r): not the run's own
 * user unless the tool allows self-approval; one of the tool's named
 * approvers, by name or group, when it names any; not a confirmation that
 * the policy applying to it rejects, and among the approvers that policy
 * requires, if any. A policy's decision and an expiry are no one's: they
 * are not checked. SL_FORBIDDEN says why. */
static sl_status eligible(const req_row *r, const ap_decision *d, const char *id, char *errbuf,
                          size_t errsize)
{
	const json_t *approvers = json_object_get(r->deciders, "approvers");
	const sl_policy *p = r->policy;

	if (d->policy || d->by_grant || d->action == AP_EXPIRE || !d->resolved_by)
		return SL_OK;
	if (p && p->effect == SL_EFFECT_REJECT && d->action != AP_REJECT)
		return sl_err(errbuf, errsize, SL_FORBIDDEN,
		              "%s may not approve requirement %s: policy %s of tool %s rejects "
		              "it%s%s",
		              d->resolved_by, id, p->name, r->tool_name, p->note ? ": " : "",
		              p->note ? p->note : "");
	if (p && p->approvers && !among(p->approvers, d))
		return sl_err(errbuf, errsize, SL_FORBIDDEN,
		              "%s may not decide requirement %s: policy %s of tool %s requires "
		              "its approvers",
		              d->resolved_by, id, p->name, r->tool_name);
	if (!json_is_true(json_object_get(r->deciders, "self_approval")) && r->run_user &&
	    !strcmp(r->run_user, d->resolved_by))
		return sl_err(errbuf, errsize, SL_FORBIDDEN,
		              "%s may not decide requirement %s: the run is %s's own, and tool %s "
		              "does not allow self-approval",
		              d->resolved_by, id, r->run_user, r->tool_name);
	if (json_is_object(approvers) && !among(approvers, d))
		return sl_err(errbuf, errsize, SL_FORBIDDEN,
		              "%s may not decide requirement %s: it is not among tool %s's "
		              "approvers",
		              d->resolved_by, id, r->tool_name);
	return SL_OK;
}

/* Fills g->r from the locking read's row for g's requirement, with the
 * policy of agents that applies to it, and checks that it can be decided. */
static sl_status check_row(const sl_agents *agents, const PGresult *res, resolving *g, char *errbuf,
                           size_t errsize)
{
	enum {
		ID,
		RUN_ID,
		RUN_STATUS,
		RUN_PAUSE_SEQ,
		STATUS,
		PAUSE_SEQ,
		EXPIRED,
		NEEDS_INPUT,
		EXTERNAL,
		FIELDS,
		TOOL_ARGS,
		TOOL_SCHEMA,
		RUN_USER,
		TOOL_NAME,
		DECIDERS,
		TOOL_CALL_ID,
		AGENT_ID,
		SESSION_ID,
		NCOLS
	};
	static const char *const names[NCOLS] = {"id",
	                                         "run_id",
	                                         "run_status",
	                                         "run_pause_seq",
	                                         "status",
	                                         "pause_seq",
	                                         "expired",
	                                         "needs_user_input",
	                                         "external_execution",
	                                         "user_input_schema",
	                                         "tool_args",
	                                         "tool_schema",
	                                         "run_user_id",
	                                         "tool_name",
	                                         "deciders",
	                                         "tool_call_id",
	                                         "agent_id",
	                                         "session_id"};
	const char *id = g->v->id;
	req_row *r = &g->r;
	int row = -1, at[NCOLS];
	sl_status st;

	if ((st = sl_db_columns(res, names, NCOLS, at, errbuf, errsize)))
		return st;
	for (int i = 0; i < PQntuples(res) && row < 0; i++)
		if (!strcmp(PQgetvalue(res, i, at[ID]), id))
			row = i;
	if (row < 0)
		return sl_err(errbuf, errsize, SL_NOT_FOUND, "no requirement %s", id);
	r->run_id = PQgetvalue(res, row, at[RUN_ID]);
	r->run_status = PQgetvalue(res, row, at[RUN_STATUS]);
	r->run_pause_seq = PQgetvalue(res, row, at[RUN_PAUSE_SEQ]);
	r->status = PQgetvalue(res, row, at[STATUS]);
	r->pause_seq = PQgetvalue(res, row, at[PAUSE_SEQ]);
	r->expired = sl_db_bool(res, row, at[EXPIRED]);
	r->needs_input = sl_db_bool(res, row, at[NEEDS_INPUT]);
	r->external = sl_db_bool(res, row, at[EXTERNAL]);
	r->fields = json_loads(PQgetvalue(res, row, at[FIELDS]), 0, NULL);
	r->tool_args = json_loads(PQgetvalue(res, row, at[TOOL_ARGS]), 0, NULL);
	r->tool_schema = json_loads(PQgetvalue(res, row, at[TOOL_SCHEMA]), 0, NULL);
	r->run_user = sl_db_text(res, row, at[RUN_USER]);
	r->tool_name = PQgetvalue(res, row, at[TOOL_NAME]);
	r->tool_call_id = PQgetvalue(res, row, at[TOOL_CALL_ID]);
	r->deciders = json_loads(PQgetvalue(res, row, at[DECIDERS]), 0, NULL);
	r->quorum = (int)json_integer_value(json_object_get(r->deciders, "quorum"));
	if (r->quorum < 1)
		r->quorum = 1;
	r->agent_id = sl_db_text(res, row, at[AGENT_ID]);
	r->session_id = sl_db_text(res, row, at[SESSION_ID]);
	r->policy = policy_of(agents, r);
	if (r->policy && r->policy->quorum > r->quorum)
		r->quorum = r->policy->quorum;
	if ((st = eligible(r, &g->v->d, id, errbuf, errsize)))
		return st;
	if (strcmp(r->status, "pending"))
		return sl_err(errbuf, errsize, SL_CONFLICT, "requirement %s is already %s", id,
		              r->status);
	if (strcmp(r->run_status, "paused") || strcmp(r->run_pause_seq, r->pause_seq))
		return sl_err(errbuf, errsize, SL_CONFLICT,
		              "run %s is %s; requirement %s cannot be decided", r->run_id,
		              r->run_status, id);
	return SL_OK;
}

/*
 * One statement for a batch's decisions ($1: a JSON array, one object per
 * decision, in batch order; $2: the continues topic). Each decision; its
 * approval record (a "required" one was opened at the pause, an "audit" one
 * is written now; both end with the outcome); and for each run whose pause
 * has nothing pending any more, the continue event with every decision of
 * the pause (the runs' locks, taken by the read before, make this batch the
 * only one that can see its last requirement go). Of several decisions of
 * one run in the batch, the last one's event is the one queued, with a
 * lease for the approver to publish it ($3, SL_OUTBOX_LEASE). It answers,
 * for each decision (by its place i in the batch), the requirement as it is
 * now and whether its continue event was queued (answer), and that event's
 * outbox row (id, topic, key, payload; NULL when none), which
 * sl_relay_publish() reads from column 2 on.
 */
#define DECIDE_SQL                                                                              \
	"WITH d AS (SELECT d.* FROM sluice_batch($1::jsonb) AS b(r), jsonb_to_record(b.r) AS "  \
	"d(i int, id text, status text, confirmed boolean, note text, resolved_by text, "       \
	"user_input text, external_result text, edited_args text, appr_status text, "           \
	"approval_id text, run_id text, pause_seq int, cont text, receipt text, "               \
	"policy_sha256 text, by_grant text, grant_id text, grant_scope text, grant_ttl_s int, " \
	"grant_args text)), "                                                                   \
	"upd AS (UPDATE requirements q SET status = d.status, confirmed = d.confirmed, "        \
	"note = d.note, resolved_by = d.resolved_by, user_input = d.user_input::jsonb, "        \
	"external_result = d.external_result, edited_args = d.edited_args::jsonb, "             \
	"receipt = d.receipt, resolved_at = now() FROM d WHERE q.id = d.id "                    \
	"RETURNING q.*, d.i, d.appr_status, d.approval_id, d.cont, d.policy_sha256, "           \
	"d.by_grant, d.grant_id, d.grant_scope, d.grant_ttl_s, d.grant_args), "                 \
	"gr AS (INSERT INTO grants (id, scope, scope_id, agent_id, tool_name, args, "           \
	"granted_by, requirement_id, expires_at) SELECT r.grant_id, r.grant_scope, CASE "       \
	"r.grant_scope WHEN 'run' THEN r.run_id ELSE u.session_id END, u.agent_id, "            \
	"r.tool_name, r.grant_args::jsonb, r.resolved_by, r.id, now() + make_interval(secs "    \
	"=> r.grant_ttl_s) FROM upd r JOIN runs u ON u.run_id = r.run_id WHERE r.grant_id IS "  \
	"NOT NULL), "                                                                           \
	"appr AS (INSERT INTO approvals AS a (id, run_id, session_id, requirement_id, "         \
	"agent_id, user_id, approval_type, pause_type, status, tool_name, tool_args, "          \
	"resolution_data, resolved_by, resolved_at, expires_at, run_status) "                   \
	"SELECT r.approval_id, r.run_id, u.session_id, r.id, u.agent_id, u.user_id, "           \
	"r.approval_type, r.pause_type, r.appr_status, r.tool_name, r.tool_args, "              \
	"nullif(jsonb_strip_nulls(jsonb_build_object('note', r.note, 'values', "                \
	"r.user_input, 'result', r.external_result, 'tool_args', r.edited_args, "               \
	"'votes', " VOTES_JSON "::jsonb, 'policy_sha256', r.policy_sha256)), "                  \
	"'{}'::jsonb), r.resolved_by, now(), r.expires_at, u.status "                           \
	"FROM upd r JOIN runs u ON u.run_id = r.run_id WHERE r.approval_type IS NOT NULL "      \
	"ON CONFLICT (requirement_id) DO UPDATE SET status = excluded.status, "                 \
	"resolution_data = excluded.resolution_data, resolved_by = excluded.resolved_by, "      \
	"resolved_at = excluded.resolved_at, updated_at = now()), "                             \
	"led AS (INSERT INTO ledger_queue (kind, run_id, requirement_id, actor, body) "         \
	"SELECT CASE r.status WHEN 'expired' THEN 'requirement.expired' ELSE "                  \
	"'requirement.resolved' END, r.run_id, r.id, r.resolved_by, jsonb_strip_nulls("         \
	"jsonb_build_object('decision', CASE WHEN r.status = 'expired' THEN 'expired' "         \
	"WHEN r.confirmed THEN 'approved' ELSE 'rejected' END, 'note', r.note, 'tool_args', "   \
	"r.edited_args, 'values', r.user_input, 'result_sha256', encode(sha256(convert_to("     \
	"r.external_result, 'UTF8')), 'hex'), 'quorum', (r.deciders->>'quorum')::int, "         \
	"'policy_sha256', r.policy_sha256, 'grant_id', r.by_grant, 'grant', CASE WHEN "         \
	"r.grant_id IS NOT NULL THEN jsonb_build_object('id', r.grant_id, 'scope', "            \
	"r.grant_scope, 'ttl_s', r.grant_ttl_s, 'args', r.grant_args::jsonb) END)) "            \
	"FROM upd r), "                                                                         \
	"pause AS (SELECT q.run_id, q.id, q.position, q.status, q.confirmed, q.note, "          \
	"q.user_input, q.external_result, q.resolved_by, q.receipt FROM requirements q "        \
	"JOIN (SELECT DISTINCT run_id, pause_seq FROM d) p "                                    \
	"ON q.run_id = p.run_id AND q.pause_seq = p.pause_seq "                                 \
	"WHERE q.id NOT IN (SELECT id FROM d) "                                                 \
	"UNION ALL SELECT run_id, id, position, status, confirmed, note, user_input, "          \
	"external_result, resolved_by, receipt FROM upd), "                                     \
	"decided AS (SELECT run_id, jsonb_agg(jsonb_build_object('requirement_id', id, "        \
	"'confirmed', coalesce(confirmed, false), 'note', note, 'user_input', user_input, "     \
	"'external_result', external_result, 'resolved_by', resolved_by, 'receipt', receipt) "  \
	"ORDER BY position) "                                                                   \
	"AS decisions FROM pause GROUP BY run_id HAVING NOT bool_or(status = 'pending')), "     \
	"chosen AS (SELECT DISTINCT ON (x.run_id) x.run_id, x.decisions, u.cont, u.i "          \
	"FROM decided x JOIN upd u ON u.run_id = x.run_id ORDER BY x.run_id, u.i DESC), "       \
	"cont AS (INSERT INTO outbox (topic, key, payload, relay_after) SELECT $2, run_id, "    \
	"jsonb_set(cont::jsonb, '{data,decisions}', decisions)::text, "                         \
	"now() + $3::interval FROM chosen "                                                     \
	"RETURNING id, topic, key, payload) "                                                   \
	"SELECT r.i, json_build_object('requirement', " REQUIREMENT_JSON ", 'continued', "      \
	"o.id IS NOT NULL) AS answer, o.id, o.topic, o.key, o.payload FROM upd r "              \
	"LEFT JOIN chosen c ON c.i = r.i LEFT JOIN cont o ON o.key = c.run_id"

/*
 * Records d's identity's vote on a requirement that needs a quorum, in
 * the batch's transaction (its row is locked): one vote per identity
 * (SL_CONFLICT for a second). A confirmation short of the quorum leaves
 * the requirement pending (g->voted); the one that meets it, or the first
 * rejection, resolves it, and the approval row lists every vote.
 */
static sl_status vote(ap_store *s, resolving *g, char *errbuf, size_t errsize)
{
	const ap_decision *d = &g->v->d;
	const char *p[] = {g->v->id, d->resolved_by, g->action == AP_CONFIRM ? "t" : "f", d->note};
	PGresult *res = NULL;
	bool inserted = false;
	long confirms;
	sl_status st;

	/* the vote and its ledger entry (none for a second vote) */
	if ((st = sl_db_insert_once(
	         s->db,
	         "WITH v AS (INSERT INTO requirement_votes (requirement_id, voter, confirmed, "
	         "note) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING *) "
	         "INSERT INTO ledger_queue (kind, run_id, requirement_id, actor, body) "
	         "SELECT 'requirement.vote', q.run_id, v.requirement_id, v.voter, "
	         "jsonb_strip_nulls(jsonb_build_object('confirmed', v.confirmed, 'note', "
	         "v.note)) FROM v JOIN requirements q ON q.id = v.requirement_id",
	         4, p, &inserted, errbuf, errsize)))
		return st;
	if (!inserted)
		return sl_err(errbuf, errsize, SL_CONFLICT,
		              "%s has already voted on requirement %s", d->resolved_by, g->v->id);
	if (g->action == AP_REJECT)
		return SL_OK;
	if ((st = sl_db_exec(s->db,
	                     "SELECT count(*) FROM requirement_votes WHERE requirement_id = $1 "
	                     "AND confirmed",
	                     1, p, &res, errbuf, errsize)))
		return st;
	confirms = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	g->voted = confirms < g->r.quorum;
	sl_info("requirement %s: %s votes yes, %ld of %d", g->v->id, d->resolved_by, confirms,
	        g->r.quorum);
	return SL_OK;
}

/* Checks g against its row and makes what its statement needs. */
static sl_status prepare_decision(ap_store *s, const PGresult *load, resolving *g, char *errbuf,
                                  size_t errsize)
{
	const ap_decision *d = &g->v->d;
	sl_status st;

	if ((st = check_row(s->agents, load, g, errbuf, errsize)))
		return st;
	g->action = d->action;
	if (g->r.expired && g->action != AP_EXPIRE && !d->at_timeout) {
		/* Too late: the requirement expires now and the decision is refused. */
		g->late = true;
		g->action = AP_EXPIRE;
	}
	if (g->action != AP_EXPIRE &&
	    (st = plan(&g->r, d, &g->action, &g->values, &g->edited, errbuf, errsize)))
		return st;
	if (d->grant && !g->late && (g->action != AP_CONFIRM || g->r.quorum > 1))
		return sl_err(
		    errbuf, errsize, SL_INVALID,
		    g->action != AP_CONFIRM
		        ? "a grant comes with a confirmation"
		        : "a grant is one person's decision, and tool %s needs a quorum of %d",
		    g->r.tool_name, g->r.quorum);
	if (g->r.quorum > 1 && !d->policy && !d->by_grant &&
	    (g->action == AP_CONFIRM || g->action == AP_REJECT) &&
	    (st = vote(s, g, errbuf, errsize)))
		return st;
	/* The continue event this decision sends if it is the pause's last;
	 * the statement fills in the decisions. */
	g->event = sl_event_new(SL_EVENT_RUN_CONTINUE, s->source, g->r.run_id,
	                        json_pack("{s:s, s:n}", "run_id", g->r.run_id, "decisions"));
	g->cont = json_dumps(g->event, JSON_COMPACT);
	sl_uuid_v7(g->approval_id);
	if (d->grant && !g->late)
		sl_uuid_v7(g->grant_id);
	return SL_OK;
}

/* The receipt of g's decision (sl_receipt.h): over the arguments the tool
 * would run with, as the worker makes them (the edited ones, else the
 * model's, with the input filled in). NULL without a signing key. */
static char *receipt(const ap_store *s, const resolving *g, const char *decision,
                     const char *decided_by)
{
	/* g->edited and g->values are d's arguments and values, as stored */
	json_t *args = sl_receipt_args(g->r.tool_args, g->edited ? g->v->d.tool_args : NULL,
	                               g->values ? g->v->d.values : NULL);
	sl_receipt_of of = {g->r.run_id, g->v->id, g->r.tool_call_id, g->r.tool_name, args};
	char *jws = NULL;

	if (s->signer && args)
		jws = sl_receipt_make(s->signer, &of, decision, decided_by, sl_now_ms() / 1000);
	json_decref(args);
	return jws;
}

/* g's object in the batch of DECIDE_SQL: its place i and what it writes. */
static json_t *decision_row(const ap_store *s, const resolving *g, int i)
{
	const ap_decision *d = &g->v->d;
	bool expire = g->action == AP_EXPIRE;
	bool confirmed = g->action == AP_CONFIRM || g->action == AP_INPUT || g->action == AP_RESULT;
	json_t *row = json_object();

	json_object_set_new(row, "i", json_integer(i));
	json_object_set_new(row, "id", json_string(g->v->id));
	json_object_set_new(row, "status", json_string(expire ? "expired" : "resolved"));
	json_object_set_new(row, "confirmed", json_boolean(confirmed));
	json_object_set_new(row, "note",
	                    expire    ? json_string("the approval timed out")
	                    : d->note ? json_string(d->note)
	                              : json_null());
	json_object_set_new(row, "resolved_by",
	                    expire           ? json_string("sluice")
	                    : d->resolved_by ? json_string(d->resolved_by)
	                                     : json_null());
	json_object_set_new(row, "user_input", g->values ? json_string(g->values) : json_null());
	json_object_set_new(row, "external_result",
	                    g->action == AP_RESULT && d->result ? json_string(d->result)
	                                                        : json_null());
	json_object_set_new(row, "edited_args", g->edited ? json_string(g->edited) : json_null());
	json_object_set_new(row, "appr_status",
	                    json_string(expire      ? "expired"
	                                : confirmed ? "approved"
	                                            : "rejected"));
	json_object_set_new(row, "approval_id", json_string(g->approval_id));
	json_object_set_new(row, "run_id", json_string(g->r.run_id));
	json_object_set_new(row, "pause_seq", json_integer(strtol(g->r.pause_seq, NULL, 10)));
	json_object_set_new(row, "cont", json_string(g->cont));
	json_object_set_new(row, "policy_sha256",
	                    d->policy && s->agents ? json_string(s->agents->policies_sha256)
	                                           : json_null());
	json_object_set_new(row, "by_grant", d->by_grant ? json_string(d->by_grant) : json_null());
	if (*g->grant_id) {
		json_t *args = json_object_get(d->grant, "args");
		char *text = args ? json_dumps(args, JSON_COMPACT) : sl_strdup("{}");

		json_object_set_new(row, "grant_id", json_string(g->grant_id));
		json_object_set_new(row, "grant_scope",
		                    json_incref(json_object_get(d->grant, "scope")));
		json_object_set_new(row, "grant_ttl_s",
		                    json_incref(json_object_get(d->grant, "ttl_s")));
		json_object_set_new(row, "grant_args", json_string(text));
		free(text);
	}
	{
		const char *by = expire ? "sluice" : d->resolved_by ? d->resolved_by : "";
		char *r = receipt(s, g,
		                  expire      ? "expired"
		                  : confirmed ? "approved"
		                              : "rejected",
		                  by);
		json_object_set_new(row, "receipt", r ? json_string(r) : json_null());
		free(r);
	}
	return row;
}

/* What the batch's statement answered for g (its JSON text, NULL when no
 * row came back), now committed. */
static void decided(resolving *g, const char *answer)
{
	ap_resolution *v = g->v;
	json_t *row = answer ? json_loads(answer, 0, NULL) : NULL;

	if (!row) {
		v->st = sl_err(v->err, sizeof(v->err), SL_FATAL,
		               "requirement %s: the decisions' statement answered no row", v->id);
		return;
	}
	if (json_is_true(json_object_get(row, "continued")))
		sl_info("run %s: all requirements resolved; continue event %s queued", g->r.run_id,
		        json_string_value(json_object_get(g->event, "id")));
	sl_info("requirement %s of run %s %s by %s", v->id, g->r.run_id,
	        g->action == AP_EXPIRE   ? "expired"
	        : g->action == AP_REJECT ? "rejected"
	                                 : "approved",
	        g->action == AP_EXPIRE ? "sluice" : v->d.resolved_by);
	if (g->late) {
		v->st = sl_err(v->err, sizeof(v->err), SL_CONFLICT, "requirement %s has expired",
		               v->id);
	} else {
		v->out = json_incref(json_object_get(row, "requirement"));
		v->st = SL_OK;
	}
	json_decref(row);
}

/* Once committed: each vote short of its quorum is answered with its
 * requirement as it is now (pending, the votes so far). */
static void answer_votes(ap_store *s, resolving *g, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ap_resolution *v = g[i].v;
		const char *p[] = {v->id};

		if (v->st || !g[i].voted)
			continue;
		v->st = sl_db_query_json(
		    s->db, "SELECT " REQUIREMENT_JSON " FROM requirements r WHERE r.id = $1", 1, p,
		    &v->out, v->err, sizeof(v->err));
	}
}

/*
 * Runs the batch in one transaction and two round trips: BEGIN and the
 * locking read; then, after the checks here, the decisions' one statement
 * and the COMMIT (a vote on a requirement that needs a quorum adds its
 * own, vote()). Returns the database's failure, if any (then nothing was
 * written and no item is final); the items' own outcomes are in them.
 */
static sl_status resolve_batch(ap_store *s, resolving *g, size_t n, char *errbuf, size_t errsize)
{
	sl_db_stmt q[3];
	PGresult *res[5] = {0}; /* BEGIN, read; decisions, notifications?, COMMIT */
	const char *decided_urls = ap_hooks_urls(s->hooks, AP_HOOK_DECIDED);
	const char *expired_urls = ap_hooks_urls(s->hooks, AP_HOOK_EXPIRED);
	json_t *decided_ids = json_array();
	char *decided_text = NULL;
	int nq;
	const char *answer[AP_RESOLVE_BATCH] = {0};
	json_t *rows = json_array();
	char *batch = NULL;
	int at[2];
	size_t voted = 0;
	sl_buf ids;
	sl_status st;

	/* The ids as a text[] literal, each quoted: an array parameter is
	 * planned as a few probes of the requirements' key. */
	sl_buf_init(&ids, n * (2 * SL_EVENT_MAX_ID + 4) + 8); /* each escaped, quoted */
	sl_buf_append(&ids, "{", 1);
	for (size_t i = 0; i < n; i++) {
		sl_buf_append(&ids, i ? ",\"" : "\"", i ? 2 : 1);
		for (const char *c = g[i].v->id; *c; c++) {
			if (*c == '"' || *c == '\\')
				sl_buf_append(&ids, "\\", 1);
			sl_buf_append(&ids, c, 1);
		}
		sl_buf_append(&ids, "\"", 1);
	}
	sl_buf_append(&ids, "}", 1);
	q[0] = (sl_db_stmt){"BEGIN", 0, NULL};
	q[1] = (sl_db_stmt){LOAD_SQL, 1, (const char *[]){ids.data}};
	if ((st = sl_db_pipeline(s->db, 2, q, res, errbuf, errsize)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		ap_resolution *v = g[i].v;

		/* A second decision on a requirement of the batch: the first wins. */
		for (size_t j = 0; j < i && !v->st; j++)
			if (g[j].planned && !strcmp(g[j].v->id, v->id))
				v->st = sl_err(v->err, sizeof(v->err), SL_CONFLICT,
				               "requirement %s is already %s", v->id,
				               g[j].action == AP_EXPIRE ? "expired" : "resolved");
		if (!v->st)
			v->st = prepare_decision(s, res[1], &g[i], v->err, sizeof(v->err));
		if (v->st || g[i].voted) {
			voted += !v->st;
			continue;
		}
		g[i].planned = true;
		json_array_append_new(rows, decision_row(s, &g[i], (int)i));
		json_array_append_new(decided_ids, json_string(g[i].v->id));
	}
	if (json_array_size(rows) == 0) {
		/* votes alone are committed; else nothing to write: the rollback
		 * below ends the transaction */
		if (voted && !(st = sl_db_commit(s->db, errbuf, errsize)))
			answer_votes(s, g, n);
		goto out;
	}
	batch = json_dumps(rows, JSON_COMPACT);
	q[0] = (sl_db_stmt){DECIDE_SQL, 3,
	                    (const char *[]){batch, s->topic_continues, SL_OUTBOX_LEASE}};
	nq = 1;
	if (decided_urls || expired_urls) {
		/* the notifications of what this transaction decides */
		decided_text = json_dumps(decided_ids, JSON_COMPACT);
		q[nq++] =
		    (sl_db_stmt){HOOKS_SQL, 5,
		                 (const char *[]){decided_text, decided_urls ? decided_urls : "[]",
		                                  expired_urls ? expired_urls : "[]",
		                                  s->public_url ? s->public_url : "", ""}};
	}
	q[nq++] = (sl_db_stmt){"COMMIT", 0, NULL};
	if ((st = sl_db_pipeline(s->db, nq, q, res + 2, errbuf, errsize)))
		goto out;
	answer_votes(s, g, n);
	if ((st = sl_db_columns(res[2], (const char *const[]){"i", "answer"}, 2, at, errbuf,
	                        errsize)))
		goto out; /* committed: cannot be, the statement names them */
	for (int r = 0; r < PQntuples(res[2]); r++) {
		long i = strtol(PQgetvalue(res[2], r, at[0]), NULL, 10);
		if (i >= 0 && (size_t)i < n)
			answer[i] = PQgetvalue(res[2], r, at[1]);
	}
	sl_relay_publish(s->relay, s->db, res[2], 2);
	for (size_t i = 0; i < n; i++)
		if (g[i].planned)
			decided(&g[i], answer[i]);
out:
	sl_db_rollback(s->db);
	for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++)
		PQclear(res[i]);
	json_decref(rows);
	free(batch);
	sl_buf_free(&ids);
	json_decref(decided_ids);
	free(decided_text);
	return st;
}

void ap_store_resolve_many(ap_store *s, ap_resolution *v, size_t n)
{
	resolving g[AP_RESOLVE_BATCH];
	char errbuf[256];
	sl_status st;

	assert(n > 0 && n <= AP_RESOLVE_BATCH);
	memset(g, 0, sizeof(g));
	for (size_t i = 0; i < n; i++) {
		v[i].out = NULL;
		v[i].st = SL_OK;
		v[i].err[0] = '\0';
		g[i].v = &v[i];
	}
	st = resolve_batch(s, g, n, errbuf, sizeof(errbuf));
	for (size_t i = 0; i < n; i++)
		resolving_clear(&g[i]);
	if (st == SL_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		json_decref(v[i].out);
		v[i].out = NULL;
	}
	if (n == 1) {
		v->st = st;
		snprintf(v->err, sizeof(v->err), "%s", errbuf);
		return;
	}
	/* The transaction failed as a whole (a deadlock, a lost connection, a
	 * statement that broke): each decision is tried again on its own, so
	 * that one decision's failure stays its own. */
	sl_warn("a batch of %zu decisions failed (%s); trying each on its own", n, errbuf);
	for (size_t i = 0; i < n; i++)
		ap_store_resolve_many(s, &v[i], 1);
}

sl_status ap_store_resolve(ap_store *s, const char *id, const ap_decision *d, json_t **out,
                           char *errbuf, size_t errsize)
{
	ap_resolution v = {.id = id, .d = *d};

	ap_store_resolve_many(s, &v, 1);
	*out = v.out;
	if (v.st)
		sl_err(errbuf, errsize, v.st, "%s", v.err);
	return v.st;
}

sl_status ap_store_resolve_approval(ap_store *s, const char *approval_id, const ap_decision *d,
                                    json_t **out, char *errbuf, size_t errsize)
{
	const char *p[] = {approval_id};
	PGresult *res;
	json_t *req = NULL;
	sl_status st;

	*out = NULL;
	st = sl_db_exec(s->db, "SELECT requirement_id FROM approvals WHERE id = $1", 1, p, &res,
	                errbuf, errsize);
	if (st)
		return st;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return sl_err(errbuf, errsize, SL_NOT_FOUND, "no approval %s", approval_id);
	}
	st = ap_store_resolve(s, PQgetvalue(res, 0, 0), d, &req, errbuf, errsize);
	PQclear(res);
	json_decref(req);
	if (st)
		return st;
	return ap_query_get_approval(s, approval_id, out, errbuf, errsize);
}

/* What r's time running out does, by its tool's on_timeout or that of the
 * require policy that applies to it (*p). */
static sl_on_timeout timeout_action(const sl_agents *agents, const req_row *r, const sl_policy **p)
{
	const sl_agent *a = agents && r->agent_id ? sl_agents_find(agents, r->agent_id) : NULL;
	const sl_tool *t = a ? sl_agent_tool(a, r->tool_name) : NULL;

	*p = policy_of(agents, r);
	if (*p && (*p)->effect == SL_EFFECT_REQUIRE && (*p)->on_timeout)
		return (*p)->on_timeout;
	return t ? t->on_timeout : SL_TIMEOUT_REJECT;
}

/* Acts on timed-out requirement id of r as action says (not a rejection:
 * those are batched by the caller). */
static sl_status timed_out(ap_store *s, const char *id, const req_row *r, sl_on_timeout action,
                           const sl_policy *p, char *errbuf, size_t errsize)
{
	json_t *out = NULL;
	char by[128], *why;
	sl_status st;

	if (action == SL_TIMEOUT_CANCEL_RUN) {
		why = sl_asprintf("no one decided tool %s in time", r->tool_name);
		st = ap_store_cancel(s, r->run_id, NULL, why, "sluice", &out, errbuf, errsize);
		free(why);
	} else {
		snprintf(by, sizeof(by), "policy:%s", p->name);
		why = sl_asprintf("approved as no one decided in time (policy %s)", p->name);
		st = ap_store_resolve(s, id,
		                      &(ap_decision){.action = AP_CONFIRM,
		                                     .note = why,
		                                     .resolved_by = by,
		                                     .policy = p,
		                                     .at_timeout = true},
		                      &out, errbuf, errsize);
		free(why);
	}
	json_decref(out);
	if (!st)
		sl_info("requirement %s of run %s: timed out; %s", id, r->run_id,
		        action == SL_TIMEOUT_CANCEL_RUN ? "its run cancelled"
		                                        : "approved by policy");
	return st == SL_CONFLICT || st == SL_NOT_FOUND ? SL_OK : st;
}

sl_status ap_store_expire_due(ap_store *s, int *n, char *errbuf, size_t errsize)
{
	ap_resolution v[AP_RESOLVE_BATCH];
	PGresult *res;
	sl_status st;
	int rows;
	size_t k = 0;

	*n = 0;
	st = sl_db_exec(s->db,
	                "SELECT r.id, r.run_id, r.tool_name, r.tool_args, u.agent_id, u.user_id, "
	                "u.session_id FROM requirements r JOIN runs u ON u.run_id = r.run_id "
	                "WHERE r.status = 'pending' AND r.expires_at IS NOT NULL AND "
	                "r.expires_at <= now() ORDER BY r.expires_at LIMIT 100",
	                0, NULL, &res, errbuf, errsize);
	if (st)
		return st;
	rows = PQntuples(res);
	for (int i = 0; i <= rows && !st; i++) {
		/* rejections in batches; the rest one at a time */
		if (i < rows) {
			json_t *args = json_loads(PQgetvalue(res, i, 3), 0, NULL);
			req_row r = {.run_id = PQgetvalue(res, i, 1),
			             .tool_name = PQgetvalue(res, i, 2),
			             .tool_args = args,
			             .agent_id = sl_db_text(res, i, 4),
			             .run_user = sl_db_text(res, i, 5),
			             .session_id = sl_db_text(res, i, 6)};
			const sl_policy *p = NULL;
			sl_on_timeout action = timeout_action(s->agents, &r, &p);

			if (action == SL_TIMEOUT_REJECT) {
				v[k++] = (ap_resolution){.id = PQgetvalue(res, i, 0),
				                         .d.action = AP_EXPIRE};
			} else if (!(st = timed_out(s, PQgetvalue(res, i, 0), &r, action, p, errbuf,
			                            errsize))) {
				(*n)++;
			}
			json_decref(args);
			if (k < AP_RESOLVE_BATCH && i + 1 < rows)
				continue;
		}
		if (!k)
			continue;
		ap_store_resolve_many(s, v, k);
		for (size_t j = 0; j < k; j++) {
			json_decref(v[j].out);
			if (v[j].st == SL_OK)
				(*n)++;
			/* a concurrent decision is fine; anything else is not */
			else if (v[j].st != SL_CONFLICT && v[j].st != SL_NOT_FOUND && !st)
				st = sl_err(errbuf, errsize, v[j].st, "%s", v[j].err);
		}
		k = 0;
	}
	PQclear(res);
	return st;
}

/* The tools' reminders and escalations ($1: [{agent_id, tool_name,
 * remind_s, escalate_s, escalate_to}]) due on pending requirements: each
 * recorded, an escalation's people added to the approvers; the
 * requirements acted on, with what was done. */
#define REMIND_SQL                                                                              \
	"WITH c AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS c(agent_id text, tool_name " \
	"text, remind_s int, escalate_s int, escalate_to jsonb)), "                             \
	"due AS (SELECT r.id, c.escalate_to, c.remind_s IS NOT NULL AND r.reminded_at IS NULL " \
	"AND r.created_at + make_interval(secs => c.remind_s) <= now() AS remind, "             \
	"c.escalate_s IS NOT NULL AND r.escalated_at IS NULL AND r.created_at + "               \
	"make_interval(secs => c.escalate_s) <= now() AS escalate FROM requirements r JOIN "    \
	"runs u ON u.run_id = r.run_id JOIN c ON c.agent_id = u.agent_id AND c.tool_name = "    \
	"r.tool_name WHERE r.status = 'pending') "                                              \
	"UPDATE requirements q SET reminded_at = CASE WHEN d.remind THEN now() ELSE "           \
	"q.reminded_at END, escalated_at = CASE WHEN d.escalate THEN now() ELSE "               \
	"q.escalated_at END, deciders = CASE WHEN d.escalate THEN jsonb_set(q.deciders, "       \
	"'{approvers}', jsonb_build_object('users', (SELECT coalesce(jsonb_agg(DISTINCT x), "   \
	"'[]') FROM jsonb_array_elements(coalesce(q.deciders->'approvers'->'users', '[]') || "  \
	"coalesce(d.escalate_to->'users', '[]')) x), 'groups', (SELECT "                        \
	"coalesce(jsonb_agg(DISTINCT x), '[]') FROM "                                           \
	"jsonb_array_elements(coalesce(q.deciders->'approvers'->'groups', '[]') || "            \
	"coalesce(d.escalate_to->'groups', '[]')) x))) ELSE q.deciders END FROM due d WHERE "   \
	"q.id = d.id AND (d.remind OR d.escalate) AND q.status = 'pending' "                    \
	"RETURNING q.id, q.run_id, d.remind, d.escalate"

char *ap_store_timers(const sl_agents *agents)
{
	json_t *list = json_array();
	char *text = NULL;

	for (size_t i = 0; agents && i < agents->n; i++)
		for (size_t k = 0; k < agents->agents[i].ntools; k++) {
			const sl_tool *t = &agents->agents[i].tools[k];

			if (!t->remind_after_s && !t->escalate_after_s)
				continue;
			json_array_append_new(
			    list, json_pack("{s:s, s:s, s:o, s:o, s:O?}", "agent_id",
			                    agents->agents[i].id, "tool_name", t->name, "remind_s",
			                    t->remind_after_s ? json_integer(t->remind_after_s)
			                                      : json_null(),
			                    "escalate_s",
			                    t->escalate_after_s ? json_integer(t->escalate_after_s)
			                                        : json_null(),
			                    "escalate_to", t->escalate_to));
		}
	if (json_array_size(list))
		text = json_dumps(list, JSON_COMPACT);
	json_decref(list);
	return text;
}

sl_status ap_store_remind_due(ap_store *s, int *n, char *errbuf, size_t errsize)
{
	const char *urls = ap_hooks_urls(s->hooks, AP_HOOK_PENDING);
	PGresult *res = NULL;
	sl_status st;

	*n = 0;
	if (!s->timers)
		return SL_OK;
	if ((st = sl_db_begin(s->db, errbuf, errsize)) ||
	    (st = sl_db_exec(s->db, REMIND_SQL, 1, (const char *[]){s->timers}, &res, errbuf,
	                     errsize)))
		goto out;
	for (int i = 0; i < PQntuples(res) && !st; i++) {
		bool remind = sl_db_bool(res, i, 2), escalate = sl_db_bool(res, i, 3);
		char *ids = sl_asprintf("[\"%s\"]", PQgetvalue(res, i, 0)); /* an id: no quotes */

		sl_info("requirement %s of run %s: %s", PQgetvalue(res, i, 0),
		        PQgetvalue(res, i, 1),
		        remind && escalate ? "reminder and escalation (more approvers)"
		        : escalate         ? "escalated (more approvers)"
		                           : "reminder");
		if (urls)
			st = sl_db_exec(s->db, HOOKS_SQL, 5,
			                (const char *[]){ids, urls, "[]",
			                                 s->public_url ? s->public_url : "",
			                                 escalate ? "escalation" : "reminder"},
			                NULL, errbuf, errsize);
		free(ids);
		(*n)++;
	}
	if (!st)
		st = sl_db_commit(s->db, errbuf, errsize);
out:
	sl_db_rollback(s->db);
	PQclear(res);
	return st;
}

sl_status ap_store_cancel(ap_store *s, const char *run_id, const char *owner, const char *reason,
                          const char *who, json_t **out, char *errbuf, size_t errsize)
{
	const char *p[] = {run_id};
	char *why = NULL;
	PGresult *res = NULL, *row = NULL;
	json_t *event;
	sl_status st;

	*out = NULL;
	if ((st = sl_db_begin(s->db, errbuf, errsize)))
		goto out;
	st =
	    sl_db_exec(s->db,
	               "SELECT status, session_id, user_id, EXISTS (SELECT 1 FROM requirements r "
	               "WHERE r.run_id = u.run_id AND r.status = 'pending' "
	               "AND r.approval_type = 'required') FROM runs u WHERE run_id = $1 FOR UPDATE",
	               1, p, &res, errbuf, errsize);
	if (st)
		goto out;
	if (PQntuples(res) != 1 ||
	    (owner && (PQgetisnull(res, 0, 2) || strcmp(PQgetvalue(res, 0, 2), owner)))) {
		st = sl_err(errbuf, errsize, SL_NOT_FOUND, "no run %s", run_id);
		goto out;
	}
	if (owner && sl_db_bool(res, 0, 3)) {
		st = sl_err(errbuf, errsize, SL_FORBIDDEN,
		            "%s may not cancel run %s: it waits on a required approval, which only "
		            "an admin may override",
		            who, run_id);
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "paused") && strcmp(PQgetvalue(res, 0, 0), "queued")) {
		st = sl_err(errbuf, errsize, SL_CONFLICT,
		            "run %s is %s; only a paused or queued run "
		            "can be cancelled",
		            run_id, PQgetvalue(res, 0, 0));
		goto out;
	}
	/* A paused run whose requirements are all decided is continuing (its
	 * continue event is on its way): the last decision won. Read after
	 * the lock, in a statement of its own, so that a decision committed
	 * while the lock was awaited is seen. */
	if (!strcmp(PQgetvalue(res, 0, 0), "paused")) {
		PGresult *pending = NULL;
		bool decided;

		st = sl_db_exec(
		    s->db,
		    "SELECT 1 FROM requirements WHERE run_id = $1 AND status = 'pending' "
		    "LIMIT 1",
		    1, p, &pending, errbuf, errsize);
		decided = st == SL_OK && PQntuples(pending) == 0;
		PQclear(pending);
		if (st)
			goto out;
		if (decided) {
			st = sl_err(errbuf, errsize, SL_CONFLICT,
			            "run %s is decided and continuing; it can no longer be "
			            "cancelled",
			            run_id);
			goto out;
		}
	}
	why = sl_asprintf("cancelled by %s%s%s", who, reason ? ": " : "", reason ? reason : "");
	{
		const char *c[] = {run_id, why, who};
		if ((st = sl_db_exec(s->db,
		                     "UPDATE runs SET status = 'cancelled', error = $2, "
		                     "version = version + 1, updated_at = now() WHERE run_id = $1",
		                     2, c, NULL, errbuf, errsize)) ||
		    (st = sl_db_exec(
		         s->db,
		         "WITH c AS (UPDATE requirements SET status = 'cancelled', "
		         "resolved_by = $3, note = $2, resolved_at = now() "
		         "WHERE run_id = $1 AND status = 'pending' RETURNING id) "
		         "INSERT INTO ledger_queue (kind, run_id, requirement_id, actor, body) "
		         "SELECT 'requirement.cancelled', $1, c.id, $3, "
		         "jsonb_build_object('note', $2::text) FROM c",
		         3, c, NULL, errbuf, errsize)) ||
		    (st = sl_db_exec(
		         s->db,
		         "UPDATE approvals SET status = 'cancelled', resolved_by = $3, "
		         "resolution_data = jsonb_build_object('note', $2::text), "
		         "resolved_at = now(), run_status = 'cancelled', updated_at = now() "
		         "WHERE run_id = $1 AND status = 'pending'",
		         3, c, NULL, errbuf, errsize)))
			goto out;
		/* the approvals decided before (approved or rejected) stay what
		 * they are, and say the run was cancelled: the runs' trigger
		 * (migration 0014) made their run_status follow the run */
	}
	if ((st = ap_query_get_run(s, run_id, out, errbuf, errsize)))
		goto out;
	event = sl_event_new(SL_EVENT_RUN_FAILED, s->source, run_id,
	                     json_pack("{s:s, s:s, s:s, s:n, s:s, s:O?}", "run_id", run_id,
	                               "session_id", PQgetvalue(res, 0, 1), "status", "cancelled",
	                               "content", "error", why, "decisions",
	                               json_object_get(*out, "decisions")));
	st = sl_outbox_put(s->db, s->topic_results, run_id, event, &row, errbuf, errsize);
	json_decref(event);
	if (st || (st = sl_db_commit(s->db, errbuf, errsize)))
		goto out;
	sl_relay_publish(s->relay, s->db, row, 0);
	/* the reason is free text: at debug level only (and escaped) */
	sl_info("run %s: cancelled by %s", run_id, who);
	sl_debug("run %s: %s", run_id, why);
out:
	if (st) {
		json_decref(*out);
		*out = NULL;
	}
	sl_db_rollback(s->db);
	PQclear(res);
	PQclear(row);
	free(why);
	return st;
}

sl_status ap_store_submit(ap_store *s, const char *run_id, const json_t *event, char *errbuf,
                          size_t errsize)
{
	PGresult *row = NULL;
	sl_status st;

	if (!(st = sl_db_begin(s->db, errbuf, errsize)) &&
	    !(st = sl_outbox_put(s->db, s->topic_runs, run_id, event, &row, errbuf, errsize)) &&
	    !(st = sl_db_commit(s->db, errbuf, errsize)))
		sl_relay_publish(s->relay, s->db, row, 0);
	sl_db_rollback(s->db);
	PQclear(row);
	return st;
}

sl_status ap_store_revoke_grant(ap_store *s, const char *id, const char *who, bool admin,
                                json_t **out, char *errbuf, size_t errsize)
{
	const char *p[] = {id, who, admin ? "t" : "f"};
	PGresult *res = NULL;
	sl_status st;

	*out = NULL;
	/* the grant as it is, and whether this revoked it */
	st = sl_db_exec(s->db,
	                "WITH r AS (UPDATE grants SET revoked_at = now(), revoked_by = $2 WHERE "
	                "id = $1 AND revoked_at IS NULL AND (granted_by = $2 OR $3::boolean) "
	                "RETURNING *) SELECT (SELECT " AP_GRANT_JSON " FROM r g), "
	                "(SELECT " AP_GRANT_JSON " FROM grants g WHERE g.id = $1), "
	                "(SELECT g.granted_by FROM grants g WHERE g.id = $1)",
	                3, p, &res, errbuf, errsize);
	if (st)
		return st;
	if (!PQgetisnull(res, 0, 0)) {
		*out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		sl_info("grant %s revoked by %s", id, who);
	} else if (PQgetisnull(res, 0, 1)) {
		st = sl_err(errbuf, errsize, SL_NOT_FOUND, "no grant %s", id);
	} else if (!admin && strcmp(PQgetvalue(res, 0, 2), who)) {
		st = sl_err(errbuf, errsize, SL_FORBIDDEN,
		            "%s may not revoke grant %s: it is %s's (or an admin's to revoke)", who,
		            id, PQgetvalue(res, 0, 2));
	} else {
		st = sl_err(errbuf, errsize, SL_CONFLICT, "grant %s is already revoked", id);
	}
	PQclear(res);
	return st;
}
