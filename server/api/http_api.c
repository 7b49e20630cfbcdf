/*
 * http_api.c: see http_api.h and docs/api.md.
 *
 * Tokens travel in the Submit-Token header or a JSON body, never in the
 * URL, so they stay out of access logs and proxies' caches. Every request
 * is routed by path, then checked for its method, then for a credential
 * when the endpoint needs one. Token results map to distinct statuses so a
 * caller can act on the status alone.
 *
 * A fetch streams the body: it reads one chunk of the blob, hands it to
 * evhttp, and reads the next when that chunk has been written to the
 * socket, so memory per fetch is one chunk whatever the message size.
 */
#include "server/api/http_api.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/ssl.h>
#include <sodium.h>
#include <sqlite3.h>

#include "db/store.h"
#include "db/writer.h"
#include "server/base/log.h"
#include "server/base/netaddr.h"
#include "server/base/util.h"
#include "tokens/token.h"

#define FETCH_CHUNK (64 * 1024)
#define TOKEN_INPUT_MAX 4096
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
};

struct http_api {
	struct server *srv;
	size_t nworkers;
	struct api_worker *workers;
};

struct fetch {
	struct api_worker *w;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	int64_t message_id;
	int64_t size, off;
	char msgid[32];
};

/* ------------------------------------------------------------------ */

static void
reply_json(struct evhttp_request *req, int code, const char *reason, json_t *body)
{
	struct evbuffer *out = evbuffer_new();
	char *text = json_dumps(body, JSON_COMPACT);

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
	if (text) {
		evbuffer_add(out, text, strlen(text));
		evbuffer_add(out, "\n", 1);
		free(text);
	}
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
	json_decref(body);
}

static void
reply_error(struct evhttp_request *req, int code, const char *reason, const char *result, const char *text)
{
	json_t *j = json_object();

	if (result)
		json_object_set_new(j, "result", json_string(result));
	json_object_set_new(j, "error", json_string(text));
	reply_json(req, code, reason, j);
}

static const char *
peer_of(struct evhttp_request *req, char *buf, size_t len)
{
	struct evhttp_connection *c = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;

	snprintf(buf, len, "unknown");
	if (c) {
		evhttp_connection_get_peer(c, &addr, &port);
		if (addr)
			snprintf(buf, len, "%s", addr);
	}
	return buf;
}

/* "Authorization: Bearer <secret>" -> service name. true when the request
 * may go on; otherwise a 401 has been sent. */
static bool
check_credential(struct api_worker *w, struct evhttp_request *req, bool required, char *service, size_t len)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	unsigned char digest[crypto_hash_sha256_BYTES];
	char hex[65];
	int found;

	service[0] = '\0';
	if (h == NULL && !required)
		return true;
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) == 0 || strlen(h + 7) > 256) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer realm=\"submitd\"");
		reply_error(req, 401, "Unauthorized", "unauthorized", "a service credential is required (Authorization: Bearer)");
		return false;
	}
	crypto_hash_sha256(digest, (const unsigned char *)h + 7, strlen(h + 7));
	hex_encode(digest, sizeof(digest), hex);
	found = store_service_find(w->db, hex, service, len);
	if (found != 1) {
		service[0] = '\0';
		if (found == -1)
			log_err("event=http_db_failed error=\"%s\"", sqlite3_errmsg(w->db));
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
		    "Bearer realm=\"submitd\", error=\"invalid_token\"");
		reply_error(req, 401, "Unauthorized", "unauthorized", "unknown service credential");
		return false;
	}
	return true;
}

/* Where the token and the expected address come from: headers, or for a
 * POST with a body, a JSON object. Writes into the caller's buffers. */
