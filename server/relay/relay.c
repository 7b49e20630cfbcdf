/*
 * relay.c: see relay.h.
 *
 * Picking work: a scan (every poll_interval, and right after a commit)
 * selects messages with due recipients that are not already in flight.
 * Each becomes a task; tasks are handed to connections, at most
 * relay.connections of them, and a connection takes task after task before
 * it says QUIT (connection reuse).
 *
 * One connection is a small state machine over a bufferevent: greeting,
 * EHLO, STARTTLS (then EHLO again), AUTH PLAIN, then per task MAIL and the
 * RCPTs (pipelined when offered), then BDAT (when CHUNKING is offered) or
 * DATA with dot-stuffing, and the final reply. Replies are read whole
 * (multi-line) and matched with the commands in the order they were sent.
 *
 * Results go to the database through the writer thread, in a job that also
 * builds the bounce for failed recipients, so "failed" and "bounce queued"
 * commit together. The message leaves the in-flight set only when that job
 * is done: a scan in between cannot pick it again. A crash between the
 * next hop's 250 and that commit sends the message again on restart
 * (at least once, never lost).
 */
#include "server/relay/relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>
#include <sqlite3.h>

#include "db/store.h"
#include "db/writer.h"
#include "server/relay/dsn.h"
#include "server/base/line.h"
#include "server/base/log.h"
#include "server/protocol/sasl.h"
#include "server/smtp/smtp_session.h"
#include "server/base/util.h"

#define BODY_CHUNK (64 * 1024)
#define OUT_HIGH (256 * 1024)
#define REPLY_MAX 4096
#define HEADERS_MAX (64 * 1024)
/* A result whose commit failed is tried again this many seconds later
 * (the writer itself waits a second for a lock already seen). */
#define RECORD_RETRY_S 1

enum rcpt_result { R_PENDING = 0, R_ACCEPTED, R_DELIVERED, R_DEFERRED, R_FAILED };

struct rcpt {
	int64_t id;
	char *address;
	enum rcpt_result result;
	char *reply;
};

struct task {
	int64_t message_id;
	char public_id[32];
	char received_at[32];
	char *sender, *helo, *client, *auth_login, *body_type;
	bool smtputf8;
	int64_t size;
	struct rcpt *rcpts;
	size_t nrcpt;
	struct task *next;
};

enum conn_state {
	C_CONNECT, C_GREETING, C_EHLO, C_STARTTLS, C_AUTH, C_READY, C_MAIL, C_DATA, C_BODY, C_DOT, C_RSET, C_QUIT
};

struct conn {
	struct relay *r;
	struct bufferevent *bev;
	enum conn_state state;
	bool tls, pipelining, chunking, eightbit, smtputf8, binarymime, starttls, size_offered;
	int64_t size_limit;
	struct task *task;            /* in progress */
	struct task *queue;           /* waiting on this connection */
	/* replies owed by the server for the pipelined group: -1 MAIL, i RCPT i */
	int *owed;
	size_t nowed, owed_at, rcpt_sent;
	bool mail_ok;
	/* body streaming */
	char *header;
	size_t header_len, header_off;
	int64_t body_off;
	bool at_line_start;
	char last2[2];
	char reply[REPLY_MAX];
	size_t reply_len;
	struct conn *prev, *next;
};

struct record;

struct relay {
	struct server *srv;
	sqlite3 *db;                  /* reads on the loop thread */
	struct evdns_base *dns;
	SSL_CTX *ctx;
	char *password;
	struct event *poll, *purge;
	struct conn *conns;
	size_t nconns;
	struct task *pending;         /* picked, waiting for a connection */
	int64_t *inflight;            /* message ids picked and not yet recorded */
	size_t ninflight, capinflight;
	struct record *waiting;       /* results whose commit failed, to try again */
	bool draining;
	bool purging;
	struct conn *current;         /* the connection on_reply works for */
};

static void conn_fail(struct conn *c, const char *why);
static void conn_setup(struct conn *c);
static void conn_next_task(struct conn *c);
static void dispatch(struct relay *r);

/* ------------------------------------------------------------------ */
/* the in-flight set                                                  */

static bool
inflight_has(struct relay *r, int64_t id)
{
	for (size_t i = 0; i < r->ninflight; i++)
		if (r->inflight[i] == id)
			return true;
	return false;
}

static void
inflight_add(struct relay *r, int64_t id)
{
	if (r->ninflight == r->capinflight) {
		r->capinflight = r->capinflight ? r->capinflight * 2 : 64;
		r->inflight = xrealloc(r->inflight, r->capinflight * sizeof(int64_t));
	}
	r->inflight[r->ninflight++] = id;
}

static void
inflight_del(struct relay *r, int64_t id)
{
	for (size_t i = 0; i < r->ninflight; i++)
		if (r->inflight[i] == id) {
			r->inflight[i] = r->inflight[--r->ninflight];
			return;
		}
}

static void
task_free(struct task *t)
{
	for (size_t i = 0; i < t->nrcpt; i++) {
		free(t->rcpts[i].address);
		free(t->rcpts[i].reply);
	}
	free(t->rcpts);
	free(t->sender);
	free(t->helo);
	free(t->client);
	free(t->auth_login);
	free(t->body_type);
	free(t);
}

static char *
col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *v = sqlite3_column_text(st, i);
	return xstrdup(v ? (const char *)v : "");
}

/* ------------------------------------------------------------------ */
/* recording results (writer thread)                                  */

struct record {
	struct relay *r;
	struct task *t;
	int64_t now;
	struct writer_job job;
	/* settings copied for the writer thread */
	int64_t lifetime, retry_base, retry_max;
	const char *hostname;
	int64_t arrival;
	bool bounced;
	/* A result that could not be committed (the database locked by
	 * another process, say) is tried again: dropping it would send the
	 * message to the next hop a second time. */
	struct event *retry;
	unsigned tries;
	struct record *next_waiting;
};

/* Equal jitter: half the delay fixed, half random, so that many deferred
 * recipients do not all come back in the same second. */
