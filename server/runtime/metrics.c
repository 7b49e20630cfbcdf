/*
 * metrics.c: see metrics.h. The rendering is the API's (server/api); this
 * file only keeps the numbers, so that every module can count without
 * depending on the one that shows them.
 */
#include "server/runtime/metrics.h"

const double commit_bucket_le[COMMIT_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
};

const char *
refuse_reason_name(enum refuse_reason r)
{
	static const char *const names[REFUSE_COUNT] = { "too_big", "bare_cr_lf", "nul", "long_line", "storage" };
	return r < REFUSE_COUNT ? names[r] : "unknown";
}

const char *
limit_kind_name(enum limit_kind k)
{
	static const char *const names[LIMIT_COUNT] = {
		"user_messages_per_hour", "user_recipients_per_day", "ip_messages_per_hour",
	};
	return k < LIMIT_COUNT ? names[k] : "unknown";
}

void
stats_commit_latency(struct server_stats *st, uint64_t us)
{
	double sec = (double)us / 1e6;

	STAT_ADD(st->commit_count, 1);
	STAT_ADD(st->commit_sum_us, us);
	for (int i = 0; i < COMMIT_BUCKETS; i++)
		if (sec <= commit_bucket_le[i]) {
			STAT_ADD(st->commit_bucket[i], 1);
			break;
		}
}
