#include "mcp_server.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "app.h"
#include "jsonfmt.h"
#include "jsonrpc.h"
#include "log.h"
#include "mcp_http.h"

#define DEFAULT_PAGE_SIZE 100
/* How long a client may reuse a tools/list page: the list changes when
 * someone connects an app or changes a permission, and ferry sends no
 * list_changed notifications, so not for long. */
#define TOOLS_TTL_MS 60000
#define DISCOVER_TTL_MS 300000
#define CURSOR_PREFIX "after:"

static const char instructions[] =
    "ferry offers the tools of the apps connected for you; a tool is named <app>__<tool>. "
    "A write tool does not run at once: it answers \"awaiting approval <id>\" and runs only once a person "
    "approves it, so do not call it again for the same change.";

/* One tool as MCP describes it, serialized once per revision. Tools of
 * the providers loaded at start are in the catalogue for good; tools of
 * providers that come and go (remote MCP servers, replaced when their tools
 * change) are described per request and hold their provider meanwhile. */
typedef struct mcp_tool {
    provider_tool *t;
    int dynamic;               /* owned by a request; holds a reference to t->p */
    char *entry[2];            /* the Tool object: [0] 2025-11-25, [1] 2026-07-28 */
    int has_output[2];         /* whether that entry declares an outputSchema */
    mcp_param_header *params;  /* x-mcp-header declarations */
    size_t nparams;
    int offered;               /* 0: its x-mcp-header annotations are invalid */
} mcp_tool;

struct mcp_server {
    mcp_tool *tools;           /* sorted by full name, like the providers' index */
    size_t ntools;
    char **origins;            /* normalized: "http://127.0.0.1:8700" */
    size_t norigins;
    size_t page_size;
    json_t *server_info;       /* {"name":"ferry","title":"ferry","version":...}, shared by answers */
    char *server_info_text;    /* the same, serialized */
};

/* ---- origins ---- */

/* "HTTP://Example.com:80/x" → "http://example.com"; -1 when `in` has no
 * scheme://host. Paths are dropped: an origin has none. */
static int origin_normalize(const char *in, char *out, size_t n)
{
    const char *sep = strstr(in, "://");
    if (!sep || sep == in)
        return -1;
    const char *host = sep + 3;
    size_t hl = strcspn(host, "/?#");
    if (hl == 0 || (size_t)(sep - in) + 3 + hl >= n)
        return -1;
    size_t k = 0;
    for (const char *c = in; c < sep; c++)
        out[k++] = (char)tolower((unsigned char)*c);
    memcpy(out + k, "://", 3);
    k += 3;
    for (size_t i = 0; i < hl; i++)
        out[k++] = (char)tolower((unsigned char)host[i]);
    out[k] = 0;
    /* The default port is the same origin written differently. */
    size_t sl = (size_t)(sep - in);
    const char *dflt = sl == 4 && strncmp(out, "http", 4) == 0 ? ":80" : sl == 5 && strncmp(out, "https", 5) == 0 ? ":443" : NULL;
    if (dflt && k > strlen(dflt) && strcmp(out + k - strlen(dflt), dflt) == 0)
        out[k - strlen(dflt)] = 0;
    return 0;
}

static void add_origin(mcp_server *m, const char *origin)
{
    char norm[300];
    if (origin_normalize(origin, norm, sizeof norm) < 0)
        return;
    for (size_t i = 0; i < m->norigins; i++)
        if (strcmp(m->origins[i], norm) == 0)
            return;
    char **grown = realloc(m->origins, (m->norigins + 1) * sizeof *grown);
    if (!grown)
        return;
    m->origins = grown;
    m->origins[m->norigins++] = strdup(norm);
}

/* ferry's own origins: how a browser on this machine names the listening
 * address (every loopback name when it listens on loopback or on all
 * interfaces), and the public URL. */
static void add_own_origins(mcp_server *m, const mcp_server_config *cfg)
{
    char url[300];
    const char *addr = cfg->listen_address ? cfg->listen_address : "";
    const char *colon = strrchr(addr, ':');
    const char *port = colon ? colon + 1 : "";
    snprintf(url, sizeof url, "http://%s", addr);
    add_origin(m, url);
    int local = strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]", 5) == 0 ||
                strncmp(addr, "0.0.0.0:", 8) == 0 || strncmp(addr, "[::]:", 5) == 0;
    if (local && *port) {
        static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            snprintf(url, sizeof url, "http://%s:%s", names[i], port);
            add_origin(m, url);
        }
    }
    if (cfg->public_url)
        add_origin(m, cfg->public_url);
}

static int origin_allowed(const mcp_server *m, const char *origin)
{
    char norm[300];
    if (origin_normalize(origin, norm, sizeof norm) < 0)
        return 0;   /* "null", or garbage: never one of ours */
    for (size_t i = 0; i < m->norigins; i++)
        if (strcmp(m->origins[i], norm) == 0)
            return 1;
    return 0;
}

/* ---- the tool catalogue ---- */

static char *dump(json_t *v)
{
    char *s = json_dumps(v, JSON_TEXT);
    json_decref(v);
    return s;
}

