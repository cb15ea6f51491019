#include "mcpc_session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "log.h"
#include "mcpc_http.h"
#include "mcpc_proto.h"
#include "mcpc_stdio.h"

#define DEFAULT_TIMEOUT_MS 30000L
/* stdio's era probe: a legacy server may never answer server/discover. */
#define PROBE_TIMEOUT_MS 5000L
/* An HTTP transfer outlives its request's deadline by this much, so the
 * session's own timer (which cancels properly) always fires first. */
#define TRANSFER_SLACK_MS 5000L
#define MAX_PAGES 1000
#define MAX_RESUMES 3
#define LISTEN_BACKOFF_MIN_MS 1000L
#define LISTEN_BACKOFF_MAX_MS 60000L
#define MIN_SECRET 6

typedef enum { ST_IDLE, ST_CONNECTING, ST_READY } conn_state;
typedef enum { ERA_UNKNOWN, ERA_MODERN, ERA_LEGACY } proto_era;
typedef enum { CH_NONE, CH_HTTP, CH_SSE, CH_STDIO } channel;

typedef struct rpc rpc;

/* How a request ended: exactly one of result, error (a JSON-RPC error
 * object) or fail is set. */
typedef struct rpc_outcome {
    json_t *result;
    json_t *error;
    const ferr *fail;        /* coded, details.mcp_error says which kind */
    long status;             /* HTTP status of a failed answer, or 0 */
} rpc_outcome;

typedef void (*rpc_done_fn)(rpc *r, const rpc_outcome *o);

struct rpc {
    rpc *prev, *next;
    mcpc_session *s;
    json_int_t id;           /* 0 until sent */
    char method[48];
    json_t *params;          /* without _meta: added when sent */
    json_t *param_headers;   /* tools/call: x-mcp-header annotations */
    long timeout_ms;         /* < 0: none */
    struct event *timer;
    struct event *resume_timer;
    mcpc_http *x;            /* HTTP: the exchange carrying the answer */
    unsigned sid_gen;        /* the HTTP session it was sent in */
    int modern;              /* sent with 2026-07-28's _meta */
    int sent, queued, step, listen;
    int retries, resumes;
    int lost;                /* its channel went away (channel_lost) */
    int broke;               /* an answer stream of it broke (transport), not just ended */
    char last_event_id[256];
    long retry_ms;
    rpc_done_fn done;
    void *owner;
};

/* A request nobody waits for (a notification, an answer to the server, a
 * cancellation) or whose end only moves connecting on. */
typedef struct aux {
    struct aux *next;
    mcpc_session *s;
    mcpc_http *x;
    void (*then)(mcpc_session *s, const mcpc_http_end *end);
} aux;

struct mcpc_call {
    mcpc_call *prev, *next;
    mcpc_session *s;
    int is_list;
    rpc *r;
    mcpc_list_fn list_done;
    mcpc_call_fn call_done;
    void *arg;
    char tool[256];
    json_t *args, *param_headers;
    long timeout_ms;
    json_t *tools, *rejected, *names, *cursors;
    int pages;
    json_t *result;
    ferr err;
    struct event *later;     /* callbacks run from here, on the loop */
};

struct mcpc_session {
    mcpc_config cfg;
    char *label, *url, *cwd, *log_path;
    char **headers, **argv, **env, **secrets;
    conn_state state;
    proto_era era;
    channel ch;
    char version[16];
    char session_id[256];
    unsigned sid_gen;
    int era_cached;          /* connecting starts from what worked last time */
    json_t *server_info, *capabilities;
    json_int_t next_id;
    rpc *rpcs;
    mcpc_call *calls;
    aux *aux;
    /* HTTP+SSE */
    mcpc_http *sse;
    char *endpoint;
    struct event *endpoint_timer;
    /* stdio */
    mcpc_stdio *proc;
    /* list_changed */
    int want_listen, listen_unsupported;
    mcpc_http *listen_x;
    rpc *listen_rpc;
    struct event *listen_timer;
    long listen_backoff_ms;
};

static void send_rpc(rpc *r);
static void connect_start(mcpc_session *s);
static void on_message(mcpc_session *s, json_t *msg, rpc *via);
static void listen_start(mcpc_session *s);
static void listen_stop(mcpc_session *s);
static void step_initialize(mcpc_session *s, const char *version);
static void open_sse(mcpc_session *s);

/* ---- small helpers ---- */

static char **copy_list(const char *const *l)
{
    size_t n = 0;
    while (l && l[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++)
        out[i] = strdup(l[i]);
    return out;
}

static void free_list(char **l, int wipe)
{
    for (size_t i = 0; l && l[i]; i++) {
        if (wipe)
            OPENSSL_cleanse(l[i], strlen(l[i]));
        free(l[i]);
    }
    free(l);
}

/* Every value of the server's secrets in `in` replaced by [redacted];
 * malloc'd. One forward pass per secret: what was just written is never
 * searched again (a secret inside "[redacted]" cannot loop), and the text
 * is copied once per secret, not once per hit. */
static char *mask_one(const char *in, const char *sec, size_t sl)
{
    static const char mark[] = "[redacted]";
    size_t hits = 0, len = strlen(in);
    for (const char *p = strstr(in, sec); p; p = strstr(p + sl, sec))
        hits++;
    if (!hits)
        return NULL;
    size_t cap = len + hits * (sizeof mark - 1) + 1;   /* never less than the result */
    char *out = malloc(cap), *w = out;
    if (!out)
        return NULL;
    const char *from = in;
    for (const char *p = strstr(in, sec); p; p = strstr(from, sec)) {
        memcpy(w, from, (size_t)(p - from));
        w += p - from;
        memcpy(w, mark, sizeof mark - 1);
        w += sizeof mark - 1;
        from = p + sl;
    }
    memcpy(w, from, strlen(from) + 1);
    return out;
}

static char *mask_str(const mcpc_session *s, const char *in)
{
    char *out = strdup(in ? in : "");
    for (size_t i = 0; out && s->secrets && s->secrets[i]; i++) {
        size_t sl = strlen(s->secrets[i]);
        if (sl < MIN_SECRET)
            continue;
        char *masked = mask_one(out, s->secrets[i], sl);
        if (masked) {
            free(out);
            out = masked;
        }
    }
    return out;
}

static void mask_json(const mcpc_session *s, json_t *v)
{
    if (!s->secrets || !s->secrets[0])
        return;
    if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach(v, k, item) {
            if (json_is_string(item)) {
                char *m = mask_str(s, json_string_value(item));
                if (m && strcmp(m, json_string_value(item)) != 0)
                    json_object_set_new(v, k, json_string(m));
                free(m);
            } else {
                mask_json(s, item);
            }
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) {
            if (json_is_string(item)) {
                char *m = mask_str(s, json_string_value(item));
                if (m && strcmp(m, json_string_value(item)) != 0)
                    json_array_set_new(v, i, json_string(m));
                free(m);
            } else {
                mask_json(s, item);
            }
        }
    }
}

/* A coded failure: details.mcp_error says which kind ("transport",
 * "protocol", "http", "timeout", "jsonrpc", "session", "version"). The
 * message is masked. */
