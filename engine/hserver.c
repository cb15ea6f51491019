#include "hserver.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "jsonfmt.h"

#define DEFAULT_MAX_BODY (1u << 20)
#define DEFAULT_BACKLOG 4096
#define MAX_PARAMS 4
#define MAX_ROUTES 64

typedef struct route {
    char method[8];
    char *pattern;
    const char *name;
    int flags;
    hserver_handler handler;
} route;

struct hserver {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    store *db;
    void *app;
    hserver_config cfg;
    char address[80];
    route routes[MAX_ROUTES];
    size_t nroutes;
    int draining;
    hreq *open;              /* answered-not-yet requests, doubly linked */
    size_t nopen;
    size_t nwriting;         /* answered, response not yet fully written */
};

struct hreq {
    hserver *hs;
    struct evhttp_request *req;
    hreq *prev, *next;
    char request_id[65];
    char method[8];
    char *path;
    const char *route_name;
    const char *param_names[MAX_PARAMS];
    char *param_values[MAX_PARAMS];
    int nparams;
    struct evkeyvalq query;
    int query_parsed;
    principal who;
    int has_who;
    json_t *json;
    struct timespec started;
};

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 302: return "Found";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    default: return "OTHER";
    }
}

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

/* ---- requests ---- */

const char *hreq_method(const hreq *r) { return r->method; }
const char *hreq_path(const hreq *r) { return r->path; }
const char *hreq_request_id(const hreq *r) { return r->request_id; }
const principal *hreq_principal(const hreq *r) { return r->has_who ? &r->who : NULL; }
json_t *hreq_json(const hreq *r) { return r->json; }

const char *hreq_body(hreq *r, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    *len = evbuffer_get_length(in);
    return *len ? (const char *)evbuffer_pullup(in, -1) : "";
}

size_t hreq_max_body(const hreq *r) { return r->hs->cfg.max_body; }

int hreq_authenticate(hreq *r, ferr *err)
{
    if (keys_authenticate(r->hs->db, hreq_header(r, "Authorization"), &r->who, err) < 0)
        return -1;
    r->has_who = 1;
    return 0;
}

const char *hreq_param(const hreq *r, const char *name)
{
    size_t n = strlen(name);
    /* param_names point into the pattern: "id}/more". */
    for (int i = 0; i < r->nparams; i++)
        if (strncmp(r->param_names[i], name, n) == 0 && r->param_names[i][n] == '}')
            return r->param_values[i];
    return NULL;
}

const char *hreq_query(hreq *r, const char *name)
{
    if (!r->query_parsed) {
        r->query_parsed = 1;
        const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(r->req));
        if (q && evhttp_parse_query_str(q, &r->query) < 0)
            evhttp_clear_headers(&r->query);
    }
    return evhttp_find_header(&r->query, name);
}

const char *hreq_header(const hreq *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->req), name);
}

void hreq_add_header(hreq *r, const char *name, const char *value)
{
    evhttp_add_header(evhttp_request_get_output_headers(r->req), name, value);
}

static void free_hreq(hreq *r)
{
    hserver *hs = r->hs;
    if (r->prev)
        r->prev->next = r->next;
    else
        hs->open = r->next;
    if (r->next)
        r->next->prev = r->prev;
    hs->nopen--;
    for (int i = 0; i < r->nparams; i++)
        free(r->param_values[i]);
    if (r->query_parsed)
        evhttp_clear_headers(&r->query);
    json_decref(r->json);
    free(r->path);
    free(r);
}

static void on_written(struct evhttp_request *req, void *arg)
{
    (void)req;
    hserver *hs = arg;
    hs->nwriting--;
}

