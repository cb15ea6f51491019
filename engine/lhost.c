/* lhost.c — Lua states, their allocator and CPU cap, and the task runner.
 * The sandboxed environment itself is built in lhost_sandbox.c. */
#include "lhost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "log.h"

#define DEFAULT_MEMORY (64u << 20)
#define DEFAULT_CPU_MS 1000u
/* Instructions between CPU checks: ~0.1 ms of Lua, so the cap is exact
 * enough while the check costs well under 1% of run time. */
#define HOOK_EVERY 10000

/* Yielded by lhost_suspend; scripts can never obtain or forge it. */
char lhost_wait_marker;
static char env_key;       /* registry: the sandbox environment */
static char tasks_key;     /* registry: weak set of task threads */

/* Threads of tasks that finished normally, kept for the next task: a new
 * coroutine per call costs allocations and garbage. */
#define SPARE_THREADS 64

struct lhost {
    lua_State *L;
    lua_State *spare[SPARE_THREADS];
    int spare_ref[SPARE_THREADS];
    int nspare;
    char name[96];
    size_t used, limit;
    unsigned cpu_ms;
    void *ud;
    lhost_task *running;
    lhost_task *tasks;         /* live tasks, for lhost_free */
};

struct lhost_task {
    lhost *h;
    lhost_task *prev, *next;
    lua_State *co;
    int co_ref;
    lhost_done_fn done;
    void *done_arg;
    void *owner;
    char request_id[17];
    char label[96];
    double cpu_used_ms;
    double resumed_at_ms;
    unsigned cpu_cap_ms;       /* the whole task's CPU */
    unsigned slice_cap_ms;     /* CPU between two waits; 0: no such cap */
    int killed;                /* 1: past cpu_cap_ms, 2: past slice_cap_ms */
    int can_wait;
    int waiting;
    lhost_cancel_fn cancel;
    void *cancel_ud;
};

/* Time while a task's code runs. The loop's one thread is busy running
 * it, so elapsed time is its CPU time (give or take being preempted), and
 * the monotonic clock is read without a system call, unlike the thread
 * CPU clock: four reads per call add up. */
static double cpu_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The allocator is the memory cap: growth past the limit fails, Lua runs
 * an emergency collection, and if that is not enough the script gets a
 * memory error. Frees always succeed. */
static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lhost *h = ud;
    size_t old = ptr ? osize : 0;   /* without ptr, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        h->used -= old;
        return NULL;
    }
    if (nsize > old && h->used + (nsize - old) > h->limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    h->used = h->used - old + nsize;
    return p;
}

static int on_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_line *l = log_begin(LOG_ERROR, "lua panic");
    log_str(l, "error", msg ? msg : "?");
    log_end(l);
    abort();
}

lhost *lhost_from(lua_State *L) { return *(lhost **)lua_getextraspace(L); }
lua_State *lhost_state(lhost *h) { return h->L; }
const char *lhost_name(const lhost *h) { return h->name; }
size_t lhost_memory(const lhost *h) { return h->used; }
void lhost_set_userdata(lhost *h, void *ud) { h->ud = ud; }
void *lhost_userdata(const lhost *h) { return h->ud; }
lhost_task *lhost_running(lhost *h) { return h->running; }
void *lhost_task_owner(const lhost_task *t) { return t->owner; }
const char *lhost_task_request_id(const lhost_task *t) { return t->request_id; }
const char *lhost_task_label(const lhost_task *t) { return t->label; }

/* Runs during lhost_new in protected mode: libraries, registry tables and
 * the sandbox. */
static int setup_state(lua_State *L)
{
    lhost *h = lua_touserdata(L, 1);
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},           {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table},     {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8},     {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_OSLIBNAME, luaopen_os},         {NULL, NULL},
    };
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    /* Task threads, weakly held, so coroutine.resume can refuse them. */
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &tasks_key);

    lhost_sandbox_build(L, h);   /* pushes the environment */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &env_key);
    return 0;
}

