/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * GET /deliveries: a page of the schedule's deliveries that match a filter
 * (docs/api.md#queue-administration), for the queue browser and `zone-mta
 * queue list`.  From memory, in bounded steps on the loop (sched_walk), in
 * queue order zone by zone; `next` continues after the page's last row, so
 * a million deliveries are paged without ever being loaded at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "api/api_internal.h"
#include "core/xmalloc.h"
#include "sched/sched.h"

#define PAGE_DEFAULT 100
#define PAGE_MAX 1000

struct browse {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	uint64_t walk;
	json_t *rows;
	size_t limit;
	char last_zone[128], last_id[QUEUE_ID_LEN + 1];
	unsigned last_seq;
};

static void browse_gone(void *arg)
{
	struct browse *b = arg;
	sched_walk_cancel(b->api->sched, b->walk);
	json_decref(b->rows);
	free(b);
}

static void browse_visit(void *arg, struct sched_item *it)
{
	struct browse *b = arg;
	json_array_append_new(b->rows, sched_item_json(it));
	snprintf(b->last_zone, sizeof(b->last_zone), "%s", sched_item_zone(it));
	memcpy(b->last_id, it->id, sizeof(b->last_id));
	b->last_seq = it->seq;
}

static void browse_done(void *arg, size_t scanned, size_t matched)
{
	struct browse *b = arg;
	api_on_gone(b->api, b->conn, NULL, NULL);
	json_t *next = json_null();
	if (matched >= b->limit) {
		char cursor[200];
		snprintf(cursor, sizeof(cursor), "%s/%s/%03x", b->last_zone, b->last_id,
			 b->last_seq);
		next = json_string(cursor);
	}
	api_reply_json(b->req, HTTP_OK,
		       json_pack("{s:o, s:o, s:I}", "deliveries", b->rows, "next", next, "scanned",
				 (json_int_t)scanned));
	free(b);
}

/* "zone/id/seq" into f; false when it is not one. */
static bool parse_cursor(char *s, struct sched_filter *f)
{
	char *seq = strrchr(s, '/');
	if (seq == NULL || seq == s)
		return false;
	*seq++ = '\0';
	char *id = strrchr(s, '/');
	if (id == NULL || id == s)
		return false;
	*id++ = '\0';
	char *end;
	unsigned long n = strtoul(seq, &end, 16);
	if (!api_valid_id(id) || *end != '\0' || n == 0 || n > QUEUE_MAX_RCPTS)
		return false;
	f->after_zone = s;
	f->after_id = id;
	f->after_seq = (unsigned)n;
	return true;
}

void route_deliveries(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	json_t *in = api_request_params(req);
	if (in == NULL) {
		api_reply_error(req, HTTP_BADREQUEST, "the parameters are not understood");
		return;
	}
	struct sched_filter f = {0};
	char why[160] = "";
	const char *limit = json_string_value(json_object_get(in, "limit"));
	char *after = json_string_value(json_object_get(in, "after"))
			  ? xstrdup(json_string_value(json_object_get(in, "after")))
			  : NULL;
	long n = PAGE_DEFAULT;
	char *end = NULL;
	if (limit != NULL)
		n = strtol(limit, &end, 10);
	bool bad_limit = limit != NULL && (*end != '\0' || n < 1 || n > PAGE_MAX);
	json_object_del(in, "limit"); /* not filters; `limit` goes with it */
	json_object_del(in, "after");
	if (bad_limit)
		snprintf(why, sizeof(why), "limit must be a number from 1 to %d", PAGE_MAX);
	else if (after != NULL && !parse_cursor(after, &f))
		snprintf(why, sizeof(why), "after must be a 'next' this listing gave");
	else
		api_parse_filter(api, in, &f, NULL, why, sizeof(why));
	if (why[0] != '\0') {
		json_decref(in);
		free(after);
		api_reply_error(req, HTTP_BADREQUEST, why);
		return;
	}
	struct browse *b = xcalloc(1, sizeof(*b));
	b->api = api;
	b->req = req;
	b->conn = evhttp_request_get_connection(req);
	b->rows = json_array();
	b->limit = (size_t)n;
	f.limit = b->limit;
	api_on_gone(api, b->conn, browse_gone, b);
	/* The walk copies what it keeps of the filter. */
	b->walk = sched_walk(api->sched, &f, browse_visit, browse_done, b);
	json_decref(in);
	free(after);
}
