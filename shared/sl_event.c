/*
 * sl_event.c - CloudEvents envelopes and the data schemas of each type.
 */
#include "sl_event.h"

#include <string.h>
#include <unistd.h>

json_t *sl_event_new(const char *type, const char *source, const char *subject, json_t *data)
{
	char id[37], when[32];

	sl_uuid_v7(id);
	sl_time_rfc3339(when);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id", id,
	                 "source", source, "type", type, "time", when, "subject", subject,
	                 "datacontenttype", "application/json", "data", data);
}

char *sl_event_source(const char *role)
{
	char host[256] = "unknown";

	gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	return sl_asprintf("sluice/%s/%s", role, host);
}

bool sl_event_id_valid(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++) {
		char ch = s[n];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == ':'))
			return false;
	}
	return n > 0 && n <= SL_EVENT_MAX_ID;
}

/* Checks an optional (or required) id field of obj. */
static sl_status check_id(json_t *obj, const char *key, bool required, const char *where,
                          char *errbuf, size_t errsize)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v)) {
		if (required)
			return sl_err(errbuf, errsize, SL_INVALID, "%s: missing field %s", where,
			              key);
		return SL_OK;
	}
	if (!json_is_string(v) || !sl_event_id_valid(json_string_value(v)))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: field %s must be an id of 1-%d characters [A-Za-z0-9._:-]",
		              where, key, SL_EVENT_MAX_ID);
	return SL_OK;
}

static sl_status check_type(json_t *obj, const char *key, json_type type, bool required,
                            const char *where, char *errbuf, size_t errsize)
{
	static const char *names[] = {"an object", "an array",      "a string",      "an integer",
	                              "a number",  "true or false", "true or false", "null"};
	json_t *v = json_object_get(obj, key);

	if (!v || (json_is_null(v) && !required)) {
		if (required)
			return sl_err(errbuf, errsize, SL_INVALID, "%s: missing field %s", where,
			              key);
		return SL_OK;
	}
	if (type == JSON_TRUE ? !json_is_boolean(v) : json_typeof(v) != type)
		return sl_err(errbuf, errsize, SL_INVALID, "%s: field %s must be %s", where, key,
		              names[type]);
	return SL_OK;
}

static sl_status check_run_requested(json_t *d, char *errbuf, size_t errsize)
{
	const char *w = "data";
	sl_status st;
	json_t *input;

	if ((st = check_id(d, "run_id", false, w, errbuf, errsize)) ||
	    (st = check_id(d, "session_id", false, w, errbuf, errsize)) ||
	    (st = check_id(d, "agent_id", true, w, errbuf, errsize)) ||
	    (st = check_id(d, "user_id", false, w, errbuf, errsize)) ||
	    (st = check_type(d, "input", JSON_STRING, true, w, errbuf, errsize)))
		return st;
	input = json_object_get(d, "input");
	if (json_string_length(input) == 0)
		return sl_err(errbuf, errsize, SL_INVALID, "data: field input is empty");
	if (json_string_length(input) > SL_EVENT_MAX_INPUT)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "data: field input is longer than %d bytes", SL_EVENT_MAX_INPUT);
	return SL_OK;
}

static sl_status check_requirement(json_t *r, size_t i, char *errbuf, size_t errsize)
{
	char w[48];
	sl_status st;

	snprintf(w, sizeof(w), "data.requirements[%zu]", i);
	if (!json_is_object(r))
		return sl_err(errbuf, errsize, SL_INVALID, "%s must be an object", w);
	if ((st = check_id(r, "id", true, w, errbuf, errsize)) ||
	    (st = check_id(r, "tool_call_id", true, w, errbuf, errsize)) ||
	    (st = check_type(r, "tool_name", JSON_STRING, true, w, errbuf, errsize)) ||
	    (st = check_type(r, "tool_args", JSON_OBJECT, true, w, errbuf, errsize)) ||
	    (st = check_type(r, "needs_confirmation", JSON_TRUE, true, w, errbuf, errsize)) ||
	    (st = check_type(r, "needs_user_input", JSON_TRUE, true, w, errbuf, errsize)) ||
	    (st = check_type(r, "external_execution", JSON_TRUE, true, w, errbuf, errsize)) ||
	    (st = check_type(r, "approval_type", JSON_STRING, false, w, errbuf, errsize)))
		return st;
	return SL_OK;
}

