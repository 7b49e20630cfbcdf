/*
 * retention.c: see retention.h.
 */
#include "db/retention.h"

#include "db/store.h"

int
retention_purge(sqlite3 *db, int64_t cutoff_ms, int64_t batch, bool relay_enabled, int *purged_r)
{
	sqlite3_stmt *sel, *dt, *db_;
	char cutoff[24];
	int rc = SQLITE_OK;

	*purged_r = 0;
	store_time(cutoff_ms, cutoff);
	if (sqlite3_prepare_v2(db, "SELECT m.message_id FROM messages m "
	    "WHERE m.received_at < ?1 AND m.body_id IS NOT NULL AND (?3 = 0 OR NOT EXISTS (SELECT 1 FROM recipients r "
	    "WHERE r.message_id = m.message_id AND r.state IN ('queued', 'deferred'))) LIMIT ?2", -1, &sel, NULL) != SQLITE_OK)
		return SQLITE_ERROR;
	if (sqlite3_prepare_v2(db, "DELETE FROM tokens WHERE message_id = ?1", -1, &dt, NULL) != SQLITE_OK) {
		sqlite3_finalize(sel);
		return SQLITE_ERROR;
	}
	/* The message lets go of its body; the triggers of migration 8
	 * (db/bodies.h) delete the body with its last reference. */
	if (sqlite3_prepare_v2(db, "UPDATE messages SET body_id = NULL WHERE message_id = ?1", -1, &db_, NULL) != SQLITE_OK) {
		sqlite3_finalize(sel);
		sqlite3_finalize(dt);
		return SQLITE_ERROR;
	}
	sqlite3_bind_text(sel, 1, cutoff, -1, SQLITE_STATIC);
	sqlite3_bind_int64(sel, 2, batch);
	sqlite3_bind_int(sel, 3, relay_enabled);
	while (rc == SQLITE_OK && sqlite3_step(sel) == SQLITE_ROW) {
		sqlite3_int64 id = sqlite3_column_int64(sel, 0);
		sqlite3_bind_int64(dt, 1, id);
		sqlite3_bind_int64(db_, 1, id);
		if (sqlite3_step(dt) != SQLITE_DONE || sqlite3_step(db_) != SQLITE_DONE)
			rc = SQLITE_ERROR;
		sqlite3_reset(dt);
		sqlite3_reset(db_);
		(*purged_r)++;
	}
	sqlite3_finalize(sel);
	sqlite3_finalize(dt);
	sqlite3_finalize(db_);
	/* Give the freed pages back to the file system, a bounded amount
	 * per pass so that a big purge never holds the writer for long. */
	if (rc == SQLITE_OK && *purged_r > 0)
		sqlite3_exec(db, "PRAGMA incremental_vacuum(4096)", NULL, NULL, NULL);
	return rc;
}
