/*
 * fuzz_mail_header.c: the header reader that picks a message's DKIM keys
 * (server/protocol/mail_header.h), on a message's first octets as a client
 * sends them, and the DNS record formatter (server/protocol/dkim_record.h)
 * on words cut from the same input.
 *
 * Checks:
 *  - a From: domain found is non-empty, NUL-terminated inside its buffer,
 *    lowercase letters, digits, '-' and '.', neither starting nor ending
 *    with a dot; the same domain is found in a larger buffer, and none in
 *    a buffer one octet too small;
 *  - a field's value fits its buffer, with no CR, LF, tab or double space;
 *  - a Message-ID's msg-id (the duplicate check) is as long as said,
 *    visible ASCII without '<' or '>', with an '@' inside; it is found
 *    again in a buffer just large enough, and not in one octet less;
 *  - a record formatted is as long as said, and every quoted string in it
 *    holds at most 255 octets.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "server/protocol/dkim_record.h"
#include "server/protocol/mail_header.h"

static void
check_domain(const char *head, size_t len)
{
	char out[300], big[600];
	int rc = mail_header_from_domain(head, len, out, sizeof(out));

	if (rc != 0)
		return;
	size_t n = strnlen(out, sizeof(out));
	FUZZ_CHECK(n > 0 && n < sizeof(out));
	FUZZ_CHECK(out[0] != '.' && out[n - 1] != '.');
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK((out[i] >= 'a' && out[i] <= 'z') || (out[i] >= '0' && out[i] <= '9') || out[i] == '-' ||
		    out[i] == '.');
	FUZZ_CHECK(mail_header_from_domain(head, len, big, sizeof(big)) == 0 && strcmp(big, out) == 0);
	FUZZ_CHECK(mail_header_from_domain(head, len, big, n) == -1);
}

static void
check_field(const char *head, size_t len)
{
	char out[128];
	unsigned count;
	int n = mail_header_field(head, len, "Subject", out, sizeof(out), &count);

	if (n < 0)
		return;
	FUZZ_CHECK((size_t)n < sizeof(out) && out[n] == '\0' && count >= 1);
	for (int i = 0; i < n; i++)
		FUZZ_CHECK(out[i] != '\r' && out[i] != '\n' && out[i] != '\t' && !(out[i] == ' ' && out[i + 1] == ' '));
}

static void
check_message_id(const char *head, size_t len)
{
	char out[MAIL_MSGID_MAX + 1], again[MAIL_MSGID_MAX + 1];
	int n = mail_header_message_id(head, len, out, sizeof(out));

	if (n < 0)
		return;
	FUZZ_CHECK(n > 0 && (size_t)n <= MAIL_MSGID_MAX && strlen(out) == (size_t)n);
	for (int i = 0; i < n; i++)
		FUZZ_CHECK(out[i] > ' ' && out[i] < 0x7f && out[i] != '<' && out[i] != '>');
	const char *at = strchr(out, '@');
	FUZZ_CHECK(at != NULL && at != out && at[1] != '\0');
	FUZZ_CHECK(mail_header_message_id(head, len, again, (size_t)n + 1) == n && strcmp(again, out) == 0);
	FUZZ_CHECK(mail_header_message_id(head, len, again, (size_t)n) == -1);
}

static void
check_record(const char *data, size_t size)
{
	char words[4][2100], out[9000];
	size_t w = 0, o = 0;

	for (size_t i = 0; i < size && w < 4; i++) {
		if (data[i] == '\0' || o + 1 >= sizeof(words[0])) {
			words[w++][o] = '\0';
			o = 0;
		} else {
			words[w][o++] = data[i];
		}
	}
	if (w < 4)
		return;
	size_t n = dkim_record_format(words[0], words[1], words[2], words[3], out, sizeof(out));
	if (n == 0)
		return;
	FUZZ_CHECK(strlen(out) == n);
	const char *q = strstr(out, " IN TXT ");
	FUZZ_CHECK(q != NULL);
	for (q += 8; *q; ) {
		FUZZ_CHECK(*q == '"');
		const char *end = strchr(q + 1, '"');
		FUZZ_CHECK(end != NULL && end - q - 1 <= DKIM_RECORD_STRING_MAX);
		q = end + 1;
		if (*q)
			FUZZ_CHECK(*q++ == ' ');
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* exactly size octets on the heap: a read past them is a finding */
	char *head = malloc(size ? size : 1);

	if (size > 0)
		memcpy(head, data, size);
	check_domain(head, size);
	check_field(head, size);
	check_message_id(head, size);
	check_record(head, size);
	free(head);
	return 0;
}
