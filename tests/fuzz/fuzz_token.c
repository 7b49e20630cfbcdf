/*
 * fuzz_token.c: token_verify (tokens/token.h) with a fixed key ring and a
 * fixed clock (fuzz_keys.h): an active and a retired key in the ring, a
 * third key outside it.
 *
 * Input: a token ("v4.public...."), as a client or the HTTP API hands it
 * in; or, when the input starts with "{", a claims payload that the target
 * signs with the active key under the right footer, so that the claim
 * parser behind the signature check gets fuzzed too.
 *
 * Checks: never a crash; every status is one of the enum; a status that is
 * only reached after the signature check (valid, expired, revoked, wrong
 * address) comes only for a token that verifies independently under a key
 * of the ring (paseto_oracle.h) and that signing its payload and footer
 * again with that key reproduces byte for byte; the claims of such a token
 * have their documented syntax and expiry decides "expired"; the address
 * check folds the domain's case only; without a ring nothing verifies.
 */
#include <string.h>

#include <sodium.h>

#include "fuzz.h"
#include "fuzz_keys.h"
#include "paseto_oracle.h"
#include "tokens/keyring.h"
#include "tokens/paseto.h"
#include "tokens/token.h"

static struct keyring ring;
static struct token_key active, retired, stranger;

static void
key_from_seed(struct token_key *k, const char seed[32], enum token_key_state state)
{
	uint8_t sk[PASETO_SK_BYTES] = { 0 };

	memset(k, 0, sizeof(*k));
	memcpy(sk, seed, 32);
	token_key_from_secret(k, sk);
	k->state = state;
	k->created_at = FUZZ_NOW - 86400 * 30;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	key_from_seed(&active, FUZZ_SEED_ACTIVE, TOKEN_KEY_ACTIVE);
	key_from_seed(&retired, FUZZ_SEED_RETIRED, TOKEN_KEY_RETIRED);
	key_from_seed(&stranger, FUZZ_SEED_STRANGER, TOKEN_KEY_ACTIVE);
	keyring_init(&ring);
	keyring_add(&ring, &active);
	keyring_add(&ring, &retired);
	return 0;
}

static bool
is_revoked(const char *jti, void *ctx)
{
	int *calls = ctx;

	(*calls)++;
	return strncmp(jti, FUZZ_REVOKED_JTI, strlen(FUZZ_REVOKED_JTI)) == 0;
}

static bool
b64url_string(const char *s, size_t want)
{
	if (strlen(s) != want)
		return false;
	for (; *s; s++) {
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		    *s == '-' || *s == '_'))
			return false;
	}
	return true;
}

static bool
status_ok(enum token_status s)
{
	return s == TOKEN_VALID || s == TOKEN_MALFORMED || s == TOKEN_BAD_SIGNATURE || s == TOKEN_UNKNOWN_KEY ||
	    s == TOKEN_EXPIRED || s == TOKEN_REVOKED || s == TOKEN_WRONG_ADDRESS;
}

