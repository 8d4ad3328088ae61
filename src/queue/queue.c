/* SPDX-License-Identifier: EUPL-1.2 */
/* The queue on the loop side: ids, bodies, commits, reads, counters; see queue.h. */
#include "queue/queue.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/stats.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/utf8.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "msg/transform.h"
#include "queue/queue_internal.h"
#include "queue/queue_worker.h"
#include "queue/store.h"

/* A body stops reading input while this many chunks wait for the writer:
 * memory per ingest stays near (this + 1) * QUEUE_CHUNK_SIZE. */
#define BODY_MAX_INFLIGHT 2

struct zone_counts {
	struct queue_counts total;
	struct strmap *domains; /* domain → struct queue_counts */
};

struct queue_body {
	struct queue *q;
	uint64_t handle;
	char id[QUEUE_ID_LEN + 1];
	char *chunk; /* the chunk being filled */
	size_t fill;
	uint32_t chunks_sent;
	uint64_t size;
	int inflight;
	int failed; /* a chunk write failed (its QUEUE_ERR_*): the commit will fail */
	char *error;
	bool committing;
	bool committed;
	queue_commit_cb commit_cb;
	void *commit_arg;
	void (*on_drain)(void *arg);
	void *drain_arg;
};

/* A read request waiting for its answer. */
struct pending {
	queue_message_cb message_cb;
	queue_chunk_cb chunk_cb;
	queue_written_cb written_cb;
	void *arg;
};

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- jobs: a job owns copies of everything it writes --- */

struct write_job {
	struct worker_job job; /* its ops, keys and values belong to the job */
	size_t cap;
};

static struct write_job *write_job_new(struct queue *q, uint64_t req,
				       void (*done)(struct worker_job *), size_t cap)
{
	struct write_job *w = xcalloc(1, sizeof(*w));
	w->job.ops = xcalloc(cap ? cap : 1, sizeof(struct store_op));
	w->cap = cap ? cap : 1;
	w->job.done = done;
	w->job.req = req;
	w->job.ctx = q;
	return w;
}

/* Adds an op whose key and value the job takes ownership of. */
static void write_job_add(struct write_job *w, enum store_op_kind kind, enum store_cf cf, char *key,
			  size_t klen, char *val, size_t vlen)
{
	if (w->job.nops == w->cap) {
		w->cap *= 2;
		w->job.ops = xrealloc(w->job.ops, w->cap * sizeof(struct store_op));
	}
	w->job.ops[w->job.nops++] = (struct store_op){kind, cf, key, klen, val, vlen};
}

/* Moves the event rows into the job (evs is empty after). */
static void write_job_take_events(struct write_job *w, struct queue_events *evs)
{
	if (evs == NULL)
		return;
	for (size_t i = 0; i < evs->n; i++)
		write_job_add(w, STORE_PUT, STORE_CF_EVENTS, (char *)evs->ops[i].key,
			      evs->ops[i].klen, (char *)evs->ops[i].val, evs->ops[i].vlen);
	free(evs->ops);
	memset(evs, 0, sizeof(*evs));
}

static void write_job_free(struct write_job *w)
{
	for (size_t i = 0; i < w->job.nops; i++) {
		free((char *)w->job.ops[i].key);
		free((char *)w->job.ops[i].val);
	}
	free(w->job.ops);
	free(w->job.err);
	free(w);
}

/* A written job's event rows, to the event hook (queue_events_open). */
static void write_job_tell_events(struct queue *q, const struct worker_job *job)
{
	if (job->rc != 0 || q->event_hook == NULL)
		return;
	for (size_t i = 0; i < job->nops; i++) {
		const struct store_op *op = &job->ops[i];
		if (op->cf != STORE_CF_EVENTS || op->kind != STORE_PUT)
			continue;
		const char *nl = memchr(op->key, '\n', op->klen);
		q->event_hook(q->event_arg, op->key, (size_t)(nl - op->key), nl + 1,
			      op->klen - (size_t)(nl - op->key) - 1, op->val, op->vlen);
	}
}

/* --- counters --- */

void queue_counts_add(struct queue *q, const char *zone, const char *domain, int64_t queued,
		      int64_t deferred)
{
	struct zone_counts *z = strmap_get(q->zones, zone);
	if (z == NULL) {
		z = xcalloc(1, sizeof(*z));
		z->domains = strmap_new();
		strmap_put(q->zones, zone, z);
	}
	struct queue_counts *d = strmap_get(z->domains, domain);
	if (d == NULL) {
		d = xcalloc(1, sizeof(*d));
		strmap_put(z->domains, domain, d);
	}
	z->total.queued += (uint64_t)queued;
	z->total.deferred += (uint64_t)deferred;
	d->queued += (uint64_t)queued;
	d->deferred += (uint64_t)deferred;
	if (d->queued == 0 && d->deferred == 0)
		free(strmap_remove(z->domains, domain));
}

const struct queue_counts *queue_zone_counts(const struct queue *q, const char *zone,
					     const struct strmap **domains)
{
	struct zone_counts *z = strmap_get(q->zones, zone);
	if (z == NULL)
		return NULL;
	if (domains != NULL)
		*domains = z->domains;
	return &z->total;
}

const char *queue_broken(const struct queue *q)
{
	return q->writer ? worker_broken(q->writer) : NULL;
}

size_t queue_write_backlog(const struct queue *q)
{
	return q->writer ? worker_backlog(q->writer) : 0;
}

bool queue_space_low(const struct queue *q)
{
	return q->writer ? worker_space_low(q->writer) : false;
}

uint64_t queue_processed(const struct queue *q)
{
	return q->processed;
}

void queue_memory_stats(const struct queue *q, struct queue_memory_stats *st)
{
	st->hot_messages = strmap_count(q->hot);
	st->hot_bytes = q->hot_bytes;
	st->loads_hot = q->loads_hot;
	st->loads_store = q->loads_store;
}

/* --- ids --- */

void queue_id_new(struct queue *q, char id[QUEUE_ID_LEN + 1])
{
	uint64_t ms = (uint64_t)clock_wall_ms();
	if (ms > q->id_ms) {
		q->id_ms = ms;
		q->id_counter = 0;
	} else if (++q->id_counter > 0xffff) {
		/* More than 65536 ids in one millisecond: borrow the next one. */
		q->id_ms++;
		q->id_counter = 0;
	}
	snprintf(id, QUEUE_ID_LEN + 1, "%011llx%03x%04x", (unsigned long long)q->id_ms, q->id_tag,
		 q->id_counter);
}

/* --- bodies --- */

