/*
 * ratewin.c: see ratewin.h. The buckets form a ring indexed by slot number
 * modulo its size; moving to a newer slot clears the buckets it passes, so
 * a bucket always holds the events of exactly one slot in the window.
 */
#include "server/limits/ratewin.h"

#include <string.h>

#define RING (RATEWIN_BUCKETS + 1)

void
ratewin_init(struct ratewin *w, int64_t window_ms)
{
	memset(w, 0, sizeof(*w));
	if (window_ms < 1)
		window_ms = 1;
	w->width_ms = (window_ms + RATEWIN_BUCKETS - 1) / RATEWIN_BUCKETS;
	w->nbuckets = (window_ms + w->width_ms - 1) / w->width_ms;
	w->slot = 0;
}

static int64_t
slot_of(const struct ratewin *w, int64_t t_ms)
{
	return t_ms < 0 ? 0 : t_ms / w->width_ms;
}

/* Move the newest bucket to slot, clearing the buckets that fall out. */
static void
advance(struct ratewin *w, int64_t slot)
{
	if (slot <= w->slot)
		return;
	if (slot - w->slot >= RING) {
		memset(w->count, 0, sizeof(w->count));
	} else {
		for (int64_t s = w->slot + 1; s <= slot; s++)
			w->count[s % RING] = 0;
	}
	w->slot = slot;
}

void
ratewin_add(struct ratewin *w, int64_t now_ms, uint32_t n)
{
	int64_t slot = slot_of(w, now_ms);
	uint32_t *c;

	advance(w, slot);
	if (slot < w->slot - w->nbuckets)
		return;                 /* older than the window: already gone */
	c = &w->count[slot % RING];
	*c = *c > UINT32_MAX - n ? UINT32_MAX : *c + n;
}

uint64_t
ratewin_sum(const struct ratewin *w, int64_t now_ms)
{
	int64_t now = slot_of(w, now_ms);
	uint64_t sum = 0;

	/* the slots now - nbuckets .. now that the ring still holds */
	for (int64_t s = w->slot - RING + 1; s <= w->slot; s++)
		if (s >= 0 && s >= now - w->nbuckets && s <= now)
			sum += w->count[s % RING];
	return sum;
}

int
ratewin_empty(const struct ratewin *w, int64_t now_ms)
{
	return ratewin_sum(w, now_ms) == 0;
}
