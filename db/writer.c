/*
 * writer.c: see writer.h. One thread, one connection, prepared statements,
 * and a queue guarded by one mutex. Each message runs inside a SAVEPOINT so
 * that one failing message (say, the disk filling up in the middle of its
 * body) does not take the others of its batch down; a failed COMMIT fails
 * the whole batch, and nobody gets a 250 for it.
 *
 * Another process may hold the database's write lock (an administrator's
 * sqlite3 shell left inside a transaction, a backup tool). BEGIN then waits
 * STORE_BUSY_TIMEOUT_MS and fails with SQLITE_BUSY: the batch is refused
 * (451), and until a BEGIN succeeds again the writer waits only
 * BUSY_RETRY_MS per attempt, so that under a long lock every client gets
 * its 451 within about a second instead of queueing behind 10-second
 * waits. One line is logged when the lock is first seen and one when it
 * is gone.
 */
#include "db/writer.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "db/checkpoint.h"
#include "db/store.h"
#include "server/base/log.h"
#include "server/base/workq.h"
#include "tokens/token.h"

#define BODY_CHUNK (256 * 1024)
#define BUSY_RETRY_MS 1000
/* Audit rows whose commit failed (the database locked by another
 * process, the disk full) are kept, at most this many, and tried again
 * at least this often. */
#define AUDIT_KEEP_MAX 10000
#define AUDIT_RETRY_S 1

