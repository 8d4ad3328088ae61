/* SPDX-License-Identifier: EUPL-1.2 */
/* The delivery scheduler; see sched.h. */
#include "sched/sched.h"
#include "sched/sched_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/xmalloc.h"
#include "sched/backoff.h"
#include "sched/throttle.h"
#include "zone/pool.h"

static void item_free(struct sched_item *it);

/* --- the listing index: a zone's items in queue order --- */

static int item_cmp(const struct sched_item *it, const char *id, unsigned seq)
{
	int c = strcmp(it->id, id);
	return c != 0 ? c : it->seq < seq ? -1 : it->seq > seq;
}

/* New ids come last almost always (ids grow; recovery reads them in
 * order), and the index never ends with a hole: insertion is an append
 * but for a message committed after a younger one. */
static void index_add(struct sched_zone *z, struct sched_item *it)
{
	z->index = xreallocarray_grow(z->index, &z->index_cap, z->n_index + 1, sizeof(*z->index));
	size_t i = z->n_index;
	while (i > 0 &&
	       (z->index[i - 1] == NULL || item_cmp(z->index[i - 1], it->id, it->seq) > 0)) {
		z->index[i] = z->index[i - 1];
		if (z->index[i] != NULL)
			z->index[i]->index_pos = i;
		i--;
	}
	z->index[i] = it;
	it->index_pos = i;
	it->indexed = true;
	z->n_index++;
	z->index_deferred += it->deferred;
}

static void index_compact(struct sched_zone *z)
{
	size_t k = 0;
	for (size_t i = 0; i < z->n_index; i++) {
		if (z->index[i] == NULL)
			continue;
		z->index[k] = z->index[i];
		z->index[k]->index_pos = k;
		k++;
	}
	z->n_index = k;
	z->index_holes = 0;
}

static void index_remove(struct sched_item *it)
{
	if (!it->indexed)
		return;
	struct sched_zone *z = it->dom->zone;
	z->index[it->index_pos] = NULL;
	it->indexed = false;
	z->index_holes++;
	z->index_deferred -= it->deferred;
	/* No hole at the end, so that an append finds its place at once. */
	while (z->n_index > 0 && z->index[z->n_index - 1] == NULL) {
		z->n_index--;
		z->index_holes--;
	}
	/* Compaction costs O(n): only once holes are as many as items. */
	if (z->index_holes > 1024 && z->index_holes * 2 > z->n_index)
		index_compact(z);
}

/* The first position after (id, seq); holes count as anything. */
size_t sched_index_after(const struct sched_zone *z, const char *id, unsigned seq)
{
	size_t lo = 0, hi = z->n_index;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2, m = mid;
		while (m < hi && z->index[m] == NULL)
			m++;
		if (m == hi)
			hi = mid; /* only holes from mid on */
		else if (item_cmp(z->index[m], id, seq) <= 0)
			lo = m + 1;
		else
			hi = mid;
	}
	return lo;
}

static void item_key(char *key, const char *id, unsigned seq)
{
	snprintf(key, QUEUE_ID_LEN + 8, "%s/%03x", id, seq);
}

/* Every time in here is monotonic (core/clock.h). */
static int64_t now_ms(void)
{
	return clock_mono_ms();
}

/* --- heap of waiting items --- */

/* Heap order: by due time, then queue order (id, seq), so mail due in the
 * same millisecond becomes due in the order it was queued. */
static bool before(const struct sched_item *a, const struct sched_item *b)
{
	if (a->next != b->next)
		return a->next < b->next;
	int c = strcmp(a->id, b->id);
	return c != 0 ? c < 0 : a->seq < b->seq;
}

static void heap_swap(struct sched *s, size_t a, size_t b)
{
	struct sched_item *t = s->heap[a];
	s->heap[a] = s->heap[b];
	s->heap[b] = t;
	s->heap[a]->heap_index = a;
	s->heap[b]->heap_index = b;
}

