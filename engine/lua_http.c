/* lua_http.c — ctx.http.request{...}, the one way scripts reach the network.
 *
 *   local resp, err = ctx.http.request{
 *     method = "GET", path = "/items" | url = "https://...",
 *     query = {limit = 10, tag = {"a", "b"}}, headers = {["X-Thing"] = "v"},
 *     json = {...} | body = "raw", timeout_ms = 5000 }
 *   resp.status, resp.headers (lowercase names), resp.body, resp.ok,
 *   resp.json() / resp:json() → decoded body | nil, err
 *   err.code: upstream_timeout, upstream_error, payload_too_large,
 *             egress_denied (host not in the provider's hosts), ...
 *
 * It starts the transfer, suspends the task, and resumes it from the
 * transfer's completion with the results: the pattern every waiting
 * primitive follows. Request problems the script can fix (a bad argument)
 * raise; what the world does (a timeout, a refused host) is returned. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include <lauxlib.h>
#include <openssl/evp.h>

#include "jsonfmt.h"
#include "lhost.h"
#include "lua_ctx.h"
#include "lua_json.h"
#include "oauth.h"
#include "vault.h"

#define MAX_TIMEOUT_MS 120000
#define MAX_RETRY_AFTER_S 86400.0

/* A request on its way: waiting for its upstream budget (timer), then in
 * flight (xfer). It owns what the transfer needs until it starts. */
typedef struct pending {
    lhost_task *task;
    hclient *http;
    hclient_xfer *xfer;
    struct event *timer;
    const credentials *creds;   /* the call's; it outlives the request */
    lua_ctx *ctx;               /* the call's */
    /* OAuth: the request's headers without the credential, kept to send it
     * once more with a refreshed token when the upstream answers 401. */
    struct curl_slist *plain_headers;
    int can_retry, retried;
    oauth_waiter *refresh;
    budget *budget;
    char budget_key[160];
    char method[16];
    char *url;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    long timeout_ms;
    char request_id[17];
    const char *label;
    char *host;
    char *path;
    int allow_private;
} pending;

typedef struct outcome {
    hclient_response *resp;
    ferr *err;
    const credentials *creds;
} outcome;

static void free_pending(pending *p)
{
    if (p->timer)
        event_free(p->timer);
    if (p->refresh)
        oauth_cancel(p->refresh);
    curl_slist_free_all(p->headers);
    curl_slist_free_all(p->plain_headers);
    if (p->url) {
        vault_wipe(p->url, strlen(p->url));   /* it may carry a credential */
        free(p->url);
    }
    if (p->body) {
        vault_wipe(p->body, p->body_len);
        free(p->body);
    }
    free(p->host);
    free(p->path);
    free(p);
}

static int l_json(lua_State *L)
{
    size_t n;
    const char *body = lua_tolstring(L, lua_upvalueindex(1), &n);
    if (lua_json_decode_push(L, body, n))
        return 1;
    lua_pushfstring(L, "the upstream response is not valid JSON (%s)", lua_tostring(L, -1));
    lua_pushnil(L);
    lua_ctx_push_error(L, FERR_UPSTREAM_ERROR, lua_tostring(L, -2));
    return 2;
}

/* Pushes text with the connection's secrets masked. */
static void push_masked(lua_State *L, const credentials *creds, const char *text, size_t n)
{
    size_t len = 0;
    char *masked = credentials_mask(creds, text, n, &len);
    if (!masked) {
        lua_pushlstring(L, text, n);
        return;
    }
    /* pushlstring may raise on memory; the masked copy must not leak. */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, masked, len);
    vault_wipe(masked, len);
    free(masked);
    luaL_pushresult(&b);
}

