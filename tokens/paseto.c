/*
 * paseto.c: PASETO v4.public (Ed25519 over the pre-authentication encoding)
 * and the PASERK k4.public, k4.secret and k4.pid key strings, on libsodium
 * alone. Specifications: https://github.com/paseto-standard/paseto-spec
 * (docs/01-Protocol-Versions/Version4.md, docs/01-Protocol-Versions/Common.md)
 * and https://github.com/paseto-standard/paserk (types/public.md,
 * types/secret.md, types/pid.md).
 *
 * Nothing here allocates: a token is bounded by PASETO_MAX_TOKEN before any
 * work is done, which bounds every intermediate buffer, so they all live on
 * the stack. Parsing is strict: one byte string has at most one accepted
 * spelling (no base64 padding, no non-canonical trailing bits, no empty
 * footer section), so stored tokens can be compared as strings.
 */
#include "tokens/paseto.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Longest token accepted or produced, in octets. Ours are under 500; the
 * headroom is for the vectors and for callers with bigger footers. */
#define PASETO_MAX_TOKEN    4096
/* Decoded m || sig, and separately the footer, can never exceed this:
 * (4096 - 10) base64url characters decode to at most 3064 bytes. */
#define PASETO_MAX_DECODED  3072
#define PASETO_MAX_IMPLICIT 1024
/* PAE of 4 pieces: count, 4 lengths, the header, and the three variable
 * pieces; m and f share one token so they share one decoded budget. */
#define PAE_MAX (8 + 4 * 8 + PASETO_V4_PUBLIC_HEADER_LEN + PASETO_MAX_DECODED + \
		PASETO_MAX_IMPLICIT)

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

#define PASERK_PUBLIC_PREFIX "k4.public."
#define PASERK_SECRET_PREFIX "k4.secret."
#define PASERK_PID_PREFIX    "k4.pid."
#define PASERK_PID_HASH_BYTES 33         /* BLAKE2b-264 */

/* libsodium wants sodium_init() before use; it is idempotent and cheap
 * after the first call. It only fails when the OS has no usable entropy
 * source, and then there is nothing sensible left to do. */
static void crypto_ready(void)
{
	if (sodium_init() < 0)
		abort();
}

/* Characters of the unpadded base64url encoding of n bytes. */
static size_t b64_len(size_t n)
{
	return sodium_base64_ENCODED_LEN(n, B64) - 1;
}

/* Upper bound of the bytes that slen unpadded base64url characters decode
 * to; lets us say TOO_LONG rather than MALFORMED for a buffer that is small. */
static size_t b64_decoded_max(size_t slen)
{
	return slen / 4 * 3 + (slen % 4) * 3 / 4;
}

static bool b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* Strict decode: the whole input must be consumed (so '=' fails) and
 * libsodium rejects non-zero trailing bits and impossible lengths (4k+1).
 * The alphabet is checked here first because libsodium 1.0.18, where char
 * is signed, decodes every byte from 0x80 to 0xff as '_' (found by
 * test_flipped): without this check one token would have 129 spellings. */
static int b64_decode(uint8_t *bin, size_t max, const char *s, size_t slen, size_t *len_r)
{
	for (size_t k = 0; k < slen; k++) {
		if (!b64url_char(s[k]))
			return -1;
	}
	return sodium_base642bin(bin, max, s, slen, NULL, len_r, NULL, B64);
}

static void le64(uint8_t out[8], uint64_t n)
{
	/* The spec clears the top bit so that the value is also a valid
	 * signed 64-bit integer in languages without unsigned types. */
	n &= UINT64_C(0x7fffffffffffffff);
	for (size_t k = 0; k < 8; k++) {
		out[k] = (uint8_t)(n & 0xff);
		n >>= 8;
	}
}

struct pae_piece {
	const uint8_t *p;
	size_t n;
};

/* PAE(pieces) = LE64(count) || for each: LE64(len) || piece.
 * Returns the encoded length, or 0 when it does not fit in max. */
