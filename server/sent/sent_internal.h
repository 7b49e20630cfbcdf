/*
 * sent_internal.h: what the files of the Sent filing share, and nothing
 * else includes. sent.c is the scheduler; one IMAP connection per job is
 * sent_imap.c (connecting, logging in, the mailbox, looking for a copy
 * already there, the responses) and sent_append.c (the mark before the
 * APPEND, the APPEND and its body). Everything here runs on the event
 * loop, except the run() functions of writer jobs, which get only their
 * job's own data.
 */
#ifndef SUBMITD_SENT_INTERNAL_H
#define SUBMITD_SENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "db/sent.h"
#include "db/writer.h"
#include "server/protocol/imap_parse.h"
#include "server/sent/sent.h"

struct sent_conn;

struct sent {
	struct server *srv;
	struct evdns_base *dns;
	SSL_CTX *ctx;
	char *password;               /* the master user's */
	struct event *poll;           /* every sent.poll_interval */
	struct event *kick;           /* soon after a commit */
	struct sent_conn *conns;
	size_t nconns;
	struct sent_task *pending;    /* picked, waiting for a connection */
	int64_t *inflight;            /* message ids picked and not yet recorded */
	size_t ninflight, capinflight;
	size_t recording;             /* result jobs with the writer */
	bool draining, stopping;
	bool scanning, scan_again;
	unsigned scan_failures;
	struct sent_conn *current;    /* the connection a response is handed to */
};

/* How a try ended. */
enum sent_outcome {
	SENT_FILED,                   /* appended, or found already there */
	SENT_RETRY,                   /* try again later (until sent.max_lifetime) */
	SENT_FATAL,                   /* never will work: fail the job now */
};

/* sent.c: record a finished try of t (the task goes with it) and free
 * the connection's claim on it. mailbox, uidvalidity, uid for SENT_FILED;
 * error otherwise. */
void sent_task_done(struct sent *s, struct sent_task *t, enum sent_outcome out, const char *mailbox,
    uint32_t uidvalidity, uint32_t uid, const char *error);
/* Hand pending tasks to new connections, up to sent.connections. */
void sent_dispatch(struct sent *s);

#define OUT_HIGH (256 * 1024)         /* output buffered before the body pump waits */
#define MAX_CANDIDATES 16             /* copies a retry's search looks at */

enum sent_conn_state {
	I_CONNECT, I_GREETING, I_STARTTLS, I_CAPA, I_AUTH, I_CAPA2, I_LIST, I_EXAMINE, I_SEARCH, I_FETCH,
	I_MARKING, I_APPEND, I_BODY, I_APPENDED, I_CREATE, I_LOGOUT
};

struct body_stream;
struct mark;

/* One IMAP connection, for one task. */
struct sent_conn {
	struct sent *s;
	struct bufferevent *bev;
	enum sent_conn_state state;
	bool tls;
	unsigned caps;
	struct sent_task *task;
	struct imap_resp resp;
	unsigned tagno;
	char tag[16];                 /* of the command whose answer we wait for */
	char mailbox[256];
	uint32_t uidvalidity, uid;
	bool special;                 /* LIST found a \Sent mailbox */
	char msgid[400];              /* "" without one */
	uint32_t cand[MAX_CANDIDATES];
	size_t ncand;
	uint32_t found_uid;
	crypto_hash_sha256_state hash;
	bool created;                 /* CREATE tried */
	/* the APPEND was refused in the middle of its LITERAL+ literal: the
	 * server still reads the literal to its end, so we finish it first */
	bool refused, refused_trycreate;
	char refused_text[256];
	int64_t body_off;
	struct body_stream *body;     /* the stored body in pieces */
	struct mark *mk;              /* the mark job, while with the writer */
	struct sent_conn *prev, *next;
};

/* sent_imap.c */
void sent_conn_open(struct sent *s, struct sent_task *t);
/* Give up on this try (retried later) and close c. */
void sent_conn_fail(struct sent_conn *c, const char *why);
/* Send "TAG command" and wait for its answer in state next. */
void sent_send_cmd(struct sent_conn *c, enum sent_conn_state next, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "VERB "mailbox"" for the connection's mailbox. */
void sent_send_with_mailbox(struct sent_conn *c, enum sent_conn_state next, const char *verb);

/* sent_append.c */
/* Mark the job (once), then APPEND into c->mailbox. */
void sent_start_append(struct sent_conn *c);
void sent_send_append(struct sent_conn *c);
/* Write the body while the output has room (the write callback and each
 * piece read call it again). */
void sent_body_pump(struct sent_conn *c);
/* c goes: its writer jobs still out free themselves when done. */
void sent_append_forget(struct sent_conn *c);
/* Close and free *cp (its task must be the caller's business already). */
void sent_conn_free(struct sent_conn **cp);
/* The task of c (NULL when done), for stop. */
struct sent_task *sent_conn_take_task(struct sent_conn *c);
struct sent_conn *sent_conn_next(struct sent_conn *c);

#endif
