/*
 * api_cluster.c: the other nodes of a cluster (docs/cluster.md). A node's
 * name is its tokens' issuer; cluster.peers names the others and their
 * API. Three jobs, all on the API threads' own event loops:
 *
 * - the peers' keys: worker 0 fetches each peer's /v1/keys?local=1 (that
 *   node's keys only, so nothing loops) every cluster.refresh_interval and
 *   hands what it read to the writer (peer_keys_store); each worker loads
 *   the table on its own read connection (peer_ring) when the database
 *   changed. A peer that does not answer keeps the keys it had.
 *   A token whose kid no ring has and whose (unverified) iss is a peer
 *   makes the worker fetch that peer's keys at once: the request waits
 *   for the answer, takes the keys into the worker's ring in memory (and
 *   to the writer, as a refresh does) and is then handled again. One such
 *   fetch per peer at a time on a worker, and none for
 *   cluster.key_fetch_interval after one ended, so a made-up kid costs
 *   one fetch per interval, not one per request.
 * - verify: a token signed by a peer's key has its signature, expiry and
 *   address binding checked here; whether it is still on record and not
 *   revoked is the issuer's to say, so the request goes on to the
 *   issuer's /v1/verify and its answer comes back as it is. No answer
 *   within cluster.timeout is "issuer_unavailable" (503): never "valid"
 *   for what was not checked.
 * - fetch and status: the copy and its deliveries are at the issuer; the
 *   answer is 307 to the same path there.
 *
 * A call to a peer is an evhttp client request on the worker's loop; the
 * calls in flight are listed on the worker so that a stopping worker
 * frees them, and a client that goes away while its verify waits leaves
 * the peer's answer to be dropped. A verify goes over one of the
 * connections the worker keeps open to that peer (cluster.peer_connections,
 * HTTP keep-alive): setting up and tearing down a TCP connection per
 * request cost as much as the verification. A connection that failed
 * (the peer stopped, a timeout) is opened again by evhttp for its next
 * request; one idle longer than PEER_CONN_IDLE_MS is replaced rather than
 * reused, as the peer may be closing it (its http.timeout, 1 s at least);
 * when all are busy the verify gets a connection of its own, as before,
 * so no request waits behind another and cluster.timeout means the same.
 */
#include "server/api/http_api_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <sodium.h>

#include "db/writer.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/protocol/peer_answer.h"
#include "tokens/token.h"

#define CLUSTER_HOP_HEADER "Submit-Cluster-Hop"

/* A kept-alive connection to a peer; evcon NULL until first used. */
struct peer_conn {
	struct evhttp_connection *evcon;
	bool busy;                           /* a call is on it */
	int64_t idle_since_ms;
};

/* Reused only when idle for less than this: under the least http.timeout
 * a peer may have, so the peer is not closing it while we send. */
#define PEER_CONN_IDLE_MS 800

/* How often at most a known peer key's ring is checked for changes. */
#define PEER_RING_CHECK_MS 1000

struct cluster_call {
	struct api_worker *w;
	struct evhttp_connection *evcon;     /* to the peer; freed on completion unless pooled */
	struct peer_conn *pooled;            /* the kept-alive connection it is on, or NULL */
	const struct peer *peer;
	/* verify: the client's request, NULL once it went away */
	struct evhttp_request *req;
	char service[SERVICE_NAME_MAX];
	char jti[TOKEN_ID_LEN + 1];
	char client[64];
	char shorttok[LOG_TOKEN_SHORT];
	bool keys;                           /* a fetch of the peer's keys */
	bool on_demand;                      /* ... for a token with an unknown kid */
	bool answered;                       /* waits for reap() to free it */
	bool client_gone;
	struct cluster_call *next;
};

/* A request that waits for its peer's keys, to be handled again. */
struct key_waiter {
	struct evhttp_request *req;          /* NULL: gone with its connection */
	void (*handler)(struct api_worker *, struct evhttp_request *);
	bool client_gone;                    /* detached: a reply frees it */
	struct key_waiter *next;
};

