/*
 * smtp_loops.h: the SMTP event loops (smtp.threads, struct smtp_loop in
 * server/runtime/server.h): their bases, threads and listeners, the
 * routing of the writer's and the auth workers' answers to the loop of
 * the session that waits, and the drain and stop asked by the main thread.
 */
#ifndef SUBMITD_SMTP_LOOPS_H
#define SUBMITD_SMTP_LOOPS_H

#include <stddef.h>

#include "server/runtime/server.h"

struct writer_msg;
struct auth_request;

/* How many loops cfg asks for (smtp.threads; 0: one per online CPU, at
 * most 16). */
unsigned smtp_loops_count(const struct config *cfg);
/* Make the loops (loop 0 on srv->base, which must exist) and bind every
 * loop's listeners: before privileges are dropped. 0 or -1 (err). */
int smtp_loops_open(struct server *srv, char *err, size_t errlen);
/* Start the Dovecot clients (auth.backend = dovecot) and the threads of
 * loops 1.. . 0 or -1 (err). */
int smtp_loops_run(struct server *srv, char *err, size_t errlen);
/* SIGTERM, on the main thread: every loop stops accepting and drains its
 * sessions (smtp_session_drain_all), on its own thread. */
void smtp_loops_drain(struct server *srv);
/* The main loop has returned: close every loop's sessions and listeners
 * on its own thread, end and join the threads. */
void smtp_loops_stop(struct server *srv);
/* After the writer and the auth pool have stopped: free the loops and
 * the answers nobody collected. */
void smtp_loops_free(struct server *srv);

/* On the writer's threads (its notify): hand each finished message to
 * its session's loop and wake that loop. Returns how many committed
 * something new (for the relay and the filer). */
size_t smtp_loops_route_msgs(struct server *srv, struct writer_msg *list);
/* On an auth worker's thread: likewise for finished password checks. */
void smtp_loops_route_auth(struct server *srv, struct auth_request *list);
/* Sessions open now, all loops; buf gets them per loop ("3,1"). */
size_t smtp_loops_sessions(struct server *srv, char *buf, size_t len);

#endif
