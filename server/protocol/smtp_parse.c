/*
 * smtp_parse.c: the command side of the SMTP grammar, as pure functions over
 * (pointer, length) buffers: framing a command line, splitting the verb,
 * the MAIL and RCPT paths with their parameters (RFC 5321 4.1.1.2-4.1.3,
 * RFC 6531 3.3 for UTF-8), BDAT arguments (RFC 3030 2) and the address
 * comparison used for sender binding. Input is never assumed to be
 * NUL-terminated, nothing is allocated, and every loop is bounded by the
 * length it was given, so any byte string is safe to pass in.
 *
 * It is longer than our other files (about 850 lines) and stays whole on
 * purpose: it is one grammar, RFC 5321's command syntax, and its rules
 * (paths, mailboxes, domains and address literals, parameters) all share
 * one scanner and its error reporting; split, each part would need the
 * scanner's internals, and a reader checking a rule against the RFC would
 * have to follow it across files.
 */
#include "server/protocol/smtp_parse.h"

#include <assert.h>
#include <string.h>

/* ---- small ASCII helpers (locale-independent on purpose: the protocol is
 * defined on octets, and a server's locale must not change what it accepts) */

static inline unsigned char
lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

static inline bool
is_alpha(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static inline bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline bool
is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* s[0..n) equals the lower-case literal lit, ignoring ASCII case. */
static bool
caseeq(const unsigned char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (lit[i] == '\0' || lower(s[i]) != (unsigned char)lit[i])
			return false;
	}
	return lit[n] == '\0';
}

/* s[0..len) starts with the lower-case literal lit, ignoring ASCII case. */
static bool
caseprefix(const unsigned char *s, size_t len, const char *lit)
{
	size_t n = strlen(lit);

	return len >= n && caseeq(s, n, lit);
}

/* Length of the well-formed UTF-8 sequence (RFC 3629 4, UTF8-2/3/4) at
 * s[0..len), or 0. The ranges for the second octet are what exclude
 * overlong forms (C0, C1, E0 80-9F, F0 80-8F), surrogates (ED A0-BF) and
 * code points above U+10FFFF (F4 90-BF, F5-FF). */
static size_t
utf8_seq(const unsigned char *s, size_t len)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	}
	return n;
}

/* ---- command lines ---- */

enum smtp_line_result
smtp_line_find(const char *buf, size_t len, size_t max,
    size_t *line_len_r, size_t *consumed_r)
{
	const unsigned char *p = (const unsigned char *)buf;
	size_t lim = len < max ? len : max;
	bool nul = false;
	size_t i;

	*line_len_r = 0;
	*consumed_r = 0;
	/* Every decision below depends only on octets up to i + 1, and the
	 * first one wins, so a longer buffer never changes an answer other
	 * than MORE: the caller may rescan as bytes trickle in. */
	for (i = 0; i < lim; i++) {
		if (p[i] == '\r') {
			/* The CRLF must fit in max (RFC 5321 4.5.3.1.4 counts it). */
			if (i + 2 > max)
				return SMTP_LINE_TOO_LONG;
			if (i + 1 == len)
				return SMTP_LINE_MORE;
			*line_len_r = i;
			if (p[i + 1] != '\n') {
				/* RFC 5321 2.3.8: CR only as part of CRLF. The
				 * offending line ends at the CR. */
				*consumed_r = i + 1;
				return SMTP_LINE_BARE_CR;
			}
			*consumed_r = i + 2;
			return nul ? SMTP_LINE_NUL : SMTP_LINE_OK;
		}
		if (p[i] == '\n') {
			/* RFC 5321 2.3.8: a bare LF is not a line end; we
			 * refuse it rather than guess (the command-side twin of
			 * the DATA smuggling problem). */
			*line_len_r = i;
			*consumed_r = i + 1;
			return SMTP_LINE_BARE_LF;
		}
		if (p[i] == '\0')
			nul = true;
	}
	return len >= max ? SMTP_LINE_TOO_LONG : SMTP_LINE_MORE;
}

