/*
 * relay.c: the scheduler (see relay.h). A scan (every poll_interval, and
 * right after a commit or a recorded result) selects messages with due
 * recipients that are not already in flight. Each becomes a task; tasks
 * are handed to connections (relay_client.c), at most relay.connections
 * of them, and a connection takes task after task before it says QUIT.
 *
 * The scan is a writer job: queue_scan runs on the writer thread, and
 * scan_done, on the loop, adds what it found to the in-flight set. One
 * scan at a time: a kick while one is under way asks for one more after
 * it. The in-flight set lives on the loop only; the job gets a copy of
 * it to skip those messages, and scan_done checks again, since the set
 * changes meanwhile. Jobs run and finish in order, so a result submitted
 * before a scan is on disk when the scan reads the queue.
 */
#include "server/relay/relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "server/base/log.h"
#include "server/base/util.h"
#include "server/net/tls_client.h"
#include "server/relay/relay_internal.h"

/* ------------------------------------------------------------------ */
/* the in-flight set                                                  */

static bool
inflight_has(struct relay *r, int64_t id)
{
	for (size_t i = 0; i < r->ninflight; i++)
		if (r->inflight[i] == id)
			return true;
	return false;
}

static void
inflight_add(struct relay *r, int64_t id)
{
	if (r->ninflight == r->capinflight) {
		r->capinflight = r->capinflight ? r->capinflight * 2 : 64;
		r->inflight = xrealloc(r->inflight, r->capinflight * sizeof(int64_t));
	}
	r->inflight[r->ninflight++] = id;
}

void
relay_inflight_del(struct relay *r, int64_t id)
{
	for (size_t i = 0; i < r->ninflight; i++)
		if (r->inflight[i] == id) {
			r->inflight[i] = r->inflight[--r->ninflight];
			return;
		}
}

/* Hand pending tasks to connections: new ones up to the limit. A
 * connection that is busy takes more when it is done with its task. */
void
relay_dispatch(struct relay *r)
{
	struct config *cfg = r->srv->cfg;

	while (r->pending && r->nconns < (size_t)cfg->relay_connections && !r->draining) {
		struct queue_task *t = r->pending;
		r->pending = t->next;
		t->next = NULL;
		relay_conn_open(r, t);
	}
}

/* ------------------------------------------------------------------ */
/* scanning the queue                                                 */

struct scan {
	struct relay *r;
	struct writer_job job;
	/* for the writer thread: a copy, the loop's set changes meanwhile */
	int64_t now_ms;
	int64_t *skip;
	size_t nskip, limit, want;
	/* from it */
	struct queue_task *found;
	int rc;
	char err[256];
};

static int
scan_run(sqlite3 *db, void *arg)
{
	struct scan *s = arg;

	s->rc = queue_scan(db, s->now_ms, s->skip, s->nskip, s->limit, s->want, &s->found, s->err, sizeof(s->err));
	return SQLITE_OK;       /* a read: nothing to roll back */
}

static void scan(struct relay *r);

static void
scan_done(struct writer_job *job)
{
	struct scan *s = job->arg;
	struct relay *r = s->r;
	struct queue_task *t, **tail;

	r->scanning = false;
	if (job->rc != SQLITE_OK || s->rc != SQLITE_OK) {
		/* At the first failure, then once every 60 in a row: a lock
		 * held by another process fails every scan until it goes. */
		if (r->scan_failures++ % 60 == 0)
			log_err("event=relay_scan_failed error=\"%s\"", job->rc != SQLITE_OK ? sqlite3_errstr(job->rc) : s->err);
	} else {
		r->scan_failures = 0;
	}
	for (tail = &r->pending; *tail; tail = &(*tail)->next)
		;
	while ((t = s->found) != NULL) {
		s->found = t->next;
		t->next = NULL;
		/* draining: not attempted, it stays in the queue as it is */
		if (r->draining || inflight_has(r, t->message_id)) {
			queue_task_free(&t);
			continue;
		}
		inflight_add(r, t->message_id);
		if (!t->has_body) {
			/* purged while the relay was off: nothing left to send */
			relay_task_set_all(t, QUEUE_FAILED, "554 5.3.0 the saved copy was purged before it could be delivered",
			    false);
			relay_task_record(r, t);
			continue;
		}
		*tail = t;
		tail = &t->next;
	}
	free(s->skip);
	free(s);
	relay_dispatch(r);
	if (r->scan_again) {
		r->scan_again = false;
		scan(r);
	}
}

