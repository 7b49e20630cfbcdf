/*
 * fuzz_config.c: the configuration reader (server/base/config.h). The input is
 * an INI file: it is written to a temporary file (unlinked at once and
 * reached again through /dev/fd, so a crash leaves nothing behind) and
 * loaded over the defaults with config_load_file; every line of the input
 * that holds a "=" is then also applied as a -o override
 * ("section.key=value"), and after a successful load config_finish runs.
 * config_free must free everything (LeakSanitizer runs after every input
 * under libFuzzer).
 *
 * Checks: never a crash or leak; an error comes with a message that names
 * the file; after a successful load and finish the cross-field rules that
 * config_finish promises hold, every integer setting that the tests rely on
 * is within its declared bounds, no string setting is NULL, every enum
 * value is one of its enum and agrees with its name, and every parsed list
 * is empty exactly when its text holds no item.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "server/base/config.h"

static int fd = -1;
static char path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char tmpl[] = "/tmp/submitd-fuzz-config-XXXXXX";
	const char *dir = getenv("TMPDIR");
	char buf[4096];

	(void)argc;
	(void)argv;
	if (dir != NULL && strlen(dir) + 40 < sizeof(buf)) {
		snprintf(buf, sizeof(buf), "%s/submitd-fuzz-config-XXXXXX", dir);
		fd = mkstemp(buf);
		if (fd >= 0)
			unlink(buf);
	}
	if (fd < 0) {
		fd = mkstemp(tmpl);
		if (fd < 0)
			abort();
		unlink(tmpl);
	}
	snprintf(path, sizeof(path), "/dev/fd/%d", fd);
	return 0;
}

static void
check_config(const struct config *c)
{
	const char *strs[] = {
		c->data_dir, c->hostname, c->user, c->log_target, c->log_level, c->listen, c->listen_tls,
		c->trusted_networks, c->tls_certificate, c->tls_key, c->tokens_issuer, c->http_listen,
		c->relay_host, c->relay_tls, c->relay_tls_ca_file, c->relay_auth_user,
		c->relay_auth_password_file,
	};

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		FUZZ_CHECK(strs[i] != NULL);
	FUZZ_CHECK(c->max_line_length >= 512 && c->max_line_length <= 12288);
	FUZZ_CHECK(c->max_message_size >= 1024 && c->max_message_size <= 1000000000);
	FUZZ_CHECK(c->max_recipients >= 1 && c->max_recipients <= 10000);
	FUZZ_CHECK(c->body_memory >= 4096 && c->body_memory <= 64 * 1024 * 1024);
	FUZZ_CHECK(c->relay_port >= 1 && c->relay_port <= 65535);
	FUZZ_CHECK(c->tokens_lifetime >= 1 && c->tokens_lifetime <= 366 * 86400);
	FUZZ_CHECK(c->store_batch >= 1 && c->store_batch <= 4096);
	FUZZ_CHECK(c->auth_workers >= 1 && c->auth_workers <= 64);
	{
		static const char *const targets[] = { "stderr", "syslog" };
		static const char *const levels[] = { "err", "warn", "info", "debug" };
		static const char *const modes[] = { "required", "opportunistic", "none" };
		FUZZ_CHECK((int)c->log_output >= 0 && (int)c->log_output <= 1);
		FUZZ_CHECK(strcmp(c->log_target, targets[c->log_output]) == 0);
		FUZZ_CHECK((int)c->log_max_level >= 0 && (int)c->log_max_level <= 3);
		FUZZ_CHECK(strcmp(c->log_level, levels[c->log_max_level]) == 0);
		FUZZ_CHECK((int)c->relay_tls_mode >= 0 && (int)c->relay_tls_mode <= 2);
		FUZZ_CHECK(strcmp(c->relay_tls, modes[c->relay_tls_mode]) == 0);
	}
	FUZZ_CHECK((c->listen_addrs.n == 0) == (c->listen[strspn(c->listen, ", \t")] == '\0'));
	FUZZ_CHECK((c->listen_tls_addrs.n == 0) == (c->listen_tls[strspn(c->listen_tls, ", \t")] == '\0'));
	FUZZ_CHECK((c->http_listen_addrs.n == 0) == (c->http_listen[strspn(c->http_listen, ", \t")] == '\0'));
	FUZZ_CHECK((c->trusted_nets.n == 0) ==
	    (c->trusted_networks[strspn(c->trusted_networks, ", \t")] == '\0'));
}

static void
check_finished(const struct config *c)
{
	size_t n = strlen(c->tokens_issuer);

	FUZZ_CHECK(n >= 1 && n <= 64);
	for (const char *s = c->tokens_issuer; *s; s++)
		FUZZ_CHECK(*s > 0x20 && *s < 0x7f && *s != '"' && *s != '\\');
	FUZZ_CHECK(strcmp(c->log_target, "stderr") == 0 || strcmp(c->log_target, "syslog") == 0);
	FUZZ_CHECK(strcmp(c->log_level, "err") == 0 || strcmp(c->log_level, "warn") == 0 ||
	    strcmp(c->log_level, "info") == 0 || strcmp(c->log_level, "debug") == 0);
	FUZZ_CHECK(strcmp(c->relay_tls, "required") == 0 || strcmp(c->relay_tls, "opportunistic") == 0 ||
	    strcmp(c->relay_tls, "none") == 0);
	FUZZ_CHECK((c->tls_certificate[0] == '\0') == (c->tls_key[0] == '\0'));
	FUZZ_CHECK(c->relay_retry_max >= c->relay_retry_base);
	FUZZ_CHECK(c->data_dir[0] != '\0' && c->hostname[0] != '\0');
	FUZZ_CHECK(c->listen_addrs.n > 0 || c->listen_tls_addrs.n > 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	char err[512];
	int rc;

	if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
		abort();
	config_defaults(&cfg);
	check_config(&cfg);
	err[0] = '\0';
	rc = config_load_file(&cfg, path, err, sizeof(err));
	if (rc != 0)
		FUZZ_CHECK(rc == -1 && strncmp(err, path, strlen(path)) == 0);
	check_config(&cfg);
	/* every "section.key=value" line, as -o would pass it (also after a
	 * failed load: whatever the file left must stay consistent) */
	for (const uint8_t *p = data, *end = data + size; p < end;) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char *line = fuzz_strdup(p, n);

		if (strchr(line, '=') != NULL && line[0] != '[' && line[0] != ';' && line[0] != '#') {
			err[0] = '\0';
			if (config_override(&cfg, line, err, sizeof(err)) != 0)
				FUZZ_CHECK(err[0] != '\0');
			check_config(&cfg);
		}
		free(line);
		p += n + 1;
	}
	if (rc == 0) {
		err[0] = '\0';
		if (config_finish(&cfg, err, sizeof(err)) == 0) {
			check_config(&cfg);
			check_finished(&cfg);
		} else {
			FUZZ_CHECK(err[0] != '\0');
		}
	}
	config_free(&cfg);
	return 0;
}
