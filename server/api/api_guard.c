/*
 * api_guard.c: the pre-reader in front of evhttp, so that every answer
 * the API port gives is JSON (docs/api.md section 2). libevent 2.1
 * answers the requests its parser refuses itself, with an HTML page, and
 * has no hook to change that; so each connection's bufferevent is a
 * filter of ours over the socket (or TLS) bufferevent, and the filter
 * checks each request head (server/protocol/http_head.c) before evhttp
 * sees a byte of it:
 *
 *  - a head that passes goes through as it is, and then exactly its
 *    Content-Length octets of body; then the next head is checked
 *    (keep-alive, pipelining);
 *  - a head that fails is replaced by a short request of our own, to a
 *    path no client can send (the checker refuses "{"), with
 *    "Connection: close"; dispatch hands it to api_guard_answer, which
 *    answers the refusal in JSON, after the answers to the requests before
 *    it, and evhttp closes the connection. Everything the client sends
 *    after the refused head is read and dropped.
 *
 * Two things a filter changes that evhttp relies on, put right here:
 *  - evhttp takes "output drained" as "sent" (then closes, or sends the
 *    next chunk); with a filter, drained would mean moved to the socket
 *    bufferevent, not sent, and the end of a "Connection: close" answer
 *    would be lost. So the octets go down without telling, and the write
 *    callback is fired (kick) when the socket bufferevent's output is
 *    empty, as a socket bufferevent would;
 *  - closing right after a refusal, with the client still sending, would
 *    make the kernel answer with RST, and the client could lose the
 *    answer. So a refused connection lingers (RFC 9112 9.6): the socket
 *    is kept open (a dup) after evhttp has sent its FIN, read and dropped
 *    until the client closes it, for http.timeout seconds at most.
 *
 * Memory per connection, also when a client sends requests and does not
 * read the answers: the head buffer, at most twice http.max_header_size
 * (a head's line ends do not count against the limit; a head line is at
 * least two octets besides them); what waits for evhttp, at most a head
 * and a body and API_GUARD_READ_MAX (the filter's read watermark); what
 * waits for the filter, API_GUARD_READ_MAX (the socket's).
 */
#include "server/api/http_api_internal.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

#include "server/base/log.h"
#include "server/base/util.h"
#include "server/protocol/http_head.h"

/* The path of the request that stands for a refused one: "{" is not in a
 * request target the checker lets through. */
#define REFUSED_PATH "/{refused}/"
#define REFUSED_HEADER "Submitd-Refusal"

/* Refused connections lingering at once per API thread: past this, a
 * refused connection is closed at once (its answer may then be lost to a
 * reset), so that a flood of bad requests cannot hold twice its sockets
 * for http.timeout. */
#define API_GUARD_LINGER_MAX 256

/* Octets read from the socket ahead of the filter. */
#define API_GUARD_READ_MAX 16384

enum guard_state { G_HEAD, G_BODY, G_REFUSED };

struct guard_conn {
	struct api_worker *w;
	struct bufferevent *under;       /* socket or TLS; evhttp has the filter */
	struct bufferevent *filter;
	struct evbuffer_cb_entry *down_cb;   /* on the filter's output */
	struct evbuffer_cb_entry *out_cb;    /* on the socket bufferevent's output */
	struct event *kick;                  /* "sent": evhttp's write callback, from the loop */
	enum guard_state state;
	struct http_head head;
	struct http_head_limits lim;
	char *buf;                       /* the head so far: buf[off .. len) */
	size_t off, len, cap, max;
	uint64_t body_left;
	int linger_fd;                   /* refused: the socket, kept for lingering */
};

struct guard_linger {
	struct guard_linger *prev, *next;
	struct api_guard *g;
	struct bufferevent *bev;
	struct event *deadline;
};

static void
linger_free(struct guard_linger **lp)
{
	struct guard_linger *l = *lp;

	if (l == NULL)
		return;
	if (l->prev)
		l->prev->next = l->next;
	else
		l->g->lingering = l->next;
	l->g->nlingering--;
	if (l->next)
		l->next->prev = l->prev;
	event_free(l->deadline);
	bufferevent_free(l->bev);
	free(l);
	*lp = NULL;
}

