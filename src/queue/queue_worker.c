/* SPDX-License-Identifier: EUPL-1.2 */
/* Store worker threads with group commit; see queue_worker.h. */
#include "queue/queue_worker.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"

struct worker {
	struct workpool *pool;
	bool batch_writes;
	struct store *store;
	const struct store_backend *be;
	uint64_t batches, batched_jobs;
	char *dir;
	uint64_t min_free;
	/* why the store is out of service, or NULL: set once by the writer's
	 * thread, read by the loop's */
	char *_Atomic broken;
	atomic_bool space_low; /* the last batch found too little disk space */
	int64_t last_flush_ms; /* writer thread: flushes to free WAL space */
};

static struct worker_job *job_of(struct workpool_job *p)
{
	return (struct worker_job *)((char *)p - offsetof(struct worker_job, pool));
}

static struct worker_job *next_job(struct worker_job *j)
{
	return j->pool.next ? job_of(j->pool.next) : NULL;
}

static void fail_jobs(struct worker_job *jobs, int rc, const char *err)
{
	for (struct worker_job *j = jobs; j; j = next_job(j)) {
		j->rc = rc;
		j->err = xstrdup(err);
	}
}
/* The store is out of service until restart (writer thread). */
static void set_broken(struct worker *w, const char *why)
{
	char *msg = xasprintf("the queue store failed (%s) and takes no more mail until zone-mta "
			      "is restarted",
			      why);
	log_error("store_broken", "error=\"%s\" action=\"refusing new mail; restart zone-mta\"",
		  why);
	atomic_store(&w->broken, msg);
}

/* One synced (if any job asks) store write for a list of write jobs. */
static void write_batch(struct worker *w, struct worker_job *jobs)
{
	if (jobs == NULL)
		return;
	char *err = NULL;
	/* After a background error RocksDB must not be written (nor synced)
	 * again: it may abort on an assertion instead of failing. */
	if (atomic_load(&w->broken) == NULL && w->be->health(w->store, &err) != 0)
		set_broken(w, err);
	free(err);
	err = NULL;
	char *broken = atomic_load(&w->broken);
	if (broken != NULL) {
		fail_jobs(jobs, WORKER_ERR_STORE, broken);
		return;
	}
	size_t n = 0, count = 0;
	bool sync = false;
	for (struct worker_job *j = jobs; j; j = next_job(j), count++) {
		n += j->nops;
		sync = sync || j->sync;
	}
	struct store_op *ops = xmalloc((n ? n : 1) * sizeof(*ops));
	size_t k = 0;
	for (struct worker_job *j = jobs; j; j = next_job(j))
		for (size_t i = 0; i < j->nops; i++)
			ops[k++] = j->ops[i];
	int rc = w->be->write(w->store, ops, n, sync, &err);
	free(ops);
	if (rc != 0) {
		set_broken(w, err);
		fail_jobs(jobs, WORKER_ERR_STORE, atomic_load(&w->broken));
	} else {
		for (struct worker_job *j = jobs; j; j = next_job(j))
			j->rc = 0;
	}
	free(err);
	w->batches++;
	w->batched_jobs += count;
}

static bool job_adds_data(const struct worker_job *j)
{
	for (size_t i = 0; i < j->nops; i++)
		if (j->ops[i].kind == STORE_PUT)
			return true;
	return false;
}

/* Free bytes under the store, or UINT64_MAX when unknown. */
static uint64_t free_space(const struct worker *w)
{
	struct statvfs st;
	if (statvfs(w->dir, &st) != 0)
		return UINT64_MAX;
	return (uint64_t)st.f_bavail * st.f_frsize;
}

/* Runs write jobs; when space is short, only those that add nothing.
 * Returns the jobs, reordered when some were refused. */
/* Seconds between flushes made to free write-ahead log space. */
#define FLUSH_INTERVAL_MS 5000

