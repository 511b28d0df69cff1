/*
 * ap_oidc.c - OIDC bearer tokens: which keys, which algorithms, which
 * claims. cjose parses the JWS and checks its signature.
 */
#include "ap_oidc.h"

#include "sl_http.h"
#include "sl_log.h"
#include "sl_text.h"

#include <cjose/cjose.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKEN (16 * 1024)
#define MAX_JWKS (1024 * 1024)
#define MAX_NAME 256
#define MAX_GROUPS 256
#define FETCH_TIMEOUT_MS 5000
#define KEYS_MAX_AGE_MS (3600 * 1000LL)
#define MIN_RSA_BITS 2048

/* A key and the one algorithm it may verify: RS256 for an RSA key, ES256
 * for an EC P-256 key. No other kind (a shared secret least of all). */
typedef struct key {
	char *kid;
	const char *alg;
	cjose_jwk_t *jwk;
} key;

typedef struct keyset {
	key *k;
	size_t n;
} keyset;

struct ap_oidc {
	char *issuer, *audience, *jwks_file, *jwks_url, *name_claim, *groups_claim;
	json_t *roles; /* {"GROUP": ["ROLE", ...]}, checked */
	unsigned (*role_bits)(const char *);
	keyset file_keys; /* fixed at start */
	pthread_mutex_t mu;
	keyset url_keys;      /* replaced by each fetch (mu) */
	long long fetched_ms; /* monotonic: the last fetch begun (mu; 0: none) */
	long long keys_ms;    /* the last one that brought keys (mu) */
};

/* How long the base64url text (no padding) at the start of s is; 0 when
 * it cannot be one (a length of 4n + 1). cjose asserts, aborting the
 * process, on such text: everything handed to it is checked first. */
static size_t b64url_len(const char *s)
{
	size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");

	return n % 4 == 1 ? 0 : n;
}

/* The public key j describes, rebuilt from the members its kind needs
 * (RSA: n, e; EC: crv, x, y), each checked; NULL, saying why, when it has
 * not got them. */
static cjose_jwk_t *import_key(const json_t *j, const char **why)
{
	static const char *const rsa[] = {"n", "e", NULL}, *const ec[] = {"x", "y", NULL};
	const char *kty = json_string_value(json_object_get(j, "kty"));
	const char *const *fields = NULL;
	json_t *clean;
	cjose_jwk_t *jwk = NULL;
	cjose_err err;

	if (kty && !strcmp(kty, "RSA"))
		fields = rsa;
	else if (kty && !strcmp(kty, "EC"))
		fields = ec;
	if (!fields) {
		*why = "not an RSA or EC public key";
		return NULL;
	}
	clean = json_pack("{s:s}", "kty", kty);
	if (fields == ec)
		json_object_set(clean, "crv", json_object_get(j, "crv"));
	for (size_t i = 0; fields[i]; i++) {
		const char *v = json_string_value(json_object_get(j, fields[i]));
		if (!v || !*v || b64url_len(v) != strlen(v)) {
			*why = "a member of the key is not base64url";
			json_decref(clean);
			return NULL;
		}
		json_object_set_new(clean, fields[i], json_string(v));
	}
	if (fields == ec && !json_is_string(json_object_get(clean, "crv")))
		*why = "an EC key with no crv";
	else if (!(jwk = cjose_jwk_import_json((cjose_header_t *)clean, &err)))
		*why = "not a key cjose can read";
	json_decref(clean);
	return jwk;
}

static void keyset_free(keyset *ks)
{
	for (size_t i = 0; i < ks->n; i++) {
		free(ks->k[i].kid);
		cjose_jwk_release(ks->k[i].jwk);
	}
	free(ks->k);
	ks->k = NULL;
	ks->n = 0;
}

