/*
 * submitctl_tokens.c: signing keys (generate, rotate, retire, list,
 * export the public halves) and tokens (verify as the API would, revoke one
 * or all of a message's). A running daemon picks up key changes at its next
 * message and revocations at the next verification, without a signal.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "db/admin.h"
#include "db/overview.h"
#include "db/store.h"
#include "server/admin/submitctl_internal.h"
#include "server/base/util.h"
#include "tokens/keyring.h"
#include "tokens/token.h"

int
submitctl_read_token(const char *arg, char *buf, size_t buflen)
{
	if (strcmp(arg, "-") != 0) {
		snprintf(buf, buflen, "%s", arg);
		return 0;
	}
	if (fgets(buf, (int)buflen, stdin) == NULL)
		return submitctl_fail("%s", "no token on standard input");
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

static void
print_key(const struct token_key *k)
{
	char paserk[PASERK_K4_PUBLIC_LEN + 1], hex[PASETO_PK_BYTES * 2 + 1];

	paserk_k4_public(k->pk, paserk);
	hex_encode(k->pk, PASETO_PK_BYTES, hex);
	printf("%s\t%s\t%s\t%s\n", k->kid, k->state == TOKEN_KEY_ACTIVE ? "active" : "retired", paserk, hex);
}

/* The header goes out once the query runs, even with no row. */
static void
key_header(bool *done)
{
	if (!*done)
		printf("key_id\tstate\tcreated_at\tretired_at\ttokens\tlast_token_expires_at\n");
	*done = true;
}

static void
print_key_row(const struct overview_key *k, void *arg)
{
	key_header(arg);
	printf("%s\t%s\t%s\t%s\t%lld\t%s\n", k->key_id, k->state, k->created_at, k->retired_at,
	    (long long)k->tokens, k->last_token_expires_at);
}

int
submitctl_key(sqlite3 *db, int argc, char **argv)
{
	struct keyring ring;
	struct token_key k;
	char err[512] = "";
	int rc;

	if (argc == 1 && strcmp(argv[0], "generate") == 0) {
		rc = store_key_ensure(db, now_unix(), err, sizeof(err));
		if (rc == -1)
			return submitctl_fail("%s", err);
		if (rc == 0)
			return submitctl_fail("%s", "an active key exists already; use `key rotate` to replace it");
		printf("signing key generated\n");
		return 0;
	}
	if (argc == 1 && strcmp(argv[0], "rotate") == 0) {
		if (store_key_rotate(db, now_unix(), &k, err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		printf("new active key %s; the previous one is retired and still verifies\n", k.kid);
		sodium_memzero(&k, sizeof(k));
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "retire") == 0) {
		rc = store_key_retire(db, argv[1], now_unix(), err, sizeof(err));
		if (rc != 0)
			return submitctl_fail("%s", err);
		printf("key %s retired\n", argv[1]);
		return 0;
	}
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		bool header_done = false;
		if (overview_keys(db, print_key_row, &header_done, err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		key_header(&header_done);
		return 0;
	}
	if ((argc == 1 || argc == 2) && strcmp(argv[0], "export") == 0) {
		keyring_init(&ring);
		if (store_keys_load(db, &ring) == -1)
			return submitctl_fail("%s", sqlite3_errmsg(db));
		rc = argc == 2 ? 1 : 0;
		for (size_t i = 0; i < ring.n; i++) {
			if (argc == 2 && strcmp(ring.keys[i].kid, argv[1]) != 0)
				continue;
			print_key(&ring.keys[i]);
			rc = 0;
		}
		keyring_free(&ring);
		if (rc)
			return submitctl_fail("no key %s", argv[1]);
		return 0;
	}
	submitctl_usage(stderr);
	return 2;
}

int
submitctl_token(sqlite3 *db, int argc, char **argv)
{
	struct token_claims c;
	struct store_token_info info;
	enum token_status st;
	char tok[4096], err[512], exp[21];
	const char *address = NULL;
	int rc;

	if (argc >= 3 && strcmp(argv[0], "revoke") == 0 && strcmp(argv[1], "--message") == 0 && argc == 3) {
		int n = 0;
		if (store_message_revoke(db, argv[2], now_ms(), &n, err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		printf("%d token(s) of message %s revoked\n", n, argv[2]);
		return n > 0 ? 0 : 1;
	}
	if (argc >= 2 && strcmp(argv[0], "verify") == 0) {
		if (argc == 4 && strcmp(argv[2], "--address") == 0)
			address = argv[3];
		else if (argc != 2) {
			submitctl_usage(stderr);
			return 2;
		}
	} else if (!(argc == 2 && strcmp(argv[0], "revoke") == 0)) {
		submitctl_usage(stderr);
		return 2;
	}
	if (submitctl_read_token(argv[1], tok, sizeof(tok)))
		return 1;
	if (admin_token_verify(db, tok, address, now_unix(), &st, &c, &info, err, sizeof(err)) == -1)
		return submitctl_fail("%s", err);
	store_token_info_free(&info);
	if (strcmp(argv[0], "revoke") == 0) {
		/* Only a token we signed names a token id worth revoking. */
		if (st == TOKEN_MALFORMED || st == TOKEN_BAD_SIGNATURE || st == TOKEN_UNKNOWN_KEY)
			return submitctl_fail("not a token of this server: %s", token_status_name(st));
		rc = store_token_revoke(db, c.jti, now_ms(), err, sizeof(err));
		if (rc != 0)
			return submitctl_fail("%s", err);
		printf("token %s revoked\n", c.jti);
		return 0;
	}
	if (c.jti[0]) {
		token_time_format(c.exp, exp);
		printf("token_id=%s\nmessage=%s\nrole=%s\nbinding=%s\nissuer=%s\nexpires=%s\nkey=%s\n", c.jti, c.mid,
		    c.role == TOKEN_ROLE_SENDER ? "sender" : "recipient", c.binding, c.iss, exp, c.kid);
	}
	printf("result=%s\n", token_status_name(st));
	return st == TOKEN_VALID ? 0 : 1;
}
