/* api_governance.c — approvals, the audit trail, permissions and limits:
 *   GET /v1/approvals[?status=]  GET /v1/approvals/{id}
 *   POST /v1/approvals/{id}/approve  POST /v1/approvals/{id}/reject
 *   GET /v1/audit (admin)  GET /v1/audit/verify (admin)
 *   GET /v1/permissions  POST /v1/permissions (admin)
 *   PUT /v1/policies/rate-limits (admin)  PUT /v1/policies/write-tools (admin) */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"

static void reply_ferr(hreq *r, ferr *e)
{
    hreq_reply_error(r, e);
    ferr_clear(e);
}

static int require_admin(hreq *r)
{
    if (hreq_principal(r)->is_admin)
        return 0;
    ferr e = {0};
    ferr_set(&e, FERR_FORBIDDEN, "only a team admin can do this");
    reply_ferr(r, &e);
    return -1;
}

/* ---- approvals ---- */

static void get_approvals(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    json_t *list = approvals_list(a->approvals, hreq_principal(r), hreq_query(r, "status"), &e);
    if (!list) {
        reply_ferr(r, &e);
        return;
    }
    hreq_reply_json(r, 200, json_pack("{s:o}", "approvals", list));
}

static void get_approval(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    json_t *o = approvals_get(a->approvals, hreq_principal(r), hreq_param(r, "id"), &e);
    if (!o) {
        reply_ferr(r, &e);
        return;
    }
    hreq_reply_json(r, 200, json_pack("{s:o}", "approval", o));
}

static void on_decided(void *arg, json_t *approval, const ferr *err)
{
    hreq *r = arg;
    if (err) {
        hreq_reply_error(r, err);
        json_decref(approval);
        return;
    }
    hreq_reply_json(r, 200, json_pack("{s:o}", "approval", approval ? approval : json_null()));
}

static void decide(hreq *r, app *a, int approve)
{
    json_t *body = hreq_json(r);
    json_t *reason = json_object_get(body, "reason");
    ferr e = {0};
    if (reason && !json_is_null(reason) && !json_is_string(reason)) {
        ferr_set(&e, FERR_BAD_REQUEST, "reason must be a string");
        reply_ferr(r, &e);
        return;
    }
    if (approvals_decide(a->approvals, hreq_principal(r), hreq_param(r, "id"), approve,
                         json_is_string(reason) ? json_string_value(reason) : NULL, hreq_request_id(r), on_decided, r,
                         &e) < 0)
        reply_ferr(r, &e);
}

static void post_approve(hreq *r, void *arg) { decide(r, arg, 1); }
static void post_reject(hreq *r, void *arg) { decide(r, arg, 0); }

/* ---- audit ---- */

