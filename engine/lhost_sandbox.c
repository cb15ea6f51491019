/* lhost_sandbox.c — the environment scripts run in, built as an allow-list:
 * only the names listed here exist. Everything else the standard libraries
 * offer (io, os.execute/exit/getenv/remove, debug, package and C modules,
 * loadfile/dofile, string.dump, binary chunks) is simply absent.
 *
 * A few allowed functions are wrapped:
 *  - load: text chunks only, and the sandbox is their default environment;
 *  - setmetatable: refuses __gc (finalizers run outside the CPU cap);
 *  - collectgarbage: "count" only;
 *  - coroutine.resume/wrap/close: refuse ferry's own task threads, and pass
 *    a primitive's wait through the script's coroutine to the engine;
 *  - require: ferry's bundled Lua modules (scripts/) and configured module
 *    folders only, loaded as text into this sandbox;
 *  - print: writes a log line tagged with the provider and request. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <lua-cjson.h>

#include "embedded.h"
#include "lhost.h"
#include "log.h"
#include "lua_json.h"

static const char *const *module_dirs;
static char loaded_key;   /* registry: modules already required */
static char parked_key;   /* registry: weak set of coroutines whose wait went up to the engine */

/* A coroutine is parked while a primitive inside it waits on the engine:
 * to scripts it must look busy, or another call could resume it and feed
 * the primitive its own values. */
static void set_parked(lua_State *L, lua_State *co, int parked)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &parked_key) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_createtable(L, 0, 1);
        lua_pushliteral(L, "k");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &parked_key);
    }
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    if (parked)
        lua_pushboolean(L, 1);
    else
        lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

static int is_parked(lua_State *L, lua_State *co)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &parked_key) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    int parked = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return parked;
}

void lhost_set_module_dirs(const char *const *dirs) { module_dirs = dirs; }

/* ---- load ---- */

static int sb_load(lua_State *L)
{
    int has_env = !lua_isnone(L, 4);
    const char *mode = luaL_optstring(L, 3, "t");
    if (strchr(mode, 'b'))
        return luaL_error(L, "load: binary chunks are not allowed");
    lua_settop(L, 4);
    lua_pushvalue(L, lua_upvalueindex(1));   /* the real load */
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    if (has_env)
        lua_pushvalue(L, 4);
    else
        lua_pushvalue(L, lua_upvalueindex(2));   /* the sandbox */
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L) - 4;
}

/* ---- setmetatable, collectgarbage ---- */

static int sb_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in scripts");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int sb_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "count");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage('%s') is not allowed in scripts", opt);
    lua_pushnumber(L, (lua_Number)lhost_memory(lhost_from(L)) / 1024.0);
    return 1;
}

/* ---- coroutines ---- */

static int resume_step(lua_State *L, lua_State *co, int nargs, int wrap);

static int resume_cont(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    int wrap = (int)ctx;
    lua_State *co;
    int nargs;
    if (wrap) {
        co = lua_tothread(L, lua_upvalueindex(1));
        nargs = lua_gettop(L);
    } else {
        co = lua_tothread(L, 1);
        nargs = lua_gettop(L) - 1;
    }
    set_parked(L, co, 0);
    return resume_step(L, co, nargs, wrap);
}

/* Resumes co with the top nargs values of L. If co stopped because a
 * primitive is waiting for I/O, L yields to the engine the same way and,
 * once woken, hands the results down to co (resume_cont). */
