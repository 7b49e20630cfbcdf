/*
 * dkim_store.c: see dkim_store.h. Every statement of DKIM but the writer's
 * insert, which it prepares with its own (dkim_store_message_sql).
 */
#include "db/dkim_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/store.h"
#include "server/base/util.h"

const char dkim_store_active_sql[] = "SELECT EXISTS (SELECT 1 FROM dkim_keys WHERE state = 'active')";
const char dkim_store_message_sql[] = "INSERT INTO message_dkim (message_id, headers) VALUES (?1, ?2)";

void
dkim_keys_free(struct dkim_keys *keys)
{
	for (size_t i = 0; i < keys->n; i++) {
		if (keys->v[i].private_key) {
			/* not secret once freed, but no reason to leave it lying in the heap */
			memset(keys->v[i].private_key, 0, strlen(keys->v[i].private_key));
			free(keys->v[i].private_key);
		}
		free(keys->v[i].public_key);
	}
	free(keys->v);
	keys->v = NULL;
	keys->n = 0;
}

int
dkim_store_add(sqlite3 *db, const struct dkim_key *k, int64_t now_ms, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	char created[24];
	int rc;

	if (sqlite3_prepare_v2(db, "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, "
	    "state, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6)", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	store_time(now_ms, created);
	sqlite3_bind_text(st, 1, k->domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, k->selector, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, k->algorithm, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, k->private_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, k->public_key, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, created, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if ((rc & 0xff) == SQLITE_CONSTRAINT)
		return 1;
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

int
dkim_store_retire(sqlite3 *db, const char *domain, const char *selector, int64_t now_ms, char *err,
    size_t errlen)
{
	sqlite3_stmt *st;
	char at[24];
	int rc;

	if (sqlite3_prepare_v2(db, "UPDATE dkim_keys SET state = 'retired', retired_at = ?3 "
	    "WHERE domain = ?1 AND selector = ?2 AND state = 'active'", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	store_time(now_ms, at);
	sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, selector, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, at, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	return sqlite3_changes(db) > 0 ? 0 : 1;
}

static void
copy_col(char *dst, size_t len, sqlite3_stmt *st, int col)
{
	const unsigned char *s = sqlite3_column_text(st, col);
	snprintf(dst, len, "%s", s ? (const char *)s : "");
}

const char dkim_store_keys_sql[] =
    "SELECT domain, selector, algorithm, private_key, public_key, state, created_at, "
    "retired_at FROM dkim_keys WHERE (?1 = 0 OR state = 'active') AND (?2 IS NULL OR domain = ?2) "
    "ORDER BY domain, selector";

int
dkim_store_keys(sqlite3 *db, bool active_only, bool with_private, const char *domain,
    struct dkim_keys *out, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc;

	out->v = NULL;
	out->n = 0;
	if (sqlite3_prepare_v2(db, dkim_store_keys_sql, -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	rc = dkim_store_keys_with(st, active_only, with_private, domain, out, err, errlen);
	sqlite3_finalize(st);
	return rc;
}

int
dkim_store_keys_with(sqlite3_stmt *st, bool active_only, bool with_private, const char *domain,
    struct dkim_keys *out, char *err, size_t errlen)
{
	size_t cap = 0;
	int rc;

	out->v = NULL;
	out->n = 0;
	sqlite3_bind_int(st, 1, active_only);
	if (domain)
		sqlite3_bind_text(st, 2, domain, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 2);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct dkim_key *k;
		if (out->n == cap) {
			cap = cap ? cap * 2 : 8;
			out->v = xrealloc(out->v, cap * sizeof(*out->v));
		}
		k = &out->v[out->n++];
		memset(k, 0, sizeof(*k));
		copy_col(k->domain, sizeof(k->domain), st, 0);
		copy_col(k->selector, sizeof(k->selector), st, 1);
		copy_col(k->algorithm, sizeof(k->algorithm), st, 2);
		if (with_private)
			k->private_key = xstrdup((const char *)sqlite3_column_text(st, 3));
		k->public_key = xstrdup((const char *)sqlite3_column_text(st, 4));
		copy_col(k->state, sizeof(k->state), st, 5);
		copy_col(k->created_at, sizeof(k->created_at), st, 6);
		copy_col(k->retired_at, sizeof(k->retired_at), st, 7);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
		dkim_keys_free(out);
		return -1;
	}
	return 0;
}

static bool
str_equal(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

bool
dkim_keys_equal(const struct dkim_keys *a, const struct dkim_keys *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct dkim_key *x = &a->v[i], *y = &b->v[i];
		if (strcmp(x->domain, y->domain) != 0 || strcmp(x->selector, y->selector) != 0 ||
		    strcmp(x->algorithm, y->algorithm) != 0 || strcmp(x->state, y->state) != 0 ||
		    strcmp(x->created_at, y->created_at) != 0 || strcmp(x->retired_at, y->retired_at) != 0 ||
		    !str_equal(x->private_key, y->private_key) || !str_equal(x->public_key, y->public_key))
			return false;
	}
	return true;
}
