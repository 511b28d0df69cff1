/*
 * ap_sql.h - the public shapes of the approver's rows, built by PostgreSQL
 * (json_build_object), for the statements of ap_store.c (what a decision
 * answers) and ap_query.c (the read models). Internal to the approver.
 */
#ifndef AP_SQL_H
#define AP_SQL_H

/* The votes on requirement r, oldest first, as a JSON array (NULL when
 * there are none). */
#define VOTES_JSON                                                                        \
	"(SELECT json_agg(json_build_object('voter', v.voter, 'confirmed', v.confirmed, " \
	"'note', v.note, 'at', v.voted_at) ORDER BY v.voted_at, v.voter) "                \
	"FROM requirement_votes v WHERE v.requirement_id = r.id)"

/* Who may still vote on requirement r while it is pending (else NULL):
 * whoever its approvers are (NULL: every approver and admin), except the
 * identities that have voted and, without self-approval, the run's user. */
#define MAY_STILL_VOTE_JSON                                                                  \
	"CASE WHEN r.status = 'pending' THEN json_build_object('approvers', "                \
	"r.deciders->'approvers', 'except', (SELECT coalesce(json_agg(e.n ORDER BY e.n), "   \
	"'[]') FROM (SELECT v.voter AS n FROM requirement_votes v WHERE v.requirement_id = " \
	"r.id UNION SELECT u.user_id FROM runs u WHERE u.run_id = r.run_id AND u.user_id "   \
	"IS NOT NULL AND NOT coalesce((r.deciders->>'self_approval')::boolean, false)) e)) " \
	"END"

/* The public shape of a requirement row r. */
#define REQUIREMENT_JSON                                                                         \
	"json_build_object('id', r.id, 'run_id', r.run_id, 'tool_call_id', r.tool_call_id, "     \
	"'tool_name', r.tool_name, 'tool_args', r.tool_args, "                                   \
	"'needs_confirmation', r.needs_confirmation, 'needs_user_input', r.needs_user_input, "   \
	"'user_input_schema', r.user_input_schema, "                                             \
	"'external_execution', r.external_execution, 'approval_type', r.approval_type, "         \
	"'status', r.status, 'confirmed', r.confirmed, 'note', r.note, "                         \
	"'user_input', r.user_input, 'external_result', r.external_result, "                     \
	"'resolved_by', r.resolved_by, 'resolved_at', r.resolved_at, "                           \
	"'expires_at', r.expires_at, 'created_at', r.created_at, 'reminded_at', r.reminded_at, " \
	"'escalated_at', r.escalated_at, "                                                       \
	"'approvers', r.deciders->'approvers', "                                                 \
	"'self_approval', coalesce((r.deciders->>'self_approval')::boolean, false), "            \
	"'quorum', coalesce((r.deciders->>'quorum')::int, 1), 'policy', r.deciders->'policy', "  \
	"'votes', coalesce(" VOTES_JSON ", '[]'), 'receipt', r.receipt, "                        \
	"'may_still_vote', " MAY_STILL_VOTE_JSON ")"

/* The public shape of a grant row g. */
#define AP_GRANT_JSON                                                                          \
	"json_build_object('id', g.id, 'scope', g.scope, 'scope_id', g.scope_id, 'agent_id', " \
	"g.agent_id, 'tool_name', g.tool_name, 'args', g.args, 'granted_by', g.granted_by, "   \
	"'requirement_id', g.requirement_id, 'created_at', g.created_at, 'expires_at', "       \
	"g.expires_at, 'revoked_at', g.revoked_at, 'revoked_by', g.revoked_by, 'active', "     \
	"g.revoked_at IS NULL AND g.expires_at > now())"

#endif
