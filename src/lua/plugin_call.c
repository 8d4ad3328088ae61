/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * Lua plugins, one hook call at a time: the context as a table, headers as
 * an object over the message's header list, the coroutine and what it
 * waits for (zmta.sleep, zmta.http.request, zmta.dns.lookup, zmta.kv),
 * the verdict; see plugin.h.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/xmalloc.h"
#include "lua/plugin_internal.h"
#include "msg/header.h"
#include "mta/dns.h"
#include "net/http_client.h"
#include "queue/queue.h"

#define HEADERS_META "zmta.headers"

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- log lines --- */

static int key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void plugin_log(struct plugin *p, enum log_level level, const char *msg, lua_State *L, int fields)
{
	/* The fields as key="value", keys sorted (a table has no order). */
	char **kv = NULL;
	size_t n = 0;
	if (L != NULL && fields != 0 && lua_istable(L, fields)) {
		lua_pushnil(L);
		while (lua_next(L, fields) != 0) {
			const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
			if (k != NULL && k[0] != '\0' &&
			    strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567"
				      "89_") == strlen(k)) {
				const char *v = luaL_tolstring(L, -1, NULL);
				kv = xrealloc(kv, (n + 1) * sizeof(*kv));
				kv[n++] = xasprintf("%s=\"%s\"", k, v);
				lua_pop(L, 1);
			}
			lua_pop(L, 1);
		}
	}
	qsort(kv, n, sizeof(*kv), key_cmp);
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(kv[i]) + 1;
	char *extra = xmalloc(len), *w = extra;
	*w = '\0';
	for (size_t i = 0; i < n; i++) {
		w += sprintf(w, " %s", kv[i]);
		free(kv[i]);
	}
	free(kv);
	log_msg(level, NULL, "plugin", "plugin=%s msg=\"%s\"%s", p->cfg->name, msg, extra);
	free(extra);
}

static int zmta_log(lua_State *L)
{
	static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
	static const enum log_level values[] = {LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO,
						LOG_LEVEL_DEBUG};
	int level = luaL_checkoption(L, 1, "info", levels);
	const char *msg = luaL_checkstring(L, 2);
	plugin_log(plugin_of(L), values[level], msg, L, lua_istable(L, 3) ? 3 : 0);
	return 0;
}

/* --- calls --- */

static void call_unlink(struct plugin_call *c)
{
	struct plugins *ps = c->plugin->owner;
	*(c->prev ? &c->prev->next : &ps->calls) = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

struct headers_obj {
	struct header_list *list; /* NULL once the call is over */
};

void plugin_call_free(struct plugin_call *c)
{
	struct plugins *ps = c->plugin->owner;
	lua_State *L = c->plugin->L;
	call_unlink(c);
	if (c->deadline != NULL)
		event_free(c->deadline);
	if (c->sleep != NULL)
		event_free(c->sleep);
	if (c->http_req != 0)
		http_client_cancel(ps->http, c->http_req);
	if (c->kv_req != 0 && ps->queue != NULL)
		queue_request_cancel(ps->queue, c->kv_req);
	if (c->dns_req != 0 && ps->dns != NULL)
		dns_lookup_cancel(ps->dns, c->dns_req);
	if (c->headers_ref != LUA_NOREF) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, c->headers_ref);
		struct headers_obj *h = lua_touserdata(L, -1);
		if (h != NULL)
			h->list = NULL; /* a plugin that kept it can no longer reach freed memory */
		lua_pop(L, 1);
		luaL_unref(L, LUA_REGISTRYINDEX, c->headers_ref);
	}
	luaL_unref(L, LUA_REGISTRYINDEX, c->ctx_ref);
	luaL_unref(L, LUA_REGISTRYINDEX, c->co_ref);
	struct plugin *p = c->plugin;
	free(c->reply);
	free(c);
	if (--p->calls == 0 && p->retired)
		plugin_close(p); /* reloaded meanwhile: its last call is over */
}