enum {
	ST_MESSAGE, ST_BODY, ST_BODY_ZERO, ST_RCPT, ST_TOKEN, ST_AUDIT,
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

static const char *const sql[ST_COUNT] = {
	[ST_MESSAGE] = "INSERT INTO messages (public_id, received_at, auth_login, client_address, helo, "
	    "envelope_from, body_type, smtputf8, size, sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[ST_BODY] = "INSERT INTO message_bodies (message_id, content) VALUES (?1, ?2)",
	[ST_BODY_ZERO] = "INSERT INTO message_bodies (message_id, content) VALUES (?1, zeroblob(?2))",
	[ST_RCPT] = "INSERT INTO recipients (message_id, position, address, updated_at) VALUES (?1, ?2, ?3, ?4)",
	[ST_TOKEN] = "INSERT INTO tokens (token_id, message_id, recipient_id, role, address, key_id, "
	    "issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[ST_AUDIT] = "INSERT INTO audit_log (at, action, result, service, token_id, client_address) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT msg",
	[ST_RELEASE] = "RELEASE msg",
	[ST_ROLLBACK_TO] = "ROLLBACK TO msg",
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

struct writer_msg *
writer_msg_new(void)
{
	struct writer_msg *m = xcalloc(1, sizeof(*m));
	m->spool_fd = -1;
	return m;
}

void
writer_msg_free(struct writer_msg **mp)
{
	struct writer_msg *m = *mp;

	if (m == NULL)
		return;
	free(m->auth_login);
	free(m->helo);
	free(m->envelope_from);
	for (size_t i = 0; i < m->nrcpt; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	free(m->body);
	if (m->spool_fd != -1)
		close(m->spool_fd);
	if (m->tokens) {
		for (size_t i = 0; i <= m->nrcpt; i++)
			free(m->tokens[i]);
		free(m->tokens);
	}
	free(m->token_meta);
	free(m);
	*mp = NULL;
}

/* Tokens signed with a key that is no longer the active one (writer
 * thread, once the signer is done with the message). A message whose rows
 * did not commit hands out no token either: the session looks at the
 * status first, and the strings go with writer_msg_free. */
static void
drop_tokens(struct writer_msg *m)
{
	if (m->tokens) {
		for (size_t i = 0; i <= m->nrcpt; i++)
			free(m->tokens[i]);
		xfreep(&m->tokens);
	}
	xfreep(&m->token_meta);
}

static enum writer_status
classify(int rc)
{
	int primary = rc & 0xff;

	if (primary == SQLITE_FULL)
		return WRITER_FULL;
	return primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? WRITER_BUSY : WRITER_IOERR;
}

/* Whether the data directory takes writes at all, after SQLite reported
 * an I/O failure: NULL, or the system's reason. access(2) sees a file
 * made immutable or read-only; ext4 gone read-only after an error
 * (errors=remount-ro) still looks writable to access(2), so a file is
 * also created and removed beside the database. Neither opens the
 * database file itself, which would drop this process's locks on it. */
static const char *
storage_probe(struct writer *w)
{
	char dir[4096];
	const char *slash = strrchr(w->db_path, '/');
	int e;

	if (access(w->db_path, W_OK) == -1)
		return strerror(errno);
	if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - w->db_path), w->db_path);
	else
		snprintf(dir, sizeof(dir), ".");
	e = dir_probe_write(dir);
	return e ? strerror(e) : NULL;
}

/* SQLite's message alone ("disk I/O error") does not say what to fix:
 * add the extended result code and, after an I/O failure, the cause
 * storage_probe() finds (sqlite3_system_errno() is often a later call's
 * 0 by the time the error reaches us). */
static const char *
db_error(struct writer *w, char *buf, size_t len)
{
	int code = sqlite3_extended_errcode(w->db), primary = code & 0xff;
	const char *cause = NULL;

	if (primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY)
		cause = storage_probe(w);
	snprintf(buf, len, "error=\"%s\" sqlite_code=%d%s%s%s", sqlite3_errmsg(w->db), code,
	    cause ? " cause=\"data directory: " : "", cause ? cause : "", cause ? "\"" : "");
	return buf;
}

/* Transaction control through prepared statements: sqlite3_exec would
 * parse the same five strings for every message. */
static int
tx(struct writer *w, int which)
{
	sqlite3_stmt *st = w->st[which];
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* BEGIN IMMEDIATE, for every kind of work. See the top of this file for
 * what happens while another process holds the write lock. */
static int
begin(struct writer *w, const char *what)
{
	char why[512];
	uint64_t start = mono_us();
	int rc;

	if (w->locked)
		sqlite3_busy_timeout(w->db, BUSY_RETRY_MS);
	rc = tx(w, ST_BEGIN);
	if (w->locked)
		sqlite3_busy_timeout(w->db, STORE_BUSY_TIMEOUT_MS);
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
		if (!w->locked) {
			w->locked = true;
			w->locked_since_us = start;
			w->locked_refusals = 0;
			log_err("event=store_locked what=%s waited_ms=%llu %s note=\"another process holds the "
			    "database write lock; messages are refused with 451 4.3.0 until it is released\"",
			    what, (unsigned long long)((mono_us() - start) / 1000), db_error(w, why, sizeof(why)));
		}
		w->locked_refusals++;
	} else if (rc != SQLITE_OK) {
		log_err("event=store_begin_failed what=%s %s", what, db_error(w, why, sizeof(why)));
	} else if (w->locked) {
		w->locked = false;
		log_info("event=store_unlocked locked_ms=%llu refused=%u", (unsigned long long)
		    ((mono_us() - w->locked_since_us) / 1000), w->locked_refusals);
	}
	return rc;
}

/* Hand the signer the key to sign with from now on (none: no tokens). */
static void
publish_active_key(struct writer *w)
{
	const struct token_key *key = w->o.tokens ? keyring_active(&w->keys.ring) : NULL;

	pthread_mutex_lock(&w->lock);
	if (w->active.has_secret && (key == NULL || strcmp(key->kid, w->active.kid) != 0))
		w->previous = w->active;
	if (key && key->has_secret)
		w->active = *key;
	else
		sodium_memzero(&w->active, sizeof(w->active));
	pthread_mutex_unlock(&w->lock);
}

/* Reload the key ring when another connection (submitctl) changed the
 * database since we last looked; cheap enough to ask once per batch. */
static void
refresh_keys(struct writer *w)
{
	char err[256] = "";
	int rc = store_keys_refresh(w->db, &w->keys);

	if (rc == 0)
		return;
	if (rc == -1)
		log_err("event=keyring_load_failed error=\"%s\"", sqlite3_errmsg(w->db));
	/* Making a key takes a write transaction: only when there is no
	 * active key (`submitctl key retire`). Run after every change made by
	 * another connection (a `submitctl user add`), it took the write lock
	 * each time, and while another process held that lock the next batch
	 * waited the busy timeout twice, here and at its BEGIN. */
	if (w->o.tokens && keyring_active(&w->keys.ring) == NULL &&
	    store_key_ensure(w->db, now_unix(), err, sizeof(err)) == 1) {
		log_info("event=key_generated reason=no_active_key");
		if (store_keys_load(w->db, &w->keys.ring) == -1)
			log_err("event=keyring_load_failed error=\"%s\"", sqlite3_errmsg(w->db));
	}
	publish_active_key(w);
}

static int
store_body(struct writer *w, struct writer_msg *m, sqlite3_int64 message_id)
{
	sqlite3_stmt *st;
	sqlite3_blob *blob = NULL;
	uint64_t off = 0;
	int rc;

	if (m->spool_fd == -1) {
		st = w->st[ST_BODY];
		sqlite3_bind_int64(st, 1, message_id);
		sqlite3_bind_blob64(st, 2, m->body ? (const void *)m->body : "", m->size, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
	} else {
		/* Large body: reserve the blob, then fill it in chunks, so memory
		 * stays at one chunk whatever the size. */
		st = w->st[ST_BODY_ZERO];
		sqlite3_bind_int64(st, 1, message_id);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)m->size);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
		rc = sqlite3_blob_open(w->db, "main", "message_bodies", "content", message_id, 1, &blob);
		if (rc != SQLITE_OK)
			return rc;
		while (off < m->size) {
			size_t want = m->size - off < BODY_CHUNK ? (size_t)(m->size - off) : BODY_CHUNK;
			ssize_t got = pread(m->spool_fd, w->chunk, want, (off_t)off);
			if (got <= 0) {
				log_err("event=spool_read_failed msgid=%s error=\"%s\"", m->public_id,
				    got == 0 ? "short file" : strerror(errno));
				sqlite3_blob_close(blob);
				return SQLITE_IOERR;
			}
			rc = sqlite3_blob_write(blob, w->chunk, (int)got, (int)off);
			if (rc != SQLITE_OK) {
				sqlite3_blob_close(blob);
				return rc;
			}
			off += (uint64_t)got;
		}
		rc = sqlite3_blob_close(blob);
		if (rc != SQLITE_OK)
			return rc;
	}
	return SQLITE_DONE;
}

