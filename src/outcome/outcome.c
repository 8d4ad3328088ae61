/* SPDX-License-Identifier: EUPL-1.2 */
/* The outcome stage: classify, persist, reschedule, log, count; see outcome.h. */
#include "outcome/outcome.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/stats.h"
#include "core/clock.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "hook/hook.h"
#include "outcome/notice.h"
#include "queue/events.h"
#include "queue/suppress.h"
#include "sched/backoff.h"

struct outcome {
	const struct config *cfg;
	const struct bounce_rules *rules;
	struct sched *sched;
	struct queue *queue;
	struct notices *notices;
	struct asking *asking;  /* failures sender:responseError is deciding on */
	struct strmap *waiting; /* ids whose batch ended while asking: their notices wait */
	/* "id/seq" of deliveries in flight -> struct after_attempt: what an
	 * operator asked for meanwhile, done if the attempt defers */
	struct strmap *after;
};

struct after_attempt {
	bool rebind; /* else bounce */
	char *arg;   /* rebind: the zone; bounce: the reason or NULL */
	char op[32]; /* the operation's id, for the log */
};

static void after_free(struct after_attempt *a)
{
	if (a == NULL)
		return;
	free(a->arg);
	free(a);
}

static void after_key(char *key, const struct sched_item *it)
{
	snprintf(key, QUEUE_ID_LEN + 8, "%s/%03x", it->id, it->seq);
}

/* What waits for the end of the item's attempt, taken out (or NULL). */
static struct after_attempt *after_take(struct outcome *o, const struct sched_item *it)
{
	if (strmap_count(o->after) == 0)
		return NULL;
	char key[QUEUE_ID_LEN + 8];
	after_key(key, it);
	return strmap_remove(o->after, key);
}

static void after_drop(struct outcome *o, const struct sched_item *it)
{
	after_free(after_take(o, it));
}

static void after_set(struct outcome *o, const struct sched_item *it, bool rebind, const char *arg,
		      const char *op)
{
	struct after_attempt *a = xcalloc(1, sizeof(*a));
	a->rebind = rebind;
	a->arg = xstrdup_or_null(arg);
	snprintf(a->op, sizeof(a->op), "%s", op ? op : "");
	char key[QUEUE_ID_LEN + 8];
	after_key(key, it);
	after_free(strmap_put(o->after, key, a)); /* the latest wins */
}

struct outcome *outcome_new(const struct config *cfg, const struct bounce_rules *rules)
{
	struct outcome *o = xcalloc(1, sizeof(*o));
	o->cfg = cfg;
	o->rules = rules;
	o->waiting = strmap_new();
	o->after = strmap_new();
	return o;
}

void outcome_free(struct outcome *o)
{
	if (o == NULL)
		return;
	notices_free(o->notices);
	strmap_free(o->waiting);
	size_t pos = 0;
	const char *key;
	void *a;
	while (strmap_next(o->after, &pos, &key, &a))
		after_free(a);
	strmap_free(o->after);
	free(o);
}

void outcome_attach(struct outcome *o, struct sched *sched, struct queue *queue)
{
	o->sched = sched;
	o->queue = queue;
	o->notices = notices_new(o->cfg, sched, queue);
}

/* --- sender:responseError deciding on a failure --- */

/* A failure waiting for the handlers' word, with copies of its report. */
struct asking {
	struct outcome *o;
	struct sched_item *it;
	struct outcome_report r;
	enum outcome_status status;
	char *category;
	int64_t retry_ms;
	uint64_t run;
	struct hook_ctx ctx;
	struct asking *prev, *next;
};

static void decide(struct outcome *o, struct sched_item *it, const struct outcome_report *r,
		   enum outcome_status status, const char *category, int64_t retry_ms,
		   bool expired);

static bool asking_for(const struct outcome *o, const char *id)
{
	for (const struct asking *a = o->asking; a != NULL; a = a->next)
		if (strcmp(a->it->id, id) == 0)
			return true;
	return false;
}

