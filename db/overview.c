/*
 * overview.c: see overview.h. The views hold the joins and the state
 * names, so each listing here is one SELECT; what a row means is in
 * docs/schema.md. A step that fails ends a listing with the rows read so
 * far, as submitctl's listings always did; only a failed prepare is an
 * error.
 */
#include "db/overview.h"

#include <stdio.h>

#define TEXT(st, i) ((const char *)sqlite3_column_text((st), (i)))

static sqlite3_stmt *
prepare(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return NULL;
	}
	return st;
}

int
overview_users(sqlite3 *db, void (*fn)(const struct overview_user *u, void *arg), void *arg,
    char *err, size_t errlen)
{
	sqlite3_stmt *st = prepare(db, "SELECT login, created_at, coalesce(extra_addresses, '') "
	    "FROM user_overview ORDER BY login", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	for (; sqlite3_step(st) == SQLITE_ROW; n++) {
		struct overview_user u = { TEXT(st, 0), TEXT(st, 1), TEXT(st, 2) };
		fn(&u, arg);
	}
	sqlite3_finalize(st);
	return n;
}

int
overview_login_addresses(sqlite3 *db, const char *login,
    void (*fn)(const struct overview_login_address *a, void *arg), void *arg, char *err, size_t errlen)
{
	sqlite3_stmt *st = prepare(db, "SELECT login, address, internal_user FROM login_address_overview "
	    "WHERE ?1 IS NULL OR login = ?1 ORDER BY login, address", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	if (login)
		sqlite3_bind_text(st, 1, login, -1, SQLITE_STATIC);
	for (; sqlite3_step(st) == SQLITE_ROW; n++) {
		struct overview_login_address a = { TEXT(st, 0), TEXT(st, 1), sqlite3_column_int(st, 2) != 0 };
		fn(&a, arg);
	}
	sqlite3_finalize(st);
	return n;
}

int
overview_keys(sqlite3 *db, void (*fn)(const struct overview_key *k, void *arg), void *arg,
    char *err, size_t errlen)
{
	sqlite3_stmt *st = prepare(db, "SELECT key_id, state, created_at, coalesce(retired_at, '-'), tokens, "
	    "coalesce(last_token_expires_at, '-') FROM key_overview ORDER BY created_at", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	for (; sqlite3_step(st) == SQLITE_ROW; n++) {
		struct overview_key k = {
			.key_id = TEXT(st, 0), .state = TEXT(st, 1), .created_at = TEXT(st, 2),
			.retired_at = TEXT(st, 3), .tokens = sqlite3_column_int64(st, 4),
			.last_token_expires_at = TEXT(st, 5),
		};
		fn(&k, arg);
	}
	sqlite3_finalize(st);
	return n;
}

int
overview_services(sqlite3 *db, void (*fn)(const struct overview_service *s, void *arg), void *arg,
    char *err, size_t errlen)
{
	sqlite3_stmt *st = prepare(db, "SELECT name, created_at FROM services ORDER BY name", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	for (; sqlite3_step(st) == SQLITE_ROW; n++) {
		struct overview_service s = { TEXT(st, 0), TEXT(st, 1) };
		fn(&s, arg);
	}
	sqlite3_finalize(st);
	return n;
}

int
overview_messages(sqlite3 *db, int64_t limit, void (*fn)(const struct overview_message *m, void *arg),
    void *arg, char *err, size_t errlen)
{
	sqlite3_stmt *st = prepare(db, "SELECT public_id, received_at, auth_login, envelope_from, size, "
	    "recipients FROM message_overview ORDER BY received_at DESC LIMIT ?1", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, limit);
	for (; sqlite3_step(st) == SQLITE_ROW; n++) {
		struct overview_message m = {
			.public_id = TEXT(st, 0), .received_at = TEXT(st, 1), .login = TEXT(st, 2),
			.envelope_from = TEXT(st, 3), .size = sqlite3_column_int64(st, 4),
			.recipients = sqlite3_column_int64(st, 5),
		};
		fn(&m, arg);
	}
	sqlite3_finalize(st);
	return n;
}

int
overview_message(sqlite3 *db, const char *public_id, void (*fn)(const struct overview_message *m, void *arg),
    void *arg, char *err, size_t errlen)
{
	sqlite3_stmt *st = prepare(db, "SELECT public_id, received_at, auth_login, client_address, "
	    "envelope_from, size, sha256, has_body FROM message_overview WHERE public_id = ?1", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		struct overview_message m = {
			.public_id = TEXT(st, 0), .received_at = TEXT(st, 1), .login = TEXT(st, 2),
			.client_address = TEXT(st, 3), .envelope_from = TEXT(st, 4),
			.size = sqlite3_column_int64(st, 5), .sha256 = TEXT(st, 6),
			.has_body = sqlite3_column_int(st, 7) != 0,
		};
		fn(&m, arg);
		n = 1;
	}
	sqlite3_finalize(st);
	return n;
}

int
overview_recipients(sqlite3 *db, const char *public_id,
    void (*fn)(const struct overview_recipient *r, void *arg), void *arg, char *err, size_t errlen)
{
	sqlite3_stmt *st = prepare(db, "SELECT position, address, state FROM recipient_overview "
	    "WHERE public_id = ?1 ORDER BY position", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	for (; sqlite3_step(st) == SQLITE_ROW; n++) {
		struct overview_recipient r = { sqlite3_column_int(st, 0), TEXT(st, 1), TEXT(st, 2) };
		fn(&r, arg);
	}
	sqlite3_finalize(st);
	return n;
}

int
overview_tokens(sqlite3 *db, const char *public_id, void (*fn)(const struct overview_token *t, void *arg),
    void *arg, char *err, size_t errlen)
{
	sqlite3_stmt *st = prepare(db, "SELECT token_id, role, address, status, expires_at FROM token_overview "
	    "WHERE public_id = ?1 ORDER BY role DESC, token_id", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	for (; sqlite3_step(st) == SQLITE_ROW; n++) {
		struct overview_token t = { TEXT(st, 0), TEXT(st, 1), TEXT(st, 2), TEXT(st, 3), TEXT(st, 4) };
		fn(&t, arg);
	}
	sqlite3_finalize(st);
	return n;
}

int
overview_queue(sqlite3 *db, const char *public_id, void (*fn)(const struct overview_queue *q, void *arg),
    void *arg, char *err, size_t errlen)
{
	/* a held recipient shows why it waits: held:no_next_hop, held:login_disabled */
	sqlite3_stmt *st = prepare(db, "SELECT public_id, position, address, coalesce('held:' || hold, state), attempts, "
	    "coalesce(next_attempt_at, 'now'), coalesce(last_reply, '') FROM queue_overview "
	    "WHERE ?1 IS NULL OR public_id = ?1 ORDER BY received_at, position", err, errlen);
	int n = 0;

	if (st == NULL)
		return -1;
	if (public_id)
		sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	for (; sqlite3_step(st) == SQLITE_ROW; n++) {
		struct overview_queue q = {
			.public_id = TEXT(st, 0), .position = sqlite3_column_int(st, 1), .address = TEXT(st, 2),
			.state = TEXT(st, 3), .attempts = sqlite3_column_int(st, 4),
			.next_attempt_at = TEXT(st, 5), .last_reply = TEXT(st, 6),
		};
		fn(&q, arg);
	}
	sqlite3_finalize(st);
	return n;
}
