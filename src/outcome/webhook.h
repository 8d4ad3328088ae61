/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Webhooks: the events (queue/events.h) go to their endpoints
 * (webhooks.endpoints, bounces.url) over the HTTP client.  Each endpoint
 * has a backlog in the store; its events are sent in order, a batch at a
 * time (one POST in flight per endpoint), as a JSON array signed with
 * HMAC-SHA256 (X-Zmta-Signature: t=<unix time>,v1=<hex of HMAC(secret,
 * "<t>.<body>")>), or for bounces.url as one form POST each (ZoneMTA's
 * http-bounce).  An event's row is deleted once its endpoint answered
 * 2xx; anything else is retried with the delay doubling from 1 s up to the
 * endpoint's retryMax.  Delivery is at least once: eventId tells repeats.
 */
#ifndef ZMTA_WEBHOOK_H
#define ZMTA_WEBHOOK_H

#include <event2/event.h>

#include "core/config.h"
#include "net/http_client.h"
#include "queue/queue.h"

struct webhooks;

/* Reads the stored backlog (blocks: before the loop runs) and starts
 * sending.  `cfg` must outlive it.  NULL and *err when the store fails. */
struct webhooks *webhooks_new(const struct config *cfg, struct event_base *base,
			      struct queue *queue, struct http_client *http, char **err);
/* Stops sending; a POST in flight is dropped (its events stay stored).
 * Before the HTTP client is freed. */
void webhooks_free(struct webhooks *w);

#endif
