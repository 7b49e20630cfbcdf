/*
 * test_dovecot_auth.c: Dovecot's auth-client lines (server/protocol/
 * dovecot_auth.c). A table of {line, expected result and fields} for the
 * parser, each line an exact-size heap copy (plus the LF's place) so that
 * valgrind catches any over-read; then the escaping both ways and the
 * formatters, including their bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/protocol/dovecot_auth.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct parse_case {
	const char *line;
	enum dovecot_auth_parse want;
	enum dovecot_auth_cmd cmd;
	uint32_t id;
	const char *mech;
	unsigned flags;
	const char *data, *user, *reason;
	bool temp, nologin;
	unsigned major, minor;
};

/* A row: the line, the result, the command, then the fields expected. */
#define P(l, w, c, ...) { .line = (l), .want = (w), .cmd = (c), __VA_ARGS__ }

static const struct parse_case parse_cases[] = {
	/* the handshake, as Dovecot 2.3 sends it */
	P("VERSION\t1\t2", DOVECOT_PARSE_OK, DOVECOT_CMD_VERSION, .major = 1, .minor = 2),
	P("VERSION\t1", DOVECOT_PARSE_BAD, DOVECOT_CMD_VERSION),
	P("VERSION\tx\t2", DOVECOT_PARSE_BAD, DOVECOT_CMD_VERSION),
	P("MECH\tPLAIN\tplaintext", DOVECOT_PARSE_OK, DOVECOT_CMD_MECH, .mech = "PLAIN", .flags = DOVECOT_MECH_PLAINTEXT),
	P("MECH\tLOGIN\tplaintext", DOVECOT_PARSE_OK, DOVECOT_CMD_MECH, .mech = "LOGIN", .flags = DOVECOT_MECH_PLAINTEXT),
	P("MECH\tAPOP\tprivate\tdictionary\tactive", DOVECOT_PARSE_OK, DOVECOT_CMD_MECH, .mech = "APOP",
	    .flags = DOVECOT_MECH_PRIVATE | DOVECOT_MECH_DICTIONARY | DOVECOT_MECH_ACTIVE),
	P("MECH\tSCRAM-SHA-256\tmutual-auth\tunknown-flag", DOVECOT_PARSE_OK, DOVECOT_CMD_MECH,
	    .mech = "SCRAM-SHA-256", .flags = DOVECOT_MECH_MUTUAL_AUTH),
	P("MECH\tANONYMOUS\tanonymous", DOVECOT_PARSE_OK, DOVECOT_CMD_MECH, .mech = "ANONYMOUS",
	    .flags = DOVECOT_MECH_ANONYMOUS),
	P("MECH", DOVECOT_PARSE_BAD, DOVECOT_CMD_MECH),
	P("MECH\t", DOVECOT_PARSE_BAD, DOVECOT_CMD_MECH),
	P("MECH\tA B", DOVECOT_PARSE_BAD, DOVECOT_CMD_MECH),
	P("MECH\tABCDEFGHIJKLMNOPQRSTU", DOVECOT_PARSE_BAD, DOVECOT_CMD_MECH),    /* 21 */
	P("MECH\tABCDEFGHIJKLMNOPQRST", DOVECOT_PARSE_OK, DOVECOT_CMD_MECH, .mech = "ABCDEFGHIJKLMNOPQRST"),
	P("SPID\t1234", DOVECOT_PARSE_OK, DOVECOT_CMD_SPID),
	P("SPID\t-1", DOVECOT_PARSE_BAD, DOVECOT_CMD_SPID),
	P("CUID\t7", DOVECOT_PARSE_OK, DOVECOT_CMD_CUID),
	P("COOKIE\t0123456789abcdef0123456789abcdef", DOVECOT_PARSE_OK, DOVECOT_CMD_COOKIE),
	P("COOKIE", DOVECOT_PARSE_BAD, DOVECOT_CMD_COOKIE),
	P("DONE", DOVECOT_PARSE_OK, DOVECOT_CMD_DONE),
	/* unknown commands are skipped, whatever follows */
	P("NOTICE\tsomething\tx", DOVECOT_PARSE_OK, DOVECOT_CMD_UNKNOWN),
	P("NOTICE\tsomething\t\001", DOVECOT_PARSE_BAD, DOVECOT_CMD_UNKNOWN),   /* malformed, whatever it is */
	P("", DOVECOT_PARSE_OK, DOVECOT_CMD_UNKNOWN),
	P("done", DOVECOT_PARSE_OK, DOVECOT_CMD_UNKNOWN),
	/* results */
	P("OK\t1\tuser=alice@example.org", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 1, .user = "alice@example.org"),
	P("OK\t4294967295\tuser=a\tother=x\tflag", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 4294967295u, .user = "a"),
	P("OK\t4294967296\tuser=a", DOVECOT_PARSE_BAD, DOVECOT_CMD_OK),
	P("OK\t0\tuser=a", DOVECOT_PARSE_BAD, DOVECOT_CMD_OK),
	P("OK\t+1", DOVECOT_PARSE_BAD, DOVECOT_CMD_OK),
	P("OK", DOVECOT_PARSE_BAD, DOVECOT_CMD_OK),
	P("OK\t2", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 2),
	P("OK\t2\tuser=", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 2),
	P("OK\t3\tuser=b\tnologin", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 3, .user = "b", .nologin = true),
	P("OK\t3\tuser=b\tproxy=y\thost=h", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 3, .user = "b", .nologin = true),
	P("OK\t3\tuser=b\tnologin=Y\treason=go away", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 3, .user = "b",
	    .nologin = true, .reason = "go away"),
	P("OK\t3\tuser=b\tnologins", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 3, .user = "b"),
	P("OK\t5\tuser=ta\001xb", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 5, .user = "taxb"),
	P("OK\t5\tuser=a\001tb\001nc\0011d", DOVECOT_PARSE_OK, DOVECOT_CMD_OK, .id = 5, .user = "a\tb\nc\001d"),
	P("OK\t5\tuser=a\0010b", DOVECOT_PARSE_BAD, DOVECOT_CMD_OK),   /* an escaped NUL */
	P("OK\t5\tuser=a\001", DOVECOT_PARSE_BAD, DOVECOT_CMD_OK),     /* a lone escape */
	P("FAIL\t9", DOVECOT_PARSE_OK, DOVECOT_CMD_FAIL, .id = 9),
	P("FAIL\t9\tuser=bob\treason=Authentication failed", DOVECOT_PARSE_OK, DOVECOT_CMD_FAIL, .id = 9,
	    .user = "bob", .reason = "Authentication failed"),
	P("FAIL\t9\tcode=temp_fail", DOVECOT_PARSE_OK, DOVECOT_CMD_FAIL, .id = 9, .temp = true),
	P("FAIL\t9\ttemp", DOVECOT_PARSE_OK, DOVECOT_CMD_FAIL, .id = 9, .temp = true),
	P("FAIL\t9\tcode=authz_fail", DOVECOT_PARSE_OK, DOVECOT_CMD_FAIL, .id = 9),
	P("FAIL\tx", DOVECOT_PARSE_BAD, DOVECOT_CMD_FAIL),
	P("CONT\t7\tVXNlcm5hbWU6", DOVECOT_PARSE_OK, DOVECOT_CMD_CONT, .id = 7, .data = "VXNlcm5hbWU6"),
	P("CONT\t7\t", DOVECOT_PARSE_OK, DOVECOT_CMD_CONT, .id = 7, .data = ""),
	P("CONT\t7", DOVECOT_PARSE_OK, DOVECOT_CMD_CONT, .id = 7, .data = ""),
	P("CONT\t7\tnot base64!", DOVECOT_PARSE_BAD, DOVECOT_CMD_CONT),
	P("CONT\t7\tab\001rcd", DOVECOT_PARSE_BAD, DOVECOT_CMD_CONT),   /* a CR once unescaped */
	P("CONT", DOVECOT_PARSE_BAD, DOVECOT_CMD_CONT),
};

