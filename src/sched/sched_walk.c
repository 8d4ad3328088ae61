/* SPDX-License-Identifier: EUPL-1.2 */
/* Operations over many deliveries and listings, a bounded number per loop
 * pass; see sched.h (sched_walk, sched_list). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/xmalloc.h"
#include "sched/sched.h"
#include "sched/sched_internal.h"

/* --- operations over many deliveries --- */

/* Deliveries a walk acts on per loop pass (and index entries it looks at). */
#define WALK_STEP 1024

struct sched_walk {
	struct sched *s;
	uint64_t id;
	struct queue_pause match; /* domain, sender, user (owned); zones below */
	enum sched_status status;
	int64_t created_before;
	char *recipient;
	char **zones; /* the zones to walk, by name */
	size_t nzones, zone;
	char cursor[QUEUE_ID_LEN + 1];
	unsigned cursor_seq;
	size_t scanned, matched, limit;
	struct event *step_ev;
	bool (*busy)(void *arg);
	void *busy_arg;
	sched_visit_fn visit;
	sched_walk_done_fn done;
	void *arg;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool walk_matches(const struct sched_walk *w, const struct sched_item *it)
{
	if (!sched_pause_matches(&w->match, it))
		return false;
	if (w->created_before != 0 && it->created >= w->created_before)
		return false;
	if (w->recipient != NULL && strcasecmp(w->recipient, it->recipient) != 0)
		return false;
	switch (w->status) {
	case SCHED_ANY:
		return true;
	case SCHED_QUEUED:
		return !it->deferred && !it->held;
	case SCHED_DEFERRED:
		return it->deferred && !it->held;
	case SCHED_HELD:
		return it->held;
	}
	return false;
}

static void walk_free(struct sched_walk *w)
{
	u64map_remove(w->s->walks, w->id);
	event_free(w->step_ev);
	free((char *)w->match.domain);
	free((char *)w->match.sender);
	free((char *)w->match.user);
	free(w->recipient);
	for (size_t i = 0; i < w->nzones; i++)
		free(w->zones[i]);
	free(w->zones);
	free(w);
}

static void walk_step(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sched_walk *w = arg;
	if (w->busy != NULL && w->busy(w->busy_arg)) {
		const struct timeval later = {0, 1000};
		evtimer_add(w->step_ev, &later);
		return;
	}
	struct sched_item *found[WALK_STEP];
	size_t nfound = 0, seen = 0;
	size_t want = WALK_STEP;
	if (w->limit > 0 && w->limit - w->matched < want)
		want = w->limit - w->matched;
	while (w->zone < w->nzones && nfound < want && seen < WALK_STEP) {
		struct sched_zone *z = sched_zone_get(w->s, w->zones[w->zone]);
		size_t i = z != NULL ? sched_index_after(z, w->cursor, w->cursor_seq) : 0;
		for (; z != NULL && i < z->n_index && nfound < want && seen < WALK_STEP; i++) {
			struct sched_item *it = z->index[i];
			if (it == NULL)
				continue;
			seen++;
			memcpy(w->cursor, it->id, sizeof(w->cursor));
			w->cursor_seq = it->seq;
			if (walk_matches(w, it))
				found[nfound++] = it;
		}
		if (z == NULL || i >= z->n_index) {
			w->zone++; /* this zone is done: the next from its start */
			w->cursor[0] = '\0';
			w->cursor_seq = 0;
		}
	}
	w->scanned += seen;
	w->matched += nfound;
	/* Collected first, acted on after: a visit may change the index. */
	for (size_t i = 0; i < nfound; i++)
		w->visit(w->arg, found[i]);
	if (w->zone < w->nzones && (w->limit == 0 || w->matched < w->limit)) {
		event_active(w->step_ev, EV_TIMEOUT, 0);
		return;
	}
	sched_walk_done_fn done = w->done;
	void *done_arg = w->arg;
	size_t scanned = w->scanned, matched = w->matched;
	walk_free(w);
	done(done_arg, scanned, matched);
}

uint64_t sched_walk(struct sched *s, const struct sched_filter *f, sched_visit_fn visit,
		    sched_walk_done_fn done, void *arg)
{
	struct sched_walk *w = xcalloc(1, sizeof(*w));
	w->s = s;
	w->id = ++s->next_listing;
	w->match = (struct queue_pause){NULL, xstrdup_or_null(f->domain),
					xstrdup_or_null(f->sender), xstrdup_or_null(f->user), 0};
	w->status = f->status;
	w->created_before = f->created_before;
	w->limit = f->limit;
	w->recipient = xstrdup_or_null(f->recipient);
	w->zones = xcalloc(strmap_count(s->zones) + 1, sizeof(char *));
	size_t pos = 0;
	const char *name;
	void *v;
	while (strmap_next(s->zones, &pos, &name, &v))
		if ((f->zone == NULL || strcmp(f->zone, name) == 0) &&
		    (f->after_zone == NULL || strcmp(name, f->after_zone) >= 0))
			w->zones[w->nzones++] = xstrdup(name);
	qsort(w->zones, w->nzones, sizeof(*w->zones), by_name);
	if (f->after_zone != NULL && w->nzones > 0 && strcmp(w->zones[0], f->after_zone) == 0 &&
	    f->after_id != NULL && strlen(f->after_id) == QUEUE_ID_LEN) {
		memcpy(w->cursor, f->after_id, sizeof(w->cursor));
		w->cursor_seq = f->after_seq;
	}
	w->visit = visit;
	w->done = done;
	w->arg = arg;
	w->step_ev = event_new(s->base, -1, 0, walk_step, w);
	u64map_put(s->walks, w->id, w);
	event_active(w->step_ev, EV_TIMEOUT, 0);
	return w->id;
}

void sched_walk_pace(struct sched *s, uint64_t id, bool (*busy)(void *arg), void *arg)
{
	struct sched_walk *w = id ? u64map_get(s->walks, id) : NULL;
	if (w != NULL) {
		w->busy = busy;
		w->busy_arg = arg;
	}
}

size_t sched_walk_scanned(const struct sched *s, uint64_t id)
{
	const struct sched_walk *w = id ? u64map_get(s->walks, id) : NULL;
	return w != NULL ? w->scanned : 0;
}

void sched_walk_cancel(struct sched *s, uint64_t id)
{
	struct sched_walk *w = id ? u64map_get(s->walks, id) : NULL;
	if (w != NULL)
		walk_free(w);
}

/* --- listings --- */

/* Index entries a listing looks at per loop pass (well under a ms). */
#define LIST_STEP 2048

struct sched_listing {
	struct sched *s;
	uint64_t id;
	struct sched_zone *z;
	bool deferred;
	size_t limit;
	/* where the next pass goes on: after this key */
	char cursor[QUEUE_ID_LEN + 1];
	unsigned cursor_seq;
	char last[QUEUE_ID_LEN + 1]; /* the message of the last row */
	json_t *rows;
	struct event *step_ev;
	sched_list_cb cb;
	void *arg;
};

json_t *sched_item_json(const struct sched_item *it)
{
	char seq[8];
	snprintf(seq, sizeof(seq), "%03x", it->seq);
	json_t *row = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s?, s:s?}", "id", it->id, "seq",
				seq, "zone", sched_item_zone(it), "recipient", it->recipient,
				"domain", it->dom->name, "created", (json_int_t)it->created, "from",
				it->from, "user", it->user);
	if (row != NULL && it->held)
		json_object_set_new(row, "held", json_true());
	if (row != NULL && it->stopped && !it->held)
		json_object_set_new(row, "paused", json_true());
	if (row != NULL && it->deferred)
		json_object_set_new(
		    row, "deferred",
		    json_pack("{s:I, s:i, s:I, s:I, s:s?}", "first", (json_int_t)it->first_failure,
			      "count", it->attempts, "last", (json_int_t)it->last_attempt, "next",
			      (json_int_t)clock_mono_to_wall(it->next), "response", it->response));
	return row;
}

