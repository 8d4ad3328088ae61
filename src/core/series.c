/* SPDX-License-Identifier: EUPL-1.2 */
/* Per-minute counts for 24 hours; see series.h. */
#include "core/series.h"

#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"
#include "core/xmalloc.h"

/* A ring of minutes: slot m % SERIES_MINUTES holds minute m when
 * minute[slot] says so, else nothing yet (stale from a day before). */
struct series {
	int64_t minute[SERIES_MINUTES];
	uint32_t count[SERIES_MINUTES][SERIES_KINDS];
};

static struct strmap *all_series; /* zone, or "" for all → struct series */

static struct series *series_of(const char *key, bool create)
{
	if (all_series == NULL) {
		if (!create)
			return NULL;
		all_series = strmap_new();
	}
	struct series *s = strmap_get(all_series, key);
	if (s == NULL && create) {
		s = xcalloc(1, sizeof(*s));
		for (size_t i = 0; i < SERIES_MINUTES; i++)
			s->minute[i] = -1;
		strmap_put(all_series, key, s);
	}
	return s;
}

static void bump(struct series *s, enum series_kind kind, int64_t minute)
{
	size_t slot = (size_t)(minute % SERIES_MINUTES);
	if (s->minute[slot] != minute) {
		s->minute[slot] = minute;
		memset(s->count[slot], 0, sizeof(s->count[slot]));
	}
	s->count[slot][kind]++;
}

void series_count(enum series_kind kind, const char *zone, int64_t now_ms)
{
	int64_t minute = now_ms / 60000;
	bump(series_of("", true), kind, minute);
	if (zone != NULL && *zone != '\0')
		bump(series_of(zone, true), kind, minute);
}

json_t *series_json(const char *zone, int minutes, int64_t now_ms)
{
	static const char *const names[SERIES_KINDS] = {"accepted", "delivered", "deferred",
							"bounced"};
	if (minutes < 1)
		minutes = 1;
	if (minutes > SERIES_MINUTES)
		minutes = SERIES_MINUTES;
	int64_t last = now_ms / 60000, first = last - minutes + 1;
	const struct series *s = series_of(zone != NULL ? zone : "", false);
	json_t *out = json_pack("{s:I, s:i}", "start", (json_int_t)(first * 60000), "step", 60000);
	for (int k = 0; k < SERIES_KINDS; k++) {
		json_t *values = json_array();
		for (int64_t m = first; m <= last; m++) {
			size_t slot = (size_t)(m % SERIES_MINUTES);
			uint32_t n = s != NULL && s->minute[slot] == m ? s->count[slot][k] : 0;
			json_array_append_new(values, json_integer(n));
		}
		json_object_set_new(out, names[k], values);
	}
	return out;
}

void series_reset(void)
{
	if (all_series == NULL)
		return;
	size_t pos = 0;
	const char *k;
	void *v;
	while (strmap_next(all_series, &pos, &k, &v))
		free(v);
	strmap_free(all_series);
	all_series = NULL;
}
