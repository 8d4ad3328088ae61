/* SPDX-License-Identifier: EUPL-1.2 */
/* The monotonic and the wall clock; see clock.h. */
#include "core/clock.h"

#include <time.h>

static int64_t ms_of(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_ms(void)
{
	return ms_of(CLOCK_MONOTONIC);
}

int64_t clock_wall_ms(void)
{
	return ms_of(CLOCK_REALTIME);
}

int64_t clock_wall_to_mono(int64_t wall_ms)
{
	return clock_mono_ms() + (wall_ms - clock_wall_ms());
}

int64_t clock_mono_to_wall(int64_t mono_ms)
{
	return clock_wall_ms() + (mono_ms - clock_mono_ms());
}
