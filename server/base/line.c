/*
 * line.c: see line.h.
 */
#include "server/base/line.h"

#include <stdbool.h>
#include <stdio.h>

/* whole: refuse what does not fit instead of cutting it */
static size_t
format(char *buf, size_t cap, bool whole, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, cap - 2, fmt, ap);

	if (n < 0 || (whole && (size_t)n > cap - 3))
		return 0;
	if ((size_t)n > cap - 3)
		n = (int)(cap - 3);
	buf[n++] = '\r';
	buf[n++] = '\n';
	buf[n] = '\0';
	return (size_t)n;
}

size_t
line_vformat(char *buf, size_t cap, const char *fmt, va_list ap)
{
	return format(buf, cap, false, fmt, ap);
}

size_t
line_vformat_whole(char *buf, size_t cap, const char *fmt, va_list ap)
{
	return format(buf, cap, true, fmt, ap);
}
