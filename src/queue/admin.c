/* SPDX-License-Identifier: EUPL-1.2 */
/* Pauses and the audit log, persisted; see admin.h. */
#include "queue/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "queue/events.h"
#include "queue/queue_internal.h"

/* Audit entries kept in memory for GET /ops (all are in the store). */
#define AUDIT_KEPT 1000

struct admin {
	struct event_base *base;
	struct queue *q;
	const struct config *cfg;
	admin_pauses_fn apply;
	void *apply_arg;
	json_t *pauses; /* array, oldest first */
	json_t *audit;  /* array, oldest first, at most AUDIT_KEPT */
	uint32_t id_tag;
	uint64_t id_seq;
	struct event *expiry; /* at the nearest `until` */
	char last_id[32];
};

void queue_set_admin(struct queue *q, struct admin *a)
{
	q->admin = a;
}

struct admin *queue_admin(const struct queue *q)
{
	return q->admin;
}

/* Ids like the suppression list's: 24 hex digits, time first, so that
 * they sort by age. */
static void new_id(struct admin *a, char out[25])
{
	snprintf(out, 25, "%012llx%04x%08x", (unsigned long long)clock_wall_ms(),
		 (unsigned)(++a->id_seq & 0xffff), a->id_tag);
}

static char *row_key(const char *kind, const char *id)
{
	return xasprintf("%s\n%s", kind, id);
}

static void write_row(struct admin *a, const char *kind, const char *id, json_t *value,
		      admin_done_fn cb, void *arg)
{
	char *key = row_key(kind, id);
	char *val = value ? json_dumps(value, JSON_COMPACT) : NULL;
	queue_row_write(a->q, STORE_CF_ADMIN, key, val, cb, arg);
	free(key);
	free(val);
}

static const char *str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The pauses told (to the scheduler), and the timer for the next end. */
static void tell_sched(struct admin *a)
{
	size_t n = json_array_size(a->pauses), i;
	struct queue_pause *p = xcalloc(n ? n : 1, sizeof(*p));
	int64_t next_end = 0;
	json_t *e;
	json_array_foreach (a->pauses, i, e) {
		p[i] = (struct queue_pause){str(e, "zone"), str(e, "domain"), str(e, "sender"),
					    str(e, "user"),
					    json_integer_value(json_object_get(e, "until"))};
		if (p[i].until != 0 && (next_end == 0 || p[i].until < next_end))
			next_end = p[i].until;
	}
	if (a->apply != NULL)
		a->apply(a->apply_arg, p, n);
	free(p);
	evtimer_del(a->expiry);
	if (next_end != 0) {
		int64_t wait = next_end - clock_wall_ms();
		if (wait < 0)
			wait = 0;
		struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
		evtimer_add(a->expiry, &tv);
	}
}

static void log_change(const char *action, const char *id, const json_t *target, size_t affected,
		       const struct admin_who *who)
{
	char *t = json_dumps(target, JSON_COMPACT);
	log_msg(LOG_LEVEL_INFO, NULL, "admin",
		"action=%s op=%s by=\"%s\" client=%s affected=%zu target=%s", action, id,
		who->principal, who->address ? who->address : "-", affected, t ? t : "{}");
	free(t);
}

/* An audit entry that is complete goes to the webhooks as an `admin`
 * event. */
static void audit_event(struct admin *a, const json_t *entry)
{
	if (a->cfg == NULL || !events_wanted(a->cfg, EVENT_ADMIN))
		return;
	struct queue_events evs = {0};
	struct event e = {.type = EVENT_ADMIN, .id = str(entry, "id"), .op = entry};
	events_add(a->q, a->cfg, &evs, &e);
	queue_events_write(a->q, &evs);
}

static const char *audit_entry(struct admin *a, const char *action, json_t *target, size_t affected,
			       json_t *fields, const struct admin_who *who)
{
	char id[25];
	new_id(a, id);
	json_t *entry = json_pack("{s:s, s:I, s:s, s:o, s:I, s:{s:s, s:s?}}", "id", id, "time",
				  (json_int_t)clock_wall_ms(), "action", action, "target",
				  target ? target : json_object(), "affected", (json_int_t)affected,
				  "by", "principal", who->principal, "address", who->address);
	if (fields != NULL) {
		json_object_update(entry, fields);
		json_decref(fields);
	} else {
		audit_event(a, entry);
	}
	log_change(action, id, json_object_get(entry, "target"), affected, who);
	write_row(a, "op", id, entry, NULL, NULL);
	json_array_append_new(a->audit, entry);
	if (json_array_size(a->audit) > AUDIT_KEPT)
		json_array_remove(a->audit, 0);
	snprintf(a->last_id, sizeof(a->last_id), "%s", id);
	return a->last_id;
}

const char *admin_audit(struct admin *a, const char *action, json_t *target, size_t affected,
			const struct admin_who *who)
{
	return audit_entry(a, action, target, affected, NULL, who);
}

const char *admin_audit_start(struct admin *a, const char *action, json_t *target, json_t *fields,
			      const struct admin_who *who)
{
	return audit_entry(a, action, target, 0, fields, who);
}

void admin_audit_update(struct admin *a, const char *id, json_t *fields)
{
	size_t i;
	json_t *e;
	json_array_foreach (a->audit, i, e) {
		if (strcmp(str(e, "id"), id) != 0)
			continue;
		json_object_update(e, fields);
		write_row(a, "op", id, e, NULL, NULL);
		const char *state = str(fields, "state");
		if (state != NULL && strcmp(state, "running") != 0)
			audit_event(a, e); /* done, or interrupted */
		break;
	}
	json_decref(fields);
}

