/* SPDX-License-Identifier: EUPL-1.2 */
/* Webhooks: stored events to their endpoints; see webhook.h. */
#include "outcome/webhook.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/xmalloc.h"

/* The first retry waits this long; each failure doubles it. */
#define RETRY_FIRST_MS 1000
/* A dropped event is logged, then every this many more. */
#define DROP_LOG_EVERY 1000

struct pending_event {
	char *id;
	char *json;
	size_t len;
	struct pending_event *next;
};

struct endpoint {
	struct webhooks *owner;
	const struct webhook_config *cfg;
	struct pending_event *head, *tail; /* oldest first */
	size_t n;
	size_t sending;      /* the first `sending` events are in the POST in flight */
	uint64_t req;        /* that POST, 0: none */
	struct event *timer; /* a batch's max delay, or a retry */
	bool retrying;       /* the timer is a retry: no POST before it fires */
	int64_t first_wait;  /* monotonic ms since the head waits for a batch, 0: none */
	unsigned failures;   /* in a row */
	uint64_t dropped;
};

struct webhooks {
	const struct config *cfg;
	struct event_base *base;
	struct queue *queue;
	struct http_client *http;
	struct endpoint *ep;
	size_t n;
	uint64_t unknown; /* stored events of endpoints no longer configured */
};

static void pending_free(struct pending_event *p)
{
	free(p->id);
	free(p->json);
	free(p);
}

/* Wall-clock ms of an event, from its id (a queue id: 11 hex digits of ms). */
static int64_t event_ms(const char *id)
{
	char ms[12];
	memcpy(ms, id, 11);
	ms[11] = '\0';
	return (int64_t)strtoll(ms, NULL, 16);
}

static void gauges(struct endpoint *e)
{
	stats_set(STATS_WEBHOOK_PENDING, e->cfg->name, (int64_t)e->n);
	stats_set(STATS_WEBHOOK_OLDEST, e->cfg->name, e->head ? event_ms(e->head->id) : 0);
}

static void endpoint_send(struct endpoint *e);

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct endpoint *e = arg;
	/* A retry, or the batch's wait is over: either way, send what there is. */
	e->retrying = false;
	e->first_wait = 0;
	if (e->req == 0 && e->n > 0)
		endpoint_send(e);
}

static void arm(struct endpoint *e, uint64_t ms, bool retry)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	e->retrying = retry;
	evtimer_add(e->timer, &tv);
}