struct queue_body *queue_body_new(struct queue *q, const char *id, void (*on_drain)(void *arg),
				  void *arg)
{
	struct queue_body *b = xcalloc(1, sizeof(*b));
	b->q = q;
	b->handle = ++q->next_handle;
	memcpy(b->id, id, QUEUE_ID_LEN + 1);
	b->chunk = xmalloc(QUEUE_CHUNK_SIZE);
	b->on_drain = on_drain;
	b->drain_arg = arg;
	u64map_put(q->bodies, b->handle, b);
	return b;
}

static void chunk_done(struct worker_job *job)
{
	struct write_job *w = (struct write_job *)job;
	struct queue *q = job->ctx;
	struct queue_body *b = u64map_get(q->bodies, job->req);
	if (b != NULL) {
		bool was_busy = queue_body_busy(b);
		b->inflight--;
		if (job->rc != 0 && !b->failed) {
			b->failed = job->rc;
			b->error = xstrdup(job->err);
		}
		if (was_busy && !queue_body_busy(b) && b->on_drain)
			b->on_drain(b->drain_arg);
	}
	write_job_free(w);
}

/* Hands the filled chunk to the writer as its own job (no sync: the
 * commit's synced write makes the WAL durable up to it). */
static void body_flush(struct queue_body *b)
{
	struct write_job *w = write_job_new(b->q, b->handle, chunk_done, 1);
	char *key = xmalloc(BODY_KEY_LEN);
	body_key(key, b->id, b->chunks_sent++);
	write_job_add(w, STORE_PUT, STORE_CF_BODY, key, BODY_KEY_LEN, b->chunk, b->fill);
	b->chunk = xmalloc(QUEUE_CHUNK_SIZE);
	b->fill = 0;
	b->inflight++;
	worker_submit(b->q->writer, &w->job);
}

void queue_body_write(struct queue_body *b, const char *data, size_t len)
{
	b->size += len;
	while (len > 0) {
		size_t n = QUEUE_CHUNK_SIZE - b->fill;
		if (n > len)
			n = len;
		memcpy(b->chunk + b->fill, data, n);
		b->fill += n;
		data += n;
		len -= n;
		if (b->fill == QUEUE_CHUNK_SIZE)
			body_flush(b);
	}
}

bool queue_body_busy(const struct queue_body *b)
{
	return b->inflight >= BODY_MAX_INFLIGHT;
}

uint64_t queue_body_size(const struct queue_body *b)
{
	return b->size;
}

uint32_t queue_body_chunks(const struct queue_body *b)
{
	return b->chunks_sent;
}

const char *queue_body_tail(const struct queue_body *b, size_t *len)
{
	*len = b->fill;
	return b->chunk;
}

static void noop_done(struct worker_job *job)
{
	write_job_free((struct write_job *)job);
}

void queue_body_free(struct queue_body *b)
{
	if (b == NULL)
		return;
	u64map_remove(b->q->bodies, b->handle);
	if (!b->committing && !b->committed && b->chunks_sent > 0) {
		/* Written chunks of a message that will never be committed.  The
		 * writer runs jobs in order, so this follows their writes. */
		struct write_job *w = write_job_new(b->q, 0, noop_done, 1);
		char *from = xmalloc(BODY_KEY_LEN), *to = xmalloc(BODY_KEY_LEN);
		body_key(from, b->id, 0);
		body_key(to, b->id, UINT32_MAX);
		write_job_add(w, STORE_DELETE_RANGE, STORE_CF_BODY, from, BODY_KEY_LEN, to,
			      BODY_KEY_LEN);
		worker_submit(b->q->writer, &w->job);
	}
	free(b->chunk);
	free(b->error);
	free(b);
}

/* --- commit --- */

struct commit_job {
	struct write_job w;
	uintptr_t chunks; /* body chunks of the message */
	int body_op;      /* the op that writes chunk 0, or -1 */
	int meta_op;
	int64_t submitted_us; /* for the commit latency histogram */
	char id[QUEUE_ID_LEN + 1];
	/* what the scheduler and counters learn once durable */
	char **zones, **domains, **rcpts;
	int64_t *next;
	int64_t created;
	char *from, *user; /* the message's sender and AUTH user (or NULL) */
	size_t ndlv;
	/* a notice (queue_notice_commit): told here, it has no body handle */
	queue_commit_cb notice_cb;
	void *notice_arg;
};

/* --- hot messages ---
 *
 * A message that fits one chunk stays in memory, as written, from its
 * commit until it is finished or HOT_MAX_BYTES of newer ones push it out:
 * its first delivery, usually a few milliseconds later, then reads neither
 * the store nor a worker thread.  What is kept is exactly what the synced
 * write stored, so an answer from here equals one from the store.
 */
#define HOT_MAX_BYTES (16 << 20)

struct hot_msg {
	char id[QUEUE_ID_LEN + 1];
	char *meta; /* the stored metadata value: JSON, NUL, header block */
	size_t meta_len;
	char *body; /* chunk 0, the whole body */
	size_t body_len;
	struct hot_msg *prev, *next; /* FIFO, newest at hot_new */
};

static void hot_drop(struct queue *q, struct hot_msg *h)
{
	if (h == NULL)
		return;
	strmap_remove(q->hot, h->id);
	*(h->prev ? &h->prev->next : &q->hot_old) = h->next;
	*(h->next ? &h->next->prev : &q->hot_new) = h->prev;
	q->hot_bytes -= h->meta_len + h->body_len;
	free(h->meta);
	free(h->body);
	free(h);
}

/* Takes the body and metadata values out of a committed job. */
static void hot_add(struct queue *q, struct commit_job *c)
{
	struct store_op *body = &c->w.job.ops[c->body_op], *meta = &c->w.job.ops[c->meta_op];
	if (body->vlen + meta->vlen > HOT_MAX_BYTES / 4)
		return;
	struct hot_msg *h = xcalloc(1, sizeof(*h));
	memcpy(h->id, c->id, sizeof(h->id));
	h->meta = (char *)meta->val;
	h->meta_len = meta->vlen;
	h->body = (char *)body->val;
	h->body_len = body->vlen;
	meta->val = body->val = NULL; /* now ours: write_job_free skips them */
	/* The chunk buffer is QUEUE_CHUNK_SIZE long: keep only what is used,
	 * so that the memory held is the memory counted. */
	if (h->body_len < QUEUE_CHUNK_SIZE)
		h->body = xrealloc(h->body, h->body_len ? h->body_len : 1);
	h->prev = q->hot_new;
	*(q->hot_new ? &q->hot_new->next : &q->hot_old) = h;
	q->hot_new = h;
	q->hot_bytes += h->meta_len + h->body_len;
	strmap_put(q->hot, h->id, h);
	while (q->hot_bytes > HOT_MAX_BYTES)
		hot_drop(q, q->hot_old);
}

