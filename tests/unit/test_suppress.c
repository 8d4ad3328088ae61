/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: the suppression list (queue/suppress.c) on the RAM store:
 * matching, replacing, expiry, removal, the index under churn, and what
 * the store keeps across a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "core/clock.h"
#include "queue/queue.h"
#include "queue/store_ram.h"
#include "queue/suppress.h"

#define DIR "ram:test_suppress"

static struct event_base *base;

static struct queue *open_queue(void)
{
	char *err = NULL;
	struct queue *q = queue_open_backend(base, &store_ram, DIR, 0, NULL, NULL, &err);
	assert_non_null(q);
	return q;
}

struct wait {
	bool done;
	int rc;
};

static void on_written(void *arg, int rc, const char *error)
{
	(void)error;
	struct wait *w = arg;
	w->done = true;
	w->rc = rc;
}

static void until(struct wait *w)
{
	while (!w->done)
		event_base_loop(base, EVLOOP_ONCE);
}

static void test_matches_address_then_domain_without_case(void **state)
{
	(void)state;
	struct suppressions *s = suppressions_open(NULL, NULL);
	const struct suppression *bob = suppressions_add(s, false, "Bob@Example.TEST", "bounced",
							 "bounce", 0, NULL, NULL);
	assert_string_equal(bob->value, "bob@example.test");
	assert_int_equal(strlen(bob->id), SUPPRESS_ID_LEN);
	assert_ptr_equal(suppressions_match(s, "BOB@example.test"), bob);
	assert_null(suppressions_match(s, "bob@example.test.other"));
	assert_null(suppressions_match(s, "carol@example.test"));
	const struct suppression *dom = suppressions_add(s, true, "Example.Test", NULL, "api", 0,
							 NULL, NULL);
	assert_ptr_equal(suppressions_match(s, "bob@example.test"), bob); /* the address first */
	assert_ptr_equal(suppressions_match(s, "carol@EXAMPLE.test"), dom);
	assert_null(suppressions_match(s, "carol@sub.example.test")); /* exactly that domain */
	assert_null(suppressions_match(s, "example.test"));           /* no @: no domain */
	/* The same address again replaces the entry and keeps its id. */
	char id[SUPPRESS_ID_LEN + 1];
	memcpy(id, bob->id, sizeof(id));
	const struct suppression *again = suppressions_add(s, false, "bob@example.test", "again",
							   "unsubscribe", 0, NULL, NULL);
	assert_string_equal(again->id, id);
	assert_string_equal(again->source, "unsubscribe");
	assert_int_equal(suppressions_count(s), 2);
	/* Unknown sources are recorded as api. */
	assert_string_equal(
	    suppressions_add(s, false, "x@y.test", NULL, "guess", 0, NULL, NULL)->source, "api");
	suppressions_free(s);
}

static void test_expired_entries_stop_counting(void **state)
{
	(void)state;
	struct suppressions *s = suppressions_open(NULL, NULL);
	suppressions_add(s, false, "old@example.test", NULL, "api", clock_wall_ms() - 1, NULL,
			 NULL);
	suppressions_add(s, false, "new@example.test", NULL, "api", clock_wall_ms() + 60000, NULL,
			 NULL);
	assert_int_equal(suppressions_count(s), 2);
	const char *next;
	json_t *list = suppressions_list(s, 100, NULL, &next);
	assert_int_equal(json_array_size(list), 1); /* the expired one is not listed */
	json_decref(list);
	assert_null(suppressions_match(s, "old@example.test"));
	assert_int_equal(suppressions_count(s), 1); /* and it is gone now */
	assert_non_null(suppressions_match(s, "new@example.test"));
	suppressions_free(s);
}

/* Many adds and removals: every entry left is found, every removed one
 * is not (the index's backward-shift deletion keeps its runs whole). */
static void test_index_under_churn(void **state)
{
	(void)state;
	struct suppressions *s = suppressions_open(NULL, NULL);
	enum {
		N = 20000
	};
	static char ids[N][SUPPRESS_ID_LEN + 1];
	char addr[64];
	for (int i = 0; i < N; i++) {
		snprintf(addr, sizeof(addr), "u%d@d%d.test", i, i % 97);
		memcpy(ids[i], suppressions_add(s, false, addr, NULL, "api", 0, NULL, NULL)->id,
		       SUPPRESS_ID_LEN + 1);
	}
	char got[SUPPRESS_ID_LEN + 1];
	for (int i = 0; i < N; i += 3) {
		if (i % 2 == 0) {
			assert_true(suppressions_remove(s, ids[i], got, NULL, NULL));
		} else {
			snprintf(addr, sizeof(addr), "a:U%d@D%d.test", i, i % 97);
			assert_true(suppressions_remove(s, addr, got, NULL, NULL));
		}
		assert_string_equal(got, ids[i]);
	}
	assert_false(suppressions_remove(s, ids[0], got, NULL, NULL));
	for (int i = 0; i < N; i++) {
		snprintf(addr, sizeof(addr), "u%d@d%d.test", i, i % 97);
		const struct suppression *e = suppressions_match(s, addr);
		if (i % 3 == 0) {
			assert_null(e);
		} else {
			assert_non_null(e);
			assert_string_equal(e->id, ids[i]);
		}
	}
	assert_int_equal(suppressions_count(s), N - (N + 2) / 3);
	suppressions_free(s);
}

