/*
 * sl_agents.c - loading and validating the agents file.
 */
#include "sl_agents.h"
#include "sl_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AGENTS_MAX_BYTES (4 * 1024 * 1024)

const char *sl_approval_name(sl_approval a)
{
	return a == SL_APPROVAL_REQUIRED ? "required" : a == SL_APPROVAL_AUDIT ? "audit" : NULL;
}

bool sl_tool_gated(const sl_tool *t)
{
	return t->requires_confirmation || t->requires_user_input || t->external_execution ||
	       t->approval != SL_APPROVAL_NONE;
}

static const char *opt_str(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Reads an optional boolean; *bad is set when present and not a boolean. */
static bool opt_bool(json_t *o, const char *key, bool *bad)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return false;
	if (!json_is_boolean(v)) {
		*bad = true;
		return false;
	}
	return json_is_true(v);
}

bool sl_env_name_valid(const char *s, size_t len)
{
	if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!(s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9')))
			return false;
	return true;
}

/* executor.env: names to pass through from the worker's environment, or
 * NAME=value pairs; the tool gets nothing else. */
static sl_status parse_env(json_t *env, sl_tool *t, const char *where, char *errbuf, size_t errsize)
{
	json_t *e;
	size_t i;

	if (!env)
		return SL_OK;
	if (!json_is_array(env))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field executor.env must be an array of NAME or NAME=value "
		              "strings",
		              where);
	json_array_foreach (env, i, e) {
		const char *v = json_string_value(e);
		const char *eq = v ? strchr(v, '=') : NULL;
		size_t n = eq ? (size_t)(eq - v) : v ? strlen(v) : 0;

		if (!v || !sl_env_name_valid(v, n) || strlen(v) != json_string_length(e))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: field executor.env[%zu] must be NAME or NAME=value",
			              where, i);
	}
	t->env = env;
	return SL_OK;
}

/* True when s is an HTTP field name (RFC 9110 token). */
static bool header_name_valid(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!(*s > 0x20 && *s < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", *s)))
			return false;
	return true;
}

/* executor.headers: {"Name": "value with ${VAR}s"}; the worker fills the
 * variables in at start-up. */
static sl_status parse_headers(json_t *hs, sl_tool *t, const char *where, char *errbuf,
                               size_t errsize)
{
	const char *name;
	json_t *v;

	if (!hs)
		return SL_OK;
	if (!json_is_object(hs))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field executor.headers must be an object of strings", where);
	json_object_foreach (hs, name, v) {
		const char *s = json_string_value(v);

		if (!header_name_valid(name) || !strcasecmp(name, "Idempotency-Key") ||
		    !strcasecmp(name, "Content-Type"))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: field executor.headers: %s is not a header name a tool "
			              "may set",
			              where, header_name_valid(name) ? name : "a key");
		if (!s || strlen(s) != json_string_length(v) || strpbrk(s, "\r\n"))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: field executor.headers.%s must be a one-line string",
			              where, name);
	}
	t->headers = hs;
	return SL_OK;
}

