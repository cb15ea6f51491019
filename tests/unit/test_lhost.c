/* test_lhost — the Lua host: chunks and their errors, the CPU and memory
 * caps, tasks (results, errors, waits through lhost_task_wait/wake, also
 * from inside coroutines the script made, abort), the sandbox's globals,
 * sealing, and ferry's task threads being off limits to scripts.
 *
 * Primitives are plain C closures handed to task functions as arguments
 * (push_args), or set on the sandbox environment, which a chunk returns
 * with `return _ENV`. */
#include "lhost.h"
#include "testutil.h"

#include <lauxlib.h>

/* ---- helpers -------------------------------------------------------- */

static lhost *new_host(size_t memory, unsigned cpu_ms)
{
    lhost_limits lim = {.memory_bytes = memory, .cpu_ms = cpu_ms};
    lhost *h = lhost_new("test", &lim);
    if (!h) {
        fprintf(stderr, "lhost_new failed\n");
        exit(2);
    }
    return h;
}

/* Runs a chunk that must succeed; its result stays on the stack. */
static int chunk(lhost *h, const char *src)
{
    ferr err = {0};
    int rc = lhost_run_chunk(h, src, strlen(src), "=test", &err);
    if (rc < 0)
        fprintf(stderr, "  chunk failed: %s\n", err.message);
    ferr_clear(&err);
    return rc;
}

