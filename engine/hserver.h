/* hserver — the HTTP server: evhttp on the loop, a small router with
 * {param} path segments, Bearer API key authentication, JSON bodies with a
 * size limit, and one structured log line plus metrics per request.
 *
 * Handlers get an hreq and answer it exactly once, now or later (a tool
 * call answers when its task finishes). Every error body has the shape of
 * API.md: {"error": {"code", "message", "details"?}}. */
#ifndef FERRY_HSERVER_H
#define FERRY_HSERVER_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "ferr.h"
#include "store.h"

typedef struct hserver hserver;
typedef struct hreq hreq;

typedef struct hserver_config {
    const char *listen;          /* "127.0.0.1:8700"; port 0 picks a free one */
    size_t max_body;             /* 0 → 1 MiB */
    int metrics_public;          /* serve /metrics to non-loopback peers too */
    int backlog;                 /* 0 → 4096 */
} hserver_config;

typedef void (*hserver_handler)(hreq *r, void *app);

enum {
    ROUTE_AUTH = 1,              /* needs a valid API key */
    ROUTE_JSON = 2,              /* body must be JSON (empty → {}) */
    ROUTE_LOOPBACK = 4,          /* loopback peers only (unless metrics_public) */
    ROUTE_RAW_BODY = 8,          /* the handler reads the body itself (hreq_body) and answers
                                    every error in its own protocol's shape: no size check,
                                    no JSON parsing, no authentication here */
};

hserver *hserver_new(struct event_base *base, store *db, const hserver_config *cfg, void *app, ferr *err);
void hserver_free(hserver *hs);
/* "127.0.0.1:41234": where it really listens. */
const char *hserver_address(const hserver *hs);

/* `pattern` is a path with {name} segments: "/v1/connections/{id}". */
int hserver_route(hserver *hs, const char *method, const char *pattern, const char *name, int flags,
                  hserver_handler handler);

/* Stops accepting connections; requests in progress continue, new ones on
 * open connections are refused with 503. */
void hserver_drain(hserver *hs);
/* Requests accepted and not yet answered, or whose answer is still being
 * written. */
size_t hserver_open_requests(const hserver *hs);

/* ---- one request ---- */
const char *hreq_method(const hreq *r);
const char *hreq_path(const hreq *r);
const char *hreq_param(const hreq *r, const char *name);      /* path {param} */
const char *hreq_query(hreq *r, const char *name);            /* ?name=value */
const char *hreq_header(const hreq *r, const char *name);
const char *hreq_request_id(const hreq *r);
const principal *hreq_principal(const hreq *r);               /* with ROUTE_AUTH */
json_t *hreq_json(const hreq *r);                             /* with ROUTE_JSON; borrowed */
/* The raw body (borrowed, not NUL-terminated) and its length. */
const char *hreq_body(hreq *r, size_t *len);
/* The server's body size limit (what ROUTE_RAW_BODY handlers enforce). */
size_t hreq_max_body(const hreq *r);
/* Resolves the Authorization header to a principal (then hreq_principal
 * returns it): what ROUTE_AUTH does, for ROUTE_RAW_BODY handlers. */
int hreq_authenticate(hreq *r, ferr *err);

/* Answers and frees the request. `body` is stolen. */
void hreq_reply_json(hreq *r, int status, json_t *body);
void hreq_reply_error(hreq *r, const ferr *e);
void hreq_reply_text(hreq *r, int status, const char *content_type, const char *text, size_t len);
void hreq_reply_evbuffer(hreq *r, int status, const char *content_type, struct evbuffer *body);
void hreq_add_header(hreq *r, const char *name, const char *value);

#endif
