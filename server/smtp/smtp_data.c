/*
 * smtp_data.c: the transaction of a session. The envelope is reset here;
 * a DATA or BDAT body is received, checked and kept (in memory up to
 * body_memory, then in an unlinked spool file); at its end the message is
 * refused or handed to the writer, and the writer's answer becomes the
 * 250 with its token lines (or a 451/452).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "db/writer.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/limits/limits.h"
#include "server/protocol/smtp_reply.h"
#include "server/runtime/server.h"
#include "server/smtp/smtp_session_internal.h"

/* body output: one per thread, since each SMTP loop runs its own (smtp.threads) */
static _Thread_local uint8_t scratch[64 * 1024 + 2];

static void
body_discard(struct smtp_session *s)
{
	if (s->body_mem) {
		evbuffer_free(s->body_mem);
		s->body_mem = NULL;
	}
	if (s->spool_fd != -1) {
		close(s->spool_fd);
		s->spool_fd = -1;
	}
}

void
session_transaction_reset(struct smtp_session *s)
{
	for (size_t i = 0; i < s->nrcpt; i++)
		free(s->rcpts[i]);
	xfreep(&s->rcpts);
	s->nrcpt = 0;
	memset(&s->mail, 0, sizeof(s->mail));
	s->bdat_used = false;
	s->bdat_remaining = 0;
	s->bdat_last = false;
	s->bdat_refusal = NULL;
	s->too_big = s->spool_failed = false;
	s->spool_errno = 0;
	body_discard(s);
	if (s->state != SMTP_INIT)
		session_enter_state(s, SMTP_HELO);
}

static void
body_begin(struct smtp_session *s, enum smtp_body_mode mode)
{
	smtp_body_init(&s->body, mode, 998);
	/* OpenSSL's SHA-256, not libsodium's: it uses the CPU's SHA
	 * instructions, about five times faster here (docs/performance.md). */
	if (s->sha == NULL && (s->sha = EVP_MD_CTX_new()) == NULL)
		abort();
	if (EVP_DigestInit_ex(s->sha, EVP_sha256(), NULL) != 1)
		abort();
	s->body_mem = evbuffer_new();
	s->spool_fd = -1;
	s->too_big = s->spool_failed = false;
}

static int
spool_open(struct server *srv)
{
	int fd = open(srv->spool_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd == -1) {
		/* Filesystems without O_TMPFILE: a named file, unlinked at once. */
		char *tmpl = path_join(srv->spool_dir, "body.XXXXXX");
		fd = mkostemp(tmpl, O_CLOEXEC);
		if (fd != -1)
			unlink(tmpl);
		free(tmpl);
	}
	return fd;
}

static bool
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* Keep the body in memory up to body_memory octets, then in an unlinked
 * spool file, so a session's memory does not grow with the message. */
static void
body_sink(struct smtp_session *s, const uint8_t *p, size_t len)
{
	struct config *cfg = s->srv->cfg;

	if (len == 0 || s->too_big)
		return;
	if (s->body.size > (uint64_t)cfg->max_message_size) {
		s->too_big = true;
		body_discard(s);
		return;
	}
	EVP_DigestUpdate(s->sha, p, len);
	if (s->spool_failed)
		return;
	if (s->spool_fd == -1 &&
	    evbuffer_get_length(s->body_mem) + len <= (size_t)cfg->body_memory) {
		evbuffer_add(s->body_mem, p, len);
		return;
	}
	if (s->spool_fd == -1) {
		struct evbuffer_iovec v[16];
		int n;

		s->spool_fd = spool_open(s->srv);
		if (s->spool_fd == -1) {
			s->spool_errno = errno;
			log_err("event=spool_failed session=%016llx error=\"%s\"", (unsigned long long)s->id,
			    strerror(errno));
			s->spool_failed = true;
			return;
		}
		while ((n = evbuffer_peek(s->body_mem, -1, NULL, v, 16)) > 0) {
			size_t done = 0;
			for (int i = 0; i < n && i < 16; i++) {
				if (!write_all(s->spool_fd, v[i].iov_base, v[i].iov_len)) {
					s->spool_errno = errno;
					s->spool_failed = true;
					break;
				}
				done += v[i].iov_len;
			}
			evbuffer_drain(s->body_mem, done);
			if (s->spool_failed)
				break;
		}
	}
	if (!s->spool_failed && !write_all(s->spool_fd, p, len)) {
		s->spool_errno = errno;
		log_err("event=spool_failed session=%016llx error=\"%s\"", (unsigned long long)s->id, strerror(errno));
		s->spool_failed = true;
	}
}

