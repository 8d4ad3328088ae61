/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Queue administration state (docs/api.md#queue-administration):
 * pauses and the audit log, kept in the store's `admin` column family so
 * that both survive a restart, and told to the scheduler.  Holds are an
 * attribute of each delivery row (queue_delivery_rewrite).  Every change
 * is audited: who, from where, when, what, how many deliveries, in the log
 * and in the audit entries (GET /ops).  Loop thread only.
 */
#ifndef ZMTA_ADMIN_H
#define ZMTA_ADMIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

struct queue;
struct admin;

/*
 * A pause: deliveries that match every field given (NULL: any) are not
 * started while it lasts: the zone, the recipient domain, the sender (an
 * address, or a domain: the sender's domain) and the AUTH user.  `until`
 * is wall-clock ms, 0 for no end.
 */
struct queue_pause {
	const char *zone, *domain, *sender, *user;
	int64_t until;
};
/* Told the pauses in force (borrowed for the call) each time they change:
 * the scheduler (sched_set_pauses). */
typedef void (*admin_pauses_fn)(void *arg, const struct queue_pause *pauses, size_t n);

/* Who asked for a change: the API's principal and client address. */
struct admin_who {
	const char *principal; /* "apiKey", a Basic user name, or "anonymous" */
	const char *address;
};

/* Loads the pauses and the recent audit entries (blocks: before the loop
 * runs) and tells `apply` the pauses.  NULL and *err on a store error. */
struct config;
/* `cfg` (which webhooks take `admin` events) must outlive it. */
struct admin *admin_open(struct event_base *base, struct queue *q, const struct config *cfg,
			 admin_pauses_fn apply, void *apply_arg, char **err);
void admin_free(struct admin *a);

/* A new pause; `fields` {zone?, domain?, sender?, user?, until? (wall ms),
 * reason?} checked by the caller.  Persisted (synced) before cb(arg, rc,
 * error) runs; returns the pause as stored (a new reference). */
typedef void (*admin_done_fn)(void *arg, int rc, const char *error);
json_t *admin_pause(struct admin *a, json_t *fields, const struct admin_who *who, admin_done_fn cb,
		    void *arg);
/* Ends the pause `id` (resume); false when there is none such.  cb as above. */
bool admin_resume(struct admin *a, const char *id, const struct admin_who *who, admin_done_fn cb,
		  void *arg);
/* The pauses in force, oldest first (a new reference). */
json_t *admin_pauses(const struct admin *a);

/* An audit entry for a change made elsewhere (holds, deletes): `action`,
 * its target (consumed), how many deliveries it affected.  Persisted with
 * the next write; returns its id. */
const char *admin_audit(struct admin *a, const char *action, json_t *target, size_t affected,
			const struct admin_who *who);
/* The entry of an operation that runs a while: `fields` (consumed) are
 * added to it, {state: "running", ...}.  Its `admin` event goes when an
 * update sets state "done" (that of a complete entry at once). */
const char *admin_audit_start(struct admin *a, const char *action, json_t *target, json_t *fields,
			      const struct admin_who *who);
/* Sets members of audit entry `id` (fields consumed: an operation's
 * state, scanned, affected) and writes it again. */
void admin_audit_update(struct admin *a, const char *id, json_t *fields);
/* Audit entries, newest first, at most `limit` (a new reference); one by
 * id, or NULL. */
json_t *admin_audit_list(const struct admin *a, size_t limit);
json_t *admin_audit_get(const struct admin *a, const char *id);

/* The administration state of this queue, once opened (for the API). */
void queue_set_admin(struct queue *q, struct admin *a);
struct admin *queue_admin(const struct queue *q);

#endif
