/*
 * test_imap_parse.c: the IMAP responses the Sent filing reads
 * (server/protocol/imap_parse.h), as tables: framing with literals (fed
 * whole and octet by octet), response lines with status and codes,
 * capabilities, APPENDUID, LIST, SEARCH, FETCH, dates, quoting and the
 * Message-ID of a header.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "server/protocol/imap_parse.h"

struct sink {
	char buf[4096];
	size_t len;
};

static void
sink_cb(void *arg, const char *p, size_t n)
{
	struct sink *s = arg;

	memcpy(s->buf + s->len, p, n);
	s->len += n;
}

/* Feed in pieces of `step` octets: the text of the first response, the
 * octets used up to its end, and what went to the sink. */
static size_t
frame(const char *in, size_t step, bool to_sink, struct imap_resp *r, struct sink *sk)
{
	size_t n = strlen(in), off = 0;
	bool done = false;

	memset(sk, 0, sizeof(*sk));
	imap_resp_init(r, sink_cb, sk);
	r->literals_to_sink = to_sink;
	while (off < n && !done) {
		size_t piece = n - off < step ? n - off : step;
		off += imap_resp_feed(r, in + off, piece, &done);
	}
	assert_true(done);
	return off;
}

static void
test_framing(void **state)
{
	static const struct {
		const char *in;
		bool to_sink;
		const char *text;           /* the first response */
		size_t used;                /* octets up to its end */
		const char *sunk;
		bool bad;
	} cases[] = {
		{ "* OK ready\r\n", false, "* OK ready", 12, "", false },
		{ "a1 OK done\r\nnext\r\n", false, "a1 OK done", 12, "", false },
		{ "* OK bare LF\n", false, "* OK bare LF", 13, "", false },
		/* a short literal becomes a quoted string */
		{ "* LIST () \"/\" {5}\r\nSe\"t\\\r\n", false, "* LIST () \"/\" \"Se\\\"t\\\\\"", 26, "", false },
		{ "* LIST () \"/\" {0}\r\n\r\n", false, "* LIST () \"/\" \"\"", 21, "", false },
		/* one with CR LF stays a literal, its octets to the sink */
		{ "* 1 FETCH (BODY[] {4}\r\na\r\nb UID 3)\r\n", false, "* 1 FETCH (BODY[] {4} UID 3)", 36, "a\r\nb",
		  false },
		/* with literals_to_sink, every literal goes there */
		{ "* 1 FETCH (BODY[] {3}\r\nabc)\r\n", true, "* 1 FETCH (BODY[] {3})", 29, "abc", false },
		/* a literal at the end of a line, then the line goes on */
		{ "* 2 FETCH (BODY[] {2}\r\nxy UID 9)\r\n* 3 X\r\n", true, "* 2 FETCH (BODY[] {2} UID 9)", 34, "xy",
		  false },
		{ "* 1 FETCH (X {12}\r\n", true, "* 1 FETCH (X {12}", 19, "", false },
		{ "* OK {99999999999999}\r\n", false, "* OK {99999999999999}", 23, "", true },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = strlen(cases[i].in);
		if (strstr(cases[i].in, "{12}"))
			continue;   /* unfinished: below */
		for (size_t step = 1; step <= n; step = step == 1 ? n : n + 1) {
			struct imap_resp r;
			struct sink sk;
			size_t off = 0;
			bool done = false;

			memset(&sk, 0, sizeof(sk));
			imap_resp_init(&r, sink_cb, &sk);
			r.literals_to_sink = cases[i].to_sink;
			while (off < n && !done) {
				size_t piece = n - off < step ? n - off : step;
				off += imap_resp_feed(&r, cases[i].in + off, piece, &done);
			}
			assert_true(done);
			if (strcmp(r.text, cases[i].text) != 0)
				fail_msg("case %zu step %zu: text \"%s\"", i, step, r.text);
			assert_int_equal(off, cases[i].used);
			assert_int_equal(sk.len, strlen(cases[i].sunk));
			assert_memory_equal(sk.buf, cases[i].sunk, sk.len);
			assert_int_equal(r.bad, cases[i].bad);
		}
	}
	/* a NUL in a line: flagged bad */
	{
		struct imap_resp r;
		bool done = false;

		imap_resp_init(&r, NULL, NULL);
		assert_int_equal(imap_resp_feed(&r, "* OK a\0b\r\n", 10, &done), 10);
		assert_true(done);
		assert_true(r.bad);
	}
	/* an unfinished literal: not done, everything used */
	{
		struct imap_resp r;
		struct sink sk = { .len = 0 };
		const char *in = "* 1 FETCH (X {12}\r\nabc";
		bool done = true;

		imap_resp_init(&r, sink_cb, &sk);
		assert_int_equal(imap_resp_feed(&r, in, strlen(in), &done), strlen(in));
		assert_false(done);
		/* reset keeps the sink */
		imap_resp_reset(&r);
		assert_ptr_equal(r.sink_arg, &sk);
		assert_int_equal(r.len, 0);
	}
	/* an endless line: cut, flagged */
	{
		static char big[IMAP_TEXT_MAX + 100];
		struct imap_resp r;
		struct sink sk;

		memset(big, 'x', sizeof(big) - 3);
		memcpy(big, "* ", 2);
		big[sizeof(big) - 3] = '\r';
		big[sizeof(big) - 2] = '\n';
		big[sizeof(big) - 1] = '\0';
		frame(big, 4096, false, &r, &sk);
		assert_true(r.overflow);
		assert_int_equal(r.len, IMAP_TEXT_MAX);
	}
}

