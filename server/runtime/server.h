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

struct smtp_session;
struct writer;
struct auth_pool;
struct throttle;
struct http_api;
struct relay;

enum refuse_reason {
	REFUSE_TOO_BIG = 0, REFUSE_BARE_CR_LF, REFUSE_NUL, REFUSE_LONG_LINE, REFUSE_STORAGE,
	REFUSE_COUNT
};

/* Upper bounds (seconds) of the commit latency histogram's buckets. */
#define COMMIT_BUCKETS 12
extern const double commit_bucket_le[COMMIT_BUCKETS];

/* Counters for /metrics. The SMTP loop and the API's threads bump them and
 * /metrics reads them on an API thread: every access goes through
 * STAT_ADD / STAT_GET (relaxed atomics; a counter needs no ordering). */
#define STAT_ADD(field, n) ((void)__atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED))
#define STAT_SUB(field, n) ((void)__atomic_fetch_sub(&(field), (n), __ATOMIC_RELAXED))
#define STAT_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

struct server_stats {
	uint64_t sessions_total;
	uint64_t messages_accepted;
	uint64_t messages_refused[REFUSE_COUNT];
	uint64_t bytes_accepted;
	uint64_t tokens_issued;
	uint64_t tokens_verified;
	uint64_t tokens_refused[8];        /* by enum token_status */
	uint64_t fetches;
	uint64_t auth_ok, auth_failed;
	uint64_t commit_bucket[COMMIT_BUCKETS];   /* cumulative at render time */
	uint64_t commit_count;
	uint64_t commit_sum_us;
};

const char *refuse_reason_name(enum refuse_reason r);
void stats_commit_latency(struct server_stats *st, uint64_t us);

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
	struct cidr_list trusted;
	struct throttle *conn_per_ip;
	struct throttle *auth_fail_ip, *auth_fail_user;
	struct listener *listeners;
	struct http_api *http;
	struct relay *relay;
	struct smtp_session *sessions;     /* every live session (list) */
	size_t nsessions;                  /* written on the loop only; STAT_ADD */
	bool draining;
	struct event *drain_timer;
	struct server_stats stats;
};

/* Stop accepting (draining) or start again; used by SIGTERM. */
void server_listeners_enable(struct server *srv, bool on);
/* While draining: leave the event loop once no session and no delivery
 * is left (main.c). */
void server_maybe_exit(struct server *srv);

#endif
