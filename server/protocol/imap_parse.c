/*
 * imap_parse.c: see imap_parse.h. Everything here reads with explicit
 * bounds: the text of a response is NUL-terminated for convenience, but
 * a NUL inside it (which a server must not send) marks the response bad
 * rather than cutting it short unnoticed.
 */
#include "server/protocol/imap_parse.h"
#include "server/protocol/mail_header.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* framing                                                            */

void
imap_resp_init(struct imap_resp *r, void (*sink)(void *arg, const char *p, size_t n), void *sink_arg)
{
	memset(r, 0, sizeof(*r));
	r->sink = sink;
	r->sink_arg = sink_arg;
}

void
imap_resp_reset(struct imap_resp *r)
{
	void (*sink)(void *, const char *, size_t) = r->sink;
	void *arg = r->sink_arg;
	bool to_sink = r->literals_to_sink;

	imap_resp_init(r, sink, arg);
	r->literals_to_sink = to_sink;
}

static void
put(struct imap_resp *r, const char *s, size_t n)
{
	size_t room = IMAP_TEXT_MAX - r->len;

	if (n > room) {
		n = room;
		r->overflow = true;
	}
	memcpy(r->text + r->len, s, n);
	r->len += n;
	r->text[r->len] = '\0';
}

/* The current line ends with "{N}" or "{N+}": N, or -1. */
static int64_t
trailing_literal(const struct imap_resp *r)
{
	const char *t = r->tail;
	size_t n = r->tail_len, i;
	int64_t v = 0;

	if (n < 3 || t[n - 1] != '}')
		return -1;
	i = n - 1;
	if (t[i - 1] == '+')
		i--;
	size_t end = i;
	while (i > 0 && t[i - 1] >= '0' && t[i - 1] <= '9')
		i--;
	if (i == end || i == 0 || t[i - 1] != '{' || end - i > 15)
		return -1;
	for (size_t k = i; k < end; k++)
		v = v * 10 + (t[k] - '0');
	return v;
}

static void
literal_done(struct imap_resp *r)
{
	char q[IMAP_LITERAL_INLINE * 2 + 2];
	size_t o = 0;
	bool quotable = true;

	if (!r->lit_inline)
		return;
	for (size_t i = 0; i < r->lit_len; i++)
		if (r->lit[i] == '\r' || r->lit[i] == '\n' || r->lit[i] == '\0')
			quotable = false;
	if (!quotable) {
		/* say where it was; its octets go to the sink */
		char token[32];
		int n = snprintf(token, sizeof(token), "{%zu}", r->lit_len);
		put(r, token, (size_t)n);
		if (r->sink && !r->overflow)
			r->sink(r->sink_arg, r->lit, r->lit_len);
		return;
	}
	q[o++] = '"';
	for (size_t i = 0; i < r->lit_len; i++) {
		if (r->lit[i] == '"' || r->lit[i] == '\\')
			q[o++] = '\\';
		q[o++] = r->lit[i];
	}
	q[o++] = '"';
	put(r, q, o);
}

