/* Unit tests of sl_schema: the JSON Schema subset used to check edited tool
 * arguments and user input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "sl_schema.h"

static const char *SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"service\":{\"type\":\"string\",\"minLength\":2},"
    "\"replicas\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":10},"
    "\"mode\":{\"enum\":[\"fast\",\"safe\"]},\"tags\":{\"type\":\"array\",\"items\":{\"type\":"
    "\"string\"}}},\"required\":[\"service\",\"replicas\"],\"additionalProperties\":false}";

static sl_status check(const char *value, char *err)
{
	json_t *s = json_loads(SCHEMA, 0, NULL), *v = json_loads(value, 0, NULL);
	sl_status st;

	assert_non_null(s);
	assert_non_null(v);
	st = sl_schema_validate(s, v, "tool_args", err, 256);
	json_decref(s);
	json_decref(v);
	return st;
}

static void valid(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(check("{\"service\":\"web\",\"replicas\":3}", err), SL_OK);
	assert_int_equal(
	    check("{\"service\":\"web\",\"replicas\":3.0,\"mode\":\"safe\",\"tags\":[\"a\"]}", err),
	    SL_OK);
}

static void violations_are_named(void **state)
{
	char err[256];
	(void)state;
	assert_int_equal(check("{\"service\":\"web\"}", err), SL_INVALID);
	assert_string_equal(err, "tool_args.replicas: is required");
	assert_int_equal(check("{\"service\":\"web\",\"replicas\":\"3\"}", err), SL_INVALID);
	assert_string_equal(err, "tool_args.replicas: must be of type integer");
	assert_int_equal(check("{\"service\":\"web\",\"replicas\":11}", err), SL_INVALID);
	assert_non_null(strstr(err, "above"));
	assert_int_equal(check("{\"service\":\"w\",\"replicas\":1}", err), SL_INVALID);
	assert_non_null(strstr(err, "shorter"));
	assert_int_equal(check("{\"service\":\"web\",\"replicas\":1,\"force\":true}", err),
	                 SL_INVALID);
	assert_string_equal(err, "tool_args.force: is not allowed");
	assert_int_equal(check("{\"service\":\"web\",\"replicas\":1,\"mode\":\"yolo\"}", err),
	                 SL_INVALID);
	assert_int_equal(check("{\"service\":\"web\",\"replicas\":1,\"tags\":[1]}", err),
	                 SL_INVALID);
	assert_string_equal(err, "tool_args.tags[0]: must be of type string");
	assert_int_equal(check("[]", err), SL_INVALID);
}

static void types(void **state)
{
	json_t *v = json_real(2.5);
	(void)state;
	assert_false(sl_schema_type_is(v, "integer"));
	assert_true(sl_schema_type_is(v, "number"));
	json_decref(v);
	v = json_true();
	assert_true(sl_schema_type_is(v, "boolean"));
	assert_false(sl_schema_type_is(v, "string"));
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(valid),
	    cmocka_unit_test(violations_are_named),
	    cmocka_unit_test(types),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
