/*
 * relay_retention.c: the purge timer (docs/relay.md, section 9). Every
 * retention.interval seconds, and once at start, one pass of
 * retention_purge (db/retention.h) runs as a writer job; a pass that
 * purged a full batch is followed by the next one at once. One pass at a
 * time, none while draining; a pass under way counts as relay work
 * (relay_busy), so that shutdown waits for it.
 */
#include <stdlib.h>

#include "db/retention.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/relay/relay_internal.h"

struct purge {
	struct relay *r;
	int64_t cutoff_ms, batch;
	bool relay_enabled;
	int purged;
	struct writer_job job;
};

static int
purge_run(sqlite3 *db, void *arg)
{
	struct purge *p = arg;

	return retention_purge(db, p->cutoff_ms, p->batch, p->relay_enabled, &p->purged);
}

static void
purge_done(struct writer_job *job)
{
	struct purge *p = job->arg;
	struct relay *r = p->r;

	if (p->purged > 0)
		log_info("event=retention_purged messages=%d", p->purged);
	r->purging = false;
	server_maybe_exit(r->srv);
	/* a full batch: more are waiting, go on at once */
	if (job->rc == SQLITE_OK && p->purged == p->batch) {
		struct timeval tv = { 0, 0 };
		evtimer_add(r->purge, &tv);
	}
	free(p);
}

void
relay_retention_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	struct config *cfg = r->srv->cfg;
	struct timeval tv = { (time_t)cfg->retention_interval, 0 };
	struct purge *p;

	evtimer_add(r->purge, &tv);
	if (r->purging || r->draining)
		return;
	p = xcalloc(1, sizeof(*p));
	p->r = r;
	p->cutoff_ms = now_ms() - cfg->retention_keep * 1000;
	p->batch = cfg->retention_batch;
	p->relay_enabled = cfg->relay_host[0] != '\0';
	p->job.run = purge_run;
	p->job.done = purge_done;
	p->job.arg = p;
	r->purging = true;
	writer_job_submit(r->srv->writer, &p->job);
}
