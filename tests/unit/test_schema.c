/*
 * test_schema.c: the migrations and the schema's guarantees: a new
 * database reaches the current version, migrating again is a no-op, a
 * database from a newer build is refused, the file is 0600, constraints
 * hold (STRICT types, one active key, cascades), the admin views run,
 * migration 4 carries the users' sender addresses over to logins, and
 * the Sent filing's jobs and settings (db/sent.h) work through their
 * statements, migration 6's holds and policies (db/limits_db.h) with
 * the relay's scan (db/queue.h), and the DKIM keys (db/dkim_store.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "db/bodies.h"
#include "db/dkim_store.h"
#include "db/limits_db.h"
#include "db/peer_keys.h"
#include "db/queue.h"
#include "db/retention.h"
#include "db/sent.h"
#include "db/store.h"
#include "tokens/keyring.h"

#include "db_fixture.h"

static int
exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static void
test_fresh_and_again(void **state)
{
	char err[256];
	struct stat sb;
	sqlite3 *db = store_open(path, err, sizeof(err));

	assert_non_null(db);
	assert_int_equal(scalar(db, "PRAGMA user_version"), store_schema_version());
	assert_int_equal(scalar(db, "PRAGMA foreign_keys"), 1);
	assert_int_equal(scalar(db, "PRAGMA synchronous"), 2);     /* FULL */
	assert_int_equal(scalar(db, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
	/* every table is STRICT */
	assert_int_equal(scalar(db, "SELECT count(*) FROM pragma_table_list WHERE schema = 'main' "
	    "AND type = 'table' AND name NOT LIKE 'sqlite_%' AND strict = 0"), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'view'"), 10);
	assert_int_equal(scalar(db, "PRAGMA auto_vacuum"), 2);    /* INCREMENTAL */
	assert_int_equal(store_migrate(db, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "PRAGMA user_version"), store_schema_version());
	store_close(&db);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);

	db = store_open(path, err, sizeof(err));
	assert_non_null(db);
	store_close(&db);
}

static void
test_newer_refused(void **state)
{
	char err[256], sql[64];
	sqlite3 *db = store_open(path, err, sizeof(err));

	assert_non_null(db);
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", store_schema_version() + 1);
	assert_int_equal(exec(db, sql), SQLITE_OK);
	store_close(&db);
	assert_null(store_open(path, err, sizeof(err)));
	assert_non_null(strstr(err, "newer than this build"));
}

static void
test_constraints_and_views(void **state)
{
	char err[256];
	sqlite3 *db = store_open(path, err, sizeof(err));
	struct token_key k1, k2;

	assert_non_null(db);
	/* users: argon2id hashes only, logins unique without regard to case */
	assert_int_equal(store_user_add(db, "alice@example.org", "$argon2id$v=19$m=65536,t=2,p=1$x$y", err, sizeof(err)), 0);
	assert_int_equal(store_user_add(db, "ALICE@example.org", "$argon2id$v=19$m=65536,t=2,p=1$x$y", err, sizeof(err)), 1);
	assert_int_equal(store_user_add(db, "bob", "plaintext", err, sizeof(err)), -1);
	assert_int_equal(store_address_add(db, "alice@example.org", "alias@example.org", true, err, sizeof(err)), 0);
	assert_int_equal(store_address_add(db, "nobody", "x@example.org", true, err, sizeof(err)), 1);
	/* a login only Dovecot knows: no users row needed (need_user false) */
	assert_int_equal(store_address_add(db, "dove@example.org", "x@example.org", false, err, sizeof(err)), 0);
	assert_int_equal(store_address_add(db, "other", "X@example.org", false, err, sizeof(err)), 1);
	assert_int_equal(store_address_add(db, "other", "ALIAS@example.org", false, err, sizeof(err)), 1);
	/* a login with a users row keeps its stored spelling */
	assert_int_equal(store_address_add(db, "ALICE@EXAMPLE.ORG", "second@example.org", false, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM login_addresses WHERE login = 'alice@example.org' "
	    "COLLATE BINARY"), 2);
	{
		char **a = NULL;
		assert_int_equal(store_login_addresses(db, "Dove@Example.org", &a), 0);
		assert_non_null(a);
		assert_string_equal(a[0], "x@example.org");
		assert_null(a[1]);
		free(a[0]);
		free(a);
		assert_int_equal(store_login_addresses(db, "nobody", &a), 0);
		assert_null(a[0]);
		free(a);
	}
	assert_int_equal(scalar(db, "SELECT count(*) FROM login_address_overview WHERE internal_user"), 2);
	assert_int_equal(store_address_del(db, "dove@example.org", "x@example.org", err, sizeof(err)), 0);
	assert_int_equal(store_address_del(db, "dove@example.org", "x@example.org", err, sizeof(err)), 1);

	/* STRICT: a text size is refused */
	assert_int_not_equal(exec(db, "INSERT INTO messages (public_id, received_at, client_address, helo, "
	    "envelope_from, body_type, smtputf8, size, sha256) VALUES ('a', 'now', '::1', 'h', 'f', '7BIT', 0, "
	    "'big', '0000000000000000000000000000000000000000000000000000000000000000')"), SQLITE_OK);
	assert_int_equal(exec(db, "INSERT INTO messages (public_id, received_at, auth_login, client_address, helo, "
	    "envelope_from, body_type, smtputf8, size, sha256) VALUES ('m1', '2026-11-29 00:00:00.000', "
	    "'alice@example.org', '::1', 'h', 'alice@example.org', '7BIT', 0, 5, "
	    "'0000000000000000000000000000000000000000000000000000000000000000');"
	    "INSERT INTO bodies (sha256, content) SELECT sha256, x'68656c6c6f' FROM messages;"
	    "UPDATE messages SET body_id = 1 WHERE message_id = 1;"
	    "INSERT INTO recipients (message_id, position, address, updated_at) VALUES (1, 1, 'r@x', 'now');"), SQLITE_OK);

	/* one active key at most */
	assert_true(sodium_init() >= 0);
	token_key_generate(&k1, 1000);
	token_key_generate(&k2, 2000);
	assert_int_equal(store_key_insert(db, &k1, err, sizeof(err)), 0);
	assert_int_equal(store_key_insert(db, &k2, err, sizeof(err)), -1);
	assert_int_equal(store_key_ensure(db, 3000, err, sizeof(err)), 0);
	assert_int_equal(store_key_rotate(db, 4000, &k2, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM signing_keys WHERE state = 'active'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM signing_keys"), 2);

	/* a sender token has no recipient, a recipient token must have one */
	assert_int_not_equal(exec(db, "INSERT INTO tokens (token_id, message_id, recipient_id, role, address, key_id, "
	    "issued_at, expires_at) SELECT 't0', 1, NULL, 'recipient', 'r@x', key_id, 'a', 'b' FROM signing_keys LIMIT 1"),
	    SQLITE_OK);
	assert_int_equal(exec(db, "INSERT INTO tokens (token_id, message_id, recipient_id, role, address, key_id, "
	    "issued_at, expires_at) SELECT 't1', 1, 1, 'recipient', 'r@x', key_id, '2026-01-01', '2999-01-01' "
	    "FROM signing_keys WHERE state = 'retired'"), SQLITE_OK);
	{
		/* one prepared lookup answers revocation, "on record" and the
		 * message; reused across tokens */
		sqlite3_stmt *cache = NULL;
		struct store_token_check k = { .db = db, .stmt = &cache };

		assert_false(store_token_check_revoked("t1", &k));
		assert_int_equal(k.found, 1);
		assert_string_equal(k.info.public_id, "m1");
		assert_string_equal(k.info.address, "r@x");
		assert_string_equal(k.info.role, "recipient");
		assert_true(k.info.has_body);
		assert_int_equal(k.info.size, 5);
		assert_int_equal(store_token_check_finish(&k, TOKEN_VALID, "t1"), TOKEN_VALID);
		assert_int_equal(store_token_check_finish(&k, TOKEN_BAD_SIGNATURE, "t1"), TOKEN_BAD_SIGNATURE);
		assert_false(store_token_check_revoked("unknown", &k));
		assert_int_equal(k.found, 0);
		assert_null(k.info.address);
		assert_int_equal(store_token_check_finish(&k, TOKEN_VALID, "unknown"), TOKEN_EXPIRED);
		assert_int_equal(store_token_revoke(db, "t1", 5000, err, sizeof(err)), 0);
		assert_true(store_token_check_revoked("t1", &k));
		assert_int_equal(store_token_check_finish(&k, TOKEN_VALID, "t1"), TOKEN_REVOKED);
		store_token_info_free(&k.info);

		/* without the callback having run, finish looks it up itself */
		struct store_token_check again = { .db = db, .stmt = &cache };
		assert_int_equal(store_token_check_finish(&again, TOKEN_VALID, "t1"), TOKEN_REVOKED);
		store_token_info_free(&again.info);
		sqlite3_finalize(cache);
	}

	/* views answer */
	assert_int_equal(scalar(db, "SELECT recipients FROM message_overview WHERE public_id = 'm1'"), 1);
	assert_int_equal(scalar(db, "SELECT messages FROM user_overview WHERE login = 'alice@example.org'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM token_overview WHERE status = 'revoked'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM recipient_overview"), 1);
	assert_int_equal(scalar(db, "SELECT tokens FROM key_overview WHERE state = 'retired'"), 1);

	/* deleting a message takes its body, recipients and tokens along */
	assert_int_equal(exec(db, "DELETE FROM messages WHERE public_id = 'm1'"), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM message_bodies"), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM bodies"), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM recipients"), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM tokens"), 0);

	/* deleting a user takes its addresses (a trigger), not others' */
	assert_int_equal(store_address_add(db, "dove@example.org", "x@example.org", false, err, sizeof(err)), 0);
	assert_int_equal(store_user_del(db, "alice@example.org", err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM login_addresses WHERE login = 'alice@example.org'"), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM login_addresses"), 1);
	store_close(&db);
}

/* Migration 4 moves each user's addresses to login_addresses, keyed by
 * the login as stored. */
static void
test_migration_4(void **state)
{
	char err[256];
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(exec(db, "PRAGMA foreign_keys = ON"), SQLITE_OK);
	assert_int_equal(store_migrate_to(db, 3, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "PRAGMA user_version"), 3);
	assert_int_equal(exec(db, "INSERT INTO users (login, password_hash, created_at, updated_at) VALUES "
	    "('Alice@example.org', '$argon2id$x', 'a', 'a'), ('bob', '$argon2id$y', 'b', 'b');"
	    "INSERT INTO user_addresses (address, user_id) VALUES ('sales@example.org', 1), "
	    "('info@example.org', 1), ('bob@example.net', 2)"), SQLITE_OK);
	assert_int_equal(store_migrate_to(db, 4, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "PRAGMA user_version"), 4);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'user_addresses'"), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM login_addresses WHERE login = 'Alice@example.org' "
	    "COLLATE BINARY"), 2);
	assert_int_equal(scalar(db, "SELECT count(*) FROM login_addresses WHERE login = 'bob'"), 1);
	assert_int_equal(scalar(db, "SELECT length(extra_addresses) FROM user_overview WHERE login = 'alice@example.org'"),
	    (int64_t)strlen("info@example.org sales@example.org"));
	assert_int_equal(exec(db, "DELETE FROM users WHERE login = 'BOB'"), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM login_addresses"), 2);
	sqlite3_close(db);
}

