/* api_context.c — what an agent puts in its system prompt:
 *   GET /v1/context  {text, connected, available, upcoming_events, attention}
 *   POST /v1/suggestions/{slug}/dismiss */
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include <event2/buffer.h>
#include <lauxlib.h>

#include "app.h"
#include "discovery.h"

#define SUGGESTIONS 5
#define MAX_EVENTS 20
#define EVENTS_TIMEOUT_S 5

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

typedef struct context_job {
    app *a;
    hreq *r;
    principal who;
    json_t *connected, *available, *attention, *events;
    int hours;
    int pending;          /* upcoming_events calls not finished */
    int replied;
    struct event *deadline;
} context_job;

static void job_release(context_job *job)
{
    if (!job->replied || job->pending > 0)
        return;
    if (job->deadline)
        event_free(job->deadline);
    json_decref(job->connected);
    json_decref(job->available);
    json_decref(job->attention);
    json_decref(job->events);
    free(job);
}

static int by_start(const void *x, const void *y)
{
    const char *a = json_string_value(json_object_get(*(json_t *const *)x, "start"));
    const char *b = json_string_value(json_object_get(*(json_t *const *)y, "start"));
    return strcmp(a ? a : "", b ? b : "");
}

static void reply_context(context_job *job)
{
    const principal *who = &job->who;
    json_t *connected = job->connected, *available = job->available, *attention = job->attention;
    /* Everyone's next events in one timeline. */
    size_t n = json_array_size(job->events);
    json_t **items = calloc(n ? n : 1, sizeof *items);
    json_t *events = json_array();
    if (items) {
        for (size_t i = 0; i < n; i++)
            items[i] = json_array_get(job->events, i);
        qsort(items, n, sizeof *items, by_start);
        for (size_t i = 0; i < n && i < MAX_EVENTS; i++)
            json_array_append(events, items[i]);
        free(items);
    }
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
    if (json_array_size(events)) {
        evbuffer_add_printf(text, "Upcoming events in the next %d h (times as the calendar gives them):\n",
                            job->hours);
        size_t i;
        json_t *ev;
        json_array_foreach(events, i, ev) {
            const char *title = json_string_value(json_object_get(ev, "title"));
            const char *end = json_string_value(json_object_get(ev, "end"));
            const char *where = json_string_value(json_object_get(ev, "location"));
            evbuffer_add_printf(text, "- %s%s%s: %s%s%s\n", json_string_value(json_object_get(ev, "start")),
                                end ? " to " : "", end ? end : "", title ? title : "(no title)",
                                where ? ", at " : "", where ? where : "");
        }
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
        else if (strcmp(what, "upcoming_events_unavailable") == 0)
            evbuffer_add_printf(text, "The next events from %s could not be read just now (%s).\n", name,
                                json_string_value(json_object_get(issue, "code")));
        else
            evbuffer_add_printf(text, "%s has a problem (%s): tell the user.\n", name, what);
    }
    size_t len = evbuffer_get_length(text);
    json_t *body = json_pack("{s:s%, s:O, s:O, s:o, s:O}", "text", (const char *)evbuffer_pullup(text, -1), len,
                             "connected", connected, "available", available, "upcoming_events", events,
                             "attention", attention);
    evbuffer_free(text);
    job->replied = 1;
    hreq_reply_json(job->r, 200, body);
}

typedef struct events_call {
    context_job *job;
    char integration[64];
    char name[128];
} events_call;

static void on_events(void *arg, const call_result *res)
{
    events_call *ec = arg;
    context_job *job = ec->job;
    job->pending--;
    if (!job->replied) {
        json_t *list = json_is_object(res->result) ? json_object_get(res->result, "events") : res->result;
        if (res->err) {
            json_array_append_new(job->attention,
                                  json_pack("{s:s, s:s, s:s, s:s}", "integration", ec->integration, "issue",
                                            res->err->code == FERR_RECONNECT_REQUIRED ? "reconnect_required"
                                                                                      : "upcoming_events_unavailable",
                                            "name", ec->name, "code", ferr_code_name(res->err->code)));
        } else if (json_is_array(list)) {
            size_t i;
            json_t *ev;
            json_array_foreach(list, i, ev) {
                if (!json_is_object(ev) || !json_is_string(json_object_get(ev, "start")))
                    continue;
                json_t *copy = json_deep_copy(ev);
                json_object_set_new(copy, "integration", json_string(ec->integration));
                json_array_append_new(job->events, copy);
            }
        }
        if (job->pending == 0)
            reply_context(job);
    }
    free(ec);
    job_release(job);
}

/* Calendars that are slow do not hold the context back for long. */
static void on_deadline(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    context_job *job = arg;
    if (!job->replied)
        reply_context(job);
    job_release(job);
}

/* Asks each connected calendar for its next events, then answers. */
static void gather_events(context_job *job)
{
    app *a = job->a;
    char from[32], to[32];
    time_t now = time(NULL), until = now + (time_t)job->hours * 3600;
    struct tm tm;
    strftime(from, sizeof from, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    strftime(to, sizeof to, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&until, &tm));
    json_t *args = json_pack("{s:s, s:s, s:i}", "from", from, "to", to, "limit", MAX_EVENTS);
    size_t i;
    json_t *entry;
    job->pending = 1;   /* held while starting, so no answer goes out half-way */
    json_array_foreach(job->connected, i, entry) {
        provider *p = providers_find(a->providers, json_string_value(json_object_get(entry, "integration")));
        const char *conn = json_string_value(json_object_get(entry, "connection_id"));
        if (!p || p->events_ref == LUA_NOREF || !conn)
            continue;
        events_call *ec = calloc(1, sizeof *ec);
        if (!ec)
            continue;
        ec->job = job;
        snprintf(ec->integration, sizeof ec->integration, "%s", p->slug);
        snprintf(ec->name, sizeof ec->name, "%s", p->name);
        call_request req = {.connection_id = conn, .who = &job->who, .request_id = hreq_request_id(job->r)};
        ferr e = {0};
        job->pending++;
        if (calls_start_fn(a->calls, p, p->events_ref, "upcoming_events", args, &req, on_events, ec, &e) < 0) {
            job->pending--;
            free(ec);
        }
        ferr_clear(&e);
    }
    json_decref(args);
    job->pending--;
    if (job->pending == 0) {
        if (!job->replied)
            reply_context(job);
        job_release(job);
        return;
    }
    job->deadline = evtimer_new(a->base, on_deadline, job);
    struct timeval tv = {EVENTS_TIMEOUT_S, 0};
    if (!job->deadline || evtimer_add(job->deadline, &tv) < 0) {
        reply_context(job);   /* no timer: answer now; the calls finish on their own */
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

    context_job *job = calloc(1, sizeof *job);
    if (!job) {
        json_decref(connected);
        json_decref(available);
        json_decref(attention);
        ferr_set(&e, FERR_INTERNAL, "out of memory");
        hreq_reply_error(r, &e);
        ferr_clear(&e);
        return;
    }
    *job = (context_job){.a = a, .r = r, .who = *who, .connected = connected, .available = available,
                         .attention = attention, .events = json_array(), .hours = 24};
    const char *hours = hreq_query(r, "hours");
    if (hours) {
        char *end;
        long h = strtol(hours, &end, 10);
        if (*hours == 0 || *end || h < 1 || h > 24 * 14) {
            ferr_set(&e, FERR_INVALID_ARGUMENTS, "hours: a whole number from 1 to 336");
            hreq_reply_error(r, &e);
            ferr_clear(&e);
            job->replied = 1;
            job_release(job);
            return;
        }
        job->hours = (int)h;
    }
    gather_events(job);
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
