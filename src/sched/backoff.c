/* SPDX-License-Identifier: EUPL-1.2 */
/* Retry schedule; see backoff.h. */
#include "sched/backoff.h"

bool backoff_next(const struct queue_config *qc, int attempts, int64_t created, int64_t now,
		  int64_t *next)
{
	if (attempts < 1 || (size_t)attempts > qc->n_defer)
		return false;
	if (now - created >= (int64_t)qc->max_queue_time_ms)
		return false;
	*next = now + (int64_t)qc->defer_ms[attempts - 1];
	return true;
}
