/* SPDX-License-Identifier: EUPL-1.2 */
/* Lua plugins: states, the sandbox, calls as coroutines; see plugin.h. */
#include "lua/plugin.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cfgtree.h"
#include "core/clock.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/xmalloc.h"
#include "hook/hook.h"
#include "lua/plugin_internal.h"
#include "mta/dns.h"
#include "net/http_client.h"
#include "queue/queue.h"

/* The count hook runs every this many instructions. */
#define COUNT_STEP 1000

/* --- memory: each state has its cap --- */

static void *plugin_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct plugin *p = ud;
	size_t old = ptr != NULL ? osize : 0;
	if (nsize == 0) {
		p->mem_used -= old;
		free(ptr);
		return NULL;
	}
	if (nsize > old && p->mem_used + (nsize - old) > p->mem_cap) {
		p->mem_refused = true;
		return NULL; /* Lua raises "not enough memory" */
	}
	void *n = realloc(ptr, nsize);
	if (n != NULL)
		p->mem_used = p->mem_used - old + nsize;
	return n;
}

/* --- the instruction budget --- */

static void count_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	void *ud;
	lua_getallocf(L, &ud);
	struct plugin *p = ud;
	uint64_t *used = p->running != NULL ? &p->running->instructions : &p->load_instructions;
	*used += COUNT_STEP;
	if (*used > p->cfg->instructions)
		luaL_error(L, "instruction budget of %I exceeded",
			   (lua_Integer)p->cfg->instructions);
}

/* --- the sandbox --- */

/* print(...): a log line, as zmta.log("info", ...) */
static int sandbox_print(lua_State *L)
{
	struct plugin *p = plugin_of(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	int n = lua_gettop(L);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, ' ');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	plugin_log(p, LOG_LEVEL_INFO, lua_tostring(L, -1), NULL, 0);
	return 0;
}

/* load(chunk [, name [, mode [, env]]]): text only, never bytecode. */
static int sandbox_load(lua_State *L)
{
	size_t len;
	const char *chunk = luaL_checklstring(L, 1, &len);
	const char *name = luaL_optstring(L, 2, "=(load)");
	int env = !lua_isnone(L, 4) ? 4 : 0;
	if (luaL_loadbufferx(L, chunk, len, name, "t") != LUA_OK) {
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2; /* nil, message */
	}
	if (env != 0) {
		lua_pushvalue(L, env);
		if (lua_setupvalue(L, -2, 1) == NULL)
			lua_pop(L, 1);
	}
	return 1;
}

/* require(name): a Lua file of the plugin's own folder, text only. */
static int sandbox_require(lua_State *L)
{
	struct plugin *p = plugin_of(L);
	const char *name = luaL_checkstring(L, 1);
	if (name[0] == '\0' || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					    "0123456789_-") != strlen(name))
		return luaL_error(L, "require: '%s' is not a module of the plugin's folder", name);
	lua_getfield(L, LUA_REGISTRYINDEX, "zmta.modules");
	lua_getfield(L, -1, name);
	if (!lua_isnil(L, -1))
		return 1;
	lua_pop(L, 1);
	const char *slash = strrchr(p->cfg->path, '/');
	int dirlen = slash ? (int)(slash - p->cfg->path) : 1;
	char *path = xasprintf("%.*s/%s.lua", dirlen, slash ? p->cfg->path : ".", name);
	int rc = luaL_loadfilex(L, path, "t");
	free(path);
	if (rc != LUA_OK)
		return luaL_error(L, "require: no module '%s' in the plugin's folder (%s)", name,
				  lua_tostring(L, -1));
	lua_call(L, 0, 1);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, name);
	return 1;
}

/* Opens what a plugin may use: base (without file access, bytecode or
 * the collector's controls), table, string (without dump), math, utf8,
 * coroutine, and of os only time, clock, date. */
static void sandbox_open(lua_State *L)
{
	static const struct {
		const char *name;
		lua_CFunction open;
	} libs[] = {
	    {LUA_GNAME, luaopen_base},        {LUA_TABLIBNAME, luaopen_table},
	    {LUA_STRLIBNAME, luaopen_string}, {LUA_MATHLIBNAME, luaopen_math},
	    {LUA_UTF8LIBNAME, luaopen_utf8},  {LUA_COLIBNAME, luaopen_coroutine},
	    {LUA_OSLIBNAME, luaopen_os},
	};
	for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		luaL_requiref(L, libs[i].name, libs[i].open, 1);
		lua_pop(L, 1);
	}
	static const char *const removed[] = {"dofile", "loadfile", "collectgarbage", NULL};
	for (size_t i = 0; removed[i] != NULL; i++) {
		lua_pushnil(L);
		lua_setglobal(L, removed[i]);
	}
	lua_pushcfunction(L, sandbox_load);
	lua_setglobal(L, "load");
	lua_pushcfunction(L, sandbox_print);
	lua_setglobal(L, "print");
	lua_pushcfunction(L, sandbox_require);
	lua_setglobal(L, "require");
	lua_getglobal(L, LUA_STRLIBNAME);
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	/* os: time, clock and date only */
	lua_getglobal(L, LUA_OSLIBNAME);
	lua_createtable(L, 0, 3);
	static const char *const kept[] = {"time", "clock", "date", NULL};
	for (size_t i = 0; kept[i] != NULL; i++) {
		lua_getfield(L, -2, kept[i]);
		lua_setfield(L, -2, kept[i]);
	}
	lua_setglobal(L, LUA_OSLIBNAME);
	lua_pop(L, 1);
	/* the loaded-libraries table would hand the whole os and string back */
	lua_pushnil(L);
	lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, "zmta.modules");
}

