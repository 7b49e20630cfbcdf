/*
 * smtp_auth.c: AUTH (RFC 4954) with PLAIN (RFC 4616) and LOGIN. The SASL
 * exchange is read line by line in the state SMTP_AUTH; the password is
 * checked off the loop by the auth pool, and the session waits for the
 * answer. Failures are counted per address and per login: past
 * auth_delay_after the 535 comes late, at auth_max_failures the
 * connection is closed and further attempts are refused for a while.
 *
 * With auth.backend = dovecot (the loop's dovecot client set) the mechanisms are
 * Dovecot's and the exchange is passed through: each challenge from
 * Dovecot is a 334, each client line goes back to it. Its OK names the
 * login (user=, perhaps rewritten by Dovecot); the login's granted sender
 * addresses are then read by the auth pool before the 235. The failure
 * throttling is the same for both backends.
 */
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <sodium.h>

#include "server/auth/auth.h"
#include "server/auth/dovecot_client.h"
#include "server/limits/limits.h"
#include "server/base/log.h"
#include "server/base/throttle.h"
#include "server/base/util.h"
#include "server/protocol/dovecot_auth.h"
#include "server/runtime/server.h"
#include "server/smtp/smtp_session_internal.h"

bool
session_auth_offered(const struct smtp_session *s)
{
	/* RFC 4954 4 / RFC 6409 4.3: no cleartext passwords, except on the
	 * loopback where the operator said so. */
	return s->tls || (s->loopback && s->srv->cfg->auth_cleartext_loopback);
}

const char *
session_auth_mechanisms(const struct smtp_session *s)
{
	const char *m;

	if (s->loop->dovecot == NULL)
		return "PLAIN LOGIN";
	m = dovecot_client_mechanisms(s->loop->dovecot);
	return m[0] ? m : NULL;
}

static void
auth_submit(struct smtp_session *s, const char *login, const char *password)
{
	struct server *srv = s->srv;
	struct auth_request *r;
	int64_t now = now_unix();

	if (throttle_get(srv->auth_fail_user, login, now) >= srv->cfg->auth_max_failures) {
		log_info("event=auth_locked session=%016llx scope=user", (unsigned long long)s->id);
		session_reply(s, "421 4.7.0 %s Too many failed authentication attempts, try again later", srv->cfg->hostname);
		session_close(s, "auth_throttled");
		return;
	}
	r = xcalloc(1, sizeof(*r));
	snprintf(r->login, sizeof(r->login), "%s", login);
	snprintf(r->password, sizeof(r->password), "%s", password);
	r->owner = s;
	r->loop = s->loop->index;
	s->auth_req = r;
	s->waiting = true;
	srv->smtp_backend->authenticate(srv->smtp_backend->ctx, r);
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
		session_reply(s, "421 4.7.0 %s Too many failed authentication attempts, try again later", cfg->hostname);
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
	session_reply(s, "535 5.7.8 Authentication credentials invalid");
	if (s->errors >= cfg->max_errors) {
		session_reply(s, "421 4.7.0 %s Too many errors, closing connection", cfg->hostname);
		session_close(s, "too_many_errors");
	}
}

static void
auth_credentials(struct smtp_session *s, const char *authzid, const char *authcid, const char *passwd)
{
	session_enter_state(s, SMTP_HELO);
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
	session_enter_state(s, SMTP_HELO);
	s->sasl = SASL_STEP_NONE;
	if (r == SASL_CANCELLED)
		session_reply_error(s, "501 5.0.0 Authentication cancelled");
	else if (r == SASL_TOO_LONG)
		session_reply_error(s, "500 5.5.6 Authentication exchange line is too long");
	else
		session_reply_error(s, "501 5.5.2 Invalid base64 data or malformed response");
}

/* Dovecot could not be asked or did not answer: 454, and a log line. */
static void
dovecot_tempfail(struct smtp_session *s, const char *why)
{
	log_warn("event=auth_tempfail session=%016llx backend=dovecot reason=%s", (unsigned long long)s->id,
	    why ? why : "unknown");
	session_reply(s, "454 4.7.0 Temporary authentication failure");
}

