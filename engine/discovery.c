#include "discovery.h"

#include <stdlib.h>
#include <string.h>

#include "connections.h"

/* The brief's "Customer-Requested Integrations (Ranked by Demand)": the
 * apps it names, in its order; then its categories in their order. */
static const struct {
    const char *slug;
    int priority;
} demand[] = {
    {"quickbooks", 100}, {"xero", 98}, {"gusto", 96},
    {"gmail", 94}, {"outlook_mail", 93}, {"slack", 92}, {"whatsapp", 90}, {"telegram", 89},
    {"google_calendar", 88}, {"outlook_calendar", 87},
    {"salesforce", 86}, {"gohighlevel", 85}, {"hubspot", 84}, {"mailchimp", 83}, {"mailchimp_transactional", 82},
    {"google_analytics", 81},
    {"notion", 80}, {"fireflies", 79}, {"otter", 78}, {"asana", 77}, {"trello", 76}, {"monday", 75},
};

static const struct {
    const char *category;
    int priority;
} category_demand[] = {
    {"accounting", 60}, {"hr", 58}, {"email", 56}, {"communication", 55}, {"calendar", 54}, {"crm", 50},
    {"marketing", 49}, {"analytics", 48}, {"project_management", 45}, {"meetings", 44}, {"storage", 40},
    {"custom", 20}, {"mcp", 20}, {"developer", 5},
};

int discovery_priority(const provider *p)
{
    for (size_t i = 0; i < sizeof demand / sizeof demand[0]; i++)
        if (strcmp(demand[i].slug, p->slug) == 0)
            return demand[i].priority;
    for (size_t i = 0; i < sizeof category_demand / sizeof category_demand[0]; i++)
        if (strcmp(category_demand[i].category, p->category) == 0)
            return category_demand[i].priority;
    return 10;
}

typedef struct collect {
    providers *ps;
    store *db;
    json_t *out;
} collect;

static void add_connection(void *ud, const store_connection *c)
{
    collect *k = ud;
    const provider *p = providers_find(k->ps, c->integration);
    json_t *list = json_object_get(k->out, c->integration);
    if (!list) {
        list = json_array();
        json_object_set_new(k->out, c->integration, list);
    }
    json_array_append_new(list, connections_to_json(c, connections_rotation_days(k->db, c, p)));
}

json_t *discovery_connections(store *db, providers *ps, const principal *who, ferr *err)
{
    collect k = {ps, db, json_object()};
    if (store_connections_list(db, who->team_id, who->user_id, add_connection, &k, err) < 0) {
        json_decref(k.out);
        return NULL;
    }
    return k.out;
}

int discovery_usable(const provider *p, json_t *connections)
{
    if (p->authn.kind == AUTH_NONE)
        return 1;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(connections, p->slug), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "status")), "active") == 0)
            return 1;
    }
    return 0;
}

static const char *method_of(const provider *p)
{
    if (p->runner)
        return p->runner->method;
    switch (p->authn.kind) {
    case AUTH_API_KEY: return "api_key";
    case AUTH_BASIC: return "basic";
    case AUTH_OAUTH2: return "oauth2";
    default: return "none";
    }
}

/* What POST /v1/connections needs for this integration. */
static json_t *how_to_connect(const provider *p)
{
    json_t *fields = json_array(), *settings = json_array();
    if (p->authn.kind == AUTH_API_KEY)
        json_array_append_new(fields, json_string(p->authn.field));
    else if (p->authn.kind == AUTH_BASIC) {
        json_array_append_new(fields, json_string("username"));
        json_array_append_new(fields, json_string("password"));
    } else if (p->authn.kind == AUTH_OAUTH2 && p->authn.client_credentials) {
        json_array_append_new(fields, json_string("client_id"));
        json_array_append_new(fields, json_string("client_secret"));
    } else if (p->authn.kind == AUTH_OAUTH2) {
        json_array_append_new(fields, json_string("access_token"));   /* importing tokens issued elsewhere */
    }
    for (size_t i = 0; i < p->authn.nsettings; i++)
        json_array_append_new(settings, json_string(p->authn.settings[i]));
    json_t *o = json_pack("{s:o, s:o}", "credentials", fields, "settings", settings);
    if (p->authn.kind == AUTH_OAUTH2 && !p->authn.client_credentials) {
        char start[160];
        snprintf(start, sizeof start, "/oauth/%s/start", p->slug);
        json_object_set_new(o, "oauth_start", json_string(start));
    }
    if (p->authn.instructions)
        json_object_set_new(o, "instructions", json_string(p->authn.instructions));
    if (p->rotate_every_days)
        json_object_set_new(o, "rotate_every_days", json_integer(p->rotate_every_days));
    return o;
}

