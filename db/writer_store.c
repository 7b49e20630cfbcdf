/*
 * writer_store.c: the writer's SQL: transaction control, and the rows of
 * a message (message, body, recipients, tokens), all through prepared
 * statements on the writer thread's connection. Each message runs inside
 * a SAVEPOINT so that one failing message (say, the disk filling up in
 * the middle of its body) does not take the others of its batch down; a
 * failed COMMIT fails the whole batch, and nobody gets a 250 for it.
 *
 * Another process may hold the database's write lock (an administrator's
 * sqlite3 shell left inside a transaction, a backup tool). BEGIN then waits
 * STORE_BUSY_TIMEOUT_MS and fails with SQLITE_BUSY: the batch is refused
 * (451), and until a BEGIN succeeds again the writer waits only
 * BUSY_RETRY_MS per attempt, so that under a long lock every client gets
 * its 451 within about a second instead of queueing behind 10-second
 * waits. One line is logged when the lock is first seen and one when it
 * is gone.
 *
 * A body is stored once per SHA-256 (db/bodies.h): a message whose body
 * is already there points at it and writes no content. A duplicate
 * (writer_opts.dedup_window, db/writer.h) is looked up inside the
 * message's savepoint, after the messages before it in the batch, and
 * stores only new token rows for the message it duplicates.
 */
#include "db/writer_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/bodies.h"
#include "db/dkim_store.h"
#include "db/sent.h"
#include "server/base/log.h"
#include "server/base/util.h"

#define BUSY_RETRY_MS 1000
/* Stored messages with the same login, Message-ID, SHA-256 and sender
 * whose recipients are compared; a client does not resend one message
 * under this many envelopes within the window. */
#define DUP_CANDIDATES_SQL "8"

static const char *const sql[ST_COUNT] = {
	[ST_MESSAGE] = "INSERT INTO messages (public_id, received_at, auth_login, client_address, helo, "
	    "envelope_from, body_type, smtputf8, size, sha256, body_id, header_message_id) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	[ST_BODY_FIND] = bodies_find_sql,
	[ST_BODY] = bodies_insert_sql,
	[ST_BODY_ZERO] = bodies_insert_zero_sql,
	/* the newest first; INDEXED BY: a schema without the index fails at
	 * start rather than scanning a login's messages */
	[ST_DUP_FIND] = "SELECT message_id, public_id FROM messages INDEXED BY messages_dedup "
	    "WHERE auth_login = ?1 AND header_message_id = ?2 AND sha256 = ?3 AND envelope_from = ?4 "
	    "AND received_at >= ?5 ORDER BY message_id DESC LIMIT " DUP_CANDIDATES_SQL,
	[ST_DUP_RCPTS] = "SELECT recipient_id, address FROM recipients WHERE message_id = ?1 ORDER BY position",
	[ST_RCPT] = "INSERT INTO recipients (message_id, position, address, updated_at, unrouted) "
	    "VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_TOKEN] = "INSERT INTO tokens (token_id, message_id, recipient_id, role, address, key_id, "
	    "issued_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[ST_AUDIT] = "INSERT INTO audit_log (at, action, result, service, token_id, client_address) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_SENT_JOB] = sent_job_insert_sql,
	[ST_PREPEND] = dkim_store_message_sql,
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT msg",
	[ST_RELEASE] = "RELEASE msg",
	[ST_ROLLBACK_TO] = "ROLLBACK TO msg",
};

