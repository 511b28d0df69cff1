/*
 * wk_tool.c - running tools.
 */
#include "wk_tool.h"
#include "sl_log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Largest header line an http tool may send. */
#define MAX_HEADER_LINE 8192

/* The tool's environment: executor.env's NAME=value pairs as they are, and
 * its names with their values in the worker's environment (a name that is
 * not set there is left out, said in the log). */
static char **make_envp(const char *agent, const sl_tool *t)
{
	size_t n = json_array_size(t->env), k = 0, i;
	char **envp = sl_calloc(n + 1, sizeof(char *));
	json_t *e;

	json_array_foreach (t->env, i, e) {
		const char *v = json_string_value(e), *val;

		if (strchr(v, '='))
			envp[k++] = sl_strdup(v);
		else if ((val = getenv(v)))
			envp[k++] = sl_asprintf("%s=%s", v, val);
		else
			sl_info("agent %s: tool %s: executor.env names %s, which the worker's "
			        "environment does not set; the tool does not get it",
			        agent, t->name, v);
	}
	return envp;
}

/* "Name: value" with each ${VAR} of the value taken from the worker's
 * environment; NULL (errbuf names the field) for an unset variable or a
 * value that would not stay one line. */
static char *header_line(const char *where, const char *name, const char *tmpl, char *errbuf,
                         size_t errsize)
{
	sl_buf b;
	const char *p = tmpl, *open, *close, *val;

	sl_buf_init(&b, MAX_HEADER_LINE);
	sl_buf_append(&b, name, strlen(name));
	sl_buf_append(&b, ": ", 2);
	while ((open = strstr(p, "${")) && (close = strchr(open + 2, '}'))) {
		char var[256];
		size_t n = (size_t)(close - open - 2);

		if (!sl_env_name_valid(open + 2, n) || n >= sizeof(var)) {
			sl_err(errbuf, errsize, SL_INVALID,
			       "%s: field executor.headers.%s: ${...} must name an environment "
			       "variable",
			       where, name);
			goto fail;
		}
		memcpy(var, open + 2, n);
		var[n] = '\0';
		if (!(val = getenv(var))) {
			sl_err(errbuf, errsize, SL_INVALID,
			       "%s: field executor.headers.%s names %s, which is not set", where,
			       name, var);
			goto fail;
		}
		if (strpbrk(val, "\r\n")) {
			sl_err(errbuf, errsize, SL_INVALID,
			       "%s: field executor.headers.%s: the value of %s is not one line",
			       where, name, var);
			goto fail;
		}
		if (sl_buf_append(&b, p, (size_t)(open - p)) || sl_buf_append(&b, val, strlen(val)))
			goto too_big;
		p = close + 1;
	}
	if (sl_buf_append(&b, p, strlen(p)))
		goto too_big;
	return sl_buf_steal(&b);
too_big:
	sl_err(errbuf, errsize, SL_INVALID, "%s: field executor.headers.%s is over %d bytes", where,
	       name, MAX_HEADER_LINE);
fail:
	sl_buf_free(&b);
	return NULL;
}

static sl_status prepare_headers(const char *where, sl_tool *t, char *errbuf, size_t errsize)
{
	const char *name;
	size_t k = 0;
	json_t *v;

	t->header_lines = sl_calloc(json_object_size(t->headers) + 1, sizeof(char *));
	json_object_foreach (t->headers, name, v) {
		t->header_lines[k] =
		    header_line(where, name, json_string_value(v), errbuf, errsize);
		if (!t->header_lines[k++])
			return SL_INVALID;
	}
	return SL_OK;
}

void wk_tool_shield_worker(void)
{
	/* not dumpable: /proc/PID/ of the worker is root's, and no process of
	 * its user may ptrace it */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0))
		sl_warn("cannot shield the worker from its tools: %s", strerror(errno));
}

sl_status wk_tool_prepare(sl_agents *agents, char *errbuf, size_t errsize)
{
	for (size_t i = 0; i < agents->n; i++)
		for (size_t k = 0; k < agents->agents[i].ntools; k++) {
			sl_tool *t = &agents->agents[i].tools[k];
			char where[256];

			snprintf(where, sizeof(where), "agent %s: tool %s", agents->agents[i].id,
			         t->name);
			if (t->executor == SL_EXEC_HTTP &&
			    prepare_headers(where, t, errbuf, errsize))
				return SL_INVALID;
			if (t->executor != SL_EXEC_COMMAND && t->executor != SL_EXEC_STDIO)
				continue;
			if (access(t->argv[0], X_OK) != 0)
				return sl_err(errbuf, errsize, SL_INVALID,
				              "%s: field executor.argv[0]: %s is not an executable "
				              "file: %s",
				              where, t->argv[0], strerror(errno));
			t->envp = make_envp(agents->agents[i].id, t);
		}
	return SL_OK;
}

