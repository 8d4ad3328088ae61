/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Per-minute counts of the last 24 hours, in memory, for the web page's
 * charts: messages accepted, and deliveries delivered, deferred and
 * bounced, per zone and in all.  Not restored after a restart.  Loop
 * thread only.
 */
#ifndef ZMTA_SERIES_H
#define ZMTA_SERIES_H

#include <jansson.h>
#include <stdint.h>

#define SERIES_MINUTES 1440

enum series_kind {
	SERIES_ACCEPTED,
	SERIES_DELIVERED,
	SERIES_DEFERRED,
	SERIES_BOUNCED,
	SERIES_KINDS
};

/* One more of `kind` now (wall-clock ms) in `zone` (NULL: none, e.g. a
 * message accepted) and in all. */
void series_count(enum series_kind kind, const char *zone, int64_t now_ms);
/* The last `minutes` (1 to SERIES_MINUTES) up to now's minute, oldest
 * first: {start (ms of the first minute), step: 60000, accepted: [...],
 * delivered: [...], deferred: [...], bounced: [...]}; zone NULL: all.
 * Accepted messages have no zone (0 for a zone). */
json_t *series_json(const char *zone, int minutes, int64_t now_ms);
/* Forgets everything (tests). */
void series_reset(void);

#endif
