/*
 * ap_store.c - approver queries. JSON read models are built by PostgreSQL
 * (json_build_object), so each answer is one statement.
 */
#include "ap_store.h"
#include "sl_db.h"
#include "sl_log.h"
#include "sl_outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSUMER "sluice-approver"

/* The public shape of a requirement row r. */
#define REQUIREMENT_JSON                                                                       \
	"json_build_object('id', r.id, 'run_id', r.run_id, 'tool_call_id', r.tool_call_id, "   \
	"'tool_name', r.tool_name, 'tool_args', r.tool_args, "                                 \
	"'needs_confirmation', r.needs_confirmation, 'needs_user_input', r.needs_user_input, " \
	"'user_input_schema', r.user_input_schema, "                                           \
	"'external_execution', r.external_execution, 'approval_type', r.approval_type, "       \
	"'status', r.status, 'confirmed', r.confirmed, 'note', r.note, "                       \
	"'user_input', r.user_input, 'external_result', r.external_result, "                   \
	"'resolved_by', r.resolved_by, 'resolved_at', r.resolved_at, "                         \
	"'expires_at', r.expires_at, 'created_at', r.created_at)"

/* The public shape of an approval row a (Agno's approval record). */
#define APPROVAL_JSON                                                                        \
	"json_build_object('id', a.id, 'run_id', a.run_id, 'session_id', a.session_id, "     \
	"'requirement_id', a.requirement_id, 'agent_id', a.agent_id, 'user_id', a.user_id, " \
	"'source_type', a.source_type, 'approval_type', a.approval_type, "                   \
	"'pause_type', a.pause_type, 'status', a.status, 'tool_name', a.tool_name, "         \
	"'tool_args', a.tool_args, 'resolution_data', a.resolution_data, "                   \
	"'resolved_by', a.resolved_by, 'resolved_at', a.resolved_at, "                       \
	"'expires_at', a.expires_at, 'run_status', a.run_status, "                           \
	"'created_at', a.created_at, 'updated_at', a.updated_at)"

sl_status ap_store_record_paused(ap_store *s, const sl_event *ev, char *errbuf, size_t errsize)
{
	const char *run_id = json_string_value(json_object_get(ev->data, "run_id"));
	json_t *reqs = json_object_get(ev->data, "requirements"), *r;
	const char *p[] = {run_id};
	PGresult *res = NULL;
	sl_status st;
	bool fresh;
	size_t i;

	if ((st = sl_db_begin(s->db, errbuf, errsize)))
		goto out;
	if ((st = sl_inbox_claim(s->db, CONSUMER, ev->id, &fresh, errbuf, errsize)))
		goto out;
	if (!fresh) {
		sl_info("run %s: paused event %s was recorded before; ignored", run_id, ev->id);
		goto out;
	}
	if ((st = sl_db_exec(s->db, "SELECT status FROM runs WHERE run_id = $1", 1, p, &res, errbuf,
	                     errsize)))
		goto out;
	if (PQntuples(res) != 1) {
		st = sl_err(errbuf, errsize, SL_NOT_FOUND, "paused event for unknown run %s",
		            run_id);
		goto out;
	}
	json_array_foreach (reqs, i, r) {
		const char *q[] = {json_string_value(json_object_get(r, "id")), run_id};
		PGresult *row;

		/* A pending "required" approval opens with the pause; audit
		 * approvals are written only when resolved. */
		st = sl_db_exec(
		    s->db,
		    "INSERT INTO approvals (id, run_id, session_id, requirement_id, agent_id, "
		    "user_id, approval_type, pause_type, status, tool_name, tool_args, "
		    "expires_at, run_status) "
		    "SELECT gen_random_uuid()::text, r.run_id, u.session_id, r.id, u.agent_id, "
		    "u.user_id, 'required', CASE WHEN r.needs_user_input THEN 'user_input' "
		    "WHEN r.external_execution THEN 'external_execution' ELSE 'confirmation' "
		    "END, 'pending', r.tool_name, r.tool_args, r.expires_at, u.status "
		    "FROM requirements r JOIN runs u ON u.run_id = r.run_id "
		    "WHERE r.id = $1 AND r.run_id = $2 AND r.approval_type = 'required' "
		    "AND r.status = 'pending' ON CONFLICT (requirement_id) DO NOTHING",
		    2, q, NULL, errbuf, errsize);
		if (st)
			goto out;
		st = sl_db_exec(s->db, "SELECT 1 FROM requirements WHERE id = $1 AND run_id = $2",
		                2, q, &row, errbuf, errsize);
		if (st)
			goto out;
		if (PQntuples(row) != 1) {
			PQclear(row);
			st = sl_err(errbuf, errsize, SL_INVALID,
			            "run %s: paused event names requirement %s, which was never "
			            "recorded",
			            run_id, q[0]);
			goto out;
		}
		PQclear(row);
	}
	if ((st = sl_db_commit(s->db, errbuf, errsize)))
		goto out;
	sl_info("run %s: paused, %zu requirement(s) awaiting a decision", run_id,
	        json_array_size(reqs));
out:
	sl_db_rollback(s->db);
	PQclear(res);
	return st;
}

