/*
 * config.c: the settings table. Each row names a key, where it lives in
 * struct config, its type, its bounds and its default, so that a limit is
 * declared in exactly one place (the Redis createIntConfig habit). The INI
 * reader is inih; unknown keys and bad values are errors with file and line.
 */
#include "server/base/config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

#include "server/base/util.h"

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL };

struct cfg_entry {
	const char *section, *key;
	enum cfg_type type;
	size_t offset;
	int64_t min, max;
	const char *def;
};

#define STR(s, k, f, d)        { s, k, CFG_STR, offsetof(struct config, f), 0, 0, d }
#define INT(s, k, f, lo, hi, d) { s, k, CFG_INT, offsetof(struct config, f), lo, hi, d }
#define BOOL(s, k, f, d)       { s, k, CFG_BOOL, offsetof(struct config, f), 0, 1, d }

static const struct cfg_entry table[] = {
	STR("server", "data_dir", data_dir, "./var"),
	STR("server", "hostname", hostname, ""),
	STR("server", "user", user, ""),
	INT("server", "max_connections", max_connections, 1, 1000000, "1000"),
	INT("server", "max_connections_per_ip", max_connections_per_ip, 1, 1000000, "20"),
	INT("server", "drain_timeout", drain_timeout, 0, 3600, "30"),
	STR("log", "target", log_target, "stderr"),
	STR("log", "level", log_level, "info"),
	STR("smtp", "listen", listen, "127.0.0.1:2587"),
	STR("smtp", "listen_tls", listen_tls, "127.0.0.1:2465"),
	STR("smtp", "trusted_networks", trusted_networks, ""),
	BOOL("smtp", "auth_cleartext_loopback", auth_cleartext_loopback, "false"),
	INT("smtp", "max_line_length", max_line_length, 512, 12288, "512"),  /* the session's line buffer */
	INT("smtp", "max_message_size", max_message_size, 1024, 1000000000, "52428800"),  /* SQLite blob limit */
	INT("smtp", "max_recipients", max_recipients, 1, 10000, "100"),
	INT("smtp", "max_errors", max_errors, 1, 1000, "10"),
	INT("smtp", "idle_timeout", idle_timeout, 1, 86400, "300"),
	INT("smtp", "session_timeout", session_timeout, 1, 86400, "1800"),
	INT("smtp", "command_timeout", command_timeout, 1, 86400, "300"),
	INT("smtp", "body_memory", body_memory, 4096, 64 * 1024 * 1024, "262144"),
	STR("tls", "certificate", tls_certificate, ""),
	STR("tls", "key", tls_key, ""),
	INT("auth", "workers", auth_workers, 1, 64, "2"),
	INT("auth", "cache_size", auth_cache_size, 0, 10000000, "10000"),
	INT("auth", "cache_ttl", auth_cache_ttl, 0, 86400, "300"),
	INT("auth", "delay_after", auth_delay_after, 0, 1000, "3"),
	INT("auth", "delay_ms", auth_delay_ms, 0, 60000, "1000"),
	INT("auth", "max_failures", auth_max_failures, 1, 1000, "10"),
	INT("auth", "failure_window", auth_failure_window, 1, 86400, "900"),
	BOOL("tokens", "enabled", tokens_enabled, "true"),
	INT("tokens", "lifetime", tokens_lifetime, 1, 366 * 86400, "604800"),
	STR("tokens", "issuer", tokens_issuer, ""),
	STR("http", "listen", http_listen, "127.0.0.1:8025"),
	BOOL("http", "tls", http_tls, "false"),
	INT("http", "threads", http_threads, 1, 64, "2"),
	INT("http", "max_header_size", http_max_header_size, 1024, 1024 * 1024, "8192"),
	INT("http", "max_body_size", http_max_body_size, 1024, 16 * 1024 * 1024, "65536"),
	INT("http", "timeout", http_timeout, 1, 3600, "30"),
	BOOL("http", "auth_verify", http_auth_verify, "false"),
	BOOL("http", "auth_fetch", http_auth_fetch, "true"),
	BOOL("http", "auth_keys", http_auth_keys, "false"),
	BOOL("http", "auth_metrics", http_auth_metrics, "false"),
	STR("relay", "host", relay_host, ""),
	INT("relay", "port", relay_port, 1, 65535, "25"),
	STR("relay", "tls", relay_tls, "required"),
	BOOL("relay", "tls_verify", relay_tls_verify, "true"),
	STR("relay", "tls_ca_file", relay_tls_ca_file, ""),
	STR("relay", "auth_user", relay_auth_user, ""),
	STR("relay", "auth_password_file", relay_auth_password_file, ""),
	INT("relay", "connections", relay_connections, 1, 256, "4"),
	INT("relay", "max_lifetime", relay_max_lifetime, 1, 60 * 86400, "432000"),
	INT("relay", "retry_base", relay_retry_base, 1, 86400, "60"),
	INT("relay", "retry_max", relay_retry_max, 1, 7 * 86400, "3600"),
	INT("relay", "connect_timeout", relay_connect_timeout, 1, 3600, "30"),
	INT("relay", "command_timeout", relay_command_timeout, 1, 3600, "300"),
	BOOL("relay", "show_client_address", relay_show_client_address, "false"),
	INT("relay", "poll_interval", relay_poll_interval, 1, 3600, "5"),
	INT("retention", "keep", retention_keep, 1, 100LL * 365 * 86400, "2592000"),
	INT("retention", "interval", retention_interval, 1, 86400, "60"),
	INT("retention", "batch", retention_batch, 1, 100000, "100"),
	INT("store", "batch", store_batch, 1, 4096, "256"),
	INT("store", "checkpoint_pages", store_checkpoint_pages, 0, 1000000, "1000"),
};

