/*
 * peer_keys.h: the public keys of the other nodes of a cluster
 * (table peer_keys, docs/schema.md). The API fetches them from each peer's
 * /v1/keys and stores them through a writer job (peer_keys_store); each API
 * thread loads them, on its own read connection, into a ring of its own
 * beside the node's signing keys (struct peer_ring).
 */
#ifndef SUBMITD_PEER_KEYS_H
#define SUBMITD_PEER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "tokens/keyring.h"
#include "tokens/token.h"

/* One key as a peer lists it. */
struct peer_key {
	char kid[PASERK_K4_PID_LEN + 1];
	uint8_t pk[PASETO_PK_BYTES];
	enum token_key_state state;
	int64_t created_at, retired_at;      /* unix seconds; 0 unknown / not retired */
};

/*
 * Record what node listed now: insert its new keys, update the state of
 * known ones and their last_seen, leave the keys it no longer lists (a
 * peer may drop a retired key whose tokens still circulate) and delete
 * those not seen since forget_before_ms. A kid the node's own signing
 * keys or another node's rows hold is skipped. In the caller's
 * transaction (a writer job). SQLITE_OK or the error.
 */
int peer_keys_store(sqlite3 *db, const char *node, const struct peer_key *keys, size_t n, int64_t now_ms,
    int64_t forget_before_ms);

/* The peer keys of one connection, with their nodes, kept in step with
 * the database as struct store_keys is. */
struct peer_ring {
	struct keyring ring;                 /* public keys only */
	char (*node)[TOKEN_ISSUER_MAX + 1];  /* node[i] owns ring.keys[i] */
	size_t cap;
	sqlite3_stmt *data_version;
	int64_t seen_version;
	/* keys read from a peer that the database may not hold yet (the
	 * writer stores them a moment later): put back after each reload
	 * until a reload brings them (peer_ring_learn) */
	struct peer_key *learnt;
	char (*learnt_node)[TOKEN_ISSUER_MAX + 1];
	size_t nlearnt, learnt_cap;
};
int peer_ring_init(sqlite3 *db, struct peer_ring *r, char *err, size_t errlen);
/* Reload when another connection committed since the last load. 1
 * reloaded, 0 nothing to do, -1 error. */
int peer_ring_refresh(sqlite3 *db, struct peer_ring *r);
void peer_ring_free(struct peer_ring *r);
/* What node listed just now, known at once, before the writer stores
 * it: replaces what was learnt from node before. A kid of own (this
 * node's keys) or one the ring holds for another node is skipped, as
 * peer_keys_store skips it. */
void peer_ring_learn(struct peer_ring *r, const char *node, const struct peer_key *keys, size_t n,
    const struct keyring *own);
/* The node of key kid, or NULL when no peer has it. */
const char *peer_ring_node(const struct peer_ring *r, const char *kid);

#endif
