/*
 * fuzz_smtp_session.c: whole SMTP submission sessions (server/smtp/), the
 * way a client drives them. Each input runs one session on a real
 * event_base: the session sits on one end of a socketpair with a
 * 127.0.0.1 peer address (so AUTH PLAIN in cleartext is offered), the
 * input is written to the other end as the client, and the replies are
 * read back from it. The writer and the auth pool are stubs behind
 * struct smtp_backend, answering on the loop through events as the real
 * ones do.
 *
 * Input: the first octet chooses the setting (bits below; two settings
 * ride on bits of others, so that the seeds kept their meaning when they
 * came: smtp.forbid_unauth_pipelining is on with OPT_NO_TOKENS only, and
 * smtp.binarymime on unless OPT_SMALL); the rest is
 * what the client sends, cut into separate writes at each 0xFF octet, so
 * that pipelined groups, partial lines and chunks split anywhere all
 * happen. After the last write the client shuts down its side and reads
 * until the server closes.
 *
 * Stubs: auth accepts one login and password (FUZZ_USER, FUZZ_PASS) and
 * refuses every other, but for the login FUZZ_TEMPFAIL, a database
 * failure; the writer commits at once with fake tokens, or without tokens,
 * or reports a full or failing store, as the setting says.
 *
 * Checks, per input:
 *  - every octet the server sent is part of a reply line "DDD[ -]text\r\n"
 *    with a code from 200 to 599, a "-" line is followed by one with the
 *    same code, and no text says "(null)";
 *  - the first reply is the 220 greeting;
 *  - the 554 of a pipelining violation is the last thing the server says,
 *    and comes only with forbid_unauth_pipelining;
 *  - a message is acknowledged ("... Saved") exactly as often as the stub
 *    committed one for a session that was there to hear it: never a 250
 *    for a message the store did not keep;
 *  - what the writer is handed has the size it claims, in memory or in
 *    the spool file;
 *  - the session is freed once the client has gone (within 2 s), closes
 *    its socket, and leaves no file descriptor open; memory is left to
 *    LeakSanitizer (libFuzzer checks each input).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "db/writer.h"
#include "fuzz.h"
#include "server/auth/auth.h"
#include "server/base/config.h"
#include "server/base/log.h"
#include "server/base/netaddr.h"
#include "server/base/throttle.h"
#include "server/base/util.h"
#include "server/runtime/server.h"
#include "server/smtp/smtp_session.h"
#include "server/smtp/smtp_session_internal.h"

#define FUZZ_USER "user@example.org"
#define FUZZ_PASS "secret"
#define FUZZ_TEMPFAIL "tempfail@example.org"
#define SEPARATOR 0xFF

/* The setting octet. */
enum {
	OPT_WRITER      = 3 << 0,  /* 0: tokens, 1: no tokens, 2: store full, 3: store error */
	OPT_TRUSTED     = 1 << 2,  /* the peer is in trusted_networks */
	OPT_SPOOL       = 1 << 3,  /* bodies over 64 octets go to a spool file */
	OPT_NO_TOKENS   = 1 << 4,  /* tokens_enabled = false (no XSUBMITTOKEN) */
	OPT_DRAIN       = 1 << 5,  /* SIGTERM's drain after the last write */
	OPT_LATE        = 1 << 6,  /* the writer answers only after the last write */
	OPT_SMALL       = 1 << 7,  /* small limits: errors, recipients, size, lines */
};

static struct config cfg;
static struct server srv;
static struct smtp_loop loop;      /* the one SMTP loop, srv's base */
static struct event *auth_ev;      /* the stub auth backend's answers, as the daemon's done_ev */
static char spool_dir[256];

static struct {
	unsigned opts;
	struct writer_msg *msgs;   /* done, not handed back yet */
	struct auth_request *auths;
	size_t committed;          /* OK answers handed to a live session */
	char *out;                 /* everything the server sent */
	size_t out_len, out_cap;
	int client;
	bool server_closed;
} run;

/* --- stubs -------------------------------------------------------------- */

