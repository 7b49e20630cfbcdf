/*
 * relay_result.c: a finished try becomes records. The results of a task
 * go to the database in one writer job (db/writer.h) that also queues the
 * bounce for its failed recipients, so "failed" and "bounce queued" commit
 * together. The message leaves the in-flight set only when that job is
 * done: a scan in between cannot pick it again. A result whose commit
 * failed (the database locked by another process, say) is kept and tried
 * again every RECORD_RETRY_S seconds; dropping it would send the message
 * to the next hop a second time. A crash between the next hop's 250 and
 * the commit sends the message again on restart (at least once, never
 * lost).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "db/queue.h"
#include "db/store.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/relay/dsn.h"
#include "server/relay/relay_internal.h"

#define HEADERS_MAX (64 * 1024)
/* A result whose commit failed is tried again this many seconds later
 * (the writer itself waits a second for a lock already seen). */
#define RECORD_RETRY_S 1

struct record {
	struct relay *r;
	struct queue_task *t;
	int64_t now;
	struct writer_job job;
	/* settings copied for the writer thread */
	int64_t lifetime, retry_base, retry_max;
	const char *hostname;
	struct event *retry;
	unsigned tries;
	struct record *next_waiting;
};

/* Equal jitter: half the delay fixed, half random, so that many deferred
 * recipients do not all come back in the same second. */
static int64_t
backoff(int attempts, void *arg)
{
	const struct record *rec = arg;
	int64_t d = rec->retry_base;

	for (int i = 1; i < attempts && d < rec->retry_max; i++)
		d *= 2;
	if (d > rec->retry_max)
		d = rec->retry_max;
	return d / 2 + (int64_t)randombytes_uniform((uint32_t)(d / 2 + 1));
}

/* Queue a DSN to the sender for the failed recipients, in the caller's
 * transaction (writer thread). */
static int
bounce_queue(sqlite3 *db, struct record *rec, const struct dsn_failure *f, size_t nf)
{
	struct queue_task *t = rec->t;
	struct dsn_input in = {
		.reporting_host = rec->hostname, .sender = t->sender, .message_id = t->public_id,
		.arrival = store_time_parse(t->received_at), .now = rec->now, .failures = f, .nfailures = nf,
	};
	char *headers, *msg, pid[PUBLIC_ID_LEN + 1];
	size_t hl, len;
	int rc;

	headers = queue_body_head(db, t->message_id, HEADERS_MAX, &hl);
	in.headers = headers;
	in.headers_len = headers ? dsn_header_len(headers, hl) : 0;
	msg = dsn_build(&in, &len);
	free(headers);
	rc = queue_bounce_insert(db, t->sender, rec->hostname, rec->now, msg, len, pid);
	free(msg);
	if (rc == SQLITE_OK)
		log_info("event=bounce_queued msgid=%s bounce=%s failed=%zu", t->public_id, pid, nf);
	return rc;
}

/* The writer job: the results, then the bounce. */
static int
record_run(sqlite3 *db, void *arg)
{
	struct record *rec = arg;
	struct queue_task *t = rec->t;
	struct dsn_failure *f;
	size_t nf = 0;
	int rc;

	rc = queue_record(db, t, rec->now, rec->lifetime, backoff, rec);
	/* No bounce for a bounce: the null sender gets nothing (RFC 5321 6.1). */
	if (rc != SQLITE_OK || t->sender[0] == '\0')
		return rc;
	f = xcalloc(t->nrcpt, sizeof(*f));
	for (size_t i = 0; i < t->nrcpt; i++) {
		if (t->rcpts[i].recorded && t->rcpts[i].result == QUEUE_FAILED) {
			f[nf].address = t->rcpts[i].address;
			f[nf].reply = t->rcpts[i].reply;
			nf++;
		}
	}
	if (nf > 0)
		rc = bounce_queue(db, rec, f, nf);
	free(f);
	return rc;
}

static void
record_free(struct record *rec)
{
	relay_inflight_del(rec->r, rec->t->message_id);
	queue_task_free(&rec->t);
	if (rec->retry)
		event_free(rec->retry);
	free(rec);
}

