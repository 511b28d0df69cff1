/*
 * sl_keys.h - Ed25519 keys (OpenSSL) for the ledger's checkpoints and
 * approval receipts (DESIGN.md, "Audit ledger and approval receipts"):
 * the approver's private key (SLUICE_SIGNING_KEY, a PEM file) and the
 * public keys everyone checks against (SLUICE_RECEIPT_KEYS, a JWKS file of
 * OKP/Ed25519 keys by kid: several, for rotation); compact JWS (RFC 7515,
 * alg EdDSA, RFC 8037) and base64url.
 */
#ifndef SL_KEYS_H
#define SL_KEYS_H

#include "sl_common.h"

#include <jansson.h>
#include <openssl/evp.h>

typedef struct sl_pubkey {
	char *kid;
	EVP_PKEY *key;
	unsigned char raw[32];
} sl_pubkey;

typedef struct sl_keyset {
	sl_pubkey *k;
	size_t n;
} sl_keyset;

/* The signing key: the private key and its kid (the JWKS key with its
 * public half). */
typedef struct sl_signer {
	EVP_PKEY *key;
	unsigned char raw[32]; /* its public half */
	char *kid;
} sl_signer;

/* Standard base64 (RFC 4648, with padding) of n bytes; free() it. */
char *sl_b64(const unsigned char *p, size_t n);

/* Standard base64 text s (len bytes, padded) into out; the length, or -1
 * when it is not base64 or decodes to more than max. */
long sl_b64_decode(const char *s, size_t len, unsigned char *out, size_t max);

/* base64url without padding of n bytes; free() it. */
char *sl_b64url(const unsigned char *p, size_t n);
/* Its inverse, into out (at most max bytes); the length, or -1 when s is
 * not base64url (padding included) or decodes to more than max. */
long sl_b64url_decode(const char *s, size_t len, unsigned char *out, size_t max);

/* Loads a JWKS file of Ed25519 public keys (every other key is refused,
 * named). SL_INVALID with the reason. */
sl_status sl_keyset_load(sl_keyset *ks, const char *path, char *errbuf, size_t errsize);
const sl_pubkey *sl_keyset_find(const sl_keyset *ks, const char *kid);
void sl_keyset_free(sl_keyset *ks);

/* Loads the private key of the PEM file at path, which must be Ed25519 and
 * whose public half must be in ks (its kid is taken from there). */
sl_status sl_signer_load(sl_signer *s, const char *path, const sl_keyset *ks, char *errbuf,
                         size_t errsize);
void sl_signer_free(sl_signer *s);

/* An Ed25519 signature of msg into sig (64 bytes). */
bool sl_sign(const sl_signer *s, const void *msg, size_t len, unsigned char sig[64]);
bool sl_verify(const sl_pubkey *k, const void *msg, size_t len, const unsigned char *sig,
               size_t siglen);

/* A compact JWS of payload (its JSON text as given), header
 * {"alg":"EdDSA","kid":KID,"typ":"JWT"}; free() it. */
char *sl_jws_sign(const sl_signer *s, const char *payload);

/*
 * Checks a compact JWS against ks: alg EdDSA, a kid ks has, a good
 * signature. On SL_OK *payload is its payload, parsed (json_decref it).
 * SL_INVALID with the reason otherwise.
 */
sl_status sl_jws_verify(const sl_keyset *ks, const char *jws, json_t **payload, char *errbuf,
                        size_t errsize);

/* Makes a key pair: writes the private key to key_path (PEM, mode 0600,
 * not over an existing file) and adds the public key as kid to the JWKS at
 * jwks_path (made when missing; a kid already there is refused). */
sl_status sl_keys_new(const char *kid, const char *key_path, const char *jwks_path, char *errbuf,
                      size_t errsize);

#endif
