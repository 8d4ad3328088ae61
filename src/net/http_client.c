/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The HTTP client on libcurl multi; see http_client.h.  libcurl tells us
 * which sockets to watch (socket_cb) and when to call it back (timer_cb);
 * libevent does the waiting, and curl_multi_socket_action() the work.
 * Finished transfers are collected after each action (collect_done).
 */
#include "net/http_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "core/clock.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/xmalloc.h"

struct http_client {
	struct event_base *base;
	struct http_client_config cfg;
	char *ca_file;
	CURLM *multi;
	struct event *timer;
	struct u64map *requests; /* id -> struct http_call */
	uint64_t next_id;
	bool in_action; /* inside curl_multi_socket_action() */
};

/* One watched socket. */
struct http_sock {
	struct event *ev;
	short what;
};

struct http_call {
	struct http_client *hc;
	uint64_t id;
	CURL *easy;
	struct curl_slist *headers;
	char *body; /* a buffered request body */
	http_body_fn body_fn;
	void *body_arg;
	char *resp;
	size_t resp_len, resp_cap, max_response;
	bool too_large, body_failed, paused;
	http_done_fn done;
	void *arg;
	int64_t started_ms;
	char errbuf[CURL_ERROR_SIZE];
};

static void check_multi(struct http_client *hc);

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
	struct http_client *hc = arg;
	int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) |
		    (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;
	hc->in_action = true;
	curl_multi_socket_action(hc->multi, fd, flags, &running);
	hc->in_action = false;
	check_multi(hc);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct http_client *hc = arg;
	int running;
	hc->in_action = true;
	curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	hc->in_action = false;
	check_multi(hc);
}

/* CURLMOPT_SOCKETFUNCTION: watch `s` for `action`, or stop. */
static int socket_cb(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
	(void)easy;
	struct http_client *hc = userp;
	struct http_sock *hs = socketp;
	if (action == CURL_POLL_REMOVE) {
		if (hs != NULL) {
			event_free(hs->ev);
			free(hs);
			curl_multi_assign(hc->multi, s, NULL);
		}
		return 0;
	}
	short what = (short)((action & CURL_POLL_IN ? EV_READ : 0) |
			     (action & CURL_POLL_OUT ? EV_WRITE : 0) | EV_PERSIST);
	if (hs == NULL) {
		hs = xcalloc(1, sizeof(*hs));
		curl_multi_assign(hc->multi, s, hs);
	} else if (hs->what == what) {
		return 0;
	} else {
		event_free(hs->ev);
	}
	hs->what = what;
	hs->ev = event_new(hc->base, s, what, on_socket_event, hc);
	event_add(hs->ev, NULL);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: call back after timeout_ms; -1 stops the timer. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct http_client *hc = userp;
	if (timeout_ms < 0) {
		evtimer_del(hc->timer);
		return 0;
	}
	/* Never act from inside libcurl: a 0 timeout runs on the next loop pass. */
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	evtimer_add(hc->timer, &tv);
	return 0;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_call *c = userp;
	size_t n = size * nmemb;
	if (c->resp_len + n > c->max_response) {
		c->too_large = true;
		return 0; /* CURLE_WRITE_ERROR ends the transfer */
	}
	c->resp = xreallocarray_grow(c->resp, &c->resp_cap, c->resp_len + n + 1, 1);
	memcpy(c->resp + c->resp_len, data, n);
	c->resp_len += n;
	c->resp[c->resp_len] = '\0';
	return n;
}

static size_t read_cb(char *buf, size_t size, size_t nitems, void *userp)
{
	struct http_call *c = userp;
	ssize_t n = c->body_fn(c->body_arg, buf, size * nitems);
	if (n == HTTPC_BODY_WAIT) {
		c->paused = true;
		return CURL_READFUNC_PAUSE;
	}
	if (n < 0) {
		c->body_failed = true;
		return CURL_READFUNC_ABORT;
	}
	return (size_t)n;
}

static enum http_error error_of(const struct http_call *c, CURLcode rc)
{
	if (c->too_large)
		return HTTPC_ERR_TOO_LARGE;
	if (c->body_failed)
		return HTTPC_ERR_BODY;
	switch (rc) {
	case CURLE_OK:
		return HTTPC_OK;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return HTTPC_ERR_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return HTTPC_ERR_TIMEOUT;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
		return HTTPC_ERR_TLS;
	default:
		return HTTPC_ERR_PROTOCOL;
	}
}

/* Removes the call from the map (if there still) and from libcurl. */
static void call_free(struct http_call *c)
{
	struct http_client *hc = c->hc;
	u64map_remove(hc->requests, c->id);
	curl_multi_remove_handle(hc->multi, c->easy);
	curl_easy_cleanup(c->easy);
	curl_slist_free_all(c->headers);
	free(c->body);
	free(c->resp);
	free(c);
}

/* Ends each finished transfer with its callback. */
static void check_multi(struct http_client *hc)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(hc->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct http_call *c;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		CURLcode rc = msg->data.result;
		long status = 0;
		char *ctype = NULL;
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(c->easy, CURLINFO_CONTENT_TYPE, &ctype);
		struct http_response res = {
		    .error = error_of(c, rc),
		    .status = (int)status,
		    .content_type = ctype,
		    .body = c->resp ? c->resp : "",
		    .body_len = c->resp_len,
		    .elapsed_ms = (uint64_t)(clock_mono_ms() - c->started_ms),
		};
		res.error_text = res.error == HTTPC_OK              ? ""
				 : res.error == HTTPC_ERR_TOO_LARGE ? "response body too large"
				 : res.error == HTTPC_ERR_BODY      ? "request body source failed"
				 : c->errbuf[0]                     ? c->errbuf
								    : curl_easy_strerror(rc);
		if (res.error != HTTPC_OK)
			res.status = 0; /* a partial response is no response */
		http_done_fn done = c->done;
		void *arg = c->arg;
		/* The callback may start or cancel requests: this one is out of
		 * the map first, and freed after. */
		u64map_remove(hc->requests, c->id);
		done(arg, &res);
		call_free(c);
	}
}

