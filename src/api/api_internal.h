/* SPDX-License-Identifier: EUPL-1.2 */
/* Internals shared by the API's route files. */
#ifndef ZMTA_API_INTERNAL_H
#define ZMTA_API_INTERNAL_H

#include <time.h>

#include "api/api.h"

#define API_MAX_PARAMS 4

struct sched;
struct outcome;

struct api {
	struct evhttp *http;
	struct tls_server *tls; /* HTTPS, or NULL */
	const struct config *cfg;
	struct queue *queue;
	struct sched *sched;
	struct outcome *outcome;
	struct workpool *cpu;    /* composes /send messages off the loop */
	struct u64map *sendings; /* id -> struct sending, while its client is there */
	uint64_t next_sending;
	struct u64map *conns;      /* evhttp_connection -> struct api_conn */
	int64_t refused_logged_ms; /* the last "too many connections" line */

	json_t *reported_bounces;   /* POST /report-bounce, newest first */
	struct running_op *running; /* POST /ops in progress (api_ops.c) */
	struct timespec started;    /* CLOCK_MONOTONIC */
	time_t started_wall;
};

/* A request's own reaction to its client going away (one per
 * connection, while a request of it is in progress); NULL clears it. */
void api_on_gone(struct api *api, struct evhttp_connection *conn, void (*gone)(void *arg),
		 void *arg);

/* Values captured from ":name" segments, in order. */
struct api_params {
	char *value[API_MAX_PARAMS];
	int count;
};

typedef void (*api_handler)(struct api *api, struct evhttp_request *req,
			    const struct api_params *params);

/* api_send.c: POST /send (JSON) and /send-raw. */
void route_send(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_send_raw(struct api *api, struct evhttp_request *req, const struct api_params *params);

/* api_manage.c: zones, listings, counters, deleting and retrying, metrics. */
void route_zones(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_counter(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_queued(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_delete(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_retry(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_metrics(struct api *api, struct evhttp_request *req, const struct api_params *params);

/* Sends {"error": message, "field": field}. */
void api_reply_field_error(struct evhttp_request *req, int status, const char *field,
			   const char *message);
/* A queue id: 18 lowercase hex digits. */
bool api_valid_id(const char *id);
/* A delivery's seq: 1 to 3 hex digits, 1 to fff; 0 when malformed. */
unsigned api_parse_seq(const char *s);

/* api_suppress.c: the suppression list. */
/* api_ops.c: queue administration */
void route_pauses(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_pause(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_resume(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_hold(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_release(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_ops(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_op(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_op_start(struct api *api, struct evhttp_request *req, const struct api_params *params);
/* Filters on a message's stored headers (operations only): Message-ID
 * without its angle brackets, a header's lower-case name and its
 * unfolded value (NULL: any); each NULL when not given; owned. */
struct header_filter {
	char *message_id, *name, *value;
};
struct sched_filter;
/* Reads a JSON filter (zone, domain, recipient, sender, user, status,
 * olderThan, and with hf messageId and header) into f (borrowing its
 * strings) and hf; a reason into why when it is wrong. */
void api_parse_filter(struct api *api, json_t *filter, struct sched_filter *f,
		      struct header_filter *hf, char *why, size_t whylen);
/* api_browse.c: GET /deliveries, a filtered page of the schedule. */
void route_deliveries(struct api *api, struct evhttp_request *req, const struct api_params *params);
/* GET /summary: recipient domains by age (qshape), top deferral reasons. */
void route_summary(struct api *api, struct evhttp_request *req, const struct api_params *params);
/* api_ui.c: the web page's files (/ui/), its chart data. */
void route_ui(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_ui_file(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_series(struct api *api, struct evhttp_request *req, const struct api_params *params);
/* Stops the operations in progress (the API goes). */
void api_ops_free(struct api *api);
void route_suppression_list(struct api *api, struct evhttp_request *req,
			    const struct api_params *params);
void route_suppression_add(struct api *api, struct evhttp_request *req,
			   const struct api_params *params);
void route_suppression_delete(struct api *api, struct evhttp_request *req,
			      const struct api_params *params);

/* api_queue.c: reading the queue. */
void route_queue(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_message(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_fetch(struct api *api, struct evhttp_request *req, const struct api_params *params);

/* The request's parameters as one JSON object: its JSON body, or its form
 * body, and the query string.  NULL for a body that is not valid. */
json_t *api_request_params(struct evhttp_request *req);

#endif
