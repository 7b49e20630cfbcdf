/*
 * sasl.c: the client's side of AUTH PLAIN (RFC 4616) and AUTH LOGIN,
 * decoded into bounded, NUL-terminated strings. Base64 is hand-written
 * rather than taken from libsodium so that exactly one spelling of each
 * value is accepted (see sasl_base64_decode) and the rules are visible
 * here. Buffers that held a password are wiped before returning.
 */
#include "server/protocol/sasl.h"

#include <sodium.h>
#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* RFC 4648 4, table 1; -1 for everything else, "-_" and whitespace too. */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict: length a multiple of 4, "=" only as the last one or two octets,
 * no whitespace (RFC 4648 3.3 lets us refuse it), and the unused low bits
 * of the last symbol must be zero (RFC 4648 3.5 allows refusing them; we
 * do, so that one value has one encoding). Invalid input is BAD_BASE64
 * even when it is also too long; a decoded size over outmax is TOO_LONG. */
enum sasl_result
sasl_base64_decode(const char *in, size_t len,
    unsigned char *out, size_t outmax, size_t *outlen_r)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t pad = 0, n, i, o = 0;

	*outlen_r = 0;
	/* RFC 4954 4: "=" is an empty initial response. */
	if (len == 1 && s[0] == '=')
		return SASL_OK;
	if (len % 4 != 0)
		return SASL_BAD_BASE64;
	if (len > 0 && s[len - 1] == '=')
		pad = s[len - 2] == '=' ? 2 : 1;
	for (i = 0; i < len - pad; i++) {
		if (b64_value(s[i]) < 0)
			return SASL_BAD_BASE64;
	}
	if (pad == 2 && (b64_value(s[len - 3]) & 0x0f) != 0)
		return SASL_BAD_BASE64;
	if (pad == 1 && (b64_value(s[len - 2]) & 0x03) != 0)
		return SASL_BAD_BASE64;
	n = len / 4 * 3 - pad;
	if (n > outmax)
		return SASL_TOO_LONG;
	for (i = 0; i < len; i += 4) {
		unsigned long v = 0;
		size_t k;

		for (k = 0; k < 4; k++)
			v = v << 6 | (s[i + k] == '=' ? 0u : (unsigned)b64_value(s[i + k]));
		out[o++] = (unsigned char)(v >> 16);
		if (o < n)
			out[o++] = (unsigned char)(v >> 8);
		if (o < n)
			out[o++] = (unsigned char)v;
	}
	*outlen_r = n;
	return SASL_OK;
}

void
sasl_base64_encode(const unsigned char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i + 2 < len; i += 3) {
		unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];

		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = b64_alphabet[v >> 6 & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (len - i == 1) {
		unsigned long v = (unsigned long)in[i] << 16;

		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8;

		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = b64_alphabet[v >> 6 & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
}

/* RFC 4954 4: a lone "*" cancels the exchange. */
static int
is_cancel(const char *b64, size_t len)
{
	return len == 1 && b64[0] == '*';
}

/* CR and LF would end a line if an identity were ever echoed or logged;
 * NUL would cut it short. None belongs in an identity or a password. */
static int
has_crlf_nul(const unsigned char *s, size_t len)
{
	return memchr(s, '\0', len) != NULL || memchr(s, '\r', len) != NULL ||
	    memchr(s, '\n', len) != NULL;
}

/* PLAIN: [authzid] NUL authcid NUL passwd (RFC 4616 2). */
enum sasl_result
sasl_plain_decode(const char *b64, size_t len,
    char authzid[SASL_ID_MAX + 1], char authcid[SASL_ID_MAX + 1],
    char passwd[SASL_PASS_MAX + 1])
{
	unsigned char buf[SASL_ID_MAX + 1 + SASL_ID_MAX + 1 + SASL_PASS_MAX];
	const unsigned char *f[3];
	size_t flen[3], n, i, start, nf;
	enum sasl_result r;

	authzid[0] = authcid[0] = passwd[0] = '\0';
	if (is_cancel(b64, len))
		return SASL_CANCELLED;
	/* buf holds the largest valid message, so anything that does not
	 * fit already has a field over its bound. */
	r = sasl_base64_decode(b64, len, buf, sizeof(buf), &n);
	if (r != SASL_OK)
		goto out;
	r = SASL_BAD_FORMAT;
	for (i = 0, start = 0, nf = 0; i <= n; i++) {
		if (i < n && buf[i] != '\0')
			continue;
		/* a fourth field would mean a NUL inside the password */
		if (nf == 3)
			goto out;
		f[nf] = buf + start;
		flen[nf++] = i - start;
		start = i + 1;
	}
	if (nf != 3)
		goto out;
	for (i = 0; i < 3; i++) {
		if (has_crlf_nul(f[i], flen[i]))
			goto out;
	}
	/* RFC 4616 2: authcid = 1*SAFE and passwd = 1*SAFE; only the
	 * authzid may be empty (then it is the authcid). */
	if (flen[1] == 0 || flen[2] == 0)
		goto out;
	if (flen[0] > SASL_ID_MAX || flen[1] > SASL_ID_MAX || flen[2] > SASL_PASS_MAX) {
		r = SASL_TOO_LONG;
		goto out;
	}
	memcpy(authzid, f[0], flen[0]);
	authzid[flen[0]] = '\0';
	memcpy(authcid, f[1], flen[1]);
	authcid[flen[1]] = '\0';
	memcpy(passwd, f[2], flen[2]);
	passwd[flen[2]] = '\0';
	r = SASL_OK;
out:
	sodium_memzero(buf, sizeof(buf));
	return r;
}

/* LOGIN: one base64 string per challenge. out must hold max + 1 octets.
 * An empty answer is refused as a format error, like an empty authcid or
 * password in PLAIN: no account has an empty name or password. */
enum sasl_result
sasl_login_decode(const char *b64, size_t len, char *out, size_t max)
{
	unsigned char *u = (unsigned char *)out;
	enum sasl_result r;
	size_t n;

	out[0] = '\0';
	if (is_cancel(b64, len))
		return SASL_CANCELLED;
	r = sasl_base64_decode(b64, len, u, max, &n);
	if (r != SASL_OK) {
		sodium_memzero(out, max + 1);
		return r;
	}
	if (n == 0 || has_crlf_nul(u, n)) {
		sodium_memzero(out, max + 1);
		return SASL_BAD_FORMAT;
	}
	out[n] = '\0';
	return SASL_OK;
}