/* The running call of L's plugin, if L is its own coroutine; else an error. */
static struct plugin_call *waiting_call(lua_State *L, const char *what)
{
	struct plugin *p = plugin_of(L);
	struct plugin_call *c = p->running;
	if (c == NULL || c->co != L)
		luaL_error(L,
			   "%s waits only in a hook's own coroutine (not at load, not in a "
			   "coroutine of the plugin's)",
			   what);
	if (p->owner->base == NULL)
		luaL_error(L, "%s: no event loop (check-config)", what);
	return c;
}

/* --- zmta.sleep(ms) --- */

static void resume_async(struct plugin_call *c, int nargs);

static void sleep_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct plugin_call *c = arg;
	event_free(c->sleep);
	c->sleep = NULL;
	resume_async(c, 0);
}

static int zmta_sleep(lua_State *L)
{
	lua_Integer ms = luaL_checkinteger(L, 1);
	luaL_argcheck(L, ms >= 0 && ms <= 24LL * 3600 * 1000, 1, "milliseconds from 0 to a day");
	struct plugin_call *c = waiting_call(L, "zmta.sleep");
	c->sleep = evtimer_new(c->plugin->owner->base, sleep_fired, c);
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(c->sleep, &tv);
	return lua_yield(L, 0);
}

/* --- zmta.http.request{method, url, headers, body, timeout} --- */

static void http_done(void *arg, const struct http_response *res)
{
	struct plugin_call *c = arg;
	c->http_req = 0;
	lua_State *co = c->co;
	lua_createtable(co, 0, 4);
	if (res->error == HTTPC_OK) {
		lua_pushinteger(co, res->status);
		lua_setfield(co, -2, "status");
		lua_pushlstring(co, res->body ? res->body : "", res->body_len);
		lua_setfield(co, -2, "body");
		if (res->content_type != NULL) {
			lua_pushstring(co, res->content_type);
			lua_setfield(co, -2, "contentType");
		}
	} else {
		lua_pushstring(co, res->error_text);
		lua_setfield(co, -2, "error");
	}
	resume_async(c, 1);
}

static int zmta_http_request(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "url");
	const char *url = luaL_checkstring(L, -1);
	lua_getfield(L, 1, "body");
	size_t body_len = 0;
	const char *body = luaL_optlstring(L, -1, NULL, &body_len);
	lua_getfield(L, 1, "method");
	const char *method = luaL_optstring(L, -1, body ? "POST" : "GET");
	lua_getfield(L, 1, "timeout");
	lua_Integer timeout = luaL_optinteger(L, -1, 0);
	struct plugin_call *c = waiting_call(L, "zmta.http.request");
	/* headers: {Name = value} */
	const char **lines = NULL;
	size_t n = 0;
	lua_getfield(L, 1, "headers");
	if (lua_istable(L, -1)) {
		lua_pushnil(L);
		while (lua_next(L, -2) != 0) {
			const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);
			if (k != NULL && v != NULL && strpbrk(k, "\r\n:") == NULL &&
			    strpbrk(v, "\r\n") == NULL) {
				lines = xrealloc(lines, (n + 2) * sizeof(*lines));
				lines[n++] = xasprintf("%s: %s", k, v);
			}
			lua_pop(L, 1);
		}
	}
	if (lines != NULL)
		lines[n] = NULL;
	struct http_request req = {
	    .method = method,
	    .url = url,
	    .headers = lines,
	    .body = body,
	    .body_len = body_len,
	    .timeout_ms = timeout > 0 ? (uint64_t)timeout : 0,
	};
	c->http_req = http_client_request(c->plugin->owner->http, &req, http_done, c);
	for (size_t i = 0; i < n; i++)
		free((char *)lines[i]);
	free(lines);
	return lua_yield(L, 0);
}

/* --- zmta.kv: text values by text key, per plugin, in the store --- */

/* Keys and values are text without NUL; keys at most this long. */
#define KV_KEY_MAX 512
#define KV_VALUE_MAX (1024 * 1024)