/* The claims of m's tokens that their rows need, before any signature:
 * a fresh id each and the expiry; the caller names the key. */
static struct writer_token_meta *
claim_tokens(const struct writer *w, const struct writer_msg *m)
{
	struct writer_token_meta *meta = xcalloc(m->nrcpt + 1, sizeof(*meta));
	int64_t exp = m->received_ms / 1000 + w->o.token_lifetime;

	for (size_t i = 0; i <= m->nrcpt; i++) {
		token_new_id(meta[i].jti);
		meta[i].exp = exp;
	}
	return meta;
}

static void
name_key(struct writer_token_meta *meta, size_t n, const char *kid)
{
	for (size_t i = 0; i < n; i++)
		memcpy(meta[i].kid, kid, sizeof(meta[i].kid));
}

/* Sign the tokens m->token_meta claims, with key. All or none: on a
 * failure (only a configuration the checks let through could cause one)
 * the message goes without tokens. Only the strings are written; the
 * claims may be read by the writer thread meanwhile. */
static void
sign_tokens(struct writer *w, struct writer_msg *m, const struct token_key *key)
{
	char tok[TOKEN_MAX_LEN + 1];

	m->tokens = xcalloc(m->nrcpt + 1, sizeof(char *));
	for (size_t i = 0; i <= m->nrcpt; i++) {
		bool sender = i == m->nrcpt;
		size_t n = token_issue_as(key, m->token_meta[i].jti, m->token_meta[i].exp, m->public_id,
		    sender ? m->envelope_from : m->rcpts[i], sender ? TOKEN_ROLE_SENDER : TOKEN_ROLE_RECIPIENT,
		    w->issuer, NULL, tok, sizeof(tok));
		if (n == 0) {
			log_err("event=token_issue_failed msgid=%s", m->public_id);
			for (size_t j = 0; j < i; j++)
				free(m->tokens[j]);
			xfreep(&m->tokens);
			return;
		}
		m->tokens[i] = xstrndup(tok, n);
	}
}

