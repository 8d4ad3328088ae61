/* SPDX-License-Identifier: EUPL-1.2 */
/* HTTP API server: routing, JSON replies and the /health route; see api.h. */
#include "api/api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <openssl/evp.h>
#include <strings.h>

#include "api/api_internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "net/tls.h"
#include "version.h"

#define API_TIMEOUT_SECONDS 60
/* Request line and headers together, at most. */
#define API_HEADERS_MAX (64 * 1024)

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
		  method_name(evhttp_request_get_command(req)), evhttp_request_get_uri(req),
		  status);
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
	/* A store out of service takes no mail: a load balancer should know. */
	const char *broken = api->queue ? queue_broken(api->queue) : NULL;
	if (broken != NULL) {
		api_reply_json(req, HTTP_SERVUNAVAIL,
			       json_pack("{s:s, s:s, s:s, s:f}", "status", "degraded", "reason",
					 broken, "version", ZMTA_VERSION, "uptime", uptime));
		return;
	}
	api_reply_json(req, HTTP_OK,
		       json_pack("{s:s, s:s, s:f}", "status", "ok", "version", ZMTA_VERSION,
				 "uptime", uptime));
}

/* ZoneMTA's example and informational endpoints (below). */
static void route_test_auth(struct api *api, struct evhttp_request *req,
			    const struct api_params *params);
static void route_report_bounce(struct api *api, struct evhttp_request *req,
				const struct api_params *params);
static void route_bounces(struct api *api, struct evhttp_request *req,
			  const struct api_params *params);
static void route_not_here(struct api *api, struct evhttp_request *req,
			   const struct api_params *params);

