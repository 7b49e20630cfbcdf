/*
 * test_token.c: submission tokens (tokens/token.c) and the key ring
 * (tokens/keyring.c). Issue/verify round trips, one test per failure status
 * and per check order, claim-parser strictness with properly signed but
 * wrong payloads, the address binding against values computed outside this
 * code (Python hashlib), the TOKEN_MAX_LEN bound, interoperability with a
 * plain PASETO verifier, and the RFC 3339 helpers against gmtime_r.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include "tokens/token.h"

/* 2023-11-14T22:13:20Z: a fixed clock, so expiry is deterministic. */
#define NOW      INT64_C(1700000000)
#define LIFETIME INT64_C(604800)
#define ISSUER   "mx.example.org"
#define ADDRESS  "Alice.Smith@Example.ORG"
#define TBUF     (TOKEN_MAX_LEN + 1)

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* --- helpers -------------------------------------------------------------- */

static size_t issue(const struct token_key *k, const char *address, enum token_role role,
    struct token_claims *c, char out[TBUF])
{
	size_t len = token_issue(k, "msg-0001", address, role, ISSUER, NOW, LIFETIME, c, out, TBUF);

	assert_int_not_equal(len, 0);
	assert_int_equal(strlen(out), len);
	return len;
}

static enum token_status verify(const char *token, const struct keyring *ring, int64_t now,
    const char *address)
{
	return token_verify(token, strlen(token), ring, now, address, NULL, NULL, NULL);
}

/* Sign an arbitrary payload and footer with k, bypassing token_issue, to
 * reach the claim and footer parsers with a valid signature. */
static void sign_raw(const struct token_key *k, const char *payload, const char *footer,
    char *out, size_t outmax)
{
	size_t len;

	assert_int_equal(paseto_v4_sign(k->sk, (const uint8_t *)payload, strlen(payload),
	    (const uint8_t *)footer, strlen(footer), NULL, 0, out, outmax, &len), PASETO_OK);
}

static void kid_footer(const struct token_key *k, char *out, size_t max)
{
	snprintf(out, max, "{\"kid\":\"%s\"}", k->kid);
}

/* A different base64url character at pos. */
static void flip(char *token, size_t pos)
{
	const char *p = strchr(b64url_alphabet, token[pos]);

	assert_non_null(p);
	token[pos] = b64url_alphabet[((size_t)(p - b64url_alphabet) + 7) % 64];
}

static size_t footer_dot(const char *token)
{
	const char *dot = strchr(token + PASETO_V4_PUBLIC_HEADER_LEN, '.');

	assert_non_null(dot);
	return (size_t)(dot - token);
}

/* --- round trip and every status ------------------------------------------ */

static void test_round_trip(void **state)
{
	struct token_key k;
	struct keyring ring;
	struct token_claims issued, got;
	char token[TBUF], want_binding[TOKEN_BINDING_LEN + 1];
	size_t len;

	(void)state;
	token_key_generate(&k, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);

	len = issue(&k, ADDRESS, TOKEN_ROLE_RECIPIENT, &issued, token);
	assert_int_equal(strncmp(token, "v4.public.", 10), 0);
	assert_int_equal(token_verify(token, len, &ring, NOW, ADDRESS, NULL, NULL, &got),
	    TOKEN_VALID);
	assert_string_equal(got.jti, issued.jti);
	assert_string_equal(got.mid, "msg-0001");
	assert_string_equal(got.iss, ISSUER);
	assert_string_equal(got.kid, k.kid);
	assert_int_equal(got.role, TOKEN_ROLE_RECIPIENT);
	assert_int_equal(got.exp, NOW + LIFETIME);
	assert_int_equal(issued.exp, NOW + LIFETIME);
	token_binding(issued.jti, ADDRESS, want_binding);
	assert_string_equal(got.binding, want_binding);
	assert_string_equal(issued.binding, want_binding);

	/* The sender's copy carries rol "s". */
	len = issue(&k, "sender@example.net", TOKEN_ROLE_SENDER, &issued, token);
	assert_int_equal(token_verify(token, len, &ring, NOW, "sender@example.net", NULL, NULL,
	    &got), TOKEN_VALID);
	assert_int_equal(got.role, TOKEN_ROLE_SENDER);

	/* Without an expected address the binding is not checked. */
	assert_int_equal(verify(token, &ring, NOW, NULL), TOKEN_VALID);
	keyring_free(&ring);
}

static void test_malformed_input(void **state)
{
	struct token_key k;
	struct keyring ring;
	struct token_claims got;
	char token[TBUF], copy[TBUF + 16];
	size_t len;

	(void)state;
	token_key_generate(&k, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);
	len = issue(&k, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, token);

	memset(&got, 0x55, sizeof got);
	assert_int_equal(token_verify(NULL, 0, &ring, NOW, NULL, NULL, NULL, &got), TOKEN_MALFORMED);
	assert_string_equal(got.jti, "");          /* cleared, not left stale */
	assert_int_equal(token_verify("", 0, &ring, NOW, NULL, NULL, NULL, NULL), TOKEN_MALFORMED);
	assert_int_equal(verify("hello world", &ring, NOW, NULL), TOKEN_MALFORMED);
	assert_int_equal(verify("v4.public.", &ring, NOW, NULL), TOKEN_MALFORMED);
	/* Truncated: every proper prefix. */
	for (size_t n = 0; n < len; n++)
		assert_int_not_equal(token_verify(token, n, &ring, NOW, NULL, NULL, NULL, NULL),
		    TOKEN_VALID);
	/* A trailing character turns the footer into JSON plus garbage. */
	snprintf(copy, sizeof copy, "%sA", token);
	assert_int_equal(verify(copy, &ring, NOW, NULL), TOKEN_MALFORMED);
	/* CRLF left on by a careless client. */
	snprintf(copy, sizeof copy, "%s\r\n", token);
	assert_int_equal(verify(copy, &ring, NOW, NULL), TOKEN_MALFORMED);
	/* No footer at all: no kid to look up. */
	snprintf(copy, sizeof copy, "%.*s", (int)footer_dot(token), token);
	assert_int_equal(verify(copy, &ring, NOW, NULL), TOKEN_MALFORMED);
	/* Longer than any token we issue: refused on length alone. */
	{
		char big[TOKEN_MAX_LEN + 2];

		memset(big, 'A', sizeof big);
		memcpy(big, token, len);
		assert_int_equal(token_verify(big, TOKEN_MAX_LEN + 1, &ring, NOW, NULL, NULL, NULL,
		    NULL), TOKEN_MALFORMED);
	}
	keyring_free(&ring);
}

