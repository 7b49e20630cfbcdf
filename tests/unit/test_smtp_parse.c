/*
 * test_smtp_parse.c: table-driven tests of the command-side parsers
 * (server/protocol/smtp_parse.c). Each row is {input, limits, expected}. Inputs are
 * copied into heap buffers of exactly their length, without a terminating
 * NUL, so that an over-read shows up under valgrind. The line finder is also
 * fed one byte at a time, as a session would rescan a growing buffer, and
 * the argument parsers are run on every prefix of every input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/protocol/smtp_parse.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* A string literal and its length, so rows can hold NUL octets. */
#define S(x) x, sizeof(x) - 1

/* Exactly n octets on the heap, not NUL-terminated. */
static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	assert_non_null(p);
	if (n > 0)
		memcpy(p, s, n);
	return p;
}

/* Printable rendering of a row's input for failure messages. */
static const char *
show(const char *s, size_t n)
{
	static char buf[1024];
	size_t i, o = 0;

	for (i = 0; i < n && o + 8 < sizeof(buf); i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", c);
	}
	buf[o] = '\0';
	return buf;
}

/* ---- smtp_line_find ---- */

struct line_case {
	const char *in;
	size_t len;
	size_t max;
	enum smtp_line_result want;
	size_t line_len, consumed;   /* checked when want is not MORE/TOO_LONG */
};

static const struct line_case line_cases[] = {
	{ S("HELO x\r\n"), 512, SMTP_LINE_OK, 6, 8 },
	{ S("\r\n"), 512, SMTP_LINE_OK, 0, 2 },
	{ S(""), 512, SMTP_LINE_MORE, 0, 0 },
	{ S("NOOP"), 512, SMTP_LINE_MORE, 0, 0 },
	{ S("NOOP\r"), 512, SMTP_LINE_MORE, 0, 0 },
	/* pipelining: only the first line is taken */
	{ S("NOOP\r\nQUIT\r\n"), 512, SMTP_LINE_OK, 4, 6 },
	{ S("\xff\xfe\x80\r\n"), 512, SMTP_LINE_OK, 3, 5 },
	/* bare LF: the line ends at the LF, which is dropped with it */
	{ S("NO\nOP\r\n"), 512, SMTP_LINE_BARE_LF, 2, 3 },
	{ S("\n"), 512, SMTP_LINE_BARE_LF, 0, 1 },
	{ S("QUIT\n"), 512, SMTP_LINE_BARE_LF, 4, 5 },
	{ S("\n\r\n"), 512, SMTP_LINE_BARE_LF, 0, 1 },
	/* bare CR: the line ends at the CR */
	{ S("NO\rOP\r\n"), 512, SMTP_LINE_BARE_CR, 2, 3 },
	{ S("NO\r\r\n"), 512, SMTP_LINE_BARE_CR, 2, 3 },
	{ S("\r\r"), 512, SMTP_LINE_BARE_CR, 0, 1 },
	{ S("\r."), 512, SMTP_LINE_BARE_CR, 0, 1 },
	/* NUL: reported with the whole line, so the session can skip it */
	{ S("NO\0OP\r\n"), 512, SMTP_LINE_NUL, 5, 7 },
	{ S("\0\r\nQUIT\r\n"), 512, SMTP_LINE_NUL, 1, 3 },
	{ S("\0"), 512, SMTP_LINE_MORE, 0, 0 },
	{ S("NO\0OP\n"), 512, SMTP_LINE_BARE_LF, 5, 6 },
	/* limits: max counts the CRLF */
	{ S("12345678\r\n"), 10, SMTP_LINE_OK, 8, 10 },
	{ S("123456789\r\n"), 10, SMTP_LINE_TOO_LONG, 0, 0 },
	{ S("123456789\r"), 10, SMTP_LINE_TOO_LONG, 0, 0 },
	{ S("1234567890"), 10, SMTP_LINE_TOO_LONG, 0, 0 },
	{ S("1234567890\r\n"), 10, SMTP_LINE_TOO_LONG, 0, 0 },
	{ S("123456789"), 10, SMTP_LINE_MORE, 0, 0 },
	{ S("12345678\r"), 10, SMTP_LINE_MORE, 0, 0 },
	{ S("12345678\rX"), 10, SMTP_LINE_BARE_CR, 8, 9 },
	{ S("123456789\n"), 10, SMTP_LINE_BARE_LF, 9, 10 },
	{ S("1234567890\n"), 10, SMTP_LINE_TOO_LONG, 0, 0 },
	{ S("\r\n"), 2, SMTP_LINE_OK, 0, 2 },
	{ S("\r\n"), 1, SMTP_LINE_TOO_LONG, 0, 0 },
	{ S("x"), 0, SMTP_LINE_TOO_LONG, 0, 0 },
};

static void
check_line(const struct line_case *c, size_t n, size_t idx)
{
	size_t ll = 99, cons = 99;
	char *buf = dup_exact(c->in, n);
	enum smtp_line_result r = smtp_line_find(buf, n, c->max, &ll, &cons);

	if (n < c->len && r == SMTP_LINE_MORE) {
		/* an undecided prefix */
		free(buf);
		return;
	}
	if (r != c->want ||
	    (r != SMTP_LINE_MORE && r != SMTP_LINE_TOO_LONG &&
	     (ll != c->line_len || cons != c->consumed))) {
		print_error("line case %zu \"%s\" prefix %zu: got %d len %zu consumed %zu, "
		    "want %d len %zu consumed %zu\n", idx, show(c->in, c->len), n,
		    (int)r, ll, cons, (int)c->want, c->line_len, c->consumed);
		free(buf);
		fail();
	}
	free(buf);
}