/* A registry reference to the function a chunk returns. */
static int fn_ref(lhost *h, const char *src)
{
    if (chunk(h, src) < 0)
        return LUA_NOREF;
    lua_State *L = lhost_state(h);
    if (!lua_isfunction(L, -1)) {
        fprintf(stderr, "  chunk did not return a function\n");
        lua_pop(L, 1);
        return LUA_NOREF;
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Sets env[name] = C function `fn` with light userdata `ud` as upvalue. */
static void set_env_fn(lhost *h, const char *name, lua_CFunction fn, void *ud)
{
    lua_State *L = lhost_state(h);
    if (chunk(h, "return _ENV") < 0)
        return;
    lua_pushstring(L, name);
    lua_pushlightuserdata(L, ud);
    lua_pushcclosure(L, fn, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* What a task's done function saw. */
typedef struct outcome {
    int calls;
    int nres;
    char res[8][96];
    int failed;
    ferr err;
} outcome;

static void on_done(lhost_task *t, lua_State *L, int nres, ferr *err, void *arg)
{
    (void)t;
    outcome *o = arg;
    o->calls++;
    o->nres = nres;
    if (err) {
        o->failed = 1;
        ferr_move(&o->err, err);
        return;
    }
    int base = lua_gettop(L) - nres;
    for (int i = 0; i < nres && i < 8; i++) {
        int idx = base + 1 + i;
        switch (lua_type(L, idx)) {
        case LUA_TSTRING:
        case LUA_TNUMBER:
            snprintf(o->res[i], sizeof o->res[i], "%s", lua_tostring(L, idx));
            break;
        case LUA_TBOOLEAN:
            snprintf(o->res[i], sizeof o->res[i], "%s", lua_toboolean(L, idx) ? "true" : "false");
            break;
        default:
            snprintf(o->res[i], sizeof o->res[i], "<%s>", luaL_typename(L, idx));
        }
    }
}

static void outcome_clear(outcome *o)
{
    ferr_clear(&o->err);
    memset(o, 0, sizeof *o);
}

/* A test primitive: waits for the test to wake the task. */
typedef struct waiter {
    lhost_task *task;
    int waits, cancels, refusals;
} waiter;

static void on_cancel(void *ud)
{
    waiter *w = ud;
    w->cancels++;
    w->task = NULL;
}

static int prim_wait(lua_State *L)
{
    waiter *w = lua_touserdata(L, lua_upvalueindex(1));
    if (!lhost_can_wait(L)) {
        w->refusals++;
        lua_pushnil(L);
        lua_pushliteral(L, "cannot wait here");
        return 2;
    }
    w->task = lhost_running(lhost_from(L));
    w->waits++;
    lhost_task_wait(w->task, on_cancel, w);
    return lhost_suspend(L);
}

static int push_waiter(lua_State *L, void *ud)
{
    lua_pushlightuserdata(L, ud);
    lua_pushcclosure(L, prim_wait, 1);
    return 1;
}

typedef struct wake_values {
    lua_Integer i;
    const char *s;
} wake_values;

static int push_wake_values(lua_State *L, void *ud)
{
    wake_values *v = ud;
    lua_pushinteger(L, v->i);
    lua_pushstring(L, v->s);
    return 2;
}

typedef struct slices_args {
    waiter *w;
    int slices, ms;
} slices_args;

static int push_slices(lua_State *L, void *ud)
{
    slices_args *a = ud;
    push_waiter(L, a->w);
    lua_pushinteger(L, a->slices);
    lua_pushinteger(L, a->ms);
    return 3;
}

static int push_one(lua_State *L, void *ud)
{
    lua_pushinteger(L, *(lua_Integer *)ud);
    return 1;
}

static int start(lhost *h, int ref, lhost_push_fn push, void *ud, outcome *o, lhost_task **out)
{
    ferr err = {0};
    int rc = lhost_task_start(h, ref, push, ud, on_done, o, NULL, "req1", "test", out, &err);
    if (rc < 0)
        fprintf(stderr, "  lhost_task_start: %s\n", err.message);
    ferr_clear(&err);
    return rc;
}

/* ---- chunks --------------------------------------------------------- */

static void chunk_returning_a_table_leaves_it_on_the_stack(void)
{
    lhost *h = new_host(0, 0);
    lua_State *L = lhost_state(h);
    int top = lua_gettop(L);
    CHECK_INT(chunk(h, "local t = {answer = 42, list = {1, 2}} return t, 'ignored'"), 0);
    CHECK_INT(lua_gettop(L), top + 1);
    CHECK(lua_istable(L, -1));
    lua_getfield(L, -1, "answer");
    CHECK_INT(lua_tointeger(L, -1), 42);
    lua_pop(L, 2);

    /* No result pushes nil, so the stack grows by exactly one. */
    CHECK_INT(chunk(h, "local x = 1"), 0);
    CHECK_INT(lua_gettop(L), top + 1);
    CHECK(lua_isnil(L, -1));
    lua_pop(L, 1);
    CHECK_STR(lhost_name(h), "test");
    CHECK(lhost_from(L) == h);
    CHECK(lhost_running(h) == NULL);
    lhost_free(h);
}

static void chunk_syntax_error_is_script_error_with_file_and_line(void)
{
    lhost *h = new_host(0, 0);
    lua_State *L = lhost_state(h);
    int top = lua_gettop(L);
    const char *src = "local x = 1\n\nlocal = 2\n";
    ferr err = {0};
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "@providers/broken.lua", &err), -1);
    CHECK_INT(err.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(err.message, "providers/broken.lua:3:");
    CHECK(err.details != NULL);
    CHECK_STR(json_string_value(json_object_get(err.details, "file")), "providers/broken.lua");
    CHECK_INT(json_integer_value(json_object_get(err.details, "line")), 3);
    CHECK_INT(lua_gettop(L), top);
    ferr_clear(&err);

    /* Binary chunks are refused at load. */
    const char bin[] = "\x1bLua\x54";
    CHECK_INT(lhost_run_chunk(h, bin, sizeof bin - 1, "=bin", &err), -1);
    CHECK_INT(err.code, FERR_SCRIPT_ERROR);
    CHECK_INT(lua_gettop(L), top);
    ferr_clear(&err);
    lhost_free(h);
}

static void chunk_runtime_error_has_file_and_line(void)
{
    lhost *h = new_host(0, 0);
    const char *src = "local a = 1\nerror('boom ' .. a)\n";
    ferr err = {0};
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "@providers/x.lua", &err), -1);
    CHECK_INT(err.code, FERR_SCRIPT_ERROR);
    CHECK_STR(err.message, "providers/x.lua:2: boom 1");
    CHECK_STR(json_string_value(json_object_get(err.details, "file")), "providers/x.lua");
    CHECK_INT(json_integer_value(json_object_get(err.details, "line")), 2);
    CHECK_INT(lua_gettop(lhost_state(h)), 0);
    ferr_clear(&err);
    lhost_free(h);
}

static void chunk_looping_forever_is_script_timeout(void)
{
    lhost *h = new_host(0, 100);
    ferr err = {0};
    const char *src = "while true do end";
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "=loop", &err), -1);
    CHECK_INT(err.code, FERR_SCRIPT_TIMEOUT);
    CHECK_CONTAINS(err.message, "100 ms");
    ferr_clear(&err);

    /* Catching the error with pcall does not buy more time. */
    src = "while true do pcall(function() while true do end end) end";
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "=loop", &err), -1);
    CHECK_INT(err.code, FERR_SCRIPT_TIMEOUT);
    ferr_clear(&err);

    /* Nor does looping inside a coroutine of the script's own. */
    src = "while true do coroutine.resume(coroutine.create(function() while true do end end)) end";
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "=loop", &err), -1);
    CHECK_INT(err.code, FERR_SCRIPT_TIMEOUT);
    ferr_clear(&err);

    /* The state keeps serving. */
    CHECK_INT(chunk(h, "return 1"), 0);
    lua_pop(lhost_state(h), 1);
    lhost_free(h);
}

