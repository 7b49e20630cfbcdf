/*
 * auth.h: password verification off the event loop. argon2id takes tens of
 * milliseconds by design; a small pool of worker threads does it, each with
 * its own read connection to the database, so users added or changed with
 * submitctl count from the next AUTH on. A cache of successful checks,
 * keyed by a keyed hash of (login, password, stored hash), makes repeated
 * logins cheap; since the stored hash is part of the key and is read fresh
 * on every AUTH, a changed password or a deleted user never hits the cache.
 *
 * With auth.backend = dovecot, Dovecot checks the password (dovecot_client.h)
 * and the pool only reads the sender addresses granted to the login it
 * returned (AUTH_ADDRESSES). Both paths carry a struct auth_request, so a
 * session treats their answers alike and, when it goes, only clears owner.
 */
#ifndef SUBMITD_AUTH_H
#define SUBMITD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/protocol/sasl.h"

enum auth_result {
	AUTH_PENDING = 0,
	AUTH_OK,
	AUTH_FAILED,       /* unknown user or wrong password: 535 5.7.8 */
	AUTH_TEMPFAIL,     /* database or Dovecot unavailable: 454 4.7.0 */
	AUTH_CONTINUE,     /* AUTH_SASL: Dovecot sent a challenge (334) */
};

enum auth_kind {
	AUTH_PASSWORD = 0,  /* the pool checks login and password against the store */
	AUTH_ADDRESSES,     /* the pool reads login's granted addresses (login already checked) */
	AUTH_SASL,          /* an exchange passed through to Dovecot */
};

struct auth_request {
	enum auth_kind kind;
	char login[SASL_ID_MAX + 1];          /* AUTH_SASL: Dovecot's user=, once known */
	char password[SASL_PASS_MAX + 1];     /* wiped by the worker */
	enum auth_result result;
	bool cached;                          /* answered from the cache */
	char *canonical_login;                /* as stored (result OK) */
	char **addresses;                     /* extra sender addresses, NULL terminated */
	void *owner;                          /* the session; NULL once it left */
	unsigned loop;                        /* the session's event loop: the answer goes there */
	struct auth_request *next;
	/* AUTH_SASL */
	char *challenge;                      /* AUTH_CONTINUE: base64 for the 334 */
	const char *why;                      /* AUTH_TEMPFAIL: for the log */
	void *sasl;                           /* the Dovecot client's record, while it has one */
};

struct auth_pool_opts {
	const char *db_path;
	int workers;
	size_t cache_size;
	int64_t cache_ttl;
	void (*notify)(void *arg);            /* called on a worker thread */
	void *notify_arg;
};

struct auth_pool;

struct auth_pool *auth_pool_start(const struct auth_pool_opts *o, char *err, size_t errlen);
void auth_pool_submit(struct auth_pool *p, struct auth_request *r);
struct auth_request *auth_pool_collect(struct auth_pool *p);
void auth_pool_stop(struct auth_pool **pp);
void auth_request_free(struct auth_request **rp);

/* Hash a password for storage (argon2id, libsodium's interactive limits).
 * 0 or -1. out holds crypto_pwhash_STRBYTES. */
int auth_hash_password(const char *password, char *out);

#endif