/* ZoneMTA's http-bounce body of one event. */
static char *form_body(const struct pending_event *p, size_t *len)
{
	json_t *ev = json_loadb(p->json, p->len, 0, NULL);
	size_t cap = p->len * 3 + 64;
	char *buf = xmalloc(cap);
	*len = 0;
	buf[0] = '\0';
	static const char *const fields[][2] = {
	    {"id", "id"},
	    {"to", "to"},
	    {"seq", "seq"},
	    {"returnPath", "from"},
	    {"category", "category"},
	    {"response", "response"},
	    {"fbl", "fbl"},
	    {"eventId", "eventId"},
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		http_form_append(&buf, len, &cap, fields[i][0],
				 json_string_value(json_object_get(ev, fields[i][1])));
	char time[24];
	snprintf(time, sizeof(time), "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(ev, "time")));
	http_form_append(&buf, len, &cap, "time", time);
	json_decref(ev);
	return buf;
}

/* The JSON array of the first n events. */
static char *json_body(const struct endpoint *e, size_t n, size_t *len)
{
	size_t total = 2;
	const struct pending_event *p = e->head;
	for (size_t i = 0; i < n; i++, p = p->next)
		total += p->len + 1;
	char *buf = xmalloc(total + 1), *w = buf;
	*w++ = '[';
	p = e->head;
	for (size_t i = 0; i < n; i++, p = p->next) {
		if (i > 0)
			*w++ = ',';
		memcpy(w, p->json, p->len);
		w += p->len;
	}
	*w++ = ']';
	*w = '\0';
	*len = (size_t)(w - buf);
	return buf;
}

static void posted(void *arg, const struct http_response *res);

static void endpoint_send(struct endpoint *e)
{
	const struct webhook_config *c = e->cfg;
	size_t n = c->form ? 1 : e->n < c->batch_size ? e->n : c->batch_size;
	size_t len;
	char *body = c->form ? form_body(e->head, &len) : json_body(e, n, &len);
	char ts[24], sig_header[160] = "", count[48];
	snprintf(ts, sizeof(ts), "%lld", (long long)(clock_wall_ms() / 1000));
	snprintf(count, sizeof(count), "X-Zmta-Events: %zu", n);
	if (c->secret != NULL) {
		unsigned char mac[EVP_MAX_MD_SIZE];
		unsigned maclen = 0;
		size_t tlen = strlen(ts);
		char *signed_text = xmalloc(tlen + 1 + len);
		memcpy(signed_text, ts, tlen);
		signed_text[tlen] = '.';
		memcpy(signed_text + tlen + 1, body, len);
		HMAC(EVP_sha256(), c->secret, (int)strlen(c->secret), (unsigned char *)signed_text,
		     tlen + 1 + len, mac, &maclen);
		free(signed_text);
		char *p = sig_header + sprintf(sig_header, "X-Zmta-Signature: t=%s,v1=", ts);
		for (unsigned i = 0; i < maclen; i++)
			p += sprintf(p, "%02x", mac[i]);
	}
	const char *headers[4] = {c->form ? "Content-Type: application/x-www-form-urlencoded"
					  : "Content-Type: application/json",
				  count, sig_header[0] ? sig_header : NULL, NULL};
	struct http_request req = {
	    .method = "POST",
	    .url = c->url,
	    .headers = headers,
	    .body = body,
	    .body_len = len,
	    .timeout_ms = c->timeout_ms,
	};
	e->sending = n;
	e->req = http_client_request(e->owner->http, &req, posted, e);
	free(body);
}

/* Sends a batch when one is due: full, or its oldest event waited
 * maxDelay; else waits for that. */
static void endpoint_pump(struct endpoint *e)
{
	if (e->req != 0 || e->retrying || e->n == 0)
		return;
	int64_t now = clock_mono_ms();
	if (e->n < e->cfg->batch_size && !e->cfg->form && e->cfg->max_delay_ms > 0) {
		if (e->first_wait == 0)
			e->first_wait = now;
		int64_t due = e->first_wait + (int64_t)e->cfg->max_delay_ms;
		if (now < due) {
			if (!evtimer_pending(e->timer, NULL))
				arm(e, (uint64_t)(due - now), false);
			return;
		}
	}
	evtimer_del(e->timer);
	e->first_wait = 0;
	endpoint_send(e);
}

static void posted(void *arg, const struct http_response *res)
{
	struct endpoint *e = arg;
	e->req = 0;
	size_t sent = e->sending;
	e->sending = 0;
	if (res->error == HTTPC_OK && res->status >= 200 && res->status < 300) {
		const char **ids = xcalloc(sent, sizeof(char *));
		struct pending_event *gone = e->head;
		for (size_t i = 0; i < sent; i++) {
			ids[i] = e->head->id;
			e->head = e->head->next;
		}
		if (e->head == NULL)
			e->tail = NULL;
		e->n -= sent;
		queue_events_delete(e->owner->queue, e->cfg->name, ids, sent);
		for (size_t i = 0; i < sent; i++) {
			struct pending_event *next = gone->next;
			pending_free(gone);
			gone = next;
		}
		free(ids);
		if (e->failures > 0)
			log_info("webhook_recovered", "endpoint=\"%s\" after_failures=%u",
				 e->cfg->name, e->failures);
		e->failures = 0;
		stats_add(STATS_WEBHOOK_SENT, e->cfg->name, (int64_t)sent);
		gauges(e);
		endpoint_pump(e);
		return;
	}
	e->failures++;
	stats_add(STATS_WEBHOOK_FAILURES, e->cfg->name, 1);
	uint64_t delay = RETRY_FIRST_MS;
	for (unsigned i = 1; i < e->failures && delay < e->cfg->retry_max_ms; i++)
		delay *= 2;
	if (delay > e->cfg->retry_max_ms)
		delay = e->cfg->retry_max_ms;
	char why[160];
	if (res->error == HTTPC_OK)
		snprintf(why, sizeof(why), "status %d", res->status);
	else
		snprintf(why, sizeof(why), "%s", res->error_text);
	log_warn("webhook_failed",
		 "endpoint=\"%s\" events=%zu pending=%zu failures=%u error=\"%s\" retry_in_ms=%llu",
		 e->cfg->name, sent, e->n, e->failures, why, (unsigned long long)delay);
	arm(e, delay, true);
}

/* Past maxBacklog: the oldest events not in flight go. */
static void trim(struct endpoint *e)
{
	uint64_t max = e->owner->cfg->webhook_max_backlog;
	while (e->n > max && e->n > e->sending) {
		/* the oldest after the ones in flight */
		struct pending_event **at = &e->head;
		for (size_t i = 0; i < e->sending; i++)
			at = &(*at)->next;
		struct pending_event *p = *at;
		*at = p->next;
		if (e->tail == p) {
			e->tail = e->head;
			while (e->tail != NULL && e->tail->next != NULL)
				e->tail = e->tail->next;
		}
		e->n--;
		const char *id = p->id;
		queue_events_delete(e->owner->queue, e->cfg->name, &id, 1);
		if (e->dropped++ % DROP_LOG_EVERY == 0)
			log_warn("dropped_events",
				 "endpoint=\"%s\" dropped=%llu max_backlog=%llu oldest_dropped=%s",
				 e->cfg->name, (unsigned long long)e->dropped,
				 (unsigned long long)max, p->id);
		stats_add(STATS_WEBHOOK_DROPPED, e->cfg->name, 1);
		pending_free(p);
	}
}

static void event_stored(void *arg, const char *endpoint, size_t elen, const char *id, size_t ilen,
			 const char *json, size_t len)
{
	struct webhooks *w = arg;
	struct endpoint *e = NULL;
	for (size_t i = 0; i < w->n && e == NULL; i++)
		if (strlen(w->ep[i].cfg->name) == elen &&
		    memcmp(w->ep[i].cfg->name, endpoint, elen) == 0)
			e = &w->ep[i];
	if (e == NULL || ilen != QUEUE_ID_LEN) {
		w->unknown++;
		return; /* kept for the endpoint's return to the configuration */
	}
	struct pending_event *p = xcalloc(1, sizeof(*p));
	p->id = xstrndup(id, ilen);
	p->json = xmalloc(len + 1);
	memcpy(p->json, json, len);
	p->json[len] = '\0';
	p->len = len;
	*(e->tail ? &e->tail->next : &e->head) = p;
	e->tail = p;
	e->n++;
	trim(e);
	gauges(e);
	endpoint_pump(e);
}

struct webhooks *webhooks_new(const struct config *cfg, struct event_base *base,
			      struct queue *queue, struct http_client *http, char **err)
{
	struct webhooks *w = xcalloc(1, sizeof(*w));
	w->cfg = cfg;
	w->base = base;
	w->queue = queue;
	w->http = http;
	w->n = cfg->n_webhooks;
	w->ep = xcalloc(w->n ? w->n : 1, sizeof(*w->ep));
	for (size_t i = 0; i < w->n; i++) {
		w->ep[i].owner = w;
		w->ep[i].cfg = &cfg->webhooks[i];
		w->ep[i].timer = evtimer_new(base, timer_fired, &w->ep[i]);
		gauges(&w->ep[i]);
	}
	ssize_t stored = queue_events_open(queue, event_stored, w, err);
	if (stored < 0) {
		webhooks_free(w);
		return NULL;
	}
	for (size_t i = 0; i < w->n; i++)
		if (w->ep[i].n > 0)
			log_info("webhook_backlog", "endpoint=\"%s\" pending=%zu",
				 w->ep[i].cfg->name, w->ep[i].n);
	if (w->unknown > 0)
		log_warn("webhook_backlog",
			 "events=%llu status=kept reason=\"their endpoints are no longer in "
			 "webhooks.endpoints\"",
			 (unsigned long long)w->unknown);
	return w;
}

void webhooks_free(struct webhooks *w)
{
	if (w == NULL)
		return;
	queue_events_stop(w->queue);
	for (size_t i = 0; i < w->n; i++) {
		struct endpoint *e = &w->ep[i];
		if (e->req != 0)
			http_client_cancel(w->http, e->req);
		event_free(e->timer);
		while (e->head != NULL) {
			struct pending_event *p = e->head;
			e->head = p->next;
			pending_free(p);
		}
	}
	free(w->ep);
	free(w);
}
