/*
 * fault_server: a deliberately misbehaving HTTP/1.1 upstream for ferry's
 * tests and benchmarks.
 *
 * Each route reproduces one thing a real upstream can do to an HTTP client:
 * answer late or never, answer an error status with Retry-After, send broken
 * JSON, send a body too large to buffer, cut a body short, reset the
 * connection, compress the body.  It exists so ferry's HTTP client meets
 * every bad behaviour on purpose.  It is fault injection, not a correctness
 * oracle: it implements what those tests need and nothing more.
 *
 *   fault_server [--listen 127.0.0.1:0] [--backlog N]
 *
 * Binds (port 0 picks a free port), prints exactly one line
 * "listening HOST:PORT" on stdout, serves until SIGINT or SIGTERM, then frees
 * everything and exits 0.
 *
 * Routes (any method):
 *   /ok                 200 {"ok":true}
 *   /json?n=N           200 {"items":[{"id":1,"name":"item 1"},...],"next_cursor":null}
 *   /echo               200 the request as JSON (method, path, query, headers, body)
 *   /delay?ms=N         200 {"ok":true,"delayed_ms":N} after N ms, on a timer
 *   /hang               never answers; freed when the client closes
 *   /status/CODE        CODE {"error":"status CODE"}; 429 and 503 carry
 *                       Retry-After from ?retry_after= (default 2)
 *   /invalid-json       200 application/json, a body that does not parse
 *   /huge?mb=N          200, a JSON object of exactly N MiB, streamed with a
 *                       Content-Length (or chunked with &chunked=1)
 *   /truncated          promises 1000 bytes, sends 11, closes (curl error 18)
 *   /reset              RST without any response (curl error 56)
 *   /gzip               a JSON document, gzip-encoded when Accept-Encoding
 *                       allows gzip, plain otherwise
 *   /count              {"requests":N}: requests served, /count* excluded
 *   /count/reset        sets that number back to 0
 *   /dataset/...        a paged record set with a change feed, mutations and
 *                       injected 429/503/500/slow answers (dataset.c)
 *   /slack/...          a small Slack workspace: auth.test, conversations.list
 *                       and .history, with injected 429s, hangs and new posts (slack.c)
 *   anything else       404 {"error":"not found"}
 *
 * Replies that are not sent from the request callback (/delay, /hang, /huge)
 * are "pending" records on one list, so shutdown can free them.  evhttp owns
 * every request still attached to a connection; a pending record owns its
 * request only once evhttp has detached it (the connection died first).
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>
#include <zlib.h>

#include "dataset.h"
#include "slack.h"

#define MIB (1024u * 1024u)
#define HUGE_PAD_BLOCK (64u * 1024u) /* one shared block of 'x' */
#define HUGE_CHUNK (256u * 1024u)    /* bytes queued per write round */

enum pending_kind { PENDING_DELAY, PENDING_HANG, PENDING_HUGE };

struct fault_server;

/* A reply still to come.  Owned by the server's pending list. */
struct pending {
    struct fault_server *srv;
    enum pending_kind kind;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *ev;      /* DELAY: its timer; HANG: the close watcher */
    long delay_ms;         /* DELAY */
    uint64_t huge_total;   /* HUGE: body length */
    uint64_t huge_sent;    /* HUGE: body bytes queued so far */
    struct pending *prev, *next;
};

struct fault_server {
    struct event_base *base;
    struct evhttp *http;
    struct event *sigint, *sigterm;
    struct pending *pending;  /* head of the doubly linked list */
    uint64_t requests;        /* what /count reports */
    char *pad;                /* HUGE_PAD_BLOCK bytes of 'x' for /huge */
    char *gzip_plain;         /* /gzip's document, plain */
    size_t gzip_plain_len;
    unsigned char *gzip_body; /* the same document, gzip-encoded */
    size_t gzip_body_len;
    struct datasets *datasets; /* /dataset/ */
    struct slack_ws *slack;    /* /slack/ */
};

/* ------------------------------------------------------------------------ */
/* Pending replies                                                           */

