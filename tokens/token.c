/*
 * token.c: submission tokens, as specified in docs/tokens.md. A token is a
 * PASETO v4.public token whose payload is a fixed set of claims naming the
 * message, the role of the copy and an opaque binding to one address, and
 * whose footer carries the signing key's PASERK k4.pid.
 *
 * Issuing writes the JSON with snprintf: every field is validated to come
 * from an alphabet that needs no escaping, so the output is canonical and
 * its length is known in advance (TOKEN_MAX_LEN). Verifying parses with
 * jansson and accepts nothing but the documented claims.
 */
#include "tokens/token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define TOKEN_ID_BYTES      12
#define TOKEN_BINDING_BYTES 12
#define TIME_LEN            20      /* "YYYY-MM-DDTHH:MM:SSZ" */
#define TIME_OFFSET_LEN     25      /* "YYYY-MM-DDTHH:MM:SS+00:00" */
/* Payload and footer buffers: the largest payload is 196 octets and the
 * footer 61; anything a verifier sees beyond these is not one of ours. */
#define PAYLOAD_MAX 256
#define FOOTER_MAX  128
#define CLAIM_COUNT 6

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the instants the fixed
 * four-digit-year format can spell. */
#define TIME_MIN INT64_C(-62167219200)
#define TIME_MAX INT64_C(253402300799)

static void crypto_ready(void)
{
	/* Idempotent; fails only without an entropy source, and then no
	 * token id could be drawn. */
	if (sodium_init() < 0)
		abort();
}

const char *token_status_name(enum token_status s)
{
	switch (s) {
	case TOKEN_VALID:         return "valid";
	case TOKEN_MALFORMED:     return "malformed";
	case TOKEN_BAD_SIGNATURE: return "bad_signature";
	case TOKEN_UNKNOWN_KEY:   return "unknown_key";
	case TOKEN_EXPIRED:       return "expired";
	case TOKEN_REVOKED:       return "revoked";
	case TOKEN_WRONG_ADDRESS: return "wrong_address";
	}
	return "unknown";
}

/* 6 octets of the time in milliseconds, then 6 random ones. The id is
 * the key of the tokens table: ids made close together in time share a
 * prefix and so land on the same few index pages, where random ids would
 * dirty a page of their own each (more written per commit, and at a
 * million rows more cache misses). 48 random bits per millisecond keep
 * them unique. server/base/util.c's public_id_new makes message ids alike. */
void token_new_id(char jti[TOKEN_ID_LEN + 1])
{
	uint8_t raw[TOKEN_ID_BYTES];
	struct timespec ts;
	uint64_t ms;

	crypto_ready();
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 0; i < 6; i++)
		raw[i] = (uint8_t)(ms >> (40 - 8 * i));
	randombytes_buf(raw + 6, sizeof raw - 6);
	sodium_bin2base64(jti, TOKEN_ID_LEN + 1, raw, sizeof raw, B64);
}

/* Domains are case-insensitive (RFC 5321 2.4) and local parts are not, so
 * only the part after the last '@' is folded: "a@b"@Example.org and
 * "a@b"@example.org bind alike, Alice@ and alice@ do not. */
void token_binding(const char *jti, const char *address, char out[TOKEN_BINDING_LEN + 1])
{
	uint8_t digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_state st;
	const char *at = strrchr(address, '@');
	size_t local_len = at != NULL ? (size_t)(at - address) + 1 : strlen(address);
	const char *domain = address + local_len;

	crypto_ready();
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const uint8_t *)jti, strlen(jti));
	crypto_hash_sha256_update(&st, (const uint8_t *)":", 1);
	crypto_hash_sha256_update(&st, (const uint8_t *)address, local_len);
	while (*domain != '\0') {
		uint8_t chunk[64];
		size_t n = 0;

		for (; n < sizeof chunk && domain[n] != '\0'; n++) {
			char c = domain[n];

			chunk[n] = (uint8_t)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
		}
		crypto_hash_sha256_update(&st, chunk, n);
		domain += n;
	}
	crypto_hash_sha256_final(&st, digest);
	sodium_bin2base64(out, TOKEN_BINDING_LEN + 1, digest, TOKEN_BINDING_BYTES, B64);
}

