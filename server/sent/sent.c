/*
 * sent.c: the scheduler of the Sent filing (see sent.h). A scan (every
 * sent.poll_interval, and soon after messages were committed) selects due
 * jobs that are not already in flight; each becomes a task handed to a
 * connection of its own (sent_imap.c), at most sent.connections at once,
 * since each logs in as a different user. A finished try is recorded by a
 * writer job: filed, or due again after a backoff (retry_base doubled per
 * attempt up to retry_max), or failed once sent.max_lifetime has passed
 * since the message was accepted. Failing is quiet for the sender: the
 * message itself went out; a log line and a metric tell the operator.
 *
 * One scan at a time; the in-flight set lives on the loop and the scan
 * job gets a copy to skip those jobs, as in the relay (relay.c).
 */
#include "server/sent/sent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "server/base/log.h"
#include "server/base/util.h"
#include "server/net/tls_client.h"
#include "server/sent/sent_internal.h"

/* ------------------------------------------------------------------ */
/* the in-flight set                                                  */

static bool
inflight_has(struct sent *s, int64_t id)
{
	for (size_t i = 0; i < s->ninflight; i++)
		if (s->inflight[i] == id)
			return true;
	return false;
}

static void
inflight_add(struct sent *s, int64_t id)
{
	if (s->ninflight == s->capinflight) {
		s->capinflight = s->capinflight ? s->capinflight * 2 : 64;
		s->inflight = xrealloc(s->inflight, s->capinflight * sizeof(int64_t));
	}
	s->inflight[s->ninflight++] = id;
}

static void
inflight_del(struct sent *s, int64_t id)
{
	for (size_t i = 0; i < s->ninflight; i++)
		if (s->inflight[i] == id) {
			s->inflight[i] = s->inflight[--s->ninflight];
			return;
		}
}

void
sent_dispatch(struct sent *s)
{
	while (s->pending && s->nconns < (size_t)s->srv->cfg->sent_connections && !s->draining) {
		struct sent_task *t = s->pending;
		s->pending = t->next;
		t->next = NULL;
		sent_conn_open(s, t);
	}
}

/* ------------------------------------------------------------------ */
/* results                                                            */

struct record {
	struct writer_job job;
	struct sent *s;
	struct sent_task *t;
	enum sent_outcome out;
	char mailbox[256];
	uint32_t uidvalidity, uid;
	char error[300];
	int64_t now_ms, retry_s, lifetime;
	/* from the writer thread */
	bool failed;
	int rc;
	char err[200];
};

static int
record_run(sqlite3 *db, void *arg)
{
	struct record *r = arg;

	if (r->out == SENT_FILED)
		r->rc = sent_record_filed(db, r->t->message_id, r->mailbox, r->uidvalidity, r->uid, r->now_ms, r->err,
		    sizeof(r->err));
	else
		r->rc = sent_record_retry(db, r->t->message_id, r->error, r->now_ms, r->retry_s, r->lifetime,
		    r->out == SENT_FATAL, &r->failed, r->err, sizeof(r->err));
	return r->rc;
}

static void scan(struct sent *s);

static void
record_done(struct writer_job *job)
{
	struct record *r = job->arg;
	struct sent *s = r->s;
	struct server_stats *st = &s->srv->stats;

	s->recording--;
	if (job->rc != SQLITE_OK) {
		/* Not written: the job stays as it was on disk and is due again
		 * (a marked one is looked for first), so nothing is lost. */
		log_err("event=sent_record_failed msgid=%s error=\"%s\"", r->t->public_id,
		    r->rc != SQLITE_OK ? r->err : sqlite3_errstr(job->rc));
	} else if (r->out == SENT_FILED) {
		STAT_ADD(st->sent_filed, 1);
		log_info("event=sent_filed msgid=%s login=%s mailbox=\"%s\" uidvalidity=%u uid=%u", r->t->public_id,
		    r->t->login, r->mailbox, r->uidvalidity, r->uid);
	} else if (r->failed) {
		STAT_ADD(st->sent_failed, 1);
		log_err("event=sent_failed msgid=%s login=%s attempts=%d error=\"%s\"", r->t->public_id, r->t->login,
		    r->t->attempts + 1, r->error);
	} else {
		STAT_ADD(st->sent_retried, 1);
		log_info("event=sent_deferred msgid=%s login=%s attempts=%d retry_in=%lld error=\"%s\"",
		    r->t->public_id, r->t->login, r->t->attempts + 1, (long long)r->retry_s, r->error);
	}
	bool written = job->rc == SQLITE_OK;   /* job is part of r */

	inflight_del(s, r->t->message_id);
	sent_task_free(&r->t);
	free(r);
	if (s->stopping)
		return;
	if (s->draining)
		server_maybe_exit(s->srv);
	else if (written)
		scan(s);
}

