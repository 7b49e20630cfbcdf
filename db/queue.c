/*
 * queue.c: see queue.h. The statements are prepared per call: a scan, a
 * try's results or a bounce is one call per message or per scan, not per
 * line, and the writer thread that runs them keeps no state of ours.
 */
#include "db/queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "db/bodies.h"
#include "db/store.h"

/* The due-recipient condition, shared by the scan and the task loading
 * so that both agree on what "due" means. An unrouted recipient (accepted
 * while no next hop was configured) waits for `submitctl queue release`;
 * the partial index recipients_due holds only the others, so a database
 * full of them costs the scan nothing. */
#define DUE "state IN ('queued', 'deferred') AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) " \
	"AND unrouted = 0"
/* The mail of a disabled login is held, not sent, until it is enabled
 * again (or the mail dropped): `submitctl user disable`. */
#define NOT_HELD "NOT EXISTS (SELECT 1 FROM login_policies p WHERE p.login = m.auth_login AND p.disabled = 1)"

static char *
col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *v = sqlite3_column_text(st, i);
	return xstrdup(v ? (const char *)v : "");
}

static int
fail(sqlite3 *db, int rc, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", sqlite3_errmsg(db));
	return rc;
}

void
queue_task_free(struct queue_task **tp)
{
	struct queue_task *t = *tp;

	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nrcpt; i++) {
		free(t->rcpts[i].address);
		free(t->rcpts[i].reply);
	}
	free(t->rcpts);
	free(t->sender);
	free(t->helo);
	free(t->client);
	free(t->auth_login);
	free(t->body_type);
	free(t->prepend);
	free(t);
	*tp = NULL;
}

/* The message of row m of the scan, with its due recipients (r, the
 * statement of ?1 now and ?2 the message). */
static struct queue_task *
load_task(sqlite3_stmt *m, sqlite3_stmt *r)
{
	struct queue_task *t = xcalloc(1, sizeof(*t));

	t->message_id = sqlite3_column_int64(m, 0);
	snprintf(t->public_id, sizeof(t->public_id), "%s", sqlite3_column_text(m, 1));
	snprintf(t->received_at, sizeof(t->received_at), "%s", sqlite3_column_text(m, 2));
	t->sender = col_dup(m, 3);
	t->helo = col_dup(m, 4);
	t->client = col_dup(m, 5);
	t->auth_login = col_dup(m, 6);
	t->body_type = col_dup(m, 7);
	t->smtputf8 = sqlite3_column_int(m, 8) != 0;
	t->size = sqlite3_column_int64(m, 9);
	t->has_body = sqlite3_column_int(m, 10) != 0;
	if (sqlite3_column_type(m, 11) != SQLITE_NULL)
		t->prepend = col_dup(m, 11);
	sqlite3_bind_int64(r, 2, t->message_id);
	while (sqlite3_step(r) == SQLITE_ROW) {
		t->rcpts = xrealloc(t->rcpts, (t->nrcpt + 1) * sizeof(*t->rcpts));
		memset(&t->rcpts[t->nrcpt], 0, sizeof(*t->rcpts));
		t->rcpts[t->nrcpt].id = sqlite3_column_int64(r, 0);
		t->rcpts[t->nrcpt].address = col_dup(r, 1);
		t->nrcpt++;
	}
	sqlite3_reset(r);
	return t;
}

int
queue_scan(sqlite3 *db, int64_t now_ms, const int64_t *skip, size_t nskip, size_t limit, size_t want,
    struct queue_task **list_r, char *err, size_t errlen)
{
	struct queue_task **tail = list_r;
	sqlite3_stmt *st, *r;
	char now[24];
	size_t got = 0;