json_t *discovery_integration(const provider *p, json_t *connections, int64_t popularity)
{
    json_t *cats = json_array();
    for (size_t i = 0; i < p->ncategories; i++)
        json_array_append_new(cats, json_string(p->data_categories[i]));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:b, s:o}", "slug", p->slug, "name", p->name,
                     "category", p->category, "method", method_of(p), "description", p->description,
                     "data_categories", cats, "tools_count", (json_int_t)p->ntools, "popularity",
                     (json_int_t)popularity, "connected", discovery_usable(p, connections), "connect",
                     how_to_connect(p));
}

static void add_usage(void *ud, const char *integration, int64_t calls)
{
    json_object_set_new(ud, integration, json_integer(calls));
}

json_t *discovery_popularity(store *db)
{
    json_t *out = json_object();
    ferr ignore = {0};
    store_integration_usage(db, add_usage, out, &ignore);
    ferr_clear(&ignore);
    return out;
}

static void add_name(void *ud, const char *name) { json_object_set_new(ud, name, json_true()); }

typedef struct ranked {
    const provider *p;
    int priority;
    int64_t popularity;
} ranked;

static int by_rank(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->priority != y->priority)
        return y->priority - x->priority;
    if (x->popularity != y->popularity)
        return y->popularity > x->popularity ? 1 : -1;
    return strcmp(x->p->slug, y->p->slug);
}

json_t *discovery_suggestions(store *db, providers *ps, const principal *who, json_t *connections,
                              json_t *popularity, size_t limit)
{
    json_t *dismissed = json_object();
    ferr ignore = {0};
    store_dismissed(db, who->user_id, who->team_id, add_name, dismissed, &ignore);
    ferr_clear(&ignore);
    size_t n = providers_count(ps), k = 0;
    ranked *list = calloc(n ? n : 1, sizeof *list);
    for (size_t i = 0; list && i < n; i++) {
        const provider *p = providers_at(ps, i);
        if (p->authn.kind == AUTH_NONE || json_object_get(connections, p->slug) ||
            json_object_get(dismissed, p->slug))
            continue;
        list[k++] = (ranked){p, discovery_priority(p), json_integer_value(json_object_get(popularity, p->slug))};
    }
    if (list)
        qsort(list, k, sizeof *list, by_rank);
    json_t *out = json_array();
    for (size_t i = 0; i < k && i < limit; i++)
        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I}", "integration", list[i].p->slug,
                                             "name", list[i].p->name, "category", list[i].p->category,
                                             "description", list[i].p->description, "method",
                                             method_of(list[i].p), "tools_count", (json_int_t)list[i].p->ntools));
    free(list);
    json_decref(dismissed);
    return out;
}

/* The connection a call would use: the caller's own, else the team's newest
 * (the order connections_for_call picks in). */
json_t *discovery_pick(json_t *conns, const principal *who)
{
    json_t *pick = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(conns, i, c) {
        if (strcmp(json_string_value(json_object_get(c, "status")), "active") != 0)
            continue;
        int own = strcmp(json_string_value(json_object_get(c, "scope")), "user") == 0 &&
                  strcmp(json_string_value(json_object_get(c, "connected_by")), who->user) == 0;
        if (own)
            return c;
        pick = c;
    }
    return pick;
}
