/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Sending over HTTP: POST /send (a JSON message in Nodemailer's format,
 * composed with GMime) and POST /send-raw (an RFC 5322 message, envelope
 * from its headers or the query).  Both go through the same ingest as SMTP
 * and answer only once the message is durably queued.
 *
 * evhttp reads a request body whole before calling us (bounded by
 * api.maxBodySize), so /send-raw is buffered, not streamed.  /send's JSON
 * is parsed and its message composed (up to 50 MB of base64) on the
 * worker pool, never on the loop.  Either message then goes to the ingest
 * in steps, with the same back-pressure as SMTP DATA (ingest_busy and
 * on_drain), not all at once into write jobs.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "api/api_internal.h"
#include "core/stats.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "msg/compose.h"
#include "msg/header.h"
#include "msg/ingest.h"
#include "queue/suppress.h"
#include "core/hmap.h"
#include "core/workpool.h"

/* A message being composed or committed; forgotten if the client goes
 * away (found again by id: a composition's answer may outlive it). */
struct sending {
	struct api *api;
	uint64_t id;
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct ingest *ingest;
	json_t *answer; /* {id, from, to, messageId} once queued */
	/* the message being fed to the ingest, a step at a time as the store
	 * takes it, and its envelope until ingest_finish copies it */
	char *data;
	size_t len, fed;
	bool finished;
	char *from, *origin, *user;
	char **rcpts;
	size_t nrcpts;
	struct api_dsn *dsn; /* Nodemailer's `dsn`, or NULL */
};

/* Nodemailer's `dsn` option, as its SMTP client puts it on the wire
 * (RFC 3461; ENVID and ORCPT in xtext). */
struct api_dsn {
	char *ret, *envid, *notify, *orcpt;
};

static void api_dsn_free(struct api_dsn *d)
{
	if (d == NULL)
		return;
	free(d->ret);
	free(d->envid);
	free(d->notify);
	free(d->orcpt);
	free(d);
}

/* xtext (RFC 3461 4): "+XX" for "+", "=" and what is not printable ASCII. */
static char *xtext(const char *s)
{
	char *out = xmalloc(3 * strlen(s) + 1), *o = out;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < '!' || *p > '~' || *p == '+' || *p == '=')
			o += sprintf(o, "+%02X", *p);
		else
			*o++ = (char)*p;
	}
	*o = '\0';
	return out;
}

static const char *string_of(json_t *v)
{
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Reads `dsn` as Nodemailer's SMTP client does (ret/return, envid/id,
 * notify as a string or a list, recipient/orcpt); 0, or -1 and `err`. */