/* The algorithm jwk may verify, or NULL (said why in why). */
static const char *key_alg(const json_t *j, cjose_jwk_t *jwk, const char **why)
{
	const char *alg = json_string_value(json_object_get(j, "alg"));
	const char *use = json_string_value(json_object_get(j, "use"));
	const char *mine = NULL;
	cjose_err err;

	switch (cjose_jwk_get_kty(jwk, &err)) {
	case CJOSE_JWK_KTY_RSA:
		if (cjose_jwk_get_keysize(jwk, &err) < MIN_RSA_BITS)
			*why = "an RSA key shorter than 2048 bits";
		else
			mine = "RS256";
		break;
	case CJOSE_JWK_KTY_EC:
		if (cjose_jwk_EC_get_curve(jwk, &err) != CJOSE_JWK_EC_P_256)
			*why = "an EC key not on P-256";
		else
			mine = "ES256";
		break;
	default: *why = "not an RSA or EC public key";
	}
	if (mine && use && strcmp(use, "sig"))
		*why = "not a signing key (use)", mine = NULL;
	if (mine && alg && strcmp(alg, mine))
		*why = "its alg is not RS256 (RSA) or ES256 (EC)", mine = NULL;
	return mine;
}

/* The usable keys of a JWKS; those it cannot use are logged and left out.
 * SL_INVALID when it is not a JWKS or has no usable key. */
static sl_status parse_jwks(const json_t *root, const char *where, keyset *out, char *errbuf,
                            size_t errsize)
{
	const json_t *keys = json_object_get(root, "keys");
	json_t *j;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (!json_is_array(keys))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: must be a JWKS, an object with a \"keys\" list", where);
	json_array_foreach (keys, i, j) {
		const char *kid = json_string_value(json_object_get(j, "kid"));
		const char *why = NULL, *alg = NULL;
		cjose_jwk_t *jwk = NULL;

		if (!kid || !*kid)
			why = "no kid";
		else if (json_object_get(j, "d"))
			why = "a private key: give the public part only";
		else if ((jwk = import_key(j, &why)))
			alg = key_alg(j, jwk, &why);
		if (!alg) {
			sl_warn("oidc: %s: keys[%zu] left out: %s", where, i, why);
			cjose_jwk_release(jwk);
			continue;
		}
		out->k = sl_realloc(out->k, (out->n + 1) * sizeof(*out->k));
		out->k[out->n++] = (key){.kid = sl_strdup(kid), .alg = alg, .jwk = jwk};
	}
	if (out->n == 0)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "%s: no RS256 or ES256 signing key with a kid", where);
	return SL_OK;
}

/* Fetches jwks_url and, when it brings keys, puts them in place of the
 * last ones; logged either way. */
static void fetch(ap_oidc *o, const char *why)
{
	static const char *const headers[] = {"Accept: application/json", NULL};
	sl_http_response resp = {0};
	char errbuf[512];
	keyset ks = {0};
	json_t *root = NULL;
	sl_status st;

	st = sl_http_request("GET", o->jwks_url, headers, NULL, MAX_JWKS, FETCH_TIMEOUT_MS, &resp,
	                     errbuf, sizeof(errbuf));
	if (!st && resp.status != 200)
		st = sl_err(errbuf, sizeof(errbuf), SL_RETRY, "status %ld", resp.status);
	if (!st && !(root = json_loadb(resp.body, resp.len, JSON_REJECT_DUPLICATES, NULL)))
		st = sl_err(errbuf, sizeof(errbuf), SL_INVALID, "not JSON");
	if (!st)
		st = parse_jwks(root, o->jwks_url, &ks, errbuf, sizeof(errbuf));
	json_decref(root);
	sl_http_response_free(&resp);
	if (st) {
		sl_warn("oidc: JWKS %s (%s): %s; keeping the keys it had", o->jwks_url, why,
		        errbuf);
		return;
	}
	pthread_mutex_lock(&o->mu);
	keyset_free(&o->url_keys);
	o->url_keys = ks;
	o->keys_ms = sl_mono_ms();
	pthread_mutex_unlock(&o->mu);
	sl_info("oidc: %zu key(s) from %s (%s)", ks.n, o->jwks_url, why);
}

/* Whether a fetch may begin now (at most one every AP_OIDC_REFETCH_S);
 * if so, it is counted as begun. stale: only when the keys are old. */
static bool may_fetch(ap_oidc *o, bool stale)
{
	long long now = sl_mono_ms();
	bool ok;

	if (!o->jwks_url)
		return false;
	pthread_mutex_lock(&o->mu);
	ok = (!stale || now - o->keys_ms >= KEYS_MAX_AGE_MS) &&
	     (!o->fetched_ms || now - o->fetched_ms >= AP_OIDC_REFETCH_S * 1000LL);
	if (ok)
		o->fetched_ms = now;
	pthread_mutex_unlock(&o->mu);
	return ok;
}

