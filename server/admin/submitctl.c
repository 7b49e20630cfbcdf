/*
 * submitctl.c: administration of a submitd data directory: users and their
 * sender addresses, signing keys, tokens. It opens the same database as the
 * daemon (found the same way, from the same configuration and defaults), so
 * run from the same folder both agree without options. Changes take effect
 * in a running daemon without a signal: users at the next AUTH, keys at the
 * next message.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "db/store.h"
#include "server/auth/auth.h"
#include "server/base/config.h"
#include "server/protocol/sasl.h"
#include "server/protocol/smtp_parse.h"
#include "server/base/util.h"
#include "tokens/token.h"

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: submitctl [-c FILE] [-o section.key=value]... COMMAND\n"
	    "users (passwords are read from standard input, never from the command line):\n"
	    "  user add LOGIN                 create a user\n"
	    "  user passwd LOGIN              change a password\n"
	    "  user del LOGIN                 delete a user\n"
	    "  user list                      list users and their sender addresses\n"
	    "  user address add LOGIN ADDR    let LOGIN send as ADDR\n"
	    "  user address del LOGIN ADDR\n"
	    "signing keys:\n"
	    "  key generate                   create the first signing key\n"
	    "  key rotate                     new signing key; the old one only verifies\n"
	    "  key retire KID                 stop signing with KID\n"
	    "  key list\n"
	    "  key export [KID]               public keys as PASERK k4.public and hex\n"
	    "tokens:\n"
	    "  token verify TOKEN|- [--address ADDR]   exit 0 only when valid\n"
	    "  token revoke TOKEN|-\n"
	    "  token revoke --message PUBLIC_ID\n"
	    "messages:\n"
	    "  message list [--limit N]       newest first\n"
	    "  message show PUBLIC_ID         metadata, recipients, tokens\n"
	    "  message fetch TOKEN|- [--address ADDR]  the stored copy on stdout\n"
	    "relay queue:\n"
	    "  queue list                     recipients waiting for delivery, and why\n"
	    "  queue show PUBLIC_ID\n"
	    "  queue retry PUBLIC_ID          deferred recipients are due now\n"
	    "  queue drop PUBLIC_ID           pending recipients fail, without a bounce\n"
	    "  backup FILE                    consistent copy of the database, online\n"
	    "API service credentials:\n"
	    "  service add NAME               prints a new secret once\n"
	    "  service list\n"
	    "  service del NAME\n");
}

static sqlite3 *db;

static int
fail(const char *fmt, const char *arg)
{
	fprintf(stderr, "submitctl: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return 1;
}

/* One line from stdin, without its line end. With a terminal, prompt
 * twice with echo off. */
static int
read_password(char *out, size_t outlen)
{
	bool tty = isatty(STDIN_FILENO);
	struct termios old, quiet;
	char again[SASL_PASS_MAX + 2];

	for (int round = 0; round < (tty ? 2 : 1); round++) {
		char *dst = round == 0 ? out : again;
		size_t dlen = round == 0 ? outlen : sizeof(again);
		if (tty) {
			fprintf(stderr, round == 0 ? "Password: " : "Again: ");
			tcgetattr(STDIN_FILENO, &old);
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
		}
		char *r = fgets(dst, (int)dlen, stdin);
		if (tty) {
			tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
			fputc('\n', stderr);
		}
		if (r == NULL)
			return fail("%s", "no password on standard input");
		size_t n = strlen(dst);
		if (n > 0 && dst[n - 1] != '\n' && !feof(stdin))
			return fail("%s", "password too long (at most 256 octets)");
		while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == '\r'))
			dst[--n] = '\0';
		if (n == 0)
			return fail("%s", "empty password");
		if (n > SASL_PASS_MAX)
			return fail("%s", "password too long (at most 256 octets)");
	}
	if (tty && strcmp(out, again) != 0)
		return fail("%s", "passwords do not match");
	sodium_memzero(again, sizeof(again));
	return 0;
}

