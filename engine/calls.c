#include "calls.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <lauxlib.h>

#include "log.h"
#include "lua_json.h"
#include "metrics.h"
#include "oauth.h"
#include "schema.h"
#include "jsonfmt.h"

#define DEFAULT_MAX_IN_FLIGHT 20000

typedef struct call call;

struct calls {
    calls_config cfg;
    call *running;        /* doubly linked */
    size_t nrunning;
};

struct call {
    calls *cs;
    call *prev, *next;
    provider *provider;
    provider_tool *tool;        /* NULL for a connection check */
    char name[128];             /* the tool's full name, or "<slug>:check" */
    lua_ctx lctx;
    lhost_task *task;
    provider_run *run;          /* a runner's call (a remote MCP tool) */
    principal who;
    int has_who;
    char request_id[17];
    store_connection conn;
    int has_conn;
    credentials creds;          /* opened for the HTTP primitive; wiped at the end */
    oauth_waiter *refresh;      /* waiting for the connection's token to be refreshed */
    int64_t audit_intent;
    char approval_id[40];
    json_t *arguments;
    call_done_fn done;
    void *done_arg;
    int fn_ref;
    struct timespec started;
};

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

calls *calls_new(const calls_config *cfg)
{
    calls *cs = calloc(1, sizeof *cs);
    if (!cs)
        return NULL;
    cs->cfg = *cfg;
    if (!cs->cfg.max_in_flight)
        cs->cfg.max_in_flight = DEFAULT_MAX_IN_FLIGHT;
    return cs;
}

size_t calls_in_flight(const calls *cs) { return cs->nrunning; }

static void unlink_call(call *c)
{
    calls *cs = c->cs;
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->running = c->next;
    if (c->next)
        c->next->prev = c->prev;
    cs->nrunning--;
    metrics_add(METRIC_CALLS_IN_FLIGHT, -1, NULL, NULL);
}

/* Accounts for the call, reports it, frees it. */
static void finish(call *c, json_t *result, ferr *err)
{
    calls *cs = c->cs;
    double ms = ms_since(&c->started);
    unlink_call(c);
    const char *outcome = err && err->code ? ferr_code_name(err->code) : "ok";
    metrics_add(METRIC_TOOL_CALLS, 1, c->name, outcome);
    metrics_observe(METRIC_TOOL_CALL_SECONDS, ms / 1e3, c->name);

    log_line *l = log_begin(err && err->code ? LOG_WARN : LOG_INFO, "tool call");
    log_str(l, "request_id", c->request_id[0] ? c->request_id : NULL);
    log_str(l, "tool", c->name);
    log_str(l, "connection", c->has_conn ? c->conn.id : NULL);
    log_str(l, "outcome", outcome);
    log_num(l, "duration_ms", ms);
    if (err && err->code)
        log_str(l, "error", err->message);
    log_end(l);

    json_t *redacted = schema_redact(c->tool ? c->tool->input_schema : NULL, c->arguments);
    char *args = redacted ? json_dumps(redacted, JSON_TEXT) : NULL;
    json_decref(redacted);
    if (cs->cfg.audit) {
        audit_row row = {
            .user_id = c->has_who ? c->who.user_id : 0,
            .user = c->has_who ? c->who.user : NULL,
            .team_id = c->has_who ? c->who.team_id : 0,
            .team = c->has_who ? c->who.team : NULL,
            .integration = c->provider->slug,
            .connection_id = c->has_conn ? c->conn.id : NULL,
            .operation = c->name,
            .access = c->tool ? (c->tool->is_write ? "write" : "read") : "read",
            .outcome = outcome,
            .http_status = err && err->code ? ferr_status(err) : 200,
            .duration_ms = ms,
            .approval_id = c->approval_id[0] ? c->approval_id : NULL,
            .request_id = c->request_id[0] ? c->request_id : NULL,
            .arguments = args,
            .detail = err && err->code ? err->message : NULL,
        };
        audit_end(cs->cfg.audit, c->audit_intent, &row);
    }
    /* A connection check is audited, but it is not a use of the connection:
     * it stays out of the call log, usage and popularity. */
    if (cs->cfg.log && c->tool) {
        call_record row = {
            .ts_ms = wall_ms(),
            .request_id = c->request_id[0] ? c->request_id : NULL,
            .user_id = c->has_who ? c->who.user_id : 0,
            .team_id = c->has_who ? c->who.team_id : 0,
            .tool = c->name,
            .connection_id = c->has_conn ? c->conn.id : NULL,
            .integration = c->provider->slug,
            .outcome = outcome,
            .http_status = err && err->code ? ferr_status(err) : 200,
            .duration_ms = ms,
            .arguments = args,
            .error_message = err && err->code ? err->message : NULL,
        };
        calllog_append(cs->cfg.log, &row);
    }
    free(args);

    call_result r = {.tool = c->name, .result = result, .err = err && err->code ? err : NULL,
                     .duration_ms = ms, .connection = c->has_conn ? &c->conn : NULL};
    if (c->provider->runner && json_is_array(json_object_get(result, "content")))
        r.content = json_object_get(result, "content");
    c->done(c->done_arg, &r);
    json_decref(c->arguments);
    credentials_wipe(&c->creds);
    store_connection_clear(&c->conn);
    provider_unref(c->provider);
    free(c);
}