/* --- time ------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date, and back (Howard
 * Hinnant's algorithms, chrono-Compatible Low-Level Date Algorithms). Used
 * instead of timegm/gmtime_r: no locale, no TZ, no 32-bit time_t, exact
 * over the whole 0000..9999 range. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y_r, unsigned *m_r, unsigned *d_r)
{
	int64_t era;
	unsigned doe, yoe, doy, mp, m;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	m = mp < 10 ? mp + 3 : mp - 9;
	*d_r = doy - (153 * mp + 2) / 5 + 1;
	*m_r = m;
	*y_r = (int64_t)yoe + era * 400 + (m <= 2);
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
	static const unsigned char dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static void put_digits(char *out, unsigned v, size_t n)
{
	while (n-- > 0) {
		out[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

/* Times outside 0000..9999 cannot be spelled with four year digits; they
 * are clamped to the nearest end rather than written in a longer form a
 * strict parser would refuse. token_issue never gets there. */
void token_time_format(int64_t t, char out[21])
{
	int64_t days, secs, y;
	unsigned m, d;

	if (t < TIME_MIN)
		t = TIME_MIN;
	if (t > TIME_MAX)
		t = TIME_MAX;
	days = (t >= 0 ? t : t - 86399) / 86400;
	secs = t - days * 86400;
	civil_from_days(days, &y, &m, &d);
	put_digits(out, (unsigned)y, 4);
	out[4] = '-';
	put_digits(out + 5, m, 2);
	out[7] = '-';
	put_digits(out + 8, d, 2);
	out[10] = 'T';
	put_digits(out + 11, (unsigned)(secs / 3600), 2);
	out[13] = ':';
	put_digits(out + 14, (unsigned)(secs / 60 % 60), 2);
	out[16] = ':';
	put_digits(out + 17, (unsigned)(secs % 60), 2);
	out[19] = 'Z';
	out[20] = '\0';
}

static bool read_digits(const char *s, size_t n, unsigned *v_r)
{
	unsigned v = 0;

	for (size_t k = 0; k < n; k++) {
		if (s[k] < '0' || s[k] > '9')
			return false;
		v = v * 10 + (unsigned)(s[k] - '0');
	}
	*v_r = v;
	return true;
}

/* RFC 3339 section 5.6 date-time, restricted to UTC and whole seconds:
 *   YYYY-MM-DDTHH:MM:SSZ        (what token_time_format writes)
 *   YYYY-MM-DDTHH:MM:SS+00:00   (the same instant; PASETO's examples use it)
 * Refused: fractional seconds, other offsets, "-00:00" (RFC 3339 4.3:
 * offset unknown), lower-case 't'/'z', leap second 60 (not representable in
 * Unix time), and any date that does not exist (2023-02-29). */
int token_time_parse(const char *s, size_t len, int64_t *t_r)
{
	unsigned y, mo, d, h, mi, se;

	if (s == NULL)
		return -1;
	if (len == TIME_LEN) {
		if (s[19] != 'Z')
			return -1;
	} else if (len == TIME_OFFSET_LEN) {
		if (memcmp(s + 19, "+00:00", 6) != 0)
			return -1;
	} else {
		return -1;
	}
	if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
		return -1;
	if (!read_digits(s, 4, &y) || !read_digits(s + 5, 2, &mo) ||
	    !read_digits(s + 8, 2, &d) || !read_digits(s + 11, 2, &h) ||
	    !read_digits(s + 14, 2, &mi) || !read_digits(s + 17, 2, &se))
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
	    h > 23 || mi > 59 || se > 59)
		return -1;
	if (t_r != NULL)
		*t_r = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
	return 0;
}