static int
token_input(struct evhttp_request *req, char *token, size_t tlen, char *addr, size_t alen, const char **why)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *t = evhttp_find_header(in, "Submit-Token");
	const char *a = evhttp_find_header(in, "Submit-Address");
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t blen = evbuffer_get_length(body);

	token[0] = addr[0] = '\0';
	if (t && strlen(t) < tlen)
		snprintf(token, tlen, "%s", t);
	else if (t) {
		*why = "token too long";
		return -1;
	}
	/* An address that does not fit cannot be silently dropped: that
	 * would skip the binding check the caller asked for. */
	if (a && strlen(a) >= alen) {
		*why = "address too long";
		return -2;
	}
	if (a)
		snprintf(addr, alen, "%s", a);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST && blen > 0) {
		json_error_t jerr;
		json_t *j = json_loadb((const char *)evbuffer_pullup(body, -1), blen, JSON_REJECT_DUPLICATES, &jerr);
		json_t *jt, *ja;
		if (j == NULL || !json_is_object(j)) {
			json_decref(j);
			*why = "the body is not a JSON object";
			return -2;
		}
		jt = json_object_get(j, "token");
		ja = json_object_get(j, "address");
		if ((jt && !json_is_string(jt)) || (ja && !json_is_string(ja) && !json_is_null(ja))) {
			json_decref(j);
			*why = "\"token\" and \"address\" must be strings";
			return -2;
		}
		if (jt) {
			if (strlen(json_string_value(jt)) >= tlen) {
				json_decref(j);
				*why = "token too long";
				return -1;
			}
			snprintf(token, tlen, "%s", json_string_value(jt));
		}
		if (ja && json_is_string(ja) && strlen(json_string_value(ja)) >= alen) {
			json_decref(j);
			*why = "address too long";
			return -2;
		}
		if (ja && json_is_string(ja))
			snprintf(addr, alen, "%s", json_string_value(ja));
		json_decref(j);
	}
	if (token[0] == '\0') {
		*why = "no token (Submit-Token header or JSON \"token\")";
		return -3;
	}
	return 0;
}

static void
status_reply(struct evhttp_request *req, enum token_status st)
{
	static const struct { int code; const char *reason, *text; } map[] = {
		[TOKEN_VALID] = { 200, "OK", "" },
		[TOKEN_MALFORMED] = { 400, "Bad Request", "not a submission token" },
		[TOKEN_BAD_SIGNATURE] = { 422, "Unprocessable Entity", "the signature does not verify" },
		[TOKEN_UNKNOWN_KEY] = { 404, "Not Found", "signed by a key this server does not know" },
		[TOKEN_EXPIRED] = { 410, "Gone", "the token has expired" },
		[TOKEN_REVOKED] = { 403, "Forbidden", "the token was revoked" },
		[TOKEN_WRONG_ADDRESS] = { 409, "Conflict", "the token is bound to another address" },
	};
	reply_error(req, map[st].code, map[st].reason, token_status_name(st), map[st].text);
}

/* "YYYY-MM-DD HH:MM:SS.sss" -> "YYYY-MM-DDTHH:MM:SS.sssZ" */
static void
rfc3339_from_db(const char *db, char *out, size_t len)
{
	snprintf(out, len, "%.10sT%.12sZ", db, strlen(db) > 11 ? db + 11 : "00:00:00");
}

/* The common part of verify and fetch: read the input, check the token.
 * true with claims and info filled when valid; otherwise a reply was sent
 * and the refusal counted and audited. */
static bool
token_gate(struct api_worker *w, struct evhttp_request *req, const char *action, const char *service,
    struct token_claims *c, struct store_token_info *info)
{
	struct server *srv = w->api->srv;
	char token[TOKEN_INPUT_MAX + 1], addr[1024], peer[64], shorttok[LOG_TOKEN_SHORT];
	const char *why = NULL;
	struct store_token_check k = { .db = w->db, .stmt = &w->token_stmt };
	enum token_status st;
	bool signed_valid;
	int rc;

