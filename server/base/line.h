/*
 * line.h: one protocol line from a printf format: the text, cut to fit,
 * then CRLF. The SMTP session's replies, the relay's SMTP commands and
 * the filer's IMAP commands are all written this way, so a line can never
 * lose its CRLF to truncation, and an over-long line is cut (or refused)
 * in one place.
 */
#ifndef SUBMITD_LINE_H
#define SUBMITD_LINE_H

#include <stdarg.h>
#include <stddef.h>

/* Format into buf (cap >= 3 octets) and end with CRLF. The text is cut to
 * cap - 3 octets; buf is NUL-terminated after the CRLF. Returns the
 * length including the CRLF, or 0 when the format itself failed. */
size_t line_vformat(char *buf, size_t cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* The same for a line that must go out whole or not at all (a command
 * whose cut argument would mean something else): 0 when it does not fit. */
size_t line_vformat_whole(char *buf, size_t cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
