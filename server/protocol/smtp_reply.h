/*
 * smtp_reply.h: the final reply to a stored message, built line by line
 * within the 512-octet reply-line limit (RFC 5321 4.5.3.1.5). Pure, so the
 * budget is unit-tested for the longest address and the longest token.
 */
#ifndef SUBMITD_SMTP_REPLY_H
#define SUBMITD_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_LINE_MAX 512      /* octets, CRLF included */

/* One line of the token reply, CRLF-terminated, into out (at least
 * SMTP_REPLY_LINE_MAX + 1 octets, NUL-terminated):
 *   "250-2.1.13 <address> TOKEN"         (more lines follow)
 *   "250 2.1.13 <address> TOKEN Saved"   (the last line: the sender's copy)
 * "<address> " is left out when it would push the line over the limit.
 * Returns the line length, or 0 if even the token alone does not fit. */
size_t smtp_reply_token_line(char *out, bool last, const char *address, const char *token);

/* The reply when tokens are off: "250 2.0.0 <id> Saved". */
size_t smtp_reply_saved_line(char *out, const char *public_id);

#endif