size_t
imap_resp_feed(struct imap_resp *r, const char *p, size_t n, bool *done)
{
	size_t i = 0;

	*done = false;
	while (i < n) {
		if (r->lit_left > 0) {
			size_t take = (uint64_t)r->lit_left < n - i ? (size_t)r->lit_left : n - i;
			if (r->lit_inline)
				memcpy(r->lit + r->lit_len, p + i, take), r->lit_len += take;
			else if (r->sink && !r->overflow && !r->lit_drop)
				r->sink(r->sink_arg, p + i, take);
			i += take;
			r->lit_left -= (int64_t)take;
			if (r->lit_left == 0)
				literal_done(r);
			continue;
		}
		char c = p[i++];
		if (c != '\n') {
			if (c == '\0')
				r->bad = true;
			put(r, &c, 1);
			if (r->tail_len < sizeof(r->tail))
				r->tail[r->tail_len++] = c;
			else {
				memmove(r->tail, r->tail + 1, sizeof(r->tail) - 1);
				r->tail[sizeof(r->tail) - 1] = c;
			}
			continue;
		}
		/* the end of a line: drop its CR */
		if (r->tail_len > 0 && r->tail[r->tail_len - 1] == '\r') {
			r->tail_len--;
			if (!r->overflow && r->len > 0)
				r->text[--r->len] = '\0';
		}
		int64_t lit = trailing_literal(r);
		r->tail_len = 0;
		if (lit < 0) {
			*done = true;
			return i;
		}
		if (lit > IMAP_LITERAL_MAX) {
			r->bad = true;
			*done = true;
			return i;
		}
		r->lit_left = lit;
		r->lit_len = 0;
		r->lit_drop = r->overflow;
		r->lit_inline = !r->literals_to_sink && lit <= IMAP_LITERAL_INLINE && !r->overflow;
		if (r->lit_inline) {
			/* the "{N}" gives way to the quoted octets (or a new "{N}") */
			size_t tok = 0;
			for (size_t k = r->len; k > 0; k--)
				if (r->text[k - 1] == '{') {
					tok = r->len - (k - 1);
					break;
				}
			r->len -= tok;
			r->text[r->len] = '\0';
		}
		if (lit == 0)
			literal_done(r);
	}
	return i;
}

/* ------------------------------------------------------------------ */
/* one response                                                       */

static bool
is_atom_char(char c)
{
	/* RFC 9051 atom-specials, and the resp-specials of the first word */
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '%' && c != '*' &&
	    c != '"' && c != '\\' && c != ']';
}

/* A word up to a space or the end (upper-cased into out): its length. */
static size_t
word(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i = 0;

	while (i < len && s[i] != ' ')
		i++;
	if (out) {
		size_t n = i < outlen - 1 ? i : outlen - 1;
		for (size_t k = 0; k < n; k++)
			out[k] = (s[k] >= 'a' && s[k] <= 'z') ? (char)(s[k] - 32) : s[k];
		out[n] = '\0';
	}
	return i;
}

static enum imap_status
status_of(const char *w)
{
	if (strcmp(w, "OK") == 0) return IMAP_OK;
	if (strcmp(w, "NO") == 0) return IMAP_NO;
	if (strcmp(w, "BAD") == 0) return IMAP_BAD;
	if (strcmp(w, "BYE") == 0) return IMAP_BYE;
	if (strcmp(w, "PREAUTH") == 0) return IMAP_PREAUTH;
	return IMAP_NONE;
}

/* After a status word: an optional "[CODE args]", then the text. */
static void
status_rest(const char *s, size_t len, struct imap_line *out)
{
	size_t i = 0;

	if (i < len && s[i] == '[') {
		size_t close = i + 1;
		while (close < len && s[close] != ']')
			close++;
		if (close < len) {
			size_t n = word(s + 1, close - 1, out->code, sizeof(out->code));
			out->code_args = s + 1 + n + (n < close - 1 ? 1 : 0);
			out->code_len = (size_t)(s + close - out->code_args);
			i = close + 1;
			if (i < len && s[i] == ' ')
				i++;
		}
	}
	out->rest = s + i;
	out->rest_len = len - i;
}

