/* Unit tests of sl_text: untrusted bytes made valid UTF-8, cut and escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "sl_text.h"

#define VALID(s) sl_text_valid(s, sizeof(s) - 1)

static void valid_and_invalid(void **state)
{
	(void)state;
	assert_true(VALID("plain ascii"));
	assert_true(VALID("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	assert_false(VALID("\xff"));
	assert_false(VALID("caf\xe9"));          /* Latin-1 */
	assert_false(VALID("\xc0\xaf"));         /* overlong '/' */
	assert_false(VALID("\xe0\x80\xaf"));     /* overlong, 3 bytes */
	assert_false(VALID("\xed\xa0\x80"));     /* surrogate */
	assert_false(VALID("\xf4\x90\x80\x80")); /* past U+10FFFF */
	assert_false(VALID("\xe2\x82"));         /* cut inside a character */
}

static void fix_replaces_each_bad_byte(void **state)
{
	char *s;

	(void)state;
	s = sl_text_fix("caf\xe9!", 5);
	assert_string_equal(s, "caf\xef\xbf\xbd!");
	free(s);
	s = sl_text_fix("\xe2\x82", 2);
	assert_string_equal(s, "\xef\xbf\xbd\xef\xbf\xbd");
	free(s);
	s = sl_text_fix("ok \xe2\x82\xac", 6);
	assert_string_equal(s, "ok \xe2\x82\xac");
	free(s);
}

static void cut_on_character_boundary(void **state)
{
	const char *s = "a\xe2\x82\xac"
	                "b"; /* a, euro sign (3 bytes), b */
	(void)state;
	assert_int_equal(sl_text_cut(s, 5, 10), 5);
	assert_int_equal(sl_text_cut(s, 5, 4), 4);
	assert_int_equal(sl_text_cut(s, 5, 3), 1);
	assert_int_equal(sl_text_cut(s, 5, 2), 1);
	assert_int_equal(sl_text_cut(s, 5, 1), 1);
	assert_int_equal(sl_text_cut(s, 5, 0), 0);
}

static void json_of_any_bytes(void **state)
{
	json_t *j;
	char *dump;

	(void)state;
	j = sl_text_json("no such resource: /\xff");
	assert_non_null(j);
	dump = json_dumps(j, JSON_ENCODE_ANY);
	assert_string_equal(dump, "\"no such resource: /\xef\xbf\xbd\"");
	free(dump);
	json_decref(j);
}

static void escape_keeps_one_line(void **state)
{
	char out[64];

	(void)state;
	sl_text_escape("reason\n2026-01-01 approver error: forged\r\x1b[31m", out, sizeof(out));
	assert_string_equal(out, "reason\\n2026-01-01 approver error: forged\\r\\x1b[31m");
	sl_text_escape("\xe2\x82\xac\xe2\x82\xac", out, 5); /* room for one euro sign */
	assert_string_equal(out, "\xe2\x82\xac");
	sl_text_escape("\xff", out, sizeof(out));
	assert_string_equal(out, "\xef\xbf\xbd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(valid_and_invalid),
	    cmocka_unit_test(fix_replaces_each_bad_byte),
	    cmocka_unit_test(cut_on_character_boundary),
	    cmocka_unit_test(json_of_any_bytes),
	    cmocka_unit_test(escape_keeps_one_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
