/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * A C plugin for the end-to-end tests of the hook bus, compiled only into
 * zone-mta-test-plugin.  What it does is keyed on the addresses and names
 * the tests use, so one binary serves every test; every answer that can be
 * late is late (a timer), as a real plugin asking a server would be.
 *
 *   smtp:connect     client 127.0.0.77: REJECT; 127.0.0.78: greeting after 200 ms
 *   smtp:helo        "reject.test": REJECT (default reply)
 *   smtp:auth        user hook-accept with password "hook-pw": ACCEPT after
 *                    20 ms; hook-reject: REJECT; hook-tempfail: TEMPFAIL;
 *                    others CONTINUE (the listener's backend decides)
 *   smtp:mail_from   hook-reject@...: REJECT with its own reply
 *   smtp:rcpt_to     hook-http-A-B@...: GET $ZMTA_TEST_HTTP_URL/A/B with the
 *                    daemon's HTTP client; 2xx CONTINUE, 4xx REJECT, else
 *                    TEMPFAIL, replies naming the status or error;
 *                    hook-delay-N@...: CONTINUE after N ms; hook-never@...: no
 *                    answer; hook-reject@...: REJECT; hook-tempfail@...:
 *                    TEMPFAIL (default reply); hook-badreply@...: REJECT with
 *                    "250 ..." (must be replaced)
 *   smtp:data        a recipient hook-data-reject@...: REJECT after 10 ms
 *   message:headers  adds X-Test-Plugin: headers; X-Test-Reject: REJECT
 *   message:store    logs the size
 *   queue:route      hook-route-ZONE@...: zone ZONE
 *   message:queue    sender hook-queue-tempfail@...: TEMPFAIL after 10 ms
 *   sender:connect   domain connect-reject.test: REJECT; connect-defer.test:
 *                    TEMPFAIL after 10 ms
 *   sender:headers   adds X-Test-Sender: <zone>
 *   sender:delivered, sender:responseError, queue:bounce: one log line each
 */
#include "test_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/xmalloc.h"
#include "hook/hook.h"
#include "msg/header.h"
#include "net/http_client.h"

static struct event_base *loop;
static struct http_client *http;

/* An answer that comes later. */
struct late {
	struct hook_call *call;
	struct event *timer;
	enum hook_verdict verdict;
	char *reply;
	struct late *next;
};
static struct late *lates;

static void late_free(struct late *l)
{
	for (struct late **p = &lates; *p != NULL; p = &(*p)->next) {
		if (*p == l) {
			*p = l->next;
			break;
		}
	}
	if (l->timer != NULL)
		event_free(l->timer);
	free(l->reply);
	free(l);
}

static void on_late(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct late *l = arg;
	struct hook_call *call = l->call;
	enum hook_verdict v = l->verdict;
	char *reply = l->reply ? xstrdup(l->reply) : NULL;
	late_free(l);
	hook_answer(call, v, reply);
	free(reply);
}

/* Answers `call` with `v` after `ms` milliseconds; ms < 0: never. */
static enum hook_verdict answer_later(struct hook_call *call, long ms, enum hook_verdict v,
				      const char *reply)
{
	struct late *l = xcalloc(1, sizeof(*l));
	l->call = call;
	l->verdict = v;
	l->reply = reply ? xstrdup(reply) : NULL;
	l->next = lates;
	lates = l;
	if (ms >= 0) {
		l->timer = evtimer_new(loop, on_late, l);
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		evtimer_add(l->timer, &tv);
	}
	return HOOK_PENDING;
}

/* An smtp:rcpt_to answered by an HTTP request. */
struct asking {
	struct hook_call *call;
	uint64_t request;
	struct asking *next;
};
static struct asking *askings;

static struct asking *asking_take(struct hook_call *call)
{
	for (struct asking **p = &askings; *p != NULL; p = &(*p)->next) {
		if ((*p)->call == call) {
			struct asking *a = *p;
			*p = a->next;
			return a;
		}
	}
	return NULL;
}

static void on_http_answer(void *arg, const struct http_response *res)
{
	struct asking *a = asking_take(arg);
	char reply[300];
	enum hook_verdict v;
	if (res->error == HTTPC_OK && res->status / 100 == 2) {
		v = HOOK_CONTINUE;
		reply[0] = '\0';
	} else if (res->error == HTTPC_OK && res->status / 100 == 4) {
		v = HOOK_REJECT;
		snprintf(reply, sizeof(reply), "550 5.7.1 http status %d", res->status);
	} else {
		v = HOOK_TEMPFAIL;
		snprintf(reply, sizeof(reply), "451 4.7.1 http %s%d", res->error_text, res->status);
	}
	struct hook_call *call = a->call;
	free(a);
	hook_answer(call, v, reply[0] ? reply : NULL);
}

static enum hook_verdict ask_http(struct hook_call *call, const char *what)
{
	const char *base_url = getenv("ZMTA_TEST_HTTP_URL");
	if (base_url == NULL)
		fatal("test_plugin: hook-http needs ZMTA_TEST_HTTP_URL");
	const char *at = strchr(what, '@');
	char *path = xasprintf("%s/%.*s", base_url, (int)(at - what), what);
	for (char *p = path + strlen(base_url); *p; p++)
		if (*p == '-')
			*p = '/';
	struct asking *a = xcalloc(1, sizeof(*a));
	a->call = call;
	a->next = askings;
	askings = a;
	struct http_request req = {.method = "GET", .url = path};
	a->request = http_client_request(http, &req, on_http_answer, call);
	free(path);
	return HOOK_PENDING;
}

static void on_cancel(struct hook_call *call, void *arg)
{
	struct asking *a = asking_take(call);
	if (a != NULL) {
		log_info("test_plugin", "point=%s action=cancelled request=http", (char *)arg);
		http_client_cancel(http, a->request);
		free(a);
		return;
	}
	const char *point = arg;
	for (struct late *l = lates; l != NULL; l = l->next) {
		if (l->call == call) {
			log_info("test_plugin", "point=%s action=cancelled address=%s", point,
				 hook_call_ctx(call)->address ? hook_call_ctx(call)->address : "");
			late_free(l);
			return;
		}
	}
	fatal("test_plugin: cancel of a call it does not hold");
}

static bool local_is(const char *addr, const char *local)
{
	size_t n = strlen(local);
	return addr != NULL && strncmp(addr, local, n) == 0 && addr[n] == '@';
}

static enum hook_verdict on_connect(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)arg;
	if (strcmp(ctx->client, "127.0.0.77") == 0) {
		hook_set_reply(call, "554 5.7.1 test plugin: not from 127.0.0.77");
		return HOOK_REJECT;
	}
	if (strcmp(ctx->client, "127.0.0.78") == 0)
		return answer_later(call, 200, HOOK_CONTINUE, NULL);
	return HOOK_CONTINUE;
}