/* The key kid names, retained (cjose_jwk_release it), and its algorithm. */
static cjose_jwk_t *find(ap_oidc *o, const char *kid, const char **alg)
{
	cjose_jwk_t *jwk = NULL;
	cjose_err err;

	pthread_mutex_lock(&o->mu);
	for (int set = 0; set < 2 && !jwk; set++) {
		const keyset *ks = set ? &o->url_keys : &o->file_keys;
		for (size_t i = 0; i < ks->n && !jwk; i++)
			if (!strcmp(ks->k[i].kid, kid)) {
				jwk = cjose_jwk_retain(ks->k[i].jwk, &err);
				*alg = ks->k[i].alg;
			}
	}
	pthread_mutex_unlock(&o->mu);
	return jwk;
}

static sl_status config_text(const json_t *config, const char *field, bool required,
                             const char *dflt, char **out, char *errbuf, size_t errsize)
{
	const json_t *v = json_object_get(config, field);

	*out = NULL;
	if (!v && !required) {
		*out = dflt ? sl_strdup(dflt) : NULL;
		return SL_OK;
	}
	if (!json_is_string(v) || !json_string_length(v))
		return sl_err(errbuf, errsize, SL_INVALID, "SLUICE_ACCESS: oidc.%s must be a text",
		              field);
	*out = sl_strdup(json_string_value(v));
	return SL_OK;
}

/* roles: {"GROUP": ["ROLE", ...]} (a single "ROLE" too), every role known. */
static sl_status config_roles(ap_oidc *o, const json_t *v, char *errbuf, size_t errsize)
{
	const char *group;
	json_t *roles;

	o->roles = json_object();
	if (!v)
		return SL_OK;
	if (!json_is_object(v))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "SLUICE_ACCESS: oidc.roles must map group names to roles");
	json_object_foreach ((json_t *)v, group, roles) {
		json_t *list = json_is_string(roles) ? json_pack("[O]", roles) : json_incref(roles);
		json_t *r;
		size_t i;

		if (!json_is_array(list) || !json_array_size(list)) {
			json_decref(list);
			return sl_err(errbuf, errsize, SL_INVALID,
			              "SLUICE_ACCESS: oidc.roles.%s must list roles", group);
		}
		json_array_foreach (list, i, r) {
			if (!json_is_string(r) || !o->role_bits(json_string_value(r))) {
				json_decref(list);
				return sl_err(
				    errbuf, errsize, SL_INVALID,
				    "SLUICE_ACCESS: oidc.roles.%s[%zu] must be submitter, "
				    "approver, auditor or admin",
				    group, i);
			}
		}
		json_object_set_new(o->roles, group, list);
	}
	return SL_OK;
}

sl_status ap_oidc_new(ap_oidc **out, const json_t *config, unsigned (*role_bits)(const char *),
                      char *errbuf, size_t errsize)
{
	static const char *const fields[] = {"issuer",     "audience",     "jwks_file", "jwks_url",
	                                     "name_claim", "groups_claim", "roles",     NULL};
	ap_oidc *o = sl_calloc(1, sizeof(*o));
	const char *field;
	json_t *v;
	sl_status st = SL_OK;

	pthread_mutex_init(&o->mu, NULL);
	o->role_bits = role_bits;
	*out = NULL;
	if (!json_is_object(config))
		st = sl_err(errbuf, errsize, SL_INVALID, "SLUICE_ACCESS: oidc must be an object");
	json_object_foreach ((json_t *)(st ? NULL : config), field, v) {
		size_t i = 0;
		while (fields[i] && strcmp(fields[i], field))
			i++;
		if (!fields[i]) {
			st = sl_err(errbuf, errsize, SL_INVALID,
			            "SLUICE_ACCESS: oidc.%s is not a setting (issuer, audience, "
			            "jwks_file, jwks_url, name_claim, groups_claim, roles)",
			            field);
			break;
		}
	}
	if (!st)
		st = config_text(config, "issuer", true, NULL, &o->issuer, errbuf, errsize);
	if (!st)
		st = config_text(config, "audience", true, NULL, &o->audience, errbuf, errsize);
	if (!st)
		st = config_text(config, "jwks_file", false, NULL, &o->jwks_file, errbuf, errsize);
	if (!st)
		st = config_text(config, "jwks_url", false, NULL, &o->jwks_url, errbuf, errsize);
	if (!st)
		st = config_text(config, "name_claim", false, "sub", &o->name_claim, errbuf,
		                 errsize);
	if (!st)
		st = config_text(config, "groups_claim", false, "groups", &o->groups_claim, errbuf,
		                 errsize);
	if (!st)
		st = config_roles(o, json_object_get(config, "roles"), errbuf, errsize);
	if (!st && !o->jwks_file && !o->jwks_url)
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "SLUICE_ACCESS: oidc needs jwks_file or jwks_url");
	if (!st && o->jwks_url && strncmp(o->jwks_url, "https://", 8) &&
	    strncmp(o->jwks_url, "http://", 7))
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "SLUICE_ACCESS: oidc.jwks_url must be an http(s) URL");
	if (!st && o->jwks_file) {
		json_error_t jerr;
		json_t *root = json_load_file(o->jwks_file, JSON_REJECT_DUPLICATES, &jerr);
		char where[600];

		snprintf(where, sizeof(where), "SLUICE_ACCESS: oidc.jwks_file %s", o->jwks_file);
		if (!root)
			st = sl_err(errbuf, errsize, SL_INVALID, "%s: line %d: %s", where,
			            jerr.line, jerr.text);
		else
			st = parse_jwks(root, where, &o->file_keys, errbuf, errsize);
		json_decref(root);
	}
	if (st) {
		ap_oidc_free(o);
		return st;
	}
	if (o->jwks_url && may_fetch(o, false))
		fetch(o, "at start");
	*out = o;
	return SL_OK;
}