static void fail_set(const mcpc_session *s, ferr *e, ferr_code code, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void fail_set(const mcpc_session *s, ferr *e, ferr_code code, const char *kind, const char *fmt, ...)
{
    char text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    char *m = mask_str(s, text);
    ferr_set(e, code, "%s", m ? m : text);
    free(m);
    ferr_detail(e, "mcp_error", json_string(kind));
}

static int modern(const mcpc_session *s) { return s->era == ERA_MODERN; }

static const char *transport_name(channel ch)
{
    return ch == CH_HTTP ? "streamable_http" : ch == CH_SSE ? "sse" : ch == CH_STDIO ? "stdio" : "none";
}

static void log_event(const mcpc_session *s, int level, const char *msg, const char *detail)
{
    log_line *l = log_begin(level, msg);
    log_str(l, "mcp_server", s->label);
    log_str(l, "transport", transport_name(s->ch));
    if (s->version[0])
        log_str(l, "version", s->version);
    if (detail) {
        char *m = mask_str(s, detail);
        log_str(l, "detail", m);
        free(m);
    }
    log_end(l);
}

/* ---- requests ---- */

static void rpc_unlink(rpc *r)
{
    mcpc_session *s = r->s;
    if (r->prev)
        r->prev->next = r->next;
    else if (s->rpcs == r)
        s->rpcs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void rpc_free(rpc *r)
{
    rpc_unlink(r);
    if (r->timer)
        event_free(r->timer);
    if (r->resume_timer)
        event_free(r->resume_timer);
    mcpc_http_cancel(r->x);
    json_decref(r->params);
    json_decref(r->param_headers);
    if (r->s->listen_rpc == r)
        r->s->listen_rpc = NULL;
    free(r);
}

/* Ends a request: its exchange is dropped, its continuation runs, it is
 * freed. */
static void rpc_end(rpc *r, const rpc_outcome *o)
{
    rpc_unlink(r);
    if (r->timer)
        event_del(r->timer);
    mcpc_http_cancel(r->x);
    r->x = NULL;
    if (r->done)
        r->done(r, o);
    rpc_free(r);
}

static void rpc_fail(rpc *r, const ferr *e, long status)
{
    rpc_outcome o = {.fail = e, .status = status};
    rpc_end(r, &o);
}

static void on_rpc_timeout(evutil_socket_t fd, short events, void *arg);

static rpc *rpc_new(mcpc_session *s, const char *method, json_t *params, long timeout_ms, rpc_done_fn done,
                    void *owner)
{
    rpc *r = calloc(1, sizeof *r);
    if (!r) {
        json_decref(params);
        return NULL;
    }
    r->s = s;
    snprintf(r->method, sizeof r->method, "%s", method);
    r->params = params ? params : json_object();
    r->timeout_ms = timeout_ms;
    r->done = done;
    r->owner = owner;
    r->retry_ms = -1;
    if (timeout_ms >= 0) {
        r->timer = evtimer_new(s->cfg.base, on_rpc_timeout, r);
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        if (r->timer)
            evtimer_add(r->timer, &tv);
    }
    r->next = s->rpcs;
    if (s->rpcs)
        s->rpcs->prev = r;
    s->rpcs = r;
    return r;
}

static rpc *rpc_find(mcpc_session *s, json_int_t id)
{
    for (rpc *r = s->rpcs; r && id > 0; r = r->next)
        if (r->id == id && r->sent)
            return r;
    return NULL;
}

/* ---- requests nobody waits for ---- */

static void on_aux_message(void *arg, mcpc_http *x, json_t *msg)
{
    (void)x;
    aux *a = arg;
    on_message(a->s, msg, NULL);
}

static void aux_unlink(aux *a)
{
    aux **pp = &a->s->aux;
    while (*pp && *pp != a)
        pp = &(*pp)->next;
    if (*pp)
        *pp = a->next;
}

static void on_aux_done(void *arg, mcpc_http *x, const mcpc_http_end *end)
{
    (void)x;
    aux *a = arg;
    aux_unlink(a);
    if (a->then)
        a->then(a->s, end);
    free(a);
}

static struct curl_slist *base_headers(mcpc_session *s, int json_body)
{
    struct curl_slist *h = NULL;
    for (size_t i = 0; s->headers && s->headers[i]; i++)
        h = curl_slist_append(h, s->headers[i]);
    if (json_body)
        h = curl_slist_append(h, "Content-Type: application/json");
    return h;
}

/* Headers of Streamable HTTP after initialization: the version and, in the
 * legacy era, the session. */
static struct curl_slist *session_headers(mcpc_session *s, struct curl_slist *h)
{
    char line[320];
    if (s->version[0]) {
        snprintf(line, sizeof line, "MCP-Protocol-Version: %s", s->version);
        h = curl_slist_append(h, line);
    }
    if (s->session_id[0]) {
        snprintf(line, sizeof line, "Mcp-Session-Id: %s", s->session_id);
        h = curl_slist_append(h, line);
    }
    return h;
}

/* POSTs a notification or an answer (HTTP: the MCP endpoint; HTTP+SSE:
 * the endpoint the stream named), or writes it (stdio). -1 when it could
 * not be sent. */
static int send_other(mcpc_session *s, json_t *msg, void (*then)(mcpc_session *, const mcpc_http_end *))
{
    char *body = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!body)
        return -1;
    int rc = 0;
    if (s->ch == CH_STDIO) {
        rc = s->proc ? mcpc_stdio_write(s->proc, body, strlen(body)) : -1;
        free(body);
        return rc;
    }
    aux *a = calloc(1, sizeof *a);
    if (!a) {
        free(body);
        return -1;
    }
    a->s = s;
    a->then = then;
    struct curl_slist *h = base_headers(s, 1);
    if (s->ch == CH_HTTP) {
        h = curl_slist_append(h, "Accept: application/json, text/event-stream");
        h = session_headers(s, h);
    }
    mcpc_http_req req = {.method = "POST", .url = s->ch == CH_SSE ? s->endpoint : s->url, .headers = h,
                         .body = body, .timeout_ms = s->cfg.timeout_ms, .allow_private = s->cfg.allow_private,
                         .label = s->label, .log_path = s->ch == CH_SSE ? NULL : s->log_path};
    mcpc_http_cb cb = {.arg = a, .message = on_aux_message, .done = on_aux_done};
    ferr e = {0};
    a->x = req.url ? mcpc_http_start(s->cfg.http, &req, &cb, &e) : NULL;
    if (!req.url)
        curl_slist_free_all(req.headers);
    free(body);
    ferr_clear(&e);
    if (!a->x) {
        free(a);
        return -1;
    }
    a->next = s->aux;
    s->aux = a;
    return rc;
}

/* Tells the server a request will not be waited for: stdio always, and
 * the legacy era's HTTP transports (where a closed stream is not a
 * cancellation); 2026-07-28 over HTTP: closing the stream is the signal.
 * initialize is never cancelled. */
static void tell_cancelled(rpc *r, const char *reason)
{
    mcpc_session *s = r->s;
    if (!r->sent || strcmp(r->method, "initialize") == 0 || s->state == ST_IDLE)
        return;
    if (s->ch == CH_HTTP && modern(s))
        return;
    json_t *params = json_pack("{s:I, s:s}", "requestId", (json_int_t)r->id, "reason", reason);
    send_other(s, mcpc_proto_notification("notifications/cancelled", params), NULL);
}

static void on_rpc_timeout(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    rpc *r = arg;
    mcpc_session *s = r->s;
    tell_cancelled(r, "timed out");
    ferr e = {0};
    fail_set(s, &e, FERR_UPSTREAM_TIMEOUT, "timeout", "the MCP server %s did not answer %s within %ld ms", s->label,
             r->method, r->timeout_ms);
    log_event(s, LOG_WARN, "mcp request timed out", r->method);
    rpc_fail(r, &e, 0);
    ferr_clear(&e);
}

/* ---- Streamable HTTP ---- */

static void http_answer_ended(rpc *r, const mcpc_http_end *end);

static void on_x_message(void *arg, mcpc_http *x, json_t *msg)
{
    rpc *r = arg;
    mcpc_session *s = r->s;
    /* The session of 2025-11-25 starts with initialize's answer. */
    if (strcmp(r->method, "initialize") == 0 && mcpc_http_session_id(x) && s->ch == CH_HTTP) {
        snprintf(s->session_id, sizeof s->session_id, "%s", mcpc_http_session_id(x));
        s->sid_gen++;
    }
    on_message(s, msg, r);
}

static void on_x_done(void *arg, mcpc_http *x, const mcpc_http_end *end)
{
    (void)x;
    rpc *r = arg;
    r->x = NULL;
    http_answer_ended(r, end);
}

static int http_send(mcpc_session *s, rpc *r, json_t *msg, const char *resume_from)
{
    struct curl_slist *h = base_headers(s, !resume_from);
    char line[600];
    if (resume_from) {
        h = curl_slist_append(h, "Accept: text/event-stream");
        snprintf(line, sizeof line, "Last-Event-ID: %s", resume_from);
        h = curl_slist_append(h, line);
        h = session_headers(s, h);
    } else {
        h = curl_slist_append(h, "Accept: application/json, text/event-stream");
        if (r->modern) {
            /* 2026-07-28 mirrors the method and name for intermediaries. */
            h = curl_slist_append(h, "MCP-Protocol-Version: " MCPC_MODERN_VERSION);
            snprintf(line, sizeof line, "Mcp-Method: %s", r->method);
            h = curl_slist_append(h, line);
            const char *name = json_string_value(json_object_get(r->params, "name"));
            if (name && strcmp(r->method, "tools/call") == 0) {
                char *v = mcpc_proto_header_value(name, strlen(name));
                snprintf(line, sizeof line, "Mcp-Name: %s", v ? v : "");
                free(v);
                h = curl_slist_append(h, line);
            }
            char why[200];
            if (r->param_headers &&
                mcpc_proto_add_param_headers(&h, r->param_headers, json_object_get(r->params, "arguments"), why,
                                             sizeof why) < 0) {
                curl_slist_free_all(h);
                ferr e = {0};
                fail_set(s, &e, FERR_INVALID_ARGUMENTS, "protocol", "%s", why);
                rpc_fail(r, &e, 0);
                ferr_clear(&e);
                return -1;
            }
        } else if (strcmp(r->method, "initialize") != 0) {
            h = session_headers(s, h);
        }
    }
    char *body = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    long t = r->timeout_ms < 0 ? -1 : r->timeout_ms + TRANSFER_SLACK_MS;
    mcpc_http_req req = {.method = resume_from ? "GET" : "POST", .url = s->url, .headers = h, .body = body,
                         .timeout_ms = t, .allow_private = s->cfg.allow_private, .label = s->label, .log_path = s->log_path};
    mcpc_http_cb cb = {.arg = r, .message = on_x_message, .done = on_x_done};
    ferr e = {0};
    r->x = mcpc_http_start(s->cfg.http, &req, &cb, &e);
    free(body);
    if (!r->x) {
        ferr f = {0};
        fail_set(s, &f, e.code ? e.code : FERR_INTERNAL, "transport", "%s", e.message);
        ferr_clear(&e);
        rpc_fail(r, &f, 0);
        ferr_clear(&f);
        return -1;
    }
    r->sid_gen = s->sid_gen;
    return 0;
}

static void on_resume(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    rpc *r = arg;
    r->resumes++;
    log_event(r->s, LOG_INFO, "mcp stream resumed with Last-Event-ID", r->method);
    http_send(r->s, r, NULL, r->last_event_id);
}

/* The session expired (404, or a 400 without an id from servers that say
 * so that way): start a new one and send the request again, once. */
static void expire(mcpc_session *s, rpc *r)
{
    r->retries++;
    if (r->sid_gen == s->sid_gen) {
        log_event(s, LOG_WARN, "mcp session expired; initializing again", NULL);
        listen_stop(s);
        s->session_id[0] = 0;
        s->sid_gen++;
        s->state = ST_IDLE;
    }
    if (s->state == ST_READY) {
        send_rpc(r);   /* someone else already started the new session */
        return;
    }
    r->sent = 0;
    r->queued = 1;
    connect_start(s);
}

static int idless_error(const json_t *body)
{
    char why[64];
    if (mcpc_proto_classify(body, why, sizeof why) != MCPC_MSG_ERROR)
        return 0;
    json_t *id = json_object_get(body, "id");
    return !id || json_is_null(id);
}

static void http_answer_ended(rpc *r, const mcpc_http_end *end)
{
    mcpc_session *s = r->s;
    ferr e = {0};
    int ok_status = end->status >= 200 && end->status < 300;
    if (ok_status && end->body == MCPC_BODY_SSE && (!end->err || end->err->code == FERR_UPSTREAM_ERROR)) {
        /* An answer stream that ended, cleanly or not, before the answer. */
        if (end->err)
            r->broke = 1;
        if (end->bad && !end->err) {
            /* It sent something that is not a message, then stopped:
             * waiting for more would not help. */
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol", "the MCP server %s answered %s badly: %s", s->label,
                     r->method, end->bad);
            rpc_fail(r, &e, end->status);
            ferr_clear(&e);
            return;
        }
        if (!modern(s) && end->last_event_id[0] && r->resumes < MAX_RESUMES && s->ch == CH_HTTP) {
            /* 2025-11-25: a stream closed before its answer resumes with a
             * GET carrying Last-Event-ID, after the retry it asked for. */
            snprintf(r->last_event_id, sizeof r->last_event_id, "%s", end->last_event_id);
            long ms = end->retry_ms >= 0 ? end->retry_ms : 0;
            if (!r->resume_timer)
                r->resume_timer = evtimer_new(s->cfg.base, on_resume, r);
            struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
            evtimer_add(r->resume_timer, &tv);
            return;
        }
        if (modern(s) && r->retries < 1 && !r->listen) {
            /* 2026-07-28: a broken stream loses the request; it is sent
             * again as a new one, with a new id. */
            r->retries++;
            log_event(s, LOG_WARN, "mcp stream broke before the answer; sending the request again", r->method);
            send_rpc(r);
            return;
        }
        if (r->broke)
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "transport",
                     "the connection to the MCP server %s broke before it answered %s", s->label, r->method);
        else
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol",
                     "the MCP server %s closed the stream before answering %s", s->label, r->method);
        rpc_fail(r, &e, end->status);
    } else if (end->err) {
        ferr_code code = end->err->code;
        fail_set(s, &e, code, code == FERR_UPSTREAM_TIMEOUT ? "timeout" : "transport", "%s", end->err->message);
        e.status = end->err->status;
        rpc_fail(r, &e, 0);
    } else if (ok_status) {
        if (end->body == MCPC_BODY_NONE && end->status == 202)
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol",
                     "the MCP server %s accepted %s without answering it", s->label, r->method);
        else if (end->bad)
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol", "the MCP server %s answered %s badly: %s", s->label,
                     r->method, end->bad);
        else
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol", "the MCP server %s sent no answer to %s", s->label,
                     r->method);
        rpc_fail(r, &e, end->status);
    } else {
        if (!modern(s) && r->sid_gen && s->session_id[0] && !r->step && r->retries < 1 &&
            (end->status == 404 || (end->status == 400 && idless_error(end->json)))) {
            expire(s, r);
            return;
        }
        char why[64];
        if (end->json && mcpc_proto_classify(end->json, why, sizeof why) == MCPC_MSG_ERROR) {
            json_t *error = json_deep_copy(json_object_get(end->json, "error"));
            mask_json(s, error);
            rpc_outcome o = {.error = error, .status = end->status};
            rpc_end(r, &o);
            json_decref(error);
            return;
        }
        if (end->status == 429) {
            fail_set(s, &e, FERR_UPSTREAM_RATE_LIMITED, "http", "the MCP server %s is limiting requests (HTTP 429)",
                     s->label);
        } else if (end->status == 401 || end->status == 403) {
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "http",
                     "the MCP server %s refused ferry's credentials (HTTP %ld): check the headers or bearer token it "
                     "was registered with", s->label, end->status);
        } else {
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "http", "the MCP server %s answered %s with HTTP %ld", s->label,
                     r->method, end->status);
        }
        ferr_detail(&e, "status", json_integer(end->status));
        rpc_fail(r, &e, end->status);
    }
    ferr_clear(&e);
}

