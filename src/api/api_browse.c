/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * GET /deliveries: a page of the schedule's deliveries that match a filter
 * (docs/api.md#queue-administration), for the queue browser and `zone-mta
 * queue list`.  From memory, in bounded steps on the loop (sched_walk).
 * In queue order zone by zone, `next` continues after the page's last row;
 * sorted by a column, every match is looked at and the best `limit` after
 * the cursor (the last row's key and place) are kept in a bounded heap.
 * Either way a million deliveries are paged without ever being loaded at
 * once.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "api/api_internal.h"
#include "core/clock.h"
#include "core/hmap.h"
#include "core/xmalloc.h"
#include "sched/sched.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000
/* A sorted cursor's key at most (a reply is cut at about 2,000 bytes) */
#define CURSOR_KEY_MAX 8192

/* The columns a listing sorts by; SORT_QUEUE is the queue's own order. */
enum sort_key {
	SORT_QUEUE,
	SORT_ID,
	SORT_RECIPIENT,
	SORT_DOMAIN,
	SORT_ZONE,
	SORT_FROM,
	SORT_CREATED,
	SORT_STATE,
	SORT_ATTEMPTS,
	SORT_NEXT,
	SORT_RESPONSE,
};
static const char *const sort_names[] = {"queue",    "id",   "recipient", "domain",
					 "zone",     "from", "created",   "state",
					 "attempts", "next", "response",  NULL};

static bool numeric_sort(enum sort_key k)
{
	return k == SORT_CREATED || k == SORT_ATTEMPTS || k == SORT_NEXT;
}

/* A delivery's place in a sorted listing: its key, then zone, id, seq. */
struct ranked {
	int64_t n;     /* numeric keys */
	const char *s; /* the others ("" for none) */
	const char *zone;
	char id[QUEUE_ID_LEN + 1];
	unsigned seq;
	json_t *row; /* kept ones: their row (zone points into it; s is their own copy) */
};

struct sort_order {
	enum sort_key key;
	bool descending;
};

static int rank_cmp(const struct ranked *a, const struct ranked *b, const struct sort_order *o)
{
	int c = numeric_sort(o->key) ? (a->n > b->n) - (a->n < b->n) : strcmp(a->s, b->s);
	if (o->descending)
		c = -c;
	if (c == 0)
		c = strcmp(a->zone, b->zone);
	if (c == 0)
		c = strcmp(a->id, b->id);
	if (c == 0)
		c = (a->seq > b->seq) - (a->seq < b->seq);
	return c;
}

static const char *state_of(const struct sched_item *it)
{
	return it->held ? "held" : it->stopped ? "paused" : it->deferred ? "deferred" : "queued";
}

/* The item's place; strings borrowed from it. */
static struct ranked rank_of(const struct sched_item *it, enum sort_key key)
{
	struct ranked r = {.zone = sched_item_zone(it), .seq = it->seq, .s = ""};
	memcpy(r.id, it->id, sizeof(r.id));
	switch (key) {
	case SORT_QUEUE:
	case SORT_ID:
		r.s = it->id;
		break;
	case SORT_RECIPIENT:
		r.s = it->recipient;
		break;
	case SORT_DOMAIN:
		r.s = sched_item_domain(it);
		break;
	case SORT_ZONE:
		r.s = r.zone;
		break;
	case SORT_FROM:
		r.s = it->from ? it->from : "";
		break;
	case SORT_CREATED:
		r.n = it->created;
		break;
	case SORT_STATE:
		r.s = state_of(it);
		break;
	case SORT_ATTEMPTS:
		r.n = it->attempts;
		break;
	case SORT_NEXT:
		r.n = it->deferred ? clock_mono_to_wall(it->next) : 0;
		break;
	case SORT_RESPONSE:
		r.s = it->response ? it->response : "";
		break;
	}
	return r;
}

struct browse {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	uint64_t walk;
	json_t *rows;
	size_t limit;
	bool more; /* a match past the page: `next` is given */
	char last_zone[128], last_id[QUEUE_ID_LEN + 1];
	unsigned last_seq;
	/* sorted: the best limit + 1 after the cursor, a heap with the
	 * worst on top */
	struct sort_order order;
	bool has_cursor;
	struct ranked cursor; /* zone in cursor_text, s in cursor_key */
	char *cursor_text, *cursor_key;
	struct ranked *heap;
	size_t nheap;
};

/* Whether a is to be dropped before b (b ranks ahead). */
static bool heap_above(const struct browse *b, size_t i, size_t j)
{
	return rank_cmp(&b->heap[i], &b->heap[j], &b->order) > 0;
}

static void heap_swap(struct browse *b, size_t i, size_t j)
{
	struct ranked t = b->heap[i];
	b->heap[i] = b->heap[j];
	b->heap[j] = t;
}

static void heap_down(struct browse *b, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, top = i;
		if (l < b->nheap && heap_above(b, l, top))
			top = l;
		if (r < b->nheap && heap_above(b, r, top))
			top = r;
		if (top == i)
			return;
		heap_swap(b, i, top);
		i = top;
	}
}

static void heap_up(struct browse *b, size_t i)
{
	while (i > 0 && heap_above(b, i, (i - 1) / 2)) {
		heap_swap(b, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
}

/* A kept row's place: its own copy of the key, the zone the row's. */
static struct ranked rank_kept(const struct ranked *r, json_t *row, enum sort_key key)
{
	struct ranked k = *r;
	k.row = row;
	k.zone = json_string_value(json_object_get(row, "zone"));
	k.s = numeric_sort(key) ? "" : xstrdup(r->s);
	return k;
}

static void rank_free(struct ranked *r, enum sort_key key)
{
	json_decref(r->row);
	if (!numeric_sort(key))
		free((char *)r->s);
}

static void sorted_visit(struct browse *b, const struct sched_item *it)
{
	struct ranked r = rank_of(it, b->order.key);
	if (b->has_cursor && rank_cmp(&r, &b->cursor, &b->order) <= 0)
		return; /* on an earlier page */
	if (b->nheap == b->limit + 1) {
		if (rank_cmp(&r, &b->heap[0], &b->order) >= 0)
			return;
		rank_free(&b->heap[0], b->order.key);
		b->heap[0] = rank_kept(&r, sched_item_json(it), b->order.key);
		heap_down(b, 0);
		return;
	}
	b->heap[b->nheap] = rank_kept(&r, sched_item_json(it), b->order.key);
	heap_up(b, b->nheap++);
}

static void browse_free(struct browse *b)
{
	for (size_t i = 0; i < b->nheap; i++)
		rank_free(&b->heap[i], b->order.key);
	free(b->heap);
	free(b->cursor_text);
	free(b->cursor_key);
	json_decref(b->rows);
	free(b);
}

static void browse_gone(void *arg)
{
	struct browse *b = arg;
	sched_walk_cancel(b->api->sched, b->walk);
	browse_free(b);
}

static void browse_visit(void *arg, struct sched_item *it)
{
	struct browse *b = arg;
	if (b->order.key != SORT_QUEUE) {
		sorted_visit(b, it);
		return;
	}
	if (json_array_size(b->rows) == b->limit) {
		b->more = true; /* the walk's one past the page */
		return;
	}
	json_array_append_new(b->rows, sched_item_json(it));
	snprintf(b->last_zone, sizeof(b->last_zone), "%s", sched_item_zone(it));
	memcpy(b->last_id, it->id, sizeof(b->last_id));
	b->last_seq = it->seq;
}

static int ranked_cmp(const void *a, const void *b, void *order)
{
	return rank_cmp(a, b, order);
}

/* A sorted page's `next`: zone/id/seq/<the key, hex>. */
static json_t *sorted_cursor(const struct browse *b, const struct ranked *last)
{
	char num[24];
	const char *key = last->s;
	if (numeric_sort(b->order.key)) {
		snprintf(num, sizeof(num), "%lld", (long long)last->n);
		key = num;
	}
	size_t n = strlen(key);
	char *text = xmalloc(strlen(last->zone) + QUEUE_ID_LEN + 8 + 2 * n + 1);
	int at = sprintf(text, "%s/%s/%03x/", last->zone, last->id, last->seq);
	for (size_t i = 0; i < n; i++)
		at += sprintf(text + at, "%02x", (unsigned char)key[i]);
	json_t *cursor = json_string(text);
	free(text);
	return cursor;
}

static void browse_done(void *arg, size_t scanned, size_t matched)
{
	(void)matched;
	struct browse *b = arg;
	api_on_gone(b->api, b->conn, NULL, NULL);
	json_t *next = json_null();
	if (b->order.key != SORT_QUEUE) {
		qsort_r(b->heap, b->nheap, sizeof(*b->heap), ranked_cmp, &b->order);
		size_t shown = b->nheap < b->limit ? b->nheap : b->limit;
		for (size_t i = 0; i < shown; i++)
			json_array_append(b->rows, b->heap[i].row);
		if (b->nheap > b->limit)
			next = sorted_cursor(b, &b->heap[shown - 1]);
	} else if (b->more) {
		char cursor[200];
		snprintf(cursor, sizeof(cursor), "%s/%s/%03x", b->last_zone, b->last_id,
			 b->last_seq);
		next = json_string(cursor);
	}
	api_reply_json(b->req, HTTP_OK,
		       json_pack("{s:O, s:o, s:I}", "deliveries", b->rows, "next", next, "scanned",
				 (json_int_t)scanned));
	browse_free(b);
}

/* Takes `limit` out of the parameters (it is no filter): *n, or dflt
 * when absent; false when it is not 1 to PAGE_MAX. */
static bool take_limit(json_t *in, long dflt, long *n)
{
	const char *limit = json_string_value(json_object_get(in, "limit"));
	char *end = NULL;
	*n = limit ? strtol(limit, &end, 10) : dflt;
	bool ok = limit == NULL || (*end == '\0' && *n >= 1 && *n <= PAGE_MAX);
	json_object_del(in, "limit");
	return ok;
}

/* "zone/id/seq" into f; false when it is not one. */
static bool parse_cursor(char *s, struct sched_filter *f)
{
	char *seq = strrchr(s, '/');
	if (seq == NULL || seq == s)
		return false;
	*seq++ = '\0';
	char *id = strrchr(s, '/');
	if (id == NULL || id == s)
		return false;
	*id++ = '\0';
	f->after_zone = s;
	f->after_id = id;
	f->after_seq = api_parse_seq(seq);
	return api_valid_id(id) && f->after_seq != 0;
}

/* A lowercase hex digit's value, or -1. */
static int hex_digit(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A sorted page's cursor (sorted_cursor's) into b->cursor; false when it
 * is not one.  `s` is kept by b. */
static bool parse_sorted_cursor(struct browse *b, char *s)
{
	b->cursor_text = s;
	char *hex = strrchr(s, '/');
	size_t n = hex ? strlen(hex + 1) : 1;
	if (hex == NULL || n % 2 != 0 || n > 2 * CURSOR_KEY_MAX)
		return false;
	*hex++ = '\0';
	char *key = b->cursor_key = xmalloc(n / 2 + 1);
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
		if (hi < 0 || lo < 0 || hi + lo == 0)
			return false;
		key[i] = (char)(hi << 4 | lo);
	}
	key[n / 2] = '\0';
	struct sched_filter at = {0};
	if (!parse_cursor(s, &at))
		return false;
	b->cursor = (struct ranked){.s = key, .zone = at.after_zone, .seq = at.after_seq};
	memcpy(b->cursor.id, at.after_id, sizeof(b->cursor.id));
	if (numeric_sort(b->order.key)) {
		char *end;
		b->cursor.n = strtoll(key, &end, 10);
		if (*key == '\0' || *end != '\0')
			return false;
	}
	b->has_cursor = true;
	return true;
}

/* sort= and order= taken out of the parameters into b; false when they
 * are not understood. */
static bool take_sort(json_t *in, struct browse *b)
{
	const char *sort = json_string_value(json_object_get(in, "sort"));
	const char *order = json_string_value(json_object_get(in, "order"));
	bool ok = true;
	b->order.key = SORT_QUEUE;
	if (sort != NULL) {
		ok = false;
		for (int i = 0; sort_names[i] != NULL; i++)
			if (strcmp(sort, sort_names[i]) == 0) {
				b->order.key = (enum sort_key)i;
				ok = true;
			}
	}
	if (order != NULL && strcmp(order, "desc") == 0)
		b->order.descending = true;
	else if (order != NULL && strcmp(order, "asc") != 0)
		ok = false;
	if (b->order.key == SORT_QUEUE && b->order.descending)
		ok = false; /* the queue's order goes one way */
	json_object_del(in, "sort");
	json_object_del(in, "order");
	return ok;
}

void route_deliveries(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	json_t *in = api_request_params(req);
	if (in == NULL) {
		api_reply_error(req, HTTP_BADREQUEST, "the parameters are not understood");
		return;
	}
	struct browse *b = xcalloc(1, sizeof(*b));
	b->rows = json_array();
	struct sched_filter f = {0};
	char why[200] = "";
	char *after = json_string_value(json_object_get(in, "after"))
			  ? xstrdup(json_string_value(json_object_get(in, "after")))
			  : NULL;
	json_object_del(in, "after"); /* no filter either */
	long n;
	bool sort_ok = take_sort(in, b);
	bool sorted = b->order.key != SORT_QUEUE;
	if (!take_limit(in, PAGE_DEFAULT, &n))
		snprintf(why, sizeof(why), "limit must be a number from 1 to %d", PAGE_MAX);
	else if (!sort_ok)
		snprintf(why, sizeof(why),
			 "sort must be one of queue, id, recipient, domain, zone, from, created, "
			 "state, attempts, next, response; order asc or desc (queue: asc)");
	else if (after != NULL &&
		 !(sorted ? parse_sorted_cursor(b, after) : parse_cursor(after, &f)))
		snprintf(why, sizeof(why), "after must be a 'next' this listing gave");
	else
		api_parse_filter(api, in, &f, NULL, why, sizeof(why));
	if (why[0] != '\0') {
		json_decref(in);
		if (b->cursor_text != after)
			free(after); /* else b keeps it */
		browse_free(b);
		api_reply_error(req, HTTP_BADREQUEST, why);
		return;
	}
	b->api = api;
	b->req = req;
	b->conn = evhttp_request_get_connection(req);
	b->limit = (size_t)n;
	if (sorted) {
		/* every match is looked at; the best limit + 1 kept */
		b->heap = xcalloc(b->limit + 1, sizeof(*b->heap));
	} else {
		f.limit = b->limit + 1; /* one more tells whether there is a next page */
	}
	api_on_gone(api, b->conn, browse_gone, b);
	/* The walk copies what it keeps of the filter. */
	b->walk = sched_walk(api->sched, &f, browse_visit, browse_done, b);
	json_decref(in);
	if (b->cursor_text != after)
		free(after);
}

/* --- GET /summary: qshape's view of the queue --- */

/* Age buckets in minutes (qshape's): up to 5, 10, ... 1280, and older. */
static const int age_limits[] = {5, 10, 20, 40, 80, 160, 320, 640, 1280};
#define AGE_BUCKETS (sizeof(age_limits) / sizeof(age_limits[0]) + 1)
#define REASONS_KEPT 10000

struct domain_shape {
	size_t total;
	size_t ages[AGE_BUCKETS];
};

struct summary {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	uint64_t walk;
	int64_t now;
	size_t limit;
	struct strmap *domains; /* name → struct domain_shape */
	struct strmap *reasons; /* normalised response → count (a size_t in a pointer) */
	size_t deferred, held, paused, total;
};

static void summary_free(struct summary *s)
{
	size_t pos = 0;
	const char *k;
	void *v;
	while (strmap_next(s->domains, &pos, &k, &v))
		free(v);
	strmap_free(s->domains);
	strmap_free(s->reasons);
	free(s);
}

static void summary_gone(void *arg)
{
	struct summary *s = arg;
	sched_walk_cancel(s->api->sched, s->walk);
	summary_free(s);
}

/* A deferral's reply with what differs between recipients taken out, so
 * that the same cause counts once: digits after the codes become '#', an
 * <address> becomes <...>; at most 100 bytes. */
static void normalise_reason(const char *text, char *out, size_t size)
{
	size_t o = 0, i = 0;
	/* the reply code and the enhanced code stay */
	while (text[i] != '\0' && i < 12 && text[i] != ' ')
		i++;
	if (text[i] == ' ')
		i++;
	while (text[i] != '\0' && i < 20 && text[i] != ' ')
		i++;
	if (i >= size)
		i = size - 1;
	memcpy(out, text, i);
	o = i;
	while (text[i] != '\0' && o + 6 < size && o < 100) {
		char c = text[i];
		if (c >= '0' && c <= '9') {
			while (text[i] >= '0' && text[i] <= '9')
				i++;
			out[o++] = '#';
		} else if (c == '<' && strchr(text + i, '>') != NULL) {
			i = (size_t)(strchr(text + i, '>') - text) + 1;
			memcpy(out + o, "<...>", 5);
			o += 5;
		} else {
			out[o++] = c;
			i++;
		}
	}
	out[o] = '\0';
}

static void summary_visit(void *arg, struct sched_item *it)
{
	struct summary *s = arg;
	struct domain_shape *d = strmap_get(s->domains, sched_item_domain(it));
	if (d == NULL) {
		d = xcalloc(1, sizeof(*d));
		strmap_put(s->domains, sched_item_domain(it), d);
	}
	int64_t minutes = (s->now - it->created) / 60000;
	size_t b = 0;
	while (b < AGE_BUCKETS - 1 && minutes >= age_limits[b])
		b++;
	d->ages[b]++;
	d->total++;
	s->total++;
	s->held += it->held;
	s->paused += it->stopped && !it->held;
	if (!it->deferred || it->response == NULL)
		return;
	s->deferred++;
	char reason[128];
	normalise_reason(it->response, reason, sizeof(reason));
	uintptr_t n = (uintptr_t)strmap_get(s->reasons, reason);
	if (n > 0 || strmap_count(s->reasons) < REASONS_KEPT)
		strmap_put(s->reasons, reason, (void *)(n + 1));
}

/* Largest first, by the member qsort_r is given. */
static int by_member(const void *a, const void *b, void *key)
{
	json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, key));
	json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, key));
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The `limit` largest of the objects in arr by their member `key`. */
static json_t *top(json_t *arr, const char *key, size_t limit)
{
	size_t n = json_array_size(arr);
	json_t **v = xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(arr, i);
	qsort_r(v, n, sizeof(*v), by_member, (void *)key);
	json_t *out = json_array();
	for (size_t i = 0; i < n && i < limit; i++)
		json_array_append(out, v[i]);
	free(v);
	json_decref(arr);
	return out;
}

static void summary_done(void *arg, size_t scanned, size_t matched)
{
	(void)scanned;
	(void)matched;
	struct summary *s = arg;
	api_on_gone(s->api, s->conn, NULL, NULL);
	json_t *buckets = json_array();
	for (size_t b = 0; b < AGE_BUCKETS; b++) {
		char name[16];
		snprintf(name, sizeof(name), b < AGE_BUCKETS - 1 ? "%dm" : "%dm+",
			 b < AGE_BUCKETS - 1 ? age_limits[b] : age_limits[AGE_BUCKETS - 2]);
		json_array_append_new(buckets, json_string(name));
	}
	json_t *domains = json_array();
	size_t pos = 0;
	const char *k;
	void *v;
	while (strmap_next(s->domains, &pos, &k, &v)) {
		const struct domain_shape *d = v;
		json_t *ages = json_array();
		for (size_t b = 0; b < AGE_BUCKETS; b++)
			json_array_append_new(ages, json_integer((json_int_t)d->ages[b]));
		json_array_append_new(domains, json_pack("{s:s, s:I, s:o}", "domain", k, "total",
							 (json_int_t)d->total, "ages", ages));
	}
	json_t *reasons = json_array();
	pos = 0;
	while (strmap_next(s->reasons, &pos, &k, &v))
		json_array_append_new(reasons, json_pack("{s:s, s:I}", "reason", k, "count",
							 (json_int_t)(uintptr_t)v));
	api_reply_json(
	    s->req, HTTP_OK,
	    json_pack("{s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "total", (json_int_t)s->total,
		      "domainCount", (json_int_t)strmap_count(s->domains), "deferred",
		      (json_int_t)s->deferred, "held", (json_int_t)s->held, "paused",
		      (json_int_t)s->paused, "buckets", buckets, "domains",
		      top(domains, "total", s->limit), "reasons", top(reasons, "count", 10)));
	summary_free(s);
}

void route_summary(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	json_t *in = api_request_params(req);
	if (in == NULL) {
		api_reply_error(req, HTTP_BADREQUEST, "the parameters are not understood");
		return;
	}
	long n;
	bool good_limit = take_limit(in, 50, &n);
	struct sched_filter f = {0};
	char why[160] = "";
	if (!good_limit)
		snprintf(why, sizeof(why), "limit must be a number from 1 to %d", PAGE_MAX);
	else
		api_parse_filter(api, in, &f, NULL, why, sizeof(why));
	if (why[0] != '\0') {
		json_decref(in);
		api_reply_error(req, HTTP_BADREQUEST, why);
		return;
	}
	struct summary *s = xcalloc(1, sizeof(*s));
	s->api = api;
	s->req = req;
	s->conn = evhttp_request_get_connection(req);
	s->now = clock_wall_ms();
	s->limit = (size_t)n;
	s->domains = strmap_new();
	s->reasons = strmap_new();
	api_on_gone(api, s->conn, summary_gone, s);
	s->walk = sched_walk(api->sched, &f, summary_visit, summary_done, s);
	json_decref(in);
}