/* Whether claims' aud is o's audience, or a list holding it. */
static bool audience_ok(const ap_oidc *o, const json_t *aud)
{
	const json_t *v;
	size_t i;

	if (json_is_string(aud))
		return !strcmp(json_string_value(aud), o->audience);
	json_array_foreach (aud, i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), o->audience))
			return true;
	return false;
}

/* A name fit for logs and records: 1 to MAX_NAME bytes of UTF-8, no
 * control characters. */
static bool name_ok(const char *s)
{
	size_t len = s ? strlen(s) : 0;

	if (!len || len > MAX_NAME || !sl_text_valid(s, len))
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* The claims' name, groups and roles, after iss, aud, exp and nbf. */
static sl_status check_claims(const ap_oidc *o, const json_t *c, ap_oidc_identity *id, char *errbuf,
                              size_t errsize)
{
	const json_t *exp = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf");
	const json_t *groups = json_object_get(c, o->groups_claim), *g;
	const char *iss = json_string_value(json_object_get(c, "iss"));
	const char *name = json_string_value(json_object_get(c, o->name_claim));
	double now = (double)sl_now_ms() / 1000.0;
	size_t i;

	if (!iss || strcmp(iss, o->issuer))
		return sl_err(errbuf, errsize, SL_INVALID, "its issuer is not %s", o->issuer);
	if (!audience_ok(o, json_object_get(c, "aud")))
		return sl_err(errbuf, errsize, SL_INVALID, "its audience is not %s", o->audience);
	if (!json_is_number(exp))
		return sl_err(errbuf, errsize, SL_INVALID, "it has no exp");
	if (now > json_number_value(exp) + AP_OIDC_LEEWAY_S)
		return sl_err(errbuf, errsize, SL_INVALID, "it has expired");
	if (nbf && !json_is_number(nbf))
		return sl_err(errbuf, errsize, SL_INVALID, "its nbf is not a number");
	if (nbf && now + AP_OIDC_LEEWAY_S < json_number_value(nbf))
		return sl_err(errbuf, errsize, SL_INVALID, "it is not valid yet (nbf)");
	if (!name_ok(name))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "its %s claim is not a name (a text of 1 to %d bytes)", o->name_claim,
		              MAX_NAME);
	if (groups && (!json_is_array(groups) || json_array_size(groups) > MAX_GROUPS))
		return sl_err(errbuf, errsize, SL_INVALID,
		              "its %s claim is not a list of at most %d groups", o->groups_claim,
		              MAX_GROUPS);
	json_array_foreach (groups, i, g)
		if (!json_is_string(g) || !name_ok(json_string_value(g)))
			return sl_err(errbuf, errsize, SL_INVALID,
			              "its %s claim holds something that is not a group name",
			              o->groups_claim);
	id->name = sl_strdup(name);
	json_array_foreach (groups, i, g) {
		const json_t *roles = json_object_get(o->roles, json_string_value(g)), *r;
		size_t k;

		id->groups = sl_realloc(id->groups, (id->ngroups + 1) * sizeof(char *));
		id->groups[id->ngroups++] = sl_strdup(json_string_value(g));
		json_array_foreach (roles, k, r)
			id->roles |= o->role_bits(json_string_value(r));
	}
	return SL_OK;
}

