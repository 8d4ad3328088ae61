/* SPDX-License-Identifier: EUPL-1.2 */
/* Delivery status notifications to senders; see notice.h. */
#include "outcome/notice.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/utf8.h"
#include "core/xmalloc.h"
#include "msg/header.h"

/* One recipient of a notice. */
struct notice_rcpt {
	struct sched_item *held; /* failed, relayed: the item, until written */
	unsigned seq;
	char *recipient, *zone, *domain;
	bool was_deferred;
	char *status, *remote_mta, *diagnostic;
	int64_t last_attempt_ms, retry_until_ms;
	struct queue_events events; /* written with the removal of its row */
};

/* The notice of one kind about one message, gathering, then read and written. */
struct notice {
	struct notices *owner;
	enum dsn_kind kind;
	char id[QUEUE_ID_LEN + 1];
	char key[QUEUE_ID_LEN + 4]; /* in `gathering`: id and kind */
	struct notice_rcpt *rcpts;
	size_t n, cap;
	uint64_t read_req;          /* while reading the original */
	struct notice *prev, *next; /* in `reading` */
};

struct notices {
	const struct config *cfg;
	struct sched *sched;
	struct queue *queue;
	struct strmap *gathering; /* key → notice, until its transaction ends */
	struct notice *reading;   /* reads of the original pending */
};

static const char *const kind_names[] = {
    [DSN_FAILED] = "failed", [DSN_DELAYED] = "delayed", [DSN_RELAYED] = "relayed"};

struct notices *notices_new(const struct config *cfg, struct sched *sched, struct queue *queue)
{
	struct notices *n = xcalloc(1, sizeof(*n));
	n->cfg = cfg;
	n->sched = sched;
	n->queue = queue;
	n->gathering = strmap_new();
	return n;
}

static void notice_free(struct notice *nt)
{
	for (size_t i = 0; i < nt->n; i++) {
		struct notice_rcpt *r = &nt->rcpts[i];
		free(r->recipient);
		free(r->zone);
		free(r->domain);
		free(r->status);
		free(r->remote_mta);
		free(r->diagnostic);
		queue_events_clear(&r->events);
	}
	free(nt->rcpts);
	free(nt);
}

void notices_add(struct notices *n, enum dsn_kind kind, struct sched_item *it,
		 const struct notice_info *info)
{
	char key[QUEUE_ID_LEN + 4];
	snprintf(key, sizeof(key), "%s:%d", it->id, (int)kind);
	struct notice *nt = strmap_get(n->gathering, key);
	if (nt == NULL) {
		nt = xcalloc(1, sizeof(*nt));
		nt->owner = n;
		nt->kind = kind;
		memcpy(nt->id, it->id, sizeof(nt->id));
		memcpy(nt->key, key, sizeof(key));
		strmap_put(n->gathering, nt->key, nt);
	}
	nt->rcpts = xreallocarray_grow(nt->rcpts, &nt->cap, nt->n + 1, sizeof(*nt->rcpts));
	nt->rcpts[nt->n++] = (struct notice_rcpt){
	    .held = kind == DSN_DELAYED ? NULL : it,
	    .seq = it->seq,
	    .recipient = xstrdup(it->recipient),
	    .zone = xstrdup(sched_item_zone(it)),
	    .domain = xstrdup(sched_item_domain(it)),
	    .was_deferred = it->deferred,
	    .status = info->status ? xstrdup(info->status) : NULL,
	    .remote_mta = info->remote_mta ? xstrdup(info->remote_mta) : NULL,
	    .diagnostic = info->diagnostic ? xstrdup(info->diagnostic) : NULL,
	    .last_attempt_ms = info->last_attempt_ms,
	    .retry_until_ms = info->retry_until_ms,
	};
	if (info->events != NULL) {
		nt->rcpts[nt->n - 1].events = *info->events;
		memset(info->events, 0, sizeof(*info->events));
	}
}

/* The held items leave the schedule; with `finish` their rows go too
 * (no notice is sent), else the rows stay (tried again after a restart). */
static void release_held(struct notices *n, struct notice *nt, bool finish)
{
	for (size_t i = 0; i < nt->n; i++) {
		struct notice_rcpt *r = &nt->rcpts[i];
		if (r->held == NULL)
			continue;
		if (finish && !r->held->cancelled)
			queue_delivery_finish(n->queue, nt->id, r->seq, r->zone, r->domain,
					      r->was_deferred, &r->events);
		sched_item_done(n->sched, r->held);
		r->held = NULL;
	}
}

