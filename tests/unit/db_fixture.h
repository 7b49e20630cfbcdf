/*
 * db_fixture.h: what the unit tests of db/ share: a database path in a
 * fresh temporary folder per test (the cmocka setup and teardown) and
 * one-value queries. Include after cmocka.h and sqlite3.h.
 */
#ifndef SUBMITD_TEST_DB_FIXTURE_H
#define SUBMITD_TEST_DB_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static char dir[64];
static char path[128];

/* dir: a new empty folder; path: the database file in it. */
static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/submitd-unit-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/submitd.db", dir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[160];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

/* The first column of the first row of sql; -1 when there is no row. */
static int64_t
scalar(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v = -1;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

#endif
