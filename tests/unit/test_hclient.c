/* test_hclient — the outbound HTTP client against a small evhttp server
 * running on the same event_base: a successful exchange (status, lowercased
 * headers, body), the deadline, the response size cap, a refused
 * connection, request bodies and headers, cancellation, many transfers at
 * once, and freeing the client with transfers in flight.
 *
 * The loop runs until the awaited callbacks have happened; a guard timer
 * (generous, never reached when things work) stops a broken test from
 * hanging. Nothing here asserts how fast anything is. */
#include "hclient.h"
#include "metrics.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#define GUARD_SECONDS 20
#define LARGE_BYTES (1024 * 1024)
#define MEDIUM_BYTES 60000
#define CAP_BYTES (64 * 1024)

/* ---- the test server ------------------------------------------------ */

typedef struct slow_req {
    struct evhttp_request *req;
    struct event *timer;
    struct slow_req *next;
    int answered;
} slow_req;

typedef struct env {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int requests;          /* requests the server has received */
    int json_peers[8];     /* client ports of the first /json requests */
    slow_req *slow;
    struct drip *drips;
    int timed_out;
    hclient *client;
} env;

static void reply(struct evhttp_request *req, int code, const char *type, const char *body, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, len);
    if (type)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Other", b);
    evbuffer_free(b);
}

static void on_json(struct evhttp_request *req, void *arg)
{
    env *e = arg;
    if (e->requests < 8) {
        char *addr = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr, &port);
        e->json_peers[e->requests] = port;
    }
    e->requests++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "X-Custom-Header", "Yes");
    reply(req, 200, "application/json", "{\"ok\":true}", 11);
}

static void on_slow_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    slow_req *s = arg;
    s->answered = 1;
    reply(s->req, 200, "text/plain", "late", 4);
}

/* Answers only after a long while (or at teardown). */
static void on_slow(struct evhttp_request *req, void *arg)
{
    env *e = arg;
    e->requests++;
    slow_req *s = calloc(1, sizeof *s);
    s->req = req;
    s->timer = evtimer_new(e->base, on_slow_timer, s);
    struct timeval tv = {60, 0};
    evtimer_add(s->timer, &tv);
    s->next = e->slow;
    e->slow = s;
}

static void on_large(struct evhttp_request *req, void *arg)
{
    env *e = arg;
    e->requests++;
    char *body = malloc(LARGE_BYTES);
    memset(body, 'L', LARGE_BYTES);
    reply(req, 200, "application/octet-stream", body, LARGE_BYTES);
    free(body);
}

static void on_medium(struct evhttp_request *req, void *arg)
{
    env *e = arg;
    e->requests++;
    char *body = malloc(MEDIUM_BYTES);
    memset(body, 'M', MEDIUM_BYTES);
    reply(req, 200, "application/octet-stream", body, MEDIUM_BYTES);
    free(body);
}

/* Chunked, so no Content-Length warns the client in advance. */
static void on_chunked(struct evhttp_request *req, void *arg)
{
    env *e = arg;
    e->requests++;
    evhttp_send_reply_start(req, 200, "OK");
    struct evbuffer *b = evbuffer_new();
    char chunk[16384];
    memset(chunk, 'C', sizeof chunk);
    for (int i = 0; i < LARGE_BYTES / (int)sizeof chunk; i++) {
        evbuffer_add(b, chunk, sizeof chunk);
        evhttp_send_reply_chunk(req, b);
    }
    evhttp_send_reply_end(req);
    evbuffer_free(b);
}

/* "<method>|<x-test header>|<body>" */
static void on_echo(struct evhttp_request *req, void *arg)
{
    env *e = arg;
    e->requests++;
    const char *method = "?";
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: method = "GET"; break;
    case EVHTTP_REQ_POST: method = "POST"; break;
    case EVHTTP_REQ_PUT: method = "PUT"; break;
    case EVHTTP_REQ_DELETE: method = "DELETE"; break;
    case EVHTTP_REQ_PATCH: method = "PATCH"; break;
    default: break;
    }
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *xt = evhttp_find_header(in, "X-Test");
    const char *ct = evhttp_find_header(in, "Content-Type");
    const char *ua = evhttp_find_header(in, "User-Agent");
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add_printf(out, "%s|%s|%s|%s|", method, xt ? xt : "-", ct ? ct : "-", ua ? ua : "-");
    evbuffer_add_buffer(out, body);
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

