/*
 * main.c: submitd's entry point. Reads the configuration, prepares the
 * data directory (database, TLS material, spool), binds the listeners,
 * drops privileges if told to, starts the writer thread, the auth
 * workers and the SMTP loops (smtp_loops.c), and runs the main event loop
 * until SIGTERM has drained the sessions of every loop.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <sodium.h>

#include "db/dkim_store.h"
#include "db/store.h"
#include "db/writer.h"
#include "server/auth/auth.h"
#include "server/auth/dovecot_client.h"
#include "server/base/config.h"
#include "server/dkim/dkim_sign.h"
#include "server/api/http_api.h"
#include "server/daemon/smtp_loops.h"
#include "server/base/log.h"
#include "server/limits/limits.h"
#include "server/relay/relay.h"
#include "server/runtime/server.h"
#include "server/sent/sent.h"
#include "server/smtp/smtp_session.h"
#include "server/base/throttle.h"
#include "server/net/tls.h"
#include "server/protocol/mail_header.h"
#include "server/base/util.h"

#define THROTTLE_CAPACITY 65536

/* The Sent filing: the daemon's alone (struct server knows no filer), it
 * wires the filer to the writer's wake-up, the drain and the shutdown. */
static struct sent *sent;
/* The DKIM signers (dkim.enabled), one per prepend worker of the writer. */
static struct dkim_signer **dkim;
static int ndkim;

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: submitd [-n | -p] [-c FILE] [-o section.key=value]...\n"
	    "  -c FILE   read the configuration from FILE (INI; see docs/config.md)\n"
	    "  -o K=V    set one key, after the file (e.g. -o smtp.trusted_networks=127.0.0.0/8)\n"
	    "  -n        check the configuration and exit\n"
	    "  -p        print the effective configuration and exit\n"
	    "  -h        this help\n");
}

/* The writer's notify, on its threads: the finished messages go to the
 * loops of their sessions; the main loop then runs the finished jobs and,
 * after new commits, kicks the relay and the filer. */
static void
writer_notify(void *arg)
{
	struct server *srv = arg;
	size_t committed = smtp_loops_route_msgs(srv, writer_collect(srv->writer));

	if (committed > 0)
		__atomic_add_fetch(&srv->commits, 1, __ATOMIC_RELEASE);
	event_active(srv->writer_ev, EV_READ, 0);
}

/* The auth pool's notify, on a worker: the answers go to their loops. */
static void
auth_notify(void *arg)
{
	struct server *srv = arg;

	smtp_loops_route_auth(srv, auth_pool_collect(srv->auth));
}

/* writer_opts.prepend, on the writer's prepend worker `thread`: the
 * message's DKIM signatures. A message whose signing fails goes unsigned
 * (logged by the signer, counted here). */
static char *
dkim_prepend(void *arg, int thread, const struct writer_msg *m)
{
	struct server *srv = arg;
	char *out;
	int rc = dkim_signer_sign(dkim[thread], m->public_id, m->body, m->spool_fd, m->size, &out);

	if (rc == 1)
		STAT_ADD(srv->stats.dkim_signed, 1);
	else if (rc == -1)
		STAT_ADD(srv->stats.dkim_failed, 1);
	return rc == 1 ? out : NULL;
}

/* server_maybe_exit's event: while draining, leave the loop once no
 * session and no delivery is left. */
static void
on_maybe_idle(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	if (srv->draining && STAT_GET(srv->nsessions) == 0 && relay_busy(srv) == 0 && sent_busy(sent) == 0)
		event_base_loopexit(srv->base, NULL);
}

/* The writer finished something: the sessions' answers went to their
 * loops (writer_notify); new messages on disk are the relay's to look at,
 * then the relay's jobs. */
static void
on_writer_wake(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	if (__atomic_exchange_n(&srv->commits, 0, __ATOMIC_ACQ_REL) > 0) {
		relay_kick(srv);
		sent_kick(sent);
	}
	/* every writer job's done(), the filer's too */
	relay_jobs_done(srv);
}

/* The sessions' way to the writer and the auth pool (smtp_session.h). */
static void
backend_submit(void *ctx, struct writer_msg *m)
{
	struct server *srv = ctx;

	writer_submit(srv->writer, m);
}

static void
backend_authenticate(void *ctx, struct auth_request *r)
{
	struct server *srv = ctx;

	auth_pool_submit(srv->auth, r);
}

static void
on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	char per_loop[256];
	size_t n = smtp_loops_sessions(srv, per_loop, sizeof(per_loop));

	/* the loops close what is left when the main loop has returned */
	log_warn("event=drain_timeout sessions=%zu per_loop=%s", n, per_loop);
	event_base_loopexit(srv->base, NULL);
}

