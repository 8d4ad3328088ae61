/* SPDX-License-Identifier: EUPL-1.2 */
/* What plugin.c (states, sandbox, loading) and plugin_call.c (hook calls,
 * their contexts, the zmta library) share. */
#ifndef ZMTA_LUA_PLUGIN_INTERNAL_H
#define ZMTA_LUA_PLUGIN_INTERNAL_H

#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "hook/hook.h"
#include "lua/plugin.h"

struct plugin_call;

struct plugins {
	const struct config *cfg;
	struct event_base *base; /* NULL when only checking */
	struct http_client *http;
	struct queue *queue;  /* zmta.kv, once attached */
	struct dns *dns;      /* zmta.dns, once attached */
	struct plugin **list; /* the current state of each plugin, in order */
	size_t n;
	/* What the hook bus calls: one per plugin and point it ever used, so a
	 * reload swaps the state behind them without touching the bus. */
	struct plugin_slot *slots[HOOK_POINT_COUNT];
	struct plugin_call *calls;   /* pending, to end at free */
	struct strmap *kept_strings; /* strings handlers handed back (zones, next hops) */
};

struct plugin_slot {
	struct plugins *owner;
	size_t index; /* into owner->list */
	enum hook_point point;
	struct plugin_slot *next; /* the point's other plugins */
};

struct plugin {
	struct plugins *owner;
	const struct plugin_config *cfg;
	lua_State *L;
	size_t mem_used, mem_cap;
	bool mem_refused;
	bool loading;                /* its file runs: zmta.hook allowed */
	uint64_t load_instructions;  /* spent while loading */
	struct plugin_call *running; /* the call whose coroutine runs now */
	size_t nhooks;               /* zmta.hook calls */
	bool used[HOOK_POINT_COUNT]; /* points it registered for */
	int dispatch_ref;            /* runs a point's functions in order */
	/* a reloaded plugin's old state lives until its last call ends */
	unsigned calls;
	bool retired;
};

/* One hook call: a coroutine, and what it waits for. */
struct plugin_call {
	struct plugin *plugin;
	enum hook_point point;
	struct hook_call *call;
	lua_State *co;
	int co_ref, ctx_ref, headers_ref;
	uint64_t instructions;
	struct event *deadline; /* plugin timeout */
	struct event *sleep;    /* zmta.sleep */
	uint64_t http_req;      /* zmta.http.request */
	uint64_t kv_req;        /* zmta.kv.* */
	uint64_t dns_req;       /* zmta.dns.lookup */
	char *reply;            /* the handler's reply for REJECT and TEMPFAIL */
	int64_t started_us;
	struct plugin_call *prev, *next;
};

/* The plugin whose state L (or a thread of it) is. */
static inline struct plugin *plugin_of(lua_State *L)
{
	void *ud;
	lua_getallocf(L, &ud);
	return ud;
}

/* plugin_json.c: sets zmta.json (encode, decode) in the table on top. */
void plugin_open_json(lua_State *L);

/* plugin_call.c */
/* Pushes the zmta table (log, sleep, http, dns, kv, json) on L's stack. */
void plugin_open_zmta(lua_State *L, struct plugin *p);
/* The hook bus's handler and cancel functions (arg: struct plugin_slot). */
enum hook_verdict plugin_handle(struct hook_call *call, const struct hook_ctx *ctx, void *arg);
void plugin_cancel(struct hook_call *call, void *arg);
/* Ends a call: its timers and request go, its coroutine is released. */
void plugin_call_free(struct plugin_call *c);
/* Frees a state (a retired one once its last call is over). */
void plugin_close(struct plugin *p);
/* A log line "plugin=NAME msg=..." with the fields of the table at
 * index `fields` of L (0: none). */
void plugin_log(struct plugin *p, enum log_level level, const char *msg, lua_State *L, int fields);

#endif
