/*
 * test_proxy_header.c: the PROXY protocol header parser
 * (server/protocol/proxy_header.c). A table of {input, bound, expected},
 * with the examples of HAProxy's proxy-protocol.txt and one row per class
 * of malformed header. Each row runs on the whole input, then on every
 * prefix (a header that arrives an octet at a time): a prefix of a good
 * header is MORE, a prefix of a bad one is MORE or the same refusal.
 * Inputs are exact-size heap copies so that valgrind and ASan catch any
 * read past the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "server/protocol/proxy_header.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define S(x) x, sizeof(x) - 1
#define SIG "\r\n\r\n\0\r\nQUIT\n"

struct ph_case {
	const char *in;
	size_t len;
	size_t max;
	enum proxy_header_result want;
	size_t consumed;
	enum proxy_header_command cmd;
	const char *src, *dst;      /* PROXY: numeric text */
	unsigned sport, dport;
	const char *why;            /* BAD: the reason */
};

#define OK(in, cmd, src, sp, dst, dp, consumed) { S(in), 512, PROXY_HEADER_OK, consumed, cmd, src, dst, sp, dp, "" }
#define OKP(in, src, sp, dst, dp) OK(in, PROXY_CMD_PROXY, src, sp, dst, dp, sizeof(in) - 1)
#define BAD(in, why) { S(in), 512, PROXY_HEADER_BAD, 0, 0, NULL, NULL, 0, 0, why }
#define X10 "xxxxxxxxxx"
#define X91 X10 X10 X10 X10 X10 X10 X10 X10 X10 "x"
#define X93 X91 "xx"
#define MORE(in) { S(in), 512, PROXY_HEADER_MORE, 0, 0, NULL, NULL, 0, 0, "" }

/* v2 headers: signature, version/command, family/protocol, length, body */
#define V2_INET_PROXY SIG "\x21\x11\x00\x0c" "\xc0\x00\x02\x01" "\xc6\x33\x64\x02" "\xd4\x31" "\x00\x19"
#define V2_INET6_PROXY SIG "\x21\x21\x00\x24" \
	"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01" \
	"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02" "\x00\x50" "\x01\xbb"