/* Properly signed by a key in the ring, yet not in our format: each must
 * be MALFORMED. The first, well-formed payload proves that the harness
 * itself is sound (and checks the binding against a value from Python:
 * sha256("AAECAwQFBgcICQoL:Alice.Smith@example.org")[:12]). */
static void test_malformed_claims(void **state)
{
	static const char good[] =
	    "{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
	    "\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}";
	static const char *accepted[] = {
		good,
		/* JSON objects are unordered; the order is for issuers. */
		"{\"exp\":\"2030-01-01T00:00:00Z\",\"rol\":\"r\",\"sub\":\"gZhyHyHeNudcgUZk\","
		"\"mid\":\"msg-1\",\"jti\":\"AAECAwQFBgcICQoL\",\"iss\":\"mx.example.org\"}",
		/* The same instant with a numeric offset. */
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00+00:00\"}",
		/* Insignificant whitespace. */
		"{ \"iss\" : \"mx.example.org\", \"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}\n",
	};
	static const char *rejected[] = {
		"",
		"not json",
		"[]",
		"null",
		"\"string\"",
		good + 1,                                          /* broken JSON */
		/* each claim missing */
		"{\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\",\"sub\":\"gZhyHyHeNudcgUZk\","
		"\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"mid\":\"msg-1\",\"sub\":\"gZhyHyHeNudcgUZk\","
		"\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"sub\":\"gZhyHyHeNudcgUZk\","
		"\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\"}",
		/* an extra claim */
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\",\"iat\":1}",
		/* a duplicate claim (the second could override the first) */
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\","
		"\"jti\":\"AAECAwQFBgcICQoM\"}",
		/* wrong types */
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":1893456000}",
		"{\"iss\":[\"mx\"],\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":1,"
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":null,\"exp\":\"2030-01-01T00:00:00Z\"}",
		/* bad values */
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"x\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"rs\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQo\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQ+L\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZkA\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg.1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"0123456789012345678901234\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.\\u00e9xample.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx\\\"example\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx\\u0000x\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"0123456789012345678901234567890123456789012345678901234567890123x\","
		"\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00.5Z\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T01:00:00+01:00\"}",
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-02-30T00:00:00Z\"}",
		/* trailing data after the object */
		"{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
		"\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}{}",
	};
	struct token_key k;
	struct keyring ring;
	struct token_claims got;
	char footer[128], token[1024];

	(void)state;
	token_key_generate(&k, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);
	kid_footer(&k, footer, sizeof footer);

	for (size_t j = 0; j < sizeof accepted / sizeof accepted[0]; j++) {
		sign_raw(&k, accepted[j], footer, token, sizeof token);
		assert_int_equal(token_verify(token, strlen(token), &ring, NOW,
		    "Alice.Smith@EXAMPLE.org", NULL, NULL, &got), TOKEN_VALID);
		assert_string_equal(got.jti, "AAECAwQFBgcICQoL");
		assert_int_equal(got.exp, INT64_C(1893456000));
	}
	for (size_t j = 0; j < sizeof rejected / sizeof rejected[0]; j++) {
		sign_raw(&k, rejected[j], footer, token, sizeof token);
		if (token_verify(token, strlen(token), &ring, NOW, NULL, NULL, NULL, &got) !=
		    TOKEN_MALFORMED)
			fail_msg("payload %zu accepted: %s", j, rejected[j]);
		/* The kid was read, the claims were not. */
		assert_string_equal(got.kid, k.kid);
		assert_string_equal(got.jti, "");
	}
	keyring_free(&ring);
}

/* The footer is read before the signature is checked, so its format is
 * strict; a well-formed kid that is not in the ring is UNKNOWN_KEY. */