static const struct cfg_entry *
find_entry(const char *section, const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(table); i++)
		if (strcmp(table[i].section, section) == 0 && strcmp(table[i].key, key) == 0)
			return &table[i];
	return NULL;
}

/* Parse an integer with an optional size or time suffix (k, m, g; s, m, h, d
 * are not mixed: sizes take K/M/G, times are plain seconds). */
static int
parse_int(const char *v, int64_t *out)
{
	char *end;
	long long n;
	int64_t mult = 1;

	errno = 0;
	if (*v == '\0' || *v == ' ')
		return -1;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v)
		return -1;
	if (*end != '\0') {
		if (strcasecmp(end, "k") == 0) mult = 1024;
		else if (strcasecmp(end, "m") == 0) mult = 1024 * 1024;
		else if (strcasecmp(end, "g") == 0) mult = 1024 * 1024 * 1024;
		else return -1;
	}
	if (n > INT64_MAX / mult || n < INT64_MIN / mult)
		return -1;
	*out = (int64_t)n * mult;
	return 0;
}

static int
set_entry(struct config *cfg, const struct cfg_entry *e, const char *value, char *err, size_t errlen)
{
	char *base = (char *)cfg;
	int64_t n;

	switch (e->type) {
	case CFG_STR: {
		char **p = (char **)(base + e->offset);
		free(*p);
		*p = xstrdup(value);
		return 0;
	}
	case CFG_INT:
		if (parse_int(value, &n) == -1) {
			snprintf(err, errlen, "%s.%s: not an integer: \"%s\"", e->section, e->key, value);
			return -1;
		}
		if (n < e->min || n > e->max) {
			snprintf(err, errlen, "%s.%s: %lld is out of range [%lld, %lld]", e->section, e->key,
			    (long long)n, (long long)e->min, (long long)e->max);
			return -1;
		}
		*(int64_t *)(base + e->offset) = n;
		return 0;
	case CFG_BOOL: {
		bool *b = (bool *)(base + e->offset);
		if (strcasecmp(value, "true") == 0 || strcasecmp(value, "yes") == 0 ||
		    strcmp(value, "1") == 0 || strcasecmp(value, "on") == 0)
			*b = true;
		else if (strcasecmp(value, "false") == 0 || strcasecmp(value, "no") == 0 ||
		    strcmp(value, "0") == 0 || strcasecmp(value, "off") == 0)
			*b = false;
		else {
			snprintf(err, errlen, "%s.%s: not a boolean (true/false): \"%s\"", e->section, e->key, value);
			return -1;
		}
		return 0;
	}
	}
	return -1;
}

void
config_defaults(struct config *cfg)
{
	char err[256];

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < ARRAY_SIZE(table); i++)
		if (set_entry(cfg, &table[i], table[i].def, err, sizeof(err)) == -1)
			abort();    /* a bad default is a programming error */
}

struct ini_ctx {
	struct config *cfg;
	char err[256];
};

static int
cfg_ini_handler(void *user, const char *section, const char *name, const char *value)
{
	struct ini_ctx *ctx = user;
	const struct cfg_entry *e;

	if (name == NULL)   /* a section header alone */
		return 1;
	e = find_entry(section, name);
	if (e == NULL) {
		snprintf(ctx->err, sizeof(ctx->err), "unknown key \"%s\" in section [%s]", name, section);
		return 0;
	}
	return set_entry(ctx->cfg, e, value, ctx->err, sizeof(ctx->err)) == 0;
}

int
config_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
	struct ini_ctx ctx = { .cfg = cfg };
	int rc = ini_parse(path, cfg_ini_handler, &ctx);

	if (rc == -1) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (rc > 0) {
		snprintf(err, errlen, "%s:%d: %s", path, rc,
		    ctx.err[0] ? ctx.err : "syntax error (expected [section] or key = value)");
		return -1;
	}
	return 0;
}

