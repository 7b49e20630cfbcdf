/*
 * test_smtp_body.c: the DATA/BDAT body machine (server/protocol/smtp_body.c) against
 * a table of {mode, max_line, input, expected output, flags, done, consumed}.
 * Every row is fed whole, one byte at a time, split at every point into two
 * chunks, and (for short rows) at every pair of points into three: all must
 * agree, since the network decides the split. The rows include each SMTP
 * smuggling variant (the end of data spelled with bare CR or LF), which must
 * never end the data, and pipelined commands after the real end, which must
 * stay unconsumed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/protocol/smtp_body.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define S(x) x, sizeof(x) - 1

#define CR   SMTP_BODY_BARE_CR
#define LF   SMTP_BODY_BARE_LF
#define NUL  SMTP_BODY_NUL
#define LONG SMTP_BODY_LONG_LINE
#define HI   SMTP_BODY_8BIT

#define DATA   SMTP_BODY_MODE_DATA
#define BDAT   SMTP_BODY_MODE_BDAT
#define BINARY SMTP_BODY_MODE_BINARY

/* consumed == ALL: every input octet */
#define ALL ((size_t)-1)

struct body_case {
	enum smtp_body_mode mode;
	size_t max_line;
	const char *in;
	size_t in_len;
	const char *out;
	size_t out_len;
	unsigned flags;
	bool done;
	size_t consumed;
	bool finish;      /* call smtp_body_finish() after the last chunk */
};