static int api_dsn_parse(json_t *v, struct api_dsn **out, struct compose_error *err)
{
	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_object(v)) {
		snprintf(err->field, sizeof(err->field), "dsn");
		snprintf(err->message, sizeof(err->message), "must be an object");
		return -1;
	}
	struct api_dsn *d = xcalloc(1, sizeof(*d));
	const char *ret = string_of(json_object_get(v, "ret"));
	if (ret == NULL)
		ret = string_of(json_object_get(v, "return"));
	if (ret != NULL && *ret != '\0') {
		if (strcasecmp(ret, "hdrs") == 0 || strcasecmp(ret, "headers") == 0)
			d->ret = xstrdup("HDRS");
		else if (strcasecmp(ret, "full") == 0 || strcasecmp(ret, "body") == 0)
			d->ret = xstrdup("FULL");
		else {
			snprintf(err->field, sizeof(err->field), "dsn.ret");
			snprintf(err->message, sizeof(err->message),
				 "must be headers (HDRS) or full (FULL)");
			goto fail;
		}
	}
	const char *envid = string_of(json_object_get(v, "envid"));
	if (envid == NULL)
		envid = string_of(json_object_get(v, "id"));
	if (envid != NULL && *envid != '\0') {
		d->envid = xtext(envid);
		if (strlen(d->envid) > 100) {
			snprintf(err->field, sizeof(err->field), "dsn.envid");
			snprintf(err->message, sizeof(err->message),
				 "at most 100 characters once encoded as xtext (RFC 3461)");
			goto fail;
		}
	}
	json_t *notify = json_object_get(v, "notify");
	if (notify != NULL && !json_is_null(notify)) {
		/* A list, or a string of comma-separated words. */
		char *list = NULL;
		if (json_is_string(notify)) {
			list = xstrdup(json_string_value(notify));
		} else if (json_is_array(notify)) {
			size_t i;
			json_t *e;
			list = xstrdup("");
			json_array_foreach (notify, i, e) {
				char *more = xasprintf("%s%s%s", list, i ? "," : "",
						       json_is_string(e) ? json_string_value(e)
									 : "?");
				free(list);
				list = more;
			}
		}
		unsigned seen = 0;
		bool ok = list != NULL && *list != '\0';
		char *save = NULL;
		static const char *const words[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};
		for (char *w = list ? strtok_r(list, ",", &save) : NULL; ok && w;
		     w = strtok_r(NULL, ",", &save)) {
			while (*w == ' ')
				w++;
			size_t n = strlen(w);
			while (n > 0 && w[n - 1] == ' ')
				w[--n] = '\0';
			size_t k = 0;
			while (k < 4 && strcasecmp(w, words[k]) != 0)
				k++;
			ok = k < 4 && !(seen & (1u << k));
			seen |= 1u << k;
		}
		free(list);
		if (!ok || ((seen & 1u) && seen != 1u)) {
			snprintf(err->field, sizeof(err->field), "dsn.notify");
			snprintf(err->message, sizeof(err->message),
				 "never, or some of success, failure and delay");
			goto fail;
		}
		char buf[32] = "";
		for (size_t k = 0; k < 4; k++)
			if (seen & (1u << k))
				snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
					 buf[0] ? "," : "", words[k]);
		d->notify = xstrdup(buf);
	}
	const char *orcpt = string_of(json_object_get(v, "recipient"));
	if (orcpt == NULL)
		orcpt = string_of(json_object_get(v, "orcpt"));
	if (orcpt != NULL && *orcpt != '\0') {
		char *x = xtext(orcpt);
		d->orcpt = strchr(orcpt, ';') ? xstrdup(x) : xasprintf("rfc822;%s", x);
		free(x);
		if (strlen(d->orcpt) > 500) {
			snprintf(err->field, sizeof(err->field), "dsn.recipient");
			snprintf(err->message, sizeof(err->message),
				 "at most 500 characters once encoded as xtext (RFC 3461)");
			goto fail;
		}
	}
	*out = d;
	return 0;
fail:
	api_dsn_free(d);
	return -1;
}

static void sending_free(struct sending *s)
{
	api_on_gone(s->api, s->conn, NULL, NULL);
	u64map_remove(s->api->sendings, s->id);
	ingest_free(s->ingest);
	json_decref(s->answer);
	free(s->data);
	free(s->from);
	free(s->origin);
	api_dsn_free(s->dsn);
	free(s->user);
	for (size_t i = 0; i < s->nrcpts; i++)
		free(s->rcpts[i]);
	free(s->rcpts);
	free(s);
}

static void on_client_gone(void *arg)
{
	sending_free(arg); /* the commit goes on; its answer is dropped */
}

static struct sending *sending_new(struct api *api, struct evhttp_request *req)
{
	struct sending *s = xcalloc(1, sizeof(*s));
	s->api = api;
	s->id = ++api->next_sending;
	s->req = req;
	s->conn = evhttp_request_get_connection(req);
	u64map_put(api->sendings, s->id, s);
	api_on_gone(api, s->conn, on_client_gone, s);
	return s;
}

static void queued(void *arg, int rc, const char *error)
{
	struct sending *s = arg;
	struct evhttp_request *req = s->req;
	if (rc == 0) {
		stats_message_accepted("api");
		json_object_set_new(s->answer, "id", json_string(ingest_id(s->ingest)));
		/* ZoneMTA's answer, word for word */
		json_object_set_new(s->answer, "response",
				    json_sprintf("Message queued as %s", ingest_id(s->ingest)));
		if (json_object_get(s->answer, "messageId") == NULL)
			json_object_set_new(s->answer, "messageId",
					    json_string(ingest_message_id(s->ingest)));
		json_t *answer = json_incref(s->answer);
		sending_free(s);
		api_reply_json(req, HTTP_OK, answer);
		return;
	}
	stats_message_rejected("api");
	/* `error` belongs to the ingest, freed with the sending. */
	char *text = xstrdup(error                   ? error
			     : rc == INGEST_REJECTED ? "message rejected"
			     : rc == INGEST_DEFERRED ? "message deferred, try again later"
						     : "the queue could not store the message");
	sending_free(s);
	/* A hook's refusal is 403 for good, 503 for now, with its reply. */
	int status = rc == INGEST_REJECTED ? 403 : rc == QUEUE_ERR_SPACE ? 507 : HTTP_SERVUNAVAIL;
	api_reply_field_error(req, status, "", text);
	free(text);
}

