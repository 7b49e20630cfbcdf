/*
 * fuzz_proxy_header.c: the PROXY protocol header parser
 * (server/protocol/proxy_header.h), on the first octets of a connection.
 *
 * Checks:
 *  - the answer is one of MORE, OK, BAD; OK consumes at least the fixed
 *    part of a header and never more than the input or the bound (107 for
 *    v1, max for v2); BAD gives a reason and consumes nothing;
 *  - OK with PROXY gives an IPv4 or IPv6 source and destination of the
 *    right size; v1 ends its header with CRLF;
 *  - a decision is final: the header alone (input cut at *consumed) gives
 *    the same result, and every shorter prefix of it is MORE;
 *  - sniff agrees: input that sniff calls a header is never refused as a
 *    bad signature.
 */
#include <netinet/in.h>
#include <string.h>

#include "fuzz.h"
#include "server/protocol/proxy_header.h"

#define MAX 512

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_header h, h2;
	size_t consumed, c2;
	const char *why, *why2;
	enum proxy_header_result r = proxy_header_parse(data, size, MAX, &h, &consumed, &why);

	FUZZ_CHECK(r == PROXY_HEADER_MORE || r == PROXY_HEADER_OK || r == PROXY_HEADER_BAD);
	if (proxy_header_sniff(data, size))
		FUZZ_CHECK(r != PROXY_HEADER_BAD || strcmp(why, "bad_signature") != 0);
	if (r == PROXY_HEADER_BAD) {
		FUZZ_CHECK(why != NULL && why[0] != '\0' && consumed == 0);
		return 0;
	}
	if (r == PROXY_HEADER_MORE) {
		FUZZ_CHECK(consumed == 0 && size < MAX);
		return 0;
	}
	FUZZ_CHECK(consumed <= size && consumed <= MAX);
	FUZZ_CHECK(h.version == 1 || h.version == 2);
	if (h.version == 1)
		FUZZ_CHECK(consumed <= PROXY_V1_MAX && consumed >= 8 && data[consumed - 2] == '\r' &&
		    data[consumed - 1] == '\n');
	else
		FUZZ_CHECK(consumed >= PROXY_V2_FIXED);
	if (h.command == PROXY_CMD_PROXY) {
		FUZZ_CHECK(h.src.ss_family == h.dst.ss_family);
		FUZZ_CHECK((h.src.ss_family == AF_INET && h.src_len == sizeof(struct sockaddr_in)) ||
		    (h.src.ss_family == AF_INET6 && h.src_len == sizeof(struct sockaddr_in6)));
		FUZZ_CHECK(h.dst_len == h.src_len);
	} else {
		FUZZ_CHECK(h.command == PROXY_CMD_LOCAL || h.command == PROXY_CMD_UNKNOWN);
	}
	FUZZ_CHECK(proxy_header_parse(data, consumed, MAX, &h2, &c2, &why2) == PROXY_HEADER_OK);
	FUZZ_CHECK(c2 == consumed && h2.command == h.command && h2.version == h.version);
	FUZZ_CHECK(memcmp(&h2.src, &h.src, sizeof(h.src)) == 0 && memcmp(&h2.dst, &h.dst, sizeof(h.dst)) == 0);
	for (size_t n = 0; n < consumed; n++)
		FUZZ_CHECK(proxy_header_parse(data, n, MAX, &h2, &c2, &why2) == PROXY_HEADER_MORE);
	return 0;
}
