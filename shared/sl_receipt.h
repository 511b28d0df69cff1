/*
 * sl_receipt.h - approval receipts (DESIGN.md, "Audit ledger and approval
 * receipts"): the approver signs each decision as a compact JWS (alg
 * EdDSA, sl_keys.h) over run_id, requirement_id, tool_call_id, tool_name,
 * args_sha256 (the SHA-256 of the RFC 8785 canonical arguments the tool
 * would run with: edits and user input included), decision ("approved",
 * "rejected", "expired"), decided_by, iat and exp; a worker runs a tool
 * only when the receipt of its requirement checks out.
 */
#ifndef SL_RECEIPT_H
#define SL_RECEIPT_H

#include "sl_keys.h"

/* How long a receipt is good for: a continue taken up later than this
 * after its decision (its workers down all that time) runs no tool. */
#define SL_RECEIPT_TTL_S (24 * 3600)

/* What a receipt is for. */
typedef struct sl_receipt_of {
	const char *run_id, *requirement_id, *tool_call_id, *tool_name;
	const json_t *args; /* the arguments the tool runs with */
} sl_receipt_of;

/* The arguments a decided tool runs with, and its receipt covers: the
 * person's edits, else the model's arguments, with the person's input
 * filled in (edited and input may be NULL); a new object. The approver
 * signs over them, the worker runs the tool with them: one definition. */
json_t *sl_receipt_args(const json_t *model_args, const json_t *edited, const json_t *input);

/* The receipt of a decision, made at now (seconds since the epoch);
 * free() it. */
char *sl_receipt_make(const sl_signer *s, const sl_receipt_of *of, const char *decision,
                      const char *decided_by, long long now);

/* Whether receipt (NULL: none) approves of: signed by a key of ks, for
 * this run, requirement, call, tool and arguments, "approved", not expired
 * at now. SL_INVALID with the reason otherwise. */
sl_status sl_receipt_check(const sl_keyset *ks, const char *receipt, const sl_receipt_of *of,
                           long long now, char *errbuf, size_t errsize);

#endif