static int resume_step(lua_State *L, lua_State *co, int nargs, int wrap)
{
    if (is_parked(L, co)) {
        lua_pop(L, nargs);
        if (wrap)
            return luaL_error(L, "cannot resume non-suspended coroutine");
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "cannot resume non-suspended coroutine");
        return 2;
    }
    if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
        lua_pop(L, nargs);
        if (wrap)
            return luaL_error(L, "cannot resume dead coroutine");
        lua_pushboolean(L, 0);
        lua_pushliteral(L, "cannot resume dead coroutine");
        return 2;
    }
    if (!lua_checkstack(co, nargs)) {
        lua_pop(L, nargs);
        return luaL_error(L, "too many arguments to resume");
    }
    lua_xmove(L, co, nargs);
    int nres = 0;
    int status = lua_resume(co, L, nargs, &nres);
    if (status == LUA_YIELD && nres == 1 && lua_touserdata(co, -1) == &lhost_wait_marker) {
        lua_pop(co, 1);
        if (!lua_isyieldable(L)) {
            lhost_task_cancel_wait(lhost_running(lhost_from(L)));
            return luaL_error(L, "ctx.http.request cannot wait here (inside a metamethod, an iterator, "
                                 "table.sort or string.gsub callback)");
        }
        set_parked(L, co, 1);
        lua_pushlightuserdata(L, &lhost_wait_marker);
        return lua_yieldk(L, 1, (lua_KContext)wrap, resume_cont);
    }
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            return luaL_error(L, "too many results to resume");
        }
        if (!wrap)
            lua_pushboolean(L, 1);
        lua_xmove(co, L, nres);
        return nres + !wrap;
    }
    lua_xmove(co, L, 1);   /* the error */
    if (wrap)
        return lua_error(L);
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

static lua_State *script_coroutine(lua_State *L, int idx)
{
    lua_State *co = lua_tothread(L, idx);
    luaL_argexpected(L, co, idx, "coroutine");
    if (lhost_is_task_thread(L, co))
        luaL_error(L, "this coroutine belongs to ferry and cannot be resumed or closed by scripts");
    return co;
}

static int sb_resume(lua_State *L)
{
    lua_State *co = script_coroutine(L, 1);
    return resume_step(L, co, lua_gettop(L) - 1, 0);
}

static int sb_wrapped_call(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    return resume_step(L, co, lua_gettop(L), 1);
}

static int sb_wrap(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    lua_pushcclosure(L, sb_wrapped_call, 1);
    return 1;
}

static int sb_close(lua_State *L)
{
    lua_State *co = script_coroutine(L, 1);
    if (is_parked(L, co))
        return luaL_error(L, "cannot close a running coroutine");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* ---- print ---- */

static int sb_print(lua_State *L)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int n = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lhost *h = lhost_from(L);
    lhost_task *t = lhost_running(h);
    log_line *l = log_begin(LOG_INFO, "script print");
    log_str(l, "provider", lhost_name(h));
    if (t && lhost_task_request_id(t)[0])
        log_str(l, "request_id", lhost_task_request_id(t));
    log_str(l, "text", lua_tostring(L, -1));
    log_end(l);
    return 0;
}

/* ---- require ---- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096)
            break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static int valid_module_name(const char *name)
{
    if (!*name || strlen(name) > 128 || name[0] == '.')
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || (*p == '.' && p[1] != '.')))
            return 0;
    return 1;
}

/* Pushes the loaded chunk of module `name`, or returns 0. */
static int find_module(lua_State *L, const char *name)
{
    char rel[160];
    snprintf(rel, sizeof rel, "%s", name);
    for (char *p = rel; *p; p++)
        if (*p == '.')
            *p = '/';
    const char *patterns[] = {"scripts/%s.lua", "scripts/%s/init.lua"};
    for (int i = 0; i < 2; i++) {
        char path[200];
        snprintf(path, sizeof path, patterns[i], rel);
        for (const embedded_file *f = embedded_files; f->path; f++)
            if (strcmp(f->path, path) == 0) {
                char chunkname[210];
                snprintf(chunkname, sizeof chunkname, "@%s", path);
                if (luaL_loadbufferx(L, f->data, f->len, chunkname, "t") != LUA_OK)
                    lua_error(L);
                return 1;
            }
    }
    for (const char *const *d = module_dirs; d && *d; d++) {
        char path[4096 + 200];
        snprintf(path, sizeof path, "%s/%s.lua", *d, rel);
        size_t len;
        char *src = read_file(path, &len);
        if (!src)
            continue;
        char chunkname[4096 + 210];
        snprintf(chunkname, sizeof chunkname, "@%s", path);
        int rc = luaL_loadbufferx(L, src, len, chunkname, "t");
        free(src);
        if (rc != LUA_OK)
            lua_error(L);
        return 1;
    }
    return 0;
}

