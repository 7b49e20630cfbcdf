/*
 * smtp_session.c: the SMTP submission session, its lifecycle and input.
 *
 * A session is made on an accepted connection and freed when it ends;
 * between the two, this file owns its bufferevent callbacks, its timeouts
 * and the drain at shutdown, and reads its input: command lines, which
 * smtp_commands.c dispatches, or body octets, which smtp_data.c takes.
 *
 * Input is parsed from the bufferevent's input buffer in order, so a
 * pipelined group (RFC 2920) is answered in order with replies collected
 * in the output buffer and written together. Work that cannot be done on
 * the loop (password checks, the database commit) sets `waiting`: parsing
 * stops and resumes when the answer comes back, so later commands of the
 * group are never answered before earlier ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "db/writer.h"
#include "server/auth/auth.h"
#include "server/base/log.h"
#include "server/base/netaddr.h"
#include "server/base/throttle.h"
#include "server/base/util.h"
#include "server/protocol/proxy_header.h"
#include "server/runtime/server.h"
#include "server/smtp/smtp_session_internal.h"

/* RFC 4954 4: a SASL response line may be longer than a command line. */
#define AUTH_LINE_MAX 12288
/* Stop parsing input while this much output waits for a client that does
 * not read its replies (a pipelining flood must not grow memory). */
#define OUTPUT_HIGH (64 * 1024)
/* The input buffer is not read beyond this while a command waits. */
#define INPUT_HIGH (256 * 1024)
/* Most a TLS session decrypts per read, in commands and in a body.
 * libevent's OpenSSL filter reserves this much in the input buffer before
 * each SSL_read, and the reservation of the read that found nothing stays:
 * at 16 KB (libevent's default) an idle TLS session held 29 KB of RSS, at
 * 1 KB 21 KB. 900 and not 1024: with libevent's chain header a 1024-octet
 * reservation takes a 2 KB chain, 900 fits in 1 KB. Commands are short; a
 * body gets full records in one read. */
#define TLS_COMMAND_READ 900
#define TLS_BODY_READ (16 * 1024)

static void session_process_lines(struct smtp_session *s);
static void session_free(struct smtp_session *s);

static const char *const state_names[SMTP_STATE_COUNT] = {
	"init", "helo", "mail", "rcpt", "data", "bdat", "auth",
};

/* How much a TLS session decrypts per read in state st. */
static size_t
tls_read_size(enum smtp_state st)
{
	return st == SMTP_DATA || st == SMTP_BDAT ? TLS_BODY_READ : TLS_COMMAND_READ;
}

void
session_enter_state(struct smtp_session *s, enum smtp_state st)
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
void
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
		session_reply_raw(s, s->delayed_reply, strlen(s->delayed_reply));
		xfreep(&s->delayed_reply);
	}
	if (s->errors >= s->srv->cfg->max_errors) {
		session_reply(s, "421 4.7.0 %s Too many errors, closing connection", s->srv->cfg->hostname);
		session_close(s, "too_many_errors");
		return;
	}
	session_process(s);
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
	session_reply(s, "421 4.4.2 %s Error: command not completed in time", s->srv->cfg->hostname);
	session_close(s, "command_timeout");
}

/*
 * smtp.forbid_unauth_pipelining, as Postfix's smtpd_forbid_unauth_pipelining:
 * RFC 2920 3.1 lets a client send a group of commands without waiting, but
 * the group ends with EHLO, DATA, VRFY, EXPN, QUIT or NOOP (RFC 3207 4 adds
 * STARTTLS, RFC 4954 4 AUTH and each line of its exchange), and nothing may
 * come before the greeting. A client that does not wait there is a sender
 * of "SMTP smuggling" payloads or a bot, never a real MUA: an
 * unauthenticated one is disconnected. The reply is owed from the dispatch
 * of such a verb until session_reply_flush hands it to the socket; octets
 * seen in that span were sent before the client could have read it.
 */
void
session_sync_expect(struct smtp_session *s, const char *after)
{
	if (!s->srv->cfg->forbid_unauth_pipelining || s->login != NULL)
		return;
	s->sync_wait = true;
	s->sync_after = after;
}