static void
stub_submit(void *ctx, struct writer_msg *m)
{
	static const enum writer_status answers[] = { WRITER_OK, WRITER_OK, WRITER_FULL, WRITER_IOERR };
	struct writer_msg **tail = &run.msgs;

	(void)ctx;
	if (m->spool_fd != -1) {
		struct stat st;

		FUZZ_CHECK(m->body == NULL);
		FUZZ_CHECK(fstat(m->spool_fd, &st) == 0 && (uint64_t)st.st_size == m->size);
	}
	FUZZ_CHECK(m->nrcpt > 0 && m->rcpts != NULL);
	m->status = answers[run.opts & OPT_WRITER];
	if (m->status == WRITER_OK && (run.opts & OPT_WRITER) == 0) {
		m->tokens = xcalloc(m->nrcpt + 1, sizeof(char *));
		for (size_t i = 0; i <= m->nrcpt; i++) {
			char t[32];
			snprintf(t, sizeof(t), "v4.public.fuzz%zu", i);
			m->tokens[i] = xstrdup(t);
		}
	}
	while (*tail)
		tail = &(*tail)->next;
	*tail = m;
	m->next = NULL;
	if (!(run.opts & OPT_LATE))
		event_active(srv.writer_ev, EV_READ, 0);
}

static void
stub_authenticate(void *ctx, struct auth_request *r)
{
	(void)ctx;
	if (strcmp(r->login, FUZZ_TEMPFAIL) == 0) {
		r->result = AUTH_TEMPFAIL;
	} else if (strcmp(r->login, FUZZ_USER) == 0 && strcmp(r->password, FUZZ_PASS) == 0) {
		r->result = AUTH_OK;
		r->canonical_login = xstrdup(FUZZ_USER);
		r->addresses = xcalloc(2, sizeof(char *));
		r->addresses[0] = xstrdup("alias@example.org");
	} else {
		r->result = AUTH_FAILED;
	}
	r->next = run.auths;
	run.auths = r;
	event_active(auth_ev, EV_READ, 0);
}

static const struct smtp_backend stub_backend = {
	.ctx = NULL, .submit = stub_submit, .authenticate = stub_authenticate,
};

static void
writer_wake(evutil_socket_t fd, short what, void *arg)
{
	struct writer_msg *list = run.msgs;

	(void)fd, (void)what, (void)arg;
	run.msgs = NULL;
	for (struct writer_msg *m = list; m; m = m->next)
		run.committed += m->owner != NULL && m->status == WRITER_OK;
	smtp_session_writer_done(&loop, list);
}

static void
auth_wake(evutil_socket_t fd, short what, void *arg)
{
	struct auth_request *list = run.auths;

	(void)fd, (void)what, (void)arg;
	run.auths = NULL;
	smtp_session_auth_done(&loop, list);
}

/* --- the client ---------------------------------------------------------- */

