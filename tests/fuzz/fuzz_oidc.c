/*
 * libFuzzer target: what an OIDC bearer token and a JWKS bring, both
 * hostile. The first byte picks what the rest is: a JWKS (as a JWKS URL's
 * answer is parsed), a token's claims (checked as after a good signature),
 * or a bearer token, checked against an EC key made at start. ap_oidc.c
 * is included to reach its parsers of each.
 */
#include "../../approver/ap_oidc.c"

#include <stdint.h>
#include <unistd.h>

static ap_oidc *oidc;

static unsigned role_bits(const char *name)
{
	return !strcmp(name, "approver") ? 2 : 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/fuzz_oidc_XXXXXX", *pub, errbuf[512];
	cjose_jwk_t *key = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, NULL);
	int fd = mkstemp(path);
	json_t *config;
	FILE *f;

	(void)argc;
	(void)argv;
	setenv("SLUICE_LOG_LEVEL", "error", 1);
	sl_log_init("fuzz_oidc");
	cjose_jwk_set_kid(key, "k", 1, NULL);
	pub = cjose_jwk_to_json(key, false, NULL);
	f = fdopen(fd, "w");
	fprintf(f, "{\"keys\":[%s]}", pub);
	fclose(f);
	config = json_pack("{s:s, s:s, s:s, s:{s:[s]}}", "issuer", "i", "audience", "a",
	                   "jwks_file", path, "roles", "g", "approver");
	if (ap_oidc_new(&oidc, config, role_bits, errbuf, sizeof(errbuf)))
		abort();
	unlink(path);
	json_decref(config);
	free(pub);
	cjose_jwk_release(key);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char errbuf[512];
	ap_oidc_identity id = {0};
	json_t *doc;
	char *text;
	keyset ks;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		if ((doc = json_loadb((const char *)data + 1, size - 1, 0, NULL))) {
			if (!parse_jwks(doc, "fuzz", &ks, errbuf, sizeof(errbuf)))
				keyset_free(&ks);
			json_decref(doc);
		}
		break;
	case 1:
		if ((doc = json_loadb((const char *)data + 1, size - 1, 0, NULL))) {
			if (json_is_object(doc))
				(void)check_claims(oidc, doc, &id, errbuf, sizeof(errbuf));
			ap_oidc_identity_free(&id);
			json_decref(doc);
		}
		break;
	default:
		text = strndup((const char *)data + 1, size - 1);
		if (!ap_oidc_verify(oidc, text, &id, errbuf, sizeof(errbuf)))
			ap_oidc_identity_free(&id);
		free(text);
	}
	return 0;
}
