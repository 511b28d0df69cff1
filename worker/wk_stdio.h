/*
 * wk_stdio.h - tools served by a long-running process ("executor": {"kind":
 * "stdio"}): the worker starts one process per such tool and keeps it; each
 * call is one JSON line on the process's stdin,
 *
 *   {"id": 17, "tool": "NAME", "run_id": "...", "tool_call_id": "...",
 *    "arguments": {...}}
 *
 * and its answer one JSON line on its stdout, in any order,
 *
 *   {"id": 17, "result": "text the model is told"}   or
 *   {"id": 17, "error": "why it failed"}.
 *
 * Many calls are in flight at once; one thread does all the I/O, so a call
 * waiting for its answer holds no thread and costs no process start. A
 * process that exits fails the calls it had (they are not sent again: a
 * claimed tool runs at most once) and is started again, at most once a
 * second. Answers that are not such lines are logged and ignored; a call
 * with no answer in the tool's timeout_ms fails.
 */
#ifndef WK_STDIO_H
#define WK_STDIO_H

#include "sl_agents.h"
#include "sl_common.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct wk_stdio wk_stdio;

/* The end of a call: result (the callee's to free) is what the model is
 * told - the answer, or an "error: ..." text. Runs on the I/O thread and
 * must return quickly. */
typedef void (*wk_stdio_cb)(void *arg, char *result);

/* Starts a process for each stdio tool of agents and the I/O thread (none
 * when there is no such tool). drop(arg) is called for each call still in
 * flight when it stops. Returns NULL with the reason in errbuf. */
wk_stdio *wk_stdio_start(const sl_agents *agents, void (*drop)(void *arg), char *errbuf,
                         size_t errsize);

/* Sends tool (an SL_EXEC_STDIO tool of the agents given to start) a call
 * with args, and calls cb(arg, result) on the I/O thread when it ends.
 * Returns false only when s is stopping: the caller still owns arg. */
bool wk_stdio_call(wk_stdio *s, const sl_tool *tool, const char *run_id, const char *call_id,
                   const json_t *args, wk_stdio_cb cb, void *arg);

/* The answer line's meaning for a call of tool: the result, an "error: ..."
 * text, or NULL when line is not an answer; *id is the call it answers.
 * Exposed for the fuzz target. */
char *wk_stdio_decode(const sl_tool *tool, const char *line, size_t len, long long *id);

/* Feeds n bytes of a process's stdout into the line buffer b (its limit
 * is the longest line kept) and calls line(ctx, text, len) for each whole
 * line, without its newline; a longer line is skipped to its end
 * (*skipping) and given as text NULL. Exposed for the fuzz target. */
void wk_stdio_feed(sl_buf *b, bool *skipping, const char *data, size_t n,
                   void (*line)(void *ctx, const char *text, size_t len), void *ctx);

/* Stops the thread and the processes (SIGTERM; SIGKILL after a second).
 * Calls still in flight go to drop(). Frees s; NULL is fine. */
void wk_stdio_stop(wk_stdio *s);

#endif
