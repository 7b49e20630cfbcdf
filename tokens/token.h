/*
 * token.h: submission tokens. One token per accepted recipient and one for
 * the sender's copy, each a PASETO v4.public token whose claims name the
 * message and bind the token to one address without revealing it.
 * docs/tokens.md is the specification; this is its implementation.
 * Pure: the caller supplies the clock, the keyring and the revocation check.
 */
#ifndef SUBMITD_TOKEN_H
#define SUBMITD_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokens/keyring.h"

#define TOKEN_ID_LEN      16   /* jti: 12 random bytes, base64url */
#define TOKEN_MID_MAX     24   /* message public id, [A-Za-z0-9_-] */
#define TOKEN_BINDING_LEN 16   /* base64url of 12 bytes */
#define TOKEN_ISSUER_MAX  64   /* node name */
/* Upper bound of an encoded token with the claims above, NUL excluded.
 * The reply-line budget in server/ relies on it; a unit test proves it. */
#define TOKEN_MAX_LEN     460

enum token_role { TOKEN_ROLE_RECIPIENT = 0, TOKEN_ROLE_SENDER = 1 };

struct token_claims {
	char jti[TOKEN_ID_LEN + 1];
	char mid[TOKEN_MID_MAX + 1];
	char binding[TOKEN_BINDING_LEN + 1];  /* token_binding(jti, address) */
	char iss[TOKEN_ISSUER_MAX + 1];
	enum token_role role;
	int64_t exp;                          /* unix seconds, RFC 3339 in the token */
	char kid[PASERK_K4_PID_LEN + 1];      /* from the footer */
};

enum token_status {
	TOKEN_VALID = 0,
	TOKEN_MALFORMED,
	TOKEN_BAD_SIGNATURE,
	TOKEN_UNKNOWN_KEY,
	TOKEN_EXPIRED,
	TOKEN_REVOKED,
	TOKEN_WRONG_ADDRESS,
};

/* Stable lower-case name of a status ("valid", "bad_signature", ...). */
const char *token_status_name(enum token_status s);

/* A new random token id. */
void token_new_id(char jti[TOKEN_ID_LEN + 1]);

/* The address binding: base64url(first 12 bytes of SHA-256(jti ":" addr)),
 * addr with its domain part lower-cased (the local part is kept as is). */
void token_binding(const char *jti, const char *address, char out[TOKEN_BINDING_LEN + 1]);

/* Fill c (jti fresh, binding computed) for one address and sign it with key.
 * Returns the token length, or 0 on failure (out too small, no secret). */
size_t token_issue(const struct token_key *key, const char *mid, const char *address,
    enum token_role role, const char *issuer, int64_t now, int64_t lifetime,
    struct token_claims *c_r, char *out, size_t outmax);

/* token_issue with the id and the expiry chosen by the caller, so that a
 * token's row can be written while the token is being signed. jti must be
 * TOKEN_ID_LEN base64url characters and exp a time the format can spell;
 * otherwise 0, as for every other failure. */
size_t token_issue_as(const struct token_key *key, const char *jti, int64_t exp, const char *mid,
    const char *address, enum token_role role, const char *issuer, struct token_claims *c_r,
    char *out, size_t outmax);

/* Revocation lookup supplied by the caller (the database); may be NULL. */
typedef bool token_revoked_fn(const char *jti, void *ctx);

/* Verify a token: format, key (by footer kid), signature, expiry against now,
 * revocation (if is_revoked), and, when expected_address is not NULL, the
 * binding. claims_r is filled as far as parsing got (may be NULL). */
enum token_status token_verify(const char *token, size_t len, const struct keyring *ring,
    int64_t now, const char *expected_address, token_revoked_fn *is_revoked, void *ctx,
    struct token_claims *claims_r);

/* The key id in a token's footer, read without checking anything else
 * (which node's key signed it, before the work of verifying). true when
 * the footer has our form. */
bool token_key_id(const char *token, size_t len, char kid[PASERK_K4_PID_LEN + 1]);

/* The issuer a token claims, read without its signature checked: only to
 * choose a refusal (a node that is not of the cluster), never to trust.
 * true when the payload has our form. */
bool token_unverified_issuer(const char *token, size_t len, char iss[TOKEN_ISSUER_MAX + 1]);

/* RFC 3339 "YYYY-MM-DDTHH:MM:SSZ" (UTC) helpers. */
void token_time_format(int64_t t, char out[21]);
int token_time_parse(const char *s, size_t len, int64_t *t_r);   /* 0 ok, -1 bad */

#endif
