/*
 * smtp_output.c: the session's replies. Every reply goes through the cork
 * so that a pipelined group (RFC 2920) is answered in one write; a client
 * error is counted here too, and a client that keeps making them is shown
 * the door.
 *
 * Every reply carries an enhanced status code (RFC 2034, RFC 3463) except
 * the greeting, the EHLO/HELO answer and the intermediate 334/354, which
 * RFC 2034 3 exempts.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "server/base/line.h"
#include "server/base/log.h"
#include "server/protocol/smtp_reply.h"
#include "server/runtime/server.h"
#include "server/smtp/smtp_session_internal.h"

/*
 * Replies leave through the cork. While a batch of commands is processed
 * (session_process) or a multi-line reply is built, they collect there and
 * go out together; otherwise at once. On a plain connection with nothing
 * queued before them they are written straight to the socket: through the
 * bufferevent, each reply would cost enabling and disabling its write
 * event (two epoll_ctl calls) and would only leave on the next pass of the
 * loop, after every other session's ready input. What the socket does not
 * take, and everything on TLS, goes through the bufferevent as before.
 */
void
session_reply_flush(struct smtp_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	size_t len = evbuffer_get_length(s->cork);

	if (len == 0)
		return;
	/* The reply the client waits for leaves now: what it sent before
	 * this point did not wait for it; what comes after may. A reply
	 * still being worked on (s->waiting) is not this one. */
	if (s->sync_wait && !s->waiting) {
		if (!session_sync_check(s))
			s->sync_wait = false;
		len = evbuffer_get_length(s->cork);
	}
	if (!s->tls && evbuffer_get_length(out) == 0) {
		ssize_t n = send(bufferevent_getfd(s->bev), evbuffer_pullup(s->cork, -1), len,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
		/* EAGAIN or an error: the bufferevent writes it, and reports
		 * the error, as it would have without us. */
		if (n > 0)
			evbuffer_drain(s->cork, (size_t)n);
	}
	evbuffer_add_buffer(out, s->cork);
}

void
session_reply_raw(struct smtp_session *s, const char *line, size_t len)
{
	if (s->silenced)
		return;
	evbuffer_add(s->cork, line, len);
	if (s->corked == 0)
		session_reply_flush(s);
}

void
session_reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void
session_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_LINE_MAX + 1];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = line_vformat(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		session_reply_raw(s, line, n);
}

/* A client error: reply, count it, and give up on clients that keep
 * making them (RFC 5321 does not bound this; every server does). */
void
session_reply_error(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void
session_reply_error(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_LINE_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	session_reply(s, "%s", line);
	if (++s->errors >= s->srv->cfg->max_errors) {
		session_reply(s, "421 4.7.0 %s Too many errors, closing connection", s->srv->cfg->hostname);
		session_close(s, "too_many_errors");
	}
}

void
session_log_bad_input(struct smtp_session *s, const char *what, const char *buf, size_t len)
{
	char sample[LOG_SAMPLE * 4 + 8];

	/* A refused SASL line or AUTH command still carries credentials. */
	if (s->state == SMTP_AUTH || (len >= 4 && strncasecmp(buf, "AUTH", 4) == 0)) {
		log_info("event=bad_input session=%016llx what=%s sample=\"********\"", (unsigned long long)s->id, what);
		return;
	}
	log_info("event=bad_input session=%016llx what=%s sample=%s", (unsigned long long)s->id, what,
	    log_sanitize(sample, sizeof(sample), buf, len, LOG_SAMPLE));
}
