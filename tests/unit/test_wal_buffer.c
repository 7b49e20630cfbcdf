/*
 * test_wal_buffer.c: the writer's VFS (db/wal_buffer.h) keeps SQLite's
 * guarantees. Transactions of every size (a few rows; blobs past the
 * buffer and past the most one write may carry; a page cache so small
 * that frames spill and are read back before the commit; savepoints
 * rolled back) are seen whole by a second connection on the default VFS
 * right after each commit, a rolled back transaction leaves nothing, and
 * the file passes integrity_check when opened again without the VFS.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/store.h"
#include "db/wal_buffer.h"

#include "db_fixture.h"

static void
exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, msg ? msg : "?");
}

/* One row with a blob of n octets, each octet derived from id. */
static void
insert_blob(sqlite3 *db, int64_t id, size_t n)
{
	sqlite3_stmt *st;
	unsigned char *b = malloc(n ? n : 1);

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(id * 31 + (int64_t)i);
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t (id, v) VALUES (?1, ?2)", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_blob64(st, 2, b, n, SQLITE_TRANSIENT);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	free(b);
}

/* The octets of every row are what insert_blob wrote. */
static void
check_blobs(sqlite3 *db)
{
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_prepare_v2(db, "SELECT id, v FROM t", -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const unsigned char *b = sqlite3_column_blob(st, 1);
		int n = sqlite3_column_bytes(st, 1);
		for (int i = 0; i < n; i++)
			assert_int_equal(b[i], (unsigned char)(id * 31 + i));
	}
	sqlite3_finalize(st);
}

static void
test_registered(void **state)
{
	const char *name = wal_buffer_vfs();

	assert_non_null(name);
	assert_string_equal(name, wal_buffer_vfs());
	assert_non_null(sqlite3_vfs_find(name));
	/* never the default: other connections keep SQLite's own */
	assert_ptr_not_equal(sqlite3_vfs_find(NULL), sqlite3_vfs_find(name));
}

static void
test_commits_seen_whole(void **state)
{
	char err[256];
	sqlite3 *w = store_open_writer(path, err, sizeof(err));
	sqlite3 *r = store_open(path, err, sizeof(err));
	/* small rows; one page; past the buffer's most per write (120 KB)
	 * and past the buffer itself (1 MB) */
	static const size_t sizes[] = { 10, 4000, 4096, 70000, 130000, 500000, 1100000, 3000000 };
	int64_t id = 0, rows = 0, octets = 0;

	assert_non_null(w);
	assert_non_null(r);
	exec_ok(w, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
	for (int round = 0; round < 24; round++) {
		exec_ok(w, "BEGIN IMMEDIATE");
		for (int k = 0; k <= round % 5; k++) {
			size_t n = sizes[(size_t)(round + k) % (sizeof(sizes) / sizeof(sizes[0]))];
			exec_ok(w, "SAVEPOINT msg");
			insert_blob(w, ++id, n);
			if ((round + k) % 4 == 3) {
				/* one message of the batch fails: its rows go */
				exec_ok(w, "ROLLBACK TO msg");
			} else {
				rows++;
				octets += (int64_t)n;
			}
			exec_ok(w, "RELEASE msg");
		}
		if (round % 7 == 6) {
			exec_ok(w, "ROLLBACK");
			/* what the batch added is gone: count it back out */
			rows = scalar(w, "SELECT count(*) FROM t");
			octets = scalar(w, "SELECT coalesce(sum(length(v)), 0) FROM t");
		} else {
			exec_ok(w, "COMMIT");
		}
		assert_int_equal(scalar(r, "SELECT count(*) FROM t"), rows);
		assert_int_equal(scalar(r, "SELECT coalesce(sum(length(v)), 0) FROM t"), octets);
	}
	check_blobs(r);
	store_close(&r);
	store_close(&w);

	r = store_open(path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(scalar(r, "SELECT count(*) FROM t"), rows);
	assert_int_equal(scalar(r, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
	check_blobs(r);
	store_close(&r);
}

/* A transaction larger than the page cache writes frames before its
 * commit and reads them back: the buffer must be in the file first. */
static void
test_spilled_frames_read_back(void **state)
{
	char err[256];
	sqlite3 *w = store_open_writer(path, err, sizeof(err));
	sqlite3 *r = store_open(path, err, sizeof(err));

	assert_non_null(w);
	assert_non_null(r);
	exec_ok(w, "PRAGMA cache_size = 10");
	exec_ok(w, "CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)");
	exec_ok(w, "BEGIN IMMEDIATE");
	for (int64_t id = 1; id <= 400; id++)
		insert_blob(w, id, 3000);
	/* every page again, in the same transaction */
	exec_ok(w, "UPDATE t SET v = v WHERE id % 3 = 0");
	assert_int_equal(scalar(w, "SELECT count(*) FROM t"), 400);
	check_blobs(w);
	assert_int_equal(scalar(r, "SELECT count(*) FROM t"), 0);
	exec_ok(w, "COMMIT");
	assert_int_equal(scalar(r, "SELECT count(*) FROM t"), 400);
	check_blobs(r);
	/* and a checkpoint by the writer's own connection reads them all */
	exec_ok(w, "PRAGMA wal_checkpoint(TRUNCATE)");
	store_close(&w);
	assert_int_equal(scalar(r, "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
	check_blobs(r);
	store_close(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commits_seen_whole, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spilled_frames_read_back, setup, teardown),
		cmocka_unit_test(test_registered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