/* Numeric host and port of a socket address, for Dovecot's lip/rip. */
static void
addr_port(const struct sockaddr *sa, socklen_t len, char *host, size_t hostlen, unsigned *port)
{
	char serv[16];

	host[0] = '\0';
	*port = 0;
	if (getnameinfo(sa, len, host, (socklen_t)hostlen, serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		host[0] = '\0';
		return;
	}
	*port = (unsigned)strtoul(serv, NULL, 10);
}

/* AUTH with Dovecot's mechanisms: send the AUTH request, and wait. */
static void
dovecot_start(struct smtp_session *s, const char *mech, size_t mlen, const char *ir, size_t irlen)
{
	struct dovecot_client *dc = s->loop->dovecot;
	char name[32], lip[64], rip[64];
	struct dovecot_client_conn conn = { .lip = lip, .rip = rip, .tls = s->tls, .session_id = s->id };
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	struct auth_request *r;
	const char *resp = ir;
	size_t resp_len = irlen;

	if (!dovecot_client_has_mechanism(dc, mech, mlen)) {
		const char *why;
		if (!dovecot_client_ready(dc, &why))
			dovecot_tempfail(s, why);
		else
			session_reply_error(s, "504 5.5.4 Unrecognized authentication type");
		return;
	}
	if (ir != NULL) {
		/* RFC 4954 4: "=" is an empty initial response. */
		if (irlen == 1 && ir[0] == '*') {
			session_reply_error(s, "501 5.0.0 Authentication cancelled");
			return;
		}
		if (irlen == 1 && ir[0] == '=')
			resp_len = 0;
		else if (irlen == 0 || !dovecot_auth_base64_text(ir, irlen)) {
			session_reply_error(s, "501 5.5.2 Invalid base64 data or malformed response");
			return;
		}
	}
	for (size_t i = 0; i < mlen; i++)
		name[i] = (char)toupper((unsigned char)mech[i]);
	name[mlen] = '\0';
	addr_port((const struct sockaddr *)&s->peer_sa, sizeof(s->peer_sa), rip, sizeof(rip), &conn.rport);
	if (s->has_local)   /* through a load balancer: what the client connected to */
		addr_port((const struct sockaddr *)&s->local_sa, sizeof(s->local_sa), lip, sizeof(lip), &conn.lport);
	else if (getsockname(bufferevent_getfd(s->bev), (struct sockaddr *)&local, &llen) == 0)
		addr_port((const struct sockaddr *)&local, llen, lip, sizeof(lip), &conn.lport);
	else
		lip[0] = '\0';
	r = xcalloc(1, sizeof(*r));
	r->kind = AUTH_SASL;
	r->owner = s;
	r->loop = s->loop->index;
	if (!dovecot_client_auth(dc, r, name, resp, resp_len, &conn)) {
		dovecot_tempfail(s, r->why);
		auth_request_free(&r);
		return;
	}
	s->auth_req = r;
	s->sasl = SASL_STEP_DOVECOT;
	session_enter_state(s, SMTP_AUTH);
	s->waiting = true;
}

/* The client's answer to a challenge of Dovecot's (the state is SMTP_AUTH). */
static void
dovecot_response(struct smtp_session *s, const char *line, size_t len)
{
	struct dovecot_client *dc = s->loop->dovecot;
	bool cancel = len == 1 && line[0] == '*';
	enum dovecot_cont sent = cancel ? DOVECOT_CONT_BAD : dovecot_client_continue(dc, s->auth_req, line, len);

	if (sent == DOVECOT_CONT_SENT) {
		s->waiting = true;
		return;
	}
	session_enter_state(s, SMTP_HELO);
	s->sasl = SASL_STEP_NONE;
	if (sent == DOVECOT_CONT_LOST)
		dovecot_tempfail(s, s->auth_req->why);
	else if (cancel)
		session_reply_error(s, "501 5.0.0 Authentication cancelled");
	else
		session_reply_error(s, "501 5.5.2 Invalid base64 data or malformed response");
	dovecot_client_cancel(dc, &s->auth_req);
}

/* Dovecot answered s's exchange r. */
static void
dovecot_answer(struct smtp_session *s, struct auth_request *r)
{
	struct server *srv = s->srv;

	if (r->result == AUTH_CONTINUE) {
		/* r stays the client's, and the exchange goes on */
		s->waiting = false;
		session_reply(s, "334 %s", r->challenge);
		return;
	}
	session_enter_state(s, SMTP_HELO);
	s->sasl = SASL_STEP_NONE;
	if (r->result == AUTH_OK) {
		if (throttle_get(srv->auth_fail_user, r->login, now_unix()) >= srv->cfg->auth_max_failures) {
			s->auth_req = NULL;
			s->waiting = false;
			log_info("event=auth_locked session=%016llx scope=user", (unsigned long long)s->id);
			session_reply(s, "421 4.7.0 %s Too many failed authentication attempts, try again later",
			    srv->cfg->hostname);
			session_close(s, "auth_throttled");
			auth_request_free(&r);
			return;
		}
		/* Dovecot checked the password: the pool reads the login's
		 * granted addresses, and that answer completes the AUTH. */
		r->kind = AUTH_ADDRESSES;
		r->result = AUTH_PENDING;
		srv->smtp_backend->authenticate(srv->smtp_backend->ctx, r);
		return;
	}
	s->auth_req = NULL;
	s->waiting = false;
	if (r->result == AUTH_TEMPFAIL)
		dovecot_tempfail(s, r->why);
	else
		auth_finish_failure(s, r->login[0] ? r->login : NULL);
	auth_request_free(&r);
}

/* One line of the SASL exchange (the state is SMTP_AUTH). */
void
session_sasl_response(struct smtp_session *s, const char *line, size_t len)
{
	char authzid[SASL_ID_MAX + 1], authcid[SASL_ID_MAX + 1], passwd[SASL_PASS_MAX + 1];
	enum sasl_result r;

	switch (s->sasl) {
	case SASL_STEP_DOVECOT:
		dovecot_response(s, line, len);
		break;
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
		session_reply(s, "334 UGFzc3dvcmQ6");
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
		session_enter_state(s, SMTP_HELO);
		break;
	}
	sodium_memzero(passwd, sizeof(passwd));
}

void
session_cmd_auth(struct smtp_session *s, const char *args, size_t len)
{
	struct server *srv = s->srv;
	const char *sp = memchr(args, ' ', len);
	size_t mlen = sp ? (size_t)(sp - args) : len;
	const char *ir = sp ? sp + 1 : NULL;
	size_t irlen = sp ? len - mlen - 1 : 0;

	if (!session_auth_offered(s)) {
		session_reply_error(s, "538 5.7.11 Encryption required for requested authentication mechanism");
		return;
	}
	if (throttle_get(srv->auth_fail_ip, s->peer, now_unix()) >= srv->cfg->auth_max_failures) {
		log_info("event=auth_locked session=%016llx scope=ip ip=%s", (unsigned long long)s->id, s->peer);
		session_reply(s, "421 4.7.0 %s Too many failed authentication attempts, try again later", srv->cfg->hostname);
		session_close(s, "auth_throttled");
		return;
	}
	if (s->loop->dovecot != NULL) {
		dovecot_start(s, args, mlen, ir, irlen);
		return;
	}
	if (mlen == 5 && strncasecmp(args, "PLAIN", 5) == 0) {
		session_enter_state(s, SMTP_AUTH);
		s->sasl = SASL_STEP_PLAIN;
		if (ir == NULL)
			session_reply(s, "334 ");
		else
			session_sasl_response(s, ir, irlen);
	} else if (mlen == 5 && strncasecmp(args, "LOGIN", 5) == 0) {
		session_enter_state(s, SMTP_AUTH);
		s->sasl = SASL_STEP_LOGIN_USER;
		if (ir == NULL)
			session_reply(s, "334 VXNlcm5hbWU6");
		else
			session_sasl_response(s, ir, irlen);
	} else {
		session_reply_error(s, "504 5.5.4 Unrecognized authentication type");
	}
}

void
smtp_session_auth_done(struct smtp_loop *loop, struct auth_request *done)
{
	struct server *srv = loop->srv;
	struct auth_request *list = done, *r;

	while ((r = list) != NULL) {
		struct smtp_session *s = r->owner;
		list = r->next;
		if (s == NULL) {
			auth_request_free(&r);
			continue;
		}
		if (r->kind == AUTH_SASL) {
			dovecot_answer(s, r);
			goto answered;
		}
		s->auth_req = NULL;
		s->waiting = false;
		if (r->result == AUTH_OK && srv->limits != NULL && limits_disabled(srv->limits, r->canonical_login)) {
			/* submitctl user disable: the password is right, the login
			 * may not send; the same 535 as a wrong password. */
			STAT_ADD(srv->stats.auth_disabled, 1);
			STAT_ADD(srv->stats.auth_failed, 1);
			log_info("event=auth_failed session=%016llx user=%s reason=login_disabled", (unsigned long long)s->id,
			    r->canonical_login);
			session_reply(s, "535 5.7.8 Authentication credentials invalid");
			auth_request_free(&r);
			goto answered;
		}
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
			if (r->kind == AUTH_ADDRESSES)
				log_info("event=auth_ok session=%016llx user=%s backend=dovecot", (unsigned long long)s->id,
				    s->login);
			else
				log_info("event=auth_ok session=%016llx user=%s cached=%s", (unsigned long long)s->id,
				    s->login, r->cached ? "yes" : "no");
			session_reply(s, "235 2.7.0 Authentication successful");
			break;
		case AUTH_TEMPFAIL:
			session_reply(s, "454 4.7.0 Temporary authentication failure");
			break;
		default:
			auth_finish_failure(s, r->login);
			break;
		}
		auth_request_free(&r);
answered:
		if (!s->closing && !s->waiting && loop->draining) {
			session_reply(s, "421 4.3.2 %s Service shutting down", srv->cfg->hostname);
			session_close(s, "shutdown");
		}
		session_resume(s);
	}
}
