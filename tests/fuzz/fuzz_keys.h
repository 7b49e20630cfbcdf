/*
 * fuzz_keys.h: the fixed keys and clock of the token and paseto targets and
 * of gen_token_seeds, which signed the tokens in corpus/token/. Change a
 * seed here and those tokens stop verifying: run gen_token_seeds again.
 * These keys sign nothing but test inputs.
 */
#ifndef SUBMITD_FUZZ_KEYS_H
#define SUBMITD_FUZZ_KEYS_H

#include <stdint.h>

/* 2027-01-01T00:00:00Z: the fuzz clock */
#define FUZZ_NOW INT64_C(1798761600)

/* Ed25519 seeds (32 octets each, the literal's NUL included) */
#define FUZZ_SEED_ACTIVE   "submitd fuzz: active key seed.."
#define FUZZ_SEED_RETIRED  "submitd fuzz: retired key seed."
#define FUZZ_SEED_STRANGER "submitd fuzz: not in the ring.."

/* The address that tokens are checked against, and the jti prefix that the
 * revocation callback treats as revoked. */
#define FUZZ_ADDRESS       "alice@example.org"
#define FUZZ_ADDRESS_CASED "alice@EXAMPLE.Org"
#define FUZZ_REVOKED_JTI   "revoked"

/* The v4.public key of the official test vectors 4-S-1..3 (tests/unit/
 * vectors/paseto/v4.json): seed, for the paseto target. */
static const uint8_t fuzz_vector_seed[32] = {
	0xb4, 0xcb, 0xfb, 0x43, 0xdf, 0x4c, 0xe2, 0x10, 0x72, 0x7d, 0x95, 0x3e, 0x4a, 0x71, 0x33, 0x07,
	0xfa, 0x19, 0xbb, 0x7d, 0x9f, 0x85, 0x04, 0x14, 0x38, 0xd9, 0xe1, 0x1b, 0x94, 0x2a, 0x37, 0x74,
};

#endif