int
config_override(struct config *cfg, const char *assignment, char *err, size_t errlen)
{
	const char *eq = strchr(assignment, '='), *dot;
	char section[64], key[64];
	const struct cfg_entry *e;

	dot = strchr(assignment, '.');
	if (eq == NULL || dot == NULL || dot > eq || (size_t)(dot - assignment) >= sizeof(section) ||
	    (size_t)(eq - dot - 1) >= sizeof(key)) {
		snprintf(err, errlen, "-o %s: expected section.key=value", assignment);
		return -1;
	}
	memcpy(section, assignment, (size_t)(dot - assignment));
	section[dot - assignment] = '\0';
	memcpy(key, dot + 1, (size_t)(eq - dot - 1));
	key[eq - dot - 1] = '\0';
	e = find_entry(section, key);
	if (e == NULL) {
		snprintf(err, errlen, "-o %s: unknown key \"%s.%s\"", assignment, section, key);
		return -1;
	}
	if (set_entry(cfg, e, eq + 1, err, errlen) == -1) {
		char tmp[256];
		snprintf(tmp, sizeof(tmp), "-o: %s", err);
		snprintf(err, errlen, "%s", tmp);
		return -1;
	}
	return 0;
}

static bool
issuer_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (; *s; s++)
		if (*s <= 0x20 || *s >= 0x7f || *s == '"' || *s == '\\')
			return false;
	return true;
}

int
config_finish(struct config *cfg, char *err, size_t errlen)
{
	if (cfg->hostname[0] == '\0') {
		char h[256] = "localhost";
		gethostname(h, sizeof(h) - 1);
		free(cfg->hostname);
		cfg->hostname = xstrdup(h);
	}
	if (cfg->tokens_issuer[0] == '\0') {
		free(cfg->tokens_issuer);
		cfg->tokens_issuer = xstrndup(cfg->hostname, strnlen(cfg->hostname, 64));
	}
	if (!issuer_ok(cfg->tokens_issuer)) {
		snprintf(err, errlen, "tokens.issuer: must be 1 to 64 printable characters without spaces or quotes");
		return -1;
	}
	if (strcmp(cfg->log_target, "stderr") != 0 && strcmp(cfg->log_target, "syslog") != 0) {
		snprintf(err, errlen, "log.target: must be stderr or syslog, not \"%s\"", cfg->log_target);
		return -1;
	}
	if (strcmp(cfg->log_level, "err") != 0 && strcmp(cfg->log_level, "warn") != 0 &&
	    strcmp(cfg->log_level, "info") != 0 && strcmp(cfg->log_level, "debug") != 0) {
		snprintf(err, errlen, "log.level: must be err, warn, info or debug, not \"%s\"", cfg->log_level);
		return -1;
	}
	if ((cfg->tls_certificate[0] == '\0') != (cfg->tls_key[0] == '\0')) {
		snprintf(err, errlen, "tls.certificate and tls.key must be set together");
		return -1;
	}
	if (strcmp(cfg->relay_tls, "required") != 0 && strcmp(cfg->relay_tls, "opportunistic") != 0 &&
	    strcmp(cfg->relay_tls, "none") != 0) {
		snprintf(err, errlen, "relay.tls: must be required, opportunistic or none, not \"%s\"", cfg->relay_tls);
		return -1;
	}
	if (cfg->relay_auth_user[0] != '\0' && cfg->relay_auth_password_file[0] == '\0') {
		snprintf(err, errlen, "relay.auth_user needs relay.auth_password_file");
		return -1;
	}
	if (cfg->relay_retry_max < cfg->relay_retry_base) {
		snprintf(err, errlen, "relay.retry_max (%lld) is smaller than relay.retry_base (%lld)",
		    (long long)cfg->relay_retry_max, (long long)cfg->relay_retry_base);
		return -1;
	}
	if (cfg->data_dir[0] == '\0') {
		snprintf(err, errlen, "server.data_dir: must not be empty");
		return -1;
	}
	if (cfg->listen[0] == '\0' && cfg->listen_tls[0] == '\0') {
		snprintf(err, errlen, "smtp.listen and smtp.listen_tls are both empty: nothing to serve");
		return -1;
	}
	return 0;
}

void
config_dump(const struct config *cfg)
{
	const char *base = (const char *)cfg;

	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		const struct cfg_entry *e = &table[i];
		printf("%s.%s = ", e->section, e->key);
		switch (e->type) {
		case CFG_STR: printf("%s\n", *(char *const *)(base + e->offset)); break;
		case CFG_INT: printf("%lld\n", (long long)*(const int64_t *)(base + e->offset)); break;
		case CFG_BOOL: printf("%s\n", *(const bool *)(base + e->offset) ? "true" : "false"); break;
		}
	}
}

void
config_free(struct config *cfg)
{
	char *base = (char *)cfg;

	for (size_t i = 0; i < ARRAY_SIZE(table); i++)
		if (table[i].type == CFG_STR)
			xfreep(base + table[i].offset);
}