/* The Tool object for one revision. 2025-11-25 wants an object outputSchema
 * (and an object structuredContent), so other output schemas are left out
 * there. */
static char *tool_entry(const provider_tool *t, int modern, int *has_output)
{
    json_t *o = json_pack("{s:s, s:s, s:O, s:{s:b}}", "name", t->full_name, "description", t->description,
                          "inputSchema", t->input, "annotations", "readOnlyHint", !t->is_write);
    const char *otype = t->output ? json_string_value(json_object_get(t->output, "type")) : NULL;
    *has_output = t->output && (modern || (otype && strcmp(otype, "object") == 0));
    if (*has_output)
        json_object_set(o, "outputSchema", t->output);
    return dump(o);
}

static int describe_tool(mcp_tool *mt, provider_tool *t)
{
    mt->t = t;
    mt->entry[0] = tool_entry(t, 0, &mt->has_output[0]);
    mt->entry[1] = tool_entry(t, 1, &mt->has_output[1]);
    if (!mt->entry[0] || !mt->entry[1])
        return -1;
    char why[256];
    mt->offered = mcp_param_headers_read(t->input, &mt->params, &mt->nparams, why, sizeof why) == 0;
    if (!mt->offered) {
        log_line *l = log_begin(LOG_WARN, "tool not offered over MCP: invalid x-mcp-header");
        log_str(l, "tool", t->full_name);
        log_str(l, "reason", why);
        log_end(l);
    }
    return 0;
}

static void tool_clear(mcp_tool *mt)
{
    free(mt->entry[0]);
    free(mt->entry[1]);
    mcp_param_headers_free(mt->params, mt->nparams);
}

/* A tool of a provider that may be replaced while the request runs. */
static mcp_tool *dynamic_tool_new(provider_tool *t)
{
    mcp_tool *mt = calloc(1, sizeof *mt);
    if (!mt)
        return NULL;
    if (describe_tool(mt, t) < 0) {
        tool_clear(mt);
        free(mt);
        return NULL;
    }
    mt->dynamic = 1;
    provider_ref(t->p);
    return mt;
}

static void dynamic_tool_free(const mcp_tool *mt)
{
    if (!mt || !mt->dynamic)
        return;
    mcp_tool *owned = (mcp_tool *)mt;
    provider_unref(owned->t->p);
    tool_clear(owned);
    free(owned);
}

static int build_catalogue(mcp_server *m, providers *ps)
{
    size_t total = 0;
    for (size_t i = 0; i < providers_count(ps); i++)
        total += providers_at(ps, i)->ntools;
    m->tools = calloc(total ? total : 1, sizeof *m->tools);
    if (!m->tools)
        return -1;
    for (size_t i = 0; i < providers_count(ps); i++) {
        provider *p = providers_at(ps, i);
        if (p->runner)
            continue;   /* described per request: it may be replaced */
        for (size_t k = 0; k < p->ntools; k++) {
            provider_tool *t = &p->tools[k];
            if (providers_find_tool(ps, t->full_name) != t)
                continue;   /* a duplicate slug: the index names the other one */
            if (describe_tool(&m->tools[m->ntools++], t) < 0)
                return -1;
        }
    }
    return 0;
}

static int by_name(const void *key, const void *item)
{
    return strcmp(key, ((const mcp_tool *)item)->t->full_name);
}

static int by_tool(const void *a, const void *b)
{
    return strcmp(((const mcp_tool *)a)->t->full_name, ((const mcp_tool *)b)->t->full_name);
}

static const mcp_tool *find_tool(const mcp_server *m, const char *name)
{
    const mcp_tool *mt = bsearch(name, m->tools, m->ntools, sizeof *m->tools, by_name);
    return mt && mt->offered ? mt : NULL;
}

/* The tool `name` as `who` may know it: from the catalogue, or described
 * now for a provider that comes and goes (free with dynamic_tool_free). */
static const mcp_tool *lookup_tool(const mcp_server *m, providers *ps, const principal *who, const char *name)
{
    const mcp_tool *mt = find_tool(m, name);
    if (mt)
        return mt;
    provider_tool *t = providers_find_tool_for(ps, name, who);
    if (!t || !t->p->runner)
        return NULL;
    mcp_tool *made = dynamic_tool_new(t);
    if (made && !made->offered) {
        dynamic_tool_free(made);
        return NULL;
    }
    return made;
}

mcp_server *mcp_server_new(const agent_deps *deps, const mcp_server_config *cfg, ferr *err)
{
    mcp_server *m = calloc(1, sizeof *m);
    if (!m) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        return NULL;
    }
    m->page_size = cfg->page_size ? cfg->page_size : DEFAULT_PAGE_SIZE;
    add_own_origins(m, cfg);
    for (const char *const *o = cfg->allowed_origins; o && *o; o++) {
        char norm[300];
        if (origin_normalize(*o, norm, sizeof norm) < 0) {
            ferr_set(err, FERR_BAD_REQUEST, "--mcp-allowed-origin wants scheme://host[:port], got '%s'", *o);
            mcp_server_free(m);
            return NULL;
        }
        add_origin(m, *o);
    }
    m->server_info = json_pack("{s:s, s:s, s:s}", "name", "ferry", "title", "ferry", "version", FERRY_VERSION);
    m->server_info_text = m->server_info ? json_dumps(m->server_info, JSON_TEXT) : NULL;
    if (build_catalogue(m, deps->providers) < 0 || !m->server_info_text) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        mcp_server_free(m);
        return NULL;
    }
    qsort(m->tools, m->ntools, sizeof *m->tools, by_tool);
    return m;
}