/* ---- HTTP+SSE (2024-11-05) ---- */

static void on_sse_post_done(void *arg, mcpc_http *x, const mcpc_http_end *end)
{
    (void)x;
    rpc *r = arg;
    r->x = NULL;
    if (!end->err && end->status >= 200 && end->status < 300)
        return;   /* accepted: the answer comes on the stream */
    http_answer_ended(r, end);
}

static int sse_send(mcpc_session *s, rpc *r, json_t *msg)
{
    char *body = json_dumps(msg, JSON_COMPACT);
    long t = r->timeout_ms < 0 ? -1 : r->timeout_ms + TRANSFER_SLACK_MS;
    mcpc_http_req req = {.method = "POST", .url = s->endpoint, .headers = base_headers(s, 1), .body = body,
                         .timeout_ms = t, .allow_private = s->cfg.allow_private, .label = s->label};
    mcpc_http_cb cb = {.arg = r, .message = on_x_message, .done = on_sse_post_done};
    ferr e = {0};
    r->x = mcpc_http_start(s->cfg.http, &req, &cb, &e);
    free(body);
    if (!r->x) {
        ferr f = {0};
        fail_set(s, &f, e.code ? e.code : FERR_INTERNAL, "transport", "%s", e.message);
        ferr_clear(&e);
        rpc_fail(r, &f, 0);
        ferr_clear(&f);
        return -1;
    }
    return 0;
}