static const struct api_route routes[] = {
    {EVHTTP_REQ_GET, "/health", route_health},
    {EVHTTP_REQ_GET, "/queue/:zone", route_queue},
    {EVHTTP_REQ_GET, "/message/:id", route_message},
    {EVHTTP_REQ_GET, "/fetch/:id", route_fetch},
    {EVHTTP_REQ_POST, "/send", route_send},
    {EVHTTP_REQ_POST, "/send-raw", route_send_raw},
    {EVHTTP_REQ_GET, "/zones", route_zones},
    {EVHTTP_REQ_GET, "/counter/:type/:zone", route_counter},
    {EVHTTP_REQ_GET, "/queued/:type/:zone", route_queued},
    {EVHTTP_REQ_DELETE, "/message/:id", route_delete},
    {EVHTTP_REQ_DELETE, "/message/:id/:seq", route_delete},
    {EVHTTP_REQ_PUT, "/message/:id/:seq", route_retry},
    {EVHTTP_REQ_GET, "/metrics", route_metrics},
    {EVHTTP_REQ_GET, "/test-auth", route_test_auth},
    {EVHTTP_REQ_POST, "/report-bounce", route_report_bounce},
    {EVHTTP_REQ_GET, "/bounces", route_bounces},
    {EVHTTP_REQ_GET, "/suppressionlist", route_suppression_list},
    {EVHTTP_REQ_POST, "/suppressionlist", route_suppression_add},
    {EVHTTP_REQ_DELETE, "/suppressionlist", route_suppression_delete},
    {EVHTTP_REQ_GET, "/pauses", route_pauses},
    {EVHTTP_REQ_POST, "/pauses", route_pause},
    {EVHTTP_REQ_DELETE, "/pauses/:id", route_resume},
    {EVHTTP_REQ_POST, "/message/:id/hold", route_hold},
    {EVHTTP_REQ_POST, "/message/:id/release", route_release},
    {EVHTTP_REQ_GET, "/ops", route_ops},
    {EVHTTP_REQ_POST, "/ops", route_op_start},
    {EVHTTP_REQ_GET, "/ops/:id", route_op},
    {EVHTTP_REQ_GET, "/deliveries", route_deliveries},
    {EVHTTP_REQ_GET, "/summary", route_summary},
    {EVHTTP_REQ_GET, "/stats/series", route_series},
    {EVHTTP_REQ_GET, "/ui", route_ui},
    {EVHTTP_REQ_GET, "/ui/:file", route_ui_file},
    {EVHTTP_REQ_GET, "/blacklist", route_not_here},
    {EVHTTP_REQ_GET, "/skipdomains/:zone", route_not_here},
    {EVHTTP_REQ_GET, "/internals", route_not_here},
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
	for (; p != NULL && s != NULL;
	     p = strtok_r(NULL, "/", &save_p), s = strtok_r(NULL, "/", &save_s)) {
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

static bool authorized(const struct api *api, struct evhttp_request *req);

static bool secret_equal(const char *a, const char *b);

/* HTTP Basic credentials equal to api.user and api.password. */
static bool basic_matches(const struct api *api, struct evhttp_request *req)
{
	const struct api_config *c = &api->cfg->api;
	const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req),
					      "Authorization");
	if (c->user == NULL || auth == NULL || strncasecmp(auth, "Basic ", 6) != 0)
		return false;
	char *expect_plain = xasprintf("%s:%s", c->user, c->password ? c->password : "");
	size_t n = strlen(expect_plain);
	char *expect = xmalloc(4 * ((n + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)expect, (const unsigned char *)expect_plain, (int)n);
	bool ok = secret_equal(auth + 6, expect);
	free(expect_plain);
	free(expect);
	return ok;
}

static json_t *now_iso(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	char buf[40];
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	return json_string(buf);
}

/*
 * ZoneMTA's example authentication backend (for an http-auth plugin's
 * authUrl): Basic credentials that match api.user and api.password →
 * 200 {user, time}, else 401.  Open to all: it is itself the check.
 */
static void route_test_auth(struct api *api, struct evhttp_request *req,
			    const struct api_params *params)
{
	(void)params;
	if (!basic_matches(api, req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
				  "Basic realm=\"Secure Area\"");
		api_reply_json(
		    req, 401,
		    json_pack("{s:o, s:s}", "time", now_iso(), "error", "Authentication required"));
		return;
	}
	api_reply_json(req, HTTP_OK,
		       json_pack("{s:s, s:o}", "user", api->cfg->api.user, "time", now_iso()));
}

/* ZoneMTA's example bounce receiver (an http-bounce plugin's url): keeps
 * the last REPORTED_KEEP reports in memory for GET /bounces. */
#define REPORTED_KEEP 150

static void route_report_bounce(struct api *api, struct evhttp_request *req,
				const struct api_params *params)
{
	(void)params;
	static const char *const fields[] = {"id",       "to",   "returnPath", "seq",
					     "category", "time", "response",   "fbl"};
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char *body = xstrndup((const char *)evbuffer_pullup(in, -1), len);
	const char *type = evhttp_find_header(evhttp_request_get_input_headers(req),
					      "Content-Type");
	json_t *report = json_object(), *given = NULL;
	if (type != NULL && strncasecmp(type, "application/json", 16) == 0) {
		given = json_loads(body, 0, NULL);
		if (!json_is_object(given)) {
			json_decref(given);
			json_decref(report);
			free(body);
			api_reply_field_error(req, HTTP_BADREQUEST, "", "invalid JSON object");
			return;
		}
	} else {
		struct evkeyvalq form;
		TAILQ_INIT(&form);
		evhttp_parse_query_str(body, &form);
		given = json_object();
		struct evkeyval *kv;
		TAILQ_FOREACH (kv, &form, next)
			json_object_set_new(given, kv->key, json_string(kv->value));
		evhttp_clear_headers(&form);
	}
	free(body);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *v = json_object_get(given, fields[i]);
		if (v != NULL)
			json_object_set(report, fields[i], v);
	}
	json_decref(given);
	json_array_insert_new(api->reported_bounces, 0, report);
	while (json_array_size(api->reported_bounces) > REPORTED_KEEP)
		json_array_remove(api->reported_bounces, REPORTED_KEEP);
	json_t *id = json_object_get(report, "id");
	struct evbuffer *out = evbuffer_new();
	evbuffer_add_printf(out, "\"%s\"", json_is_string(id) ? json_string_value(id) : "");
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "application/json");
	evhttp_send_reply(req, 202, "Accepted", out);
	evbuffer_free(out);
}

static void route_bounces(struct api *api, struct evhttp_request *req,
			  const struct api_params *params)
{
	(void)params;
	api_reply_json(req, HTTP_OK, json_pack("{s:O}", "bounces", api->reported_bounces));
}

/* ZoneMTA endpoints whose subject does not exist here. */
static void route_not_here(struct api *api, struct evhttp_request *req,
			   const struct api_params *params)
{
	(void)api;
	(void)params;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	const char *why =
	    strncmp(path, "/internals", 10) == 0
		? "/internals shows the Node.js process's caches and locks, which zone-mta "
		  "does not have: see GET /metrics and GET /health"
	    : strncmp(path, "/blacklist", 10) == 0
		? "zone-mta keeps no blocklist back-off cache of local address and domain "
		  "pairs (yet): a blocklist reply is classified and retried like any other"
		: "zone-mta keeps no skip-domain locks: per-domain limits are "
		  "domainConfig.*.maxConnections and the zone's throttling";
	api_reply_json(req, 501, json_pack("{s:s}", "error", why));
}

