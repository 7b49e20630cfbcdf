/*
 * smtp_checks.h: the invariants of server/protocol/smtp_parse.h, shared by the
 * smtp_* fuzz targets. Each check_* runs one parser on a heap copy of
 * exactly the given octets and then states what the header promises about
 * the result, cross-checking the parsers against each other: an address that
 * MAIL or RCPT accepts must be a Mailbox by smtp_mailbox_check, SMTPUTF8 may
 * only widen what is accepted, and so on.
 */
#ifndef SUBMITD_FUZZ_SMTP_CHECKS_H
#define SUBMITD_FUZZ_SMTP_CHECKS_H

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "server/protocol/smtp_parse.h"

static inline unsigned char
fz_lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* An accepted address: bounded, NUL-free, split by its last "@" into a
 * local part of at most 64 and a domain of at most 255 octets, and equal to
 * itself under smtp_address_equal, also with its ASCII letters in the other
 * case (COLLATE NOCASE, as the database), and unequal once a letter of its
 * local part is changed. */
static inline void
check_address(const char *addr, bool utf8_ok)
{
	size_t n = strnlen(addr, SMTP_ADDRESS_MAX + 1);
	const char *at = strrchr(addr, '@');
	char upper[SMTP_ADDRESS_MAX + 1];

	FUZZ_CHECK(n <= SMTP_ADDRESS_MAX);
	FUZZ_CHECK(at != NULL);
	FUZZ_CHECK((size_t)(at - addr) <= SMTP_LOCAL_MAX);
	FUZZ_CHECK(strlen(at + 1) <= SMTP_DOMAIN_MAX);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)addr[i] >= 0x20 && addr[i] != 0x7f);
	FUZZ_CHECK(smtp_mailbox_check(addr, n, utf8_ok) == SMTP_PARSE_OK);
	FUZZ_CHECK(smtp_address_equal(addr, addr));
	memcpy(upper, addr, n + 1);
	for (char *p = upper + (at - addr); *p != '\0'; p++) {
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	}
	FUZZ_CHECK(smtp_address_equal(addr, upper));
	FUZZ_CHECK(smtp_address_equal(upper, addr));
	/* the local part ignores ASCII case too, but no more than case */
	if ((addr[0] >= 'a' && addr[0] <= 'z') || (addr[0] >= 'A' && addr[0] <= 'Z')) {
		upper[0] = (char)(upper[0] ^ 0x20);
		FUZZ_CHECK(smtp_address_equal(addr, upper));
		upper[0] = upper[0] == 'z' || upper[0] == 'Z' ? '0' : (char)(upper[0] + 1);
		FUZZ_CHECK(!smtp_address_equal(addr, upper));
	}
	FUZZ_CHECK(!smtp_address_equal(addr, "postmaster"));
	FUZZ_CHECK(!smtp_address_equal("x@y", addr) || strcasecmp(addr, "x@y") == 0);
}

static inline bool
valid_result(enum smtp_parse_result r)
{
	return r == SMTP_PARSE_OK || r == SMTP_PARSE_SYNTAX || r == SMTP_PARSE_BAD_ADDRESS ||
	    r == SMTP_PARSE_TOO_LONG || r == SMTP_PARSE_NON_ASCII || r == SMTP_PARSE_BAD_PARAM;
}

/* MAIL arguments. Returns the result; *utf8_r says whether SMTPUTF8 was
 * given (for the RCPTs that follow). */
static inline enum smtp_parse_result
check_mail(const uint8_t *data, size_t size, bool *utf8_r)
{
	char *args = fuzz_dup(data, size);
	struct smtp_mail m;
	const char *why = "unset";
	enum smtp_parse_result r = smtp_mail_parse(args, size, &m, &why);

	FUZZ_CHECK(valid_result(r));
	FUZZ_CHECK((r == SMTP_PARSE_OK) == (why == NULL));
	FUZZ_CHECK(m.size >= -1);
	FUZZ_CHECK(m.body == SMTP_BODY_UNSET || m.body == SMTP_BODY_7BIT ||
	    m.body == SMTP_BODY_8BITMIME || m.body == SMTP_BODY_BINARYMIME);
	if (r == SMTP_PARSE_OK) {
		FUZZ_CHECK(m.null_sender == (m.address[0] == '\0'));
		if (!m.null_sender)
			check_address(m.address, m.smtputf8);
		/* the keyword is case-insensitive: flipping its case changes nothing */
		args[0] = (char)(args[0] ^ 0x20);
		{
			struct smtp_mail m2;

			FUZZ_CHECK(smtp_mail_parse(args, size, &m2, NULL) == SMTP_PARSE_OK);
			FUZZ_CHECK(strcmp(m.address, m2.address) == 0 && m.size == m2.size &&
			    m.body == m2.body && m.smtputf8 == m2.smtputf8);
		}
	} else {
		/* nothing half-filled */
		FUZZ_CHECK(m.address[0] == '\0' && m.size == -1 && !m.smtputf8 && !m.null_sender &&
		    m.body == SMTP_BODY_UNSET && !m.has_auth_param);
	}
	if (r == SMTP_PARSE_NON_ASCII)
		FUZZ_CHECK(!m.smtputf8);
	*utf8_r = r == SMTP_PARSE_OK && m.smtputf8;
	free(args);
	return r;
}