static int64_t
backoff(const struct record *rec, int attempts)
{
	int64_t d = rec->retry_base;

	for (int i = 1; i < attempts && d < rec->retry_max; i++)
		d *= 2;
	if (d > rec->retry_max)
		d = rec->retry_max;
	return d / 2 + (int64_t)randombytes_uniform((uint32_t)(d / 2 + 1));
}

/* Queue a DSN to the sender for the failed recipients, in the caller's
 * transaction: the message, its body and its one recipient. */
static int
insert_bounce(sqlite3 *db, struct record *rec, const struct dsn_failure *f, size_t nf)
{
	struct task *t = rec->t;
	struct dsn_input in = {
		.reporting_host = rec->hostname, .sender = t->sender, .message_id = t->public_id,
		.arrival = rec->arrival, .now = rec->now, .failures = f, .nfailures = nf,
	};
	sqlite3_blob *blob = NULL;
	char *headers = NULL, *msg, pid[PUBLIC_ID_LEN + 1], now[24], hex[65];
	unsigned char digest[32];
	size_t len;
	int hl = 0, rc;
	bool eight = false;
	sqlite3_stmt *st;

	if (sqlite3_blob_open(db, "main", "message_bodies", "content", t->message_id, 0, &blob) == SQLITE_OK) {
		int n = sqlite3_blob_bytes(blob) < HEADERS_MAX ? sqlite3_blob_bytes(blob) : HEADERS_MAX;
		headers = xmalloc((size_t)n + 1);
		if (sqlite3_blob_read(blob, headers, n, 0) == SQLITE_OK)
			hl = (int)dsn_header_len(headers, (size_t)n);
		sqlite3_blob_close(blob);
	}
	in.headers = headers;
	in.headers_len = (size_t)hl;
	msg = dsn_build(&in, &len);
	free(headers);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)msg[i] >= 0x80)
			eight = true;
	crypto_hash_sha256(digest, (unsigned char *)msg, len);
	hex_encode(digest, sizeof(digest), hex);
	public_id_new(pid);
	store_time(rec->now * 1000, now);
	rc = sqlite3_prepare_v2(db, "INSERT INTO messages (public_id, received_at, auth_login, client_address, helo, "
	    "envelope_from, body_type, smtputf8, size, sha256) VALUES (?1, ?2, NULL, '127.0.0.1', ?3, '', ?4, 0, ?5, ?6)",
	    -1, &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_text(st, 1, pid, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, rec->hostname, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, eight ? "8BITMIME" : "7BIT", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)len);
		sqlite3_bind_text(st, 6, hex, -1, SQLITE_STATIC);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
	}
	if (rc == SQLITE_OK) {
		sqlite3_int64 id = sqlite3_last_insert_rowid(db);
		rc = sqlite3_prepare_v2(db, "INSERT INTO message_bodies (message_id, content) VALUES (?1, ?2)", -1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_blob64(st, 2, msg, len, SQLITE_STATIC);
			rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
			sqlite3_finalize(st);
		}
		if (rc == SQLITE_OK)
			rc = sqlite3_prepare_v2(db, "INSERT INTO recipients (message_id, position, address, updated_at) "
			    "VALUES (?1, 1, ?2, ?3)", -1, &st, NULL);
		if (rc == SQLITE_OK) {
			sqlite3_bind_int64(st, 1, id);
			sqlite3_bind_text(st, 2, t->sender, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, now, -1, SQLITE_STATIC);
			rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
			sqlite3_finalize(st);
		}
	}
	free(msg);
	if (rc == SQLITE_OK)
		log_info("event=bounce_queued msgid=%s bounce=%s failed=%zu", t->public_id, pid, nf);
	rec->bounced = rc == SQLITE_OK;
	return rc;
}

static int
record_run(sqlite3 *db, void *arg)
{
	struct record *rec = arg;
	struct task *t = rec->t;
	struct dsn_failure *f = xcalloc(t->nrcpt, sizeof(*f));
	size_t nf = 0;
	sqlite3_stmt *st;
	char now[24], next[24];
	int rc;

	rec->arrival = store_time_parse(t->received_at);
	store_time(rec->now * 1000, now);
	/* Only rows still pending: an administrator may have dropped the
	 * recipient while this attempt was under way, and that stands. */
	rc = sqlite3_prepare_v2(db, "UPDATE recipients SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3, "
	    "last_reply = ?4, updated_at = ?5 WHERE recipient_id = ?1 AND state IN ('queued', 'deferred') "
	    "RETURNING attempts", -1, &st, NULL);
	for (size_t i = 0; rc == SQLITE_OK && i < t->nrcpt; i++) {
		struct rcpt *rc_ = &t->rcpts[i];
		const char *state = rc_->result == R_DELIVERED ? "delivered" : rc_->result == R_FAILED ? "failed" : "deferred";
		char *reply = rc_->reply ? rc_->reply : xstrdup("no reply");
		int attempts;

		rc_->reply = reply;
		if (rc_->result == R_DEFERRED && rec->now - rec->arrival >= rec->lifetime) {
			char *why = xmalloc(strlen(reply) + 64);
			sprintf(why, "lifetime exceeded; last reply: %s", reply);
			free(reply);
			rc_->reply = reply = why;
			rc_->result = R_FAILED;
			state = "failed";
		}
		sqlite3_bind_int64(st, 1, rc_->id);
		sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
		sqlite3_bind_null(st, 3);
		sqlite3_bind_text(st, 4, reply, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, now, -1, SQLITE_STATIC);
		switch (sqlite3_step(st)) {
		case SQLITE_ROW:
			attempts = sqlite3_column_int(st, 0);
			break;
		case SQLITE_DONE:
			attempts = -1;   /* no longer pending: leave it alone */
			break;
		default:
			rc = SQLITE_ERROR;
			attempts = -1;
			break;
		}
		sqlite3_reset(st);
		if (rc != SQLITE_OK)
			break;
		if (attempts < 0)
			continue;
		if (rc_->result == R_DEFERRED) {
			/* the retry time depends on the attempts just counted */
			sqlite3_stmt *u;
			store_time((rec->now + backoff(rec, attempts)) * 1000, next);
			if (sqlite3_prepare_v2(db, "UPDATE recipients SET next_attempt_at = ?2 WHERE recipient_id = ?1",
			    -1, &u, NULL) == SQLITE_OK) {
				sqlite3_bind_int64(u, 1, rc_->id);
				sqlite3_bind_text(u, 2, next, -1, SQLITE_STATIC);
				if (sqlite3_step(u) != SQLITE_DONE)
					rc = SQLITE_ERROR;
				sqlite3_finalize(u);
			}
		}
		if (rc_->result == R_FAILED) {
			f[nf].address = rc_->address;
			f[nf].reply = reply;
			nf++;
		}
	}
	sqlite3_finalize(st);
	/* No bounce for a bounce: the null sender gets nothing (RFC 5321 6.1). */
	if (rc == SQLITE_OK && nf > 0 && t->sender[0] != '\0')
		rc = insert_bounce(db, rec, f, nf);
	free(f);
	return rc;
}

