/*
 * dovecot_client.c: see dovecot_client.h. The connection is a bufferevent
 * on a UNIX socket; lines are parsed by server/protocol/dovecot_auth.c.
 * Pending requests sit in a small hash table keyed by id (ids count up
 * from 1 per connection, so id % buckets spreads them evenly). Anything
 * the service sends that does not parse ends the connection: every
 * request pending on it answers AUTH_TEMPFAIL and the client reconnects
 * after a backoff, so a confused peer can delay logins but never grant
 * one.
 */
#include "server/auth/dovecot_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "server/auth/auth.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/protocol/dovecot_auth.h"
#include "server/protocol/sasl.h"

#define BUCKETS 256
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000
/* The mechanism list we keep: enough for every mechanism Dovecot has. */
#define MECHS_MAX 512

/* One request on the connection. */
struct dc_req {
	uint32_t id;
	struct auth_request *r;
	struct dovecot_client *c;
	struct event *timer;
	bool awaiting_client;       /* a challenge went out; the session's client answers next */
	bool lost;                  /* its connection went while the client was answering */
	struct dc_req *prev, *next; /* in its bucket */
	struct dc_req *todo;        /* connection_lost's list */
};

enum dc_state { DC_DOWN, DC_HANDSHAKE, DC_READY };

struct dovecot_client {
	struct dovecot_client_opts o;
	char *path;
	struct bufferevent *bev;
	enum dc_state state;
	struct event *retry;
	int64_t backoff_ms;
	bool logged_down;           /* one warning per outage, not one per retry */
	uint32_t next_id;
	struct dc_req *buckets[BUCKETS];
	size_t npending;
	char mechs[MECHS_MAX];      /* advertised: the last completed handshake's */
	char mechs_new[MECHS_MAX];  /* being read */
	char line[DOVECOT_AUTH_LINE_MAX + 1];   /* the line being parsed */
	char out[DOVECOT_AUTH_LINE_MAX + 2];    /* the line being sent: a session answered
	                                         * from a parsed line may send at once */
};

static void connect_now(struct dovecot_client *c);

static struct dc_req **
bucket(struct dovecot_client *c, uint32_t id)
{
	return &c->buckets[id % BUCKETS];
}

static struct dc_req *
req_find(struct dovecot_client *c, uint32_t id)
{
	for (struct dc_req *q = *bucket(c, id); q; q = q->next)
		if (q->id == id)
			return q;
	return NULL;
}

static void
req_unlink(struct dc_req *q)
{
	struct dovecot_client *c = q->c;

	if (q->prev)
		q->prev->next = q->next;
	else
		*bucket(c, q->id) = q->next;
	if (q->next)
		q->next->prev = q->prev;
	c->npending--;
}

/* Take r from the table: its record goes, r is returned. */
static struct auth_request *
req_detach(struct dc_req *q)
{
	struct auth_request *r = q->r;

	req_unlink(q);
	event_free(q->timer);
	r->sasl = NULL;
	free(q);
	return r;
}

static void
send_line(struct dovecot_client *c, const char *line, size_t len)
{
	if (c->bev && c->state != DC_DOWN)
		bufferevent_write(c->bev, line, len);
}

static void
send_cancel(struct dovecot_client *c, uint32_t id)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "CANCEL\t%u\n", (unsigned)id);

	send_line(c, buf, (size_t)n);
}

/* A final answer: hand r over, or drop it if its session has gone. */
static void
finish(struct dc_req *q, enum auth_result result, const char *why)
{
	struct dovecot_client *c = q->c;
	struct auth_request *r = req_detach(q);

	r->result = result;
	r->why = why;
	if (r->owner == NULL) {
		auth_request_free(&r);
		return;
	}
	r->next = NULL;
	c->o.done(c->o.done_arg, r);
}

static void
arm_timer(struct dc_req *q)
{
	struct timeval tv = { (time_t)(q->c->o.timeout_ms / 1000), (suseconds_t)(q->c->o.timeout_ms % 1000) * 1000 };

	evtimer_add(q->timer, &tv);
}

