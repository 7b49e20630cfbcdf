/*
 * test_mail_header.c: the header reader that picks a message's DKIM keys
 * (server/protocol/mail_header.c) and the DNS record formatter of `submitctl
 * dkim export` (server/protocol/dkim_record.c). The From: table covers the
 * shapes of RFC 5322 3.4 a client sends and those we refuse (several From
 * fields, address lists, groups, domain literals, unbalanced quotes); each
 * case also runs with the header cut at every length, which must never
 * read past it. The Message-ID table (the duplicate check of
 * submit.dedup_window) is run the same ways: whole, cut at every length,
 * and with an output one octet too small.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/protocol/dkim_record.h"
#include "server/protocol/mail_header.h"

struct from_case {
	const char *head;
	const char *domain;     /* NULL: refused */
};

static const struct from_case from_cases[] = {
	{ "From: alice@example.org\r\n\r\nbody", "example.org" },
	{ "From: Alice <alice@Example.ORG>\r\n\r\n", "example.org" },
	{ "from:alice@example.org\r\n\r\n", "example.org" },
	{ "FROM:   \"Alice, Jr.\" <a@sub.example.org>  \r\n\r\n", "sub.example.org" },
	{ "Subject: x\r\nFrom: Alice\r\n <alice@example.org>\r\nTo: b@c.test\r\n\r\n", "example.org" },
	{ "From: alice@example.org (Alice <x@evil.test>)\r\n\r\n", "example.org" },
	{ "From: \"<x@evil.test>\" <alice@example.org>\r\n\r\n", "example.org" },
	{ "From: \"a\\\"b\" <alice@example.org>\r\n\r\n", "example.org" },
	{ "From: \"a b\"@example.org\r\n\r\n", "example.org" },
	{ "From: alice@example.org\n\n", "example.org" },
	/* refused */
	{ "To: alice@example.org\r\n\r\n", NULL },
	{ "From: alice@example.org\r\nFrom: bob@evil.test\r\n\r\n", NULL },
	{ "From: alice@example.org, bob@evil.test\r\n\r\n", NULL },
	{ "From: friends: alice@example.org;\r\n\r\n", NULL },
	{ "From: alice@[192.0.2.1]\r\n\r\n", NULL },
	{ "From: alice\r\n\r\n", NULL },
	{ "From: @example.org\r\n\r\n", NULL },
	{ "From: alice@\r\n\r\n", NULL },
	{ "From: alice@exa mple.org\r\n\r\n", NULL },
	{ "From: alice@a@example.org\r\n\r\n", NULL },
	{ "From: \"unterminated <alice@example.org>\r\n\r\n", NULL },
	{ "From: (open <alice@example.org>\r\n\r\n", NULL },
	{ "From: <alice@example.org\r\n\r\n", NULL },
	{ "From: <a@x.test> <b@y.test>\r\n\r\n", NULL },
	{ "From: alice@example.org.\r\n\r\n", NULL },
	{ "From: alice@ex_ample.org\r\n\r\n", NULL },
	{ "From:\r\n\r\n", NULL },
	/* the header ends at the empty line: a From: in the body is not one */
	{ "Subject: x\r\n\r\nFrom: alice@example.org\r\n", NULL },
	{ "", NULL },
};

static void
test_from_domain(void **state)
{
	for (size_t i = 0; i < sizeof(from_cases) / sizeof(from_cases[0]); i++) {
		const struct from_case *c = &from_cases[i];
		char out[256];
		int rc = mail_header_from_domain(c->head, strlen(c->head), out, sizeof(out));
		if (c->domain) {
			if (rc != 0)
				fail_msg("case %zu refused: %s", i, c->head);
			assert_string_equal(out, c->domain);
		} else if (rc != -1) {
			fail_msg("case %zu accepted as %s: %s", i, out, c->head);
		}
	}
}

/* Every prefix of every case, copied to a buffer of exactly that size (so
 * that a read past it is one for ASan/valgrind): no crash, and a prefix
 * that ends before the From: field has no domain. */
static void
test_from_domain_prefixes(void **state)
{
	for (size_t i = 0; i < sizeof(from_cases) / sizeof(from_cases[0]); i++) {
		size_t len = strlen(from_cases[i].head);
		for (size_t n = 0; n <= len; n++) {
			char *buf = malloc(n ? n : 1), out[256];
			memcpy(buf, from_cases[i].head, n);
			(void)mail_header_from_domain(buf, n, out, sizeof(out));
			free(buf);
		}
	}
	char out[256];
	assert_int_equal(mail_header_from_domain("From: a@b.test", 5, out, sizeof(out)), -1);
}

static void
test_from_domain_small_out(void **state)
{
	const char *h = "From: a@example.org\r\n\r\n";
	char out[12];

	assert_int_equal(mail_header_from_domain(h, strlen(h), out, sizeof(out)), 0);
	assert_string_equal(out, "example.org");
	assert_int_equal(mail_header_from_domain(h, strlen(h), out, 11), -1);
}

