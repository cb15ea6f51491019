/* api_oauth.c — connecting through OAuth:
 *   GET /oauth/{slug}/start        (Bearer) 302 to the provider, or JSON
 *                                  {authorize_url} with ?format=json or
 *                                  Accept: application/json
 *   GET /oauth/callback            the provider sends the browser back
 *   PUT /v1/integrations/{slug}/oauth-client   (admin) the team's client
 *   GET /v1/integrations/{slug}/oauth-client   (admin) without the secret
 * docs/oauth.md tells the whole flow. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "app.h"
#include "connections.h"
#include "jsonfmt.h"

static void reply_ferr(hreq *r, ferr *e)
{
    hreq_reply_error(r, e);
    ferr_clear(e);
}

static int wants_json(hreq *r)
{
    const char *format = hreq_query(r, "format");
    const char *accept = hreq_header(r, "Accept");
    return (format && strcmp(format, "json") == 0) || (accept && strstr(accept, "application/json"));
}


static void get_start(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    oauth_start_spec spec = {
        .slug = hreq_param(r, "slug"),
        .scope = hreq_query(r, "scope"),
        .label = hreq_query(r, "label"),
        .connection_id = hreq_query(r, "connection_id"),
    };
    char *url = NULL;
    int64_t expires = 0;
    if (oauth_start(a->oauth, hreq_principal(r), &spec, &url, &expires, &e) < 0) {
        reply_ferr(r, &e);
        return;
    }
    if (wants_json(r)) {
        hreq_reply_json(r, 200, json_pack("{s:s, s:s, s:o, s:s}", "authorize_url", url, "redirect_uri",
                                          oauth_redirect_uri(a->oauth), "expires_at", jsonfmt_time(expires),
                                          "integration", spec.slug));
    } else {
        hreq_add_header(r, "Location", url);
        static const char body[] = "Redirecting to the provider to sign in.\n";
        hreq_reply_text(r, 302, "text/plain; charset=utf-8", body, sizeof body - 1);
    }
    free(url);
}

/* The browser's answer when it is not asking for JSON: back to the page on
 * success, a short page saying what went wrong otherwise. */
static void reply_browser_error(hreq *r, const ferr *e)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        hreq_reply_error(r, e);
        return;
    }
    evbuffer_add_printf(b, "<!doctype html><meta charset=utf-8><title>Connecting failed</title>"
                           "<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">"
                           "<h1>Connecting failed</h1><p><code>%s</code>: ",
                        ferr_code_name(e->code));
    for (const char *s = e->message; *s; s++) {
        switch (*s) {
        case '<': evbuffer_add(b, "&lt;", 4); break;
        case '>': evbuffer_add(b, "&gt;", 4); break;
        case '&': evbuffer_add(b, "&amp;", 5); break;
        case '"': evbuffer_add(b, "&quot;", 6); break;
        default: evbuffer_add(b, s, 1);
        }
    }
    evbuffer_add_printf(b, "</p><p><a href=\"/\">Back to Connected Apps</a></p></body>\n");
    hreq_reply_evbuffer(r, ferr_status(e), "text/html; charset=utf-8", b);
    evbuffer_free(b);
}

typedef struct pending_callback {
    app *a;
    hreq *r;
    int json;
    store_connection conn;
} pending_callback;

static void reply_connected(pending_callback *pc)
{
    app *a = pc->a;
    const store_connection *c = &pc->conn;
    ferr ignore = {0};
    syncs_reconcile(a->syncs, 0, &ignore);   /* its syncs' jobs, so they run within seconds */
    ferr_clear(&ignore);
    if (pc->json) {
        const provider *p = providers_find(a->providers, c->integration);
        hreq_reply_json(pc->r, 201, connections_to_json(c, connections_rotation_days(a->db, c, p)));
    } else {
        char location[120];
        snprintf(location, sizeof location, "/#connected=%s", c->integration);
        hreq_add_header(pc->r, "Location", location);
        static const char body[] = "Connected.\n";
        hreq_reply_text(pc->r, 302, "text/plain; charset=utf-8", body, sizeof body - 1);
    }
    store_connection_clear(&pc->conn);
    free(pc);
}