static void
record_free(struct record *rec)
{
	inflight_del(rec->r, rec->t->message_id);
	task_free(rec->t);
	if (rec->retry)
		event_free(rec->retry);
	free(rec);
}

static void
record_retry(evutil_socket_t fd, short what, void *arg)
{
	struct record *rec = arg;
	struct relay *r = rec->r;

	for (struct record **p = &r->waiting; *p; p = &(*p)->next_waiting) {
		if (*p == rec) {
			*p = rec->next_waiting;
			break;
		}
	}
	writer_job_submit(r->srv->writer, &rec->job);
}

static void
record_done(struct writer_job *job)
{
	struct record *rec = job->arg;
	struct relay *r = rec->r;
	struct timeval again = { RECORD_RETRY_S, 0 };

	if (job->rc != SQLITE_OK) {
		/* The message stays in flight, so no scan picks it again, until
		 * its result is on disk or submitd stops (relay_stop). */
		if (rec->tries++ % 60 == 0)     /* at the first try, then once a minute */
			log_err("event=relay_record_failed msgid=%s tries=%u note=retrying", rec->t->public_id,
			    rec->tries);
		if (rec->retry == NULL)
			rec->retry = evtimer_new(r->srv->base, record_retry, rec);
		rec->next_waiting = r->waiting;
		r->waiting = rec;
		evtimer_add(rec->retry, &again);
		return;
	}
	if (rec->tries > 0)
		log_info("event=relay_record_retried msgid=%s tries=%u", rec->t->public_id, rec->tries + 1);
	record_free(rec);
	relay_kick(r->srv);
	server_maybe_exit(r->srv);
}

/* Hand a finished task's results to the writer. */
static void
task_record(struct relay *r, struct task *t)
{
	struct record *rec = xcalloc(1, sizeof(*rec));
	struct config *cfg = r->srv->cfg;

	for (size_t i = 0; i < t->nrcpt; i++) {
		const char *state = t->rcpts[i].result == R_DELIVERED ? "delivered" :
		    t->rcpts[i].result == R_FAILED ? "failed" : "deferred";
		char sample[200];
		log_info("event=relay_result msgid=%s rcpt=%s state=%s reply=%s", t->public_id, t->rcpts[i].address,
		    state, log_sanitize(sample, sizeof(sample), t->rcpts[i].reply ? t->rcpts[i].reply : "",
		    t->rcpts[i].reply ? strlen(t->rcpts[i].reply) : 0, 40));
	}
	rec->r = r;
	rec->t = t;
	rec->now = now_unix();
	rec->lifetime = cfg->relay_max_lifetime;
	rec->retry_base = cfg->relay_retry_base;
	rec->retry_max = cfg->relay_retry_max;
	rec->hostname = cfg->hostname;
	rec->job.run = record_run;
	rec->job.done = record_done;
	rec->job.arg = rec;
	writer_job_submit(r->srv->writer, &rec->job);
}

/* Every recipient still pending gets the same outcome. */
static void
task_set_all(struct task *t, enum rcpt_result res, const char *reply, bool only_pending)
{
	for (size_t i = 0; i < t->nrcpt; i++) {
		if (only_pending && t->rcpts[i].result != R_PENDING && t->rcpts[i].result != R_ACCEPTED)
			continue;
		t->rcpts[i].result = res;
		free(t->rcpts[i].reply);
		t->rcpts[i].reply = xstrdup(reply);
	}
}

static enum rcpt_result
result_of(int code)
{
	return code >= 200 && code < 300 ? R_DELIVERED : code >= 500 ? R_FAILED : R_DEFERRED;
}

/* ------------------------------------------------------------------ */
/* the SMTP client                                                     */

static void
send_line(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
send_line(struct conn *c, const char *fmt, ...)
{
	char line[1100];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = line_vformat(line, sizeof(line), fmt, ap);
	va_end(ap);
	bufferevent_write(c->bev, line, n);
}

static void
conn_free(struct conn *c)
{
	struct relay *r = c->r;

	if (r->current == c)
		r->current = NULL;

	if (c->prev)
		c->prev->next = c->next;
	else
		r->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	r->nconns--;
	if (c->bev)
		bufferevent_free(c->bev);
	free(c->owed);
	free(c->header);
	free(c);
}

/* Give up on this connection: the task in progress and the ones waiting
 * on it are deferred (or failed when the reason is permanent). */
static void
conn_fail_with(struct conn *c, enum rcpt_result res, const char *why)
{
	struct relay *r = c->r;
	struct task *t;
	char text[600];

	snprintf(text, sizeof(text), "%s (%s:%lld)", why, r->srv->cfg->relay_host, (long long)r->srv->cfg->relay_port);
	log_info("event=relay_connection_failed reason=\"%s\"", text);
	if (c->task) {
		task_set_all(c->task, res, text, true);
		task_record(r, c->task);
		c->task = NULL;
	}
	while ((t = c->queue) != NULL) {
		c->queue = t->next;
		task_set_all(t, res, text, true);
		task_record(r, t);
	}
	conn_free(c);
}

static void
conn_fail(struct conn *c, const char *why)
{
	conn_fail_with(c, R_DEFERRED, why);
}

static void
parse_ehlo(struct conn *c, const char *text)
{
	/* text: the reply lines joined by '\n', without codes */
	const char *line = text;

	c->pipelining = c->chunking = c->eightbit = c->smtputf8 = c->binarymime = c->starttls = false;
	c->size_offered = false;
	c->size_limit = 0;
	while (line && *line) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
#define KW(k) (n >= strlen(k) && strncasecmp(line, k, strlen(k)) == 0 && (n == strlen(k) || line[strlen(k)] == ' '))
		if (KW("PIPELINING")) c->pipelining = true;
		else if (KW("CHUNKING")) c->chunking = true;
		else if (KW("8BITMIME")) c->eightbit = true;
		else if (KW("SMTPUTF8")) c->smtputf8 = true;
		else if (KW("BINARYMIME")) c->binarymime = true;
		else if (KW("STARTTLS")) c->starttls = true;
		else if (KW("SIZE")) {
			c->size_offered = true;   /* a bare SIZE announces no limit */
			c->size_limit = n > 5 ? strtoll(line + 5, NULL, 10) : 0;
		}
#undef KW
		line = end ? end + 1 : NULL;
	}
}