static void test_malformed_footer(void **state)
{
	static const char payload[] =
	    "{\"iss\":\"mx.example.org\",\"jti\":\"AAECAwQFBgcICQoL\",\"mid\":\"msg-1\","
	    "\"sub\":\"gZhyHyHeNudcgUZk\",\"rol\":\"r\",\"exp\":\"2030-01-01T00:00:00Z\"}";
	struct token_key k, stranger;
	struct keyring ring;
	char footers[12][256], token[1024];
	size_t nf = 0;

	(void)state;
	token_key_generate(&k, NOW);
	token_key_generate(&stranger, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);

	snprintf(footers[nf++], sizeof footers[0], "not json");
	snprintf(footers[nf++], sizeof footers[0], "[\"%s\"]", k.kid);
	snprintf(footers[nf++], sizeof footers[0], "{\"kid\":123}");
	snprintf(footers[nf++], sizeof footers[0], "{\"kid\":\"k4.pid.short\"}");
	snprintf(footers[nf++], sizeof footers[0], "{\"kid\":\"k4.lid.%s\"}", k.kid + 7);
	snprintf(footers[nf++], sizeof footers[0], "{\"kid\":\"%s\",\"alg\":\"none\"}", k.kid);
	snprintf(footers[nf++], sizeof footers[0], "{\"kid\":\"%s\",\"kid\":\"%s\"}", k.kid, k.kid);
	snprintf(footers[nf++], sizeof footers[0], "{\"kid\":\"%.50s+\"}", k.kid);
	snprintf(footers[nf++], sizeof footers[0], "{\"kid\":\"%s\"} ", k.kid);    /* jansson allows */
	snprintf(footers[nf++], sizeof footers[0], "{\"KID\":\"%s\"}", k.kid);
	for (size_t j = 0; j < nf; j++) {
		enum token_status want = TOKEN_MALFORMED;

		sign_raw(&k, payload, footers[j], token, sizeof token);
		/* Trailing whitespace is insignificant JSON: still our kid. */
		if (j == 8)
			want = TOKEN_VALID;
		if (verify(token, &ring, NOW, NULL) != want)
			fail_msg("footer %zu: %s", j, footers[j]);
	}
	kid_footer(&stranger, footers[0], sizeof footers[0]);
	sign_raw(&k, payload, footers[0], token, sizeof token);
	assert_int_equal(verify(token, &ring, NOW, NULL), TOKEN_UNKNOWN_KEY);
	keyring_free(&ring);
}

static void test_bad_signature(void **state)
{
	struct token_key k;
	struct keyring ring;
	char token[TBUF], copy[TBUF];
	size_t len, dot;

	(void)state;
	token_key_generate(&k, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);
	len = issue(&k, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, token);
	dot = footer_dot(token);

	/* In the signature (the last 86 characters of the body)... */
	memcpy(copy, token, len + 1);
	flip(copy, dot - 10);
	assert_int_equal(verify(copy, &ring, NOW, ADDRESS), TOKEN_BAD_SIGNATURE);
	/* ...and in the claims. */
	memcpy(copy, token, len + 1);
	flip(copy, PASETO_V4_PUBLIC_HEADER_LEN + 5);
	assert_int_equal(verify(copy, &ring, NOW, ADDRESS), TOKEN_BAD_SIGNATURE);
	/* Every body position but the last (which may only carry padding
	 * bits): never valid. */
	for (size_t pos = PASETO_V4_PUBLIC_HEADER_LEN; pos < dot; pos++) {
		memcpy(copy, token, len + 1);
		flip(copy, pos);
		assert_int_not_equal(verify(copy, &ring, NOW, ADDRESS), TOKEN_VALID);
		if (pos < dot - 1)
			assert_int_equal(verify(copy, &ring, NOW, ADDRESS), TOKEN_BAD_SIGNATURE);
	}
	assert_int_equal(verify(token, &ring, NOW, ADDRESS), TOKEN_VALID);
	keyring_free(&ring);
}

static void test_unknown_key(void **state)
{
	struct token_key k, other;
	struct keyring ring;
	char token[TBUF];

	(void)state;
	token_key_generate(&k, NOW);
	token_key_generate(&other, NOW);
	keyring_init(&ring);
	issue(&k, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, token);

	assert_int_equal(verify(token, &ring, NOW, ADDRESS), TOKEN_UNKNOWN_KEY);   /* empty */
	assert_int_equal(verify(token, NULL, NOW, ADDRESS), TOKEN_UNKNOWN_KEY);
	keyring_add(&ring, &other);
	assert_int_equal(verify(token, &ring, NOW, ADDRESS), TOKEN_UNKNOWN_KEY);
	keyring_add(&ring, &k);
	assert_int_equal(verify(token, &ring, NOW, ADDRESS), TOKEN_VALID);
	keyring_free(&ring);
}

struct revoke_ctx {
	char revoked[TOKEN_ID_LEN + 1];
	char last_seen[TOKEN_ID_LEN + 1];
	unsigned calls;
};

static bool is_revoked(const char *jti, void *ctx)
{
	struct revoke_ctx *rc = ctx;

	rc->calls++;
	snprintf(rc->last_seen, sizeof rc->last_seen, "%s", jti);
	return strcmp(jti, rc->revoked) == 0;
}

static void test_expired(void **state)
{
	struct token_key k;
	struct keyring ring;
	struct token_claims c;
	struct revoke_ctx rc = { "", "", 0 };
	char token[TBUF];
	size_t len;

	(void)state;
	token_key_generate(&k, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);
	len = token_issue(&k, "m1", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, 3600, &c, token,
	    sizeof token);
	assert_int_not_equal(len, 0);

	assert_int_equal(verify(token, &ring, NOW + 3599, ADDRESS), TOKEN_VALID);
	/* exp is the first instant at which the token is no longer valid. */
	assert_int_equal(verify(token, &ring, NOW + 3600, ADDRESS), TOKEN_EXPIRED);
	assert_int_equal(verify(token, &ring, NOW + 86400 * 365, ADDRESS), TOKEN_EXPIRED);
	/* Expiry is decided before revocation and binding: the database is
	 * not asked about a token that is dead anyway. */
	snprintf(rc.revoked, sizeof rc.revoked, "%s", c.jti);
	assert_int_equal(token_verify(token, len, &ring, NOW + 3600, "bob@example.org", is_revoked,
	    &rc, NULL), TOKEN_EXPIRED);
	assert_int_equal(rc.calls, 0);
	keyring_free(&ring);
}