/* `return nil, err` from a tool: a string or {code=, message=, ...}. */
static void error_from_value(lua_State *L, int idx, ferr *e)
{
    if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
        ferr_set(e, FERR_UPSTREAM_ERROR, "%s", lua_tostring(L, idx));
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        ferr_set(e, FERR_SCRIPT_ERROR, "the tool returned an error of type %s", luaL_typename(L, idx));
        return;
    }
    const char *code = NULL, *message = NULL;
    json_t *details = json_object();
    if (!lua_checkstack(L, 3)) {
        ferr_set(e, FERR_SCRIPT_ERROR, "the tool returned an error");
        json_decref(details);
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            if (strcmp(k, "code") == 0 && lua_type(L, -1) == LUA_TSTRING)
                code = lua_tostring(L, -1);   /* anchored by the table */
            else if (strcmp(k, "message") == 0 && lua_type(L, -1) == LUA_TSTRING)
                message = lua_tostring(L, -1);
            else {
                ferr ignore = {0};
                json_t *v = lua_json_from(L, -1, &ignore);
                ferr_clear(&ignore);
                if (v)
                    json_object_set_new(details, k, v);
            }
        }
        lua_pop(L, 1);
    }
    ferr_code c = ferr_code_from_name(code);
    if (code && !c)
        json_object_set_new(details, "code", json_string(code));
    ferr_set(e, c ? c : FERR_UPSTREAM_ERROR, "%s", message ? message : code ? code : "the tool failed");
    if (json_object_size(details))
        e->details = details;
    else
        json_decref(details);
}

static void on_task_done(lhost_task *t, lua_State *L, int nres, ferr *err, void *arg)
{
    (void)t;
    call *c = arg;
    ferr e = {0};
    json_t *result = NULL;
    if (err) {
        ferr_move(&e, err);
    } else {
        int base = lua_gettop(L) - nres + 1;
        if (nres >= 1 && !lua_isnil(L, base))
            result = lua_json_from(L, base, &e);
        else if (nres >= 2 && !lua_isnil(L, base + 1))
            error_from_value(L, base + 1, &e);
        else
            result = json_null();
    }
    /* An upstream answer too large for us is not the caller's request
     * being too large: say so with a gateway status. */
    if (e.code == FERR_PAYLOAD_TOO_LARGE)
        e.status = 502;
    /* The upstream refused the credential: nobody should keep calling with
     * it. The connection says so until a person reconnects it. */
    if (e.code == FERR_RECONNECT_REQUIRED && c->has_conn) {
        ferr ignore = {0};
        store_connection_set_status(c->cs->cfg.svc.db, c->conn.id, "reconnect_required", e.message, &ignore);
        ferr_clear(&ignore);
        connections_reconnect_details(c->provider, c->conn.id, &e);
    }
    finish(c, result, &e);
    json_decref(result);
    ferr_clear(&e);
}

/* A runner's call ended (it never ends from inside start). */
static void on_run_done(void *arg, json_t *result, ferr *err)
{
    call *c = arg;
    c->run = NULL;
    ferr e = {0};
    if (err && err->code)
        ferr_move(&e, err);
    if (e.code == FERR_PAYLOAD_TOO_LARGE)
        e.status = 502;
    finish(c, e.code ? NULL : result, &e);
    ferr_clear(&e);
}

static int push_ctx_and_args(lua_State *L, void *ud)
{
    call *c = ud;
    lua_ctx_push(L, &c->lctx);
    lua_json_push(L, c->arguments);
    return 2;
}

/* The connection a call of provider `pv` uses, with its credentials
 * opened; nothing for providers that need none. */
