/*
 * test_submit_token_answer.c: the pure part of the Dovecot plugin
 * (imap/submit_token_answer.h), as tables: verify answers and refusals as
 * submitd writes them, hostile JSON (truncated at every length, trailing
 * bytes, duplicates, deep nesting, long strings, bad escapes, bad numbers,
 * oversized), the mapping of HTTP status and result name to a refusal
 * class, the check of a 200 answer, token syntax and received_at dates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/submit_token_answer.h"

#define VALID \
	"{\"result\":\"valid\",\"token_id\":\"BF4hABskeArBLOr1\",\"role\":\"sender\"," \
	"\"address\":\"sender@example.org\",\"issuer\":\"mx.example.org\"," \
	"\"key_id\":\"k4.pid.7dz86FeQ7rYXSzpvDB2y9MrfckWdFsexbTGzhc1edwOd\"," \
	"\"expires_at\":\"2026-12-06T03:24:27Z\",\"message\":{\"id\":\"blZYim8k4suf_sgp\"," \
	"\"received_at\":\"2026-11-29T03:24:27.955Z\",\"envelope_from\":\"sender@example.org\"," \
	"\"size\":146,\"sha256\":\"d230527fd492c9a668bf87516b86e68a2466e148309042080e7ce73f8642b0a9\"}}\n"

static int
parse(const char *s, struct submit_token_answer *a)
{
	return submit_token_answer_parse(s, strlen(s), a);
}

static void
test_valid(void **state)
{
	struct submit_token_answer a;

	assert_int_equal(parse(VALID, &a), 0);
	assert_string_equal(a.result, "valid");
	assert_string_equal(a.role, "sender");
	assert_string_equal(a.address, "sender@example.org");
	assert_string_equal(a.message_id, "blZYim8k4suf_sgp");
	assert_string_equal(a.received_at, "2026-11-29T03:24:27.955Z");
	assert_string_equal(a.sha256, "d230527fd492c9a668bf87516b86e68a2466e148309042080e7ce73f8642b0a9");
	assert_true(a.has_size);
	assert_int_equal(a.size, 146);
	assert_int_equal(submit_token_answer_check(&a), SUBMIT_TOKEN_OK);
}

/* Every proper prefix of a valid answer is malformed, and reading it never
 * goes past its end (ASan sees a copy of exactly that length). */
static void
test_every_prefix(void **state)
{
	struct submit_token_answer a;
	size_t n = strlen(VALID) - 1;    /* without the final newline: whole is valid */

	for (size_t i = 0; i < n; i++) {
		char *copy = malloc(i + 1);

		memcpy(copy, VALID, i);
		assert_int_equal(submit_token_answer_parse(copy, i, &a), -1);
		assert_string_equal(a.result, "");
		free(copy);
	}
}

static void
test_table(void **state)
{
	static const struct {
		const char *in;
		int rc;
		const char *result;      /* when rc == 0 */
	} cases[] = {
		{ "{\"result\":\"revoked\",\"error\":\"the token was revoked\"}", 0, "revoked" },
		{ " {\"result\" : \"purged\" , \"error\":\"x\"} \r\n", 0, "purged" },
		{ "{}", 0, "" },
		{ "{\"x\":[1,-2.5e3,true,false,null,{\"a\":[]},\"s\"],\"result\":\"expired\"}", 0, "expired" },
		{ "{\"result\":\"a\\u00e9\\ud83d\\ude00\\n\"}", 0, "a\xc3\xa9\xf0\x9f\x98\x80\n" },
		/* an unknown key too long for the key buffer is skipped */
		{ "{\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\":1,\"result\":\"x\"}", 0, "x" },
		{ "", -1, NULL },
		{ "[]", -1, NULL },
		{ "\"valid\"", -1, NULL },
		{ "null", -1, NULL },
		{ "{\"result\":\"valid\"} x", -1, NULL },
		{ "{\"result\":\"valid\"}{}", -1, NULL },
		{ "{\"result\":\"valid\",}", -1, NULL },
		{ "{\"result\" \"valid\"}", -1, NULL },
		{ "{'result':'valid'}", -1, NULL },
		{ "{\"result\":\"valid\",\"result\":\"revoked\"}", -1, NULL },       /* duplicate */
		{ "{\"message\":{\"size\":1,\"size\":2}}", -1, NULL },
		{ "{\"result\":1}", -1, NULL },                                    /* wrong type */
		{ "{\"message\":\"x\"}", -1, NULL },
		{ "{\"message\":{\"size\":\"1\"}}", -1, NULL },
		{ "{\"message\":{\"size\":-1}}", -1, NULL },
		{ "{\"message\":{\"size\":1.5}}", -1, NULL },
		{ "{\"message\":{\"size\":1e3}}", -1, NULL },
		{ "{\"message\":{\"size\":01}}", -1, NULL },
		{ "{\"message\":{\"size\":99999999999999999999999}}", -1, NULL },
		{ "{\"x\":01}", -1, NULL },
		{ "{\"x\":-}", -1, NULL },
		{ "{\"x\":1.}", -1, NULL },
		{ "{\"x\":tru}", -1, NULL },
		{ "{\"x\":[1,]}", -1, NULL },
		{ "{\"x\":[1 2]}", -1, NULL },
		{ "{\"result\":\"a\\u0000b\"}", -1, NULL },                         /* NUL */
		{ "{\"result\":\"a\\x\"}", -1, NULL },                              /* bad escape */
		{ "{\"result\":\"\\ud83d\"}", -1, NULL },                           /* lone surrogate */
		{ "{\"result\":\"\\ude00\"}", -1, NULL },
		{ "{\"result\":\"\\u12\"}", -1, NULL },
		{ "{\"result\":\"a\nb\"}", -1, NULL },                              /* raw control */
		{ "{\"result\":\"0123456789012345678901234567890123456789\"}", -1, NULL }, /* too long */
		{ "{\"message\":{\"sha256\":\"d230527fd492c9a668bf87516b86e68a2466e148309042080e7ce73f8642b0a90\"}}", -1, NULL },
	};
	struct submit_token_answer a;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = parse(cases[i].in, &a);

		if (rc != cases[i].rc)
			fail_msg("case %zu: %s: rc %d", i, cases[i].in, rc);
		if (rc == 0)
			assert_string_equal(a.result, cases[i].result);
	}
}

