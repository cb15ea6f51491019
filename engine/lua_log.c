/* lua_log.c — ctx.log: structured log lines from scripts, tagged with the
 * provider, tool and request id.
 *   ctx.log("message")   ctx.log.info("message", {key = value, ...})
 *   ctx.log.debug / .warn / .error likewise. Field values: strings, numbers,
 *   booleans; anything else is written as its type name. */
#include <string.h>

#include <lauxlib.h>

#include "log.h"
#include "lua_ctx.h"

static int emit(lua_State *L, log_level level, int msg_idx)
{
    lua_ctx *c = lua_ctx_current(L, "ctx.log");
    const char *msg = luaL_checkstring(L, msg_idx);
    int fields = msg_idx + 1;
    if (!lua_isnoneornil(L, fields))
        luaL_checktype(L, fields, LUA_TTABLE);
    log_line *l = log_begin(level, "script");
    if (!l)
        return 0;
    log_str(l, "provider", c->provider->slug);
    log_str(l, "tool", c->tool);
    log_str(l, "request_id", c->request_id);
    log_str(l, "text", msg);
    if (lua_istable(L, fields)) {
        lua_pushnil(L);
        while (lua_next(L, fields)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                char key[80];
                /* Prefixed so scripts cannot overwrite ferry's own fields. */
                snprintf(key, sizeof key, "f_%s", lua_tostring(L, -2));
                switch (lua_type(L, -1)) {
                case LUA_TNUMBER:
                    if (lua_isinteger(L, -1))
                        log_int(l, key, lua_tointeger(L, -1));
                    else
                        log_num(l, key, lua_tonumber(L, -1));
                    break;
                case LUA_TBOOLEAN:
                    log_bool(l, key, lua_toboolean(L, -1));
                    break;
                case LUA_TSTRING:
                    log_str(l, key, lua_tostring(L, -1));
                    break;
                default:
                    log_str(l, key, luaL_typename(L, -1));
                }
            }
            lua_pop(L, 1);
        }
    }
    log_end(l);
    return 0;
}

static int l_debug(lua_State *L) { return emit(L, LOG_DEBUG, 1); }
static int l_info(lua_State *L) { return emit(L, LOG_INFO, 1); }
static int l_warn(lua_State *L) { return emit(L, LOG_WARN, 1); }
static int l_error(lua_State *L) { return emit(L, LOG_ERROR, 1); }
static int l_call(lua_State *L) { return emit(L, LOG_INFO, 2); }   /* arg 1 is the table */

void lua_log_push(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"debug", l_debug}, {"info", l_info}, {"warn", l_warn}, {"error", l_error}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_call);
    lua_setfield(L, -2, "__call");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}
