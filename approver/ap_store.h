/*
 * ap_store.h - the approver's state in PostgreSQL: recording paused runs'
 * requirements, resolving them (with the approval row and, when a run's last
 * requirement is resolved, the continue event in the same transaction), and
 * the read models the HTTP API serves.
 */
#ifndef AP_STORE_H
#define AP_STORE_H

#include "sl_common.h"
#include "sl_event.h"

#include <jansson.h>
#include <libpq-fe.h>

typedef struct ap_store {
	PGconn *db;
	const char *source; /* CloudEvents source */
	const char *topic_continues;
} ap_store;

/*
 * Records a validated sluice.run.paused event once: checks the run and its
 * requirements exist (the worker wrote them with the pause) and opens a
 * pending approval for each requirement of approval type "required".
 * SL_NOT_FOUND / SL_INVALID mean the event is to be dead-lettered.
 */
sl_status ap_store_record_paused(ap_store *s, const sl_event *ev, char *errbuf, size_t errsize);

/* One decision on a requirement. */
typedef struct ap_decision {
	bool confirmed;
	const char *note; /* may be NULL */
	const char *resolved_by;
} ap_decision;

/*
 * Resolves requirement id with d, once. Writes the approval row of an
 * "audit" or "required" requirement, and when no requirement of the run's
 * current pause is left pending, the sluice.run.continue event with all the
 * decisions, all in one transaction. On SL_OK *out is the resolved
 * requirement (a new reference). SL_NOT_FOUND: no such requirement;
 * SL_CONFLICT: already resolved, expired, or the run is not paused.
 */
sl_status ap_store_resolve(ap_store *s, const char *id, const ap_decision *d, json_t **out,
                           char *errbuf, size_t errsize);

/* GET /v1/runs/{id}. SL_NOT_FOUND when there is no such run. */
sl_status ap_store_get_run(ap_store *s, const char *run_id, json_t **out, char *errbuf,
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
 * Lists approvals matching every filter, newest first, page (1-based) of
 * limit rows. *out is {"data": [...], "meta": {page, limit, total_pages,
 * total_count}}.
 */
sl_status ap_store_list_approvals(ap_store *s, const char *const filters[AP_F_COUNT], long page,
                                  long limit, json_t **out, char *errbuf, size_t errsize);

/* Lists requirements by status and run (NULL: any), oldest first, paged as
 * ap_store_list_approvals. */
sl_status ap_store_list_requirements(ap_store *s, const char *status, const char *run_id, long page,
                                     long limit, json_t **out, char *errbuf, size_t errsize);

/* GET /v1/approvals/{id}. */
sl_status ap_store_get_approval(ap_store *s, const char *id, json_t **out, char *errbuf,
                                size_t errsize);

/* GET /v1/approvals/count: pending approvals, for one user when user_id. */
sl_status ap_store_count_pending(ap_store *s, const char *user_id, long long *count, char *errbuf,
                                 size_t errsize);

#endif
