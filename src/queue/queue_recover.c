/* SPDX-License-Identifier: EUPL-1.2 */
/* The queue at start-up: what an interrupted run left is removed, the
 * counters are rebuilt, every delivery is told; see queue_internal.h. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "queue/queue_internal.h"
#include "queue/store.h"

struct recovery {
	struct queue *q;
	/* ids that have metadata -> remaining_pack(1, body chunks + 1; 0 when unknown) */
	struct strmap *with_meta;
	struct store_op *ops; /* deletions to apply */
	size_t nops, cap;
	uint64_t rows, bad_rows;
	size_t meta_orphans, body_orphans, row_orphans;
	char newest[QUEUE_ID_LEN + 1];
};

static void recovery_delete(struct recovery *r, enum store_op_kind kind, enum store_cf cf,
			    char *key, size_t klen, char *end, size_t elen)
{
	r->ops = xreallocarray_grow(r->ops, &r->cap, r->nops + 1, sizeof(*r->ops));
	r->ops[r->nops++] = (struct store_op){kind, cf, key, klen, end, elen};
}

static void recovery_delete_body(struct recovery *r, const char *id)
{
	char *from = xmalloc(BODY_KEY_LEN), *to = xmalloc(BODY_KEY_LEN);
	body_key(from, id, 0);
	body_key(to, id, UINT32_MAX);
	recovery_delete(r, STORE_DELETE_RANGE, STORE_CF_BODY, from, BODY_KEY_LEN, to, BODY_KEY_LEN);
}