static sl_status parse_executor(json_t *ex, sl_tool *t, const char *where, char *errbuf,
                                size_t errsize)
{
	const char *kind = opt_str(ex, "kind");
	json_t *tmo = json_object_get(ex, "timeout_ms");
	json_t *idem = json_object_get(ex, "idempotent");

	if (idem && !json_is_boolean(idem))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field executor.idempotent must be true or false", where);
	t->idempotent = idem ? json_is_true(idem) : kind && !strcmp(kind, "http");
	t->timeout_ms = 30000;
	if (tmo) {
		if (!json_is_integer(tmo) || json_integer_value(tmo) <= 0 ||
		    json_integer_value(tmo) > 3600000)
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "%s: field executor.timeout_ms must be an integer from 1 to 3600000",
			    where);
		t->timeout_ms = (long)json_integer_value(tmo);
	}
	if (kind && (!strcmp(kind, "command") || !strcmp(kind, "stdio"))) {
		json_t *argv = json_object_get(ex, "argv"), *a;
		size_t i;

		if (!json_is_array(argv) || json_array_size(argv) == 0)
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "%s: field executor.argv must be a non-empty array of strings", where);
		t->argv = sl_calloc(json_array_size(argv) + 1, sizeof(char *));
		json_array_foreach (argv, i, a) {
			if (!json_is_string(a))
				return sl_err(errbuf, errsize, SL_INVALID,
				              "%s: field executor.argv[%zu] must be a string",
				              where, i);
			t->argv[i] = (char *)json_string_value(a);
		}
		t->executor = !strcmp(kind, "command") ? SL_EXEC_COMMAND : SL_EXEC_STDIO;
		if (json_object_get(ex, "headers"))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: field executor.headers is for http tools", where);
		return parse_env(json_object_get(ex, "env"), t, where, errbuf, errsize);
	}
	if (kind && !strcmp(kind, "http")) {
		t->url = opt_str(ex, "url");
		if (!t->url || (strncmp(t->url, "http://", 7) && strncmp(t->url, "https://", 8)))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: field executor.url must be an http(s) URL", where);
		t->executor = SL_EXEC_HTTP;
		if (json_object_get(ex, "env"))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "%s: field executor.env is for command and stdio tools",
			              where);
		return parse_headers(json_object_get(ex, "headers"), t, where, errbuf, errsize);
	}
	return sl_err(errbuf, errsize, SL_INVALID,
	              "%s: field executor.kind must be \"command\", \"stdio\" or \"http\"", where);
}

/* approvers, self_approval and quorum: who may decide the tool's
 * requirements. */
static sl_status parse_deciders(json_t *jt, sl_tool *t, const char *where, char *errbuf,
                                size_t errsize)
{
	json_t *v = json_object_get(jt, "approvers");
	bool bad = false;

	if (v && (!json_is_object(v) || !sl_names_valid(json_object_get(v, "users")) ||
	          !sl_names_valid(json_object_get(v, "groups")) ||
	          json_array_size(json_object_get(v, "users")) +
	                  json_array_size(json_object_get(v, "groups")) ==
	              0))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field approvers must be {\"users\": [names], \"groups\": "
		              "[names]} naming someone",
		              where);
	t->approvers = v;
	t->self_approval = opt_bool(jt, "self_approval", &bad);
	if (bad)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field self_approval must be true or false", where);
	v = json_object_get(jt, "quorum");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 10))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field quorum must be a number of approvers from 1 to 10", where);
	t->quorum = v ? (int)json_integer_value(v) : 1;
	if (t->quorum > 1 && t->approval != SL_APPROVAL_REQUIRED)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field quorum above 1 needs approval \"required\"", where);
	if ((t->approvers || t->self_approval || t->quorum > 1) &&
	    t->approval == SL_APPROVAL_NONE && !t->requires_confirmation &&
	    !t->requires_user_input && !t->external_execution)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: fields approvers and self_approval need a tool that pauses",
		              where);
	return SL_OK;
}

/* A whole number of seconds from 1 to a year, or absent (0). */
static bool opt_seconds(json_t *o, const char *key, long *out)
{
	json_t *v = json_object_get(o, key);

	*out = 0;
	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 1 ||
	    json_integer_value(v) > 365L * 24 * 3600)
		return false;
	*out = (long)json_integer_value(v);
	return true;
}

