/*
 * test_oidc.c - OIDC bearer tokens (ap_oidc): keys and tokens made here
 * with cjose, a JWKS file of their public halves; every token the approver
 * must refuse is refused, with its reason, and the claims it accepts map
 * to names, groups and roles.
 */
#include "../../approver/ap_access.h"
#include "../../approver/ap_oidc.h"

#include <cjose/cjose.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static char jwks_path[] = "/tmp/test_oidc_XXXXXX";
static cjose_jwk_t *rsa, *ec, *other_rsa, *small_rsa;

static unsigned role_bits(const char *name)
{
	return !strcmp(name, "approver") ? AP_APPROVER : !strcmp(name, "admin") ? AP_ADMIN : 0;
}

/* The public JWK of key, with kid, as JSON text; free() it. */
static char *public_jwk(cjose_jwk_t *key, const char *kid)
{
	cjose_err err;

	assert_true(cjose_jwk_set_kid(key, kid, strlen(kid), &err));
	return cjose_jwk_to_json(key, false, &err);
}

/* A JWKS file of rsa-1, ec-1, a shared secret, and an RSA key of 1024
 * bits: the last two must be left out. */
static void write_jwks(void)
{
	cjose_jwk_t *secret;
	cjose_err err;
	char *a, *b, *c, *d;
	FILE *f;

	secret = cjose_jwk_create_oct_random(32, &err);
	a = public_jwk(rsa, "rsa-1");
	b = public_jwk(ec, "ec-1");
	c = public_jwk(secret, "hmac-1");
	d = public_jwk(small_rsa, "rsa-small");
	f = fopen(jwks_path, "w");
	assert_non_null(f);
	fprintf(f, "{\"keys\":[%s,%s,%s,%s]}", a, b, c, d);
	fclose(f);
	free(a);
	free(b);
	free(c);
	free(d);
	cjose_jwk_release(secret);
}

static ap_oidc *setup_oidc(void)
{
	char text[1024], errbuf[256];
	json_t *config;
	ap_oidc *o;

	snprintf(text, sizeof(text),
	         "{\"issuer\":\"https://idp.test\",\"audience\":\"sluice\",\"jwks_file\":\"%s\","
	         "\"roles\":{\"sre\":[\"approver\"],\"ops\":\"admin\"}}",
	         jwks_path);
	config = json_loads(text, 0, NULL);
	assert_int_equal(ap_oidc_new(&o, config, role_bits, errbuf, sizeof(errbuf)), SL_OK);
	json_decref(config);
	return o;
}

/* A compact JWS of claims (JSON text) signed by key with alg, kid in its
 * header (kid NULL: none); free() it. */
static char *mint_with(cjose_jwk_t *key, const char *alg, const char *kid, const char *claims,
                       const char *crit)
{
	cjose_header_t *h = cjose_header_new(NULL);
	const char *ser;
	cjose_jws_t *jws;
	cjose_err err;
	char *out;

	cjose_header_set(h, CJOSE_HDR_ALG, alg, &err);
	if (kid)
		cjose_header_set(h, CJOSE_HDR_KID, kid, &err);
	if (crit)
		cjose_header_set_raw(h, "crit", crit, &err);
	jws = cjose_jws_sign(key, h, (const uint8_t *)claims, strlen(claims), &err);
	assert_non_null(jws);
	assert_true(cjose_jws_export(jws, &ser, &err));
	out = strdup(ser);
	cjose_jws_release(jws);
	cjose_header_release(h);
	return out;
}

static char *mint(cjose_jwk_t *key, const char *alg, const char *kid, const char *claims)
{
	return mint_with(key, alg, kid, claims, NULL);
}

/* Claims from iss, aud (JSON), exp and nbf offsets from now (0: none),
 * sub, groups (JSON, NULL: none); a static buffer. */