static void heap_push(struct sched *s, struct sched_item *it)
{
	it->waiting = true;
	s->heap = xreallocarray_grow(s->heap, &s->heap_cap, s->nheap + 1, sizeof(*s->heap));
	size_t i = s->nheap++;
	s->heap[i] = it;
	it->heap_index = i;
	while (i > 0 && before(s->heap[i], s->heap[(i - 1) / 2])) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

/* Restores heap order around index i after its key changed or it moved. */
static void heap_fix(struct sched *s, size_t i)
{
	while (i > 0 && before(s->heap[i], s->heap[(i - 1) / 2])) {
		heap_swap(s, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < s->nheap && before(s->heap[l], s->heap[m]))
			m = l;
		if (r < s->nheap && before(s->heap[r], s->heap[m]))
			m = r;
		if (m == i)
			break;
		heap_swap(s, i, m);
		i = m;
	}
}

static void heap_remove(struct sched *s, struct sched_item *it)
{
	size_t i = it->heap_index;
	it->waiting = false;
	s->heap[i] = s->heap[--s->nheap];
	if (i < s->nheap) {
		s->heap[i]->heap_index = i;
		heap_fix(s, i);
	}
}

static struct sched_item *heap_pop(struct sched *s)
{
	struct sched_item *top = s->heap[0];
	top->waiting = false;
	s->heap[0] = s->heap[--s->nheap];
	s->heap[0]->heap_index = 0;
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < s->nheap && before(s->heap[l], s->heap[m]))
			m = l;
		if (r < s->nheap && before(s->heap[r], s->heap[m]))
			m = r;
		if (m == i)
			break;
		heap_swap(s, i, m);
		i = m;
	}
	return top;
}

/* --- zones and domains --- */

struct sched_zone *sched_zone_get(struct sched *s, const char *name)
{
	struct sched_zone *z = strmap_get(s->zones, name);
	if (z != NULL)
		return z;
	const struct zone_config *zc = config_zone(s->cfg, name);
	if (zc == NULL)
		return NULL;
	/* Zone names match case-insensitively: key by the configured name. */
	z = strmap_get(s->zones, zc->name);
	if (z != NULL)
		return z;
	z = xcalloc(1, sizeof(*z));
	z->cfg = zc;
	z->pool = config_pool(s->cfg, zc->pool);
	pool_rr_init(&z->rr[POOL_IPV4], z->pool, POOL_IPV4);
	pool_rr_init(&z->rr[POOL_IPV6], z->pool, POOL_IPV6);
	throttle_init(&z->throttle, &zc->throttle);
	z->domains = strmap_new();
	strmap_put(s->zones, zc->name, z);
	return z;
}

static struct sched_domain *domain_get(struct sched_zone *z, const struct config *cfg,
				       const char *name)
{
	struct sched_domain *d = strmap_get(z->domains, name);
	if (d != NULL)
		return d;
	d = xcalloc(1, sizeof(*d));
	d->name = xstrdup(name);
	d->zone = z;
	d->cfg = config_domain(cfg, name);
	throttle_init(&d->throttle, &d->cfg->throttle);
	strmap_put(z->domains, name, d);
	return d;
}

static void ring_add(struct sched_zone *z, struct sched_domain *d)
{
	if (d->in_ring)
		return;
	d->in_ring = true;
	if (z->ring == NULL) {
		d->ring_next = d->ring_prev = d;
		z->ring = d;
	} else {
		/* Insert before the current head: it comes last in this round. */
		d->ring_next = z->ring;
		d->ring_prev = z->ring->ring_prev;
		d->ring_prev->ring_next = d;
		z->ring->ring_prev = d;
	}
}

static void ring_remove(struct sched_zone *z, struct sched_domain *d)
{
	if (!d->in_ring)
		return;
	d->in_ring = false;
	if (d->ring_next == d) {
		z->ring = NULL;
	} else {
		d->ring_prev->ring_next = d->ring_next;
		d->ring_next->ring_prev = d->ring_prev;
		if (z->ring == d)
			z->ring = d->ring_next;
	}
}

/* The gauges of held deliveries and of due ones a pause sets aside. */
static void count_held(const struct sched_item *it, int delta)
{
	if (it->held)
		stats_add(STATS_HELD, sched_item_zone(it), delta);
	else if (it->stopped)
		stats_add(STATS_PAUSED, sched_item_zone(it), delta);
}

