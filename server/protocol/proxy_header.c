/*
 * proxy_header.c: see proxy_header.h. The header is checked as strictly as
 * proxy-protocol.txt writes it (single spaces, CRLF, canonical numbers,
 * well-formed TLVs): the only sender we expect is a load balancer, and a
 * loose reader of client-supplied addresses is how a spoofed address gets
 * into the logs, the limits and the database.
 */
#include "server/protocol/proxy_header.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static const char v1_prefix[] = "PROXY ";
#define V1_PREFIX_LEN (sizeof(v1_prefix) - 1)

/* proxy-protocol.txt 2.2: the low nibble of the 13th octet. */
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
/* The high nibble of the 14th octet, then its low nibble. */
#define V2_AF_UNSPEC 0x0
#define V2_AF_INET 0x1
#define V2_AF_INET6 0x2
#define V2_AF_UNIX 0x3
#define V2_PROTO_STREAM 0x1
#define V2_PROTO_DGRAM 0x2
#define V2_INET_LEN 12
#define V2_INET6_LEN 36

static enum proxy_header_result
bad(const char **why_r, const char *why)
{
	*why_r = why;
	return PROXY_HEADER_BAD;
}

/* A field of a v1 line: the octets up to the next space (or the end),
 * copied to out with a terminator; NULL if it is empty, too long or holds
 * an octet no address or port has (a NUL would cut it short unseen). */
static const char *
v1_field(const char *p, const char *end, char *out, size_t outlen)
{
	size_t n = 0;

	while (p + n < end && p[n] != ' ') {
		if (p[n] == '\0' || strchr("0123456789abcdefABCDEF.:", p[n]) == NULL)
			return NULL;
		n++;
	}
	if (n == 0 || n >= outlen)
		return NULL;
	memcpy(out, p, n);
	out[n] = '\0';
	return p + n;
}

/* A port: decimal, no sign, no leading zero, at most 65535. */
static int
v1_port(const char *s, in_port_t *port_r)
{
	unsigned long v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port_r = htons((in_port_t)v);
	return 0;
}

static void
set_in(struct sockaddr_storage *ss, socklen_t *len_r, const void *addr, in_port_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, addr, 4);
	sin->sin_port = port;
	*len_r = sizeof(*sin);
}

static void
set_in6(struct sockaddr_storage *ss, socklen_t *len_r, const void *addr, in_port_t port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	memcpy(&sin6->sin6_addr, addr, 16);
	sin6->sin6_port = port;
	*len_r = sizeof(*sin6);
}

/* "TCP4 SRC DST SPORT DPORT" or "TCP6 ...", between "PROXY " and CRLF. */
static enum proxy_header_result
v1_tcp(const char *p, const char *end, int family, struct proxy_header *h, const char **why_r)
{
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN], sport[8], dport[8];
	unsigned char a_src[16], a_dst[16];
	in_port_t ps, pd;

	if ((p = v1_field(p, end, src, sizeof(src))) == NULL || p == end || *p++ != ' ' ||
	    (p = v1_field(p, end, dst, sizeof(dst))) == NULL || p == end || *p++ != ' ' ||
	    (p = v1_field(p, end, sport, sizeof(sport))) == NULL || p == end || *p++ != ' ' ||
	    (p = v1_field(p, end, dport, sizeof(dport))) == NULL || p != end)
		return bad(why_r, "v1_bad_fields");
	if (inet_pton(family, src, a_src) != 1 || inet_pton(family, dst, a_dst) != 1)
		return bad(why_r, "v1_bad_address");
	if (v1_port(sport, &ps) == -1 || v1_port(dport, &pd) == -1)
		return bad(why_r, "v1_bad_port");
	h->command = PROXY_CMD_PROXY;
	if (family == AF_INET) {
		set_in(&h->src, &h->src_len, a_src, ps);
		set_in(&h->dst, &h->dst_len, a_dst, pd);
	} else {
		set_in6(&h->src, &h->src_len, a_src, ps);
		set_in6(&h->dst, &h->dst_len, a_dst, pd);
	}
	return PROXY_HEADER_OK;
}

static enum proxy_header_result
parse_v1(const unsigned char *buf, size_t len, struct proxy_header *h, size_t *consumed_r, const char **why_r)
{
	size_t look = len < PROXY_V1_MAX ? len : PROXY_V1_MAX, lf;
	const char *line = (const char *)buf + V1_PREFIX_LEN, *end;
	enum proxy_header_result r;

	const unsigned char *nl = memchr(buf, '\n', look);
	if (nl == NULL)
		return len >= PROXY_V1_MAX ? bad(why_r, "v1_too_long") : PROXY_HEADER_MORE;
	lf = (size_t)(nl - buf);
	if (lf < V1_PREFIX_LEN || buf[lf - 1] != '\r')
		return bad(why_r, "v1_bare_lf");
	end = (const char *)buf + lf - 1;
	h->version = 1;
	/* 2.1: "UNKNOWN", then anything up to the CRLF, which is ignored */
	if ((size_t)(end - line) >= 7 && memcmp(line, "UNKNOWN", 7) == 0 &&
	    (end - line == 7 || line[7] == ' ')) {
		h->command = PROXY_CMD_UNKNOWN;
		r = PROXY_HEADER_OK;
	} else if ((size_t)(end - line) > 5 && memcmp(line, "TCP4 ", 5) == 0) {
		r = v1_tcp(line + 5, end, AF_INET, h, why_r);
	} else if ((size_t)(end - line) > 5 && memcmp(line, "TCP6 ", 5) == 0) {
		r = v1_tcp(line + 5, end, AF_INET6, h, why_r);
	} else {
		return bad(why_r, "v1_bad_protocol");
	}
	if (r == PROXY_HEADER_OK)
		*consumed_r = lf + 1;
	return r;
}

