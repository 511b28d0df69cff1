/*
 * sl_agents.h - the agents file of DESIGN.md ("Configuration"): agents,
 * their models and tools, the tools' HITL flags and executors.
 */
#ifndef SL_AGENTS_H
#define SL_AGENTS_H

#include "sl_common.h"
#include "sl_policy.h"

#include <jansson.h>

typedef enum sl_approval { SL_APPROVAL_NONE, SL_APPROVAL_REQUIRED, SL_APPROVAL_AUDIT } sl_approval;
/* command: a process per call; stdio: one long-running process answering
 * calls as JSON lines (worker/wk_stdio.h); http: a POST per call. */
typedef enum sl_executor_kind {
	SL_EXEC_NONE,
	SL_EXEC_COMMAND,
	SL_EXEC_STDIO,
	SL_EXEC_HTTP
} sl_executor_kind;
typedef enum sl_provider { SL_PROVIDER_RESPONSES, SL_PROVIDER_CHAT } sl_provider;

/* Strings point into the parsed file, owned by sl_agents. */
typedef struct sl_tool {
	const char *name;
	const char *description;
	json_t *parameters;
	bool requires_confirmation;
	bool requires_user_input;
	bool external_execution;
	json_t *user_input_fields; /* array of parameter names, may be NULL */
	sl_approval approval;
	long approval_timeout_s; /* 0: none */
	/* What its time running out does: reject (default) or cancel the run;
	 * a require policy may say approve for the calls it matches. */
	sl_on_timeout on_timeout;
	/* A notification again after remind_after_s, and escalate_to's people
	 * added to its approvers after escalate_after_s (0: never). */
	long remind_after_s, escalate_after_s;
	json_t *escalate_to; /* {"users", "groups"} */
	/* Who may decide its requirements (DESIGN.md, "Who may decide"):
	 * approvers {"users": [...], "groups": [...]} (NULL: every approver),
	 * and whether the run's own user may (self_approval, default false). */
	json_t *approvers;
	bool self_approval;
	int quorum; /* distinct identities that must confirm (1..10, default 1) */
	/* Rules that decide its requirements, or ask more of whoever does
	 * (sl_policy.h); first match wins. */
	sl_policy *policies;
	size_t npolicies;
	sl_executor_kind executor;
	char **argv;     /* command, stdio: NULL-terminated */
	const char *url; /* http */
	long timeout_ms;
	/* executor.idempotent (default: true for http, whose Idempotency-Key
	 * is that contract): an attempt claimed but never recorded is made
	 * again; of any other tool, the outcome is unknown */
	bool idempotent;
	json_t *env;     /* command, stdio: executor.env (NAME or NAME=value), may be NULL */
	json_t *headers; /* http: executor.headers (name: value with ${VAR}s), may be NULL */
	/* Made by the worker at start-up (wk_tool_prepare) from env and headers
	 * and freed with the agents, NULL until then: the tool process's whole
	 * environment, and the http tool's extra "Name: value" header lines;
	 * both NULL-terminated. They may hold secrets: never logged. */
	char **envp;
	char **header_lines;
} sl_tool;

typedef struct sl_agent {
	const char *id;
	sl_provider provider;
	const char *model_id;
	const char *base_url;     /* may be NULL: use the configured one */
	const char *api_key_env;  /* the variable holding the API key; NULL: OPENAI_API_KEY */
	bool allow_plain_http;    /* the key may go over http:// to a host not on loopback */
	char *api_key;            /* resolved by the worker at start-up (wk_model_prepare) */
	const char *instructions; /* may be NULL */
	sl_tool *tools;
	size_t ntools;
	/* max_pending_approvals (0: none): while this many of its requirements
	 * are pending, or its runs started and not yet paused or finished
	 * could add as many, workers start no new run of it (DESIGN.md,
	 * "Batches": back-pressure) */
	long max_pending;
} sl_agent;

typedef struct sl_agents {
	json_t *root;
	char sha256[65]; /* of the file's text */
	/* of the file the policies came from (policies_file, else the agents
	 * file): what a policy's decision names */
	char policies_sha256[65];
	json_t *policies_root; /* the policies file's, when there is one */
	/* the file's max_pending_approvals (0: none): the whole stack's, every
	 * agent's requirements and starts counted together */
	long max_pending;
	sl_agent *agents;
	size_t n;
} sl_agents;

/*
 * Parses and validates an agents file's text. On failure returns SL_INVALID
 * with a message naming the agent, the tool and the field, and *out is NULL.
 * On success *out belongs to the caller (sl_agents_free).
 */
sl_status sl_agents_parse(const char *text, size_t len, sl_agents **out, char *errbuf,
                          size_t errsize);

/* Reads path and parses it as sl_agents_parse does. */
sl_status sl_agents_load(const char *path, sl_agents **out, char *errbuf, size_t errsize);

void sl_agents_free(sl_agents *a);

/* Returns the agent or tool with that id / name, or NULL. */
const sl_agent *sl_agents_find(const sl_agents *a, const char *id);
const sl_tool *sl_agent_tool(const sl_agent *agent, const char *name);

/* True when a call of the tool must wait for a person (or another system). */
bool sl_tool_gated(const sl_tool *t);

/* True when s is an environment variable name ([A-Za-z_][A-Za-z0-9_]*). */
bool sl_env_name_valid(const char *s, size_t len);

/* "required", "audit" or NULL. */
const char *sl_approval_name(sl_approval a);

#endif
