/*
 * throttle.c: open addressing with linear probing over a fixed table, and
 * tombstone-free deletion (backward shift). Entries older than the window
 * count as absent; a window of 0 means counts never age (connection counts).
 * Every public function takes the table's mutex: the SMTP loops share the
 * tables (the AUTH failure counts; the connection counts, which the
 * runtime also guards with its conn_lock so a check and its count are one
 * step). Uncontended, the lock costs next to nothing.
 */
#include "server/base/throttle.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "server/base/util.h"

struct entry {
	char key[THROTTLE_KEY_MAX];
	int64_t count;
	int64_t last;
	bool used;
};

struct throttle {
	struct entry *v;
	size_t cap, n;
	int64_t window;
	pthread_mutex_t lock;
	unsigned char hkey[crypto_shorthash_KEYBYTES];
};

struct throttle *
throttle_new(size_t capacity, int64_t window_s)
{
	struct throttle *t = xcalloc(1, sizeof(*t));
	size_t cap = 16;

	while (cap < capacity * 2)
		cap <<= 1;
	t->v = xcalloc(cap, sizeof(*t->v));
	t->cap = cap;
	t->window = window_s;
	pthread_mutex_init(&t->lock, NULL);
	/* A keyed hash: clients choose the keys, so they must not be able to
	 * choose collisions. */
	randombytes_buf(t->hkey, sizeof(t->hkey));
	return t;
}

void
throttle_free(struct throttle **tp)
{
	if (*tp == NULL)
		return;
	pthread_mutex_destroy(&(*tp)->lock);
	free((*tp)->v);
	free(*tp);
	*tp = NULL;
}

static size_t
slot_of(const struct throttle *t, const char *key)
{
	uint64_t h;
	crypto_shorthash((unsigned char *)&h, (const unsigned char *)key, strlen(key), t->hkey);
	return (size_t)(h & (t->cap - 1));
}

static bool
stale(const struct throttle *t, const struct entry *e, int64_t now)
{
	return t->window > 0 && now - e->last > t->window;
}

static void
remove_at(struct throttle *t, size_t i)
{
	size_t j = i;

	t->v[i].used = false;
	t->n--;
	/* Backward-shift the following cluster so lookups stay correct. */
	for (;;) {
		j = (j + 1) & (t->cap - 1);
		if (!t->v[j].used)
			return;
		size_t home = slot_of(t, t->v[j].key);
		bool move = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
		if (move) {
			t->v[i] = t->v[j];
			t->v[j].used = false;
			i = j;
		}
	}
}

static struct entry *
lookup(struct throttle *t, const char *key, size_t *slot_r)
{
	size_t i = slot_of(t, key);

	while (t->v[i].used) {
		if (strcmp(t->v[i].key, key) == 0) {
			*slot_r = i;
			return &t->v[i];
		}
		i = (i + 1) & (t->cap - 1);
	}
	*slot_r = i;
	return NULL;
}

/* Keys are cut to the stored length first, so a long key still matches. */
#define NORMKEY(k, key) char k[THROTTLE_KEY_MAX]; snprintf(k, sizeof(k), "%s", key)

static int64_t
get_locked(struct throttle *t, const char *key_in, int64_t now)
{
	size_t i;
	NORMKEY(key, key_in);
	struct entry *e = lookup(t, key, &i);

	if (e == NULL)
		return 0;
	if (stale(t, e, now)) {
		remove_at(t, i);
		return 0;
	}
	return e->count;
}

/* Make room when the table is half full: drop the stalest entry near a
 * random probe start, which is cheap and keeps the load factor bounded. */
static void
evict_one(struct throttle *t)
{
	size_t start = randombytes_uniform((uint32_t)t->cap), best = SIZE_MAX;

	for (size_t k = 0; k < t->cap && k < 64; k++) {
		size_t i = (start + k) & (t->cap - 1);
		if (t->v[i].used && (best == SIZE_MAX || t->v[i].last < t->v[best].last))
			best = i;
	}
	if (best == SIZE_MAX) {
		for (size_t i = 0; i < t->cap; i++)
			if (t->v[i].used) {
				best = i;
				break;
			}
	}
	if (best != SIZE_MAX)
		remove_at(t, best);
}

static int64_t
add_locked(struct throttle *t, const char *key_in, int64_t delta, int64_t now)
{
	size_t i;
	NORMKEY(key, key_in);
	struct entry *e = lookup(t, key, &i);

	if (e != NULL && stale(t, e, now)) {
		remove_at(t, i);
		e = NULL;
	}
	if (e == NULL) {
		if (delta <= 0)
			return 0;
		if (t->n * 2 >= t->cap) {
			evict_one(t);
			lookup(t, key, &i);
		}
		e = &t->v[i];
		memset(e, 0, sizeof(*e));
		e->used = true;
		memcpy(e->key, key, sizeof(e->key));
		t->n++;
	}
	e->count += delta;
	e->last = now;
	if (e->count <= 0) {
		lookup(t, key, &i);
		remove_at(t, i);
		return 0;
	}
	return e->count;
}

int64_t
throttle_get(struct throttle *t, const char *key, int64_t now)
{
	int64_t n;

	pthread_mutex_lock(&t->lock);
	n = get_locked(t, key, now);
	pthread_mutex_unlock(&t->lock);
	return n;
}

int64_t
throttle_add(struct throttle *t, const char *key, int64_t delta, int64_t now)
{
	int64_t n;

	pthread_mutex_lock(&t->lock);
	n = add_locked(t, key, delta, now);
	pthread_mutex_unlock(&t->lock);
	return n;
}

void
throttle_clear(struct throttle *t, const char *key_in)
{
	size_t i;
	NORMKEY(key, key_in);

	pthread_mutex_lock(&t->lock);
	if (lookup(t, key, &i))
		remove_at(t, i);
	pthread_mutex_unlock(&t->lock);
}

size_t
throttle_size(struct throttle *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->n;
	pthread_mutex_unlock(&t->lock);
	return n;
}
