/*
 * ap_query.c - the approver's read models: runs, requirements, approvals,
 * the audit ledger, each answer one statement whose JSON PostgreSQL
 * builds.
 */
#include "ap_query.h"
#include "ap_sql.h"
#include "sl_db.h"
#include "sl_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Whether who (a text) may decide requirement r, whose run's user_id is
 * user, with its groups (a JSON array of texts): eligible() in SQL, for
 * the lists and counts (eligible() itself decides each decision).
 */
#define ELIGIBLE_SQL(user, who, groups)                                                   \
	"((coalesce((r.deciders->>'self_approval')::boolean, false) OR " user             \
	" IS DISTINCT FROM " who ") "                                                     \
	"AND (jsonb_typeof(r.deciders->'approvers') IS DISTINCT FROM 'object' "           \
	"OR coalesce(r.deciders->'approvers'->'users', '[]') ? " who " "                  \
	"OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(" groups ") g "               \
	"WHERE coalesce(r.deciders->'approvers'->'groups', '[]') ? g))) "                 \
	"AND (jsonb_typeof(r.deciders->'policy'->'approvers') IS DISTINCT FROM 'object' " \
	"OR coalesce(r.deciders->'policy'->'approvers'->'users', '[]') ? " who " "        \
	"OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(" groups ") g "               \
	"WHERE coalesce(r.deciders->'policy'->'approvers'->'groups', '[]') ? g))"

/* Whether the identity who (a parameter such as "$7", NULL for none), with
 * its groups (a jsonb parameter), may decide requirement r now: pending,
 * not yet voted on by who, and eligible. */
#define MAY_DECIDE_SQL(who, groups)                                                         \
	who "::text IS NOT NULL AND r.status = 'pending' AND NOT EXISTS (SELECT 1 FROM "    \
	    "requirement_votes v WHERE v.requirement_id = r.id AND v.voter = " who ") "     \
	    "AND " ELIGIBLE_SQL("(SELECT u.user_id FROM runs u WHERE u.run_id = r.run_id)", \
	                        who "::text", groups "::jsonb")
/* for the list ($7, $8) and for one requirement ($3, $4) */
#define MAY_DECIDE_LIST MAY_DECIDE_SQL("$7", "$8")
#define MAY_DECIDE_ONE MAY_DECIDE_SQL("$3", "$4")

/* The public shape of an approval row a (Agno's approval record). */
#define APPROVAL_JSON                                                                            \
	"json_build_object('id', a.id, 'run_id', a.run_id, 'session_id', a.session_id, "         \
	"'requirement_id', a.requirement_id, 'agent_id', a.agent_id, 'user_id', a.user_id, "     \
	"'source_type', a.source_type, 'approval_type', a.approval_type, "                       \
	"'pause_type', a.pause_type, 'status', a.status, 'tool_name', a.tool_name, "             \
	"'tool_args', a.tool_args, 'resolution_data', a.resolution_data, "                       \
	"'resolved_by', a.resolved_by, 'resolved_at', a.resolved_at, "                           \
	"'expires_at', a.expires_at, 'run_status', coalesce((SELECT u.status FROM runs u WHERE " \
	"u.run_id = a.run_id), a.run_status), "                                                  \
	"'created_at', a.created_at, 'updated_at', a.updated_at)"

sl_status ap_query_get_run(ap_store *s, const char *run_id, json_t **out, char *errbuf,
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
	    "WHERE r.run_id = u.run_id), 'decisions', " SL_DECISIONS_JSON(
	        "u.run_id") ") FROM runs u WHERE u.run_id = $1",
	    1, p, out, errbuf, errsize);
}