static const char *const verb_names[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = "UNKNOWN",
	[SMTP_VERB_HELO] = "HELO", [SMTP_VERB_EHLO] = "EHLO",
	[SMTP_VERB_MAIL] = "MAIL", [SMTP_VERB_RCPT] = "RCPT",
	[SMTP_VERB_DATA] = "DATA", [SMTP_VERB_BDAT] = "BDAT",
	[SMTP_VERB_RSET] = "RSET", [SMTP_VERB_NOOP] = "NOOP",
	[SMTP_VERB_QUIT] = "QUIT", [SMTP_VERB_HELP] = "HELP",
	[SMTP_VERB_VRFY] = "VRFY", [SMTP_VERB_EXPN] = "EXPN",
	[SMTP_VERB_STARTTLS] = "STARTTLS", [SMTP_VERB_AUTH] = "AUTH",
};

const char *
smtp_verb_name(enum smtp_verb v)
{
	if ((unsigned)v >= SMTP_VERB_COUNT)
		return verb_names[SMTP_VERB_UNKNOWN];
	return verb_names[v];
}

void
smtp_command_parse(const char *line, size_t len, struct smtp_command *cmd_r)
{
	const unsigned char *p = (const unsigned char *)line;
	size_t vlen = 0, v, k;

	while (vlen < len && p[vlen] != ' ')
		vlen++;
	cmd_r->verb = SMTP_VERB_UNKNOWN;
	/* RFC 5321 2.4: verbs are case-insensitive. Compared by length, so
	 * that "QUIT\0x" is no QUIT. */
	for (v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
		const char *name = verb_names[v];

		for (k = 0; k < vlen && name[k] != '\0'; k++) {
			if (lower(p[k]) != lower((unsigned char)name[k]))
				break;
		}
		if (k == vlen && name[k] == '\0') {
			cmd_r->verb = (enum smtp_verb)v;
			break;
		}
	}
	/* Exactly one SP separates verb and arguments (RFC 5321 4.1.1); more
	 * stay in the arguments so their parsers can refuse them. */
	if (vlen < len) {
		cmd_r->args = line + vlen + 1;
		cmd_r->args_len = len - vlen - 1;
	} else {
		cmd_r->args = line + len;
		cmd_r->args_len = 0;
	}
	/* Trailing SP is common from hand-typed sessions and harmless. */
	while (cmd_r->args_len > 0 && cmd_r->args[cmd_r->args_len - 1] == ' ')
		cmd_r->args_len--;
}

/* ---- paths and mailboxes (RFC 5321 4.1.2, RFC 6531 3.3) ---- */

struct scan {
	const unsigned char *s;
	size_t len;
	size_t i;           /* position of the next octet */
	bool non_ascii;     /* a UTF-8 sequence was accepted somewhere */
	const char *why;
};

static enum smtp_parse_result
scan_fail(struct scan *sc, enum smtp_parse_result r,
    const char *why)
{
	sc->why = why;
	return r;
}

/* At a byte >= 0x80: accept one UTF8-non-ascii sequence (RFC 6531 3.3),
 * leaving the SMTPUTF8 decision to the caller, who knows the parameters. */
static bool
scan_utf8(struct scan *sc)
{
	size_t n = utf8_seq(sc->s + sc->i, sc->len - sc->i);

	if (n == 0)
		return false;
	sc->non_ascii = true;
	sc->i += n;
	return true;
}

/* RFC 5322 3.2.3 atext, which RFC 5321 4.1.2 borrows for Atom. */
static bool
is_atext(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Local-part = Dot-string / Quoted-string (RFC 5321 4.1.2). */
static enum smtp_parse_result
scan_local(struct scan *sc)
{
	size_t start = sc->i;

	if (sc->i < sc->len && sc->s[sc->i] == '"') {
		sc->i++;
		for (;;) {
			unsigned char c;

			if (sc->i >= sc->len)
				return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "unterminated quoted string");
			c = sc->s[sc->i];
			if (c == '"') {
				sc->i++;
				break;
			}
			if (c == '\\') {
				/* quoted-pairSMTP = %d92 %d32-126: RFC 6531
				 * does not extend it to UTF-8. */
				if (sc->i + 1 >= sc->len || sc->s[sc->i + 1] < 32 || sc->s[sc->i + 1] > 126)
					return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "bad quoted pair in local part");
				sc->i += 2;
			} else if (c >= 32 && c <= 126) {
				sc->i++;   /* qtextSMTP: all but '"' and '\' */
			} else if (c >= 0x80) {
				if (!scan_utf8(sc))
					return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "malformed UTF-8 in address");
			} else {
				return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in mailbox");
			}
		}
	} else {
		for (;;) {
			size_t atom = sc->i;

			while (sc->i < sc->len) {
				unsigned char c = sc->s[sc->i];

				if (is_atext(c))
					sc->i++;
				else if (c >= 0x80) {
					if (!scan_utf8(sc))
						return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "malformed UTF-8 in address");
				} else
					break;
			}
			/* Atom = 1*atext: no empty, leading, trailing or
			 * doubled dots. */
			if (sc->i == atom)
				return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in mailbox");
			if (sc->i < sc->len && sc->s[sc->i] == '.')
				sc->i++;
			else
				break;
		}
	}
	if (sc->i - start > SMTP_LOCAL_MAX)
		return scan_fail(sc, SMTP_PARSE_TOO_LONG, "local part too long");
	return SMTP_PARSE_OK;
}