static struct worker_job *run_writes(struct worker *w, struct worker_job *jobs)
{
	/* The write-ahead log may grow to wal_cap before RocksDB flushes it
	 * away: that room is kept free besides queue.minFreeSpace. */
	uint64_t need = w->min_free > 0 ? w->min_free + w->be->wal_cap : 0;
	uint64_t avail = need > 0 ? free_space(w) : UINT64_MAX;
	if (avail < need && atomic_load(&w->broken) == NULL &&
	    clock_mono_ms() - w->last_flush_ms >= FLUSH_INTERVAL_MS) {
		/* Short of space: with no write there would be no flush, and the
		 * log would keep its space for ever.  Flush, and look again. */
		w->last_flush_ms = clock_mono_ms();
		char *err = NULL;
		if (w->be->flush(w->store, &err) != 0)
			log_warn("store_flush", "error=\"%s\"", err);
		free(err);
		avail = free_space(w);
		log_info("store_flush", "reason=\"low disk space\" free_mb=%llu",
			 (unsigned long long)(avail >> 20));
	}
	atomic_store(&w->space_low, avail < need);
	if (avail >= need) {
		write_batch(w, jobs);
		return jobs;
	}
	struct workpool_job *keep = NULL, **keep_tail = &keep, *refuse = NULL,
			    **refuse_tail = &refuse;
	for (struct worker_job *j = jobs, *next; j; j = next) {
		next = next_job(j);
		j->pool.next = NULL;
		if (job_adds_data(j)) {
			*refuse_tail = &j->pool;
			refuse_tail = &j->pool.next;
		} else {
			*keep_tail = &j->pool;
			keep_tail = &j->pool.next;
		}
	}
	char *why = xasprintf("insufficient disk space: %llu MB free under %s, queue.minFreeSpace "
			      "is %llu MB (and %llu MB kept for the store's log)",
			      (unsigned long long)(avail >> 20), w->dir,
			      (unsigned long long)(w->min_free >> 20),
			      (unsigned long long)(w->be->wal_cap >> 20));
	fail_jobs(refuse ? job_of(refuse) : NULL, WORKER_ERR_SPACE, why);
	free(why);
	write_batch(w, keep ? job_of(keep) : NULL);
	*keep_tail = refuse; /* one list again, order kept within each part */
	return keep ? job_of(keep) : job_of(refuse);
}

/* The writer pool's batch: every waiting write job. */
static struct workpool_job *writes_batch(struct workpool_job *jobs, void *arg)
{
	return &run_writes(arg, job_of(jobs))->pool;
}

/* The reader pool's job. */
static void read_run(struct workpool_job *p)
{
	struct worker_job *j = job_of(p);
	j->run(j->worker->store, j->worker->be, j);
}

static void job_done(struct workpool_job *p)
{
	struct worker_job *j = job_of(p);
	j->done(j);
}

struct worker *worker_start(struct event_base *base, struct store *store,
			    const struct store_backend *be, bool batch_writes, const char *dir,
			    uint64_t min_free)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	w->dir = xstrdup(dir);
	w->min_free = min_free;
	w->store = store;
	w->be = be;
	w->batch_writes = batch_writes;
	w->pool = batch_writes ? workpool_new_batching(base, writes_batch, w)
			       : workpool_new(base, 1);
	return w;
}

void worker_submit(struct worker *w, struct worker_job *job)
{
	job->worker = w;
	job->pool.run = w->batch_writes ? NULL : read_run;
	job->pool.done = job_done;
	workpool_submit(w->pool, &job->pool);
}

size_t worker_backlog(const struct worker *w)
{
	return workpool_pending(w->pool);
}

const char *worker_broken(struct worker *w)
{
	return atomic_load(&w->broken);
}

bool worker_space_low(struct worker *w)
{
	return atomic_load(&w->space_low);
}

void worker_stop(struct worker *w)
{
	workpool_free(w->pool); /* runs what is queued and delivers every done() */
	free(w->dir);
	free(atomic_load(&w->broken));
	log_debug("queue_worker", "batches=%llu jobs=%llu", (unsigned long long)w->batches,
		  (unsigned long long)w->batched_jobs);
	free(w);
}
