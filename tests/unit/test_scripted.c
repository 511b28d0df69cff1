/* Unit tests of the scripted model's rules and of the worker's decoding of
 * its answers (both APIs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "../../dev/scripted.h"
#include "../../worker/wk_model.h"

static const char *TOOLS_RESPONSES =
    "[{\"type\":\"function\",\"name\":\"delete_user_data\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"user_id\":{\"type\":\"string\"}},\"required\":[\"user_id\"]}},"
    "{\"type\":\"function\",\"name\":\"other\",\"parameters\":{}}]";

static json_t *ask(bool chat, const char *input_json, const char *tools_json)
{
	json_t *req = json_pack("{s:s, s:o}", "model", "m", chat ? "messages" : "input",
	                        json_loads(input_json, 0, NULL));
	json_t *ans;
	char err[256];

	if (tools_json)
		json_object_set_new(req, "tools", json_loads(tools_json, 0, NULL));
	ans = dv_scripted_answer(chat, req, err, sizeof(err));
	json_decref(req);
	return ans;
}

static void id_token(void **state)
{
	const char *s = NULL;
	(void)state;
	assert_int_equal(dv_id_token("Delete all data for user U-99887.", &s), 7);
	assert_memory_equal(s, "U-99887", 7);
	assert_int_equal(dv_id_token("no token here - 5", &s), 0);
	assert_int_equal(dv_id_token("x ab-12c", &s), 5);
}

static void first_tool_with_token(void **state)
{
	wk_model_reply r;
	char err[256];
	json_t *ans =
	    ask(false, "[{\"role\":\"user\",\"content\":\"Delete all data for user U-99887.\"}]",
	        TOOLS_RESPONSES);
	(void)state;
	assert_non_null(ans);
	assert_int_equal(wk_model_responses_decode(ans, &r, err, sizeof(err)), SL_OK);
	assert_int_equal(json_array_size(r.calls), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(r.calls, 0), "name")),
	                    "delete_user_data");
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(r.calls, 0), "arguments")),
	    "{\"user_id\":\"U-99887\"}");
	wk_model_reply_free(&r);
	json_decref(ans);
}

static void call_lines(void **state)
{
	wk_model_reply r;
	char err[256];
	json_t *ans = ask(false,
	                  "[{\"role\":\"user\",\"content\":\"do it\\ncall other {\\\"a\\\": 1}\\n"
	                  "call delete_user_data {\\\"user_id\\\": \\\"X-1\\\"}\"}]",
	                  TOOLS_RESPONSES);
	(void)state;
	assert_int_equal(wk_model_responses_decode(ans, &r, err, sizeof(err)), SL_OK);
	assert_int_equal(json_array_size(r.calls), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(r.calls, 0), "name")),
	                    "other");
	assert_string_equal(json_string_value(json_object_get(json_array_get(r.calls, 1), "name")),
	                    "delete_user_data");
	/* distinct, deterministic call ids */
	assert_string_not_equal(
	    json_string_value(json_object_get(json_array_get(r.calls, 0), "call_id")),
	    json_string_value(json_object_get(json_array_get(r.calls, 1), "call_id")));
	wk_model_reply_free(&r);
	json_decref(ans);
}

static void tool_results_done(void **state)
{
	wk_model_reply r;
	char err[256];
	json_t *ans =
	    ask(false,
	        "[{\"role\":\"user\",\"content\":\"x\"},{\"type\":\"function_call\","
	        "\"call_id\":\"a\",\"name\":\"t\",\"arguments\":\"{}\"},"
	        "{\"type\":\"function_call_output\",\"call_id\":\"a\",\"output\":\"one\"},"
	        "{\"type\":\"function_call_output\",\"call_id\":\"b\",\"output\":\"two\"}]",
	        TOOLS_RESPONSES);
	(void)state;
	assert_int_equal(wk_model_responses_decode(ans, &r, err, sizeof(err)), SL_OK);
	assert_int_equal(json_array_size(r.calls), 0);
	assert_string_equal(r.text, "Done: one; two");
	wk_model_reply_free(&r);
	json_decref(ans);
}

static void no_tools_echo(void **state)
{
	wk_model_reply r;
	char err[256];
	json_t *ans = ask(false, "[{\"role\":\"user\",\"content\":\"hello there\"}]", NULL);
	(void)state;
	assert_int_equal(wk_model_responses_decode(ans, &r, err, sizeof(err)), SL_OK);
	assert_string_equal(r.text, "hello there");
	wk_model_reply_free(&r);
	json_decref(ans);
}

static void chat_round_trip(void **state)
{
	sl_tool tool = {.name = "delete_user_data", .description = "d"};
	sl_agent agent = {.id = "a",
	                  .provider = SL_PROVIDER_CHAT,
	                  .model_id = "m",
	                  .instructions = "be careful",
	                  .tools = &tool,
	                  .ntools = 1};
	json_t *items = json_pack("[{s:s, s:s}]", "role", "user", "content", "Delete user U-5");
	json_t *req, *ans;
	wk_model_reply r;
	char err[256];
	(void)state;
	tool.parameters = json_loads("{\"type\":\"object\",\"properties\":{\"user_id\":{\"type\":"
	                             "\"string\"}},\"required\":[\"user_id\"]}",
	                             0, NULL);
	req = wk_model_chat_request(&agent, items);
	assert_string_equal(json_string_value(json_object_get(
	                        json_array_get(json_object_get(req, "messages"), 0), "role")),
	                    "system");
	ans = dv_scripted_answer(true, req, err, sizeof(err));
	assert_non_null(ans);
	assert_int_equal(wk_model_chat_decode(ans, &r, err, sizeof(err)), SL_OK);
	assert_int_equal(json_array_size(r.calls), 1);
	/* the tool result goes back as a tool message */
	json_array_extend(items, r.items);
	json_array_append_new(
	    items,
	    json_pack("{s:s, s:O, s:s}", "type", "function_call_output", "call_id",
	              json_object_get(json_array_get(r.calls, 0), "call_id"), "output", "gone"));
	wk_model_reply_free(&r);
	json_decref(req);
	json_decref(ans);
	req = wk_model_chat_request(&agent, items);
	ans = dv_scripted_answer(true, req, err, sizeof(err));
	assert_int_equal(wk_model_chat_decode(ans, &r, err, sizeof(err)), SL_OK);
	assert_string_equal(r.text, "Done: gone");
	wk_model_reply_free(&r);
	json_decref(req);
	json_decref(ans);
	json_decref(items);
	json_decref(tool.parameters);
}

static void bad_answers(void **state)
{
	wk_model_reply r;
	char err[256];
	json_t *bad =
	    json_loads("{\"output\":[{\"type\":\"function_call\",\"name\":\"t\"}]}", 0, NULL);
	(void)state;
	assert_int_equal(wk_model_responses_decode(bad, &r, err, sizeof(err)), SL_INVALID);
	json_decref(bad);
	bad = json_loads("{\"choices\":[]}", 0, NULL);
	assert_int_equal(wk_model_chat_decode(bad, &r, err, sizeof(err)), SL_INVALID);
	json_decref(bad);
	bad = json_loads("{\"input\":[]}", 0, NULL);
	assert_null(dv_scripted_answer(false, bad, err, sizeof(err)));
	json_decref(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(id_token),      cmocka_unit_test(first_tool_with_token),
	    cmocka_unit_test(call_lines),    cmocka_unit_test(tool_results_done),
	    cmocka_unit_test(no_tools_echo), cmocka_unit_test(chat_round_trip),
	    cmocka_unit_test(bad_answers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
