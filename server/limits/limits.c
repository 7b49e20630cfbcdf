/*
 * limits.c: see limits.h. Two tables of counters, one keyed by login
 * (messages and recipients) and one by client address (messages), each a
 * chained hash table with a keyed hash (clients choose addresses and
 * logins) bounded by limits.max_tracked: a full table first forgets the
 * entries whose windows are empty, then the one idle longest. Logins are
 * compared without regard to ASCII case, as login_policies does.
 *
 * The policies are a sorted array, swapped whole when a reload comes back
 * from the writer: a lookup never sees half of one.
 *
 * The SMTP loops (smtp.threads) check and count from their own threads,
 * and the main loop swaps the policies: one mutex guards the counters and
 * the policies, taken by every public function (a check is a few hash
 * lookups, so the lock is held briefly and rarely contended).
 */
#include "server/limits/limits.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "db/limits_db.h"
#include "db/writer.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/limits/ratewin.h"

struct counter {
	char *key;
	int64_t last_ms;
	struct ratewin w[2];       /* users: messages, recipients; addresses: messages */
	struct counter *next;
};

struct cmap {
	struct counter **b;
	size_t nb, n, cap;
	int64_t window_ms[2];
	unsigned char hkey[crypto_shorthash_KEYBYTES];
};

struct policy {
	char *key;                 /* lower case */
	bool disabled;
	int64_t limit[2];          /* messages, recipients; -1: the configured one */
};

struct limits {
	pthread_mutex_t lock;      /* the counters and the policies */
	int64_t limit[LIMIT_COUNT];
	int64_t window_s[LIMIT_COUNT];
	struct cmap users, ips;
	struct policy *pol;
	size_t npol;
	struct server *srv;        /* set by limits_start */
	struct event *timer;
	bool reloading;
};

/* ------------------------------------------------------------------ */
/* counters                                                           */

static void
cmap_init(struct cmap *m, size_t cap, int64_t w0_s, int64_t w1_s)
{
	m->nb = 16;
	while (m->nb < cap)
		m->nb <<= 1;
	m->b = xcalloc(m->nb, sizeof(*m->b));
	m->cap = cap;
	m->window_ms[0] = w0_s * 1000;
	m->window_ms[1] = w1_s * 1000;
	randombytes_buf(m->hkey, sizeof(m->hkey));
}

static void
cmap_free(struct cmap *m)
{
	for (size_t i = 0; i < m->nb; i++)
		for (struct counter *c = m->b[i], *next; c; c = next) {
			next = c->next;
			free(c->key);
			free(c);
		}
	free(m->b);
}

static size_t
bucket_of(const struct cmap *m, const char *key)
{
	uint64_t h;

	crypto_shorthash((unsigned char *)&h, (const unsigned char *)key, strlen(key), m->hkey);
	return (size_t)(h & (m->nb - 1));
}

/* Forget entries with nothing left in their windows; if none, the one
 * idle longest. Called when the table is full. */
static void
cmap_make_room(struct cmap *m, int64_t now_ms)
{
	struct counter **oldest = NULL;

	for (size_t i = 0; i < m->nb; i++) {
		for (struct counter **p = &m->b[i]; *p;) {
			struct counter *c = *p;
			if (ratewin_empty(&c->w[0], now_ms) && ratewin_empty(&c->w[1], now_ms)) {
				*p = c->next;
				free(c->key);
				free(c);
				m->n--;
				continue;
			}
			if (oldest == NULL || c->last_ms < (*oldest)->last_ms)
				oldest = p;
			p = &c->next;
		}
	}
	if (m->n >= m->cap && oldest != NULL) {
		struct counter *c = *oldest;
		log_warn("event=limits_table_full forgotten=%s", c->key);
		*oldest = c->next;
		free(c->key);
		free(c);
		m->n--;
	}
}

