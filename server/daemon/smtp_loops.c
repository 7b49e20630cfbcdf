/*
 * smtp_loops.c: the SMTP event loops (smtp.threads). Loop 0 is the main
 * loop; every other one is a thread running an event_base of its own with
 * its own listening sockets (SO_REUSEPORT: the kernel spreads the
 * connections), sessions and, with auth.backend = dovecot, its own
 * connection to Dovecot's auth service. A session never leaves its loop.
 *
 * The writer and the auth workers answer on their own threads: the
 * daemon's notify functions (main.c) take the answers there and route them
 * here, by writer_msg.loop and auth_request.loop, onto the loop's done
 * queues, and wake that loop. The main thread asks a loop to drain or to
 * stop through a bit in loop->ctl and its ctl_ev: everything a loop's
 * sessions and listeners hold is touched on the loop's own thread.
 */
#include "server/daemon/smtp_loops.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <event2/event.h>

#include "db/writer.h"
#include "server/auth/auth.h"
#include "server/auth/dovecot_client.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/daemon/listener.h"
#include "server/smtp/smtp_session.h"

/* smtp.threads = 0: one loop per online CPU, at most this many. */
#define SMTP_LOOPS_AUTO_MAX 16

unsigned
smtp_loops_count(const struct config *cfg)
{
	long n;

	if (cfg->smtp_threads > 0)
		return (unsigned)cfg->smtp_threads;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > SMTP_LOOPS_AUTO_MAX ? SMTP_LOOPS_AUTO_MAX : (unsigned)n;
}

/* done_ev: the answers routed to this loop. */
static void
on_done(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_loop *loop = arg;
	struct writer_msg *msgs = workq_take_all(&loop->done_msgs);
	struct auth_request *auths = workq_take_all(&loop->done_auth);

	if (msgs != NULL)
		smtp_session_writer_done(loop, msgs);
	if (auths != NULL)
		smtp_session_auth_done(loop, auths);
}

/* Dovecot answered an AUTH exchange of this loop's client. */
static void
on_dovecot_answer(void *arg, struct auth_request *r)
{
	smtp_session_auth_done(arg, r);
}

static void
loop_stop_here(struct smtp_loop *loop)
{
	listeners_free(loop);
	smtp_session_close_all(loop);
	dovecot_client_stop(&loop->dovecot);
}

/* ctl_ev: what the main thread asked. */
static void
on_ctl(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_loop *loop = arg;
	unsigned ctl = __atomic_exchange_n(&loop->ctl, 0, __ATOMIC_ACQ_REL);

	if ((ctl & SMTP_LOOP_DRAIN) && !loop->draining) {
		loop->draining = true;
		server_listeners_enable(loop, false);
		smtp_session_drain_all(loop);
	}
	if ((ctl & SMTP_LOOP_STOP) && loop->threaded) {
		loop_stop_here(loop);
		event_base_loopexit(loop->base, NULL);
	}
}

static void
dovecot_start(struct smtp_loop *loop)
{
	struct config *cfg = loop->srv->cfg;
	struct dovecot_client_opts dopts = {
		.base = loop->base, .socket_path = cfg->auth_dovecot_socket,
		.timeout_ms = cfg->auth_dovecot_timeout * 1000, .done = on_dovecot_answer, .done_arg = loop,
		/* loop 0: the main thread's id, the process id */
		.pid = (unsigned long)syscall(SYS_gettid),
	};

	if (loop->srv->dovecot)
		loop->dovecot = dovecot_client_start(&dopts);
}

