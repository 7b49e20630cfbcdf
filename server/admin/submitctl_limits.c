/*
 * submitctl_limits.c: the sending limits and holds (docs/config.md#limits,
 * docs/operations.md): disabling and enabling a login, its own limits,
 * the user listing with each login's state and counts (read from the
 * database, over the configured windows), releasing mail accepted while
 * no next hop was configured, and dropping a login's queued mail. A
 * running submitd reads the policies again within limits.reload_interval
 * seconds (at once on SIGHUP); the relay sees holds and releases at its
 * next scan.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "db/limits_db.h"
#include "db/overview.h"
#include "db/store.h"
#include "server/admin/submitctl_internal.h"
#include "server/base/config.h"
#include "server/base/util.h"

struct login_list {
	struct limits_db_login *v;
	bool *shown;
	size_t n, cap;
	const struct config *cfg;
};

static void
collect_login(const struct limits_db_login *l, void *arg)
{
	struct login_list *ll = arg;

	if (ll->n == ll->cap) {
		ll->cap = ll->cap ? ll->cap * 2 : 16;
		ll->v = xrealloc(ll->v, ll->cap * sizeof(*ll->v));
		ll->shown = xrealloc(ll->shown, ll->cap * sizeof(*ll->shown));
	}
	ll->v[ll->n] = *l;
	ll->v[ll->n].policy.login = xstrdup(l->policy.login);
	ll->shown[ll->n] = false;
	ll->n++;
}

/* "N/LIMIT": LIMIT "none" for 0, with "(own)" for the login's override. */
static void
print_count(const char *what, int64_t n, int64_t own, int64_t def)
{
	int64_t lim = own >= 0 ? own : def;

	if (lim == 0)
		printf("\t%s=%lld/none%s", what, (long long)n, own >= 0 ? "(own)" : "");
	else
		printf("\t%s=%lld/%lld%s", what, (long long)n, (long long)lim, own >= 0 ? "(own)" : "");
}

static void
print_state(const struct login_list *ll, const struct limits_db_login *l)
{
	printf("\tdisabled=%s", l && l->policy.disabled ? "yes" : "no");
	print_count("messages", l ? l->messages : 0, l ? l->policy.messages_per_hour : -1,
	    ll->cfg->limits_user_messages);
	print_count("recipients", l ? l->recipients : 0, l ? l->policy.recipients_per_day : -1,
	    ll->cfg->limits_user_recipients);
	putchar('\n');
}

static void
print_user(const struct overview_user *u, void *arg)
{
	struct login_list *ll = arg;
	const struct limits_db_login *found = NULL;

	for (size_t i = 0; i < ll->n && !found; i++)
		if (strcasecmp(ll->v[i].policy.login, u->login) == 0) {
			found = &ll->v[i];
			ll->shown[i] = true;
		}
	printf("%s\tcreated=%s\taddresses=%s", u->login, u->created_at, u->addresses);
	print_state(ll, found);
}

static int
user_list(sqlite3 *db, const struct config *cfg)
{
	struct login_list ll = { .cfg = cfg };
	char err[512];
	int rc = 0;

	if (limits_db_logins(db, now_ms(), cfg->limits_user_messages_window, cfg->limits_user_recipients_window,
	    collect_login, &ll) != SQLITE_OK)
		rc = submitctl_fail("%s", sqlite3_errmsg(db));
	else if (overview_users(db, print_user, &ll, err, sizeof(err)) == -1)
		rc = submitctl_fail("%s", err);
	/* logins without a users row: checked by Dovecot, or deleted since */
	for (size_t i = 0; rc == 0 && i < ll.n; i++)
		if (!ll.shown[i]) {
			printf("%s\tcreated=-\taddresses=-", ll.v[i].policy.login);
			print_state(&ll, &ll.v[i]);
		}
	for (size_t i = 0; i < ll.n; i++)
		free((char *)ll.v[i].policy.login);
	free(ll.v);
	free(ll.shown);
	return rc;
}