sl_status ap_query_list_approvals(ap_store *s, const char *const filters[AP_F_COUNT],
                                  const char *owner, long offset, long limit, size_t max_bytes,
                                  json_t **out, char *errbuf, size_t errsize)
{
	char lim[24], off[24], max[24];
	const char *p[AP_F_COUNT + 4];

	for (int i = 0; i < AP_F_COUNT; i++)
		p[i] = filters[i];
	snprintf(lim, sizeof(lim), "%ld", limit);
	snprintf(off, sizeof(off), "%ld", offset);
	snprintf(max, sizeof(max), "%zu", max_bytes);
	p[AP_F_COUNT] = lim;
	p[AP_F_COUNT + 1] = off;
	p[AP_F_COUNT + 2] = max;
	p[AP_F_COUNT + 3] = owner;
	return sl_db_query_json(
	    s->db,
	    "WITH f AS (SELECT * FROM approvals a WHERE ($1::text IS NULL OR a.status = $1) "
	    "AND ($2::text IS NULL OR a.approval_type = $2) "
	    "AND ($3::text IS NULL OR a.pause_type = $3) AND ($4::text IS NULL OR a.run_id = $4) "
	    "AND ($5::text IS NULL OR a.session_id = $5) AND ($6::text IS NULL OR a.agent_id = $6) "
	    "AND ($7::text IS NULL OR a.user_id = $7) AND ($8::text IS NULL OR a.tool_name = $8) "
	    "AND ($12::text IS NULL OR a.user_id = $12)), "
	    "p AS (SELECT " APPROVAL_JSON " AS j, row_number() OVER "
	    "(ORDER BY a.created_at DESC, a.id DESC) AS n FROM (SELECT * FROM f "
	    "ORDER BY created_at DESC, id DESC LIMIT $9::bigint OFFSET $10::bigint) a), "
	    "b AS (SELECT j, n, sum(octet_length(j::text)) OVER (ORDER BY n) - "
	    "octet_length(j::text) "
	    "AS before FROM p) "
	    "SELECT json_build_object('data', (SELECT coalesce(json_agg(j ORDER BY n), '[]') FROM "
	    "b "
	    "WHERE before < $11::bigint), 'total', (SELECT count(*) FROM f))",
	    AP_F_COUNT + 4, p, out, errbuf, errsize);
}

/* p's groups as a JSON array ("[]" when p is NULL); free() it. */
static char *principal_groups(const ap_principal *p)
{
	json_t *groups = json_array();
	char *text;

	for (size_t i = 0; p && i < p->ngroups; i++)
		json_array_append_new(groups, json_string(p->groups[i]));
	text = json_dumps(groups, JSON_COMPACT);
	json_decref(groups);
	return text;
}

sl_status ap_query_list_requirements(ap_store *s, const char *status, const char *run_id,
                                     const char *owner, const ap_principal *decider, long offset,
                                     long limit, size_t max_bytes, json_t **out, char *errbuf,
                                     size_t errsize)
{
	char lim[24], off[24], max[24], *groups = principal_groups(decider);
	const char *p[] = {status, run_id, lim, off, max, owner, decider ? decider->name : NULL,
	                   groups};
	sl_status st;

	snprintf(lim, sizeof(lim), "%ld", limit);
	snprintf(off, sizeof(off), "%ld", offset);
	snprintf(max, sizeof(max), "%zu", max_bytes);
	st = sl_db_query_json(
	    s->db,
	    "WITH f AS (SELECT * FROM requirements r WHERE ($1::text IS NULL OR r.status = $1) "
	    "AND ($2::text IS NULL OR r.run_id = $2) AND ($6::text IS NULL OR EXISTS "
	    "(SELECT 1 FROM runs u WHERE u.run_id = r.run_id AND u.user_id = $6))), "
	    "p AS (SELECT (" REQUIREMENT_JSON
	    "::jsonb || jsonb_build_object('may_decide', " MAY_DECIDE_LIST
	    ")) AS j, row_number() OVER (ORDER BY r.created_at, r.id) "
	    "AS n FROM (SELECT * FROM f ORDER BY created_at, id "
	    "LIMIT $3::bigint OFFSET $4::bigint) r), "
	    "b AS (SELECT j, n, sum(octet_length(j::text)) OVER (ORDER BY n) - "
	    "octet_length(j::text) "
	    "AS before FROM p) "
	    "SELECT json_build_object('data', (SELECT coalesce(json_agg(j ORDER "
	    "BY n), '[]') FROM "
	    "b "
	    "WHERE before < $5::bigint), 'total', (SELECT count(*) FROM f))",
	    8, p, out, errbuf, errsize);
	free(groups);
	return st;
}

