/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * The hook bus: named points in the life of a session, a message and a
 * delivery, each with an ordered list of handlers that may answer at once
 * or later.  Plugins (C today, Lua next) plug in here; the code that runs a
 * point does not know who listens.  docs/hooks.md lists the points and the
 * context each one sees.
 *
 * Everything here runs on the event loop thread.  A point with no handler
 * costs one array read: hook_run() calls `done` before it returns.
 */
#ifndef ZMTA_HOOK_H
#define ZMTA_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

struct header_list;
struct ingest;
struct json_t;

/* ZoneMTA's names where it has one (see hook_point_name). */
enum hook_point {
	HOOK_SMTP_CONNECT,
	HOOK_SMTP_HELO,
	HOOK_SMTP_AUTH,
	HOOK_SMTP_MAIL_FROM,
	HOOK_SMTP_RCPT_TO,
	HOOK_SMTP_DATA,
	HOOK_MESSAGE_HEADERS,
	HOOK_MESSAGE_STORE,
	HOOK_MESSAGE_QUEUE,
	HOOK_QUEUE_ROUTE,
	HOOK_SENDER_CONNECT,
	HOOK_SENDER_HEADERS,
	HOOK_SENDER_DELIVERED,
	HOOK_SENDER_RESPONSE_ERROR,
	HOOK_QUEUE_BOUNCE,
	HOOK_POINT_COUNT,
	HOOK_NONE = HOOK_POINT_COUNT, /* a command without a hook point */
};

enum hook_verdict {
	HOOK_CONTINUE, /* no opinion: ask the next handler */
	HOOK_ACCEPT,   /* go ahead, skipping the handlers after this one */
	HOOK_REJECT,   /* refuse for good (5xx) */
	HOOK_TEMPFAIL, /* refuse for now (4xx) */
	HOOK_PENDING,  /* returned by a handler that will call hook_answer() */
};

/*
 * What a point's handlers see.  Each point fills the fields docs/hooks.md
 * lists for it; the others are zero.  The context and everything it points
 * to stay valid until the run ends (done) or is cancelled.
 */
struct hook_ctx {
	/* the client side: SMTP session or API request */
	uint64_t session;      /* SMTP session id; 0 for the API */
	const char *interface; /* "feeder", "api", ... */
	const char *client;    /* client IP address */
	const char *helo;      /* HELO/EHLO name */
	const char *user;      /* authenticated user; smtp:auth: the one trying */
	const char *password;  /* smtp:auth only: never log it */
	const char *mechanism; /* smtp:auth only: "PLAIN" or "LOGIN" */
	/* smtp:mail_from, smtp:rcpt_to: the address given; sender:*: the recipient */
	const char *address;
	/* the envelope */
	const char *from;
	char *const *rcpts;
	size_t nrcpts;
	/* the message */
	const char *queue_id;
	struct header_list *headers; /* message:*, sender:headers: may be changed */
	/* message:store, message:queue: the message being received, for a
	 * content check to read back (ingest_reader_new, msg/ingest.h) */
	struct ingest *ingest;
	uint64_t size;
	/* queue:route: the zone chosen so far; a handler may point it at another
	 * zone's name (a string that outlives the run).  message:headers,
	 * message:store: NULL until a handler names the zone of every
	 * recipient (rules that look at each recipient then do not apply). */
	const char **zone;
	/* message:*: members a handler sets here (a JSON object) are stored in
	 * the message's metadata */
	struct json_t *meta;
	/* the delivery */
	uint32_t seq;
	const char *zone_name;
	const char *domain;
	const char *mx;       /* host connected to */
	const char *local_ip; /* address sent from */
	int code;             /* the server's reply code; 0 if none */
	const char *response; /* the server's reply or our error text */
	const char *category; /* the bounce rule's category */
	/* sender:responseError: a handler may set the next attempt, in ms from
	 * now, here (answering TEMPFAIL); a REJECT bounces the delivery */
	int64_t *retry_ms;
	/* sender:connect: where this connection goes, which a handler may
	 * change: a host name or address (a string that outlives the run) in
	 * place of the MX lookup or smart host, and the port */
	const char **next_hop;
	int *next_port;
};

/* Longest reply a handler may give. */
#define HOOK_REPLY_MAX 512

/* How a run ended.  `reply` is the handler's SMTP reply for REJECT and
 * TEMPFAIL ("550 5.7.1 ..."), or NULL to use the caller's default: a reply
 * that is not one line of at most HOOK_REPLY_MAX with a code of the
 * verdict's class (5yz, 4yz) is dropped with a warning.  `handler` names
 * who decided (NULL for CONTINUE). */
struct hook_result {
	enum hook_verdict verdict; /* CONTINUE (nobody decided), ACCEPT, REJECT, TEMPFAIL */
	const char *reply;
	const char *handler;
};

/* One run of a point, as a handler sees it. */
struct hook_call;

typedef enum hook_verdict (*hook_fn)(struct hook_call *call, const struct hook_ctx *ctx, void *arg);
/* The run was cancelled while this handler was pending: drop what it holds
 * for `call`, and never answer it. */
typedef void (*hook_cancel_fn)(struct hook_call *call, void *arg);
typedef void (*hook_done_fn)(void *arg, const struct hook_result *res);

/*
 * Sets the loop that pending runs' deadlines use, and the deadline: a
 * handler that has not answered after `timeout_ms` is cancelled and the run
 * ends TEMPFAIL ("451 4.3.0 ...").  Call once before the first run.
 */
void hook_init(struct event_base *base, uint64_t timeout_ms);
/* Unregisters every handler and ends pending runs without calling done. */
void hook_shutdown(void);

/* Adds a handler after those already on `point`.  `name` is for logs. */
void hook_register(enum hook_point point, const char *name, hook_fn fn, hook_cancel_fn cancel,
		   void *arg);
/* True when `point` has a handler: lets a caller skip building a context. */
bool hook_active(enum hook_point point);

/*
 * Runs the handlers of `point` in order.  Returns 0 when the run ended
 * before returning (done has been called), else the run's id for
 * hook_cancel(); done is then called later, exactly once, from the loop.
 */
uint64_t hook_run(enum hook_point point, const struct hook_ctx *ctx, hook_done_fn done, void *arg);
/*
 * Runs `point` to tell its handlers something that is decided already (a
 * delivery, a bounce): their verdicts are ignored.  The context's strings
 * are copied; its pointers to lists and headers are not passed on.
 */
void hook_notify(enum hook_point point, const struct hook_ctx *ctx);
/* Ends a pending run without calling done; unknown or ended ids are ignored. */
void hook_cancel(uint64_t id);

/* A pending handler's answer.  `reply` (copied) for REJECT and TEMPFAIL. */
void hook_answer(struct hook_call *call, enum hook_verdict verdict, const char *reply);
/* For a handler that answers synchronously with REJECT or TEMPFAIL. */
void hook_set_reply(struct hook_call *call, const char *reply);
/* The run's context (for a handler answering later). */
const struct hook_ctx *hook_call_ctx(const struct hook_call *call);

const char *hook_point_name(enum hook_point point);
/* Returns 0 and sets *point for a known name ("smtp:rcpt_to"), else -1. */
int hook_point_parse(const char *name, enum hook_point *point);
const char *hook_verdict_name(enum hook_verdict v);

#endif