static void test_revoked(void **state)
{
	struct token_key k;
	struct keyring ring;
	struct token_claims c;
	struct revoke_ctx rc = { "", "", 0 };
	char token[TBUF], copy[TBUF];
	size_t len;

	(void)state;
	token_key_generate(&k, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);
	len = issue(&k, ADDRESS, TOKEN_ROLE_RECIPIENT, &c, token);

	assert_int_equal(token_verify(token, len, &ring, NOW, ADDRESS, is_revoked, &rc, NULL),
	    TOKEN_VALID);
	assert_int_equal(rc.calls, 1);
	assert_string_equal(rc.last_seen, c.jti);

	snprintf(rc.revoked, sizeof rc.revoked, "%s", c.jti);
	assert_int_equal(token_verify(token, len, &ring, NOW, ADDRESS, is_revoked, &rc, NULL),
	    TOKEN_REVOKED);
	assert_int_equal(rc.calls, 2);
	/* Revocation before the binding: a revoked token is revoked for all. */
	assert_int_equal(token_verify(token, len, &ring, NOW, "bob@example.org", is_revoked, &rc,
	    NULL), TOKEN_REVOKED);
	/* A forged token never reaches the callback. */
	memcpy(copy, token, len + 1);
	flip(copy, PASETO_V4_PUBLIC_HEADER_LEN + 5);
	assert_int_equal(token_verify(copy, len, &ring, NOW, ADDRESS, is_revoked, &rc, NULL),
	    TOKEN_BAD_SIGNATURE);
	assert_int_equal(rc.calls, 3);
	keyring_free(&ring);
}

static void test_wrong_address(void **state)
{
	struct token_key k;
	struct keyring ring;
	char token[TBUF];

	(void)state;
	token_key_generate(&k, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);
	issue(&k, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, token);

	assert_int_equal(verify(token, &ring, NOW, "bob@example.org"), TOKEN_WRONG_ADDRESS);
	assert_int_equal(verify(token, &ring, NOW, ""), TOKEN_WRONG_ADDRESS);
	/* Local parts are case-sensitive (RFC 5321 2.4)... */
	assert_int_equal(verify(token, &ring, NOW, "alice.smith@example.org"), TOKEN_WRONG_ADDRESS);
	assert_int_equal(verify(token, &ring, NOW, "Alice.Smith@example.org."), TOKEN_WRONG_ADDRESS);
	/* ...domains are not. */
	assert_int_equal(verify(token, &ring, NOW, "Alice.Smith@example.org"), TOKEN_VALID);
	assert_int_equal(verify(token, &ring, NOW, "Alice.Smith@EXAMPLE.ORG"), TOKEN_VALID);
	keyring_free(&ring);
}

/* Rotation: the old key is retired (verify only), the new one signs. */
static void test_retired_key(void **state)
{
	struct token_key old, new, pub_only;
	struct keyring ring;
	char t_old[TBUF], t_new[TBUF];
	struct token_claims c;

	(void)state;
	keyring_init(&ring);
	token_key_generate(&old, NOW - 86400 * 90);
	keyring_add(&ring, &old);
	assert_ptr_equal(keyring_active(&ring), keyring_find(&ring, old.kid));
	issue(keyring_active(&ring), ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, t_old);

	token_key_generate(&new, NOW);
	keyring_add(&ring, &new);
	/* Both active for a moment: the newer one signs. */
	assert_string_equal(keyring_active(&ring)->kid, new.kid);
	old.state = TOKEN_KEY_RETIRED;
	old.retired_at = NOW;
	keyring_add(&ring, &old);                       /* replaces, not appends */
	assert_int_equal(ring.n, 2);
	assert_int_equal(keyring_find(&ring, old.kid)->state, TOKEN_KEY_RETIRED);
	assert_string_equal(keyring_active(&ring)->kid, new.kid);

	issue(keyring_active(&ring), ADDRESS, TOKEN_ROLE_RECIPIENT, &c, t_new);
	assert_string_equal(c.kid, new.kid);
	assert_int_equal(verify(t_old, &ring, NOW, ADDRESS), TOKEN_VALID);
	assert_int_equal(verify(t_new, &ring, NOW, ADDRESS), TOKEN_VALID);
	keyring_free(&ring);

	/* A ring with the public half only verifies too (a node checking
	 * another node's tokens), but cannot issue. */
	keyring_init(&ring);
	pub_only = old;
	sodium_memzero(pub_only.sk, sizeof pub_only.sk);
	pub_only.has_secret = false;
	keyring_add(&ring, &pub_only);
	assert_int_equal(verify(t_old, &ring, NOW, ADDRESS), TOKEN_VALID);
	assert_int_equal(token_issue(&pub_only, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW,
	    LIFETIME, NULL, t_new, sizeof t_new), 0);
	keyring_free(&ring);
}

/* Footers are signed: moving another key's footer onto a token sends the
 * verifier to the wrong key, and the signature check catches it. */
static void test_swapped_footer(void **state)
{
	struct token_key a, b, stranger;
	struct keyring ring;
	char ta[TBUF], tb[TBUF], mix[2 * TBUF];

	(void)state;
	token_key_generate(&a, NOW);
	token_key_generate(&b, NOW);
	token_key_generate(&stranger, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &a);
	keyring_add(&ring, &b);
	issue(&a, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, ta);
	issue(&b, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, tb);

	snprintf(mix, sizeof mix, "%.*s%s", (int)footer_dot(ta), ta, tb + footer_dot(tb));
	assert_int_equal(verify(mix, &ring, NOW, ADDRESS), TOKEN_BAD_SIGNATURE);
	snprintf(mix, sizeof mix, "%.*s%s", (int)footer_dot(tb), tb, ta + footer_dot(ta));
	assert_int_equal(verify(mix, &ring, NOW, ADDRESS), TOKEN_BAD_SIGNATURE);
	issue(&stranger, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, tb);
	snprintf(mix, sizeof mix, "%.*s%s", (int)footer_dot(ta), ta, tb + footer_dot(tb));
	assert_int_equal(verify(mix, &ring, NOW, ADDRESS), TOKEN_UNKNOWN_KEY);
	keyring_free(&ring);
}