/* Writes the continue event of run_id's pause seq when nothing of it is
 * pending any more. */
static sl_status maybe_continue(ap_store *s, const char *run_id, const char *seq, char *errbuf,
                                size_t errsize)
{
	const char *p[] = {run_id, seq};
	json_t *decisions = NULL, *event;
	sl_status st;

	st = sl_db_query_json(s->db,
	                      "SELECT CASE WHEN bool_or(status = 'pending') THEN NULL ELSE "
	                      "json_agg(json_build_object('requirement_id', id, 'confirmed', "
	                      "coalesce(confirmed, false), 'note', note, 'user_input', user_input, "
	                      "'external_result', external_result, 'resolved_by', resolved_by) "
	                      "ORDER BY position) END "
	                      "FROM requirements WHERE run_id = $1 AND pause_seq = $2",
	                      2, p, &decisions, errbuf, errsize);
	if (st == SL_NOT_FOUND)
		return SL_OK; /* some requirement is still pending */
	if (st)
		return st;
	event = sl_event_new(SL_EVENT_RUN_CONTINUE, s->source, run_id,
	                     json_pack("{s:s, s:o}", "run_id", run_id, "decisions", decisions));
	st = sl_outbox_put(s->db, s->topic_continues, run_id, event, errbuf, errsize);
	if (st == SL_OK)
		sl_info("run %s: all requirements resolved; continue event %s queued", run_id,
		        json_string_value(json_object_get(event, "id")));
	json_decref(event);
	return st;
}

