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

/* The signed-note key ID of k named name. */
static void key_id(const char *name, const unsigned char raw[32], unsigned char id[4])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, name, strlen(name));
	EVP_DigestUpdate(ctx, "\n\x01", 2);
	EVP_DigestUpdate(ctx, raw, 32);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	memcpy(id, md, 4);
}

char *sl_ledger_checkpoint(const sl_signer *s, long long size, const char *head)
{
	unsigned char raw_head[32], sig[4 + 64];
	long n = 0;
	unsigned char *h = OPENSSL_hexstr2buf(head, &n);
	char *hb, *body, *sb, *note = NULL;

	if (!h || n != 32) {
		OPENSSL_free(h);
		return NULL;
	}
	memcpy(raw_head, h, 32);
	OPENSSL_free(h);
	hb = sl_b64(raw_head, 32);
	body = sl_asprintf("%s\n%lld\n%s\n", SL_LEDGER_ORIGIN, size, hb);
	key_id(s->kid, s->raw, sig);
	if (sl_sign(s, body, strlen(body), sig + 4)) {
		sb = sl_b64(sig, sizeof(sig));
		note = sl_asprintf("%s\n\xe2\x80\x94 %s %s\n", body, s->kid, sb);
		free(sb);
	}
	free(hb);
	free(body);
	return note;
}

sl_status sl_ledger_checkpoint_open(const sl_keyset *ks, const char *note, long long *size,
                                    char head[65], char *errbuf, size_t errsize)
{
	const char *blank = strstr(note, "\n\n"), *line;
	char origin[64], hb[64];
	unsigned char raw_head[32], sig[4 + 64];
	size_t body_len;
	bool signed_ok = false;

	if (!blank || sscanf(note, "%63[^\n]\n%lld\n%63[^\n]\n", origin, size, hb) != 3 ||
	    strcmp(origin, SL_LEDGER_ORIGIN) || *size < 0 ||
	    sl_b64_decode(hb, strlen(hb), raw_head, 32) != 32)
		return sl_err(errbuf, errsize, SL_INVALID, "not a checkpoint of %s",
		              SL_LEDGER_ORIGIN);
	body_len = (size_t)(blank - note) + 1;
	for (line = blank + 2; *line; line = strchr(line, '\n') + 1) {
		const char *end = strchr(line, '\n'), *sp;
		char name[128];
		const sl_pubkey *k;
		unsigned char id[4];

		if (!end)
			break;
		if (strncmp(line, "\xe2\x80\x94 ", 4) ||
		    !(sp = memchr(line + 4, ' ', (size_t)(end - line - 4))) ||
		    (size_t)(sp - line - 4) >= sizeof(name))
			continue;
		memcpy(name, line + 4, (size_t)(sp - line - 4));
		name[sp - line - 4] = '\0';
		if (!(k = sl_keyset_find(ks, name)) ||
		    sl_b64_decode(sp + 1, (size_t)(end - sp - 1), sig, sizeof(sig)) != sizeof(sig))
			continue;
		key_id(name, k->raw, id);
		if (!memcmp(id, sig, 4) && sl_verify(k, note, body_len, sig + 4, 64))
			signed_ok = true;
	}
	if (!signed_ok)
		return sl_err(errbuf, errsize, SL_INVALID,
		              "the checkpoint of %lld entries has no signature by a known key that "
		              "verifies",
		              *size);
	for (int i = 0; i < 32; i++)
		snprintf(head + 2 * i, 3, "%02x", raw_head[i]);
	return SL_OK;
}
