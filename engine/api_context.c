/* api_context.c — what an agent puts in its system prompt:
 *   GET /v1/context  {text, connected, available, upcoming_events, attention}
 *   POST /v1/suggestions/{slug}/dismiss */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "app.h"
#include "discovery.h"

#define SUGGESTIONS 5

static void describe_connected(struct evbuffer *text, json_t *connected)
{
    size_t i;
    json_t *c;
    json_array_foreach(connected, i, c) {
        const char *account = json_string_value(json_object_get(c, "account_label"));
        evbuffer_add_printf(text, "- %s (%s)%s%s%s: ", json_string_value(json_object_get(c, "name")),
                            json_string_value(json_object_get(c, "integration")), account ? ", account " : "",
                            account ? account : "", "");
        size_t k;
        json_t *t;
        json_array_foreach(json_object_get(c, "tools"), k, t) {
            evbuffer_add_printf(text, "%s%s%s", k ? ", " : "", json_string_value(json_object_get(t, "name")),
                                json_is_true(json_object_get(t, "write")) ? " (write: asks a person first)" : "");
        }
        evbuffer_add(text, ".\n", 2);
    }
}

static void get_context(hreq *r, void *arg)
{
    app *a = arg;
    const principal *who = hreq_principal(r);
    ferr e = {0};
    json_t *conns = discovery_connections(a->db, a->providers, who, &e);
    if (!conns) {
        hreq_reply_error(r, &e);
        ferr_clear(&e);
        return;
    }
    json_t *connected = json_array(), *attention = json_array();
    for (size_t i = 0; i < providers_count(a->providers); i++) {
        const provider *p = providers_at(a->providers, i);
        json_t *mine = json_object_get(conns, p->slug);
        size_t k;
        json_t *c;
        json_array_foreach(mine, k, c) {
            const char *status = json_string_value(json_object_get(c, "status"));
            json_t *rot = json_object_get(c, "rotation");
            if (strcmp(status, "active") != 0)
                json_array_append_new(attention, json_pack("{s:s, s:s, s:s, s:s}", "integration", p->slug,
                                                           "connection_id",
                                                           json_string_value(json_object_get(c, "id")), "issue",
                                                           status, "name", p->name));
            else if (who->is_admin && json_is_true(json_object_get(rot, "overdue")))
                json_array_append_new(attention, json_pack("{s:s, s:s, s:s, s:s, s:O}", "integration", p->slug,
                                                           "connection_id",
                                                           json_string_value(json_object_get(c, "id")), "issue",
                                                           "rotation_due", "name", p->name, "due_at",
                                                           json_object_get(rot, "due_at")));
        }
        if (!discovery_usable(p, conns))
            continue;
        json_t *tools = json_array();
        for (size_t t = 0; t < p->ntools; t++)
            if (agent_may_use(&a->agent, who, p, &p->tools[t]))
                json_array_append_new(tools, json_pack("{s:s, s:s, s:b}", "name", p->tools[t].full_name,
                                                       "description", p->tools[t].description, "write",
                                                       p->tools[t].is_write));
        if (json_array_size(tools) == 0) {
            json_decref(tools);
            continue;   /* nothing of it this caller may use */
        }
        json_t *pick = discovery_pick(mine, who);
        json_t *entry = json_pack("{s:s, s:s, s:s, s:o}", "integration", p->slug, "name", p->name, "category",
                                  p->category, "tools", tools);
        if (pick) {
            json_object_set(entry, "connection_id", json_object_get(pick, "id"));
            json_object_set(entry, "account_label", json_object_get(pick, "account_label"));
        }
        json_array_append_new(connected, entry);
    }
    json_t *pop = discovery_popularity(a->db);
    json_t *available = discovery_suggestions(a->db, a->providers, who, conns, pop, SUGGESTIONS);
    json_decref(pop);
    json_decref(conns);

    struct evbuffer *text = evbuffer_new();
    if (json_array_size(connected)) {
        evbuffer_add_printf(text, "Connected apps you can use for %s (team %s), through ferry's tools:\n", who->user,
                            who->team);
        describe_connected(text, connected);
    } else {
        evbuffer_add_printf(text, "%s (team %s) has no connected apps yet.\n", who->user, who->team);
    }
    if (json_array_size(available)) {
        evbuffer_add_printf(text, "If a request needs data from an app that is not connected, suggest connecting "
                                  "it; these are available:");
        size_t i;
        json_t *s;
        json_array_foreach(available, i, s) {
            evbuffer_add_printf(text, "%s %s (%s)", i ? "," : "", json_string_value(json_object_get(s, "name")),
                                json_string_value(json_object_get(s, "category")));
        }
        evbuffer_add(text, ".\n", 2);
    }
    size_t i;
    json_t *issue;
    json_array_foreach(attention, i, issue) {
        const char *what = json_string_value(json_object_get(issue, "issue"));
        const char *name = json_string_value(json_object_get(issue, "name"));
        if (strcmp(what, "reconnect_required") == 0)
            evbuffer_add_printf(text, "%s must be reconnected before it can be used: ask the user to reconnect it.\n",
                                name);
        else if (strcmp(what, "rotation_due") == 0)
            evbuffer_add_printf(text, "The %s credential is due for rotation (team policy): remind the admin.\n",
                                name);
        else
            evbuffer_add_printf(text, "%s has a problem (%s): tell the user.\n", name, what);
    }
    size_t len = evbuffer_get_length(text);
    json_t *body = json_pack("{s:s%, s:o, s:o, s:[], s:o}", "text", (const char *)evbuffer_pullup(text, -1), len,
                             "connected", connected, "available", available, "upcoming_events", "attention",
                             attention);
    evbuffer_free(text);
    hreq_reply_json(r, 200, body);
}

static void post_dismiss(hreq *r, void *arg)
{
    app *a = arg;
    const principal *who = hreq_principal(r);
    const char *slug = hreq_param(r, "slug");
    ferr e = {0};
    if (!providers_find(a->providers, slug))
        ferr_set(&e, FERR_NOT_FOUND, "there is no integration named '%s'", slug);
    else
        store_dismiss(a->db, who->user_id, who->team_id, slug, &e);
    if (e.code) {
        hreq_reply_error(r, &e);
        ferr_clear(&e);
        return;
    }
    hreq_reply_json(r, 204, NULL);
}

void api_context_register(hserver *hs)
{
    hserver_route(hs, "GET", "/v1/context", "context", ROUTE_AUTH, get_context);
    hserver_route(hs, "POST", "/v1/suggestions/{slug}/dismiss", "suggestion_dismiss", ROUTE_AUTH | ROUTE_JSON,
                  post_dismiss);
}
