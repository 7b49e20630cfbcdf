/*
 * store.h: the SQLite database. Opening (pragmas, 0600 file, migrations),
 * and the few statements the daemon's auth workers and submitctl share.
 * Message writes go through writer.h; this header is for everything else.
 * docs/schema.md documents the tables these functions use.
 */
#ifndef SUBMITD_STORE_H
#define SUBMITD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "tokens/keyring.h"
#include "tokens/token.h"

#define STORE_DB_NAME "submitd.db"

/* How long a statement waits for a lock held by another connection (say
 * submitctl, or a backup holding a write transaction) before it fails
 * with SQLITE_BUSY. The writer shortens it while a lock persists
 * (db/writer_store.c), so that clients are not kept waiting this long each. */
#define STORE_BUSY_TIMEOUT_MS 10000

/* Open (creating 0600 if needed) and migrate the database at path. WAL,
 * synchronous=FULL, foreign_keys=ON, a busy timeout. NULL with err set on
 * failure. */
sqlite3 *store_open(const char *path, char *err, size_t errlen);
/* The same for the writer thread's connection: its WAL frames reach the
 * file in one write per commit (db/wal_buffer.h). */
sqlite3 *store_open_writer(const char *path, char *err, size_t errlen);
void store_close(sqlite3 **db);

/* Migrations: the schema version this build expects, and the runner
 * (also used by the schema unit test). 0 or -1 with err. */
int store_schema_version(void);
/* A read that needs the schema (the API's /health): SQLITE_OK, or
 * SQLITE_ERROR with sqlite3_errmsg(db) saying why. */
int store_probe(sqlite3 *db);
int store_migrate(sqlite3 *db, char *err, size_t errlen);
/* Only up to version want (the tests of a migration start from the one before). */
int store_migrate_to(sqlite3 *db, int want, char *err, size_t errlen);

/* Time as stored ("YYYY-MM-DD HH:MM:SS.sss" UTC) from unix milliseconds. */
void store_time(int64_t ms, char out[24]);
/* And back: unix seconds of a stored time (0 for NULL or bad text). */
int64_t store_time_parse(const char *s);

/* --- users ---------------------------------------------------------- */
struct store_user {
	int64_t user_id;
	char *login;
	char *password_hash;
	char **addresses;      /* extra sender addresses, NULL terminated */
	size_t naddresses;
};
void store_user_free(struct store_user *u);

/* 1 found, 0 not found, -1 error. */
int store_user_get(sqlite3 *db, const char *login, struct store_user *u_r);
/* 0 ok, 1 already exists / not found, -1 error; errors in err. */
int store_user_add(sqlite3 *db, const char *login, const char *password_hash, char *err, size_t errlen);
int store_user_passwd(sqlite3 *db, const char *login, const char *password_hash, char *err, size_t errlen);
int store_user_del(sqlite3 *db, const char *login, char *err, size_t errlen);
/* Grant login the sender address. need_user: only a login with a row in
 * users (auth.backend = internal); else any login, such as one Dovecot
 * checks. 0 ok, 1 taken or no such user, -1 error. */
int store_address_add(sqlite3 *db, const char *login, const char *address, bool need_user,
    char *err, size_t errlen);
int store_address_del(sqlite3 *db, const char *login, const char *address, char *err, size_t errlen);
/* The addresses granted to login (NULL terminated, possibly empty, the
 * caller's to free). 0 or -1. */
int store_login_addresses(sqlite3 *db, const char *login, char ***addresses_r);

/* --- signing keys ----------------------------------------------------- */
/* Load every key into ring (cleared first). 0 or -1. */
int store_keys_load(sqlite3 *db, struct keyring *ring);
/*
 * The key ring of one connection, kept in step with the database: the
 * writer (to sign) and each API thread (to verify) hold one. PRAGMA
 * data_version changes when another connection commits, so asking it
 * costs no read of the keys table and may be done once per batch.
 */
