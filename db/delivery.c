/*
 * delivery.c: see delivery.h. The query, the state table and the JSON
 * answer of a delivery status. The JSON lives in db/ rather than in the
 * API because submitctl prints the same answer and may not include the
 * API (tests/check_layers.py); jansson is already the tokens' library.
 *
 * Whether a bounce was sent is not a column: the relay queues the bounce
 * in the transaction that records the failure, with the bounce's
 * received_at equal to the failed recipients' updated_at (queue.h,
 * queue_record and queue_bounce_insert), from <> to the message's sender.
 * The query looks for that row. A failure without a bounce (an
 * administrator's drop, a message from <>) has none.
 */
#include "db/delivery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/base/util.h"

/* Which configurations a row applies to. */
enum { ANY_RELAY, WITH_RELAY, WITHOUT_RELAY };

/*
 * One row per state; the first row whose db_name and relay condition fit
 * wins. A new state of recipients.state (say 'held') is one more row.
 * Without a next hop nothing leaves 'queued', so there a queued recipient
 * is "not_relayed": it will not move until a relay is configured. The
 * query reports the two holds (docs/schema.md, "Where a recipient
 * stands") as states of their own: held_no_next_hop (accepted without a
 * next hop, until `submitctl queue release`), held_login_disabled.
 */
static const struct {
	int relay;
	struct delivery_state s;
} states[] = {
	{ WITHOUT_RELAY, { "queued", "not_relayed", "not relayed: no next hop is configured", NULL, false, false, false } },
	{ WITHOUT_RELAY, { "held_no_next_hop", "not_relayed", "not relayed: no next hop is configured", NULL, false, false,
	    false } },
	{ ANY_RELAY, { "held_no_next_hop", "held", "held: accepted while no next hop was configured, until released",
	    NULL, false, false, false } },
	{ ANY_RELAY, { "held_login_disabled", "held", "held: the sender's login is disabled", NULL, true, false,
	    false } },
	{ ANY_RELAY, { "queued", "queued", "waiting for its first try", NULL, false, false, false } },
	{ ANY_RELAY, { "deferred", "deferred", "deferred, will be tried again", "last_attempt_at", true, true, false } },
	{ ANY_RELAY, { "delivered", "delivered", "delivered to the next hop", "delivered_at", true, false, false } },
	{ ANY_RELAY, { "failed", "failed", "failed, will not be tried again", "failed_at", true, false, true } },
};

const struct delivery_state *
delivery_state_of(const char *db_state, bool relay_configured, struct delivery_state *unknown)
{
	for (size_t i = 0; i < ARRAY_SIZE(states); i++) {
		if (strcmp(states[i].s.db_name, db_state) != 0)
			continue;
		if ((states[i].relay == WITH_RELAY && !relay_configured) ||
		    (states[i].relay == WITHOUT_RELAY && relay_configured))
			continue;
		return &states[i].s;
	}
	/* A state this build does not know: say what the database says,
	 * rather than guess or fail. */
	*unknown = (struct delivery_state){ db_state, db_state, db_state, "updated_at", true, true, false };
	return unknown;
}

void
delivery_time_rfc3339(const char *db, char out[32])
{
	snprintf(out, 32, "%.10sT%.12sZ", db, strlen(db) > 11 ? db + 11 : "00:00:00.000");
}

void
delivery_status_free(struct delivery_status *s)
{
	for (size_t i = 0; i < s->nrcpt; i++) {
		free(s->rcpts[i].address);
		free(s->rcpts[i].state);
		free(s->rcpts[i].next_attempt_at);
		free(s->rcpts[i].last_reply);
		free(s->rcpts[i].updated_at);
	}
	free(s->rcpts);
	free(s->address);
	memset(s, 0, sizeof(*s));
}

static char *
col_dup_or_null(sqlite3_stmt *st, int i)
{
	const unsigned char *v = sqlite3_column_text(st, i);
	return v ? xstrdup((const char *)v) : NULL;
}

