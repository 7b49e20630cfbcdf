/*
 * tls_conn.h: TLS on a connection that began in plain text (STARTTLS, RFC
 * 3207). Both ends of the server use it: the submission session accepting
 * a client's STARTTLS, and the relay starting TLS towards the next hop.
 * The plain bufferevent stays underneath; an OpenSSL filter bufferevent
 * goes on top of it and becomes the one to read, write and free.
 */
#ifndef SUBMITD_TLS_CONN_H
#define SUBMITD_TLS_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

enum tls_conn_role {
	TLS_CONN_SERVER,      /* we accept: the session after its 220 to STARTTLS */
	TLS_CONN_CLIENT,      /* we connect: the relay after the next hop's 220 */
};

/*
 * Start TLS over plain with a new SSL of ctx. For a client, peer_host (may
 * be NULL) is sent as SNI and, with verify, the certificate must chain to
 * ctx's trust store and match peer_host (a name, or an IP address); both
 * are ignored for a server. Returns the new bufferevent, which owns plain
 * and the SSL (freeing it frees them), with deferred callbacks and none
 * set yet; the handshake starts once it is enabled. A server whose plain
 * has nothing left to write gets a bufferevent on the socket itself
 * instead, and plain is freed (the socket is the new one's). NULL with
 * err set on failure: plain is untouched and still the caller's.
 */
struct bufferevent *tls_conn_upgrade(struct event_base *base, struct bufferevent *plain, SSL_CTX *ctx,
    enum tls_conn_role role, const char *peer_host, bool verify, char *err, size_t errlen);

/*
 * Why a client connection's event callback got an error or EOF, in words
 * for a log line and a retry's last error: the TLS error when OpenSSL has
 * one, "connection closed by <peer>" at EOF, else the socket's or the DNS
 * lookup's error. peer names the other end ("the next hop").
 */
void tls_conn_error(struct bufferevent *bev, short what, const char *peer, char *why, size_t whylen);

#endif