static const struct body_case body_cases[] = {
	/* ordinary messages */
	{ DATA, 998, S(".\r\n"), S(""), 0, true, 3, false },
	{ DATA, 998, S("\r\n.\r\n"), S("\r\n"), 0, true, 5, false },
	{ DATA, 998, S("Subject: x\r\n\r\nhello\r\n.\r\n"),
	    S("Subject: x\r\n\r\nhello\r\n"), 0, true, ALL, false },
	/* pipelined commands after the end stay in the buffer */
	{ DATA, 998, S("hi\r\n.\r\nQUIT\r\n"), S("hi\r\n"), 0, true, 7, false },
	{ DATA, 998, S("hi\r\n.\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
	    S("hi\r\n"), 0, true, 7, false },
	{ DATA, 998, S(".\r\n.\r\n"), S(""), 0, true, 3, false },
	/* dot-stuffing (RFC 5321 4.5.2) */
	{ DATA, 998, S("..x\r\n.\r\n"), S(".x\r\n"), 0, true, ALL, false },
	{ DATA, 998, S("a\r\n..\r\n.\r\n"), S("a\r\n.\r\n"), 0, true, ALL, false },
	{ DATA, 998, S(".x\r\n.\r\n"), S("x\r\n"), 0, true, ALL, false },
	{ DATA, 998, S("...\r\n.\r\n"), S("..\r\n"), 0, true, ALL, false },
	{ DATA, 998, S("a.b\r\n.\r\n"), S("a.b\r\n"), 0, true, ALL, false },
	{ DATA, 998, S("a\r\n.b\r\n..\r\n...\r\n.\r\n"), S("a\r\nb\r\n.\r\n..\r\n"), 0, true, ALL, false },
	/* not (yet) the end */
	{ DATA, 998, S("abc.\r\n"), S("abc.\r\n"), 0, false, ALL, false },
	{ DATA, 998, S("abc"), S("abc"), 0, false, ALL, false },
	{ DATA, 998, S(""), S(""), 0, false, ALL, false },
	{ DATA, 998, S("a\r\n"), S("a\r\n"), 0, false, ALL, false },
	{ DATA, 998, S("a\r\n."), S("a\r\n"), 0, false, ALL, false },
	/* the CR after a leading dot is held back until we know */
	{ DATA, 998, S("a\r\n.\r"), S("a\r\n"), 0, false, ALL, false },
	{ DATA, 998, S("a\r\n. \r\n.\r\n"), S("a\r\n \r\n"), 0, true, ALL, false },
	/* SMTP smuggling: none of these ends the data */
	{ DATA, 998, S("a\n.\nb\r\n.\r\n"), S("a\n.\nb\r\n"), LF, true, ALL, false },
	{ DATA, 998, S("a\n.\r\nb\r\n.\r\n"), S("a\n.\r\nb\r\n"), LF, true, ALL, false },
	{ DATA, 998, S("a\r.\rb\r\n.\r\n"), S("a\r.\rb\r\n"), CR, true, ALL, false },
	{ DATA, 998, S("a\r\n.\rb\r\n.\r\n"), S("a\r\n\rb\r\n"), CR, true, ALL, false },
	{ DATA, 998, S("a\r\n.\r\r\nb\r\n.\r\n"), S("a\r\n\r\r\nb\r\n"), CR, true, ALL, false },
	{ DATA, 998, S("a\r\r\n.\r\r\nb\r\n.\r\n"), S("a\r\r\n\r\r\nb\r\n"), CR, true, ALL, false },
	{ DATA, 998, S("a\r\n\0.\r\nb\r\n.\r\n"), S("a\r\n\0.\r\nb\r\n"), NUL, true, ALL, false },
	{ DATA, 998, S("a\r\n.\nb\r\n.\r\n"), S("a\r\n\nb\r\n"), LF, true, ALL, false },
	{ DATA, 998, S("a\r\n.\r.\r\n.\r\n"), S("a\r\n\r.\r\n"), CR, true, ALL, false },
	{ DATA, 998, S("\n.\r\nb\r\n.\r\n"), S("\n.\r\nb\r\n"), LF, true, ALL, false },
	{ DATA, 998, S(".\nb\r\n.\r\n"), S("\nb\r\n"), LF, true, ALL, false },
	{ DATA, 998, S("\r.\r\n.\r\n"), S("\r.\r\n"), CR, true, ALL, false },
	/* ... and with no real end after them, the data goes on */
	{ DATA, 998, S("a\n.\n"), S("a\n.\n"), LF, false, ALL, false },
	{ DATA, 998, S("a\n.\r\n"), S("a\n.\r\n"), LF, false, ALL, false },
	{ DATA, 998, S("a\r.\r"), S("a\r.\r"), CR, false, ALL, false },
	{ DATA, 998, S("a\r\n.\rX"), S("a\r\n\rX"), CR, false, ALL, false },
	{ DATA, 998, S("a\r\n.\r\r\n"), S("a\r\n\r\r\n"), CR, false, ALL, false },
	{ DATA, 998, S("a\r\r\n.\r\r\n"), S("a\r\r\n\r\r\n"), CR, false, ALL, false },
	{ DATA, 998, S("a\r\n\0.\r\n"), S("a\r\n\0.\r\n"), NUL, false, ALL, false },
	{ DATA, 998, S("a\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nevil\r\n"),
	    S("a\n.\r\nMAIL FROM:<x@y>\r\nRCPT TO:<z@w>\r\nDATA\r\nevil\r\n"), LF, false, ALL, false },
	/* a bare CR before a real CRLF: that CRLF "." CRLF is the end */
	{ DATA, 998, S("a\r\r\n.\r\n"), S("a\r\r\n"), CR, true, ALL, false },
	/* NUL, 8-bit */
	{ DATA, 998, S("a\0b\r\n.\r\n"), S("a\0b\r\n"), NUL, true, ALL, false },
	{ DATA, 998, S("\0\r\n.\r\n"), S("\0\r\n"), NUL, true, ALL, false },
	{ DATA, 998, S("caf\xc3\xa9\r\n.\r\n"), S("caf\xc3\xa9\r\n"), HI, true, ALL, false },
	{ DATA, 998, S(".\xff\r\n.\r\n"), S("\xff\r\n"), HI, true, ALL, false },
	{ DATA, 998, S("\xff\0\r\n\n\r.\r\n.\r\n"), S("\xff\0\r\n\n\r.\r\n"), HI | NUL | LF | CR, true, ALL, false },
	/* line length, counted after unstuffing, CRLF excluded, bare CR/LF included */
	{ DATA, 3, S("abc\r\n.\r\n"), S("abc\r\n"), 0, true, ALL, false },
	{ DATA, 3, S("abcd\r\n.\r\n"), S("abcd\r\n"), LONG, true, ALL, false },
	{ DATA, 3, S(".abc\r\n.\r\n"), S("abc\r\n"), 0, true, ALL, false },
	{ DATA, 3, S("..bc\r\n.\r\n"), S(".bc\r\n"), 0, true, ALL, false },
	{ DATA, 3, S("...bc\r\n.\r\n"), S("..bc\r\n"), LONG, true, ALL, false },
	{ DATA, 3, S("ab\rc\r\n.\r\n"), S("ab\rc\r\n"), CR | LONG, true, ALL, false },
	{ DATA, 3, S("abc\r\r\n.\r\n"), S("abc\r\r\n"), CR | LONG, true, ALL, false },
	{ DATA, 3, S("ab\r\r\n.\r\n"), S("ab\r\r\n"), CR, true, ALL, false },
	{ DATA, 3, S("ab\nc\r\n.\r\n"), S("ab\nc\r\n"), LF | LONG, true, ALL, false },
	{ DATA, 3, S("abc\r\nabc\r\nabc\r\n.\r\n"), S("abc\r\nabc\r\nabc\r\n"), 0, true, ALL, false },
	{ DATA, 3, S("\r\n.\rxy\r\n.\r\n"), S("\r\n\rxy\r\n"), CR, true, ALL, false },
	{ DATA, 3, S("\r\n.\rxyz\r\n.\r\n"), S("\r\n\rxyz\r\n"), CR | LONG, true, ALL, false },
	{ DATA, 0, S("\r\n\r\n.\r\n"), S("\r\n\r\n"), 0, true, ALL, false },
	{ DATA, 0, S("a\r\n.\r\n"), S("a\r\n"), LONG, true, ALL, false },
	/* BDAT: octets as sent, no dot handling, no end */
	{ BDAT, 998, S("a\r\n.\r\nb"), S("a\r\n.\r\nb"), 0, false, ALL, false },
	{ BDAT, 998, S("..x\r\n"), S("..x\r\n"), 0, false, ALL, false },
	{ BDAT, 998, S("a\rb"), S("a\rb"), CR, false, ALL, false },
	{ BDAT, 998, S("a\nb"), S("a\nb"), LF, false, ALL, false },
	{ BDAT, 998, S("a\n.\n"), S("a\n.\n"), LF, false, ALL, false },
	{ BDAT, 998, S("a\0"), S("a\0"), NUL, false, ALL, false },
	{ BDAT, 998, S("\xff"), S("\xff"), HI, false, ALL, false },
	{ BDAT, 998, S("a\r"), S("a\r"), 0, false, ALL, false },
	{ BDAT, 998, S("a\r"), S("a\r"), CR, false, ALL, true },
	{ BDAT, 998, S("a\r\n"), S("a\r\n"), 0, false, ALL, true },
	{ BDAT, 998, S(""), S(""), 0, false, ALL, true },
	{ BDAT, 3, S("abcd\r\n"), S("abcd\r\n"), LONG, false, ALL, false },
	{ BDAT, 3, S("abc\r\nabc"), S("abc\r\nabc"), 0, false, ALL, true },
	{ BDAT, 3, S("abc\r"), S("abc\r"), CR | LONG, false, ALL, true },
	{ BDAT, 3, S(".abc\r\n"), S(".abc\r\n"), LONG, false, ALL, false },
	/* BINARYMIME: no checks at all */
	{ BINARY, 3, S("\r\n.\r\n\0\n\r\xff long line here"), S("\r\n.\r\n\0\n\r\xff long line here"), 0, false, ALL, true },
	{ BINARY, 998, S(".\r\n"), S(".\r\n"), 0, false, ALL, false },
};

struct body_result {
	uint8_t *out;
	size_t out_len;
	size_t consumed;
	unsigned flags;
	bool done;
};

/* Feed c->in cut at cuts[0..ncuts) and collect what comes out. */
static void
run_split(const struct body_case *c, const size_t *cuts, size_t ncuts,
    struct body_result *res)
{
	struct smtp_body b;
	size_t k, from = 0;

	smtp_body_init(&b, c->mode, c->max_line);
	res->out = malloc(c->in_len + 2);
	assert_non_null(res->out);
	res->out_len = 0;
	res->consumed = 0;
	res->done = false;
	for (k = 0; k <= ncuts && !res->done; k++) {
		size_t to = k < ncuts ? cuts[k] : c->in_len, n = to - from, out_len = 99, used;
		/* exact-size heap copies, so valgrind sees any overrun */
		uint8_t *in = malloc(n + 1), *out = malloc(n + 2);
		bool done = true;

		assert_non_null(in);
		assert_non_null(out);
		memcpy(in, c->in + from, n);
		used = smtp_body_feed(&b, in, n, out, &out_len, &done);
		assert_true(used <= n);
		assert_true(out_len <= n + 2);
		/* only the end of data stops short */
		if (!done)
			assert_int_equal(used, n);
		memcpy(res->out + res->out_len, out, out_len);
		res->out_len += out_len;
		res->consumed += used;
		res->done = done;
		assert_int_equal(b.size, res->out_len);
		if (done) {
			/* once done, nothing more is taken */
			size_t rest = n - used;

			assert_int_equal(smtp_body_feed(&b, in + used, rest, out, &out_len, &done), 0);
			assert_int_equal(out_len, 0);
			assert_true(done);
		}
		free(in);
		free(out);
		from = to;
	}
	if (c->finish)
		smtp_body_finish(&b);
	res->flags = b.flags;
}

static void
check_result(const struct body_case *c, size_t idx, const char *how,
    const struct body_result *res)
{
	size_t want_consumed = c->consumed == ALL ? c->in_len : c->consumed;

	if (res->out_len != c->out_len || memcmp(res->out, c->out, c->out_len) != 0 ||
	    res->flags != c->flags || res->done != c->done || res->consumed != want_consumed) {
		print_error("body case %zu (%s): out_len %zu/%zu flags %#x/%#x done %d/%d "
		    "consumed %zu/%zu\n", idx, how, res->out_len, c->out_len, res->flags,
		    c->flags, (int)res->done, (int)c->done, res->consumed, want_consumed);
		fail();
	}
}

static void
run_case(const struct body_case *c, size_t idx)
{
	struct body_result res;
	size_t *cuts, i, j;

	/* (a) whole */
	run_split(c, NULL, 0, &res);
	check_result(c, idx, "whole", &res);
	free(res.out);
	/* (b) one byte at a time */
	/* room for the bytewise cuts and for two split points */
	cuts = malloc((c->in_len + 2) * sizeof(*cuts));
	assert_non_null(cuts);
	for (i = 0; i < c->in_len; i++)
		cuts[i] = i + 1;
	run_split(c, cuts, c->in_len, &res);
	check_result(c, idx, "bytewise", &res);
	free(res.out);
	/* (c) every two-way split, empty halves included */
	for (i = 0; i <= c->in_len; i++) {
		cuts[0] = i;
		run_split(c, cuts, 1, &res);
		check_result(c, idx, "2-way", &res);
		free(res.out);
	}
	/* (d) every three-way split of the short rows */
	if (c->in_len <= 64) {
		for (i = 0; i <= c->in_len; i++) {
			for (j = i; j <= c->in_len; j++) {
				cuts[0] = i;
				cuts[1] = j;
				run_split(c, cuts, 2, &res);
				check_result(c, idx, "3-way", &res);
				free(res.out);
			}
		}
	}
	free(cuts);
}

static void
test_body_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(body_cases); i++)
		run_case(&body_cases[i], i);
}

