/* jsonrpc — JSON-RPC 2.0 messages (https://www.jsonrpc.org/specification):
 * reading one message off the wire and telling what it is (request,
 * notification, response) or exactly why it is not one, and building the
 * messages ferry sends. It knows nothing of MCP; the MCP server (and the
 * MCP client) narrow it where MCP does.
 *
 * IDs are strings or integers: MCP forbids null and every peer we speak to
 * uses these two, so a null, fractional or structured id is an invalid
 * request here rather than something to carry around. */
#ifndef FERRY_JSONRPC_H
#define FERRY_JSONRPC_H

#include <stddef.h>

#include <jansson.h>

/* The codes JSON-RPC 2.0 defines. */
enum {
    JSONRPC_PARSE_ERROR = -32700,
    JSONRPC_INVALID_REQUEST = -32600,
    JSONRPC_METHOD_NOT_FOUND = -32601,
    JSONRPC_INVALID_PARAMS = -32602,
    JSONRPC_INTERNAL_ERROR = -32603,
};

typedef enum jsonrpc_kind {
    JSONRPC_REQUEST,        /* method and id */
    JSONRPC_NOTIFICATION,   /* method, no id */
    JSONRPC_RESPONSE,       /* id and exactly one of result / error */
} jsonrpc_kind;

typedef struct jsonrpc_msg {
    jsonrpc_kind kind;
    json_t *doc;            /* the whole message (owned) */
    json_t *id;             /* borrowed from doc; NULL for a notification */
    const char *method;     /* borrowed; NULL for a response */
    json_t *params;         /* borrowed; NULL when absent (an object or an array) */
    json_t *result;         /* borrowed; responses only */
    json_t *error;          /* borrowed; responses only: {code, message, data?} */
} jsonrpc_msg;

/* Why a text is not a message: a JSON-RPC error code and message, and the
 * id when one could be read (borrowed from `doc`, which the caller frees
 * with jsonrpc_error_clear), so the error answer can carry it. */
typedef struct jsonrpc_error {
    int code;
    char message[256];
    int is_batch;           /* the text was an array: a batch */
    json_t *doc;            /* owned, or NULL */
    json_t *id;             /* borrowed from doc, or NULL */
} jsonrpc_error;

/* Reads one message from `text`. 0 and *out (release with
 * jsonrpc_msg_clear), or -1 and *err: PARSE_ERROR for text that is not
 * JSON, INVALID_REQUEST for JSON that is not a message (batches included:
 * err->is_batch says so, for protocols that refuse them). */
int jsonrpc_parse(const char *text, size_t len, jsonrpc_msg *out, jsonrpc_error *err);
void jsonrpc_msg_clear(jsonrpc_msg *m);
void jsonrpc_error_clear(jsonrpc_error *e);

/* Whether `id` is one this module accepts (a string or an integer). */
int jsonrpc_id_valid(const json_t *id);

/* Messages to send; each returns a new reference and steals the json_t
 * arguments it documents as stolen (result, params, data), never `id`. */
json_t *jsonrpc_result(json_t *id, json_t *result);
/* `id` may be NULL: the answer to a message whose id could not be read
 * has none. `data` may be NULL. */
json_t *jsonrpc_error_response(json_t *id, int code, const char *message, json_t *data);
json_t *jsonrpc_request(json_t *id, const char *method, json_t *params);
json_t *jsonrpc_notification(const char *method, json_t *params);

#endif
