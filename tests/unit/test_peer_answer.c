/*
 * test_peer_answer.c: the reader of other nodes' answers
 * (server/protocol/peer_answer.h): a table of /v1/keys answers, each
 * accepted with the keys of the named node only or refused as a whole,
 * and the "result" of verify answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "server/protocol/peer_answer.h"

#define HEX "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
#define KEY(kid, node, state) "{\"key_id\":\"" kid "\",\"public_key\":\"k4.public.x\",\"public_key_hex\":\"" HEX \
	"\",\"state\":\"" state "\",\"created_at\":\"2026-01-02T03:04:05Z\",\"retired_at\":null,\"node\":\"" node "\"}"

struct keys_case {
	const char *text;
	int rc;
	size_t n;
};

static void
test_keys(void **state)
{
	static const struct keys_case cases[] = {
		{ "{\"keys\":[]}", 0, 0 },
		{ "{\"keys\":[" KEY("k4.pid.a", "n2", "active") "]}", 0, 1 },
		{ "{\"keys\":[" KEY("k4.pid.a", "n2", "active") "," KEY("k4.pid.b", "n2", "retired") "]}", 0, 2 },
		/* another node's keys are skipped, not taken */
		{ "{\"keys\":[" KEY("k4.pid.a", "n3", "active") "," KEY("k4.pid.b", "n2", "retired") "]}", 0, 1 },
		{ "{\"keys\":[" KEY("k4.pid.a", "n2", "expired") "]}", -1, 0 },
		{ "{\"keys\":[{\"key_id\":\"k\",\"public_key_hex\":\"00\",\"state\":\"active\",\"node\":\"n2\"}]}", -1, 0 },
		{ "{\"keys\":[{\"key_id\":\"k\",\"public_key_hex\":\"" HEX "\",\"state\":\"active\"}]}", -1, 0 },
		{ "{\"keys\":[{\"key_id\":\"k\",\"public_key_hex\":\"" HEX "\",\"state\":\"active\",\"node\":\"n2\","
		  "\"created_at\":5}]}", -1, 0 },
		{ "{\"keys\":[{\"key_id\":\"k\",\"public_key_hex\":\"zz" HEX "\",\"state\":\"active\",\"node\":\"n2\"}]}", -1, 0 },
		{ "{\"keys\":[{\"key_id\":\"k\\u0000x\",\"public_key_hex\":\"" HEX "\",\"state\":\"active\",\"node\":\"n2\"}]}", -1, 0 },
		{ "{\"keys\":[{\"key_id\":\"k x\",\"public_key_hex\":\"" HEX "\",\"state\":\"active\",\"node\":\"n2\"}]}", -1, 0 },
		{ "{\"keys\":[1]}", -1, 0 },
		{ "{\"keys\":{}}", -1, 0 },
		{ "[]", -1, 0 },
		{ "{\"keys\":[]", -1, 0 },
		{ "{\"keys\":[],\"keys\":[]}", -1, 0 },
		{ "", -1, 0 },
	};
	struct peer_answer_key out[4];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = 99;
		int rc = peer_answer_keys(cases[i].text, strlen(cases[i].text), "n2", out, 4, &n);
		if (rc != cases[i].rc)
			fail_msg("keys case %zu: rc %d, expected %d", i, rc, cases[i].rc);
		assert_int_equal(n, cases[i].rc == 0 ? cases[i].n : 0);
	}
	/* the fields of one key */
	{
		const char *t = "{\"keys\":[" KEY("k4.pid.b", "n2", "retired") "]}";
		size_t n;
		assert_int_equal(peer_answer_keys(t, strlen(t), "n2", out, 4, &n), 0);
		assert_string_equal(out[0].kid, "k4.pid.b");
		assert_false(out[0].active);
		assert_int_equal(out[0].pk[0], 0x00);
		assert_int_equal(out[0].pk[1], 0x11);
		assert_int_equal(out[0].pk[31], 0xff);
		assert_string_equal(out[0].created_at, "2026-01-02T03:04:05Z");
		assert_string_equal(out[0].retired_at, "");
	}
	/* more keys than room: refused, not cut */
	{
		const char *t = "{\"keys\":[" KEY("a", "n2", "active") "," KEY("b", "n2", "active") ","
		    KEY("c", "n2", "active") "]}";
		size_t n;
		assert_int_equal(peer_answer_keys(t, strlen(t), "n2", out, 2, &n), -1);
		assert_int_equal(peer_answer_keys(t, strlen(t), "n2", out, 3, &n), 0);
		assert_int_equal(n, 3);
		assert_int_equal(peer_answer_keys(t, PEER_ANSWER_MAX + 1, "n2", out, 3, &n), -1);
		assert_int_equal(peer_answer_keys(NULL, 0, "n2", out, 3, &n), -1);
	}
}

static void
test_result(void **state)
{
	static const struct { const char *text; int rc; const char *result; } cases[] = {
		{ "{\"result\":\"valid\",\"token_id\":\"x\"}", 0, "valid" },
		{ "{\"result\":\"revoked\",\"error\":\"the token was revoked\"}", 0, "revoked" },
		{ "{\"result\":\"Valid\"}", -1, "" },
		{ "{\"result\":\"\"}", -1, "" },
		{ "{\"result\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", -1, "" },     /* 32 */
		{ "{\"result\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", 0, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
		{ "{\"result\":5}", -1, "" },
		{ "{\"error\":\"x\"}", -1, "" },
		{ "[\"result\"]", -1, "" },
		{ "<html>", -1, "" },
	};
	char r[PEER_RESULT_MAX + 1];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = peer_answer_result(cases[i].text, strlen(cases[i].text), r);
		if (rc != cases[i].rc)
			fail_msg("result case %zu: rc %d", i, rc);
		assert_string_equal(r, cases[i].result);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_result),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
