/*
 * test_paseto.c: PASETO v4.public and PASERK k4 against the official test
 * vectors (tests/unit/vectors/paseto/, copied unchanged from
 * paseto-standard/test-vectors), then the ways a token can be mangled on
 * its way through an SMTP client: truncation, flipped characters, base64
 * padding, footer games and oversized input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "tokens/paseto.h"

#define VECTOR_DIR SOURCE_ROOT "/tests/unit/vectors/paseto/"
#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define TOKEN_BUF 8192

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* --- helpers ------------------------------------------------------------ */

static json_t *load_vectors(const char *file)
{
	char path[512];
	json_error_t err;
	json_t *root;

	snprintf(path, sizeof path, "%s%s", VECTOR_DIR, file);
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (root == NULL)
		fail_msg("%s:%d: %s", path, err.line, err.text);
	assert_true(json_is_array(json_object_get(root, "tests")));
	return root;
}

/* NULL when the field is absent or JSON null. */
static const char *jstr(json_t *t, const char *name)
{
	return json_string_value(json_object_get(t, name));
}

/* Decode hex of any length into buf; returns the byte count. */
static size_t unhex(const char *hex, uint8_t *buf, size_t max)
{
	size_t n = 0;

	assert_non_null(hex);
	assert_int_equal(sodium_hex2bin(buf, max, hex, strlen(hex), NULL, &n, NULL), 0);
	return n;
}

/* prefix || base64url(bin): what a careless encoder would emit for a key
 * of the wrong size. */
static void paserk_like(const char *prefix, const uint8_t *bin, size_t n, char *out, size_t max)
{
	size_t plen = strlen(prefix);

	assert_true(plen + sodium_base64_ENCODED_LEN(n, B64) <= max);
	memcpy(out, prefix, plen);
	sodium_bin2base64(out + plen, max - plen, bin, n, B64);
}

/* A fixed key pair so failures reproduce. */
static void test_keypair(uint8_t pk[PASETO_PK_BYTES], uint8_t sk[PASETO_SK_BYTES])
{
	uint8_t seed[crypto_sign_SEEDBYTES];

	for (size_t k = 0; k < sizeof seed; k++)
		seed[k] = (uint8_t)(0xa0 + k);
	crypto_sign_seed_keypair(pk, sk, seed);
}

static size_t sign_str(const uint8_t *sk, const char *m, const char *f, const char *i,
    char *out, size_t outmax)
{
	size_t len = 0;

	assert_int_equal(paseto_v4_sign(sk, (const uint8_t *)m, strlen(m), (const uint8_t *)f,
	    strlen(f), (const uint8_t *)i, strlen(i), out, outmax, &len), PASETO_OK);
	assert_int_equal(strlen(out), len);
	return len;
}

static enum paseto_result verify_str(const uint8_t *pk, const char *token, size_t len,
    const char *i)
{
	uint8_t m[TOKEN_BUF];
	size_t mlen;

	return paseto_v4_verify(pk, token, len, (const uint8_t *)i, strlen(i), m, sizeof m, &mlen);
}

/* --- official vectors ---------------------------------------------------- */

