/* lua_ctx — the `ctx` table a tool's run(ctx, args) receives, and how
 * primitives find the call they serve.
 *
 *   ctx.http.request{...}   lua_http.c     ctx.log(...)        lua_log.c
 *   ctx.store.get/set       lua_store.c    ctx.connection      (no secrets)
 *   ctx.records.upsert/delete, ctx.checkpoint   lua_records.c (sync runs)
 *   ctx.request_id, ctx.tool, ctx.caller = {user, team, role}, ctx.sync
 *
 * The function tables are shared by every call of a provider; a primitive
 * learns which call it serves from the task that is running. Scripts never
 * see credentials or handles, only data. */
#ifndef FERRY_LUA_CTX_H
#define FERRY_LUA_CTX_H

#include <lua.h>

#include "budget.h"
#include "connections.h"
#include "hclient.h"
#include "provider.h"
#include "store.h"

typedef struct lua_ctx_services {
    struct event_base *base;
    hclient *http;
    store *db;
    budget *budget;                /* upstream rate budgets; may be NULL */
    vault *vault;                  /* reopens credentials after an OAuth refresh */
    struct oauth *oauth;           /* refreshes a token an upstream refused; may be NULL */
} lua_ctx_services;

typedef struct lua_ctx {
    const lua_ctx_services *svc;
    provider *provider;
    const char *request_id;
    const char *tool;              /* agent-facing name */
    const char *connection_id;     /* NULL: no connection */
    const principal *who;          /* NULL: local use without a principal */
    const store_connection *conn;  /* NULL when the provider needs none */
    credentials *creds;            /* opened secrets: C only, never pushed into Lua; the
                                      call's, replaced after an OAuth refresh */
    struct sync_run *sync;         /* the sync run this task is, or NULL (a tool call) */
    const char *sync_name;         /* ctx.sync = {name, run_id} for a sync run */
    const char *run_id;
    unsigned long requests;        /* ctx.http.request calls made (a sync run counts them) */
} lua_ctx;

/* Pushes a new ctx for `c` (protected mode: may raise on memory). */
void lua_ctx_push(lua_State *L, const lua_ctx *c);

/* The call served by the running task; raises a script error when a
 * primitive is used outside a call (at load time, say). */
lua_ctx *lua_ctx_current(lua_State *L, const char *primitive);

/* An error value for scripts: {code=..., message=...} (+ extra fields),
 * printable with tostring. Pushes it. */
void lua_ctx_push_error(lua_State *L, ferr_code code, const char *message);

/* The same from a ferr, its details as fields. */
void lua_ctx_push_ferr(lua_State *L, const ferr *e);

/* Module tables (each pushes one). */
void lua_http_push(lua_State *L);
void lua_log_push(lua_State *L);
void lua_store_push(lua_State *L);
void lua_records_push(lua_State *L);      /* ctx.records */
void lua_checkpoint_push(lua_State *L);   /* ctx.checkpoint */

#endif
