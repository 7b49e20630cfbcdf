/*
 * imap_parse.h: what submitd's IMAP client (server/sent/, the Sent filing)
 * reads from an IMAP server, as pure functions over bytes (RFC 9051 and
 * RFC 3501 syntax, the parts a client that logs in, lists, appends and
 * searches needs).
 *
 * Framing first: imap_resp_feed cuts the byte stream into whole responses,
 * a line plus any literals it announces ("{N}" at the end of a line, then
 * N octets, then the rest of the response). A short literal (a mailbox
 * name, say) is put into the response's text as a quoted string, so that
 * the line parsers see one line; a long one (a message body) goes to a
 * sink, octet for octet, and stays in the text as its "{N}". Then
 * imap_line_parse classifies a response (tagged, untagged, continuation),
 * with its status and response code, and the helpers read the parts of
 * the untagged answers: CAPABILITY, LIST, SEARCH, FETCH, APPENDUID. Every
 * function takes a length, never reads past it, and never fails on
 * hostile input other than by saying so.
 */
#ifndef SUBMITD_IMAP_PARSE_H
#define SUBMITD_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAP_TEXT_MAX 8192          /* a response's text; longer ones are cut (overflow) */
#define IMAP_LITERAL_INLINE 1024    /* literals up to this size are quoted into the text */
#define IMAP_LITERAL_MAX (1LL << 40)

/* --- framing ------------------------------------------------------- */

struct imap_resp {
	char text[IMAP_TEXT_MAX + 1];  /* NUL-terminated, without the final CRLF */
	size_t len;
	bool overflow;                 /* the text was longer and is cut */
	bool bad;                      /* a NUL in a line, or an absurd literal size */
	/* octets of the literals not quoted into the text, in order (may be
	 * NULL); with literals_to_sink, of every literal (a FETCH of BODY[]) */
	void (*sink)(void *arg, const char *p, size_t n);
	void *sink_arg;
	bool literals_to_sink;
	/* private */
	int64_t lit_left;
	bool lit_inline, lit_drop;
	char lit[IMAP_LITERAL_INLINE];
	size_t lit_len;
	char tail[24];                 /* the last octets of the current line */
	size_t tail_len;
};

void imap_resp_init(struct imap_resp *r, void (*sink)(void *arg, const char *p, size_t n), void *sink_arg);
/* Ready for the next response (the sink and literals_to_sink stay). */
void imap_resp_reset(struct imap_resp *r);
/* Consume octets of p (n of them) up to the end of one response at most:
 * the number used. *done says whether r now holds a whole response. */
size_t imap_resp_feed(struct imap_resp *r, const char *p, size_t n, bool *done);

/* --- one response -------------------------------------------------- */

enum imap_kind { IMAP_TAGGED, IMAP_UNTAGGED, IMAP_CONTINUE, IMAP_MALFORMED };
enum imap_status { IMAP_NONE, IMAP_OK, IMAP_NO, IMAP_BAD, IMAP_BYE, IMAP_PREAUTH };

struct imap_line {
	enum imap_kind kind;
	char tag[32];                  /* tagged */
	enum imap_status status;       /* tagged, or an untagged OK/NO/BAD/BYE/PREAUTH */
	int64_t number;                /* "* 3 EXISTS": 3; -1 without */
	char keyword[32];              /* untagged data: "CAPABILITY", "LIST", "FETCH", ..., upper case */
	char code[32];                 /* response code name, upper case: "APPENDUID"; "" without */
	const char *code_args;         /* its arguments (into the text), code_len octets */
	size_t code_len;
	const char *rest;              /* what follows (into the text), rest_len octets */
	size_t rest_len;
};

/* Classify text (len octets). Returns 0, or -1 when it is no response
 * (then kind is IMAP_MALFORMED). */
int imap_line_parse(const char *text, size_t len, struct imap_line *out);

/* Capabilities (from CAPABILITY data or a [CAPABILITY ...] code). */
enum {
	IMAP_CAP_IMAP4 = 1 << 0,       /* IMAP4rev1 or IMAP4rev2 */
	IMAP_CAP_STARTTLS = 1 << 1,
	IMAP_CAP_LOGINDISABLED = 1 << 2,
	IMAP_CAP_AUTH_PLAIN = 1 << 3,
	IMAP_CAP_SASL_IR = 1 << 4,
	IMAP_CAP_LITERAL_PLUS = 1 << 5,  /* LITERAL+ (RFC 7888) */
	IMAP_CAP_UIDPLUS = 1 << 6,
	IMAP_CAP_SPECIAL_USE = 1 << 7,
	IMAP_CAP_LIST_EXTENDED = 1 << 8,
};
unsigned imap_caps_parse(const char *s, size_t len);

/* APPENDUID's arguments "uidvalidity uid": 0, or -1. */
int imap_appenduid_parse(const char *s, size_t len, uint32_t *uidvalidity, uint32_t *uid);
/* A number code argument (UIDVALIDITY n): 0, or -1. */
int imap_number_parse(const char *s, size_t len, uint32_t *n);

/* LIST data "(flags) delim name ...": whether \Sent (or \NoSelect,
 * \NonExistent) is among the flags, and the name. 0, or -1 (a name in a
 * literal too long to inline, or anything malformed). */
int imap_list_parse(const char *s, size_t len, bool *sent, bool *noselect, char *name, size_t namelen);

/* SEARCH data: up to max numbers into uids; the count found. */
size_t imap_search_parse(const char *s, size_t len, uint32_t *uids, size_t max);

/* FETCH data "(UID n RFC822.SIZE n INTERNALDATE "..." BODY[] {n})": the
 * items found (the others are 0 / -1 / false). 0, or -1 if malformed. */
struct imap_fetch {
	uint32_t uid;
	int64_t size;                  /* -1: not there */
	int64_t internaldate;          /* unix seconds; -1: not there */
	bool body;                     /* BODY[] came (as a literal, to the sink) */
};
int imap_fetch_parse(const char *s, size_t len, struct imap_fetch *f);

/* date-time "dd-Mon-yyyy hh:mm:ss +zzzz" (day may be " d"): unix seconds,
 * or -1. */
int64_t imap_date_time_parse(const char *s, size_t len);
/* And the other way, in UTC: "02-Dec-2026 19:08:12 +0000". */
void imap_date_time_format(int64_t t, char out[32]);

/* s as an IMAP quoted string (with the quotes) into out: its length, or
 * 0 when it cannot be quoted (CR, LF or NUL, or out too small). */
size_t imap_quote(const char *s, char *out, size_t outlen);

/* The value of a message's Message-ID header field (unfolded, trimmed,
 * e.g. "<x@y>"), looked for in the header of head (len octets): 0, or -1
 * when there is none (or it does not fit in out). */
int imap_message_id(const char *head, size_t len, char *out, size_t outlen);

#endif
