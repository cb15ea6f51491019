/* app — one running ferry: the event loop and every service on it (store,
 * providers, HTTP client, calls, HTTP server), assembled from a config.
 * `serve` and the CLI commands that run tools in-process share it. */
#ifndef FERRY_APP_H
#define FERRY_APP_H

#include <event2/event.h>

#include "agent.h"
#include "approvals.h"
#include "audit.h"
#include "calllog.h"
#include "calls.h"
#include "hclient.h"
#include "hserver.h"
#include "mcp_server.h"
#include "mcpc_registry.h"
#include "oauth.h"
#include "policy.h"
#include "providers.h"
#include "scheduler.h"
#include "store.h"
#include "syncs.h"
#include "vault.h"

typedef struct app_config {
    const char *data_dir;              /* default ./ferry-data */
    const char *listen;                /* default 127.0.0.1:8700 */
    const char **provider_dirs;        /* NULL-terminated, may be NULL */
    const char **base_urls;            /* "slug=URL", NULL-terminated, may be NULL */
    size_t max_body;                   /* request bodies; 0 → 1 MiB */
    size_t max_response;               /* upstream responses; 0 → 32 MiB */
    unsigned script_cpu_ms;            /* per call; 0 → 1000 */
    size_t script_memory;              /* per provider state; 0 → 64 MiB */
    unsigned drain_timeout_ms;         /* 0 → 10000 */
    size_t max_in_flight;              /* 0 → half the open-files limit, at most 20000 */
    const char *ca_file;               /* extra CA bundle for upstreams */
    int metrics_public;
    rate_policy rates;                 /* default limits per integration; negative: built-in defaults */
    int approval_ttl_seconds;          /* 0 → 86400 (24 h) */
    int db_busy_timeout_ms;            /* 0 → 5000 */
    const char *public_url;            /* where browsers reach ferry (OAuth redirects); NULL: http://<listen> */
    int oauth_refresh_margin_s;        /* 0 → 300 */
    int oauth_refresh_interval_s;      /* 0 → 60; negative: no refresh timer (CLI) */
    const char **mcp_allowed_origins;  /* Origins /mcp accepts besides ferry's own; NULL-terminated, may be NULL */
    size_t mcp_page_size;              /* tools per MCP tools/list page; 0 → 100 */
    /* The scheduler and syncs (docs/sync.md); 0 → their defaults. */
    int64_t sched_tick_ms;             /* 1000 */
    int64_t sync_lease_ms;             /* 60000 */
    int sync_concurrency;              /* 4 scheduled runs at once; negative: none (manual runs only) */
    int64_t sync_backoff_ms;           /* 30000: after a failed run, doubling */
    int64_t sync_retry_ms;             /* 1000: between attempts within a run, doubling */
    int sync_attempts;                 /* 4 */
    size_t chunk_size;                 /* 1000 bytes */
    long chunk_overlap;                /* 0 → 100 bytes; negative: none */
    int mcp_allow_private;             /* registered MCP server URLs may be non-public addresses */
    const char **mcp_stdio_commands;   /* programs a stdio MCP server may run, NULL-terminated; may be NULL */
    int mcp_background;                /* periodic MCP syncs and list_changed streams (serve) */
} app_config;

typedef struct app {
    app_config cfg;
    struct event_base *base;
    store *db;
    vault *vault;
    providers *providers;
    hclient *http;
    budget *budget;
    calllog *log;
    audit *audit;
    policy *policy;
    oauth *oauth;
    calls *calls;
    approvals *approvals;
    sched *sched;
    syncs *syncs;
    mcpc_registry *mcpc;               /* remote MCP servers (the MCP client) */
    agent_deps agent;
    hserver *server;                   /* only when serving */
    mcp_server *mcp;                   /* only when serving */
    struct event *sigint, *sigterm, *drain_timer;
    int draining;
    int aborted;                       /* the drain timed out */
    double drain_deadline_ms;
} app;

/* Opens everything but the HTTP server. */
int app_open(app *a, const app_config *cfg, ferr *err);
/* Starts the HTTP server and runs until a signal drains it. */
int app_serve(app *a, ferr *err);
void app_close(app *a);

/* Runs the loop until `*done` becomes non-zero (CLI use). */
void app_run_until(app *a, const int *done);

/* Registers the HTTP routes (api.c, api_connections.c, api_context.c). */
void api_register(hserver *hs);
void api_connections_register(hserver *hs);
void api_context_register(hserver *hs);
void api_governance_register(hserver *hs);
void api_oauth_register(hserver *hs);
void api_syncs_register(hserver *hs);
void api_mcp_servers_register(hserver *hs);

#endif
