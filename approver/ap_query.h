/*
 * ap_query.h - the approver's read models (the HTTP API's GETs): each
 * answer is built by PostgreSQL in one statement, on the store's
 * connection.
 */
#ifndef AP_QUERY_H
#define AP_QUERY_H

#include "ap_store.h"

/* GET /v1/runs/{id}. SL_NOT_FOUND when there is no such run. */
sl_status ap_query_get_run(ap_store *s, const char *run_id, json_t **out, char *errbuf,
                           size_t errsize);

/* The filters of GET /v1/approvals, in this order; NULL means any. */
enum {
	AP_F_STATUS,
	AP_F_APPROVAL_TYPE,
	AP_F_PAUSE_TYPE,
	AP_F_RUN_ID,
	AP_F_SESSION_ID,
	AP_F_AGENT_ID,
	AP_F_USER_ID,
	AP_F_TOOL_NAME,
	AP_F_COUNT
};

/*
 * Lists approvals matching every filter, newest first: up to limit rows
 * from offset, cut short after the row that brings their JSON past
 * max_bytes (the first row always comes). *out is {"data": [...],
 * "total": N}, N the rows matching in all. owner (when not NULL): of its
 * runs only.
 */
sl_status ap_query_list_approvals(ap_store *s, const char *const filters[AP_F_COUNT],
                                  const char *owner, long offset, long limit, size_t max_bytes,
                                  json_t **out, char *errbuf, size_t errsize);

/* Lists requirements by status and run (NULL: any), oldest first, as
 * ap_query_list_approvals does; each says whether decider (NULL: one that
 * decides nothing) may decide it ("may_decide"). */
sl_status ap_query_list_requirements(ap_store *s, const char *status, const char *run_id,
                                     const char *owner, const ap_principal *decider, long offset,
                                     long limit, size_t max_bytes, json_t **out, char *errbuf,
                                     size_t errsize);

/* GET /v1/requirements/{id}: with may_decide for decider (NULL: false);
 * SL_NOT_FOUND when there is none, or when owner is set and the run is
 * not owner's. */
sl_status ap_query_get_requirement(ap_store *s, const char *id, const char *owner,
                                   const ap_principal *decider, json_t **out, char *errbuf,
                                   size_t errsize);

/* The filters of GET /v1/audit, in this order; NULL means any. */
enum { AP_A_RUN_ID, AP_A_REQUIREMENT_ID, AP_A_KIND, AP_A_SINCE, AP_A_UNTIL, AP_A_COUNT };

/* GET /v1/audit: up to limit ledger entries after after_seq, oldest first,
 * {"data": [...], "meta": {"after_seq", "limit", "next_after_seq"}} (the
 * last seq given, null when none). SL_INVALID for a since or until that
 * is not a time. */
sl_status ap_query_list_audit(ap_store *s, const char *const f[AP_A_COUNT], long long after_seq,
                              long limit, json_t **out, char *errbuf, size_t errsize);

/* GET /v1/audit/checkpoints/latest: {tree_size, head, kid, note, at};
 * SL_NOT_FOUND when there is none. */
sl_status ap_query_latest_checkpoint(ap_store *s, json_t **out, char *errbuf, size_t errsize);

/* GET /v1/approvals/{id}. */
sl_status ap_query_get_approval(ap_store *s, const char *id, json_t **out, char *errbuf,
                                size_t errsize);

/* GET /v1/approvals/count: pending approvals, for one user when user_id;
 * of owner's runs only when owner; those decider may decide (not its own
 * run's unless self-approval is allowed, and among the tool's approvers
 * when it names them) when decider. */
sl_status ap_query_count_pending(ap_store *s, const char *user_id, const char *owner,
                                 const ap_principal *decider, long long *count, char *errbuf,
                                 size_t errsize);

/* GET /v1/grants: up to limit grants of a run or session (NULL: any),
 * those in force only when active, newest first: {"data": [{id, scope,
 * scope_id, agent_id, tool_name, args, granted_by, requirement_id,
 * created_at, expires_at, revoked_at, revoked_by, active}]}. */
sl_status ap_query_list_grants(ap_store *s, const char *run_id, const char *session_id, bool active,
                               long limit, json_t **out, char *errbuf, size_t errsize);

/* GET /metrics: the pending requirements of each agent that has any, as
 * {"agent_id": count}. */
sl_status ap_query_pending_by_agent(ap_store *s, json_t **out, char *errbuf, size_t errsize);

/* What POST /v1/requirements/decide picks: pending requirements with
 * every criterion given (NULL: any). run_ids and ids are JSON lists of
 * texts, args a JSON list of {"path": [tokens], "value": v}, each
 * argument at path equal to value (as jsonb: numbers by value). */
typedef struct ap_match {
	const char *agent_id, *tool_name, *run_ids, *ids, *created_before, *created_after, *args;
} ap_match;

/* The pending requirements m picks, oldest first: *out is {"matched": N
 * (all of them), "ids": [the first limit], "sample": [the first few, as
 * GET /v1/requirements/{id} shows them]}. SL_INVALID for a time that is
 * not one. */
sl_status ap_query_match_requirements(ap_store *s, const ap_match *m, long limit, json_t **out,
                                      char *errbuf, size_t errsize);

#endif