static int64_t
backoff(const struct config *cfg, int attempts)
{
	int64_t d = cfg->sent_retry_base;

	for (int i = 0; i < attempts && d < cfg->sent_retry_max; i++)
		d *= 2;
	return d < cfg->sent_retry_max ? d : cfg->sent_retry_max;
}

void
sent_task_done(struct sent *s, struct sent_task *t, enum sent_outcome out, const char *mailbox,
    uint32_t uidvalidity, uint32_t uid, const char *error)
{
	const struct config *cfg = s->srv->cfg;
	struct record *r = xcalloc(1, sizeof(*r));

	r->s = s;
	r->t = t;
	r->out = out;
	snprintf(r->mailbox, sizeof(r->mailbox), "%s", mailbox ? mailbox : "");
	r->uidvalidity = uidvalidity;
	r->uid = uid;
	snprintf(r->error, sizeof(r->error), "%s", error ? error : "");
	r->now_ms = now_ms();
	r->retry_s = backoff(cfg, t->attempts);
	r->lifetime = cfg->sent_max_lifetime;
	r->job.run = record_run;
	r->job.done = record_done;
	r->job.arg = r;
	s->recording++;
	writer_job_submit(s->srv->writer, &r->job);
}

/* ------------------------------------------------------------------ */
/* scanning                                                           */

struct scan {
	struct sent *s;
	struct writer_job job;
	int64_t now_ms;
	int64_t *skip;
	size_t nskip, limit, want;
	struct sent_task *found;
	int64_t pending;
	int rc;
	char err[256];
};

static int
scan_run(sqlite3 *db, void *arg)
{
	struct scan *sc = arg;

	sc->rc = sent_scan(db, sc->now_ms, sc->skip, sc->nskip, sc->limit, sc->want, &sc->found, &sc->pending,
	    sc->err, sizeof(sc->err));
	return SQLITE_OK;       /* a read: nothing to roll back */
}

static void
scan_done(struct writer_job *job)
{
	struct scan *sc = job->arg;
	struct sent *s = sc->s;
	struct sent_task *t, **tail;

	s->scanning = false;
	if (job->rc != SQLITE_OK || sc->rc != SQLITE_OK) {
		if (s->scan_failures++ % 60 == 0)
			log_err("event=sent_scan_failed error=\"%s\"", job->rc != SQLITE_OK ? sqlite3_errstr(job->rc) : sc->err);
	} else {
		s->scan_failures = 0;
		__atomic_store_n(&s->srv->stats.sent_pending, (uint64_t)sc->pending, __ATOMIC_RELAXED);
	}
	for (tail = &s->pending; *tail; tail = &(*tail)->next)
		;
	while ((t = sc->found) != NULL) {
		sc->found = t->next;
		t->next = NULL;
		if (s->draining || s->stopping || inflight_has(s, t->message_id)) {
			sent_task_free(&t);
			continue;
		}
		inflight_add(s, t->message_id);
		if (!t->has_body) {
			sent_task_done(s, t, SENT_FATAL, NULL, 0, 0, "the saved copy was purged before it could be filed");
			continue;
		}
		*tail = t;
		tail = &t->next;
	}
	free(sc->skip);
	free(sc);
	if (s->stopping)
		return;
	sent_dispatch(s);
	if (s->scan_again) {
		s->scan_again = false;
		scan(s);
	}
}

static void
scan(struct sent *s)
{
	const struct config *cfg = s->srv->cfg;
	struct scan *sc;

	if (cfg->sent_imap_host[0] == '\0' || s->draining || s->stopping)
		return;
	if (s->scanning) {
		s->scan_again = true;
		return;
	}
	/* nothing would start: the connections are all busy */
	if (s->nconns >= (size_t)cfg->sent_connections && s->pending)
		return;
	sc = xcalloc(1, sizeof(*sc));
	sc->s = s;
	sc->now_ms = now_ms();
	sc->want = (size_t)cfg->sent_connections * 4;
	sc->limit = sc->want + s->ninflight;
	sc->nskip = s->ninflight;
	if (sc->nskip > 0) {
		sc->skip = xmalloc(sc->nskip * sizeof(int64_t));
		memcpy(sc->skip, s->inflight, sc->nskip * sizeof(int64_t));
	}
	sc->job.run = scan_run;
	sc->job.done = scan_done;
	sc->job.arg = sc;
	s->scanning = true;
	writer_job_submit(s->srv->writer, &sc->job);
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sent *s = arg;
	struct timeval tv = { (time_t)s->srv->cfg->sent_poll_interval, 0 };

	scan(s);
	evtimer_add(s->poll, &tv);
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	scan(arg);
}

