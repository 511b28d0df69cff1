/*
 * wk_tool.h - tool executors: a command (no shell; JSON arguments on stdin,
 * the result on stdout) or an HTTP endpoint (JSON arguments POSTed with an
 * Idempotency-Key).
 */
#ifndef WK_TOOL_H
#define WK_TOOL_H

#include "sl_agents.h"
#include "sl_common.h"

#include <jansson.h>

/* Largest tool result kept. */
#define WK_TOOL_MAX_OUTPUT (1024 * 1024)

/*
 * Runs tool t with args. On SL_OK *result (free() it) is what the model is
 * told: the tool's output, or an "error: ..." text when the tool failed,
 * timed out or wrote more than WK_TOOL_MAX_OUTPUT. Returns SL_FATAL only
 * when the tool could not be started at all.
 */
sl_status wk_tool_execute(const sl_tool *t, const char *run_id, const char *call_id,
                          const json_t *args, char **result, char *errbuf, size_t errsize);

/* Checks at start-up that every command tool's program exists and can be
 * run; the error names the agent, the tool and the field. */
sl_status wk_tool_check(const sl_agents *agents, char *errbuf, size_t errsize);

#endif
