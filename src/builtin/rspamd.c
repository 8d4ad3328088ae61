/* SPDX-License-Identifier: EUPL-1.2 */
/* Rspamd checks on message:store; see rspamd.h and docs/rspamd.md. */
#include "builtin/rspamd.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cidr.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/xmalloc.h"
#include "hook/hook.h"
#include "msg/header.h"
#include "msg/ingest.h"
#include "net/http_client.h"

struct rspamd {
	const struct config *cfg;
	const struct rspamd_config *rc;
	struct http_client *http;
	struct u64map *checks; /* (uintptr_t)hook_call → struct check */
};

/* One message being checked. */
struct check {
	struct rspamd *r;
	struct hook_call *call;
	struct ingest_reader *reader;
	uint64_t http_id;
	char queue_id[64];
	int64_t started_ms;
};

static bool wanted(const struct rspamd_config *rc, const struct hook_ctx *ctx)
{
	if (!config_interface_listed(rc->interfaces, rc->n_interfaces, ctx->interface))
		return false;
	if (rc->skip_authenticated && ctx->user != NULL)
		return false;
	return ctx->client == NULL ||
	       !cidr_list_match(rc->ignore_origins, rc->n_ignore_origins, ctx->client);
}

static ssize_t body_read(void *arg, char *buf, size_t len)
{
	struct check *c = arg;
	ssize_t n = ingest_reader_read(c->reader, buf, len);
	if (n == INGEST_READ_WAIT)
		return HTTPC_BODY_WAIT;
	if (n == INGEST_READ_ERROR)
		return HTTPC_BODY_ERROR;
	return n;
}

static void body_ready(void *arg)
{
	struct check *c = arg;
	http_client_resume(c->r->http, c->http_id);
}

static void check_free(struct check *c)
{
	u64map_remove(c->r->checks, (uint64_t)(uintptr_t)c->call);
	ingest_reader_free(c->reader);
	free(c);
}

