/* lua_store.c — ctx.store: small JSON values a script keeps per provider
 * and connection between calls (a cursor, a cached id).
 *   ctx.store.get(key) → value | nil      ctx.store.set(key, value | nil)
 * Values are at most 64 KiB of JSON; records belong in ctx.records. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "jsonfmt.h"
#include "lua_ctx.h"
#include "lua_json.h"

#define MAX_VALUE (64 * 1024)

static int l_get(lua_State *L)
{
    lua_ctx *c = lua_ctx_current(L, "ctx.store.get");
    const char *key = luaL_checkstring(L, 1);
    char *text = NULL;
    ferr err = {0};
    if (store_kv_get(c->svc->db, c->provider->slug, c->connection_id, key, &text, &err) < 0) {
        lua_pushnil(L);
        lua_ctx_push_error(L, err.code, err.message);
        ferr_clear(&err);
        return 2;
    }
    if (!text) {
        lua_pushnil(L);
        return 1;
    }
    json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
    free(text);
    if (!v) {
        lua_pushnil(L);
        return 1;
    }
    lua_json_push(L, v);   /* a memory error here leaks v; values are small */
    json_decref(v);
    return 1;
}

static int l_set(lua_State *L)
{
    lua_ctx *c = lua_ctx_current(L, "ctx.store.set");
    const char *key = luaL_checkstring(L, 1);
    char *text = NULL;
    if (!lua_isnoneornil(L, 2)) {
        ferr err = {0};
        json_t *v = lua_json_from(L, 2, &err);
        if (!v) {
            lua_pushstring(L, err.message);
            ferr_clear(&err);
            return lua_error(L);
        }
        text = json_dumps(v, JSON_TEXT);
        json_decref(v);
        if (text && strlen(text) > MAX_VALUE) {
            free(text);
            return luaL_error(L, "ctx.store.set: value is larger than %d bytes of JSON", MAX_VALUE);
        }
    }
    ferr err = {0};
    int rc = store_kv_set(c->svc->db, c->provider->slug, c->connection_id, key, text, &err);
    free(text);
    if (rc < 0) {
        lua_pushnil(L);
        lua_ctx_push_error(L, err.code, err.message);
        ferr_clear(&err);
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

void lua_store_push(lua_State *L)
{
    static const luaL_Reg fns[] = {{"get", l_get}, {"set", l_set}, {NULL, NULL}};
    luaL_newlib(L, fns);
}
