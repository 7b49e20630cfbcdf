/*
 * fuzz_imap_parse.c: what the Sent filing reads from an IMAP server
 * (server/protocol/imap_parse.h). The input is a server's byte stream: it
 * is framed into responses, fed whole and again in pieces whose sizes the
 * first octet chooses, and every response goes through imap_line_parse
 * and each helper that reads its parts.
 *
 * Checks:
 *  - framing makes progress (a call with octets uses at least one), never
 *    uses more than it is given, and cuts the same responses, with the
 *    same texts and sink octets, whatever the pieces;
 *  - a response's text is NUL-terminated within IMAP_TEXT_MAX;
 *  - imap_line_parse's pointers stay inside the text;
 *  - a date-time that parses formats back to a date that parses to the
 *    same second; quoting and the Message-ID stay in their buffers.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "server/protocol/imap_parse.h"

struct run {
	unsigned char digest[64];   /* a cheap running sum of texts and sink octets */
	size_t responses, sunk, pos;
};

static void
mix(struct run *r, const char *p, size_t n)
{
	/* by position in the whole stream, so that pieces do not matter */
	for (size_t i = 0; i < n; i++, r->pos++)
		r->digest[r->pos % sizeof(r->digest)] = (unsigned char)(r->digest[r->pos % sizeof(r->digest)] * 31 +
		    (unsigned char)p[i]);
}

static void
sink(void *arg, const char *p, size_t n)
{
	struct run *r = arg;

	mix(r, p, n);
	r->sunk += n;
}

static void
inside(const char *p, size_t n, const char *text, size_t len)
{
	FUZZ_CHECK(p >= text && p + n <= text + len);
}

static void
check_response(const struct imap_resp *resp)
{
	struct imap_line l;
	const char *t = resp->text;

	FUZZ_CHECK(resp->len <= IMAP_TEXT_MAX && t[resp->len] == '\0');
	if (imap_line_parse(t, resp->len, &l) == -1) {
		FUZZ_CHECK(l.kind == IMAP_MALFORMED);
		return;
	}
	inside(l.rest, l.rest_len, t, resp->len);
	if (l.code[0])
		inside(l.code_args, l.code_len, t, resp->len);
	FUZZ_CHECK(strlen(l.tag) < sizeof(l.tag) && strlen(l.keyword) < sizeof(l.keyword));
	(void)imap_caps_parse(l.rest, l.rest_len);
	(void)imap_caps_parse(l.code_args ? l.code_args : "", l.code_len);
	{
		uint32_t a, b, uids[8];
		char name[64];
		bool sent, noselect;
		struct imap_fetch f;

		if (imap_appenduid_parse(l.code_args ? l.code_args : "", l.code_len, &a, &b) == 0)
			FUZZ_CHECK(a > 0 && b > 0);
		if (imap_list_parse(l.rest, l.rest_len, &sent, &noselect, name, sizeof(name)) == 0)
			FUZZ_CHECK(strlen(name) < sizeof(name));
		FUZZ_CHECK(imap_search_parse(l.rest, l.rest_len, uids, 8) <= 8);
		if (imap_fetch_parse(l.rest, l.rest_len, &f) == 0 && f.internaldate >= 0 && f.internaldate < 253402300800LL) {
			char d[32];
			imap_date_time_format(f.internaldate, d);
			FUZZ_CHECK(imap_date_time_parse(d, strlen(d)) == f.internaldate);
		}
	}
	{
		char id[128], q[64];
		if (imap_message_id(t, resp->len, id, sizeof(id)) == 0)
			FUZZ_CHECK(strlen(id) > 0 && strlen(id) < sizeof(id));
		size_t n = imap_quote(t, q, sizeof(q));
		FUZZ_CHECK(n == 0 || (n < sizeof(q) && q[0] == '"' && q[n - 1] == '"' && q[n] == '\0'));
	}
}

/* Frame data in pieces of step octets (0: whole), checking each response. */
static void
frame(const uint8_t *data, size_t size, size_t step, bool to_sink, struct run *r)
{
	static struct imap_resp resp;
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	imap_resp_init(&resp, sink, r);
	resp.literals_to_sink = to_sink;
	while (off < size) {
		size_t piece = step == 0 || size - off < step ? size - off : step, used;
		bool done;

		used = imap_resp_feed(&resp, (const char *)data + off, piece, &done);
		FUZZ_CHECK(used >= 1 && used <= piece);
		FUZZ_CHECK(done || used == piece);
		off += used;
		if (done) {
			check_response(&resp);
			mix(r, resp.text, resp.len);
			r->responses++;
			imap_resp_reset(&resp);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole, pieces;
	size_t step = size > 0 ? (size_t)(data[0] % 17) + 1 : 1;

	for (int to_sink = 0; to_sink <= 1; to_sink++) {
		frame(data, size, 0, to_sink, &whole);
		frame(data, size, step, to_sink, &pieces);
		FUZZ_CHECK(whole.responses == pieces.responses && whole.sunk == pieces.sunk);
		FUZZ_CHECK(memcmp(whole.digest, pieces.digest, sizeof(whole.digest)) == 0);
	}
	return 0;
}