static void chunk_allocating_without_bound_is_script_memory(void)
{
    size_t cap = 8u << 20;
    lhost *h = new_host(cap, 0);
    CHECK(lhost_memory(h) > 0);
    CHECK(lhost_memory(h) < cap);
    ferr err = {0};
    const char *src = "local t, i = {}, 0\n"
                      "while true do i = i + 1; t[i] = string.rep('x', 1000) .. i end";
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "=hog", &err), -1);
    CHECK_INT(err.code, FERR_SCRIPT_MEMORY);
    CHECK_CONTAINS(err.message, "8 MiB");
    CHECK(lhost_memory(h) <= cap);
    ferr_clear(&err);

    /* One huge allocation fails the same way. */
    src = "return string.rep('x', 64 * 1024 * 1024)";
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "=big", &err), -1);
    CHECK_INT(err.code, FERR_SCRIPT_MEMORY);
    CHECK(lhost_memory(h) <= cap);
    ferr_clear(&err);

    /* Memory errors caught by pcall cannot push past the cap either. */
    src = "local keep = {}\n"
          "for i = 1, 200 do pcall(function() keep[#keep + 1] = string.rep('y', 100000) .. i end) end\n"
          "return #keep";
    CHECK_INT(chunk(h, src), 0);
    CHECK(lhost_memory(h) <= cap);
    lua_pop(lhost_state(h), 1);

    /* Afterwards the garbage is collectable and the state still works. */
    lua_gc(lhost_state(h), LUA_GCCOLLECT, 0);
    CHECK(lhost_memory(h) < cap / 2);
    CHECK_INT(chunk(h, "return 'still alive'"), 0);
    CHECK_STR(lua_tostring(lhost_state(h), -1), "still alive");
    lua_pop(lhost_state(h), 1);
    lhost_free(h);
}

/* ---- tasks ---------------------------------------------------------- */

static void task_returning_values_calls_done_synchronously(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(n) return n + 1, 'two', nil, true end");
    outcome o = {0};
    lua_Integer n = 41;
    lhost_task *t = NULL;
    CHECK_INT(start(h, ref, push_one, &n, &o, &t), 0);
    CHECK(t != NULL);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.failed, 0);
    CHECK_INT(o.nres, 4);
    CHECK_STR(o.res[0], "42");
    CHECK_STR(o.res[1], "two");
    CHECK_STR(o.res[2], "<nil>");
    CHECK_STR(o.res[3], "true");
    CHECK(lhost_running(h) == NULL);
    outcome_clear(&o);
    luaL_unref(lhost_state(h), LUA_REGISTRYINDEX, ref);
    lhost_free(h);
}

static void task_start_of_a_non_function_fails_without_done(void)
{
    lhost *h = new_host(0, 0);
    lua_State *L = lhost_state(h);
    lua_pushinteger(L, 5);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    outcome o = {0};
    ferr err = {0};
    CHECK_INT(lhost_task_start(h, ref, NULL, NULL, on_done, &o, NULL, NULL, NULL, NULL, &err), -1);
    CHECK(err.code != FERR_OK);
    CHECK_INT(o.calls, 0);
    ferr_clear(&err);
    lhost_free(h);
}

static void task_raising_a_string_is_script_error(void)
{
    lhost *h = new_host(0, 0);
    const char *src = "return function()\n  error('went wrong')\nend";
    ferr err = {0};
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "@providers/p.lua", &err), 0);
    int ref = luaL_ref(lhost_state(h), LUA_REGISTRYINDEX);
    outcome o = {0};
    CHECK_INT(start(h, ref, NULL, NULL, &o, NULL), 0);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.failed, 1);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_STR(o.err.message, "providers/p.lua:2: went wrong");
    CHECK_INT(json_integer_value(json_object_get(o.err.details, "line")), 2);
    outcome_clear(&o);
    ferr_clear(&err);
    lhost_free(h);
}

