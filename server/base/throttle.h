/*
 * throttle.h: bounded counters keyed by a short string (a client address,
 * a login). Used for connections per address and for failed logins per
 * address and per user. A full table evicts its stalest entry, so a flood
 * of distinct keys costs a fixed amount of memory. A table may be shared
 * between threads: each call takes its lock.
 */
#ifndef SUBMITD_THROTTLE_H
#define SUBMITD_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#define THROTTLE_KEY_MAX 96

struct throttle;

struct throttle *throttle_new(size_t capacity, int64_t window_s);
void throttle_free(struct throttle **tp);

/* Current count for key (0 when absent or older than the window). */
int64_t throttle_get(struct throttle *t, const char *key, int64_t now);
/* Add delta (may be negative) and return the new count; an entry at 0 is removed. */
int64_t throttle_add(struct throttle *t, const char *key, int64_t delta, int64_t now);
void throttle_clear(struct throttle *t, const char *key);
size_t throttle_size(struct throttle *t);

#endif
