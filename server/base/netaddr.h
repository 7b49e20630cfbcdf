/*
 * netaddr.h: listen addresses ("127.0.0.1:587", "[::1]:587") and CIDR
 * lists ("127.0.0.0/8, ::1/128") for trusted networks. Pure parsing. Both
 * kinds of list are separated by commas, spaces or tabs, split in one place.
 */
#ifndef SUBMITD_NETADDR_H
#define SUBMITD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Parse "host:port" or "[v6]:port" (numeric hosts only) into ss. 0 or -1. */
int netaddr_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len_r);

/* Longest item netaddr_parse_listen accepts ("[" 63 octets "]:65535"),
 * with its terminator. */
#define NETADDR_LISTEN_TEXT 72

struct netaddr_listen {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[NETADDR_LISTEN_TEXT];   /* the item as written, for logs */
};

struct netaddr_listen_list {
	struct netaddr_listen *v;
	size_t n;
};

/* Parse a list of listen addresses; "" is an empty list. 0, or -1 with the
 * 1-based position of the first bad item in *pos_r and the item copied to
 * bad (badlen); l is then empty. */
int netaddr_listen_list_parse(const char *s, struct netaddr_listen_list *l, size_t *pos_r,
    char *bad, size_t badlen);
void netaddr_listen_list_free(struct netaddr_listen_list *l);

struct cidr {
	int family;            /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct cidr_list {
	struct cidr *v;
	size_t n;
};

/* Parse a list of addresses and CIDR prefixes, as
 * netaddr_listen_list_parse does. */
int cidr_list_parse(const char *s, struct cidr_list *l, size_t *pos_r, char *bad, size_t badlen);
void cidr_list_free(struct cidr_list *l);
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);

bool netaddr_is_loopback(const struct sockaddr *sa);
/* Numeric text of the address without the port. */
void netaddr_text(const struct sockaddr *sa, char *out, size_t outlen);

#endif
