/*
 * store.c: opening the database and the small statements shared by the
 * daemon (auth workers, key loading) and submitctl. Every function takes
 * the connection it runs on; connections are never shared between threads.
 */
#include "db/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "db/wal_buffer.h"
#include "server/base/util.h"

void
store_time(int64_t ms, char out[24])
{
	db_time_format(ms, out);
}

/* Pages in the database file: 0 for a new, empty one (-1 on error). */
static int64_t
page_count(sqlite3 *db)
{
	sqlite3_stmt *st;
	int64_t n = -1;

	if (sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

/*
 * The writer gives each message of a batch a savepoint, so a message that
 * fails rolls back alone; SQLite keeps the original of every page changed
 * under a savepoint (and under most INSERTs in a transaction) in a
 * statement journal. Past 64 KiB it spills that journal to a temp file:
 * with batches of a few messages, two thirds of the writer's pwrite calls
 * went there, for a file that is never synced and is thrown away at
 * commit. Up to this much stays in memory; a batch with a large message
 * still spills, so memory stays bounded.
 */
#define STORE_STMTJRNL_SPILL (8 * 1024 * 1024)

static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void
sqlite_configure(void)
{
	/* Only possible before SQLite initialises, which the first open does;
	 * a program that opened a database another way keeps the default. */
	sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, STORE_STMTJRNL_SPILL);
}

static sqlite3 *
open_with(const char *path, bool wal_buffered, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	char *msg = NULL;
	int fd;

	pthread_once(&sqlite_once, sqlite_configure);

	/* Create the file ourselves so it is 0600 from its first byte: it holds
	 * password hashes, signing keys and people's mail. Only when it does
	 * not exist: closing any descriptor of a database file drops every
	 * POSIX lock this process holds on it, and another process would then
	 * think the database unused and remove the WAL under our feet. */
	if (access(path, F_OK) == -1) {
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd == -1 && errno != EEXIST) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return NULL;
		}
		if (fd != -1)
			close(fd);
	}
	/* after sqlite_configure: registering the VFS initialises SQLite */
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	    wal_buffered ? wal_buffer_vfs() : NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(db, 1);
	/* A new database reclaims space as retention frees pages; the mode
	 * can only be chosen before the first table exists (and before WAL).
	 * Only then: on an existing database the pragma cannot change the
	 * mode, but it still rewrites the header in a write transaction,
	 * which made every open (an auth worker's, submitctl's) wait the
	 * whole busy timeout while another process held the write lock. */
	if (page_count(db) == 0)
		sqlite3_exec(db, "PRAGMA auto_vacuum = INCREMENTAL", NULL, NULL, NULL);
	if (sqlite3_exec(db,
	    "PRAGMA journal_mode = WAL;"
	    "PRAGMA synchronous = FULL;"
	    "PRAGMA foreign_keys = ON;"
	    "PRAGMA secure_delete = OFF;",
	    NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		sqlite3_close(db);
		return NULL;
	}
	if (store_migrate(db, err, errlen) == -1) {
		sqlite3_close(db);
		return NULL;
	}
	/* The -wal and -shm files are created by SQLite with the main file's
	 * mode, but make sure of it for files left by an older umask. */
	for (const char *suffix = "-wal"; suffix; suffix = strcmp(suffix, "-wal") == 0 ? "-shm" : NULL) {
		char p[4096];
		snprintf(p, sizeof(p), "%s%s", path, suffix);
		chmod(p, 0600);
	}
	chmod(path, 0600);
	return db;
}

sqlite3 *
store_open(const char *path, char *err, size_t errlen)
{
	return open_with(path, false, err, errlen);
}

/* wal_buffer.h relies on synchronous = FULL, which open_with sets for
 * every connection. */
sqlite3 *
store_open_writer(const char *path, char *err, size_t errlen)
{
	return open_with(path, true, err, errlen);
}

void
store_close(sqlite3 **db)
{
	if (*db) {
		sqlite3_close_v2(*db);
		*db = NULL;
	}
}