static char *
dup_line(const char *s, size_t n)
{
	char *p = malloc(n + 1);        /* the LF's place */

	assert_non_null(p);
	memcpy(p, s, n);
	p[n] = '\n';
	return p;
}

static void
check_str(const char *want, const char *got, const char *line)
{
	if (want == NULL) {
		if (got != NULL)
			fail_msg("%s: got \"%s\", want none", line, got);
		return;
	}
	if (got == NULL || strcmp(want, got) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", line, got ? got : "(none)", want);
}

static void
test_parse_table(void **state)
{
	for (size_t i = 0; i < ARRAY_LEN(parse_cases); i++) {
		const struct parse_case *c = &parse_cases[i];
		size_t n = strlen(c->line);
		char *line = dup_line(c->line, n);
		struct dovecot_auth_reply r;
		enum dovecot_auth_parse got = dovecot_auth_parse_line(line, n, &r);

		if (got != c->want)
			fail_msg("%s: result %d, want %d", c->line, got, c->want);
		if (got == DOVECOT_PARSE_OK) {
			assert_int_equal(r.cmd, c->cmd);
			assert_int_equal(r.id, c->id);
			if (c->cmd == DOVECOT_CMD_MECH) {
				assert_string_equal(r.mech, c->mech);
				assert_int_equal(r.mech_flags, c->flags);
			}
			if (c->cmd == DOVECOT_CMD_VERSION) {
				assert_int_equal(r.major, c->major);
				assert_int_equal(r.minor, c->minor);
			}
			check_str(c->data, r.data, c->line);
			check_str(c->user, r.user, c->line);
			check_str(c->reason, r.reason, c->line);
			assert_int_equal(r.temp, c->temp);
			assert_int_equal(r.nologin, c->nologin);
		}
		free(line);
	}
}

static void
test_parse_bounds(void **state)
{
	size_t n = DOVECOT_AUTH_LINE_MAX + 1;
	char *line = malloc(n + 1);
	struct dovecot_auth_reply r;

	assert_non_null(line);
	memset(line, 'A', n);
	memcpy(line, "CONT\t1\t", 7);
	assert_int_equal(dovecot_auth_parse_line(line, n, &r), DOVECOT_PARSE_TOO_LONG);
	memset(line, 'A', n);
	memcpy(line, "CONT\t1\t", 7);
	assert_int_equal(dovecot_auth_parse_line(line, n - 1, &r), DOVECOT_PARSE_OK);
	assert_int_equal(strlen(r.data), DOVECOT_AUTH_LINE_MAX - 7);
	/* a NUL or an LF inside a line is refused */
	memcpy(line, "OK\t1\0user=a", 11);
	assert_int_equal(dovecot_auth_parse_line(line, 11, &r), DOVECOT_PARSE_BAD);
	memcpy(line, "OK\t1\nuser=a", 11);
	assert_int_equal(dovecot_auth_parse_line(line, 11, &r), DOVECOT_PARSE_BAD);
	/* many fields: the first ones still count */
	{
		char big[1024] = "OK\t1\tuser=x";
		for (int i = 0; i < 100; i++)
			strcat(big, "\tp");
		assert_int_equal(dovecot_auth_parse_line(big, strlen(big), &r), DOVECOT_PARSE_OK);
		assert_string_equal(r.user, "x");
	}
	free(line);
}

static void
test_escape(void **state)
{
	char out[32], in[32];
	size_t pos = 0;
	long n;

	assert_true(dovecot_auth_escape(out, sizeof(out), &pos, "a\tb\001c\r\nd"));
	assert_string_equal(out, "a\001tb\0011c\001r\001nd");
	strcpy(in, out);
	n = dovecot_auth_unescape(in, strlen(in));
	assert_int_equal(n, 8);
	assert_memory_equal(in, "a\tb\001c\r\nd", 8);
	/* an unknown escape stands for the octet itself */
	strcpy(in, "\001x\001\\");
	assert_int_equal(dovecot_auth_unescape(in, 4), 2);
	assert_memory_equal(in, "x\\", 2);
	/* bounded: nothing half-written */
	pos = 0;
	assert_false(dovecot_auth_escape(out, 4, &pos, "ab\t"));
	assert_int_equal(pos, 0);
	assert_true(dovecot_auth_escape(out, 4, &pos, "abc"));
	assert_int_equal(pos, 3);
}

static void
test_format(void **state)
{
	char buf[DOVECOT_AUTH_LINE_MAX + 64];
	struct dovecot_auth_params p = {
		.id = 42, .mech = "PLAIN", .service = "smtp", .lip = "127.0.0.1", .rip = "::1",
		.lport = 587, .rport = 40000, .secured = true, .session = "00000000000000ab",
		.resp = "AGFsaWNlAHB3", .resp_len = 12,
	};
	size_t n;

	n = dovecot_auth_format_handshake(buf, sizeof(buf), 1234);
	assert_string_equal(buf, "VERSION\t1\t2\nCPID\t1234\n");
	assert_int_equal(n, strlen(buf));
	assert_int_equal(dovecot_auth_format_handshake(buf, 10, 1234), 0);

	n = dovecot_auth_format_auth(buf, sizeof(buf), &p);
	assert_string_equal(buf, "AUTH\t42\tPLAIN\tservice=smtp\tlip=127.0.0.1\trip=::1\tlport=587\trport=40000"
	    "\tsecured=tls\tsession=00000000000000ab\tresp=AGFsaWNlAHB3\n");
	assert_int_equal(n, strlen(buf));
	/* no TLS, no initial response; an empty one is "resp=" */
	p.secured = false;
	p.resp = NULL;
	p.lip = "";
	p.lport = 0;
	dovecot_auth_format_auth(buf, sizeof(buf), &p);
	assert_string_equal(buf, "AUTH\t42\tPLAIN\tservice=smtp\trip=::1\trport=40000\tsession=00000000000000ab\n");
	p.resp = "";
	p.resp_len = 0;
	dovecot_auth_format_auth(buf, sizeof(buf), &p);
	assert_string_equal(buf, "AUTH\t42\tPLAIN\tservice=smtp\trip=::1\trport=40000\tsession=00000000000000ab\tresp=\n");
	/* values are escaped, responses must be base64 text, names must be names */
	p.session = "a\tb";
	dovecot_auth_format_auth(buf, sizeof(buf), &p);
	assert_non_null(strstr(buf, "\tsession=a\001tb\t"));
	p.resp = "AB\tC";
	p.resp_len = 4;
	assert_int_equal(dovecot_auth_format_auth(buf, sizeof(buf), &p), 0);
	p.resp = NULL;
	p.mech = "PL AIN";
	assert_int_equal(dovecot_auth_format_auth(buf, sizeof(buf), &p), 0);
	p.mech = "PLAIN";
	p.id = 0;
	assert_int_equal(dovecot_auth_format_auth(buf, sizeof(buf), &p), 0);
	p.id = 1;
	/* too small a buffer: nothing */
	assert_int_equal(dovecot_auth_format_auth(buf, 20, &p), 0);
	/* a response that would pass the line limit */
	{
		size_t big = DOVECOT_AUTH_LINE_MAX;
		char *resp = malloc(big);
		assert_non_null(resp);
		memset(resp, 'A', big);
		p.resp = resp;
		p.resp_len = big;
		assert_int_equal(dovecot_auth_format_auth(buf, sizeof(buf), &p), 0);
		assert_int_equal(dovecot_auth_format_cont(buf, sizeof(buf), 1, resp, big), 0);
		assert_int_not_equal(dovecot_auth_format_cont(buf, sizeof(buf), 1, resp, big - 8), 0);
		free(resp);
	}

	n = dovecot_auth_format_cont(buf, sizeof(buf), 7, "dGVzdA==", 8);
	assert_string_equal(buf, "CONT\t7\tdGVzdA==\n");
	assert_int_equal(n, strlen(buf));
	assert_int_equal(dovecot_auth_format_cont(buf, sizeof(buf), 7, "a\nb", 3), 0);
	assert_int_equal(dovecot_auth_format_cont(buf, sizeof(buf), 0, "", 0), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_parse_bounds),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_format),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