struct store_keys {
	struct keyring ring;
	sqlite3_stmt *data_version;  /* prepared by store_keys_init */
	int64_t seen_version;        /* at the last load that worked; -1 none */
};
/* An empty ring for connection db. 0, or -1 with err. */
int store_keys_init(sqlite3 *db, struct store_keys *k, char *err, size_t errlen);
/* Reload the ring when another connection committed since the last load,
 * or when the ring is empty. 1 reloaded, 0 nothing to do, -1 the load
 * failed (sqlite3_errmsg(db) says why; the next call tries again). */
int store_keys_refresh(sqlite3 *db, struct store_keys *k);
void store_keys_free(struct store_keys *k);
/* Insert a key. 0 or -1. */
int store_key_insert(sqlite3 *db, const struct token_key *k, char *err, size_t errlen);
/* Make a new active key, retiring the current one, in one transaction. */
int store_key_rotate(sqlite3 *db, int64_t now, struct token_key *new_r, char *err, size_t errlen);
/* Retire a key by id (it keeps verifying). 0 ok, 1 not found, -1 error. */
int store_key_retire(sqlite3 *db, const char *kid, int64_t now, char *err, size_t errlen);
/* Ensure an active key exists, generating one on first start. 1 when one
 * was generated, 0 when one existed, -1 on error. */
int store_key_ensure(sqlite3 *db, int64_t now, char *err, size_t errlen);

/* --- tokens --------------------------------------------------------- */
/* 0 ok, 1 not found, -1 error. */
int store_token_revoke(sqlite3 *db, const char *jti, int64_t now_ms, char *err, size_t errlen);
/* Revoke every token of a message (public id); *count_r revoked. */
int store_message_revoke(sqlite3 *db, const char *public_id, int64_t now_ms, int *count_r, char *err, size_t errlen);

/* --- what a token refers to (for the API and submitctl) ------------------ */
struct store_token_info {
	int64_t message_id;
	char public_id[32];
	char received_at[32];        /* as stored: "YYYY-MM-DD HH:MM:SS.sss" */
	char *envelope_from;
	int64_t size;
	char sha256[65];
	char *address;               /* the token's address */
	char role[12];               /* "recipient" or "sender" */
	bool has_body;
	bool revoked;
};
void store_token_info_free(struct store_token_info *i);

/*
 * Everything a verification needs from the database about a token, in one
 * query: whether it is on record, revoked, and what it refers to. Use:
 *
 *	struct store_token_check k = { .db = db, .stmt = &cached };
 *	st = token_verify(..., store_token_check_revoked, &k, &claims);
 *	st = store_token_check_finish(&k, st, claims.jti);
 *	... k.info when st == TOKEN_VALID ...
 *	store_token_info_free(&k.info);
 *
 * stmt points at the caller's cache of the prepared statement (NULL at
 * first; the caller finalizes it), so a server prepares it once.
 */
struct store_token_check {
	sqlite3 *db;
	sqlite3_stmt **stmt;
	struct store_token_info info;
	int found;                   /* 1 on record, 0 not, -1 error; after a lookup */
	bool looked;
};
/* A token_revoked_fn (ctx: struct store_token_check *): looks the token up. */
bool store_token_check_revoked(const char *jti, void *ctx);
/* After token_verify: a valid token no longer on record was purged by
 * retention and answers as expired; a database error refuses (revoked). */
enum token_status store_token_check_finish(struct store_token_check *k, enum token_status st, const char *jti);

/* --- API service credentials ------------------------------------------ */
/* 0 ok, 1 exists / not found, -1 error. secret_sha256: 64 hex characters. */
int store_service_add(sqlite3 *db, const char *name, const char *secret_sha256, char *err, size_t errlen);
int store_service_del(sqlite3 *db, const char *name, char *err, size_t errlen);
/* The service whose secret hashes to secret_sha256: 1 (name copied), 0 none, -1 error. */
int store_service_find(sqlite3 *db, const char *secret_sha256, char *name, size_t namelen);

#endif