static void test_other_headers(void **state)
{
	static const char *headers[] = { "v4.local.", "v3.public.", "v2.public.", "v4.PUBLIC." };
	struct token_key k;
	struct keyring ring;
	char token[TBUF], copy[TBUF + 8];

	(void)state;
	token_key_generate(&k, NOW);
	keyring_init(&ring);
	keyring_add(&ring, &k);
	issue(&k, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, token);
	for (size_t j = 0; j < sizeof headers / sizeof headers[0]; j++) {
		snprintf(copy, sizeof copy, "%s%s", headers[j], token + PASETO_V4_PUBLIC_HEADER_LEN);
		assert_int_equal(verify(copy, &ring, NOW, ADDRESS), TOKEN_MALFORMED);
	}
	keyring_free(&ring);
}

/* --- binding ----------------------------------------------------------------- */

/* Expected values computed independently:
 *   python3 -c 'import hashlib,base64; print(base64.urlsafe_b64encode(
 *     hashlib.sha256(b"AAECAwQFBgcICQoL:Alice.Smith@example.org").digest()[:12]))' */
static void test_binding(void **state)
{
	static const struct { const char *address, *binding; } kat[] = {
		{ "Alice.Smith@example.org", "gZhyHyHeNudcgUZk" },
		{ "Alice.Smith@EXAMPLE.ORG", "gZhyHyHeNudcgUZk" },
		{ "Alice.Smith@Example.Org", "gZhyHyHeNudcgUZk" },
		{ "alice.smith@example.org", "lIDlb57AudxkwUwR" },
		{ "\"a@b\"@example.org",     "DdUQOIYx4QerCI6D" },
		{ "\"a@b\"@EXAMPLE.org",     "DdUQOIYx4QerCI6D" },
	};
	char out[TOKEN_BINDING_LEN + 1], other[TOKEN_BINDING_LEN + 1];
	char long_domain[300];

	(void)state;
	for (size_t j = 0; j < sizeof kat / sizeof kat[0]; j++) {
		token_binding("AAECAwQFBgcICQoL", kat[j].address, out);
		assert_string_equal(out, kat[j].binding);
	}
	/* Only after the last '@' is folded: "A@B" in the local part stays. */
	token_binding("AAECAwQFBgcICQoL", "\"A@B\"@example.org", other);
	assert_string_not_equal(other, "DdUQOIYx4QerCI6D");
	/* The jti salts the binding: same address, other token, other value. */
	token_binding("AAECAwQFBgcICQoM", "Alice.Smith@example.org", other);
	assert_string_not_equal(other, "gZhyHyHeNudcgUZk");
	assert_int_equal(strlen(other), TOKEN_BINDING_LEN);
	assert_int_equal(strspn(other, b64url_alphabet), TOKEN_BINDING_LEN);
	/* Domains longer than the folding chunk are folded throughout. */
	memset(long_domain, 'A', sizeof long_domain);
	memcpy(long_domain, "x@", 2);
	long_domain[sizeof long_domain - 1] = '\0';
	token_binding("AAECAwQFBgcICQoL", long_domain, out);
	for (size_t j = 2; j < sizeof long_domain - 1; j++)
		long_domain[j] = 'a';
	token_binding("AAECAwQFBgcICQoL", long_domain, other);
	assert_string_equal(out, other);
	/* No '@' at all: the whole string is a local part, kept as is. */
	token_binding("AAECAwQFBgcICQoL", "POSTMASTER", out);
	token_binding("AAECAwQFBgcICQoL", "postmaster", other);
	assert_string_not_equal(out, other);
}

/* --- size and interoperability ------------------------------------------------ */

/* TOKEN_MAX_LEN is what server/ budgets a reply line with. Every claim but
 * iss and mid has a fixed width, so the longest issuer and message id give
 * the longest token. */
static void test_max_len(void **state)
{
	char issuer[TOKEN_ISSUER_MAX + 1], mid[TOKEN_MID_MAX + 1], address[321];
	char token[TOKEN_MAX_LEN + 64];
	struct token_key k;
	size_t len, max_len = 0, min_len;

	(void)state;
	token_key_generate(&k, NOW);
	memset(issuer, 'i', TOKEN_ISSUER_MAX);
	issuer[TOKEN_ISSUER_MAX] = '\0';
	memset(mid, 'M', TOKEN_MID_MAX);
	mid[TOKEN_MID_MAX] = '\0';
	memset(address, 'a', sizeof address - 1);
	address[64] = '@';
	address[sizeof address - 1] = '\0';

	for (int role = TOKEN_ROLE_RECIPIENT; role <= TOKEN_ROLE_SENDER; role++) {
		len = token_issue(&k, mid, address, (enum token_role)role, issuer, NOW, LIFETIME,
		    NULL, token, sizeof token);
		assert_int_not_equal(len, 0);
		assert_true(len <= TOKEN_MAX_LEN);
		if (len > max_len)
			max_len = len;
		/* The longest expiry the format can spell changes nothing. */
		len = token_issue(&k, mid, address, (enum token_role)role, issuer, NOW,
		    INT64_C(253402300799) - NOW, NULL, token, sizeof token);
		assert_int_not_equal(len, 0);
		assert_true(len <= TOKEN_MAX_LEN);
		if (len > max_len)
			max_len = len;
	}
	min_len = token_issue(&k, "m", "a@b", TOKEN_ROLE_RECIPIENT, "i", NOW, LIFETIME, NULL,
	    token, sizeof token);
	assert_int_not_equal(min_len, 0);
	print_message("token length: max %zu, min %zu, TOKEN_MAX_LEN %d\n", max_len, min_len,
	    TOKEN_MAX_LEN);
	/* "250-2.1.13 " token " Saved" CRLF must fit the 512-octet reply line
	 * (RFC 5321 4.5.3.1.5) even for the longest token. */
	assert_true(11 + TOKEN_MAX_LEN + 6 + 2 <= 512);

	/* A buffer of exactly TOKEN_MAX_LEN + 1 always suffices; one octet
	 * short of a token makes token_issue fail rather than truncate. */
	len = token_issue(&k, mid, address, TOKEN_ROLE_SENDER, issuer, NOW, LIFETIME, NULL, token,
	    TOKEN_MAX_LEN + 1);
	assert_int_equal(len, max_len);
	assert_int_equal(token_issue(&k, mid, address, TOKEN_ROLE_SENDER, issuer, NOW, LIFETIME,
	    NULL, token, max_len), 0);
}

