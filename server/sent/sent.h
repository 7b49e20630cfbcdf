/*
 * sent.h: the sender's copy filed into the user's Sent mailbox over IMAP
 * (docs/dovecot.md, "Filing the Sent copy"). The writer commits a filing
 * job with each message submitted with AUTH when filing is on for the
 * login (db/sent.h); this module, on the daemon's loop, finds due jobs,
 * logs in to the IMAP server as the master user on behalf of the login,
 * finds the \Sent mailbox (RFC 6154) or sent.folder, APPENDs the stored
 * bytes with \Seen and the acceptance time, and records the mailbox,
 * UIDVALIDITY and UID (RFC 4315) with the job.
 *
 * Exactly once: before an APPEND can reach the server, the job is marked
 * (committed first). A marked job that comes round again (a lost
 * connection, a kill -9 before the record) first looks for its copy in
 * that mailbox and records it if it is there.
 *
 * As in the relay, the event loop does no database I/O: the scans, the
 * pieces of a body, the mark and the results are writer jobs (db/writer.h)
 * whose done() runs from the daemon's writer wake-up.
 *
 * Files: sent.c (scheduler: in-flight set, scans, results, retry times,
 * start, drain, stop), sent_imap.c (the IMAP client connection),
 * sent_internal.h.
 */
#ifndef SUBMITD_SENT_H
#define SUBMITD_SENT_H

#include <stddef.h>

#include "server/runtime/server.h"

struct sent;

/* What `submitd -n` checks beyond the table: the password file can be
 * read, the CA file loaded. 0, or -1 with err. */
int sent_check_config(const struct config *cfg, char *err, size_t errlen);

/* NULL with err on failure; a filer that does nothing when
 * sent.imap_host is empty. */
struct sent *sent_start(struct server *srv, char *err, size_t errlen);
/* Look for due jobs soon (messages were just committed). */
void sent_kick(struct sent *s);
/* Stop taking new jobs; those in flight go on. */
void sent_drain(struct sent *s);
/* Jobs in flight and results not yet committed. */
size_t sent_busy(const struct sent *s);
/* Close every connection (their jobs are tried again after a restart)
 * and start nothing more; writer jobs still out finish harmlessly. */
void sent_stop(struct sent *s);
/* After sent_stop and once the writer's jobs are collected. */
void sent_free(struct sent **sp);

#endif