static char *kv_key(lua_State *L, struct plugin *p)
{
	size_t len;
	const char *key = luaL_checklstring(L, 1, &len);
	luaL_argcheck(L, len > 0 && len <= KV_KEY_MAX && memchr(key, '\0', len) == NULL, 1,
		      "a key of 1 to 512 characters, no NUL");
	return xasprintf("%s\n%s", p->cfg->name, key);
}

static struct plugin_call *kv_call(lua_State *L, const char *what)
{
	struct plugin_call *c = waiting_call(L, what);
	if (c->plugin->owner->queue == NULL)
		luaL_error(L, "%s: the store is not open yet", what);
	return c;
}

static void kv_read(void *arg, int rc, const char *data, size_t len)
{
	struct plugin_call *c = arg;
	c->kv_req = 0;
	if (rc == 1) {
		lua_pushlstring(c->co, data, len);
		resume_async(c, 1);
	} else if (rc == 0) {
		lua_pushnil(c->co);
		resume_async(c, 1);
	} else {
		lua_pushnil(c->co);
		lua_pushstring(c->co, "the store could not be read");
		resume_async(c, 2);
	}
}

static void kv_written(void *arg, int rc, const char *error)
{
	struct plugin_call *c = arg;
	c->kv_req = 0;
	if (rc == 0) {
		lua_pushboolean(c->co, 1);
		resume_async(c, 1);
	} else {
		lua_pushnil(c->co);
		lua_pushstring(c->co, error ? error : "the store could not write it");
		resume_async(c, 2);
	}
}

static int zmta_kv_get(lua_State *L)
{
	struct plugin_call *c = kv_call(L, "zmta.kv.get");
	char *key = kv_key(L, c->plugin);
	c->kv_req = queue_row_get(c->plugin->owner->queue, STORE_CF_KV, key, kv_read, c);
	free(key);
	return lua_yield(L, 0);
}

static int zmta_kv_set(lua_State *L)
{
	struct plugin_call *c = kv_call(L, "zmta.kv.set");
	size_t len;
	const char *value = luaL_checklstring(L, 2, &len);
	luaL_argcheck(L, len <= KV_VALUE_MAX && memchr(value, '\0', len) == NULL, 2,
		      "text of at most 1 MiB, no NUL");
	char *key = kv_key(L, c->plugin);
	c->kv_req = queue_row_write(c->plugin->owner->queue, STORE_CF_KV, key, value, kv_written,
				    c);
	free(key);
	return lua_yield(L, 0);
}

static int zmta_kv_del(lua_State *L)
{
	struct plugin_call *c = kv_call(L, "zmta.kv.del");
	char *key = kv_key(L, c->plugin);
	c->kv_req = queue_row_write(c->plugin->owner->queue, STORE_CF_KV, key, NULL, kv_written, c);
	free(key);
	return lua_yield(L, 0);
}

/* --- zmta.dns.lookup(name, type) --- */

static void dns_answered(void *arg, enum dns_status status, const char *const *records, size_t n,
			 const char *error)
{
	struct plugin_call *c = arg;
	c->dns_req = 0;
	lua_State *co = c->co;
	if (status == DNS_OK) {
		lua_createtable(co, (int)n, 0);
		for (size_t i = 0; i < n; i++) {
			lua_pushstring(co, records[i]);
			lua_rawseti(co, -2, (lua_Integer)i + 1);
		}
		resume_async(c, 1);
		return;
	}
	lua_pushnil(co);
	lua_pushstring(co, status == DNS_NOTFOUND ? "NXDOMAIN" : error ? error : "lookup failed");
	resume_async(c, 2);
}

static int zmta_dns_lookup(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const char *type = luaL_optstring(L, 2, "A");
	enum dns_lookup_type t;
	if (dns_lookup_type_parse(type, &t) != 0)
		return luaL_error(L, "zmta.dns.lookup: type A, AAAA, MX or TXT (got '%s')", type);
	luaL_argcheck(L, strlen(name) > 0 && strlen(name) <= 253, 1, "a domain name");
	struct plugin_call *c = waiting_call(L, "zmta.dns.lookup");
	if (c->plugin->owner->dns == NULL)
		return luaL_error(L, "zmta.dns.lookup: the resolver is not ready");
	c->dns_req = dns_lookup(c->plugin->owner->dns, name, t, dns_answered, c);
	return lua_yield(L, 0);
}

