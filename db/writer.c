/*
 * writer.c: see writer.h. One thread, one connection, prepared statements,
 * and queues (workq) guarded by one mutex. This file is the thread: its
 * queues, its passes (a batch of messages, then jobs, then audit rows),
 * start, flush and stop. writer_store.c writes the messages and says how
 * a lock held by another process is met, writer_signer.c signs their
 * tokens, writer_audit.c writes the audit rows.
 */
#include "db/writer_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "db/checkpoint.h"
#include "server/base/log.h"
#include "server/base/util.h"

struct writer_msg *
writer_msg_new(void)
{
	struct writer_msg *m = xcalloc(1, sizeof(*m));
	m->spool_fd = -1;
	return m;
}

void
writer_msg_free(struct writer_msg **mp)
{
	struct writer_msg *m = *mp;

	if (m == NULL)
		return;
	free(m->auth_login);
	free(m->helo);
	free(m->envelope_from);
	for (size_t i = 0; i < m->nrcpt; i++)
		free(m->rcpts[i]);
	free(m->rcpts);
	free(m->body);
	free(m->header_msgid);
	if (m->spool_fd != -1)
		close(m->spool_fd);
	if (m->tokens) {
		for (size_t i = 0; i <= m->nrcpt; i++)
			free(m->tokens[i]);
		free(m->tokens);
	}
	free(m->token_meta);
	free(m->prepend);
	free(m);
	*mp = NULL;
}

/* One stage of m is done (signed, or committed). The last one hands it
 * back; true when it did. Called with the lock held. */
bool
writer_stage_done_locked(struct writer *w, struct writer_msg *m)
{
	if (--m->pending > 0)
		return false;
	workq_push_locked(&w->done, m);
	return true;
}

/* Each job in a transaction of its own: jobs are small (a delivery
 * result, a purge batch) and one failing must not undo another. The
 * results are posted for writer_collect_jobs; the caller notifies. */
static void
run_jobs(struct writer *w, struct writer_job *jobs)
{
	struct writer_job *j, *last = NULL;
	char why[512];

	for (j = jobs; j; j = j->next) {
		last = j;
		j->rc = writer_begin(w, "job");
		if (j->rc != SQLITE_OK)
			continue;       /* writer_begin() logged it */
		j->rc = j->run(w->db, j->arg);
		if (j->rc == SQLITE_OK)
			j->rc = writer_tx(w, ST_COMMIT);
		if (j->rc != SQLITE_OK) {
			log_err("event=job_failed %s", writer_db_error(w, why, sizeof(why)));
			writer_tx(w, ST_ROLLBACK);
		}
	}
	workq_push_list(&w->jobs_done, jobs, last);
}

void
writer_job_submit(struct writer *w, struct writer_job *job)
{
	workq_push(&w->jobs, job);
}

struct writer_job *
writer_collect_jobs(struct writer *w)
{
	return workq_take_all(&w->jobs_done);
}

/* Work for the writer thread is waiting (the rows to retry aside). */
static bool
has_work_locked(const struct writer *w)
{
	return !workq_empty_locked(&w->msgs) || !workq_empty_locked(&w->audits) ||
	    !workq_empty_locked(&w->jobs);
}

/* Each pass takes what is waiting of every kind (one batch of messages,
 * all jobs, all audit rows) and runs them in that order. A pass never
 * loops on one kind: a steady stream of API calls (audit rows) or relay
 * results must not keep messages waiting for their 250, least of all
 * while every transaction has to wait for a lock. */
