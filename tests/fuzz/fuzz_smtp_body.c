/*
 * fuzz_smtp_body.c: the DATA/BDAT body machine (server/protocol/smtp_body.h).
 *
 * Input: one control octet, then the body octets. The control octet picks
 * the mode (DATA, BDAT, BINARY), the line limit (998, or a small one so
 * that long lines are cheap to reach) and the chunkings.
 *
 * Checks:
 *  - the body is fed one-shot, one octet at a time, in chunks whose sizes
 *    (0 included) come from the input's own octets, and split before and
 *    after every CR, LF and "."; every chunking must give the same output,
 *    flags, size, done and consumed count, since the network picks the
 *    split. Each feed gets an output buffer of exactly len + 2 octets on
 *    the heap, as the header promises, so an overrun is an ASan report;
 *  - against a reference model written from RFC 5321 directly: DATA ends at
 *    the first CRLF "." CRLF (or ".\r\n" at the very start) and nowhere
 *    else, so no smuggling variant (LF.LF, CR.CR, LF.CRLF, ...) ends it;
 *    the output is the input up to there with the leading dot of each line
 *    removed; BDAT and BINARY output the input unchanged;
 *  - the flags against the output: bare CR, bare LF, NUL, 8-bit and over-
 *    long lines are flagged exactly when the output holds them.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "server/protocol/smtp_body.h"

struct result {
	uint8_t *out;
	size_t out_len;
	unsigned flags;
	uint64_t size;
	bool done;
	size_t consumed;
};

struct feeder {
	const uint8_t *in;
	size_t len;
	struct smtp_body b;
	struct result r;
};

static void
feeder_init(struct feeder *f, const uint8_t *in, size_t len, enum smtp_body_mode mode, size_t max_line)
{
	memset(f, 0, sizeof(*f));
	f->in = in;
	f->len = len;
	smtp_body_init(&f->b, mode, max_line);
	f->r.out = malloc(len + 2);
	if (f->r.out == NULL)
		abort();
}

/* Feed the next n octets (fewer at the end); false once done or at the end. */
static bool
feeder_feed(struct feeder *f, size_t n)
{
	size_t at = f->r.consumed, got, out_len = 99999;
	uint8_t *chunk, *out;
	bool done = true;

	if (f->r.done)
		return false;
	if (n > f->len - at)
		n = f->len - at;
	chunk = (uint8_t *)fuzz_dup(f->in + at, n);   /* exactly n octets, as the session has them */
	out = malloc(n + 2);
	if (out == NULL)
		abort();
	got = smtp_body_feed(&f->b, chunk, n, out, &out_len, &done);
	FUZZ_CHECK(got <= n);
	FUZZ_CHECK(out_len <= n + 2);
	FUZZ_CHECK(done || got == n);
	FUZZ_CHECK(f->r.out_len + out_len <= f->len + 2);
	memcpy(f->r.out + f->r.out_len, out, out_len);
	f->r.out_len += out_len;
	f->r.consumed += got;
	f->r.done = done;
	free(out);
	free(chunk);
	return !done && f->r.consumed < f->len;
}

static struct result
feeder_end(struct feeder *f, bool finish)
{
	if (finish)
		smtp_body_finish(&f->b);
	f->r.flags = f->b.flags;
	f->r.size = f->b.size;
	return f->r;
}

static void
same(const struct result *a, const struct result *b)
{
	FUZZ_CHECK(a->out_len == b->out_len);
	FUZZ_CHECK(memcmp(a->out, b->out, a->out_len) == 0);
	FUZZ_CHECK(a->flags == b->flags);
	FUZZ_CHECK(a->size == b->size);
	FUZZ_CHECK(a->done == b->done);
	FUZZ_CHECK(a->consumed == b->consumed);
}

/* Where DATA must end: after the first CRLF "." CRLF, or after ".\r\n" at
 * the very start (the CRLF of the DATA command precedes it); 0 if nowhere. */
static size_t
data_end(const uint8_t *in, size_t len)
{
	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0)
		return 3;
	for (size_t i = 0; i + 5 <= len; i++) {
		if (memcmp(in + i, "\r\n.\r\n", 5) == 0)
			return i + 5;
	}
	return 0;
}

/* Reference DATA output: in[0..end) without the dot that starts a line
 * (RFC 5321 4.5.2), the terminator's ".\r\n" excluded. While not done, a CR
 * right after a line-start dot at the very end is held back: it may yet be
 * the terminator. */
static size_t
data_reference(const uint8_t *in, size_t len, uint8_t *out, bool *done_r)
{
	size_t end = data_end(in, len), stop, o = 0;

	*done_r = end != 0;
	stop = end != 0 ? end - 3 : len;
	for (size_t i = 0; i < stop; i++) {
		bool line_start = i == 0 || (i >= 2 && in[i - 2] == '\r' && in[i - 1] == '\n');

		if (line_start && in[i] == '.')
			continue;
		if (end == 0 && i == len - 1 && in[i] == '\r' && i >= 1 && in[i - 1] == '.' &&
		    (i == 1 || (i >= 3 && in[i - 3] == '\r' && in[i - 2] == '\n')))
			continue;
		out[o++] = in[i];
	}
	return o;
}

