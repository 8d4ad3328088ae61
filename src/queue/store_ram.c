/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The RAM store: the storage backend in memory, for unit tests (DESIGN.md:
 * "Unit tests may use the RAM queue backend").  Keys are kept sorted in an
 * array per column family; one mutex makes it safe from several threads.
 * What is written outlives close(): a store is found again by its `dir`
 * name until store_ram_destroy(), so a test can stop a queue and open it
 * again, as after a restart.  Not for production: nothing is durable.
 */
#include "queue/store_ram.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/xmalloc.h"

struct entry {
	char *key;
	size_t klen;
	char *val;
	size_t vlen;
};

struct table {
	struct entry *e;
	size_t n, cap;
};

struct store {
	char *dir;
	pthread_mutex_t lock;
	struct table cf[STORE_CF_COUNT];
	int fail_writes;       /* store_ram_fail_writes() */
	bool background_error; /* store_ram_background_error() */
	struct store *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct store *registry;

static int keycmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

/* The first index whose key is >= key. */
static size_t lower_bound(const struct table *t, const char *key, size_t klen)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (keycmp(t->e[mid].key, t->e[mid].klen, key, klen) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool found(const struct table *t, size_t i, const char *key, size_t klen)
{
	return i < t->n && keycmp(t->e[i].key, t->e[i].klen, key, klen) == 0;
}

static void entry_free(struct entry *e)
{
	free(e->key);
	free(e->val);
}

static void put(struct table *t, const char *key, size_t klen, const char *val, size_t vlen)
{
	size_t i = lower_bound(t, key, klen);
	char *v = xmalloc(vlen ? vlen : 1);
	memcpy(v, val, vlen);
	if (found(t, i, key, klen)) {
		free(t->e[i].val);
		t->e[i].val = v;
		t->e[i].vlen = vlen;
		return;
	}
	t->e = xreallocarray_grow(t->e, &t->cap, t->n + 1, sizeof(*t->e));
	memmove(&t->e[i + 1], &t->e[i], (t->n - i) * sizeof(*t->e));
	char *k = xmalloc(klen ? klen : 1);
	memcpy(k, key, klen);
	t->e[i] = (struct entry){k, klen, v, vlen};
	t->n++;
}

/* Removes [from, to) by index. */
static void remove_range(struct table *t, size_t from, size_t to)
{
	if (from == to)
		return;
	for (size_t i = from; i < to; i++)
		entry_free(&t->e[i]);
	memmove(&t->e[from], &t->e[to], (t->n - to) * sizeof(*t->e));
	t->n -= to - from;
}

/* The store named `dir`, or NULL; the caller holds registry_lock. */
static struct store *find(const char *dir)
{
	struct store *s = registry;
	while (s != NULL && strcmp(s->dir, dir) != 0)
		s = s->next;
	return s;
}

/* The same, taking the lock. */
static struct store *lookup(const char *dir)
{
	pthread_mutex_lock(&registry_lock);
	struct store *s = find(dir);
	pthread_mutex_unlock(&registry_lock);
	return s;
}

static struct store *ram_open(const char *dir, bool *corrupt, char **err)
{
	(void)err;
	*corrupt = false;
	pthread_mutex_lock(&registry_lock);
	struct store *s = find(dir);
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->dir = xstrdup(dir);
		pthread_mutex_init(&s->lock, NULL);
		s->next = registry;
		registry = s;
	}
	pthread_mutex_unlock(&registry_lock);
	return s;
}

static void ram_close(struct store *s)
{
	(void)s; /* the data stays for the next open (see above) */
}

static int ram_write(struct store *s, const struct store_op *ops, size_t n, bool sync, char **err)
{
	(void)sync;
	pthread_mutex_lock(&s->lock);
	if (s->fail_writes > 0) {
		s->fail_writes--;
		pthread_mutex_unlock(&s->lock);
		*err = xstrdup("IO error: injected by store_ram_fail_writes");
		return -1;
	}
	for (size_t k = 0; k < n; k++) {
		const struct store_op *op = &ops[k];
		struct table *t = &s->cf[op->cf];
		size_t i = lower_bound(t, op->key, op->klen);
		switch (op->kind) {
		case STORE_PUT:
			put(t, op->key, op->klen, op->val, op->vlen);
			break;
		case STORE_DELETE:
			if (found(t, i, op->key, op->klen))
				remove_range(t, i, i + 1);
			break;
		case STORE_DELETE_RANGE:
			remove_range(t, i, lower_bound(t, op->val, op->vlen));
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int ram_get(struct store *s, enum store_cf cf, const char *key, size_t klen, char **val,
		   size_t *vlen, char **err)
{
	(void)err;
	pthread_mutex_lock(&s->lock);
	struct table *t = &s->cf[cf];
	size_t i = lower_bound(t, key, klen);
	int rc = 0;
	if (found(t, i, key, klen)) {
		*vlen = t->e[i].vlen;
		*val = xmalloc(*vlen + 1);
		memcpy(*val, t->e[i].val, *vlen);
		(*val)[*vlen] = '\0';
		rc = 1;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* Copies of the entries with `prefix`, so callbacks run without the lock. */
static struct table snapshot(struct store *s, enum store_cf cf, const char *prefix, size_t plen)
{
	struct table out = {0};
	pthread_mutex_lock(&s->lock);
	struct table *t = &s->cf[cf];
	for (size_t i = lower_bound(t, prefix, plen);
	     i < t->n && t->e[i].klen >= plen && memcmp(t->e[i].key, prefix, plen) == 0; i++)
		put(&out, t->e[i].key, t->e[i].klen, t->e[i].val, t->e[i].vlen);
	pthread_mutex_unlock(&s->lock);
	return out;
}

static void table_free(struct table *t)
{
	remove_range(t, 0, t->n);
	free(t->e);
	memset(t, 0, sizeof(*t));
}

static int ram_scan(struct store *s, enum store_cf cf, const char *prefix, size_t plen,
		    store_scan_cb cb, void *arg, char **err)
{
	(void)err;
	struct table snap = snapshot(s, cf, prefix ? prefix : "", prefix ? plen : 0);
	for (size_t i = 0; i < snap.n; i++)
		if (cb(arg, snap.e[i].key, snap.e[i].klen, snap.e[i].val, snap.e[i].vlen) != 0)
			break;
	table_free(&snap);
	return 0;
}

static int ram_prefixes(struct store *s, enum store_cf cf, size_t plen, store_scan_cb cb, void *arg,
			char **err)
{
	(void)err;
	struct table snap = snapshot(s, cf, "", 0);
	for (size_t i = 0; i < snap.n; i++) {
		const struct entry *e = &snap.e[i];
		size_t n = e->klen < plen ? e->klen : plen;
		if (i > 0 && snap.e[i - 1].klen >= n && memcmp(snap.e[i - 1].key, e->key, n) == 0)
			continue; /* same prefix as the last one visited */
		if (cb(arg, e->key, n, NULL, 0) != 0)
			break;
	}
	table_free(&snap);
	return 0;
}

static int ram_health(struct store *s, char **err)
{
	pthread_mutex_lock(&s->lock);
	bool bad = s->background_error;
	pthread_mutex_unlock(&s->lock);
	if (!bad)
		return 0;
	*err = xstrdup("background error: injected by store_ram_background_error");
	return -1;
}

static int ram_flush(struct store *s, char **err)
{
	(void)s;
	(void)err;
	return 0; /* nothing to write out */
}

const struct store_backend store_ram = {
    .name = "ram",
    .open = ram_open,
    .close = ram_close,
    .write = ram_write,
    .get = ram_get,
    .scan = ram_scan,
    .prefixes = ram_prefixes,
    .health = ram_health,
    .flush = ram_flush,
};

void store_ram_fail_writes(const char *dir, int n)
{
	struct store *s = lookup(dir);
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	s->fail_writes = n;
	pthread_mutex_unlock(&s->lock);
}

void store_ram_background_error(const char *dir)
{
	struct store *s = lookup(dir);
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	s->background_error = true;
	pthread_mutex_unlock(&s->lock);
}

size_t store_ram_count(const char *dir, enum store_cf cf)
{
	struct store *s = lookup(dir);
	if (s == NULL)
		return 0;
	pthread_mutex_lock(&s->lock);
	size_t n = s->cf[cf].n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void store_ram_destroy(const char *dir)
{
	pthread_mutex_lock(&registry_lock);
	for (struct store **p = &registry; *p != NULL; p = &(*p)->next) {
		if (strcmp((*p)->dir, dir) == 0) {
			struct store *s = *p;
			*p = s->next;
			for (int cf = 0; cf < STORE_CF_COUNT; cf++)
				table_free(&s->cf[cf]);
			pthread_mutex_destroy(&s->lock);
			free(s->dir);
			free(s);
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
}