static void task_raising_a_coded_table_keeps_the_code(void)
{
    lhost *h = new_host(0, 0);
    int forbidden = fn_ref(h, "return function() error({code = 'forbidden', message = 'x'}) end");
    int limited = fn_ref(h, "return function() error({code = 'upstream_rate_limited', message = 'slow',"
                            " retry_after = 20}) end");
    int custom = fn_ref(h, "return function() error({code = 'my_code', message = 'custom'}) end");
    int no_message = fn_ref(h, "return function() error({code = 'not_found'}) end");
    int non_string = fn_ref(h, "return function() error(true) end");
    int number = fn_ref(h, "return function() error(42) end");

    outcome o = {0};
    start(h, forbidden, NULL, NULL, &o, NULL);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.err.code, FERR_FORBIDDEN);
    CHECK_STR(o.err.message, "x");
    outcome_clear(&o);

    /* A raised rate limit keeps its delay. */
    start(h, limited, NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_UPSTREAM_RATE_LIMITED);
    CHECK_INT(json_number_value(json_object_get(o.err.details, "retry_after")), 20);
    outcome_clear(&o);

    /* A code ferry does not know is a script_error that names it. */
    start(h, custom, NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_STR(o.err.message, "custom");
    CHECK_STR(json_string_value(json_object_get(o.err.details, "code")), "my_code");
    outcome_clear(&o);

    start(h, no_message, NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_NOT_FOUND);
    CHECK_STR(o.err.message, "not_found");
    outcome_clear(&o);

    start(h, non_string, NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(o.err.message, "boolean");
    outcome_clear(&o);

    start(h, number, NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_STR(o.err.message, "42");
    outcome_clear(&o);
    lhost_free(h);
}

static void task_looping_forever_is_script_timeout_and_state_survives(void)
{
    lhost *h = new_host(0, 100);
    int loop = fn_ref(h, "return function() local n = 0 while true do n = n + 1 end end");
    int quick = fn_ref(h, "return function() return 'quick' end");
    outcome o = {0};
    start(h, loop, NULL, NULL, &o, NULL);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.err.code, FERR_SCRIPT_TIMEOUT);
    outcome_clear(&o);
    /* The CPU budget is per task: the next one starts afresh. */
    start(h, quick, NULL, NULL, &o, NULL);
    CHECK_INT(o.failed, 0);
    CHECK_STR(o.res[0], "quick");
    outcome_clear(&o);
    lhost_free(h);
}

static int start_limited(lhost *h, int ref, lhost_push_fn push, void *ud, outcome *o, lhost_task **out,
                         unsigned cpu_ms, unsigned slice_ms)
{
    ferr err = {0};
    lhost_task_limits lim = {.cpu_ms = cpu_ms, .slice_ms = slice_ms};
    int rc = lhost_task_start_limited(h, ref, push, ud, on_done, o, NULL, "req1", "test", &lim, out, &err);
    if (rc < 0)
        fprintf(stderr, "  lhost_task_start_limited: %s\n", err.message);
    ferr_clear(&err);
    return rc;
}

/* A sync run: far more CPU in all than the state's cap, as long as it
 * waits between slices; a slice that runs too long without waiting ends it. */
static void long_task_has_its_own_cap_and_a_cap_between_waits(void)
{
    lhost *h = new_host(0, 30);
    int ref = fn_ref(h, "return function(wait, slices, ms)\n"
                        "  for _ = 1, slices do\n"
                        "    local t = os.clock()\n"
                        "    while os.clock() - t < ms / 1000 do end\n"
                        "    wait()\n"
                        "  end\n"
                        "  return 'done'\n"
                        "end");
    waiter w = {0};
    outcome o = {0};
    slices_args args = {&w, 6, 10};
    /* 6 slices of 10 ms: 60 ms in all, over the state's 30 ms cap. */
    CHECK_INT(start_limited(h, ref, push_slices, &args, &o, NULL, 5000, 200), 0);
    for (int i = 0; i < 6 && w.task; i++) {
        lhost_task *t = w.task;
        w.task = NULL;
        lhost_task_wake(t, NULL, NULL);
    }
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.failed, 0);
    if (o.failed)
        fprintf(stderr, "  %s\n", o.err.message);
    CHECK_STR(o.res[0], "done");
    outcome_clear(&o);

    /* One slice of a second without waiting: past the 200 ms between waits. */
    args.slices = 1;
    args.ms = 1000;
    w = (waiter){0};
    CHECK_INT(start_limited(h, ref, push_slices, &args, &o, NULL, 5000, 200), 0);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.err.code, FERR_SCRIPT_TIMEOUT);
    CHECK_CONTAINS(o.err.message, "without waiting");
    outcome_clear(&o);
    lhost_free(h);
}

static void task_yielding_outside_a_script_coroutine_is_an_error(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function() coroutine.yield(1) return 'after' end");
    outcome o = {0};
    start(h, ref, NULL, NULL, &o, NULL);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(o.err.message, "coroutine.yield");
    outcome_clear(&o);
    lhost_free(h);
}

/* ---- waiting -------------------------------------------------------- */

static void waiting_primitive_suspends_and_wake_resumes_with_values(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(wait)\n"
                        "  local n, s = wait()\n"
                        "  return n + 1, s .. '!', 'after'\n"
                        "end");
    waiter w = {0};
    outcome o = {0};
    lhost_task *t = NULL;
    CHECK_INT(start(h, ref, push_waiter, &w, &o, &t), 0);
    CHECK_INT(w.waits, 1);
    CHECK_INT(o.calls, 0);
    CHECK(w.task == t);
    CHECK(lhost_running(h) == NULL);
    CHECK_STR(lhost_task_request_id(t), "req1");
    CHECK_STR(lhost_task_label(t), "test");

    wake_values v = {41, "hello"};
    lhost_task_wake(w.task, push_wake_values, &v);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.failed, 0);
    CHECK_INT(o.nres, 3);
    CHECK_STR(o.res[0], "42");
    CHECK_STR(o.res[1], "hello!");
    CHECK_STR(o.res[2], "after");
    CHECK_INT(w.cancels, 0);
    outcome_clear(&o);
    lhost_free(h);
}

