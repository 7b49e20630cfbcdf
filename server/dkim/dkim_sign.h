/*
 * dkim_sign.h: DKIM signatures (RFC 6376; ed25519-sha256, RFC 8463) of an
 * accepted message, made with libopendkim and the active keys of its
 * From: domain (`submitctl dkim generate`). The writer's prepend workers
 * call dkim_signer_sign for each message (writer_opts.prepend, wired by
 * the daemon, one signer per worker) while the writer stores it, and the header fields it
 * returns are committed with the message and put in front of it when it
 * is relayed: the stored copy stays the client's bytes.
 *
 * The signer has its own database connection and reloads the keys when
 * another connection committed since the last message (PRAGMA
 * data_version), so a key made or retired by submitctl is used or dropped
 * from the next message on, without a restart. Under traffic that is
 * nearly every message (the writer commits too); the table has a few rows,
 * a read of some microseconds next to a signature's millisecond.
 */
#ifndef SUBMITD_DKIM_SIGN_H
#define SUBMITD_DKIM_SIGN_H

#include <stddef.h>
#include <stdint.h>

/* The most octets of a message read to find its From: field. */
#define DKIM_HEAD_MAX (64 * 1024)

struct dkim_signer;

/* A signer on the database at db_path; NULL with err on a failure. */
struct dkim_signer *dkim_signer_new(const char *db_path, char *err, size_t errlen);
void dkim_signer_free(struct dkim_signer **sp);

/*
 * Sign a message of size octets, in memory at body or else in the file fd
 * (read with pread, so another thread may read it too), with every active
 * key of its From: domain: relaxed/relaxed, the header fields of RFC 6376
 * 5.4.1 and Message-ID, with From, Subject, Date, To, Cc and Message-ID
 * oversigned. 1 with *out the DKIM-Signature fields (CRLF-terminated,
 * malloc'd), 0 when there is nothing to sign with (no usable From:, no
 * key for its domain), -1 when signing failed (logged with msgid). One
 * thread at a time.
 */
int dkim_signer_sign(struct dkim_signer *s, const char *msgid, const uint8_t *body, int fd, uint64_t size,
    char **out);

#endif
