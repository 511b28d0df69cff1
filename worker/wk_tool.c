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
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

sl_status wk_tool_check(const sl_agents *agents, char *errbuf, size_t errsize)
{
	for (size_t i = 0; i < agents->n; i++)
		for (size_t k = 0; k < agents->agents[i].ntools; k++) {
			const sl_tool *t = &agents->agents[i].tools[k];
			if ((t->executor == SL_EXEC_COMMAND || t->executor == SL_EXEC_STDIO) &&
			    access(t->argv[0], X_OK) != 0)
				return sl_err(
				    errbuf, errsize, SL_INVALID,
				    "agent %s: tool %s: field executor.argv[0]: %s is not an "
				    "executable file: %s",
				    agents->agents[i].id, t->name, t->argv[0], strerror(errno));
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
	rc = posix_spawn(&pid, t->argv[0], &fa, NULL, t->argv, environ);
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

char *wk_tool_http_result(const sl_tool *t, sl_status st, long status, char **body)
{
	char *out;

	if (st == SL_TOO_BIG)
		return sl_asprintf("error: tool %s answered more than %d bytes", t->name,
		                   WK_TOOL_MAX_OUTPUT);
	if (st)
		return sl_asprintf("error: tool %s could not be reached", t->name);
	if (status < 200 || status > 299)
		return sl_asprintf("error: tool %s answered HTTP %ld: %.2000s", t->name, status,
		                   *body ? *body : "");
	out = *body ? *body : sl_strdup("");
	*body = NULL;
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
