/*
 * smtp_reply.c: see smtp_reply.h. docs/tokens.md gives the grammar.
 */
#include "server/protocol/smtp_reply.h"

#include <stdio.h>
#include <string.h>

size_t
smtp_reply_token_line(char *out, bool last, const char *address, const char *token)
{
	const char *sep = last ? " " : "-";
	const char *tail = last ? " Saved" : "";
	int n;

	n = snprintf(out, SMTP_REPLY_LINE_MAX + 1, "250%s2.1.13 <%s> %s%s\r\n", sep, address, token, tail);
	if (n > 0 && n <= SMTP_REPLY_LINE_MAX)
		return (size_t)n;
	/* The address does not fit next to the token: RCPT order identifies
	 * the line, so leave the address out rather than break the limit. */
	n = snprintf(out, SMTP_REPLY_LINE_MAX + 1, "250%s2.1.13 %s%s\r\n", sep, token, tail);
	if (n > 0 && n <= SMTP_REPLY_LINE_MAX)
		return (size_t)n;
	out[0] = '\0';
	return 0;
}

size_t
smtp_reply_saved_line(char *out, const char *public_id)
{
	int n = snprintf(out, SMTP_REPLY_LINE_MAX + 1, "250 2.0.0 <%s> Saved\r\n", public_id);
	return n > 0 && n <= SMTP_REPLY_LINE_MAX ? (size_t)n : 0;
}
