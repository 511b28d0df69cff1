/*
 * wk_tool.h - tool executors: a command (no shell; JSON arguments on stdin,
 * the result on stdout), run here on a tool thread, and the meaning of an
 * HTTP endpoint's answer (the POST itself goes through wk_fetch). The
 * "stdio" executor is wk_stdio.h.
 */
#ifndef WK_TOOL_H
#define WK_TOOL_H

#include "sl_agents.h"
#include "sl_common.h"
#include "wk_fetch.h"

#include <jansson.h>

/* Largest tool result kept. */
#define WK_TOOL_MAX_OUTPUT (1024 * 1024)

/*
 * Runs command tool t with args (blocking). The process must ignore SIGPIPE
 * (a tool may exit without reading its input). On SL_OK *result (free() it) is
 * what the model is told: the tool's output, or an "error: ..." text when
 * the tool failed, timed out or wrote more than WK_TOOL_MAX_OUTPUT. Returns
 * SL_FATAL only when the tool could not be started at all.
 */
sl_status wk_tool_run_command(const sl_tool *t, const json_t *args, char **result, char *errbuf,
                              size_t errsize);

/* What the model is told for http tool t's answer: the 2xx body (taken
 * from res->body), or an "error: ..." text for another status, an answer
 * over WK_TOOL_MAX_OUTPUT, or no answer: the tool could not be reached
 * (nothing was sent), or, once the request had gone out, it may or may not
 * have acted. */
char *wk_tool_http_result(const sl_tool *t, wk_fetch_result *res);

/*
 * Makes the calling process (the worker) unreadable by the tools it starts:
 * they run as its user, who could otherwise read its environment and
 * memory (/proc/PID/environ, /proc/PID/mem, ptrace). Only root still can.
 */
void wk_tool_shield_worker(void);

/* The environment a tool process starts with: what wk_tool_prepare made
 * of executor.env, or nothing at all for a tool it did not prepare. */
static inline char **wk_tool_envp(const sl_tool *t)
{
	static char *none[] = {NULL};

	return t->envp ? t->envp : none;
}

/*
 * At start-up: checks that every command and stdio tool's program exists
 * and can be run, and makes each tool's environment (t->envp: only what
 * executor.env names, never the worker's own) and an http tool's header
 * lines (t->header_lines, ${VAR}s filled from the worker's environment).
 * A failure names the agent, the tool and the field, never a value.
 */
sl_status wk_tool_prepare(sl_agents *agents, char *errbuf, size_t errsize);

#endif