static struct counter *
cmap_get(struct cmap *m, const char *key, bool create, int64_t now_ms)
{
	size_t i = bucket_of(m, key);
	struct counter *c;

	for (c = m->b[i]; c; c = c->next)
		if (strcmp(c->key, key) == 0)
			return c;
	if (!create)
		return NULL;
	if (m->n >= m->cap)
		cmap_make_room(m, now_ms);
	c = xcalloc(1, sizeof(*c));
	c->key = xstrdup(key);
	ratewin_init(&c->w[0], m->window_ms[0]);
	ratewin_init(&c->w[1], m->window_ms[1]);
	c->next = m->b[i];
	m->b[i] = c;
	m->n++;
	return c;
}

/* The lower-case key of a login, in buf when it fits. */
static const char *
login_key(const char *login, char *buf, size_t len)
{
	size_t i;

	for (i = 0; login[i] && i + 1 < len; i++)
		buf[i] = (char)tolower((unsigned char)login[i]);
	buf[i] = '\0';
	return buf;
}

#define KEYBUF 336   /* SASL_ID_MAX (320) and a margin: longer logins share a prefix's counter */

/* ------------------------------------------------------------------ */
/* policies                                                           */

static int
policy_cmp(const void *a, const void *b)
{
	return strcmp(((const struct policy *)a)->key, ((const struct policy *)b)->key);
}

static const struct policy *
policy_of(const struct limits *l, const char *login)
{
	char buf[KEYBUF];
	struct policy k = { .key = (char *)login_key(login, buf, sizeof(buf)) };

	if (l->npol == 0)
		return NULL;
	return bsearch(&k, l->pol, l->npol, sizeof(*l->pol), policy_cmp);
}

static void
policies_free(struct policy *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(p[i].key);
	free(p);
}

struct policy_list {
	struct policy *v;
	size_t n, cap;
};

static void
policy_collect(const struct limits_db_policy *p, void *arg)
{
	struct policy_list *pl = arg;
	char buf[KEYBUF];

	if (pl->n == pl->cap) {
		pl->cap = pl->cap ? pl->cap * 2 : 16;
		pl->v = xrealloc(pl->v, pl->cap * sizeof(*pl->v));
	}
	pl->v[pl->n].key = xstrdup(login_key(p->login ? p->login : "", buf, sizeof(buf)));
	pl->v[pl->n].disabled = p->disabled;
	pl->v[pl->n].limit[0] = p->messages_per_hour;
	pl->v[pl->n].limit[1] = p->recipients_per_day;
	pl->n++;
}

static void
policies_swap(struct limits *l, struct policy_list *pl)
{
	struct policy *old;
	size_t nold;

	if (pl->n > 1)
		qsort(pl->v, pl->n, sizeof(*pl->v), policy_cmp);
	pthread_mutex_lock(&l->lock);
	old = l->pol;
	nold = l->npol;
	l->pol = pl->v;
	l->npol = pl->n;
	pthread_mutex_unlock(&l->lock);
	policies_free(old, nold);
	pl->v = NULL;
	pl->n = pl->cap = 0;
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                          */

struct limits *
limits_new(const struct config *cfg)
{
	struct limits *l = xcalloc(1, sizeof(*l));

	pthread_mutex_init(&l->lock, NULL);
	l->limit[LIMIT_USER_MESSAGES] = cfg->limits_user_messages;
	l->limit[LIMIT_USER_RECIPIENTS] = cfg->limits_user_recipients;
	l->limit[LIMIT_IP_MESSAGES] = cfg->limits_ip_messages;
	l->window_s[LIMIT_USER_MESSAGES] = cfg->limits_user_messages_window;
	l->window_s[LIMIT_USER_RECIPIENTS] = cfg->limits_user_recipients_window;
	l->window_s[LIMIT_IP_MESSAGES] = cfg->limits_ip_messages_window;
	cmap_init(&l->users, (size_t)cfg->limits_max_tracked, cfg->limits_user_messages_window,
	    cfg->limits_user_recipients_window);
	cmap_init(&l->ips, (size_t)cfg->limits_max_tracked, cfg->limits_ip_messages_window,
	    cfg->limits_ip_messages_window);
	return l;
}

void
limits_free(struct limits **lp)
{
	struct limits *l = *lp;

	if (l == NULL)
		return;
	cmap_free(&l->users);
	cmap_free(&l->ips);
	policies_free(l->pol, l->npol);
	if (l->timer)
		event_free(l->timer);
	pthread_mutex_destroy(&l->lock);
	free(l);
	*lp = NULL;
}

static void
count_accepted(const char *login, const char *client, int64_t at_ms, int64_t nrcpt, void *arg)
{
	limits_count(arg, login, client, nrcpt > 0 ? (size_t)nrcpt : 0, at_ms);
}

int
limits_load(struct limits *l, sqlite3 *db, int64_t now_ms, char *err, size_t errlen)
{
	struct policy_list pl = { 0 };
	int64_t longest = 0;
	int rc;

	for (int k = 0; k < LIMIT_COUNT; k++)
		if (l->window_s[k] > longest)
			longest = l->window_s[k];
	/* what left a window already counts in no bucket (ratewin_add) */
	rc = limits_db_accepted_since(db, now_ms - longest * 1000, count_accepted, l);
	if (rc == SQLITE_OK)
		rc = limits_db_policies(db, policy_collect, &pl);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "sending limits: %s", sqlite3_errmsg(db));
		policies_free(pl.v, pl.n);
		return -1;
	}
	policies_swap(l, &pl);
	log_info("event=limits_loaded logins=%zu addresses=%zu policies=%zu", l->users.n, l->ips.n, l->npol);
	return 0;
}

