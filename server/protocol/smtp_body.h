/*
 * smtp_body.h: the message body state machine, for DATA (dot-stuffed,
 * ends with CRLF "." CRLF) and BDAT (length-delimited, no stuffing).
 * Pure: bytes in, unstuffed bytes out, flags for what was wrong.
 *
 * Only CRLF "." CRLF ends DATA (RFC 5321 4.1.1.4). LF "." LF, CR "." CR and
 * every other mix (the 2023 SMTP smuggling class) are ordinary content and
 * are flagged as bare CR / bare LF, so the message is refused at its end.
 */
#ifndef SUBMITD_SMTP_BODY_H
#define SUBMITD_SMTP_BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_BODY_BARE_CR    0x01u   /* CR not followed by LF */
#define SMTP_BODY_BARE_LF    0x02u   /* LF not preceded by CR */
#define SMTP_BODY_NUL        0x04u   /* a NUL octet */
#define SMTP_BODY_LONG_LINE  0x08u   /* a line over max_line octets (CRLF excluded) */
#define SMTP_BODY_8BIT       0x10u   /* an octet >= 0x80 (informational) */

enum smtp_body_mode {
	SMTP_BODY_MODE_DATA = 0,    /* dot-stuffed, terminated by CRLF.CRLF */
	SMTP_BODY_MODE_BDAT,        /* octets as sent; checks only */
	SMTP_BODY_MODE_BINARY,      /* BDAT with BODY=BINARYMIME: no checks but size */
};

struct smtp_body {
	enum smtp_body_mode mode;
	size_t max_line;      /* 998 by default (RFC 5322 2.1.1) */
	unsigned flags;       /* SMTP_BODY_* seen so far */
	uint64_t size;        /* octets output so far (after unstuffing) */
	/* private state */
	int state;
	size_t line_len;
};

void smtp_body_init(struct smtp_body *b, enum smtp_body_mode mode, size_t max_line);

/* Feed len octets. Output (unstuffed in DATA mode) goes to out, which must
 * hold len + 2 octets; *out_len_r is set. Returns how many input octets were
 * consumed: all of them, except in DATA mode when the terminating
 * CRLF "." CRLF was found, in which case *done_r is set and the return
 * value counts up to and including the terminator. The CRLF before the
 * dot belongs to the message. */
size_t smtp_body_feed(struct smtp_body *b, const uint8_t *in, size_t len,
    uint8_t *out, size_t *out_len_r, bool *done_r);

/* End of a BDAT LAST body: a trailing lone CR is flagged as bare CR. */
void smtp_body_finish(struct smtp_body *b);

#endif
