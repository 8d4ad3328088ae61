/* SPDX-License-Identifier: EUPL-1.2 */
/* The suppression list; see suppress.h. */
#include "queue/suppress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"

/*
 * An index: open addressing with linear probing over entry pointers only
 * (8 bytes a slot; the keys are the entries' own fields), at most 70% full,
 * deletion by backward shift.  Two of them: by (kind, value) and by id.
 */
struct index {
	struct suppression **slots;
	size_t cap, count; /* cap: a power of two */
	bool by_id;
};

struct suppressions {
	struct queue *q;
	struct index by_key, by_id;
	uint64_t id_counter;
	uint32_t id_tag;
};

static uint64_t fnv(uint64_t h, const char *s)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static uint64_t key_hash(bool is_domain, const char *value)
{
	return fnv(is_domain ? 0x9e3779b97f4a7c15ULL : 1469598103934665603ULL, value);
}

static uint64_t entry_hash(const struct index *ix, const struct suppression *e)
{
	return ix->by_id ? fnv(1469598103934665603ULL, e->id) : key_hash(e->is_domain, e->value);
}

/* The slot of the entry matching (is_domain, value) or id, or the empty
 * slot where it would go. */
static size_t index_find(const struct index *ix, uint64_t h, bool is_domain, const char *value)
{
	size_t mask = ix->cap - 1, i = (size_t)h & mask;
	for (;; i = (i + 1) & mask) {
		const struct suppression *e = ix->slots[i];
		if (e == NULL)
			return i;
		if (ix->by_id ? strcmp(e->id, value) == 0
			      : e->is_domain == is_domain && strcmp(e->value, value) == 0)
			return i;
	}
}

static struct suppression *index_get(const struct index *ix, bool is_domain, const char *value)
{
	if (ix->count == 0)
		return NULL;
	uint64_t h = ix->by_id ? fnv(1469598103934665603ULL, value) : key_hash(is_domain, value);
	return ix->slots[index_find(ix, h, is_domain, value)];
}

static void index_grow(struct index *ix)
{
	struct suppression **old = ix->slots;
	size_t old_cap = ix->cap;
	ix->cap = old_cap ? old_cap * 2 : 64;
	ix->slots = xcalloc(ix->cap, sizeof(*ix->slots));
	for (size_t i = 0; i < old_cap; i++) {
		struct suppression *e = old[i];
		if (e == NULL)
			continue;
		size_t j = (size_t)entry_hash(ix, e) & (ix->cap - 1);
		while (ix->slots[j] != NULL)
			j = (j + 1) & (ix->cap - 1);
		ix->slots[j] = e;
	}
	free(old);
}

/* Puts e in; returns the entry it replaces (same key), or NULL. */
static struct suppression *index_put(struct index *ix, struct suppression *e)
{
	if ((ix->count + 1) * 10 > ix->cap * 7)
		index_grow(ix);
	size_t i = index_find(ix, entry_hash(ix, e), e->is_domain, ix->by_id ? e->id : e->value);
	struct suppression *old = ix->slots[i];
	ix->slots[i] = e;
	if (old == NULL)
		ix->count++;
	return old;
}

static void index_remove(struct index *ix, const struct suppression *e)
{
	size_t mask = ix->cap - 1;
	size_t i = index_find(ix, entry_hash(ix, e), e->is_domain, ix->by_id ? e->id : e->value);
	if (ix->slots[i] == NULL)
		return;
	ix->slots[i] = NULL;
	ix->count--;
	/* Backward shift: later entries of the run move up if their home
	 * slot does not lie between the hole and them. */
	for (size_t j = (i + 1) & mask; ix->slots[j] != NULL; j = (j + 1) & mask) {
		size_t home = (size_t)entry_hash(ix, ix->slots[j]) & mask;
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			ix->slots[i] = ix->slots[j];
			ix->slots[j] = NULL;
			i = j;
		}
	}
}

static void entry_free(struct suppression *e)
{
	free(e->reason);
	free(e);
}

/* An entry and its value in one block (a million of them add up). */
static struct suppression *entry_new(const char *value)
{
	size_t len = strlen(value);
	struct suppression *e = xcalloc(1, sizeof(*e) + len + 1);
	e->value = (char *)(e + 1);
	for (size_t i = 0; i <= len; i++)
		e->value[i] = (char)(value[i] >= 'A' && value[i] <= 'Z' ? value[i] + 32 : value[i]);
	return e;
}

static const char *const sources[] = {"api", "bounce", "unsubscribe", NULL};

/* The static name of a source; NULL when unknown. */
static const char *source_name(const char *source)
{
	for (size_t i = 0; sources[i] != NULL; i++)
		if (source != NULL && strcmp(sources[i], source) == 0)
			return sources[i];
	return NULL;
}

/* "a:" or "d:" and the value. */
static void entry_key(char *buf, size_t size, bool is_domain, const char *value)
{
	snprintf(buf, size, "%c:%s", is_domain ? 'd' : 'a', value);
}

static char *lower_dup(const char *s)
{
	char *d = xstrdup(s);
	for (char *p = d; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + 32);
	return d;
}

