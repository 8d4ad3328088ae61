/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The web page (docs/ui.md): its files, embedded at build time from ui/
 * (cmake/embed_ui.cmake), served at /ui/ with a strict Content Security
 * Policy, and the per-minute counts its charts draw (GET /stats/series).
 * The files hold no data and are served to anyone; everything the page
 * shows comes from the API under api.auth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "api/api_internal.h"
#include "core/clock.h"
#include "core/series.h"

struct zmta_ui_file {
	const char *name, *type;
	const unsigned char *data;
	size_t len;
};
extern const struct zmta_ui_file zmta_ui_files[];

static void send_file(struct evhttp_request *req, const struct zmta_ui_file *f)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", f->type);
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_add_header(h, "Referrer-Policy", "no-referrer");
	/* Its own files only: no inline script, nothing from elsewhere, never
	 * framed (clickjacking). */
	evhttp_add_header(h, "Content-Security-Policy",
			  "default-src 'none'; script-src 'self'; style-src 'self'; "
			  "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
			  "base-uri 'none'; form-action 'self'");
	struct evbuffer *out = evbuffer_new();
	evbuffer_add_reference(out, f->data, f->len, NULL, NULL);
	evhttp_send_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

static const struct zmta_ui_file *find_file(const char *name)
{
	for (const struct zmta_ui_file *f = zmta_ui_files; f->name != NULL; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

void route_ui(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)api;
	(void)params;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (path[strlen(path) - 1] != '/') {
		/* the page's own files are relative to /ui/ */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/ui/");
		evhttp_send_reply(req, 301, "Moved Permanently", NULL);
		return;
	}
	send_file(req, find_file("index.html"));
}

void route_ui_file(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)api;
	const struct zmta_ui_file *f = find_file(params->value[0]);
	if (f == NULL)
		api_reply_error(req, HTTP_NOTFOUND, "no such file");
	else
		send_file(req, f);
}

void route_series(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	json_t *in = api_request_params(req);
	const char *zone = in ? json_string_value(json_object_get(in, "zone")) : NULL;
	const char *minutes = in ? json_string_value(json_object_get(in, "minutes")) : NULL;
	char *end = NULL;
	long n = minutes ? strtol(minutes, &end, 10) : 60;
	if (in == NULL || (minutes != NULL && (*end != '\0' || n < 1 || n > SERIES_MINUTES))) {
		json_decref(in);
		api_reply_error(req, HTTP_BADREQUEST, "minutes must be a number from 1 to 1440");
		return;
	}
	if (zone != NULL && config_zone(api->cfg, zone) == NULL) {
		json_decref(in);
		api_reply_error(req, HTTP_NOTFOUND, "no such zone");
		return;
	}
	json_t *s = series_json(zone, (int)n, clock_wall_ms());
	json_decref(in);
	api_reply_json(req, HTTP_OK, s);
}