static int push_outcome(lua_State *L, void *ud)
{
    outcome *o = ud;
    if (o->err) {
        lua_pushnil(L);
        lua_ctx_push_ferr(L, o->err);
        return 2;
    }
    const credentials *creds = o->creds;
    hclient_response *r = o->resp;
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
    lua_pushboolean(L, r->status >= 200 && r->status < 300);
    lua_setfield(L, -2, "ok");
    lua_createtable(L, 0, (int)r->nheaders);
    for (size_t i = 0; i < r->nheaders; i++) {
        /* Repeated headers are joined as HTTP allows (RFC 9110 5.3). */
        lua_getfield(L, -1, r->headers[i].name);
        if (lua_isstring(L, -1)) {
            lua_pushliteral(L, ", ");
            push_masked(L, creds, r->headers[i].value, strlen(r->headers[i].value));
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            push_masked(L, creds, r->headers[i].value, strlen(r->headers[i].value));
        }
        lua_setfield(L, -2, r->headers[i].name);
    }
    lua_setfield(L, -2, "headers");
    push_masked(L, creds, r->body, r->body_len);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "body");
    lua_pushcclosure(L, l_json, 1);
    lua_setfield(L, -2, "json");
    return 1;
}

/* Seconds from a Retry-After value (delta seconds or an HTTP date), at
 * most a day: a larger one (or inf, nan) would pause the connection's
 * budget for good. */
static double retry_after_seconds(const hclient_response *r)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i].name, "retry-after") == 0) {
            char *end;
            double s = strtod(r->headers[i].value, &end);
            if (end == r->headers[i].value || *end != 0) {
                time_t when = curl_getdate(r->headers[i].value, NULL);
                s = when > 0 ? difftime(when, time(NULL)) : 0;
            }
            return !(s > 0) ? 0 : s < MAX_RETRY_AFTER_S ? s : MAX_RETRY_AFTER_S;
        }
    return 0;
}

static double wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec * 1e3 + (double)tv.tv_usec / 1e3;
}

static int start_transfer(pending *p, ferr *err);
static int push_start_error(lua_State *L, void *ud);

/* The token was refreshed after a 401 (or could not be): send the request
 * again with the new one, or hand the script the reason. */
static void on_retry_refreshed(void *arg, const ferr *rerr)
{
    pending *p = arg;
    p->refresh = NULL;
    lua_ctx *c = p->ctx;
    ferr e = {0};
    if (rerr) {
        ferr_set(&e, rerr->code, "%s", rerr->message);
        if (rerr->details)
            e.details = json_deep_copy(rerr->details);
    } else {
        credentials_wipe(c->creds);
        if (connections_open(c->svc->db, c->svc->vault, c->conn, c->creds, &e) == 0) {
            const credential *token = credentials_get(c->creds, "access_token");
            struct curl_slist *h = NULL;
            for (struct curl_slist *i = p->plain_headers; i; i = i->next)
                h = curl_slist_append(h, i->data);
            size_t len = token ? token->len + sizeof "Authorization: Bearer " : 0;
            char *line = token ? malloc(len) : NULL;
            if (line) {
                snprintf(line, len, "Authorization: Bearer %s", token->value);
                h = curl_slist_append(h, line);
                vault_wipe(line, len);
                free(line);
            }
            p->headers = h;
            if (!line)
                ferr_set(&e, FERR_RECONNECT_REQUIRED, "the connection has no access token");
            else if (start_transfer(p, &e) == 0)
                return;
        }
    }
    lhost_task *t = p->task;
    free_pending(p);
    lhost_task_wake(t, push_start_error, &e);
    ferr_clear(&e);
}

static void on_done(void *arg, hclient_response *resp, ferr *err)
{
    pending *p = arg;
    lhost_task *t = p->task;
    /* A 401 with a token that looked valid (revoked, or an expiry the
     * provider never told): refresh once and send the request once more. */
    if (resp && resp->status == 401 && p->can_retry && !p->retried) {
        p->retried = 1;
        p->xfer = NULL;
        oauth_waiter *w = oauth_refresh(p->ctx->svc->oauth, p->ctx->conn, on_retry_refreshed, p);
        if (w)
            p->refresh = w;   /* else on_retry_refreshed has run, and p may be gone */
        return;
    }
    /* The upstream says slow down: everything through this connection
     * waits, not only this call. */
    if (resp && (resp->status == 429 || resp->status == 503) && p->budget_key[0]) {
        double s = retry_after_seconds(resp);
        if (s > 0 || resp->status == 429)
            budget_pause(p->budget, p->budget_key, wall_ms() + (s > 0 ? s : 1) * 1000);
    }
    outcome o = {resp, err, p->creds};
    p->xfer = NULL;
    free_pending(p);
    lhost_task_wake(t, push_outcome, &o);
}

