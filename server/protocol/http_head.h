/*
 * http_head.h: the checker of an HTTP/1.x request head (request line and
 * header fields, RFC 9112 sections 2 to 6) that the verification API runs
 * on the raw octets before libevent's parser sees them, so that every
 * request libevent would refuse itself (with an HTML page) is refused here
 * first and answered in JSON. Pure and bounded: octets and limits in, a
 * verdict out; no socket, no allocation.
 *
 * The checker is stricter than libevent's parser on purpose: whatever it
 * accepts, libevent parses, and both agree on where the head ends and how
 * long the body is (so the caller can skip the body and find the next head
 * of a keep-alive connection). It is incremental: the caller keeps the
 * octets of the head in one buffer, appends what arrives and calls
 * http_head_parse again; complete lines are looked at once.
 */
#ifndef SUBMITD_HTTP_HEAD_H
#define SUBMITD_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_head_status {
	HTTP_HEAD_MORE,          /* no end yet, within the limit */
	HTTP_HEAD_OK,            /* a complete head: see struct http_head */
	HTTP_HEAD_BAD,           /* 400: malformed request line or field */
	HTTP_HEAD_TOO_LARGE,     /* 431: over max_head (RFC 6585 section 5) */
	HTTP_HEAD_BODY_TOO_LARGE,/* 413: Content-Length over max_body */
	HTTP_HEAD_NO_LENGTH,     /* 411: Transfer-Encoding (no chunked bodies) */
	HTTP_HEAD_BAD_EXPECT,    /* 417: an expectation other than 100-continue */
	HTTP_HEAD_METHOD,        /* 501: a method libevent does not serve */
	HTTP_HEAD_VERSION,       /* 505: not HTTP/1.0 or HTTP/1.1 */
};

enum http_method {
	HTTP_M_NONE, HTTP_M_GET, HTTP_M_HEAD, HTTP_M_POST, HTTP_M_PUT,
	HTTP_M_DELETE, HTTP_M_OPTIONS, HTTP_M_PATCH, HTTP_M_TRACE,
};

struct http_head_limits {
	size_t max_head;         /* octets of request line + fields, line ends excluded */
	uint64_t max_body;       /* largest Content-Length */
};

/* Zero it (http_head_init) before the first call for each head. */
struct http_head {
	/* progress (the caller does not touch these) */
	size_t pos;              /* octets of buf looked at: complete lines */
	size_t counted;          /* what counts against max_head so far */
	unsigned lines;          /* lines of the head seen (the request line is 1) */
	bool have_length;
	/* the verdict */
	size_t skip;             /* empty lines before the request line, dropped (RFC 9112 2.2) */
	size_t len;              /* HTTP_HEAD_OK: the head is buf[skip .. skip + len), its empty line included */
	enum http_method method;
	unsigned minor;          /* HTTP/1.minor */
	uint64_t body_len;       /* octets of body that follow the head (0 for HEAD and TRACE, as libevent reads none) */
	const char *why;         /* refusals: what was wrong, a static string */
};

void http_head_init(struct http_head *h);

/* Look at buf[0 .. len) (the octets received so far for this head; buf
 * only grows between calls). HTTP_HEAD_MORE: call again with more. Any
 * other result is final for this head. */
enum http_head_status http_head_parse(struct http_head *h, const char *buf, size_t len,
    const struct http_head_limits *lim);

/* The status code and reason phrase for a result other than MORE and OK. */
int http_head_status_code(enum http_head_status s);
const char *http_head_reason(enum http_head_status s);
const char *http_method_name(enum http_method m);

#endif
