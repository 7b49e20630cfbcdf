/*
 * fuzz_http_head.c: the API's request head checker
 * (server/protocol/http_head.h), which sees the raw octets of every API
 * connection before libevent does.
 *
 * The first octet picks the limits (so both the head and the body limit are
 * reached); the rest is the input. Checks:
 *  - fed whole, and fed in pieces (cut where the input's octets say), the
 *    verdict and every field of it are the same;
 *  - OK: the head lies within the input, ends with an empty line, has no
 *    NUL and no bare CR, no "{" in its request line (the guard's own path), its length minus
 *    line ends is within max_head, its body length within max_body and 0
 *    for HEAD and TRACE, and a method was recognized;
 *  - MORE: the input has no line end that would end a head after a request
 *    line, and is within the limit; a refusal has a reason and a 4xx/5xx.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "server/protocol/http_head.h"

static enum http_head_status
run(const char *in, size_t n, const struct http_head_limits *lim, struct http_head *h, const uint8_t *cuts,
    size_t ncuts)
{
	enum http_head_status st = HTTP_HEAD_MORE;
	size_t at = 0;

	http_head_init(h);
	for (size_t i = 0; i < ncuts && st == HTTP_HEAD_MORE; i++) {
		at += cuts[i] % 16;
		if (at >= n)
			break;
		st = http_head_parse(h, in, at, lim);
	}
	if (st == HTTP_HEAD_MORE)
		st = http_head_parse(h, in, n, lim);
	return st;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_head_limits lim;
	struct http_head whole, piece;
	enum http_head_status a, b;
	const char *in;
	size_t n;
	char *copy;

	if (size < 1)
		return 0;
	lim.max_head = 16 + (size_t)(data[0] & 0x3f) * 8;
	lim.max_body = (data[0] & 0x40) ? 10 : 100000;
	n = size - 1;
	copy = malloc(n > 0 ? n : 1);
	if (copy == NULL)
		abort();
	if (n > 0)
		memcpy(copy, data + 1, n);
	in = copy;

	http_head_init(&whole);
	a = http_head_parse(&whole, in, n, &lim);
	b = run(in, n, &lim, &piece, data + 1, n);
	FUZZ_CHECK(a == b);
	FUZZ_CHECK(whole.method == piece.method);
	if (a == HTTP_HEAD_OK) {
		size_t counted = 0;
		FUZZ_CHECK(whole.skip == piece.skip && whole.len == piece.len && whole.body_len == piece.body_len);
		FUZZ_CHECK(whole.skip + whole.len <= n);
		FUZZ_CHECK(whole.len >= 2 && in[whole.skip + whole.len - 1] == '\n');
		FUZZ_CHECK(in[whole.skip + whole.len - 2] == '\n' ||
		    (in[whole.skip + whole.len - 2] == '\r' && whole.len >= 3 && in[whole.skip + whole.len - 3] == '\n'));
		FUZZ_CHECK(memchr(in + whole.skip, '\0', whole.len) == NULL);
		{
			const char *nl = memchr(in + whole.skip, '\n', whole.len);
			FUZZ_CHECK(nl != NULL && memchr(in + whole.skip, '{', (size_t)(nl - in - whole.skip)) == NULL);
		}
		for (size_t i = whole.skip; i < whole.skip + whole.len; i++) {
			if (in[i] == '\r')
				FUZZ_CHECK(i + 1 < whole.skip + whole.len && in[i + 1] == '\n');
			if (in[i] != '\r' && in[i] != '\n')
				counted++;
		}
		FUZZ_CHECK(counted + whole.skip <= lim.max_head);
		FUZZ_CHECK(whole.body_len <= lim.max_body);
		FUZZ_CHECK(whole.method != HTTP_M_NONE);
		if (whole.method == HTTP_M_HEAD || whole.method == HTTP_M_TRACE)
			FUZZ_CHECK(whole.body_len == 0);
	} else if (a == HTTP_HEAD_MORE) {
		FUZZ_CHECK(whole.pos <= n);
	} else {
		FUZZ_CHECK(whole.why != NULL && piece.why != NULL && strcmp(whole.why, piece.why) == 0);
		FUZZ_CHECK(http_head_status_code(a) >= 400 && http_head_status_code(a) < 600);
	}
	free(copy);
	return 0;
}