static void
test_line_find(void **state)
{
	size_t i, n;

	(void)state;
	for (i = 0; i < ARRAY_LEN(line_cases); i++) {
		/* whole, then every prefix: a prefix may say MORE, or must
		 * already give the final answer. */
		check_line(&line_cases[i], line_cases[i].len, i);
		for (n = 0; n < line_cases[i].len; n++)
			check_line(&line_cases[i], n, i);
	}
}

/* RFC 5321 4.5.3.1.4: 512 octets including CRLF. */
static void
test_line_find_512(void **state)
{
	char buf[520];
	size_t ll, cons;

	(void)state;
	memset(buf, 'x', sizeof(buf));
	memcpy(buf + 510, "\r\n", 2);
	assert_int_equal(smtp_line_find(buf, 512, 512, &ll, &cons), SMTP_LINE_OK);
	assert_int_equal(ll, 510);
	assert_int_equal(cons, 512);
	memset(buf, 'x', sizeof(buf));
	memcpy(buf + 511, "\r\n", 2);
	assert_int_equal(smtp_line_find(buf, 513, 512, &ll, &cons), SMTP_LINE_TOO_LONG);
	assert_int_equal(smtp_line_find(buf, 511, 512, &ll, &cons), SMTP_LINE_MORE);
	assert_int_equal(smtp_line_find(buf, 512, 512, &ll, &cons), SMTP_LINE_TOO_LONG);
}

/* Every octet value in every position of a short line: no crash, and the
 * answer agrees with a direct reading of the rules. */
static void
test_line_find_all_octets(void **state)
{
	unsigned c;
	size_t ll, cons;

	(void)state;
	for (c = 0; c < 256; c++) {
		char in[4] = { 'a', (char)c, '\r', '\n' };
		char *buf = dup_exact(in, sizeof(in));
		enum smtp_line_result r = smtp_line_find(buf, sizeof(in), 512, &ll, &cons);

		if (c == '\n')
			assert_int_equal(r, SMTP_LINE_BARE_LF);
		else if (c == '\r')
			assert_int_equal(r, SMTP_LINE_BARE_CR);
		else if (c == 0)
			assert_int_equal(r, SMTP_LINE_NUL);
		else {
			assert_int_equal(r, SMTP_LINE_OK);
			assert_int_equal(ll, 2);
			assert_int_equal(cons, 4);
		}
		free(buf);
	}
}

/* ---- smtp_command_parse / smtp_verb_name ---- */

struct cmd_case {
	const char *line;
	enum smtp_verb verb;
	const char *args;
};

static const struct cmd_case cmd_cases[] = {
	{ "HELO client.example", SMTP_VERB_HELO, "client.example" },
	{ "helo client.example", SMTP_VERB_HELO, "client.example" },
	{ "EHLO client.example", SMTP_VERB_EHLO, "client.example" },
	{ "eHlO [192.0.2.1]", SMTP_VERB_EHLO, "[192.0.2.1]" },
	{ "MAIL FROM:<a>", SMTP_VERB_MAIL, "FROM:<a>" },
	{ "mail FROM:<a> SIZE=10", SMTP_VERB_MAIL, "FROM:<a> SIZE=10" },
	{ "Mail from:<>", SMTP_VERB_MAIL, "from:<>" },
	{ "RCPT TO:<b@c>", SMTP_VERB_RCPT, "TO:<b@c>" },
	{ "rcpt to:<b@c>", SMTP_VERB_RCPT, "to:<b@c>" },
	{ "DATA", SMTP_VERB_DATA, "" },
	{ "data", SMTP_VERB_DATA, "" },
	{ "BDAT 100 LAST", SMTP_VERB_BDAT, "100 LAST" },
	{ "bdat 0", SMTP_VERB_BDAT, "0" },
	{ "RSET", SMTP_VERB_RSET, "" },
	{ "rset", SMTP_VERB_RSET, "" },
	{ "NOOP", SMTP_VERB_NOOP, "" },
	{ "noop anything at all", SMTP_VERB_NOOP, "anything at all" },
	{ "QUIT", SMTP_VERB_QUIT, "" },
	{ "quit", SMTP_VERB_QUIT, "" },
	{ "QUIT   ", SMTP_VERB_QUIT, "" },
	{ "HELP", SMTP_VERB_HELP, "" },
	{ "help MAIL", SMTP_VERB_HELP, "MAIL" },
	{ "VRFY a@b", SMTP_VERB_VRFY, "a@b" },
	{ "vrfy a@b", SMTP_VERB_VRFY, "a@b" },
	{ "EXPN list", SMTP_VERB_EXPN, "list" },
	{ "expn list", SMTP_VERB_EXPN, "list" },
	{ "STARTTLS", SMTP_VERB_STARTTLS, "" },
	{ "starttls", SMTP_VERB_STARTTLS, "" },
	{ "StartTLS", SMTP_VERB_STARTTLS, "" },
	{ "STARTTLS x", SMTP_VERB_STARTTLS, "x" },
	{ "AUTH PLAIN AGEAYg==", SMTP_VERB_AUTH, "PLAIN AGEAYg==" },
	{ "auth login", SMTP_VERB_AUTH, "login" },
	/* only the one SP after the verb is eaten; trailing SP is dropped */
	{ "EHLO  x", SMTP_VERB_EHLO, " x" },
	{ "EHLO x  ", SMTP_VERB_EHLO, "x" },
	{ "EHLO ", SMTP_VERB_EHLO, "" },
	/* unknown verbs */
	{ "", SMTP_VERB_UNKNOWN, "" },
	{ " MAIL FROM:<a>", SMTP_VERB_UNKNOWN, "MAIL FROM:<a>" },
	{ "MAILFROM:<a>", SMTP_VERB_UNKNOWN, "" },
	{ "MAIL\tFROM:<a>", SMTP_VERB_UNKNOWN, "" },
	{ "MAI", SMTP_VERB_UNKNOWN, "" },
	{ "STARTTLSX", SMTP_VERB_UNKNOWN, "" },
	{ "STARTTLSXY z", SMTP_VERB_UNKNOWN, "z" },
	{ "XYZZY foo", SMTP_VERB_UNKNOWN, "foo" },
	{ "UNKNOWN", SMTP_VERB_UNKNOWN, "" },
	{ "D\xc3\x85TA", SMTP_VERB_UNKNOWN, "" },
	{ "GET / HTTP/1.1", SMTP_VERB_UNKNOWN, "/ HTTP/1.1" },
};

