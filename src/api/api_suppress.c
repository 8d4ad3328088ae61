/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * GET/POST/DELETE /suppressionlist, ZoneMTA's shapes: {"suppressed": [...]}
 * (newest first), POST {address} or {domain} (JSON, a form or the query;
 * ours also take reason, source and expires) answers {"suppressed":
 * entry} once the entry is written, DELETE {id} (or {address} / {domain})
 * answers {"deleted": id}.
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
#include "core/clock.h"
#include "core/xmalloc.h"
#include "msg/header.h"
#include "queue/suppress.h"

/* A listing page: this many entries at most (and by default), so one
 * request costs the loop a pass over the list and this much JSON. */
#define LIST_MAX_LIMIT 10000

static const char *param_text(json_t *params, const char *key)
{
	const char *v = json_string_value(json_object_get(params, key));
	return v != NULL && v[0] != '\0' ? v : NULL;
}

/* A change waiting for its write, then the answer. */
struct suppress_reply {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	json_t *answer;
	bool gone;
};

static void reply_gone(void *arg)
{
	((struct suppress_reply *)arg)->gone = true;
}

static void reply_written(void *arg, int rc, const char *error)
{
	struct suppress_reply *r = arg;
	if (!r->gone) {
		api_on_gone(r->api, r->conn, NULL, NULL);
		if (rc != 0)
			api_reply_error(r->req, HTTP_SERVUNAVAIL,
					error ? error : "the store could not record it");
		else
			api_reply_json(r->req, HTTP_OK, json_incref(r->answer));
	}
	json_decref(r->answer);
	free(r);
}

static struct suppress_reply *reply_new(struct api *api, struct evhttp_request *req)
{
	struct suppress_reply *r = xcalloc(1, sizeof(*r));
	r->api = api;
	r->req = req;
	r->conn = evhttp_request_get_connection(req);
	api_on_gone(api, r->conn, reply_gone, r);
	return r;
}

/* The list and the request's parameters; NULL after an error reply. */
static json_t *begin(struct api *api, struct evhttp_request *req, struct suppressions **list)
{
	*list = api->queue ? queue_suppressions(api->queue) : NULL;
	if (*list == NULL) {
		api_reply_error(req, HTTP_SERVUNAVAIL, "Service not yet started");
		return NULL;
	}
	json_t *p = api_request_params(req);
	if (p == NULL)
		api_reply_field_error(req, HTTP_BADREQUEST, "", "invalid JSON object");
	return p;
}

void route_suppression_list(struct api *api, struct evhttp_request *req,
			    const struct api_params *params)
{
	(void)params;
	struct suppressions *list;
	json_t *p = begin(api, req, &list);
	if (p == NULL)
		return;
	const char *limit_text = param_text(p, "limit"), *after = param_text(p, "after");
	char *end = NULL;
	long long limit = limit_text ? strtoll(limit_text, &end, 10) : LIST_MAX_LIMIT;
	const char *field = NULL, *error = NULL;
	if (limit_text != NULL && (*end != '\0' || limit < 1 || limit > LIST_MAX_LIMIT)) {
		field = "limit", error = "limit must be an integer from 1 to 10000";
	} else if (after != NULL && suppressions_by_id(list, after) == NULL) {
		field = "after", error = "no such entry (after= takes a listed entry's id)";
	}
	if (error != NULL) {
		json_decref(p);
		api_reply_field_error(req, HTTP_BADREQUEST, field, error);
		return;
	}
	const char *next;
	json_t *page = suppressions_list(list, (size_t)limit, after, &next);
	json_t *answer = json_pack("{s:o, s:I}", "suppressed", page, "total",
				   (json_int_t)suppressions_count(list));
	if (next != NULL)
		json_object_set_new(answer, "next", json_string(next));
	json_decref(p);
	api_reply_json(req, HTTP_OK, answer);
}

/* expires: ISO 8601 date-time (UTC, "...Z"), RFC 5322 date, or ms since
 * the epoch; 0 for none, -1 when not understood. */