void mcp_server_free(mcp_server *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->ntools; i++)
        tool_clear(&m->tools[i]);
    free(m->tools);
    for (size_t i = 0; i < m->norigins; i++)
        free(m->origins[i]);
    free(m->origins);
    json_decref(m->server_info);
    free(m->server_info_text);
    free(m);
}

/* ---- answers ---- */

/* One request being answered: its id and which revision it speaks. */
typedef struct rpc {
    hreq *r;
    app *a;
    mcp_server *m;
    json_t *id;               /* own reference, or NULL */
    int modern;               /* 2026-07-28 (else 2025-11-25) */
    const mcp_tool *tool;     /* tools/call */
} rpc;

static void reply_message(hreq *r, int status, json_t *msg)
{
    hreq_reply_json(r, status, msg);
}

/* A JSON-RPC error answer. HTTP errors before a message could be read
 * (403, 401, 406, 413, 415) carry one without an id. */
static void reply_error(hreq *r, int status, json_t *id, int code, const char *message, json_t *data)
{
    reply_message(r, status, jsonrpc_error_response(id, code, message, data));
}

static void reply_errorf(hreq *r, int status, json_t *id, int code, json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void reply_errorf(hreq *r, int status, json_t *id, int code, json_t *data, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    reply_error(r, status, id, code, message, data);
}

/* The error data naming ferry's own code, so a program need not parse the
 * message. */
static json_t *ferry_code(const char *code)
{
    return json_pack("{s:s}", "code", code);
}

static json_t *supported_versions(void)
{
    return json_pack("[s, s]", MCP_VERSION_MODERN, MCP_VERSION_LEGACY);
}

static void reply_unsupported(hreq *r, json_t *id, const char *requested)
{
    reply_error(r, 400, id, MCP_ERR_UNSUPPORTED_VERSION, "Unsupported protocol version",
                json_pack("{s:o, s:s}", "supported", supported_versions(), "requested", requested));
}

/* A complete result: 2026-07-28 results say so and name the server. */
static void reply_result(rpc *c, json_t *result)
{
    if (c->modern) {
        json_object_set_new(result, "resultType", json_string("complete"));
        json_t *meta = json_object();
        json_object_set(meta, MCP_META_SERVER_INFO, c->m->server_info);
        json_object_set_new(result, "_meta", meta);
    }
    reply_message(c->r, 200, jsonrpc_result(c->id, result));
}

/* Text that the envelope of a hand-built result starts and ends with. */
static void open_result(rpc *c, struct evbuffer *buf)
{
    char *id = json_dumps(c->id, JSON_ENCODE_ANY);
    evbuffer_add_printf(buf, "{\"id\":%s,\"jsonrpc\":\"2.0\",\"result\":{", id ? id : "null");
    free(id);
    if (c->modern)
        evbuffer_add_printf(buf, "\"_meta\":{\"" MCP_META_SERVER_INFO "\":%s},", c->m->server_info_text);
}

static void close_result(rpc *c, struct evbuffer *buf)
{
    if (c->modern)
        evbuffer_add_printf(buf, ",\"resultType\":\"complete\"");
    evbuffer_add(buf, "}}\n", 3);
}

static void send_buffer(hreq *r, struct evbuffer *buf)
{
    hreq_reply_evbuffer(r, 200, "application/json", buf);
    evbuffer_free(buf);
}

/* ---- initialize, server/discover, ping ---- */

static void do_initialize(rpc *c, json_t *params)
{
    json_t *version = json_object_get(params, "protocolVersion");
    if (!json_is_object(params) || !json_is_string(version) ||
        !json_is_object(json_object_get(params, "capabilities")) ||
        !json_is_object(json_object_get(params, "clientInfo"))) {
        reply_error(c->r, 200, c->id, JSONRPC_INVALID_PARAMS,
                    "initialize needs params.protocolVersion, params.capabilities and params.clientInfo", NULL);
        return;
    }
    /* The only handshake revision served: the client's if it asked for it,
     * else ours, which it may accept or not. */
    json_t *result = json_pack("{s:s, s:{s:{}}, s:O, s:s}", "protocolVersion", MCP_VERSION_LEGACY, "capabilities",
                               "tools", "serverInfo", c->m->server_info, "instructions", instructions);
    reply_result(c, result);
}

static void do_discover(rpc *c)
{
    json_t *result = json_pack("{s:o, s:{s:{}}, s:s, s:i, s:s}", "supportedVersions", supported_versions(),
                               "capabilities", "tools", "instructions", instructions, "ttlMs", DISCOVER_TTL_MS,
                               "cacheScope", "public");
    reply_result(c, result);
}

/* ---- tools/list ---- */

typedef struct visible {
    const mcp_server *m;
    const mcp_tool **items;
    size_t n, cap;
    int oom;
} visible;

static void add_visible(void *arg, provider_tool *t, json_t *connection)
{
    (void)connection;
    visible *v = arg;
    const mcp_tool *mt = find_tool(v->m, t->full_name);
    if (!mt && t->p->runner) {
        mt = dynamic_tool_new(t);
        if (!mt) {
            v->oom = 1;
            return;
        }
        if (!mt->offered) {
            dynamic_tool_free(mt);
            return;
        }
    }
    if (!mt || mt->t != t)
        return;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        const mcp_tool **grown = realloc(v->items, cap * sizeof *grown);
        if (!grown) {
            v->oom = 1;
            dynamic_tool_free(mt);
            return;
        }
        v->items = grown;
        v->cap = cap;
    }
    v->items[v->n++] = mt;
}

