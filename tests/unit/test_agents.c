/* Unit tests of sl_agents: the agents file's validation names agent, tool
 * and field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "sl_agents.h"

#define AGENT(tools)                                                                        \
	"{\"agents\":[{\"id\":\"data-admin\",\"model\":{\"provider\":\"openai-responses\"," \
	"\"id\":\"m\"},\"tools\":[" tools "]}]}"
#define PARAMS                                                                                    \
	"\"parameters\":{\"type\":\"object\",\"properties\":{\"user_id\":{\"type\":\"string\"}}," \
	"\"required\":[\"user_id\"]}"
#define EXEC "\"executor\":{\"kind\":\"command\",\"argv\":[\"/bin/echo\"]}"
/* executors left open, for more fields */
#define HTTP_EXEC "\"executor\":{\"kind\":\"http\",\"url\":\"http://h/\""
#define STDIO_EXEC "\"executor\":{\"kind\":\"stdio\",\"argv\":[\"/bin/cat\"]"

static sl_status load(const char *text, sl_agents **out, char *err)
{
	return sl_agents_parse(text, strlen(text), out, err, 512);
}

static void seed_agent(void **state)
{
	sl_agents *a;
	char err[512];
	const sl_tool *t;
	(void)state;
	assert_int_equal(
	    load(AGENT("{\"name\":\"delete_user_data\"," PARAMS
	               ",\"requires_confirmation\":true,\"approval\":\"audit\"," EXEC "}"),
	         &a, err),
	    SL_OK);
	t = sl_agent_tool(sl_agents_find(a, "data-admin"), "delete_user_data");
	assert_non_null(t);
	assert_true(t->requires_confirmation);
	assert_int_equal(t->approval, SL_APPROVAL_AUDIT);
	assert_int_equal(t->executor, SL_EXEC_COMMAND);
	assert_string_equal(t->argv[0], "/bin/echo");
	assert_true(sl_tool_gated(t));
	assert_null(sl_agents_find(a, "other"));
	sl_agents_free(a);
}

static void stdio_executor(void **state)
{
	sl_agents *a;
	char err[512];
	const sl_tool *t;
	(void)state;
	assert_int_equal(load(AGENT("{\"name\":\"lookup\",\"executor\":{\"kind\":\"stdio\","
	                            "\"argv\":[\"/bin/cat\",\"-u\"],\"timeout_ms\":250}}"),
	                      &a, err),
	                 SL_OK);
	t = sl_agent_tool(sl_agents_find(a, "data-admin"), "lookup");
	assert_int_equal(t->executor, SL_EXEC_STDIO);
	assert_string_equal(t->argv[0], "/bin/cat");
	assert_string_equal(t->argv[1], "-u");
	assert_null(t->argv[2]);
	assert_int_equal(t->timeout_ms, 250);
	sl_agents_free(a);
	assert_int_equal(
	    load(AGENT("{\"name\":\"lookup\",\"executor\":{\"kind\":\"stdio\"}}"), &a, err),
	    SL_INVALID);
	assert_non_null(strstr(err, "tool lookup: field executor.argv"));
	assert_int_equal(
	    load(AGENT("{\"name\":\"lookup\",\"executor\":{\"kind\":\"pipe\"}}"), &a, err),
	    SL_INVALID);
	assert_non_null(strstr(err, "\"command\", \"stdio\" or \"http\""));
}

/* executor.idempotent: true by default for http only; a tool may say so. */
static void idempotent_executor(void **state)
{
	sl_agents *a;
	char err[512];
	const sl_agent *ag;
	(void)state;
	assert_int_equal(load(AGENT("{\"name\":\"web\"," HTTP_EXEC "}},"
	                            "{\"name\":\"web_once\"," HTTP_EXEC ",\"idempotent\":false}},"
	                            "{\"name\":\"cmd\"," EXEC "},"
	                            "{\"name\":\"cmd_again\"," STDIO_EXEC ",\"idempotent\":true}}"),
	                      &a, err),
	                 SL_OK);
	ag = sl_agents_find(a, "data-admin");
	assert_true(sl_agent_tool(ag, "web")->idempotent);
	assert_false(sl_agent_tool(ag, "web_once")->idempotent);
	assert_false(sl_agent_tool(ag, "cmd")->idempotent);
	assert_true(sl_agent_tool(ag, "cmd_again")->idempotent);
	sl_agents_free(a);
	assert_int_equal(
	    load(AGENT("{\"name\":\"web\"," HTTP_EXEC ",\"idempotent\":\"yes\"}}"), &a, err),
	    SL_INVALID);
	assert_non_null(strstr(err, "tool web: field executor.idempotent must be true or false"));
}

static void audit_needs_flag(void **state)
{
	sl_agents *a;
	char err[512];
	(void)state;
	assert_int_equal(
	    load(AGENT("{\"name\":\"wipe\",\"approval\":\"audit\"," EXEC "}"), &a, err),
	    SL_INVALID);
	assert_null(a);
	assert_non_null(strstr(err, "agent data-admin"));
	assert_non_null(strstr(err, "tool wipe"));
	assert_non_null(strstr(err, "approval"));
}

