/*
 * peers.c: the parser of cluster.peers (peers.h). It runs once, on the
 * configuration's text, but that text may come from -o on a command line,
 * so it is bounded like any other input: so many items, so long a name,
 * so long a URL, each checked before it is copied.
 */
#include "server/base/peers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/util.h"

bool
peer_name_ok(const char *s, size_t len)
{
	if (len < 1 || len > PEER_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\')
			return false;
	return true;
}

static bool
host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* Path characters of a prefix: unreserved and sub-delims of RFC 3986
 * 2.2/2.3 and "/", nothing that would need escaping in a Location. */
static bool
path_char(char c)
{
	return host_char(c) || c == '_' || c == '~' || c == '/' || c == '!' || c == '$' || c == '&' ||
	    c == '\'' || c == '(' || c == ')' || c == '*' || c == '+' || c == ';' || c == '=' || c == ':' || c == '@';
}

/* One URL (len octets at u) into p. NULL, or why not. */
static const char *
parse_url(const char *u, size_t len, struct peer *p)
{
	const char *end = u + len, *h, *hend, *q;
	long port = 80;

	if (len > PEER_URL_MAX)
		return "URL too long";
	if (len < 8 || strncmp(u, "http://", 7) != 0)
		return "URL must begin with http://";
	h = u + 7;
	if (h < end && *h == '[') {
		hend = memchr(h, ']', (size_t)(end - h));
		if (hend == NULL || hend == h + 1)
			return "bad IPv6 literal";
		for (q = h + 1; q < hend; q++)
			if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') || (*q >= 'A' && *q <= 'F') ||
			    *q == ':' || *q == '.'))
				return "bad IPv6 literal";
		memcpy(p->host, h + 1, (size_t)(hend - h - 1));
		p->host[hend - h - 1] = '\0';
		q = hend + 1;
	} else {
		for (q = h; q < end && host_char(*q); q++)
			;
		if (q == h)
			return "no host";
		if (q < end && *q != ':' && *q != '/')
			return "bad character in host (no user, query or fragment)";
		memcpy(p->host, h, (size_t)(q - h));
		p->host[q - h] = '\0';
	}
	if (q < end && *q == ':') {
		const char *d = ++q;
		port = 0;
		for (; q < end && *q >= '0' && *q <= '9' && q - d < 6; q++)
			port = port * 10 + (*q - '0');
		if (q == d || port < 1 || port > 65535)
			return "bad port";
	}
	if (q < end && *q != '/')
		return "bad character after the host";
	/* The prefix, without a trailing "/": paths are appended to it. */
	while (end > q && end[-1] == '/')
		end--;
	for (const char *c = q; c < end; c++)
		if (!path_char(*c))
			return "bad character in path (no query or fragment)";
	memcpy(p->prefix, q, (size_t)(end - q));
	p->prefix[end - q] = '\0';
	p->port = (int)port;
	memcpy(p->url, u, (size_t)(end - u));
	p->url[end - u] = '\0';
	return NULL;
}

void
peer_list_free(struct peer_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

const struct peer *
peer_list_find(const struct peer_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].name, name) == 0)
			return &l->v[i];
	return NULL;
}

static bool
blank(char c)
{
	return c == ' ' || c == '\t';
}

int
peer_list_parse(const char *s, struct peer_list *l, size_t *pos_r, char *why, size_t whylen)
{
	size_t pos = 0;
	const char *err = NULL;

	l->v = NULL;
	l->n = 0;
	*pos_r = 0;
	why[0] = '\0';
	while (*s) {
		const char *item, *iend, *eq;
		struct peer p;

		while (blank(*s) || *s == ',')
			s++;
		if (*s == '\0')
			break;
		pos++;
		item = s;
		while (*s && *s != ',')
			s++;
		iend = s;
		while (iend > item && blank(iend[-1]))
			iend--;
		memset(&p, 0, sizeof(p));
		eq = memchr(item, '=', (size_t)(iend - item));
		if (l->n == PEERS_MAX)
			err = "too many peers (at most 64)";
		else if (eq == NULL)
			err = "expected NAME=URL";
		else if (!peer_name_ok(item, (size_t)(eq - item)))
			err = "bad node name (1 to 64 printable characters, no spaces or quotes)";
		else
			err = parse_url(eq + 1, (size_t)(iend - eq - 1), &p);
		if (err == NULL) {
			memcpy(p.name, item, (size_t)(eq - item));
			if (peer_list_find(l, p.name) != NULL)
				err = "node named twice";
		}
		if (err != NULL) {
			snprintf(why, whylen, "%s", err);
			*pos_r = pos;
			peer_list_free(l);
			return -1;
		}
		if (l->n == 0)
			l->v = xcalloc(PEERS_MAX, sizeof(*l->v));
		l->v[l->n++] = p;
	}
	return 0;
}
