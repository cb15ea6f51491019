/* lhost — the Lua host: one sandboxed lua_State per provider, and the tasks
 * (coroutines) that run inside it.
 *
 * The sandbox is an allow-list environment (see lhost_sandbox.c): no io, no
 * os beyond time, no debug, no binary chunks, no C modules, no __gc. Each
 * state has a memory cap enforced by its allocator and each task a CPU cap
 * enforced by a count hook; a task that runs past its cap ends with
 * script_timeout and the state keeps serving other tasks.
 *
 * Every tool call runs as a task. A primitive that must wait (ctx.http.request)
 * starts its I/O, registers it with lhost_task_wait and returns
 * lhost_suspend(L); the completion later calls lhost_task_wake with a
 * function that pushes the results, and the task continues from there.
 * Waits pass transparently through coroutines the script made itself.
 * This is the only async mechanism for scripts. */
#ifndef FERRY_LHOST_H
#define FERRY_LHOST_H

#include <stddef.h>

#include <lua.h>

#include "ferr.h"

typedef struct lhost lhost;
typedef struct lhost_task lhost_task;

typedef struct lhost_limits {
    size_t memory_bytes;   /* 0 → 64 MiB */
    unsigned cpu_ms;       /* per task; 0 → 1000 ms */
} lhost_limits;

/* `name` labels logs and metrics (a provider slug or a file name). */
lhost *lhost_new(const char *name, const lhost_limits *limits);
/* Aborts any task still alive, then closes the state. */
void lhost_free(lhost *h);

lua_State *lhost_state(lhost *h);
const char *lhost_name(const lhost *h);
size_t lhost_memory(const lhost *h);
/* The lhost a lua_State (any of its threads) belongs to. */
lhost *lhost_from(lua_State *L);
/* An opaque pointer for the embedding code (the provider). */
void lhost_set_userdata(lhost *h, void *ud);
void *lhost_userdata(const lhost *h);

/* Folders `require` may load modules from, after the bundled scripts/.
 * The array and strings must outlive every lhost. */
void lhost_set_module_dirs(const char *const *dirs);

/* Pushes values onto L, returns how many. Runs in protected mode, so it may
 * raise (e.g. on memory exhaustion). */
typedef int (*lhost_push_fn)(lua_State *L, void *ud);

/* Loads text chunk `src` in the sandbox and runs it to completion under the
 * CPU cap; the chunk may not wait for I/O. On success the chunk's first
 * result is pushed on lhost_state(h) and 0 returned. */
int lhost_run_chunk(lhost *h, const char *src, size_t len, const char *chunkname, ferr *err);

/* Finished: `err` is NULL on success, with `nresults` results on the top of
 * `L` (valid only during the call). The task is freed after it returns. */
typedef void (*lhost_done_fn)(lhost_task *t, lua_State *L, int nresults, ferr *err, void *arg);

/* Runs the function in registry slot `fn_ref` with the values `push_args`
 * pushes, as a new task. Returns -1 (and fills err) if it could not start;
 * otherwise 0, and `done` runs exactly once — possibly before this returns,
 * when the function finishes without waiting — unless the task is aborted
 * (lhost_free aborts every task left). When `out` is given, *out names the
 * task before it first runs, for lhost_task_abort; it is dangling once
 * `done` has run.
 * `owner` is kept for primitives (lhost_task_owner); `request_id` and
 * `label` tag the script's log lines. */
int lhost_task_start(lhost *h, int fn_ref, lhost_push_fn push_args, void *push_ud,
                      lhost_done_fn done, void *done_arg, void *owner,
                      const char *request_id, const char *label, lhost_task **out, ferr *err);

/* A long task (a sync run) gets a larger CPU budget for its whole life,
 * and a cap on the CPU it may use between two waits instead, so it cannot
 * hold the loop while it runs for minutes. */
typedef struct lhost_task_limits {
    unsigned cpu_ms;       /* whole task; 0: the state's cap */
    unsigned slice_ms;     /* between two waits; 0: none */
} lhost_task_limits;

int lhost_task_start_limited(lhost *h, int fn_ref, lhost_push_fn push_args, void *push_ud, lhost_done_fn done,
                             void *done_arg, void *owner, const char *request_id, const char *label,
                             const lhost_task_limits *limits, lhost_task **out, ferr *err);

/* The task whose code is running in `h` right now, or NULL. */
lhost_task *lhost_running(lhost *h);
void *lhost_task_owner(const lhost_task *t);
const char *lhost_task_request_id(const lhost_task *t);
const char *lhost_task_label(const lhost_task *t);

/* For primitives: whether the running code may wait (it is inside a task,
 * not at load time, and not across a C boundary like a metamethod). */
int lhost_can_wait(lua_State *L);
/* Records what the task now waits for; `cancel(ud)` is called if the task is
 * aborted before lhost_task_wake. */
typedef void (*lhost_cancel_fn)(void *ud);
void lhost_task_wait(lhost_task *t, lhost_cancel_fn cancel, void *ud);
/* `return lhost_suspend(L);` from a primitive after lhost_task_wait. */
int lhost_suspend(lua_State *L);
/* Resumes a waiting task; the values `push` pushes become the primitive's
 * return values. */
void lhost_task_wake(lhost_task *t, lhost_push_fn push, void *ud);
/* Ends a task without calling its done function (shutdown). */
void lhost_task_abort(lhost_task *t);

/* Registers the sandbox env of `h` as the _ENV of the function on top of L. */
void lhost_set_env(lhost *h, lua_State *L, int idx);
/* After a provider has loaded: reading or writing an undeclared global
 * becomes an error, so concurrent calls cannot leak state through globals. */
void lhost_seal_globals(lhost *h);

/* ---- internal to lhost*.c ---- */
void lhost_sandbox_build(lua_State *L, lhost *h);
int lhost_is_task_thread(lua_State *L, lua_State *co);
/* Cancels what `t` waits for, if anything (its I/O will never wake it). */
void lhost_task_cancel_wait(lhost_task *t);
extern char lhost_wait_marker;

#endif