static void
test_field(void **state)
{
	const char *h = "Subject: one\r\n\ttwo   three \r\nMessage-ID: <x@y>\r\nmessage-id: <z@y>\r\n\r\nX: y\r\n";
	char out[64], small[6];
	unsigned count;

	assert_int_equal(mail_header_field(h, strlen(h), "Subject", out, sizeof(out), NULL), 13);
	assert_string_equal(out, "one two three");
	assert_int_equal(mail_header_field(h, strlen(h), "message-id", out, sizeof(out), &count), 5);
	assert_string_equal(out, "<x@y>");
	assert_int_equal(count, 2);
	assert_int_equal(mail_header_field(h, strlen(h), "X", out, sizeof(out), &count), -1);
	assert_int_equal(count, 0);
	assert_int_equal(mail_header_field(h, strlen(h), "Subject", small, sizeof(small), NULL), -1);
	/* a name that is only a prefix of the field's */
	assert_int_equal(mail_header_field(h, strlen(h), "Subj", out, sizeof(out), NULL), -1);
	assert_int_equal(mail_header_field("Subject:\r\n\r\n", 12, "Subject", out, sizeof(out), NULL), 0);
}

struct msgid_case {
	const char *head;
	const char *id;         /* NULL: none (never a duplicate) */
};

static const struct msgid_case msgid_cases[] = {
	{ "Message-ID: <abc.123@example.org>\r\n\r\nbody", "abc.123@example.org" },
	{ "message-id:<A.B@Example.ORG>\r\n\r\n", "A.B@Example.ORG" },      /* case kept */
	{ "Subject: x\r\nMessage-Id:   <x@y>   \r\nTo: b@c.test\r\n\r\n", "x@y" },
	{ "Message-ID:\r\n <folded@example.org>\r\n\r\n", "folded@example.org" },
	{ "Message-ID:\r\n\t<folded@example.org>\r\n \r\n\r\n", "folded@example.org" },
	{ "Message-ID: <a@b>\n\n", "a@b" },
	{ "Message-ID: <\"q\"@[192.0.2.1]>\r\n\r\n", "\"q\"@[192.0.2.1]" },
	/* none */
	{ "Subject: x\r\n\r\n", NULL },
	{ "", NULL },
	{ "Message-ID:\r\n\r\n", NULL },
	{ "Message-ID: <>\r\n\r\n", NULL },
	{ "Message-ID: <a@b>\r\nMessage-ID: <a@b>\r\n\r\n", NULL },       /* duplicated field */
	{ "Message-ID: <a@b>\r\nmessage-id: <c@d>\r\n\r\n", NULL },
	{ "Message-ID: a@b\r\n\r\n", NULL },                               /* no brackets */
	{ "Message-ID: <a@b> (comment)\r\n\r\n", NULL },
	{ "Message-ID: (comment) <a@b>\r\n\r\n", NULL },
	{ "Message-ID: <a@b> <c@d>\r\n\r\n", NULL },
	{ "Message-ID: <a@\r\n b>\r\n\r\n", NULL },                       /* folded inside */
	{ "Message-ID: <a b@c>\r\n\r\n", NULL },
	{ "Message-ID: <ab>\r\n\r\n", NULL },
	{ "Message-ID: <@b>\r\n\r\n", NULL },
	{ "Message-ID: <a@>\r\n\r\n", NULL },
	{ "Message-ID: <a<b@c>\r\n\r\n", NULL },
	{ "Message-ID: <a\x01@c>\r\n\r\n", NULL },
	{ "Message-ID: <\xc3\xa9@c>\r\n\r\n", NULL },
	{ "Message-ID : <a@b>\r\n\r\n", NULL },                            /* not this field */
	{ "X-Message-ID: <a@b>\r\n\r\n", NULL },
	{ "Message-IDs: <a@b>\r\n\r\n", NULL },
	/* the header ends at the empty line */
	{ "Subject: x\r\n\r\nMessage-ID: <a@b>\r\n", NULL },
};

static void
test_message_id(void **state)
{
	for (size_t i = 0; i < sizeof(msgid_cases) / sizeof(msgid_cases[0]); i++) {
		const struct msgid_case *c = &msgid_cases[i];
		char out[MAIL_MSGID_MAX + 1];
		int rc = mail_header_message_id(c->head, strlen(c->head), out, sizeof(out));
		if (c->id) {
			if (rc != (int)strlen(c->id))
				fail_msg("case %zu refused: %s", i, c->head);
			assert_string_equal(out, c->id);
			/* one octet short: refused, not cut */
			assert_int_equal(mail_header_message_id(c->head, strlen(c->head), out, strlen(c->id)), -1);
		} else if (rc != -1) {
			fail_msg("case %zu accepted as %s: %s", i, out, c->head);
		}
		/* every prefix, in a buffer of exactly that size */
		size_t len = strlen(c->head);
		for (size_t n = 0; n <= len; n++) {
			char *buf = malloc(n ? n : 1);
			if (n)
				memcpy(buf, c->head, n);
			rc = mail_header_message_id(buf, n, out, sizeof(out));
			assert_true(rc == -1 || (rc > 0 && (size_t)rc < sizeof(out) && strlen(out) == (size_t)rc));
			free(buf);
		}
	}
}

