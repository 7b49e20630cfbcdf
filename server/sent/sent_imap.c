/*
 * sent_imap.c: one IMAP client connection, for one filing job: greeting,
 * STARTTLS (or TLS from the start, or none), CAPABILITY, AUTHENTICATE
 * PLAIN as the master user on behalf of the login (RFC 4616 authorisation
 * id; SASL-IR when offered, else the continuation), then either
 *   LIST with SPECIAL-USE for the \Sent mailbox (or sent.folder), the mark
 *   (a writer job, committed before the APPEND goes out), APPEND with
 *   \Seen and the acceptance time, [APPENDUID] recorded;
 * or, for a job marked before (its APPEND may have reached the server),
 *   EXAMINE of the mailbox it went to, UID SEARCH by Message-ID and size
 *   (by size and date without a Message-ID), UID FETCH of the candidates
 *   to confirm size and internal date (and the body's SHA-256 without a
 *   Message-ID): found, it is recorded; not found, APPENDed.
 * A mailbox that does not exist yet ([TRYCREATE]) is created once.
 *
 * Responses are framed and parsed by server/protocol/imap_parse.h. The
 * mark and the APPEND with its body are in sent_append.c; the tagged
 * answers, theirs too, are handled here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <sodium.h>

#include "server/base/line.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/net/tls_conn.h"
#include "server/protocol/imap_parse.h"
#include "server/protocol/sasl.h"
#include "server/sent/sent_internal.h"

static void conn_setup(struct sent_conn *c);

struct sent_conn *
sent_conn_next(struct sent_conn *c)
{
	return c->next;
}

struct sent_task *
sent_conn_take_task(struct sent_conn *c)
{
	struct sent_task *t = c->task;

	c->task = NULL;
	return t;
}

void
sent_conn_free(struct sent_conn **cp)
{
	struct sent_conn *c = *cp;
	struct sent *s = c->s;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	if (s->current == c)
		s->current = NULL;
	if (c->bev)
		bufferevent_free(c->bev);
	sent_append_forget(c);
	sent_task_free(&c->task);
	free(c);
	*cp = NULL;
}

/* The end of a connection whose task is recorded (or never was): let the
 * next task have its place. */
static void
conn_close(struct sent_conn *c)
{
	struct sent *s = c->s;

	sent_conn_free(&c);
	sent_dispatch(s);
	server_maybe_exit(s->srv);
}

static void
conn_finish(struct sent_conn *c, enum sent_outcome out, const char *why)
{
	struct sent *s = c->s;
	const struct config *cfg = s->srv->cfg;
	char text[400];

	if (c->task) {
		if (out == SENT_FILED) {
			sent_task_done(s, c->task, out, c->mailbox, c->uidvalidity, c->uid, NULL);
		} else {
			snprintf(text, sizeof(text), "%s (%s)", why, cfg->sent_imap_host);
			sent_task_done(s, c->task, out, NULL, 0, 0, text);
		}
		c->task = NULL;
	}
}

void
sent_conn_fail(struct sent_conn *c, const char *why)
{
	conn_finish(c, SENT_RETRY, why);
	conn_close(c);
}

