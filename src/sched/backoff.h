/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * When to try a failed delivery again: queue.deferTimes gives the wait after
 * each temporary failure; past its end, or past queue.maxQueueTime since the
 * message arrived, the delivery bounces.  Pure; unit-tested.
 */
#ifndef ZMTA_BACKOFF_H
#define ZMTA_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"

/*
 * After failed attempt number `attempts` (1 for the first), at `now`, of a
 * delivery queued at `created` (all ms): true and *next the time of the
 * next attempt, or false when the delivery has run out of time or retries.
 */
bool backoff_next(const struct queue_config *qc, int attempts, int64_t created, int64_t now,
		  int64_t *next);

#endif