/* --- claim syntax ------------------------------------------------------ */

static bool is_b64url_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static bool valid_b64url(const char *s, size_t len, size_t want)
{
	if (len != want)
		return false;
	for (size_t k = 0; k < len; k++) {
		if (!is_b64url_char(s[k]))
			return false;
	}
	return true;
}

/* Message public ids use the base64url alphabet, which needs no JSON escape. */
static bool valid_mid(const char *s, size_t len)
{
	if (len < 1 || len > TOKEN_MID_MAX)
		return false;
	for (size_t k = 0; k < len; k++) {
		if (!is_b64url_char(s[k]))
			return false;
	}
	return true;
}

/* Printable ASCII without the two characters JSON would have to escape;
 * with that the snprintf'd payload is valid, canonical JSON. */
static bool valid_issuer(const char *s, size_t len)
{
	if (len < 1 || len > TOKEN_ISSUER_MAX)
		return false;
	for (size_t k = 0; k < len; k++) {
		if (s[k] < 0x20 || s[k] > 0x7e || s[k] == '"' || s[k] == '\\')
			return false;
	}
	return true;
}

/* --- issue ------------------------------------------------------------- */

size_t token_issue(const struct token_key *key, const char *mid, const char *address,
    enum token_role role, const char *issuer, int64_t now, int64_t lifetime,
    struct token_claims *c_r, char *out, size_t outmax)
{
	char jti[TOKEN_ID_LEN + 1];

	/* An expiry the format cannot spell is a configuration error. */
	if (now < 0 || now > TIME_MAX || lifetime <= 0 || lifetime > TIME_MAX - now)
		return 0;
	token_new_id(jti);
	return token_issue_as(key, jti, now + lifetime, mid, address, role, issuer, c_r, out, outmax);
}

size_t token_issue_as(const struct token_key *key, const char *jti, int64_t exp, const char *mid,
    const char *address, enum token_role role, const char *issuer, struct token_claims *c_r,
    char *out, size_t outmax)
{
	struct token_claims c;
	char payload[PAYLOAD_MAX], footer[FOOTER_MAX], exptext[TIME_LEN + 1];
	int plen, flen;
	size_t len;

	if (key == NULL || !key->has_secret || jti == NULL || mid == NULL || address == NULL ||
	    issuer == NULL || out == NULL)
		return 0;
	if (role != TOKEN_ROLE_RECIPIENT && role != TOKEN_ROLE_SENDER)
		return 0;
	if (!valid_b64url(jti, strnlen(jti, TOKEN_ID_LEN + 1), TOKEN_ID_LEN) ||
	    !valid_mid(mid, strnlen(mid, TOKEN_MID_MAX + 1)) ||
	    !valid_issuer(issuer, strnlen(issuer, TOKEN_ISSUER_MAX + 1)) || address[0] == '\0')
		return 0;
	if (exp <= 0 || exp > TIME_MAX)
		return 0;

	memset(&c, 0, sizeof c);
	memcpy(c.jti, jti, TOKEN_ID_LEN);
	strcpy(c.mid, mid);
	token_binding(c.jti, address, c.binding);
	strcpy(c.iss, issuer);
	c.role = role;
	c.exp = exp;
	memcpy(c.kid, key->kid, sizeof c.kid);
	token_time_format(c.exp, exptext);

	/* The key order is part of the specification (docs/tokens.md); keep
	 * it and the length bound in TOKEN_MAX_LEN in step with this line. */
	plen = snprintf(payload, sizeof payload,
	    "{\"iss\":\"%s\",\"jti\":\"%s\",\"mid\":\"%s\",\"sub\":\"%s\",\"rol\":\"%s\",\"exp\":\"%s\"}",
	    c.iss, c.jti, c.mid, c.binding, role == TOKEN_ROLE_SENDER ? "s" : "r", exptext);
	flen = snprintf(footer, sizeof footer, "{\"kid\":\"%s\"}", c.kid);
	if (plen < 0 || (size_t)plen >= sizeof payload || flen < 0 || (size_t)flen >= sizeof footer)
		return 0;
	if (paseto_v4_sign(key->sk, (const uint8_t *)payload, (size_t)plen,
	    (const uint8_t *)footer, (size_t)flen, NULL, 0, out, outmax, &len) != PASETO_OK)
		return 0;
	if (c_r != NULL)
		*c_r = c;
	return len;
}

