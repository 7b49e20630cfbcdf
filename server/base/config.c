/*
 * config.c: the settings table. Each row names a key, where it lives in
 * struct config, its type, its bounds (or allowed values, or the kind of
 * list) and its default, so that a limit is declared in exactly one place
 * (the Redis createIntConfig habit). The INI reader is inih; unknown keys
 * and bad values are errors with file and line.
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

enum cfg_type { CFG_STR, CFG_INT, CFG_BOOL, CFG_ENUM, CFG_LIST };

/* What the items of a list are. */
enum cfg_list_kind { LIST_LISTEN, LIST_CIDR, LIST_PEERS };

struct cfg_entry {
	const char *section, *key;
	enum cfg_type type;
	size_t offset;              /* ENUM: the value; LIST: the text */
	size_t aux;                 /* ENUM: the name; LIST: the parsed items */
	int64_t min, max;
	const char *const *names;   /* ENUM: the allowed values; the index is the value */
	enum cfg_list_kind kind;    /* LIST */
	const char *def;
};

#define F(f) offsetof(struct config, f)
#define STR(s, k, f, d)         { s, k, CFG_STR, F(f), 0, 0, 0, NULL, 0, d }
#define INT(s, k, f, lo, hi, d) { s, k, CFG_INT, F(f), 0, lo, hi, NULL, 0, d }
#define BOOL(s, k, f, d)        { s, k, CFG_BOOL, F(f), 0, 0, 1, NULL, 0, d }
#define ENUM(s, k, f, name, names, d) { s, k, CFG_ENUM, F(f), F(name), 0, 0, names, 0, d }
#define LIST(s, k, f, parsed, kind, d) { s, k, CFG_LIST, F(f), F(parsed), 0, 0, NULL, kind, d }

/* Enum values are stored through an int: the enums must be int-sized. */
_Static_assert(sizeof(enum config_log_target) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_relay_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_auth_backend) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_sent_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_off_on) == sizeof(int), "enum size");

/* Allowed values, in the order of their enum. */
static const char *const log_targets[] = { "stderr", "syslog", NULL };
static const char *const log_levels[] = { "err", "warn", "info", "debug", NULL };
static const char *const relay_tls_modes[] = { "required", "opportunistic", "none", NULL };
static const char *const auth_backends[] = { "internal", "dovecot", NULL };
_Static_assert(LOG_LVL_ERR == 0 && LOG_LVL_DEBUG == 3, "log_levels follows enum log_level");
_Static_assert(CONFIG_RELAY_TLS_NONE == 2, "relay_tls_modes follows enum config_relay_tls");
_Static_assert(CONFIG_AUTH_DOVECOT == 1, "auth_backends follows enum config_auth_backend");
static const char *const sent_tls_modes[] = { "starttls", "implicit", "none", NULL };
_Static_assert(CONFIG_SENT_TLS_NONE == 2, "sent_tls_modes follows enum config_sent_tls");
static const char *const off_on[] = { "off", "on", NULL };
_Static_assert(CONFIG_ON == 1, "off_on follows enum config_off_on");

