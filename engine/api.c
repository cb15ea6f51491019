/* api.c — the HTTP routes of API.md that exist so far: health, metrics,
 * tool discovery and tool calls. Handlers parse and shape; the work is
 * done by the modules behind them (calls, providers, metrics). */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "jsonfmt.h"
#include "app.h"
#include "discovery.h"
#include "embedded.h"
#include "metrics.h"

static void get_healthz(hreq *r, void *arg)
{
    (void)arg;
    hreq_reply_json(r, 200, json_pack("{s:s, s:s}", "status", "ok", "version", FERRY_VERSION));
}

static void get_metrics(hreq *r, void *arg)
{
    app *a = arg;
    providers_update_metrics(a->providers);
    struct evbuffer *buf = evbuffer_new();
    metrics_render(buf);
    hreq_reply_evbuffer(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf);
    evbuffer_free(buf);
}

/* Tools the caller may call now: those of integrations that need no
 * credential or have a connection the caller can use. ?suggest=1 adds the
 * integrations worth connecting. */
static void add_tool(void *arg, provider_tool *t, json_t *connection)
{
    json_t *item = json_pack("{s:s, s:s, s:O, s:s, s:s, s:O}", "name", t->full_name, "description", t->description,
                             "input_schema", t->input, "access", t->is_write ? "write" : "read", "integration",
                             t->p->slug, "connection_id",
                             connection ? json_object_get(connection, "id") : json_null());
    if (t->output)
        json_object_set(item, "output_schema", t->output);
    json_array_append_new(arg, item);
}

static void get_tools(hreq *r, void *arg)
{
    app *a = arg;
    const principal *who = hreq_principal(r);
    ferr e = {0};
    json_t *tools = json_array();
    if (agent_each_tool(&a->agent, who, add_tool, tools, &e) < 0) {
        json_decref(tools);
        hreq_reply_error(r, &e);
        ferr_clear(&e);
        return;
    }
    json_t *body = json_pack("{s:o}", "tools", tools);
    const char *suggest = hreq_query(r, "suggest");
    if (suggest && (strcmp(suggest, "1") == 0 || strcmp(suggest, "true") == 0)) {
        json_t *conns = discovery_connections(a->db, a->providers, who, &e);
        if (!conns) {
            json_decref(body);
            hreq_reply_error(r, &e);
            ferr_clear(&e);
            return;
        }
        json_t *pop = discovery_popularity(a->db);
        json_object_set_new(body, "suggestions",
                            discovery_suggestions(a->db, a->providers, who, conns, pop, (size_t)-1));
        json_decref(pop);
        json_decref(conns);
    }
    hreq_reply_json(r, 200, body);
}

/* {"content":[{"text":T,"type":"text"}],"duration_ms":D,"result":R}, where
 * T is the result as text for agents' tool-use APIs. Written by hand so the
 * result is serialized once, not once for `result` and again for `content`
 * (keys in the sorted order the rest of the API uses). */
static void reply_call(void *arg, const call_result *res)
{
    hreq *r = arg;
    if (res->err) {
        hreq_reply_error(r, res->err);
        return;
    }
    char *result = json_dumps(res->result, JSON_TEXT);
    struct evbuffer *buf = evbuffer_new();
    if (res->content) {
        /* An MCP tool's own content blocks (text, images, resources) go to
         * the agent as they came. */
        char *content = json_dumps(res->content, JSON_TEXT);
        evbuffer_add_printf(buf, "{\"content\":%s,\"duration_ms\":%.3f,\"result\":%s}\n", content ? content : "[]",
                            res->duration_ms, result ? result : "null");
        free(content);
    } else {
        json_t *text = json_is_string(res->result) ? json_incref(res->result)
                                                   : jsonfmt_string(result ? result : "null",
                                                                    result ? strlen(result) : 4);
        char *text_json = json_dumps(text, JSON_TEXT);
        evbuffer_add_printf(buf, "{\"content\":[{\"text\":%s,\"type\":\"text\"}],\"duration_ms\":%.3f,\"result\":%s}\n",
                            text_json ? text_json : "\"\"", res->duration_ms, result ? result : "null");
        free(text_json);
        json_decref(text);
    }
    hreq_reply_evbuffer(r, 200, "application/json", buf);
    evbuffer_free(buf);
    free(result);
}