void
sent_send_cmd(struct sent_conn *c, enum sent_conn_state next, const char *fmt, ...)
{
	char line[2100];
	va_list ap;
	size_t n, m;

	snprintf(c->tag, sizeof(c->tag), "s%u", ++c->tagno);
	n = (size_t)snprintf(line, sizeof(line), "%s ", c->tag);
	va_start(ap, fmt);
	m = line_vformat_whole(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (m == 0) {
		sent_conn_fail(c, "command too long");   /* never: every argument is bounded */
		return;
	}
	c->state = next;
	bufferevent_write(c->bev, line, n + m);
}

/* The text of a response for an error message: printable, bounded. */
static void
reply_text(const struct sent_conn *c, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < c->resp.len && o + 1 < outlen && o < 200; i++) {
		char ch = c->resp.text[i];
		out[o++] = (ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\') ? ch : '?';
	}
	out[o] = '\0';
}

static void
fail_reply(struct sent_conn *c, const char *what)
{
	char text[256], why[320];

	reply_text(c, text, sizeof(text));
	snprintf(why, sizeof(why), "%s: %s", what, text);
	sent_conn_fail(c, why);
}

/* ------------------------------------------------------------------ */
/* log in                                                             */

static void
send_auth(struct sent_conn *c, bool initial)
{
	const struct config *cfg = c->s->srv->cfg;
	const char *login = c->task->login, *user = cfg->sent_master_user, *pw = c->s->password;
	size_t ll = strlen(login), ul = strlen(user), pl = strlen(pw), n = ll + ul + pl + 2;
	unsigned char *raw = xmalloc(n);
	char *b64 = xmalloc((n / 3 + 1) * 4 + 1);

	memcpy(raw, login, ll);
	raw[ll] = '\0';
	memcpy(raw + ll + 1, user, ul);
	raw[ll + 1 + ul] = '\0';
	memcpy(raw + ll + 2 + ul, pw, pl);
	sasl_base64_encode(raw, n, b64);
	if (initial) {
		if (c->caps & IMAP_CAP_SASL_IR)
			sent_send_cmd(c, I_AUTH, "AUTHENTICATE PLAIN %s", b64);
		else
			sent_send_cmd(c, I_AUTH, "AUTHENTICATE PLAIN");
	} else {
		bufferevent_write(c->bev, b64, strlen(b64));
		bufferevent_write(c->bev, "\r\n", 2);
	}
	sodium_memzero(raw, n);
	sodium_memzero(b64, strlen(b64));
	free(raw);
	free(b64);
}

static void
after_capabilities(struct sent_conn *c)
{
	const struct config *cfg = c->s->srv->cfg;

	if (!c->tls && cfg->sent_tls_mode == CONFIG_SENT_TLS_STARTTLS) {
		if (!(c->caps & IMAP_CAP_STARTTLS)) {
			sent_conn_fail(c, "the IMAP server does not offer STARTTLS");
			return;
		}
		sent_send_cmd(c, I_STARTTLS, "STARTTLS");
		return;
	}
	if (!(c->caps & IMAP_CAP_AUTH_PLAIN)) {
		sent_conn_fail(c, "the IMAP server does not offer AUTH=PLAIN");
		return;
	}
	send_auth(c, true);
}

static bool
start_tls(struct sent_conn *c)
{
	struct sent *s = c->s;
	const struct config *cfg = s->srv->cfg;
	struct bufferevent *tls;
	char err[200];

	tls = tls_conn_upgrade(s->srv->base, c->bev, s->ctx, TLS_CONN_CLIENT, cfg->sent_imap_host,
	    cfg->sent_tls_verify, err, sizeof(err));
	if (tls == NULL) {
		sent_conn_fail(c, "TLS setup failed");
		return false;
	}
	c->bev = tls;
	c->tls = true;
	conn_setup(c);
	return true;
}

/* ------------------------------------------------------------------ */
/* the mailbox, and the copy that may be there already                */

void
sent_send_with_mailbox(struct sent_conn *c, enum sent_conn_state next, const char *verb)
{
	char q[600];

	if (imap_quote(c->mailbox, q, sizeof(q)) == 0) {
		sent_conn_fail(c, "mailbox name cannot be quoted");
		return;
	}
	sent_send_cmd(c, next, "%s %s", verb, q);
}

static void
after_login(struct sent_conn *c)
{
	const struct config *cfg = c->s->srv->cfg;

	if (c->task->append_sent && c->task->mailbox) {
		/* an APPEND may have gone out: look before appending again */
		snprintf(c->mailbox, sizeof(c->mailbox), "%s", c->task->mailbox);
		if (imap_message_id(c->task->head ? c->task->head : "", c->task->head_len, c->msgid,
		    sizeof(c->msgid)) == -1)
			c->msgid[0] = '\0';
		sent_send_with_mailbox(c, I_EXAMINE, "EXAMINE");
		return;
	}
	snprintf(c->mailbox, sizeof(c->mailbox), "%s", cfg->sent_folder);
	if (c->caps & IMAP_CAP_LIST_EXTENDED)
		sent_send_cmd(c, I_LIST, "LIST \"\" \"*\" RETURN (SPECIAL-USE)");
	else if (c->caps & IMAP_CAP_SPECIAL_USE)
		sent_send_cmd(c, I_LIST, "LIST (SPECIAL-USE) \"\" \"*\"");
	else
		sent_start_append(c);
}

static void
send_search(struct sent_conn *c)
{
	char since[32], q[900], crit[1000] = "";
	int64_t size = c->task->size;

	/* SINCE a day early: the server compares dates in its own zone */
	imap_date_time_format(c->task->received_s - 86400, since);
	since[11] = '\0';
	if (c->msgid[0]) {
		if (imap_quote(c->msgid, q, sizeof(q)) == 0)
			c->msgid[0] = '\0';
		else
			snprintf(crit, sizeof(crit), "HEADER Message-ID %s ", q);
	}
	if (size > 0)
		sent_send_cmd(c, I_SEARCH, "UID SEARCH %sSINCE %s LARGER %lld SMALLER %lld", crit, since,
		    (long long)size - 1, (long long)size + 1);
	else
		sent_send_cmd(c, I_SEARCH, "UID SEARCH %sSINCE %s SMALLER 1", crit, since);
}

static void
send_fetch(struct sent_conn *c)
{
	char set[MAX_CANDIDATES * 11 + 1];
	size_t o = 0;

	for (size_t i = 0; i < c->ncand; i++)
		o += (size_t)snprintf(set + o, sizeof(set) - o, "%s%u", i ? "," : "", c->cand[i]);
	crypto_hash_sha256_init(&c->hash);
	/* without a Message-ID, the bodies themselves are compared */
	c->resp.literals_to_sink = c->msgid[0] == '\0';
	sent_send_cmd(c, I_FETCH, "UID FETCH %s (UID RFC822.SIZE INTERNALDATE%s)", set,
	    c->msgid[0] ? "" : " BODY.PEEK[]");
}

static void
body_sink(void *arg, const char *p, size_t n)
{
	struct sent_conn *c = arg;

	if (c->state == I_FETCH)
		crypto_hash_sha256_update(&c->hash, (const unsigned char *)p, n);
}

static void
on_fetch(struct sent_conn *c, const struct imap_line *l)
{
	struct imap_fetch f;
	unsigned char digest[crypto_hash_sha256_BYTES];
	char hex[65];
	bool same_body = true;

	if (imap_fetch_parse(l->rest, l->rest_len, &f) == -1)
		return;
	if (c->msgid[0] == '\0') {
		crypto_hash_sha256_final(&c->hash, digest);
		crypto_hash_sha256_init(&c->hash);
		hex_encode(digest, sizeof(digest), hex);
		same_body = f.body && strcmp(hex, c->task->sha256) == 0;
	}
	if (c->found_uid == 0 && f.uid > 0 && f.size == c->task->size && f.internaldate == c->task->received_s &&
	    same_body)
		c->found_uid = f.uid;
}

/* ------------------------------------------------------------------ */
/* responses                                                          */

static void
on_untagged(struct sent_conn *c, const struct imap_line *l)
{
	if (strcmp(l->code, "CAPABILITY") == 0)
		c->caps = imap_caps_parse(l->code_args, l->code_len);
	else if (strcmp(l->keyword, "CAPABILITY") == 0)
		c->caps = imap_caps_parse(l->rest, l->rest_len);
	else if (strcmp(l->code, "UIDVALIDITY") == 0 && c->state == I_EXAMINE)
		imap_number_parse(l->code_args, l->code_len, &c->uidvalidity);
	else if (strcmp(l->keyword, "LIST") == 0 && c->state == I_LIST) {
		char name[256];
		bool sent, noselect;
		/* the first \Sent mailbox wins (RFC 6154 allows several) */
		if (imap_list_parse(l->rest, l->rest_len, &sent, &noselect, name, sizeof(name)) == 0 && sent &&
		    !noselect && !c->special) {
			snprintf(c->mailbox, sizeof(c->mailbox), "%s", name);
			c->special = true;
		}
	} else if (strcmp(l->keyword, "SEARCH") == 0 && c->state == I_SEARCH)
		c->ncand = imap_search_parse(l->rest, l->rest_len, c->cand, MAX_CANDIDATES);
	else if (strcmp(l->keyword, "FETCH") == 0 && c->state == I_FETCH)
		on_fetch(c, l);
}

/* The tagged answer to the command in flight. */
static void
on_tagged(struct sent_conn *c, const struct imap_line *l)
{
	bool ok = l->status == IMAP_OK;

	switch (c->state) {
	case I_STARTTLS:
		if (!ok) {
			fail_reply(c, "STARTTLS refused");
			return;
		}
		if (start_tls(c))
			sent_send_cmd(c, I_CAPA, "CAPABILITY");
		return;
	case I_CAPA:
		if (!ok) {
			fail_reply(c, "CAPABILITY refused");
			return;
		}
		after_capabilities(c);
		return;
	case I_AUTH:
		if (!ok) {
			fail_reply(c, "login refused");
			return;
		}
		if (strcmp(l->code, "CAPABILITY") == 0) {
			c->caps = imap_caps_parse(l->code_args, l->code_len);
			after_login(c);
		} else {
			sent_send_cmd(c, I_CAPA2, "CAPABILITY");
		}
		return;
	case I_CAPA2:
		if (!ok) {
			fail_reply(c, "CAPABILITY refused");
			return;
		}
		after_login(c);
		return;
	case I_LIST:
		/* without a \Sent mailbox, sent.folder (set in after_login) */
		sent_start_append(c);
		return;
	case I_EXAMINE:
		if (!ok) {
			sent_start_append(c);    /* no such mailbox: nothing can be there */
			return;
		}
		c->ncand = 0;
		send_search(c);
		return;
	case I_SEARCH:
		if (!ok) {
			fail_reply(c, "SEARCH refused");
			return;
		}
		if (c->ncand == 0) {
			sent_start_append(c);
			return;
		}
		c->found_uid = 0;
		send_fetch(c);
		return;
	case I_FETCH:
		c->resp.literals_to_sink = false;
		if (!ok) {
			fail_reply(c, "FETCH refused");
			return;
		}
		if (c->found_uid == 0) {
			sent_start_append(c);
			return;
		}
		c->uid = c->found_uid;
		log_info("event=sent_found msgid=%s mailbox=\"%s\" uid=%u note=\"already filed by an earlier try\"",
		    c->task->public_id, c->mailbox, c->uid);
		conn_finish(c, SENT_FILED, NULL);
		sent_send_cmd(c, I_LOGOUT, "LOGOUT");
		return;
	case I_APPEND:
	case I_BODY:
	case I_APPENDED:
		if (!ok && c->state == I_BODY) {
			/* before the end of our LITERAL+ literal: RFC 7888 has the
			 * server read it all the same, so finish it, then act */
			c->refused = true;
			c->refused_trycreate = strcmp(l->code, "TRYCREATE") == 0;
			reply_text(c, c->refused_text, sizeof(c->refused_text));
			return;
		}
		if (!ok) {
			/* [TRYCREATE]: create it once and try again */
			if (strcmp(l->code, "TRYCREATE") == 0 && !c->created) {
				c->created = true;
				sent_send_with_mailbox(c, I_CREATE, "CREATE");
				return;
			}
			fail_reply(c, "APPEND refused");
			return;
		}
		if (c->state != I_APPENDED) {
			fail_reply(c, "APPEND answered before its message");
			return;
		}
		c->uidvalidity = c->uid = 0;
		if (strcmp(l->code, "APPENDUID") == 0 &&
		    imap_appenduid_parse(l->code_args, l->code_len, &c->uidvalidity, &c->uid) == -1)
			c->uidvalidity = c->uid = 0;
		conn_finish(c, SENT_FILED, NULL);
		sent_send_cmd(c, I_LOGOUT, "LOGOUT");
		return;
	case I_CREATE:
		/* NO too: it may exist by now; the APPEND will tell */
		sent_send_append(c);
		return;
	case I_LOGOUT:
		conn_close(c);
		return;
	default:
		fail_reply(c, "unexpected answer");
		return;
	}
}

/* One whole response; it may close c (see conn_read). */
static void
on_response(struct sent_conn *c)
{
	struct imap_line l;

	if (c->resp.bad || imap_line_parse(c->resp.text, c->resp.len, &l) == -1) {
		fail_reply(c, "malformed response from the IMAP server");
		return;
	}
	if (l.kind == IMAP_UNTAGGED) {
		if (l.status == IMAP_BYE) {
			if (c->state != I_LOGOUT)
				fail_reply(c, "the IMAP server closed the session");
			return;
		}
		if (c->state == I_GREETING || c->state == I_CONNECT) {
			if (l.status != IMAP_OK) {
				fail_reply(c, "unexpected greeting");
				return;
			}
			if (strcmp(l.code, "CAPABILITY") == 0)
				c->caps = imap_caps_parse(l.code_args, l.code_len);
			if (c->caps == 0)
				sent_send_cmd(c, I_CAPA, "CAPABILITY");
			else
				after_capabilities(c);
			return;
		}
		on_untagged(c, &l);
		return;
	}
	if (l.kind == IMAP_CONTINUE) {
		if (c->state == I_AUTH) {
			send_auth(c, false);
		} else if (c->state == I_APPEND) {
			c->state = I_BODY;
			sent_body_pump(c);
		} else {
			fail_reply(c, "unexpected continuation");
		}
		return;
	}
	if (strcmp(l.tag, c->tag) != 0) {
		fail_reply(c, "answer to a command not sent");
		return;
	}
	on_tagged(c, &l);
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct sent_conn *c = arg;
	struct sent *s = c->s;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		bool done;
		size_t used;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		used = imap_resp_feed(&c->resp, v.iov_base, v.iov_len, &done);
		evbuffer_drain(in, used);
		if (!done) {
			if (c->resp.overflow && c->resp.lit_left == 0) {
				sent_conn_fail(c, "response too long from the IMAP server");
				return;
			}
			continue;
		}
		s->current = c;
		on_response(c);
		/* closed (sent_conn_free cleared current): stop here, even if a
		 * new connection took the same address; c is not to be read */
		if (s->current != c)
			return;
		imap_resp_reset(&c->resp);
		if (c->bev != bev)
			return;     /* now speaking TLS: the new one reads */
	}
}