static void several_waits_in_sequence_and_interleaved_tasks(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(wait)\n"
                        "  local total = 0\n"
                        "  for i = 1, 3 do local n = wait() total = total + n end\n"
                        "  return total\n"
                        "end");
    waiter wa = {0}, wb = {0};
    outcome oa = {0}, ob = {0};
    start(h, ref, push_waiter, &wa, &oa, NULL);
    start(h, ref, push_waiter, &wb, &ob, NULL);
    wake_values v = {0, ""};
    for (int i = 1; i <= 3; i++) {
        v.i = i;
        lhost_task_wake(wa.task, push_wake_values, &v);
        v.i = 100 * i;
        lhost_task_wake(wb.task, push_wake_values, &v);
    }
    CHECK_INT(wa.waits, 3);
    CHECK_INT(wb.waits, 3);
    CHECK_INT(oa.calls, 1);
    CHECK_INT(ob.calls, 1);
    CHECK_STR(oa.res[0], "6");
    CHECK_STR(ob.res[0], "600");
    outcome_clear(&oa);
    outcome_clear(&ob);
    lhost_free(h);
}

static void wait_passes_through_coroutine_wrap(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(wait)\n"
                        "  local f = coroutine.wrap(function(x)\n"
                        "    local v = wait()\n"
                        "    local y = coroutine.yield(v + x)\n"
                        "    local v2 = wait()\n"
                        "    return y * v2\n"
                        "  end)\n"
                        "  local r1 = f(1)\n"
                        "  local r2 = f(10)\n"
                        "  return r1, r2\n"
                        "end");
    waiter w = {0};
    outcome o = {0};
    start(h, ref, push_waiter, &w, &o, NULL);
    CHECK_INT(w.waits, 1);
    CHECK_INT(o.calls, 0);
    wake_values v = {41, "x"};
    lhost_task_wake(w.task, push_wake_values, &v);
    CHECK_INT(w.waits, 2);
    CHECK_INT(o.calls, 0);
    v.i = 3;
    lhost_task_wake(w.task, push_wake_values, &v);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.failed, 0);
    CHECK_STR(o.res[0], "42");
    CHECK_STR(o.res[1], "30");
    outcome_clear(&o);
    lhost_free(h);
}

static void wait_passes_through_coroutine_resume_and_nesting(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(wait)\n"
                        "  local co = coroutine.create(function()\n"
                        "    local inner = coroutine.wrap(function() return wait() end)\n"
                        "    local n, s = inner()\n"
                        "    return n, s\n"
                        "  end)\n"
                        "  local ok, n, s = coroutine.resume(co)\n"
                        "  return ok, n, s, coroutine.status(co)\n"
                        "end");
    waiter w = {0};
    outcome o = {0};
    start(h, ref, push_waiter, &w, &o, NULL);
    CHECK_INT(w.waits, 1);
    wake_values v = {7, "seven"};
    lhost_task_wake(w.task, push_wake_values, &v);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.failed, 0);
    CHECK_STR(o.res[0], "true");
    CHECK_STR(o.res[1], "7");
    CHECK_STR(o.res[2], "seven");
    CHECK_STR(o.res[3], "dead");
    outcome_clear(&o);
    lhost_free(h);
}

static void errors_after_a_wait_inside_a_coroutine_reach_the_task(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(wait)\n"
                        "  local f = coroutine.wrap(function() wait() error({code = 'forbidden', message = 'no'}) end)\n"
                        "  f()\n"
                        "end");
    waiter w = {0};
    outcome o = {0};
    start(h, ref, push_waiter, &w, &o, NULL);
    wake_values v = {1, "x"};
    lhost_task_wake(w.task, push_wake_values, &v);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.err.code, FERR_FORBIDDEN);
    outcome_clear(&o);
    lhost_free(h);
}

static void primitive_cannot_wait_while_a_chunk_loads_or_in_a_metamethod(void)
{
    lhost *h = new_host(0, 0);
    waiter w = {0};
    set_env_fn(h, "wait", prim_wait, &w);
    /* At load time there is no task that could wait. */
    CHECK_INT(chunk(h, "local v, err = wait() return err"), 0);
    CHECK_STR(lua_tostring(lhost_state(h), -1), "cannot wait here");
    lua_pop(lhost_state(h), 1);
    CHECK_INT(w.refusals, 1);
    CHECK_INT(w.waits, 0);

    /* Inside table.sort's comparator the task cannot yield. */
    int ref = fn_ref(h, "return function()\n"
                        "  local err\n"
                        "  table.sort({2, 1}, function(a, b) local _, e = wait() err = e return a < b end)\n"
                        "  return err\n"
                        "end");
    outcome o = {0};
    start(h, ref, NULL, NULL, &o, NULL);
    CHECK_INT(o.calls, 1);
    CHECK_STR(o.res[0], "cannot wait here");
    CHECK_INT(w.waits, 0);
    outcome_clear(&o);
    lhost_free(h);
}

