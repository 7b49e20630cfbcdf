/*
 * fuzz_submit_token_answer.c: what the Dovecot plugin reads from submitd's
 * API (imap/submit_token_answer.h). The input is an answer body, parsed
 * from an exact-size copy so that a read past its end is a sanitizer
 * finding.
 *
 * Checks:
 *  - a parse either succeeds or leaves every field empty;
 *  - every field is NUL-terminated within its buffer;
 *  - the answer's class is one of the enum's, and a date that parses is
 *    not before 1970;
 *  - the input, as a token, is accepted only if it is of the token
 *    alphabet and short enough.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "imap/submit_token_answer.h"

static bool
terminated(const char *buf, size_t cap)
{
	return memchr(buf, '\0', cap) != NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct submit_token_answer a;
	char *copy = malloc(size ? size : 1);
	char *str;
	enum submit_token_class c;
	time_t t;
	int rc;

	FUZZ_CHECK(copy != NULL);
	memcpy(copy, data, size);
	rc = submit_token_answer_parse(copy, size, &a);
	free(copy);
	FUZZ_CHECK(rc == 0 || rc == -1);
	FUZZ_CHECK(terminated(a.result, sizeof(a.result)) && terminated(a.role, sizeof(a.role)) &&
		   terminated(a.address, sizeof(a.address)) && terminated(a.message_id, sizeof(a.message_id)) &&
		   terminated(a.received_at, sizeof(a.received_at)) && terminated(a.sha256, sizeof(a.sha256)));
	if (rc < 0)
		FUZZ_CHECK(a.result[0] == '\0' && a.message_id[0] == '\0' && !a.has_size);
	c = submit_token_answer_check(&a);
	FUZZ_CHECK(c == SUBMIT_TOKEN_OK || c == SUBMIT_TOKEN_WRONGROLE || c == SUBMIT_TOKEN_UNAVAILABLE);
	c = submit_token_refusal_class(size > 0 ? data[0] * 4u : 0, a.result);
	FUZZ_CHECK(submit_token_class_code(c) != NULL);

	str = malloc(size + 1);
	FUZZ_CHECK(str != NULL);
	memcpy(str, data, size);
	str[size] = '\0';
	if (submit_token_parse_time(str, &t) == 0)
		FUZZ_CHECK(t >= 0);
	if (submit_token_syntax_ok(str)) {
		size_t n = strlen(str);

		FUZZ_CHECK(n > 0 && n <= SUBMIT_TOKEN_MAX_LEN && strcspn(str, " \r\n\"\\") == n);
	}
	free(str);
	return 0;
}
