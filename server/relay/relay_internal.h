/*
 * relay_internal.h: what the files of the relay share, and nothing else
 * includes. relay.c is the scheduler (the in-flight set, queue scans,
 * start, drain and stop), relay_client.c the outgoing SMTP connection,
 * relay_result.c turns a finished try into records and bounces, and
 * relay_retention.c runs the purge passes. Everything here runs on the
 * event loop, except the run() functions of writer jobs, which get only
 * their job's own data (see relay.h).
 */
#ifndef SUBMITD_RELAY_INTERNAL_H
#define SUBMITD_RELAY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "db/queue.h"
#include "db/writer.h"
#include "server/relay/relay.h"

#define OUT_HIGH (256 * 1024)       /* output buffered before the body pump waits */
#define REPLY_MAX 4096

enum conn_state {
	C_CONNECT, C_GREETING, C_EHLO, C_STARTTLS, C_AUTH, C_READY, C_MAIL, C_DATA, C_BODY, C_DOT, C_RSET, C_QUIT
};

struct body_stream;

/* One connection to the next hop (relay_client.c). */
struct conn {
	struct relay *r;
	struct bufferevent *bev;
	enum conn_state state;
	bool tls, pipelining, chunking, eightbit, smtputf8, binarymime, starttls, size_offered;
	int64_t size_limit;
	struct queue_task *task;      /* in progress */
	struct queue_task *queue;     /* waiting on this connection */
	/* replies owed by the server for the pipelined group: -1 MAIL, i RCPT i */
	int *owed;
	size_t nowed, owed_at, rcpt_sent;
	bool mail_ok;
	/* body streaming */
	char *header;
	size_t header_len, header_off;
	int64_t body_off;             /* octets of the body read so far */
	bool at_line_start;
	char last2[2];
	struct body_stream *body;     /* the stored body in pieces, made once per connection */
	char reply[REPLY_MAX];
	size_t reply_len;
	struct conn *prev, *next;
};

struct record;

struct relay {
	struct server *srv;
	struct evdns_base *dns;
	SSL_CTX *ctx;
	char *password;
	struct event *poll, *purge;
	struct conn *conns;
	size_t nconns;
	struct queue_task *pending;   /* picked, waiting for a connection */
	int64_t *inflight;            /* message ids picked and not yet recorded */
	size_t ninflight, capinflight;
	struct record *waiting;       /* results whose commit failed, to try again */
	bool draining;
	bool purging;
	bool scanning;                /* a scan job is with the writer */
	bool scan_again;              /* a kick came meanwhile: scan once more */
	unsigned scan_failures;       /* scans failed in a row */
	struct conn *current;         /* the connection on_reply works for */
};

/* relay.c: the in-flight set and the hand-out of tasks. */
void relay_inflight_del(struct relay *r, int64_t id);
void relay_dispatch(struct relay *r);

/* relay_client.c */
void relay_conn_open(struct relay *r, struct queue_task *first);
/* Close and free *cp (its tasks are the caller's business), set it NULL. */
void relay_conn_free(struct conn **cp);

/* relay_result.c */
/* Hand a finished task's results to the writer (the task goes with them);
 * the message leaves the in-flight set once they are committed. */
void relay_task_record(struct relay *r, struct queue_task *t);
/* Every recipient (still pending, with only_pending) gets this outcome. */
void relay_task_set_all(struct queue_task *t, enum queue_result res, const char *reply, bool only_pending);
/* A reply code as an outcome: 2xx delivered, 5xx failed, else deferred. */
enum queue_result relay_result_of(int code);
/* Results still waiting for their commit (relay_busy), and giving them up
 * when submitd stops (relay_stop). */
size_t relay_records_waiting(struct relay *r);
void relay_records_drop(struct relay *r);

/* relay_retention.c: the purge timer's callback. */
void relay_retention_cb(evutil_socket_t fd, short what, void *arg);

#endif
