/*
 * auth.c: see auth.h. Workers take requests from one queue and put answers
 * on another; the event loop is woken through notify(). The cache is a
 * direct-mapped table: a slot holds one 32-byte keyed hash and an expiry,
 * so its memory is fixed and a collision only costs a re-verification.
 */
#include "server/auth/auth.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "db/store.h"
#include "server/base/log.h"
#include "server/base/util.h"
#include "server/base/workq.h"

struct cache_slot {
	unsigned char h[32];
	int64_t expires;
};

struct auth_pool {
	struct auth_pool_opts o;
	char *db_path;
	pthread_t *threads;
	int nthreads;
	pthread_mutex_t lock;               /* of both queues */
	pthread_cond_t cond;                /* a request is waiting */
	struct workq requests;              /* to the workers */
	struct workq answers;               /* back to the event loop */

	pthread_mutex_t cache_lock;
	struct cache_slot *cache;
	size_t cache_size;
	unsigned char cache_key[crypto_generichash_KEYBYTES];
};

int
auth_hash_password(const char *password, char *out)
{
	if (sodium_init() < 0)
		return -1;
	return crypto_pwhash_str(out, password, strlen(password),
	    crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

void
auth_request_free(struct auth_request **rp)
{
	struct auth_request *r = *rp;

	if (r == NULL)
		return;
	sodium_memzero(r->password, sizeof(r->password));
	free(r->canonical_login);
	free(r->challenge);
	if (r->addresses) {
		for (char **a = r->addresses; *a; a++)
			free(*a);
		free(r->addresses);
	}
	free(r);
	*rp = NULL;
}

static void
cache_key(struct auth_pool *p, const struct store_user *u, const char *password, unsigned char out[32])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, p->cache_key, sizeof(p->cache_key), 32);
	crypto_generichash_update(&st, (const unsigned char *)u->login, strlen(u->login) + 1);
	crypto_generichash_update(&st, (const unsigned char *)password, strlen(password) + 1);
	crypto_generichash_update(&st, (const unsigned char *)u->password_hash, strlen(u->password_hash));
	crypto_generichash_final(&st, out, 32);
}

static bool
cache_hit(struct auth_pool *p, const unsigned char h[32], int64_t now)
{
	bool hit = false;
	size_t i;

	if (p->cache_size == 0)
		return false;
	memcpy(&i, h, sizeof(i));
	i %= p->cache_size;
	pthread_mutex_lock(&p->cache_lock);
	if (p->cache[i].expires > now && sodium_memcmp(p->cache[i].h, h, 32) == 0)
		hit = true;
	pthread_mutex_unlock(&p->cache_lock);
	return hit;
}

static void
cache_put(struct auth_pool *p, const unsigned char h[32], int64_t now)
{
	size_t i;

	if (p->cache_size == 0 || p->o.cache_ttl == 0)
		return;
	memcpy(&i, h, sizeof(i));
	i %= p->cache_size;
	pthread_mutex_lock(&p->cache_lock);
	memcpy(p->cache[i].h, h, 32);
	p->cache[i].expires = now + p->o.cache_ttl;
	pthread_mutex_unlock(&p->cache_lock);
}

