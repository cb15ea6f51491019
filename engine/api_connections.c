/* api_connections.c — the integration registry and connections:
 *   GET /v1/integrations, POST/GET /v1/connections, DELETE /v1/connections/{id},
 *   PUT /v1/policies/rotation (admin). */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "app.h"
#include "connections.h"
#include "discovery.h"

static void reply_ferr(hreq *r, ferr *e)
{
    hreq_reply_error(r, e);
    ferr_clear(e);
}

static void get_integrations(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    json_t *conns = discovery_connections(a->db, a->providers, hreq_principal(r), &e);
    if (!conns) {
        reply_ferr(r, &e);
        return;
    }
    json_t *pop = discovery_popularity(a->db);
    json_t *list = json_array();
    for (size_t i = 0; i < providers_count(a->providers); i++) {
        const provider *p = providers_at(a->providers, i);
        if (!providers_visible(p, hreq_principal(r)))
            continue;   /* another team's MCP server */
        json_array_append_new(list, discovery_integration(p, conns, json_integer_value(json_object_get(pop, p->slug))));
    }
    json_decref(pop);
    json_decref(conns);
    hreq_reply_json(r, 200, json_pack("{s:o}", "integrations", list));
}

/* A POST /v1/connections waiting for the provider's check. */
typedef struct pending_create {
    app *a;
    hreq *r;
    store_connection conn;
    principal who;
} pending_create;

static void reply_created(hreq *r, app *a, const store_connection *c)
{
    const provider *p = providers_find(a->providers, c->integration);
    /* Its syncs get their jobs now, so the first run comes within seconds. */
    ferr ignore = {0};
    syncs_reconcile(a->syncs, 0, &ignore);
    ferr_clear(&ignore);
    hreq_reply_json(r, 201, connections_to_json(c, connections_rotation_days(a->db, c, p)));
}

