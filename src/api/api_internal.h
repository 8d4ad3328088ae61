/* Internals shared by the API's route files. */
#ifndef ZMTA_API_INTERNAL_H
#define ZMTA_API_INTERNAL_H

#include <time.h>

#include "api/api.h"

#define API_MAX_PARAMS 4

struct api {
	struct evhttp *http;
	const struct config *cfg;
	struct queue *queue;
	struct timespec started; /* CLOCK_MONOTONIC */
	time_t started_wall;
};

/* Values captured from ":name" segments, in order. */
struct api_params {
	char *value[API_MAX_PARAMS];
	int count;
};

typedef void (*api_handler)(struct api *api, struct evhttp_request *req,
			    const struct api_params *params);

/* api_queue.c: reading the queue. */
void route_queue(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_message(struct api *api, struct evhttp_request *req, const struct api_params *params);
void route_fetch(struct api *api, struct evhttp_request *req, const struct api_params *params);

#endif
