/* calls — running tool calls, independent of who asked (the HTTP API, the
 * CLI, later MCP and approvals): find the tool, validate the arguments
 * against its schema before any script runs, run it as a task in the
 * provider's Lua state, turn what it returns into a result or a coded
 * error, and account for it (metrics, log line, call log).
 *
 * Every started call ends with exactly one call of its done function, and
 * one audit row; a call whose audit intent cannot be written is not made. */
#ifndef FERRY_CALLS_H
#define FERRY_CALLS_H

#include <jansson.h>

#include "audit.h"
#include "calllog.h"
#include "connections.h"
#include "ferr.h"
#include "lua_ctx.h"
#include "providers.h"

typedef struct calls calls;

typedef struct calls_config {
    providers *providers;
    lua_ctx_services svc;       /* what primitives use: HTTP client, store */
    calllog *log;               /* may be NULL */
    vault *vault;               /* opens connections' credentials */
    audit *audit;               /* may be NULL (tests): then nothing is audited */
    size_t max_in_flight;       /* 0 → 20000 */
} calls_config;

typedef struct call_request {
    const char *tool;           /* "<slug>__<tool>" */
    json_t *arguments;          /* borrowed; NULL means {} */
    const char *connection_id;  /* may be NULL: the caller's connection is picked */
    const principal *who;       /* may be NULL (local CLI: then connection_id is required
                                   for providers that need credentials) */
    const char *request_id;
    const char *approval_id;    /* the approval this call carries out, or NULL */
} call_request;

typedef struct call_result {
    const char *tool;
    json_t *result;             /* borrowed; NULL exactly when err is set */
    const ferr *err;
    double duration_ms;
    const store_connection *connection;   /* the one used, or NULL */
    json_t *content;            /* content blocks the tool produced itself (an MCP tool's), borrowed; NULL:
                                   the result is shown as text */
} call_result;

typedef void (*call_done_fn)(void *arg, const call_result *r);

calls *calls_new(const calls_config *cfg);
/* Ends every call still running with `internal` ("shutting down"). */
void calls_free(calls *cs);

/* Starts a call. Problems found before any script runs (unknown tool,
 * invalid arguments, too many calls in flight) return -1 with `err` and no
 * done call. Otherwise returns 0 and `done` runs exactly once — possibly
 * before this returns, when the tool finishes without waiting. */
int calls_start(calls *cs, const call_request *req, call_done_fn done, void *arg, ferr *err);

/* Runs a provider's check(ctx) for the connection in req->connection_id
 * (verifying a new connection); same contract as calls_start. */
int calls_start_check(calls *cs, provider *p, const call_request *req, call_done_fn done, void *arg, ferr *err);

/* Runs another of a provider's functions, fn(ctx, arguments) — such as
 * upcoming_events — named "<slug>:<what>"; same contract. */
int calls_start_fn(calls *cs, provider *p, int fn_ref, const char *what, json_t *arguments,
                   const call_request *req, call_done_fn done, void *arg, ferr *err);

size_t calls_in_flight(const calls *cs);

/* Ends every running call now with `code`/`message` (drain timeout). */
void calls_abort_all(calls *cs, ferr_code code, const char *message);

#endif
