/*
 * test_access.c - the approver's identities (ap_access): an access file of
 * token hashes and roles, SLUICE_API_TOKENS as admins, and every way a
 * file can be unusable, each named.
 */
#include "../../approver/ap_access.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static char path[] = "/tmp/test_access_XXXXXX";

/* Writes text to the test's access file; returns its path. */
static const char *file(const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* The hex SHA-256 of token, as `sluice token new` prints it. */
static void hash_of(const char *token, char out[65])
{
	ap_access a;
	char errbuf[256], spec[128];

	/* (a principal from SLUICE_API_TOKENS keeps the hash of its token) */
	snprintf(spec, sizeof(spec), "x:%s", token);
	assert_int_equal(ap_access_load(&a, NULL, spec, errbuf, sizeof(errbuf)), SL_OK);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", a.p[0].token_sha256[i]);
	ap_access_free(&a);
}

static void file_and_tokens(void **state)
{
	char ann[65], aud[65], text[1024], errbuf[256], roles[64];
	const ap_principal *p;
	char why[128];
	ap_access a;

	(void)state;
	hash_of("ann-token", ann);
	hash_of("audrey-token", aud);
	snprintf(
	    text, sizeof(text),
	    "{\"principals\":["
	    "{\"name\":\"ann\",\"token_sha256\":\"%s\",\"roles\":[\"approver\"],\"groups\":["
	    "\"sre\"]},"
	    "{\"name\":\"audrey\",\"token_sha256\":\"%s\",\"roles\":[\"auditor\",\"submitter\"]}]}",
	    ann, aud);
	assert_int_equal(ap_access_load(&a, file(text), "ops:ops-token", errbuf, sizeof(errbuf)),
	                 SL_OK);
	assert_int_equal(a.n, 3);
	p = ap_access_identify(&a, "ann-token", why, sizeof(why));
	assert_non_null(p);
	assert_string_equal(p->name, "ann");
	assert_int_equal(p->roles, AP_APPROVER);
	assert_int_equal(p->ngroups, 1);
	assert_string_equal(p->groups[0], "sre");
	p = ap_access_identify(&a, "audrey-token", why, sizeof(why));
	assert_non_null(p);
	ap_access_roles(p->roles, roles, sizeof(roles));
	assert_string_equal(roles, "submitter,auditor");
	p = ap_access_identify(&a, "ops-token", why, sizeof(why));
	assert_non_null(p);
	assert_int_equal(p->roles, AP_ADMIN); /* SLUICE_API_TOKENS: admins */
	assert_null(ap_access_identify(&a, "ann-token ", why, sizeof(why)));
	assert_null(ap_access_identify(&a, "", why, sizeof(why)));
	assert_null(ap_access_identify(&a, ann, why, sizeof(why))); /* the hash is not the token */
	ap_access_roles(0, roles, sizeof(roles));
	assert_string_equal(roles, "none");
	ap_access_free(&a);
}

/* Loads text as the access file (tokens as SLUICE_API_TOKENS); the error. */
static sl_status refused(const char *text, const char *tokens, char *errbuf, size_t size)
{
	ap_access a;
	sl_status st = ap_access_load(&a, text ? file(text) : NULL, tokens, errbuf, size);

	assert_int_equal(a.n, 0); /* nothing kept */
	return st;
}

static void unusable_files_are_named(void **state)
{
	char e[256], good[65], text[512];

	(void)state;
	hash_of("t", good);
	assert_int_equal(refused("{", NULL, e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "SLUICE_ACCESS"));
	assert_int_equal(refused("[]", NULL, e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "\"principals\" list"));
	assert_int_equal(
	    refused("{\"principals\":[{\"token_sha256\":\"00\",\"roles\":[\"admin\"]}]}", NULL, e,
	            sizeof(e)),
	    SL_INVALID);
	assert_non_null(strstr(e, "principals[0]: name must be a text"));
	assert_int_equal(refused("{\"principals\":[{\"name\":\"x\",\"token_sha256\":\"abc\","
	                         "\"roles\":[\"admin\"]}]}",
	                         NULL, e, sizeof(e)),
	                 SL_INVALID);
	assert_non_null(strstr(e, "principals[0] (x): token_sha256 must be 64 hex digits"));
	snprintf(text, sizeof(text),
	         "{\"principals\":[{\"name\":\"x\",\"token_sha256\":\"%s\",\"roles\":[\"boss\"]}]}",
	         good);
	assert_int_equal(refused(text, NULL, e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "principals[0] (x): roles[0] must be submitter"));
	snprintf(text, sizeof(text),
	         "{\"principals\":[{\"name\":\"x\",\"token_sha256\":\"%s\",\"roles\":[]}]}", good);
	assert_int_equal(refused(text, NULL, e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "roles must list its roles"));
	snprintf(text, sizeof(text),
	         "{\"principals\":[{\"name\":\"x\",\"token_sha256\":\"%s\",\"roles\":[\"admin\"]},"
	         "{\"name\":\"y\",\"token_sha256\":\"%s\",\"roles\":[\"admin\"]}]}",
	         good, good);
	assert_int_equal(refused(text, NULL, e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "principals[1]: a token is given twice"));
	snprintf(
	    text, sizeof(text),
	    "{\"principals\":[{\"name\":\"x\",\"token_sha256\":\"%s\",\"roles\":[\"admin\"]}]}",
	    good);
	assert_int_equal(refused(text, "x:other", e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "the name x is given twice"));
	assert_int_equal(refused(text, "z:t", e, sizeof(e)), SL_INVALID); /* t is x's token */
	assert_non_null(strstr(e, "a token is given twice"));
	assert_int_equal(refused("{\"principals\":[],\"oidc\":{}}", NULL, e, sizeof(e)),
	                 SL_INVALID);
	assert_non_null(strstr(e, "oidc.issuer must be a text"));
	assert_int_equal(refused("{\"principals\":[]}", NULL, e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "no identity"));
	assert_int_equal(refused(NULL, "nocolon", e, sizeof(e)), SL_INVALID);
	assert_non_null(strstr(e, "NAME:TOKEN"));
	assert_int_equal(refused(NULL, NULL, e, sizeof(e)), SL_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(file_and_tokens),
	    cmocka_unit_test(unusable_files_are_named),
	};
	int fd = mkstemp(path), rc;

	if (fd < 0)
		return 1;
	close(fd);
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(path);
	return rc;
}
