/* SPDX-License-Identifier: EUPL-1.2 */
/* Per-sender settings from an HTTP server; see http_config.h. */
#include "builtin/http_config.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/xmalloc.h"
#include "dkim/keyring.h"
#include "hook/hook.h"
#include "msg/header.h"
#include "net/http_client.h"

/* Sessions whose MAIL FROM was answered but whose message never came are
 * swept once there are this many, when older than SESSION_STALE_MS. */
#define SESSIONS_SWEEP 10000
#define SESSION_STALE_MS (10 * 60 * 1000)
/* Cached answers at most (the oldest expiry goes first past it). */
#define CACHE_MAX 10000

struct extra_header {
	char *name, *value;
};

struct runtime_key {
	char *domain, *selector;
	char hash[KEYRING_HASH_LEN];
};

/* One answer of the server, shared by the cache and the sessions. */
struct answer {
	int refs;
	int64_t expires_ms; /* monotonic: the cache's */
	char *refusal;      /* the server refuses the sender: the reply */
	bool refusal_temporary;
	char *zone;
	struct extra_header *headers;
	size_t nheaders;
	long long max_recipients; /* 0: no limit */
	uint64_t max_size;        /* 0: no limit */
	struct runtime_key *keys;
	size_t nkeys;
};

struct session_entry {
	struct answer *answer;
	int64_t at_ms;
};

struct http_config {
	const struct config *cfg;
	const struct http_config_config *hc;
	struct http_client *http;
	struct strmap *cache;    /* request form → struct answer */
	struct u64map *sessions; /* SMTP session id → struct session_entry */
	struct u64map *asking;   /* (uintptr_t)hook_call or fetch id → struct request */
	uint64_t next_fetch;
};

/* A request in flight, for a hook run or the keyring. */
struct request {
	struct http_config *h;
	struct hook_call *call; /* NULL: a keyring fetch */
	uint64_t key;           /* in h->asking */
	char *form;
	uint64_t http_id;
	keyring_done_fn done;
	void *done_arg;
};

static void answer_unref(struct answer *a)
{
	if (a == NULL || --a->refs > 0)
		return;
	free(a->refusal);
	free(a->zone);
	for (size_t i = 0; i < a->nheaders; i++) {
		free(a->headers[i].name);
		free(a->headers[i].value);
	}
	free(a->headers);
	for (size_t i = 0; i < a->nkeys; i++) {
		free(a->keys[i].domain);
		free(a->keys[i].selector);
	}
	free(a->keys);
	free(a);
}

static bool interface_wanted(const struct http_config_config *hc, const char *iface)
{
	return config_interface_listed(hc->interfaces, hc->n_interfaces, iface);
}

/* ZoneMTA's request fields (and the interface), form-encoded: also the
 * cache key. */
static char *request_form(const char *from, const char *origin, const char *transhost,
			  const char *user, const char *iface)
{
	size_t len = 0, cap = 256;
	char *buf = xmalloc(cap);
	buf[0] = '\0';
	char originhost[80];
	snprintf(originhost, sizeof(originhost), "[%s]", origin ? origin : "");
	http_form_append(&buf, &len, &cap, "from", from ? from : "");
	http_form_append(&buf, &len, &cap, "origin", origin ? origin : "");
	http_form_append(&buf, &len, &cap, "originhost", originhost);
	http_form_append(&buf, &len, &cap, "transhost", transhost ? transhost : "");
	http_form_append(&buf, &len, &cap, "user", user ? user : "");
	http_form_append(&buf, &len, &cap, "interface", iface ? iface : "");
	return buf;
}

static bool header_name_ok(const char *n)
{
	if (*n == '\0' || strlen(n) > 100)
		return false;
	for (; *n; n++)
		if (*n <= ' ' || *n > '~' || *n == ':')
			return false;
	return true;
}

static bool header_value_ok(const char *v)
{
	return strlen(v) < 900 && strpbrk(v, "\r\n") == NULL;
}

static const char *field(json_t *o, const char *a, const char *b)
{
	const char *v = json_string_value(json_object_get(o, a));
	return v != NULL ? v : json_string_value(json_object_get(o, b));
}

