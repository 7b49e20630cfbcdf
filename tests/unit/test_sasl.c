/*
 * test_sasl.c: base64 and the AUTH PLAIN / LOGIN response decoders
 * (server/protocol/sasl.c). Tables of {input, bound, expected}; PLAIN rows are given
 * as the decoded message (NULs and all) and encoded by the code under test,
 * which also checks that encoder and decoder agree. Inputs are exact-size
 * heap copies so valgrind catches any over-read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/protocol/sasl.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define S(x) x, sizeof(x) - 1

static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	assert_non_null(p);
	if (n > 0)
		memcpy(p, s, n);
	return p;
}

/* ---- base64 ---- */

struct b64_case {
	const char *in;
	size_t outmax;
	enum sasl_result want;
	const char *out;
	size_t out_len;
};

static const struct b64_case b64_cases[] = {
	/* RFC 4648 10 test vectors */
	{ "", 16, SASL_OK, S("") },
	{ "Zg==", 16, SASL_OK, S("f") },
	{ "Zm8=", 16, SASL_OK, S("fo") },
	{ "Zm9v", 16, SASL_OK, S("foo") },
	{ "Zm9vYg==", 16, SASL_OK, S("foob") },
	{ "Zm9vYmE=", 16, SASL_OK, S("fooba") },
	{ "Zm9vYmFy", 16, SASL_OK, S("foobar") },
	{ "AHVzZXIAcGFzcw==", 16, SASL_OK, S("\0user\0pass") },
	{ "+/+/", 16, SASL_OK, S("\xfb\xff\xbf") },
	/* RFC 4954 4: "=" is the empty response */
	{ "=", 16, SASL_OK, S("") },
	/* lengths and padding */
	{ "Zg=", 16, SASL_BAD_BASE64, S("") },
	{ "Zg", 16, SASL_BAD_BASE64, S("") },
	{ "Zm9vY", 16, SASL_BAD_BASE64, S("") },
	{ "Z===", 16, SASL_BAD_BASE64, S("") },
	{ "====", 16, SASL_BAD_BASE64, S("") },
	{ "==", 16, SASL_BAD_BASE64, S("") },
	{ "Z=g=", 16, SASL_BAD_BASE64, S("") },
	{ "Zg==Zg==", 16, SASL_BAD_BASE64, S("") },
	{ "Zm9v=", 16, SASL_BAD_BASE64, S("") },
	/* alphabet: no whitespace, no URL-safe symbols, no "*" */
	{ "Zm9v\r\n", 16, SASL_BAD_BASE64, S("") },
	{ "Zm 9v", 16, SASL_BAD_BASE64, S("") },
	{ " Zm9v", 16, SASL_BAD_BASE64, S("") },
	{ "Zm9v    ", 16, SASL_BAD_BASE64, S("") },
	{ "-_-_", 16, SASL_BAD_BASE64, S("") },
	{ "Zm9\xc3", 16, SASL_BAD_BASE64, S("") },
	{ "*", 16, SASL_BAD_BASE64, S("") },
	/* non-zero unused bits are refused (RFC 4648 3.5) */
	{ "Zh==", 16, SASL_BAD_BASE64, S("") },
	{ "Zm9=", 16, SASL_BAD_BASE64, S("") },
	{ "Zm/=", 16, SASL_BAD_BASE64, S("") },
	/* bounds: exactly outmax fits, one more does not */
	{ "Zm9v", 3, SASL_OK, S("foo") },
	{ "Zm9v", 2, SASL_TOO_LONG, S("") },
	{ "Zm8=", 1, SASL_TOO_LONG, S("") },
	{ "Zg==", 0, SASL_TOO_LONG, S("") },
	{ "=", 0, SASL_OK, S("") },
	/* invalid wins over too long */
	{ "Zm9v!m9v", 2, SASL_BAD_BASE64, S("") },
};