static void
test_lines(void **state)
{
	static const struct {
		const char *text;
		int rc;
		enum imap_kind kind;
		const char *tag;
		enum imap_status status;
		int64_t number;
		const char *keyword, *code, *code_args, *rest;
	} cases[] = {
		{ "* OK [CAPABILITY IMAP4rev1 SASL-IR] Dovecot ready.", 0, IMAP_UNTAGGED, "", IMAP_OK, -1, "",
		  "CAPABILITY", "IMAP4rev1 SASL-IR", "Dovecot ready." },
		{ "s3 OK [APPENDUID 1796239167 4] Append completed.", 0, IMAP_TAGGED, "s3", IMAP_OK, -1, "",
		  "APPENDUID", "1796239167 4", "Append completed." },
		{ "s3 no [TRYCREATE] Mailbox doesn't exist: Sent", 0, IMAP_TAGGED, "s3", IMAP_NO, -1, "",
		  "TRYCREATE", "", "Mailbox doesn't exist: Sent" },
		{ "s9 BAD Error in IMAP command", 0, IMAP_TAGGED, "s9", IMAP_BAD, -1, "", "", "", "Error in IMAP command" },
		{ "s9 OK", 0, IMAP_TAGGED, "s9", IMAP_OK, -1, "", "", "", "" },
		{ "* 12 EXISTS", 0, IMAP_UNTAGGED, "", IMAP_NONE, 12, "EXISTS", "", "", "" },
		{ "* 3 FETCH (UID 7)", 0, IMAP_UNTAGGED, "", IMAP_NONE, 3, "FETCH", "", "", "(UID 7)" },
		{ "* SEARCH 1 5", 0, IMAP_UNTAGGED, "", IMAP_NONE, -1, "SEARCH", "", "", "1 5" },
		{ "* list (\\Sent) \"/\" Sent", 0, IMAP_UNTAGGED, "", IMAP_NONE, -1, "LIST", "", "", "(\\Sent) \"/\" Sent" },
		{ "* BYE going away", 0, IMAP_UNTAGGED, "", IMAP_BYE, -1, "", "", "", "going away" },
		{ "* OK [UIDVALIDITY 42] UIDs valid", 0, IMAP_UNTAGGED, "", IMAP_OK, -1, "", "UIDVALIDITY", "42", "UIDs valid" },
		{ "* OK [ALERT unterminated", 0, IMAP_UNTAGGED, "", IMAP_OK, -1, "", "", "", "[ALERT unterminated" },
		{ "+ ", 0, IMAP_CONTINUE, "", IMAP_NONE, -1, "", "", "", "" },
		{ "+", 0, IMAP_CONTINUE, "", IMAP_NONE, -1, "", "", "", "" },
		{ "+ aGVsbG8=", 0, IMAP_CONTINUE, "", IMAP_NONE, -1, "", "", "", "aGVsbG8=" },
		{ "", -1, IMAP_MALFORMED, "", IMAP_NONE, -1, "", "", "", "" },
		{ "*", -1, IMAP_MALFORMED, "", IMAP_NONE, -1, "", "", "", "" },
		{ "*OK", -1, IMAP_MALFORMED, "", IMAP_NONE, -1, "", "", "", "" },
		{ "* 12", -1, IMAP_MALFORMED, "", IMAP_NONE, 12, "", "", "", "" },
		{ "s1 MAYBE", -1, IMAP_MALFORMED, "", IMAP_NONE, -1, "", "", "", "" },
		{ "s1", -1, IMAP_MALFORMED, "", IMAP_NONE, -1, "", "", "", "" },
		{ "s(1 OK", -1, IMAP_MALFORMED, "", IMAP_NONE, -1, "", "", "", "" },
		{ "averyveryveryverylongtagthatdoesnotfit OK", -1, IMAP_MALFORMED, "", IMAP_NONE, -1, "", "", "", "" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct imap_line l;
		int rc = imap_line_parse(cases[i].text, strlen(cases[i].text), &l);
		if (rc != cases[i].rc)
			fail_msg("case %zu (%s): rc %d", i, cases[i].text, rc);
		assert_int_equal(l.kind, cases[i].kind);
		if (rc == -1)
			continue;
		assert_string_equal(l.tag, cases[i].tag);
		assert_int_equal(l.status, cases[i].status);
		assert_int_equal(l.number, cases[i].number);
		assert_string_equal(l.keyword, cases[i].keyword);
		assert_string_equal(l.code, cases[i].code);
		assert_int_equal(l.code_len, strlen(cases[i].code_args));
		if (l.code_len)
			assert_memory_equal(l.code_args, cases[i].code_args, l.code_len);
		assert_int_equal(l.rest_len, strlen(cases[i].rest));
		assert_memory_equal(l.rest, cases[i].rest, l.rest_len);
	}
	/* a NUL inside: no response */
	{
		struct imap_line l;
		assert_int_equal(imap_line_parse("s1 OK\0x", 7, &l), -1);
	}
}

static void
test_caps_and_codes(void **state)
{
	static const char caps[] = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN "
	    "auth=login UIDPLUS SPECIAL-USE LIST-EXTENDED";
	uint32_t a, b;

	assert_int_equal(imap_caps_parse(caps, strlen(caps)), IMAP_CAP_IMAP4 | IMAP_CAP_SASL_IR |
	    IMAP_CAP_LITERAL_PLUS | IMAP_CAP_STARTTLS | IMAP_CAP_AUTH_PLAIN | IMAP_CAP_UIDPLUS |
	    IMAP_CAP_SPECIAL_USE | IMAP_CAP_LIST_EXTENDED);
	assert_int_equal(imap_caps_parse("IMAP4rev2 LOGINDISABLED LITERAL-", 32), IMAP_CAP_IMAP4 |
	    IMAP_CAP_LOGINDISABLED);
	assert_int_equal(imap_caps_parse("", 0), 0);
	assert_int_equal(imap_caps_parse("AUTH=PLAINX AUTH=PLAIN", 11), 0);

	static const struct { const char *in; int rc; uint32_t v, u; } au[] = {
		{ "1796239167 4", 0, 1796239167u, 4 }, { "1 1", 0, 1, 1 }, { "0 4", -1, 0, 0 },
		{ "1 0", -1, 0, 0 }, { "1 2:3", -1, 0, 0 }, { "1", -1, 0, 0 }, { "4294967296 1", -1, 0, 0 },
		{ "1 2 ", -1, 0, 0 }, { "", -1, 0, 0 }, { "x 1", -1, 0, 0 },
	};
	for (size_t i = 0; i < sizeof(au) / sizeof(au[0]); i++) {
		int rc = imap_appenduid_parse(au[i].in, strlen(au[i].in), &a, &b);
		assert_int_equal(rc, au[i].rc);
		if (rc == 0) {
			assert_int_equal(a, au[i].v);
			assert_int_equal(b, au[i].u);
		}
	}
	assert_int_equal(imap_number_parse("42", 2, &a), 0);
	assert_int_equal(a, 42);
	assert_int_equal(imap_number_parse("42x", 3, &a), -1);
	assert_int_equal(imap_number_parse("", 0, &a), -1);
}

static void
test_list_search_fetch(void **state)
{
	static const struct {
		const char *in;
		int rc;
		bool sent, noselect;
		const char *name;
	} lists[] = {
		{ "(\\HasNoChildren \\Sent) \"/\" \"Sent Messages\"", 0, true, false, "Sent Messages" },
		{ "(\\HasNoChildren) \"/\" INBOX", 0, false, false, "INBOX" },
		{ "(\\sent) NIL Sent", 0, true, false, "Sent" },
		{ "(\\Sent \\NonExistent) \"/\" \"Sent\"", 0, true, true, "Sent" },
		{ "(\\Noselect \\Sent) \".\" \"a\\\"b\\\\c\"", 0, true, true, "a\"b\\c" },
		{ "(\\Sent) \"/\" Sent (CHILDINFO (\"SUBSCRIBED\"))", 0, true, false, "Sent" },
		{ "(\\Sent) \"/\" {5}", -1, true, false, "" },
		{ "(\\Sent) \"/\" \"unterminated", -1, true, false, "" },
		{ "(\\Sent \"/\" Sent", -1, false, false, "" },
		{ "\\Sent \"/\" Sent", -1, false, false, "" },
		{ "() \"/\"", -1, false, false, "" },
		{ "() \"/\" \"0123456789012345678901234567890123456789\"", -1, false, false, "" },  /* too long for 32 */
	};
	for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		char name[32];
		bool sent, noselect;
		int rc = imap_list_parse(lists[i].in, strlen(lists[i].in), &sent, &noselect, name, sizeof(name));
		if (rc != lists[i].rc)
			fail_msg("list case %zu: rc %d", i, rc);
		if (rc == 0) {
			assert_int_equal(sent, lists[i].sent);
			assert_int_equal(noselect, lists[i].noselect);
			assert_string_equal(name, lists[i].name);
		}
	}

	uint32_t uids[4];
	assert_int_equal(imap_search_parse("1 5 42", 6, uids, 4), 3);
	assert_int_equal(uids[2], 42);
	assert_int_equal(imap_search_parse("", 0, uids, 4), 0);
	assert_int_equal(imap_search_parse("7 (MODSEQ 917162500) 8", 22, uids, 4), 2);
	assert_int_equal(uids[1], 8);
	assert_int_equal(imap_search_parse("1 2 3 4 5 6", 11, uids, 4), 4);
	assert_int_equal(imap_search_parse("1 x 3", 5, uids, 4), 1);
	assert_int_equal(imap_search_parse("0 9", 3, uids, 4), 1);

	static const struct {
		const char *in;
		int rc;
		uint32_t uid;
		int64_t size, date;
		bool body;
	} fetches[] = {
		{ "(UID 5 RFC822.SIZE 1234 INTERNALDATE \"02-Dec-2026 19:08:12 +0000\")", 0, 5, 1234, 1796238492, false },
		{ "(uid 5 internaldate \" 2-Dec-2026 20:08:12 +0100\" FLAGS (\\Seen \\Recent) BODY[] {12})", 0, 5, -1,
		  1796238492, true },
		{ "(BODY[HEADER.FIELDS (MESSAGE-ID)] {40} UID 9)", 0, 9, -1, -1, false },
		{ "(BODY[] \"abc\" UID 1)", 0, 1, -1, -1, false },
		{ "(UID 5 RFC822.SIZE x)", -1, 0, 0, 0, false },
		{ "(UID 5", -1, 0, 0, 0, false },
		{ "UID 5)", -1, 0, 0, 0, false },
		{ "(UID)", -1, 0, 0, 0, false },
		{ "(INTERNALDATE \"bad\")", 0, 0, -1, -1, false },
		{ "()", 0, 0, -1, -1, false },
	};
	for (size_t i = 0; i < sizeof(fetches) / sizeof(fetches[0]); i++) {
		struct imap_fetch f;
		int rc = imap_fetch_parse(fetches[i].in, strlen(fetches[i].in), &f);
		if (rc != fetches[i].rc)
			fail_msg("fetch case %zu: rc %d", i, rc);
		if (rc == 0) {
			assert_int_equal(f.uid, fetches[i].uid);
			assert_int_equal(f.size, fetches[i].size);
			assert_int_equal(f.internaldate, fetches[i].date);
			assert_int_equal(f.body, fetches[i].body);
		}
	}
}