static void commit_done(struct worker_job *job)
{
	struct commit_job *c = (struct commit_job *)job;
	struct queue *q = job->ctx;
	int rc = job->rc;
	stats_observe(STATS_COMMIT_SECONDS, (double)(mono_us() - c->submitted_us) / 1e6);
	if (rc == 0) {
		strmap_put(q->remaining, c->id, remaining_pack(c->ndlv, c->chunks + 1));
		if (c->body_op >= 0)
			hot_add(q, c);
		for (size_t i = 0; i < c->ndlv; i++) {
			queue_counts_add(q, c->zones[i], c->domains[i], 1, 0);
			struct queue_delivery_row row = {
			    .id = c->id,
			    .seq = (unsigned)(i + 1),
			    .zone = c->zones[i],
			    .recipient = c->rcpts[i],
			    .domain = c->domains[i],
			    .created = c->created,
			    .next_attempt = c->next[i],
			    .from = c->from,
			    .user = c->user,
			};
			if (q->hook)
				q->hook(q->hook_arg, &row);
		}
	}
	write_job_tell_events(q, job);
	struct queue_body *b = job->req ? u64map_get(q->bodies, job->req) : NULL;
	if (b != NULL) {
		b->committing = false;
		b->committed = rc == 0;
		if (b->commit_cb)
			b->commit_cb(b->commit_arg, rc, job->err);
	}
	if (c->notice_cb != NULL)
		c->notice_cb(c->notice_arg, rc, job->err);
	for (size_t i = 0; i < c->ndlv; i++) {
		free(c->zones[i]);
		free(c->domains[i]);
		free(c->rcpts[i]);
	}
	free(c->zones);
	free(c->domains);
	free(c->rcpts);
	free(c->next);
	free(c->from);
	free(c->user);
	write_job_free(&c->w);
}

static char *json_text(json_t *v, size_t *len)
{
	char *s = json_dumps(v, JSON_COMPACT);
	if (s == NULL)
		fatal("queue: cannot encode JSON");
	*len = strlen(s);
	return s;
}

/* The metadata value: JSON (meta consumed), a NUL (never inside JSON
 * text), the header block. */
static char *meta_value(json_t *meta, const char *header_block, size_t header_len, size_t *len)
{
	size_t jlen;
	char *json = json_text(meta, &jlen);
	json_decref(meta);
	*len = jlen + 1 + header_len;
	char *mval = xmalloc(*len);
	memcpy(mval, json, jlen + 1);
	memcpy(mval + jlen + 1, header_block, header_len);
	free(json);
	return mval;
}

static char *dlv_key(const char *id, unsigned seq)
{
	char *key = xmalloc(DLV_KEY_LEN + 1);
	memcpy(key, id, QUEUE_ID_LEN);
	snprintf(key + QUEUE_ID_LEN, QUEUE_SEQ_LEN + 1, "%03x", seq & 0xfff);
	return key;
}

/* A commit job for `ndlv` new deliveries of message `id` with room for
 * `nops` ops. */
static struct commit_job *commit_job_new(struct queue *q, const char *id, size_t ndlv, size_t nops)
{
	struct commit_job *c = xcalloc(1, sizeof(*c));
	c->w.job.done = commit_done;
	c->w.job.ctx = q;
	c->w.job.sync = true;
	c->w.job.ops = xcalloc(nops, sizeof(struct store_op));
	c->w.cap = nops;
	c->zones = xcalloc(ndlv ? ndlv : 1, sizeof(char *));
	c->domains = xcalloc(ndlv ? ndlv : 1, sizeof(char *));
	c->rcpts = xcalloc(ndlv ? ndlv : 1, sizeof(char *));
	c->next = xcalloc(ndlv ? ndlv : 1, sizeof(int64_t));
	c->ndlv = ndlv;
	memcpy(c->id, id, QUEUE_ID_LEN);
	c->body_op = -1;
	c->created = clock_wall_ms();
	return c;
}

static void commit_job_op(struct commit_job *c, enum store_op_kind kind, enum store_cf cf,
			  char *key, size_t klen, char *val, size_t vlen)
{
	write_job_add(&c->w, kind, cf, key, klen, val, vlen);
}

/* The sender and user members of a delivery row, when known. */
static void row_sender(json_t *row, const char *from, const char *user)
{
	if (from != NULL)
		json_object_set_new(row, "from", json_string(from));
	if (user != NULL)
		json_object_set_new(row, "user", json_string(user));
}

/* The metadata and one QUEUED row per delivery. */
static void commit_job_message(struct commit_job *c, json_t *meta, const char *header_block,
			       size_t header_len, const struct queue_delivery *dlv)
{
	/* Each row names its sender and user: what operators pause and
	 * filter by, without reading the message.  (meta_value takes meta.) */
	const char *from = json_string_value(json_object_get(meta, "from"));
	const char *user = json_string_value(json_object_get(meta, "user"));
	c->from = from ? xstrdup(from) : NULL;
	c->user = user ? xstrdup(user) : NULL;
	from = c->from;
	user = c->user;
	size_t mlen;
	char *mval = meta_value(meta, header_block, header_len, &mlen);
	c->meta_op = (int)c->w.job.nops;
	commit_job_op(c, STORE_PUT, STORE_CF_META, xstrndup(c->id, QUEUE_ID_LEN), QUEUE_ID_LEN,
		      mval, mlen);
	for (size_t i = 0; i < c->ndlv; i++) {
		json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:i}", "zone", dlv[i].zone,
					"recipient", dlv[i].recipient, "domain", dlv[i].domain,
					"status", "QUEUED", "created", (json_int_t)c->created,
					"next", (json_int_t)dlv[i].next_attempt, "attempts", 0);
		row_sender(row, from, user);
		size_t rlen;
		char *rval = json_text(row, &rlen);
		json_decref(row);
		commit_job_op(c, STORE_PUT, STORE_CF_DLV, dlv_key(c->id, (unsigned)(i + 1)),
			      DLV_KEY_LEN, rval, rlen);
		c->zones[i] = xstrdup(dlv[i].zone);
		c->domains[i] = xstrdup(dlv[i].domain);
		c->rcpts[i] = xstrdup(dlv[i].recipient);
		c->next[i] = dlv[i].next_attempt;
	}
}

void queue_message_commit(struct queue_body *b, json_t *meta, const char *header_block,
			  size_t header_len, const struct queue_delivery *dlv, size_t ndlv,
			  struct queue_events *evs, queue_commit_cb cb, void *arg)
{
	struct queue *q = b->q;
	b->commit_cb = cb;
	b->commit_arg = arg;
	if (b->failed) {
		queue_events_clear(evs);
		json_decref(meta);
		cb(arg, b->failed, b->error);
		return;
	}
	b->committing = true;

