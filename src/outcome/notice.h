/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Delivery status notifications to senders, the outcome stage's part: the
 * recipients of one message that failed (or were delayed, or relayed to a
 * next hop without DSN) in one transaction are gathered until it ends, the original's metadata
 * and header are read, the rules that forbid a DSN are applied (null or
 * mailer-daemon sender, Auto-Submitted, multipart/report, Precedence,
 * NOTIFY), and the DSN (msg/dsn.c) is queued for the sender through
 * bounces.sendingZone.  A failure or success notice is queued in the same
 * store write that finishes the deliveries it reports on
 * (queue_notice_commit): a crash leaves the rows (tried again, reported
 * then) or the notice, never neither and never both.
 */
#ifndef ZMTA_NOTICE_H
#define ZMTA_NOTICE_H

#include <stdint.h>

#include "core/config.h"
#include "msg/dsn.h"
#include "queue/queue.h"
#include "sched/sched.h"

struct notices;

/* What the notice says of one recipient; strings borrowed for the call. */
struct notice_info {
	const char *status;     /* enhanced status code, or NULL: from the kind */
	const char *remote_mta; /* the host that answered, or NULL */
	const char *diagnostic; /* the reply, or what went wrong */
	int64_t last_attempt_ms;
	int64_t retry_until_ms; /* delayed: when the queue gives up */
	/* failed, relayed: the item's events (queue/events.h), taken, written
	 * with the removal of its row */
	struct queue_events *events;
};

/* `cfg` must outlive it. */
struct notices *notices_new(const struct config *cfg, struct sched *sched, struct queue *queue);
/*
 * Reports item `it` in a notice of `kind`.  DSN_FAILED and DSN_RELAYED take
 * the item: it leaves the schedule, its row with it, once the notice is
 * written or found not to be sent.  DSN_DELAYED only reads it (the caller
 * has rescheduled it).
 */
void notices_add(struct notices *n, enum dsn_kind kind, struct sched_item *it,
		 const struct notice_info *info);
/* The transaction of message `id` is over (every item reported): its
 * notices are complete, and go. */
void notices_batch_end(struct notices *n, const char *id);
/* The daemon is stopping: notices not yet written are dropped, and the
 * items they hold leave the schedule with their rows kept (so they are
 * tried, and reported, again after the next start).  Call before the
 * queue closes. */
void notices_shutdown(struct notices *n);
void notices_free(struct notices *n);

#endif
