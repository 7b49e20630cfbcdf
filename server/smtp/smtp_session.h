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

struct server;
struct smtp_session;

/* Start a session on an accepted socket; takes ownership of fd. */
void smtp_session_new(struct server *srv, evutil_socket_t fd, const struct sockaddr *sa,
    int salen, bool implicit_tls);

/* Collect the messages the writer finished and answer the sessions
 * waiting for them (on the loop thread). Returns how many committed. */
size_t smtp_session_writer_done(struct server *srv);
/* Collect finished auth work and answer its sessions (event callback). */
void smtp_session_auth_done(evutil_socket_t fd, short what, void *arg);

/* SIGTERM: sessions idle between transactions get 421 and are closed; a
 * session receiving or storing a message finishes it first. */
void smtp_session_drain_all(struct server *srv);
/* Drain deadline passed: close everything now. */
void smtp_session_close_all(struct server *srv);

#endif