static int attach_connection(calls *cs, call *c, const call_request *req, ferr *err)
{
    provider *pv = c->provider;
    if (pv->authn.kind == AUTH_NONE)
        return 0;
    store *db = cs->cfg.svc.db;
    if (req->who) {
        if (connections_for_call(db, req->who, pv, req->connection_id, &c->conn, err) < 0)
            return -1;
    } else if (req->connection_id) {
        /* Local use (the CLI without --user): the operator names it. */
        int found = store_connection_get(db, req->connection_id, &c->conn, err);
        if (found != 0) {
            if (found == 1)
                ferr_set(err, FERR_NOT_FOUND, "no connection %s", req->connection_id);
            return -1;
        }
        if (strcmp(c->conn.integration, pv->slug) != 0) {
            ferr_set(err, FERR_INVALID_ARGUMENTS, "connection %s belongs to %s, not %s", req->connection_id,
                     c->conn.integration, pv->slug);
            store_connection_clear(&c->conn);
            return -1;
        }
    } else {
        ferr_set(err, FERR_FORBIDDEN, "%s needs a connection: give --connection, or --user and --team", pv->slug);
        return -1;
    }
    c->has_conn = 1;
    return connections_open(db, cs->cfg.vault, &c->conn, &c->creds, err);
}

static void free_unstarted(call *c)
{
    provider_unref(c->provider);
    json_decref(c->arguments);
    credentials_wipe(&c->creds);
    store_connection_clear(&c->conn);
    free(c);
}

/* Starts the call's task (it is linked as running already). -1 when its
 * audit intent cannot be written: then nothing ran. */
static int run_task(calls *cs, call *c, ferr *err)
{
    /* Fail closed: no audit intent, no call. */
    if (cs->cfg.audit && audit_begin(cs->cfg.audit, c->has_who ? c->who.team_id : 0, c->name, c->request_id,
                                     &c->audit_intent, err) < 0)
        return -1;
    c->lctx = (lua_ctx){
        .svc = &cs->cfg.svc, .provider = c->provider, .request_id = c->request_id, .tool = c->name,
        .connection_id = c->has_conn ? c->conn.id : NULL, .who = c->has_who ? &c->who : NULL,
        .conn = c->has_conn ? &c->conn : NULL, .creds = c->has_conn ? &c->creds : NULL,
    };
    ferr start_err = {0};
    const provider_runner *runner = c->provider->runner;
    if (runner) {
        provider_run_request rr = {.p = c->provider, .tool = c->tool, .arguments = c->arguments,
                                   .who = c->has_who ? &c->who : NULL, .request_id = c->request_id,
                                   .approval_id = c->approval_id[0] ? c->approval_id : NULL};
        if (runner->start(runner->ctx, &rr, on_run_done, c, &c->run, &start_err) < 0) {
            finish(c, NULL, &start_err);
            ferr_clear(&start_err);
        }
        return 0;
    }
    if (lhost_task_start(c->provider->host, c->fn_ref, push_ctx_and_args, c, on_task_done, c, &c->lctx,
                         c->request_id, c->name, &c->task, &start_err) < 0) {
        /* It never ran; still a call that happened and failed. */
        finish(c, NULL, &start_err);
        ferr_clear(&start_err);
    }
    return 0;
}

/* The connection's token was refreshed (or could not be). */
static void on_refreshed(void *arg, const ferr *rerr)
{
    call *c = arg;
    calls *cs = c->cs;
    c->refresh = NULL;
    ferr e = {0};
    if (rerr) {
        ferr_set(&e, rerr->code, "%s", rerr->message);
        e.status = rerr->status;
        if (rerr->details)
            e.details = json_deep_copy(rerr->details);
    } else {
        /* Read the connection again: new tokens, new expiry. */
        char id[40];
        snprintf(id, sizeof id, "%s", c->conn.id);
        credentials_wipe(&c->creds);
        store_connection_clear(&c->conn);
        if (store_connection_get(cs->cfg.svc.db, id, &c->conn, &e) != 0) {
            c->has_conn = 0;
            if (!e.code)
                ferr_set(&e, FERR_NOT_FOUND, "connection %s was deleted", id);
        } else {
            connections_open(cs->cfg.svc.db, cs->cfg.vault, &c->conn, &c->creds, &e);
        }
    }
    if (!e.code && run_task(cs, c, &e) == 0)
        return;
    finish(c, NULL, &e);
    ferr_clear(&e);
}

