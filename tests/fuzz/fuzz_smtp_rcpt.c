/*
 * fuzz_smtp_rcpt.c: smtp_rcpt_parse on raw RCPT arguments ("TO:<a@b>"),
 * each input parsed with and without SMTPUTF8. Invariants in smtp_checks.h:
 * SMTPUTF8 only turns NON_ASCII into OK, an accepted address is a valid
 * Mailbox (or "<Postmaster>"), and a refusal leaves the address empty.
 */
#include "fuzz.h"
#include "smtp_checks.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_rcpt(data, size, true);
	return 0;
}