static enum hook_verdict on_helo(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)call;
	(void)arg;
	return strcmp(ctx->helo, "reject.test") == 0 ? HOOK_REJECT : HOOK_CONTINUE;
}

static enum hook_verdict on_auth(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)arg;
	log_info("test_plugin", "point=smtp:auth user=\"%s\" mechanism=%s", ctx->user,
		 ctx->mechanism);
	if (strcmp(ctx->user, "hook-accept") == 0)
		return strcmp(ctx->password, "hook-pw") == 0
			   ? answer_later(call, 20, HOOK_ACCEPT, NULL)
			   : HOOK_REJECT;
	if (strcmp(ctx->user, "hook-reject") == 0)
		return HOOK_REJECT;
	if (strcmp(ctx->user, "hook-tempfail") == 0)
		return HOOK_TEMPFAIL;
	return HOOK_CONTINUE;
}

static enum hook_verdict on_mail_from(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)arg;
	if (!local_is(ctx->address, "hook-reject"))
		return HOOK_CONTINUE;
	hook_set_reply(call, "550 5.7.1 sender refused by test plugin");
	return HOOK_REJECT;
}

static enum hook_verdict on_rcpt_to(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)arg;
	const char *a = ctx->address;
	if (strncmp(a, "hook-http-", 10) == 0)
		return ask_http(call, a + 10);
	if (strncmp(a, "hook-delay-", 11) == 0)
		return answer_later(call, strtol(a + 11, NULL, 10), HOOK_CONTINUE, NULL);
	if (local_is(a, "hook-never"))
		return answer_later(call, -1, HOOK_CONTINUE, NULL);
	if (local_is(a, "hook-reject")) {
		char reply[600];
		snprintf(reply, sizeof(reply), "550 5.1.1 <%s> refused by test plugin", a);
		return answer_later(call, 5, HOOK_REJECT, reply);
	}
	if (local_is(a, "hook-tempfail"))
		return HOOK_TEMPFAIL;
	if (local_is(a, "hook-badreply")) {
		hook_set_reply(call, "250 looks fine");
		return HOOK_REJECT;
	}
	return HOOK_CONTINUE;
}