static void
test_command_parse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(cmd_cases); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		size_t n = strlen(c->line);
		char *buf = dup_exact(c->line, n);
		struct smtp_command cmd;

		smtp_command_parse(buf, n, &cmd);
		if (cmd.verb != c->verb || cmd.args_len != strlen(c->args) ||
		    memcmp(cmd.args, c->args, cmd.args_len) != 0 ||
		    cmd.args < buf || cmd.args + cmd.args_len > buf + n) {
			print_error("command case %zu \"%s\": verb %d args \"%.*s\"\n",
			    i, c->line, (int)cmd.verb, (int)cmd.args_len, cmd.args);
			free(buf);
			fail();
		}
		free(buf);
	}
}

/* A NUL inside the verb must not make a shorter verb match. */
static void
test_command_parse_nul(void **state)
{
	static const struct { const char *in; size_t len; enum smtp_verb verb; } rows[] = {
		{ S("QUIT\0"), SMTP_VERB_UNKNOWN },
		{ S("QU\0IT"), SMTP_VERB_UNKNOWN },
		{ S("\0QUIT"), SMTP_VERB_UNKNOWN },
		{ S("QUIT \0"), SMTP_VERB_QUIT },
		{ S("DATA"), SMTP_VERB_DATA },
	};
	struct smtp_command cmd;
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(rows); i++) {
		char *buf = dup_exact(rows[i].in, rows[i].len);

		smtp_command_parse(buf, rows[i].len, &cmd);
		free(buf);
		if (cmd.verb != rows[i].verb)
			fail_msg("command NUL row %zu: verb %d", i, (int)cmd.verb);
	}
}

static void
test_verb_name(void **state)
{
	unsigned v;
	struct smtp_command cmd;

	(void)state;
	assert_string_equal(smtp_verb_name(SMTP_VERB_UNKNOWN), "UNKNOWN");
	assert_string_equal(smtp_verb_name(SMTP_VERB_COUNT), "UNKNOWN");
	assert_string_equal(smtp_verb_name(SMTP_VERB_STARTTLS), "STARTTLS");
	/* every name parses back to its verb */
	for (v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
		const char *name = smtp_verb_name((enum smtp_verb)v);

		assert_non_null(name);
		smtp_command_parse(name, strlen(name), &cmd);
		assert_int_equal(cmd.verb, v);
		assert_int_equal(cmd.args_len, 0);
	}
}

/* ---- MAIL ---- */

/* The parsed result as one string, so rows stay short: "<addr>" then
 * " null", " size=N", " body=X", " smtputf8", " auth" when not default. */
static const char *
describe_mail(const struct smtp_mail *m)
{
	static char buf[SMTP_ADDRESS_MAX + 128];
	static const char *const bodies[] = { "UNSET", "7BIT", "8BITMIME", "BINARYMIME" };
	int o;

	o = snprintf(buf, sizeof(buf), "<%s>%s", m->address, m->null_sender ? " null" : "");
	if (m->size >= 0)
		o += snprintf(buf + o, sizeof(buf) - (size_t)o, " size=%lld", (long long)m->size);
	if (m->body != SMTP_BODY_UNSET)
		o += snprintf(buf + o, sizeof(buf) - (size_t)o, " body=%s", bodies[m->body]);
	if (m->smtputf8)
		o += snprintf(buf + o, sizeof(buf) - (size_t)o, " smtputf8");
	if (m->has_auth_param)
		snprintf(buf + o, sizeof(buf) - (size_t)o, " auth");
	return buf;
}

struct mail_case {
	const char *in;
	size_t len;
	enum smtp_parse_result want;
	const char *result;   /* describe_mail() on OK */
};

#define MAIL_OK(x, res) { S(x), SMTP_PARSE_OK, res }
#define MAIL_ERR(x, r)  { S(x), r, NULL }