static int
check_login(const char *login)
{
	size_t n = strlen(login);

	if (n == 0 || n > SASL_ID_MAX)
		return fail("bad login \"%s\": 1 to 320 characters", login);
	for (const char *p = login; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return fail("bad login \"%s\": no spaces or control characters", login);
	return 0;
}

static int
hashed_password(char *hash)
{
	char pw[SASL_PASS_MAX + 2];

	if (read_password(pw, sizeof(pw)) != 0)
		return 1;
	if (auth_hash_password(pw, hash) != 0) {
		sodium_memzero(pw, sizeof(pw));
		return fail("%s", "password hashing failed (out of memory?)");
	}
	sodium_memzero(pw, sizeof(pw));
	return 0;
}

static int
cmd_user(int argc, char **argv)
{
	char hash[crypto_pwhash_STRBYTES], err[512];
	int rc;

	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(db, "SELECT login, created_at, coalesce(extra_addresses, '') FROM user_overview "
		    "ORDER BY login", -1, &st, NULL) != SQLITE_OK)
			return fail("%s", sqlite3_errmsg(db));
		while (sqlite3_step(st) == SQLITE_ROW)
			printf("%s\tcreated=%s\taddresses=%s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
			    sqlite3_column_text(st, 2));
		sqlite3_finalize(st);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "add") == 0) {
		if (check_login(argv[1]) || hashed_password(hash))
			return 1;
		rc = store_user_add(db, argv[1], hash, err, sizeof(err));
		if (rc != 0)
			return fail("%s", err);
		printf("user %s added\n", argv[1]);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "passwd") == 0) {
		if (hashed_password(hash))
			return 1;
		rc = store_user_passwd(db, argv[1], hash, err, sizeof(err));
		if (rc != 0)
			return fail("%s", err);
		printf("password of %s changed\n", argv[1]);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "del") == 0) {
		rc = store_user_del(db, argv[1], err, sizeof(err));
		if (rc != 0)
			return fail("%s", err);
		printf("user %s deleted\n", argv[1]);
		return 0;
	}
	if (argc == 4 && strcmp(argv[0], "address") == 0 &&
	    (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "del") == 0)) {
		bool add = strcmp(argv[1], "add") == 0;
		if (add && smtp_mailbox_check(argv[3], strlen(argv[3]), true) != SMTP_PARSE_OK)
			return fail("not a valid address: %s", argv[3]);
		rc = add ? store_address_add(db, argv[2], argv[3], err, sizeof(err)) :
		    store_address_del(db, argv[2], argv[3], err, sizeof(err));
		if (rc != 0)
			return fail("%s", err);
		printf("%s %s %s\n", argv[2], add ? "may now send as" : "may no longer send as", argv[3]);
		return 0;
	}
	usage(stderr);
	return 2;
}

static void
print_key(const struct token_key *k)
{
	char paserk[PASERK_K4_PUBLIC_LEN + 1], hex[PASETO_PK_BYTES * 2 + 1];

	paserk_k4_public(k->pk, paserk);
	hex_encode(k->pk, PASETO_PK_BYTES, hex);
	printf("%s\t%s\t%s\t%s\n", k->kid, k->state == TOKEN_KEY_ACTIVE ? "active" : "retired", paserk, hex);
}

static int
cmd_key(int argc, char **argv)
{
	struct keyring ring;
	struct token_key k;
	char err[512] = "";
	int rc;

	if (argc == 1 && strcmp(argv[0], "generate") == 0) {
		rc = store_key_ensure(db, now_unix(), err, sizeof(err));
		if (rc == -1)
			return fail("%s", err);
		if (rc == 0)
			return fail("%s", "an active key exists already; use `key rotate` to replace it");
		printf("signing key generated\n");
		return 0;
	}
	if (argc == 1 && strcmp(argv[0], "rotate") == 0) {
		if (store_key_rotate(db, now_unix(), &k, err, sizeof(err)) == -1)
			return fail("%s", err);
		printf("new active key %s; the previous one is retired and still verifies\n", k.kid);
		sodium_memzero(&k, sizeof(k));
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "retire") == 0) {
		rc = store_key_retire(db, argv[1], now_unix(), err, sizeof(err));
		if (rc != 0)
			return fail("%s", err);
		printf("key %s retired\n", argv[1]);
		return 0;
	}
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(db, "SELECT key_id, state, created_at, coalesce(retired_at, '-'), tokens, "
		    "coalesce(last_token_expires_at, '-') FROM key_overview ORDER BY created_at", -1, &st, NULL) != SQLITE_OK)
			return fail("%s", sqlite3_errmsg(db));
		printf("key_id\tstate\tcreated_at\tretired_at\ttokens\tlast_token_expires_at\n");
		while (sqlite3_step(st) == SQLITE_ROW)
			printf("%s\t%s\t%s\t%s\t%lld\t%s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
			    sqlite3_column_text(st, 2), sqlite3_column_text(st, 3),
			    (long long)sqlite3_column_int64(st, 4), sqlite3_column_text(st, 5));
		sqlite3_finalize(st);
		return 0;
	}
	if ((argc == 1 || argc == 2) && strcmp(argv[0], "export") == 0) {
		keyring_init(&ring);
		if (store_keys_load(db, &ring) == -1)
			return fail("%s", sqlite3_errmsg(db));
		rc = argc == 2 ? 1 : 0;
		for (size_t i = 0; i < ring.n; i++) {
			if (argc == 2 && strcmp(ring.keys[i].kid, argv[1]) != 0)
				continue;
			print_key(&ring.keys[i]);
			rc = 0;
		}
		keyring_free(&ring);
		if (rc)
			return fail("no key %s", argv[1]);
		return 0;
	}
	usage(stderr);
	return 2;
}