/* ---- sending ---- */

/* Sends a request on the session's channel. The request may have ended
 * (failed) when this returns: callers do not touch it after. */
static void send_rpc(rpc *r)
{
    mcpc_session *s = r->s;
    r->queued = 0;
    r->id = ++s->next_id;
    r->sent = 1;
    if (!r->step)
        r->modern = modern(s);
    json_t *msg = mcpc_proto_request(r->id, r->method, json_deep_copy(r->params),
                                     r->modern ? MCPC_MODERN_VERSION : NULL);
    if (s->ch == CH_HTTP) {
        http_send(s, r, msg, NULL);
    } else if (s->ch == CH_SSE) {
        sse_send(s, r, msg);
    } else {
        char *line = json_dumps(msg, JSON_COMPACT);
        int rc = line && s->proc ? mcpc_stdio_write(s->proc, line, strlen(line)) : -1;
        free(line);
        if (rc < 0) {
            ferr e = {0};
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "transport", "the MCP server %s is not running", s->label);
            rpc_fail(r, &e, 0);
            ferr_clear(&e);
        }
    }
    json_decref(msg);
}

/* Sends now when connected; else waits for the connection, starting it. */
static void submit(rpc *r)
{
    mcpc_session *s = r->s;
    if (s->state == ST_READY) {
        send_rpc(r);
        return;
    }
    r->queued = 1;
    connect_start(s);
}

/* ---- the shared channel went away (stdio exit, HTTP+SSE stream end) ---- */

static void release_channel(mcpc_session *s)
{
    if (s->proc) {
        mcpc_stdio_stop(s->proc);
        s->proc = NULL;
    }
    if (s->sse) {
        mcpc_http_cancel(s->sse);
        s->sse = NULL;
    }
    if (s->endpoint_timer)
        event_del(s->endpoint_timer);
    free(s->endpoint);
    s->endpoint = NULL;
}

static void channel_lost(mcpc_session *s, const char *why)
{
    log_event(s, LOG_WARN, "mcp server connection lost", why);
    listen_stop(s);
    release_channel(s);
    s->state = ST_IDLE;
    s->session_id[0] = 0;
    /* Requests sent on it will not be answered; the ones still waiting
     * to be sent stay for the next connection. */
    for (rpc *r = s->rpcs; r; r = r->next)
        r->lost = r->sent && !r->queued;
    ferr e = {0};
    fail_set(s, &e, FERR_UPSTREAM_ERROR, "transport", "%s", why);
    for (;;) {
        rpc *r = s->rpcs;
        while (r && !r->lost)
            r = r->next;
        if (!r)
            break;
        rpc_fail(r, &e, 0);
    }
    ferr_clear(&e);
    for (rpc *r = s->rpcs; r; r = r->next)
        if (r->queued) {
            connect_start(s);
            break;
        }
}

/* ---- connecting ---- */

static void became_ready(mcpc_session *s)
{
    s->state = ST_READY;
    s->era_cached = 1;
    s->listen_unsupported = 0;
    log_event(s, LOG_INFO, "mcp connected", NULL);
    if (s->cfg.on_connected) {
        mcpc_state st = {.transport = transport_name(s->ch), .version = s->version, .modern = modern(s),
                         .server_info = s->server_info, .capabilities = s->capabilities};
        s->cfg.on_connected(s->cfg.arg, &st);
    }
    for (;;) {
        rpc *r = s->rpcs;
        while (r && !r->queued)
            r = r->next;
        if (!r || s->state != ST_READY)
            break;
        send_rpc(r);
    }
    listen_start(s);
}

static void connect_failed(mcpc_session *s, const ferr *why)
{
    log_event(s, LOG_WARN, "mcp connect failed", why->message);
    release_channel(s);
    s->state = ST_IDLE;
    s->session_id[0] = 0;
    /* What worked before did not now: probe from scratch next time. */
    if (s->era_cached) {
        s->era_cached = 0;
        s->era = ERA_UNKNOWN;
        s->version[0] = 0;
    }
    for (;;) {
        rpc *r = s->rpcs;
        while (r && !r->queued && !r->step)
            r = r->next;
        if (!r)
            break;
        if (r->step) {
            r->done = NULL;   /* a step still in flight: nobody goes on from it */
            rpc_free(r);
            continue;
        }
        rpc_fail(r, why, 0);
    }
}

static void connect_fail_with(mcpc_session *s, ferr_code code, const char *kind, const char *message)
{
    ferr e = {0};
    fail_set(s, &e, code, kind, "cannot connect to the MCP server %s: %s", s->label, message);
    connect_failed(s, &e);
    ferr_clear(&e);
}

static void set_server(mcpc_session *s, json_t *info, json_t *caps)
{
    json_decref(s->server_info);
    json_decref(s->capabilities);
    s->server_info = json_is_object(info) ? json_deep_copy(info) : NULL;
    s->capabilities = json_is_object(caps) ? json_deep_copy(caps) : json_object();
    mask_json(s, s->server_info);
}

static void on_initialized_sent(mcpc_session *s, const mcpc_http_end *end)
{
    if (s->state != ST_CONNECTING)
        return;
    if (end->err || end->status < 200 || end->status >= 300) {
        char why[600];
        snprintf(why, sizeof why, "notifications/initialized was refused (%.500s)",
                 end->err ? end->err->message : "HTTP error");
        if (!end->err)
            snprintf(why, sizeof why, "notifications/initialized was refused with HTTP %ld", end->status);
        connect_fail_with(s, FERR_UPSTREAM_ERROR, "protocol", why);
        return;
    }
    became_ready(s);
}

static void on_initialized(rpc *r, const rpc_outcome *o)
{
    mcpc_session *s = r->s;
    if (o->result) {
        const char *pv = json_string_value(json_object_get(o->result, "protocolVersion"));
        if (!mcpc_proto_is_legacy(pv)) {
            char why[200];
            snprintf(why, sizeof why, "it answered protocol version %s, which ferry does not speak", pv ? pv : "(none)");
            connect_fail_with(s, FERR_UPSTREAM_ERROR, "version", why);
            return;
        }
        s->era = ERA_LEGACY;
        snprintf(s->version, sizeof s->version, "%s", pv);
        set_server(s, json_object_get(o->result, "serverInfo"), json_object_get(o->result, "capabilities"));
        json_t *note = mcpc_proto_notification("notifications/initialized", NULL);
        if (s->ch == CH_STDIO) {
            if (send_other(s, note, NULL) < 0)
                connect_fail_with(s, FERR_UPSTREAM_ERROR, "transport", "the server process is gone");
            else
                became_ready(s);
        } else if (send_other(s, note, on_initialized_sent) < 0) {
            connect_fail_with(s, FERR_UPSTREAM_ERROR, "transport", "cannot send notifications/initialized");
        }
        return;
    }
    /* Streamable HTTP refused with 400, 404 or 405 (and no modern error):
     * the URL may be an HTTP+SSE endpoint of 2024-11-05. */
    if (s->ch == CH_HTTP && s->cfg.transport == MCPC_TRANSPORT_AUTO &&
        (o->status == 400 || o->status == 404 || o->status == 405) &&
        !(o->error && mcpc_proto_is_modern_error(o->error))) {
        open_sse(s);
        return;
    }
    if (o->error) {
        char why[400];
        snprintf(why, sizeof why, "initialize failed: error %lld: %s",
                 (long long)json_integer_value(json_object_get(o->error, "code")),
                 json_string_value(json_object_get(o->error, "message")));
        connect_fail_with(s, FERR_UPSTREAM_ERROR, "jsonrpc", why);
    } else {
        ferr e = {0};
        ferr_set(&e, o->fail->code, "cannot connect to the MCP server %s: %s", s->label, o->fail->message);
        e.details = o->fail->details ? json_deep_copy(o->fail->details) : NULL;
        connect_failed(s, &e);
        ferr_clear(&e);
    }
}