int
submitctl_user_limits(sqlite3 *db, const struct config *cfg, int argc, char **argv)
{
	char err[512];

	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return user_list(db, cfg);
	if (argc == 2 && (strcmp(argv[0], "disable") == 0 || strcmp(argv[0], "enable") == 0)) {
		bool off = strcmp(argv[0], "disable") == 0;
		if (limits_db_set_disabled(db, argv[1], off, now_ms(), err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		printf("%s %s\n", argv[1], off ? "disabled: AUTH refused, queued mail held" : "enabled");
		return 0;
	}
	if (argc == 4 && strcmp(argv[0], "limit") == 0) {
		const char *key = strncmp(argv[2], "limits.", 7) == 0 ? argv[2] + 7 : argv[2];
		const char *column;
		int64_t value;
		char *end;

		if (strcmp(key, "user_messages_per_hour") == 0)
			column = "messages_per_hour";
		else if (strcmp(key, "user_recipients_per_day") == 0)
			column = "recipients_per_day";
		else
			return submitctl_fail("unknown limit %s (user_messages_per_hour or user_recipients_per_day)", argv[2]);
		if (strcmp(argv[3], "default") == 0)
			value = -1;
		else {
			value = strtoll(argv[3], &end, 10);
			if (end == argv[3] || *end != '\0' || value < 0 || value > 100000000)
				return submitctl_fail("bad value %s: 0 (no limit) to 100000000, or default", argv[3]);
		}
		if (limits_db_set_override(db, argv[1], column, value, now_ms(), err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		if (value < 0)
			printf("%s: limits.%s as configured\n", argv[1], key);
		else
			printf("%s: limits.%s = %lld\n", argv[1], key, (long long)value);
		return 0;
	}
	return -1;
}

/* A time as stored ("YYYY-MM-DD HH:MM:SS[.sss]", UTC; a T may replace the
 * space) or "now", in unix ms; -1 when it is neither. */
static int64_t
parse_time(const char *arg)
{
	char buf[32];
	int64_t s;

	if (strcmp(arg, "now") == 0)
		return now_ms();
	if (strlen(arg) < 19 || strlen(arg) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", arg);
	if (buf[10] == 'T')
		buf[10] = ' ';
	s = store_time_parse(buf);
	if (s <= 0)
		return -1;
	if (buf[19] == '.')
		return s * 1000 + strtol(buf + 20, NULL, 10);
	return s * 1000;
}

int
submitctl_queue_limits(sqlite3 *db, int argc, char **argv)
{
	char err[512];
	int n;

	if (argc >= 1 && strcmp(argv[0], "release") == 0) {
		int64_t since = 0, until = now_ms();
		for (int i = 1; i < argc; i += 2) {
			int64_t *t = strcmp(argv[i], "--since") == 0 ? &since : strcmp(argv[i], "--until") == 0 ? &until : NULL;
			if (t == NULL || i + 1 >= argc) {
				submitctl_usage(stderr);
				return 2;
			}
			*t = parse_time(argv[i + 1]);
			if (*t < 0)
				return submitctl_fail("bad time %s: \"YYYY-MM-DD HH:MM:SS\" (UTC) or now", argv[i + 1]);
			/* a time to the second covers that whole second */
			if (t == &until && strlen(argv[i + 1]) == 19)
				*t += 999;
		}
		n = limits_db_release(db, since, until, err, sizeof(err));
		if (n < 0)
			return submitctl_fail("%s", err);
		printf("%d recipients released for relay\n", n);
		return 0;
	}
	if (argc == 3 && strcmp(argv[0], "drop") == 0 && strcmp(argv[1], "--login") == 0) {
		n = limits_db_drop_login(db, argv[2], now_ms(), err, sizeof(err));
		if (n < 0)
			return submitctl_fail("%s", err);
		printf("%d recipients dropped\n", n);
		return 0;
	}
	return -1;
}
