/*
 * admin.h: what submitctl does to the database beyond the store's shared
 * statements (store.h) and the listings (overview.h): it checks a token
 * the way the API does, copies a stored body out, moves recipients of the
 * relay queue, and takes an online backup. Each returns -1 with a message
 * in err on a database error.
 */
#ifndef SUBMITD_ADMIN_H
#define SUBMITD_ADMIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <sqlite3.h>

#include "db/store.h"
#include "tokens/token.h"

/* Verify token (bound to address unless NULL) against the keys in db at
 * time now, with the record of revocations: the status in *st_r, the
 * claims in c_r (zeroed first) and what the token refers to in info_r
 * (for store_token_info_free). 0, or -1 when the keys cannot be read. */
int admin_token_verify(sqlite3 *db, const char *token, const char *address, int64_t now,
    enum token_status *st_r, struct token_claims *c_r, struct store_token_info *info_r,
    char *err, size_t errlen);

/* Write the size octets of the stored body of message_id to out. 0 or -1
 * ("read or write failed" when out refuses). */
int admin_body_write(sqlite3 *db, int64_t message_id, int64_t size, FILE *out, char *err, size_t errlen);

/* The deferred recipients of a message (public id) are due now; the number
 * of recipients changed, or -1. */
int admin_queue_retry(sqlite3 *db, const char *public_id, int64_t now_ms, char *err, size_t errlen);
/* The queued and deferred recipients of a message fail, without a bounce;
 * the number changed, or -1. */
int admin_queue_drop(sqlite3 *db, const char *public_id, int64_t now_ms, char *err, size_t errlen);

/* Purge a message (public id) now, as retention would: its tokens go and
 * it lets go of its body, which goes too unless another message shares it
 * (db/bodies.h); the messages and recipients rows stay. One transaction.
 * 0 purged, 1 no such message or already purged, 2 refused: recipients
 * still queued or deferred (queue drop first), -1 error. */
int admin_message_purge(sqlite3 *db, const char *public_id, char *err, size_t errlen);

/* A consistent copy of the database at path (created 0600), taken while
 * the daemon goes on writing. 0 or -1. */
int admin_backup(sqlite3 *db, const char *path, char *err, size_t errlen);

#endif
