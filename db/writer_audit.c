/*
 * writer_audit.c: the API's audit rows (docs/api.md), queued by any API
 * thread with writer_audit and written by the writer thread after each
 * batch of messages, all waiting rows in one transaction.
 */
#include "db/writer_internal.h"

#include <stdlib.h>

#include "server/base/log.h"
#include "server/base/util.h"

void
writer_audit(struct writer *w, const char *action, const char *result, const char *service,
    const char *token_id, const char *client_address)
{
	struct audit_entry *a = xcalloc(1, sizeof(*a));

	store_time(now_ms(), a->at);
	a->action = xstrdup(action);
	a->result = xstrdup(result);
	a->service = service ? xstrdup(service) : NULL;
	a->token_id = token_id ? xstrdup(token_id) : NULL;
	a->client = xstrdup(client_address);
	workq_push(&w->audits, a);
}

static void
audit_free(struct audit_entry *a)
{
	free(a->action);
	free(a->result);
	free(a->service);
	free(a->token_id);
	free(a->client);
	free(a);
}

static void
bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, i);
}

/* Audit rows are not worth a 250 to anyone: one transaction for all that
 * are waiting, after the messages. A commit that fails for a reason that
 * passes (a lock, a full disk, an I/O error) keeps the rows for the next
 * pass, up to AUDIT_KEEP_MAX, so that an audit trail has no hole for a
 * lock; on the last pass (stopping) they are dropped, and logged. */
void
writer_insert_audits(struct writer *w, struct audit_entry *list, bool last_try)
{
	sqlite3_stmt *st = w->st[ST_AUDIT];
	struct audit_entry *a;
	char why[512];
	int rc = writer_begin(w, "audit"), n = 0, primary;

	for (a = list; a; a = a->next)
		n++;
	for (a = list; a && rc == SQLITE_OK; a = a->next) {
		sqlite3_bind_text(st, 1, a->at, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, a->action, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, a->result, -1, SQLITE_STATIC);
		bind_text_or_null(st, 4, a->service);
		bind_text_or_null(st, 5, a->token_id);
		sqlite3_bind_text(st, 6, a->client, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
		sqlite3_reset(st);
	}
	if (rc == SQLITE_OK)
		rc = writer_tx(w, ST_COMMIT);
	if (rc == SQLITE_OK) {
		if (w->audit_deferred)
			log_info("event=audit_write_resumed rows=%d", n);
		w->audit_deferred = false;
	} else {
		writer_db_error(w, why, sizeof(why));
		writer_tx(w, ST_ROLLBACK);
		primary = rc & 0xff;
		if (!last_try && (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_FULL ||
		    primary == SQLITE_IOERR || primary == SQLITE_READONLY)) {
			if (!w->audit_deferred)
				log_err("event=audit_write_deferred rows=%d %s note=retrying", n, why);
			if (n > AUDIT_KEEP_MAX)
				log_err("event=audit_write_failed rows=%d note=too_many_waiting keep=%d",
				    n - AUDIT_KEEP_MAX, AUDIT_KEEP_MAX);
			for (; n > AUDIT_KEEP_MAX; n--) {   /* the oldest go */
				a = list;
				list = a->next;
				audit_free(a);
			}
			w->a_retry = list;
			w->audit_deferred = true;
			return;
		}
		log_err("event=audit_write_failed rows=%d %s", n, why);
		w->audit_deferred = false;
	}
	while ((a = list) != NULL) {
		list = a->next;
		audit_free(a);
	}
}

/* The rows kept from a failed commit are older: they go first. */
struct audit_entry *
writer_audits_take_locked(struct writer *w)
{
	struct audit_entry *fresh = workq_take_all_locked(&w->audits), *list = w->a_retry, *tail;

	if (list == NULL)
		return fresh;
	for (tail = list; tail->next; tail = tail->next)
		;
	tail->next = fresh;
	w->a_retry = NULL;
	return list;
}