static struct pending *pending_new(struct fault_server *srv, enum pending_kind kind,
                                   struct evhttp_request *req)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->srv = srv;
    p->kind = kind;
    p->req = req;
    p->evcon = evhttp_request_get_connection(req);
    p->next = srv->pending;
    if (srv->pending != NULL)
        srv->pending->prev = p;
    srv->pending = p;
    return p;
}

/* Unlinks and frees p and its event; never touches p->req. */
static void pending_free(struct pending *p)
{
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        p->srv->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    if (p->ev != NULL)
        event_free(p->ev);
    free(p);
}

/* ------------------------------------------------------------------------ */
/* Reply helpers                                                             */

static void reply_body(struct evhttp_request *req, int code, const char *type,
                       const void *body, size_t len)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    evhttp_send_reply(req, code, NULL, NULL);
}

static void reply_json(struct evhttp_request *req, int code, const char *body)
{
    reply_body(req, code, "application/json", body, strlen(body));
}

static int dump_to_evbuffer(const char *buf, size_t size, void *data)
{
    return evbuffer_add(data, buf, size);
}

/* Sends doc (consumed) as the JSON body. */
static void reply_doc(struct evhttp_request *req, int code, json_t *doc)
{
    if (doc == NULL) {
        reply_json(req, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    json_dump_callback(doc, dump_to_evbuffer, evhttp_request_get_output_buffer(req),
                       JSON_COMPACT);
    json_decref(doc);
    evhttp_send_reply(req, code, NULL, NULL);
}

static void reply_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_doc(req, code, json_pack("{s:s}", "error", msg));
}

/* ------------------------------------------------------------------------ */
/* Query parameters                                                          */

/* Parses req's query string into q (empty when there is none).  Returns 0,
 * or -1 after answering 400.  The caller clears q with evhttp_clear_headers. */
static int query_parse(struct evhttp_request *req, struct evkeyvalq *q)
{
    const char *s = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));

    TAILQ_INIT(q);
    if (s == NULL || evhttp_parse_query_str(s, q) == 0)
        return 0;
    reply_error(req, 400, "malformed query string");
    return -1;
}

/* Reads integer parameter key into *out (def when absent).  Returns 0, or
 * -1 after answering 400 when it is not an integer within [min, max]. */
