/*
 * mail_header.h: header fields read from the top of a stored message (RFC
 * 5322 section 2.2): a field's value with its continuation lines unfolded,
 * and the domain of the From: field's address, which picks the DKIM keys a
 * message is signed with, and the msg-id of the Message-ID: field, which
 * tells a client's retry of a message from a new one (submit.dedup_window,
 * docs/smtp.md). Pure and bounded: they read at most len octets and stop
 * at the empty line that ends the header.
 */
#ifndef SUBMITD_MAIL_HEADER_H
#define SUBMITD_MAIL_HEADER_H

#include <stddef.h>

/* The value of the first field called name (no colon; any case) in the
 * header of head: unfolded, runs of white space made one space, trimmed,
 * into out. Its length (0: the field is there but empty), or -1 when
 * there is none or it does not fit in out. *count_r (if not NULL): how
 * many fields of that name the header has. */
int mail_header_field(const char *head, size_t len, const char *name, char *out, size_t outlen,
    unsigned *count_r);

/* The domain of the one address of the one From: field, lowercased into
 * out: 0, or -1 when there is no From:, more than one, a group or a list
 * of addresses, no '@', a domain literal, a character that is not a
 * letter, digit, '-' or '.', or a domain longer than outlen - 1. */
int mail_header_from_domain(const char *head, size_t len, char *out, size_t outlen);

/* How much of a message's top the callers of mail_header_message_id
 * read: a Message-ID: field further down is not seen. */
#define MAIL_HEADER_ID_SCAN (64 * 1024)
/* The longest msg-id kept (RFC 5322 lines are at most 998 octets). */
#define MAIL_MSGID_MAX 995

/* The msg-id of the one Message-ID: field (RFC 5322 section 3.6.4): the
 * octets between its angle brackets, exactly as sent (case kept), into
 * out. Its length, or -1 when the header has no Message-ID: field, more
 * than one, or a value that is not one plain msg-id: anything but white
 * space around "<...>" (a comment, a second id), no '@' or nothing on a
 * side of it, white space, a control, an 8-bit octet or a '<' '>' inside,
 * or an id longer than outlen - 1 (MAIL_MSGID_MAX + 1 is enough). A
 * folded field is unfolded first. */
int mail_header_message_id(const char *head, size_t len, char *out, size_t outlen);

#endif