static void on_cancel(void *ud)
{
    pending *p = ud;
    if (p->xfer)
        hclient_cancel(p->xfer);
    free_pending(p);
}

static int start_transfer(pending *p, ferr *err)
{
    hclient_request req = {
        .method = p->method, .url = p->url, .headers = p->headers, .body = p->body, .body_len = p->body_len,
        .timeout_ms = p->timeout_ms, .request_id = p->request_id, .label = p->label, .host = p->host,
        .path = p->path, .allow_private = p->allow_private,
    };
    p->headers = NULL;   /* the client owns them now, even when it fails */
    return hclient_start(p->http, &req, on_done, p, &p->xfer, err);
}

static int push_start_error(lua_State *L, void *ud)
{
    lua_pushnil(L);
    lua_ctx_push_ferr(L, ud);
    return 2;
}

/* The upstream budget's turn came. */
static void on_budget(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    pending *p = arg;
    event_free(p->timer);
    p->timer = NULL;
    ferr err = {0};
    if (start_transfer(p, &err) < 0) {
        lhost_task *t = p->task;
        free_pending(p);
        lhost_task_wake(t, push_start_error, &err);
    }
    ferr_clear(&err);
}

static int valid_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static int valid_header_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == 0)
            return 0;
    return 1;
}

/* Adds "key=value" to the list at `list` (raises on bad types). */
static void collect_query_pair(lua_State *L, int list, const char *key, int value_idx)
{
    const char *v = NULL;
    if (lua_type(L, value_idx) == LUA_TBOOLEAN)
        v = lua_toboolean(L, value_idx) ? "true" : "false";
    else if (lua_type(L, value_idx) == LUA_TSTRING || lua_type(L, value_idx) == LUA_TNUMBER)
        v = lua_tostring(L, value_idx);
    else {
        luaL_error(L, "ctx.http.request: query.%s must be a string, number, boolean or an array of them", key);
        return;
    }
    lua_pushfstring(L, "%s=%s", key, v);
    lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
}

/* The query table as a list of "key=value" strings. */
static void collect_query(lua_State *L, int q, int list)
{
    lua_pushnil(L);
    while (lua_next(L, q)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "ctx.http.request: query keys must be strings");
        const char *key = lua_tostring(L, -2);
        if (lua_istable(L, -1)) {
            int arr = lua_gettop(L);
            lua_Integer n = (lua_Integer)lua_rawlen(L, arr);
            for (lua_Integer i = 1; i <= n; i++) {
                lua_rawgeti(L, arr, i);
                collect_query_pair(L, list, key, lua_gettop(L));
                lua_pop(L, 1);
            }
        } else {
            collect_query_pair(L, list, key, lua_gettop(L));
        }
        lua_pop(L, 1);
    }
}

/* The headers table as a list of "Name: value" lines; sets *has_ct when
 * Content-Type is among them. A header the core sets itself (where the
 * credential goes) is dropped: scripts cannot shadow or spoof it. */
static void collect_headers(lua_State *L, int h, int list, int *has_ct, const char *owned)
{
    lua_pushnil(L);
    while (lua_next(L, h)) {
        size_t vlen = 0;
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        const char *value = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                                ? lua_tolstring(L, -1, &vlen) : NULL;
        if (!name || !valid_token(name) || !value || !valid_header_value(value, vlen))
            luaL_error(L, "ctx.http.request: headers must map header names to string values without line breaks");
        if (owned && strcasecmp(name, owned) == 0) {
            lua_pop(L, 1);
            continue;
        }
        if (strcasecmp(name, "content-type") == 0)
            *has_ct = 1;
        lua_pushfstring(L, "%s: %s", name, value);
        lua_rawseti(L, list, (lua_Integer)lua_rawlen(L, list) + 1);
        lua_pop(L, 1);
    }
}

/* base_url + path, with exactly one slash between them. */
static void push_joined_url(lua_State *L, const char *base, const char *path)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    while (*path == '/')
        path++;
    lua_pushlstring(L, base, bl);
    lua_pushliteral(L, "/");
    lua_pushstring(L, path);
    lua_concat(L, 3);
}

