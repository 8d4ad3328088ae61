/* SPDX-License-Identifier: EUPL-1.2 */
/* The hook bus; see hook.h. */
#include "hook/hook.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "core/hmap.h"
#include "core/log.h"
#include "core/xmalloc.h"

static const char *const point_names[HOOK_POINT_COUNT] = {
    [HOOK_SMTP_CONNECT] = "smtp:connect",
    [HOOK_SMTP_HELO] = "smtp:helo",
    [HOOK_SMTP_AUTH] = "smtp:auth",
    [HOOK_SMTP_MAIL_FROM] = "smtp:mail_from",
    [HOOK_SMTP_RCPT_TO] = "smtp:rcpt_to",
    [HOOK_SMTP_DATA] = "smtp:data",
    [HOOK_MESSAGE_HEADERS] = "message:headers",
    [HOOK_MESSAGE_STORE] = "message:store",
    [HOOK_MESSAGE_QUEUE] = "message:queue",
    [HOOK_QUEUE_ROUTE] = "queue:route",
    [HOOK_SENDER_CONNECT] = "sender:connect",
    [HOOK_SENDER_HEADERS] = "sender:headers",
    [HOOK_SENDER_DELIVERED] = "sender:delivered",
    [HOOK_SENDER_RESPONSE_ERROR] = "sender:responseError",
    [HOOK_QUEUE_BOUNCE] = "queue:bounce",
};

struct handler {
	char *name;
	hook_fn fn;
	hook_cancel_fn cancel;
	void *arg;
	struct handler *next;
};

struct hook_call {
	uint64_t id;
	enum hook_point point;
	const struct hook_ctx *ctx;
	hook_done_fn done;
	void *done_arg;
	struct handler *current; /* the handler asked last */
	bool in_handler;         /* inside current->fn: an answer now is synchronous */
	bool answered;           /* hook_answer came while in_handler */
	enum hook_verdict answer;
	char *reply;
	struct event *deadline;
};

static struct {
	struct handler *first[HOOK_POINT_COUNT];
	struct handler *last[HOOK_POINT_COUNT];
	struct event_base *base;
	uint64_t timeout_ms;
	struct u64map *pending; /* id -> struct hook_call */
	uint64_t next_id;
} bus;

const char *hook_point_name(enum hook_point point)
{
	return point < HOOK_POINT_COUNT ? point_names[point] : "none";
}

int hook_point_parse(const char *name, enum hook_point *point)
{
	for (int i = 0; i < HOOK_POINT_COUNT; i++) {
		if (strcmp(point_names[i], name) == 0) {
			*point = (enum hook_point)i;
			return 0;
		}
	}
	return -1;
}

const char *hook_verdict_name(enum hook_verdict v)
{
	switch (v) {
	case HOOK_CONTINUE:
		return "continue";
	case HOOK_ACCEPT:
		return "accept";
	case HOOK_REJECT:
		return "reject";
	case HOOK_TEMPFAIL:
		return "tempfail";
	case HOOK_PENDING:
		return "pending";
	}
	return "?";
}

void hook_init(struct event_base *base, uint64_t timeout_ms)
{
	bus.base = base;
	bus.timeout_ms = timeout_ms;
}

void hook_register(enum hook_point point, const char *name, hook_fn fn, hook_cancel_fn cancel,
		   void *arg)
{
	struct handler *h = xcalloc(1, sizeof(*h));
	h->name = xstrdup(name);
	h->fn = fn;
	h->cancel = cancel;
	h->arg = arg;
	if (bus.last[point] != NULL)
		bus.last[point]->next = h;
	else
		bus.first[point] = h;
	bus.last[point] = h;
}

bool hook_active(enum hook_point point)
{
	return point < HOOK_POINT_COUNT && bus.first[point] != NULL;
}

const struct hook_ctx *hook_call_ctx(const struct hook_call *call)
{
	return call->ctx;
}

void hook_set_reply(struct hook_call *call, const char *reply)
{
	free(call->reply);
	call->reply = reply != NULL ? xstrdup(reply) : NULL;
}

