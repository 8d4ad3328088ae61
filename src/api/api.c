/* HTTP API server: routing, JSON replies and the /health route; see api.h. */
#include "api/api.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "api/api_internal.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "version.h"

#define API_TIMEOUT_SECONDS 60

struct api_route {
	enum evhttp_cmd_type method;
	const char *pattern;
	api_handler handler;
};

static const char *method_name(enum evhttp_cmd_type method)
{
	switch (method) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return "OTHER";
	}
}

void api_reply_json(struct evhttp_request *req, int status, json_t *body)
{
	log_debug("http", "method=%s uri=\"%s\" status=%d",
		  method_name(evhttp_request_get_command(req)), evhttp_request_get_uri(req), status);
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (text == NULL)
		fatal("api: cannot encode JSON reply");
	struct evbuffer *out = evbuffer_new();
	evbuffer_add(out, text, strlen(text));
	evbuffer_add(out, "\n", 1);
	free(text);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json; charset=utf-8");
	evhttp_send_reply(req, status, NULL, out);
	evbuffer_free(out);
}

void api_reply_error(struct evhttp_request *req, int status, const char *message)
{
	api_reply_json(req, status, json_pack("{s:s}", "error", message));
}

static void route_health(struct api *api, struct evhttp_request *req,
			 const struct api_params *params)
{
	(void)params;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double uptime = (double)(now.tv_sec - api->started.tv_sec) +
			(double)(now.tv_nsec - api->started.tv_nsec) / 1e9;
	api_reply_json(req, HTTP_OK,
		       json_pack("{s:s, s:s, s:f}", "status", "ok", "version", ZMTA_VERSION,
				 "uptime", uptime));
}

static const struct api_route routes[] = {
	{EVHTTP_REQ_GET, "/health", route_health},
	{EVHTTP_REQ_GET, "/queue/:zone", route_queue},
	{EVHTTP_REQ_GET, "/message/:id", route_message},
	{EVHTTP_REQ_GET, "/fetch/:id", route_fetch},
};

/*
 * Matches `path` against `pattern` segment by segment; ":name" segments
 * capture into params (pointing into `scratch`, a copy of path).
 */
static bool route_match(const char *pattern, char *scratch, struct api_params *params)
{
	params->count = 0;
	char *save_p = NULL, *save_s = NULL;
	char *pat = xstrdup(pattern);
	char *p = strtok_r(pat, "/", &save_p);
	char *s = strtok_r(scratch, "/", &save_s);
	bool ok = true;
	for (; p != NULL && s != NULL; p = strtok_r(NULL, "/", &save_p), s = strtok_r(NULL, "/", &save_s)) {
		if (p[0] == ':') {
			if (params->count == API_MAX_PARAMS) {
				ok = false;
				break;
			}
			params->value[params->count++] = s;
		} else if (strcmp(p, s) != 0) {
			ok = false;
			break;
		}
	}
	ok = ok && p == NULL && s == NULL;
	free(pat);
	return ok;
}

static void api_dispatch(struct evhttp_request *req, void *arg)
{
	struct api *api = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *raw = uri ? evhttp_uri_get_path(uri) : NULL;
	if (raw == NULL || raw[0] != '/') {
		api_reply_error(req, HTTP_BADREQUEST, "malformed request path");
		return;
	}
	char *path = evhttp_uridecode(raw, 0, NULL);
	if (path == NULL) {
		api_reply_error(req, HTTP_BADREQUEST, "malformed request path");
		return;
	}
	bool path_known = false;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		struct api_params params;
		char *scratch = xstrdup(path);
		if (route_match(routes[i].pattern, scratch, &params)) {
			path_known = true;
			if (routes[i].method == evhttp_request_get_command(req)) {
				routes[i].handler(api, req, &params);
				free(scratch);
				free(path);
				return;
			}
		}
		free(scratch);
	}
	if (path_known)
		api_reply_error(req, 405, "method not allowed");
	else
		api_reply_error(req, HTTP_NOTFOUND, "no such endpoint");
	free(path);
}

void api_set_queue(struct api *api, struct queue *queue)
{
	api->queue = queue;
}

struct api *api_new(struct event_base *base, const struct config *config, char **err)
{
	const struct api_config *cfg = &config->api;
	struct api *api = xcalloc(1, sizeof(*api));
	api->cfg = config;
	clock_gettime(CLOCK_MONOTONIC, &api->started);
	api->started_wall = time(NULL);
	api->http = evhttp_new(base);
	if (api->http == NULL)
		fatal("api: evhttp_new failed");
	evhttp_set_timeout(api->http, API_TIMEOUT_SECONDS);
	evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
						      EVHTTP_REQ_DELETE);
	evhttp_set_gencb(api->http, api_dispatch, api);
	errno = 0;
	if (evhttp_bind_socket_with_handle(api->http, cfg->host, (ev_uint16_t)cfg->port) == NULL) {
		*err = xasprintf("cannot listen on %s:%d: %s", cfg->host, cfg->port,
				 errno ? strerror(errno) : "address not usable");
		api_free(api);
		return NULL;
	}
	return api;
}

void api_free(struct api *api)
{
	if (api == NULL)
		return;
	if (api->http != NULL)
		evhttp_free(api->http);
	free(api);
}