/* Runs fn_ref of c->provider as the call's task, once validated. */
static int launch(calls *cs, call *c, const call_request *req, int fn_ref, call_done_fn done, void *arg,
                  ferr *err)
{
    provider_ref(c->provider);   /* it may leave the index while the call runs */
    if (cs->nrunning >= cs->cfg.max_in_flight) {
        ferr_set(err, FERR_RATE_LIMITED, "too many tool calls in flight (%zu); retry shortly", cs->nrunning);
        ferr_detail(err, "retry_after", json_integer(1));
        free_unstarted(c);
        return -1;
    }
    c->cs = cs;
    c->done = done;
    c->done_arg = arg;
    c->fn_ref = fn_ref;
    snprintf(c->request_id, sizeof c->request_id, "%s", req->request_id ? req->request_id : "");
    if (req->who) {
        c->who = *req->who;
        c->has_who = 1;
    }
    snprintf(c->approval_id, sizeof c->approval_id, "%s", req->approval_id ? req->approval_id : "");
    if (attach_connection(cs, c, req, err) < 0) {
        free_unstarted(c);
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    c->next = cs->running;
    if (cs->running)
        cs->running->prev = c;
    cs->running = c;
    cs->nrunning++;
    metrics_add(METRIC_CALLS_IN_FLIGHT, 1, NULL, NULL);

    /* An OAuth token about to expire is refreshed first; calls on the same
     * connection share that one refresh. */
    oauth *o = cs->cfg.svc.oauth;
    if (c->has_conn && o && oauth_needs_refresh(o, c->provider, &c->conn)) {
        oauth_waiter *w = oauth_refresh(o, &c->conn, on_refreshed, c);
        if (w)
            c->refresh = w;   /* else it has finished already, and c is gone */
        return 0;
    }
    if (run_task(cs, c, err) < 0) {
        unlink_call(c);
        free_unstarted(c);
        return -1;
    }
    return 0;
}

int calls_start(calls *cs, const call_request *req, call_done_fn done, void *arg, ferr *err)
{
    provider_tool *tool = providers_find_tool_for(cs->cfg.providers, req->tool ? req->tool : "", req->who);
    if (!tool) {
        ferr_set(err, FERR_UNKNOWN_TOOL, "there is no tool named '%s'", req->tool ? req->tool : "");
        ferr_detail(err, "name", json_string(req->tool ? req->tool : ""));
        return -1;
    }
    json_t *args = req->arguments ? req->arguments : json_object();
    if (req->arguments)
        json_incref(args);
    if (!json_is_object(args)) {
        json_decref(args);
        ferr_set(err, FERR_INVALID_ARGUMENTS, "arguments must be a JSON object");
        ferr_detail(err, "path", json_string("$"));
        return -1;
    }
    schema_error se;
    if (schema_validate(tool->input_schema, args, &se) < 0) {
        json_decref(args);
        ferr_set(err, FERR_INVALID_ARGUMENTS, "%s: %s", se.path, se.message);
        ferr_detail(err, "path", json_string(se.path));
        ferr_detail(err, "reason", json_string(se.message));
        return -1;
    }
    call *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(args);
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    }
    c->provider = tool->p;
    c->tool = tool;
    c->arguments = args;
    snprintf(c->name, sizeof c->name, "%s", tool->full_name);
    return launch(cs, c, req, tool->run_ref, done, arg, err);
}

int calls_start_fn(calls *cs, provider *p, int fn_ref, const char *what, json_t *arguments,
                   const call_request *req, call_done_fn done, void *arg, ferr *err)
{
    if (fn_ref == LUA_NOREF)
        return ferr_set(err, FERR_NOT_FOUND, "%s declares no %s", p->slug, what);
    call *c = calloc(1, sizeof *c);
    if (!c)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    c->provider = p;
    c->arguments = arguments ? json_incref(arguments) : json_object();
    snprintf(c->name, sizeof c->name, "%s:%s", p->slug, what);
    return launch(cs, c, req, fn_ref, done, arg, err);
}

int calls_start_check(calls *cs, provider *p, const call_request *req, call_done_fn done, void *arg, ferr *err)
{
    return calls_start_fn(cs, p, p->check_ref, "check", NULL, req, done, arg, err);
}

void calls_abort_all(calls *cs, ferr_code code, const char *message)
{
    while (cs->running) {
        call *c = cs->running;
        if (c->refresh)
            oauth_cancel(c->refresh);
        c->refresh = NULL;
        if (c->task)
            lhost_task_abort(c->task);
        if (c->run)
            c->provider->runner->cancel(c->provider->runner->ctx, c->run);
        c->run = NULL;
        ferr e = {0};
        ferr_set(&e, code, "%s", message);
        finish(c, NULL, &e);
        ferr_clear(&e);
    }
}

void calls_free(calls *cs)
{
    if (!cs)
        return;
    calls_abort_all(cs, FERR_INTERNAL, "ferry is shutting down");
    free(cs);
}
