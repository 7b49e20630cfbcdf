/*
 * proxy_header.h: the PROXY protocol header a load balancer (HAProxy's
 * send-proxy and send-proxy-v2) puts in front of a TCP connection to say
 * who the client is: version 1 (one text line) and version 2 (binary), as
 * HAProxy's proxy-protocol.txt specifies them. Pure and bounded: bytes in,
 * "need more", "complete" or "invalid" out; never a socket.
 */
#ifndef SUBMITD_PROXY_HEADER_H
#define SUBMITD_PROXY_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* proxy-protocol.txt 2.1: a v1 header is at most 107 octets, CRLF included. */
#define PROXY_V1_MAX 107
/* The fixed part of a v2 header: signature, version/command, family, length. */
#define PROXY_V2_FIXED 16
/* The v2 signature (proxy-protocol.txt 2.2). */
#define PROXY_V2_SIG "\r\n\r\n\0\r\nQUIT\n"
#define PROXY_V2_SIG_LEN 12

enum proxy_header_result {
	PROXY_HEADER_MORE,      /* a prefix of a header: read on */
	PROXY_HEADER_OK,        /* complete; *consumed_r octets are the header */
	PROXY_HEADER_BAD,       /* not a header, or one we refuse: *why_r says which */
};

enum proxy_header_command {
	PROXY_CMD_PROXY,        /* src and dst hold the client's and the proxy's addresses */
	PROXY_CMD_LOCAL,        /* v2 LOCAL: the proxy's own connection (a health check) */
	PROXY_CMD_UNKNOWN,      /* v1 UNKNOWN, v2 PROXY with AF_UNSPEC: no address given */
};

struct proxy_header {
	int version;                    /* 1 or 2 */
	enum proxy_header_command command;
	struct sockaddr_storage src, dst;  /* PROXY_CMD_PROXY only; ports included */
	socklen_t src_len, dst_len;
	size_t tlv_len;                 /* v2: octets of TLVs skipped */
};

/*
 * Parse the octets a connection has sent so far (buf, len). A v2 header
 * longer than max octets in all (addresses and TLVs) is refused as soon as
 * its length field is read; a v1 header is bounded by PROXY_V1_MAX. Only
 * TCP over IPv4 or IPv6 is accepted (UNIX sockets and datagrams are
 * refused). On OK, *h is filled and *consumed_r is the header's length:
 * what follows belongs to the client. On BAD, *why_r is a short static
 * reason for the log (e.g. "bad_signature"). Never reads past buf + len.
 */
enum proxy_header_result proxy_header_parse(const unsigned char *buf, size_t len, size_t max,
    struct proxy_header *h, size_t *consumed_r, const char **why_r);

/* Does the input of a connection begin with a PROXY header (the whole v2
 * signature, or "PROXY ")? Used to refuse one from a client that may not
 * send it. */
bool proxy_header_sniff(const unsigned char *buf, size_t len);

#endif