/* Per peer and worker: the fetch of its keys for an unknown kid. */
struct peer_fetch {
	bool in_flight;
	bool failed;                         /* the last one brought no key list */
	int64_t ended_ms;                    /* when the last one ended; 0 none yet */
	struct key_waiter *waiting;
	size_t nwaiting;
};

/* Requests that may wait for one peer's keys on one worker; more are
 * answered issuer_unavailable at once (the answer is not known yet). */
#define KEY_WAITERS_MAX 256

/* The writer job that stores one peer's keys. */
struct keys_job {
	struct writer_job job;
	char node[PEER_NAME_MAX + 1];
	struct peer_key *keys;
	size_t n;
	int64_t now_ms, forget_ms;
};

int
api_cluster_load_secret(struct http_api *api, char *err, size_t errlen)
{
	const char *path = api->srv->cfg->cluster_secret_file;
	char line[260];
	size_t n;
	FILE *f;

	api->cluster_auth[0] = '\0';
	if (path[0] == '\0')
		return 0;
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(err, errlen, "cluster.secret_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 0 || n > 256 || strpbrk(line, " \t") != NULL) {
		sodium_memzero(line, sizeof(line));
		snprintf(err, errlen, "cluster.secret_file %s: expected one line, the secret (1 to 256 characters)", path);
		return -1;
	}
	snprintf(api->cluster_auth, sizeof(api->cluster_auth), "Bearer %s", line);
	sodium_memzero(line, sizeof(line));
	return 0;
}

/* A connection cannot be freed from its own request's callback, and
 * evhttp's free-on-completion misses the failed connects of 2.1: the
 * answered calls are freed here, on the next turn of the loop. */
static void
reap(evutil_socket_t fd, short what, void *arg)
{
	struct api_worker *w = arg;

	for (struct cluster_call **p = &w->calls; *p;) {
		struct cluster_call *c = *p;
		if (!c->answered) {
			p = &c->next;
			continue;
		}
		*p = c->next;
		if (c->pooled) {
			c->pooled->busy = false;
			c->pooled->idle_since_ms = now_ms();
		} else {
			evhttp_connection_free(c->evcon);
		}
		free(c);
	}
}

/* The answer is in: the call is done with. */
static void
call_done(struct cluster_call *c)
{
	c->answered = true;
	c->req = NULL;
	event_active(c->w->reap_ev, EV_TIMEOUT, 0);
}

/* The client of a waiting verify went away. On EOF or timeout evhttp
 * detaches the request and leaves it to us (the reply, sent to nobody,
 * frees it); a request still attached goes with its connection
 * (evhttp_free at shutdown). */
static void
client_closed(struct evhttp_connection *evcon, void *arg)
{
	struct cluster_call *c = arg;

	if (c->req != NULL && evhttp_request_get_connection(c->req) != NULL)
		c->req = NULL;
	c->client_gone = true;
}

/* A kept-alive connection to p that is free, or NULL (all busy, or none
 * kept). */
static struct peer_conn *
conn_take(struct api_worker *w, const struct peer *p)
{
	const struct config *cfg = w->api->srv->cfg;
	size_t n = (size_t)cfg->cluster_peer_connections;
	struct peer_conn *v = w->conns + (size_t)(p - cfg->cluster_peer_list.v) * n, *fresh = NULL, *stale = NULL;
	int64_t now = now_ms();

	for (size_t i = 0; i < n; i++) {
		if (v[i].busy)
			continue;
		if (v[i].evcon != NULL && now - v[i].idle_since_ms < PEER_CONN_IDLE_MS) {
			v[i].busy = true;
			return &v[i];
		}
		if (v[i].evcon == NULL && fresh == NULL)
			fresh = &v[i];
		else if (v[i].evcon != NULL && stale == NULL)
			stale = &v[i];
	}
	if (fresh == NULL && stale != NULL) {
		/* not in a callback of its own: it may be freed here */
		evhttp_connection_free(stale->evcon);
		stale->evcon = NULL;
		fresh = stale;
	}
	if (fresh != NULL)
		fresh->busy = true;
	return fresh;
}