/* Whether the caller may say who it speaks for: api.trustHeaders, or any
 * request that passed api.auth (the only kind that gets here with auth). */
static bool trusts_headers(const struct api *api)
{
	const struct api_config *c = &api->cfg->api;
	return c->trust_headers || c->api_key != NULL || c->user != NULL;
}

/* The client's address, or X-Originating-IP when trusted and it names one. */
static const char *origin_of(struct api *api, struct evhttp_request *req)
{
	const char *o = trusts_headers(api)
			    ? evhttp_find_header(evhttp_request_get_input_headers(req),
						 "X-Originating-IP")
			    : NULL;
	unsigned char buf[16];
	if (o != NULL && (inet_pton(AF_INET, o, buf) == 1 || inet_pton(AF_INET6, o, buf) == 1))
		return o; /* only an address: it goes into the Received header */
	char *addr = NULL;
	ev_uint16_t port;
	evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
	return addr ? addr : "unknown";
}

/* Bytes fed to the ingest per step: the store takes a message at its pace,
 * so a 50 MB one never sits whole in write jobs. */
#define FEED_STEP (256 * 1024)

/* Feeds the message while the store keeps up, then commits it. */
static void feed(struct sending *s)
{
	if (s->finished)
		return; /* a drain after the last write */
	while (s->fed < s->len && !ingest_busy(s->ingest)) {
		size_t n = s->len - s->fed < FEED_STEP ? s->len - s->fed : FEED_STEP;
		if (ingest_write(s->ingest, s->data + s->fed, n) != 0) {
			struct evhttp_request *req = s->req;
			sending_free(s);
			stats_message_rejected("api");
			api_reply_field_error(req, 413, "", "message header exceeds 1 MiB");
			return;
		}
		s->fed += n;
	}
	if (s->fed < s->len)
		return; /* on_drain goes on */
	free(s->data);
	s->data = NULL;
	s->finished = true;
	/* Nodemailer's dsn.notify and dsn.recipient go with every recipient. */
	struct ingest_dsn_rcpt *per_rcpt = NULL;
	if (s->dsn != NULL && (s->dsn->notify != NULL || s->dsn->orcpt != NULL)) {
		per_rcpt = xcalloc(s->nrcpts ? s->nrcpts : 1, sizeof(*per_rcpt));
		for (size_t i = 0; i < s->nrcpts; i++)
			per_rcpt[i] = (struct ingest_dsn_rcpt){s->dsn->notify, s->dsn->orcpt};
	}
	struct ingest_envelope env = {
	    .interface = "api",
	    .origin = s->origin,
	    .transhost = "",
	    .transtype = "HTTP",
	    .user = s->user,
	    .from = s->from,
	    .rcpts = s->rcpts,
	    .nrcpts = s->nrcpts,
	    .dsn_ret = s->dsn ? s->dsn->ret : NULL,
	    .dsn_envid = s->dsn ? s->dsn->envid : NULL,
	    .dsn_rcpts = per_rcpt,
	    .allow_routing_headers = s->api->cfg->api.allow_routing_headers,
	    .received_by = s->api->cfg->hostname,
	};
	ingest_finish(s->ingest, &env, queued, s);
	free(per_rcpt); /* the ingest has its copy */
}

static void on_store_drain(void *arg)
{
	feed(arg);
}

/* Hands a complete message (`data`, taken over) to a new ingest. */
static void submit(struct sending *s, char *data, size_t len, const char *from, char *const *rcpts,
		   size_t nrcpts, json_t *answer)
{
	struct api *api = s->api;
	struct evhttp_request *req = s->req;
	for (size_t i = 0; i < nrcpts && api->cfg->suppress_at_intake; i++) {
		const struct suppression *e = suppressions_match(queue_suppressions(api->queue),
								 rcpts[i]);
		if (e != NULL) {
			char *what = xasprintf("recipient %s is on the suppression list (entry %s)",
					       rcpts[i], e->id);
			sending_free(s);
			free(data);
			json_decref(answer);
			stats_message_rejected("api");
			api_reply_field_error(req, 403, "to", what);
			free(what);
			return;
		}
	}
	s->answer = answer;
	s->data = data;
	s->len = len;
	s->from = xstrdup(from);
	s->origin = xstrdup(origin_of(api, req));
	const char *user = trusts_headers(api)
			       ? evhttp_find_header(evhttp_request_get_input_headers(req),
						    "X-Authenticated-User")
			       : NULL;
	s->user = user ? xstrdup(user) : NULL;
	s->rcpts = xcalloc(nrcpts ? nrcpts : 1, sizeof(char *));
	for (size_t i = 0; i < nrcpts; i++)
		s->rcpts[i] = xstrdup(rcpts[i]);
	s->nrcpts = nrcpts;
	s->ingest = ingest_new(api->queue, api->cfg, on_store_drain, s);
	feed(s);
}