/* on_timeout, remind_after, escalate_after and escalate_to. */
static sl_status parse_timers(json_t *jt, sl_tool *t, const char *where, char *errbuf,
                              size_t errsize)
{
	json_t *v = json_object_get(jt, "on_timeout");

	if (v && (!sl_on_timeout_parse(v, &t->on_timeout) || t->on_timeout == SL_TIMEOUT_APPROVE))
		return sl_err(
		    errbuf, errsize, SL_INVALID,
		    "%s: field on_timeout must be \"reject\" or \"cancel_run\" (approving "
		    "a call because no one answered needs a policy saying which: "
		    "on_timeout \"approve\" on a require rule)",
		    where);
	if (!t->on_timeout)
		t->on_timeout = SL_TIMEOUT_REJECT;
	if (!opt_seconds(jt, "remind_after", &t->remind_after_s) ||
	    !opt_seconds(jt, "escalate_after", &t->escalate_after_s))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: fields remind_after and escalate_after must be seconds (1 to a "
		              "year)",
		              where);
	t->escalate_to = json_object_get(jt, "escalate_to");
	if (!t->escalate_after_s != !t->escalate_to ||
	    (t->escalate_to &&
	     (!json_is_object(t->escalate_to) ||
	      !sl_names_valid(json_object_get(t->escalate_to, "users")) ||
	      !sl_names_valid(json_object_get(t->escalate_to, "groups")) ||
	      json_array_size(json_object_get(t->escalate_to, "users")) +
	              json_array_size(json_object_get(t->escalate_to, "groups")) ==
	          0)))
		return sl_err(
		    errbuf, errsize, SL_INVALID,
		    "%s: escalate_after and escalate_to ({\"users\": [names], \"groups\": "
		    "[names]}) go together",
		    where);
	if (t->escalate_to && !t->approvers)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: escalate_to adds to the tool's approvers, and it names none "
		              "(every approver may decide already)",
		              where);
	if ((t->on_timeout == SL_TIMEOUT_CANCEL_RUN || t->remind_after_s || t->escalate_after_s) &&
	    !sl_tool_gated(t))
		return sl_err(
		    errbuf, errsize, SL_INVALID,
		    "%s: on_timeout, remind_after and escalate_after need a tool that pauses",
		    where);
	return SL_OK;
}

static sl_status parse_tool(json_t *jt, sl_tool *t, const char *agent, size_t idx, char *errbuf,
                            size_t errsize)
{
	char where[256];
	const char *approval;
	json_t *v;
	bool bad = false;
	int flags;

	if (!json_is_object(jt))
		return sl_err(errbuf, errsize, SL_INVALID, "agent %s: tools[%zu] must be an object",
		              agent, idx);
	t->name = opt_str(jt, "name");
	if (!t->name || !sl_event_id_valid(t->name))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "agent %s: tools[%zu]: field name must be an id-like string", agent,
		              idx);
	snprintf(where, sizeof(where), "agent %s: tool %s", agent, t->name);
	t->description = opt_str(jt, "description");
	if (!t->description)
		t->description = "";
	t->parameters = json_object_get(jt, "parameters");
	if (t->parameters && !json_is_object(t->parameters))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field parameters must be a JSON schema object", where);
	t->requires_confirmation = opt_bool(jt, "requires_confirmation", &bad);
	if (bad)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field requires_confirmation must be true or false", where);
	t->requires_user_input = opt_bool(jt, "requires_user_input", &bad);
	if (bad)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field requires_user_input must be true or false", where);
	t->external_execution = opt_bool(jt, "external_execution", &bad);
	if (bad)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field external_execution must be true or false", where);
	flags = t->requires_confirmation + t->requires_user_input + t->external_execution;
	if (flags > 1)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: at most one of requires_confirmation, requires_user_input and "
		              "external_execution may be set",
		              where);
	t->user_input_fields = json_object_get(jt, "user_input_fields");
	if (t->requires_user_input) {
		json_t *props = json_object_get(t->parameters, "properties"), *f;
		size_t i;

		if (!json_is_array(t->user_input_fields) ||
		    json_array_size(t->user_input_fields) == 0)
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "%s: field user_input_fields must list the parameters to ask for",
			    where);
		json_array_foreach (t->user_input_fields, i, f) {
			if (!json_is_string(f) || !json_object_get(props, json_string_value(f)))
				return sl_err(
				    errbuf, errsize, SL_INVALID,
				    "%s: field user_input_fields[%zu] must name a parameter", where,
				    i);
		}
	}
	approval = opt_str(jt, "approval");
	v = json_object_get(jt, "approval");
	if (v && !json_is_null(v) && !approval)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field approval must be \"required\" or \"audit\"", where);
	if (!approval)
		t->approval = SL_APPROVAL_NONE;
	else if (!strcmp(approval, "required"))
		t->approval = SL_APPROVAL_REQUIRED;
	else if (!strcmp(approval, "audit"))
		t->approval = SL_APPROVAL_AUDIT;
	else
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field approval must be \"required\" or \"audit\"", where);
	if (t->approval == SL_APPROVAL_AUDIT && flags == 0)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field approval: \"audit\" needs requires_confirmation, "
		              "requires_user_input or external_execution",
		              where);
	if (t->approval == SL_APPROVAL_REQUIRED && flags == 0)
		t->requires_confirmation = true;
	v = json_object_get(jt, "approval_timeout");
	if (v) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0)
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "%s: field approval_timeout must be a positive number of seconds",
			    where);
		t->approval_timeout_s = (long)json_integer_value(v);
	}
	if (parse_deciders(jt, t, where, errbuf, errsize) ||
	    parse_timers(jt, t, where, errbuf, errsize))
		return SL_INVALID;
	if (sl_policies_parse(json_object_get(jt, "policies"),
	                      &(sl_policy_tool){where, t->requires_confirmation,
	                                        t->approval == SL_APPROVAL_REQUIRED},
	                      &t->policies, &t->npolicies, errbuf, errsize))
		return SL_INVALID;
	if (t->npolicies && !sl_tool_gated(t))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field policies needs a tool that pauses", where);
	v = json_object_get(jt, "executor");
	if (v && !json_is_object(v))
		return sl_err(errbuf, errsize, SL_INVALID, "%s: field executor must be an object",
		              where);
	if (!v) {
		if (!t->external_execution)
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "%s: field executor is missing (only external_execution tools "
			    "need none)",
			    where);
		return SL_OK;
	}
	return parse_executor(v, t, where, errbuf, errsize);
}

