#include "lua_json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "jsonfmt.h"

#define MAX_DEPTH 128

static char array_mt_key;

void lua_json_push_array_mt(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
}

void lua_json_push(lua_State *L, const json_t *v)
{
    luaL_checkstack(L, 4, "JSON nested too deeply");
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            lua_json_push(L, val);
            lua_setfield(L, -2, key);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            lua_json_push(L, json_array_get(v, i));
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_json_push_array_mt(L);
        lua_setmetatable(L, -2);
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    default:
        lua_pushlightuserdata(L, NULL);
        break;
    }
}

/* ---- Lua → JSON ---- */

typedef struct conv {
    ferr *err;
    char path[256];
} conv;

static json_t *fail(conv *c, const char *what)
{
    ferr_set(c->err, FERR_SCRIPT_ERROR, "cannot encode %s as JSON: %s", c->path, what);
    return NULL;
}

static json_t *from(lua_State *L, int idx, int depth, conv *c);

/* Extend the error path by a key or an index; *saved restores it. */
static void path_key(conv *c, size_t *saved, const char *key)
{
    *saved = strlen(c->path);
    snprintf(c->path + *saved, sizeof c->path - *saved, ".%s", key);
}

static void path_index(conv *c, size_t *saved, long long i)
{
    *saved = strlen(c->path);
    snprintf(c->path + *saved, sizeof c->path - *saved, "[%lld]", i);
}

static json_t *table_as_array(lua_State *L, int idx, lua_Integer n, int depth, conv *c)
{
    json_t *arr = json_array();
    for (lua_Integer i = 1; i <= n; i++) {
        size_t saved;
        path_index(c, &saved, (long long)i - 1);
        lua_rawgeti(L, idx, i);
        json_t *v = lua_isnil(L, -1) ? json_null() : from(L, lua_gettop(L), depth + 1, c);
        lua_pop(L, 1);
        c->path[saved] = 0;
        if (!v || json_array_append_new(arr, v) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *table_as_object(lua_State *L, int idx, int depth, conv *c)
{
    json_t *obj = json_object();
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING) {
            lua_pop(L, 2);
            json_decref(obj);
            return fail(c, "a table has keys that are neither all strings nor exactly 1..n");
        }
        size_t klen;
        const char *key = lua_tolstring(L, -2, &klen);
        size_t saved;
        path_key(c, &saved, key);
        json_t *v = from(L, lua_gettop(L), depth + 1, c);
        c->path[saved] = 0;
        lua_pop(L, 1);
        if (!v || json_object_setn_new(obj, key, klen, v) < 0) {
            if (v == NULL) {
                lua_pop(L, 1);
                json_decref(obj);
                return NULL;
            }
            lua_pop(L, 1);
            json_decref(obj);
            return fail(c, "a key is not valid UTF-8");
        }
    }
    return obj;
}

static json_t *table_to_json(lua_State *L, int idx, int depth, conv *c)
{
    if (depth > MAX_DEPTH)
        return fail(c, "tables nested too deeply (or a table contains itself)");
    if (!lua_checkstack(L, 6))
        return fail(c, "out of stack space");
    if (lua_getmetatable(L, idx)) {
        lua_json_push_array_mt(L);
        int is_array = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (is_array)
            return table_as_array(L, idx, (lua_Integer)lua_rawlen(L, idx), depth, c);
    }
    /* Classify by keys: 1..n exactly → array; all strings → object. */
    lua_Integer count = 0, max = 0;
    int strings = 0, others = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING)
            strings++;
        else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0) {
            lua_Integer k = lua_tointeger(L, -1);
            if (k > max)
                max = k;
        } else
            others++;
    }
    if (count == 0 || strings == count)
        return table_as_object(L, idx, depth, c);
    if (strings == 0 && others == 0 && max == count)
        return table_as_array(L, idx, max, depth, c);
    if (strings == 0 && others == 0)
        return fail(c, "an array has holes (use json.null for missing values)");
    if (strings > 0)
        return fail(c, "a table mixes string keys with other keys");
    return fail(c, "a table has keys that are neither all strings nor exactly 1..n");
}

static json_t *from(lua_State *L, int idx, int depth, conv *c)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        if (!isfinite(lua_tonumber(L, idx)))
            return fail(c, "NaN and infinity have no JSON form");
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return jsonfmt_string(s, n);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return json_null();
        return fail(c, "a userdata value");
    case LUA_TTABLE:
        return table_to_json(L, idx, depth, c);
    default:
        return fail(c, lua_typename(L, lua_type(L, idx)));
    }
}

json_t *lua_json_from(lua_State *L, int idx, ferr *err)
{
    conv c = {.err = err, .path = "$"};
    return from(L, lua_absindex(L, idx), 0, &c);
}

/* ---- text ---- */

static char box_mt_key;

static int box_gc(lua_State *L)
{
    json_t **box = lua_touserdata(L, 1);
    json_decref(*box);
    *box = NULL;
    return 0;
}

/* A userdata that owns a jansson tree until collected, so a raise while
 * the tree is in use cannot leak it. */
static json_t **push_box(lua_State *L)
{
    json_t **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &box_mt_key) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, box_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &box_mt_key);
    }
    lua_setmetatable(L, -2);
    return box;
}

int lua_json_decode_push(lua_State *L, const char *s, size_t n)
{
    json_t **box = push_box(L);
    json_error_t jerr;
    *box = json_loadb(s, n, JSON_DECODE_ANY, &jerr);
    if (!*box) {
        lua_pop(L, 1);
        lua_pushfstring(L, "invalid JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return 0;
    }
    lua_json_push(L, *box);
    json_decref(*box);
    *box = NULL;
    lua_remove(L, -2);
    return 1;
}

void lua_json_encode_push(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    json_t **box = push_box(L);
    ferr err = {0};
    *box = lua_json_from(L, idx, &err);
    if (!*box) {
        lua_pushstring(L, err.message);
        ferr_clear(&err);
        lua_error(L);
    }
    size_t size = json_dumpb(*box, NULL, 0, JSON_TEXT);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, size);
    json_dumpb(*box, p, size, JSON_TEXT);
    luaL_pushresultsize(&b, size);
    json_decref(*box);
    *box = NULL;
    lua_remove(L, -2);
}

/* ---- the script module ---- */

static int encode_protected(lua_State *L)
{
    lua_json_encode_push(L, 1);
    return 1;
}

static int l_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    lua_pushcfunction(L, encode_protected);
    lua_insert(L, 1);
    if (lua_pcall(L, 1, 1, 0) == LUA_OK)
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (lua_json_decode_push(L, s, n))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

static int l_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_json_push_array_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

void lua_json_open(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushliteral(L, "array");
        lua_setfield(L, -2, "__name");
        /* Shared by every array: scripts must not reach it (a __gc added
         * here would run finalizers outside any CPU cap). */
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"encode", l_encode}, {"decode", l_decode}, {"array", l_array}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}
