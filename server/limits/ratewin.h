/*
 * ratewin.h: a rolling-window counter, pure (no clock, no I/O: the caller
 * passes the time). The window of W milliseconds is cut into at most
 * RATEWIN_BUCKETS buckets of width ceil(W / RATEWIN_BUCKETS) ms, as many
 * as cover W, plus the bucket being filled, so an event leaves the count
 * between W and W plus two widths after it happened: never early, at most
 * 1/30 of the window late (two minutes for an hour, 48 minutes for a
 * day). The sending limits (server/limits/limits.c) keep one per login
 * and per client address.
 */
#ifndef SUBMITD_RATEWIN_H
#define SUBMITD_RATEWIN_H

#include <stdint.h>

#define RATEWIN_BUCKETS 60

struct ratewin {
	int64_t slot;                         /* index of the newest bucket: time / width */
	int64_t width_ms;                     /* of one bucket */
	int64_t nbuckets;                     /* that cover the window: <= RATEWIN_BUCKETS */
	uint32_t count[RATEWIN_BUCKETS + 1];  /* by slot modulo RATEWIN_BUCKETS + 1 */
};

/* An empty counter over a window of window_ms (at least 1). */
void ratewin_init(struct ratewin *w, int64_t window_ms);
/* Count n events at time now_ms. Times must not go back by more than the
 * window; an event older than the newest bucket counts in its own bucket
 * if that is still in the window, else not at all. */
void ratewin_add(struct ratewin *w, int64_t now_ms, uint32_t n);
/* Events counted in the window that ends at now_ms. */
uint64_t ratewin_sum(const struct ratewin *w, int64_t now_ms);
/* True when nothing is left in the window at now_ms (the entry may go). */
int ratewin_empty(const struct ratewin *w, int64_t now_ms);

#endif
