/*
 * listener.c: see listener.h. Connection limits are applied before a
 * session exists: a refused client gets one 421 line written straight to
 * the socket (best effort, non-blocking) and is closed. A connection from
 * smtp.proxy_networks is a load balancer's: the per-address limit waits
 * until its PROXY header has named the client (listener_proxy.c), since
 * the balancer's own address stands for every client behind it.
 *
 * Every SMTP loop (smtp.threads) has a socket of its own on every
 * address, bound with SO_REUSEPORT, so the kernel spreads connections over
 * the loops (as the API threads do, http_api.c). The limits are counted
 * across loops in struct server (server_conn_take, server_conn_take_ip):
 * a check and its count are one step under conn_lock, so two loops never
 * both take the last place.
 */
#include "server/daemon/listener.h"
#include "server/daemon/listener_internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/listener.h>
#include <event2/util.h>

#include "server/base/log.h"
#include "server/smtp/smtp_session.h"
#include "server/base/util.h"

/* A TLS client cannot read a cleartext 421: on an implicit TLS listener
 * the refusal is the close alone. */
void
listener_refuse(evutil_socket_t fd, const char *line, bool implicit_tls)
{
	if (!implicit_tls) {
		ssize_t n = send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)n;
	}
	evutil_closesocket(fd);
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct listener *li = arg;
	struct server *srv = li->srv;
	struct config *cfg = srv->cfg;
	char ip[64], line[256];
	int one = 1;

	if (!server_conn_take(srv)) {
		netaddr_text(sa, ip, sizeof(ip));
		log_info("event=connection_refused ip=%s reason=max_connections", ip);
		snprintf(line, sizeof(line), "421 4.7.0 %s Too many connections, try again later\r\n", cfg->hostname);
		listener_refuse(fd, line, li->implicit_tls);
		return;
	}
	/* Replies are written whole per pipelined group; Nagle would only add
	 * a delay to the last one. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cidr_list_match(&cfg->proxy_nets, sa)) {
		listener_proxy_start(li, fd, sa, salen);
		return;
	}
	struct smtp_peer peer = { .client = sa, .client_len = (socklen_t)salen };
	listener_admit(li, fd, &peer);
}

void
listener_admit(struct listener *li, evutil_socket_t fd, const struct smtp_peer *peer)
{
	struct server *srv = li->srv;
	struct config *cfg = srv->cfg;
	char ip[64], line[256];

	netaddr_text(peer->client, ip, sizeof(ip));
	if (!server_conn_take_ip(srv, ip)) {
		server_conn_release(srv, NULL);
		log_info("event=connection_refused ip=%s%s%s reason=max_connections_per_ip", ip,
		    peer->proxy ? " proxy=" : "", peer->proxy ? peer->proxy : "");
		snprintf(line, sizeof(line), "421 4.7.0 %s Too many connections from your address\r\n", cfg->hostname);
		listener_refuse(fd, line, li->implicit_tls);
		return;
	}
	if (peer->proxy)
		smtp_session_new_proxied(li->loop, fd, peer, li->implicit_tls);
	else
		smtp_session_new(li->loop, fd, peer->client, (int)peer->client_len, li->implicit_tls);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct listener *li = arg;
	int e = EVUTIL_SOCKET_ERROR();

	/* EMFILE and friends: log and go on; the listener stays armed. */
	log_err("event=accept_failed listener=%s error=\"%s\"", li->name, evutil_socket_error_to_string(e));
}

/* The addresses were parsed and checked with the configuration. */
static int
open_list(struct smtp_loop *loop, const struct netaddr_listen_list *addrs, bool implicit_tls, char *err,
    size_t errlen)
{
	for (size_t i = 0; i < addrs->n; i++) {
		const struct netaddr_listen *a = &addrs->v[i];
		struct listener *li;
		unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
		    LEV_OPT_CLOSE_ON_EXEC;

		li = xcalloc(1, sizeof(*li));
		li->srv = loop->srv;
		li->loop = loop;
		li->implicit_tls = implicit_tls;
		snprintf(li->name, sizeof(li->name), "%s%s", a->text, implicit_tls ? "/tls" : "");
		if (a->ss.ss_family == AF_INET6)
			flags |= LEV_OPT_BIND_IPV6ONLY;
		li->l = evconnlistener_new_bind(loop->base, accept_cb, li, flags, 511,
		    (const struct sockaddr *)&a->ss, (int)a->len);
		if (li->l == NULL) {
			snprintf(err, errlen, "%s: cannot listen: %s", a->text, strerror(errno));
			free(li);
			return -1;
		}
		evconnlistener_set_error_cb(li->l, accept_error_cb);
		li->next = loop->listeners;
		loop->listeners = li;
		if (loop->index == 0)
			log_info("event=listening address=%s tls=%s loops=%u", a->text,
			    implicit_tls ? "implicit" : "starttls", loop->srv->nloops);
	}
	return 0;
}

int
listeners_open(struct smtp_loop *loop, char *err, size_t errlen)
{
	struct config *cfg = loop->srv->cfg;

	if (open_list(loop, &cfg->listen_addrs, false, err, errlen) == -1 ||
	    open_list(loop, &cfg->listen_tls_addrs, true, err, errlen) == -1)
		return -1;
	return 0;
}

void
listeners_free(struct smtp_loop *loop)
{
	struct listener *li;

	listener_proxy_free_all(loop);
	while ((li = loop->listeners) != NULL) {
		loop->listeners = li->next;
		evconnlistener_free(li->l);
		free(li);
	}
}

void
server_listeners_enable(struct smtp_loop *loop, bool on)
{
	for (struct listener *li = loop->listeners; li; li = li->next) {
		if (on)
			evconnlistener_enable(li->l);
		else
			evconnlistener_disable(li->l);
	}
}
