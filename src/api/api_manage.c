/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Managing the queue over HTTP (ZoneMTA-compatible shapes): GET /zones,
 * GET /counter/:type/:zone, GET /queued/:type/:zone, DELETE /message/:id[/:seq],
 * PUT /message/:id/:seq (retry now), and GET /metrics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "api/api_internal.h"
#include "api/metrics.h"
#include "core/xmalloc.h"
#include "outcome/outcome.h"
#include "sched/sched.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

void route_zones(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	json_t *list = json_array();
	for (size_t i = 0; i < api->cfg->n_zones; i++)
		json_array_append_new(list, json_pack("{s:s}", "name", api->cfg->zones[i].name));
	api_reply_json(req, HTTP_OK, list);
}

/* :type must be queued or deferred; :zone a configured zone. */
static const struct zone_config *type_and_zone(struct api *api, struct evhttp_request *req,
					       const struct api_params *params, bool *deferred)
{
	const char *type = params->value[0];
	if (strcmp(type, "queued") != 0 && strcmp(type, "deferred") != 0) {
		api_reply_field_error(req, HTTP_BADREQUEST, "type",
				      "type must be queued or deferred");
		return NULL;
	}
	*deferred = strcmp(type, "deferred") == 0;
	const struct zone_config *z = config_zone(api->cfg, params->value[1]);
	if (z == NULL)
		api_reply_error(req, HTTP_NOTFOUND, "no such zone");
	return z;
}

void route_counter(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	bool deferred;
	const struct zone_config *z = type_and_zone(api, req, params, &deferred);
	if (z == NULL)
		return;
	const struct strmap *domains;
	const struct queue_counts *c = queue_zone_counts(api->queue, z->name, &domains);
	uint64_t n = c ? (deferred ? c->deferred : c->queued) : 0;
	api_reply_json(req, HTTP_OK,
		       json_pack("{s:s, s:s, s:I}", "zone", z->name, "type", params->value[0],
				 "count", (json_int_t)n));
}

struct listing {
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct api *api;
	uint64_t list_req;
	char *zone;
	char type[16];
};

static void listing_free(struct listing *l)
{
	api_on_gone(l->api, l->conn, NULL, NULL);
	free(l->zone);
	free(l);
}

static void listing_gone(void *arg)
{
	struct listing *l = arg;
	sched_list_cancel(l->api->sched, l->list_req);
	listing_free(l);
}

static void listed(void *arg, json_t *rows)
{
	struct listing *l = arg;
	struct evhttp_request *req = l->req;
	json_t *body = json_pack("{s:s, s:s, s:O}", "zone", l->zone, "type", l->type, "list", rows);
	listing_free(l);
	api_reply_json(req, HTTP_OK, body);
}

void route_queued(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	bool deferred;
	const struct zone_config *z = type_and_zone(api, req, params, &deferred);
	if (z == NULL)
		return;
	struct evkeyvalq query;
	TAILQ_INIT(&query);
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (q != NULL)
		evhttp_parse_query_str(q, &query);
	const char *start = evhttp_find_header(&query, "start");
	const char *size = evhttp_find_header(&query, "pageSize");
	long page = size ? strtol(size, NULL, 10) : PAGE_DEFAULT;
	if (page < 1 || page > PAGE_MAX) {
		evhttp_clear_headers(&query);
		api_reply_field_error(req, HTTP_BADREQUEST, "pageSize",
				      "pageSize must be 1 to 1000");
		return;
	}
	if (start != NULL && *start != '\0' && !api_valid_id(start)) {
		evhttp_clear_headers(&query);
		api_reply_field_error(req, HTTP_BADREQUEST, "start", "start must be a queue id");
		return;
	}
	struct listing *l = xcalloc(1, sizeof(*l));
	l->req = req;
	l->api = api;
	l->conn = evhttp_request_get_connection(req);
	l->zone = xstrdup(z->name);
	snprintf(l->type, sizeof(l->type), "%s", params->value[0]);
	api_on_gone(api, l->conn, listing_gone, l);
	/* From the scheduler's memory, never a scan of the store. */
	l->list_req = sched_list(api->sched, z->name, deferred, start && *start ? start : NULL,
				 (size_t)page, listed, l);
	evhttp_clear_headers(&query);
}

/* :seq as 3 hex digits (1 to fff); 0 when absent or malformed. */
static unsigned parse_seq(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 16);
	return *end == '\0' && strlen(s) <= 3 && v >= 1 && v <= QUEUE_MAX_RCPTS ? (unsigned)v : 0;
}

/* A DELETE waiting for its deletion to be written. */
struct deleting {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	uint64_t queue_req;
	char id[QUEUE_ID_LEN + 1];
	size_t deleted;
};

static void deleting_gone(void *arg)
{
	struct deleting *dl = arg;
	queue_request_cancel(dl->api->queue, dl->queue_req);
	free(dl);
}

static void deleted_written(void *arg, int rc, const char *error)
{
	struct deleting *dl = arg;
	struct evhttp_request *req = dl->req;
	api_on_gone(dl->api, dl->conn, NULL, NULL);
	if (rc != 0) {
		/* Gone from the schedule, not from the store: they come back
		 * after a restart. */
		api_reply_error(req, HTTP_SERVUNAVAIL,
				error ? error : "the store could not record it");
	} else {
		api_reply_json(
		    req, HTTP_OK,
		    json_pack("{s:s, s:I}", "id", dl->id, "deleted", (json_int_t)dl->deleted));
	}
	free(dl);
}

void route_delete(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	const char *id = params->value[0];
	unsigned seq = 0;
	if (!api_valid_id(id) || (params->count > 1 && (seq = parse_seq(params->value[1])) == 0)) {
		api_reply_error(req, HTTP_BADREQUEST, "invalid queue id or seq");
		return;
	}
	size_t n = outcome_delete(api->outcome, id, seq);
	if (n == 0) {
		api_reply_error(req, HTTP_NOTFOUND, "no such delivery");
		return;
	}
	/* The answer waits for the deletion to be written: a read that
	 * follows it must not find the rows still there. */
	struct deleting *dl = xcalloc(1, sizeof(*dl));
	dl->api = api;
	dl->req = req;
	dl->conn = evhttp_request_get_connection(req);
	snprintf(dl->id, sizeof(dl->id), "%s", id);
	dl->deleted = n;
	api_on_gone(api, dl->conn, deleting_gone, dl);
	dl->queue_req = queue_after_writes(api->queue, deleted_written, dl);
}

void route_retry(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	const char *id = params->value[0];
	unsigned seq = parse_seq(params->value[1]);
	if (!api_valid_id(id) || seq == 0) {
		api_reply_error(req, HTTP_BADREQUEST, "invalid queue id or seq");
		return;
	}
	if (!sched_retry_now(api->sched, id, seq)) {
		api_reply_error(req, HTTP_NOTFOUND, "no such delivery");
		return;
	}
	api_reply_json(req, HTTP_OK,
		       json_pack("{s:s, s:s, s:b}", "id", id, "seq", params->value[1], "retry", 1));
}

void route_metrics(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	char *text = metrics_render(api->cfg, api->queue);
	struct evbuffer *out = evbuffer_new();
	evbuffer_add(out, text, strlen(text));
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4; charset=utf-8");
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}