enum { A_ARGS = 1, A_METHOD, A_URL, A_PATH, A_QUERY, A_HEADERS, A_JSON, A_BODY, A_TIMEOUT, A_TIER, A_TOKEN,
       A_FULL_URL, A_QLIST, A_HLIST, A_BODY_TEXT };

/* The header the core writes the credential into, if any. */
static const char *credential_header(const provider_auth *a)
{
    if (a->kind == AUTH_API_KEY && a->place == AUTH_IN_HEADER)
        return a->name;
    if (a->kind == AUTH_BASIC || a->kind == AUTH_OAUTH2)
        return "Authorization";
    return NULL;
}

/* Phase 1: read and check the arguments; everything built here is a Lua
 * value, so raising leaks nothing. */
static void read_request(lua_State *L, provider *pv, char method[16], long *timeout_ms)
{
    static const char *const fields[] = {"method", "url", "path", "query", "headers", "json", "body", "timeout_ms",
                                         "tier", "token"};
    for (int i = 0; i < 10; i++)
        lua_getfield(L, A_ARGS, fields[i]);
    if (!lua_isnil(L, A_TOKEN) && (!lua_isstring(L, A_TOKEN) || pv->authn.kind != AUTH_OAUTH2 ||
                                   (strcmp(lua_tostring(L, A_TOKEN), "access_token") != 0 &&
                                    !json_object_get(pv->authn.token_fields, lua_tostring(L, A_TOKEN)))))
        luaL_error(L, "ctx.http.request: token '%s' is not access_token or one of the provider's auth.token_fields",
                   lua_isstring(L, A_TOKEN) ? lua_tostring(L, A_TOKEN) : "?");
    if (!lua_isnil(L, A_TIER) && (!lua_isstring(L, A_TIER) || !provider_budget_for(pv, lua_tostring(L, A_TIER))))
        luaL_error(L, "ctx.http.request: tier '%s' is not one of the provider's rate_limits.tiers",
                   lua_isstring(L, A_TIER) ? lua_tostring(L, A_TIER) : "?");

    strcpy(method, "GET");
    if (!lua_isnil(L, A_METHOD)) {
        const char *m = luaL_checkstring(L, A_METHOD);
        size_t n = strlen(m);
        if (n == 0 || n >= 16)
            luaL_error(L, "ctx.http.request: method '%s' is not valid", m);
        for (size_t i = 0; i < n; i++) {
            if (!isalpha((unsigned char)m[i]))
                luaL_error(L, "ctx.http.request: method '%s' is not valid", m);
            method[i] = (char)toupper((unsigned char)m[i]);
        }
        method[n] = 0;
    }
    if (lua_type(L, A_URL) == LUA_TSTRING) {
        lua_pushvalue(L, A_URL);
    } else if (lua_type(L, A_PATH) == LUA_TSTRING) {
        if (!pv->base_url)
            luaL_error(L, "ctx.http.request: path given but the provider has no base_url");
        push_joined_url(L, pv->base_url, lua_tostring(L, A_PATH));
    } else {
        luaL_error(L, "ctx.http.request: give url or path (a string)");
    }
    *timeout_ms = 0;
    if (!lua_isnil(L, A_TIMEOUT)) {
        if (!lua_isinteger(L, A_TIMEOUT) || lua_tointeger(L, A_TIMEOUT) <= 0 ||
            lua_tointeger(L, A_TIMEOUT) > MAX_TIMEOUT_MS)
            luaL_error(L, "ctx.http.request: timeout_ms must be an integer from 1 to %d", MAX_TIMEOUT_MS);
        *timeout_ms = (long)lua_tointeger(L, A_TIMEOUT);
    }
    lua_newtable(L);   /* A_QLIST */
    if (!lua_isnil(L, A_QUERY)) {
        luaL_checktype(L, A_QUERY, LUA_TTABLE);
        collect_query(L, A_QUERY, A_QLIST);
    }
    lua_newtable(L);   /* A_HLIST */
    int has_ct = 0;
    if (!lua_isnil(L, A_HEADERS)) {
        luaL_checktype(L, A_HEADERS, LUA_TTABLE);
        collect_headers(L, A_HEADERS, A_HLIST, &has_ct, credential_header(&pv->authn));
    }
    if (!lua_isnil(L, A_JSON) && !lua_isnil(L, A_BODY))
        luaL_error(L, "ctx.http.request: give json or body, not both");
    if (!lua_isnil(L, A_JSON)) {
        lua_json_encode_push(L, A_JSON);
        if (!has_ct) {
            lua_pushliteral(L, "Content-Type: application/json");
            lua_rawseti(L, A_HLIST, (lua_Integer)lua_rawlen(L, A_HLIST) + 1);
        }
    } else if (!lua_isnil(L, A_BODY)) {
        luaL_checktype(L, A_BODY, LUA_TSTRING);
        lua_pushvalue(L, A_BODY);
    } else {
        lua_pushnil(L);
    }
    /* A_BODY_TEXT is on top now */
}