static bool maildrop_allowed(struct api *api, struct evhttp_request *req)
{
	if (api->cfg->api.maildrop)
		return true;
	api_reply_error(req, 403, "sending over the API is disabled (api.maildrop)");
	return false;
}

static json_t *string_list(char *const *items, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(items[i]));
	return a;
}

/* A /send body on its way through the worker pool. */
struct composing {
	struct workpool_job job;
	struct api *api;
	uint64_t sending;
	struct evbuffer *body; /* moved out of the request */
	/* the result */
	int rc; /* 0, or -1 with err */
	struct compose_error err;
	struct compose_result out;
	struct api_dsn *dsn;
};

/* Worker: the JSON parsed, the message composed. */
static void compose_run(struct workpool_job *job)
{
	struct composing *c = (struct composing *)job;
	size_t len = evbuffer_get_length(c->body);
	const char *text = (const char *)evbuffer_pullup(c->body, -1);
	json_error_t jerr;
	json_t *msg = json_loadb(text ? text : "", len, 0, &jerr);
	evbuffer_free(c->body);
	c->body = NULL;
	if (msg == NULL) {
		c->rc = -1;
		c->err.field[0] = '\0';
		snprintf(c->err.message, sizeof(c->err.message),
			 "invalid JSON: %s at line %d column %d", jerr.text, jerr.line,
			 jerr.column);
		return;
	}
	c->rc = api_dsn_parse(json_object_get(msg, "dsn"), &c->dsn, &c->err);
	if (c->rc == 0) {
		c->rc = compose_message(msg, c->api->cfg->hostname, &c->out, &c->err);
		if (c->rc != 0) {
			api_dsn_free(c->dsn);
			c->dsn = NULL;
		}
	}
	json_decref(msg);
}

static void composing_free(struct composing *c)
{
	if (c->rc == 0)
		compose_result_clear(&c->out);
	api_dsn_free(c->dsn);
	if (c->body != NULL)
		evbuffer_free(c->body);
	free(c);
}

/* Loop: the composed message goes to the queue, if its client is still there. */
static void compose_done(struct workpool_job *job)
{
	struct composing *c = (struct composing *)job;
	struct api *api = c->api;
	struct sending *s = u64map_get(api->sendings, c->sending);
	struct compose_result *out = &c->out;
	if (s == NULL) {
		/* The client went: nothing to answer. */
	} else if (c->rc != 0) {
		struct evhttp_request *req = s->req;
		sending_free(s);
		stats_message_rejected("api");
		api_reply_field_error(req, HTTP_BADREQUEST, c->err.field, c->err.message);
	} else if (out->nrcpts > (size_t)api->cfg->api.max_recipients) {
		char what[100];
		snprintf(what, sizeof(what), "too many recipients: %zu, api.maxRecipients is %d",
			 out->nrcpts, api->cfg->api.max_recipients);
		struct evhttp_request *req = s->req;
		sending_free(s);
		stats_message_rejected("api");
		api_reply_field_error(req, HTTP_BADREQUEST, "to", what);
	} else {
		json_t *answer = json_pack("{s:s, s:o}", "from", out->from, "to",
					   string_list(out->rcpts, out->nrcpts));
		if (out->message_id != NULL) /* else the ingest's own, once queued */
			json_object_set_new(answer, "messageId", json_string(out->message_id));
		char *message = out->message;
		out->message = NULL; /* the sending's now: GLib memory, but g_free is
				      * free() since GLib 2.46 */
		s->dsn = c->dsn;
		c->dsn = NULL;
		submit(s, message, out->len, out->from, out->rcpts, out->nrcpts, answer);
	}
	composing_free(c);
}

