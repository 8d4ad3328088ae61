/* SPDX-License-Identifier: EUPL-1.2 */
/* Streaming ingest: header block, body chunks, rewriting, routing, commit; see ingest.h. */
#include "msg/ingest.h"

#include <ctype.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/utf8.h"
#include "core/xmalloc.h"
#include "dkim/dkim.h"
#include "hook/hook.h"
#include "msg/header.h"
#include "queue/events.h"
#include "version.h"
#include "zone/route.h"

struct ingest {
	struct queue *q;
	const struct config *cfg;
	char id[QUEUE_ID_LEN + 1];
	struct queue_body *body;
	/* DKIM body hashes, fed as the body streams (RFC 6376 3.7) */
	struct dkim_body *hash_relaxed, *hash_simple;
	/* the header block while it is being collected */
	char *head;
	size_t head_len, head_cap, head_scan;
	bool head_done;
	bool head_too_big;
	struct header_list headers;
	uint64_t size;
	/* what the content needs (see ingest.h) */
	bool body_8bit;
	uint64_t long_lines;
	size_t line_len; /* octets of the body line in progress */
	int64_t received_ms;
	ingest_done_cb cb;
	void *cb_arg;

	/* from ingest_finish on: the envelope (a copy), the hook points passed
	 * (see next_point) and the routing of each recipient */
	struct ingest_envelope env;
	enum {
		INGEST_AT_START,
		INGEST_AT_HEADERS,
		INGEST_AT_STORE,
		INGEST_AT_ROUTE,
		INGEST_AT_QUEUE,
	} stage;
	enum hook_point point; /* the one running */
	struct hook_ctx hook_ctx;
	uint64_t hook_id;
	bool hook_sync; /* inside hook_run(): an answer now is synchronous */
	int refusal_rc; /* INGEST_REJECTED or INGEST_DEFERRED once a hook refused */
	char *refusal;  /* its reply, or NULL */
	char *header_zone;
	const struct zone_config *msg_zone; /* the zone for all, or NULL */
	const char *msg_rule, *route_rule;
	const char *route_zone; /* the zone queue:route sees and may change */
	const char *hook_zone;  /* the zone a message:* handler named, or NULL */
	json_t *hook_meta;      /* members message:* handlers add to the metadata */
	size_t route_next;      /* the next envelope recipient to route */
	struct strmap *seen;
	bool envelope_utf8;
	struct queue_delivery *dlv;
	char **domains;
	size_t ndlv;
	char *date;

	/* kept for the log line once the commit is durable */
	size_t nrcpts;
	char *zones_used;
	int64_t delayed_until;
	char *message_id;
};

static struct dkim_body *body_hash_new(enum dkim_canon canon)
{
	struct dkim_body *b = dkim_body_new(canon);
	dkim_body_skip_separator(b);
	return b;
}

struct ingest *ingest_new(struct queue *q, const struct config *cfg, void (*on_drain)(void *arg),
			  void *arg)
{
	struct ingest *in = xcalloc(1, sizeof(*in));
	in->q = q;
	in->cfg = cfg;
	queue_id_new(q, in->id);
	in->body = queue_body_new(q, in->id, on_drain, arg);
	in->received_ms = clock_wall_ms();
	/* Only the hashes a configured key will sign with; any other is made at
	 * delivery if a key appears by then (queue_message_load). */
	unsigned canons = cfg->dkim_enabled ? config_dkim_canons(cfg) : 0;
	/* Keys from the config server sign relaxed/relaxed. */
	if (cfg->dkim_enabled && cfg->http_config.url != NULL)
		canons |= 1u << DKIM_CANON_RELAXED;
	if (canons & (1u << DKIM_CANON_RELAXED))
		in->hash_relaxed = body_hash_new(DKIM_CANON_RELAXED);
	if (canons & (1u << DKIM_CANON_SIMPLE))
		in->hash_simple = body_hash_new(DKIM_CANON_SIMPLE);
	return in;
}

const char *ingest_id(const struct ingest *in)
{
	return in->id;
}

const char *ingest_message_id(const struct ingest *in)
{
	return in->message_id;
}