/* --- verify ------------------------------------------------------------ */

/* The footer must be exactly {"kid":"k4.pid.<44>"}: it is read before the
 * signature is checked, so it gets no latitude. */
static bool parse_footer(const uint8_t *f, size_t flen, char kid[PASERK_K4_PID_LEN + 1])
{
	json_error_t err;
	json_t *root = json_loadb((const char *)f, flen, JSON_REJECT_DUPLICATES, &err);
	json_t *v;
	bool ok = false;

	if (root == NULL)
		return false;
	v = json_object_get(root, "kid");
	if (json_is_object(root) && json_object_size(root) == 1 && json_is_string(v) &&
	    json_string_length(v) == PASERK_K4_PID_LEN &&
	    memcmp(json_string_value(v), "k4.pid.", 7) == 0 &&
	    valid_b64url(json_string_value(v) + 7, PASERK_K4_PID_LEN - 7, PASERK_K4_PID_LEN - 7)) {
		memcpy(kid, json_string_value(v), PASERK_K4_PID_LEN + 1);
		ok = true;
	}
	json_decref(root);
	return ok;
}

static bool get_string(json_t *obj, const char *name, const char **s_r, size_t *len_r)
{
	json_t *v = json_object_get(obj, name);

	if (!json_is_string(v))
		return false;
	*s_r = json_string_value(v);
	*len_r = json_string_length(v);
	return true;
}

/* Exactly the six documented claims, each with its documented syntax.
 * Unknown claims are refused rather than ignored: only this code issues
 * these tokens, so an extra claim means a different format. */
static bool parse_claims(const uint8_t *m, size_t mlen, struct token_claims *c)
{
	json_error_t err;
	json_t *root = json_loadb((const char *)m, mlen, JSON_REJECT_DUPLICATES, &err);
	const char *iss, *jti, *mid, *sub, *rol, *exp;
	size_t iss_n, jti_n, mid_n, sub_n, rol_n, exp_n;
	int64_t t;
	bool ok = false;

	if (root == NULL)
		return false;
	if (!json_is_object(root) || json_object_size(root) != CLAIM_COUNT)
		goto out;
	if (!get_string(root, "iss", &iss, &iss_n) || !get_string(root, "jti", &jti, &jti_n) ||
	    !get_string(root, "mid", &mid, &mid_n) || !get_string(root, "sub", &sub, &sub_n) ||
	    !get_string(root, "rol", &rol, &rol_n) || !get_string(root, "exp", &exp, &exp_n))
		goto out;
	if (!valid_issuer(iss, iss_n) || !valid_b64url(jti, jti_n, TOKEN_ID_LEN) ||
	    !valid_mid(mid, mid_n) || !valid_b64url(sub, sub_n, TOKEN_BINDING_LEN) ||
	    rol_n != 1 || (rol[0] != 'r' && rol[0] != 's') ||
	    token_time_parse(exp, exp_n, &t) != 0)
		goto out;
	memcpy(c->iss, iss, iss_n + 1);
	memcpy(c->jti, jti, jti_n + 1);
	memcpy(c->mid, mid, mid_n + 1);
	memcpy(c->binding, sub, sub_n + 1);
	c->role = rol[0] == 's' ? TOKEN_ROLE_SENDER : TOKEN_ROLE_RECIPIENT;
	c->exp = t;
	ok = true;
out:
	json_decref(root);
	return ok;
}

