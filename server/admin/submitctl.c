/*
 * submitctl.c: administration of a submitd data directory: users and their
 * sender addresses, signing keys, tokens. It opens the same database as the
 * daemon (found the same way, from the same configuration and defaults), so
 * run from the same folder both agree without options. Changes take effect
 * in a running daemon without a signal: users at the next AUTH, keys at the
 * next message, disabled logins and limits within limits.reload_interval.
 *
 * This file reads the options and the configuration (config_load, as
 * submitd does), opens the database and hands each command to its group;
 * submitctl_internal.h lists the groups. The SQL lives in db/.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "db/store.h"
#include "server/admin/submitctl_internal.h"
#include "server/base/config.h"
#include "server/base/util.h"

void
submitctl_usage(FILE *f)
{
	fprintf(f,
	    "usage: submitctl [-c FILE] [-o section.key=value]... COMMAND\n"
	    "users (passwords are read from standard input, never from the command line):\n"
	    "  user add LOGIN                 create a user\n"
	    "  user passwd LOGIN              change a password\n"
	    "  user del LOGIN                 delete a user\n"
	    "  user list                      users, sender addresses, disabled, counts/limits\n"
	    "  user address add LOGIN ADDR    let LOGIN send as ADDR (with auth.backend = dovecot,\n"
	    "                                 any login Dovecot checks)\n"
	    "  user address del LOGIN ADDR\n"
	    "  user address list [LOGIN]      every grant, or LOGIN's\n"
	    "  user disable LOGIN             AUTH refused, queued mail held (also Dovecot logins)\n"
	    "  user enable LOGIN\n"
	    "  user limit LOGIN KEY N|default KEY: user_messages_per_hour, user_recipients_per_day\n"
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
	    "  message status TOKEN|- [--json]  delivery state of the recipients the token covers\n"
	    "  message purge PUBLIC_ID        tokens and stored copy go now, as with retention\n"
	    "relay queue:\n"
	    "  queue list                     recipients waiting for delivery, and why\n"
	    "  queue show PUBLIC_ID\n"
	    "  queue retry PUBLIC_ID          deferred recipients are due now\n"
	    "  queue drop PUBLIC_ID           pending recipients fail, without a bounce\n"
	    "  queue drop --login LOGIN       the same for every message of LOGIN\n"
	    "  queue release [--since T] [--until T]  mail accepted without relay.host may go\n"
	    "                                 (T: \"YYYY-MM-DD HH:MM:SS\" UTC, or now)\n"
	    "  backup FILE                    consistent copy of the database, online\n"
	    "Sent filing (the sender's copy in the user's IMAP Sent mailbox):\n"
	    "  sent enable LOGIN              file copies for LOGIN\n"
	    "  sent disable LOGIN             do not file copies for LOGIN\n"
	    "  sent default LOGIN             LOGIN follows sent.default again\n"
	    "  sent list                      logins with a setting of their own\n"
	    "DKIM keys (docs/operations.md):\n"
	    "  dkim generate DOMAIN [--selector S] [--algorithm rsa|ed25519]\n"
	    "                                 new active key (RSA 2048 by default)\n"
	    "  dkim list\n"
	    "  dkim export DOMAIN             the DNS TXT records to publish\n"
	    "  dkim retire DOMAIN SELECTOR    stop signing with that key\n"
	    "API service credentials:\n"
	    "  service add NAME               prints a new secret once\n"
	    "  service import NAME            the secret another node printed, from stdin\n"
	    "  service list\n"
	    "  service del NAME\n");
}

int
submitctl_fail(const char *fmt, const char *arg)
{
	fprintf(stderr, "submitctl: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	return 1;
}

static sqlite3 *db;
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
		case 'h': free(overrides); submitctl_usage(stdout); return 0;
		default: free(overrides); submitctl_usage(stderr); return 2;
		}
	}
	rc = config_load(&cfg, conf_file, overrides, noverrides, err, sizeof(err));
	free(overrides);
	if (rc == -1)
		return submitctl_fail("%s", err);
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		submitctl_usage(stderr);
		return 2;
	}
	if (sodium_init() < 0)
		return submitctl_fail("%s", "libsodium failed to initialise");
	umask(077);   /* the database and backups hold secrets and mail */
	if (mkdir_p(cfg.data_dir, 0700) == -1)
		return submitctl_fail("%s", strerror(errno));
	db_path = path_join(cfg.data_dir, STORE_DB_NAME);
	db = store_open(db_path, err, sizeof(err));
	free(db_path);
	if (db == NULL)
		return submitctl_fail("%s", err);
	if (strcmp(argv[0], "user") == 0)
		rc = submitctl_user(db, &cfg, argc - 1, argv + 1);
	else if (strcmp(argv[0], "key") == 0)
		rc = submitctl_key(db, argc - 1, argv + 1);
	else if (strcmp(argv[0], "token") == 0)
		rc = submitctl_token(db, argc - 1, argv + 1);
	else if (strcmp(argv[0], "message") == 0)
		rc = submitctl_message(db, &cfg, argc - 1, argv + 1);
	else if (strcmp(argv[0], "service") == 0)
		rc = submitctl_service(db, argc - 1, argv + 1);
	else if (strcmp(argv[0], "queue") == 0)
		rc = submitctl_queue(db, argc - 1, argv + 1);
	else if (strcmp(argv[0], "sent") == 0)
		rc = submitctl_sent(db, argc - 1, argv + 1);
	else if (strcmp(argv[0], "dkim") == 0)
		rc = submitctl_dkim(db, argc - 1, argv + 1);
	else if (argc == 2 && strcmp(argv[0], "backup") == 0)
		rc = submitctl_backup(db, argv[1]);
	else {
		submitctl_usage(stderr);
		rc = 2;
	}
	return rc;
}
