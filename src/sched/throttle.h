/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Throttles: the generic cell rate algorithm (GCRA), one "theoretical
 * arrival time" per throttle.  A rate of N messages per period lets one
 * message through every period/N, evenly spaced, with no burst: over any
 * window the count stays within one message of the rate.
 */
#ifndef ZMTA_THROTTLE_H
#define ZMTA_THROTTLE_H

#include <stdint.h>

#include "core/config.h"

struct throttle {
	double interval_ms; /* 0: unlimited */
	double tat;         /* when the next message conforms, in ms */
};

void throttle_init(struct throttle *t, const struct rate *r);
/* 0 if a message may go at `now_ms` (no change); else the ms to wait. */
int64_t throttle_wait(const struct throttle *t, int64_t now_ms);
/* Counts a message sent at `now_ms` (call only when throttle_wait said 0). */
void throttle_take(struct throttle *t, int64_t now_ms);

#endif