static void put_in_memory(struct suppressions *s, struct suppression *e)
{
	struct suppression *old = index_put(&s->by_key, e);
	if (old != NULL && old != e) {
		index_remove(&s->by_id, old);
		entry_free(old);
	}
	index_put(&s->by_id, e);
}

static json_t *stored_json(const struct suppression *e)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "id", e->id,
			      e->is_domain ? "domain" : "address", e->value, "source", e->source,
			      "created", (json_int_t)e->created);
	if (e->reason != NULL)
		json_object_set_new(o, "reason", json_string(e->reason));
	if (e->expires > 0)
		json_object_set_new(o, "expires", json_integer((json_int_t)e->expires));
	return o;
}

static void write_entry(struct suppressions *s, const struct suppression *e, bool put,
			queue_written_cb cb, void *arg)
{
	if (s->q == NULL) {
		if (cb != NULL)
			cb(arg, 0, NULL);
		return;
	}
	size_t klen = strlen(e->value) + 3;
	char *key = xmalloc(klen);
	entry_key(key, klen, e->is_domain, e->value);
	char *val = NULL;
	if (put) {
		json_t *o = stored_json(e);
		val = json_dumps(o, JSON_COMPACT);
		json_decref(o);
	}
	queue_row_write(s->q, STORE_CF_SUPPRESS, key, val, cb, arg);
	free(key);
	free(val);
}

static int load_row(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct suppressions *s = arg;
	json_t *o = json_loadb(val, vlen, 0, NULL);
	const char *id = json_string_value(json_object_get(o, "id"));
	const char *value = json_string_value(
	    json_object_get(o, klen > 0 && key[0] == 'd' ? "domain" : "address"));
	if (id == NULL || strlen(id) != SUPPRESS_ID_LEN || value == NULL) {
		log_warn("suppression_load", "key=\"%.*s\" status=skipped reason=\"unreadable\"",
			 (int)klen, key);
		json_decref(o);
		return 0;
	}
	struct suppression *e = entry_new(value);
	memcpy(e->id, id, SUPPRESS_ID_LEN);
	e->is_domain = key[0] == 'd';
	const char *reason = json_string_value(json_object_get(o, "reason"));
	e->reason = reason ? xstrdup(reason) : NULL;
	const char *source = source_name(json_string_value(json_object_get(o, "source")));
	e->source = source ? source : "api";
	e->created = json_integer_value(json_object_get(o, "created"));
	e->expires = json_integer_value(json_object_get(o, "expires"));
	json_decref(o);
	put_in_memory(s, e);
	return 0;
}

struct suppressions *suppressions_open(struct queue *q, char **err)
{
	struct suppressions *s = xcalloc(1, sizeof(*s));
	s->q = q;
	s->by_id.by_id = true;
	if (getrandom(&s->id_tag, sizeof(s->id_tag), 0) != sizeof(s->id_tag))
		s->id_tag = (uint32_t)clock_wall_ms();
	if (q != NULL) {
		if (queue_rows_scan(q, STORE_CF_SUPPRESS, load_row, s, err) != 0) {
			suppressions_free(s);
			return NULL;
		}
		queue_set_suppressions(q, s);
	}
	return s;
}

void suppressions_free(struct suppressions *s)
{
	if (s == NULL)
		return;
	if (s->q != NULL)
		queue_set_suppressions(s->q, NULL);
	for (size_t i = 0; i < s->by_key.cap; i++)
		if (s->by_key.slots[i] != NULL)
			entry_free(s->by_key.slots[i]);
	free(s->by_key.slots);
	free(s->by_id.slots);
	free(s);
}

size_t suppressions_count(const struct suppressions *s)
{
	return s->by_key.count;
}

static void remove_entry(struct suppressions *s, struct suppression *e, queue_written_cb cb,
			 void *arg)
{
	index_remove(&s->by_key, e);
	index_remove(&s->by_id, e);
	write_entry(s, e, false, cb, arg);
	entry_free(e);
}

/* The live entry for (kind, value), removing it when expired. */
static struct suppression *live(struct suppressions *s, bool is_domain, const char *value,
				int64_t now)
{
	struct suppression *e = index_get(&s->by_key, is_domain, value);
	if (e != NULL && e->expires > 0 && e->expires <= now) {
		log_info("suppression_expired", "id=%s %s=%s", e->id,
			 e->is_domain ? "domain" : "address", e->value);
		remove_entry(s, e, NULL, NULL);
		return NULL;
	}
	return e;
}

const struct suppression *suppressions_match(struct suppressions *s, const char *address)
{
	if (s == NULL || s->by_key.count == 0)
		return NULL;
	size_t len = strlen(address);
	char stack[320];
	char *lower = len < sizeof(stack) ? stack : xmalloc(len + 1);
	for (size_t i = 0; i <= len; i++)
		lower[i] = (char)(address[i] >= 'A' && address[i] <= 'Z' ? address[i] + 32
									 : address[i]);
	int64_t now = clock_wall_ms();
	struct suppression *e = live(s, false, lower, now);
	const char *at = strrchr(lower, '@');
	if (e == NULL && at != NULL)
		e = live(s, true, at + 1, now);
	if (lower != stack)
		free(lower);
	return e;
}

