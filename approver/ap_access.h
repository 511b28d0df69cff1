/*
 * ap_access.h - who may do what (DESIGN.md, "Who may decide"): the
 * identities of SLUICE_ACCESS, an access file of principals each with the
 * SHA-256 of its token, its roles and its groups, and of
 * SLUICE_API_TOKENS (NAME:TOKEN pairs, each an admin), and of OIDC bearer
 * tokens (the access file's "oidc" section, ap_oidc.h); and what each role
 * may call.
 */
#ifndef AP_ACCESS_H
#define AP_ACCESS_H

#include "ap_oidc.h"
#include "sl_common.h"

#include <stdatomic.h>
#include <stddef.h>

/* Roles, as bits: a principal may hold several. */
enum {
	AP_SUBMITTER = 1 << 0, /* submits runs; reads its own */
	AP_APPROVER = 1 << 1,  /* reads requirements and approvals; decides */
	AP_AUDITOR = 1 << 2,   /* reads everything; decides nothing */
	AP_ADMIN = 1 << 3,     /* everything, cancelling any run included */
};

typedef struct ap_principal {
	char *name;
	unsigned char token_sha256[32];
	unsigned roles;
	char **groups;
	size_t ngroups;
	/* 0: the access file's (or SLUICE_API_TOKENS'), as long as the
	 * approver runs; else an OIDC token's, freed by its last release */
	atomic_int refs;
} ap_principal;

typedef struct ap_access {
	ap_principal *p;
	size_t n;
	ap_oidc *oidc; /* NULL: no OIDC */
} ap_access;

/*
 * Loads the principals of the access file at path (NULL: none), its OIDC
 * settings, and the NAME:TOKEN pairs of api_tokens (NULL: none).
 * SL_INVALID, naming the entry and the field, on anything it cannot use:
 * unreadable JSON, a hash that is not 64 hex digits, an unknown role, a
 * name or token given twice, an OIDC setting or JWKS file ap_oidc_new()
 * refuses, or no identity at all (no principal and no OIDC).
 */
sl_status ap_access_load(ap_access *a, const char *path, const char *api_tokens, char *errbuf,
                         size_t errsize);

/*
 * The principal whose token is token (hashes compared in constant time),
 * else, with OIDC, the one a valid JWT names (refs 1). NULL, with the
 * reason in why, when there is none. ap_principal_release() what it gives.
 */
ap_principal *ap_access_identify(const ap_access *a, const char *token, char *why, size_t whysize);

/* One more holder of p (a decision that outlives its request); p. */
ap_principal *ap_principal_hold(ap_principal *p);
void ap_principal_release(ap_principal *p);

/* The roles as "approver,auditor" ("none" when there are none). */
void ap_access_roles(unsigned roles, char *buf, size_t size);

void ap_access_free(ap_access *a);

#endif
