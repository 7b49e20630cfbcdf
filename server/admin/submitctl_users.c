/*
 * submitctl_users.c: the credentials submitctl manages: users (their
 * passwords, read from standard input and never from the command line, and
 * their extra sender addresses) and the API's service secrets (made here,
 * shown once, stored only as a hash).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "db/overview.h"
#include "db/store.h"
#include "server/admin/submitctl_internal.h"
#include "server/auth/auth.h"
#include "server/base/config.h"
#include "server/base/util.h"
#include "server/protocol/sasl.h"
#include "server/protocol/smtp_parse.h"

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
			return submitctl_fail("%s", "no password on standard input");
		size_t n = strlen(dst);
		if (n > 0 && dst[n - 1] != '\n' && !feof(stdin))
			return submitctl_fail("%s", "password too long (at most 256 octets)");
		while (n > 0 && (dst[n - 1] == '\n' || dst[n - 1] == '\r'))
			dst[--n] = '\0';
		if (n == 0)
			return submitctl_fail("%s", "empty password");
		if (n > SASL_PASS_MAX)
			return submitctl_fail("%s", "password too long (at most 256 octets)");
	}
	if (tty && strcmp(out, again) != 0)
		return submitctl_fail("%s", "passwords do not match");
	sodium_memzero(again, sizeof(again));
	return 0;
}

static int
check_login(const char *login)
{
	size_t n = strlen(login);

	if (n == 0 || n > SASL_ID_MAX)
		return submitctl_fail("bad login \"%s\": 1 to 320 characters", login);
	for (const char *p = login; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == 0x7f)
			return submitctl_fail("bad login \"%s\": no spaces or control characters", login);
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
		return submitctl_fail("%s", "password hashing failed (out of memory?)");
	}
	sodium_memzero(pw, sizeof(pw));
	return 0;
}

static void
print_address(const struct overview_login_address *a, void *arg)
{
	printf("%s\t%s\tpassword=%s\n", a->login, a->address, a->internal_user ? "here" : "elsewhere");
}

int
submitctl_user(sqlite3 *db, const struct config *cfg, int argc, char **argv)
{
	char hash[crypto_pwhash_STRBYTES], err[512];
	int rc;

	if ((rc = submitctl_user_limits(db, cfg, argc, argv)) >= 0)
		return rc;      /* list, disable, enable, limit */
	if (argc == 2 && strcmp(argv[0], "add") == 0) {
		if (check_login(argv[1]) || hashed_password(hash))
			return 1;
		rc = store_user_add(db, argv[1], hash, err, sizeof(err));
		if (rc != 0)
			return submitctl_fail("%s", err);
		printf("user %s added\n", argv[1]);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "passwd") == 0) {
		if (hashed_password(hash))
			return 1;
		rc = store_user_passwd(db, argv[1], hash, err, sizeof(err));
		if (rc != 0)
			return submitctl_fail("%s", err);
		printf("password of %s changed\n", argv[1]);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "del") == 0) {
		rc = store_user_del(db, argv[1], err, sizeof(err));
		if (rc != 0)
			return submitctl_fail("%s", err);
		printf("user %s deleted\n", argv[1]);
		return 0;
	}
	if (argc >= 2 && argc <= 3 && strcmp(argv[0], "address") == 0 && strcmp(argv[1], "list") == 0) {
		if (overview_login_addresses(db, argc == 3 ? argv[2] : NULL, print_address, NULL, err,
		    sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		return 0;
	}
	if (argc == 4 && strcmp(argv[0], "address") == 0 &&
	    (strcmp(argv[1], "add") == 0 || strcmp(argv[1], "del") == 0)) {
		bool add = strcmp(argv[1], "add") == 0;
		if (add && check_login(argv[2]))
			return 1;
		if (add && smtp_mailbox_check(argv[3], strlen(argv[3]), true) != SMTP_PARSE_OK)
			return submitctl_fail("not a valid address: %s", argv[3]);
		/* Addresses belong to logins, whoever checks their passwords: a
		 * login Dovecot checks (auth.backend = dovecot) has no users row;
		 * with our own users, a login without one is a typing error. */
		bool need_user = cfg->auth_backend_kind == CONFIG_AUTH_INTERNAL;
		rc = add ? store_address_add(db, argv[2], argv[3], need_user, err, sizeof(err)) :
		    store_address_del(db, argv[2], argv[3], err, sizeof(err));
		if (rc != 0)
			return submitctl_fail("%s", err);
		printf("%s %s %s\n", argv[2], add ? "may now send as" : "may no longer send as", argv[3]);
		return 0;
	}
	submitctl_usage(stderr);
	return 2;
}

static void
print_service(const struct overview_service *s, void *arg)
{
	printf("%s\tcreated=%s\n", s->name, s->created_at);
}

int
submitctl_service(sqlite3 *db, int argc, char **argv)
{
	char err[512];
	int rc;

	if (argc == 2 && strcmp(argv[0], "add") == 0) {
		unsigned char raw[32], digest[crypto_hash_sha256_BYTES];
		char secret[3 + 44], hex[65];

		if (strlen(argv[1]) == 0 || strlen(argv[1]) > 64 || strpbrk(argv[1], " \t\r\n") != NULL)
			return submitctl_fail("bad service name \"%s\": 1 to 64 characters, no spaces", argv[1]);
		randombytes_buf(raw, sizeof(raw));
		memcpy(secret, "sd_", 3);
		sodium_bin2base64(secret + 3, sizeof(secret) - 3, raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		crypto_hash_sha256(digest, (unsigned char *)secret, strlen(secret));
		hex_encode(digest, sizeof(digest), hex);
		rc = store_service_add(db, argv[1], hex, err, sizeof(err));
		sodium_memzero(raw, sizeof(raw));
		if (rc != 0)
			return submitctl_fail("%s", err);
		/* Shown once: only its hash is stored. */
		printf("%s\n", secret);
		sodium_memzero(secret, sizeof(secret));
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "import") == 0) {
		/* The same credential on every node of a cluster: the secret
		 * another node's `service add` printed, read from standard
		 * input (never the command line), held to the form `add` makes. */
		unsigned char raw[32], digest[crypto_hash_sha256_BYTES];
		char secret[SASL_PASS_MAX + 2], hex[65];
		size_t rawlen = 0;

		if (strlen(argv[1]) == 0 || strlen(argv[1]) > 64 || strpbrk(argv[1], " \t\r\n") != NULL)
			return submitctl_fail("bad service name \"%s\": 1 to 64 characters, no spaces", argv[1]);
		if (read_password(secret, sizeof(secret)) != 0)
			return 1;     /* read_password said why */
		if (strncmp(secret, "sd_", 3) != 0 || strlen(secret) != 3 + 43 ||
		    sodium_base642bin(raw, sizeof(raw), secret + 3, strlen(secret + 3), NULL, &rawlen, NULL,
		    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || rawlen != sizeof(raw)) {
			sodium_memzero(secret, sizeof(secret));
			return submitctl_fail("%s", "not a service secret (sd_ and 43 base64url characters, as `service add` prints)");
		}
		crypto_hash_sha256(digest, (unsigned char *)secret, strlen(secret));
		hex_encode(digest, sizeof(digest), hex);
		sodium_memzero(raw, sizeof(raw));
		sodium_memzero(secret, sizeof(secret));
		rc = store_service_add(db, argv[1], hex, err, sizeof(err));
		if (rc != 0)
			return submitctl_fail("%s", err);
		printf("service %s imported\n", argv[1]);
		return 0;
	}
	if (argc == 2 && strcmp(argv[0], "del") == 0) {
		rc = store_service_del(db, argv[1], err, sizeof(err));
		if (rc != 0)
			return submitctl_fail("%s", err);
		printf("service %s deleted\n", argv[1]);
		return 0;
	}
	if (argc == 1 && strcmp(argv[0], "list") == 0) {
		if (overview_services(db, print_service, NULL, err, sizeof(err)) == -1)
			return submitctl_fail("%s", err);
		return 0;
	}
	submitctl_usage(stderr);
	return 2;
}
