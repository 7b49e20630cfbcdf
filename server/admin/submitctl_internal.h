/*
 * submitctl_internal.h: what the files of submitctl share. submitctl.c
 * reads the options and the configuration, opens the database and hands
 * each command group its arguments (after the group's name); the groups
 * are submitctl_users.c (users, API services), submitctl_tokens.c (signing
 * keys, tokens), submitctl_mail.c (messages, the relay queue, backup) and
 * submitctl_dkim.c (DKIM keys).
 * A command returns the exit status: 0, 1 on failure, 2 on a usage error.
 */
#ifndef SUBMITD_SUBMITCTL_INTERNAL_H
#define SUBMITD_SUBMITCTL_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

#include <sqlite3.h>

/* The usage text, to f. */
void submitctl_usage(FILE *f);
/* "submitctl: " fmt (with one %s for arg) on stderr; returns 1. */
int submitctl_fail(const char *fmt, const char *arg);
/* A token argument, or with "-" one line of stdin. 0, or 1 (reported). */
int submitctl_read_token(const char *arg, char *buf, size_t buflen);

struct config;
int submitctl_user(sqlite3 *db, const struct config *cfg, int argc, char **argv);
int submitctl_service(sqlite3 *db, int argc, char **argv);
int submitctl_key(sqlite3 *db, int argc, char **argv);
int submitctl_token(sqlite3 *db, int argc, char **argv);
int submitctl_message(sqlite3 *db, const struct config *cfg, int argc, char **argv);
int submitctl_queue(sqlite3 *db, int argc, char **argv);
int submitctl_sent(sqlite3 *db, int argc, char **argv);
int submitctl_backup(sqlite3 *db, const char *path);
int submitctl_dkim(sqlite3 *db, int argc, char **argv);
/* submitctl_limits.c: user list|disable|enable|limit, queue release|drop
 * --login; -1 when the arguments are none of those. */
int submitctl_user_limits(sqlite3 *db, const struct config *cfg, int argc, char **argv);
int submitctl_queue_limits(sqlite3 *db, int argc, char **argv);

#endif