/* Snum 3("." Snum), Snum = 1*3DIGIT in 0..255 (RFC 5321 4.1.3). */
static bool
ipv4_ok(const unsigned char *s, size_t len)
{
	size_t i = 0;
	int part;

	for (part = 0; part < 4; part++) {
		unsigned v = 0, nd = 0;

		if (part > 0) {
			if (i >= len || s[i] != '.')
				return false;
			i++;
		}
		while (i < len && is_digit(s[i]) && nd < 3) {
			v = v * 10 + (unsigned)(s[i] - '0');
			nd++;
			i++;
		}
		if (nd == 0 || v > 255)
			return false;
	}
	return i == len;
}

/* IPv6-addr of RFC 5321 4.1.3. A group is one 16-bit unit, a trailing
 * IPv4-address-literal two; without "::" there must be exactly 8, and with
 * it at most 6, since "::" stands for at least two groups of zeros. */
static bool
ipv6_ok(const unsigned char *s, size_t len)
{
	size_t i = 0, units = 0;
	bool comp = false;

	if (len >= 2 && s[0] == ':' && s[1] == ':') {
		comp = true;
		i = 2;
		if (i == len)
			return true;
	} else if (len == 0 || s[0] == ':')
		return false;
	for (;;) {
		size_t j = i;

		while (j < len && is_hex(s[j]))
			j++;
		if (j < len && s[j] == '.') {
			/* the IPv4 tail is always last */
			if (!ipv4_ok(s + i, len - i))
				return false;
			units += 2;
			break;
		}
		if (j == i || j - i > 4)
			return false;
		units++;
		i = j;
		if (i == len)
			break;
		if (s[i] != ':')
			return false;
		i++;
		if (i < len && s[i] == ':') {
			if (comp)
				return false;
			comp = true;
			i++;
			if (i == len)
				break;
		} else if (i == len)
			return false;
	}
	return comp ? units <= 6 : units == 8;
}

/* Domain / address-literal (RFC 5321 4.1.2, 4.1.3; U-labels per RFC 6531
 * 3.3, checked for UTF-8 well-formedness only: IDNA validity is the
 * resolver's problem, not the framing's). */
