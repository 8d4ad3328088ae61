/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The HTTP client: the one way the daemon makes HTTP requests (SMTP AUTH
 * against a service, webhooks, Rspamd, the config server).  libcurl's multi
 * interface driven by the libevent loop: requests run side by side on the
 * loop thread, nothing blocks, and each ends with one callback.
 *
 * Connections are kept and reused per host (libcurl's cache); at most
 * `max_per_host` requests to one host run at a time, the others wait their
 * turn.  TLS certificates and host names are verified (against the system's
 * CAs, or `ca_file`).  Only http and https; redirects are not followed.
 */
#ifndef ZMTA_HTTP_CLIENT_H
#define ZMTA_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>

struct http_client_config {
	uint64_t timeout_ms; /* whole request, default for requests that give none */
	uint64_t connect_timeout_ms;
	unsigned max_per_host; /* requests in flight to one host */
	size_t max_response;   /* response body bytes, default */
	const char *ca_file;   /* NULL: the system's CAs */
};

/* Why a request got no (usable) response. */
enum http_error {
	HTTPC_OK,            /* a response came: see status */
	HTTPC_ERR_CONNECT,   /* could not connect (refused, unreachable, DNS) */
	HTTPC_ERR_TIMEOUT,   /* the request's time ran out */
	HTTPC_ERR_TLS,       /* handshake or certificate verification failed */
	HTTPC_ERR_TOO_LARGE, /* the response body passed its cap */
	HTTPC_ERR_BODY,      /* the request body's source failed */
	HTTPC_ERR_PROTOCOL,  /* anything else (a broken response, a bad URL) */
};

/* Streams a request body: fills buf with up to len bytes and returns how
 * many, 0 at the end, HTTPC_BODY_WAIT when none is ready yet (call
 * http_client_resume() once there is), or HTTPC_BODY_ERROR to give up. */
#define HTTPC_BODY_WAIT ((ssize_t)-1)
#define HTTPC_BODY_ERROR ((ssize_t)-2)
typedef ssize_t (*http_body_fn)(void *arg, char *buf, size_t len);

struct http_request {
	const char *method; /* "GET", "POST", ... */
	const char *url;
	const char *const *headers; /* "Name: value" lines, NULL-terminated, or NULL */
	/* the body: a buffer (copied), or a stream */
	const char *body;
	size_t body_len;
	http_body_fn body_fn;
	void *body_arg;
	int64_t body_size;           /* a stream's length, or -1 (chunked) */
	const char *user, *password; /* HTTP Basic, or NULL */
	uint64_t timeout_ms;         /* 0: the client's */
	size_t max_response;         /* 0: the client's */
};

struct http_response {
	enum http_error error;
	const char *error_text;   /* what went wrong, for logs ("" on HTTPC_OK) */
	int status;               /* the HTTP status; 0 without a response */
	const char *content_type; /* or NULL */
	const char *body;         /* NUL-terminated (body_len bytes before it) */
	size_t body_len;
	uint64_t elapsed_ms;
};

typedef void (*http_done_fn)(void *arg, const struct http_response *res);

struct http_client;

struct http_client *http_client_new(struct event_base *base, const struct http_client_config *cfg);
/* Ends every request without its callback. */
void http_client_free(struct http_client *hc);

/*
 * Starts a request; `done` runs once, later, from the loop (never before
 * this returns).  Returns the request's id (never 0).  The request struct
 * and its strings are copied; a body stream's arg must stay valid until
 * done or the cancel.
 */
uint64_t http_client_request(struct http_client *hc, const struct http_request *req,
			     http_done_fn done, void *arg);
/* Ends a request without its callback; unknown or finished ids are ignored.
 * Not from inside a body stream's callback. */
void http_client_cancel(struct http_client *hc, uint64_t id);
/* A body stream that said HTTPC_BODY_WAIT has more now. */
void http_client_resume(struct http_client *hc, uint64_t id);

/* Appends key=value, form-encoded (application/x-www-form-urlencoded),
 * to a NUL-terminated buffer (*buf of *cap bytes, *len used; grown as
 * needed).  A NULL value adds nothing. */
void http_form_append(char **buf, size_t *len, size_t *cap, const char *key, const char *value);

#endif