static void test_v4_vectors(void **state)
{
	json_t *root = load_vectors("v4.json"), *tests = json_object_get(root, "tests"), *t;
	uint8_t suite_pk[PASETO_PK_BYTES];
	unsigned public_ok = 0, public_fail = 0, other = 0;
	bool have_suite_pk = false;
	size_t idx;

	(void)state;
	/* Vectors without a public key are checked against the suite's. */
	json_array_foreach(tests, idx, t) {
		if (jstr(t, "public-key") != NULL && !have_suite_pk) {
			assert_int_equal(unhex(jstr(t, "public-key"), suite_pk, sizeof suite_pk),
			    PASETO_PK_BYTES);
			have_suite_pk = true;
		}
	}
	assert_true(have_suite_pk);

	json_array_foreach(tests, idx, t) {
		const char *name = jstr(t, "name"), *token = jstr(t, "token");
		const char *ia = jstr(t, "implicit-assertion") ? jstr(t, "implicit-assertion") : "";
		bool expect_fail = json_is_true(json_object_get(t, "expect-fail"));
		uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES], m[TOKEN_BUF], f[TOKEN_BUF];
		uint8_t other_key[64];
		char out[TOKEN_BUF];
		size_t mlen, flen, len;

		assert_non_null(name);
		assert_non_null(token);
		if (strncmp(token, PASETO_V4_PUBLIC_HEADER, PASETO_V4_PUBLIC_HEADER_LEN) != 0) {
			/* v4.local and v3.local: not ours to read, whatever the key. */
			assert_int_equal(verify_str(suite_pk, token, strlen(token), ia),
			    PASETO_MALFORMED);
			if (jstr(t, "key") != NULL &&
			    unhex(jstr(t, "key"), other_key, sizeof other_key) == PASETO_PK_BYTES)
				assert_int_equal(verify_str(other_key, token, strlen(token), ia),
				    PASETO_MALFORMED);
			other++;
			continue;
		}
		if (expect_fail) {
			/* 4-F-2: a v4.public token that must not verify, neither
			 * with the suite key nor with the symmetric key it carries. */
			const uint8_t *key = suite_pk;

			if (jstr(t, "public-key") != NULL) {
				unhex(jstr(t, "public-key"), pk, sizeof pk);
				key = pk;
			}
			assert_int_not_equal(verify_str(key, token, strlen(token), ia), PASETO_OK);
			if (jstr(t, "key") != NULL &&
			    unhex(jstr(t, "key"), other_key, sizeof other_key) == PASETO_PK_BYTES)
				assert_int_not_equal(verify_str(other_key, token, strlen(token), ia),
				    PASETO_OK);
			public_fail++;
			continue;
		}

		assert_int_equal(unhex(jstr(t, "public-key"), pk, sizeof pk), PASETO_PK_BYTES);
		assert_int_equal(unhex(jstr(t, "secret-key"), sk, sizeof sk), PASETO_SK_BYTES);
		assert_int_equal(paseto_v4_verify(pk, token, strlen(token), (const uint8_t *)ia,
		    strlen(ia), m, sizeof m, &mlen), PASETO_OK);
		assert_int_equal(mlen, strlen(jstr(t, "payload")));
		assert_memory_equal(m, jstr(t, "payload"), mlen);
		assert_int_equal(paseto_v4_footer(token, strlen(token), f, sizeof f, &flen), PASETO_OK);
		assert_int_equal(flen, strlen(jstr(t, "footer")));
		assert_memory_equal(f, jstr(t, "footer"), flen);

		/* Ed25519 is deterministic: signing must give the same bytes. */
		len = sign_str(sk, jstr(t, "payload"), jstr(t, "footer"), ia, out, sizeof out);
		assert_int_equal(len, strlen(token));
		assert_string_equal(out, token);

		/* Verification is bound to the implicit assertion. */
		assert_int_equal(verify_str(pk, token, strlen(token), "{\"test-vector\":\"other\"}"),
		    PASETO_BAD_SIGNATURE);
		public_ok++;
	}
	/* Catch a loader that silently skipped cases. */
	assert_int_equal(public_ok, 3);
	assert_int_equal(public_fail, 1);
	assert_int_equal(other, 13);
	json_decref(root);
}

/* Cases for a key that is not 32 bytes: the API cannot even take it, and
 * the string an encoder that ignored the size would emit must not parse. */
static void check_wrong_size_public(const uint8_t *bin, size_t n)
{
	char s[512];
	uint8_t pk[PASETO_PK_BYTES];

	assert_int_not_equal(n, PASETO_PK_BYTES);
	paserk_like("k4.public.", bin, n, s, sizeof s);
	assert_int_equal(paserk_k4_public_parse(s, pk), -1);
}

