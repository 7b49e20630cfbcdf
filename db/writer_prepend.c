/*
 * writer_prepend.c: the workers of writer_opts.prepend, header fields
 * computed for each message beside its commit (the daemon's DKIM
 * signatures, about a millisecond of CPU each with RSA-2048). They are
 * threads of their own, not the token signer: several can sign at once,
 * and the token signer's Ed25519 work never queues behind them. Each takes
 * one message at a time, so a batch spreads over all of them; the writer
 * thread waits for a message's fields only when it comes to store them,
 * after its rows and body.
 */
#include "db/writer_internal.h"

#include <stdio.h>
#include <stdlib.h>

#include "server/base/log.h"
#include "server/base/util.h"

struct prepper {
	struct writer *w;
	int index;
};

static void *
prepend_main(void *arg)
{
	struct prepper *p = arg;
	struct writer *w = p->w;
	struct writer_msg *m;

	for (;;) {
		pthread_mutex_lock(&w->lock);
		workq_wait_locked(&w->to_prepend);
		m = workq_take_locked(&w->to_prepend, 1, NULL);
		pthread_mutex_unlock(&w->lock);
		if (m == NULL)
			break;          /* stopping, and nothing left */
		char *fields = w->o.prepend(w->o.prepend_arg, p->index, m);
		pthread_mutex_lock(&w->lock);
		m->prepend = fields;
		m->prepend_done = true;
		pthread_cond_broadcast(&w->prepended_cond);
		pthread_mutex_unlock(&w->lock);
	}
	free(p);
	return NULL;
}

int
writer_prepend_start(struct writer *w)
{
	int n = w->o.prepend_threads < 1 ? 1 : w->o.prepend_threads;

	w->preppers = xcalloc((size_t)n, sizeof(*w->preppers));
	for (int i = 0; i < n; i++) {
		struct prepper *p = xcalloc(1, sizeof(*p));
		char name[32];
		p->w = w;
		p->index = i;
		if (pthread_create(&w->preppers[i], NULL, prepend_main, p) != 0) {
			free(p);
			return -1;
		}
		w->npreppers++;
		snprintf(name, sizeof(name), "sd-dkim%d", i % 100);
		pthread_setname_np(w->preppers[i], name);
	}
	return 0;
}

void
writer_prepend_stop(struct writer *w)
{
	if (w->preppers == NULL)
		return;
	workq_close(&w->to_prepend);
	for (int i = 0; i < w->npreppers; i++)
		pthread_join(w->preppers[i], NULL);
	xfreep(&w->preppers);
	w->npreppers = 0;
}

/* One statement per batch instead of a thread hand-off per message: with
 * DKIM on and no key (the default until `submitctl dkim generate`), every
 * message woke a worker that only found nothing to sign. The look runs
 * in the writer's own read of the database, after the message was
 * submitted, so a key added before a message's end of data signs it, as
 * the workers' own reload made sure; a failed look sends the messages to
 * the workers as before. */
void
writer_prepend_look(struct writer *w, struct writer_msg *batch)
{
	bool wanted = true;

	if (w->prepend_wanted == NULL)
		return;
	if (sqlite3_step(w->prepend_wanted) == SQLITE_ROW)
		wanted = sqlite3_column_int(w->prepend_wanted, 0) != 0;
	sqlite3_reset(w->prepend_wanted);
	pthread_mutex_lock(&w->lock);
	w->prepend_skip = !wanted;
	for (struct writer_msg *m = batch; m; m = m->next) {
		if (!m->prepend_deferred)
			continue;
		m->prepend_deferred = false;
		if (wanted)
			workq_push_locked(&w->to_prepend, m);
		else
			m->prepend_done = true;
	}
	pthread_mutex_unlock(&w->lock);
}

void
writer_wait_prepended(struct writer *w, struct writer_msg *m)
{
	pthread_mutex_lock(&w->lock);
	while (!m->prepend_done)
		pthread_cond_wait(&w->prepended_cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}
