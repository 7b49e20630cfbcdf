/*
 * limits_db.h: the statements of the sending limits and holds
 * (docs/config.md#limits): the per-login policies (login_policies: the
 * disabled flag and limit overrides), the recent acceptances the daemon
 * counts again at startup, the counts submitctl shows, and the release of
 * unrouted recipients. Each takes the connection it runs on; the daemon
 * calls the readers at startup (before the loop runs) and from writer
 * jobs, submitctl calls the rest.
 */
#ifndef SUBMITD_LIMITS_DB_H
#define SUBMITD_LIMITS_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

/* One row of login_policies; an override of -1 means none (the
 * configured limit applies), 0 no limit. */
struct limits_db_policy {
	const char *login;
	bool disabled;
	int64_t messages_per_hour;
	int64_t recipients_per_day;
};
typedef void (*limits_db_policy_fn)(const struct limits_db_policy *p, void *arg);
/* Every policy row. SQLITE_OK or an error code. */
int limits_db_policies(sqlite3 *db, limits_db_policy_fn fn, void *arg);

/* One accepted message: login (NULL for a trusted client without AUTH),
 * client address, acceptance time (unix ms) and number of recipients. */
typedef void (*limits_db_accepted_fn)(const char *login, const char *client, int64_t at_ms, int64_t nrcpt,
    void *arg);
/* The messages accepted at or after since_ms (bounces left out), oldest
 * first. SQLITE_OK or an error code. */
int limits_db_accepted_since(sqlite3 *db, int64_t since_ms, limits_db_accepted_fn fn, void *arg);

/* Per-login changes by submitctl; a row is made as needed. 0, or -1 with err. */
int limits_db_set_disabled(sqlite3 *db, const char *login, bool disabled, int64_t now_ms, char *err, size_t errlen);
/* column is "messages_per_hour" or "recipients_per_day"; value -1 removes
 * the override. 0, or -1 with err (also for another column). */
int limits_db_set_override(sqlite3 *db, const char *login, const char *column, int64_t value, int64_t now_ms,
    char *err, size_t errlen);

/* A login as submitctl user list shows it: the policy (as above; no row:
 * not disabled, no overrides) and its counts in the windows that end now. */
struct limits_db_login {
	struct limits_db_policy policy;
	int64_t messages, recipients;
	bool internal_user;             /* has a row in users */
};
typedef void (*limits_db_login_fn)(const struct limits_db_login *l, void *arg);
/* Every login that is a user, has a policy or sent in the windows, by
 * login. SQLITE_OK or an error code. */
int limits_db_logins(sqlite3 *db, int64_t now_ms, int64_t messages_window_s, int64_t recipients_window_s,
    limits_db_login_fn fn, void *arg);

/* Unrouted recipients still queued of messages accepted in [since_ms,
 * until_ms] become due: the number released, or -1 with err. */
int limits_db_release(sqlite3 *db, int64_t since_ms, int64_t until_ms, char *err, size_t errlen);
/* The queued and deferred recipients of every message of login fail,
 * without a bounce: the number dropped, or -1 with err. */
int limits_db_drop_login(sqlite3 *db, const char *login, int64_t now_ms, char *err, size_t errlen);

#endif