static void reply_agent(void *arg, const agent_result *res)
{
    hreq *r = arg;
    if (res->approval) {
        hreq_reply_json(r, 202, json_pack("{s:O}", "approval", res->approval));
        return;
    }
    reply_call(r, res->call);
}

static void post_tools_call(hreq *r, void *arg)
{
    app *a = arg;
    json_t *body = hreq_json(r);
    ferr e = {0};
    if (!json_is_object(body)) {
        ferr_set(&e, FERR_BAD_REQUEST, "the body must be a JSON object {name, arguments, connection_id?}");
        goto fail;
    }
    json_t *name = json_object_get(body, "name");
    json_t *args = json_object_get(body, "arguments");
    json_t *conn = json_object_get(body, "connection_id");
    if (!json_is_string(name)) {
        ferr_set(&e, FERR_BAD_REQUEST, "name must be a string: the tool to call");
        goto fail;
    }
    if (json_is_null(args))
        args = NULL;
    if (args && !json_is_object(args)) {
        ferr_set(&e, FERR_INVALID_ARGUMENTS, "arguments must be a JSON object");
        ferr_detail(&e, "path", json_string("$"));
        goto fail;
    }
    if (conn && !json_is_null(conn) && !json_is_string(conn)) {
        ferr_set(&e, FERR_BAD_REQUEST, "connection_id must be a string");
        goto fail;
    }
    if (agent_call(&a->agent, hreq_principal(r), json_string_value(name), args,
                   json_is_string(conn) ? json_string_value(conn) : NULL, hreq_request_id(r), reply_agent, r, &e) == 0)
        return;
fail:
    hreq_reply_error(r, &e);
    ferr_clear(&e);
}

/* The Connected Apps page (web/, built into the binary). It runs only its
 * own script and style and talks only to this server. */
static void serve_file(hreq *r, const char *path, const char *type)
{
    for (const embedded_file *f = embedded_files; f->path; f++)
        if (strcmp(f->path, path) == 0) {
            hreq_add_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                            "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
            hreq_add_header(r, "X-Content-Type-Options", "nosniff");
            hreq_add_header(r, "Referrer-Policy", "no-referrer");
            hreq_reply_text(r, 200, type, f->data, f->len);
            return;
        }
    ferr e = {0};
    ferr_set(&e, FERR_NOT_FOUND, "no such file");
    hreq_reply_error(r, &e);
    ferr_clear(&e);
}

static void get_page(hreq *r, void *arg)
{
    (void)arg;
    serve_file(r, "web/index.html", "text/html; charset=utf-8");
}

static void get_page_js(hreq *r, void *arg)
{
    (void)arg;
    serve_file(r, "web/app.js", "text/javascript; charset=utf-8");
}

static void get_page_css(hreq *r, void *arg)
{
    (void)arg;
    serve_file(r, "web/app.css", "text/css; charset=utf-8");
}

static void get_me(hreq *r, void *arg)
{
    (void)arg;
    const principal *who = hreq_principal(r);
    hreq_reply_json(r, 200, json_pack("{s:s, s:s, s:s, s:s}", "user", who->user, "team", who->team, "role",
                                      who->is_admin ? "admin" : "member", "key_id", who->key_id));
}

void api_register(hserver *hs)
{
    hserver_route(hs, "GET", "/", "page", 0, get_page);
    hserver_route(hs, "GET", "/app.js", "page", 0, get_page_js);
    hserver_route(hs, "GET", "/app.css", "page", 0, get_page_css);
    hserver_route(hs, "GET", "/v1/me", "me", ROUTE_AUTH, get_me);
    hserver_route(hs, "GET", "/healthz", "healthz", 0, get_healthz);
    hserver_route(hs, "GET", "/metrics", "metrics", ROUTE_LOOPBACK, get_metrics);
    hserver_route(hs, "GET", "/v1/tools", "tools", ROUTE_AUTH, get_tools);
    hserver_route(hs, "POST", "/v1/tools/call", "tools_call", ROUTE_AUTH | ROUTE_JSON, post_tools_call);
}