static const char *
body_type_name(enum smtp_body_type t)
{
	switch (t) {
	case SMTP_BODY_8BITMIME: return "8BITMIME";
	case SMTP_BODY_BINARYMIME: return "BINARYMIME";
	default: return "7BIT";
	}
}

/* The end of DATA or BDAT LAST: refuse what must be refused, otherwise
 * hand the message to the writer and wait for the commit. */
void
session_message_end(struct smtp_session *s)
{
	struct server *srv = s->srv;
	struct writer_msg *m;
	uint8_t digest[32];
	unsigned f = s->body.flags;

	if (s->too_big) {
		STAT_ADD(srv->stats.messages_refused[REFUSE_TOO_BIG], 1);
		session_reply_error(s, "552 5.3.4 Message size exceeds fixed maximum message size (%lld)",
		    (long long)srv->cfg->max_message_size);
		log_info("event=message_refused session=%016llx reason=too_big", (unsigned long long)s->id);
		session_transaction_reset(s);
		return;
	}
	if (f & (SMTP_BODY_BARE_CR | SMTP_BODY_BARE_LF)) {
		/* RFC 5321 2.3.8: CR and LF only as CRLF. Accepting bare ones is
		 * what made the 2023 smuggling attacks possible downstream. */
		STAT_ADD(srv->stats.messages_refused[REFUSE_BARE_CR_LF], 1);
		session_reply_error(s, "550 5.5.2 Message refused: bare CR or LF in message content (RFC 5321 2.3.8)");
		log_info("event=message_refused session=%016llx reason=bare_cr_lf", (unsigned long long)s->id);
		session_transaction_reset(s);
		return;
	}
	if (f & SMTP_BODY_NUL) {
		STAT_ADD(srv->stats.messages_refused[REFUSE_NUL], 1);
		session_reply_error(s, "550 5.6.0 Message refused: NUL octet in message content");
		log_info("event=message_refused session=%016llx reason=nul", (unsigned long long)s->id);
		session_transaction_reset(s);
		return;
	}
	if (f & SMTP_BODY_LONG_LINE) {
		STAT_ADD(srv->stats.messages_refused[REFUSE_LONG_LINE], 1);
		session_reply_error(s, "550 5.6.0 Message refused: line longer than 998 octets (RFC 5322 2.1.1)");
		log_info("event=message_refused session=%016llx reason=long_line", (unsigned long long)s->id);
		session_transaction_reset(s);
		return;
	}
	if (s->spool_failed) {
		STAT_ADD(srv->stats.messages_refused[REFUSE_STORAGE], 1);
		if (s->spool_errno == ENOSPC || s->spool_errno == EDQUOT)
			session_reply(s, "452 4.3.1 Insufficient system storage, try again later");
		else
			session_reply(s, "451 4.3.0 Local error in processing, try again later");
		session_transaction_reset(s);
		return;
	}

	m = writer_msg_new();
	public_id_new(m->public_id);
	m->received_ms = now_ms();
	m->auth_login = s->login ? xstrdup(s->login) : NULL;
	snprintf(m->client_address, sizeof(m->client_address), "%s", s->peer);
	m->helo = xstrdup(s->helo ? s->helo : "");
	m->envelope_from = xstrdup(s->mail.address);
	m->body_type = body_type_name(s->mail.body);
	m->smtputf8 = s->mail.smtputf8;
	m->rcpts = s->rcpts;
	m->nrcpt = s->nrcpt;
	s->rcpts = NULL;
	s->nrcpt = 0;
	m->size = s->body.size;
	EVP_DigestFinal_ex(s->sha, digest, NULL);
	hex_encode(digest, sizeof(digest), m->sha256_hex);
	if (s->spool_fd != -1) {
		m->spool_fd = s->spool_fd;
		s->spool_fd = -1;
	} else {
		size_t n = evbuffer_get_length(s->body_mem);
		m->body = xmalloc(n);
		evbuffer_remove(s->body_mem, m->body, n);
	}
	m->owner = s;
	m->loop = s->loop->index;
	s->pending = m;
	s->waiting = true;
	session_transaction_reset(s);
	srv->smtp_backend->submit(srv->smtp_backend->ctx, m);
}