int
writer_store_prepare(struct writer *w, char *err, size_t errlen)
{
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(w->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &w->st[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "prepare: %s", sqlite3_errmsg(w->db));
			return -1;
		}
	}
	if (w->o.prepend && w->o.prepend_wanted_sql &&
	    sqlite3_prepare_v3(w->db, w->o.prepend_wanted_sql, -1, SQLITE_PREPARE_PERSISTENT, &w->prepend_wanted,
	    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "prepare: %s", sqlite3_errmsg(w->db));
		return -1;
	}
	return 0;
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
const char *
writer_db_error(struct writer *w, char *buf, size_t len)
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
int
writer_tx(struct writer *w, int which)
{
	sqlite3_stmt *st = w->st[which];
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* BEGIN IMMEDIATE, for every kind of work. See the top of this file for
 * what happens while another process holds the write lock. */
int
writer_begin(struct writer *w, const char *what)
{
	char why[512];
	uint64_t start = mono_us();
	int rc;

	if (w->locked)
		sqlite3_busy_timeout(w->db, BUSY_RETRY_MS);
	rc = writer_tx(w, ST_BEGIN);
	if (w->locked)
		sqlite3_busy_timeout(w->db, STORE_BUSY_TIMEOUT_MS);
	if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
		if (!w->locked) {
			w->locked = true;
			w->locked_since_us = start;
			w->locked_refusals = 0;
			log_err("event=store_locked what=%s waited_ms=%llu %s note=\"another process holds the "
			    "database write lock; messages are refused with 451 4.3.0 until it is released\"",
			    what, (unsigned long long)((mono_us() - start) / 1000), writer_db_error(w, why, sizeof(why)));
		}
		w->locked_refusals++;
	} else if (rc != SQLITE_OK) {
		log_err("event=store_begin_failed what=%s %s", what, writer_db_error(w, why, sizeof(why)));
	} else if (w->locked) {
		w->locked = false;
		log_info("event=store_unlocked locked_ms=%llu refused=%u", (unsigned long long)
		    ((mono_us() - w->locked_since_us) / 1000), w->locked_refusals);
	}
	return rc;
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

/* The body's row: the one with m's SHA-256 if there is one (nothing is
 * written), else a new one; *body_id_r for the message's row, whose
 * pointer is the reference (db/bodies.h). */
static int
store_body(struct writer *w, struct writer_msg *m, sqlite3_int64 *body_id_r)
{
	sqlite3_stmt *st = w->st[ST_BODY_FIND];
	sqlite3_blob *blob = NULL;
	uint64_t off = 0;
	int rc;

	sqlite3_bind_text(st, 1, m->sha256_hex, 64, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*body_id_r = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return SQLITE_DONE;
	if (rc != SQLITE_DONE)
		return rc;
	if (m->spool_fd == -1) {
		st = w->st[ST_BODY];
		sqlite3_bind_text(st, 1, m->sha256_hex, 64, SQLITE_STATIC);
		sqlite3_bind_blob64(st, 2, m->body ? (const void *)m->body : "", m->size, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
		*body_id_r = sqlite3_last_insert_rowid(w->db);
	} else {
		/* Large body: reserve the blob, then fill it in chunks, so memory
		 * stays at one chunk whatever the size. */
		st = w->st[ST_BODY_ZERO];
		sqlite3_bind_text(st, 1, m->sha256_hex, 64, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)m->size);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
		*body_id_r = sqlite3_last_insert_rowid(w->db);
		rc = sqlite3_blob_open(w->db, "main", "bodies", "content", *body_id_r, 1, &blob);
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

/* Whether stored message message_id has m's recipients, the same
 * addresses in the same order, in *same_r; their ids into ids (m->nrcpt
 * of them). SQLITE_OK or an error. */
static int
same_recipients(struct writer *w, struct writer_msg *m, sqlite3_int64 message_id, sqlite3_int64 *ids,
    bool *same_r)
{
	sqlite3_stmt *st = w->st[ST_DUP_RCPTS];
	size_t i = 0;
	bool same = true;
	int rc;

	sqlite3_bind_int64(st, 1, message_id);
	while (same && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 1);
		if (i >= m->nrcpt || a == NULL || strcmp(a, m->rcpts[i]) != 0)
			same = false;
		else
			ids[i++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_reset(st);
	if (same && rc != SQLITE_DONE)
		return rc;
	*same_r = same && i == m->nrcpt;
	return SQLITE_OK;
}

/* The stored message m duplicates: SQLITE_ROW with its id, public id and
 * recipients' ids (m->nrcpt), SQLITE_DONE for none, or an error. */
static int
find_duplicate(struct writer *w, struct writer_msg *m, sqlite3_int64 *orig_r, char public_r[PUBLIC_ID_LEN + 1],
    sqlite3_int64 *ids)
{
	sqlite3_stmt *st = w->st[ST_DUP_FIND];
	char since[24];
	bool same = false;
	int rc;

	store_time(m->received_ms - w->o.dedup_window * 1000, since);
	sqlite3_bind_text(st, 1, m->auth_login, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, m->header_msgid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, m->sha256_hex, 64, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, m->envelope_from, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, since, -1, SQLITE_STATIC);
	while (!same && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*orig_r = sqlite3_column_int64(st, 0);
		snprintf(public_r, PUBLIC_ID_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 1));
		int r = same_recipients(w, m, *orig_r, ids, &same);
		if (r != SQLITE_OK) {
			sqlite3_reset(st);
			return r;
		}
	}
	sqlite3_reset(st);
	if (same)
		return SQLITE_ROW;
	return rc == SQLITE_DONE ? SQLITE_DONE : rc;
}

/* m duplicates the stored message orig: nothing is stored but new token
 * rows for orig and its recipients (ids), signed for orig's public id,
 * with the key the batch commits with (none: no tokens, as for any
 * message then). The session answers 250 with them. */
static int
store_duplicate(struct writer *w, struct writer_msg *m, const struct token_key *key, sqlite3_int64 orig,
    const char *orig_public, const sqlite3_int64 *ids)
{
	int rc;

	writer_wait_signed(w, m);
	drop_tokens(m);
	memcpy(m->submitted_id, m->public_id, sizeof(m->submitted_id));
	snprintf(m->public_id, sizeof(m->public_id), "%s", orig_public);
	m->duplicate = true;
	if (key == NULL)
		return SQLITE_DONE;
	m->token_meta = writer_claim_tokens(w, m);
	writer_name_key(m->token_meta, m->nrcpt + 1, key->kid);
	writer_sign_tokens(w, m, key);
	if (m->tokens == NULL) {
		drop_tokens(m);
		return SQLITE_DONE;
	}
	for (size_t i = 0; i <= m->nrcpt; i++) {
		rc = insert_token(w, m, i, orig, i < m->nrcpt ? ids[i] : 0);
		if (rc != SQLITE_DONE)
			return rc;
	}
	return SQLITE_DONE;
}

/* A duplicate's answer, or SQLITE_ROW: not one, store m. */
static int
check_duplicate(struct writer *w, struct writer_msg *m, const struct token_key *key)
{
	char orig_public[PUBLIC_ID_LEN + 1];
	sqlite3_int64 orig = 0, *ids;
	int rc;

	if (w->o.dedup_window <= 0 || m->auth_login == NULL || m->header_msgid == NULL)
		return SQLITE_ROW;
	ids = xcalloc(m->nrcpt + 1, sizeof(*ids));
	rc = find_duplicate(w, m, &orig, orig_public, ids);
	if (rc == SQLITE_ROW)
		rc = store_duplicate(w, m, key, orig, orig_public, ids);
	else if (rc == SQLITE_DONE)
		rc = SQLITE_ROW;
	free(ids);
	return rc;
}

/* Everything one message needs, inside the caller's savepoint. */
static int
store_message(struct writer *w, struct writer_msg *m, const struct token_key *key)
{
	sqlite3_stmt *st = w->st[ST_MESSAGE];
	sqlite3_int64 message_id, body_id = 0;
	char received[24];
	int rc;

	rc = check_duplicate(w, m, key);
	if (rc != SQLITE_ROW)
		return rc;
	rc = store_body(w, m, &body_id);
	if (rc != SQLITE_DONE)
		return rc;
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
	sqlite3_bind_int64(st, 11, body_id);
	if (m->header_msgid)
		sqlite3_bind_text(st, 12, m->header_msgid, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 12);
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE)
		return rc;
	message_id = sqlite3_last_insert_rowid(w->db);

	st = w->st[ST_RCPT];
	for (size_t i = 0; i < m->nrcpt; i++) {
		sqlite3_bind_int64(st, 1, message_id);
		sqlite3_bind_int(st, 5, w->o.unrouted ? 1 : 0);
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
	/* The Sent copy's job commits with the message, so neither a crash
	 * nor a restart can lose it; one statement, which reads the login's
	 * setting by its primary key. */
	if (w->o.sent_jobs && m->auth_login) {
		st = w->st[ST_SENT_JOB];
		sqlite3_bind_int64(st, 1, message_id);
		sqlite3_bind_text(st, 2, m->auth_login, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, received, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 4, w->o.sent_default);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc != SQLITE_DONE)
			return rc;
	}
	/* The header fields (DKIM signatures), computed by a prepend worker
	 * while the rows and the body above were written: they commit with
	 * the message. */
	if (w->o.prepend) {
		writer_wait_prepended(w, m);
		if (m->prepend) {
			st = w->st[ST_PREPEND];
			sqlite3_bind_int64(st, 1, message_id);
			sqlite3_bind_text(st, 2, m->prepend, -1, SQLITE_STATIC);
			rc = sqlite3_step(st);
			sqlite3_reset(st);
			if (rc != SQLITE_DONE)
				return rc;
		}
	}
	return SQLITE_DONE;
}

/* The msg-id of each message's Message-ID: field (writer_opts.message_id),
 * read from the top of its body before the transaction: in memory, or
 * the spool file into w->chunk. */
static void
read_message_ids(struct writer *w, struct writer_msg *batch)
{
	size_t scan = w->o.message_id_scan < BODY_CHUNK ? w->o.message_id_scan : BODY_CHUNK;
	char *out;

	if (w->o.message_id == NULL)
		return;
	out = xmalloc(w->o.message_id_max + 1);
	for (struct writer_msg *m = batch; m; m = m->next) {
		size_t len = m->size < scan ? (size_t)m->size : scan;
		const char *head = (const char *)m->body;
		int n;

		if (m->header_msgid != NULL || len == 0)
			continue;
		if (head == NULL) {
			ssize_t got = m->spool_fd == -1 ? -1 : pread(m->spool_fd, w->chunk, len, 0);
			if (got <= 0)
				continue;   /* the body's own read reports a failing spool */
			len = (size_t)got;
			head = (const char *)w->chunk;
		}
		n = w->o.message_id(head, len, out, w->o.message_id_max + 1);
		if (n > 0)
			m->header_msgid = xstrndup(out, (size_t)n);
	}
	free(out);
}

void
writer_commit_batch(struct writer *w, struct writer_msg *batch)
{
	const struct token_key *key;
	uint64_t start = mono_us();
	char why[512];
	/* One message needs no savepoint: its failure is the transaction's. */
	bool single = batch->next == NULL;
	int rc, count = 0, stored = 0;

	writer_refresh_keys(w);
	writer_prepend_look(w, batch);
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
			writer_wait_signed(w, m);
			drop_tokens(m);
			if (key) {
				m->token_meta = writer_claim_tokens(w, m);
				writer_name_key(m->token_meta, m->nrcpt + 1, key->kid);
				writer_sign_tokens(w, m, key);
				if (m->tokens == NULL)
					drop_tokens(m);   /* stored without tokens, as before */
			}
		}
	}
	read_message_ids(w, batch);
	rc = writer_begin(w, "messages");
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
			writer_tx(w, ST_SAVEPOINT);
		rc = store_message(w, m, key);
		if (rc == SQLITE_DONE) {
			m->status = WRITER_OK;
			stored++;
			if (!single)
				writer_tx(w, ST_RELEASE);
		} else {
			m->status = classify(rc);
			log_err("event=store_failed msgid=%s %s", m->public_id, writer_db_error(w, why, sizeof(why)));
			if (!single) {
				writer_tx(w, ST_ROLLBACK_TO);
				writer_tx(w, ST_RELEASE);
			}
		}
	}
	rc = stored > 0 ? writer_tx(w, ST_COMMIT) : writer_tx(w, ST_ROLLBACK);
	if (stored > 0 && rc != SQLITE_OK) {
		log_err("event=store_commit_failed messages=%d %s", count, writer_db_error(w, why, sizeof(why)));
		writer_tx(w, ST_ROLLBACK);
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
