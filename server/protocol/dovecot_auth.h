/*
 * dovecot_auth.h: the client side of Dovecot's auth-client protocol
 * (Dovecot's Design.AuthProtocol, version 1.x), as pure functions: one
 * line from the auth service parsed into a reply, and the lines submitd
 * sends formatted into a buffer. Lines are LF-terminated; fields are
 * separated by TAB and use Dovecot's tab-escaping, where \001 is the
 * escape octet: \001 '1' is \001, 't' TAB, 'r' CR, 'n' LF, '0' NUL, and
 * any other octet stands for itself. No socket, no allocation.
 */
#ifndef SUBMITD_DOVECOT_AUTH_H
#define SUBMITD_DOVECOT_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Dovecot expects its lines to fit 16384 octets; ours and its. */
#define DOVECOT_AUTH_LINE_MAX 16384
/* A mechanism name (RFC 4422 3.1: 20 characters at most). */
#define DOVECOT_MECH_NAME_MAX 20
/* The protocol major version this client speaks; the minor it announces. */
#define DOVECOT_AUTH_MAJOR 1
#define DOVECOT_AUTH_MINOR 2

enum dovecot_auth_cmd {
	DOVECOT_CMD_UNKNOWN = 0,    /* to be ignored (the protocol's rule) */
	DOVECOT_CMD_VERSION,
	DOVECOT_CMD_MECH,
	DOVECOT_CMD_SPID,
	DOVECOT_CMD_CUID,
	DOVECOT_CMD_COOKIE,
	DOVECOT_CMD_DONE,
	DOVECOT_CMD_OK,
	DOVECOT_CMD_CONT,
	DOVECOT_CMD_FAIL,
};

/* MECH parameters. */
#define DOVECOT_MECH_ANONYMOUS      0x01u
#define DOVECOT_MECH_PLAINTEXT      0x02u
#define DOVECOT_MECH_DICTIONARY     0x04u
#define DOVECOT_MECH_ACTIVE         0x08u
#define DOVECOT_MECH_FORWARD_SECRECY 0x10u
#define DOVECOT_MECH_MUTUAL_AUTH    0x20u
#define DOVECOT_MECH_CHANNEL_BINDING 0x40u
#define DOVECOT_MECH_PRIVATE        0x80u   /* never advertised to clients */

enum dovecot_auth_parse {
	DOVECOT_PARSE_OK = 0,
	DOVECOT_PARSE_BAD,          /* a known command with wrong fields */
	DOVECOT_PARSE_TOO_LONG,     /* longer than DOVECOT_AUTH_LINE_MAX */
};

/*
 * One parsed line. Strings point into the caller's line buffer, which
 * dovecot_auth_parse_line rewrites (fields end in NUL, escapes resolved).
 */
struct dovecot_auth_reply {
	enum dovecot_auth_cmd cmd;
	unsigned major, minor;              /* VERSION */
	char mech[DOVECOT_MECH_NAME_MAX + 1];  /* MECH, upper case as sent */
	unsigned mech_flags;                /* MECH */
	uint32_t id;                        /* OK, CONT, FAIL: the request (never 0) */
	const char *data;                   /* CONT: the base64 challenge ("" if none) */
	const char *user;                   /* OK, FAIL: user=, or NULL */
	const char *reason;                 /* FAIL, OK: reason=, or NULL */
	bool temp;                          /* FAIL: code=temp_fail (or the old "temp") */
	bool nologin;                       /* OK: nologin or proxy: not an access grant */
};

/*
 * Parse one line, without its LF (a CR before it is not removed: the
 * protocol has none). The line is rewritten in place, and line[len] (the
 * LF's place) must be writable: the last field's NUL may go there. An unknown command
 * is DOVECOT_PARSE_OK with cmd DOVECOT_CMD_UNKNOWN; unknown optional
 * parameters are skipped. A field whose unescaping yields NUL is BAD.
 */
enum dovecot_auth_parse dovecot_auth_parse_line(char *line, size_t len, struct dovecot_auth_reply *out);

/* Resolve the tab-escapes of s[0..len) in place; returns the new length,
 * or -1 if the result would hold a NUL or s ends in a lone \001. */
long dovecot_auth_unescape(char *s, size_t len);

/* Append the tab-escaped form of s to out[*pos..size); false (and *pos
 * unchanged) if it does not fit with a terminating NUL. */
bool dovecot_auth_escape(char *out, size_t size, size_t *pos, const char *s);

/* The client's handshake: "VERSION\t1\t2\nCPID\t<pid>\n". Returns its
 * length, or 0 if size is too small. */
size_t dovecot_auth_format_handshake(char *out, size_t size, unsigned long pid);

struct dovecot_auth_params {
	uint32_t id;
	const char *mech;
	const char *service;        /* "smtp" */
	const char *lip, *rip;      /* addresses as text, "" to leave out */
	unsigned lport, rport;      /* 0 to leave out */
	bool secured;               /* TLS: secured=tls */
	const char *session;        /* session id, "" to leave out */
	const char *resp;           /* base64 initial response, NULL for none; "" = empty */
	size_t resp_len;
};

/* "AUTH\t<id>\t<mech>\tservice=...\t...[\tresp=...]\n". Returns the
 * length, or 0 if it does not fit in size or in DOVECOT_AUTH_LINE_MAX, or
 * resp is not base64 text. */
size_t dovecot_auth_format_auth(char *out, size_t size, const struct dovecot_auth_params *p);

/* "CONT\t<id>\t<base64>\n", the same way. */
size_t dovecot_auth_format_cont(char *out, size_t size, uint32_t id, const char *b64, size_t len);

/* Is s[0..len) base64 text as Dovecot's CONT and resp= take it (the
 * alphabet and '='; empty allowed)? Keeps TAB and LF out of our lines. */
bool dovecot_auth_base64_text(const char *s, size_t len);

#endif
