/*
 * writer_internal.h: what the files of the writer share; db/writer.h says
 * what the writer does. writer.c runs the thread, its queues and passes,
 * jobs, start and stop; writer_store.c controls transactions and writes
 * messages (rows, bodies, tokens); writer_signer.c signs tokens on the
 * signer thread and follows the key ring; writer_prepend.c runs the
 * workers of writer_opts.prepend (DKIM signatures); writer_audit.c writes
 * the API's audit rows. Nothing here is for the rest of the daemon.
 */
#ifndef SUBMITD_WRITER_INTERNAL_H
#define SUBMITD_WRITER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "db/store.h"
#include "db/writer.h"
#include "server/base/workq.h"
#include "tokens/token.h"

#define BODY_CHUNK (256 * 1024)
/* Audit rows whose commit failed (the database locked by another
 * process, the disk full) are kept, at most this many, and tried again
 * at least this often. */
#define AUDIT_KEEP_MAX 10000
#define AUDIT_RETRY_S 1

/* The prepared statements (writer_store_prepare). */
enum {
	ST_MESSAGE, ST_BODY_FIND, ST_BODY, ST_BODY_ZERO, ST_DUP_FIND, ST_DUP_RCPTS, ST_RCPT, ST_TOKEN, ST_AUDIT, ST_SENT_JOB, ST_PREPEND,
	ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_SAVEPOINT, ST_RELEASE, ST_ROLLBACK_TO,
	ST_COUNT
};

/* What a token's row needs besides the message: its claims, signed with
 * the key the signer had. */
struct writer_token_meta {
	char jti[TOKEN_ID_LEN + 1];
	char kid[PASERK_K4_PID_LEN + 1];
	int64_t exp;
};

struct audit_entry {
	char at[24];
	char *action, *result, *service, *token_id, *client;
	struct audit_entry *next;
};

struct writer {
	struct writer_opts o;
	char *db_path, *issuer;
	sqlite3 *db;
	sqlite3_stmt *st[ST_COUNT];
	struct checkpointer *ckpt;              /* NULL: SQLite's own checkpoints */
	struct store_keys keys;                 /* the ring, reloaded when submitctl changes it */
	uint8_t *chunk;

	pthread_t thread;
	pthread_mutex_t lock;                   /* of every queue, and of the fields below */
	pthread_cond_t cond;                    /* work for the writer thread */
	struct workq msgs;                      /* waiting to be committed (next) */

	/* The signer thread: when tokens are on, a message goes to it and to
	 * the writer's queue at once. writer_submit names the key (the active
	 * one the writer thread last published) and picks each token's id and
	 * expiry; the signer signs with that key, the writer stores the rows.
	 * The key before the active one is kept for a message submitted just
	 * before a rotation was seen. */
	pthread_t signer;
	bool signer_started;
	pthread_cond_t sign_cond;
	pthread_cond_t signed_cond;             /* a list of messages was signed */
	struct workq to_sign;                   /* waiting to be signed (s_next) */
	struct token_key active;                /* has_secret false: no signing key */
	struct token_key previous;
	bool signing;                           /* the signer holds messages */

	/* The prepend workers (writer_opts.prepend): a message goes to them
	 * too; the writer thread waits for its prepend_done before it stores
	 * the fields, and before it frees the body they read. */
	pthread_t *preppers;
	int npreppers;                          /* started */
	pthread_cond_t prep_cond;               /* work for a prepend worker */
	pthread_cond_t prepended_cond;          /* a message's prepend is done */
	struct workq to_prepend;                /* waiting (p_next) */
	/* The last look (writer_opts.prepend_wanted_sql) found nothing to
	 * prepend: writer_submit defers new messages to the next look. */
	bool prepend_skip;
	sqlite3_stmt *prepend_wanted;           /* writer thread; NULL: no look */

	struct workq done;                      /* messages done, to collect */
	struct workq audits;                    /* audit rows to insert */
	struct workq jobs;                      /* jobs to run */
	struct workq jobs_done;                 /* jobs run, to collect */
	size_t depth;
	bool stopping;
	bool busy;                              /* work taken, results not yet posted */

	/* writer thread only */
	struct audit_entry *a_retry;            /* rows whose commit failed, oldest first */
	bool audit_deferred;                    /* the last audit commit failed, rows kept */
	bool locked;                            /* the last BEGIN found the database locked */
	uint64_t locked_since_us;
	unsigned locked_refusals;               /* BEGINs refused since */
};

/* writer.c: a stage of m is done; the last hands it back (lock held). */
bool writer_stage_done_locked(struct writer *w, struct writer_msg *m);

/* writer_store.c: on the writer thread. */
/* Prepare every statement of w->st. 0, or -1 with err. */
int writer_store_prepare(struct writer *w, char *err, size_t errlen);
/* Run one of the transaction statements (ST_BEGIN ... ST_ROLLBACK_TO):
 * SQLITE_OK or SQLite's code. */
int writer_tx(struct writer *w, int which);
/* BEGIN IMMEDIATE for `what` (messages, job, audit), logging a lock held
 * by another process once. SQLITE_OK or SQLite's code. */
int writer_begin(struct writer *w, const char *what);
/* The last error of w->db as key=value text for a log line, in buf. */
const char *writer_db_error(struct writer *w, char *buf, size_t len);
/* Store a batch (linked by next) in one transaction; sets each status. */
void writer_commit_batch(struct writer *w, struct writer_msg *batch);

/* writer_signer.c */
/* Reload the key ring if the database changed; writer thread. */
void writer_refresh_keys(struct writer *w);
/* The claims of m's tokens (ids, expiry), no key named yet. */
struct writer_token_meta *writer_claim_tokens(const struct writer *w, const struct writer_msg *m);
void writer_name_key(struct writer_token_meta *meta, size_t n, const char *kid);
/* Sign m's claimed tokens with key into m->tokens (NULL on a failure). */
void writer_sign_tokens(struct writer *w, struct writer_msg *m, const struct token_key *key);
/* Wait until the signer is done with m (writer thread). */
void writer_wait_signed(struct writer *w, struct writer_msg *m);
/* Start and stop the signer thread. 0 or -1. */
int writer_signer_start(struct writer *w);
void writer_signer_stop(struct writer *w);

/* writer_prepend.c */
/* Start writer_opts.prepend_threads workers (0 or -1), stop them after
 * they drained their queue, wait for m's fields (writer thread). */
int writer_prepend_start(struct writer *w);
void writer_prepend_stop(struct writer *w);
void writer_wait_prepended(struct writer *w, struct writer_msg *m);
/* Before a batch, on the writer thread: look whether prepend has work,
 * and hand the batch's deferred messages to the workers or mark them
 * done with nothing. */
void writer_prepend_look(struct writer *w, struct writer_msg *batch);

/* writer_audit.c: on the writer thread. */
/* The rows to insert this pass: those kept from a failed commit first,
 * then the new ones. Called with the lock held. */
struct audit_entry *writer_audits_take_locked(struct writer *w);
void writer_insert_audits(struct writer *w, struct audit_entry *list, bool last_try);

#endif
