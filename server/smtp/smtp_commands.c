/*
 * smtp_commands.c: the verb table and dispatch.
 *
 * The dialogue is a table of verbs (commands[] below). Each row says
 * whether the verb takes arguments, whether the client must be
 * authenticated (or in a trusted network), whether it must end a
 * pipelined group (the client waits for its reply: CMD_LAST, checked by
 * session_sync_check in smtp_session.c), the states it may run in and
 * the reply that refuses it in the others. dispatch() checks all of that
 * in one place before the handler runs, so a handler only deals with its
 * own verb: a MAIL handler never looks at the state. The handlers of the
 * simple verbs live here; DATA and BDAT are in smtp_data.c, AUTH in
 * smtp_auth.c.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "server/base/log.h"
#include "server/base/util.h"
#include "server/limits/limits.h"
#include "server/net/tls_conn.h"
#include "server/runtime/server.h"
#include "server/smtp/smtp_session_internal.h"

#define HELO_MAX 255

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
		session_reply_error(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
		return;
	}
	free(s->helo);
	s->helo = xstrndup(args, len);
	s->esmtp = esmtp;
	/* RFC 5321 4.1.4: EHLO in a transaction resets it. */
	session_transaction_reset(s);
	session_enter_state(s, SMTP_HELO);
	if (!esmtp) {
		session_reply(s, "250 %s", cfg->hostname);
		return;
	}
	session_reply(s, "250-%s", cfg->hostname);
	session_reply(s, "250-PIPELINING");
	session_reply(s, "250-SIZE %lld", (long long)cfg->max_message_size);
	session_reply(s, "250-8BITMIME");
	session_reply(s, "250-ENHANCEDSTATUSCODES");
	session_reply(s, "250-SMTPUTF8");
	if (cfg->binarymime)
		session_reply(s, "250-BINARYMIME");
	if (!s->tls && server_tls_ready(s->srv))
		session_reply(s, "250-STARTTLS");
	if (session_auth_offered(s) && s->login == NULL && session_auth_mechanisms(s) != NULL)
		session_reply(s, "250-AUTH %s", session_auth_mechanisms(s));
	if (cfg->tokens_enabled)
		session_reply(s, "250-XSUBMITTOKEN");
	session_reply(s, "250 CHUNKING");
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

/* A sending limit is reached (docs/config.md#limits): 450 4.7.1 naming
 * it, a log line and a count; the client may try again later (RFC 5321
 * 4.2.5: 450 at MAIL and RCPT, 4.7.1 "delivery not authorized"). */
static void
limit_refuse(struct smtp_session *s, const struct limits_refusal *r, const char *verb)
{
	const char *name = limit_kind_name(r->kind);

	STAT_ADD(s->srv->stats.limits_refused[r->kind], 1);
	log_info("event=limit_reached session=%016llx user=%s ip=%s limit=%s value=%lld window=%lld override=%s at=%s",
	    (unsigned long long)s->id, s->login ? s->login : "-", s->peer, name, (long long)r->limit,
	    (long long)r->window_s, r->override ? "yes" : "no", verb);
	session_reply(s, "450 4.7.1 Sending limit reached: limits.%s (%lld %s in %lld s%s); try again later", name,
	    (long long)r->limit, r->kind == LIMIT_USER_RECIPIENTS ? "recipients" : "messages", (long long)r->window_s,
	    r->override ? ", set for this login" : "");
}

/* The checks of a new transaction that depend on who sends, not on what:
 * a login disabled since it logged in, the message limits. */
static bool
mail_allowed(struct smtp_session *s)
{
	struct limits *l = s->srv->limits;
	struct limits_refusal r;

	if (l == NULL)
		return true;
	if (s->login != NULL && limits_disabled(l, s->login)) {
		log_info("event=sender_refused session=%016llx user=%s reason=login_disabled", (unsigned long long)s->id,
		    s->login);
		session_reply_error(s, "554 5.7.1 Login disabled");
		return false;
	}
	if (!limits_check_message(l, s->login, s->peer, now_ms(), &r)) {
		limit_refuse(s, &r, "mail");
		return false;
	}
	return true;
}