static struct evhttp_connection *
conn_new(struct api_worker *w, const struct peer *p)
{
	struct evhttp_connection *evcon = evhttp_connection_base_new(w->base, w->dns, p->host, (ev_uint16_t)p->port);

	if (evcon == NULL)
		return NULL;
	evhttp_connection_set_timeout(evcon, (int)w->api->srv->cfg->cluster_timeout);
	evhttp_connection_set_retries(evcon, 0);
	/* what a peer may make this node hold: an answer over these fails */
	evhttp_connection_set_max_headers_size(evcon, PEER_ANSWER_MAX);
	evhttp_connection_set_max_body_size(evcon, PEER_ANSWER_MAX);
	return evcon;
}

/* A request to peer p on w's loop; cb gets the answer (NULL: none). keep:
 * over a kept-alive connection when one is free. */
static struct cluster_call *
call_start(struct api_worker *w, const struct peer *p, enum evhttp_cmd_type cmd, const char *path,
    struct evbuffer *body, bool keep, void (*cb)(struct evhttp_request *, void *))
{
	struct cluster_call *c = xcalloc(1, sizeof(*c));
	struct evhttp_request *r;
	struct evkeyvalq *h;
	char uri[PEER_URL_MAX + 32];

	c->w = w;
	c->peer = p;
	c->pooled = keep ? conn_take(w, p) : NULL;
	if (c->pooled && c->pooled->evcon == NULL)
		c->pooled->evcon = conn_new(w, p);
	c->evcon = c->pooled ? c->pooled->evcon : conn_new(w, p);
	r = evhttp_request_new(cb, c);
	if (c->evcon == NULL || r == NULL) {
		if (r)
			evhttp_request_free(r);
		if (c->pooled)
			c->pooled->busy = false;
		else if (c->evcon)
			evhttp_connection_free(c->evcon);
		free(c);
		return NULL;
	}
	h = evhttp_request_get_output_headers(r);
	snprintf(uri, sizeof(uri), strchr(p->host, ':') ? "[%s]:%d" : "%s:%d", p->host, p->port);
	evhttp_add_header(h, "Host", uri);
	if (c->pooled == NULL)
		evhttp_add_header(h, "Connection", "close");
	evhttp_add_header(h, CLUSTER_HOP_HEADER, "1");
	if (w->api->cluster_auth[0])
		evhttp_add_header(h, "Authorization", w->api->cluster_auth);
	if (body) {
		evhttp_add_header(h, "Content-Type", "application/json");
		evbuffer_add_buffer(evhttp_request_get_output_buffer(r), body);
	}
	snprintf(uri, sizeof(uri), "%s%s", p->prefix, path);
	if (evhttp_make_request(c->evcon, r, cmd, uri) != 0) {
		/* evhttp_make_request freed r */
		if (c->pooled)
			c->pooled->busy = false;
		else
			evhttp_connection_free(c->evcon);
		free(c);
		return NULL;
	}
	c->next = w->calls;
	w->calls = c;
	return c;
}

/* The answer's body, if it fits. */
static const char *
answer_body(struct evhttp_request *r, size_t *len_r)
{
	struct evbuffer *b = evhttp_request_get_input_buffer(r);

	*len_r = evbuffer_get_length(b);
	if (*len_r == 0 || *len_r > PEER_ANSWER_MAX)
		return NULL;
	return (const char *)evbuffer_pullup(b, -1);
}

/* --- the peers' keys ------------------------------------------------- */

static int
keys_job_run(sqlite3 *db, void *arg)
{
	struct keys_job *j = arg;

	return peer_keys_store(db, j->node, j->keys, j->n, j->now_ms, j->forget_ms);
}

/* On the SMTP loop, after the commit: nothing to tell anyone, the API
 * threads see the change through data_version. */
static void
keys_job_done(struct writer_job *job)
{
	struct keys_job *j = (struct keys_job *)job;

	if (job->rc != SQLITE_OK)
		log_err("event=cluster_keys_store_failed node=%s rc=%d", j->node, job->rc);
	free(j->keys);
	free(j);
}

/* The close callback of a waiting request's connection: as
 * client_closed. */
