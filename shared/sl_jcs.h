/*
 * sl_jcs.h - canonical JSON (RFC 8785, the JSON Canonicalization Scheme):
 * object members sorted by the UTF-16 code units of their names, no
 * whitespace, strings with only the escapes JSON requires, numbers as
 * ECMAScript writes doubles. The one canonical form of the audit ledger's
 * entries and of the arguments an approval receipt covers.
 */
#ifndef SL_JCS_H
#define SL_JCS_H

#include "sl_common.h"

#include <jansson.h>

/* The canonical text of v (NUL-terminated; free() it), its length in *len
 * when len is not NULL; NULL past max bytes. Integers are written as the
 * doubles they are in I-JSON (beyond 2^53 they lose precision, as in
 * every JCS implementation). */
char *sl_jcs(const json_t *v, size_t max, size_t *len);

/* ECMAScript's Number.prototype.toString of the finite double d into out
 * (at least 32 bytes); its length. */
size_t sl_jcs_number(double d, char out[32]);

/* The SHA-256 of the canonical text of v, as 64 lowercase hex digits;
 * false past max bytes. */
bool sl_jcs_sha256(const json_t *v, size_t max, char hex[65]);

#endif