static void
client_read(void)
{
	char buf[16384];
	ssize_t n;

	while ((n = recv(run.client, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		if (run.out_len + (size_t)n > run.out_cap) {
			run.out_cap = (run.out_len + (size_t)n) * 2;
			run.out = xrealloc(run.out, run.out_cap);
		}
		memcpy(run.out + run.out_len, buf, (size_t)n);
		run.out_len += (size_t)n;
	}
	if (n == 0)
		run.server_closed = true;
}

static void
client_write(int server_fd, const uint8_t *p, size_t len)
{
	int full = 0;

	while (len > 0) {
		ssize_t n = send(run.client, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno != EAGAIN)
			return;         /* the server hung up: the rest is lost, as on a network */
		/* A full socket: let the session read (or close), for a while. */
		if (++full > 1000)
			return;
		event_base_loop(srv.base, EVLOOP_NONBLOCK);
		client_read();
		if (loop.sessions == NULL)
			return;
	}
	(void)server_fd;
}

/* Run the loop until the session has done what it can with the input so
 * far: nothing active, no input it would still read, no short timer of
 * its own (an auth delay, the close) pending. A writer held back
 * (OPT_LATE) counts as done. */
static void
settle(int server_fd)
{
	for (int pass = 0; pass < 100000; pass++) {
		struct smtp_session *s = loop.sessions;
		int unread = 0;

		event_base_loop(srv.base, EVLOOP_NONBLOCK);
		client_read();
		if ((s = loop.sessions) == NULL)
			return;
		if (event_base_get_num_events(srv.base, EVENT_BASE_COUNT_ACTIVE) > 0)
			continue;
		if (s->pending != NULL && (run.opts & OPT_LATE))
			return;         /* nothing moves before the writer answers */
		if (s->closing || (s->waiting && s->pending == NULL && s->auth_req == NULL)) {
			/* an auth delay or the close: milliseconds (bounded anyway) */
			struct timeval t = { 0, 20000 };
			event_base_loopexit(srv.base, &t);
			event_base_loop(srv.base, EVLOOP_ONCE);
			continue;
		}
		if (!s->waiting && ioctl(server_fd, FIONREAD, &unread) == 0 && unread > 0)
			continue;
		return;
	}
	FUZZ_CHECK(!"the session does not settle");
}

static void
guard_fired(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* The client has shut down its side: everything held back is answered,
 * and the session must end. */
static void
finish(void)
{
	bool late = false;
	struct event *guard = evtimer_new(srv.base, guard_fired, &late);
	struct timeval two = { 2, 0 };

	evtimer_add(guard, &two);
	/* A writer held back answers after the session has seen the end of
	 * its input: a client that half-closes and waits for its 250. */
	for (int i = 0; i < 100 && run.msgs && loop.sessions && !loop.sessions->closing; i++) {
		event_base_loop(srv.base, EVLOOP_NONBLOCK);
		client_read();
	}
	if (run.msgs)
		event_active(srv.writer_ev, EV_READ, 0);
	while (loop.sessions != NULL && !late) {
		event_base_loop(srv.base, EVLOOP_ONCE);
		client_read();
	}
	FUZZ_CHECK(loop.sessions == NULL);       /* freed once the client has gone */
	event_free(guard);
	/* Answers for a session already gone are freed by the session code. */
	writer_wake(-1, 0, NULL);
	auth_wake(-1, 0, NULL);
	for (int i = 0; i < 100 && !run.server_closed; i++) {
		client_read();
		if (!run.server_closed)
			usleep(1000);
	}
	FUZZ_CHECK(run.server_closed);          /* its socket went with it */
}

/* --- the checks ---------------------------------------------------------- */

static void
check_replies(void)
{
	const char *p = run.out, *end = run.out + run.out_len;
	size_t saved = 0;
	int continued = 0;      /* the code of the open multi-line reply */
	bool first = true;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len;
		int code;

		FUZZ_CHECK(nl != NULL);                 /* no partial line */
		len = (size_t)(nl - p) + 1;
		FUZZ_CHECK(len >= 6 && p[len - 2] == '\r');
		FUZZ_CHECK(p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' &&
		    p[2] >= '0' && p[2] <= '9');
		FUZZ_CHECK(p[3] == ' ' || p[3] == '-');
		FUZZ_CHECK(memchr(p, '\r', len - 2) == NULL);
		FUZZ_CHECK(memmem(p, len, "(null)", 6) == NULL);
		code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
		if (first)
			FUZZ_CHECK(code == 220);
		first = false;
		FUZZ_CHECK(continued == 0 || continued == code);
		continued = p[3] == '-' ? code : 0;
		if (p[3] == ' ' && code == 250 && len >= 8 && memcmp(p + len - 8, " Saved\r\n", 8) == 0)
			saved++;
		if (code == 554 && len >= 10 && memcmp(p + 4, "5.5.0 ", 6) == 0) {
			FUZZ_CHECK(cfg.forbid_unauth_pipelining);
			FUZZ_CHECK(p + len == end);
		}
		p += len;
	}
	FUZZ_CHECK(continued == 0);
	FUZZ_CHECK(saved == run.committed);
}

#define FD_SCAN 256

static void
open_fds(bool open_r[FD_SCAN])
{
	for (int fd = 0; fd < FD_SCAN; fd++)
		open_r[fd] = fcntl(fd, F_GETFD) != -1;
}

/* --- the run ------------------------------------------------------------- */

static void
remove_spool_dir(void)
{
	rmdir(spool_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("TMPDIR");
	const char *level = getenv("FUZZ_LOG_LEVEL");

	(void)argc, (void)argv;
	log_init(false, level && strcmp(level, "debug") == 0 ? LOG_LVL_DEBUG : LOG_LVL_ERR);
	config_defaults(&cfg);
	free(cfg.hostname);
	cfg.hostname = xstrdup("fuzz.example");
	cfg.auth_cleartext_loopback = true;
	/* nothing here may wait for the clock but the auth delay */
	cfg.idle_timeout = cfg.session_timeout = cfg.command_timeout = 3600;
	cfg.auth_delay_after = 1;
	cfg.auth_delay_ms = 1;
	cfg.auth_max_failures = 5;
	snprintf(spool_dir, sizeof(spool_dir), "%s/fuzz-smtp-XXXXXX", tmp && *tmp ? tmp : P_tmpdir);
	if (mkdtemp(spool_dir) == NULL) {
		perror("mkdtemp");
		abort();
	}
	srv.cfg = &cfg;
	srv.conn_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	srv.spool_dir = spool_dir;
	srv.smtp_backend = &stub_backend;
	atexit(remove_spool_dir);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct sockaddr_in peer = { .sin_family = AF_INET, .sin_port = htons(40000) };
	int sv[2];
	char bad[64];
	size_t pos;
	bool fds_before[FD_SCAN], fds_after[FD_SCAN];
	size_t i, start;

	if (!ready) {
		if (srv.cfg == NULL)
			LLVMFuzzerInitialize(NULL, NULL);
		ready = true;
	}
	if (size == 0)
		return 0;
	open_fds(fds_before);
	memset(&run, 0, sizeof(run));
	run.opts = data[0];
	data++, size--;

	cfg.tokens_enabled = !(run.opts & OPT_NO_TOKENS);
	cfg.forbid_unauth_pipelining = (run.opts & OPT_NO_TOKENS) != 0;
	cfg.binarymime = !(run.opts & OPT_SMALL);
	cfg.body_memory = run.opts & OPT_SPOOL ? 64 : 1 << 20;
	cfg.max_errors = run.opts & OPT_SMALL ? 3 : 10;
	cfg.max_recipients = run.opts & OPT_SMALL ? 2 : 100;
	cfg.max_message_size = run.opts & OPT_SMALL ? 200 : 1 << 20;
	cfg.max_line_length = run.opts & OPT_SMALL ? 64 : 1000;
	srv.base = event_base_new();
	srv.writer_ev = event_new(srv.base, -1, 0, writer_wake, NULL);
	auth_ev = event_new(srv.base, -1, 0, auth_wake, NULL);
	srv.conn_per_ip = throttle_new(64, 0);
	srv.auth_fail_ip = throttle_new(64, 600);
	srv.auth_fail_user = throttle_new(64, 600);
	srv.draining = false;
	loop = (struct smtp_loop){ .srv = &srv, .base = srv.base };
	srv.loops = &loop;
	srv.nloops = 1;
	FUZZ_CHECK(cidr_list_parse(run.opts & OPT_TRUSTED ? "127.0.0.0/8" : "", &cfg.trusted_nets, &pos,
	    bad, sizeof(bad)) == 0);
	peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	FUZZ_CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
	run.client = sv[1];

	smtp_session_new(&loop, sv[0], (struct sockaddr *)&peer, sizeof(peer), false);
	settle(sv[0]);
	for (start = 0, i = 0; i <= size && loop.sessions != NULL; i++) {
		if (i < size && data[i] != SEPARATOR)
			continue;
		if (i > start)
			client_write(sv[0], data + start, i - start);
		start = i + 1;
		if (loop.sessions != NULL)
			settle(sv[0]);
	}
	if (loop.sessions != NULL && (run.opts & OPT_DRAIN)) {
		srv.draining = true;
		loop.draining = true;
		smtp_session_drain_all(&loop);
	}
	shutdown(run.client, SHUT_WR);
	finish();
	if (getenv("FUZZ_SMTP_TRACE"))      /* to see what a seed does */
		fwrite(run.out, 1, run.out_len, stderr);
	check_replies();

	close(run.client);
	event_free(srv.writer_ev);
	event_free(auth_ev);
	throttle_free(&srv.conn_per_ip);
	throttle_free(&srv.auth_fail_ip);
	throttle_free(&srv.auth_fail_user);
	cidr_list_free(&cfg.trusted_nets);
	event_base_free(srv.base);
	srv.base = NULL;
	free(run.out);
	open_fds(fds_after);
	FUZZ_CHECK(memcmp(fds_before, fds_after, sizeof(fds_before)) == 0);   /* no descriptor leaks */
	return 0;
}
