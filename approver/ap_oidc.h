/*
 * ap_oidc.h - OIDC bearer tokens (DESIGN.md, "Who may decide"): JWTs signed
 * RS256 or ES256 by a key of a JWKS (a file, and/or a URL fetched at start,
 * again for a key id it does not know — at most once every
 * AP_OIDC_REFETCH_S — and when its keys are an hour old), with the
 * configured issuer and audience, in date (60 s leeway). Signatures are
 * checked by cjose; this file decides which key and algorithm may be used,
 * and what the claims say.
 */
#ifndef AP_OIDC_H
#define AP_OIDC_H

#include "sl_common.h"

#include <jansson.h>
#include <stddef.h>

#define AP_OIDC_LEEWAY_S 60
#define AP_OIDC_REFETCH_S 10

typedef struct ap_oidc ap_oidc;

/* Who a valid token names: its name claim, its groups, and the roles
 * those groups map to (AP_* bits of ap_access.h). */
typedef struct ap_oidc_identity {
	char *name;
	char **groups;
	size_t ngroups;
	unsigned roles;
} ap_oidc_identity;

/*
 * Sets up OIDC from the access file's "oidc" object: issuer, audience,
 * jwks_file and/or jwks_url, name_claim (default "sub"), groups_claim
 * (default "groups"), roles ({"GROUP": ["ROLE", ...]}). role_bits maps a
 * role's name to its bit (0: no such role). SL_INVALID, naming the field,
 * on a setting it cannot use or a JWKS file without a usable key; a JWKS
 * URL that does not answer is only logged (it is asked again when a token
 * comes).
 */
sl_status ap_oidc_new(ap_oidc **o, const json_t *config, unsigned (*role_bits)(const char *),
                      char *errbuf, size_t errsize);

/*
 * Checks token; on SL_OK fills id (ap_oidc_identity_free it). Anything
 * else is SL_INVALID with the reason in errbuf (never the token). Safe
 * from several threads at once.
 */
sl_status ap_oidc_verify(ap_oidc *o, const char *token, ap_oidc_identity *id, char *errbuf,
                         size_t errsize);

void ap_oidc_identity_free(ap_oidc_identity *id);

void ap_oidc_free(ap_oidc *o);

#endif
