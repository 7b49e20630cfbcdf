/*
 * submitctl_mail.c: the mail submitd holds: messages (list, show, fetch
 * the stored copy with a token, checked as the API checks it, and the
 * delivery status a token holder sees, as GET /v1/status), the relay
 * queue (list, show, retry, drop), the Sent filing (per-login settings,
 * and a message's filing state in message show) and an online backup of
 * the database.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/admin.h"
#include "db/delivery.h"
#include "db/overview.h"
#include "db/sent.h"
#include "db/store.h"
#include "server/admin/submitctl_internal.h"
#include "server/base/config.h"
#include "server/base/util.h"
#include "tokens/token.h"

static void
print_message_line(const struct overview_message *m, void *arg)
{
	printf("%s\t%s\t%s\t%s\t%lld\t%lld\n", m->public_id, m->received_at, m->login ? m->login : "-",
	    m->envelope_from, (long long)m->size, (long long)m->recipients);
}

static void
print_message(const struct overview_message *m, void *arg)
{
	printf("id=%s\nreceived_at=%s\nuser=%s\nclient=%s\nfrom=%s\nsize=%lld\nsha256=%s\nbody=%s\n",
	    m->public_id, m->received_at, m->login ? m->login : "", m->client_address, m->envelope_from,
	    (long long)m->size, m->sha256, m->has_body ? "stored" : "purged");
}

static void
print_recipient(const struct overview_recipient *r, void *arg)
{
	printf("rcpt=%d\t%s\t%s\n", r->position, r->address, r->state);
}

static void
print_token(const struct overview_token *t, void *arg)
{
	printf("token=%s\t%s\t%s\t%s\texpires=%s\n", t->token_id, t->role, t->address, t->status, t->expires_at);
}

static void
print_sent_state(const struct sent_state *s, void *arg)
{
	printf("sent=%s\tattempts=%lld", s->state, (long long)s->attempts);
	if (s->mailbox)
		printf("\tmailbox=%s", s->mailbox);
	if (s->uid > 0)
		printf("\tuidvalidity=%lld\tuid=%lld", (long long)s->uidvalidity, (long long)s->uid);
	if (s->filed_at)
		printf("\tfiled_at=%s", s->filed_at);
	else if (strcmp(s->state, "pending") == 0 || strcmp(s->state, "filing") == 0)
		printf("\tnext_attempt_at=%s", s->next_attempt_at);
	if (s->append_sent && !s->filed_at)
		printf("\tappend_sent=yes");
	if (s->last_error)
		printf("\tlast_error=%s", s->last_error);
	putchar('\n');
}

static int
message_show(sqlite3 *db, const char *id)
{
	char err[512];
	int n = overview_message(db, id, print_message, NULL, err, sizeof(err));

	if (n == -1)
		return submitctl_fail("%s", err);
	if (n == 0)
		return submitctl_fail("no message %s", id);
	/* The message was there: a listing that fails now only shortens the
	 * output. */
	overview_recipients(db, id, print_recipient, NULL, err, sizeof(err));
	overview_tokens(db, id, print_token, NULL, err, sizeof(err));
	sent_state_get(db, id, print_sent_state, NULL, err, sizeof(err));
	return 0;
}

