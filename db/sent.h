/*
 * sent.h: the statements of the Sent filing (docs/dovecot.md, the tables
 * sent_jobs and sent_settings in docs/schema.md). A job is written with
 * its message by the writer (writer_store.c, one INSERT that also reads
 * the login's setting); the filer in server/sent/ finds due jobs, marks a
 * job before its APPEND may reach the IMAP server, and records the result,
 * each through a writer job, so these functions take the connection they
 * run on and never start a transaction. submitctl reads and changes the
 * settings and shows a message's filing state.
 */
#ifndef SUBMITD_DB_SENT_H
#define SUBMITD_DB_SENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

/* The job's INSERT, for the writer to prepare: ?1 message_id, ?2 login,
 * ?3 next_attempt_at (the acceptance time), ?4 sent.default (0 or 1). It
 * inserts nothing when the login's setting, or else ?4, says off. */
extern const char sent_job_insert_sql[];

/* The head of a stored body read for a retry's search: enough for the
 * header of any ordinary message. */
#define SENT_HEAD_MAX (64 * 1024)

/* One due job, with what filing it needs from its message. */
struct sent_task {
	int64_t message_id;
	char public_id[32];
	char *login;
	int64_t received_s;           /* acceptance time, unix seconds */
	int64_t size;
	char sha256[65];
	bool has_body;                /* false: retention purged it */
	int attempts;
	bool append_sent;             /* an APPEND may have reached the server */
	char *mailbox;                /* where it went, with append_sent */
	char *head;                   /* with append_sent: the first octets of the body */
	size_t head_len;
	struct sent_task *next;
};

void sent_task_free(struct sent_task **tp);

/*
 * Due jobs (pending or filing, next attempt in the past), oldest first:
 * at most limit rows are looked at, ids in skip[] are passed over, want
 * jobs at most come back linked by next in *list_r. *pending_r is the
 * number of jobs not yet filed or failed (due or not). SQLITE_OK or the
 * error code with err set.
 */
int sent_scan(sqlite3 *db, int64_t now_ms, const int64_t *skip, size_t nskip, size_t limit, size_t want,
    struct sent_task **list_r, int64_t *pending_r, char *err, size_t errlen);

/* Before the APPEND: state filing, append_sent set, the mailbox named. */
int sent_mark_append(sqlite3 *db, int64_t message_id, const char *mailbox, char *err, size_t errlen);

/* Filed (appended, or found already there on a retry). */
int sent_record_filed(sqlite3 *db, int64_t message_id, const char *mailbox, int64_t uidvalidity, int64_t uid,
    int64_t now_ms, char *err, size_t errlen);

/*
 * A failed try: one more attempt, the error kept, due again at
 * now + retry_s; a job whose message was accepted lifetime seconds or more
 * before now (or with fatal) fails instead, and *failed_r says so.
 */
int sent_record_retry(sqlite3 *db, int64_t message_id, const char *error, int64_t now_ms, int64_t retry_s,
    int64_t lifetime, bool fatal, bool *failed_r, char *err, size_t errlen);

/* --- submitctl ------------------------------------------------------ */

/* enabled: 1 on, 0 off, -1 back to sent.default (the row goes). */
int sent_setting_set(sqlite3 *db, const char *login, int enabled, int64_t now_ms, char *err, size_t errlen);

struct sent_setting {
	const char *login, *updated_at;
	bool enabled;
};
/* By login; the number of rows or -1. */
int sent_settings_list(sqlite3 *db, void (*fn)(const struct sent_setting *s, void *arg), void *arg,
    char *err, size_t errlen);

struct sent_state {
	const char *state;
	int64_t attempts;
	const char *next_attempt_at, *last_error;   /* NULL: none */
	bool append_sent;
	const char *mailbox;                         /* NULL: not yet */
	int64_t uidvalidity, uid;                    /* 0: not yet */
	const char *filed_at;                        /* NULL: not yet */
};
/* The filing job of one message: 1 (fn called), 0 without one, -1. */
int sent_state_get(sqlite3 *db, const char *public_id, void (*fn)(const struct sent_state *s, void *arg),
    void *arg, char *err, size_t errlen);

#endif