static void
check_token(const char *token, size_t len)
{
	struct token_claims c0, c1, c2;
	enum token_status s0, s1, s2, s3;
	int calls = 0;

	s0 = token_verify(token, len, &ring, FUZZ_NOW, NULL, NULL, NULL, &c0);
	s1 = token_verify(token, len, &ring, FUZZ_NOW, FUZZ_ADDRESS, is_revoked, &calls, &c1);
	s2 = token_verify(token, len, &ring, FUZZ_NOW, FUZZ_ADDRESS_CASED, is_revoked, &calls, &c2);
	s3 = token_verify(token, len, NULL, FUZZ_NOW, NULL, NULL, NULL, NULL);
	FUZZ_CHECK(status_ok(s0) && status_ok(s1) && status_ok(s2) && status_ok(s3));
	FUZZ_CHECK(strcmp(token_status_name(s0), "unknown") != 0);
	/* nothing verifies without a key */
	FUZZ_CHECK(s3 == TOKEN_MALFORMED || s3 == TOKEN_UNKNOWN_KEY);
	/* the address's domain is compared without case */
	FUZZ_CHECK(s1 == s2);
	/* the revocation and address checks only come after the rest */
	if (s0 == TOKEN_VALID)
		FUZZ_CHECK(s1 == TOKEN_VALID || s1 == TOKEN_REVOKED || s1 == TOKEN_WRONG_ADDRESS);
	else
		FUZZ_CHECK(s1 == s0 && calls == 0);
	FUZZ_CHECK(s0 != TOKEN_REVOKED && s0 != TOKEN_WRONG_ADDRESS);

	if (s0 == TOKEN_VALID || s0 == TOKEN_EXPIRED) {
		const struct token_key *k = keyring_find(&ring, c0.kid);
		uint8_t m[512], f[256];
		size_t mlen = 0, flen = 0;

		/* signed by a key of the ring, and nothing else signs like it */
		FUZZ_CHECK(k == &ring.keys[0] || k == &ring.keys[1]);
		FUZZ_CHECK(strcmp(c0.kid, active.kid) == 0 || strcmp(c0.kid, retired.kid) == 0);
		FUZZ_CHECK(oracle_verify(k->pk, token, len, NULL, 0));
		FUZZ_CHECK(!oracle_verify(stranger.pk, token, len, NULL, 0));
		FUZZ_CHECK(paseto_v4_verify(k->pk, token, len, NULL, 0, m, sizeof(m), &mlen) == PASETO_OK);
		FUZZ_CHECK(paseto_v4_footer(token, len, f, sizeof(f), &flen) == PASETO_OK);
		oracle_reproduce(k->sk, token, len, m, mlen, f, flen, NULL, 0);
		/* the claims have their documented syntax */
		FUZZ_CHECK(b64url_string(c0.jti, TOKEN_ID_LEN));
		FUZZ_CHECK(b64url_string(c0.binding, TOKEN_BINDING_LEN));
		FUZZ_CHECK(strlen(c0.mid) >= 1 && strlen(c0.mid) <= TOKEN_MID_MAX);
		FUZZ_CHECK(strlen(c0.iss) >= 1 && strlen(c0.iss) <= TOKEN_ISSUER_MAX);
		FUZZ_CHECK(c0.role == TOKEN_ROLE_RECIPIENT || c0.role == TOKEN_ROLE_SENDER);
		FUZZ_CHECK((s0 == TOKEN_EXPIRED) == (FUZZ_NOW >= c0.exp));
		FUZZ_CHECK(len <= TOKEN_MAX_LEN);
		if (s0 == TOKEN_VALID) {
			char want[TOKEN_BINDING_LEN + 1];

			FUZZ_CHECK(calls == 2);
			token_binding(c0.jti, FUZZ_ADDRESS, want);
			if (strncmp(c0.jti, FUZZ_REVOKED_JTI, strlen(FUZZ_REVOKED_JTI)) == 0)
				FUZZ_CHECK(s1 == TOKEN_REVOKED);
			else
				FUZZ_CHECK((s1 == TOKEN_VALID) == (strcmp(want, c0.binding) == 0));
		}
	} else if (s0 == TOKEN_BAD_SIGNATURE) {
		/* the footer named a key of the ring, and that key did not sign */
		const struct token_key *k = keyring_find(&ring, c0.kid);

		FUZZ_CHECK(k != NULL);
		FUZZ_CHECK(!oracle_verify(k->pk, token, len, NULL, 0));
	} else if (s0 == TOKEN_UNKNOWN_KEY) {
		FUZZ_CHECK(strncmp(c0.kid, "k4.pid.", 7) == 0 && keyring_find(&ring, c0.kid) == NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == '{') {
		/* a payload: sign it as token_issue would, then verify */
		static char token[8192];
		char footer[128];
		size_t len = 0;
		int flen = snprintf(footer, sizeof(footer), "{\"kid\":\"%s\"}", active.kid);

		if (paseto_v4_sign(active.sk, data, size, (const uint8_t *)footer, (size_t)flen, NULL, 0,
		    token, sizeof(token), &len) == PASETO_OK) {
			char *copy = fuzz_dup((const uint8_t *)token, len);

			check_token(copy, len);
			free(copy);
		}
		return 0;
	}
	{
		char *copy = fuzz_dup(data, size);

		check_token(copy, size);
		free(copy);
	}
	return 0;
}
