/*
 * config.h: every setting of submitd, declared once in a table (config.c)
 * with its type, bounds and default. Sources, in order: the embedded
 * defaults, an INI file (-c), then -o section.key=value overrides; submitd
 * and submitctl both read them through config_load. Choices (enums) and
 * address lists are checked and parsed as they are read, so their users get
 * values, never text to compare or split again.
 * docs/config.md documents each key; `submitd -n` checks and exits.
 */
#ifndef SUBMITD_CONFIG_H
#define SUBMITD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/base/log.h"
#include "server/base/netaddr.h"
#include "server/base/peers.h"

enum config_log_target { CONFIG_LOG_STDERR, CONFIG_LOG_SYSLOG };
enum config_relay_tls { CONFIG_RELAY_TLS_REQUIRED, CONFIG_RELAY_TLS_OPPORTUNISTIC, CONFIG_RELAY_TLS_NONE };
enum config_auth_backend { CONFIG_AUTH_INTERNAL, CONFIG_AUTH_DOVECOT };
enum config_sent_tls { CONFIG_SENT_TLS_STARTTLS, CONFIG_SENT_TLS_IMPLICIT, CONFIG_SENT_TLS_NONE };
enum config_off_on { CONFIG_OFF, CONFIG_ON };

/*
 * An enum key K has its value in a field of an enum type, which the code
 * compares, and its name (one of the table's allowed values, never freed)
 * in the const char * field K, which log lines and -p print. A list key K keeps its text as
 * written in K (what -p prints) and the parsed items next to it.
 */
