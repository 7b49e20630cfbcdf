/*
 * smtp_session.h: one SMTP submission dialogue (RFC 5321, RFC 6409) on a
 * bufferevent, plain, STARTTLS-upgraded or implicit TLS. The session owns
 * its transaction (envelope and body) until it hands the message to the
 * writer; it answers 250 only when the writer reports the commit.
 */
#ifndef SUBMITD_SMTP_SESSION_H
#define SUBMITD_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <event2/util.h>

struct auth_request;
struct server;
struct smtp_loop;
struct smtp_session;
struct writer_msg;

/*
 * What a session needs of the rest of the process beyond struct server:
 * somewhere to commit messages and someone to check passwords. The daemon
 * fills it with the writer and the auth pool, a test with stubs; it is
 * srv->smtp_backend. Both work off the loop and answer later: what comes
 * back is passed, on the session's own loop (writer_msg.loop,
 * auth_request.loop), to smtp_session_writer_done and
 * smtp_session_auth_done.
 */
struct smtp_backend {
	void *ctx;
	/* Commit m; it is the backend's until handed back. */
	void (*submit)(void *ctx, struct writer_msg *m);
	/* Check r's login and password; r is the backend's until handed back. */
	void (*authenticate)(void *ctx, struct auth_request *r);
};

/* Start a session on loop (called on its thread) for an accepted socket.
 * It takes fd and the connection's counts the caller took
 * (server_conn_take, server_conn_take_ip for the client's address), and
 * gives the counts back when it ends (server_conn_release). */
void smtp_session_new(struct smtp_loop *loop, evutil_socket_t fd, const struct sockaddr *sa,
    int salen, bool implicit_tls);

/* Who is at the other end of a connection that came through a load
 * balancer (smtp.proxy_networks), as its PROXY header said. */
struct smtp_peer {
	const struct sockaddr *client;     /* the client: its address everywhere */
	socklen_t client_len;
	const struct sockaddr *local;      /* what it connected to; NULL: the socket's own */
	socklen_t local_len;
	const char *proxy;                 /* the load balancer's address, for the logs */
};
/* smtp_session_new for such a connection: the header was read off fd. */
void smtp_session_new_proxied(struct smtp_loop *loop, evutil_socket_t fd, const struct smtp_peer *peer,
    bool implicit_tls);

/* The messages the backend finished for loop's sessions (a list linked
 * by next, oldest first, each with m->loop == loop's index), on loop's
 * thread: answer the sessions waiting for them and free them. Returns how
 * many committed something new to relay or file (not the duplicates). */
size_t smtp_session_writer_done(struct smtp_loop *loop, struct writer_msg *done);
/* The password checks the backend finished for loop's sessions (a list
 * linked by next), on loop's thread: answer their sessions, free them. */
void smtp_session_auth_done(struct smtp_loop *loop, struct auth_request *done);

/* SIGTERM, on loop's thread (loop->draining set): its sessions idle
 * between transactions get 421 and are closed; a session receiving or
 * storing a message finishes it first. */
void smtp_session_drain_all(struct smtp_loop *loop);
/* Drain deadline passed or shutdown: close loop's sessions now. */
void smtp_session_close_all(struct smtp_loop *loop);

#endif