/* The flags that the output calls for. A CR at the very end is undecided
 * unless the body is finished. */
static unsigned
flags_of(const uint8_t *out, size_t n, size_t max_line, bool finished)
{
	unsigned flags = 0;
	size_t line = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t c = out[i];

		if (c == '\r' && i + 1 < n && out[i + 1] == '\n') {
			i++;
			line = 0;
			continue;
		}
		if (c == '\r' && i + 1 == n && !finished)
			break;
		if (c == '\r')
			flags |= SMTP_BODY_BARE_CR;
		else if (c == '\n')
			flags |= SMTP_BODY_BARE_LF;
		else if (c == '\0')
			flags |= SMTP_BODY_NUL;
		else if (c >= 0x80)
			flags |= SMTP_BODY_8BIT;
		if (++line > max_line)
			flags |= SMTP_BODY_LONG_LINE;
	}
	return flags;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t small_lines[4] = { 1, 2, 5, 76 };
	enum smtp_body_mode mode;
	size_t max_line;
	const uint8_t *in;
	size_t len;
	bool finish;
	struct feeder f;
	struct result whole, r;
	uint8_t *ref;
	size_t ref_len;
	bool ref_done;

	if (size < 1)
		return 0;
	/* control octet: bits 0-1 mode, bit 2 small limit, bits 3-4 which */
	mode = (data[0] & 3) == 1 ? SMTP_BODY_MODE_BDAT :
	    (data[0] & 3) == 2 ? SMTP_BODY_MODE_BINARY : SMTP_BODY_MODE_DATA;
	max_line = data[0] & 4 ? small_lines[(data[0] >> 3) & 3] : 998;
	in = data + 1;
	len = size - 1;
	/* a BDAT LAST chunk is finished; DATA and BINARY have no finish */
	finish = mode == SMTP_BODY_MODE_BDAT;

	/* one shot */
	feeder_init(&f, in, len, mode, max_line);
	feeder_feed(&f, len);
	whole = feeder_end(&f, finish);

	/* the model */
	ref = malloc(len + 1);
	if (ref == NULL)
		abort();
	if (mode == SMTP_BODY_MODE_DATA) {
		ref_len = data_reference(in, len, ref, &ref_done);
	} else {
		memcpy(ref, in, len);
		ref_len = len;
		ref_done = false;
	}
	FUZZ_CHECK(whole.done == ref_done);
	FUZZ_CHECK(whole.consumed == (ref_done ? data_end(in, len) : len));
	FUZZ_CHECK(whole.out_len == ref_len && memcmp(whole.out, ref, ref_len) == 0);
	FUZZ_CHECK(whole.size == whole.out_len);
	if (mode == SMTP_BODY_MODE_BINARY)
		FUZZ_CHECK(whole.flags == 0);
	else
		FUZZ_CHECK(whole.flags == flags_of(whole.out, whole.out_len, max_line, finish || whole.done));
	if (whole.done)
		FUZZ_CHECK(whole.out_len == 0 ||
		    (whole.out_len >= 2 && memcmp(whole.out + whole.out_len - 2, "\r\n", 2) == 0));
	free(ref);

	/* one octet at a time, with an empty feed between octets */
	feeder_init(&f, in, len, mode, max_line);
	while (feeder_feed(&f, 1))
		feeder_feed(&f, 0);
	r = feeder_end(&f, finish);
	same(&whole, &r);
	free(r.out);

	/* chunk sizes 0..31 read from the input itself, cycling; never two
	 * empty feeds in a row, so that it always gets somewhere */
	if (len > 0) {
		size_t k = 0, n = 1;

		feeder_init(&f, in, len, mode, max_line);
		do {
			size_t want = in[k++ % len] & 31;

			n = want == 0 && n == 0 ? 1 : want;
		} while (feeder_feed(&f, n));
		r = feeder_end(&f, finish);
		same(&whole, &r);
		free(r.out);
	}

	/* a split before and after every octet that matters to the machine */
	{
		size_t last = 0;

		feeder_init(&f, in, len, mode, max_line);
		for (size_t i = 0; i < len; i++) {
			if (in[i] == '\r' || in[i] == '\n' || in[i] == '.') {
				if (!feeder_feed(&f, i - last))
					break;
				if (!feeder_feed(&f, 1))
					break;
				last = i + 1;
			}
		}
		while (feeder_feed(&f, len))
			;
		r = feeder_end(&f, finish);
		same(&whole, &r);
		free(r.out);
	}
	free(whole.out);
	return 0;
}
