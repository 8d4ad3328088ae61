/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Queue routes of the HTTP API (ZoneMTA-compatible shapes):
 *   GET /queue/:zone   counters of a zone, by recipient domain
 *   GET /message/:id   a message's metadata and its pending deliveries
 *   GET /fetch/:id     the stored message as message/rfc822, streamed
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <strings.h>
#include <sys/queue.h>

#include "api/api_internal.h"
#include "core/stats.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/utf8.h"
#include "core/xmalloc.h"
#include "msg/header.h"

/* ISO 8601 UTC with milliseconds, as ZoneMTA (JavaScript) prints times. */
static json_t *iso_time(time_t t)
{
	struct tm tm;
	char buf[40];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
	return json_string(buf);
}

void route_queue(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	const struct zone_config *zone = config_zone(api->cfg, params->value[0]);
	if (zone == NULL) {
		api_reply_error(req, HTTP_NOTFOUND, "no such zone");
		return;
	}
	const struct strmap *domains = NULL;
	const struct queue_counts *c = queue_zone_counts(api->queue, zone->name, &domains);
	json_t *list = json_array();
	if (c != NULL) {
		size_t pos = 0;
		const char *name;
		void *v;
		while (strmap_next(domains, &pos, &name, &v)) {
			const struct queue_counts *d = v;
			json_array_append_new(list, json_pack("{s:s, s:I, s:I}", "domain", name,
							      "queued", (json_int_t)d->queued,
							      "deferred", (json_int_t)d->deferred));
		}
	}
	/* held, paused: of the queued and deferred, what an operator keeps back */
	json_t *body = json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:o}", "time",
				 iso_time(time(NULL)), "started", iso_time(api->started_wall),
				 "processed", (json_int_t)queue_processed(api->queue), "queued",
				 (json_int_t)(c ? c->queued : 0), "deferred",
				 (json_int_t)(c ? c->deferred : 0), "held",
				 (json_int_t)stats_get(STATS_HELD, zone->name), "paused",
				 (json_int_t)stats_get(STATS_PAUSED, zone->name), "domains", list);
	api_reply_json(req, HTTP_OK, body);
}

bool api_valid_id(const char *id)
{
	if (strlen(id) != QUEUE_ID_LEN)
		return false;
	for (const char *p = id; *p; p++)
		if (!isxdigit((unsigned char)*p) || isupper((unsigned char)*p))
			return false;
	return true;
}

/* A request waiting for the store; cancelled if the client goes away. */
struct pending_read {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	uint64_t queue_req;
	char id[QUEUE_ID_LEN + 1];
	uint32_t next_chunk;
	uint32_t nchunks; /* /fetch: body chunks stored, from bodySize; 0: unknown */
	bool body_only;   /* /fetch?body=yes: without the header block */
	bool skip_blank;  /* ... nor the empty line after it, at the body's start */
};

static void on_client_gone(void *arg)
{
	struct pending_read *p = arg;
	queue_request_cancel(p->api->queue, p->queue_req);
	free(p);
}

static struct pending_read *pending_new(struct api *api, struct evhttp_request *req, const char *id)
{
	struct pending_read *p = xcalloc(1, sizeof(*p));
	p->api = api;
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	snprintf(p->id, sizeof(p->id), "%s", id);
	api_on_gone(api, p->conn, on_client_gone, p);
	return p;
}

static void pending_free(struct pending_read *p)
{
	api_on_gone(p->api, p->conn, NULL, NULL);
	free(p);
}

/* The header block as [{key, line}], each line without its final CRLF. */
static json_t *header_lines(const char *block, size_t len)
{
	struct header_list list = {0};
	header_list_parse(&list, block, len);
	json_t *out = json_array();
	for (size_t i = 0; i < list.count; i++) {
		const struct header *h = &list.items[i];
		size_t n = h->raw_len;
		while (n > 0 && (h->raw[n - 1] == '\n' || h->raw[n - 1] == '\r'))
			n--;
		char *line = utf8_sanitize(h->raw, n);
		char *key = utf8_sanitize(h->key, strlen(h->key));
		json_array_append_new(out, json_pack("{s:s, s:s}", "key", key, "line", line));
		free(line);
		free(key);
	}
	header_list_clear(&list);
	return out;
}

/* For a read that found nothing (rc 0) or failed (rc < 0): answers 404 or
 * 500, frees p and returns true; false when there is a message. */
static bool reply_missing(struct pending_read *p, int rc)
{
	if (rc > 0)
		return false;
	struct evhttp_request *req = p->req;
	pending_free(p);
	if (rc == 0)
		api_reply_error(req, HTTP_NOTFOUND, "no such message");
	else
		api_reply_error(req, HTTP_INTERNAL, "cannot read the queue");
	return true;
}