static void
message_stored(struct smtp_session *s, struct writer_msg *m)
{
	struct server *srv = s->srv;
	char line[SMTP_REPLY_LINE_MAX + 1];

	switch (m->status) {
	case WRITER_OK:
		break;
	case WRITER_FULL:
		STAT_ADD(srv->stats.messages_refused[REFUSE_STORAGE], 1);
		log_warn("event=message_refused session=%016llx msgid=%s reason=storage storage=full",
		    (unsigned long long)s->id, m->public_id);
		session_reply(s, "452 4.3.1 Insufficient system storage, try again later");
		return;
	default:
		STAT_ADD(srv->stats.messages_refused[REFUSE_STORAGE], 1);
		log_warn("event=message_refused session=%016llx msgid=%s reason=storage storage=%s",
		    (unsigned long long)s->id, m->public_id, m->status == WRITER_BUSY ? "locked" : "error");
		session_reply(s, "451 4.3.0 Local error in processing, try again later");
		return;
	}
	if (m->duplicate) {
		/* counted in smtp_session_writer_done; the answer is for the
		 * message stored before, which public_id names now */
		log_info("event=duplicate session=%016llx msgid=%s original=%s user=%s size=%llu rcpts=%zu "
		    "sha256=%.16s", (unsigned long long)s->id, m->submitted_id, m->public_id, m->auth_login,
		    (unsigned long long)m->size, m->nrcpt, m->sha256_hex);
	} else {
		STAT_ADD(srv->stats.messages_accepted, 1);
		STAT_ADD(srv->stats.bytes_accepted, m->size);
		stats_commit_latency(&srv->stats, m->commit_us);
		log_info("event=message_accepted session=%016llx msgid=%s user=%s size=%llu rcpts=%zu "
		    "sha256=%.16s commit_us=%llu", (unsigned long long)s->id, m->public_id,
		    m->auth_login ? m->auth_login : "-", (unsigned long long)m->size, m->nrcpt, m->sha256_hex,
		    (unsigned long long)m->commit_us);
	}
	if (m->tokens == NULL) {
		size_t n = smtp_reply_saved_line(line, m->public_id);
		session_reply_raw(s, line, n);
		return;
	}
	for (size_t i = 0; i <= m->nrcpt; i++) {
		bool last = i == m->nrcpt;
		size_t n = smtp_reply_token_line(line, last, last ? m->envelope_from : m->rcpts[i], m->tokens[i]);
		if (n == 0) {   /* cannot happen with TOKEN_MAX_LEN; never send a broken reply */
			n = smtp_reply_saved_line(line, m->public_id);
			session_reply_raw(s, line, n);
			return;
		}
		session_reply_raw(s, line, n);
		if (log_enabled(LOG_LVL_DEBUG)) {
			char shorttok[LOG_TOKEN_SHORT];
			log_debug("event=token_issued session=%016llx msgid=%s token=%s", (unsigned long long)s->id,
			    m->public_id, log_token_short(shorttok, m->tokens[i]));
		}
	}
	STAT_ADD(srv->stats.tokens_issued, m->nrcpt + 1);
}

size_t
smtp_session_writer_done(struct smtp_loop *loop, struct writer_msg *done)
{
	struct server *srv = loop->srv;
	struct writer_msg *list = done, *m;
	size_t committed = 0;

	while ((m = list) != NULL) {
		struct smtp_session *s = m->owner;
		list = m->next;
		/* A duplicate stored nothing: nothing for the relay or the
		 * limits (it was counted when first stored). */
		if (m->status == WRITER_OK && m->duplicate)
			STAT_ADD(srv->stats.duplicates, 1);
		committed += m->status == WRITER_OK && !m->duplicate;
		/* counted once committed, whether or not its client still waits */
		if (m->status == WRITER_OK && !m->duplicate && srv->limits != NULL)
			limits_count(srv->limits, m->auth_login, m->client_address, m->nrcpt, m->received_ms);
		if (s != NULL) {
			s->pending = NULL;
			s->waiting = false;
			s->corked++;            /* the token lines in one write */
			message_stored(s, m);
			if (--s->corked == 0)
				session_reply_flush(s);
			writer_msg_free(&m);
			if (!s->closing && loop->draining) {
				session_reply(s, "421 4.3.2 %s Service shutting down", srv->cfg->hostname);
				session_close(s, "shutdown");
			}
			session_resume(s);
		} else {
			if (m->status != WRITER_OK)
				log_info("event=store_failed_after_disconnect msgid=%s", m->public_id);
			else if (m->duplicate)
				log_info("event=duplicate msgid=%s original=%s user=%s note=\"client gone\"",
				    m->submitted_id, m->public_id, m->auth_login);
			writer_msg_free(&m);
		}
	}
	return committed;
}

