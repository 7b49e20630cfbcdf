/*
 * tls_conn.c: see tls_conn.h.
 */
#include "server/net/tls_conn.h"

#include <stdio.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>

struct bufferevent *
tls_conn_upgrade(struct event_base *base, struct bufferevent *plain, SSL_CTX *ctx, enum tls_conn_role role,
    const char *peer_host, bool verify, char *err, size_t errlen)
{
	SSL *ssl = SSL_new(ctx);
	struct bufferevent *tls;

	if (ssl == NULL) {
		snprintf(err, errlen, "cannot create a TLS connection");
		ERR_clear_error();
		return NULL;
	}
	if (role == TLS_CONN_CLIENT && peer_host != NULL) {
		SSL_set_tlsext_host_name(ssl, peer_host);
		if (verify) {
			SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
			SSL_set1_host(ssl, peer_host);
		}
	}
	tls = bufferevent_openssl_filter_new(base, plain, ssl,
	    role == TLS_CONN_CLIENT ? BUFFEREVENT_SSL_CONNECTING : BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL) {
		/* No SSL_free: with BEV_OPT_CLOSE_ON_FREE libevent frees the SSL
		 * on this path itself. Its failures are allocations made before
		 * it takes plain over, so plain is still ours. */
		snprintf(err, errlen, "cannot start TLS on the connection");
		return NULL;
	}
	return tls;
}