/* Rspamd's text for a reply: printable ASCII on one line, bounded. */
static void reply_text(char *out, size_t outlen, const char *code, const char *text,
		       const char *fallback)
{
	char clean[300];
	size_t n = 0;
	for (const char *p = text ? text : ""; *p && n + 1 < sizeof(clean); p++)
		clean[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : ' ';
	clean[n] = '\0';
	snprintf(out, outlen, "%s %s", code, n > 0 ? clean : fallback);
}

/* "A=1.00, B=-0.50" of the symbols, folded to stay within the line limit. */
static char *symbol_list(json_t *symbols)
{
	size_t cap = 256, len = 0, line = 40;
	char *out = xmalloc(cap);
	out[0] = '\0';
	const char *name;
	json_t *sym;
	json_object_foreach (symbols, name, sym) {
		char item[200];
		int k = snprintf(item, sizeof(item), "%s%.120s=%.2f", len ? ", " : "", name,
				 json_number_value(json_object_get(sym, "score")));
		if (k < 0)
			continue;
		bool fold = line + (size_t)k > 76 && len > 0;
		size_t need = len + (size_t)k + 4;
		out = xreallocarray_grow(out, &cap, need, 1);
		if (fold) {
			/* ", " then CRLF TAB before the next item */
			memcpy(out + len, ",\r\n\t", 4);
			len += 4;
			memmove(item, item + 2, strlen(item + 2) + 1);
			k -= 2;
			line = 1;
		}
		memcpy(out + len, item, (size_t)k + 1);
		len += (size_t)k;
		line += (size_t)k;
	}
	return out;
}

static bool ascii_text(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* The Subject: rewritten: Rspamd's own (when it gives a plain one), else
 * ZoneMTA's prefix before the field's bytes as they were. */
static void rewrite_subject(struct header_list *h, const char *theirs, double score)
{
	int i = header_list_find(h, "subject");
	char *value;
	if (theirs != NULL && *theirs && ascii_text(theirs) && strlen(theirs) < 900)
		value = xstrdup(theirs);
	else
		value = xasprintf("[***SPAM(%.2f)***] %s", score, i >= 0 ? h->items[i].value : "");
	header_list_remove(h, "subject");
	header_list_insert(h, i >= 0 ? (size_t)i : h->count, "Subject", value);
	free(value);
}

static void answer(struct check *c, enum hook_verdict v, const char *reply)
{
	struct hook_call *call = c->call;
	check_free(c);
	hook_answer(call, v, reply);
}

static void failed(struct check *c, const char *why)
{
	const struct rspamd_config *rc = c->r->rc;
	log_msg(LOG_LEVEL_WARN, c->queue_id, "rspamd_error", "url=%s error=\"%s\" action=%s",
		rc->url, why, rc->tempfail_on_error ? "tempfail" : "accept");
	stats_add(STATS_RSPAMD_CHECKS, "error", 1);
	if (rc->tempfail_on_error)
		answer(c, HOOK_TEMPFAIL,
		       "451 4.7.1 The spam check is not available, try again later");
	else
		answer(c, HOOK_CONTINUE, NULL);
}

static void on_answer(void *arg, const struct http_response *res)
{
	struct check *c = arg;
	c->http_id = 0;
	const struct rspamd_config *rc = c->r->rc;
	if (res->error != HTTPC_OK) {
		failed(c, res->error_text);
		return;
	}
	char why[160];
	if (res->status != 200) {
		snprintf(why, sizeof(why), "HTTP status %d", res->status);
		failed(c, why);
		return;
	}
	json_error_t jerr;
	json_t *j = json_loadb(res->body, res->body_len, 0, &jerr);
	const char *action = json_string_value(json_object_get(j, "action"));
	if (action == NULL) {
		snprintf(why, sizeof(why), "answer without an action%s%.100s", j ? "" : ": ",
			 j ? "" : jerr.text);
		json_decref(j);
		failed(c, why);
		return;
	}
	double score = json_number_value(json_object_get(j, "score"));
	double required = json_number_value(json_object_get(j, "required_score"));
	json_t *symbols = json_object_get(j, "symbols");
	char *tests = symbol_list(symbols);
	const char *message = json_string_value(
	    json_object_get(json_object_get(j, "messages"), "smtp_message"));
	enum rspamd_verdict v = RSPAMD_ACCEPT;
	bool known = false;
	for (size_t a = 0; a < RSPAMD_ACT_COUNT && !known; a++)
		if (strcmp(action, rspamd_action_names[a]) == 0) {
			v = rc->actions[a];
			known = true;
		}
	static const char *const verdict_names[] = {"accept", "reject", "tempfail", "header",
						    "subject"};
	log_msg(LOG_LEVEL_INFO, c->queue_id, "rspamd",
		"score=%.2f required=%.2f action=\"%s\" result=%s ms=%lld tests=[%s]", score,
		required, action, known ? verdict_names[v] : "accept (unknown action)",
		(long long)(clock_mono_ms() - c->started_ms), tests);
	stats_add(STATS_RSPAMD_CHECKS, action, 1);
	struct header_list *h = hook_call_ctx(c->call)->headers;
	if (rc->headers && h != NULL) {
		/* ZoneMTA's names: at the bottom, for whoever debugs a delivery. */
		header_list_insert(h, h->count, "X-Zone-Spam-Resolution", action);
		char *status = xasprintf("%s, score=%.2f, required=%.2f%s%s%s",
					 v == RSPAMD_ACCEPT ? "No" : "Yes", score, required,
					 *tests ? ",\r\n\ttests=[" : "", tests, *tests ? "]" : "");
		header_list_insert(h, h->count, "X-Zone-Spam-Status", status);
		free(status);
	}
	free(tests);
	char reply[HOOK_REPLY_MAX];
	switch (v) {
	case RSPAMD_REJECT:
		reply_text(reply, sizeof(reply), "550 5.7.1", message,
			   "This message was classified as SPAM and may not be delivered");
		json_decref(j);
		answer(c, HOOK_REJECT, reply);
		return;
	case RSPAMD_TEMPFAIL:
		reply_text(reply, sizeof(reply), "451 4.7.1", message, "Try again later");
		json_decref(j);
		answer(c, HOOK_TEMPFAIL, reply);
		return;
	case RSPAMD_SUBJECT:
		if (h != NULL)
			rewrite_subject(h, json_string_value(json_object_get(j, "subject")), score);
		/* fall through */
	case RSPAMD_HEADER:
		if (h != NULL) {
			header_list_remove(h, "x-spam");
			header_list_insert(h, h->count, "X-Spam", "Yes");
		}
		break;
	case RSPAMD_ACCEPT:
		break;
	}
	json_decref(j);
	answer(c, HOOK_CONTINUE, NULL);
}

static enum hook_verdict on_store(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	struct rspamd *r = arg;
	const struct rspamd_config *rc = r->rc;
	if (ctx->ingest == NULL || !wanted(rc, ctx))
		return HOOK_CONTINUE;
	struct check *c = xcalloc(1, sizeof(*c));
	c->r = r;
	c->call = call;
	snprintf(c->queue_id, sizeof(c->queue_id), "%s", ctx->queue_id ? ctx->queue_id : "");
	c->reader = ingest_reader_new(ctx->ingest, body_ready, c);
	uint64_t size = ingest_reader_size(c->reader);
	if (size > rc->max_size) {
		log_msg(LOG_LEVEL_INFO, c->queue_id, "rspamd_skipped",
			"reason=size size=%llu max=%llu", (unsigned long long)size,
			(unsigned long long)rc->max_size);
		stats_add(STATS_RSPAMD_CHECKS, "skipped", 1);
		ingest_reader_free(c->reader);
		free(c);
		return HOOK_CONTINUE;
	}
	c->started_ms = clock_mono_ms();
	/* Rspamd's request headers (rspamd.com/doc/architecture/protocol.html). */
	size_t n = 0, cap = ctx->nrcpts + 8;
	char **lines = xcalloc(cap, sizeof(char *));
	if (ctx->client != NULL)
		lines[n++] = xasprintf("IP: %s", ctx->client);
	if (ctx->helo != NULL && *ctx->helo)
		lines[n++] = xasprintf("Helo: %s", ctx->helo);
	lines[n++] = xasprintf("From: <%s>", ctx->from ? ctx->from : "");
	for (size_t i = 0; i < ctx->nrcpts; i++)
		lines[n++] = xasprintf("Rcpt: <%s>", ctx->rcpts[i]);
	if (ctx->user != NULL)
		lines[n++] = xasprintf("User: %s", ctx->user);
	lines[n++] = xasprintf("Queue-Id: %s", c->queue_id);
	lines[n++] = xasprintf("MTA-Name: %s", r->cfg->hostname);
	for (size_t i = 0; i < n; i++)
		for (char *p = lines[i]; *p; p++)
			if (*p == '\r' || *p == '\n')
				*p = ' ';
	struct http_request req = {
	    .method = "POST",
	    .url = rc->url,
	    .headers = (const char *const *)lines,
	    .body_fn = body_read,
	    .body_arg = c,
	    .body_size = (int64_t)size,
	    .timeout_ms = rc->timeout_ms,
	};
	u64map_put(r->checks, (uint64_t)(uintptr_t)call, c);
	c->http_id = http_client_request(r->http, &req, on_answer, c);
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
	return HOOK_PENDING;
}

/* The message went (client gone, hook deadline): drop the request. */
static void on_cancel(struct hook_call *call, void *arg)
{
	struct rspamd *r = arg;
	struct check *c = u64map_get(r->checks, (uint64_t)(uintptr_t)call);
	if (c == NULL)
		return;
	http_client_cancel(r->http, c->http_id);
	check_free(c);
}

struct rspamd *rspamd_new(const struct config *cfg, struct http_client *http)
{
	if (!cfg->rspamd.enabled)
		return NULL;
	struct rspamd *r = xcalloc(1, sizeof(*r));
	r->cfg = cfg;
	r->rc = &cfg->rspamd;
	r->http = http;
	r->checks = u64map_new();
	hook_register(HOOK_MESSAGE_STORE, "rspamd", on_store, on_cancel, r);
	return r;
}

void rspamd_free(struct rspamd *r)
{
	if (r == NULL)
		return;
	u64map_free(r->checks);
	free(r);
}