	peer_of(req, peer, sizeof(peer));
	rc = token_input(req, token, sizeof(token), addr, sizeof(addr), &why);
	if (rc != 0) {
		const char *result = rc == -3 ? "missing_token" : rc == -2 ? "bad_request" : "malformed";
		reply_error(req, 400, "Bad Request", result, why);
		writer_audit(srv->writer, action, result, service[0] ? service : NULL, NULL, peer);
		return false;
	}
	memset(c, 0, sizeof(*c));
	st = token_verify(token, strlen(token), &w->keys.ring, now_unix(), addr[0] ? addr : NULL,
	    store_token_check_revoked, &k, c);
	/* The ring follows the database, but keys are only ever added or
	 * retired (a retired key still verifies), so a verification reloads
	 * it only for a key it does not know yet: audit rows commit all the
	 * time. */
	if (st == TOKEN_UNKNOWN_KEY && store_keys_refresh(w->db, &w->keys) == 1)
		st = token_verify(token, strlen(token), &w->keys.ring, now_unix(), addr[0] ? addr : NULL,
		    store_token_check_revoked, &k, c);
	signed_valid = st == TOKEN_VALID;
	st = store_token_check_finish(&k, st, c->jti);
	if (signed_valid && st == TOKEN_EXPIRED && strcmp(action, "fetch") == 0) {
		/* Signed by us, not expired by its claims, but no longer on
		 * record: retention took the copy. Say so to a fetch; a verify
		 * answers "expired", as the token is no longer honoured. */
		log_info("event=api_fetch result=purged token=%s service=%s ip=%s", log_token_short(shorttok, token),
		    service[0] ? service : "-", peer);
		writer_audit(srv->writer, action, "purged", service[0] ? service : NULL, c->jti, peer);
		reply_error(req, 410, "Gone", "purged", "the saved copy is no longer stored");
		store_token_info_free(&k.info);
		return false;
	}
	if (k.found == -1)
		log_err("event=http_db_failed error=\"%s\"", sqlite3_errmsg(w->db));
	log_info("event=api_%s result=%s token=%s service=%s ip=%s", action, token_status_name(st),
	    log_token_short(shorttok, token), service[0] ? service : "-", peer);
	if (st != TOKEN_VALID) {
		STAT_ADD(srv->stats.tokens_refused[st], 1);
		writer_audit(srv->writer, action, token_status_name(st), service[0] ? service : NULL,
		    c->jti[0] ? c->jti : NULL, peer);
		status_reply(req, st);
		store_token_info_free(&k.info);
		return false;
	}
	STAT_ADD(srv->stats.tokens_verified, 1);
	*info = k.info;             /* the caller frees it */
	return true;
}

static void
handle_verify(struct api_worker *w, struct evhttp_request *req)
{
	struct token_claims c;
	struct store_token_info info;
	char service[SERVICE_NAME_MAX], exp[21], received[64];
	json_t *j, *m;

	if (!check_credential(w, req, w->api->srv->cfg->http_auth_verify, service, sizeof(service))) {
		char peer[64];
		writer_audit(w->api->srv->writer, "verify", "unauthorized", NULL, NULL, peer_of(req, peer, sizeof(peer)));
		return;
	}
	if (!token_gate(w, req, "verify", service, &c, &info))
		return;
	token_time_format(c.exp, exp);
	rfc3339_from_db(info.received_at, received, sizeof(received));
	m = json_pack("{s:s, s:s, s:s, s:I, s:s}", "id", info.public_id, "received_at", received,
	    "envelope_from", info.envelope_from, "size", (json_int_t)info.size, "sha256", info.sha256);
	j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "result", "valid", "token_id", c.jti,
	    "role", info.role, "address", info.address, "issuer", c.iss, "key_id", c.kid, "expires_at", exp,
	    "message", m);
	store_token_info_free(&info);
	reply_json(req, 200, "OK", j);
}

/* --- fetch ---------------------------------------------------------- */

static void fetch_next(struct evhttp_connection *evcon, void *arg);

