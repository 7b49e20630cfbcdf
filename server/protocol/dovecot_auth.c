/*
 * dovecot_auth.c: see dovecot_auth.h. The parser splits a line at TABs
 * first and resolves escapes per field afterwards: an escaped TAB is
 * \001 't', so a raw TAB is always a separator. Everything the auth
 * service sends is checked before it is believed, since a wrong socket
 * path may connect submitd to anything.
 */
#include "server/protocol/dovecot_auth.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Fields on one line: more are ignored (the ones we use come first). */
#define MAX_FIELDS 64

long
dovecot_auth_unescape(char *s, size_t len)
{
	size_t r = 0, w = 0;

	while (r < len) {
		char c = s[r++];

		if (c == '\0')
			return -1;
		if (c == '\001') {
			if (r == len)
				return -1;
			switch (s[r++]) {
			case '0': return -1;        /* a NUL: no C string can hold it */
			case '1': c = '\001'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'n': c = '\n'; break;
			default: c = s[r - 1]; break;
			}
		}
		s[w++] = c;
	}
	return (long)w;
}

bool
dovecot_auth_escape(char *out, size_t size, size_t *pos, const char *s)
{
	size_t w = *pos;

	for (; *s != '\0'; s++) {
		char esc = 0;

		switch (*s) {
		case '\001': esc = '1'; break;
		case '\t': esc = 't'; break;
		case '\r': esc = 'r'; break;
		case '\n': esc = 'n'; break;
		default: break;
		}
		if (w + (esc ? 2 : 1) >= size)
			return false;
		if (esc) {
			out[w++] = '\001';
			out[w++] = esc;
		} else {
			out[w++] = *s;
		}
	}
	out[w] = '\0';
	*pos = w;
	return true;
}

bool
dovecot_auth_base64_text(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '+' && c != '/' && c != '=')
			return false;
	}
	return true;
}

/* A decimal number without sign or spaces, at most max. */
static bool
parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

static bool
parse_id(const char *s, uint32_t *out)
{
	uint64_t v;

	if (!parse_uint(s, UINT32_MAX, &v) || v == 0)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* RFC 4422 3.1: upper-case letters, digits, '-' and '_'; Dovecot's names
 * are upper case, lower case is taken too. */
static bool
mech_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > DOVECOT_MECH_NAME_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
			return false;
	return true;
}

static unsigned
mech_flag(const char *p)
{
	static const struct { const char *name; unsigned flag; } flags[] = {
		{ "anonymous", DOVECOT_MECH_ANONYMOUS }, { "plaintext", DOVECOT_MECH_PLAINTEXT },
		{ "dictionary", DOVECOT_MECH_DICTIONARY }, { "active", DOVECOT_MECH_ACTIVE },
		{ "forward-secrecy", DOVECOT_MECH_FORWARD_SECRECY }, { "mutual-auth", DOVECOT_MECH_MUTUAL_AUTH },
		{ "channel-binding", DOVECOT_MECH_CHANNEL_BINDING }, { "private", DOVECOT_MECH_PRIVATE },
	};

	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (strcmp(p, flags[i].name) == 0)
			return flags[i].flag;
	return 0;       /* unknown: ignored */
}

/* Is p the parameter name, bare or with "=value"? */
static bool
param_is(const char *p, const char *name)
{
	size_t n = strlen(name);

	return strncmp(p, name, n) == 0 && (p[n] == '\0' || p[n] == '=');
}

static const char *
param_value(const char *p, const char *name)
{
	size_t n = strlen(name);

	return strncmp(p, name, n) == 0 && p[n] == '=' ? p + n + 1 : NULL;
}

/* The optional parameters of OK and FAIL. */
static void
parse_result_params(char **f, int nf, struct dovecot_auth_reply *out)
{
	for (int i = 0; i < nf; i++) {
		const char *v;

		if ((v = param_value(f[i], "user")) != NULL)
			out->user = v;
		else if ((v = param_value(f[i], "reason")) != NULL)
			out->reason = v;
		else if ((v = param_value(f[i], "code")) != NULL)
			out->temp = out->temp || strcmp(v, "temp_fail") == 0;
		else if (strcmp(f[i], "temp") == 0)
			out->temp = true;
		else if (param_is(f[i], "nologin") || param_is(f[i], "proxy"))
			out->nologin = true;
	}
}