/* The signer's part: sign with the key writer_submit named. */
static void
sign_claimed(struct writer *w, struct writer_msg *m, const struct token_key *active,
    const struct token_key *previous)
{
	const char *kid = m->token_meta[0].kid;
	const struct token_key *key = strcmp(kid, active->kid) == 0 ? active
	    : previous->has_secret && strcmp(kid, previous->kid) == 0 ? previous : NULL;

	if (key == NULL || !key->has_secret) {
		/* Two rotations while one message was on its way: the writer
		 * signs it again (see commit_batch) or it goes without. */
		log_warn("event=token_key_gone msgid=%s", m->public_id);
		return;
	}
	sign_tokens(w, m, key);
}

/* One stage of m is done (signed, or committed). The last one hands it
 * back; true when it did. Called with the lock held. */
static bool
stage_done_locked(struct writer *w, struct writer_msg *m)
{
	if (--m->pending > 0)
		return false;
	workq_push_locked(&w->done, m);
	return true;
}

/* Until the signer has finished with m, its tokens are not the writer's. */
static void
wait_signed(struct writer *w, struct writer_msg *m)
{
	pthread_mutex_lock(&w->lock);
	while (!m->signed_done)
		pthread_cond_wait(&w->signed_cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

static int
insert_token(struct writer *w, struct writer_msg *m, size_t i, sqlite3_int64 message_id,
    sqlite3_int64 rcpt_id)
{
	const struct writer_token_meta *t = &m->token_meta[i];
	bool sender = i == m->nrcpt;
	char issued[24], expires[24];
	sqlite3_stmt *st = w->st[ST_TOKEN];
	int rc;

	store_time(m->received_ms, issued);
	store_time(t->exp * 1000, expires);
	sqlite3_bind_text(st, 1, t->jti, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, message_id);
	if (!sender)
		sqlite3_bind_int64(st, 3, rcpt_id);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, sender ? "sender" : "recipient", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, sender ? m->envelope_from : m->rcpts[i], -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, t->kid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, issued, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 8, expires, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc;
}

/* Everything one message needs, inside the caller's savepoint. */
static int
store_message(struct writer *w, struct writer_msg *m)
{
	sqlite3_stmt *st = w->st[ST_MESSAGE];
	sqlite3_int64 message_id;
	char received[24];
	int rc;

	store_time(m->received_ms, received);
	sqlite3_bind_text(st, 1, m->public_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, received, -1, SQLITE_STATIC);
	if (m->auth_login)
		sqlite3_bind_text(st, 3, m->auth_login, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_text(st, 4, m->client_address, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, m->helo ? m->helo : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, m->envelope_from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, m->body_type, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 8, m->smtputf8);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)m->size);
	sqlite3_bind_text(st, 10, m->sha256_hex, 64, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return rc;
	message_id = sqlite3_last_insert_rowid(w->db);

	rc = store_body(w, m, message_id);
	if (rc != SQLITE_DONE)
		return rc;

	st = w->st[ST_RCPT];
	for (size_t i = 0; i < m->nrcpt; i++) {
		sqlite3_bind_int64(st, 1, message_id);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)(i + 1));
		sqlite3_bind_text(st, 3, m->rcpts[i], -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, received, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
		if (m->token_meta) {
			rc = insert_token(w, m, i, message_id, sqlite3_last_insert_rowid(w->db));
			if (rc != SQLITE_DONE)
				return rc;
		}
	}
	if (m->token_meta) {
		rc = insert_token(w, m, m->nrcpt, message_id, 0);
		if (rc != SQLITE_DONE)
			return rc;
	}
	return SQLITE_DONE;
}

static void
commit_batch(struct writer *w, struct writer_msg *batch)
{
	const struct token_key *key;
	uint64_t start = mono_us();
	char why[512];
	/* One message needs no savepoint: its failure is the transaction's. */
	bool single = batch->next == NULL;
	int rc, count = 0, stored = 0;

	refresh_keys(w);
	key = w->o.tokens ? keyring_active(&w->keys.ring) : NULL;
	if (key && !key->has_secret)
		key = NULL;
	/* writer_submit named the key of the last refresh; a key rotated
	 * since (submitctl) shows here, and those few messages are signed
	 * again, here, once the signer is done with them, so that every token
	 * carries the key that is active when it commits. */
	for (struct writer_msg *m = batch; m; m = m->next) {
		const char *kid = m->token_meta ? m->token_meta[0].kid : NULL;
		bool match = key ? kid && strcmp(kid, key->kid) == 0 : kid == NULL;
		if (!match) {
			wait_signed(w, m);
			drop_tokens(m);
			if (key) {
				m->token_meta = claim_tokens(w, m);
				name_key(m->token_meta, m->nrcpt + 1, key->kid);
				sign_tokens(w, m, key);
				if (m->tokens == NULL)
					drop_tokens(m);   /* stored without tokens, as before */
			}
		}
	}
	rc = begin(w, "messages");
	if (rc != SQLITE_OK) {
		for (struct writer_msg *m = batch; m; m = m->next) {
			m->status = classify(rc);
			m->commit_us = mono_us() - m->submitted_us;
		}
		return;
	}
	for (struct writer_msg *m = batch; m; m = m->next) {
		count++;
		if (!single)
			tx(w, ST_SAVEPOINT);
		rc = store_message(w, m);
		if (rc == SQLITE_DONE) {
			m->status = WRITER_OK;
			stored++;
			if (!single)
				tx(w, ST_RELEASE);
		} else {
			m->status = classify(rc);
			log_err("event=store_failed msgid=%s %s", m->public_id, db_error(w, why, sizeof(why)));
			if (!single) {
				tx(w, ST_ROLLBACK_TO);
				tx(w, ST_RELEASE);
			}
		}
	}
	rc = stored > 0 ? tx(w, ST_COMMIT) : tx(w, ST_ROLLBACK);
	if (stored > 0 && rc != SQLITE_OK) {
		log_err("event=store_commit_failed messages=%d %s", count, db_error(w, why, sizeof(why)));
		tx(w, ST_ROLLBACK);
		for (struct writer_msg *m = batch; m; m = m->next) {
			if (m->status == WRITER_OK)
				m->status = classify(rc);
		}
	}
	uint64_t end = mono_us();
	for (struct writer_msg *m = batch; m; m = m->next)
		m->commit_us = end - m->submitted_us;
	log_debug("event=batch_committed messages=%d commit_us=%llu", count, (unsigned long long)(end - start));
}

static void
audit_free(struct audit_entry *a)
{
	free(a->action);
	free(a->result);
	free(a->service);
	free(a->token_id);
	free(a->client);
	free(a);
}

static void
bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* Audit rows are not worth a 250 to anyone: one transaction for all that
 * are waiting, after the messages. A commit that fails for a reason that
 * passes (a lock, a full disk, an I/O error) keeps the rows for the next
 * pass, up to AUDIT_KEEP_MAX, so that an audit trail has no hole for a
 * lock; on the last pass (stopping) they are dropped, and logged. */
static void
insert_audits(struct writer *w, struct audit_entry *list, bool last_try)
{
	sqlite3_stmt *st = w->st[ST_AUDIT];
	struct audit_entry *a;
	char why[512];
	int rc = begin(w, "audit"), n = 0, primary;

	for (a = list; a; a = a->next)
		n++;
	for (a = list; a && rc == SQLITE_OK; a = a->next) {
		sqlite3_bind_text(st, 1, a->at, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, a->action, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, a->result, -1, SQLITE_STATIC);
		bind_text_or_null(st, 4, a->service);
		bind_text_or_null(st, 5, a->token_id);
		sqlite3_bind_text(st, 6, a->client, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
		sqlite3_reset(st);
	}
	if (rc == SQLITE_OK)
		rc = tx(w, ST_COMMIT);
	if (rc == SQLITE_OK) {
		if (w->audit_deferred)
			log_info("event=audit_write_resumed rows=%d", n);
		w->audit_deferred = false;
	} else {
		db_error(w, why, sizeof(why));
		tx(w, ST_ROLLBACK);
		primary = rc & 0xff;
		if (!last_try && (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_FULL ||
		    primary == SQLITE_IOERR || primary == SQLITE_READONLY)) {
			if (!w->audit_deferred)
				log_err("event=audit_write_deferred rows=%d %s note=retrying", n, why);
			if (n > AUDIT_KEEP_MAX)
				log_err("event=audit_write_failed rows=%d note=too_many_waiting keep=%d",
				    n - AUDIT_KEEP_MAX, AUDIT_KEEP_MAX);
			for (; n > AUDIT_KEEP_MAX; n--) {   /* the oldest go */
				a = list;
				list = a->next;
				audit_free(a);
			}
			w->a_retry = list;
			w->audit_deferred = true;
			return;
		}
		log_err("event=audit_write_failed rows=%d %s", n, why);
		w->audit_deferred = false;
	}
	while ((a = list) != NULL) {
		list = a->next;
		audit_free(a);
	}
}

/* Each job in a transaction of its own: jobs are small (a delivery
 * result, a purge batch) and one failing must not undo another. The
 * results are posted for writer_collect_jobs; the caller notifies. */
static void
run_jobs(struct writer *w, struct writer_job *jobs)
{
	struct writer_job *j, *last = NULL;
	char why[512];

	for (j = jobs; j; j = j->next) {
		last = j;
		j->rc = begin(w, "job");
		if (j->rc != SQLITE_OK)
			continue;       /* begin() logged it */
		j->rc = j->run(w->db, j->arg);
		if (j->rc == SQLITE_OK)
			j->rc = tx(w, ST_COMMIT);
		if (j->rc != SQLITE_OK) {
			log_err("event=job_failed %s", db_error(w, why, sizeof(why)));
			tx(w, ST_ROLLBACK);
		}
	}
	workq_push_list(&w->jobs_done, jobs, last);
}

void
writer_job_submit(struct writer *w, struct writer_job *job)
{
	workq_push(&w->jobs, job);
}

struct writer_job *
writer_collect_jobs(struct writer *w)
{
	return workq_take_all(&w->jobs_done);
}

void
writer_audit(struct writer *w, const char *action, const char *result, const char *service,
    const char *token_id, const char *client_address)
{
	struct audit_entry *a = xcalloc(1, sizeof(*a));

	store_time(now_ms(), a->at);
	a->action = xstrdup(action);
	a->result = xstrdup(result);
	a->service = service ? xstrdup(service) : NULL;
	a->token_id = token_id ? xstrdup(token_id) : NULL;
	a->client = xstrdup(client_address);
	workq_push(&w->audits, a);
}

/* Work for the writer thread is waiting (the rows to retry aside). */
static bool
has_work_locked(const struct writer *w)
{
	return !workq_empty_locked(&w->msgs) || !workq_empty_locked(&w->audits) ||
	    !workq_empty_locked(&w->jobs);
}

/* Each pass takes what is waiting of every kind (one batch of messages,
 * all jobs, all audit rows) and runs them in that order. A pass never
 * loops on one kind: a steady stream of API calls (audit rows) or relay
 * results must not keep messages waiting for their 250, least of all
 * while every transaction has to wait for a lock. */
static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	for (;;) {
		struct writer_msg *batch;
		struct audit_entry *audits, *fresh;
		struct writer_job *jobs;
		size_t n;
		bool last_try;

		pthread_mutex_lock(&w->lock);
		while (!has_work_locked(w) && !w->stopping) {
			struct timespec until;
			if (w->a_retry == NULL) {
				pthread_cond_wait(&w->cond, &w->lock);
				continue;
			}
			/* audit rows to try again: not later than AUDIT_RETRY_S */
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += AUDIT_RETRY_S;
			if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT)
				break;
		}
		if (!has_work_locked(w) && w->a_retry == NULL) {
			pthread_mutex_unlock(&w->lock);
			break;          /* stopping, and nothing left */
		}
		last_try = w->stopping;
		/* the rows kept from a failed commit are older: they go first */
		fresh = workq_take_all_locked(&w->audits);
		audits = w->a_retry ? w->a_retry : fresh;
		if (w->a_retry) {
			struct audit_entry *tail = w->a_retry;
			while (tail->next)
				tail = tail->next;
			tail->next = fresh;
			w->a_retry = NULL;
		}
		jobs = workq_take_all_locked(&w->jobs);
		batch = workq_take_locked(&w->msgs, (size_t)w->o.batch, &n);
		w->busy = true;
		pthread_mutex_unlock(&w->lock);

		if (batch) {
			commit_batch(w, batch);
			/* The bodies are stored (or failed): release them now, not on
			 * the event loop, which only needs the status and the tokens. */
			for (struct writer_msg *m = batch; m; m = m->next) {
				xfreep(&m->body);
				if (m->spool_fd != -1) {
					close(m->spool_fd);
					m->spool_fd = -1;
				}
			}
			bool posted = false;
			pthread_mutex_lock(&w->lock);
			for (struct writer_msg *m = batch, *next; m; m = next) {
				next = m->next;
				posted |= stage_done_locked(w, m);
			}
			w->depth -= n;
			pthread_mutex_unlock(&w->lock);
			/* answer the clients before running the other work */
			if (posted && w->o.notify)
				w->o.notify(w->o.notify_arg);
		}
		if (jobs)
			run_jobs(w, jobs);
		if (audits)
			insert_audits(w, audits, last_try);

		pthread_mutex_lock(&w->lock);
		w->busy = false;
		pthread_mutex_unlock(&w->lock);
		if (jobs && w->o.notify)
			w->o.notify(w->o.notify_arg);
	}
	return NULL;
}