static const char *claims(const char *iss, const char *aud, long exp, long nbf, const char *sub,
                          const char *groups)
{
	static char buf[1024];
	long now = (long)time(NULL);
	int n =
	    snprintf(buf, sizeof(buf), "{\"iss\":\"%s\",\"aud\":%s,\"sub\":\"%s\"", iss, aud, sub);

	if (exp)
		n += snprintf(buf + n, sizeof(buf) - n, ",\"exp\":%ld", now + exp);
	if (nbf)
		n += snprintf(buf + n, sizeof(buf) - n, ",\"nbf\":%ld", now + nbf);
	if (groups)
		n += snprintf(buf + n, sizeof(buf) - n, ",\"groups\":%s", groups);
	snprintf(buf + n, sizeof(buf) - n, "}");
	return buf;
}

#define GOOD(sub, groups) claims("https://idp.test", "\"sluice\"", 300, 0, sub, groups)

/* Verifies token (freed); the status, the reason in why. */
static sl_status verify(ap_oidc *o, char *token, ap_oidc_identity *id, char *why, size_t size)
{
	sl_status st = ap_oidc_verify(o, token, id, why, size);

	free(token);
	return st;
}

/* Expects token refused with a reason holding reason. */
static void refused(ap_oidc *o, char *token, const char *reason)
{
	ap_oidc_identity id;
	char why[256];

	assert_int_equal(verify(o, token, &id, why, sizeof(why)), SL_INVALID);
	if (!strstr(why, reason))
		fail_msg("refused for \"%s\", not \"%s\"", why, reason);
	assert_null(id.name);
}

static void good_tokens_name_their_holder(void **state)
{
	ap_oidc *o = setup_oidc();
	ap_oidc_identity id;
	char why[256];

	(void)state;
	assert_int_equal(
	    verify(o, mint(rsa, "RS256", "rsa-1", GOOD("ann", "[\"sre\"]")), &id, why, sizeof(why)),
	    SL_OK);
	assert_string_equal(id.name, "ann");
	assert_int_equal(id.roles, AP_APPROVER);
	assert_int_equal(id.ngroups, 1);
	assert_string_equal(id.groups[0], "sre");
	ap_oidc_identity_free(&id);
	assert_int_equal(verify(o, mint(ec, "ES256", "ec-1", GOOD("ops-bot", "[\"ops\",\"x\"]")),
	                        &id, why, sizeof(why)),
	                 SL_OK);
	assert_string_equal(id.name, "ops-bot");
	assert_int_equal(id.roles, AP_ADMIN);
	assert_int_equal(id.ngroups, 2);
	ap_oidc_identity_free(&id);
	/* no groups: a name with no role (the API answers 403, saying so) */
	assert_int_equal(
	    verify(o, mint(rsa, "RS256", "rsa-1", GOOD("bob", NULL)), &id, why, sizeof(why)),
	    SL_OK);
	assert_int_equal(id.roles, 0);
	ap_oidc_identity_free(&id);
	/* an audience list holding ours; expired 30 s ago, inside the leeway */
	assert_int_equal(
	    verify(o,
	           mint(rsa, "RS256", "rsa-1",
	                claims("https://idp.test", "[\"x\",\"sluice\"]", -30, -10, "ann", NULL)),
	           &id, why, sizeof(why)),
	    SL_OK);
	ap_oidc_identity_free(&id);
	ap_oidc_free(o);
}