sl_status ap_store_resolve(ap_store *s, const char *id, const ap_decision *d, json_t **out,
                           char *errbuf, size_t errsize)
{
	const char *p[] = {id};
	PGresult *req = NULL, *run = NULL;
	char *run_id = NULL, *seq = NULL;
	sl_status st;

	*out = NULL;
	if ((st = sl_db_begin(s->db, errbuf, errsize)))
		goto out;
	/* Lock the run first: resolutions of one run's requirements are serialised,
	 * so exactly one of them sees the last pending one go. */
	st = sl_db_exec(s->db,
	                "SELECT u.run_id, u.status, u.pause_seq FROM runs u JOIN requirements r "
	                "ON r.run_id = u.run_id WHERE r.id = $1 FOR UPDATE OF u",
	                1, p, &run, errbuf, errsize);
	if (st)
		goto out;
	if (PQntuples(run) != 1) {
		st = sl_err(errbuf, errsize, SL_NOT_FOUND, "no requirement %s", id);
		goto out;
	}
	run_id = sl_strdup(PQgetvalue(run, 0, 0));
	seq = sl_strdup(PQgetvalue(run, 0, 2));
	st = sl_db_exec(s->db,
	                "SELECT status, pause_seq, expires_at IS NOT NULL AND expires_at < now() "
	                "FROM requirements WHERE id = $1 FOR UPDATE",
	                1, p, &req, errbuf, errsize);
	if (st)
		goto out;
	if (strcmp(PQgetvalue(req, 0, 0), "pending")) {
		st = sl_err(errbuf, errsize, SL_CONFLICT, "requirement %s is already %s", id,
		            PQgetvalue(req, 0, 0));
		goto out;
	}
	if (strcmp(PQgetvalue(run, 0, 1), "paused") || strcmp(PQgetvalue(req, 0, 1), seq)) {
		st = sl_err(errbuf, errsize, SL_CONFLICT,
		            "run %s is %s; requirement %s cannot be decided", run_id,
		            PQgetvalue(run, 0, 1), id);
		goto out;
	}
	if (!strcmp(PQgetvalue(req, 0, 2), "t")) {
		st = sl_err(errbuf, errsize, SL_CONFLICT, "requirement %s has expired", id);
		goto out;
	}
	{
		const char *u[] = {id, d->confirmed ? "true" : "false", d->note, d->resolved_by};
		st = sl_db_exec(
		    s->db,
		    "UPDATE requirements SET status = 'resolved', confirmed = $2, note = $3, "
		    "resolved_by = $4, resolved_at = now() WHERE id = $1",
		    4, u, NULL, errbuf, errsize);
		if (st)
			goto out;
		/* The approval record: a "required" one was opened at the pause, an
		 * "audit" one is written now; both end with the outcome. */
		st = sl_db_exec(
		    s->db,
		    "INSERT INTO approvals AS a (id, run_id, session_id, requirement_id, agent_id, "
		    "user_id, approval_type, pause_type, status, tool_name, tool_args, "
		    "resolution_data, resolved_by, resolved_at, expires_at, run_status) "
		    "SELECT gen_random_uuid()::text, r.run_id, u.session_id, r.id, u.agent_id, "
		    "u.user_id, r.approval_type, CASE WHEN r.needs_user_input THEN 'user_input' "
		    "WHEN r.external_execution THEN 'external_execution' ELSE 'confirmation' END, "
		    "CASE WHEN $2::boolean THEN 'approved' ELSE 'rejected' END, r.tool_name, "
		    "r.tool_args, CASE WHEN $3::text IS NULL THEN NULL "
		    "ELSE json_build_object('note', $3::text)::jsonb END, $4, now(), r.expires_at, "
		    "u.status FROM requirements r JOIN runs u ON u.run_id = r.run_id "
		    "WHERE r.id = $1 AND r.approval_type IS NOT NULL "
		    "ON CONFLICT (requirement_id) DO UPDATE SET status = excluded.status, "
		    "resolution_data = excluded.resolution_data, resolved_by = "
		    "excluded.resolved_by, "
		    "resolved_at = excluded.resolved_at, updated_at = now()",
		    4, u, NULL, errbuf, errsize);
		if (st)
			goto out;
	}
	if ((st = maybe_continue(s, run_id, seq, errbuf, errsize)))
		goto out;
	st = sl_db_query_json(s->db,
	                      "SELECT " REQUIREMENT_JSON " FROM requirements r WHERE r.id = $1", 1,
	                      p, out, errbuf, errsize);
	if (st)
		goto out;
	if ((st = sl_db_commit(s->db, errbuf, errsize)))
		goto out;
	sl_info("requirement %s of run %s %s by %s", id, run_id,
	        d->confirmed ? "confirmed" : "rejected", d->resolved_by);
out:
	if (st) {
		json_decref(*out);
		*out = NULL;
	}
	sl_db_rollback(s->db);
	PQclear(req);
	PQclear(run);
	free(run_id);
	free(seq);
	return st;
}

sl_status ap_store_get_run(ap_store *s, const char *run_id, json_t **out, char *errbuf,
                           size_t errsize)
{
	const char *p[] = {run_id};

	return sl_db_query_json(
	    s->db,
	    "SELECT json_build_object('run_id', u.run_id, 'session_id', u.session_id, "
	    "'agent_id', u.agent_id, 'user_id', u.user_id, 'status', u.status, 'input', u.input, "
	    "'output', u.output, 'error', u.error, 'version', u.version, "
	    "'created_at', u.created_at, 'updated_at', u.updated_at, "
	    "'requirements', (SELECT coalesce(json_agg(" REQUIREMENT_JSON
	    " ORDER BY r.pause_seq, r.position), '[]') FROM requirements r "
	    "WHERE r.run_id = u.run_id)) FROM runs u WHERE u.run_id = $1",
	    1, p, out, errbuf, errsize);
}