/* RFC 5322 2.1.1: 998 octets plus CRLF is the longest line. Built at run
 * time; each goes through the same whole/bytewise/split runs. */
static void
test_body_long_lines(void **state)
{
	static const struct {
		enum smtp_body_mode mode;
		const char *lead;   /* before the run of 'x' */
		size_t xs;
		const char *lead_out;
		unsigned flags;
	} rows[] = {
		{ DATA, "", 998, "", 0 },
		{ DATA, "", 999, "", LONG },
		{ DATA, ".", 998, "", 0 },           /* unstuffed: 998 */
		{ DATA, "..", 997, ".", 0 },         /* unstuffed: 998 */
		{ DATA, "..", 998, ".", LONG },      /* unstuffed: 999 */
		{ DATA, "\r\n", 998, "\r\n", 0 },
		{ DATA, "\r\n", 999, "\r\n", LONG },
		{ BDAT, "", 998, "", 0 },
		{ BDAT, "", 999, "", LONG },
		{ BDAT, ".", 998, ".", LONG },       /* no unstuffing in BDAT */
		{ BINARY, "", 5000, "", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < ARRAY_LEN(rows); i++) {
		static char in[6000], out[6000];
		const char *tail = rows[i].mode == DATA ? "\r\n.\r\n" : "\r\n";
		size_t ll = strlen(rows[i].lead), lo = strlen(rows[i].lead_out);
		struct body_case c = {
			.mode = rows[i].mode, .max_line = 998, .flags = rows[i].flags,
			.done = rows[i].mode == DATA, .consumed = ALL,
		};

		memcpy(in, rows[i].lead, ll);
		memset(in + ll, 'x', rows[i].xs);
		memcpy(in + ll + rows[i].xs, tail, strlen(tail) + 1);
		memcpy(out, rows[i].lead_out, lo);
		memset(out + lo, 'x', rows[i].xs);
		memcpy(out + lo + rows[i].xs, "\r\n", 3);
		c.in = in;
		c.in_len = ll + rows[i].xs + strlen(tail);
		c.out = out;
		c.out_len = lo + rows[i].xs + 2;
		run_case(&c, 1000 + i);
	}
}

/* The flags are sticky and per message; init clears them. */
static void
test_body_init_resets(void **state)
{
	struct smtp_body b;
	uint8_t out[8];
	size_t n;
	bool done;

	(void)state;
	smtp_body_init(&b, DATA, 998);
	assert_int_equal(smtp_body_feed(&b, (const uint8_t *)"\n", 1, out, &n, &done), 1);
	assert_int_equal(b.flags, LF);
	smtp_body_init(&b, DATA, 998);
	assert_int_equal(b.flags, 0);
	assert_int_equal(b.size, 0);
	assert_int_equal(smtp_body_feed(&b, (const uint8_t *)".\r\n", 3, out, &n, &done), 3);
	assert_true(done);
	assert_int_equal(n, 0);
	/* finish is for BDAT only: a DATA body is complete as it is */
	smtp_body_finish(&b);
	assert_int_equal(b.flags, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_body_table),
		cmocka_unit_test(test_body_long_lines),
		cmocka_unit_test(test_body_init_resets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