static void
record_retry(evutil_socket_t fd, short what, void *arg)
{
	struct record *rec = arg;
	struct relay *r = rec->r;

	for (struct record **p = &r->waiting; *p; p = &(*p)->next_waiting) {
		if (*p == rec) {
			*p = rec->next_waiting;
			break;
		}
	}
	writer_job_submit(r->srv->writer, &rec->job);
}

static void
record_done(struct writer_job *job)
{
	struct record *rec = job->arg;
	struct relay *r = rec->r;
	struct timeval again = { RECORD_RETRY_S, 0 };

	if (job->rc != SQLITE_OK) {
		/* The message stays in flight, so no scan picks it again, until
		 * its result is on disk or submitd stops (relay_stop). */
		if (rec->tries++ % 60 == 0)     /* at the first try, then once a minute */
			log_err("event=relay_record_failed msgid=%s tries=%u note=retrying", rec->t->public_id,
			    rec->tries);
		if (rec->retry == NULL)
			rec->retry = evtimer_new(r->srv->base, record_retry, rec);
		rec->next_waiting = r->waiting;
		r->waiting = rec;
		evtimer_add(rec->retry, &again);
		return;
	}
	if (rec->tries > 0)
		log_info("event=relay_record_retried msgid=%s tries=%u", rec->t->public_id, rec->tries + 1);
	record_free(rec);
	relay_kick(r->srv);
	server_maybe_exit(r->srv);
}

void
relay_task_record(struct relay *r, struct queue_task *t)
{
	struct record *rec = xcalloc(1, sizeof(*rec));
	struct config *cfg = r->srv->cfg;

	for (size_t i = 0; i < t->nrcpt; i++) {
		const char *state = t->rcpts[i].result == QUEUE_DELIVERED ? "delivered" :
		    t->rcpts[i].result == QUEUE_FAILED ? "failed" : "deferred";
		char sample[200];
		log_info("event=relay_result msgid=%s rcpt=%s state=%s reply=%s", t->public_id, t->rcpts[i].address,
		    state, log_sanitize(sample, sizeof(sample), t->rcpts[i].reply ? t->rcpts[i].reply : "",
		    t->rcpts[i].reply ? strlen(t->rcpts[i].reply) : 0, 40));
	}
	rec->r = r;
	rec->t = t;
	rec->now = now_unix();
	rec->lifetime = cfg->relay_max_lifetime;
	rec->retry_base = cfg->relay_retry_base;
	rec->retry_max = cfg->relay_retry_max;
	rec->hostname = cfg->hostname;
	rec->job.run = record_run;
	rec->job.done = record_done;
	rec->job.arg = rec;
	writer_job_submit(r->srv->writer, &rec->job);
}

void
relay_task_set_all(struct queue_task *t, enum queue_result res, const char *reply, bool only_pending)
{
	for (size_t i = 0; i < t->nrcpt; i++) {
		if (only_pending && t->rcpts[i].result != QUEUE_PENDING && t->rcpts[i].result != QUEUE_ACCEPTED)
			continue;
		t->rcpts[i].result = res;
		free(t->rcpts[i].reply);
		t->rcpts[i].reply = xstrdup(reply);
	}
}

enum queue_result
relay_result_of(int code)
{
	return code >= 200 && code < 300 ? QUEUE_DELIVERED : code >= 500 ? QUEUE_FAILED : QUEUE_DEFERRED;
}

size_t
relay_records_waiting(struct relay *r)
{
	size_t n = 0;

	for (struct record *rec = r->waiting; rec; rec = rec->next_waiting)
		n++;
	return n;
}

void
relay_records_drop(struct relay *r)
{
	while (r->waiting) {
		struct record *rec = r->waiting;
		r->waiting = rec->next_waiting;
		log_warn("event=relay_record_lost msgid=%s tries=%u note=delivered_again_after_restart",
		    rec->t->public_id, rec->tries);
		record_free(rec);
	}
}
