/*
 * limits.h: the sending limits and disabled logins, as the event loop
 * sees them (docs/config.md#limits). Messages per login and per client
 * address and recipients per login are counted in rolling windows
 * (ratewin.h) in memory, shared by the SMTP loops under one lock: the sessions check them at MAIL
 * and RCPT and count each message the writer committed. Nothing here
 * touches SQLite from the loop: the counts of the last windows and the
 * per-login policies (disabled, overrides) are read at startup, before
 * the loop runs, and the policies again every limits.reload_interval
 * seconds and on SIGHUP through a writer job.
 */
#ifndef SUBMITD_LIMITS_H
#define SUBMITD_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "server/runtime/server.h"

struct limits;

/* Which limit refused, and what it was (for the reply and the log). */
struct limits_refusal {
	enum limit_kind kind;
	int64_t limit;
	int64_t window_s;
	bool override;          /* the login's own value (submitctl user limit) */
};

struct limits *limits_new(const struct config *cfg);
void limits_free(struct limits **lp);

/* Startup, before the loop runs: count again what db accepted in the
 * windows that end at now_ms, and read the policies. 0, or -1 with err. */
int limits_load(struct limits *l, sqlite3 *db, int64_t now_ms, char *err, size_t errlen);

/* The loop's side: re-read the policies every limits.reload_interval
 * seconds (srv->limits must be set); limits_reload asks at once (SIGHUP). */
void limits_start(struct server *srv);
void limits_reload(struct server *srv);
/* Stop the timer; a reload still with the writer is collected as usual. */
void limits_stop(struct server *srv);

/* Is login disabled (submitctl user disable)? */
bool limits_disabled(struct limits *l, const char *login);
/* May one more message start (MAIL)? login NULL: a trusted client. False
 * with *r_ filled when a limit is reached. */
bool limits_check_message(struct limits *l, const char *login, const char *ip, int64_t now_ms,
    struct limits_refusal *r_);
/* May the transaction have pending + 1 recipients (RCPT)? As above. */
bool limits_check_recipient(struct limits *l, const char *login, size_t pending, int64_t now_ms,
    struct limits_refusal *r_);
/* A message was accepted (committed) with nrcpt recipients. */
void limits_count(struct limits *l, const char *login, const char *ip, size_t nrcpt, int64_t now_ms);

#endif
