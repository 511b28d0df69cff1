/*
 * test_keys.c - Ed25519 keys, JWS and the ledger's signed checkpoints:
 * RFC 8037's Ed25519 example (Appendix A.4), base64url's edges, key pairs
 * made by sl_keys_new, and checkpoints that open only as signed.
 */
#include "sl_keys.h"
#include "sl_ledger.h"

#include <openssl/pem.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[] = "/tmp/test_keys_XXXXXX";
static const char *const files[] = {"k1.pem",     "k2.pem",    "keys.json",
                                    "other.json", "other.pem", "enc.pem"};

static char *path(const char *name)
{
	return sl_asprintf("%s/%s", dir, name);
}

/* RFC 8037, A.4: the signature of the example, made and checked. */
static void rfc8037_example(void **state)
{
	static const char d[] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
	                  x[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
	                  input[] = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc",
	                  want[] =
	                      "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5Bh"
	                      "VsPt9g7sVvpAr_MuM0KAg";
	unsigned char priv[32], sig[64];
	sl_signer s = {0};
	sl_pubkey k = {0};
	char *got;

	(void)state;
	assert_int_equal(sl_b64url_decode(d, strlen(d), priv, 32), 32);
	assert_int_equal(sl_b64url_decode(x, strlen(x), k.raw, 32), 32);
	s.key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, 32);
	k.key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, k.raw, 32);
	assert_true(sl_sign(&s, input, strlen(input), sig));
	got = sl_b64url(sig, 64);
	assert_string_equal(got, want);
	assert_true(sl_verify(&k, input, strlen(input), sig, 64));
	sig[10] ^= 1;
	assert_false(sl_verify(&k, input, strlen(input), sig, 64));
	free(got);
	EVP_PKEY_free(s.key);
	EVP_PKEY_free(k.key);
}

static void base64url_edges(void **state)
{
	unsigned char out[8];
	char *e;

	(void)state;
	for (size_t n = 0; n <= 4; n++) {
		e = sl_b64url((const unsigned char *)"\xfb\xff\xfe\x01", n);
		assert_null(strchr(e, '='));
		assert_int_equal(sl_b64url_decode(e, strlen(e), out, sizeof(out)), (long)n);
		assert_memory_equal(out, "\xfb\xff\xfe\x01", n);
		free(e);
	}
	assert_int_equal(sl_b64url_decode("-_8", 3, out, sizeof(out)), 2);    /* fb ff */
	assert_int_equal(sl_b64url_decode("AAA=", 4, out, sizeof(out)), -1);  /* padding */
	assert_int_equal(sl_b64url_decode("AAAAA", 5, out, sizeof(out)), -1); /* 4n + 1 */
	assert_int_equal(sl_b64url_decode("AA+A", 4, out, sizeof(out)), -1);  /* not url */
	assert_int_equal(sl_b64url_decode("AAAAAAAAAAAA", 12, out, 8), -1);   /* too long */
}

/* A key pair made, loaded, signing JWS and checkpoints that verify; and
 * every way they do not. */