/* End the reply and forget the fetch. The close callback goes first:
 * ending the reply may close the connection, which would call it. */
static void
fetch_end(struct fetch *f)
{
	if (f->evcon)
		evhttp_connection_set_closecb(f->evcon, NULL, NULL);
	evhttp_send_reply_end(f->req);
	free(f);
}

/* The client went away in the middle: evhttp frees the request. */
static void
fetch_closed(struct evhttp_connection *evcon, void *arg)
{
	struct fetch *f = arg;

	log_info("event=api_fetch_aborted msgid=%s sent=%lld size=%lld", f->msgid, (long long)f->off, (long long)f->size);
	/* On EOF or timeout evhttp detaches a reply still in progress and
	 * leaves it to us: ending a detached request frees it. A request still
	 * attached (evhttp_free at shutdown) is freed by evhttp itself. */
	if (evhttp_request_get_connection(f->req) == NULL)
		evhttp_send_reply_end(f->req);
	f->evcon = NULL;
	free(f);
}

static void
fetch_next(struct evhttp_connection *evcon, void *arg)
{
	struct fetch *f = arg;
	struct evbuffer *buf;
	struct evbuffer_iovec v;
	sqlite3_blob *blob = NULL;
	int n;

	if (f->off >= f->size) {
		fetch_end(f);
		return;
	}
	n = (int)(f->size - f->off < FETCH_CHUNK ? f->size - f->off : FETCH_CHUNK);
	buf = evbuffer_new();
	if (evbuffer_reserve_space(buf, n, &v, 1) < 1 ||
	    sqlite3_blob_open(f->w->db, "main", "message_bodies", "content", f->message_id, 0, &blob) != SQLITE_OK ||
	    sqlite3_blob_read(blob, v.iov_base, n, (int)f->off) != SQLITE_OK) {
		/* Headers with the length are out: all we can do is stop; the
		 * client sees a short body, which Content-Length makes evident. */
		log_err("event=api_fetch_read_failed msgid=%s offset=%lld error=\"%s\"", f->msgid, (long long)f->off,
		    sqlite3_errmsg(f->w->db));
		sqlite3_blob_close(blob);
		evbuffer_free(buf);
		fetch_end(f);
		return;
	}
	sqlite3_blob_close(blob);
	v.iov_len = (size_t)n;
	evbuffer_commit_space(buf, &v, 1);
	f->off += n;
	evhttp_send_reply_chunk_with_cb(f->req, buf, fetch_next, f);
	evbuffer_free(buf);
}

static void
handle_fetch(struct api_worker *w, struct evhttp_request *req)
{
	struct server *srv = w->api->srv;
	struct token_claims c;
	struct store_token_info info;
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	char service[SERVICE_NAME_MAX], peer[64], len[32], etag[70];
	struct fetch *f;

	if (!check_credential(w, req, srv->cfg->http_auth_fetch, service, sizeof(service))) {
		writer_audit(srv->writer, "fetch", "unauthorized", NULL, NULL, peer_of(req, peer, sizeof(peer)));
		return;
	}
	if (!token_gate(w, req, "fetch", service, &c, &info))
		return;
	peer_of(req, peer, sizeof(peer));
	if (!info.has_body) {
		writer_audit(srv->writer, "fetch", "purged", service[0] ? service : NULL, c.jti, peer);
		reply_error(req, 410, "Gone", "purged", "the message body is no longer stored");
		store_token_info_free(&info);
		return;
	}
	STAT_ADD(srv->stats.fetches, 1);
	writer_audit(srv->writer, "fetch", "served", service[0] ? service : NULL, c.jti, peer);
	snprintf(len, sizeof(len), "%lld", (long long)info.size);
	snprintf(etag, sizeof(etag), "\"%s\"", info.sha256);
	evhttp_add_header(oh, "Content-Type", "message/rfc822");
	evhttp_add_header(oh, "Content-Length", len);
	evhttp_add_header(oh, "ETag", etag);
	evhttp_add_header(oh, "X-Submit-Message-Id", info.public_id);
	evhttp_add_header(oh, "Cache-Control", "no-store");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD || info.size == 0) {
		evhttp_send_reply(req, 200, "OK", NULL);
		store_token_info_free(&info);
		return;
	}
	f = xcalloc(1, sizeof(*f));
	f->w = w;
	f->req = req;
	f->evcon = evhttp_request_get_connection(req);
	f->message_id = info.message_id;
	f->size = info.size;
	snprintf(f->msgid, sizeof(f->msgid), "%s", info.public_id);
	store_token_info_free(&info);
	/* With Content-Length set, evhttp sends the chunks as they are, not
	 * in chunked transfer encoding. */
	evhttp_connection_set_closecb(f->evcon, fetch_closed, f);
	evhttp_send_reply_start(req, 200, "OK");
	fetch_next(f->evcon, f);
}