static int query_long(struct evhttp_request *req, struct evkeyvalq *q, const char *key,
                      long def, long min, long max, long *out)
{
    const char *s = evhttp_find_header(q, key);
    char *end;
    long v;

    if (s == NULL) {
        *out = def;
        return 0;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        reply_error(req, 400, "%s must be an integer in [%ld, %ld]", key, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* /ok, /invalid-json, /count                                                */

static void route_ok(struct fault_server *srv, struct evhttp_request *req)
{
    (void)srv;
    reply_json(req, 200, "{\"ok\":true}");
}

static void route_invalid_json(struct fault_server *srv, struct evhttp_request *req)
{
    (void)srv;
    reply_json(req, 200, "{\"a\": [1, 2,");
}

static void route_count(struct fault_server *srv, struct evhttp_request *req)
{
    char body[64];
    snprintf(body, sizeof(body), "{\"requests\":%llu}", (unsigned long long)srv->requests);
    reply_json(req, 200, body);
}

static void route_count_reset(struct fault_server *srv, struct evhttp_request *req)
{
    srv->requests = 0;
    reply_json(req, 200, "{\"requests\":0}");
}

/* ------------------------------------------------------------------------ */
/* /redirect?to=URL[&code=302]: a redirect anywhere, for egress tests        */

static void route_redirect(struct fault_server *srv, struct evhttp_request *req)
{
    struct evkeyvalq q;
    (void)srv;
    if (query_parse(req, &q) != 0)
        return;
    const char *to = evhttp_find_header(&q, "to");
    const char *code_text = evhttp_find_header(&q, "code");
    int code = code_text ? atoi(code_text) : 302;
    if (!to || code < 300 || code > 399) {
        evhttp_clear_headers(&q);
        reply_error(req, 400, "want ?to=URL and an optional 3xx code");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", to);
    evhttp_clear_headers(&q);
    reply_json(req, code, "{\"redirect\":true}");
}

/* ------------------------------------------------------------------------ */
/* /json?n=N                                                                 */

static json_t *items_doc(long n)
{
    json_t *items = json_array();
    json_t *doc;
    char name[32];

    if (items == NULL)
        return NULL;
    for (long i = 1; i <= n; i++) {
        snprintf(name, sizeof(name), "item %ld", i);
        if (json_array_append_new(items, json_pack("{s:I,s:s}", "id", (json_int_t)i,
                                                   "name", name)) != 0) {
            json_decref(items);
            return NULL;
        }
    }
    doc = json_pack("{s:o,s:n}", "items", items, "next_cursor");
    return doc;
}

static void route_json(struct fault_server *srv, struct evhttp_request *req)
{
    struct evkeyvalq q;
    long n;

    (void)srv;
    if (query_parse(req, &q) != 0)
        return;
    if (query_long(req, &q, "n", 10, 0, 1000000, &n) == 0)
        reply_doc(req, 200, items_doc(n));
    evhttp_clear_headers(&q);
}

/* ------------------------------------------------------------------------ */
/* /echo                                                                     */

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "UNKNOWN";
}

/* Header names are lowercased; repeated headers are joined with ", ". */
static json_t *headers_object(struct evkeyvalq *headers)
{
    json_t *obj = json_object();
    struct evkeyval *h;
    char name[256];

    if (obj == NULL)
        return NULL;
    TAILQ_FOREACH(h, headers, next) {
        size_t i;
        for (i = 0; h->key[i] != '\0' && i < sizeof(name) - 1; i++)
            name[i] = (char)((h->key[i] >= 'A' && h->key[i] <= 'Z') ? h->key[i] + 32 : h->key[i]);
        name[i] = '\0';

        json_t *prev = json_object_get(obj, name);
        json_t *val;
        if (prev != NULL) {
            val = json_sprintf("%s, %s", json_string_value(prev), h->value);
        } else {
            val = json_string(h->value);
        }
        /* A value that is not UTF-8 is dropped rather than failing the echo. */
        if (val != NULL)
            json_object_set_new(obj, name, val);
    }
    return obj;
}

static json_t *query_object(struct evkeyvalq *q)
{
    json_t *obj = json_object();
    struct evkeyval *kv;

    if (obj == NULL)
        return NULL;
    TAILQ_FOREACH(kv, q, next) {
        json_t *val = json_string(kv->value);
        if (val != NULL)
            json_object_set_new(obj, kv->key, val);
    }
    return obj;
}

static void route_echo(struct fault_server *srv, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    size_t len = evbuffer_get_length(in);
    const char *path = evhttp_uri_get_path(uri);
    struct evkeyvalq q;
    json_t *doc, *body;

    (void)srv;
    if (query_parse(req, &q) != 0)
        return;
    /* A body that is not UTF-8 cannot be a JSON string: it is null then. */
    body = len == 0 ? json_string("") : json_stringn((const char *)evbuffer_pullup(in, -1), len);
    doc = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:I}",
                    "method", method_name(evhttp_request_get_command(req)),
                    "uri", evhttp_request_get_uri(req),
                    "path", path != NULL ? path : "",
                    "query", query_object(&q),
                    "headers", headers_object(evhttp_request_get_input_headers(req)),
                    "body", body != NULL ? body : json_null(),
                    "body_length", (json_int_t)len);
    evhttp_clear_headers(&q);
    reply_doc(req, 200, doc);
}

/* ------------------------------------------------------------------------ */
/* /delay?ms=N: the benchmark upstream, so it only ever arms a timer         */

static void delay_fire(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct evhttp_request *req = p->req;
    char body[80];

    (void)fd;
    (void)what;
    snprintf(body, sizeof(body), "{\"ok\":true,\"delayed_ms\":%ld}", p->delay_ms);
    pending_free(p);
    /* Safe even if the client left: evhttp frees req on the write error. */
    reply_json(req, 200, body);
}

static void route_delay(struct fault_server *srv, struct evhttp_request *req)
{
    struct evkeyvalq q;
    struct pending *p;
    long ms;

    if (query_parse(req, &q) != 0)
        return;
    if (query_long(req, &q, "ms", 0, 0, 3600 * 1000, &ms) != 0)
        goto done;
    p = pending_new(srv, PENDING_DELAY, req);
    if (p == NULL || (p->ev = evtimer_new(srv->base, delay_fire, p)) == NULL) {
        if (p != NULL)
            pending_free(p);
        reply_error(req, 500, "out of memory");
        goto done;
    }
    p->delay_ms = ms;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(p->ev, &tv);
done:
    evhttp_clear_headers(&q);
}

/* ------------------------------------------------------------------------ */
/* /hang                                                                     */

/* evhttp stops reading a connection while its request is being answered, so
 * it would never notice the client leaving.  This watcher peeks at the
 * socket instead: end of stream or an error means the client is gone, and
 * the connection (with its request) is freed. */
static void hang_watch(evutil_socket_t fd, short what, void *arg)
{
    struct pending *p = arg;
    struct evhttp_connection *evcon = p->evcon;
    char c;
    ssize_t n;

    (void)what;
    n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(p->ev, NULL);
        return;
    }
    if (n > 0)
        return; /* pipelined bytes: stop watching, shutdown frees it */
    pending_free(p);
    evhttp_connection_free(evcon);
}

