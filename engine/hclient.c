#include "hclient.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

#define DEFAULT_MAX_RESPONSE (32u << 20)
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_TIMEOUT_MS 30000L
/* Idle easy handles kept for reuse; creating one costs more than a reset. */
#define EASY_POOL_MAX 256
/* libcurl's receive buffer per transfer: 16 KiB by default, which is most
 * of a call's memory when ten thousand are in flight. */
#define RECV_BUFFER 8192

/*
 * Transfers are spread over several multi handles ("shards"). libcurl 7.88
 * walks every transfer or cached connection of a multi handle when it
 * removes a finished transfer or looks for a connection to reuse, so one
 * handle holding thousands costs O(n) per transfer. A transfer goes to the
 * least busy shard of its kind, lowest first, so light traffic stays on one
 * shard and reuses its connections.
 *
 * - TLS shards take https. A host gets at most TLS_HOST_CONNECTIONS per
 *   shard: over HTTP/2 each connection carries ~100 streams, and without
 *   the cap a burst of requests opens one TLS connection per request while
 *   the first ones are still handshaking.
 * - Plain shards take http (HTTP/1.1: one request per connection). Their
 *   connections are capped in total to half the process's file
 *   descriptors: excess requests queue instead of failing.
 */
#define TLS_SHARDS 8
#define TLS_HOST_CONNECTIONS 16
#define PLAIN_SHARDS 8
#define NSHARDS (TLS_SHARDS + PLAIN_SHARDS)
/* Each half of a kind's shards takes transfers allowed to reach non-public
 * addresses, the other half the rest: a connection opened under one
 * decision must never be reused under the other (the address check runs
 * only when a connection is opened). */
#define HALF(n) ((n) / 2)
/* Idle connections a shard keeps open after a burst. */
#define IDLE_CONNECTIONS 32

typedef struct shard {
    hclient *c;
    CURLM *multi;
    struct event *timer;
    size_t nactive;
} shard;

struct hclient {
    struct event_base *base;
    shard shards[NSHARDS];
    hclient_config cfg;
    hclient_xfer *active;        /* doubly linked list of transfers in flight */
    size_t nactive;
    CURL *pool[EASY_POOL_MAX];
    size_t npool;
};

struct hclient_xfer {
    hclient *c;
    shard *sh;
    hclient_xfer *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *req_body;
    hclient_done_fn done;
    void *arg;
    /* response being received */
    char *body;
    size_t body_len, body_cap;
    int too_large;
    int allow_private;
    /* streaming (on_data): chunks wait in body until the deliver event
     * hands them over on the loop, outside libcurl's callbacks */
    hclient_data_fn on_data;
    struct event *deliver;
    int deliver_pending;
    int in_callback;             /* on_data is running: a cancel waits for it */
    int cancelled;
    int stopped;                 /* the reader asked to stop */
    int paused;                  /* held back until the reader catches up */
    size_t streamed;             /* bytes handed to the reader */
    char blocked[64];            /* the refused address, when egress stopped it */
    hclient_header *rh;
    size_t nrh, rh_cap;
    /* for logs and metrics */
    char method[16];
    char host[256];
    char path[512];
    char request_id[17];
    char label[64];
    long timeout_ms;
    struct timespec started;
    char errbuf[CURL_ERROR_SIZE];
};

/* One per socket curl asks us to watch. */
typedef struct sock_watch {
    struct event *ev;
    shard *sh;
} sock_watch;

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void check_done(shard *sh);

