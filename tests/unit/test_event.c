/* Unit tests of sl_event: envelope and data validation of untrusted events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "sl_event.h"

static const char *run_types[] = {SL_EVENT_RUN_REQUESTED, NULL};
static const char *continue_types[] = {SL_EVENT_RUN_CONTINUE, NULL};
static const char *paused_types[] = {SL_EVENT_RUN_PAUSED, NULL};

static sl_status parse(const char *text, const char *const *types, char *errbuf)
{
	sl_event ev;
	sl_status st = sl_event_parse(text, strlen(text), types, &ev, errbuf, 256);
	if (st == SL_OK) {
		assert_non_null(ev.root);
		sl_event_clear(&ev);
	}
	return st;
}

#define ENVELOPE(type, data)                                                              \
	"{\"specversion\":\"1.0\",\"id\":\"e-1\",\"source\":\"t\",\"type\":\"" type "\"," \
	"\"subject\":\"r-1\",\"data\":" data "}"

static void valid_run_requested(void **state)
{
	char err[256];
	sl_event ev;
	const char *t = ENVELOPE("sluice.run.requested",
	                         "{\"agent_id\":\"data-admin\",\"input\":\"Delete U-1\"}");
	(void)state;
	assert_int_equal(sl_event_parse(t, strlen(t), run_types, &ev, err, sizeof(err)), SL_OK);
	assert_string_equal(ev.id, "e-1");
	assert_string_equal(ev.type, "sluice.run.requested");
	assert_string_equal(json_string_value(json_object_get(ev.data, "input")), "Delete U-1");
	sl_event_clear(&ev);
}

static void malformed_json(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(parse("not json", run_types, err), SL_INVALID);
	assert_non_null(strstr(err, "malformed JSON"));
	assert_int_equal(parse("[1,2]", run_types, err), SL_INVALID);
	assert_int_equal(parse("{\"a\":1,\"a\":2}", run_types, err), SL_INVALID);
}

static void wrong_type(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(parse(ENVELOPE("sluice.run.paused", "{}"), run_types, err), SL_INVALID);
	assert_non_null(strstr(err, "unexpected type"));
}

static void missing_fields(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(
	    parse(ENVELOPE("sluice.run.requested", "{\"input\":\"x\"}"), run_types, err),
	    SL_INVALID);
	assert_non_null(strstr(err, "agent_id"));
	assert_int_equal(
	    parse(ENVELOPE("sluice.run.requested", "{\"agent_id\":\"a\",\"input\":\"\"}"),
	          run_types, err),
	    SL_INVALID);
	assert_non_null(strstr(err, "input is empty"));
	assert_int_equal(
	    parse("{\"specversion\":\"1.0\",\"source\":\"t\",\"type\":\"x\"}", run_types, err),
	    SL_INVALID);
	assert_non_null(strstr(err, "id"));
	assert_int_equal(parse(ENVELOPE("sluice.run.requested", "[]"), run_types, err), SL_INVALID);
}

static void bad_ids(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(
	    parse(ENVELOPE("sluice.run.requested", "{\"agent_id\":\"a b\",\"input\":\"x\"}"),
	          run_types, err),
	    SL_INVALID);
	assert_true(sl_event_id_valid("U-99887"));
	assert_false(sl_event_id_valid(""));
	assert_false(sl_event_id_valid("a/b"));
}

static void continue_decisions(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(
	    parse(ENVELOPE("sluice.run.continue",
	                   "{\"run_id\":\"r\",\"decisions\":[{\"requirement_id\":\"q\","
	                   "\"confirmed\":true}]}"),
	          continue_types, err),
	    SL_OK);
	assert_int_equal(
	    parse(ENVELOPE("sluice.run.continue", "{\"run_id\":\"r\",\"decisions\":[]}"),
	          continue_types, err),
	    SL_INVALID);
	assert_int_equal(
	    parse(ENVELOPE("sluice.run.continue",
	                   "{\"run_id\":\"r\",\"decisions\":[{\"requirement_id\":\"q\","
	                   "\"confirmed\":\"yes\"}]}"),
	          continue_types, err),
	    SL_INVALID);
	assert_non_null(strstr(err, "confirmed"));
}

static void paused_requirements(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(
	    parse(ENVELOPE("sluice.run.paused",
	                   "{\"run_id\":\"r\",\"agent_id\":\"a\",\"requirements\":[{\"id\":\"q\","
	                   "\"tool_call_id\":\"c\",\"tool_name\":\"t\",\"tool_args\":{},"
	                   "\"needs_confirmation\":true,\"needs_user_input\":false,"
	                   "\"external_execution\":false,\"approval_type\":\"audit\"}]}"),
	          paused_types, err),
	    SL_OK);
	assert_int_equal(
	    parse(ENVELOPE("sluice.run.paused",
	                   "{\"run_id\":\"r\",\"agent_id\":\"a\",\"requirements\":[{}]}"),
	          paused_types, err),
	    SL_INVALID);
}

static void oversized(void **state)
{
	size_t n = SL_EVENT_MAX_BYTES + 10;
	char *big = sl_malloc(n), err[256];
	sl_event ev;
	(void)state;
	memset(big, ' ', n);
	assert_int_equal(sl_event_parse(big, n, run_types, &ev, err, sizeof(err)), SL_TOO_BIG);
	free(big);
}

static void built_event_parses(void **state)
{
	json_t *e = sl_event_new(SL_EVENT_RUN_REQUESTED, "sluice/test/h", "r-1",
	                         json_pack("{s:s, s:s}", "agent_id", "a", "input", "hi"));
	char *text = json_dumps(e, 0), err[256];
	(void)state;
	assert_int_equal(parse(text, run_types, err), SL_OK);
	assert_string_equal(json_string_value(json_object_get(e, "specversion")), "1.0");
	assert_int_equal(strlen(json_string_value(json_object_get(e, "id"))), 36);
	free(text);
	json_decref(e);
}

/* Event ids are version 7 UUIDs: later ones sort after earlier ones. */
static void event_ids_are_time_ordered(void **state)
{
	char a[37], b[37];
	(void)state;
	sl_uuid_v7(a);
	sl_sleep_ms(2);
	sl_uuid_v7(b);
	assert_int_equal(strlen(a), 36);
	assert_int_equal(a[14], '7');           /* version */
	assert_non_null(strchr("89ab", a[19])); /* RFC variant */
	assert_true(strcmp(a, b) < 0);
	assert_true(strtoll(a, NULL, 16) <= sl_now_ms() >> 16); /* the time is in front */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(valid_run_requested),
	    cmocka_unit_test(malformed_json),
	    cmocka_unit_test(wrong_type),
	    cmocka_unit_test(missing_fields),
	    cmocka_unit_test(bad_ids),
	    cmocka_unit_test(continue_decisions),
	    cmocka_unit_test(paused_requirements),
	    cmocka_unit_test(oversized),
	    cmocka_unit_test(built_event_parses),
	    cmocka_unit_test(event_ids_are_time_ordered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
