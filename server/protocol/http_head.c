/*
 * http_head.c: the request head checker (see http_head.h). One complete
 * line at a time: the request line (RFC 9112 3), then field lines (RFC
 * 9112 5) up to the empty line. What is refused, and why it has to be:
 * libevent 2.1 answers its own refusals in HTML, so anything its parser
 * would refuse (a request line that does not split in three, a version
 * other than HTTP/1.x, an unknown method, a field line without a colon, a
 * Content-Length that is not a number, an Expect other than 100-continue)
 * must be refused here; and anything that could make libevent and this
 * checker disagree on where a request ends (obs-fold, Transfer-Encoding,
 * two Content-Lengths, a bare CR, a NUL) is refused too.
 */
#include "server/protocol/http_head.h"

#include <string.h>
#include <strings.h>

void
http_head_init(struct http_head *h)
{
	memset(h, 0, sizeof(*h));
}

/* RFC 9110 5.6.2 tchar */
static bool
is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 path and query characters (pchar, "/", "?"); % must start a
 * pct-encoding. Returns the octets of s[0 .. n) that form such a run. */
static size_t
path_span(const char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c != '\0' && strchr("-._~!$&'()*+,;=:@/?", c) != NULL))
			i++;
		else if (c == '%' && i + 2 < n && is_hex((unsigned char)s[i + 1]) && is_hex((unsigned char)s[i + 2]))
			i += 3;
		else
			break;
	}
	return i;
}

/* origin-form, not starting with "//" (libevent would read an authority) */
static bool
origin_form_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] != '/' || (n > 1 && s[1] == '/'))
		return false;
	return path_span(s, n) == n;
}

/* absolute-form, http or https, host name or IPv4 address, port 0-65535:
 * what libevent's URI parser takes without a doubt. */
static bool
absolute_form_ok(const char *s, size_t n)
{
	size_t i, host;

	if (n > 7 && strncasecmp(s, "http://", 7) == 0)
		i = 7;
	else if (n > 8 && strncasecmp(s, "https://", 8) == 0)
		i = 8;
	else
		return false;
	host = i;
	while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
	    (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.'))
		i++;
	if (i == host)
		return false;
	if (i < n && s[i] == ':') {
		unsigned long port = 0;
		size_t digits = 0;
		for (i++; i < n && s[i] >= '0' && s[i] <= '9' && digits < 6; i++, digits++)
			port = port * 10 + (unsigned long)(s[i] - '0');
		if (digits == 0 || digits > 5 || port > 65535)
			return false;
	}
	if (i == n)
		return true;
	return s[i] == '/' && path_span(s + i, n - i) == n - i;
}

static const struct {
	const char *name;
	size_t len;
	enum http_method m;
} methods[] = {
	{ "GET", 3, HTTP_M_GET }, { "HEAD", 4, HTTP_M_HEAD }, { "POST", 4, HTTP_M_POST },
	{ "PUT", 3, HTTP_M_PUT }, { "DELETE", 6, HTTP_M_DELETE }, { "OPTIONS", 7, HTTP_M_OPTIONS },
	{ "PATCH", 5, HTTP_M_PATCH }, { "TRACE", 5, HTTP_M_TRACE },
};

const char *
http_method_name(enum http_method m)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (methods[i].m == m)
			return methods[i].name;
	return "";
}