void route_send(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	if (!maildrop_allowed(api, req))
		return;
	struct composing *c = xcalloc(1, sizeof(*c));
	c->api = api;
	c->sending = sending_new(api, req)->id;
	c->body = evbuffer_new();
	/* Moves the chains, copies nothing. */
	evbuffer_add_buffer(c->body, evhttp_request_get_input_buffer(req));
	c->job.run = compose_run;
	c->job.done = compose_done;
	workpool_submit(api->cpu, &c->job);
}

void route_send_raw(struct api *api, struct evhttp_request *req, const struct api_params *params)
{
	(void)params;
	if (!maildrop_allowed(api, req))
		return;
	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t rawlen = evbuffer_get_length(body);
	const char *raw = (const char *)evbuffer_pullup(body, -1);
	if (raw != NULL && memchr(raw, '\0', rawlen) != NULL) {
		/* A receiver that drops NULs could read "CRLF NUL . CRLF" as the
		 * end of the data: never relayed. */
		stats_message_rejected("api");
		api_reply_field_error(req, HTTP_BADREQUEST, "", "message contains a NUL byte");
		return;
	}
	size_t len;
	char *data = compose_crlf_lines(raw ? raw : "", rawlen, &len);
	size_t scan = 0, end = 0;
	header_block_end(data, len, true, &scan, &end);
	struct header_list h = {0};
	header_list_parse(&h, data, end);

	/* The envelope: query parameters first, else the headers. */
	struct evkeyvalq query;
	TAILQ_INIT(&query);
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	if (q != NULL)
		evhttp_parse_query_str(q, &query);
	const char *qfrom = NULL, *qto[QUEUE_MAX_RCPTS];
	size_t nqto = 0;
	struct evkeyval *kv;
	TAILQ_FOREACH (kv, &query, next) {
		if (strcmp(kv->key, "from") == 0)
			qfrom = kv->value;
		else if (strcmp(kv->key, "to") == 0 && nqto < QUEUE_MAX_RCPTS)
			qto[nqto++] = kv->value;
	}
	struct compose_error cerr;
	char **from = NULL, **rcpts = NULL, *header_from = NULL;
	size_t nfrom = 0, nrcpts = 0;
	/* The headers only where the query does not say. */
	int rc = qfrom != NULL && nqto > 0
		     ? 0
		     : compose_headers_envelope(&h, &header_from, &rcpts, &nrcpts, &cerr);
	if (rc == 0 && qfrom != NULL)
		rc = compose_envelope_addresses(&qfrom, 1, "from", &from, &nfrom, &cerr);
	if (rc == 0 && nqto > 0) {
		for (size_t i = 0; i < nrcpts; i++)
			free(rcpts[i]);
		free(rcpts);
		rcpts = NULL;
		rc = compose_envelope_addresses(qto, nqto, "to", &rcpts, &nrcpts, &cerr);
	}
	evhttp_clear_headers(&query);
	if (rc == 0 && nrcpts == 0) {
		snprintf(cerr.field, sizeof(cerr.field), "to");
		snprintf(cerr.message, sizeof(cerr.message),
			 "no recipients: no To, Cc or Bcc header and no to= parameter");
		rc = -1;
	} else if (rc == 0 && nrcpts > (size_t)api->cfg->api.max_recipients) {
		snprintf(cerr.field, sizeof(cerr.field), "to");
		snprintf(cerr.message, sizeof(cerr.message), "too many recipients: %zu", nrcpts);
		rc = -1;
	}
	if (rc != 0) {
		stats_message_rejected("api");
		api_reply_field_error(req, HTTP_BADREQUEST, cerr.field, cerr.message);
	} else {
		const char *sender = qfrom != NULL         ? (nfrom > 0 ? from[0] : "")
				     : header_from != NULL ? header_from
							   : "";
		int mid = header_list_find(&h, "message-id");
		json_t *answer = json_pack("{s:s, s:o}", "from", sender, "to",
					   string_list(rcpts, nrcpts));
		if (mid >= 0)
			json_object_set_new(answer, "messageId", json_string(h.items[mid].value));
		submit(sending_new(api, req), data, len, sender, rcpts, nrcpts, answer);
		data = NULL; /* the sending's now */
	}
	header_list_clear(&h);
	free(header_from);
	free(data);
	for (size_t i = 0; i < nfrom; i++)
		free(from[i]);
	free(from);
	for (size_t i = 0; i < nrcpts; i++)
		free(rcpts[i]);
	free(rcpts);
}
