/*
 * line.c: see line.h.
 */
#include "server/base/line.h"

#include <stdio.h>

size_t
line_vformat(char *buf, size_t cap, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, cap - 2, fmt, ap);

	if (n < 0)
		return 0;
	if ((size_t)n > cap - 3)
		n = (int)(cap - 3);
	buf[n++] = '\r';
	buf[n++] = '\n';
	buf[n] = '\0';
	return (size_t)n;
}

size_t
line_format(char *buf, size_t cap, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = line_vformat(buf, cap, fmt, ap);
	va_end(ap);
	return n;
}