struct http_client *http_client_new(struct event_base *base, const struct http_client_config *cfg)
{
	static bool curl_ready;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
			fatal("libcurl: global init failed");
		curl_ready = true;
	}
	struct http_client *hc = xcalloc(1, sizeof(*hc));
	hc->base = base;
	hc->cfg = *cfg;
	hc->ca_file = cfg->ca_file ? xstrdup(cfg->ca_file) : NULL;
	hc->cfg.ca_file = hc->ca_file;
	hc->multi = curl_multi_init();
	if (hc->multi == NULL)
		fatal("libcurl: curl_multi_init failed");
	hc->timer = evtimer_new(base, on_timer, hc);
	hc->requests = u64map_new();
	curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc);
	curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc);
	curl_multi_setopt(hc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)cfg->max_per_host);
	return hc;
}

void http_client_free(struct http_client *hc)
{
	if (hc == NULL)
		return;
	size_t pos = 0;
	uint64_t id;
	void *v;
	while (u64map_next(hc->requests, &pos, &id, &v)) {
		call_free(v);
		pos = 0;
	}
	u64map_free(hc->requests);
	curl_multi_cleanup(hc->multi); /* closes kept connections: socket_cb frees their events */
	event_free(hc->timer);
	free(hc->ca_file);
	free(hc);
}

uint64_t http_client_request(struct http_client *hc, const struct http_request *req,
			     http_done_fn done, void *arg)
{
	struct http_call *c = xcalloc(1, sizeof(*c));
	c->hc = hc;
	c->id = ++hc->next_id;
	c->done = done;
	c->arg = arg;
	c->started_ms = clock_mono_ms();
	c->max_response = req->max_response ? req->max_response : hc->cfg.max_response;
	CURL *e = c->easy = curl_easy_init();
	if (e == NULL)
		fatal("libcurl: curl_easy_init failed");
	curl_easy_setopt(e, CURLOPT_PRIVATE, c);
	curl_easy_setopt(e, CURLOPT_URL, req->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			 (long)(req->timeout_ms ? req->timeout_ms : hc->cfg.timeout_ms));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)hc->cfg.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	if (hc->cfg.ca_file != NULL)
		curl_easy_setopt(e, CURLOPT_CAINFO, hc->cfg.ca_file);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "zone-mta");
	if (req->user != NULL) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(e, CURLOPT_USERNAME, req->user);
		curl_easy_setopt(e, CURLOPT_PASSWORD, req->password ? req->password : "");
	}
	for (const char *const *h = req->headers; h != NULL && *h != NULL; h++)
		c->headers = curl_slist_append(c->headers, *h);
	if (req->body_fn != NULL) {
		c->body_fn = req->body_fn;
		c->body_arg = req->body_arg;
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(e, CURLOPT_READDATA, c);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_size);
		/* No "Expect: 100-continue" round trip. */
		c->headers = curl_slist_append(c->headers, "Expect:");
	} else if (req->body != NULL) {
		c->body = xmalloc(req->body_len + 1);
		memcpy(c->body, req->body, req->body_len);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		c->headers = curl_slist_append(c->headers, "Expect:");
	}
	/* GET without a body, POST with one; any other method by name. */
	const char *implied = req->body != NULL || req->body_fn != NULL ? "POST" : "GET";
	if (req->method != NULL && strcmp(req->method, implied) != 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
	if (c->headers != NULL)
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
	u64map_put(hc->requests, c->id, c);
	/* Starts nothing now: libcurl asks for a 0 ms timer (timer_cb). */
	curl_multi_add_handle(hc->multi, e);
	return c->id;
}

void http_client_cancel(struct http_client *hc, uint64_t id)
{
	struct http_call *c = id ? u64map_get(hc->requests, id) : NULL;
	if (c == NULL)
		return;
	call_free(c);
}

void http_client_resume(struct http_client *hc, uint64_t id)
{
	struct http_call *c = id ? u64map_get(hc->requests, id) : NULL;
	if (c == NULL || !c->paused)
		return;
	c->paused = false;
	curl_easy_pause(c->easy, CURLPAUSE_CONT);
	/* Unpausing may have ended it (a failing read): collect. */
	if (!hc->in_action)
		check_multi(hc);
}

void http_form_append(char **buf, size_t *len, size_t *cap, const char *key, const char *v)
{
	if (v == NULL)
		return;
	size_t need = *len + strlen(key) + 3 * strlen(v) + 3;
	if (need > *cap) {
		*cap = need * 2;
		*buf = xrealloc(*buf, *cap);
	}
	char *p = *buf + *len;
	if (*len > 0)
		*p++ = '&';
	p += sprintf(p, "%s=", key);
	for (const unsigned char *s = (const unsigned char *)v; *s; s++) {
		if ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' || *s == '_' || *s == '~')
			*p++ = (char)*s;
		else if (*s == ' ')
			*p++ = '+';
		else
			p += sprintf(p, "%%%02X", *s);
	}
	*len = (size_t)(p - *buf);
	(*buf)[*len] = '\0';
}