int
imap_line_parse(const char *text, size_t len, struct imap_line *out)
{
	char w[32];
	size_t i, n;

	memset(out, 0, sizeof(*out));
	out->number = -1;
	out->rest = text + len;
	out->kind = IMAP_MALFORMED;
	if (len == 0 || memchr(text, '\0', len) != NULL)
		return -1;
	if (text[0] == '+') {
		out->kind = IMAP_CONTINUE;
		i = len > 1 && text[1] == ' ' ? 2 : 1;
		out->rest = text + i;
		out->rest_len = len - i;
		return 0;
	}
	if (text[0] == '*') {
		if (len < 3 || text[1] != ' ')
			return -1;
		i = 2;
		if (text[i] >= '0' && text[i] <= '9') {
			int64_t v = 0;
			while (i < len && text[i] >= '0' && text[i] <= '9' && v < (1LL << 40))
				v = v * 10 + (text[i++] - '0');
			if (i >= len || text[i] != ' ')
				return -1;
			out->number = v;
			i++;
		}
		n = word(text + i, len - i, w, sizeof(w));
		if (n == 0)
			return -1;
		out->kind = IMAP_UNTAGGED;
		out->status = out->number < 0 ? status_of(w) : IMAP_NONE;
		i += n;
		if (i < len)
			i++;
		if (out->status != IMAP_NONE) {
			status_rest(text + i, len - i, out);
		} else {
			snprintf(out->keyword, sizeof(out->keyword), "%s", w);
			out->rest = text + i;
			out->rest_len = len - i;
		}
		return 0;
	}
	/* a tag */
	for (i = 0; i < len && text[i] != ' '; i++)
		if (!is_atom_char(text[i]) || text[i] == '+')
			return -1;
	if (i == 0 || i >= sizeof(out->tag) || i >= len)
		return -1;
	memcpy(out->tag, text, i);
	out->tag[i] = '\0';
	i++;
	n = word(text + i, len - i, w, sizeof(w));
	out->status = status_of(w);
	if (out->status != IMAP_OK && out->status != IMAP_NO && out->status != IMAP_BAD) {
		out->tag[0] = '\0';
		out->status = IMAP_NONE;
		return -1;
	}
	out->kind = IMAP_TAGGED;
	i += n;
	if (i < len)
		i++;
	status_rest(text + i, len - i, out);
	return 0;
}

unsigned
imap_caps_parse(const char *s, size_t len)
{
	static const struct { const char *name; unsigned bit; } caps[] = {
		{ "IMAP4REV1", IMAP_CAP_IMAP4 }, { "IMAP4REV2", IMAP_CAP_IMAP4 },
		{ "STARTTLS", IMAP_CAP_STARTTLS }, { "LOGINDISABLED", IMAP_CAP_LOGINDISABLED },
		{ "AUTH=PLAIN", IMAP_CAP_AUTH_PLAIN }, { "SASL-IR", IMAP_CAP_SASL_IR },
		{ "LITERAL+", IMAP_CAP_LITERAL_PLUS }, { "UIDPLUS", IMAP_CAP_UIDPLUS },
		{ "SPECIAL-USE", IMAP_CAP_SPECIAL_USE }, { "LIST-EXTENDED", IMAP_CAP_LIST_EXTENDED },
	};
	unsigned bits = 0;
	size_t i = 0;

	while (i < len) {
		char w[32];
		size_t n = word(s + i, len - i, w, sizeof(w));
		if (n < sizeof(w))
			for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++)
				if (strcmp(w, caps[k].name) == 0)
					bits |= caps[k].bit;
		i += n + 1;
	}
	return bits;
}

/* A decimal number of at most 32 bits at *i: 0, or -1. */
static int
number32(const char *s, size_t len, size_t *i, uint32_t *v)
{
	uint64_t x = 0;
	size_t start = *i;

	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		x = x * 10 + (uint64_t)(s[*i] - '0');
		if (x > UINT32_MAX)
			return -1;
		(*i)++;
	}
	if (*i == start)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

int
imap_number_parse(const char *s, size_t len, uint32_t *n)
{
	size_t i = 0;

	return number32(s, len, &i, n) == 0 && i == len ? 0 : -1;
}

int
imap_appenduid_parse(const char *s, size_t len, uint32_t *uidvalidity, uint32_t *uid)
{
	size_t i = 0;

	if (number32(s, len, &i, uidvalidity) == -1 || i >= len || s[i] != ' ')
		return -1;
	i++;
	if (number32(s, len, &i, uid) == -1 || i != len)
		return -1;   /* a set ("1:3"): we append one message at a time */
	return *uidvalidity == 0 || *uid == 0 ? -1 : 0;
}

/* A quoted string at *i (unescaped into out, NUL-terminated): 0, or -1. */
static int
quoted(const char *s, size_t len, size_t *i, char *out, size_t outlen)
{
	size_t o = 0;

	if (*i >= len || s[*i] != '"')
		return -1;
	for ((*i)++; *i < len; (*i)++) {
		char c = s[*i];
		if (c == '"') {
			(*i)++;
			if (out)
				out[o] = '\0';
			return 0;
		}
		if (c == '\\') {
			if (++*i >= len)
				return -1;
			c = s[*i];
		}
		if (out) {
			if (o + 1 >= outlen)
				return -1;
			out[o++] = c;
		}
	}
	return -1;
}

