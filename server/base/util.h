/*
 * util.h: small helpers shared by the daemon and submitctl: allocation that
 * aborts on failure (one place to die on OOM), clocks, and the time and id
 * formats used in the database.
 */
#ifndef SUBMITD_UTIL_H
#define SUBMITD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* free(*p) and set *p = NULL */
void xfreep(void *pp);

int64_t now_unix(void);          /* wall clock, seconds */
int64_t now_ms(void);            /* wall clock, milliseconds */
uint64_t mono_us(void);          /* monotonic, microseconds */

/* "YYYY-MM-DD HH:MM:SS.sss" UTC, the format SQLite's datetime() compares with. */
#define DB_TIME_LEN 23
void db_time_format(int64_t ms, char out[DB_TIME_LEN + 1]);

/* A public id: 12 bytes (6 of the time in ms, 6 random) as 16 base64url characters. */
#define PUBLIC_ID_LEN 16
void public_id_new(char out[PUBLIC_ID_LEN + 1]);

/* Hex encoding of n bytes into out (2n+1). */
void hex_encode(const uint8_t *in, size_t n, char *out);

/* Join a directory and a file name into a new string. */
char *path_join(const char *dir, const char *name);
/* mkdir -p with the given mode for the last component. 0 or -1 (errno). */
int mkdir_p(const char *path, unsigned mode);
/* Whether a file can be created in dir: creates and removes a probe file.
 * 0, or the errno. access(2) alone misses a file system that went
 * read-only after an error (ext4 errors=remount-ro). */
int dir_probe_write(const char *dir);

#endif