lhost *lhost_new(const char *name, const lhost_limits *limits)
{
    lhost *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    snprintf(h->name, sizeof h->name, "%s", name ? name : "?");
    h->limit = limits && limits->memory_bytes ? limits->memory_bytes : DEFAULT_MEMORY;
    h->cpu_ms = limits && limits->cpu_ms ? limits->cpu_ms : DEFAULT_CPU_MS;
    h->L = lua_newstate(capped_alloc, h);
    if (!h->L) {
        free(h);
        return NULL;
    }
    *(lhost **)lua_getextraspace(h->L) = h;   /* new threads copy this */
    lua_atpanic(h->L, on_panic);
    lua_pushcfunction(h->L, setup_state);
    lua_pushlightuserdata(h->L, h);
    if (lua_pcall(h->L, 1, 0, 0) != LUA_OK) {
        log_line *l = log_begin(LOG_ERROR, "lua state setup failed");
        log_str(l, "error", lua_tostring(h->L, -1));
        log_end(l);
        lua_close(h->L);
        free(h);
        return NULL;
    }
    return h;
}

static void unlink_task(lhost_task *t)
{
    lhost *h = t->h;
    if (t->prev)
        t->prev->next = t->next;
    else
        h->tasks = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void free_task(lhost_task *t)
{
    unlink_task(t);
    luaL_unref(t->h->L, LUA_REGISTRYINDEX, t->co_ref);
    free(t);
}

void lhost_free(lhost *h)
{
    if (!h)
        return;
    while (h->tasks)
        lhost_task_abort(h->tasks);
    lua_close(h->L);
    free(h);
}

void lhost_set_env(lhost *h, lua_State *L, int idx)
{
    (void)h;
    idx = lua_absindex(L, idx);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key);
    if (!lua_setupvalue(L, idx, 1))
        lua_pop(L, 1);
}

static int strict_index(lua_State *L)
{
    return luaL_error(L, "undeclared global '%s'", lua_tostring(L, 2) ? lua_tostring(L, 2) : "?");
}

static int strict_newindex(lua_State *L)
{
    return luaL_error(L, "assignment to undeclared global '%s' (use local)",
                      lua_tostring(L, 2) ? lua_tostring(L, 2) : "?");
}

static int seal_protected(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key);
    lua_newtable(L);
    lua_pushcfunction(L, strict_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, strict_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");   /* scripts cannot unseal */
    lua_setmetatable(L, -2);
    return 0;
}

void lhost_seal_globals(lhost *h)
{
    lua_pushcfunction(h->L, seal_protected);
    if (lua_pcall(h->L, 0, 0, 0) != LUA_OK)
        lua_pop(h->L, 1);
}

int lhost_is_task_thread(lua_State *L, lua_State *co)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &tasks_key);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    int is = lua_rawget(L, -2) != LUA_TNIL;
    lua_pop(L, 2);
    return is;
}

/* ---- the CPU cap ---- */

static void count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lhost *h = lhost_from(L);
    lhost_task *t = h->running;
    if (!t)
        return;
    if (!t->killed) {
        double slice = cpu_now_ms() - t->resumed_at_ms;
        double used = t->cpu_used_ms + slice;
        if (t->slice_cap_ms && slice >= (double)t->slice_cap_ms)
            t->killed = 2;
        else if (used < (double)t->cpu_cap_ms) {
            /* A thread left over from a killed task may still tick every
             * instruction; put it back to the normal rate. */
            if (lua_gethookcount(L) != HOOK_EVERY)
                lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
            return;
        } else
            t->killed = 1;
    }
    /* From now on every instruction raises, so a script that catches the
     * error with pcall cannot keep running. */
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "script exceeded its CPU time limit");
}

/* ---- errors ---- */

/* "providers/x.lua:12: message" → file, line, and the message after them. */
static void add_location(ferr *e, const char *msg)
{
    const char *colon = strchr(msg, ':');
    if (!colon || colon == msg)
        return;
    char *end;
    long line = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != ':' || line <= 0)
        return;
    ferr_detail(e, "file", json_stringn(msg, (size_t)(colon - msg)));
    ferr_detail(e, "line", json_integer(line));
}

static const char *raw_string_field(lua_State *L, int idx, const char *key)
{
    lua_pushstring(L, key);
    lua_rawget(L, idx);
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);   /* still anchored by the table */
    return s;
}

