/*
 * workq.c: see workq.h. The link of an element is reached through the
 * queue's offset, so one implementation serves every element type.
 */
#include "server/base/workq.h"

static inline void **
link_of(const struct workq *q, void *item)
{
	return (void **)((char *)item + q->next_off);
}

void
workq_init(struct workq *q, size_t next_off, pthread_mutex_t *lock, pthread_cond_t *cond)
{
	q->lock = lock;
	q->cond = cond;
	q->next_off = next_off;
	q->head = q->tail = NULL;
	q->closed = false;
}

void
workq_push_locked(struct workq *q, void *item)
{
	*link_of(q, item) = NULL;
	if (q->tail)
		*link_of(q, q->tail) = item;
	else
		q->head = item;
	q->tail = item;
	if (q->cond)
		pthread_cond_signal(q->cond);
}

void *
workq_take_locked(struct workq *q, size_t max, size_t *n_r)
{
	void *first = q->head, *last = first;
	size_t n = 0;

	if (first != NULL && max > 0) {
		n = 1;
		while (*link_of(q, last) != NULL && n < max) {
			last = *link_of(q, last);
			n++;
		}
		q->head = *link_of(q, last);
		if (q->head == NULL)
			q->tail = NULL;
		*link_of(q, last) = NULL;
	} else {
		first = NULL;
	}
	if (n_r)
		*n_r = n;
	return first;
}

void *
workq_take_all_locked(struct workq *q)
{
	void *list = q->head;

	q->head = q->tail = NULL;
	return list;
}

void
workq_wait_locked(struct workq *q)
{
	while (q->head == NULL && !q->closed)
		pthread_cond_wait(q->cond, q->lock);
}

void
workq_push(struct workq *q, void *item)
{
	pthread_mutex_lock(q->lock);
	workq_push_locked(q, item);
	pthread_mutex_unlock(q->lock);
}

void
workq_push_list(struct workq *q, void *first, void *last)
{
	if (first == NULL)
		return;
	pthread_mutex_lock(q->lock);
	if (q->tail)
		*link_of(q, q->tail) = first;
	else
		q->head = first;
	q->tail = last;
	if (q->cond)
		pthread_cond_broadcast(q->cond);
	pthread_mutex_unlock(q->lock);
}

void *
workq_take_all(struct workq *q)
{
	void *list;

	pthread_mutex_lock(q->lock);
	list = workq_take_all_locked(q);
	pthread_mutex_unlock(q->lock);
	return list;
}

void *
workq_pop_wait(struct workq *q)
{
	void *item;

	pthread_mutex_lock(q->lock);
	workq_wait_locked(q);
	item = workq_take_locked(q, 1, NULL);
	pthread_mutex_unlock(q->lock);
	return item;
}

void
workq_close(struct workq *q)
{
	pthread_mutex_lock(q->lock);
	q->closed = true;
	if (q->cond)
		pthread_cond_broadcast(q->cond);
	pthread_mutex_unlock(q->lock);
}
