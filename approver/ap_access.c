/*
 * ap_access.c - the approver's principals and roles.
 */
#include "ap_access.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	unsigned bit;
} roles[] = {
    {"submitter", AP_SUBMITTER},
    {"approver", AP_APPROVER},
    {"auditor", AP_AUDITOR},
    {"admin", AP_ADMIN},
};

#define NROLES (sizeof(roles) / sizeof(roles[0]))

/* The bit of the role called name; 0 when there is none. */
static unsigned role_bit(const char *name)
{
	for (size_t r = 0; r < NROLES; r++)
		if (!strcmp(roles[r].name, name))
			return roles[r].bit;
	return 0;
}

static void sha256(const char *text, unsigned char out[32])
{
	unsigned int len = 0;

	EVP_Digest(text, strlen(text), out, &len, EVP_sha256(), NULL);
}

static ap_principal *add(ap_access *a, const char *name, unsigned role_bits)
{
	ap_principal *p;

	a->p = sl_realloc(a->p, (a->n + 1) * sizeof(*a->p));
	p = &a->p[a->n++];
	memset(p, 0, sizeof(*p));
	p->name = sl_strdup(name);
	p->roles = role_bits;
	return p;
}

/* A second principal with p's name or token hash. */
static sl_status unique(const ap_access *a, const ap_principal *p, const char *where, char *errbuf,
                        size_t errsize)
{
	for (size_t i = 0; i < a->n; i++) {
		if (&a->p[i] == p)
			continue;
		if (!strcmp(a->p[i].name, p->name))
			return sl_err(errbuf, errsize, SL_INVALID, "%s: the name %s is given twice",
			              where, p->name);
		if (!CRYPTO_memcmp(a->p[i].token_sha256, p->token_sha256, 32))
			return sl_err(errbuf, errsize, SL_INVALID, "%s: a token is given twice",
			              where);
	}
	return SL_OK;
}

static sl_status load_file(ap_access *a, const char *path, char *errbuf, size_t errsize)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr), *list, *jp;
	sl_status st = SL_OK;
	size_t i;

	if (!root)
		return sl_err(errbuf, errsize, SL_INVALID, "SLUICE_ACCESS %s: line %d: %s", path,
		              jerr.line, jerr.text);
	list = json_object_get(root, "principals");
	if (!json_is_object(root) || !json_is_array(list))
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "SLUICE_ACCESS %s: must be an object with a \"principals\" list", path);
	else if (json_object_get(root, "oidc"))
		st =
		    ap_oidc_new(&a->oidc, json_object_get(root, "oidc"), role_bit, errbuf, errsize);
	json_array_foreach (st ? NULL : list, i, jp) {
		const char *name = json_string_value(json_object_get(jp, "name"));
		const char *hex = json_string_value(json_object_get(jp, "token_sha256"));
		json_t *jroles = json_object_get(jp, "roles"),
		       *jgroups = json_object_get(jp, "groups");
		char where[64];
		unsigned char *hash = NULL;
		long hashlen = 0;
		unsigned bits = 0;
		ap_principal *p;
		json_t *v;
		size_t k;

		snprintf(where, sizeof(where), "SLUICE_ACCESS: principals[%zu]", i);
		if (!name || !*name) {
			st = sl_err(errbuf, errsize, SL_INVALID, "%s: name must be a text", where);
			break;
		}
		if (hex && strlen(hex) == 64)
			hash = OPENSSL_hexstr2buf(hex, &hashlen);
		if (!hash || hashlen != 32) {
			OPENSSL_free(hash);
			st = sl_err(errbuf, errsize, SL_INVALID,
			            "%s (%s): token_sha256 must be 64 hex digits (sluice token new "
			            "prints one)",
			            where, name);
			break;
		}
		if (!json_is_array(jroles) || json_array_size(jroles) == 0)
			st = sl_err(errbuf, errsize, SL_INVALID,
			            "%s (%s): roles must list its roles", where, name);
		json_array_foreach (st ? NULL : jroles, k, v) {
			unsigned bit = json_is_string(v) ? role_bit(json_string_value(v)) : 0;
			if (!bit) {
				st = sl_err(
				    errbuf, errsize, SL_INVALID,
				    "%s (%s): roles[%zu] must be submitter, approver, auditor "
				    "or admin",
				    where, name, k);
				break;
			}
			bits |= bit;
		}
		if (!st && jgroups && !json_is_array(jgroups))
			st = sl_err(errbuf, errsize, SL_INVALID, "%s (%s): groups must be a list",
			            where, name);
		if (st) {
			OPENSSL_free(hash);
			break;
		}
		p = add(a, name, bits);
		memcpy(p->token_sha256, hash, 32);
		OPENSSL_free(hash);
		json_array_foreach (jgroups, k, v) {
			if (!json_is_string(v)) {
				st = sl_err(errbuf, errsize, SL_INVALID,
				            "%s (%s): groups[%zu] must be a text", where, name, k);
				break;
			}
			p->groups = sl_realloc(p->groups, (p->ngroups + 1) * sizeof(char *));
			p->groups[p->ngroups++] = sl_strdup(json_string_value(v));
		}
		if (st || (st = unique(a, p, where, errbuf, errsize)))
			break;
	}
	json_decref(root);
	return st;
}