static void required_implies_confirmation(void **state)
{
	sl_agents *a;
	char err[512];
	(void)state;
	assert_int_equal(
	    load(AGENT("{\"name\":\"wipe\",\"approval\":\"required\"," EXEC "}"), &a, err), SL_OK);
	assert_true(a->agents[0].tools[0].requires_confirmation);
	sl_agents_free(a);
}

static void bad_files(void **state)
{
	sl_agents *a;
	char err[512];
	(void)state;
	assert_int_equal(load("{", &a, err), SL_INVALID);
	assert_non_null(strstr(err, "bad JSON"));
	assert_int_equal(load("{\"agents\":[{\"id\":\"x\",\"model\":{\"provider\":\"anthropic\","
	                      "\"id\":\"m\"}}]}",
	                      &a, err),
	                 SL_INVALID);
	assert_non_null(strstr(err, "model.provider"));
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"requires_confirmation\":true}"), &a, err),
	                 SL_INVALID);
	assert_non_null(strstr(err, "executor"));
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"requires_confirmation\":true,"
	                            "\"external_execution\":true}"),
	                      &a, err),
	                 SL_INVALID);
	assert_int_equal(
	    load(AGENT("{\"name\":\"t\"," EXEC "},{\"name\":\"t\"," EXEC "}"), &a, err),
	    SL_INVALID);
	assert_non_null(strstr(err, "used twice"));
	assert_int_equal(
	    load(AGENT("{\"name\":\"t\",\"approval\":\"sometimes\"," EXEC "}"), &a, err),
	    SL_INVALID);
	assert_int_equal(load(AGENT("{\"name\":\"t\",\"requires_user_input\":true,"
	                            "\"user_input_fields\":[\"nope\"]," PARAMS "," EXEC "}"),
	                      &a, err),
	                 SL_INVALID);
	assert_non_null(strstr(err, "user_input_fields"));
}

/* approvers, self_approval, quorum: who may decide a tool's requirements. */
static void deciders(void **state)
{
	sl_agents *a;
	char err[512];
	const sl_tool *t;
	(void)state;
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"approval\":\"required\","
	                            "\"approvers\":{\"users\":[\"ann\"],\"groups\":[\"sre\"]},"
	                            "\"self_approval\":true,\"quorum\":1," EXEC "}"),
	                      &a, err),
	                 SL_OK);
	t = &a->agents[0].tools[0];
	assert_true(t->self_approval);
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(t->approvers, "groups"), 0)), "sre");
	sl_agents_free(a);
	assert_int_equal(
	    load(AGENT("{\"name\":\"wipe\",\"approval\":\"required\"," EXEC "}"), &a, err), SL_OK);
	assert_false(a->agents[0].tools[0].self_approval); /* the default */
	assert_null(a->agents[0].tools[0].approvers);      /* every approver */
	sl_agents_free(a);
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"approval\":\"required\","
	                            "\"approvers\":{\"users\":[]}," EXEC "}"),
	                      &a, err),
	                 SL_INVALID);
	assert_non_null(strstr(err, "tool wipe: field approvers must be"));
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"approval\":\"required\","
	                            "\"approvers\":{\"users\":[\"ann\", 7]}," EXEC "}"),
	                      &a, err),
	                 SL_INVALID);
	assert_non_null(strstr(err, "field approvers"));
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"approval\":\"required\","
	                            "\"self_approval\":\"yes\"," EXEC "}"),
	                      &a, err),
	                 SL_INVALID);
	assert_non_null(strstr(err, "field self_approval must be true or false"));
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"approval\":\"required\","
	                            "\"quorum\":2," EXEC "}"),
	                      &a, err),
	                 SL_OK);
	assert_int_equal(a->agents[0].tools[0].quorum, 2);
	sl_agents_free(a);
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"approval\":\"required\","
	                            "\"quorum\":11," EXEC "}"),
	                      &a, err),
	                 SL_INVALID);
	assert_non_null(strstr(err, "field quorum must be a number of approvers from 1 to 10"));
	assert_int_equal(load(AGENT("{\"name\":\"wipe\",\"requires_confirmation\":true,"
	                            "\"approval\":\"audit\",\"quorum\":2," EXEC "}"),
	                      &a, err),
	                 SL_INVALID);
	assert_non_null(strstr(err, "field quorum above 1 needs approval \"required\""));
	assert_int_equal(
	    load(AGENT("{\"name\":\"look\",\"approvers\":{\"users\":[\"ann\"]}," EXEC "}"), &a,
	         err),
	    SL_INVALID);
	assert_non_null(strstr(err, "need a tool that pauses"));
}

static void external_needs_no_executor(void **state)
{
	sl_agents *a;
	char err[512];
	(void)state;
	assert_int_equal(load(AGENT("{\"name\":\"ext\",\"external_execution\":true}"), &a, err),
	                 SL_OK);
	assert_int_equal(a->agents[0].tools[0].executor, SL_EXEC_NONE);
	sl_agents_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(seed_agent),
	    cmocka_unit_test(stdio_executor),
	    cmocka_unit_test(idempotent_executor),
	    cmocka_unit_test(audit_needs_flag),
	    cmocka_unit_test(required_implies_confirmation),
	    cmocka_unit_test(bad_files),
	    cmocka_unit_test(deciders),
	    cmocka_unit_test(external_needs_no_executor),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