static void
conn_write(struct bufferevent *bev, void *arg)
{
	struct sent_conn *c = arg;

	if (c->state == I_BODY)
		sent_body_pump(c);
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct sent_conn *c = arg;
	const struct config *cfg = c->s->srv->cfg;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->state == I_CONNECT) {
			c->state = I_GREETING;
			if (cfg->sent_tls_mode == CONFIG_SENT_TLS_IMPLICIT && !c->tls)
				start_tls(c);
		}
		return;
	}
	if (c->state == I_LOGOUT && c->task == NULL) {
		conn_close(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		sent_conn_fail(c, "timeout talking to the IMAP server");
		return;
	}
	{
		char why[300];
		tls_conn_error(bev, what, "the IMAP server", why, sizeof(why));
		sent_conn_fail(c, why);
	}
}

static void
conn_setup(struct sent_conn *c)
{
	struct timeval tv = { (time_t)c->s->srv->cfg->sent_timeout, 0 };

	bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_HIGH / 4, 0);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

void
sent_conn_open(struct sent *s, struct sent_task *t)
{
	const struct config *cfg = s->srv->cfg;
	struct sent_conn *c = xcalloc(1, sizeof(*c));
	int port = (int)(cfg->sent_imap_port ? cfg->sent_imap_port :
	    cfg->sent_tls_mode == CONFIG_SENT_TLS_IMPLICIT ? 993 : 143);

	c->s = s;
	c->task = t;
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	c->state = I_CONNECT;
	imap_resp_init(&c->resp, body_sink, c);
	c->bev = bufferevent_socket_new(s->srv->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	conn_setup(c);
	if (bufferevent_socket_connect_hostname(c->bev, s->dns, AF_UNSPEC, cfg->sent_imap_host, port) != 0)
		sent_conn_fail(c, "cannot start connecting");
}
