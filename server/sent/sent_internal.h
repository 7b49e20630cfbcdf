/*
 * sent_internal.h: what the files of the Sent filing share, and nothing
 * else includes. sent.c is the scheduler, sent_imap.c one IMAP connection
 * per job. Everything here runs on the event loop, except the run()
 * functions of writer jobs, which get only their job's own data.
 */
#ifndef SUBMITD_SENT_INTERNAL_H
#define SUBMITD_SENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "db/sent.h"
#include "db/writer.h"
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

/* sent_imap.c */
void sent_conn_open(struct sent *s, struct sent_task *t);
/* Close and free *cp (its task must be the caller's business already). */
void sent_conn_free(struct sent_conn **cp);
/* The task of c (NULL when done), for stop. */
struct sent_task *sent_conn_take_task(struct sent_conn *c);
struct sent_conn *sent_conn_next(struct sent_conn *c);

#endif