/* The same checks as the API's fetch, then the stored bytes to stdout. */
static int
message_fetch(sqlite3 *db, const char *arg, const char *address)
{
	struct token_claims c;
	struct store_token_info info;
	enum token_status st;
	char tok[4096], err[512];
	int rc;

	if (submitctl_read_token(arg, tok, sizeof(tok)))
		return 1;
	if (admin_token_verify(db, tok, address, now_unix(), &st, &c, &info, err, sizeof(err)) == -1)
		return submitctl_fail("%s", err);
	if (st != TOKEN_VALID) {
		store_token_info_free(&info);
		fprintf(stderr, "result=%s\n", token_status_name(st));
		return 1;
	}
	if (!info.has_body) {
		store_token_info_free(&info);
		fprintf(stderr, "result=purged\n");
		return 1;
	}
	rc = admin_body_write(db, info.message_id, info.size, stdout, err, sizeof(err));
	store_token_info_free(&info);
	if (rc == -1)
		return submitctl_fail("%s", err);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* The lines of message status: the fields of the API's JSON, one
 * recipient a line, its reply last as it has spaces. */
static void
print_status(const struct delivery_status *ds, bool relay_configured)
{
	char t[32];

	delivery_time_rfc3339(ds->received_at, t);
	printf("token_id=%s\nrole=%s\naddress=%s\nmessage=%s\nreceived_at=%s\nsize=%lld\nsha256=%s\n", ds->token_id,
	    ds->role, ds->address ? ds->address : "", ds->public_id, t, (long long)ds->size, ds->sha256);
	for (size_t i = 0; i < ds->nrcpt; i++) {
		const struct delivery_rcpt *r = &ds->rcpts[i];
		struct delivery_state unknown;
		const struct delivery_state *st = delivery_state_of(r->state, relay_configured, &unknown);

		printf("rcpt=%s\tstate=%s\tattempts=%d", r->address, st->name, r->attempts);
		if (st->at_key && r->updated_at) {
			delivery_time_rfc3339(r->updated_at, t);
			printf("\t%s=%s", st->at_key, t);
		}
		if (st->next_attempt && r->next_attempt_at) {
			delivery_time_rfc3339(r->next_attempt_at, t);
			printf("\tnext_attempt_at=%s", t);
		}
		if (st->bounce)
			printf("\tbounce_sent=%s", r->bounce_sent ? "yes" : "no");
		if (st->reply && r->last_reply)
			printf("\treply=%s", r->last_reply);
		printf("\t(%s)\n", st->text);
	}
}

/* What GET /v1/status answers for the token, from the same query
 * (db/delivery.h); --json prints the API's very answer. */
static int
message_status(sqlite3 *db, const struct config *cfg, const char *arg, bool json)
{
	struct token_claims c;
	struct store_token_info info;
	struct delivery_status ds;
	enum token_status st;
	bool relay = cfg->relay_host[0] != '\0';
	char tok[4096], err[512];
	int found;

	if (submitctl_read_token(arg, tok, sizeof(tok)))
		return 1;
	if (admin_token_verify(db, tok, NULL, now_unix(), &st, &c, &info, err, sizeof(err)) == -1)
		return submitctl_fail("%s", err);
	store_token_info_free(&info);
	found = st == TOKEN_VALID ? delivery_status_get(db, c.jti, &ds, err, sizeof(err)) : 0;
	if (found == -1)
		return submitctl_fail("%s", err);
	if (found == 0) {
		/* gone between the check and the read: retention, as expired */
		const char *name = token_status_name(st == TOKEN_VALID ? TOKEN_EXPIRED : st);
		if (json)
			printf("{\"result\":\"%s\"}\n", name);
		else
			fprintf(stderr, "result=%s\n", name);
		return 1;
	}
	if (json) {
		json_t *j = delivery_status_json(&ds, relay);
		char *text = json_dumps(j, JSON_COMPACT);
		printf("%s\n", text ? text : "{}");
		free(text);
		json_decref(j);
	} else
		print_status(&ds, relay);
	delivery_status_free(&ds);
	return fflush(stdout) == 0 ? 0 : 1;
}

int
submitctl_message(sqlite3 *db, const struct config *cfg, int argc, char **argv)
{
	char err[512];

	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		long limit = 50;
		if (argc == 3 && strcmp(argv[1], "--limit") == 0)
			limit = strtol(argv[2], NULL, 10);
		else if (argc != 1) {
			submitctl_usage(stderr);
			return 2;
		}
		if (limit <= 0)
			return submitctl_fail("%s", "--limit takes a positive number");
		if (overview_messages(db, limit, print_message_line, NULL, err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "show") == 0)
		return message_show(db, argv[1]);
	if (argc == 2 && strcmp(argv[0], "fetch") == 0)
		return message_fetch(db, argv[1], NULL);
	if (argc == 4 && strcmp(argv[0], "fetch") == 0 && strcmp(argv[2], "--address") == 0)
		return message_fetch(db, argv[1], argv[3]);
	if (argc == 2 && strcmp(argv[0], "status") == 0)
		return message_status(db, cfg, argv[1], false);
	if (argc == 2 && strcmp(argv[0], "purge") == 0) {
		switch (admin_message_purge(db, argv[1], err, sizeof(err))) {
		case 0:
			printf("%s purged\n", argv[1]);
			return 0;
		case 1:
			return submitctl_fail("no message %s with a stored copy", argv[1]);
		case 2:
			return submitctl_fail("%s has recipients still queued or deferred: queue drop it first", argv[1]);
		default:
			return submitctl_fail("%s", err);
		}
	}
	if (argc == 3 && strcmp(argv[0], "status") == 0 && strcmp(argv[2], "--json") == 0)
		return message_status(db, cfg, argv[1], true);
	submitctl_usage(stderr);
	return 2;
}

/* The header goes out once the query runs, even with no row. */
static void
queue_header(bool *done)
{
	if (!*done)
		printf("public_id\tposition\taddress\tstate\tattempts\tnext_attempt_at\tlast_reply\n");
	*done = true;
}

static void
print_queue_row(const struct overview_queue *q, void *arg)
{
	queue_header(arg);
	printf("%s\t%d\t%s\t%s\t%d\t%s\t%s\n", q->public_id, q->position, q->address, q->state, q->attempts,
	    q->next_attempt_at, q->last_reply);
}

static int
queue_print(sqlite3 *db, const char *public_id)
{
	char err[512];
	bool header_done = false;

	if (overview_queue(db, public_id, print_queue_row, &header_done, err, sizeof(err)) == -1)
		return submitctl_fail("%s", err);
	queue_header(&header_done);
	return 0;
}

int
submitctl_queue(sqlite3 *db, int argc, char **argv)
{
	char err[512];
	int n;

	if ((n = submitctl_queue_limits(db, argc, argv)) >= 0)
		return n;       /* release, drop --login */
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return queue_print(db, NULL);
	if (argc == 2 && strcmp(argv[0], "show") == 0)
		return queue_print(db, argv[1]);
	if (argc == 2 && (strcmp(argv[0], "retry") == 0 || strcmp(argv[0], "drop") == 0)) {
		bool retry = strcmp(argv[0], "retry") == 0;
		n = retry ? admin_queue_retry(db, argv[1], now_ms(), err, sizeof(err)) :
		    admin_queue_drop(db, argv[1], now_ms(), err, sizeof(err));
		if (n == -1)
			return submitctl_fail("%s", err);
		printf("%d recipient(s) of %s %s\n", n, argv[1], retry ? "due now" : "dropped");
		return n > 0 ? 0 : 1;
	}
	submitctl_usage(stderr);
	return 2;
}

int
submitctl_backup(sqlite3 *db, const char *path)
{
	char err[512];

	if (admin_backup(db, path, err, sizeof(err)) == -1)
		return submitctl_fail("%s", err);
	printf("backup written to %s\n", path);
	return 0;
}

static void
print_setting(const struct sent_setting *st, void *arg)
{
	printf("%s\t%s\t%s\n", st->login, st->enabled ? "on" : "off", st->updated_at);
}

/* Per-login settings of the Sent filing; keyed by the login's text, so
 * they work for logins that live in Dovecot as well as in users. */
int
submitctl_sent(sqlite3 *db, int argc, char **argv)
{
	char err[512];

	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		printf("login\tfiling\tupdated_at\n");
		if (sent_settings_list(db, print_setting, NULL, err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		return 0;
	}
	if (argc == 2 && (strcmp(argv[0], "enable") == 0 || strcmp(argv[0], "disable") == 0 ||
	    strcmp(argv[0], "default") == 0)) {
		int enabled = strcmp(argv[0], "enable") == 0 ? 1 : strcmp(argv[0], "disable") == 0 ? 0 : -1;
		if (argv[1][0] == '\0')
			return submitctl_fail("%s", "the login must not be empty");
		if (sent_setting_set(db, argv[1], enabled, now_ms(), err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		printf("Sent filing for %s: %s\n", argv[1], enabled == 1 ? "on" : enabled == 0 ? "off" : "sent.default");
		return 0;
	}
	submitctl_usage(stderr);
	return 2;
}
