/*
 * ed25519_rate.c: the references that scripts/bench (docs/performance.md)
 * compares submitd with: how many Ed25519 signatures one core of this
 * machine makes (crypto_sign_detached) or checks (crypto_sign_verify_detached)
 * per second with libsodium, on a message the size of a submission token's
 * PASETO pre-authentication encoding (docs/tokens.md section 1). No
 * parsing, no I/O, no database.
 *
 *   verify: the ceiling of /v1/verify, which does this plus HTTP, JSON and
 *           a database look-up (the api benchmark);
 *   sign:   the floor under every accepted message, which carries one
 *           signed token per recipient and one for the sender (acceptance).
 *
 * usage: ed25519_rate sign|verify [SECONDS]   (default 2; prints one
 * key=value line)
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#define MSG_LEN     300   /* PAE of a token: 4 length words, header, claims, footer */
#define BATCH       256   /* operations between two looks at the clock */

static double
now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
usage(void)
{
	fprintf(stderr, "usage: ed25519_rate sign|verify [SECONDS (0-60]]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	unsigned char msg[MSG_LEN], sig[crypto_sign_BYTES];
	double seconds, t0, t = 0;
	bool sign;
	long n = 0;

	if (argc < 2 || argc > 3)
		usage();
	if (strcmp(argv[1], "sign") == 0)
		sign = true;
	else if (strcmp(argv[1], "verify") == 0)
		sign = false;
	else
		usage();
	seconds = argc > 2 ? strtod(argv[2], NULL) : 2.0;
	if (seconds <= 0 || seconds > 60)
		usage();
	if (sodium_init() < 0) {
		fprintf(stderr, "ed25519_rate: sodium_init failed\n");
		return 1;
	}
	crypto_sign_keypair(pk, sk);
	randombytes_buf(msg, sizeof(msg));
	crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);

	t0 = now_s();
	do {
		for (int i = 0; i < BATCH; i++) {
			if (sign) {
				/* a different message each time, as each token differs */
				msg[i % MSG_LEN] ^= (unsigned char)n;
				crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
			} else if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0) {
				fprintf(stderr, "ed25519_rate: a good signature failed\n");
				return 1;
			}
		}
		n += BATCH;
		t = now_s() - t0;
	} while (t < seconds);
	printf("ed25519: op=%s count=%ld seconds=%.3f per_s=%.1f\n", argv[1], n, t, (double)n / t);
	return 0;
}
