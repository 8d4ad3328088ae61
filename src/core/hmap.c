/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones), capacity a power of two, grown at 70% load.  See hmap.h.
 */
#include "core/hmap.h"

#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

struct slot {
	uint64_t hash; /* of the key; the u64 map stores the key itself here */
	char *key;     /* strmap only */
	void *value;   /* NULL: empty slot */
};

struct table {
	struct slot *slots;
	size_t cap; /* power of two, or 0 */
	size_t count;
};

struct strmap {
	struct table t;
};

struct u64map {
	struct table t;
};

/* FNV-1a, then a final mix so that low bits spread. */
static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t x)
{
	/* splitmix64's finaliser */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Finds the slot of (hash, key) or the empty slot where it would go. */
static size_t table_find(const struct table *t, uint64_t hash, const char *key, uint64_t ukey)
{
	size_t mask = t->cap - 1;
	for (size_t i = hash & mask;; i = (i + 1) & mask) {
		const struct slot *s = &t->slots[i];
		if (s->value == NULL)
			return i;
		if (key != NULL ? (s->hash == hash && strcmp(s->key, key) == 0) : s->hash == ukey)
			return i;
	}
}

static void table_grow(struct table *t, bool strkeys)
{
	size_t ncap = t->cap ? t->cap * 2 : 16;
	struct slot *old = t->slots;
	size_t ocap = t->cap;
	t->slots = xcalloc(ncap, sizeof(*t->slots));
	t->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (old[i].value == NULL)
			continue;
		uint64_t h = strkeys ? old[i].hash : mix64(old[i].hash);
		size_t j = h & (ncap - 1);
		while (t->slots[j].value != NULL)
			j = (j + 1) & (ncap - 1);
		t->slots[j] = old[i];
	}
	free(old);
}

/* Removes slot i and shifts the following run back so lookups stay correct. */
static void table_delete(struct table *t, size_t i, bool strkeys)
{
	size_t mask = t->cap - 1;
	t->slots[i].value = NULL;
	t->count--;
	for (size_t j = (i + 1) & mask; t->slots[j].value != NULL; j = (j + 1) & mask) {
		uint64_t h = strkeys ? t->slots[j].hash : mix64(t->slots[j].hash);
		size_t home = h & mask;
		/* Move j back to i when its home is not in (i, j] cyclically. */
		bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			t->slots[i] = t->slots[j];
			t->slots[j].value = NULL;
			t->slots[j].key = NULL;
			i = j;
		}
	}
}

static bool table_next(const struct table *t, size_t *pos, struct slot **out)
{
	for (; *pos < t->cap; (*pos)++) {
		if (t->slots[*pos].value != NULL) {
			*out = &t->slots[(*pos)++];
			return true;
		}
	}
	return false;
}

struct strmap *strmap_new(void)
{
	return xcalloc(1, sizeof(struct strmap));
}

void strmap_free(struct strmap *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->t.cap; i++)
		if (m->t.slots[i].value != NULL)
			free(m->t.slots[i].key);
	free(m->t.slots);
	free(m);
}

void *strmap_get(const struct strmap *m, const char *key)
{
	if (m->t.count == 0)
		return NULL;
	return m->t.slots[table_find(&m->t, hash_str(key), key, 0)].value;
}

void *strmap_put(struct strmap *m, const char *key, void *value)
{
	if ((m->t.count + 1) * 10 > m->t.cap * 7)
		table_grow(&m->t, true);
	uint64_t h = hash_str(key);
	struct slot *s = &m->t.slots[table_find(&m->t, h, key, 0)];
	void *old = s->value;
	if (old == NULL) {
		s->hash = h;
		s->key = xstrdup(key);
		m->t.count++;
	}
	s->value = value;
	return old;
}

void *strmap_remove(struct strmap *m, const char *key)
{
	if (m->t.count == 0)
		return NULL;
	size_t i = table_find(&m->t, hash_str(key), key, 0);
	void *old = m->t.slots[i].value;
	if (old != NULL) {
		free(m->t.slots[i].key);
		m->t.slots[i].key = NULL;
		table_delete(&m->t, i, true);
	}
	return old;
}

size_t strmap_count(const struct strmap *m)
{
	return m->t.count;
}

bool strmap_next(const struct strmap *m, size_t *pos, const char **key, void **value)
{
	struct slot *s;
	if (!table_next(&m->t, pos, &s))
		return false;
	*key = s->key;
	*value = s->value;
	return true;
}

struct u64map *u64map_new(void)
{
	return xcalloc(1, sizeof(struct u64map));
}

void u64map_free(struct u64map *m)
{
	if (m == NULL)
		return;
	free(m->t.slots);
	free(m);
}

void *u64map_get(const struct u64map *m, uint64_t key)
{
	if (m->t.count == 0)
		return NULL;
	return m->t.slots[table_find(&m->t, mix64(key), NULL, key)].value;
}

void *u64map_put(struct u64map *m, uint64_t key, void *value)
{
	if ((m->t.count + 1) * 10 > m->t.cap * 7)
		table_grow(&m->t, false);
	struct slot *s = &m->t.slots[table_find(&m->t, mix64(key), NULL, key)];
	void *old = s->value;
	if (old == NULL) {
		s->hash = key;
		m->t.count++;
	}
	s->value = value;
	return old;
}

void *u64map_remove(struct u64map *m, uint64_t key)
{
	if (m->t.count == 0)
		return NULL;
	size_t i = table_find(&m->t, mix64(key), NULL, key);
	void *old = m->t.slots[i].value;
	if (old != NULL)
		table_delete(&m->t, i, false);
	return old;
}

size_t u64map_count(const struct u64map *m)
{
	return m->t.count;
}

bool u64map_next(const struct u64map *m, size_t *pos, uint64_t *key, void **value)
{
	struct slot *s;
	if (!table_next(&m->t, pos, &s))
		return false;
	*key = s->hash;
	*value = s->value;
	return true;
}
