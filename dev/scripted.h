/*
 * scripted.h - the scripted model's answers: a deterministic stand-in for
 * an OpenAI-compatible model (DESIGN.md, "Development stack").
 */
#ifndef DV_SCRIPTED_H
#define DV_SCRIPTED_H

#include "sl_common.h"

#include <jansson.h>

/* The largest request body the scripted model takes; no text made from one
 * is longer. */
#define DV_SCRIPTED_MAX_BODY (8 * 1024 * 1024)

/*
 * Answers one request body of the Responses API (chat = false) or of Chat
 * Completions (chat = true). Returns a new response object, or NULL with the
 * reason in errbuf when the request is malformed (answered 400).
 */
json_t *dv_scripted_answer(bool chat, const json_t *req, char *errbuf, size_t errsize);

/* Finds the first [A-Za-z]+-[0-9]+ token of s; returns its length and sets
 * *start, or returns 0 when there is none. */
size_t dv_id_token(const char *s, const char **start);

#endif
