/*
 * bodies.h: the stored bodies, one row per distinct content (migration 8,
 * docs/schema.md). A message points at its body by body_id; identical
 * bodies, told apart by their SHA-256, are stored once. A body's
 * references are the messages that point at it (counted on the index
 * messages_body, view body_overview); triggers delete the body when the
 * last of them is deleted or lets go of it (body_id set to NULL: a
 * purge), in the same transaction. So a writer only finds or inserts the
 * body and then inserts the message that points at it; a body inserted
 * for a message that then fails goes with the rollback.
 * Every reader of a stored body opens it here, by message.
 */
#ifndef SUBMITD_BODIES_H
#define SUBMITD_BODIES_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

/* ?1 sha256 (hex): the row of that content, if stored. */
extern const char bodies_find_sql[];
/* ?1 sha256, ?2 content: a new body, for the message inserted next. */
extern const char bodies_insert_sql[];
/* ?1 sha256, ?2 size: a new body of zeros, to fill with blob writes. */
extern const char bodies_insert_zero_sql[];

/* Open the body of message message_id for reading (sqlite3_blob_open).
 * SQLITE_OK, or an error code with the reason in err (if not NULL); a
 * message without a body (purged, or no such message) is SQLITE_ERROR. */
int bodies_open(sqlite3 *db, int64_t message_id, sqlite3_blob **blob_r, char *err, size_t errlen);

/* Find the body with this SHA-256, or insert content under it:
 * *body_id_r for the message row that will point at it. SQLITE_OK or an
 * error code. No transaction of its own. */
int bodies_put(sqlite3 *db, const char *sha256_hex, const void *content, size_t len, int64_t *body_id_r);

#endif
