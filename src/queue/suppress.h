/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The suppression list: recipient addresses and domains that get no mail.
 * Kept whole in memory (one hash map by "a:address" / "d:domain", one by
 * entry id: O(1) lookups at any size) and in the store's suppress column
 * family, written synced before a change is confirmed.  ZoneMTA's shapes:
 * an entry has an id (24 hex digits), an address or a domain (lower case),
 * its creation time; ours add a reason, a source (api, bounce,
 * unsubscribe) and an optional expiry, after which it no longer counts.
 * Loop thread only.
 */
#ifndef ZMTA_SUPPRESS_H
#define ZMTA_SUPPRESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "queue/queue.h"

#define SUPPRESS_ID_LEN 24

struct suppression {
	char id[SUPPRESS_ID_LEN + 1];
	bool is_domain;
	char *value;              /* the address or domain, lower case (in the same block) */
	char *reason;             /* or NULL */
	const char *source;       /* api, bounce, unsubscribe (static) */
	int64_t created, expires; /* ms; expires 0: never */
};

struct suppressions;

/* Reads the stored list (blocks: before the loop runs) and makes it the
 * queue's (queue_suppressions).  q NULL: memory only (the bench).  NULL and
 * *err when the store fails. */
struct suppressions *suppressions_open(struct queue *q, char **err);
void suppressions_free(struct suppressions *s);
size_t suppressions_count(const struct suppressions *s);

/* The entry that suppresses mail to `address` (the address itself, else
 * its domain), or NULL.  An expired entry is removed on the way. */
const struct suppression *suppressions_match(struct suppressions *s, const char *address);

/* The entry with this id, or NULL. */
const struct suppression *suppressions_by_id(const struct suppressions *s, const char *id);

/* Adds an entry, or replaces the one for the same address or domain
 * (keeping its id); `expires` 0: never.  Written synced: cb (may be NULL)
 * after.  Returns the entry as stored in memory. */
const struct suppression *suppressions_add(struct suppressions *s, bool is_domain,
					   const char *value, const char *reason,
					   const char *source, int64_t expires, queue_written_cb cb,
					   void *arg);
/* Removes the entry with this id, or for this address or domain ("a:..."
 * / "d:..." key), its id into `id`; false when there is none.  cb as for
 * adding. */
bool suppressions_remove(struct suppressions *s, const char *id_or_key,
			 char id[SUPPRESS_ID_LEN + 1], queue_written_cb cb, void *arg);

/* The entries not expired, newest first, at most `limit`, after the entry
 * with id `after` (NULL: from the newest), as ZoneMTA's listing objects
 * {id, address | domain, created (ISO 8601), reason, source, expires};
 * *next is the id to continue after when there are more, else NULL (a
 * string of the list's, valid until it changes). */
json_t *suppressions_list(struct suppressions *s, size_t limit, const char *after,
			  const char **next);
json_t *suppression_json(const struct suppression *e);

#endif