static void route_hang(struct fault_server *srv, struct evhttp_request *req)
{
    struct pending *p = pending_new(srv, PENDING_HANG, req);
    evutil_socket_t fd;

    if (p == NULL) {
        reply_error(req, 500, "out of memory");
        return;
    }
    fd = bufferevent_getfd(evhttp_connection_get_bufferevent(p->evcon));
    p->ev = event_new(srv->base, fd, EV_READ, hang_watch, p);
    if (p->ev == NULL || event_add(p->ev, NULL) != 0) {
        pending_free(p);
        reply_error(req, 500, "out of memory");
    }
}

/* ------------------------------------------------------------------------ */
/* /status/CODE                                                              */

/* Reason phrases evhttp's own table lacks (it would say "Client Error"). */
static const char *status_reason(long code)
{
    switch (code) {
    case 422: return "Unprocessable Entity";
    case 425: return "Too Early";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 511: return "Network Authentication Required";
    }
    return NULL;
}

static void route_status(struct fault_server *srv, struct evhttp_request *req)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    const char *s = path + strlen("/status/");
    struct evkeyvalq q;
    char body[64];
    char *end;
    long code;

    (void)srv;
    errno = 0;
    code = strtol(s, &end, 10);
    /* 1xx would leave the client waiting for a final status. */
    if (errno != 0 || end == s || *end != '\0' || code < 200 || code > 599) {
        reply_error(req, 400, "status must be an integer in [200, 599]");
        return;
    }
    if (query_parse(req, &q) != 0)
        return;
    if (code == 429 || code == 503) {
        /* Used verbatim so tests can also send the HTTP-date form. */
        const char *retry = evhttp_find_header(&q, "retry_after");
        if (evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                              retry != NULL ? retry : "2") != 0) {
            reply_error(req, 400, "retry_after is not a valid header value");
            goto done;
        }
    }
    snprintf(body, sizeof(body), "{\"error\":\"status %ld\"}", code);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
    evhttp_send_reply(req, (int)code, status_reason(code), NULL);
done:
    evhttp_clear_headers(&q);
}

/* ------------------------------------------------------------------------ */
/* /huge?mb=N[&chunked=1]                                                    */
/*
 * The body is one JSON object {"pad":"xxx..."} of exactly N MiB, so a client
 * that accepted it could parse it.  It is queued HUGE_CHUNK bytes at a time
 * from one shared block of 'x' (added by reference, never copied), and the
 * next round is queued only when the previous one has left, so memory stays
 * flat whatever N is.  By default the length is announced in Content-Length;
 * chunked=1 leaves it out and evhttp uses chunked transfer encoding.
 */