static void
test_limits(void **state)
{
	struct submit_token_answer a;
	size_t n = SUBMIT_TOKEN_ANSWER_MAX + 1;
	char *big = malloc(n + 1);
	char deep[2 * (SUBMIT_TOKEN_ANSWER_MAX_DEPTH + 2) + 16];
	size_t k = 0;

	/* a well-formed object one octet over the limit */
	memset(big, ' ', n);
	big[0] = '{';
	big[n - 1] = '}';
	big[n] = '\0';
	assert_int_equal(submit_token_answer_parse(big, n, &a), -1);
	assert_int_equal(submit_token_answer_parse(big + 1, n - 1, &a), -1);   /* not an object */
	big[1] = '{';
	big[n - 1] = ' ';
	assert_int_equal(submit_token_answer_parse(big + 1, n - 2, &a), -1);   /* unterminated */
	free(big);

	/* nesting: the limit is accepted, one more is not */
	for (int extra = 0; extra <= 1; extra++) {
		int levels = SUBMIT_TOKEN_ANSWER_MAX_DEPTH + extra;

		k = (size_t)snprintf(deep, sizeof(deep), "{\"x\":");
		for (int i = 0; i < levels; i++)
			deep[k++] = '[';
		for (int i = 0; i < levels; i++)
			deep[k++] = ']';
		deep[k++] = '}';
		assert_int_equal(submit_token_answer_parse(deep, k, &a), extra ? -1 : 0);
	}
	assert_int_equal(submit_token_answer_parse(NULL, 0, &a), -1);
}

