/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: the per-minute counts behind the web page's charts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/series.h"

#define MIN 60000LL
/* 2026-12-03T10:00:00Z, a whole minute */
#define T0 1796292000000LL

static json_int_t at(const json_t *s, const char *kind, size_t i)
{
	return json_integer_value(json_array_get(json_object_get(s, kind), i));
}

static void test_counts_land_in_their_minute(void **state)
{
	(void)state;
	series_reset();
	series_count(SERIES_DELIVERED, "fast", T0 + 1000);
	series_count(SERIES_DELIVERED, "fast", T0 + 59999);
	series_count(SERIES_DEFERRED, "slow", T0 + MIN);
	series_count(SERIES_ACCEPTED, NULL, T0 + MIN + 5);
	json_t *all = series_json(NULL, 3, T0 + 2 * MIN + 10);
	assert_int_equal(json_integer_value(json_object_get(all, "start")), T0);
	assert_int_equal(json_integer_value(json_object_get(all, "step")), MIN);
	assert_int_equal(json_array_size(json_object_get(all, "delivered")), 3);
	assert_int_equal(at(all, "delivered", 0), 2);
	assert_int_equal(at(all, "delivered", 1), 0);
	assert_int_equal(at(all, "deferred", 1), 1);
	assert_int_equal(at(all, "accepted", 1), 1);
	assert_int_equal(at(all, "bounced", 2), 0);
	json_decref(all);
	json_t *fast = series_json("fast", 3, T0 + 2 * MIN);
	assert_int_equal(at(fast, "delivered", 0), 2);
	assert_int_equal(at(fast, "deferred", 1), 0); /* that was another zone */
	assert_int_equal(at(fast, "accepted", 1), 0); /* no zone */
	json_decref(fast);
	json_t *none = series_json("nowhere", 2, T0);
	assert_int_equal(at(none, "delivered", 1), 0);
	json_decref(none);
}

static void test_a_day_later_the_slot_is_new(void **state)
{
	(void)state;
	series_reset();
	series_count(SERIES_BOUNCED, "z", T0);
	int64_t day = (int64_t)SERIES_MINUTES * MIN;
	/* the same slot of the ring a day later: yesterday's count is not today's */
	json_t *s = series_json("z", SERIES_MINUTES, T0 + day);
	assert_int_equal(at(s, "bounced", SERIES_MINUTES - 1), 0);
	json_decref(s);
	series_count(SERIES_BOUNCED, "z", T0 + day);
	s = series_json("z", 1, T0 + day);
	assert_int_equal(at(s, "bounced", 0), 1);
	json_decref(s);
	/* asking for more than a day gives a day */
	s = series_json(NULL, 5000, T0 + day);
	assert_int_equal(json_array_size(json_object_get(s, "bounced")), SERIES_MINUTES);
	json_decref(s);
	series_reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_counts_land_in_their_minute),
	    cmocka_unit_test(test_a_day_later_the_slot_is_new),
	};
	return cmocka_run_group_tests_name("series", tests, NULL, NULL);
}