void
session_cmd_data(struct smtp_session *s, const char *args, size_t len)
{
	if (s->mail.body == SMTP_BODY_BINARYMIME) {
		/* RFC 3030 3: BINARYMIME content goes with BDAT only. */
		session_reply_error(s, "503 5.5.1 Error: BODY=BINARYMIME requires BDAT");
		return;
	}
	body_begin(s, SMTP_BODY_MODE_DATA);
	session_enter_state(s, SMTP_DATA);
	session_reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

void
session_cmd_bdat(struct smtp_session *s, const char *args, size_t len)
{
	struct config *cfg = s->srv->cfg;
	/* dispatch() has judged the state already; the verdict waits for
	 * the chunk to be read (CMD_CHUNK). */
	const char *refusal = s->bdat_refusal;
	uint64_t size;
	bool last;

	s->bdat_refusal = NULL;
	if (smtp_bdat_parse(args, len, &size, &last) != SMTP_PARSE_OK) {
		/* Without a size we cannot know where the chunk ends: the octets
		 * that follow will be read as commands, as in every server. */
		session_reply_error(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	if (size > (uint64_t)cfg->max_message_size) {
		/* Reading (and throwing away) gigabytes to stay in sync is a gift
		 * to an attacker; refuse and hang up instead. */
		session_reply(s, "552 5.3.4 Chunk exceeds maximum message size (%lld), closing connection",
		    (long long)cfg->max_message_size);
		session_close(s, "bdat_too_big");
		return;
	}
	s->bdat_remaining = size;
	s->bdat_chunk = size;
	s->bdat_last = last;
	s->bdat_prev = s->state;
	/* A refused BDAT still has its chunk on the wire: read it, throw it
	 * away, and answer after it (RFC 3030 2). */
	s->bdat_refusal = refusal;
	if (refusal == NULL && !s->bdat_used) {
		s->bdat_used = true;
		body_begin(s, s->mail.body == SMTP_BODY_BINARYMIME ? SMTP_BODY_MODE_BINARY : SMTP_BODY_MODE_BDAT);
	}
	session_enter_state(s, SMTP_BDAT);
}

/* Consume DATA body octets from in; true when the terminator was seen. */
bool
session_data_consume(struct smtp_session *s, struct evbuffer *in)
{
	struct evbuffer_iovec v[16];
	size_t total = 0;
	bool done = false;
	int n = evbuffer_peek(in, -1, NULL, v, 16);

	for (int i = 0; i < n && i < 16 && !done; i++) {
		const uint8_t *p = v[i].iov_base;
		size_t len = v[i].iov_len;
		while (len > 0 && !done) {
			size_t slice = len < sizeof(scratch) - 2 ? len : sizeof(scratch) - 2, outlen = 0, c;
			c = smtp_body_feed(&s->body, p, slice, scratch, &outlen, &done);
			body_sink(s, scratch, outlen);
			p += c;
			len -= c;
			total += c;
		}
	}
	evbuffer_drain(in, total);
	return done;
}

static void
bdat_chunk_done(struct smtp_session *s)
{
	if (s->bdat_refusal != NULL) {
		const char *refusal = s->bdat_refusal;
		s->bdat_refusal = NULL;
		session_enter_state(s, s->bdat_prev);
		if (s->bdat_last && (s->state == SMTP_MAIL || s->state == SMTP_RCPT))
			session_transaction_reset(s);
		session_reply_error(s, "%s", refusal);
		return;
	}
	session_enter_state(s, SMTP_RCPT);
	if (s->bdat_last) {
		smtp_body_finish(&s->body);
		session_message_end(s);
		return;
	}
	session_reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->bdat_chunk);
}

void
session_bdat_consume(struct smtp_session *s, struct evbuffer *in)
{
	while (s->bdat_remaining > 0) {
		struct evbuffer_iovec v;
		size_t take, outlen = 0;
		bool done = false;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
			return;
		take = v.iov_len;
		if (take > s->bdat_remaining)
			take = (size_t)s->bdat_remaining;
		if (take > sizeof(scratch) - 2)
			take = sizeof(scratch) - 2;
		if (s->bdat_refusal == NULL) {
			smtp_body_feed(&s->body, v.iov_base, take, scratch, &outlen, &done);
			body_sink(s, scratch, outlen);
		}
		evbuffer_drain(in, take);
		s->bdat_remaining -= take;
	}
	bdat_chunk_done(s);
}
