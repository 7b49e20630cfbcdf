/*
 * tls_conn.c: see tls_conn.h.
 */
#include "server/net/tls_conn.h"

#include <stdio.h>

#include <event2/buffer.h>
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
	if (role == TLS_CONN_SERVER && evbuffer_get_length(bufferevent_get_output(plain)) == 0) {
		/* The server takes the socket over instead of filtering plain:
		 * one bufferevent less per session (about 2 KB of an idle
		 * session), and OpenSSL reads and writes the socket itself, so
		 * a reply is encrypted straight into it instead of through a
		 * second buffer and write event. plain has nothing left to send
		 * (the 220 went out), so it can go. */
		evutil_socket_t fd = bufferevent_getfd(plain);
		tls = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (tls == NULL) {
			snprintf(err, errlen, "cannot start TLS on the connection");
			return NULL;
		}
		bufferevent_setfd(plain, -1);  /* freeing plain must not close the socket */
		bufferevent_free(plain);
		return tls;
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

void
tls_conn_error(struct bufferevent *bev, short what, const char *peer, char *why, size_t whylen)
{
	unsigned long e = bufferevent_get_openssl_error(bev);

	if (e) {
		char buf[200];
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(why, whylen, "TLS error: %s", buf);
	} else if (what & BEV_EVENT_EOF) {
		snprintf(why, whylen, "connection closed by %s", peer);
	} else {
		int err = EVUTIL_SOCKET_ERROR();
		int dnserr = bufferevent_socket_get_dns_error(bev);
		snprintf(why, whylen, "connection failed: %s",
		    dnserr ? evutil_gai_strerror(dnserr) : err ? evutil_socket_error_to_string(err) : "unknown");
	}
}