static void reading_unlink(struct notices *n, struct notice *nt)
{
	*(nt->prev ? &nt->prev->next : &n->reading) = nt->next;
	if (nt->next)
		nt->next->prev = nt->prev;
	nt->prev = nt->next = NULL;
}

/* --- whether a DSN may be sent (RFC 3461, RFC 3834, ZoneMTA's rules) --- */

static bool notify_has(const char *notify, const char *word)
{
	return notify != NULL && strcasestr(notify, word) != NULL;
}

/* Whether this recipient's NOTIFY asks for a notice of this kind (RFC
 * 3461 4.1: without NOTIFY, failures and delays are reported). */
static bool recipient_wants(enum dsn_kind kind, const char *notify)
{
	switch (kind) {
	case DSN_FAILED:
		return notify == NULL || notify_has(notify, "FAILURE");
	case DSN_DELAYED:
		return notify == NULL || notify_has(notify, "DELAY");
	case DSN_RELAYED:
		return notify_has(notify, "SUCCESS");
	}
	return false;
}

static const char *header_value(const struct header_list *h, const char *key)
{
	int i = header_list_find(h, key);
	return i >= 0 ? h->items[i].value : NULL;
}

/* Why no notice may go for this message at all, or NULL. */
static const char *message_refuses(const struct config *cfg, json_t *meta,
				   const struct header_list *h)
{
	const char *from = json_string_value(json_object_get(meta, "from"));
	if (from == NULL || from[0] == '\0')
		return "null sender";
	const char *at = strrchr(from, '@');
	size_t local = at ? (size_t)(at - from) : strlen(from);
	if (local == strlen("mailer-daemon") && strncasecmp(from, "mailer-daemon", local) == 0)
		return "mailer-daemon sender";
	const char *iface = json_string_value(json_object_get(meta, "interface"));
	for (size_t i = 0; iface != NULL && i < cfg->bounces.n_disable_interfaces; i++)
		if (strcmp(iface, cfg->bounces.disable_interfaces[i]) == 0)
			return "interface in bounces.disableInterfaces";
	const char *auto_submitted = header_value(h, "auto-submitted");
	if (auto_submitted != NULL && strncasecmp(auto_submitted, "no", 2) != 0)
		return "Auto-Submitted";
	const char *type = header_value(h, "content-type");
	if (type != NULL && strncasecmp(type, "multipart/report", 16) == 0)
		return "multipart/report";
	const char *precedence = header_value(h, "precedence");
	for (size_t i = 0; precedence != NULL && i < cfg->bounces.n_skip_precedence; i++)
		if (strcasecmp(precedence, cfg->bounces.skip_precedence[i]) == 0)
			return "Precedence";
	return NULL;
}

/* --- the notice as a message --- */