bool
session_sync_check(struct smtp_session *s)
{
	struct evbuffer *in;
	char peeked[LOG_SAMPLE], sample[LOG_SAMPLE * 4 + 8];
	const char *p = NULL;
	size_t n = 0;

	if (!s->sync_wait || s->closing)
		return false;
	in = bufferevent_get_input(s->bev);
	if (evbuffer_get_length(in) > 0) {
		n = evbuffer_get_length(in);
		p = (const char *)evbuffer_pullup(in, (ev_ssize_t)(n < LOG_SAMPLE ? n : LOG_SAMPLE));
	} else if (!s->tls) {
		/* Not read from the socket yet (the greeting is written before
		 * the first read): look without taking. Over TLS the socket
		 * holds records, not commands. */
		ssize_t r = recv(bufferevent_getfd(s->bev), peeked, sizeof(peeked), MSG_PEEK | MSG_DONTWAIT);
		if (r > 0) {
			n = (size_t)r;
			p = peeked;
			/* take it after all: closing with unread input would
			 * reset the connection, and the 554 with it */
			ssize_t taken = recv(bufferevent_getfd(s->bev), peeked, n, MSG_DONTWAIT);
			(void)taken;
		}
	}
	if (n == 0)
		return false;
	s->sync_wait = false;
	/* A load balancer not in smtp.proxy_networks sends its header at
	 * once, before the greeting: say so rather than "pipelining". */
	if (!s->input_seen && proxy_header_sniff((const unsigned char *)p, n)) {
		session_proxy_refused(s, p, n);
		return true;
	}
	s->input_seen = true;
	STAT_ADD(s->srv->stats.pipelining_refused, 1);
	/* After AUTH, what came early may be credentials. */
	if (strcmp(s->sync_after, "AUTH") == 0)
		snprintf(sample, sizeof(sample), "\"********\"");
	else
		log_sanitize(sample, sizeof(sample), p, n < LOG_SAMPLE ? n : LOG_SAMPLE, LOG_SAMPLE);
	log_info("event=pipelining_refused session=%016llx ip=%s after=%s sample=%s", (unsigned long long)s->id,
	    s->peer, s->sync_after, sample);
	evbuffer_drain(in, evbuffer_get_length(in));
	/* Into the cork, not through session_reply: the caller may be
	 * session_reply_flush itself, which sends the cork next. */
	evbuffer_add_printf(s->cork, "554 5.5.0 Error: SMTP protocol synchronization\r\n");
	s->silenced = true;
	session_close(s, "pipelining");
	return true;
}

/*
 * A PROXY header from a client that is not in smtp.proxy_networks: a
 * client that wants to choose its own address, or a load balancer missing
 * from the list. Refused before it is read as commands (its v2 form would
 * be four "bad commands" of binary), once, at the start of the input. The
 * 554 goes into the cork, as session_sync_check's, and is the last word;
 * both callers flush it (session_process, session_reply_flush).
 */
void
session_proxy_refused(struct smtp_session *s, const char *p, size_t n)
{
	char sample[LOG_SAMPLE * 4 + 8];

	s->input_seen = true;
	s->sync_wait = false;
	log_info("event=proxy_refused session=%016llx ip=%s reason=not_proxy_network sample=%s",
	    (unsigned long long)s->id, s->peer,
	    log_sanitize(sample, sizeof(sample), p, n < LOG_SAMPLE ? n : LOG_SAMPLE, LOG_SAMPLE));
	evbuffer_drain(bufferevent_get_input(s->bev), evbuffer_get_length(bufferevent_get_input(s->bev)));
	evbuffer_add_printf(s->cork, "554 5.7.0 Error: PROXY protocol header not accepted from your address\r\n");
	s->silenced = true;
	session_close(s, "proxy_header");
}

