/*
 * sasl.h: decoding of AUTH PLAIN (RFC 4616) and AUTH LOGIN responses.
 * Pure: base64 in, NUL-terminated identities out, bounded.
 */
#ifndef SUBMITD_SASL_H
#define SUBMITD_SASL_H

#include <stddef.h>

#define SASL_ID_MAX   320   /* authzid / authcid: an address at most */
#define SASL_PASS_MAX 256

enum sasl_result {
	SASL_OK = 0,
	SASL_BAD_BASE64,   /* 501 5.5.2 */
	SASL_BAD_FORMAT,   /* 501 5.5.2: wrong number of fields, NUL/CR/LF inside a field, empty authcid */
	SASL_TOO_LONG,     /* 501 5.5.2 (or 500 5.5.6 for the line) */
	SASL_CANCELLED,    /* the client sent "*" (RFC 4954 4): 501 5.0.0 */
};

/* Decode standard base64 (RFC 4648 4, padding required, no whitespace)
 * into out (outmax octets). "=" alone decodes to the empty string (RFC 4954 4). */
enum sasl_result sasl_base64_decode(const char *in, size_t len,
    unsigned char *out, size_t outmax, size_t *outlen_r);

/* Encode for server challenges ("VXNlcm5hbWU6"); out holds 4*ceil(len/3)+1. */
void sasl_base64_encode(const unsigned char *in, size_t len, char *out);

/* AUTH PLAIN response: base64(authzid NUL authcid NUL passwd). */
enum sasl_result sasl_plain_decode(const char *b64, size_t len,
    char authzid[SASL_ID_MAX + 1], char authcid[SASL_ID_MAX + 1],
    char passwd[SASL_PASS_MAX + 1]);

/* One AUTH LOGIN response (user name or password): base64(text), no NUL,
 * CR or LF inside, at most max octets. */
enum sasl_result sasl_login_decode(const char *b64, size_t len, char *out, size_t max);

#endif