/* RFC 9112 3: method SP request-target SP HTTP-version */
static enum http_head_status
request_line(struct http_head *h, const char *s, size_t n)
{
	const char *sp1 = memchr(s, ' ', n), *sp2, *target, *v;
	size_t mlen, tlen;

	if (sp1 == NULL || sp1 == s) {
		h->why = "malformed request line";
		return HTTP_HEAD_BAD;
	}
	mlen = (size_t)(sp1 - s);
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)s[i])) {
			h->why = "malformed request line";
			return HTTP_HEAD_BAD;
		}
	target = sp1 + 1;
	sp2 = memchr(target, ' ', n - mlen - 1);
	if (sp2 == NULL) {
		/* "GET /path": RFC 1945's HTTP/0.9 simple request */
		h->why = "request line without an HTTP version (HTTP/0.9 is not served)";
		return HTTP_HEAD_BAD;
	}
	tlen = (size_t)(sp2 - target);
	v = sp2 + 1;
	if ((size_t)(s + n - v) != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
	    v[6] != '.' || v[7] < '0' || v[7] > '9') {
		h->why = "malformed request line";
		return HTTP_HEAD_BAD;
	}
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (methods[i].len == mlen && memcmp(methods[i].name, s, mlen) == 0)
			h->method = methods[i].m;
	if (h->method == HTTP_M_NONE) {
		/* CONNECT too: it asks for a tunnel, which no resource here is */
		h->why = "method not implemented";
		return HTTP_HEAD_METHOD;
	}
	if (!(tlen == 1 && target[0] == '*' && h->method == HTTP_M_OPTIONS) &&
	    !origin_form_ok(target, tlen) && !absolute_form_ok(target, tlen)) {
		h->why = "malformed request target";
		return HTTP_HEAD_BAD;
	}
	if (v[5] != '1') {
		h->why = "only HTTP/1.0 and HTTP/1.1 are served";
		return HTTP_HEAD_VERSION;
	}
	h->minor = (unsigned)(v[7] - '0');
	return HTTP_HEAD_MORE;
}

static bool
name_is(const char *s, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

/* RFC 9112 5: field-name ":" OWS field-value OWS */
static enum http_head_status
field_line(struct http_head *h, const char *s, size_t n, const struct http_head_limits *lim)
{
	const char *colon = memchr(s, ':', n), *v, *e;
	size_t nlen;

	if (s[0] == ' ' || s[0] == '\t') {
		/* RFC 9112 5.2: obs-fold is refused, not joined */
		h->why = "folded header field";
		return HTTP_HEAD_BAD;
	}
	if (colon == NULL || colon == s) {
		h->why = "malformed header field";
		return HTTP_HEAD_BAD;
	}
	nlen = (size_t)(colon - s);
	for (size_t i = 0; i < nlen; i++)
		if (!is_tchar((unsigned char)s[i])) {
			h->why = "malformed header field";
			return HTTP_HEAD_BAD;
		}
	v = colon + 1;
	e = s + n;
	for (const char *p = v; p < e; p++) {
		unsigned char c = (unsigned char)*p;
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			h->why = "control character in a header field";
			return HTTP_HEAD_BAD;
		}
	}
	while (v < e && (*v == ' ' || *v == '\t'))
		v++;
	while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
		e--;

	if (name_is(s, nlen, "Content-Length")) {
		uint64_t len = 0;
		if (h->have_length || v == e) {
			h->why = h->have_length ? "more than one Content-Length" : "malformed Content-Length";
			return HTTP_HEAD_BAD;
		}
		h->have_length = true;
		for (const char *p = v; p < e; p++) {
			if (*p < '0' || *p > '9') {
				h->why = "malformed Content-Length";
				return HTTP_HEAD_BAD;
			}
			/* once over the limit, the rest of the digits change nothing */
			if (len <= lim->max_body)
				len = len * 10 + (uint64_t)(*p - '0');
		}
		if (len > lim->max_body) {
			h->why = "request body too large";
			return HTTP_HEAD_BODY_TOO_LARGE;
		}
		h->body_len = len;
	} else if (name_is(s, nlen, "Transfer-Encoding")) {
		h->why = "Transfer-Encoding is not accepted: send the body with a Content-Length";
		return HTTP_HEAD_NO_LENGTH;
	} else if (name_is(s, nlen, "Expect") && h->minor >= 1) {
		/* libevent answers any other expectation with its own 417, and
		 * skips only spaces before the value, not tabs */
		const char *sp = colon + 1;
		while (sp < e && *sp == ' ')
			sp++;
		if (sp != v || !((size_t)(e - v) == 12 && strncasecmp(v, "100-continue", 12) == 0)) {
			h->why = "only the expectation 100-continue is met";
			return HTTP_HEAD_BAD_EXPECT;
		}
	}
	return HTTP_HEAD_MORE;
}

