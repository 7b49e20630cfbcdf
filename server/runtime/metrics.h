/*
 * metrics.h: the counters and the commit-latency histogram that /metrics
 * renders. The SMTP loop, the relay, the Sent filing and the API's threads
 * bump them; every access goes through STAT_ADD / STAT_GET (relaxed
 * atomics: a counter needs no ordering). One instance lives in struct server.
 */
#ifndef SUBMITD_METRICS_H
#define SUBMITD_METRICS_H

#include <stdint.h>

enum refuse_reason {
	REFUSE_TOO_BIG = 0, REFUSE_BARE_CR_LF, REFUSE_NUL, REFUSE_LONG_LINE, REFUSE_STORAGE,
	REFUSE_COUNT
};

/* The sending limits (server/limits/), by the key that sets them. */
enum limit_kind { LIMIT_USER_MESSAGES = 0, LIMIT_USER_RECIPIENTS, LIMIT_IP_MESSAGES, LIMIT_COUNT };

/* Upper bounds (seconds) of the commit latency histogram's buckets. */
#define COMMIT_BUCKETS 12
extern const double commit_bucket_le[COMMIT_BUCKETS];

#define STAT_ADD(field, n) ((void)__atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED))
#define STAT_SUB(field, n) ((void)__atomic_fetch_sub(&(field), (n), __ATOMIC_RELAXED))
#define STAT_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* The most SMTP event loops (smtp.threads). */
#define SMTP_LOOPS_MAX 64

struct server_stats {
	uint64_t sessions_total;
	uint64_t loop_sessions[SMTP_LOOPS_MAX];   /* sessions_total by SMTP loop */
	unsigned smtp_loops;               /* how many run (for /metrics) */
	uint64_t messages_accepted;
	uint64_t duplicates;               /* resubmissions answered, not stored (submit.dedup_window) */
	uint64_t messages_refused[REFUSE_COUNT];
	uint64_t bytes_accepted;
	uint64_t tokens_issued;
	uint64_t tokens_verified;
	uint64_t tokens_refused[8];        /* by enum token_status */
	uint64_t fetches;
	uint64_t auth_ok, auth_failed;
	uint64_t auth_disabled;            /* right password, disabled login: 535 */
	uint64_t limits_refused[LIMIT_COUNT];   /* 450 4.7.1 at MAIL or RCPT, by limit */
	uint64_t pipelining_refused;       /* smtp.forbid_unauth_pipelining disconnects */
	uint64_t commit_bucket[COMMIT_BUCKETS];   /* cumulative at render time */
	uint64_t commit_count;
	uint64_t commit_sum_us;
	/* the Sent filing (server/sent/) */
	uint64_t sent_filed;               /* copies filed (appended or found there) */
	uint64_t sent_retried;             /* tries that failed and wait for another */
	uint64_t sent_failed;              /* jobs given up (lifetime, purged body) */
	uint64_t sent_pending;             /* gauge: jobs not yet filed, at the last scan */
	/* DKIM (server/dkim/), counted on the writer's signer thread */
	uint64_t dkim_signed;              /* messages signed (with one key or more) */
	uint64_t dkim_failed;              /* messages whose signing failed: relayed unsigned */
};

/* "too_big", "bare_cr_lf", ...: the label of a refusal in /metrics. */
const char *refuse_reason_name(enum refuse_reason r);
/* "user_messages_per_hour", ...: the limit's key in [limits], its label in /metrics. */
const char *limit_kind_name(enum limit_kind k);
/* Count one commit that took us microseconds from submit to commit. */
void stats_commit_latency(struct server_stats *st, uint64_t us);

#endif