static int sb_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &loaded_key);   /* 2 */
    lua_pushvalue(L, 1);
    int t = lua_rawget(L, 2);
    if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == &loaded_key)
        return luaL_error(L, "require: module '%s' requires itself", name);
    if (t != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    if (!valid_module_name(name) || !find_module(L, name))
        return luaL_error(L, "module '%s' not found (scripts may require ferry's bundled modules only)", name);
    lhost_set_env(lhost_from(L), L, -1);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, &loaded_key);   /* loading */
    lua_rawset(L, 2);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, 2);
    return 1;
}

/* ---- building the environment ---- */

static void copy_fields(lua_State *L, const char *lib, const char *const *names)
{
    lua_getglobal(L, lib);
    lua_newtable(L);
    for (const char *const *n = names; *n; n++) {
        lua_getfield(L, -2, *n);
        lua_setfield(L, -2, *n);
    }
    lua_remove(L, -2);
}

static void copy_all_but(lua_State *L, const char *lib, const char *except)
{
    lua_getglobal(L, lib);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        if (lua_type(L, -2) == LUA_TSTRING && except && strcmp(lua_tostring(L, -2), except) == 0) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -4);
    }
    lua_remove(L, -2);
}

/* Pushes the environment. Runs once per state, protected. */
void lhost_sandbox_build(lua_State *L, lhost *h)
{
    (void)h;
    static const char *const base[] = {"assert", "error",  "ipairs",   "next",   "pairs",
                                       "pcall",  "select", "tonumber", "tostring", "type",
                                       "xpcall", "rawequal", "rawlen", "rawget", "rawset",
                                       "getmetatable", "_VERSION", NULL};
    static const char *const os_allowed[] = {"time", "clock", "date", "difftime", NULL};
    static const char *const co_plain[] = {"create", "yield", "status", "isyieldable", "running", NULL};

    lua_newtable(L);
    int env = lua_gettop(L);
    for (const char *const *n = base; *n; n++) {
        lua_getglobal(L, *n);
        lua_setfield(L, env, *n);
    }
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");

    lua_getglobal(L, "load");
    lua_pushvalue(L, env);
    lua_pushcclosure(L, sb_load, 2);
    lua_setfield(L, env, "load");
    lua_getglobal(L, "setmetatable");
    lua_pushcclosure(L, sb_setmetatable, 1);
    lua_setfield(L, env, "setmetatable");
    lua_pushcfunction(L, sb_collectgarbage);
    lua_setfield(L, env, "collectgarbage");
    lua_pushcfunction(L, sb_print);
    lua_setfield(L, env, "print");
    lua_pushcfunction(L, sb_require);
    lua_setfield(L, env, "require");
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "unpack");
    lua_setfield(L, env, "unpack");
    lua_pop(L, 1);

    copy_all_but(L, "string", "dump");
    /* String methods ("x"):upper() must find the same table, and the real
     * string library (with dump) must not be reachable through it. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);
    lua_setfield(L, env, "string");
    lua_getglobal(L, "string");
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 1);

    copy_all_but(L, "table", NULL);
    lua_setfield(L, env, "table");
    copy_all_but(L, "math", NULL);
    lua_setfield(L, env, "math");
    copy_all_but(L, "utf8", NULL);
    lua_setfield(L, env, "utf8");
    copy_fields(L, "os", os_allowed);
    lua_setfield(L, env, "os");

    copy_fields(L, "coroutine", co_plain);
    lua_pushcfunction(L, sb_resume);
    lua_setfield(L, -2, "resume");
    lua_pushcfunction(L, sb_wrap);
    lua_setfield(L, -2, "wrap");
    lua_getglobal(L, "coroutine");
    lua_getfield(L, -1, "close");
    lua_remove(L, -2);
    lua_pushcclosure(L, sb_close, 1);
    lua_setfield(L, -2, "close");
    lua_setfield(L, env, "coroutine");

    lua_json_open(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, env, "json");

    /* Modules for require: json, and the statically linked lua-cjson for
     * scripts that want it (see docs/decisions.md on numbers). */
    lua_newtable(L);
    lua_insert(L, -2);
    lua_setfield(L, -2, "json");
    luaopen_cjson(L);
    lua_setfield(L, -2, "cjson");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
}
