/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Events: what happened to mail (enum event_type), as the JSON the
 * webhooks receive.  Whoever writes a change of state builds its event
 * here and hands it to the queue write that makes the change
 * (struct queue_events), one row per endpoint that takes the event;
 * outcome/webhook.c sends them.  Nothing is built when no endpoint takes
 * the type.
 *
 * An event (JSON object): eventId (unique, stable: receivers de-duplicate
 * by it), event (its type), time (ms), id and seq (the message's queue id
 * and the delivery's, as ZoneMTA's), zone, from, to, messageId,
 * interface, and where known mx, remoteAddress, localAddress, tls,
 * response, status (the enhanced code), category, attempts, nextAttempt
 * (ms), headers (webhooks.headers found in the message), fbl (X-FBL);
 * an `admin` event has id (the operation's) and op (its audit entry).
 */
#ifndef ZMTA_EVENTS_H
#define ZMTA_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "queue/queue.h"

struct header_list;

struct event {
	enum event_type type;
	const char *id; /* queue id */
	unsigned seq;   /* delivery; 0 for a message-wide event */
	const char *zone;
	const char *recipient;
	/* the message: its metadata (from, messageId, interface) and header
	 * block, or NULL when not read */
	const json_t *meta;
	const char *header_block;
	size_t header_len;
	const struct header_list *headers; /* instead of header_block, when parsed */
	/* the attempt */
	const char *mx, *remote_address, *local_address, *tls;
	const char *response, *status, *category;
	int attempts;
	int64_t next_attempt; /* ms, 0: none */
	const json_t *op;     /* admin: the audit entry */
};

/* Whether any endpoint takes events of this type. */
bool events_wanted(const struct config *cfg, enum event_type type);
/* Builds the event and adds it to evs for each endpoint that takes it. */
void events_add(struct queue *q, const struct config *cfg, struct queue_events *evs,
		const struct event *e);

#endif
