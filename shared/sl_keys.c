/*
 * sl_keys.c - Ed25519 keys, JWKS, compact JWS.
 */
#include "sl_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_JWS (64 * 1024)

char *sl_b64(const unsigned char *p, size_t n)
{
	char *out = sl_calloc(1, 4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	return out;
}

long sl_b64_decode(const char *s, size_t len, unsigned char *out, size_t max)
{
	size_t pad = 0, n;
	unsigned char *buf;
	int got;

	if (len % 4 || len > MAX_JWS * 4 ||
	    strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") < len)
		return -1;
	while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
		pad++;
	if (memchr(s, '=', len - pad)) /* padding only at the end */
		return -1;
	buf = sl_calloc(1, len / 4 * 3 + 1);
	got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	n = got < 0 ? 0 : (size_t)got - pad;
	if (got < 0 || n > max) {
		free(buf);
		return -1;
	}
	memcpy(out, buf, n);
	free(buf);
	return (long)n;
}

char *sl_b64url(const unsigned char *p, size_t n)
{
	char *out = sl_b64(p, n);
	size_t len = strlen(out);

	for (size_t i = 0; i < len; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	while (len > 0 && out[len - 1] == '=')
		out[--len] = '\0';
	return out;
}

long sl_b64url_decode(const char *s, size_t len, unsigned char *out, size_t max)
{
	size_t pad = (4 - len % 4) % 4;
	char *std;
	long n;

	if (len % 4 == 1 || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                              "0123456789-_") < len)
		return -1;
	std = sl_calloc(1, len + pad + 1);
	for (size_t i = 0; i < len; i++)
		std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	memset(std + len, '=', pad);
	n = sl_b64_decode(std, len + pad, out, max);
	free(std);
	return n;
}

sl_status sl_keyset_load(sl_keyset *ks, const char *path, char *errbuf, size_t errsize)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *keys, *k;
	sl_status st = SL_OK;
	size_t i;

	memset(ks, 0, sizeof(*ks));
	if (!root)
		return sl_err(errbuf, errsize, SL_INVALID, "%s: line %d: %s", path, jerr.line,
		              jerr.text);
	keys = json_object_get(root, "keys");
	if (!json_is_array(keys) || !json_array_size(keys))
		st = sl_err(errbuf, errsize, SL_INVALID, "%s: must be a JWKS with a \"keys\" list",
		            path);
	json_array_foreach (st ? NULL : keys, i, k) {
		const char *kid = json_string_value(json_object_get(k, "kid"));
		const char *kty = json_string_value(json_object_get(k, "kty"));
		const char *crv = json_string_value(json_object_get(k, "crv"));
		const char *x = json_string_value(json_object_get(k, "x"));
		unsigned char raw[32];
		EVP_PKEY *key;

		if (!kid || !*kid || sl_keyset_find(ks, kid)) {
			st = sl_err(errbuf, errsize, SL_INVALID, "%s: keys[%zu]: %s", path, i,
			            kid && *kid ? "its kid is given twice" : "it has no kid");
			break;
		}
		if (!kty || strcmp(kty, "OKP") || !crv || strcmp(crv, "Ed25519") || !x ||
		    sl_b64url_decode(x, strlen(x), raw, sizeof(raw)) != 32 ||
		    json_object_get(k, "d") ||
		    !(key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, 32))) {
			st =
			    sl_err(errbuf, errsize, SL_INVALID,
			           "%s: keys[%zu] (%s): must be a public Ed25519 key (kty OKP, crv "
			           "Ed25519, x)",
			           path, i, kid);
			break;
		}
		ks->k = sl_realloc(ks->k, (ks->n + 1) * sizeof(*ks->k));
		ks->k[ks->n].kid = sl_strdup(kid);
		ks->k[ks->n].key = key;
		memcpy(ks->k[ks->n++].raw, raw, 32);
	}
	json_decref(root);
	if (st)
		sl_keyset_free(ks);
	return st;
}