/* The server's {error, code}: a reply with an enhanced code of the same class. */
static void refusal_from(struct answer *a, json_t *j)
{
	const char *error = json_string_value(json_object_get(j, "error"));
	long long code = json_integer_value(json_object_get(j, "code"));
	if (code < 400 || code > 599)
		code = 550;
	char clean[300];
	size_t n = 0;
	for (const char *p = error; *p && n + 1 < sizeof(clean); p++)
		clean[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : ' ';
	clean[n] = '\0';
	bool enhanced = isdigit((unsigned char)clean[0]) && clean[1] == '.';
	a->refusal = xasprintf("%lld %s%s", code,
			       enhanced      ? ""
			       : code >= 500 ? "5.7.1 "
					     : "4.7.1 ",
			       n ? clean : "Sender refused");
	a->refusal_temporary = code < 500;
}

/* The answer's settings; NULL and *why when it is not usable at all. */
static struct answer *parse_answer(const char *body, size_t len, const char *log_id, char *why,
				   size_t whylen)
{
	json_error_t jerr;
	json_t *j = json_loadb(body, len, 0, &jerr);
	if (!json_is_object(j)) {
		snprintf(why, whylen, "answer is not a JSON object%s%.100s", j ? "" : ": ",
			 j ? "" : jerr.text);
		json_decref(j);
		return NULL;
	}
	struct answer *a = xcalloc(1, sizeof(*a));
	a->refs = 1;
	if (json_string_value(json_object_get(j, "error")) != NULL) {
		refusal_from(a, j);
		json_decref(j);
		return a;
	}
	const char *zone = field(j, "sendingZone", "zone");
	if (zone != NULL)
		a->zone = xstrdup(zone);
	json_t *mr = json_object_get(j, "maxRecipients");
	if (json_is_integer(mr) && json_integer_value(mr) > 0)
		a->max_recipients = json_integer_value(mr);
	json_t *ms = json_object_get(j, "maxSize");
	if (json_is_integer(ms) && json_integer_value(ms) > 0)
		a->max_size = (uint64_t)json_integer_value(ms);
	else if (json_is_string(ms))
		config_parse_size(json_string_value(ms), &a->max_size);
	/* headers: {name: value} or ["Name: value", ...] */
	json_t *hs = json_object_get(j, "headers");
	size_t nh = json_is_object(hs) ? json_object_size(hs) : json_array_size(hs);
	a->headers = xcalloc(nh ? nh : 1, sizeof(*a->headers));
	const char *name;
	json_t *v;
	size_t i;
	json_object_foreach (hs, name, v) {
		if (json_is_string(v) && header_name_ok(name) &&
		    header_value_ok(json_string_value(v)))
			a->headers[a->nheaders++] = (struct extra_header){
			    xstrdup(name), xstrdup(json_string_value(v))};
		else
			log_msg(LOG_LEVEL_WARN, log_id, "http_config",
				"header=\"%.100s\" action=ignored reason=\"not a field\"", name);
	}
	json_array_foreach (hs, i, v) {
		const char *line = json_string_value(v);
		const char *colon = line ? strchr(line, ':') : NULL;
		char *n = colon ? xstrndup(line, (size_t)(colon - line)) : NULL;
		const char *val = colon ? colon + 1 + (colon[1] == ' ') : NULL;
		if (n != NULL && header_name_ok(n) && header_value_ok(val))
			a->headers[a->nheaders++] = (struct extra_header){n, xstrdup(val)};
		else {
			log_msg(LOG_LEVEL_WARN, log_id, "http_config",
				"header=\"%.100s\" action=ignored reason=\"not a field\"",
				line ? line : "?");
			free(n);
		}
	}
	/* dkim.keys: [{domainName|domain, keySelector|selector, privateKey}] */
	json_t *keys = json_object_get(json_object_get(j, "dkim"), "keys");
	a->keys = xcalloc(json_array_size(keys) + 1, sizeof(*a->keys));
	json_array_foreach (keys, i, v) {
		const char *d = field(v, "domainName", "domain");
		const char *sel = field(v, "keySelector", "selector");
		const char *pem = json_string_value(json_object_get(v, "privateKey"));
		struct runtime_key *k = &a->keys[a->nkeys];
		char *err = NULL;
		if (d == NULL || sel == NULL || pem == NULL) {
			log_msg(LOG_LEVEL_WARN, log_id, "http_config",
				"dkim_key=%zu action=ignored reason=\"needs domain, selector and "
				"privateKey\"",
				i);
		} else if (keyring_add(pem, k->hash, &err) != 0) {
			log_msg(LOG_LEVEL_WARN, log_id, "http_config",
				"dkim_key=%zu domain=%s selector=%s action=ignored error=\"%s\"", i,
				d, sel, err);
			free(err);
		} else {
			k->domain = xstrdup(d);
			for (char *p = k->domain; *p; p++)
				*p = (char)tolower((unsigned char)*p);
			k->selector = xstrdup(sel);
			a->nkeys++;
		}
	}
	json_decref(j);
	return a;
}

static void cache_put(struct http_config *h, const char *form, struct answer *a)
{
	if (h->hc->ttl_ms == 0)
		return;
	if (strmap_count(h->cache) >= CACHE_MAX) {
		/* Past the bound: what expired goes, else the entry expiring first. */
		int64_t now = clock_mono_ms();
		const char *oldest = NULL;
		int64_t oldest_at = INT64_MAX;
		size_t pos = 0;
		const char *k;
		void *v;
		char **gone = xcalloc(strmap_count(h->cache), sizeof(char *));
		size_t ngone = 0;
		while (strmap_next(h->cache, &pos, &k, &v)) {
			struct answer *x = v;
			if (x->expires_ms <= now)
				gone[ngone++] = xstrdup(k);
			else if (x->expires_ms < oldest_at) {
				oldest_at = x->expires_ms;
				oldest = k;
			}
		}
		if (ngone == 0 && oldest != NULL)
			gone[ngone++] = xstrdup(oldest);
		for (size_t i = 0; i < ngone; i++) {
			answer_unref(strmap_remove(h->cache, gone[i]));
			free(gone[i]);
		}
		free(gone);
	}
	a->refs++;
	a->expires_ms = clock_mono_ms() + (int64_t)h->hc->ttl_ms;
	answer_unref(strmap_put(h->cache, form, a));
}

/* A cached answer still fresh (a reference for the caller), or NULL. */
static struct answer *cache_get(struct http_config *h, const char *form)
{
	struct answer *a = strmap_get(h->cache, form);
	if (a == NULL)
		return NULL;
	if (a->expires_ms <= clock_mono_ms()) {
		answer_unref(strmap_remove(h->cache, form));
		return NULL;
	}
	a->refs++;
	return a;
}

static void session_set(struct http_config *h, uint64_t session, struct answer *a)
{
	int64_t now = clock_mono_ms();
	struct session_entry *e = u64map_get(h->sessions, session);
	if (e == NULL) {
		if (u64map_count(h->sessions) >= SESSIONS_SWEEP) {
			size_t pos = 0;
			uint64_t k;
			void *v;
			uint64_t *stale = xcalloc(u64map_count(h->sessions), sizeof(uint64_t));
			size_t n = 0;
			while (u64map_next(h->sessions, &pos, &k, &v))
				if (now - ((struct session_entry *)v)->at_ms > SESSION_STALE_MS)
					stale[n++] = k;
			for (size_t i = 0; i < n; i++) {
				struct session_entry *old = u64map_remove(h->sessions, stale[i]);
				answer_unref(old->answer);
				free(old);
			}
			free(stale);
		}
		e = xcalloc(1, sizeof(*e));
		u64map_put(h->sessions, session, e);
	} else {
		answer_unref(e->answer);
	}
	e->answer = a;
	e->at_ms = now;
}

/* The message's settings: limits, zone, headers, keys.  A verdict. */
static enum hook_verdict apply_message(struct http_config *h, struct hook_call *call,
				       const struct hook_ctx *ctx, const struct answer *a)
{
	if (a->max_size > 0 && ctx->size > a->max_size) {
		char reply[120];
		snprintf(reply, sizeof(reply),
			 "552 5.3.4 Message size exceeds the limit of this sender (%llu bytes)",
			 (unsigned long long)a->max_size);
		hook_set_reply(call, reply);
		return HOOK_REJECT;
	}
	if (a->max_recipients > 0 && (long long)ctx->nrcpts > a->max_recipients) {
		hook_set_reply(call, "550 5.5.3 Too many recipients for this sender");
		return HOOK_REJECT;
	}
	for (size_t i = 0; i < a->nheaders && ctx->headers != NULL; i++)
		header_list_insert(ctx->headers, ctx->headers->count, a->headers[i].name,
				   a->headers[i].value);
	if (a->zone != NULL && ctx->zone != NULL) {
		/* The configuration's string: it outlives the message. */
		const struct zone_config *z = config_zone(h->cfg, a->zone);
		if (z != NULL)
			*ctx->zone = z->name;
		else
			log_msg(LOG_LEVEL_WARN, ctx->queue_id, "http_config",
				"zone=%.60s action=ignored reason=\"no such zone\"", a->zone);
	}
	if (a->nkeys > 0 && ctx->meta != NULL) {
		/* By hash only: the private key stays in memory (keyring.h). */
		json_t *keys = json_array();
		for (size_t i = 0; i < a->nkeys; i++)
			json_array_append_new(keys, json_pack("{s:s, s:s, s:s}", "domain",
							      a->keys[i].domain, "selector",
							      a->keys[i].selector, "key",
							      a->keys[i].hash));
		json_object_set_new(ctx->meta, "dkimKeys", keys);
	}
	return HOOK_CONTINUE;
}

/* The answer at a point (taken): refuse, remember (MAIL FROM), or apply. */
static enum hook_verdict apply(struct http_config *h, struct hook_call *call,
			       const struct hook_ctx *ctx, struct answer *a)
{
	enum hook_verdict v;
	if (a->refusal != NULL) {
		hook_set_reply(call, a->refusal);
		v = a->refusal_temporary ? HOOK_TEMPFAIL : HOOK_REJECT;
	} else if (ctx->session != 0 && ctx->ingest == NULL) {
		/* MAIL FROM: the message comes later (message:headers). */
		session_set(h, ctx->session, a);
		return HOOK_CONTINUE;
	} else {
		v = apply_message(h, call, ctx, a);
	}
	answer_unref(a);
	return v;
}

static void request_free(struct request *r)
{
	u64map_remove(r->h->asking, r->key);
	free(r->form);
	free(r);
}

static void on_answer(void *arg, const struct http_response *res)
{
	struct request *r = arg;
	struct http_config *h = r->h;
	r->http_id = 0;
	char why[200] = "";
	struct answer *a = NULL;
	const char *log_id = NULL;
	if (r->call != NULL)
		log_id = hook_call_ctx(r->call)->queue_id;
	if (res->error != HTTPC_OK)
		snprintf(why, sizeof(why), "%s", res->error_text);
	else if (res->status != 200)
		snprintf(why, sizeof(why), "HTTP status %d", res->status);
	else
		a = parse_answer(res->body, res->body_len, log_id, why, sizeof(why));
	if (a != NULL)
		cache_put(h, r->form, a);
	if (r->call == NULL) {
		/* the keyring asked: its keys are in the keyring now */
		keyring_done_fn done = r->done;
		void *done_arg = r->done_arg;
		if (a == NULL)
			log_msg(LOG_LEVEL_WARN, NULL, "http_config_error", "url=%s error=\"%s\"",
				h->hc->url, why);
		answer_unref(a);
		request_free(r);
		done(done_arg, a != NULL);
		return;
	}
	struct hook_call *call = r->call;
	const struct hook_ctx *ctx = hook_call_ctx(call);
	request_free(r);
	if (a == NULL) {
		log_msg(LOG_LEVEL_WARN, ctx->queue_id, "http_config_error",
			"url=%s from=<%s> error=\"%s\" action=%s", h->hc->url,
			ctx->address ? ctx->address
			: ctx->from  ? ctx->from
				     : "",
			why, h->hc->tempfail_on_error ? "tempfail" : "accept");
		if (h->hc->tempfail_on_error)
			hook_answer(
			    call, HOOK_TEMPFAIL,
			    "451 4.3.0 Sender configuration not available, try again later");
		else
			hook_answer(call, HOOK_CONTINUE, NULL);
		return;
	}
	enum hook_verdict v = apply(h, call, ctx, a);
	hook_answer(call, v, NULL);
}

static struct request *ask(struct http_config *h, const char *form, struct hook_call *call,
			   uint64_t key)
{
	struct request *r = xcalloc(1, sizeof(*r));
	r->h = h;
	r->call = call;
	r->key = key;
	r->form = xstrdup(form);
	u64map_put(h->asking, key, r);
	const char *headers[] = {"Content-Type: application/x-www-form-urlencoded",
				 "Accept: application/json", NULL};
	struct http_request req = {
	    .method = "POST",
	    .url = h->hc->url,
	    .headers = headers,
	    .body = form,
	    .body_len = strlen(form),
	    .timeout_ms = h->hc->timeout_ms,
	};
	r->http_id = http_client_request(h->http, &req, on_answer, r);
	return r;
}

/* Asks the server (or the cache) for the sender of this run. */
static enum hook_verdict lookup(struct http_config *h, struct hook_call *call,
				const struct hook_ctx *ctx, const char *from)
{
	char *form = request_form(from, ctx->client, ctx->helo, ctx->user, ctx->interface);
	struct answer *a = cache_get(h, form);
	if (a != NULL) {
		free(form);
		return apply(h, call, ctx, a);
	}
	ask(h, form, call, (uint64_t)(uintptr_t)call);
	free(form);
	return HOOK_PENDING;
}

static enum hook_verdict on_mail_from(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	struct http_config *h = arg;
	if (!interface_wanted(h->hc, ctx->interface))
		return HOOK_CONTINUE;
	return lookup(h, call, ctx, ctx->address);
}

static enum hook_verdict on_rcpt_to(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	struct http_config *h = arg;
	struct session_entry *e = u64map_get(h->sessions, ctx->session);
	if (e == NULL || e->answer->max_recipients == 0 ||
	    (long long)ctx->nrcpts < e->answer->max_recipients)
		return HOOK_CONTINUE;
	char reply[120];
	snprintf(reply, sizeof(reply),
		 "452 4.5.3 Too many recipients for this sender (at most %lld)",
		 e->answer->max_recipients);
	hook_set_reply(call, reply);
	return HOOK_TEMPFAIL;
}

static enum hook_verdict on_headers(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	struct http_config *h = arg;
	if (!interface_wanted(h->hc, ctx->interface))
		return HOOK_CONTINUE;
	if (ctx->session == 0)
		return lookup(h, call, ctx, ctx->from); /* /send: asked now */
	struct session_entry *e = u64map_remove(h->sessions, ctx->session);
	if (e == NULL)
		return HOOK_CONTINUE; /* MAIL FROM went on without an answer */
	enum hook_verdict v = apply_message(h, call, ctx, e->answer);
	answer_unref(e->answer);
	free(e);
	return v;
}

static void on_cancel(struct hook_call *call, void *arg)
{
	struct http_config *h = arg;
	struct request *r = u64map_get(h->asking, (uint64_t)(uintptr_t)call);
	if (r == NULL)
		return;
	http_client_cancel(h->http, r->http_id);
	request_free(r);
}

/* The keyring's source: the keys of a message queued before a restart. */
static uint64_t fetch_keys(void *arg, json_t *meta, keyring_done_fn done, void *done_arg)
{
	struct http_config *h = arg;
	char *form = request_form(json_string_value(json_object_get(meta, "from")),
				  json_string_value(json_object_get(meta, "origin")),
				  json_string_value(json_object_get(meta, "transhost")),
				  json_string_value(json_object_get(meta, "user")),
				  json_string_value(json_object_get(meta, "interface")));
	/* Fetch ids are above any pointer value a hook call has. */
	uint64_t id = (1ULL << 63) | ++h->next_fetch;
	struct request *r = ask(h, form, NULL, id);
	r->done = done;
	r->done_arg = done_arg;
	free(form);
	return id;
}

static void cancel_fetch(void *arg, uint64_t id)
{
	struct http_config *h = arg;
	struct request *r = u64map_get(h->asking, id);
	if (r == NULL)
		return;
	http_client_cancel(h->http, r->http_id);
	request_free(r);
}

struct http_config *http_config_new(const struct config *cfg, struct http_client *http)
{
	if (cfg->http_config.url == NULL)
		return NULL;
	struct http_config *h = xcalloc(1, sizeof(*h));
	h->cfg = cfg;
	h->hc = &cfg->http_config;
	h->http = http;
	h->cache = strmap_new();
	h->sessions = u64map_new();
	h->asking = u64map_new();
	hook_register(HOOK_SMTP_MAIL_FROM, "http-config", on_mail_from, on_cancel, h);
	hook_register(HOOK_SMTP_RCPT_TO, "http-config", on_rcpt_to, NULL, h);
	hook_register(HOOK_MESSAGE_HEADERS, "http-config", on_headers, on_cancel, h);
	keyring_set_source(&(struct keyring_source){fetch_keys, cancel_fetch, h});
	return h;
}

void http_config_free(struct http_config *h)
{
	if (h == NULL)
		return;
	keyring_set_source(NULL);
	size_t pos = 0;
	uint64_t k;
	void *v;
	while (u64map_next(h->asking, &pos, &k, &v)) {
		struct request *r = v;
		http_client_cancel(h->http, r->http_id);
		free(r->form);
		free(r);
	}
	u64map_free(h->asking);
	pos = 0;
	while (u64map_next(h->sessions, &pos, &k, &v)) {
		answer_unref(((struct session_entry *)v)->answer);
		free(v);
	}
	u64map_free(h->sessions);
	const char *sk;
	pos = 0;
	while (strmap_next(h->cache, &pos, &sk, &v))
		answer_unref(v);
	strmap_free(h->cache);
	free(h);
}