	*list_r = NULL;
	store_time(now_ms, now);
	if (sqlite3_prepare_v2(db,
	    "SELECT m.message_id, m.public_id, m.received_at, m.envelope_from, m.helo, m.client_address, "
	    "coalesce(m.auth_login, ''), m.body_type, m.smtputf8, m.size, "
	    "m.body_id IS NOT NULL, "
	    "(SELECT d.headers FROM message_dkim d WHERE d.message_id = m.message_id) FROM messages m "
	    "WHERE m.message_id IN (SELECT DISTINCT message_id FROM recipients INDEXED BY recipients_due WHERE " DUE ") "
	    "AND " NOT_HELD " "
	    "ORDER BY m.message_id LIMIT ?2", -1, &st, NULL) != SQLITE_OK)
		return fail(db, SQLITE_ERROR, err, errlen);
	if (sqlite3_prepare_v2(db, "SELECT recipient_id, address FROM recipients WHERE message_id = ?2 AND " DUE
	    " ORDER BY position", -1, &r, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return fail(db, SQLITE_ERROR, err, errlen);
	}
	sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	sqlite3_bind_text(r, 1, now, -1, SQLITE_STATIC);
	while (sqlite3_step(st) == SQLITE_ROW && got < want) {
		sqlite3_int64 id = sqlite3_column_int64(st, 0);
		struct queue_task *t;
		bool skipped = false;

		for (size_t i = 0; i < nskip && !skipped; i++)
			skipped = skip[i] == id;
		if (skipped)
			continue;
		t = load_task(st, r);
		if (t->nrcpt == 0) {
			queue_task_free(&t);
			continue;
		}
		*tail = t;
		tail = &t->next;
		got += t->has_body;
	}
	sqlite3_finalize(st);
	sqlite3_finalize(r);
	return SQLITE_OK;
}

int
queue_body_read(sqlite3 *db, int64_t message_id, int64_t off, void *buf, size_t n, char *err, size_t errlen)
{
	sqlite3_blob *blob = NULL;
	int rc;

	rc = bodies_open(db, message_id, &blob, err, errlen);
	if (rc == SQLITE_OK) {
		rc = sqlite3_blob_read(blob, buf, (int)n, (int)off);
		if (rc != SQLITE_OK)
			fail(db, rc, err, errlen);
	}
	sqlite3_blob_close(blob);
	return rc;
}

char *
queue_body_head(sqlite3 *db, int64_t message_id, size_t max, size_t *len_r)
{
	sqlite3_blob *blob = NULL;
	char *head = NULL;

	*len_r = 0;
	if (bodies_open(db, message_id, &blob, NULL, 0) != SQLITE_OK)
		return NULL;
	size_t n = (size_t)sqlite3_blob_bytes(blob) < max ? (size_t)sqlite3_blob_bytes(blob) : max;
	head = xmalloc(n + 1);
	if (sqlite3_blob_read(blob, head, (int)n, 0) == SQLITE_OK)
		*len_r = n;
	sqlite3_blob_close(blob);
	return head;
}

int
queue_record(sqlite3 *db, struct queue_task *t, int64_t now_s, int64_t lifetime, queue_backoff_fn backoff,
    void *arg)
{
	int64_t arrival = store_time_parse(t->received_at);
	sqlite3_stmt *st, *u = NULL;
	char now[24], next[24];
	int rc;

	store_time(now_s * 1000, now);
	/* Only rows still pending: an administrator may have dropped the
	 * recipient while this attempt was under way, and that stands. */
	rc = sqlite3_prepare_v2(db, "UPDATE recipients SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3, "
	    "last_reply = ?4, updated_at = ?5 WHERE recipient_id = ?1 AND state IN ('queued', 'deferred') "
	    "RETURNING attempts", -1, &st, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < t->nrcpt; i++) {
		struct queue_rcpt *rc_ = &t->rcpts[i];
		const char *state = rc_->result == QUEUE_DELIVERED ? "delivered" :
		    rc_->result == QUEUE_FAILED ? "failed" : "deferred";
		char *reply = rc_->reply ? rc_->reply : xstrdup("no reply");
		int attempts;

		rc_->reply = reply;
		rc_->recorded = false;
		if (rc_->result == QUEUE_DEFERRED && now_s - arrival >= lifetime) {
			char *why = xmalloc(strlen(reply) + 64);
			sprintf(why, "lifetime exceeded; last reply: %s", reply);
			free(reply);
			rc_->reply = reply = why;
			rc_->result = QUEUE_FAILED;
			state = "failed";
		}
		sqlite3_bind_int64(st, 1, rc_->id);
		sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
		sqlite3_bind_null(st, 3);
		sqlite3_bind_text(st, 4, reply, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, now, -1, SQLITE_STATIC);
		switch (sqlite3_step(st)) {
		case SQLITE_ROW:
			attempts = sqlite3_column_int(st, 0);
			break;
		case SQLITE_DONE:
			attempts = -1;   /* no longer pending: leave it alone */
			break;
		default:
			rc = SQLITE_ERROR;
			attempts = -1;
			break;
		}
		sqlite3_reset(st);
		if (rc != SQLITE_OK || attempts < 0)
			continue;
		rc_->recorded = true;
		if (rc_->result != QUEUE_DEFERRED)
			continue;
		/* the retry time depends on the attempts just counted */
		store_time((now_s + backoff(attempts, arg)) * 1000, next);
		if (u == NULL && sqlite3_prepare_v2(db, "UPDATE recipients SET next_attempt_at = ?2 WHERE recipient_id = ?1",
		    -1, &u, NULL) != SQLITE_OK)
			continue;
		sqlite3_bind_int64(u, 1, rc_->id);
		sqlite3_bind_text(u, 2, next, -1, SQLITE_STATIC);
		if (sqlite3_step(u) != SQLITE_DONE)
			rc = SQLITE_ERROR;
		sqlite3_reset(u);
	}
	sqlite3_finalize(st);
	sqlite3_finalize(u);
	return rc;
}

int
queue_bounce_insert(sqlite3 *db, const char *rcpt, const char *helo, int64_t now_s, const char *content,
    size_t len, char public_id_r[PUBLIC_ID_LEN + 1])
{
	char now[24], hex[65];
	unsigned char digest[32];
	bool eight = false;
	sqlite3_stmt *st;
	int rc;

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)content[i] >= 0x80)
			eight = true;
	crypto_hash_sha256(digest, (const unsigned char *)content, len);
	hex_encode(digest, sizeof(digest), hex);
	public_id_new(public_id_r);
	store_time(now_s * 1000, now);
	/* the body first: the message row takes its reference (bodies.h) */
	int64_t body_id = 0;
	rc = bodies_put(db, hex, content, len, &body_id);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_prepare_v2(db, "INSERT INTO messages (public_id, received_at, auth_login, client_address, helo, "
	    "envelope_from, body_type, smtputf8, size, sha256, body_id) "
	    "VALUES (?1, ?2, NULL, '127.0.0.1', ?3, '', ?4, 0, ?5, ?6, ?7)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 7, body_id);
		sqlite3_bind_text(st, 1, public_id_r, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, helo, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, eight ? "8BITMIME" : "7BIT", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)len);
		sqlite3_bind_text(st, 6, hex, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
	}
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_int64 id = sqlite3_last_insert_rowid(db);
	rc = sqlite3_prepare_v2(db, "INSERT INTO recipients (message_id, position, address, updated_at) "
		    "VALUES (?1, 1, ?2, ?3)", -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, rcpt, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
	}
	return rc;
}