static size_t pae_encode(uint8_t *out, size_t max, const struct pae_piece *pc, size_t count)
{
	size_t need = 8, pos;

	for (size_t k = 0; k < count; k++) {
		if (pc[k].n > max || need > max - 8 - pc[k].n)
			return 0;
		need += 8 + pc[k].n;
	}
	if (need > max)
		return 0;
	le64(out, count);
	pos = 8;
	for (size_t k = 0; k < count; k++) {
		le64(out + pos, pc[k].n);
		pos += 8;
		if (pc[k].n > 0)
			memcpy(out + pos, pc[k].p, pc[k].n);
		pos += pc[k].n;
	}
	return pos;
}

struct token_parts {
	const char *body;       /* base64url of m || sig */
	size_t body_len;
	const char *footer;     /* base64url of f, NULL when absent */
	size_t footer_len;
};

/* Split "v4.public." body [ "." footer ] without decoding anything but the
 * layout. An empty footer is signed as if absent, so a trailing "." would
 * be a second spelling of the same token: refuse it. */
static enum paseto_result token_split(const char *token, size_t len, struct token_parts *p)
{
	const char *dot;

	if (token == NULL)
		return PASETO_MALFORMED;
	if (len > PASETO_MAX_TOKEN)
		return PASETO_TOO_LONG;
	if (len < PASETO_V4_PUBLIC_HEADER_LEN ||
	    memcmp(token, PASETO_V4_PUBLIC_HEADER, PASETO_V4_PUBLIC_HEADER_LEN) != 0)
		return PASETO_MALFORMED;
	p->body = token + PASETO_V4_PUBLIC_HEADER_LEN;
	p->body_len = len - PASETO_V4_PUBLIC_HEADER_LEN;
	p->footer = NULL;
	p->footer_len = 0;
	dot = memchr(p->body, '.', p->body_len);
	if (dot != NULL) {
		p->footer = dot + 1;
		p->footer_len = p->body_len - (size_t)(p->footer - p->body);
		p->body_len = (size_t)(dot - p->body);
		if (p->footer_len == 0)
			return PASETO_MALFORMED;
	}
	/* Not even room for the signature. */
	if (p->body_len < b64_len(PASETO_SIG_BYTES))
		return PASETO_MALFORMED;
	return PASETO_OK;
}

enum paseto_result paseto_v4_sign(const uint8_t sk[PASETO_SK_BYTES],
    const uint8_t *m, size_t mlen, const uint8_t *f, size_t flen,
    const uint8_t *i, size_t ilen, char *out, size_t outmax, size_t *len_r)
{
	uint8_t body[PASETO_MAX_DECODED];
	uint8_t pae[PAE_MAX];
	size_t need, pae_len, pos;
	const struct pae_piece pieces[4] = {
		{ (const uint8_t *)PASETO_V4_PUBLIC_HEADER, PASETO_V4_PUBLIC_HEADER_LEN },
		{ m, mlen }, { f, flen }, { i, ilen },
	};

	if (sk == NULL || (m == NULL && mlen > 0) || (f == NULL && flen > 0) ||
	    (i == NULL && ilen > 0) || out == NULL)
		return PASETO_MALFORMED;
	/* Bound each piece before adding lengths so the sums cannot wrap. */
	if (mlen > PASETO_MAX_DECODED - PASETO_SIG_BYTES || flen > PASETO_MAX_DECODED ||
	    ilen > PASETO_MAX_IMPLICIT)
		return PASETO_TOO_LONG;
	need = PASETO_V4_PUBLIC_HEADER_LEN + b64_len(mlen + PASETO_SIG_BYTES) +
	    (flen > 0 ? 1 + b64_len(flen) : 0);
	/* Never produce a token our own verifier would refuse. */
	if (need > PASETO_MAX_TOKEN || need >= outmax)
		return PASETO_TOO_LONG;
	pae_len = pae_encode(pae, sizeof pae, pieces, 4);
	if (pae_len == 0)
		return PASETO_TOO_LONG;

	crypto_ready();
	if (mlen > 0)
		memcpy(body, m, mlen);
	crypto_sign_detached(body + mlen, NULL, pae, pae_len, sk);

	memcpy(out, PASETO_V4_PUBLIC_HEADER, PASETO_V4_PUBLIC_HEADER_LEN);
	pos = PASETO_V4_PUBLIC_HEADER_LEN;
	sodium_bin2base64(out + pos, outmax - pos, body, mlen + PASETO_SIG_BYTES, B64);
	pos += b64_len(mlen + PASETO_SIG_BYTES);
	if (flen > 0) {
		out[pos++] = '.';
		sodium_bin2base64(out + pos, outmax - pos, f, flen, B64);
		pos += b64_len(flen);
	}
	out[pos] = '\0';
	if (len_r != NULL)
		*len_r = pos;
	return PASETO_OK;
}