enum dovecot_auth_parse
dovecot_auth_parse_line(char *line, size_t len, struct dovecot_auth_reply *out)
{
	char *f[MAX_FIELDS];
	int nf = 0;
	size_t start = 0;
	uint64_t v1, v2;

	memset(out, 0, sizeof(*out));
	if (len > DOVECOT_AUTH_LINE_MAX)
		return DOVECOT_PARSE_TOO_LONG;
	if (memchr(line, '\0', len) != NULL || memchr(line, '\n', len) != NULL)
		return DOVECOT_PARSE_BAD;
	/* Split at TAB, then unescape each field; the line shrinks in place
	 * and each field gets its NUL where its TAB (or the end) was. */
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != '\t')
			continue;
		if (nf < MAX_FIELDS) {
			long n = dovecot_auth_unescape(line + start, i - start);
			if (n < 0)
				return DOVECOT_PARSE_BAD;
			f[nf++] = line + start;
			line[start + (size_t)n] = '\0';
		}
		start = i + 1;
	}

	if (strcmp(f[0], "VERSION") == 0) {
		out->cmd = DOVECOT_CMD_VERSION;
		if (nf < 3 || !parse_uint(f[1], 1000000, &v1) || !parse_uint(f[2], 1000000, &v2))
			return DOVECOT_PARSE_BAD;
		out->major = (unsigned)v1;
		out->minor = (unsigned)v2;
	} else if (strcmp(f[0], "MECH") == 0) {
		out->cmd = DOVECOT_CMD_MECH;
		if (nf < 2 || !mech_name_ok(f[1]))
			return DOVECOT_PARSE_BAD;
		snprintf(out->mech, sizeof(out->mech), "%s", f[1]);
		for (int i = 2; i < nf; i++)
			out->mech_flags |= mech_flag(f[i]);
	} else if (strcmp(f[0], "SPID") == 0 || strcmp(f[0], "CUID") == 0) {
		out->cmd = f[0][0] == 'S' ? DOVECOT_CMD_SPID : DOVECOT_CMD_CUID;
		if (nf < 2 || !parse_uint(f[1], UINT32_MAX, &v1))
			return DOVECOT_PARSE_BAD;
	} else if (strcmp(f[0], "COOKIE") == 0) {
		out->cmd = DOVECOT_CMD_COOKIE;
		if (nf < 2 || f[1][0] == '\0')
			return DOVECOT_PARSE_BAD;
	} else if (strcmp(f[0], "DONE") == 0) {
		out->cmd = DOVECOT_CMD_DONE;
	} else if (strcmp(f[0], "OK") == 0 || strcmp(f[0], "FAIL") == 0) {
		out->cmd = f[0][0] == 'O' ? DOVECOT_CMD_OK : DOVECOT_CMD_FAIL;
		if (nf < 2 || !parse_id(f[1], &out->id))
			return DOVECOT_PARSE_BAD;
		parse_result_params(f + 2, nf - 2, out);
		if (out->user != NULL && out->user[0] == '\0')
			out->user = NULL;
	} else if (strcmp(f[0], "CONT") == 0) {
		out->cmd = DOVECOT_CMD_CONT;
		if (nf < 2 || !parse_id(f[1], &out->id))
			return DOVECOT_PARSE_BAD;
		out->data = nf >= 3 ? f[2] : "";
		if (!dovecot_auth_base64_text(out->data, strlen(out->data)))
			return DOVECOT_PARSE_BAD;
	} else {
		out->cmd = DOVECOT_CMD_UNKNOWN;
	}
	return DOVECOT_PARSE_OK;
}

size_t
dovecot_auth_format_handshake(char *out, size_t size, unsigned long pid)
{
	int n = snprintf(out, size, "VERSION\t%d\t%d\nCPID\t%lu\n", DOVECOT_AUTH_MAJOR, DOVECOT_AUTH_MINOR, pid);

	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static bool
append(char *out, size_t size, size_t *pos, const char *s)
{
	size_t n = strlen(s);

	if (*pos + n >= size)
		return false;
	memcpy(out + *pos, s, n + 1);
	*pos += n;
	return true;
}

/* "\t<name>=<escaped value>" */
static bool
append_param(char *out, size_t size, size_t *pos, const char *name, const char *value)
{
	size_t save = *pos;

	if (append(out, size, pos, "\t") && append(out, size, pos, name) && append(out, size, pos, "=") &&
	    dovecot_auth_escape(out, size, pos, value))
		return true;
	*pos = save;
	return false;
}

size_t
dovecot_auth_format_auth(char *out, size_t size, const struct dovecot_auth_params *p)
{
	char num[24];
	size_t pos = 0;

	if (size > DOVECOT_AUTH_LINE_MAX + 1)
		size = DOVECOT_AUTH_LINE_MAX + 1;       /* room for the LF */
	if (size == 0 || p->id == 0 || !mech_name_ok(p->mech))
		return 0;
	out[0] = '\0';
	snprintf(num, sizeof(num), "%u", (unsigned)p->id);
	if (!append(out, size, &pos, "AUTH\t") || !append(out, size, &pos, num) ||
	    !append(out, size, &pos, "\t") || !append(out, size, &pos, p->mech) ||
	    !append_param(out, size, &pos, "service", p->service))
		return 0;
	if (p->lip && p->lip[0] && !append_param(out, size, &pos, "lip", p->lip))
		return 0;
	if (p->rip && p->rip[0] && !append_param(out, size, &pos, "rip", p->rip))
		return 0;
	if (p->lport) {
		snprintf(num, sizeof(num), "%u", p->lport);
		if (!append_param(out, size, &pos, "lport", num))
			return 0;
	}
	if (p->rport) {
		snprintf(num, sizeof(num), "%u", p->rport);
		if (!append_param(out, size, &pos, "rport", num))
			return 0;
	}
	if (p->secured && !append(out, size, &pos, "\tsecured=tls"))
		return 0;
	if (p->session && p->session[0] && !append_param(out, size, &pos, "session", p->session))
		return 0;
	/* resp= must be the last parameter: Dovecot ignores what follows. */
	if (p->resp) {
		if (!dovecot_auth_base64_text(p->resp, p->resp_len) || pos + 6 + p->resp_len >= size)
			return 0;
		memcpy(out + pos, "\tresp=", 6);
		memcpy(out + pos + 6, p->resp, p->resp_len);
		pos += 6 + p->resp_len;
	}
	if (pos + 1 >= size)
		return 0;
	out[pos++] = '\n';
	out[pos] = '\0';
	return pos;
}

size_t
dovecot_auth_format_cont(char *out, size_t size, uint32_t id, const char *b64, size_t len)
{
	int n;

	if (size > DOVECOT_AUTH_LINE_MAX + 1)
		size = DOVECOT_AUTH_LINE_MAX + 1;
	if (id == 0 || !dovecot_auth_base64_text(b64, len))
		return 0;
	n = snprintf(out, size, "CONT\t%u\t%.*s\n", (unsigned)id, (int)len, b64);
	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}