static void call_free(struct hook_call *call)
{
	if (call->id != 0)
		u64map_remove(bus.pending, call->id);
	if (call->deadline != NULL)
		event_free(call->deadline);
	free(call->reply);
	free(call);
}

/* One line, a code of the verdict's class (5yz REJECT, 4yz TEMPFAIL). */
static bool reply_fits(const char *r, enum hook_verdict verdict)
{
	char cls = verdict == HOOK_REJECT ? '5' : '4';
	return r[0] == cls && isdigit((unsigned char)r[1]) && isdigit((unsigned char)r[2]) &&
	       (r[3] == ' ' || r[3] == '\0') && strpbrk(r, "\r\n") == NULL &&
	       strlen(r) <= HOOK_REPLY_MAX;
}

static void call_end(struct hook_call *call, enum hook_verdict verdict)
{
	char *reply = call->reply;
	call->reply = NULL;
	if (reply != NULL && (verdict == HOOK_REJECT || verdict == HOOK_TEMPFAIL) &&
	    !reply_fits(reply, verdict)) {
		log_warn("hook_reply",
			 "point=%s handler=%s reply=\"%.80s\" action=replaced "
			 "reason=\"not one %s line\"",
			 hook_point_name(call->point), call->current->name, reply,
			 verdict == HOOK_REJECT ? "5yz" : "4yz");
		free(reply);
		reply = NULL;
	}
	struct hook_result res = {
	    .verdict = verdict,
	    .reply = verdict == HOOK_REJECT || verdict == HOOK_TEMPFAIL ? reply : NULL,
	    .handler = verdict != HOOK_CONTINUE && call->current ? call->current->name : NULL,
	};
	if (verdict == HOOK_REJECT || verdict == HOOK_TEMPFAIL)
		log_debug("hook", "point=%s handler=%s verdict=%s reply=\"%s\"",
			  hook_point_name(call->point), res.handler, hook_verdict_name(verdict),
			  res.reply ? res.reply : "");
	hook_done_fn done = call->done;
	void *arg = call->done_arg;
	/* Freed before done runs: done may start another run, or free what
	 * the context points to. */
	call_free(call);
	done(arg, &res);
	free(reply);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg);

/*
 * Asks handlers from call->current on until one decides or pends.  Returns
 * true when the run ended (call is freed), false when it waits.
 */
