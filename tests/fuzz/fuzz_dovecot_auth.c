/*
 * fuzz_dovecot_auth.c: Dovecot's auth-client lines (server/protocol/
 * dovecot_auth.h), as submitd's client reads them from the auth socket.
 *
 * The input is split at LF like the client does; each line is parsed in an
 * exact-size heap buffer (plus the LF's place). Checks:
 *  - lines over DOVECOT_AUTH_LINE_MAX are TOO_LONG, others OK or BAD;
 *  - an accepted OK, CONT or FAIL has an id other than 0; CONT's data is
 *    base64 text; strings handed out lie inside the line buffer (an
 *    unescaped value may hold TAB, CR or LF: the client judges user=);
 *    a MECH name is 1 to 20 characters;
 *  - escaping any text without NUL and unescaping it gives the text back,
 *    and the escaped form has no TAB, CR or LF;
 *  - an AUTH line formatted with the input as session id is one line that
 *    ends in LF and fits DOVECOT_AUTH_LINE_MAX.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "server/protocol/dovecot_auth.h"

static void
check_str(const char *s, const char *buf, size_t len)
{
	if (s == NULL)
		return;
	if (s[0] == '\0' && (s < buf || s > buf + len))
		return;         /* a constant "" */
	FUZZ_CHECK(s >= buf && s <= buf + len);
	FUZZ_CHECK(strlen(s) <= (size_t)(buf + len - s));
}

static void
check_line(const uint8_t *data, size_t len)
{
	char *line = malloc(len + 1);
	struct dovecot_auth_reply r;
	enum dovecot_auth_parse pr;

	if (line == NULL)
		abort();
	memcpy(line, data, len);
	line[len] = '\n';
	pr = dovecot_auth_parse_line(line, len, &r);
	if (len > DOVECOT_AUTH_LINE_MAX) {
		FUZZ_CHECK(pr == DOVECOT_PARSE_TOO_LONG);
	} else {
		FUZZ_CHECK(pr == DOVECOT_PARSE_OK || pr == DOVECOT_PARSE_BAD);
	}
	if (pr == DOVECOT_PARSE_OK) {
		if (r.cmd == DOVECOT_CMD_OK || r.cmd == DOVECOT_CMD_CONT || r.cmd == DOVECOT_CMD_FAIL)
			FUZZ_CHECK(r.id != 0);
		if (r.cmd == DOVECOT_CMD_CONT) {
			FUZZ_CHECK(r.data != NULL);
			FUZZ_CHECK(dovecot_auth_base64_text(r.data, strlen(r.data)));
		}
		if (r.cmd == DOVECOT_CMD_MECH)
			FUZZ_CHECK(strlen(r.mech) >= 1 && strlen(r.mech) <= DOVECOT_MECH_NAME_MAX);
		check_str(r.data, line, len);
		check_str(r.user, line, len);
		check_str(r.reason, line, len);
		if (r.user)
			FUZZ_CHECK(r.user[0] != '\0');
	}
	free(line);
}

static void
check_escape(const uint8_t *data, size_t size)
{
	size_t n = strnlen((const char *)data, size), pos = 0, cap = 2 * n + 1;
	char *text = malloc(n + 1), *esc = malloc(cap);
	long back;

	if (text == NULL || esc == NULL)
		abort();
	memcpy(text, data, n);
	text[n] = '\0';
	FUZZ_CHECK(dovecot_auth_escape(esc, cap, &pos, text));
	FUZZ_CHECK(pos == strlen(esc));
	FUZZ_CHECK(strpbrk(esc, "\t\r\n") == NULL);
	back = dovecot_auth_unescape(esc, pos);
	FUZZ_CHECK(back == (long)n && memcmp(esc, text, n) == 0);
	{
		char line[DOVECOT_AUTH_LINE_MAX + 64];
		struct dovecot_auth_params p = {
			.id = 1, .mech = "PLAIN", .service = "smtp", .lip = "127.0.0.1", .rip = text,
			.lport = 587, .rport = 1, .secured = true, .session = text,
		};
		size_t len = dovecot_auth_format_auth(line, sizeof(line), &p);
		if (len > 0) {
			FUZZ_CHECK(len <= DOVECOT_AUTH_LINE_MAX + 1 && line[len - 1] == '\n');
			FUZZ_CHECK(memchr(line, '\n', len - 1) == NULL);
		}
	}
	free(text);
	free(esc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t start = 0;

	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != '\n')
			continue;
		check_line(data + start, i - start);
		start = i + 1;
	}
	check_escape(data, size);
	return 0;
}