static void stop_item(struct sched *s, struct sched_item *it)
{
	s->stopped = xreallocarray_grow(s->stopped, &s->stopped_cap, s->nstopped + 1,
					sizeof(*s->stopped));
	it->stopped = true;
	it->stopped_pos = s->nstopped;
	s->stopped[s->nstopped++] = it;
	if (!it->held)
		count_held(it, 1);
}

static void unstop_item(struct sched *s, struct sched_item *it)
{
	struct sched_item *last = s->stopped[--s->nstopped];
	s->stopped[it->stopped_pos] = last;
	last->stopped_pos = it->stopped_pos;
	if (!it->held)
		count_held(it, -1);
	it->stopped = false;
}

static bool is_stopped(const struct sched *s, const struct sched_item *it)
{
	return it->held || (s->npauses > 0 && sched_item_paused(s, it));
}

/* A domain's FIFO of due items: doubly linked, so that an operation
 * takes any one out at once. */
static void fifo_push(struct sched_domain *d, struct sched_item *it)
{
	it->next_ready = NULL;
	it->prev_ready = d->ready_last;
	*(d->ready_last ? &d->ready_last->next_ready : &d->ready) = it;
	d->ready_last = it;
	d->nready++;
	it->in_fifo = true;
}

static void fifo_unlink(struct sched_item *it)
{
	struct sched_domain *d = it->dom;
	*(it->prev_ready ? &it->prev_ready->next_ready : &d->ready) = it->next_ready;
	*(it->next_ready ? &it->next_ready->prev_ready : &d->ready_last) = it->prev_ready;
	d->nready--;
	it->in_fifo = false;
}

static void make_ready(struct sched *s, struct sched_item *it)
{
	if (is_stopped(s, it)) {
		stop_item(s, it);
		return;
	}
	fifo_push(it->dom, it);
	ring_add(it->dom->zone, it->dom);
}

/* --- pumping --- */

static void schedule_pump(struct sched *s)
{
	event_active(s->pump_ev, EV_TIMEOUT, 0);
}

static void set_timer(struct sched *s, int64_t at, int64_t now)
{
	if (at <= 0)
		return;
	if (s->timer_at != 0 && s->timer_at <= at && s->timer_at > now)
		return;
	int64_t wait = at > now ? at - now : 0;
	struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
	s->timer_at = at;
	evtimer_add(s->timer, &tv);
}

/* Drops deliveries deleted through the API from the head of d's queue. */
static void drop_cancelled(struct sched_domain *d)
{
	while (d->ready != NULL && d->ready->cancelled) {
		struct sched_item *it = d->ready;
		fifo_unlink(it);
		item_free(it);
	}
}

static int by_seq(const void *a, const void *b)
{
	unsigned x = (*(struct sched_item *const *)a)->seq,
		 y = (*(struct sched_item *const *)b)->seq;
	return x < y ? -1 : x > y;
}

/* The run of due items at the head of d's queue for one message, in
 * envelope order. */
static struct sched_batch *take_batch(struct sched_domain *d)
{
	struct sched_batch *b = xcalloc(1, sizeof(*b));
	b->zone = d->zone->cfg;
	b->domain = d->name;
	size_t cap = 0;
	const char *id = d->ready->id;
	char first[QUEUE_ID_LEN + 1];
	memcpy(first, id, sizeof(first));
	while (d->ready != NULL && strcmp(d->ready->id, first) == 0) {
		struct sched_item *it = d->ready;
		fifo_unlink(it);
		if (it->cancelled) {
			item_free(it);
			continue;
		}
		b->items = xreallocarray_grow(b->items, &cap, b->n + 1, sizeof(*b->items));
		b->items[b->n++] = it;
	}
	qsort(b->items, b->n, sizeof(*b->items), by_seq);
	return b;
}

/* ms until both throttles let a message to d go (0: now). */
static int64_t throttle_delay(struct sched_domain *d, int64_t now)
{
	int64_t a = throttle_wait(&d->zone->throttle, now);
	int64_t b = throttle_wait(&d->throttle, now);
	return a > b ? a : b;
}

static void throttle_count(struct sched_domain *d, int64_t now)
{
	throttle_take(&d->zone->throttle, now);
	throttle_take(&d->throttle, now);
}

