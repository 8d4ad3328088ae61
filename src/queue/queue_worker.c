/* Store worker threads with group commit; see queue_worker.h. */
#include "queue/queue_worker.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/statvfs.h>

#include "core/log.h"
#include "core/xmalloc.h"

struct worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct worker_job *todo, **todo_tail; /* FIFO: order of submission */
	struct worker_job *done, **done_tail;
	bool stopping;
	bool batch_writes;
	struct store *store;
	const struct store_backend *be;
	struct event *done_ev; /* activated by the thread when jobs are done */
	uint64_t batches, batched_jobs;
	char *dir;
	uint64_t min_free;
	char *broken; /* why the store is out of service, or NULL */
};

static void fail_jobs(struct worker_job *jobs, int rc, const char *err)
{
	for (struct worker_job *j = jobs; j; j = j->next) {
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
	for (struct worker_job *j = jobs; j; j = j->next, count++) {
		n += j->nops;
		sync = sync || j->sync;
	}
	struct store_op *ops = xmalloc((n ? n : 1) * sizeof(*ops));
	size_t k = 0;
	for (struct worker_job *j = jobs; j; j = j->next)
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
		for (struct worker_job *j = jobs; j; j = j->next)
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
	struct worker_job *keep = NULL, **keep_tail = &keep, *refuse = NULL, **refuse_tail = &refuse;
	for (struct worker_job *j = jobs, *next; j; j = next) {
		next = j->next;
		j->next = NULL;
		if (job_adds_data(j)) {
			*refuse_tail = j;
			refuse_tail = &j->next;
		} else {
			*keep_tail = j;
			keep_tail = &j->next;
		}
	}
	char *why = xasprintf("insufficient disk space: %llu MB free under %s, queue.minFreeSpace "
			      "is %llu MB", (unsigned long long)(avail >> 20), w->dir,
			      (unsigned long long)(w->min_free >> 20));
	fail_jobs(refuse, WORKER_ERR_SPACE, why);
	free(why);
	write_batch(w, keep);
	*keep_tail = refuse; /* one list again, order kept within each part */
	return keep;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->todo == NULL && !w->stopping)
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->todo == NULL)
			break;
		struct worker_job *jobs = w->todo;
		w->todo = NULL;
		w->todo_tail = &w->todo;
		pthread_mutex_unlock(&w->lock);

		if (w->batch_writes) {
			jobs = run_writes(w, jobs);
		} else {
			for (struct worker_job *j = jobs; j; j = j->next)
				j->run(w->store, w->be, j);
		}

		pthread_mutex_lock(&w->lock);
		*w->done_tail = jobs;
		while (*w->done_tail)
			w->done_tail = &(*w->done_tail)->next;
		event_active(w->done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Loop thread: hand finished jobs to their owners. */
static void deliver_done(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	struct worker_job *jobs = w->done;
	w->done = NULL;
	w->done_tail = &w->done;
	pthread_mutex_unlock(&w->lock);
	while (jobs) {
		struct worker_job *next = jobs->next;
		jobs->done(jobs);
		jobs = next;
	}
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	deliver_done(arg);
}

struct worker *worker_start(struct event_base *base, struct store *store,
			    const struct store_backend *be, bool batch_writes, const char *dir,
			    uint64_t min_free)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	w->dir = xstrdup(dir);
	w->min_free = min_free;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	w->todo_tail = &w->todo;
	w->done_tail = &w->done;
	w->store = store;
	w->be = be;
	w->batch_writes = batch_writes;
	w->done_ev = event_new(base, -1, 0, on_done, w);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
		fatal("queue: cannot start a store worker thread");
	return w;
}

void worker_submit(struct worker *w, struct worker_job *job)
{
	job->next = NULL;
	pthread_mutex_lock(&w->lock);
	*w->todo_tail = job;
	w->todo_tail = &job->next;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}

void worker_stop(struct worker *w)
{
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	deliver_done(w);
	event_free(w->done_ev);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w->dir);
	free(w->broken);
	log_debug("queue_worker", "batches=%llu jobs=%llu", (unsigned long long)w->batches,
		  (unsigned long long)w->batched_jobs);
	free(w);
}
