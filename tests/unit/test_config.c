/*
 * test_config.c: the settings table: defaults, the INI reader's errors
 * (file:line: reason), ranges, booleans, size suffixes, enums and address
 * lists, -o overrides, the cross-field checks of config_finish, and
 * config_load, which puts them together for both programs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>

#include "server/base/config.h"

static char *
write_ini(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/submitd-cfg-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* The sample configuration shipped in etc/ loads: every key it names
 * exists in its section, and every value is within its bounds (a merge
 * once moved a key into the wrong section). */
static void
test_sample_file(void **state)
{
	struct config c;
	char err[256];

	config_defaults(&c);
	if (config_load(&c, SOURCE_ROOT "/etc/submitd.conf", NULL, 0, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	assert_string_equal(c.hostname, "mail.example.org");
	config_free(&c);
}

static void
test_defaults(void **state)
{
	struct config c;
	char err[256];

	config_defaults(&c);
	assert_string_equal(c.data_dir, "./var");
	assert_string_equal(c.listen, "127.0.0.1:2587");
	assert_string_equal(c.listen_tls, "127.0.0.1:2465");
	assert_string_equal(c.trusted_networks, "");
	assert_false(c.auth_cleartext_loopback);
	assert_int_equal(c.max_line_length, 512);
	assert_int_equal(c.max_message_size, 52428800);
	assert_int_equal(c.max_recipients, 100);
	assert_int_equal(c.smtp_threads, 0);         /* one loop per online CPU */
	assert_true(c.tokens_enabled);
	assert_int_equal(c.tokens_lifetime, 7 * 86400);
	assert_true(c.dkim_enabled);
	assert_int_equal(c.dkim_workers, 2);
	assert_int_equal(c.listen_addrs.n, 1);
	assert_string_equal(c.listen_addrs.v[0].text, "127.0.0.1:2587");
	assert_int_equal(c.trusted_nets.n, 0);
	assert_string_equal(c.proxy_networks, "");
	assert_int_equal(c.proxy_nets.n, 0);
	assert_int_equal(c.log_output, CONFIG_LOG_STDERR);
	assert_string_equal(c.log_target, "stderr");
	assert_int_equal(c.log_max_level, LOG_LVL_INFO);
	assert_int_equal(c.relay_tls_mode, CONFIG_RELAY_TLS_REQUIRED);
	assert_string_equal(c.relay_tls, "required");
	assert_int_equal(c.auth_backend_kind, CONFIG_AUTH_INTERNAL);
	assert_string_equal(c.auth_backend, "internal");
	assert_string_equal(c.auth_dovecot_socket, "");
	assert_int_equal(c.auth_dovecot_timeout, 30);
	/* the Sent filing: off, and its settings */
	assert_string_equal(c.sent_imap_host, "");
	assert_int_equal(c.sent_imap_port, 0);
	assert_int_equal(c.sent_tls_mode, CONFIG_SENT_TLS_STARTTLS);
	assert_string_equal(c.sent_tls, "starttls");
	assert_true(c.sent_tls_verify);
	assert_string_equal(c.sent_folder, "Sent");
	assert_int_equal(c.sent_default_mode, CONFIG_OFF);
	assert_string_equal(c.sent_default, "off");
	assert_int_equal(c.sent_connections, 2);
	assert_int_equal(c.sent_retry_base, 30);
	assert_int_equal(c.sent_retry_max, 1800);
	assert_int_equal(c.sent_max_lifetime, 172800);
	/* sending limits (docs/config.md#limits) */
	assert_int_equal(c.limits_user_messages, 300);
	assert_int_equal(c.limits_user_recipients, 2000);
	assert_int_equal(c.limits_ip_messages, 1000);
	assert_int_equal(c.limits_user_messages_window, 3600);
	assert_int_equal(c.limits_user_recipients_window, 86400);
	assert_int_equal(c.limits_ip_messages_window, 3600);
	assert_int_equal(c.limits_max_tracked, 20000);
	assert_int_equal(c.limits_reload_interval, 5);
	assert_int_equal(c.submit_dedup_window, 86400);
	assert_int_equal(config_finish(&c, err, sizeof(err)), 0);
	assert_true(c.hostname[0] != '\0');
	assert_true(c.tokens_issuer[0] != '\0');
	config_free(&c);
}

static void
test_file_ok(void **state)
{
	struct config c;
	char err[256];
	char *p = write_ini(
	    "; comment\n"
	    "[server]\n"
	    "data_dir = /srv/submitd\n"
	    "[smtp]\n"
	    "max_message_size = 10M\n"
	    "auth_cleartext_loopback = yes\n"
	    "trusted_networks = 10.0.0.0/8, ::1\n"
	    "proxy_networks = 192.0.2.10 2001:db8::/64\n"
	    "[tokens]\n"
	    "enabled = false\n"
	    "[dkim]\n"
	    "enabled = false\n"
	    "[submit]\n"
	    "dedup_window = 0\n");

	config_defaults(&c);
	assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
	assert_string_equal(c.data_dir, "/srv/submitd");
	assert_int_equal(c.max_message_size, 10 * 1024 * 1024);
	assert_true(c.auth_cleartext_loopback);
	assert_string_equal(c.trusted_networks, "10.0.0.0/8, ::1");
	assert_int_equal(c.proxy_nets.n, 2);
	assert_int_equal(c.proxy_nets.v[0].prefix, 32);
	assert_int_equal(c.proxy_nets.v[1].prefix, 64);
	assert_false(c.tokens_enabled);
	assert_false(c.dkim_enabled);
	assert_int_equal(c.submit_dedup_window, 0);
	config_free(&c);
	unlink(p);
}

struct bad_case {
	const char *text;
	const char *expect;      /* substring of the error */
};

static void
test_file_errors(void **state)
{
	static const struct bad_case cases[] = {
		{ "[smtp]\nmax_recipients = 100\nmax_recipent = 5\n", ":3: unknown key \"max_recipent\" in section [smtp]" },
		{ "[smtp]\nmax_recipients = lots\n", ":2: smtp.max_recipients: not an integer" },
		{ "[smtp]\nmax_recipients = 0\n", ":2: smtp.max_recipients: 0 is out of range" },
		{ "[smtp]\nthreads = 65\n", ":2: smtp.threads: 65 is out of range" },
		{ "[smtp]\nmax_line_length = 100\n", "out of range [512, 12288]" },
		{ "[tokens]\nenabled = maybe\n", ":2: tokens.enabled: not a boolean" },
		{ "[submit]\ndedup_window = -1\n", ":2: submit.dedup_window: -1 is out of range" },
		{ "[nosuch]\nkey = 1\n", ":2: unknown key \"key\" in section [nosuch]" },
		{ "[smtp\nfoo\n", ":1:" },
		{ "[smtp]\nmax_message_size = 99999999999999999999\n", "not an integer" },
		{ "[smtp]\nmax_message_size = 2G\n", "out of range" },
		{ "[relay]\n\ntls = maybe\n", ":3: relay.tls: must be required, opportunistic or none, not \"maybe\"" },
		{ "[smtp]\nlisten = 127.0.0.1:25 localhost:25\n", ":2: smtp.listen: item 2 is not an address:port" },
		{ "[sent]\ntls = ssl\n", ":2: sent.tls: must be starttls, implicit or none, not \"ssl\"" },
		{ "[sent]\ndefault = yes\n", ":2: sent.default: must be off or on, not \"yes\"" },
		{ "[sent]\nconnections = 0\n", ":2: sent.connections: 0 is out of range [1, 64]" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		char *p = write_ini(cases[i].text);
		config_defaults(&c);
		assert_int_equal(config_load_file(&c, p, err, sizeof(err)), -1);
		if (strstr(err, cases[i].expect) == NULL || strstr(err, p) != err)
			fail_msg("case %zu: error \"%s\" lacks \"%s\" or the file name", i, err, cases[i].expect);
		config_free(&c);
		unlink(p);
	}
}

static void
test_missing_file(void **state)
{
	struct config c;
	char err[256];

	config_defaults(&c);
	assert_int_equal(config_load_file(&c, "/nonexistent/submitd.conf", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot open"));
	config_free(&c);
}

static void
test_overrides(void **state)
{
	struct config c;
	char err[256];

	config_defaults(&c);
	assert_int_equal(config_override(&c, "smtp.trusted_networks=127.0.0.0/8", err, sizeof(err)), 0);
	assert_string_equal(c.trusted_networks, "127.0.0.0/8");
	assert_int_equal(config_override(&c, "smtp.max_recipients=7", err, sizeof(err)), 0);
	assert_int_equal(c.max_recipients, 7);
	assert_int_equal(config_override(&c, "smtp.listen=", err, sizeof(err)), 0);
	assert_string_equal(c.listen, "");
	assert_int_equal(config_override(&c, "smtp.nosuch=1", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown key \"smtp.nosuch\""));
	assert_int_equal(config_override(&c, "novalue", err, sizeof(err)), -1);
	assert_int_equal(config_override(&c, "smtp.max_recipients=-1", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "out of range"));
	/* 0 turns a limit off; a window is at least a second */
	assert_int_equal(config_override(&c, "limits.user_messages_per_hour=0", err, sizeof(err)), 0);
	assert_int_equal(c.limits_user_messages, 0);
	assert_int_equal(config_override(&c, "limits.ip_messages_window=2", err, sizeof(err)), 0);
	assert_int_equal(c.limits_ip_messages_window, 2);
	assert_int_equal(config_override(&c, "limits.ip_messages_window=0", err, sizeof(err)), -1);
	assert_int_equal(config_override(&c, "limits.user_recipients_per_day=-1", err, sizeof(err)), -1);
	assert_int_equal(config_override(&c, "limits.max_tracked=1", err, sizeof(err)), -1);
	config_free(&c);
}

struct enum_case {
	const char *assignment;
	const char *expect_err;     /* substring of the error; NULL: accepted */
	size_t offset;              /* the enum field in struct config */
	int value;                  /* when accepted */
};

static void
test_enums(void **state)
{
	static const struct enum_case cases[] = {
		{ "relay.tls=none", NULL, offsetof(struct config, relay_tls_mode), CONFIG_RELAY_TLS_NONE },
		{ "relay.tls=opportunistic", NULL, offsetof(struct config, relay_tls_mode), CONFIG_RELAY_TLS_OPPORTUNISTIC },
		{ "relay.tls=required", NULL, offsetof(struct config, relay_tls_mode), CONFIG_RELAY_TLS_REQUIRED },
		{ "log.target=syslog", NULL, offsetof(struct config, log_output), CONFIG_LOG_SYSLOG },
		{ "log.level=debug", NULL, offsetof(struct config, log_max_level), LOG_LVL_DEBUG },
		{ "log.level=err", NULL, offsetof(struct config, log_max_level), LOG_LVL_ERR },
		{ "auth.backend=dovecot", NULL, offsetof(struct config, auth_backend_kind), CONFIG_AUTH_DOVECOT },
		{ "auth.backend=internal", NULL, offsetof(struct config, auth_backend_kind), CONFIG_AUTH_INTERNAL },
		{ "auth.backend=ldap", "-o: auth.backend: must be internal or dovecot, not \"ldap\"", 0, 0 },
		{ "sent.tls=implicit", NULL, offsetof(struct config, sent_tls_mode), CONFIG_SENT_TLS_IMPLICIT },
		{ "sent.tls=none", NULL, offsetof(struct config, sent_tls_mode), CONFIG_SENT_TLS_NONE },
		{ "sent.default=on", NULL, offsetof(struct config, sent_default_mode), CONFIG_ON },
		{ "sent.default=On", "-o: sent.default: must be off or on, not \"On\"", 0, 0 },
		{ "relay.tls=Required", "-o: relay.tls: must be required, opportunistic or none, not \"Required\"", 0, 0 },
		{ "relay.tls=", "relay.tls: must be required, opportunistic or none, not \"\"", 0, 0 },
		{ "log.target=file", "-o: log.target: must be stderr or syslog, not \"file\"", 0, 0 },
		{ "log.level=loud", "-o: log.level: must be err, warn, info or debug, not \"loud\"", 0, 0 },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		config_defaults(&c);
		err[0] = '\0';
		if (cases[i].expect_err == NULL) {
			if (config_override(&c, cases[i].assignment, err, sizeof(err)) != 0)
				fail_msg("case %zu: refused: %s", i, err);
			assert_int_equal(*(const int *)((const char *)&c + cases[i].offset), cases[i].value);
		} else {
			assert_int_equal(config_override(&c, cases[i].assignment, err, sizeof(err)), -1);
			if (strstr(err, cases[i].expect_err) == NULL)
				fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].expect_err);
			/* a refused value leaves the previous one */
			assert_int_equal(c.relay_tls_mode, CONFIG_RELAY_TLS_REQUIRED);
			assert_string_equal(c.relay_tls, "required");
			assert_string_equal(c.log_level, "info");
		}
		config_free(&c);
	}
}

struct list_case {
	const char *assignment;
	const char *expect_err;     /* substring of the error; NULL: accepted */
	size_t n;                   /* items, when accepted */
	const char *last;           /* the last listen item's text, when accepted */
};

static void
test_lists(void **state)
{
	static const struct list_case cases[] = {
		{ "smtp.listen=127.0.0.1:587", NULL, 1, "127.0.0.1:587" },
		{ "smtp.listen=0.0.0.0:587, [::]:587", NULL, 2, "[::]:587" },
		{ "smtp.listen= ,\t127.0.0.1:1,,127.0.0.2:2 , ", NULL, 2, "127.0.0.2:2" },
		{ "smtp.listen=", NULL, 0, NULL },
		{ "smtp.listen_tls=[::1]:465", NULL, 1, "[::1]:465" },
		{ "http.listen=127.0.0.1:8025,[::1]:8025", NULL, 2, "[::1]:8025" },
		{ "smtp.listen=foo", "-o: smtp.listen: item 1 is not an address:port (IPv6 as [addr]:port): \"foo\"", 0, NULL },
		{ "smtp.listen=127.0.0.1:1, 127.0.0.1:2 ::1:3", "smtp.listen: item 3 is not an address:port", 0, NULL },
		{ "smtp.listen=127.0.0.1:70000", "item 1 is not an address:port", 0, NULL },
		{ "smtp.listen_tls=127.0.0.1", "smtp.listen_tls: item 1 is not", 0, NULL },
		{ "http.listen=127.0.0.1:1,localhost:2", "http.listen: item 2 is not an address:port", 0, NULL },
		{ "smtp.proxy_networks=127.0.0.1 haproxy.example",
		  "-o: smtp.proxy_networks: item 2 is not an address or CIDR: \"haproxy.example\"", 0, NULL },
		{ "smtp.trusted_networks=10.0.0.0/8 ::1 192.168.0.0/33",
		  "-o: smtp.trusted_networks: item 3 is not an address or CIDR: \"192.168.0.0/33\"", 0, NULL },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config c;
		const struct netaddr_listen_list *l;
		config_defaults(&c);
		err[0] = '\0';
		l = strncmp(cases[i].assignment, "smtp.listen_tls", 15) == 0 ? &c.listen_tls_addrs :
		    strncmp(cases[i].assignment, "http.", 5) == 0 ? &c.http_listen_addrs : &c.listen_addrs;
		if (cases[i].expect_err == NULL) {
			if (config_override(&c, cases[i].assignment, err, sizeof(err)) != 0)
				fail_msg("case %zu: refused: %s", i, err);
			assert_int_equal(l->n, cases[i].n);
			if (cases[i].last != NULL)
				assert_string_equal(l->v[l->n - 1].text, cases[i].last);
			/* the text stays as written, for -p */
			assert_string_equal(strchr(cases[i].assignment, '=') + 1,
			    l == &c.listen_tls_addrs ? c.listen_tls : l == &c.http_listen_addrs ? c.http_listen : c.listen);
		} else {
			assert_int_equal(config_override(&c, cases[i].assignment, err, sizeof(err)), -1);
			if (strstr(err, cases[i].expect_err) == NULL)
				fail_msg("case %zu: error \"%s\" lacks \"%s\"", i, err, cases[i].expect_err);
			/* a refused list leaves the previous one */
			assert_int_equal(c.listen_addrs.n, 1);
			assert_string_equal(c.listen, "127.0.0.1:2587");
			assert_int_equal(c.trusted_nets.n, 0);
		}
		config_free(&c);
	}
}

static void
test_parsed_addresses(void **state)
{
	struct config c;
	char err[256];
	const struct sockaddr_in *sin;

	config_defaults(&c);
	assert_int_equal(config_override(&c, "smtp.listen=192.0.2.1:587 [2001:db8::1]:25", err, sizeof(err)), 0);
	assert_int_equal(c.listen_addrs.v[0].ss.ss_family, AF_INET);
	sin = (const struct sockaddr_in *)&c.listen_addrs.v[0].ss;
	assert_int_equal(ntohs(sin->sin_port), 587);
	assert_int_equal(c.listen_addrs.v[1].ss.ss_family, AF_INET6);
	assert_int_equal(c.listen_addrs.v[1].len, sizeof(struct sockaddr_in6));
	assert_int_equal(config_override(&c, "smtp.trusted_networks=127.0.0.0/8, ::1", err, sizeof(err)), 0);
	assert_int_equal(c.trusted_nets.n, 2);
	assert_int_equal(c.trusted_nets.v[0].prefix, 8);
	assert_int_equal(c.trusted_nets.v[1].prefix, 128);
	config_free(&c);
}

static void
test_load(void **state)
{
	struct config c;
	char err[256];
	char *p = write_ini("[smtp]\nmax_recipients = 5\nlisten = 127.0.0.1:1\n[relay]\ntls = none\n");
	const char *ov[] = { "smtp.max_recipients=6", "relay.tls=opportunistic" };
	const char *bad_ov[] = { "smtp.max_recipients=7", "smtp.nosuch=1" };
	const char *half[] = { "tls.key=/k.pem" };

	/* the file, then the overrides in order, then config_finish */
	config_defaults(&c);
	assert_int_equal(config_load(&c, p, ov, 2, err, sizeof(err)), 0);
	assert_int_equal(c.max_recipients, 6);
	assert_int_equal(c.relay_tls_mode, CONFIG_RELAY_TLS_OPPORTUNISTIC);
	assert_string_equal(c.listen_addrs.v[0].text, "127.0.0.1:1");
	assert_true(c.tokens_issuer[0] != '\0');
	config_free(&c);

	/* no file: the overrides alone */
	config_defaults(&c);
	assert_int_equal(config_load(&c, NULL, ov, 1, err, sizeof(err)), 0);
	assert_int_equal(c.max_recipients, 6);
	config_free(&c);

	config_defaults(&c);
	assert_int_equal(config_load(&c, p, bad_ov, 2, err, sizeof(err)), -1);
	assert_string_equal(err, "-o smtp.nosuch=1: unknown key \"smtp.nosuch\"");
	config_free(&c);

	/* a cross-field error names the file, but no line */
	config_defaults(&c);
	assert_int_equal(config_load(&c, p, half, 1, err, sizeof(err)), -1);
	assert_true(strncmp(err, p, strlen(p)) == 0);
	assert_string_equal(err + strlen(p), ": tls.certificate and tls.key must be set together");
	config_free(&c);
	config_defaults(&c);
	assert_int_equal(config_load(&c, NULL, half, 1, err, sizeof(err)), -1);
	assert_string_equal(err, "tls.certificate and tls.key must be set together");
	config_free(&c);

	config_defaults(&c);
	assert_int_equal(config_load(&c, "/nonexistent/submitd.conf", ov, 2, err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/submitd.conf: cannot open: No such file or directory");
	config_free(&c);
	unlink(p);
}

static void
test_finish_checks(void **state)
{
	struct config c;
	char err[256];

	config_defaults(&c);
	config_override(&c, "tls.certificate=/etc/cert.pem", err, sizeof(err));
	assert_int_equal(config_finish(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "tls.certificate and tls.key"));
	config_free(&c);

	config_defaults(&c);
	config_override(&c, "tokens.issuer=has space", err, sizeof(err));
	assert_int_equal(config_finish(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "tokens.issuer"));
	config_free(&c);

	config_defaults(&c);
	config_override(&c, "smtp.listen=", err, sizeof(err));
	config_override(&c, "smtp.listen_tls=", err, sizeof(err));
	assert_int_equal(config_finish(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "nothing to serve"));
	config_free(&c);

	/* Dovecot's backend needs its socket */
	config_defaults(&c);
	config_override(&c, "auth.backend=dovecot", err, sizeof(err));
	assert_int_equal(config_finish(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "auth.backend = dovecot needs auth.dovecot_socket"));
	config_override(&c, "auth.dovecot_socket=/run/dovecot/auth-submitd", err, sizeof(err));
	assert_int_equal(config_finish(&c, err, sizeof(err)), 0);
	config_free(&c);
	/* the Sent filing: a master user needs its password file, filing needs
	 * a master user, retries grow, the folder can be quoted */
	static const struct { const char *ov[3]; const char *expect; } sent[] = {
		{ { "sent.master_user=m", NULL }, "sent.master_user needs sent.master_password_file" },
		{ { "sent.imap_host=imap.example", NULL }, "sent.imap_host needs sent.master_user" },
		{ { "sent.retry_base=60", "sent.retry_max=30", NULL }, "sent.retry_max (30) is smaller than sent.retry_base (60)" },
		{ { "sent.folder=a\"b", NULL }, "sent.folder: must be a mailbox name" },
		{ { "sent.folder=", NULL }, "sent.folder: must be a mailbox name" },
		{ { "sent.imap_host=imap.example", "sent.master_user=m", "sent.master_password_file=/p" }, NULL },
	};
	for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
		config_defaults(&c);
		for (size_t k = 0; k < 3 && sent[i].ov[k]; k++)
			assert_int_equal(config_override(&c, sent[i].ov[k], err, sizeof(err)), 0);
		if (sent[i].expect == NULL) {
			assert_int_equal(config_finish(&c, err, sizeof(err)), 0);
		} else {
			assert_int_equal(config_finish(&c, err, sizeof(err)), -1);
			if (strstr(err, sent[i].expect) == NULL)
				fail_msg("sent case %zu: error \"%s\" lacks \"%s\"", i, err, sent[i].expect);
		}
		config_free(&c);
	}
}

/* cluster.peers (server/base/peers.c): each case parsed whole, the items
 * checked, and the refusals with the item they name. */
struct peers_case {
	const char *text;
	int n;                  /* items, or -1 refused */
	size_t bad_pos;
	const char *name0, *host0, *prefix0, *url0;
	int port0;
};

static void
test_cluster_peers(void **state)
{
	static char big[4096], longname[100], longurl[400];
	static const struct peers_case cases[] = {
		{ "", 0, 0, NULL, NULL, NULL, NULL, 0 },
		{ " , ,", 0, 0, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://10.0.0.2:8025", 1, 0, "n2", "10.0.0.2", "", "http://10.0.0.2:8025", 8025 },
		{ "n2=http://api.example.org", 1, 0, "n2", "api.example.org", "", "http://api.example.org", 80 },
		{ " n2 = x", -1, 1, NULL, NULL, NULL, NULL, 0 },      /* blank in the name */
		{ "n2=http://[::1]:8025/, n3=http://h3:1/sub/api/", 2, 0, "n2", "::1", "", "http://[::1]:8025", 8025 },
		{ "n3=http://h3:1/sub/api/", 1, 0, "n3", "h3", "/sub/api", "http://h3:1/sub/api", 1 },
		{ "n2=https://h:1", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://h:0", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://h:65536", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://h:123456789", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://h:", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://user@h", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://h/x?y", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://h/x#y", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://[zz]:1", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://[::1", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "=http://h", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n\"2=http://h", -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ "n2=http://a, n3=http://b, n2=http://c", -1, 3, NULL, NULL, NULL, NULL, 0 },
		{ big, -1, 65, NULL, NULL, NULL, NULL, 0 },
		{ longname, -1, 1, NULL, NULL, NULL, NULL, 0 },
		{ longurl, -1, 1, NULL, NULL, NULL, NULL, 0 },
	};
	size_t used = 0;

	for (int i = 0; i < 65; i++)
		used += (size_t)snprintf(big + used, sizeof(big) - used, "n%d=http://10.0.0.%d:80,", i, i % 250);
	memset(longname, 'a', 65);
	strcpy(longname + 65, "=http://h");
	strcpy(longurl, "n=http://h/");
	memset(longurl + strlen(longurl), 'p', 300);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct peers_case *k = &cases[i];
		struct peer_list l;
		char why[128];
		size_t pos = 0;
		int rc = peer_list_parse(k->text, &l, &pos, why, sizeof(why));

		if (k->n < 0) {
			if (rc != -1)
				fail_msg("peers case %zu (%.40s): accepted", i, k->text);
			assert_int_equal(pos, k->bad_pos);
			assert_int_equal(l.n, 0);
			assert_null(l.v);
			continue;
		}
		if (rc != 0)
			fail_msg("peers case %zu (%s): refused: item %zu %s", i, k->text, pos, why);
		assert_int_equal(l.n, (size_t)k->n);
		if (k->n > 0) {
			assert_string_equal(l.v[0].name, k->name0);
			assert_string_equal(l.v[0].host, k->host0);
			assert_string_equal(l.v[0].prefix, k->prefix0);
			assert_string_equal(l.v[0].url, k->url0);
			assert_int_equal(l.v[0].port, k->port0);
			assert_non_null(peer_list_find(&l, k->name0));
		}
		assert_null(peer_list_find(&l, "nobody"));
		peer_list_free(&l);
	}
}

/* The keys through the loader: defaults, bounds, the list's error, and a
 * node that lists itself. */
static void
test_cluster_keys(void **state)
{
	struct config c;
	char err[512];
	const char *ok[] = { "cluster.peers=b=http://127.0.0.1:2, c=http://127.0.0.1:3", "tokens.issuer=a",
		"cluster.refresh_interval=10", "cluster.timeout=2" };
	const char *self[] = { "cluster.peers=a=http://127.0.0.1:2", "tokens.issuer=a" };
	const char *bad_list[] = { "cluster.peers=b=http://h, b=http://h" };
	const char *no_api[] = { "cluster.peers=b=http://127.0.0.1:2", "http.listen=" };
	const char *bad_timeout[] = { "cluster.timeout=0" };
	const char *bad_interval[] = { "cluster.refresh_interval=86401" };

	config_defaults(&c);
	assert_int_equal(c.cluster_peer_list.n, 0);
	assert_int_equal(c.cluster_refresh_interval, 300);
	assert_int_equal(c.cluster_timeout, 5);
	assert_string_equal(c.cluster_secret_file, "");
	config_free(&c);

	config_defaults(&c);
	assert_int_equal(config_load(&c, NULL, ok, 4, err, sizeof(err)), 0);
	assert_int_equal(c.cluster_peer_list.n, 2);
	assert_string_equal(c.cluster_peer_list.v[1].name, "c");
	assert_int_equal(c.cluster_peer_list.v[1].port, 3);
	assert_int_equal(c.cluster_refresh_interval, 10);
	config_free(&c);

	config_defaults(&c);
	assert_int_equal(config_load(&c, NULL, self, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "names this node"));
	config_free(&c);

	config_defaults(&c);
	assert_int_equal(config_load(&c, NULL, bad_list, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cluster.peers: item 2: node named twice"));
	config_free(&c);

	config_defaults(&c);
	assert_int_equal(config_load(&c, NULL, no_api, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cluster.peers needs http.listen"));
	config_free(&c);

	config_defaults(&c);
	assert_int_equal(config_load(&c, NULL, bad_timeout, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cluster.timeout"));
	config_free(&c);

	config_defaults(&c);
	assert_int_equal(config_load(&c, NULL, bad_interval, 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cluster.refresh_interval"));
	config_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_file_ok),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_enums),
		cmocka_unit_test(test_lists),
		cmocka_unit_test(test_parsed_addresses),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_finish_checks),
		cmocka_unit_test(test_cluster_peers),
		cmocka_unit_test(test_cluster_keys),
		cmocka_unit_test(test_sample_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
