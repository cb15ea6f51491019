/* api_syncs.c — syncs and search (docs/sync.md):
 *   GET  /v1/syncs[?connection_id=]                    the sync jobs of the caller's connections
 *   GET  /v1/syncs/{connection_id}/{sync}[?limit=]     one, with its latest runs
 *   POST /v1/syncs/{connection_id}/{sync}/run          run it now (202 with the run)
 *   GET  /v1/search?q=&category=&integration=&limit=   ranked records the caller may see */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "search.h"
#include "syncs.h"

static void reply_or_fail(hreq *r, int status, json_t *body, ferr *e)
{
    if (body)
        hreq_reply_json(r, status, body);
    else
        hreq_reply_error(r, e);
    ferr_clear(e);
}

/* A positive integer query parameter, `def` when absent; -1 when bad. */
static int int_param(hreq *r, const char *name, int def, int max)
{
    const char *v = hreq_query(r, name);
    if (!v)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    return *v && !*end && n >= 1 && n <= max ? (int)n : -1;
}

static void get_syncs(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    json_t *body = syncs_list(a->syncs, hreq_principal(r), hreq_query(r, "connection_id"), &e);
    reply_or_fail(r, 200, body, &e);
}

static void get_sync(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    int limit = int_param(r, "limit", 20, 200);
    if (limit < 0) {
        ferr_set(&e, FERR_BAD_REQUEST, "limit must be an integer from 1 to 200");
        reply_or_fail(r, 0, NULL, &e);
        return;
    }
    json_t *body = syncs_get(a->syncs, hreq_principal(r), hreq_param(r, "connection_id"), hreq_param(r, "sync"),
                             limit, &e);
    reply_or_fail(r, 200, body, &e);
}

static void post_sync_run(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    json_t *body = NULL;
    syncs_run_now(a->syncs, hreq_principal(r), hreq_param(r, "connection_id"), hreq_param(r, "sync"), &body, &e);
    reply_or_fail(r, 202, body, &e);
}

static void get_search(hreq *r, void *arg)
{
    app *a = arg;
    ferr e = {0};
    int limit = int_param(r, "limit", 10, SEARCH_MAX_LIMIT);
    if (limit < 0) {
        ferr_set(&e, FERR_BAD_REQUEST, "limit must be an integer from 1 to %d", SEARCH_MAX_LIMIT);
        reply_or_fail(r, 0, NULL, &e);
        return;
    }
    const char *category = hreq_query(r, "category"), *integration = hreq_query(r, "integration");
    search_request req = {.q = hreq_query(r, "q"), .category = category && *category ? category : NULL,
                          .integration = integration && *integration ? integration : NULL, .limit = limit};
    json_t *body = search_run(a->db, a->policy, a->providers, hreq_principal(r), &req, &e);
    reply_or_fail(r, 200, body, &e);
}

void api_syncs_register(hserver *hs)
{
    hserver_route(hs, "GET", "/v1/syncs", "syncs", ROUTE_AUTH, get_syncs);
    hserver_route(hs, "GET", "/v1/syncs/{connection_id}/{sync}", "sync", ROUTE_AUTH, get_sync);
    hserver_route(hs, "POST", "/v1/syncs/{connection_id}/{sync}/run", "sync_run", ROUTE_AUTH | ROUTE_JSON,
                  post_sync_run);
    hserver_route(hs, "GET", "/v1/search", "search", ROUTE_AUTH, get_search);
}