static void on_socket_event(evutil_socket_t fd, short events, void *arg)
{
    sock_watch *w = arg;
    shard *sh = w->sh;
    int action = (events & EV_READ ? CURL_CSELECT_IN : 0) | (events & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(sh->multi, fd, action, &running);
    check_done(sh);
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    shard *sh = arg;
    int running;
    curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(sh);
}

/* CURLMOPT_SOCKETFUNCTION: watch, rewatch or forget a socket. */
static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    shard *sh = userp;
    sock_watch *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w) {
            event_free(w->ev);
            free(w);
            curl_multi_assign(sh->multi, s, NULL);
        }
        return 0;
    }
    short kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w)
            return -1;
        w->sh = sh;
        curl_multi_assign(sh->multi, s, w);
    } else {
        /* Same socket, other interest: reuse the event. */
        event_del(w->ev);
        if (event_assign(w->ev, sh->c->base, s, kind, on_socket_event, w) < 0 || event_add(w->ev, NULL) < 0)
            return -1;
        return 0;
    }
    w->ev = event_new(sh->c->base, s, kind, on_socket_event, w);
    if (!w->ev || event_add(w->ev, NULL) < 0)
        return -1;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl wants one timer per multi; -1 removes it. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    shard *sh = userp;
    if (timeout_ms < 0) {
        evtimer_del(sh->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    return evtimer_add(sh->timer, &tv);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    hclient_xfer *x = arg;
    size_t n = size * nmemb;
    if (x->stopped)
        return 0;
    /* A stream is held back (paused) while its reader has not caught up,
     * instead of failing: its size is unbounded by nature. */
    if (x->on_data && x->body_len && x->body_len + n > x->c->cfg.max_response_bytes) {
        x->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (!x->on_data && x->body_len + n > x->c->cfg.max_response_bytes) {
        x->too_large = 1;
        return 0;   /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (x->body_len + n + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 4096;
        while (cap < x->body_len + n + 1)
            cap *= 2;
        char *b = realloc(x->body, cap);
        if (!b)
            return 0;
        x->body = b;
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    /* A stream's reader runs later, from the loop: libcurl forbids adding
     * or removing transfers from inside its callbacks, and a reader may
     * well do either. */
    if (x->on_data && !x->deliver_pending) {
        x->deliver_pending = 1;
        event_active(x->deliver, EV_TIMEOUT, 1);
    }
    return n;
}

static void free_response_headers(hclient_xfer *x)
{
    for (size_t i = 0; i < x->nrh; i++) {
        free(x->rh[i].name);
        free(x->rh[i].value);
    }
    x->nrh = 0;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    hclient_xfer *x = arg;
    size_t n = size * nmemb;
    /* A new status line starts a new response (after 100 Continue). */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        free_response_headers(x);
        return n;
    }
    const char *colon = memchr(data, ':', n);
    if (!colon || colon == data || data[0] == ' ' || data[0] == '\t')
        return n;
    const char *v = colon + 1, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (x->nrh == x->rh_cap) {
        size_t cap = x->rh_cap ? x->rh_cap * 2 : 16;
        hclient_header *h = realloc(x->rh, cap * sizeof *h);
        if (!h)
            return 0;
        x->rh = h;
        x->rh_cap = cap;
    }
    hclient_header *h = &x->rh[x->nrh];
    h->name = strndup(data, (size_t)(colon - data));
    h->value = strndup(v, (size_t)(end - v));
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return 0;
    }
    for (char *p = h->name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    x->nrh++;
    return n;
}

static void unlink_xfer(hclient_xfer *x)
{
    hclient *c = x->c;
    x->sh->nactive--;
    if (x->prev)
        x->prev->next = x->next;
    else
        c->active = x->next;
    if (x->next)
        x->next->prev = x->prev;
    c->nactive--;
}

/* Addresses an upstream must not have unless declared: loopback, private,
 * link-local (cloud metadata lives at 169.254.169.254), shared, reserved,
 * multicast, unspecified. */
static int non_public_v4(uint32_t a)
{
    return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a >> 16) == 0xa9fe ||
           (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8 || (a >> 22) == (100u << 2 | 1) ||
           (a >> 8) == 0xc00000 || (a >> 17) == (198u << 7 | 9) || (a >> 28) >= 0xe;
}

static int non_public(const struct sockaddr *sa, char *text, size_t cap)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)cap);
        return non_public_v4(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        inet_ntop(AF_INET6, a, text, (socklen_t)cap);
        /* IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
         * NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:AABB:CCDD::) reach the
         * IPv4 address they carry, so they are judged by it. */
        static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
        uint32_t v4;
        if (IN6_IS_ADDR_V4MAPPED(a) || IN6_IS_ADDR_V4COMPAT(a) || memcmp(a->s6_addr, nat64, 12) == 0) {
            memcpy(&v4, &a->s6_addr[12], 4);
            return non_public_v4(ntohl(v4));
        }
        if (a->s6_addr[0] == 0x20 && a->s6_addr[1] == 0x02) {
            memcpy(&v4, &a->s6_addr[2], 4);
            return non_public_v4(ntohl(v4));
        }
        return IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a) || IN6_IS_ADDR_LINKLOCAL(a) ||
               IN6_IS_ADDR_SITELOCAL(a) || IN6_IS_ADDR_MULTICAST(a) || (a->s6_addr[0] & 0xfe) == 0xfc;
    }
    snprintf(text, cap, "?");
    return 1;
}

