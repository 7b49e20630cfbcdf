/*
 * dkim_store.h: the statements of DKIM signing (docs/schema.md): the keys
 * per domain and selector that `submitctl dkim` manages, the active ones
 * the signer loads, and the signature header fields stored with each
 * message. A private key is a PEM text in the database, which is a 0600
 * file of submitd's user (db/store.c), like the token signing keys.
 */
#ifndef SUBMITD_DKIM_STORE_H
#define SUBMITD_DKIM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

/* Longest domain (RFC 1035) and selector we keep. */
#define DKIM_DOMAIN_MAX 253
#define DKIM_SELECTOR_MAX 63

struct dkim_key {
	char domain[DKIM_DOMAIN_MAX + 1];
	char selector[DKIM_SELECTOR_MAX + 1];
	char algorithm[16];          /* "rsa-sha256" or "ed25519-sha256" */
	char *private_key;           /* PEM; NULL in listings */
	char *public_key;            /* base64, the DNS record's p= */
	char state[8];               /* "active" or "retired" */
	char created_at[24];
	char retired_at[24];         /* "" while active */
};

struct dkim_keys {
	struct dkim_key *v;
	size_t n;
};

void dkim_keys_free(struct dkim_keys *keys);

/* Insert an active key. 0 ok, 1 the domain has that selector already,
 * -1 error (err). */
int dkim_store_add(sqlite3 *db, const struct dkim_key *k, int64_t now_ms, char *err, size_t errlen);
/* Retire a key: it no longer signs; its row stays for the listing (the
 * DNS record should stay published a while, docs/operations.md). 0 ok, 1
 * no such active key, -1 error. */
int dkim_store_retire(sqlite3 *db, const char *domain, const char *selector, int64_t now_ms, char *err,
    size_t errlen);
/* The keys, ordered by domain and selector: every one (with_private
 * false: private_key stays NULL), or only the active ones with their
 * private keys (the signer), or the active ones of one domain (domain not
 * NULL, for export). 0 or -1 (err). */
int dkim_store_keys(sqlite3 *db, bool active_only, bool with_private, const char *domain,
    struct dkim_keys *out, char *err, size_t errlen);
/* The same through st, prepared once from dkim_store_keys_sql by a caller
 * that loads the keys often (the signer, after every commit of another
 * connection); st is reset, not finalised. */
extern const char dkim_store_keys_sql[];
int dkim_store_keys_with(sqlite3_stmt *st, bool active_only, bool with_private, const char *domain,
    struct dkim_keys *out, char *err, size_t errlen);
/* Whether a and b list the same keys, private keys included. */
bool dkim_keys_equal(const struct dkim_keys *a, const struct dkim_keys *b);

/* Whether any key is active (writer_opts.prepend_wanted_sql). */
extern const char dkim_store_active_sql[];
/* The writer's statement: ?1 message_id, ?2 the header fields. */
extern const char dkim_store_message_sql[];

#endif
