/*
 * queue.h: the relay's statements. The queue is the recipients table
 * (docs/relay.md, docs/schema.md): a message is due while one of its
 * recipients is 'queued', or 'deferred' with next_attempt_at in the past.
 * These functions find due work, read a stored body for sending, write a
 * try's results and queue a bounce. They take the connection they run on
 * and never start a transaction: the daemon calls them from writer jobs
 * (db/writer.h), on the writer thread, so that the event loop never waits
 * for the disk. Nothing here knows about SMTP or the DSN format.
 */
#ifndef SUBMITD_QUEUE_H
#define SUBMITD_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "server/base/util.h"

/* Where one recipient stands during a try. PENDING and ACCEPTED are the
 * relay's in-progress states; queue_record writes them as deferred, due
 * again at once (no retry time, no lifetime check). */
enum queue_result { QUEUE_PENDING = 0, QUEUE_ACCEPTED, QUEUE_DELIVERED, QUEUE_DEFERRED, QUEUE_FAILED };

struct queue_rcpt {
	int64_t id;                   /* recipients.recipient_id */
	char *address;
	enum queue_result result;
	char *reply;                  /* the reply or reason to store; NULL: none yet */
	bool recorded;                /* queue_record changed its row */
};

/* A message with its due recipients, in RCPT order: one try's work. */
struct queue_task {
	int64_t message_id;
	char public_id[32];
	char received_at[32];
	char *sender, *helo, *client, *auth_login, *body_type;
	bool smtputf8;
	int64_t size;
	bool has_body;                /* false: retention purged it */
	char *prepend;                /* header fields to send first (DKIM), or NULL */
	struct queue_rcpt *rcpts;
	size_t nrcpt;
	struct queue_task *next;      /* the owner's lists */
};

void queue_task_free(struct queue_task **tp);

/*
 * Due messages, oldest first (unrouted recipients and the mail of a
 * disabled login are held, not due): at most limit rows are looked at, ids in
 * skip[] (messages already being delivered) are passed over, and the scan
 * stops once want messages with a stored body were found. Messages whose
 * due recipients vanished meanwhile are left out. The tasks come back
 * linked by next in *list_r. SQLITE_OK, or the error code with err set
 * (what was found before the error is still returned).
 */
int queue_scan(sqlite3 *db, int64_t now_ms, const int64_t *skip, size_t nskip, size_t limit, size_t want,
    struct queue_task **list_r, char *err, size_t errlen);

/* Read n octets of a message's stored body from offset off into buf.
 * SQLITE_OK or the error code with err set. */
int queue_body_read(sqlite3 *db, int64_t message_id, int64_t off, void *buf, size_t n, char *err, size_t errlen);

/* The first octets (at most max) of a stored body, for a bounce's copy of
 * the headers: a new buffer with *len_r octets, or NULL without a body. */
char *queue_body_head(sqlite3 *db, int64_t message_id, size_t max, size_t *len_r);

/* How long a deferred recipient waits after its attempts-th try (seconds). */
typedef int64_t (*queue_backoff_fn)(int attempts, void *arg);

/*
 * Write one try's results: each recipient still pending (an administrator
 * may have dropped it meanwhile: that stands) counts an attempt and becomes
 * delivered, failed, or deferred until now + backoff(attempts). A deferred
 * recipient of a message received lifetime seconds or more before now
 * fails instead, its reply becoming "lifetime exceeded; last reply: ...".
 * Sets result, reply and recorded of each recipient. SQLITE_OK or an error.
 */
int queue_record(sqlite3 *db, struct queue_task *t, int64_t now, int64_t lifetime, queue_backoff_fn backoff,
    void *arg);

/*
 * Queue a bounce: a message from <> to rcpt, with the given HELO name and
 * content (len octets), a new public id (written to public_id_r), and one
 * queued recipient, in the caller's transaction. SQLITE_OK or an error.
 */
int queue_bounce_insert(sqlite3 *db, const char *rcpt, const char *helo, int64_t now, const char *content,
    size_t len, char public_id_r[PUBLIC_ID_LEN + 1]);

#endif