static const char HUGE_HEAD[] = "{\"pad\":\"";
static const char HUGE_TAIL[] = "\"}";

static void huge_pump(struct pending *p);

static void huge_drained(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    huge_pump(arg);
}

/* The connection died mid-body.  evhttp has detached the request from it
 * (it was not finished), so it is ours to free now. */
static void huge_closed(struct evhttp_connection *evcon, void *arg)
{
    struct pending *p = arg;
    struct evhttp_request *req = p->req;

    (void)evcon;
    pending_free(p);
    if (evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
}

static void huge_pump(struct pending *p)
{
    const uint64_t head = sizeof(HUGE_HEAD) - 1;
    const uint64_t tail_at = p->huge_total - (sizeof(HUGE_TAIL) - 1);
    struct evbuffer *buf = evbuffer_new();
    struct evhttp_request *req = p->req;
    size_t queued = 0;

    if (buf == NULL)
        return; /* stalls; the client's timeout ends it */
    while (queued < HUGE_CHUNK && p->huge_sent < p->huge_total) {
        uint64_t at = p->huge_sent;
        size_t n;
        if (at < head) {
            n = (size_t)(head - at);
            evbuffer_add(buf, HUGE_HEAD + at, n);
        } else if (at < tail_at) {
            n = (size_t)(tail_at - at < HUGE_PAD_BLOCK ? tail_at - at : HUGE_PAD_BLOCK);
            evbuffer_add_reference(buf, p->srv->pad, n, NULL, NULL);
        } else {
            n = (size_t)(p->huge_total - at);
            evbuffer_add(buf, HUGE_TAIL + (at - tail_at), n);
        }
        p->huge_sent += n;
        queued += n;
    }
    evhttp_send_reply_chunk_with_cb(req, buf, huge_drained, p);
    evbuffer_free(buf);
    if (p->huge_sent == p->huge_total) {
        /* Unhook first: ending the reply may free the connection. */
        evhttp_connection_set_closecb(p->evcon, NULL, NULL);
        pending_free(p);
        evhttp_send_reply_end(req);
    }
}

static void route_huge(struct fault_server *srv, struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evkeyvalq q;
    struct pending *p;
    long mb, chunked;
    char len[32];

    if (query_parse(req, &q) != 0)
        return;
    if (query_long(req, &q, "mb", 1, 1, 64 * 1024, &mb) != 0 ||
        query_long(req, &q, "chunked", 0, 0, 1, &chunked) != 0)
        goto done;
    evhttp_add_header(out, "Content-Type", "application/json");
    if (!chunked) {
        snprintf(len, sizeof(len), "%llu", (unsigned long long)mb * MIB);
        evhttp_add_header(out, "Content-Length", len);
    }
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        evhttp_send_reply(req, 200, NULL, NULL);
        goto done;
    }
    p = pending_new(srv, PENDING_HUGE, req);
    if (p == NULL) {
        reply_error(req, 500, "out of memory");
        goto done;
    }
    p->huge_total = (uint64_t)mb * MIB;
    evhttp_connection_set_closecb(p->evcon, huge_closed, p);
    evhttp_send_reply_start(req, 200, NULL);
    huge_pump(p);
done:
    evhttp_clear_headers(&q);
}

/* ------------------------------------------------------------------------ */
/* /truncated                                                                */
/*
 * The response is written raw on the connection's bufferevent, bypassing
 * evhttp, with callbacks that free the connection once those bytes have left.
 * evhttp_connection_free shuts the socket down (FIN), so the client reads 11
 * of the 1000 promised body bytes and then end of stream.
 */

static const char TRUNCATED_RESPONSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 1000\r\n"
    "\r\n"
    "{\"partial\":";

static void truncated_flushed(struct bufferevent *bev, void *arg)
{
    (void)bev;
    evhttp_connection_free(arg);
}

static void truncated_failed(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    evhttp_connection_free(arg);
}

