/*
 * submit_token_answer.c: reads submitd's API answers for the Dovecot plugin
 * (see submit_token_answer.h). A small recursive-descent JSON reader that
 * knows only the members the plugin needs and skips the rest; every read is
 * bounded by the input's end, a nesting limit and the size of the field it
 * fills, so an answer from a broken or hostile server ends in -1, never in
 * a crash or an unbounded allocation (it allocates nothing).
 */
#include "submit_token_answer.h"

#include <string.h>

struct reader {
	const char *p, *end;
	unsigned int seen;      /* the known members read so far (slot bits) */
};

/* Where a member's value goes: its buffer, or the size, or nowhere. */
enum slot_kind { SLOT_SKIP, SLOT_STRING, SLOT_SIZE, SLOT_MESSAGE };

struct slot {
	enum slot_kind kind;
	char *buf;
	size_t cap;
	unsigned int bit;       /* for "appears once" */
};

static void
skip_ws(struct reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int
hex4(struct reader *r, unsigned int *out)
{
	unsigned int v = 0;

	if (r->end - r->p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = *r->p++;
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned int)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned int)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned int)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* Appends one octet to dst (NULL: nothing is kept); -1 when it is full. */
static int
put(char *dst, size_t cap, size_t *n, unsigned char c)
{
	if (dst == NULL)
		return 0;
	if (*n + 1 >= cap)
		return -1;
	dst[(*n)++] = (char)c;
	return 0;
}

static int
put_utf8(char *dst, size_t cap, size_t *n, unsigned int cp)
{
	unsigned char b[4];
	size_t k;

	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		k = 1;
	} else if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | (cp >> 6));
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | (cp >> 12));
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		b[0] = (unsigned char)(0xf0 | (cp >> 18));
		b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	for (size_t i = 0; i < k; i++)
		if (put(dst, cap, n, b[i]) < 0)
			return -1;
	return 0;
}

/* A JSON string (RFC 8259 section 7) at r->p, decoded into dst (cap octets
 * with the NUL; NULL to skip it). A NUL, raw control character, bad escape
 * or lone surrogate is -1. */
static int
read_string(struct reader *r, char *dst, size_t cap)
{
	size_t n = 0;

	if (r->p >= r->end || *r->p != '"')
		return -1;
	r->p++;
	while (r->p < r->end) {
		unsigned char c = (unsigned char)*r->p++;
		unsigned int cp, lo;

		if (c == '"') {
			if (dst != NULL)
				dst[n] = '\0';
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c != '\\') {
			if (put(dst, cap, &n, c) < 0)
				return -1;
			continue;
		}
		if (r->p >= r->end)
			return -1;
		c = (unsigned char)*r->p++;
		switch (c) {
		case '"': case '\\': case '/':
			break;
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u':
			if (hex4(r, &cp) < 0 || cp == 0 || (cp >= 0xdc00 && cp <= 0xdfff))
				return -1;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u')
					return -1;
				r->p += 2;
				if (hex4(r, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
					return -1;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (put_utf8(dst, cap, &n, cp) < 0)
				return -1;
			continue;
		default:
			return -1;
		}
		if (put(dst, cap, &n, c) < 0)
			return -1;
	}
	return -1;
}

/* A JSON number; with size != NULL it must be a non-negative integer that
 * fits in 53 bits (what a JSON reader anywhere can represent exactly). */
static int
read_number(struct reader *r, uint64_t *size)
{
	uint64_t v = 0;
	bool neg = false, frac = false;
	const char *digits;

	if (r->p < r->end && *r->p == '-') {
		neg = true;
		r->p++;
	}
	digits = r->p;
	while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
		if (v > (UINT64_C(1) << 53))
			return -1;
		v = v * 10 + (uint64_t)(*r->p - '0');
		r->p++;
	}
	if (r->p == digits || (*digits == '0' && r->p - digits > 1))
		return -1;
	if (r->p < r->end && *r->p == '.') {
		frac = true;
		r->p++;
		digits = r->p;
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
		if (r->p == digits)
			return -1;
	}
	if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
		frac = true;
		r->p++;
		if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
			r->p++;
		digits = r->p;
		while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
			r->p++;
		if (r->p == digits)
			return -1;
	}
	if (size != NULL) {
		if (neg || frac || v > (UINT64_C(1) << 53))
			return -1;
		*size = v;
	}
	return 0;
}

static int read_object(struct reader *r, int depth, int level, struct submit_token_answer *out);

static int
read_literal(struct reader *r, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return -1;
	r->p += n;
	return 0;
}