/* --- keys, health, metrics ------------------------------------------- */

static void
handle_keys(struct api_worker *w, struct evhttp_request *req)
{
	char service[SERVICE_NAME_MAX];
	json_t *arr;

	if (!check_credential(w, req, w->api->srv->cfg->http_auth_keys, service, sizeof(service)))
		return;
	store_keys_refresh(w->db, &w->keys);
	arr = json_array();
	for (size_t i = 0; i < w->keys.ring.n; i++) {
		const struct token_key *k = &w->keys.ring.keys[i];
		char paserk[PASERK_K4_PUBLIC_LEN + 1], hex[65], created[21], retired[21];
		paserk_k4_public(k->pk, paserk);
		hex_encode(k->pk, PASETO_PK_BYTES, hex);
		token_time_format(k->created_at, created);
		token_time_format(k->retired_at, retired);
		json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "key_id", k->kid,
		    "public_key", paserk, "public_key_hex", hex, "state", k->state == TOKEN_KEY_ACTIVE ? "active" : "retired",
		    "created_at", created, "retired_at", k->retired_at ? json_string(retired) : json_null()));
	}
	reply_json(req, 200, "OK", json_pack("{s:o}", "keys", arr));
}

static void
handle_health(struct api_worker *w, struct evhttp_request *req)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(w->db, "SELECT count(*) FROM signing_keys", -1, &st, NULL);

	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st) == SQLITE_ROW ? SQLITE_OK : SQLITE_ERROR;
		sqlite3_finalize(st);
	}
	if (rc != SQLITE_OK) {
		reply_json(req, 503, "Service Unavailable", json_pack("{s:s, s:s}", "status", "unavailable",
		    "error", sqlite3_errmsg(w->db)));
		return;
	}
	reply_json(req, 200, "OK", json_pack("{s:s}", "status", "ok"));
}

