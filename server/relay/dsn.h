/*
 * dsn.h: delivery status notifications (RFC 3464) for recipients that
 * failed permanently. Pure: the caller gives the facts and the original
 * message's header block, and gets the complete DSN message back.
 */
#ifndef SUBMITD_DSN_H
#define SUBMITD_DSN_H

#include <stddef.h>
#include <stdint.h>

struct dsn_failure {
	const char *address;       /* the recipient */
	const char *reply;         /* the next hop's reply or our reason, one line */
};

struct dsn_input {
	const char *reporting_host;   /* our host name */
	const char *sender;           /* the original envelope sender (the DSN's recipient) */
	const char *message_id;       /* the original's public id */
	int64_t arrival;              /* unix seconds the original was received */
	int64_t now;
	const struct dsn_failure *failures;
	size_t nfailures;
	const char *headers;          /* the original header block (may be cut), or NULL */
	size_t headers_len;
};

/* The status code for a reply text: its enhanced code when it carries one
 * ("550 5.1.1 ..."), else 5.0.0 (4.4.7 for a lifetime expiry). */
void dsn_status_of(const char *reply, char out[16]);

/* Length of the header block at the start of a message (up to and
 * including the empty line), at most len. */
size_t dsn_header_len(const char *msg, size_t len);

/* Build the DSN; returns a malloc'd message (CRLF line ends), length in *len_r. */
char *dsn_build(const struct dsn_input *in, size_t *len_r);

#endif