static void
count_setting(const struct sent_setting *st, void *arg)
{
	(*(int *)arg)++;
}

static void
copy_state(const struct sent_state *st, void *arg)
{
	snprintf(arg, 32, "%s/%lld/%lld", st->state, (long long)st->attempts, (long long)st->uid);
}

/* The job's INSERT as the writer runs it: the login's setting, else the
 * default; then a scan, the mark, a retry, the lifetime, the record. */
static void
test_sent_jobs(void **state)
{
	char err[256], text[32];
	sqlite3 *db = store_open(path, err, sizeof(err));
	sqlite3_stmt *ins;
	struct sent_task *list = NULL;
	int64_t pending = -1, skip[1];
	bool failed;
	int n = 0;

	assert_non_null(db);
	for (int i = 1; i <= 4; i++) {
		char sql[768];
		snprintf(sql, sizeof(sql), "INSERT INTO messages (public_id, received_at, auth_login, client_address, "
		    "helo, envelope_from, body_type, smtputf8, size, sha256) VALUES ('m%d', '2026-11-29 00:00:0%d.000', "
		    "'u%d', '::1', 'h', 'f', '7BIT', 0, 5, '%064d'); INSERT INTO bodies (sha256, content) "
		    "VALUES ('%064d', x'4d6573736167652d49443a203c61406b3e0d0a0d0a6869') ON CONFLICT DO NOTHING; "
		    "UPDATE messages SET body_id = 1 WHERE message_id = %d;", i, i, i, 0, 0, i);
		assert_int_equal(exec(db, sql), SQLITE_OK);
	}
	/* u2 off, u3 on, by login text without regard to case; u1, u4 default */
	assert_int_equal(sent_setting_set(db, "U2", 0, 1000, err, sizeof(err)), 0);
	assert_int_equal(sent_setting_set(db, "u3", 1, 1000, err, sizeof(err)), 0);
	assert_int_equal(sent_setting_set(db, "u3", 1, 2000, err, sizeof(err)), 0);
	assert_int_equal(sent_settings_list(db, count_setting, &n, err, sizeof(err)), 2);
	assert_int_equal(sqlite3_prepare_v2(db, sent_job_insert_sql, -1, &ins, NULL), SQLITE_OK);
	for (int i = 1; i <= 4; i++) {
		char login[8];
		snprintf(login, sizeof(login), "u%d", i);
		sqlite3_bind_int64(ins, 1, i);
		sqlite3_bind_text(ins, 2, login, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(ins, 3, "2026-11-29 00:00:00.000", -1, SQLITE_STATIC);
		sqlite3_bind_int(ins, 4, i == 4 ? 0 : 1);    /* u4 sees sent.default = off */
		assert_int_equal(sqlite3_step(ins), SQLITE_DONE);
		sqlite3_reset(ins);
	}
	sqlite3_finalize(ins);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sent_jobs"), 2);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sent_jobs WHERE login IN ('u1', 'u3')"), 2);
	/* a job is for a message: no orphan */
	assert_int_not_equal(exec(db, "INSERT INTO sent_jobs (message_id, login, next_attempt_at) VALUES (99, 'x', 'n')"),
	    SQLITE_OK);
	assert_int_not_equal(exec(db, "UPDATE sent_jobs SET state = 'lost'"), SQLITE_OK);

	/* due: both; skipping message 1 leaves message 3 */
	skip[0] = 1;
	assert_int_equal(sent_scan(db, 1796000000000LL, skip, 1, 10, 10, &list, &pending, err, sizeof(err)), SQLITE_OK);
	assert_int_equal(pending, 2);
	assert_non_null(list);
	assert_null(list->next);
	assert_int_equal(list->message_id, 3);
	assert_string_equal(list->login, "u3");
	assert_int_equal(list->size, 5);
	assert_true(list->has_body);
	assert_false(list->append_sent);
	assert_null(list->head);
	sent_task_free(&list);

	/* marked: the next scan brings the head of the body for the search */
	assert_int_equal(sent_mark_append(db, 3, "Sent", err, sizeof(err)), SQLITE_OK);
	assert_int_equal(sent_record_retry(db, 3, "timeout", 1796000000000LL, 30, 86400 * 365 * 10, false, &failed,
	    err, sizeof(err)), SQLITE_OK);
	assert_false(failed);
	assert_int_equal(sent_scan(db, 1796000000000LL + 31000, skip, 1, 10, 10, &list, &pending, err, sizeof(err)),
	    SQLITE_OK);
	assert_non_null(list);
	assert_true(list->append_sent);
	assert_string_equal(list->mailbox, "Sent");
	assert_int_equal(list->head_len, 23);
	assert_int_equal(list->attempts, 1);
	sent_task_free(&list);
	/* not due yet */
	assert_int_equal(sent_scan(db, 1796000000000LL + 1000, skip, 1, 10, 10, &list, &pending, err, sizeof(err)),
	    SQLITE_OK);
	assert_null(list);

	/* filed, then shown; the lifetime fails message 1 */
	assert_int_equal(sent_record_filed(db, 3, "Sent", 77, 5, 1796000000000LL, err, sizeof(err)), SQLITE_OK);
	assert_int_equal(sent_state_get(db, "m3", copy_state, text, err, sizeof(err)), 1);
	assert_string_equal(text, "filed/2/5");
	assert_int_equal(sent_record_retry(db, 1, "refused", 1796000000000LL, 30, 60, false, &failed, err,
	    sizeof(err)), SQLITE_OK);
	assert_true(failed);
	assert_int_equal(sent_state_get(db, "m1", copy_state, text, err, sizeof(err)), 1);
	assert_string_equal(text, "failed/1/0");
	assert_int_equal(sent_state_get(db, "m2", copy_state, text, err, sizeof(err)), 0);
	assert_int_equal(sent_scan(db, 1796000000000LL, NULL, 0, 10, 10, &list, &pending, err, sizeof(err)), SQLITE_OK);
	assert_null(list);
	assert_int_equal(pending, 0);

	/* back to the default; deleting a message takes its job */
	assert_int_equal(sent_setting_set(db, "u2", -1, 3000, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sent_settings"), 1);
	assert_int_equal(exec(db, "DELETE FROM messages WHERE public_id = 'm3'"), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sent_jobs"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sent_overview"), 1);
	store_close(&db);
}