/* Anyone holding the public key verifies a token with a standard PASETO
 * v4.public library: empty implicit assertion, the claims are plain JSON
 * with exactly the documented keys, in the documented order. */
static void test_generic_paseto(void **state)
{
	static const char *keys[] = { "iss", "jti", "mid", "sub", "rol", "exp" };
	struct token_key k;
	struct token_claims c;
	char token[TBUF], want[512], exp[21], kid[PASERK_K4_PID_LEN + 1];
	uint8_t m[512], f[128];
	size_t len, mlen, flen, j = 0;
	json_error_t err;
	json_t *root;
	void *it;

	(void)state;
	token_key_generate(&k, NOW);
	len = issue(&k, ADDRESS, TOKEN_ROLE_SENDER, &c, token);
	assert_int_equal(paseto_v4_verify(k.pk, token, len, NULL, 0, m, sizeof m, &mlen), PASETO_OK);

	token_time_format(NOW + LIFETIME, exp);
	assert_string_equal(exp, "2023-11-21T22:13:20Z");
	snprintf(want, sizeof want, "{\"iss\":\"%s\",\"jti\":\"%s\",\"mid\":\"msg-0001\","
	    "\"sub\":\"%s\",\"rol\":\"s\",\"exp\":\"%s\"}", ISSUER, c.jti, c.binding, exp);
	assert_int_equal(mlen, strlen(want));
	assert_memory_equal(m, want, mlen);

	root = json_loadb((const char *)m, mlen, JSON_REJECT_DUPLICATES, &err);
	assert_non_null(root);
	assert_int_equal(json_object_size(root), 6);
	for (it = json_object_iter(root); it != NULL; it = json_object_iter_next(root, it), j++) {
		assert_true(j < 6);
		assert_string_equal(json_object_iter_key(it), keys[j]);
		assert_true(json_is_string(json_object_iter_value(it)));
	}
	assert_int_equal(j, 6);
	json_decref(root);

	/* Footer: {"kid":"<PASERK k4.pid of the public key>"}. */
	assert_int_equal(paseto_v4_footer(token, len, f, sizeof f, &flen), PASETO_OK);
	paserk_k4_pid(k.pk, kid);
	snprintf(want, sizeof want, "{\"kid\":\"%s\"}", kid);
	assert_int_equal(flen, strlen(want));
	assert_memory_equal(f, want, flen);
}

/* --- time ---------------------------------------------------------------------- */

static void test_time_known(void **state)
{
	static const struct { int64_t t; const char *s; } kat[] = {
		{ 0, "1970-01-01T00:00:00Z" },
		{ -1, "1969-12-31T23:59:59Z" },
		{ 951782400, "2000-02-29T00:00:00Z" },
		{ 951868799, "2000-02-29T23:59:59Z" },
		{ 1700000000, "2023-11-14T22:13:20Z" },
		{ 2147483648, "2038-01-19T03:14:08Z" },
		{ 4107542400, "2100-03-01T00:00:00Z" },
		{ INT64_C(253402300799), "9999-12-31T23:59:59Z" },
		{ INT64_C(-62167219200), "0000-01-01T00:00:00Z" },
	};
	char out[21];
	int64_t t;

	(void)state;
	for (size_t j = 0; j < sizeof kat / sizeof kat[0]; j++) {
		token_time_format(kat[j].t, out);
		assert_string_equal(out, kat[j].s);
		assert_int_equal(token_time_parse(kat[j].s, strlen(kat[j].s), &t), 0);
		assert_int_equal(t, kat[j].t);
	}
	/* Outside what four year digits can spell: clamped. */
	token_time_format(INT64_MAX, out);
	assert_string_equal(out, "9999-12-31T23:59:59Z");
	token_time_format(INT64_MIN, out);
	assert_string_equal(out, "0000-01-01T00:00:00Z");
	/* The numeric UTC offset is the same instant. */
	assert_int_equal(token_time_parse("2023-11-14T22:13:20+00:00", 25, &t), 0);
	assert_int_equal(t, 1700000000);
	/* The length argument, not a NUL, delimits the input. */
	assert_int_equal(token_time_parse("2023-11-14T22:13:20Zjunk", 20, &t), 0);
	assert_int_equal(t, 1700000000);
}