/* "one\n", then "two\n" and "three\n" 150 ms apart, then the end: a
 * stream whose parts are worth having before it finishes. */
typedef struct drip {
    struct evhttp_request *req;
    struct event *timer;
    int step;
    int ended;
    struct drip *next;       /* env's list: teardown frees what a test left running */
} drip;

static void on_drip_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drip *d = arg;
    static const char *const parts[] = {"two\n", "three\n"};
    if (d->step < 2) {
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, parts[d->step], strlen(parts[d->step]));
        evhttp_send_reply_chunk(d->req, b);
        evbuffer_free(b);
        d->step++;
        struct timeval tv = {0, 150000};
        evtimer_add(d->timer, &tv);
        return;
    }
    evhttp_send_reply_end(d->req);
    d->ended = 1;
}

static void on_drip(struct evhttp_request *req, void *arg)
{
    env *e = arg;
    e->requests++;
    drip *d = calloc(1, sizeof *d);
    d->next = e->drips;
    e->drips = d;
    d->req = req;
    d->timer = evtimer_new(e->base, on_drip_timer, d);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/event-stream");
    evhttp_send_reply_start(req, 200, "OK");
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "one\n", 4);
    evhttp_send_reply_chunk(req, b);
    evbuffer_free(b);
    struct timeval tv = {0, 150000};
    evtimer_add(d->timer, &tv);
}

static void on_redirect(struct evhttp_request *req, void *arg)
{
    env *e = arg;
    e->requests++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/json");
    reply(req, 302, "text/plain", "moved", 5);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    env *e = arg;
    e->timed_out = 1;
    event_base_loopbreak(e->base);
}

static void setup(env *e, const hclient_config *cfg)
{
    static int once;
    if (!once) {
        once = 1;
        signal(SIGPIPE, SIG_IGN);   /* the server writes to clients that gave up */
        atexit(libevent_global_shutdown);
    }
    memset(e, 0, sizeof *e);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e->base = event_base_new();
    e->http = evhttp_new(e->base);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct evconnlistener *l = evconnlistener_new_bind(e->base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE,
                                                       1024, (struct sockaddr *)&sin, sizeof sin);
    if (!l) {
        perror("evconnlistener_new_bind");
        exit(2);
    }
    socklen_t slen = sizeof sin;
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen);
    e->port = ntohs(sin.sin_port);
    evhttp_bind_listener(e->http, l);   /* evhttp_free frees the listener */
    evhttp_set_cb(e->http, "/json", on_json, e);
    evhttp_set_cb(e->http, "/slow", on_slow, e);
    evhttp_set_cb(e->http, "/large", on_large, e);
    evhttp_set_cb(e->http, "/medium", on_medium, e);
    evhttp_set_cb(e->http, "/chunked", on_chunked, e);
    evhttp_set_cb(e->http, "/echo", on_echo, e);
    evhttp_set_cb(e->http, "/redirect", on_redirect, e);
    evhttp_set_cb(e->http, "/drip", on_drip, e);
    evhttp_set_allowed_methods(e->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD);
    e->client = hclient_new(e->base, cfg);
    if (!e->client) {
        fprintf(stderr, "hclient_new failed\n");
        exit(2);
    }
}

static void teardown(env *e)
{
    hclient_free(e->client);
    /* Answer what is still waiting, which frees requests whose client has
     * gone; the rest go with their connections in evhttp_free. */
    while (e->slow) {
        slow_req *s = e->slow;
        e->slow = s->next;
        event_free(s->timer);
        if (!s->answered)
            reply(s->req, 200, "text/plain", "late", 4);
        free(s);
    }
    while (e->drips) {
        struct drip *d = e->drips;
        e->drips = d->next;
        event_free(d->timer);
        free(d);
    }
    evhttp_free(e->http);
    event_base_free(e->base);
    curl_global_cleanup();
    metrics_reset();
}