static void
linger_read(struct bufferevent *bev, void *arg)
{
	(void)arg;
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
}

static void
linger_event(struct bufferevent *bev, short what, void *arg)
{
	struct guard_linger *l = arg;

	(void)bev;
	(void)what;
	linger_free(&l);
}

static void
linger_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct guard_linger *l = arg;

	(void)fd;
	(void)what;
	linger_free(&l);
}

/* Read and drop what the client still sends on fd (ours), until it closes
 * or http.timeout has passed. */
static void
linger_start(struct api_worker *w, int fd)
{
	struct api_guard *g = &w->guard;
	struct guard_linger *l;
	struct timeval tv = { .tv_sec = (time_t)w->api->srv->cfg->http_timeout };

	if (g->stopping || g->nlingering >= API_GUARD_LINGER_MAX) {
		close(fd);
		return;
	}
	l = xcalloc(1, sizeof(*l));
	l->g = g;
	l->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
	l->deadline = evtimer_new(w->base, linger_deadline, l);
	if (l->bev == NULL || l->deadline == NULL) {
		if (l->bev)
			bufferevent_free(l->bev);
		else
			close(fd);
		if (l->deadline)
			event_free(l->deadline);
		free(l);
		return;
	}
	l->next = g->lingering;
	if (l->next)
		l->next->prev = l;
	g->lingering = l;
	g->nlingering++;
	bufferevent_setcb(l->bev, linger_read, NULL, linger_event, l);
	bufferevent_set_timeouts(l->bev, &tv, NULL);
	bufferevent_enable(l->bev, EV_READ);
	evtimer_add(l->deadline, &tv);
}

static void
conn_free(void *arg)
{
	struct guard_conn *c = arg;

	if (c->out_cb)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->under), c->out_cb);
	if (c->down_cb)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->filter), c->down_cb);
	if (c->kick)
		event_free(c->kick);
	if (c->linger_fd != -1)
		linger_start(c->w, c->linger_fd);
	free(c->buf);
	free(c);
}

/* Replace the refused head by the request that stands for it (see the top
 * of the file) and drop the rest. */
static void
refuse(struct guard_conn *c, enum http_head_status st, struct evbuffer *dst)
{
	int fd = (int)bufferevent_getfd(c->under);

	evbuffer_add_printf(dst, "%s %s%d HTTP/1.1\r\n%s: %s\r\nConnection: close\r\n\r\n",
	    c->head.method == HTTP_M_HEAD ? "HEAD" : "GET", REFUSED_PATH, (int)st, REFUSED_HEADER,
	    c->head.why ? c->head.why : "malformed request");
	c->state = G_REFUSED;
	free(c->buf);
	c->buf = NULL;
	c->off = c->len = c->cap = 0;
	if (fd >= 0 && c->linger_fd == -1)
		c->linger_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
}

/* Head octets arrived (c->buf): pass whole heads and the bodies in c->buf
 * on to dst, or refuse. What is passed on is skipped (c->off), not moved:
 * many small pipelined requests cost one move, in guard_input. */
static void
pass_heads(struct guard_conn *c, struct evbuffer *dst)
{
	for (;;) {
		enum http_head_status st;
		size_t take;

		if (c->state == G_BODY) {
			take = c->body_left < c->len - c->off ? (size_t)c->body_left : c->len - c->off;
			if (take > 0) {
				evbuffer_add(dst, c->buf + c->off, take);
				c->off += take;
				c->body_left -= take;
			}
			if (c->body_left > 0)
				return;
			c->state = G_HEAD;
			http_head_init(&c->head);
		}
		if (c->off == c->len) {
			c->off = c->len = 0;
			return;
		}
		st = http_head_parse(&c->head, c->buf + c->off, c->len - c->off, &c->lim);
		if (st == HTTP_HEAD_MORE && c->len - c->off >= c->max) {
			c->head.why = "request header too large";
			st = HTTP_HEAD_TOO_LARGE;
		}
		if (st == HTTP_HEAD_MORE)
			return;
		if (st != HTTP_HEAD_OK) {
			refuse(c, st, dst);
			return;
		}
		evbuffer_add(dst, c->buf + c->off + c->head.skip, c->head.len);
		c->off += c->head.skip + c->head.len;
		c->body_left = c->head.body_len;
		c->state = G_BODY;
	}
}

