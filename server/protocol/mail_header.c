/*
 * mail_header.c: see mail_header.h. The From: parser is deliberately
 * narrow: it finds one addr-spec (inside angle brackets when there are
 * some, RFC 5322 3.4), skipping quoted strings and comments, and refuses
 * anything else; a message it refuses simply goes unsigned.
 */
#include "server/protocol/mail_header.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

int
mail_header_field(const char *head, size_t len, const char *name, char *out, size_t outlen,
    unsigned *count_r)
{
	size_t i = 0, n = strlen(name);
	unsigned count = 0;
	int found = -1;

	while (i < len) {
		size_t eol = i;
		while (eol < len && head[eol] != '\n')
			eol++;
		size_t linelen = eol - i - (eol > i && head[eol - 1] == '\r');
		if (linelen == 0)
			break;   /* the end of the header */
		if (linelen > n && head[i + n] == ':' && strncasecmp(head + i, name, n) == 0 && count++ == 0) {
			size_t o = 0, k = i + n + 1;
			bool fits = outlen > 0;
			/* the value, with its continuation lines unfolded */
			for (;;) {
				for (; k < eol && fits; k++) {
					char c = head[k];
					if (c == '\r' || c == '\0')
						continue;
					if ((c == ' ' || c == '\t') && (o == 0 || out[o - 1] == ' '))
						continue;
					if (o + 1 >= outlen) {
						fits = false;
						break;
					}
					out[o++] = c == '\t' ? ' ' : c;
				}
				if (eol + 1 < len && (head[eol + 1] == ' ' || head[eol + 1] == '\t')) {
					k = eol + 1;
					eol = k;
					while (eol < len && head[eol] != '\n')
						eol++;
					if (fits && o > 0 && out[o - 1] != ' ' && o + 1 < outlen)
						out[o++] = ' ';
					continue;
				}
				break;
			}
			while (o > 0 && out[o - 1] == ' ')
				o--;
			if (fits) {
				out[o] = '\0';
				found = (int)o;
			}
			i = eol + 1;
			if (count_r == NULL)
				break;
			continue;
		}
		i = eol + 1;
	}
	if (count_r)
		*count_r = count;
	return found;
}

/* v without its comments and quoted strings (each quoted string becomes
 * one 'q', enough to tell a display name from an address): into out,
 * NUL-terminated. -1 on an unbalanced quote or parenthesis. */
static int
strip_cfws(const char *v, char *out)
{
	size_t o = 0;
	int depth = 0;
	bool quoted = false;

	for (const char *p = v; *p; p++) {
		if (*p == '\\' && (quoted || depth > 0)) {
			if (p[1] == '\0')
				return -1;
			p++;
			continue;
		}
		if (quoted) {
			if (*p == '"')
				quoted = false;
			continue;
		}
		if (depth > 0) {
			depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
			continue;
		}
		if (*p == '(') {
			depth = 1;
			out[o++] = ' ';
		} else if (*p == '"') {
			quoted = true;
			out[o++] = 'q';
		} else {
			out[o++] = *p;
		}
	}
	out[o] = '\0';
	return quoted || depth > 0 ? -1 : 0;
}

int
mail_header_from_domain(const char *head, size_t len, char *out, size_t outlen)
{
	char v[1024], s[1024];
	const char *spec, *end, *at;
	unsigned count;
	size_t n;

	if (mail_header_field(head, len, "From", v, sizeof(v), &count) <= 0 || count != 1)
		return -1;
	if (strip_cfws(v, s) == -1 || strchr(s, ',') || strchr(s, ':') || strchr(s, ';'))
		return -1;
	if ((spec = strchr(s, '<')) != NULL) {
		spec++;
		end = strchr(spec, '>');
		if (end == NULL || strchr(spec, '<') || strchr(end + 1, '<') || strchr(end + 1, '>'))
			return -1;
	} else {
		if (strchr(s, '>'))
			return -1;
		spec = s;
		end = s + strlen(s);
	}
	while (spec < end && *spec == ' ')
		spec++;
	while (end > spec && end[-1] == ' ')
		end--;
	at = memchr(spec, '@', (size_t)(end - spec));
	if (at == NULL || at == spec || memchr(spec, ' ', (size_t)(end - spec)))
		return -1;
	for (const char *p = at + 1; p < end; p++) {
		if (*p == '@')
			return -1;
	}
	n = (size_t)(end - (at + 1));
	if (n == 0 || n + 1 > outlen)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char c = at[1 + i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return -1;
		out[i] = c;
	}
	out[n] = '\0';
	if (out[0] == '.' || out[n - 1] == '.')
		return -1;
	return 0;
}

int
mail_header_message_id(const char *head, size_t len, char *out, size_t outlen)
{
	char v[MAIL_MSGID_MAX + 8];
	unsigned count;
	const char *at;
	int n;
	size_t id;

	/* unfolded, white space collapsed and trimmed: "<id>" is the whole
	 * value of a plain field, whatever its folding */
	n = mail_header_field(head, len, "Message-ID", v, sizeof(v), &count);
	if (n < 3 || count != 1 || v[0] != '<' || v[n - 1] != '>')
		return -1;
	id = (size_t)n - 2;
	if (id + 1 > outlen || id > MAIL_MSGID_MAX)
		return -1;
	for (size_t i = 1; i <= id; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c <= ' ' || c >= 0x7f || c == '<' || c == '>')
			return -1;
	}
	at = memchr(v + 1, '@', id);
	if (at == NULL || at == v + 1 || at == v + id)
		return -1;
	memcpy(out, v + 1, id);
	out[id] = '\0';
	return (int)id;
}