static void
start_tls(struct conn *c)
{
	struct relay *r = c->r;
	struct config *cfg = r->srv->cfg;
	SSL *ssl = SSL_new(r->ctx);
	struct bufferevent *tls;

	if (ssl == NULL) {
		conn_fail(c, "TLS setup failed");
		return;
	}
	SSL_set_tlsext_host_name(ssl, cfg->relay_host);
	if (strcmp(cfg->relay_tls, "required") == 0 && cfg->relay_tls_verify) {
		SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
		SSL_set1_host(ssl, cfg->relay_host);
	}
	tls = bufferevent_openssl_filter_new(r->srv->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL) {
		SSL_free(ssl);
		conn_fail(c, "TLS setup failed");
		return;
	}
	c->bev = tls;
	c->tls = true;
	conn_setup(c);
	c->state = C_EHLO;
	send_line(c, "EHLO %s", cfg->hostname);
}

static void
send_auth(struct conn *c)
{
	struct config *cfg = c->r->srv->cfg;
	size_t ul = strlen(cfg->relay_auth_user), pl = strlen(c->r->password);
	unsigned char *raw = xmalloc(ul + pl + 2);
	char *b64 = xmalloc(((ul + pl + 2) / 3 + 1) * 4 + 1);

	raw[0] = '\0';
	memcpy(raw + 1, cfg->relay_auth_user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, c->r->password, pl);
	sasl_base64_encode(raw, ul + pl + 2, b64);
	c->state = C_AUTH;
	send_line(c, "AUTH PLAIN %s", b64);
	sodium_memzero(raw, ul + pl + 2);
	sodium_memzero(b64, strlen(b64));
	free(raw);
	free(b64);
}

/* After EHLO (and TLS, and AUTH): ready for tasks. */
static void
conn_ready(struct conn *c)
{
	c->state = C_READY;
	conn_next_task(c);
}

static void
after_ehlo(struct conn *c)
{
	struct config *cfg = c->r->srv->cfg;

	if (!c->tls && c->starttls && strcmp(cfg->relay_tls, "none") != 0) {
		c->state = C_STARTTLS;
		send_line(c, "STARTTLS");
		return;
	}
	if (!c->tls && strcmp(cfg->relay_tls, "required") == 0) {
		conn_fail(c, "TLS required but STARTTLS not offered");
		return;
	}
	if (cfg->relay_auth_user[0]) {
		if (!c->tls && strcmp(cfg->relay_tls, "none") != 0) {
			conn_fail(c, "not sending credentials without TLS");
			return;
		}
		send_auth(c);
		return;
	}
	conn_ready(c);
}

/* Begin a message: MAIL and RCPTs, pipelined when the hop allows. */
static void
task_begin(struct conn *c)
{
	struct task *t = c->task;
	char params[128] = "";
	size_t n = 0;

	if (strcmp(t->body_type, "BINARYMIME") == 0 && !(c->chunking && c->binarymime)) {
		task_set_all(t, R_FAILED, "554 5.6.3 the next hop does not accept BINARYMIME content (conversion not supported)", false);
		task_record(c->r, t);
		c->task = NULL;
		conn_next_task(c);
		return;
	}
	if (t->smtputf8 && !c->smtputf8) {
		task_set_all(t, R_FAILED, "553 5.6.7 the next hop does not support SMTPUTF8", false);
		task_record(c->r, t);
		c->task = NULL;
		conn_next_task(c);
		return;
	}
	if (c->size_limit > 0 && t->size > c->size_limit) {
		task_set_all(t, R_FAILED, "552 5.3.4 message larger than the next hop's SIZE limit", false);
		task_record(c->r, t);
		c->task = NULL;
		conn_next_task(c);
		return;
	}
	/* RFC 1870: SIZE= only to a hop that offered the extension. */
	if (c->size_offered)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " SIZE=%lld", (long long)(t->size + 512));
	if (strcmp(t->body_type, "8BITMIME") == 0 && c->eightbit)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " BODY=8BITMIME");
	else if (strcmp(t->body_type, "BINARYMIME") == 0)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " BODY=BINARYMIME");
	if (t->smtputf8)
		snprintf(params + n, sizeof(params) - n, " SMTPUTF8");

	free(c->owed);
	c->owed = xcalloc(t->nrcpt + 1, sizeof(int));
	c->nowed = 0;
	c->owed_at = 0;
	c->rcpt_sent = 0;
	c->mail_ok = false;
	c->state = C_MAIL;
	send_line(c, "MAIL FROM:<%s>%s", t->sender, params);
	c->owed[c->nowed++] = -1;
	if (c->pipelining) {
		for (size_t i = 0; i < t->nrcpt; i++) {
			send_line(c, "RCPT TO:<%s>", t->rcpts[i].address);
			c->owed[c->nowed++] = (int)i;
		}
		c->rcpt_sent = t->nrcpt;
	}
}