void hreq_reply_evbuffer(hreq *r, int status, const char *content_type, struct evbuffer *body)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(r->req);
    if (content_type)
        evhttp_add_header(out, "Content-Type", content_type);
    evhttp_add_header(out, "X-Request-Id", r->request_id);
    evhttp_add_header(out, "Cache-Control", "no-store");
    if (r->hs->draining)
        evhttp_add_header(out, "Connection", "close");
    r->hs->nwriting++;
    evhttp_request_set_on_complete_cb(r->req, on_written, r->hs);
    evhttp_send_reply(r->req, status, reason(status), body);

    double ms = ms_since(&r->started);
    char status_text[8];
    snprintf(status_text, sizeof status_text, "%d", status);
    metrics_add(METRIC_HTTP_REQUESTS, 1, r->route_name ? r->route_name : "unmatched", status_text);
    log_line *l = log_begin(LOG_INFO, "request");
    log_str(l, "request_id", r->request_id);
    log_str(l, "method", r->method);
    log_str(l, "path", r->path);
    log_str(l, "route", r->route_name);
    log_int(l, "status", status);
    log_num(l, "duration_ms", ms);
    if (r->has_who) {
        log_str(l, "user", r->who.user);
        log_str(l, "team", r->who.team);
        log_str(l, "key_id", r->who.key_id);
    }
    log_end(l);
    free_hreq(r);
}

void hreq_reply_text(hreq *r, int status, const char *content_type, const char *text, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (len)
        evbuffer_add(buf, text, len);
    hreq_reply_evbuffer(r, status, content_type, buf);
    evbuffer_free(buf);
}

void hreq_reply_json(hreq *r, int status, json_t *body)
{
    if (status == 204 || !body) {
        json_decref(body);
        hreq_reply_text(r, status, NULL, NULL, 0);
        return;
    }
    size_t n = json_dumpb(body, NULL, 0, JSON_TEXT);
    struct evbuffer *buf = evbuffer_new();
    struct evbuffer_iovec vec;
    if (evbuffer_reserve_space(buf, (ev_ssize_t)n + 1, &vec, 1) == 1) {
        json_dumpb(body, vec.iov_base, n, JSON_TEXT);
        ((char *)vec.iov_base)[n] = '\n';
        vec.iov_len = n + 1;
        evbuffer_commit_space(buf, &vec, 1);
    }
    json_decref(body);
    hreq_reply_evbuffer(r, status, "application/json", buf);
    evbuffer_free(buf);
}

void hreq_reply_error(hreq *r, const ferr *e)
{
    int status = ferr_status(e);
    if (status == 401)
        hreq_add_header(r, "WWW-Authenticate", "Bearer");
    json_t *retry = e->details ? json_object_get(e->details, "retry_after") : NULL;
    if (status == 429 || status == 503) {
        /* Whole seconds, from 1 to a day, whatever a script or upstream said. */
        double secs = json_is_number(retry) ? json_number_value(retry) : 1;
        secs = !(secs > 1) ? 1 : secs < 86400 ? secs : 86400;
        char v[32];
        snprintf(v, sizeof v, "%lld", (long long)(secs + 0.999));
        hreq_add_header(r, "Retry-After", v);
    }
    hreq_reply_json(r, status, ferr_to_json(e));
}

static void reply_code(hreq *r, ferr_code code, int status, const char *message)
{
    ferr e = {0};
    ferr_set(&e, code, "%s", message);
    e.status = status;
    hreq_reply_error(r, &e);
    ferr_clear(&e);
}

/* ---- routing ---- */

int hserver_route(hserver *hs, const char *method, const char *pattern, const char *name, int flags,
                  hserver_handler handler)
{
    if (hs->nroutes == MAX_ROUTES)
        return -1;
    route *rt = &hs->routes[hs->nroutes++];
    snprintf(rt->method, sizeof rt->method, "%s", method);
    rt->pattern = strdup(pattern);
    rt->name = name;
    rt->flags = flags;
    rt->handler = handler;
    return 0;
}

/* Matches `path` against a pattern segment by segment; fills params. */
static int match(const char *pattern, const char *path, hreq *r)
{
    int n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *close = strchr(p, '}');
            const char *seg_end = strchr(s, '/');
            size_t len = seg_end ? (size_t)(seg_end - s) : strlen(s);
            if (!close || len == 0 || n == MAX_PARAMS)
                goto fail;
            r->param_names[n] = p + 1;   /* "name}..." — compared up to '}' below */
            r->param_values[n] = strndup(s, len);
            n++;
            p = close + 1;
            s += len;
            continue;
        }
        if (*p != *s)
            goto fail;
        p++;
        s++;
    }
    if (*p || *s)
        goto fail;
    r->nparams = n;
    return 1;