/* Whether token is three parts of base64url joined by dots, the first
 * two not empty. */
static bool compact_jws(const char *token)
{
	const char *p = token;

	for (int part = 0; part < 3; part++) {
		size_t n = b64url_len(p);
		if ((n == 0 && part < 2) || p[n] != (part < 2 ? '.' : '\0'))
			return false;
		p += n + 1;
	}
	return true;
}

sl_status ap_oidc_verify(ap_oidc *o, const char *token, ap_oidc_identity *id, char *errbuf,
                         size_t errsize)
{
	size_t len = strlen(token), plen = 0;
	cjose_jws_t *jws = NULL;
	cjose_jwk_t *jwk = NULL;
	const char *alg, *kid, *key_alg_name = NULL;
	uint8_t *payload = NULL;
	json_t *hdr, *claims = NULL;
	cjose_err err;
	sl_status st = SL_OK;

	memset(id, 0, sizeof(*id));
	if (len > MAX_TOKEN)
		return sl_err(errbuf, errsize, SL_INVALID, "the token is longer than %d bytes",
		              MAX_TOKEN);
	if (!compact_jws(token) || !(jws = cjose_jws_import(token, len, &err)))
		return sl_err(errbuf, errsize, SL_INVALID, "not a signed JWT");
	hdr = (json_t *)cjose_jws_get_protected(jws);
	alg = json_string_value(json_object_get(hdr, "alg"));
	kid = json_string_value(json_object_get(hdr, "kid"));
	if (!alg || (strcmp(alg, "RS256") && strcmp(alg, "ES256")))
		st = sl_err(errbuf, errsize, SL_INVALID, "its algorithm is not RS256 or ES256");
	else if (json_object_get(hdr, "crit"))
		st = sl_err(errbuf, errsize, SL_INVALID, "it has critical header parameters");
	else if (!kid)
		st = sl_err(errbuf, errsize, SL_INVALID, "it names no key (kid)");
	if (st)
		goto out;
	if (may_fetch(o, true))
		fetch(o, "its keys are an hour old");
	if (!(jwk = find(o, kid, &key_alg_name)) && may_fetch(o, false)) {
		fetch(o, "a token names a key it does not know");
		jwk = find(o, kid, &key_alg_name);
	}
	if (!jwk)
		st = sl_err(errbuf, errsize, SL_INVALID, "its key is not in the JWKS");
	else if (strcmp(alg, key_alg_name))
		st = sl_err(errbuf, errsize, SL_INVALID, "its key is not a key for %s", alg);
	else if (!cjose_jws_verify(jws, jwk, &err))
		st = sl_err(errbuf, errsize, SL_INVALID, "its signature does not verify");
	else if (!cjose_jws_get_plaintext(jws, &payload, &plen, &err) ||
	         !(claims =
	               json_loadb((const char *)payload, plen, JSON_REJECT_DUPLICATES, NULL)) ||
	         !json_is_object(claims))
		st = sl_err(errbuf, errsize, SL_INVALID, "its claims are not a JSON object");
	else
		st = check_claims(o, claims, id, errbuf, errsize);
out:
	if (st)
		ap_oidc_identity_free(id);
	json_decref(claims);
	cjose_jwk_release(jwk);
	cjose_jws_release(jws);
	return st;
}

void ap_oidc_identity_free(ap_oidc_identity *id)
{
	free(id->name);
	for (size_t i = 0; i < id->ngroups; i++)
		free(id->groups[i]);
	free(id->groups);
	memset(id, 0, sizeof(*id));
}

void ap_oidc_free(ap_oidc *o)
{
	if (!o)
		return;
	keyset_free(&o->file_keys);
	keyset_free(&o->url_keys);
	json_decref(o->roles);
	pthread_mutex_destroy(&o->mu);
	free(o->issuer);
	free(o->audience);
	free(o->jwks_file);
	free(o->jwks_url);
	free(o->name_claim);
	free(o->groups_claim);
	free(o);
}