static int add_row(void *ud, const audit_row *row)
{
    json_t *list = ud;
    time_t t = (time_t)(row->ts_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char ts[40];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *args = row->arguments ? json_loads(row->arguments, JSON_DECODE_ANY, NULL) : NULL;
    json_t *o = json_pack("{s:I, s:s, s:s?, s:s?, s:s?, s:s?, s:s, s:s?, s:s, s:o, s:f, s:s?, s:s?, s:o, s:s?, s:s}",
                          "id", (json_int_t)row->id, "time", ts, "user", row->user, "team", row->team, "integration",
                          row->integration, "connection_id", row->connection_id, "operation", row->operation,
                          "access", row->access, "outcome", row->outcome, "http_status",
                          row->http_status ? json_integer(row->http_status) : json_null(), "duration_ms",
                          row->duration_ms, "approval_id", row->approval_id, "request_id", row->request_id,
                          "arguments", args ? args : json_null(), "detail", row->detail, "hash", row->hash);
    json_array_append_new(list, o);
    return 0;
}

/* ?since= takes an ISO date-time or epoch milliseconds. */
static int64_t parse_since(const char *s)
{
    if (!s || !*s)
        return 0;
    char *end;
    long long ms = strtoll(s, &end, 10);
    if (*end == 0)
        return ms;
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        rest = strptime(s, "%Y-%m-%d", &tm);
    return rest ? (int64_t)timegm(&tm) * 1000 : -1;
}

static void get_audit(hreq *r, void *arg)
{
    app *a = arg;
    if (require_admin(r) < 0)
        return;
    audit_flush(a->audit);   /* the newest calls are part of the answer */
    ferr e = {0};
    const char *limit = hreq_query(r, "limit"), *before = hreq_query(r, "before");
    audit_filter f = {
        .team_id = hreq_principal(r)->team_id,
        .since_ms = parse_since(hreq_query(r, "since")),
        .user = hreq_query(r, "user"),
        .integration = hreq_query(r, "integration"),
        .outcome = hreq_query(r, "outcome"),
        .before_id = before ? atoll(before) : 0,
        .limit = limit ? atoi(limit) : 100,
    };
    if (f.since_ms < 0 || f.limit <= 0 || f.limit > 1000) {
        ferr_set(&e, FERR_BAD_REQUEST, "since is an ISO date-time or epoch ms; limit is 1..1000");
        reply_ferr(r, &e);
        return;
    }
    json_t *rows = json_array();
    if (store_audit_query(a->db, &f, add_row, rows, &e) < 0) {
        json_decref(rows);
        reply_ferr(r, &e);
        return;
    }
    json_t *body = json_pack("{s:o}", "entries", rows);
    size_t n = json_array_size(rows);
    if ((int)n == f.limit)
        json_object_set_new(body, "next_before", json_object_get(json_array_get(rows, n - 1), "id")
                                                     ? json_incref(json_object_get(json_array_get(rows, n - 1), "id"))
                                                     : json_null());
    hreq_reply_json(r, 200, body);
}

static void get_audit_verify(hreq *r, void *arg)
{
    app *a = arg;
    if (require_admin(r) < 0)
        return;
    audit_flush(a->audit);
    ferr e = {0};
    json_t *report = audit_verify(a->db, &e);
    if (!report) {
        reply_ferr(r, &e);
        return;
    }
    hreq_reply_json(r, 200, report);
}

/* ---- permissions ---- */

typedef struct rules_ctx {
    store *db;
    json_t *rules;
} rules_ctx;

static void add_rule(void *ud, const char *subject, const char *category, int allowed)
{
    rules_ctx *c = ud;
    json_t *rule = json_pack("{s:s, s:b}", "category", category, "allowed", allowed);
    if (strncmp(subject, "role:", 5) == 0)
        json_object_set_new(rule, "role", json_string(subject + 5));
    else
        json_object_set_new(rule, "user_id", json_integer(atoll(subject + 5)));
    json_array_append_new(c->rules, rule);
}

static json_t *known_categories(providers *ps)
{
    json_t *set = json_object();
    json_object_set_new(set, "financial", json_true());
    for (size_t i = 0; i < providers_count(ps); i++) {
        provider *p = providers_at(ps, i);
        for (size_t k = 0; k < p->ncategories; k++)
            json_object_set_new(set, p->data_categories[k], json_true());
        for (size_t t = 0; t < p->ntools; t++)
            if (p->tools[t].data_category)
                json_object_set_new(set, p->tools[t].data_category, json_true());
    }
    return set;
}

static json_t *effective(app *a, const principal *who)
{
    json_t *cats = known_categories(a->providers), *out = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(cats, key, v) json_object_set_new(out, key, json_boolean(policy_allowed(a->policy, who, key)));
    json_decref(cats);
    return out;
}

static void get_permissions(hreq *r, void *arg)
{
    app *a = arg;
    const principal *who = hreq_principal(r);
    json_t *body = json_pack("{s:o}", "effective", effective(a, who));
    if (who->is_admin) {
        rules_ctx c = {a->db, json_array()};
        ferr e = {0};
        store_permission_list(a->db, who->team_id, add_rule, &c, &e);
        ferr_clear(&e);
        json_object_set_new(body, "rules", c.rules);
    }
    hreq_reply_json(r, 200, body);
}

/* A policy change is audited before it is made, and not made when the
 * audit row cannot be written (fails closed, like calls): 0, or -1 with
 * the 503 answered. */
static int audit_setting(hreq *r, app *a, const principal *who, const char *operation, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    audit_row row = {.user_id = who->user_id, .user = who->user, .team_id = who->team_id, .team = who->team,
                     .operation = operation, .outcome = "ok", .request_id = hreq_request_id(r), .arguments = text};
    ferr e = {0};
    int rc = audit_event(a->audit, &row, &e);
    free(text);
    if (rc < 0) {
        ferr_clear(&e);
        ferr_set(&e, FERR_INTERNAL, "the audit log cannot be written, so the setting was not changed");
        e.status = 503;
        reply_ferr(r, &e);
    }
    ferr_clear(&e);
    return rc;
}

/* POST /v1/permissions {user | role, category, allow: true | false | null} */
static void post_permission(hreq *r, void *arg)
{
    app *a = arg;
    if (require_admin(r) < 0)
        return;
    const principal *who = hreq_principal(r);
    json_t *body = hreq_json(r);
    json_t *user = json_object_get(body, "user"), *role = json_object_get(body, "role");
    json_t *category = json_object_get(body, "category"), *allow = json_object_get(body, "allow");
    ferr e = {0};
    char subject[64];
    if ((!user) == (!role) || !json_is_string(category) || (allow && !json_is_boolean(allow) && !json_is_null(allow))) {
        ferr_set(&e, FERR_INVALID_ARGUMENTS,
                 "want {user: name | role: \"member\" | \"admin\", category, allow: true, false or null to reset}");
        reply_ferr(r, &e);
        return;
    }
    if (role) {
        const char *rv = json_string_value(role);
        if (!rv || (strcmp(rv, "member") != 0 && strcmp(rv, "admin") != 0)) {
            ferr_set(&e, FERR_INVALID_ARGUMENTS, "role is \"member\" or \"admin\"");
            reply_ferr(r, &e);
            return;
        }
        snprintf(subject, sizeof subject, "role:%s", rv);
    } else {
        principal target;
        if (!json_is_string(user) || store_principal_find(a->db, json_string_value(user), who->team, &target) != 0) {
            ferr_set(&e, FERR_NOT_FOUND, "no user %s in team %s", json_is_string(user) ? json_string_value(user) : "?",
                     who->team);
            reply_ferr(r, &e);
            return;
        }
        snprintf(subject, sizeof subject, "user:%lld", (long long)target.user_id);
    }
    int allowed = !allow || json_is_null(allow) ? -1 : json_is_true(allow);
    if (audit_setting(r, a, who, "policy.permission", body) < 0)
        return;
    if (store_permission_set(a->db, who->team_id, subject, json_string_value(category), allowed, &e) < 0) {
        reply_ferr(r, &e);
        return;
    }
    hreq_reply_json(r, 200, json_pack("{s:s, s:O, s:o}", "subject", subject, "category", category, "allow",
                                      allowed < 0 ? json_null() : json_boolean(allowed)));
}

/* ---- limits and the write allow-list ---- */

static int rate_pair(json_t *o, double *rate, double *burst)
{
    if (!o)
        return 0;
    json_t *r = json_object_get(o, "rate"), *b = json_object_get(o, "burst");
    if (!json_is_number(r) || json_number_value(r) < 0 || (b && (!json_is_number(b) || json_number_value(b) < 1)))
        return -1;
    *rate = json_number_value(r);
    *burst = b ? json_number_value(b) : (*rate > 1 ? *rate : 1);
    return 0;
}

/* PUT /v1/policies/rate-limits {integration | "*", per_user: {rate, burst}, per_team: {rate, burst}} */
static void put_rate_limits(hreq *r, void *arg)
{
    app *a = arg;
    if (require_admin(r) < 0)
        return;
    const principal *who = hreq_principal(r);
    json_t *body = hreq_json(r);
    json_t *integration = json_object_get(body, "integration");
    ferr e = {0};
    rate_policy rp = policy_rates(a->policy, who->team_id, json_is_string(integration) ? json_string_value(integration) : "*");
    if (!json_is_string(integration) || rate_pair(json_object_get(body, "per_user"), &rp.user_rate, &rp.user_burst) < 0 ||
        rate_pair(json_object_get(body, "per_team"), &rp.team_rate, &rp.team_burst) < 0) {
        ferr_set(&e, FERR_INVALID_ARGUMENTS,
                 "want {integration: slug or \"*\", per_user: {rate, burst}, per_team: {rate, burst}}; rate in calls "
                 "per second (0: no limit), burst >= 1");
        reply_ferr(r, &e);
        return;
    }
    const provider *target = providers_find(a->providers, json_string_value(integration));
    if (strcmp(json_string_value(integration), "*") != 0 && (!target || !providers_visible(target, who))) {
        ferr_set(&e, FERR_NOT_FOUND, "there is no integration named '%s'", json_string_value(integration));
        reply_ferr(r, &e);
        return;
    }
    if (audit_setting(r, a, who, "policy.rate_limits", body) < 0)
        return;
    if (store_rate_policy_set(a->db, who->team_id, json_string_value(integration), &rp, &e) < 0) {
        reply_ferr(r, &e);
        return;
    }
    hreq_reply_json(r, 200, json_pack("{s:O, s:{s:f, s:f}, s:{s:f, s:f}}", "integration", integration, "per_user",
                                      "rate", rp.user_rate, "burst", rp.user_burst, "per_team", "rate", rp.team_rate,
                                      "burst", rp.team_burst));
}

/* PUT /v1/policies/write-tools {tool, require_approval: false | true} */
static void put_write_tools(hreq *r, void *arg)
{
    app *a = arg;
    if (require_admin(r) < 0)
        return;
    const principal *who = hreq_principal(r);
    json_t *body = hreq_json(r);
    json_t *tool = json_object_get(body, "tool"), *req = json_object_get(body, "require_approval");
    ferr e = {0};
    provider_tool *t = json_is_string(tool) ? providers_find_tool_for(a->providers, json_string_value(tool), who) : NULL;
    if (!json_is_boolean(req) || !json_is_string(tool)) {
        ferr_set(&e, FERR_INVALID_ARGUMENTS, "want {tool, require_approval: true or false}");
    } else if (!t) {
        ferr_set(&e, FERR_UNKNOWN_TOOL, "there is no tool named '%s'", json_string_value(tool));
    } else if (!t->is_write) {
        ferr_set(&e, FERR_INVALID_ARGUMENTS, "%s only reads; it never waits for approval", t->full_name);
    } else if (audit_setting(r, a, who, "policy.write_tools", body) < 0) {
        return;
    } else if (store_allowlist_set(a->db, who->team_id, t->full_name, json_is_false(req), &e) == 0) {
        hreq_reply_json(r, 200, json_pack("{s:s, s:O}", "tool", t->full_name, "require_approval", req));
        return;
    }
    reply_ferr(r, &e);
}

void api_governance_register(hserver *hs)
{
    hserver_route(hs, "GET", "/v1/approvals", "approvals", ROUTE_AUTH, get_approvals);
    hserver_route(hs, "GET", "/v1/approvals/{id}", "approval", ROUTE_AUTH, get_approval);
    hserver_route(hs, "POST", "/v1/approvals/{id}/approve", "approval_approve", ROUTE_AUTH | ROUTE_JSON, post_approve);
    hserver_route(hs, "POST", "/v1/approvals/{id}/reject", "approval_reject", ROUTE_AUTH | ROUTE_JSON, post_reject);
    hserver_route(hs, "GET", "/v1/audit", "audit", ROUTE_AUTH, get_audit);
    hserver_route(hs, "GET", "/v1/audit/verify", "audit_verify", ROUTE_AUTH, get_audit_verify);
    hserver_route(hs, "GET", "/v1/permissions", "permissions", ROUTE_AUTH, get_permissions);
    hserver_route(hs, "POST", "/v1/permissions", "permissions_set", ROUTE_AUTH | ROUTE_JSON, post_permission);
    hserver_route(hs, "PUT", "/v1/policies/rate-limits", "rate_limits", ROUTE_AUTH | ROUTE_JSON, put_rate_limits);
    hserver_route(hs, "PUT", "/v1/policies/write-tools", "write_tools", ROUTE_AUTH | ROUTE_JSON, put_write_tools);
}