sl_status ap_query_get_requirement(ap_store *s, const char *id, const char *owner,
                                   const ap_principal *decider, json_t **out, char *errbuf,
                                   size_t errsize)
{
	char *groups = principal_groups(decider);
	const char *p[] = {id, owner, decider ? decider->name : NULL, groups};
	sl_status st;

	st = sl_db_query_json(s->db,
	                      "SELECT " REQUIREMENT_JSON
	                      "::jsonb || jsonb_build_object('may_decide', " MAY_DECIDE_ONE
	                      ") FROM requirements r WHERE r.id = $1 "
	                      "AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM runs u WHERE "
	                      "u.run_id = r.run_id AND u.user_id = $2))",
	                      4, p, out, errbuf, errsize);
	free(groups);
	return st;
}

sl_status ap_query_list_audit(ap_store *s, const char *const f[AP_A_COUNT], long long after_seq,
                              long limit, json_t **out, char *errbuf, size_t errsize)
{
	char after[24], lim[24];
	const char *p[] = {f[AP_A_RUN_ID],
	                   f[AP_A_REQUIREMENT_ID],
	                   f[AP_A_KIND],
	                   f[AP_A_SINCE],
	                   f[AP_A_UNTIL],
	                   after,
	                   lim};

	snprintf(after, sizeof(after), "%lld", after_seq);
	snprintf(lim, sizeof(lim), "%ld", limit);
	return sl_db_query_json(
	    s->db,
	    "SELECT json_build_object('data', coalesce(json_agg(json_build_object('seq', l.seq, "
	    "'kind', l.kind, 'at', l.at, 'run_id', l.run_id, 'requirement_id', "
	    "l.requirement_id, 'actor', l.actor, 'body', l.body, 'hash', l.hash) ORDER BY "
	    "l.seq), '[]'), 'meta', json_build_object('after_seq', $6::bigint, 'limit', "
	    "$7::int, 'next_after_seq', max(l.seq))) FROM (SELECT * FROM ledger l "
	    "WHERE ($1::text IS NULL OR l.run_id = $1) "
	    "AND ($2::text IS NULL OR (l.requirement_id = $2 AND l.run_id = (SELECT q.run_id "
	    "FROM requirements q WHERE q.id = $2))) "
	    "AND ($3::text IS NULL OR l.kind = $3) "
	    "AND ($4::timestamptz IS NULL OR l.at::timestamptz >= $4::timestamptz) "
	    "AND ($5::timestamptz IS NULL OR l.at::timestamptz < $5::timestamptz) "
	    "AND l.seq > $6::bigint ORDER BY l.seq LIMIT $7::int) l",
	    7, p, out, errbuf, errsize);
}

sl_status ap_query_latest_checkpoint(ap_store *s, json_t **out, char *errbuf, size_t errsize)
{
	return sl_db_query_json(s->db,
	                        "SELECT json_build_object('tree_size', tree_size, 'head', head, "
	                        "'kid', kid, 'note', note, 'at', at) FROM ledger_checkpoints "
	                        "ORDER BY tree_size DESC LIMIT 1",
	                        0, NULL, out, errbuf, errsize);
}

sl_status ap_query_get_approval(ap_store *s, const char *id, json_t **out, char *errbuf,
                                size_t errsize)
{
	const char *p[] = {id};

	return sl_db_query_json(s->db, "SELECT " APPROVAL_JSON " FROM approvals a WHERE a.id = $1",
	                        1, p, out, errbuf, errsize);
}

sl_status ap_query_count_pending(ap_store *s, const char *user_id, const char *owner,
                                 const ap_principal *decider, long long *count, char *errbuf,
                                 size_t errsize)
{
	char *gtext = principal_groups(decider);
	PGresult *res;
	sl_status st;

	{
		const char *p[] = {user_id, owner, decider ? decider->name : NULL, gtext};
		/* the rules of eligible(), in SQL */
		st = sl_db_exec(
		    s->db,
		    "SELECT count(*) FROM approvals a JOIN requirements r ON r.id = "
		    "a.requirement_id "
		    "WHERE a.status = 'pending' AND ($1::text IS NULL OR a.user_id = $1) "
		    "AND ($2::text IS NULL OR a.user_id = $2) "
		    "AND ($3::text IS NULL OR " ELIGIBLE_SQL("a.user_id", "$3::text",
		                                             "$4::jsonb") ")",
		    4, p, &res, errbuf, errsize);
	}
	free(gtext);
	if (st)
		return st;
	*count = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return SL_OK;
}