static void
on_req_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct dc_req *q = arg;
	struct dovecot_client *c = q->c;

	if (q->r->owner == NULL) {
		/* the session went while its client owed an answer */
		struct auth_request *r;
		if (!q->lost)
			send_cancel(c, q->id);
		r = req_detach(q);
		auth_request_free(&r);
		return;
	}
	if (q->awaiting_client) {
		/* the session's own timeouts watch its client */
		arm_timer(q);
		return;
	}
	log_warn("event=dovecot_timeout id=%u timeout_ms=%lld", (unsigned)q->id, (long long)c->o.timeout_ms);
	send_cancel(c, q->id);
	finish(q, AUTH_TEMPFAIL, "timeout");
}

/* The connection is gone (or refused): answer everything pending, then
 * try again later. */
static void
connection_lost(struct dovecot_client *c, const char *why)
{
	struct dc_req *todo = NULL, *q;
	struct timeval tv;

	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->state == DC_READY || !c->logged_down)
		log_warn("event=dovecot_down socket=%s reason=%s pending=%zu retry_ms=%lld", c->path, why,
		    c->npending, (long long)c->backoff_ms);
	c->logged_down = true;
	c->state = DC_DOWN;
	/* Collect the requests first: a session answered here may start a new
	 * AUTH at once, which must find the client down, not this loop. A
	 * request whose client is typing its answer to a challenge stays
	 * (lost): its session answers 454 when that answer comes, not in the
	 * middle of the exchange. Ids are never reused, so it cannot be taken
	 * for a request of the next connection. */
	for (size_t b = 0; b < BUCKETS; b++) {
		for (q = c->buckets[b]; q; q = q->next) {
			if (q->lost)
				continue;
			if (q->awaiting_client && q->r->owner != NULL) {
				q->lost = true;
				continue;
			}
			q->todo = todo;
			todo = q;
		}
	}
	while ((q = todo) != NULL) {
		todo = q->todo;
		finish(q, AUTH_TEMPFAIL, "connection_lost");
	}
	tv.tv_sec = (time_t)(c->backoff_ms / 1000);
	tv.tv_usec = (suseconds_t)(c->backoff_ms % 1000) * 1000;
	evtimer_add(c->retry, &tv);
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void
handshake_line(struct dovecot_client *c, const struct dovecot_auth_reply *rep, bool *bad)
{
	switch (rep->cmd) {
	case DOVECOT_CMD_VERSION:
		if (rep->major != DOVECOT_AUTH_MAJOR)
			*bad = true;
		break;
	case DOVECOT_CMD_MECH:
		if (!(rep->mech_flags & DOVECOT_MECH_PRIVATE)) {
			size_t n = strlen(c->mechs_new);
			if (n + 1 + strlen(rep->mech) < sizeof(c->mechs_new))
				snprintf(c->mechs_new + n, sizeof(c->mechs_new) - n, "%s%s", n ? " " : "", rep->mech);
		}
		break;
	case DOVECOT_CMD_DONE:
		snprintf(c->mechs, sizeof(c->mechs), "%s", c->mechs_new);
		c->state = DC_READY;
		bufferevent_set_timeouts(c->bev, NULL, NULL);
		c->backoff_ms = BACKOFF_MIN_MS;
		c->logged_down = false;
		log_info("event=dovecot_connected socket=%s mechanisms=\"%s\"", c->path, c->mechs);
		break;
	case DOVECOT_CMD_OK:
	case DOVECOT_CMD_CONT:
	case DOVECOT_CMD_FAIL:
		*bad = true;            /* no request can be out yet */
		break;
	default:
		break;                  /* SPID, CUID, COOKIE, unknown */
	}
}

/* Dovecot's user= becomes the login: it must be one (SASL_ID_MAX, no
 * spaces or controls), or the answer is not believed. */
static bool
login_ok(const char *u)
{
	size_t n = strlen(u);

	if (n == 0 || n > SASL_ID_MAX)
		return false;
	for (; *u; u++)
		if ((unsigned char)*u <= 0x20 || *u == 0x7f)
			return false;
	return true;
}