static void asking_free(struct asking *a)
{
	*(a->prev ? &a->prev->next : &a->o->asking) = a->next;
	if (a->next)
		a->next->prev = a->prev;
	free((char *)a->r.text);
	free((char *)a->r.remote_mta);
	free((char *)a->r.notify);
	free((char *)a->r.header_block);
	free((char *)a->r.remote_address);
	free((char *)a->r.local_address);
	free((char *)a->r.tls);
	json_decref((json_t *)a->r.meta);
	free(a->category);
	free(a);
}

static void asked(void *arg, const struct hook_result *res)
{
	struct asking *a = arg;
	struct outcome *o = a->o;
	enum outcome_status status = a->status;
	int64_t retry = -1;
	if (res->verdict == HOOK_REJECT) {
		status = OUTCOME_PERMFAIL; /* a handler bounces it */
		if (res->reply != NULL) {
			free((char *)a->r.text);
			a->r.text = xstrdup(res->reply);
		}
		log_msg(LOG_LEVEL_INFO, a->it->id, "plugin_decision",
			"seq=%03x handler=%s action=bounce", a->it->seq,
			res->handler ? res->handler : "?");
	} else if (res->verdict == HOOK_TEMPFAIL && a->retry_ms >= 0) {
		status = OUTCOME_TEMPFAIL;
		retry = a->retry_ms;
		log_msg(LOG_LEVEL_INFO, a->it->id, "plugin_decision",
			"seq=%03x handler=%s action=defer retry_in_ms=%lld", a->it->seq,
			res->handler ? res->handler : "?", (long long)retry);
	}
	char id[QUEUE_ID_LEN + 1];
	memcpy(id, a->it->id, sizeof(id));
	struct sched_item *it = a->it;
	a->run = 0;
	if (it->cancelled) {
		after_drop(o, it);
		sched_item_done(o->sched, it); /* deleted meanwhile: its row is gone */
	} else
		decide(o, it, &a->r, status, a->category, retry, false);
	asking_free(a);
	/* The message's batch ended while this was asked: its notices go now. */
	if (!asking_for(o, id) && strmap_remove(o->waiting, id) != NULL)
		notices_batch_end(o->notices, id);
}

/* Asks sender:responseError's handlers about a failure before deciding;
 * they may bounce it or set the retry time. */
static void ask(struct outcome *o, struct sched_item *it, const struct outcome_report *r,
		enum outcome_status status, const char *category)
{
	struct asking *a = xcalloc(1, sizeof(*a));
	a->o = o;
	a->it = it;
	a->status = status;
	a->category = xstrdup_or_null(category);
	a->retry_ms = -1;
	a->r = *r;
	a->r.text = xstrdup_or_null(r->text);
	a->r.category = NULL;
	a->r.remote_mta = xstrdup_or_null(r->remote_mta);
	a->r.notify = xstrdup_or_null(r->notify);
	a->r.remote_address = xstrdup_or_null(r->remote_address);
	a->r.local_address = xstrdup_or_null(r->local_address);
	a->r.tls = xstrdup_or_null(r->tls);
	a->r.meta = r->meta ? json_incref((json_t *)r->meta) : NULL;
	if (r->header_block != NULL) {
		char *h = xmalloc(r->header_len + 1);
		memcpy(h, r->header_block, r->header_len);
		h[r->header_len] = '\0';
		a->r.header_block = h;
	}
	a->ctx = (struct hook_ctx){
	    .address = it->recipient,
	    .from = json_string_value(json_object_get(a->r.meta, "from")),
	    .queue_id = it->id,
	    .seq = it->seq,
	    .zone_name = sched_item_zone(it),
	    .domain = sched_item_domain(it),
	    .mx = a->r.remote_mta,
	    .local_ip = a->r.local_address,
	    .code = r->code,
	    .response = a->r.text,
	    .category = a->category,
	    .retry_ms = &a->retry_ms,
	};
	a->next = o->asking;
	if (o->asking)
		o->asking->prev = a;
	o->asking = a;
	uint64_t run = hook_run(HOOK_SENDER_RESPONSE_ERROR, &a->ctx, asked, a);
	if (run != 0)
		a->run = run; /* else answered already, and `a` is gone */
}

