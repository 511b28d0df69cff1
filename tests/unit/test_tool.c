/* Unit tests of the command tool executor (wk_tool_run_command): real
 * processes through /bin/sh; the arguments on stdin, the result from
 * stdout, and what the model is told when the tool fails, hangs or writes
 * too much. Also what an http tool's answer means (wk_tool_http_result). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdlib.h>
#include <pwd.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../worker/wk_tool.h"

/* Runs "sh -c script" as tool t with {"user_id":"U-1"}; returns the result. */
static char *run(const char *script, long timeout_ms, sl_status *st)
{
	char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
	sl_tool t = {
	    .name = "t", .executor = SL_EXEC_COMMAND, .argv = argv, .timeout_ms = timeout_ms};
	json_t *args = json_pack("{s:s}", "user_id", "U-1");
	char errbuf[256], *result = NULL;

	*st = wk_tool_run_command(&t, args, &result, errbuf, sizeof(errbuf));
	json_decref(args);
	return result;
}

static void arguments_in_result_out(void **state)
{
	sl_status st;
	char *r = run("cat", 5000, &st);
	(void)state;
	assert_int_equal(st, SL_OK);
	assert_string_equal(r, "{\"user_id\":\"U-1\"}");
	free(r);
	r = run("printf 'done\\n'", 5000, &st); /* one trailing newline dropped */
	assert_string_equal(r, "done");
	free(r);
}

static void failure_is_told(void **state)
{
	sl_status st;
	char *r = run("printf partial; exit 3", 5000, &st);
	(void)state;
	assert_int_equal(st, SL_OK);
	assert_string_equal(r, "error: tool t failed (exit status 3): partial");
	free(r);
}

static void hang_times_out(void **state)
{
	sl_status st;
	char *r = run("exec sleep 30", 200, &st);
	(void)state;
	assert_int_equal(st, SL_OK);
	assert_string_equal(r, "error: tool t timed out after 200 ms");
	free(r);
}

static void too_much_output(void **state)
{
	sl_status st;
	char *r = run("head -c 2000000 /dev/zero", 5000, &st);
	(void)state;
	assert_int_equal(st, SL_OK);
	assert_string_equal(r, "error: tool t wrote more than 1048576 bytes");
	free(r);
}

static void cannot_start(void **state)
{
	char *argv[] = {"/nonexistent/tool", NULL};
	sl_tool t = {.name = "t", .executor = SL_EXEC_COMMAND, .argv = argv, .timeout_ms = 1000};
	json_t *args = json_object();
	char errbuf[256], *result = NULL;
	(void)state;
	assert_int_equal(wk_tool_run_command(&t, args, &result, errbuf, sizeof(errbuf)), SL_FATAL);
	assert_null(result);
	assert_non_null(strstr(errbuf, "/nonexistent/tool"));
	json_decref(args);
}

static void http_answers(void **state)
{
	sl_tool t = {.name = "lookup", .executor = SL_EXEC_HTTP};
	wk_fetch_result res = {.st = SL_OK, .status = 200, .body = strdup("Looked up O-1")};
	char *r;
	(void)state;
	r = wk_tool_http_result(&t, &res);
	assert_string_equal(r, "Looked up O-1");
	assert_null(res.body); /* taken */
	free(r);
	res = (wk_fetch_result){.st = SL_OK, .status = 503, .body = strdup("overloaded")};
	r = wk_tool_http_result(&t, &res);
	assert_string_equal(r, "error: tool lookup answered HTTP 503: overloaded");
	free(r);
	free(res.body);
	res = (wk_fetch_result){.st = SL_RETRY, .err = "Connection refused"};
	r = wk_tool_http_result(&t, &res);
	assert_string_equal(r, "error: tool lookup could not be reached");
	free(r);
	res = (wk_fetch_result){.st = SL_TOO_BIG, .status = 200, .sent = true};
	r = wk_tool_http_result(&t, &res);
	assert_string_equal(r, "error: tool lookup answered more than 1048576 bytes");
	free(r);
}

/* Regression: an http tool whose request went out and whose answer never
 * came (a time-out, a cut link) was reported "could not be reached", though
 * it may have acted. */
static void http_no_answer_after_sending(void **state)
{
	sl_tool t = {.name = "lookup", .executor = SL_EXEC_HTTP};
	wk_fetch_result res = {.st = SL_RETRY, .err = "Operation timed out", .sent = true};
	char *r;
	(void)state;
	r = wk_tool_http_result(&t, &res);
	assert_string_equal(r, "error: tool lookup gave no answer (Operation timed out): it may or "
	                       "may not have acted");
	free(r);
}

/* In a child acting as the worker (as "nobody" when run as root, since root
 * reads every process), a tool's attempt to read its parent's environment;
 * the child exits 0 for "refused", 1 for "readable". */
static int worker_environ_read_by_tool(bool shield)
{
	int status = -1;
	pid_t pid = fork();

	if (pid == 0) {
		sl_status st;
		char *r;

		if (geteuid() == 0) {
			struct passwd *pw = getpwnam("nobody");
			if (!pw || setgid(pw->pw_gid) || setuid(pw->pw_uid))
				_exit(2);
			/* as a worker started by that user is (setuid cleared it) */
			prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		}
		if (shield)
			wk_tool_shield_worker();
		r = run("cat /proc/$PPID/environ > /dev/null 2>&1 && echo readable || echo refused",
		        5000, &st);
		_exit(r && !strcmp(r, "refused") ? 0 : r && !strcmp(r, "readable") ? 1 : 3);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Regression: a tool runs as the worker's user, and could read the worker's
 * credentials from /proc/PPID/environ. */
static void tool_cannot_read_the_worker(void **state)
{
	(void)state;
	assert_int_equal(worker_environ_read_by_tool(false), 1); /* the attack works... */
	assert_int_equal(worker_environ_read_by_tool(true), 0);  /* ...and is refused */
}

int main(void)
{
	/* as in the worker: a tool that exits without reading its input must
	 * not kill the caller writing it */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(arguments_in_result_out),
	    cmocka_unit_test(failure_is_told),
	    cmocka_unit_test(hang_times_out),
	    cmocka_unit_test(too_much_output),
	    cmocka_unit_test(cannot_start),
	    cmocka_unit_test(http_answers),
	    cmocka_unit_test(http_no_answer_after_sending),
	    cmocka_unit_test(tool_cannot_read_the_worker),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
