/* Store worker threads with group commit; see queue_worker.h. */
#include "queue/queue_worker.h"

#include <stddef.h>
#include <stdlib.h>
#include <sys/statvfs.h>

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
	char *broken; /* why the store is out of service, or NULL */
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
/* One synced (if any job asks) store write for a list of write jobs. */
static void write_batch(struct worker *w, struct worker_job *jobs)
{
	if (jobs == NULL)
		return;
	if (w->broken != NULL) {
		fail_jobs(jobs, WORKER_ERR_STORE, w->broken);
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
	char *err = NULL;
	int rc = w->be->write(w->store, ops, n, sync, &err);
	free(ops);
	if (rc != 0) {
		w->broken = xasprintf("the queue store failed (%s) and takes no more mail until "
				      "zone-mta is restarted", err);
		log_error("store_broken", "error=\"%s\" action=\"refusing new mail; restart "
			  "zone-mta\"", err);
		fail_jobs(jobs, WORKER_ERR_STORE, w->broken);
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
static struct worker_job *run_writes(struct worker *w, struct worker_job *jobs)
{
	uint64_t avail = w->min_free > 0 ? free_space(w) : UINT64_MAX;
	if (avail >= w->min_free) {
		write_batch(w, jobs);
		return jobs;
	}
	struct workpool_job *keep = NULL, **keep_tail = &keep, *refuse = NULL, **refuse_tail = &refuse;
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
			      "is %llu MB", (unsigned long long)(avail >> 20), w->dir,
			      (unsigned long long)(w->min_free >> 20));
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

void worker_stop(struct worker *w)
{
	workpool_free(w->pool); /* runs what is queued and delivers every done() */
	free(w->dir);
	free(w->broken);
	log_debug("queue_worker", "batches=%llu jobs=%llu", (unsigned long long)w->batches,
		  (unsigned long long)w->batched_jobs);
	free(w);
}