static void on_checked(void *arg, const call_result *res)
{
    pending_create *pc = arg;
    app *a = pc->a;
    ferr e = {0};
    if (res->err) {
        /* A connection that fails its check is not kept. */
        ferr ignore = {0};
        connections_delete(a->db, a->vault, &pc->who, pc->conn.id, &ignore);
        ferr_clear(&ignore);
        ferr_set(&e, res->err->code == FERR_RECONNECT_REQUIRED ? FERR_INVALID_ARGUMENTS : res->err->code,
                 "the connection was not saved: %s refused the check: %s", pc->conn.integration,
                 res->err->message);
        if (res->err->code != FERR_RECONNECT_REQUIRED)
            e.status = ferr_status(res->err);
        ferr_detail(&e, "check_code", json_string(ferr_code_name(res->err->code)));
        reply_ferr(pc->r, &e);
    } else {
        json_t *label = json_is_object(res->result) ? json_object_get(res->result, "account_label") : NULL;
        if (json_is_object(res->result))
            connections_adopt_settings(a->db, providers_find(a->providers, pc->conn.integration), &pc->conn,
                                       json_object_get(res->result, "settings"));
        if (json_is_string(label)) {
            snprintf(pc->conn.account_label, sizeof pc->conn.account_label, "%s", json_string_value(label));
            store_connection_set_account(a->db, pc->conn.id, pc->conn.account_label, &e);
            ferr_clear(&e);
        }
        reply_created(pc->r, a, &pc->conn);
    }
    store_connection_clear(&pc->conn);
    free(pc);
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

static void post_connection(hreq *r, void *arg)
{
    app *a = arg;
    json_t *body = hreq_json(r);
    ferr e = {0};
    if (!json_is_object(body)) {
        ferr_set(&e, FERR_BAD_REQUEST, "the body must be {integration, credentials, scope?, label?, settings?}");
        reply_ferr(r, &e);
        return;
    }
    connection_spec spec = {
        .integration = opt_string(body, "integration", &e),
        .credentials = json_object_get(body, "credentials"),
        .settings = json_object_get(body, "settings"),
        .scope = opt_string(body, "scope", &e),
        .label = opt_string(body, "label", &e),
    };
    json_t *verify = json_object_get(body, "verify");
    if (!e.code && !spec.integration)
        ferr_set(&e, FERR_BAD_REQUEST, "integration is required");
    if (!e.code && verify && !json_is_boolean(verify))
        ferr_set(&e, FERR_BAD_REQUEST, "verify must be true or false");
    if (e.code) {
        reply_ferr(r, &e);
        return;
    }
    if (json_is_null(spec.settings))
        spec.settings = NULL;
    const principal *who = hreq_principal(r);
    store_connection conn;
    if (connections_create(a->db, a->vault, a->providers, who, &spec, &conn, &e) < 0) {
        reply_ferr(r, &e);
        return;
    }
    provider *p = providers_find(a->providers, conn.integration);
    if (p->check_ref == LUA_NOREF || json_is_false(verify)) {
        reply_created(r, a, &conn);
        store_connection_clear(&conn);
        return;
    }
    pending_create *pc = calloc(1, sizeof *pc);
    if (!pc) {
        store_connection_clear(&conn);
        ferr_set(&e, FERR_INTERNAL, "out of memory");
        reply_ferr(r, &e);
        return;
    }
    pc->a = a;
    pc->r = r;
    pc->conn = conn;
    pc->who = *who;
    call_request req = {.connection_id = conn.id, .who = who, .request_id = hreq_request_id(r)};
    if (calls_start_check(a->calls, p, &req, on_checked, pc, &e) < 0) {
        ferr ignore = {0};
        connections_delete(a->db, a->vault, who, conn.id, &ignore);
        ferr_clear(&ignore);
        store_connection_clear(&pc->conn);
        free(pc);
        reply_ferr(r, &e);
    }
}

static void get_connections(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    json_t *by = discovery_connections(a->db, a->providers, hreq_principal(r), &e);
    if (!by) {
        reply_ferr(r, &e);
        return;
    }
    json_t *list = json_array();
    const char *key;
    json_t *conns;
    json_object_foreach(by, key, conns) json_array_extend(list, conns);
    json_decref(by);
    hreq_reply_json(r, 200, json_pack("{s:o}", "connections", list));
}

static void delete_connection(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    const principal *who = hreq_principal(r);
    /* An OAuth grant is revoked at the provider too (best effort, after the
     * credentials are gone here): the tokens are read before deleting. */
    store_connection c;
    memset(&c, 0, sizeof c);
    credentials creds = {0};
    int revoke = 0;
    if (connections_get_visible(a->db, who, hreq_param(r, "id"), &c, &e) == 0) {
        const provider *p = providers_find(a->providers, c.integration);
        ferr ignore = {0};
        revoke = p && p->authn.kind == AUTH_OAUTH2 && connections_open(a->db, a->vault, &c, &creds, &ignore) == 0;
        ferr_clear(&ignore);
    }
    ferr_clear(&e);
    if (connections_delete(a->db, a->vault, who, hreq_param(r, "id"), &e) < 0) {
        reply_ferr(r, &e);
    } else {
        if (revoke)
            oauth_revoke(a->oauth, &c, &creds);
        hreq_reply_json(r, 204, NULL);
    }
    store_connection_clear(&c);
    credentials_wipe(&creds);
}

/* PUT /v1/policies/rotation {integration: slug | "*", every_days: N (0 removes)} */
static void put_rotation_policy(hreq *r, void *arg)
{
    app *a = arg;
    const principal *who = hreq_principal(r);
    json_t *body = hreq_json(r);
    ferr e = {0};
    json_t *integration = json_object_get(body, "integration");
    json_t *days = json_object_get(body, "every_days");
    if (!who->is_admin)
        ferr_set(&e, FERR_FORBIDDEN, "only a team admin sets rotation policies");
    else if (!json_is_string(integration) || !json_is_integer(days) || json_integer_value(days) < 0 ||
             json_integer_value(days) > 3650)
        ferr_set(&e, FERR_INVALID_ARGUMENTS, "want {integration: slug or \"*\", every_days: 0..3650}");
    else if (strcmp(json_string_value(integration), "*") != 0 &&
             !providers_find(a->providers, json_string_value(integration)))
        ferr_set(&e, FERR_NOT_FOUND, "there is no integration named '%s'", json_string_value(integration));
    else
        store_policy_set(a->db, who->team_id, json_string_value(integration), (int)json_integer_value(days), &e);
    if (e.code) {
        reply_ferr(r, &e);
        return;
    }
    hreq_reply_json(r, 200, json_pack("{s:O, s:O}", "integration", integration, "every_days", days));
}

void api_connections_register(hserver *hs)
{
    hserver_route(hs, "GET", "/v1/integrations", "integrations", ROUTE_AUTH, get_integrations);
    hserver_route(hs, "POST", "/v1/connections", "connections_create", ROUTE_AUTH | ROUTE_JSON, post_connection);
    hserver_route(hs, "GET", "/v1/connections", "connections", ROUTE_AUTH, get_connections);
    hserver_route(hs, "DELETE", "/v1/connections/{id}", "connections_delete", ROUTE_AUTH, delete_connection);
    hserver_route(hs, "PUT", "/v1/policies/rotation", "rotation_policy", ROUTE_AUTH | ROUTE_JSON,
                  put_rotation_policy);
}
