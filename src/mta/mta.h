/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The delivery engine: for each connection slot the scheduler grants, it
 * resolves the destination (MX, or the zone's smart host, or an address
 * literal), connects from the zone's pool address of the target's family
 * to each address in turn, speaks ESMTP (PIPELINING, SIZE, 8BITMIME,
 * SMTPUTF8, STARTTLS), streams the stored message (downgraded to 7 bits or
 * with long lines folded when the server needs it), reports each
 * recipient's result to the outcome stage and reuses the connection for
 * more mail to the same domain.  See mta_internal.h for its files.
 */
#ifndef ZMTA_MTA_H
#define ZMTA_MTA_H

#include <event2/event.h>

#include "core/config.h"
#include "core/workpool.h"
#include "mta/dns.h"
#include "outcome/outcome.h"
#include "queue/queue.h"
#include "sched/sched.h"

struct mta;

/* `cfg`, `dns`, `outcome` and `crypto` (DKIM signing threads) must outlive
 * the engine. */
struct mta *mta_new(struct event_base *base, const struct config *cfg, struct dns *dns,
		    struct outcome *outcome, struct workpool *crypto);
/* The scheduler and queue, once both exist. */
void mta_attach(struct mta *m, struct sched *sched, struct queue *queue);
/* The scheduler's start function (arg: the engine). */
void mta_start(void *arg, struct sched_slot *slot, struct sched_batch *batch);
/*
 * A clean stop: connections not waiting for the reply to a final dot end
 * now (what they carried stays queued); those waiting get their reply, up
 * to the caller's grace period, then end.  drained(arg) runs once none is
 * left (perhaps at once).
 */
void mta_shutdown(struct mta *m, void (*drained)(void *arg), void *arg);
/* Drops every connection; unfinished deliveries stay queued for next time. */
void mta_free(struct mta *m);

#endif