/* A wait started in a script coroutine that was resumed from a place the
 * task cannot yield from (table.sort's comparator) cannot reach the
 * engine. The task then ends with an error; the wait it registered must
 * not outlive it (a real primitive would later lhost_task_wake a freed
 * task). */
static void wait_that_cannot_reach_the_engine_does_not_outlive_its_task(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(wait)\n"
                        "  local got\n"
                        "  table.sort({2, 1}, function(a, b)\n"
                        "    if got == nil then got = coroutine.wrap(function() return wait() end)() end\n"
                        "    return a < b\n"
                        "  end)\n"
                        "  return got\n"
                        "end");
    waiter w = {0};
    outcome o = {0};
    start(h, ref, push_waiter, &w, &o, NULL);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.failed, 1);
    /* Either the primitive was refused, or the wait it registered was
     * cancelled when its task ended. */
    if (w.waits - w.cancels != 0)
        fprintf(stderr, "  task ended with a wait still registered (waits=%d cancels=%d): %s\n", w.waits,
                w.cancels, o.err.message);
    CHECK_INT(w.waits - w.cancels, 0);
    outcome_clear(&o);
    lhost_free(h);
}

/* A script coroutine that is waiting for the engine on behalf of one task
 * is busy: another task resuming it must not hijack the wait. */
static void coroutine_waiting_for_the_engine_cannot_be_resumed_by_another_task(void)
{
    lhost *h = new_host(0, 0);
    int first = fn_ref(h, "return function(wait)\n"
                          "  shared = coroutine.create(function() return wait() end)\n"
                          "  return coroutine.resume(shared)\n"
                          "end");
    int second = fn_ref(h, "return function() return coroutine.resume(shared) end");
    waiter w = {0};
    outcome oa = {0}, ob = {0};
    start(h, first, push_waiter, &w, &oa, NULL);
    CHECK_INT(w.waits, 1);
    start(h, second, NULL, NULL, &ob, NULL);
    CHECK_INT(ob.calls, 1);
    /* The second task is refused, as for a running coroutine... */
    if (ob.failed)
        CHECK(ob.err.code != FERR_OK);
    else
        CHECK_STR(ob.res[0], "false");
    /* ...and the first one gets the values its wait was woken with. */
    wake_values v = {5, "five"};
    if (w.task)
        lhost_task_wake(w.task, push_wake_values, &v);
    CHECK_INT(oa.calls, 1);
    CHECK_INT(oa.failed, 0);
    CHECK_STR(oa.res[0], "true");
    CHECK_STR(oa.res[1], "5");
    outcome_clear(&oa);
    outcome_clear(&ob);
    lhost_free(h);
}

static void abort_of_a_waiting_task_cancels_and_never_calls_done(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(wait) wait() return 'unreachable' end");
    waiter w = {0};
    outcome o = {0};
    lhost_task *t = NULL;
    start(h, ref, push_waiter, &w, &o, &t);
    CHECK_INT(w.waits, 1);
    lhost_task_abort(t);
    CHECK_INT(w.cancels, 1);
    CHECK_INT(o.calls, 0);

    /* The state carries on with other tasks. */
    int ok = fn_ref(h, "return function() return 'fine' end");
    start(h, ok, NULL, NULL, &o, NULL);
    CHECK_STR(o.res[0], "fine");
    outcome_clear(&o);
    lhost_free(h);
}

static void free_aborts_every_waiting_task(void)
{
    lhost *h = new_host(0, 0);
    int ref = fn_ref(h, "return function(wait) wait() end");
    waiter w[3] = {{0}};
    outcome o[3] = {{0}};
    for (int i = 0; i < 3; i++)
        start(h, ref, push_waiter, &w[i], &o[i], NULL);
    lhost_free(h);
    for (int i = 0; i < 3; i++) {
        CHECK_INT(w[i].cancels, 1);
        CHECK_INT(o[i].calls, 0);
    }
    lhost_free(NULL);
}

static void task_owner_and_userdata_are_kept(void)
{
    lhost *h = new_host(0, 0);
    int marker;
    lhost_set_userdata(h, &marker);
    CHECK(lhost_userdata(h) == &marker);
    int ref = fn_ref(h, "return function(wait) wait() end");
    waiter w = {0};
    outcome o = {0};
    ferr err = {0};
    lhost_task *t = NULL;
    CHECK_INT(lhost_task_start(h, ref, push_waiter, &w, on_done, &o, &marker, NULL, NULL, &t, &err), 0);
    CHECK(lhost_task_owner(t) == &marker);
    CHECK_STR(lhost_task_request_id(t), "");
    lhost_task_wake(t, NULL, NULL);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.failed, 0);
    outcome_clear(&o);
    lhost_free(h);
}

/* ---- the sandbox ---------------------------------------------------- */

/* Each line is "name: expression"; the chunk returns the names of the
 * expressions that were not true, or raised. */
