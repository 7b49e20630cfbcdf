/*
 * mail_header.h: header fields read from the top of a stored message (RFC
 * 5322 section 2.2): a field's value with its continuation lines unfolded,
 * and the domain of the From: field's address, which picks the DKIM keys a
 * message is signed with. Pure and bounded: they read at most len octets
 * and stop at the empty line that ends the header.
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

#endif