static sl_status parse_agent(json_t *ja, sl_agent *a, size_t idx, char *errbuf, size_t errsize)
{
	json_t *model, *tools, *jt;
	const char *provider;
	sl_status st;
	size_t i;

	if (!json_is_object(ja))
		return sl_err(errbuf, errsize, SL_INVALID, "agents[%zu] must be an object", idx);
	a->id = opt_str(ja, "id");
	if (!a->id || !sl_event_id_valid(a->id))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "agents[%zu]: field id must be an id-like string", idx);
	model = json_object_get(ja, "model");
	if (!json_is_object(model))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "agent %s: field model must be an object", a->id);
	provider = opt_str(model, "provider");
	if (provider && !strcmp(provider, "openai-responses"))
		a->provider = SL_PROVIDER_RESPONSES;
	else if (provider && !strcmp(provider, "openai-chat"))
		a->provider = SL_PROVIDER_CHAT;
	else
		return sl_err(errbuf, errsize, SL_INVALID,
		              "agent %s: field model.provider must be \"openai-responses\" or "
		              "\"openai-chat\"",
		              a->id);
	a->model_id = opt_str(model, "id");
	if (!a->model_id || !*a->model_id)
		return sl_err(errbuf, errsize, SL_INVALID, "agent %s: field model.id is missing",
		              a->id);
	a->base_url = opt_str(model, "base_url");
	if (json_object_get(model, "api_key_env")) {
		a->api_key_env = opt_str(model, "api_key_env");
		if (!a->api_key_env || !sl_env_name_valid(a->api_key_env, strlen(a->api_key_env)))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "agent %s: field model.api_key_env must name an environment "
			              "variable",
			              a->id);
	}
	{
		bool bad = false;
		a->allow_plain_http = opt_bool(model, "allow_plain_http", &bad);
		if (bad)
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "agent %s: field model.allow_plain_http must be true or false", a->id);
	}
	a->instructions = opt_str(ja, "instructions");
	{
		json_t *v = json_object_get(ja, "max_pending_approvals");

		if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
		          json_integer_value(v) > 1000000))
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "agent %s: field max_pending_approvals must be a number from 1 "
			    "to 1000000",
			    a->id);
		a->max_pending = v ? (long)json_integer_value(v) : 0;
	}
	tools = json_object_get(ja, "tools");
	if (tools && !json_is_array(tools))
		return sl_err(errbuf, errsize, SL_INVALID, "agent %s: field tools must be an array",
		              a->id);
	a->ntools = json_array_size(tools);
	a->tools = sl_calloc(a->ntools, sizeof(sl_tool));
	json_array_foreach (tools, i, jt) {
		if ((st = parse_tool(jt, &a->tools[i], a->id, i, errbuf, errsize)))
			return st;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(a->tools[k].name, a->tools[i].name))
				return sl_err(errbuf, errsize, SL_INVALID,
				              "agent %s: tool %s: field name is used twice", a->id,
				              a->tools[i].name);
	}
	return SL_OK;
}

