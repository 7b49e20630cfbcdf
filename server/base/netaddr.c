/*
 * netaddr.c: see netaddr.h. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d)
 * are matched as IPv4, since a dual-stack listener reports them that way.
 */
#include "server/base/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/util.h"

int
netaddr_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len_r)
{
	char host[64];
	const char *colon, *hs = s;
	size_t hl;
	char *end;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL || rb[1] != ':')
			return -1;
		hs = s + 1;
		hl = (size_t)(rb - hs);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
		return -1;
	if (*s != '[') {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
	}
	return 0;
}

static int
cidr_parse_one(const char *item, struct cidr *c)
{
	char buf[64];
	char *slash, *end;
	long prefix;

	if (strlen(item) >= sizeof(buf))
		return -1;
	strcpy(buf, item);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1) {
		c->family = AF_INET;
		c->prefix = 32;
	} else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
		c->family = AF_INET6;
		c->prefix = 128;
	} else {
		return -1;
	}
	if (slash) {
		prefix = strtol(slash + 1, &end, 10);
		if (*end != '\0' || end == slash + 1 || prefix < 0 || prefix > (long)c->prefix)
			return -1;
		c->prefix = (unsigned)prefix;
	}
	return 0;
}

/* What separates the items of every address list. */
#define LIST_SEP ", \t"

/*
 * Call parse on each item of a list, in order. Items longer than any
 * address are refused without a call. 0, or -1 with the item's 1-based
 * position and its text, as the list parsers promise.
 */
static int
list_each(const char *s, int (*parse)(const char *item, void *arg), void *arg, size_t *pos_r,
    char *bad, size_t badlen)
{
	char item[128];
	size_t pos = 0, n;

	for (s += strspn(s, LIST_SEP); *s != '\0'; s += n, s += strspn(s, LIST_SEP)) {
		n = strcspn(s, LIST_SEP);
		pos++;
		if (n < sizeof(item)) {
			memcpy(item, s, n);
			item[n] = '\0';
			if (parse(item, arg) == 0)
				continue;
		}
		*pos_r = pos;
		snprintf(bad, badlen, "%.*s", (int)n, s);
		return -1;
	}
	return 0;
}

static int
listen_add(const char *item, void *arg)
{
	struct netaddr_listen_list *l = arg;
	struct netaddr_listen a;

	if (strlen(item) >= sizeof(a.text) || netaddr_parse_listen(item, &a.ss, &a.len) == -1)
		return -1;
	strcpy(a.text, item);
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = a;
	return 0;
}

int
netaddr_listen_list_parse(const char *s, struct netaddr_listen_list *l, size_t *pos_r, char *bad, size_t badlen)
{
	l->v = NULL;
	l->n = 0;
	if (list_each(s, listen_add, l, pos_r, bad, badlen) == -1) {
		netaddr_listen_list_free(l);
		return -1;
	}
	return 0;
}

void
netaddr_listen_list_free(struct netaddr_listen_list *l)
{
	xfreep(&l->v);
	l->n = 0;
}

static int
cidr_add(const char *item, void *arg)
{
	struct cidr_list *l = arg;
	struct cidr c;

	if (cidr_parse_one(item, &c) == -1)
		return -1;
	l->v = xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
	l->v[l->n++] = c;
	return 0;
}

int
cidr_list_parse(const char *s, struct cidr_list *l, size_t *pos_r, char *bad, size_t badlen)
{
	l->v = NULL;
	l->n = 0;
	if (list_each(s, cidr_add, l, pos_r, bad, badlen) == -1) {
		cidr_list_free(l);
		return -1;
	}
	return 0;
}

void
cidr_list_free(struct cidr_list *l)
{
	xfreep(&l->v);
	l->n = 0;
}

/* Reduce sa to family + raw bytes, unwrapping IPv4-mapped IPv6. */
static int
sa_bytes(const struct sockaddr *sa, unsigned char out[16])
{
	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			memcpy(out, a->s6_addr + 12, 4);
			return AF_INET;
		}
		memcpy(out, a->s6_addr, 16);
		return AF_INET6;
	}
	return -1;
}

static bool
prefix_match(const unsigned char *a, const unsigned char *b, unsigned prefix)
{
	unsigned full = prefix / 8, rest = prefix % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

bool
cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa)
{
	unsigned char b[16];
	int fam = sa_bytes(sa, b);

	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].family == fam && prefix_match(l->v[i].addr, b, l->v[i].prefix))
			return true;
	return false;
}

bool
netaddr_is_loopback(const struct sockaddr *sa)
{
	unsigned char b[16];
	int fam = sa_bytes(sa, b);

	if (fam == AF_INET)
		return b[0] == 127;
	if (fam == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)b);
	return sa->sa_family == AF_UNIX;
}

void
netaddr_text(const struct sockaddr *sa, char *out, size_t outlen)
{
	unsigned char b[16];
	int fam = sa_bytes(sa, b);

	if (fam == -1 || inet_ntop(fam, b, out, (socklen_t)outlen) == NULL)
		snprintf(out, outlen, "unknown");
}
