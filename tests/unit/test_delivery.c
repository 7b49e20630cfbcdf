/*
 * test_delivery.c: db/delivery.h. The state table (every state, "not
 * relayed" without a next hop, a state this build does not know), the
 * time format, the JSON answer's fields per state, and the query on an
 * in-memory database: a sender token covers every recipient, a recipient
 * token its own; "bounce sent" is true for a failure the relay recorded
 * with its bounce (queue_record and queue_bounce_insert in one go, as the
 * relay does) and false for an administrator's drop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "db/admin.h"
#include "db/delivery.h"
#include "db/queue.h"
#include "db/store.h"
#include "server/base/util.h"

static void
test_state_table(void **state)
{
	static const struct {
		const char *db;
		bool relay;
		const char *name, *at_key;
		bool reply, next, bounce;
	} cases[] = {
		{ "queued", true, "queued", NULL, false, false, false },
		{ "queued", false, "not_relayed", NULL, false, false, false },
		{ "deferred", true, "deferred", "last_attempt_at", true, true, false },
		{ "deferred", false, "deferred", "last_attempt_at", true, true, false },
		{ "delivered", true, "delivered", "delivered_at", true, false, false },
		{ "delivered", false, "delivered", "delivered_at", true, false, false },
		{ "failed", true, "failed", "failed_at", true, false, true },
		{ "failed", false, "failed", "failed_at", true, false, true },
		/* unknown: its own name, with what the row has */
		{ "held", true, "held", "updated_at", true, true, false },
		{ "", false, "", "updated_at", true, true, false },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct delivery_state unknown;
		const struct delivery_state *s = delivery_state_of(cases[i].db, cases[i].relay, &unknown);
		assert_non_null(s);
		assert_string_equal(s->name, cases[i].name);
		assert_string_equal(s->db_name, cases[i].db);
		assert_non_null(s->text);
		if (cases[i].at_key)
			assert_string_equal(s->at_key, cases[i].at_key);
		else
			assert_null(s->at_key);
		assert_int_equal(s->reply, cases[i].reply);
		assert_int_equal(s->next_attempt, cases[i].next);
		assert_int_equal(s->bounce, cases[i].bounce);
	}
}

static void
test_time(void **state)
{
	char t[32];

	delivery_time_rfc3339("2026-11-29 03:24:27.955", t);
	assert_string_equal(t, "2026-11-29T03:24:27.955Z");
	delivery_time_rfc3339("2026-11-29", t);
	assert_string_equal(t, "2026-11-29T00:00:00.000Z");
	delivery_time_rfc3339("", t);
	assert_string_equal(t, "T00:00:00.000Z");
}

static struct delivery_rcpt
rcpt(const char *address, const char *state, int attempts, const char *next, const char *reply, bool bounce)
{
	return (struct delivery_rcpt){ (char *)address, (char *)state, attempts, (char *)next, (char *)reply,
	    (char *)"2026-11-29 03:25:00.000", bounce };
}