sl_status sl_agents_parse(const char *text, size_t len, sl_agents **out, char *errbuf,
                          size_t errsize)
{
	sl_agents *a = sl_calloc(1, sizeof(*a));
	json_error_t jerr;
	json_t *list, *ja;
	sl_status st = SL_OK;
	size_t i;

	*out = NULL;
	sl_sha256_hex(text, len, a->sha256);
	memcpy(a->policies_sha256, a->sha256, sizeof(a->sha256));
	a->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!a->root) {
		st = sl_err(errbuf, errsize, SL_INVALID, "agents file: bad JSON at line %d: %s",
		            jerr.line, jerr.text);
		goto out;
	}
	list = json_object_get(a->root, "agents");
	if (!json_is_array(list) || json_array_size(list) == 0) {
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "agents file: field agents must be a non-empty array");
		goto out;
	}
	{
		json_t *v = json_object_get(a->root, "max_pending_approvals");

		if (v && (!json_is_integer(v) || json_integer_value(v) < 1 ||
		          json_integer_value(v) > 1000000)) {
			st = sl_err(
			    errbuf, errsize, SL_INVALID,
			    "agents file: field max_pending_approvals must be a number from 1 "
			    "to 1000000");
			goto out;
		}
		a->max_pending = v ? (long)json_integer_value(v) : 0;
	}
	a->n = json_array_size(list);
	a->agents = sl_calloc(a->n, sizeof(sl_agent));
	json_array_foreach (list, i, ja) {
		if ((st = parse_agent(ja, &a->agents[i], i, errbuf, errsize)))
			goto out;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(a->agents[k].id, a->agents[i].id)) {
				st = sl_err(errbuf, errsize, SL_INVALID,
				            "agent %s: field id is used twice", a->agents[i].id);
				goto out;
			}
	}
out:
	if (st) {
		sl_agents_free(a);
		return st;
	}
	*out = a;
	return SL_OK;
}

/* Reads path whole into b (at most AGENTS_MAX_BYTES). */
static sl_status read_file(const char *path, const char *what, sl_buf *b, char *errbuf,
                           size_t errsize)
{
	FILE *f = fopen(path, "rb");
	char chunk[8192];
	size_t n;
	sl_status st = SL_OK;

	sl_buf_init(b, AGENTS_MAX_BYTES);
	if (!f)
		return sl_err(errbuf, errsize, SL_INVALID, "cannot open %s %s: %m", what, path);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && st == SL_OK)
		st = sl_buf_append(b, chunk, n);
	fclose(f);
	if (st)
		return sl_err(errbuf, errsize, SL_INVALID, "%s %s is over %d bytes", what, path,
		              AGENTS_MAX_BYTES);
	return SL_OK;
}

/* The agents file's "policies_file" (relative to the agents file's
 * folder): {"AGENT": {"TOOL": [rules]}}, each tool's rules parsed as if
 * inline; a tool given rules both ways, or an agent or tool the agents file
 * does not have, is refused. */