/* Sign whatever is waiting, in arrival order, while the writer thread
 * stores the same messages; whichever finishes a message last hands it
 * back. */
static void *
signer_main(void *arg)
{
	struct writer *w = arg;
	struct token_key active, previous;

	for (;;) {
		struct writer_msg *list;
		bool posted = false;

		pthread_mutex_lock(&w->lock);
		workq_wait_locked(&w->to_sign);
		list = workq_take_all_locked(&w->to_sign);
		if (list == NULL) {
			pthread_mutex_unlock(&w->lock);
			break;          /* stopping, and nothing left */
		}
		active = w->active;
		previous = w->previous;
		w->signing = true;
		pthread_mutex_unlock(&w->lock);

		for (struct writer_msg *m = list; m; m = m->s_next)
			sign_claimed(w, m, &active, &previous);
		sodium_memzero(&active, sizeof(active));
		sodium_memzero(&previous, sizeof(previous));

		pthread_mutex_lock(&w->lock);
		for (struct writer_msg *m = list, *next; m; m = next) {
			next = m->s_next;
			m->s_next = NULL;
			m->signed_done = true;
			posted |= stage_done_locked(w, m);
		}
		w->signing = false;
		pthread_cond_broadcast(&w->signed_cond);
		pthread_mutex_unlock(&w->lock);
		if (posted && w->o.notify)
			w->o.notify(w->o.notify_arg);
	}
	return NULL;
}

