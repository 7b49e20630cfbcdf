/*
 * dovecot_client.h: submitd as a client of Dovecot's auth service
 * (auth.backend = dovecot), on one event loop (each SMTP loop has its own
 * client; nothing here is shared between them). One persistent connection
 * to a unix_listener of Dovecot's `service auth`, re-established with
 * backoff when it fails; the mechanisms Dovecot lists are kept for EHLO.
 * Each AUTH is one request on that connection, keyed by its id, so that
 * Dovecot's delayed FAIL for one client never holds up another. A
 * request is a struct auth_request of kind AUTH_SASL; every answer
 * (AUTH_CONTINUE, AUTH_OK, AUTH_FAILED, AUTH_TEMPFAIL) goes to done().
 * A request that cannot be sent, is pending when the connection is lost,
 * or outlives the timeout answers AUTH_TEMPFAIL. The client never blocks:
 * connecting to a UNIX socket is immediate or fails at once.
 */
#ifndef SUBMITD_DOVECOT_CLIENT_H
#define SUBMITD_DOVECOT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct auth_request;
struct dovecot_client;

struct dovecot_client_opts {
	struct event_base *base;
	const char *socket_path;
	int64_t timeout_ms;         /* per answer from Dovecot */
	/* An answer for r, on the loop. AUTH_CONTINUE: r->challenge holds
	 * the challenge and r stays the client's (answer it with
	 * dovecot_client_continue). Otherwise r is the callee's to free. The
	 * client never calls done() for a request whose owner is NULL: it
	 * drops such a request itself. */
	void (*done)(void *arg, struct auth_request *r);
	void *done_arg;
	/* The handshake's CPID, 0: getpid(). Dovecot refuses a second
	 * connection with the PID of one it has: a process with several
	 * clients (one per SMTP loop) gives each its own, the loop thread's
	 * id, which no other process or thread holds while it runs. */
	unsigned long pid;
};

/* What the session knows of its connection, for Dovecot's log and its
 * own checks (lip, rip, lport, rport, secured, session). */
struct dovecot_client_conn {
	const char *lip, *rip;
	unsigned lport, rport;
	bool tls;
	uint64_t session_id;
};

/* Start connecting; never fails for want of Dovecot (it retries). */
struct dovecot_client *dovecot_client_start(const struct dovecot_client_opts *o);
/* Close and free everything, pending requests too (without answers). */
void dovecot_client_stop(struct dovecot_client **cp);

/* Has the handshake completed on the current connection? If not, *why_r
 * (may be NULL) says where it stands: "not_connected" or "handshake". */
bool dovecot_client_ready(const struct dovecot_client *c, const char **why_r);
/* The mechanisms to advertise: those of the last completed handshake
 * except the private ones, space separated; "" before the first one. */
const char *dovecot_client_mechanisms(const struct dovecot_client *c);
/* Is mech[0..len) one of them (without regard to case)? */
bool dovecot_client_has_mechanism(const struct dovecot_client *c, const char *mech, size_t len);

/*
 * Send AUTH for r (kind AUTH_SASL, owner set) with mechanism mech and the
 * base64 initial response resp[0..resp_len) (resp NULL: none; "" is an
 * empty one). True: sent, answers come through done(). False: nothing
 * sent (not connected, or the line would not fit); r->why says which and
 * r stays the caller's.
 */
bool dovecot_client_auth(struct dovecot_client *c, struct auth_request *r, const char *mech,
    const char *resp, size_t resp_len, const struct dovecot_client_conn *conn);
enum dovecot_cont {
	DOVECOT_CONT_SENT,          /* the answer comes through done() */
	DOVECOT_CONT_BAD,           /* not base64 text, or too long: nothing sent */
	DOVECOT_CONT_LOST,          /* the connection went meanwhile: a temporary failure */
};
/* The client's base64 answer to r's challenge. Unless SENT, r stays the
 * caller's to cancel. */
enum dovecot_cont dovecot_client_continue(struct dovecot_client *c, struct auth_request *r, const char *b64,
    size_t len);
/* The session gives up r (the client cancelled, or the session goes
 * after a challenge): tell Dovecot, free r. */
void dovecot_client_cancel(struct dovecot_client *c, struct auth_request **rp);

#endif