/* Round trips over the whole range, checked against the C library. */
static void test_time_against_gmtime(void **state)
{
	(void)state;
	for (unsigned j = 0; j < 200000; j++) {
		int64_t t, back;
		time_t tt;
		struct tm tm;
		char out[21], lib[96];

		if (j < 100000)   /* half within 68 years of now */
			t = NOW + ((int64_t)randombytes_uniform(UINT32_MAX) - (int64_t)(UINT32_MAX / 2));
		else              /* the rest anywhere in 0000..9999 */
			t = (int64_t)((((uint64_t)randombytes_random() << 32) | randombytes_random()) %
			    UINT64_C(315569520000)) - INT64_C(62167219200);
		tt = (time_t)t;
		token_time_format(t, out);
		assert_int_equal(token_time_parse(out, 20, &back), 0);
		assert_int_equal(back, t);
		assert_non_null(gmtime_r(&tt, &tm));
		if (tm.tm_year + 1900 >= 0 && tm.tm_year + 1900 <= 9999) {
			snprintf(lib, sizeof lib, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
			    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
			assert_string_equal(out, lib);
		}
	}
}

static void test_time_rejects(void **state)
{
	static const char *bad[] = {
		"",
		"2023-11-14",
		"2023-11-14T22:13:20",
		"2023-11-14T22:13:20z",
		"2023-11-14t22:13:20Z",
		"2023-11-14 22:13:20Z",
		"2023-11-14T22:13:20.5Z",
		"2023-11-14T22:13:20.000Z",
		"2023-11-14T22:13:20-00:00",
		"2023-11-14T22:13:20+01:00",
		"2023-11-14T22:13:20+0000",
		"2023-11-14T22:13:20+00:00Z",
		"2023-11-14T22:13:20ZZ",
		" 2023-11-14T22:13:20Z",
		"2023-02-29T00:00:00Z",
		"2100-02-29T00:00:00Z",
		"2023-04-31T00:00:00Z",
		"2023-13-01T00:00:00Z",
		"2023-00-10T00:00:00Z",
		"2023-01-00T00:00:00Z",
		"2023-01-32T00:00:00Z",
		"2023-01-01T24:00:00Z",
		"2023-01-01T23:60:00Z",
		"2016-12-31T23:59:60Z",
		"+023-01-01T00:00:00Z",
		"2023-1-01T00:00:00Z0",
		"20231114T221320Z....",
		"2023-11-14T22:13:2xZ",
	};
	int64_t t = 42;

	(void)state;
	for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
		if (token_time_parse(bad[j], strlen(bad[j]), &t) != -1)
			fail_msg("accepted: \"%s\"", bad[j]);
	}
	assert_int_equal(t, 42);           /* untouched on failure */
	assert_int_equal(token_time_parse(NULL, 20, &t), -1);
	assert_int_equal(token_time_parse("2024-02-29T00:00:00Z", 20, &t), 0);   /* leap year */
	assert_int_equal(token_time_parse("2000-02-29T00:00:00Z", 20, &t), 0);
}

/* --- small pieces ----------------------------------------------------------- */

static void test_status_names(void **state)
{
	(void)state;
	assert_string_equal(token_status_name(TOKEN_VALID), "valid");
	assert_string_equal(token_status_name(TOKEN_MALFORMED), "malformed");
	assert_string_equal(token_status_name(TOKEN_BAD_SIGNATURE), "bad_signature");
	assert_string_equal(token_status_name(TOKEN_UNKNOWN_KEY), "unknown_key");
	assert_string_equal(token_status_name(TOKEN_EXPIRED), "expired");
	assert_string_equal(token_status_name(TOKEN_REVOKED), "revoked");
	assert_string_equal(token_status_name(TOKEN_WRONG_ADDRESS), "wrong_address");
	assert_string_equal(token_status_name((enum token_status)99), "unknown");
}

static void test_new_id(void **state)
{
	static char ids[256][TOKEN_ID_LEN + 1];

	(void)state;
	for (size_t j = 0; j < 256; j++) {
		token_new_id(ids[j]);
		assert_int_equal(strlen(ids[j]), TOKEN_ID_LEN);
		assert_int_equal(strspn(ids[j], b64url_alphabet), TOKEN_ID_LEN);
		for (size_t i = 0; i < j; i++)
			assert_string_not_equal(ids[i], ids[j]);
	}
}

static void test_issue_rejects(void **state)
{
	struct token_key k;
	char token[TBUF], long_iss[TOKEN_ISSUER_MAX + 2], long_mid[TOKEN_MID_MAX + 2];

	(void)state;
	token_key_generate(&k, NOW);
	memset(long_iss, 'i', sizeof long_iss - 1);
	long_iss[sizeof long_iss - 1] = '\0';
	memset(long_mid, 'm', sizeof long_mid - 1);
	long_mid[sizeof long_mid - 1] = '\0';

#define ISSUE(key, mid, addr, role, iss, now, life, out, max) \
	token_issue(key, mid, addr, role, iss, now, life, NULL, out, max)
	assert_int_not_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(NULL, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, NULL, ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m.1", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m\"", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, long_mid, ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", NULL, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", "", TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, (enum token_role)2, ISSUER, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, "", NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, long_iss, NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, "mx\"x", NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, "mx\\x", NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, "mx\nx", NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, "mx\xc3\xa9", NOW, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, 0,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, -1,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, INT64_MAX,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, -1, LIFETIME,
	    token, sizeof token), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    NULL, 0), 0);
	assert_int_equal(ISSUE(&k, "m", ADDRESS, TOKEN_ROLE_RECIPIENT, ISSUER, NOW, LIFETIME,
	    token, 100), 0);
	/* Issuers may hold any printable ASCII but '"' and '\'. */
	assert_int_not_equal(ISSUE(&k, "A-z_09", ADDRESS, TOKEN_ROLE_RECIPIENT, "node 1/eu <x>",
	    NOW, LIFETIME, token, sizeof token), 0);