static void
waiter_closed(struct evhttp_connection *evcon, void *arg)
{
	struct key_waiter *k = arg;

	if (k->req != NULL && evhttp_request_get_connection(k->req) != NULL)
		k->req = NULL;
	k->client_gone = true;
}

/* The on-demand fetch of p's keys ended (failed: no key list came): the
 * requests that waited for it are handled again, and find the key now,
 * or meet the interval and get their answer without another fetch. */
static void
fetch_ended(struct api_worker *w, const struct peer *p, bool failed)
{
	struct peer_fetch *f = &w->fetches[p - w->api->srv->cfg->cluster_peer_list.v];
	struct key_waiter *k = f->waiting;

	f->in_flight = false;
	f->failed = failed;
	f->ended_ms = now_ms();
	f->waiting = NULL;
	f->nwaiting = 0;
	while (k != NULL) {
		struct key_waiter *next = k->next;
		if (k->req != NULL && k->client_gone) {
			/* detached: the reply, sent to nobody, frees it */
			api_reply_error(k->req, 503, "Service Unavailable", "issuer_unavailable", "gone");
		} else if (k->req != NULL) {
			evhttp_connection_set_closecb(evhttp_request_get_connection(k->req), NULL, NULL);
			k->handler(w, k->req);
		}
		free(k);
		k = next;
	}
}

static void
keys_answer(struct evhttp_request *r, void *arg)
{
	struct cluster_call *c = arg;
	struct api_worker *w = c->w;
	const struct config *cfg = w->api->srv->cfg;
	struct peer_answer_key *ak = NULL;
	struct keys_job *j;
	const char *body;
	size_t len, n = 0;
	int code = r ? evhttp_request_get_response_code(r) : 0;
	bool failed = true;

	if (code != 200) {
		log_warn("event=cluster_keys_failed node=%s status=%d keys=kept", c->peer->name, code);
		goto out;
	}
	body = answer_body(r, &len);
	ak = xcalloc(PEER_ANSWER_KEYS_MAX, sizeof(*ak));
	if (peer_answer_keys(body, body ? len : 0, c->peer->name, ak, PEER_ANSWER_KEYS_MAX, &n) == -1) {
		log_warn("event=cluster_keys_failed node=%s error=\"not a key list\" keys=kept", c->peer->name);
		goto out;
	}
	j = xcalloc(1, sizeof(*j));
	j->keys = xcalloc(n ? n : 1, sizeof(*j->keys));
	for (size_t i = 0; i < n; i++) {
		struct peer_key *k = &j->keys[j->n];
		char pid[PASERK_K4_PID_LEN + 1];
		/* a kid is the hash of its key: one that is not is refused */
		paserk_k4_pid(ak[i].pk, pid);
		if (strcmp(pid, ak[i].kid) != 0) {
			log_warn("event=cluster_key_refused node=%s key_id=%.60s error=\"key id does not match the key\"",
			    c->peer->name, ak[i].kid);
			continue;
		}
		memcpy(k->kid, pid, sizeof(pid));
		memcpy(k->pk, ak[i].pk, sizeof(k->pk));
		k->state = ak[i].active ? TOKEN_KEY_ACTIVE : TOKEN_KEY_RETIRED;
		if (ak[i].created_at[0])
			token_time_parse(ak[i].created_at, strlen(ak[i].created_at), &k->created_at);
		if (ak[i].retired_at[0])
			token_time_parse(ak[i].retired_at, strlen(ak[i].retired_at), &k->retired_at);
		j->n++;
	}
	snprintf(j->node, sizeof(j->node), "%s", c->peer->name);
	j->now_ms = now_ms();
	/* A key the peer stops listing is kept as long as a token it signed
	 * may live (tokens.lifetime, the same on every node), and a refresh more. */
	j->forget_ms = j->now_ms - (cfg->tokens_lifetime + cfg->cluster_refresh_interval) * 1000;
	j->job.run = keys_job_run;
	j->job.done = keys_job_done;
	j->job.arg = j;
	log_debug("event=cluster_keys node=%s keys=%zu", c->peer->name, j->n);
	/* known on this worker now; the others when the writer committed */
	peer_ring_learn(&w->peers, c->peer->name, j->keys, j->n, &w->keys.ring);
	failed = false;
	writer_job_submit(w->api->srv->writer, &j->job);
out:
	free(ak);
	if (c->on_demand)
		fetch_ended(w, c->peer, failed);
	call_done(c);
}

