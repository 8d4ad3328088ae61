/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: the scheduler (sched.c): the heap of waiting deliveries, the
 * per-domain FIFOs taken in turn, the zone and domain connection limits,
 * batches, park and wake, cancel while waiting, due or in flight, stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/xmalloc.h"
#include "sched/sched.h"
#include "test_util.h"

static const char CONFIG[] = "zones:\n"
			     "  default: {connections: 2, connectionCache: {reuseCount: 2}}\n"
			     "domainConfig:\n"
			     "  default: {maxConnections: 1}\n"
			     "  wide.test: {maxConnections: 5}\n";

static struct event_base *base;
static struct config *cfg;
static struct sched *s;

/* Connections the scheduler started, in order. */
struct started {
	struct sched_slot *slot;
	struct sched_batch *batch;
};
static struct started starts[64];
static size_t nstarts;

static void on_start(void *arg, struct sched_slot *slot, struct sched_batch *batch)
{
	(void)arg;
	assert_true(nstarts < 64);
	starts[nstarts++] = (struct started){slot, batch};
}

static int setup(void **state)
{
	(void)state;
	base = event_base_new();
	cfg = test_config(CONFIG);
	s = sched_new(base, cfg, on_start, NULL);
	nstarts = 0;
	return 0;
}

/* Finishes a batch's items (as the outcome stage would) and the batch. */
static void finish(struct sched_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		sched_item_done(s, b->items[i]);
	sched_batch_free(b);
}

/* The connection of start i is done: its batch finished, its slot released. */
static void end_start(size_t i)
{
	if (starts[i].batch != NULL)
		finish(starts[i].batch);
	if (starts[i].slot != NULL)
		sched_release(s, starts[i].slot);
	starts[i].batch = NULL;
	starts[i].slot = NULL;
}

static int teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < nstarts; i++)
		end_start(i);
	sched_free(s);
	config_free(cfg);
	event_base_free(base);
	return 0;
}

