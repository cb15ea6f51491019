#include "lua_ctx.h"

#include <string.h>

#include <lauxlib.h>

#include "lua_json.h"

static char shared_key;     /* registry: {http=..., log=..., store=...} per state */
static char error_mt_key;   /* registry: metatable of error values */

static int error_tostring(lua_State *L)
{
    lua_pushliteral(L, "code");
    lua_rawget(L, 1);
    lua_pushliteral(L, "message");
    lua_rawget(L, 1);
    lua_pushfstring(L, "%s: %s", lua_tostring(L, -2) ? lua_tostring(L, -2) : "error",
                    lua_tostring(L, -1) ? lua_tostring(L, -1) : "");
    return 1;
}

void lua_ctx_push_error(lua_State *L, ferr_code code, const char *message)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, ferr_code_name(code));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &error_mt_key) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_pushcfunction(L, error_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "error");
        lua_setfield(L, -2, "__name");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &error_mt_key);
    }
    lua_setmetatable(L, -2);
}

void lua_ctx_push_ferr(lua_State *L, const ferr *e)
{
    lua_ctx_push_error(L, e->code, e->message);
    const char *key;
    json_t *v;
    /* Details become fields (retry_after, status, host...): a script that
     * returns the error passes them on. */
    json_object_foreach(e->details, key, v) {
        if (strcmp(key, "code") == 0 || strcmp(key, "message") == 0)
            continue;
        lua_json_push(L, v);
        lua_setfield(L, -2, key);
    }
}

lua_ctx *lua_ctx_current(lua_State *L, const char *primitive)
{
    lhost_task *t = lhost_running(lhost_from(L));
    lua_ctx *c = t ? lhost_task_owner(t) : NULL;
    if (!c)
        luaL_error(L, "%s can only be used while a tool or sync runs, not when the provider loads", primitive);
    return c;
}

static void push_shared(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &shared_key) != LUA_TNIL)
        return;
    lua_pop(L, 1);
    lua_createtable(L, 0, 5);
    lua_http_push(L);
    lua_setfield(L, -2, "http");
    lua_log_push(L);
    lua_setfield(L, -2, "log");
    lua_store_push(L);
    lua_setfield(L, -2, "store");
    lua_records_push(L);
    lua_setfield(L, -2, "records");
    lua_checkpoint_push(L);
    lua_setfield(L, -2, "checkpoint");
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &shared_key);
}

void lua_ctx_push(lua_State *L, const lua_ctx *c)
{
    push_shared(L);
    lua_createtable(L, 0, 8);
    static const char *const shared[] = {"http", "log", "store", "records", "checkpoint"};
    for (int i = 0; i < 5; i++) {
        lua_getfield(L, -2, shared[i]);
        lua_setfield(L, -2, shared[i]);
    }
    lua_remove(L, -2);
    if (c->request_id) {
        lua_pushstring(L, c->request_id);
        lua_setfield(L, -2, "request_id");
    }
    lua_pushstring(L, c->tool);
    lua_setfield(L, -2, "tool");
    lua_pushstring(L, c->provider->slug);
    lua_setfield(L, -2, "provider");
    if (c->conn) {
        /* Everything about the connection but its secrets. */
        const store_connection *k = c->conn;
        lua_createtable(L, 0, 6);
        lua_pushstring(L, k->id);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, k->integration);
        lua_setfield(L, -2, "integration");
        lua_pushstring(L, k->scope);
        lua_setfield(L, -2, "scope");
        if (k->label[0]) {
            lua_pushstring(L, k->label);
            lua_setfield(L, -2, "label");
        }
        if (k->account_label[0]) {
            lua_pushstring(L, k->account_label);
            lua_setfield(L, -2, "account_label");
        }
        if (!k->settings || !lua_json_decode_push(L, k->settings, strlen(k->settings))) {
            if (k->settings)
                lua_pop(L, 1);
            lua_newtable(L);
        }
        lua_setfield(L, -2, "settings");
        lua_setfield(L, -2, "connection");
    }
    if (c->sync_name) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, c->sync_name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, c->run_id ? c->run_id : "");
        lua_setfield(L, -2, "run_id");
        lua_setfield(L, -2, "sync");
    }
    if (c->who) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, c->who->user);
        lua_setfield(L, -2, "user");
        lua_pushstring(L, c->who->team);
        lua_setfield(L, -2, "team");
        lua_pushstring(L, c->who->is_admin ? "admin" : "member");
        lua_setfield(L, -2, "role");
        lua_setfield(L, -2, "caller");
    }
}
