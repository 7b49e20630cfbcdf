/*
 * http_api_internal.h: what the files of the verification API share
 * (server/api/http_api.h says what it does). http_api.c holds the threads,
 * the listeners, the routing table, service credentials and the JSON
 * replies; each endpoint's handler lives in the file of its job:
 * api_tokens.c what a token refers to (verify, fetch), api_delivery.c
 * where a token's message stands with the relay (status), api_status.c
 * the server's own state (keys, health, metrics).
 *
 * A new endpoint: its handler in the file of its job (or a new
 * api_<job>.c listed in meson.build), declared below, and one line in
 * routes[] in http_api.c with its path and methods.
 */
#ifndef SUBMITD_HTTP_API_INTERNAL_H
#define SUBMITD_HTTP_API_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <sqlite3.h>

#include "db/peer_keys.h"
#include "db/store.h"
#include "server/api/http_api.h"

#define SERVICE_NAME_MAX 128

/*
 * The API runs on http.threads threads of its own, each an event loop with
 * its own evhttp, database connection, prepared statements and key ring:
 * nothing of a request is shared, so a verification (mostly Ed25519 and
 * one SQLite read) runs on as many cores as there are threads, and the
 * SMTP loop never waits for it. Each has its own listening sockets on the
 * same addresses (SO_REUSEPORT; see listen_on).
 * What they share with the SMTP loop: the writer's audit queue (locked),
 * the counters (atomic), the TLS context (srv->ssl_lock) and the log.
 */
/* api_guard.c: the connections that linger after a refusal. */
struct guard_linger;
struct api_guard {
	struct guard_linger *lingering;
	size_t nlingering;
	bool stopping;
};

struct api_worker {
	struct http_api *api;
	unsigned index;
	pthread_t thread;
	bool started;
	struct event_base *base;
	struct evhttp *http;
	sqlite3 *db;                     /* reads */
	struct store_keys keys;          /* the ring, reloaded when the database changed */
	sqlite3_stmt *token_stmt;        /* store_token_check's query, prepared once */
	struct peer_ring peers;          /* the other nodes' keys (api_cluster.c) */
	int64_t peers_checked_ms;        /* when peers last looked at the database */
	struct cluster_call *calls;      /* calls to other nodes, in flight or answered */
	struct event *reap_ev;           /* frees the answered calls' connections */
	struct event *refresh_ev;        /* worker 0: the peers' keys, every cluster.refresh_interval */
	struct evdns_base *dns;          /* peers' names, resolved without blocking the loop */
	struct peer_fetch *fetches;      /* per peer: the fetch of its keys for an unknown kid */
	struct peer_conn *conns;         /* per peer: cluster.peer_connections kept alive (api_cluster.c) */
	struct api_guard guard;
};

struct http_api {
	struct server *srv;
	size_t nworkers;
	struct api_worker *workers;
	char cluster_auth[300];          /* "Bearer <cluster.secret_file>", "" without one */
};

/* http_api.c */
/* Send body (consumed) as the JSON reply. */
void api_reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body);
/* A JSON object answer written in place, for the answers of every request
 * (verify, refusals): no tree of values and no allocation for an answer
 * that fits in small. begin, then members (open/close for an object
 * member), then reply, which sends it and frees what it took. Strings
 * are escaped as RFC 8259 says; an octet that is not UTF-8 becomes U+FFFD. */
struct api_json {
	char *p;
	size_t len, cap;
	bool first;                      /* no member yet in the open object */
	char small[1024];
};
void api_json_begin(struct api_json *j);
void api_json_str(struct api_json *j, const char *key, const char *value);
void api_json_int(struct api_json *j, const char *key, long long value);
void api_json_open(struct api_json *j, const char *key);
void api_json_close(struct api_json *j);
void api_json_reply(struct evhttp_request *req, int code, const char *reason, struct api_json *j);
/* The object, closed, appended to out (a request body); frees what it took. */
void api_json_end(struct api_json *j, struct evbuffer *out);
/* {"result": result (omitted when NULL), "error": text} */
void api_reply_error(struct evhttp_request *req, int code, const char *reason, const char *result,
    const char *text);
/* The client's address as text, in buf. */
const char *api_peer_of(struct evhttp_request *req, char *buf, size_t len);
/* "Authorization: Bearer <secret>" -> service name (empty without one).
 * true when the request may go on; otherwise a 401 has been sent. */
bool api_check_credential(struct api_worker *w, struct evhttp_request *req, bool required, char *service,
    size_t len);

/* api_guard.c: every request head is checked before evhttp parses it. */
/* evhttp_set_bevcb's callback (arg: the worker): each connection's bufferevent. */
struct bufferevent *api_guard_bevcb(struct event_base *base, void *arg);
/* A refused request, answered (JSON, then close): true. Else false. */
bool api_guard_answer(struct api_worker *w, struct evhttp_request *req, const char *path);
/* Before evhttp_free: no more lingering. After it: close those that linger. */
void api_guard_stop(struct api_worker *w);
void api_guard_free(struct api_worker *w);

/* api_tokens.c */
/* Every check of a presented token, for each endpoint that takes one: read
 * the input (headers or JSON body), verify, look it up. true with c and
 * info filled (the caller frees info); otherwise the refusal was answered,
 * counted, logged as event=api_<action> and audited. */
bool api_token_gate(struct api_worker *w, struct evhttp_request *req, const char *action, const char *service,
    struct token_claims *c, struct store_token_info *info);

/* Where the token and the expected address come from: headers, or for a
 * POST with a body, a JSON object. Writes into the caller's buffers. 0,
 * or -1 (token too long), -2 (bad request), -3 (no token) with why. */
int api_token_input(struct evhttp_request *req, char *token, size_t tlen, char *addr, size_t alen,
    const char **why);
/* The refusal of a token with status st, as JSON with its HTTP status. */
void api_token_status_reply(struct evhttp_request *req, enum token_status st);

/* api_cluster.c: the other nodes of a cluster (docs/cluster.md). */
struct cluster_call;
/* A token signed by another node's key: verify asks that node, fetch and
 * status answer 307 to it; a refusal found here is answered here. true
 * when the request was answered (or will be); false for this node's own
 * tokens and whatever the gate refuses anyway. */
bool api_cluster_route(struct api_worker *w, struct evhttp_request *req, const char *action, const char *service);
/* Per worker: load the peers' keys; on worker 0, start the refresh. */
int api_cluster_init(struct api_worker *w, char *err, size_t errlen);
/* Cut the calls in flight, free what api_cluster_init made. */
void api_cluster_free(struct api_worker *w);
/* Read cluster.secret_file into api->cluster_auth. 0 or -1 with err. */
int api_cluster_load_secret(struct http_api *api, char *err, size_t errlen);

/* The handlers, one per route. */
/* api_tokens.c */
void api_handle_verify(struct api_worker *w, struct evhttp_request *req);
void api_handle_fetch(struct api_worker *w, struct evhttp_request *req);
/* api_delivery.c */
void api_handle_status(struct api_worker *w, struct evhttp_request *req);
/* api_status.c */
void api_handle_keys(struct api_worker *w, struct evhttp_request *req);
void api_handle_health(struct api_worker *w, struct evhttp_request *req);
void api_handle_metrics(struct api_worker *w, struct evhttp_request *req);

#endif
