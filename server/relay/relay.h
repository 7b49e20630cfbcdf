/*
 * relay.h: delivery of accepted messages to the next hop (docs/relay.md),
 * and the retention pass that purges old saved copies. The queue is the
 * recipients table: the relay reads due recipients, delivers over an
 * asynchronous SMTP client on the daemon's loop, and records each result
 * (delivered, deferred with a retry time, failed plus a bounce) through the
 * writer thread.
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
/* Deliveries still in flight (connections with a message). */
size_t relay_busy(struct server *srv);
void relay_stop(struct server *srv);
/* The writer finished a job of ours (called from the writer wake-up). */
void relay_jobs_done(struct server *srv);

#endif