static void
test_json(void **state)
{
	struct delivery_rcpt r[] = {
		rcpt("a@x", "queued", 0, NULL, NULL, false),
		rcpt("b@x", "deferred", 1, "2026-11-29 03:30:00.000", "451 later", false),
		rcpt("c@x", "delivered", 2, NULL, "250 ok", false),
		rcpt("d@x", "failed", 1, NULL, "550 no", true),
		rcpt("e@x", "held", 0, NULL, NULL, false),
		rcpt("f@x", "deferred", 3, NULL, "451 again", false),   /* due now: no time */
	};
	struct delivery_status s = { .token_id = "jti", .role = "sender", .address = (char *)"s@x",
	    .public_id = "pub", .received_at = "2026-11-29 03:24:27.955", .size = 146, .sha256 = "ab",
	    .rcpts = r, .nrcpt = ARRAY_SIZE(r) };
	const char *want[] = {
		"{\"address\":\"a@x\",\"state\":\"not_relayed\",\"attempts\":0}",
		"{\"address\":\"b@x\",\"state\":\"deferred\",\"attempts\":1,\"reply\":\"451 later\","
		"\"last_attempt_at\":\"2026-11-29T03:25:00.000Z\",\"next_attempt_at\":\"2026-11-29T03:30:00.000Z\"}",
		"{\"address\":\"c@x\",\"state\":\"delivered\",\"attempts\":2,\"reply\":\"250 ok\","
		"\"delivered_at\":\"2026-11-29T03:25:00.000Z\"}",
		"{\"address\":\"d@x\",\"state\":\"failed\",\"attempts\":1,\"reply\":\"550 no\","
		"\"failed_at\":\"2026-11-29T03:25:00.000Z\",\"bounce_sent\":true}",
		"{\"address\":\"e@x\",\"state\":\"held\",\"attempts\":0,\"updated_at\":\"2026-11-29T03:25:00.000Z\"}",
		"{\"address\":\"f@x\",\"state\":\"deferred\",\"attempts\":3,\"reply\":\"451 again\","
		"\"last_attempt_at\":\"2026-11-29T03:25:00.000Z\"}",
	};
	json_t *j = delivery_status_json(&s, false), *rs;
	char *text;

	assert_string_equal(json_string_value(json_object_get(j, "result")), "valid");
	assert_string_equal(json_string_value(json_object_get(j, "role")), "sender");
	text = json_dumps(json_object_get(j, "message"), JSON_COMPACT | JSON_PRESERVE_ORDER);
	assert_string_equal(text, "{\"id\":\"pub\",\"received_at\":\"2026-11-29T03:24:27.955Z\",\"size\":146,"
	    "\"sha256\":\"ab\"}");
	free(text);
	rs = json_object_get(j, "recipients");
	assert_int_equal(json_array_size(rs), ARRAY_SIZE(want));
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		text = json_dumps(json_array_get(rs, i), JSON_COMPACT | JSON_PRESERVE_ORDER);
		assert_string_equal(text, want[i]);
		free(text);
	}
	json_decref(j);
	/* with a relay, queued is queued */
	j = delivery_status_json(&s, true);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "recipients"), 0),
	    "state")), "queued");
	json_decref(j);
}

/* --- the query ------------------------------------------------------ */

static int
exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int64_t
no_backoff(int attempts, void *arg)
{
	return 60;
}

