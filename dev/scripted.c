/*
 * scripted.c - the scripted model's rules:
 * - last input is the user's message: "call TOOL {JSON}" lines call exactly
 *   those tools; otherwise the first tool is called with each required string
 *   parameter set to the message's first ID-like token (or the whole
 *   message); with no tools the answer echoes the message;
 * - last inputs are tool results: "Done: " + the outputs joined with "; ",
 *   unless an output holds "call TOOL {JSON}" lines: then those tools are
 *   called, so tests can script runs of several turns.
 */
#include "scripted.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

size_t dv_id_token(const char *s, const char **start)
{
	for (size_t i = 0; s[i]; i++) {
		size_t j = i, k;

		if (!isalpha((unsigned char)s[i]) || (i > 0 && isalpha((unsigned char)s[i - 1])))
			continue;
		while (isalpha((unsigned char)s[j]))
			j++;
		if (s[j] != '-' || !isdigit((unsigned char)s[j + 1]))
			continue;
		k = j + 1;
		while (isdigit((unsigned char)s[k]))
			k++;
		*start = s + i;
		return k - i;
	}
	return 0;
}

/* A call id that is the same for the same conversation, so a request that is
 * repeated after a crash gets the same ids. */
static char *call_id(const json_t *req, size_t index)
{
	char *dump = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[17];
	char *seed = sl_asprintf("%s#%zu", dump ? dump : "", index);

	EVP_Digest(seed, strlen(seed), md, &mdlen, EVP_sha256(), NULL);
	for (int i = 0; i < 8; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	free(seed);
	free(dump);
	return sl_asprintf("call_%s", hex);
}

static const char *content_text(const json_t *content, sl_buf *b)
{
	json_t *part;
	size_t i;

	if (json_is_string(content))
		return json_string_value(content);
	json_array_foreach (content, i, part) {
		const char *t = json_string_value(json_object_get(part, "text"));
		if (t)
			sl_buf_append(b, t, strlen(t));
	}
	return b->data ? b->data : "";
}

/* Tool definitions as {name, parameters} pairs, whatever the API. */
static json_t *tool_list(bool chat, const json_t *req)
{
	json_t *out = json_array(), *t;
	size_t i;

	json_array_foreach (json_object_get(req, "tools"), i, t) {
		json_t *fn = chat ? json_object_get(t, "function") : t;
		const char *name = json_string_value(json_object_get(fn, "name"));
		json_t *params = json_object_get(fn, "parameters");
		if (name)
			json_array_append_new(
			    out, json_pack("{s:s, s:O?}", "name", name, "parameters", params));
	}
	return out;
}

/* Parses the "call TOOL {JSON}" lines of text into [{name, arguments}]. */
static json_t *scripted_calls(const char *text)
{
	json_t *calls = json_array();
	const char *line = text;

	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		char *l = sl_strndup(line, len);
		char *p = l;

		while (isspace((unsigned char)*p))
			p++;
		if (!strncmp(p, "call ", 5)) {
			char *name = p + 5, *args;
			while (*name == ' ')
				name++;
			args = name;
			while (*args && !isspace((unsigned char)*args))
				args++;
			if (*args)
				*args++ = '\0';
			while (isspace((unsigned char)*args))
				args++;
			json_t *parsed = json_loads(*args ? args : "{}", 0, NULL);
			if (*name && json_is_object(parsed)) {
				char *a = json_dumps(parsed, JSON_COMPACT);
				json_array_append_new(
				    calls, json_pack("{s:s, s:s}", "name", name, "arguments", a));
				free(a);
			}
			json_decref(parsed);
		}
		free(l);
		line = end ? end + 1 : NULL;
	}
	return calls;
}

/* The call of the first tool, required string parameters filled in. */
static json_t *default_call(const json_t *tool, const char *text)
{
	json_t *params = json_object_get(tool, "parameters");
	json_t *props = json_object_get(params, "properties");
	json_t *args = json_object(), *r;
	const char *tok = NULL;
	size_t toklen = dv_id_token(text, &tok), i;
	char *a;
	json_t *call;

	json_array_foreach (json_object_get(params, "required"), i, r) {
		const char *name = json_string_value(r);
		const char *type =
		    json_string_value(json_object_get(json_object_get(props, name), "type"));
		if (name && (!type || !strcmp(type, "string")))
			json_object_set_new(args, name,
			                    toklen ? json_stringn(tok, toklen) : json_string(text));
	}
	a = json_dumps(args, JSON_COMPACT);
	call = json_pack("{s:O, s:s}", "name", json_object_get(tool, "name"), "arguments", a);
	free(a);
	json_decref(args);
	return call;
}

