/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Bench item 7: the suppression list's memory index at scale.  Fills it
 * with N address entries (and N/100 domains), then times lookups that
 * hit an address, hit a domain, and miss, reads the RSS it took, and
 * times one page of GET /suppressionlist (the newest 10,000).
 * Prints key=value lines for bench/report.py:
 *
 *     zmta-suppress-bench N LABEL
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "queue/suppress.h"

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, resident = 0;
	if (f != NULL) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ns per lookup of `n` addresses made by fmt from pseudo-random numbers
 * below `range`; *found counts the matches. */
static double time_lookups(struct suppressions *s, const char *fmt, long range, long n, long *found)
{
	char addr[96];
	unsigned long x = 88172645463325252UL;
	*found = 0;
	double t0 = now_s();
	for (long i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		snprintf(addr, sizeof(addr), fmt, (long)(x % (unsigned long)range),
			 (long)(x % 1000));
		if (suppressions_match(s, addr) != NULL)
			(*found)++;
	}
	return (now_s() - t0) / (double)n * 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: zmta-suppress-bench N LABEL\n");
		return 2;
	}
	long n = atol(argv[1]);
	const char *label = argv[2];
	char *err = NULL;
	long before = rss_kb();
	struct suppressions *s = suppressions_open(NULL, &err);
	char value[96];
	double t0 = now_s();
	for (long i = 0; i < n; i++) {
		snprintf(value, sizeof(value), "user%ld@d%ld.example.test", i, i % 1000);
		suppressions_add(s, false, value, NULL, "api", 0, NULL, NULL);
	}
	for (long i = 0; i < n / 100; i++) {
		snprintf(value, sizeof(value), "blocked%ld.test", i);
		suppressions_add(s, true, value, NULL, "api", 0, NULL, NULL);
	}
	double fill = now_s() - t0;
	long after = rss_kb();
	long lookups = 1000000, found_a, found_d, found_m;
	/* "user<i>@d<i%1000>": the format takes i twice; hits need the same i */
	double hit_ns = time_lookups(s, "user%1$ld@d%2$ld.example.test", n, lookups, &found_a);
	double dom_ns = time_lookups(s, "someone%2$ld@blocked%1$ld.test", n / 100 ? n / 100 : 1,
				     lookups, &found_d);
	double miss_ns = time_lookups(s, "nobody%1$ld@d%2$ld.elsewhere.test", n, lookups, &found_m);
	/* GET /suppressionlist's work on the loop: a page of the newest */
	t0 = now_s();
	const char *next;
	json_t *list = suppressions_list(s, 10000, NULL, &next);
	double list_ms = (now_s() - t0) * 1000;
	json_decref(list);
	printf("%s.list_ms=%.1f\n", label, list_ms);
	printf("%s.entries=%zu\n%s.fill_s=%.3f\n%s.rss_mb=%.1f\n%s.bytes_per_entry=%.0f\n"
	       "%s.lookup_hit_ns=%.0f\n%s.lookup_domain_ns=%.0f\n%s.lookup_miss_ns=%.0f\n"
	       "%s.misses_found=%ld\n",
	       label, suppressions_count(s), label, fill, label, (double)(after - before) / 1024,
	       label, (double)(after - before) * 1024 / (double)(n + n / 100), label, hit_ns, label,
	       dom_ns, label, miss_ns, label, found_m);
	suppressions_free(s);
	return found_m == 0 ? 0 : 1;
}