static void message_answer(void *arg, int rc, const struct queue_message *msg)
{
	struct pending_read *p = arg;
	struct evhttp_request *req = p->req;
	if (reply_missing(p, rc))
		return;
	json_t *meta = json_deep_copy(msg->meta);
	json_object_set_new(meta, "headers", header_lines(msg->header_block, msg->header_len));
	json_t *messages = json_array();
	size_t i;
	json_t *row;
	json_int_t now = (json_int_t)clock_wall_ms();
	json_array_foreach (msg->deliveries, i, row) {
		json_t *m = json_pack(
		    "{s:s, s:O, s:O, s:O, s:O}", "id", p->id, "seq", json_object_get(row, "seq"),
		    "zone", json_object_get(row, "zone"), "recipient",
		    json_object_get(row, "recipient"), "status", json_object_get(row, "status"));
		if (m == NULL)
			continue; /* a row missing fields: shown nowhere rather than wrong */
		json_t *deferred = json_object_get(row, "deferred");
		json_t *next = json_object_get(row, "next");
		if (json_is_true(json_object_get(row, "held")))
			json_object_set_new(m, "held", json_true());
		if (json_object_get(row, "history") != NULL)
			json_object_set(m, "history", json_object_get(row, "history"));
		if (deferred != NULL) {
			json_object_set(m, "deferred", deferred);
		} else if (json_is_integer(next) && json_integer_value(next) > now) {
			/* due later (a Date in the future): deferred, as ZoneMTA shows it */
			json_object_set_new(m, "status", json_string("DEFERRED"));
			json_object_set_new(m, "deferred",
					    json_pack("{s:i, s:O}", "count", 0, "next", next));
		}
		json_array_append_new(messages, m);
	}
	pending_free(p);
	api_reply_json(req, HTTP_OK, json_pack("{s:o, s:o}", "meta", meta, "messages", messages));
}

void route_message(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	if (!api_valid_id(params->value[0])) {
		api_reply_error(req, HTTP_BADREQUEST, "invalid queue id");
		return;
	}
	struct pending_read *p = pending_new(api, req, params->value[0]);
	p->queue_req = queue_message_get(api->queue, p->id, message_answer, p);
}

static void fetch_chunk(void *arg, int rc, const char *data, size_t len);

/* The last chunk was written to the client: read the next (flow control). */
static void chunk_written(struct evhttp_connection *conn, void *arg)
{
	(void)conn;
	struct pending_read *p = arg;
	p->queue_req = queue_chunk_get(p->api->queue, p->id, p->next_chunk++, fetch_chunk, p);
}

static void fetch_chunk(void *arg, int rc, const char *data, size_t len)
{
	struct pending_read *p = arg;
	struct evhttp_request *req = p->req;
	uint32_t index = p->next_chunk - 1;
	if (rc < 0 || (rc == 0 && index < p->nchunks)) {
		/* A read error, or a chunk gone (the message was deleted
		 * meanwhile): the 200 is sent already, so the reply is cut
		 * without its last chunk, and the client sees it incomplete
		 * rather than a short body that looks whole. */
		log_msg(LOG_LEVEL_WARN, p->id, "api_fetch", "chunk=%u error=\"%s\" action=cut",
			index, rc < 0 ? "cannot read the queue" : "body chunk missing");
		struct evhttp_connection *conn = p->conn;
		pending_free(p);
		evhttp_connection_free(conn);
		return;
	}
	if (rc == 0) {
		pending_free(p); /* past the last chunk */
		evhttp_send_reply_end(req);
		return;
	}
	if (p->skip_blank && index == 0 && len >= 2 && memcmp(data, "\r\n", 2) == 0) {
		data += 2;
		len -= 2;
	}
	if (len == 0) {
		/* An empty chunk (an empty body): nothing to write, so no write
		 * callback would come; go on at once. */
		chunk_written(NULL, p);
		return;
	}
	struct evbuffer *buf = evbuffer_new();
	evbuffer_add(buf, data, len);
	evhttp_send_reply_chunk_with_cb(req, buf, chunk_written, p);
	evbuffer_free(buf);
}

static void fetch_answer(void *arg, int rc, const struct queue_message *msg)
{
	struct pending_read *p = arg;
	struct evhttp_request *req = p->req;
	if (reply_missing(p, rc))
		return;
	json_t *size = json_object_get(msg->meta, "bodySize");
	if (json_is_integer(size) && json_integer_value(size) >= 0) {
		uint64_t n = (uint64_t)json_integer_value(size);
		p->nchunks = n == 0 ? 1 : (uint32_t)((n + QUEUE_CHUNK_SIZE - 1) / QUEUE_CHUNK_SIZE);
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "message/rfc822");
	evhttp_send_reply_start(req, HTTP_OK, "OK");
	if (p->body_only) {
		p->skip_blank = msg->header_len < 4 ||
				memcmp(msg->header_block + msg->header_len - 4, "\r\n\r\n", 4) != 0;
		chunk_written(NULL, p);
		return;
	}
	struct evbuffer *buf = evbuffer_new();
	evbuffer_add(buf, msg->header_block, msg->header_len);
	evhttp_send_reply_chunk_with_cb(req, buf, chunk_written, p);
	evbuffer_free(buf);
}

void route_fetch(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	if (!api_valid_id(params->value[0])) {
		api_reply_error(req, HTTP_BADREQUEST, "invalid queue id");
		return;
	}
	struct pending_read *p = pending_new(api, req, params->value[0]);
	struct evkeyvalq query;
	TAILQ_INIT(&query);
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (q != NULL)
		evhttp_parse_query_str(q, &query);
	const char *body = evhttp_find_header(&query, "body");
	p->body_only = body != NULL && strcasecmp(body, "yes") == 0;
	evhttp_clear_headers(&query);
	p->queue_req = queue_message_get(api->queue, p->id, fetch_answer, p);
}