static void
received_header(struct conn *c)
{
	struct config *cfg = c->r->srv->cfg;
	struct task *t = c->task;
	char date[64], client[200] = "";
	time_t now = time(NULL);
	struct tm tm;
	int n;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if (cfg->relay_show_client_address)
		snprintf(client, sizeof(client), " ([%s])", t->client);
	/* The HELO name is the client's word: keep it to host-name characters
	 * so it cannot break the header's syntax, and drop an address literal
	 * when client addresses are to stay hidden. */
	char helo[201];
	size_t h = 0;
	for (const char *p = t->helo; *p && h < sizeof(helo) - 1; p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '.' || *p == '-' || *p == '_' || (cfg->relay_show_client_address && strchr("[]:", *p)))
			helo[h++] = *p;
	helo[h] = '\0';
	if (t->helo[0] == '[' && !cfg->relay_show_client_address)
		h = 0;
	free(c->header);
	c->header = xmalloc(1024);
	/* RFC 5321 4.4. No "for <recipient>" clause: with several recipients
	 * it would name one of them to all, a Bcc leak. */
	n = snprintf(c->header, 1024, "Received: from %s%s\r\n\tby %s (submitd) with %s id %s;\r\n\t%s\r\n",
	    h ? helo : "unknown", client, cfg->hostname, t->auth_login[0] ? "ESMTPA" : "ESMTP",
	    t->public_id, date);
	c->header_len = n > 0 && n < 1024 ? (size_t)n : 0;
	c->header_off = 0;
	c->body_off = 0;
	c->at_line_start = true;
}

/* Push header and body until the output is full; the write callback calls
 * again when it has drained. DATA mode doubles dots at line starts. */
static void
body_pump(struct conn *c)
{
	struct relay *r = c->r;
	struct task *t = c->task;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	static char buf[BODY_CHUNK], stuffed[BODY_CHUNK * 2];

	while (evbuffer_get_length(out) < OUT_HIGH) {
		const char *p;
		size_t len;
		sqlite3_blob *blob = NULL;

		if (c->header_off < c->header_len) {
			p = c->header + c->header_off;
			len = c->header_len - c->header_off;
			c->header_off = c->header_len;
		} else if (c->body_off < t->size) {
			int n = (int)(t->size - c->body_off < BODY_CHUNK ? t->size - c->body_off : BODY_CHUNK);
			if (sqlite3_blob_open(r->db, "main", "message_bodies", "content", t->message_id, 0, &blob) != SQLITE_OK ||
			    sqlite3_blob_read(blob, buf, n, (int)c->body_off) != SQLITE_OK) {
				sqlite3_blob_close(blob);
				log_err("event=relay_body_read_failed msgid=%s error=\"%s\"", t->public_id, sqlite3_errmsg(r->db));
				conn_fail(c, "cannot read the stored message");
				return;
			}
			sqlite3_blob_close(blob);
			p = buf;
			len = (size_t)n;
			c->body_off += n;
		} else {
			/* all out */
			if (!c->chunking) {
				/* The stored body ends with CRLF unless it came by BDAT
				 * without one: make the terminator a line of its own. */
				if (!c->at_line_start)
					bufferevent_write(c->bev, "\r\n", 2);
				bufferevent_write(c->bev, ".\r\n", 3);
			}
			c->state = C_DOT;
			return;
		}
		if (c->chunking) {
			bufferevent_write(c->bev, p, len);
			continue;
		}
		size_t o = 0;
		for (size_t i = 0; i < len; i++) {
			if (c->at_line_start && p[i] == '.')
				stuffed[o++] = '.';
			stuffed[o++] = p[i];
			c->at_line_start = p[i] == '\n' && (i > 0 ? p[i - 1] == '\r' : c->last2[1] == '\r');
		}
		if (len > 0)
			c->last2[1] = p[len - 1];
		bufferevent_write(c->bev, stuffed, o);
	}
}

static void
body_begin(struct conn *c)
{
	received_header(c);
	c->state = C_BODY;
	if (c->chunking)
		send_line(c, "BDAT %lld LAST", (long long)(c->header_len + (size_t)c->task->size));
	body_pump(c);
}

static void
conn_next_task(struct conn *c)
{
	struct relay *r = c->r;

	if (c->queue == NULL && r->pending != NULL && !r->draining) {
		c->queue = r->pending;
		r->pending = r->pending->next;
		c->queue->next = NULL;
	}
	if (c->queue == NULL) {
		c->state = C_QUIT;
		send_line(c, "QUIT");
		return;
	}
	c->task = c->queue;
	c->queue = c->task->next;
	c->task->next = NULL;
	task_begin(c);
}

static void
task_finished(struct conn *c)
{
	task_record(c->r, c->task);
	c->task = NULL;
	conn_next_task(c);
}