static void
on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	struct timeval tv = { (time_t)srv->cfg->drain_timeout, 0 };
	char per_loop[256];
	size_t n;

	if (srv->draining) {
		log_warn("event=shutdown_forced signal=%d", (int)sig);
		event_base_loopexit(srv->base, NULL);
		return;
	}
	n = smtp_loops_sessions(srv, per_loop, sizeof(per_loop));
	log_info("event=shutdown_begin signal=%d sessions=%zu per_loop=%s", (int)sig, n, per_loop);
	__atomic_store_n(&srv->draining, true, __ATOMIC_RELEASE);
	relay_drain(srv);
	sent_drain(sent);
	srv->drain_timer = evtimer_new(srv->base, on_drain_deadline, srv);
	evtimer_add(srv->drain_timer, &tv);
	/* each loop stops accepting and drains on its own thread; the last
	 * session to go, on whichever loop, calls server_maybe_exit */
	smtp_loops_drain(srv);
	server_maybe_exit(srv);
}

static void
on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	char err[512];
	SSL_CTX *ctx;

	/* per-login policies (submitctl user disable, limit): read again now */
	limits_reload(srv);
	ctx = tls_ctx_new(srv->cert_path, srv->key_path, err, sizeof(err));
	if (ctx == NULL) {
		log_err("event=reload_failed what=tls error=\"%s\" keeping=old_certificate", err);
		return;
	}
	/* Sessions hold references to the old context; it goes when they do. */
	pthread_mutex_lock(&srv->ssl_lock);
	SSL_CTX_free(srv->ssl_ctx);
	__atomic_store_n(&srv->ssl_ctx, ctx, __ATOMIC_RELEASE);   /* server_tls_ready reads it unlocked */
	pthread_mutex_unlock(&srv->ssl_lock);
	log_info("event=reloaded what=tls certificate=%s", srv->cert_path);
}

/*
 * A process that parses mail from the network must not keep root: root is
 * only for binding low ports and creating the data directory, then
 * server.user takes over. A user that is root again (uid 0) drops nothing.
 */
static int
check_identity(const char *user, char *err, size_t errlen)
{
	struct passwd *pw;

	if (user[0] == '\0') {
		if (geteuid() == 0) {
			snprintf(err, errlen, "refusing to run as root: set server.user to the "
			    "unprivileged user submitd should drop to after binding");
			return -1;
		}
		return 0;
	}
	pw = getpwnam(user);
	if (pw == NULL) {
		snprintf(err, errlen, "server.user: no such user \"%s\"", user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "server.user: \"%s\" is root (uid 0); name an unprivileged user", user);
		return -1;
	}
	if (geteuid() != 0) {
		snprintf(err, errlen, "server.user is set (\"%s\") but submitd was not started as "
		    "root, so it cannot switch to it: start it as root or leave server.user empty", user);
		return -1;
	}
	return 0;
}