/* Skip one value at *i: an atom or number, a quoted string, a literal's
 * "{N}", or a parenthesised list. 0, or -1. */
static int
skip_value(const char *s, size_t len, size_t *i, int depth)
{
	if (*i >= len || depth > 16)
		return -1;
	if (s[*i] == '"')
		return quoted(s, len, i, NULL, 0);
	if (s[*i] == '(') {
		(*i)++;
		while (*i < len && s[*i] != ')') {
			if (s[*i] == ' ') {
				(*i)++;
				continue;
			}
			if (skip_value(s, len, i, depth + 1) == -1)
				return -1;
		}
		if (*i >= len)
			return -1;
		(*i)++;
		return 0;
	}
	size_t start = *i;
	while (*i < len && s[*i] != ' ' && s[*i] != ')' && s[*i] != '(') {
		if (s[*i] == '[') {   /* BODY[HEADER.FIELDS (A B)] */
			while (*i < len && s[*i] != ']')
				(*i)++;
			if (*i >= len)
				return -1;
		}
		(*i)++;
	}
	return *i > start ? 0 : -1;
}

int
imap_list_parse(const char *s, size_t len, bool *sent, bool *noselect, char *name, size_t namelen)
{
	size_t i = 0;

	*sent = *noselect = false;
	if (len == 0 || s[0] != '(')
		return -1;
	for (i = 1; i < len && s[i] != ')';) {
		char w[32];
		if (s[i] == ' ') {
			i++;
			continue;
		}
		size_t start = i;
		while (i < len && s[i] != ' ' && s[i] != ')')
			i++;
		size_t n = i - start < sizeof(w) - 1 ? i - start : sizeof(w) - 1;
		memcpy(w, s + start, n);
		w[n] = '\0';
		if (strcasecmp(w, "\\Sent") == 0)
			*sent = true;
		else if (strcasecmp(w, "\\Noselect") == 0 || strcasecmp(w, "\\NonExistent") == 0)
			*noselect = true;
	}
	if (i >= len)
		return -1;
	i++;
	if (i >= len || s[i] != ' ')
		return -1;
	i++;
	/* the hierarchy delimiter: a quoted character or NIL */
	if (i + 3 <= len && strncasecmp(s + i, "NIL", 3) == 0)
		i += 3;
	else if (quoted(s, len, &i, NULL, 0) == -1)
		return -1;
	if (i >= len || s[i] != ' ')
		return -1;
	i++;
	if (i < len && s[i] == '"')
		return quoted(s, len, &i, name, namelen);
	/* an atom (INBOX, or a plain name) */
	size_t start = i;
	while (i < len && s[i] != ' ' && s[i] != '{' && s[i] != '"' && s[i] != '(' && s[i] != ')')
		i++;
	if (i == start || (i < len && s[i] != ' ') || i - start >= namelen)
		return -1;
	memcpy(name, s + start, i - start);
	name[i - start] = '\0';
	return 0;
}

size_t
imap_search_parse(const char *s, size_t len, uint32_t *uids, size_t max)
{
	size_t i = 0, n = 0;

	while (i < len) {
		uint32_t v;
		if (s[i] == ' ') {
			i++;
			continue;
		}
		if (s[i] == '(') {   /* (MODSEQ n) of CONDSTORE */
			if (skip_value(s, len, &i, 0) == -1)
				break;
			continue;
		}
		if (number32(s, len, &i, &v) == -1)
			break;
		if (n < max && v > 0)
			uids[n++] = v;
	}
	return n;
}