static const struct cfg_entry table[] = {
	STR("server", "data_dir", data_dir, "./var"),
	STR("server", "hostname", hostname, ""),
	STR("server", "user", user, ""),
	INT("server", "max_connections", max_connections, 1, 1000000, "1000"),
	INT("server", "max_connections_per_ip", max_connections_per_ip, 1, 1000000, "20"),
	INT("server", "drain_timeout", drain_timeout, 0, 3600, "30"),
	ENUM("log", "target", log_output, log_target, log_targets, "stderr"),
	ENUM("log", "level", log_max_level, log_level, log_levels, "info"),
	LIST("smtp", "listen", listen, listen_addrs, LIST_LISTEN, "127.0.0.1:2587"),
	LIST("smtp", "listen_tls", listen_tls, listen_tls_addrs, LIST_LISTEN, "127.0.0.1:2465"),
	LIST("smtp", "trusted_networks", trusted_networks, trusted_nets, LIST_CIDR, ""),
	LIST("smtp", "proxy_networks", proxy_networks, proxy_nets, LIST_CIDR, ""),
	BOOL("smtp", "auth_cleartext_loopback", auth_cleartext_loopback, "false"),
	INT("smtp", "max_line_length", max_line_length, 512, 12288, "512"),  /* the session's line buffer */
	INT("smtp", "max_message_size", max_message_size, 1024, 1000000000, "52428800"),  /* SQLite blob limit */
	INT("smtp", "max_recipients", max_recipients, 1, 10000, "100"),
	INT("smtp", "max_errors", max_errors, 1, 1000, "10"),
	INT("smtp", "idle_timeout", idle_timeout, 1, 86400, "300"),
	INT("smtp", "session_timeout", session_timeout, 1, 86400, "1800"),
	INT("smtp", "command_timeout", command_timeout, 1, 86400, "300"),
	INT("smtp", "body_memory", body_memory, 4096, 64 * 1024 * 1024, "262144"),
	BOOL("smtp", "binarymime", binarymime, "false"),
	BOOL("smtp", "forbid_unauth_pipelining", forbid_unauth_pipelining, "true"),
	INT("smtp", "threads", smtp_threads, 0, 64, "0"),  /* 0: one per online CPU, at most 16 */
	STR("tls", "certificate", tls_certificate, ""),
	STR("tls", "key", tls_key, ""),
	INT("auth", "workers", auth_workers, 1, 64, "2"),
	INT("auth", "cache_size", auth_cache_size, 0, 10000000, "10000"),
	INT("auth", "cache_ttl", auth_cache_ttl, 0, 86400, "300"),
	INT("auth", "delay_after", auth_delay_after, 0, 1000, "3"),
	INT("auth", "delay_ms", auth_delay_ms, 0, 60000, "1000"),
	INT("auth", "max_failures", auth_max_failures, 1, 1000, "10"),
	INT("auth", "failure_window", auth_failure_window, 1, 86400, "900"),
	ENUM("auth", "backend", auth_backend_kind, auth_backend, auth_backends, "internal"),
	STR("auth", "dovecot_socket", auth_dovecot_socket, ""),
	INT("auth", "dovecot_timeout", auth_dovecot_timeout, 1, 3600, "30"),
	BOOL("tokens", "enabled", tokens_enabled, "true"),
	INT("tokens", "lifetime", tokens_lifetime, 1, 366 * 86400, "604800"),
	STR("tokens", "issuer", tokens_issuer, ""),
	BOOL("dkim", "enabled", dkim_enabled, "true"),
	INT("dkim", "workers", dkim_workers, 1, 64, "2"),
	LIST("http", "listen", http_listen, http_listen_addrs, LIST_LISTEN, "127.0.0.1:8025"),
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
	ENUM("relay", "tls", relay_tls_mode, relay_tls, relay_tls_modes, "required"),
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
	STR("sent", "imap_host", sent_imap_host, ""),
	INT("sent", "imap_port", sent_imap_port, 0, 65535, "0"),
	ENUM("sent", "tls", sent_tls_mode, sent_tls, sent_tls_modes, "starttls"),
	BOOL("sent", "tls_verify", sent_tls_verify, "true"),
	STR("sent", "tls_ca_file", sent_tls_ca_file, ""),
	STR("sent", "master_user", sent_master_user, ""),
	STR("sent", "master_password_file", sent_master_password_file, ""),
	STR("sent", "folder", sent_folder, "Sent"),
	ENUM("sent", "default", sent_default_mode, sent_default, off_on, "off"),
	INT("sent", "connections", sent_connections, 1, 64, "2"),
	INT("sent", "retry_base", sent_retry_base, 1, 86400, "30"),
	INT("sent", "retry_max", sent_retry_max, 1, 86400, "1800"),
	INT("sent", "max_lifetime", sent_max_lifetime, 1, 30 * 86400, "172800"),
	INT("sent", "timeout", sent_timeout, 1, 3600, "60"),
	INT("sent", "poll_interval", sent_poll_interval, 1, 3600, "5"),
	/* sending limits (docs/config.md#limits): 0 = none; windows in seconds */
	INT("limits", "user_messages_per_hour", limits_user_messages, 0, 100000000, "300"),
	INT("limits", "user_recipients_per_day", limits_user_recipients, 0, 100000000, "2000"),
	INT("limits", "ip_messages_per_hour", limits_ip_messages, 0, 100000000, "1000"),
	INT("limits", "user_messages_window", limits_user_messages_window, 1, 7 * 86400, "3600"),
	INT("limits", "user_recipients_window", limits_user_recipients_window, 1, 7 * 86400, "86400"),
	INT("limits", "ip_messages_window", limits_ip_messages_window, 1, 7 * 86400, "3600"),
	INT("limits", "max_tracked", limits_max_tracked, 16, 10000000, "20000"),
	INT("limits", "reload_interval", limits_reload_interval, 1, 3600, "5"),
	/* a resubmitted message is answered, not stored again (docs/smtp.md) */
	INT("submit", "dedup_window", submit_dedup_window, 0, 366 * 86400, "86400"),
	INT("store", "batch", store_batch, 1, 4096, "256"),
	INT("store", "checkpoint_pages", store_checkpoint_pages, 0, 1000000, "1000"),
	/* the other nodes of a cluster (docs/cluster.md) */
	LIST("cluster", "peers", cluster_peers, cluster_peer_list, LIST_PEERS, ""),
	STR("cluster", "secret_file", cluster_secret_file, ""),
	INT("cluster", "refresh_interval", cluster_refresh_interval, 1, 86400, "300"),
	INT("cluster", "timeout", cluster_timeout, 1, 300, "5"),
	INT("cluster", "key_fetch_interval", cluster_key_fetch_interval, 0, 3600, "10"),
	INT("cluster", "peer_connections", cluster_peer_connections, 0, 256, "8"),
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

/* "a, b or c": the allowed values of an enum, for its error message. */
static void
names_text(const char *const *names, char *out, size_t outlen)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; names[i] != NULL && used < outlen; i++)
		used += (size_t)snprintf(out + used, outlen - used, "%s%s",
		    i == 0 ? "" : names[i + 1] == NULL ? " or " : ", ", names[i]);
}