static void *
loop_main(void *arg)
{
	struct smtp_loop *loop = arg;
	char name[16];

	snprintf(name, sizeof(name), "sd-smtp-%u", loop->index);
	pthread_setname_np(pthread_self(), name);
	dovecot_start(loop);
	/* with its listeners disabled (draining) and no session left, the
	 * loop still waits for the stop */
	event_base_loop(loop->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

int
smtp_loops_open(struct server *srv, char *err, size_t errlen)
{
	unsigned n = smtp_loops_count(srv->cfg);

	srv->loops = xcalloc(n, sizeof(*srv->loops));
	srv->nloops = n;
	srv->stats.smtp_loops = n;
	for (unsigned i = 0; i < n; i++) {
		struct smtp_loop *loop = &srv->loops[i];

		loop->srv = srv;
		loop->index = i;
		pthread_mutex_init(&loop->lock, NULL);
		workq_init(&loop->done_msgs, offsetof(struct writer_msg, next), &loop->lock, NULL);
		workq_init(&loop->done_auth, offsetof(struct auth_request, next), &loop->lock, NULL);
		loop->base = i == 0 ? srv->base : event_base_new();
		if (loop->base == NULL) {
			snprintf(err, errlen, "cannot create the event base of SMTP loop %u", i);
			return -1;
		}
		loop->done_ev = event_new(loop->base, -1, 0, on_done, loop);
		loop->ctl_ev = event_new(loop->base, -1, 0, on_ctl, loop);
		if (listeners_open(loop, err, errlen) == -1)
			return -1;
	}
	return 0;
}

int
smtp_loops_run(struct server *srv, char *err, size_t errlen)
{
	dovecot_start(&srv->loops[0]);
	for (unsigned i = 1; i < srv->nloops; i++) {
		struct smtp_loop *loop = &srv->loops[i];

		if (pthread_create(&loop->thread, NULL, loop_main, loop) != 0) {
			snprintf(err, errlen, "cannot start SMTP loop %u: %s", i, strerror(errno));
			return -1;
		}
		loop->threaded = true;
	}
	return 0;
}

static void
ask(struct smtp_loop *loop, unsigned what)
{
	__atomic_or_fetch(&loop->ctl, what, __ATOMIC_ACQ_REL);
	event_active(loop->ctl_ev, EV_READ, 0);
}

void
smtp_loops_drain(struct server *srv)
{
	for (unsigned i = 0; i < srv->nloops; i++)
		ask(&srv->loops[i], SMTP_LOOP_DRAIN);
}

void
smtp_loops_stop(struct server *srv)
{
	for (unsigned i = 1; i < srv->nloops; i++)
		if (srv->loops[i].threaded)
			ask(&srv->loops[i], SMTP_LOOP_STOP);
	for (unsigned i = 1; i < srv->nloops; i++)
		if (srv->loops[i].threaded) {
			pthread_join(srv->loops[i].thread, NULL);
			srv->loops[i].threaded = false;
		}
	/* loop 0's base is the main loop's, which has returned */
	for (unsigned i = 0; i < srv->nloops; i++)
		if (srv->loops[i].base != NULL)
			loop_stop_here(&srv->loops[i]);
}

void
smtp_loops_free(struct server *srv)
{
	for (unsigned i = 0; srv->loops != NULL && i < srv->nloops; i++) {
		struct smtp_loop *loop = &srv->loops[i];
		struct writer_msg *m = workq_take_all(&loop->done_msgs), *mn;
		struct auth_request *r = workq_take_all(&loop->done_auth), *rn;

		/* answers that came after the loop stopped: their sessions went */
		for (; m != NULL; m = mn) {
			mn = m->next;
			writer_msg_free(&m);
		}
		for (; r != NULL; r = rn) {
			rn = r->next;
			auth_request_free(&r);
		}
		if (loop->done_ev)
			event_free(loop->done_ev);
		if (loop->ctl_ev)
			event_free(loop->ctl_ev);
		if (i > 0 && loop->base)
			event_base_free(loop->base);
		pthread_mutex_destroy(&loop->lock);
	}
	free(srv->loops);
	srv->loops = NULL;
	srv->nloops = 0;
}

size_t
smtp_loops_route_msgs(struct server *srv, struct writer_msg *list)
{
	size_t committed = 0;
	bool woken[SMTP_LOOPS_MAX] = { false };

	while (list != NULL) {
		struct writer_msg *m = list;
		unsigned i = m->loop < srv->nloops ? m->loop : 0;

		list = m->next;
		committed += m->status == WRITER_OK && !m->duplicate;
		workq_push(&srv->loops[i].done_msgs, m);
		woken[i] = true;
	}
	for (unsigned i = 0; i < srv->nloops; i++)
		if (woken[i])
			event_active(srv->loops[i].done_ev, EV_READ, 0);
	return committed;
}

void
smtp_loops_route_auth(struct server *srv, struct auth_request *list)
{
	bool woken[SMTP_LOOPS_MAX] = { false };

	while (list != NULL) {
		struct auth_request *r = list;
		unsigned i = r->loop < srv->nloops ? r->loop : 0;

		list = r->next;
		workq_push(&srv->loops[i].done_auth, r);
		woken[i] = true;
	}
	for (unsigned i = 0; i < srv->nloops; i++)
		if (woken[i])
			event_active(srv->loops[i].done_ev, EV_READ, 0);
}

size_t
smtp_loops_sessions(struct server *srv, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < srv->nloops && off < len; i++) {
		int n = snprintf(buf + off, len - off, "%s%zu", i ? "," : "", STAT_GET(srv->loops[i].nsessions));
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return STAT_GET(srv->nsessions);
}