static void
result_line(struct dovecot_client *c, const struct dovecot_auth_reply *rep)
{
	struct dc_req *q = req_find(c, rep->id);
	char sample[64 * 4 + 8];

	if (q == NULL || q->lost) {
		/* cancelled or timed out on our side: late, not wrong */
		log_info("event=dovecot_unknown_id id=%u", (unsigned)rep->id);
		return;
	}
	if (rep->cmd == DOVECOT_CMD_CONT) {
		if (q->r->owner == NULL) {
			struct auth_request *r;
			send_cancel(c, q->id);
			r = req_detach(q);
			auth_request_free(&r);
			return;
		}
		free(q->r->challenge);
		q->r->challenge = xstrdup(rep->data);
		q->r->result = AUTH_CONTINUE;
		q->awaiting_client = true;
		arm_timer(q);
		c->o.done(c->o.done_arg, q->r);     /* q may be gone after this */
		return;
	}
	if (rep->user) {
		if (!login_ok(rep->user)) {
			log_warn("event=dovecot_bad_user id=%u user=%s", (unsigned)rep->id,
			    log_sanitize(sample, sizeof(sample), rep->user, strlen(rep->user), 64));
			finish(q, AUTH_TEMPFAIL, "bad_user");
			return;
		}
		snprintf(q->r->login, sizeof(q->r->login), "%s", rep->user);
	}
	if (rep->cmd == DOVECOT_CMD_FAIL) {
		finish(q, rep->temp ? AUTH_TEMPFAIL : AUTH_FAILED, rep->temp ? "temp_fail" : NULL);
		return;
	}
	/* OK. Design.AuthProtocol: nologin or proxy verify the credentials
	 * but grant nothing here; treat them as FAIL. */
	if (rep->nologin) {
		finish(q, AUTH_FAILED, NULL);
		return;
	}
	if (rep->user == NULL) {
		log_warn("event=dovecot_ok_without_user id=%u", (unsigned)rep->id);
		finish(q, AUTH_TEMPFAIL, "no_user");
		return;
	}
	finish(q, AUTH_OK, NULL);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct dovecot_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	while (c->bev == bev) {
		size_t eol_len = 0, len;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
		struct dovecot_auth_reply rep;
		enum dovecot_auth_parse pr;
		bool bad = false;

		if (eol.pos < 0) {
			if (evbuffer_get_length(in) > DOVECOT_AUTH_LINE_MAX)
				connection_lost(c, "line_too_long");
			return;
		}
		len = (size_t)eol.pos;
		if (len > DOVECOT_AUTH_LINE_MAX) {
			connection_lost(c, "line_too_long");
			return;
		}
		evbuffer_remove(in, c->line, len);
		evbuffer_drain(in, eol_len);
		pr = dovecot_auth_parse_line(c->line, len, &rep);
		if (pr != DOVECOT_PARSE_OK) {
			char sample[64 * 4 + 8];
			log_warn("event=dovecot_bad_line sample=\"%s\"",
			    log_sanitize(sample, sizeof(sample), c->line, len, 64));
			connection_lost(c, "bad_line");
			return;
		}
		if (c->state == DC_HANDSHAKE)
			handshake_line(c, &rep, &bad);
		else if (rep.cmd == DOVECOT_CMD_OK || rep.cmd == DOVECOT_CMD_CONT || rep.cmd == DOVECOT_CMD_FAIL)
			result_line(c, &rep);
		if (bad) {
			log_warn("event=dovecot_bad_handshake");
			connection_lost(c, "bad_handshake");
			return;
		}
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct dovecot_client *c = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT)
		connection_lost(c, "handshake_timeout");
	else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		connection_lost(c, (what & BEV_EVENT_EOF) ? "closed" : "error");
}

static void
connect_now(struct dovecot_client *c)
{
	struct sockaddr_un sun;
	char hs[64];
	size_t n;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", c->path);
	c->bev = bufferevent_socket_new(c->o.base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		connection_lost(c, "no_memory");
		return;
	}
	c->state = DC_HANDSHAKE;
	c->mechs_new[0] = '\0';
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	{
		/* Something that accepts but never completes the handshake (not
		 * Dovecot, or a stuck one) is given up and retried. */
		struct timeval tv = { (time_t)(c->o.timeout_ms / 1000), (suseconds_t)(c->o.timeout_ms % 1000) * 1000 };
		bufferevent_set_timeouts(c->bev, &tv, NULL);
	}
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		/* ENOENT, ECONNREFUSED: Dovecot is not there (yet) */
		connection_lost(c, errno == ENOENT ? "no_socket" : "connect_failed");
		return;
	}
	/* Dovecot 2.4 waits for the client's VERSION before its handshake. */
	n = dovecot_auth_format_handshake(hs, sizeof(hs), c->o.pid ? c->o.pid : (unsigned long)getpid());
	bufferevent_write(c->bev, hs, n);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	connect_now(arg);
}

