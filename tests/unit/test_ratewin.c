/*
 * test_ratewin.c: the rolling-window counter of the sending limits
 * (server/limits/ratewin.h): a table of events and the sums expected at
 * given times, for windows that divide into buckets evenly and not, plus
 * the edges: an event never leaves early, leaves at most two buckets late,
 * a long pause clears everything, an event older than the window is
 * ignored, a count saturates instead of wrapping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "server/limits/ratewin.h"

struct step {
	char op;            /* 'a': add n at t; 's': expect sum n at t */
	int64_t t;
	uint32_t n;
};

struct table_case {
	int64_t window_ms;
	struct step steps[12];
	size_t nsteps;
};

static const struct table_case cases[] = {
	/* 3 s window: 50 ms buckets */
	{ 3000, { { 'a', 10000, 1 }, { 'a', 10400, 2 }, { 's', 10400, 3 }, { 's', 12999, 3 },
	    { 's', 13000, 3 },          /* the first bucket's end is in the window still */
	    { 's', 13050, 2 },          /* one bucket late at most: 10000 gone */
	    { 's', 13450, 0 }, { 'a', 13500, 5 }, { 's', 13500, 5 } }, 9 },
	/* an hour: one-minute buckets */
	{ 3600000, { { 'a', 0, 1 }, { 'a', 59999, 1 }, { 'a', 60000, 1 }, { 's', 3599999, 3 },
	    { 's', 3660000, 1 }, { 's', 3720000, 0 } }, 6 },
	/* a window shorter than the bucket count: seven 1 ms buckets */
	{ 7, { { 'a', 100, 1 }, { 's', 107, 1 }, { 's', 108, 0 } }, 3 },
	/* a pause longer than the ring clears it */
	{ 1000, { { 'a', 5, 4 }, { 'a', 1000000, 1 }, { 's', 1000000, 1 } }, 3 },
	/* late events: within the window they count, before it not */
	{ 6000, { { 'a', 60000, 1 }, { 'a', 57000, 1 }, { 's', 60000, 2 }, { 'a', 40000, 1 }, { 's', 60000, 2 } }, 5 },
};

static void
test_table(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ratewin w;
		ratewin_init(&w, cases[i].window_ms);
		for (size_t j = 0; j < cases[i].nsteps; j++) {
			const struct step *s = &cases[i].steps[j];
			if (s->op == 'a') {
				ratewin_add(&w, s->t, s->n);
			} else {
				uint64_t got = ratewin_sum(&w, s->t);
				if (got != s->n)
					fail_msg("case %zu step %zu: sum at %lld is %llu, expected %u", i, j, (long long)s->t,
					    (unsigned long long)got, s->n);
			}
		}
	}
}

/* For every event time and window, the event counts until window has
 * passed and is gone once window plus two buckets have. */
static void
test_never_early(void **state)
{
	static const int64_t windows[] = { 1, 59, 60, 61, 1000, 3000, 86400000 };

	for (size_t i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
		int64_t win = windows[i], width = (win + RATEWIN_BUCKETS - 1) / RATEWIN_BUCKETS;
		for (int64_t t = 1000; t < 1000 + 3 * width + 5; t++) {
			struct ratewin w;
			ratewin_init(&w, win);
			ratewin_add(&w, t, 1);
			assert_int_equal(ratewin_sum(&w, t), 1);
			assert_int_equal(ratewin_sum(&w, t + win - 1), 1);
			assert_int_equal(ratewin_sum(&w, t + win), 1);
			assert_int_equal(ratewin_sum(&w, t + win + 2 * width), 0);
			assert_true(ratewin_empty(&w, t + win + 2 * width));
		}
	}
}

static void
test_saturates(void **state)
{
	struct ratewin w;

	ratewin_init(&w, 1000);
	ratewin_add(&w, 0, UINT32_MAX - 1);
	ratewin_add(&w, 0, 5);
	assert_int_equal(ratewin_sum(&w, 0), UINT32_MAX);
	ratewin_add(&w, 100, 2);
	assert_int_equal(ratewin_sum(&w, 100), (uint64_t)UINT32_MAX + 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_never_early),
		cmocka_unit_test(test_saturates),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
