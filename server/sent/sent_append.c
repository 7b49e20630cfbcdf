/*
 * sent_append.c: the APPEND of one filing job (see sent.h and
 * sent_imap.c). First the mark: a writer job sets the job's append_sent
 * and names the mailbox, and only once that is committed does the APPEND
 * go out, so that a try cut short after it is always looked for before
 * another APPEND (exactly once). Then "APPEND mailbox (\Seen) date {n}"
 * (LITERAL+ when offered, else after the server's continuation) and the
 * stored body, unchanged, in pieces read by writer jobs while the loop
 * goes on (db/body_stream.h), as the relay streams it. The tagged answer
 * is sent_imap.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "db/body_stream.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/protocol/imap_parse.h"
#include "server/sent/sent_internal.h"

struct mark {
	struct writer_job job;
	struct sent_conn *c;          /* NULL: the connection went meanwhile */
	int64_t message_id;
	char mailbox[256];
	int rc;
	char err[200];
};

static int
mark_run(sqlite3 *db, void *arg)
{
	struct mark *m = arg;

	m->rc = sent_mark_append(db, m->message_id, m->mailbox, m->err, sizeof(m->err));
	return m->rc;
}

static void
mark_done(struct writer_job *job)
{
	struct mark *m = job->arg;
	struct sent_conn *c = m->c;

	if (c == NULL) {
		free(m);
		return;
	}
	c->mk = NULL;
	if (job->rc != SQLITE_OK) {
		log_err("event=sent_mark_failed msgid=%s error=\"%s\"", c->task->public_id,
		    m->rc != SQLITE_OK ? m->err : sqlite3_errstr(job->rc));
		free(m);
		sent_conn_fail(c, "cannot record the job before appending");
		return;
	}
	free(m);
	c->task->append_sent = true;
	sent_start_append(c);
}

void
sent_send_append(struct sent_conn *c)
{
	char q[600], date[32];

	if (imap_quote(c->mailbox, q, sizeof(q)) == 0) {
		sent_conn_fail(c, "mailbox name cannot be quoted");
		return;
	}
	imap_date_time_format(c->task->received_s, date);
	c->body_off = 0;
	if (c->caps & IMAP_CAP_LITERAL_PLUS) {
		sent_send_cmd(c, I_BODY, "APPEND %s (\\Seen) \"%s\" {%lld+}", q, date, (long long)c->task->size);
		/* the pump starts from the write callback, or here if idle */
		bufferevent_trigger(c->bev, EV_WRITE, 0);
	} else {
		sent_send_cmd(c, I_APPEND, "APPEND %s (\\Seen) \"%s\" {%lld}", q, date, (long long)c->task->size);
	}
}

void
sent_start_append(struct sent_conn *c)
{
	struct mark *m;

	if (c->task->append_sent && c->task->mailbox && strcmp(c->task->mailbox, c->mailbox) == 0) {
		sent_send_append(c);
		return;
	}
	m = xcalloc(1, sizeof(*m));
	m->c = c;
	m->message_id = c->task->message_id;
	snprintf(m->mailbox, sizeof(m->mailbox), "%s", c->mailbox);
	free(c->task->mailbox);
	c->task->mailbox = xstrdup(c->mailbox);
	m->job.run = mark_run;
	m->job.done = mark_done;
	m->job.arg = m;
	c->mk = m;
	c->state = I_MARKING;
	writer_job_submit(c->s->srv->writer, &m->job);
}

static void
body_piece(void *owner, const char *buf, size_t n, const char *err)
{
	struct sent_conn *c = owner;

	if (err != NULL) {
		log_err("event=sent_body_read_failed msgid=%s error=\"%s\"", c->task->public_id, err);
		sent_conn_fail(c, "cannot read the stored message");
		return;
	}
	c->body_off += (int64_t)n;
	bufferevent_write(c->bev, buf, n);
	sent_body_pump(c);
}

void
sent_body_pump(struct sent_conn *c)
{
	struct sent_task *t = c->task;
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (body_stream_busy(c->body) || c->state != I_BODY)
		return;
	if (evbuffer_get_length(out) >= OUT_HIGH)
		return;
	if (c->body_off < t->size) {
		if (c->body == NULL)
			c->body = body_stream_new(c->s->srv->writer, body_piece, c);
		body_stream_read(c->body, t->message_id, c->body_off, (size_t)(t->size - c->body_off));
		return;
	}
	/* the literal is out: the command's line ends */
	bufferevent_write(c->bev, "\r\n", 2);
	c->state = I_APPENDED;
	if (c->refused) {
		c->refused = false;
		if (c->refused_trycreate && !c->created) {
			c->created = true;
			sent_send_with_mailbox(c, I_CREATE, "CREATE");
		} else {
			char why[300];
			snprintf(why, sizeof(why), "APPEND refused: %s", c->refused_text);
			sent_conn_fail(c, why);
		}
	}
}

void
sent_append_forget(struct sent_conn *c)
{
	body_stream_free(&c->body);
	if (c->mk)
		c->mk->c = NULL;        /* likewise */
	c->mk = NULL;
}
