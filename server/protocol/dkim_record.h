/*
 * dkim_record.h: the DNS record that publishes a DKIM public key (RFC 6376
 * section 3.6.1; k=ed25519 is RFC 8463), as one zone-file line that
 * `submitctl dkim export` prints. Pure.
 */
#ifndef SUBMITD_DKIM_RECORD_H
#define SUBMITD_DKIM_RECORD_H

#include <stddef.h>

/* The most octets of one character-string of a TXT record (RFC 1035
 * section 3.3.14): longer texts (an RSA-2048 key) are split in several. */
#define DKIM_RECORD_STRING_MAX 255

/* `SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=KEYTYPE; p=PUBLIC"`
 * into out (NUL-terminated, no newline), the text split into quoted
 * strings of at most DKIM_RECORD_STRING_MAX octets separated by a space.
 * keytype is "rsa" or "ed25519", public_b64 the key in base64. The
 * length, or 0 when out is too small or an argument holds a character
 * that would need quoting (a quote, a backslash, a space, a control). */
size_t dkim_record_format(const char *selector, const char *domain, const char *keytype, const char *public_b64,
    char *out, size_t outlen);

#endif