/* Runs the loop until *counter reaches target (or the guard fires). */
static void run_until_within(env *e, const int *counter, int target, int seconds)
{
    struct event *guard = evtimer_new(e->base, on_guard, e);
    struct timeval tv = {seconds, 0};
    evtimer_add(guard, &tv);
    while (*counter < target && !e->timed_out)
        event_base_loop(e->base, EVLOOP_ONCE);
    event_free(guard);
    if (e->timed_out)
        fprintf(stderr, "  guard timer fired: %d of %d events happened\n", *counter, target);
    CHECK(!e->timed_out);
}

static void run_until(env *e, const int *counter, int target) { run_until_within(e, counter, target, GUARD_SECONDS); }

/* ---- the client's side ---------------------------------------------- */

typedef struct result {
    int *counter;
    int called;
    long status;
    char *body;
    size_t body_len;
    char ctype[64];
    char custom[64];
    int has_uppercase_header;
    int failed;
    ferr_code code;
    char message[512];
} result;

static void on_done(void *arg, hclient_response *resp, ferr *err)
{
    result *r = arg;
    r->called++;
    if (r->counter)
        (*r->counter)++;
    if (err) {
        CHECK(resp == NULL);
        r->failed = 1;
        r->code = err->code;
        snprintf(r->message, sizeof r->message, "%s", err->message);
        return;
    }
    r->status = resp->status;
    r->body = malloc(resp->body_len + 1);
    memcpy(r->body, resp->body, resp->body_len + 1);   /* includes the NUL */
    r->body_len = resp->body_len;
    for (size_t i = 0; i < resp->nheaders; i++) {
        for (const char *c = resp->headers[i].name; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                r->has_uppercase_header = 1;
        if (strcmp(resp->headers[i].name, "content-type") == 0)
            snprintf(r->ctype, sizeof r->ctype, "%s", resp->headers[i].value);
        if (strcmp(resp->headers[i].name, "x-custom-header") == 0)
            snprintf(r->custom, sizeof r->custom, "%s", resp->headers[i].value);
    }
}

static void result_clear(result *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int get(env *e, const char *path, long timeout_ms, result *r, hclient_xfer **x)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", e->port, path);
    hclient_request req = {.url = url, .timeout_ms = timeout_ms, .label = "test", .allow_private = 1};
    ferr err = {0};
    int rc = hclient_start(e->client, &req, on_done, r, x, &err);
    if (rc < 0)
        fprintf(stderr, "  hclient_start(%s): %s\n", url, err.message);
    ferr_clear(&err);
    return rc;
}

/* ---- tests ---------------------------------------------------------- */

static void successful_get_returns_status_lowercased_headers_and_body(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result r = {.counter = &done};
    hclient_xfer *x = NULL;
    CHECK_INT(get(&e, "/json", 0, &r, &x), 0);
    CHECK(x != NULL);
    CHECK_INT(hclient_in_flight(e.client), 1);
    /* Nothing completes before the loop runs. */
    CHECK_INT(r.called, 0);
    run_until(&e, &done, 1);
    CHECK_INT(r.called, 1);
    CHECK_INT(r.failed, 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(r.body, "{\"ok\":true}");
    CHECK_INT(r.body_len, 11);
    CHECK_STR(r.ctype, "application/json");
    CHECK_STR(r.custom, "Yes");   /* names are lowercased, values kept */
    CHECK_INT(r.has_uppercase_header, 0);
    CHECK_INT(hclient_in_flight(e.client), 0);
    /* The exchange was counted under the host and status. */
    CHECK(metrics_get(METRIC_UPSTREAM_REQUESTS, "127.0.0.1", "200") == 1);
    result_clear(&r);
    teardown(&e);
}

static void redirects_are_returned_not_followed(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result r = {.counter = &done};
    get(&e, "/redirect", 0, &r, NULL);
    run_until(&e, &done, 1);
    CHECK_INT(r.status, 302);
    CHECK_STR(r.body, "moved");
    CHECK_INT(e.requests, 1);
    result_clear(&r);
    teardown(&e);
}

static void deadline_ends_with_upstream_timeout(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result r = {.counter = &done};
    CHECK_INT(get(&e, "/slow", 100, &r, NULL), 0);
    run_until(&e, &done, 1);
    CHECK_INT(r.called, 1);
    CHECK_INT(r.failed, 1);
    CHECK_INT(r.code, FERR_UPSTREAM_TIMEOUT);
    CHECK_CONTAINS(r.message, "127.0.0.1");
    CHECK_CONTAINS(r.message, "100 ms");
    CHECK(metrics_get(METRIC_UPSTREAM_REQUESTS, "127.0.0.1", "upstream_timeout") == 1);
    result_clear(&r);
    teardown(&e);
}

static void default_deadline_comes_from_the_config(void)
{
    env e;
    hclient_config cfg = {.default_timeout_ms = 150};
    setup(&e, &cfg);
    int done = 0;
    result r = {.counter = &done};
    get(&e, "/slow", 0, &r, NULL);
    run_until(&e, &done, 1);
    CHECK_INT(r.code, FERR_UPSTREAM_TIMEOUT);
    CHECK_CONTAINS(r.message, "150 ms");
    result_clear(&r);
    teardown(&e);
}

static void response_over_the_cap_is_payload_too_large(void)
{
    env e;
    hclient_config cfg = {.max_response_bytes = CAP_BYTES};
    setup(&e, &cfg);
    int done = 0;
    result big = {.counter = &done}, chunked = {.counter = &done}, medium = {.counter = &done};
    get(&e, "/large", 0, &big, NULL);       /* Content-Length says it all */
    get(&e, "/chunked", 0, &chunked, NULL); /* found out while receiving */
    get(&e, "/medium", 0, &medium, NULL);   /* under the cap */
    run_until(&e, &done, 3);
    CHECK_INT(big.failed, 1);
    CHECK_INT(big.code, FERR_PAYLOAD_TOO_LARGE);
    CHECK_CONTAINS(big.message, "65536");
    CHECK_INT(chunked.failed, 1);
    CHECK_INT(chunked.code, FERR_PAYLOAD_TOO_LARGE);
    CHECK_INT(medium.failed, 0);
    CHECK_INT(medium.status, 200);
    CHECK_INT(medium.body_len, MEDIUM_BYTES);
    CHECK(medium.body && medium.body[0] == 'M' && medium.body[MEDIUM_BYTES - 1] == 'M' &&
          medium.body[MEDIUM_BYTES] == 0);
    result_clear(&big);
    result_clear(&chunked);
    result_clear(&medium);
    teardown(&e);
}

static void refused_connection_is_upstream_error(void)
{
    env e;
    setup(&e, NULL);
    /* A port nobody listens on: bind one, note it, close it. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof sin;
    CHECK_INT(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    getsockname(fd, (struct sockaddr *)&sin, &slen);
    int port = ntohs(sin.sin_port);
    close(fd);

    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    int done = 0;
    result r = {.counter = &done};
    hclient_request req = {.url = url, .timeout_ms = 5000, .allow_private = 1};
    ferr err = {0};
    CHECK_INT(hclient_start(e.client, &req, on_done, &r, NULL, &err), 0);
    run_until(&e, &done, 1);
    CHECK_INT(r.failed, 1);
    CHECK_INT(r.code, FERR_UPSTREAM_ERROR);
    CHECK_CONTAINS(r.message, "127.0.0.1");
    result_clear(&r);
    ferr_clear(&err);
    teardown(&e);
}

/* Without allow_private, loopback (and every other non-public address) is
 * refused before any connection is made: the server never sees a request. */
static void non_public_address_is_egress_denied_unless_allowed(void)
{
    env e;
    setup(&e, NULL);
    static const char *const urls[] = {"http://127.0.0.1:%d/json", "http://localhost:%d/json",
                                       "http://[::1]:%d/json", "http://169.254.169.254:%d/latest",
                                       "http://10.1.2.3:%d/", "http://192.168.1.1:%d/", "http://0.0.0.0:%d/",
                                       /* IPv4 carried in IPv6: mapped, NAT64, 6to4 */
                                       "http://[::ffff:127.0.0.1]:%d/", "http://[64:ff9b::a9fe:a9fe]:%d/",
                                       "http://[2002:7f00:1::1]:%d/"};
    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        char url[128];
        snprintf(url, sizeof url, urls[i], e.port);
        int done = 0;
        result r = {.counter = &done};
        hclient_request req = {.url = url, .timeout_ms = 3000};
        ferr err = {0};
        CHECK_INT(hclient_start(e.client, &req, on_done, &r, NULL, &err), 0);
        run_until(&e, &done, 1);
        CHECK_INT(r.failed, 1);
        CHECK_INT(r.code, FERR_EGRESS_DENIED);
        CHECK_CONTAINS(r.message, "non-public address");
        result_clear(&r);
        ferr_clear(&err);
    }
    teardown(&e);
}

static void unsupported_scheme_fails_without_a_request(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result r = {.counter = &done};
    hclient_request req = {.url = "file:///etc/passwd"};
    ferr err = {0};
    if (hclient_start(e.client, &req, on_done, &r, NULL, &err) == 0)
        run_until(&e, &done, 1);
    /* Either refused up front or failed as an upstream error, never read. */
    CHECK(r.body == NULL);
    if (r.called)
        CHECK_INT(r.code, FERR_UPSTREAM_ERROR);
    result_clear(&r);
    ferr_clear(&err);
    teardown(&e);
}

static void post_body_and_custom_headers_arrive(void)
{
    env e;
    setup(&e, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo", e.port);
    int done = 0;
    result post = {.counter = &done}, put = {.counter = &done}, del = {.counter = &done};

    struct curl_slist *h = curl_slist_append(NULL, "X-Test: hello there");
    h = curl_slist_append(h, "Content-Type: application/json");
    const char body[] = "{\"a\":1,\"b\":\"\\u00e9\"}";
    hclient_request req = {.method = "POST", .url = url, .headers = h, .body = body, .body_len = sizeof body - 1, .allow_private = 1};
    ferr err = {0};
    CHECK_INT(hclient_start(e.client, &req, on_done, &post, NULL, &err), 0);
    CHECK(req.headers == NULL);   /* the client took them */

    /* The body is copied at start: the caller's buffer may go away. */
    char *tmp = strdup("replace me");
    hclient_request req2 = {.method = "PUT", .url = url, .body = tmp, .body_len = strlen(tmp), .allow_private = 1};
    CHECK_INT(hclient_start(e.client, &req2, on_done, &put, NULL, &err), 0);
    memset(tmp, 'X', strlen(tmp));
    free(tmp);

    hclient_request req3 = {.method = "DELETE", .url = url, .allow_private = 1};
    CHECK_INT(hclient_start(e.client, &req3, on_done, &del, NULL, &err), 0);

    run_until(&e, &done, 3);
    CHECK_INT(post.status, 200);
    CHECK_STR(post.body, "POST|hello there|application/json|ferry/" FERRY_VERSION "|{\"a\":1,\"b\":\"\\u00e9\"}");
    CHECK_INT(put.status, 200);
    CHECK_CONTAINS(put.body, "PUT|-|");
    CHECK_CONTAINS(put.body, "|replace me");
    CHECK_INT(del.status, 200);
    CHECK_CONTAINS(del.body, "DELETE|-|");
    result_clear(&post);
    result_clear(&put);
    result_clear(&del);
    ferr_clear(&err);
    teardown(&e);
}

static void cancel_prevents_the_done_callback(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result slow = {.counter = &done}, early = {.counter = &done}, fine = {.counter = &done};
    hclient_xfer *xs = NULL, *xe = NULL;

    /* Cancelled before the loop ever ran. */
    CHECK_INT(get(&e, "/json", 0, &early, &xe), 0);
    hclient_cancel(xe);
    /* Cancelled while the server holds the request. */
    CHECK_INT(get(&e, "/slow", 0, &slow, &xs), 0);
    run_until(&e, &e.requests, 1);
    CHECK_INT(hclient_in_flight(e.client), 1);
    hclient_cancel(xs);
    CHECK_INT(hclient_in_flight(e.client), 0);
    hclient_cancel(NULL);

    /* A later transfer completes while the cancelled ones stay silent. */
    get(&e, "/json", 0, &fine, NULL);
    run_until(&e, &done, 1);
    CHECK_INT(fine.status, 200);
    CHECK_INT(slow.called, 0);
    CHECK_INT(early.called, 0);
    CHECK_INT(done, 1);
    result_clear(&slow);
    result_clear(&early);
    result_clear(&fine);
    teardown(&e);
}

static void many_transfers_in_flight_all_complete(void)
{
    enum { N = 200 };
    env e;
    setup(&e, NULL);
    int done = 0;
    result *r = calloc(N, sizeof *r);
    for (int i = 0; i < N; i++) {
        r[i].counter = &done;
        CHECK_INT(get(&e, i % 2 ? "/json" : "/echo", 0, &r[i], NULL), 0);
    }
    CHECK_INT(hclient_in_flight(e.client), N);
    run_until(&e, &done, N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        CHECK_INT(r[i].called, 1);
        ok += r[i].status == 200;
        if (i % 2)
            CHECK_STR(r[i].body, "{\"ok\":true}");
        result_clear(&r[i]);
    }
    CHECK_INT(ok, N);
    CHECK_INT(hclient_in_flight(e.client), 0);
    CHECK_INT(e.requests, N);
    CHECK(metrics_get(METRIC_UPSTREAM_REQUESTS, "127.0.0.1", "200") == N);
    free(r);
    teardown(&e);
}

/* A request the upstream is slow to answer must not hold up the others to
 * the same host: over HTTP/1.1 each needs a connection of its own. */
static void slow_first_request_does_not_hold_up_others_to_the_same_host(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result slow = {.counter = &done}, fast = {.counter = &done};
    get(&e, "/slow", 60000, &slow, NULL);
    run_until(&e, &e.requests, 1);
    get(&e, "/json", 0, &fast, NULL);
    /* The guard here is a bound on a hang, not a speed requirement: the
     * slow request would only give way after its 60 s deadline. */
    run_until_within(&e, &done, 1, 5);
    CHECK_INT(fast.called, 1);
    CHECK_INT(fast.status, 200);
    CHECK_INT(slow.called, 0);
    result_clear(&slow);
    result_clear(&fast);
    teardown(&e);
}

static void connections_are_reused_between_transfers(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result r[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        r[i].counter = &done;
        get(&e, "/json", 0, &r[i], NULL);
        run_until(&e, &done, i + 1);
        CHECK_INT(r[i].status, 200);
        result_clear(&r[i]);
    }
    CHECK_INT(e.requests, 5);
    /* One after another, they all came over the first connection. */
    CHECK(e.json_peers[0] != 0);
    for (int i = 1; i < 5; i++)
        CHECK_INT(e.json_peers[i], e.json_peers[0]);
    teardown(&e);
}

static void free_with_transfers_in_flight_releases_everything(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    /* One exchange first, so the client knows the server speaks HTTP/1.1
     * and opens a connection per transfer. */
    result warm = {0};
    get(&e, "/json", 0, &warm, NULL);
    run_until(&e, &warm.called, 1);
    CHECK_INT(warm.status, 200);
    result_clear(&warm);

    result r[10] = {{0}};
    for (int i = 0; i < 10; i++) {
        r[i].counter = &done;
        get(&e, "/slow", 0, &r[i], NULL);
    }
    run_until(&e, &e.requests, 11);
    CHECK_INT(hclient_in_flight(e.client), 10);
    /* teardown frees the client first; done functions must stay silent
     * and nothing may leak (ASan checks that). */
    teardown(&e);
    CHECK_INT(done, 0);
}

static void free_with_transfers_connecting_and_queued_releases_everything(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result r[5] = {{0}};
    for (int i = 0; i < 5; i++) {
        r[i].counter = &done;
        get(&e, "/slow", 0, &r[i], NULL);
    }
    run_until(&e, &e.requests, 1);
    teardown(&e);
    CHECK_INT(done, 0);
}

static void free_before_the_loop_ran_releases_everything(void)
{
    env e;
    setup(&e, NULL);
    int done = 0;
    result r[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        r[i].counter = &done;
        get(&e, "/json", 0, &r[i], NULL);
    }
    teardown(&e);
    CHECK_INT(done, 0);
}

/* ---- streaming (on_data) ---- */

typedef struct stream_reader {
    result done;              /* the done callback's view */
    char data[2 * LARGE_BYTES];
    size_t len;
    int chunks;
    int before_done;          /* chunks delivered before done ran */
    long status;              /* as the first chunk saw it */
    char ctype[64];
    size_t largest;
    int stop_after;           /* return -1 after this many chunks (0: never) */
    int cancel_after;         /* hclient_cancel from inside after this many */
    hclient_xfer *xfer;
} stream_reader;

static int on_chunk(void *arg, const hclient_response *head, const char *data, size_t len)
{
    stream_reader *s = arg;
    if (!s->chunks) {
        s->status = head->status;
        for (size_t i = 0; i < head->nheaders; i++)
            if (strcmp(head->headers[i].name, "content-type") == 0)
                snprintf(s->ctype, sizeof s->ctype, "%s", head->headers[i].value);
    }
    s->chunks++;
    if (!s->done.called)
        s->before_done++;
    if (len > s->largest)
        s->largest = len;
    if (s->len + len <= sizeof s->data) {
        memcpy(s->data + s->len, data, len);
        s->len += len;
    }
    if (s->cancel_after && s->chunks == s->cancel_after) {
        hclient_cancel(s->xfer);
        s->done.called = -1;   /* what the test waits for */
        return 0;
    }
    return s->stop_after && s->chunks >= s->stop_after ? -1 : 0;
}

static int stream(env *e, const char *path, long timeout_ms, stream_reader *s)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", e->port, path);
    hclient_request req = {.url = url, .timeout_ms = timeout_ms, .label = "test", .allow_private = 1,
                           .on_data = on_chunk};
    ferr err = {0};
    int rc = hclient_start(e->client, &req, on_done, &s->done, &s->xfer, &err);
    ferr_clear(&err);
    return rc;
}

static void streamed_chunks_arrive_before_the_response_ends(void)
{
    env e;
    setup(&e, NULL);
    stream_reader *s = calloc(1, sizeof *s);
    CHECK_INT(stream(&e, "/drip", 0, s), 0);
    run_until(&e, &s->done.called, 1);
    CHECK_INT(s->done.failed, 0);
    CHECK_INT(s->done.status, 200);
    CHECK_INT(s->done.body_len, 0);          /* the body went to the reader */
    CHECK_INT(s->status, 200);
    CHECK_STR(s->ctype, "text/event-stream");
    CHECK_INT(s->len, 14);
    CHECK(memcmp(s->data, "one\ntwo\nthree\n", 14) == 0);
    /* 150 ms apart: each part was handed over as it came. */
    CHECK(s->chunks >= 3);
    CHECK_INT(s->before_done, s->chunks);
    result_clear(&s->done);
    free(s);
    teardown(&e);
}

static void a_stream_longer_than_the_buffer_cap_is_paused_not_failed(void)
{
    env e;
    hclient_config cfg = {.max_response_bytes = CAP_BYTES};
    setup(&e, &cfg);
    stream_reader *s = calloc(1, sizeof *s);
    CHECK_INT(stream(&e, "/chunked", 0, s), 0);
    run_until(&e, &s->done.called, 1);
    CHECK_INT(s->done.failed, 0);
    CHECK_INT(s->len, LARGE_BYTES);
    /* Never more than the cap waited for the reader (plus one chunk of
     * libcurl's at most). */
    CHECK(s->largest <= CAP_BYTES + 16384);
    CHECK(s->chunks > 1);
    result_clear(&s->done);
    free(s);
    teardown(&e);
}

static void a_reader_that_returns_minus_one_stops_the_stream(void)
{
    env e;
    setup(&e, NULL);
    stream_reader *s = calloc(1, sizeof *s);
    s->stop_after = 1;
    CHECK_INT(stream(&e, "/drip", 0, s), 0);
    run_until(&e, &s->done.called, 1);
    CHECK_INT(s->done.failed, 1);
    CHECK_INT(s->done.code, FERR_UPSTREAM_ERROR);
    CHECK_CONTAINS(s->done.message, "stopped by the reader");
    CHECK_INT(s->chunks, 1);
    CHECK_INT(hclient_in_flight(e.client), 0);
    result_clear(&s->done);
    free(s);
    teardown(&e);
}

static void cancel_from_inside_the_reader_ends_the_transfer_quietly(void)
{
    env e;
    setup(&e, NULL);
    stream_reader *s = calloc(1, sizeof *s);
    s->cancel_after = 1;
    CHECK_INT(stream(&e, "/drip", 0, s), 0);
    int seen = 0;
    while (s->done.called == 0 && !e.timed_out)
        event_base_loop(e.base, EVLOOP_ONCE);
    CHECK_INT(s->done.called, -1);   /* set by the reader; done never ran */
    CHECK_INT(hclient_in_flight(e.client), 0);
    /* Let the rest of the drip pass: nothing more reaches the reader. */
    struct event *wait = evtimer_new(e.base, on_guard, &e);
    struct timeval tv = {0, 500000};
    evtimer_add(wait, &tv);
    event_base_dispatch(e.base);
    event_free(wait);
    e.timed_out = 0;
    seen = s->chunks;
    CHECK_INT(seen, 1);
    result_clear(&s->done);
    free(s);
    teardown(&e);
}

static void a_stream_without_a_deadline_outlives_the_default_one(void)
{
    env e;
    hclient_config cfg = {.default_timeout_ms = 200};
    setup(&e, &cfg);
    stream_reader *s = calloc(1, sizeof *s);
    CHECK_INT(stream(&e, "/drip", -1, s), 0);   /* lasts ~300 ms */
    run_until(&e, &s->done.called, 1);
    CHECK_INT(s->done.failed, 0);
    CHECK_INT(s->len, 14);
    result_clear(&s->done);
    free(s);
    teardown(&e);
}

TESTS(TEST(successful_get_returns_status_lowercased_headers_and_body), TEST(redirects_are_returned_not_followed),
      TEST(deadline_ends_with_upstream_timeout), TEST(default_deadline_comes_from_the_config),
      TEST(response_over_the_cap_is_payload_too_large), TEST(refused_connection_is_upstream_error),
      TEST(unsupported_scheme_fails_without_a_request), TEST(post_body_and_custom_headers_arrive),
      TEST(non_public_address_is_egress_denied_unless_allowed),
      TEST(cancel_prevents_the_done_callback), TEST(many_transfers_in_flight_all_complete),
      TEST(slow_first_request_does_not_hold_up_others_to_the_same_host),
      TEST(connections_are_reused_between_transfers), TEST(free_with_transfers_in_flight_releases_everything),
      TEST(free_with_transfers_connecting_and_queued_releases_everything),
      TEST(free_before_the_loop_ran_releases_everything), TEST(streamed_chunks_arrive_before_the_response_ends),
      TEST(a_stream_longer_than_the_buffer_cap_is_paused_not_failed),
      TEST(a_reader_that_returns_minus_one_stops_the_stream),
      TEST(cancel_from_inside_the_reader_ends_the_transfer_quietly),
      TEST(a_stream_without_a_deadline_outlives_the_default_one))
