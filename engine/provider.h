/* provider — one provider script: loaded into its own sandboxed Lua state,
 * checked against the contract in API.md, and described as plain C data
 * (tools with compiled input schemas, syncs, hosts, auth).
 *
 * Loading never trusts the script: the chunk runs under the sandbox's CPU
 * and memory caps, every field is read raw (no metamethods), and every
 * problem is reported, not only the first. */
#ifndef FERRY_PROVIDER_H
#define FERRY_PROVIDER_H

#include <stddef.h>

#include <jansson.h>

#include "lhost.h"
#include "schema.h"

typedef struct provider provider;
struct principal;

typedef struct provider_tool {
    provider *p;
    char *name;            /* as declared: "search" */
    char *full_name;       /* what agents call: "<slug>__search" */
    char *description;
    int is_write;          /* access = "write" */
    json_t *input;         /* JSON Schema of the arguments */
    schema *input_schema;  /* compiled from input */
    json_t *output;        /* optional JSON Schema of the result, or NULL */
    char *data_category;   /* the one category it touches, or NULL: all the provider's */
    char *summary;         /* "Create contact {email}": how an approval describes a call; or NULL */
    int run_ref;           /* registry reference to run(ctx, args); LUA_NOREF with a runner */
    char *remote_name;     /* a runner's tool: its name where it runs (the MCP server's), or NULL */
    json_t *remote;        /* what the runner needs to call it (owned), or NULL */
} provider_tool;

/* A provider whose tools run in C instead of a Lua state: a remote MCP
 * server (mcpc_registry). calls runs its tools through start/cancel with
 * the same guarantees as a Lua task (audit first, one end per call). */
typedef struct provider_run provider_run;
typedef void (*provider_run_done_fn)(void *arg, json_t *result, ferr *err);
typedef struct provider_run_request {
    provider *p;
    provider_tool *tool;
    json_t *arguments;               /* validated; borrowed */
    const struct principal *who;     /* may be NULL (local CLI) */
    const char *request_id;
    const char *approval_id;         /* may be NULL */
} provider_run_request;
typedef struct provider_runner {
    const char *method;    /* what the registry says of how it connects: "mcp" */
    void *ctx;
    /* done runs exactly once, later (never from inside start), unless
     * cancelled. -1 with err when it cannot start: then no done. */
    int (*start)(void *ctx, const provider_run_request *req, provider_run_done_fn done, void *arg,
                 provider_run **out, ferr *err);
    void (*cancel)(void *ctx, provider_run *run);
} provider_runner;

typedef struct provider_sync {
    char *name;
    char *every;           /* "15m" or a 5-field cron expression */
    char *category;        /* doc_category of its records */
    char *description;     /* may be NULL */
    int run_ref;
} provider_sync;

/* Where the core puts a connection's credential (the script never sees it). */
typedef enum auth_kind { AUTH_NONE, AUTH_API_KEY, AUTH_BASIC, AUTH_OAUTH2 } auth_kind;
typedef enum auth_place { AUTH_IN_HEADER, AUTH_IN_QUERY, AUTH_IN_BODY } auth_place;

#define PROVIDER_MAX_TOKEN_FIELDS 4

typedef struct provider_auth {
    auth_kind kind;
    char *field;           /* api_key: the credential's field name (default "api_key") */
    auth_place place;      /* api_key: header, query parameter or JSON body field */
    char *name;            /* that header / parameter / field name */
    char *prefix;          /* e.g. "Bearer "; may be NULL */
    char **settings;       /* non-secret per-connection settings (ctx.connection.settings) */
    size_t nsettings;
    char *instructions;    /* how a user obtains the credential; may be NULL */
    /* oauth2 */
    char *authorize_url;
    char *token_url;
    char *revoke_url;      /* may be NULL */
    char *scopes;          /* joined with auth.scope_separator (default a space) */
    json_t *extra_authorize_params;   /* {name: value} or NULL */
    json_t *callback_settings;        /* {setting: callback query parameter} or NULL (QuickBooks' realmId) */
    /* More tokens of the token answer kept as secret fields, {field: "dotted.path"} or NULL (Slack's
     * user token: {user_token = "authed_user.access_token"}); a request picks one with `token`. */
    json_t *token_fields;
    int client_auth_body;  /* client credentials in the form body, not HTTP basic */
    int client_credentials;/* grant = "client_credentials": server to server, no user */
} provider_auth;

/* The upstream API's own rate limit (rate_limits = {requests, per, tiers}). */
typedef struct provider_budget {
    char *name;            /* a tier's name; NULL for the default */
    double rate;           /* requests per second */
    double burst;          /* requests at once */
} provider_budget;

struct provider {
    char *source;          /* where it came from: "providers/x.lua" or a path */
    char *slug, *name, *category, *description;
    char *base_url;        /* NULL when the provider has none */
    char **hosts;
    size_t nhosts;
    char **operator_hosts; /* hosts an operator pointed the provider at (--base-url) */
    size_t noperator_hosts;
    char *auth_type;       /* none, api_key, basic, oauth2 */
    json_t *auth;          /* the whole auth declaration (no secrets: it is code) */
    provider_auth authn;   /* the same, parsed */
    int check_ref;         /* check(ctx) verifying a new connection, or LUA_NOREF */
    int events_ref;        /* upcoming_events(ctx, {from, to, limit}) for /v1/context, or LUA_NOREF */
    int rotate_every_days; /* the vendor's advice for rotating the credential; 0: none */
    provider_budget budget;     /* rate 0: none declared */
    provider_budget *tiers;     /* named budgets a request picks with tier = "..." */
    size_t ntiers;
    char **data_categories;
    size_t ncategories;
    provider_tool *tools;
    size_t ntools;
    provider_sync *syncs;
    size_t nsyncs;
    lhost *host;           /* the provider's Lua state; NULL with a runner */
    int table_ref;
    const provider_runner *runner;   /* NULL for Lua providers */
    int64_t team_id;       /* 0: every team's; else only that team sees it (its MCP server) */
    int refs;              /* the index's reference plus one per call running its tools */
};

/* Loads `src` (named `source` in messages and tracebacks). On success
 * returns 0 and *out; otherwise -1 and every problem appended to
 * `problems` (a JSON array of strings). */
int provider_load(const char *source, const char *src, size_t len, const lhost_limits *limits,
                  provider **out, json_t *problems);
void provider_free(provider *p);
/* Calls hold a reference while they run, so a provider taken out of the
 * index (an MCP server resynced or deleted) lives until they end. */
void provider_ref(provider *p);
void provider_unref(provider *p);

/* Points the provider at another base URL (a test server, a self-hosted
 * instance) and allows that URL's host. */
int provider_override_base_url(provider *p, const char *url, ferr *err);

/* Whether `host` (lowercase) is one the provider declared. */
int provider_allows_host(const provider *p, const char *host);
/* Whether a declared host may be a non-public address: an IP address the
 * provider wrote itself, or a host an operator gave with --base-url. A
 * declared name that resolves to a private address is refused otherwise. */
int provider_allows_private(const provider *p, const char *host);

/* The budget a request uses: the named tier, else the default (rate 0 when
 * none is declared). NULL when `tier` names no declared tier. */
const provider_budget *provider_budget_for(const provider *p, const char *tier);

/* A tool by its declared name, or NULL. */
provider_tool *provider_tool_find(provider *p, const char *name);

#endif
