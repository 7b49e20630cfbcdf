/*
 * peer_keys.c: see peer_keys.h. Every statement on peer_keys.
 */
#include "db/peer_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/store.h"
#include "server/base/util.h"

int
peer_keys_store(sqlite3 *db, const char *node, const struct peer_key *keys, size_t n, int64_t now_ms,
    int64_t forget_before_ms)
{
	sqlite3_stmt *st = NULL;
	char now[24], created[24], retired[24], forget[24];
	int rc;

	store_time(now_ms, now);
	store_time(forget_before_ms, forget);
	/* ON CONFLICT ... WHERE: a key already held by another node stays
	 * that node's; a peer cannot take over one of ours either (the
	 * NOT EXISTS). */
	rc = sqlite3_prepare_v2(db,
	    "INSERT INTO peer_keys (key_id, node, public_key, state, created_at, retired_at, first_seen, last_seen) "
	    "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7 "
	    "WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE key_id = ?1) "
	    "ON CONFLICT (key_id) DO UPDATE SET state = excluded.state, retired_at = excluded.retired_at, "
	    "last_seen = excluded.last_seen WHERE peer_keys.node = excluded.node", -1, &st, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
		const struct peer_key *k = &keys[i];
		store_time(k->created_at * 1000, created);
		store_time(k->retired_at * 1000, retired);
		sqlite3_bind_text(st, 1, k->kid, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC);
		sqlite3_bind_blob(st, 3, k->pk, PASETO_PK_BYTES, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, k->state == TOKEN_KEY_ACTIVE ? "active" : "retired", -1, SQLITE_STATIC);
		if (k->created_at)
			sqlite3_bind_text(st, 5, created, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 5);
		if (k->retired_at)
			sqlite3_bind_text(st, 6, retired, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 6);
		sqlite3_bind_text(st, 7, now, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_prepare_v2(db, "DELETE FROM peer_keys WHERE node = ?1 AND last_seen < ?2", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, forget, -1, SQLITE_STATIC);
	rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
	sqlite3_finalize(st);
	return rc;
}

int
peer_ring_init(sqlite3 *db, struct peer_ring *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	keyring_init(&r->ring);
	r->seen_version = -1;
	if (sqlite3_prepare_v3(db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT, &r->data_version,
	    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* Each add appends, so node[i] stays beside ring.keys[i]. */
static void
ring_add(struct peer_ring *r, const struct token_key *k, const char *node)
{
	keyring_add(&r->ring, k);
	if (r->ring.n > r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 8;
		r->node = xrealloc(r->node, cap * sizeof(*r->node));
		r->cap = cap;
	}
	snprintf(r->node[r->ring.n - 1], sizeof(r->node[0]), "%s", node);
}

static void
learnt_to_ring(struct peer_ring *r, size_t i)
{
	const struct peer_key *pk = &r->learnt[i];
	struct token_key k;

	memset(&k, 0, sizeof(k));
	memcpy(k.kid, pk->kid, sizeof(k.kid));
	memcpy(k.pk, pk->pk, sizeof(k.pk));
	k.state = pk->state;
	k.created_at = pk->created_at;
	k.retired_at = pk->retired_at;
	ring_add(r, &k, r->learnt_node[i]);
}

/* Keep learnt[i] as learnt[*kept]. */
static void
learnt_keep(struct peer_ring *r, size_t i, size_t *kept)
{
	if (*kept != i) {
		r->learnt[*kept] = r->learnt[i];
		memcpy(r->learnt_node[*kept], r->learnt_node[i], sizeof(r->learnt_node[0]));
	}
	(*kept)++;
}

/* After a load: the learnt keys the ring lacks go in; those it has (the
 * database brought them, or another node holds the kid) are done with. */
static void
learnt_merge(struct peer_ring *r)
{
	size_t kept = 0;

	for (size_t i = 0; i < r->nlearnt; i++) {
		if (keyring_find(&r->ring, r->learnt[i].kid) != NULL)
			continue;
		learnt_to_ring(r, i);
		learnt_keep(r, i, &kept);
	}
	r->nlearnt = kept;
}

void
peer_ring_learn(struct peer_ring *r, const char *node, const struct peer_key *keys, size_t n,
    const struct keyring *own)
{
	size_t kept = 0;

	for (size_t i = 0; i < r->nlearnt; i++)
		if (strcmp(r->learnt_node[i], node) != 0)
			learnt_keep(r, i, &kept);
	r->nlearnt = kept;
	for (size_t i = 0; i < n; i++) {
		const char *holder = peer_ring_node(r, keys[i].kid);

		if (keyring_find(own, keys[i].kid) != NULL || (holder != NULL && strcmp(holder, node) != 0))
			continue;
		if (r->nlearnt == r->learnt_cap) {
			size_t cap = r->learnt_cap ? r->learnt_cap * 2 : 8;
			r->learnt = xrealloc(r->learnt, cap * sizeof(*r->learnt));
			r->learnt_node = xrealloc(r->learnt_node, cap * sizeof(*r->learnt_node));
			r->learnt_cap = cap;
		}
		r->learnt[r->nlearnt] = keys[i];
		snprintf(r->learnt_node[r->nlearnt], sizeof(r->learnt_node[0]), "%s", node);
		/* one the ring has for node stays learnt: the next load keeps
		 * it if the database lacks it */
		if (holder == NULL)
			learnt_to_ring(r, r->nlearnt);
		r->nlearnt++;
	}
}

static int
peer_ring_load(sqlite3 *db, struct peer_ring *r)
{
	sqlite3_stmt *st;
	int rc;

	keyring_free(&r->ring);
	keyring_init(&r->ring);
	if (sqlite3_prepare_v2(db, "SELECT key_id, node, public_key, state, created_at, retired_at FROM peer_keys "
	    "ORDER BY key_id", -1, &st, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct token_key k;
		const char *node = (const char *)sqlite3_column_text(st, 1);

		memset(&k, 0, sizeof(k));
		if (sqlite3_column_bytes(st, 2) != PASETO_PK_BYTES || node == NULL || strlen(node) > TOKEN_ISSUER_MAX)
			continue;
		snprintf(k.kid, sizeof(k.kid), "%s", (const char *)sqlite3_column_text(st, 0));
		memcpy(k.pk, sqlite3_column_blob(st, 2), PASETO_PK_BYTES);
		k.state = strcmp((const char *)sqlite3_column_text(st, 3), "active") == 0 ?
		    TOKEN_KEY_ACTIVE : TOKEN_KEY_RETIRED;
		k.created_at = store_time_parse((const char *)sqlite3_column_text(st, 4));
		k.retired_at = store_time_parse((const char *)sqlite3_column_text(st, 5));
		/* kids are unique (the primary key) */
		ring_add(r, &k, node);
	}
	sqlite3_finalize(st);
	learnt_merge(r);
	return rc == SQLITE_DONE ? 0 : -1;
}

int
peer_ring_refresh(sqlite3 *db, struct peer_ring *r)
{
	int64_t v = -1;

	if (sqlite3_step(r->data_version) == SQLITE_ROW)
		v = sqlite3_column_int64(r->data_version, 0);
	sqlite3_reset(r->data_version);
	if (v == r->seen_version)
		return 0;
	if (peer_ring_load(db, r) == -1) {
		r->seen_version = -1;
		return -1;
	}
	r->seen_version = v;
	return 1;
}

void
peer_ring_free(struct peer_ring *r)
{
	sqlite3_finalize(r->data_version);
	r->data_version = NULL;
	keyring_free(&r->ring);
	free(r->node);
	r->node = NULL;
	r->cap = 0;
	free(r->learnt);
	free(r->learnt_node);
	r->learnt = NULL;
	r->learnt_node = NULL;
	r->nlearnt = r->learnt_cap = 0;
}

const char *
peer_ring_node(const struct peer_ring *r, const char *kid)
{
	for (size_t i = 0; i < r->ring.n; i++)
		if (strcmp(r->ring.keys[i].kid, kid) == 0)
			return r->node[i];
	return NULL;
}