void plugin_open_zmta(lua_State *L, struct plugin *p)
{
	(void)p;
	lua_newtable(L);
	lua_pushcfunction(L, zmta_log);
	lua_setfield(L, -2, "log");
	lua_pushcfunction(L, zmta_sleep);
	lua_setfield(L, -2, "sleep");
	lua_newtable(L);
	lua_pushcfunction(L, zmta_http_request);
	lua_setfield(L, -2, "request");
	lua_setfield(L, -2, "http");
	static const luaL_Reg kv[] = {
	    {"get", zmta_kv_get}, {"set", zmta_kv_set}, {"del", zmta_kv_del}, {NULL, NULL}};
	luaL_newlib(L, kv);
	lua_setfield(L, -2, "kv");
	lua_newtable(L);
	lua_pushcfunction(L, zmta_dns_lookup);
	lua_setfield(L, -2, "lookup");
	lua_setfield(L, -2, "dns");
	plugin_open_json(L);
}

/* --- headers: ctx.headers:get(name) ... --- */

static struct header_list *headers_check(lua_State *L)
{
	struct headers_obj *h = luaL_checkudata(L, 1, HEADERS_META);
	if (h->list == NULL)
		luaL_error(L, "ctx.headers used after its hook call ended");
	return h->list;
}

/* A field name, lower-cased into buf; an error for anything else. */
static const char *field_name(lua_State *L, int idx, char *buf, size_t size)
{
	size_t len;
	const char *name = luaL_checklstring(L, idx, &len);
	if (len == 0 || len >= size)
		luaL_error(L, "a header name of 1 to %d characters", (int)size - 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch <= 32 || ch >= 127 || ch == ':')
			luaL_error(L, "'%s' is not a header name", name);
		buf[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
	}
	buf[len] = '\0';
	return name;
}

static const char *field_value(lua_State *L, int idx)
{
	const char *v = luaL_checkstring(L, idx);
	if (strpbrk(v, "\r\n") != NULL)
		luaL_error(L, "a header value is one line (no CR or LF)");
	return v;
}

static int headers_get(lua_State *L)
{
	struct header_list *list = headers_check(L);
	char key[256];
	field_name(L, 2, key, sizeof(key));
	int i = header_list_find(list, key);
	if (i < 0)
		lua_pushnil(L);
	else
		lua_pushstring(L, list->items[i].value);
	return 1;
}

static int headers_get_all(lua_State *L)
{
	struct header_list *list = headers_check(L);
	char key[256];
	field_name(L, 2, key, sizeof(key));
	lua_newtable(L);
	lua_Integer n = 0;
	for (size_t i = 0; i < list->count; i++)
		if (strcmp(list->items[i].key, key) == 0) {
			lua_pushstring(L, list->items[i].value);
			lua_rawseti(L, -2, ++n);
		}
	return 1;
}

static int headers_add(lua_State *L)
{
	struct header_list *list = headers_check(L);
	char key[256];
	const char *name = field_name(L, 2, key, sizeof(key));
	header_list_insert(list, 0, name, field_value(L, 3));
	return 0;
}

static int headers_set(lua_State *L)
{
	struct header_list *list = headers_check(L);
	char key[256];
	const char *name = field_name(L, 2, key, sizeof(key));
	const char *value = field_value(L, 3);
	int at = header_list_find(list, key);
	header_list_remove(list, key);
	header_list_insert(list, at >= 0 ? (size_t)at : list->count, name, value);
	return 0;
}

static int headers_remove(lua_State *L)
{
	struct header_list *list = headers_check(L);
	char key[256];
	field_name(L, 2, key, sizeof(key));
	lua_pushinteger(L, (lua_Integer)header_list_remove(list, key));
	return 1;
}

