/*
 * api_status.c: the endpoints about the server itself: the public keys
 * that verify its tokens, its health, and its counters for Prometheus.
 */
#include "server/api/http_api_internal.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "db/writer.h"
#include "server/base/util.h"
#include "tokens/token.h"

static json_t *
key_json(const struct token_key *k, const char *node)
{
	char paserk[PASERK_K4_PUBLIC_LEN + 1], hex[65], created[21], retired[21];

	paserk_k4_public(k->pk, paserk);
	hex_encode(k->pk, PASETO_PK_BYTES, hex);
	token_time_format(k->created_at, created);
	token_time_format(k->retired_at, retired);
	return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:s}", "key_id", k->kid,
	    "public_key", paserk, "public_key_hex", hex, "state", k->state == TOKEN_KEY_ACTIVE ? "active" : "retired",
	    "created_at", k->created_at ? json_string(created) : json_null(),
	    "retired_at", k->retired_at ? json_string(retired) : json_null(), "node", node);
}

/* The whole cluster's keys, each with its node, so that a verifier needs
 * one URL; ?local=1 lists this node's alone (what the peers fetch: no
 * node passes on what it learnt from another). */
void
api_handle_keys(struct api_worker *w, struct evhttp_request *req)
{
	const struct config *cfg = w->api->srv->cfg;
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct evkeyvalq q = { 0 };
	const char *local = NULL;
	char service[SERVICE_NAME_MAX];
	json_t *arr;

	if (!api_check_credential(w, req, cfg->http_auth_keys, service, sizeof(service)))
		return;
	if (query && evhttp_parse_query_str(query, &q) == 0)
		local = evhttp_find_header(&q, "local");
	store_keys_refresh(w->db, &w->keys);
	arr = json_array();
	for (size_t i = 0; i < w->keys.ring.n; i++)
		json_array_append_new(arr, key_json(&w->keys.ring.keys[i], cfg->tokens_issuer));
	if (local == NULL || strcmp(local, "1") != 0) {
		peer_ring_refresh(w->db, &w->peers);
		for (size_t i = 0; i < w->peers.ring.n; i++)
			/* only the nodes this one would verify for */
			if (peer_list_find(&cfg->cluster_peer_list, w->peers.node[i]) != NULL)
				json_array_append_new(arr, key_json(&w->peers.ring.keys[i], w->peers.node[i]));
	}
	evhttp_clear_headers(&q);
	api_reply_json(req, 200, "OK", json_pack("{s:o}", "keys", arr));
}

void
api_handle_health(struct api_worker *w, struct evhttp_request *req)
{
	if (store_probe(w->db) != SQLITE_OK) {
		api_reply_json(req, 503, "Service Unavailable", json_pack("{s:s, s:s}", "status", "unavailable",
		    "error", sqlite3_errmsg(w->db)));
		return;
	}
	api_reply_json(req, 200, "OK", json_pack("{s:s}", "status", "ok"));
}