static void
handle_metrics(struct api_worker *w, struct evhttp_request *req)
{
	struct server *srv = w->api->srv;
	struct server_stats *s = &srv->stats;
	struct evbuffer *b;
	char service[SERVICE_NAME_MAX];
	uint64_t cum = 0;

	if (!check_credential(w, req, srv->cfg->http_auth_metrics, service, sizeof(service)))
		return;
	b = evbuffer_new();
	evbuffer_add_printf(b,
	    "# HELP submitd_sessions SMTP sessions open now.\n# TYPE submitd_sessions gauge\nsubmitd_sessions %zu\n"
	    "# HELP submitd_sessions_total SMTP sessions accepted since start.\n# TYPE submitd_sessions_total counter\n"
	    "submitd_sessions_total %llu\n"
	    "# HELP submitd_messages_accepted_total Messages committed and answered 250.\n"
	    "# TYPE submitd_messages_accepted_total counter\nsubmitd_messages_accepted_total %llu\n"
	    "# HELP submitd_messages_refused_total Messages refused at the end of data, by reason.\n"
	    "# TYPE submitd_messages_refused_total counter\n",
	    STAT_GET(srv->nsessions), (unsigned long long)STAT_GET(s->sessions_total), (unsigned long long)STAT_GET(s->messages_accepted));
	for (int r = 0; r < REFUSE_COUNT; r++)
		evbuffer_add_printf(b, "submitd_messages_refused_total{reason=\"%s\"} %llu\n",
		    refuse_reason_name((enum refuse_reason)r), (unsigned long long)STAT_GET(s->messages_refused[r]));
	evbuffer_add_printf(b,
	    "# HELP submitd_bytes_accepted_total Octets of accepted message bodies.\n"
	    "# TYPE submitd_bytes_accepted_total counter\nsubmitd_bytes_accepted_total %llu\n"
	    "# HELP submitd_tokens_issued_total Tokens issued in 2.1.13 replies.\n"
	    "# TYPE submitd_tokens_issued_total counter\nsubmitd_tokens_issued_total %llu\n"
	    "# HELP submitd_tokens_verified_total Tokens found valid by the API.\n"
	    "# TYPE submitd_tokens_verified_total counter\nsubmitd_tokens_verified_total %llu\n"
	    "# HELP submitd_tokens_refused_total Tokens refused by the API, by result.\n"
	    "# TYPE submitd_tokens_refused_total counter\n",
	    (unsigned long long)STAT_GET(s->bytes_accepted), (unsigned long long)STAT_GET(s->tokens_issued),
	    (unsigned long long)STAT_GET(s->tokens_verified));
	for (int r = TOKEN_MALFORMED; r <= TOKEN_WRONG_ADDRESS; r++)
		evbuffer_add_printf(b, "submitd_tokens_refused_total{result=\"%s\"} %llu\n",
		    token_status_name((enum token_status)r), (unsigned long long)STAT_GET(s->tokens_refused[r]));
	evbuffer_add_printf(b,
	    "# HELP submitd_fetches_total Saved copies served by the API.\n"
	    "# TYPE submitd_fetches_total counter\nsubmitd_fetches_total %llu\n"
	    "# HELP submitd_auth_total SMTP AUTH attempts, by result.\n# TYPE submitd_auth_total counter\n"
	    "submitd_auth_total{result=\"ok\"} %llu\nsubmitd_auth_total{result=\"failed\"} %llu\n"
	    "# HELP submitd_writer_queue_depth Messages waiting for their commit.\n"
	    "# TYPE submitd_writer_queue_depth gauge\nsubmitd_writer_queue_depth %zu\n"
	    "# HELP submitd_commit_latency_seconds From end of data to committed.\n"
	    "# TYPE submitd_commit_latency_seconds histogram\n",
	    (unsigned long long)STAT_GET(s->fetches), (unsigned long long)STAT_GET(s->auth_ok), (unsigned long long)STAT_GET(s->auth_failed),
	    writer_depth(srv->writer));
	for (int i = 0; i < COMMIT_BUCKETS; i++) {
		cum += STAT_GET(s->commit_bucket[i]);
		evbuffer_add_printf(b, "submitd_commit_latency_seconds_bucket{le=\"%g\"} %llu\n", commit_bucket_le[i],
		    (unsigned long long)cum);
	}
	evbuffer_add_printf(b, "submitd_commit_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "submitd_commit_latency_seconds_sum %.6f\nsubmitd_commit_latency_seconds_count %llu\n",
	    (unsigned long long)STAT_GET(s->commit_count), (double)STAT_GET(s->commit_sum_us) / 1e6, (unsigned long long)STAT_GET(s->commit_count));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* --- routing --------------------------------------------------------- */

enum { M_GET = 1, M_HEAD = 2, M_POST = 4 };

static const struct route {
	const char *path;
	unsigned methods;
	const char *allow;
	void (*handler)(struct api_worker *, struct evhttp_request *);
} routes[] = {
	{ "/v1/verify", M_GET | M_POST, "GET, POST", handle_verify },
	{ "/v1/message", M_GET | M_HEAD, "GET, HEAD", handle_fetch },
	{ "/v1/keys", M_GET, "GET", handle_keys },
	{ "/healthz", M_GET, "GET", handle_health },
	{ "/metrics", M_GET, "GET", handle_metrics },
};

static void
dispatch(struct evhttp_request *req, void *arg)
{
	struct api_worker *w = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	unsigned m = cmd == EVHTTP_REQ_GET ? M_GET : cmd == EVHTTP_REQ_HEAD ? M_HEAD : cmd == EVHTTP_REQ_POST ? M_POST : 0;

	if (path == NULL || *path == '\0')
		path = "/";
	for (size_t i = 0; i < ARRAY_SIZE(routes); i++) {
		if (strcmp(path, routes[i].path) != 0)
			continue;
		if ((routes[i].methods & m) == 0) {
			evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", routes[i].allow);
			reply_error(req, 405, "Method Not Allowed", NULL, "method not allowed");
			return;
		}
		routes[i].handler(w, req);
		return;
	}
	reply_error(req, 404, "Not Found", NULL, "not found");
}

/* The SMTP loop swaps srv->ssl_ctx on SIGHUP; the SSL takes its own
 * reference to the context, so the lock is only held for SSL_new. */
static struct bufferevent *
tls_bevcb(struct event_base *base, void *arg)
{
	struct api_worker *w = arg;
	struct server *srv = w->api->srv;
	SSL *ssl;

	pthread_mutex_lock(&srv->ssl_lock);
	ssl = SSL_new(srv->ssl_ctx);
	pthread_mutex_unlock(&srv->ssl_lock);
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

int
http_api_check_config(const struct config *cfg, char *err, size_t errlen)
{
	char *copy = xstrdup(cfg->http_listen), *save = NULL, *tok;
	int rc = 0;

	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		struct sockaddr_storage ss;
		socklen_t sl;
		if (netaddr_parse_listen(tok, &ss, &sl) == -1) {
			snprintf(err, errlen, "http.listen: not an address:port (IPv6 as [addr]:port): \"%s\"", tok);
			rc = -1;
			break;
		}
		if (!cfg->http_auth_fetch && !netaddr_is_loopback((struct sockaddr *)&ss)) {
			snprintf(err, errlen, "http.auth_fetch=false is only allowed on loopback listeners, "
			    "and http.listen has %s", tok);
			rc = -1;
			break;
		}
	}
	free(copy);
	return rc;
}

static int
worker_init(struct api_worker *w, struct http_api *api, unsigned index, char *err, size_t errlen)
{
	struct server *srv = api->srv;
	struct config *cfg = srv->cfg;

	w->api = api;
	w->index = index;
	keyring_init(&w->keys.ring);
	w->db = store_open(srv->db_path, err, errlen);
	if (w->db == NULL)
		return -1;
	if (store_keys_init(w->db, &w->keys, err, errlen) == -1)
		return -1;
	w->base = event_base_new();
	if (w->base == NULL) {
		snprintf(err, errlen, "cannot create the API's event loop");
		return -1;
	}
	w->http = evhttp_new(w->base);
	evhttp_set_gencb(w->http, dispatch, w);
	evhttp_set_max_headers_size(w->http, (ev_ssize_t)cfg->http_max_header_size);
	evhttp_set_max_body_size(w->http, (ev_ssize_t)cfg->http_max_body_size);
	evhttp_set_timeout(w->http, (int)cfg->http_timeout);
	/* Unknown methods get 405 from dispatch; evhttp refuses the exotic ones. */
	evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	if (cfg->http_tls)
		evhttp_set_bevcb(w->http, tls_bevcb, w);
	return 0;
}

static void
worker_free(struct api_worker *w)
{
	if (w->http)
		evhttp_free(w->http);
	if (w->base)
		event_base_free(w->base);
	sqlite3_finalize(w->token_stmt);
	store_keys_free(&w->keys);
	store_close(&w->db);
}

static void *
worker_main(void *arg)
{
	struct api_worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "sd-http%u", w->index);
	pthread_setname_np(pthread_self(), name);
	event_base_dispatch(w->base);
	return NULL;
}

