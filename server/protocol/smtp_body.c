/*
 * smtp_body.c: the message body state machine behind smtp_body.h. One octet
 * at a time (runs of ordinary text in one step), with all context in
 * struct smtp_body, so that the output, flags and end position are the same
 * however the network splits the stream. DATA removes dot-stuffing and finds the end of data; BDAT only
 * watches; BINARY only counts. Only CRLF "." CRLF ends DATA: every other
 * line-end mix is content and is flagged, which is what defeats the 2023
 * "SMTP smuggling" attacks (a message that another server would have split
 * in two is refused whole instead).
 */
#include "server/protocol/smtp_body.h"

#include <assert.h>
#include <string.h>

enum body_state {
	BS_LINE_START = 0,  /* after CRLF, or at the beginning of the data */
	BS_MID,             /* inside a line, previous octet not CR */
	BS_CR,              /* previous octet a CR (already output) */
	BS_DOT,             /* DATA: a "." at a line start, removed */
	BS_DOT_CR,          /* DATA: line start, ".", CR: held back, may end data */
	BS_DONE,            /* DATA: CRLF "." CRLF seen */
};

void
smtp_body_init(struct smtp_body *b, enum smtp_body_mode mode, size_t max_line)
{
	memset(b, 0, sizeof(*b));
	b->mode = mode;
	b->max_line = max_line;
	b->state = BS_LINE_START;
}

/* One more octet on the current line. RFC 5322 2.1.1 counts octets without
 * the CRLF; a bare CR or LF is not a line end, so it counts too. */
static void
count_octet(struct smtp_body *b)
{
	b->line_len++;
	if (b->line_len > b->max_line)
		b->flags |= SMTP_BODY_LONG_LINE;
}

size_t
smtp_body_feed(struct smtp_body *b, const uint8_t *in, size_t len,
    uint8_t *out, size_t *out_len_r, bool *done_r)
{
	size_t i, o = 0;

	if (b->mode == SMTP_BODY_MODE_BINARY) {
		/* RFC 3030 3: BINARYMIME content is opaque octets. */
		if (len > 0)
			memcpy(out, in, len);
		b->size += len;
		*out_len_r = len;
		*done_r = false;
		return len;
	}
	for (i = 0; i < len && b->state != BS_DONE; i++) {
		uint8_t c;

		if (b->state == BS_MID) {
			/* Most octets are ordinary text in mid line: copy the
			 * run up to the next CR, LF or NUL in one go, with the
			 * same counting the octet-wise path below does. */
			size_t n = 0;
			uint8_t any = 0;
			while (i + n < len && in[i + n] != '\r' && in[i + n] != '\n' && in[i + n] != '\0')
				any |= in[i + n++];
			if (n > 0) {
				memcpy(out + o, in + i, n);
				o += n;
				if (any & 0x80)
					b->flags |= SMTP_BODY_8BIT;
				b->line_len += n;
				if (b->line_len > b->max_line)
					b->flags |= SMTP_BODY_LONG_LINE;
				i += n;
				if (i == len)
					break;
			}
		}
		c = in[i];
		switch (b->state) {
		case BS_DOT_CR:
			if (c == '\n') {
				/* RFC 5321 4.1.1.4: the end of mail data. */
				b->state = BS_DONE;
				continue;
			}
			/* The held CR was content after a removed dot, and a
			 * bare one ("\r\n.\rX"): release it, then treat c as
			 * the next octet of the line. */
			out[o++] = '\r';
			b->flags |= SMTP_BODY_BARE_CR;
			count_octet(b);
			b->state = BS_MID;
			break;
		case BS_CR:
			if (c == '\n') {
				out[o++] = c;
				b->line_len = 0;
				b->state = BS_LINE_START;
				continue;
			}
			/* RFC 5321 2.3.8: CR only as part of CRLF. */
			b->flags |= SMTP_BODY_BARE_CR;
			count_octet(b);
			b->state = BS_MID;
			break;
		case BS_LINE_START:
			if (b->mode == SMTP_BODY_MODE_DATA && c == '.') {
				/* RFC 5321 4.5.2: a leading period is deleted,
				 * whether it stuffs a "." or starts the end. */
				b->state = BS_DOT;
				continue;
			}
			b->state = BS_MID;
			break;
		case BS_DOT:
			if (c == '\r') {
				/* Not output yet: "\n" next would make this the
				 * terminator, which is not content. */
				b->state = BS_DOT_CR;
				continue;
			}
			b->state = BS_MID;
			break;
		default:
			break;
		}
		/* An ordinary position in a line. A CR is output at once: mid
		 * line it is content whether an LF follows or not. */
		if (c == '\r') {
			out[o++] = c;
			b->state = BS_CR;
			continue;
		}
		if (c == '\n')
			/* No CR before it, so not a line end: we stay mid line
			 * and a "." after it is content, never a terminator. */
			b->flags |= SMTP_BODY_BARE_LF;
		else if (c == '\0')
			b->flags |= SMTP_BODY_NUL;
		else if (c >= 0x80)
			b->flags |= SMTP_BODY_8BIT;
		out[o++] = c;
		count_octet(b);
	}
	/* At most one octet more than the input: a CR held in BS_DOT_CR by
	 * the previous call. The header promises room for len + 2. */
	assert(o <= len + 1);
	b->size += o;
	*out_len_r = o;
	*done_r = b->state == BS_DONE;
	return i;
}

void
smtp_body_finish(struct smtp_body *b)
{
	/* A CR as the last octet of the last chunk never got its LF. */
	if (b->mode == SMTP_BODY_MODE_BDAT && b->state == BS_CR) {
		b->flags |= SMTP_BODY_BARE_CR;
		count_octet(b);
		b->state = BS_MID;
	}
}