static void test_paserk_public_vectors(void **state)
{
	json_t *root = load_vectors("k4.public.json"), *t;
	unsigned ok = 0, failed = 0;
	size_t idx;

	(void)state;
	json_array_foreach(json_object_get(root, "tests"), idx, t) {
		uint8_t key[128], pk[PASETO_PK_BYTES];
		char out[PASERK_K4_PUBLIC_LEN + 1];
		size_t n = unhex(jstr(t, "key"), key, sizeof key);

		if (json_is_true(json_object_get(t, "expect-fail"))) {
			check_wrong_size_public(key, n);
			failed++;
			continue;
		}
		assert_int_equal(n, PASETO_PK_BYTES);
		paserk_k4_public(key, out);
		assert_string_equal(out, jstr(t, "paserk"));
		assert_int_equal(paserk_k4_public_parse(jstr(t, "paserk"), pk), 0);
		assert_memory_equal(pk, key, PASETO_PK_BYTES);
		ok++;
	}
	assert_int_equal(ok, 3);
	assert_int_equal(failed, 1);
	json_decref(root);
}

static void test_paserk_pid_vectors(void **state)
{
	json_t *root = load_vectors("k4.pid.json"), *t;
	unsigned ok = 0, failed = 0;
	size_t idx;

	(void)state;
	json_array_foreach(json_object_get(root, "tests"), idx, t) {
		uint8_t key[128];
		char out[PASERK_K4_PID_LEN + 1];
		size_t n = unhex(jstr(t, "key"), key, sizeof key);

		if (json_is_true(json_object_get(t, "expect-fail"))) {
			/* No k4.public can be made of it, so no k4.pid either. */
			check_wrong_size_public(key, n);
			failed++;
			continue;
		}
		assert_int_equal(n, PASETO_PK_BYTES);
		paserk_k4_pid(key, out);
		assert_int_equal(strlen(out), PASERK_K4_PID_LEN);
		assert_string_equal(out, jstr(t, "paserk"));
		ok++;
	}
	assert_int_equal(ok, 3);
	assert_int_equal(failed, 2);
	json_decref(root);
}

static void test_paserk_secret_vectors(void **state)
{
	json_t *root = load_vectors("k4.secret.json"), *t;
	unsigned ok = 0, failed = 0;
	size_t idx;

	(void)state;
	json_array_foreach(json_object_get(root, "tests"), idx, t) {
		uint8_t key[128], sk[PASETO_SK_BYTES], pk[PASETO_PK_BYTES], seed[64];
		uint8_t derived_pk[PASETO_PK_BYTES], derived_sk[PASETO_SK_BYTES];
		char out[PASERK_K4_SECRET_LEN + 1], s[512];
		size_t n = unhex(jstr(t, "key"), key, sizeof key);

		if (json_is_true(json_object_get(t, "expect-fail"))) {
			assert_int_not_equal(n, PASETO_SK_BYTES);
			paserk_like("k4.secret.", key, n, s, sizeof s);
			assert_int_equal(paserk_k4_secret_parse(s, sk), -1);
			failed++;
			continue;
		}
		assert_int_equal(n, PASETO_SK_BYTES);
		paserk_k4_secret(key, out);
		assert_string_equal(out, jstr(t, "paserk"));
		assert_int_equal(paserk_k4_secret_parse(jstr(t, "paserk"), sk), 0);
		assert_memory_equal(sk, key, PASETO_SK_BYTES);
		/* The vector's seed and public key agree with libsodium's layout. */
		assert_int_equal(unhex(jstr(t, "secret-key-seed"), seed, sizeof seed), 32);
		assert_int_equal(unhex(jstr(t, "public-key"), pk, sizeof pk), PASETO_PK_BYTES);
		crypto_sign_seed_keypair(derived_pk, derived_sk, seed);
		assert_memory_equal(derived_sk, key, PASETO_SK_BYTES);
		assert_memory_equal(derived_pk, pk, PASETO_PK_BYTES);
		ok++;
	}
	assert_int_equal(ok, 3);
	assert_int_equal(failed, 2);
	json_decref(root);
}

