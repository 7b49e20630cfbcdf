/*
 * checkpoint.c: see checkpoint.h. One thread, one connection; the
 * writer's connection wakes it from its WAL hook, which SQLite calls after
 * each commit, once the write lock is released.
 */
#include "db/checkpoint.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "db/store.h"
#include "server/base/log.h"
#include "server/base/util.h"

/* From twice the threshold the thread copies every sixteenth of it (at least
 * CHASE_MIN frames, more than one commit writes), and the writer finishes
 * a checkpoint when at most that is left; at eight times, the thread
 * stops starting passes and the writer checkpoints whatever is left. */
#define CHASE_FACTOR 2
#define CHASE_SHARE 16
#define CHASE_MIN 64
#define WRITER_FACTOR 8

struct checkpointer {
	sqlite3 *db;                /* the thread's own connection */
	sqlite3 *writer_db;         /* whose hook we hold */
	int pages;

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* under lock */
	int seen;                   /* frames in the WAL at the last commit */
	int copied;                 /* frames copied by the last pass */
	bool wanted, running, stopping;
};

/* On the writer thread, after each of its commits. Must be cheap: one
 * uncontended lock, and a checkpoint only when the thread fell behind. */
static int
wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
	struct checkpointer *c = arg;
	int log_frames = 0, ckpt_frames = 0, rc, left;
	int chase = c->pages / CHASE_SHARE > CHASE_MIN ? c->pages / CHASE_SHARE : CHASE_MIN;
	bool chasing = frames >= CHASE_FACTOR * c->pages, over = frames >= WRITER_FACTOR * c->pages;
	bool finish;
	uint64_t start;

	pthread_mutex_lock(&c->lock);
	if (frames < c->seen)
		c->copied = 0;      /* the WAL started over */
	c->seen = frames;
	left = frames - c->copied;
	if (!over && !c->running && !c->wanted && left >= (chasing ? chase : c->pages)) {
		c->wanted = true;
		pthread_cond_signal(&c->cond);
	}
	/* over: a pass of the thread under way makes this one SQLITE_BUSY,
	 * and no new one starts, so the next commit's gets through */
	finish = (chasing && !c->running && left <= chase) || over;
	pthread_mutex_unlock(&c->lock);
	if (!finish)
		return SQLITE_OK;

	/* Between two of the writer's commits nothing is appended, so this
	 * one completes (unless a reader holds an old snapshot, or the thread
	 * is in a pass: SQLITE_BUSY, try after the next commit), and the
	 * writer's next transaction starts the WAL over. Usually the thread
	 * has left it a few frames only. */
	start = mono_us();
	rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &log_frames, &ckpt_frames);
	log_debug("event=checkpoint by=writer wal_frames=%d copied=%d rc=%d us=%llu", log_frames,
	    ckpt_frames, rc, (unsigned long long)(mono_us() - start));
	return SQLITE_OK;
}

static void *
checkpoint_main(void *arg)
{
	struct checkpointer *c = arg;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->wanted && !c->stopping)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->stopping)
			break;
		c->wanted = false;
		c->running = true;
		pthread_mutex_unlock(&c->lock);

		int log_frames = 0, ckpt_frames = 0;
		uint64_t start = mono_us();
		int rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
		    &ckpt_frames);
		if (rc != SQLITE_OK && rc != SQLITE_BUSY)
			log_warn("event=checkpoint_failed error=\"%s\" sqlite_code=%d", sqlite3_errmsg(c->db), rc);
		log_debug("event=checkpoint by=thread wal_frames=%d copied=%d rc=%d us=%llu", log_frames,
		    ckpt_frames, rc, (unsigned long long)(mono_us() - start));

		pthread_mutex_lock(&c->lock);
		c->running = false;
		/* The WAL may have started over during the pass: then its
		 * figures are of a file that is gone. */
		if (rc == SQLITE_OK && log_frames <= c->seen)
			c->copied = ckpt_frames;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

struct checkpointer *
checkpoint_start(const char *db_path, sqlite3 *writer_db, int pages, char *err, size_t errlen)
{
	struct checkpointer *c = xcalloc(1, sizeof(*c));

	c->writer_db = writer_db;
	c->pages = pages > 0 ? pages : 1;
	c->db = store_open(db_path, err, errlen);
	if (c->db == NULL) {
		free(c);
		return NULL;
	}
	/* Its own connection never commits, so never checkpoints by itself. */
	sqlite3_wal_autocheckpoint(c->db, 0);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	if (pthread_create(&c->thread, NULL, checkpoint_main, c) != 0) {
		snprintf(err, errlen, "cannot start the checkpoint thread");
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->cond);
		store_close(&c->db);
		free(c);
		return NULL;
	}
	pthread_setname_np(c->thread, "sd-checkpoint");
	/* Replaces the connection's automatic checkpoint, which is a WAL
	 * hook too. */
	sqlite3_wal_hook(writer_db, wal_hook, c);
	return c;
}

void
checkpoint_stop(struct checkpointer **cp)
{
	struct checkpointer *c = *cp;

	if (c == NULL)
		return;
	sqlite3_wal_autocheckpoint(c->writer_db, 1000);   /* SQLite's default */
	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	store_close(&c->db);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
	*cp = NULL;
}