/* First pass: which messages have metadata, and how many body chunks. */
static int scan_meta(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct recovery *r = arg;
	if (klen != QUEUE_ID_LEN)
		return 0;
	char id[QUEUE_ID_LEN + 1];
	memcpy(id, key, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	if (strcmp(id, r->newest) > 0)
		memcpy(r->newest, id, sizeof(id));
	/* Its body chunks, from bodySize (see queue_message_commit). */
	uintptr_t chunks1 = 0;
	size_t jlen = strnlen(val, vlen);
	json_t *meta = json_loadb(val, jlen, 0, NULL);
	json_int_t size = json_integer_value(json_object_get(meta, "bodySize"));
	if (meta != NULL && size >= 0)
		chunks1 = (uintptr_t)size / QUEUE_CHUNK_SIZE +
			  ((uintptr_t)size % QUEUE_CHUNK_SIZE != 0 || size == 0) + 1;
	json_decref(meta);
	strmap_put(r->with_meta, id, remaining_pack(1, chunks1)); /* never NULL */
	return 0;
}

/* Second pass: each delivery row of a message with metadata is counted and
 * scheduled; a row without one cannot be delivered (nor bounced: the
 * sender is in the metadata) and is removed. */
static int scan_row(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct recovery *r = arg;
	char id[QUEUE_ID_LEN + 1];
	json_t *row = json_loadb(val, vlen, 0, NULL);
	const char *zone = NULL, *domain = NULL, *status = NULL, *rcpt = NULL;
	json_int_t created = 0, next = 0;
	int attempts = 0;
	if (klen != DLV_KEY_LEN || row == NULL ||
	    json_unpack(row, "{s:s, s:s, s:s, s:s, s:I, s:I, s:i}", "zone", &zone, "domain",
			&domain, "status", &status, "recipient", &rcpt, "created", &created, "next",
			&next, "attempts", &attempts) != 0) {
		/* Kept, not deleted: a human should look at it. */
		r->bad_rows++;
		json_decref(row);
		return 0;
	}
	memcpy(id, key, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	void *meta = strmap_get(r->with_meta, id);
	if (meta == NULL) {
		log_msg(LOG_LEVEL_WARN, id, "queue_recovery",
			"seq=%.3s rcpt=<%s> action=removed "
			"reason=\"delivery row without its message\"",
			key + QUEUE_ID_LEN, rcpt);
		char *k = xmalloc(klen);
		memcpy(k, key, klen);
		recovery_delete(r, STORE_DELETE, STORE_CF_DLV, k, klen, NULL, 0);
		r->row_orphans++;
		json_decref(row);
		return 0;
	}
	void *packed = strmap_get(r->q->remaining, id);
	strmap_put(
	    r->q->remaining, id,
	    remaining_pack((packed ? remaining_left(packed) : 0) + 1, remaining_chunks1(meta)));
	bool deferred = strcmp(status, "DEFERRED") == 0;
	queue_counts_add(r->q, zone, domain, !deferred, deferred);
	char seq[QUEUE_SEQ_LEN + 1];
	memcpy(seq, key + QUEUE_ID_LEN, QUEUE_SEQ_LEN);
	seq[QUEUE_SEQ_LEN] = '\0';
	json_int_t first = 0, last = 0;
	const char *response = NULL;
	json_unpack(row, "{s:{s?I, s?I, s?s}}", "deferred", "first", &first, "last", &last,
		    "response", &response);
	struct queue_delivery_row d = {
	    .id = id,
	    .seq = (unsigned)strtoul(seq, NULL, 16),
	    .zone = zone,
	    .recipient = rcpt,
	    .domain = domain,
	    .created = created,
	    .next_attempt = next,
	    .attempts = attempts,
	    .deferred = deferred,
	    .first_failure = first,
	    .local_address = json_string_value(json_object_get(row, "local")),
	    .last_attempt = last,
	    .response = response,
	    .from = json_string_value(json_object_get(row, "from")),
	    .user = json_string_value(json_object_get(row, "user")),
	    .held = json_is_true(json_object_get(row, "held")),
	};
	if (r->q->hook)
		r->q->hook(r->q->hook_arg, &d);
	r->rows++;
	json_decref(row);
	return 0;
}

/* Metadata without any delivery: finished, or half-written. */
static void remove_unneeded_meta(struct recovery *r)
{
	size_t pos = 0;
	const char *id;
	void *v;
	while (strmap_next(r->with_meta, &pos, &id, &v)) {
		if (strmap_get(r->q->remaining, id) != NULL)
			continue;
		recovery_delete(r, STORE_DELETE, STORE_CF_META, xstrdup(id), QUEUE_ID_LEN, NULL, 0);
		recovery_delete_body(r, id);
		r->meta_orphans++;
	}
}

static int scan_body_id(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	(void)val;
	(void)vlen;
	(void)klen;
	struct recovery *r = arg;
	char id[QUEUE_ID_LEN + 1];
	memcpy(id, key, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	if (strmap_get(r->with_meta, id) == NULL) {
		recovery_delete_body(r, id);
		r->body_orphans++;
	}
	return 0;
}

int queue_recover(struct queue *q, char **err)
{
	struct recovery r = {.q = q, .with_meta = strmap_new()};
	int rc = q->be->scan(q->store, STORE_CF_META, NULL, 0, scan_meta, &r, err);
	if (rc == 0)
		rc = q->be->scan(q->store, STORE_CF_DLV, NULL, 0, scan_row, &r, err);
	if (rc == 0) {
		remove_unneeded_meta(&r);
		rc = q->be->prefixes(q->store, STORE_CF_BODY, QUEUE_ID_LEN, scan_body_id, &r, err);
	}
	if (rc == 0 && r.nops > 0)
		rc = q->be->write(q->store, r.ops, r.nops, true, err);
	for (size_t i = 0; i < r.nops; i++) {
		free((char *)r.ops[i].key);
		free((char *)r.ops[i].val);
	}
	free(r.ops);
	if (rc == 0) {
		if (r.newest[0] != '\0') {
			/* New ids must sort after every stored one. */
			char ms[12];
			memcpy(ms, r.newest, 11);
			ms[11] = '\0';
			q->id_ms = strtoull(ms, NULL, 16);
			q->id_counter = 0xffff; /* the next id moves to a later ms */
		}
		log_info("queue_recovered",
			 "messages=%zu deliveries=%llu removed_incomplete=%zu "
			 "removed_orphan_bodies=%zu removed_orphan_rows=%zu "
			 "unreadable_rows=%llu",
			 strmap_count(q->remaining), (unsigned long long)r.rows, r.meta_orphans,
			 r.body_orphans, r.row_orphans, (unsigned long long)r.bad_rows);
	}
	strmap_free(r.with_meta);
	return rc;
}