static void bad_tokens_are_refused(void **state)
{
	ap_oidc *o = setup_oidc();
	cjose_jwk_t *hmac;
	cjose_err err;
	const char *none = "{\"alg\":\"none\",\"kid\":\"rsa-1\"}", *body;
	char *pub, *h, *p, *token;
	size_t hl, pl;

	(void)state;
	refused(o,
	        mint(rsa, "RS256", "rsa-1",
	             claims("https://idp.test", "\"sluice\"", -120, 0, "ann", NULL)),
	        "expired");
	refused(o,
	        mint(rsa, "RS256", "rsa-1",
	             claims("https://idp.test", "\"sluice\"", 0, 0, "ann", NULL)),
	        "no exp");
	refused(o,
	        mint(rsa, "RS256", "rsa-1",
	             claims("https://idp.test", "\"sluice\"", 600, 300, "ann", NULL)),
	        "not valid yet");
	refused(o,
	        mint(rsa, "RS256", "rsa-1",
	             claims("https://idp.test", "\"other\"", 300, 0, "ann", NULL)),
	        "audience");
	refused(o,
	        mint(rsa, "RS256", "rsa-1",
	             claims("https://evil.test", "\"sluice\"", 300, 0, "ann", NULL)),
	        "issuer");
	refused(o, mint(rsa, "RS256", "rsa-1", GOOD("", NULL)), "sub claim is not a name");
	refused(o, mint(rsa, "RS256", "rsa-1", GOOD("ann", "\"sre\"")), "groups claim");
	/* signed by a key not in the JWKS, under a kid that is */
	refused(o, mint(other_rsa, "RS256", "rsa-1", GOOD("ann", "[\"ops\"]")),
	        "signature does not verify");
	refused(o, mint(other_rsa, "RS256", "rsa-9", GOOD("ann", NULL)), "not in the JWKS");
	refused(o, mint(rsa, "RS256", NULL, GOOD("ann", NULL)), "names no key");
	refused(o, mint(small_rsa, "RS256", "rsa-small", GOOD("ann", NULL)), "not in the JWKS");
	/* an EC signature claiming the RSA key */
	refused(o, mint(ec, "ES256", "rsa-1", GOOD("ann", NULL)), "not a key for ES256");
	refused(o, mint_with(rsa, "RS256", "rsa-1", GOOD("ann", NULL), "[\"exp\"]"),
	        "critical header");
	/* HS256 with the RSA key's public JWK as the secret: the classic
	 * confusion of algorithms */
	pub = public_jwk(rsa, "rsa-1");
	hmac = cjose_jwk_create_oct_spec((const uint8_t *)pub, strlen(pub), &err);
	refused(o, mint(hmac, "HS256", "rsa-1", GOOD("mallory", "[\"ops\"]")),
	        "not RS256 or ES256");
	refused(o, mint(hmac, "HS256", "hmac-1", GOOD("mallory", "[\"ops\"]")),
	        "not RS256 or ES256");
	cjose_jwk_release(hmac);
	free(pub);
	/* alg none, no signature */
	assert_true(cjose_base64url_encode((const uint8_t *)none, strlen(none), &h, &hl, &err));
	body = GOOD("mallory", "[\"ops\"]");
	assert_true(cjose_base64url_encode((const uint8_t *)body, strlen(body), &p, &pl, &err));
	token = malloc(hl + pl + 3);
	snprintf(token, hl + pl + 3, "%s.%s.", h, p);
	refused(o, token, "");
	free(h);
	free(p);
	refused(o, strdup("not.a.jwt"), "");
	ap_oidc_free(o);
}

/* Loads text as the oidc section; the status, the error in e. */
static sl_status config(const char *text, char *e, size_t size)
{
	json_t *c = json_loads(text, 0, NULL);
	ap_oidc *o = NULL;
	sl_status st;

	assert_non_null(c);
	st = ap_oidc_new(&o, c, role_bits, e, size);
	json_decref(c);
	assert_null(o);
	return st;
}

