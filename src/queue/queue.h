/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The message queue, as seen from the event loop.  Every storage call runs
 * on a store worker thread (queue_worker.c) and answers through a callback
 * on the loop.  Writes are group-committed: all writes pending when the
 * writer wakes go to the store in one batch, synced when any of them needs
 * it.  A commit's callback runs only after its synced write returned, so a
 * client may be told "queued" from inside it and never before.
 *
 * Requests are matched to answers by id: a caller that goes away cancels its
 * requests, and their answers are then dropped.
 */
#ifndef ZMTA_QUEUE_H
#define ZMTA_QUEUE_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/hmap.h"
#include "queue/store.h"

/* Queue ids: 18 lowercase hex digits (11 of milliseconds since the epoch, 3
 * of a per-process tag, 4 of a counter): time-ordered, unique across
 * restarts because a new process starts after the newest stored id. */
#define QUEUE_ID_LEN 18
/* Delivery sequence numbers: 3 hex digits, so at most 4095 recipients. */
#define QUEUE_SEQ_LEN 3
#define QUEUE_MAX_RCPTS 4095
/* Body bytes per stored chunk. */
#define QUEUE_CHUNK_SIZE (256 * 1024)

struct queue;
struct queue_body;

/*
 * Opens the store in `dir` (created when missing); writes that add data are
 * refused while less than `min_free_space` bytes are free.  Deletes leftovers of
 * interrupted ingests (chunks without a message, messages without
 * deliveries) and rebuilds the in-memory counters.  Blocks: call before the
 * loop runs.  Returns NULL and *err (malloc'ed) on failure; a damaged store
 * gives a message telling the operator to move the folder aside.
 */
/* A delivery row as the scheduler sees it; strings borrowed for the call. */
struct queue_delivery_row {
	const char *id;
	unsigned seq;
	const char *zone;
	const char *recipient;
	const char *domain;
	int64_t created;      /* ms: when the message was queued */
	int64_t next_attempt; /* ms */
	int attempts;         /* failed attempts so far */
	bool deferred;
	int64_t first_failure;     /* ms of the first failed attempt, 0 if none */
	const char *local_address; /* source address of earlier attempts, or NULL */
	int64_t last_attempt;      /* ms of the last failed attempt, 0 if none */
	const char *response;      /* its response, or NULL */
	const char *from;          /* the envelope sender ("" null sender), or NULL: unknown */
	const char *user;          /* who submitted it (AUTH user), or NULL */
	bool held;                 /* held by an operator: not tried until released */
};

/* Told about every stored delivery at start, and every new one after. */
typedef void (*queue_delivery_hook)(void *arg, const struct queue_delivery_row *row);

struct queue *queue_open(struct event_base *base, const char *dir, uint64_t min_free_space,
			 queue_delivery_hook hook, void *hook_arg, char **err);
/* The same on another storage backend (unit tests: store_ram). */
struct queue *queue_open_backend(struct event_base *base, const struct store_backend *be,
				 const char *dir, uint64_t min_free_space, queue_delivery_hook hook,
				 void *hook_arg, char **err);
/* Waits for pending writes, stops the workers and closes the store. */
void queue_close(struct queue *q);

/* A new unique queue id (NUL-terminated) into id. */
void queue_id_new(struct queue *q, char id[QUEUE_ID_LEN + 1]);

/*
 * Message bodies stream into the store in QUEUE_CHUNK_SIZE chunks while they
 * arrive.  `on_drain(arg)` is called when the body stops being busy (see
 * queue_body_busy), so a reader that paused can resume.
 */
struct queue_body *queue_body_new(struct queue *q, const char *id, void (*on_drain)(void *arg),
				  void *arg);
/* Appends bytes; full chunks are handed to the writer (not synced yet). */
void queue_body_write(struct queue_body *b, const char *data, size_t len);
/* True while too many chunks are waiting to be written: stop reading input. */
bool queue_body_busy(const struct queue_body *b);
/* Bytes written so far. */
uint64_t queue_body_size(const struct queue_body *b);
/* Reading a body back before its commit (a content check): the chunks
 * handed to the writer so far (readable with queue_chunk_get once
 * queue_after_writes says they are written), and the bytes after them,
 * still in memory until the commit. */
uint32_t queue_body_chunks(const struct queue_body *b);
const char *queue_body_tail(const struct queue_body *b, size_t *len);
/*
 * Frees the body.  If it was never committed, its stored chunks are deleted;
 * if a commit is pending, the commit goes on but its callback is dropped.
 */
void queue_body_free(struct queue_body *b);

/* One recipient of a message being committed. */
struct queue_delivery {
	const char *zone;
	const char *recipient;
	const char *domain;   /* lower case */
	int64_t next_attempt; /* ms since the epoch: now, or later for delayed mail */
};

