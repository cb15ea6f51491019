/* mcpc_session — ferry's MCP client for one server: connecting, requests
 * and their answers, for every transport and both protocol eras.
 *
 * - Transports: Streamable HTTP (POST; JSON or SSE answers; 2025-11-25's
 *   Mcp-Session-Id, its expiry and re-initialization, its GET stream and
 *   Last-Event-ID resumption), the HTTP+SSE transport of 2024-11-05 (GET
 *   stream, "endpoint" event, POSTs to it), and stdio (mcpc_stdio).
 * - Eras: 2026-07-28 first (stateless, per-request _meta, server/discover,
 *   subscriptions/listen); a server that does not speak it (a 4xx without a
 *   modern error on HTTP; any other error or silence on stdio) falls back
 *   to the initialize handshake of 2025-11-25, and on HTTP further to the
 *   HTTP+SSE transport. A modern error (UnsupportedProtocolVersion) picks a
 *   common version instead of falling back.
 * - JSON-RPC: integer ids, one answer per request, errors, notifications,
 *   batches refused, a server's ping answered and its other requests
 *   refused with method-not-found (never in the 2026-07-28 era, where
 *   servers send none and clients send no responses).
 * - A deadline per request (30 s by default); on expiry the request is
 *   cancelled the way the transport says (closing its stream, or
 *   notifications/cancelled).
 *
 * Connecting is lazy: the first request connects, and a session that lost
 * its server (process exit, expired session, closed stream) connects again
 * on the next one. Results and errors reach the caller from the loop, never
 * from inside the call that started the request. Values of the server's
 * secrets (its headers and environment) are masked in everything that
 * comes back. */
#ifndef FERRY_MCPC_SESSION_H
#define FERRY_MCPC_SESSION_H

#include <event2/event.h>
#include <jansson.h>

#include "ferr.h"
#include "hclient.h"

typedef enum mcpc_transport {
    MCPC_TRANSPORT_AUTO,          /* a URL: Streamable HTTP, else HTTP+SSE */
    MCPC_TRANSPORT_HTTP,          /* Streamable HTTP only */
    MCPC_TRANSPORT_SSE,           /* the HTTP+SSE transport (2024-11-05) only */
    MCPC_TRANSPORT_STDIO,
} mcpc_transport;

typedef struct mcpc_session mcpc_session;
typedef struct mcpc_call mcpc_call;

/* What the session learned when it connected (borrowed). */
typedef struct mcpc_state {
    const char *transport;        /* "streamable_http", "sse" or "stdio" */
    const char *version;          /* the protocol version in use */
    int modern;                   /* 2026-07-28: stateless */
    json_t *server_info;          /* {name, version, ...} or NULL */
    json_t *capabilities;         /* the server's, or NULL */
} mcpc_state;

typedef struct mcpc_config {
    struct event_base *base;
    hclient *http;
    const char *label;            /* for logs: the server's slug */
    mcpc_transport transport;
    const char *url;              /* HTTP transports */
    const char *log_path;         /* what logs show of the URL's path (it may hold a secret); NULL: "/" */
    const char *const *headers;   /* "Name: value" lines sent with every HTTP request (may be secret) */
    const char *const *argv;      /* stdio: the command, argv[0] absolute */
    const char *const *env;       /* stdio: "NAME=value" (may be secret) */
    const char *cwd;              /* stdio: NULL for ferry's */
    const char *const *secrets;   /* values masked in what the server sends back */
    int allow_private;            /* the URL may be a non-public address (--mcp-allow-private) */
    long timeout_ms;              /* each request's deadline; 0 → 30000 */
    long grace_ms;                /* stdio: between the steps of stopping; 0 → 2000 */
    void *arg;
    /* Connected (again). Must not free the session. */
    void (*on_connected)(void *arg, const mcpc_state *st);
    /* The server's tool list changed (notifications/tools/list_changed).
     * Must not free the session. */
    void (*on_list_changed)(void *arg);
} mcpc_config;

/* Copies what it needs from cfg. NULL only when out of memory. */
mcpc_session *mcpc_session_new(const mcpc_config *cfg);
/* Frees it: requests still pending end without their callbacks (their
 * owners end them first), the process is stopped, an HTTP session is
 * closed with DELETE in the background. */
void mcpc_session_free(mcpc_session *s);

/* tools: the definitions that passed mcpc_proto_check_tool, in the
 * server's order; rejected: [{name, reason}] for the others (both
 * borrowed). err set: neither. */
typedef void (*mcpc_list_fn)(void *arg, json_t *tools, json_t *rejected, const ferr *err);
/* result: {content, structuredContent?, isError} (borrowed), or err. */
typedef void (*mcpc_call_fn)(void *arg, json_t *result, const ferr *err);

/* tools/list, every page (following nextCursor). */
mcpc_call *mcpc_session_list_tools(mcpc_session *s, mcpc_list_fn done, void *arg);
/* tools/call of the server's tool `name` (args borrowed, copied).
 * param_headers: its x-mcp-header annotations (mcpc_proto_param_headers),
 * or NULL. timeout_ms 0: the session's. */
mcpc_call *mcpc_session_call_tool(mcpc_session *s, const char *name, json_t *args, json_t *param_headers,
                                  long timeout_ms, mcpc_call_fn done, void *arg);
/* Cancels the operation (the server is told, as the transport says); its
 * callback never runs. */
void mcpc_call_cancel(mcpc_call *c);

/* Keeps a stream open for notifications/tools/list_changed while
 * connected, when the server offers them (legacy: the GET stream or the
 * shared channel; 2026-07-28: subscriptions/listen). */
void mcpc_session_listen(mcpc_session *s, int on);

/* Requests in flight (diagnostics and tests). */
size_t mcpc_session_pending(const mcpc_session *s);

/* At exit, after the last session is freed: drops the background DELETEs
 * still in flight. */
void mcpc_session_shutdown(void);

#endif