/* --- connections: counted, capped at api.maxConnections --- */

struct api_conn {
	struct api *api;
	struct evhttp_connection *conn;
	void (*gone)(void *arg); /* the request in progress, if it cares */
	void *gone_arg;
};

static void conn_closed(struct evhttp_connection *conn, void *arg)
{
	struct api_conn *c = arg;
	u64map_remove(c->api->conns, (uintptr_t)conn);
	if (c->gone != NULL)
		c->gone(c->gone_arg);
	free(c);
}

void api_on_gone(struct api *api, struct evhttp_connection *conn, void (*gone)(void *arg),
		 void *arg)
{
	struct api_conn *c = u64map_get(api->conns, (uintptr_t)conn);
	if (c == NULL)
		return; /* not counted: refused */
	c->gone = gone;
	c->gone_arg = arg;
}

/* Counts a connection at its first request; false (after a 503 that
 * closes it) when api.maxConnections are open already. */
static bool conn_admit(struct api *api, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	if (u64map_get(api->conns, (uintptr_t)conn) != NULL)
		return true;
	if (u64map_count(api->conns) >= (size_t)api->cfg->api.max_connections) {
		int64_t now = clock_mono_ms();
		if (now - api->refused_logged_ms >= 1000) {
			api->refused_logged_ms = now;
			log_warn("api_refused", "reason=\"too many connections\" max=%d",
				 api->cfg->api.max_connections);
		}
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		api_reply_error(req, HTTP_SERVUNAVAIL, "too many API connections, try again later");
		return false;
	}
	struct api_conn *c = xcalloc(1, sizeof(*c));
	c->api = api;
	c->conn = conn;
	u64map_put(api->conns, (uintptr_t)conn, c);
	evhttp_connection_set_closecb(conn, conn_closed, c);
	return true;
}

/*
 * CSRF: a request that changes something (not GET or HEAD) from a page of
 * another site.  Browsers say where a request comes from (Origin, and
 * Sec-Fetch-Site); other clients (curl, Nodemailer, the CLI) send neither
 * and are not affected.  With credentials the browser adds by itself
 * (Basic, or none on loopback) such a request could otherwise act for the
 * operator.  What was found (for the log), or NULL.
 */
static const char *cross_site(struct evhttp_request *req)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	if (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)
		return NULL;
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *origin = evhttp_find_header(h, "Origin");
	const char *site = evhttp_find_header(h, "Sec-Fetch-Site");
	if (origin != NULL) {
		const char *host = evhttp_find_header(h, "Host");
		const char *o = strncmp(origin, "https://", 8) == 0  ? origin + 8
				: strncmp(origin, "http://", 7) == 0 ? origin + 7
								     : NULL;
		if (o == NULL || host == NULL || strcasecmp(o, host) != 0)
			return "origin_mismatch=yes";
		return NULL;
	}
	if (site != NULL && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
		return "sec_fetch_site=cross";
	return NULL;
}

static void api_dispatch(struct evhttp_request *req, void *arg)
{
	struct api *api = arg;
	if (!conn_admit(api, req))
		return;
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
				bool open = routes[i].handler == route_health ||
					    routes[i].handler == route_test_auth ||
					    routes[i].handler == route_ui ||
					    routes[i].handler == route_ui_file;
				const char *cross = cross_site(req);
				if (cross != NULL) {
					log_warn("api_refused", "reason=\"cross-site request\" %s",
						 cross);
					api_reply_error(req, 403,
							"cross-site request refused (its Origin is "
							"not this API's)");
				} else if (!open && !authorized(api, req)) {
					/* The web page asks for credentials itself:
					 * no browser prompt for its requests. */
					if (evhttp_find_header(
						evhttp_request_get_input_headers(req),
						"X-Requested-With") == NULL)
						evhttp_add_header(
						    evhttp_request_get_output_headers(req),
						    "WWW-Authenticate", "Basic realm=\"zone-mta\"");
					api_reply_error(req, 401, "authentication required");
				} else {
					routes[i].handler(api, req, &params);
				}
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

void api_set_queue(struct api *api, struct queue *queue, struct sched *sched,
		   struct outcome *outcome, struct workpool *cpu)
{
	api->queue = queue;
	api->sched = sched;
	api->outcome = outcome;
	api->cpu = cpu;
}

void api_reply_field_error(struct evhttp_request *req, int status, const char *field,
			   const char *message)
{
	api_reply_json(req, status, json_pack("{s:s, s:s}", "error", message, "field", field));
}

/* Constant-time comparison: how long it takes says nothing of the secret. */
static bool secret_equal(const char *given, const char *secret)
{
	size_t a = strlen(given), b = strlen(secret);
	unsigned char diff = (unsigned char)(a != b);
	for (size_t i = 0; i < b; i++)
		diff |= (unsigned char)(given[i < a ? i : 0] ^ secret[i]);
	return diff == 0;
}

/* api.auth: an API key or HTTP Basic credentials, when configured. */
static bool authorized(const struct api *api, struct evhttp_request *req)
{
	const struct api_config *c = &api->cfg->api;
	if (c->api_key == NULL && c->user == NULL)
		return true;
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *key = evhttp_find_header(h, "X-API-Key");
	const char *auth = evhttp_find_header(h, "Authorization");
	if (c->api_key != NULL) {
		if (key != NULL && secret_equal(key, c->api_key))
			return true;
		if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0 &&
		    secret_equal(auth + 7, c->api_key))
			return true;
	}
	return basic_matches(api, req);
}

