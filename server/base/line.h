/*
 * line.h: one protocol line from a printf format: the text, cut to fit,
 * then CRLF. The SMTP session's replies, the relay's commands and the
 * bounce builder's lines are all written this way, so a line can never
 * lose its CRLF to truncation, and an over-long line is cut in one place.
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
size_t line_format(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