struct writer *
writer_start(const struct writer_opts *o, char *err, size_t errlen)
{
	struct writer *w = xcalloc(1, sizeof(*w));

	w->o = *o;
	w->db_path = xstrdup(o->db_path);
	w->issuer = xstrdup(o->issuer ? o->issuer : "localhost");
	w->o.db_path = w->db_path;
	w->o.issuer = w->issuer;
	if (w->o.batch < 1)
		w->o.batch = 1;
	keyring_init(&w->keys.ring);
	w->db = store_open(w->db_path, err, errlen);
	if (w->db == NULL)
		goto fail;
	if (store_keys_init(w->db, &w->keys, err, errlen) == -1)
		goto fail;
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(w->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &w->st[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "prepare: %s", sqlite3_errmsg(w->db));
			goto fail;
		}
	}
	if (w->o.checkpoint_pages > 0) {
		w->ckpt = checkpoint_start(w->db_path, w->db, w->o.checkpoint_pages, err, errlen);
		if (w->ckpt == NULL)
			goto fail;
	}
	w->chunk = xmalloc(BODY_CHUNK);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	pthread_cond_init(&w->sign_cond, NULL);
	pthread_cond_init(&w->signed_cond, NULL);
	workq_init(&w->msgs, offsetof(struct writer_msg, next), &w->lock, &w->cond);
	workq_init(&w->jobs, offsetof(struct writer_job, next), &w->lock, &w->cond);
	workq_init(&w->audits, offsetof(struct audit_entry, next), &w->lock, &w->cond);
	workq_init(&w->to_sign, offsetof(struct writer_msg, s_next), &w->lock, &w->sign_cond);
	workq_init(&w->done, offsetof(struct writer_msg, next), &w->lock, NULL);
	workq_init(&w->jobs_done, offsetof(struct writer_job, next), &w->lock, NULL);
	refresh_keys(w);
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		snprintf(err, errlen, "cannot start the writer thread");
		goto fail;
	}
	/* Named for top -H, perf and gdb. */
	pthread_setname_np(w->thread, "sd-writer");
	if (w->o.tokens) {
		if (pthread_create(&w->signer, NULL, signer_main, w) != 0) {
			snprintf(err, errlen, "cannot start the signer thread");
			writer_stop(&w);
			return NULL;
		}
		w->signer_started = true;
		pthread_setname_np(w->signer, "sd-signer");
	}
	return w;