static void *
writer_main(void *arg)
{
	struct writer *w = arg;

	for (;;) {
		struct writer_msg *batch;
		struct audit_entry *audits;
		struct writer_job *jobs;
		size_t n;
		bool last_try;

		pthread_mutex_lock(&w->lock);
		while (!has_work_locked(w) && !w->stopping) {
			struct timespec until;
			if (w->a_retry == NULL) {
				pthread_cond_wait(&w->cond, &w->lock);
				continue;
			}
			/* audit rows to try again: not later than AUDIT_RETRY_S */
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += AUDIT_RETRY_S;
			if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT)
				break;
		}
		if (!has_work_locked(w) && w->a_retry == NULL) {
			pthread_mutex_unlock(&w->lock);
			break;          /* stopping, and nothing left */
		}
		last_try = w->stopping;
		audits = writer_audits_take_locked(w);
		jobs = workq_take_all_locked(&w->jobs);
		batch = workq_take_locked(&w->msgs, (size_t)w->o.batch, &n);
		w->busy = true;
		pthread_mutex_unlock(&w->lock);

		if (batch) {
			writer_commit_batch(w, batch);
			/* The bodies are stored (or failed): release them now, not on
			 * the event loop, which only needs the status and the tokens. */
			for (struct writer_msg *m = batch; m; m = m->next) {
				/* a prepend worker may still read a body that failed to store */
				if (w->o.prepend)
					writer_wait_prepended(w, m);
				xfreep(&m->body);
				if (m->spool_fd != -1) {
					close(m->spool_fd);
					m->spool_fd = -1;
				}
			}
			bool posted = false;
			pthread_mutex_lock(&w->lock);
			for (struct writer_msg *m = batch, *next; m; m = next) {
				next = m->next;
				posted |= writer_stage_done_locked(w, m);
			}
			w->depth -= n;
			pthread_mutex_unlock(&w->lock);
			/* answer the clients before running the other work */
			if (posted && w->o.notify)
				w->o.notify(w->o.notify_arg);
		}
		if (jobs)
			run_jobs(w, jobs);
		if (audits)
			writer_insert_audits(w, audits, last_try);

		pthread_mutex_lock(&w->lock);
		w->busy = false;
		pthread_mutex_unlock(&w->lock);
		if (jobs && w->o.notify)
			w->o.notify(w->o.notify_arg);
	}
	return NULL;
}

struct writer *
writer_start(const struct writer_opts *o, char *err, size_t errlen)
{
	struct writer *w = xcalloc(1, sizeof(*w));

	w->o = *o;
	w->db_path = xstrdup(o->db_path);
	w->issuer = xstrdup(o->issuer ? o->issuer : "localhost");
	w->o.db_path = w->db_path;
	w->o.issuer = w->issuer;
	if (w->o.batch < 1)
		w->o.batch = 1;
	keyring_init(&w->keys.ring);
	w->db = store_open_writer(w->db_path, err, errlen);
	if (w->db == NULL)
		goto fail;
	if (store_keys_init(w->db, &w->keys, err, errlen) == -1)
		goto fail;
	if (writer_store_prepare(w, err, errlen) == -1)
		goto fail;
	if (w->o.checkpoint_pages > 0) {
		w->ckpt = checkpoint_start(w->db_path, w->db, w->o.checkpoint_pages, err, errlen);
		if (w->ckpt == NULL)
			goto fail;
	}
	w->chunk = xmalloc(BODY_CHUNK);
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	pthread_cond_init(&w->sign_cond, NULL);
	pthread_cond_init(&w->signed_cond, NULL);
	pthread_cond_init(&w->prep_cond, NULL);
	pthread_cond_init(&w->prepended_cond, NULL);
	workq_init(&w->msgs, offsetof(struct writer_msg, next), &w->lock, &w->cond);
	workq_init(&w->jobs, offsetof(struct writer_job, next), &w->lock, &w->cond);
	workq_init(&w->audits, offsetof(struct audit_entry, next), &w->lock, &w->cond);
	workq_init(&w->to_sign, offsetof(struct writer_msg, s_next), &w->lock, &w->sign_cond);
	workq_init(&w->to_prepend, offsetof(struct writer_msg, p_next), &w->lock, &w->prep_cond);
	workq_init(&w->done, offsetof(struct writer_msg, next), &w->lock, NULL);
	workq_init(&w->jobs_done, offsetof(struct writer_job, next), &w->lock, NULL);
	writer_refresh_keys(w);
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		snprintf(err, errlen, "cannot start the writer thread");
		goto fail;
	}
	/* Named for top -H, perf and gdb. */
	pthread_setname_np(w->thread, "sd-writer");
	if (w->o.tokens && writer_signer_start(w) == -1) {
		snprintf(err, errlen, "cannot start the signer thread");
		writer_stop(&w);
		return NULL;
	}
	if (w->o.prepend && writer_prepend_start(w) == -1) {
		snprintf(err, errlen, "cannot start the prepend threads");
		writer_stop(&w);
		return NULL;
	}
	return w;