void outcome_batch_end(struct outcome *o, const char *id)
{
	if (asking_for(o, id))
		strmap_put(o->waiting, id, o); /* after the last answer */
	else
		notices_batch_end(o->notices, id);
}

void outcome_shutdown(struct outcome *o)
{
	if (o == NULL)
		return;
	/* Failures still being asked about: their rows stay, tried again
	 * after the next start. */
	while (o->asking != NULL) {
		struct asking *a = o->asking;
		hook_cancel(a->run);
		sched_item_done(o->sched, a->it);
		asking_free(a);
	}
	notices_shutdown(o->notices);
}

const struct bounce_rules *outcome_set_rules(struct outcome *o, const struct bounce_rules *rules)
{
	const struct bounce_rules *old = o->rules;
	o->rules = rules;
	return old;
}

/* Digits at p, at least 1 and at most max; their count, or 0. */
static size_t digits(const char *p, size_t max)
{
	size_t n = 0;
	while (n <= max && isdigit((unsigned char)p[n]))
		n++;
	return n >= 1 && n <= max ? n : 0;
}

bool outcome_enhanced_code(const char *text, char *buf, size_t size)
{
	/* RFC 3463: class.subject.detail (1, 1-3, 1-3 digits), after "NNN" and
	 * a space or '-'. */
	if (text == NULL || strlen(text) < 9 || (text[3] != ' ' && text[3] != '-'))
		return false;
	const char *p = text + 4;
	if ((p[0] != '2' && p[0] != '4' && p[0] != '5') || p[1] != '.')
		return false;
	size_t subject = digits(p + 2, 3);
	if (subject == 0 || p[2 + subject] != '.')
		return false;
	size_t detail = digits(p + 3 + subject, 3);
	size_t n = 3 + subject + detail;
	if (detail == 0 || n >= size)
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

/* Removes the item's row (delivered, bounced or deleted), with its events. */
static void persist_finish(struct outcome *o, const struct sched_item *it, struct queue_events *evs)
{
	queue_delivery_finish(o->queue, it->id, it->seq, sched_item_zone(it), sched_item_domain(it),
			      it->deferred, evs);
}

/* The event of an attempt's result into evs (nothing when no endpoint
 * takes its type). */
static void attempt_event(struct outcome *o, struct queue_events *evs, enum event_type type,
			  const struct sched_item *it, const struct outcome_report *r,
			  const char *status, const char *category, int attempts, int64_t next)
{
	struct event e = {
	    .type = type,
	    .id = it->id,
	    .seq = it->seq,
	    .zone = sched_item_zone(it),
	    .recipient = it->recipient,
	    .meta = r->meta,
	    .header_block = r->header_block,
	    .header_len = r->header_len,
	    .mx = r->remote_mta,
	    .remote_address = r->remote_address,
	    .local_address = r->local_address,
	    .tls = r->tls,
	    .response = r->text,
	    .status = status,
	    .category = category,
	    .attempts = attempts,
	    .next_attempt = next,
	};
	events_add(o->queue, o->cfg, evs, &e);
}

static void log_result(const struct sched_item *it, const char *event, const char *category,
		       int attempts, const char *text, long long next_in_ms)
{
	char enhanced[16] = "-"; /* left as it is when the text has none */
	outcome_enhanced_code(text, enhanced, sizeof(enhanced));
	char next[48] = "";
	if (next_in_ms >= 0)
		snprintf(next, sizeof(next), " next_in_ms=%lld", next_in_ms);
	log_msg(LOG_LEVEL_INFO, it->id, event,
		"seq=%03x zone=%s rcpt=<%s>%s%s attempts=%d%s status=%s response=\"%s\"", it->seq,
		sched_item_zone(it), it->recipient, category ? " category=" : "",
		category ? category : "", attempts, next, enhanced, text);
}

/* Tells the hooks (sender:delivered, sender:responseError, queue:bounce). */
static void notify(enum hook_point point, const struct sched_item *it,
		   const struct outcome_report *r, const char *category)
{
	if (!hook_active(point))
		return;
	struct hook_ctx ctx = {
	    .address = it->recipient,
	    .queue_id = it->id,
	    .seq = it->seq,
	    .zone_name = sched_item_zone(it),
	    .domain = sched_item_domain(it),
	    .code = r->code,
	    .response = r->text,
	    .category = category,
	};
	hook_notify(point, &ctx);
}

/* A delivery that keeps failing crosses bounces.delayNotice with this
 * attempt: the one attempt that sends the delay notice (the previous one,
 * stored with the row, was before it, so a restart does not repeat it). */
static bool crosses_delay_notice(const struct outcome *o, const struct sched_item *it, int64_t now)
{
	uint64_t after = o->cfg->bounces.delay_notice_ms;
	if (!o->cfg->bounces.dsn || after == 0)
		return false;
	int64_t due = it->created + (int64_t)after;
	return now >= due && it->last_attempt < due;
}

/* The last attempt the schedule allows, for a delivery tried next at
 * `next` after `attempts` failures. */
static int64_t retry_until(const struct queue_config *qc, int attempts, int64_t created,
			   int64_t next)
{
	int64_t until = next;
	for (size_t k = (size_t)attempts; k < qc->n_defer; k++)
		until += (int64_t)qc->defer_ms[k];
	int64_t expiry = created + (int64_t)qc->max_queue_time_ms;
	return until < expiry ? until : expiry;
}

/* bounces.autoSuppress: a server said for good that the recipient does
 * not exist (category recipient): no more mail to it for a while. */
static void auto_suppress(struct outcome *o, const struct sched_item *it,
			  const struct outcome_report *r, const char *category, bool expired)
{
	struct suppressions *list = queue_suppressions(o->queue);
	uint64_t ttl = o->cfg->bounces.auto_suppress_ms;
	if (list == NULL || ttl == 0 || expired || !r->attempted || category == NULL ||
	    strcmp(category, "recipient") != 0)
		return;
	if (suppressions_match(list, it->recipient) != NULL)
		return;
	char *reason = xasprintf("%.200s", r->text);
	const struct suppression *e = suppressions_add(list, false, it->recipient, reason, "bounce",
						       clock_wall_ms() + (int64_t)ttl, NULL, NULL);
	log_msg(LOG_LEVEL_INFO, it->id, "suppression_added",
		"seq=%03x suppression=%s address=%s source=bounce expires_in_ms=%llu", it->seq,
		e->id, e->value, (unsigned long long)ttl);
	free(reason);
}

/* A delivery deleted while it was tried that the server took anyway: no
 * row to finish, but told as delivered (the recipient has it). */
static void delivered_after_delete(struct outcome *o, const struct sched_item *it,
				   const struct outcome_report *r)
{
	stats_delivery(sched_item_zone(it), "delivered");
	log_result(it, "delivered", NULL, it->attempts + 1, r->text, -1);
	char enhanced[16];
	bool coded = outcome_enhanced_code(r->text, enhanced, sizeof(enhanced));
	struct queue_events evs = {0};
	attempt_event(o, &evs, EVENT_DELIVERED, it, r, coded ? enhanced : NULL, NULL,
		      it->attempts + 1, 0);
	queue_events_write(o->queue, &evs);
}

void outcome_report(struct outcome *o, struct sched_item *it, const struct outcome_report *r)
{
	if (it->cancelled) {
		/* deleted while it was tried: its row is gone */
		if (r->status == OUTCOME_OK)
			delivered_after_delete(o, it, r);
		after_drop(o, it);
		sched_item_done(o->sched, it);
		return;
	}
	const char *zone = sched_item_zone(it);
	enum outcome_status status = r->status;
	const char *category = r->category;
	if (status == OUTCOME_SUPPRESSED) {
		/* Dropped without a try; a bounce only with suppression.notify
		 * (ZoneMTA: never). */
		after_drop(o, it);
		stats_delivery(zone, "suppressed");
		log_msg(LOG_LEVEL_INFO, it->id, "suppressed",
			"seq=%03x zone=%s rcpt=<%s> reason=\"%s\"", it->seq, zone, it->recipient,
			r->text);
		struct queue_events evs = {0};
		attempt_event(o, &evs, EVENT_SUPPRESSED, it, r, "5.7.1", "suppressed", it->attempts,
			      0);
		if (o->cfg->suppress_notify && o->cfg->bounces.dsn) {
			char *diag = xasprintf("550 5.7.1 %s", r->text);
			struct notice_info info = {.status = "5.7.1",
						   .diagnostic = diag,
						   .last_attempt_ms = clock_wall_ms(),
						   .events = &evs};
			notices_add(o->notices, DSN_FAILED, it, &info);
			free(diag);
			return;
		}
		persist_finish(o, it, &evs);
		sched_item_done(o->sched, it);
		return;
	}
	if (status != OUTCOME_OK && category == NULL) {
		struct bounce_verdict v;
		bounce_rules_classify(o->rules, r->code, r->text, &v);
		status = v.action == BOUNCE_REJECT ? OUTCOME_PERMFAIL : OUTCOME_TEMPFAIL;
		category = v.category;
	}
	if (status != OUTCOME_OK && hook_active(HOOK_SENDER_RESPONSE_ERROR)) {
		ask(o, it, r, status, category);
		return;
	}
	decide(o, it, r, status, category, -1, false);
}

/* The decision on a classified result; retry_ms >= 0: a handler set when
 * a temporary failure is tried again; expired: a permanent failure
 * because the delivery's time ran out. */
static void decide(struct outcome *o, struct sched_item *it, const struct outcome_report *r,
		   enum outcome_status status, const char *category, int64_t retry_ms, bool expired)
{
	const char *zone = sched_item_zone(it);
	/* Attempts count every try that reached a server, the failing one
	 * included, so a bounce reads like the deferrals before it. */
	int attempts = it->attempts + (r->attempted ? 1 : 0);
	int64_t now = clock_wall_ms();
	/* an operator's bounce or rebind waits for a deferral; any other end
	 * makes it moot */
	struct after_attempt *after = after_take(o, it);
	int64_t next = 0;
	if (status == OUTCOME_TEMPFAIL) {
		attempts = it->attempts + 1;
		bool more = backoff_next(&o->cfg->queue, attempts, it->created, now, &next);
		if (retry_ms >= 0) {
			next = now + retry_ms;
			more = next <= it->created + (int64_t)o->cfg->queue.max_queue_time_ms;
		}
		if (!more) {
			log_msg(LOG_LEVEL_INFO, it->id, "expired", "seq=%03x attempts=%d", it->seq,
				attempts);
			status = OUTCOME_PERMFAIL;
			expired = true;
		}
	}
	if (status == OUTCOME_OK)
		notify(HOOK_SENDER_DELIVERED, it, r, NULL);
	char enhanced[16];
	struct queue_events evs = {0};
	struct notice_info info = {
	    .status = outcome_enhanced_code(r->text, enhanced, sizeof(enhanced)) ? enhanced : NULL,
	    .remote_mta = r->remote_mta,
	    .diagnostic = r->text,
	    .last_attempt_ms = now,
	    .events = &evs,
	};
	switch (status) {
	case OUTCOME_OK:
		stats_delivery(zone, "delivered");
		log_result(it, "delivered", NULL, attempts, r->text, -1);
		attempt_event(o, &evs, EVENT_DELIVERED, it, r, info.status, NULL, attempts, 0);
		/* NOTIFY=SUCCESS that the next hop will not answer: we do
		 * (RFC 3461 5.2.2, "relayed"). */
		if (o->cfg->bounces.dsn && !r->next_hop_dsn && r->notify != NULL &&
		    strcasestr(r->notify, "SUCCESS") != NULL) {
			notices_add(o->notices, DSN_RELAYED, it, &info);
			after_free(after);
			return;
		}
		persist_finish(o, it, &evs);
		sched_item_done(o->sched, it);
		after_free(after);
		return;
	case OUTCOME_PERMFAIL:
		stats_delivery(zone, "bounced");
		log_result(it, "bounced", category ? category : "other", attempts, r->text, -1);
		notify(HOOK_QUEUE_BOUNCE, it, r, category ? category : "other");
		if (expired && info.status == NULL)
			info.status = "4.4.7"; /* RFC 3463: delivery time expired */
		attempt_event(o, &evs, expired ? EVENT_EXPIRED : EVENT_BOUNCED, it, r, info.status,
			      category ? category : "other", attempts, 0);
		auto_suppress(o, it, r, category, expired);
		after_free(after);
		if (o->cfg->bounces.dsn) {
			notices_add(o->notices, DSN_FAILED, it, &info);
			return;
		}
		persist_finish(o, it, &evs);
		sched_item_done(o->sched, it);
		return;
	case OUTCOME_TEMPFAIL:
	case OUTCOME_SUPPRESSED: /* handled above */
		break;
	}
	stats_delivery(zone, "deferred");
	it->attempts = attempts;
	if (it->first_failure == 0)
		it->first_failure = now;
	log_result(it, "deferred", category ? category : "other", attempts, r->text, next - now);
	if (crosses_delay_notice(o, it, now)) {
		info.retry_until_ms = retry_until(&o->cfg->queue, attempts, it->created, next);
		info.events = NULL; /* they go with the deferral */
		notices_add(o->notices, DSN_DELAYED, it, &info);
	}
	char *kept = pool_format_kept(sched_item_pool(it), it->local);
	struct queue_delivery_row row = {
	    .id = it->id,
	    .seq = it->seq,
	    .zone = zone,
	    .recipient = it->recipient,
	    .domain = sched_item_domain(it),
	    .created = it->created,
	    .next_attempt = next,
	    .attempts = it->attempts,
	    .deferred = true,
	    .first_failure = it->first_failure,
	    .local_address = kept,
	    .from = it->from,
	    .user = it->user,
	    .held = it->held,
	};
	attempt_event(o, &evs, EVENT_DEFERRED, it, r, info.status, category ? category : "other",
		      attempts, next);
	struct queue_attempt attempt = {now,    r->remote_mta, r->remote_address, r->local_address,
					r->tls, r->text};
	queue_delivery_defer(o->queue, &row, it->deferred, &attempt, &evs);
	free(kept);
	sched_item_retry(o->sched, it, next - now, r->text);
	if (after != NULL) {
		log_msg(LOG_LEVEL_INFO, it->id, "after_attempt", "seq=%03x op=%s action=%s",
			it->seq, after->op, after->rebind ? "rebind" : "bounce");
		if (after->rebind)
			outcome_rebind(o, it, after->arg, after->op);
		else
			outcome_bounce(o, it, after->arg, after->op);
		after_free(after);
	}
}

void outcome_abandon(struct outcome *o, struct sched_item *it)
{
	after_drop(o, it);
	sched_item_done(o->sched, it);
}

/* The item's row as it stands in the schedule; *kept (its pool
 * addresses) is the caller's to free. */
static struct queue_delivery_row item_row(const struct sched_item *it, char **kept)
{
	*kept = pool_format_kept(sched_item_pool(it), it->local);
	return (struct queue_delivery_row){
	    .id = it->id,
	    .seq = it->seq,
	    .zone = sched_item_zone(it),
	    .recipient = it->recipient,
	    .domain = sched_item_domain(it),
	    .created = it->created,
	    .next_attempt = clock_mono_to_wall(it->next),
	    .attempts = it->attempts,
	    .deferred = it->deferred,
	    .first_failure = it->first_failure,
	    .local_address = *kept,
	    .last_attempt = it->last_attempt,
	    .response = it->response,
	    .from = it->from,
	    .user = it->user,
	    .held = it->held,
	};
}

void outcome_rewrite(struct outcome *o, const struct sched_item *it)
{
	char *kept;
	struct queue_delivery_row row = item_row(it, &kept);
	queue_delivery_rewrite(o->queue, &row);
	free(kept);
}

/* Takes an item out of the schedule for an operator's action: DONE
 * when it is out, AFTER_ATTEMPT when it is in flight, NONE when it is
 * gone meanwhile. */
static enum outcome_admin admin_take(struct outcome *o, struct sched_item *it)
{
	if (it->cancelled)
		return OUTCOME_ADMIN_NONE;
	return sched_take(o->sched, it) ? OUTCOME_ADMIN_DONE : OUTCOME_ADMIN_AFTER_ATTEMPT;
}

enum outcome_admin outcome_bounce(struct outcome *o, struct sched_item *it, const char *reason,
				  const char *op)
{
	enum outcome_admin taken = admin_take(o, it);
	if (taken == OUTCOME_ADMIN_AFTER_ATTEMPT)
		after_set(o, it, false, reason, op);
	if (taken != OUTCOME_ADMIN_DONE)
		return taken;
	char *text = xasprintf("550 5.0.0 Bounced by the queue's operator%s%.200s",
			       reason ? ": " : "", reason ? reason : "");
	struct outcome_report r = {
	    .status = OUTCOME_PERMFAIL, .code = 550, .text = text, .category = "admin"};
	decide(o, it, &r, OUTCOME_PERMFAIL, "admin", -1, false);
	free(text);
	return OUTCOME_ADMIN_DONE;
}

bool outcome_expire(struct outcome *o, struct sched_item *it)
{
	if (!sched_take(o->sched, it))
		return false;
	log_msg(LOG_LEVEL_INFO, it->id, "expired", "seq=%03x attempts=%d held=%s", it->seq,
		it->attempts, it->held ? "yes" : "no");
	const char *text = it->held ? "450 4.4.7 Held by the queue's operator until it expired"
				    : "450 4.4.7 Paused by the queue's operator until it expired";
	struct outcome_report r = {.status = OUTCOME_PERMFAIL, .code = 450, .text = text};
	decide(o, it, &r, OUTCOME_PERMFAIL, "expired", -1, true);
	return true;
}

enum outcome_admin outcome_rebind(struct outcome *o, struct sched_item *it, const char *zone,
				  const char *op)
{
	const char *from_zone = sched_item_zone(it);
	if (strcmp(from_zone, zone) == 0)
		return OUTCOME_ADMIN_NONE;
	enum outcome_admin taken = admin_take(o, it);
	if (taken == OUTCOME_ADMIN_AFTER_ATTEMPT)
		after_set(o, it, true, zone, op);
	if (taken != OUTCOME_ADMIN_DONE)
		return taken;
	char *kept;
	struct queue_delivery_row row = item_row(it, &kept);
	free(kept);
	/* The new zone's pool deals its addresses: none kept from the old;
	 * and it tries at once: the old zone's wait was for the old zone. */
	row.local_address = NULL;
	row.next_attempt = clock_wall_ms();
	row.zone = zone;
	/* The row outlives the item: its own copies. */
	char id[QUEUE_ID_LEN + 1];
	memcpy(id, it->id, sizeof(id));
	row.id = id;
	char *recipient = xstrdup(it->recipient), *response = xstrdup_or_null(it->response);
	row.recipient = recipient;
	row.response = response;
	char *old = xstrdup(from_zone);
	queue_delivery_move(o->queue, &row, old);
	log_msg(LOG_LEVEL_INFO, it->id, "rebound", "seq=%03x rcpt=<%s> zone=%s from_zone=%s",
		it->seq, recipient, zone, old);
	sched_item_done(o->sched, it);
	sched_add(o->sched, &row);
	free(old);
	free(recipient);
	free(response);
	return OUTCOME_ADMIN_DONE;
}

static void deleted(void *arg, const struct sched_item *it)
{
	struct outcome *o = arg;
	struct queue_events evs = {0};
	struct event e = {
	    .type = EVENT_DROPPED,
	    .id = it->id,
	    .seq = it->seq,
	    .zone = sched_item_zone(it),
	    .recipient = it->recipient,
	    .response = "deleted through the API",
	};
	events_add(o->queue, o->cfg, &evs, &e);
	persist_finish(o, it, &evs);
	log_msg(LOG_LEVEL_INFO, it->id, "deleted", "seq=%03x rcpt=<%s>", it->seq, it->recipient);
}

size_t outcome_delete(struct outcome *o, const char *id, unsigned seq)
{
	return sched_cancel(o->sched, id, seq, deleted, o);
}