/* Counts the lines of p[0..n) longer than 998 octets before their CRLF. */
static void count_long_lines(uint64_t *count, size_t *line_len, const char *p, size_t n)
{
	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		size_t k = lf ? (size_t)(lf - p) + 1 : n;
		*line_len += k;
		if (lf != NULL) {
			if (*line_len > 998 + 2)
				(*count)++;
			*line_len = 0;
		}
		p += k;
		n -= k;
	}
}

/* Body bytes go to the store and, past the empty line that separates them
 * from the headers, to the DKIM body hashes. */
static void body_write(struct ingest *in, const char *data, size_t len)
{
	if (!in->body_8bit)
		in->body_8bit = utf8_has_8bit(data, len);
	count_long_lines(&in->long_lines, &in->line_len, data, len);
	queue_body_write(in->body, data, len);
	if (in->hash_relaxed != NULL)
		dkim_body_update(in->hash_relaxed, data, len);
	if (in->hash_simple != NULL)
		dkim_body_update(in->hash_simple, data, len);
}

bool ingest_busy(const struct ingest *in)
{
	return queue_body_busy(in->body);
}

uint64_t ingest_size(const struct ingest *in)
{
	return in->size;
}

/* The header block is complete: parse it and send what follows to the body. */
static void head_complete(struct ingest *in, size_t end)
{
	header_list_parse(&in->headers, in->head, end);
	in->head_done = true;
	if (in->head_len > end) {
		const char *rest = in->head + end;
		/* A body that starts without the empty line (the headers ended at
		 * a line that is no field) gets one: otherwise its first line
		 * would read as a broken header field after ours. */
		if (rest[0] != '\n' && rest[0] != '\r')
			body_write(in, "\r\n", 2);
		body_write(in, rest, in->head_len - end);
	}
	in->head_len = end;
}

int ingest_write(struct ingest *in, const char *data, size_t len)
{
	if (in->head_too_big)
		return -1;
	in->size += len;
	if (in->head_done) {
		body_write(in, data, len);
		return 0;
	}
	in->head = xreallocarray_grow(in->head, &in->head_cap, in->head_len + len, 1);
	memcpy(in->head + in->head_len, data, len);
	in->head_len += len;
	size_t end;
	if (header_block_end(in->head, in->head_len, false, &in->head_scan, &end)) {
		if (end > HEADER_BLOCK_MAX) {
			in->head_too_big = true;
			return -1;
		}
		head_complete(in, end);
	} else if (in->head_len > HEADER_BLOCK_MAX) {
		in->head_too_big = true;
		return -1;
	}
	return 0;
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : NULL;
}

/* True when `rcpt` is in `seen` already, else it is added: the local part
 * compared exactly, the domain without regard to case (RFC 5321 2.4). */
static bool rcpt_seen(struct strmap *seen, const char *rcpt)
{
	char *key = xstrdup(rcpt);
	char *at = strrchr(key, '@');
	for (char *p = at; p != NULL && *p; p++)
		*p = (char)tolower((unsigned char)*p);
	bool dup = strmap_get(seen, key) != NULL;
	if (!dup)
		strmap_put(seen, key, seen);
	free(key);
	return dup;
}

