/*
 * relay.h: delivery of accepted messages to the next hop (docs/relay.md),
 * and the retention pass that purges old saved copies. The queue is the
 * recipients table: the relay finds due recipients, delivers over an
 * asynchronous SMTP client on the daemon's loop, and records each result
 * (delivered, deferred with a retry time, failed plus a bounce).
 *
 * The event loop does no database I/O. Every statement of the relay is in
 * db/queue.h and db/retention.h and runs in a writer job (db/writer.h):
 * run() on the writer thread inside a transaction of its own, done() back
 * on the loop from relay_jobs_done. That holds for the scans for due work,
 * for each piece of a body being sent (db/body_stream.h, asked
 * for when the connection's output has room), for the results and bounces
 * and for the purge passes. The writer's one connection sees every commit
 * at once, and jobs run in the order they were submitted, so a scan never
 * misses a result handed over before it.
 *
 * Files: relay.c (scheduler: in-flight set, scans, kick, poll timer,
 * drain, stop, busy), relay_client.c (the SMTP client connection),
 * relay_result.c (results, retry times, bounces), relay_retention.c (the
 * purge timer), dsn.c (the bounce message, pure), relay_internal.h.
 */
#ifndef SUBMITD_RELAY_H
#define SUBMITD_RELAY_H

#include <stddef.h>

#include "server/runtime/server.h"

int relay_start(struct server *srv, char *err, size_t errlen);
/* Look for due work soon (a message was just committed). */
void relay_kick(struct server *srv);
/* Stop taking new work; deliveries in flight go on. */
void relay_drain(struct server *srv);
/* Deliveries still in flight (connections with a message), results
 * waiting to be written again, and a purge pass under way. */
size_t relay_busy(struct server *srv);
void relay_stop(struct server *srv);
/* The writer finished jobs (called from the writer wake-up, and once at
 * shutdown after writer_flush): their done() runs here, on the loop. */
void relay_jobs_done(struct server *srv);

#endif