/* Runs what is active on the loop (the scheduler's deferred pump). */
static void run(void)
{
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* A delivery of message `id` (18 characters) to `rcpt`, due `in_ms` from now. */
static void add(const char *id, unsigned seq, const char *rcpt, int64_t in_ms)
{
	struct queue_delivery_row row = {
	    .id = id,
	    .seq = seq,
	    .zone = "default",
	    .recipient = rcpt,
	    .domain = strchr(rcpt, '@') + 1,
	    .created = clock_wall_ms(),
	    .next_attempt = clock_wall_ms() + in_ms,
	};
	sched_add(s, &row);
}

#define ID(n) ("00000000000000000" #n)

static void test_due_now_and_later(void **state)
{
	(void)state;
	add(ID(1), 1, "a@one.test", -1000);
	add(ID(2), 1, "b@two.test", 60000);
	assert_int_equal(nstarts, 0); /* nothing from inside sched_add */
	run();
	assert_int_equal(nstarts, 1);
	assert_string_equal(starts[0].batch->domain, "one.test");
	assert_string_equal(starts[0].batch->items[0]->id, ID(1));
	/* Retry now: the waiting one leaves the heap at once. */
	assert_true(sched_retry_now(s, ID(2), 1));
	assert_false(sched_retry_now(s, ID(9), 1));
	run();
	assert_int_equal(nstarts, 2);
	assert_string_equal(starts[1].batch->domain, "two.test");
}

static void test_a_timer_makes_waiting_mail_due(void **state)
{
	(void)state;
	add(ID(1), 1, "a@one.test", 150);
	run();
	assert_int_equal(nstarts, 0);
	int64_t t0 = clock_mono_ms();
	while (nstarts == 0 && clock_mono_ms() - t0 < 10000)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(nstarts, 1);
	assert_true(clock_mono_ms() - t0 >= 100);
}

static void test_one_message_one_domain_is_one_batch_in_envelope_order(void **state)
{
	(void)state;
	add(ID(1), 3, "c@wide.test", -1000);
	add(ID(1), 1, "a@wide.test", -1000);
	add(ID(1), 2, "b@other.test", -1000);
	add(ID(1), 4, "d@wide.test", -1000);
	run();
	assert_int_equal(nstarts, 2);
	struct sched_batch *wide = strcmp(starts[0].batch->domain, "wide.test") == 0
				       ? starts[0].batch
				       : starts[1].batch;
	assert_int_equal(wide->n, 3);
	assert_int_equal(wide->items[0]->seq, 1);
	assert_int_equal(wide->items[1]->seq, 3);
	assert_int_equal(wide->items[2]->seq, 4);
	/* One message's recipients at one domain share their source address. */
	assert_int_equal(wide->items[0]->local[0], wide->items[2]->local[0]);
}

/* Zone: 2 connections; each domain: 1.  Domains take turns. */
static void test_limits_and_domain_turns(void **state)
{
	(void)state;
	add(ID(1), 1, "a@one.test", -1000);
	add(ID(2), 1, "a@one.test", -1000);
	add(ID(3), 1, "a@two.test", -1000);
	add(ID(4), 1, "a@three.test", -1000);
	run();
	assert_int_equal(nstarts, 2); /* the zone's limit */
	assert_string_not_equal(starts[0].batch->domain, starts[1].batch->domain);
	/* A connection to one.test ends: three.test, which waited, goes before
	 * one.test's second message, though that came first. */
	size_t one = strcmp(starts[0].batch->domain, "one.test") == 0 ? 0 : 1;
	assert_string_equal(starts[one].batch->domain, "one.test");
	end_start(one);
	run();
	assert_int_equal(nstarts, 3);
	assert_string_equal(starts[2].batch->domain, "three.test");
	end_start(2);
	run();
	assert_int_equal(nstarts, 4);
	assert_string_equal(starts[3].batch->domain, "one.test");
	assert_string_equal(starts[3].batch->items[0]->id, ID(2));
}

static void test_next_batch_reuses_a_connection_up_to_reuse_count(void **state)
{
	(void)state;
	for (int i = 1; i <= 4; i++) {
		char id[QUEUE_ID_LEN + 1];
		snprintf(id, sizeof(id), "00000000000000000%d", i);
		add(id, 1, "a@one.test", -1000);
	}
	run();
	assert_int_equal(nstarts, 1); /* one.test: one connection */
	struct sched_slot *slot = starts[0].slot;
	struct sched_batch *b = sched_next_batch(s, slot);
	assert_non_null(b);
	assert_string_equal(b->items[0]->id, ID(2));
	finish(b);
	/* reuseCount 2: the connection has sent two messages, it must close. */
	assert_null(sched_next_batch(s, slot));
}

static struct sched_batch *woken;
static int wakes;

static void on_wake(void *arg, struct sched_batch *batch)
{
	(void)arg;
	wakes++;
	woken = batch;
}

static void test_park_and_wake(void **state)
{
	(void)state;
	wakes = 0;
	woken = NULL;
	add(ID(1), 1, "a@one.test", -1000);
	run();
	struct sched_slot *slot = starts[0].slot;
	finish(starts[0].batch);
	starts[0].batch = NULL;
	assert_null(sched_next_batch(s, slot));
	sched_park(s, slot, on_wake, NULL);
	run();
	assert_int_equal(wakes, 0);
	/* New mail for the parked connection's domain: it takes it, no new one. */
	add(ID(2), 1, "b@one.test", -1000);
	run();
	assert_int_equal(wakes, 1);
	assert_non_null(woken);
	assert_string_equal(woken->items[0]->id, ID(2));
	assert_int_equal(nstarts, 1);
	finish(woken);
	/* Parked again, and the zone full: mail for another domain asks the
	 * idle connection to close (wake with NULL) to free its slot. */
	sched_park(s, slot, on_wake, NULL);
	add(ID(3), 1, "a@two.test", -1000);
	add(ID(4), 1, "a@three.test", -1000);
	run();
	assert_int_equal(nstarts, 2); /* two.test took the second connection */
	assert_int_equal(wakes, 2);
	assert_null(woken);
	end_start(0); /* the idle connection closes */
	run();
	assert_int_equal(nstarts, 3);
	assert_string_equal(starts[2].batch->domain, "three.test");
}

static const struct sched_item *removed_items[8];
static size_t nremoved;

static void on_removed(void *arg, const struct sched_item *it)
{
	(void)arg;
	removed_items[nremoved++] = it;
}

static void on_removed_quiet(void *arg, const struct sched_item *it)
{
	(void)arg;
	(void)it;
}

static void test_cancel_waiting_due_and_in_flight(void **state)
{
	(void)state;
	nremoved = 0;
	add(ID(1), 1, "a@one.test", -1000); /* starts: in flight */
	add(ID(2), 1, "b@one.test", -1000); /* due, behind the domain's limit */
	add(ID(3), 1, "c@two.test", 60000); /* waiting */
	add(ID(3), 2, "d@two.test", 60000);
	run();
	assert_int_equal(nstarts, 1);
	assert_int_equal(sched_cancel(s, ID(3), 0, on_removed, NULL), 2);
	assert_int_equal(sched_cancel(s, ID(2), 1, on_removed, NULL), 1);
	assert_int_equal(sched_cancel(s, ID(1), 1, on_removed, NULL), 1);
	assert_int_equal(nremoved, 4);
	assert_int_equal(sched_cancel(s, ID(1), 1, on_removed, NULL), 0); /* gone already */
	/* In flight: marked, and its result (done) frees it. */
	assert_true(starts[0].batch->items[0]->cancelled);
	end_start(0);
	run();
	/* The cancelled due one is dropped, never started; the waiting ones are gone. */
	assert_int_equal(nstarts, 1);
	assert_false(sched_retry_now(s, ID(3), 1));
}

static json_t *listed;

static void on_list(void *arg, json_t *rows)
{
	(void)arg;
	listed = json_incref(rows);
}

/* Lists (waiting for the bounded passes); returns "id/seq ..." of the rows. */
static char *list(const char *zone, bool deferred, const char *after, size_t limit)
{
	listed = NULL;
	sched_list(s, zone, deferred, after, limit, on_list, NULL);
	assert_null(listed); /* never from inside the call */
	while (listed == NULL)
		event_base_loop(base, EVLOOP_ONCE);
	char *out = xstrdup("");
	size_t i;
	json_t *row;
	json_array_foreach (listed, i, row) {
		char *more = xasprintf("%s%s%s/%s", out, i ? " " : "",
				       json_string_value(json_object_get(row, "id")) + 15,
				       json_string_value(json_object_get(row, "seq")));
		free(out);
		out = more;
	}
	json_decref(listed);
	listed = NULL;
	return out;
}

static void test_listing_in_queue_order_by_page(void **state)
{
	(void)state;
	sched_stop(s); /* nothing starts: everything stays listed */
	/* Messages queued out of order (a younger one committed first). */
	add("000000000000000003", 1, "a@one.test", 60000);
	add("000000000000000001", 2, "b@one.test", 60000);
	add("000000000000000001", 1, "a@two.test", 60000);
	add("000000000000000002", 1, "a@one.test", 60000);
	add("000000000000000004", 1, "a@one.test", 60000);
	char *all = list("default", false, NULL, 100);
	assert_string_equal(all, "001/001 001/002 002/001 003/001 004/001");
	free(all);
	/* A page ends at a message boundary: limit 1 still gives both of 001. */
	char *page = list("default", false, NULL, 1);
	assert_string_equal(page, "001/001 001/002");
	free(page);
	page = list("default", false, "000000000000000001", 2);
	assert_string_equal(page, "002/001 003/001");
	free(page);
	/* Deleted ones are no longer listed. */
	nremoved = 0;
	sched_cancel(s, "000000000000000002", 0, on_removed, NULL);
	page = list("default", false, "000000000000000001", 2);
	assert_string_equal(page, "003/001 004/001");
	free(page);
	char *none = list("default", true, NULL, 10);
	assert_string_equal(none, "");
	free(none);
	none = list("no-such-zone", false, NULL, 10);
	assert_string_equal(none, "");
	free(none);
	json_decref(listed);
}

static void test_listing_deferred_and_many(void **state)
{
	(void)state;
	add(ID(1), 1, "a@one.test", -1000);
	run();
	assert_int_equal(nstarts, 1);
	struct sched_item *it = starts[0].batch->items[0];
	sched_batch_free(starts[0].batch);
	starts[0].batch = NULL;
	sched_item_retry(s, it, 3600000, "451 4.7.1 greylisted");
	sched_stop(s);
	/* 50000 more, so the listing takes several passes (and holes). */
	for (int i = 0; i < 50000; i++) {
		char id[QUEUE_ID_LEN + 1];
		snprintf(id, sizeof(id), "1%017d", i);
		add(id, 1, "x@many.test", 60000);
	}
	for (int i = 0; i < 30000; i += 2) {
		char id[QUEUE_ID_LEN + 1];
		snprintf(id, sizeof(id), "1%017d", i);
		sched_cancel(s, id, 1, on_removed_quiet, NULL);
	}
	listed = NULL;
	sched_list(s, "default", true, NULL, 1000, on_list, NULL);
	while (listed == NULL)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(json_array_size(listed), 1);
	json_t *d = json_object_get(json_array_get(listed, 0), "deferred");
	assert_string_equal(json_string_value(json_object_get(d, "response")),
			    "451 4.7.1 greylisted");
	assert_true(json_integer_value(json_object_get(d, "next")) > clock_wall_ms() + 3000000);
	assert_true(json_integer_value(json_object_get(d, "last")) > clock_wall_ms() - 600000);
	json_decref(listed);
	char *tail = list("default", false, "100000000000049997", 10);
	assert_string_equal(tail, "998/001 999/001"); /* ...049998, ...049999 */
	free(tail);
	json_decref(listed);
	/* A cancelled listing never answers. */
	listed = NULL;
	uint64_t id = sched_list(s, "default", false, NULL, 10, on_list, NULL);
	sched_list_cancel(s, id);
	run();
	assert_null(listed);
}

static void test_stop_starts_nothing(void **state)
{
	(void)state;
	sched_stop(s);
	add(ID(1), 1, "a@one.test", -1000);
	run();
	assert_int_equal(nstarts, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_due_now_and_later, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_timer_makes_waiting_mail_due, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_one_message_one_domain_is_one_batch_in_envelope_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_limits_and_domain_turns, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_next_batch_reuses_a_connection_up_to_reuse_count,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_park_and_wake, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cancel_waiting_due_and_in_flight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_listing_in_queue_order_by_page, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_listing_deferred_and_many, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_stop_starts_nothing, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