static void idle_remove(struct sched_zone *z, struct sched_slot *slot)
{
	if (!slot->parked)
		return;
	slot->parked = false;
	if (slot->idle_next == slot) {
		z->idle = NULL;
	} else {
		slot->idle_prev->idle_next = slot->idle_next;
		slot->idle_next->idle_prev = slot->idle_prev;
		if (z->idle == slot)
			z->idle = slot->idle_next;
	}
}

/* A parked connection of d that due mail could leave from, or NULL. */
static struct sched_slot *idle_for(struct sched_domain *d)
{
	struct sched_slot *first = d->zone->idle;
	struct sched_slot *slot = first;
	if (slot == NULL)
		return NULL;
	const int *local = d->ready->local;
	do {
		if (slot->dom == d && slot->local[0] == local[0] && slot->local[1] == local[1])
			return slot;
		slot = slot->idle_next;
	} while (slot != first);
	return NULL;
}

/* Starts what the limits allow, zone by zone, domains in turn. */
static void pump(struct sched *s)
{
	if (s->stopping)
		return;
	int64_t now = now_ms();
	while (s->nheap > 0 && s->heap[0]->next <= now)
		make_ready(s, heap_pop(s));
	int64_t wake = s->nheap > 0 ? s->heap[0]->next : 0;

	size_t pos = 0;
	const char *name;
	void *v;
	while (strmap_next(s->zones, &pos, &name, &v)) {
		struct sched_zone *z = v;
		if (z->cfg->disabled)
			continue;
		/* One pass over the ring, more while connections start. */
		size_t tries = strmap_count(z->domains);
		while (z->ring != NULL && tries-- > 0) {
			struct sched_domain *d = z->ring;
			z->ring = d->ring_next; /* next turn: the next domain */
			drop_cancelled(d);
			if (d->nready == 0) {
				ring_remove(z, d);
				continue;
			}
			int64_t delay = throttle_delay(d, now);
			if (delay > 0) {
				if (wake == 0 || now + delay < wake)
					wake = now + delay;
				continue;
			}
			struct sched_slot *idle = idle_for(d);
			if (idle != NULL) {
				/* A parked connection takes it: no new connection. */
				idle_remove(z, idle);
				struct sched_batch *b = take_batch(d);
				if (d->nready == 0)
					ring_remove(z, d);
				throttle_count(d, now);
				idle->messages++;
				tries = strmap_count(z->domains);
				idle->wake(idle->wake_arg, b);
				continue;
			}
			if (z->active >= z->cfg->connections && z->idle != NULL) {
				/* The zone is full of idle connections: close the
				 * oldest, its slot comes back through sched_release. */
				struct sched_slot *old = z->idle;
				idle_remove(z, old);
				old->wake(old->wake_arg, NULL);
				continue;
			}
			if (z->active >= z->cfg->connections) {
				/* No connection free: this domain keeps its turn
				 * and goes first when one frees up. */
				z->ring = d;
				break;
			}
			if (d->active >= d->cfg->max_connections)
				continue;
			struct sched_batch *b = take_batch(d);
			if (d->nready == 0)
				ring_remove(z, d);
			throttle_count(d, now);
			struct sched_slot *slot = xcalloc(1, sizeof(*slot));
			slot->dom = d;
			slot->local[0] = b->items[0]->local[0];
			slot->local[1] = b->items[0]->local[1];
			slot->messages = 1;
			d->active++;
			z->active++;
			tries = strmap_count(z->domains);
			s->start(s->start_arg, slot, b);
		}
	}
	if (wake > 0)
		set_timer(s, wake, now);
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sched *s = arg;
	s->timer_at = 0;
	pump(s);
}

/* --- public --- */

struct sched *sched_new(struct event_base *base, const struct config *cfg, sched_start_fn start,
			void *start_arg)
{
	struct sched *s = xcalloc(1, sizeof(*s));
	s->base = base;
	s->cfg = cfg;
	s->start = start;
	s->start_arg = start_arg;
	s->zones = strmap_new();
	s->items = strmap_new();
	s->listings = u64map_new();
	s->names = strmap_new();
	s->walks = u64map_new();
	s->timer = evtimer_new(base, on_timer, s);
	s->pump_ev = event_new(base, -1, 0, on_pump, s);
	return s;
}