static enum smtp_parse_result
scan_domain(struct scan *sc, bool literal_ok)
{
	size_t start = sc->i;

	if (sc->i < sc->len && sc->s[sc->i] == '[') {
		size_t c0, c1;

		if (!literal_ok)
			return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in domain");
		c0 = ++sc->i;
		/* dcontent = %d33-90 / %d94-126: no brackets or backslash */
		while (sc->i < sc->len && sc->s[sc->i] >= 33 && sc->s[sc->i] <= 126 &&
		    sc->s[sc->i] != '[' && sc->s[sc->i] != ']' && sc->s[sc->i] != '\\')
			sc->i++;
		c1 = sc->i;
		if (sc->i >= sc->len || sc->s[sc->i] != ']')
			return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in address literal");
		sc->i++;
		if (caseprefix(sc->s + c0, c1 - c0, "ipv6:")) {
			if (!ipv6_ok(sc->s + c0 + 5, c1 - c0 - 5))
				return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "bad IPv6 address literal");
		} else if (memchr(sc->s + c0, ':', c1 - c0) != NULL) {
			/* General-address-literal: no tag but IPv6 is
			 * standardized, so nothing else can be delivered to. */
			return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "unsupported address literal");
		} else if (!ipv4_ok(sc->s + c0, c1 - c0)) {
			return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "bad IPv4 address literal");
		}
	} else {
		for (;;) {
			size_t label = sc->i;
			unsigned char last = 0;

			while (sc->i < sc->len) {
				unsigned char c = sc->s[sc->i];

				if (is_alpha(c) || is_digit(c) || c == '-') {
					/* sub-domain = Let-dig [Ldh-str] */
					if (c == '-' && sc->i == label)
						return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in domain");
					last = c;
					sc->i++;
				} else if (c >= 0x80) {
					if (!scan_utf8(sc))
						return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "malformed UTF-8 in address");
					last = 0x80;
				} else
					break;
			}
			if (sc->i == label || last == '-')
				return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in domain");
			if (sc->i < sc->len && sc->s[sc->i] == '.')
				sc->i++;
			else
				break;
		}
	}
	if (sc->i - start > SMTP_DOMAIN_MAX)
		return scan_fail(sc, SMTP_PARSE_TOO_LONG, "domain too long");
	return SMTP_PARSE_OK;
}

/* Mailbox = Local-part "@" ( Domain / address-literal ). Stops at the first
 * octet that cannot continue it; the caller decides what may follow. */
static enum smtp_parse_result
scan_mailbox(struct scan *sc)
{
	enum smtp_parse_result r;

	if ((r = scan_local(sc)) != SMTP_PARSE_OK)
		return r;
	if (sc->i >= sc->len || sc->s[sc->i] != '@')
		return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in mailbox");
	sc->i++;
	return scan_domain(sc, true);
}

/* Path = "<" [ A-d-l ":" ] Mailbox ">", or "<>" when null_ok. On success
 * [*mb, *mb + *mb_len) is the Mailbox (empty for "<>"). Source routes are
 * parsed and dropped (RFC 5321 4.1.2: "SHOULD accept and ignore"). */
static enum smtp_parse_result
scan_path(struct scan *sc, bool null_ok,
    size_t *mb, size_t *mb_len)
{
	enum smtp_parse_result r;

	if (sc->i >= sc->len || sc->s[sc->i] != '<')
		return scan_fail(sc, SMTP_PARSE_SYNTAX, "syntax error: address must be in <>");
	sc->i++;
	if (sc->i < sc->len && sc->s[sc->i] == '>') {
		if (!null_ok)
			return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "null path not allowed here");
		sc->i++;
		*mb = sc->i;
		*mb_len = 0;
		return SMTP_PARSE_OK;
	}
	if (sc->i < sc->len && sc->s[sc->i] == '@') {
		/* A-d-l = At-domain *( "," At-domain ) ":" */
		for (;;) {
			sc->i++;
			if ((r = scan_domain(sc, false)) != SMTP_PARSE_OK)
				return r;
			if (sc->i < sc->len && sc->s[sc->i] == ',' &&
			    sc->i + 1 < sc->len && sc->s[sc->i + 1] == '@') {
				sc->i++;
				continue;
			}
			if (sc->i < sc->len && sc->s[sc->i] == ':') {
				sc->i++;
				break;
			}
			return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in source route");
		}
	}
	*mb = sc->i;
	if ((r = scan_mailbox(sc)) != SMTP_PARSE_OK)
		return r;
	*mb_len = sc->i - *mb;
	if (sc->i >= sc->len)
		return scan_fail(sc, SMTP_PARSE_SYNTAX, "syntax error: missing >");
	if (sc->s[sc->i] != '>')
		return scan_fail(sc, SMTP_PARSE_BAD_ADDRESS, "syntax error in mailbox");
	sc->i++;
	return SMTP_PARSE_OK;
}

/* Control octets never belong in MAIL/RCPT arguments (RFC 5321 4.1.2 has
 * none outside quoted-pair, which excludes them too); refusing them up front
 * keeps them out of every later step and out of the logs. */
static bool
has_ctl(const unsigned char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] < 0x20 || s[i] == 0x7f)
			return true;
	}
	return false;
}

/* "FROM:" / "TO:" and the single optional SP that many clients send after
 * the colon (RFC 5321 4.1.1.2 has none; rejecting it helps nobody). */