static void
refresh(evutil_socket_t fd, short what, void *arg)
{
	struct api_worker *w = arg;
	const struct config *cfg = w->api->srv->cfg;
	struct timeval tv = { .tv_sec = (time_t)cfg->cluster_refresh_interval };

	for (size_t i = 0; i < cfg->cluster_peer_list.n; i++) {
		const struct peer *p = &cfg->cluster_peer_list.v[i];
		bool busy = false;
		/* one fetch per peer at a time: a slow peer does not pile them up */
		for (struct cluster_call *c = w->calls; c; c = c->next)
			busy |= c->keys && !c->answered && c->peer == p;
		if (busy)
			continue;
		struct cluster_call *c = call_start(w, p, EVHTTP_REQ_GET, "/v1/keys?local=1", NULL, false, keys_answer);
		if (c)
			c->keys = true;
		else
			log_warn("event=cluster_keys_failed node=%s error=\"cannot make the request\"", p->name);
	}
	evtimer_add(w->refresh_ev, &tv);
}

int
api_cluster_init(struct api_worker *w, char *err, size_t errlen)
{
	const struct config *cfg = w->api->srv->cfg;

	if (peer_ring_init(w->db, &w->peers, err, errlen) == -1)
		return -1;
	w->fetches = xcalloc(cfg->cluster_peer_list.n ? cfg->cluster_peer_list.n : 1, sizeof(*w->fetches));
	w->conns = xcalloc(cfg->cluster_peer_list.n * (size_t)cfg->cluster_peer_connections + 1, sizeof(*w->conns));
	w->reap_ev = event_new(w->base, -1, 0, reap, w);
	peer_ring_refresh(w->db, &w->peers);
	/* A peer named by a host name must not stall every request of this
	 * loop while it resolves; an address is used as it is, without a query. */
	if (cfg->cluster_peer_list.n > 0) {
		w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
		if (w->dns == NULL)      /* no resolv.conf: addresses only */
			w->dns = evdns_base_new(w->base, 0);
	}
	if (w->index == 0 && cfg->cluster_peer_list.n > 0) {
		struct timeval now = { 0, 0 };
		w->refresh_ev = evtimer_new(w->base, refresh, w);
		evtimer_add(w->refresh_ev, &now);
	}
	return 0;
}

void
api_cluster_free(struct api_worker *w)
{
	struct cluster_call *c;

	if (w->refresh_ev)
		event_free(w->refresh_ev);
	w->refresh_ev = NULL;
	if (w->reap_ev)
		event_free(w->reap_ev);
	w->reap_ev = NULL;
	/* Freeing the connection drops its request without calling back. */
	while ((c = w->calls) != NULL) {
		w->calls = c->next;
		if (c->req != NULL && !c->answered)     /* detached: ours to free */
			evhttp_request_free(c->req);
		if (c->pooled == NULL)
			evhttp_connection_free(c->evcon);
		free(c);
	}
	for (size_t i = 0; w->conns && i < w->api->srv->cfg->cluster_peer_list.n *
	    (size_t)w->api->srv->cfg->cluster_peer_connections; i++)
		if (w->conns[i].evcon)
			evhttp_connection_free(w->conns[i].evcon);
	free(w->conns);
	w->conns = NULL;
	/* After evhttp_free: the requests still attached went with their
	 * connections (waiter_closed forgot them); the detached are ours. */
	for (size_t i = 0; w->fetches && i < w->api->srv->cfg->cluster_peer_list.n; i++) {
		struct key_waiter *k = w->fetches[i].waiting;
		while (k != NULL) {
			struct key_waiter *next = k->next;
			if (k->req != NULL)
				evhttp_request_free(k->req);
			free(k);
			k = next;
		}
	}
	free(w->fetches);
	w->fetches = NULL;
	if (w->dns)
		evdns_base_free(w->dns, 0);
	w->dns = NULL;
	peer_ring_free(&w->peers);
}

