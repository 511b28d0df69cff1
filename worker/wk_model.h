/*
 * wk_model.h - one model turn over the OpenAI HTTP API (Responses or Chat
 * Completions). The conversation is kept as Responses API input items in
 * both cases, so a run's stored messages have one shape.
 */
#ifndef WK_MODEL_H
#define WK_MODEL_H

#include "sl_agents.h"
#include "sl_common.h"
#include "sl_config.h"

#include <jansson.h>

/* Largest model response body accepted. */
#define WK_MODEL_MAX_RESPONSE (8 * 1024 * 1024)

typedef struct wk_model_reply {
	json_t *items; /* output items to append to the conversation */
	json_t *calls; /* the function_call items among them, in order */
	char *text;    /* the assistant's text, "" when none */
} wk_model_reply;

/* Longest a model call may take. */
#define WK_MODEL_TIMEOUT_MS 300000

/* One model turn, ready to POST: url, headers (NULL-terminated) and body. */
typedef struct wk_model_request {
	char *url;
	char *body;
	const char *headers[3];
	char *auth; /* the Authorization header, when a key is set */
} wk_model_request;

/*
 * At start-up: each agent's API key, from model.api_key_env (an error when
 * that variable is not set) or else OPENAI_API_KEY (cfg); and a key is not
 * to go over plain http to a host other than loopback unless the agent
 * says model.allow_plain_http. Errors name the agent and the field.
 */
sl_status wk_model_prepare(const sl_config *cfg, sl_agents *agents, char *errbuf, size_t errsize);

/*
 * Builds the request of one turn: the conversation items (Responses API
 * input items) with the agent's instructions and tools, for the agent's
 * API. Free it with wk_model_request_free (body may be taken: set it to
 * NULL).
 */
void wk_model_request_build(const sl_config *cfg, const sl_agent *agent, const json_t *items,
                            wk_model_request *req);
void wk_model_request_free(wk_model_request *req);

/*
 * Decodes the model's HTTP answer (status, body of len bytes) into reply
 * (free it with wk_model_reply_free). Returns SL_RETRY for 429 and 5xx,
 * SL_INVALID for a refused request or an answer that cannot be decoded.
 */
sl_status wk_model_answer(const sl_agent *agent, long status, const char *body, size_t len,
                          wk_model_reply *reply, char *errbuf, size_t errsize);

void wk_model_reply_free(wk_model_reply *reply);

/* Exposed for tests: request bodies and answer decoding of each API. */
json_t *wk_model_responses_request(const sl_agent *agent, const json_t *items);
json_t *wk_model_chat_request(const sl_agent *agent, const json_t *items);
sl_status wk_model_responses_decode(const json_t *body, wk_model_reply *reply, char *errbuf,
                                    size_t errsize);
sl_status wk_model_chat_decode(const json_t *body, wk_model_reply *reply, char *errbuf,
                               size_t errsize);

#endif
