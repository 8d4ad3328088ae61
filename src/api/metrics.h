/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * GET /metrics: renders the statistics registry (core/stats.h) and the
 * queue's counts in the Prometheus text format.  Renders only: nothing is
 * counted here.
 */
#ifndef ZMTA_METRICS_H
#define ZMTA_METRICS_H

#include "core/config.h"
#include "queue/queue.h"

/* The exposition text (malloc'ed). */
char *metrics_render(const struct config *cfg, const struct queue *q);

#endif
