/*
 * test_jcs.c - canonical JSON against RFC 8785's own examples: the
 * serialization sample of 3.2.2, the sorting sample of 3.2.3, and the
 * numbers of Appendix B (IEEE 754 bit patterns and ECMAScript's text).
 */
#include "sl_jcs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The canonical text of the JSON text in. */
static char *canon(const char *in)
{
	json_error_t err;
	json_t *v = json_loads(in, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	char *out;

	if (!v)
		fail_msg("not JSON: %s", err.text);
	out = sl_jcs(v, 1 << 20, NULL);
	json_decref(v);
	assert_non_null(out);
	return out;
}

static void expect(const char *in, const char *want)
{
	char *got = canon(in);

	assert_string_equal(got, want);
	free(got);
}

/* RFC 8785, 3.2.2. */
static void rfc_serialization_sample(void **state)
{
	(void)state;
	expect(
	    "{\n"
	    "  \"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, "
	    "0.000000000000000000000000001],\n"
	    "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
	    "  \"literals\": [null, true, false]\n"
	    "}",
	    "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
	    "\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
}

/* RFC 8785, 3.2.3: by UTF-16 code units, so the emoji (surrogates
 * D83D DE00) comes before U+FB33 though its code point is larger. */
static void rfc_sorting_sample(void **state)
{
	(void)state;
	expect(
	    "{\n"
	    "  \"\\u20ac\": \"Euro Sign\",\n"
	    "  \"\\r\": \"Carriage Return\",\n"
	    "  \"\\ufb33\": \"Hebrew Letter Dalet With Dagesh\",\n"
	    "  \"1\": \"One\",\n"
	    "  \"\\ud83d\\ude00\": \"Emoji: Grinning Face\",\n"
	    "  \"\\u0080\": \"Control\",\n"
	    "  \"\\u00f6\": \"Latin Small Letter O With Diaeresis\"\n"
	    "}",
	    "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\","
	    "\"\xc3\xb6\":\"Latin Small Letter O With Diaeresis\",\"\xe2\x82\xac\":\"Euro Sign\","
	    "\"\xf0\x9f\x98\x80\":\"Emoji: Grinning Face\","
	    "\"\xef\xac\xb3\":\"Hebrew Letter Dalet With Dagesh\"}");
}

/* RFC 8785, Appendix B: IEEE 754 bit patterns and their text. */
static void rfc_number_samples(void **state)
{
	static const struct {
		uint64_t bits;
		const char *text;
	} samples[] = {
	    {0x0000000000000000, "0"},
	    {0x8000000000000000, "0"},
	    {0x0000000000000001, "5e-324"},
	    {0x8000000000000001, "-5e-324"},
	    {0x7fefffffffffffff, "1.7976931348623157e+308"},
	    {0xffefffffffffffff, "-1.7976931348623157e+308"},
	    {0x4340000000000000, "9007199254740992"},
	    {0xc340000000000000, "-9007199254740992"},
	    {0x4430000000000000, "295147905179352830000"},
	    {0x44b52d02c7e14af5, "9.999999999999997e+22"},
	    {0x44b52d02c7e14af6, "1e+23"},
	    {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
	    {0x444b1ae4d6e2ef4e, "999999999999999700000"},
	    {0x444b1ae4d6e2ef4f, "999999999999999900000"},
	    {0x444b1ae4d6e2ef50, "1e+21"},
	    {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
	    {0x3eb0c6f7a0b5ed8d, "0.000001"},
	    {0x41b3de4355555553, "333333333.3333332"},
	    {0x41b3de4355555554, "333333333.33333325"},
	    {0x41b3de4355555555, "333333333.3333333"},
	    {0x41b3de4355555556, "333333333.3333334"},
	    {0x41b3de4355555557, "333333333.33333343"},
	    {0xbecbf647612f3696, "-0.0000033333333333333333"},
	    {0x43143ff3c1cb0959, "1424953923781206.2"},
	};
	char out[32];

	(void)state;
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
		double d;
		memcpy(&d, &samples[i].bits, sizeof(d));
		sl_jcs_number(d, out);
		if (strcmp(out, samples[i].text))
			fail_msg("%016llx: %s, not %s", (unsigned long long)samples[i].bits, out,
			         samples[i].text);
	}
}

/* Nested objects sorted at every level; escapes only where JSON needs
 * them; integers as ECMAScript writes them; the digest of the text. */
static void nesting_escapes_and_digest(void **state)
{
	char hex[65];
	json_t *v;

	(void)state;
	expect("{\"b\":{\"z\":1,\"a\":[{\"y\":true,\"x\":null}]},\"a\":\"\\t\\u0001\\u007f\"}",
	       "{\"a\":\"\\t\\u0001\x7f\",\"b\":{\"a\":[{\"x\":null,\"y\":true}],\"z\":1}}");
	expect("[-0.0, 100, 1e2, 123456789012345678, -1.5e-7]",
	       "[0,100,100,123456789012345680,-1.5e-7]");
	expect("{\"\":\"\",\"aa\":1,\"a\":2}", "{\"\":\"\",\"a\":2,\"aa\":1}");
	v = json_loads("{\"b\":2,\"a\":1}", 0, NULL);
	assert_true(sl_jcs_sha256(v, 1024, hex));
	/* sha256 of {"a":1,"b":2} */
	assert_string_equal(hex,
	                    "43258cff783fe7036d8a43033f830adfc60ec037382473548ac742b888292777");
	assert_false(sl_jcs_sha256(v, 5, hex)); /* past the limit */
	json_decref(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(rfc_serialization_sample),
	    cmocka_unit_test(rfc_sorting_sample),
	    cmocka_unit_test(rfc_number_samples),
	    cmocka_unit_test(nesting_escapes_and_digest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