/*
 * Events for the webhooks (outcome/webhook.c): rows of the events column
 * family, one per endpoint that takes the event, written in the same store
 * write as the change of state they report, deleted once the endpoint has
 * them.  A write call that takes a `struct queue_events *` (NULL: none)
 * consumes them.
 */
struct queue_events {
	struct store_op *ops;
	size_t n, cap;
};
/* Adds event `id` (JSON text, copied) for `endpoint` (no newline in it). */
void queue_event_add(struct queue_events *evs, const char *endpoint, const char *id,
		     const char *json, size_t len);
/* Appends the events of `from` to `to`; `from` is empty after. */
void queue_events_move(struct queue_events *to, struct queue_events *from);
/* Frees events that no write took. */
void queue_events_clear(struct queue_events *evs);

/* Commit failures: the store failed, or there was not enough disk space. */
#define QUEUE_ERR_STORE -1
#define QUEUE_ERR_SPACE -2

/* rc: 0 committed (durable), or QUEUE_ERR_* (error says why; nothing of
 * the message is visible). */
typedef void (*queue_commit_cb)(void *arg, int rc, const char *error);

/*
 * Commits a message: the last body chunk, the metadata (`meta`, consumed; the
 * queue adds "bodySize"), the final header block (any bytes: it is stored
 * beside the JSON, not in it) and one delivery row per recipient, in one
 * synced write.  `cb` runs on the loop after the write, unless the body was
 * freed first.
 */
void queue_message_commit(struct queue_body *b, json_t *meta, const char *header_block,
			  size_t header_len, const struct queue_delivery *dlv, size_t ndlv,
			  struct queue_events *evs, queue_commit_cb cb, void *arg);

/* A message as stored, borrowed for the duration of a callback. */
struct queue_message {
	json_t *meta;
	const char *header_block;
	size_t header_len;
	json_t *deliveries; /* array of rows, each with "seq" */
	char *body;         /* queue_message_load: chunk 0 (malloc'ed), or NULL */
	size_t body_len;
};

/* rc: 1 found, 0 no such message, -1 store error; msg is NULL unless 1. */
typedef void (*queue_message_cb)(void *arg, int rc, const struct queue_message *msg);
/* Reads a message's metadata and delivery rows; returns a request id. */
uint64_t queue_message_get(struct queue *q, const char *id, queue_message_cb cb, void *arg);

/*
 * What a delivery needs of a message, in one read: as queue_message_get but
 * without the delivery rows (`deliveries` is NULL), plus body chunk 0 in
 * `body`/`body_len` (taken by the callback when it sets `body` to NULL).
 * `hashes` (bits 1 << enum dkim_canon) asks for DKIM body hashes: each one
 * the metadata lacks (the message was queued before a key needed it) is
 * computed from the stored body, on the store's thread, and set in `meta`
 * ("dkim": "bodyHash" / "bodyHashSimple") for this read only.  With
 * `transform` (TRANSFORM_* of msg/transform.h) the hashes asked for are
 * made afresh, of the body as that transform rewrites it for sending.
 */
typedef void (*queue_load_cb)(void *arg, int rc, struct queue_message *msg);
uint64_t queue_message_load(struct queue *q, const char *id, unsigned hashes, unsigned transform,
			    queue_load_cb cb, void *arg);

/* rc: 1 chunk read, 0 no such chunk (past the end), -1 store error. */
typedef void (*queue_chunk_cb)(void *arg, int rc, const char *data, size_t len);
/* Reads body chunk `index` of message `id`; returns a request id. */
uint64_t queue_chunk_get(struct queue *q, const char *id, uint32_t index, queue_chunk_cb cb,
			 void *arg);

/*
 * A delivery is finished (delivered or bounced): its row is deleted, and the
 * message with it when it was the last.  Not synced: a crash can at worst
 * repeat the delivery (at-least-once), never lose it.
 */
void queue_delivery_finish(struct queue *q, const char *id, unsigned seq, const char *zone,
			   const char *domain, bool was_deferred, struct queue_events *evs);

/* A delivery to finish in a queue_notice_commit. */
struct queue_finished {
	const char *id;
	unsigned seq;
	const char *zone, *domain;
	bool was_deferred;
};

/*
 * Queues a notification about other deliveries (a DSN: `meta` consumed,
 * the header block, the whole body) with one delivery, and finishes the
 * deliveries `fin` it reports on (their rows deleted, a message with its
 * last) in the same synced write: a crash leaves either the rows or the
 * notice, never neither and never both.  The finished deliveries are gone
 * from the counters at once; cb(arg, rc, error) runs after the write, and
 * the notice's delivery reaches the delivery hook once it is durable.
 */
void queue_notice_commit(struct queue *q, const char *id, json_t *meta, const char *header_block,
			 size_t header_len, const char *body, size_t body_len,
			 const struct queue_delivery *dlv, const struct queue_finished *fin,
			 size_t nfin, struct queue_events *evs, queue_commit_cb cb, void *arg);