fail:
	checkpoint_stop(&w->ckpt);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(w->st[i]);
	store_keys_free(&w->keys);
	store_close(&w->db);
	free(w->db_path);
	free(w->issuer);
	free(w->chunk);
	free(w);
	return NULL;
}

void
writer_submit(struct writer *w, struct writer_msg *m)
{
	/* The claims of every token, so that the rows can be written while
	 * the signer signs: ids (random, outside the lock) and expiry here,
	 * the key below. */
	struct writer_token_meta *meta = w->signer_started ? claim_tokens(w, m) : NULL;

	m->status = WRITER_PENDING;
	m->submitted_us = mono_us();
	pthread_mutex_lock(&w->lock);
	if (meta && w->active.has_secret) {
		name_key(meta, m->nrcpt + 1, w->active.kid);
		m->token_meta = meta;
		meta = NULL;
		m->pending = 2;
		m->signed_done = false;
		workq_push_locked(&w->to_sign, m);
	} else {
		m->pending = 1;
		m->signed_done = true;
	}
	workq_push_locked(&w->msgs, m);
	w->depth++;
	pthread_mutex_unlock(&w->lock);
	free(meta);             /* no signing key: no tokens */
}

struct writer_msg *
writer_collect(struct writer *w)
{
	return workq_take_all(&w->done);
}