static void
test_query(void **state)
{
	sqlite3 *db;
	char err[256], pid[PUBLIC_ID_LEN + 1];
	struct delivery_status s;
	struct queue_task *t;

	assert_true(sodium_init() >= 0);
	assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
	assert_int_equal(exec(db, "PRAGMA foreign_keys = ON"), SQLITE_OK);
	assert_int_equal(store_migrate(db, err, sizeof(err)), 0);
	assert_int_equal(store_key_ensure(db, 1000, err, sizeof(err)), 1);
	assert_int_equal(exec(db, "INSERT INTO messages (public_id, received_at, client_address, helo, envelope_from, "
	    "body_type, smtputf8, size, sha256) VALUES ('m1', '2026-11-29 03:24:27.955', '::1', 'h', 's@x', '7BIT', 0, "
	    "5, '0000000000000000000000000000000000000000000000000000000000000000');"
	    "INSERT INTO recipients (message_id, position, address, updated_at) VALUES "
	    "  (1, 1, 'a@x', '2026-11-29 03:24:27.955'), (1, 2, 'b@x', '2026-11-29 03:24:27.955'), "
	    "  (1, 3, 'c@x', '2026-11-29 03:24:27.955');"
	    "INSERT INTO tokens (token_id, message_id, recipient_id, role, address, key_id, issued_at, expires_at) "
	    "  SELECT 'ts', 1, NULL, 'sender', 's@x', key_id, 'a', 'b' FROM signing_keys;"
	    "INSERT INTO tokens (token_id, message_id, recipient_id, role, address, key_id, issued_at, expires_at) "
	    "  SELECT 'tb', 1, 2, 'recipient', 'b@x', key_id, 'a', 'b' FROM signing_keys;"), SQLITE_OK);

	assert_int_equal(delivery_status_get(db, "nope", &s, err, sizeof(err)), 0);
	assert_int_equal(delivery_status_get(db, "ts", &s, err, sizeof(err)), 1);
	assert_string_equal(s.public_id, "m1");
	assert_string_equal(s.role, "sender");
	assert_int_equal(s.size, 5);
	assert_int_equal(s.nrcpt, 3);
	assert_string_equal(s.rcpts[0].address, "a@x");
	assert_string_equal(s.rcpts[2].address, "c@x");
	assert_string_equal(s.rcpts[1].state, "queued");
	assert_null(s.rcpts[1].last_reply);
	delivery_status_free(&s);
	assert_int_equal(delivery_status_get(db, "tb", &s, err, sizeof(err)), 1);
	assert_int_equal(s.nrcpt, 1);
	assert_string_equal(s.rcpts[0].address, "b@x");
	assert_string_equal(s.role, "recipient");
	assert_string_equal(s.address, "b@x");
	delivery_status_free(&s);

	/* one try: a delivered, b failed with its bounce (as the relay
	 * records it: one writer job, one time), c deferred */
	t = xcalloc(1, sizeof(*t));
	t->message_id = 1;
	snprintf(t->received_at, sizeof(t->received_at), "2026-11-29 03:24:27.955");
	t->nrcpt = 3;
	t->rcpts = xcalloc(3, sizeof(*t->rcpts));
	for (int i = 0; i < 3; i++) {
		t->rcpts[i].id = i + 1;
		t->rcpts[i].address = xstrdup(i == 0 ? "a@x" : i == 1 ? "b@x" : "c@x");
	}
	t->rcpts[0].result = QUEUE_DELIVERED;
	t->rcpts[0].reply = xstrdup("250 ok");
	t->rcpts[1].result = QUEUE_FAILED;
	t->rcpts[1].reply = xstrdup("550 no");
	t->rcpts[2].result = QUEUE_DEFERRED;
	t->rcpts[2].reply = xstrdup("451 later");
	int64_t now = store_time_parse("2026-11-29 03:25:00.000");
	assert_int_equal(queue_record(db, t, now, 86400, no_backoff, NULL), SQLITE_OK);
	assert_int_equal(queue_bounce_insert(db, "s@x", "h", now, "x", 1, pid), SQLITE_OK);
	queue_task_free(&t);

	assert_int_equal(delivery_status_get(db, "ts", &s, err, sizeof(err)), 1);
	assert_string_equal(s.rcpts[0].state, "delivered");
	assert_string_equal(s.rcpts[0].last_reply, "250 ok");
	assert_false(s.rcpts[0].bounce_sent);
	assert_string_equal(s.rcpts[1].state, "failed");
	assert_string_equal(s.rcpts[1].last_reply, "550 no");
	assert_true(s.rcpts[1].bounce_sent);
	assert_string_equal(s.rcpts[1].updated_at, "2026-11-29 03:25:00.000");
	assert_string_equal(s.rcpts[2].state, "deferred");
	assert_string_equal(s.rcpts[2].next_attempt_at, "2026-11-29 03:26:00.000");
	assert_int_equal(s.rcpts[2].attempts, 1);
	delivery_status_free(&s);

	/* dropped by the administrator: failed, no bounce */
	assert_int_equal(admin_queue_drop(db, "m1", now * 1000 + 1234, err, sizeof(err)), 1);
	assert_int_equal(delivery_status_get(db, "ts", &s, err, sizeof(err)), 1);
	assert_string_equal(s.rcpts[2].state, "failed");
	assert_false(s.rcpts[2].bounce_sent);
	assert_true(s.rcpts[1].bounce_sent);
	delivery_status_free(&s);

	/* a message from <> never has a bounce, even at the same time */
	assert_int_equal(exec(db, "UPDATE messages SET envelope_from = '' WHERE public_id = 'm1'"), SQLITE_OK);
	assert_int_equal(delivery_status_get(db, "ts", &s, err, sizeof(err)), 1);
	assert_false(s.rcpts[1].bounce_sent);
	delivery_status_free(&s);
	sqlite3_close(db);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_table),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_query),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
