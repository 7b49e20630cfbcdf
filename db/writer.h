/*
 * writer.h: the one thread that writes messages to SQLite. Sessions hand
 * it accepted messages; it commits as many as are waiting in a single
 * transaction (group commit: one fsync for many messages), stores their
 * tokens in that same transaction, and hands them back. A session answers
 * 250 only for a message that came back with WRITER_OK, i.e. committed.
 *
 * The tokens are signed on a signer thread of the writer's own, at the
 * same time as the message is committed: a token's row needs its id, key
 * and expiry, which writer_submit chooses, not its signature, so the
 * latency of a message is the longer of the two stages rather than their
 * sum. A message comes back when both are done, and a token is handed out
 * only if its row committed with the message.
 *
 * A message may also get header fields to put in front of it when it is
 * relayed (DKIM signatures): writer_opts.prepend computes them on worker
 * threads of the writer (prepend_threads of them), beside the commit, and
 * the writer thread waits for them and stores them in the message's
 * transaction (message_dkim), so the 250 covers them as well.
 *
 * A client whose connection broke before the 250 sends the message
 * again. With writer_opts.dedup_window, a message of the same login with
 * the same Message-ID (writer_opts.message_id reads it), SHA-256 and
 * envelope as one stored within the window is a duplicate: looked up in
 * the transaction that would store it (so a copy in the same batch is one
 * too), it stores nothing, and its tokens, new rows, are for the message
 * already stored (writer_msg.duplicate).
 *
 * The event loop never blocks on the disk: it is told through notify(),
 * called on the writer thread, and then collects finished messages.
 */
#ifndef SUBMITD_WRITER_H
#define SUBMITD_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "server/base/util.h"

enum writer_status {
	WRITER_PENDING = 0,
	WRITER_OK,
	WRITER_FULL,          /* disk or database full: 452 4.3.1 */
	WRITER_IOERR,         /* any other storage failure: 451 4.3.0 */
	WRITER_BUSY,          /* another process holds the write lock: 451 4.3.0 */
};

struct writer_token_meta;

struct writer_msg {
	/* Filled by the submitter; owned by the writer until collected. */
	char public_id[PUBLIC_ID_LEN + 1];
	int64_t received_ms;
	char *auth_login;              /* NULL for a trusted-network client */
	char client_address[64];
	char *helo;
	char *envelope_from;
	const char *body_type;         /* "7BIT", "8BITMIME" or "BINARYMIME" */
	bool smtputf8;
	char **rcpts;                  /* nrcpt addresses, RCPT order */
	size_t nrcpt;
	uint8_t *body;                 /* the whole body in memory, or NULL */
	int spool_fd;                  /* or the body in this file (-1: none) */
	uint64_t size;
	char sha256_hex[65];           /* of the body, computed while it arrived */

	/* Filled by the writer. */
	enum writer_status status;
	char **tokens;                 /* nrcpt + 1 (sender last), or NULL */
	struct writer_token_meta *token_meta;  /* the rows' columns, writer-private */
	uint64_t submitted_us;         /* monotonic clock at writer_submit */
	uint64_t commit_us;            /* submit-to-commit latency */
	char *prepend;                 /* writer_opts.prepend's header fields, or NULL */
	char *header_msgid;            /* the Message-ID's msg-id (writer_opts.message_id), or NULL */
	/* A duplicate (writer_opts.dedup_window) of the stored message that
	 * public_id now names, which the tokens are for; submitted_id is the
	 * id the submitter chose, never stored. */
	bool duplicate;
	char submitted_id[PUBLIC_ID_LEN + 1];

	/* For the submitter: who waits (cleared when it goes away), and on
	 * which of its event loops (the daemon hands m back to that one). */
	void *owner;
	unsigned loop;
	struct writer_msg *next;

