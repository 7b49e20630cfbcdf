/*
 * body_stream.h: a stored message body read in pieces for a client on the
 * event loop (the relay's SMTP connections, the Sent filer's IMAP ones).
 * Each piece is read by a writer job (db/writer.h) with queue_body_read,
 * so the loop itself never touches SQLite, and a large body never sits in
 * memory whole: one piece per connection is in flight at a time.
 */
#ifndef SUBMITD_BODY_STREAM_H
#define SUBMITD_BODY_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct writer;
struct body_stream;

/* The most one piece holds. */
#define BODY_STREAM_PIECE (256 * 1024)

/* A piece has arrived (on the loop): n octets at buf, valid until the
 * callback returns; or err (a message for a log line) when it could not be
 * read. */
typedef void body_stream_cb(void *owner, const char *buf, size_t n, const char *err);

struct body_stream *body_stream_new(struct writer *w, body_stream_cb *cb, void *owner);
/* Read up to BODY_STREAM_PIECE octets (at most n) of message_id's body
 * from off; cb follows. Only when no read is under way. */
void body_stream_read(struct body_stream *bs, int64_t message_id, int64_t off, size_t n);
/* A read is under way: its callback has not come yet. */
bool body_stream_busy(const struct body_stream *bs);
/* The owner goes away: no callback will come; a read under way frees the
 * stream when it returns. *bsp = NULL. */
void body_stream_free(struct body_stream **bsp);

#endif