/* ------------------------------------------------------------------ */
/* reloading the policies through the writer                          */

struct reload {
	struct limits *l;
	struct writer_job job;
	struct policy_list pl;
	int rc;
};

static int
reload_run(sqlite3 *db, void *arg)
{
	struct reload *r = arg;

	r->rc = limits_db_policies(db, policy_collect, &r->pl);
	return SQLITE_OK;       /* a read: nothing to roll back */
}

static void
reload_done(struct writer_job *job)
{
	struct reload *r = job->arg;
	struct limits *l = r->l;

	l->reloading = false;
	if (job->rc != SQLITE_OK || r->rc != SQLITE_OK)
		log_err("event=limits_reload_failed error=\"%s\"", sqlite3_errstr(job->rc != SQLITE_OK ? job->rc : r->rc));
	else
		policies_swap(l, &r->pl);
	policies_free(r->pl.v, r->pl.n);
	free(r);
}

void
limits_reload(struct server *srv)
{
	struct limits *l = srv->limits;
	struct reload *r;

	if (l == NULL || l->reloading || srv->writer == NULL)
		return;
	r = xcalloc(1, sizeof(*r));
	r->l = l;
	r->job.run = reload_run;
	r->job.done = reload_done;
	r->job.arg = r;
	l->reloading = true;
	writer_job_submit(srv->writer, &r->job);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct timeval tv = { (time_t)srv->cfg->limits_reload_interval, 0 };

	limits_reload(srv);
	evtimer_add(srv->limits->timer, &tv);
}

void
limits_start(struct server *srv)
{
	struct limits *l = srv->limits;
	struct timeval tv = { (time_t)srv->cfg->limits_reload_interval, 0 };

	l->srv = srv;
	l->timer = evtimer_new(srv->base, timer_cb, srv);
	evtimer_add(l->timer, &tv);
}