int
delivery_status_get(sqlite3 *db, const char *token_id, struct delivery_status *s, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int rc, found = 0;

	memset(s, 0, sizeof(*s));
	/* The recipients a token covers: all for the sender's token (its
	 * recipient_id is NULL), else its own. */
	if (sqlite3_prepare_v2(db,
	    "SELECT t.role, t.address, m.public_id, m.received_at, m.size, m.sha256, "
	    "r.address, CASE WHEN r.state NOT IN ('queued', 'deferred') THEN r.state "
	    "  WHEN r.unrouted = 1 THEN 'held_no_next_hop' "
	    "  WHEN EXISTS (SELECT 1 FROM login_policies p WHERE p.login = m.auth_login AND p.disabled = 1) "
	    "  THEN 'held_login_disabled' ELSE r.state END, "
	    "r.attempts, r.next_attempt_at, r.last_reply, r.updated_at, "
	    "r.state = 'failed' AND m.envelope_from <> '' AND EXISTS (SELECT 1 FROM messages b "
	    "  JOIN recipients br ON br.message_id = b.message_id WHERE b.envelope_from = '' "
	    "  AND b.received_at = r.updated_at AND br.address = m.envelope_from) "
	    "FROM tokens t JOIN messages m ON m.message_id = t.message_id "
	    "LEFT JOIN recipients r ON r.message_id = t.message_id "
	    "  AND (t.recipient_id IS NULL OR r.recipient_id = t.recipient_id) "
	    "WHERE t.token_id = ?1 ORDER BY r.position", -1, &st, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		return -1;
	}
	sqlite3_bind_text(st, 1, token_id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (!found) {
			snprintf(s->token_id, sizeof(s->token_id), "%s", token_id);
			snprintf(s->role, sizeof(s->role), "%s", sqlite3_column_text(st, 0));
			s->address = col_dup_or_null(st, 1);
			snprintf(s->public_id, sizeof(s->public_id), "%s", sqlite3_column_text(st, 2));
			snprintf(s->received_at, sizeof(s->received_at), "%s", sqlite3_column_text(st, 3));
			s->size = sqlite3_column_int64(st, 4);
			snprintf(s->sha256, sizeof(s->sha256), "%s", sqlite3_column_text(st, 5));
			found = 1;
		}
		if (sqlite3_column_type(st, 6) == SQLITE_NULL)
			continue;           /* the LEFT JOIN found no recipient */
		s->rcpts = xrealloc(s->rcpts, (s->nrcpt + 1) * sizeof(*s->rcpts));
		struct delivery_rcpt *r = &s->rcpts[s->nrcpt++];
		r->address = col_dup_or_null(st, 6);
		r->state = col_dup_or_null(st, 7);
		r->attempts = sqlite3_column_int(st, 8);
		r->next_attempt_at = col_dup_or_null(st, 9);
		r->last_reply = col_dup_or_null(st, 10);
		r->updated_at = col_dup_or_null(st, 11);
		r->bounce_sent = sqlite3_column_int(st, 12) != 0;
		if (r->state == NULL)
			r->state = xstrdup("");
	}
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		delivery_status_free(s);
		return -1;
	}
	sqlite3_finalize(st);
	return found;
}

static json_t *
rcpt_json(const struct delivery_rcpt *r, bool relay_configured)
{
	struct delivery_state unknown;
	const struct delivery_state *ds = delivery_state_of(r->state, relay_configured, &unknown);
	json_t *j = json_pack("{s:s, s:s, s:i}", "address", r->address ? r->address : "", "state", ds->name,
	    "attempts", r->attempts);
	char t[32];

	if (ds->reply && r->last_reply)
		json_object_set_new(j, "reply", json_string(r->last_reply));
	if (ds->at_key && r->updated_at) {
		delivery_time_rfc3339(r->updated_at, t);
		json_object_set_new(j, ds->at_key, json_string(t));
	}
	if (ds->next_attempt && r->next_attempt_at) {
		delivery_time_rfc3339(r->next_attempt_at, t);
		json_object_set_new(j, "next_attempt_at", json_string(t));
	}
	if (ds->bounce)
		json_object_set_new(j, "bounce_sent", json_boolean(r->bounce_sent));
	return j;
}

json_t *
delivery_status_json(const struct delivery_status *s, bool relay_configured)
{
	json_t *rcpts = json_array();
	char received[32];

	for (size_t i = 0; i < s->nrcpt; i++)
		json_array_append_new(rcpts, rcpt_json(&s->rcpts[i], relay_configured));
	delivery_time_rfc3339(s->received_at, received);
	return json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:I, s:s}, s:o}", "result", "valid",
	    "token_id", s->token_id, "role", s->role, "address", s->address ? s->address : "",
	    "message", "id", s->public_id, "received_at", received, "size", (json_int_t)s->size,
	    "sha256", s->sha256, "recipients", rcpts);
}
