/* lua_records.c — what a sync's run(ctx, cursor) writes with:
 *
 *   ctx.records.upsert(kind, external_id, {title, text, url, updated_at, data})
 *   ctx.records.delete(kind, external_id)
 *   ctx.checkpoint(cursor)
 *
 * upsert and delete hold the change until the next checkpoint, which
 * commits them with the cursor in one transaction (syncs.c) and then lets
 * the loop take a turn before the script goes on. Each returns true, or
 * nil and an error (a limit reached, the store failing, a run that lost
 * its lease); wrong arguments raise. Outside a sync run they raise. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <lauxlib.h>

#include "jsonfmt.h"
#include "lua_ctx.h"
#include "lua_json.h"
#include "syncs.h"

#define MAX_KIND 64
#define MAX_EXTERNAL_ID 512
#define MAX_TITLE 4096
#define MAX_URL 4096
#define MAX_TEXT (16u << 20)
#define MAX_DATA (1u << 20)
#define MAX_CURSOR (64 * 1024)

static lua_ctx *sync_ctx(lua_State *L, const char *primitive)
{
    lua_ctx *c = lua_ctx_current(L, primitive);
    if (!c->sync)
        luaL_error(L, "%s can only be used while a sync runs, not in a tool", primitive);
    return c;
}

static const char *check_kind(lua_State *L, int idx, const char *fn)
{
    size_t n;
    const char *kind = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
    if (!kind || n == 0 || n > MAX_KIND)
        luaL_error(L, "%s: kind must be a non-empty string of at most %d characters", fn, MAX_KIND);
    for (size_t i = 0; i < n; i++) {
        char ch = kind[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.' || ch == ':'))
            luaL_error(L, "%s: kind '%s' may use letters, digits, '_', '-', '.' and ':' only", fn, kind);
    }
    return kind;
}

/* An external id: a non-empty string, or an integer (kept as its digits). */
static const char *check_id(lua_State *L, int idx, const char *fn)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
        if (!lua_isinteger(L, idx))
            luaL_error(L, "%s: external_id must be a string or an integer, not a fraction", fn);
        lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, idx));
        lua_replace(L, idx);
    }
    size_t n;
    const char *id = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &n) : NULL;
    if (!id || n == 0 || n > MAX_EXTERNAL_ID || strlen(id) != n)
        luaL_error(L, "%s: external_id must be a non-empty string of at most %d bytes (or an integer)", fn,
                   MAX_EXTERNAL_ID);
    return id;
}

/* Fields are read raw: an __index metamethod could hand back a string
 * that nothing keeps alive, and the pointer must outlive the pop. */
static int raw_field(lua_State *L, int t, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, t);
}

static const char *opt_string(lua_State *L, int t, const char *key, size_t max, size_t *len)
{
    int type = raw_field(L, t, key);
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (type != LUA_TSTRING)
        luaL_error(L, "ctx.records.upsert: fields.%s must be a string", key);
    size_t n;
    const char *v = lua_tolstring(L, -1, &n);
    lua_pop(L, 1);   /* the table, on the stack, keeps it alive */
    if (n > max)
        luaL_error(L, "ctx.records.upsert: fields.%s is longer than %d bytes", key, (int)max);
    if (len)
        *len = n;
    return v;
}

static int push_error(lua_State *L, ferr *err)
{
    lua_pushnil(L);
    lua_ctx_push_ferr(L, err);
    ferr_clear(err);
    return 2;
}

