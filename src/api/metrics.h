/*
 * Counters and histograms for GET /metrics (Prometheus text format).  All
 * updates happen on the event loop thread.
 */
#ifndef ZMTA_METRICS_H
#define ZMTA_METRICS_H

#include "core/config.h"
#include "queue/queue.h"

void metrics_message_accepted(const char *interface);
void metrics_message_rejected(const char *interface);
/* result: "delivered", "deferred" or "bounced" */
void metrics_delivery(const char *zone, const char *result);
/* An outbound connection of `zone` opened (+1) or closed (-1). */
void metrics_connection(const char *zone, int delta);
void metrics_observe_commit(double seconds);
void metrics_observe_dns(double seconds);

/* The exposition text (malloc'ed). */
char *metrics_render(const struct config *cfg, const struct queue *q);

#endif