	struct commit_job *c = commit_job_new(q, b->id, ndlv, ndlv + 2);
	c->w.job.req = b->handle;
	if (b->fill > 0 || b->chunks_sent == 0) {
		if (b->chunks_sent == 0)
			c->body_op = (int)c->w.job.nops;
		char *key = xmalloc(BODY_KEY_LEN);
		body_key(key, b->id, b->chunks_sent++);
		commit_job_op(c, STORE_PUT, STORE_CF_BODY, key, BODY_KEY_LEN, b->chunk, b->fill);
		b->chunk = NULL;
		b->fill = 0;
	}
	json_object_set_new(meta, "bodySize", json_integer((json_int_t)b->size));
	commit_job_message(c, meta, header_block, header_len, dlv);
	write_job_take_events(&c->w, evs);
	c->chunks = b->chunks_sent;
	c->submitted_us = mono_us();
	worker_submit(q->writer, &c->w.job);
}

/* --- delivery outcomes --- */

static void outcome_done(struct worker_job *job)
{
	write_job_tell_events(job->ctx, job);
	if (job->rc != 0)
		log_error("queue_update", "error=\"%s\"", job->err ? job->err : "?");
	write_job_free((struct write_job *)job);
}

/* At most this many ops finish one delivery: its row and its attempts,
 * and with the last the metadata and the body (point deletes or a range). */
#define FINISH_OPS_MAX (3 + POINT_DELETE_MAX)

/* Attempt rows: id ‖ seq (3 hex) ‖ attempt number (4 hex). */
#define ATTEMPT_KEY_LEN (DLV_KEY_LEN + 4)

static char *attempt_key(const char *id, unsigned seq, unsigned n)
{
	char *key = xmalloc(ATTEMPT_KEY_LEN + 1);
	snprintf(key, ATTEMPT_KEY_LEN + 1, "%.*s%03x%04x", QUEUE_ID_LEN, id, seq & 0xfff,
		 n & 0xffff);
	return key;
}

/*
 * The ops that finish delivery seq of message id into ops (room for
 * FINISH_OPS_MAX; keys malloc'ed), and the bookkeeping in memory that goes
 * with them, done now: the caller writes them.  Returns how many.
 */
static size_t finish_ops(struct queue *q, struct store_op *ops, const char *id, unsigned seq,
			 const char *zone, const char *domain, bool was_deferred)
{
	size_t n = 0;
	ops[n++] = (struct store_op){STORE_DELETE, STORE_CF_DLV, dlv_key(id, seq),
				     DLV_KEY_LEN,  NULL,         0};
	if (was_deferred) /* only a deferral writes attempts */
		ops[n++] = (struct store_op){STORE_DELETE_RANGE,           STORE_CF_ATTEMPTS,
					     attempt_key(id, seq, 0),      ATTEMPT_KEY_LEN,
					     attempt_key(id, seq, 0xffff), ATTEMPT_KEY_LEN};
	void *packed = strmap_get(q->remaining, id);
	uintptr_t left = remaining_left(packed), chunks1 = remaining_chunks1(packed);
	if (left <= 1) {
		/* The last delivery: the message goes with it. */
		strmap_remove(q->remaining, id);
		hot_drop(q, strmap_get(q->hot, id));
		ops[n++] = (struct store_op){
		    STORE_DELETE, STORE_CF_META, xstrndup(id, QUEUE_ID_LEN), QUEUE_ID_LEN, NULL, 0};
		if (chunks1 >= 1 && chunks1 - 1 <= POINT_DELETE_MAX) {
			for (uintptr_t i = 0; i + 1 < chunks1; i++) {
				char *key = xmalloc(BODY_KEY_LEN);
				body_key(key, id, (uint32_t)i);
				ops[n++] = (struct store_op){STORE_DELETE, STORE_CF_BODY, key,
							     BODY_KEY_LEN, NULL,          0};
			}
		} else {
			char *from = xmalloc(BODY_KEY_LEN), *to = xmalloc(BODY_KEY_LEN);
			body_key(from, id, 0);
			body_key(to, id, UINT32_MAX);
			ops[n++] = (struct store_op){
			    STORE_DELETE_RANGE, STORE_CF_BODY, from, BODY_KEY_LEN, to,
			    BODY_KEY_LEN};
		}
	} else {
		strmap_put(q->remaining, id, remaining_pack(left - 1, chunks1));
	}
	queue_counts_add(q, zone, domain, was_deferred ? 0 : -1, was_deferred ? -1 : 0);
	q->processed++;
	return n;
}

void queue_delivery_finish(struct queue *q, const char *id, unsigned seq, const char *zone,
			   const char *domain, bool was_deferred, struct queue_events *evs)
{
	struct write_job *w = write_job_new(q, 0, outcome_done,
					    FINISH_OPS_MAX + (evs != NULL ? evs->n : 0));
	w->job.nops = finish_ops(q, w->job.ops, id, seq, zone, domain, was_deferred);
	write_job_take_events(w, evs);
	worker_submit(q->writer, &w->job);
}

void queue_notice_commit(struct queue *q, const char *id, json_t *meta, const char *header_block,
			 size_t header_len, const char *body, size_t body_len,
			 const struct queue_delivery *dlv, const struct queue_finished *fin,
			 size_t nfin, struct queue_events *evs, queue_commit_cb cb, void *arg)
{
	size_t chunks = body_len / QUEUE_CHUNK_SIZE + (body_len % QUEUE_CHUNK_SIZE != 0);
	if (chunks == 0)
		chunks = 1;
	struct commit_job *c = commit_job_new(q, id, 1, chunks + 2 + nfin * FINISH_OPS_MAX);
	c->notice_cb = cb;
	c->notice_arg = arg;
	for (size_t i = 0; i < chunks; i++) {
		size_t off = i * QUEUE_CHUNK_SIZE;
		size_t n = body_len - off < QUEUE_CHUNK_SIZE ? body_len - off : QUEUE_CHUNK_SIZE;
		char *key = xmalloc(BODY_KEY_LEN), *val = xmalloc(n ? n : 1);
		body_key(key, id, (uint32_t)i);
		memcpy(val, body + off, n);
		if (chunks == 1)
			c->body_op = (int)c->w.job.nops;
		commit_job_op(c, STORE_PUT, STORE_CF_BODY, key, BODY_KEY_LEN, val, n);
	}
	json_object_set_new(meta, "bodySize", json_integer((json_int_t)body_len));
	commit_job_message(c, meta, header_block, header_len, dlv);
	for (size_t i = 0; i < nfin; i++)
		c->w.job.nops += finish_ops(q, c->w.job.ops + c->w.job.nops, fin[i].id, fin[i].seq,
					    fin[i].zone, fin[i].domain, fin[i].was_deferred);
	write_job_take_events(&c->w, evs);
	c->chunks = chunks;
	c->submitted_us = mono_us();
	worker_submit(q->writer, &c->w.job);
}