/* CURLOPT_OPENSOCKETFUNCTION: the last look at where a connection goes,
 * after name resolution and before connect. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
    hclient_xfer *x = clientp;
    (void)purpose;
    char text[64];
    if (!x->allow_private && non_public(&address->addr, text, sizeof text)) {
        snprintf(x->blocked, sizeof x->blocked, "%s", text);
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* Detaches and frees a transfer; its easy handle goes back to the pool. */
static void release(hclient_xfer *x)
{
    hclient *c = x->c;
    if (x->sh)
        curl_multi_remove_handle(x->sh->multi, x->easy);
    if (c->npool < EASY_POOL_MAX) {
        /* Not reset: the options every transfer shares stay set (see
         * new_easy); hclient_start sets all the others each time. */
        c->pool[c->npool++] = x->easy;
    } else {
        curl_easy_cleanup(x->easy);
    }
    if (x->deliver)
        event_free(x->deliver);
    curl_slist_free_all(x->headers);
    free(x->req_body);
    free(x->body);
    free_response_headers(x);
    free(x->rh);
    free(x);
}

static void record(hclient_xfer *x, const char *status, double ms, size_t bytes)
{
    metrics_add(METRIC_UPSTREAM_REQUESTS, 1, x->host, status);
    metrics_observe(METRIC_UPSTREAM_SECONDS, ms / 1e3, x->host);
    log_line *l = log_begin(LOG_INFO, "upstream");
    log_str(l, "request_id", x->request_id[0] ? x->request_id : NULL);
    log_str(l, "provider", x->label[0] ? x->label : NULL);
    log_str(l, "method", x->method);
    log_str(l, "host", x->host);
    log_str(l, "path", x->path);
    log_str(l, "status", status);
    log_num(l, "duration_ms", ms);
    log_int(l, "bytes", (long long)bytes);
    log_end(l);
}

/* Hands a stream's waiting chunks to its reader. Returns 0, -1 when the
 * reader asked to stop, or 1 when it cancelled the transfer meanwhile (x
 * is then freed). */
static int deliver(hclient_xfer *x)
{
    if (!x->body_len)
        return 0;
    hclient_response head = {0};
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &head.status);
    head.headers = x->rh;
    head.nheaders = x->nrh;
    head.body = (char *)"";
    x->in_callback = 1;
    x->streamed += x->body_len;
    int rc = x->on_data(x->arg, &head, x->body, x->body_len);
    x->in_callback = 0;
    x->body_len = 0;
    if (x->cancelled) {
        unlink_xfer(x);
        release(x);
        return 1;
    }
    if (rc < 0)
        return -1;
    if (x->paused) {
        x->paused = 0;
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
    }
    return 0;
}

static void finish(hclient_xfer *x, CURLcode rc);

static void on_deliver(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    hclient_xfer *x = arg;
    x->deliver_pending = 0;
    if (deliver(x) < 0) {
        x->stopped = 1;
        finish(x, CURLE_WRITE_ERROR);
    }
}

