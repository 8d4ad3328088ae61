/* SPDX-License-Identifier: EUPL-1.2 */
/* GCRA throttles; see throttle.h. */
#include "sched/throttle.h"

#include <math.h>

void throttle_init(struct throttle *t, const struct rate *r)
{
	t->interval_ms = r->count > 0 ? (double)r->period_ms / (double)r->count : 0;
	t->tat = 0;
}

int64_t throttle_wait(const struct throttle *t, int64_t now_ms)
{
	if (t->interval_ms == 0 || (double)now_ms >= t->tat)
		return 0;
	return (int64_t)ceil(t->tat - (double)now_ms);
}

void throttle_take(struct throttle *t, int64_t now_ms)
{
	if (t->interval_ms == 0)
		return;
	double base = t->tat > (double)now_ms ? t->tat : (double)now_ms;
	t->tat = base + t->interval_ms;
}
