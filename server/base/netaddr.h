/*
 * netaddr.h: listen addresses ("127.0.0.1:587", "[::1]:587") and CIDR
 * lists ("127.0.0.0/8, ::1/128") for trusted networks. Pure parsing.
 */
#ifndef SUBMITD_NETADDR_H
#define SUBMITD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Parse "host:port" or "[v6]:port" (numeric hosts only) into ss. 0 or -1. */
int netaddr_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len_r);

struct cidr {
	int family;            /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct cidr_list {
	struct cidr *v;
	size_t n;
};

/* Parse a comma/space separated list; "" is an empty list. 0, or -1 with
 * the offending item copied to bad (badlen). */
int cidr_list_parse(const char *s, struct cidr_list *l, char *bad, size_t badlen);
void cidr_list_free(struct cidr_list *l);
bool cidr_list_match(const struct cidr_list *l, const struct sockaddr *sa);

bool netaddr_is_loopback(const struct sockaddr *sa);
/* Numeric text of the address without the port. */
void netaddr_text(const struct sockaddr *sa, char *out, size_t outlen);

#endif
