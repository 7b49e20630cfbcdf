/*
 * listener_proxy.c: a connection from smtp.proxy_networks, between accept
 * and its session. A load balancer (HAProxy's send-proxy, send-proxy-v2)
 * begins each connection with a PROXY header naming the client; it is read
 * here, before the greeting and, on the implicit TLS listener, before the
 * handshake, so it never meets the SMTP or TLS code. Then the client is
 * admitted (listener_admit: the per-address limit is the client's) and its
 * session starts with the client's address.
 *
 * The header is read without taking a single octet past its end: the
 * socket is peeked, the parser (protocol/proxy_header.c) says whether the
 * octets seen make a header, and only then are they taken, up to its end.
 * While the header is incomplete every octet seen belongs to it, so those
 * are taken at once (a peek that takes nothing would wake the loop again
 * and again). What follows (a ClientHello, a pipelined EHLO) stays in the
 * socket for the session.
 *
 * Limits are those of a command: the header must be complete within
 * smtp.command_timeout of the accept, and a v2 header is at most
 * smtp.max_line_length octets (a v1 header 107, as the protocol says).
 * A connection that closes without sending anything is a health check
 * (HAProxy's `check` connects and closes): logged at info, not as an error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "server/base/log.h"
#include "server/base/netaddr.h"
#include "server/base/util.h"
#include "server/daemon/listener_internal.h"
#include "server/protocol/proxy_header.h"

struct proxy_wait {
	struct listener *li;
	evutil_socket_t fd;
	char ip[64];                    /* the load balancer's address */
	struct sockaddr_storage sa;     /* the same, for a LOCAL header */
	socklen_t salen;
	struct event *ev;               /* readable */
	struct event *timer;            /* smtp.command_timeout */
	unsigned char *buf;             /* the header so far */
	size_t have, cap;
	struct proxy_wait *prev, *next;
};

/* close_fd: the connection ends here, and its place in
 * server.max_connections with it; else the session takes both. */
static void
wait_free(struct proxy_wait **wp, bool close_fd)
{
	struct proxy_wait *w = *wp;
	struct server *srv;
	struct smtp_loop *loop;

	if (w == NULL)
		return;
	srv = w->li->srv;
	loop = w->li->loop;
	if (w->prev)
		w->prev->next = w->next;
	else
		loop->proxy_waits = w->next;
	if (w->next)
		w->next->prev = w->prev;
	if (close_fd)
		server_conn_release(srv, NULL);
	event_free(w->ev);
	event_free(w->timer);
	if (close_fd)
		evutil_closesocket(w->fd);
	free(w->buf);
	free(w);
	*wp = NULL;
	server_maybe_exit(srv);
}

/* The header was refused, or never came: close without a word. A reply
 * could only confuse the load balancer (which would pass it on to the
 * client as the server's) or, on 465, a TLS client. */
static void
wait_refuse(struct proxy_wait *w, const char *why, const unsigned char *p, size_t n)
{
	char sample[64 * 4 + 8];

	log_warn("event=proxy_refused proxy=%s listener=%s reason=%s octets=%zu sample=%s", w->ip, w->li->name, why,
	    n, log_sanitize(sample, sizeof(sample), (const char *)p, n < 64 ? n : 64, 64));
	wait_free(&w, true);
}

/* The header is complete: hand the client on to its session. */
static void
wait_done(struct proxy_wait *w, const struct proxy_header *h)
{
	struct listener *li = w->li;
	evutil_socket_t fd = w->fd;
	struct sockaddr_storage self = w->sa;
	char proxy_ip[64];
	struct smtp_peer peer = { .proxy = proxy_ip };

	/* w is freed before the session starts: keep what it needs */
	snprintf(proxy_ip, sizeof(proxy_ip), "%s", w->ip);
	if (h->command == PROXY_CMD_PROXY) {
		peer.client = (const struct sockaddr *)&h->src;
		peer.client_len = h->src_len;
		peer.local = (const struct sockaddr *)&h->dst;
		peer.local_len = h->dst_len;
	} else {
		/* LOCAL (v2: the balancer's own health check, e.g.
		 * check-send-proxy with option smtpchk, which wants a greeting)
		 * and UNKNOWN: the spec says use the connection's own
		 * endpoints, so the session is the balancer's. HAProxy's
		 * checks send this and often close at once: the session then
		 * ends as "client_closed", at info. */
		peer.client = (const struct sockaddr *)&self;
		peer.client_len = w->salen;
		log_info("event=proxy_local proxy=%s listener=%s version=%d command=%s", w->ip, li->name,
		    h->version, h->command == PROXY_CMD_LOCAL ? "local" : "unknown");
	}
	wait_free(&w, false);
	listener_admit(li, fd, &peer);
}

static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait *w = arg;
	struct proxy_header h;
	size_t consumed;
	const char *why;
	ssize_t n;

	n = recv(fd, w->buf + w->have, w->cap - w->have, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		/* A health check connects and closes (or resets): not an error. */
		log_info("event=proxy_closed proxy=%s listener=%s reason=%s octets=%zu", w->ip, w->li->name,
		    n == 0 ? "closed_before_header" : "reset_before_header", w->have);
		wait_free(&w, true);
		return;
	}
	switch (proxy_header_parse(w->buf, w->have + (size_t)n, w->cap, &h, &consumed, &why)) {
	case PROXY_HEADER_MORE:
		/* every octet seen so far is the header's: take them */
		if (recv(fd, w->buf + w->have, (size_t)n, 0) != n) {
			wait_refuse(w, "read_failed", w->buf, w->have);
			return;
		}
		w->have += (size_t)n;
		return;
	case PROXY_HEADER_OK:
		/* take the header's octets and not one more */
		if (consumed > w->have &&
		    recv(fd, w->buf + w->have, consumed - w->have, 0) != (ssize_t)(consumed - w->have)) {
			wait_refuse(w, "read_failed", w->buf, w->have);
			return;
		}
		wait_done(w, &h);
		return;
	case PROXY_HEADER_BAD:
		wait_refuse(w, why, w->buf, w->have + (size_t)n);
		return;
	}
}

static void
on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait *w = arg;

	wait_refuse(w, "timeout", w->buf, w->have);
}

void
listener_proxy_start(struct listener *li, evutil_socket_t fd, const struct sockaddr *sa, int salen)
{
	struct server *srv = li->srv;
	struct smtp_loop *loop = li->loop;
	struct proxy_wait *w = xcalloc(1, sizeof(*w));
	struct timeval tv = { (time_t)srv->cfg->command_timeout, 0 };

	w->li = li;
	w->fd = fd;
	w->salen = (size_t)salen < sizeof(w->sa) ? (socklen_t)salen : (socklen_t)sizeof(w->sa);
	memcpy(&w->sa, sa, w->salen);
	netaddr_text(sa, w->ip, sizeof(w->ip));
	/* a v2 header may be as long as a command line; v1 is shorter */
	w->cap = (size_t)srv->cfg->max_line_length;
	w->buf = xmalloc(w->cap);
	w->ev = event_new(loop->base, fd, EV_READ | EV_PERSIST, on_readable, w);
	w->timer = evtimer_new(loop->base, on_timeout, w);
	w->next = loop->proxy_waits;
	if (loop->proxy_waits)
		loop->proxy_waits->prev = w;
	loop->proxy_waits = w;
	event_add(w->ev, NULL);
	evtimer_add(w->timer, &tv);
}

void
listener_proxy_free_all(struct smtp_loop *loop)
{
	while (loop->proxy_waits != NULL) {
		struct proxy_wait *w = loop->proxy_waits;
		wait_free(&w, true);
	}
}
