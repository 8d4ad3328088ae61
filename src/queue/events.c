/* SPDX-License-Identifier: EUPL-1.2 */
/* Events as JSON for the webhooks; see events.h. */
#include "queue/events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/utf8.h"
#include "core/xmalloc.h"
#include "msg/header.h"

bool events_wanted(const struct config *cfg, enum event_type type)
{
	for (size_t i = 0; i < cfg->n_webhooks; i++)
		if (cfg->webhooks[i].events & 1u << type)
			return true;
	return false;
}

/* Sets key to a copy of the text, made valid UTF-8 (JSON holds no other). */
static void set_text(json_t *o, const char *key, const char *v)
{
	if (v == NULL)
		return;
	char *clean = utf8_sanitize(v, strlen(v));
	json_object_set_new(o, key, json_string(clean));
	free(clean);
}

static void set_meta_text(json_t *o, const char *key, const json_t *meta, const char *name)
{
	set_text(o, key, json_string_value(json_object_get(meta, name)));
}

/* webhooks.headers (first of each) and X-FBL from the message's header. */
static void add_headers(json_t *o, const struct config *cfg, const struct header_list *h)
{
	json_t *picked = json_object();
	for (size_t i = 0; i < cfg->n_event_headers; i++) {
		char *key = xstrdup(cfg->event_headers[i]);
		for (char *p = key; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		int at = header_list_find(h, key);
		free(key);
		if (at >= 0)
			set_text(picked, cfg->event_headers[i], h->items[at].value);
	}
	if (json_object_size(picked) > 0)
		json_object_set(o, "headers", picked);
	json_decref(picked);
	int fbl = header_list_find(h, "x-fbl");
	if (fbl >= 0)
		set_text(o, "fbl", h->items[fbl].value);
}

void events_add(struct queue *q, const struct config *cfg, struct queue_events *evs,
		const struct event *e)
{
	if (!events_wanted(cfg, e->type))
		return;
	char event_id[QUEUE_ID_LEN + 1];
	queue_id_new(q, event_id);
	json_t *o = json_object();
	json_object_set_new(o, "eventId", json_string(event_id));
	json_object_set_new(o, "event", json_string(config_event_names[e->type]));
	json_object_set_new(o, "time", json_integer((json_int_t)clock_wall_ms()));
	json_object_set_new(o, "id", json_string(e->id));
	if (e->seq > 0) {
		char seq[12];
		snprintf(seq, sizeof(seq), "%03x", e->seq & 0xfffu);
		json_object_set_new(o, "seq", json_string(seq));
	}
	set_text(o, "zone", e->zone);
	if (e->meta != NULL)
		set_meta_text(o, "from", e->meta, "from");
	set_text(o, "to", e->recipient);
	if (e->meta != NULL) {
		set_meta_text(o, "messageId", e->meta, "messageId");
		set_meta_text(o, "interface", e->meta, "interface");
	}
	set_text(o, "mx", e->mx);
	set_text(o, "remoteAddress", e->remote_address);
	set_text(o, "localAddress", e->local_address);
	set_text(o, "tls", e->tls);
	set_text(o, "response", e->response);
	set_text(o, "status", e->status);
	set_text(o, "category", e->category);
	if (e->attempts > 0)
		json_object_set_new(o, "attempts", json_integer(e->attempts));
	if (e->next_attempt > 0)
		json_object_set_new(o, "nextAttempt", json_integer((json_int_t)e->next_attempt));
	if (e->op != NULL)
		json_object_set_new(o, "op", json_deep_copy(e->op));
	if (e->headers != NULL) {
		add_headers(o, cfg, e->headers);
	} else if (e->header_block != NULL) {
		struct header_list h = {0};
		header_list_parse(&h, e->header_block, e->header_len);
		add_headers(o, cfg, &h);
		header_list_clear(&h);
	}
	char *json = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (json == NULL)
		fatal("events: cannot encode an event");
	size_t len = strlen(json);
	for (size_t i = 0; i < cfg->n_webhooks; i++)
		if (cfg->webhooks[i].events & 1u << e->type)
			queue_event_add(evs, cfg->webhooks[i].name, event_id, json, len);
	free(json);
}