/* A delivery row's JSON: QUEUED, or DEFERRED with its attempts (the last
 * at `last` with `response`). */
static char *row_value(const struct queue_delivery_row *row, int64_t last, const char *response,
		       size_t *len)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:i}", "zone", row->zone, "recipient",
			      row->recipient, "domain", row->domain, "status",
			      row->deferred ? "DEFERRED" : "QUEUED", "created",
			      (json_int_t)row->created, "next", (json_int_t)row->next_attempt,
			      "attempts", row->attempts);
	if (j == NULL)
		fatal("queue: cannot encode a delivery row");
	if (row->deferred) {
		char *clean = utf8_sanitize(response ? response : "",
					    strlen(response ? response : ""));
		json_object_set_new(j, "deferred",
				    json_pack("{s:I, s:i, s:I, s:I, s:s}", "first",
					      (json_int_t)row->first_failure, "count",
					      row->attempts, "last", (json_int_t)last, "next",
					      (json_int_t)row->next_attempt, "response", clean));
		free(clean);
	}
	if (row->local_address != NULL)
		json_object_set_new(j, "local", json_string(row->local_address));
	row_sender(j, row->from, row->user);
	if (row->held)
		json_object_set_new(j, "held", json_true());
	char *val = json_text(j, len);
	json_decref(j);
	return val;
}

void queue_delivery_defer(struct queue *q, const struct queue_delivery_row *row, bool was_deferred,
			  const struct queue_attempt *a, struct queue_events *evs)
{
	size_t len;
	char *val = row_value(row, a->time, a->response, &len);
	struct write_job *w = write_job_new(q, 0, outcome_done, 2 + (evs != NULL ? evs->n : 0));
	write_job_add(w, STORE_PUT, STORE_CF_DLV, dlv_key(row->id, row->seq), DLV_KEY_LEN, val,
		      len);
	json_t *j = json_pack("{s:I, s:s?, s:s?, s:s?, s:s?}", "time", (json_int_t)a->time, "mx",
			      a->mx, "remoteAddress", a->remote_address, "localAddress",
			      a->local_address, "tls", a->tls);
	char *clean = utf8_sanitize(a->response ? a->response : "",
				    strlen(a->response ? a->response : ""));
	json_object_set_new(j, "response", json_string(clean));
	free(clean);
	size_t alen;
	char *aval = json_text(j, &alen);
	json_decref(j);
	write_job_add(w, STORE_PUT, STORE_CF_ATTEMPTS,
		      attempt_key(row->id, row->seq, (unsigned)row->attempts), ATTEMPT_KEY_LEN,
		      aval, alen);
	write_job_take_events(w, evs);
	if (!was_deferred)
		queue_counts_add(q, row->zone, row->domain, -1, 1);
	worker_submit(q->writer, &w->job);
}

void queue_delivery_move(struct queue *q, const struct queue_delivery_row *row,
			 const char *from_zone)
{
	int64_t queued = row->deferred ? 0 : 1, deferred = row->deferred ? 1 : 0;
	queue_counts_add(q, from_zone, row->domain, -queued, -deferred);
	queue_counts_add(q, row->zone, row->domain, queued, deferred);
	queue_delivery_rewrite(q, row);
}

void queue_delivery_rewrite(struct queue *q, const struct queue_delivery_row *row)
{
	size_t len;
	char *val = row_value(row, row->last_attempt, row->response, &len);
	struct write_job *w = write_job_new(q, 0, outcome_done, 1);
	w->job.sync = true;
	write_job_add(w, STORE_PUT, STORE_CF_DLV, dlv_key(row->id, row->seq), DLV_KEY_LEN, val,
		      len);
	worker_submit(q->writer, &w->job);
}

/* --- events --- */

static void events_push(struct queue_events *evs, struct store_op op)
{
	if (evs->n == evs->cap) {
		evs->cap = evs->cap ? evs->cap * 2 : 4;
		evs->ops = xrealloc(evs->ops, evs->cap * sizeof(*evs->ops));
	}
	evs->ops[evs->n++] = op;
}

void queue_event_add(struct queue_events *evs, const char *endpoint, const char *id,
		     const char *json, size_t len)
{
	size_t elen = strlen(endpoint), ilen = strlen(id);
	char *key = xmalloc(elen + 1 + ilen);
	memcpy(key, endpoint, elen);
	key[elen] = '\n';
	memcpy(key + elen + 1, id, ilen);
	char *val = xmalloc(len ? len : 1);
	memcpy(val, json, len);
	events_push(evs,
		    (struct store_op){STORE_PUT, STORE_CF_EVENTS, key, elen + 1 + ilen, val, len});
}

void queue_events_move(struct queue_events *to, struct queue_events *from)
{
	for (size_t i = 0; i < from->n; i++)
		events_push(to, from->ops[i]);
	free(from->ops);
	memset(from, 0, sizeof(*from));
}

void queue_events_clear(struct queue_events *evs)
{
	if (evs == NULL)
		return;
	for (size_t i = 0; i < evs->n; i++) {
		free((char *)evs->ops[i].key);
		free((char *)evs->ops[i].val);
	}
	free(evs->ops);
	memset(evs, 0, sizeof(*evs));
}

void queue_events_write(struct queue *q, struct queue_events *evs)
{
	if (evs->n == 0)
		return;
	struct write_job *w = write_job_new(q, 0, outcome_done, evs->n);
	write_job_take_events(w, evs);
	worker_submit(q->writer, &w->job);
}

struct event_scan {
	struct queue *q;
	size_t count;
};

static int scan_event(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct event_scan *es = arg;
	const char *nl = memchr(key, '\n', klen);
	if (nl == NULL)
		return 0; /* not ours: left alone */
	es->q->event_hook(es->q->event_arg, key, (size_t)(nl - key), nl + 1,
			  klen - (size_t)(nl - key) - 1, val, vlen);
	es->count++;
	return 0;
}

ssize_t queue_events_open(struct queue *q, queue_event_hook hook, void *arg, char **err)
{
	q->event_hook = hook;
	q->event_arg = arg;
	struct event_scan es = {q, 0};
	if (q->be->scan(q->store, STORE_CF_EVENTS, NULL, 0, scan_event, &es, err) != 0)
		return -1;
	return (ssize_t)es.count;
}

void queue_events_stop(struct queue *q)
{
	q->event_hook = NULL;
	q->event_arg = NULL;
}