/* The provider's check names the account (its email, its company). A
 * failed check does not undo the connection: the grant is real. */
static void on_checked(void *arg, const call_result *res)
{
    pending_callback *pc = arg;
    json_t *label = !res->err && json_is_object(res->result) ? json_object_get(res->result, "account_label") : NULL;
    if (!res->err && json_is_object(res->result))
        connections_adopt_settings(pc->a->db, providers_find(pc->a->providers, pc->conn.integration), &pc->conn,
                                   json_object_get(res->result, "settings"));
    if (json_is_string(label)) {
        ferr e = {0};
        snprintf(pc->conn.account_label, sizeof pc->conn.account_label, "%s", json_string_value(label));
        store_connection_set_account(pc->a->db, pc->conn.id, pc->conn.account_label, &e);
        ferr_clear(&e);
    }
    reply_connected(pc);
}

static void on_connected(void *arg, const store_connection *c, const ferr *err)
{
    pending_callback *pc = arg;
    app *a = pc->a;
    if (err) {
        ferr e = {0};
        ferr_set(&e, err->code, "%s", err->message);
        e.status = err->status;
        if (err->details)
            e.details = json_deep_copy(err->details);
        if (pc->json)
            hreq_reply_error(pc->r, &e);
        else
            reply_browser_error(pc->r, &e);
        ferr_clear(&e);
        free(pc);
        return;
    }
    pc->conn = *c;
    pc->conn.settings = c->settings ? strdup(c->settings) : NULL;
    provider *p = providers_find(a->providers, c->integration);
    principal who;
    ferr e = {0};
    if (p && p->check_ref != LUA_NOREF && store_principal_by_ids(a->db, c->user_id, c->team_id, &who) == 0) {
        call_request req = {.connection_id = c->id, .who = &who, .request_id = hreq_request_id(pc->r)};
        if (calls_start_check(a->calls, p, &req, on_checked, pc, &e) == 0)
            return;
        ferr_clear(&e);
    }
    reply_connected(pc);
}

static const char *callback_param(void *ud, const char *name) { return hreq_query(ud, name); }

static void get_callback(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    pending_callback *pc = calloc(1, sizeof *pc);
    if (!pc) {
        ferr_set(&e, FERR_INTERNAL, "out of memory");
        reply_ferr(r, &e);
        return;
    }
    pc->a = a;
    pc->r = r;
    pc->json = wants_json(r);
    oauth_callback_args cb = {
        .state = hreq_query(r, "state"), .code = hreq_query(r, "code"), .error = hreq_query(r, "error"),
        .error_description = hreq_query(r, "error_description"), .param = callback_param, .param_ud = r,
    };
    if (oauth_callback(a->oauth, &cb, on_connected, pc, &e) < 0) {
        if (pc->json)
            hreq_reply_error(r, &e);
        else
            reply_browser_error(r, &e);
        ferr_clear(&e);
        free(pc);
    }
}

