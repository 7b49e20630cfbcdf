/*
 * peers.h: the other nodes of a cluster (cluster.peers = NAME=URL, ...):
 * each node's name, which is the issuer (`iss`) of its tokens, and the
 * base URL of its verification API. Parsed once, when the configuration
 * is read; pure and bounded (docs/config.md, docs/cluster.md).
 */
#ifndef SUBMITD_PEERS_H
#define SUBMITD_PEERS_H

#include <stdbool.h>
#include <stddef.h>

#define PEERS_MAX      64    /* nodes besides this one */
#define PEER_NAME_MAX  64    /* as TOKEN_ISSUER_MAX */
#define PEER_URL_MAX   256
#define PEER_HOST_MAX  255

struct peer {
	char name[PEER_NAME_MAX + 1];
	char url[PEER_URL_MAX + 1];      /* "http://host:port/prefix", without the trailing "/" */
	char host[PEER_HOST_MAX + 1];    /* without the brackets of an IPv6 literal */
	int port;                        /* 80 when the URL names none */
	char prefix[PEER_URL_MAX + 1];   /* the path before /v1/..., "" or "/a/b" */
};

struct peer_list {
	struct peer *v;
	size_t n;
};

/* A node name: 1 to 64 printable ASCII characters, no space, no quote or
 * backslash (the syntax of tokens.issuer). */
bool peer_name_ok(const char *s, size_t len);

/* Parse "NAME=URL, NAME=URL" (commas, blanks around items; "" is empty).
 * URLs: http://HOST[:PORT][/PREFIX] with HOST a name, an IPv4 address or
 * [IPv6]; no user, query or fragment. Names are unique. 0, or -1 with the
 * 1-based position of the first bad item in *pos_r and why in why
 * (whylen); l is then empty. */
int peer_list_parse(const char *s, struct peer_list *l, size_t *pos_r, char *why, size_t whylen);
void peer_list_free(struct peer_list *l);
/* The peer called name, or NULL. */
const struct peer *peer_list_find(const struct peer_list *l, const char *name);

#endif