/* --- the plugin's config as a Lua value --- */

static void push_config(lua_State *L, const struct cfg_node *n)
{
	if (n == NULL || n->kind == CFG_NULL) {
		lua_pushnil(L);
		return;
	}
	if (n->kind == CFG_SCALAR) {
		bool b;
		char *end;
		long long v = strtoll(n->value, &end, 10);
		if (!n->quoted && n->value[0] != '\0' && *end == '\0')
			lua_pushinteger(L, v);
		else if (!n->quoted && config_parse_bool(n->value, &b))
			lua_pushboolean(L, b);
		else
			lua_pushstring(L, n->value);
		return;
	}
	lua_createtable(L, (int)(n->kind == CFG_SEQ ? n->nchild : 0),
			(int)(n->kind == CFG_MAP ? n->nchild : 0));
	for (size_t i = 0; i < n->nchild; i++) {
		push_config(L, n->child[i]);
		if (n->kind == CFG_SEQ)
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		else
			lua_setfield(L, -2, n->child[i]->key);
	}
}

/* --- loading --- */

void plugin_close(struct plugin *p)
{
	if (p->L != NULL)
		lua_close(p->L);
	free(p);
}

/* zmta.hook(name, fn): only while the file runs; several functions on one
 * point run in the order they were registered. */
static int zmta_hook(lua_State *L)
{
	struct plugin *p = plugin_of(L);
	const char *name = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	if (!p->loading)
		return luaL_error(L, "zmta.hook: handlers are registered when the plugin loads");
	enum hook_point point;
	if (hook_point_parse(name, &point) != 0)
		return luaL_error(L, "zmta.hook: no hook named '%s' (see docs/plugins.md)", name);
	lua_getfield(L, LUA_REGISTRYINDEX, "zmta.hooks");
	if (lua_getfield(L, -1, name) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, name);
	}
	lua_pushvalue(L, 2);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	lua_pop(L, 2);
	p->used[point] = true;
	p->nhooks++;
	return 0;
}

/* The call's main function: (functions, ctx) -> the first answer. */
static const char DISPATCH[] = "local fns, ctx = ...\n"
			       "for i = 1, #fns do\n"
			       "  local r = fns[i](ctx)\n"
			       "  if r ~= nil then return r end\n"
			       "end\n";

static struct plugin *plugin_open(struct plugins *owner, const struct plugin_config *pc, char **err)
{
	struct plugin *p = xcalloc(1, sizeof(*p));
	p->owner = owner;
	p->cfg = pc;
	p->mem_cap = pc->memory;
	p->L = lua_newstate(plugin_alloc, p);
	if (p->L == NULL) {
		*err = xasprintf("%s: cannot make a Lua state", pc->path);
		plugin_close(p);
		return NULL;
	}
	lua_State *L = p->L;
	sandbox_open(L);
	plugin_open_zmta(L, p);
	lua_pushcfunction(L, zmta_hook);
	lua_setfield(L, -2, "hook");
	if (pc->config != NULL && pc->config->kind != CFG_NULL)
		push_config(L, pc->config);
	else
		lua_newtable(L); /* none given: an empty table, so plugins index it freely */
	lua_setfield(L, -2, "config");
	lua_pushstring(L, pc->name);
	lua_setfield(L, -2, "name");
	lua_setglobal(L, "zmta");
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, "zmta.hooks");
	if (luaL_loadbufferx(L, DISPATCH, sizeof(DISPATCH) - 1, "=dispatch", "t") != LUA_OK)
		fatal("lua: the dispatcher does not compile: %s", lua_tostring(L, -1));
	p->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	lua_sethook(L, count_hook, LUA_MASKCOUNT, COUNT_STEP);
	p->loading = true;
	int rc = luaL_loadfilex(L, pc->path, "t");
	if (rc == LUA_OK)
		rc = lua_pcall(L, 0, 0, 0);
	p->loading = false;
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		*err = xasprintf("plugin %s: %s", pc->name, msg ? msg : "error");
		plugin_close(p);
		return NULL;
	}
	return p;
}