static void route_truncated(struct fault_server *srv, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);

    (void)srv;
    bufferevent_setcb(bev, NULL, truncated_flushed, truncated_failed, evcon);
    evbuffer_add(bufferevent_get_output(bev), TRUNCATED_RESPONSE,
                 sizeof(TRUNCATED_RESPONSE) - 1);
    bufferevent_enable(bev, EV_WRITE);
}

/* ------------------------------------------------------------------------ */
/* /reset                                                                    */
/*
 * SO_LINGER {1, 0} makes close() send RST.  evhttp_connection_free would
 * first shutdown() the socket (a FIN, which the client reads as an empty
 * reply, curl error 52) and close it only later, so the socket is taken away
 * from the bufferevent and closed here first.  evhttp's later shutdown() of
 * that descriptor number then fails with EBADF: nothing can reuse the number
 * in between, as this runs on one thread with no descriptor opened between
 * the two calls.
 */
static void route_reset(struct fault_server *srv, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bufferevent_getfd(bev);
    struct linger lg = { 1, 0 };

    (void)srv;
    bufferevent_setfd(bev, -1);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    evutil_closesocket(fd);
    evhttp_connection_free(evcon);
}

/* ------------------------------------------------------------------------ */
/* /gzip                                                                     */

/* Whether an Accept-Encoding value accepts gzip: a "gzip" or "x-gzip" token
 * whose q is not 0. */
static int accepts_gzip(const char *value)
{
    const char *s = value;

    while (s != NULL && *s != '\0') {
        const char *end = strchr(s, ',');
        size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
        char token[64];

        while (len > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        if (len < sizeof(token)) {
            memcpy(token, s, len);
            token[len] = '\0';
            char *params = strchr(token, ';');
            if (params != NULL)
                *params++ = '\0';
            for (char *t = token + strlen(token); t > token && (t[-1] == ' ' || t[-1] == '\t');)
                *--t = '\0';
            if (strcasecmp(token, "gzip") == 0 || strcasecmp(token, "x-gzip") == 0) {
                const char *qv = params != NULL ? strstr(params, "q=") : NULL;
                return qv == NULL || strtod(qv + 2, NULL) > 0.0;
            }
        }
        s = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

/* Builds /gzip's document once, plain and gzip-encoded.  Returns 0 or -1. */
static int gzip_prepare(struct fault_server *srv)
{
    json_t *doc = items_doc(50);
    z_stream zs;
    int rc;

    if (doc == NULL || json_object_set_new(doc, "encoded", json_true()) != 0) {
        json_decref(doc);
        return -1;
    }
    srv->gzip_plain = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (srv->gzip_plain == NULL)
        return -1;
    srv->gzip_plain_len = strlen(srv->gzip_plain);

    memset(&zs, 0, sizeof(zs));
    /* windowBits 15 + 16 asks zlib for a gzip header and trailer. */
    if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t bound = deflateBound(&zs, srv->gzip_plain_len);
    srv->gzip_body = malloc(bound);
    if (srv->gzip_body == NULL) {
        deflateEnd(&zs);
        return -1;
    }
    zs.next_in = (unsigned char *)srv->gzip_plain;
    zs.avail_in = (uInt)srv->gzip_plain_len;
    zs.next_out = srv->gzip_body;
    zs.avail_out = (uInt)bound;
    rc = deflate(&zs, Z_FINISH);
    srv->gzip_body_len = zs.total_out;
    deflateEnd(&zs);
    return rc == Z_STREAM_END ? 0 : -1;
}

static void route_gzip(struct fault_server *srv, struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *ae = evhttp_find_header(evhttp_request_get_input_headers(req),
                                        "Accept-Encoding");

    evhttp_add_header(out, "Vary", "Accept-Encoding");
    if (ae != NULL && accepts_gzip(ae)) {
        evhttp_add_header(out, "Content-Encoding", "gzip");
        reply_body(req, 200, "application/json", srv->gzip_body, srv->gzip_body_len);
    } else {
        reply_body(req, 200, "application/json", srv->gzip_plain, srv->gzip_plain_len);
    }
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                  */

typedef void (*route_fn)(struct fault_server *, struct evhttp_request *);

static void route_dataset(struct fault_server *srv, struct evhttp_request *req)
{
    datasets_route(srv->datasets, req, evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)));
}

static void route_slack(struct fault_server *srv, struct evhttp_request *req)
{
    slack_route(srv->slack, req, evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)));
}