static void
cmd_mail(struct smtp_session *s, const char *args, size_t len)
{
	struct config *cfg = s->srv->cfg;
	const char *why = NULL;
	enum smtp_parse_result r;

	r = smtp_mail_parse(args, len, &s->mail, &why);
	switch (r) {
	case SMTP_PARSE_OK: break;
	case SMTP_PARSE_SYNTAX: session_reply_error(s, "501 5.5.4 Syntax: MAIL FROM:<address> (%s)", why ? why : "syntax error"); return;
	case SMTP_PARSE_BAD_ADDRESS: session_reply_error(s, "553 5.1.7 Bad sender address syntax (%s)", why ? why : "invalid"); return;
	case SMTP_PARSE_TOO_LONG: session_reply_error(s, "553 5.1.7 Sender address too long"); return;
	case SMTP_PARSE_NON_ASCII: session_reply_error(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8"); return;
	case SMTP_PARSE_BAD_PARAM: session_reply_error(s, "555 5.5.4 Unsupported MAIL parameter (%s)", why ? why : "unknown"); return;
	}
	if (s->mail.body == SMTP_BODY_BINARYMIME && !cfg->binarymime) {
		/* RFC 5321 4.1.1.11: a parameter of an extension not offered is
		 * a 555. Off by default: see smtp.binarymime in docs/config.md. */
		memset(&s->mail, 0, sizeof(s->mail));
		session_reply_error(s, "555 5.5.4 Unsupported MAIL parameter (BODY=BINARYMIME is not offered)");
		return;
	}
	if (s->mail.size > cfg->max_message_size) {
		memset(&s->mail, 0, sizeof(s->mail));
		session_reply_error(s, "552 5.3.4 Message size exceeds fixed maximum message size (%lld)",
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
		session_reply_error(s, "553 5.7.1 Sender address rejected: not owned by the authenticated user");
		return;
	}
	if (!mail_allowed(s)) {
		memset(&s->mail, 0, sizeof(s->mail));
		return;
	}
	session_enter_state(s, SMTP_MAIL);
	session_reply(s, "250 2.1.0 Sender ok");
}

static void
cmd_rcpt(struct smtp_session *s, const char *args, size_t len)
{
	struct config *cfg = s->srv->cfg;
	struct smtp_rcpt r;
	const char *why = NULL;

	switch (smtp_rcpt_parse(args, len, s->mail.smtputf8, &r, &why)) {
	case SMTP_PARSE_OK: break;
	case SMTP_PARSE_SYNTAX: session_reply_error(s, "501 5.5.4 Syntax: RCPT TO:<address> (%s)", why ? why : "syntax error"); return;
	case SMTP_PARSE_BAD_ADDRESS: session_reply_error(s, "553 5.1.3 Bad recipient address syntax (%s)", why ? why : "invalid"); return;
	case SMTP_PARSE_TOO_LONG: session_reply_error(s, "553 5.1.3 Recipient address too long"); return;
	case SMTP_PARSE_NON_ASCII: session_reply_error(s, "553 5.6.7 Non-ASCII address requires SMTPUTF8"); return;
	case SMTP_PARSE_BAD_PARAM: session_reply_error(s, "555 5.5.4 Unsupported RCPT parameter (%s)", why ? why : "unknown"); return;
	}
	if (s->nrcpt >= (size_t)cfg->max_recipients) {
		/* RFC 5321 4.5.3.1.10: 452 for too many recipients; not counted
		 * as an error, the client is expected to send the rest later. */
		session_reply(s, "452 4.5.3 Too many recipients (at most %lld)", (long long)cfg->max_recipients);
		return;
	}
	if (s->srv->limits != NULL) {
		struct limits_refusal lr;
		if (!limits_check_recipient(s->srv->limits, s->login, s->nrcpt, now_ms(), &lr)) {
			limit_refuse(s, &lr, "rcpt");
			return;
		}
	}
	s->rcpts = xrealloc(s->rcpts, (s->nrcpt + 1) * sizeof(char *));
	s->rcpts[s->nrcpt++] = xstrdup(r.address);
	session_enter_state(s, SMTP_RCPT);
	session_reply(s, "250 2.1.5 Recipient ok");
}

static void
cmd_rset(struct smtp_session *s, const char *args, size_t len)
{
	session_transaction_reset(s);
	session_reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct smtp_session *s, const char *args, size_t len)
{
	session_reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtp_session *s, const char *args, size_t len)
{
	session_reply(s, "221 2.0.0 Bye");
	session_close(s, "quit");
}

static void
cmd_help(struct smtp_session *s, const char *args, size_t len)
{
	session_reply(s, "214 2.0.0 Commands: EHLO HELO AUTH STARTTLS MAIL RCPT DATA BDAT RSET NOOP HELP VRFY QUIT");
}

static void
cmd_vrfy(struct smtp_session *s, const char *args, size_t len)
{
	/* RFC 5321 3.5.3: 252 when we will not verify but would accept. */
	session_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void
cmd_expn(struct smtp_session *s, const char *args, size_t len)
{
	session_reply_error(s, "502 5.5.1 EXPN not supported");
}

static void
cmd_starttls(struct smtp_session *s, const char *args, size_t len)
{
	struct server *srv = s->srv;
	struct bufferevent *tls_bev;
	char err[128];

	if (s->tls) {
		session_reply_error(s, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (!server_tls_ready(srv)) {
		session_reply_error(s, "454 4.7.0 TLS not available");
		return;
	}
	if (s->state != SMTP_HELO) {
		session_reply_error(s, "503 5.5.1 Error: STARTTLS not allowed in a transaction");
		return;
	}
	session_reply(s, "220 2.0.0 Ready to start TLS");
	session_reply_flush(s);         /* in clear, before the TLS filter takes over */
	if (s->closing)
		return;                 /* input came before the 220: session_sync_check */
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
	/* Only allocations fail here, after the 220: the client then sees the
	 * connection close, as it would on a failed handshake. */
	{
		/* a reference of our own: SIGHUP may swap the context meanwhile */
		SSL_CTX *ctx = server_tls_ctx(srv);
		tls_bev = tls_conn_upgrade(s->loop->base, s->bev, ctx, TLS_CONN_SERVER, NULL, false, err,
		    sizeof(err));
		SSL_CTX_free(ctx);
	}
	if (tls_bev == NULL) {
		log_warn("event=tls_setup_failed session=%016llx error=\"%s\"", (unsigned long long)s->id, err);
		session_close(s, "tls_setup_failed");
		return;
	}
	s->bev = tls_bev;
	s->tls = true;
	/* RFC 3207 4.2: forget everything learnt before TLS, a login made
	 * in cleartext (auth_cleartext_loopback) included. */
	session_transaction_reset(s);
	free(s->helo);
	s->helo = NULL;
	xfreep(&s->login);
	if (s->addresses) {
		for (char **a = s->addresses; *a; a++)
			free(*a);
		xfreep(&s->addresses);
	}
	session_enter_state(s, SMTP_INIT);
	session_setup_bev(s);
}

enum {
	CMD_NOARGS   = 1 << 0,   /* arguments are a 501 */
	CMD_ARGS     = 1 << 1,   /* arguments are required */
	CMD_AUTHED   = 1 << 2,   /* authenticated or trusted: else 530 */
	CMD_UNAUTHED = 1 << 3,   /* not once logged in: else 503 */
	CMD_CHUNK    = 1 << 4,   /* octets follow the line whatever the answer:
	                            the handler reads them, then refuses */
	CMD_LAST     = 1 << 5,   /* last of a pipelined group: the client waits
	                            for the reply (RFC 2920 3.1, RFC 3207 4,
	                            RFC 4954 4); see session_sync_expect */
};

/* The states a verb may run in, one bit each: the session's states, and
 * one more for a transaction that has sent BDAT chunks (it is SMTP_RCPT,
 * but takes neither RCPT nor DATA any more). */
enum { GATE_CHUNKING = SMTP_STATE_COUNT, GATE_COUNT };
#define IN(st) (1u << (st))
#define GREETED (IN(SMTP_HELO) | IN(SMTP_MAIL) | IN(SMTP_RCPT) | IN(GATE_CHUNKING))
#define ANY (IN(SMTP_INIT) | GREETED)

/* Out of sequence: 503 (RFC 5321 4.1.4), or 554 where only the
 * recipients are missing (RFC 5321 3.3). */
#define NESTED_MAIL "503 5.5.1 Error: nested MAIL command"
#define NEED_MAIL "503 5.5.1 Error: need MAIL command"
#define NO_RCPT "554 5.5.1 Error: no valid recipients"
#define AUTH_IN_TRANSACTION "503 5.5.1 Error: AUTH not allowed in a transaction"

typedef void smtp_handler(struct smtp_session *s, const char *args, size_t len);

struct smtp_cmd {
	unsigned flags;
	unsigned states;                    /* IN() each state it may run in */
	smtp_handler *proceed;
	const char *usage;
	/* The reply in each greeted state not in states (before EHLO/HELO,
	 * every verb that needs it gets the same one). */
	const char *out_of_sequence[GATE_COUNT];
};

/* STARTTLS runs in any greeted state: it refuses a transaction itself,
 * after checks of its own (TLS on already, no certificate) whose replies
 * come first. */
static const struct smtp_cmd commands[SMTP_VERB_COUNT] = {
	[SMTP_VERB_EHLO]     = { CMD_ARGS | CMD_LAST, ANY, cmd_ehlo, "EHLO hostname", { 0 } },
	[SMTP_VERB_HELO]     = { CMD_ARGS | CMD_LAST, ANY, cmd_helo, "HELO hostname", { 0 } },
	[SMTP_VERB_MAIL]     = { CMD_ARGS | CMD_AUTHED, IN(SMTP_HELO), cmd_mail, "MAIL FROM:<address>",
	    { [SMTP_MAIL] = NESTED_MAIL, [SMTP_RCPT] = NESTED_MAIL, [GATE_CHUNKING] = NESTED_MAIL } },
	[SMTP_VERB_RCPT]     = { CMD_ARGS | CMD_AUTHED, IN(SMTP_MAIL) | IN(SMTP_RCPT), cmd_rcpt,
	    "RCPT TO:<address>",
	    { [SMTP_HELO] = NEED_MAIL, [GATE_CHUNKING] = "503 5.5.1 Error: RCPT after BDAT" } },
	[SMTP_VERB_DATA]     = { CMD_NOARGS | CMD_AUTHED | CMD_LAST, IN(SMTP_RCPT), session_cmd_data, "DATA",
	    { [SMTP_HELO] = "503 5.5.1 Error: need RCPT command", [SMTP_MAIL] = NO_RCPT,
	      [GATE_CHUNKING] = "503 5.5.1 Error: DATA after BDAT" } },
	[SMTP_VERB_BDAT]     = { CMD_ARGS | CMD_AUTHED | CMD_CHUNK, IN(SMTP_RCPT) | IN(GATE_CHUNKING),
	    session_cmd_bdat, "BDAT size [LAST]", { [SMTP_HELO] = NEED_MAIL, [SMTP_MAIL] = NO_RCPT } },
	[SMTP_VERB_RSET]     = { CMD_NOARGS, ANY, cmd_rset, "RSET", { 0 } },
	[SMTP_VERB_NOOP]     = { CMD_LAST, ANY, cmd_noop, "NOOP", { 0 } },
	[SMTP_VERB_QUIT]     = { CMD_NOARGS | CMD_LAST, ANY, cmd_quit, "QUIT", { 0 } },
	[SMTP_VERB_HELP]     = { 0, ANY, cmd_help, "HELP", { 0 } },
	[SMTP_VERB_VRFY]     = { CMD_ARGS | CMD_LAST, ANY, cmd_vrfy, "VRFY address", { 0 } },
	[SMTP_VERB_EXPN]     = { CMD_LAST, ANY, cmd_expn, "EXPN list", { 0 } },
	[SMTP_VERB_STARTTLS] = { CMD_NOARGS | CMD_LAST, GREETED, cmd_starttls, "STARTTLS", { 0 } },
	[SMTP_VERB_AUTH]     = { CMD_ARGS | CMD_UNAUTHED | CMD_LAST, IN(SMTP_HELO), session_cmd_auth,
	    "AUTH mechanism [initial-response]",
	    { [SMTP_MAIL] = AUTH_IN_TRANSACTION, [SMTP_RCPT] = AUTH_IN_TRANSACTION,
	      [GATE_CHUNKING] = AUTH_IN_TRANSACTION } },
};

/* NULL if cmd may run now, else the reply that refuses it. The checks
 * come in the order clients have always had their replies in: the
 * greeting, then authentication, then the sequence of the transaction. */
static const char *
gate(const struct smtp_session *s, const struct smtp_cmd *cmd)
{
	unsigned st = s->state == SMTP_RCPT && s->bdat_used ? GATE_CHUNKING : (unsigned)s->state;

	if (s->state == SMTP_INIT && !(cmd->states & IN(SMTP_INIT)))
		return "503 5.5.1 Error: send EHLO/HELO first";
	if ((cmd->flags & CMD_AUTHED) && s->login == NULL && !s->trusted)
		return "530 5.7.0 Authentication required";         /* RFC 4954 6 */
	if ((cmd->flags & CMD_UNAUTHED) && s->login != NULL)
		return "503 5.5.1 Error: already authenticated";    /* RFC 4954 4 */
	if (!(cmd->states & IN(st)))
		return cmd->out_of_sequence[st] ? cmd->out_of_sequence[st] :
		    "503 5.5.1 Error: bad sequence of commands";
	return NULL;
}

void
session_dispatch(struct smtp_session *s, const char *line, size_t len)
{
	struct smtp_command c;
	const struct smtp_cmd *cmd;
	const char *refusal;

	if (s->state == SMTP_AUTH) {
		/* each line of the exchange waits for its 334 or the outcome */
		session_sync_expect(s, "AUTH");
		session_sasl_response(s, line, len);
		return;
	}
	smtp_command_parse(line, len, &c);
	cmd = &commands[c.verb];
	/* Whether it runs or is refused: RFC 2920 3.1 binds the verb. */
	if (cmd->flags & CMD_LAST)
		session_sync_expect(s, smtp_verb_name(c.verb));
	if (cmd->proceed == NULL) {
		session_log_bad_input(s, "unknown_command", line, len);
		session_reply_error(s, "500 5.5.2 Error: command not recognized");
		return;
	}
	if ((cmd->flags & CMD_NOARGS) && c.args_len > 0) {
		session_reply_error(s, "501 5.5.4 Syntax: %s", cmd->usage);
		return;
	}
	if ((cmd->flags & CMD_ARGS) && c.args_len == 0) {
		session_reply_error(s, "501 5.5.4 Syntax: %s", cmd->usage);
		return;
	}
	refusal = gate(s, cmd);
	if (cmd->flags & CMD_CHUNK) {
		/* RFC 3030 2: a refused BDAT's chunk is still read, then refused. */
		s->bdat_refusal = refusal;
		cmd->proceed(s, c.args, c.args_len);
		return;
	}
	if (refusal != NULL) {
		session_reply_error(s, "%s", refusal);
		return;
	}
	cmd->proceed(s, c.args, c.args_len);
}