/* "prefix" + value into a malloc'd buffer the caller wipes. */
static char *join_secret(const char *a, const char *b, size_t blen, const char *c, size_t *len)
{
    size_t al = strlen(a), cl = c ? strlen(c) : 0;
    char *out = malloc(al + blen + cl + 1);
    if (!out)
        return NULL;
    memcpy(out, a, al);
    memcpy(out + al, b, blen);
    if (cl)
        memcpy(out + al + blen, c, cl);
    out[al + blen + cl] = 0;
    *len = al + blen + cl;
    return out;
}

static void wipe_free(char *p, size_t n)
{
    if (p) {
        vault_wipe(p, n);
        free(p);
    }
}

/* Adds the connection's credential where the provider's auth declaration
 * says: a header, a query parameter, a field of the JSON body, HTTP basic,
 * or an OAuth bearer token. Secrets are copied only into buffers wiped
 * after use, and into libcurl's request. *body may be replaced (malloc'd,
 * *body_owned set). */
static int inject_credential(const lua_ctx *c, const char *token_field, CURLU *u, struct curl_slist **headers,
                             const char **body, size_t *body_len, char **body_owned, ferr *err)
{
    const provider_auth *a = &c->provider->authn;
    if (a->kind == AUTH_NONE || !c->creds)
        return 0;
    if (a->kind == AUTH_BASIC) {
        const credential *user = credentials_get(c->creds, "username");
        const credential *pass = credentials_get(c->creds, "password");
        if (!user || !pass)
            return ferr_set(err, FERR_RECONNECT_REQUIRED, "the connection has no username and password");
        size_t plen = 0, b64cap = 4 * ((user->len + 1 + pass->len + 2) / 3) + 1;
        char *pair = join_secret(user->value, ":", 1, pass->value, &plen);
        char *b64 = malloc(b64cap);
        int ok = pair && b64 && EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)pair, (int)plen) > 0;
        size_t hlen = 0;
        char *line = ok ? join_secret("Authorization: Basic ", b64, strlen(b64), NULL, &hlen) : NULL;
        if (line)
            *headers = curl_slist_append(*headers, line);
        wipe_free(pair, plen);
        wipe_free(b64, b64cap);
        wipe_free(line, hlen);
        return line ? 0 : ferr_set(err, FERR_INTERNAL, "out of memory");
    }
    const char *field = a->kind == AUTH_OAUTH2 ? token_field : a->field;
    const credential *cr = credentials_get(c->creds, field);
    if (!cr)
        return ferr_set(err, FERR_RECONNECT_REQUIRED, "the connection has no '%s' credential", field);
    size_t len = 0;
    char *text = NULL;
    if (a->kind == AUTH_OAUTH2 || a->place == AUTH_IN_HEADER) {
        const char *name = a->kind == AUTH_OAUTH2 ? "Authorization" : a->name;
        const char *prefix = a->kind == AUTH_OAUTH2 ? "Bearer " : a->prefix ? a->prefix : "";
        size_t nlen = 0;
        char *head = join_secret(name, ": ", 2, prefix, &nlen);
        text = head ? join_secret(head, cr->value, cr->len, NULL, &len) : NULL;
        free(head);
        if (text)
            *headers = curl_slist_append(*headers, text);
    } else if (a->place == AUTH_IN_QUERY) {
        char *head = join_secret(a->name, "=", 1, a->prefix, &len);
        text = head ? join_secret(head, cr->value, cr->len, NULL, &len) : NULL;
        free(head);
        if (text)
            curl_url_set(u, CURLUPART_QUERY, text, CURLU_APPENDQUERY | CURLU_URLENCODE);
    } else {
        /* A field of the JSON body (Mandrill's "key"). */
        json_error_t jerr;
        json_t *doc = *body ? json_loadb(*body, *body_len, 0, &jerr) : json_object();
        if (!json_is_object(doc)) {
            json_decref(doc);
            return ferr_set(err, FERR_SCRIPT_ERROR,
                            "this provider's credential goes in the JSON body: send json = {...}, not body");
        }
        size_t plen = 0;
        text = join_secret(a->prefix ? a->prefix : "", cr->value, cr->len, NULL, &plen);
        len = plen;
        json_object_set_new(doc, a->name, json_stringn(text ? text : "", plen));
        char *out = json_dumps(doc, JSON_TEXT);
        json_decref(doc);   /* frees the copy of the secret jansson held, unwiped */
        if (!out) {
            wipe_free(text, len);
            return ferr_set(err, FERR_INTERNAL, "out of memory");
        }
        *body_owned = out;
        *body = out;
        *body_len = strlen(out);
    }
    wipe_free(text, len);
    return text ? 0 : ferr_set(err, FERR_INTERNAL, "out of memory");
}

