/* Unit tests: throttle arithmetic (GCRA) and pool address choice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
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

static void shares(struct pool_address *addrs, size_t n, double *out, int trials)
{
	struct pool_config pool = {"p", addrs, n};
	memset(out, 0, sizeof(double) * n);
	for (int i = 0; i < trials; i++) {
		char id[32];
		snprintf(id, sizeof(id), "1a20c708ed12c5%04x", i);
		int k = pool_pick(&pool, id, "example.test");
		assert_true(k >= 0 && (size_t)k < n);
		out[k] += 1.0 / trials;
	}
}

static void test_pool_ratios(void **state)
{
	(void)state;
	double s[3];
	struct pool_address equal[] = {{a1, NULL, -1}, {a2, NULL, -1}, {a3, NULL, -1}};
	shares(equal, 3, s, 30000);
	for (int i = 0; i < 3; i++)
		assert_true(s[i] > 0.31 && s[i] < 0.36);
	struct pool_address warm[] = {{a1, NULL, 0.1}, {a2, NULL, -1}, {a3, NULL, -1}};
	shares(warm, 3, s, 30000);
	assert_true(s[0] > 0.09 && s[0] < 0.11);
	assert_true(s[1] > 0.42 && s[1] < 0.48);
	struct pool_address only[] = {{a1, NULL, 0.2}, {a2, NULL, 0.2}};
	shares(only, 2, s, 30000); /* ratios below 1 in all: proportional */
	assert_true(s[0] > 0.47 && s[0] < 0.53);
	struct pool_address off[] = {{a1, NULL, 0}, {a2, NULL, -1}};
	shares(off, 2, s, 5000); /* ratio 0: never used */
	assert_true(s[0] == 0);
}

static void test_pool_stable(void **state)
{
	(void)state;
	struct pool_address addrs[] = {{a1, NULL, -1}, {a2, NULL, -1}, {a3, NULL, -1}};
	struct pool_config pool = {"p", addrs, 3};
	int first = pool_pick(&pool, "1a20c708ed12c50000", "example.test");
	for (int i = 0; i < 10; i++)
		assert_int_equal(pool_pick(&pool, "1a20c708ed12c50000", "example.test"), first);
	struct pool_config empty = {"e", NULL, 0};
	assert_int_equal(pool_pick(&empty, "x", "y"), -1);
}

static void test_backoff(void **state)
{
	(void)state;
	uint64_t times[] = {5 * 60000, 7 * 60000, 8 * 60000};
	struct queue_config qc = {.defer_ms = times, .n_defer = 3,
				  .max_queue_time_ms = 3600 * 1000};
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
		cmocka_unit_test(test_pool_ratios),
		cmocka_unit_test(test_pool_stable),
		cmocka_unit_test(test_backoff),
	};
	return cmocka_run_group_tests_name("sched", tests, NULL, NULL);
}