void queue_events_delete(struct queue *q, const char *endpoint, const char *const *ids, size_t n)
{
	if (n == 0)
		return;
	struct write_job *w = write_job_new(q, 0, outcome_done, n);
	size_t elen = strlen(endpoint);
	for (size_t i = 0; i < n; i++) {
		size_t ilen = strlen(ids[i]);
		char *key = xmalloc(elen + 1 + ilen);
		memcpy(key, endpoint, elen);
		key[elen] = '\n';
		memcpy(key + elen + 1, ids[i], ilen);
		write_job_add(w, STORE_DELETE, STORE_CF_EVENTS, key, elen + 1 + ilen, NULL, 0);
	}
	worker_submit(q->writer, &w->job);
}

/* --- reads --- */

struct read_job {
	struct worker_job job;
	char id[QUEUE_ID_LEN + 1];
	uint32_t index;
	enum store_cf cf; /* queue_row_get */
	char *key;
	char *val;
	size_t vlen;
	struct queue_message msg;
};

static uint64_t request_new(struct queue *q, queue_message_cb mcb, queue_chunk_cb ccb, void *arg)
{
	struct pending *p = xcalloc(1, sizeof(*p));
	p->message_cb = mcb;
	p->chunk_cb = ccb;
	p->arg = arg;
	uint64_t id = ++q->next_handle;
	u64map_put(q->requests, id, p);
	return id;
}

static void written_done(struct worker_job *job)
{
	struct queue *q = job->ctx;
	struct pending *p = u64map_remove(q->requests, job->req);
	if (p != NULL)
		p->written_cb(p->arg, job->rc, job->err);
	free(p);
	write_job_free((struct write_job *)job);
}

uint64_t queue_after_writes(struct queue *q, queue_written_cb cb, void *arg)
{
	uint64_t id = request_new(q, NULL, NULL, arg);
	((struct pending *)u64map_get(q->requests, id))->written_cb = cb;
	/* No ops: the writer runs jobs in order, so this one is done once
	 * every write submitted before it is. */
	struct write_job *w = write_job_new(q, id, written_done, 0);
	worker_submit(q->writer, &w->job);
	return id;
}

uint64_t queue_row_write(struct queue *q, enum store_cf cf, const char *key, const char *val,
			 queue_written_cb cb, void *arg)
{
	uint64_t id = 0;
	if (cb != NULL) {
		id = request_new(q, NULL, NULL, arg);
		((struct pending *)u64map_get(q->requests, id))->written_cb = cb;
	}
	struct write_job *w = write_job_new(q, id, cb != NULL ? written_done : outcome_done, 1);
	w->job.sync = true;
	write_job_add(w, val != NULL ? STORE_PUT : STORE_DELETE, cf, xstrdup(key), strlen(key),
		      val != NULL ? xstrdup(val) : NULL, val != NULL ? strlen(val) : 0);
	worker_submit(q->writer, &w->job);
	return id;
}

int queue_rows_scan(struct queue *q, enum store_cf cf, store_scan_cb cb, void *arg, char **err)
{
	return q->be->scan(q->store, cf, NULL, 0, cb, arg, err);
}

void queue_set_suppressions(struct queue *q, struct suppressions *s)
{
	q->suppressions = s;
}

struct suppressions *queue_suppressions(const struct queue *q)
{
	return q->suppressions;
}

void queue_request_cancel(struct queue *q, uint64_t req)
{
	free(u64map_remove(q->requests, req));
}

static int collect_row(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	json_t *rows = arg;
	json_t *row = json_loadb(val, vlen, 0, NULL);
	if (row == NULL || klen != DLV_KEY_LEN)
		return 0; /* unreadable rows are skipped (and logged by the caller) */
	json_object_set_new(row, "seq", json_stringn(key + QUEUE_ID_LEN, QUEUE_SEQ_LEN));
	json_array_append_new(rows, row);
	return 0;
}

/* Splits the metadata value in r->val into JSON and header block; false
 * (job->rc -1) when the JSON is unreadable. */
static bool meta_split(struct read_job *r)
{
	size_t jlen = strnlen(r->val, r->vlen);
	r->msg.meta = jlen < r->vlen ? json_loadb(r->val, jlen, 0, NULL) : NULL;
	if (r->msg.meta == NULL) {
		r->job.rc = -1;
		r->job.err = xstrdup("unreadable message metadata");
		return false;
	}
	r->msg.header_block = r->val + jlen + 1;
	r->msg.header_len = r->vlen - jlen - 1;
	return true;
}

/* Worker: reads the metadata value and splits it; sets job->rc. */
static bool meta_read(struct store *s, const struct store_backend *be, struct read_job *r)
{
	struct worker_job *job = &r->job;
	job->rc = be->get(s, STORE_CF_META, r->id, QUEUE_ID_LEN, &r->val, &r->vlen, &job->err);
	return job->rc == 1 && meta_split(r);
}

/* An attempt row into the `history` of its delivery (rows in seq order,
 * attempts in theirs). */
static int collect_attempt(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	json_t *rows = arg;
	json_t *a = klen == ATTEMPT_KEY_LEN ? json_loadb(val, vlen, 0, NULL) : NULL;
	size_t i;
	json_t *row;
	json_array_foreach (rows, i, row) {
		const char *seq = json_string_value(json_object_get(row, "seq"));
		if (a == NULL || seq == NULL || memcmp(seq, key + QUEUE_ID_LEN, QUEUE_SEQ_LEN) != 0)
			continue;
		json_t *list = json_object_get(row, "history");
		if (list == NULL)
			json_object_set_new(row, "history", list = json_array());
		json_array_append(list, a);
		break;
	}
	json_decref(a);
	return 0;
}

static void message_run(struct store *s, const struct store_backend *be, struct worker_job *job)
{
	struct read_job *r = (struct read_job *)job;
	r->msg.deliveries = json_array();
	if (meta_read(s, be, r) && (be->scan(s, STORE_CF_DLV, r->id, QUEUE_ID_LEN, collect_row,
					     r->msg.deliveries, &job->err) != 0 ||
				    be->scan(s, STORE_CF_ATTEMPTS, r->id, QUEUE_ID_LEN,
					     collect_attempt, r->msg.deliveries, &job->err) != 0))
		job->rc = -1;
}

static void read_job_free(struct read_job *r)
{
	free(r->val);
	free(r->job.err);
	free(r->msg.body);
	json_decref(r->msg.meta);
	json_decref(r->msg.deliveries);
	free(r);
}