static void visible_free(visible *v)
{
    for (size_t i = 0; i < v->n; i++)
        dynamic_tool_free(v->items[i]);
    free(v->items);
}

static void do_tools_list(rpc *c, json_t *params)
{
    json_t *cursor = json_is_object(params) ? json_object_get(params, "cursor") : NULL;
    if (cursor && !json_is_null(cursor) && !json_is_string(cursor)) {
        reply_error(c->r, 200, c->id, JSONRPC_INVALID_PARAMS, "params.cursor must be a string", NULL);
        return;
    }
    visible v = {.m = c->m};
    ferr e = {0};
    if (agent_each_tool(&c->a->agent, hreq_principal(c->r), add_visible, &v, &e) < 0 || v.oom) {
        reply_errorf(c->r, 200, c->id, JSONRPC_INTERNAL_ERROR, ferry_code(v.oom ? "internal" : ferr_code_name(e.code)),
                     "cannot list tools: %s", v.oom ? "out of memory" : e.message);
        ferr_clear(&e);
        visible_free(&v);
        return;
    }
    /* The cursor names the last tool of the previous page; a list that no
     * longer holds it has changed under the client, who must start over. */
    size_t start = 0;
    if (json_is_string(cursor)) {
        const char *s = json_string_value(cursor);
        size_t pl = strlen(CURSOR_PREFIX);
        int found = 0;
        if (strncmp(s, CURSOR_PREFIX, pl) == 0)
            for (size_t i = 0; i < v.n && !found; i++)
                if (strcmp(v.items[i]->t->full_name, s + pl) == 0) {
                    start = i + 1;
                    found = 1;
                }
        if (!found) {
            reply_error(c->r, 200, c->id, JSONRPC_INVALID_PARAMS,
                        "invalid cursor: the tool list changed or the cursor is not one ferry gave; list from the start",
                        NULL);
            visible_free(&v);
            return;
        }
    }
    size_t end = start + c->m->page_size < v.n ? start + c->m->page_size : v.n;
    struct evbuffer *buf = evbuffer_new();
    open_result(c, buf);
    if (c->modern)
        evbuffer_add_printf(buf, "\"cacheScope\":\"private\",");
    if (end < v.n) {
        json_t *next = json_sprintf(CURSOR_PREFIX "%s", v.items[end - 1]->t->full_name);
        char *text = json_dumps(next, JSON_ENCODE_ANY);
        evbuffer_add_printf(buf, "\"nextCursor\":%s,", text);
        free(text);
        json_decref(next);
    }
    evbuffer_add(buf, "\"tools\":[", 9);
    for (size_t i = start; i < end; i++) {
        if (i > start)
            evbuffer_add(buf, ",", 1);
        const char *entry = v.items[i]->entry[c->modern];
        evbuffer_add(buf, entry, strlen(entry));
    }
    evbuffer_add(buf, "]", 1);
    if (c->modern)
        evbuffer_add_printf(buf, ",\"ttlMs\":%d", TOOLS_TTL_MS);
    close_result(c, buf);
    visible_free(&v);
    send_buffer(c->r, buf);
}

/* ---- tools/call ---- */

static void rpc_free(rpc *c)
{
    dynamic_tool_free(c->tool);
    json_decref(c->id);
    free(c);
}

/* A tool result the model reads: one text block, the JSON value as
 * structuredContent where the revision allows it, isError. */
static void reply_tool_result(rpc *c, const char *text, size_t text_len, const char *structured, int is_error)
{
    json_t *t = jsonfmt_string(text, text_len);
    char *text_json = json_dumps(t, JSON_ENCODE_ANY);
    json_decref(t);
    struct evbuffer *buf = evbuffer_new();
    open_result(c, buf);
    /* Results can be megabytes: appended as they are, not through printf. */
    static const char open_text[] = "\"content\":[{\"text\":", close_text[] = ",\"type\":\"text\"}],\"isError\":",
                      structured_key[] = ",\"structuredContent\":";
    evbuffer_add(buf, open_text, sizeof open_text - 1);
    if (text_json)
        evbuffer_add(buf, text_json, strlen(text_json));
    else
        evbuffer_add(buf, "\"\"", 2);
    evbuffer_add(buf, close_text, sizeof close_text - 1);
    evbuffer_add_printf(buf, "%s", is_error ? "true" : "false");
    if (structured) {
        evbuffer_add(buf, structured_key, sizeof structured_key - 1);
        evbuffer_add(buf, structured, strlen(structured));
    }
    close_result(c, buf);
    free(text_json);
    send_buffer(c->r, buf);
}