/* Wraps a {"data", "total"} query answer in the paging envelope. */
static json_t *envelope(json_t *answer, long page, long limit)
{
	json_int_t total = json_integer_value(json_object_get(answer, "total"));
	json_t *out =
	    json_pack("{s:O, s:{s:I, s:I, s:I, s:I}}", "data", json_object_get(answer, "data"),
	              "meta", "page", (json_int_t)page, "limit", (json_int_t)limit, "total_pages",
	              (json_int_t)((total + limit - 1) / limit), "total_count", total);

	json_decref(answer);
	return out;
}

sl_status ap_store_list_approvals(ap_store *s, const char *const filters[AP_F_COUNT], long page,
                                  long limit, json_t **out, char *errbuf, size_t errsize)
{
	char lim[24], off[24];
	const char *p[AP_F_COUNT + 2];
	json_t *answer;
	sl_status st;

	for (int i = 0; i < AP_F_COUNT; i++)
		p[i] = filters[i];
	snprintf(lim, sizeof(lim), "%ld", limit);
	snprintf(off, sizeof(off), "%ld", (page - 1) * limit);
	p[AP_F_COUNT] = lim;
	p[AP_F_COUNT + 1] = off;
	st = sl_db_query_json(
	    s->db,
	    "WITH f AS (SELECT * FROM approvals a WHERE ($1::text IS NULL OR a.status = $1) "
	    "AND ($2::text IS NULL OR a.approval_type = $2) "
	    "AND ($3::text IS NULL OR a.pause_type = $3) AND ($4::text IS NULL OR a.run_id = $4) "
	    "AND ($5::text IS NULL OR a.session_id = $5) AND ($6::text IS NULL OR a.agent_id = $6) "
	    "AND ($7::text IS NULL OR a.user_id = $7) AND ($8::text IS NULL OR a.tool_name = $8)) "
	    "SELECT json_build_object('data', (SELECT coalesce(json_agg(" APPROVAL_JSON
	    " ORDER BY a.created_at DESC, a.id DESC), '[]') FROM (SELECT * FROM f "
	    "ORDER BY created_at DESC, id DESC LIMIT $9::bigint OFFSET $10::bigint) a), "
	    "'total', (SELECT count(*) FROM f))",
	    AP_F_COUNT + 2, p, &answer, errbuf, errsize);
	if (st)
		return st;
	*out = envelope(answer, page, limit);
	return SL_OK;
}

sl_status ap_store_list_requirements(ap_store *s, const char *status, const char *run_id, long page,
                                     long limit, json_t **out, char *errbuf, size_t errsize)
{
	char lim[24], off[24];
	const char *p[] = {status, run_id, lim, off};
	json_t *answer;
	sl_status st;

	snprintf(lim, sizeof(lim), "%ld", limit);
	snprintf(off, sizeof(off), "%ld", (page - 1) * limit);
	st = sl_db_query_json(
	    s->db,
	    "WITH f AS (SELECT * FROM requirements r WHERE ($1::text IS NULL OR r.status = $1) "
	    "AND ($2::text IS NULL OR r.run_id = $2)) "
	    "SELECT json_build_object('data', (SELECT coalesce(json_agg(" REQUIREMENT_JSON
	    " ORDER BY r.created_at, r.id), '[]') FROM (SELECT * FROM f ORDER BY created_at, id "
	    "LIMIT $3::bigint OFFSET $4::bigint) r), 'total', (SELECT count(*) FROM f))",
	    4, p, &answer, errbuf, errsize);
	if (st)
		return st;
	*out = envelope(answer, page, limit);
	return SL_OK;
}

sl_status ap_store_get_approval(ap_store *s, const char *id, json_t **out, char *errbuf,
                                size_t errsize)
{
	const char *p[] = {id};

	return sl_db_query_json(s->db, "SELECT " APPROVAL_JSON " FROM approvals a WHERE a.id = $1",
	                        1, p, out, errbuf, errsize);
}

sl_status ap_store_count_pending(ap_store *s, const char *user_id, long long *count, char *errbuf,
                                 size_t errsize)
{
	const char *p[] = {user_id};
	PGresult *res;
	sl_status st;

	st = sl_db_exec(s->db,
	                "SELECT count(*) FROM approvals WHERE status = 'pending' "
	                "AND ($1::text IS NULL OR user_id = $1)",
	                1, p, &res, errbuf, errsize);
	if (st)
		return st;
	*count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return SL_OK;
}