static const struct route {
    const char *path;
    int prefix;     /* path is a prefix (it ends in '/') */
    int uncounted;  /* not counted by /count */
    route_fn fn;
} ROUTES[] = {
    { "/ok", 0, 0, route_ok },
    { "/json", 0, 0, route_json },
    { "/echo", 0, 0, route_echo },
    { "/delay", 0, 0, route_delay },
    { "/hang", 0, 0, route_hang },
    { "/status/", 1, 0, route_status },
    { "/invalid-json", 0, 0, route_invalid_json },
    { "/huge", 0, 0, route_huge },
    { "/truncated", 0, 0, route_truncated },
    { "/reset", 0, 0, route_reset },
    { "/gzip", 0, 0, route_gzip },
    { "/redirect", 0, 0, route_redirect },
    { "/count", 0, 1, route_count },
    { "/count/reset", 0, 1, route_count_reset },
    { "/dataset/", 1, 1, route_dataset },
    { "/slack/", 1, 1, route_slack },
};

static void fault_dispatch(struct evhttp_request *req, void *arg)
{
    struct fault_server *srv = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

    if (path == NULL)
        path = "";
    for (size_t i = 0; i < sizeof(ROUTES) / sizeof(ROUTES[0]); i++) {
        const struct route *r = &ROUTES[i];
        int match = r->prefix ? strncmp(path, r->path, strlen(r->path)) == 0
                              : strcmp(path, r->path) == 0;
        if (match) {
            if (!r->uncounted)
                srv->requests++;
            r->fn(srv, req);
            return;
        }
    }
    srv->requests++;
    reply_json(req, 404, "{\"error\":\"not found\"}");
}

/* ------------------------------------------------------------------------ */
/* Set-up and shut-down                                                      */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    event_base_loopbreak(arg);
}

/* 10,000 connections need more descriptors than the usual soft limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Parses "HOST:PORT" or "[V6HOST]:PORT" with numeric hosts.  Unlike
 * evutil_parse_sockaddr_port it accepts port 0.  Returns 0 or -1. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, int *len)
{
    const char *colon = strrchr(addr, ':');
    char host[64], *end;
    size_t hlen;
    long port;

    if (colon == NULL)
        return -1;
    errno = 0;
    port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || port < 0 || port > 65535)
        return -1;
    hlen = (size_t)(colon - addr);
    if (hlen >= 2 && addr[0] == '[' && addr[hlen - 1] == ']') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        if (hlen - 2 >= sizeof(host))
            return -1;
        memcpy(host, addr + 1, hlen - 2);
        host[hlen - 2] = '\0';
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = (int)sizeof(*sin6);
        return evutil_inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    if (hlen >= sizeof(host))
        return -1;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    *len = (int)sizeof(*sin);
    return evutil_inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -1;
}

/* Binds addr with the given backlog and hands the listener to evhttp.
 * Prints the bound address.  Returns 0 or -1. */