static sl_status run_command(const sl_tool *t, const char *input, char **result, char *errbuf,
                             size_t errsize)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1}, status = 0, rc;
	posix_spawn_file_actions_t fa;
	size_t in_len = strlen(input), in_off = 0;
	long long deadline = sl_mono_ms() + t->timeout_ms;
	bool timed_out = false, too_big = false;
	sl_status st = SL_OK;
	pid_t pid;
	sl_buf b;

	sl_buf_init(&b, WK_TOOL_MAX_OUTPUT);
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
		st = sl_err(errbuf, errsize, SL_FATAL, "pipe: %s", strerror(errno));
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	/* the tool's own environment, never the worker's (its credentials) */
	rc = posix_spawn(&pid, t->argv[0], &fa, NULL, t->argv, wk_tool_envp(t));
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	if (rc != 0) {
		st = sl_err(errbuf, errsize, SL_FATAL, "cannot start %s: %s", t->argv[0],
		            strerror(rc));
		goto out;
	}
	fcntl(in[1], F_SETFL, O_NONBLOCK);
	if (in_len == 0) {
		close(in[1]);
		in[1] = -1;
	}
	while (out[0] >= 0) {
		struct pollfd p[2] = {{out[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
		long long left = deadline - sl_mono_ms();
		char chunk[4096];
		ssize_t n;

		if (left <= 0) {
			timed_out = true;
			break;
		}
		if (poll(p, in[1] >= 0 ? 2 : 1, (int)left) < 0 && errno != EINTR)
			break;
		if (in[1] >= 0 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
			n = write(in[1], input + in_off, in_len - in_off);
			if (n > 0)
				in_off += (size_t)n;
			if (n < 0 && errno != EAGAIN)
				in_off = in_len; /* the tool closed stdin: fine */
			if (in_off >= in_len) {
				close(in[1]);
				in[1] = -1;
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			n = read(out[0], chunk, sizeof(chunk));
			if (n <= 0) {
				close(out[0]);
				out[0] = -1;
			} else if (sl_buf_append(&b, chunk, (size_t)n) != SL_OK) {
				too_big = true;
				break;
			}
		}
	}
	if (timed_out || too_big)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (timed_out)
		*result =
		    sl_asprintf("error: tool %s timed out after %ld ms", t->name, t->timeout_ms);
	else if (too_big)
		*result = sl_asprintf("error: tool %s wrote more than %d bytes", t->name,
		                      WK_TOOL_MAX_OUTPUT);
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		*result = sl_asprintf("error: tool %s failed (%s %d): %.2000s", t->name,
		                      WIFEXITED(status) ? "exit status" : "signal",
		                      WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
		                      b.data ? b.data : "");
	else {
		/* drop one trailing newline, as a shell's $(...) would */
		if (b.len && b.data[b.len - 1] == '\n')
			b.data[--b.len] = '\0';
		*result = sl_buf_steal(&b);
	}
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	sl_buf_free(&b);
	return st;
}

char *wk_tool_http_result(const sl_tool *t, wk_fetch_result *res)
{
	char *out;

	if (res->st == SL_TOO_BIG)
		return sl_asprintf("error: tool %s answered more than %d bytes", t->name,
		                   WK_TOOL_MAX_OUTPUT);
	if (res->st && !res->sent)
		return sl_asprintf("error: tool %s could not be reached", t->name);
	if (res->st)
		return sl_asprintf("error: tool %s gave no answer (%.200s): it may or may not "
		                   "have acted",
		                   t->name, res->err ? res->err : "");
	if (res->status < 200 || res->status > 299)
		return sl_asprintf("error: tool %s answered HTTP %ld: %.2000s", t->name,
		                   res->status, res->body ? res->body : "");
	out = res->body ? res->body : sl_strdup("");
	res->body = NULL;
	return out;
}

sl_status wk_tool_run_command(const sl_tool *t, const json_t *args, char **result, char *errbuf,
                              size_t errsize)
{
	char *input = json_dumps(args, JSON_COMPACT);
	sl_status st;

	*result = NULL;
	if (t->executor == SL_EXEC_COMMAND)
		st = run_command(t, input, result, errbuf, errsize);
	else
		st = sl_err(errbuf, errsize, SL_FATAL, "tool %s is not a command tool", t->name);
	free(input);
	return st;
}