static void
test_base64_decode(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(b64_cases); i++) {
		const struct b64_case *c = &b64_cases[i];
		size_t n = strlen(c->in), out_len = 99;
		char *buf = dup_exact(c->in, n);
		unsigned char *out = malloc(c->outmax + 1);
		enum sasl_result r;

		assert_non_null(out);
		r = sasl_base64_decode(buf, n, out, c->outmax, &out_len);
		if (r != c->want || (r == SASL_OK && (out_len != c->out_len ||
		    memcmp(out, c->out, out_len) != 0)) || (r != SASL_OK && out_len != 0)) {
			print_error("base64 case %zu \"%s\": got %d len %zu\n", i, c->in, (int)r, out_len);
			fail();
		}
		free(buf);
		free(out);
	}
}

static void
test_base64_encode(void **state)
{
	static const struct { const char *in; size_t len; const char *out; } rows[] = {
		{ S(""), "" },
		{ S("f"), "Zg==" },
		{ S("fo"), "Zm8=" },
		{ S("foo"), "Zm9v" },
		{ S("foob"), "Zm9vYg==" },
		{ S("fooba"), "Zm9vYmE=" },
		{ S("foobar"), "Zm9vYmFy" },
		/* the AUTH LOGIN challenges */
		{ S("Username:"), "VXNlcm5hbWU6" },
		{ S("Password:"), "UGFzc3dvcmQ6" },
		{ S("\0user\0pass"), "AHVzZXIAcGFzcw==" },
	};
	char out[64];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(rows); i++) {
		memset(out, '#', sizeof(out));
		sasl_base64_encode((const unsigned char *)rows[i].in, rows[i].len, out);
		assert_string_equal(out, rows[i].out);
	}
}

/* Every octet value at every length up to 70: encode then decode is the
 * identity, and the encoding has the promised length. */
static void
test_base64_roundtrip(void **state)
{
	unsigned char in[70], back[70];
	char enc[4 * 24 + 1];
	size_t len, i, n;

	(void)state;
	for (len = 0; len <= sizeof(in); len++) {
		for (i = 0; i < len; i++)
			in[i] = (unsigned char)(i * 37 + len * 11);
		sasl_base64_encode(in, len, enc);
		assert_int_equal(strlen(enc), 4 * ((len + 2) / 3));
		assert_int_equal(sasl_base64_decode(enc, strlen(enc), back, len, &n), SASL_OK);
		assert_int_equal(n, len);
		assert_memory_equal(in, back, len);
	}
	for (i = 0; i < 256; i++) {
		in[0] = (unsigned char)i;
		sasl_base64_encode(in, 1, enc);
		assert_int_equal(sasl_base64_decode(enc, 4, back, 1, &n), SASL_OK);
		assert_int_equal(back[0], i);
	}
}

/* ---- AUTH PLAIN ---- */

struct plain_case {
	const char *raw;      /* decoded message, encoded by the test; or */
	size_t raw_len;
	const char *b64;      /* the literal response, when not NULL */
	enum sasl_result want;
	const char *authzid, *authcid, *passwd;
};

#define PLAIN_RAW(x, r, z, c, p) { S(x), NULL, r, z, c, p }
#define PLAIN_B64(x, r)          { NULL, 0, x, r, "", "", "" }
#define PLAIN_B64_OK(x, z, c, p) { NULL, 0, x, SASL_OK, z, c, p }

