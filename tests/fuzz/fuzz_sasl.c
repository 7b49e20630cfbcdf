/*
 * fuzz_sasl.c: AUTH PLAIN and AUTH LOGIN decoding (server/protocol/sasl.h).
 *
 * Each input is used twice: as the base64 text a client sends, and as the
 * raw octets that a client would encode (so that the field rules of PLAIN
 * and LOGIN are reached without the fuzzer having to learn base64).
 *
 * Checks:
 *  - base64: decode then encode gives back the input (one spelling per
 *    value, as sasl.c promises), the decoded size is exactly 3/4 of the
 *    input less the padding, and the output bound is exact: outmax = n
 *    succeeds and outmax = n - 1 is TOO_LONG; encode then decode gives back
 *    any octets;
 *  - PLAIN: an accepted response has a non-empty authcid and password, no
 *    NUL/CR/LF, fields within SASL_ID_MAX/SASL_PASS_MAX, and re-encoding
 *    authzid NUL authcid NUL passwd gives back the input; "*" cancels; a
 *    refusal leaves the three outputs empty;
 *  - LOGIN: the same for one field, in a heap buffer of exactly max + 1.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "server/protocol/sasl.h"

static char *
encode(const uint8_t *in, size_t n, size_t *len_r)
{
	char *out = malloc(4 * ((n + 2) / 3) + 1);

	if (out == NULL)
		abort();
	sasl_base64_encode(in, n, out);
	*len_r = strlen(out);
	FUZZ_CHECK(*len_r == 4 * ((n + 2) / 3));
	return out;
}

static void
check_base64(const char *b64, size_t len)
{
	unsigned char *out = malloc(len + 1);
	size_t n = 99999, pad;
	enum sasl_result r;

	if (out == NULL)
		abort();
	r = sasl_base64_decode(b64, len, out, len, &n);
	FUZZ_CHECK(r == SASL_OK || r == SASL_BAD_BASE64);
	if (r == SASL_OK) {
		if (len == 1) {
			FUZZ_CHECK(b64[0] == '=' && n == 0);   /* RFC 4954 4: empty response */
		} else {
			size_t elen;
			char *again;

			pad = len >= 1 && b64[len - 1] == '=' ? (len >= 2 && b64[len - 2] == '=' ? 2 : 1) : 0;
			FUZZ_CHECK(len % 4 == 0 && n == len / 4 * 3 - pad);
			again = encode(out, n, &elen);
			FUZZ_CHECK(elen == len && memcmp(again, b64, len) == 0);
			free(again);
			/* the bound is exact */
			if (n > 0) {
				unsigned char *tight = malloc(n), *short_ = malloc(n - 1 > 0 ? n - 1 : 1);
				size_t m = 0;

				if (tight == NULL || short_ == NULL)
					abort();
				FUZZ_CHECK(sasl_base64_decode(b64, len, tight, n, &m) == SASL_OK && m == n);
				FUZZ_CHECK(memcmp(tight, out, n) == 0);
				FUZZ_CHECK(sasl_base64_decode(b64, len, short_, n - 1, &m) == SASL_TOO_LONG);
				free(tight);
				free(short_);
			}
		}
	} else {
		FUZZ_CHECK(n == 0);
	}
	free(out);
}

static bool
has_crlf_nul(const char *s, size_t n)
{
	return memchr(s, '\0', n) != NULL || memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL;
}

static void
check_plain(const char *b64, size_t len)
{
	char *azid = malloc(SASL_ID_MAX + 1), *acid = malloc(SASL_ID_MAX + 1), *pass = malloc(SASL_PASS_MAX + 1);
	enum sasl_result r;

	if (azid == NULL || acid == NULL || pass == NULL)
		abort();
	r = sasl_plain_decode(b64, len, azid, acid, pass);
	FUZZ_CHECK(r == SASL_OK || r == SASL_BAD_BASE64 || r == SASL_BAD_FORMAT ||
	    r == SASL_TOO_LONG || r == SASL_CANCELLED);
	if (r == SASL_OK) {
		size_t za = strnlen(azid, SASL_ID_MAX + 1), zc = strnlen(acid, SASL_ID_MAX + 1),
		    zp = strnlen(pass, SASL_PASS_MAX + 1), n = za + 1 + zc + 1 + zp, elen;
		uint8_t *msg = malloc(n);
		char *again;

		if (msg == NULL)
			abort();
		FUZZ_CHECK(za <= SASL_ID_MAX && zc <= SASL_ID_MAX && zp <= SASL_PASS_MAX);
		FUZZ_CHECK(zc > 0 && zp > 0);
		FUZZ_CHECK(!has_crlf_nul(azid, za) && !has_crlf_nul(acid, zc) && !has_crlf_nul(pass, zp));
		memcpy(msg, azid, za);
		msg[za] = '\0';
		memcpy(msg + za + 1, acid, zc);
		msg[za + 1 + zc] = '\0';
		memcpy(msg + za + 1 + zc + 1, pass, zp);
		again = encode(msg, n, &elen);
		FUZZ_CHECK(elen == len && memcmp(again, b64, len) == 0);
		free(again);
		free(msg);
	} else {
		FUZZ_CHECK(azid[0] == '\0' && acid[0] == '\0' && pass[0] == '\0');
		if (r == SASL_CANCELLED)
			FUZZ_CHECK(len == 1 && b64[0] == '*');
	}
	free(azid);
	free(acid);
	free(pass);
}

static void
check_login(const char *b64, size_t len, size_t max)
{
	char *out = malloc(max + 1);
	enum sasl_result r;

	if (out == NULL)
		abort();
	r = sasl_login_decode(b64, len, out, max);
	FUZZ_CHECK(r == SASL_OK || r == SASL_BAD_BASE64 || r == SASL_BAD_FORMAT ||
	    r == SASL_TOO_LONG || r == SASL_CANCELLED);
	if (r == SASL_OK) {
		size_t n = strnlen(out, max + 1), elen;
		char *again;

		FUZZ_CHECK(n > 0 && n <= max && !has_crlf_nul(out, n));
		again = encode((const uint8_t *)out, n, &elen);
		FUZZ_CHECK(elen == len && memcmp(again, b64, len) == 0);
		free(again);
	} else {
		FUZZ_CHECK(out[0] == '\0');
		if (r == SASL_CANCELLED)
			FUZZ_CHECK(len == 1 && b64[0] == '*');
	}
	free(out);
}

static void
check_all(const char *b64, size_t len)
{
	check_base64(b64, len);
	check_plain(b64, len);
	check_login(b64, len, SASL_ID_MAX);
	check_login(b64, len, SASL_PASS_MAX);
	check_login(b64, len, 8);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_dup(data, size), *b64, *back;
	size_t len, n = 0;

	/* the input as the client's base64 */
	check_all(text, size);

	/* the input as what the client encodes */
	b64 = encode(data, size, &len);
	back = malloc(size + 1);
	if (back == NULL)
		abort();
	FUZZ_CHECK(sasl_base64_decode(b64, len, (unsigned char *)back, size, &n) == SASL_OK);
	FUZZ_CHECK(n == size && memcmp(back, data, size) == 0);
	free(back);
	{
		char *exact = fuzz_dup((const uint8_t *)b64, len);

		check_all(exact, len);
		free(exact);
	}
	free(b64);
	free(text);
	return 0;
}