/* SLUICE_API_TOKENS: comma-separated NAME:TOKEN pairs, each an admin. */
static sl_status load_tokens(ap_access *a, const char *spec, char *errbuf, size_t errsize)
{
	char *copy = sl_strdup(spec), *save = NULL, *pair;
	sl_status st = SL_OK;

	for (pair = strtok_r(copy, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
		char *colon;
		ap_principal *p;

		while (*pair == ' ')
			pair++;
		colon = strchr(pair, ':');
		if (!colon || colon == pair || !colon[1]) {
			st = sl_err(errbuf, errsize, SL_INVALID,
			            "SLUICE_API_TOKENS: each entry must be NAME:TOKEN");
			break;
		}
		*colon = '\0';
		p = add(a, pair, AP_ADMIN);
		sha256(colon + 1, p->token_sha256);
		if ((st = unique(a, p, "SLUICE_API_TOKENS", errbuf, errsize)))
			break;
	}
	free(copy);
	return st;
}

sl_status ap_access_load(ap_access *a, const char *path, const char *api_tokens, char *errbuf,
                         size_t errsize)
{
	sl_status st = SL_OK;

	memset(a, 0, sizeof(*a));
	if (path && *path)
		st = load_file(a, path, errbuf, errsize);
	if (!st && api_tokens && *api_tokens)
		st = load_tokens(a, api_tokens, errbuf, errsize);
	if (!st && a->n == 0 && !a->oidc)
		st = sl_err(errbuf, errsize, SL_INVALID,
		            "no identity: set SLUICE_ACCESS (an access file) or SLUICE_API_TOKENS");
	if (st)
		ap_access_free(a);
	return st;
}

ap_principal *ap_access_identify(const ap_access *a, const char *token, char *why, size_t whysize)
{
	unsigned char h[32];
	ap_principal *found = NULL, *p;
	ap_oidc_identity id;
	char reason[200];

	sha256(token, h);
	for (size_t i = 0; i < a->n; i++)
		if (!CRYPTO_memcmp(a->p[i].token_sha256, h, sizeof(h)))
			found = &a->p[i];
	if (found)
		return found;
	/* a JWT: three base64url parts, dot-separated */
	if (!a->oidc || strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                              "0123456789-_.") != strlen(token)) {
		snprintf(why, whysize, "missing or invalid bearer token");
		return NULL;
	}
	if (ap_oidc_verify(a->oidc, token, &id, reason, sizeof(reason))) {
		snprintf(why, whysize, "invalid bearer token: %s", reason);
		return NULL;
	}
	p = sl_calloc(1, sizeof(*p));
	p->name = id.name;
	p->groups = id.groups;
	p->ngroups = id.ngroups;
	p->roles = id.roles;
	atomic_init(&p->refs, 1);
	return p;
}

ap_principal *ap_principal_hold(ap_principal *p)
{
	if (atomic_load(&p->refs))
		atomic_fetch_add(&p->refs, 1);
	return p;
}

static void principal_clear(ap_principal *p)
{
	free(p->name);
	for (size_t k = 0; k < p->ngroups; k++)
		free(p->groups[k]);
	free(p->groups);
}

void ap_principal_release(ap_principal *p)
{
	if (p && atomic_load(&p->refs) && atomic_fetch_sub(&p->refs, 1) == 1) {
		principal_clear(p);
		free(p);
	}
}

void ap_access_roles(unsigned bits, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t r = 0; r < NROLES && used < size; r++)
		if (bits & roles[r].bit)
			used += (size_t)snprintf(buf + used, size - used, "%s%s", used ? "," : "",
			                         roles[r].name);
	if (!used)
		snprintf(buf, size, "none");
}

void ap_access_free(ap_access *a)
{
	for (size_t i = 0; i < a->n; i++)
		principal_clear(&a->p[i]);
	free(a->p);
	a->p = NULL;
	a->n = 0;
	ap_oidc_free(a->oidc);
	a->oidc = NULL;
}