/* One shared copy of each sender and user name: many deliveries have one. */
static const char *intern(struct sched *s, const char *name)
{
	if (name == NULL)
		return NULL;
	char *copy = strmap_get(s->names, name);
	if (copy == NULL) {
		copy = xstrdup(name);
		strmap_put(s->names, name, copy);
	}
	return copy;
}

void sched_add(struct sched *s, const struct queue_delivery_row *row)
{
	struct sched_zone *z = sched_zone_get(s, row->zone);
	if (z == NULL) {
		/* The zone left the configuration: its mail goes by the default. */
		log_msg(LOG_LEVEL_WARN, row->id, "sched",
			"seq=%03x zone=%s action=default_zone "
			"reason=\"no such zone\"",
			row->seq, row->zone);
		z = sched_zone_get(s, s->cfg->queue.default_zone);
	}
	struct sched_item *it = xcalloc(1, sizeof(*it));
	memcpy(it->id, row->id, QUEUE_ID_LEN + 1);
	it->seq = row->seq;
	char key[QUEUE_ID_LEN + 8];
	item_key(key, it->id, it->seq);
	strmap_put(s->items, key, it);
	it->recipient = xstrdup(row->recipient);
	it->dom = domain_get(z, s->cfg, row->domain);
	it->created = row->created;
	it->next = clock_wall_to_mono(row->next_attempt);
	it->first_failure = row->first_failure;
	it->attempts = row->attempts;
	it->deferred = row->deferred;
	/* The source addresses, one per family: kept from earlier attempts,
	 * else dealt now; the recipients of one message at one domain share
	 * them (one transaction). */
	it->local[0] = it->local[1] = -1;
	pool_parse_kept(z->pool, row->local_address, it->local);
	if (z->last_dom == it->dom && strcmp(z->last_id, it->id) == 0) {
		for (int f = 0; f < 2; f++)
			if (it->local[f] < 0)
				it->local[f] = z->last_local[f];
	} else {
		for (int f = 0; f < 2; f++)
			if (it->local[f] < 0)
				it->local[f] = pool_rr_next(&z->rr[f]);
		memcpy(z->last_id, it->id, sizeof(z->last_id));
		z->last_dom = it->dom;
		z->last_local[0] = it->local[0];
		z->last_local[1] = it->local[1];
	}
	it->last_attempt = row->last_attempt;
	it->response = row->response ? xstrdup(row->response) : NULL;
	it->from = intern(s, row->from);
	it->user = intern(s, row->user);
	it->held = row->held;
	count_held(it, 1);
	index_add(z, it);
	heap_push(s, it);
	schedule_pump(s);
}

void sched_stop(struct sched *s)
{
	s->stopping = true;
	evtimer_del(s->timer);
}

struct sched_batch *sched_next_batch(struct sched *s, struct sched_slot *slot)
{
	struct sched_domain *d = slot->dom;
	if (s->stopping)
		return NULL;
	int64_t now = now_ms();
	while (s->nheap > 0 && s->heap[0]->next <= now)
		make_ready(s, heap_pop(s));
	drop_cancelled(d);
	if (d->zone->cfg->disabled || d->nready == 0 ||
	    slot->messages >= d->zone->cfg->cache_reuse || throttle_delay(d, now) > 0)
		return NULL;
	/* Only mail that leaves from this connection's addresses. */
	if (d->ready->local[0] != slot->local[0] || d->ready->local[1] != slot->local[1])
		return NULL;
	struct sched_batch *b = take_batch(d);
	if (d->nready == 0)
		ring_remove(d->zone, d);
	throttle_count(d, now);
	slot->messages++;
	return b;
}

void sched_park(struct sched *s, struct sched_slot *slot,
		void (*wake)(void *arg, struct sched_batch *batch), void *arg)
{
	struct sched_zone *z = slot->dom->zone;
	slot->parked = true;
	slot->wake = wake;
	slot->wake_arg = arg;
	if (z->idle == NULL) {
		slot->idle_next = slot->idle_prev = slot;
		z->idle = slot;
	} else {
		slot->idle_next = z->idle;
		slot->idle_prev = z->idle->idle_prev;
		slot->idle_prev->idle_next = slot;
		z->idle->idle_prev = slot;
	}
	/* Mail that is due may be waiting for exactly this connection. */
	schedule_pump(s);
}