static enum bufferevent_filter_result
guard_input(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit, enum bufferevent_flush_mode mode,
    void *arg)
{
	struct guard_conn *c = arg;
	size_t before = evbuffer_get_length(dst);
	int n;

	(void)mode;
	while (evbuffer_get_length(src) > 0) {
		size_t room = SIZE_MAX;
		if (limit >= 0) {
			/* the filter's read high watermark (api_guard_bevcb) */
			if (evbuffer_get_length(dst) - before >= (size_t)limit)
				break;
			room = (size_t)limit - (evbuffer_get_length(dst) - before);
		}
		if (c->state == G_REFUSED) {
			evbuffer_drain(src, evbuffer_get_length(src));
			break;
		}
		if (c->state == G_BODY && c->off == c->len) {
			size_t take = evbuffer_get_length(src);
			if (take > c->body_left)
				take = (size_t)c->body_left;
			if (take > room)
				take = room;
			evbuffer_remove_buffer(src, dst, take);
			c->body_left -= take;
			if (c->body_left == 0) {
				c->state = G_HEAD;
				http_head_init(&c->head);
			}
			continue;
		}
		/* a head: into c->buf, as much as can still belong to it */
		if (c->off > 0) {
			memmove(c->buf, c->buf + c->off, c->len - c->off);
			c->len -= c->off;
			c->off = 0;
		}
		if (c->len == c->cap) {
			c->cap = c->cap == 0 ? 2048 : c->cap * 2;
			if (c->cap > c->max)
				c->cap = c->max;
			c->buf = xrealloc(c->buf, c->cap);
		}
		n = evbuffer_remove(src, c->buf + c->len, c->cap - c->len);
		if (n <= 0)
			break;
		c->len += (size_t)n;
		pass_heads(c, dst);
	}
	return evbuffer_get_length(dst) > before ? BEV_OK : BEV_NEED_MORE;
}

/* Down without a write callback; kick gives it (top of the file). */
static enum bufferevent_filter_result
guard_output(struct evbuffer *src, struct evbuffer *dst, ev_ssize_t limit, enum bufferevent_flush_mode mode,
    void *arg)
{
	(void)limit;
	(void)mode;
	(void)arg;
	evbuffer_add_buffer(dst, src);
	return BEV_NEED_MORE;
}

/* evhttp writes its answer before it enables writing, and the filter
 * moves nothing while writing is off (and then waits for a write event of
 * the socket bufferevent that does not come): so whatever evhttp writes
 * goes down at once, here. */
static void
filter_out_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct guard_conn *c = arg;

	if (info->n_added > 0 && evbuffer_get_length(buf) > 0)
		evbuffer_add_buffer(bufferevent_get_output(c->under), buf);
}

/* Once evhttp freed the filter (unlinked before its context is freed),
 * the socket bufferevent's callbacks are no longer the filter's. */
static bool
filter_alive(struct guard_conn *c)
{
	bufferevent_data_cb cb = NULL;

	bufferevent_getcb(c->under, &cb, NULL, NULL, NULL);
	return cb != NULL;
}

static void
kick(evutil_socket_t fd, short what, void *arg)
{
	struct guard_conn *c = arg;

	(void)fd;
	(void)what;
	if (!filter_alive(c) || !(bufferevent_get_enabled(c->filter) & EV_WRITE) ||
	    evbuffer_get_length(bufferevent_get_output(c->under)) > 0)
		return;
	bufferevent_trigger(c->filter, EV_WRITE, 0);
}