static int fault_listen(struct fault_server *srv, const char *addr, int backlog)
{
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    int len = (int)sizeof(ss);
    struct evconnlistener *lev;
    char host[64];
    int port;

    memset(&ss, 0, sizeof(ss));
    if (parse_addr(addr, &ss, &len) != 0) {
        fprintf(stderr, "fault_server: bad --listen address %s\n", addr);
        return -1;
    }
    lev = evconnlistener_new_bind(srv->base, NULL, NULL,
                                  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                  backlog, (struct sockaddr *)&ss, len);
    if (lev == NULL) {
        fprintf(stderr, "fault_server: cannot listen on %s: %s\n", addr, strerror(errno));
        return -1;
    }
    /* Accepted sockets inherit TCP_NODELAY from the listener (Linux).  Without
     * it a reply over 16 KiB, which bufferevent writes in 16 KiB pieces,
     * stalls ~40 ms on a reused connection: Nagle holds the last piece until
     * the client's delayed ACK of the previous one. */
    int one = 1;
    setsockopt(evconnlistener_get_fd(lev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* From here evhttp owns the listener and frees it in evhttp_free. */
    if (evhttp_bind_listener(srv->http, lev) == NULL) {
        evconnlistener_free(lev);
        return -1;
    }
    if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&ss, &sslen) != 0)
        return -1;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host + 1, sizeof(host) - 2);
        host[0] = '[';
        strcat(host, "]");
        port = ntohs(sin6->sin6_port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        port = ntohs(sin->sin_port);
    }
    printf("listening %s:%d\n", host, port);
    fflush(stdout);
    return 0;
}

/* Frees what the pending records own.  Requests still attached to a
 * connection are evhttp's and go with evhttp_free, after this. */
static void fault_drop_pending(struct fault_server *srv)
{
    while (srv->pending != NULL) {
        struct pending *p = srv->pending;
        struct evhttp_request *req = p->req;
        if (p->kind == PENDING_HUGE && evhttp_request_get_connection(req) != NULL)
            evhttp_connection_set_closecb(p->evcon, NULL, NULL);
        if (evhttp_request_get_connection(req) == NULL)
            evhttp_request_free(req);
        pending_free(p);
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: fault_server [--listen HOST:PORT] [--backlog N]\n"
               "  --listen   address to bind (default 127.0.0.1:0, port 0 = any free)\n"
               "  --backlog  listen backlog (default 4096; the kernel caps it at somaxconn)\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "backlog", required_argument, NULL, 'b' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *listen_addr = "127.0.0.1:0";
    int backlog = 4096;
    struct fault_server srv;
    int c, rc = 1;

    while ((c = getopt_long(argc, argv, "l:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l':
            listen_addr = optarg;
            break;
        case 'b':
            backlog = atoi(optarg);
            if (backlog <= 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    raise_nofile();
    /* A client that leaves mid-reply must cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);

    memset(&srv, 0, sizeof(srv));
    srv.base = event_base_new();
    if (srv.base == NULL)
        goto err;
    srv.http = evhttp_new(srv.base);
    if (srv.http == NULL)
        goto err;
    evhttp_set_allowed_methods(srv.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                             EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                             EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                             EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(srv.http, fault_dispatch, &srv);

    srv.pad = malloc(HUGE_PAD_BLOCK);
    srv.datasets = datasets_new(srv.base);
    srv.slack = slack_new(srv.base);
    if (srv.pad == NULL || srv.datasets == NULL || srv.slack == NULL || gzip_prepare(&srv) != 0)
        goto err;
    memset(srv.pad, 'x', HUGE_PAD_BLOCK);

    srv.sigint = evsignal_new(srv.base, SIGINT, on_signal, srv.base);
    srv.sigterm = evsignal_new(srv.base, SIGTERM, on_signal, srv.base);
    if (srv.sigint == NULL || srv.sigterm == NULL || evsignal_add(srv.sigint, NULL) != 0 ||
        evsignal_add(srv.sigterm, NULL) != 0)
        goto err;

    if (fault_listen(&srv, listen_addr, backlog) != 0)
        goto err;

    if (event_base_dispatch(srv.base) == 0 || event_base_got_break(srv.base))
        rc = 0;

err:
    fault_drop_pending(&srv);
    datasets_free(srv.datasets);
    slack_free(srv.slack);
    if (srv.http != NULL)
        evhttp_free(srv.http);
    if (srv.sigint != NULL)
        event_free(srv.sigint);
    if (srv.sigterm != NULL)
        event_free(srv.sigterm);
    if (srv.base != NULL)
        event_base_free(srv.base);
    libevent_global_shutdown();
    free(srv.pad);
    free(srv.gzip_plain);
    free(srv.gzip_body);
    return rc;
}