/* --- PASERK edge cases ---------------------------------------------------- */

static void test_paserk_rejects(void **state)
{
	static const char good[] = "k4.public.cHFyc3R1dnd4eXp7fH1-f4CBgoOEhYaHiImKi4yNjo8";
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES], pk2[PASETO_PK_BYTES];
	uint8_t sk2[PASETO_SK_BYTES], zero[PASETO_PK_BYTES] = { 0 };
	char s[256], out[PASERK_K4_SECRET_LEN + 1];

	(void)state;
	assert_int_equal(paserk_k4_public_parse(good, pk), 0);
	assert_int_equal(paserk_k4_public_parse(NULL, pk), -1);
	assert_int_equal(paserk_k4_public_parse("", pk), -1);

	/* Other versions and types with an otherwise valid body. */
	paserk_like("k3.public.", pk, sizeof pk, s, sizeof s);
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	paserk_like("k4.local.", pk, sizeof pk, s, sizeof s);
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	paserk_like("K4.public.", pk, sizeof pk, s, sizeof s);
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	/* A v3 public key is 49 bytes (compressed P-384): wrong size. */
	{
		uint8_t v3[49];

		memset(v3, 0x02, sizeof v3);
		paserk_like("k4.public.", v3, sizeof v3, s, sizeof s);
		assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	}

	/* Truncated, extended, padded, standard alphabet, non-canonical. */
	snprintf(s, sizeof s, "%.*s", (int)strlen(good) - 1, good);
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	snprintf(s, sizeof s, "%sA", good);
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	snprintf(s, sizeof s, "%s=", good);
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	snprintf(s, sizeof s, "%s", good);
	*strchr(s + 10, '-') = '+';
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	/* libsodium 1.0.18 alone would read any byte >= 0x80 as '_'. */
	snprintf(s, sizeof s, "%s", good);
	s[20] = '\x80';
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);
	/* 43 characters carry 258 bits; the last two must be zero. */
	snprintf(s, sizeof s, "k4.public.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	assert_int_equal(paserk_k4_public_parse(s, pk2), 0);
	assert_memory_equal(pk2, zero, sizeof zero);
	s[strlen(s) - 1] = 'B';
	assert_int_equal(paserk_k4_public_parse(s, pk2), -1);

	/* Keys of one type are refused by the other's parser. */
	test_keypair(pk, sk);
	paserk_k4_secret(sk, out);
	assert_int_equal(paserk_k4_public_parse(out, pk2), -1);
	assert_int_equal(paserk_k4_secret_parse(good, sk), -1);
	assert_int_equal(paserk_k4_secret_parse(NULL, sk), -1);

	/* A secret key whose public half is not derived from its seed would
	 * sign tokens that never verify: refused at load time. */
	test_keypair(pk, sk);
	sk[40] ^= 1;
	paserk_k4_secret(sk, out);
	assert_int_equal(paserk_k4_secret_parse(out, sk2), -1);
}

static void test_paserk_pid_properties(void **state)
{
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES];
	char a[PASERK_K4_PID_LEN + 1], b[PASERK_K4_PID_LEN + 1];

	(void)state;
	test_keypair(pk, sk);
	paserk_k4_pid(pk, a);
	paserk_k4_pid(pk, b);
	assert_string_equal(a, b);
	assert_int_equal(strncmp(a, "k4.pid.", 7), 0);
	assert_int_equal(strspn(a + 7, b64url_alphabet), PASERK_K4_PID_LEN - 7);
	pk[31] ^= 0x80;
	paserk_k4_pid(pk, b);
	assert_string_not_equal(a, b);
}

/* --- sign / verify --------------------------------------------------------- */