void sched_unpark(struct sched *s, struct sched_slot *slot)
{
	(void)s;
	idle_remove(slot->dom->zone, slot);
}

void sched_release(struct sched *s, struct sched_slot *slot)
{
	idle_remove(slot->dom->zone, slot);
	slot->dom->active--;
	slot->dom->zone->active--;
	free(slot);
	schedule_pump(s);
}

static void item_forget(struct sched *s, struct sched_item *it)
{
	char key[QUEUE_ID_LEN + 8];
	item_key(key, it->id, it->seq);
	if (strmap_get(s->items, key) == it)
		strmap_remove(s->items, key);
}

static void item_free(struct sched_item *it)
{
	if (it->held)
		count_held(it, -1);
	index_remove(it);
	free(it->recipient);
	free(it->response);
	free(it);
}

void sched_item_done(struct sched *s, struct sched_item *it)
{
	if (!it->cancelled)
		item_forget(s, it);
	item_free(it);
}

void sched_item_retry(struct sched *s, struct sched_item *it, int64_t delay_ms,
		      const char *response)
{
	if (it->cancelled) {
		item_free(it); /* deleted through the API meanwhile */
		return;
	}
	if (!it->deferred && it->indexed)
		it->dom->zone->index_deferred++;
	it->deferred = true;
	it->last_attempt = clock_wall_ms();
	free(it->response);
	it->response = xstrdup(response);
	it->next = now_ms() + (delay_ms > 0 ? delay_ms : 0);
	heap_push(s, it);
	schedule_pump(s);
}

size_t sched_cancel(struct sched *s, const char *id, unsigned seq,
		    void (*removed)(void *arg, const struct sched_item *it), void *arg)
{
	size_t n = 0;
	for (unsigned q = seq ? seq : 1; q <= (seq ? seq : QUEUE_MAX_RCPTS); q++) {
		char key[QUEUE_ID_LEN + 8];
		item_key(key, id, q);
		struct sched_item *it = strmap_remove(s->items, key);
		if (it == NULL)
			continue;
		removed(arg, it);
		index_remove(it); /* no longer listed, whatever it is doing */
		n++;
		if (it->waiting) {
			heap_remove(s, it);
			item_free(it);
		} else if (it->stopped) {
			unstop_item(s, it);
			item_free(it);
		} else {
			/* Due (in a domain's FIFO) or in flight: dropped when met. */
			it->cancelled = true;
		}
	}
	return n;
}

const char *sched_item_zone(const struct sched_item *it)
{
	return it->dom->zone->cfg->name;
}

const char *sched_item_domain(const struct sched_item *it)
{
	return it->dom->name;
}

const struct pool_config *sched_item_pool(const struct sched_item *it)
{
	return it->dom->zone->pool;
}

bool sched_retry_now(struct sched *s, const char *id, unsigned seq)
{
	char key[QUEUE_ID_LEN + 8];
	item_key(key, id, seq);
	struct sched_item *it = strmap_get(s->items, key);
	if (it == NULL || !it->waiting)
		return it != NULL; /* already due or in flight: nothing to hurry */
	it->next = now_ms();
	heap_fix(s, it->heap_index);
	schedule_pump(s);
	return true;
}

/* --- pauses and holds --- */

static void pauses_free(struct sched *s)
{
	for (size_t i = 0; i < s->npauses; i++) {
		free((char *)s->pauses[i].zone);
		free((char *)s->pauses[i].domain);
		free((char *)s->pauses[i].sender);
		free((char *)s->pauses[i].user);
	}
	free(s->pauses);
	s->pauses = NULL;
	s->npauses = 0;
}

/* A pause's sender: an address (exactly, the domain without case), or a
 * domain (the sender's). */
static bool sender_matches(const char *rule, const char *from)
{
	if (from == NULL)
		return false;
	const char *at = strrchr(from, '@');
	if (strchr(rule, '@') != NULL)
		return at != NULL && (size_t)(at - from) == (size_t)(strrchr(rule, '@') - rule) &&
		       strncmp(rule, from, (size_t)(at - from)) == 0 &&
		       strcasecmp(strrchr(rule, '@'), at) == 0;
	return at != NULL && strcasecmp(at + 1, rule) == 0;
}

