/*
 * bodies.c: see bodies.h.
 */
#include "db/bodies.h"

#include <stdio.h>

const char bodies_find_sql[] = "SELECT body_id FROM bodies WHERE sha256 = ?1";
const char bodies_insert_sql[] = "INSERT INTO bodies (sha256, content) VALUES (?1, ?2)";
const char bodies_insert_zero_sql[] = "INSERT INTO bodies (sha256, content) VALUES (?1, zeroblob(?2))";

int
bodies_open(sqlite3 *db, int64_t message_id, sqlite3_blob **blob_r, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	sqlite3_int64 body_id = 0;
	int rc;

	*blob_r = NULL;
	rc = sqlite3_prepare_v2(db, "SELECT body_id FROM messages WHERE message_id = ?1 AND body_id IS NOT NULL",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_int64(st, 1, message_id);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		body_id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		rc = sqlite3_blob_open(db, "main", "bodies", "content", body_id, 0, blob_r);
	if (rc == SQLITE_DONE) {
		if (err)
			snprintf(err, errlen, "message %lld has no stored body (purged)", (long long)message_id);
		return SQLITE_ERROR;
	}
	if (rc != SQLITE_OK && err)
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
	return rc;
}

int
bodies_put(sqlite3 *db, const char *sha256_hex, const void *content, size_t len, int64_t *body_id_r)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, bodies_find_sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_text(st, 1, sha256_hex, 64, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*body_id_r = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc == SQLITE_ROW)
		return SQLITE_OK;
	if (rc != SQLITE_DONE)
		return rc;
	rc = sqlite3_prepare_v2(db, bodies_insert_sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_text(st, 1, sha256_hex, 64, SQLITE_STATIC);
	sqlite3_bind_blob64(st, 2, len > 0 ? content : "", len, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return rc;
	*body_id_r = sqlite3_last_insert_rowid(db);
	return SQLITE_OK;
}