/* The longest id kept, one more refused; a huge field is no id at all. */
static void
test_message_id_oversized(void **state)
{
	static char head[4 * MAIL_MSGID_MAX], out[MAIL_MSGID_MAX + 1];
	size_t n;

	for (size_t id = MAIL_MSGID_MAX - 1; id <= MAIL_MSGID_MAX + 1; id++) {
		n = (size_t)snprintf(head, sizeof(head), "Message-ID: <");
		memset(head + n, 'a', id - 2);
		n += id - 2;
		n += (size_t)snprintf(head + n, sizeof(head) - n, "@b>\r\n\r\n");
		assert_int_equal(mail_header_message_id(head, n, out, sizeof(out)), id <= MAIL_MSGID_MAX ? (int)id : -1);
	}
	n = (size_t)snprintf(head, sizeof(head), "Message-ID: <");
	memset(head + n, 'a', sizeof(head) - n - 16);
	n = sizeof(head) - 16;
	n += (size_t)snprintf(head + n, 16, "@b>\r\n\r\n");
	assert_int_equal(mail_header_message_id(head, n, out, sizeof(out)), -1);
}

static void
test_record_short(void **state)
{
	char out[512];
	size_t n = dkim_record_format("ed25519-20261202", "example.org", "ed25519",
	    "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", out, sizeof(out));

	assert_string_equal(out, "ed25519-20261202._domainkey.example.org. IN TXT "
	    "\"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"");
	assert_int_equal(n, strlen(out));
	/* a domain given with its final dot keeps one */
	dkim_record_format("s", "example.org.", "rsa", "AAAA", out, sizeof(out));
	assert_string_equal(out, "s._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p=AAAA\"");
}

/* An RSA-2048 key's text (about 410 octets) becomes strings of 255 octets
 * and the rest; lengths around the boundary split where they should. */
static void
test_record_split(void **state)
{
	char p[1024], out[2048];
	const size_t prefix = strlen("v=DKIM1; k=rsa; p=");

	for (size_t plen = 230; plen < 800; plen++) {
		memset(p, 'A', plen);
		p[plen] = '\0';
		size_t n = dkim_record_format("sel", "example.org", "rsa", p, out, sizeof(out));
		assert_true(n > 0);
		const char *q = strstr(out, " IN TXT ") + 8;
		size_t total = 0, strings = 0;
		while (*q) {
			assert_int_equal(*q, '"');
			const char *end = strchr(q + 1, '"');
			assert_non_null(end);
			size_t len = (size_t)(end - q - 1);
			assert_true(len <= DKIM_RECORD_STRING_MAX);
			assert_true(len > 0);
			total += len;
			strings++;
			q = end + 1;
			if (*q)
				assert_int_equal(*q++, ' ');
			/* every string but the last is full */
			if (*q)
				assert_int_equal(len, DKIM_RECORD_STRING_MAX);
		}
		assert_int_equal(total, prefix + plen);
		assert_int_equal(strings, (prefix + plen + DKIM_RECORD_STRING_MAX - 1) / DKIM_RECORD_STRING_MAX);
	}
}

static void
test_record_refuses(void **state)
{
	char out[512], tiny[40];

	assert_int_equal(dkim_record_format("s s", "example.org", "rsa", "AAAA", out, sizeof(out)), 0);
	assert_int_equal(dkim_record_format("s", "exa\"mple.org", "rsa", "AAAA", out, sizeof(out)), 0);
	assert_int_equal(dkim_record_format("s", "example.org", "rsa", "AA\\AA", out, sizeof(out)), 0);
	assert_int_equal(dkim_record_format("s", "example.org", "rsa;", "AAAA", out, sizeof(out)), 0);
	assert_int_equal(dkim_record_format("", "example.org", "rsa", "AAAA", out, sizeof(out)), 0);
	assert_int_equal(dkim_record_format("s", "example.org", "rsa", "AAAA", tiny, sizeof(tiny)), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_from_domain),
		cmocka_unit_test(test_from_domain_prefixes),
		cmocka_unit_test(test_from_domain_small_out),
		cmocka_unit_test(test_field),
		cmocka_unit_test(test_message_id),
		cmocka_unit_test(test_message_id_oversized),
		cmocka_unit_test(test_record_short),
		cmocka_unit_test(test_record_split),
		cmocka_unit_test(test_record_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
