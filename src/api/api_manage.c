/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Managing the queue over HTTP (ZoneMTA-compatible shapes): GET /zones,
 * GET /counter/:type/:zone, GET /queued/:type/:zone, DELETE /message/:id[/:seq],
 * PUT /message/:id/:seq (retry now), and GET /metrics.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "api/api_internal.h"
#include "api/metrics.h"
#include "core/xmalloc.h"
#include "outcome/outcome.h"
#include "sched/sched.h"

#define PAGE_MAX 1000

/* The value of query parameter `key`, copied, or NULL. */
static char *query_param(struct evhttp_request *req, const char *key)
{
	struct evkeyvalq query;
	TAILQ_INIT(&query);
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (q != NULL)
		evhttp_parse_query_str(q, &query);
	const char *v = evhttp_find_header(&query, key);
	char *copy = v != NULL ? xstrdup(v) : NULL;
	evhttp_clear_headers(&query);
	return copy;
}

static int zone_by_name(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* ZoneMTA's: enabled zones, or all with ?includeDisabled=true, by name. */
void route_zones(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	char *all = query_param(req, "includeDisabled");
	bool include_disabled = all != NULL && (strncasecmp(all, "true", 4) == 0 ||
						strncasecmp(all, "yes", 3) == 0 || *all == '1');
	free(all);
	const char **names = xcalloc(api->cfg->n_zones + 1, sizeof(*names));
	size_t n = 0;
	for (size_t i = 0; i < api->cfg->n_zones; i++)
		if (include_disabled || !api->cfg->zones[i].disabled)
			names[n++] = api->cfg->zones[i].name;
	qsort(names, n, sizeof(*names), zone_by_name);
	json_t *list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, json_pack("{s:s}", "name", names[i]));
	free(names);
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
	uint64_t queued = c ? c->queued : 0, waiting = c ? c->deferred : 0;
	/* ZoneMTA's {active, deferred}, and the count of the type asked for */
	api_reply_json(req, HTTP_OK,
		       json_pack("{s:s, s:s, s:I, s:I, s:I}", "zone", z->name, "type",
				 params->value[0], "count",
				 (json_int_t)(deferred ? waiting : queued), "active",
				 (json_int_t)queued, "deferred", (json_int_t)waiting));
}

/* A sorted listing with an offset (ZoneMTA's) sorts every delivery of the
 * type in the zone: refused above this many (page by queue id instead). */
#define SORTED_LIST_MAX 100000

enum list_sort {
	SORT_ID,
	SORT_CREATED,
	SORT_QUEUED
};

struct listing {
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct api *api;
	uint64_t list_req;
	char *zone;
	char type[16];
	/* ZoneMTA's paging (start a number); else by queue id, ascending */
	bool offset_paging;
	size_t offset, page;
	enum list_sort sort;
	bool descending;
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

static json_t *iso_ms(json_int_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char buf[40];
	gmtime_r(&t, &tm);
	size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%03dZ", (int)(ms % 1000));
	return json_string(buf);
}

/* ms since the epoch of a row's field (0 when absent). */
static json_int_t row_time(const json_t *row, const char *key)
{
	const json_t *deferred = json_object_get(row, "deferred");
	if (strcmp(key, "queued") == 0) /* due: the next attempt, or since created */
		return deferred ? json_integer_value(json_object_get(deferred, "next"))
				: json_integer_value(json_object_get(row, "created"));
	return json_integer_value(json_object_get(row, key));
}

/* ZoneMTA's row: {id, seq, zone, recipient, created, queued (ISO), deferred
 * (the number of failed attempts)}; ours adds lastResponse when deferred,
 * held and paused when so. */
static json_t *zonemta_row(const json_t *row)
{
	const json_t *deferred = json_object_get(row, "deferred");
	json_t *out = json_pack(
	    "{s:O, s:O, s:O, s:O, s:o, s:o, s:I}", "id", json_object_get(row, "id"), "seq",
	    json_object_get(row, "seq"), "zone", json_object_get(row, "zone"), "recipient",
	    json_object_get(row, "recipient"), "created", iso_ms(row_time(row, "created")),
	    "queued", iso_ms(row_time(row, "queued")), "deferred",
	    deferred ? json_integer_value(json_object_get(deferred, "count")) : 0);
	const json_t *response = deferred ? json_object_get(deferred, "response") : NULL;
	if (out != NULL && json_is_string(response))
		json_object_set(out, "lastResponse", (json_t *)response);
	/* ours: an operator's hold, or a pause that stops it */
	if (out != NULL && json_is_true(json_object_get(row, "held")))
		json_object_set_new(out, "held", json_true());
	if (out != NULL && json_is_true(json_object_get(row, "paused")))
		json_object_set_new(out, "paused", json_true());
	return out;
}

static int row_order(const void *a, const void *b, void *arg)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	enum list_sort sort_key = *(const enum list_sort *)arg;
	if (sort_key != SORT_ID) {
		const char *key = sort_key == SORT_CREATED ? "created" : "queued";
		json_int_t tx = row_time(x, key), ty = row_time(y, key);
		if (tx != ty)
			return tx < ty ? -1 : 1;
	}
	int c = strcmp(json_string_value(json_object_get(x, "id")),
		       json_string_value(json_object_get(y, "id")));
	return c != 0 ? c
		      : strcmp(json_string_value(json_object_get(x, "seq")),
			       json_string_value(json_object_get(y, "seq")));
}