static void
verify(struct auth_pool *p, sqlite3 **dbp, struct auth_request *r)
{
	struct store_user u;
	unsigned char h[32];
	char err[256];
	int found;

	if (*dbp == NULL) {
		*dbp = store_open(p->db_path, err, sizeof(err));
		if (*dbp == NULL) {
			log_err("event=auth_db_open_failed error=\"%s\"", err);
			r->result = AUTH_TEMPFAIL;
			return;
		}
	}
	if (r->kind == AUTH_ADDRESSES) {
		if (store_login_addresses(*dbp, r->login, &r->addresses) == -1) {
			log_err("event=auth_db_failed error=\"%s\"", sqlite3_errmsg(*dbp));
			store_close(dbp);
			r->result = AUTH_TEMPFAIL;
			return;
		}
		r->canonical_login = xstrdup(r->login);
		r->result = AUTH_OK;
		return;
	}
	found = store_user_get(*dbp, r->login, &u);
	if (found == -1) {
		log_err("event=auth_db_failed error=\"%s\"", sqlite3_errmsg(*dbp));
		store_close(dbp);    /* reopen next time */
		r->result = AUTH_TEMPFAIL;
		return;
	}
	if (found == 0) {
		/* Spend the same time as a real check, so that a probe cannot
		 * tell unknown users from wrong passwords by the clock. */
		char dummy[crypto_pwhash_STRBYTES];
		auth_hash_password(r->password, dummy);
		r->result = AUTH_FAILED;
		return;
	}
	cache_key(p, &u, r->password, h);
	if (cache_hit(p, h, now_unix())) {
		r->cached = true;
		r->result = AUTH_OK;
	} else if (crypto_pwhash_str_verify(u.password_hash, r->password, strlen(r->password)) == 0) {
		cache_put(p, h, now_unix());
		r->result = AUTH_OK;
	} else {
		r->result = AUTH_FAILED;
	}
	if (r->result == AUTH_OK) {
		r->canonical_login = u.login;
		r->addresses = u.addresses ? u.addresses : xcalloc(1, sizeof(char *));
		u.login = NULL;
		u.addresses = NULL;
		u.naddresses = 0;
	}
	sodium_memzero(h, sizeof(h));
	store_user_free(&u);
}

static void *
worker_main(void *arg)
{
	struct auth_pool *p = arg;
	sqlite3 *db = NULL;

	for (;;) {
		struct auth_request *r = workq_pop_wait(&p->requests);

		if (r == NULL)
			break;          /* stopping, and nothing left */
		verify(p, &db, r);
		sodium_memzero(r->password, sizeof(r->password));
		workq_push(&p->answers, r);
		if (p->o.notify)
			p->o.notify(p->o.notify_arg);
	}
	store_close(&db);
	return NULL;
}

struct auth_pool *
auth_pool_start(const struct auth_pool_opts *o, char *err, size_t errlen)
{
	struct auth_pool *p = xcalloc(1, sizeof(*p));

	p->o = *o;
	p->db_path = xstrdup(o->db_path);
	p->cache_size = o->cache_size;
	p->cache = xcalloc(p->cache_size ? p->cache_size : 1, sizeof(*p->cache));
	randombytes_buf(p->cache_key, sizeof(p->cache_key));
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->cache_lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	workq_init(&p->requests, offsetof(struct auth_request, next), &p->lock, &p->cond);
	workq_init(&p->answers, offsetof(struct auth_request, next), &p->lock, NULL);
	p->threads = xcalloc((size_t)o->workers, sizeof(pthread_t));
	for (int i = 0; i < o->workers; i++) {
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
			snprintf(err, errlen, "cannot start auth worker %d", i);
			auth_pool_stop(&p);
			return NULL;
		}
		pthread_setname_np(p->threads[i], "sd-auth");
		p->nthreads++;
	}
	return p;
}

void
auth_pool_submit(struct auth_pool *p, struct auth_request *r)
{
	r->result = AUTH_PENDING;
	workq_push(&p->requests, r);
}

struct auth_request *
auth_pool_collect(struct auth_pool *p)
{
	return workq_take_all(&p->answers);
}

void
auth_pool_stop(struct auth_pool **pp)
{
	struct auth_pool *p = *pp;
	struct auth_request *r;

	if (p == NULL)
		return;
	workq_close(&p->requests);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	for (struct auth_request *list = workq_take_all(&p->answers); (r = list) != NULL; ) {
		list = r->next;
		auth_request_free(&r);
	}
	sodium_memzero(p->cache, (p->cache_size ? p->cache_size : 1) * sizeof(*p->cache));
	free(p->cache);
	free(p->threads);
	free(p->db_path);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->cache_lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	*pp = NULL;
}