static enum hook_verdict on_data(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < ctx->nrcpts; i++)
		if (local_is(ctx->rcpts[i], "hook-data-reject"))
			return answer_later(call, 10, HOOK_REJECT, NULL);
	return HOOK_CONTINUE;
}

static enum hook_verdict on_headers(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)arg;
	if (header_list_find(ctx->headers, "x-test-reject") >= 0) {
		hook_set_reply(call, "550 5.7.1 header refused by test plugin");
		return HOOK_REJECT;
	}
	header_list_insert(ctx->headers, ctx->headers->count, "X-Test-Plugin", "headers");
	return HOOK_CONTINUE;
}

static enum hook_verdict on_store(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)call;
	(void)arg;
	log_info("test_plugin", "point=message:store id=%s size=%llu", ctx->queue_id,
		 (unsigned long long)ctx->size);
	return HOOK_CONTINUE;
}

static enum hook_verdict on_route(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)call;
	(void)arg;
	static char zone[64];
	const char *a = ctx->address;
	if (strncmp(a, "hook-route-", 11) != 0)
		return HOOK_CONTINUE;
	const char *at = strchr(a, '@');
	snprintf(zone, sizeof(zone), "%.*s", (int)(at - a - 11), a + 11);
	*ctx->zone = zone;
	return HOOK_CONTINUE;
}

static enum hook_verdict on_queue(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)arg;
	if (local_is(ctx->from, "hook-queue-tempfail"))
		return answer_later(call, 10, HOOK_TEMPFAIL,
				    "451 4.7.1 queue closed by test plugin");
	return HOOK_CONTINUE;
}

static enum hook_verdict on_sender_connect(struct hook_call *call, const struct hook_ctx *ctx,
					   void *arg)
{
	(void)arg;
	if (strcmp(ctx->domain, "connect-reject.test") == 0) {
		hook_set_reply(call, "550 5.7.1 refused by test plugin");
		return HOOK_REJECT;
	}
	if (strcmp(ctx->domain, "connect-defer.test") == 0)
		return answer_later(call, 10, HOOK_TEMPFAIL, "451 4.7.1 later, says test plugin");
	return HOOK_CONTINUE;
}

static enum hook_verdict on_sender_headers(struct hook_call *call, const struct hook_ctx *ctx,
					   void *arg)
{
	(void)call;
	(void)arg;
	header_list_insert(ctx->headers, ctx->headers->count, "X-Test-Sender", ctx->zone_name);
	return HOOK_CONTINUE;
}

static enum hook_verdict on_notice(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	(void)call;
	log_info("test_plugin", "point=%s id=%s seq=%u rcpt=%s code=%d category=%s", (char *)arg,
		 ctx->queue_id, ctx->seq, ctx->address, ctx->code,
		 ctx->category ? ctx->category : "-");
	return HOOK_CONTINUE;
}

int test_plugin_start(const struct plugin_env *env, char **err)
{
	(void)err;
	loop = env->base;
	http = env->http;
	hook_register(HOOK_SMTP_CONNECT, "test", on_connect, on_cancel, "smtp:connect");
	hook_register(HOOK_SMTP_HELO, "test", on_helo, NULL, NULL);
	hook_register(HOOK_SMTP_AUTH, "test", on_auth, on_cancel, "smtp:auth");
	hook_register(HOOK_SMTP_MAIL_FROM, "test", on_mail_from, NULL, NULL);
	hook_register(HOOK_SMTP_RCPT_TO, "test", on_rcpt_to, on_cancel, "smtp:rcpt_to");
	hook_register(HOOK_SMTP_DATA, "test", on_data, on_cancel, "smtp:data");
	hook_register(HOOK_MESSAGE_HEADERS, "test", on_headers, NULL, NULL);
	hook_register(HOOK_MESSAGE_STORE, "test", on_store, NULL, NULL);
	hook_register(HOOK_QUEUE_ROUTE, "test", on_route, NULL, NULL);
	hook_register(HOOK_MESSAGE_QUEUE, "test", on_queue, on_cancel, "message:queue");
	hook_register(HOOK_SENDER_CONNECT, "test", on_sender_connect, on_cancel, "sender:connect");
	hook_register(HOOK_SENDER_HEADERS, "test", on_sender_headers, NULL, NULL);
	hook_register(HOOK_SENDER_DELIVERED, "test", on_notice, NULL, "sender:delivered");
	hook_register(HOOK_SENDER_RESPONSE_ERROR, "test", on_notice, NULL, "sender:responseError");
	hook_register(HOOK_QUEUE_BOUNCE, "test", on_notice, NULL, "queue:bounce");
	log_info("test_plugin", "action=registered");
	return 0;
}