/* Any JSON value, skipped. */
static int
skip_value(struct reader *r, int depth)
{
	if (depth > SUBMIT_TOKEN_ANSWER_MAX_DEPTH || r->p >= r->end)
		return -1;
	switch (*r->p) {
	case '{':
		return read_object(r, depth, 2, NULL);
	case '[':
		r->p++;
		skip_ws(r);
		if (r->p < r->end && *r->p == ']') {
			r->p++;
			return 0;
		}
		for (;;) {
			skip_ws(r);
			if (skip_value(r, depth + 1) < 0)
				return -1;
			skip_ws(r);
			if (r->p >= r->end)
				return -1;
			if (*r->p == ']') {
				r->p++;
				return 0;
			}
			if (*r->p++ != ',')
				return -1;
		}
	case '"':
		return read_string(r, NULL, 0);
	case 't':
		return read_literal(r, "true");
	case 'f':
		return read_literal(r, "false");
	case 'n':
		return read_literal(r, "null");
	default:
		return read_number(r, NULL);
	}
}

/* The slot of member `key` of an object at `level` (0: the answer, 1: its
 * "message", 2: anything else). */
static struct slot
slot_of(const char *key, int level, struct submit_token_answer *out)
{
	struct slot s = { SLOT_SKIP, NULL, 0, 0 };

	if (out == NULL || level > 1)
		return s;
	if (level == 0) {
		if (strcmp(key, "result") == 0)
			s = (struct slot){ SLOT_STRING, out->result, sizeof(out->result), 1u << 0 };
		else if (strcmp(key, "role") == 0)
			s = (struct slot){ SLOT_STRING, out->role, sizeof(out->role), 1u << 1 };
		else if (strcmp(key, "address") == 0)
			s = (struct slot){ SLOT_STRING, out->address, sizeof(out->address), 1u << 2 };
		else if (strcmp(key, "message") == 0)
			s = (struct slot){ SLOT_MESSAGE, NULL, 0, 1u << 3 };
	} else {
		if (strcmp(key, "id") == 0)
			s = (struct slot){ SLOT_STRING, out->message_id, sizeof(out->message_id), 1u << 4 };
		else if (strcmp(key, "received_at") == 0)
			s = (struct slot){ SLOT_STRING, out->received_at, sizeof(out->received_at), 1u << 5 };
		else if (strcmp(key, "sha256") == 0)
			s = (struct slot){ SLOT_STRING, out->sha256, sizeof(out->sha256), 1u << 6 };
		else if (strcmp(key, "size") == 0)
			s = (struct slot){ SLOT_SIZE, NULL, 0, 1u << 7 };
	}
	return s;
}

static int
read_object(struct reader *r, int depth, int level, struct submit_token_answer *out)
{
	char key[64];

	if (depth > SUBMIT_TOKEN_ANSWER_MAX_DEPTH || r->p >= r->end || *r->p != '{')
		return -1;
	r->p++;
	skip_ws(r);
	if (r->p < r->end && *r->p == '}') {
		r->p++;
		return 0;
	}
	for (;;) {
		struct slot s;
		int rc;

		skip_ws(r);
		/* a key too long for `key` is no member we know: skip it */
		{
			struct reader probe = *r;

			if (read_string(&probe, key, sizeof(key)) < 0) {
				if (read_string(r, NULL, 0) < 0)
					return -1;
				key[0] = '\0';
			} else {
				*r = probe;
			}
		}
		skip_ws(r);
		if (r->p >= r->end || *r->p++ != ':')
			return -1;
		skip_ws(r);
		if (r->p >= r->end)
			return -1;
		s = slot_of(key, level, out);
		if (s.bit != 0) {
			if ((r->seen & s.bit) != 0)
				return -1;
			r->seen |= s.bit;
		}
		switch (s.kind) {
		case SLOT_STRING:
			rc = read_string(r, s.buf, s.cap);
			break;
		case SLOT_SIZE:
			rc = read_number(r, &out->size);
			out->has_size = rc == 0;
			break;
		case SLOT_MESSAGE:
			rc = read_object(r, depth + 1, 1, out);
			break;
		default:
			rc = skip_value(r, depth + 1);
			break;
		}
		if (rc < 0)
			return -1;
		skip_ws(r);
		if (r->p >= r->end)
			return -1;
		if (*r->p == '}') {
			r->p++;
			return 0;
		}
		if (*r->p++ != ',')
			return -1;
	}
}

int
submit_token_answer_parse(const char *data, size_t len, struct submit_token_answer *out)
{
	struct reader r = { data, data + len, 0 };

	memset(out, 0, sizeof(*out));
	if (data == NULL || len > SUBMIT_TOKEN_ANSWER_MAX)
		return -1;
	skip_ws(&r);
	if (read_object(&r, 0, 0, out) < 0) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	skip_ws(&r);
	if (r.p != r.end) {
		memset(out, 0, sizeof(*out));
		return -1;
	}
	return 0;
}

