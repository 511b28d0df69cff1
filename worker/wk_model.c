/*
 * wk_model.c - model requests and answers.
 */
#include "wk_model.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static json_t *tool_parameters(const sl_tool *t)
{
	if (t->parameters)
		return json_incref(t->parameters);
	return json_pack("{s:s, s:{}}", "type", "object", "properties");
}

json_t *wk_model_responses_request(const sl_agent *agent, const json_t *items)
{
	json_t *tools = json_array();
	json_t *req;

	for (size_t i = 0; i < agent->ntools; i++) {
		const sl_tool *t = &agent->tools[i];
		json_array_append_new(tools,
		                      json_pack("{s:s, s:s, s:s, s:o}", "type", "function", "name",
		                                t->name, "description", t->description,
		                                "parameters", tool_parameters(t)));
	}
	req = json_pack("{s:s, s:O, s:b}", "model", agent->model_id, "input", items, "store", 0);
	if (json_array_size(tools))
		json_object_set_new(req, "tools", tools);
	else
		json_decref(tools);
	if (agent->instructions)
		json_object_set_new(req, "instructions", json_string(agent->instructions));
	return req;
}

/* The text of a user message item: a string or input_text parts. */
static json_t *message_text(const json_t *content)
{
	json_t *part;
	size_t i;
	sl_buf b;
	json_t *out;

	if (json_is_string(content))
		return json_incref((json_t *)content);
	sl_buf_init(&b, WK_MODEL_MAX_RESPONSE); /* no longer than the answer it is from */
	json_array_foreach (content, i, part) {
		const char *t = json_string_value(json_object_get(part, "text"));
		if (t)
			sl_buf_append(&b, t, strlen(t));
	}
	out = json_string(b.data ? b.data : "");
	sl_buf_free(&b);
	return out;
}

json_t *wk_model_chat_request(const sl_agent *agent, const json_t *items)
{
	json_t *msgs = json_array(), *tools = json_array(), *item, *pending_calls = NULL;
	json_t *req;
	size_t i;

	if (agent->instructions)
		json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content",
		                                      agent->instructions));
	json_array_foreach (items, i, item) {
		const char *type = json_string_value(json_object_get(item, "type"));
		const char *role = json_string_value(json_object_get(item, "role"));

		if (type && !strcmp(type, "function_call")) {
			/* consecutive calls become one assistant message */
			if (!pending_calls) {
				pending_calls = json_array();
				json_array_append_new(msgs, json_pack("{s:s, s:n, s:O}", "role",
				                                      "assistant", "content",
				                                      "tool_calls", pending_calls));
				json_decref(pending_calls);
			}
			json_array_append_new(pending_calls,
			                      json_pack("{s:O, s:s, s:{s:O, s:O}}", "id",
			                                json_object_get(item, "call_id"), "type",
			                                "function", "function", "name",
			                                json_object_get(item, "name"), "arguments",
			                                json_object_get(item, "arguments")));
			continue;
		}
		pending_calls = NULL;
		if (type && !strcmp(type, "function_call_output"))
			json_array_append_new(
			    msgs, json_pack("{s:s, s:O, s:O}", "role", "tool", "tool_call_id",
			                    json_object_get(item, "call_id"), "content",
			                    json_object_get(item, "output")));
		else if (role)
			json_array_append_new(
			    msgs, json_pack("{s:s, s:o}", "role", role, "content",
			                    message_text(json_object_get(item, "content"))));
	}
	for (size_t k = 0; k < agent->ntools; k++) {
		const sl_tool *t = &agent->tools[k];
		json_array_append_new(tools,
		                      json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "function",
		                                "function", "name", t->name, "description",
		                                t->description, "parameters", tool_parameters(t)));
	}
	req = json_pack("{s:s, s:o}", "model", agent->model_id, "messages", msgs);
	if (json_array_size(tools))
		json_object_set_new(req, "tools", tools);
	else
		json_decref(tools);
	return req;
}

static void reply_init(wk_model_reply *r)
{
	r->items = json_array();
	r->calls = json_array();
	r->text = NULL;
}

static sl_status add_call(wk_model_reply *r, const char *call_id, const char *name,
                          const char *arguments, char *errbuf, size_t errsize)
{
	json_t *call;

	if (!call_id || !*call_id || !name || !*name || !arguments)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "model answer: a function call lacks call_id, name or arguments");
	call = json_pack("{s:s, s:s, s:s, s:s}", "type", "function_call", "call_id", call_id,
	                 "name", name, "arguments", arguments);
	json_array_append(r->items, call);
	json_array_append_new(r->calls, call);
	return SL_OK;
}

static void add_text(wk_model_reply *r, sl_buf *text)
{
	if (text->len)
		json_array_append_new(r->items,
		                      json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "type", "message",
		                                "role", "assistant", "content", "type",
		                                "output_text", "text", text->data));
	r->text = sl_buf_steal(text);
}

