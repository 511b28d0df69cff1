/*
 * ap_bulk.h - bulk decisions (DESIGN.md, "Batches"): POST
 * /v1/requirements/decide checked (ap_bulk_parse), the requirements it
 * picks found (ap_query_match_requirements), then each decided as if alone
 * through the decider - eligibility, quorum, receipt, ledger - and the
 * outcomes gathered into one answer (ap_bulk_start).
 */
#ifndef AP_BULK_H
#define AP_BULK_H

#include "ap_decide.h"
#include "ap_query.h"
#include "sl_httpd.h"

/* Requirements one call decides at most (the rest: call again). */
#define AP_BULK_MAX 500
/* Ids or run ids one filter names at most. */
#define AP_BULK_MAX_IDS 1000

/* A checked request; its strings point into body, which it holds. */
typedef struct ap_bulk_req {
	json_t *body;
	ap_match match;   /* run_ids, ids and args as JSON texts, owned here */
	ap_action action; /* AP_CONFIRM or AP_REJECT */
	const char *note;
	bool dry_run;
} ap_bulk_req;

/* Checks body (a JSON object: {"filter": {...}, "decision", "note"?,
 * "dry_run"?}) into r, which holds a reference to it. SL_INVALID with the
 * reason for anything missing, unknown or of the wrong type; a filter must
 * name at least one criterion. */
sl_status ap_bulk_parse(json_t *body, ap_bulk_req *r, char *errbuf, size_t errsize);

void ap_bulk_req_clear(ap_bulk_req *r);

/* Decides each requirement of ids (a JSON list, at most AP_BULK_MAX) with
 * r's decision as who (held until done), through dc, and answers request
 * with {"matched", "decided", "voted", "refused": [{"id", "status",
 * "error"}]} once all are done. Takes r's contents (r is cleared). */
void ap_bulk_start(ap_decider *dc, ap_bulk_req *r, const json_t *ids, long long matched,
                   ap_principal *who, sl_httpd_deferred *request);

#endif
