/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The scheduler's state, shared by its files: sched.c (the schedule,
 * pauses and holds) and sched_walk.c (operations over many deliveries and
 * listings, in bounded steps).  Nothing outside src/sched/ includes it.
 */
#ifndef ZMTA_SCHED_INTERNAL_H
#define ZMTA_SCHED_INTERNAL_H

#include "core/hmap.h"
#include "sched/sched.h"
#include "sched/throttle.h"
#include "zone/pool.h"

struct sched_zone {
	const struct zone_config *cfg;
	const struct pool_config *pool;
	struct pool_rr rr[2];           /* deals new deliveries to pool addresses, per family */
	char last_id[QUEUE_ID_LEN + 1]; /* the message and domain last dealt, */
	const struct sched_domain *last_dom; /* so its recipients share an address */
	int last_local[2];
	struct throttle throttle;
	int active;                /* open connections, parked ones included */
	struct sched_slot *idle;   /* parked connections, oldest first */
	struct strmap *domains;    /* name → struct sched_domain */
	struct sched_domain *ring; /* domains with due mail, round robin */
	/* every item of the zone in queue order (id, seq), for listings;
	 * removed ones leave a NULL hole until the next compaction */
	struct sched_item **index;
	size_t n_index, index_cap, index_holes;
	size_t index_deferred; /* indexed items that are deferred */
};

struct sched_domain {
	char *name;
	struct sched_zone *zone;
	const struct domain_config *cfg;
	struct throttle throttle;
	int active;
	struct sched_item *ready, *ready_last; /* due items, first to go first */
	size_t nready;
	bool in_ring;
	struct sched_domain *ring_next, *ring_prev;
};

struct sched {
	struct event_base *base;
	const struct config *cfg;
	sched_start_fn start;
	void *start_arg;
	struct strmap *zones;     /* name → struct sched_zone */
	struct sched_item **heap; /* waiting, by `next` */
	size_t nheap, heap_cap;
	struct event *timer;   /* the next due time or throttle opening */
	struct event *pump_ev; /* deferred pump: never from inside a caller */
	int64_t timer_at;
	bool stopping;           /* the daemon is stopping: start nothing */
	struct strmap *items;    /* "id/seq" → item, for the API */
	struct u64map *listings; /* id → struct sched_listing in progress */
	uint64_t next_listing;
	struct strmap *names; /* interned senders and users: name → its copy */
	struct u64map *walks; /* id → struct sched_walk in progress */
	struct queue_pause *pauses;
	size_t npauses;
	/* due deliveries set aside, held or paused (item->stopped_pos) */
	struct sched_item **stopped;
	size_t nstopped, stopped_cap;
	struct event *expiry_ev; /* looks for set-aside items past their time */
	sched_expired_fn expired;
	void *expired_arg;
};

/* The zone called `name`, made at first use; NULL when the configuration
 * has no such zone. */
struct sched_zone *sched_zone_get(struct sched *s, const char *name);
/* The first position of z's listing index after (id, seq). */
size_t sched_index_after(const struct sched_zone *z, const char *id, unsigned seq);
/* Whether `it` matches every field of `p` given (pauses and operations
 * alike; `until` is the caller's). */
bool sched_pause_matches(const struct queue_pause *p, const struct sched_item *it);

#endif
