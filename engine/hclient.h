/* hclient — the outbound HTTP client: libcurl multi driven by the libevent
 * loop through curl_multi_socket_action (socket and timer callbacks), so
 * thousands of transfers are in flight on one thread and no transfer ever
 * blocks the loop.
 *
 * A transfer is started with hclient_start and ends with exactly one call
 * of its done function, unless it is cancelled first (then never). The
 * client owns connection reuse (HTTP keep-alive, HTTP/2 multiplexing where
 * the server offers it over TLS), gzip/deflate/br decoding, a deadline per
 * request and a cap on response size. Redirects are not followed: a 3xx is
 * returned as it is, so a redirect can never take a request to a host the
 * caller did not check. Only http and https are spoken, and only to public
 * addresses unless the caller says otherwise (egress_denied). */
#ifndef FERRY_HCLIENT_H
#define FERRY_HCLIENT_H

#include <stddef.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "ferr.h"

typedef struct hclient hclient;
typedef struct hclient_xfer hclient_xfer;

typedef struct hclient_config {
    size_t max_response_bytes;   /* 0 → 32 MiB */
    long connect_timeout_ms;     /* 0 → 10 s */
    long default_timeout_ms;     /* 0 → 30 s */
    const char *ca_file;         /* extra CA bundle (self-hosted upstreams); NULL → system */
} hclient_config;

typedef struct hclient_header {
    char *name;                  /* lowercased */
    char *value;
} hclient_header;

/* Borrowed by the done function for the duration of the call only. */
typedef struct hclient_response {
    long status;
    hclient_header *headers;
    size_t nheaders;
    char *body;                  /* NUL-terminated for convenience */
    size_t body_len;
    double duration_ms;
} hclient_response;

/* `resp` is NULL exactly when `err` describes a failure: upstream_timeout,
 * payload_too_large, or upstream_error (connection refused or reset,
 * truncated body, TLS failure...). */
typedef void (*hclient_done_fn)(void *arg, hclient_response *resp, ferr *err);

/* Streaming: a chunk of the body as it arrives. `head` carries the status
 * and headers (its body is empty). Runs on the loop, never inside
 * libcurl, so it may start or cancel other transfers (not its own: return
 * -1 to stop it, and done then gets upstream_error "stopped by the
 * reader"). */
typedef int (*hclient_data_fn)(void *arg, const hclient_response *head, const char *data, size_t len);

typedef struct hclient_request {
    const char *method;          /* NULL → GET */
    const char *url;
    struct curl_slist *headers;  /* "Name: value" lines; ownership passes to the client */
    const char *body;            /* copied */
    size_t body_len;
    long timeout_ms;             /* whole-request deadline; 0 → default; < 0: none (a stream
                                    that stays open; TCP keepalive then finds dead peers) */
    /* When set, the body is streamed to on_data instead of kept (done's
     * response then has an empty body); the size cap applies to what
     * waits undelivered, not to the whole stream. */
    hclient_data_fn on_data;
    /* For the upstream log line and metrics only. */
    const char *request_id;
    const char *label;           /* e.g. the provider slug */
    const char *host;            /* metrics label; NULL → taken from the URL */
    const char *path;            /* for the log line; NULL → taken from the URL */
    /* Loopback, private, link-local and other non-public addresses are
     * refused when the host name resolves to one (no SSRF into the
     * engine's network), unless this is set: the caller declared that very
     * address, or an operator pointed the provider there. */
    int allow_private;
} hclient_request;

hclient *hclient_new(struct event_base *base, const hclient_config *cfg);
/* Cancels every transfer still in flight (their done functions are not
 * called) and frees the client. */
void hclient_free(hclient *c);

/* Starts a transfer. On success *out (may be NULL) names it for
 * hclient_cancel until its done function runs. */
int hclient_start(hclient *c, hclient_request *req, hclient_done_fn done, void *arg,
                  hclient_xfer **out, ferr *err);
void hclient_cancel(hclient_xfer *x);

/* Transfers started and not yet finished. */
size_t hclient_in_flight(const hclient *c);

#endif