/* --- verify, fetch and status for another node's token ---------------- */

static void
audit(struct api_worker *w, const char *action, const char *result, const char *service, const char *jti,
    const char *client)
{
	writer_audit(w->api->srv->writer, strcmp(action, "fetch") == 0 ? "fetch" : "verify", result,
	    service[0] ? service : NULL, jti && jti[0] ? jti : NULL, client);
}

static void
unavailable(struct evhttp_request *req, const char *node, const char *text)
{
	json_t *j = json_pack("{s:s, s:s, s:s}", "result", "issuer_unavailable", "node", node, "error", text);

	evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "5");
	api_reply_json(req, 503, "Service Unavailable", j);
}

static void
verify_answer(struct evhttp_request *r, void *arg)
{
	struct cluster_call *c = arg;
	struct api_worker *w = c->w;
	struct server *srv = w->api->srv;
	int code = r ? evhttp_request_get_response_code(r) : 0;
	char result[PEER_RESULT_MAX + 1] = "";
	const char *body = NULL;
	size_t len = 0;
	bool ok;

	if (r)
		body = answer_body(r, &len);
	/* Only an answer that is the issuer's own verdict passes: a result
	 * that agrees with its status, and never a 5xx or our credential's
	 * refusal (401), which say nothing about the token. */
	ok = code > 0 && code < 500 && code != 401 && body && peer_answer_result(body, len, result) == 0 &&
	    (code == 200) == (strcmp(result, "valid") == 0) && strcmp(result, "issuer_unavailable") != 0;
	log_info("event=api_verify result=%s token=%s service=%s ip=%s node=%s peer_status=%d", ok ? result :
	    "issuer_unavailable", c->shorttok, c->service[0] ? c->service : "-", c->client, c->peer->name, code);
	/* audited as a verification here is: refusals only */
	if (!ok || strcmp(result, "valid") != 0)
		audit(w, "verify", ok ? result : "issuer_unavailable", c->service, c->jti, c->client);
	if (c->req == NULL)
		goto out;
	if (!c->client_gone)
		evhttp_connection_set_closecb(evhttp_request_get_connection(c->req), NULL, NULL);
	if (!ok) {
		unavailable(c->req, c->peer->name, r == NULL || code == 0 ? "the issuing node did not answer" :
		    "the issuing node did not give a verdict");
	} else {
		struct evbuffer *out = evbuffer_new();
		if (code == 200)
			STAT_ADD(srv->stats.tokens_verified, 1);
		evbuffer_add(out, body, len);
		evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type", "application/json");
		evhttp_add_header(evhttp_request_get_output_headers(c->req), "Cache-Control", "no-store");
		evhttp_send_reply(c->req, code, evhttp_request_get_response_code_line(r), out);
		evbuffer_free(out);
	}
out:
	call_done(c);
}

static void
forward_verify(struct api_worker *w, struct evhttp_request *req, const struct peer *p, const char *service,
    const char *token, const char *addr, const struct token_claims *claims, const char *client)
{
	struct evbuffer *body = evbuffer_new();
	struct cluster_call *c;
	struct api_json j;

	api_json_begin(&j);
	api_json_str(&j, "token", token);
	if (addr[0])
		api_json_str(&j, "address", addr);
	api_json_end(&j, body);
	c = call_start(w, p, EVHTTP_REQ_POST, "/v1/verify", body, true, verify_answer);
	evbuffer_free(body);
	if (c == NULL) {
		audit(w, "verify", "issuer_unavailable", service, claims->jti, client);
		unavailable(req, p->name, "cannot ask the issuing node");
		return;
	}
	c->req = req;
	snprintf(c->service, sizeof(c->service), "%s", service);
	snprintf(c->jti, sizeof(c->jti), "%s", claims->jti);
	snprintf(c->client, sizeof(c->client), "%s", client);
	log_token_short(c->shorttok, token);
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), client_closed, c);
}

