/*
 * ed25519_verify.c: the reference of the verification API benchmark
 * (scripts/bench api): how many Ed25519 signatures one core of this machine
 * verifies per second with libsodium's crypto_sign_verify_detached, on a
 * message the size of a submission token's PASETO pre-authentication
 * encoding (docs/tokens.md section 1). No parsing, no I/O: the ceiling that
 * /v1/verify, which does this plus HTTP, JSON and a database look-up, is
 * compared with.
 *
 * usage: ed25519_verify [SECONDS]   (default 2; prints one key=value line)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define MSG_LEN     300   /* PAE of a token: 4 length words, header, claims, footer */
#define BATCH       256   /* verifications between two looks at the clock */

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	unsigned char msg[MSG_LEN], sig[crypto_sign_BYTES];
	double seconds = argc > 1 ? strtod(argv[1], NULL) : 2.0, t0, t = 0;
	long n = 0;

	if (sodium_init() < 0 || seconds <= 0 || seconds > 60) {
		fprintf(stderr, "usage: ed25519_verify [SECONDS (0-60]]\n");
		return 2;
	}
	crypto_sign_keypair(pk, sk);
	randombytes_buf(msg, sizeof(msg));
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);

	t0 = now_s();
	do {
		for (int i = 0; i < BATCH; i++) {
			if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0) {
				fprintf(stderr, "ed25519_verify: a good signature failed\n");
				return 1;
			}
		}
		n += BATCH;
		t = now_s() - t0;
	} while (t < seconds);
	printf("ed25519: verifies=%ld seconds=%.3f verify_per_s=%.1f\n", n, t, (double)n / t);
	return 0;
}
