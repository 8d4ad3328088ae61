/* SPDX-License-Identifier: EUPL-1.2 */
/*
 * zmta.json.encode(value) and zmta.json.decode(text) for plugins, over
 * jansson: a table with keys 1..n only is an array, any other table an
 * object (its keys must be strings); JSON null decodes to nil.
 */
#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "lua/plugin_internal.h"

/* Deeper than this is refused both ways (a cycle, or a hostile input). */
#define JSON_DEPTH_MAX 64

static json_t *to_json(lua_State *L, int idx, int depth);

static bool is_array(lua_State *L, int idx, size_t *n)
{
	size_t count = 0;
	lua_Integer max = 0;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
			lua_pop(L, 1);
			return false;
		}
		if (lua_tointeger(L, -1) > max)
			max = lua_tointeger(L, -1);
		count++;
	}
	*n = count;
	return (lua_Integer)count == max;
}

static json_t *table_to_json(lua_State *L, int idx, int depth)
{
	size_t n;
	if (is_array(L, idx, &n)) {
		json_t *a = json_array();
		for (size_t i = 1; i <= n; i++) {
			lua_rawgeti(L, idx, (lua_Integer)i);
			json_array_append_new(a, to_json(L, lua_gettop(L), depth + 1));
			lua_pop(L, 1);
		}
		return a;
	}
	json_t *o = json_object();
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING) {
			json_decref(o);
			luaL_error(L, "zmta.json.encode: an object's keys are strings");
		}
		json_object_set_new(o, lua_tostring(L, -2), to_json(L, lua_gettop(L), depth + 1));
		lua_pop(L, 1);
	}
	return o;
}

static json_t *to_json(lua_State *L, int idx, int depth)
{
	if (depth > JSON_DEPTH_MAX)
		luaL_error(L, "zmta.json.encode: nested deeper than %d (a cycle?)", JSON_DEPTH_MAX);
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return json_null();
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		return lua_isinteger(L, idx) ? json_integer(lua_tointeger(L, idx))
					     : json_real(lua_tonumber(L, idx));
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		json_t *v = json_stringn(s, len);
		if (v == NULL)
			luaL_error(L, "zmta.json.encode: a string that is not UTF-8");
		return v;
	}
	case LUA_TTABLE:
		return table_to_json(L, idx, depth);
	default:
		luaL_error(L, "zmta.json.encode: cannot encode a %s", luaL_typename(L, idx));
	}
	return NULL;
}

static int json_encode(lua_State *L)
{
	luaL_checkany(L, 1);
	json_t *v = to_json(L, 1, 0);
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(v);
	lua_pushstring(L, s != NULL ? s : "null");
	free(s);
	return 1;
}

static void push_json(lua_State *L, json_t *v, int depth)
{
	if (depth > JSON_DEPTH_MAX)
		luaL_error(L, "zmta.json.decode: nested deeper than %d", JSON_DEPTH_MAX);
	luaL_checkstack(L, 3, "zmta.json.decode");
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		lua_createtable(L, 0, (int)json_object_size(v));
		const char *k;
		json_t *x;
		json_object_foreach (v, k, x) {
			push_json(L, x, depth + 1);
			lua_setfield(L, -2, k);
		}
		break;
	}
	case JSON_ARRAY: {
		lua_createtable(L, (int)json_array_size(v), 0);
		size_t i;
		json_t *x;
		json_array_foreach (v, i, x) {
			push_json(L, x, depth + 1);
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		break;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		lua_pushinteger(L, json_integer_value(v));
		break;
	case JSON_REAL:
		lua_pushnumber(L, json_real_value(v));
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		lua_pushboolean(L, json_is_true(v));
		break;
	case JSON_NULL:
		lua_pushnil(L);
		break;
	}
}

/* decode(text): the value, or nil and the error (with line and column). */
static int json_decode(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	json_error_t err;
	json_t *v = json_loadb(text, len, JSON_DECODE_ANY, &err);
	if (v == NULL) {
		lua_pushnil(L);
		lua_pushfstring(L, "line %d, column %d: %s", err.line, err.column, err.text);
		return 2;
	}
	push_json(L, v, 0);
	json_decref(v);
	return 1;
}

void plugin_open_json(lua_State *L)
{
	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, json_encode);
	lua_setfield(L, -2, "encode");
	lua_pushcfunction(L, json_decode);
	lua_setfield(L, -2, "decode");
	lua_setfield(L, -2, "json");
}