static int
read_token_arg(const char *arg, char *buf, size_t buflen)
{
	if (strcmp(arg, "-") != 0) {
		snprintf(buf, buflen, "%s", arg);
		return 0;
	}
	if (fgets(buf, (int)buflen, stdin) == NULL)
		return fail("%s", "no token on standard input");
	buf[strcspn(buf, "\r\n")] = '\0';
	return 0;
}

static int
cmd_token(int argc, char **argv)
{
	struct keyring ring;
	struct token_claims c;
	sqlite3_stmt *stmt = NULL;
	struct store_token_check k = { .db = db, .stmt = &stmt };
	enum token_status st;
	char tok[4096], err[512], exp[21];
	const char *address = NULL;
	int rc;

	if (argc >= 3 && strcmp(argv[0], "revoke") == 0 && strcmp(argv[1], "--message") == 0 && argc == 3) {
		int n = 0;
		if (store_message_revoke(db, argv[2], now_ms(), &n, err, sizeof(err)) == -1)
			return fail("%s", err);
		printf("%d token(s) of message %s revoked\n", n, argv[2]);
		return n > 0 ? 0 : 1;
	}
	if (argc >= 2 && strcmp(argv[0], "verify") == 0) {
		if (argc == 4 && strcmp(argv[2], "--address") == 0)
			address = argv[3];
		else if (argc != 2) {
			usage(stderr);
			return 2;
		}
	} else if (!(argc == 2 && strcmp(argv[0], "revoke") == 0)) {
		usage(stderr);
		return 2;
	}
	if (read_token_arg(argv[1], tok, sizeof(tok)))
		return 1;
	keyring_init(&ring);
	if (store_keys_load(db, &ring) == -1)
		return fail("%s", sqlite3_errmsg(db));
	memset(&c, 0, sizeof(c));
	st = token_verify(tok, strlen(tok), &ring, now_unix(), address, store_token_check_revoked, &k, &c);
	st = store_token_check_finish(&k, st, c.jti);
	store_token_info_free(&k.info);
	sqlite3_finalize(stmt);
	keyring_free(&ring);
	if (strcmp(argv[0], "revoke") == 0) {
		/* Only a token we signed names a token id worth revoking. */
		if (st == TOKEN_MALFORMED || st == TOKEN_BAD_SIGNATURE || st == TOKEN_UNKNOWN_KEY)
			return fail("not a token of this server: %s", token_status_name(st));
		rc = store_token_revoke(db, c.jti, now_ms(), err, sizeof(err));
		if (rc != 0)
			return fail("%s", err);
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

static int
cmd_service(int argc, char **argv)
{
	char err[512];
	int rc;

	if (argc == 2 && strcmp(argv[0], "add") == 0) {
		unsigned char raw[32], digest[crypto_hash_sha256_BYTES];
		char secret[3 + 44], hex[65];

		if (strlen(argv[1]) == 0 || strlen(argv[1]) > 64 || strpbrk(argv[1], " \t\r\n") != NULL)
			return fail("bad service name \"%s\": 1 to 64 characters, no spaces", argv[1]);
		randombytes_buf(raw, sizeof(raw));
		memcpy(secret, "sd_", 3);
		sodium_bin2base64(secret + 3, sizeof(secret) - 3, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		crypto_hash_sha256(digest, (unsigned char *)secret, strlen(secret));
		hex_encode(digest, sizeof(digest), hex);
		rc = store_service_add(db, argv[1], hex, err, sizeof(err));
		sodium_memzero(raw, sizeof(raw));
		if (rc != 0)
			return fail("%s", err);
		/* Shown once: only its hash is stored. */
		printf("%s\n", secret);
		sodium_memzero(secret, sizeof(secret));
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "del") == 0) {
		rc = store_service_del(db, argv[1], err, sizeof(err));
		if (rc != 0)
			return fail("%s", err);
		printf("service %s deleted\n", argv[1]);
		return 0;
	}
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		sqlite3_stmt *st;
		if (sqlite3_prepare_v2(db, "SELECT name, created_at FROM services ORDER BY name", -1, &st, NULL) != SQLITE_OK)
			return fail("%s", sqlite3_errmsg(db));
		while (sqlite3_step(st) == SQLITE_ROW)
			printf("%s\tcreated=%s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1));
		sqlite3_finalize(st);
		return 0;
	}
	usage(stderr);
	return 2;
}

static int
message_list(long limit)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, "SELECT public_id, received_at, coalesce(auth_login, '-'), envelope_from, size, "
	    "recipients FROM message_overview ORDER BY received_at DESC LIMIT ?1", -1, &st, NULL) != SQLITE_OK)
		return fail("%s", sqlite3_errmsg(db));
	sqlite3_bind_int64(st, 1, limit);
	while (sqlite3_step(st) == SQLITE_ROW)
		printf("%s\t%s\t%s\t%s\t%lld\t%lld\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
		    sqlite3_column_text(st, 2), sqlite3_column_text(st, 3), (long long)sqlite3_column_int64(st, 4),
		    (long long)sqlite3_column_int64(st, 5));
	sqlite3_finalize(st);
	return 0;
}

