/*
 * submit_token_answer.h: the pure part of the Dovecot plugin
 * imap_submit_token. It reads what submitd's verification API answers
 * (a JSON object from POST /v1/verify, or a JSON refusal from either
 * endpoint), maps an answer to the refusal class the IMAP client sees, and
 * checks the command's arguments. No Dovecot, no I/O, no allocation: the
 * plugin hands it the bytes it received (at most
 * SUBMIT_TOKEN_ANSWER_MAX of them) and the unit test feeds it tables of
 * hostile answers.
 */
#ifndef SUBMIT_TOKEN_ANSWER_H
#define SUBMIT_TOKEN_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* A verify answer is about 450 octets; anything bigger than this is not one
 * of submitd's answers and is refused unread. */
#define SUBMIT_TOKEN_ANSWER_MAX 16384
/* The API refuses longer tokens as malformed (docs/api.md section 2); the
 * plugin refuses them itself, before any request. */
#define SUBMIT_TOKEN_MAX_LEN 4096
/* Nesting deeper than this is not submitd's and is refused. */
#define SUBMIT_TOKEN_ANSWER_MAX_DEPTH 16

/* The fields of a verify answer (docs/api.md 5.1) the plugin uses. A string
 * longer than its field is a malformed answer, never truncated. */
struct submit_token_answer {
	char result[32];
	char role[16];
	char address[320];
	char message_id[64];
	char received_at[40];
	char sha256[65];
	uint64_t size;
	bool has_size;
};

/* What the IMAP client is told: one class per reason a client acts on
 * differently. The response code atom of each is in
 * submit_token_class_code(); docs/imap.md lists them. */
enum submit_token_class {
	SUBMIT_TOKEN_OK = 0,
	SUBMIT_TOKEN_MALFORMED,     /* not a submission token */
	SUBMIT_TOKEN_BADSIGNATURE,  /* forged or damaged */
	SUBMIT_TOKEN_UNKNOWNKEY,    /* signed by a key this submitd lacks */
	SUBMIT_TOKEN_EXPIRED,       /* past its lifetime, or no longer on record */
	SUBMIT_TOKEN_REVOKED,
	SUBMIT_TOKEN_WRONGADDRESS,  /* bound to another address than the user's */
	SUBMIT_TOKEN_WRONGROLE,     /* a recipient token: not the sender's copy */
	SUBMIT_TOKEN_PURGED,        /* valid, but the stored copy is gone */
	SUBMIT_TOKEN_TOOBIG,        /* bigger than submit_token_max_size */
	SUBMIT_TOKEN_UNAVAILABLE,   /* the API did not give a usable answer */
};

/* Parses `len` octets of a JSON object into `out` (zeroed first). Unknown
 * members are skipped whatever their type; the known ones must have their
 * type (strings; "size" a non-negative integer), and appear once, at the
 * top level ("result", "role", "address") or in "message" ("id",
 * "received_at", "size", "sha256"). Returns 0, or -1 for anything else: not
 * JSON, not an object, trailing bytes, bad escapes, NUL, too deep, a
 * string too long for its field, more than SUBMIT_TOKEN_ANSWER_MAX octets. */
int submit_token_answer_parse(const char *data, size_t len, struct submit_token_answer *out);

/* The class of an HTTP answer to /v1/verify or /v1/message that is not a
 * 200, from its status and its JSON "result" name (NULL when the body was
 * not a JSON refusal). Anything unexpected is SUBMIT_TOKEN_UNAVAILABLE:
 * the plugin's own misconfiguration (401) or a server fault is not the
 * client's token's fault. */
enum submit_token_class submit_token_refusal_class(unsigned int status, const char *result);

/* The class of a 200 verify answer: SUBMIT_TOKEN_OK when it is complete
 * ("valid", a message id, received_at, size, a 64-digit lower-case sha256)
 * and a sender token; WRONGROLE for another role; UNAVAILABLE when
 * incomplete. */
enum submit_token_class submit_token_answer_check(const struct submit_token_answer *a);

/* The response code atom of a class, e.g. "XSUBMITTOKEN-EXPIRED"; NULL for
 * SUBMIT_TOKEN_OK. */
const char *submit_token_class_code(enum submit_token_class c);

/* True when `token` may be sent to the API: 1 to SUBMIT_TOKEN_MAX_LEN
 * characters of the base64url alphabet and '.', so that it is safe in an
 * HTTP header and a JSON string as it is. */
bool submit_token_syntax_ok(const char *token);

/* "YYYY-MM-DDTHH:MM:SS[.fff]Z" (UTC), as the API writes received_at, to
 * seconds since the epoch. Returns 0, or -1 when the text is not that. */
int submit_token_parse_time(const char *text, time_t *out);

#endif