static bool
scan_keyword(struct scan *sc, const char *kw)
{
	if (!caseprefix(sc->s, sc->len, kw))
		return false;
	sc->i = strlen(kw);
	if (sc->i < sc->len && sc->s[sc->i] == ' ')
		sc->i++;
	return true;
}

/* At sc->i: SP esmtp-param (RFC 5321 4.1.2). [*p0, *p1) gets the parameter.
 * A doubled or trailing SP (an empty parameter) is not in the grammar. */
static enum smtp_parse_result
next_param(struct scan *sc, size_t *p0, size_t *p1)
{
	if (sc->s[sc->i] != ' ')
		return scan_fail(sc, SMTP_PARSE_SYNTAX, "syntax error after address");
	sc->i++;
	*p0 = sc->i;
	while (sc->i < sc->len && sc->s[sc->i] != ' ')
		sc->i++;
	*p1 = sc->i;
	if (*p1 == *p0)
		return scan_fail(sc, SMTP_PARSE_SYNTAX, "syntax error: empty parameter");
	return SMTP_PARSE_OK;
}

/* hexchar of RFC 3461 4: upper case only */
static bool
is_hexchar(unsigned char c)
{
	return is_digit(c) || (c >= 'A' && c <= 'F');
}

/* xtext (RFC 3461 4): "!".."~" except "+" and "=", or "+" 2HEXCHAR with
 * upper-case hex; used by AUTH= (RFC 4954 5). */
static bool
xtext_ok(const unsigned char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (c == '+') {
			if (i + 2 >= len || !is_hexchar(s[i + 1]) || !is_hexchar(s[i + 2]))
				return false;
			i += 2;
		} else if (c < 33 || c > 126 || c == '=') {
			return false;
		}
	}
	return true;
}

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool
keyword_ok(const unsigned char *s, size_t n)
{
	size_t i;

	if (n == 0 || !(is_alpha(s[0]) || is_digit(s[0])))
		return false;
	for (i = 1; i < n; i++) {
		if (!(is_alpha(s[i]) || is_digit(s[i]) || s[i] == '-'))
			return false;
	}
	return true;
}

/* Mail-parameters (RFC 5321 4.1.2) restricted to what we advertise:
 * SIZE (RFC 1870), BODY (RFC 6152, RFC 3030), SMTPUTF8 (RFC 6531) and
 * AUTH (RFC 4954 5). RFC 5321 4.1.1.11: an unrecognised or repeated
 * parameter gets 555, so every one of them is BAD_PARAM. */
static enum smtp_parse_result
mail_params(struct scan *sc, struct smtp_mail *m)
{
	bool seen_size = false, seen_body = false, seen_utf8 = false, seen_auth = false;
	enum smtp_parse_result r;

	while (sc->i < sc->len) {
		const unsigned char *k, *v = NULL;
		size_t p0, p1, klen, vlen = 0, j;
		bool has_v;

		if ((r = next_param(sc, &p0, &p1)) != SMTP_PARSE_OK)
			return r;
		k = sc->s + p0;
		for (klen = 0; p0 + klen < p1 && k[klen] != '='; klen++)
			;
		has_v = p0 + klen < p1;
		if (has_v) {
			v = k + klen + 1;
			vlen = p1 - p0 - klen - 1;
		}
		if (!keyword_ok(k, klen))
			return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "malformed parameter");
		if (caseeq(k, klen, "size")) {
			uint64_t n = 0;

			if (seen_size)
				return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "duplicate SIZE parameter");
			seen_size = true;
			/* A known parameter with a bad value is a syntax error
			 * (501, RFC 5321 4.2.3), not an unknown one (555).
			 * RFC 1870: size-value ::= 1*20DIGIT. */
			if (!has_v || vlen == 0 || vlen > 20)
				return scan_fail(sc, SMTP_PARSE_SYNTAX, "malformed SIZE parameter");
			for (j = 0; j < vlen; j++) {
				if (!is_digit(v[j]))
					return scan_fail(sc, SMTP_PARSE_SYNTAX, "malformed SIZE parameter");
				/* saturate instead of wrapping: 20 digits overflow */
				n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + (uint64_t)(v[j] - '0');
			}
			/* Saturate: a declared size beyond INT64_MAX is over
			 * any configured limit, and that is the answer the
			 * client should get (552), not a syntax error. */
			m->size = n > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)n;
		} else if (caseeq(k, klen, "body")) {
			if (seen_body)
				return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "duplicate BODY parameter");
			seen_body = true;
			if (has_v && caseeq(v, vlen, "7bit"))
				m->body = SMTP_BODY_7BIT;
			else if (has_v && caseeq(v, vlen, "8bitmime"))
				m->body = SMTP_BODY_8BITMIME;
			else if (has_v && caseeq(v, vlen, "binarymime"))
				m->body = SMTP_BODY_BINARYMIME;
			else
				return scan_fail(sc, SMTP_PARSE_SYNTAX, "malformed BODY parameter");
		} else if (caseeq(k, klen, "smtputf8")) {
			if (seen_utf8)
				return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "duplicate SMTPUTF8 parameter");
			seen_utf8 = true;
			/* RFC 6531 3.4: the keyword has no value. */
			if (has_v)
				return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "SMTPUTF8 takes no value");
			m->smtputf8 = true;
		} else if (caseeq(k, klen, "auth")) {
			if (seen_auth)
				return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "duplicate AUTH parameter");
			seen_auth = true;
			/* RFC 4954 5: AUTH=<> or an xtext mailbox. We bind the
			 * sender to the login instead, so it is only checked. */
			if (!has_v || !xtext_ok(v, vlen))
				return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "malformed AUTH parameter");
			m->has_auth_param = true;
		} else {
			return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "unknown parameter");
		}
	}
	return SMTP_PARSE_OK;
}

