/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: throttle arithmetic (GCRA) and pool address choice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/backoff.h"
#include "sched/throttle.h"
#include "zone/pool.h"

static void test_unlimited(void **state)
{
	(void)state;
	struct throttle t;
	struct rate none = {0, 0};
	throttle_init(&t, &none);
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(throttle_wait(&t, 5), 0);
		throttle_take(&t, 5);
	}
}

static void test_spacing(void **state)
{
	(void)state;
	struct throttle t;
	struct rate r = {10, 1000}; /* 10 messages/second: one per 100 ms */
	throttle_init(&t, &r);
	assert_int_equal(throttle_wait(&t, 1000), 0);
	throttle_take(&t, 1000);
	assert_int_equal(throttle_wait(&t, 1000), 100);
	assert_int_equal(throttle_wait(&t, 1060), 40);
	assert_int_equal(throttle_wait(&t, 1100), 0);
	throttle_take(&t, 1100);
	/* A pause does not store up a burst. */
	assert_int_equal(throttle_wait(&t, 5000), 0);
	throttle_take(&t, 5000);
	assert_int_equal(throttle_wait(&t, 5000), 100);
}

/* A greedy sender over 20 s at 30/minute sends 10 (+1 at the start). */
static void test_rate_over_window(void **state)
{
	(void)state;
	static const struct rate rates[] = {{30, 60000}, {100, 1000}, {7, 3600000}, {3, 1000}};
	for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
		struct throttle t;
		throttle_init(&t, &rates[k]);
		int64_t window = 20000;
		uint64_t sent = 0;
		for (int64_t now = 0; now < window; now++) {
			while (throttle_wait(&t, now) == 0) {
				throttle_take(&t, now);
				sent++;
			}
		}
		uint64_t expect = (uint64_t)((double)rates[k].count * (double)window /
					     (double)rates[k].period_ms);
		if (sent < expect || sent > expect + 1)
			fail_msg("rate %zu: sent %llu, expected %llu", k, (unsigned long long)sent,
				 (unsigned long long)expect);
	}
}

static char a1[] = "127.0.0.2", a2[] = "127.0.0.3", a3[] = "127.0.0.4";

/* Deals `n` deliveries; counts per address. */
static void deal(struct pool_address *addrs, size_t naddrs, int n, int *counts)
{
	struct pool_config pool = {"p", addrs, naddrs};
	struct pool_rr rr;
	pool_rr_init(&rr, &pool, POOL_IPV4);
	memset(counts, 0, sizeof(int) * naddrs);
	for (int i = 0; i < n; i++) {
		int k = pool_rr_next(&rr);
		assert_true(k >= 0 && (size_t)k < naddrs);
		counts[k]++;
	}
	pool_rr_clear(&rr);
}

static void test_pool_ratios_are_exact(void **state)
{
	(void)state;
	int c[3];
	struct pool_address equal[] = {{a1, NULL, -1}, {a2, NULL, -1}, {a3, NULL, -1}};
	deal(equal, 3, 999, c);
	assert_true(c[0] == 333 && c[1] == 333 && c[2] == 333);
	struct pool_address warm[] = {{a1, NULL, 0.1}, {a2, NULL, -1}, {a3, NULL, -1}};
	deal(warm, 3, 1000, c);
	assert_int_equal(c[0], 100);
	assert_int_equal(c[1], 450);
	assert_int_equal(c[2], 450);
	struct pool_address only[] = {{a1, NULL, 0.2}, {a2, NULL, 0.6}};
	deal(only, 2, 1000, c); /* ratios below 1 in all: proportional */
	assert_int_equal(c[0], 250);
	struct pool_address off[] = {{a1, NULL, 0}, {a2, NULL, -1}};
	deal(off, 2, 500, c); /* ratio 0: never used */
	assert_int_equal(c[0], 0);
	struct pool_address zeros[] = {{a1, NULL, 0}, {a2, NULL, 0}};
	deal(zeros, 2, 10, c); /* all 0: shared rather than nothing */
	assert_int_equal(c[0], 5);
}