/* DKIM keys: unique per domain and selector without regard to case, a
 * PEM private key, retire once; listings with and without the private
 * key; message_dkim goes with its message. */
static void
test_dkim_keys(void **state)
{
	char err[256];
	sqlite3 *db = store_open(path, err, sizeof(err));
	struct dkim_key k;
	struct dkim_keys keys;

	assert_non_null(db);
	memset(&k, 0, sizeof(k));
	snprintf(k.domain, sizeof(k.domain), "example.org");
	snprintf(k.selector, sizeof(k.selector), "s1");
	snprintf(k.algorithm, sizeof(k.algorithm), "rsa-sha256");
	k.private_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
	k.public_key = "AAAA";
	assert_int_equal(dkim_store_add(db, &k, 1000, err, sizeof(err)), 0);
	snprintf(k.domain, sizeof(k.domain), "EXAMPLE.org");
	snprintf(k.selector, sizeof(k.selector), "S1");
	assert_int_equal(dkim_store_add(db, &k, 1000, err, sizeof(err)), 1);
	snprintf(k.selector, sizeof(k.selector), "s2");
	snprintf(k.algorithm, sizeof(k.algorithm), "ed25519-sha256");
	assert_int_equal(dkim_store_add(db, &k, 1000, err, sizeof(err)), 0);
	snprintf(k.selector, sizeof(k.selector), "s3");
	k.private_key = "not a pem";
	assert_int_equal(dkim_store_add(db, &k, 1000, err, sizeof(err)), 1);
	snprintf(k.algorithm, sizeof(k.algorithm), "dsa");
	k.private_key = "-----BEGIN PRIVATE KEY-----\n";
	assert_int_equal(dkim_store_add(db, &k, 1000, err, sizeof(err)), 1);

	assert_int_equal(dkim_store_keys(db, true, true, NULL, &keys, err, sizeof(err)), 0);
	assert_int_equal(keys.n, 2);
	assert_non_null(keys.v[0].private_key);
	/* the signer's prepared statement gives the same list, run again after
	 * a domain filter (its binding must not stay) */
	{
		sqlite3_stmt *st;
		struct dkim_keys again;
		assert_int_equal(sqlite3_prepare_v2(db, dkim_store_keys_sql, -1, &st, NULL), SQLITE_OK);
		assert_int_equal(dkim_store_keys_with(st, true, true, "none.example", &again, err, sizeof(err)), 0);
		assert_int_equal(again.n, 0);
		assert_false(dkim_keys_equal(&keys, &again));
		dkim_keys_free(&again);
		assert_int_equal(dkim_store_keys_with(st, true, true, NULL, &again, err, sizeof(err)), 0);
		assert_true(dkim_keys_equal(&keys, &again));
		snprintf(again.v[1].selector, sizeof(again.v[1].selector), "other");
		assert_false(dkim_keys_equal(&keys, &again));
		dkim_keys_free(&again);
		sqlite3_finalize(st);
	}
	dkim_keys_free(&keys);
	assert_int_equal(dkim_store_retire(db, "example.ORG", "s1", 2000, err, sizeof(err)), 0);
	assert_int_equal(dkim_store_retire(db, "example.org", "s1", 2000, err, sizeof(err)), 1);
	assert_int_equal(dkim_store_keys(db, true, false, "example.org", &keys, err, sizeof(err)), 0);
	assert_int_equal(keys.n, 1);
	assert_string_equal(keys.v[0].selector, "s2");
	assert_null(keys.v[0].private_key);
	dkim_keys_free(&keys);
	assert_int_equal(dkim_store_keys(db, false, false, NULL, &keys, err, sizeof(err)), 0);
	assert_int_equal(keys.n, 2);
	assert_string_equal(keys.v[0].state, "retired");
	assert_string_not_equal(keys.v[0].retired_at, "");
	dkim_keys_free(&keys);

	assert_int_equal(exec(db, "INSERT INTO messages (public_id, received_at, client_address, helo, envelope_from, "
	    "body_type, smtputf8, size, sha256) VALUES ('d1', 'now', '::1', 'h', 'f', '7BIT', 0, 0, "
	    "'0000000000000000000000000000000000000000000000000000000000000000')"), SQLITE_OK);
	assert_int_equal(exec(db, "INSERT INTO message_dkim VALUES (last_insert_rowid(), 'DKIM-Signature: x\r\n')"),
	    SQLITE_OK);
	assert_int_equal(exec(db, "INSERT INTO message_dkim VALUES (999, 'x')") & 0xff, SQLITE_CONSTRAINT);
	assert_int_equal(exec(db, "DELETE FROM messages WHERE public_id = 'd1'"), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM message_dkim"), 0);
	store_close(&db);
}

static void
count_policy(const struct limits_db_policy *p, void *arg)
{
	int *n = arg;
	if (strcasecmp(p->login, "u2") == 0 && p->disabled && p->messages_per_hour == -1 && p->recipients_per_day == 7)
		n[0]++;
	n[1]++;
}

static void
count_accepted(const char *login, const char *client, int64_t at_ms, int64_t nrcpt, void *arg)
{
	int64_t *sum = arg;
	sum[0]++;
	sum[1] += nrcpt;
	sum[2] = at_ms;
}

static size_t
scan_count(sqlite3 *db)
{
	struct queue_task *list = NULL, *t;
	char err[256];
	size_t n = 0;

	assert_int_equal(queue_scan(db, 1796000000000LL, NULL, 0, 100, 100, &list, err, sizeof(err)), SQLITE_OK);
	while ((t = list) != NULL) {
		list = t->next;
		n++;
		queue_task_free(&t);
	}
	return n;
}

/* Migration 6: rows from before are routed; unrouted recipients and the
 * mail of a disabled login are not due; release and drop by login. */
static void
test_limits_and_holds(void **state)
{
	char err[256];
	sqlite3 *db;
	int pol[2] = { 0, 0 };
	int64_t acc[3] = { 0, 0, 0 };

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(exec(db, "PRAGMA foreign_keys = ON"), SQLITE_OK);
	assert_int_equal(store_migrate_to(db, 5, err, sizeof(err)), 0);
	for (int i = 1; i <= 3; i++) {
		char sql[640];
		snprintf(sql, sizeof(sql), "INSERT INTO messages (public_id, received_at, auth_login, client_address, "
		    "helo, envelope_from, body_type, smtputf8, size, sha256) VALUES ('m%d', '2026-11-29 00:00:0%d.250', "
		    "'u%d', '::1', 'h', '%s', '7BIT', 0, 2, '%064d'); INSERT INTO message_bodies VALUES (%d, x'6869');"
		    "INSERT INTO recipients (message_id, position, address, updated_at) VALUES (%d, 1, 'r@x', 'n');",
		    i, i, i, i == 3 ? "" : "f", 0, i, i);
		assert_int_equal(exec(db, sql), SQLITE_OK);
	}
	assert_int_equal(store_migrate(db, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM recipients WHERE unrouted = 0"), 3);
	assert_int_equal(scan_count(db), 3);
	assert_int_not_equal(exec(db, "UPDATE recipients SET unrouted = 2"), SQLITE_OK);
	assert_int_not_equal(exec(db, "INSERT INTO login_policies (login, messages_per_hour, updated_at) "
	    "VALUES ('x', -1, 'n')"), SQLITE_OK);

	/* m1 unrouted, u2 disabled: only m3 (a bounce) is due */
	assert_int_equal(exec(db, "UPDATE recipients SET unrouted = 1 WHERE message_id = 1"), SQLITE_OK);
	assert_int_equal(limits_db_set_disabled(db, "U2", true, 1000, err, sizeof(err)), 0);
	assert_int_equal(limits_db_set_override(db, "u2", "recipients_per_day", 7, 1000, err, sizeof(err)), 0);
	assert_int_equal(limits_db_set_override(db, "u2", "bogus", 7, 1000, err, sizeof(err)), -1);
	assert_int_equal(scan_count(db), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM queue_overview WHERE hold = 'no_next_hop'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM queue_overview WHERE hold = 'login_disabled'"), 1);
	assert_int_equal(limits_db_policies(db, count_policy, pol), SQLITE_OK);
	assert_int_equal(pol[0], 1);
	assert_int_equal(pol[1], 1);

	/* the counts at startup leave the bounce out and keep milliseconds */
	assert_int_equal(limits_db_accepted_since(db, store_time_parse("2026-11-29 00:00:02") * 1000, count_accepted,
	    acc), SQLITE_OK);
	assert_int_equal(acc[0], 1);
	assert_int_equal(acc[1], 1);
	assert_int_equal(acc[2], store_time_parse("2026-11-29 00:00:02") * 1000 + 250);

	/* release outside the range: nothing; inside: m1 is due */
	assert_int_equal(limits_db_release(db, store_time_parse("2026-11-29 00:00:02") * 1000,
	    store_time_parse("2026-11-29 00:00:09") * 1000, err, sizeof(err)), 0);
	assert_int_equal(limits_db_release(db, 0, store_time_parse("2026-11-29 00:00:01") * 1000 + 250, err,
	    sizeof(err)), 1);
	assert_int_equal(scan_count(db), 2);
	/* enabled: m2 is due again; dropped: it fails */
	assert_int_equal(limits_db_set_disabled(db, "u2", false, 2000, err, sizeof(err)), 0);
	assert_int_equal(scan_count(db), 3);
	assert_int_equal(limits_db_drop_login(db, "U2", 3000, err, sizeof(err)), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM recipients WHERE state = 'failed'"), 1);
	assert_int_equal(scan_count(db), 2);
	sqlite3_close(db);
}

static void
add_message(sqlite3 *db, int i, const char *login, const char *received, char sha)
{
	char sql[640];

	snprintf(sql, sizeof(sql), "INSERT INTO messages (public_id, received_at, auth_login, client_address, "
	    "helo, envelope_from, body_type, smtputf8, size, sha256) VALUES ('m%d', '%s', '%s', '::1', 'h', "
	    "'f', '7BIT', 0, 2, printf('%%.64c', '%c'));", i, received, login, sha);
	assert_int_equal(exec(db, sql), SQLITE_OK);
}

/* Migration 8 moves version 7's message_bodies into bodies, one row per
 * SHA-256 with the count of its messages; message_bodies stays a view
 * whose DELETE purges; the duplicate lookup has its index. */
static void
test_migration_8(void **state)
{
	char err[256];
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(exec(db, "PRAGMA foreign_keys = ON"), SQLITE_OK);
	assert_int_equal(store_migrate_to(db, 7, err, sizeof(err)), 0);
	add_message(db, 1, "u", "2026-11-29 00:00:01.000", 'a');
	add_message(db, 2, "u", "2026-11-29 00:00:02.000", 'a');
	add_message(db, 3, "u", "2026-11-29 00:00:03.000", 'b');
	add_message(db, 4, "u", "2026-11-29 00:00:04.000", 'c');     /* purged before: no body */
	assert_int_equal(exec(db, "INSERT INTO message_bodies VALUES (1, x'6869'), (2, x'6869'), (3, x'686f')"),
	    SQLITE_OK);
	assert_int_equal(store_migrate_to(db, 8, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM bodies"), 2);
	assert_int_equal(scalar(db, "SELECT refs FROM body_overview WHERE sha256 LIKE 'a%'"), 2);
	assert_int_equal(scalar(db, "SELECT refs FROM body_overview WHERE sha256 LIKE 'b%'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM messages WHERE body_id IS NULL"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM message_bodies WHERE content = x'6869'"), 2);
	assert_int_equal(scalar(db, "SELECT sum(has_body) FROM message_overview"), 3);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'messages_dedup'"), 1);
	/* a DELETE through the old table's name purges: the body stays for m2 */
	assert_int_equal(exec(db, "DELETE FROM message_bodies WHERE message_id = 1"), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT refs FROM body_overview WHERE sha256 LIKE 'a%'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM messages WHERE message_id = 1 AND body_id IS NULL"), 1);
	assert_int_equal(exec(db, "DELETE FROM message_bodies WHERE message_id = 2"), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM bodies WHERE sha256 LIKE 'a%'"), 0);
	sqlite3_close(db);
}

/* The duplicate check's lookup (db/writer_store.c) uses its index. */
static int
plan_uses(sqlite3 *db, const char *sql, const char *index)
{
	sqlite3_stmt *st;
	char q[512];
	int found = 0;

	snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
	assert_int_equal(sqlite3_prepare_v2(db, q, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		found |= strstr((const char *)sqlite3_column_text(st, 3), index) != NULL;
	sqlite3_finalize(st);
	return found;
}

/* The references through every path: the writer's find-or-insert
 * (bodies_put), a purge (retention), a DELETE of the message; a body
 * goes with its last reference. */
static void
test_single_instance(void **state)
{
	char err[256], sha_a[65], sha_b[65], buf[8];
	sqlite3 *db = store_open(path, err, sizeof(err));
	sqlite3_blob *blob = NULL;
	int64_t id1 = 0, id2 = 0, id3 = 0;
	int purged = 0;

	assert_non_null(db);
	memset(sha_a, 'a', 64);
	memset(sha_b, 'b', 64);
	sha_a[64] = sha_b[64] = '\0';
	assert_int_equal(bodies_put(db, sha_a, "hello", 5, &id1), SQLITE_OK);
	assert_int_equal(bodies_put(db, sha_a, "hello", 5, &id2), SQLITE_OK);
	assert_int_equal(bodies_put(db, sha_b, NULL, 0, &id3), SQLITE_OK);
	assert_int_equal(id1, id2);
	assert_true(id3 != id1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM bodies"), 2);
	add_message(db, 1, "u", "2026-11-29 00:00:01.000", 'a');
	add_message(db, 2, "u", "2026-11-29 00:00:02.000", 'a');
	add_message(db, 3, "u", "2999-01-01 00:00:00.000", 'a');
	assert_int_equal(exec(db, "UPDATE messages SET body_id = (SELECT body_id FROM bodies WHERE sha256 = "
	    "messages.sha256)"), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT refs FROM body_overview WHERE sha256 LIKE 'a%'"), 3);
	assert_int_equal(bodies_open(db, 2, &blob, err, sizeof(err)), SQLITE_OK);
	assert_int_equal(sqlite3_blob_bytes(blob), 5);
	assert_int_equal(sqlite3_blob_read(blob, buf, 5, 0), SQLITE_OK);
	assert_memory_equal(buf, "hello", 5);
	sqlite3_blob_close(blob);
	blob = NULL;
	assert_int_equal(scalar(db, "SELECT size FROM body_overview WHERE sha256 LIKE 'a%'"), 5);
	assert_true(plan_uses(db, "SELECT message_id FROM messages WHERE auth_login = 'u' AND "
	    "header_message_id = 'x@y' AND sha256 = 'a'", "messages_dedup"));

	/* retention takes the two old messages' references: one stays */
	assert_int_equal(retention_purge(db, store_time_parse("2026-12-01 00:00:00.000") * 1000, 100, false, &purged),
	    SQLITE_OK);
	assert_int_equal(purged, 2);
	assert_int_equal(scalar(db, "SELECT refs FROM body_overview WHERE sha256 LIKE 'a%'"), 1);
	assert_int_not_equal(bodies_open(db, 1, &blob, err, sizeof(err)), SQLITE_OK);
	assert_null(blob);
	assert_non_null(strstr(err, "no stored body"));
	assert_int_equal(bodies_open(db, 3, &blob, err, sizeof(err)), SQLITE_OK);
	sqlite3_blob_close(blob);
	/* the last reference goes with its message */
	assert_int_equal(exec(db, "DELETE FROM messages WHERE message_id = 3"), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM bodies WHERE sha256 LIKE 'a%'"), 0);
	/* a body no message took yet (the writer inserts it first) is for the
	 * caller's transaction to use or roll back: nothing deletes it */
	assert_int_equal(scalar(db, "SELECT refs FROM body_overview WHERE sha256 LIKE 'b%'"), 0);
	store_close(&db);
}

/* Keys learnt from a peer's answer are in the ring at once, survive a
 * reload until the database has them, and follow the same rules as
 * peer_keys_store: never one of our own, never another node's kid. */
/* Migration 10 merges the two token indexes by key and by expiry into
 * one on (key_id, expires_at): the rows stay, key_overview's count and
 * last expiry read the new index, and a lookup by key and expiry too. */
static void
test_migration_10(void **state)
{
	char err[256];
	sqlite3 *db;
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(store_migrate_to(db, 9, err, sizeof(err)), 0);
	assert_int_equal(exec(db, "INSERT INTO signing_keys VALUES ('k1', zeroblob(32), NULL, 'retired', 'c', 'r'), "
	    "('k2', zeroblob(32), NULL, 'active', 'c', NULL)"), SQLITE_OK);
	add_message(db, 1, "u", "2026-12-03 00:00:01.000", 'a');
	assert_int_equal(exec(db, "INSERT INTO tokens (token_id, message_id, role, address, key_id, issued_at, "
	    "expires_at) VALUES ('t1', 1, 'sender', 'a', 'k1', 'i', '2027-01-01 00:00:00'), "
	    "('t2', 1, 'sender', 'a', 'k1', 'i', '2027-02-01 00:00:00'), "
	    "('t3', 1, 'sender', 'a', 'k2', 'i', '2027-03-01 00:00:00')"), SQLITE_OK);
	assert_int_equal(store_migrate_to(db, 10, err, sizeof(err)), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_schema WHERE name IN ('tokens_key', "
	    "'tokens_expires_at')"), 0);
	assert_int_equal(scalar(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'tokens_key_expires'"), 1);
	assert_int_equal(scalar(db, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
	assert_int_equal(scalar(db, "SELECT tokens FROM key_overview WHERE key_id = 'k1'"), 2);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT last_token_expires_at FROM key_overview WHERE key_id = 'k1'",
	    -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "2027-02-01 00:00:00");
	sqlite3_finalize(st);
	/* both subqueries of the view use it, and a search by key and expiry */
	assert_true(plan_uses(db, "SELECT (SELECT count(*) FROM tokens t WHERE t.key_id = k.key_id) "
	    "FROM signing_keys k", "tokens_key_expires"));
	assert_true(plan_uses(db, "SELECT (SELECT max(t.expires_at) FROM tokens t WHERE t.key_id = k.key_id) "
	    "FROM signing_keys k", "tokens_key_expires"));
	assert_true(plan_uses(db, "SELECT * FROM key_overview", "tokens_key_expires"));
	assert_true(plan_uses(db, "SELECT token_id FROM tokens WHERE key_id = 'k1' AND expires_at < '2027-01-15'",
	    "tokens_key_expires"));
	sqlite3_close(db);
}

static void
test_peer_ring_learn(void **state)
{
	char err[256];
	sqlite3 *db = store_open(path, err, sizeof(err));
	struct peer_key k[2], mine;
	struct peer_ring r;
	struct keyring own;

	assert_non_null(db);
	memset(k, 0, sizeof(k));
	memset(&mine, 0, sizeof(mine));
	for (int i = 0; i < 2; i++) {
		struct token_key t;
		token_key_generate(&t, 1000);
		memcpy(k[i].pk, t.pk, sizeof(k[i].pk));
		memcpy(k[i].kid, t.kid, sizeof(k[i].kid));
	}
	keyring_init(&own);
	assert_int_equal(store_key_ensure(db, 1, err, sizeof(err)), 1);
	assert_int_equal(store_keys_load(db, &own), 0);
	memcpy(mine.kid, own.keys[0].kid, sizeof(mine.kid));
	memcpy(mine.pk, own.keys[0].pk, sizeof(mine.pk));
	assert_int_equal(peer_ring_init(db, &r, err, sizeof(err)), 0);
	assert_int_equal(peer_ring_refresh(db, &r), 1);
	assert_int_equal(r.ring.n, 0);
	/* nothing learnt yet: an empty list is fine */
	peer_ring_learn(&r, "n2", NULL, 0, &own);
	assert_int_equal(r.ring.n, 0);
	{
		struct peer_key two[2] = { k[0], mine };
		peer_ring_learn(&r, "n2", two, 2, &own);
	}
	assert_int_equal(r.ring.n, 1);
	assert_string_equal(peer_ring_node(&r, k[0].kid), "n2");
	assert_null(peer_ring_node(&r, mine.kid));
	/* n3 cannot take n2's kid */
	peer_ring_learn(&r, "n3", k, 2, &own);
	assert_string_equal(peer_ring_node(&r, k[0].kid), "n2");
	assert_string_equal(peer_ring_node(&r, k[1].kid), "n3");
	/* a reload before the writer stored them keeps them */
	r.seen_version = -1;
	assert_int_equal(peer_ring_refresh(db, &r), 1);
	assert_string_equal(peer_ring_node(&r, k[0].kid), "n2");
	assert_string_equal(peer_ring_node(&r, k[1].kid), "n3");
	/* stored: the database's rows take over */
	assert_int_equal(peer_keys_store(db, "n2", k, 1, 10000, 0), SQLITE_OK);
	r.seen_version = -1;         /* data_version counts other connections' commits */
	assert_int_equal(peer_ring_refresh(db, &r), 1);
	assert_int_equal(r.nlearnt, 1);
	assert_string_equal(peer_ring_node(&r, k[0].kid), "n2");
	assert_int_equal(r.ring.n, 2);
	/* n3 lists nothing now: its learnt key goes */
	peer_ring_learn(&r, "n3", NULL, 0, &own);
	r.seen_version = -1;
	assert_int_equal(peer_ring_refresh(db, &r), 1);
	assert_int_equal(r.ring.n, 1);
	assert_null(peer_ring_node(&r, k[1].kid));
	peer_ring_free(&r);
	keyring_free(&own);
	store_close(&db);
}

/* peer_keys (cluster): stored from a peer's listing, updated, kept when
 * no longer listed until forgotten, never taken over by another node or
 * from our own keys; loaded into a ring with each key's node. */
static void
test_peer_keys(void **state)
{
	char err[256];
	sqlite3 *db = store_open(path, err, sizeof(err));
	struct peer_key k[2];
	struct peer_ring r;
	struct token_key own;

	assert_non_null(db);
	memset(k, 0, sizeof(k));
	for (int i = 0; i < 2; i++) {
		struct token_key t;
		token_key_generate(&t, 1000);
		memcpy(k[i].pk, t.pk, sizeof(k[i].pk));
		memcpy(k[i].kid, t.kid, sizeof(k[i].kid));
		k[i].created_at = 1000;
	}
	k[1].state = TOKEN_KEY_RETIRED;
	k[1].retired_at = 2000;
	assert_int_equal(peer_ring_init(db, &r, err, sizeof(err)), 0);
	assert_int_equal(peer_keys_store(db, "n2", k, 2, 10000, 0), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM peer_keys WHERE node = 'n2'"), 2);
	assert_int_equal(scalar(db, "SELECT count(*) FROM peer_keys WHERE retired_at IS NOT NULL"), 1);
	/* another node cannot take n2's key */
	assert_int_equal(peer_keys_store(db, "n3", k, 1, 11000, 0), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM peer_keys WHERE node = 'n3'"), 0);
	/* our own key is never a peer's */
	assert_int_equal(store_key_ensure(db, 1, err, sizeof(err)), 1);
	assert_int_equal(store_keys_load(db, &r.ring), 0);
	own = r.ring.keys[0];
	{
		struct peer_key mine = { .state = TOKEN_KEY_ACTIVE };
		memcpy(mine.pk, own.pk, sizeof(mine.pk));
		memcpy(mine.kid, own.kid, sizeof(mine.kid));
		assert_int_equal(peer_keys_store(db, "n3", &mine, 1, 11000, 0), SQLITE_OK);
		assert_int_equal(scalar(db, "SELECT count(*) FROM peer_keys WHERE node = 'n3'"), 0);
	}
	/* n2 lists only the first now: the second stays, then is forgotten */
	k[0].state = TOKEN_KEY_RETIRED;
	k[0].retired_at = 3000;
	assert_int_equal(peer_keys_store(db, "n2", k, 1, 20000, 5000), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM peer_keys WHERE node = 'n2'"), 2);
	assert_int_equal(scalar(db, "SELECT count(*) FROM peer_keys WHERE state = 'retired'"), 2);
	assert_int_equal(peer_keys_store(db, "n2", k, 1, 30000, 15000), SQLITE_OK);
	assert_int_equal(scalar(db, "SELECT count(*) FROM peer_keys WHERE node = 'n2'"), 1);
	/* the ring, with nodes; nothing to reload a second time */
	keyring_free(&r.ring);
	r.seen_version = -1;
	assert_int_equal(peer_ring_refresh(db, &r), 1);
	assert_int_equal(r.ring.n, 1);
	assert_string_equal(peer_ring_node(&r, k[0].kid), "n2");
	assert_null(peer_ring_node(&r, k[1].kid));
	assert_int_equal(peer_ring_refresh(db, &r), 0);
	/* an empty list stores nothing, forgets by age alone */
	assert_int_equal(peer_keys_store(db, "n4", NULL, 0, 40000, 0), SQLITE_OK);
	peer_ring_free(&r);
	store_close(&db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fresh_and_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_constraints_and_views, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sent_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dkim_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limits_and_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_8, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_10, setup, teardown),
		cmocka_unit_test_setup_teardown(test_single_instance, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_ring_learn, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
