/*
 * fuzz_paseto.c: PASETO v4.public and PASERK k4 parsing (tokens/paseto.h)
 * under the key of the official test vectors 4-S-1..3.
 *
 * Input: a token, optionally followed by "\n" and an implicit assertion
 * (vector 4-S-3 needs one). The same octets up to the newline are also
 * tried as PASERK k4.public and k4.secret strings.
 *
 * Checks: paseto_v4_verify accepts a token only if it verifies by the
 * independent oracle (paseto_oracle.h) and signing its message, footer and
 * assertion again reproduces it byte for byte (one spelling per token);
 * the message bound is exact (TOO_LONG one octet short); the footer that
 * paseto_v4_footer reads agrees with verification, also with a small
 * footer buffer; a parsed PASERK key encodes back to the same string, and a
 * parsed secret key's public half is the one its seed derives.
 */
#include <string.h>

#include <sodium.h>

#include "fuzz.h"
#include "fuzz_keys.h"
#include "paseto_oracle.h"
#include "tokens/paseto.h"

static uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (sodium_init() < 0)
		abort();
	crypto_sign_seed_keypair(pk, sk, fuzz_vector_seed);
	return 0;
}

static bool
paseto_result_ok(enum paseto_result r)
{
	return r == PASETO_OK || r == PASETO_MALFORMED || r == PASETO_BAD_SIGNATURE || r == PASETO_TOO_LONG;
}

static void
check_paserk(const uint8_t *data, size_t size)
{
	char *s = fuzz_strdup(data, size);
	uint8_t kpk[PASETO_PK_BYTES], ksk[PASETO_SK_BYTES];
	char again[PASERK_K4_SECRET_LEN + 1], pid[PASERK_K4_PID_LEN + 1];

	if (paserk_k4_public_parse(s, kpk) == 0) {
		paserk_k4_public(kpk, again);
		FUZZ_CHECK(strcmp(again, s) == 0);
		paserk_k4_pid(kpk, pid);
		FUZZ_CHECK(strlen(pid) == PASERK_K4_PID_LEN && strncmp(pid, "k4.pid.", 7) == 0);
	}
	if (paserk_k4_secret_parse(s, ksk) == 0) {
		uint8_t dpk[PASETO_PK_BYTES], dsk[PASETO_SK_BYTES];

		paserk_k4_secret(ksk, again);
		FUZZ_CHECK(strcmp(again, s) == 0);
		crypto_sign_seed_keypair(dpk, dsk, ksk);
		FUZZ_CHECK(memcmp(dpk, ksk + 32, 32) == 0);
	}
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t tlen = nl ? (size_t)(nl - data) : size;
	const uint8_t *ia = nl ? nl + 1 : NULL;
	size_t ialen = nl ? size - tlen - 1 : 0;
	char *token = fuzz_dup(data, tlen);
	uint8_t *iacopy = ialen > 0 ? (uint8_t *)fuzz_dup(ia, ialen) : NULL;
	static uint8_t m[8192], f[8192], fsmall[16];
	size_t mlen = 0, flen = 0, fslen = 0;
	enum paseto_result r, fr, frs;

	r = paseto_v4_verify(pk, token, tlen, iacopy, ialen, m, sizeof(m), &mlen);
	fr = paseto_v4_footer(token, tlen, f, sizeof(f), &flen);
	frs = paseto_v4_footer(token, tlen, fsmall, sizeof(fsmall), &fslen);
	FUZZ_CHECK(paseto_result_ok(r) && paseto_result_ok(fr) && paseto_result_ok(frs));
	FUZZ_CHECK(fr != PASETO_BAD_SIGNATURE && frs != PASETO_BAD_SIGNATURE);
	if (fr == PASETO_OK)
		FUZZ_CHECK(flen <= sizeof(f));
	if (frs == PASETO_OK) {
		/* the small buffer only ever refuses, never disagrees */
		FUZZ_CHECK(fr == PASETO_OK && fslen == flen && memcmp(fsmall, f, flen) == 0);
	}
	if (r == PASETO_OK || r == PASETO_BAD_SIGNATURE)
		FUZZ_CHECK(fr == PASETO_OK);
	if (r == PASETO_OK) {
		FUZZ_CHECK(oracle_verify(pk, token, tlen, iacopy, ialen));
		oracle_reproduce(sk, token, tlen, m, mlen, f, flen, iacopy, ialen);
		if (mlen > 0) {
			uint8_t *tight = malloc(mlen);
			size_t n = 0;

			if (tight == NULL)
				abort();
			FUZZ_CHECK(paseto_v4_verify(pk, token, tlen, iacopy, ialen, tight, mlen, &n) == PASETO_OK &&
			    n == mlen && memcmp(tight, m, mlen) == 0);
			FUZZ_CHECK(paseto_v4_verify(pk, token, tlen, iacopy, ialen, tight, mlen - 1, &n) ==
			    PASETO_TOO_LONG);
			free(tight);
		}
	}
	check_paserk(data, tlen);
	free(iacopy);
	free(token);
	return 0;
}
