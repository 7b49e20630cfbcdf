/*
 * sent.c: see sent.h. Statements are prepared per call, as in queue.c: a
 * scan or a result is one call per job, and the writer thread that runs
 * them keeps no state of ours. The one statement on the hot path, the
 * job's INSERT, is the writer's own prepared statement (sent_job_insert_sql).
 */
#include "db/sent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/bodies.h"
#include "db/store.h"
#include "server/base/util.h"

const char sent_job_insert_sql[] =
    "INSERT INTO sent_jobs (message_id, login, next_attempt_at) SELECT ?1, ?2, ?3 "
    "WHERE coalesce((SELECT enabled FROM sent_settings WHERE login = ?2), ?4)";

static int
fail(sqlite3 *db, int rc, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", sqlite3_errmsg(db));
	return rc;
}

static char *
col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *v = sqlite3_column_text(st, i);
	return v ? xstrdup((const char *)v) : NULL;
}

void
sent_task_free(struct sent_task **tp)
{
	struct sent_task *t = *tp;

	if (t == NULL)
		return;
	free(t->login);
	free(t->mailbox);
	free(t->head);
	free(t);
	*tp = NULL;
}

static bool
skipped(int64_t id, const int64_t *skip, size_t nskip)
{
	for (size_t i = 0; i < nskip; i++)
		if (skip[i] == id)
			return true;
	return false;
}

static void
read_head(sqlite3 *db, struct sent_task *t)
{
	sqlite3_blob *blob = NULL;

	if (bodies_open(db, t->message_id, &blob, NULL, 0) != SQLITE_OK)
		return;
	size_t n = (size_t)sqlite3_blob_bytes(blob);
	if (n > SENT_HEAD_MAX)
		n = SENT_HEAD_MAX;
	t->head = xmalloc(n + 1);
	if (sqlite3_blob_read(blob, t->head, (int)n, 0) == SQLITE_OK)
		t->head_len = n;
	t->head[t->head_len] = '\0';
	sqlite3_blob_close(blob);
}