/* One complete reply: code and the joined text. */
static void
on_reply(struct conn *c, int code, const char *text, const char *first_line)
{
	struct config *cfg = c->r->srv->cfg;
	struct task *t = c->task;
	char full[700];

	snprintf(full, sizeof(full), "%d %s", code, first_line);
	switch (c->state) {
	case C_CONNECT:     /* the greeting may overtake the connect event */
	case C_GREETING:
		if (code != 220) {
			conn_fail_with(c, R_DEFERRED, full);
			return;
		}
		c->state = C_EHLO;
		send_line(c, "EHLO %s", cfg->hostname);
		return;
	case C_EHLO:
		if (code != 250) {
			conn_fail(c, full);
			return;
		}
		parse_ehlo(c, text);
		after_ehlo(c);
		return;
	case C_STARTTLS:
		if (code != 220) {
			if (strcmp(cfg->relay_tls, "required") == 0) {
				conn_fail(c, full);
				return;
			}
			c->starttls = false;
			after_ehlo(c);
			return;
		}
		start_tls(c);
		return;
	case C_AUTH:
		if (code != 235) {
			conn_fail(c, full);
			return;
		}
		conn_ready(c);
		return;
	case C_MAIL: {
		int what = c->owed_at < c->nowed ? c->owed[c->owed_at++] : -2;
		if (what == -1) {
			c->mail_ok = code >= 200 && code < 300;
			if (!c->mail_ok)
				task_set_all(t, result_of(code), full, false);
		} else if (what >= 0) {
			if (c->mail_ok) {
				if (code >= 200 && code < 300)
					t->rcpts[what].result = R_ACCEPTED;
				else {
					t->rcpts[what].result = result_of(code);
					free(t->rcpts[what].reply);
					t->rcpts[what].reply = xstrdup(full);
				}
			}
		}
		/* without pipelining, one RCPT at a time */
		if (!c->pipelining && c->mail_ok && c->rcpt_sent < t->nrcpt) {
			send_line(c, "RCPT TO:<%s>", t->rcpts[c->rcpt_sent].address);
			c->owed[c->nowed++] = (int)c->rcpt_sent++;
			return;
		}
		if (c->owed_at < c->nowed)
			return;   /* more replies of the group to come */
		bool any = false;
		for (size_t i = 0; i < t->nrcpt; i++)
			any |= t->rcpts[i].result == R_ACCEPTED;
		if (!any) {
			/* nothing to send: reset the transaction and move on */
			c->state = C_RSET;
			send_line(c, "RSET");
			return;
		}
		if (c->chunking) {
			body_begin(c);
		} else {
			c->state = C_DATA;
			send_line(c, "DATA");
		}
		return;
	}
	case C_DATA:
		if (code != 354) {
			for (size_t i = 0; i < t->nrcpt; i++)
				if (t->rcpts[i].result == R_ACCEPTED) {
					t->rcpts[i].result = result_of(code);
					free(t->rcpts[i].reply);
					t->rcpts[i].reply = xstrdup(full);
				}
			c->state = C_RSET;
			send_line(c, "RSET");
			return;
		}
		body_begin(c);
		return;
	case C_BODY:
	case C_DOT:
		for (size_t i = 0; i < t->nrcpt; i++)
			if (t->rcpts[i].result == R_ACCEPTED) {
				t->rcpts[i].result = result_of(code);
				free(t->rcpts[i].reply);
				t->rcpts[i].reply = xstrdup(full);
			}
		if (c->state == C_BODY) {
			/* An answer before we finished sending: the stream is out
			 * of step, so this connection can carry nothing more. */
			task_record(c->r, c->task);
			c->task = NULL;
			conn_fail(c, "reply before the end of the message");
			return;
		}
		task_finished(c);
		return;
	case C_RSET:
		task_finished(c);
		return;
	case C_QUIT: {
		struct relay *r = c->r;
		conn_free(c);
		dispatch(r);
		server_maybe_exit(r->srv);
		return;
	}
	default:
		return;
	}
}

/* Read whole replies (RFC 5321 4.2.1: "ddd-" continues, "ddd " ends) and
 * hand each to on_reply, as long as the connection lives and keeps its
 * bufferevent (STARTTLS replaces it; the new one reads on its own). */
static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct relay *r = c->r;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t n;

	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		bool last = n < 4 || line[3] != '-';
		int code = n >= 3 ? atoi(line) : 0;
		const char *rest = n > 4 ? line + 4 : "";
		size_t rl = strlen(rest);
		char text[REPLY_MAX], first[600];
		const char *nl;

		if (code < 200 || code > 599 || n > 2000) {
			free(line);
			conn_fail(c, "malformed reply from the next hop");
			return;
		}
		if (c->reply_len + rl + 2 < sizeof(c->reply)) {
			memcpy(c->reply + c->reply_len, rest, rl);
			c->reply_len += rl;
			c->reply[c->reply_len++] = '\n';
			c->reply[c->reply_len] = '\0';
		}
		free(line);
		if (!last)
			continue;
		memcpy(text, c->reply, c->reply_len + 1);
		nl = strchr(text, '\n');
		snprintf(first, sizeof(first), "%.*s", nl ? (int)(nl - text) : (int)strlen(text), text);
		c->reply_len = 0;
		c->reply[0] = '\0';
		r->current = c;
		on_reply(c, code, text, first);
		if (r->current != c || c->bev != bev)
			return;   /* freed, or now speaking TLS */
	}
}

static void
conn_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->state == C_BODY)
		body_pump(c);
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		struct timeval tv = { (time_t)c->r->srv->cfg->relay_command_timeout, 0 };
		if (c->state == C_CONNECT)
			c->state = C_GREETING;
		/* connect_timeout was for the connection; commands get theirs */
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		return;
	}
	if (c->state == C_QUIT) {
		struct relay *r = c->r;
		conn_free(c);
		server_maybe_exit(r->srv);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		conn_fail(c, "timeout talking to the next hop");
		return;
	}
	{
		unsigned long e = bufferevent_get_openssl_error(bev);
		char why[300];
		if (e) {
			char buf[200];
			ERR_error_string_n(e, buf, sizeof(buf));
			snprintf(why, sizeof(why), "TLS error: %s", buf);
		} else if (what & BEV_EVENT_EOF) {
			snprintf(why, sizeof(why), "connection closed by the next hop");
		} else {
			int err = EVUTIL_SOCKET_ERROR();
			int dnserr = bufferevent_socket_get_dns_error(bev);
			snprintf(why, sizeof(why), "connection failed: %s",
			    dnserr ? evutil_gai_strerror(dnserr) : err ? evutil_socket_error_to_string(err) : "unknown");
		}
		conn_fail(c, why);
	}
}

static void
conn_setup(struct conn *c)
{
	struct config *cfg = c->r->srv->cfg;
	struct timeval tv = { (time_t)cfg->relay_command_timeout, 0 };

	bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_HIGH / 4, 0);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