void
api_handle_metrics(struct api_worker *w, struct evhttp_request *req)
{
	struct server *srv = w->api->srv;
	struct server_stats *s = &srv->stats;
	struct evbuffer *b;
	char service[SERVICE_NAME_MAX];
	uint64_t cum = 0;

	if (!api_check_credential(w, req, srv->cfg->http_auth_metrics, service, sizeof(service)))
		return;
	b = evbuffer_new();
	evbuffer_add_printf(b,
	    "# HELP submitd_sessions SMTP sessions open now.\n# TYPE submitd_sessions gauge\nsubmitd_sessions %zu\n"
	    "# HELP submitd_sessions_total SMTP sessions accepted since start.\n# TYPE submitd_sessions_total counter\n"
	    "submitd_sessions_total %llu\n"
	    "# HELP submitd_messages_accepted_total Messages committed and answered 250.\n"
	    "# TYPE submitd_messages_accepted_total counter\nsubmitd_messages_accepted_total %llu\n"
	    "# HELP submitd_duplicates_total Resubmitted messages answered 250 for the stored copy, not stored again.\n"
	    "# TYPE submitd_duplicates_total counter\nsubmitd_duplicates_total %llu\n"
	    "# HELP submitd_messages_refused_total Messages refused at the end of data, by reason.\n"
	    "# TYPE submitd_messages_refused_total counter\n",
	    STAT_GET(srv->nsessions), (unsigned long long)STAT_GET(s->sessions_total), (unsigned long long)STAT_GET(s->messages_accepted),
	    (unsigned long long)STAT_GET(s->duplicates));
	for (int r = 0; r < REFUSE_COUNT; r++)
		evbuffer_add_printf(b, "submitd_messages_refused_total{reason=\"%s\"} %llu\n",
		    refuse_reason_name((enum refuse_reason)r), (unsigned long long)STAT_GET(s->messages_refused[r]));
	/* the SMTP event loops (smtp.threads): where the sessions landed */
	evbuffer_add_printf(b, "# HELP submitd_smtp_sessions_total SMTP sessions accepted since start, by event loop.\n"
	    "# TYPE submitd_smtp_sessions_total counter\n");
	for (unsigned i = 0; i < s->smtp_loops && i < SMTP_LOOPS_MAX; i++)
		evbuffer_add_printf(b, "submitd_smtp_sessions_total{loop=\"%u\"} %llu\n", i,
		    (unsigned long long)STAT_GET(s->loop_sessions[i]));
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
	evbuffer_add_printf(b,
	    "# HELP submitd_sent_filed_total Sender's copies filed into a Sent mailbox over IMAP.\n"
	    "# TYPE submitd_sent_filed_total counter\nsubmitd_sent_filed_total %llu\n"
	    "# HELP submitd_sent_retried_total Filing tries that failed and wait for another.\n"
	    "# TYPE submitd_sent_retried_total counter\nsubmitd_sent_retried_total %llu\n"
	    "# HELP submitd_sent_failed_total Filing jobs given up (lifetime passed, copy purged).\n"
	    "# TYPE submitd_sent_failed_total counter\nsubmitd_sent_failed_total %llu\n"
	    "# HELP submitd_sent_pending Filing jobs not yet done, as of the filer's last scan.\n"
	    "# TYPE submitd_sent_pending gauge\nsubmitd_sent_pending %llu\n",
	    (unsigned long long)STAT_GET(s->sent_filed), (unsigned long long)STAT_GET(s->sent_retried),
	    (unsigned long long)STAT_GET(s->sent_failed), (unsigned long long)STAT_GET(s->sent_pending));
	evbuffer_add_printf(b,
	    "# HELP submitd_dkim_signed_total Accepted messages signed with DKIM.\n"
	    "# TYPE submitd_dkim_signed_total counter\nsubmitd_dkim_signed_total %llu\n"
	    "# HELP submitd_dkim_failed_total Accepted messages whose DKIM signing failed (relayed unsigned).\n"
	    "# TYPE submitd_dkim_failed_total counter\nsubmitd_dkim_failed_total %llu\n",
	    (unsigned long long)STAT_GET(s->dkim_signed), (unsigned long long)STAT_GET(s->dkim_failed));
	evbuffer_add_printf(b,
	    "# HELP submitd_limit_refused_total MAIL or RCPT refused with 450 4.7.1 by a sending limit.\n"
	    "# TYPE submitd_limit_refused_total counter\n");
	for (int k = 0; k < LIMIT_COUNT; k++)
		evbuffer_add_printf(b, "submitd_limit_refused_total{limit=\"%s\"} %llu\n",
		    limit_kind_name((enum limit_kind)k), (unsigned long long)STAT_GET(s->limits_refused[k]));
	evbuffer_add_printf(b,
	    "# HELP submitd_auth_disabled_total AUTH refused because the login is disabled.\n"
	    "# TYPE submitd_auth_disabled_total counter\nsubmitd_auth_disabled_total %llu\n",
	    (unsigned long long)STAT_GET(s->auth_disabled));
	evbuffer_add_printf(b,
	    "# HELP submitd_smtp_pipelining_refused_total Unauthenticated SMTP clients disconnected for not waiting for a reply (smtp.forbid_unauth_pipelining).\n"
	    "# TYPE submitd_smtp_pipelining_refused_total counter\nsubmitd_smtp_pipelining_refused_total %llu\n",
	    (unsigned long long)STAT_GET(s->pipelining_refused));
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}
