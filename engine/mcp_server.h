/* mcp_server — ferry itself as an MCP server at /mcp (Streamable HTTP), so
 * any MCP-capable agent can use a user's tools.
 *
 * It speaks both revisions on one endpoint, chosen per request: 2026-07-28
 * (stateless; version, capabilities and identity in every request's
 * `_meta`; `server/discover`) and 2025-11-25 (the `initialize` handshake;
 * no session is issued, so every request stands alone there too). The
 * caller is the Bearer API key of the REST API; tools/list and tools/call
 * go through agent (the permission filter, rate limits, approvals for
 * writes, the audit), exactly as GET /v1/tools and POST /v1/tools/call do.
 * Every answer is one JSON object (no SSE): a tool call that waits for its
 * upstream answers when the call ends, the loop stays free meanwhile.
 *
 * Each tool's MCP description is serialized once, when the server starts
 * (providers do not change while ferry runs); a tools/list filters and
 * concatenates them. See docs/mcp.md. */
#ifndef FERRY_MCP_SERVER_H
#define FERRY_MCP_SERVER_H

#include <stddef.h>

#include "agent.h"
#include "hserver.h"

typedef struct mcp_server mcp_server;

typedef struct mcp_server_config {
    const char *const *allowed_origins;  /* extra Origin values to accept; NULL-terminated, may be NULL */
    const char *listen_address;          /* where ferry listens ("127.0.0.1:8700"): its own origins */
    const char *public_url;              /* where browsers reach ferry (its origin is accepted); may be NULL */
    size_t page_size;                    /* tools per tools/list page; 0 → 100 */
} mcp_server_config;

/* -1 with err for an allowed origin that is not scheme://host[:port]. */
mcp_server *mcp_server_new(const agent_deps *deps, const mcp_server_config *cfg, ferr *err);
void mcp_server_free(mcp_server *m);

/* The /mcp routes; their handlers find the server as app->mcp. */
void mcp_server_register(hserver *hs);

#endif
