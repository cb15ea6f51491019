/* api_mcp_servers.c — remote MCP servers, for team admins (docs/mcp.md):
 *   POST /v1/mcp-servers  GET /v1/mcp-servers  GET|PATCH|DELETE /v1/mcp-servers/{id}
 *   POST /v1/mcp-servers/{id}/approve|reject|sync
 *   GET /v1/mcp-servers/{id}/tools  GET /v1/mcp-servers/{id}/executions
 *   POST /v1/mcp-tools/{id}/approve|reject
 * The work is mcpc_registry's. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "mcpc_registry.h"

static void reply_ferr(hreq *r, ferr *e)
{
    hreq_reply_error(r, e);
    ferr_clear(e);
}

static void reply_or_error(hreq *r, int status, const char *key, json_t *v, ferr *e)
{
    if (!v) {
        reply_ferr(r, e);
        return;
    }
    hreq_reply_json(r, status, key ? json_pack("{s:o}", key, v) : v);
}

/* A registration answers once its first discovery ended: 201 either way,
 * with what went wrong in sync_error. */
static void on_registered(void *arg, json_t *out, const ferr *err)
{
    hreq *r = arg;
    json_t *body = out ? json_deep_copy(out) : json_object();
    if (err) {
        json_t *e = ferr_to_json(err);
        json_object_set(body, "sync_error", json_object_get(e, "error"));
        json_decref(e);
    }
    hreq_reply_json(r, 201, body);
}

static void post_server(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    if (mcpc_registry_register(a->mcpc, hreq_principal(r), hreq_json(r), hreq_request_id(r), on_registered, r, &e) < 0)
        reply_ferr(r, &e);
}

static void on_synced(void *arg, json_t *out, const ferr *err)
{
    hreq *r = arg;
    if (err) {
        hreq_reply_error(r, err);
        return;
    }
    hreq_reply_json(r, 200, json_deep_copy(out));
}

static void post_sync(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    if (mcpc_registry_sync(a->mcpc, hreq_principal(r), hreq_param(r, "id"), hreq_request_id(r), on_synced, r, &e) < 0)
        reply_ferr(r, &e);
}

static void get_servers(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    reply_or_error(r, 200, "servers", mcpc_registry_list(a->mcpc, hreq_principal(r), &e), &e);
}

static void get_server(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    reply_or_error(r, 200, "server", mcpc_registry_get(a->mcpc, hreq_principal(r), hreq_param(r, "id"), &e), &e);
}

static void patch_server(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    reply_or_error(r, 200, "server",
                   mcpc_registry_update(a->mcpc, hreq_principal(r), hreq_param(r, "id"), hreq_json(r),
                                        hreq_request_id(r), &e),
                   &e);
}

static void delete_server(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    if (mcpc_registry_delete(a->mcpc, hreq_principal(r), hreq_param(r, "id"), hreq_request_id(r), &e) < 0) {
        reply_ferr(r, &e);
        return;
    }
    hreq_reply_json(r, 204, NULL);
}

/* {reason?} and, for tools, {access?} */
static int decision_body(hreq *r, const char **reason, const char **access, ferr *e)
{
    json_t *body = hreq_json(r);
    json_t *rs = json_object_get(body, "reason"), *ac = json_object_get(body, "access");
    if (rs && !json_is_null(rs) && !json_is_string(rs))
        return ferr_set(e, FERR_BAD_REQUEST, "reason must be a string");
    if (ac && !json_is_null(ac) && !json_is_string(ac))
        return ferr_set(e, FERR_BAD_REQUEST, "access must be read or write");
    *reason = json_string_value(rs);
    if (access)
        *access = json_string_value(ac);
    return 0;
}

static void decide_server(hreq *r, app *a, int approve)
{
    const char *reason = NULL;
    ferr e = {0};
    if (decision_body(r, &reason, NULL, &e) < 0) {
        reply_ferr(r, &e);
        return;
    }
    reply_or_error(r, 200, "server",
                   mcpc_registry_decide_server(a->mcpc, hreq_principal(r), hreq_param(r, "id"), approve, reason,
                                               hreq_request_id(r), &e),
                   &e);
}

static void post_approve_server(hreq *r, void *arg) { decide_server(r, arg, 1); }
static void post_reject_server(hreq *r, void *arg) { decide_server(r, arg, 0); }

static void decide_tool(hreq *r, app *a, int approve)
{
    const char *reason = NULL, *access = NULL;
    ferr e = {0};
    if (decision_body(r, &reason, &access, &e) < 0) {
        reply_ferr(r, &e);
        return;
    }
    reply_or_error(r, 200, "tool",
                   mcpc_registry_decide_tool(a->mcpc, hreq_principal(r), hreq_param(r, "id"), approve, access, reason,
                                             hreq_request_id(r), &e),
                   &e);
}

static void post_approve_tool(hreq *r, void *arg) { decide_tool(r, arg, 1); }
static void post_reject_tool(hreq *r, void *arg) { decide_tool(r, arg, 0); }

static void get_tools(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    reply_or_error(r, 200, "tools", mcpc_registry_tools(a->mcpc, hreq_principal(r), hreq_param(r, "id"), &e), &e);
}

static void get_executions(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    const char *limit = hreq_query(r, "limit");
    reply_or_error(r, 200, "executions",
                   mcpc_registry_executions(a->mcpc, hreq_principal(r), hreq_param(r, "id"), limit ? atoi(limit) : 100,
                                            &e),
                   &e);
}

void api_mcp_servers_register(hserver *hs)
{
    hserver_route(hs, "POST", "/v1/mcp-servers", "mcp_servers_create", ROUTE_AUTH | ROUTE_JSON, post_server);
    hserver_route(hs, "GET", "/v1/mcp-servers", "mcp_servers", ROUTE_AUTH, get_servers);
    hserver_route(hs, "GET", "/v1/mcp-servers/{id}", "mcp_server", ROUTE_AUTH, get_server);
    hserver_route(hs, "PATCH", "/v1/mcp-servers/{id}", "mcp_server_update", ROUTE_AUTH | ROUTE_JSON, patch_server);
    hserver_route(hs, "DELETE", "/v1/mcp-servers/{id}", "mcp_server_delete", ROUTE_AUTH, delete_server);
    hserver_route(hs, "POST", "/v1/mcp-servers/{id}/approve", "mcp_server_approve", ROUTE_AUTH | ROUTE_JSON,
                  post_approve_server);
    hserver_route(hs, "POST", "/v1/mcp-servers/{id}/reject", "mcp_server_reject", ROUTE_AUTH | ROUTE_JSON,
                  post_reject_server);
    hserver_route(hs, "POST", "/v1/mcp-servers/{id}/sync", "mcp_server_sync", ROUTE_AUTH | ROUTE_JSON, post_sync);
    hserver_route(hs, "GET", "/v1/mcp-servers/{id}/tools", "mcp_server_tools", ROUTE_AUTH, get_tools);
    hserver_route(hs, "GET", "/v1/mcp-servers/{id}/executions", "mcp_server_executions", ROUTE_AUTH,
                  get_executions);
    hserver_route(hs, "POST", "/v1/mcp-tools/{id}/approve", "mcp_tool_approve", ROUTE_AUTH | ROUTE_JSON,
                  post_approve_tool);
    hserver_route(hs, "POST", "/v1/mcp-tools/{id}/reject", "mcp_tool_reject", ROUTE_AUTH | ROUTE_JSON,
                  post_reject_tool);
}
