/* mcpc_registry — remote MCP servers as integrations.
 *
 * A team admin registers a server (a URL, or a command the operator
 * allowed); its URL, headers, bearer token and environment are sealed in
 * the vault under the server's own data key. The server starts pending;
 * its tools are discovered (tools/list, every page) and kept in mcp_tools,
 * each pending too. An admin approves the server and each tool; only then
 * does the agent see them, as tools named "<slug>__<tool>" of a provider
 * the registry puts into the provider index, so discovery, data-category
 * permissions, rate limits, approvals for writes (a tool that does not say
 * readOnlyHint is a write) and the audit apply as to any other tool. A
 * tool whose definition changes on a later sync goes back to pending.
 *
 * Syncs run at registration, on request, on notifications/tools/list_changed
 * and periodically: an approved server's job mcp:<id>:tools in the
 * scheduler, every sync_interval_s, at most once at a time across the
 * ferry processes on one database; each is audited
 * (mcp.sync) and fails closed like any external call. Calls run through
 * the provider runner interface: calls.c audits them, this module records
 * each in mcp_tool_executions with a distinct status per failure (timeout,
 * transport, protocol, JSON-RPC error, the tool's isError). */
#ifndef FERRY_MCPC_REGISTRY_H
#define FERRY_MCPC_REGISTRY_H

#include <event2/event.h>
#include <jansson.h>

#include "audit.h"
#include "hclient.h"
#include "providers.h"
#include "scheduler.h"
#include "store.h"
#include "vault.h"

typedef struct mcpc_registry mcpc_registry;

typedef struct mcpc_registry_config {
    struct event_base *base;
    store *db;
    vault *vault;
    hclient *http;
    providers *providers;
    audit *audit;                      /* may be NULL (tests) */
    int allow_private;                 /* --mcp-allow-private: URLs may be non-public addresses */
    const char *const *stdio_commands; /* --mcp-stdio-command: programs a registration may run */
    int background;                    /* periodic syncs and list_changed streams (serve only) */
    const char *data_dir;              /* stdio servers run in <data>/mcp/<id> */
} mcpc_registry_config;

/* Loads every registered server and offers the approved ones' tools. */
mcpc_registry *mcpc_registry_new(const mcpc_registry_config *cfg, ferr *err);
/* Ends syncs (waiting API requests get `internal`), sessions and server
 * processes; calls must have ended first (calls_free). */
void mcpc_registry_free(mcpc_registry *r);

/* Registers the "mcp" job kind and keeps a job for each approved server
 * with a sync interval (serve). */
int mcpc_registry_schedule(mcpc_registry *r, sched *s, ferr *err);

/* The outcome of a registration or sync: {server, tools, rejected?,
 * changes?} as the API shows it (new), or err. */
typedef void (*mcpc_registry_fn)(void *arg, json_t *out, const ferr *err);

/* POST /v1/mcp-servers: `spec` as docs/mcp.md describes. Problems with the
 * spec return -1 with err (nothing stored); otherwise done runs once the
 * first sync has ended (201 even when it failed: the server is stored,
 * with last_error). */
int mcpc_registry_register(mcpc_registry *r, const principal *who, json_t *spec, const char *request_id,
                           mcpc_registry_fn done, void *arg, ferr *err);
/* POST /v1/mcp-servers/{id}/sync. */
int mcpc_registry_sync(mcpc_registry *r, const principal *who, const char *id, const char *request_id,
                       mcpc_registry_fn done, void *arg, ferr *err);

/* The rest answer at once: new JSON, or NULL with err (not_found for an
 * unknown id or another team's). */
json_t *mcpc_registry_list(mcpc_registry *r, const principal *who, ferr *err);
json_t *mcpc_registry_get(mcpc_registry *r, const principal *who, const char *id, ferr *err);
json_t *mcpc_registry_tools(mcpc_registry *r, const principal *who, const char *id, ferr *err);
json_t *mcpc_registry_executions(mcpc_registry *r, const principal *who, const char *id, int limit, ferr *err);
json_t *mcpc_registry_decide_server(mcpc_registry *r, const principal *who, const char *id, int approve,
                                    const char *reason, const char *request_id, ferr *err);
/* access: NULL keeps what the annotations gave, else "read" or "write". */
json_t *mcpc_registry_decide_tool(mcpc_registry *r, const principal *who, const char *tool_id, int approve,
                                  const char *access, const char *reason, const char *request_id, ferr *err);
/* PATCH /v1/mcp-servers/{id}: settings and credentials. */
json_t *mcpc_registry_update(mcpc_registry *r, const principal *who, const char *id, json_t *spec,
                             const char *request_id, ferr *err);
int mcpc_registry_delete(mcpc_registry *r, const principal *who, const char *id, const char *request_id, ferr *err);

#endif