/* A coded error from the call (forbidden, rate_limited, invalid_arguments,
 * upstream_error, ...): a tool execution error, so the model sees it. */
static void reply_tool_error(rpc *c, const ferr *e)
{
    const char *code = ferr_code_name(e->code) ? ferr_code_name(e->code) : "internal";
    char *details = e->details ? json_dumps(e->details, JSON_TEXT) : NULL;
    size_t n = strlen(code) + strlen(e->message) + (details ? strlen(details) : 0) + 32;
    char *text = malloc(n);
    if (text) {
        int len = details ? snprintf(text, n, "%s: %s (details: %s)", code, e->message, details)
                          : snprintf(text, n, "%s: %s", code, e->message);
        reply_tool_result(c, text, (size_t)len, NULL, 1);
    } else {
        reply_tool_result(c, code, strlen(code), NULL, 1);
    }
    free(text);
    free(details);
}

static void reply_approval(rpc *c, json_t *approval)
{
    const char *id = json_string_value(json_object_get(approval, "id"));
    const char *summary = json_string_value(json_object_get(approval, "summary"));
    const char *expires = json_string_value(json_object_get(approval, "expires_at"));
    char text[1024];
    int len = snprintf(text, sizeof text,
                       "awaiting approval %s: %s. Nothing has run yet: a person must approve this write "
                       "(until %s); do not call the tool again for the same change.",
                       id ? id : "?", summary ? summary : c->tool->t->full_name, expires ? expires : "it expires");
    if (len >= (int)sizeof text)
        len = (int)jsonfmt_utf8_cut(text, sizeof text - 1);
    /* The approval is not the tool's output: where the tool declares an
     * outputSchema its structuredContent would have to match it, so the
     * approval goes as text alone, flagged, for clients that enforce it. */
    if (c->tool->has_output[c->modern]) {
        reply_tool_result(c, text, (size_t)len, NULL, 1);
        return;
    }
    json_t *wrapped = json_pack("{s:O}", "approval", approval);
    char *structured = json_dumps(wrapped, JSON_TEXT);
    json_decref(wrapped);
    reply_tool_result(c, text, (size_t)len, structured, 0);
    free(structured);
}

/* A remote MCP server's own result ({content, structuredContent?,
 * isError}), passed on as the server gave it: its content blocks (images,
 * resources, several texts) are the tool's answer, not ferry's JSON of it.
 * 2025-11-25 allows only an object as structuredContent. */