static int
message_show(const char *id)
{
	sqlite3_stmt *st;
	int found = 0;

	if (sqlite3_prepare_v2(db, "SELECT public_id, received_at, coalesce(auth_login, ''), client_address, "
	    "envelope_from, size, sha256, has_body FROM message_overview WHERE public_id = ?1", -1, &st, NULL) != SQLITE_OK)
		return fail("%s", sqlite3_errmsg(db));
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW) {
		found = 1;
		printf("id=%s\nreceived_at=%s\nuser=%s\nclient=%s\nfrom=%s\nsize=%lld\nsha256=%s\nbody=%s\n",
		    sqlite3_column_text(st, 0), sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
		    sqlite3_column_text(st, 3), sqlite3_column_text(st, 4), (long long)sqlite3_column_int64(st, 5),
		    sqlite3_column_text(st, 6), sqlite3_column_int(st, 7) ? "stored" : "purged");
	}
	sqlite3_finalize(st);
	if (!found)
		return fail("no message %s", id);
	if (sqlite3_prepare_v2(db, "SELECT position, address, state FROM recipient_overview WHERE public_id = ?1 "
	    "ORDER BY position", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW)
			printf("rcpt=%d\t%s\t%s\n", sqlite3_column_int(st, 0), sqlite3_column_text(st, 1),
			    sqlite3_column_text(st, 2));
		sqlite3_finalize(st);
	}
	if (sqlite3_prepare_v2(db, "SELECT token_id, role, address, status, expires_at FROM token_overview "
	    "WHERE public_id = ?1 ORDER BY role DESC, token_id", -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		while (sqlite3_step(st) == SQLITE_ROW)
			printf("token=%s\t%s\t%s\t%s\texpires=%s\n", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1),
			    sqlite3_column_text(st, 2), sqlite3_column_text(st, 3), sqlite3_column_text(st, 4));
		sqlite3_finalize(st);
	}
	return 0;
}