struct dovecot_client *
dovecot_client_start(const struct dovecot_client_opts *o)
{
	struct dovecot_client *c = xcalloc(1, sizeof(*c));

	c->o = *o;
	c->path = xstrdup(o->socket_path);
	c->o.socket_path = c->path;
	c->backoff_ms = BACKOFF_MIN_MS;
	c->retry = evtimer_new(o->base, on_retry, c);
	connect_now(c);
	return c;
}

void
dovecot_client_stop(struct dovecot_client **cp)
{
	struct dovecot_client *c = *cp;

	if (c == NULL)
		return;
	for (size_t b = 0; b < BUCKETS; b++) {
		struct dc_req *q;
		while ((q = c->buckets[b]) != NULL) {
			struct auth_request *r = req_detach(q);
			auth_request_free(&r);
		}
	}
	if (c->bev)
		bufferevent_free(c->bev);
	event_free(c->retry);
	free(c->path);
	free(c);
	*cp = NULL;
}

bool
dovecot_client_ready(const struct dovecot_client *c, const char **why_r)
{
	if (why_r)
		*why_r = c->state == DC_DOWN ? "not_connected" : "handshake";
	return c->state == DC_READY;
}

const char *
dovecot_client_mechanisms(const struct dovecot_client *c)
{
	return c->mechs;
}

bool
dovecot_client_has_mechanism(const struct dovecot_client *c, const char *mech, size_t len)
{
	const char *p = c->mechs;

	if (len == 0)
		return false;
	while (*p) {
		size_t n = strcspn(p, " ");
		if (n == len && strncasecmp(p, mech, len) == 0)
			return true;
		p += n;
		if (*p == ' ')
			p++;
	}
	return false;
}

bool
dovecot_client_auth(struct dovecot_client *c, struct auth_request *r, const char *mech,
    const char *resp, size_t resp_len, const struct dovecot_client_conn *conn)
{
	char session[17];
	struct dovecot_auth_params p = {
		.mech = mech, .service = "smtp", .lip = conn->lip, .rip = conn->rip,
		.lport = conn->lport, .rport = conn->rport, .secured = conn->tls, .session = session,
		.resp = resp, .resp_len = resp_len,
	};
	struct dc_req *q;
	size_t n;

	if (!dovecot_client_ready(c, &r->why))
		return false;
	snprintf(session, sizeof(session), "%016llx", (unsigned long long)conn->session_id);
	if (++c->next_id == 0)
		c->next_id = 1;
	p.id = c->next_id;
	n = dovecot_auth_format_auth(c->out, sizeof(c->out), &p);
	if (n == 0) {
		r->why = "request_too_long";
		return false;
	}
	q = xcalloc(1, sizeof(*q));
	q->id = p.id;
	q->r = r;
	q->c = c;
	q->timer = evtimer_new(c->o.base, on_req_timeout, q);
	q->next = *bucket(c, q->id);
	if (q->next)
		q->next->prev = q;
	*bucket(c, q->id) = q;
	c->npending++;
	r->sasl = q;
	r->result = AUTH_PENDING;
	arm_timer(q);
	send_line(c, c->out, n);
	return true;
}

enum dovecot_cont
dovecot_client_continue(struct dovecot_client *c, struct auth_request *r, const char *b64, size_t len)
{
	struct dc_req *q = r->sasl;
	size_t n;

	if (q == NULL || q->lost) {
		r->why = "connection_lost";
		return DOVECOT_CONT_LOST;
	}
	n = dovecot_auth_format_cont(c->out, sizeof(c->out), q->id, b64, len);
	if (n == 0)
		return DOVECOT_CONT_BAD;
	q->awaiting_client = false;
	r->result = AUTH_PENDING;
	arm_timer(q);
	send_line(c, c->out, n);
	return DOVECOT_CONT_SENT;
}

void
dovecot_client_cancel(struct dovecot_client *c, struct auth_request **rp)
{
	struct auth_request *r = *rp;
	struct dc_req *q;

	if (r == NULL)
		return;
	q = r->sasl;
	if (q) {
		if (!q->lost)
			send_cancel(c, q->id);
		req_detach(q);
	}
	auth_request_free(rp);
}
