/*
 * test_smtp_reply.c: every line of the token reply fits in 512 octets
 * (RFC 5321 4.5.3.1.5) whatever the address and token: with the longest
 * possible address (64 + 1 + 255 octets), the longest SMTPUTF8 address,
 * and the longest token our claims can produce (64-character issuer,
 * 24-character message id), both as a synthetic TOKEN_MAX_LEN string and
 * as a real signed token.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "server/protocol/smtp_parse.h"
#include "server/protocol/smtp_reply.h"
#include "tokens/token.h"

static void
max_address(char *out)
{
	/* 64-octet local part, 255-octet domain of labels up to 63 octets */
	memset(out, 'l', 64);
	out[64] = '@';
	char *d = out + 65;
	size_t left = 255;
	while (left > 0) {
		size_t n = left > 64 ? 63 : left;
		memset(d, 'd', n);
		d += n;
		left -= n;
		if (left > 0) {
			*d++ = '.';
			left--;
		}
	}
	*d = '\0';
	assert_int_equal(strlen(out), SMTP_ADDRESS_MAX);
	assert_int_equal(smtp_mailbox_check(out, strlen(out), false), SMTP_PARSE_OK);
}

static void
check_line(const char *line, size_t n, bool last, const char *token, const char *address)
{
	assert_true(n > 0);
	assert_int_equal(strlen(line), n);
	assert_true(n <= SMTP_REPLY_LINE_MAX);
	assert_memory_equal(line, last ? "250 2.1.13 " : "250-2.1.13 ", 11);
	assert_memory_equal(line + n - 2, "\r\n", 2);
	assert_non_null(strstr(line, token));
	if (last)
		assert_memory_equal(line + n - 8, " Saved\r\n", 8);
	/* the address is there exactly when it fits */
	char with[2048];
	int full = snprintf(with, sizeof(with), "250-2.1.13 <%s> %s%s\r\n", address, token, last ? " Saved" : "");
	if (full <= SMTP_REPLY_LINE_MAX)
		assert_non_null(strstr(line, address));
	else
		assert_null(strchr(line, '<'));
}

static void
test_synthetic_max(void **state)
{
	char addr[SMTP_ADDRESS_MAX + 1], token[TOKEN_MAX_LEN + 1], line[SMTP_REPLY_LINE_MAX + 1];

	max_address(addr);
	memcpy(token, "v4.public.", 10);
	memset(token + 10, 'A', TOKEN_MAX_LEN - 10);
	token[TOKEN_MAX_LEN] = '\0';
	for (int last = 0; last < 2; last++) {
		size_t n = smtp_reply_token_line(line, last, addr, token);
		check_line(line, n, last, token, addr);
		n = smtp_reply_token_line(line, last, "a@b.example", token);
		check_line(line, n, last, token, "a@b.example");
	}
}

static void
test_real_tokens(void **state)
{
	static const char *const addrs[] = {
		"alice@example.org",
		"\"quoted local\"@example.org",
		"用户@例子.广告",
		NULL,   /* the maximum-length address, filled below */
	};
	char maxaddr[SMTP_ADDRESS_MAX + 1], issuer[65], mid[TOKEN_MID_MAX + 1];
	char token[TOKEN_MAX_LEN + 1], line[SMTP_REPLY_LINE_MAX + 1];
	struct token_key key;
	struct token_claims c;
	size_t longest = 0;

	assert_true(sodium_init() >= 0);
	max_address(maxaddr);
	memset(issuer, 'i', 64);
	issuer[64] = '\0';
	memset(mid, 'M', TOKEN_MID_MAX);
	mid[TOKEN_MID_MAX] = '\0';
	token_key_generate(&key, 1000);
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		const char *a = addrs[i] ? addrs[i] : maxaddr;
		for (int role = 0; role < 2; role++) {
			size_t tl = token_issue(&key, mid, a, role, issuer, 1000, 7 * 86400, &c, token, sizeof(token));
			assert_true(tl > 0 && tl <= TOKEN_MAX_LEN);
			if (tl > longest)
				longest = tl;
			size_t n = smtp_reply_token_line(line, role == TOKEN_ROLE_SENDER, a, token);
			check_line(line, n, role == TOKEN_ROLE_SENDER, token, a);
		}
	}
	/* a typical address fits beside a typical token */
	size_t tl = token_issue(&key, "AbCdEfGhIjKlMnOp", "someone.with.a.long.name@department.example.org",
	    TOKEN_ROLE_RECIPIENT, "mx1.example.org", 1000, 7 * 86400, &c, token, sizeof(token));
	assert_true(tl > 0);
	size_t n = smtp_reply_token_line(line, false, "someone.with.a.long.name@department.example.org", token);
	assert_non_null(strstr(line, "<someone.with.a.long.name@department.example.org> "));
	assert_true(n <= SMTP_REPLY_LINE_MAX);
	print_message("longest real token: %zu octets (TOKEN_MAX_LEN %d)\n", longest, TOKEN_MAX_LEN);
}

static void
test_saved_line(void **state)
{
	char line[SMTP_REPLY_LINE_MAX + 1];
	size_t n = smtp_reply_saved_line(line, "AbCdEfGhIjKlMnOp");

	assert_string_equal(line, "250 2.0.0 <AbCdEfGhIjKlMnOp> Saved\r\n");
	assert_int_equal(n, strlen(line));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_synthetic_max),
		cmocka_unit_test(test_real_tokens),
		cmocka_unit_test(test_saved_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
