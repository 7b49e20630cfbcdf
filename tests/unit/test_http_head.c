/*
 * test_http_head.c: the request head checker (server/protocol/http_head.c).
 * One table of {input, expected result, head length, body length, why};
 * every row runs twice: the whole input at once, then grown one octet at a
 * time (as a slow client sends it), which must give the same verdict.
 * Inputs are exact-size heap copies so valgrind and ASan catch an
 * over-read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/protocol/http_head.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define S(x) x, sizeof(x) - 1

static const struct http_head_limits LIM = { .max_head = 128, .max_body = 1000 };

struct head_case {
	const char *in;
	size_t len;
	enum http_head_status want;
	size_t skip, head_len;      /* HTTP_HEAD_OK only */
	uint64_t body_len;
	enum http_method method;
	const char *why;            /* a word of the refusal text, or NULL */
};

#define GET_OK "GET / HTTP/1.1\r\n\r\n"

static const struct head_case cases[] = {
	/* accepted */
	{ S(GET_OK), HTTP_HEAD_OK, 0, 18, 0, HTTP_M_GET, NULL },
	{ S("GET /v1/verify HTTP/1.0\n\n"), HTTP_HEAD_OK, 0, 25, 0, HTTP_M_GET, NULL },
	{ S("\r\n\r\nGET / HTTP/1.1\r\n\r\n"), HTTP_HEAD_OK, 4, 18, 0, HTTP_M_GET, NULL },
	{ S("POST /v1/verify HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"token\":\"\"}"), HTTP_HEAD_OK, 0, 48, 12,
	  HTTP_M_POST, NULL },
	{ S("POST /v1/verify HTTP/1.1\r\nContent-Length:\t 0012 \t\r\n\r\n"), HTTP_HEAD_OK, 0, 53, 12, HTTP_M_POST, NULL },
	{ S("POST / HTTP/1.1\r\nContent-Length: 1000\r\n\r\n"), HTTP_HEAD_OK, 0, 41, 1000, HTTP_M_POST, NULL },
	{ S("HEAD / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), HTTP_HEAD_OK, 0, 38, 0, HTTP_M_HEAD, NULL },
	{ S("TRACE / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), HTTP_HEAD_OK, 0, 39, 0, HTTP_M_TRACE, NULL },
	{ S("OPTIONS * HTTP/1.1\r\n\r\n"), HTTP_HEAD_OK, 0, 22, 0, HTTP_M_OPTIONS, NULL },
	{ S("GET http://Example.org:8025/v1/keys?x=%41 HTTP/1.1\r\n\r\n"), HTTP_HEAD_OK, 0, 54, 0, HTTP_M_GET, NULL },
	{ S("GET https://h HTTP/1.1\r\n\r\n"), HTTP_HEAD_OK, 0, 26, 0, HTTP_M_GET, NULL },
	{ S("PUT /a/b;c=d?e=f&g=(h)*!$'+,;:@~ HTTP/1.1\r\n\r\n"), HTTP_HEAD_OK, 0, 45, 0, HTTP_M_PUT, NULL },
	{ S("DELETE / HTTP/1.1\r\nX-A: \x80\xff obs-text\r\nEmpty:\r\n\r\n"), HTTP_HEAD_OK, 0, 47, 0, HTTP_M_DELETE,
	  NULL },
	{ S("PATCH / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n"), HTTP_HEAD_OK, 0, 42, 0, HTTP_M_PATCH, NULL },
	{ S("GET / HTTP/1.0\r\nExpect: anything\r\n\r\n"), HTTP_HEAD_OK, 0, 36, 0, HTTP_M_GET, NULL },
	/* the head ends at the first empty line: what follows is not looked at */
	{ S(GET_OK "\x01garbage"), HTTP_HEAD_OK, 0, 18, 0, HTTP_M_GET, NULL },
	/* not yet */
	{ S(""), HTTP_HEAD_MORE, 0, 0, 0, HTTP_M_NONE, NULL },
	{ S("GET / HTTP/1.1\r\nHost: x\r\n"), HTTP_HEAD_MORE, 0, 0, 0, HTTP_M_GET, NULL },
	{ S("GET / HTTP/1.1\r\nHost: x\r\n\r"), HTTP_HEAD_MORE, 0, 0, 0, HTTP_M_GET, NULL },
	/* 400 */
	{ S("NOT A REQUEST LINE\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S("GET /\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "HTTP/0.9" },
	{ S("GET / HTTP/1.1 \r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S("GET  / HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S(" GET / HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S("GET / HTTP/1.10\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S("GET / http/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S("G\x01T / HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S("GET /a\rb HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S("GET /a\0b HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_NONE, "request line" },
	{ S("GET /<> HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET /{refused}/3 HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET //evil HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET /%4 HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET /a#frag HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET * HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET http://h:65536/ HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET http://u@h/ HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET http:// HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET ftp://h/ HTTP/1.1\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "target" },
	{ S("GET / HTTP/1.1\r\nno colon\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "header field" },
	{ S("GET / HTTP/1.1\r\n: empty name\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "header field" },
	{ S("GET / HTTP/1.1\r\nX : a\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "header field" },
	{ S("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "folded" },
	{ S("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "control" },
	{ S("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "control" },
	{ S("GET / HTTP/1.1\r\nX: a\0\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_GET, "control" },
	{ S("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_POST, "Content-Length" },
	{ S("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_POST, "Content-Length" },
	{ S("POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_POST, "Content-Length" },
	{ S("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"), HTTP_HEAD_BAD, 0, 0, 0, HTTP_M_POST,
	  "more than one" },
	/* 431: the request line and fields, line ends excluded, over 128 */
	{ S("GET /" "0123456789012345678901234567890123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789012345678901234567890123456789"), HTTP_HEAD_TOO_LARGE, 0, 0, 0,
	  HTTP_M_NONE, "too large" },
	{ S("GET / HTTP/1.1\r\nA: 0123456789012345678901234567890123456789\r\n"
	    "B: 0123456789012345678901234567890123456789\r\nC: 0123456789012345678901234567890123456789\r\n\r\n"),
	  HTTP_HEAD_TOO_LARGE, 0, 0, 0, HTTP_M_GET, "too large" },
	{ S("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
	    "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
	    "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"), HTTP_HEAD_TOO_LARGE, 0, 0, 0, HTTP_M_NONE,
	  "too large" },
	/* 413 */
	{ S("POST / HTTP/1.1\r\nContent-Length: 1001\r\n\r\n"), HTTP_HEAD_BODY_TOO_LARGE, 0, 0, 0, HTTP_M_POST,
	  "body" },
	{ S("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999999999\r\n"), HTTP_HEAD_BODY_TOO_LARGE, 0, 0, 0,
	  HTTP_M_POST, "body" },
	/* 411 */
	{ S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_HEAD_NO_LENGTH, 0, 0, 0, HTTP_M_POST,
	  "Content-Length" },
	{ S("POST / HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: gzip\r\n"), HTTP_HEAD_NO_LENGTH, 0, 0, 0,
	  HTTP_M_POST, "Transfer-Encoding" },
	/* 417 */
	{ S("POST / HTTP/1.1\r\nExpect: teapot\r\n\r\n"), HTTP_HEAD_BAD_EXPECT, 0, 0, 0, HTTP_M_POST, "100-continue" },
	{ S("POST / HTTP/1.1\r\nExpect:\t100-continue\r\n\r\n"), HTTP_HEAD_BAD_EXPECT, 0, 0, 0, HTTP_M_POST,
	  "100-continue" },
	/* 501 */
	{ S("FOO / HTTP/1.1\r\n\r\n"), HTTP_HEAD_METHOD, 0, 0, 0, HTTP_M_NONE, "method" },
	{ S("get / HTTP/1.1\r\n\r\n"), HTTP_HEAD_METHOD, 0, 0, 0, HTTP_M_NONE, "method" },
	{ S("CONNECT h:443 HTTP/1.1\r\n\r\n"), HTTP_HEAD_METHOD, 0, 0, 0, HTTP_M_NONE, "method" },
	/* 505 */
	{ S("GET / HTTP/2.0\r\n\r\n"), HTTP_HEAD_VERSION, 0, 0, 0, HTTP_M_GET, "HTTP/1.1" },
	{ S("GET / HTTP/0.9\r\n\r\n"), HTTP_HEAD_VERSION, 0, 0, 0, HTTP_M_GET, "HTTP/1.1" },
};

static char *
dup_exact(const char *s, size_t n)
{
	char *p = malloc(n > 0 ? n : 1);

	assert_non_null(p);
	if (n > 0)
		memcpy(p, s, n);
	return p;
}

static void
check(const struct head_case *c, const struct http_head *h, enum http_head_status got)
{
	if (got != c->want)
		fail_msg("%.40s: got %d, want %d (%s)", c->in, (int)got, (int)c->want, h->why ? h->why : "");
	if (c->want == HTTP_HEAD_OK) {
		if (h->skip != c->skip || h->len != c->head_len || h->body_len != c->body_len)
			fail_msg("%.40s: skip %zu len %zu body %llu, want %zu %zu %llu", c->in, h->skip, h->len,
			    (unsigned long long)h->body_len, c->skip, c->head_len, (unsigned long long)c->body_len);
	}
	if (c->want != HTTP_HEAD_MORE && c->want != HTTP_HEAD_OK) {
		assert_non_null(h->why);
		if (c->why != NULL && strstr(h->why, c->why) == NULL)
			fail_msg("%.40s: why \"%s\" lacks \"%s\"", c->in, h->why, c->why);
		assert_true(http_head_status_code(got) >= 400);
		assert_non_null(http_head_reason(got));
	}
	if (c->want != HTTP_HEAD_MORE && h->method != c->method)
		fail_msg("%.40s: method %d, want %d", c->in, (int)h->method, (int)c->method);
}

static void
test_table_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char *in = dup_exact(cases[i].in, cases[i].len);
		struct http_head h;
		http_head_init(&h);
		check(&cases[i], &h, http_head_parse(&h, in, cases[i].len, &LIM));
		free(in);
	}
}

/* The same table, the input growing one octet at a time: the first
 * verdict other than MORE must be the whole input's. */
static void
test_table_bytewise(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct http_head h;
		enum http_head_status got = HTTP_HEAD_MORE;
		http_head_init(&h);
		for (size_t n = 1; n <= cases[i].len && got == HTTP_HEAD_MORE; n++) {
			char *in = dup_exact(cases[i].in, n);
			got = http_head_parse(&h, in, n, &LIM);
			free(in);
		}
		check(&cases[i], &h, got);
	}
}

/* Pipelined heads: after one is OK, the caller drops it (and its body) and
 * starts again on what follows. */
static void
test_pipelined(void **state)
{
	static const char in[] = "POST /v1/verify HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
	    "GET /healthz HTTP/1.1\r\n\r\nBAD\r\n\r\n";
	const char *p = in;
	size_t left = sizeof(in) - 1;
	struct http_head h;

	(void)state;
	http_head_init(&h);
	assert_int_equal(http_head_parse(&h, p, left, &LIM), HTTP_HEAD_OK);
	assert_int_equal(h.method, HTTP_M_POST);
	p += h.skip + h.len + h.body_len;
	left -= h.skip + h.len + h.body_len;
	http_head_init(&h);
	assert_int_equal(http_head_parse(&h, p, left, &LIM), HTTP_HEAD_OK);
	assert_int_equal(h.method, HTTP_M_GET);
	p += h.skip + h.len;
	left -= h.skip + h.len;
	http_head_init(&h);
	assert_int_equal(http_head_parse(&h, p, left, &LIM), HTTP_HEAD_BAD);
}

/* The limit is exact: a head of max_head octets (line ends excluded) passes,
 * one more does not. */
static void
test_limit_exact(void **state)
{
	struct http_head_limits lim = { .max_head = 0, .max_body = 0 };
	char buf[256];
	size_t n;
	struct http_head h;

	(void)state;
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %s\r\n\r\n", "0123456789");
	lim.max_head = 14 + 13;
	http_head_init(&h);
	assert_int_equal(http_head_parse(&h, buf, n, &lim), HTTP_HEAD_OK);
	lim.max_head--;
	http_head_init(&h);
	assert_int_equal(http_head_parse(&h, buf, n, &lim), HTTP_HEAD_TOO_LARGE);
	n = (size_t)snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nContent-Length: 7\r\n\r\n");
	lim.max_head = 100;
	lim.max_body = 7;
	http_head_init(&h);
	assert_int_equal(http_head_parse(&h, buf, n, &lim), HTTP_HEAD_OK);
	lim.max_body = 6;
	http_head_init(&h);
	assert_int_equal(http_head_parse(&h, buf, n, &lim), HTTP_HEAD_BODY_TOO_LARGE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table_whole),
		cmocka_unit_test(test_table_bytewise),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_limit_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