static void test_roundtrip_lengths(void **state)
{
	static const size_t mlens[] = { 0, 1, 2, 3, 4, 63, 64, 65, 200, 1000, 2700 };
	static const size_t flens[] = { 0, 1, 2, 3, 61, 200 };
	static const char *ias[] = { "", "{\"aud\":\"submitd\"}" };
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES], other_pk[PASETO_PK_BYTES];
	uint8_t other_sk[PASETO_SK_BYTES], m[3000], f[256], got[3000], gotf[256];
	static char token[TOKEN_BUF];
	unsigned cases = 0;

	(void)state;
	test_keypair(pk, sk);
	crypto_sign_keypair(other_pk, other_sk);
	randombytes_buf(m, sizeof m);
	randombytes_buf(f, sizeof f);
	for (size_t a = 0; a < sizeof mlens / sizeof mlens[0]; a++)
	for (size_t b = 0; b < sizeof flens / sizeof flens[0]; b++)
	for (size_t c = 0; c < 2; c++) {
		const uint8_t *ia = (const uint8_t *)ias[c];
		size_t ilen = strlen(ias[c]), len, mlen, flen;
		enum paseto_result r;

		r = paseto_v4_sign(sk, m, mlens[a], f, flens[b], ia, ilen, token, sizeof token, &len);
		assert_int_equal(r, PASETO_OK);
		assert_int_equal(strlen(token), len);
		/* An empty footer is written as no footer at all. */
		assert_true((strchr(token + PASETO_V4_PUBLIC_HEADER_LEN, '.') != NULL) == (flens[b] > 0));
		assert_int_equal(paseto_v4_verify(pk, token, len, ia, ilen, got, sizeof got, &mlen),
		    PASETO_OK);
		assert_int_equal(mlen, mlens[a]);
		assert_memory_equal(got, m, mlen);
		assert_int_equal(paseto_v4_footer(token, len, gotf, sizeof gotf, &flen), PASETO_OK);
		assert_int_equal(flen, flens[b]);
		assert_memory_equal(gotf, f, flen);
		/* Wrong key, wrong implicit assertion. */
		assert_int_equal(paseto_v4_verify(other_pk, token, len, ia, ilen, got, sizeof got,
		    &mlen), PASETO_BAD_SIGNATURE);
		assert_int_equal(paseto_v4_verify(pk, token, len, (const uint8_t *)"x", 1, got,
		    sizeof got, &mlen), PASETO_BAD_SIGNATURE);
		cases++;
	}
	assert_int_equal(cases, 11 * 6 * 2);
}

/* Every proper prefix of a token must fail; the one that drops exactly the
 * footer section is well formed and must fail on the signature. */
static void test_truncated(void **state)
{
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES];
	char token[1024];
	size_t len, dot;

	(void)state;
	test_keypair(pk, sk);
	len = sign_str(sk, "{\"data\":\"truncate me\"}", "{\"kid\":\"k\"}", "", token, sizeof token);
	dot = (size_t)(strchr(token + PASETO_V4_PUBLIC_HEADER_LEN, '.') - token);
	for (size_t n = 0; n < len; n++) {
		enum paseto_result r = verify_str(pk, token, n, "");

		assert_int_not_equal(r, PASETO_OK);
		if (n <= PASETO_V4_PUBLIC_HEADER_LEN || n == dot + 1)
			assert_int_equal(r, PASETO_MALFORMED);
	}
	assert_int_equal(verify_str(pk, token, dot, ""), PASETO_BAD_SIGNATURE);
	assert_int_equal(verify_str(pk, token, len, ""), PASETO_OK);
}

/* Replace each character in turn by every other base64url character and
 * by a few characters outside the alphabet: nothing may verify. */
