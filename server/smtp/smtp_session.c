/*
 * smtp_session.c: the SMTP submission dialogue.
 *
 * The dialogue is a table of verbs (commands[] below). Each row carries
 * flags that are checked in one place before its handler runs: whether
 * the verb takes arguments, whether EHLO/HELO must have been said, whether
 * the client must be authenticated (or in a trusted network). Handlers
 * only deal with their own verb.
 *
 * Input is parsed from the bufferevent's input buffer in order, so a
 * pipelined group (RFC 2920) is answered in order with replies collected
 * in the output buffer and written together. Work that cannot be done on
 * the loop (password checks, the database commit) sets `waiting`: parsing
 * stops and resumes when the answer comes back, so later commands of the
 * group are never answered before earlier ones.
 *
 * Every reply carries an enhanced status code (RFC 2034, RFC 3463) except
 * the greeting, the EHLO/HELO answer and the intermediate 334/354, which
 * RFC 2034 3 exempts.
 */
#include "server/smtp/smtp_session.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "db/writer.h"
#include "server/auth/auth.h"
#include "server/base/line.h"
#include "server/base/log.h"
#include "server/base/netaddr.h"
#include "server/protocol/sasl.h"
#include "server/runtime/server.h"
#include "server/protocol/smtp_body.h"
#include "server/protocol/smtp_parse.h"
#include "server/protocol/smtp_reply.h"
#include "server/base/throttle.h"
#include "server/base/util.h"
#include "tokens/token.h"

/* RFC 4954 4: a SASL response line may be longer than a command line. */
#define AUTH_LINE_MAX 12288
/* Stop parsing input while this much output waits for a client that does
 * not read its replies (a pipelining flood must not grow memory). */
#define OUTPUT_HIGH (64 * 1024)
/* The input buffer is not read beyond this while a command waits. */
#define INPUT_HIGH (256 * 1024)
#define HELO_MAX 255
/* Most a TLS session decrypts per read, in commands and in a body.
 * libevent's OpenSSL filter reserves this much in the input buffer before
 * each SSL_read, and the reservation of the read that found nothing stays:
 * at 16 KB (libevent's default) an idle TLS session held 29 KB of RSS, at
 * 1 KB 21 KB. Commands are short; a body gets full records in one read. */
#define TLS_COMMAND_READ 1024
#define TLS_BODY_READ (16 * 1024)
#define LOG_SAMPLE 64

enum smtp_state {
	SMTP_INIT = 0,      /* connected, no EHLO/HELO yet */
	SMTP_HELO,          /* greeted, no transaction */
	SMTP_MAIL,          /* MAIL accepted */
	SMTP_RCPT,          /* at least one RCPT accepted */
	SMTP_DATA,          /* reading a DATA body */
	SMTP_BDAT,          /* reading a BDAT chunk */
	SMTP_AUTH,          /* in a SASL exchange */
	SMTP_STATE_COUNT
};

static const char *const state_names[SMTP_STATE_COUNT] = {
	"init", "helo", "mail", "rcpt", "data", "bdat", "auth",
};

enum sasl_step { SASL_STEP_NONE = 0, SASL_STEP_PLAIN, SASL_STEP_LOGIN_USER, SASL_STEP_LOGIN_PASS };

struct smtp_session {
	uint64_t id;
	struct server *srv;
	struct bufferevent *bev;
	char peer[64];
	struct sockaddr_storage peer_sa;
	bool loopback, trusted;
	bool tls, implicit_tls;
	enum smtp_state state;
	char *helo;
	bool esmtp;
	int errors;
	bool waiting;           /* auth, store or a delay is outstanding */
	bool closing;           /* close once the output is flushed */
	bool out_blocked;
	bool discard_line;      /* skipping the rest of an over-long line */
	int flush_polls;        /* closing: checks for the last reply to leave */
	struct event *timer;    /* total session time, then auth delays */
	struct event *delay;    /* delayed auth failure reply; closing: the close */
	char *delayed_reply;
	struct evbuffer *cork;  /* replies not sent yet (reply_flush) */
	int corked;             /* > 0: hold replies until reply_flush */

	/* authentication */
	enum sasl_step sasl;
	char sasl_user[SASL_ID_MAX + 1];
	char *login;            /* authenticated login, NULL before */
	char **addresses;       /* its extra sender addresses */
	struct auth_request *auth_req;

	/* the transaction */
	struct smtp_mail mail;
	char **rcpts;
	size_t nrcpt;
	bool bdat_used;         /* this transaction uses BDAT (no DATA) */
	uint64_t bdat_remaining;
	bool bdat_last;
	uint64_t bdat_chunk;    /* size of the chunk being read */
	enum smtp_state bdat_prev;
	int bdat_error;         /* reply code for a chunk read only to be discarded */
	const char *bdat_error_text;
	struct smtp_body body;
	EVP_MD_CTX *sha;        /* body digest; made at the first DATA/BDAT */
	struct evbuffer *body_mem;
	int spool_fd;
	bool too_big, spool_failed;
	int spool_errno;        /* why the spool failed: ENOSPC is a 452 */
	struct writer_msg *pending;
	uint64_t line_started_us;  /* first octet of an incomplete command line (0: none) */

	struct smtp_session *prev, *next;
};

static uint8_t scratch[64 * 1024 + 2];   /* body output; the loop is single-threaded */

static void session_process(struct smtp_session *s);
static void session_process_lines(struct smtp_session *s);
static void session_free(struct smtp_session *s);
static void session_setup_bev(struct smtp_session *s);

/* ------------------------------------------------------------------ */
/* replies                                                            */

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
static void
reply_flush(struct smtp_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	size_t len = evbuffer_get_length(s->cork);

	if (len == 0)
		return;
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

static void
reply_raw(struct smtp_session *s, const char *line, size_t len)
{
	evbuffer_add(s->cork, line, len);
	if (s->corked == 0)
		reply_flush(s);
}

static void
reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_LINE_MAX + 1];
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = line_vformat(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n > 0)
		reply_raw(s, line, n);
}

/* How much a TLS session decrypts per read in state st. */
static size_t
tls_read_size(enum smtp_state st)
{
	return st == SMTP_DATA || st == SMTP_BDAT ? TLS_BODY_READ : TLS_COMMAND_READ;
}

static void
enter_state(struct smtp_session *s, enum smtp_state st)
{
	if (s->state != st)
		log_debug("event=state session=%016llx from=%s to=%s", (unsigned long long)s->id,
		    state_names[s->state], state_names[st]);
	if (s->tls && tls_read_size(st) != tls_read_size(s->state))
		bufferevent_set_max_single_read(s->bev, tls_read_size(st));
	s->state = st;
}