static void keys_jws_and_checkpoints(void **state)
{
	char *key = path("k1.pem"), *key2 = path("k2.pem"), *jwks = path("keys.json"),
	     *other = path("other.json"), *okey = path("other.pem");
	char errbuf[512], head[65], *jws, *note, *bad;
	sl_keyset ks, oks;
	sl_signer s;
	json_t *payload;
	long long size;

	(void)state;
	assert_int_equal(sl_keys_new("k1", key, jwks, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(sl_keys_new("k1", key2, jwks, errbuf, sizeof(errbuf)), SL_INVALID);
	assert_non_null(strstr(errbuf, "already has a key k1"));
	assert_int_equal(sl_keys_new("k2", key, jwks, errbuf, sizeof(errbuf)), SL_INVALID);
	assert_non_null(strstr(errbuf, "k1.pem")); /* never over a key */
	assert_int_equal(sl_keys_new("k2", key2, jwks, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(sl_keys_new("o1", okey, other, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(sl_keyset_load(&ks, jwks, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(ks.n, 2);
	assert_int_equal(sl_keyset_load(&oks, other, errbuf, sizeof(errbuf)), SL_OK);
	assert_int_equal(sl_signer_load(&s, key2, &oks, errbuf, sizeof(errbuf)), SL_INVALID);
	assert_non_null(strstr(errbuf, "not in SLUICE_RECEIPT_KEYS"));
	assert_int_equal(sl_signer_load(&s, key2, &ks, errbuf, sizeof(errbuf)), SL_OK);
	assert_string_equal(s.kid, "k2");
	{
		/* the same key, encrypted: refused, never asked for */
		char *enc = path("enc.pem");
		FILE *f = fopen(enc, "w");
		sl_signer e;
		assert_true(PEM_write_PrivateKey(f, s.key, EVP_aes_256_cbc(),
		                                 (unsigned char *)"secret", 6, NULL, NULL));
		fclose(f);
		assert_int_equal(sl_signer_load(&e, enc, &ks, errbuf, sizeof(errbuf)), SL_INVALID);
		if (!strstr(errbuf, "not encrypted"))
			fail_msg("%s", errbuf);
		free(enc);
	}

	jws = sl_jws_sign(&s, "{\"requirement_id\":\"r-1\",\"decision\":\"approved\"}");
	assert_int_equal(sl_jws_verify(&ks, jws, &payload, errbuf, sizeof(errbuf)), SL_OK);
	assert_string_equal(json_string_value(json_object_get(payload, "requirement_id")), "r-1");
	json_decref(payload);
	assert_int_equal(sl_jws_verify(&oks, jws, &payload, errbuf, sizeof(errbuf)), SL_INVALID);
	assert_non_null(strstr(errbuf, "not in SLUICE_RECEIPT_KEYS"));
	bad = sl_strdup(jws);
	bad[strchr(bad, '.') - bad + 3] ^= 1; /* the payload changed */
	assert_int_equal(sl_jws_verify(&ks, bad, &payload, errbuf, sizeof(errbuf)), SL_INVALID);
	assert_null(payload);
	free(bad);
	/* alg none, with no signature: {"alg":"none","kid":"k2"}.PAYLOAD. */
	{
		const char *p1 = strchr(jws, '.') + 1;
		bad = sl_asprintf("eyJhbGciOiJub25lIiwia2lkIjoiazIifQ.%.*s.",
		                  (int)(strchr(p1, '.') - p1), p1);
	}
	assert_int_equal(sl_jws_verify(&ks, bad, &payload, errbuf, sizeof(errbuf)), SL_INVALID);
	assert_non_null(strstr(errbuf, "not EdDSA"));
	free(bad);
	free(jws);

	note = sl_ledger_checkpoint(
	    &s, 42, "ab00000000000000000000000000000000000000000000000000000000000000");
	assert_non_null(note);
	assert_int_equal(
	    strncmp(note,
	            "sluice/"
	            "ledger\n42\nqwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 k2 ",
	            70),
	    0);
	assert_int_equal(sl_ledger_checkpoint_open(&ks, note, &size, head, errbuf, sizeof(errbuf)),
	                 SL_OK);
	assert_int_equal(size, 42);
	assert_string_equal(head,
	                    "ab00000000000000000000000000000000000000000000000000000000000000");
	assert_int_equal(sl_ledger_checkpoint_open(&oks, note, &size, head, errbuf, sizeof(errbuf)),
	                 SL_INVALID);
	note[14] = '3'; /* 32 entries, says the note now */
	assert_int_equal(sl_ledger_checkpoint_open(&ks, note, &size, head, errbuf, sizeof(errbuf)),
	                 SL_INVALID);
	assert_non_null(strstr(errbuf, "no signature by a known key"));
	assert_int_equal(sl_ledger_checkpoint_open(&ks, "other/log\n1\nAAAA\n\n", &size, head,
	                                           errbuf, sizeof(errbuf)),
	                 SL_INVALID);
	free(note);
	sl_signer_free(&s);
	sl_keyset_free(&ks);
	sl_keyset_free(&oks);
	free(key);
	free(key2);
	free(jwks);
	free(other);
	free(okey);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(rfc8037_example),
	    cmocka_unit_test(base64url_edges),
	    cmocka_unit_test(keys_jws_and_checkpoints),
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
