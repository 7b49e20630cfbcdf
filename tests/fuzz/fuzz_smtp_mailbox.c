/*
 * fuzz_smtp_mailbox.c: smtp_mailbox_check on a bare Mailbox, differentially
 * against the two parsers that embed it: for an input s that holds no ">"
 * and does not start with "@" (a source route), "TO:<s>" must be accepted
 * by smtp_rcpt_parse exactly when s is a Mailbox (the one exception being
 * "<Postmaster>"), with s itself as the address and the same result code,
 * and "FROM:<s> SMTPUTF8" likewise by smtp_mail_parse.
 */
#include <string.h>

#include "fuzz.h"
#include "smtp_checks.h"

#define WRAP_MAX 2048

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum smtp_parse_result r = check_mailbox(data, size), rr, rm;
	static const char to[] = "TO:<", from[] = "FROM:<", utf8[] = "> SMTPUTF8";
	uint8_t wrapped[WRAP_MAX];
	struct smtp_rcpt rcpt;
	struct smtp_mail mail;
	bool u;
	char *copy;
	size_t n;

	if (size == 0 || size > WRAP_MAX - 32 || memchr(data, '>', size) != NULL || data[0] == '@')
		return 0;
	for (size_t i = 0; i < size; i++) {
		/* MAIL/RCPT refuse controls before looking at the path */
		if (data[i] < 0x20 || data[i] == 0x7f)
			return 0;
	}

	n = 0;
	memcpy(wrapped + n, to, sizeof(to) - 1);
	n += sizeof(to) - 1;
	memcpy(wrapped + n, data, size);
	n += size;
	wrapped[n++] = '>';
	rr = check_rcpt(wrapped, n, true);
	copy = fuzz_dup(wrapped, n);
	smtp_rcpt_parse(copy, n, true, &rcpt, NULL);
	free(copy);
	if (size == 10 && rr == SMTP_PARSE_OK && strchr(rcpt.address, '@') == NULL) {
		/* <Postmaster> */
	} else {
		FUZZ_CHECK(rr == r);
		if (r == SMTP_PARSE_OK)
			FUZZ_CHECK(strlen(rcpt.address) == size && memcmp(rcpt.address, data, size) == 0);
	}

	n = 0;
	memcpy(wrapped + n, from, sizeof(from) - 1);
	n += sizeof(from) - 1;
	memcpy(wrapped + n, data, size);
	n += size;
	memcpy(wrapped + n, utf8, sizeof(utf8) - 1);
	n += sizeof(utf8) - 1;
	rm = check_mail(wrapped, n, &u);
	copy = fuzz_dup(wrapped, n);
	smtp_mail_parse(copy, n, &mail, NULL);
	free(copy);
	FUZZ_CHECK(rm == r);
	if (r == SMTP_PARSE_OK)
		FUZZ_CHECK(u && strlen(mail.address) == size && memcmp(mail.address, data, size) == 0);
	return 0;
}