static json_t *responses_answer(const json_t *req, json_t *calls, const char *text)
{
	json_t *output = json_array(), *c;
	size_t i;

	json_array_foreach (calls, i, c) {
		char *id = call_id(req, i);
		json_array_append_new(
		    output,
		    json_pack("{s:s, s:s, s:s, s:O, s:O, s:s}", "type", "function_call", "id", id,
		              "call_id", id, "name", json_object_get(c, "name"), "arguments",
		              json_object_get(c, "arguments"), "status", "completed"));
		free(id);
	}
	if (text)
		json_array_append_new(output,
		                      json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:[]}]}",
		                                "type", "message", "id", "msg_scripted", "status",
		                                "completed", "role", "assistant", "content", "type",
		                                "output_text", "text", text, "annotations"));
	return json_pack(
	    "{s:s, s:s, s:I, s:s, s:O, s:o}", "id", "resp_scripted", "object", "response",
	    "created_at", (json_int_t)time(NULL), "status", "completed", "model",
	    json_object_get(req, "model") ? json_object_get(req, "model") : json_null(), "output",
	    output);
}

static json_t *chat_answer(const json_t *req, json_t *calls, const char *text)
{
	json_t *tool_calls = json_array(), *c, *msg;
	size_t i;

	json_array_foreach (calls, i, c) {
		char *id = call_id(req, i);
		json_array_append_new(tool_calls, json_pack("{s:s, s:s, s:{s:O, s:O}}", "id", id,
		                                            "type", "function", "function", "name",
		                                            json_object_get(c, "name"), "arguments",
		                                            json_object_get(c, "arguments")));
		free(id);
	}
	msg = json_pack("{s:s, s:s?}", "role", "assistant", "content", text);
	if (!text)
		json_object_set_new(msg, "content", json_null());
	if (json_array_size(tool_calls))
		json_object_set(msg, "tool_calls", tool_calls);
	json_decref(tool_calls);
	return json_pack(
	    "{s:s, s:s, s:I, s:O, s:[{s:i, s:o, s:s}]}", "id", "chatcmpl-scripted", "object",
	    "chat.completion", "created", (json_int_t)time(NULL), "model",
	    json_object_get(req, "model") ? json_object_get(req, "model") : json_null(), "choices",
	    "index", 0, "message", msg, "finish_reason", text ? "stop" : "tool_calls");
}

json_t *dv_scripted_answer(bool chat, const json_t *req, char *errbuf, size_t errsize)
{
	json_t *input = json_object_get(req, chat ? "messages" : "input");
	json_t *tools, *calls = NULL, *last, *answer = NULL;
	const char *user_text = NULL;
	char *text = NULL;
	sl_buf b, done;
	size_t n;

	sl_buf_init(&b, DV_SCRIPTED_MAX_BODY);
	sl_buf_init(&done, DV_SCRIPTED_MAX_BODY);
	if (!json_is_object(req)) {
		sl_err(errbuf, errsize, SL_INVALID, "request body must be a JSON object");
		return NULL;
	}
	if (!chat && json_is_string(input)) {
		user_text = json_string_value(input);
	} else if (json_is_array(input) && (n = json_array_size(input)) > 0) {
		const char *type, *role;

		last = json_array_get(input, n - 1);
		type = json_string_value(json_object_get(last, "type"));
		role = json_string_value(json_object_get(last, "role"));
		if ((!chat && type && !strcmp(type, "function_call_output")) ||
		    (chat && role && !strcmp(role, "tool"))) {
			/* trailing tool results */
			size_t first = n;
			while (first > 0) {
				json_t *it = json_array_get(input, first - 1);
				const char *t = json_string_value(json_object_get(it, "type"));
				const char *r = json_string_value(json_object_get(it, "role"));
				if (chat ? !(r && !strcmp(r, "tool"))
				         : !(t && !strcmp(t, "function_call_output")))
					break;
				first--;
			}
			sl_buf_append(&done, "Done: ", 6);
			for (size_t i = first; i < n; i++) {
				json_t *it = json_array_get(input, i);
				sl_buf out;
				const char *o;
				sl_buf_init(&out, DV_SCRIPTED_MAX_BODY);
				o = content_text(json_object_get(it, chat ? "content" : "output"),
				                 &out);
				if (i > first)
					sl_buf_append(&done, "; ", 2);
				sl_buf_append(&done, o, strlen(o));
				sl_buf_free(&out);
			}
			/* A tool result holding "call TOOL {JSON}" lines scripts the next
			 * turn: those tools are called (multi-turn runs in tests). */
			calls = scripted_calls(done.data);
			if (json_array_size(calls) == 0)
				text = sl_buf_steal(&done);
			else
				user_text = ""; /* answered with the calls below */
		} else if (role && !strcmp(role, "user")) {
			user_text = content_text(json_object_get(last, "content"), &b);
		}
	}
	if (!text && !user_text) {
		sl_err(errbuf, errsize, SL_INVALID,
		       "the last input must be a user message or tool results");
		goto out;
	}
	tools = tool_list(chat, req);
	if (!text && !calls) {
		calls = scripted_calls(user_text);
		if (json_array_size(calls) == 0 && json_array_size(tools) > 0)
			json_array_append_new(calls,
			                      default_call(json_array_get(tools, 0), user_text));
		if (json_array_size(calls) == 0)
			text = sl_strdup(user_text);
	}
	json_decref(tools);
	answer = chat ? chat_answer(req, calls, text) : responses_answer(req, calls, text);
out:
	json_decref(calls);
	free(text);
	sl_buf_free(&b);
	sl_buf_free(&done);
	return answer;
}