fail:
	checkpoint_stop(&w->ckpt);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(w->st[i]);
	sqlite3_finalize(w->prepend_wanted);
	store_keys_free(&w->keys);
	store_close(&w->db);
	free(w->db_path);
	free(w->issuer);
	free(w->chunk);
	free(w);
	return NULL;
}

void
writer_submit(struct writer *w, struct writer_msg *m)
{
	/* The claims of every token, so that the rows can be written while
	 * the signer signs: ids (random, outside the lock) and expiry here,
	 * the key below. */
	struct writer_token_meta *meta = w->signer_started ? writer_claim_tokens(w, m) : NULL;

	m->status = WRITER_PENDING;
	m->submitted_us = mono_us();
	pthread_mutex_lock(&w->lock);
	if (meta && w->active.has_secret) {
		writer_name_key(meta, m->nrcpt + 1, w->active.kid);
		m->token_meta = meta;
		meta = NULL;
		m->pending = 2;
		m->signed_done = false;
		workq_push_locked(&w->to_sign, m);
	} else {
		m->pending = 1;
		m->signed_done = true;
	}
	if (w->o.prepend) {
		m->prepend_done = false;
		m->prepend_deferred = w->prepend_skip;
		if (!m->prepend_deferred)
			workq_push_locked(&w->to_prepend, m);
	}
	workq_push_locked(&w->msgs, m);
	w->depth++;
	pthread_mutex_unlock(&w->lock);
	free(meta);             /* no signing key: no tokens */
}

struct writer_msg *
writer_collect(struct writer *w)
{
	return workq_take_all(&w->done);
}

void
writer_flush(struct writer *w)
{
	struct timespec ts = { 0, 5 * 1000 * 1000 };

	for (;;) {
		bool idle;
		pthread_mutex_lock(&w->lock);
		idle = workq_empty_locked(&w->to_sign) && !w->signing && !has_work_locked(w) && !w->busy;
		pthread_mutex_unlock(&w->lock);
		if (idle)
			return;
		nanosleep(&ts, NULL);
	}
}

size_t
writer_depth(struct writer *w)
{
	size_t n;

	pthread_mutex_lock(&w->lock);
	n = w->depth;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void
writer_stop(struct writer **wp)
{
	struct writer *w = *wp;
	struct writer_msg *m, *list;

	if (w == NULL)
		return;
	/* The signer first: it signs all it was given before it leaves, and
	 * the writer thread may wait for it (a key rotated meanwhile). */
	writer_signer_stop(w);
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	/* They drain their queue before they leave; the writer thread, which
	 * waited for each message it stored, is gone. */
	writer_prepend_stop(w);
	checkpoint_stop(&w->ckpt);
	for (list = workq_take_all(&w->done); (m = list) != NULL; ) {
		list = m->next;
		writer_msg_free(&m);
	}
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(w->st[i]);
	sqlite3_finalize(w->prepend_wanted);
	store_keys_free(&w->keys);
	store_close(&w->db);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	pthread_cond_destroy(&w->sign_cond);
	pthread_cond_destroy(&w->signed_cond);
	pthread_cond_destroy(&w->prep_cond);
	pthread_cond_destroy(&w->prepended_cond);
	sodium_memzero(&w->active, sizeof(w->active));
	sodium_memzero(&w->previous, sizeof(w->previous));
	free(w->db_path);
	free(w->issuer);
	free(w->chunk);
	free(w);
	*wp = NULL;
}