static void
under_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct guard_conn *c = arg;

	if (info->n_deleted == 0 || !filter_alive(c))
		return;
	if (evbuffer_get_length(buf) == 0)
		event_active(c->kick, 0, 0);
	else if (bufferevent_get_enabled(c->filter) & EV_WRITE)
		bufferevent_enable(c->filter, EV_WRITE);   /* progress: restarts the write timeout */
}

struct bufferevent *
api_guard_bevcb(struct event_base *base, void *arg)
{
	struct api_worker *w = arg;
	struct server *srv = w->api->srv;
	const struct config *cfg = srv->cfg;
	struct guard_conn *c;
	struct bufferevent *under;

	if (cfg->http_tls) {
		/* The SMTP loop swaps srv->ssl_ctx on SIGHUP; the SSL takes its
		 * own reference to the context, so the lock is only held for SSL_new. */
		SSL *ssl;
		pthread_mutex_lock(&srv->ssl_lock);
		ssl = SSL_new(srv->ssl_ctx);
		pthread_mutex_unlock(&srv->ssl_lock);
		if (ssl == NULL)
			return NULL;
		under = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE);
	} else {
		under = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	}
	if (under == NULL)
		return NULL;
	c = xcalloc(1, sizeof(*c));
	c->w = w;
	c->under = under;
	c->linger_fd = -1;
	c->lim.max_head = (size_t)cfg->http_max_header_size;
	c->lim.max_body = (uint64_t)cfg->http_max_body_size;
	c->max = 2 * c->lim.max_head + 2;
	http_head_init(&c->head);
	/* Bounded while evhttp does not read (it answers, or streams a
	 * fetch): what waits for it is at most a head and a body, and what
	 * waits for the filter one socket read. */
	bufferevent_setwatermark(under, EV_READ, 0, API_GUARD_READ_MAX);
	c->filter = bufferevent_filter_new(under, guard_input, guard_output, BEV_OPT_CLOSE_ON_FREE, conn_free, c);
	if (c->filter == NULL) {
		bufferevent_free(under);
		free(c);
		return NULL;
	}
	c->kick = event_new(base, -1, 0, kick, c);
	bufferevent_setwatermark(c->filter, EV_READ, 0, c->max + (size_t)c->lim.max_body + API_GUARD_READ_MAX);
	c->out_cb = evbuffer_add_cb(bufferevent_get_output(under), under_drained, c);
	c->down_cb = evbuffer_add_cb(bufferevent_get_output(c->filter), filter_out_added, c);
	if (c->kick == NULL || c->out_cb == NULL || c->down_cb == NULL) {
		bufferevent_free(c->filter);
		return NULL;
	}
	return c->filter;
}

bool
api_guard_answer(struct api_worker *w, struct evhttp_request *req, const char *path)
{
	const struct config *cfg = w->api->srv->cfg;
	const char *why;
	char text[160];
	long st;

	if (strncmp(path, REFUSED_PATH, strlen(REFUSED_PATH)) != 0)
		return false;
	st = strtol(path + strlen(REFUSED_PATH), NULL, 10);
	why = evhttp_find_header(evhttp_request_get_input_headers(req), REFUSED_HEADER);
	if (st == HTTP_HEAD_TOO_LARGE)
		snprintf(text, sizeof(text), "request header too large (at most %lld octets)",
		    (long long)cfg->http_max_header_size);
	else if (st == HTTP_HEAD_BODY_TOO_LARGE)
		snprintf(text, sizeof(text), "request body too large (at most %lld octets)",
		    (long long)cfg->http_max_body_size);
	else
		snprintf(text, sizeof(text), "%s", why ? why : "malformed request");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
	api_reply_error(req, http_head_status_code((enum http_head_status)st),
	    http_head_reason((enum http_head_status)st), NULL, text);
	return true;
}

void
api_guard_stop(struct api_worker *w)
{
	w->guard.stopping = true;
}

void
api_guard_free(struct api_worker *w)
{
	w->guard.stopping = true;
	while (w->guard.lingering) {
		struct guard_linger *l = w->guard.lingering;
		linger_free(&l);
	}
}
