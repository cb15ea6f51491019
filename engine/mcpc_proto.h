/* mcpc_proto — the Model Context Protocol as data, for ferry's MCP client
 * ("mcpc"): the protocol versions it speaks, JSON-RPC 2.0 messages (building
 * them, telling what arrived), and the rules on tool definitions and tool
 * results of the revisions 2026-07-28 and 2025-11-25
 * (modelcontextprotocol/modelcontextprotocol, docs/specification/). Pure
 * functions over jansson values: no I/O, nothing kept. */
#ifndef FERRY_MCPC_PROTO_H
#define FERRY_MCPC_PROTO_H

#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

/* The stateless revision: versions and capabilities travel in each
 * request's _meta, no initialize handshake, no sessions. */
#define MCPC_MODERN_VERSION "2026-07-28"
/* The newest revision with the initialize handshake ("legacy" era). */
#define MCPC_LEGACY_VERSION "2025-11-25"

/* JSON-RPC and MCP error codes ferry looks at. */
#define MCPC_METHOD_NOT_FOUND -32601
#define MCPC_INVALID_PARAMS -32602
#define MCPC_HEADER_MISMATCH -32020
#define MCPC_MISSING_CAPABILITY -32021
#define MCPC_UNSUPPORTED_VERSION -32022

/* Whether ferry speaks `version` in the legacy era: 2025-11-25 and the
 * earlier handshake revisions whose tools/list and tools/call it reads the
 * same way (2025-06-18, 2025-03-26, and 2024-11-05 of the HTTP+SSE
 * transport). */
int mcpc_proto_is_legacy(const char *version);

typedef enum mcpc_msg_kind {
    MCPC_MSG_INVALID,
    MCPC_MSG_REQUEST,        /* method and id */
    MCPC_MSG_NOTIFICATION,   /* method, no id */
    MCPC_MSG_RESULT,         /* id and result */
    MCPC_MSG_ERROR,          /* error (id may be absent or null: it could not be read) */
    MCPC_MSG_BATCH,          /* an array: batches were removed in 2025-06-18 */
} mcpc_msg_kind;

/* What kind of message `m` is; INVALID with the reason in `why`. */
mcpc_msg_kind mcpc_proto_classify(const json_t *m, char *why, size_t cap);
/* The integer id of a response, or -1 (absent, null, a string...). */
json_int_t mcpc_proto_id(const json_t *m);

/* A request (params stolen; NULL → {}). With `modern` set, params._meta
 * carries the per-request protocol fields of 2026-07-28: the version, the
 * client's identity and its (empty) capabilities. */
json_t *mcpc_proto_request(json_int_t id, const char *method, json_t *params, const char *modern);
json_t *mcpc_proto_notification(const char *method, json_t *params);
/* Answers to a server's request (id borrowed). */
json_t *mcpc_proto_result(json_t *id, json_t *result);
json_t *mcpc_proto_error(json_t *id, int code, const char *message);
/* initialize's params for a legacy version. */
json_t *mcpc_proto_initialize_params(const char *version);

/* Whether an error object is one of the errors only a 2026-07-28 server
 * sends (header mismatch, missing capability, unsupported version): such
 * a server is modern, and the client must not fall back to initialize. */
int mcpc_proto_is_modern_error(const json_t *error);
/* From an UnsupportedProtocolVersionError, the version to go on with: the
 * modern one if listed, else the newest legacy one ferry speaks, else NULL. */
const char *mcpc_proto_pick_version(const json_t *error);

/* Checks a tools/list entry: a name (1–128 characters without control
 * characters) and an inputSchema object with "type": "object". With
 * `check_headers` (Streamable HTTP, 2026-07-28) also its x-mcp-header
 * annotations. 0, or -1 with the reason. */
int mcpc_proto_check_tool(const json_t *tool, int check_headers, char *why, size_t cap);
/* The x-mcp-header annotations of a checked inputSchema:
 * [{"path": ["region"], "name": "Region", "type": "string"}, ...] (new). */
json_t *mcpc_proto_param_headers(const json_t *input_schema);
/* Adds an Mcp-Param-{Name} header for each annotated argument present
 * (null or absent: none). -1 with the reason when a value cannot be sent
 * (an integer outside ±(2^53-1)). */
int mcpc_proto_add_param_headers(struct curl_slist **h, const json_t *param_headers, const json_t *args, char *why,
                                 size_t cap);
/* A header value as the spec encodes it: as is when it is plain visible
 * ASCII without surrounding white space, else "=?base64?…?=" of its UTF-8
 * (also when the plain value looks like that sentinel). malloc'd. */
char *mcpc_proto_header_value(const char *value, size_t len);

/* Whether the tool says it does not modify its environment
 * (annotations.readOnlyHint true). Anything else is a write. */
int mcpc_proto_is_read_only(const json_t *tool);

/* A tools/call result as ferry keeps it: {content, structuredContent?,
 * isError} (new). -1 with the reason when it is not a complete
 * CallToolResult: resultType input_required (ferry declares no client
 * capabilities to fulfil it) or unknown, content missing or not an array. */
int mcpc_proto_call_result(const json_t *result, json_t **out, char *why, size_t cap);

#endif
