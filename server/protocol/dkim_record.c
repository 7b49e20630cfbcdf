/*
 * dkim_record.c: see dkim_record.h. Every piece the record is made of is
 * checked to be a plain printable word, so the line can be pasted into a
 * zone file as it is.
 */
#include "server/protocol/dkim_record.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool
plain(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (*s <= ' ' || *s >= 0x7f || *s == '"' || *s == '\\' || *s == ';')
			return false;
	}
	return true;
}

size_t
dkim_record_format(const char *selector, const char *domain, const char *keytype, const char *public_b64,
    char *out, size_t outlen)
{
	char text[8192];
	size_t o, tlen;
	int n;

	if (!plain(selector) || !plain(domain) || !plain(keytype) || !plain(public_b64))
		return 0;
	n = snprintf(text, sizeof(text), "v=DKIM1; k=%s; p=%s", keytype, public_b64);
	if (n < 0 || (size_t)n >= sizeof(text))
		return 0;
	tlen = (size_t)n;
	n = snprintf(out, outlen, "%s._domainkey.%s%s IN TXT", selector, domain,
	    domain[strlen(domain) - 1] == '.' ? "" : ".");
	if (n < 0 || (size_t)n >= outlen)
		return 0;
	o = (size_t)n;
	for (size_t off = 0; off < tlen; off += DKIM_RECORD_STRING_MAX) {
		size_t piece = tlen - off < DKIM_RECORD_STRING_MAX ? tlen - off : DKIM_RECORD_STRING_MAX;
		if (o + piece + 4 >= outlen)
			return 0;
		out[o++] = ' ';
		out[o++] = '"';
		memcpy(out + o, text + off, piece);
		o += piece;
		out[o++] = '"';
	}
	out[o] = '\0';
	return o;
}