static void
test_refusal_class(void **state)
{
	static const struct {
		unsigned int status;
		const char *result;
		enum submit_token_class c;
		const char *code;
	} cases[] = {
		{ 400, "malformed", SUBMIT_TOKEN_MALFORMED, "XSUBMITTOKEN-MALFORMED" },
		{ 400, "missing_token", SUBMIT_TOKEN_MALFORMED, "XSUBMITTOKEN-MALFORMED" },
		{ 422, "bad_signature", SUBMIT_TOKEN_BADSIGNATURE, "XSUBMITTOKEN-BADSIGNATURE" },
		{ 404, "unknown_key", SUBMIT_TOKEN_UNKNOWNKEY, "XSUBMITTOKEN-UNKNOWNKEY" },
		{ 410, "expired", SUBMIT_TOKEN_EXPIRED, "XSUBMITTOKEN-EXPIRED" },
		{ 403, "revoked", SUBMIT_TOKEN_REVOKED, "XSUBMITTOKEN-REVOKED" },
		{ 409, "wrong_address", SUBMIT_TOKEN_WRONGADDRESS, "XSUBMITTOKEN-WRONGADDRESS" },
		{ 410, "purged", SUBMIT_TOKEN_PURGED, "XSUBMITTOKEN-PURGED" },
		/* the plugin's misconfiguration or a server fault: not the token's */
		{ 401, "unauthorized", SUBMIT_TOKEN_UNAVAILABLE, "XSUBMITTOKEN-UNAVAILABLE" },
		{ 400, "bad_request", SUBMIT_TOKEN_UNAVAILABLE, "XSUBMITTOKEN-UNAVAILABLE" },
		{ 500, "internal", SUBMIT_TOKEN_UNAVAILABLE, "XSUBMITTOKEN-UNAVAILABLE" },
		{ 503, NULL, SUBMIT_TOKEN_UNAVAILABLE, "XSUBMITTOKEN-UNAVAILABLE" },
		{ 403, "expired", SUBMIT_TOKEN_UNAVAILABLE, "XSUBMITTOKEN-UNAVAILABLE" },  /* mismatched */
		{ 404, "", SUBMIT_TOKEN_UNAVAILABLE, "XSUBMITTOKEN-UNAVAILABLE" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum submit_token_class c = submit_token_refusal_class(cases[i].status, cases[i].result);

		assert_int_equal(c, cases[i].c);
		assert_string_equal(submit_token_class_code(c), cases[i].code);
	}
	assert_null(submit_token_class_code(SUBMIT_TOKEN_OK));
	assert_string_equal(submit_token_class_code(SUBMIT_TOKEN_TOOBIG), "XSUBMITTOKEN-TOOBIG");
}

static void
test_check(void **state)
{
	struct submit_token_answer a;
	char buf[1024];
	static const struct {
		const char *from, *to;
		enum submit_token_class c;
	} edits[] = {
		{ "\"role\":\"sender\"", "\"role\":\"recipient\"", SUBMIT_TOKEN_WRONGROLE },
		{ "\"result\":\"valid\"", "\"result\":\"other\"", SUBMIT_TOKEN_UNAVAILABLE },
		{ "\"size\":146,", "", SUBMIT_TOKEN_UNAVAILABLE },
		{ "\"id\":\"blZYim8k4suf_sgp\",", "", SUBMIT_TOKEN_UNAVAILABLE },
		{ "27.955Z", "27.955", SUBMIT_TOKEN_UNAVAILABLE },
		{ "d230527fd4", "D230527fd4", SUBMIT_TOKEN_UNAVAILABLE },
		{ "d230527fd4", "d230527fd", SUBMIT_TOKEN_UNAVAILABLE },
	};

	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		const char *at = strstr(VALID, edits[i].from);

		assert_non_null(at);
		snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - VALID), VALID, edits[i].to,
			 at + strlen(edits[i].from));
		assert_int_equal(parse(buf, &a), 0);
		assert_int_equal(submit_token_answer_check(&a), edits[i].c);
	}
}

static void
test_syntax(void **state)
{
	char *long_token = malloc(SUBMIT_TOKEN_MAX_LEN + 2);

	assert_true(submit_token_syntax_ok("v4.public.eyJ_-0.abc"));
	assert_false(submit_token_syntax_ok(""));
	assert_false(submit_token_syntax_ok("v4.public.a b"));
	assert_false(submit_token_syntax_ok("v4.public.a\r\nX-Evil: 1"));
	assert_false(submit_token_syntax_ok("v4.public.\"a"));
	assert_false(submit_token_syntax_ok("v4.public.a=="));
	memset(long_token, 'a', SUBMIT_TOKEN_MAX_LEN);
	long_token[SUBMIT_TOKEN_MAX_LEN] = '\0';
	assert_true(submit_token_syntax_ok(long_token));
	long_token[SUBMIT_TOKEN_MAX_LEN] = 'a';
	long_token[SUBMIT_TOKEN_MAX_LEN + 1] = '\0';
	assert_false(submit_token_syntax_ok(long_token));
	free(long_token);
}

static void
test_time(void **state)
{
	static const struct {
		const char *in;
		int rc;
		long long t;
	} cases[] = {
		{ "1970-01-01T00:00:00Z", 0, 0 },
		{ "2026-11-29T03:24:27.955Z", 0, 1795922667 },
		{ "2024-02-29T12:34:56.789Z", 0, 1709210096 },
		{ "2000-03-01T00:00:00Z", 0, 951868800 },
		{ "2023-02-29T00:00:00Z", -1, 0 },
		{ "2026-11-29T03:24:27.955", -1, 0 },
		{ "2026-11-29T03:24:27.Z", -1, 0 },
		{ "2026-11-29 03:24:27Z", -1, 0 },
		{ "2026-13-01T00:00:00Z", -1, 0 },
		{ "2026-11-29T24:00:00Z", -1, 0 },
		{ "1969-12-31T23:59:59Z", -1, 0 },
		{ "2026-11-29T03:24:27Zx", -1, 0 },
		{ "", -1, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		time_t t = 0;
		int rc = submit_token_parse_time(cases[i].in, &t);

		if (rc != cases[i].rc)
			fail_msg("%s: rc %d", cases[i].in, rc);
		if (rc == 0)
			assert_int_equal((long long)t, cases[i].t);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_refusal_class),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_time),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
