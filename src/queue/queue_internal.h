/* SPDX-License-Identifier: EUPL-1.2 */
/* What queue.c (the queue on the loop) and queue_recover.c (start-up)
 * share: the queue's state, the packed per-message counts, the keys. */
#ifndef ZMTA_QUEUE_INTERNAL_H
#define ZMTA_QUEUE_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "queue/queue.h"

struct queue {
	const struct store_backend *be;
	struct store *store;
	struct worker *writer, *reader;
	uint64_t next_handle;
	struct u64map *bodies;   /* handle → struct queue_body */
	struct u64map *requests; /* id → struct pending (reads) */
	/* ids */
	uint64_t id_ms;
	unsigned id_counter;
	unsigned id_tag;
	/* counters */
	struct strmap *zones; /* zone → struct zone_counts */
	uint64_t processed;
	struct strmap *remaining; /* id → remaining_pack(deliveries left, body chunks) */
	queue_delivery_hook hook;
	void *hook_arg;
	queue_event_hook event_hook;
	void *event_arg;
	struct suppressions *suppressions;
	struct admin *admin;
	/* messages just committed, whole (see "hot messages" below) */
	struct strmap *hot;                /* id → struct hot_msg */
	struct hot_msg *hot_old, *hot_new; /* FIFO: oldest first */
	size_t hot_bytes;
	struct load_job *hot_ready; /* loads answered from it, to call back */
	uint64_t loads_hot, loads_store;
	struct event *hot_ev;
};

/*
 * Per message, packed in the map's pointer: deliveries left (12 bits, at
 * most QUEUE_MAX_RCPTS) and body chunks + 1 (0: not known).  Knowing the
 * chunks lets a finished message's body go by point deletes: range
 * deletions leave tombstones that every later read has to sort through.
 */
#define LEFT_BITS 12
#define POINT_DELETE_MAX 16

static inline void *remaining_pack(uintptr_t left, uintptr_t chunks_plus1)
{
	return (void *)(left | chunks_plus1 << LEFT_BITS);
}

static inline uintptr_t remaining_left(void *v)
{
	return (uintptr_t)v & ((1u << LEFT_BITS) - 1);
}

static inline uintptr_t remaining_chunks1(void *v)
{
	return (uintptr_t)v >> LEFT_BITS;
}

/* Body chunk keys: id ‖ chunk number, 4 bytes big-endian. */
static inline void body_key(char *key, const char *id, uint32_t index)
{
	memcpy(key, id, QUEUE_ID_LEN);
	key[QUEUE_ID_LEN] = (char)(index >> 24);
	key[QUEUE_ID_LEN + 1] = (char)(index >> 16);
	key[QUEUE_ID_LEN + 2] = (char)(index >> 8);
	key[QUEUE_ID_LEN + 3] = (char)index;
}
#define BODY_KEY_LEN (QUEUE_ID_LEN + 4)
#define DLV_KEY_LEN (QUEUE_ID_LEN + QUEUE_SEQ_LEN)

/* Adds to the counts of zone and domain (negative: removes). */
void queue_counts_add(struct queue *q, const char *zone, const char *domain, int64_t queued,
		      int64_t deferred);
/* Start-up (queue_recover.c): removes what interrupted ingests left, tells
 * the delivery hook every stored delivery, rebuilds the counters and sets
 * the next id after the newest stored.  Blocks. */
int queue_recover(struct queue *q, char **err);

#endif
