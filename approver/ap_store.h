/*
 * ap_store.h - the approver's state in PostgreSQL: recording paused runs'
 * requirements, resolving them (with the approval row and, when a run's last
 * requirement is resolved, the continue event in the same transaction), and
 * the read models the HTTP API serves.
 */
#ifndef AP_STORE_H
#define AP_STORE_H

#include "ap_access.h"
#include "ap_hooks.h"
#include "sl_agents.h"
#include "sl_common.h"
#include "sl_event.h"
#include "sl_keys.h"
#include "sl_relay.h"

#include <jansson.h>
#include <libpq-fe.h>

typedef struct ap_store {
	PGconn *db;
	const char *source; /* CloudEvents source */
	const char *topic_continues;
	const char *topic_results;
	const char *topic_runs;
	sl_relay *relay;         /* publishes committed outbox rows */
	const sl_signer *signer; /* signs each decision's receipt (sl_receipt.h) */
	const sl_agents *agents; /* the tools' policies (sl_policy.h); NULL: none */
	const ap_hooks *hooks;   /* SLUICE_WEBHOOKS; NULL: none */
	const char *public_url;  /* the inbox's address, for the links notifications give */
	const char *timers;      /* ap_store_timers() of agents; NULL: none */
} ap_store;

/*
 * Checks a validated sluice.run.paused event against PostgreSQL: the run
 * and the requirements it names exist (the worker wrote them, and the
 * pending approvals of type "required", in the pause's transaction). Then
 * applies the tools' policies to those still pending: a rule that approves
 * or rejects resolves the requirement as a person would (ap_store_resolve,
 * resolved_by "policy:NAME"); one that requires more records it in the
 * requirement's deciders. A redelivered event is checked again and finds
 * them decided. SL_NOT_FOUND / SL_INVALID mean the event is to be
 * dead-lettered; SL_RETRY that it is to be tried again.
 */
sl_status ap_store_record_paused(ap_store *s, const sl_event *ev, char *errbuf, size_t errsize);

/*
 * A validated sluice.run.completed or sluice.run.failed event: queues its
 * run.completed / run.failed notification for the webhooks that want it
 * (once per event id, so a redelivered event adds nothing).
 */
sl_status ap_store_record_result(ap_store *s, const sl_event *ev, char *errbuf, size_t errsize);

/* What a decision does. */
typedef enum ap_action {
	AP_CONFIRM, /* run the tool (arguments may be edited) */
	AP_REJECT,  /* do not run it; the model is told, with the note */
	AP_INPUT,   /* fill in the fields a user-input tool asks for, then run it */
	AP_RESULT,  /* give the result of an externally executed tool */
	AP_APPROVE, /* Agno's "approved": CONFIRM, INPUT or RESULT as the tool needs */
	AP_EXPIRE   /* the requirement's time ran out: a rejection */
} ap_action;

/* One decision on a requirement; nothing is stolen. */
typedef struct ap_decision {
	ap_action action;
	const char *note;        /* may be NULL */
	const char *resolved_by; /* the identity behind the API token */
	char *const *groups;     /* and its groups */
	size_t ngroups;
	const json_t *values;    /* INPUT / APPROVE: field values, may be NULL */
	const char *result;      /* RESULT / APPROVE: the external result, may be NULL */
	const json_t *tool_args; /* CONFIRM / APPROVE: edited arguments, may be NULL */
	/* A policy's decision (resolved_by "policy:NAME"): no eligibility, no
	 * quorum; the agents file's digest is recorded with it. NULL: a person's. */
	const sl_policy *policy;
	/* A person's confirmation: the grant it makes ({"scope": "run" |
	 * "session", "ttl_s", "args": {pointer: value}}, checked by the API),
	 * or NULL. */
	const json_t *grant;
	/* A grant's decision (resolved_by "grant:ID"): the grant's id; as a
	 * policy's, no eligibility and no quorum. NULL: none. */
	const char *by_grant;
	/* The decision a policy makes because the requirement's time ran out
	 * (on_timeout "approve"): made past expires_at. */
	bool at_timeout;
} ap_decision;

