/*
 * The delivery engine: for each connection slot the scheduler grants, it
 * resolves the destination (MX, or the zone's smart host), connects from the
 * chosen pool address to each address in turn, speaks ESMTP (PIPELINING,
 * SIZE, 8BITMIME, SMTPUTF8), streams the stored message with dot-stuffing,
 * reports each recipient's outcome to the scheduler (classified by the
 * bounce rules) and reuses the connection for more mail to the same domain.
 */
#ifndef ZMTA_MTA_H
#define ZMTA_MTA_H

#include <event2/event.h>

#include "bounce/rules.h"
#include "core/config.h"
#include "core/workpool.h"
#include "mta/dns.h"
#include "queue/queue.h"
#include "sched/sched.h"

struct mta;

/* `cfg`, `dns`, `rules` and `crypto` (DKIM signing threads) must outlive
 * the engine. */
struct mta *mta_new(struct event_base *base, const struct config *cfg, struct dns *dns,
		    const struct bounce_rules *rules, struct workpool *crypto);
/* Swaps in new bounce rules (SIGHUP); returns the old ones for the caller
 * to free (nothing keeps pointers into them between events). */
const struct bounce_rules *mta_set_rules(struct mta *m, const struct bounce_rules *rules);
/* The scheduler and queue, once both exist. */
void mta_attach(struct mta *m, struct sched *sched, struct queue *queue);
/* The scheduler's start function (arg: the engine). */
void mta_start(void *arg, struct sched_slot *slot, struct sched_batch *batch);
/* Drops every connection; unfinished deliveries stay queued for next time. */
void mta_free(struct mta *m);

#endif
