/*
 * dsn.c: see dsn.h. The report is multipart/report with three parts
 * (RFC 3462/6522): a human explanation, message/delivery-status with one
 * per-recipient block per failure (RFC 3464 2.3), and the original header
 * block as text/rfc822-headers, so the sender can tell which message it was
 * without us sending its body back. Every line is CRLF-terminated and
 * short; reply texts from the next hop are flattened to one line.
 */
#include "server/relay/dsn.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "server/base/util.h"

struct out {
	char *p;
	size_t len, cap;
};

static void
out_add(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		while (o->len + n + 1 > o->cap)
			o->cap = o->cap ? o->cap * 2 : 4096;
		o->p = xrealloc(o->p, o->cap);
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void
out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
out_printf(struct out *o, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		out_add(o, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* One printable line of at most max octets: CR, LF and other controls
 * become spaces (a reply text must not start a header of its own). */
static void
flatten(const char *in, char *out, size_t max)
{
	size_t o = 0;

	for (; *in && o + 1 < max; in++)
		out[o++] = ((unsigned char)*in < 0x20 || *in == 0x7f) ? ' ' : *in;
	out[o] = '\0';
}

static void
rfc5322_date(int64_t t, char *out, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

void
dsn_status_of(const char *reply, char out[16])
{
	const char *p = reply;
	int a, b, c, n = 0;

	if (strstr(reply, "lifetime") != NULL) {
		snprintf(out, 16, "4.4.7");
		return;
	}
	/* skip the reply code, if any */
	if (isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
	    (p[3] == ' ' || p[3] == '-'))
		p += 4;
	/* RFC 3463: class "." 1*3digit "." 1*3digit, digits only (sscanf
	 * alone would take a sign). */
	if (strspn(p, "0123456789.") > 0 && p[0] >= '0' && p[0] <= '9' &&
	    sscanf(p, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 && (size_t)n <= strspn(p, "0123456789.") &&
	    (a == 2 || a == 4 || a == 5) && b >= 0 && c >= 0 && (p[n] == ' ' || p[n] == '\0')) {
		snprintf(out, 16, "%d.%d.%d", a == 2 ? 5 : a, b % 1000, c % 1000);
		return;
	}
	snprintf(out, 16, "%s", reply[0] == '4' ? "4.0.0" : "5.0.0");
}

size_t
dsn_header_len(const char *msg, size_t len)
{
	/* no header field at all: the empty line comes first */
	if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
		return 2;
	for (size_t i = 0; i + 1 < len; i++) {
		if (msg[i] == '\n' && i >= 1 && msg[i - 1] == '\r' && i + 2 < len && msg[i + 1] == '\r' && msg[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

char *
dsn_build(const struct dsn_input *in, size_t *len_r)
{
	struct out o = { 0 };
	unsigned char rnd[12];
	char boundary[40], date[64], arrival[64], line[1000], status[16];

	randombytes_buf(rnd, sizeof(rnd));
	memcpy(boundary, "=_submitd_", 10);
	sodium_bin2hex(boundary + 10, sizeof(boundary) - 10, rnd, sizeof(rnd));
	rfc5322_date(in->now, date, sizeof(date));
	rfc5322_date(in->arrival, arrival, sizeof(arrival));

	out_printf(&o, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", in->reporting_host);
	out_printf(&o, "To: <%s>\r\n", in->sender);
	out_printf(&o, "Subject: Undelivered Mail Returned to Sender\r\n");
	out_printf(&o, "Date: %s\r\n", date);
	out_printf(&o, "Message-ID: <dsn.%s.%lld@%s>\r\n", in->message_id, (long long)in->now, in->reporting_host);
	out_printf(&o, "Auto-Submitted: auto-replied\r\n");
	out_printf(&o, "MIME-Version: 1.0\r\n");
	out_printf(&o, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n", boundary);
	out_printf(&o, "\r\nThis is a MIME-encapsulated message.\r\n\r\n");

	out_printf(&o, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
	out_printf(&o, "This is the mail system at host %s.\r\n\r\n", in->reporting_host);
	out_printf(&o, "Your message %s could not be delivered to %s of its recipients.\r\n",
	    in->message_id, in->nfailures == 1 ? "one" : "some");
	out_printf(&o, "It was received on %s. The details:\r\n\r\n", arrival);
	for (size_t i = 0; i < in->nfailures; i++) {
		/* "<address>: reply" stays within 998 octets however long both are */
		size_t alen = strlen(in->failures[i].address);
		size_t room = alen + 4 < 998 ? 998 - alen - 4 : 1;
		flatten(in->failures[i].reply, line, room < 900 ? room : 900);
		out_printf(&o, "<%.900s>: %s\r\n", in->failures[i].address, line);
	}

	out_printf(&o, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary);
	out_printf(&o, "Reporting-MTA: dns; %s\r\nX-Submitd-Message-ID: %s\r\nArrival-Date: %s\r\n",
	    in->reporting_host, in->message_id, arrival);
	for (size_t i = 0; i < in->nfailures; i++) {
		flatten(in->failures[i].reply, line, 900);
		dsn_status_of(in->failures[i].reply, status);
		out_printf(&o, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n",
		    in->failures[i].address, status);
		if (isdigit((unsigned char)line[0]))
			out_printf(&o, "Diagnostic-Code: smtp; %s\r\n", line);
		else
			out_printf(&o, "Diagnostic-Code: X-submitd; %s\r\n", line);
	}

	out_printf(&o, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
	if (in->headers && in->headers_len > 0) {
		/* The original may be BINARYMIME: whatever it holds, what we send
		 * has CRLF line ends only, no NUL and no line over 998 octets. */
		size_t col = 0;
		for (size_t i = 0; i < in->headers_len; i++) {
			char c = in->headers[i];
			if (c == '\r' || c == '\n') {
				if (c == '\r' && i + 1 < in->headers_len && in->headers[i + 1] == '\n')
					i++;
				out_add(&o, "\r\n", 2);
				col = 0;
			} else if (c != '\0' && col < 998) {
				out_add(&o, &c, 1);
				col++;
			}
		}
		if (col > 0)
			out_add(&o, "\r\n", 2);
	}
	out_printf(&o, "\r\n--%s--\r\n", boundary);
	*len_r = o.len;
	return o.p;
}
