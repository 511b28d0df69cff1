/*
 * sl_policy.h - approval policies (DESIGN.md, "Batches"): rules declared on
 * a tool in the agents file that decide its requirements, or ask more of
 * the people who decide them, by the call's arguments and its run's agent,
 * user and session. The first rule whose conditions all hold is the one
 * that applies. Parsed with the agents file (sl_agents.h); evaluated by the
 * approver when it records a requirement and again when someone decides
 * it, and by `sluice policy test`.
 */
#ifndef SL_POLICY_H
#define SL_POLICY_H

#include "sl_common.h"

#include <jansson.h>
#include <regex.h>

typedef enum sl_effect { SL_EFFECT_APPROVE, SL_EFFECT_REJECT, SL_EFFECT_REQUIRE } sl_effect;

/* What a requirement's timing out does (a tool's on_timeout, or a require
 * rule's for the calls it matches): reject it (the default), cancel its
 * run, or - only where a rule says so - approve it. */
typedef enum sl_on_timeout {
	SL_TIMEOUT_DEFAULT, /* a rule's: the tool's */
	SL_TIMEOUT_REJECT,
	SL_TIMEOUT_CANCEL_RUN,
	SL_TIMEOUT_APPROVE
} sl_on_timeout;

typedef enum sl_cmp {
	SL_CMP_EQ,
	SL_CMP_NE,
	SL_CMP_IN,
	SL_CMP_LT,
	SL_CMP_LE,
	SL_CMP_GT,
	SL_CMP_GE,
	SL_CMP_MATCHES
} sl_cmp;

/* One condition: what key names (a JSON pointer into the arguments, or
 * $agent_id, $user_id, $session_id) compared with value. */
typedef struct sl_policy_cond {
	const char *key;
	sl_cmp cmp;
	const json_t *value;
	regex_t *re; /* SL_CMP_MATCHES */
} sl_policy_cond;

/* Strings and JSON point into the agents file, owned by sl_agents. */
typedef struct sl_policy {
	const char *name;
	sl_policy_cond *conds;
	size_t nconds;
	sl_effect effect;
	const char
	    *note; /* recorded with the decision (and told the model on reject); may be NULL */
	/* SL_EFFECT_REQUIRE: the confirmations needed (0: the tool's), and
	 * {"users": [...], "groups": [...]} whom they must come from besides
	 * the tool's own approvers (NULL: no one more) */
	int quorum;
	json_t *approvers;
	sl_on_timeout on_timeout; /* SL_EFFECT_REQUIRE: for the calls it matches */
} sl_policy;

/* What a rule is evaluated on; any member may be NULL. */
typedef struct sl_policy_of {
	const json_t *args;
	const char *agent_id, *user_id, *session_id;
} sl_policy_of;

/* How a tool's requirements are asked for, which rules may depend on. */
typedef struct sl_policy_tool {
	const char *where;   /* "agent A: tool T", for errors */
	bool confirms;       /* requires_confirmation: approve and reject apply */
	bool quorum_allowed; /* approval "required": quorum above 1 allowed */
} sl_policy_tool;

/* Parses a tool's "policies" list into *out (*n rules; sl_policies_free).
 * SL_INVALID naming the rule and the field on anything unknown or wrong. */
sl_status sl_policies_parse(json_t *list, const sl_policy_tool *tool, sl_policy **out, size_t *n,
                            char *errbuf, size_t errsize);

void sl_policies_free(sl_policy *p, size_t n);

/* The first of p[0..n) whose conditions all hold for of, or NULL. A key
 * that names nothing (a pointer past the arguments, a user the run does not
 * have) makes its condition fail. */
const sl_policy *sl_policy_match(const sl_policy *p, size_t n, const sl_policy_of *of);

/* Reads an on_timeout value ("reject", "cancel_run", "approve"); false for
 * anything else. */
bool sl_on_timeout_parse(const json_t *v, sl_on_timeout *out);

/* "approve", "reject" or "require". */
const char *sl_effect_name(sl_effect e);

/* Whether list is absent or a list of non-empty names. */
bool sl_names_valid(const json_t *list);

/* The reference tokens of the JSON pointer ptr (RFC 6901), unescaped, as
 * a new JSON list of texts (a path PostgreSQL's #> takes); NULL when ptr
 * is not a pointer. */
json_t *sl_json_pointer_path(const char *ptr);

/* Whether each JSON pointer of want ({pointer: value}) names in doc a
 * value equal to want's (numbers by value); an empty want matches. */
bool sl_json_matches(const json_t *doc, const json_t *want);

/* The value the JSON pointer ptr (RFC 6901) names in doc, or NULL. */
const json_t *sl_json_pointer(const json_t *doc, const char *ptr);

#endif