static char *lower_dup(const char *s)
{
	char *d = xstrdup(s);
	for (char *p = d; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

/* An address of this host (127.0.0.0/8, ::1), or not an address at all. */
static bool is_loopback(const char *origin)
{
	struct in_addr a4;
	struct in6_addr a6;
	if (origin == NULL || inet_pton(AF_INET, origin, &a4) == 1)
		return origin == NULL || (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, origin, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return true;
}

/* The DSN request (RFC 3461) for the metadata: {ret, envid, rcpts:
 * {recipient: {notify, orcpt}}} with what was given, or NULL for none.
 * A duplicate recipient keeps its first request, as it keeps its first
 * place. */
static json_t *dsn_meta(const struct ingest_envelope *env)
{
	json_t *rcpts = json_object();
	for (size_t i = 0; env->dsn_rcpts != NULL && i < env->nrcpts; i++) {
		const struct ingest_dsn_rcpt *d = &env->dsn_rcpts[i];
		if ((d->notify == NULL && d->orcpt == NULL) ||
		    json_object_get(rcpts, env->rcpts[i]) != NULL)
			continue;
		json_t *r = json_object();
		if (d->notify != NULL)
			json_object_set_new(r, "notify", json_string(d->notify));
		if (d->orcpt != NULL)
			json_object_set_new(r, "orcpt", json_string(d->orcpt));
		json_object_set_new(rcpts, env->rcpts[i], r);
	}
	if (env->dsn_ret == NULL && env->dsn_envid == NULL && json_object_size(rcpts) == 0) {
		json_decref(rcpts);
		return NULL;
	}
	json_t *dsn = json_object();
	if (env->dsn_ret != NULL)
		json_object_set_new(dsn, "ret", json_string(env->dsn_ret));
	if (env->dsn_envid != NULL)
		json_object_set_new(dsn, "envid", json_string(env->dsn_envid));
	json_object_set_new(dsn, "rcpts", rcpts);
	return dsn;
}

/* Adds X-Originating-IP and Received: at the top, Message-ID/Date at the
 * end when missing. */
static void rewrite_headers(struct ingest *in, const struct ingest_envelope *env, char **message_id,
			    char **date)
{
	char now[64];
	header_date_format((time_t)(in->received_ms / 1000), now, sizeof(now));

	int mid = header_list_find(&in->headers, "message-id");
	if (mid < 0) {
		char *value = xasprintf("<%s@%s>", in->id, env->received_by);
		header_list_insert(&in->headers, in->headers.count, "Message-ID", value);
		free(value);
		mid = (int)in->headers.count - 1;
	}
	*message_id = xstrdup(in->headers.items[mid].value);

	int dh = header_list_find(&in->headers, "date");
	if (dh < 0) {
		header_list_insert(&in->headers, in->headers.count, "Date", now);
		dh = (int)in->headers.count - 1;
	}
	*date = xstrdup(in->headers.items[dh].value);

	/* ZoneMTA's default-headers: the client's address for a message that
	 * did not come from this host, replacing any the client wrote. */
	if (!is_loopback(env->origin)) {
		header_list_remove(&in->headers, "x-originating-ip");
		char *value = xasprintf("[%s]", env->origin);
		header_list_insert(&in->headers, 0, "X-Originating-IP", value);
		free(value);
	}

	/* RFC 5321 4.4: a trace field at the top.  "for" only with one
	 * recipient, so a message does not disclose its other recipients. */
	char *forpart = env->nrcpts == 1 ? xasprintf("\r\n\tfor <%s>", env->rcpts[0]) : xstrdup("");
	char *tls = env->tls ? xasprintf("\r\n\t(using %s)", env->tls) : xstrdup("");
	char *received = xasprintf(
	    "from %s ([%s])%s\r\n\tby %s (zone-mta) with %s id %s%s;\r\n\t%s",
	    env->transhost && *env->transhost ? env->transhost : "unknown", env->origin, tls,
	    env->received_by, env->transtype, in->id, forpart, now);
	free(tls);
	header_list_insert(&in->headers, 0, "Received", received);
	free(received);
	free(forpart);
}

/* When the message should first be tried: now, or its future Date:. */
static int64_t first_attempt(const struct ingest *in, const char *date)
{
	const struct queue_config *qc = &in->cfg->queue;
	time_t t;
	if (!qc->future_date || header_date_parse(date, &t) != 0)
		return in->received_ms;
	int64_t when = (int64_t)t * 1000;
	if (when <= in->received_ms + (int64_t)qc->future_date_skew_ms)
		return in->received_ms;
	int64_t latest = in->received_ms + (int64_t)qc->max_delay_ms;
	return when < latest ? when : latest;
}

/* A JSON string of client-supplied text, which may be any bytes. */
static json_t *text_value(const char *s)
{
	char *clean = utf8_sanitize(s, strlen(s));
	json_t *v = json_string(clean);
	free(clean);
	return v;
}

static void set_text(json_t *obj, const char *key, const char *s)
{
	json_object_set_new(obj, key, text_value(s));
}

static void commit_done(void *arg, int rc, const char *error)
{
	struct ingest *in = arg;
	if (rc == 0) {
		char delayed[80] = "";
		if (in->delayed_until > in->received_ms)
			snprintf(delayed, sizeof(delayed), " delayed_until=%lld",
				 (long long)(in->delayed_until / 1000));
		log_msg(LOG_LEVEL_INFO, in->id, "queued",
			"from=<%s> rcpts=%zu size=%llu zones=%s%s", in->env.from, in->nrcpts,
			(unsigned long long)in->size, in->zones_used, delayed);
	} else {
		log_msg(LOG_LEVEL_ERROR, in->id, "store_failed", "error=\"%s\"", error);
	}
	in->cb(in->cb_arg, rc, error);
}

/* Appends `name` to a comma-separated list unless already there. */
static void list_add(char **list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = *list; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && memcmp(p, name, n) == 0)
			return;
		p = comma ? comma + 1 : p + len;
	}
	char *joined = xasprintf("%s%s%s", *list ? *list : "", *list ? "," : "", name);
	free(*list);
	*list = joined;
}

/* The envelope, copied: the caller's strings may go before the hooks answer. */
static void envelope_copy(struct ingest_envelope *dst, const struct ingest_envelope *src)
{
	*dst = *src;
	dst->interface = xstrdup(src->interface);
	dst->origin = xstrdup(src->origin);
	dst->transhost = src->transhost ? xstrdup(src->transhost) : NULL;
	dst->transtype = xstrdup(src->transtype);
	dst->user = src->user ? xstrdup(src->user) : NULL;
	dst->tls = src->tls ? xstrdup(src->tls) : NULL;
	dst->from = xstrdup(src->from);
	dst->received_by = xstrdup(src->received_by);
	char **rcpts = xcalloc(src->nrcpts ? src->nrcpts : 1, sizeof(char *));
	for (size_t i = 0; i < src->nrcpts; i++)
		rcpts[i] = xstrdup(src->rcpts[i]);
	dst->rcpts = rcpts;
	dst->dsn_ret = src->dsn_ret ? xstrdup(src->dsn_ret) : NULL;
	dst->dsn_envid = src->dsn_envid ? xstrdup(src->dsn_envid) : NULL;
	dst->dsn_rcpts = NULL;
	if (src->dsn_rcpts != NULL) {
		struct ingest_dsn_rcpt *d = xcalloc(src->nrcpts ? src->nrcpts : 1, sizeof(*d));
		for (size_t i = 0; i < src->nrcpts; i++) {
			d[i].notify = src->dsn_rcpts[i].notify ? xstrdup(src->dsn_rcpts[i].notify)
							       : NULL;
			d[i].orcpt = src->dsn_rcpts[i].orcpt ? xstrdup(src->dsn_rcpts[i].orcpt)
							     : NULL;
		}
		dst->dsn_rcpts = d;
	}
}

static void envelope_free(struct ingest_envelope *env)
{
	free((char *)env->interface);
	free((char *)env->origin);
	free((char *)env->transhost);
	free((char *)env->transtype);
	free((char *)env->user);
	free((char *)env->tls);
	free((char *)env->from);
	free((char *)env->received_by);
	for (size_t i = 0; i < env->nrcpts; i++) {
		free(env->rcpts[i]);
		if (env->dsn_rcpts != NULL) {
			free((char *)env->dsn_rcpts[i].notify);
			free((char *)env->dsn_rcpts[i].orcpt);
		}
	}
	free((char **)env->rcpts);
	free((void *)env->dsn_rcpts);
	free((char *)env->dsn_ret);
	free((char *)env->dsn_envid);
	memset(env, 0, sizeof(*env));
}

/* Routes envelope recipient in->route_next (unless a duplicate): its zone
 * goes to in->route_zone for queue:route to see.  False when none is left. */
static bool route_one(struct ingest *in)
{
	const struct ingest_envelope *env = &in->env;
	while (in->route_next < env->nrcpts) {
		const char *rcpt = env->rcpts[in->route_next++];
		if (rcpt_seen(in->seen, rcpt)) {
			log_msg(LOG_LEVEL_INFO, in->id, "duplicate_rcpt",
				"rcpt=<%s> action=dropped", rcpt);
			continue;
		}
		in->envelope_utf8 = in->envelope_utf8 || utf8_has_8bit(rcpt, strlen(rcpt));
		size_t n = in->ndlv;
		in->domains[n] = lower_dup(domain_of(rcpt));
		in->route_rule = in->msg_rule;
		const struct zone_config *z = in->msg_zone
						  ? in->msg_zone
						  : route_recipient_zone(in->cfg, in->domains[n],
									 &in->route_rule);
		in->route_zone = z->name;
		in->dlv[n] = (struct queue_delivery){z->name, rcpt, in->domains[n],
						     in->delayed_until};
		in->ndlv++;
		return true;
	}
	return false;
}

/* After queue:route: the zone a handler chose, when it is one. */
static void route_take(struct ingest *in)
{
	struct queue_delivery *d = &in->dlv[in->ndlv - 1];
	if (in->route_zone != d->zone) {
		const struct zone_config *z = config_zone(in->cfg, in->route_zone);
		if (z != NULL) {
			d->zone = z->name;
			in->route_rule = "hook";
		} else {
			log_msg(LOG_LEVEL_WARN, in->id, "route",
				"rcpt=<%s> zone=%s action=ignored "
				"reason=\"queue:route chose no such zone\"",
				d->recipient, in->route_zone);
		}
	}
	list_add(&in->zones_used, d->zone);
	log_msg(LOG_LEVEL_DEBUG, in->id, "route", "seq=%03zx rcpt=<%s> zone=%s rule=%s", in->ndlv,
		d->recipient, d->zone, in->route_rule);
}

static void commit(struct ingest *in)
{
	const struct ingest_envelope *env = &in->env;
	size_t ndlv = in->ndlv;
	struct queue_delivery *dlv = in->dlv;
	size_t hlen = header_list_raw_size(&in->headers);
	char *block = xmalloc(hlen + 1);
	header_list_serialize(&in->headers, block);

	json_t *meta = json_object();
	set_text(meta, "id", in->id);
	set_text(meta, "interface", env->interface);
	set_text(meta, "from", env->from);
	json_t *to = json_array();
	for (size_t i = 0; i < ndlv; i++)
		json_array_append_new(to, text_value(dlv[i].recipient));
	json_object_set_new(meta, "to", to);
	set_text(meta, "origin", env->origin);
	char *originhost = xasprintf("[%s]", env->origin);
	set_text(meta, "originhost", originhost);
	free(originhost);
	set_text(meta, "transhost", env->transhost ? env->transhost : "");
	set_text(meta, "transtype", env->transtype);
	if (env->user != NULL)
		set_text(meta, "user", env->user);
	json_t *dsn = dsn_meta(env);
	if (dsn != NULL)
		json_object_set_new(meta, "dsn", dsn);
	set_text(meta, "messageId", in->message_id);
	set_text(meta, "date", in->date);
	json_object_set_new(meta, "time", json_integer((json_int_t)in->received_ms));
	json_object_set_new(meta, "created", json_integer((json_int_t)clock_wall_ms()));
	json_object_set_new(meta, "nextAttempt", json_integer((json_int_t)in->delayed_until));
	/* What relaying needs, from the content (see ingest.h). */
	bool header_8bit = utf8_has_8bit(block, hlen);
	bool header_utf8 = header_8bit && utf8_valid(block, hlen);
	uint64_t long_lines = in->long_lines + (in->line_len > 998 ? 1 : 0);
	size_t hline = 0;
	count_long_lines(&long_lines, &hline, block, hlen);
	json_object_set_new(
	    meta, "bodyType",
	    json_string(in->body_8bit || (header_8bit && !header_utf8) ? "8BITMIME" : "7BIT"));
	json_object_set_new(meta, "smtputf8", json_boolean(in->envelope_utf8 || header_utf8));
	json_object_set_new(meta, "longLines", json_integer((json_int_t)long_lines));
	json_t *dkim = json_pack("{s:s, s:n}", "hashAlgo", "sha256", "bodyHash");
	char hash[45];
	if (in->hash_relaxed != NULL) {
		dkim_body_final(in->hash_relaxed, hash);
		json_object_set_new(dkim, "bodyHash", json_string(hash));
	}
	if (in->hash_simple != NULL) {
		dkim_body_final(in->hash_simple, hash);
		json_object_set_new(dkim, "bodyHashSimple", json_string(hash));
	}
	json_object_set_new(meta, "dkim", dkim);
	/* What handlers added (never over the fields above). */
	const char *key;
	json_t *value;
	json_object_foreach (in->hook_meta, key, value) {
		if (json_object_get(meta, key) == NULL)
			json_object_set(meta, key, value);
	}

	in->nrcpts = ndlv;
	struct queue_events evs = {0};
	for (size_t i = 0; i < ndlv && events_wanted(in->cfg, EVENT_QUEUED); i++) {
		struct event e = {
		    .type = EVENT_QUEUED,
		    .id = in->id,
		    .seq = (unsigned)(i + 1),
		    .zone = dlv[i].zone,
		    .recipient = dlv[i].recipient,
		    .meta = meta,
		    .headers = &in->headers,
		    .next_attempt = dlv[i].next_attempt,
		};
		events_add(in->q, in->cfg, &evs, &e);
	}
	/* The header block is stored in the metadata; the body in chunks.  The
	 * callback may run at once (a failed body) and free `in`: not a word
	 * about `in` after this call. */
	queue_message_commit(in->body, meta, block, hlen, dlv, ndlv, &evs, commit_done, in);
	free(block);
}

/* The rules that depend on the message alone, once the headers are as the
 * hooks left them. */
static void route_message(struct ingest *in)
{
	int xs = header_list_find(&in->headers, "x-sending-zone");
	if (xs >= 0 && in->env.allow_routing_headers)
		in->header_zone = lower_dup(in->headers.items[xs].value);
	header_list_remove(&in->headers, "x-sending-zone");
	const char *sender_domain = domain_of(in->env.from);
	char *sender_lower = sender_domain ? lower_dup(sender_domain) : NULL;
	struct route_message rm = {in->header_zone, &in->headers, sender_lower, in->env.user};
	const char *unknown;
	in->msg_zone = route_message_zone(in->cfg, &rm, &in->msg_rule, &unknown);
	if (in->hook_zone != NULL) {
		const struct zone_config *z = config_zone(in->cfg, in->hook_zone);
		if (z != NULL) {
			in->msg_zone = z;
			in->msg_rule = "hook";
		} else {
			log_msg(
			    LOG_LEVEL_WARN, in->id, "route",
			    "zone=%s action=ignored reason=\"a message hook chose no such zone\"",
			    in->hook_zone);
		}
	}
	if (unknown != NULL)
		log_msg(LOG_LEVEL_WARN, in->id, "route",
			"x_sending_zone=%s action=ignored reason=\"no such zone\"", unknown);
	free(sender_lower);
}

/* queue:route for the next recipient, or message:queue after the last. */
static bool next_route(struct ingest *in, enum hook_point *point)
{
	struct hook_ctx *ctx = &in->hook_ctx;
	if (route_one(in)) {
		ctx->address = in->dlv[in->ndlv - 1].recipient;
		ctx->zone = &in->route_zone;
		*point = HOOK_QUEUE_ROUTE;
		return true;
	}
	ctx->address = NULL;
	ctx->zone = NULL;
	in->stage = INGEST_AT_QUEUE;
	*point = HOOK_MESSAGE_QUEUE;
	return true;
}

/*
 * The hook points a message passes before its commit, in order:
 * message:headers, message:store, queue:route once per recipient,
 * message:queue.  Sets *point to the next one (preparing what it needs) and
 * returns true, or false when the message is ready to commit.
 */
static bool next_point(struct ingest *in, enum hook_point *point)
{
	switch (in->stage) {
	case INGEST_AT_START:
		in->stage = INGEST_AT_HEADERS;
		*point = HOOK_MESSAGE_HEADERS;
		return true;
	case INGEST_AT_HEADERS:
		in->stage = INGEST_AT_STORE;
		*point = HOOK_MESSAGE_STORE;
		return true;
	case INGEST_AT_STORE:
		in->hook_ctx.zone = NULL;
		route_message(in);
		in->stage = INGEST_AT_ROUTE;
		return next_route(in, point);
	case INGEST_AT_ROUTE:
		route_take(in);
		return next_route(in, point);
	case INGEST_AT_QUEUE:
		return false;
	}
	return false;
}

static void on_point_done(void *arg, const struct hook_result *res);

/* A message refused for good after its data came: the `rejected` event,
 * one per recipient, written on its own (there is no change of state). */
static void rejected_event(struct ingest *in, const char *reply)
{
	if (!events_wanted(in->cfg, EVENT_REJECTED))
		return;
	struct queue_events evs = {0};
	json_t *meta = json_pack("{s:s, s:s}", "from", in->env.from, "interface",
				 in->env.interface ? in->env.interface : "");
	for (size_t i = 0; i < in->env.nrcpts; i++) {
		struct event e = {
		    .type = EVENT_REJECTED,
		    .id = in->id,
		    .recipient = in->env.rcpts[i],
		    .meta = meta,
		    .headers = &in->headers,
		    .response = reply,
		};
		events_add(in->q, in->cfg, &evs, &e);
	}
	json_decref(meta);
	queue_events_write(in->q, &evs);
}

/* Runs the hook points one after another until one waits or all are done. */
static void advance(struct ingest *in)
{
	while (next_point(in, &in->point)) {
		in->hook_sync = true;
		uint64_t id = hook_run(in->point, &in->hook_ctx, on_point_done, in);
		in->hook_sync = false;
		if (in->refusal_rc != 0) {
			/* Refused at once: cb may free `in`. */
			in->cb(in->cb_arg, in->refusal_rc, in->refusal);
			return;
		}
		if (id != 0) {
			in->hook_id = id;
			return;
		}
	}
	commit(in);
}

static void on_point_done(void *arg, const struct hook_result *res)
{
	struct ingest *in = arg;
	in->hook_id = 0;
	if (res->verdict == HOOK_REJECT || res->verdict == HOOK_TEMPFAIL) {
		in->refusal_rc = res->verdict == HOOK_REJECT ? INGEST_REJECTED : INGEST_DEFERRED;
		in->refusal = res->reply ? xstrdup(res->reply) : NULL;
		log_msg(LOG_LEVEL_INFO, in->id, "refused", "hook=%s handler=%s reply=\"%s\"",
			hook_point_name(in->point), res->handler ? res->handler : "?",
			in->refusal ? in->refusal : "");
		if (in->refusal_rc == INGEST_REJECTED)
			rejected_event(in, in->refusal);
		if (!in->hook_sync)
			in->cb(in->cb_arg, in->refusal_rc, in->refusal);
		return;
	}
	if (!in->hook_sync)
		advance(in);
}

void ingest_finish(struct ingest *in, const struct ingest_envelope *env, ingest_done_cb cb,
		   void *arg)
{
	in->cb = cb;
	in->cb_arg = arg;
	envelope_copy(&in->env, env);
	if (!in->head_done) {
		size_t end = 0;
		header_block_end(in->head, in->head_len, true, &in->head_scan, &end);
		head_complete(in, end);
	}
	/* Bcc is for the envelope only (RFC 5322 3.6.3; Postfix removes it too). */
	header_list_remove(&in->headers, "bcc");
	rewrite_headers(in, &in->env, &in->message_id, &in->date);
	size_t hops = 0;
	for (size_t i = 0; i < in->headers.count; i++)
		hops += strcmp(in->headers.items[i].key, "received") == 0;
	if (hops > (size_t)in->cfg->max_hops) {
		in->refusal_rc = INGEST_REJECTED;
		in->refusal = xasprintf(
		    "554 5.4.6 Too many hops (%zu Received headers, at most %d): "
		    "delivery loop detected",
		    hops, in->cfg->max_hops);
		log_msg(LOG_LEVEL_INFO, in->id, "refused", "reason=loop hops=%zu", hops);
		rejected_event(in, in->refusal);
		cb(arg, in->refusal_rc, in->refusal); /* may free `in` */
		return;
	}
	in->delayed_until = first_attempt(in, in->date);
	in->envelope_utf8 = utf8_has_8bit(env->from, strlen(env->from));

	in->dlv = xcalloc(env->nrcpts ? env->nrcpts : 1, sizeof(*in->dlv));
	in->domains = xcalloc(env->nrcpts ? env->nrcpts : 1, sizeof(char *));
	in->seen = strmap_new();
	in->hook_ctx = (struct hook_ctx){
	    .interface = in->env.interface,
	    .client = in->env.origin,
	    .helo = in->env.transhost,
	    .user = in->env.user,
	    .from = in->env.from,
	    .rcpts = in->env.rcpts,
	    .nrcpts = in->env.nrcpts,
	    .queue_id = in->id,
	    .headers = &in->headers,
	    .ingest = in,
	    .size = in->size,
	    .session = in->env.session,
	    .zone = &in->hook_zone,
	    .meta = in->hook_meta = json_object(),
	};
	advance(in);
}

/* --- reading the message back (ingest.h) --- */

struct ingest_reader {
	struct ingest *in;
	char *head; /* the header block, serialized when the reader was made */
	size_t head_len, head_off;
	uint32_t next_chunk, nchunks;
	char *chunk; /* the chunk being read out */
	size_t chunk_len, chunk_off;
	bool written;    /* the chunks handed to the writer are in the store */
	size_t tail_off; /* in the bytes after the last chunk */
	bool failed;
	uint64_t req; /* a pending store request */
	void (*ready)(void *arg);
	void *arg;
};

struct ingest_reader *ingest_reader_new(struct ingest *in, void (*ready)(void *arg), void *arg)
{
	struct ingest_reader *r = xcalloc(1, sizeof(*r));
	r->in = in;
	r->head_len = header_list_raw_size(&in->headers);
	r->head = xmalloc(r->head_len + 1);
	header_list_serialize(&in->headers, r->head);
	r->nchunks = queue_body_chunks(in->body);
	r->ready = ready;
	r->arg = arg;
	return r;
}

uint64_t ingest_reader_size(const struct ingest_reader *r)
{
	return r->head_len + queue_body_size(r->in->body);
}

static void reader_written(void *arg, int rc, const char *error)
{
	struct ingest_reader *r = arg;
	(void)error;
	r->req = 0;
	r->written = true;
	r->failed = rc != 0;
	r->ready(r->arg);
}

static void reader_chunk(void *arg, int rc, const char *data, size_t len)
{
	struct ingest_reader *r = arg;
	r->req = 0;
	if (rc != 1) {
		r->failed = true;
	} else {
		r->chunk = xmalloc(len ? len : 1);
		memcpy(r->chunk, data, len);
		r->chunk_len = len;
		r->chunk_off = 0;
		r->next_chunk++;
	}
	r->ready(r->arg);
}

static size_t copy_out(char *buf, size_t len, const char *src, size_t n, size_t *off)
{
	size_t k = n - *off < len ? n - *off : len;
	memcpy(buf, src + *off, k);
	*off += k;
	return k;
}

ssize_t ingest_reader_read(struct ingest_reader *r, char *buf, size_t len)
{
	if (r->failed)
		return INGEST_READ_ERROR;
	if (r->req != 0)
		return INGEST_READ_WAIT;
	if (r->head_off < r->head_len)
		return (ssize_t)copy_out(buf, len, r->head, r->head_len, &r->head_off);
	if (r->chunk != NULL) {
		if (r->chunk_off < r->chunk_len)
			return (ssize_t)copy_out(buf, len, r->chunk, r->chunk_len, &r->chunk_off);
		free(r->chunk);
		r->chunk = NULL;
	}
	struct queue *q = r->in->q;
	if (r->next_chunk < r->nchunks) {
		/* Chunks go to the store unsynced as the body arrives: once the
		 * writer has done them, the reader thread sees them. */
		if (!r->written)
			r->req = queue_after_writes(q, reader_written, r);
		else
			r->req = queue_chunk_get(q, r->in->id, r->next_chunk, reader_chunk, r);
		return INGEST_READ_WAIT;
	}
	size_t n;
	const char *tail = queue_body_tail(r->in->body, &n);
	return (ssize_t)copy_out(buf, len, tail, n, &r->tail_off);
}

void ingest_reader_free(struct ingest_reader *r)
{
	if (r == NULL)
		return;
	if (r->req != 0)
		queue_request_cancel(r->in->q, r->req);
	free(r->head);
	free(r->chunk);
	free(r);
}

void ingest_free(struct ingest *in)
{
	if (in == NULL)
		return;
	queue_body_free(in->body);
	if (in->hash_relaxed != NULL)
		dkim_body_free(in->hash_relaxed);
	if (in->hash_simple != NULL)
		dkim_body_free(in->hash_simple);
	hook_cancel(in->hook_id);
	header_list_clear(&in->headers);
	free(in->head);
	free(in->zones_used);
	free(in->message_id);
	free(in->date);
	free(in->header_zone);
	json_decref(in->hook_meta);
	free(in->refusal);
	for (size_t i = 0; i < in->ndlv; i++)
		free(in->domains[i]);
	free(in->domains);
	free(in->dlv);
	strmap_free(in->seen);
	envelope_free(&in->env);
	free(in);
}
