/*
 * admin.c: see admin.h. The queue changes are single UPDATEs that the
 * relay sees at its next scan of the queue (within relay.poll_interval):
 * it reads state and next_attempt_at afresh, so no signal is needed.
 */
#include "db/admin.h"

#include <string.h>
#include <sys/stat.h>

#include "db/bodies.h"

int
admin_token_verify(sqlite3 *db, const char *token, const char *address, int64_t now,
    enum token_status *st_r, struct token_claims *c_r, struct store_token_info *info_r,
    char *err, size_t errlen)
{
	struct keyring ring;
	sqlite3_stmt *stmt = NULL;
	struct store_token_check k = { .db = db, .stmt = &stmt };
	enum token_status st;

	memset(c_r, 0, sizeof(*c_r));
	keyring_init(&ring);
	if (store_keys_load(db, &ring) == -1) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		keyring_free(&ring);
		return -1;
	}
	st = token_verify(token, strlen(token), &ring, now, address, store_token_check_revoked, &k, c_r);
	*st_r = store_token_check_finish(&k, st, c_r->jti);
	*info_r = k.info;
	sqlite3_finalize(stmt);
	keyring_free(&ring);
	return 0;
}

int
admin_body_write(sqlite3 *db, int64_t message_id, int64_t size, FILE *out, char *err, size_t errlen)
{
	static unsigned char buf[64 * 1024];
	sqlite3_blob *blob = NULL;

	if (bodies_open(db, message_id, &blob, err, errlen) != SQLITE_OK)
		return -1;
	for (int64_t off = 0; off < size;) {
		int n = (int)(size - off < (int64_t)sizeof(buf) ? size - off : (int64_t)sizeof(buf));
		if (sqlite3_blob_read(blob, buf, n, (int)off) != SQLITE_OK || fwrite(buf, 1, (size_t)n, out) != (size_t)n) {
			sqlite3_blob_close(blob);
			snprintf(err, errlen, "read or write failed");
			return -1;
		}
		off += n;
	}
	sqlite3_blob_close(blob);
	return 0;
}

/* ?1 the public id, ?2 the time now as stored. */
static int
queue_update(sqlite3 *db, const char *sql, const char *public_id, int64_t now_ms, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	char now[24];

	store_time(now_ms, now);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return -1;
	}
	sqlite3_finalize(st);
	return sqlite3_changes(db);
}

int
admin_queue_retry(sqlite3 *db, const char *public_id, int64_t now_ms, char *err, size_t errlen)
{
	return queue_update(db, "UPDATE recipients SET next_attempt_at = NULL, updated_at = ?2 "
	    "WHERE state = 'deferred' AND message_id = (SELECT message_id FROM messages WHERE public_id = ?1)",
	    public_id, now_ms, err, errlen);
}

int
admin_queue_drop(sqlite3 *db, const char *public_id, int64_t now_ms, char *err, size_t errlen)
{
	return queue_update(db, "UPDATE recipients SET state = 'failed', last_reply = 'dropped by the "
	    "administrator', updated_at = ?2 WHERE state IN ('queued', 'deferred') AND "
	    "message_id = (SELECT message_id FROM messages WHERE public_id = ?1)", public_id, now_ms, err, errlen);
}

int
admin_message_purge(sqlite3 *db, const char *public_id, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	sqlite3_int64 id = 0;
	int rc = -1, step, pending = 0;

	if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	if (sqlite3_prepare_v2(db, "SELECT m.message_id, EXISTS (SELECT 1 FROM recipients r WHERE "
	    "r.message_id = m.message_id AND r.state IN ('queued', 'deferred')) FROM messages m "
	    "WHERE m.public_id = ?1 AND m.body_id IS NOT NULL", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW) {
		id = sqlite3_column_int64(st, 0);
		pending = sqlite3_column_int(st, 1);
	} else if (step != SQLITE_DONE) {
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (id == 0 || pending) {
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return id == 0 ? 1 : 2;
	}
	/* the same two statements as retention (db/retention.c) */
	if (sqlite3_prepare_v2(db, "DELETE FROM tokens WHERE message_id = ?1", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	if (sqlite3_prepare_v2(db, "UPDATE messages SET body_id = NULL WHERE message_id = ?1", -1, &st, NULL) != SQLITE_OK)
		goto fail;
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) != SQLITE_DONE)
		goto fail;
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "%s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* SQLite's online backup: a consistent snapshot while the daemon writes. */
int
admin_backup(sqlite3 *db, const char *path, char *err, size_t errlen)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	int rc;

	if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		sqlite3_close(dst);
		snprintf(err, errlen, "cannot create %s", path);
		return -1;
	}
	b = sqlite3_backup_init(dst, "main", db, "main");
	if (b == NULL) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(dst));
		sqlite3_close(dst);
		return -1;
	}
	/* One step for the whole file: a copy in small steps starts over each
	 * time the daemon commits in between, and may never finish on a busy
	 * server. In WAL mode the one read transaction blocks no writer. */
	do {
		rc = sqlite3_backup_step(b, -1);
		if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
			sqlite3_sleep(50);
	} while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
	sqlite3_backup_finish(b);
	sqlite3_close(dst);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "backup failed: %s", sqlite3_errstr(rc));
		return -1;
	}
	chmod(path, 0600);
	return 0;
}