/* Whether `it` matches every field of `p` given (pauses and operations
 * alike; `until` is the caller's). */
bool sched_pause_matches(const struct queue_pause *p, const struct sched_item *it)
{
	return (p->zone == NULL || strcmp(p->zone, sched_item_zone(it)) == 0) &&
	       (p->domain == NULL || strcasecmp(p->domain, it->dom->name) == 0) &&
	       (p->user == NULL || (it->user != NULL && strcmp(p->user, it->user) == 0)) &&
	       (p->sender == NULL || sender_matches(p->sender, it->from));
}

bool sched_item_paused(const struct sched *s, const struct sched_item *it)
{
	int64_t now = s->npauses > 0 ? clock_wall_ms() : 0;
	for (size_t i = 0; i < s->npauses; i++) {
		const struct queue_pause *p = &s->pauses[i];
		if ((p->until == 0 || p->until > now) && sched_pause_matches(p, it))
			return true;
	}
	return false;
}

/* Takes `it` out of its domain's FIFO when it is there (due, not in
 * flight); true when it was. */
static bool fifo_remove(struct sched_item *it)
{
	if (!it->in_fifo)
		return false;
	fifo_unlink(it);
	return true;
}

/* After the pauses or a hold changed: what is set aside and no longer
 * stopped becomes due; what is due and now stopped is set aside. */
static void restop(struct sched *s)
{
	for (size_t i = 0; i < s->nstopped;) {
		struct sched_item *it = s->stopped[i];
		if (is_stopped(s, it)) {
			i++;
			continue;
		}
		unstop_item(s, it); /* the last one moves to i */
		make_ready(s, it);
	}
	size_t pos = 0;
	const char *name;
	void *v;
	while (s->npauses > 0 && strmap_next(s->zones, &pos, &name, &v)) {
		struct sched_zone *z = v;
		size_t dpos = 0;
		void *dv;
		while (strmap_next(z->domains, &dpos, &name, &dv)) {
			struct sched_domain *d = dv;
			for (struct sched_item *it = d->ready, *next; it != NULL; it = next) {
				next = it->next_ready;
				if (!it->cancelled && is_stopped(s, it)) {
					fifo_unlink(it);
					stop_item(s, it);
				}
			}
		}
	}
	schedule_pump(s);
}

void sched_set_pauses(struct sched *s, const struct queue_pause *pauses, size_t n)
{
	pauses_free(s);
	s->pauses = xcalloc(n ? n : 1, sizeof(*s->pauses));
	for (size_t i = 0; i < n; i++)
		s->pauses[i] = (struct queue_pause){
		    xstrdup_or_null(pauses[i].zone), xstrdup_or_null(pauses[i].domain),
		    xstrdup_or_null(pauses[i].sender), xstrdup_or_null(pauses[i].user),
		    pauses[i].until};
	s->npauses = n;
	restop(s);
}

size_t sched_hold(struct sched *s, const char *id, unsigned seq, bool held,
		  void (*changed)(void *arg, const struct sched_item *it), void *arg)
{
	size_t n = 0;
	for (unsigned q = seq ? seq : 1; q <= (seq ? seq : QUEUE_MAX_RCPTS); q++) {
		char key[QUEUE_ID_LEN + 8];
		item_key(key, id, q);
		struct sched_item *it = strmap_get(s->items, key);
		if (it == NULL || it->held == held)
			continue;
		count_held(it, -1);
		it->held = held;
		count_held(it, 1);
		changed(arg, it);
		n++;
		if (held && !it->waiting && !it->stopped && fifo_remove(it))
			stop_item(s, it);
		else if (!held && it->stopped && !is_stopped(s, it)) {
			unstop_item(s, it);
			make_ready(s, it);
		}
	}
	if (n > 0)
		schedule_pump(s);
	return n;
}

/* How often set-aside items are looked over for expiry: a minute, or a
 * tenth of queue.maxQueueTime when that is shorter (a second at least). */