static void step_initialize(mcpc_session *s, const char *version)
{
    s->era = ERA_LEGACY;
    s->version[0] = 0;   /* initialize goes without MCP-Protocol-Version */
    s->session_id[0] = 0;
    rpc *r = rpc_new(s, "initialize", mcpc_proto_initialize_params(version), s->cfg.timeout_ms, on_initialized, NULL);
    if (!r) {
        connect_fail_with(s, FERR_INTERNAL, "transport", "out of memory");
        return;
    }
    r->step = 1;
    r->modern = 0;
    send_rpc(r);
}

static int spawn(mcpc_session *s);

static void on_discovered(rpc *r, const rpc_outcome *o)
{
    mcpc_session *s = r->s;
    if (o->result) {
        json_t *versions = json_object_get(o->result, "supportedVersions");
        size_t i;
        json_t *v;
        int has_modern = 0;
        json_array_foreach(versions, i, v) {
            if (json_is_string(v) && strcmp(json_string_value(v), MCPC_MODERN_VERSION) == 0)
                has_modern = 1;
        }
        if (has_modern) {
            s->era = ERA_MODERN;
            snprintf(s->version, sizeof s->version, "%s", MCPC_MODERN_VERSION);
            json_t *meta = json_object_get(o->result, "_meta");
            set_server(s, json_object_get(meta, "io.modelcontextprotocol/serverInfo"),
                       json_object_get(o->result, "capabilities"));
            became_ready(s);
            return;
        }
        json_t *fake = json_pack("{s:{s:O}}", "data", "supported", versions ? versions : json_array());
        const char *pick = mcpc_proto_pick_version(fake);
        json_decref(fake);
        if (pick && mcpc_proto_is_legacy(pick)) {
            step_initialize(s, pick);
            return;
        }
        connect_fail_with(s, FERR_UPSTREAM_ERROR, "version", "it supports no protocol version ferry speaks");
        return;
    }
    if (o->error && mcpc_proto_is_modern_error(o->error)) {
        /* A modern server: choose from its list, never fall back blindly. */
        if (json_integer_value(json_object_get(o->error, "code")) == MCPC_UNSUPPORTED_VERSION) {
            const char *pick = mcpc_proto_pick_version(o->error);
            if (pick && mcpc_proto_is_legacy(pick)) {
                step_initialize(s, pick);
                return;
            }
            connect_fail_with(s, FERR_UPSTREAM_ERROR, "version", "it supports no protocol version ferry speaks");
            return;
        }
        char why[400];
        snprintf(why, sizeof why, "it refused server/discover: %s",
                 json_string_value(json_object_get(o->error, "message")));
        connect_fail_with(s, FERR_UPSTREAM_ERROR, "jsonrpc", why);
        return;
    }
    /* Not a modern server. On stdio anything but a modern answer means a
     * legacy one (even silence, or exiting on the unknown request); on
     * HTTP only a 4xx does: other statuses are outages or refusals. */
    if (s->ch == CH_STDIO) {
        /* A server that exited on the unknown request is started again. */
        s->state = ST_CONNECTING;
        if (!s->proc && spawn(s) < 0)
            return;
        step_initialize(s, MCPC_LEGACY_VERSION);
        return;
    }
    if (o->status == 400 || o->status == 404 || o->status == 405 || (o->error && o->status == 0)) {
        step_initialize(s, MCPC_LEGACY_VERSION);
        return;
    }
    if (o->error) {
        char why[400];
        snprintf(why, sizeof why, "HTTP %ld: %s", o->status, json_string_value(json_object_get(o->error, "message")));
        connect_fail_with(s, FERR_UPSTREAM_ERROR, "http", why);
        return;
    }
    ferr e = {0};
    ferr_set(&e, o->fail->code, "cannot connect to the MCP server %s: %s", s->label, o->fail->message);
    e.details = o->fail->details ? json_deep_copy(o->fail->details) : NULL;
    connect_failed(s, &e);
    ferr_clear(&e);
}

static void step_discover(mcpc_session *s)
{
    long t = s->cfg.timeout_ms;
    if (s->ch == CH_STDIO && t > PROBE_TIMEOUT_MS)
        t = PROBE_TIMEOUT_MS;
    rpc *r = rpc_new(s, "server/discover", NULL, t, on_discovered, NULL);
    if (!r) {
        connect_fail_with(s, FERR_INTERNAL, "transport", "out of memory");
        return;
    }
    r->step = 1;
    r->modern = 1;
    send_rpc(r);
}

/* stdio */

static void on_stdio_line(void *arg, const char *line, size_t len)
{
    mcpc_session *s = arg;
    json_error_t je;
    json_t *m = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!m) {
        char why[200];
        snprintf(why, sizeof why, "a line on stdout is not JSON (%s)", je.text);
        log_event(s, LOG_WARN, "mcp server broke the protocol", why);
        return;
    }
    on_message(s, m, NULL);
    json_decref(m);
}

static void on_stdio_gone(void *arg, const char *why)
{
    mcpc_session *s = arg;
    mcpc_stdio_stop(s->proc);   /* deferred until this callback returns */
    s->proc = NULL;
    channel_lost(s, why);
}

static int spawn(mcpc_session *s)
{
    mcpc_stdio_config pc = {.argv = (const char *const *)s->argv, .env = (const char *const *)s->env,
                            .cwd = s->cwd, .grace_ms = s->cfg.grace_ms};
    mcpc_stdio_cb cb = {.arg = s, .line = on_stdio_line, .gone = on_stdio_gone};
    ferr e = {0};
    s->proc = mcpc_stdio_start(s->cfg.base, &pc, &cb, &e);
    if (!s->proc) {
        connect_fail_with(s, FERR_UPSTREAM_ERROR, "transport", e.message);
        ferr_clear(&e);
        return -1;
    }
    return 0;
}

/* HTTP+SSE */

static void on_endpoint_timeout(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    mcpc_session *s = arg;
    if (s->state == ST_CONNECTING && !s->endpoint)
        connect_fail_with(s, FERR_UPSTREAM_TIMEOUT, "timeout", "its SSE stream sent no endpoint event in time");
}

/* The endpoint event: where to POST, resolved against the stream's URL
 * and only on the same origin (a server cannot send ferry's credentials
 * elsewhere). */
static void on_sse_event(void *arg, mcpc_http *x, const char *type, const char *data)
{
    (void)x;
    mcpc_session *s = arg;
    if (strcmp(type, "endpoint") != 0 || s->endpoint)
        return;
    CURLU *base = curl_url(), *target = curl_url();
    char *url = NULL, *bs = NULL, *bh = NULL, *bp = NULL, *ts = NULL, *th = NULL, *tp = NULL;
    int ok = base && target && curl_url_set(base, CURLUPART_URL, s->url, 0) == CURLUE_OK &&
             curl_url_set(target, CURLUPART_URL, s->url, 0) == CURLUE_OK &&
             curl_url_set(target, CURLUPART_URL, data, 0) == CURLUE_OK &&
             curl_url_get(target, CURLUPART_URL, &url, 0) == CURLUE_OK;
    if (ok) {
        curl_url_get(base, CURLUPART_SCHEME, &bs, 0);
        curl_url_get(base, CURLUPART_HOST, &bh, 0);
        curl_url_get(base, CURLUPART_PORT, &bp, CURLU_DEFAULT_PORT);
        curl_url_get(target, CURLUPART_SCHEME, &ts, 0);
        curl_url_get(target, CURLUPART_HOST, &th, 0);
        curl_url_get(target, CURLUPART_PORT, &tp, CURLU_DEFAULT_PORT);
        ok = bs && ts && bh && th && bp && tp && strcasecmp(bs, ts) == 0 && strcasecmp(bh, th) == 0 &&
             strcmp(bp, tp) == 0;
    }
    if (ok)
        s->endpoint = strdup(url);
    curl_free(url);
    curl_free(bs);
    curl_free(bh);
    curl_free(bp);
    curl_free(ts);
    curl_free(th);
    curl_free(tp);
    curl_url_cleanup(base);
    curl_url_cleanup(target);
    if (!ok) {
        connect_fail_with(s, FERR_UPSTREAM_ERROR, "protocol",
                          "its endpoint event names another origin or is not a URL");
        return;
    }
    event_del(s->endpoint_timer);
    step_initialize(s, MCPC_LEGACY_VERSION);
}