/* The pending requirements an ap_match picks ($1..$7, as its members). */
#define MATCH_SQL                                                                         \
	"SELECT r.* FROM requirements r JOIN runs u ON u.run_id = r.run_id "              \
	"WHERE r.status = 'pending' AND ($1::text IS NULL OR u.agent_id = $1) "           \
	"AND ($2::text IS NULL OR r.tool_name = $2) "                                     \
	"AND ($3::jsonb IS NULL OR r.run_id IN (SELECT jsonb_array_elements_text($3))) "  \
	"AND ($4::jsonb IS NULL OR r.id IN (SELECT jsonb_array_elements_text($4))) "      \
	"AND ($5::timestamptz IS NULL OR r.created_at < $5) "                             \
	"AND ($6::timestamptz IS NULL OR r.created_at > $6) "                             \
	"AND ($7::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements($7) c " \
	"WHERE r.tool_args #> coalesce((SELECT array_agg(x.t ORDER BY x.n) FROM "         \
	"jsonb_array_elements_text(c->'path') WITH ORDINALITY AS x(t, n)), '{}') "        \
	"IS DISTINCT FROM c->'value'))"

sl_status ap_query_match_requirements(ap_store *s, const ap_match *m, long limit, json_t **out,
                                      char *errbuf, size_t errsize)
{
	char lim[24];
	const char *p[] = {m->agent_id,       m->tool_name,     m->run_ids, m->ids,
	                   m->created_before, m->created_after, m->args,    lim};

	snprintf(lim, sizeof(lim), "%ld", limit);
	return sl_db_query_json(
	    s->db,
	    "WITH f AS (" MATCH_SQL ") "
	    "SELECT json_build_object('matched', (SELECT count(*) FROM f), 'ids', "
	    "(SELECT coalesce(json_agg(x.id ORDER BY x.created_at, x.id), '[]') FROM "
	    "(SELECT id, created_at FROM f ORDER BY created_at, id LIMIT $8::bigint) x), "
	    "'sample', (SELECT coalesce(json_agg(" REQUIREMENT_JSON
	    " ORDER BY r.created_at, r.id), '[]') FROM (SELECT * FROM f ORDER BY created_at, id "
	    "LIMIT 10) r))",
	    8, p, out, errbuf, errsize);
}

sl_status ap_query_pending_by_agent(ap_store *s, json_t **out, char *errbuf, size_t errsize)
{
	return sl_db_query_json(s->db,
	                        "SELECT coalesce(json_object_agg(n.agent_id, n.c), '{}') FROM "
	                        "(SELECT u.agent_id, count(*) AS c FROM requirements q JOIN runs u "
	                        "ON u.run_id = q.run_id WHERE q.status = 'pending' GROUP BY "
	                        "u.agent_id) n",
	                        0, NULL, out, errbuf, errsize);
}

sl_status ap_query_list_grants(ap_store *s, const char *run_id, const char *session_id, bool active,
                               long limit, json_t **out, char *errbuf, size_t errsize)
{
	char lim[24];
	const char *p[] = {run_id, session_id, active ? "t" : "f", lim};

	snprintf(lim, sizeof(lim), "%ld", limit);
	return sl_db_query_json(
	    s->db,
	    "SELECT json_build_object('data', coalesce(json_agg(" AP_GRANT_JSON
	    " ORDER BY g.created_at DESC, g.id DESC), '[]')) FROM (SELECT * FROM grants g "
	    "WHERE ($1::text IS NULL OR (g.scope = 'run' AND g.scope_id = $1) OR (g.scope = "
	    "'session' AND g.scope_id = (SELECT u.session_id FROM runs u WHERE u.run_id = $1))) "
	    "AND ($2::text IS NULL OR (g.scope = 'session' AND g.scope_id = $2) OR (g.scope = "
	    "'run' AND g.scope_id IN (SELECT u.run_id FROM runs u WHERE u.session_id = $2))) "
	    "AND (NOT $3::boolean OR (g.revoked_at IS NULL AND g.expires_at > now())) "
	    "ORDER BY g.created_at DESC, g.id DESC LIMIT $4::bigint) g",
	    4, p, out, errbuf, errsize);
}