/* Run one statement with text parameters; returns sqlite's final code. */
static int
exec_text(sqlite3 *db, const char *sql, int nparams, const char *const *params, int *changes_r)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	for (int i = 0; i < nparams; i++)
		sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	sqlite3_finalize(st);
	if (changes_r)
		*changes_r = sqlite3_changes(db);
	return rc;
}

/* Run a statement that must change a row: 0 when it did, 1 when nothing
 * matched (err is set to `none`), -1 on error (err from SQLite). */
static int
exec_change(sqlite3 *db, const char *sql, int nparams, const char *const *params, const char *none,
    char *err, size_t errlen)
{
	int n = 0, rc = exec_text(db, sql, nparams, params, &n);

	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	if (n == 0) {
		snprintf(err, errlen, "%s", none);
		return 1;
	}
	return 0;
}

/* Run an INSERT whose key may be taken: 0 when it ran, 1 when a row with
 * that key exists (err is set to `exists`), -1 on error (err from
 * SQLite). *changes_r (may be NULL): rows inserted. */
static int
exec_insert(sqlite3 *db, const char *sql, int nparams, const char *const *params, const char *exists,
    int *changes_r, char *err, size_t errlen)
{
	int rc = exec_text(db, sql, nparams, params, changes_r);

	if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
		snprintf(err, errlen, "%s", exists);
		return 1;
	}
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

static void
now_text(char out[24])
{
	store_time(now_ms(), out);
}

void
store_user_free(struct store_user *u)
{
	free(u->login);
	if (u->password_hash) {
		sodium_memzero(u->password_hash, strlen(u->password_hash));
		free(u->password_hash);
	}
	for (size_t i = 0; i < u->naddresses; i++)
		free(u->addresses[i]);
	free(u->addresses);
	memset(u, 0, sizeof(*u));
}

/* Append the addresses granted to login to *v (NULL terminated, *n of
 * them). SQLITE_DONE or an error code. */
static int
read_addresses(sqlite3 *db, const char *login, char ***v, size_t *n)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(db, "SELECT address FROM login_addresses WHERE login = ?1 ORDER BY address",
	    -1, &st, NULL) != SQLITE_OK)
		return sqlite3_errcode(db);
	sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		*v = xrealloc(*v, (*n + 2) * sizeof(char *));
		(*v)[(*n)++] = xstrdup((const char *)sqlite3_column_text(st, 0));
		(*v)[*n] = NULL;
	}
	sqlite3_finalize(st);
	return rc;
}

int
store_probe(sqlite3 *db)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM signing_keys", -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st) == SQLITE_ROW ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
	}
	return rc;
}