static void message_done(struct worker_job *job)
{
	struct read_job *r = (struct read_job *)job;
	struct queue *q = job->ctx;
	struct pending *p = u64map_remove(q->requests, job->req);
	if (job->rc < 0)
		log_error("queue_read", "id=%s error=\"%s\"", r->id, job->err ? job->err : "?");
	if (p != NULL)
		p->message_cb(p->arg, job->rc, job->rc == 1 ? &r->msg : NULL);
	free(p);
	read_job_free(r);
}

uint64_t queue_message_get(struct queue *q, const char *id, queue_message_cb cb, void *arg)
{
	struct read_job *r = xcalloc(1, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", id);
	r->job.run = message_run;
	r->job.done = message_done;
	r->job.ctx = q;
	r->job.req = request_new(q, cb, NULL, arg);
	worker_submit(q->reader, &r->job);
	return r->job.req;
}

/* --- loads for delivery --- */

struct load_job {
	struct read_job r;
	unsigned hashes;    /* bits 1 << enum dkim_canon */
	unsigned transform; /* TRANSFORM_*: hash the body as sent */
	struct transform *tf;
	struct dkim_body *hash[2];
	queue_load_cb cb;
	struct load_job *next_ready; /* answered from memory: q->hot_ready */
	int64_t asked_us;            /* for STATS_LOAD_SECONDS */
};

static void hash_bytes(void *arg, const char *data, size_t len)
{
	struct load_job *l = arg;
	for (int i = 0; i < 2; i++)
		if (l->hash[i] != NULL)
			dkim_body_update(l->hash[i], data, len);
}

static int hash_chunk(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct load_job *l = arg;
	(void)key;
	if (klen != BODY_KEY_LEN)
		return 0;
	if (l->tf != NULL)
		transform_feed(l->tf, val, vlen);
	else
		hash_bytes(l, val, vlen);
	return 0;
}

/* Worker: the body hashes asked for that the metadata lacks. */
static void load_hashes(struct store *s, const struct store_backend *be, struct load_job *l)
{
	static const char *const names[2] = {
	    [DKIM_CANON_SIMPLE] = "bodyHashSimple", [DKIM_CANON_RELAXED] = "bodyHash"};
	json_t *dkim = json_object_get(l->r.msg.meta, "dkim");
	if (!json_is_object(dkim)) {
		dkim = json_object();
		json_object_set_new(l->r.msg.meta, "dkim", dkim);
	}
	bool any = false;
	for (int i = 0; i < 2; i++) {
		if ((l->hashes & (1u << i)) &&
		    (l->transform != 0 || !json_is_string(json_object_get(dkim, names[i])))) {
			l->hash[i] = dkim_body_new((enum dkim_canon)i);
			dkim_body_skip_separator(l->hash[i]);
			any = true;
		}
	}
	if (!any)
		return;
	if (l->transform != 0) {
		char *h;
		size_t hlen;
		l->tf = transform_new(l->transform, l->r.msg.header_block, l->r.msg.header_len, &h,
				      &hlen, hash_bytes, l);
		free(h);
	}
	int rc = be->scan(s, STORE_CF_BODY, l->r.id, QUEUE_ID_LEN, hash_chunk, l, &l->r.job.err);
	if (l->tf != NULL)
		transform_end(l->tf);
	transform_free(l->tf);
	l->tf = NULL;
	if (rc != 0) {
		l->r.job.rc = -1;
		return;
	}
	for (int i = 0; i < 2; i++) {
		if (l->hash[i] == NULL)
			continue;
		char hash[45];
		dkim_body_final(l->hash[i], hash);
		json_object_set_new(dkim, names[i], json_string(hash));
	}
}

static void load_run(struct store *s, const struct store_backend *be, struct worker_job *job)
{
	struct load_job *l = (struct load_job *)job;
	struct read_job *r = &l->r;
	if (!meta_read(s, be, r))
		return;
	char key[BODY_KEY_LEN];
	body_key(key, r->id, 0);
	int rc = be->get(s, STORE_CF_BODY, key, BODY_KEY_LEN, &r->msg.body, &r->msg.body_len,
			 &job->err);
	if (rc < 0) {
		job->rc = -1;
		return;
	}
	if (l->hashes != 0)
		load_hashes(s, be, l);
}

static void load_done(struct worker_job *job)
{
	struct load_job *l = (struct load_job *)job;
	struct queue *q = job->ctx;
	struct pending *p = u64map_remove(q->requests, job->req);
	if (job->rc < 0)
		log_error("queue_read", "id=%s error=\"%s\"", l->r.id, job->err ? job->err : "?");
	stats_observe(STATS_LOAD_SECONDS, (double)(mono_us() - l->asked_us) / 1e6);
	if (p != NULL)
		l->cb(p->arg, job->rc, job->rc == 1 ? &l->r.msg : NULL);
	free(p);
	for (int i = 0; i < 2; i++)
		dkim_body_free(l->hash[i]);
	read_job_free(&l->r);
}

static void hot_answer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct queue *q = arg;
	struct load_job *ready = q->hot_ready;
	q->hot_ready = NULL;
	while (ready != NULL) {
		struct load_job *next = ready->next_ready;
		load_done(&ready->r.job);
		ready = next;
	}
}

/* Answers a load from memory when the message is hot; false if not. */
static bool hot_load(struct queue *q, struct load_job *l)
{
	struct hot_msg *h = strmap_get(q->hot, l->r.id);
	if (h == NULL || l->hashes != 0)
		return false;
	struct read_job *r = &l->r;
	r->val = xmalloc(h->meta_len);
	memcpy(r->val, h->meta, h->meta_len);
	r->vlen = h->meta_len;
	if (!meta_split(r)) {
		/* Not reached (we wrote it): leave it to the store path to report. */
		free(r->val);
		free(r->job.err);
		r->val = r->job.err = NULL;
		r->vlen = 0;
		r->job.rc = 0;
		return false;
	}
	if (remaining_left(strmap_get(q->remaining, h->id)) <= 1) {
		/* The only delivery left: it takes the body. */
		r->msg.body = h->body;
		r->msg.body_len = h->body_len;
		h->body = NULL;
		q->hot_bytes -= h->body_len;
		h->body_len = 0;
		hot_drop(q, h);
	} else {
		r->msg.body = xmalloc(h->body_len ? h->body_len : 1);
		memcpy(r->msg.body, h->body, h->body_len);
		r->msg.body_len = h->body_len;
	}
	r->job.rc = 1;
	l->next_ready = q->hot_ready;
	q->hot_ready = l;
	event_active(q->hot_ev, EV_READ, 0);
	return true;
}

static void hot_free_all(struct queue *q)
{
	while (q->hot_old != NULL)
		hot_drop(q, q->hot_old);
	strmap_free(q->hot);
	/* Answers not given yet are dropped: nobody waits for them any more. */
	while (q->hot_ready != NULL) {
		struct load_job *next = q->hot_ready->next_ready;
		free(u64map_remove(q->requests, q->hot_ready->r.job.req));
		read_job_free(&q->hot_ready->r);
		q->hot_ready = next;
	}
	event_free(q->hot_ev);
}