/* 307 to the same path and query at the issuer (RFC 9110 15.4.8: the
 * method and body are kept, and so are the headers by the clients that
 * follow it). */
static void
refer(struct evhttp_request *req, const struct peer *p)
{
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
	char *loc;
	size_t n = strlen(p->url) + strlen(path) + (query ? strlen(query) + 1 : 0) + 1;

	loc = xmalloc(n);
	snprintf(loc, n, "%s%s%s%s", p->url, path, query ? "?" : "", query ? query : "");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
	api_reply_json(req, 307, "Temporary Redirect", json_pack("{s:s, s:s, s:s}", "result", "referral",
	    "node", p->name, "location", loc));
	free(loc);
}

enum fetch_outcome {
	FETCH_NONE,              /* no fetch: the key is unknown (the gate says so) */
	FETCH_WAITING,           /* the request waits for the peer's keys */
	FETCH_UNAVAILABLE,       /* the peer's keys cannot be had now */
};

/* A token of peer p (by its unverified claim) with a kid no ring has: the
 * peer may have made the key since the last refresh. */
static enum fetch_outcome
key_fetch(struct api_worker *w, struct evhttp_request *req, const struct peer *p, const char *action,
    const char *kid, const char *shorttok)
{
	const struct config *cfg = w->api->srv->cfg;
	struct peer_fetch *f = &w->fetches[p - cfg->cluster_peer_list.v];
	struct key_waiter *k;

	if (cfg->cluster_key_fetch_interval == 0)
		return FETCH_NONE;
	if (!f->in_flight) {
		struct cluster_call *c;
		if (f->ended_ms != 0 && now_ms() - f->ended_ms < cfg->cluster_key_fetch_interval * 1000)
			return f->failed ? FETCH_UNAVAILABLE : FETCH_NONE;
		c = call_start(w, p, EVHTTP_REQ_GET, "/v1/keys?local=1", NULL, false, keys_answer);
		if (c == NULL) {
			log_warn("event=cluster_keys_failed node=%s error=\"cannot make the request\"", p->name);
			f->failed = true;
			f->ended_ms = now_ms();
			return FETCH_UNAVAILABLE;
		}
		c->keys = c->on_demand = true;
		f->in_flight = true;
		log_info("event=cluster_keys_fetch node=%s key_id=%s token=%s why=unknown_key", p->name, kid, shorttok);
	} else if (f->nwaiting >= KEY_WAITERS_MAX) {
		return FETCH_UNAVAILABLE;
	}
	k = xcalloc(1, sizeof(*k));
	k->req = req;
	k->handler = strcmp(action, "verify") == 0 ? api_handle_verify :
	    strcmp(action, "fetch") == 0 ? api_handle_fetch : api_handle_status;
	k->next = f->waiting;
	f->waiting = k;
	f->nwaiting++;
	evhttp_connection_set_closecb(evhttp_request_get_connection(req), waiter_closed, k);
	return FETCH_WAITING;
}