static void push_headers(lua_State *L, struct plugin_call *c, struct header_list *list)
{
	struct headers_obj *h = lua_newuserdatauv(L, sizeof(*h), 0);
	h->list = list;
	if (luaL_newmetatable(L, HEADERS_META)) {
		static const luaL_Reg methods[] = {
		    {"get", headers_get}, {"getAll", headers_get_all}, {"add", headers_add},
		    {"set", headers_set}, {"remove", headers_remove},  {NULL, NULL}};
		luaL_newlib(L, methods);
		lua_setfield(L, -2, "__index");
	}
	lua_setmetatable(L, -2);
	lua_pushvalue(L, -1);
	c->headers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* --- the context table --- */

static void set_str(lua_State *L, const char *key, const char *v)
{
	if (v == NULL)
		return;
	lua_pushstring(L, v);
	lua_setfield(L, -2, key);
}

static void push_ctx(lua_State *L, struct plugin_call *c, const struct hook_ctx *x,
		     enum hook_point point)
{
	lua_createtable(L, 0, 10);
	set_str(L, "hook", hook_point_name(point));
	lua_createtable(L, 0, 5);
	if (x->session != 0) {
		lua_pushinteger(L, (lua_Integer)x->session);
		lua_setfield(L, -2, "id");
	}
	set_str(L, "interface", x->interface);
	set_str(L, "remoteAddress", x->client);
	set_str(L, "helo", x->helo);
	set_str(L, "user", x->user);
	lua_setfield(L, -2, "session");
	if (point == HOOK_SMTP_AUTH) {
		lua_createtable(L, 0, 3);
		set_str(L, "user", x->user);
		set_str(L, "password", x->password);
		set_str(L, "method", x->mechanism);
		lua_setfield(L, -2, "auth");
	}
	lua_createtable(L, 0, 2);
	set_str(L, "from", x->from);
	lua_createtable(L, (int)x->nrcpts, 0);
	for (size_t i = 0; i < x->nrcpts; i++) {
		lua_pushstring(L, x->rcpts[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "to");
	lua_setfield(L, -2, "envelope");
	set_str(L, "address", x->address);
	set_str(L, "queueId", x->queue_id);
	if (x->size > 0) {
		lua_pushinteger(L, (lua_Integer)x->size);
		lua_setfield(L, -2, "size");
	}
	if (x->zone != NULL)
		set_str(L, "zone", *x->zone);
	if (x->next_hop != NULL) {
		set_str(L, "nextHop", *x->next_hop);
		if (*x->next_port > 0) {
			lua_pushinteger(L, *x->next_port);
			lua_setfield(L, -2, "nextPort");
		}
	}
	if (x->headers != NULL) {
		push_headers(L, c, x->headers);
		lua_setfield(L, -2, "headers");
	}
	if (x->zone_name != NULL || x->mx != NULL || x->response != NULL) {
		lua_createtable(L, 0, 8);
		if (x->seq != 0) {
			char seq[8];
			snprintf(seq, sizeof(seq), "%03x", x->seq & 0xfffu);
			set_str(L, "seq", seq);
		}
		set_str(L, "zone", x->zone_name);
		set_str(L, "domain", x->domain);
		set_str(L, "mx", x->mx);
		set_str(L, "localAddress", x->local_ip);
		if (x->code != 0) {
			lua_pushinteger(L, x->code);
			lua_setfield(L, -2, "code");
		}
		set_str(L, "response", x->response);
		set_str(L, "category", x->category);
		lua_setfield(L, -2, "delivery");
	}
	lua_pushvalue(L, -1);
	c->ctx_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* --- running --- */

static enum hook_verdict failed(struct plugin_call *c, const char *what)
{
	struct plugin *p = c->plugin;
	stats_add(STATS_PLUGIN_ERRORS, p->cfg->name, 1);
	char *msg = p->mem_refused ? xasprintf("%s (memory cap of %llu bytes reached)", what,
					       (unsigned long long)p->mem_cap)
				   : xstrdup(what);
	p->mem_refused = false;
	log_msg(LOG_LEVEL_ERROR, hook_call_ctx(c->call)->queue_id, "plugin_error",
		"plugin=%s hook=%s error=\"%s\" action=%s", p->cfg->name, hook_point_name(c->point),
		msg, p->cfg->on_error_continue ? "continue" : "tempfail");
	free(msg);
	if (p->cfg->on_error_continue)
		return HOOK_CONTINUE;
	free(c->reply);
	c->reply = xstrdup("451 4.3.0 Error: a plugin failed, try again later");
	return HOOK_TEMPFAIL;
}

/* The handler's answer: nothing (continue) or {reject = "5xx ..."},
 * {tempfail = "4xx ..."}, {accept = true}; for queue:route ctx.zone may
 * have been changed. */
/* A string a handler handed back that must outlive the run (a zone, a
 * next hop): kept once per value. */
static const char *kept(struct plugins *ps, const char *s)
{
	char *k = strmap_get(ps->kept_strings, s);
	if (k == NULL) {
		k = xstrdup(s);
		strmap_put(ps->kept_strings, s, k);
	}
	return k;
}

/* Whether the answer table at `at` gives `key` (true, or a reply that
 * becomes the call's). */
static bool answer_given(struct plugin_call *c, int at, const char *key)
{
	lua_getfield(c->co, at, key);
	bool given = lua_toboolean(c->co, -1);
	if (given && lua_type(c->co, -1) == LUA_TSTRING) {
		free(c->reply);
		c->reply = xstrdup(lua_tostring(c->co, -1));
	}
	lua_pop(c->co, 1);
	return given;
}

static enum hook_verdict verdict_of(struct plugin_call *c, int nres)
{
	lua_State *co = c->co;
	const struct hook_ctx *x = hook_call_ctx(c->call);
	if (x->next_hop != NULL) {
		/* sender:connect: ctx.nextHop, ctx.nextPort */
		lua_rawgeti(co, LUA_REGISTRYINDEX, c->ctx_ref);
		lua_getfield(co, -1, "nextHop");
		const char *hop = lua_tostring(co, -1);
		if (hop != NULL && hop[0] != '\0' && strlen(hop) <= 255 &&
		    strpbrk(hop, " \t\r\n/") == NULL)
			*x->next_hop = kept(c->plugin->owner, hop);
		lua_pop(co, 1);
		lua_getfield(co, -1, "nextPort");
		if (lua_isinteger(co, -1) && lua_tointeger(co, -1) >= 1 &&
		    lua_tointeger(co, -1) <= 65535)
			*x->next_port = (int)lua_tointeger(co, -1);
		lua_pop(co, 2);
	}
	if (x->zone != NULL) {
		lua_rawgeti(co, LUA_REGISTRYINDEX, c->ctx_ref);
		lua_getfield(co, -1, "zone");
		const char *zone = lua_tostring(co, -1);
		if (zone != NULL && (*x->zone == NULL || strcmp(zone, *x->zone) != 0))
			*x->zone = kept(c->plugin->owner, zone);
		lua_pop(co, 2);
	}
	if (nres == 0 || lua_isnil(co, -nres))
		return HOOK_CONTINUE;
	int at = lua_absindex(co, -nres);
	if (!lua_istable(co, at))
		return failed(c, "a hook returns nothing or a table ({reject = ...}, {tempfail = "
				 "...}, {accept = true})");
	if (x->retry_ms != NULL) {
		/* sender:responseError: {defer = seconds} or {bounce = reply | true} */
		lua_getfield(co, at, "defer");
		bool has_defer = lua_isnumber(co, -1);
		double secs = has_defer ? lua_tonumber(co, -1) : 0;
		lua_pop(co, 1);
		if (has_defer) {
			if (!(secs >= 0 && secs <= 365.0 * 86400))
				return failed(c, "defer is a number of seconds, from 0 to a year");
			*x->retry_ms = (int64_t)(secs * 1000);
			return HOOK_TEMPFAIL;
		}
		if (answer_given(c, at, "bounce"))
			return HOOK_REJECT;
	}
	static const struct {
		const char *key;
		enum hook_verdict verdict;
	} answers[] = {
	    {"reject", HOOK_REJECT}, {"tempfail", HOOK_TEMPFAIL}, {"accept", HOOK_ACCEPT}};
	for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++)
		if (answer_given(c, at, answers[i].key))
			return answers[i].verdict;
	return HOOK_CONTINUE;
}

/* Resumes the call's coroutine with nargs values on it; the verdict, or
 * PENDING while it waits. */
static enum hook_verdict run(struct plugin_call *c, int nargs)
{
	struct plugin *p = c->plugin;
	int nres = 0;
	int64_t t0 = now_us();
	p->running = c;
	int rc = lua_resume(c->co, NULL, nargs, &nres);
	p->running = NULL;
	stats_add(STATS_PLUGIN_MICROS, p->cfg->name, now_us() - t0);
	if (rc == LUA_YIELD) {
		if (c->sleep != NULL || c->http_req != 0 || c->kv_req != 0 || c->dns_req != 0)
			return HOOK_PENDING;
		return failed(c, "the hook yielded without waiting for zmta.sleep, "
				 "zmta.http.request, zmta.kv or zmta.dns");
	}
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(c->co, -1);
		return failed(c, msg ? msg : "error object is not a string");
	}
	enum hook_verdict v = verdict_of(c, nres);
	lua_settop(c->co, 0);
	return v;
}

static void deadline_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct plugin_call *c = arg;
	char *what_text = xasprintf("no answer within the plugin's timeout of %llu ms",
				    (unsigned long long)c->plugin->cfg->timeout_ms);
	enum hook_verdict v = failed(c, what_text);
	free(what_text);
	hook_answer(c->call, v, c->reply);
	plugin_call_free(c);
}

static void resume_async(struct plugin_call *c, int nargs)
{
	enum hook_verdict v = run(c, nargs);
	if (v == HOOK_PENDING)
		return;
	struct hook_call *call = c->call;
	char *reply = c->reply;
	c->reply = NULL;
	plugin_call_free(c);
	hook_answer(call, v, reply);
	free(reply);
}

enum hook_verdict plugin_handle(struct hook_call *call, const struct hook_ctx *ctx, void *arg)
{
	struct plugin_slot *slot = arg;
	struct plugins *ps = slot->owner;
	struct plugin *p = ps->list[slot->index];
	if (!p->used[slot->point])
		return HOOK_CONTINUE; /* the point's handlers went with a reload */
	stats_add(STATS_PLUGIN_CALLS, p->cfg->name, 1);
	struct plugin_call *c = xcalloc(1, sizeof(*c));
	c->plugin = p;
	c->point = slot->point;
	c->call = call;
	c->headers_ref = LUA_NOREF;
	c->started_us = now_us();
	c->next = ps->calls;
	if (ps->calls)
		ps->calls->prev = c;
	ps->calls = c;
	p->calls++;
	lua_State *L = p->L;
	c->co = lua_newthread(L);
	c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_rawgeti(c->co, LUA_REGISTRYINDEX, p->dispatch_ref);
	lua_getfield(c->co, LUA_REGISTRYINDEX, "zmta.hooks");
	lua_getfield(c->co, -1, hook_point_name(slot->point));
	lua_remove(c->co, -2);
	push_ctx(c->co, c, ctx, slot->point);
	enum hook_verdict v = run(c, 2);
	if (v == HOOK_PENDING) {
		c->deadline = evtimer_new(ps->base, deadline_fired, c);
		uint64_t ms = p->cfg->timeout_ms;
		struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
		evtimer_add(c->deadline, &tv);
		return HOOK_PENDING;
	}
	if (c->reply != NULL)
		hook_set_reply(call, c->reply);
	plugin_call_free(c);
	return v;
}

void plugin_cancel(struct hook_call *call, void *arg)
{
	struct plugin_slot *slot = arg;
	for (struct plugin_call *c = slot->owner->calls; c != NULL; c = c->next)
		if (c->call == call) {
			plugin_call_free(c);
			return;
		}
}
