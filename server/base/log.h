/*
 * log.h: one line per event, key=value, to stderr or syslog. Callers pass
 * the event and its fields as a format; values that come from the network
 * go through log_sanitize first, so no client can forge a log line.
 */
#ifndef SUBMITD_LOG_H
#define SUBMITD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_LVL_ERR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Write to syslog (or stderr) the events of level and more severe ones. The
 * configuration checks the names (log.target, log.level) as it reads them. */
void log_init(bool to_syslog, enum log_level level);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool log_enabled(enum log_level lvl);

#define log_err(...)   log_msg(LOG_LVL_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) do { if (log_enabled(LOG_LVL_DEBUG)) log_msg(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)

/* Copy at most max octets of src into dst (dstlen >= 4*max+4) as a quoted,
 * printable sample: non-printable octets become \xNN, '"' and '\' are
 * escaped, and a cut sample ends with "...". Returns dst. */
char *log_sanitize(char *dst, size_t dstlen, const char *src, size_t len, size_t max);

/* A token shortened for logs: "..." and the last 12 characters of its
 * signature, never the whole (a token in a log would be a credential). */
#define LOG_TOKEN_SHORT 32
char *log_token_short(char dst[LOG_TOKEN_SHORT], const char *token);

#endif
