/*
 * sl_ledger.h - the audit ledger's hash chain (DESIGN.md, "Audit ledger
 * and approval receipts"), as the approver's chainer writes it and
 * `sluice audit verify` checks it: entry n's hash is
 * SHA-256(entry n-1's hash, 32 bytes || the RFC 8785 canonical text of
 * {"seq","kind","at","run_id","requirement_id","actor","body"}), entry 1's
 * previous hash 32 zero bytes.
 */
#ifndef SL_LEDGER_H
#define SL_LEDGER_H

#include "sl_common.h"
#include "sl_keys.h"

#include <jansson.h>

#define SL_LEDGER_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/* The advisory lock one chainer of a deployment holds while chaining. */
#define SL_LEDGER_LOCK "7355609"

/* A body as the ledger reads it (integers as doubles, as canonical JSON
 * writes them, so that none is too big to read); NULL if not an object. */
json_t *sl_ledger_body(const char *text, size_t len);

/*
 * The hash of the entry (body is borrowed; run_id and requirement_id may
 * be NULL) after prev (64 hex digits) into out; false when prev is not a
 * hash.
 */
bool sl_ledger_hash(const char *prev, long long seq, const char *kind, const char *at,
                    const char *run_id, const char *requirement_id, const char *actor,
                    const json_t *body, char out[65]);

/* A chain being checked, entry by entry, oldest first. */
typedef struct sl_ledger_check {
	long long seq; /* the last entry checked (0: none) */
	char head[65]; /* its hash */
	char err[512]; /* why the chain stopped matching */
} sl_ledger_check;

void sl_ledger_check_init(sl_ledger_check *c);

/* Checks the next entry (body as its text); false, with the first
 * mismatch in c->err, when it is not the next entry of the chain: a gap,
 * a body that is not an object, or a hash its content does not give. */
bool sl_ledger_check_next(sl_ledger_check *c, long long seq, const char *kind, const char *at,
                          const char *run_id, const char *requirement_id, const char *actor,
                          const char *body, const char *hash);

/*
 * Checkpoints: C2SP signed notes (c2sp.org/tlog-checkpoint, signed-note)
 * of the ledger's size and head, "ORIGIN\nSIZE\nBASE64(HEAD)\n" and one
 * signature line "\u2014 KID BASE64(KEY ID || SIGNATURE)\n" after a blank
 * line, the key ID being the first 4 bytes of SHA-256(KID "\n" 0x01
 * PUBLIC KEY). The head is the hash chain's, not a Merkle tree's.
 */
#define SL_LEDGER_ORIGIN "sluice/ledger"

/* The signed note of a ledger of size entries with head (hex); free() it. */
char *sl_ledger_checkpoint(const sl_signer *s, long long size, const char *head);

/* Opens a checkpoint note: its origin ours, a signature line by a key of
 * ks that verifies; its size and head (hex). SL_INVALID with the reason. */
sl_status sl_ledger_checkpoint_open(const sl_keyset *ks, const char *note, long long *size,
                                    char head[65], char *errbuf, size_t errsize);

#endif