static void listing_free(struct sched_listing *l)
{
	u64map_remove(l->s->listings, l->id);
	event_free(l->step_ev);
	json_decref(l->rows);
	free(l);
}

/* One bounded pass over the index; the next is queued behind other events. */
static void list_step(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sched_listing *l = arg;
	struct sched_zone *z = l->z;
	/* Nothing deferred in the zone: no walk for a list of none. */
	size_t i = l->deferred && z->index_deferred == 0
		       ? z->n_index
		       : sched_index_after(z, l->cursor, l->cursor_seq);
	size_t seen = 0;
	bool full = false;
	for (; i < z->n_index; i++) {
		const struct sched_item *it = z->index[i];
		if (it == NULL)
			continue; /* holes are cheap: they do not count */
		if (seen++ == LIST_STEP)
			break;
		/* A page ends at a message boundary, so `after` (a message id)
		 * resumes without skipping any of its deliveries. */
		if (json_array_size(l->rows) >= l->limit && strcmp(it->id, l->last) != 0) {
			full = true;
			break;
		}
		memcpy(l->cursor, it->id, sizeof(l->cursor));
		l->cursor_seq = it->seq;
		if (it->deferred != l->deferred)
			continue;
		json_t *row = sched_item_json(it);
		if (row != NULL) {
			json_array_append_new(l->rows, row);
			memcpy(l->last, it->id, sizeof(l->last));
		}
	}
	if (!full && i < z->n_index) {
		/* More next pass, after what other events are waiting. */
		event_active(l->step_ev, EV_TIMEOUT, 0);
		return;
	}
	sched_list_cb cb = l->cb;
	void *cb_arg = l->arg;
	json_t *rows = json_incref(l->rows);
	listing_free(l);
	cb(cb_arg, rows);
	json_decref(rows);
}

uint64_t sched_list(struct sched *s, const char *zone, bool deferred, const char *after,
		    size_t limit, sched_list_cb cb, void *arg)
{
	struct sched_listing *l = xcalloc(1, sizeof(*l));
	l->s = s;
	l->id = ++s->next_listing;
	l->z = sched_zone_get(s, zone);
	l->deferred = deferred;
	l->limit = limit;
	l->rows = json_array();
	l->cb = cb;
	l->arg = arg;
	/* After every delivery of message `after`: seqs run up to fff. */
	if (after != NULL) {
		snprintf(l->cursor, sizeof(l->cursor), "%s", after);
		l->cursor_seq = QUEUE_MAX_RCPTS;
	}
	l->step_ev = event_new(s->base, -1, 0, list_step, l);
	u64map_put(s->listings, l->id, l);
	if (l->z == NULL) {
		/* No such zone any more: an empty list, still answered later. */
		static struct sched_zone empty;
		l->z = &empty;
	}
	event_active(l->step_ev, EV_TIMEOUT, 0);
	return l->id;
}

void sched_list_cancel(struct sched *s, uint64_t id)
{
	struct sched_listing *l = id ? u64map_get(s->listings, id) : NULL;
	if (l != NULL)
		listing_free(l);
}