struct config {
	/* [server] */
	char *data_dir;             /* database, generated certificate, spool */
	char *hostname;             /* EHLO greeting name; "" = gethostname() */
	char *user;                 /* drop privileges to this user after bind */
	int64_t max_connections;
	int64_t max_connections_per_ip;
	int64_t drain_timeout;      /* seconds SIGTERM waits for sessions in DATA */
	/* [log] */
	enum config_log_target log_output;  /* log.target */
	const char *log_target;
	enum log_level log_max_level;       /* log.level: the least severe written */
	const char *log_level;
	/* [smtp] */
	char *listen;               /* plain + STARTTLS listeners */
	struct netaddr_listen_list listen_addrs;
	char *listen_tls;           /* implicit TLS listeners */
	struct netaddr_listen_list listen_tls_addrs;
	char *trusted_networks;     /* may submit without AUTH */
	struct cidr_list trusted_nets;
	char *proxy_networks;       /* load balancers: must send a PROXY header */
	struct cidr_list proxy_nets;
	bool auth_cleartext_loopback;
	int64_t max_line_length;
	int64_t smtp_threads;       /* SMTP event loops; 0: one per online CPU (smtp_loop_count) */
	int64_t max_message_size;
	int64_t max_recipients;
	int64_t max_errors;
	int64_t idle_timeout;
	int64_t session_timeout;
	int64_t command_timeout;
	int64_t body_memory;        /* body octets kept in memory before spooling */
	bool binarymime;            /* offer BODY=BINARYMIME (RFC 3030 3) */
	bool forbid_unauth_pipelining;  /* disconnect unauthenticated RFC 2920 violators */
	/* [tls] */
	char *tls_certificate;      /* "" = generate a self-signed one in data_dir */
	char *tls_key;
	/* [auth] */
	int64_t auth_workers;
	int64_t auth_cache_size;
	int64_t auth_cache_ttl;
	int64_t auth_delay_after;       /* failures before replies slow down */
	int64_t auth_delay_ms;          /* per failure beyond auth_delay_after */
	int64_t auth_max_failures;      /* then 421 and disconnect */
	int64_t auth_failure_window;    /* seconds a failure is remembered */
	enum config_auth_backend auth_backend_kind;  /* auth.backend: who checks passwords */
	const char *auth_backend;
	char *auth_dovecot_socket;      /* Dovecot's auth-client listener */
	int64_t auth_dovecot_timeout;   /* seconds an answer from Dovecot may take */
	/* [tokens] */
	bool tokens_enabled;
	int64_t tokens_lifetime;
	char *tokens_issuer;            /* "" = hostname */
	/* [dkim] */
	bool dkim_enabled;              /* sign with the active keys of the From: domain */
	int64_t dkim_workers;           /* signing threads */
	/* [http] the verification API */
	char *http_listen;
	struct netaddr_listen_list http_listen_addrs;
	bool http_tls;
	int64_t http_threads;
	int64_t http_max_header_size;
	int64_t http_max_body_size;
	int64_t http_timeout;
	bool http_auth_verify;
	bool http_auth_fetch;
	bool http_auth_keys;
	bool http_auth_metrics;
	/* [relay] the next hop */
	char *relay_host;
	int64_t relay_port;
	enum config_relay_tls relay_tls_mode;   /* relay.tls */
	const char *relay_tls;
	bool relay_tls_verify;
	char *relay_tls_ca_file;
	char *relay_auth_user;
	char *relay_auth_password_file;
	int64_t relay_connections;
	int64_t relay_max_lifetime;
	int64_t relay_retry_base;
	int64_t relay_retry_max;
	int64_t relay_connect_timeout;
	int64_t relay_command_timeout;
	bool relay_show_client_address;
	int64_t relay_poll_interval;
	/* [limits] sending limits; 0 = none */
	int64_t limits_user_messages;           /* limits.user_messages_per_hour */
	int64_t limits_user_recipients;         /* limits.user_recipients_per_day */
	int64_t limits_ip_messages;             /* limits.ip_messages_per_hour */
	int64_t limits_user_messages_window;    /* seconds */
	int64_t limits_user_recipients_window;
	int64_t limits_ip_messages_window;
	int64_t limits_max_tracked;             /* logins, addresses: each table */
	int64_t limits_reload_interval;         /* policies re-read, seconds */
	/* [retention] */
	int64_t retention_keep;
	int64_t retention_interval;
	int64_t retention_batch;
	/* [sent] the sender's copy filed into the user's Sent mailbox */
	char *sent_imap_host;           /* "": no filing */
	int64_t sent_imap_port;         /* 0: 143, or 993 with implicit TLS */
	enum config_sent_tls sent_tls_mode;     /* sent.tls */
	const char *sent_tls;
	bool sent_tls_verify;
	char *sent_tls_ca_file;
	char *sent_master_user;
	char *sent_master_password_file;
	char *sent_folder;              /* when no mailbox is flagged \Sent */
	enum config_off_on sent_default_mode;   /* sent.default: logins without a setting */
	const char *sent_default;
	int64_t sent_connections;
	int64_t sent_retry_base;
	int64_t sent_retry_max;
	int64_t sent_max_lifetime;
	int64_t sent_timeout;           /* connect and each command */
	int64_t sent_poll_interval;
	/* [submit] */
	int64_t submit_dedup_window;    /* seconds a resubmission is a duplicate; 0: off */
	/* [store] */
	int64_t store_batch;            /* max messages committed together */
	int64_t store_checkpoint_pages; /* WAL frames that start a checkpoint; 0: SQLite's */
	/* [cluster] the other nodes (docs/cluster.md) */
	char *cluster_peers;
	struct peer_list cluster_peer_list;
	char *cluster_secret_file;      /* the credential this node presents to the others */
	int64_t cluster_refresh_interval;  /* seconds between fetches of the peers' keys */
	int64_t cluster_key_fetch_interval; /* seconds between fetches for an unknown key, per peer; 0 none */
	int64_t cluster_timeout;        /* seconds for one call to a peer */
	int64_t cluster_peer_connections;  /* kept-alive connections per peer and API thread */
};

/* Fill cfg with the embedded defaults. */
void config_defaults(struct config *cfg);

/*
 * What both programs do after config_defaults: the INI file at path (none
 * when NULL), then each of the n "section.key=value" overrides in order
 * (so -o wins over the file wherever it stands), then config_finish. 0, or
 * -1 with the message of config_load_file, config_override or
 * config_finish in err; a config_finish message is prefixed "FILE: ".
 */
int config_load(struct config *cfg, const char *path, const char *const *overrides, size_t n,
    char *err, size_t errlen);

/* Load an INI file over cfg. Returns 0, or -1 with a message
 * "FILE:LINE: reason" in err (errlen). */
int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen);

/* Apply one "section.key=value" override. 0 or -1 with a message. */
int config_override(struct config *cfg, const char *assignment, char *err, size_t errlen);

/* Cross-field checks and derived defaults (hostname, issuer). 0 or -1. */
int config_finish(struct config *cfg, char *err, size_t errlen);

/* Print every key = value (the effective configuration) to stdout. */
void config_dump(const struct config *cfg);

void config_free(struct config *cfg);

#endif
