/*
 * server.h: the state shared by every session of one submitd process:
 * the configuration, the event base, the TLS context, the writer and auth
 * pool, limits bookkeeping and counters. There is one instance, owned by
 * main.c; sessions hold a pointer to it and never free it.
 */
#ifndef SUBMITD_SERVER_H
#define SUBMITD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "server/base/config.h"
#include "server/base/netaddr.h"
#include "server/runtime/metrics.h"

struct smtp_backend;
struct smtp_session;
struct writer;
struct auth_pool;
struct dovecot_client;
struct throttle;
struct http_api;
struct relay;
struct limits;
struct proxy_wait;

struct listener {
	struct server *srv;
	struct evconnlistener *l;
	bool implicit_tls;
	char name[80];
	struct listener *next;
};

struct server {
	struct config *cfg;
	struct event_base *base;
	SSL_CTX *ssl_ctx;                  /* current; sessions take a reference */
	pthread_mutex_t ssl_lock;          /* ssl_ctx: swapped here, read by API threads */
	char *cert_path, *key_path;
	char *db_path, *spool_dir;
	struct writer *writer;
	struct event *writer_ev;           /* activated by the writer thread */
	struct auth_pool *auth;
	struct event *auth_ev;             /* activated by auth workers */
	struct dovecot_client *dovecot;    /* auth.backend = dovecot; NULL: the pool checks passwords */
	const struct smtp_backend *smtp_backend;  /* the writer and auth pool, as sessions see them */
	struct throttle *conn_per_ip;
	struct throttle *auth_fail_ip, *auth_fail_user;
	struct limits *limits;             /* sending limits and disabled logins (server/limits/) */
	struct listener *listeners;
	struct http_api *http;
	struct relay *relay;
	struct smtp_session *sessions;     /* every live session (list) */
	size_t nsessions;                  /* written on the loop only; STAT_ADD */
	struct proxy_wait *proxy_waits;    /* connections still sending their PROXY header */
	size_t nproxy_waits;               /* counted in server.max_connections */
	bool draining;
	struct event *drain_timer;
	struct event *idle_ev;             /* the daemon's "may we exit now?" check */
	struct server_stats stats;
};

/* Stop accepting (draining) or start again; used by SIGTERM. */
void server_listeners_enable(struct server *srv, bool on);
/* A session or a delivery has ended: while draining, ask the daemon (through
 * idle_ev, on the loop) whether nothing is left and the loop may end. The
 * modules below the daemon signal; only the daemon knows what "nothing
 * left" takes, so none of them calls up into it. */
void server_maybe_exit(struct server *srv);

#endif
