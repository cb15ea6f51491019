#include "mcpc_http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sse_parser.h"

#define DEFAULT_MAX_MESSAGE (16u << 20)

struct mcpc_http {
    hclient_xfer *xfer;
    mcpc_http_cb cb;
    size_t max_message;
    mcpc_body body;
    long status;             /* as the answer's head said, even if the body then broke */
    sse_parser *sse;
    char *buf;               /* a non-SSE body */
    size_t len, cap;
    char session_id[256];
    char bad[256];
    int messages;
    int too_large;
    int in_chunk;            /* inside hclient's on_data */
    int in_done;             /* inside hclient's done */
    int cancelled;
};

static void free_x(mcpc_http *x)
{
    sse_parser_free(x->sse);
    free(x->buf);
    free(x);
}

void mcpc_http_cancel(mcpc_http *x)
{
    if (!x || x->cancelled)
        return;
    x->cancelled = 1;
    if (x->in_done)
        return;   /* on_done frees it when the callback returns */
    hclient_cancel(x->xfer);   /* deferred by hclient when inside its callback */
    x->xfer = NULL;
    if (!x->in_chunk)
        free_x(x);
}

const char *mcpc_http_session_id(const mcpc_http *x) { return x->session_id[0] ? x->session_id : NULL; }

static const char *header(const hclient_response *r, const char *name)
{
    for (size_t i = 0; r && i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, name) == 0)
            return r->headers[i].value;
    return NULL;
}

static mcpc_body body_kind(const char *ctype)
{
    if (!ctype)
        return MCPC_BODY_OTHER;
    /* Media types compare without parameters and case-insensitively. */
    size_t n = strcspn(ctype, "; \t");
    if (n == 17 && strncasecmp(ctype, "text/event-stream", 17) == 0)
        return MCPC_BODY_SSE;
    if (n == 16 && strncasecmp(ctype, "application/json", 16) == 0)
        return MCPC_BODY_JSON;
    return MCPC_BODY_OTHER;
}

static void note_bad(mcpc_http *x, const char *fmt, const char *detail)
{
    if (!x->bad[0])
        snprintf(x->bad, sizeof x->bad, fmt, detail);
}

static void remember_session(mcpc_http *x, const hclient_response *r)
{
    const char *sid = header(r, "mcp-session-id");
    if (sid && !x->session_id[0])
        snprintf(x->session_id, sizeof x->session_id, "%s", sid);
}

static int on_sse_event(void *arg, const sse_event *ev)
{
    mcpc_http *x = arg;
    if (strcmp(ev->type, "message") != 0) {
        if (x->cb.event)
            x->cb.event(x->cb.arg, x, ev->type, ev->data);
        return x->cancelled;
    }
    /* An event with an ID and empty data primes resumption (2025-11-25);
     * it carries no message. */
    if (ev->data_len == 0)
        return 0;
    json_error_t je;
    json_t *m = json_loadb(ev->data, ev->data_len, JSON_REJECT_DUPLICATES, &je);
    if (!m) {
        note_bad(x, "the server sent an SSE event that is not JSON (%s)", je.text);
        return 0;
    }
    x->messages++;
    x->cb.message(x->cb.arg, x, m);
    json_decref(m);
    return x->cancelled;
}

static int on_chunk(void *arg, const hclient_response *head, const char *data, size_t len)
{
    mcpc_http *x = arg;
    if (x->body == MCPC_BODY_NONE) {
        remember_session(x, head);
        x->status = head->status;
        x->body = body_kind(header(head, "content-type"));
        /* Only a successful answer is read as a stream of messages; an
         * error status's body is kept to be looked at. */
        if (x->body == MCPC_BODY_SSE && head->status >= 200 && head->status < 300) {
            x->sse = sse_parser_new(x->max_message, on_sse_event, x);
            if (!x->sse)
                return -1;
        }
    }
    if (x->sse) {
        x->in_chunk = 1;
        int rc = sse_parser_feed(x->sse, data, len);
        x->in_chunk = 0;
        if (x->cancelled) {
            free_x(x);
            return 0;   /* hclient already knows: it frees the transfer */
        }
        if (rc < 0) {
            x->too_large = 1;
            return -1;
        }
        return rc > 0 ? -1 : 0;
    }
    if (x->len + len > x->max_message) {
        x->too_large = 1;
        return -1;
    }
    if (x->len + len + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < x->len + len + 1)
            cap *= 2;
        char *nb = realloc(x->buf, cap);
        if (!nb)
            return -1;
        x->buf = nb;
        x->cap = cap;
    }
    memcpy(x->buf + x->len, data, len);
    x->len += len;
    return 0;
}

