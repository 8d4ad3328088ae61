/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Drives src/net/http_client.c for tests/e2e/test_http_client.py: reads
 * requests as JSON lines on stdin, starts them all on one libevent loop,
 * and prints each result as a JSON line when it ends (in the order they
 * end).  Exits once every request has ended or been cancelled.
 *
 *   zmta-http-driver [--max-per-host N] [--timeout MS] [--max-response BYTES]
 *                    [--ca-file PEM]
 *
 * A request line: {"tag": "...", "url": "...", "method": "GET",
 *   "body": "text", "stream": BYTES (a body made on the fly, served in
 *   16 KiB pieces, each a few ms late), "timeout_ms": N, "max_response": N,
 *   "cancel_after_ms": N, "header": "Name: value", "user": "u", "password": "p"}
 * A result line: {"tag", "error", "error_text", "status", "body_len",
 *   "body" (up to 200 bytes), "elapsed_ms", "content_type"} or
 *   {"tag", "cancelled": true}.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/xmalloc.h"
#include "net/http_client.h"

#define STREAM_PIECE (16 * 1024)

static struct http_client *hc;
static struct event_base *base;
static size_t open_requests;

struct probe {
	char *tag;
	uint64_t id;
	json_t *spec;
	/* a streamed body */
	size_t stream_left;
	bool piece_ready;
	struct event *piece_timer;
	struct event *cancel_timer;
	unsigned char next_byte;
};

static void probe_end(struct probe *p)
{
	if (p->piece_timer != NULL)
		event_free(p->piece_timer);
	if (p->cancel_timer != NULL)
		event_free(p->cancel_timer);
	json_decref(p->spec);
	free(p->tag);
	free(p);
	if (--open_requests == 0)
		event_base_loopexit(base, NULL);
}

static void on_done(void *arg, const struct http_response *res)
{
	struct probe *p = arg;
	json_t *out = json_pack("{s:s, s:i, s:s, s:i, s:I, s:s%, s:I, s:s?}", "tag", p->tag,
				"error", (int)res->error, "error_text", res->error_text, "status",
				res->status, "body_len", (json_int_t)res->body_len, "body",
				res->body, res->body_len < 200 ? res->body_len : 200, "elapsed_ms",
				(json_int_t)res->elapsed_ms, "content_type", res->content_type);
	char *line = json_dumps(out, JSON_COMPACT);
	printf("%s\n", line);
	fflush(stdout);
	free(line);
	json_decref(out);
	probe_end(p);
}

static void on_piece(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct probe *p = arg;
	p->piece_ready = true;
	http_client_resume(hc, p->id);
}

/* Serves the stream a piece at a time, each a few ms after the last. */
static ssize_t stream_body(void *arg, char *buf, size_t len)
{
	struct probe *p = arg;
	if (p->stream_left == 0)
		return 0;
	if (!p->piece_ready) {
		struct timeval tv = {0, 2000};
		evtimer_add(p->piece_timer, &tv);
		return HTTPC_BODY_WAIT;
	}
	p->piece_ready = false;
	size_t n = len < STREAM_PIECE ? len : STREAM_PIECE;
	if (n > p->stream_left)
		n = p->stream_left;
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)('a' + (p->next_byte++ % 26));
	p->stream_left -= n;
	return (ssize_t)n;
}

static void on_cancel(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct probe *p = arg;
	http_client_cancel(hc, p->id);
	printf("{\"tag\": \"%s\", \"cancelled\": true}\n", p->tag);
	fflush(stdout);
	probe_end(p);
}

static const char *str(json_t *spec, const char *key)
{
	return json_string_value(json_object_get(spec, key));
}

static void start(json_t *spec)
{
	struct probe *p = xcalloc(1, sizeof(*p));
	p->spec = spec;
	p->tag = xstrdup(str(spec, "tag") ? str(spec, "tag") : "?");
	const char *header = str(spec, "header");
	const char *headers[] = {header, NULL};
	struct http_request req = {
	    .method = str(spec, "method"),
	    .url = str(spec, "url"),
	    .headers = header ? headers : NULL,
	    .body = str(spec, "body"),
	    .body_len = str(spec, "body") ? strlen(str(spec, "body")) : 0,
	    .user = str(spec, "user"),
	    .password = str(spec, "password"),
	    .timeout_ms = (uint64_t)json_integer_value(json_object_get(spec, "timeout_ms")),
	    .max_response = (size_t)json_integer_value(json_object_get(spec, "max_response")),
	};
	json_t *stream = json_object_get(spec, "stream");
	if (json_is_integer(stream)) {
		p->stream_left = (size_t)json_integer_value(stream);
		p->piece_timer = evtimer_new(base, on_piece, p);
		req.body_fn = stream_body;
		req.body_arg = p;
		req.body_size = -1;
	}
	open_requests++;
	p->id = http_client_request(hc, &req, on_done, p);
	json_t *cancel = json_object_get(spec, "cancel_after_ms");
	if (json_is_integer(cancel)) {
		long ms = (long)json_integer_value(cancel);
		p->cancel_timer = evtimer_new(base, on_cancel, p);
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		evtimer_add(p->cancel_timer, &tv);
	}
}

int main(int argc, char **argv)
{
	struct http_client_config cfg = {
	    .timeout_ms = 10000,
	    .connect_timeout_ms = 5000,
	    .max_per_host = 8,
	    .max_response = 1024 * 1024,
	};
	static const struct option opts[] = {
	    {"max-per-host", required_argument, NULL, 'm'},
	    {"timeout", required_argument, NULL, 't'},
	    {"max-response", required_argument, NULL, 'r'},
	    {"ca-file", required_argument, NULL, 'c'},
	    {NULL, 0, NULL, 0},
	};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'm':
			cfg.max_per_host = (unsigned)atoi(optarg);
			break;
		case 't':
			cfg.timeout_ms = strtoull(optarg, NULL, 10);
			break;
		case 'r':
			cfg.max_response = strtoull(optarg, NULL, 10);
			break;
		case 'c':
			cfg.ca_file = optarg;
			break;
		default:
			return 2;
		}
	}
	base = event_base_new();
	hc = http_client_new(base, &cfg);
	char line[65536];
	while (fgets(line, sizeof(line), stdin) != NULL) {
		json_error_t err;
		json_t *spec = json_loads(line, 0, &err);
		if (spec == NULL) {
			fprintf(stderr, "bad request line: %s\n", err.text);
			return 2;
		}
		start(spec);
	}
	if (open_requests > 0)
		event_base_dispatch(base);
	http_client_free(hc);
	event_base_free(base);
	return 0;
}