int
imap_fetch_parse(const char *s, size_t len, struct imap_fetch *f)
{
	size_t i = 1;

	memset(f, 0, sizeof(*f));
	f->size = f->internaldate = -1;
	if (len < 2 || s[0] != '(')
		return -1;
	while (i < len && s[i] != ')') {
		char item[32];
		size_t start, n;

		if (s[i] == ' ') {
			i++;
			continue;
		}
		start = i;
		if (skip_value(s, len, &i, 0) == -1)
			return -1;
		n = i - start < sizeof(item) - 1 ? i - start : sizeof(item) - 1;
		for (size_t k = 0; k < n; k++)
			item[k] = (s[start + k] >= 'a' && s[start + k] <= 'z') ? (char)(s[start + k] - 32) : s[start + k];
		item[n] = '\0';
		if (i >= len || s[i] != ' ')
			return -1;
		i++;
		start = i;
		if (strcmp(item, "UID") == 0) {
			if (number32(s, len, &i, &f->uid) == -1)
				return -1;
		} else if (strcmp(item, "RFC822.SIZE") == 0) {
			uint32_t v;
			if (number32(s, len, &i, &v) == -1)
				return -1;
			f->size = v;
		} else if (strcmp(item, "INTERNALDATE") == 0) {
			char d[40];
			if (quoted(s, len, &i, d, sizeof(d)) == -1)
				return -1;
			f->internaldate = imap_date_time_parse(d, strlen(d));
		} else {
			if (skip_value(s, len, &i, 0) == -1)
				return -1;
			if (strcmp(item, "BODY[]") == 0 && s[start] == '{')
				f->body = true;
		}
	}
	return i < len ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* dates, quoting, Message-ID                                         */

static const char months[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

/* Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int
digits(const char *s, size_t n, int *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

int64_t
imap_date_time_parse(const char *s, size_t len)
{
	int day, year, hh, mm, ss, zh, zm;
	unsigned mon = 0;

	/* "dd-Mon-yyyy hh:mm:ss +zzzz", 26 octets; " d" for a one-digit day */
	if (len != 26 || s[2] != '-' || s[6] != '-' || s[11] != ' ' || s[14] != ':' || s[17] != ':' ||
	    s[20] != ' ' || (s[21] != '+' && s[21] != '-'))
		return -1;
	if (s[0] == ' ' ? digits(s + 1, 1, &day) : digits(s, 2, &day))
		return -1;
	for (unsigned k = 0; k < 12; k++)
		if (strncasecmp(s + 3, months[k], 3) == 0)
			mon = k + 1;
	if (mon == 0 || digits(s + 7, 4, &year) || digits(s + 12, 2, &hh) || digits(s + 15, 2, &mm) ||
	    digits(s + 18, 2, &ss) || digits(s + 22, 2, &zh) || digits(s + 24, 2, &zm))
		return -1;
	if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || zm > 59)
		return -1;
	int64_t t = days_from_civil(year, mon, (unsigned)day) * 86400 + hh * 3600 + mm * 60 + ss;
	int64_t off = (int64_t)zh * 3600 + zm * 60;
	return s[21] == '+' ? t - off : t + off;
}

void
imap_date_time_format(int64_t t, char out[32])
{
	int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400, secs = t - days * 86400;
	/* civil_from_days (Hinnant's) */
	int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;

	y += m <= 2;
	if (y < 0 || y > 9999)
		y = y < 0 ? 0 : 9999;
	snprintf(out, 32, "%02u-%s-%04d %02d:%02d:%02d +0000", d % 100, months[(m - 1) % 12], (int)y,
	    (int)(secs / 3600) % 100, (int)(secs / 60 % 60), (int)(secs % 60));
}

size_t
imap_quote(const char *s, char *out, size_t outlen)
{
	size_t o = 0;

	if (outlen < 3)
		return 0;
	out[o++] = '"';
	for (; *s; s++) {
		if (*s == '\r' || *s == '\n')
			return 0;
		if (o + 4 > outlen)
			return 0;
		if (*s == '"' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o++] = '"';
	out[o] = '\0';
	return o;
}

int
imap_message_id(const char *head, size_t len, char *out, size_t outlen)
{
	return mail_header_field(head, len, "Message-ID", out, outlen, NULL) > 0 ? 0 : -1;
}