const sl_pubkey *sl_keyset_find(const sl_keyset *ks, const char *kid)
{
	for (size_t i = 0; i < ks->n; i++)
		if (!strcmp(ks->k[i].kid, kid))
			return &ks->k[i];
	return NULL;
}

void sl_keyset_free(sl_keyset *ks)
{
	for (size_t i = 0; i < ks->n; i++) {
		free(ks->k[i].kid);
		EVP_PKEY_free(ks->k[i].key);
	}
	free(ks->k);
	memset(ks, 0, sizeof(*ks));
}

/* No passphrase: an encrypted key is refused rather than asked for on a
 * terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

sl_status sl_signer_load(sl_signer *s, const char *path, const sl_keyset *ks, char *errbuf,
                         size_t errsize)
{
	FILE *f = fopen(path, "r");
	size_t len = 32;

	memset(s, 0, sizeof(*s));
	if (!f)
		return sl_err(errbuf, errsize, SL_INVALID, "%s: %s", path, strerror(errno));
	s->key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
	fclose(f);
	if (!s->key || EVP_PKEY_get_id(s->key) != EVP_PKEY_ED25519 ||
	    !EVP_PKEY_get_raw_public_key(s->key, s->raw, &len)) {
		sl_signer_free(s);
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: must be an Ed25519 private key in PEM, not encrypted (sluice "
		              "keys new makes one)",
		              path);
	}
	for (size_t i = 0; i < ks->n && !s->kid; i++)
		if (!memcmp(ks->k[i].raw, s->raw, 32))
			s->kid = sl_strdup(ks->k[i].kid);
	if (!s->kid) {
		sl_signer_free(s);
		return sl_err(
		    errbuf, errsize, SL_INVALID,
		    "%s: its public key is not in SLUICE_RECEIPT_KEYS: add it (sluice keys "
		    "new does)",
		    path);
	}
	return SL_OK;
}

void sl_signer_free(sl_signer *s)
{
	EVP_PKEY_free(s->key);
	free(s->kid);
	memset(s, 0, sizeof(*s));
}

bool sl_sign(const sl_signer *s, const void *msg, size_t len, unsigned char sig[64])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t siglen = 64;
	bool ok = ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) == 1 &&
	          EVP_DigestSign(ctx, sig, &siglen, msg, len) == 1 && siglen == 64;

	EVP_MD_CTX_free(ctx);
	return ok;
}

bool sl_verify(const sl_pubkey *k, const void *msg, size_t len, const unsigned char *sig,
               size_t siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && siglen == 64 && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, k->key) == 1 &&
	          EVP_DigestVerify(ctx, sig, siglen, msg, len) == 1;

	EVP_MD_CTX_free(ctx);
	return ok;
}

char *sl_jws_sign(const sl_signer *s, const char *payload)
{
	json_t *h = json_pack("{s:s, s:s, s:s}", "alg", "EdDSA", "kid", s->kid, "typ", "JWT");
	char *htext = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
	char *hb = sl_b64url((const unsigned char *)htext, strlen(htext));
	char *pb = sl_b64url((const unsigned char *)payload, strlen(payload));
	char *input = sl_asprintf("%s.%s", hb, pb), *sb = NULL, *out = NULL;
	unsigned char sig[64];

	if (sl_sign(s, input, strlen(input), sig)) {
		sb = sl_b64url(sig, sizeof(sig));
		out = sl_asprintf("%s.%s", input, sb);
	}
	json_decref(h);
	free(htext);
	free(hb);
	free(pb);
	free(input);
	free(sb);
	return out;
}

sl_status sl_jws_verify(const sl_keyset *ks, const char *jws, json_t **payload, char *errbuf,
                        size_t errsize)
{
	const char *dot1 = strchr(jws, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	size_t len = strlen(jws);
	unsigned char *buf = NULL, sig[64];
	json_t *h = NULL;
	const sl_pubkey *k;
	const char *alg, *kid;
	long n;
	sl_status st = SL_INVALID;

	*payload = NULL;
	if (len > MAX_JWS || !dot2 || strchr(dot2 + 1, '.'))
		return sl_err(errbuf, errsize, SL_INVALID, "not a compact JWS");
	buf = sl_calloc(1, len + 1);
	if ((n = sl_b64url_decode(jws, (size_t)(dot1 - jws), buf, len)) < 0 ||
	    !(h = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL))) {
		sl_err(errbuf, errsize, st, "its header is not base64url JSON");
		goto out;
	}
	alg = json_string_value(json_object_get(h, "alg"));
	kid = json_string_value(json_object_get(h, "kid"));
	if (!alg || strcmp(alg, "EdDSA") || json_object_get(h, "crit")) {
		sl_err(errbuf, errsize, st, "its algorithm is not EdDSA");
		goto out;
	}
	if (!kid || !(k = sl_keyset_find(ks, kid))) {
		sl_err(errbuf, errsize, st, "it is signed by a key not in SLUICE_RECEIPT_KEYS");
		goto out;
	}
	if (sl_b64url_decode(dot2 + 1, strlen(dot2 + 1), sig, sizeof(sig)) != 64 ||
	    !sl_verify(k, jws, (size_t)(dot2 - jws), sig, 64)) {
		sl_err(errbuf, errsize, st, "its signature does not verify");
		goto out;
	}
	if ((n = sl_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, len)) < 0 ||
	    !(*payload = json_loadb((const char *)buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL)) ||
	    !json_is_object(*payload)) {
		json_decref(*payload);
		*payload = NULL;
		sl_err(errbuf, errsize, st, "its payload is not a JSON object");
		goto out;
	}
	st = SL_OK;
out:
	json_decref(h);
	free(buf);
	return st;
}

sl_status sl_keys_new(const char *kid, const char *key_path, const char *jwks_path, char *errbuf,
                      size_t errsize)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	EVP_PKEY *key = NULL;
	unsigned char raw[32];
	size_t rawlen = sizeof(raw);
	json_t *jwks = NULL, *keys, *k;
	char *x = NULL;
	FILE *f = NULL;
	int fd = -1;
	size_t i;
	sl_status st = SL_OK;

	if (access(jwks_path, F_OK) == 0) {
		json_error_t jerr;
		if (!(jwks = json_load_file(jwks_path, JSON_REJECT_DUPLICATES, &jerr)) ||
		    !json_is_array(json_object_get(jwks, "keys"))) {
			st = sl_err(errbuf, errsize, SL_INVALID, "%s: not a JWKS", jwks_path);
			goto out;
		}
	} else {
		jwks = json_pack("{s:[]}", "keys");
	}
	keys = json_object_get(jwks, "keys");
	json_array_foreach (keys, i, k)
		if (json_is_string(json_object_get(k, "kid")) &&
		    !strcmp(json_string_value(json_object_get(k, "kid")), kid)) {
			st = sl_err(errbuf, errsize, SL_INVALID, "%s already has a key %s",
			            jwks_path, kid);
			goto out;
		}
	if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &key) != 1 ||
	    !EVP_PKEY_get_raw_public_key(key, raw, &rawlen)) {
		st = sl_err(errbuf, errsize, SL_FATAL, "cannot make an Ed25519 key");
		goto out;
	}
	if ((fd = open(key_path, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0 ||
	    !(f = fdopen(fd, "w"))) {
		st = sl_err(errbuf, errsize, SL_INVALID, "%s: %s", key_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (!PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) || fclose(f)) {
		f = NULL;
		st = sl_err(errbuf, errsize, SL_FATAL, "%s: cannot write the key", key_path);
		goto out;
	}
	f = NULL;
	x = sl_b64url(raw, rawlen);
	json_array_append_new(keys, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "OKP", "crv",
	                                      "Ed25519", "kid", kid, "use", "sig", "alg", "EdDSA",
	                                      "x", x));
	if (json_dump_file(jwks, jwks_path, JSON_INDENT(2)))
		st = sl_err(errbuf, errsize, SL_FATAL, "%s: cannot write the JWKS", jwks_path);
out:
	if (f)
		fclose(f);
	free(x);
	json_decref(jwks);
	EVP_PKEY_free(key);
	EVP_PKEY_CTX_free(ctx);
	return st;
}
