/*
 * api_delivery.c: GET/POST /v1/status, where a token's message stands with
 * the relay (docs/api.md section 5.7). The token is the credential: it is
 * checked exactly as for /v1/verify (api_token_gate, same refusals), and
 * the answer holds delivery state only, for the recipients the token
 * covers (db/delivery.h decides which). No service credential is needed;
 * one that is sent is checked, as everywhere.
 */
#include "server/api/http_api_internal.h"

#include "db/delivery.h"
#include "db/writer.h"
#include "server/base/log.h"

void
api_handle_status(struct api_worker *w, struct evhttp_request *req)
{
	struct server *srv = w->api->srv;
	struct token_claims c;
	struct store_token_info info;
	struct delivery_status ds;
	char service[SERVICE_NAME_MAX], err[256];
	int found;

	if (!api_check_credential(w, req, false, service, sizeof(service))) {
		char peer[64];
		writer_audit(srv->writer, "verify", "unauthorized", NULL, NULL, api_peer_of(req, peer, sizeof(peer)));
		return;
	}
	if (api_cluster_route(w, req, "status", service))
		return;             /* another node's token: referred to its node */
	if (!api_token_gate(w, req, "status", service, &c, &info))
		return;
	store_token_info_free(&info);
	found = delivery_status_get(w->db, c.jti, &ds, err, sizeof(err));
	if (found == -1) {
		log_err("event=http_db_failed error=\"%s\"", err);
		api_reply_error(req, 503, "Service Unavailable", NULL, "the database cannot be read");
		return;
	}
	if (found == 0) {
		/* Retention took the token's rows since the check: as the
		 * check itself would now answer. */
		api_reply_error(req, 410, "Gone", "expired", "the token has expired");
		return;
	}
	api_reply_json(req, 200, "OK", delivery_status_json(&ds, srv->cfg->relay_host[0] != '\0'));
	delivery_status_free(&ds);
}
