/* providers — the set of loaded providers: the bundled ones built into the
 * binary plus every *.lua in the folders given with --providers, and the
 * index from agent-facing tool names ("<slug>__<tool>") to tools.
 *
 * A provider that fails to load is reported (with every problem) and
 * skipped; the others load. */
#ifndef FERRY_PROVIDERS_H
#define FERRY_PROVIDERS_H

#include <jansson.h>

#include "provider.h"
#include "store.h"

typedef struct providers providers;

typedef struct providers_options {
    const char *const *dirs;        /* NULL-terminated; may be NULL */
    int skip_bundled;               /* for tests that want only their own */
    lhost_limits limits;
    const char *const *base_urls;   /* "slug=URL" overrides, NULL-terminated; may be NULL */
} providers_options;

/* Loads everything. Broken providers are logged and listed in
 * providers_broken(); the call fails only for unusable options (a missing
 * folder, a malformed override). */
int providers_load(const providers_options *opts, providers **out, ferr *err);
void providers_free(providers *ps);

size_t providers_count(const providers *ps);
provider *providers_at(const providers *ps, size_t i);
provider *providers_find(const providers *ps, const char *slug);
/* A tool by its agent-facing name. */
provider_tool *providers_find_tool(const providers *ps, const char *full_name);
/* Whether `who` may know of `p` at all: a team's own providers (its MCP
 * servers) exist for that team only; who NULL is the operator. */
int providers_visible(const provider *p, const principal *who);
/* providers_find_tool, NULL when `who` may not know of it. */
provider_tool *providers_find_tool_for(const providers *ps, const char *full_name, const principal *who);

/* Providers that come and go at run time (remote MCP servers): put adds
 * `p` (taking the caller's reference) or replaces the provider with its
 * slug, which lives on until the calls using it end; remove takes one out.
 * -1 when the slug belongs to a provider that was loaded from a script. */
int providers_put(providers *ps, provider *p, ferr *err);
void providers_remove(providers *ps, const char *slug);
/* [{"source":..., "problems":[...]}] for providers that failed (borrowed). */
json_t *providers_broken(const providers *ps);

/* Updates the Lua memory gauge of every provider. */
void providers_update_metrics(const providers *ps);

#endif