static void on_done(void *arg, hclient_response *resp, ferr *err)
{
    mcpc_http *x = arg;
    x->xfer = NULL;
    x->in_done = 1;
    ferr own = {0};
    mcpc_http_end end = {.retry_ms = -1, .last_event_id = ""};
    json_t *json = NULL;
    if (resp) {
        end.status = resp->status;
        remember_session(x, resp);
        if (x->body == MCPC_BODY_NONE && x->len == 0 && !x->sse) {
            const char *ct = header(resp, "content-type");
            x->body = ct ? body_kind(ct) : MCPC_BODY_NONE;
        }
    }
    if (!resp)
        end.status = x->status;   /* the head arrived, then the transfer failed */
    if (x->too_large) {
        ferr_set(&own, FERR_PAYLOAD_TOO_LARGE, "a message from the MCP server is larger than %zu bytes",
                 x->max_message);
        own.status = 502;
        err = &own;
        resp = NULL;
        end.status = 0;
    }
    if (resp && !x->sse && x->len) {
        json_error_t je;
        json = json_loadb(x->buf, x->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
        if (!json && x->body == MCPC_BODY_JSON)
            note_bad(x, "the server's JSON answer does not parse (%s)", je.text);
        else if (json && x->body != MCPC_BODY_JSON && resp->status >= 200 && resp->status < 300) {
            /* A 2xx body of another type is not an MCP answer. */
            json_decref(json);
            json = NULL;
            note_bad(x, "the server answered with %s, not JSON or an event stream",
                     x->body == MCPC_BODY_OTHER ? "another content type" : "an empty body");
        }
    }
    if (json && resp->status >= 200 && resp->status < 300) {
        x->messages++;
        x->cb.message(x->cb.arg, x, json);
        json_decref(json);
        json = NULL;
    }
    if (!x->cancelled) {
        end.err = err;
        end.body = x->body;
        end.json = json;
        end.bad = x->bad[0] ? x->bad : NULL;
        end.session_id = x->session_id[0] ? x->session_id : NULL;
        if (x->sse) {
            end.last_event_id = sse_parser_last_id(x->sse);
            end.retry_ms = sse_parser_retry_ms(x->sse);
        }
        end.messages = x->messages;
        x->cb.done(x->cb.arg, x, &end);
    }
    json_decref(json);
    ferr_clear(&own);
    free_x(x);
}

mcpc_http *mcpc_http_start(hclient *c, mcpc_http_req *req, const mcpc_http_cb *cb, ferr *err)
{
    mcpc_http *x = calloc(1, sizeof *x);
    if (!x) {
        curl_slist_free_all(req->headers);
        req->headers = NULL;
        ferr_set(err, FERR_INTERNAL, "out of memory");
        return NULL;
    }
    x->cb = *cb;
    x->max_message = req->max_message ? req->max_message : DEFAULT_MAX_MESSAGE;
    hclient_request hr = {
        .method = req->method,
        .url = req->url,
        .headers = req->headers,
        .body = req->body,
        .body_len = req->body ? strlen(req->body) : 0,
        .timeout_ms = req->timeout_ms,
        .request_id = req->request_id,
        .label = req->label,
        .path = req->log_path,
        .allow_private = req->allow_private,
        .on_data = on_chunk,
    };
    req->headers = NULL;
    if (hclient_start(c, &hr, on_done, x, &x->xfer, err) < 0) {
        free_x(x);
        return NULL;
    }
    return x;
}