static struct timeval expiry_interval(const struct sched *s)
{
	uint64_t ms = s->cfg->queue.max_queue_time_ms / 10;
	ms = ms < 1000 ? 1000 : ms > 60000 ? 60000 : ms;
	return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sched *s = arg;
	int64_t before = clock_wall_ms() - (int64_t)s->cfg->queue.max_queue_time_ms;
	struct sched_item **old = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < s->nstopped; i++)
		if (s->stopped[i]->created <= before) {
			old = xreallocarray_grow(old, &cap, n + 1, sizeof(*old));
			old[n++] = s->stopped[i];
		}
	if (n > 0)
		s->expired(s->expired_arg, old, n);
	free(old);
	struct timeval tv = expiry_interval(s);
	evtimer_add(s->expiry_ev, &tv);
}

void sched_on_expiry(struct sched *s, sched_expired_fn expired, void *arg)
{
	if (!s->cfg->queue.expire_held)
		return;
	s->expired = expired;
	s->expired_arg = arg;
	s->expiry_ev = evtimer_new(s->base, on_expiry, s);
	struct timeval tv = expiry_interval(s);
	evtimer_add(s->expiry_ev, &tv);
}

bool sched_take(struct sched *s, struct sched_item *it)
{
	if (it->cancelled)
		return false;
	if (it->waiting)
		heap_remove(s, it);
	else if (it->stopped)
		unstop_item(s, it);
	else if (it->in_fifo)
		fifo_unlink(it); /* an emptied domain leaves the ring at its turn */
	else
		return false; /* in flight */
	return true;
}

struct sched_item *sched_item_get(const struct sched *s, const char *id, unsigned seq)
{
	char key[QUEUE_ID_LEN + 8];
	item_key(key, id, seq);
	return strmap_get(s->items, key);
}

bool sched_has_message(const struct sched *s, const char *id)
{
	for (unsigned q = 1; q <= QUEUE_MAX_RCPTS; q++) {
		char key[QUEUE_ID_LEN + 8];
		item_key(key, id, q);
		if (strmap_get(s->items, key) != NULL)
			return true;
	}
	return false;
}

void sched_batch_free(struct sched_batch *b)
{
	if (b == NULL)
		return;
	free(b->items);
	free(b);
}

const struct pool_config *sched_zone_pool(const struct sched *s, const struct zone_config *zone)
{
	return config_pool(s->cfg, zone->pool);
}

/* Cancels every listing or walk of `m` (each cancel removes its entry),
 * then frees the map. */
static void cancel_all(struct sched *s, struct u64map *m, void (*cancel)(struct sched *, uint64_t))
{
	while (u64map_count(m) > 0) {
		size_t pos = 0;
		uint64_t id;
		void *v;
		u64map_next(m, &pos, &id, &v);
		cancel(s, id);
	}
	u64map_free(m);
}

void sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nheap; i++)
		item_free(s->heap[i]);
	free(s->heap);
	for (size_t i = 0; i < s->nstopped; i++)
		item_free(s->stopped[i]);
	free(s->stopped);
	pauses_free(s);
	size_t npos = 0;
	const char *nk;
	void *nv;
	while (strmap_next(s->names, &npos, &nk, &nv))
		free(nv);
	strmap_free(s->names);
	size_t pos = 0;
	const char *name;
	void *v;
	while (strmap_next(s->zones, &pos, &name, &v)) {
		struct sched_zone *z = v;
		size_t dpos = 0;
		void *dv;
		while (strmap_next(z->domains, &dpos, &name, &dv)) {
			struct sched_domain *d = dv;
			for (struct sched_item *it = d->ready, *next; it; it = next) {
				next = it->next_ready;
				item_free(it);
			}
			free(d->name);
			free(d);
		}
		strmap_free(z->domains);
		free(z->index);
		pool_rr_clear(&z->rr[0]);
		pool_rr_clear(&z->rr[1]);
		free(z);
	}
	strmap_free(s->zones);
	strmap_free(s->items);
	cancel_all(s, s->listings, sched_list_cancel);
	cancel_all(s, s->walks, sched_walk_cancel);
	event_free(s->timer);
	if (s->expiry_ev != NULL)
		event_free(s->expiry_ev);
	event_free(s->pump_ev);
	free(s);
}