static void on_sse_message(void *arg, mcpc_http *x, json_t *msg)
{
    (void)x;
    on_message(arg, msg, NULL);
}

static void on_sse_end(void *arg, mcpc_http *x, const mcpc_http_end *end)
{
    (void)x;
    mcpc_session *s = arg;
    s->sse = NULL;
    if (s->state == ST_CONNECTING && !s->endpoint) {
        char why[300];
        if (end->err)
            snprintf(why, sizeof why, "%.290s", end->err->message);
        else if (end->status < 200 || end->status >= 300)
            snprintf(why, sizeof why, "it answered neither Streamable HTTP nor the HTTP+SSE transport (GET: HTTP %ld)",
                     end->status);
        else
            snprintf(why, sizeof why, "its SSE stream ended before the endpoint event");
        connect_fail_with(s, end->err ? end->err->code : FERR_UPSTREAM_ERROR, "transport", why);
        return;
    }
    channel_lost(s, "the MCP server closed its SSE stream");
}

static void open_sse(mcpc_session *s)
{
    release_channel(s);
    s->ch = CH_SSE;
    s->era = ERA_LEGACY;
    s->version[0] = 0;
    struct curl_slist *h = base_headers(s, 0);
    h = curl_slist_append(h, "Accept: text/event-stream");
    mcpc_http_req req = {.method = "GET", .url = s->url, .headers = h, .timeout_ms = -1,
                         .allow_private = s->cfg.allow_private, .label = s->label, .log_path = s->log_path};
    mcpc_http_cb cb = {.arg = s, .message = on_sse_message, .event = on_sse_event, .done = on_sse_end};
    ferr e = {0};
    s->sse = mcpc_http_start(s->cfg.http, &req, &cb, &e);
    if (!s->sse) {
        connect_fail_with(s, e.code, "transport", e.message);
        ferr_clear(&e);
        return;
    }
    if (!s->endpoint_timer)
        s->endpoint_timer = evtimer_new(s->cfg.base, on_endpoint_timeout, s);
    struct timeval tv = {s->cfg.timeout_ms / 1000, (s->cfg.timeout_ms % 1000) * 1000};
    evtimer_add(s->endpoint_timer, &tv);
}

static void connect_start(mcpc_session *s)
{
    if (s->state != ST_IDLE)
        return;
    s->state = ST_CONNECTING;
    s->listen_backoff_ms = 0;
    switch (s->cfg.transport) {
    case MCPC_TRANSPORT_STDIO:
        s->ch = CH_STDIO;
        if (spawn(s) < 0)
            return;
        if (s->era_cached && s->era == ERA_LEGACY)
            step_initialize(s, s->version[0] ? s->version : MCPC_LEGACY_VERSION);
        else
            step_discover(s);
        return;
    case MCPC_TRANSPORT_SSE:
        open_sse(s);
        return;
    default:
        if (s->era_cached && s->ch == CH_SSE) {
            open_sse(s);
            return;
        }
        s->ch = CH_HTTP;
        if (s->era_cached && s->era == ERA_MODERN) {
            became_ready(s);   /* stateless: nothing to set up again */
            return;
        }
        if (s->era_cached && s->era == ERA_LEGACY) {
            step_initialize(s, s->version[0] ? s->version : MCPC_LEGACY_VERSION);
            return;
        }
        step_discover(s);
    }
}

/* ---- what the server sends ---- */

static void answer_request(mcpc_session *s, json_t *msg)
{
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (modern(s)) {
        /* 2026-07-28 servers send no requests and clients send no
         * responses: it is logged and left alone. */
        log_event(s, LOG_WARN, "mcp server sent a request, which 2026-07-28 does not allow", method);
        return;
    }
    json_t *id = json_object_get(msg, "id");
    json_t *reply = strcmp(method, "ping") == 0 ? mcpc_proto_result(id, json_object())
                                                : mcpc_proto_error(id, MCPC_METHOD_NOT_FOUND, "Method not found");
    send_other(s, reply, NULL);
}

static void on_notification(mcpc_session *s, json_t *msg)
{
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (strcmp(method, "notifications/tools/list_changed") == 0) {
        log_event(s, LOG_INFO, "mcp tools changed", NULL);
        if (s->cfg.on_list_changed)
            s->cfg.on_list_changed(s->cfg.arg);
    } else if (strcmp(method, "notifications/cancelled") == 0 && s->listen_rpc) {
        json_t *rid = json_object_get(json_object_get(msg, "params"), "requestId");
        if (json_is_integer(rid) && json_integer_value(rid) == s->listen_rpc->id) {
            rpc_outcome o = {.result = json_object()};
            rpc_end(s->listen_rpc, &o);
            json_decref(o.result);
        }
    }
    /* progress, log messages and subscription acknowledgements need
     * nothing from ferry. */
}

static void on_message(mcpc_session *s, json_t *msg, rpc *via)
{
    char why[200] = "";
    mcpc_msg_kind kind = mcpc_proto_classify(msg, why, sizeof why);
    ferr e = {0};
    switch (kind) {
    case MCPC_MSG_BATCH: {
        /* Batches were removed in 2025-06-18: requests they answer fail. */
        log_event(s, LOG_WARN, "mcp server sent a JSON-RPC batch, which MCP does not allow", NULL);
        fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol",
                 "the MCP server %s answered with a JSON-RPC batch, which MCP does not allow", s->label);
        size_t i;
        json_t *item;
        json_array_foreach(msg, i, item) {
            rpc *r = rpc_find(s, mcpc_proto_id(item));
            if (r) {
                if (r == via)
                    via = NULL;
                rpc_fail(r, &e, 0);
            }
        }
        if (via)
            rpc_fail(via, &e, 0);
        break;
    }
    case MCPC_MSG_INVALID: {
        log_event(s, LOG_WARN, "mcp server sent an invalid message", why);
        rpc *r = json_is_object(msg) ? rpc_find(s, mcpc_proto_id(msg)) : NULL;
        if (r) {
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol", "the MCP server %s answered %s with an invalid message: %s",
                     s->label, r->method, why);
            rpc_fail(r, &e, 0);
        }
        break;
    }
    case MCPC_MSG_RESULT: {
        rpc *r = rpc_find(s, mcpc_proto_id(msg));
        if (!r) {
            log_event(s, LOG_DEBUG, "mcp answer to no pending request (late or unknown id)", NULL);
            break;
        }
        json_t *result = json_deep_copy(json_object_get(msg, "result"));
        mask_json(s, result);
        rpc_outcome o = {.result = result};
        rpc_end(r, &o);
        json_decref(result);
        break;
    }
    case MCPC_MSG_ERROR: {
        json_t *id = json_object_get(msg, "id");
        rpc *r = id && !json_is_null(id) ? rpc_find(s, mcpc_proto_id(msg)) : via;
        if (!r) {
            log_event(s, LOG_WARN, "mcp error for no pending request",
                      json_string_value(json_object_get(json_object_get(msg, "error"), "message")));
            break;
        }
        json_t *error = json_deep_copy(json_object_get(msg, "error"));
        mask_json(s, error);
        rpc_outcome o = {.error = error};
        rpc_end(r, &o);
        json_decref(error);
        break;
    }
    case MCPC_MSG_REQUEST:
        answer_request(s, msg);
        break;
    case MCPC_MSG_NOTIFICATION:
        on_notification(s, msg);
        break;
    }
    ferr_clear(&e);
}

/* ---- list_changed ---- */

static void on_listen_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    listen_start(arg);
}