void
sent_kick(struct sent *s)
{
	/* soon, not now: a burst of commits makes one scan. Added only when
	 * not pending, so that commits coming faster than this delay cannot
	 * keep pushing the scan back. */
	struct timeval tv = { 0, 20000 };

	if (s && s->kick && !s->draining && !s->stopping && !evtimer_pending(s->kick, NULL))
		evtimer_add(s->kick, &tv);
}

/* ------------------------------------------------------------------ */
/* start, drain, stop                                                 */

static char *
read_password(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char buf[512];
	char *p;

	if (f == NULL) {
		snprintf(err, errlen, "sent.master_password_file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fgets(buf, sizeof(buf), f) == NULL)
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	if (buf[0] == '\0') {
		snprintf(err, errlen, "sent.master_password_file %s: empty", path);
		return NULL;
	}
	p = xstrdup(buf);
	sodium_memzero(buf, sizeof(buf));
	return p;
}

static void
password_free(char **pp)
{
	if (*pp) {
		sodium_memzero(*pp, strlen(*pp));
		free(*pp);
		*pp = NULL;
	}
}

int
sent_check_config(const struct config *cfg, char *err, size_t errlen)
{
	char *pw;
	SSL_CTX *ctx;

	if (cfg->sent_imap_host[0] == '\0')
		return 0;
	pw = read_password(cfg->sent_master_password_file, err, errlen);
	if (pw == NULL)
		return -1;
	password_free(&pw);
	ctx = tls_client_ctx_new(cfg->sent_tls_ca_file, "sent.tls_ca_file", err, errlen);
	if (ctx == NULL)
		return -1;
	SSL_CTX_free(ctx);
	return 0;
}

struct sent *
sent_start(struct server *srv, char *err, size_t errlen)
{
	const struct config *cfg = srv->cfg;
	struct sent *s = xcalloc(1, sizeof(*s));
	struct timeval now = { 0, 0 };

	s->srv = srv;
	if (cfg->sent_imap_host[0] == '\0')
		return s;
	s->password = read_password(cfg->sent_master_password_file, err, errlen);
	if (s->password == NULL)
		goto fail;
	s->ctx = tls_client_ctx_new(cfg->sent_tls_ca_file, "sent.tls_ca_file", err, errlen);
	if (s->ctx == NULL)
		goto fail;
	s->dns = evdns_base_new(srv->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (s->dns == NULL)
		s->dns = evdns_base_new(srv->base, 0);
	s->poll = evtimer_new(srv->base, poll_cb, s);
	s->kick = evtimer_new(srv->base, kick_cb, s);
	evtimer_add(s->poll, &now);
	log_info("event=sent_ready imap=%s:%lld tls=%s default=%s", cfg->sent_imap_host,
	    (long long)(cfg->sent_imap_port ? cfg->sent_imap_port :
	    cfg->sent_tls_mode == CONFIG_SENT_TLS_IMPLICIT ? 993 : 143), cfg->sent_tls, cfg->sent_default);
	return s;
fail:
	sent_free(&s);
	return NULL;
}

void
sent_drain(struct sent *s)
{
	struct sent_task *t;

	if (s == NULL)
		return;
	s->draining = true;
	s->scan_again = false;
	/* not started: they stay due on disk as they are */
	while ((t = s->pending) != NULL) {
		s->pending = t->next;
		inflight_del(s, t->message_id);
		sent_task_free(&t);
	}
}

size_t
sent_busy(const struct sent *s)
{
	return s ? s->nconns + s->recording : 0;
}

void
sent_stop(struct sent *s)
{
	if (s == NULL)
		return;
	sent_drain(s);
	s->stopping = true;
	while (s->conns) {
		struct sent_conn *c = s->conns;
		struct sent_task *t = sent_conn_take_task(c);
		/* cut short: due again at the next start, looked for first if
		 * its APPEND may have gone out */
		if (t) {
			inflight_del(s, t->message_id);
			sent_task_free(&t);
		}
		sent_conn_free(&c);
	}
}

void
sent_free(struct sent **sp)
{
	struct sent *s = *sp;

	if (s == NULL)
		return;
	sent_stop(s);
	if (s->poll)
		event_free(s->poll);
	if (s->kick)
		event_free(s->kick);
	if (s->dns)
		evdns_base_free(s->dns, 0);
	if (s->ctx)
		SSL_CTX_free(s->ctx);
	password_free(&s->password);
	free(s->inflight);
	free(s);
	*sp = NULL;
}