static void
test_dates_quotes_msgid(void **state)
{
	static const struct { const char *in; int64_t t; } dates[] = {
		{ "02-Dec-2026 19:08:12 +0000", 1796238492 },
		{ " 2-Dec-2026 14:08:12 -0500", 1796238492 },
		{ "01-Jan-1970 00:00:00 +0000", 0 },
		{ "29-Feb-2024 23:59:59 +0000", 1709251199 },
		{ "02-dec-2026 19:08:12 +0000", 1796238492 },
		{ "02-Dez-2026 19:08:12 +0000", -1 },
		{ "02-Dec-2026 24:08:12 +0000", -1 },
		{ "02-Dec-2026 19:08:12 0000", -1 },
		{ "2-Dec-2026 19:08:12 +0000", -1 },
		{ "", -1 },
	};
	char out[32], q[16];

	for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++)
		assert_int_equal(imap_date_time_parse(dates[i].in, strlen(dates[i].in)), dates[i].t);
	imap_date_time_format(1796238492, out);
	assert_string_equal(out, "02-Dec-2026 19:08:12 +0000");
	imap_date_time_format(0, out);
	assert_string_equal(out, "01-Jan-1970 00:00:00 +0000");
	imap_date_time_format(1709251199, out);
	assert_string_equal(out, "29-Feb-2024 23:59:59 +0000");
	for (int64_t t = 0; t < 4102444800LL; t += 86400 * 37 + 3607)
		imap_date_time_format(t, out), assert_int_equal(imap_date_time_parse(out, strlen(out)), t);

	assert_int_equal(imap_quote("Sent", q, sizeof(q)), 6);
	assert_string_equal(q, "\"Sent\"");
	assert_int_equal(imap_quote("a\"b\\", q, sizeof(q)), 8);
	assert_string_equal(q, "\"a\\\"b\\\\\"");
	assert_int_equal(imap_quote("a\r\nb", q, sizeof(q)), 0);
	assert_int_equal(imap_quote("0123456789abcdef", q, sizeof(q)), 0);
	assert_int_equal(imap_quote("", q, sizeof(q)), 2);

	static const struct { const char *head; int rc; const char *id; } ids[] = {
		{ "From: a\r\nMessage-ID: <x@y>\r\n\r\nbody", 0, "<x@y>" },
		{ "message-id:<x@y>  \r\nSubject: s\r\n\r\n", 0, "<x@y>" },
		{ "Message-Id:\r\n <folded@y>\r\n\r\n", 0, "<folded@y>" },
		{ "Message-ID: <a\r\n\tb@y>\r\n\r\n", 0, "<a b@y>" },
		{ "Message-ID: <lf@y>\nX: 1\n\n", 0, "<lf@y>" },
		{ "Subject: x\r\n\r\nMessage-ID: <in-body@y>\r\n", -1, "" },
		{ "X-Message-ID: <no@y>\r\n\r\n", -1, "" },
		{ "Message-ID:   \r\n\r\n", -1, "" },
		{ "Message-ID: <cut", 0, "<cut" },
		{ "", -1, "" },
	};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		char id[64];
		int rc = imap_message_id(ids[i].head, strlen(ids[i].head), id, sizeof(id));
		if (rc != ids[i].rc)
			fail_msg("msgid case %zu: rc %d", i, rc);
		if (rc == 0)
			assert_string_equal(id, ids[i].id);
	}
	{
		char small[4];
		assert_int_equal(imap_message_id("Message-ID: <x@y>\r\n", 19, small, sizeof(small)), -1);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framing),
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_caps_and_codes),
		cmocka_unit_test(test_list_search_fetch),
		cmocka_unit_test(test_dates_quotes_msgid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