static int64_t parse_expires(json_t *v)
{
	if (v == NULL || json_is_null(v))
		return 0;
	if (json_is_integer(v))
		return json_integer_value(v) > 0 ? json_integer_value(v) : -1;
	const char *s = json_string_value(v);
	if (s == NULL || *s == '\0')
		return s ? 0 : -1;
	char *end;
	long long ms = strtoll(s, &end, 10);
	if (*end == '\0' && ms > 0)
		return ms;
	struct tm tm = {0};
	const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (rest != NULL) {
		if (*rest == '.')
			while (*++rest >= '0' && *rest <= '9')
				;
		if (strcmp(rest, "Z") == 0 || *rest == '\0')
			return (int64_t)timegm(&tm) * 1000;
		return -1;
	}
	time_t t;
	if (header_date_parse(s, &t) == 0)
		return (int64_t)t * 1000;
	return -1;
}

static bool valid_value(const char *v, bool domain)
{
	if (v == NULL || strlen(v) > 320 || strpbrk(v, " \t\r\n<>,;\"") != NULL)
		return false;
	const char *at = strrchr(v, '@');
	if (domain)
		return at == NULL && strchr(v, '.') != NULL;
	return at != NULL && at != v && at[1] != '\0';
}

void route_suppression_add(struct api *api, struct evhttp_request *req,
			   const struct api_params *params)
{
	(void)params;
	struct suppressions *list;
	json_t *p = begin(api, req, &list);
	if (p == NULL)
		return;
	const char *address = param_text(p, "address"), *domain = param_text(p, "domain");
	const char *reason = param_text(p, "reason"), *source = param_text(p, "source");
	if (domain != NULL && domain[0] == '@') /* "@example.com" is a domain too */
		domain++;
	int64_t expires = parse_expires(json_object_get(p, "expires"));
	const char *field = NULL, *error = NULL;
	if (address == NULL && domain == NULL) {
		field = "address", error = "No address or domain defined";
	} else if (address != NULL && domain != NULL) {
		field = "domain", error = "give an address or a domain, not both";
	} else if (!valid_value(address ? address : domain, address == NULL)) {
		field = address ? "address" : "domain";
		error = address ? "not an email address" : "not a domain name";
	} else if (source != NULL && strcmp(source, "api") != 0 && strcmp(source, "bounce") != 0 &&
		   strcmp(source, "unsubscribe") != 0) {
		field = "source", error = "source must be api, bounce or unsubscribe";
	} else if (expires < 0) {
		field = "expires", error = "expires must be an ISO 8601 time or milliseconds";
	} else if (expires > 0 && expires <= clock_wall_ms()) {
		field = "expires", error = "expires is in the past";
	}
	if (error != NULL) {
		api_reply_field_error(req, HTTP_BADREQUEST, field, error);
		json_decref(p);
		return;
	}
	const char *value = address ? address : domain;
	struct suppress_reply *r = reply_new(api, req);
	const struct suppression *e = suppressions_add(list, address == NULL, value, reason,
						       source ? source : "api", expires,
						       reply_written, r);
	json_decref(p);
	/* The answer is built now (the entry may change before the write). */
	r->answer = json_pack("{s:o}", "suppressed", suppression_json(e));
}

void route_suppression_delete(struct api *api, struct evhttp_request *req,
			      const struct api_params *params)
{
	(void)params;
	struct suppressions *list;
	json_t *p = begin(api, req, &list);
	if (p == NULL)
		return;
	const char *id = param_text(p, "id"), *address = param_text(p, "address"),
		   *domain = param_text(p, "domain");
	char key[330];
	if (id != NULL) {
		snprintf(key, sizeof(key), "%s", id);
		if (strlen(id) != SUPPRESS_ID_LEN ||
		    strspn(id, "0123456789abcdef") != SUPPRESS_ID_LEN) {
			json_decref(p);
			api_reply_field_error(req, HTTP_BADREQUEST, "id", "Invalid entry ID");
			return;
		}
	} else if (address != NULL || domain != NULL) {
		snprintf(key, sizeof(key), "%c:%s", address ? 'a' : 'd',
			 address ? address : domain);
	} else {
		json_decref(p);
		api_reply_field_error(req, HTTP_BADREQUEST, "id", "Invalid entry ID");
		return;
	}
	json_decref(p);
	/* The id answered is the entry's, whatever named it. */
	char deleted[SUPPRESS_ID_LEN + 1];
	struct suppress_reply *r = reply_new(api, req);
	if (!suppressions_remove(list, key, deleted, reply_written, r)) {
		api_on_gone(api, r->conn, NULL, NULL);
		free(r);
		api_reply_error(req, HTTP_NOTFOUND, "no such entry");
		return;
	}
	r->answer = json_pack("{s:s}", "deleted", deleted);
}