static char *lower_dup(const char *s)
{
	char *d = xstrdup(s);
	for (char *p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

/* Splits the composed notice into the header block (its fields) and the
 * body (from the empty line on), as ingest stores a message. */
static size_t header_split(const char *msg, size_t len)
{
	for (size_t i = 0; i + 3 < len; i++)
		if (memcmp(msg + i, "\r\n\r\n", 4) == 0)
			return i + 2;
	return len;
}

static void written(void *arg, int rc, const char *error)
{
	char *ids = arg; /* "original dsn" */
	if (rc != 0)
		log_error("dsn_failed", "ids=\"%s\" error=\"%s\"", ids, error ? error : "?");
	free(ids);
}

/* Composes and queues the notice for the recipients in `rs`. */
static void send_notice(struct notices *n, struct notice *nt, const struct queue_message *msg,
			const struct header_list *h, struct dsn_recipient *rs, size_t nrs)
{
	const struct config *cfg = n->cfg;
	json_t *meta = msg->meta;
	const char *from = json_string_value(json_object_get(meta, "from"));
	json_t *dsn = json_object_get(meta, "dsn");
	const char *ret = json_string_value(json_object_get(dsn, "ret"));
	/* The whole message only for a failure with RET=FULL, when it is
	 * small enough (and so in chunk 0); else its header. */
	const char *body = NULL;
	size_t body_len = 0;
	json_int_t size = json_integer_value(json_object_get(meta, "bodySize"));
	if (nt->kind == DSN_FAILED && ret != NULL && strcasecmp(ret, "FULL") == 0 &&
	    msg->body != NULL && (uint64_t)size == msg->body_len &&
	    msg->header_len + msg->body_len <= cfg->bounces.return_size_limit) {
		body = msg->body;
		body_len = msg->body_len;
		/* The stored body starts with the empty line after the header. */
		if (body_len >= 2 && memcmp(body, "\r\n", 2) == 0) {
			body += 2;
			body_len -= 2;
		} else if (body_len >= 1 && body[0] == '\n') {
			body++;
			body_len--;
		}
	}
	char dsn_id[QUEUE_ID_LEN + 1];
	queue_id_new(n->queue, dsn_id);
	char *message_id = xasprintf("%s@%s", dsn_id, cfg->hostname);
	int64_t now = clock_wall_ms();
	const struct dsn_template *tpl = config_dsn_template(cfg, (int)nt->kind,
							     header_value(h, "content-language"));
	struct dsn_report rep = {
	    .kind = nt->kind,
	    .reporting_mta = cfg->hostname,
	    .from_name = cfg->bounces.mailer_daemon_name,
	    .from_address = cfg->bounces.mailer_daemon_address,
	    .to = from,
	    .envid = json_string_value(json_object_get(dsn, "envid")),
	    .message_id = message_id,
	    .original_message_id = json_string_value(json_object_get(meta, "messageId")),
	    .original_subject = header_value(h, "subject"),
	    .template_text = tpl ? tpl->text : NULL,
	    .template_subject = tpl ? tpl->subject : NULL,
	    .arrival_ms = json_integer_value(json_object_get(meta, "time")),
	    .now_ms = now,
	    .rcpts = rs,
	    .nrcpts = nrs,
	    .header_block = msg->header_block,
	    .header_len = msg->header_len,
	    .body = body,
	    .body_len = body_len,
	};
	size_t len;
	char *text = dsn_compose(&rep, &len);
	size_t hlen = header_split(text, len);

	const char *at = strrchr(from, '@');
	char *domain = lower_dup(at ? at + 1 : "");
	bool utf8 = utf8_has_8bit(from, strlen(from));
	char *mid = xasprintf("<%s>", message_id);
	json_t *dmeta = json_pack(
	    "{s:s, s:s, s:s, s:[s], s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:b, s:i, "
	    "s:{s:s, s:n}, s:{s:s, s:s}}",
	    "id", dsn_id, "interface", "bounce", "from", "", "to", from, "origin", "", "originhost",
	    "", "transhost", "", "transtype", "DSN", "messageId", mid, "time", (json_int_t)now,
	    "created", (json_int_t)now, "nextAttempt", (json_int_t)0, "bodyType",
	    utf8_has_8bit(text, len) ? "8BITMIME" : "7BIT", "smtputf8", utf8, "longLines", 0,
	    "dkim", "hashAlgo", "sha256", "bodyHash", "notice", "kind", kind_names[nt->kind], "of",
	    nt->id);
	if (dmeta == NULL)
		fatal("notice: cannot encode the metadata of a DSN");
	struct queue_delivery dlv = {config_zone(cfg, cfg->bounces.sending_zone)->name, from,
				     domain, now};
	struct queue_finished *fin = xcalloc(nt->n, sizeof(*fin));
	size_t nfin = 0;
	struct queue_events evs = {0};
	for (size_t i = 0; i < nt->n; i++) {
		struct notice_rcpt *r = &nt->rcpts[i];
		if (r->held == NULL || r->held->cancelled)
			continue;
		fin[nfin++] = (struct queue_finished){nt->id, r->seq, r->zone, r->domain,
						      r->was_deferred};
		queue_events_move(&evs, &r->events);
	}
	stats_add(STATS_DSN_QUEUED, kind_names[nt->kind], 1);
	log_msg(LOG_LEVEL_INFO, nt->id, "dsn_queued", "kind=%s dsn=%s to=<%s> rcpts=%zu%s",
		kind_names[nt->kind], dsn_id, from, nrs, body != NULL ? " ret=full" : "");
	queue_notice_commit(n->queue, dsn_id, dmeta, text, hlen, text + hlen, len - hlen, &dlv, fin,
			    nfin, &evs, written, xasprintf("%s %s", nt->id, dsn_id));
	/* The rows are gone with that write (or, if it fails, the store is
	 * out of service and they are there after the restart). */
	for (size_t i = 0; i < nt->n; i++) {
		struct notice_rcpt *r = &nt->rcpts[i];
		if (r->held != NULL)
			sched_item_done(n->sched, r->held);
		r->held = NULL;
	}
	free(fin);
	free(mid);
	free(domain);
	free(text);
	free(message_id);
}

static void original_read(void *arg, int rc, struct queue_message *msg)
{
	struct notice *nt = arg;
	struct notices *n = nt->owner;
	reading_unlink(n, nt);
	if (rc == 0 && nt->kind == DSN_DELAYED) {
		/* Its other deliveries finished meanwhile: nothing to say. */
		notice_free(nt);
		return;
	}
	if (rc != 1) {
		/* Unreadable: no notice.  A store that fails reads is out of
		 * service; the rows stay for the restart, to be tried again. */
		log_msg(LOG_LEVEL_ERROR, nt->id, "dsn_failed", "kind=%s error=\"%s\"",
			kind_names[nt->kind], rc == 0 ? "message not found" : "store read failed");
		release_held(n, nt, rc == 0);
		notice_free(nt);
		return;
	}
	struct header_list h = {0};
	header_list_parse(&h, msg->header_block, msg->header_len);
	const char *refused = message_refuses(n->cfg, msg->meta, &h);
	json_t *dsn_rcpts = json_object_get(json_object_get(msg->meta, "dsn"), "rcpts");
	struct dsn_recipient *rs = xcalloc(nt->n, sizeof(*rs));
	size_t nrs = 0;
	for (size_t i = 0; refused == NULL && i < nt->n; i++) {
		struct notice_rcpt *r = &nt->rcpts[i];
		if (r->held != NULL && r->held->cancelled)
			continue; /* deleted meanwhile */
		json_t *d = json_object_get(dsn_rcpts, r->recipient);
		if (!recipient_wants(nt->kind, json_string_value(json_object_get(d, "notify"))))
			continue;
		rs[nrs++] = (struct dsn_recipient){
		    .recipient = r->recipient,
		    .orcpt = json_string_value(json_object_get(d, "orcpt")),
		    .status = r->status,
		    .remote_mta = r->remote_mta,
		    .diagnostic = r->diagnostic,
		    .last_attempt_ms = r->last_attempt_ms,
		    .will_retry_until_ms = r->retry_until_ms,
		};
	}
	if (refused == NULL && nrs == 0)
		refused = "NOTIFY";
	if (refused != NULL) {
		log_msg(LOG_LEVEL_INFO, nt->id, "dsn_skipped", "kind=%s reason=\"%s\"",
			kind_names[nt->kind], refused);
		release_held(n, nt, true);
	} else {
		send_notice(n, nt, msg, &h, rs, nrs);
	}
	free(rs);
	header_list_clear(&h);
	notice_free(nt);
}

/* Reads the original for notice `key`, if one is gathering. */
static void start_reading(struct notices *n, const char *key)
{
	struct notice *nt = strmap_remove(n->gathering, key);
	if (nt == NULL)
		return;
	nt->next = n->reading;
	if (n->reading)
		n->reading->prev = nt;
	n->reading = nt;
	nt->read_req = queue_message_load(n->queue, nt->id, 0, 0, original_read, nt);
}

void notices_batch_end(struct notices *n, const char *id)
{
	for (int kind = DSN_FAILED; kind <= DSN_RELAYED; kind++) {
		char key[QUEUE_ID_LEN + 4];
		snprintf(key, sizeof(key), "%s:%d", id, kind);
		start_reading(n, key);
	}
}

void notices_shutdown(struct notices *n)
{
	if (n == NULL)
		return;
	size_t pos = 0;
	const char *key;
	void *v;
	while (strmap_next(n->gathering, &pos, &key, &v)) {
		release_held(n, v, false);
		notice_free(v);
	}
	strmap_free(n->gathering);
	n->gathering = strmap_new();
	while (n->reading != NULL) {
		struct notice *nt = n->reading;
		reading_unlink(n, nt);
		queue_request_cancel(n->queue, nt->read_req);
		release_held(n, nt, false);
		notice_free(nt);
	}
}

void notices_free(struct notices *n)
{
	if (n == NULL)
		return;
	/* notices_shutdown left nothing pending. */
	strmap_free(n->gathering);
	free(n);
}