static void finish(hclient_xfer *x, CURLcode rc)
{
    hclient *c = x->c;
    /* What arrived before the end is the reader's, even when the end is
     * an error (the events before a broken stream still count). */
    if (x->on_data && !x->stopped) {
        int d = deliver(x);
        if (d > 0)
            return;
        if (d < 0)
            x->stopped = 1;
    }
    unlink_xfer(x);
    double ms = ms_since(&x->started);
    ferr err = {0};
    hclient_response resp = {0};
    char status[32];

    if (rc == CURLE_OK) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &resp.status);
        resp.headers = x->rh;
        resp.nheaders = x->nrh;
        if (!x->body) {
            x->body = calloc(1, 1);
        } else {
            x->body[x->body_len] = 0;
        }
        resp.body = x->body;
        resp.body_len = x->body_len;
        resp.duration_ms = ms;
        snprintf(status, sizeof status, "%ld", resp.status);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        curl_off_t connected = 0;
        curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connected);
        if (connected == 0)
            ferr_set(&err, FERR_UPSTREAM_TIMEOUT, "could not connect to %s within %ld ms", x->host,
                     ms < (double)c->cfg.connect_timeout_ms ? x->timeout_ms : c->cfg.connect_timeout_ms);
        else
            ferr_set(&err, FERR_UPSTREAM_TIMEOUT, "%s did not answer within %ld ms", x->host, x->timeout_ms);
    } else if (x->stopped) {
        ferr_set(&err, FERR_UPSTREAM_ERROR, "the stream from %s was stopped by the reader", x->host);
    } else if (x->blocked[0]) {
        ferr_set(&err, FERR_EGRESS_DENIED,
                 "%s resolves to %s, a non-public address; refused (declare that address in hosts, or point "
                 "the provider there with --base-url)", x->host, x->blocked);
    } else if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        ferr_set(&err, FERR_PAYLOAD_TOO_LARGE, "the response from %s is larger than %zu bytes", x->host,
                 c->cfg.max_response_bytes);
    } else if (rc == CURLE_PARTIAL_FILE) {
        ferr_set(&err, FERR_UPSTREAM_ERROR, "%s closed the connection before the whole response arrived",
                 x->host);
    } else {
        ferr_set(&err, FERR_UPSTREAM_ERROR, "request to %s failed: %s", x->host,
                 x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    }
    if (err.code) {
        ferr_detail(&err, "host", json_string(x->host));
        snprintf(status, sizeof status, "%s", ferr_code_name(err.code));
    }
    record(x, status, ms, x->on_data ? x->streamed : x->body_len);
    if (err.code)
        x->done(x->arg, NULL, &err);
    else
        x->done(x->arg, &resp, NULL);
    ferr_clear(&err);
    release(x);
}

static void check_done(shard *sh)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(sh->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        hclient_xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x)
            finish(x, msg->data.result);
    }
}

static int shard_init(hclient *c, shard *sh, int tls, long max_total)
{
    sh->c = c;
    sh->multi = curl_multi_init();
    sh->timer = evtimer_new(c->base, on_timer, sh);
    if (!sh->multi || !sh->timer)
        return -1;
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
    curl_multi_setopt(sh->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, (long)IDLE_CONNECTIONS);
    if (tls)
        curl_multi_setopt(sh->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)TLS_HOST_CONNECTIONS);
    else
        curl_multi_setopt(sh->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_total);
    return 0;
}

hclient *hclient_new(struct event_base *base, const hclient_config *cfg)
{
    hclient *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    if (cfg)
        c->cfg = *cfg;
    if (!c->cfg.max_response_bytes)
        c->cfg.max_response_bytes = DEFAULT_MAX_RESPONSE;
    if (!c->cfg.connect_timeout_ms)
        c->cfg.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (!c->cfg.default_timeout_ms)
        c->cfg.default_timeout_ms = DEFAULT_TIMEOUT_MS;
    struct rlimit rl;
    long fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY ? (long)rl.rlim_cur : 65536;
    long per_shard = fds / 2 / PLAIN_SHARDS;
    for (int i = 0; i < NSHARDS; i++)
        if (shard_init(c, &c->shards[i], i < TLS_SHARDS, per_shard > 8 ? per_shard : 8) < 0) {
            hclient_free(c);
            return NULL;
        }
    return c;
}

void hclient_free(hclient *c)
{
    if (!c)
        return;
    while (c->active) {
        hclient_xfer *x = c->active;
        unlink_xfer(x);
        release(x);
    }
    for (size_t i = 0; i < c->npool; i++)
        curl_easy_cleanup(c->pool[i]);
    for (int i = 0; i < NSHARDS; i++) {
        if (c->shards[i].multi)
            curl_multi_cleanup(c->shards[i].multi);
        if (c->shards[i].timer)
            event_free(c->shards[i].timer);
    }
    free(c);
}

/* A new easy handle with the options every transfer shares. */
static CURL *new_easy(hclient *c)
{
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* No proxy from the environment (http_proxy, ALL_PROXY...): the
     * address check in open_socket would see the proxy's address, not the
     * upstream's, and a proxy would reach what ferry refuses. */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->cfg.max_response_bytes);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "ferry/" FERRY_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)RECV_BUFFER);
    if (c->cfg.ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->cfg.ca_file);
    return e;
}

/* The least busy shard of the kind the transfer needs, lowest first. */
static shard *pick_shard(hclient *c, const char *url, int allow_private)
{
    int tls = strncasecmp(url, "https:", 6) == 0;
    int first = tls ? 0 : TLS_SHARDS;
    int count = HALF(tls ? TLS_SHARDS : PLAIN_SHARDS);
    if (allow_private)
        first += count;
    shard *best = &c->shards[first];
    for (int i = first + 1; i < first + count && best->nactive > 0; i++)
        if (c->shards[i].nactive < best->nactive)
            best = &c->shards[i];
    return best;
}