static enum smtp_parse_result
mail_parse(struct scan *sc, struct smtp_mail *m,
    size_t *mb, size_t *mb_len)
{
	enum smtp_parse_result r;

	if (has_ctl(sc->s, sc->len))
		return scan_fail(sc, SMTP_PARSE_SYNTAX, "control character in arguments");
	if (!scan_keyword(sc, "from:"))
		return scan_fail(sc, SMTP_PARSE_SYNTAX, "syntax error: expected FROM:<address>");
	if ((r = scan_path(sc, true, mb, mb_len)) != SMTP_PARSE_OK)
		return r;
	if ((r = mail_params(sc, m)) != SMTP_PARSE_OK)
		return r;
	/* RFC 6531 3.4: UTF-8 in the envelope only with SMTPUTF8. Checked
	 * last because the keyword comes after the address. */
	if (sc->non_ascii && !m->smtputf8)
		return scan_fail(sc, SMTP_PARSE_NON_ASCII, "UTF-8 address requires SMTPUTF8");
	m->null_sender = *mb_len == 0;
	return SMTP_PARSE_OK;
}

enum smtp_parse_result
smtp_mail_parse(const char *args, size_t len,
    struct smtp_mail *m_r, const char **why_r)
{
	struct scan sc = { .s = (const unsigned char *)args, .len = len };
	size_t mb = 0, mb_len = 0;
	enum smtp_parse_result r;

	memset(m_r, 0, sizeof(*m_r));
	m_r->size = -1;
	m_r->body = SMTP_BODY_UNSET;
	r = mail_parse(&sc, m_r, &mb, &mb_len);
	if (r == SMTP_PARSE_OK) {
		/* local <= 64, "@", domain <= 255 were checked on the way */
		assert(mb_len <= SMTP_ADDRESS_MAX);
		memcpy(m_r->address, args + mb, mb_len);
		m_r->address[mb_len] = '\0';
	} else {
		/* leave nothing half-filled for a careless caller */
		memset(m_r, 0, sizeof(*m_r));
		m_r->size = -1;
	}
	if (why_r != NULL)
		*why_r = r == SMTP_PARSE_OK ? NULL : sc.why;
	return r;
}