void
session_process(struct smtp_session *s)
{
	/* Pipelined commands get their replies in one write (RFC 2920). */
	s->corked++;
	session_process_lines(s);
	if (--s->corked == 0)
		session_reply_flush(s);
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

		if (avail > 0 && s->sync_wait && session_sync_check(s))
			return;

		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > OUTPUT_HIGH) {
			s->out_blocked = true;
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		if (s->state == SMTP_DATA) {
			if (avail == 0)
				break;
			if (session_data_consume(s, in)) {
				session_enter_state(s, SMTP_RCPT);
				session_message_end(s);
			}
			continue;
		}
		if (s->state == SMTP_BDAT) {
			if (avail == 0 && s->bdat_remaining > 0)
				break;
			session_bdat_consume(s, in);
			if (s->state == SMTP_BDAT)
				break;
			continue;
		}
		if (avail == 0)
			break;
		if (!s->input_seen) {
			size_t n = avail < PROXY_V2_SIG_LEN ? avail : PROXY_V2_SIG_LEN;
			const char *first = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);

			/* "PROX" may still become "PROXY ": decide with the next
			 * octets (the line is not complete before them anyway) */
			s->input_seen = n >= 6 || memcmp(first, "PROXY ", n) != 0;
			if (s->input_seen && proxy_header_sniff((const unsigned char *)first, n)) {
				session_proxy_refused(s, first, n);
				return;
			}
		}
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
			session_dispatch(s, line, line_len);
			sodium_memzero(line, line_len);
			break;
		}
		case SMTP_LINE_TOO_LONG:
			session_log_bad_input(s, "line_too_long", p, look);
			if (s->state == SMTP_AUTH) {
				session_enter_state(s, SMTP_HELO);
				s->sasl = SASL_STEP_NONE;
			}
			s->discard_line = true;
			session_reply_error(s, "500 5.5.6 Error: line too long (max %zu octets)", max);
			break;
		case SMTP_LINE_BARE_LF:
		case SMTP_LINE_BARE_CR:
			session_log_bad_input(s, "bare_cr_lf", p, consumed);
			evbuffer_drain(in, consumed);
			if (s->state == SMTP_AUTH) {
				session_enter_state(s, SMTP_HELO);
				s->sasl = SASL_STEP_NONE;
			}
			session_reply_error(s, "500 5.5.2 Error: bare CR or LF in command (RFC 5321 2.3.8)");
			break;
		case SMTP_LINE_NUL:
			session_log_bad_input(s, "nul", p, consumed);
			evbuffer_drain(in, consumed);
			if (s->state == SMTP_AUTH) {
				session_enter_state(s, SMTP_HELO);
				s->sasl = SASL_STEP_NONE;
			}
			session_reply_error(s, "500 5.5.2 Error: NUL octet in command");
			break;
		}
		/* A line was taken (unless the rest of a long one is still to
		 * be skipped): the next one's clock starts at its first octet. */
		if (!s->discard_line)
			s->line_started_us = 0;
	}
}

void
session_resume(struct smtp_session *s)
{
	struct timeval now = { 0, 0 };

	if (s->waiting)
		return;
	if (!s->closing) {
		session_process(s);
		return;
	}
	/* A client that half-closed while it waited, say. Its answer may
	 * have gone straight to the socket, which leaves no write callback to
	 * free the session on: look from the loop, as session_close does. */
	evtimer_add(s->delay, &now);
}

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
			session_reply(s, "421 4.4.2 %s Error: timeout exceeded", s->srv->cfg->hostname);
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

void
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
	session_reply(s, "421 4.4.2 %s Error: session time limit exceeded", s->srv->cfg->hostname);
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
smtp_session_new(struct smtp_loop *loop, evutil_socket_t fd, const struct sockaddr *sa, int salen,
    bool implicit_tls)
{
	struct smtp_peer peer = { .client = sa, .client_len = (socklen_t)salen };

	smtp_session_new_proxied(loop, fd, &peer, implicit_tls);
}