static sl_status load_policies_file(sl_agents *a, const char *agents_path, const char *name,
                                    char *errbuf, size_t errsize)
{
	const char *slash = strrchr(agents_path, '/'), *agent_id, *tool_name;
	char *path = *name == '/' || !slash
	                 ? sl_strdup(name)
	                 : sl_asprintf("%.*s/%s", (int)(slash - agents_path), agents_path, name);
	json_t *tools, *list;
	json_error_t jerr;
	sl_status st;
	sl_buf b;

	if ((st = read_file(path, "policies file", &b, errbuf, errsize)))
		goto out;
	sl_sha256_hex(b.data ? b.data : "", b.len, a->policies_sha256);
	a->policies_root = json_loadb(b.data ? b.data : "", b.len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(a->policies_root)) {
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "policies file %s: must be a JSON object {\"AGENT\": {\"TOOL\": "
		            "[rules]}} (line %d: %s)",
		            path, jerr.line, a->policies_root ? "not an object" : jerr.text);
		goto out;
	}
	json_object_foreach (a->policies_root, agent_id, tools) {
		sl_agent *ag = (sl_agent *)sl_agents_find(a, agent_id);

		if (!ag || !json_is_object(tools)) {
			st =
			    sl_err(errbuf, errsize, SL_INVALID, "policies file %s: %.64s: %s", path,
			           agent_id, ag ? "must map tool names to rules" : "no such agent");
			goto out;
		}
		json_object_foreach (tools, tool_name, list) {
			sl_tool *t = (sl_tool *)sl_agent_tool(ag, tool_name);
			char where[256];

			snprintf(where, sizeof(where), "policies file: agent %s: tool %s", agent_id,
			         tool_name);
			if (!t || t->npolicies) {
				st = sl_err(errbuf, errsize, SL_INVALID, "%s: %s", where,
				            t ? "has policies in the agents file too"
				              : "no such tool");
				goto out;
			}
			if ((st = sl_policies_parse(
			         list,
			         &(sl_policy_tool){where, t->requires_confirmation,
			                           t->approval == SL_APPROVAL_REQUIRED},
			         &t->policies, &t->npolicies, errbuf, errsize)))
				goto out;
			if (t->npolicies && !sl_tool_gated(t)) {
				st = sl_err(errbuf, errsize, SL_INVALID,
				            "%s: the tool does not pause", where);
				goto out;
			}
		}
	}
out:
	sl_buf_free(&b);
	free(path);
	return st;
}

sl_status sl_agents_load(const char *path, sl_agents **out, char *errbuf, size_t errsize)
{
	const char *pf;
	sl_status st;
	sl_buf b;

	*out = NULL;
	if ((st = read_file(path, "agents file", &b, errbuf, errsize))) {
		sl_buf_free(&b);
		return st;
	}
	st = sl_agents_parse(b.data ? b.data : "", b.len, out, errbuf, errsize);
	sl_buf_free(&b);
	if (st)
		return st;
	pf = json_string_value(json_object_get((*out)->root, "policies_file"));
	if (json_object_get((*out)->root, "policies_file") && (!pf || !*pf))
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "agents file: field policies_file must name a file");
	else if (pf)
		st = load_policies_file(*out, path, pf, errbuf, errsize);
	if (st) {
		sl_agents_free(*out);
		*out = NULL;
	}
	return st;
}

void sl_agents_free(sl_agents *a)
{
	if (!a)
		return;
	for (size_t i = 0; a->agents && i < a->n; i++) {
		for (size_t k = 0; k < a->agents[i].ntools; k++) {
			sl_tool *t = &a->agents[i].tools[k];
			free(t->argv);
			sl_strv_free(t->envp);
			sl_strv_free(t->header_lines);
			sl_policies_free(t->policies, t->npolicies);
		}
		free(a->agents[i].tools);
		free(a->agents[i].api_key);
	}
	free(a->agents);
	json_decref(a->policies_root);
	json_decref(a->root);
	free(a);
}

const sl_agent *sl_agents_find(const sl_agents *a, const char *id)
{
	for (size_t i = 0; i < a->n; i++)
		if (!strcmp(a->agents[i].id, id))
			return &a->agents[i];
	return NULL;
}

const sl_tool *sl_agent_tool(const sl_agent *agent, const char *name)
{
	for (size_t i = 0; i < agent->ntools; i++)
		if (!strcmp(agent->tools[i].name, name))
			return &agent->tools[i];
	return NULL;
}