enum paseto_result paseto_v4_footer(const char *token, size_t len,
    uint8_t *footer_r, size_t footer_max, size_t *footer_len_r)
{
	struct token_parts p;
	enum paseto_result r;
	size_t n = 0;

	r = token_split(token, len, &p);
	if (r != PASETO_OK)
		return r;
	if (p.footer != NULL) {
		if (b64_decoded_max(p.footer_len) > footer_max || footer_r == NULL)
			return PASETO_TOO_LONG;
		if (b64_decode(footer_r, footer_max, p.footer, p.footer_len, &n) != 0)
			return PASETO_MALFORMED;
	}
	if (footer_len_r != NULL)
		*footer_len_r = n;
	return PASETO_OK;
}

enum paseto_result paseto_v4_verify(const uint8_t pk[PASETO_PK_BYTES],
    const char *token, size_t len, const uint8_t *i, size_t ilen,
    uint8_t *m_r, size_t m_max, size_t *mlen_r)
{
	uint8_t body[PASETO_MAX_DECODED];
	uint8_t footer[PASETO_MAX_DECODED];
	uint8_t pae[PAE_MAX];
	struct token_parts p;
	enum paseto_result r;
	size_t body_n, footer_n = 0, mlen, pae_len;

	if (pk == NULL || (i == NULL && ilen > 0))
		return PASETO_MALFORMED;
	if (ilen > PASETO_MAX_IMPLICIT)
		return PASETO_TOO_LONG;
	r = token_split(token, len, &p);
	if (r != PASETO_OK)
		return r;
	/* Both fit by construction (len <= PASETO_MAX_TOKEN); checked anyway so
	 * that a change of the bounds cannot turn into an overflow. */
	if (b64_decoded_max(p.body_len) > sizeof body ||
	    b64_decoded_max(p.footer_len) > sizeof footer)
		return PASETO_TOO_LONG;
	if (b64_decode(body, sizeof body, p.body, p.body_len, &body_n) != 0 ||
	    body_n < PASETO_SIG_BYTES)
		return PASETO_MALFORMED;
	if (p.footer != NULL &&
	    b64_decode(footer, sizeof footer, p.footer, p.footer_len, &footer_n) != 0)
		return PASETO_MALFORMED;

	mlen = body_n - PASETO_SIG_BYTES;
	{
		const struct pae_piece pieces[4] = {
			{ (const uint8_t *)PASETO_V4_PUBLIC_HEADER, PASETO_V4_PUBLIC_HEADER_LEN },
			{ body, mlen }, { footer, footer_n }, { i, ilen },
		};
		pae_len = pae_encode(pae, sizeof pae, pieces, 4);
	}
	if (pae_len == 0)
		return PASETO_TOO_LONG;
	crypto_ready();
	if (crypto_sign_verify_detached(body + mlen, pae, pae_len, pk) != 0)
		return PASETO_BAD_SIGNATURE;
	/* Only an authentic message is handed out, so TOO_LONG here means
	 * "valid, but your buffer is too small". */
	if (mlen > m_max || (m_r == NULL && mlen > 0))
		return PASETO_TOO_LONG;
	if (mlen > 0)
		memcpy(m_r, body, mlen);
	if (mlen_r != NULL)
		*mlen_r = mlen;
	return PASETO_OK;
}