/* Registers the slots of plugin i's points that have none yet. */
static void register_slots(struct plugins *ps, size_t i)
{
	struct plugin *p = ps->list[i];
	for (int point = 0; point < HOOK_POINT_COUNT; point++) {
		if (!p->used[point])
			continue;
		struct plugin_slot **at = &ps->slots[point];
		while (*at != NULL && (*at)->index != i)
			at = &(*at)->next;
		if (*at != NULL)
			continue;
		struct plugin_slot *slot = xcalloc(1, sizeof(*slot));
		*slot = (struct plugin_slot){ps, i, (enum hook_point)point, NULL};
		*at = slot;
		hook_register((enum hook_point)point, p->cfg->name, plugin_handle, plugin_cancel,
			      slot);
	}
}

struct plugins *plugins_load(const struct config *cfg, struct event_base *base,
			     struct http_client *http, char **err)
{
	struct plugins *ps = xcalloc(1, sizeof(*ps));
	ps->cfg = cfg;
	ps->base = base;
	ps->http = http;
	ps->kept_strings = strmap_new();
	ps->list = xcalloc(cfg->n_plugins + 1, sizeof(*ps->list));
	for (size_t i = 0; i < cfg->n_plugins; i++) {
		struct plugin *p = plugin_open(ps, &cfg->plugins[i], err);
		if (p == NULL) {
			plugins_free(ps);
			return NULL;
		}
		ps->list[ps->n++] = p;
	}
	/* Registered once all loaded: a plugin failing to load registers nothing. */
	for (size_t i = 0; i < ps->n; i++) {
		register_slots(ps, i);
		log_info("plugin_loaded", "plugin=%s path=%s hooks=%zu memory=%zu",
			 ps->list[i]->cfg->name, ps->list[i]->cfg->path, ps->list[i]->nhooks,
			 ps->list[i]->mem_used);
	}
	return ps;
}

/* The state goes once no call runs on it. */
static void retire(struct plugin *p)
{
	p->retired = true;
	if (p->calls == 0)
		plugin_close(p);
}

int plugins_reload(struct plugins *ps, char **err)
{
	if (ps == NULL || ps->n == 0)
		return 0;
	struct plugin **fresh = xcalloc(ps->n, sizeof(*fresh));
	for (size_t i = 0; i < ps->n; i++) {
		fresh[i] = plugin_open(ps, ps->list[i]->cfg, err);
		if (fresh[i] == NULL) {
			for (size_t k = 0; k < i; k++)
				plugin_close(fresh[k]);
			free(fresh);
			return -1;
		}
	}
	for (size_t i = 0; i < ps->n; i++) {
		retire(ps->list[i]);
		ps->list[i] = fresh[i];
		register_slots(ps, i);
		log_info("plugin_loaded", "plugin=%s path=%s hooks=%zu memory=%zu reload=yes",
			 fresh[i]->cfg->name, fresh[i]->cfg->path, fresh[i]->nhooks,
			 fresh[i]->mem_used);
	}
	free(fresh);
	return 0;
}

void plugins_attach_queue(struct plugins *ps, struct queue *queue)
{
	if (ps == NULL)
		return;
	if (queue == NULL && ps->queue != NULL)
		for (struct plugin_call *c = ps->calls; c != NULL; c = c->next)
			if (c->kv_req != 0) {
				queue_request_cancel(ps->queue, c->kv_req);
				c->kv_req = 0; /* the call waits until the bus ends it */
			}
	ps->queue = queue;
}

void plugins_attach_dns(struct plugins *ps, struct dns *dns)
{
	if (ps == NULL)
		return;
	if (dns == NULL && ps->dns != NULL)
		for (struct plugin_call *c = ps->calls; c != NULL; c = c->next)
			if (c->dns_req != 0) {
				dns_lookup_cancel(ps->dns, c->dns_req);
				c->dns_req = 0; /* the call waits until the bus ends it */
			}
	ps->dns = dns;
}

int plugins_check(const struct config *cfg, char **err)
{
	struct plugins ps = {.cfg = cfg};
	for (size_t i = 0; i < cfg->n_plugins; i++) {
		struct plugin *p = plugin_open(&ps, &cfg->plugins[i], err);
		if (p == NULL)
			return -1;
		plugin_close(p);
	}
	return 0;
}

void plugins_free(struct plugins *ps)
{
	if (ps == NULL)
		return;
	while (ps->calls != NULL)
		plugin_call_free(ps->calls); /* closes the retired states they held */
	for (size_t i = 0; i < ps->n; i++)
		plugin_close(ps->list[i]);
	free(ps->list);
	for (int point = 0; point < HOOK_POINT_COUNT; point++)
		while (ps->slots[point] != NULL) {
			struct plugin_slot *next = ps->slots[point]->next;
			free(ps->slots[point]);
			ps->slots[point] = next;
		}
	size_t pos = 0;
	const char *key;
	void *v;
	while (strmap_next(ps->kept_strings, &pos, &key, &v))
		free(v);
	strmap_free(ps->kept_strings);
	free(ps);
}
