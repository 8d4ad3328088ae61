/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Store workers, on the worker pool (core/workpool.c): a job runs against
 * the store on the pool's thread and comes back to the event loop, which
 * calls its `done` there.  The writer is a batching pool and group-commits:
 * every write job pending when it wakes goes into one store write, synced
 * when any of them asks for it.
 */
#ifndef ZMTA_QUEUE_WORKER_H
#define ZMTA_QUEUE_WORKER_H

#include <event2/event.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/workpool.h"
#include "queue/store.h"

struct worker_job {
	struct workpool_job pool; /* the pool's part; set by worker_submit */
	struct worker *worker;
	/* Write jobs: ops applied in one batch with every other pending write.
	 * Read jobs: run() is called on the worker thread instead. */
	struct store_op *ops;
	size_t nops;
	bool sync;
	void (*run)(struct store *store, const struct store_backend *be, struct worker_job *job);
	/* Called on the loop thread with the result; must free the job. */
	void (*done)(struct worker_job *job);
	int rc;       /* write jobs: 0 or -1 */
	char *err;    /* malloc'ed on failure */
	uint64_t req; /* the caller's request or body id */
	void *ctx;    /* the queue */
};

struct worker;

/* Job results besides 0: a store error, or refused for lack of disk space. */
#define WORKER_ERR_STORE -1
#define WORKER_ERR_SPACE -2

/*
 * Starts a thread.  `batch_writes`: a writer; else a reader running run().
 * A writer refuses jobs that add data while the file system holding `dir`
 * has less than `min_free` bytes free (deletions still run), and after a
 * failed store write it refuses every write: RocksDB must not be written
 * again after an I/O error, so the store is out of service until restart.
 */
struct worker *worker_start(struct event_base *base, struct store *store,
			    const struct store_backend *be, bool batch_writes, const char *dir,
			    uint64_t min_free);
/* Queues a job (loop thread). */
void worker_submit(struct worker *w, struct worker_job *job);
/* Why the writer's store is out of service, or NULL (any thread). */
const char *worker_broken(struct worker *w);
/* Jobs queued or running, not yet done (loop thread). */
size_t worker_backlog(const struct worker *w);
/* Whether the writer's last batch found too little disk space. */
bool worker_space_low(struct worker *w);
/* Finishes every queued job, delivers their done() calls and stops. */
void worker_stop(struct worker *w);

#endif