static void describe_url(hclient_xfer *x, const char *url, const char *host, const char *path)
{
    if (host && path) {
        snprintf(x->host, sizeof x->host, "%s", host);
        snprintf(x->path, sizeof x->path, "%s", path);
        return;
    }
    CURLU *u = curl_url();
    char *h = NULL, *p = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_HOST, &h, 0);
        curl_url_get(u, CURLUPART_PATH, &p, 0);
    }
    snprintf(x->host, sizeof x->host, "%s", host ? host : h ? h : "?");
    /* The path only: query strings may carry credentials. */
    snprintf(x->path, sizeof x->path, "%s", path ? path : p ? p : "/");
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
}

int hclient_start(hclient *c, hclient_request *req, hclient_done_fn done, void *arg, hclient_xfer **out,
                  ferr *err)
{
    if (out)
        *out = NULL;
    hclient_xfer *x = calloc(1, sizeof *x);
    if (!x) {
        curl_slist_free_all(req->headers);
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    }
    x->c = c;
    x->done = done;
    x->arg = arg;
    x->headers = req->headers;
    req->headers = NULL;
    x->easy = c->npool ? c->pool[--c->npool] : new_easy(c);
    if (!x->easy) {
        curl_slist_free_all(x->headers);
        free(x);
        return ferr_set(err, FERR_INTERNAL, "cannot create a transfer");
    }
    const char *method = req->method ? req->method : "GET";
    snprintf(x->method, sizeof x->method, "%s", method);
    snprintf(x->request_id, sizeof x->request_id, "%s", req->request_id ? req->request_id : "");
    snprintf(x->label, sizeof x->label, "%s", req->label ? req->label : "");
    describe_url(x, req->url, req->host, req->path);
    x->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : req->timeout_ms < 0 ? 0 : c->cfg.default_timeout_ms;
    x->on_data = req->on_data;
    if (x->on_data && !(x->deliver = event_new(c->base, -1, 0, on_deliver, x))) {
        release(x);
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    }

    /* Every option that differs between transfers is set here, each time:
     * pooled handles keep what the previous transfer set. */
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    /* A stream has no size of its own to cap; what waits undelivered is
     * capped in on_body instead. TCP keepalive notices a peer that went
     * away without closing, where no deadline would. */
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, x->on_data ? (curl_off_t)0 : (curl_off_t)c->cfg.max_response_bytes);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, x->on_data ? 1L : 0L);
    /* Over TLS, wait for a connection that may multiplex (HTTP/2 is known
     * after the handshake) rather than opening one per request. Never for
     * plain http: curl would hold every request to the host until the first
     * answer arrives. */
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, strncasecmp(req->url, "https:", 6) == 0 ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
    x->allow_private = req->allow_private;
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    /* No "Expect: 100-continue" round trip before large bodies. */
    x->headers = curl_slist_append(x->headers, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);   /* no stale body pointer */
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);        /* back to a plain GET */
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0 || req->body) {
        if (req->body) {
            x->req_body = malloc(req->body_len + 1);
            if (!x->req_body) {
                release(x);
                return ferr_set(err, FERR_INTERNAL, "out of memory");
            }
            memcpy(x->req_body, req->body, req->body_len);
        }
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->req_body ? x->req_body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
    }

    clock_gettime(CLOCK_MONOTONIC, &x->started);
    shard *sh = pick_shard(c, req->url, req->allow_private);
    if (curl_multi_add_handle(sh->multi, e) != CURLM_OK) {
        release(x);
        return ferr_set(err, FERR_INTERNAL, "cannot start the transfer");
    }
    x->sh = sh;
    sh->nactive++;
    x->next = c->active;
    if (c->active)
        c->active->prev = x;
    c->active = x;
    c->nactive++;
    if (out)
        *out = x;
    return 0;
}

void hclient_cancel(hclient_xfer *x)
{
    if (!x)
        return;
    if (x->in_callback) {
        x->cancelled = 1;   /* deliver() frees it when the reader returns */
        return;
    }
    unlink_xfer(x);
    release(x);
}

size_t hclient_in_flight(const hclient *c) { return c->nactive; }
