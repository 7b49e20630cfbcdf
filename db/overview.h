/*
 * overview.h: what submitctl lists, read from the *_overview views of the
 * schema (docs/schema.md) and the services table: users, signing keys,
 * services, messages with their recipients and tokens, the relay queue.
 * Each function calls fn once per row, in the order submitctl prints, and
 * returns the number of rows, or -1 with err when the query cannot be
 * prepared. A row's strings live until fn returns; a NULL column is a NULL
 * pointer.
 */
#ifndef SUBMITD_OVERVIEW_H
#define SUBMITD_OVERVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

struct overview_user {
	const char *login, *created_at;
	const char *addresses;           /* the extra sender addresses, "" for none */
};

struct overview_login_address {
	const char *login, *address;
	bool internal_user;              /* the login has a row in users */
};

struct overview_key {
	const char *key_id, *state, *created_at;
	const char *retired_at;           /* "-" while active */
	int64_t tokens;
	const char *last_token_expires_at; /* "-" before the first token */
};

struct overview_service {
	const char *name, *created_at;
};

struct overview_message {
	const char *public_id, *received_at;
	const char *login;                /* NULL: not submitted with AUTH */
	const char *client_address;       /* overview_message only */
	const char *envelope_from;
	int64_t size;
	int64_t recipients;               /* overview_messages only */
	const char *sha256;               /* overview_message only */
	bool has_body;                    /* overview_message only */
};

struct overview_recipient {
	int position;
	const char *address, *state;
};

struct overview_token {
	const char *token_id, *role, *address, *status, *expires_at;
};

struct overview_queue {
	const char *public_id;
	int position;
	const char *address, *state;
	int attempts;
	const char *next_attempt_at;      /* "now" when due */
	const char *last_reply;           /* "" before the first attempt */
};

/* By login. */
int overview_users(sqlite3 *db, void (*fn)(const struct overview_user *u, void *arg), void *arg,
    char *err, size_t errlen);
/* Sender addresses granted to logins (all, or login's), by login and address. */
int overview_login_addresses(sqlite3 *db, const char *login,
    void (*fn)(const struct overview_login_address *a, void *arg), void *arg, char *err, size_t errlen);
/* Oldest first. */
int overview_keys(sqlite3 *db, void (*fn)(const struct overview_key *k, void *arg), void *arg,
    char *err, size_t errlen);
/* By name. */
int overview_services(sqlite3 *db, void (*fn)(const struct overview_service *s, void *arg), void *arg,
    char *err, size_t errlen);
/* The newest limit messages, newest first. */
int overview_messages(sqlite3 *db, int64_t limit, void (*fn)(const struct overview_message *m, void *arg),
    void *arg, char *err, size_t errlen);
/* The message with this public id: 1 row or none. */
int overview_message(sqlite3 *db, const char *public_id, void (*fn)(const struct overview_message *m, void *arg),
    void *arg, char *err, size_t errlen);
/* Its recipients by position, and its tokens (sender first). */
int overview_recipients(sqlite3 *db, const char *public_id,
    void (*fn)(const struct overview_recipient *r, void *arg), void *arg, char *err, size_t errlen);
int overview_tokens(sqlite3 *db, const char *public_id, void (*fn)(const struct overview_token *t, void *arg),
    void *arg, char *err, size_t errlen);
/* Recipients waiting for delivery, of one message or (public_id NULL) all,
 * oldest message first. */
int overview_queue(sqlite3 *db, const char *public_id, void (*fn)(const struct overview_queue *q, void *arg),
    void *arg, char *err, size_t errlen);

#endif
