/*
 * test_config.c: the settings table: defaults, the INI reader's errors
 * (file:line: reason), ranges, booleans, size suffixes, -o overrides, and
 * the cross-field checks of config_finish.
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
	assert_true(c.tokens_enabled);
	assert_int_equal(c.tokens_lifetime, 7 * 86400);
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
	    "[tokens]\n"
	    "enabled = false\n");

	config_defaults(&c);
	assert_int_equal(config_load_file(&c, p, err, sizeof(err)), 0);
	assert_string_equal(c.data_dir, "/srv/submitd");
	assert_int_equal(c.max_message_size, 10 * 1024 * 1024);
	assert_true(c.auth_cleartext_loopback);
	assert_string_equal(c.trusted_networks, "10.0.0.0/8, ::1");
	assert_false(c.tokens_enabled);
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
		{ "[smtp]\nmax_line_length = 100\n", "out of range [512, 12288]" },
		{ "[tokens]\nenabled = maybe\n", ":2: tokens.enabled: not a boolean" },
		{ "[nosuch]\nkey = 1\n", ":2: unknown key \"key\" in section [nosuch]" },
		{ "[smtp\nfoo\n", ":1:" },
		{ "[smtp]\nmax_message_size = 99999999999999999999\n", "not an integer" },
		{ "[smtp]\nmax_message_size = 2G\n", "out of range" },
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
	config_free(&c);
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
	config_override(&c, "log.level=loud", err, sizeof(err));
	assert_int_equal(config_finish(&c, err, sizeof(err)), -1);
	config_free(&c);

	config_defaults(&c);
	config_override(&c, "smtp.listen=", err, sizeof(err));
	config_override(&c, "smtp.listen_tls=", err, sizeof(err));
	assert_int_equal(config_finish(&c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "nothing to serve"));
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
		cmocka_unit_test(test_finish_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