static int
drop_privileges(const char *user, const char *data_dir, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);

	if (pw == NULL) {
		snprintf(err, errlen, "server.user: no such user \"%s\"", user);
		return -1;
	}
	/* The data directory must stay writable for the database. */
	if (chown(data_dir, pw->pw_uid, pw->pw_gid) == -1) {
		snprintf(err, errlen, "chown %s: %s", data_dir, strerror(errno));
		return -1;
	}
	if (setgroups(1, &pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 || setuid(pw->pw_uid) == -1) {
		snprintf(err, errlen, "cannot drop privileges to %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) != -1) {
		snprintf(err, errlen, "privileges were not dropped");
		return -1;
	}
	return 0;
}

/* Refuse to start on storage that cannot be written (a read-only file
 * system, an immutable file, no permission): SQLite would quietly open
 * the database read-only, and the server would look healthy while it
 * refused every message with 451. Checked on the paths themselves, and
 * by creating a file where SQLite (the -wal and -shm files) and the
 * spool must create theirs. */
static int
check_writable(const struct server *srv, const char *data_dir, char *err, size_t errlen)
{
	const char *dirs[] = { data_dir, srv->spool_dir };
	int e;

	if (access(srv->db_path, W_OK) == -1 && errno != ENOENT) {
		snprintf(err, errlen, "%s: database not writable: %s", srv->db_path, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		if ((e = dir_probe_write(dirs[i])) != 0) {
			snprintf(err, errlen, "%s: directory not writable: %s", dirs[i], strerror(e));
			return -1;
		}
	}
	return 0;
}

static void
chown_tree(const char *path, uid_t uid, gid_t gid)
{
	/* The files submitd itself creates in the data directory. */
	static const char *const names[] = { "", "/" STORE_DB_NAME, "/" STORE_DB_NAME "-wal",
	    "/" STORE_DB_NAME "-shm", "/spool", "/tls", "/tls/cert.pem", "/tls/key.pem" };
	char p[4096];

	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		snprintf(p, sizeof(p), "%s%s", path, names[i]);
		if (chown(p, uid, gid) == -1 && errno != ENOENT)
			log_warn("event=chown_failed path=%s error=\"%s\"", p, strerror(errno));
	}
}

/* The configuration lives for the whole process; freeing it at exit keeps
 * the many early returns of start-up simple and leak checkers quiet. */
static struct config cfg;

static void
free_config(void)
{
	config_free(&cfg);
}

/* Likewise what start-up allocates before the event loop exists: a refused
 * configuration or a failed start returns early, after any of these. */
static struct server srv = { .ssl_lock = PTHREAD_MUTEX_INITIALIZER, .conn_lock = PTHREAD_MUTEX_INITIALIZER };

static void
free_server(void)
{
	SSL_CTX_free(srv.ssl_ctx);
	srv.ssl_ctx = NULL;
	xfreep(&srv.db_path);
	xfreep(&srv.spool_dir);
	xfreep(&srv.cert_path);
	xfreep(&srv.key_path);
}

int
main(int argc, char **argv)
{
	char err[1024];
	const char *conf_file = NULL, **overrides;
	size_t noverrides = 0;
	bool check_only = false, print_only = false;
	struct event *sig_term, *sig_int, *sig_hup;
	sqlite3 *db;
	int ch, rc;

	config_defaults(&cfg);
	atexit(free_config);
	overrides = xcalloc((size_t)argc, sizeof(*overrides));
	while ((ch = getopt(argc, argv, "c:o:nph")) != -1) {
		switch (ch) {
		case 'c': conf_file = optarg; break;
		case 'o': overrides[noverrides++] = optarg; break;
		case 'n': check_only = true; break;
		case 'p': print_only = true; break;
		case 'h': free(overrides); usage(stdout); return 0;
		default: free(overrides); usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		free(overrides);
		usage(stderr);
		return 2;
	}
	rc = config_load(&cfg, conf_file, overrides, noverrides, err, sizeof(err));
	free(overrides);
	if (rc == -1) {
		fprintf(stderr, "submitd: %s\n", err);
		return 1;
	}
	memset(&srv, 0, sizeof(srv));
	pthread_mutex_init(&srv.ssl_lock, NULL);
	pthread_mutex_init(&srv.conn_lock, NULL);
	srv.cfg = &cfg;
	atexit(free_server);
	if (check_identity(cfg.user, err, sizeof(err)) == -1) {
		fprintf(stderr, "submitd: %s\n", err);
		return 1;
	}
	if (http_api_check_config(&cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "submitd: %s\n", err);
		return 1;
	}
	if (cfg.tls_certificate[0]) {
		SSL_CTX *ctx = tls_ctx_new(cfg.tls_certificate, cfg.tls_key, err, sizeof(err));
		if (ctx == NULL) {
			fprintf(stderr, "submitd: tls: %s\n", err);
			return 1;
		}
		SSL_CTX_free(ctx);
	}
	if (sent_check_config(&cfg, err, sizeof(err)) == -1) {
		fprintf(stderr, "submitd: %s\n", err);
		return 1;
	}
	if (print_only) {
		config_dump(&cfg);
		return 0;
	}
	if (check_only) {
		printf("submitd: configuration ok\n");
		return 0;
	}
	log_init(cfg.log_output == CONFIG_LOG_SYSLOG, cfg.log_max_level);
	if (sodium_init() < 0) {
		fprintf(stderr, "submitd: libsodium failed to initialise\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	umask(077);

	/* The data directory: database, spool, generated TLS material. */
	srv.db_path = path_join(cfg.data_dir, STORE_DB_NAME);
	srv.spool_dir = path_join(cfg.data_dir, "spool");
	{
		char *tlsdir = path_join(cfg.data_dir, "tls");
		bool made = mkdir_p(cfg.data_dir, 0700) == 0 && mkdir_p(srv.spool_dir, 0700) == 0 &&
		    (cfg.tls_certificate[0] != '\0' || mkdir_p(tlsdir, 0700) == 0);
		int saved = errno;

		free(tlsdir);
		if (!made) {
			log_err("event=startup_failed error=\"%s: %s\"", cfg.data_dir, strerror(saved));
			return 1;
		}
	}
	if (check_writable(&srv, cfg.data_dir, err, sizeof(err)) == -1) {
		log_err("event=startup_failed error=\"%s\"", err);
		return 1;
	}
	if (cfg.tls_certificate[0]) {
		srv.cert_path = xstrdup(cfg.tls_certificate);
		srv.key_path = xstrdup(cfg.tls_key);
	} else {
		srv.cert_path = path_join(cfg.data_dir, "tls/cert.pem");
		srv.key_path = path_join(cfg.data_dir, "tls/key.pem");
		rc = tls_ensure_self_signed(srv.cert_path, srv.key_path, cfg.hostname, err, sizeof(err));
		if (rc == -1) {
			log_err("event=startup_failed error=\"%s\"", err);
			return 1;
		}
		if (rc == 1)
			log_info("event=certificate_generated path=%s note=self-signed", srv.cert_path);
	}
	srv.ssl_ctx = tls_ctx_new(srv.cert_path, srv.key_path, err, sizeof(err));
	if (srv.ssl_ctx == NULL) {
		log_err("event=startup_failed error=\"%s\"", err);
		return 1;
	}

	evthread_use_pthreads();
	srv.base = event_base_new();
	if (srv.base == NULL) {
		log_err("event=startup_failed error=\"cannot create the event base\"");
		return 1;
	}
	/* every loop's listeners, bound before the privileges go */
	if (smtp_loops_open(&srv, err, sizeof(err)) == -1) {
		log_err("event=startup_failed error=\"%s\"", err);
		return 1;
	}
	db = store_open(srv.db_path, err, sizeof(err));
	if (db == NULL) {
		log_err("event=startup_failed error=\"%s\"", err);
		return 1;
	}
	if (sqlite3_db_readonly(db, "main") == 1) {
		/* what check_writable could not see (say, an -shm or -wal file
		 * that cannot be written) */
		log_err("event=startup_failed error=\"%s: the database opened read-only\"", srv.db_path);
		store_close(&db);
		return 1;
	}
	if (cfg.tokens_enabled) {
		rc = store_key_ensure(db, now_unix(), err, sizeof(err));
		if (rc == -1) {
			log_err("event=startup_failed error=\"signing key: %s\"", err);
			return 1;
		}
		if (rc == 1)
			log_info("event=key_generated reason=first_start");
	}
	/* The counts of the last windows and the per-login policies, read
	 * here, before the loop runs: the loop itself never reads SQLite. */
	srv.limits = limits_new(&cfg);
	if (limits_load(srv.limits, db, now_ms(), err, sizeof(err)) == -1) {
		log_err("event=startup_failed error=\"%s\"", err);
		store_close(&db);
		return 1;
	}
	store_close(&db);
	if (cfg.user[0]) {
		struct passwd *pw = getpwnam(cfg.user);
		if (pw)
			chown_tree(cfg.data_dir, pw->pw_uid, pw->pw_gid);
		if (drop_privileges(cfg.user, cfg.data_dir, err, sizeof(err)) == -1) {
			log_err("event=startup_failed error=\"%s\"", err);
			return 1;
		}
	}

	srv.writer_ev = event_new(srv.base, -1, 0, on_writer_wake, &srv);
	srv.idle_ev = event_new(srv.base, -1, 0, on_maybe_idle, &srv);
	{
		static const struct smtp_backend backend = {
			.ctx = &srv, .submit = backend_submit, .authenticate = backend_authenticate,
		};
		srv.smtp_backend = &backend;
	}
	if (cfg.dkim_enabled) {
		dkim = xcalloc((size_t)cfg.dkim_workers, sizeof(*dkim));
		for (ndkim = 0; ndkim < (int)cfg.dkim_workers; ndkim++) {
			dkim[ndkim] = dkim_signer_new(srv.db_path, err, sizeof(err));
			if (dkim[ndkim] == NULL) {
				log_err("event=startup_failed error=\"dkim: %s\"", err);
				return 1;
			}
		}
	}
	{
		struct writer_opts wo = {
			.db_path = srv.db_path, .tokens = cfg.tokens_enabled,
			.token_lifetime = cfg.tokens_lifetime, .issuer = cfg.tokens_issuer,
			.batch = (int)cfg.store_batch,
			.checkpoint_pages = (int)cfg.store_checkpoint_pages, .notify = writer_notify, .notify_arg = &srv,
			.sent_jobs = cfg.sent_imap_host[0] != '\0', .sent_default = cfg.sent_default_mode == CONFIG_ON,
			.prepend = dkim ? dkim_prepend : NULL, .prepend_arg = &srv, .prepend_threads = ndkim,
			.prepend_wanted_sql = dkim_store_active_sql,
			.unrouted = cfg.relay_host[0] == '\0',
			.message_id = mail_header_message_id, .message_id_scan = MAIL_HEADER_ID_SCAN,
			.message_id_max = MAIL_MSGID_MAX, .dedup_window = cfg.submit_dedup_window,
		};
		srv.writer = writer_start(&wo, err, sizeof(err));
		if (srv.writer == NULL) {
			log_err("event=startup_failed error=\"writer: %s\"", err);
			return 1;
		}
	}
	{
		struct auth_pool_opts ao = {
			.db_path = srv.db_path, .workers = (int)cfg.auth_workers,
			.cache_size = (size_t)cfg.auth_cache_size, .cache_ttl = cfg.auth_cache_ttl,
			.notify = auth_notify, .notify_arg = &srv,
		};
		srv.auth = auth_pool_start(&ao, err, sizeof(err));
		if (srv.auth == NULL) {
			log_err("event=startup_failed error=\"auth: %s\"", err);
			return 1;
		}
	}
	/* each loop connects to Dovecot's auth service itself (smtp_loops_run) */
	srv.dovecot = cfg.auth_backend_kind == CONFIG_AUTH_DOVECOT;
	if (http_api_start(&srv, err, sizeof(err)) == -1) {
		log_err("event=startup_failed error=\"%s\"", err);
		return 1;
	}
	if (relay_start(&srv, err, sizeof(err)) == -1) {
		log_err("event=startup_failed error=\"relay: %s\"", err);
		return 1;
	}
	sent = sent_start(&srv, err, sizeof(err));
	if (sent == NULL) {
		log_err("event=startup_failed error=\"sent: %s\"", err);
		return 1;
	}
	limits_start(&srv);
	srv.conn_per_ip = throttle_new(THROTTLE_CAPACITY, 0);
	srv.auth_fail_ip = throttle_new(THROTTLE_CAPACITY, cfg.auth_failure_window);
	srv.auth_fail_user = throttle_new(THROTTLE_CAPACITY, cfg.auth_failure_window);
	if (smtp_loops_run(&srv, err, sizeof(err)) == -1) {
		log_err("event=startup_failed error=\"%s\"", err);
		return 1;
	}

	sig_term = evsignal_new(srv.base, SIGTERM, on_sigterm, &srv);
	sig_int = evsignal_new(srv.base, SIGINT, on_sigterm, &srv);
	sig_hup = evsignal_new(srv.base, SIGHUP, on_sighup, &srv);
	evsignal_add(sig_term, NULL);
	evsignal_add(sig_int, NULL);
	evsignal_add(sig_hup, NULL);

	log_info("event=ready version=%s hostname=%s data_dir=%s tokens=%s smtp_loops=%u", "0.1.0", cfg.hostname,
	    cfg.data_dir, cfg.tokens_enabled ? "on" : "off", srv.nloops);
	event_base_dispatch(srv.base);

	log_info("event=shutdown_stopping sessions=%zu", STAT_GET(srv.nsessions));
	/* every loop closes its listeners, sessions and Dovecot client on its
	 * own thread; the threads are joined */
	smtp_loops_stop(&srv);
	http_api_stop(&srv);
	/* The filer's connections go (their jobs are due again at the next
	 * start). Results the relay and the filer handed to the writer: let
	 * them commit and collect them while both still exist to take them
	 * back. */
	sent_stop(sent);
	limits_stop(&srv);
	writer_flush(srv.writer);
	relay_jobs_done(&srv);
	relay_stop(&srv);
	sent_free(&sent);
	/* Messages already handed to the writer are committed before exit. */
	writer_stop(&srv.writer);
	for (int i = 0; i < ndkim; i++)
		dkim_signer_free(&dkim[i]);
	free(dkim);
	limits_free(&srv.limits);
	auth_pool_stop(&srv.auth);
	/* Drain what the threads finished after the loops stopped. */
	smtp_loops_free(&srv);
	event_free(srv.writer_ev);
	event_free(srv.idle_ev);
	event_free(sig_term);
	event_free(sig_int);
	event_free(sig_hup);
	if (srv.drain_timer)
		event_free(srv.drain_timer);
	throttle_free(&srv.conn_per_ip);
	throttle_free(&srv.auth_fail_ip);
	throttle_free(&srv.auth_fail_user);
	event_base_free(srv.base);
	log_info("event=shutdown_done");
	return 0;
}