static void expect_all_true(lhost *h, const char *const *checks)
{
    char src[8192] = "local failed = {}\nlocal function check(name, f)\n"
                     "  local ok, v = pcall(f)\n"
                     "  if not ok or v ~= true then failed[#failed + 1] = name .. ' (' .. tostring(v) .. ')' end\n"
                     "end\n";
    for (const char *const *c = checks; *c; c++) {
        const char *colon = strchr(*c, ':');
        size_t used = strlen(src);
        snprintf(src + used, sizeof src - used, "check('%.*s', function() return %s end)\n", (int)(colon - *c), *c,
                 colon + 1);
    }
    size_t used = strlen(src);
    snprintf(src + used, sizeof src - used, "return table.concat(failed, ', ')");
    CHECK_INT(chunk(h, src), 0);
    CHECK_STR(lua_tostring(lhost_state(h), -1), "");
    lua_pop(lhost_state(h), 1);
}

static void sandbox_leaves_out_dangerous_globals(void)
{
    lhost *h = new_host(0, 0);
    static const char *const checks[] = {
        "no io: io == nil",
        "no debug: debug == nil",
        "no package: package == nil",
        "no loadfile: loadfile == nil",
        "no dofile: dofile == nil",
        "no string.dump: string.dump == nil",
        "no dump via methods: ('').dump == nil",
        "string metatable hidden: getmetatable('') == false",
        "no os.execute: os.execute == nil",
        "no os.getenv: os.getenv == nil",
        "no os.exit: os.exit == nil",
        "no os.remove: os.remove == nil",
        "os.time kept: type(os.time()) == 'number'",
        "no require of io: not pcall(require, 'io')",
        "no require of C modules: not pcall(require, 'os')",
        "require json: require('json') == json",
        "require cjson: type(require('cjson').encode) == 'function'",
        "no binary load: not pcall(load, string.char(27) .. 'Lua', 'x', 'b')",
        "load defaults to the sandbox: load('return io')() == nil and load('return json')() == json",
        "string methods work: ('abc'):upper() == 'ABC'",
        "_G is the sandbox: _G == _ENV and _G.io == nil",
        "math kept: math.floor(2.5) == 2",
        "json global: type(json.encode) == 'function'",
        NULL,
    };
    expect_all_true(h, checks);
    lhost_free(h);
}

static void sandbox_refuses_gc_metamethods_and_garbage_collection(void)
{
    lhost *h = new_host(0, 0);
    static const char *const checks[] = {
        "no __gc: not pcall(setmetatable, {}, {__gc = function() end})",
        "no __gc false: not pcall(setmetatable, {}, {__gc = false})",
        "other metatables ok: getmetatable(setmetatable({}, {__index = {x = 1}})).__index.x == 1",
        "count works: type(collectgarbage('count')) == 'number' and collectgarbage('count') > 0",
        "count is the default: type(collectgarbage()) == 'number'",
        "no collect: not pcall(collectgarbage, 'collect')",
        "no stop: not pcall(collectgarbage, 'stop')",
        "no step: not pcall(collectgarbage, 'step')",
        NULL,
    };
    expect_all_true(h, checks);
    const char *src = "setmetatable({}, {__gc = function() end})";
    ferr err = {0};
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "=gc", &err), -1);
    CHECK_CONTAINS(err.message, "__gc");
    ferr_clear(&err);
    src = "collectgarbage('collect')";
    CHECK_INT(lhost_run_chunk(h, src, strlen(src), "=gc", &err), -1);
    CHECK_CONTAINS(err.message, "collect");
    ferr_clear(&err);
    lhost_free(h);
}

/* Metatables the engine hands to scripts (json arrays) are shared by the
 * whole state; a script that can edit them can smuggle in a finalizer,
 * which then runs outside any task and its CPU cap. */
