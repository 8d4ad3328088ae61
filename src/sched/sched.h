/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The delivery scheduler.  It holds every pending delivery in memory: those
 * waiting for their next attempt in a min-heap by time, those due in a FIFO
 * per zone and recipient domain.  It starts a connection for a domain when
 * the zone has a free connection, the domain is under its connection limit
 * (domainConfig.maxConnections, per zone) and both throttles (the zone's and
 * the domain's, counted per zone) let a message go.  Domains with due mail
 * take turns (round robin), so one huge domain cannot starve the others.
 * It never writes the store: the outcome stage (src/outcome/) decides what
 * a result means, persists it and hands each item back here, finished
 * (sched_item_done) or to try again (sched_item_retry).  Times in here are
 * monotonic (core/clock.h); stored times are converted on the way in.
 */
#ifndef ZMTA_SCHED_H
#define ZMTA_SCHED_H

#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "queue/admin.h"
#include "queue/queue.h"
#include "zone/pool.h"

struct sched;
struct sched_domain;

/* One pending delivery: one recipient of one message. */
struct sched_item {
	char id[QUEUE_ID_LEN + 1];
	unsigned seq;
	char *recipient;
	struct sched_domain *dom;
	int64_t created;       /* wall-clock ms: when it was queued */
	int64_t next;          /* monotonic ms: when it may be tried */
	int64_t first_failure; /* wall-clock ms, 0 if none */
	int attempts;          /* failed attempts so far */
	bool deferred;
	bool cancelled; /* deleted through the API while due or in flight */
	/* Pool addresses it may leave from, by family (POOL_IPV4, POOL_IPV6):
	 * an index into the pool, -1 when the pool has none of that family. */
	int local[2];
	bool waiting;      /* in the heap (else due or in flight) */
	size_t heap_index; /* while waiting */
	struct sched_item *next_ready, *prev_ready;
	bool in_fifo; /* due, in its domain's FIFO (not in flight) */
	/* the last failed attempt, for listings: wall-clock ms and response */
	int64_t last_attempt;
	char *response;
	bool indexed; /* in its zone's listing index, at index_pos */
	size_t index_pos;
	/* who sent it (interned: shared by the scheduler's items), or NULL */
	const char *from, *user;
	bool held;    /* an operator holds it: never tried until released */
	bool stopped; /* due, but held or paused: set aside at stopped_pos */
	size_t stopped_pos;
};

/* Deliveries of one message to one domain, sent in one transaction. */
struct sched_batch {
	const struct zone_config *zone;
	const char *domain;
	struct sched_item **items;
	size_t n;
};

/* A connection slot: held from connect to close, counted against limits. */
struct sched_slot {
	struct sched_domain *dom;
	int local[2]; /* pool addresses by family, as the items it carries */
	int messages; /* transactions sent on it */
	/* while parked (idle, waiting for mail): */
	bool parked;
	void (*wake)(void *arg, struct sched_batch *batch); /* NULL batch: close */
	void *wake_arg;
	struct sched_slot *idle_next, *idle_prev;
};

/* How the scheduler starts a connection (the delivery engine). */
typedef void (*sched_start_fn)(void *arg, struct sched_slot *slot, struct sched_batch *batch);

struct sched *sched_new(struct event_base *base, const struct config *cfg, sched_start_fn start,
			void *start_arg);
void sched_free(struct sched *s);
/* The daemon is stopping: no connection starts, none takes more mail. */
void sched_stop(struct sched *s);

/* A stored or newly queued delivery (the queue's delivery hook). */
void sched_add(struct sched *s, const struct queue_delivery_row *row);

/*
 * For a connection that finished a transaction: the next batch it may send
 * at once (same zone, domain and local address; within reuseCount and the
 * throttles), or NULL: then the caller closes it and calls sched_release.
 */
struct sched_batch *sched_next_batch(struct sched *s, struct sched_slot *slot);
/*
 * Parks an idle connection (sched_next_batch gave nothing): when mail for
 * its domain and address becomes due, wake(arg, batch) gets it; when the
 * zone needs the connection for another domain, wake(arg, NULL) asks it to
 * close.  The caller's idle timer ends the wait with sched_unpark.
 */
void sched_park(struct sched *s, struct sched_slot *slot,
		void (*wake)(void *arg, struct sched_batch *batch), void *arg);
void sched_unpark(struct sched *s, struct sched_slot *slot);
/* The connection is closed: its slot frees up. */
void sched_release(struct sched *s, struct sched_slot *slot);
/* The item leaves the schedule: forgotten and freed.  Whether its stored
 * row goes too (delivered, bounced) or stays (shutdown) is the caller's. */
void sched_item_done(struct sched *s, struct sched_item *it);
/* The item failed for now with `response`: it is tried again in `delay_ms`. */
void sched_item_retry(struct sched *s, struct sched_item *it, int64_t delay_ms,
		      const char *response);
/*
 * Takes the deliveries of message `id` (all when seq is 0, else that one)
 * out of the schedule, calling removed(arg, item) for each before it goes;
 * one in flight is marked cancelled and dropped when its result comes.
 * Returns how many were removed.
 */
size_t sched_cancel(struct sched *s, const char *id, unsigned seq,
		    void (*removed)(void *arg, const struct sched_item *it), void *arg);
/*
 * Lists the deliveries of `zone` that are deferred (or not), in queue order
 * (id, seq), after message `after` (NULL: from the start): up to `limit`
 * rows, and the rest of the last message's.  From memory, in bounded steps
 * on the loop (a million deliveries never hold it long); cb(arg, rows)
 * gets [{id, seq, zone, recipient, created, deferred?: {first, count,
 * last, next, response}}] (borrowed) later.  Returns an id for
 * sched_list_cancel().
 */
typedef void (*sched_list_cb)(void *arg, json_t *rows);
uint64_t sched_list(struct sched *s, const char *zone, bool deferred, const char *after,
		    size_t limit, sched_list_cb cb, void *arg);
void sched_list_cancel(struct sched *s, uint64_t id);
/* Makes a waiting delivery due now; false when there is none such. */
bool sched_retry_now(struct sched *s, const char *id, unsigned seq);

/* Replaces the pauses (copied).  Due deliveries they now stop are set
 * aside; those no pause or hold stops any more become due again, and go
 * as the limits and throttles let them (no burst beyond them). */
void sched_set_pauses(struct sched *s, const struct queue_pause *pauses, size_t n);
/* True when `it` matches one of the pauses. */
bool sched_item_paused(const struct sched *s, const struct sched_item *it);
/*
 * Holds (held true) or releases the deliveries of message `id` (all when
 * seq is 0); changed(arg, it) is called for each one whose state changes,
 * for the caller to persist.  One in flight finishes its attempt.
 * Returns how many changed.
 */
size_t sched_hold(struct sched *s, const char *id, unsigned seq, bool held,
		  void (*changed)(void *arg, const struct sched_item *it), void *arg);

/* Which deliveries an operation acts on: every field given (NULL, 0:
 * any) must match; sender as a pause's. */
enum sched_status {
	SCHED_ANY,
	SCHED_QUEUED,
	SCHED_DEFERRED,
	SCHED_HELD
};
struct sched_filter {
	const char *zone, *domain, *sender, *user;
	const char *recipient; /* the address, without case */
	enum sched_status status;
	int64_t created_before; /* wall-clock ms; 0: any age */
	/* a page: start after this delivery (zones go in name order) and
	 * stop at `limit` matches (0: no limit) */
	const char *after_zone, *after_id;
	unsigned after_seq;
	size_t limit;
};
/*
 * Visits the deliveries matching `f` (copied), zone by zone in queue
 * order, a bounded number per loop pass, so that a million never hold the
 * loop: visit(arg, it) may change or remove `it` (that one only), then
 * done(arg, scanned, matched) once, later.  Returns an id for
 * sched_walk_cancel.
 */
typedef void (*sched_visit_fn)(void *arg, struct sched_item *it);
typedef void (*sched_walk_done_fn)(void *arg, size_t scanned, size_t matched);
uint64_t sched_walk(struct sched *s, const struct sched_filter *f, sched_visit_fn visit,
		    sched_walk_done_fn done, void *arg);
void sched_walk_cancel(struct sched *s, uint64_t id);
/* Paces walk `id`: while busy(arg) says so (the store has a backlog of
 * the walk's writes), its next step waits a millisecond, so that what
 * it makes others wait behind stays short. */
void sched_walk_pace(struct sched *s, uint64_t id, bool (*busy)(void *arg), void *arg);
/* How far walk `id` has come: the deliveries it looked at so far. */
size_t sched_walk_scanned(const struct sched *s, uint64_t id);

/* Takes a delivery that is waiting, due or set aside out of the schedule's
 * queues, as if it were in flight, for the caller to report on (an
 * operator bounces it) or hand back (sched_item_done, then sched_add: it
 * moves to another zone).  False, and nothing changes, when it is in
 * flight or deleted. */
bool sched_take(struct sched *s, struct sched_item *it);
/* With queue.expireHeld: now and then, expired(arg, items, n) gets the
 * held or paused deliveries whose queue.maxQueueTime has passed (for the
 * caller to expire them; each may go). */
typedef void (*sched_expired_fn)(void *arg, struct sched_item **items, size_t n);
void sched_on_expiry(struct sched *s, sched_expired_fn expired, void *arg);
/* The delivery seq of message id, or NULL. */
struct sched_item *sched_item_get(const struct sched *s, const char *id, unsigned seq);

/* A delivery as listed: {id, seq, zone, recipient, domain, created, from?,
 * user?, held?, paused?, deferred?: {first, count, last, next, response}}
 * (a new reference). */
json_t *sched_item_json(const struct sched_item *it);

/* True when message `id` has a delivery in the schedule. */
bool sched_has_message(const struct sched *s, const char *id);

/* Frees a batch (not its items, each of which gets a sched_result). */
void sched_batch_free(struct sched_batch *b);

const struct pool_config *sched_zone_pool(const struct sched *s, const struct zone_config *zone);
/* The zone and recipient domain an item is scheduled in, and its zone's pool. */
const char *sched_item_zone(const struct sched_item *it);
const char *sched_item_domain(const struct sched_item *it);
const struct pool_config *sched_item_pool(const struct sched_item *it);

#endif