/* Converts the error value on top of co; never runs script code. */
static void task_error(lhost_task *t, int status, ferr *e)
{
    lhost *h = t->h;
    lua_State *co = t->co;
    if (t->killed == 2) {
        ferr_set(e, FERR_SCRIPT_TIMEOUT, "script ran %u ms without waiting for anything (its limit between waits)",
                 t->slice_cap_ms);
        return;
    }
    if (t->killed) {
        ferr_set(e, FERR_SCRIPT_TIMEOUT, "script ran longer than its CPU limit of %u ms", t->cpu_cap_ms);
        return;
    }
    if (status == LUA_ERRMEM) {
        ferr_set(e, FERR_SCRIPT_MEMORY, "script exceeded its memory limit of %zu MiB", h->limit >> 20);
        return;
    }
    int top = lua_gettop(co);
    if (lua_type(co, top) == LUA_TTABLE) {
        const char *code = raw_string_field(co, top, "code");
        const char *msg = raw_string_field(co, top, "message");
        ferr_code c = ferr_code_from_name(code);
        ferr_set(e, c ? c : FERR_SCRIPT_ERROR, "%s", msg ? msg : code ? code : "script raised an error");
        if (code && !c)
            ferr_detail(e, "code", json_string(code));
        /* A raised rate limit keeps its delay, as a returned one does. */
        lua_pushliteral(co, "retry_after");
        if (lua_rawget(co, top) == LUA_TNUMBER)
            ferr_detail(e, "retry_after", json_real(lua_tonumber(co, -1)));
        lua_pop(co, 1);
        return;
    }
    const char *msg = lua_type(co, top) == LUA_TSTRING || lua_type(co, top) == LUA_TNUMBER
                          ? lua_tostring(co, top) : NULL;
    if (!msg) {
        ferr_set(e, FERR_SCRIPT_ERROR, "script raised an error value of type %s",
                 luaL_typename(co, top));
        return;
    }
    if (strcmp(msg, "not enough memory") == 0) {
        ferr_set(e, FERR_SCRIPT_MEMORY, "script exceeded its memory limit of %zu MiB", h->limit >> 20);
        return;
    }
    ferr_set(e, FERR_SCRIPT_ERROR, "%s", msg);
    add_location(e, msg);
    /* The traceback goes to the log, where the integrator looks; the
     * caller gets the message and its location. */
    if (log_enabled(LOG_WARN) && lua_checkstack(h->L, 4)) {
        luaL_traceback(h->L, co, msg, 0);
        log_line *l = log_begin(LOG_WARN, "script error");
        log_str(l, "request_id", t->request_id[0] ? t->request_id : NULL);
        log_str(l, "provider", h->name);
        log_str(l, "task", t->label);
        log_str(l, "traceback", lua_tostring(h->L, -1));
        log_end(l);
        lua_pop(h->L, 1);
    }
}

/* ---- running tasks ---- */

void lhost_task_cancel_wait(lhost_task *t)
{
    if (t && t->waiting) {
        t->waiting = 0;
        if (t->cancel)
            t->cancel(t->cancel_ud);
        t->cancel = NULL;
    }
}

static void complete(lhost_task *t, int nres, ferr *err)
{
    /* A wait registered by a primitive whose yield never reached the
     * engine (a coroutine resumed across a C boundary) must not outlive
     * the task: its completion would wake freed memory. */
    lhost_task_cancel_wait(t);
    int reusable = !err && lua_status(t->co) == LUA_OK;
    t->done(t, t->co, nres, err, t->done_arg);
    lhost *h = t->h;
    if (reusable && h->nspare < SPARE_THREADS) {
        lua_settop(t->co, 0);
        h->spare[h->nspare] = t->co;
        h->spare_ref[h->nspare++] = t->co_ref;
        unlink_task(t);
        free(t);
        return;
    }
    free_task(t);
}

static void run(lhost_task *t, int nargs)
{
    lhost *h = t->h;
    lhost_task *outer = h->running;
    h->running = t;
    t->resumed_at_ms = cpu_now_ms();
    int nres = 0;
    int status = lua_resume(t->co, NULL, nargs, &nres);
    t->cpu_used_ms += cpu_now_ms() - t->resumed_at_ms;
    h->running = outer;

    if (status == LUA_YIELD) {
        if (nres == 1 && t->waiting && lua_touserdata(t->co, -1) == &lhost_wait_marker) {
            lua_pop(t->co, 1);
            return;   /* lhost_task_wake continues it */
        }
        lua_pop(t->co, nres);
        ferr e = {0};
        ferr_set(&e, FERR_SCRIPT_ERROR, "coroutine.yield was called outside a coroutine the script created");
        complete(t, 0, &e);
        ferr_clear(&e);
        return;
    }
    if (status == LUA_OK) {
        complete(t, nres, NULL);
        return;
    }
    ferr e = {0};
    task_error(t, status, &e);
    complete(t, 0, &e);
    ferr_clear(&e);
}