static void listen_again_later(mcpc_session *s)
{
    if (!s->want_listen || s->listen_unsupported)
        return;
    s->listen_backoff_ms = s->listen_backoff_ms ? s->listen_backoff_ms * 2 : LISTEN_BACKOFF_MIN_MS;
    if (s->listen_backoff_ms > LISTEN_BACKOFF_MAX_MS)
        s->listen_backoff_ms = LISTEN_BACKOFF_MAX_MS;
    if (!s->listen_timer)
        s->listen_timer = evtimer_new(s->cfg.base, on_listen_timer, s);
    struct timeval tv = {s->listen_backoff_ms / 1000, (s->listen_backoff_ms % 1000) * 1000};
    evtimer_add(s->listen_timer, &tv);
}

static void on_listen_message(void *arg, mcpc_http *x, json_t *msg)
{
    (void)x;
    mcpc_session *s = arg;
    s->listen_backoff_ms = 0;   /* it works: a later break retries soon */
    on_message(s, msg, NULL);
}

static void on_listen_end(void *arg, mcpc_http *x, const mcpc_http_end *end)
{
    (void)x;
    mcpc_session *s = arg;
    s->listen_x = NULL;
    if (!end->err && end->status == 405) {
        s->listen_unsupported = 1;   /* the server offers no GET stream */
        return;
    }
    if (!end->err && end->status == 404 && s->session_id[0]) {
        /* The session is gone; the next request finds out and starts
         * another, which listens again. */
        return;
    }
    listen_again_later(s);
}

static void on_listen_done(rpc *r, const rpc_outcome *o)
{
    mcpc_session *s = r->s;
    s->listen_rpc = NULL;
    if (o->error && json_integer_value(json_object_get(o->error, "code")) == MCPC_METHOD_NOT_FOUND) {
        s->listen_unsupported = 1;
        return;
    }
    if (s->state == ST_READY)
        listen_again_later(s);
}

static void listen_start(mcpc_session *s)
{
    if (!s->want_listen || s->state != ST_READY || s->listen_unsupported || s->listen_x || s->listen_rpc)
        return;
    json_t *tools = json_object_get(s->capabilities, "tools");
    if (!json_is_true(json_object_get(tools, "listChanged")))
        return;
    if (modern(s)) {
        json_t *params = json_pack("{s:{s:b}}", "notifications", "toolsListChanged", 1);
        rpc *r = rpc_new(s, "subscriptions/listen", params, -1, on_listen_done, NULL);
        if (!r)
            return;
        r->listen = 1;
        s->listen_rpc = r;
        send_rpc(r);
        return;
    }
    if (s->ch != CH_HTTP)
        return;   /* HTTP+SSE and stdio: notifications share the one channel */
    struct curl_slist *h = base_headers(s, 0);
    h = curl_slist_append(h, "Accept: text/event-stream");
    h = session_headers(s, h);
    mcpc_http_req req = {.method = "GET", .url = s->url, .headers = h, .timeout_ms = -1,
                         .allow_private = s->cfg.allow_private, .label = s->label, .log_path = s->log_path};
    mcpc_http_cb cb = {.arg = s, .message = on_listen_message, .done = on_listen_end};
    ferr e = {0};
    s->listen_x = mcpc_http_start(s->cfg.http, &req, &cb, &e);
    ferr_clear(&e);
    if (!s->listen_x)
        listen_again_later(s);
}

static void listen_stop(mcpc_session *s)
{
    if (s->listen_timer)
        event_del(s->listen_timer);
    if (s->listen_x) {
        mcpc_http_cancel(s->listen_x);
        s->listen_x = NULL;
    }
    if (s->listen_rpc) {
        rpc *r = s->listen_rpc;
        s->listen_rpc = NULL;
        tell_cancelled(r, "no longer listening");
        r->done = NULL;
        rpc_free(r);
    }
}

void mcpc_session_listen(mcpc_session *s, int on)
{
    s->want_listen = on;
    if (on)
        listen_start(s);
    else
        listen_stop(s);
}

/* ---- operations ---- */

static void on_later(evutil_socket_t fd, short events, void *arg);

static mcpc_call *op_new(mcpc_session *s, int is_list, void *arg)
{
    mcpc_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->s = s;
    c->is_list = is_list;
    c->arg = arg;
    c->later = event_new(s->cfg.base, -1, 0, on_later, c);
    if (!c->later) {
        free(c);
        return NULL;
    }
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    return c;
}

static void op_unlink(mcpc_call *c)
{
    mcpc_session *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else if (s->calls == c)
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static void op_free(mcpc_call *c)
{
    event_free(c->later);
    json_decref(c->args);
    json_decref(c->param_headers);
    json_decref(c->tools);
    json_decref(c->rejected);
    json_decref(c->names);
    json_decref(c->cursors);
    json_decref(c->result);
    ferr_clear(&c->err);
    free(c);
}

/* The operation is over: its callback runs from the loop, soon. */
static void op_finish(mcpc_call *c, json_t *result, const ferr *err)
{
    c->r = NULL;
    if (err) {
        ferr_set(&c->err, err->code, "%s", err->message);
        c->err.status = err->status;
        if (err->details)
            c->err.details = json_deep_copy(err->details);
    } else {
        c->result = json_incref(result);
    }
    event_active(c->later, EV_TIMEOUT, 1);
}

static void on_later(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    mcpc_call *c = arg;
    op_unlink(c);
    const ferr *err = c->err.code ? &c->err : NULL;
    if (c->is_list)
        c->list_done(c->arg, err ? NULL : c->tools, err ? NULL : c->rejected, err);
    else
        c->call_done(c->arg, err ? NULL : c->result, err);
    op_free(c);
}

/* A JSON-RPC error answer as a coded ferry error. */
static void error_from_jsonrpc(mcpc_session *s, const char *method, json_t *error, long status, ferr *e)
{
    json_int_t code = json_integer_value(json_object_get(error, "code"));
    const char *msg = json_string_value(json_object_get(error, "message"));
    /* Invalid params on tools/call: the arguments were wrong, which the
     * agent can fix. */
    ferr_code fc = code == MCPC_INVALID_PARAMS && strcmp(method, "tools/call") == 0 ? FERR_INVALID_ARGUMENTS
                                                                                     : FERR_UPSTREAM_ERROR;
    fail_set(s, e, fc, "jsonrpc", "the MCP server %s answered %s with error %lld: %s", s->label, method,
             (long long)code, msg ? msg : "");
    ferr_detail(e, "jsonrpc_code", json_integer(code));
    ferr_detail(e, "jsonrpc_message", json_string(msg ? msg : ""));
    if (json_object_get(error, "data"))
        ferr_detail(e, "jsonrpc_data", json_deep_copy(json_object_get(error, "data")));
    if (status)
        ferr_detail(e, "status", json_integer(status));
}

static void list_page(mcpc_call *c, json_t *cursor);

static void on_list_page(rpc *r, const rpc_outcome *o)
{
    mcpc_call *c = r->owner;
    mcpc_session *s = c->s;
    ferr e = {0};
    if (!o->result) {
        if (o->error)
            error_from_jsonrpc(s, "tools/list", o->error, o->status, &e);
        op_finish(c, NULL, o->error ? &e : o->fail);
        ferr_clear(&e);
        return;
    }
    json_t *tools = json_object_get(o->result, "tools");
    if (!json_is_array(tools)) {
        fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol", "the MCP server %s answered tools/list without a tools array",
                 s->label);
        op_finish(c, NULL, &e);
        ferr_clear(&e);
        return;
    }
    size_t i;
    json_t *t;
    int headers = s->ch == CH_HTTP && modern(s);
    json_array_foreach(tools, i, t) {
        char why[200];
        const char *name = json_string_value(json_object_get(t, "name"));
        if (mcpc_proto_check_tool(t, headers, why, sizeof why) < 0) {
            json_array_append_new(c->rejected, json_pack("{s:s, s:s}", "name", name ? name : "", "reason", why));
            log_event(s, LOG_WARN, "mcp tool definition rejected", why);
            continue;
        }
        if (json_object_get(c->names, name)) {
            json_array_append_new(c->rejected,
                                  json_pack("{s:s, s:s}", "name", name, "reason", "the name appears twice in the list"));
            continue;
        }
        json_object_set_new(c->names, name, json_true());
        json_array_append(c->tools, t);
    }
    json_t *next = json_object_get(o->result, "nextCursor");
    if (!next || json_is_null(next)) {
        op_finish(c, json_null(), NULL);
        return;
    }
    if (!json_is_string(next)) {
        fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol", "the MCP server %s sent a nextCursor that is not a string",
                 s->label);
    } else if (json_object_get(c->cursors, json_string_value(next)) || c->pages >= MAX_PAGES) {
        /* A cursor seen before would page forever. */
        fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol", "the MCP server %s's tools/list pages loop (cursor repeated)",
                 s->label);
    }
    if (e.code) {
        op_finish(c, NULL, &e);
        ferr_clear(&e);
        return;
    }
    json_object_set_new(c->cursors, json_string_value(next), json_true());
    list_page(c, next);
}