void
writer_flush(struct writer *w)
{
	struct timespec ts = { 0, 5 * 1000 * 1000 };

	for (;;) {
		bool idle;
		pthread_mutex_lock(&w->lock);
		idle = workq_empty_locked(&w->to_sign) && !w->signing && !has_work_locked(w) && !w->busy;
		pthread_mutex_unlock(&w->lock);
		if (idle)
			return;
		nanosleep(&ts, NULL);
	}
}

size_t
writer_depth(struct writer *w)
{
	size_t n;

	pthread_mutex_lock(&w->lock);
	n = w->depth;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void
writer_stop(struct writer **wp)
{
	struct writer *w = *wp;
	struct writer_msg *m, *list;

	if (w == NULL)
		return;
	/* The signer first: it signs all it was given before it leaves, and
	 * the writer thread may wait for it (a key rotated meanwhile). */
	if (w->signer_started) {
		workq_close(&w->to_sign);
		pthread_join(w->signer, NULL);
	}
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	checkpoint_stop(&w->ckpt);
	for (list = workq_take_all(&w->done); (m = list) != NULL; ) {
		list = m->next;
		writer_msg_free(&m);
	}
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(w->st[i]);
	store_keys_free(&w->keys);
	store_close(&w->db);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	pthread_cond_destroy(&w->sign_cond);
	pthread_cond_destroy(&w->signed_cond);
	sodium_memzero(&w->active, sizeof(w->active));
	sodium_memzero(&w->previous, sizeof(w->previous));
	free(w->db_path);
	free(w->issuer);
	free(w->chunk);
	free(w);
	*wp = NULL;
}