/*
 * Resolves requirement id with d, once. Writes the approval row of an
 * "audit" or "required" requirement, and when no requirement of the run's
 * current pause is left pending, the sluice.run.continue event with all the
 * decisions, all in one transaction. On SL_OK *out is the resolved
 * requirement (a new reference).
 * SL_NOT_FOUND: no such requirement. SL_FORBIDDEN: d's identity may not
 * decide it (the run's own user, or not among the tool's approvers).
 * A person's decision meets the policy that applies to the requirement
 * now (sl_policy.h): SL_FORBIDDEN for a confirmation a rule rejects, or
 * from someone outside the approvers a rule requires; a rule's quorum
 * counts when above the tool's.
 * SL_CONFLICT: already resolved, expired
 * (a decision that comes after expires_at expires the requirement and gets
 * this), or the run is not paused. SL_INVALID: the decision does not fit
 * the requirement (missing or unknown input fields, arguments that break the
 * tool's schema, a result for a tool that is not external).
 */
sl_status ap_store_resolve(ap_store *s, const char *id, const ap_decision *d, json_t **out,
                           char *errbuf, size_t errsize);

/* Decisions resolved together at most (one transaction). */
#define AP_RESOLVE_BATCH 32

/* One decision of a batch, and what became of it. */
typedef struct ap_resolution {
	const char *id; /* the requirement */
	ap_decision d;
	json_t *out;   /* on SL_OK: the requirement as resolved (a new reference) */
	sl_status st;  /* as ap_store_resolve() returns */
	char err[256]; /* why, when st is not SL_OK */
} ap_resolution;

/*
 * Resolves v[0..n) (1 <= n <= AP_RESOLVE_BATCH) as ap_store_resolve() would
 * one after another, in one transaction and two round trips. Of two
 * decisions on one requirement the first wins. When the transaction fails
 * as a whole, each decision is tried again on its own, so that each
 * outcome is that decision's.
 */
void ap_store_resolve_many(ap_store *s, ap_resolution *v, size_t n);

/*
 * POST /v1/approvals/{id}/resolve: resolves the approval's requirement with
 * d (AP_APPROVE or AP_REJECT) and returns the approval in *out.
 */
sl_status ap_store_resolve_approval(ap_store *s, const char *approval_id, const ap_decision *d,
                                    json_t **out, char *errbuf, size_t errsize);

/*
 * Acts on the pending requirements whose expires_at has passed (up to 100
 * a call) as their tool's on_timeout says, or the on_timeout of the
 * require policy that applies to them (sl_policy.h): expires them (a
 * rejection, the default), cancels their run, or approves them by the
 * policy; *n receives how many. Without the agents file: expires them.
 */
sl_status ap_store_expire_due(ap_store *s, int *n, char *errbuf, size_t errsize);

/*
 * Reminds and escalates (their tools' remind_after, escalate_after and
 * escalate_to): records when on each pending requirement due, widens the
 * approvers of those escalated, and tells the webhooks that want
 * requirement.pending again ("again": "reminder" / "escalation"); *n
 * receives how many were acted on.
 */
sl_status ap_store_remind_due(ap_store *s, int *n, char *errbuf, size_t errsize);

/* The tools of agents with reminders or escalations, as
 * ap_store_remind_due() reads them (store.timers, made once at start-up);
 * NULL when none has. free() it. */
char *ap_store_timers(const sl_agents *agents);

/*
 * Cancels a paused run: status cancelled, its pending requirements and
 * approvals cancelled, a sluice.run.failed event. SL_CONFLICT when the run
 * is running or finished. *out is the run. owner (a submitter cancelling,
 * NULL for an admin): the run must be its own (else SL_NOT_FOUND) and wait
 * on no "required" approval (else SL_FORBIDDEN: Agno's initiator rule).
 */
sl_status ap_store_cancel(ap_store *s, const char *run_id, const char *owner, const char *reason,
                          const char *who, json_t **out, char *errbuf, size_t errsize);

/* DELETE /v1/grants/{id}: revokes grant id as who, who must have granted
 * it unless admin; *out is the grant. SL_NOT_FOUND when there is none (or
 * it is another's and who is no admin: SL_FORBIDDEN), SL_CONFLICT when it
 * was revoked already. */
sl_status ap_store_revoke_grant(ap_store *s, const char *id, const char *who, bool admin,
                                json_t **out, char *errbuf, size_t errsize);

/* POST /v1/runs: event (a checked sluice.run.requested, keyed by run_id)
 * into the outbox, published once committed. */
sl_status ap_store_submit(ap_store *s, const char *run_id, const json_t *event, char *errbuf,
                          size_t errsize);

#endif
