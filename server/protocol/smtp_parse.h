/*
 * smtp_parse.h: pure, bounded parsers for the SMTP command side: finding a
 * command line in a buffer, splitting verb and arguments, the MAIL/RCPT
 * paths (RFC 5321 4.1.2 Mailbox, RFC 6531 UTF-8) and their parameters,
 * and BDAT arguments. Nothing here touches a socket or allocates.
 */
#ifndef SUBMITD_SMTP_PARSE_H
#define SUBMITD_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_LOCAL_MAX   64    /* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX  255   /* RFC 5321 4.5.3.1.2 */
#define SMTP_ADDRESS_MAX (SMTP_LOCAL_MAX + 1 + SMTP_DOMAIN_MAX)

/* Result of looking for one CRLF-terminated line at the start of a buffer. */
enum smtp_line_result {
	SMTP_LINE_MORE = 0,    /* no CRLF yet and not over the limit: read more */
	SMTP_LINE_OK,          /* a line: *line_len_r octets, *consumed_r incl. CRLF */
	SMTP_LINE_TOO_LONG,    /* no CRLF within max octets (CRLF included) */
	SMTP_LINE_BARE_LF,     /* LF not preceded by CR; *consumed_r up to the LF */
	SMTP_LINE_BARE_CR,     /* CR followed by something other than LF */
	SMTP_LINE_NUL,         /* a NUL octet in the line; *consumed_r up to the line end */
};

/* Look at buf[0..len) for one command line of at most max octets
 * including CRLF (RFC 5321 4.5.3.1.4: 512). For every result but MORE and
 * TOO_LONG, *consumed_r says how much to drop so that parsing resumes after
 * the offending line. */
enum smtp_line_result smtp_line_find(const char *buf, size_t len, size_t max,
    size_t *line_len_r, size_t *consumed_r);

enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO, SMTP_VERB_EHLO, SMTP_VERB_MAIL, SMTP_VERB_RCPT,
	SMTP_VERB_DATA, SMTP_VERB_BDAT, SMTP_VERB_RSET, SMTP_VERB_NOOP,
	SMTP_VERB_QUIT, SMTP_VERB_HELP, SMTP_VERB_VRFY, SMTP_VERB_EXPN,
	SMTP_VERB_STARTTLS, SMTP_VERB_AUTH,
	SMTP_VERB_COUNT
};

struct smtp_command {
	enum smtp_verb verb;
	const char *args;      /* points into the line, after the verb and one SP */
	size_t args_len;       /* 0 when there are no arguments */
};

/* Split a command line (without CRLF) into verb and arguments. Verbs are
 * case-insensitive; the verb ends at SP or end of line. Trailing spaces of
 * the arguments are dropped. Never fails: an unknown verb is VERB_UNKNOWN. */
void smtp_command_parse(const char *line, size_t len, struct smtp_command *cmd_r);

/* Verb name, upper case ("MAIL"), "UNKNOWN" for VERB_UNKNOWN. */
const char *smtp_verb_name(enum smtp_verb v);

enum smtp_parse_result {
	SMTP_PARSE_OK = 0,
	SMTP_PARSE_SYNTAX,        /* 501 5.5.4 / 5.5.2: syntax error in arguments */
	SMTP_PARSE_BAD_ADDRESS,   /* 553 5.1.3 (RCPT) / 553 5.1.7 (MAIL): not a valid mailbox */
	SMTP_PARSE_TOO_LONG,      /* 553 5.1.3: local part > 64 or domain > 255 */
	SMTP_PARSE_NON_ASCII,     /* 553 5.6.7: UTF-8 address without SMTPUTF8 */
	SMTP_PARSE_BAD_PARAM,     /* 555 5.5.4: unknown or malformed parameter */
};

enum smtp_body_type { SMTP_BODY_UNSET = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME, SMTP_BODY_BINARYMIME };

struct smtp_mail {
	char address[SMTP_ADDRESS_MAX + 1];  /* as given between <>, "" for <> */
	bool null_sender;
	int64_t size;                      /* SIZE=, -1 when absent */
	enum smtp_body_type body;          /* BODY=, UNSET when absent */
	bool smtputf8;                     /* SMTPUTF8 keyword given */
	bool has_auth_param;               /* AUTH=<...> given (RFC 4954 5); ignored */
};

struct smtp_rcpt {
	char address[SMTP_ADDRESS_MAX + 1];
};

/* Parse the arguments of MAIL ("FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8").
 * "FROM:" is case-insensitive; RFC 5321 allows no space after the colon, and
 * we also accept one, as most servers do. Source routes (@a,@b:) are
 * accepted and dropped (RFC 5321 4.1.2, C.). UTF-8 in the address is allowed
 * only when the SMTPUTF8 parameter is present (checked after the params).
 * *why_r gets a short static reason for the reply text. */
enum smtp_parse_result smtp_mail_parse(const char *args, size_t len,
    struct smtp_mail *m_r, const char **why_r);

/* Parse the arguments of RCPT ("TO:<a@b>"). No parameters are supported
 * (we do not offer DSN). "<Postmaster>" without domain is accepted.
 * utf8_ok says whether the transaction has SMTPUTF8. */
enum smtp_parse_result smtp_rcpt_parse(const char *args, size_t len, bool utf8_ok,
    struct smtp_rcpt *r_r, const char **why_r);

/* Parse a Mailbox (no angle brackets), as used by submitctl and tests:
 * local-part (dot-string or quoted-string) "@" domain (dot-separated labels
 * or an address literal). 0 when valid, else an smtp_parse_result. */
enum smtp_parse_result smtp_mailbox_check(const char *s, size_t len, bool utf8_ok);

/* Parse BDAT arguments "<size> [LAST]" (RFC 3030 2): size is 1*DIGIT, saturating at UINT64_MAX.
 * Returns SMTP_PARSE_OK or SMTP_PARSE_SYNTAX. */
enum smtp_parse_result smtp_bdat_parse(const char *args, size_t len,
    uint64_t *size_r, bool *last_r);

/* Compare two addresses for sender binding the way the database's
 * COLLATE NOCASE does: ASCII case ignored in the local part and the
 * domain, every other octet exact. */
bool smtp_address_equal(const char *a, const char *b);

#endif