void paserk_k4_public(const uint8_t pk[PASETO_PK_BYTES], char out[PASERK_K4_PUBLIC_LEN + 1])
{
	const size_t plen = sizeof PASERK_PUBLIC_PREFIX - 1;

	memcpy(out, PASERK_PUBLIC_PREFIX, plen);
	sodium_bin2base64(out + plen, PASERK_K4_PUBLIC_LEN + 1 - plen, pk, PASETO_PK_BYTES, B64);
}

void paserk_k4_secret(const uint8_t sk[PASETO_SK_BYTES], char out[PASERK_K4_SECRET_LEN + 1])
{
	const size_t plen = sizeof PASERK_SECRET_PREFIX - 1;

	memcpy(out, PASERK_SECRET_PREFIX, plen);
	sodium_bin2base64(out + plen, PASERK_K4_SECRET_LEN + 1 - plen, sk, PASETO_SK_BYTES, B64);
}

/* PASERK types/pid.md: d = BLAKE2b-264("k4.pid." || "k4.public.<b64>"),
 * pid = "k4.pid." || b64(d). Hashing the header in binds the id to its
 * type, so a k4.lid and a k4.pid of related keys cannot collide. */
void paserk_k4_pid(const uint8_t pk[PASETO_PK_BYTES], char out[PASERK_K4_PID_LEN + 1])
{
	const size_t plen = sizeof PASERK_PID_PREFIX - 1;
	char pub[PASERK_K4_PUBLIC_LEN + 1];
	uint8_t d[PASERK_PID_HASH_BYTES];
	crypto_generichash_state st;

	crypto_ready();
	paserk_k4_public(pk, pub);
	crypto_generichash_init(&st, NULL, 0, sizeof d);
	crypto_generichash_update(&st, (const uint8_t *)PASERK_PID_PREFIX, plen);
	crypto_generichash_update(&st, (const uint8_t *)pub, PASERK_K4_PUBLIC_LEN);
	crypto_generichash_final(&st, d, sizeof d);
	memcpy(out, PASERK_PID_PREFIX, plen);
	sodium_bin2base64(out + plen, PASERK_K4_PID_LEN + 1 - plen, d, sizeof d, B64);
}

/* Exact length, exact prefix, and a payload that decodes to exactly n
 * bytes: a k3 key, a k4.local key or a truncated string all fail here. */
static int paserk_decode(const char *s, const char *prefix, size_t total, uint8_t *out, size_t n)
{
	const size_t plen = strlen(prefix);
	size_t got;

	if (s == NULL || strnlen(s, total + 1) != total || memcmp(s, prefix, plen) != 0)
		return -1;
	if (b64_decode(out, n, s + plen, total - plen, &got) != 0 || got != n)
		return -1;
	return 0;
}

int paserk_k4_public_parse(const char *s, uint8_t pk[PASETO_PK_BYTES])
{
	uint8_t tmp[PASETO_PK_BYTES];

	if (paserk_decode(s, PASERK_PUBLIC_PREFIX, PASERK_K4_PUBLIC_LEN, tmp, sizeof tmp) != 0)
		return -1;
	memcpy(pk, tmp, sizeof tmp);
	return 0;
}

/* Beyond the encoding, the public half must be the one the seed derives:
 * libsodium signs with the embedded public key, so a mismatched pair would
 * yield tokens that never verify, long after the key was loaded. */
int paserk_k4_secret_parse(const char *s, uint8_t sk[PASETO_SK_BYTES])
{
	uint8_t tmp[PASETO_SK_BYTES], derived_sk[PASETO_SK_BYTES], derived_pk[PASETO_PK_BYTES];
	int ret = -1;

	if (paserk_decode(s, PASERK_SECRET_PREFIX, PASERK_K4_SECRET_LEN, tmp, sizeof tmp) == 0) {
		crypto_ready();
		crypto_sign_seed_keypair(derived_pk, derived_sk, tmp);
		if (sodium_memcmp(derived_pk, tmp + crypto_sign_SEEDBYTES, PASETO_PK_BYTES) == 0) {
			memcpy(sk, tmp, sizeof tmp);
			ret = 0;
		}
	}
	sodium_memzero(tmp, sizeof tmp);
	sodium_memzero(derived_sk, sizeof derived_sk);
	return ret;
}
