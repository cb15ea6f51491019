/* mcp_http — what both ends of MCP's Streamable HTTP binding share: the
 * protocol revisions ferry speaks, the MCP error codes, the `_meta` keys,
 * the values of the standard headers (OWS trimmed, the `=?base64?...?=`
 * sentinel decoded) and the `x-mcp-header` annotations of tool input
 * schemas that mirror arguments into `Mcp-Param-{Name}` headers
 * (specification 2026-07-28, basic/transports/streamable-http). */
#ifndef FERRY_MCP_HTTP_H
#define FERRY_MCP_HTTP_H

#include <stddef.h>

#include <jansson.h>

/* Revisions: the stateless one (per-request _meta), and the last one with
 * an initialize handshake. */
#define MCP_VERSION_MODERN "2026-07-28"
#define MCP_VERSION_LEGACY "2025-11-25"

/* Codes the MCP specification allocates (2026-07-28, basic/index). */
enum {
    MCP_ERR_HEADER_MISMATCH = -32020,
    MCP_ERR_MISSING_CLIENT_CAPABILITY = -32021,
    MCP_ERR_UNSUPPORTED_VERSION = -32022,
};

#define MCP_META_PROTOCOL_VERSION "io.modelcontextprotocol/protocolVersion"
#define MCP_META_CLIENT_INFO "io.modelcontextprotocol/clientInfo"
#define MCP_META_CLIENT_CAPABILITIES "io.modelcontextprotocol/clientCapabilities"
#define MCP_META_SERVER_INFO "io.modelcontextprotocol/serverInfo"

/* A header value as its sender meant it: optional whitespace around it
 * removed, and a `=?base64?...?=` value decoded. NULL when it is not a
 * valid one: a character outside visible ASCII, space and tab, or a
 * sentinel whose Base64 is malformed (bad alphabet or padding). The caller
 * frees the result; *len (may be NULL) is its length. */
char *mcp_header_decode(const char *raw, size_t *len);

typedef enum mcp_param_type { MCP_PARAM_STRING, MCP_PARAM_INTEGER, MCP_PARAM_BOOLEAN } mcp_param_type;

/* One argument a tool mirrors into a header. */
typedef struct mcp_param_header {
    char *name;            /* the x-mcp-header value: the header is Mcp-Param-{name} */
    char **path;           /* property names from the schema root to the argument */
    size_t depth;
    mcp_param_type type;
} mcp_param_header;

/* Reads the x-mcp-header annotations of a tool's input schema and checks
 * the specification's constraints (a non-empty token, unique regardless of
 * case, on a string, integer or boolean property reachable from the root
 * through `properties` alone). 0 with *out and *n (both zero when there are
 * none), or -1 with the first violation in `why`. */
int mcp_param_headers_read(const json_t *input_schema, mcp_param_header **out, size_t *n, char *why, size_t why_len);
void mcp_param_headers_free(mcp_param_header *h, size_t n);

/* The argument a declaration mirrors (borrowed), or NULL when the call's
 * arguments have none there. */
json_t *mcp_param_value(const mcp_param_header *h, const json_t *arguments);

/* Whether a decoded header value carries `value` as the specification
 * converts it (strings as they are, integers compared as numbers,
 * booleans as "true" / "false"). */
int mcp_param_matches(const mcp_param_header *h, const char *header_value, size_t len, const json_t *value);

#endif