static const struct mail_case mail_cases[] = {
	/* shape of the command */
	MAIL_OK("FROM:<a@b>", "<a@b>"),
	MAIL_OK("from:<a@b>", "<a@b>"),
	MAIL_OK("FrOm:<a@b>", "<a@b>"),
	MAIL_OK("FROM: <a@b>", "<a@b>"),
	MAIL_OK("FROM:<>", "<> null"),
	MAIL_OK("FROM: <>", "<> null"),
	MAIL_OK("FROM:<> SIZE=100", "<> null size=100"),
	MAIL_ERR("", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM <a@b>", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:  <a@b>", SMTP_PARSE_SYNTAX),
	MAIL_ERR("TO:<a@b>", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:a@b", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b>x", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b>>", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<> x", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> ", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b>  SIZE=1", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=1 ", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<<a@b>>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:< a@b>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@b >", SMTP_PARSE_BAD_ADDRESS),
	/* control characters anywhere */
	MAIL_ERR("FROM:<a@b>\t", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:\t<a@b>", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a\x01@b>", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b>\x7f", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=1\0", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b>\r", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<\"a\tb\"@x>", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<\"a\\\x1b\"@x>", SMTP_PARSE_SYNTAX),
	/* dot-string local parts */
	MAIL_OK("FROM:<a.b.c@x>", "<a.b.c@x>"),
	MAIL_OK("FROM:<!#$%&'*+-/=?^_`{|}~@x>", "<!#$%&'*+-/=?^_`{|}~@x>"),
	MAIL_OK("FROM:<User.Name+tag@Example.COM>", "<User.Name+tag@Example.COM>"),
	MAIL_ERR("FROM:<.a@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a.@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a..b@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a(b)@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a b@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a,b@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a\\b@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@b@c>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<", SMTP_PARSE_BAD_ADDRESS),
	/* quoted-string local parts (RFC 5321 4.1.2) */
	MAIL_OK("FROM:<\"a b\"@x>", "<\"a b\"@x>"),
	MAIL_OK("FROM:<\"a\\\"b\"@x>", "<\"a\\\"b\"@x>"),
	MAIL_OK("FROM:<\"a\\\\b\"@x>", "<\"a\\\\b\"@x>"),
	MAIL_OK("FROM:<\"a>b\"@x>", "<\"a>b\"@x>"),
	MAIL_OK("FROM:<\"a@b\"@x>", "<\"a@b\"@x>"),
	MAIL_OK("FROM:<\"\"@x>", "<\"\"@x>"),
	MAIL_OK("FROM:<\"(),:;<>[]\"@x>", "<\"(),:;<>[]\"@x>"),
	MAIL_ERR("FROM:<\"ab@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\"a\"b@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a\"b\"@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\"a\\\"@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\"a\".b@x>", SMTP_PARSE_BAD_ADDRESS),
	/* domains */
	MAIL_OK("FROM:<a@x-y.example>", "<a@x-y.example>"),
	MAIL_OK("FROM:<a@x--y.example>", "<a@x--y.example>"),
	MAIL_OK("FROM:<a@1.2.3.4>", "<a@1.2.3.4>"),
	MAIL_OK("FROM:<a@x>", "<a@x>"),
	MAIL_ERR("FROM:<a@-x.example>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@x-.example>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@x.-y>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@x..example>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@.example>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@example.>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@x_y.example>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@x y>", SMTP_PARSE_BAD_ADDRESS),
	/* address literals (RFC 5321 4.1.3) */
	MAIL_OK("FROM:<a@[192.0.2.1]>", "<a@[192.0.2.1]>"),
	MAIL_OK("FROM:<a@[0.0.0.0]>", "<a@[0.0.0.0]>"),
	MAIL_OK("FROM:<a@[255.255.255.255]>", "<a@[255.255.255.255]>"),
	MAIL_OK("FROM:<a@[IPv6:::1]>", "<a@[IPv6:::1]>"),
	MAIL_OK("FROM:<a@[IPv6:2001:db8::1]>", "<a@[IPv6:2001:db8::1]>"),
	MAIL_OK("FROM:<a@[ipv6:2001:DB8::]>", "<a@[ipv6:2001:DB8::]>"),
	MAIL_OK("FROM:<a@[IPv6:1:2:3:4:5:6:7:8]>", "<a@[IPv6:1:2:3:4:5:6:7:8]>"),
	MAIL_OK("FROM:<a@[IPv6:::]>", "<a@[IPv6:::]>"),
	MAIL_OK("FROM:<a@[IPv6:::ffff:192.0.2.1]>", "<a@[IPv6:::ffff:192.0.2.1]>"),
	MAIL_OK("FROM:<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>", "<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>"),
	MAIL_OK("FROM:<a@[IPv6:1:2:3:4:5::6]>", "<a@[IPv6:1:2:3:4:5::6]>"),
	MAIL_ERR("FROM:<a@[192.0.2.256]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[192.0.2]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[192.0.2.1.5]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[1922.0.2.1]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[192.0.2.1>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[x]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:1:2:3:4:5:6:7]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:1:2:3:4:5:6:7:8:9]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:1:2:3:4:5:6:7::]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:1::2::3]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6::::]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6::1]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:1:]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:12345::]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:g::]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:1.2.3.4::]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[IPv6:::1.2.3]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[X-foo:bar]>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@[a\\]b]>", SMTP_PARSE_BAD_ADDRESS),
	/* source routes: parsed, then dropped */
	MAIL_OK("FROM:<@a,@b:c@d>", "<c@d>"),
	MAIL_OK("FROM:<@relay.example:c@d>", "<c@d>"),
	MAIL_ERR("FROM:<@a,b:c@d>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<@a c@d>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<@a:>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<@[192.0.2.1]:c@d>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<@-a:c@d>", SMTP_PARSE_BAD_ADDRESS),
	/* UTF-8 (RFC 6531): only with SMTPUTF8 */
	MAIL_OK("FROM:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a> SMTPUTF8",
	    "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a> smtputf8"),
	MAIL_ERR("FROM:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>",
	    SMTP_PARSE_NON_ASCII),
	MAIL_OK("FROM:<j\xc3\xb6rg@example> smtputf8", "<j\xc3\xb6rg@example> smtputf8"),
	MAIL_ERR("FROM:<j\xc3\xb6rg@example>", SMTP_PARSE_NON_ASCII),
	MAIL_ERR("FROM:<a@b\xc3\xbc.example>", SMTP_PARSE_NON_ASCII),
	MAIL_OK("FROM:<a@b\xc3\xbc.example> SMTPUTF8", "<a@b\xc3\xbc.example> smtputf8"),
	MAIL_OK("FROM:<a@\xc3\xbc> SMTPUTF8", "<a@\xc3\xbc> smtputf8"),
	MAIL_ERR("FROM:<a@\xc3\xbc-> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_OK("FROM:<\"\xc3\xbc x\"@x> SMTPUTF8", "<\"\xc3\xbc x\"@x> smtputf8"),
	MAIL_ERR("FROM:<\"\xc3\xbc x\"@x>", SMTP_PARSE_NON_ASCII),
	MAIL_OK("FROM:<\xf0\x9f\x98\x80@x> SMTPUTF8", "<\xf0\x9f\x98\x80@x> smtputf8"),
	MAIL_OK("FROM:<\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf@x> SMTPUTF8",
	    "<\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf@x> smtputf8"),
	MAIL_ERR("FROM:<\xc3\xbc@x> FOO", SMTP_PARSE_BAD_PARAM),
	MAIL_OK("FROM:<a@b> SMTPUTF8", "<a@b> smtputf8"),
	/* malformed UTF-8 is never a mailbox, with or without SMTPUTF8 */
	MAIL_ERR("FROM:<\xc3@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a\xc3> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xc0\xaf@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xc1\xbf@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xe0\x80\xaf@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xf0\x80\x80\xaf@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xed\xa0\x80@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xed\xbf\xbf@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xf4\x90\x80\x80@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xf5\x80\x80\x80@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\x80@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xff@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xe4\xbe@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xc3\x28@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<a@x\xed\xa0\x80> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\"\xc0\x80\"@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\xc0\xaf@x>", SMTP_PARSE_BAD_ADDRESS),
	MAIL_ERR("FROM:<\"\\\xc3\xbc\"@x> SMTPUTF8", SMTP_PARSE_BAD_ADDRESS),
	/* SIZE (RFC 1870) */
	MAIL_OK("FROM:<a@b> SIZE=0", "<a@b> size=0"),
	MAIL_OK("FROM:<a@b> SIZE=12345", "<a@b> size=12345"),
	MAIL_OK("FROM:<a@b> size=5", "<a@b> size=5"),
	MAIL_OK("FROM:<a@b> SIZE=0000000000000000001", "<a@b> size=1"),
	MAIL_OK("FROM:<a@b> SIZE=9223372036854775807", "<a@b> size=9223372036854775807"),
	MAIL_OK("FROM:<a@b> SIZE=9999999999999999999", "<a@b> size=9223372036854775807"),
	MAIL_OK("FROM:<a@b> SIZE=12345678901234567890", "<a@b> size=9223372036854775807"),
	MAIL_OK("FROM:<a@b> SIZE=99999999999999999999", "<a@b> size=9223372036854775807"),
	MAIL_ERR("FROM:<a@b> SIZE=123456789012345678901", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=-1", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=+1", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=1k", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=1=2", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=1\xc3\xa9", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> SIZE=1 SIZE=2", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> size=1 SIZE=1", SMTP_PARSE_BAD_PARAM),
	/* BODY (RFC 6152, RFC 3030) */
	MAIL_OK("FROM:<a@b> BODY=7BIT", "<a@b> body=7BIT"),
	MAIL_OK("FROM:<a@b> BODY=8BITMIME", "<a@b> body=8BITMIME"),
	MAIL_OK("FROM:<a@b> body=8bitmime", "<a@b> body=8BITMIME"),
	MAIL_OK("FROM:<a@b> BODY=BINARYMIME", "<a@b> body=BINARYMIME"),
	MAIL_ERR("FROM:<a@b> BODY=8BIT", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> BODY=8BITMIMEX", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> BODY=", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> BODY", SMTP_PARSE_SYNTAX),
	MAIL_ERR("FROM:<a@b> BODY=7BIT BODY=7BIT", SMTP_PARSE_BAD_PARAM),
	/* SMTPUTF8 (RFC 6531) */
	MAIL_OK("FROM:<a@b> smtputf8", "<a@b> smtputf8"),
	MAIL_ERR("FROM:<a@b> SMTPUTF8=1", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> SMTPUTF8=", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> SMTPUTF8 SMTPUTF8", SMTP_PARSE_BAD_PARAM),
	/* AUTH (RFC 4954 5): checked as xtext, otherwise ignored */
	MAIL_OK("FROM:<a@b> AUTH=<>", "<a@b> auth"),
	MAIL_OK("FROM:<a@b> AUTH=a+2Bb@c.example", "<a@b> auth"),
	MAIL_OK("FROM:<a@b> auth=x", "<a@b> auth"),
	MAIL_ERR("FROM:<a@b> AUTH=a+2bb", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> AUTH=a+2", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> AUTH=a+", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> AUTH=a=b", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> AUTH=", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> AUTH", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> AUTH=\xc3\xa9", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> AUTH=<> AUTH=<>", SMTP_PARSE_BAD_PARAM),
	/* everything at once, any order */
	MAIL_OK("FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 AUTH=<>",
	    "<a@b> size=10 body=8BITMIME smtputf8 auth"),
	MAIL_OK("FROM:<a@b> auth=<> smtputf8 body=binarymime size=10",
	    "<a@b> size=10 body=BINARYMIME smtputf8 auth"),
	/* unknown and malformed parameters */
	MAIL_ERR("FROM:<a@b> RET=HDRS", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> ENVID=x", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> FOO", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> X-FOO=1", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> =1", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> -X", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> S_ZE=1", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> SIZE=1 FOO", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> SIZEX=1", SMTP_PARSE_BAD_PARAM),
	MAIL_ERR("FROM:<a@b> SIZ=1", SMTP_PARSE_BAD_PARAM),
};

static void
check_mail(const struct mail_case *c, size_t idx)
{
	char *buf = dup_exact(c->in, c->len);
	struct smtp_mail m;
	const char *why = "unset";
	enum smtp_parse_result r = smtp_mail_parse(buf, c->len, &m, &why);
	const char *got = describe_mail(&m);

	if (r != c->want || (r == SMTP_PARSE_OK && strcmp(got, c->result) != 0) ||
	    (r == SMTP_PARSE_OK) != (why == NULL) || (why != NULL && why[0] == '\0')) {
		print_error("mail case %zu \"%s\": got %d \"%s\" (%s), want %d \"%s\"\n",
		    idx, show(c->in, c->len), (int)r, show(got, strlen(got)),
		    why ? why : "-", (int)c->want, c->result ? c->result : "-");
		free(buf);
		fail();
	}
	free(buf);
}

static void
test_mail_parse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(mail_cases); i++)
		check_mail(&mail_cases[i], i);
}

/* Fill buf with a domain of exactly n octets made of labels of at most 49. */
static void
make_domain(char *buf, size_t n)
{
	size_t o = 0;

	while (n - o > 50) {
		memset(buf + o, 'd', 49);
		buf[o + 49] = '.';
		o += 50;
	}
	memset(buf + o, 'e', n - o);
	buf[n] = '\0';
}

/* RFC 5321 4.5.3.1.1-2: 64 octets of local part, 255 of domain. */
static void
test_mail_lengths(void **state)
{
	static const struct { size_t local, domain; bool quoted; enum smtp_parse_result want; } rows[] = {
		{ 64, 255, false, SMTP_PARSE_OK },
		{ 65, 10, false, SMTP_PARSE_TOO_LONG },
		{ 10, 256, false, SMTP_PARSE_TOO_LONG },
		{ 65, 256, false, SMTP_PARSE_TOO_LONG },
		{ 64, 1, false, SMTP_PARSE_OK },
		{ 1, 255, false, SMTP_PARSE_OK },
		{ 1000, 10, false, SMTP_PARSE_TOO_LONG },
		{ 10, 1000, false, SMTP_PARSE_TOO_LONG },
		/* quotes count: they are octets of the local part */
		{ 64, 10, true, SMTP_PARSE_OK },
		{ 65, 10, true, SMTP_PARSE_TOO_LONG },
	};
	char args[1100 + 1000 + 32], local[1001], domain[1001];
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(rows); i++) {
		struct smtp_mail m;
		struct smtp_rcpt rc;
		const char *why;
		size_t n;

		memset(local, 'l', rows[i].local);
		if (rows[i].quoted) {
			local[0] = '"';
			local[rows[i].local - 1] = '"';
			local[rows[i].local / 2] = ' ';
		}
		local[rows[i].local] = '\0';
		make_domain(domain, rows[i].domain);
		n = (size_t)snprintf(args, sizeof(args), "FROM:<%s@%s> SIZE=1", local, domain);
		assert_int_equal(smtp_mail_parse(args, n, &m, &why), rows[i].want);
		n = (size_t)snprintf(args, sizeof(args), "TO:<%s@%s>", local, domain);
		assert_int_equal(smtp_rcpt_parse(args, n, false, &rc, &why), rows[i].want);
		n = (size_t)snprintf(args, sizeof(args), "%s@%s", local, domain);
		assert_int_equal(smtp_mailbox_check(args, n, false), rows[i].want);
		if (rows[i].want == SMTP_PARSE_OK) {
			assert_null(why);
			assert_string_equal(rc.address, args);
			assert_string_equal(m.address, args);
			assert_int_equal(strlen(m.address), rows[i].local + 1 + rows[i].domain);
		} else {
			assert_non_null(why);
		}
	}
}