	/* Writer-private: the signer's queue, and the stages (signing,
	 * committing) still to finish before the message goes back. */
	struct writer_msg *s_next;
	unsigned pending;
	bool signed_done;
	/* Writer-private: the prepend workers' queue; prepend is final. */
	struct writer_msg *p_next;
	bool prepend_done;
	bool prepend_deferred;         /* waits for the writer's look (prepend_wanted_sql) */
};

struct writer_opts {
	const char *db_path;
	bool tokens;
	int64_t token_lifetime;        /* seconds */
	const char *issuer;
	int batch;                     /* at most this many messages per commit */
	int checkpoint_pages;          /* > 0: checkpoints on a thread (db/checkpoint.h) */
	/* Sent filing (db/sent.h): with sent_jobs, a message submitted with
	 * AUTH gets its filing job in its own transaction, unless the login's
	 * setting, or sent_default for a login without one, says off. */
	bool sent_jobs;
	bool sent_default;
	/* Optional: header fields for m (CRLF-terminated, malloc'd) or NULL,
	 * called for every message on one of prepend_threads worker threads
	 * (thread: 0 .. prepend_threads - 1, for per-thread state); m's body
	 * (body or spool_fd) may be read, nothing written. Stored with it. */
	char *(*prepend)(void *arg, int thread, const struct writer_msg *m);
	void *prepend_arg;
	int prepend_threads;           /* >= 1 with prepend */
	/* Optional, with prepend: a query on the writer's connection whose
	 * first column is 0 when prepend would add nothing to any message
	 * (DKIM: no active key). The writer runs it before each batch; while
	 * it says 0, new messages wait for that look instead of each waking a
	 * prepend worker, and those the look finds nothing for skip them.
	 * NULL: every message goes to the workers. */
	const char *prepend_wanted_sql;
	/* Optional: the msg-id of the Message-ID: field of head (at most
	 * message_id_scan octets of the message's top) into out, its length
	 * or -1 (none: never a duplicate); called on the writer thread. */
	int (*message_id)(const char *head, size_t len, char *out, size_t outlen);
	size_t message_id_scan;
	size_t message_id_max;         /* the longest msg-id message_id returns */
	/* > 0: a message is a duplicate of one stored within this many
	 * seconds (submit.dedup_window); needs message_id. */
	int64_t dedup_window;
	/* No next hop (relay.host empty): recipients are stored unrouted, and
	 * the relay leaves them until `submitctl queue release`. */
	bool unrouted;
	void (*notify)(void *arg);     /* called on the writer thread */
	void *notify_arg;
};

struct writer;

struct writer *writer_start(const struct writer_opts *o, char *err, size_t errlen);
/* Queue a message; the writer owns it until writer_collect returns it. */
void writer_submit(struct writer *w, struct writer_msg *m);
/* Take every finished message (a list linked by next), oldest first. */
struct writer_msg *writer_collect(struct writer *w);
/* Record an API event in audit_log; committed with the next batch, no
 * answer. Strings are copied; service and token_id may be NULL. */
void writer_audit(struct writer *w, const char *action, const char *result, const char *service,
    const char *token_id, const char *client_address);

/* Any other write: run() is called on the writer thread inside a
 * transaction of its own; a return other than SQLITE_OK rolls it back.
 * done() is called on the loop thread (writer_collect_jobs) with the final
 * code, after the commit. The job is the caller's, untouched but for rc. */
struct writer_job {
	int (*run)(sqlite3 *db, void *arg);
	void (*done)(struct writer_job *job);
	void *arg;
	int rc;
	struct writer_job *next;
};
void writer_job_submit(struct writer *w, struct writer_job *job);
struct writer_job *writer_collect_jobs(struct writer *w);

/* Wait until everything submitted has been run and posted for
 * collection (shutdown: so that the owners can collect it). */
void writer_flush(struct writer *w);

/* Messages queued and not yet committed. */
size_t writer_depth(struct writer *w);
/* Commit everything queued, stop the thread, free w, set *wp = NULL. */
void writer_stop(struct writer **wp);

struct writer_msg *writer_msg_new(void);
void writer_msg_free(struct writer_msg **mp);

#endif
