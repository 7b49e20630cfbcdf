/*
 * api_tokens.c: the endpoints about a token: verify (is it ours, valid,
 * and what does it refer to) and fetch (the saved copy of the message).
 *
 * Tokens travel in the Submit-Token header or a JSON body, never in the
 * URL, so they stay out of access logs and proxies' caches. Token results
 * map to distinct statuses so a caller can act on the status alone.
 *
 * A fetch streams the body: it reads one chunk of the blob, hands it to
 * evhttp, and reads the next when that chunk has been written to the
 * socket, so memory per fetch is one chunk whatever the message size.
 */
#include "server/api/http_api_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "db/bodies.h"
#include "db/writer.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "tokens/token.h"

#define FETCH_CHUNK (64 * 1024)
#define TOKEN_INPUT_MAX 4096

struct fetch {
	struct api_worker *w;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	int64_t message_id;
	int64_t size, off;
	char msgid[32];
};

int
api_token_input(struct evhttp_request *req, char *token, size_t tlen, char *addr, size_t alen, const char **why)
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

void
api_token_status_reply(struct evhttp_request *req, enum token_status st)
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
	api_reply_error(req, map[st].code, map[st].reason, token_status_name(st), map[st].text);
}

/* "YYYY-MM-DD HH:MM:SS.sss" -> "YYYY-MM-DDTHH:MM:SS.sssZ" */
static void
rfc3339_from_db(const char *db, char *out, size_t len)
{
	snprintf(out, len, "%.10sT%.12sZ", db, strlen(db) > 11 ? db + 11 : "00:00:00");
}

bool
api_token_gate(struct api_worker *w, struct evhttp_request *req, const char *action, const char *service,
    struct token_claims *c, struct store_token_info *info)
{
	struct server *srv = w->api->srv;
	/* audit_log.action knows verify and fetch: a status request is
	 * audited as the verification it begins with. */
	const char *audited = strcmp(action, "fetch") == 0 ? "fetch" : "verify";
	char token[TOKEN_INPUT_MAX + 1], addr[1024], peer[64], shorttok[LOG_TOKEN_SHORT];
	const char *why = NULL;
	struct store_token_check k = { .db = w->db, .stmt = &w->token_stmt };
	enum token_status st;
	bool signed_valid;
	int rc;

	api_peer_of(req, peer, sizeof(peer));
	rc = api_token_input(req, token, sizeof(token), addr, sizeof(addr), &why);
	if (rc != 0) {
		const char *result = rc == -3 ? "missing_token" : rc == -2 ? "bad_request" : "malformed";
		api_reply_error(req, 400, "Bad Request", result, why);
		writer_audit(srv->writer, audited, result, service[0] ? service : NULL, NULL, peer);
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
		writer_audit(srv->writer, audited, "purged", service[0] ? service : NULL, c->jti, peer);
		api_reply_error(req, 410, "Gone", "purged", "the saved copy is no longer stored");
		store_token_info_free(&k.info);
		return false;
	}
	if (k.found == -1)
		log_err("event=http_db_failed error=\"%s\"", sqlite3_errmsg(w->db));
	log_info("event=api_%s result=%s token=%s service=%s ip=%s", action, token_status_name(st),
	    log_token_short(shorttok, token), service[0] ? service : "-", peer);
	if (st != TOKEN_VALID) {
		STAT_ADD(srv->stats.tokens_refused[st], 1);
		writer_audit(srv->writer, audited, token_status_name(st), service[0] ? service : NULL,
		    c->jti[0] ? c->jti : NULL, peer);
		api_token_status_reply(req, st);
		store_token_info_free(&k.info);
		return false;
	}
	STAT_ADD(srv->stats.tokens_verified, 1);
	*info = k.info;             /* the caller frees it */
	return true;
}

void
api_handle_verify(struct api_worker *w, struct evhttp_request *req)
{
	struct token_claims c;
	struct store_token_info info;
	char service[SERVICE_NAME_MAX], exp[21], received[64];
	struct api_json j;

	if (!api_check_credential(w, req, w->api->srv->cfg->http_auth_verify, service, sizeof(service))) {
		char peer[64];
		writer_audit(w->api->srv->writer, "verify", "unauthorized", NULL, NULL, api_peer_of(req, peer, sizeof(peer)));
		return;
	}
	if (api_cluster_route(w, req, "verify", service))
		return;             /* another node's token: asked of its node */
	if (!api_token_gate(w, req, "verify", service, &c, &info))
		return;
	token_time_format(c.exp, exp);
	rfc3339_from_db(info.received_at, received, sizeof(received));
	api_json_begin(&j);
	api_json_str(&j, "result", "valid");
	api_json_str(&j, "token_id", c.jti);
	api_json_str(&j, "role", info.role);
	api_json_str(&j, "address", info.address);
	api_json_str(&j, "issuer", c.iss);
	api_json_str(&j, "key_id", c.kid);
	api_json_str(&j, "expires_at", exp);
	api_json_open(&j, "message");
	api_json_str(&j, "id", info.public_id);
	api_json_str(&j, "received_at", received);
	api_json_str(&j, "envelope_from", info.envelope_from);
	api_json_int(&j, "size", (long long)info.size);
	api_json_str(&j, "sha256", info.sha256);
	api_json_close(&j);
	store_token_info_free(&info);
	api_json_reply(req, 200, "OK", &j);
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
	char why[200] = "";
	int n;

	if (f->off >= f->size) {
		fetch_end(f);
		return;
	}
	n = (int)(f->size - f->off < FETCH_CHUNK ? f->size - f->off : FETCH_CHUNK);
	buf = evbuffer_new();
	if (evbuffer_reserve_space(buf, n, &v, 1) < 1 ||
	    bodies_open(f->w->db, f->message_id, &blob, why, sizeof(why)) != SQLITE_OK ||
	    sqlite3_blob_read(blob, v.iov_base, n, (int)f->off) != SQLITE_OK) {
		/* Headers with the length are out: all we can do is stop; the
		 * client sees a short body, which Content-Length makes evident. */
		log_err("event=api_fetch_read_failed msgid=%s offset=%lld error=\"%s\"", f->msgid, (long long)f->off,
		    why[0] ? why : sqlite3_errmsg(f->w->db));
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

void
api_handle_fetch(struct api_worker *w, struct evhttp_request *req)
{
	struct server *srv = w->api->srv;
	struct token_claims c;
	struct store_token_info info;
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	char service[SERVICE_NAME_MAX], peer[64], len[32], etag[70];
	struct fetch *f;

	if (!api_check_credential(w, req, srv->cfg->http_auth_fetch, service, sizeof(service))) {
		writer_audit(srv->writer, "fetch", "unauthorized", NULL, NULL, api_peer_of(req, peer, sizeof(peer)));
		return;
	}
	if (api_cluster_route(w, req, "fetch", service))
		return;             /* another node's token: referred to its node */
	if (!api_token_gate(w, req, "fetch", service, &c, &info))
		return;
	api_peer_of(req, peer, sizeof(peer));
	if (!info.has_body) {
		writer_audit(srv->writer, "fetch", "purged", service[0] ? service : NULL, c.jti, peer);
		api_reply_error(req, 410, "Gone", "purged", "the message body is no longer stored");
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
