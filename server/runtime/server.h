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
#include "server/base/workq.h"
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
	struct smtp_loop *loop;            /* whose base it accepts on */
	struct evconnlistener *l;
	bool implicit_tls;
	char name[80];
	struct listener *next;
};

/*
 * One SMTP event loop (smtp.threads of them). Loop 0 runs on the main
 * thread and its base is srv->base; the others run a thread each. A loop
 * owns its listening sockets (the same addresses on every loop, with
 * SO_REUSEPORT), its sessions, their PROXY-header waits and, with
 * auth.backend = dovecot, its own connection to Dovecot's auth service.
 * Everything here is touched on the loop's own thread only, but for what
 * the comments say otherwise.
 */
struct smtp_loop {
	struct server *srv;
	unsigned index;
	struct event_base *base;
	pthread_t thread;                  /* loops 1..: its thread */
	bool threaded;
	struct listener *listeners;
	struct smtp_session *sessions;     /* its live sessions (list) */
	size_t nsessions;                  /* STAT_ADD/STAT_GET: the main thread logs it */
	struct proxy_wait *proxy_waits;    /* connections still sending their PROXY header */
	struct dovecot_client *dovecot;    /* auth.backend = dovecot; NULL: the pool checks passwords */
	bool draining;                     /* set on the loop when it was told to drain */
	/* Answers for its sessions, pushed by the writer's and the auth
	 * workers' threads (the daemon routes them by writer_msg.loop and
	 * auth_request.loop); done_ev wakes the loop to take them. */
	pthread_mutex_t lock;
	struct workq done_msgs, done_auth;
	struct event *done_ev;
	/* What the main thread asks of the loop (SMTP_LOOP_DRAIN, _STOP),
	 * atomic bits; ctl_ev wakes it to look. */
	unsigned ctl;
	struct event *ctl_ev;
};

#define SMTP_LOOP_DRAIN 1u
#define SMTP_LOOP_STOP 2u

struct server {
	struct config *cfg;
	struct event_base *base;           /* the main loop: SMTP loop 0, relay, filer, timers, signals */
	struct smtp_loop *loops;           /* nloops of them; loops[0].base == base */
	unsigned nloops;
	SSL_CTX *ssl_ctx;                  /* current; sessions take a reference */
	pthread_mutex_t ssl_lock;          /* ssl_ctx: swapped on SIGHUP, read by the SMTP loops and API threads */
	char *cert_path, *key_path;
	char *db_path, *spool_dir;
	struct writer *writer;
	struct event *writer_ev;           /* the main loop's: relay kicks and writer jobs (writer thread) */
	struct auth_pool *auth;
	bool dovecot;                      /* auth.backend = dovecot: each loop has its client */
	const struct smtp_backend *smtp_backend;  /* the writer and auth pool, as sessions see them */
	/* server.max_connections and max_connections_per_ip, across loops:
	 * conn_lock makes each check and its count one step (server_conn_*). */
	pthread_mutex_t conn_lock;
	size_t nconns;                     /* sessions and PROXY waits (conn_lock) */
	struct throttle *conn_per_ip;      /* conn_lock */
	struct throttle *auth_fail_ip, *auth_fail_user;  /* locked inside (throttle.c) */
	struct limits *limits;             /* sending limits and disabled logins (locked inside) */
	struct http_api *http;
	struct relay *relay;
	size_t nsessions;                  /* all loops' sessions; STAT_ADD/STAT_GET */
	bool draining;                     /* set by the main thread; __atomic reads elsewhere */
	unsigned commits;                  /* atomic: commits routed since the main loop looked */
	struct event *drain_timer;
	struct event *idle_ev;             /* the daemon's "may we exit now?" check */
	struct server_stats stats;
};

/* Stop accepting (draining) or start again, on loop's own thread. */
void server_listeners_enable(struct smtp_loop *loop, bool on);

/* A new connection takes one of server.max_connections; false: none left. */
bool server_conn_take(struct server *srv);
/* One more connection from ip (server.max_connections_per_ip); false:
 * ip is at its limit, nothing counted. */
bool server_conn_take_ip(struct server *srv, const char *ip);
/* A connection ends: give back its slot and, ip not NULL, ip's count. */
void server_conn_release(struct server *srv, const char *ip);
/* The current TLS context with a reference of the caller's (SSL_CTX_free
 * it), or NULL; taken under ssl_lock, since SIGHUP swaps it. */
SSL_CTX *server_tls_ctx(struct server *srv);
/* Is there a TLS context (STARTTLS to offer)? Its presence only, read
 * without the lock: SIGHUP replaces it with another, never with NULL. */
static inline bool
server_tls_ready(struct server *srv)
{
	return __atomic_load_n(&srv->ssl_ctx, __ATOMIC_ACQUIRE) != NULL;
}
/* A session or a delivery has ended: while draining, ask the daemon (through
 * idle_ev, on the loop) whether nothing is left and the loop may end. The
 * modules below the daemon signal; only the daemon knows what "nothing
 * left" takes, so none of them calls up into it. */
void server_maybe_exit(struct server *srv);

#endif