static void test_flipped(void **state)
{
	static const char outside[] = "+/=. \r\n\x80\xbf\xff";
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES];
	char token[1024], copy[1024];
	size_t len;
	unsigned tried = 0;

	(void)state;
	test_keypair(pk, sk);
	len = sign_str(sk, "{\"data\":\"flip me\"}", "{\"kid\":\"k\"}", "", token, sizeof token);
	for (size_t pos = 0; pos < len; pos++) {
		for (const char *c = b64url_alphabet; *c != '\0'; c++) {
			if (*c == token[pos])
				continue;
			memcpy(copy, token, len + 1);
			copy[pos] = *c;
			assert_int_not_equal(verify_str(pk, copy, len, ""), PASETO_OK);
			tried++;
		}
		for (const char *c = outside; *c != '\0'; c++) {
			if (*c == token[pos])
				continue;
			memcpy(copy, token, len + 1);
			copy[pos] = *c;
			assert_int_not_equal(verify_str(pk, copy, len, ""), PASETO_OK);
			if (pos >= PASETO_V4_PUBLIC_HEADER_LEN && *c != '.')
				assert_int_equal(verify_str(pk, copy, len, ""), PASETO_MALFORMED);
		}
	}
	assert_true(tried > 60 * len);
}

/* PASETO uses unpadded base64url; a padded body or footer is another
 * spelling of the same bytes and is refused. Lengths chosen so that a
 * padding encoder would really add "=" or "==". */
static void test_base64_padding(void **state)
{
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES];
	char token[1024], copy[1100];
	size_t len, dot;

	(void)state;
	test_keypair(pk, sk);
	/* 1 + 64 bytes: 87 characters, one '=' when padded; footer 1 byte: "==". */
	len = sign_str(sk, "x", "f", "", token, sizeof token);
	dot = (size_t)(strchr(token + PASETO_V4_PUBLIC_HEADER_LEN, '.') - token);
	assert_int_equal(dot - PASETO_V4_PUBLIC_HEADER_LEN, 87);
	assert_int_equal(verify_str(pk, token, len, ""), PASETO_OK);

	snprintf(copy, sizeof copy, "%.*s=%s", (int)dot, token, token + dot);
	assert_int_equal(verify_str(pk, copy, strlen(copy), ""), PASETO_MALFORMED);
	snprintf(copy, sizeof copy, "%s==", token);
	assert_int_equal(verify_str(pk, copy, strlen(copy), ""), PASETO_MALFORMED);
	assert_int_equal(paseto_v4_footer(copy, strlen(copy), (uint8_t[64]){ 0 }, 64, &len),
	    PASETO_MALFORMED);
	/* Same without a footer. */
	len = sign_str(sk, "x", "", "", token, sizeof token);
	snprintf(copy, sizeof copy, "%s=", token);
	assert_int_equal(verify_str(pk, copy, strlen(copy), ""), PASETO_MALFORMED);
	/* Non-canonical: 65 bytes end in a 3-character group whose last
	 * character carries 2 unused bits, which must be zero. */
	{
		size_t idx = (size_t)(strchr(b64url_alphabet, token[len - 1]) - b64url_alphabet);

		assert_int_equal(idx & 3, 0);
		memcpy(copy, token, len + 1);
		copy[len - 1] = b64url_alphabet[idx | 1];
		assert_int_equal(verify_str(pk, copy, len, ""), PASETO_MALFORMED);
	}
}