fail:
    for (int i = 0; i < n; i++)
        free(r->param_values[i]);
    return 0;
}

static int is_loopback(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
    if (!sa)
        return 0;
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

static void set_request_id(hreq *r)
{
    const char *given = evhttp_find_header(evhttp_request_get_input_headers(r->req), "X-Request-Id");
    if (given) {
        size_t n = strlen(given);
        int ok = n > 0 && n < sizeof r->request_id;
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char)given[i]) || given[i] == '-' || given[i] == '_' || given[i] == '.';
        if (ok) {
            memcpy(r->request_id, given, n + 1);
            return;
        }
    }
    log_new_request_id(r->request_id);
}

static int parse_body(hreq *r, int required)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = evbuffer_get_length(in);
    if (len > r->hs->cfg.max_body) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body is %zu bytes; the limit is %zu", len, r->hs->cfg.max_body);
        reply_code(r, FERR_PAYLOAD_TOO_LARGE, 0, msg);
        return -1;
    }
    if (!required)
        return 0;
    if (len == 0) {
        r->json = json_object();
        return 0;
    }
    const char *data = (const char *)evbuffer_pullup(in, -1);
    json_error_t jerr;
    r->json = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!r->json) {
        ferr e = {0};
        ferr_set(&e, FERR_BAD_REQUEST, "request body is not valid JSON: %s", jerr.text);
        ferr_detail(&e, "line", json_integer(jerr.line));
        ferr_detail(&e, "column", json_integer(jerr.column));
        hreq_reply_error(r, &e);
        ferr_clear(&e);
        return -1;
    }
    return 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    hserver *hs = arg;
    hreq *r = calloc(1, sizeof *r);
    if (!r) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &r->started);
    r->hs = hs;
    r->req = req;
    r->next = hs->open;
    if (hs->open)
        hs->open->prev = r;
    hs->open = r;
    hs->nopen++;
    TAILQ_INIT(&r->query);
    snprintf(r->method, sizeof r->method, "%s", method_name(evhttp_request_get_command(req)));
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    r->path = strdup(path && *path ? path : "/");
    set_request_id(r);

    if (hs->draining) {
        reply_code(r, FERR_INTERNAL, 503, "ferry is shutting down");
        return;
    }
    route *found = NULL;
    int path_matched = 0;
    char allow[64] = "";
    for (size_t i = 0; i < hs->nroutes && !found; i++) {
        if (!match(hs->routes[i].pattern, r->path, r))
            continue;
        path_matched = 1;
        /* RFC 9110: a 405 lists the methods the resource does allow. */
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof allow - used, "%s%s", used ? ", " : "", hs->routes[i].method);
        if (strcmp(hs->routes[i].method, r->method) == 0) {
            found = &hs->routes[i];
            break;
        }
        for (int k = 0; k < r->nparams; k++)
            free(r->param_values[k]);
        r->nparams = 0;
    }
    if (!found) {
        if (path_matched) {
            hreq_add_header(r, "Allow", allow);
            reply_code(r, FERR_BAD_REQUEST, 405, "method not allowed on this route");
        }
        else
            reply_code(r, FERR_NOT_FOUND, 0, "no such route");
        return;
    }
    r->route_name = found->name;
    if ((found->flags & ROUTE_LOOPBACK) && !hs->cfg.metrics_public && !is_loopback(req)) {
        reply_code(r, FERR_FORBIDDEN, 0, "this route answers loopback clients only");
        return;
    }
    if (!(found->flags & ROUTE_RAW_BODY) && parse_body(r, (found->flags & ROUTE_JSON) != 0) < 0)
        return;
    if (found->flags & ROUTE_AUTH) {
        ferr e = {0};
        if (keys_authenticate(hs->db, hreq_header(r, "Authorization"), &r->who, &e) < 0) {
            hreq_reply_error(r, &e);
            ferr_clear(&e);
            return;
        }
        r->has_who = 1;
    }
    found->handler(r, hs->app);
}

/* ---- the server ---- */