/* Smooth: at every prefix the counts stay within one of the ideal share. */
static void test_pool_dealing_is_smooth(void **state)
{
	(void)state;
	struct pool_address addrs[] = {{a1, NULL, 0.3}, {a2, NULL, -1}};
	struct pool_config pool = {"p", addrs, 2};
	struct pool_rr rr;
	pool_rr_init(&rr, &pool, POOL_IPV4);
	int first = 0;
	for (int i = 1; i <= 1000; i++) {
		first += pool_rr_next(&rr) == 0;
		double ideal = 0.3 * i;
		assert_true(first >= ideal - 1 && first <= ideal + 1);
	}
	pool_rr_clear(&rr);
	struct pool_config empty = {"e", NULL, 0};
	pool_rr_init(&rr, &empty, POOL_IPV4);
	assert_int_equal(pool_rr_next(&rr), -1);
	pool_rr_clear(&rr);
	assert_int_equal(pool_find(&pool, "127.0.0.3"), 1);
	assert_int_equal(pool_find(&pool, "127.0.0.9"), -1);
}

/* Each family is dealt on its own; kept addresses round-trip a row. */
static void test_pool_families(void **state)
{
	(void)state;
	char v6a[] = "::1", v6b[] = "fd00::2";
	struct pool_address addrs[] = {
	    {a1, NULL, -1}, {v6a, NULL, -1}, {a2, NULL, -1}, {v6b, NULL, -1}};
	struct pool_config pool = {"p", addrs, 4};
	struct pool_rr v4, v6;
	pool_rr_init(&v4, &pool, POOL_IPV4);
	pool_rr_init(&v6, &pool, POOL_IPV6);
	int c[4] = {0};
	for (int i = 0; i < 100; i++) {
		int k4 = pool_rr_next(&v4), k6 = pool_rr_next(&v6);
		assert_int_equal(pool_family(addrs[k4].address), POOL_IPV4);
		assert_int_equal(pool_family(addrs[k6].address), POOL_IPV6);
		c[k4]++;
		c[k6]++;
	}
	assert_true(c[0] == 50 && c[1] == 50 && c[2] == 50 && c[3] == 50);
	pool_rr_clear(&v4);
	pool_rr_clear(&v6);

	/* A pool of one family deals -1 for the other. */
	struct pool_config only4 = {"p4", addrs, 1};
	pool_rr_init(&v6, &only4, POOL_IPV6);
	assert_int_equal(pool_rr_next(&v6), -1);
	pool_rr_clear(&v6);

	int local[2] = {0, 3};
	char *kept = pool_format_kept(&pool, local);
	assert_string_equal(kept, "127.0.0.2,fd00::2");
	int back[2] = {-1, -1};
	pool_parse_kept(&pool, kept, back);
	assert_int_equal(back[0], 0);
	assert_int_equal(back[1], 3);
	free(kept);
	int none[2] = {-1, -1};
	assert_null(pool_format_kept(&pool, none));
	int old[2] = {-1, -1};
	pool_parse_kept(&pool, "127.0.0.3", old); /* a row written before families */
	assert_int_equal(old[0], 2);
	assert_int_equal(old[1], -1);
	pool_parse_kept(&pool, "10.9.9.9", old); /* no longer in the pool: untouched */
	assert_int_equal(old[0], 2);
}

static void test_backoff(void **state)
{
	(void)state;
	uint64_t times[] = {5 * 60000, 7 * 60000, 8 * 60000};
	struct queue_config qc = {
	    .defer_ms = times, .n_defer = 3, .max_queue_time_ms = 3600 * 1000};
	int64_t next;
	assert_true(backoff_next(&qc, 1, 0, 1000, &next));
	assert_int_equal(next, 1000 + 5 * 60000);
	assert_true(backoff_next(&qc, 3, 0, 2000, &next));
	assert_int_equal(next, 2000 + 8 * 60000);
	assert_false(backoff_next(&qc, 4, 0, 2000, &next)); /* schedule ran out */
	assert_false(backoff_next(&qc, 0, 0, 2000, &next));
	assert_false(backoff_next(&qc, 1, 0, 3600 * 1000, &next)); /* too old */
	assert_true(backoff_next(&qc, 1, 0, 3600 * 1000 - 1, &next));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unlimited),
	    cmocka_unit_test(test_spacing),
	    cmocka_unit_test(test_rate_over_window),
	    cmocka_unit_test(test_pool_ratios_are_exact),
	    cmocka_unit_test(test_pool_dealing_is_smooth),
	    cmocka_unit_test(test_pool_families),
	    cmocka_unit_test(test_backoff),
	};
	return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
