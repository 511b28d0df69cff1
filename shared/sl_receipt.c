/*
 * sl_receipt.c - approval receipts.
 */
#include "sl_receipt.h"

#include "sl_jcs.h"

#include <stdlib.h>
#include <string.h>

/* The arguments are bounded by the requirement that holds them. */
#define MAX_ARGS (16 * 1024 * 1024)

json_t *sl_receipt_args(const json_t *model_args, const json_t *edited, const json_t *input)
{
	json_t *args = json_deep_copy(edited ? edited : model_args);

	if (json_is_object(args) && json_is_object(input))
		json_object_update(args, (json_t *)input);
	return args;
}

char *sl_receipt_make(const sl_signer *s, const sl_receipt_of *of, const char *decision,
                      const char *decided_by, long long now)
{
	char digest[65], *text, *jws = NULL;
	json_t *payload;

	if (!sl_jcs_sha256(of->args, MAX_ARGS, digest))
		return NULL;
	payload = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "run_id", of->run_id,
	                    "requirement_id", of->requirement_id, "tool_call_id", of->tool_call_id,
	                    "tool_name", of->tool_name, "args_sha256", digest, "decision", decision,
	                    "decided_by", decided_by, "iat", (json_int_t)now, "exp",
	                    (json_int_t)(now + SL_RECEIPT_TTL_S));
	if (payload && (text = sl_jcs(payload, MAX_ARGS, NULL))) {
		jws = sl_jws_sign(s, text);
		free(text);
	}
	json_decref(payload);
	return jws;
}

static bool says(const json_t *p, const char *key, const char *want)
{
	const char *v = json_string_value(json_object_get(p, key));

	return v && want && !strcmp(v, want);
}

sl_status sl_receipt_check(const sl_keyset *ks, const char *receipt, const sl_receipt_of *of,
                           long long now, char *errbuf, size_t errsize)
{
	json_t *p = NULL, *exp;
	char digest[65];
	sl_status st = SL_INVALID;

	if (!receipt || !*receipt)
		return sl_err(errbuf, errsize, st, "it has no receipt");
	if (sl_jws_verify(ks, receipt, &p, errbuf, errsize))
		return st;
	exp = json_object_get(p, "exp");
	if (!says(p, "run_id", of->run_id) || !says(p, "requirement_id", of->requirement_id) ||
	    !says(p, "tool_call_id", of->tool_call_id) || !says(p, "tool_name", of->tool_name))
		sl_err(errbuf, errsize, st, "its receipt is another requirement's");
	else if (!says(p, "decision", "approved"))
		sl_err(errbuf, errsize, st, "its receipt does not approve it");
	else if (!json_is_number(exp) || json_number_value(exp) <= (double)now)
		sl_err(errbuf, errsize, st, "its receipt has expired");
	else if (!sl_jcs_sha256(of->args, MAX_ARGS, digest) || !says(p, "args_sha256", digest))
		sl_err(errbuf, errsize, st, "its arguments are not the ones approved");
	else
		st = SL_OK;
	json_decref(p);
	return st;
}
