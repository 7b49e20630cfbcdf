/*
 * log.c: see log.h. Lines are "submitd[pid]: level=info event=... k=v" on
 * stderr (systemd's journal adds the time) or plain key=value to syslog.
 */
#include "server/base/log.h"

#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static bool use_syslog;
static pid_t pid;          /* from log_init: submitd never forks */
static enum log_level max_level = LOG_LVL_INFO;
static const char *level_names[] = { "err", "warn", "info", "debug" };

void
log_init(bool to_syslog, enum log_level level)
{
	max_level = level;
	pid = getpid();
	use_syslog = to_syslog;
	if (use_syslog)
		openlog("submitd", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

bool
log_enabled(enum log_level lvl)
{
	return lvl <= max_level;
}

void
log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char line[2048];
	va_list ap;

	if (!log_enabled(lvl))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (use_syslog)
		syslog(prio[lvl], "level=%s %s", level_names[lvl], line);
	else
		fprintf(stderr, "submitd[%d]: level=%s %s\n", (int)(pid ? pid : getpid()), level_names[lvl], line);
}

char *
log_sanitize(char *dst, size_t dstlen, const char *src, size_t len, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, n = len < max ? len : max;

	if (dstlen < 8) {
		if (dstlen)
			dst[0] = '\0';
		return dst;
	}
	dst[o++] = '"';
	for (size_t i = 0; i < n && o + 8 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '"' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 15];
		} else {
			dst[o++] = (char)c;
		}
	}
	if (n < len && o + 4 < dstlen) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o++] = '"';
	dst[o] = '\0';
	return dst;
}

char *
log_token_short(char dst[LOG_TOKEN_SHORT], const char *token)
{
	/* The start of a token is the same for every token of an issuer (it
	 * encodes '{"iss":"...'), so show the last 12 characters before the
	 * footer instead: the end of the signature, unique per token, enough
	 * to correlate and useless to replay. */
	const char *end = strrchr(token, '.'), *start;
	size_t n;

	if (end == NULL || end - token < 22)
		end = token + strlen(token);
	else if (strncmp(token, "v4.public.", 10) == 0 && strchr(token + 10, '.') == end)
		;   /* the last '.' is the footer's */
	else
		end = token + strlen(token);
	n = (size_t)(end - token);
	start = n > 12 ? end - 12 : token;
	snprintf(dst, LOG_TOKEN_SHORT, "...%.*s", (int)(end - start), start);
	return dst;
}