/* Pages of the listing: newest first, each entry once, `next` until the
 * last page. */
static void test_listing_pages_cover_the_list_once(void **state)
{
	(void)state;
	struct suppressions *s = suppressions_open(NULL, NULL);
	char addr[64];
	for (int i = 0; i < 25; i++) {
		snprintf(addr, sizeof(addr), "p%d@pages.test", i);
		suppressions_add(s, false, addr, NULL, "api", 0, NULL, NULL);
	}
	suppressions_add(s, false, "old@pages.test", NULL, "api", clock_wall_ms() - 1, NULL, NULL);
	char seen[26][SUPPRESS_ID_LEN + 1];
	size_t nseen = 0, pages = 0;
	const char *next = NULL;
	char after[SUPPRESS_ID_LEN + 1] = "";
	do {
		json_t *page = suppressions_list(s, 10, after[0] ? after : NULL, &next);
		pages++;
		size_t i;
		json_t *e;
		json_array_foreach (page, i, e) {
			const char *id = json_string_value(json_object_get(e, "id"));
			for (size_t k = 0; k < nseen; k++)
				assert_string_not_equal(seen[k], id); /* each once */
			/* newest first: ids of one millisecond descend */
			if (nseen > 0 && strncmp(seen[nseen - 1], id, 12) == 0)
				assert_true(strcmp(seen[nseen - 1], id) > 0);
			snprintf(seen[nseen++], sizeof(seen[0]), "%s", id);
		}
		assert_int_equal(json_array_size(page), pages < 3 ? 10 : 5);
		json_decref(page);
		if (next != NULL)
			snprintf(after, sizeof(after), "%s", next);
	} while (next != NULL);
	assert_int_equal(pages, 3);
	assert_int_equal(nseen, 25); /* the expired one is never listed */
	suppressions_free(s);
}

static void test_the_store_keeps_the_list(void **state)
{
	(void)state;
	struct queue *q = open_queue();
	struct suppressions *s = suppressions_open(q, NULL);
	assert_ptr_equal(queue_suppressions(q), s);
	struct wait w1 = {0}, w2 = {0}, w3 = {0};
	const struct suppression *a = suppressions_add(s, false, "a@one.test", "no such user",
						       "bounce", clock_wall_ms() + 3600000,
						       on_written, &w1);
	char a_id[SUPPRESS_ID_LEN + 1];
	memcpy(a_id, a->id, sizeof(a_id));
	suppressions_add(s, true, "two.test", NULL, "api", 0, on_written, &w2);
	suppressions_add(s, false, "gone@one.test", NULL, "api", 0, NULL, NULL);
	char id[SUPPRESS_ID_LEN + 1];
	assert_true(suppressions_remove(s, "a:gone@one.test", id, on_written, &w3));
	until(&w1);
	until(&w2);
	until(&w3);
	assert_int_equal(w1.rc | w2.rc | w3.rc, 0);
	assert_int_equal(store_ram_count(DIR, STORE_CF_SUPPRESS), 2);
	suppressions_free(s);
	assert_null(queue_suppressions(q));
	queue_close(q);

	q = open_queue();
	s = suppressions_open(q, NULL);
	assert_int_equal(suppressions_count(s), 2);
	const struct suppression *back = suppressions_match(s, "A@one.test");
	assert_non_null(back);
	assert_string_equal(back->id, a_id);
	assert_string_equal(back->reason, "no such user");
	assert_string_equal(back->source, "bounce");
	assert_true(back->expires > clock_wall_ms());
	assert_non_null(suppressions_match(s, "x@two.test"));
	assert_null(suppressions_match(s, "gone@one.test"));
	suppressions_free(s);
	queue_close(q);
}

static int setup(void **state)
{
	(void)state;
	evthread_use_pthreads();
	base = event_base_new();
	store_ram_destroy(DIR);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	store_ram_destroy(DIR);
	event_base_free(base);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_matches_address_then_domain_without_case, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_expired_entries_stop_counting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_index_under_churn, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_listing_pages_cover_the_list_once, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_the_store_keeps_the_list, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
