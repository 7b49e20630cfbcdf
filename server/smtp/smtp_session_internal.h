/*
 * smtp_session_internal.h: what the files of the submission session share
 * and nothing outside them may use: the session itself (struct
 * smtp_session, its states), and the functions one file calls in another.
 *
 *   smtp_session.c   lifecycle: new/free, bufferevent callbacks, timeouts,
 *                    drain; reading command lines and handing them on
 *   smtp_commands.c  the verb table, dispatch() and the simple verbs
 *   smtp_auth.c      AUTH: the SASL exchange, failure throttling and delay
 *   smtp_data.c      the transaction: DATA/BDAT bodies, the spool, the
 *                    hand-over to the writer and its answer
 *   smtp_output.c    replies: corking, flushing, error counting
 */
#ifndef SUBMITD_SMTP_SESSION_INTERNAL_H
#define SUBMITD_SMTP_SESSION_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "server/protocol/sasl.h"
#include "server/protocol/smtp_body.h"
#include "server/protocol/smtp_parse.h"
#include "server/smtp/smtp_session.h"

struct auth_request;
struct writer_msg;

/* Longest sample of client input a log line carries. */
#define LOG_SAMPLE 64

enum smtp_state {
	SMTP_INIT = 0,      /* connected, no EHLO/HELO yet */
	SMTP_HELO,          /* greeted, no transaction */
	SMTP_MAIL,          /* MAIL accepted */
	SMTP_RCPT,          /* at least one RCPT accepted */
	SMTP_DATA,          /* reading a DATA body */
	SMTP_BDAT,          /* reading a BDAT chunk */
	SMTP_AUTH,          /* in a SASL exchange */
	SMTP_STATE_COUNT
};

enum sasl_step {
	SASL_STEP_NONE = 0, SASL_STEP_PLAIN, SASL_STEP_LOGIN_USER, SASL_STEP_LOGIN_PASS,
	SASL_STEP_DOVECOT,      /* passed through to Dovecot: s->auth_req is the exchange */
};

struct smtp_session {
	uint64_t id;
	struct server *srv;
	struct smtp_loop *loop;         /* the event loop it lives on, for good */
	struct bufferevent *bev;
	char peer[64];                  /* the client's address (the PROXY header's, if proxied) */
	struct sockaddr_storage peer_sa;
	struct sockaddr_storage local_sa;  /* proxied: what the client connected to */
	bool has_local;
	char proxy[64];                 /* the load balancer's address; "" when direct */
	bool input_seen;                /* the first octets were checked for a PROXY header */
	bool loopback, trusted;
	bool tls, implicit_tls;
	enum smtp_state state;
	char *helo;
	bool esmtp;
	int errors;
	bool waiting;           /* auth, store or a delay is outstanding */
	bool closing;           /* close once the output is flushed */
	bool out_blocked;
	bool discard_line;      /* skipping the rest of an over-long line */
	int flush_polls;        /* closing: checks for the last reply to leave */
	bool sync_wait;         /* a reply the client must wait for is not sent yet */
	const char *sync_after; /* the verb that owes it ("CONNECT": the greeting) */
	bool silenced;          /* the 554 of a violation was the last word */
	struct event *timer;    /* total session time, then auth delays */
	struct event *delay;    /* delayed auth failure reply; closing: the close */
	char *delayed_reply;
	struct evbuffer *cork;  /* replies not sent yet (reply_flush) */
	int corked;             /* > 0: hold replies until reply_flush */

	/* authentication */
	enum sasl_step sasl;
	char sasl_user[SASL_ID_MAX + 1];
	char *login;            /* authenticated login, NULL before */
	char **addresses;       /* its extra sender addresses */
	struct auth_request *auth_req;  /* a password check, or the exchange with Dovecot */

	/* the transaction */
	struct smtp_mail mail;
	char **rcpts;
	size_t nrcpt;
	bool bdat_used;         /* this transaction uses BDAT (no DATA) */
	uint64_t bdat_remaining;
	bool bdat_last;
	uint64_t bdat_chunk;    /* size of the chunk being read */
	enum smtp_state bdat_prev;
	const char *bdat_refusal;  /* the reply to a chunk read only to be discarded */
	struct smtp_body body;
	EVP_MD_CTX *sha;        /* body digest; made at the first DATA/BDAT */
	struct evbuffer *body_mem;
	int spool_fd;
	bool too_big, spool_failed;
	int spool_errno;        /* why the spool failed: ENOSPC is a 452 */
	struct writer_msg *pending;
	uint64_t line_started_us;  /* first octet of an incomplete command line (0: none) */

	struct smtp_session *prev, *next;
};

/* smtp_output.c: replies. They collect in s->cork while s->corked > 0 and
 * leave together at session_reply_flush. session_reply_error also counts a
 * client error and closes the session at max_errors. */
void session_reply_flush(struct smtp_session *s);
void session_reply_raw(struct smtp_session *s, const char *line, size_t len);
void session_reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void session_reply_error(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Log a refused piece of input, sanitized and cut to LOG_SAMPLE octets. */
void session_log_bad_input(struct smtp_session *s, const char *what, const char *buf, size_t len);

/* smtp_session.c: lifecycle. */
/* smtp.forbid_unauth_pipelining (RFC 2920 3.1): the reply now owed to an
 * unauthenticated client, after `after` (a static string), is one it must
 * wait for; input that arrives before that reply is sent is a violation. */
void session_sync_expect(struct smtp_session *s, const char *after);
/* If a reply is owed and the client has sent input anyway: log, count,
 * queue the 554 in the cork (never flushing it: the caller does) and
 * close; true then. Else false. */
bool session_sync_check(struct smtp_session *s);
/* The first input of s is a PROXY header it may not send: log, count,
 * 554 and close. */
void session_proxy_refused(struct smtp_session *s, const char *p, size_t n);
void session_enter_state(struct smtp_session *s, enum smtp_state st);
/* Close once the replies queued so far are written; never frees s. */
void session_close(struct smtp_session *s, const char *reason);
/* Parse and answer whatever input is buffered, until the session waits. */
void session_process(struct smtp_session *s);
/* The work s waited for is answered: read on, or, if s closed meanwhile,
 * free it once the answer has left. */
void session_resume(struct smtp_session *s);
/* Set the callbacks, timeouts and limits of a new or replaced s->bev. */
void session_setup_bev(struct smtp_session *s);

/* smtp_commands.c: run one complete command line. */
void session_dispatch(struct smtp_session *s, const char *line, size_t len);

/* smtp_auth.c */
/* May a password be sent on this connection (RFC 4954 4)? */
bool session_auth_offered(const struct smtp_session *s);
/* The mechanisms EHLO lists after "AUTH "; NULL: none to offer now. */
const char *session_auth_mechanisms(const struct smtp_session *s);
/* One line of the SASL exchange (the state is SMTP_AUTH). */
void session_sasl_response(struct smtp_session *s, const char *line, size_t len);
void session_cmd_auth(struct smtp_session *s, const char *args, size_t len);

/* smtp_data.c: the transaction. */
void session_transaction_reset(struct smtp_session *s);
/* The body is complete: refuse it or hand it to the writer. */
void session_message_end(struct smtp_session *s);
/* Consume DATA body octets from in; true when the terminator was seen. */
bool session_data_consume(struct smtp_session *s, struct evbuffer *in);
/* Consume what is buffered of the BDAT chunk; answer it once complete. */
void session_bdat_consume(struct smtp_session *s, struct evbuffer *in);
void session_cmd_data(struct smtp_session *s, const char *args, size_t len);
void session_cmd_bdat(struct smtp_session *s, const char *args, size_t len);

#endif