conn_open(struct relay *r, struct task *first)
{
	struct config *cfg = r->srv->cfg;
	struct conn *c = xcalloc(1, sizeof(*c));
	struct timeval ctv = { (time_t)cfg->relay_connect_timeout, 0 };

	c->r = r;
	c->queue = first;
	c->next = r->conns;
	if (r->conns)
		r->conns->prev = c;
	r->conns = c;
	r->nconns++;
	c->state = C_CONNECT;
	c->bev = bufferevent_socket_new(r->srv->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	conn_setup(c);
	bufferevent_set_timeouts(c->bev, &ctv, &ctv);
	if (bufferevent_socket_connect_hostname(c->bev, r->dns, AF_UNSPEC, cfg->relay_host, (int)cfg->relay_port) != 0)
		conn_fail(c, "cannot start connecting");
}

/* Hand pending tasks to connections: new ones up to the limit. A
 * connection that is busy takes more when it is done with its task. */
static void
dispatch(struct relay *r)
{
	struct config *cfg = r->srv->cfg;

	while (r->pending && r->nconns < (size_t)cfg->relay_connections && !r->draining) {
		struct task *t = r->pending;
		r->pending = t->next;
		t->next = NULL;
		conn_open(r, t);
	}
}

/* ------------------------------------------------------------------ */
/* scanning the queue                                                 */

static struct task *
load_task(struct relay *r, sqlite3_stmt *m, const char *now)
{
	struct task *t = xcalloc(1, sizeof(*t));
	sqlite3_stmt *st;

	t->message_id = sqlite3_column_int64(m, 0);
	snprintf(t->public_id, sizeof(t->public_id), "%s", sqlite3_column_text(m, 1));
	snprintf(t->received_at, sizeof(t->received_at), "%s", sqlite3_column_text(m, 2));
	t->sender = col_dup(m, 3);
	t->helo = col_dup(m, 4);
	t->client = col_dup(m, 5);
	t->auth_login = col_dup(m, 6);
	t->body_type = col_dup(m, 7);
	t->smtputf8 = sqlite3_column_int(m, 8) != 0;
	t->size = sqlite3_column_int64(m, 9);
	if (sqlite3_prepare_v2(r->db, "SELECT recipient_id, address FROM recipients WHERE message_id = ?1 AND "
	    "state IN ('queued', 'deferred') AND (next_attempt_at IS NULL OR next_attempt_at <= ?2) ORDER BY position",
	    -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, t->message_id);
		sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW) {
			t->rcpts = xrealloc(t->rcpts, (t->nrcpt + 1) * sizeof(*t->rcpts));
			memset(&t->rcpts[t->nrcpt], 0, sizeof(*t->rcpts));
			t->rcpts[t->nrcpt].id = sqlite3_column_int64(st, 0);
			t->rcpts[t->nrcpt].address = col_dup(st, 1);
			t->nrcpt++;
		}
		sqlite3_finalize(st);
	}
	return t;
}

static void
scan(struct relay *r)
{
	struct config *cfg = r->srv->cfg;
	sqlite3_stmt *st;
	char now[24];
	size_t want = (size_t)cfg->relay_connections * 8, got = 0;

	if (cfg->relay_host[0] == '\0' || r->draining)
		return;
	store_time(now_ms(), now);
	if (sqlite3_prepare_v2(r->db,
	    "SELECT m.message_id, m.public_id, m.received_at, m.envelope_from, m.helo, m.client_address, "
	    "coalesce(m.auth_login, ''), m.body_type, m.smtputf8, m.size, "
	    "EXISTS (SELECT 1 FROM message_bodies b WHERE b.message_id = m.message_id) FROM messages m "
	    "WHERE m.message_id IN (SELECT DISTINCT message_id FROM recipients WHERE state IN ('queued', 'deferred') "
	    "AND (next_attempt_at IS NULL OR next_attempt_at <= ?1)) ORDER BY m.message_id LIMIT ?2",
	    -1, &st, NULL) != SQLITE_OK) {
		log_err("event=relay_scan_failed error=\"%s\"", sqlite3_errmsg(r->db));
		return;
	}
	sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)(want + r->ninflight));
	while (sqlite3_step(st) == SQLITE_ROW && got < want) {
		struct task *t, **tail;
		if (inflight_has(r, sqlite3_column_int64(st, 0)))
			continue;
		t = load_task(r, st, now);
		if (t->nrcpt == 0) {
			task_free(t);
			continue;
		}
		inflight_add(r, t->message_id);
		if (sqlite3_column_int(st, 10) == 0) {
			/* purged while the relay was off: nothing left to send */
			task_set_all(t, R_FAILED, "554 5.3.0 the saved copy was purged before it could be delivered", false);
			task_record(r, t);
			continue;
		}
		for (tail = &r->pending; *tail; tail = &(*tail)->next)
			;
		*tail = t;
		got++;
	}
	sqlite3_finalize(st);
	dispatch(r);
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct timeval tv = { (time_t)r->srv->cfg->relay_poll_interval, 0 };

	scan(r);
	evtimer_add(r->poll, &tv);
}

void
relay_kick(struct server *srv)
{
	struct relay *r = srv->relay;
	struct timeval tv = { 0, 0 };

	if (r && !r->draining && srv->cfg->relay_host[0])
		evtimer_add(r->poll, &tv);
}

/* ------------------------------------------------------------------ */
/* retention                                                          */

struct purge {
	struct relay *r;
	int64_t cutoff_ms, batch;
	bool relay_enabled;
	int purged;
	struct writer_job job;
};

static int
purge_run(sqlite3 *db, void *arg)
{
	struct purge *p = arg;
	sqlite3_stmt *sel, *dt, *db_;
	char cutoff[24];
	int rc = SQLITE_OK;

	store_time(p->cutoff_ms, cutoff);
	/* Without a relay nothing ever leaves 'queued': the age alone counts. */
	if (sqlite3_prepare_v2(db, "SELECT m.message_id FROM messages m JOIN message_bodies b USING (message_id) "
	    "WHERE m.received_at < ?1 AND (?3 = 0 OR NOT EXISTS (SELECT 1 FROM recipients r "
	    "WHERE r.message_id = m.message_id AND r.state IN ('queued', 'deferred'))) LIMIT ?2", -1, &sel, NULL) != SQLITE_OK)
		return SQLITE_ERROR;
	if (sqlite3_prepare_v2(db, "DELETE FROM tokens WHERE message_id = ?1", -1, &dt, NULL) != SQLITE_OK) {
		sqlite3_finalize(sel);
		return SQLITE_ERROR;
	}
	if (sqlite3_prepare_v2(db, "DELETE FROM message_bodies WHERE message_id = ?1", -1, &db_, NULL) != SQLITE_OK) {
		sqlite3_finalize(sel);
		sqlite3_finalize(dt);
		return SQLITE_ERROR;
	}
	sqlite3_bind_text(sel, 1, cutoff, -1, SQLITE_STATIC);
	sqlite3_bind_int64(sel, 2, p->batch);
	sqlite3_bind_int(sel, 3, p->relay_enabled);
	while (rc == SQLITE_OK && sqlite3_step(sel) == SQLITE_ROW) {
		sqlite3_int64 id = sqlite3_column_int64(sel, 0);
		sqlite3_bind_int64(dt, 1, id);
		sqlite3_bind_int64(db_, 1, id);
		if (sqlite3_step(dt) != SQLITE_DONE || sqlite3_step(db_) != SQLITE_DONE)
			rc = SQLITE_ERROR;
		sqlite3_reset(dt);
		sqlite3_reset(db_);
		p->purged++;
	}
	sqlite3_finalize(sel);
	sqlite3_finalize(dt);
	sqlite3_finalize(db_);
	/* Give the freed pages back to the file system, a bounded amount
	 * per pass so that a big purge never holds the writer for long. */
	if (rc == SQLITE_OK && p->purged > 0)
		sqlite3_exec(db, "PRAGMA incremental_vacuum(4096)", NULL, NULL, NULL);
	return rc;
}

