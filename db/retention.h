/*
 * retention.h: the purge of old saved copies (docs/relay.md, section 9).
 * A pass deletes the bodies and tokens of finished messages received
 * before a cutoff; the messages and recipients rows stay as history. The
 * daemon runs a pass as a writer job (db/writer.h), in its transaction.
 */
#ifndef SUBMITD_RETENTION_H
#define SUBMITD_RETENTION_H

#include <stdbool.h>
#include <stdint.h>

#include <sqlite3.h>

/*
 * One pass: at most batch messages received before cutoff_ms (unix ms)
 * and, when relay_enabled, with no recipient left queued or deferred
 * (without a relay nothing ever leaves 'queued': the age alone counts).
 * Their tokens rows go and they let go of their bodies (a body shared
 * with a message still kept stays, db/bodies.h), then some freed pages
 * go back to the file system. *purged_r: messages purged. SQLITE_OK or an error.
 */
int retention_purge(sqlite3 *db, int64_t cutoff_ms, int64_t batch, bool relay_enabled, int *purged_r);

#endif