static void
scan(struct relay *r)
{
	struct config *cfg = r->srv->cfg;
	struct scan *s;

	if (cfg->relay_host[0] == '\0' || r->draining)
		return;
	if (r->scanning) {
		r->scan_again = true;
		return;
	}
	s = xcalloc(1, sizeof(*s));
	s->r = r;
	s->now_ms = now_ms();
	s->want = (size_t)cfg->relay_connections * 8;
	s->limit = s->want + r->ninflight;
	s->nskip = r->ninflight;
	if (s->nskip > 0) {
		s->skip = xmalloc(s->nskip * sizeof(int64_t));
		memcpy(s->skip, r->inflight, s->nskip * sizeof(int64_t));
	}
	s->job.run = scan_run;
	s->job.done = scan_done;
	s->job.arg = s;
	r->scanning = true;
	writer_job_submit(r->srv->writer, &s->job);
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct timeval tv = { (time_t)r->srv->cfg->relay_poll_interval, 0 };

	scan(r);
	evtimer_add(r->poll, &tv);
}

void
relay_kick(struct server *srv)
{
	struct relay *r = srv->relay;
	struct timeval tv = { 0, 0 };

	if (r && !r->draining && srv->cfg->relay_host[0])
		evtimer_add(r->poll, &tv);
}

void
relay_jobs_done(struct server *srv)
{
	struct writer_job *list = writer_collect_jobs(srv->writer), *j;

	while ((j = list) != NULL) {
		list = j->next;
		j->done(j);
	}
}

/* ------------------------------------------------------------------ */
/* start, drain, stop                                                 */

static int
load_password(struct relay *r, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char buf[512];

	if (f == NULL) {
		snprintf(err, errlen, "relay.auth_password_file %s: %s", path, strerror(errno));
		return -1;
	}
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	r->password = xstrdup(buf);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

int
relay_start(struct server *srv, char *err, size_t errlen)
{
	struct config *cfg = srv->cfg;
	struct relay *r = xcalloc(1, sizeof(*r));
	struct timeval now = { 0, 0 };

	r->srv = srv;
	srv->relay = r;
	r->poll = evtimer_new(srv->base, poll_cb, r);
	r->purge = evtimer_new(srv->base, relay_retention_cb, r);
	evtimer_add(r->purge, &now);
	if (cfg->relay_host[0] == '\0')
		return 0;
	if (cfg->relay_auth_user[0] && load_password(r, cfg->relay_auth_password_file, err, errlen) == -1)
		return -1;
	r->dns = evdns_base_new(srv->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (r->dns == NULL)
		r->dns = evdns_base_new(srv->base, 0);
	r->ctx = tls_client_ctx_new(cfg->relay_tls_ca_file, "relay.tls_ca_file", err, errlen);
	if (r->ctx == NULL)
		return -1;
	log_info("event=relay_ready next_hop=%s:%lld tls=%s", cfg->relay_host, (long long)cfg->relay_port, cfg->relay_tls);
	evtimer_add(r->poll, &now);
	return 0;
}

void
relay_drain(struct server *srv)
{
	struct relay *r = srv->relay;
	struct queue_task *t;

	if (r == NULL)
		return;
	r->draining = true;
	r->scan_again = false;
	/* tasks not started: back to the queue as they are (not attempted) */
	while ((t = r->pending) != NULL) {
		r->pending = t->next;
		relay_inflight_del(r, t->message_id);
		queue_task_free(&t);
	}
	for (struct conn *c = r->conns; c; c = c->next) {
		while ((t = c->queue) != NULL) {
			c->queue = t->next;
			relay_inflight_del(r, t->message_id);
			queue_task_free(&t);
		}
	}
}

size_t
relay_busy(struct server *srv)
{
	struct relay *r = srv->relay;
	size_t n = 0;

	if (r == NULL)
		return 0;
	for (struct conn *c = r->conns; c; c = c->next)
		n += c->task != NULL;
	n += relay_records_waiting(r);
	return n + (r->purging ? 1 : 0);
}

void
relay_stop(struct server *srv)
{
	struct relay *r = srv->relay;

	if (r == NULL)
		return;
	relay_drain(srv);
	while (r->conns) {
		struct conn *c = r->conns;
		if (c->task) {
			/* cut short: not attempted, as if never picked */
			relay_inflight_del(r, c->task->message_id);
			queue_task_free(&c->task);
		}
		relay_conn_free(&c);
	}
	relay_records_drop(r);
	if (r->poll)
		event_free(r->poll);
	if (r->purge)
		event_free(r->purge);
	if (r->dns)
		evdns_base_free(r->dns, 0);
	if (r->ctx)
		SSL_CTX_free(r->ctx);
	if (r->password) {
		sodium_memzero(r->password, strlen(r->password));
		free(r->password);
	}
	free(r->inflight);
	free(r);
	srv->relay = NULL;
}
