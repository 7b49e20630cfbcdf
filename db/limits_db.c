/*
 * limits_db.c: see limits_db.h. Times are stored as text
 * ("YYYY-MM-DD HH:MM:SS.sss", store_time), which sorts as time does, so
 * the windows are ranges on messages_received_at.
 */
#include "db/limits_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/store.h"

#define TEXT(st, i) ((const char *)sqlite3_column_text((st), (i)))

static int
fail(sqlite3 *db, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", sqlite3_errmsg(db));
	return -1;
}

/* Unix milliseconds of a stored time: store_time_parse keeps seconds. */
static int64_t
time_ms(const char *s)
{
	int64_t ms = store_time_parse(s) * 1000;

	if (s != NULL && strlen(s) >= 23 && s[19] == '.')
		ms += strtol(s + 20, NULL, 10);
	return ms;
}

static int64_t
col_override(sqlite3_stmt *st, int i)
{
	return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, i);
}

int
limits_db_policies(sqlite3 *db, limits_db_policy_fn fn, void *arg)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, "SELECT login, disabled, messages_per_hour, recipients_per_day FROM login_policies",
	    -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct limits_db_policy p = {
			.login = TEXT(st, 0), .disabled = sqlite3_column_int(st, 1) != 0,
			.messages_per_hour = col_override(st, 2), .recipients_per_day = col_override(st, 3),
		};
		fn(&p, arg);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int
limits_db_accepted_since(sqlite3 *db, int64_t since_ms, limits_db_accepted_fn fn, void *arg)
{
	sqlite3_stmt *st;
	char since[24];
	int rc;

	store_time(since_ms, since);
	/* envelope_from '' is a bounce of ours: MAIL FROM:<> is refused */
	rc = sqlite3_prepare_v2(db, "SELECT m.auth_login, m.client_address, m.received_at, "
	    "(SELECT count(*) FROM recipients r WHERE r.message_id = m.message_id) FROM messages m "
	    "WHERE m.received_at >= ?1 AND m.envelope_from <> '' ORDER BY m.received_at", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_text(st, 1, since, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(TEXT(st, 0), TEXT(st, 1), time_ms(TEXT(st, 2)), sqlite3_column_int64(st, 3), arg);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Run sql (?1 login, ?2 now, ?3 value) once; 0 or -1 with err. */
static int
policy_write(sqlite3 *db, const char *sql, const char *login, int64_t now_ms, int64_t value, char *err,
    size_t errlen)
{
	sqlite3_stmt *st;
	char now[24];
	int rc;

	store_time(now_ms, now);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail(db, err, errlen);
	sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
	if (value >= 0)
		sqlite3_bind_int64(st, 3, value);
	else
		sqlite3_bind_null(st, 3);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : fail(db, err, errlen);
}

int
limits_db_set_disabled(sqlite3 *db, const char *login, bool disabled, int64_t now_ms, char *err, size_t errlen)
{
	return policy_write(db, "INSERT INTO login_policies (login, disabled, updated_at) VALUES (?1, ?3, ?2) "
	    "ON CONFLICT (login) DO UPDATE SET disabled = excluded.disabled, updated_at = excluded.updated_at",
	    login, now_ms, disabled ? 1 : 0, err, errlen);
}

int
limits_db_set_override(sqlite3 *db, const char *login, const char *column, int64_t value, int64_t now_ms,
    char *err, size_t errlen)
{
	const char *sql;

	if (strcmp(column, "messages_per_hour") == 0)
		sql = "INSERT INTO login_policies (login, messages_per_hour, updated_at) VALUES (?1, ?3, ?2) "
		    "ON CONFLICT (login) DO UPDATE SET messages_per_hour = excluded.messages_per_hour, "
		    "updated_at = excluded.updated_at";
	else if (strcmp(column, "recipients_per_day") == 0)
		sql = "INSERT INTO login_policies (login, recipients_per_day, updated_at) VALUES (?1, ?3, ?2) "
		    "ON CONFLICT (login) DO UPDATE SET recipients_per_day = excluded.recipients_per_day, "
		    "updated_at = excluded.updated_at";
	else {
		snprintf(err, errlen, "unknown limit %s", column);
		return -1;
	}
	return policy_write(db, sql, login, now_ms, value, err, errlen);
}

int
limits_db_logins(sqlite3 *db, int64_t now_ms, int64_t messages_window_s, int64_t recipients_window_s,
    limits_db_login_fn fn, void *arg)
{
	sqlite3_stmt *st;
	char msince[24], rsince[24];
	int rc;

	store_time(now_ms - messages_window_s * 1000, msince);
	store_time(now_ms - recipients_window_s * 1000, rsince);
	rc = sqlite3_prepare_v2(db,
	    "WITH logins(login) AS (SELECT login FROM users UNION SELECT login FROM login_policies "
	    "  UNION SELECT auth_login FROM messages WHERE auth_login IS NOT NULL AND received_at >= min(?1, ?2)) "
	    "SELECT l.login, coalesce(p.disabled, 0), p.messages_per_hour, p.recipients_per_day, "
	    "  (SELECT count(*) FROM messages m WHERE m.auth_login = l.login AND m.received_at >= ?1), "
	    "  (SELECT count(*) FROM messages m JOIN recipients r USING (message_id) "
	    "   WHERE m.auth_login = l.login AND m.received_at >= ?2), "
	    "  EXISTS (SELECT 1 FROM users u WHERE u.login = l.login) "
	    "FROM logins l LEFT JOIN login_policies p ON p.login = l.login ORDER BY l.login", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return rc;
	sqlite3_bind_text(st, 1, msince, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rsince, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct limits_db_login l = {
			.policy = { .login = TEXT(st, 0), .disabled = sqlite3_column_int(st, 1) != 0,
			    .messages_per_hour = col_override(st, 2), .recipients_per_day = col_override(st, 3) },
			.messages = sqlite3_column_int64(st, 4), .recipients = sqlite3_column_int64(st, 5),
			.internal_user = sqlite3_column_int(st, 6) != 0,
		};
		fn(&l, arg);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int
limits_db_release(sqlite3 *db, int64_t since_ms, int64_t until_ms, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	char since[24], until[24];
	int rc;

	store_time(since_ms, since);
	store_time(until_ms, until);
	if (sqlite3_prepare_v2(db, "UPDATE recipients SET unrouted = 0 WHERE unrouted = 1 "
	    "AND state IN ('queued', 'deferred') AND message_id IN "
	    "(SELECT message_id FROM messages WHERE received_at >= ?1 AND received_at <= ?2)", -1, &st, NULL) != SQLITE_OK)
		return fail(db, err, errlen);
	sqlite3_bind_text(st, 1, since, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, until, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? sqlite3_changes(db) : fail(db, err, errlen);
}

int
limits_db_drop_login(sqlite3 *db, const char *login, int64_t now_ms, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	char now[24];
	int rc;

	store_time(now_ms, now);
	if (sqlite3_prepare_v2(db, "UPDATE recipients SET state = 'failed', last_reply = 'dropped by the "
	    "administrator', updated_at = ?2 WHERE state IN ('queued', 'deferred') AND message_id IN "
	    "(SELECT message_id FROM messages WHERE auth_login = ?1 COLLATE NOCASE)", -1, &st, NULL) != SQLITE_OK)
		return fail(db, err, errlen);
	sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? sqlite3_changes(db) : fail(db, err, errlen);
}
