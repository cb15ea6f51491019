/* mcpc_http — one HTTP exchange of ferry's MCP client with a server: a
 * POST of a JSON-RPC message answered by a JSON body or an SSE stream, or a
 * GET that opens an SSE stream. The JSON-RPC messages in the answer reach
 * the caller as they arrive (an SSE answer is parsed incrementally, never
 * buffered whole); the exchange then ends with one summary of how it went.
 *
 * Both Streamable HTTP (2026-07-28, 2025-11-25) and the HTTP+SSE transport
 * of 2024-11-05 are built from these exchanges by mcpc_session. */
#ifndef FERRY_MCPC_HTTP_H
#define FERRY_MCPC_HTTP_H

#include <jansson.h>

#include "hclient.h"

typedef struct mcpc_http mcpc_http;

typedef enum mcpc_body {
    MCPC_BODY_NONE,          /* empty (202 Accepted), or no answer at all */
    MCPC_BODY_JSON,          /* application/json */
    MCPC_BODY_SSE,           /* text/event-stream */
    MCPC_BODY_OTHER,         /* anything else */
} mcpc_body;

/* How an exchange ended; borrowed for the duration of the callback. */
typedef struct mcpc_http_end {
    long status;             /* 0 when no answer came; set with err when the body broke after the head */
    const ferr *err;         /* the transfer failed (upstream_error, upstream_timeout, egress_denied,
                                payload_too_large...), or NULL */
    mcpc_body body;
    json_t *json;            /* a JSON body that parsed, when the status was not 2xx (2xx bodies went
                                to `message`) */
    const char *bad;         /* why (part of) the body was not usable JSON-RPC, or NULL */
    const char *session_id;  /* the answer's Mcp-Session-Id, or NULL */
    const char *last_event_id; /* SSE: the last event ID ("" when none) */
    long retry_ms;           /* SSE: the stream's retry field, or -1 */
    int messages;            /* JSON-RPC messages delivered */
} mcpc_http_end;

typedef struct mcpc_http_cb {
    void *arg;
    /* One JSON-RPC message (borrowed): the JSON body of a 2xx answer (an
     * array when the server answered with a batch), or the data of each
     * SSE "message" event. */
    void (*message)(void *arg, mcpc_http *x, json_t *msg);
    /* An SSE event of another type (the legacy transport's "endpoint");
     * may be NULL. */
    void (*event)(void *arg, mcpc_http *x, const char *type, const char *data);
    /* Exactly once, unless the exchange was cancelled first. */
    void (*done)(void *arg, mcpc_http *x, const mcpc_http_end *end);
} mcpc_http_cb;

typedef struct mcpc_http_req {
    const char *method;      /* "POST" (with body), "GET" or "DELETE" */
    const char *url;
    struct curl_slist *headers;   /* stolen */
    const char *body;        /* JSON text */
    long timeout_ms;         /* < 0: none (a stream that stays open) */
    int allow_private;
    const char *label;       /* the server, for the upstream log line */
    const char *log_path;    /* the path the log line shows (NULL: the URL's); the URL's own may hold a secret */
    const char *request_id;
    size_t max_message;      /* one JSON body or SSE event; 0 → 16 MiB */
} mcpc_http_req;

/* NULL with err when the transfer could not start (no callback then). */
mcpc_http *mcpc_http_start(hclient *c, mcpc_http_req *req, const mcpc_http_cb *cb, ferr *err);
/* The answer's Mcp-Session-Id once its headers arrived (usable from the
 * message callback), or NULL. */
const char *mcpc_http_session_id(const mcpc_http *x);
/* No more callbacks; safe from inside this exchange's own callbacks. */
void mcpc_http_cancel(mcpc_http *x);

#endif
