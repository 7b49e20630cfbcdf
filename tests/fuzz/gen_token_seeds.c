/*
 * gen_token_seeds.c: writes the seed corpus of the token target, signed
 * with the fixed keys of fuzz_keys.h, into the directory given:
 *
 *   ninja -C build tests/fuzz/gen_token_seeds
 *   build/tests/fuzz/gen_token_seeds tests/fuzz/corpus/token
 *
 * One file per case, each a token (or, for names starting "claims-", a
 * payload that the target signs itself): valid recipient and sender tokens,
 * one from the retired key, an expired one, a revoked one, one from a key
 * outside the ring, one carrying the active key's kid but another key's
 * signature, and tokens that are signed but break the claim syntax. Token
 * ids are random, so the files change on every run; any run's are fine.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "fuzz_keys.h"
#include "tokens/keyring.h"
#include "tokens/paseto.h"
#include "tokens/token.h"

static const char *dir;

static void
key_from_seed(struct token_key *k, const char seed[32])
{
	uint8_t sk[PASETO_SK_BYTES] = { 0 };

	memset(k, 0, sizeof(*k));
	memcpy(sk, seed, 32);
	token_key_from_secret(k, sk);
}

static void
put(const char *name, const char *s, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(s, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void
issue(const char *name, const struct token_key *k, const char *address, enum token_role role,
    int64_t now, int64_t lifetime)
{
	char tok[TOKEN_MAX_LEN + 1];
	size_t n = token_issue(k, "Mq3dVb8xR2kP0aZt", address, role, "mx.example.org", now, lifetime, NULL,
	    tok, sizeof(tok));

	if (n == 0) {
		fprintf(stderr, "token_issue failed for %s\n", name);
		exit(1);
	}
	put(name, tok, n);
}

/* Sign a payload as it stands under the footer {"kid": kid of named}. */
static void
sign_raw(const char *name, const struct token_key *signer, const struct token_key *named, const char *payload)
{
	char footer[128], tok[4096];
	size_t n;

	snprintf(footer, sizeof(footer), "{\"kid\":\"%s\"}", named->kid);
	if (paseto_v4_sign(signer->sk, (const uint8_t *)payload, strlen(payload), (const uint8_t *)footer,
	    strlen(footer), NULL, 0, tok, sizeof(tok), &n) != PASETO_OK) {
		fprintf(stderr, "sign failed for %s\n", name);
		exit(1);
	}
	put(name, tok, n);
}

int
main(int argc, char **argv)
{
	struct token_key active, retired, stranger;
	char binding[TOKEN_BINDING_LEN + 1], payload[512];
	const char *good_exp = "2027-01-08T00:00:00Z";

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	if (sodium_init() < 0)
		return 1;
	key_from_seed(&active, FUZZ_SEED_ACTIVE);
	key_from_seed(&retired, FUZZ_SEED_RETIRED);
	key_from_seed(&stranger, FUZZ_SEED_STRANGER);

	issue("valid-recipient", &active, FUZZ_ADDRESS, TOKEN_ROLE_RECIPIENT, FUZZ_NOW - 3600, 7 * 86400);
	issue("valid-sender", &active, "Bob@Example.ORG", TOKEN_ROLE_SENDER, FUZZ_NOW - 60, 86400);
	issue("valid-utf8-address", &active, "j\xc3\xbcrgen@b\xc3\xbc" "cher.example", TOKEN_ROLE_RECIPIENT,
	    FUZZ_NOW - 60, 86400);
	issue("retired-key", &retired, FUZZ_ADDRESS, TOKEN_ROLE_RECIPIENT, FUZZ_NOW - 86400, 30 * 86400);
	issue("expired", &active, FUZZ_ADDRESS, TOKEN_ROLE_RECIPIENT, FUZZ_NOW - 40 * 86400, 7 * 86400);
	issue("expires-now", &active, FUZZ_ADDRESS, TOKEN_ROLE_RECIPIENT, FUZZ_NOW - 86400, 86400);
	issue("unknown-key", &stranger, FUZZ_ADDRESS, TOKEN_ROLE_RECIPIENT, FUZZ_NOW - 3600, 7 * 86400);

	/* revoked: a jti the target's revocation callback knows */
	token_binding("revokedAAAAAAAAA", FUZZ_ADDRESS, binding);
	snprintf(payload, sizeof(payload),
	    "{\"iss\":\"mx.example.org\",\"jti\":\"revokedAAAAAAAAA\",\"mid\":\"Mq3dVb8xR2kP0aZt\","
	    "\"sub\":\"%s\",\"rol\":\"r\",\"exp\":\"%s\"}", binding, good_exp);
	sign_raw("revoked", &active, &active, payload);
	put("claims-revoked", payload, strlen(payload));
	/* the active key's kid, the stranger's signature */
	sign_raw("bad-signature", &stranger, &active, payload);
	/* signed, but not our claim syntax */
	token_binding("AAAAAAAAAAAAAAAA", FUZZ_ADDRESS, binding);
	snprintf(payload, sizeof(payload),
	    "{\"iss\":\"mx.example.org\",\"jti\":\"AAAAAAAAAAAAAAAA\",\"mid\":\"Mq3dVb8xR2kP0aZt\","
	    "\"sub\":\"%s\",\"rol\":\"s\",\"exp\":\"2027-01-08T00:00:00+00:00\"}", binding);
	sign_raw("offset-exp", &active, &active, payload);
	put("claims-offset-exp", payload, strlen(payload));
	sign_raw("extra-claim", &active, &active,
	    "{\"iss\":\"mx.example.org\",\"jti\":\"AAAAAAAAAAAAAAAA\",\"mid\":\"Mq3dVb8xR2kP0aZt\","
	    "\"sub\":\"AAAAAAAAAAAAAAAA\",\"rol\":\"r\",\"exp\":\"2027-01-08T00:00:00Z\",\"aud\":\"x\"}");
	sign_raw("duplicate-claim", &active, &active,
	    "{\"iss\":\"mx.example.org\",\"jti\":\"AAAAAAAAAAAAAAAA\",\"jti\":\"BBBBBBBBBBBBBBBB\","
	    "\"mid\":\"Mq3dVb8xR2kP0aZt\",\"sub\":\"AAAAAAAAAAAAAAAA\",\"rol\":\"r\"}");
	sign_raw("leap-day", &active, &active,
	    "{\"iss\":\"mx.example.org\",\"jti\":\"AAAAAAAAAAAAAAAA\",\"mid\":\"Mq3dVb8xR2kP0aZt\","
	    "\"sub\":\"AAAAAAAAAAAAAAAA\",\"rol\":\"r\",\"exp\":\"2027-02-29T00:00:00Z\"}");
	sign_raw("nul-in-issuer", &active, &active,
	    "{\"iss\":\"mx\\u0000.example.org\",\"jti\":\"AAAAAAAAAAAAAAAA\",\"mid\":\"Mq3dVb8xR2kP0aZt\","
	    "\"sub\":\"AAAAAAAAAAAAAAAA\",\"rol\":\"r\",\"exp\":\"2027-01-08T00:00:00Z\"}");
	sign_raw("not-an-object", &active, &active, "[\"iss\",\"jti\"]");
	snprintf(payload, sizeof(payload), "%s", "{\"iss\":\"a\",\"jti\":\"AAAAAAAAAAAAAAAA\",\"mid\":\"m\","
	    "\"sub\":\"AAAAAAAAAAAAAAAA\",\"rol\":\"s\",\"exp\":\"9999-12-31T23:59:59Z\"}");
	put("claims-valid-shape", payload, strlen(payload));
	return 0;
}