uint64_t queue_message_load(struct queue *q, const char *id, unsigned hashes, unsigned transform,
			    queue_load_cb cb, void *arg)
{
	struct load_job *l = xcalloc(1, sizeof(*l));
	snprintf(l->r.id, sizeof(l->r.id), "%s", id);
	l->hashes = hashes & 3u;
	l->transform = l->hashes != 0 ? transform : 0;
	l->cb = cb;
	l->asked_us = mono_us();
	l->r.job.run = load_run;
	l->r.job.done = load_done;
	l->r.job.ctx = q;
	l->r.job.req = request_new(q, NULL, NULL, arg);
	if (hot_load(q, l)) {
		q->loads_hot++;
	} else {
		q->loads_store++;
		worker_submit(q->reader, &l->r.job);
	}
	return l->r.job.req;
}

static void chunk_run(struct store *s, const struct store_backend *be, struct worker_job *job)
{
	struct read_job *r = (struct read_job *)job;
	char key[BODY_KEY_LEN];
	body_key(key, r->id, r->index);
	job->rc = be->get(s, STORE_CF_BODY, key, BODY_KEY_LEN, &r->val, &r->vlen, &job->err);
}

static void chunk_read_done(struct worker_job *job)
{
	struct read_job *r = (struct read_job *)job;
	struct queue *q = job->ctx;
	struct pending *p = u64map_remove(q->requests, job->req);
	if (job->rc < 0)
		log_error("queue_read", "id=%s chunk=%u error=\"%s\"", r->id, r->index,
			  job->err ? job->err : "?");
	if (p != NULL)
		p->chunk_cb(p->arg, job->rc, r->val, r->vlen);
	free(p);
	read_job_free(r);
}

uint64_t queue_chunk_get(struct queue *q, const char *id, uint32_t index, queue_chunk_cb cb,
			 void *arg)
{
	struct read_job *r = xcalloc(1, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", id);
	r->index = index;
	r->job.run = chunk_run;
	r->job.done = chunk_read_done;
	r->job.ctx = q;
	r->job.req = request_new(q, NULL, cb, arg);
	worker_submit(q->reader, &r->job);
	return r->job.req;
}

static void row_run(struct store *s, const struct store_backend *be, struct worker_job *job)
{
	struct read_job *r = (struct read_job *)job;
	job->rc = be->get(s, r->cf, r->key, strlen(r->key), &r->val, &r->vlen, &job->err);
}

static void row_read_done(struct worker_job *job)
{
	struct read_job *r = (struct read_job *)job;
	struct queue *q = job->ctx;
	struct pending *p = u64map_remove(q->requests, job->req);
	if (job->rc < 0)
		log_error("queue_read", "key=\"%s\" error=\"%s\"", r->key,
			  job->err ? job->err : "?");
	if (p != NULL)
		p->chunk_cb(p->arg, job->rc, r->val, r->vlen);
	free(p);
	free(r->key);
	read_job_free(r);
}

uint64_t queue_row_get(struct queue *q, enum store_cf cf, const char *key, queue_chunk_cb cb,
		       void *arg)
{
	struct read_job *r = xcalloc(1, sizeof(*r));
	r->cf = cf;
	r->key = xstrdup(key);
	r->job.run = row_run;
	r->job.done = row_read_done;
	r->job.ctx = q;
	r->job.req = request_new(q, NULL, cb, arg);
	worker_submit(q->reader, &r->job);
	return r->job.req;
}

struct queue *queue_open(struct event_base *base, const char *dir, uint64_t min_free_space,
			 queue_delivery_hook hook, void *hook_arg, char **err)
{
	return queue_open_backend(base, &store_rocksdb, dir, min_free_space, hook, hook_arg, err);
}

struct queue *queue_open_backend(struct event_base *base, const struct store_backend *be,
				 const char *dir, uint64_t min_free_space, queue_delivery_hook hook,
				 void *hook_arg, char **err)
{
	struct queue *q = xcalloc(1, sizeof(*q));
	q->hook = hook;
	q->hook_arg = hook_arg;
	q->remaining = strmap_new();
	q->be = be;
	bool corrupt = false;
	char *why = NULL;
	q->store = q->be->open(dir, &corrupt, &why);
	if (q->store == NULL) {
		if (corrupt)
			*err = xasprintf(
			    "queue database %s is damaged (%s); zone-mta never repairs "
			    "it by itself: move the folder aside (mv %s %s.damaged) "
			    "and start again, then recover what you can from the copy",
			    dir, why, dir, dir);
		else if (strstr(why, "LOCK") != NULL)
			*err = xasprintf("queue database %s is in use by another process (%s)", dir,
					 why);
		else
			*err = xasprintf("cannot open queue database %s: %s", dir, why);
		free(why);
		free(q);
		return NULL;
	}
	q->bodies = u64map_new();
	q->requests = u64map_new();
	q->zones = strmap_new();
	unsigned tag = 0;
	if (getrandom(&tag, sizeof(tag), 0) != sizeof(tag))
		tag = (unsigned)getpid();
	q->id_tag = tag & 0xfff;
	if (queue_recover(q, &why) != 0) {
		*err = xasprintf("cannot read queue database %s: %s", dir, why);
		free(why);
		q->writer = q->reader = NULL;
		queue_close(q);
		return NULL;
	}
	q->hot = strmap_new();
	q->hot_ev = event_new(base, -1, 0, hot_answer, q);
	q->writer = worker_start(base, q->store, q->be, true, dir, min_free_space);
	q->reader = worker_start(base, q->store, q->be, false, dir, 0);
	return q;
}

void queue_close(struct queue *q)
{
	if (q == NULL)
		return;
	if (q->writer)
		worker_stop(q->writer);
	if (q->reader)
		worker_stop(q->reader);
	if (q->hot != NULL)
		hot_free_all(q);
	q->be->close(q->store);
	size_t pos = 0;
	uint64_t key;
	void *v;
	while (u64map_next(q->requests, &pos, &key, &v))
		free(v);
	u64map_free(q->requests);
	u64map_free(q->bodies);
	const char *name;
	pos = 0;
	while (strmap_next(q->zones, &pos, &name, &v)) {
		struct zone_counts *z = v;
		size_t dpos = 0;
		const char *dname;
		void *d;
		while (strmap_next(z->domains, &dpos, &dname, &d))
			free(d);
		strmap_free(z->domains);
		free(z);
	}
	strmap_free(q->zones);
	strmap_free(q->remaining);
	free(q);
}