static enum http_head_status
one_line(struct http_head *h, const char *s, size_t n, const struct http_head_limits *lim)
{
	if (memchr(s, '\0', n) != NULL || memchr(s, '\r', n) != NULL) {
		h->why = h->lines == 0 ? "malformed request line" : "control character in a header field";
		return HTTP_HEAD_BAD;
	}
	if (h->lines++ == 0)
		return request_line(h, s, n);
	return field_line(h, s, n, lim);
}

enum http_head_status
http_head_parse(struct http_head *h, const char *buf, size_t len, const struct http_head_limits *lim)
{
	while (h->pos < len) {
		const char *start = buf + h->pos;
		const char *nl = memchr(start, '\n', len - h->pos);
		size_t raw, n;
		enum http_head_status st;

		if (nl == NULL) {
			/* a partial line counts as far as it goes */
			n = len - h->pos;
			if (buf[len - 1] == '\r')
				n--;
			if (h->counted + n > lim->max_head) {
				h->why = "request header too large";
				return HTTP_HEAD_TOO_LARGE;
			}
			return HTTP_HEAD_MORE;
		}
		raw = (size_t)(nl - start) + 1;
		n = raw - 1;
		if (n > 0 && start[n - 1] == '\r')
			n--;
		h->pos += raw;
		if (n == 0 && h->lines == 0) {
			/* RFC 9112 2.2: empty lines before the request line are
			 * ignored; their octets count, so they cannot go on */
			h->skip += raw;
			h->counted += raw;
			if (h->counted > lim->max_head) {
				h->why = "request header too large";
				return HTTP_HEAD_TOO_LARGE;
			}
			continue;
		}
		h->counted += n;
		if (h->counted > lim->max_head) {
			h->why = "request header too large";
			return HTTP_HEAD_TOO_LARGE;
		}
		if (n == 0) {
			h->len = h->pos - h->skip;
			if (h->method == HTTP_M_HEAD || h->method == HTTP_M_TRACE)
				h->body_len = 0;
			return HTTP_HEAD_OK;
		}
		st = one_line(h, start, n, lim);
		if (st != HTTP_HEAD_MORE)
			return st;
	}
	return HTTP_HEAD_MORE;
}

int
http_head_status_code(enum http_head_status s)
{
	switch (s) {
	case HTTP_HEAD_TOO_LARGE: return 431;
	case HTTP_HEAD_BODY_TOO_LARGE: return 413;
	case HTTP_HEAD_NO_LENGTH: return 411;
	case HTTP_HEAD_BAD_EXPECT: return 417;
	case HTTP_HEAD_METHOD: return 501;
	case HTTP_HEAD_VERSION: return 505;
	case HTTP_HEAD_BAD: return 400;
	case HTTP_HEAD_MORE:
	case HTTP_HEAD_OK:
		break;
	}
	return 400;
}

const char *
http_head_reason(enum http_head_status s)
{
	switch (s) {
	case HTTP_HEAD_TOO_LARGE: return "Request Header Fields Too Large";
	case HTTP_HEAD_BODY_TOO_LARGE: return "Payload Too Large";
	case HTTP_HEAD_NO_LENGTH: return "Length Required";
	case HTTP_HEAD_BAD_EXPECT: return "Expectation Failed";
	case HTTP_HEAD_METHOD: return "Not Implemented";
	case HTTP_HEAD_VERSION: return "HTTP Version Not Supported";
	case HTTP_HEAD_BAD:
	case HTTP_HEAD_MORE:
	case HTTP_HEAD_OK:
		break;
	}
	return "Bad Request";
}
