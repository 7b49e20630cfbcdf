/*
 * workq.h: the locked FIFO that hands work between threads (messages to
 * the writer and its signer, jobs and audit rows, results back to the
 * event loop, passwords to the auth workers). It is intrusive: an element
 * carries its own link, a pointer to the next element at next_off inside
 * it, so a push allocates nothing and a taken batch is a plain list the
 * caller walks through that same field.
 *
 * The mutex and the condition variable belong to the owner, not to the
 * queue: several queues and the owner's own state may share one lock, so
 * that, say, the writer puts a message on two queues and counts it in a
 * single critical section. Functions ending in _locked expect the caller
 * to hold the lock; the others take it themselves.
 */
#ifndef SUBMITD_WORKQ_H
#define SUBMITD_WORKQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct workq {
	pthread_mutex_t *lock;
	pthread_cond_t *cond;       /* signalled by a push; NULL: nobody waits */
	size_t next_off;            /* offsetof(element, link) */
	void *head, *tail;
	bool closed;                /* waiters return once it is empty */
};

/* An empty queue of elements linked through next_off, guarded by lock;
 * cond (may be NULL) is signalled on every push. */
void workq_init(struct workq *q, size_t next_off, pthread_mutex_t *lock, pthread_cond_t *cond);

/* With the lock held. */
void workq_push_locked(struct workq *q, void *item);
/* Take the oldest elements, at most max of them (a list ending in NULL,
 * NULL when empty); *n_r (may be NULL) says how many. */
void *workq_take_locked(struct workq *q, size_t max, size_t *n_r);
/* Take everything, oldest first. */
void *workq_take_all_locked(struct workq *q);
/* Wait on cond until an element is queued or the queue is closed. */
void workq_wait_locked(struct workq *q);

static inline bool
workq_empty_locked(const struct workq *q)
{
	return q->head == NULL;
}

/* Taking the lock. */
void workq_push(struct workq *q, void *item);
/* Append a list first..last, already linked, as one. */
void workq_push_list(struct workq *q, void *first, void *last);
void *workq_take_all(struct workq *q);
/* The oldest element, waiting for one; NULL once closed and empty. */
void *workq_pop_wait(struct workq *q);
/* No more work: wake every waiter; those return what is left, then NULL. */
void workq_close(struct workq *q);

#endif