bool
api_cluster_route(struct api_worker *w, struct evhttp_request *req, const char *action, const char *service)
{
	struct server *srv = w->api->srv;
	const struct config *cfg = srv->cfg;
	char token[4097], addr[1024], kid[PASERK_K4_PID_LEN + 1], client[64], shorttok[LOG_TOKEN_SHORT];
	const char *why = NULL, *node;
	const struct peer *p;
	struct token_claims c;
	enum token_status st;

	if (cfg->cluster_peer_list.n == 0 && w->peers.ring.n == 0)
		return false;
	/* Whatever is wrong with the input, the gate says so. */
	if (api_token_input(req, token, sizeof(token), addr, sizeof(addr), &why) != 0 ||
	    !token_key_id(token, strlen(token), kid) || keyring_find(&w->keys.ring, kid) != NULL)
		return false;
	/* The peers' ring follows the database (PRAGMA data_version) when the
	 * kid is unknown to it, and otherwise at most every PEER_RING_CHECK_MS,
	 * not per request: a key's state there only names refusals the
	 * issuer, which is asked anyway, would also give. */
	node = peer_ring_node(&w->peers, kid);
	if (node == NULL || now_ms() - w->peers_checked_ms >= PEER_RING_CHECK_MS) {
		peer_ring_refresh(w->db, &w->peers);
		w->peers_checked_ms = now_ms();
		node = peer_ring_node(&w->peers, kid);
	}
	api_peer_of(req, client, sizeof(client));
	log_token_short(shorttok, token);
	if (node == NULL) {
		/* A key no node of ours has: a token that claims another issuer
		 * than us and our peers has its own refusal; one that claims
		 * ours is the gate's (a key made since the ring was loaded, or
		 * unknown_key). The claim is unverified: it names the refusal,
		 * nothing more, and no token id is audited. */
		char iss[TOKEN_ISSUER_MAX + 1];
		if (cfg->cluster_peer_list.n == 0 || !token_unverified_issuer(token, strlen(token), iss) ||
		    strcmp(iss, cfg->tokens_issuer) == 0)
			return false;
		if ((p = peer_list_find(&cfg->cluster_peer_list, iss)) != NULL) {
			switch (key_fetch(w, req, p, action, kid, shorttok)) {
			case FETCH_NONE:
				return false;
			case FETCH_WAITING:
				return true;
			case FETCH_UNAVAILABLE:
				break;
			}
			/* Neither the key nor its absence could be learnt: not
			 * "unknown_key", which the peer did not say (fail closed). */
			log_info("event=api_%s result=issuer_unavailable token=%s service=%s ip=%s node=%s why=keys",
			    action, shorttok, service[0] ? service : "-", client, p->name);
			audit(w, action, "issuer_unavailable", service, NULL, client);
			unavailable(req, p->name, "the issuing node's keys cannot be fetched");
			return true;
		}
		log_info("event=api_%s result=unknown_issuer token=%s service=%s ip=%s", action, shorttok,
		    service[0] ? service : "-", client);
		audit(w, action, "unknown_issuer", service, NULL, client);
		api_reply_error(req, 404, "Not Found", "unknown_issuer", "the token's issuer is not a node of this cluster");
		return true;
	}
	st = token_verify(token, strlen(token), &w->peers.ring, now_unix(), addr[0] ? addr : NULL, NULL, NULL, &c);
	if (st != TOKEN_VALID) {
		log_info("event=api_%s result=%s token=%s service=%s ip=%s node=%s", action, token_status_name(st),
		    shorttok, service[0] ? service : "-", client, node);
		STAT_ADD(srv->stats.tokens_refused[st], 1);
		audit(w, action, token_status_name(st), service, c.jti, client);
		api_token_status_reply(req, st);
		return true;
	}
	p = peer_list_find(&cfg->cluster_peer_list, node);
	if (p == NULL || strcmp(c.iss, node) != 0) {
		/* a node no longer in cluster.peers, or a token that names
		 * another issuer than the node whose key signed it */
		log_info("event=api_%s result=unknown_issuer token=%s service=%s ip=%s node=%s", action, shorttok,
		    service[0] ? service : "-", client, node);
		audit(w, action, "unknown_issuer", service, c.jti, client);
		api_reply_error(req, 404, "Not Found", "unknown_issuer", "the token's issuer is not a node of this cluster");
		return true;
	}
	if (strcmp(action, "verify") != 0) {
		log_info("event=api_%s result=referred token=%s service=%s ip=%s node=%s", action, shorttok,
		    service[0] ? service : "-", client, node);
		audit(w, action, "referred", service, c.jti, client);
		refer(req, p);
		return true;
	}
	/* The issuer answers for itself: a request that came from another
	 * node is never sent on (nodes that disagree on names cannot loop). */
	if (evhttp_find_header(evhttp_request_get_input_headers(req), CLUSTER_HOP_HEADER) != NULL) {
		audit(w, action, "issuer_unavailable", service, c.jti, client);
		unavailable(req, node, "forwarded by another node to one that did not issue the token");
		return true;
	}
	forward_verify(w, req, p, service, token, addr, &c, client);
	return true;
}