/* "127.0.0.1:8700", "[::1]:0", ":8700" (all IPv4 interfaces). Port 0 asks
 * the kernel for a free port, which libevent's own parser refuses. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, int *len)
{
    const char *colon = strrchr(spec, ':');
    if (!colon)
        return -1;
    char host[64];
    size_t hl = (size_t)(colon - spec);
    if (hl >= sizeof host)
        return -1;
    memcpy(host, spec, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == 0 || *end || port < 0 || port > 65535)
        return -1;
    memset(ss, 0, sizeof *ss);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        host[hl - 1] = 0;
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1)
            return -1;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        *len = sizeof *a;
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (hl == 0)
        a->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
        return -1;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    *len = sizeof *a;
    return 0;
}

hserver *hserver_new(struct event_base *base, store *db, const hserver_config *cfg, void *app, ferr *err)
{
    hserver *hs = calloc(1, sizeof *hs);
    if (!hs) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        return NULL;
    }
    hs->base = base;
    hs->db = db;
    hs->app = app;
    hs->cfg = *cfg;
    if (!hs->cfg.max_body)
        hs->cfg.max_body = DEFAULT_MAX_BODY;
    if (!hs->cfg.backlog)
        hs->cfg.backlog = DEFAULT_BACKLOG;

    struct sockaddr_storage ss;
    int sslen = sizeof ss;
    if (parse_listen(cfg->listen, &ss, &sslen) < 0) {
        ferr_set(err, FERR_BAD_REQUEST, "cannot parse listen address '%s' (want HOST:PORT)", cfg->listen);
        goto fail;
    }
    hs->http = evhttp_new(base);
    if (!hs->http) {
        ferr_set(err, FERR_INTERNAL, "cannot create the HTTP server");
        goto fail;
    }
    struct evconnlistener *lis = evconnlistener_new_bind(
        base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, hs->cfg.backlog,
        (struct sockaddr *)&ss, sslen);
    if (!lis) {
        ferr_set(err, FERR_BAD_REQUEST, "cannot listen on %s: %s", cfg->listen,
                 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        goto fail;
    }
    /* Accepted sockets inherit TCP_NODELAY on Linux: without it, the last
     * piece of a response over 16 KiB waits for the client's delayed ACK. */
    int one = 1;
    setsockopt(evconnlistener_get_fd(lis), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    hs->bound = evhttp_bind_listener(hs->http, lis);
    struct sockaddr_storage actual;
    socklen_t alen = sizeof actual;
    getsockname(evconnlistener_get_fd(lis), (struct sockaddr *)&actual, &alen);
    char host[64] = "?";
    int port = 0;
    if (actual.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&actual)->sin_addr, host, sizeof host);
        port = ntohs(((struct sockaddr_in *)&actual)->sin_port);
        snprintf(hs->address, sizeof hs->address, "%s:%d", host, port);
    } else {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&actual)->sin6_addr, host, sizeof host);
        port = ntohs(((struct sockaddr_in6 *)&actual)->sin6_port);
        snprintf(hs->address, sizeof hs->address, "[%s]:%d", host, port);
    }

    /* libevent answers bodies far over the limit itself (a plain 413 with
     * an HTML body) before we see them; below that cap ours answers with
     * the JSON error. See docs/decisions.md. */
    evhttp_set_max_body_size(hs->http, (ev_ssize_t)hs->cfg.max_body * 4);
    evhttp_set_max_headers_size(hs->http, 64 * 1024);
    evhttp_set_timeout(hs->http, 120);
    evhttp_set_allowed_methods(hs->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                             EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD |
                                             EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(hs->http, on_request, hs);
    return hs;
fail:
    hserver_free(hs);
    return NULL;
}

const char *hserver_address(const hserver *hs) { return hs->address; }
size_t hserver_open_requests(const hserver *hs) { return hs->nopen + hs->nwriting; }

void hserver_drain(hserver *hs)
{
    hs->draining = 1;
    if (hs->bound) {
        evhttp_del_accept_socket(hs->http, hs->bound);
        hs->bound = NULL;
    }
}

void hserver_free(hserver *hs)
{
    if (!hs)
        return;
    /* Requests still open are answered so their memory is released. */
    while (hs->open)
        reply_code(hs->open, FERR_INTERNAL, 503, "ferry is shutting down");
    if (hs->http)
        evhttp_free(hs->http);
    for (size_t i = 0; i < hs->nroutes; i++)
        free(hs->routes[i].pattern);
    free(hs);
}