#undef ISSUE
}

static void test_keyring(void **state)
{
	struct token_key keys[10], k, copy;
	struct keyring ring;
	char pid[PASERK_K4_PID_LEN + 1];

	(void)state;
	keyring_init(&ring);
	assert_null(keyring_find(&ring, "k4.pid.x"));
	assert_null(keyring_active(&ring));
	for (size_t j = 0; j < 10; j++) {
		token_key_generate(&keys[j], NOW + (int64_t)j);
		keys[j].state = j == 3 ? TOKEN_KEY_ACTIVE : TOKEN_KEY_RETIRED;
		keyring_add(&ring, &keys[j]);
	}
	assert_int_equal(ring.n, 10);
	for (size_t j = 0; j < 10; j++) {
		const struct token_key *f = keyring_find(&ring, keys[j].kid);

		assert_non_null(f);
		assert_memory_equal(f->pk, keys[j].pk, PASETO_PK_BYTES);
		assert_memory_equal(f->sk, keys[j].sk, PASETO_SK_BYTES);
		paserk_k4_pid(f->pk, pid);
		assert_string_equal(f->kid, pid);
	}
	assert_null(keyring_find(&ring, NULL));
	assert_null(keyring_find(&ring, "k4.pid.nope"));
	assert_string_equal(keyring_active(&ring)->kid, keys[3].kid);
	keyring_free(&ring);
	assert_null(ring.keys);
	assert_int_equal(ring.n, 0);
	assert_int_equal(ring.cap, 0);
	keyring_free(&ring);             /* idempotent */

	/* token_key_from_secret recovers pk and kid, and repairs a public
	 * half that does not belong to the seed. */
	token_key_generate(&k, NOW);
	memset(&copy, 0, sizeof copy);
	token_key_from_secret(&copy, k.sk);
	assert_string_equal(copy.kid, k.kid);
	assert_memory_equal(copy.pk, k.pk, PASETO_PK_BYTES);
	assert_memory_equal(copy.sk, k.sk, PASETO_SK_BYTES);
	assert_true(copy.has_secret);
	k.sk[50] ^= 1;
	token_key_from_secret(&copy, k.sk);
	k.sk[50] ^= 1;
	assert_memory_equal(copy.sk, k.sk, PASETO_SK_BYTES);
	assert_string_equal(copy.kid, k.kid);

	/* Fresh keys are active, have a secret and differ. */
	assert_int_equal(keys[0].created_at, NOW);
	assert_int_equal(k.state, TOKEN_KEY_ACTIVE);
	assert_int_equal(k.retired_at, 0);
	assert_string_not_equal(keys[0].kid, keys[1].kid);
}

/* The key id and the claimed issuer, read before anything is verified
 * (a cluster picks the node by them): ours exactly, anything else refused. */
static void test_unverified_reads(void **state)
{
	struct token_key k;
	char token[TBUF], kid[PASERK_K4_PID_LEN + 1], iss[TOKEN_ISSUER_MAX + 1];
	size_t len;

	token_key_generate(&k, NOW);
	len = issue(&k, ADDRESS, TOKEN_ROLE_RECIPIENT, NULL, token);
	assert_true(token_key_id(token, len, kid));
	assert_string_equal(kid, k.kid);
	assert_true(token_unverified_issuer(token, len, iss));
	assert_string_equal(iss, ISSUER);
	/* a broken signature does not change what is claimed */
	{
		char *sig_end = strrchr(token, '.') - 2;       /* inside the signature */
		*sig_end = *sig_end == 'A' ? 'B' : 'A';
	}
	assert_true(token_key_id(token, len, kid));
	assert_true(token_unverified_issuer(token, len, iss));
	assert_string_equal(iss, ISSUER);
	/* refused: truncated, other header, too long, NULL */
	assert_false(token_unverified_issuer(token, 20, iss));
	assert_string_equal(iss, "");
	assert_false(token_key_id(token, 20, kid));
	assert_false(token_unverified_issuer("v3.public.AAAA", 14, iss));
	assert_false(token_unverified_issuer("v4.public.", 10, iss));
	assert_false(token_unverified_issuer("v4.public.!!!!.x", 16, iss));
	assert_false(token_unverified_issuer(token, TOKEN_MAX_LEN + 1, iss));
	assert_false(token_unverified_issuer(NULL, 0, iss));
	assert_false(token_key_id(NULL, 0, kid));
	assert_false(token_key_id("v4.public.AAAA", 14, kid));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unverified_reads),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_malformed_input),
		cmocka_unit_test(test_malformed_claims),
		cmocka_unit_test(test_malformed_footer),
		cmocka_unit_test(test_bad_signature),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_expired),
		cmocka_unit_test(test_revoked),
		cmocka_unit_test(test_wrong_address),
		cmocka_unit_test(test_retired_key),
		cmocka_unit_test(test_swapped_footer),
		cmocka_unit_test(test_other_headers),
		cmocka_unit_test(test_binding),
		cmocka_unit_test(test_max_len),
		cmocka_unit_test(test_generic_paseto),
		cmocka_unit_test(test_time_known),
		cmocka_unit_test(test_time_against_gmtime),
		cmocka_unit_test(test_time_rejects),
		cmocka_unit_test(test_status_names),
		cmocka_unit_test(test_new_id),
		cmocka_unit_test(test_issue_rejects),
		cmocka_unit_test(test_keyring),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