static void test_footer_presence(void **state)
{
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES], f[64];
	char none[1024], empty[1024], with[1024], copy[1100];
	size_t n_none, n_empty, n_with, flen = 99;

	(void)state;
	test_keypair(pk, sk);
	n_none = sign_str(sk, "m", "", "", none, sizeof none);
	/* Footer "" and no footer sign the same PAE and encode the same way. */
	assert_int_equal(paseto_v4_sign(sk, (const uint8_t *)"m", 1, (const uint8_t *)"", 0,
	    NULL, 0, empty, sizeof empty, &n_empty), PASETO_OK);
	assert_int_equal(n_empty, n_none);
	assert_string_equal(empty, none);
	assert_int_equal(paseto_v4_footer(none, n_none, f, sizeof f, &flen), PASETO_OK);
	assert_int_equal(flen, 0);

	/* A trailing "." (an empty footer section) is not canonical. */
	snprintf(copy, sizeof copy, "%s.", none);
	assert_int_equal(verify_str(pk, copy, strlen(copy), ""), PASETO_MALFORMED);
	assert_int_equal(paseto_v4_footer(copy, strlen(copy), f, sizeof f, &flen), PASETO_MALFORMED);

	/* The footer is signed: dropping, adding or replacing it fails. */
	n_with = sign_str(sk, "m", "footer", "", with, sizeof with);
	*strchr(with + PASETO_V4_PUBLIC_HEADER_LEN, '.') = '\0';
	assert_int_equal(verify_str(pk, with, strlen(with), ""), PASETO_BAD_SIGNATURE);
	n_with = sign_str(sk, "m", "footer", "", with, sizeof with);
	snprintf(copy, sizeof copy, "%s.Zm9vdGVy", none);       /* "footer" */
	assert_int_equal(verify_str(pk, copy, strlen(copy), ""), PASETO_BAD_SIGNATURE);
	snprintf(copy, sizeof copy, "%s.Zm9vdGVz", with);
	assert_int_equal(verify_str(pk, copy, strlen(copy), ""), PASETO_MALFORMED);  /* 2 dots */
	assert_int_equal(verify_str(pk, with, n_with, ""), PASETO_OK);
}

static void test_structure(void **state)
{
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES];
	char token[1024], copy[1100];
	size_t len;

	(void)state;
	test_keypair(pk, sk);
	len = sign_str(sk, "{\"a\":1}", "k", "", token, sizeof token);

	assert_int_equal(verify_str(pk, "", 0, ""), PASETO_MALFORMED);
	assert_int_equal(verify_str(pk, NULL, 0, ""), PASETO_MALFORMED);
	assert_int_equal(verify_str(pk, "v4.public.", 10, ""), PASETO_MALFORMED);
	assert_int_equal(verify_str(pk, "v4.public", 9, ""), PASETO_MALFORMED);
	assert_int_equal(verify_str(pk, "v4.public..", 11, ""), PASETO_MALFORMED);

	/* Other headers in front of a valid body. */
	static const char *headers[] = { "v4.local.", "v3.public.", "V4.public.", "v4.Public.",
	    "v2.public.", "v4.public.." , " v4.public." };
	for (size_t k = 0; k < sizeof headers / sizeof headers[0]; k++) {
		snprintf(copy, sizeof copy, "%s%s", headers[k], token + PASETO_V4_PUBLIC_HEADER_LEN);
		assert_int_equal(verify_str(pk, copy, strlen(copy), ""), PASETO_MALFORMED);
	}

	/* 85 characters cannot hold a signature; 86 zero characters hold an
	 * empty message and an all-zero signature, which is just wrong. */
	memset(copy, 'A', sizeof copy);
	memcpy(copy, "v4.public.", 10);
	assert_int_equal(verify_str(pk, copy, 10 + 85, ""), PASETO_MALFORMED);
	assert_int_equal(verify_str(pk, copy, 10 + 86, ""), PASETO_BAD_SIGNATURE);

	/* Trailing line ending, as an SMTP client might leave it. */
	snprintf(copy, sizeof copy, "%s\r\n", token);
	assert_int_equal(verify_str(pk, copy, strlen(copy), ""), PASETO_MALFORMED);
	/* Embedded NUL inside the stated length. */
	memcpy(copy, token, len + 1);
	copy[30] = '\0';
	assert_int_equal(verify_str(pk, copy, len, ""), PASETO_MALFORMED);
	/* The length argument rules, not the NUL: a shorter len is a prefix. */
	assert_int_not_equal(verify_str(pk, token, len - 1, ""), PASETO_OK);

	/* Regression: libsodium 1.0.18 decodes any byte >= 0x80 as '_', so
	 * this second spelling of a valid token verified until paseto.c
	 * checked the alphabet itself. */
	for (unsigned n = 0;; n++) {
		char msg[32], *u;

		assert_true(n < 1000);
		snprintf(msg, sizeof msg, "{\"n\":%u}", n);
		len = sign_str(sk, msg, "", "", token, sizeof token);
		u = strchr(token + PASETO_V4_PUBLIC_HEADER_LEN, '_');
		if (u == NULL)
			continue;
		assert_int_equal(verify_str(pk, token, len, ""), PASETO_OK);
		*u = '\xff';
		assert_int_equal(verify_str(pk, token, len, ""), PASETO_MALFORMED);
		break;
	}
}