static const struct plain_case plain_cases[] = {
	PLAIN_RAW("\0user\0pass", SASL_OK, "", "user", "pass"),
	PLAIN_RAW("admin\0user@example.org\0pass word", SASL_OK, "admin", "user@example.org", "pass word"),
	PLAIN_RAW("u\0u\0p\xc3\xa4ss", SASL_OK, "u", "u", "p\xc3\xa4ss"),
	PLAIN_B64_OK("AHVzZXIAcGFzcw==", "", "user", "pass"),
	PLAIN_B64_OK("YQBiAGM=", "a", "b", "c"),
	/* field count */
	PLAIN_RAW("user\0pass", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("userpass", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("a\0b\0c\0d", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("\0user\0pa\0ss", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("\0\0\0", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("\0user\0pass\0", SASL_BAD_FORMAT, "", "", ""),
	/* empty authcid or password (RFC 4616 2: 1*SAFE) */
	PLAIN_RAW("\0\0pass", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("admin\0\0pass", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("\0user\0", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("\0\0", SASL_BAD_FORMAT, "", "", ""),
	/* CR / LF inside a field */
	PLAIN_RAW("\0us\rer\0pass", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("\0user\0pa\nss", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("a\r\nz\0user\0pass", SASL_BAD_FORMAT, "", "", ""),
	PLAIN_RAW("\0user\0pass\r\n", SASL_BAD_FORMAT, "", "", ""),
	/* the special responses */
	PLAIN_B64("*", SASL_CANCELLED),
	PLAIN_B64("=", SASL_BAD_FORMAT),
	PLAIN_B64("", SASL_BAD_FORMAT),
	PLAIN_B64("**", SASL_BAD_BASE64),
	PLAIN_B64("*=", SASL_BAD_BASE64),
	/* bad base64 */
	PLAIN_B64("AHVzZXIAcGFzcw", SASL_BAD_BASE64),
	PLAIN_B64("AHVzZXIAcGFzcw==\r\n", SASL_BAD_BASE64),
	PLAIN_B64("AHVzZXIAcGFzcw== ", SASL_BAD_BASE64),
	PLAIN_B64("AHVzZXIAcGFzcx==", SASL_BAD_BASE64),
	PLAIN_B64("AHVz ZXIAcGFzcw==", SASL_BAD_BASE64),
};

static void
check_plain(const char *b64, size_t len, enum sasl_result want,
    const char *z, const char *c, const char *p, const char *what)
{
	char authzid[SASL_ID_MAX + 1], authcid[SASL_ID_MAX + 1], passwd[SASL_PASS_MAX + 1];
	char *buf = dup_exact(b64, len);
	enum sasl_result r;

	memset(authzid, '#', sizeof(authzid));
	memset(authcid, '#', sizeof(authcid));
	memset(passwd, '#', sizeof(passwd));
	r = sasl_plain_decode(buf, len, authzid, authcid, passwd);
	free(buf);
	if (r != want) {
		print_error("plain %s: got %d want %d\n", what, (int)r, (int)want);
		fail();
	}
	/* on error nothing is left behind */
	if (r != SASL_OK) {
		assert_string_equal(authzid, "");
		assert_string_equal(authcid, "");
		assert_string_equal(passwd, "");
		return;
	}
	assert_string_equal(authzid, z);
	assert_string_equal(authcid, c);
	assert_string_equal(passwd, p);
}

static void
test_plain(void **state)
{
	char enc[2048];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(plain_cases); i++) {
		const struct plain_case *c = &plain_cases[i];
		char what[32];

		snprintf(what, sizeof(what), "case %zu", i);
		if (c->b64 != NULL) {
			check_plain(c->b64, strlen(c->b64), c->want, c->authzid,
			    c->authcid, c->passwd, what);
			continue;
		}
		sasl_base64_encode((const unsigned char *)c->raw, c->raw_len, enc);
		check_plain(enc, strlen(enc), c->want, c->authzid, c->authcid, c->passwd, what);
	}
}

/* Field bounds: SASL_ID_MAX for the identities, SASL_PASS_MAX for the
 * password, each exactly at the bound and one over; and a response far
 * larger than any valid one. */
static void
test_plain_bounds(void **state)
{
	static const struct { size_t z, c, p; enum sasl_result want; } rows[] = {
		{ 0, SASL_ID_MAX, 8, SASL_OK },
		{ 0, SASL_ID_MAX + 1, 8, SASL_TOO_LONG },
		{ SASL_ID_MAX, 4, 8, SASL_OK },
		{ SASL_ID_MAX + 1, 4, 8, SASL_TOO_LONG },
		{ 0, 4, SASL_PASS_MAX, SASL_OK },
		{ 0, 4, SASL_PASS_MAX + 1, SASL_TOO_LONG },
		{ SASL_ID_MAX, SASL_ID_MAX, SASL_PASS_MAX, SASL_OK },
		{ 0, 4, 600, SASL_TOO_LONG },
		{ 5000, 4, 8, SASL_TOO_LONG },
	};
	static unsigned char raw[6000];
	static char enc[8100], z[SASL_ID_MAX + 2], c[SASL_ID_MAX + 2], p[SASL_PASS_MAX + 2];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(rows); i++) {
		size_t n = 0;
		char what[32];

		memset(raw, 'z', rows[i].z);
		n += rows[i].z;
		raw[n++] = '\0';
		memset(raw + n, 'c', rows[i].c);
		n += rows[i].c;
		raw[n++] = '\0';
		memset(raw + n, 'p', rows[i].p);
		n += rows[i].p;
		sasl_base64_encode(raw, n, enc);
		if (rows[i].want == SASL_OK) {
			memset(z, 'z', rows[i].z);
			z[rows[i].z] = '\0';
			memset(c, 'c', rows[i].c);
			c[rows[i].c] = '\0';
			memset(p, 'p', rows[i].p);
			p[rows[i].p] = '\0';
		}
		snprintf(what, sizeof(what), "bounds row %zu", i);
		check_plain(enc, strlen(enc), rows[i].want, z, c, p, what);
	}
}

/* ---- AUTH LOGIN ---- */

struct login_case {
	const char *raw;      /* encoded by the test, or */
	size_t raw_len;
	const char *b64;      /* literal, when not NULL */
	size_t max;
	enum sasl_result want;
};

static const struct login_case login_cases[] = {
	{ S("user@example.org"), NULL, SASL_ID_MAX, SASL_OK },
	{ S("p\xc3\xa4ss word"), NULL, SASL_PASS_MAX, SASL_OK },
	{ S("user"), NULL, 4, SASL_OK },
	{ S("user"), NULL, 3, SASL_TOO_LONG },
	{ S("us\0er"), NULL, 64, SASL_BAD_FORMAT },
	{ S("user\r"), NULL, 64, SASL_BAD_FORMAT },
	{ S("us\ner"), NULL, 64, SASL_BAD_FORMAT },
	{ S("\0"), NULL, 64, SASL_BAD_FORMAT },
	{ NULL, 0, "dXNlcg==", 64, SASL_OK },
	{ NULL, 0, "*", 64, SASL_CANCELLED },
	{ NULL, 0, "=", 64, SASL_BAD_FORMAT },
	{ NULL, 0, "", 64, SASL_BAD_FORMAT },
	{ NULL, 0, "dXNlcg", 64, SASL_BAD_BASE64 },
	{ NULL, 0, "dXNlcg== ", 64, SASL_BAD_BASE64 },
	{ NULL, 0, "dXNl\ncg==", 64, SASL_BAD_BASE64 },
	{ NULL, 0, "**", 64, SASL_BAD_BASE64 },
};

static void
test_login(void **state)
{
	char enc[256];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(login_cases); i++) {
		const struct login_case *c = &login_cases[i];
		const char *b64 = c->b64;
		char *buf, *out;
		enum sasl_result r;
		size_t n;

		if (b64 == NULL) {
			sasl_base64_encode((const unsigned char *)c->raw, c->raw_len, enc);
			b64 = enc;
		}
		n = strlen(b64);
		buf = dup_exact(b64, n);
		/* the contract: out holds max + 1 octets */
		out = malloc(c->max + 1);
		assert_non_null(out);
		memset(out, '#', c->max + 1);
		r = sasl_login_decode(buf, n, out, c->max);
		if (r != c->want) {
			print_error("login case %zu: got %d want %d\n", i, (int)r, (int)c->want);
			fail();
		}
		if (r == SASL_OK) {
			if (c->raw != NULL) {
				assert_int_equal(strlen(out), c->raw_len);
				assert_memory_equal(out, c->raw, c->raw_len);
			} else {
				assert_string_equal(out, "user");
			}
		} else {
			assert_string_equal(out, "");
		}
		free(buf);
		free(out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64_decode),
		cmocka_unit_test(test_base64_encode),
		cmocka_unit_test(test_base64_roundtrip),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_plain_bounds),
		cmocka_unit_test(test_login),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
