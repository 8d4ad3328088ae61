/* SPDX-License-Identifier: EUPL-1.2 */
/* The statistics registry; see stats.h. */
#include "core/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/hmap.h"
#include "core/series.h"
#include "core/xmalloc.h"

const double stats_buckets[STATS_NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					      0.1,    0.25,  0.5,    1,     2.5,  5,     10};

static struct strmap *counters[STATS_NCOUNTERS];
static struct stats_histogram_data histograms[STATS_NHISTOGRAMS];

/* Counter c's `label` (created on first use). */
static int64_t *slot(enum stats_counter c, const char *label)
{
	if (counters[c] == NULL)
		counters[c] = strmap_new();
	int64_t *v = strmap_get(counters[c], label);
	if (v == NULL) {
		v = xcalloc(1, sizeof(*v));
		strmap_put(counters[c], label, v);
	}
	return v;
}

static void add(enum stats_counter c, const char *label, int64_t delta)
{
	*slot(c, label) += delta;
}

void stats_add(enum stats_counter c, const char *label, int64_t delta)
{
	add(c, label, delta);
}

void stats_set(enum stats_counter c, const char *label, int64_t value)
{
	*slot(c, label) = value;
}

void stats_message_accepted(const char *interface)
{
	add(STATS_MESSAGES_ACCEPTED, interface, 1);
	series_count(SERIES_ACCEPTED, NULL, clock_wall_ms());
}

void stats_message_rejected(const char *interface)
{
	add(STATS_MESSAGES_REJECTED, interface, 1);
}

void stats_delivery(const char *zone, const char *result)
{
	char key[256];
	snprintf(key, sizeof(key), "%s\t%s", zone, result);
	add(STATS_DELIVERIES, key, 1);
	enum series_kind kind = strcmp(result, "delivered") == 0  ? SERIES_DELIVERED
				: strcmp(result, "deferred") == 0 ? SERIES_DEFERRED
				: strcmp(result, "bounced") == 0  ? SERIES_BOUNCED
								  : SERIES_KINDS;
	if (kind != SERIES_KINDS)
		series_count(kind, zone, clock_wall_ms());
}

void stats_connection(const char *zone, int delta)
{
	add(STATS_CONNECTIONS, zone, delta);
}

void stats_connection_reuse(const char *zone)
{
	add(STATS_CONNECTION_REUSES, zone, 1);
}

void stats_observe(enum stats_histogram h, double seconds)
{
	struct stats_histogram_data *d = &histograms[h];
	for (size_t i = 0; i < STATS_NBUCKETS; i++)
		if (seconds <= stats_buckets[i])
			d->counts[i]++;
	d->count++;
	d->sum += seconds;
}

bool stats_next(enum stats_counter c, size_t *pos, const char **label, int64_t *value)
{
	void *v;
	if (counters[c] == NULL || !strmap_next(counters[c], pos, label, &v))
		return false;
	*value = *(int64_t *)v;
	return true;
}

int64_t stats_get(enum stats_counter c, const char *label)
{
	int64_t *v = counters[c] ? strmap_get(counters[c], label) : NULL;
	return v ? *v : 0;
}

const struct stats_histogram_data *stats_histogram(enum stats_histogram h)
{
	return &histograms[h];
}