/* A port as v2 carries it: network order, as sin_port keeps it. */
static in_port_t
v2_port(const unsigned char *p)
{
	in_port_t port;

	memcpy(&port, p, sizeof(port));
	return port;
}

/* The TLVs (type, 16-bit length, value) must tile [p, end) exactly. */
static bool
v2_tlvs_ok(const unsigned char *p, const unsigned char *end)
{
	while (p < end) {
		size_t n;

		if (end - p < 3)
			return false;
		n = ((size_t)p[1] << 8) | p[2];
		if ((size_t)(end - p - 3) < n)
			return false;
		p += 3 + n;
	}
	return true;
}

static enum proxy_header_result
parse_v2(const unsigned char *buf, size_t len, size_t max, struct proxy_header *h, size_t *consumed_r,
    const char **why_r)
{
	size_t plen, total, alen;
	unsigned cmd, af, proto;
	const unsigned char *a;

	if (len < PROXY_V2_FIXED)
		return PROXY_HEADER_MORE;
	if ((buf[12] >> 4) != 2)
		return bad(why_r, "v2_bad_version");
	cmd = buf[12] & 0xf;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return bad(why_r, "v2_bad_command");
	plen = ((size_t)buf[14] << 8) | buf[15];
	total = PROXY_V2_FIXED + plen;
	af = buf[13] >> 4;
	proto = buf[13] & 0xf;
	alen = 0;
	/* Everything the fixed part says is checked before the rest is
	 * waited for. 2.2: with LOCAL the receiver ignores the address block. */
	if (cmd == V2_CMD_PROXY && af != V2_AF_UNSPEC) {
		if (af == V2_AF_UNIX)
			return bad(why_r, "v2_unix");
		if (af != V2_AF_INET && af != V2_AF_INET6)
			return bad(why_r, "v2_bad_family");
		if (proto == V2_PROTO_DGRAM)
			return bad(why_r, "v2_dgram");
		if (proto != V2_PROTO_STREAM)
			return bad(why_r, "v2_bad_protocol");
		alen = af == V2_AF_INET ? V2_INET_LEN : V2_INET6_LEN;
		if (plen < alen)
			return bad(why_r, "v2_short_address");
	}
	if (total > max)
		return bad(why_r, "v2_too_long");
	if (len < total)
		return PROXY_HEADER_MORE;
	h->version = 2;
	if (alen == 0) {
		h->command = cmd == V2_CMD_LOCAL ? PROXY_CMD_LOCAL : PROXY_CMD_UNKNOWN;
		h->tlv_len = plen;
		*consumed_r = total;
		return PROXY_HEADER_OK;
	}
	if (!v2_tlvs_ok(buf + PROXY_V2_FIXED + alen, buf + total))
		return bad(why_r, "v2_bad_tlv");
	a = buf + PROXY_V2_FIXED;
	h->command = PROXY_CMD_PROXY;
	if (af == V2_AF_INET) {
		set_in(&h->src, &h->src_len, a, v2_port(a + 8));
		set_in(&h->dst, &h->dst_len, a + 4, v2_port(a + 10));
	} else {
		set_in6(&h->src, &h->src_len, a, v2_port(a + 32));
		set_in6(&h->dst, &h->dst_len, a + 16, v2_port(a + 34));
	}
	h->tlv_len = plen - alen;
	*consumed_r = total;
	return PROXY_HEADER_OK;
}

enum proxy_header_result
proxy_header_parse(const unsigned char *buf, size_t len, size_t max, struct proxy_header *h,
    size_t *consumed_r, const char **why_r)
{
	const unsigned char *sig = (const unsigned char *)PROXY_V2_SIG;
	size_t n;

	memset(h, 0, sizeof(*h));
	*consumed_r = 0;
	*why_r = "";
	if (len == 0)
		return PROXY_HEADER_MORE;
	if (buf[0] == sig[0]) {
		n = len < PROXY_V2_SIG_LEN ? len : PROXY_V2_SIG_LEN;
		if (memcmp(buf, sig, n) != 0)
			return bad(why_r, "bad_signature");
		return parse_v2(buf, len, max, h, consumed_r, why_r);
	}
	n = len < V1_PREFIX_LEN ? len : V1_PREFIX_LEN;
	if (memcmp(buf, v1_prefix, n) != 0)
		return bad(why_r, "bad_signature");
	if (len < V1_PREFIX_LEN)
		return PROXY_HEADER_MORE;
	return parse_v1(buf, len, h, consumed_r, why_r);
}

bool
proxy_header_sniff(const unsigned char *buf, size_t len)
{
	return (len >= V1_PREFIX_LEN && memcmp(buf, v1_prefix, V1_PREFIX_LEN) == 0) ||
	    (len >= PROXY_V2_SIG_LEN && memcmp(buf, PROXY_V2_SIG, PROXY_V2_SIG_LEN) == 0);
}