typedef struct start_args {
    lhost *h;
    int fn_ref;
    lhost_push_fn push;
    void *ud;
    lua_State *co;
    int co_ref;
    int nargs;
} start_args;

static int start_protected(lua_State *L)
{
    start_args *a = lua_touserdata(L, 1);
    lhost *h = a->h;
    lua_State *co;
    if (h->nspare > 0) {
        h->nspare--;
        co = h->spare[h->nspare];
        a->co_ref = h->spare_ref[h->nspare];
    } else {
        co = lua_newthread(L);
        lua_rawgetp(L, LUA_REGISTRYINDEX, &tasks_key);
        lua_pushvalue(L, -2);
        lua_pushboolean(L, 1);
        lua_rawset(L, -3);
        lua_pop(L, 1);
        a->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    a->co = co;
    int base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, a->fn_ref);
    if (!lua_isfunction(L, -1))
        return luaL_error(L, "task function is missing");
    int n = a->push ? a->push(L, a->ud) : 0;
    if (!lua_checkstack(co, n + 1))
        return luaL_error(L, "too many arguments");
    lua_xmove(L, co, lua_gettop(L) - base);
    a->nargs = n;
    return 0;
}

static int task_start(lhost *h, int fn_ref, lhost_push_fn push, void *push_ud, lhost_done_fn done,
                              void *done_arg, void *owner, const char *request_id, const char *label,
                              int can_wait, const lhost_task_limits *limits, lhost_task **out, ferr *err)
{
    lhost_task *t = calloc(1, sizeof *t);
    if (!t) {
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    }
    start_args a = {.h = h, .fn_ref = fn_ref, .push = push, .ud = push_ud, .co_ref = LUA_NOREF};
    lua_pushcfunction(h->L, start_protected);
    lua_pushlightuserdata(h->L, &a);
    if (lua_pcall(h->L, 1, 0, 0) != LUA_OK) {
        int mem = lua_type(h->L, -1) == LUA_TSTRING && strcmp(lua_tostring(h->L, -1), "not enough memory") == 0;
        ferr_set(err, mem ? FERR_SCRIPT_MEMORY : FERR_INTERNAL, "cannot start the script: %s",
                 lua_tostring(h->L, -1) ? lua_tostring(h->L, -1) : "?");
        lua_pop(h->L, 1);
        luaL_unref(h->L, LUA_REGISTRYINDEX, a.co_ref);
        free(t);
        return -1;
    }
    t->h = h;
    t->co = a.co;
    t->co_ref = a.co_ref;
    t->done = done;
    t->done_arg = done_arg;
    t->owner = owner;
    t->can_wait = can_wait;
    t->cpu_cap_ms = limits && limits->cpu_ms ? limits->cpu_ms : h->cpu_ms;
    t->slice_cap_ms = limits ? limits->slice_ms : 0;
    snprintf(t->request_id, sizeof t->request_id, "%s", request_id ? request_id : "");
    snprintf(t->label, sizeof t->label, "%s", label ? label : "");
    lua_sethook(t->co, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
    t->next = h->tasks;
    if (h->tasks)
        h->tasks->prev = t;
    h->tasks = t;
    if (out)
        *out = t;
    run(t, a.nargs);   /* may finish and free t */
    return 0;
}

int lhost_task_start(lhost *h, int fn_ref, lhost_push_fn push_args, void *push_ud, lhost_done_fn done,
                     void *done_arg, void *owner, const char *request_id, const char *label,
                     lhost_task **out, ferr *err)
{
    return task_start(h, fn_ref, push_args, push_ud, done, done_arg, owner, request_id, label, 1, NULL, out, err);
}

int lhost_task_start_limited(lhost *h, int fn_ref, lhost_push_fn push_args, void *push_ud, lhost_done_fn done,
                             void *done_arg, void *owner, const char *request_id, const char *label,
                             const lhost_task_limits *limits, lhost_task **out, ferr *err)
{
    return task_start(h, fn_ref, push_args, push_ud, done, done_arg, owner, request_id, label, 1, limits, out,
                      err);
}

int lhost_can_wait(lua_State *L)
{
    lhost *h = lhost_from(L);
    return h->running && h->running->can_wait && !h->running->waiting && lua_isyieldable(L);
}

void lhost_task_wait(lhost_task *t, lhost_cancel_fn cancel, void *ud)
{
    t->waiting = 1;
    t->cancel = cancel;
    t->cancel_ud = ud;
}

int lhost_suspend(lua_State *L)
{
    lua_pushlightuserdata(L, &lhost_wait_marker);
    return lua_yield(L, 1);
}

typedef struct wake_args {
    lhost_push_fn push;
    void *ud;
    int n;
} wake_args;

static int wake_protected(lua_State *L)
{
    wake_args *a = lua_touserdata(L, 1);
    lua_pop(L, 1);
    a->n = a->push ? a->push(L, a->ud) : 0;
    return a->n;
}

void lhost_task_wake(lhost_task *t, lhost_push_fn push, void *ud)
{
    lhost *h = t->h;
    t->waiting = 0;
    t->cancel = NULL;
    /* Results are built on the main thread under pcall, so running out of
     * memory fails this task instead of the process, then moved over. */
    wake_args a = {.push = push, .ud = ud};
    int base = lua_gettop(h->L);
    lua_pushcfunction(h->L, wake_protected);
    lua_pushlightuserdata(h->L, &a);
    int rc = lua_pcall(h->L, 1, LUA_MULTRET, 0);
    int n = lua_gettop(h->L) - base;
    if (rc != LUA_OK || !lua_checkstack(t->co, n)) {
        lua_settop(h->L, base);
        ferr e = {0};
        ferr_set(&e, FERR_SCRIPT_MEMORY, "script exceeded its memory limit of %zu MiB", h->limit >> 20);
        complete(t, 0, &e);
        ferr_clear(&e);
        return;
    }
    lua_xmove(h->L, t->co, n);
    run(t, n);
}

void lhost_task_abort(lhost_task *t)
{
    lhost_task_cancel_wait(t);
    free_task(t);
}

/* ---- chunks ---- */

typedef struct chunk_result {
    int ok;
    ferr *err;
} chunk_result;

static void chunk_done(lhost_task *t, lua_State *L, int nres, ferr *err, void *arg)
{
    chunk_result *r = arg;
    lua_State *main = t->h->L;
    if (err) {
        ferr_move(r->err, err);
        return;
    }
    if (!lua_checkstack(main, 1)) {
        ferr_set(r->err, FERR_SCRIPT_MEMORY, "out of memory");
        return;
    }
    if (nres == 0)
        lua_pushnil(main);
    else {
        lua_settop(L, lua_gettop(L) - nres + 1);
        lua_xmove(L, main, 1);
    }
    r->ok = 1;
}

int lhost_run_chunk(lhost *h, const char *src, size_t len, const char *chunkname, ferr *err)
{
    int status = luaL_loadbufferx(h->L, src, len, chunkname, "t");
    if (status != LUA_OK) {
        const char *msg = lua_tostring(h->L, -1);
        if (status == LUA_ERRMEM)
            ferr_set(err, FERR_SCRIPT_MEMORY, "out of memory loading %s", chunkname);
        else {
            ferr_set(err, FERR_SCRIPT_ERROR, "%s", msg ? msg : "syntax error");
            add_location(err, msg ? msg : "");
        }
        lua_pop(h->L, 1);
        return -1;
    }
    lhost_set_env(h, h->L, -1);
    int ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    if (ref == LUA_REFNIL || ref == LUA_NOREF)
        return ferr_set(err, FERR_SCRIPT_MEMORY, "out of memory loading %s", chunkname);
    chunk_result r = {.err = err};
    const char *label = chunkname[0] == '@' || chunkname[0] == '=' ? chunkname + 1 : chunkname;
    task_start(h, ref, NULL, NULL, chunk_done, &r, NULL, NULL, label, 0, NULL, NULL, err);
    luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
    return r.ok ? 0 : -1;
}
