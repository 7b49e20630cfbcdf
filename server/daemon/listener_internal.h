/*
 * listener_internal.h: what the two files of the listeners share.
 *
 *   listener.c        the listening sockets, accept, the connection limits
 *   listener_proxy.c  a connection from smtp.proxy_networks: its PROXY
 *                     header, read before the greeting (or the TLS
 *                     handshake), then the session with the client's address
 */
#ifndef SUBMITD_LISTENER_INTERNAL_H
#define SUBMITD_LISTENER_INTERNAL_H

#include <event2/util.h>

#include "server/runtime/server.h"
#include "server/smtp/smtp_session.h"

/* listener.c: apply the per-address limit to the client and start its
 * session, or refuse it (421 on a plain listener, the close alone on
 * implicit TLS). Takes fd and its place in server.max_connections. */
void listener_admit(struct listener *li, evutil_socket_t fd, const struct smtp_peer *peer);
/* Refuse fd: the line (plain listeners only), then the close. */
void listener_refuse(evutil_socket_t fd, const char *line, bool implicit_tls);

/* listener_proxy.c: wait for fd's PROXY header (from the load balancer at
 * sa), then listener_admit the client it names. Takes fd and its place in
 * server.max_connections. */
void listener_proxy_start(struct listener *li, evutil_socket_t fd, const struct sockaddr *sa, int salen);
/* Shutdown: close loop's connections still sending their header. */
void listener_proxy_free_all(struct smtp_loop *loop);

#endif