/*
 * Each thread listens on a socket of its own, all bound to the same
 * address with SO_REUSEPORT, so the kernel spreads new connections over
 * the threads. One shared socket would not: libevent accepts until the
 * queue is empty, and the first thread to wake takes a whole burst of
 * connections (keep-alive clients then stay on one core).
 */
static int
listen_on(struct http_api *api, const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	if (netaddr_parse_listen(spec, &ss, &sl) == -1) {
		snprintf(err, errlen, "http.listen: not an address:port: \"%s\"", spec);
		return -1;
	}
	for (size_t i = 0; i < api->nworkers; i++) {
		evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1 || evutil_make_listen_socket_reuseable(fd) == -1 ||
		    evutil_make_listen_socket_reuseable_port(fd) == -1 ||
		    bind(fd, (struct sockaddr *)&ss, sl) == -1 || listen(fd, 128) == -1) {
			snprintf(err, errlen, "http.listen %s: cannot listen: %s", spec, strerror(errno));
			if (fd != -1)
				close(fd);
			return -1;
		}
		/* From here evhttp owns fd and closes it when freed. */
		if (evhttp_accept_socket_with_handle(api->workers[i].http, fd) == NULL) {
			snprintf(err, errlen, "http.listen %s: cannot listen", spec);
			close(fd);
			return -1;
		}
	}
	return 0;
}