static void
purge_done(struct writer_job *job)
{
	struct purge *p = job->arg;
	struct relay *r = p->r;

	if (p->purged > 0)
		log_info("event=retention_purged messages=%d", p->purged);
	r->purging = false;
	server_maybe_exit(r->srv);
	/* a full batch: more are waiting, go on at once */
	if (job->rc == SQLITE_OK && p->purged == p->batch) {
		struct timeval tv = { 0, 0 };
		evtimer_add(r->purge, &tv);
	}
	free(p);
}

static void
purge_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct config *cfg = r->srv->cfg;
	struct timeval tv = { (time_t)cfg->retention_interval, 0 };
	struct purge *p;

	evtimer_add(r->purge, &tv);
	if (r->purging || r->draining)
		return;
	p = xcalloc(1, sizeof(*p));
	p->r = r;
	p->cutoff_ms = now_ms() - cfg->retention_keep * 1000;
	p->batch = cfg->retention_batch;
	p->relay_enabled = cfg->relay_host[0] != '\0';
	p->job.run = purge_run;
	p->job.done = purge_done;
	p->job.arg = p;
	r->purging = true;
	writer_job_submit(r->srv->writer, &p->job);
}

void
relay_jobs_done(struct server *srv)
{
	struct writer_job *list = writer_collect_jobs(srv->writer), *j;

	while ((j = list) != NULL) {
		list = j->next;
		j->done(j);
	}
}

/* ------------------------------------------------------------------ */

static int
load_password(struct relay *r, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char buf[512];

	if (f == NULL) {
		snprintf(err, errlen, "relay.auth_password_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	r->password = xstrdup(buf);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

int
relay_start(struct server *srv, char *err, size_t errlen)
{
	struct config *cfg = srv->cfg;
	struct relay *r = xcalloc(1, sizeof(*r));
	struct timeval now = { 0, 0 };

	r->srv = srv;
	srv->relay = r;
	r->db = store_open(srv->db_path, err, errlen);
	if (r->db == NULL)
		return -1;
	r->poll = evtimer_new(srv->base, poll_cb, r);
	r->purge = evtimer_new(srv->base, purge_cb, r);
	evtimer_add(r->purge, &now);
	if (cfg->relay_host[0] == '\0')
		return 0;
	if (cfg->relay_auth_user[0] && load_password(r, cfg->relay_auth_password_file, err, errlen) == -1)
		return -1;
	r->dns = evdns_base_new(srv->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (r->dns == NULL)
		r->dns = evdns_base_new(srv->base, 0);
	r->ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_min_proto_version(r->ctx, TLS1_2_VERSION);
	SSL_CTX_set_default_verify_paths(r->ctx);
	if (cfg->relay_tls_ca_file[0] && SSL_CTX_load_verify_locations(r->ctx, cfg->relay_tls_ca_file, NULL) != 1) {
		snprintf(err, errlen, "relay.tls_ca_file %s: cannot load", cfg->relay_tls_ca_file);
		return -1;
	}
	log_info("event=relay_ready next_hop=%s:%lld tls=%s", cfg->relay_host, (long long)cfg->relay_port, cfg->relay_tls);
	evtimer_add(r->poll, &now);
	return 0;
}

void
relay_drain(struct server *srv)
{
	struct relay *r = srv->relay;
	struct task *t;

	if (r == NULL)
		return;
	r->draining = true;
	/* tasks not started: back to the queue as they are (not attempted) */
	while ((t = r->pending) != NULL) {
		r->pending = t->next;
		inflight_del(r, t->message_id);
		task_free(t);
	}
	for (struct conn *c = r->conns; c; c = c->next) {
		while ((t = c->queue) != NULL) {
			c->queue = t->next;
			inflight_del(r, t->message_id);
			task_free(t);
		}
	}
}

size_t
relay_busy(struct server *srv)
{
	struct relay *r = srv->relay;
	size_t n = 0;

	if (r == NULL)
		return 0;
	for (struct conn *c = r->conns; c; c = c->next)
		n += c->task != NULL;
	for (struct record *rec = r->waiting; rec; rec = rec->next_waiting)
		n++;
	return n + (r->purging ? 1 : 0);
}

void
relay_stop(struct server *srv)
{
	struct relay *r = srv->relay;

	if (r == NULL)
		return;
	relay_drain(srv);
	while (r->conns) {
		struct conn *c = r->conns;
		if (c->task) {
			/* cut short: not attempted, as if never picked */
			inflight_del(r, c->task->message_id);
			task_free(c->task);
			c->task = NULL;
		}
		conn_free(c);
	}
	while (r->waiting) {
		struct record *rec = r->waiting;
		r->waiting = rec->next_waiting;
		log_warn("event=relay_record_lost msgid=%s tries=%u note=delivered_again_after_restart",
		    rec->t->public_id, rec->tries);
		record_free(rec);
	}
	if (r->poll)
		event_free(r->poll);
	if (r->purge)
		event_free(r->purge);
	if (r->dns)
		evdns_base_free(r->dns, 0);
	if (r->ctx)
		SSL_CTX_free(r->ctx);
	if (r->password) {
		sodium_memzero(r->password, strlen(r->password));
		free(r->password);
	}
	store_close(&r->db);
	free(r->inflight);
	free(r);
	srv->relay = NULL;
}
