/*
 * fuzz_smtp_command.c: the command side of an SMTP session, as the server
 * reads it: smtp_line_find frames lines out of the input (a whole pipelined
 * client stream), smtp_command_parse splits each line, and the arguments of
 * MAIL, RCPT, BDAT (and, for coverage, HELO/EHLO/VRFY/EXPN as a Mailbox) go
 * to their parsers, with the invariants of smtp_checks.h.
 *
 * smtp_line_find is checked against its contract: what each result says
 * about the octets, that a prefix of the buffer only ever answers MORE or the
 * same thing (the session rescans as bytes trickle in), and that a smaller
 * limit agrees with the real one on every line that fits in it.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "smtp_checks.h"
#include "server/protocol/smtp_parse.h"

#define LINE_MAX_REAL  512   /* RFC 5321 4.5.3.1.4, the default max_line_length */
#define LINE_MAX_SMALL 24

struct found {
	enum smtp_line_result r;
	size_t line_len, consumed;
};

static struct found
find(const char *buf, size_t len, size_t max)
{
	struct found f = { SMTP_LINE_MORE, 12345, 12345 };
	char *copy = fuzz_dup((const uint8_t *)buf, len);

	f.r = smtp_line_find(copy, len, max, &f.line_len, &f.consumed);
	free(copy);
	return f;
}

static bool
same(struct found a, struct found b)
{
	return a.r == b.r && a.line_len == b.line_len && a.consumed == b.consumed;
}

/* What each answer promises about buf[0..len). */
static void
check_found(const char *buf, size_t len, size_t max, struct found f)
{
	const char *lf = memchr(buf, '\n', len < max ? len : max);
	const char *cr = memchr(buf, '\r', len);

	switch (f.r) {
	case SMTP_LINE_MORE:
		FUZZ_CHECK(len < max);
		FUZZ_CHECK(lf == NULL);
		FUZZ_CHECK(cr == NULL || cr == buf + len - 1);
		break;
	case SMTP_LINE_OK:
	case SMTP_LINE_NUL:
		FUZZ_CHECK(f.consumed == f.line_len + 2 && f.consumed <= len && f.consumed <= max);
		FUZZ_CHECK(buf[f.line_len] == '\r' && buf[f.line_len + 1] == '\n');
		FUZZ_CHECK(memchr(buf, '\r', f.line_len) == NULL && memchr(buf, '\n', f.line_len) == NULL);
		FUZZ_CHECK((memchr(buf, '\0', f.line_len) != NULL) == (f.r == SMTP_LINE_NUL));
		break;
	case SMTP_LINE_BARE_LF:
		FUZZ_CHECK(f.consumed == f.line_len + 1 && f.consumed <= len && f.consumed <= max);
		FUZZ_CHECK(buf[f.line_len] == '\n');
		FUZZ_CHECK(memchr(buf, '\r', f.line_len) == NULL && memchr(buf, '\n', f.line_len) == NULL);
		break;
	case SMTP_LINE_BARE_CR:
		FUZZ_CHECK(f.consumed == f.line_len + 1 && f.line_len + 1 < len && f.line_len + 2 <= max);
		FUZZ_CHECK(buf[f.line_len] == '\r' && buf[f.line_len + 1] != '\n');
		FUZZ_CHECK(memchr(buf, '\r', f.line_len) == NULL && memchr(buf, '\n', f.line_len) == NULL);
		break;
	case SMTP_LINE_TOO_LONG:
		/* no line end that fits: the first CR or LF (if any) is too far */
		if (lf != NULL)
			FUZZ_CHECK(cr != NULL && cr < lf);
		if (cr != NULL)
			FUZZ_CHECK((size_t)(cr - buf) + 2 > max);
		FUZZ_CHECK(len >= max || (cr != NULL && (size_t)(cr - buf) + 2 > max));
		break;
	default:
		FUZZ_CHECK(!"unknown smtp_line_result");
	}
}

