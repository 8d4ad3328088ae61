/* SPDX-License-Identifier: EUPL-1.2 */
/* Unit tests: string and u64 hash maps against a brute-force reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"

#define N 2000

static void test_strmap_basic(void **state)
{
	(void)state;
	struct strmap *m = strmap_new();
	int a = 1, b = 2;
	assert_null(strmap_get(m, "x"));
	assert_null(strmap_remove(m, "x"));
	assert_null(strmap_put(m, "x", &a));
	assert_ptr_equal(strmap_put(m, "x", &b), &a);
	assert_ptr_equal(strmap_get(m, "x"), &b);
	assert_int_equal(strmap_count(m), 1);
	assert_ptr_equal(strmap_remove(m, "x"), &b);
	assert_int_equal(strmap_count(m), 0);
	strmap_free(m);
	strmap_free(NULL);
}

/* Random puts and removes, checked against an array after every step. */
static void test_strmap_random(void **state)
{
	(void)state;
	static void *ref[N];
	static int vals[N];
	struct strmap *m = strmap_new();
	srand(7);
	for (int step = 0; step < 20000; step++) {
		int k = rand() % N;
		char key[16];
		snprintf(key, sizeof(key), "k%d", k);
		if (rand() % 3 == 0) {
			assert_ptr_equal(strmap_remove(m, key), ref[k]);
			ref[k] = NULL;
		} else {
			assert_ptr_equal(strmap_put(m, key, &vals[k]), ref[k]);
			ref[k] = &vals[k];
		}
		if (step % 997 == 0) {
			size_t count = 0, pos = 0;
			const char *ik;
			void *iv;
			for (int i = 0; i < N; i++) {
				snprintf(key, sizeof(key), "k%d", i);
				assert_ptr_equal(strmap_get(m, key), ref[i]);
				count += ref[i] != NULL;
			}
			assert_int_equal(strmap_count(m), count);
			size_t seen = 0;
			while (strmap_next(m, &pos, &ik, &iv)) {
				assert_ptr_equal(iv, ref[atoi(ik + 1)]);
				seen++;
			}
			assert_int_equal(seen, count);
		}
	}
	strmap_free(m);
}

static void test_u64map_random(void **state)
{
	(void)state;
	static void *ref[N];
	static int vals[N];
	struct u64map *m = u64map_new();
	srand(11);
	for (int step = 0; step < 20000; step++) {
		/* Keys that collide in low bits on purpose. */
		uint64_t k = (uint64_t)(rand() % N) << 20;
		int i = (int)(k >> 20);
		if (rand() % 3 == 0) {
			assert_ptr_equal(u64map_remove(m, k), ref[i]);
			ref[i] = NULL;
		} else {
			assert_ptr_equal(u64map_put(m, k, &vals[i]), ref[i]);
			ref[i] = &vals[i];
		}
	}
	size_t count = 0;
	for (int i = 0; i < N; i++) {
		assert_ptr_equal(u64map_get(m, (uint64_t)i << 20), ref[i]);
		count += ref[i] != NULL;
	}
	assert_int_equal(u64map_count(m), count);
	size_t pos = 0, seen = 0;
	uint64_t key;
	void *v;
	while (u64map_next(m, &pos, &key, &v)) {
		assert_ptr_equal(v, ref[key >> 20]);
		seen++;
	}
	assert_int_equal(seen, count);
	u64map_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_strmap_basic),
	    cmocka_unit_test(test_strmap_random),
	    cmocka_unit_test(test_u64map_random),
	};
	return cmocka_run_group_tests_name("hmap", tests, NULL, NULL);
}