const struct suppression *suppressions_by_id(const struct suppressions *s, const char *id)
{
	return index_get(&s->by_id, false, id);
}

const struct suppression *suppressions_add(struct suppressions *s, bool is_domain,
					   const char *value, const char *reason,
					   const char *source, int64_t expires, queue_written_cb cb,
					   void *arg)
{
	struct suppression *e = entry_new(value);
	e->is_domain = is_domain;
	const struct suppression *old = index_get(&s->by_key, is_domain, e->value);
	if (old != NULL) {
		memcpy(e->id, old->id, sizeof(e->id));
	} else {
		/* 12 hex digits of ms, 4 of a per-process tag, 8 of a counter */
		snprintf(e->id, sizeof(e->id), "%012llx%04x%08llx",
			 (unsigned long long)clock_wall_ms() & 0xffffffffffffULL,
			 s->id_tag & 0xffffu,
			 (unsigned long long)(++s->id_counter & 0xffffffffULL));
	}
	e->reason = reason ? xstrdup(reason) : NULL;
	e->source = source_name(source) ? source_name(source) : "api";
	e->created = clock_wall_ms();
	e->expires = expires;
	put_in_memory(s, e);
	write_entry(s, e, true, cb, arg);
	return e;
}

bool suppressions_remove(struct suppressions *s, const char *id_or_key,
			 char id[SUPPRESS_ID_LEN + 1], queue_written_cb cb, void *arg)
{
	struct suppression *e = index_get(&s->by_id, false, id_or_key);
	if (e == NULL && (id_or_key[0] == 'a' || id_or_key[0] == 'd') && id_or_key[1] == ':') {
		char *value = lower_dup(id_or_key + 2);
		e = index_get(&s->by_key, id_or_key[0] == 'd', value);
		free(value);
	}
	if (e == NULL)
		return false;
	memcpy(id, e->id, SUPPRESS_ID_LEN + 1);
	remove_entry(s, e, cb, arg);
	return true;
}

static void iso_time(char *buf, size_t size, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000));
}

json_t *suppression_json(const struct suppression *e)
{
	char created[40];
	iso_time(created, sizeof(created), e->created);
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "id", e->id,
			      e->is_domain ? "domain" : "address", e->value, "created", created,
			      "source", e->source);
	if (e->reason != NULL)
		json_object_set_new(o, "reason", json_string(e->reason));
	if (e->expires > 0) {
		char expires[40];
		iso_time(expires, sizeof(expires), e->expires);
		json_object_set_new(o, "expires", json_string(expires));
	}
	return o;
}

/* <0 when x lists before y: newest first, then by id (descending). */
static int list_order(const struct suppression *x, const struct suppression *y)
{
	if (x->created != y->created)
		return x->created > y->created ? -1 : 1;
	return strcmp(y->id, x->id);
}

static int newest_first(const void *a, const void *b)
{
	return list_order(*(const struct suppression *const *)a,
			  *(const struct suppression *const *)b);
}

/* The heap keeps the `limit` first entries seen so far with the one that
 * lists last at its root, so a better entry replaces the root. */
static void heap_down(struct suppression **h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && list_order(h[l], h[m]) > 0)
			m = l;
		if (r < n && list_order(h[r], h[m]) > 0)
			m = r;
		if (m == i)
			return;
		struct suppression *t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void heap_up(struct suppression **h, size_t i)
{
	while (i > 0 && list_order(h[i], h[(i - 1) / 2]) > 0) {
		struct suppression *t = h[i];
		h[i] = h[(i - 1) / 2];
		h[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

json_t *suppressions_list(struct suppressions *s, size_t limit, const char *after,
			  const char **next)
{
	/* One pass, O(n log limit), and JSON for `limit` entries only: a list
	 * of a million is paged, not sorted whole on the loop. */
	*next = NULL;
	const struct suppression *cursor = after ? suppressions_by_id(s, after) : NULL;
	size_t cap = limit < s->by_key.count ? limit : s->by_key.count, n = 0;
	struct suppression **heap = xcalloc(cap ? cap : 1, sizeof(*heap));
	int64_t now = clock_wall_ms();
	bool more = false;
	for (size_t i = 0; i < s->by_key.cap && limit > 0; i++) {
		struct suppression *e = s->by_key.slots[i];
		if (e == NULL || (e->expires != 0 && e->expires <= now))
			continue;
		if (cursor != NULL && list_order(e, cursor) <= 0)
			continue; /* listed on an earlier page */
		if (n < cap) {
			heap[n] = e;
			heap_up(heap, n++);
		} else {
			more = true;
			if (list_order(e, heap[0]) < 0) {
				heap[0] = e;
				heap_down(heap, n, 0);
			}
		}
	}
	qsort(heap, n, sizeof(*heap), newest_first);
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, suppression_json(heap[i]));
	if (more && n > 0)
		*next = heap[n - 1]->id;
	free(heap);
	return list;
}
