/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The HTTP API server (libevent evhttp, on the main loop).  Routes are a table
 * of {method, pattern, handler}; patterns are paths whose ":name" segments
 * capture.  Every response is JSON, errors included: {"error": "..."}.
 */
#ifndef ZMTA_API_H
#define ZMTA_API_H

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>

#include "core/config.h"
#include "queue/queue.h"

struct api;

/*
 * Binds cfg->api.host:cfg->api.port and serves on `base` once the loop runs.
 * `cfg` must outlive the API.  Returns NULL and a malloc'ed message in *err
 * when the address cannot be bound.
 */
struct api *api_new(struct event_base *base, const struct config *cfg, char **err);
struct sched;
struct outcome;
struct workpool;
/* What the API works on, set before the loop runs: the queue, the
 * scheduler (retries), the outcome stage (deletes) and the worker pool
 * (/send composition).  The pool's answers must all be in before
 * api_free; the rest must outlive the API. */
void api_set_queue(struct api *api, struct queue *queue, struct sched *sched,
		   struct outcome *outcome, struct workpool *cpu);
/* Stops listening and closes open API connections.  Accepts NULL. */
void api_free(struct api *api);
/* SIGHUP: the HTTPS key and certificate read again; -1 and *err (the
 * running ones kept) when they do not load. */
int api_reload(struct api *api, char **err);

/* Sends `body` (consumed) as JSON with `status`. */
void api_reply_json(struct evhttp_request *req, int status, json_t *body);
/* Sends {"error": message} with `status`. */
void api_reply_error(struct evhttp_request *req, int status, const char *message);

#endif