static sl_status check_run_paused(json_t *d, char *errbuf, size_t errsize)
{
	const char *w = "data";
	sl_status st;
	json_t *reqs, *r;
	size_t i;

	if ((st = check_id(d, "run_id", true, w, errbuf, errsize)) ||
	    (st = check_id(d, "session_id", false, w, errbuf, errsize)) ||
	    (st = check_id(d, "agent_id", true, w, errbuf, errsize)) ||
	    (st = check_type(d, "requirements", JSON_ARRAY, true, w, errbuf, errsize)))
		return st;
	reqs = json_object_get(d, "requirements");
	if (json_array_size(reqs) == 0)
		return sl_err(errbuf, errsize, SL_INVALID, "data: requirements is empty");
	json_array_foreach (reqs, i, r) {
		if ((st = check_requirement(r, i, errbuf, errsize)))
			return st;
	}
	return SL_OK;
}

static sl_status check_run_continue(json_t *d, char *errbuf, size_t errsize)
{
	sl_status st;
	json_t *decs, *x;
	size_t i;

	if ((st = check_id(d, "run_id", true, "data", errbuf, errsize)) ||
	    (st = check_type(d, "decisions", JSON_ARRAY, true, "data", errbuf, errsize)))
		return st;
	decs = json_object_get(d, "decisions");
	if (json_array_size(decs) == 0)
		return sl_err(errbuf, errsize, SL_INVALID, "data: decisions is empty");
	json_array_foreach (decs, i, x) {
		char w[48];

		snprintf(w, sizeof(w), "data.decisions[%zu]", i);
		if (!json_is_object(x))
			return sl_err(errbuf, errsize, SL_INVALID, "%s must be an object", w);
		if ((st = check_id(x, "requirement_id", true, w, errbuf, errsize)) ||
		    (st = check_type(x, "confirmed", JSON_TRUE, true, w, errbuf, errsize)))
			return st;
	}
	return SL_OK;
}

static sl_status check_run_result(json_t *d, char *errbuf, size_t errsize)
{
	sl_status st;

	if ((st = check_id(d, "run_id", true, "data", errbuf, errsize)) ||
	    (st = check_type(d, "status", JSON_STRING, true, "data", errbuf, errsize)))
		return st;
	return SL_OK;
}

sl_status sl_event_parse(const char *buf, size_t len, const char *const *types, sl_event *ev,
                         char *errbuf, size_t errsize)
{
	static const char *required[] = {"specversion", "id", "source", "type"};
	json_error_t jerr;
	json_t *root, *data;
	const char *type;
	sl_status st;
	bool known = false;

	memset(ev, 0, sizeof(*ev));
	if (len > SL_EVENT_MAX_BYTES)
		return sl_err(errbuf, errsize, SL_TOO_BIG,
		              "message of %zu bytes is over the %d byte limit", len,
		              SL_EVENT_MAX_BYTES);
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "malformed JSON at line %d column %d: %s", jerr.line, jerr.column,
		              jerr.text);
	if (!json_is_object(root)) {
		st = sl_err(errbuf, errsize, SL_INVALID, "event is not a JSON object");
		goto fail;
	}
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		json_t *v = json_object_get(root, required[i]);
		if (!json_is_string(v) || json_string_length(v) == 0) {
			st = sl_err(errbuf, errsize, SL_INVALID, "event: missing or empty field %s",
			            required[i]);
			goto fail;
		}
	}
	if (strcmp(json_string_value(json_object_get(root, "specversion")), "1.0")) {
		st = sl_err(errbuf, errsize, SL_INVALID, "event: specversion must be \"1.0\"");
		goto fail;
	}
	if (!sl_event_id_valid(json_string_value(json_object_get(root, "id")))) {
		st = sl_err(errbuf, errsize, SL_INVALID, "event: id is not a valid id");
		goto fail;
	}
	type = json_string_value(json_object_get(root, "type"));
	for (const char *const *t = types; *t && !known; t++)
		known = !strcmp(*t, type);
	if (!known) {
		st = sl_err(errbuf, errsize, SL_INVALID, "event: unexpected type \"%.64s\"", type);
		goto fail;
	}
	data = json_object_get(root, "data");
	if (!json_is_object(data)) {
		st = sl_err(errbuf, errsize, SL_INVALID, "event: data must be an object");
		goto fail;
	}
	if (!strcmp(type, SL_EVENT_RUN_REQUESTED))
		st = check_run_requested(data, errbuf, errsize);
	else if (!strcmp(type, SL_EVENT_RUN_PAUSED))
		st = check_run_paused(data, errbuf, errsize);
	else if (!strcmp(type, SL_EVENT_RUN_CONTINUE))
		st = check_run_continue(data, errbuf, errsize);
	else
		st = check_run_result(data, errbuf, errsize);
	if (st)
		goto fail;
	ev->root = root;
	ev->id = json_string_value(json_object_get(root, "id"));
	ev->type = type;
	ev->subject = json_string_value(json_object_get(root, "subject"));
	ev->data = data;
	return SL_OK;
fail:
	json_decref(root);
	return st;
}

void sl_event_clear(sl_event *ev)
{
	json_decref(ev->root);
	memset(ev, 0, sizeof(*ev));
}