sl_status wk_model_responses_decode(const json_t *body, wk_model_reply *reply, char *errbuf,
                                    size_t errsize)
{
	json_t *output = json_object_get(body, "output"), *item;
	sl_status st = SL_OK;
	size_t i;
	sl_buf text;

	reply_init(reply);
	sl_buf_init(&text, WK_MODEL_MAX_RESPONSE);
	if (!json_is_array(output)) {
		st = sl_err(errbuf, errsize, SL_INVALID, "model answer: no output array");
		goto out;
	}
	json_array_foreach (output, i, item) {
		const char *type = json_string_value(json_object_get(item, "type"));

		if (!type)
			continue;
		if (!strcmp(type, "function_call")) {
			st = add_call(reply, json_string_value(json_object_get(item, "call_id")),
			              json_string_value(json_object_get(item, "name")),
			              json_string_value(json_object_get(item, "arguments")), errbuf,
			              errsize);
			if (st)
				goto out;
		} else if (!strcmp(type, "message")) {
			json_t *part;
			size_t k;
			json_array_foreach (json_object_get(item, "content"), k, part) {
				const char *t = json_string_value(json_object_get(part, "text"));
				if (t)
					sl_buf_append(&text, t, strlen(t));
			}
		}
		/* reasoning and other items are not kept: store=false */
	}
out:
	add_text(reply, &text);
	if (st)
		wk_model_reply_free(reply);
	return st;
}

sl_status wk_model_chat_decode(const json_t *body, wk_model_reply *reply, char *errbuf,
                               size_t errsize)
{
	json_t *msg =
	    json_object_get(json_array_get(json_object_get(body, "choices"), 0), "message");
	json_t *calls = json_object_get(msg, "tool_calls"), *c;
	const char *content = json_string_value(json_object_get(msg, "content"));
	sl_status st = SL_OK;
	size_t i;
	sl_buf text;

	reply_init(reply);
	sl_buf_init(&text, WK_MODEL_MAX_RESPONSE);
	if (!json_is_object(msg)) {
		st = sl_err(errbuf, errsize, SL_INVALID, "model answer: no choices[0].message");
		goto out;
	}
	if (content)
		sl_buf_append(&text, content, strlen(content));
	json_array_foreach (calls, i, c) {
		json_t *fn = json_object_get(c, "function");
		st = add_call(reply, json_string_value(json_object_get(c, "id")),
		              json_string_value(json_object_get(fn, "name")),
		              json_string_value(json_object_get(fn, "arguments")), errbuf, errsize);
		if (st)
			goto out;
	}
out:
	add_text(reply, &text);
	if (st)
		wk_model_reply_free(reply);
	return st;
}

/* True when url is https, or http to a loopback host. */
static bool url_keeps_secrets(const char *url)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	bool ok = false;

	if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
		ok = !strcasecmp(scheme, "https") ||
		     (!strcasecmp(scheme, "http") &&
		      (!strcasecmp(host, "localhost") || !strncmp(host, "127.", 4) ||
		       !strcmp(host, "[::1]")));
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return ok;
}

sl_status wk_model_prepare(const sl_config *cfg, sl_agents *agents, char *errbuf, size_t errsize)
{
	for (size_t i = 0; i < agents->n; i++) {
		sl_agent *a = &agents->agents[i];
		const char *key = cfg->openai_api_key;
		const char *base = a->base_url ? a->base_url : cfg->openai_base_url;

		if (a->api_key_env && !(key = getenv(a->api_key_env)))
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "agent %s: field model.api_key_env names %s, which is not set", a->id,
			    a->api_key_env);
		if (key && *key && !a->allow_plain_http && !url_keeps_secrets(base))
			return sl_err(
			    errbuf, errsize, SL_INVALID,
			    "agent %s: field model.base_url: the API key would go in clear "
			    "text to %s; use https, or set model.allow_plain_http",
			    a->id, base);
		free(a->api_key);
		a->api_key = key && *key ? sl_strdup(key) : NULL;
	}
	return SL_OK;
}

void wk_model_request_build(const sl_config *cfg, const sl_agent *agent, const json_t *items,
                            wk_model_request *req)
{
	bool chat = agent->provider == SL_PROVIDER_CHAT;
	const char *base = agent->base_url ? agent->base_url : cfg->openai_base_url;
	json_t *body =
	    chat ? wk_model_chat_request(agent, items) : wk_model_responses_request(agent, items);

	memset(req, 0, sizeof(*req));
	req->url = sl_asprintf("%s%s", base, chat ? "/chat/completions" : "/responses");
	req->auth = agent->api_key ? sl_asprintf("Authorization: Bearer %s", agent->api_key) : NULL;
	req->headers[0] = "Content-Type: application/json";
	req->headers[1] = req->auth;
	req->headers[2] = NULL;
	req->body = json_dumps(body, JSON_COMPACT);
	json_decref(body);
}

void wk_model_request_free(wk_model_request *req)
{
	free(req->url);
	free(req->body);
	free(req->auth);
	memset(req, 0, sizeof(*req));
}

sl_status wk_model_answer(const sl_agent *agent, long status, const char *body, size_t len,
                          wk_model_reply *reply, char *errbuf, size_t errsize)
{
	json_error_t jerr;
	json_t *answer;
	sl_status st;

	memset(reply, 0, sizeof(*reply));
	if (status == 429 || status >= 500)
		return sl_err(errbuf, errsize, SL_RETRY, "model answered HTTP %ld", status);
	if (status < 200 || status > 299)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "model refused the request: HTTP %ld: %.200s", status, body);
	answer = json_loadb(body, len, 0, &jerr);
	if (!answer)
		return sl_err(errbuf, errsize, SL_INVALID, "model answer is not JSON: %s",
		              jerr.text);
	st = agent->provider == SL_PROVIDER_CHAT
	         ? wk_model_chat_decode(answer, reply, errbuf, errsize)
	         : wk_model_responses_decode(answer, reply, errbuf, errsize);
	json_decref(answer);
	return st;
}

void wk_model_reply_free(wk_model_reply *reply)
{
	json_decref(reply->items);
	json_decref(reply->calls);
	free(reply->text);
	memset(reply, 0, sizeof(*reply));
}
