/*
 * sl_ledger.c - the audit ledger's hash chain.
 */
#include "sl_ledger.h"

#include "sl_jcs.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Canonical entries are bounded by what a row holds. */
#define MAX_ENTRY (64 * 1024 * 1024)

json_t *sl_ledger_body(const char *text, size_t len)
{
	json_t *v = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, NULL);

	if (v && !json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

static json_t *text_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

bool sl_ledger_hash(const char *prev, long long seq, const char *kind, const char *at,
                    const char *run_id, const char *requirement_id, const char *actor,
                    const json_t *body, char out[65])
{
	unsigned char md[32], *prev_bytes = NULL;
	unsigned int mdlen = 0;
	long prev_len = 0;
	json_t *entry;
	char *text;
	size_t len;
	EVP_MD_CTX *ctx;
	bool ok;

	if (strlen(prev) != 64 || !(prev_bytes = OPENSSL_hexstr2buf(prev, &prev_len)) ||
	    prev_len != 32) {
		OPENSSL_free(prev_bytes);
		return false;
	}
	entry = json_pack("{s:I, s:s, s:s, s:o, s:o, s:s, s:O}", "seq", (json_int_t)seq, "kind",
	                  kind, "at", at, "run_id", text_or_null(run_id), "requirement_id",
	                  text_or_null(requirement_id), "actor", actor, "body", body);
	text = entry ? sl_jcs(entry, MAX_ENTRY, &len) : NULL;
	ctx = EVP_MD_CTX_new();
	ok = text && ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(ctx, prev_bytes, 32) && EVP_DigestUpdate(ctx, text, len) &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	for (int i = 0; ok && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	free(text);
	json_decref(entry);
	OPENSSL_free(prev_bytes);
	return ok;
}

void sl_ledger_check_init(sl_ledger_check *c)
{
	c->seq = 0;
	snprintf(c->head, sizeof(c->head), "%s", SL_LEDGER_GENESIS);
	c->err[0] = '\0';
}

bool sl_ledger_check_next(sl_ledger_check *c, long long seq, const char *kind, const char *at,
                          const char *run_id, const char *requirement_id, const char *actor,
                          const char *body, const char *hash)
{
	json_t *b;
	char want[65];
	bool ok;

	if (seq != c->seq + 1) {
		snprintf(c->err, sizeof(c->err),
		         seq > c->seq + 1
		             ? "entry %lld is missing (entry %lld follows entry %lld)"
		             : "entry %lld is out of place (entry %lld follows entry %lld)",
		         c->seq + 1, seq, c->seq);
		return false;
	}
	if (!(b = sl_ledger_body(body, strlen(body)))) {
		snprintf(c->err, sizeof(c->err), "entry %lld: its body is not a JSON object", seq);
		return false;
	}
	ok = sl_ledger_hash(c->head, seq, kind, at, run_id, requirement_id, actor, b, want);
	json_decref(b);
	if (!ok || strcmp(want, hash)) {
		snprintf(
		    c->err, sizeof(c->err),
		    "entry %lld does not match: it says its hash is %.64s, its content and the "
		    "entry before give %s",
		    seq, hash, ok ? want : "nothing (too big)");
		return false;
	}
	c->seq = seq;
	snprintf(c->head, sizeof(c->head), "%s", hash);
	return true;
}