static void reply_mcp_result(rpc *c, json_t *result, int is_error)
{
    json_t *content = json_object_get(result, "content");
    json_t *structured = json_object_get(result, "structuredContent");
    char *content_text = json_dumps(content, JSON_COMPACT);
    char *structured_text = structured && (c->modern || json_is_object(structured))
                                ? json_dumps(structured, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    struct evbuffer *buf = evbuffer_new();
    open_result(c, buf);
    evbuffer_add_printf(buf, "\"content\":%s", content_text ? "" : "[]");
    if (content_text)
        evbuffer_add(buf, content_text, strlen(content_text));
    evbuffer_add_printf(buf, ",\"isError\":%s", is_error ? "true" : "false");
    if (structured_text) {
        evbuffer_add_printf(buf, ",\"structuredContent\":");
        evbuffer_add(buf, structured_text, strlen(structured_text));
    }
    close_result(c, buf);
    free(content_text);
    free(structured_text);
    send_buffer(c->r, buf);
}

/* Whether `result` is a remote MCP server's result to pass on. */
static int is_mcp_result(const rpc *c, json_t *result)
{
    return c->tool->t->p->runner && json_is_object(result) && json_is_array(json_object_get(result, "content"));
}

static void on_called(void *arg, const agent_result *res)
{
    rpc *c = arg;
    json_t *tool_error = !res->approval && res->call->err && res->call->err->details
                             ? json_object_get(res->call->err->details, "result") : NULL;
    if (res->approval) {
        reply_approval(c, res->approval);
    } else if (tool_error && is_mcp_result(c, tool_error)) {
        reply_mcp_result(c, tool_error, 1);   /* the server's isError: what it said, for the model to correct */
    } else if (!res->call->err && is_mcp_result(c, res->call->result)) {
        reply_mcp_result(c, res->call->result, 0);
    } else if (res->call->err) {
        reply_tool_error(c, res->call->err);
    } else {
        /* The text is what POST /v1/tools/call's content carries: a string
         * result as it is, anything else as its JSON. */
        json_t *result = res->call->result;
        char *json = json_dumps(result, JSON_TEXT);
        int structured = json && (json_is_object(result) || c->modern);
        if (json_is_string(result))
            reply_tool_result(c, json_string_value(result), json_string_length(result), structured ? json : NULL, 0);
        else
            reply_tool_result(c, json ? json : "null", json ? strlen(json) : 4, structured ? json : NULL, 0);
        free(json);
    }
    rpc_free(c);
}

static void do_tools_call(rpc *proto, json_t *params)
{
    json_t *name = json_is_object(params) ? json_object_get(params, "name") : NULL;
    json_t *args = json_is_object(params) ? json_object_get(params, "arguments") : NULL;
    if (!json_is_string(name)) {
        reply_error(proto->r, 200, proto->id, JSONRPC_INVALID_PARAMS, "tools/call needs params.name, a string", NULL);
        return;
    }
    if (json_is_null(args))
        args = NULL;
    if (args && !json_is_object(args)) {
        reply_error(proto->r, 200, proto->id, JSONRPC_INVALID_PARAMS, "params.arguments must be an object", NULL);
        return;
    }
    const mcp_tool *mt = lookup_tool(proto->m, proto->a->providers, hreq_principal(proto->r), json_string_value(name));
    if (!mt) {
        reply_errorf(proto->r, 200, proto->id, JSONRPC_INVALID_PARAMS, ferry_code("unknown_tool"), "Unknown tool: %s",
                     json_string_value(name));
        return;
    }
    rpc *c = malloc(sizeof *c);
    if (!c) {
        dynamic_tool_free(mt);
        reply_error(proto->r, 200, proto->id, JSONRPC_INTERNAL_ERROR, "out of memory", NULL);
        return;
    }
    *c = *proto;
    c->tool = mt;
    json_incref(c->id);
    ferr e = {0};
    if (agent_call(&c->a->agent, hreq_principal(c->r), mt->t->full_name, args, NULL, hreq_request_id(c->r), on_called,
                   c, &e) < 0) {
        if (e.code == FERR_UNKNOWN_TOOL)
            reply_errorf(c->r, 200, c->id, JSONRPC_INVALID_PARAMS, ferry_code("unknown_tool"), "Unknown tool: %s",
                         mt->t->full_name);
        else
            reply_tool_error(c, &e);
        ferr_clear(&e);
        rpc_free(c);
    }
}

/* ---- 2026-07-28 request checks ---- */

/* A header value compared with the body: 1 when it says the same. */
static int header_says(hreq *r, const char *header, int may_encode, const char *expected, size_t expected_len)
{
    size_t len;
    const char *raw = hreq_header(r, header);
    /* Only Mcp-Name and Mcp-Param-* may carry the Base64 sentinel. */
    char *value = may_encode ? mcp_header_decode(raw, &len) : NULL;
    if (!may_encode && raw) {
        while (*raw == ' ' || *raw == '\t')
            raw++;
        len = strlen(raw);
        while (len && (raw[len - 1] == ' ' || raw[len - 1] == '\t'))
            len--;
        value = strndup(raw, len);
    }
    int same = value && len == expected_len && memcmp(value, expected, len) == 0;
    free(value);
    return same;
}

/* The standard headers and the tool's Mcp-Param-* headers mirror the
 * body; intermediaries route on them, so a disagreement is refused
 * (HeaderMismatch, HTTP 400). 0 when all agree. */
static int check_mirrored_headers(rpc *c, const jsonrpc_msg *msg)
{
    hreq *r = c->r;
    if (!header_says(r, "Mcp-Method", 0, msg->method, strlen(msg->method))) {
        reply_errorf(r, 400, c->id, MCP_ERR_HEADER_MISMATCH, NULL,
                     "Header mismatch: the Mcp-Method header must be present and equal the body's method '%s'",
                     msg->method);
        return -1;
    }
    const char *field = strcmp(msg->method, "resources/read") == 0 ? "uri"
                      : strcmp(msg->method, "tools/call") == 0 || strcmp(msg->method, "prompts/get") == 0 ? "name"
                                                                                                          : NULL;
    json_t *value = field && json_is_object(msg->params) ? json_object_get(msg->params, field) : NULL;
    if (json_is_string(value) && !header_says(r, "Mcp-Name", 1, json_string_value(value), json_string_length(value))) {
        reply_errorf(r, 400, c->id, MCP_ERR_HEADER_MISMATCH, NULL,
                     "Header mismatch: the Mcp-Name header must be present and equal params.%s", field);
        return -1;
    }
    if (strcmp(msg->method, "tools/call") != 0 || !json_is_string(value))
        return 0;
    const mcp_tool *mt = lookup_tool(c->m, c->a->providers, hreq_principal(r), json_string_value(value));
    json_t *args = json_object_get(msg->params, "arguments");
    for (size_t i = 0; mt && i < mt->nparams; i++) {
        const mcp_param_header *p = &mt->params[i];
        char header[128];   /* names are at most 100 characters (mcp_http) */
        snprintf(header, sizeof header, "Mcp-Param-%s", p->name);
        const char *raw = hreq_header(r, header);
        json_t *arg = mcp_param_value(p, args);
        size_t len = 0;
        char *decoded = raw ? mcp_header_decode(raw, &len) : NULL;
        const char *why = NULL;
        if (raw && !decoded)
            why = "is not a valid header value (bad characters or Base64)";
        else if (arg && !raw)
            why = "is missing, but the argument it mirrors is in the body";
        else if (!arg && raw)
            why = "is present, but the body has no such argument";
        else if (arg && !mcp_param_matches(p, decoded, len, arg))
            why = "does not match the argument in the body";
        free(decoded);
        if (why) {
            reply_errorf(r, 400, c->id, MCP_ERR_HEADER_MISMATCH, NULL, "Header mismatch: %s %s", header, why);
            dynamic_tool_free(mt);
            return -1;
        }
    }
    dynamic_tool_free(mt);
    return 0;
}

/* The per-request `_meta` of 2026-07-28: a supported version that the
 * MCP-Protocol-Version header repeats, and the client's capabilities.
 * 0 when it holds; otherwise the error has been answered. */
static int check_envelope(rpc *c, const jsonrpc_msg *msg, json_t *meta, const char *header_version)
{
    json_t *claim = json_object_get(meta, MCP_META_PROTOCOL_VERSION);
    if (!json_is_string(claim)) {
        reply_error(c->r, 400, c->id, JSONRPC_INVALID_PARAMS,
                    "params._meta must carry " MCP_META_PROTOCOL_VERSION " (a string) and "
                    MCP_META_CLIENT_CAPABILITIES " (an object)", NULL);
        return -1;
    }
    const char *version = json_string_value(claim);
    if (msg->kind == JSONRPC_REQUEST && !header_version) {
        reply_error(c->r, 400, c->id, MCP_ERR_HEADER_MISMATCH,
                    "Header mismatch: the MCP-Protocol-Version header is required", NULL);
        return -1;
    }
    if (header_version && strcmp(header_version, version) != 0) {
        reply_errorf(c->r, 400, c->id, MCP_ERR_HEADER_MISMATCH, NULL,
                     "Header mismatch: MCP-Protocol-Version header value '%s' does not match body value '%s'",
                     header_version, version);
        return -1;
    }
    if (strcmp(version, MCP_VERSION_MODERN) != 0) {
        reply_unsupported(c->r, c->id, version);
        return -1;
    }
    json_t *caps = json_object_get(meta, MCP_META_CLIENT_CAPABILITIES);
    json_t *info = json_object_get(meta, MCP_META_CLIENT_INFO);
    if (!json_is_object(caps)) {
        reply_error(c->r, 400, c->id, JSONRPC_INVALID_PARAMS,
                    "params._meta must carry " MCP_META_CLIENT_CAPABILITIES " (an object)", NULL);
        return -1;
    }
    if (info && !(json_is_object(info) && json_is_string(json_object_get(info, "name")) &&
                  json_is_string(json_object_get(info, "version")))) {
        reply_error(c->r, 400, c->id, JSONRPC_INVALID_PARAMS,
                    MCP_META_CLIENT_INFO " must be an object with a name and a version", NULL);
        return -1;
    }
    return 0;
}

/* ---- the endpoint ---- */

static int media_type_is(const char *value, const char *type)
{
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strcspn(value, ";");
    while (n && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    return n == strlen(type) && strncasecmp(value, type, n) == 0;
}

/* Whether an Accept header lets us answer application/json (no header:
 * anything goes). */
static int accepts_json(const char *accept)
{
    if (!accept)
        return 1;
    char *copy = strdup(accept);
    int ok = 0;
    for (char *save = NULL, *item = copy ? strtok_r(copy, ",", &save) : NULL; item && !ok;
         item = strtok_r(NULL, ",", &save))
        ok = media_type_is(item, "application/json") || media_type_is(item, "application/*") ||
             media_type_is(item, "*/*");
    free(copy);
    return ok;
}

/* The protocol version header, OWS trimmed (into `buf`), or NULL. */
static const char *version_header(hreq *r, char *buf, size_t n)
{
    const char *raw = hreq_header(r, "MCP-Protocol-Version");
    if (!raw)
        return NULL;
    while (*raw == ' ' || *raw == '\t')
        raw++;
    size_t len = strlen(raw);
    while (len && (raw[len - 1] == ' ' || raw[len - 1] == '\t'))
        len--;
    snprintf(buf, n, "%.*s", (int)len, raw);
    return buf;
}

/* Every connection is checked for DNS rebinding: a present Origin must be
 * ferry's own or one the operator allowed (403 otherwise). */
static int check_origin(hreq *r, mcp_server *m)
{
    const char *origin = hreq_header(r, "Origin");
    if (!origin || origin_allowed(m, origin))
        return 0;
    reply_error(r, 403, NULL, JSONRPC_INVALID_REQUEST,
                "Forbidden: this Origin may not use ferry's MCP endpoint (see --mcp-allowed-origin)",
                ferry_code("forbidden"));
    return -1;
}

static void dispatch(rpc *c, const jsonrpc_msg *msg)
{
    const char *method = msg->method;
    if (c->modern) {
        if (strcmp(method, "server/discover") == 0)
            do_discover(c);
        else if (strcmp(method, "tools/list") == 0)
            do_tools_list(c, msg->params);
        else if (strcmp(method, "tools/call") == 0)
            do_tools_call(c, msg->params);
        else   /* initialize and ping are legacy-only; no prompts, resources or subscriptions here */
            reply_errorf(c->r, 404, c->id, JSONRPC_METHOD_NOT_FOUND, NULL, "Method not found: %s", method);
        return;
    }
    if (strcmp(method, "ping") == 0)
        reply_result(c, json_object());
    else if (strcmp(method, "tools/list") == 0)
        do_tools_list(c, msg->params);
    else if (strcmp(method, "tools/call") == 0)
        do_tools_call(c, msg->params);
    else
        reply_errorf(c->r, 200, c->id, JSONRPC_METHOD_NOT_FOUND, NULL, "Method not found: %s", method);
}

static void post_mcp(hreq *r, void *arg)
{
    app *a = arg;
    mcp_server *m = a->mcp;
    if (check_origin(r, m) < 0)
        return;
    ferr e = {0};
    if (hreq_authenticate(r, &e) < 0) {
        hreq_add_header(r, "WWW-Authenticate", "Bearer");
        reply_errorf(r, 401, NULL, JSONRPC_INVALID_REQUEST, ferry_code("unauthorized"), "Unauthorized: %s", e.message);
        ferr_clear(&e);
        return;
    }
    const char *ctype = hreq_header(r, "Content-Type");
    if (ctype && !media_type_is(ctype, "application/json")) {
        reply_error(r, 415, NULL, JSONRPC_INVALID_REQUEST, "the body must be application/json: one JSON-RPC message",
                    NULL);
        return;
    }
    if (!accepts_json(hreq_header(r, "Accept"))) {
        reply_error(r, 406, NULL, JSONRPC_INVALID_REQUEST,
                    "ferry answers application/json: the Accept header must allow it", NULL);
        return;
    }
    size_t len;
    const char *body = hreq_body(r, &len);
    if (len > hreq_max_body(r)) {
        reply_errorf(r, 413, NULL, JSONRPC_INVALID_REQUEST, ferry_code("payload_too_large"),
                     "the message is %zu bytes; the limit is %zu", len, hreq_max_body(r));
        return;
    }
    jsonrpc_msg msg;
    jsonrpc_error perr;
    if (jsonrpc_parse(body, len, &msg, &perr) < 0) {
        if (perr.is_batch)
            snprintf(perr.message, sizeof perr.message, "batches are not supported: send one JSON-RPC message per POST");
        reply_error(r, 400, perr.id, perr.code, perr.message, NULL);
        jsonrpc_error_clear(&perr);
        return;
    }
    rpc c = {.r = r, .a = a, .m = m, .id = msg.id};
    if (msg.kind == JSONRPC_RESPONSE) {
        reply_error(r, 400, NULL, JSONRPC_INVALID_REQUEST,
                    "ferry sends no requests to clients, so it takes no responses", NULL);
        goto done;
    }
    if (msg.kind == JSONRPC_NOTIFICATION) {
        /* initialized, cancelled, ...: nothing for a stateless server to do. */
        hreq_reply_text(r, 202, NULL, NULL, 0);
        goto done;
    }

    char vbuf[80];
    const char *header_version = version_header(r, vbuf, sizeof vbuf);
    json_t *meta = json_is_object(msg.params) ? json_object_get(msg.params, "_meta") : NULL;
    int claims_modern = json_is_object(meta) && json_object_get(meta, MCP_META_PROTOCOL_VERSION);
    if (claims_modern || (header_version && strcmp(header_version, MCP_VERSION_MODERN) == 0)) {
        /* 2026-07-28: everything the request needs is in it. */
        c.modern = 1;
        if (check_envelope(&c, &msg, json_is_object(meta) ? meta : NULL, header_version) < 0 ||
            check_mirrored_headers(&c, &msg) < 0)
            goto done;
        dispatch(&c, &msg);
        goto done;
    }
    if (strcmp(msg.method, "initialize") == 0) {
        do_initialize(&c, msg.params);
        goto done;
    }
    /* 2025-11-25 after the handshake: the header names the revision. A
     * request without it would mean 2025-03-26, which ferry does not speak. */
    if (!header_version) {
        reply_error(r, 400, c.id, MCP_ERR_HEADER_MISMATCH,
                    "the MCP-Protocol-Version header is required (" MCP_VERSION_LEGACY " after initialize, or "
                    MCP_VERSION_MODERN ")", NULL);
        goto done;
    }
    if (strcmp(header_version, MCP_VERSION_LEGACY) != 0) {
        reply_unsupported(r, c.id, header_version);
        goto done;
    }
    dispatch(&c, &msg);
done:
    jsonrpc_msg_clear(&msg);
}

/* No server-initiated stream (GET) and no sessions to end (DELETE). */
static void no_stream(hreq *r, void *arg)
{
    app *a = arg;
    if (check_origin(r, a->mcp) < 0)
        return;
    hreq_add_header(r, "Allow", "POST");
    reply_error(r, 405, NULL, JSONRPC_INVALID_REQUEST,
                strcmp(hreq_method(r), "GET") == 0
                    ? "ferry offers no server-initiated stream: POST JSON-RPC messages to /mcp"
                    : "ferry issues no MCP sessions, so there is none to end",
                NULL);
}

void mcp_server_register(hserver *hs)
{
    hserver_route(hs, "POST", "/mcp", "mcp", ROUTE_RAW_BODY, post_mcp);
    hserver_route(hs, "GET", "/mcp", "mcp", ROUTE_RAW_BODY, no_stream);
    hserver_route(hs, "DELETE", "/mcp", "mcp", ROUTE_RAW_BODY, no_stream);
}