static int l_request(lua_State *L)
{
    lua_ctx *c = lua_ctx_current(L, "ctx.http.request");
    provider *pv = c->provider;
    luaL_checktype(L, A_ARGS, LUA_TTABLE);
    lua_settop(L, A_ARGS);
    if (!lhost_can_wait(L))
        return luaL_error(L, "ctx.http.request cannot wait here (inside a metamethod, an iterator, "
                             "table.sort or string.gsub callback)");
    char method[16];
    long timeout_ms;
    read_request(L, pv, method, &timeout_ms);

    /* Phase 2: C resources; nothing below raises until they are freed. */
    ferr err = {0};
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *path = NULL, *final_url = NULL;
    char *body_owned = NULL;
    struct curl_slist *headers = NULL, *plain = NULL;
    pending *p = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, lua_tostring(L, A_FULL_URL), 0) != CURLUE_OK) {
        ferr_set(&err, FERR_SCRIPT_ERROR, "ctx.http.request: '%s' is not a valid URL", lua_tostring(L, A_FULL_URL));
        goto out;
    }
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, A_QLIST); i <= n; i++) {
        lua_rawgeti(L, A_QLIST, i);   /* cannot raise: stack has room */
        curl_url_set(u, CURLUPART_QUERY, lua_tostring(L, -1), CURLU_APPENDQUERY | CURLU_URLENCODE);
        lua_pop(L, 1);
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && strcmp(scheme, "http") != 0 &&
        strcmp(scheme, "https") != 0) {
        ferr_set(&err, FERR_EGRESS_DENIED, "only http and https URLs may be requested, not %s", scheme);
        goto out;
    }
    if (!scheme || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &final_url, 0) != CURLUE_OK) {
        ferr_set(&err, FERR_SCRIPT_ERROR, "ctx.http.request: '%s' is not a usable URL", lua_tostring(L, A_FULL_URL));
        goto out;
    }
    for (char *q = host; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    if (!provider_allows_host(pv, host)) {
        ferr_set(&err, FERR_EGRESS_DENIED, "host '%s' is not declared in the provider's hosts", host);
        goto out;
    }
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, A_HLIST); i <= n; i++) {
        lua_rawgeti(L, A_HLIST, i);
        headers = curl_slist_append(headers, lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    /* `token` names another token of the connection (Slack's user token)
     * to send instead of the access token, when the connection has it. */
    const char *token_field = "access_token";
    if (lua_isstring(L, A_TOKEN) && c->creds && credentials_get(c->creds, lua_tostring(L, A_TOKEN)))
        token_field = lua_tostring(L, A_TOKEN);
    /* Only a token that can be renewed is worth a second try; otherwise
     * the script sees the 401 and says what the upstream said. */
    int can_retry = pv->authn.kind == AUTH_OAUTH2 && c->conn && c->creds && c->svc->oauth && c->svc->vault &&
                    strcmp(token_field, "access_token") == 0 &&
                    (pv->authn.client_credentials || credentials_get(c->creds, "refresh_token"));
    for (struct curl_slist *i = headers; can_retry && i; i = i->next)
        plain = curl_slist_append(plain, i->data);
    size_t body_len = 0;
    const char *body = lua_tolstring(L, A_BODY_TEXT, &body_len);
    if (inject_credential(c, token_field, u, &headers, &body, &body_len, &body_owned, &err) < 0)
        goto out;
    /* The query may have gained the credential: take the URL again. */
    curl_free(final_url);
    final_url = NULL;
    if (curl_url_get(u, CURLUPART_URL, &final_url, 0) != CURLUE_OK) {
        ferr_set(&err, FERR_INTERNAL, "cannot build the request URL");
        goto out;
    }
    p = calloc(1, sizeof *p);
    if (!p) {
        ferr_set(&err, FERR_INTERNAL, "out of memory");
        goto out;
    }
    c->requests++;
    p->task = lhost_running(lhost_from(L));
    p->http = c->svc->http;
    p->creds = c->creds;
    p->ctx = c;
    p->can_retry = can_retry;
    p->plain_headers = plain;
    plain = NULL;
    p->budget = c->svc->budget;
    snprintf(p->method, sizeof p->method, "%s", method);
    snprintf(p->request_id, sizeof p->request_id, "%s", c->request_id ? c->request_id : "");
    p->label = pv->slug;
    p->url = strdup(final_url);
    p->host = strdup(host);
    p->path = strdup(path);
    p->body_len = body_len;
    p->body = body ? malloc(body_len + 1) : NULL;
    if (p->body)
        memcpy(p->body, body, body_len);
    p->timeout_ms = timeout_ms;
    p->allow_private = provider_allows_private(pv, host);
    p->headers = headers;
    headers = NULL;
    if (!p->url || !p->host || !p->path || (body && !p->body)) {
        free_pending(p);
        p = NULL;
        ferr_set(&err, FERR_INTERNAL, "out of memory");
        goto out;
    }
    /* The upstream's own limit, shared by every request of the connection. */
    const provider_budget *b = provider_budget_for(pv, lua_tostring(L, A_TIER));
    double wait = 0;
    if (b && b->rate > 0 && p->budget) {
        snprintf(p->budget_key, sizeof p->budget_key, "%s|%s|%s", pv->slug, c->conn ? c->conn->id : "-",
                 b->name ? b->name : "");
        wait = budget_reserve(p->budget, p->budget_key, b->rate, b->burst, wall_ms());
        long deadline = timeout_ms > 0 ? timeout_ms : 30000;
        if (wait > deadline) {
            budget_release(p->budget, p->budget_key);
            ferr_set(&err, FERR_UPSTREAM_RATE_LIMITED,
                     "%s's rate limit leaves no room for this request before its deadline", pv->name);
            ferr_detail(&err, "retry_after", json_integer((json_int_t)(wait / 1000 + 1)));
            free_pending(p);
            p = NULL;
            goto out;
        }
    }
    if (wait > 0) {
        struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)((long)wait % 1000) * 1000};
        p->timer = evtimer_new(c->svc->base, on_budget, p);
        if (!p->timer || evtimer_add(p->timer, &tv) < 0) {
            free_pending(p);
            p = NULL;
            ferr_set(&err, FERR_INTERNAL, "cannot wait for the upstream budget");
        }
    } else if (start_transfer(p, &err) < 0) {
        free_pending(p);
        p = NULL;
    }
out:
    curl_slist_free_all(headers);
    curl_slist_free_all(plain);
    curl_free(scheme);
    curl_free(host);
    curl_free(path);
    if (final_url) {
        /* It may hold a credential in its query. */
        vault_wipe(final_url, strlen(final_url));
        curl_free(final_url);
    }
    if (body_owned) {
        vault_wipe(body_owned, strlen(body_owned));
        free(body_owned);
    }
    curl_url_cleanup(u);
    if (err.code) {
        lua_pushnil(L);
        lua_ctx_push_ferr(L, &err);
        ferr_clear(&err);
        return 2;
    }
    lhost_task_wait(p->task, on_cancel, p);
    return lhost_suspend(L);
}

void lua_http_push(lua_State *L)
{
    static const luaL_Reg fns[] = {{"request", l_request}, {NULL, NULL}};
    luaL_newlib(L, fns);
}
