/*
 * keyring.c: the in-memory set of Ed25519 token keys, looked up by their
 * PASERK k4.pid. Keys come and go rarely (rotation), tokens are verified
 * often, and a node holds a handful of keys, so a plain array with a linear
 * search is both the simplest and the fastest choice.
 *
 * The array holds secret keys, so it is never handed to realloc(): a moved
 * block would leave a copy of every secret in freed memory. Growing copies
 * into a fresh block and wipes the old one instead.
 */
#include "tokens/keyring.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static void crypto_ready(void)
{
	/* Idempotent; fails only without an entropy source, which makes
	 * generating keys meaningless. */
	if (sodium_init() < 0)
		abort();
}

void token_key_generate(struct token_key *k, int64_t now)
{
	crypto_ready();
	memset(k, 0, sizeof *k);
	crypto_sign_keypair(k->pk, k->sk);
	paserk_k4_pid(k->pk, k->kid);
	k->has_secret = true;
	k->state = TOKEN_KEY_ACTIVE;
	k->created_at = now;
	k->retired_at = 0;
}

/* The public key is re-derived from the seed rather than copied from the
 * second half of sk, and sk is rewritten as seed || derived pk: a corrupt
 * stored pair then signs correctly instead of producing unverifiable
 * tokens. state, created_at and retired_at are the caller's (db/store)
 * and are left as they are. */
void token_key_from_secret(struct token_key *k, const uint8_t sk[PASETO_SK_BYTES])
{
	uint8_t seed[crypto_sign_SEEDBYTES];

	crypto_ready();
	memcpy(seed, sk, sizeof seed);
	crypto_sign_seed_keypair(k->pk, k->sk, seed);
	sodium_memzero(seed, sizeof seed);
	paserk_k4_pid(k->pk, k->kid);
	k->has_secret = true;
}

void keyring_init(struct keyring *r)
{
	r->keys = NULL;
	r->n = 0;
	r->cap = 0;
}

static void keyring_grow(struct keyring *r)
{
	size_t cap = r->cap == 0 ? 4 : r->cap * 2;
	struct token_key *keys;

	if (cap > SIZE_MAX / sizeof *keys)
		abort();
	keys = calloc(cap, sizeof *keys);
	if (keys == NULL)
		abort();           /* as everywhere in submitd: OOM is fatal */
	if (r->n > 0)
		memcpy(keys, r->keys, r->n * sizeof *keys);
	if (r->keys != NULL) {
		sodium_memzero(r->keys, r->cap * sizeof *r->keys);
		free(r->keys);
	}
	r->keys = keys;
	r->cap = cap;
}

/* Adding a kid that is already present replaces that entry, so reloading
 * a key after it was retired updates it instead of leaving two versions
 * for keyring_find to choose between. */
void keyring_add(struct keyring *r, const struct token_key *k)
{
	for (size_t j = 0; j < r->n; j++) {
		if (strcmp(r->keys[j].kid, k->kid) == 0) {
			r->keys[j] = *k;
			return;
		}
	}
	if (r->n == r->cap)
		keyring_grow(r);
	r->keys[r->n++] = *k;
}

void keyring_free(struct keyring *r)
{
	if (r->keys != NULL) {
		sodium_memzero(r->keys, r->cap * sizeof *r->keys);
		free(r->keys);
	}
	keyring_init(r);
}

/* kid is public (it travels in every token footer): strcmp is fine. */
const struct token_key *keyring_find(const struct keyring *r, const char *kid)
{
	if (kid == NULL)
		return NULL;
	for (size_t j = 0; j < r->n; j++) {
		if (strcmp(r->keys[j].kid, kid) == 0)
			return &r->keys[j];
	}
	return NULL;
}

/* During a rotation the new key may be marked active before the old one is
 * retired; the newest active key (latest created_at, then the one added
 * last) wins so that a rotation takes effect at once. */
const struct token_key *keyring_active(const struct keyring *r)
{
	const struct token_key *best = NULL;

	for (size_t j = 0; j < r->n; j++) {
		const struct token_key *k = &r->keys[j];

		if (k->state != TOKEN_KEY_ACTIVE)
			continue;
		if (best == NULL || k->created_at >= best->created_at)
			best = k;
	}
	return best;
}