/* The same checks as the API's fetch, then the stored bytes to stdout. */
static int
message_fetch(const char *arg, const char *address)
{
	struct keyring ring;
	struct token_claims c;
	struct store_token_info info;
	sqlite3_stmt *stmt = NULL;
	struct store_token_check k = { .db = db, .stmt = &stmt };
	enum token_status st;
	char tok[4096];
	sqlite3_blob *blob = NULL;
	static unsigned char buf[64 * 1024];

	if (read_token_arg(arg, tok, sizeof(tok)))
		return 1;
	keyring_init(&ring);
	if (store_keys_load(db, &ring) == -1)
		return fail("%s", sqlite3_errmsg(db));
	st = token_verify(tok, strlen(tok), &ring, now_unix(), address, store_token_check_revoked, &k, &c);
	st = store_token_check_finish(&k, st, c.jti);
	sqlite3_finalize(stmt);
	keyring_free(&ring);
	info = k.info;
	if (st != TOKEN_VALID) {
		store_token_info_free(&info);
		fprintf(stderr, "result=%s\n", token_status_name(st));
		return 1;
	}
	if (!info.has_body) {
		store_token_info_free(&info);
		fprintf(stderr, "result=purged\n");
		return 1;
	}
	if (sqlite3_blob_open(db, "main", "message_bodies", "content", info.message_id, 0, &blob) != SQLITE_OK) {
		store_token_info_free(&info);
		return fail("%s", sqlite3_errmsg(db));
	}
	for (int64_t off = 0; off < info.size;) {
		int n = (int)(info.size - off < (int64_t)sizeof(buf) ? info.size - off : (int64_t)sizeof(buf));
		if (sqlite3_blob_read(blob, buf, n, (int)off) != SQLITE_OK || fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
			sqlite3_blob_close(blob);
			store_token_info_free(&info);
			return fail("%s", "read or write failed");
		}
		off += n;
	}
	sqlite3_blob_close(blob);
	store_token_info_free(&info);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int
cmd_message(int argc, char **argv)
{
	if (argc >= 1 && strcmp(argv[0], "list") == 0) {
		long limit = 50;
		if (argc == 3 && strcmp(argv[1], "--limit") == 0)
			limit = strtol(argv[2], NULL, 10);
		else if (argc != 1) {
			usage(stderr);
			return 2;
		}
		if (limit <= 0)
			return fail("%s", "--limit takes a positive number");
		return message_list(limit);
	}
	if (argc == 2 && strcmp(argv[0], "show") == 0)
		return message_show(argv[1]);
	if (argc == 2 && strcmp(argv[0], "fetch") == 0)
		return message_fetch(argv[1], NULL);
	if (argc == 4 && strcmp(argv[0], "fetch") == 0 && strcmp(argv[2], "--address") == 0)
		return message_fetch(argv[1], argv[3]);
	usage(stderr);
	return 2;
}

static int
queue_print(const char *public_id)
{
	sqlite3_stmt *st;

	if (sqlite3_prepare_v2(db, "SELECT public_id, position, address, state, attempts, coalesce(next_attempt_at, 'now'), "
	    "coalesce(last_reply, '') FROM queue_overview WHERE ?1 IS NULL OR public_id = ?1 "
	    "ORDER BY received_at, position", -1, &st, NULL) != SQLITE_OK)
		return fail("%s", sqlite3_errmsg(db));
	if (public_id)
		sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	printf("public_id\tposition\taddress\tstate\tattempts\tnext_attempt_at\tlast_reply\n");
	while (sqlite3_step(st) == SQLITE_ROW)
		printf("%s\t%d\t%s\t%s\t%d\t%s\t%s\n", sqlite3_column_text(st, 0), sqlite3_column_int(st, 1),
		    sqlite3_column_text(st, 2), sqlite3_column_text(st, 3), sqlite3_column_int(st, 4),
		    sqlite3_column_text(st, 5), sqlite3_column_text(st, 6));
	sqlite3_finalize(st);
	return 0;
}

static int
queue_update(const char *public_id, const char *sql, const char *what)
{
	sqlite3_stmt *st;
	char now[24];
	int n;

	store_time(now_ms(), now);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return fail("%s", sqlite3_errmsg(db));
	sqlite3_bind_text(st, 1, public_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, now, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_finalize(st);
		return fail("%s", sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	n = sqlite3_changes(db);
	printf("%d recipient(s) of %s %s\n", n, public_id, what);
	return n > 0 ? 0 : 1;
}

static int
cmd_queue(int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		return queue_print(NULL);
	if (argc == 2 && strcmp(argv[0], "show") == 0)
		return queue_print(argv[1]);
	if (argc == 2 && strcmp(argv[0], "retry") == 0)
		return queue_update(argv[1], "UPDATE recipients SET next_attempt_at = NULL, updated_at = ?2 "
		    "WHERE state = 'deferred' AND message_id = (SELECT message_id FROM messages WHERE public_id = ?1)",
		    "due now");
	if (argc == 2 && strcmp(argv[0], "drop") == 0)
		return queue_update(argv[1], "UPDATE recipients SET state = 'failed', last_reply = 'dropped by the "
		    "administrator', updated_at = ?2 WHERE state IN ('queued', 'deferred') AND "
		    "message_id = (SELECT message_id FROM messages WHERE public_id = ?1)", "dropped");
	usage(stderr);
	return 2;
}

/* SQLite's online backup: a consistent snapshot while the daemon writes. */
static int
cmd_backup(const char *path)
{
	sqlite3 *dst = NULL;
	sqlite3_backup *b;
	int rc;

	if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
		sqlite3_close(dst);
		return fail("cannot create %s", path);
	}
	b = sqlite3_backup_init(dst, "main", db, "main");
	if (b == NULL) {
		rc = fail("%s", sqlite3_errmsg(dst));
		sqlite3_close(dst);
		return rc;
	}
	/* One step for the whole file: a copy in small steps starts over each
	 * time the daemon commits in between, and may never finish on a busy
	 * server. In WAL mode the one read transaction blocks no writer. */
	do {
		rc = sqlite3_backup_step(b, -1);
		if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
			sqlite3_sleep(50);
	} while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		fail("backup failed: %s", sqlite3_errstr(rc));
		sqlite3_close(dst);
		return 1;
	}
	sqlite3_close(dst);
	chmod(path, 0600);
	printf("backup written to %s\n", path);
	return 0;
}

static struct config cfg;

static void
at_exit(void)
{
	store_close(&db);
	config_free(&cfg);
}

int
main(int argc, char **argv)
{
	char err[1024], *db_path;
	const char *conf_file = NULL, **overrides;
	size_t noverrides = 0;
	int ch, rc;

	config_defaults(&cfg);
	atexit(at_exit);
	overrides = xcalloc((size_t)argc, sizeof(*overrides));
	while ((ch = getopt(argc, argv, "+c:o:h")) != -1) {
		switch (ch) {
		case 'c': conf_file = optarg; break;
		case 'o': overrides[noverrides++] = optarg; break;
		case 'h': free(overrides); usage(stdout); return 0;
		default: free(overrides); usage(stderr); return 2;
		}
	}
	rc = config_load(&cfg, conf_file, overrides, noverrides, err, sizeof(err));
	free(overrides);
	if (rc == -1)
		return fail("%s", err);
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0)
		return fail("%s", "libsodium failed to initialise");
	umask(077);   /* the database and backups hold secrets and mail */
	if (mkdir_p(cfg.data_dir, 0700) == -1)
		return fail("%s", strerror(errno));
	db_path = path_join(cfg.data_dir, STORE_DB_NAME);
	db = store_open(db_path, err, sizeof(err));
	free(db_path);
	if (db == NULL)
		return fail("%s", err);
	if (strcmp(argv[0], "user") == 0)
		rc = cmd_user(argc - 1, argv + 1);
	else if (strcmp(argv[0], "key") == 0)
		rc = cmd_key(argc - 1, argv + 1);
	else if (strcmp(argv[0], "token") == 0)
		rc = cmd_token(argc - 1, argv + 1);
	else if (strcmp(argv[0], "message") == 0)
		rc = cmd_message(argc - 1, argv + 1);
	else if (strcmp(argv[0], "service") == 0)
		rc = cmd_service(argc - 1, argv + 1);
	else if (strcmp(argv[0], "queue") == 0)
		rc = cmd_queue(argc - 1, argv + 1);
	else if (argc == 2 && strcmp(argv[0], "backup") == 0)
		rc = cmd_backup(argv[1]);
	else {
		usage(stderr);
		rc = 2;
	}
	return rc;
}