int
sent_scan(sqlite3 *db, int64_t now_ms, const int64_t *skip, size_t nskip, size_t limit, size_t want,
    struct sent_task **list_r, int64_t *pending_r, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	struct sent_task **tail = list_r;
	char now[24];
	size_t found = 0;
	int rc;

	*list_r = NULL;
	*pending_r = 0;
	store_time(now_ms, now);
	rc = sqlite3_prepare_v2(db,
	    "SELECT j.message_id, m.public_id, j.login, m.received_at, m.size, m.sha256, "
	    "       m.body_id IS NOT NULL, "
	    "       j.attempts, j.append_sent, j.mailbox "
	    "FROM sent_jobs j JOIN messages m USING (message_id) "
	    "WHERE j.state IN ('pending', 'filing') AND j.next_attempt_at <= ?1 "
	    "ORDER BY j.next_attempt_at LIMIT ?2", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	while (found < want && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		struct sent_task *t;

		if (skipped(id, skip, nskip))
			continue;
		t = xcalloc(1, sizeof(*t));
		t->message_id = id;
		snprintf(t->public_id, sizeof(t->public_id), "%s", sqlite3_column_text(st, 1));
		t->login = col_dup(st, 2);
		t->received_s = store_time_parse((const char *)sqlite3_column_text(st, 3));
		t->size = sqlite3_column_int64(st, 4);
		snprintf(t->sha256, sizeof(t->sha256), "%s", sqlite3_column_text(st, 5));
		t->has_body = sqlite3_column_int(st, 6) != 0;
		t->attempts = sqlite3_column_int(st, 7);
		t->append_sent = sqlite3_column_int(st, 8) != 0;
		t->mailbox = col_dup(st, 9);
		if (t->append_sent && t->has_body)
			read_head(db, t);
		*tail = t;
		tail = &t->next;
		found++;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		fail(db, rc, err, errlen);
	else
		rc = SQLITE_OK;
	sqlite3_finalize(st);
	if (rc != SQLITE_OK)
		return rc;
	/* the sent_jobs_due index answers this without touching the rows */
	rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sent_jobs WHERE state IN ('pending', 'filing')", -1, &st,
	    NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	if (sqlite3_step(st) == SQLITE_ROW)
		*pending_r = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return SQLITE_OK;
}

/* Run an UPDATE of one job; SQLITE_OK or the error. */
static int
update(sqlite3 *db, sqlite3_stmt *st, char *err, size_t errlen)
{
	int rc = sqlite3_step(st);

	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return fail(db, rc, err, errlen);
	return SQLITE_OK;
}

int
sent_mark_append(sqlite3 *db, int64_t message_id, const char *mailbox, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, "UPDATE sent_jobs SET state = 'filing', append_sent = 1, mailbox = ?2 "
	    "WHERE message_id = ?1", -1, &st, NULL);

	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	sqlite3_bind_int64(st, 1, message_id);
	sqlite3_bind_text(st, 2, mailbox, -1, SQLITE_STATIC);
	return update(db, st, err, errlen);
}

int
sent_record_filed(sqlite3 *db, int64_t message_id, const char *mailbox, int64_t uidvalidity, int64_t uid,
    int64_t now_ms, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	char now[24];
	int rc = sqlite3_prepare_v2(db, "UPDATE sent_jobs SET state = 'filed', attempts = attempts + 1, "
	    "last_error = NULL, mailbox = ?2, uidvalidity = ?3, uid = ?4, filed_at = ?5 WHERE message_id = ?1",
	    -1, &st, NULL);

	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	store_time(now_ms, now);
	sqlite3_bind_int64(st, 1, message_id);
	sqlite3_bind_text(st, 2, mailbox, -1, SQLITE_STATIC);
	/* 0: the server answered without UIDPLUS */
	if (uidvalidity > 0)
		sqlite3_bind_int64(st, 3, uidvalidity);
	if (uid > 0)
		sqlite3_bind_int64(st, 4, uid);
	sqlite3_bind_text(st, 5, now, -1, SQLITE_STATIC);
	return update(db, st, err, errlen);
}

int
sent_record_retry(sqlite3 *db, int64_t message_id, const char *error, int64_t now_ms, int64_t retry_s,
    int64_t lifetime, bool fatal, bool *failed_r, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int64_t received = 0;
	char next[24];
	int rc;

	rc = sqlite3_prepare_v2(db, "SELECT received_at FROM messages WHERE message_id = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	sqlite3_bind_int64(st, 1, message_id);
	if (sqlite3_step(st) == SQLITE_ROW)
		received = store_time_parse((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	*failed_r = fatal || now_ms / 1000 - received >= lifetime;
	store_time(now_ms + retry_s * 1000, next);
	rc = sqlite3_prepare_v2(db, "UPDATE sent_jobs SET state = ?2, attempts = attempts + 1, last_error = ?3, "
	    "next_attempt_at = ?4 WHERE message_id = ?1", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return fail(db, rc, err, errlen);
	sqlite3_bind_int64(st, 1, message_id);
	sqlite3_bind_text(st, 2, *failed_r ? "failed" : "pending", -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, next, -1, SQLITE_STATIC);
	return update(db, st, err, errlen);
}

int
sent_setting_set(sqlite3 *db, const char *login, int enabled, int64_t now_ms, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	char now[24];
	int rc;

	if (enabled < 0)
		rc = sqlite3_prepare_v2(db, "DELETE FROM sent_settings WHERE login = ?1", -1, &st, NULL);
	else
		rc = sqlite3_prepare_v2(db, "INSERT INTO sent_settings (login, enabled, updated_at) VALUES (?1, ?2, ?3) "
		    "ON CONFLICT (login) DO UPDATE SET enabled = ?2, updated_at = ?3", -1, &st, NULL);
	if (rc != SQLITE_OK) {
		fail(db, rc, err, errlen);
		return -1;
	}
	store_time(now_ms, now);
	sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
	if (enabled >= 0) {
		sqlite3_bind_int(st, 2, enabled);
		sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
	}
	rc = update(db, st, err, errlen);
	return rc == SQLITE_OK ? 0 : -1;
}

int
sent_settings_list(sqlite3 *db, void (*fn)(const struct sent_setting *s, void *arg), void *arg,
    char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int n = 0;

	if (sqlite3_prepare_v2(db, "SELECT login, enabled, updated_at FROM sent_settings ORDER BY login", -1, &st,
	    NULL) != SQLITE_OK) {
		fail(db, 0, err, errlen);
		return -1;
	}
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct sent_setting s = {
			.login = (const char *)sqlite3_column_text(st, 0),
			.enabled = sqlite3_column_int(st, 1) != 0,
			.updated_at = (const char *)sqlite3_column_text(st, 2),
		};
		fn(&s, arg);
		n++;
	}
	sqlite3_finalize(st);
	return n;
}

int
sent_state_get(sqlite3 *db, const char *public_id, void (*fn)(const struct sent_state *s, void *arg),
    void *arg, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int n = 0;

	if (sqlite3_prepare_v2(db, "SELECT state, attempts, next_attempt_at, last_error, append_sent, mailbox, "
	    "uidvalidity, uid, filed_at FROM sent_overview WHERE public_id = ?1", -1, &st, NULL) != SQLITE_OK) {
		fail(db, 0, err, errlen);
		return -1;
	}
	sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		struct sent_state s = {
			.state = (const char *)sqlite3_column_text(st, 0),
			.attempts = sqlite3_column_int64(st, 1),
			.next_attempt_at = (const char *)sqlite3_column_text(st, 2),
			.last_error = (const char *)sqlite3_column_text(st, 3),
			.append_sent = sqlite3_column_int(st, 4) != 0,
			.mailbox = (const char *)sqlite3_column_text(st, 5),
			.uidvalidity = sqlite3_column_int64(st, 6),
			.uid = sqlite3_column_int64(st, 7),
			.filed_at = (const char *)sqlite3_column_text(st, 8),
		};
		fn(&s, arg);
		n = 1;
	}
	sqlite3_finalize(st);
	return n;
}