static void listed(void *arg, json_t *rows)
{
	struct listing *l = arg;
	struct evhttp_request *req = l->req;
	json_t *list = json_array();
	size_t n = json_array_size(rows);
	json_t **v = xcalloc(n + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(rows, i);
	size_t from = 0, to = n;
	if (l->offset_paging) {
		qsort_r(v, n, sizeof(*v), row_order, &l->sort);
		if (l->descending)
			for (size_t i = 0; i < n / 2; i++) {
				json_t *t = v[i];
				v[i] = v[n - 1 - i];
				v[n - 1 - i] = t;
			}
		from = l->offset < n ? l->offset : n;
		to = n - from > l->page ? from + l->page : n;
	}
	for (size_t i = from; i < to; i++)
		json_array_append_new(list, zonemta_row(v[i]));
	free(v);
	json_t *body = json_pack("{s:s, s:s, s:o}", "zone", l->zone, "type", l->type, "list", list);
	listing_free(l);
	api_reply_json(req, HTTP_OK, body);
}

/*
 * ZoneMTA's paging: start (an offset), pageSize (clamped to 1..1000),
 * sort=id|created|queued, order=asc|desc (desc by default); it sorts the
 * zone's whole list, so up to SORTED_LIST_MAX deliveries.  Or, ours,
 * after=<queue id> (empty: from the first; start=<queue id> says the
 * same): the next page after that message, ascending by id, at the same
 * cost however long the queue.
 */
void route_queued(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	bool deferred;
	const struct zone_config *z = type_and_zone(api, req, params, &deferred);
	if (z == NULL)
		return;
	char *start = query_param(req, "start"), *size = query_param(req, "pageSize");
	char *sort = query_param(req, "sort"), *order = query_param(req, "order");
	char *after = query_param(req, "after");
	long page = size && *size ? strtol(size, NULL, 10) : 0;
	if (page == 0)
		page = PAGE_MAX; /* ZoneMTA's: absent (or 0) is 1000 */
	page = page < 1 ? 1 : page > PAGE_MAX ? PAGE_MAX : page;
	struct listing *l = xcalloc(1, sizeof(*l));
	l->req = req;
	l->api = api;
	l->conn = evhttp_request_get_connection(req);
	l->zone = xstrdup(z->name);
	l->page = (size_t)page;
	snprintf(l->type, sizeof(l->type), "%s", params->value[0]);
	/* ours: after=<queue id> (or empty: from the first), or start=<queue id> */
	bool by_id = after != NULL || (start != NULL && api_valid_id(start));
	const char *cursor = after != NULL ? after : start;
	const char *problem = NULL;
	if (by_id && *cursor != '\0' && !api_valid_id(cursor))
		problem = "after must be a queue id";
	if (!by_id && problem == NULL) {
		l->offset_paging = true;
		double offset = start && *start ? strtod(start, NULL) : 0;
		l->offset = offset < 0 ? 0 : offset > 1e9 ? 1000000000 : (size_t)offset;
		l->sort = sort && !strcasecmp(sort, "created")  ? SORT_CREATED
			  : sort && !strcasecmp(sort, "queued") ? SORT_QUEUED
								: SORT_ID;
		l->descending = !(order && !strcasecmp(order, "asc"));
		const struct strmap *domains;
		const struct queue_counts *c = queue_zone_counts(api->queue, z->name, &domains);
		uint64_t count = c ? (deferred ? c->deferred : c->queued) : 0;
		if (count > SORTED_LIST_MAX)
			problem = "too many deliveries to sort for an offset: page with "
				  "start=<queue id> instead";
	}
	free(size);
	free(sort);
	free(order);
	if (problem != NULL) {
		free(start);
		free(after);
		listing_free(l);
		api_reply_field_error(req, HTTP_BADREQUEST, by_id ? "after" : "start", problem);
		return;
	}
	api_on_gone(api, l->conn, listing_gone, l);
	/* From the scheduler's memory, never a scan of the store. */
	l->list_req = sched_list(api->sched, z->name, deferred, by_id && *cursor ? cursor : NULL,
				 l->offset_paging ? SIZE_MAX : (size_t)page, listed, l);
	free(start);
	free(after);
}

unsigned api_parse_seq(const char *s)
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
		api_reply_json(req, HTTP_OK,
			       json_pack("{s:b, s:s, s:I}", "success", 1, "id", dl->id, "deleted",
					 (json_int_t)dl->deleted));
	}
	free(dl);
}

void route_delete(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	const char *id = params->value[0];
	unsigned seq = 0;
	if (!api_valid_id(id) ||
	    (params->count > 1 && (seq = api_parse_seq(params->value[1])) == 0)) {
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
	unsigned seq = api_parse_seq(params->value[1]);
	if (!api_valid_id(id) || seq == 0) {
		api_reply_error(req, HTTP_BADREQUEST, "invalid queue id or seq");
		return;
	}
	if (!sched_retry_now(api->sched, id, seq)) {
		api_reply_error(req, HTTP_NOTFOUND, "no such delivery");
		return;
	}
	api_reply_json(req, HTTP_OK,
		       json_pack("{s:b, s:s, s:s, s:b}", "success", 1, "id", id, "seq",
				 params->value[1], "retry", 1));
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
