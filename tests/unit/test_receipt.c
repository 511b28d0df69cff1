/*
 * test_receipt.c - approval receipts: one made for a decision checks out
 * for exactly that run, requirement, call, tool and arguments while it is
 * good, signed by a known key, approving; every other case is refused with
 * its reason.
 */
#include "sl_receipt.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[] = "/tmp/test_receipt_XXXXXX";
static const char *const files[] = {"a.pem", "a.json", "b.pem", "b.json"};

static char *path(const char *name)
{
	return sl_asprintf("%s/%s", dir, name);
}

/* Expects receipt refused for of at now, for a reason holding why. */
static void refused(const sl_keyset *ks, const char *receipt, const sl_receipt_of *of,
                    long long now, const char *why)
{
	char errbuf[256];

	assert_int_equal(sl_receipt_check(ks, receipt, of, now, errbuf, sizeof(errbuf)),
	                 SL_INVALID);
	if (!strstr(errbuf, why))
		fail_msg("refused for \"%s\", not \"%s\"", errbuf, why);
}

static void receipts(void **state)
{
	char *ak = path("a.pem"), *aj = path("a.json"), *bk = path("b.pem"), *bj = path("b.json");
	char errbuf[512], *r, *rejected;
	json_t *args = json_pack("{s:s, s:i}", "user_id", "U-1", "n", 2);
	json_t *reordered = json_pack("{s:i, s:s}", "n", 2, "user_id", "U-1");
	json_t *other_args = json_pack("{s:s, s:i}", "user_id", "U-2", "n", 2);
	sl_receipt_of of = {"run-1", "req-1", "call-1", "delete_user_data", args};
	sl_receipt_of of2 = of;
	sl_keyset a, b;
	sl_signer s;
	long long now = 1790000000;

	(void)state;
	assert_int_equal(sl_keys_new("a", ak, aj, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(sl_keys_new("b", bk, bj, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(sl_keyset_load(&a, aj, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(sl_keyset_load(&b, bj, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(sl_signer_load(&s, ak, &a, errbuf, sizeof(errbuf)), SL_OK);
	r = sl_receipt_make(&s, &of, "approved", "ann", now);
	rejected = sl_receipt_make(&s, &of, "rejected", "ann", now);
	assert_non_null(r);
	assert_int_equal(sl_receipt_check(&a, r, &of, now, errbuf, sizeof(errbuf)), SL_OK);
	/* the same arguments in another order: one canonical form */
	of2.args = reordered;
	assert_int_equal(sl_receipt_check(&a, r, &of2, now + 60, errbuf, sizeof(errbuf)), SL_OK);
	of2.args = other_args;
	refused(&a, r, &of2, now, "not the ones approved");
	of2 = of;
	of2.requirement_id = "req-2";
	refused(&a, r, &of2, now, "another requirement's");
	of2 = of;
	of2.tool_call_id = "call-2";
	refused(&a, r, &of2, now, "another requirement's");
	of2 = of;
	of2.run_id = "run-2";
	refused(&a, r, &of2, now, "another requirement's");
	of2 = of;
	of2.tool_name = "transfer_funds";
	refused(&a, r, &of2, now, "another requirement's");
	refused(&a, r, &of, now + SL_RECEIPT_TTL_S, "expired");
	refused(&b, r, &of, now, "not in SLUICE_RECEIPT_KEYS");
	refused(&a, rejected, &of, now, "does not approve");
	refused(&a, NULL, &of, now, "no receipt");
	refused(&a, "", &of, now, "no receipt");
	refused(&a, "not.a.receipt", &of, now, "not base64url JSON");
	r[strlen(r) - 3] ^= 1; /* the signature changed */
	refused(&a, r, &of, now, "signature does not verify");
	free(r);
	free(rejected);
	json_decref(args);
	json_decref(reordered);
	json_decref(other_args);
	sl_signer_free(&s);
	sl_keyset_free(&a);
	sl_keyset_free(&b);
	free(ak);
	free(aj);
	free(bk);
	free(bj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(receipts),
	};
	int rc;

	if (!mkdtemp(dir))
		return 1;
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *p = path(files[i]);
		unlink(p);
		free(p);
	}
	rmdir(dir);
	return rc;
}
