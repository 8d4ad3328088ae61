/* SPDX-License-Identifier: EUPL-1.2 */
/* The worker pool; see workpool.h. */
#include "core/workpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/xmalloc.h"

struct workpool {
	pthread_t *threads;
	int nthreads;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct workpool_job *todo, **todo_tail;
	struct workpool_job *done, **done_tail;
	bool stopping;
	struct event *done_ev;
	workpool_batch_fn batch; /* NULL: run each job */
	void *batch_arg;
	size_t pending; /* submitted, done() not run yet (loop thread only) */
};

/* Most jobs a batching pool runs in one batch. */
#define BATCH_MAX 1024

static void *worker_main(void *arg)
{
	struct workpool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (p->todo == NULL && !p->stopping)
			pthread_cond_wait(&p->wake, &p->lock);
		struct workpool_job *jobs = p->todo;
		if (jobs == NULL)
			break;
		if (p->batch != NULL) {
			/* What is waiting, in one go, up to BATCH_MAX jobs: a flood
			 * (a purge's writes) is cut into batches, so that a job
			 * submitted behind it (a commit) waits for one of them,
			 * not for all. */
			struct workpool_job **cut = &p->todo;
			for (size_t n = 0; n < BATCH_MAX && *cut != NULL; n++)
				cut = &(*cut)->next;
			p->todo = *cut;
			*cut = NULL;
		} else {
			p->todo = jobs->next;
			jobs->next = NULL;
		}
		if (p->todo == NULL)
			p->todo_tail = &p->todo;
		pthread_mutex_unlock(&p->lock);
		if (p->batch != NULL)
			jobs = p->batch(jobs, p->batch_arg);
		else
			jobs->run(jobs);
		pthread_mutex_lock(&p->lock);
		*p->done_tail = jobs;
		while (*p->done_tail != NULL)
			p->done_tail = &(*p->done_tail)->next;
		event_active(p->done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Finished jobs told per loop pass: a flood of them (a purge's 100,000
 * writes) does not hold the loop; the rest go in the next passes. */
#define DELIVER_STEP 1024

/* Tells up to `max` finished jobs; true when more are waiting. */
static bool deliver(struct workpool *p, size_t max)
{
	pthread_mutex_lock(&p->lock);
	struct workpool_job *jobs = p->done, **cut = &p->done;
	for (size_t n = 0; n < max && *cut != NULL; n++)
		cut = &(*cut)->next;
	p->done = *cut;
	*cut = NULL;
	if (p->done == NULL)
		p->done_tail = &p->done;
	bool more = p->done != NULL;
	pthread_mutex_unlock(&p->lock);
	while (jobs != NULL) {
		struct workpool_job *next = jobs->next;
		p->pending--;
		jobs->done(jobs);
		jobs = next;
	}
	return more;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct workpool *p = arg;
	if (deliver(p, DELIVER_STEP))
		event_active(p->done_ev, EV_READ, 0);
}

static struct workpool *pool_start(struct event_base *base, int threads, workpool_batch_fn batch,
				   void *batch_arg)
{
	struct workpool *p = xcalloc(1, sizeof(*p));
	p->batch = batch;
	p->batch_arg = batch_arg;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->todo_tail = &p->todo;
	p->done_tail = &p->done;
	p->done_ev = event_new(base, -1, 0, on_done, p);
	p->nthreads = threads;
	p->threads = xcalloc((size_t)threads, sizeof(*p->threads));
	for (int i = 0; i < threads; i++)
		if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0)
			fatal("workpool: cannot start a thread");
	return p;
}

struct workpool *workpool_new(struct event_base *base, int threads)
{
	return pool_start(base, threads, NULL, NULL);
}

struct workpool *workpool_new_batching(struct event_base *base, workpool_batch_fn batch, void *arg)
{
	return pool_start(base, 1, batch, arg);
}

size_t workpool_pending(const struct workpool *p)
{
	return p->pending;
}

void workpool_submit(struct workpool *p, struct workpool_job *job)
{
	p->pending++;
	job->next = NULL;
	pthread_mutex_lock(&p->lock);
	*p->todo_tail = job;
	p->todo_tail = &job->next;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
}

void workpool_free(struct workpool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	while (deliver(p, SIZE_MAX))
		;
	event_free(p->done_ev);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}
