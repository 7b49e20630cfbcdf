/*
 * body_stream.c: see body_stream.h.
 */
#include "db/body_stream.h"

#include <stdlib.h>

#include <sqlite3.h>

#include "db/queue.h"
#include "db/writer.h"
#include "server/base/util.h"

struct body_stream {
	struct writer_job job;
	struct writer *w;
	body_stream_cb *cb;
	void *owner;                  /* NULL: the owner went meanwhile */
	bool busy;                    /* job is with the writer */
	int64_t message_id, off;
	size_t n;
	int rc;
	char err[200];
	char buf[BODY_STREAM_PIECE];
};

/* On the writer thread. */
static int
read_run(sqlite3 *db, void *arg)
{
	struct body_stream *bs = arg;

	bs->rc = queue_body_read(db, bs->message_id, bs->off, bs->buf, bs->n, bs->err, sizeof(bs->err));
	return SQLITE_OK;       /* nothing to commit; the outcome is bs->rc */
}

static void
read_done(struct writer_job *job)
{
	struct body_stream *bs = job->arg;

	bs->busy = false;
	if (bs->owner == NULL) {
		free(bs);
		return;
	}
	if (job->rc != SQLITE_OK)
		bs->cb(bs->owner, NULL, 0, sqlite3_errstr(job->rc));
	else if (bs->rc != SQLITE_OK)
		bs->cb(bs->owner, NULL, 0, bs->err);
	else
		bs->cb(bs->owner, bs->buf, bs->n, NULL);
}

struct body_stream *
body_stream_new(struct writer *w, body_stream_cb *cb, void *owner)
{
	struct body_stream *bs = xmalloc(sizeof(*bs));

	bs->job.run = read_run;
	bs->job.done = read_done;
	bs->job.arg = bs;
	bs->w = w;
	bs->cb = cb;
	bs->owner = owner;
	bs->busy = false;
	return bs;
}

void
body_stream_read(struct body_stream *bs, int64_t message_id, int64_t off, size_t n)
{
	bs->message_id = message_id;
	bs->off = off;
	bs->n = n < BODY_STREAM_PIECE ? n : BODY_STREAM_PIECE;
	bs->busy = true;
	writer_job_submit(bs->w, &bs->job);
}

bool
body_stream_busy(const struct body_stream *bs)
{
	return bs != NULL && bs->busy;
}

void
body_stream_free(struct body_stream **bsp)
{
	struct body_stream *bs = *bsp;

	if (bs == NULL)
		return;
	*bsp = NULL;
	if (bs->busy)
		bs->owner = NULL;       /* read_done frees it */
	else
		free(bs);
}