static int
set_enum(char *base, const struct cfg_entry *e, const char *value, char *err, size_t errlen)
{
	char allowed[128];

	for (size_t i = 0; e->names[i] != NULL; i++) {
		if (strcmp(value, e->names[i]) == 0) {
			*(int *)(base + e->offset) = (int)i;
			*(const char **)(base + e->aux) = e->names[i];
			return 0;
		}
	}
	names_text(e->names, allowed, sizeof(allowed));
	snprintf(err, errlen, "%s.%s: must be %s, not \"%s\"", e->section, e->key, allowed, value);
	return -1;
}

static void
free_list(char *base, const struct cfg_entry *e)
{
	if (e->kind == LIST_LISTEN)
		netaddr_listen_list_free((struct netaddr_listen_list *)(base + e->aux));
	else if (e->kind == LIST_PEERS)
		peer_list_free((struct peer_list *)(base + e->aux));
	else
		cidr_list_free((struct cidr_list *)(base + e->aux));
}

/* Parse first, so that a refused list leaves the previous one in place. */
static int
set_list(char *base, const struct cfg_entry *e, const char *value, char *err, size_t errlen)
{
	struct netaddr_listen_list addrs;
	struct cidr_list nets;
	struct peer_list peers;
	char bad[128];
	size_t pos;
	int rc;

	if (e->kind == LIST_PEERS) {
		if (peer_list_parse(value, &peers, &pos, bad, sizeof(bad)) == -1) {
			snprintf(err, errlen, "%s.%s: item %zu: %s", e->section, e->key, pos, bad);
			return -1;
		}
		free_list(base, e);
		*(struct peer_list *)(base + e->aux) = peers;
		free(*(char **)(base + e->offset));
		*(char **)(base + e->offset) = xstrdup(value);
		return 0;
	}
	if (e->kind == LIST_LISTEN)
		rc = netaddr_listen_list_parse(value, &addrs, &pos, bad, sizeof(bad));
	else
		rc = cidr_list_parse(value, &nets, &pos, bad, sizeof(bad));
	if (rc == -1) {
		snprintf(err, errlen, "%s.%s: item %zu is %s: \"%s\"", e->section, e->key, pos,
		    e->kind == LIST_LISTEN ? "not an address:port (IPv6 as [addr]:port)" : "not an address or CIDR",
		    bad);
		return -1;
	}
	free_list(base, e);
	if (e->kind == LIST_LISTEN)
		*(struct netaddr_listen_list *)(base + e->aux) = addrs;
	else
		*(struct cidr_list *)(base + e->aux) = nets;
	free(*(char **)(base + e->offset));
	*(char **)(base + e->offset) = xstrdup(value);
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
	case CFG_ENUM:
		return set_enum(base, e, value, err, errlen);
	case CFG_LIST:
		return set_list(base, e, value, err, errlen);
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

int
config_load(struct config *cfg, const char *path, const char *const *overrides, size_t n,
    char *err, size_t errlen)
{
	char why[512];

	if (path != NULL && config_load_file(cfg, path, err, errlen) == -1)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (config_override(cfg, overrides[i], err, errlen) == -1)
			return -1;
	if (config_finish(cfg, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "%s%s%s", path ? path : "", path ? ": " : "", why);
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
	if (peer_list_find(&cfg->cluster_peer_list, cfg->tokens_issuer) != NULL) {
		snprintf(err, errlen, "cluster.peers: names this node (tokens.issuer %s); list only the others",
		    cfg->tokens_issuer);
		return -1;
	}
	if (cfg->cluster_peer_list.n > 0 && cfg->http_listen_addrs.n == 0) {
		snprintf(err, errlen, "cluster.peers needs http.listen: the nodes meet on their APIs");
		return -1;
	}
	if ((cfg->tls_certificate[0] == '\0') != (cfg->tls_key[0] == '\0')) {
		snprintf(err, errlen, "tls.certificate and tls.key must be set together");
		return -1;
	}
	if (cfg->relay_auth_user[0] != '\0' && cfg->relay_auth_password_file[0] == '\0') {
		snprintf(err, errlen, "relay.auth_user needs relay.auth_password_file");
		return -1;
	}
	if (cfg->auth_backend_kind == CONFIG_AUTH_DOVECOT && cfg->auth_dovecot_socket[0] == '\0') {
		snprintf(err, errlen, "auth.backend = dovecot needs auth.dovecot_socket (the path of a "
		    "unix_listener in Dovecot's service auth)");
		return -1;
	}
	if (cfg->relay_retry_max < cfg->relay_retry_base) {
		snprintf(err, errlen, "relay.retry_max (%lld) is smaller than relay.retry_base (%lld)",
		    (long long)cfg->relay_retry_max, (long long)cfg->relay_retry_base);
		return -1;
	}
	if (cfg->sent_master_user[0] != '\0' && cfg->sent_master_password_file[0] == '\0') {
		snprintf(err, errlen, "sent.master_user needs sent.master_password_file");
		return -1;
	}
	if (cfg->sent_imap_host[0] != '\0' && cfg->sent_master_user[0] == '\0') {
		snprintf(err, errlen, "sent.imap_host needs sent.master_user (filing logs in as it on behalf of each user)");
		return -1;
	}
	if (cfg->sent_retry_max < cfg->sent_retry_base) {
		snprintf(err, errlen, "sent.retry_max (%lld) is smaller than sent.retry_base (%lld)",
		    (long long)cfg->sent_retry_max, (long long)cfg->sent_retry_base);
		return -1;
	}
	if (cfg->sent_folder[0] == '\0' || strpbrk(cfg->sent_folder, "\"\\\r\n") != NULL) {
		snprintf(err, errlen, "sent.folder: must be a mailbox name without quotes, backslashes or line breaks");
		return -1;
	}
	if (cfg->data_dir[0] == '\0') {
		snprintf(err, errlen, "server.data_dir: must not be empty");
		return -1;
	}
	if (cfg->listen_addrs.n == 0 && cfg->listen_tls_addrs.n == 0) {
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
		case CFG_ENUM: printf("%s\n", *(const char *const *)(base + e->aux)); break;
		case CFG_LIST: printf("%s\n", *(char *const *)(base + e->offset)); break;
		}
	}
}

void
config_free(struct config *cfg)
{
	char *base = (char *)cfg;

	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		if (table[i].type == CFG_LIST)
			free_list(base, &table[i]);
		if (table[i].type == CFG_STR || table[i].type == CFG_LIST)
			xfreep(base + table[i].offset);
	}
}
