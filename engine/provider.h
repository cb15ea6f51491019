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

typedef struct provider_tool {
    provider *p;
    char *name;            /* as declared: "search" */
    char *full_name;       /* what agents call: "<slug>__search" */
    char *description;
    int is_write;          /* access = "write" */
    json_t *input;         /* JSON Schema of the arguments */
    schema *input_schema;  /* compiled from input */
    json_t *output;        /* optional JSON Schema of the result, or NULL */
    int run_ref;           /* registry reference to run(ctx, args) */
} provider_tool;

typedef struct provider_sync {
    char *name;
    char *every;           /* "15m" or a 5-field cron expression */
    char *category;
    int run_ref;
} provider_sync;

struct provider {
    char *source;          /* where it came from: "providers/x.lua" or a path */
    char *slug, *name, *category, *description;
    char *base_url;        /* NULL when the provider has none */
    char **hosts;
    size_t nhosts;
    char *auth_type;       /* none, api_key, basic, oauth2 */
    json_t *auth;          /* the whole auth declaration (no secrets: it is code) */
    char **data_categories;
    size_t ncategories;
    provider_tool *tools;
    size_t ntools;
    provider_sync *syncs;
    size_t nsyncs;
    lhost *host;           /* the provider's Lua state */
    int table_ref;
};

/* Loads `src` (named `source` in messages and tracebacks). On success
 * returns 0 and *out; otherwise -1 and every problem appended to
 * `problems` (a JSON array of strings). */
int provider_load(const char *source, const char *src, size_t len, const lhost_limits *limits,
                  provider **out, json_t *problems);
void provider_free(provider *p);

/* Points the provider at another base URL (a test server, a self-hosted
 * instance) and allows that URL's host. */
int provider_override_base_url(provider *p, const char *url, ferr *err);

/* Whether `host` (lowercase) is one the provider declared. */
int provider_allows_host(const provider *p, const char *host);

/* A tool by its declared name, or NULL. */
provider_tool *provider_tool_find(provider *p, const char *name);

#endif