/* Close after the replies queued so far are written. The session is freed
 * later, from the loop (the delay timer below, or the write callback once
 * the output drains): never here, in the middle of a handler that still
 * holds s. */
static void
session_close(struct smtp_session *s, const char *reason)
{
	if (s->closing)
		return;
	s->closing = true;
	log_info("event=disconnect session=%016llx reason=%s", (unsigned long long)s->id, reason);
	bufferevent_disable(s->bev, EV_READ);
	/* A reply written straight to the socket leaves no write callback to
	 * close on: look from the loop, once the caller is done with s. With
	 * work outstanding, its completion does that (or the timeouts). */
	if (!s->waiting) {
		struct timeval now = { 0, 0 };
		evtimer_add(s->delay, &now);
	}
}

/* A client error: reply, count it, and give up on clients that keep
 * making them (RFC 5321 does not bound this; every server does). */
static void
reply_error(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
reply_error(struct smtp_session *s, const char *fmt, ...)
{
	char line[SMTP_REPLY_LINE_MAX + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	reply(s, "%s", line);
	if (++s->errors >= s->srv->cfg->max_errors) {
		reply(s, "421 4.7.0 %s Too many errors, closing connection", s->srv->cfg->hostname);
		session_close(s, "too_many_errors");
	}
}

static void
log_bad_input(struct smtp_session *s, const char *what, const char *buf, size_t len)
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

/* ------------------------------------------------------------------ */
/* the transaction                                                    */

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

static void
transaction_reset(struct smtp_session *s)
{
	for (size_t i = 0; i < s->nrcpt; i++)
		free(s->rcpts[i]);
	xfreep(&s->rcpts);
	s->nrcpt = 0;
	memset(&s->mail, 0, sizeof(s->mail));
	s->bdat_used = false;
	s->bdat_remaining = 0;
	s->bdat_last = false;
	s->bdat_error = 0;
	s->bdat_error_text = NULL;
	s->too_big = s->spool_failed = false;
	s->spool_errno = 0;
	body_discard(s);
	if (s->state != SMTP_INIT)
		enter_state(s, SMTP_HELO);
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
static void
message_end(struct smtp_session *s)
{
	struct server *srv = s->srv;
	struct writer_msg *m;
	uint8_t digest[32];
	unsigned f = s->body.flags;

	if (s->too_big) {
		STAT_ADD(srv->stats.messages_refused[REFUSE_TOO_BIG], 1);
		reply_error(s, "552 5.3.4 Message size exceeds fixed maximum message size (%lld)",
		    (long long)srv->cfg->max_message_size);
		log_info("event=message_refused session=%016llx reason=too_big", (unsigned long long)s->id);
		transaction_reset(s);
		return;
	}
	if (f & (SMTP_BODY_BARE_CR | SMTP_BODY_BARE_LF)) {
		/* RFC 5321 2.3.8: CR and LF only as CRLF. Accepting bare ones is
		 * what made the 2023 smuggling attacks possible downstream. */
		STAT_ADD(srv->stats.messages_refused[REFUSE_BARE_CR_LF], 1);
		reply_error(s, "550 5.5.2 Message refused: bare CR or LF in message content (RFC 5321 2.3.8)");
		log_info("event=message_refused session=%016llx reason=bare_cr_lf", (unsigned long long)s->id);
		transaction_reset(s);
		return;
	}
	if (f & SMTP_BODY_NUL) {
		STAT_ADD(srv->stats.messages_refused[REFUSE_NUL], 1);
		reply_error(s, "550 5.6.0 Message refused: NUL octet in message content");
		log_info("event=message_refused session=%016llx reason=nul", (unsigned long long)s->id);
		transaction_reset(s);
		return;
	}
	if (f & SMTP_BODY_LONG_LINE) {
		STAT_ADD(srv->stats.messages_refused[REFUSE_LONG_LINE], 1);
		reply_error(s, "550 5.6.0 Message refused: line longer than 998 octets (RFC 5322 2.1.1)");
		log_info("event=message_refused session=%016llx reason=long_line", (unsigned long long)s->id);
		transaction_reset(s);
		return;
	}
	if (s->spool_failed) {
		STAT_ADD(srv->stats.messages_refused[REFUSE_STORAGE], 1);
		if (s->spool_errno == ENOSPC || s->spool_errno == EDQUOT)
			reply(s, "452 4.3.1 Insufficient system storage, try again later");
		else
			reply(s, "451 4.3.0 Local error in processing, try again later");
		transaction_reset(s);
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
	s->pending = m;
	s->waiting = true;
	transaction_reset(s);
	writer_submit(srv->writer, m);
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
		reply(s, "452 4.3.1 Insufficient system storage, try again later");
		return;
	default:
		STAT_ADD(srv->stats.messages_refused[REFUSE_STORAGE], 1);
		log_warn("event=message_refused session=%016llx msgid=%s reason=storage storage=%s",
		    (unsigned long long)s->id, m->public_id, m->status == WRITER_BUSY ? "locked" : "error");
		reply(s, "451 4.3.0 Local error in processing, try again later");
		return;
	}
	STAT_ADD(srv->stats.messages_accepted, 1);
	STAT_ADD(srv->stats.bytes_accepted, m->size);
	stats_commit_latency(&srv->stats, m->commit_us);
	log_info("event=message_accepted session=%016llx msgid=%s user=%s size=%llu rcpts=%zu "
	    "sha256=%.16s commit_us=%llu", (unsigned long long)s->id, m->public_id,
	    m->auth_login ? m->auth_login : "-", (unsigned long long)m->size, m->nrcpt, m->sha256_hex,
	    (unsigned long long)m->commit_us);
	if (m->tokens == NULL) {
		size_t n = smtp_reply_saved_line(line, m->public_id);
		reply_raw(s, line, n);
		return;
	}
	for (size_t i = 0; i <= m->nrcpt; i++) {
		bool last = i == m->nrcpt;
		size_t n = smtp_reply_token_line(line, last, last ? m->envelope_from : m->rcpts[i], m->tokens[i]);
		if (n == 0) {   /* cannot happen with TOKEN_MAX_LEN; never send a broken reply */
			n = smtp_reply_saved_line(line, m->public_id);
			reply_raw(s, line, n);
			return;
		}
		reply_raw(s, line, n);
		if (log_enabled(LOG_LVL_DEBUG)) {
			char shorttok[LOG_TOKEN_SHORT];
			log_debug("event=token_issued session=%016llx msgid=%s token=%s", (unsigned long long)s->id,
			    m->public_id, log_token_short(shorttok, m->tokens[i]));
		}
	}
	STAT_ADD(srv->stats.tokens_issued, m->nrcpt + 1);
}

size_t
smtp_session_writer_done(struct server *srv)
{
	struct writer_msg *list = writer_collect(srv->writer), *m;
	size_t committed = 0;

	while ((m = list) != NULL) {
		struct smtp_session *s = m->owner;
		list = m->next;
		committed += m->status == WRITER_OK;
		if (s != NULL) {
			s->pending = NULL;
			s->waiting = false;
			s->corked++;            /* the token lines in one write */
			message_stored(s, m);
			if (--s->corked == 0)
				reply_flush(s);
			writer_msg_free(&m);
			if (!s->closing && srv->draining) {
				reply(s, "421 4.3.2 %s Service shutting down", srv->cfg->hostname);
				session_close(s, "shutdown");
			}
			if (!s->closing)
				session_process(s);
		} else {
			if (m->status != WRITER_OK)
				log_info("event=store_failed_after_disconnect msgid=%s", m->public_id);
			writer_msg_free(&m);
		}
	}
	return committed;
}

/* ------------------------------------------------------------------ */
/* command handlers                                                   */

enum {
	CMD_NOARGS   = 1 << 0,   /* arguments are a 501 */
	CMD_ARGS     = 1 << 1,   /* arguments are required */
	CMD_HELO     = 1 << 2,   /* EHLO/HELO first */
	CMD_AUTHED   = 1 << 3,   /* authenticated or trusted */
};

typedef void smtp_handler(struct smtp_session *s, const char *args, size_t len);

struct smtp_cmd {
	unsigned flags;
	smtp_handler *proceed;
	const char *usage;
};

static bool
auth_offered(const struct smtp_session *s)
{
	/* RFC 4954 4 / RFC 6409 4.3: no cleartext passwords, except on the
	 * loopback where the operator said so. */
	return s->tls || (s->loopback && s->srv->cfg->auth_cleartext_loopback);
}

static bool
helo_arg_ok(const char *a, size_t len)
{
	if (len == 0 || len > HELO_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)a[i] <= 0x20 || (unsigned char)a[i] >= 0x7f)
			return false;
	return true;
}

static void
do_greet(struct smtp_session *s, const char *args, size_t len, bool esmtp)
{
	struct config *cfg = s->srv->cfg;

	if (!helo_arg_ok(args, len)) {
		reply_error(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	free(s->helo);
	s->helo = xstrndup(args, len);
	s->esmtp = esmtp;
	/* RFC 5321 4.1.4: EHLO in a transaction resets it. */
	transaction_reset(s);
	enter_state(s, SMTP_HELO);
	if (!esmtp) {
		reply(s, "250 %s", cfg->hostname);
		return;
	}
	reply(s, "250-%s", cfg->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-SIZE %lld", (long long)cfg->max_message_size);
	reply(s, "250-8BITMIME");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-SMTPUTF8");
	reply(s, "250-BINARYMIME");
	if (!s->tls && s->srv->ssl_ctx)
		reply(s, "250-STARTTLS");
	if (auth_offered(s) && s->login == NULL)
		reply(s, "250-AUTH PLAIN LOGIN");
	if (cfg->tokens_enabled)
		reply(s, "250-XSUBMITTOKEN");
	reply(s, "250 CHUNKING");
}

static void
cmd_ehlo(struct smtp_session *s, const char *args, size_t len)
{
	do_greet(s, args, len, true);
}

static void
cmd_helo(struct smtp_session *s, const char *args, size_t len)
{
	do_greet(s, args, len, false);
}

static bool
sender_allowed(const struct smtp_session *s, const char *address)
{
	if (s->login == NULL)
		return s->trusted;
	if (smtp_address_equal(s->login, address))
		return true;
	for (char **a = s->addresses; a && *a; a++)
		if (smtp_address_equal(*a, address))
			return true;
	return false;
}

static void
cmd_mail(struct smtp_session *s, const char *args, size_t len)
{
	struct config *cfg = s->srv->cfg;
	const char *why = NULL;
	enum smtp_parse_result r;

	if (s->state != SMTP_HELO) {
		reply_error(s, "503 5.5.1 Error: nested MAIL command");
		return;
	}
	r = smtp_mail_parse(args, len, &s->mail, &why);
	switch (r) {
	case SMTP_PARSE_OK: break;
	case SMTP_PARSE_SYNTAX: reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address> (%s)", why ? why : "syntax error"); return;
	case SMTP_PARSE_BAD_ADDRESS: reply_error(s, "553 5.1.7 Bad sender address syntax (%s)", why ? why : "invalid"); return;
	case SMTP_PARSE_TOO_LONG: reply_error(s, "553 5.1.7 Sender address too long"); return;
	case SMTP_PARSE_NON_ASCII: reply_error(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8"); return;
	case SMTP_PARSE_BAD_PARAM: reply_error(s, "555 5.5.4 Unsupported MAIL parameter (%s)", why ? why : "unknown"); return;
	}
	if (s->mail.size > cfg->max_message_size) {
		memset(&s->mail, 0, sizeof(s->mail));
		reply_error(s, "552 5.3.4 Message size exceeds fixed maximum message size (%lld)",
		    (long long)cfg->max_message_size);
		return;
	}
	/* RFC 6409 6.1: the submission server may check that the sender is
	 * one the authenticated user is allowed to use; we always do. */
	if (s->mail.null_sender || !sender_allowed(s, s->mail.address)) {
		char sample[LOG_SAMPLE * 4 + 8];
		log_info("event=sender_refused session=%016llx user=%s from=%s", (unsigned long long)s->id,
		    s->login ? s->login : "-", log_sanitize(sample, sizeof(sample), s->mail.address,
		    strlen(s->mail.address), LOG_SAMPLE));
		memset(&s->mail, 0, sizeof(s->mail));
		reply_error(s, "553 5.7.1 Sender address rejected: not owned by the authenticated user");
		return;
	}
	enter_state(s, SMTP_MAIL);
	reply(s, "250 2.1.0 Sender ok");
}

static void
cmd_rcpt(struct smtp_session *s, const char *args, size_t len)
{
	struct config *cfg = s->srv->cfg;
	struct smtp_rcpt r;
	const char *why = NULL;

	if (s->state != SMTP_MAIL && s->state != SMTP_RCPT) {
		reply_error(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->bdat_used) {
		reply_error(s, "503 5.5.1 Error: RCPT after BDAT");
		return;
	}
	switch (smtp_rcpt_parse(args, len, s->mail.smtputf8, &r, &why)) {
	case SMTP_PARSE_OK: break;
	case SMTP_PARSE_SYNTAX: reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address> (%s)", why ? why : "syntax error"); return;
	case SMTP_PARSE_BAD_ADDRESS: reply_error(s, "553 5.1.3 Bad recipient address syntax (%s)", why ? why : "invalid"); return;
	case SMTP_PARSE_TOO_LONG: reply_error(s, "553 5.1.3 Recipient address too long"); return;
	case SMTP_PARSE_NON_ASCII: reply_error(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8"); return;
	case SMTP_PARSE_BAD_PARAM: reply_error(s, "555 5.5.4 Unsupported RCPT parameter (%s)", why ? why : "unknown"); return;
	}
	if (s->nrcpt >= (size_t)cfg->max_recipients) {
		/* RFC 5321 4.5.3.1.10: 452 for too many recipients; not counted
		 * as an error, the client is expected to send the rest later. */
		reply(s, "452 4.5.3 Too many recipients (at most %lld)", (long long)cfg->max_recipients);
		return;
	}
	s->rcpts = xrealloc(s->rcpts, (s->nrcpt + 1) * sizeof(char *));
	s->rcpts[s->nrcpt++] = xstrdup(r.address);
	enter_state(s, SMTP_RCPT);
	reply(s, "250 2.1.5 Recipient ok");
}

static void
cmd_data(struct smtp_session *s, const char *args, size_t len)
{
	if (s->state == SMTP_MAIL) {
		reply_error(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->state != SMTP_RCPT) {
		reply_error(s, "503 5.5.1 Error: need RCPT command");
		return;
	}
	if (s->bdat_used) {
		reply_error(s, "503 5.5.1 Error: DATA after BDAT");
		return;
	}
	if (s->mail.body == SMTP_BODY_BINARYMIME) {
		/* RFC 3030 3: BINARYMIME content goes with BDAT only. */
		reply_error(s, "503 5.5.1 Error: BODY=BINARYMIME requires BDAT");
		return;
	}
	body_begin(s, SMTP_BODY_MODE_DATA);
	enter_state(s, SMTP_DATA);
	reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void
cmd_bdat(struct smtp_session *s, const char *args, size_t len)
{
	struct config *cfg = s->srv->cfg;
	uint64_t size;
	bool last;

	if (smtp_bdat_parse(args, len, &size, &last) != SMTP_PARSE_OK) {
		/* Without a size we cannot know where the chunk ends: the octets
		 * that follow will be read as commands, as in every server. */
		reply_error(s, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	if (size > (uint64_t)cfg->max_message_size) {
		/* Reading (and throwing away) gigabytes to stay in sync is a gift
		 * to an attacker; refuse and hang up instead. */
		reply(s, "552 5.3.4 Chunk exceeds maximum message size (%lld), closing connection",
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
	s->bdat_error = 0;
	if (s->state == SMTP_INIT) {
		s->bdat_error = 503;
		s->bdat_error_text = "5.5.1 Error: send EHLO/HELO first";
	} else if (s->login == NULL && !s->trusted) {
		s->bdat_error = 530;
		s->bdat_error_text = "5.7.0 Authentication required";
	} else if (s->state == SMTP_HELO) {
		s->bdat_error = 503;
		s->bdat_error_text = "5.5.1 Error: need MAIL command";
	} else if (s->state == SMTP_MAIL) {
		s->bdat_error = 554;
		s->bdat_error_text = "5.5.1 Error: no valid recipients";
	} else if (!s->bdat_used) {
		s->bdat_used = true;
		body_begin(s, s->mail.body == SMTP_BODY_BINARYMIME ? SMTP_BODY_MODE_BINARY : SMTP_BODY_MODE_BDAT);
	}
	enter_state(s, SMTP_BDAT);
}

static void
cmd_rset(struct smtp_session *s, const char *args, size_t len)
{
	transaction_reset(s);
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct smtp_session *s, const char *args, size_t len)
{
	reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtp_session *s, const char *args, size_t len)
{
	reply(s, "221 2.0.0 Bye");
	session_close(s, "quit");
}

static void
cmd_help(struct smtp_session *s, const char *args, size_t len)
{
	reply(s, "214 2.0.0 Commands: EHLO HELO AUTH STARTTLS MAIL RCPT DATA BDAT RSET NOOP HELP VRFY QUIT");
}

static void
cmd_vrfy(struct smtp_session *s, const char *args, size_t len)
{
	/* RFC 5321 3.5.3: 252 when we will not verify but would accept. */
	reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void
cmd_expn(struct smtp_session *s, const char *args, size_t len)
{
	reply_error(s, "502 5.5.1 EXPN not supported");
}

static void
cmd_starttls(struct smtp_session *s, const char *args, size_t len)
{
	struct server *srv = s->srv;
	struct bufferevent *tls_bev;
	SSL *ssl;

	if (s->tls) {
		reply_error(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (srv->ssl_ctx == NULL) {
		reply_error(s, "454 4.7.0 TLS not available");
		return;
	}
	if (s->state != SMTP_HELO) {
		reply_error(s, "503 5.5.1 Error: STARTTLS not allowed in a transaction");
		return;
	}
	ssl = SSL_new(srv->ssl_ctx);
	if (ssl == NULL) {
		reply(s, "454 4.7.0 TLS not available due to temporary reason");
		return;
	}
	reply(s, "220 2.0.0 Ready to start TLS");
	reply_flush(s);         /* in clear, before the TLS filter takes over */
	/* RFC 3207 4.2 / the STARTTLS injection class: whatever the client
	 * pipelined after STARTTLS arrived in cleartext and must not be
	 * executed inside the TLS session. */
	{
		struct evbuffer *in = bufferevent_get_input(s->bev);
		size_t junk = evbuffer_get_length(in);
		if (junk > 0) {
			log_info("event=starttls_injection_discarded session=%016llx octets=%zu",
			    (unsigned long long)s->id, junk);
			evbuffer_drain(in, junk);
		}
	}
	bufferevent_set_timeouts(s->bev, NULL, NULL);
	tls_bev = bufferevent_openssl_filter_new(srv->base, s->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls_bev == NULL) {
		SSL_free(ssl);
		session_close(s, "tls_setup_failed");
		return;
	}
	s->bev = tls_bev;
	s->tls = true;
	/* RFC 3207 4.2: forget everything learnt before TLS, a login made
	 * in cleartext (auth_cleartext_loopback) included. */
	transaction_reset(s);
	free(s->helo);
	s->helo = NULL;
	xfreep(&s->login);
	if (s->addresses) {
		for (char **a = s->addresses; *a; a++)
			free(*a);
		xfreep(&s->addresses);
	}
	enter_state(s, SMTP_INIT);
	session_setup_bev(s);
}

/* --- AUTH ------------------------------------------------------------ */

static void
auth_submit(struct smtp_session *s, const char *login, const char *password)
{
	struct server *srv = s->srv;
	struct auth_request *r;
	int64_t now = now_unix();

	if (throttle_get(srv->auth_fail_user, login, now) >= srv->cfg->auth_max_failures) {
		log_info("event=auth_locked session=%016llx scope=user", (unsigned long long)s->id);
		reply(s, "421 4.7.0 %s Too many failed authentication attempts, try again later", srv->cfg->hostname);
		session_close(s, "auth_throttled");
		return;
	}
	r = xcalloc(1, sizeof(*r));
	snprintf(r->login, sizeof(r->login), "%s", login);
	snprintf(r->password, sizeof(r->password), "%s", password);
	r->owner = s;
	s->auth_req = r;
	s->waiting = true;
	auth_pool_submit(srv->auth, r);
}

static void
auth_finish_failure(struct smtp_session *s, const char *login)
{
	struct server *srv = s->srv;
	struct config *cfg = srv->cfg;
	int64_t now = now_unix(), n_ip, n_user, n;

	STAT_ADD(srv->stats.auth_failed, 1);
	n_ip = throttle_add(srv->auth_fail_ip, s->peer, 1, now);
	n_user = login && *login ? throttle_add(srv->auth_fail_user, login, 1, now) : 0;
	n = n_ip > n_user ? n_ip : n_user;
	{
		char sample[LOG_SAMPLE * 4 + 8];
		log_info("event=auth_failed session=%016llx ip=%s login=%s failures=%lld", (unsigned long long)s->id,
		    s->peer, log_sanitize(sample, sizeof(sample), login ? login : "", login ? strlen(login) : 0,
		    LOG_SAMPLE), (long long)n);
	}
	if (n >= cfg->auth_max_failures) {
		reply(s, "421 4.7.0 %s Too many failed authentication attempts, try again later", cfg->hostname);
		session_close(s, "auth_throttled");
		return;
	}
	s->errors++;
	if (n > cfg->auth_delay_after && cfg->auth_delay_ms > 0) {
		/* Slow down guessing: the reply comes later, and nothing else from
		 * this client is read meanwhile. */
		int64_t ms = (n - cfg->auth_delay_after) * cfg->auth_delay_ms;
		struct timeval tv;
		if (ms > 30000)
			ms = 30000;
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		free(s->delayed_reply);
		s->delayed_reply = xstrdup("535 5.7.8 Authentication credentials invalid\r\n");
		s->waiting = true;
		evtimer_add(s->delay, &tv);
		return;
	}
	reply(s, "535 5.7.8 Authentication credentials invalid");
	if (s->errors >= cfg->max_errors) {
		reply(s, "421 4.7.0 %s Too many errors, closing connection", cfg->hostname);
		session_close(s, "too_many_errors");
	}
}

/* Free a closing session once its last reply has really left. A STARTTLS
 * session writes through a filter: its own output empties as soon as the
 * octets are encrypted into the socket bufferevent beneath, so look there
 * too, and poll briefly (bounded) until it has drained. */
static void
close_when_flushed(struct smtp_session *s)
{
	struct bufferevent *under = bufferevent_get_underlying(s->bev);
	struct timeval tv = { 0, 10000 };

	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0 &&
	    (under == NULL || evbuffer_get_length(bufferevent_get_output(under)) == 0 ||
	    ++s->flush_polls > 500)) {
		session_free(s);
		return;
	}
	evtimer_add(s->delay, &tv);
}

static void
delay_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (s->closing) {
		close_when_flushed(s);
		return;
	}
	s->waiting = false;
	if (s->delayed_reply) {
		reply_raw(s, s->delayed_reply, strlen(s->delayed_reply));
		xfreep(&s->delayed_reply);
	}
	if (s->errors >= s->srv->cfg->max_errors) {
		reply(s, "421 4.7.0 %s Too many errors, closing connection", s->srv->cfg->hostname);
		session_close(s, "too_many_errors");
		return;
	}
	session_process(s);
}

static void
auth_credentials(struct smtp_session *s, const char *authzid, const char *authcid, const char *passwd)
{
	enter_state(s, SMTP_HELO);
	s->sasl = SASL_STEP_NONE;
	/* No proxy authorization: the identity to act as must be the one
	 * that logs in (RFC 4616 2 allows refusing others). */
	if (authzid[0] != '\0' && strcasecmp(authzid, authcid) != 0) {
		auth_finish_failure(s, authcid);
		return;
	}
	auth_submit(s, authcid, passwd);
}

static void
sasl_decode_error(struct smtp_session *s, enum sasl_result r)
{
	enter_state(s, SMTP_HELO);
	s->sasl = SASL_STEP_NONE;
	if (r == SASL_CANCELLED)
		reply_error(s, "501 5.0.0 Authentication cancelled");
	else if (r == SASL_TOO_LONG)
		reply_error(s, "500 5.5.6 Authentication exchange line is too long");
	else
		reply_error(s, "501 5.5.2 Invalid base64 data or malformed response");
}

/* One line of the SASL exchange (the state is SMTP_AUTH). */
static void
sasl_response(struct smtp_session *s, const char *line, size_t len)
{
	char authzid[SASL_ID_MAX + 1], authcid[SASL_ID_MAX + 1], passwd[SASL_PASS_MAX + 1];
	enum sasl_result r;

	switch (s->sasl) {
	case SASL_STEP_PLAIN:
		r = sasl_plain_decode(line, len, authzid, authcid, passwd);
		if (r != SASL_OK) {
			sasl_decode_error(s, r);
			break;
		}
		auth_credentials(s, authzid, authcid, passwd);
		break;
	case SASL_STEP_LOGIN_USER:
		r = sasl_login_decode(line, len, s->sasl_user, SASL_ID_MAX);
		if (r != SASL_OK || s->sasl_user[0] == '\0') {
			sasl_decode_error(s, r == SASL_OK ? SASL_BAD_FORMAT : r);
			break;
		}
		s->sasl = SASL_STEP_LOGIN_PASS;
		reply(s, "334 UGFzc3dvcmQ6");
		break;
	case SASL_STEP_LOGIN_PASS:
		r = sasl_login_decode(line, len, passwd, SASL_PASS_MAX);
		if (r != SASL_OK) {
			sasl_decode_error(s, r);
			break;
		}
		auth_credentials(s, "", s->sasl_user, passwd);
		break;
	default:
		enter_state(s, SMTP_HELO);
		break;
	}
	sodium_memzero(passwd, sizeof(passwd));
}

static void
cmd_auth(struct smtp_session *s, const char *args, size_t len)
{
	struct server *srv = s->srv;
	const char *sp = memchr(args, ' ', len);
	size_t mlen = sp ? (size_t)(sp - args) : len;
	const char *ir = sp ? sp + 1 : NULL;
	size_t irlen = sp ? len - mlen - 1 : 0;

	if (s->login != NULL) {
		reply_error(s, "503 5.5.1 Error: already authenticated");
		return;
	}
	if (s->state != SMTP_HELO) {
		reply_error(s, "503 5.5.1 Error: AUTH not allowed in a transaction");
		return;
	}
	if (!auth_offered(s)) {
		reply_error(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	if (throttle_get(srv->auth_fail_ip, s->peer, now_unix()) >= srv->cfg->auth_max_failures) {
		log_info("event=auth_locked session=%016llx scope=ip ip=%s", (unsigned long long)s->id, s->peer);
		reply(s, "421 4.7.0 %s Too many failed authentication attempts, try again later", srv->cfg->hostname);
		session_close(s, "auth_throttled");
		return;
	}
	if (mlen == 5 && strncasecmp(args, "PLAIN", 5) == 0) {
		enter_state(s, SMTP_AUTH);
		s->sasl = SASL_STEP_PLAIN;
		if (ir == NULL)
			reply(s, "334 ");
		else
			sasl_response(s, ir, irlen);
	} else if (mlen == 5 && strncasecmp(args, "LOGIN", 5) == 0) {
		enter_state(s, SMTP_AUTH);
		s->sasl = SASL_STEP_LOGIN_USER;
		if (ir == NULL)
			reply(s, "334 VXNlcm5hbWU6");
		else
			sasl_response(s, ir, irlen);
	} else {
		reply_error(s, "504 5.5.4 Unrecognized authentication type");
	}
}

void
smtp_session_auth_done(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct auth_request *list = auth_pool_collect(srv->auth), *r;

	while ((r = list) != NULL) {
		struct smtp_session *s = r->owner;
		list = r->next;
		if (s == NULL) {
			auth_request_free(&r);
			continue;
		}
		s->auth_req = NULL;
		s->waiting = false;
		switch (r->result) {
		case AUTH_OK:
			STAT_ADD(srv->stats.auth_ok, 1);
			s->login = r->canonical_login;
			s->addresses = r->addresses;
			r->canonical_login = NULL;
			r->addresses = NULL;
			/* The user's count goes, the address's stays until it ages
			 * out: one valid account must not reset the lock of an
			 * address that is guessing others' passwords. */
			throttle_clear(srv->auth_fail_user, r->login);
			log_info("event=auth_ok session=%016llx user=%s cached=%s", (unsigned long long)s->id,
			    s->login, r->cached ? "yes" : "no");
			reply(s, "235 2.7.0 Authentication successful");
			break;
		case AUTH_TEMPFAIL:
			reply(s, "454 4.7.0 Temporary authentication failure");
			break;
		default:
			auth_finish_failure(s, r->login);
			break;
		}
		auth_request_free(&r);
		if (!s->closing && !s->waiting && srv->draining) {
			reply(s, "421 4.3.2 %s Service shutting down", srv->cfg->hostname);
			session_close(s, "shutdown");
		}
		if (!s->closing && !s->waiting)
			session_process(s);
	}
}

/* ------------------------------------------------------------------ */
/* the command table and the input loop                               */

static const struct smtp_cmd commands[SMTP_VERB_COUNT] = {
	[SMTP_VERB_EHLO]     = { CMD_ARGS, cmd_ehlo, "EHLO hostname" },
	[SMTP_VERB_HELO]     = { CMD_ARGS, cmd_helo, "HELO hostname" },
	[SMTP_VERB_MAIL]     = { CMD_ARGS | CMD_HELO | CMD_AUTHED, cmd_mail, "MAIL FROM:<address>" },
	[SMTP_VERB_RCPT]     = { CMD_ARGS | CMD_HELO | CMD_AUTHED, cmd_rcpt, "RCPT TO:<address>" },
	[SMTP_VERB_DATA]     = { CMD_NOARGS | CMD_HELO | CMD_AUTHED, cmd_data, "DATA" },
	[SMTP_VERB_BDAT]     = { CMD_ARGS, cmd_bdat, "BDAT size [LAST]" },
	[SMTP_VERB_RSET]     = { CMD_NOARGS, cmd_rset, "RSET" },
	[SMTP_VERB_NOOP]     = { 0, cmd_noop, "NOOP" },
	[SMTP_VERB_QUIT]     = { CMD_NOARGS, cmd_quit, "QUIT" },
	[SMTP_VERB_HELP]     = { 0, cmd_help, "HELP" },
	[SMTP_VERB_VRFY]     = { CMD_ARGS, cmd_vrfy, "VRFY address" },
	[SMTP_VERB_EXPN]     = { 0, cmd_expn, "EXPN list" },
	[SMTP_VERB_STARTTLS] = { CMD_NOARGS | CMD_HELO, cmd_starttls, "STARTTLS" },
	[SMTP_VERB_AUTH]     = { CMD_ARGS | CMD_HELO, cmd_auth, "AUTH mechanism [initial-response]" },
};

static void
dispatch(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_command c;
	const struct smtp_cmd *cmd;

	if (s->state == SMTP_AUTH) {
		sasl_response(s, line, len);
		return;
	}
	smtp_command_parse(line, len, &c);
	cmd = &commands[c.verb];
	if (cmd->proceed == NULL) {
		log_bad_input(s, "unknown_command", line, len);
		reply_error(s, "500 5.5.2 Error: command not recognized");
		return;
	}
	if ((cmd->flags & CMD_NOARGS) && c.args_len > 0) {
		reply_error(s, "501 5.5.4 Syntax: %s", cmd->usage);
		return;
	}
	if ((cmd->flags & CMD_ARGS) && c.args_len == 0) {
		reply_error(s, "501 5.5.4 Syntax: %s", cmd->usage);
		return;
	}
	if ((cmd->flags & CMD_HELO) && s->state == SMTP_INIT) {
		reply_error(s, "503 5.5.1 Error: send EHLO/HELO first");
		return;
	}
	if ((cmd->flags & CMD_AUTHED) && s->login == NULL && !s->trusted) {
		/* RFC 4954 6 */
		reply_error(s, "530 5.7.0 Authentication required");
		return;
	}
	cmd->proceed(s, c.args, c.args_len);
}

/* Consume DATA body octets from in; true when the terminator was seen. */
static bool
data_consume(struct smtp_session *s, struct evbuffer *in)
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
	if (s->bdat_error != 0) {
		int code = s->bdat_error;
		s->bdat_error = 0;
		enter_state(s, s->bdat_prev);
		if (s->bdat_last && (s->state == SMTP_MAIL || s->state == SMTP_RCPT))
			transaction_reset(s);
		reply_error(s, "%d %s", code, s->bdat_error_text);
		return;
	}
	enter_state(s, SMTP_RCPT);
	if (s->bdat_last) {
		smtp_body_finish(&s->body);
		message_end(s);
		return;
	}
	reply(s, "250 2.0.0 %llu octets received", (unsigned long long)s->bdat_chunk);
}

static void
bdat_consume(struct smtp_session *s, struct evbuffer *in)
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
		if (s->bdat_error == 0) {
			smtp_body_feed(&s->body, v.iov_base, take, scratch, &outlen, &done);
			body_sink(s, scratch, outlen);
		}
		evbuffer_drain(in, take);
		s->bdat_remaining -= take;
	}
	bdat_chunk_done(s);
}

/* The command line in the input is not complete yet. A client that sends
 * it an octet at a time never lets the idle timeout fire; this clock runs
 * from the line's first octet to its CRLF. */
static void
line_incomplete(struct smtp_session *s)
{
	uint64_t now = mono_us();

	if (s->line_started_us == 0) {
		s->line_started_us = now;
		return;
	}
	if (now - s->line_started_us <= (uint64_t)s->srv->cfg->command_timeout * 1000000)
		return;
	bufferevent_enable(s->bev, EV_WRITE);
	reply(s, "421 4.4.2 %s Error: command not completed in time", s->srv->cfg->hostname);
	session_close(s, "command_timeout");
}

static void
session_process(struct smtp_session *s)
{
	/* Pipelined commands get their replies in one write (RFC 2920). */
	s->corked++;
	session_process_lines(s);
	if (--s->corked == 0)
		reply_flush(s);
}

static void
session_process_lines(struct smtp_session *s)
{
	struct config *cfg = s->srv->cfg;

	while (!s->waiting && !s->closing) {
		/* fetched each time round: STARTTLS replaces the bufferevent */
		struct evbuffer *in = bufferevent_get_input(s->bev);
		size_t avail = evbuffer_get_length(in), max, look, line_len = 0, consumed = 0;
		const char *p;

		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_HIGH) {
			s->out_blocked = true;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		if (s->state == SMTP_DATA) {
			if (avail == 0)
				break;
			if (data_consume(s, in)) {
				enter_state(s, SMTP_RCPT);
				message_end(s);
			}
			continue;
		}
		if (s->state == SMTP_BDAT) {
			if (avail == 0 && s->bdat_remaining > 0)
				break;
			bdat_consume(s, in);
			if (s->state == SMTP_BDAT)
				break;
			continue;
		}
		if (avail == 0)
			break;
		if (s->discard_line) {
			struct evbuffer_ptr lf = evbuffer_search(in, "\n", 1, NULL);
			if (lf.pos < 0) {
				evbuffer_drain(in, avail);
				line_incomplete(s);
				break;
			}
			evbuffer_drain(in, (size_t)lf.pos + 1);
			s->discard_line = false;
			s->line_started_us = 0;
			continue;
		}
		max = s->state == SMTP_AUTH ? AUTH_LINE_MAX : (size_t)cfg->max_line_length;
		look = avail < max ? avail : max;
		p = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
		switch (smtp_line_find(p, look, max, &line_len, &consumed)) {
		case SMTP_LINE_MORE:
			line_incomplete(s);
			return;
		case SMTP_LINE_OK: {
			/* Copy out: the handler may replace s->bev (STARTTLS). */
			char line[AUTH_LINE_MAX + 1];
			memcpy(line, p, line_len);
			line[line_len] = '\0';
			evbuffer_drain(in, consumed);
			dispatch(s, line, line_len);
			sodium_memzero(line, line_len);
			break;
		}
		case SMTP_LINE_TOO_LONG:
			log_bad_input(s, "line_too_long", p, look);
			if (s->state == SMTP_AUTH) {
				enter_state(s, SMTP_HELO);
				s->sasl = SASL_STEP_NONE;
			}
			s->discard_line = true;
			reply_error(s, "500 5.5.6 Error: line too long (max %zu octets)", max);
			break;
		case SMTP_LINE_BARE_LF:
		case SMTP_LINE_BARE_CR:
			log_bad_input(s, "bare_cr_lf", p, consumed);
			evbuffer_drain(in, consumed);
			if (s->state == SMTP_AUTH) {
				enter_state(s, SMTP_HELO);
				s->sasl = SASL_STEP_NONE;
			}
			reply_error(s, "500 5.5.2 Error: bare CR or LF in command (RFC 5321 2.3.8)");
			break;
		case SMTP_LINE_NUL:
			log_bad_input(s, "nul", p, consumed);
			evbuffer_drain(in, consumed);
			if (s->state == SMTP_AUTH) {
				enter_state(s, SMTP_HELO);
				s->sasl = SASL_STEP_NONE;
			}
			reply_error(s, "500 5.5.2 Error: NUL octet in command");
			break;
		}
		/* A line was taken (unless the rest of a long one is still to
		 * be skipped): the next one's clock starts at its first octet. */
		if (!s->discard_line)
			s->line_started_us = 0;
	}
}

/* ------------------------------------------------------------------ */
/* bufferevent callbacks and lifetime                                 */

static void
read_cb(struct bufferevent *bev, void *arg)
{
	session_process(arg);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->closing) {
		if (!s->waiting)
			close_when_flushed(s);
		return;
	}
	if (s->out_blocked) {
		s->out_blocked = false;
		bufferevent_enable(s->bev, EV_READ);
		session_process(s);
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);
		if (ssl)
			log_info("event=tls_established session=%016llx version=%s cipher=%s",
			    (unsigned long long)s->id, SSL_get_version(ssl), SSL_get_cipher_name(ssl));
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->waiting && !s->closing) {
			/* our own answer is late (a slow commit): not the client's fault */
			bufferevent_enable(s->bev, EV_READ | EV_WRITE);
			return;
		}
		if (!s->closing) {
			bufferevent_enable(s->bev, EV_WRITE);
			reply(s, "421 4.4.2 %s Error: timeout exceeded", s->srv->cfg->hostname);
			session_close(s, "idle_timeout");
			/* give the 421 a short time to leave, then drop */
			struct timeval tv = { 5, 0 };
			bufferevent_set_timeouts(s->bev, NULL, &tv);
			return;
		}
		/* the client does not even read the 421 */
		session_free(s);
		return;
	}
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		unsigned long e;
		char buf[160] = "";
		while ((e = bufferevent_get_openssl_error(bev)) != 0)
			ERR_error_string_n(e, buf, sizeof(buf));
		if (buf[0])
			log_info("event=tls_error session=%016llx error=\"%s\"", (unsigned long long)s->id, buf);
		if (!s->closing)
			log_info("event=disconnect session=%016llx reason=%s state=%s", (unsigned long long)s->id,
			    (what & BEV_EVENT_EOF) ? "client_closed" : "io_error", state_names[s->state]);
		s->closing = true;
		if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && !s->tls) {
			/* A client may shut down its side after its last command and
			 * still read: let queued and awaited replies go out first, for
			 * a short while. (Over TLS the end of input ends the session.) */
			if (s->waiting || evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
				struct timeval tv = { 5, 0 };
				bufferevent_set_timeouts(s->bev, NULL, &tv);
				return;
			}
		}
		session_free(s);
	}
}

static void
session_setup_bev(struct smtp_session *s)
{
	struct config *cfg = s->srv->cfg;
	struct timeval idle = { (time_t)cfg->idle_timeout, 0 };

	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	bufferevent_set_timeouts(s->bev, &idle, &idle);
	bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_HIGH);
	if (s->tls) {
		bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
		bufferevent_set_max_single_read(s->bev, tls_read_size(s->state));
	}
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

static void
total_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (s->closing)
		return;
	if (s->waiting) {
		/* never cut a commit short; check again shortly */
		struct timeval tv = { 1, 0 };
		evtimer_add(s->timer, &tv);
		return;
	}
	reply(s, "421 4.4.2 %s Error: session time limit exceeded", s->srv->cfg->hostname);
	session_close(s, "session_timeout");
}

static uint64_t
session_id_new(void)
{
	uint64_t id;
	randombytes_buf(&id, sizeof(id));
	return id;
}

void
smtp_session_new(struct server *srv, evutil_socket_t fd, const struct sockaddr *sa, int salen,
    bool implicit_tls)
{
	struct config *cfg = srv->cfg;
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	struct timeval total = { (time_t)cfg->session_timeout, 0 };

	s->id = session_id_new();
	s->srv = srv;
	s->spool_fd = -1;
	memcpy(&s->peer_sa, sa, (size_t)salen < sizeof(s->peer_sa) ? (size_t)salen : sizeof(s->peer_sa));
	netaddr_text(sa, s->peer, sizeof(s->peer));
	s->loopback = netaddr_is_loopback(sa);
	s->trusted = cidr_list_match(&srv->trusted, sa);
	s->implicit_tls = implicit_tls;

	if (implicit_tls) {
		SSL *ssl = srv->ssl_ctx ? SSL_new(srv->ssl_ctx) : NULL;
		if (ssl)
			s->bev = bufferevent_openssl_socket_new(srv->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
			    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (s->bev == NULL) {
			if (ssl)
				SSL_free(ssl);
			evutil_closesocket(fd);
			free(s);
			return;
		}
		s->tls = true;
	} else {
		s->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (s->bev == NULL) {
			evutil_closesocket(fd);
			free(s);
			return;
		}
	}
	s->timer = evtimer_new(srv->base, total_timeout, s);
	s->delay = evtimer_new(srv->base, delay_done, s);
	s->cork = evbuffer_new();
	evtimer_add(s->timer, &total);

	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	STAT_ADD(srv->nsessions, 1);
	STAT_ADD(srv->stats.sessions_total, 1);
	throttle_add(srv->conn_per_ip, s->peer, 1, now_unix());

	session_setup_bev(s);
	log_info("event=connect session=%016llx ip=%s tls=%s trusted=%s", (unsigned long long)s->id, s->peer,
	    implicit_tls ? "implicit" : "no", s->trusted ? "yes" : "no");
	if (srv->draining) {
		reply(s, "421 4.3.2 %s Service shutting down", cfg->hostname);
		session_close(s, "draining");
		return;
	}
	reply(s, "220 %s ESMTP submitd", cfg->hostname);
}

static void
session_free(struct smtp_session *s)
{
	struct server *srv = s->srv;

	/* Work still out (a commit, a password check) will find the session
	 * gone: its answer is dropped, the message stays stored. */
	if (s->pending)
		s->pending->owner = NULL;
	if (s->auth_req)
		s->auth_req->owner = NULL;
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	STAT_SUB(srv->nsessions, 1);
	throttle_add(srv->conn_per_ip, s->peer, -1, now_unix());

	transaction_reset(s);
	if (s->timer)
		event_free(s->timer);
	if (s->delay)
		event_free(s->delay);
	free(s->delayed_reply);
	if (s->cork)
		evbuffer_free(s->cork);
	EVP_MD_CTX_free(s->sha);
	bufferevent_free(s->bev);
	free(s->helo);
	free(s->login);
	if (s->addresses) {
		for (char **a = s->addresses; *a; a++)
			free(*a);
		free(s->addresses);
	}
	sodium_memzero(s->sasl_user, sizeof(s->sasl_user));
	free(s);
	server_maybe_exit(srv);
}

void
smtp_session_drain_all(struct server *srv)
{
	struct smtp_session *s, *next;

	for (s = srv->sessions; s; s = next) {
		next = s->next;
		if (s->waiting || s->state == SMTP_DATA || s->state == SMTP_BDAT || s->closing)
			continue;
		reply(s, "421 4.3.2 %s Service shutting down", srv->cfg->hostname);
		session_close(s, "shutdown");
	}
	server_maybe_exit(srv);
}

void
smtp_session_close_all(struct server *srv)
{
	struct smtp_session *s, *next;

	for (s = srv->sessions; s; s = next) {
		next = s->next;
		session_free(s);
	}
}