/* RCPT arguments, with and without SMTPUTF8: the flag only ever turns
 * NON_ASCII into OK, and never changes an accepted address. */
static inline enum smtp_parse_result
check_rcpt(const uint8_t *data, size_t size, bool utf8_ok)
{
	char *args = fuzz_dup(data, size);
	struct smtp_rcpt a, b;
	const char *why_a = "unset", *why_b = "unset";
	enum smtp_parse_result ra = smtp_rcpt_parse(args, size, false, &a, &why_a);
	enum smtp_parse_result rb = smtp_rcpt_parse(args, size, true, &b, &why_b);

	FUZZ_CHECK(valid_result(ra) && valid_result(rb));
	FUZZ_CHECK((ra == SMTP_PARSE_OK) == (why_a == NULL));
	FUZZ_CHECK((rb == SMTP_PARSE_OK) == (why_b == NULL));
	FUZZ_CHECK(rb != SMTP_PARSE_NON_ASCII);
	if (ra == SMTP_PARSE_NON_ASCII)
		FUZZ_CHECK(rb == SMTP_PARSE_OK);
	else
		FUZZ_CHECK(ra == rb);
	if (ra == SMTP_PARSE_OK)
		FUZZ_CHECK(strcmp(a.address, b.address) == 0);
	if (rb == SMTP_PARSE_OK) {
		/* RFC 5321 4.1.1.3: "<Postmaster>" is the one address without a domain */
		if (strchr(b.address, '@') == NULL) {
			FUZZ_CHECK(strlen(b.address) == 10);
			for (size_t i = 0; i < 10; i++)
				FUZZ_CHECK(fz_lower((unsigned char)b.address[i]) == (unsigned char)"postmaster"[i]);
		} else {
			check_address(b.address, ra == SMTP_PARSE_OK ? false : true);
		}
	} else {
		FUZZ_CHECK(b.address[0] == '\0');
	}
	if (ra != SMTP_PARSE_OK)
		FUZZ_CHECK(a.address[0] == '\0');
	free(args);
	return utf8_ok ? rb : ra;
}

/* A Mailbox, both ways; SMTPUTF8 only widens. */
static inline enum smtp_parse_result
check_mailbox(const uint8_t *data, size_t size)
{
	char *s = fuzz_dup(data, size);
	enum smtp_parse_result ra = smtp_mailbox_check(s, size, false);
	enum smtp_parse_result rb = smtp_mailbox_check(s, size, true);

	FUZZ_CHECK(valid_result(ra) && valid_result(rb));
	FUZZ_CHECK(rb != SMTP_PARSE_NON_ASCII);
	if (ra == SMTP_PARSE_NON_ASCII)
		FUZZ_CHECK(rb == SMTP_PARSE_OK);
	else
		FUZZ_CHECK(ra == rb);
	free(s);
	return rb;
}

/* BDAT arguments against a straightforward reading of RFC 3030 2:
 * 1*DIGIT [SP "LAST"]. Sizes below 10^18 are exact; larger ones only have to
 * stay large (the parser saturates, and any of them is over every limit). */
static inline void
check_bdat(const uint8_t *data, size_t size)
{
	char *args = fuzz_dup(data, size);
	uint64_t n = 12345, want = 0;
	bool last = true, ok = true, want_last = false;
	size_t nd = 0;
	enum smtp_parse_result r = smtp_bdat_parse(args, size, &n, &last);

	while (nd < size && data[nd] >= '0' && data[nd] <= '9') {
		unsigned d = (unsigned)(data[nd] - '0');

		want = want > (UINT64_MAX - d) / 10 ? UINT64_MAX : want * 10 + d;
		nd++;
	}
	if (nd == 0)
		ok = false;
	else if (nd < size) {
		ok = size - nd == 5 && data[nd] == ' ' && fz_lower(data[nd + 1]) == 'l' &&
		    fz_lower(data[nd + 2]) == 'a' && fz_lower(data[nd + 3]) == 's' && fz_lower(data[nd + 4]) == 't';
		want_last = ok;
	}
	FUZZ_CHECK(r == (ok ? SMTP_PARSE_OK : SMTP_PARSE_SYNTAX));
	if (ok) {
		FUZZ_CHECK(last == want_last);
		if (want < UINT64_C(1000000000000000000))
			FUZZ_CHECK(n == want);
		else
			FUZZ_CHECK(n >= UINT64_C(1000000000000000000));
	}
	else
		FUZZ_CHECK(n == 0 && !last);
	free(args);
}

#endif