/* HTTPS: each connection's bufferevent speaks TLS (evhttp sets the
 * socket later). */
static struct bufferevent *https_bufferevent(struct event_base *base, void *arg)
{
	struct api *api = arg;
	struct bufferevent *bev = bufferevent_openssl_socket_new(
	    base, -1, tls_server_ssl(api->tls), BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	/* Clients often close without close_notify after the response. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

int api_reload(struct api *api, char **err)
{
	if (api->tls == NULL)
		return 0;
	struct tls_server *t = tls_server_new(&api->cfg->api.tls, err);
	if (t == NULL)
		return -1;
	tls_server_unref(api->tls); /* open connections' SSLs hold their own */
	api->tls = t;
	return 0;
}

struct api *api_new(struct event_base *base, const struct config *config, char **err)
{
	const struct api_config *cfg = &config->api;
	struct api *api = xcalloc(1, sizeof(*api));
	api->cfg = config;
	api->sendings = u64map_new();
	api->conns = u64map_new();
	api->reported_bounces = json_array();
	clock_gettime(CLOCK_MONOTONIC, &api->started);
	api->started_wall = time(NULL);
	api->http = evhttp_new(base);
	if (api->http == NULL)
		fatal("api: evhttp_new failed");
	evhttp_set_timeout(api->http, API_TIMEOUT_SECONDS);
	evhttp_set_max_body_size(api->http, (ev_ssize_t)cfg->max_body_size);
	/* Before authentication anyone may send headers: an endless header
	 * line is cut here (libevent answers 413 and closes), not buffered. */
	evhttp_set_max_headers_size(api->http, API_HEADERS_MAX);
	evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
						  EVHTTP_REQ_DELETE);
	evhttp_set_gencb(api->http, api_dispatch, api);
	if (cfg->tls.key != NULL && cfg->tls.cert != NULL) {
		api->tls = tls_server_new(&cfg->tls, err);
		if (api->tls == NULL) {
			api_free(api);
			return NULL;
		}
		evhttp_set_bevcb(api->http, https_bufferevent, api);
	}
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
		evhttp_free(api->http); /* closing connections frees their sendings */
	api_ops_free(api);
	u64map_free(api->sendings);
	u64map_free(api->conns);
	json_decref(api->reported_bounces);
	tls_server_unref(api->tls);
	free(api);
}

/* The request's parameters as one JSON object: its JSON body, or its form
 * body, and the query string.  NULL for a body that is not valid. */
json_t *api_request_params(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *type = evhttp_find_header(evhttp_request_get_input_headers(req),
					      "Content-Type");
	json_t *params = NULL;
	if (len > 0 && type != NULL && strncasecmp(type, "application/json", 16) == 0) {
		params = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
		if (!json_is_object(params)) {
			json_decref(params);
			return NULL;
		}
	} else {
		params = json_object();
		struct evkeyvalq form;
		TAILQ_INIT(&form);
		if (len > 0) {
			char *body = xstrndup((const char *)evbuffer_pullup(in, -1), len);
			evhttp_parse_query_str(body, &form);
			free(body);
		}
		struct evkeyval *kv;
		TAILQ_FOREACH (kv, &form, next)
			json_object_set_new(params, kv->key, json_string(kv->value));
		evhttp_clear_headers(&form);
	}
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (query != NULL) {
		struct evkeyvalq q;
		TAILQ_INIT(&q);
		evhttp_parse_query_str(query, &q);
		struct evkeyval *kv;
		TAILQ_FOREACH (kv, &q, next)
			if (json_object_get(params, kv->key) == NULL)
				json_object_set_new(params, kv->key, json_string(kv->value));
		evhttp_clear_headers(&q);
	}
	return params;
}