static int l_upsert(lua_State *L)
{
    static const char fn[] = "ctx.records.upsert";
    lua_ctx *c = sync_ctx(L, fn);
    sync_record rec = {0};
    rec.kind = check_kind(L, 1, fn);
    rec.external_id = check_id(L, 2, fn);
    luaL_checktype(L, 3, LUA_TTABLE);
    /* Its fields are read as they are stored: a proxy would hide them. */
    if (lua_getmetatable(L, 3))
        return luaL_error(L, "%s: fields must be a plain table (this one has a metatable)", fn);
    /* Every key must be known: a typo (titel) is an error, not lost data. */
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!k || !(strcmp(k, "title") == 0 || strcmp(k, "text") == 0 || strcmp(k, "url") == 0 ||
                    strcmp(k, "updated_at") == 0 || strcmp(k, "data") == 0))
            return luaL_error(L, "%s: unknown field '%s' (fields are title, text, url, updated_at, data)", fn,
                              k ? k : luaL_typename(L, -1));
    }
    rec.title = opt_string(L, 3, "title", MAX_TITLE, NULL);
    rec.text = opt_string(L, 3, "text", MAX_TEXT, &rec.text_len);
    rec.url = opt_string(L, 3, "url", MAX_URL, NULL);
    raw_field(L, 3, "updated_at");
    if (lua_type(L, -1) == LUA_TNUMBER) {
        /* Seconds since the epoch, kept as RFC 3339 text too; years 1970 to 9999. */
        double secs = lua_tonumber(L, -1);
        if (!(secs >= 0 && secs < 253402300800.0))
            return luaL_error(L, "%s: fields.updated_at in seconds must be from 0 to the year 9999", fn);
        rec.updated_ms = (int64_t)(secs * 1000.0);
        time_t t = (time_t)secs;
        struct tm tm;
        char buf[32];
        gmtime_r(&t, &tm);
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
        rec.updated_at = lua_pushstring(L, buf);   /* stays on the stack until we return */
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        rec.updated_at = lua_tostring(L, -1);
        rec.updated_ms = syncs_parse_time(rec.updated_at);
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "%s: fields.updated_at must be an RFC 3339 string or seconds since the epoch", fn);
    }
    char *data = NULL;
    raw_field(L, 3, "data");
    if (!lua_isnil(L, -1)) {
        ferr jerr = {0};
        json_t *v = lua_json_from(L, lua_gettop(L), &jerr);
        if (!v) {
            lua_pushfstring(L, "%s: fields.data: %s", fn, jerr.message);
            ferr_clear(&jerr);
            return lua_error(L);
        }
        data = json_dumps(v, JSON_TEXT);
        json_decref(v);
        if (!data)
            return luaL_error(L, "%s: out of memory", fn);
        if (strlen(data) > MAX_DATA) {
            free(data);
            return luaL_error(L, "%s: fields.data is larger than %d bytes of JSON", fn, (int)MAX_DATA);
        }
    }
    lua_pop(L, 1);
    rec.data = data;
    ferr err = {0};
    int rc = sync_run_upsert(c->sync, &rec, &err);
    free(data);
    if (rc < 0)
        return push_error(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_delete(lua_State *L)
{
    static const char fn[] = "ctx.records.delete";
    lua_ctx *c = sync_ctx(L, fn);
    const char *kind = check_kind(L, 1, fn);
    const char *id = check_id(L, 2, fn);
    ferr err = {0};
    if (sync_run_delete(c->sync, kind, id, &err) < 0)
        return push_error(L, &err);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- ctx.checkpoint: commit, then give the loop a turn ---- */

typedef struct turn {
    lhost_task *task;
    struct event *ev;
} turn;

static int push_true(lua_State *L, void *ud)
{
    (void)ud;
    lua_pushboolean(L, 1);
    return 1;
}

static void on_turn(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    turn *t = arg;
    lhost_task *task = t->task;
    event_free(t->ev);
    free(t);
    lhost_task_wake(task, push_true, NULL);
}

static void cancel_turn(void *ud)
{
    turn *t = ud;
    event_free(t->ev);
    free(t);
}

static int l_checkpoint(lua_State *L)
{
    static const char fn[] = "ctx.checkpoint";
    lua_ctx *c = sync_ctx(L, fn);
    char *cursor = NULL;
    if (!lua_isnoneornil(L, 1)) {
        ferr jerr = {0};
        json_t *v = lua_json_from(L, 1, &jerr);
        if (!v) {
            lua_pushfstring(L, "%s: the cursor %s", fn, jerr.message);
            ferr_clear(&jerr);
            return lua_error(L);
        }
        cursor = json_dumps(v, JSON_TEXT);
        json_decref(v);
        if (!cursor)
            return luaL_error(L, "%s: out of memory", fn);
        if (strlen(cursor) > MAX_CURSOR) {
            free(cursor);
            return luaL_error(L, "%s: the cursor is larger than %d bytes of JSON", fn, MAX_CURSOR);
        }
    }
    ferr err = {0};
    int rc = sync_run_checkpoint(c->sync, cursor, &err);
    free(cursor);
    if (rc < 0)
        return push_error(L, &err);
    /* Pages can come back to back without any request in between (a
     * script that computes its records): a turn of the loop between them
     * keeps other work flowing and resets the CPU slice. */
    if (!lhost_can_wait(L)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    turn *t = calloc(1, sizeof *t);
    if (t)
        t->ev = evtimer_new(c->svc->base, on_turn, t);
    struct timeval now = {0, 0};
    if (!t || !t->ev || evtimer_add(t->ev, &now) < 0) {
        if (t && t->ev)
            event_free(t->ev);
        free(t);
        lua_pushboolean(L, 1);
        return 1;
    }
    t->task = lhost_running(lhost_from(L));
    lhost_task_wait(t->task, cancel_turn, t);
    return lhost_suspend(L);
}

void lua_records_push(lua_State *L)
{
    static const luaL_Reg fns[] = {{"upsert", l_upsert}, {"delete", l_delete}, {NULL, NULL}};
    luaL_newlib(L, fns);
}

void lua_checkpoint_push(lua_State *L)
{
    lua_pushcfunction(L, l_checkpoint);
}
