/*
 * paseto_oracle.h: an independent reading of a v4.public token, for the
 * token and paseto targets: split it, decode it with libsodium's own
 * base64url decoder, build the PAE (PASETO Common.md) here, and check the
 * Ed25519 signature directly. Plus the reproduction test: Ed25519 is
 * deterministic, so a token that truly came from secret key sk is exactly
 * what paseto_v4_sign(sk, m, f, i) writes again. Together they say that a
 * token the code under test accepted was signed by that key, and that it is
 * the one spelling of what was signed.
 */
#ifndef SUBMITD_FUZZ_PASETO_ORACLE_H
#define SUBMITD_FUZZ_PASETO_ORACLE_H

#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "fuzz.h"
#include "tokens/paseto.h"

#define ORACLE_MAX 8192

static void
oracle_le64(uint8_t *out, uint64_t n)
{
	for (int k = 0; k < 8; k++) {
		out[k] = (uint8_t)(n & 0xff);
		n >>= 8;
	}
}

/* True when token verifies under pk with implicit assertion i. */
static bool
oracle_verify(const uint8_t pk[32], const char *token, size_t len, const uint8_t *i, size_t ilen)
{
	static uint8_t body[ORACLE_MAX], footer[ORACLE_MAX], pae[3 * ORACLE_MAX];
	const char *b = token + 10, *dot, *end = token + len;
	size_t blen, flen = 0, pos = 0, mlen;

	if (len < 10 || len > ORACLE_MAX || memcmp(token, "v4.public.", 10) != 0 || ilen > ORACLE_MAX)
		return false;
	dot = memchr(b, '.', (size_t)(end - b));
	if (sodium_base642bin(body, sizeof(body), b, (size_t)((dot ? dot : end) - b), NULL, &blen, NULL,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || blen < 64)
		return false;
	if (dot != NULL && sodium_base642bin(footer, sizeof(footer), dot + 1, (size_t)(end - dot - 1), NULL,
	    &flen, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return false;
	mlen = blen - 64;
	oracle_le64(pae, 4);
	pos = 8;
	oracle_le64(pae + pos, 10);
	memcpy(pae + pos + 8, "v4.public.", 10);
	pos += 18;
	oracle_le64(pae + pos, mlen);
	memcpy(pae + pos + 8, body, mlen);
	pos += 8 + mlen;
	oracle_le64(pae + pos, flen);
	memcpy(pae + pos + 8, footer, flen);
	pos += 8 + flen;
	oracle_le64(pae + pos, ilen);
	if (ilen > 0)
		memcpy(pae + pos + 8, i, ilen);
	pos += 8 + ilen;
	return crypto_sign_verify_detached(body + mlen, pae, pos, pk) == 0;
}

/* Signing m, f, i with sk again gives exactly token. */
static void
oracle_reproduce(const uint8_t sk[64], const char *token, size_t len, const uint8_t *m, size_t mlen,
    const uint8_t *f, size_t flen, const uint8_t *i, size_t ilen)
{
	static char again[ORACLE_MAX + 1];
	size_t alen = 0;

	FUZZ_CHECK(paseto_v4_sign(sk, m, mlen, f, flen, i, ilen, again, sizeof(again), &alen) == PASETO_OK);
	FUZZ_CHECK(alen == len && memcmp(again, token, len) == 0);
}

#endif
