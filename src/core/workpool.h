/*
 * A pool of worker threads for CPU-bound work off the event loop (DKIM
 * signatures).  A job's run() happens on a worker; its done() on the loop.
 * Answers are matched by the caller (by id), never by a pointer that may
 * have died: done() must check that the requester still exists.
 */
#ifndef ZMTA_WORKPOOL_H
#define ZMTA_WORKPOOL_H

#include <event2/event.h>

struct workpool_job {
	struct workpool_job *next;
	void (*run)(struct workpool_job *job);  /* worker thread */
	void (*done)(struct workpool_job *job); /* loop thread; frees the job */
};

struct workpool;

/* Starts `threads` workers whose results come back on `base`. */
struct workpool *workpool_new(struct event_base *base, int threads);
/* Queues a job (loop thread). */
void workpool_submit(struct workpool *p, struct workpool_job *job);
/* Runs what is queued, delivers every done(), stops the threads. */
void workpool_free(struct workpool *p);

#endif