/* ---- RCPT ---- */

struct rcpt_case {
	const char *in;
	size_t len;
	bool utf8_ok;
	enum smtp_parse_result want;
	const char *address;
};

static const struct rcpt_case rcpt_cases[] = {
	{ S("TO:<a@b>"), false, SMTP_PARSE_OK, "a@b" },
	{ S("to:<a@b>"), false, SMTP_PARSE_OK, "a@b" },
	{ S("To: <a@b>"), false, SMTP_PARSE_OK, "a@b" },
	{ S("TO:<\"a b\"@x>"), false, SMTP_PARSE_OK, "\"a b\"@x" },
	{ S("TO:<a@[IPv6:::1]>"), false, SMTP_PARSE_OK, "a@[IPv6:::1]" },
	{ S("TO:<@a,@b:c@d>"), false, SMTP_PARSE_OK, "c@d" },
	{ S("TO:<>"), false, SMTP_PARSE_BAD_ADDRESS, NULL },
	{ S("TO:<> SIZE=1"), false, SMTP_PARSE_BAD_ADDRESS, NULL },
	/* RFC 5321 4.1.1.3 Postmaster */
	{ S("TO:<Postmaster>"), false, SMTP_PARSE_OK, "Postmaster" },
	{ S("TO:<postmaster>"), false, SMTP_PARSE_OK, "postmaster" },
	{ S("TO: <POSTMASTER>"), false, SMTP_PARSE_OK, "POSTMASTER" },
	{ S("TO:<Postmaster@example.org>"), false, SMTP_PARSE_OK, "Postmaster@example.org" },
	{ S("TO:<Postmasterx>"), false, SMTP_PARSE_BAD_ADDRESS, NULL },
	{ S("TO:<Postmaster"), false, SMTP_PARSE_BAD_ADDRESS, NULL },
	{ S("TO:<Postmaster>x"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:<Postmaster> NOTIFY=NEVER"), false, SMTP_PARSE_BAD_PARAM, NULL },
	{ S("TO:<user>"), false, SMTP_PARSE_BAD_ADDRESS, NULL },
	/* no RCPT parameters are offered (no DSN) */
	{ S("TO:<a@b> NOTIFY=NEVER"), false, SMTP_PARSE_BAD_PARAM, NULL },
	{ S("TO:<a@b> ORCPT=rfc822;a@b"), false, SMTP_PARSE_BAD_PARAM, NULL },
	{ S("TO:<a@b> SMTPUTF8"), true, SMTP_PARSE_BAD_PARAM, NULL },
	{ S("TO:<a@b> X"), false, SMTP_PARSE_BAD_PARAM, NULL },
	{ S("TO:<a@b> "), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:<a@b>  X"), false, SMTP_PARSE_SYNTAX, NULL },
	/* shape */
	{ S(""), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("FROM:<a@b>"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:a@b"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO <a@b>"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:  <a@b>"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:<a@b"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:<a@b>x"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:<a@b>\r"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:<a\0@b>"), false, SMTP_PARSE_SYNTAX, NULL },
	{ S("TO:<a..b@c>"), false, SMTP_PARSE_BAD_ADDRESS, NULL },
	{ S("TO:<a@-b>"), false, SMTP_PARSE_BAD_ADDRESS, NULL },
	/* UTF-8 depends on the transaction's SMTPUTF8 */
	{ S("TO:<\xc3\xbc@x>"), false, SMTP_PARSE_NON_ASCII, NULL },
	{ S("TO:<\xc3\xbc@x>"), true, SMTP_PARSE_OK, "\xc3\xbc@x" },
	{ S("TO:<a@\xc3\xbc.example>"), false, SMTP_PARSE_NON_ASCII, NULL },
	{ S("TO:<a@\xc3\xbc.example>"), true, SMTP_PARSE_OK, "a@\xc3\xbc.example" },
	{ S("TO:<\xc3@x>"), true, SMTP_PARSE_BAD_ADDRESS, NULL },
	{ S("TO:<\xed\xa0\x80@x>"), true, SMTP_PARSE_BAD_ADDRESS, NULL },
	{ S("TO:<\xe0\x80\x80@x>"), false, SMTP_PARSE_BAD_ADDRESS, NULL },
};

static void
test_rcpt_parse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(rcpt_cases); i++) {
		const struct rcpt_case *c = &rcpt_cases[i];
		char *buf = dup_exact(c->in, c->len);
		struct smtp_rcpt rc;
		const char *why = "unset";
		enum smtp_parse_result r = smtp_rcpt_parse(buf, c->len, c->utf8_ok, &rc, &why);

		if (r != c->want || (r == SMTP_PARSE_OK && strcmp(rc.address, c->address) != 0) ||
		    (r == SMTP_PARSE_OK) != (why == NULL) || (why != NULL && why[0] == '\0')) {
			print_error("rcpt case %zu \"%s\": got %d \"%s\" (%s), want %d\n", i,
			    show(c->in, c->len), (int)r, rc.address, why ? why : "-", (int)c->want);
			free(buf);
			fail();
		}
		free(buf);
	}
}

/* ---- smtp_mailbox_check ---- */

struct mbox_case {
	const char *in;
	size_t len;
	bool utf8_ok;
	enum smtp_parse_result want;
};

static const struct mbox_case mbox_cases[] = {
	{ S("a@b"), false, SMTP_PARSE_OK },
	{ S("first.last@example.org"), false, SMTP_PARSE_OK },
	{ S("\"a b\"@x"), false, SMTP_PARSE_OK },
	{ S("\"a\\\"b\"@x"), false, SMTP_PARSE_OK },
	{ S("a@[192.0.2.1]"), false, SMTP_PARSE_OK },
	{ S("a@[IPv6:2001:db8::1]"), false, SMTP_PARSE_OK },
	{ S("\xc3\xbc@x"), false, SMTP_PARSE_NON_ASCII },
	{ S("\xc3\xbc@x"), true, SMTP_PARSE_OK },
	{ S("\xc3@x"), true, SMTP_PARSE_BAD_ADDRESS },
	{ S(""), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("a"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("@b"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("Postmaster"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("<a@b>"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("a@b>"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("a@b "), false, SMTP_PARSE_BAD_ADDRESS },
	{ S(" a@b"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("a\0@b"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("a@b\0"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("a@b\n"), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("a@b.c."), false, SMTP_PARSE_BAD_ADDRESS },
	{ S("@a:b@c"), false, SMTP_PARSE_BAD_ADDRESS },
};

static void
test_mailbox_check(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(mbox_cases); i++) {
		const struct mbox_case *c = &mbox_cases[i];
		char *buf = dup_exact(c->in, c->len);
		enum smtp_parse_result r = smtp_mailbox_check(buf, c->len, c->utf8_ok);

		free(buf);
		if (r != c->want) {
			print_error("mailbox case %zu \"%s\": got %d want %d\n", i,
			    show(c->in, c->len), (int)r, (int)c->want);
			fail();
		}
	}
}

/* ---- BDAT ---- */

struct bdat_case {
	const char *in;
	size_t len;
	enum smtp_parse_result want;
	uint64_t size;
	bool last;
};

static const struct bdat_case bdat_cases[] = {
	{ S("0"), SMTP_PARSE_OK, 0, false },
	{ S("0 LAST"), SMTP_PARSE_OK, 0, true },
	{ S("1"), SMTP_PARSE_OK, 1, false },
	{ S("100 LAST"), SMTP_PARSE_OK, 100, true },
	{ S("100 last"), SMTP_PARSE_OK, 100, true },
	{ S("100 LaSt"), SMTP_PARSE_OK, 100, true },
	{ S("007"), SMTP_PARSE_OK, 7, false },
	{ S("9999999999999999999"), SMTP_PARSE_OK, UINT64_C(9999999999999999999), false },
	{ S("0000000000000000001 LAST"), SMTP_PARSE_OK, 1, true },
	{ S("18446744073709551615"), SMTP_PARSE_OK, UINT64_MAX, false },
	{ S("12345678901234567890"), SMTP_PARSE_OK, 12345678901234567890u, false },
	{ S("99999999999999999999999999999"), SMTP_PARSE_OK, UINT64_MAX, false },
	{ S("99999999999999999999999999999 LAST"), SMTP_PARSE_OK, UINT64_MAX, true },
	{ S(""), SMTP_PARSE_SYNTAX, 0, false },
	{ S("-1"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("+5"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1 2"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1 LAST x"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1 LAST LAST"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1  LAST"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1 LAS"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1 LASTX"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1LAST"), SMTP_PARSE_SYNTAX, 0, false },
	{ S(" 1"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1 "), SMTP_PARSE_SYNTAX, 0, false },
	{ S("LAST"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("0x10"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1.5"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1\0"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("1\tLAST"), SMTP_PARSE_SYNTAX, 0, false },
	{ S("\xd9\xa1"), SMTP_PARSE_SYNTAX, 0, false },
};

static void
test_bdat_parse(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(bdat_cases); i++) {
		const struct bdat_case *c = &bdat_cases[i];
		char *buf = dup_exact(c->in, c->len);
		uint64_t size = 42;
		bool last = true;
		enum smtp_parse_result r = smtp_bdat_parse(buf, c->len, &size, &last);

		free(buf);
		if (r != c->want || (r == SMTP_PARSE_OK && (size != c->size || last != c->last))) {
			print_error("bdat case %zu \"%s\": got %d %llu %d\n", i,
			    show(c->in, c->len), (int)r, (unsigned long long)size, (int)last);
			fail();
		}
	}
}

/* ---- smtp_address_equal ---- */

static void
test_address_equal(void **state)
{
	static const struct { const char *a, *b; bool want; } rows[] = {
		{ "a@b", "a@b", true },
		{ "a@Example.COM", "a@example.com", true },
		{ "A@b", "a@b", true },            /* COLLATE NOCASE, as user_addresses */
		{ "Alice@example.org", "alice@EXAMPLE.org", true },
		{ "alice@example.org", "alicf@example.org", false },
		{ "a@b", "a@c", false },
		{ "a@bc", "a@b", false },
		{ "ab@c", "a@bc", false },
		{ "\"a@x\"@b", "\"a@x\"@B", true },
		{ "\"a@x\"@b", "a@x@b", false },
		{ "\"a\"@b", "a@b", false },
		{ "Postmaster", "Postmaster", true },
		{ "Postmaster", "postmaster", true },
		{ "\"A b\"@x", "\"a B\"@X", true },
		{ "a@b", "a", false },
		{ "", "", true },
		{ "", "a@b", false },
		{ "\xc3\xbc@\xc3\xbc.x", "\xc3\xbc@\xc3\xbc.X", true },
		{ "\xc3\xbc@\xc3\xbc.x", "\xc3\x9c@\xc3\xbc.x", false },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(rows); i++) {
		if (smtp_address_equal(rows[i].a, rows[i].b) != rows[i].want ||
		    smtp_address_equal(rows[i].b, rows[i].a) != rows[i].want) {
			print_error("address_equal case %zu \"%s\" \"%s\"\n", i, rows[i].a, rows[i].b);
			fail();
		}
	}
}

/* Every prefix of every argument row: no over-read (valgrind watches the
 * exact-size copies), and *why_r is set exactly when there is an error. */
static void
test_prefixes(void **state)
{
	size_t i, n;

	(void)state;
	for (i = 0; i < ARRAY_LEN(mail_cases); i++) {
		for (n = 0; n <= mail_cases[i].len; n++) {
			char *buf = dup_exact(mail_cases[i].in, n);
			struct smtp_mail m;
			struct smtp_rcpt rc;
			const char *why = "unset";
			uint64_t size;
			bool last;

			if ((smtp_mail_parse(buf, n, &m, &why) == SMTP_PARSE_OK) != (why == NULL))
				fail_msg("mail prefix %zu of case %zu", n, i);
			why = "unset";
			if ((smtp_rcpt_parse(buf, n, true, &rc, &why) == SMTP_PARSE_OK) != (why == NULL))
				fail_msg("rcpt prefix %zu of case %zu", n, i);
			(void)smtp_mailbox_check(buf, n, true);
			(void)smtp_bdat_parse(buf, n, &size, &last);
			free(buf);
		}
	}
	for (i = 0; i < ARRAY_LEN(rcpt_cases); i++) {
		for (n = 0; n <= rcpt_cases[i].len; n++) {
			char *buf = dup_exact(rcpt_cases[i].in, n);
			struct smtp_rcpt rc;
			const char *why = "unset";

			if ((smtp_rcpt_parse(buf, n, true, &rc, &why) == SMTP_PARSE_OK) != (why == NULL))
				fail_msg("rcpt prefix %zu of case %zu", n, i);
			free(buf);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_find),
		cmocka_unit_test(test_line_find_512),
		cmocka_unit_test(test_line_find_all_octets),
		cmocka_unit_test(test_command_parse),
		cmocka_unit_test(test_command_parse_nul),
		cmocka_unit_test(test_verb_name),
		cmocka_unit_test(test_mail_parse),
		cmocka_unit_test(test_mail_lengths),
		cmocka_unit_test(test_rcpt_parse),
		cmocka_unit_test(test_mailbox_check),
		cmocka_unit_test(test_bdat_parse),
		cmocka_unit_test(test_address_equal),
		cmocka_unit_test(test_prefixes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