int
http_api_start(struct server *srv, char *err, size_t errlen)
{
	struct config *cfg = srv->cfg;
	struct http_api *api;
	char *copy, *save = NULL, *tok;

	if (cfg->http_listen[0] == '\0')
		return 0;
	if (http_api_check_config(cfg, err, errlen) == -1)
		return -1;
	api = xcalloc(1, sizeof(*api));
	api->srv = srv;
	api->nworkers = (size_t)cfg->http_threads;
	api->workers = xcalloc(api->nworkers, sizeof(*api->workers));
	srv->http = api;
	for (size_t i = 0; i < api->nworkers; i++)
		if (worker_init(&api->workers[i], api, (unsigned)i, err, errlen) == -1) {
			http_api_stop(srv);
			return -1;
		}

	copy = xstrdup(cfg->http_listen);
	for (tok = strtok_r(copy, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		if (listen_on(api, tok, err, errlen) == -1) {
			free(copy);
			http_api_stop(srv);
			return -1;
		}
		log_info("event=listening address=%s service=http tls=%s threads=%zu", tok, cfg->http_tls ? "yes" : "no",
		    api->nworkers);
	}
	free(copy);
	for (size_t i = 0; i < api->nworkers; i++) {
		struct api_worker *w = &api->workers[i];
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			snprintf(err, errlen, "cannot start API thread %zu", i);
			http_api_stop(srv);
			return -1;
		}
		w->started = true;
	}
	return 0;
}

void
http_api_stop(struct server *srv)
{
	struct http_api *api = srv->http;

	if (api == NULL)
		return;
	/* loopexit, unlike loopbreak, also stops a loop that has not begun. */
	for (size_t i = 0; i < api->nworkers; i++)
		if (api->workers[i].started)
			event_base_loopexit(api->workers[i].base, NULL);
	for (size_t i = 0; i < api->nworkers; i++)
		if (api->workers[i].started)
			pthread_join(api->workers[i].thread, NULL);
	for (size_t i = 0; i < api->nworkers; i++)
		worker_free(&api->workers[i]);
	free(api->workers);
	free(api);
	srv->http = NULL;
}