static const char *opt_string(json_t *body, const char *key, ferr *e)
{
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        ferr_set(e, FERR_BAD_REQUEST, "%s must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

static void put_client(hreq *r, void *arg)
{
    app *a = arg;
    const principal *who = hreq_principal(r);
    json_t *body = hreq_json(r);
    ferr e = {0};
    if (!who->is_admin) {
        ferr_set(&e, FERR_FORBIDDEN, "only a team admin sets an integration's OAuth client");
        reply_ferr(r, &e);
        return;
    }
    static const char *const allowed[] = {"client_id", "client_secret", "authorize_url", "token_url", "revoke_url"};
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        int known = 0;
        for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
            known |= strcmp(key, allowed[i]) == 0;
        if (!known && !e.code)
            ferr_set(&e, FERR_INVALID_ARGUMENTS, "unknown field '%s': want {client_id, client_secret, "
                                                 "authorize_url?, token_url?, revoke_url?}", key);
    }
    oauth_client_spec spec = {
        .client_id = opt_string(body, "client_id", &e),
        .client_secret = opt_string(body, "client_secret", &e),
        .authorize_url = opt_string(body, "authorize_url", &e),
        .token_url = opt_string(body, "token_url", &e),
        .revoke_url = opt_string(body, "revoke_url", &e),
    };
    const char *slug = hreq_param(r, "slug");
    if (!e.code)
        oauth_set_client(a->db, a->vault, a->providers, who->team_id, slug, &spec, 0, &e);
    if (e.code) {
        reply_ferr(r, &e);
        return;
    }
    audit_row row = {.user_id = who->user_id, .user = who->user, .team_id = who->team_id, .team = who->team,
                     .integration = slug, .operation = "oauth.set_client", .access = "write", .outcome = "ok",
                     .http_status = 200, .request_id = hreq_request_id(r), .detail = spec.client_id};
    if (audit_event(a->audit, &row, &e) < 0) {
        reply_ferr(r, &e);
        return;
    }
    json_t *out = json_pack("{s:s, s:s, s:s}", "integration", slug, "client_id", spec.client_id, "scope", "team");
    json_object_set_new(out, "authorize_url", spec.authorize_url ? json_string(spec.authorize_url) : json_null());
    json_object_set_new(out, "token_url", spec.token_url ? json_string(spec.token_url) : json_null());
    json_object_set_new(out, "revoke_url", spec.revoke_url ? json_string(spec.revoke_url) : json_null());
    json_object_set_new(out, "redirect_uri", json_string(oauth_redirect_uri(a->oauth)));
    hreq_reply_json(r, 200, out);
}

static void get_client(hreq *r, void *arg)
{
    app *a = arg;
    const principal *who = hreq_principal(r);
    const char *slug = hreq_param(r, "slug");
    ferr e = {0};
    oauth_client_row row;
    int found = -1;
    if (!who->is_admin)
        ferr_set(&e, FERR_FORBIDDEN, "only a team admin sees an integration's OAuth client");
    else if (!providers_find(a->providers, slug))
        ferr_set(&e, FERR_NOT_FOUND, "there is no integration named '%s'", slug);
    else if ((found = store_oauth_client_get(a->db, who->team_id, slug, &row, &e)) == 1)
        ferr_set(&e, FERR_NOT_FOUND, "no OAuth client is set up for %s", slug);
    if (e.code) {
        reply_ferr(r, &e);
        return;
    }
    json_t *out = json_pack("{s:s, s:s, s:s}", "integration", slug, "client_id", row.client_id, "scope",
                            row.team_id ? "team" : "operator");
    json_object_set_new(out, "authorize_url", row.authorize_url ? json_string(row.authorize_url) : json_null());
    json_object_set_new(out, "token_url", row.token_url ? json_string(row.token_url) : json_null());
    json_object_set_new(out, "revoke_url", row.revoke_url ? json_string(row.revoke_url) : json_null());
    json_object_set_new(out, "redirect_uri", json_string(oauth_redirect_uri(a->oauth)));
    store_oauth_client_clear(&row);
    hreq_reply_json(r, 200, out);
}

void api_oauth_register(hserver *hs)
{
    hserver_route(hs, "GET", "/oauth/{slug}/start", "oauth_start", ROUTE_AUTH, get_start);
    hserver_route(hs, "GET", "/oauth/callback", "oauth_callback", 0, get_callback);
    hserver_route(hs, "PUT", "/v1/integrations/{slug}/oauth-client", "oauth_client_set", ROUTE_AUTH | ROUTE_JSON,
                  put_client);
    hserver_route(hs, "GET", "/v1/integrations/{slug}/oauth-client", "oauth_client", ROUTE_AUTH, get_client);
}
