/*
 * writer_signer.c: the writer's signer thread, and the key ring it signs
 * with. Signing a message's tokens (Ed25519, one per recipient and one for
 * the sender) runs beside its commit rather than before it: writer_submit
 * claims the tokens (ids, expiry, the active key) so that the writer
 * thread can store their rows at once, and the signer fills in the
 * signatures. The writer thread follows the key ring (submitctl rotates
 * and retires keys) and publishes the active key under the lock.
 */
#include "db/writer_internal.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "server/base/log.h"
#include "server/base/util.h"

/* Hand the signer the key to sign with from now on (none: no tokens). */
static void
publish_active_key(struct writer *w)
{
	const struct token_key *key = w->o.tokens ? keyring_active(&w->keys.ring) : NULL;

	pthread_mutex_lock(&w->lock);
	if (w->active.has_secret && (key == NULL || strcmp(key->kid, w->active.kid) != 0))
		w->previous = w->active;
	if (key && key->has_secret)
		w->active = *key;
	else
		sodium_memzero(&w->active, sizeof(w->active));
	pthread_mutex_unlock(&w->lock);
}

/* Reload the key ring when another connection (submitctl) changed the
 * database since we last looked; cheap enough to ask once per batch. */
void
writer_refresh_keys(struct writer *w)
{
	char err[256] = "";
	int rc = store_keys_refresh(w->db, &w->keys);

	if (rc == 0)
		return;
	if (rc == -1)
		log_err("event=keyring_load_failed error=\"%s\"", sqlite3_errmsg(w->db));
	/* Making a key takes a write transaction: only when there is no
	 * active key (`submitctl key retire`). Run after every change made by
	 * another connection (a `submitctl user add`), it took the write lock
	 * each time, and while another process held that lock the next batch
	 * waited the busy timeout twice, here and at its BEGIN. */
	if (w->o.tokens && keyring_active(&w->keys.ring) == NULL &&
	    store_key_ensure(w->db, now_unix(), err, sizeof(err)) == 1) {
		log_info("event=key_generated reason=no_active_key");
		if (store_keys_load(w->db, &w->keys.ring) == -1)
			log_err("event=keyring_load_failed error=\"%s\"", sqlite3_errmsg(w->db));
	}
	publish_active_key(w);
}

/* The claims of m's tokens that their rows need, before any signature:
 * a fresh id each and the expiry; the caller names the key. */
struct writer_token_meta *
writer_claim_tokens(const struct writer *w, const struct writer_msg *m)
{
	struct writer_token_meta *meta = xcalloc(m->nrcpt + 1, sizeof(*meta));
	int64_t exp = m->received_ms / 1000 + w->o.token_lifetime;

	for (size_t i = 0; i <= m->nrcpt; i++) {
		token_new_id(meta[i].jti);
		meta[i].exp = exp;
	}
	return meta;
}

void
writer_name_key(struct writer_token_meta *meta, size_t n, const char *kid)
{
	for (size_t i = 0; i < n; i++)
		memcpy(meta[i].kid, kid, sizeof(meta[i].kid));
}

/* Sign the tokens m->token_meta claims, with key. All or none: on a
 * failure (only a configuration the checks let through could cause one)
 * the message goes without tokens. Only the strings are written; the
 * claims may be read by the writer thread meanwhile. */
void
writer_sign_tokens(struct writer *w, struct writer_msg *m, const struct token_key *key)
{
	char tok[TOKEN_MAX_LEN + 1];

	m->tokens = xcalloc(m->nrcpt + 1, sizeof(char *));
	for (size_t i = 0; i <= m->nrcpt; i++) {
		bool sender = i == m->nrcpt;
		size_t n = token_issue_as(key, m->token_meta[i].jti, m->token_meta[i].exp, m->public_id,
		    sender ? m->envelope_from : m->rcpts[i], sender ? TOKEN_ROLE_SENDER : TOKEN_ROLE_RECIPIENT,
		    w->issuer, NULL, tok, sizeof(tok));
		if (n == 0) {
			log_err("event=token_issue_failed msgid=%s", m->public_id);
			for (size_t j = 0; j < i; j++)
				free(m->tokens[j]);
			xfreep(&m->tokens);
			return;
		}
		m->tokens[i] = xstrndup(tok, n);
	}
}

/* The signer's part: sign with the key writer_submit named. */
static void
sign_claimed(struct writer *w, struct writer_msg *m, const struct token_key *active,
    const struct token_key *previous)
{
	const char *kid = m->token_meta[0].kid;
	const struct token_key *key = strcmp(kid, active->kid) == 0 ? active
	    : previous->has_secret && strcmp(kid, previous->kid) == 0 ? previous : NULL;

	if (key == NULL || !key->has_secret) {
		/* Two rotations while one message was on its way: the writer
		 * signs it again (see writer_commit_batch) or it goes without. */
		log_warn("event=token_key_gone msgid=%s", m->public_id);
		return;
	}
	writer_sign_tokens(w, m, key);
}

/* Until the signer has finished with m, its tokens are not the writer's. */
void
writer_wait_signed(struct writer *w, struct writer_msg *m)
{
	pthread_mutex_lock(&w->lock);
	while (!m->signed_done)
		pthread_cond_wait(&w->signed_cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* Sign whatever is waiting, in arrival order, while the writer thread
 * stores the same messages; whichever finishes a message last hands it
 * back. */
static void *
signer_main(void *arg)
{
	struct writer *w = arg;
	struct token_key active, previous;

	for (;;) {
		struct writer_msg *list;
		bool posted = false;

		pthread_mutex_lock(&w->lock);
		workq_wait_locked(&w->to_sign);
		list = workq_take_all_locked(&w->to_sign);
		if (list == NULL) {
			pthread_mutex_unlock(&w->lock);
			break;          /* stopping, and nothing left */
		}
		active = w->active;
		previous = w->previous;
		w->signing = true;
		pthread_mutex_unlock(&w->lock);

		for (struct writer_msg *m = list; m; m = m->s_next)
			sign_claimed(w, m, &active, &previous);
		sodium_memzero(&active, sizeof(active));
		sodium_memzero(&previous, sizeof(previous));

		pthread_mutex_lock(&w->lock);
		for (struct writer_msg *m = list, *next; m; m = next) {
			next = m->s_next;
			m->s_next = NULL;
			m->signed_done = true;
			posted |= writer_stage_done_locked(w, m);
		}
		w->signing = false;
		pthread_cond_broadcast(&w->signed_cond);
		pthread_mutex_unlock(&w->lock);
		if (posted && w->o.notify)
			w->o.notify(w->o.notify_arg);
	}
	return NULL;
}

int
writer_signer_start(struct writer *w)
{
	if (pthread_create(&w->signer, NULL, signer_main, w) != 0)
		return -1;
	w->signer_started = true;
	pthread_setname_np(w->signer, "sd-signer");
	return 0;
}

/* It signs all it was given before it leaves. */
void
writer_signer_stop(struct writer *w)
{
	if (!w->signer_started)
		return;
	workq_close(&w->to_sign);
	pthread_join(w->signer, NULL);
}