static void test_limits(void **state)
{
	static char huge[10001], token[TOKEN_BUF];
	static uint8_t m[4096];
	uint8_t pk[PASETO_PK_BYTES], sk[PASETO_SK_BYTES], out[16], f[4];
	size_t len, mlen, flen;

	(void)state;
	test_keypair(pk, sk);

	/* Refused on length alone, before any decoding. */
	memset(huge, 'A', sizeof huge - 1);
	memcpy(huge, "v4.public.", 10);
	assert_int_equal(verify_str(pk, huge, sizeof huge - 1, ""), PASETO_TOO_LONG);
	assert_int_equal(verify_str(pk, huge, 4097, ""), PASETO_TOO_LONG);
	assert_int_equal(paseto_v4_footer(huge, 4097, f, sizeof f, &flen), PASETO_TOO_LONG);

	/* The signer keeps to the same limit: 3000 + 64 bytes are 4086
	 * characters, 10 more for the header make 4096 exactly. */
	memset(m, 'm', sizeof m);
	assert_int_equal(paseto_v4_sign(sk, m, 3000, NULL, 0, NULL, 0, token, sizeof token, &len),
	    PASETO_OK);
	assert_int_equal(len, 4096);
	assert_int_equal(verify_str(pk, token, len, ""), PASETO_OK);
	assert_int_equal(paseto_v4_sign(sk, m, 3001, NULL, 0, NULL, 0, token, sizeof token, &len),
	    PASETO_TOO_LONG);
	assert_int_equal(paseto_v4_sign(sk, m, 100, m, 3000, NULL, 0, token, sizeof token, &len),
	    PASETO_TOO_LONG);
	assert_int_equal(paseto_v4_sign(sk, m, 1, NULL, 0, m, 1025, token, sizeof token, &len),
	    PASETO_TOO_LONG);

	/* Output buffer: the token plus its NUL, not a byte less. */
	len = sign_str(sk, "hello", "", "", token, sizeof token);
	assert_int_equal(paseto_v4_sign(sk, (const uint8_t *)"hello", 5, NULL, 0, NULL, 0, token,
	    len, &mlen), PASETO_TOO_LONG);
	assert_int_equal(paseto_v4_sign(sk, (const uint8_t *)"hello", 5, NULL, 0, NULL, 0, token,
	    len + 1, &mlen), PASETO_OK);
	assert_int_equal(mlen, len);

	/* Message buffer: a valid token that does not fit is TOO_LONG. */
	assert_int_equal(paseto_v4_verify(pk, token, len, NULL, 0, out, 4, &mlen), PASETO_TOO_LONG);
	assert_int_equal(paseto_v4_verify(pk, token, len, NULL, 0, out, 5, &mlen), PASETO_OK);
	assert_int_equal(mlen, 5);
	assert_memory_equal(out, "hello", 5);

	/* Footer buffer likewise. */
	len = sign_str(sk, "hello", "a long footer", "", token, sizeof token);
	assert_int_equal(paseto_v4_footer(token, len, f, sizeof f, &flen), PASETO_TOO_LONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v4_vectors),
		cmocka_unit_test(test_paserk_public_vectors),
		cmocka_unit_test(test_paserk_pid_vectors),
		cmocka_unit_test(test_paserk_secret_vectors),
		cmocka_unit_test(test_paserk_rejects),
		cmocka_unit_test(test_paserk_pid_properties),
		cmocka_unit_test(test_roundtrip_lengths),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_flipped),
		cmocka_unit_test(test_base64_padding),
		cmocka_unit_test(test_footer_presence),
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_limits),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