enum submit_token_class
submit_token_refusal_class(unsigned int status, const char *result)
{
	static const struct {
		unsigned int status;
		const char *result;
		enum submit_token_class c;
	} map[] = {
		/* docs/api.md section 6: one status per result name */
		{ 400, "malformed", SUBMIT_TOKEN_MALFORMED },
		{ 400, "missing_token", SUBMIT_TOKEN_MALFORMED },
		{ 422, "bad_signature", SUBMIT_TOKEN_BADSIGNATURE },
		{ 404, "unknown_key", SUBMIT_TOKEN_UNKNOWNKEY },
		{ 410, "expired", SUBMIT_TOKEN_EXPIRED },
		{ 403, "revoked", SUBMIT_TOKEN_REVOKED },
		{ 409, "wrong_address", SUBMIT_TOKEN_WRONGADDRESS },
		{ 410, "purged", SUBMIT_TOKEN_PURGED },
	};

	if (result == NULL)
		return SUBMIT_TOKEN_UNAVAILABLE;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].status == status && strcmp(map[i].result, result) == 0)
			return map[i].c;
	return SUBMIT_TOKEN_UNAVAILABLE;
}

static bool
is_lower_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

enum submit_token_class
submit_token_answer_check(const struct submit_token_answer *a)
{
	time_t t;

	if (strcmp(a->result, "valid") != 0 || a->message_id[0] == '\0' || !a->has_size ||
	    !is_lower_hex(a->sha256, 64) || submit_token_parse_time(a->received_at, &t) < 0)
		return SUBMIT_TOKEN_UNAVAILABLE;
	if (strcmp(a->role, "sender") != 0)
		return SUBMIT_TOKEN_WRONGROLE;
	return SUBMIT_TOKEN_OK;
}

const char *
submit_token_class_code(enum submit_token_class c)
{
	switch (c) {
	case SUBMIT_TOKEN_OK: return NULL;
	case SUBMIT_TOKEN_MALFORMED: return "XSUBMITTOKEN-MALFORMED";
	case SUBMIT_TOKEN_BADSIGNATURE: return "XSUBMITTOKEN-BADSIGNATURE";
	case SUBMIT_TOKEN_UNKNOWNKEY: return "XSUBMITTOKEN-UNKNOWNKEY";
	case SUBMIT_TOKEN_EXPIRED: return "XSUBMITTOKEN-EXPIRED";
	case SUBMIT_TOKEN_REVOKED: return "XSUBMITTOKEN-REVOKED";
	case SUBMIT_TOKEN_WRONGADDRESS: return "XSUBMITTOKEN-WRONGADDRESS";
	case SUBMIT_TOKEN_WRONGROLE: return "XSUBMITTOKEN-WRONGROLE";
	case SUBMIT_TOKEN_PURGED: return "XSUBMITTOKEN-PURGED";
	case SUBMIT_TOKEN_TOOBIG: return "XSUBMITTOKEN-TOOBIG";
	case SUBMIT_TOKEN_UNAVAILABLE: return "XSUBMITTOKEN-UNAVAILABLE";
	}
	return "XSUBMITTOKEN-UNAVAILABLE";
}

bool
submit_token_syntax_ok(const char *token)
{
	size_t n = 0;

	for (; token[n] != '\0'; n++) {
		char c = token[n];

		if (n >= SUBMIT_TOKEN_MAX_LEN)
			return false;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return n > 0;
}

static int
digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int
submit_token_parse_time(const char *text, time_t *out)
{
	static const int mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, s;
	const char *p = text + 19;
	int64_t days;

	if (strlen(text) < 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' ||
	    text[13] != ':' || text[16] != ':' ||
	    digits(text, 4, &y) < 0 || digits(text + 5, 2, &mo) < 0 || digits(text + 8, 2, &d) < 0 ||
	    digits(text + 11, 2, &h) < 0 || digits(text + 14, 2, &mi) < 0 || digits(text + 17, 2, &s) < 0)
		return -1;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (strcmp(p, "Z") != 0)
		return -1;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) ||
	    h > 23 || mi > 59 || s > 60)
		return -1;
	/* days from the civil date (proleptic Gregorian), without timegm() and
	 * the TZ environment it may consult */
	int yy = mo <= 2 ? y - 1 : y;
	int era = yy / 400;
	int yoe = yy - era * 400;
	int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	days = (int64_t)era * 146097 + doe - 719468;
	*out = (time_t)(days * 86400 + h * 3600 + mi * 60 + s);
	return 0;
}
