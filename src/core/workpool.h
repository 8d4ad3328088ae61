/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The worker pool: threads for work that must not run on the event loop
 * (store writes and reads, DKIM signatures, composing /send messages).  A
 * job's work happens on a worker; its done() on the loop.  Answers are
 * matched by the caller (by id), never by a pointer that may have died:
 * done() must check that the requester still exists.
 *
 * Two kinds of pool share the hand-over: one that runs each job's run()
 * (any number of threads), and a batching one (one thread) that gives
 * every job waiting when it wakes to one call, the store writer's group
 * commit.
 */
#ifndef ZMTA_WORKPOOL_H
#define ZMTA_WORKPOOL_H

#include <event2/event.h>

struct workpool_job {
	struct workpool_job *next;
	void (*run)(struct workpool_job *job);  /* worker thread; unused by a batching pool */
	void (*done)(struct workpool_job *job); /* loop thread; frees the job */
};

/* A batching pool's work: every waiting job, linked by next, in the order
 * submitted.  Returns the list (it may reorder it) for their done() calls. */
typedef struct workpool_job *(*workpool_batch_fn)(struct workpool_job *jobs, void *arg);

struct workpool;

/* Starts `threads` workers running each job's run(); done() on `base`. */
struct workpool *workpool_new(struct event_base *base, int threads);
/* Starts one worker that hands waiting jobs to `batch`, up to 1,024 at once. */
struct workpool *workpool_new_batching(struct event_base *base, workpool_batch_fn batch, void *arg);
/* Queues a job (loop thread). */
void workpool_submit(struct workpool *p, struct workpool_job *job);
/* Jobs submitted whose done() has not run yet (loop thread). */
size_t workpool_pending(const struct workpool *p);
/* Runs what is queued, delivers every done(), stops the threads. */
void workpool_free(struct workpool *p);

#endif
