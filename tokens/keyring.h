/*
 * keyring.h: the set of Ed25519 keys a node signs and verifies with.
 * Exactly one key is active (signs); retired keys only verify.
 * Loading from and saving to the database is db/store's job; this module
 * only holds keys in memory and looks them up.
 */
#ifndef SUBMITD_KEYRING_H
#define SUBMITD_KEYRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokens/paseto.h"

enum token_key_state { TOKEN_KEY_ACTIVE = 0, TOKEN_KEY_RETIRED = 1 };

struct token_key {
	char kid[PASERK_K4_PID_LEN + 1];      /* PASERK k4.pid of pk */
	uint8_t pk[PASETO_PK_BYTES];
	uint8_t sk[PASETO_SK_BYTES];
	bool has_secret;
	enum token_key_state state;
	int64_t created_at;                   /* unix seconds */
	int64_t retired_at;                   /* 0 while active */
};

struct keyring {
	struct token_key *keys;               /* owned, freed by keyring_free */
	size_t n, cap;
};

/* Make a fresh active key (kid computed). */
void token_key_generate(struct token_key *k, int64_t now);
/* Fill pk and kid from a secret key (sk is seed||pk). */
void token_key_from_secret(struct token_key *k, const uint8_t sk[PASETO_SK_BYTES]);

void keyring_init(struct keyring *r);
void keyring_add(struct keyring *r, const struct token_key *k);   /* copies */
void keyring_free(struct keyring *r);                                /* wipes secrets */
const struct token_key *keyring_find(const struct keyring *r, const char *kid);
/* The key that signs, or NULL when none is active. */
const struct token_key *keyring_active(const struct keyring *r);

#endif