bool token_key_id(const char *token, size_t len, char kid[PASERK_K4_PID_LEN + 1])
{
	uint8_t footer[FOOTER_MAX];
	size_t flen;

	kid[0] = '\0';
	if (token == NULL || len > TOKEN_MAX_LEN ||
	    paseto_v4_footer(token, len, footer, sizeof footer, &flen) != PASETO_OK)
		return false;
	return parse_footer(footer, flen, kid);
}

bool token_unverified_issuer(const char *token, size_t len, char iss[TOKEN_ISSUER_MAX + 1])
{
	static const char header[] = "v4.public.";
	uint8_t body[PAYLOAD_MAX + crypto_sign_BYTES];
	const char *p, *dot;
	size_t blen = 0;
	struct token_claims c;

	iss[0] = '\0';
	if (token == NULL || len > TOKEN_MAX_LEN || len < sizeof(header) - 1 ||
	    memcmp(token, header, sizeof(header) - 1) != 0)
		return false;
	p = token + sizeof(header) - 1;
	dot = memchr(p, '.', len - (size_t)(p - token));
	if (sodium_base642bin(body, sizeof body, p, dot ? (size_t)(dot - p) : len - (size_t)(p - token), NULL,
	    &blen, NULL, B64) != 0 || blen <= crypto_sign_BYTES)
		return false;
	memset(&c, 0, sizeof c);
	if (!parse_claims(body, blen - crypto_sign_BYTES, &c))
		return false;
	memcpy(iss, c.iss, sizeof c.iss);
	return true;
}

enum token_status token_verify(const char *token, size_t len, const struct keyring *ring,
    int64_t now, const char *expected_address, token_revoked_fn *is_revoked, void *ctx,
    struct token_claims *claims_r)
{
	struct token_claims c;
	uint8_t footer[FOOTER_MAX], payload[PAYLOAD_MAX];
	size_t flen, plen;
	const struct token_key *key;
	enum paseto_result r;
	enum token_status st = TOKEN_MALFORMED;

	crypto_ready();
	memset(&c, 0, sizeof c);
	/* Ours are never longer; a bigger input is refused before any work. */
	if (token == NULL || len > TOKEN_MAX_LEN)
		goto out;
	if (paseto_v4_footer(token, len, footer, sizeof footer, &flen) != PASETO_OK ||
	    !parse_footer(footer, flen, c.kid))
		goto out;

	key = ring != NULL ? keyring_find(ring, c.kid) : NULL;
	if (key == NULL) {
		st = TOKEN_UNKNOWN_KEY;
		goto out;
	}
	/* Implicit assertion empty: a standard PASETO library verifies these
	 * tokens with nothing but the public key. */
	r = paseto_v4_verify(key->pk, token, len, NULL, 0, payload, sizeof payload, &plen);
	if (r == PASETO_BAD_SIGNATURE) {
		st = TOKEN_BAD_SIGNATURE;
		goto out;
	}
	if (r != PASETO_OK || !parse_claims(payload, plen, &c))
		goto out;   /* MALFORMED: signed by us, yet not our format */

	if (now >= c.exp)
		st = TOKEN_EXPIRED;
	else if (is_revoked != NULL && is_revoked(c.jti, ctx))
		st = TOKEN_REVOKED;
	else if (expected_address != NULL) {
		char want[TOKEN_BINDING_LEN + 1];

		token_binding(c.jti, expected_address, want);
		/* Constant time: the binding must not leak through timing how
		 * close a guessed address came. */
		st = sodium_memcmp(want, c.binding, TOKEN_BINDING_LEN) == 0
		    ? TOKEN_VALID : TOKEN_WRONG_ADDRESS;
	} else
		st = TOKEN_VALID;
out:
	if (claims_r != NULL)
		*claims_r = c;
	return st;
}
