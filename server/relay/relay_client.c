/*
 * relay_client.c: one outgoing SMTP connection to the next hop, a small
 * state machine over a bufferevent: greeting, EHLO, STARTTLS (then EHLO
 * again), AUTH PLAIN, then per task MAIL and the RCPTs (pipelined when
 * offered), then BDAT (when CHUNKING is offered) or DATA with
 * dot-stuffing, and the final reply. Replies are read whole (multi-line)
 * and matched with the commands in the order they were sent. A connection
 * takes task after task before it says QUIT (connection reuse); each
 * finished task goes to relay_result.c.
 *
 * The body is streamed in pieces (db/body_stream.h), each read by a
 * writer job while the loop goes on; the
 * next piece is asked for when the output has room again.
 */
#include <stdarg.h>
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
#include <sodium.h>

#include "db/body_stream.h"
#include "db/queue.h"
#include "db/writer.h"
#include "server/base/line.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/net/tls_conn.h"
#include "server/protocol/sasl.h"
#include "server/relay/relay_internal.h"

#define BODY_CHUNK (64 * 1024)      /* dot-stuffed at a time */


static void conn_fail(struct conn *c, const char *why);
static void conn_setup(struct conn *c);
static void conn_next_task(struct conn *c);

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

void
relay_conn_free(struct conn **cp)
{
	struct conn *c = *cp;
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
	body_stream_free(&c->body);
	free(c->owed);
	free(c->header);
	free(c);
	*cp = NULL;
}

/* Give up on this connection: the task in progress and the ones waiting
 * on it are deferred (or failed when the reason is permanent). */
static void
conn_fail_with(struct conn *c, enum queue_result res, const char *why)
{
	struct relay *r = c->r;
	struct queue_task *t;
	char text[600];

	snprintf(text, sizeof(text), "%s (%s:%lld)", why, r->srv->cfg->relay_host, (long long)r->srv->cfg->relay_port);
	log_info("event=relay_connection_failed reason=\"%s\"", text);
	if (c->task) {
		relay_task_set_all(c->task, res, text, true);
		relay_task_record(r, c->task);
		c->task = NULL;
	}
	while ((t = c->queue) != NULL) {
		c->queue = t->next;
		relay_task_set_all(t, res, text, true);
		relay_task_record(r, t);
	}
	relay_conn_free(&c);
}