static bool call_step(struct hook_call *call, enum hook_verdict verdict)
{
	for (;;) {
		if (verdict != HOOK_CONTINUE) {
			call_end(call, verdict);
			return true;
		}
		call->current = call->current == NULL ? bus.first[call->point]
						      : call->current->next;
		if (call->current == NULL) {
			call_end(call, HOOK_CONTINUE);
			return true;
		}
		call->in_handler = true;
		call->answered = false;
		verdict = call->current->fn(call, call->ctx, call->current->arg);
		call->in_handler = false;
		if (verdict == HOOK_PENDING && call->answered)
			verdict = call->answer;
		if (verdict != HOOK_PENDING)
			continue;
		if (call->id == 0) {
			call->id = ++bus.next_id;
			if (bus.pending == NULL)
				bus.pending = u64map_new();
			u64map_put(bus.pending, call->id, call);
		}
		if (bus.base != NULL && bus.timeout_ms > 0) {
			if (call->deadline == NULL)
				call->deadline = evtimer_new(bus.base, on_deadline, call);
			struct timeval tv = {(time_t)(bus.timeout_ms / 1000),
					     (suseconds_t)(bus.timeout_ms % 1000) * 1000};
			evtimer_add(call->deadline, &tv);
		}
		return false;
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct hook_call *call = arg;
	log_warn("hook_timeout", "point=%s handler=%s timeout_ms=%llu",
		 hook_point_name(call->point), call->current->name,
		 (unsigned long long)bus.timeout_ms);
	if (call->current->cancel != NULL)
		call->current->cancel(call, call->current->arg);
	hook_set_reply(call, "451 4.3.0 Error: a plugin did not answer in time");
	call_end(call, HOOK_TEMPFAIL);
}

uint64_t hook_run(enum hook_point point, const struct hook_ctx *ctx, hook_done_fn done, void *arg)
{
	if (bus.first[point] == NULL) {
		done(arg, &(struct hook_result){HOOK_CONTINUE, NULL, NULL});
		return 0;
	}
	struct hook_call *call = xcalloc(1, sizeof(*call));
	call->point = point;
	call->ctx = ctx;
	call->done = done;
	call->done_arg = arg;
	/* The id is read before the step: a run that ends frees `call`. */
	if (call_step(call, HOOK_CONTINUE))
		return 0;
	return call->id;
}

/* A notification's own copy of its context. */
struct notice {
	struct hook_ctx ctx;
	char *strings[12];
};

static const char *notice_keep(struct notice *n, size_t *i, const char *s)
{
	if (s == NULL)
		return NULL;
	n->strings[*i] = xstrdup(s);
	return n->strings[(*i)++];
}

static void notice_done(void *arg, const struct hook_result *res)
{
	(void)res;
	struct notice *n = arg;
	for (size_t i = 0; i < sizeof(n->strings) / sizeof(n->strings[0]); i++)
		free(n->strings[i]);
	free(n);
}

void hook_notify(enum hook_point point, const struct hook_ctx *ctx)
{
	if (bus.first[point] == NULL)
		return;
	struct notice *n = xcalloc(1, sizeof(*n));
	size_t i = 0;
	n->ctx = (struct hook_ctx){
	    .session = ctx->session,
	    .interface = notice_keep(n, &i, ctx->interface),
	    .client = notice_keep(n, &i, ctx->client),
	    .address = notice_keep(n, &i, ctx->address),
	    .from = notice_keep(n, &i, ctx->from),
	    .queue_id = notice_keep(n, &i, ctx->queue_id),
	    .size = ctx->size,
	    .seq = ctx->seq,
	    .zone_name = notice_keep(n, &i, ctx->zone_name),
	    .domain = notice_keep(n, &i, ctx->domain),
	    .mx = notice_keep(n, &i, ctx->mx),
	    .local_ip = notice_keep(n, &i, ctx->local_ip),
	    .code = ctx->code,
	    .response = notice_keep(n, &i, ctx->response),
	    .category = notice_keep(n, &i, ctx->category),
	};
	hook_run(point, &n->ctx, notice_done, n);
}

void hook_answer(struct hook_call *call, enum hook_verdict verdict, const char *reply)
{
	if (verdict == HOOK_PENDING)
		fatal("hook: handler %s answered PENDING", call->current->name);
	if (reply != NULL)
		hook_set_reply(call, reply);
	if (call->in_handler) {
		call->answered = true;
		call->answer = verdict;
		return;
	}
	if (call->deadline != NULL)
		evtimer_del(call->deadline);
	call_step(call, verdict);
}

void hook_cancel(uint64_t id)
{
	if (id == 0 || bus.pending == NULL)
		return;
	struct hook_call *call = u64map_get(bus.pending, id);
	if (call == NULL)
		return;
	if (call->current->cancel != NULL)
		call->current->cancel(call, call->current->arg);
	call_free(call);
}

void hook_shutdown(void)
{
	if (bus.pending != NULL) {
		size_t pos = 0;
		uint64_t id;
		void *value;
		/* Collect first: cancelling removes entries from the map. */
		size_t n = u64map_count(bus.pending), i = 0;
		uint64_t *ids = xcalloc(n ? n : 1, sizeof(*ids));
		while (u64map_next(bus.pending, &pos, &id, &value))
			ids[i++] = id;
		for (i = 0; i < n; i++)
			hook_cancel(ids[i]);
		free(ids);
		u64map_free(bus.pending);
		bus.pending = NULL;
	}
	for (int p = 0; p < HOOK_POINT_COUNT; p++) {
		struct handler *h = bus.first[p];
		while (h != NULL) {
			struct handler *next = h->next;
			free(h->name);
			free(h);
			h = next;
		}
		bus.first[p] = bus.last[p] = NULL;
	}
	bus.base = NULL;
	bus.timeout_ms = 0;
}