static enum smtp_parse_result
rcpt_parse(struct scan *sc, bool utf8_ok,
    size_t *mb, size_t *mb_len)
{
	enum smtp_parse_result r;
	size_t p0, p1;

	if (has_ctl(sc->s, sc->len))
		return scan_fail(sc, SMTP_PARSE_SYNTAX, "control character in arguments");
	if (!scan_keyword(sc, "to:"))
		return scan_fail(sc, SMTP_PARSE_SYNTAX, "syntax error: expected TO:<address>");
	/* RFC 5321 4.1.1.3: "<Postmaster>" with no domain must be accepted;
	 * the literal is case-insensitive like all ABNF strings. */
	if (caseprefix(sc->s + sc->i, sc->len - sc->i, "<postmaster>")) {
		*mb = sc->i + 1;
		*mb_len = 10;
		sc->i += 12;
	} else if ((r = scan_path(sc, false, mb, mb_len)) != SMTP_PARSE_OK) {
		return r;
	}
	if (sc->i < sc->len) {
		if ((r = next_param(sc, &p0, &p1)) != SMTP_PARSE_OK)
			return r;
		/* We advertise no RCPT extension (no DSN), so RFC 5321
		 * 4.1.1.11 makes any parameter a 555. */
		return scan_fail(sc, SMTP_PARSE_BAD_PARAM, "RCPT parameters not supported");
	}
	if (sc->non_ascii && !utf8_ok)
		return scan_fail(sc, SMTP_PARSE_NON_ASCII, "UTF-8 address requires SMTPUTF8");
	return SMTP_PARSE_OK;
}

enum smtp_parse_result
smtp_rcpt_parse(const char *args, size_t len, bool utf8_ok,
    struct smtp_rcpt *r_r, const char **why_r)
{
	struct scan sc = { .s = (const unsigned char *)args, .len = len };
	size_t mb = 0, mb_len = 0;
	enum smtp_parse_result r;

	r = rcpt_parse(&sc, utf8_ok, &mb, &mb_len);
	if (r == SMTP_PARSE_OK) {
		assert(mb_len <= SMTP_ADDRESS_MAX);
		memcpy(r_r->address, args + mb, mb_len);
		r_r->address[mb_len] = '\0';
	} else {
		r_r->address[0] = '\0';
	}
	if (why_r != NULL)
		*why_r = r == SMTP_PARSE_OK ? NULL : sc.why;
	return r;
}

enum smtp_parse_result
smtp_mailbox_check(const char *s, size_t len, bool utf8_ok)
{
	struct scan sc = { .s = (const unsigned char *)s, .len = len };
	enum smtp_parse_result r;

	if ((r = scan_mailbox(&sc)) != SMTP_PARSE_OK)
		return r;
	if (sc.i != len)
		return SMTP_PARSE_BAD_ADDRESS;
	if (sc.non_ascii && !utf8_ok)
		return SMTP_PARSE_NON_ASCII;
	return SMTP_PARSE_OK;
}

/* ---- BDAT (RFC 3030 2) ---- */

enum smtp_parse_result
smtp_bdat_parse(const char *args, size_t len,
    uint64_t *size_r, bool *last_r)
{
	const unsigned char *s = (const unsigned char *)args;
	uint64_t n = 0;
	size_t nd = 0, i;

	*size_r = 0;
	*last_r = false;
	while (nd < len && is_digit(s[nd]))
		nd++;
	/* chunk-size = 1*DIGIT, no bound (no sign: "-1" and "+5" fail
	 * here). 0 is valid: "BDAT 0 LAST". Large values saturate, so the
	 * caller answers "too big" rather than "syntax error". */
	if (nd == 0)
		return SMTP_PARSE_SYNTAX;
	if (nd < len) {
		/* bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] */
		if (len - nd != 5 || s[nd] != ' ' || !caseeq(s + nd + 1, 4, "last"))
			return SMTP_PARSE_SYNTAX;
		*last_r = true;
	}
	for (i = 0; i < nd; i++)
		n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + (uint64_t)(s[i] - '0');
	*size_r = n;
	return SMTP_PARSE_OK;
}

/* ---- sender binding ---- */

bool
smtp_address_equal(const char *a, const char *b)
{
	/* RFC 5321 2.4 lets a local part be case-sensitive, but the database
	 * keeps logins and user_addresses unique COLLATE NOCASE (ASCII case
	 * folded, octets above 0x7f compared as they are): ME@x and me@x can
	 * belong to one user only, so the binding compares the same way, the
	 * whole address. A spelling variant of the same local part ("a"@x vs
	 * a@x) still compares unequal: refusing is the safe side. */
	size_t i;

	for (i = 0; a[i] != '\0' || b[i] != '\0'; i++)
		if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}