static void
conn_fail(struct conn *c, const char *why)
{
	conn_fail_with(c, QUEUE_DEFERRED, why);
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
	bool verify = cfg->relay_tls_mode == CONFIG_RELAY_TLS_REQUIRED && cfg->relay_tls_verify;
	struct bufferevent *tls;
	char err[200];

	tls = tls_conn_upgrade(r->srv->base, c->bev, r->ctx, TLS_CONN_CLIENT, cfg->relay_host, verify, err, sizeof(err));
	if (tls == NULL) {
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

	if (!c->tls && c->starttls && cfg->relay_tls_mode != CONFIG_RELAY_TLS_NONE) {
		c->state = C_STARTTLS;
		send_line(c, "STARTTLS");
		return;
	}
	if (!c->tls && cfg->relay_tls_mode == CONFIG_RELAY_TLS_REQUIRED) {
		conn_fail(c, "TLS required but STARTTLS not offered");
		return;
	}
	if (cfg->relay_auth_user[0]) {
		if (!c->tls && cfg->relay_tls_mode != CONFIG_RELAY_TLS_NONE) {
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
	struct queue_task *t = c->task;
	char params[128] = "";
	size_t n = 0;

	if (strcmp(t->body_type, "BINARYMIME") == 0 && !(c->chunking && c->binarymime)) {
		relay_task_set_all(t, QUEUE_FAILED, "554 5.6.3 the next hop does not accept BINARYMIME content (conversion not supported)", false);
		relay_task_record(c->r, t);
		c->task = NULL;
		conn_next_task(c);
		return;
	}
	if (t->smtputf8 && !c->smtputf8) {
		relay_task_set_all(t, QUEUE_FAILED, "553 5.6.7 the next hop does not support SMTPUTF8", false);
		relay_task_record(c->r, t);
		c->task = NULL;
		conn_next_task(c);
		return;
	}
	if (c->size_limit > 0 && t->size > c->size_limit) {
		relay_task_set_all(t, QUEUE_FAILED, "552 5.3.4 message larger than the next hop's SIZE limit", false);
		relay_task_record(c->r, t);
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
	struct queue_task *t = c->task;
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
	size_t pre = t->prepend ? strlen(t->prepend) : 0;
	free(c->header);
	c->header = xmalloc(1024 + pre);
	/* RFC 5321 4.4. No "for <recipient>" clause: with several recipients
	 * it would name one of them to all, a Bcc leak. */
	n = snprintf(c->header, 1024, "Received: from %s%s\r\n\tby %s (submitd) with %s id %s;\r\n\t%s\r\n",
	    h ? helo : "unknown", client, cfg->hostname, t->auth_login[0] ? "ESMTPA" : "ESMTP",
	    t->public_id, date);
	c->header_len = n > 0 && n < 1024 ? (size_t)n : 0;
	/* Under our trace line, the DKIM signatures computed at acceptance:
	 * stored beside the client's bytes, which stay as they came. */
	memcpy(c->header + c->header_len, t->prepend ? t->prepend : "", pre);
	c->header_len += pre;
	c->header_off = 0;
	c->body_off = 0;
	c->at_line_start = true;
}

/* Octets of the message onto the wire: as they are with BDAT, with dots
 * doubled at line starts with DATA (RFC 5321 4.5.2). */
static void
body_emit(struct conn *c, const char *p, size_t len)
{
	static char stuffed[BODY_CHUNK * 2];

	if (c->chunking) {
		bufferevent_write(c->bev, p, len);
		return;
	}
	while (len > 0) {
		size_t n = len < BODY_CHUNK ? len : BODY_CHUNK, o = 0;
		for (size_t i = 0; i < n; i++) {
			if (c->at_line_start && p[i] == '.')
				stuffed[o++] = '.';
			stuffed[o++] = p[i];
			c->at_line_start = p[i] == '\n' && (i > 0 ? p[i - 1] == '\r' : c->last2[1] == '\r');
		}
		c->last2[1] = p[n - 1];
		bufferevent_write(c->bev, stuffed, o);
		p += n;
		len -= n;
	}
}

static void body_pump(struct conn *c);

/* The next piece of the body, read on the writer thread: the event loop
 * does no database I/O (relay.h). */
static void
body_piece(void *owner, const char *buf, size_t n, const char *err)
{
	struct conn *c = owner;

	if (err != NULL) {
		log_err("event=relay_body_read_failed msgid=%s error=\"%s\"", c->task->public_id, err);
		conn_fail(c, "cannot read the stored message");
		return;
	}
	c->body_off += (int64_t)n;
	body_emit(c, buf, n);
	body_pump(c);
}

/* Push header and body until the output is full; the write callback calls
 * again when it has drained, and each piece read calls again when it has
 * arrived. */
static void
body_pump(struct conn *c)
{
	struct queue_task *t = c->task;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (body_stream_busy(c->body))
		return;
	while (evbuffer_get_length(out) < OUT_HIGH) {
		if (c->header_off < c->header_len) {
			body_emit(c, c->header + c->header_off, c->header_len - c->header_off);
			c->header_off = c->header_len;
		} else if (c->body_off < t->size) {
			if (c->body == NULL)
				c->body = body_stream_new(c->r->srv->writer, body_piece, c);
			body_stream_read(c->body, t->message_id, c->body_off, (size_t)(t->size - c->body_off));
			return;
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
	relay_task_record(c->r, c->task);
	c->task = NULL;
	conn_next_task(c);
}

/* One complete reply: code and the joined text. */
static void
on_reply(struct conn *c, int code, const char *text, const char *first_line)
{
	struct config *cfg = c->r->srv->cfg;
	struct queue_task *t = c->task;
	char full[700];

	snprintf(full, sizeof(full), "%d %s", code, first_line);
	switch (c->state) {
	case C_CONNECT:     /* the greeting may overtake the connect event */
	case C_GREETING:
		if (code != 220) {
			conn_fail_with(c, QUEUE_DEFERRED, full);
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
			if (cfg->relay_tls_mode == CONFIG_RELAY_TLS_REQUIRED) {
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
				relay_task_set_all(t, relay_result_of(code), full, false);
		} else if (what >= 0) {
			if (c->mail_ok) {
				if (code >= 200 && code < 300)
					t->rcpts[what].result = QUEUE_ACCEPTED;
				else {
					t->rcpts[what].result = relay_result_of(code);
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
			any |= t->rcpts[i].result == QUEUE_ACCEPTED;
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
				if (t->rcpts[i].result == QUEUE_ACCEPTED) {
					t->rcpts[i].result = relay_result_of(code);
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
			if (t->rcpts[i].result == QUEUE_ACCEPTED) {
				t->rcpts[i].result = relay_result_of(code);
				free(t->rcpts[i].reply);
				t->rcpts[i].reply = xstrdup(full);
			}
		if (c->state == C_BODY) {
			/* An answer before we finished sending: the stream is out
			 * of step, so this connection can carry nothing more. */
			relay_task_record(c->r, c->task);
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
		relay_conn_free(&c);
		relay_dispatch(r);
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
		relay_conn_free(&c);
		server_maybe_exit(r->srv);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		conn_fail(c, "timeout talking to the next hop");
		return;
	}
	{
		char why[300];
		tls_conn_error(bev, what, "the next hop", why, sizeof(why));
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

void
relay_conn_open(struct relay *r, struct queue_task *first)
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