static void
check_command(const char *line, size_t len, bool *utf8)
{
	char *copy = fuzz_dup((const uint8_t *)line, len);
	struct smtp_command cmd;
	size_t vlen = 0;
	const char *name;

	smtp_command_parse(copy, len, &cmd);
	while (vlen < len && line[vlen] != ' ')
		vlen++;
	name = smtp_verb_name(cmd.verb);
	FUZZ_CHECK(name != NULL);
	if (cmd.verb == SMTP_VERB_UNKNOWN) {
		/* no verb name matches the first word */
		for (int v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
			const char *nm = smtp_verb_name((enum smtp_verb)v);
			bool eq = strlen(nm) == vlen;

			for (size_t k = 0; eq && k < vlen; k++)
				eq = fz_lower((unsigned char)line[k]) == fz_lower((unsigned char)nm[k]);
			FUZZ_CHECK(!eq);
		}
	} else {
		FUZZ_CHECK((unsigned)cmd.verb < SMTP_VERB_COUNT);
		FUZZ_CHECK(strlen(name) == vlen);
		for (size_t k = 0; k < vlen; k++)
			FUZZ_CHECK(fz_lower((unsigned char)line[k]) == fz_lower((unsigned char)name[k]));
	}
	/* the arguments: after the verb and exactly one SP, trailing SPs dropped */
	FUZZ_CHECK(cmd.args >= copy && cmd.args <= copy + len);
	FUZZ_CHECK(cmd.args_len <= len && (size_t)(cmd.args - copy) + cmd.args_len <= len);
	if (vlen < len)
		FUZZ_CHECK(cmd.args == copy + vlen + 1);
	else
		FUZZ_CHECK(cmd.args_len == 0);
	if (cmd.args_len > 0)
		FUZZ_CHECK(cmd.args[cmd.args_len - 1] != ' ');
	for (size_t k = (size_t)(cmd.args - copy) + cmd.args_len; k < len; k++)
		FUZZ_CHECK(line[k] == ' ');

	switch (cmd.verb) {
	case SMTP_VERB_MAIL:
		check_mail((const uint8_t *)cmd.args, cmd.args_len, utf8);
		break;
	case SMTP_VERB_RCPT:
		check_rcpt((const uint8_t *)cmd.args, cmd.args_len, *utf8);
		break;
	case SMTP_VERB_BDAT:
		check_bdat((const uint8_t *)cmd.args, cmd.args_len);
		break;
	case SMTP_VERB_RSET:
		*utf8 = false;
		break;
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
	case SMTP_VERB_VRFY:
	case SMTP_VERB_EXPN:
		check_mailbox((const uint8_t *)cmd.args, cmd.args_len);
		break;
	default:
		break;
	}
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0;
	bool utf8 = false;
	int first = 1;

	while (off < size) {
		const char *p = buf + off;
		size_t len = size - off;
		struct found f = find(p, len, LINE_MAX_REAL), small;

		check_found(p, len, LINE_MAX_REAL, f);
		/* a smaller limit: the same answer for every line that fits it */
		small = find(p, len, LINE_MAX_SMALL);
		check_found(p, len, LINE_MAX_SMALL, small);
		if (f.r != SMTP_LINE_MORE && f.r != SMTP_LINE_TOO_LONG && f.consumed + 1 <= LINE_MAX_SMALL)
			FUZZ_CHECK(same(f, small));
		if (small.r != SMTP_LINE_MORE && small.r != SMTP_LINE_TOO_LONG)
			FUZZ_CHECK(same(f, small));
		/* prefixes (first line only, it is quadratic): MORE or the same */
		if (first) {
			size_t upto = f.r == SMTP_LINE_MORE || f.r == SMTP_LINE_TOO_LONG ? len : f.consumed + 1;

			/* past the limit the answer cannot change again */
			if (upto > LINE_MAX_REAL + 2)
				upto = LINE_MAX_REAL + 2;

			for (size_t k = 0; k < upto && k < len; k++) {
				struct found pf = find(p, k, LINE_MAX_REAL);

				check_found(p, k, LINE_MAX_REAL, pf);
				FUZZ_CHECK(pf.r == SMTP_LINE_MORE || same(pf, f));
			}
			first = 0;
		}
		if (f.r == SMTP_LINE_MORE)
			break;
		if (f.r == SMTP_LINE_TOO_LONG) {
			/* the session discards up to the next LF */
			const char *nl = memchr(p, '\n', len);

			if (nl == NULL)
				break;
			off += (size_t)(nl - p) + 1;
			continue;
		}
		FUZZ_CHECK(f.consumed > 0);
		if (f.r == SMTP_LINE_OK)
			check_command(p, f.line_len, &utf8);
		off += f.consumed;
	}
	return 0;
}