void
limits_stop(struct server *srv)
{
	struct limits *l = srv->limits;

	if (l && l->timer) {
		event_free(l->timer);
		l->timer = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* checks and counts                                                  */

bool
limits_disabled(struct limits *l, const char *login)
{
	const struct policy *p;
	bool disabled;

	if (login == NULL)
		return false;
	pthread_mutex_lock(&l->lock);
	p = policy_of(l, login);
	disabled = p != NULL && p->disabled;
	pthread_mutex_unlock(&l->lock);
	return disabled;
}

/* The limit of kind for login (0: none), and whether it is the login's own. */
static int64_t
limit_for(const struct limits *l, enum limit_kind kind, const struct policy *p, bool *override_r)
{
	int i = kind == LIMIT_USER_MESSAGES ? 0 : 1;

	*override_r = false;
	if (kind != LIMIT_IP_MESSAGES && p != NULL && p->limit[i] >= 0) {
		*override_r = true;
		return p->limit[i];
	}
	return l->limit[kind];
}

static bool
refuse(const struct limits *l, enum limit_kind kind, int64_t limit, bool override, struct limits_refusal *r_)
{
	r_->kind = kind;
	r_->limit = limit;
	r_->window_s = l->window_s[kind];
	r_->override = override;
	return false;
}

static bool
check_message_locked(struct limits *l, const char *login, const char *ip, int64_t now_ms,
    struct limits_refusal *r_)
{
	char buf[KEYBUF];
	struct counter *c;
	bool own;
	int64_t lim;

	if (login != NULL) {
		lim = limit_for(l, LIMIT_USER_MESSAGES, policy_of(l, login), &own);
		c = cmap_get(&l->users, login_key(login, buf, sizeof(buf)), false, now_ms);
		if (lim > 0 && c != NULL && ratewin_sum(&c->w[0], now_ms) >= (uint64_t)lim)
			return refuse(l, LIMIT_USER_MESSAGES, lim, own, r_);
	}
	lim = l->limit[LIMIT_IP_MESSAGES];
	c = cmap_get(&l->ips, ip, false, now_ms);
	if (lim > 0 && c != NULL && ratewin_sum(&c->w[0], now_ms) >= (uint64_t)lim)
		return refuse(l, LIMIT_IP_MESSAGES, lim, false, r_);
	return true;
}

static bool
check_recipient_locked(struct limits *l, const char *login, size_t pending, int64_t now_ms,
    struct limits_refusal *r_)
{
	char buf[KEYBUF];
	struct counter *c;
	uint64_t used;
	bool own;
	int64_t lim;

	if (login == NULL)
		return true;
	lim = limit_for(l, LIMIT_USER_RECIPIENTS, policy_of(l, login), &own);
	if (lim <= 0)
		return true;
	c = cmap_get(&l->users, login_key(login, buf, sizeof(buf)), false, now_ms);
	used = c ? ratewin_sum(&c->w[1], now_ms) : 0;
	if (used + pending + 1 > (uint64_t)lim)
		return refuse(l, LIMIT_USER_RECIPIENTS, lim, own, r_);
	return true;
}

bool
limits_check_message(struct limits *l, const char *login, const char *ip, int64_t now_ms,
    struct limits_refusal *r_)
{
	bool ok;

	pthread_mutex_lock(&l->lock);
	ok = check_message_locked(l, login, ip, now_ms, r_);
	pthread_mutex_unlock(&l->lock);
	return ok;
}

bool
limits_check_recipient(struct limits *l, const char *login, size_t pending, int64_t now_ms,
    struct limits_refusal *r_)
{
	bool ok;

	pthread_mutex_lock(&l->lock);
	ok = check_recipient_locked(l, login, pending, now_ms, r_);
	pthread_mutex_unlock(&l->lock);
	return ok;
}

void
limits_count(struct limits *l, const char *login, const char *ip, size_t nrcpt, int64_t now_ms)
{
	char buf[KEYBUF];
	struct counter *c;
	uint32_t n = nrcpt > UINT32_MAX ? UINT32_MAX : (uint32_t)nrcpt;

	pthread_mutex_lock(&l->lock);
	if (login != NULL && login[0] != '\0') {
		c = cmap_get(&l->users, login_key(login, buf, sizeof(buf)), true, now_ms);
		ratewin_add(&c->w[0], now_ms, 1);
		ratewin_add(&c->w[1], now_ms, n);
		c->last_ms = now_ms;
	}
	if (ip != NULL && ip[0] != '\0') {
		c = cmap_get(&l->ips, ip, true, now_ms);
		ratewin_add(&c->w[0], now_ms, 1);
		c->last_ms = now_ms;
	}
	pthread_mutex_unlock(&l->lock);
}