static void unusable_settings_are_named(void **state)
{
	char e[512], text[512];

	(void)state;
	assert_int_equal(config("{\"issuer\":\"i\",\"audience\":\"a\"}", e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "needs jwks_file or jwks_url"));
	assert_int_equal(config("{\"audience\":\"a\",\"jwks_url\":\"https://x\"}", e, sizeof(e)),
	                 SL_INVALID);
	assert_non_null(strstr(e, "oidc.issuer must be a text"));
	assert_int_equal(config("{\"issuer\":\"i\",\"audience\":\"a\",\"jwks_url\":\"file:///x\"}",
	                        e, sizeof(e)),
	                 SL_INVALID);
	assert_non_null(strstr(e, "http(s) URL"));
	assert_int_equal(config("{\"issuer\":\"i\",\"audience\":\"a\",\"jwks_url\":\"https://x\","
	                        "\"algs\":[]}",
	                        e, sizeof(e)),
	                 SL_INVALID);
	assert_non_null(strstr(e, "oidc.algs is not a setting"));
	assert_int_equal(config("{\"issuer\":\"i\",\"audience\":\"a\",\"jwks_url\":\"https://x\","
	                        "\"roles\":{\"sre\":[\"boss\"]}}",
	                        e, sizeof(e)),
	                 SL_INVALID);
	assert_non_null(strstr(e, "oidc.roles.sre[0] must be"));
	snprintf(text, sizeof(text),
	         "{\"issuer\":\"i\",\"audience\":\"a\",\"jwks_file\":\"%s.none\"}", jwks_path);
	assert_int_equal(config(text, e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "oidc.jwks_file"));
	/* a JWKS of a shared secret alone */
	{
		cjose_jwk_t *secret = cjose_jwk_create_oct_random(32, NULL);
		char *j = public_jwk(secret, "s");
		FILE *f = fopen(jwks_path, "w");
		fprintf(f, "{\"keys\":[%s]}", j);
		fclose(f);
		free(j);
		cjose_jwk_release(secret);
		snprintf(text, sizeof(text),
		         "{\"issuer\":\"i\",\"audience\":\"a\",\"jwks_file\":\"%s\"}", jwks_path);
		assert_int_equal(config(text, e, sizeof(e)), SL_INVALID);
		assert_non_null(strstr(e, "no RS256 or ES256 signing key"));
		write_jwks();
	}
}

/* cjose asserts (aborting the approver) on base64url of 4n + 1
 * characters, and on padding: found by fuzz_oidc. Such a token is refused
 * and such a key left out, before cjose sees either. */
static void base64_cjose_cannot_take_is_refused_first(void **state)
{
	ap_oidc *o = setup_oidc();
	char text[512], e[256];
	json_t *c;

	(void)state;
	refused(o, strdup("eyJhbGciOiJFUzI1NiIsImtpZCI6I==msifQ.n0.AAAA"), "not a signed JWT");
	refused(o, strdup("eyJhbGciOiJFUzI1NiIsImtpZCI6ImsifQ.eyJpc3MiOiJpIn0.AAAAA"),
	        "not a signed JWT");
	refused(o, strdup("a.b.c.d"), "not a signed JWT");
	ap_oidc_free(o);
	{
		FILE *f = fopen(jwks_path, "w");
		fputs(
		    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"n\":\"AQAQAB\",\"e\":\"AQAAA\"},"
		    "{\"kty\":\"EC\",\"kid\":\"x\",\"crv\":\"P-256\",\"x\":\"AA=A\",\"y\":\"A\"}]}",
		    f);
		fclose(f);
	}
	snprintf(text, sizeof(text), "{\"issuer\":\"i\",\"audience\":\"a\",\"jwks_file\":\"%s\"}",
	         jwks_path);
	c = json_loads(text, 0, NULL);
	assert_int_equal(ap_oidc_new(&o, c, role_bits, e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "no RS256 or ES256 signing key"));
	json_decref(c);
	write_jwks();
}

int main(void)
{
	static const uint8_t e65537[] = {1, 0, 1};
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(good_tokens_name_their_holder),
	    cmocka_unit_test(bad_tokens_are_refused),
	    cmocka_unit_test(unusable_settings_are_named),
	    cmocka_unit_test(base64_cjose_cannot_take_is_refused_first),
	};
	int fd = mkstemp(jwks_path), rc;

	if (fd < 0)
		return 1;
	close(fd);
	rsa = cjose_jwk_create_RSA_random(2048, e65537, sizeof(e65537), NULL);
	other_rsa = cjose_jwk_create_RSA_random(2048, e65537, sizeof(e65537), NULL);
	small_rsa = cjose_jwk_create_RSA_random(1024, e65537, sizeof(e65537), NULL);
	ec = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, NULL);
	write_jwks();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	cjose_jwk_release(rsa);
	cjose_jwk_release(other_rsa);
	cjose_jwk_release(small_rsa);
	cjose_jwk_release(ec);
	unlink(jwks_path);
	return rc;
}