int
store_user_get(sqlite3 *db, const char *login, struct store_user *u)
{
	sqlite3_stmt *st;
	int rc;

	memset(u, 0, sizeof(*u));
	if (sqlite3_prepare_v2(db, "SELECT user_id, login, password_hash FROM users WHERE login = ?1",
	    -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		u->user_id = sqlite3_column_int64(st, 0);
		u->login = xstrdup((const char *)sqlite3_column_text(st, 1));
		u->password_hash = xstrdup((const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return -1;
	if (read_addresses(db, u->login, &u->addresses, &u->naddresses) != SQLITE_DONE) {
		store_user_free(u);
		return -1;
	}
	return 1;
}

int
store_login_addresses(sqlite3 *db, const char *login, char ***addresses_r)
{
	char **v = NULL;
	size_t n = 0;

	if (read_addresses(db, login, &v, &n) != SQLITE_DONE) {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return -1;
	}
	*addresses_r = v ? v : xcalloc(1, sizeof(char *));
	return 0;
}

int
store_user_add(sqlite3 *db, const char *login, const char *hash, char *err, size_t errlen)
{
	char now[24], exists[400];

	now_text(now);
	snprintf(exists, sizeof(exists), "user %s already exists", login);
	const char *p[] = { login, hash, now };
	return exec_insert(db, "INSERT INTO users (login, password_hash, created_at, updated_at) "
	    "VALUES (?1, ?2, ?3, ?3)", 3, p, exists, NULL, err, errlen);
}

int
store_user_passwd(sqlite3 *db, const char *login, const char *hash, char *err, size_t errlen)
{
	char now[24], none[400];

	now_text(now);
	snprintf(none, sizeof(none), "no user %s", login);
	const char *p[] = { login, hash, now };
	return exec_change(db, "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE login = ?1", 3, p,
	    none, err, errlen);
}

int
store_user_del(sqlite3 *db, const char *login, char *err, size_t errlen)
{
	char none[400];
	const char *p[] = { login };

	snprintf(none, sizeof(none), "no user %s", login);
	return exec_change(db, "DELETE FROM users WHERE login = ?1", 1, p, none, err, errlen);
}

int
store_address_add(sqlite3 *db, const char *login, const char *address, bool need_user, char *err, size_t errlen)
{
	char exists[800];
	int rc, n = 0;
	const char *p[] = { login, address, need_user ? "1" : "0" };

	snprintf(exists, sizeof(exists), "address %s already belongs to a user", address);
	/* A login with a users row keeps its stored spelling. */
	rc = exec_insert(db, "INSERT INTO login_addresses (address, login) "
	    "SELECT ?2, coalesce((SELECT login FROM users WHERE login = ?1), ?1) "
	    "WHERE ?3 = '0' OR EXISTS (SELECT 1 FROM users WHERE login = ?1)", 3, p, exists, &n, err, errlen);
	if (rc != 0)
		return rc;
	if (n == 0) {
		snprintf(err, errlen, "no user %s", login);
		return 1;
	}
	return 0;
}

int
store_address_del(sqlite3 *db, const char *login, const char *address, char *err, size_t errlen)
{
	char none[800];
	const char *p[] = { login, address };

	snprintf(none, sizeof(none), "user %s has no address %s", login, address);
	return exec_change(db, "DELETE FROM login_addresses WHERE address = ?2 AND login = ?1", 2, p, none,
	    err, errlen);
}

int64_t
store_time_parse(const char *s)
{
	struct tm tm;

	if (s == NULL)
		return 0;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%d-%d-%d %d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	    &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm);
}

int
store_keys_load(sqlite3 *db, struct keyring *ring)
{
	sqlite3_stmt *st;
	int rc;

	keyring_free(ring);
	keyring_init(ring);
	if (sqlite3_prepare_v2(db, "SELECT key_id, public_key, secret_key, state, created_at, retired_at "
	    "FROM signing_keys ORDER BY created_at", -1, &st, NULL) != SQLITE_OK)
		return -1;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct token_key k;
		memset(&k, 0, sizeof(k));
		if (sqlite3_column_bytes(st, 1) != PASETO_PK_BYTES)
			continue;
		snprintf(k.kid, sizeof(k.kid), "%s", (const char *)sqlite3_column_text(st, 0));
		memcpy(k.pk, sqlite3_column_blob(st, 1), PASETO_PK_BYTES);
		if (sqlite3_column_bytes(st, 2) == PASETO_SK_BYTES) {
			memcpy(k.sk, sqlite3_column_blob(st, 2), PASETO_SK_BYTES);
			k.has_secret = true;
		}
		k.state = strcmp((const char *)sqlite3_column_text(st, 3), "active") == 0 ?
		    TOKEN_KEY_ACTIVE : TOKEN_KEY_RETIRED;
		k.created_at = store_time_parse((const char *)sqlite3_column_text(st, 4));
		k.retired_at = store_time_parse((const char *)sqlite3_column_text(st, 5));
		keyring_add(ring, &k);
		sodium_memzero(&k, sizeof(k));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

int
store_keys_init(sqlite3 *db, struct store_keys *k, char *err, size_t errlen)
{
	keyring_init(&k->ring);
	k->seen_version = -1;
	if (sqlite3_prepare_v3(db, "PRAGMA data_version", -1, SQLITE_PREPARE_PERSISTENT, &k->data_version,
	    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

/* An empty ring is always worth another look: a failed load may have left
 * it so, and a key may have been made since by this very connection (its
 * own commits do not change data_version). */
int
store_keys_refresh(sqlite3 *db, struct store_keys *k)
{
	int64_t v = -1;

	if (sqlite3_step(k->data_version) == SQLITE_ROW)
		v = sqlite3_column_int64(k->data_version, 0);
	sqlite3_reset(k->data_version);
	if (v == k->seen_version && k->ring.n > 0)
		return 0;
	if (store_keys_load(db, &k->ring) == -1) {
		k->seen_version = -1;
		return -1;
	}
	k->seen_version = v;
	return 1;
}

void
store_keys_free(struct store_keys *k)
{
	sqlite3_finalize(k->data_version);
	k->data_version = NULL;
	keyring_free(&k->ring);
}

int
store_key_insert(sqlite3 *db, const struct token_key *k, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	char created[24];
	int rc;

	store_time(k->created_at * 1000, created);
	if (sqlite3_prepare_v2(db, "INSERT INTO signing_keys (key_id, public_key, secret_key, state, created_at) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_text(st, 1, k->kid, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, k->pk, PASETO_PK_BYTES, SQLITE_STATIC);
	if (k->has_secret)
		sqlite3_bind_blob(st, 3, k->sk, PASETO_SK_BYTES, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, k->state == TOKEN_KEY_ACTIVE ? "active" : "retired", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, created, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

int
store_key_retire(sqlite3 *db, const char *kid, int64_t now, char *err, size_t errlen)
{
	char t[24], none[200];

	store_time(now * 1000, t);
	snprintf(none, sizeof(none), "no active key %s", kid);
	const char *p[] = { kid, t };
	return exec_change(db, "UPDATE signing_keys SET state = 'retired', retired_at = ?2 "
	    "WHERE key_id = ?1 AND state = 'active'", 2, p, none, err, errlen);
}

int
store_key_rotate(sqlite3 *db, int64_t now, struct token_key *k, char *err, size_t errlen)
{
	char t[24];

	store_time(now * 1000, t);
	token_key_generate(k, now);
	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	const char *p[] = { t };
	if (exec_text(db, "UPDATE signing_keys SET state = 'retired', retired_at = ?1 WHERE state = 'active'",
	    1, p, NULL) != SQLITE_DONE || store_key_insert(db, k, err, errlen) == -1 ||
	    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		if (err[0] == '\0')
			snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 0;
}

int
store_key_ensure(sqlite3 *db, int64_t now, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	struct token_key k;
	int rc, have = 0;

	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM signing_keys WHERE state = 'active'", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			have = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	if (have > 0) {
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		return 0;
	}
	token_key_generate(&k, now);
	rc = store_key_insert(db, &k, err, errlen);
	sodium_memzero(&k, sizeof(k));
	if (rc == -1 || sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		if (rc != -1)
			snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return 1;
}

int
store_token_revoke(sqlite3 *db, const char *jti, int64_t ms, char *err, size_t errlen)
{
	char t[24], none[200];

	store_time(ms, t);
	snprintf(none, sizeof(none), "no token %s", jti);
	const char *p[] = { jti, t };
	return exec_change(db, "UPDATE tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE token_id = ?1", 2, p,
	    none, err, errlen);
}

int
store_message_revoke(sqlite3 *db, const char *public_id, int64_t ms, int *count_r, char *err, size_t errlen)
{
	char t[24];
	int rc, n = 0;

	store_time(ms, t);
	const char *p[] = { public_id, t };
	rc = exec_text(db, "UPDATE tokens SET revoked_at = ?2 WHERE revoked_at IS NULL AND "
	    "message_id = (SELECT message_id FROM messages WHERE public_id = ?1)", 2, p, &n);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	*count_r = n;
	return 0;
}

static int
token_lookup(struct store_token_check *k, const char *jti)
{
	struct store_token_info *out = &k->info;
	sqlite3_stmt *st = *k->stmt;
	int rc;

	store_token_info_free(out);
	if (st == NULL) {
		if (sqlite3_prepare_v3(k->db,
		    "SELECT m.message_id, m.public_id, m.received_at, m.envelope_from, m.size, m.sha256, t.address, "
		    "t.role, m.body_id IS NOT NULL, "
		    "t.revoked_at IS NOT NULL "
		    "FROM tokens t JOIN messages m USING (message_id) WHERE t.token_id = ?1", -1,
		    SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
			return -1;
		*k->stmt = st;
	}
	sqlite3_bind_text(st, 1, jti, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		out->message_id = sqlite3_column_int64(st, 0);
		snprintf(out->public_id, sizeof(out->public_id), "%s", sqlite3_column_text(st, 1));
		snprintf(out->received_at, sizeof(out->received_at), "%s", sqlite3_column_text(st, 2));
		out->envelope_from = xstrdup((const char *)sqlite3_column_text(st, 3));
		out->size = sqlite3_column_int64(st, 4);
		snprintf(out->sha256, sizeof(out->sha256), "%s", sqlite3_column_text(st, 5));
		out->address = xstrdup((const char *)sqlite3_column_text(st, 6));
		snprintf(out->role, sizeof(out->role), "%s", sqlite3_column_text(st, 7));
		out->has_body = sqlite3_column_int(st, 8) != 0;
		out->revoked = sqlite3_column_int(st, 9) != 0;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

bool
store_token_check_revoked(const char *jti, void *ctx)
{
	struct store_token_check *k = ctx;

	k->found = token_lookup(k, jti);
	k->looked = true;
	/* Cannot tell (-1): refuse. Not on record (0): finish decides. */
	return k->found == -1 || (k->found == 1 && k->info.revoked);
}

enum token_status
store_token_check_finish(struct store_token_check *k, enum token_status st, const char *jti)
{
	if (st != TOKEN_VALID)
		return st;
	if (!k->looked && store_token_check_revoked(jti, k))
		return TOKEN_REVOKED;
	if (k->found == 1)
		return k->info.revoked ? TOKEN_REVOKED : TOKEN_VALID;
	/* Signed by us but no longer on record: retention purged it. */
	return k->found == 0 ? TOKEN_EXPIRED : TOKEN_REVOKED;
}

void
store_token_info_free(struct store_token_info *i)
{
	free(i->envelope_from);
	free(i->address);
	memset(i, 0, sizeof(*i));
}

int
store_service_add(sqlite3 *db, const char *name, const char *secret_sha256, char *err, size_t errlen)
{
	char now[24], exists[200];

	now_text(now);
	snprintf(exists, sizeof(exists), "service %s already exists", name);
	const char *p[] = { name, secret_sha256, now };
	return exec_insert(db, "INSERT INTO services (name, secret_sha256, created_at) VALUES (?1, ?2, ?3)", 3, p,
	    exists, NULL, err, errlen);
}

int
store_service_del(sqlite3 *db, const char *name, char *err, size_t errlen)
{
	char none[200];
	const char *p[] = { name };

	snprintf(none, sizeof(none), "no service %s", name);
	return exec_change(db, "DELETE FROM services WHERE name = ?1", 1, p, none, err, errlen);
}

int
store_service_find(sqlite3 *db, const char *secret_sha256, char *name, size_t namelen)
{
	sqlite3_stmt *st;
	int rc, found = 0;

	if (sqlite3_prepare_v2(db, "SELECT name, secret_sha256 FROM services WHERE secret_sha256 = ?1",
	    -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, secret_sha256, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	/* The index finds the row; the final word is a constant-time compare
	 * of the whole hash, as for every secret. */
	if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 1) == 64 &&
	    sodium_memcmp(sqlite3_column_text(st, 1), secret_sha256, 64) == 0) {
		snprintf(name, namelen, "%s", sqlite3_column_text(st, 0));
		found = 1;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return -1;
	return found;
}
