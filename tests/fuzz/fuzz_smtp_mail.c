/*
 * fuzz_smtp_mail.c: smtp_mail_parse on raw MAIL arguments
 * ("FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 AUTH=<>"). Invariants in
 * smtp_checks.h: an accepted address is a valid Mailbox within the RFC 5321
 * length limits (or empty for the null sender), a refusal leaves nothing
 * half-filled, the keyword's case does not matter, and a reason comes with
 * every refusal.
 */
#include "fuzz.h"
#include "smtp_checks.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool utf8;

	check_mail(data, size, &utf8);
	return 0;
}