/* One failed attempt, for a delivery's history (NULL strings: unknown). */
struct queue_attempt {
	int64_t time; /* wall-clock ms */
	const char *mx, *remote_address, *local_address, *tls, *response;
};
/* A delivery failed for now: its row records the attempt and the next one,
 * and `attempt` (number row->attempts) joins its history, which goes with
 * the row.  GET /message shows the history. */
void queue_delivery_defer(struct queue *q, const struct queue_delivery_row *row, bool was_deferred,
			  const struct queue_attempt *attempt, struct queue_events *evs);

/* A delivery row written again as it is (an operator's hold or release),
 * synced; queue_after_writes tells when it is done. */
void queue_delivery_rewrite(struct queue *q, const struct queue_delivery_row *row);

/* A delivery row moved from zone `from_zone` to row->zone (an operator
 * rebinds it): written again, synced, and counted in its new zone. */
void queue_delivery_move(struct queue *q, const struct queue_delivery_row *row,
			 const char *from_zone);

/* Writes events that come with no change of state (a message rejected at
 * intake); not synced. */
void queue_events_write(struct queue *q, struct queue_events *evs);
/* An event row: its endpoint, id and JSON, borrowed for the call. */
typedef void (*queue_event_hook)(void *arg, const char *endpoint, size_t elen, const char *id,
				 size_t ilen, const char *json, size_t len);
/*
 * Tells `hook` every stored event, in key order (endpoint, then id), and
 * from then on each new one once its write is done.  Blocks: call before
 * the loop runs.  Returns how many were stored, or -1 and *err.
 */
ssize_t queue_events_open(struct queue *q, queue_event_hook hook, void *arg, char **err);
/* No more telling: the hook's owner goes. */
void queue_events_stop(struct queue *q);
/* The endpoint has these events: their rows go (not synced: a crash can at
 * worst send them again, which their ids let a receiver see). */
void queue_events_delete(struct queue *q, const char *endpoint, const char *const *ids, size_t n);

/* rc 0, or a QUEUE_ERR_* code and `error` when those writes failed. */
typedef void (*queue_written_cb)(void *arg, int rc, const char *error);
/* Calls cb once every write submitted so far is done (written, or failed):
 * what a reply that follows a change must wait for.  Returns a request id
 * (queue_request_cancel drops the answer). */
uint64_t queue_after_writes(struct queue *q, queue_written_cb cb, void *arg);

/* Rows of a small table kept whole in memory by its owner (the
 * suppression list): one row put (val) or deleted (val NULL), synced; cb
 * (or NULL) as queue_after_writes'.  Returns a request id (0 without cb). */
uint64_t queue_row_write(struct queue *q, enum store_cf cf, const char *key, const char *val,
			 queue_written_cb cb, void *arg);
/* Reads one row of such a table: cb(arg, 1, value, len), 0 when absent,
 * -1 on a store error (as queue_chunk_get's).  Returns a request id. */
uint64_t queue_row_get(struct queue *q, enum store_cf cf, const char *key, queue_chunk_cb cb,
		       void *arg);
/* Visits every row of `cf` in key order.  Blocks: before the loop runs.
 * 0, or -1 and *err. */
int queue_rows_scan(struct queue *q, enum store_cf cf, store_scan_cb cb, void *arg, char **err);

/* The suppression list (queue/suppress.h) of this queue, once opened, so
 * that whoever has the queue can check it; NULL before. */
struct suppressions;
void queue_set_suppressions(struct queue *q, struct suppressions *s);
struct suppressions *queue_suppressions(const struct queue *q);

/* Drops the answer of a pending read request.  Unknown ids are ignored. */
void queue_request_cancel(struct queue *q, uint64_t req);

/* Counts per zone and recipient domain, kept in memory. */
struct queue_counts {
	uint64_t queued;
	uint64_t deferred;
};

/* Counts of `zone` (NULL when it has nothing queued).  `domains` (or NULL) maps each
 * recipient domain to its struct queue_counts. */
const struct queue_counts *queue_zone_counts(const struct queue *q, const char *zone,
					     const struct strmap **domains);
/* Why the store is out of service (no more mail until restart), or NULL. */
const char *queue_broken(const struct queue *q);
/* Writes submitted and not done yet: what a new commit would wait behind. */
size_t queue_write_backlog(const struct queue *q);
/* Whether the last write found less free disk space than the guard wants. */
bool queue_space_low(const struct queue *q);
/* Deliveries finished (delivered or bounced) since start. */
uint64_t queue_processed(const struct queue *q);

/* Messages kept in memory after their commit for their first delivery, and
 * where delivery loads were answered from since start. */
struct queue_memory_stats {
	size_t hot_messages;
	size_t hot_bytes;
	uint64_t loads_hot, loads_store;
};
void queue_memory_stats(const struct queue *q, struct queue_memory_stats *st);

#endif
