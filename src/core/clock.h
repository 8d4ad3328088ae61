/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The two clocks.  Timers, throttles, backoff waits and phase deadlines use
 * the monotonic clock, which never jumps; times that are stored or shown
 * (queued at, next attempt in a delivery row, log stamps) use the wall
 * clock.  Both in milliseconds.
 */
#ifndef ZMTA_CLOCK_H
#define ZMTA_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC: for intervals and deadlines only. */
int64_t clock_mono_ms(void);
/* Milliseconds since the Unix epoch: for what is stored or shown. */
int64_t clock_wall_ms(void);
/* A stored wall-clock time as the monotonic time it falls on from now. */
int64_t clock_wall_to_mono(int64_t wall_ms);
/* A monotonic time as wall-clock milliseconds (for what is shown or stored). */
int64_t clock_mono_to_wall(int64_t mono_ms);

#endif