static const struct ph_case cases[] = {
	/* proxy-protocol.txt 2.1, the examples */
	OKP("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
	    "255.255.255.255", 65535, "255.255.255.255", 65535),
	OKP("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "192.168.0.1", 56324, "192.168.0.11", 443),
	OKP("PROXY TCP6 2001:db8::1 2001:db8::2 1 0\r\n", "2001:db8::1", 1, "2001:db8::2", 0),
	OK("PROXY UNKNOWN\r\n", PROXY_CMD_UNKNOWN, NULL, 0, NULL, 0, 15),
	OK("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", PROXY_CMD_UNKNOWN, NULL, 0, NULL, 0,
	    sizeof("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n") - 1),
	/* what follows the header is the client's */
	OK("PROXY TCP4 127.0.0.2 127.0.0.1 4000 587\r\nEHLO x\r\n", PROXY_CMD_PROXY, "127.0.0.2", 4000,
	    "127.0.0.1", 587, 41),
	OK("PROXY TCP4 127.0.0.2 127.0.0.1 4000 465\r\n\x16\x03\x01", PROXY_CMD_PROXY, "127.0.0.2", 4000,
	    "127.0.0.1", 465, 41),
	/* v1, malformed */
	BAD("GET / HTTP/1.0\r\n", "bad_signature"),
	BAD("EHLO client\r\n", "bad_signature"),
	BAD("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad_signature"),
	BAD("PROXY\r\n", "bad_signature"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1_bare_lf"),
	BAD("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "v1_bad_protocol"),
	BAD("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1_bad_protocol"),
	BAD("PROXY UNKNOWNX\r\n", "v1_bad_protocol"),
	BAD("PROXY \r\n", "v1_bad_protocol"),
	BAD("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1_bad_fields"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1_bad_fields"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1_bad_fields"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1_bad_fields"),
	BAD("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", "v1_bad_fields"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1\r 2\r\n", "v1_bad_fields"),
	BAD("PROXY TCP4 host.example 5.6.7.8 1 2\r\n", "v1_bad_fields"),
	BAD("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "v1_bad_address"),
	BAD("PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "v1_bad_address"),
	BAD("PROXY TCP6 1.2.3.4 2001:db8::2 1 2\r\n", "v1_bad_address"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1_bad_port"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "v1_bad_port"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n", "v1_bad_port"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 99999999\r\n", "v1_bad_fields"),
	BAD("PROXY TCP4 1.2.3.4 5.6.7.8 1 abc\r\n", "v1_bad_port"),
	/* 107 octets without an end of line */
	BAD("PROXY UNKNOWN " X93, "v1_too_long"),
	/* the longest allowed: 105 octets and CRLF */
	OK("PROXY UNKNOWN " X91 "\r\n", PROXY_CMD_UNKNOWN, NULL, 0, NULL, 0, 107),
	/* prefixes */
	MORE("PRO"),
	MORE("PROXY TCP4 1.2.3.4 5.6.7.8 1 2"),
	MORE("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"),
	/* v2: proxy-protocol.txt 2.2 */
	OK(V2_INET_PROXY, PROXY_CMD_PROXY, "192.0.2.1", 54321, "198.51.100.2", 25, 28),
	OK(V2_INET6_PROXY, PROXY_CMD_PROXY, "2001:db8::1", 80, "2001:db8::2", 443, 52),
	OK(V2_INET_PROXY "EHLO x\r\n", PROXY_CMD_PROXY, "192.0.2.1", 54321, "198.51.100.2", 25, 28),
	/* TLVs skipped: ALPN "h2" and a NOOP of 3 octets */
	OK(SIG "\x21\x11\x00\x17" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b"
	   "\x01\x00\x02h2" "\x04\x00\x03\0\0\0", PROXY_CMD_PROXY, "127.0.0.2", 4096, "127.0.0.1", 587, 39),
	/* LOCAL (a health check): the address block, if any, is ignored */
	OK(SIG "\x20\x00\x00\x00", PROXY_CMD_LOCAL, NULL, 0, NULL, 0, 16),
	OK(SIG "\x20\x11\x00\x0c" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b", PROXY_CMD_LOCAL,
	    NULL, 0, NULL, 0, 28),
	/* PROXY with AF_UNSPEC: no address given */
	OK(SIG "\x21\x00\x00\x00", PROXY_CMD_UNKNOWN, NULL, 0, NULL, 0, 16),
	/* v2, malformed */
	BAD("\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c", "bad_signature"),
	BAD("\r\nEHLO x\r\n", "bad_signature"),
	BAD(SIG "\x11\x11\x00\x0c", "v2_bad_version"),
	BAD(SIG "\x31\x11\x00\x0c", "v2_bad_version"),
	BAD(SIG "\x22\x11\x00\x0c", "v2_bad_command"),
	BAD(SIG "\x2f\x11\x00\x0c", "v2_bad_command"),
	BAD(SIG "\x21\x31\x00\xd8", "v2_unix"),
	BAD(SIG "\x21\x12\x00\x0c" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b", "v2_dgram"),
	BAD(SIG "\x21\x22\x00\x24" "0123456789abcdef0123456789abcdef0123", "v2_dgram"),
	BAD(SIG "\x21\x10\x00\x0c" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b", "v2_bad_protocol"),
	BAD(SIG "\x21\x41\x00\x00", "v2_bad_family"),
	BAD(SIG "\x21\x11\x00\x08" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01", "v2_short_address"),
	BAD(SIG "\x21\x21\x00\x0c" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b", "v2_short_address"),
	/* a TLV whose length runs past the header, and a TLV cut after its type */
	BAD(SIG "\x21\x11\x00\x10" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b" "\x01\x00\x05h",
	    "v2_bad_tlv"),
	BAD(SIG "\x21\x11\x00\x0e" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b" "\x01\x00",
	    "v2_bad_tlv"),
	/* longer than the bound: refused from the length field, not read */
	BAD(SIG "\x21\x11\xff\xff", "v2_too_long"),
	{ S(SIG "\x21\x11\x00\x0c" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b"), 27,
	  PROXY_HEADER_BAD, 0, 0, NULL, NULL, 0, 0, "v2_too_long" },
	{ S(SIG "\x21\x11\x00\x0c" "\x7f\x00\x00\x02" "\x7f\x00\x00\x01" "\x10\x00" "\x02\x4b"), 28,
	  PROXY_HEADER_OK, 28, PROXY_CMD_PROXY, "127.0.0.2", "127.0.0.1", 4096, 587, "" },
	/* prefixes */
	MORE("\r\n\r\n\0"),
	MORE(SIG "\x21\x11\x00"),
	MORE(SIG "\x21\x11\x00\x0c" "\x7f\x00\x00\x02"),
	MORE(""),
};

static void
addr_text(const struct sockaddr_storage *ss, char *out, size_t outlen, unsigned *port_r)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		assert_non_null(inet_ntop(AF_INET, &sin->sin_addr, out, (socklen_t)outlen));
		*port_r = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		assert_int_equal(ss->ss_family, AF_INET6);
		assert_non_null(inet_ntop(AF_INET6, &sin6->sin6_addr, out, (socklen_t)outlen));
		*port_r = ntohs(sin6->sin6_port);
	}
}

static enum proxy_header_result
run(const char *in, size_t len, size_t max, struct proxy_header *h, size_t *consumed, const char **why)
{
	unsigned char *copy = malloc(len > 0 ? len : 1);
	enum proxy_header_result r;

	assert_non_null(copy);
	if (len > 0)
		memcpy(copy, in, len);
	r = proxy_header_parse(copy, len, max, h, consumed, why);
	free(copy);
	return r;
}

static void
check_case(const struct ph_case *c, size_t i)
{
	struct proxy_header h;
	size_t consumed = 99;
	const char *why = NULL;
	enum proxy_header_result r = run(c->in, c->len, c->max, &h, &consumed, &why);

	if (r != c->want)
		fail_msg("row %zu (%.40s): result %d, want %d (why %s)", i, c->in, r, c->want, why);
	if (r == PROXY_HEADER_BAD) {
		assert_string_equal(why, c->why);
		assert_int_equal(consumed, 0);
	}
	if (r != PROXY_HEADER_OK)
		return;
	assert_int_equal(consumed, c->consumed);
	assert_int_equal(h.command, c->cmd);
	assert_int_equal(h.version, c->in[0] == 'P' ? 1 : 2);
	if (c->cmd == PROXY_CMD_PROXY && c->src != NULL) {
		char a[INET6_ADDRSTRLEN];
		unsigned port;

		addr_text(&h.src, a, sizeof(a), &port);
		assert_string_equal(a, c->src);
		assert_int_equal(port, c->sport);
		addr_text(&h.dst, a, sizeof(a), &port);
		assert_string_equal(a, c->dst);
		assert_int_equal(port, c->dport);
		assert_int_equal(h.src_len, h.src.ss_family == AF_INET ? sizeof(struct sockaddr_in)
		    : sizeof(struct sockaddr_in6));
	}
}

static void
test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		check_case(&cases[i], i);
	}
}

/* Every strict prefix of a row: a good header is MORE until its last
 * octet; a bad one is MORE until the octet that makes it bad, then that
 * same refusal. */
static void
test_prefixes(void **state)
{
	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const struct ph_case *c = &cases[i];
		size_t end = c->want == PROXY_HEADER_OK ? c->consumed : c->len;

		for (size_t n = 0; n < end; n++) {
			struct proxy_header h;
			size_t consumed;
			const char *why;
			enum proxy_header_result r = run(c->in, n, c->max, &h, &consumed, &why);

			if (c->want == PROXY_HEADER_BAD && r == PROXY_HEADER_BAD) {
				assert_string_equal(why, c->why);
				continue;
			}
			if (r != PROXY_HEADER_MORE)
				fail_msg("row %zu prefix %zu: result %d (why %s), want MORE", i, n, r, why);
		}
	}
}

/* proxy-protocol.txt 2.1's worst case, with the addresses written out:
 * UNKNOWN keeps what follows it, and TCP6 with the longest addresses is
 * three octets shorter. */
static void
test_spec_longest(void **state)
{
	static const char in[] = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
	struct proxy_header h;
	size_t consumed;
	const char *why;

	(void)state;
	assert_int_equal(sizeof(in) - 1, PROXY_V1_MAX);
	assert_int_equal(run(in, sizeof(in) - 1, 512, &h, &consumed, &why), PROXY_HEADER_OK);
	assert_int_equal(consumed, PROXY_V1_MAX);
	assert_int_equal(h.command, PROXY_CMD_UNKNOWN);
	assert_int_equal(run(in + 8, sizeof(in) - 1 - 8, 512, &h, &consumed, &why), PROXY_HEADER_BAD);
	assert_string_equal(why, "bad_signature");
}

static void
test_sniff(void **state)
{
	(void)state;
	assert_true(proxy_header_sniff((const unsigned char *)"PROXY TCP4 ", 11));
	assert_true(proxy_header_sniff((const unsigned char *)SIG "\x21", 13));
	assert_false(proxy_header_sniff((const unsigned char *)"PROXY", 5));
	assert_false(proxy_header_sniff((const unsigned char *)"\r\n\r\n", 4));
	assert_false(proxy_header_sniff((const unsigned char *)"EHLO proxy\r\n", 12));
	assert_false(proxy_header_sniff((const unsigned char *)"", 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_spec_longest),
		cmocka_unit_test(test_sniff),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