static void scripts_cannot_install_finalizers_through_engine_metatables(void)
{
    lhost *h = new_host(0, 0);
    lua_State *L = lhost_state(h);
    const char *src = "local ok = pcall(function()\n"
                      "  local mt = getmetatable(json.array{})\n"
                      "  if type(mt) == 'table' then mt.__gc = function() finalized = true end end\n"
                      "end)\n"
                      "for i = 1, 10 do json.array{} json.decode('[1]') end\n"
                      "return ok";
    ferr err = {0};
    lhost_run_chunk(h, src, strlen(src), "=gc", &err);
    ferr_clear(&err);
    lua_settop(L, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    lua_gc(L, LUA_GCCOLLECT, 0);
    CHECK_INT(chunk(h, "return rawget(_ENV, 'finalized') == nil"), 0);
    if (!lua_toboolean(L, -1))
        fprintf(stderr, "  a finalizer the script attached to json's array metatable ran\n");
    CHECK(lua_toboolean(L, -1));
    lua_settop(L, 0);
    lhost_free(h);
}

static void sealed_globals_refuse_undeclared_reads_and_writes(void)
{
    lhost *h = new_host(0, 0);
    lua_State *L = lhost_state(h);
    CHECK_INT(chunk(h, "counter = 0\n"
                       "return {\n"
                       "  bump = function() counter = counter + 1 return counter end,\n"
                       "  read = function() return undeclared_thing end,\n"
                       "  write = function() fresh_global = 1 end,\n"
                       "  local_ok = function() local x = 1 return x + #json.encode({}) end,\n"
                       "}"),
              0);
    const char *names[] = {"bump", "read", "write", "local_ok"};
    int refs[4];
    for (int i = 0; i < 4; i++) {
        lua_getfield(L, -1, names[i]);
        refs[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);

    /* Before sealing, an undeclared global reads as nil. */
    outcome o = {0};
    start(h, refs[1], NULL, NULL, &o, NULL);
    CHECK_INT(o.failed, 0);
    CHECK_STR(o.res[0], "<nil>");
    outcome_clear(&o);

    lhost_seal_globals(h);
    start(h, refs[1], NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(o.err.message, "undeclared global 'undeclared_thing'");
    outcome_clear(&o);

    start(h, refs[2], NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(o.err.message, "undeclared global 'fresh_global'");
    outcome_clear(&o);

    /* Declared globals and locals keep working. */
    start(h, refs[0], NULL, NULL, &o, NULL);
    CHECK_STR(o.res[0], "1");
    outcome_clear(&o);
    start(h, refs[0], NULL, NULL, &o, NULL);
    CHECK_STR(o.res[0], "2");
    outcome_clear(&o);
    start(h, refs[3], NULL, NULL, &o, NULL);
    CHECK_STR(o.res[0], "3");
    outcome_clear(&o);
    lhost_free(h);
}

static void task_threads_belong_to_ferry(void)
{
    lhost *h = new_host(0, 0);
    int hold = fn_ref(h, "return function(wait) held = coroutine.running() return wait() end");
    int resume = fn_ref(h, "return function() return coroutine.resume(held) end");
    int close = fn_ref(h, "return function() return coroutine.close(held) end");
    int self = fn_ref(h, "return function() return coroutine.resume(coroutine.running()) end");
    waiter w = {0};
    outcome oa = {0}, o = {0};
    start(h, hold, push_waiter, &w, &oa, NULL);
    CHECK_INT(w.waits, 1);

    start(h, resume, NULL, NULL, &o, NULL);
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(o.err.message, "belongs to ferry");
    outcome_clear(&o);

    start(h, close, NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(o.err.message, "belongs to ferry");
    outcome_clear(&o);

    start(h, self, NULL, NULL, &o, NULL);
    CHECK_INT(o.err.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(o.err.message, "belongs to ferry");
    outcome_clear(&o);

    /* The held task was not disturbed. */
    CHECK_INT(oa.calls, 0);
    wake_values v = {9, "nine"};
    lhost_task_wake(w.task, push_wake_values, &v);
    CHECK_INT(oa.calls, 1);
    CHECK_STR(oa.res[0], "9");
    outcome_clear(&oa);
    lhost_free(h);
}

TESTS(TEST(long_task_has_its_own_cap_and_a_cap_between_waits), TEST(chunk_returning_a_table_leaves_it_on_the_stack), TEST(chunk_syntax_error_is_script_error_with_file_and_line),
      TEST(chunk_runtime_error_has_file_and_line), TEST(chunk_looping_forever_is_script_timeout),
      TEST(chunk_allocating_without_bound_is_script_memory), TEST(task_returning_values_calls_done_synchronously),
      TEST(task_start_of_a_non_function_fails_without_done), TEST(task_raising_a_string_is_script_error),
      TEST(task_raising_a_coded_table_keeps_the_code), TEST(task_looping_forever_is_script_timeout_and_state_survives),
      TEST(task_yielding_outside_a_script_coroutine_is_an_error),
      TEST(waiting_primitive_suspends_and_wake_resumes_with_values),
      TEST(several_waits_in_sequence_and_interleaved_tasks), TEST(wait_passes_through_coroutine_wrap),
      TEST(wait_passes_through_coroutine_resume_and_nesting),
      TEST(errors_after_a_wait_inside_a_coroutine_reach_the_task),
      TEST(primitive_cannot_wait_while_a_chunk_loads_or_in_a_metamethod),
      TEST(wait_that_cannot_reach_the_engine_does_not_outlive_its_task),
      TEST(coroutine_waiting_for_the_engine_cannot_be_resumed_by_another_task),
      TEST(abort_of_a_waiting_task_cancels_and_never_calls_done), TEST(free_aborts_every_waiting_task),
      TEST(task_owner_and_userdata_are_kept), TEST(sandbox_leaves_out_dangerous_globals),
      TEST(sandbox_refuses_gc_metamethods_and_garbage_collection),
      TEST(scripts_cannot_install_finalizers_through_engine_metatables),
      TEST(sealed_globals_refuse_undeclared_reads_and_writes), TEST(task_threads_belong_to_ferry))