void
smtp_session_new_proxied(struct smtp_loop *loop, evutil_socket_t fd, const struct smtp_peer *peer,
    bool implicit_tls)
{
	struct server *srv = loop->srv;
	struct config *cfg = srv->cfg;
	struct smtp_session *s = xcalloc(1, sizeof(*s));
	struct timeval total = { (time_t)cfg->session_timeout, 0 };
	const struct sockaddr *sa = peer->client;
	size_t salen = peer->client_len;

	s->id = session_id_new();
	s->srv = srv;
	s->loop = loop;
	s->spool_fd = -1;
	memcpy(&s->peer_sa, sa, salen < sizeof(s->peer_sa) ? salen : sizeof(s->peer_sa));
	if (peer->local != NULL) {
		memcpy(&s->local_sa, peer->local,
		    peer->local_len < sizeof(s->local_sa) ? peer->local_len : sizeof(s->local_sa));
		s->has_local = true;
	}
	if (peer->proxy != NULL)
		snprintf(s->proxy, sizeof(s->proxy), "%s", peer->proxy);
	/* The client's address, not the load balancer's, decides everything
	 * from here: limits, trusted_networks, cleartext AUTH on loopback. */
	netaddr_text(sa, s->peer, sizeof(s->peer));
	s->loopback = netaddr_is_loopback(sa);
	s->trusted = cidr_list_match(&srv->cfg->trusted_nets, sa);
	s->implicit_tls = implicit_tls;

	if (implicit_tls) {
		/* SIGHUP may swap the context on the main thread meanwhile:
		 * take it with a reference of our own (the SSL holds another) */
		SSL_CTX *ctx = server_tls_ctx(srv);
		SSL *ssl = ctx ? SSL_new(ctx) : NULL;
		SSL_CTX_free(ctx);
		if (ssl)
			s->bev = bufferevent_openssl_socket_new(loop->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
			    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (s->bev == NULL) {
			if (ssl)
				SSL_free(ssl);
			evutil_closesocket(fd);
			server_conn_release(srv, s->peer);
			free(s);
			return;
		}
		s->tls = true;
	} else {
		s->bev = bufferevent_socket_new(loop->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (s->bev == NULL) {
			evutil_closesocket(fd);
			server_conn_release(srv, s->peer);
			free(s);
			return;
		}
	}
	s->timer = evtimer_new(loop->base, total_timeout, s);
	s->delay = evtimer_new(loop->base, delay_done, s);
	s->cork = evbuffer_new();
	evtimer_add(s->timer, &total);

	s->next = loop->sessions;
	if (loop->sessions)
		loop->sessions->prev = s;
	loop->sessions = s;
	STAT_ADD(loop->nsessions, 1);
	STAT_ADD(srv->nsessions, 1);
	STAT_ADD(srv->stats.sessions_total, 1);
	if (loop->index < SMTP_LOOPS_MAX)
		STAT_ADD(srv->stats.loop_sessions[loop->index], 1);

	session_setup_bev(s);
	log_info("event=connect session=%016llx ip=%s%s%s tls=%s trusted=%s loop=%u", (unsigned long long)s->id,
	    s->peer, s->proxy[0] ? " proxy=" : "", s->proxy, implicit_tls ? "implicit" : "no",
	    s->trusted ? "yes" : "no", loop->index);
	if (loop->draining) {
		session_reply(s, "421 4.3.2 %s Service shutting down", cfg->hostname);
		session_close(s, "draining");
		return;
	}
	/* Implicit TLS: the greeting waits for the handshake, and what
	 * came before it cannot be told from what came after. */
	if (!implicit_tls)
		session_sync_expect(s, "CONNECT");
	session_reply(s, "220 %s ESMTP submitd", cfg->hostname);
}

static void
session_free(struct smtp_session *s)
{
	struct server *srv = s->srv;
	struct smtp_loop *loop = s->loop;

	/* Work still out (a commit, a password check) will find the session
	 * gone: its answer is dropped, the message stays stored. */
	if (s->pending)
		s->pending->owner = NULL;
	if (s->auth_req)
		s->auth_req->owner = NULL;
	if (s->prev)
		s->prev->next = s->next;
	else
		loop->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	STAT_SUB(loop->nsessions, 1);
	STAT_SUB(srv->nsessions, 1);
	server_conn_release(srv, s->peer);

	session_transaction_reset(s);
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
smtp_session_drain_all(struct smtp_loop *loop)
{
	struct server *srv = loop->srv;
	struct smtp_session *s, *next;

	for (s = loop->sessions; s; s = next) {
		next = s->next;
		if (s->waiting || s->state == SMTP_DATA || s->state == SMTP_BDAT || s->closing)
			continue;
		session_reply(s, "421 4.3.2 %s Service shutting down", srv->cfg->hostname);
		session_close(s, "shutdown");
	}
	server_maybe_exit(srv);
}

void
smtp_session_close_all(struct smtp_loop *loop)
{
	struct smtp_session *s, *next;

	for (s = loop->sessions; s; s = next) {
		next = s->next;
		session_free(s);
	}
}