json_t *admin_pause(struct admin *a, json_t *fields, const struct admin_who *who, admin_done_fn cb,
		    void *arg)
{
	char id[25];
	new_id(a, id);
	json_t *p = json_deep_copy(fields);
	json_object_set_new(p, "id", json_string(id));
	json_object_set_new(p, "created", json_integer((json_int_t)clock_wall_ms()));
	json_object_set_new(
	    p, "by",
	    json_pack("{s:s, s:s?}", "principal", who->principal, "address", who->address));
	write_row(a, "pause", id, p, cb, arg);
	json_array_append(a->pauses, p);
	tell_sched(a);
	admin_audit(a, "pause", json_deep_copy(fields), 0, who);
	return p;
}

static bool remove_pause(struct admin *a, const char *id, const char *why,
			 const struct admin_who *who, admin_done_fn cb, void *arg)
{
	size_t i;
	json_t *e;
	json_array_foreach (a->pauses, i, e) {
		if (strcmp(str(e, "id"), id) != 0)
			continue;
		json_t *target = json_deep_copy(e);
		json_object_del(target, "by");
		json_object_del(target, "created");
		if (why != NULL)
			json_object_set_new(target, "reason", json_string(why));
		json_array_remove(a->pauses, i);
		write_row(a, "pause", id, NULL, cb, arg);
		tell_sched(a);
		admin_audit(a, "resume", target, 0, who);
		return true;
	}
	return false;
}

bool admin_resume(struct admin *a, const char *id, const struct admin_who *who, admin_done_fn cb,
		  void *arg)
{
	return remove_pause(a, id, NULL, who, cb, arg);
}

/* A pause with an end came to it: it goes as a resume by the daemon. */
static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct admin *a = arg;
	int64_t now = clock_wall_ms();
	const struct admin_who daemon = {"zone-mta", NULL};
	for (size_t i = 0; i < json_array_size(a->pauses);) {
		json_t *e = json_array_get(a->pauses, i);
		json_int_t until = json_integer_value(json_object_get(e, "until"));
		if (until != 0 && until <= now) {
			char *id = xstrdup(str(e, "id"));
			remove_pause(a, id, "its time ran out", &daemon, NULL, NULL);
			free(id);
			continue;
		}
		i++;
	}
	tell_sched(a);
}

json_t *admin_pauses(const struct admin *a)
{
	return json_deep_copy(a->pauses);
}

json_t *admin_audit_list(const struct admin *a, size_t limit)
{
	json_t *out = json_array();
	for (size_t i = json_array_size(a->audit); i > 0 && json_array_size(out) < limit; i--)
		json_array_append(out, json_array_get(a->audit, i - 1));
	return out;
}

json_t *admin_audit_get(const struct admin *a, const char *id)
{
	size_t i;
	json_t *e;
	json_array_foreach (a->audit, i, e) {
		if (strcmp(str(e, "id"), id) == 0)
			return json_incref(e);
	}
	return NULL;
}

static int load_row(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct admin *a = arg;
	json_t *v = json_loadb(val, vlen, 0, NULL);
	if (!json_is_object(v) || str(v, "id") == NULL) {
		log_msg(LOG_LEVEL_WARN, NULL, "admin",
			"row=\"%.*s\" action=ignored "
			"reason=\"not an entry\"",
			(int)(klen < 60 ? klen : 60), key);
		json_decref(v);
		return 0;
	}
	if (klen > 6 && memcmp(key, "pause\n", 6) == 0) {
		json_array_append_new(a->pauses, v);
	} else if (klen > 3 && memcmp(key, "op\n", 3) == 0) {
		/* An operation the last stop cut short: what it did not reach
		 * is still queued, as it was. */
		const char *state = str(v, "state");
		if (state != NULL && strcmp(state, "running") == 0)
			json_object_set_new(v, "state", json_string("interrupted"));
		/* keys sort by time: the newest are the last */
		json_array_append_new(a->audit, v);
		if (json_array_size(a->audit) > AUDIT_KEPT)
			json_array_remove(a->audit, 0);
	} else {
		json_decref(v);
	}
	return 0;
}

struct admin *admin_open(struct event_base *base, struct queue *q, const struct config *cfg,
			 admin_pauses_fn apply, void *apply_arg, char **err)
{
	struct admin *a = xcalloc(1, sizeof(*a));
	a->base = base;
	a->q = q;
	a->cfg = cfg;
	a->apply = apply;
	a->apply_arg = apply_arg;
	a->pauses = json_array();
	a->audit = json_array();
	if (getrandom(&a->id_tag, sizeof(a->id_tag), 0) != sizeof(a->id_tag))
		a->id_tag = (uint32_t)clock_mono_ms();
	a->expiry = evtimer_new(base, on_expiry, a);
	if (q != NULL && queue_rows_scan(q, STORE_CF_ADMIN, load_row, a, err) != 0) {
		admin_free(a);
		return NULL;
	}
	if (json_array_size(a->pauses) > 0)
		log_msg(LOG_LEVEL_INFO, NULL, "admin", "pauses=%zu action=restored",
			json_array_size(a->pauses));
	tell_sched(a);
	if (q != NULL)
		queue_set_admin(q, a);
	return a;
}

void admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->q != NULL)
		queue_set_admin(a->q, NULL);
	event_free(a->expiry);
	json_decref(a->pauses);
	json_decref(a->audit);
	free(a);
}
