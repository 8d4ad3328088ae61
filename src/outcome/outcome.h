/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The outcome stage: the one place where the result of a delivery attempt
 * becomes a decision.  The delivery engine reports, for each recipient it
 * tried, what happened (struct outcome_report) and nothing else; this stage
 * alone classifies failures (bounce rules), persists the decision
 * (queue_delivery_*), hands the item back to the scheduler (finished, or to
 * retry on the queue.deferTimes schedule), logs and counts, and has DSN
 * mail sent (notice.h).  Webhooks attach here.
 */
#ifndef ZMTA_OUTCOME_H
#define ZMTA_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>

#include "bounce/rules.h"
#include "core/config.h"
#include "queue/queue.h"
#include "sched/sched.h"

enum outcome_status {
	OUTCOME_OK,       /* the server took it */
	OUTCOME_TEMPFAIL, /* try again later */
	OUTCOME_PERMFAIL, /* bounce */
	OUTCOME_SUPPRESSED, /* not tried: the recipient is on the suppression list (text says which entry) */
};

/* What one delivery attempt of one recipient came to; strings borrowed. */
struct outcome_report {
	enum outcome_status status; /* as the delivery saw it (reply class, or its own decision) */
	int code;                   /* the server's reply code; 0 when there was no reply */
	const char *text; /* the whole response, or what went wrong ("could not connect ...") */
	/* NULL: the bounce rules classify a failure from code and text (a
	 * server's answer, a broken connection).  Else the delivery decided
	 * (e.g. "dns" for NXDOMAIN), and status stands as given. */
	const char *category;
	bool attempted;         /* a server answered (counts as an attempt) */
	const char *remote_mta; /* the host that answered, or NULL */
	const char *notify;     /* the recipient's DSN NOTIFY (RFC 3461), or NULL */
	bool next_hop_dsn;      /* the server took DSN parameters: it sends the notices */
	/* for the events (queue/events.h): the message as read (NULL: not
	 * read yet) and the connection, NULL where there was none */
	const json_t *meta;
	const char *header_block;
	size_t header_len;
	const char *remote_address, *local_address, *tls;
};

struct outcome;

/* `cfg` and `rules` must outlive the stage (rules until outcome_set_rules). */
struct outcome *outcome_new(const struct config *cfg, const struct bounce_rules *rules);
void outcome_free(struct outcome *o);
/* The scheduler and the queue, once both exist. */
void outcome_attach(struct outcome *o, struct sched *sched, struct queue *queue);
/* The daemon is stopping: DSN mail not yet written is dropped, the
 * deliveries it was about stay queued.  Call before the queue closes. */
void outcome_shutdown(struct outcome *o);
/* Swaps in new bounce rules (SIGHUP); returns the old ones for the caller to
 * free (nothing keeps pointers into them between events). */
const struct bounce_rules *outcome_set_rules(struct outcome *o, const struct bounce_rules *rules);

/* The result of one item of a batch; the item is consumed. */
void outcome_report(struct outcome *o, struct sched_item *it, const struct outcome_report *r);
/* Every item of the batch of message `id` is reported: what they have to
 * tell the sender is complete (one DSN per message and transaction). */
void outcome_batch_end(struct outcome *o, const char *id);
/* An item dropped without a result (the daemon is stopping): its stored row
 * stays, to be tried after the next start. */
void outcome_abandon(struct outcome *o, struct sched_item *it);
/*
 * Deletes the deliveries of message `id` (all when seq is 0, else that one)
 * through the API: rows removed, the message with its last.  One in flight
 * is forgotten when its result comes.  Returns how many were removed.
 */
size_t outcome_delete(struct outcome *o, const char *id, unsigned seq);

/* Writes an item's row again as it stands in the schedule (an operator
 * held or released it). */
void outcome_rewrite(struct outcome *o, const struct sched_item *it);

/* What an operator's bounce or rebind did to a delivery. */
enum outcome_admin {
	OUTCOME_ADMIN_NONE, /* nothing: gone meanwhile, or in that zone already */
	OUTCOME_ADMIN_DONE, /* done now */
	/* in flight: done when its attempt ends in a deferral (an attempt
	 * that delivers or bounces it ends it first) */
	OUTCOME_ADMIN_AFTER_ATTEMPT,
};

/* An operator bounces a delivery: reported as a permanent failure
 * (category admin, a DSN as any bounce's, with `reason` or NULL in its
 * diagnostic).  outcome_batch_end(id) afterwards sends the message's
 * notice.  `op` (the operation's id) is logged when it is done later. */
enum outcome_admin outcome_bounce(struct outcome *o, struct sched_item *it, const char *reason,
				  const char *op);
/* A held or paused delivery whose time in the queue ran out: bounced as
 * expired (4.4.7, as if it had been tried); false when it is in flight.
 * outcome_batch_end(id) afterwards, as after outcome_bounce. */
bool outcome_expire(struct outcome *o, struct sched_item *it);
/* Moves a delivery to `zone` (its row written again, counted there, new
 * pool addresses).  `it` is gone after OUTCOME_ADMIN_DONE. */
enum outcome_admin outcome_rebind(struct outcome *o, struct sched_item *it, const char *zone,
				  const char *op);

/* The enhanced status code at the start of a reply text after its code
 * ("550 5.1.1 ..." gives "5.1.1") into buf; false when there is none. */
bool outcome_enhanced_code(const char *text, char *buf, size_t size);

#endif