static void list_page(mcpc_call *c, json_t *cursor)
{
    json_t *params = cursor ? json_pack("{s:O}", "cursor", cursor) : json_object();
    c->pages++;
    rpc *r = rpc_new(c->s, "tools/list", params, c->s->cfg.timeout_ms, on_list_page, c);
    if (!r) {
        ferr e = {0};
        ferr_set(&e, FERR_INTERNAL, "out of memory");
        op_finish(c, NULL, &e);
        ferr_clear(&e);
        return;
    }
    c->r = r;
    submit(r);
}

mcpc_call *mcpc_session_list_tools(mcpc_session *s, mcpc_list_fn done, void *arg)
{
    mcpc_call *c = op_new(s, 1, arg);
    if (!c)
        return NULL;
    c->list_done = done;
    c->tools = json_array();
    c->rejected = json_array();
    c->names = json_object();
    c->cursors = json_object();
    list_page(c, NULL);
    return c;
}

static void on_called(rpc *r, const rpc_outcome *o)
{
    mcpc_call *c = r->owner;
    mcpc_session *s = c->s;
    ferr e = {0};
    if (o->result) {
        json_t *out = NULL;
        char why[200];
        if (mcpc_proto_call_result(o->result, &out, why, sizeof why) < 0)
            fail_set(s, &e, FERR_UPSTREAM_ERROR, "protocol", "the MCP server %s's result for %s is not usable: %s",
                     s->label, c->tool, why);
        op_finish(c, out, e.code ? &e : NULL);
        json_decref(out);
    } else if (o->error) {
        error_from_jsonrpc(s, "tools/call", o->error, o->status, &e);
        op_finish(c, NULL, &e);
    } else {
        op_finish(c, NULL, o->fail);
    }
    ferr_clear(&e);
}

mcpc_call *mcpc_session_call_tool(mcpc_session *s, const char *name, json_t *args, json_t *param_headers,
                                  long timeout_ms, mcpc_call_fn done, void *arg)
{
    mcpc_call *c = op_new(s, 0, arg);
    if (!c)
        return NULL;
    c->call_done = done;
    snprintf(c->tool, sizeof c->tool, "%s", name);
    json_t *params = json_pack("{s:s, s:O}", "name", name, "arguments", args ? args : json_object());
    rpc *r = rpc_new(s, "tools/call", params, timeout_ms > 0 ? timeout_ms : s->cfg.timeout_ms, on_called, c);
    if (!r) {
        ferr e = {0};
        ferr_set(&e, FERR_INTERNAL, "out of memory");
        op_finish(c, NULL, &e);
        ferr_clear(&e);
        return c;
    }
    if (param_headers && json_array_size(param_headers))
        r->param_headers = json_incref(param_headers);
    c->r = r;
    submit(r);
    return c;
}

void mcpc_call_cancel(mcpc_call *c)
{
    if (!c)
        return;
    if (c->r) {
        rpc *r = c->r;
        tell_cancelled(r, "cancelled by ferry");
        r->done = NULL;
        rpc_free(r);
    }
    op_unlink(c);
    op_free(c);
}

size_t mcpc_session_pending(const mcpc_session *s)
{
    size_t n = 0;
    for (rpc *r = s->rpcs; r; r = r->next)
        n += !r->listen;
    return n;
}

/* ---- the session ---- */

mcpc_session *mcpc_session_new(const mcpc_config *cfg)
{
    mcpc_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    if (s->cfg.timeout_ms <= 0)
        s->cfg.timeout_ms = DEFAULT_TIMEOUT_MS;
    s->label = strdup(cfg->label ? cfg->label : "mcp");
    s->url = cfg->url ? strdup(cfg->url) : NULL;
    s->cwd = cfg->cwd ? strdup(cfg->cwd) : NULL;
    s->log_path = strdup(cfg->log_path ? cfg->log_path : "/");
    s->headers = copy_list(cfg->headers);
    s->argv = copy_list(cfg->argv);
    s->env = copy_list(cfg->env);
    s->secrets = copy_list(cfg->secrets);
    s->cfg.label = s->label;
    s->cfg.url = s->url;
    s->cfg.cwd = s->cwd;
    s->cfg.headers = NULL;
    s->cfg.argv = NULL;
    s->cfg.env = NULL;
    s->cfg.secrets = NULL;
    if (!s->label || !s->log_path || !s->headers || !s->argv || !s->env || !s->secrets || (cfg->url && !s->url)) {
        mcpc_session_free(s);
        return NULL;
    }
    return s;
}

/* Background DELETEs that outlive their session. */
typedef struct orphan {
    struct orphan *next;
    mcpc_http *x;
} orphan;
static orphan *orphans;

static void on_orphan_done(void *arg, mcpc_http *x, const mcpc_http_end *end)
{
    (void)x;
    (void)end;
    orphan **pp = &orphans;
    while (*pp && *pp != arg)
        pp = &(*pp)->next;
    if (*pp)
        *pp = ((orphan *)arg)->next;
    free(arg);
}

static void on_orphan_message(void *arg, mcpc_http *x, json_t *msg)
{
    (void)arg;
    (void)x;
    (void)msg;
}

/* 2025-11-25: a client done with a session SHOULD end it with DELETE. */
static void delete_session(mcpc_session *s)
{
    orphan *o = calloc(1, sizeof *o);
    if (!o)
        return;
    struct curl_slist *h = session_headers(s, base_headers(s, 0));
    mcpc_http_req req = {.method = "DELETE", .url = s->url, .headers = h, .timeout_ms = 5000,
                         .allow_private = s->cfg.allow_private, .label = s->label, .log_path = s->log_path};
    mcpc_http_cb cb = {.arg = o, .message = on_orphan_message, .done = on_orphan_done};
    ferr e = {0};
    o->x = mcpc_http_start(s->cfg.http, &req, &cb, &e);
    ferr_clear(&e);
    if (!o->x) {
        free(o);
        return;
    }
    o->next = orphans;
    orphans = o;
}

void mcpc_session_shutdown(void)
{
    while (orphans) {
        orphan *o = orphans;
        orphans = o->next;
        mcpc_http_cancel(o->x);
        free(o);
    }
}

void mcpc_session_free(mcpc_session *s)
{
    if (!s)
        return;
    while (s->calls) {
        mcpc_call *c = s->calls;
        if (c->r) {
            c->r->done = NULL;
            rpc_free(c->r);
            c->r = NULL;
        }
        op_unlink(c);
        op_free(c);
    }
    listen_stop(s);
    while (s->rpcs) {
        s->rpcs->done = NULL;
        rpc_free(s->rpcs);
    }
    while (s->aux) {
        aux *a = s->aux;
        s->aux = a->next;
        mcpc_http_cancel(a->x);
        free(a);
    }
    if (s->ch == CH_HTTP && s->session_id[0] && s->cfg.http)
        delete_session(s);
    release_channel(s);
    if (s->endpoint_timer)
        event_free(s->endpoint_timer);
    if (s->listen_timer)
        event_free(s->listen_timer);
    json_decref(s->server_info);
    json_decref(s->capabilities);
    free(s->label);
    free(s->url);
    free(s->cwd);
    free(s->log_path);
    free_list(s->headers, 1);
    free_list(s->argv, 0);
    free_list(s->env, 1);
    free_list(s->secrets, 1);
    free(s);
}
