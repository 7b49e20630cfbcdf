/*
 * paseto.h: PASETO v4.public (Ed25519) and the PASERK k4 key encodings,
 * on libsodium alone. Pure functions: no I/O, no allocation, no clock.
 *
 * A v4.public token is "v4.public." b64url(m || sig) [ "." b64url(f) ]
 * where sig = Ed25519(sk, PAE("v4.public.", m, f, i)).
 */
#ifndef SUBMITD_PASETO_H
#define SUBMITD_PASETO_H

#include <stddef.h>
#include <stdint.h>

#define PASETO_V4_PUBLIC_HEADER     "v4.public."
#define PASETO_V4_PUBLIC_HEADER_LEN 10
#define PASETO_PK_BYTES  32
#define PASETO_SK_BYTES  64     /* libsodium layout: seed || pk */
#define PASETO_SIG_BYTES 64

/* "k4.public." + 43 base64url chars */
#define PASERK_K4_PUBLIC_LEN 53
/* "k4.secret." + 86 base64url chars */
#define PASERK_K4_SECRET_LEN 96
/* "k4.pid." + 44 base64url chars (BLAKE2b-264 of the k4.public string) */
#define PASERK_K4_PID_LEN    51

enum paseto_result {
	PASETO_OK = 0,
	PASETO_MALFORMED,       /* not a v4.public token, bad base64url, too short */
	PASETO_BAD_SIGNATURE,   /* well formed, signature does not verify */
	PASETO_TOO_LONG,        /* output buffer too small / input over limit */
};

/* Sign message m with footer f and implicit assertion i. Writes a
 * NUL-terminated token to out (outmax bytes), length in *len_r. */
enum paseto_result paseto_v4_sign(const uint8_t sk[PASETO_SK_BYTES],
    const uint8_t *m, size_t mlen, const uint8_t *f, size_t flen,
    const uint8_t *i, size_t ilen, char *out, size_t outmax, size_t *len_r);

/* Split a token without verifying it: decodes the footer (if any) into
 * footer_r (footer_max bytes), length in *footer_len_r. Lets a verifier
 * pick the key by the footer's kid before checking the signature. */
enum paseto_result paseto_v4_footer(const char *token, size_t len,
    uint8_t *footer_r, size_t footer_max, size_t *footer_len_r);

/* Verify token with public key pk and implicit assertion i. On success the
 * message is written to m_r (m_max bytes) and its length to *mlen_r. */
enum paseto_result paseto_v4_verify(const uint8_t pk[PASETO_PK_BYTES],
    const char *token, size_t len, const uint8_t *i, size_t ilen,
    uint8_t *m_r, size_t m_max, size_t *mlen_r);

/* PASERK encodings; out buffers hold the length above plus a NUL. */
void paserk_k4_public(const uint8_t pk[PASETO_PK_BYTES], char out[PASERK_K4_PUBLIC_LEN + 1]);
void paserk_k4_secret(const uint8_t sk[PASETO_SK_BYTES], char out[PASERK_K4_SECRET_LEN + 1]);
void paserk_k4_pid(const uint8_t pk[PASETO_PK_BYTES], char out[PASERK_K4_PID_LEN + 1]);
/* Returns 0 and fills pk, or -1 if s is not a valid k4.public string. */
int paserk_k4_public_parse(const char *s, uint8_t pk[PASETO_PK_BYTES]);
int paserk_k4_secret_parse(const char *s, uint8_t sk[PASETO_SK_BYTES]);

#endif
