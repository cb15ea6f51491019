#include "oauth.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "log.h"

#define STATE_TTL_MS (10 * 60 * 1000)
#define MAX_STATES 10000
#define TOKEN_TIMEOUT_MS 20000
#define DEFAULT_MARGIN_S 300
#define DEFAULT_INTERVAL_S 60
#define OAUTH_JOB_KIND "oauth"
#define OAUTH_JOB_ID "oauth:refresh"
/* Client credentials without expires_in: fetch a new token hourly. */
#define CC_DEFAULT_LIFETIME_MS (3600 * 1000)

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void wipe_free(char *p)
{
    if (p) {
        vault_wipe(p, strlen(p));
        free(p);
    }
}

/* ---- small text helpers ---- */

/* A growing string; what it holds may be secret, so it is wiped. */
typedef struct text {
    char *p;
    size_t n, cap;
    int oom;
} text;

static void text_add(text *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->n + n + 1 > t->cap) {
        size_t cap = (t->n + n + 1) * 2;
        char *p = malloc(cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        if (t->p) {
            memcpy(p, t->p, t->n);
            vault_wipe(t->p, t->cap);
            free(t->p);
        }
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = 0;
}

static void text_str(text *t, const char *s) { text_add(t, s, strlen(s)); }

/* Percent-encoding for query strings and form bodies: only RFC 3986's
 * unreserved characters go as they are. */
static void text_enc(text *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch)) {
            text_add(t, s, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            text_add(t, e, 3);
        }
    }
}

/* "&name=value" (no "&" first). */
static void text_param(text *t, const char *name, const char *value)
{
    if (t->n && t->p[t->n - 1] != '?')
        text_str(t, "&");
    text_enc(t, name);
    text_str(t, "=");
    text_enc(t, value);
}

static void text_wipe(text *t)
{
    if (t->p) {
        vault_wipe(t->p, t->cap);
        free(t->p);
    }
    memset(t, 0, sizeof *t);
}

static void b64url(const unsigned char *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    int o = 0;
    for (int i = 0; i < len; i++) {
        if (out[i] == '=')
            break;
        out[o++] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    out[o] = 0;
}

static int random_b64url(size_t nbytes, char *out)
{
    unsigned char raw[64];
    if (nbytes > sizeof raw || RAND_bytes(raw, (int)nbytes) != 1)
        return -1;
    b64url(raw, nbytes, out);
    vault_wipe(raw, sizeof raw);
    return 0;
}

/* The host of an http(s) URL, lowercased, into out. */
static int url_host(const char *url, char *out, size_t n)
{
    const char *p = strstr(url, "://");
    if (!p)
        return -1;
    p += 3;
    const char *at = NULL;
    size_t len = strcspn(p, "/?#");
    for (size_t i = 0; i < len; i++)
        if (p[i] == '@')
            at = p + i;
    if (at) {
        len -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    size_t hl = p[0] == '[' ? strcspn(p, "]") + 1 : strcspn(p, ":/?#");
    if (hl > len)
        hl = len;
    if (hl == 0 || hl >= n)
        return -1;
    for (size_t i = 0; i < hl; i++)
        out[i] = (char)(p[i] >= 'A' && p[i] <= 'Z' ? p[i] + 32 : p[i]);
    out[hl] = 0;
    return 0;
}

/* ---- the integration's OAuth client ---- */

typedef struct client_info {
    oauth_client_row row;
    int has_row;
    char *secret;                 /* opened; wiped */
    const char *client_id;
    const char *authorize_url, *token_url, *revoke_url;
    int token_private, revoke_private;   /* may reach non-public addresses */
} client_info;

/* A URL set through the API (a team admin) must lead to a public address;
 * one the operator set, or the provider script declares, may not. */
static int may_be_private(const provider *p, const char *url, int from_row, int operator_set)
{
    if (from_row)
        return operator_set;
    char host[256];
    return url && url_host(url, host, sizeof host) == 0 && provider_allows_private(p, host);
}

/* The team's client (or the operator's default) with the provider's URLs
 * where it overrides none. need_secret: open the client secret too. */
static int client_open(store *db, vault *v, const provider *p, int64_t team_id, int need_secret, client_info *ci,
                       ferr *err)
{
    memset(ci, 0, sizeof *ci);
    int found = store_oauth_client_get(db, team_id, p->slug, &ci->row, err);
    if (found < 0)
        return -1;
    ci->has_row = found == 0;
    const oauth_client_row *r = ci->has_row ? &ci->row : NULL;
    ci->client_id = r ? r->client_id : NULL;
    ci->authorize_url = r && r->authorize_url ? r->authorize_url : p->authn.authorize_url;
    ci->token_url = r && r->token_url ? r->token_url : p->authn.token_url;
    ci->revoke_url = r && r->revoke_url ? r->revoke_url : p->authn.revoke_url;
    ci->token_private = may_be_private(p, ci->token_url, r && r->token_url, r && r->set_by_operator);
    ci->revoke_private = may_be_private(p, ci->revoke_url, r && r->revoke_url, r && r->set_by_operator);
    if (need_secret && !ci->has_row) {
        ferr_set(err, FERR_NOT_FOUND,
                 "no OAuth client is set up for %s: a team admin sets one with PUT /v1/integrations/%s/oauth-client "
                 "(or the operator with ferry oauth set-client)",
                 p->slug, p->slug);
        ferr_detail(err, "integration", json_string(p->slug));
        return -1;
    }
    if (need_secret) {
        unsigned char dek[VAULT_KEY_LEN];
        size_t n = 0;
        int rc = vault_data_key(v, r->id, r->wrapped_key, r->wrapped_len, dek, err);
        if (rc == 0)
            rc = vault_unseal(dek, r->id, "client_secret", r->sealed_secret, r->sealed_len, &ci->secret, &n, err);
        vault_wipe(dek, sizeof dek);
        if (rc < 0) {
            store_oauth_client_clear(&ci->row);
            return -1;
        }
    }
    return 0;
}

static void client_close(client_info *ci)
{
    wipe_free(ci->secret);
    if (ci->has_row)
        store_oauth_client_clear(&ci->row);
    memset(ci, 0, sizeof *ci);
}

int oauth_set_client(store *db, vault *v, providers *ps, int64_t team_id, const char *slug,
                     const oauth_client_spec *spec, int by_operator, ferr *err)
{
    const provider *p = slug ? providers_find(ps, slug) : NULL;
    if (!p) {
        ferr_set(err, FERR_NOT_FOUND, "there is no integration named '%s'", slug ? slug : "");
        ferr_detail(err, "integration", json_string(slug ? slug : ""));
        return -1;
    }
    if (p->authn.kind != AUTH_OAUTH2)
        return ferr_set(err, FERR_INVALID_ARGUMENTS, "%s does not connect with OAuth", p->slug);
    if (!spec->client_id || !*spec->client_id || strlen(spec->client_id) > 512)
        return ferr_set(err, FERR_INVALID_ARGUMENTS, "client_id: a non-empty string of at most 512 characters");
    if (!spec->client_secret || !*spec->client_secret || strlen(spec->client_secret) > 4096)
        return ferr_set(err, FERR_INVALID_ARGUMENTS,
                        "client_secret: a non-empty string of at most 4096 characters");
    const char *urls[3] = {spec->authorize_url, spec->token_url, spec->revoke_url};
    static const char *const names[3] = {"authorize_url", "token_url", "revoke_url"};
    for (int i = 0; i < 3; i++) {
        char host[256];
        if (urls[i] && (strncmp(urls[i], "https://", 8) != 0 && strncmp(urls[i], "http://", 7) != 0))
            return ferr_set(err, FERR_INVALID_ARGUMENTS, "%s: an http(s) URL", names[i]);
        if (urls[i] && (strlen(urls[i]) > 2000 || url_host(urls[i], host, sizeof host) < 0))
            return ferr_set(err, FERR_INVALID_ARGUMENTS, "%s: not a usable URL", names[i]);
    }
    char id[40];
    memcpy(id, "oac_", 4);
    if (random_b64url(12, id + 4) < 0)
        return ferr_set(err, FERR_INTERNAL, "no randomness");
    oauth_client_row row = {
        .id = id, .team_id = team_id, .integration = p->slug, .client_id = (char *)spec->client_id,
        .authorize_url = (char *)spec->authorize_url, .token_url = (char *)spec->token_url,
        .revoke_url = (char *)spec->revoke_url, .set_by_operator = by_operator,
    };
    unsigned char dek[VAULT_KEY_LEN];
    if (vault_new_data_key(v, id, dek, row.wrapped_key, &row.wrapped_len, err) < 0)
        return -1;
    int rc = vault_seal(dek, id, "client_secret", spec->client_secret, strlen(spec->client_secret),
                        &row.sealed_secret, &row.sealed_len, err);
    vault_wipe(dek, sizeof dek);
    if (rc == 0)
        rc = store_oauth_client_set(db, &row, err);
    free(row.sealed_secret);
    return rc;
}

/* ---- pending authorizations ---- */

typedef struct auth_state {
    struct auth_state *next;
    char state[64];
    char verifier[96];
    int64_t user_id, team_id;
    char slug[64];
    char scope[8];
    char label[128];
    char connection_id[40];
    int64_t expires_ms;
} auth_state;

/* ---- requests to token endpoints ---- */

enum req_kind { REQ_REFRESH, REQ_EXCHANGE, REQ_REVOKE };

typedef struct token_req token_req;
typedef void (*token_done_fn)(token_req *t, long status, json_t *doc, const ferr *err);

struct token_req {
    oauth *o;
    token_req *prev, *next;
    enum req_kind kind;
    hclient_xfer *xfer;
    token_done_fn done;
    int64_t intent;
    struct timespec t0;
    char operation[24];
    char integration[64];
    char connection_id[40];
    int64_t user_id, team_id;
    char user[65], team[65];
};

struct oauth_waiter {
    struct flight *f;
    oauth_waiter *prev, *next;
    oauth_refresh_fn done;
    void *arg;
};

/* One refresh of one connection, and everyone waiting for it. */
typedef struct flight {
    token_req t;                  /* first: the request is the flight */
    oauth_waiter *waiters;
    store_connection conn;
    int client_credentials;
} flight;

typedef struct exchange {
    token_req t;
    auth_state st;
    json_t *settings;             /* kept from the callback's parameters, or NULL */
    oauth_connected_fn done;
    void *arg;
} exchange;

struct oauth {
    oauth_deps d;
    char *public_url;
    char *redirect_uri;
    auth_state *states;
    size_t nstates;
    token_req *reqs;
    size_t nreqs;
    sched_kind kind;              /* the refresh job's (oauth_schedule) */
    struct refresh_run *job_run;  /* its run in progress here, if any */
};

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void req_init(oauth *o, token_req *t, enum req_kind kind, const char *operation, const char *integration,
                     const char *connection_id, int64_t user_id, int64_t team_id)
{
    t->o = o;
    t->kind = kind;
    snprintf(t->operation, sizeof t->operation, "%s", operation);
    snprintf(t->integration, sizeof t->integration, "%s", integration);
    snprintf(t->connection_id, sizeof t->connection_id, "%s", connection_id ? connection_id : "");
    t->user_id = user_id;
    t->team_id = team_id;
    principal who;
    if (store_principal_by_ids(o->d.db, user_id, team_id, &who) == 0) {
        snprintf(t->user, sizeof t->user, "%s", who.user);
        snprintf(t->team, sizeof t->team, "%s", who.team);
    }
}

static void req_audit(token_req *t, const char *outcome, long status, const char *detail)
{
    if (!t->o->d.audit || !t->intent)
        return;
    audit_row row = {
        .user_id = t->user_id, .user = t->user[0] ? t->user : NULL, .team_id = t->team_id,
        .team = t->team[0] ? t->team : NULL, .integration = t->integration,
        .connection_id = t->connection_id[0] ? t->connection_id : NULL, .operation = t->operation,
        .access = "write", .outcome = outcome, .http_status = (int)status, .duration_ms = ms_since(&t->t0),
        .detail = detail,
    };
    audit_end(t->o->d.audit, t->intent, &row);
    t->intent = 0;
}

static void req_unlink(token_req *t)
{
    oauth *o = t->o;
    if (t->prev)
        t->prev->next = t->next;
    else if (o->reqs == t)
        o->reqs = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    o->nreqs--;
}

/* Zeroes the tokens a parsed answer holds before it is freed: every
 * string under a key that names a token, nested ones included (Slack's
 * authed_user.access_token). */
static void wipe_doc(json_t *doc)
{
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v) {
        if (json_is_string(v) && strstr(key, "token"))
            vault_wipe((char *)json_string_value(v), json_string_length(v));
        else if (json_is_object(v))
            wipe_doc(v);
    }
}

/* A token endpoint's answer: JSON, or the form encoding some older
 * endpoints still send. */
static json_t *parse_answer(const hclient_response *r)
{
    if (!r->body_len)
        return json_object();
    json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
    if (json_is_object(doc))
        return doc;
    json_decref(doc);
    doc = json_object();
    const char *p = r->body, *end = r->body + r->body_len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        if (eq) {
            char name[64];
            size_t nl = (size_t)(eq - p);
            if (nl < sizeof name) {
                memcpy(name, p, nl);
                name[nl] = 0;
                /* Values are percent-decoded. */
                size_t vl = (size_t)(stop - eq - 1);
                char *val = malloc(vl + 1);
                size_t o = 0;
                for (const char *q = eq + 1; val && q < stop; q++) {
                    if (*q == '%' && stop - q > 2 && isxdigit((unsigned char)q[1]) &&
                        isxdigit((unsigned char)q[2])) {
                        char hx[3] = {q[1], q[2], 0};
                        val[o++] = (char)strtol(hx, NULL, 16);
                        q += 2;
                    } else {
                        val[o++] = *q == '+' ? ' ' : *q;
                    }
                }
                if (val) {
                    val[o] = 0;
                    json_object_set_new(doc, name, json_stringn(val, o));
                    vault_wipe(val, vl + 1);
                    free(val);
                }
            }
        }
        p = stop + 1;
    }
    return doc;
}

static const char *doc_str(json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : NULL;
}

/* A non-empty string at a dotted path ("authed_user.access_token"), or NULL. */
static const char *doc_path(json_t *doc, const char *path)
{
    char part[64];
    while (json_is_object(doc)) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = 0;
        if (!path[n])
            return doc_str(doc, part);
        doc = json_object_get(doc, part);
        path += n + 1;
    }
    return NULL;
}

/* The provider's extra token fields found in a token answer, after the
 * fields[0..n) already there; the new count. */
static size_t extra_token_fields(const provider *p, json_t *doc, const char **fields, const char **values, size_t n)
{
    const char *name;
    json_t *path;
    json_object_foreach(p ? p->authn.token_fields : NULL, name, path) {
        const char *value = doc_path(doc, json_string_value(path));
        if (value && n < 2 + PROVIDER_MAX_TOKEN_FIELDS) {
            fields[n] = name;
            values[n++] = value;
        }
    }
    return n;
}

/* expires_in as a number or a numeric string; 0 when absent or useless. */
static int64_t doc_expires_in(json_t *doc)
{
    json_t *v = json_object_get(doc, "expires_in");
    double s = 0;
    if (json_is_number(v))
        s = json_number_value(v);
    else if (json_is_string(v)) {
        char *end;
        s = strtod(json_string_value(v), &end);
        if (end == json_string_value(v))
            s = 0;
    }
    return s > 0 && s < 10.0 * 365 * 86400 ? (int64_t)(s * 1000) : 0;
}

static void on_token_http(void *arg, hclient_response *resp, ferr *err)
{
    token_req *t = arg;
    t->xfer = NULL;
    req_unlink(t);
    json_t *doc = resp ? parse_answer(resp) : NULL;
    long status = resp ? resp->status : 0;
    int ok = resp && status >= 200 && status < 300 && (t->kind == REQ_REVOKE || doc_str(doc, "access_token"));
    const char *provider_error = doc_str(doc, "error");
    req_audit(t, ok ? "ok" : err ? ferr_code_name(err->code) : "upstream_error", status,
              ok ? NULL : err ? err->message : provider_error);
    t->done(t, status, doc, err);
    if (doc) {
        wipe_doc(doc);
        json_decref(doc);
    }
}

/* Audits, then sends a form to a token endpoint with the client's
 * credentials (HTTP basic, or in the form when the provider says so). */
static int req_post(token_req *t, const char *url, int allow_private, const char *client_id,
                    const char *client_secret, int client_auth_body, text *form, ferr *err)
{
    oauth *o = t->o;
    clock_gettime(CLOCK_MONOTONIC, &t->t0);
    if (o->d.audit && audit_begin(o->d.audit, t->team_id, t->operation, NULL, &t->intent, err) < 0)
        return -1;
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    headers = curl_slist_append(headers, "Accept: application/json");
    if (client_id && client_auth_body) {
        text_param(form, "client_id", client_id);
        if (client_secret)
            text_param(form, "client_secret", client_secret);
    } else if (client_id && client_secret) {
        /* RFC 6749 2.3.1: each form-encoded, then basic. */
        text pair = {0}, line = {0};
        text_enc(&pair, client_id);
        text_str(&pair, ":");
        text_enc(&pair, client_secret);
        char *b64 = pair.oom ? NULL : malloc(4 * (pair.n / 3 + 1) + 1);
        if (b64) {
            EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)pair.p, (int)pair.n);
            text_str(&line, "Authorization: Basic ");
            text_str(&line, b64);
            vault_wipe(b64, strlen(b64));
            free(b64);
        }
        if (!line.oom && line.p)
            headers = curl_slist_append(headers, line.p);
        text_wipe(&pair);
        text_wipe(&line);
    } else if (client_id) {
        text_param(form, "client_id", client_id);   /* a public client */
    }
    if (form->oom) {
        curl_slist_free_all(headers);
        req_audit(t, "internal", 0, "out of memory");
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    }
    char host[256] = "";
    url_host(url, host, sizeof host);
    hclient_request req = {
        .method = "POST", .url = url, .headers = headers, .body = form->p ? form->p : "", .body_len = form->n,
        .timeout_ms = TOKEN_TIMEOUT_MS, .label = t->integration, .host = host, .path = t->operation,
        .allow_private = allow_private,
    };
    if (hclient_start(o->d.http, &req, on_token_http, t, &t->xfer, err) < 0) {
        req_audit(t, ferr_code_name(err->code), 0, err->message);
        return -1;
    }
    t->next = o->reqs;
    if (o->reqs)
        o->reqs->prev = t;
    o->reqs = t;
    o->nreqs++;
    return 0;
}

/* What a refused token request means for the caller. */
static void token_error(const char *what, const char *integration, long status, json_t *doc, const ferr *transport,
                        ferr *out)
{
    if (transport) {
        ferr_set(out, transport->code, "%s for %s failed: %s", what, integration, transport->message);
        return;
    }
    const char *error = doc_str(doc, "error"), *description = doc_str(doc, "error_description");
    if (error)
        ferr_set(out, FERR_UPSTREAM_ERROR, "%s for %s was refused (HTTP %ld, %s%s%.200s)", what, integration, status,
                 error, description ? ": " : "", description ? description : "");
    else if (status >= 200 && status < 300)
        ferr_set(out, FERR_UPSTREAM_ERROR, "%s for %s answered without an access_token", what, integration);
    else
        ferr_set(out, FERR_UPSTREAM_ERROR, "%s for %s failed (HTTP %ld)", what, integration, status);
    ferr_detail(out, "provider_status", json_integer(status));
    if (error)
        ferr_detail(out, "provider_error", json_string(error));
}

/* ---- refresh ---- */

static void flight_finish(flight *f, const ferr *err)
{
    /* One at a time: a waiter's done may cancel another waiter. */
    oauth_waiter *w;
    while ((w = f->waiters)) {
        f->waiters = w->next;
        if (f->waiters)
            f->waiters->prev = NULL;
        oauth_refresh_fn done = w->done;
        void *arg = w->arg;
        free(w);
        done(arg, err);
    }
    store_connection_clear(&f->conn);
    free(f);
}

/* The refresh failed for good: a person must reconnect. */
static void mark_reconnect(oauth *o, const store_connection *c, const provider *p, const char *why, ferr *out)
{
    ferr ignore = {0};
    store_connection_set_status(o->d.db, c->id, "reconnect_required", why, &ignore);
    ferr_clear(&ignore);
    store_refresh_log(o->d.db, c->id, "failed", why);
    ferr_set(out, FERR_RECONNECT_REQUIRED, "the %s connection %s needs to be reconnected: %s", p ? p->name : "",
             c->id, why);
    if (p)
        connections_reconnect_details(p, c->id, out);
    log_line *l = log_begin(LOG_WARN, "oauth connection needs reconnecting");
    log_str(l, "connection", c->id);
    log_str(l, "integration", c->integration);
    log_str(l, "reason", why);
    log_end(l);
}

static void on_refresh_answer(token_req *t, long status, json_t *doc, const ferr *transport)
{
    flight *f = (flight *)t;
    oauth *o = t->o;
    const provider *p = providers_find(o->d.providers, f->conn.integration);
    ferr e = {0};
    const char *access = doc_str(doc, "access_token");
    if (!transport && status >= 200 && status < 300 && access) {
        int64_t in = doc_expires_in(doc);
        int64_t expires = in ? now_ms() + in : f->client_credentials ? now_ms() + CC_DEFAULT_LIFETIME_MS : 0;
        const char *fields[2] = {"access_token", "refresh_token"};
        const char *values[2] = {access, doc_str(doc, "refresh_token")};   /* rotated, when sent */
        if (connections_store_tokens(o->d.db, o->d.vault, &f->conn, fields, values, 2, expires, &e) == 0)
            store_refresh_log(o->d.db, f->conn.id, "ok", NULL);
        else
            store_refresh_log(o->d.db, f->conn.id, "error", e.message);
    } else {
        const char *error = doc_str(doc, "error");
        /* invalid_grant: the refresh token is expired, revoked or used up.
         * For client credentials the connection's own client is refused. */
        /* Some providers refuse with HTTP 200 and an error field (Slack:
         * {"ok": false, "error": "invalid_refresh_token"}). */
        int permanent = !transport && (status == 200 || status == 400 || status == 401) && error &&
                        (strcmp(error, "invalid_grant") == 0 || strcmp(error, "invalid_refresh_token") == 0 ||
                         strcmp(error, "token_revoked") == 0 ||
                         (f->client_credentials && (strcmp(error, "invalid_client") == 0 ||
                                                    strcmp(error, "unauthorized_client") == 0)));
        token_error(f->client_credentials ? "getting a token" : "refreshing the token", f->conn.integration, status,
                    doc, transport, &e);
        if (permanent) {
            char why[400];
            snprintf(why, sizeof why, "the provider refused the %s (%s)",
                     f->client_credentials ? "client credentials" : "refresh token", error);
            ferr_clear(&e);
            mark_reconnect(o, &f->conn, p, why, &e);
        } else {
            store_refresh_log(o->d.db, f->conn.id, "error", e.message);
            log_line *l = log_begin(LOG_WARN, "oauth refresh failed");
            log_str(l, "connection", f->conn.id);
            log_str(l, "integration", f->conn.integration);
            log_str(l, "error", e.message);
            log_end(l);
        }
    }
    flight_finish(f, e.code ? &e : NULL);
    ferr_clear(&e);
}

static flight *find_flight(oauth *o, const char *connection_id)
{
    for (token_req *t = o->reqs; t; t = t->next)
        if (t->kind == REQ_REFRESH && strcmp(t->connection_id, connection_id) == 0)
            return (flight *)t;
    return NULL;
}

static oauth_waiter *add_waiter(flight *f, oauth_refresh_fn done, void *arg)
{
    if (!done)
        return NULL;
    oauth_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        ferr e = {0};
        ferr_set(&e, FERR_INTERNAL, "out of memory");
        done(arg, &e);
        ferr_clear(&e);
        return NULL;
    }
    w->f = f;
    w->done = done;
    w->arg = arg;
    w->next = f->waiters;
    if (f->waiters)
        f->waiters->prev = w;
    f->waiters = w;
    return w;
}

/* Builds and sends the refresh (or client credentials) request. */
static int start_refresh(oauth *o, flight *f, const provider *p, ferr *err)
{
    credentials creds;
    if (connections_open(o->d.db, o->d.vault, &f->conn, &creds, err) < 0)
        return -1;
    client_info ci;
    text form = {0};
    int rc = -1;
    if (f->client_credentials) {
        const credential *id = credentials_get(&creds, "client_id"), *secret = credentials_get(&creds, "client_secret");
        if (client_open(o->d.db, o->d.vault, p, f->conn.team_id, 0, &ci, err) == 0) {
            text_param(&form, "grant_type", "client_credentials");
            if (p->authn.scopes && *p->authn.scopes)
                text_param(&form, "scope", p->authn.scopes);
            if (id && secret)
                rc = req_post(&f->t, ci.token_url, ci.token_private, id->value, secret->value,
                              p->authn.client_auth_body, &form, err);
            else
                mark_reconnect(o, &f->conn, p, "the connection has no client id and secret", err);
            client_close(&ci);
        }
    } else {
        const credential *refresh = credentials_get(&creds, "refresh_token");
        if (!refresh) {
            mark_reconnect(o, &f->conn, p, "the access token expired or was refused, and there is no refresh token",
                           err);
        } else if (client_open(o->d.db, o->d.vault, p, f->conn.team_id, 1, &ci, err) == 0) {
            text_param(&form, "grant_type", "refresh_token");
            text_param(&form, "refresh_token", refresh->value);
            rc = req_post(&f->t, ci.token_url, ci.token_private, ci.client_id, ci.secret, p->authn.client_auth_body,
                          &form, err);
            client_close(&ci);
        } else if (err->code == FERR_NOT_FOUND) {
            /* Tokens imported without a client to renew them: once they
             * stop working, only a person can help. */
            ferr_clear(err);
            mark_reconnect(o, &f->conn, p,
                           "the token no longer works and no OAuth client is set up to refresh it "
                           "(a team admin can set one with PUT /v1/integrations/<slug>/oauth-client)",
                           err);
        } else {
            store_refresh_log(o->d.db, f->conn.id, "error", err->message);
        }
    }
    text_wipe(&form);
    credentials_wipe(&creds);
    return rc;
}

oauth_waiter *oauth_refresh(oauth *o, const store_connection *c, oauth_refresh_fn done, void *arg)
{
    flight *f = find_flight(o, c->id);
    if (f)
        return add_waiter(f, done, arg);
    ferr err = {0};
    const provider *p = providers_find(o->d.providers, c->integration);
    f = calloc(1, sizeof *f);
    if (!p || p->authn.kind != AUTH_OAUTH2 || !f) {
        free(f);
        ferr_set(&err, p ? FERR_INTERNAL : FERR_NOT_FOUND, "%s does not connect with OAuth", c->integration);
        if (done)
            done(arg, &err);
        ferr_clear(&err);
        return NULL;
    }
    f->client_credentials = p->authn.client_credentials;
    if (store_connection_get(o->d.db, c->id, &f->conn, &err) != 0) {
        if (!err.code)
            ferr_set(&err, FERR_NOT_FOUND, "no connection %s", c->id);
        free(f);
        if (done)
            done(arg, &err);
        ferr_clear(&err);
        return NULL;
    }
    req_init(o, &f->t, REQ_REFRESH, f->client_credentials ? "oauth.client_credentials" : "oauth.refresh",
             c->integration, c->id, f->conn.user_id, f->conn.team_id);
    f->t.done = on_refresh_answer;
    if (start_refresh(o, f, p, &err) < 0) {
        store_connection_clear(&f->conn);
        free(f);
        if (done)
            done(arg, &err);
        ferr_clear(&err);
        return NULL;
    }
    return add_waiter(f, done, arg);
}

void oauth_cancel(oauth_waiter *w)
{
    if (!w || !w->f)
        return;
    flight *f = w->f;
    if (w->prev)
        w->prev->next = w->next;
    else
        f->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    free(w);   /* the refresh itself goes on: its result is still wanted */
}

int oauth_needs_refresh(const oauth *o, const provider *p, const store_connection *c)
{
    if (!p || p->authn.kind != AUTH_OAUTH2 || strcmp(c->status, "active") != 0)
        return 0;
    if (!c->token_expires_at)
        return p->authn.client_credentials;   /* no token fetched yet */
    /* The margin, but never more than half the token's life: a provider
     * issuing 60-second tokens is refreshed at 30, not on every call. */
    int64_t margin = (int64_t)(o->d.refresh_margin_s > 0 ? o->d.refresh_margin_s : DEFAULT_MARGIN_S) * 1000;
    int64_t life = c->token_expires_at - c->credential_set_at;
    if (life > 0 && margin > life / 2)
        margin = life / 2;
    return now_ms() >= c->token_expires_at - margin;
}

/* ---- the refresh job ---- */

typedef struct id_list {
    char (*ids)[40];
    size_t n, cap;
} id_list;

static void collect_id(void *ud, const char *id)
{
    id_list *l = ud;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->ids, cap * sizeof *l->ids);
        if (!p)
            return;
        l->ids = p;
        l->cap = cap;
    }
    snprintf(l->ids[l->n++], 40, "%s", id);
}

/* One refresh a run of the job waits for. */
typedef struct refresh_slot {
    struct refresh_run *run;
    oauth_waiter *w;
} refresh_slot;

/* A run of oauth:refresh: the refreshes it started, until each has ended. */
typedef struct refresh_run {
    oauth *o;
    sched_run *sr;
    refresh_slot *slots;
    size_t nslots, pending, failed;
    int starting;                 /* still starting refreshes: do not end yet */
    char error[512];              /* the store failed: the run failed */
} refresh_run;

static void refresh_run_end(refresh_run *x, const char *status, const char *error, int64_t retry_at)
{
    oauth *o = x->o;
    if (x->nslots) {
        log_line *l = log_begin(x->failed ? LOG_WARN : LOG_INFO, "oauth refresh job");
        log_int(l, "connections", (long long)x->nslots);
        log_int(l, "failed", (long long)x->failed);
        log_str(l, "status", status);
        log_end(l);
    }
    o->job_run = NULL;
    sched_run *sr = x->sr;
    free(x->slots);
    free(x);
    sched_outcome out = {.status = status, .error = error, .retry_at_ms = retry_at};
    sched_done(sr, &out);
}

static void refresh_run_check(refresh_run *x)
{
    if (x->starting || x->pending)
        return;
    /* A refresh that failed is its connection's business (an error in the
     * refresh log, or reconnect_required), not the job's. */
    if (x->error[0])
        refresh_run_end(x, "failed", x->error, 0);
    else
        refresh_run_end(x, "succeeded", NULL, 0);
}

static void on_job_refreshed(void *arg, const ferr *err)
{
    refresh_slot *slot = arg;
    refresh_run *x = slot->run;
    slot->w = NULL;
    x->pending--;
    if (err)
        x->failed++;
    refresh_run_check(x);
}

static void job_start(void *ud, sched_run *sr, const store_job *j, int manual)
{
    (void)j;
    (void)manual;
    oauth *o = ud;
    refresh_run *x = calloc(1, sizeof *x);
    if (!x) {
        sched_outcome out = {.status = "failed", .error = "out of memory"};
        sched_done(sr, &out);
        return;
    }
    x->o = o;
    x->sr = sr;
    x->starting = 1;
    o->job_run = x;
    int64_t margin = (int64_t)(o->d.refresh_margin_s > 0 ? o->d.refresh_margin_s : DEFAULT_MARGIN_S) * 1000;
    id_list l = {0};
    if (store_connections_expiring(o->d.db, now_ms() + margin, collect_id, &l) < 0)
        snprintf(x->error, sizeof x->error, "cannot read the connections whose tokens expire");
    x->slots = l.n ? calloc(l.n, sizeof *x->slots) : NULL;
    if (l.n && !x->slots)
        snprintf(x->error, sizeof x->error, "out of memory");
    for (size_t i = 0; x->slots && i < l.n; i++) {
        store_connection c;
        ferr err = {0};
        int found = store_connection_get(o->d.db, l.ids[i], &c, &err);
        if (found < 0)
            snprintf(x->error, sizeof x->error, "%s", err.message);
        ferr_clear(&err);
        if (found != 0)
            continue;
        if (oauth_needs_refresh(o, providers_find(o->d.providers, c.integration), &c)) {
            refresh_slot *slot = &x->slots[x->nslots++];
            slot->run = x;
            x->pending++;
            /* Joins a refresh already in flight for the connection, if any;
             * may end at once (then on_job_refreshed has run). */
            slot->w = oauth_refresh(o, &c, on_job_refreshed, slot);
        }
        store_connection_clear(&c);
    }
    free(l.ids);
    x->starting = 0;
    refresh_run_check(x);
}

static void job_stop(void *ud, sched_run *sr, const char *why)
{
    oauth *o = ud;
    refresh_run *x = o->job_run;
    if (!x || x->sr != sr) {
        sched_outcome out = {.status = "failed", .error = why};
        sched_done(sr, &out);
        return;
    }
    /* The refreshes themselves go on (their results are still wanted);
     * the run is over now. Due again at once, for the next process. */
    for (size_t i = 0; i < x->nslots; i++)
        if (x->slots[i].w)
            oauth_cancel(x->slots[i].w);
    refresh_run_end(x, "failed", why, now_ms());
}

int oauth_schedule(oauth *o, sched *s, ferr *err)
{
    int interval = o->d.refresh_interval_s ? o->d.refresh_interval_s : DEFAULT_INTERVAL_S;
    if (interval < 0)
        return 0;
    /* One job for every process on the database: no herd to spread, so no
     * jitter (which would only push refreshes towards the margin's end). */
    o->kind = (sched_kind){.name = OAUTH_JOB_KIND, .ud = o, .max_running = 1, .no_jitter = 1, .start = job_start,
                           .stop = job_stop};
    if (sched_register(s, &o->kind) < 0)
        return ferr_set(err, FERR_INTERNAL, "too many job kinds");
    char every[32];
    snprintf(every, sizeof every, "%ds", interval);
    return sched_ensure_job_in(s, OAUTH_JOB_ID, OAUTH_JOB_KIND, "", "refresh", every, (int64_t)interval * 1000,
                               err);
}

/* ---- lifecycle ---- */

oauth *oauth_new(const oauth_deps *d)
{
    oauth *o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->d = *d;
    oauth_set_public_url(o, "http://127.0.0.1:8700");
    return o;
}

void oauth_free(oauth *o)
{
    if (!o)
        return;
    /* The scheduler stops its runs first (app_close); a run left here
     * would wait on refreshes that are about to end. */
    if (o->job_run) {
        for (size_t i = 0; i < o->job_run->nslots; i++)
            if (o->job_run->slots[i].w)
                oauth_cancel(o->job_run->slots[i].w);
        refresh_run_end(o->job_run, "failed", "ferry is shutting down", now_ms());
    }
    ferr e = {0};
    ferr_set(&e, FERR_INTERNAL, "ferry is shutting down");
    while (o->reqs) {
        token_req *t = o->reqs;
        hclient_cancel(t->xfer);
        t->xfer = NULL;
        req_unlink(t);
        req_audit(t, "internal", 0, e.message);
        t->done(t, 0, NULL, &e);
    }
    ferr_clear(&e);
    while (o->states) {
        auth_state *s = o->states;
        o->states = s->next;
        vault_wipe(s, sizeof *s);
        free(s);
    }
    free(o->public_url);
    free(o->redirect_uri);
    free(o);
}

void oauth_set_public_url(oauth *o, const char *public_url)
{
    size_t n = strlen(public_url);
    while (n && public_url[n - 1] == '/')
        n--;
    free(o->public_url);
    free(o->redirect_uri);
    o->public_url = strndup(public_url, n);
    o->redirect_uri = malloc(n + sizeof "/oauth/callback");
    if (o->redirect_uri)
        snprintf(o->redirect_uri, n + sizeof "/oauth/callback", "%.*s/oauth/callback", (int)n, public_url);
}

const char *oauth_redirect_uri(const oauth *o) { return o->redirect_uri; }

size_t oauth_in_flight(const oauth *o) { return o->nreqs; }

/* ---- the authorization code flow ---- */

static void prune_states(oauth *o)
{
    int64_t now = now_ms();
    for (auth_state **pp = &o->states; *pp;) {
        auth_state *s = *pp;
        if (s->expires_ms <= now) {
            *pp = s->next;
            vault_wipe(s, sizeof *s);
            free(s);
            o->nstates--;
        } else {
            pp = &s->next;
        }
    }
}

int oauth_start(oauth *o, const principal *who, const oauth_start_spec *spec, char **url, int64_t *expires_ms,
                ferr *err)
{
    *url = NULL;
    const provider *p = spec->slug ? providers_find(o->d.providers, spec->slug) : NULL;
    if (!p) {
        ferr_set(err, FERR_NOT_FOUND, "there is no integration named '%s'", spec->slug ? spec->slug : "");
        ferr_detail(err, "integration", json_string(spec->slug ? spec->slug : ""));
        return -1;
    }
    if (p->authn.kind != AUTH_OAUTH2)
        return ferr_set(err, FERR_INVALID_ARGUMENTS,
                        "%s does not connect with OAuth: connect it with POST /v1/connections", p->slug);
    if (p->authn.client_credentials)
        return ferr_set(err, FERR_INVALID_ARGUMENTS,
                        "%s connects server to server: POST /v1/connections with its client_id and client_secret",
                        p->slug);
    const char *scope = spec->scope ? spec->scope : "user";
    if (strcmp(scope, "user") != 0 && strcmp(scope, "team") != 0)
        return ferr_set(err, FERR_INVALID_ARGUMENTS, "scope must be \"user\" or \"team\"");
    if (strcmp(scope, "team") == 0 && !who->is_admin)
        return ferr_set(err, FERR_FORBIDDEN, "only a team admin can share a connection with the team");
    if (spec->label && strlen(spec->label) > 120)
        return ferr_set(err, FERR_INVALID_ARGUMENTS, "label: at most 120 characters");
    if (spec->connection_id) {
        store_connection c;
        if (connections_get_visible(o->d.db, who, spec->connection_id, &c, err) < 0)
            return -1;
        int ok = strcmp(c.integration, p->slug) == 0, mine = c.user_id == who->user_id;
        store_connection_clear(&c);
        if (!ok)
            return ferr_set(err, FERR_INVALID_ARGUMENTS, "connection %s is not a %s connection", spec->connection_id,
                            p->slug);
        if (!mine && !who->is_admin)
            return ferr_set(err, FERR_FORBIDDEN, "only its owner or a team admin can reconnect connection %s",
                            spec->connection_id);
    }
    client_info ci;
    if (client_open(o->d.db, o->d.vault, p, who->team_id, 1, &ci, err) < 0)
        return -1;
    prune_states(o);
    if (o->nstates >= MAX_STATES) {
        client_close(&ci);
        ferr_set(err, FERR_RATE_LIMITED, "too many sign-ins in progress; retry shortly");
        ferr_detail(err, "retry_after", json_integer(60));
        return -1;
    }
    auth_state *s = calloc(1, sizeof *s);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    char challenge[64];
    if (!s || random_b64url(32, s->state) < 0 || random_b64url(48, s->verifier) < 0) {
        free(s);
        client_close(&ci);
        return ferr_set(err, FERR_INTERNAL, "no randomness");
    }
    SHA256((const unsigned char *)s->verifier, strlen(s->verifier), digest);
    b64url(digest, sizeof digest, challenge);
    s->user_id = who->user_id;
    s->team_id = who->team_id;
    snprintf(s->slug, sizeof s->slug, "%s", p->slug);
    snprintf(s->scope, sizeof s->scope, "%s", scope);
    snprintf(s->label, sizeof s->label, "%s", spec->label ? spec->label : "");
    snprintf(s->connection_id, sizeof s->connection_id, "%s", spec->connection_id ? spec->connection_id : "");
    s->expires_ms = now_ms() + STATE_TTL_MS;

    text u = {0};
    text_str(&u, ci.authorize_url);
    text_str(&u, strchr(ci.authorize_url, '?') ? "&" : "?");
    text_param(&u, "response_type", "code");
    text_param(&u, "client_id", ci.client_id);
    text_param(&u, "redirect_uri", o->redirect_uri);
    if (p->authn.scopes && *p->authn.scopes)
        text_param(&u, "scope", p->authn.scopes);
    text_param(&u, "state", s->state);
    text_param(&u, "code_challenge", challenge);
    text_param(&u, "code_challenge_method", "S256");
    const char *k;
    json_t *v;
    json_object_foreach(p->authn.extra_authorize_params, k, v) if (json_is_string(v)) text_param(&u, k, json_string_value(v));
    client_close(&ci);
    if (u.oom) {
        text_wipe(&u);
        free(s);
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    }
    s->next = o->states;
    o->states = s;
    o->nstates++;
    *url = u.p;   /* nothing secret in it */
    *expires_ms = s->expires_ms;
    return 0;
}

/* Stores the tokens of a finished exchange: into the connection being
 * reconnected, the user's existing one of the same kind, or a new one. */
static int store_exchange(oauth *o, exchange *x, json_t *doc, store_connection *out, ferr *err)
{
    const auth_state *s = &x->st;
    principal who;
    if (store_principal_by_ids(o->d.db, s->user_id, s->team_id, &who) != 0)
        return ferr_set(err, FERR_FORBIDDEN, "the user who started this sign-in is no longer in the team");
    const char *access = doc_str(doc, "access_token"), *refresh = doc_str(doc, "refresh_token");
    int64_t in = doc_expires_in(doc);
    int64_t expires = in ? now_ms() + in : 0;
    const provider *p = providers_find(o->d.providers, s->slug);

    store_connection c;
    int found = 1;
    if (s->connection_id[0]) {
        found = store_connection_get(o->d.db, s->connection_id, &c, err);
        if (found < 0)
            return -1;
        if (found == 0 && strcmp(c.integration, s->slug) != 0) {
            store_connection_clear(&c);
            found = 1;
        }
        if (found == 1)
            return ferr_set(err, FERR_NOT_FOUND, "connection %s no longer exists", s->connection_id);
    } else {
        found = store_connection_pick(o->d.db, who.team_id, who.user_id, s->slug, &c, err);
        if (found < 0)
            return -1;
        /* Only the user's own connection of the same scope is replaced; a
         * team connection is left to the admin who made it. */
        if (found == 0 && (c.user_id != who.user_id || strcmp(c.scope, s->scope) != 0)) {
            store_connection_clear(&c);
            found = 1;
        }
    }
    if (found == 0) {
        const char *fields[2 + PROVIDER_MAX_TOKEN_FIELDS] = {"access_token", "refresh_token"};
        const char *values[2 + PROVIDER_MAX_TOKEN_FIELDS] = {access, refresh};
        size_t n = extra_token_fields(p, doc, fields, values, 2);
        connections_adopt_settings(o->d.db, p, &c, x->settings);
        int rc = connections_store_tokens(o->d.db, o->d.vault, &c, fields, values, n, expires, err);
        if (rc == 0)
            store_refresh_log(o->d.db, c.id, "reconnected", NULL);
        char id[40];
        snprintf(id, sizeof id, "%s", c.id);
        store_connection_clear(&c);
        return rc < 0 ? -1 : store_connection_get(o->d.db, id, out, err) == 0 ? 0 : -1;
    }
    json_t *creds = json_pack("{s:s}", "access_token", access);
    if (refresh)
        json_object_set_new(creds, "refresh_token", json_string(refresh));
    const char *fields[2 + PROVIDER_MAX_TOKEN_FIELDS], *values[2 + PROVIDER_MAX_TOKEN_FIELDS];
    for (size_t i = 0, n = extra_token_fields(p, doc, fields, values, 0); i < n; i++)
        json_object_set_new(creds, fields[i], json_string(values[i]));
    connection_spec spec = {.integration = s->slug, .credentials = creds, .scope = s->scope,
                            .label = s->label[0] ? s->label : NULL, .settings = x->settings};
    int rc = connections_create(o->d.db, o->d.vault, o->d.providers, &who, &spec, out, err);
    json_t *v;
    const char *k;
    json_object_foreach(creds, k, v) vault_wipe((char *)json_string_value(v), json_string_length(v));
    json_decref(creds);
    if (rc == 0 && expires && store_connection_set_tokens(o->d.db, out->id, NULL, 0, expires, err) == 0)
        out->token_expires_at = expires;
    return rc;
}

static void on_exchange_answer(token_req *t, long status, json_t *doc, const ferr *transport)
{
    exchange *x = (exchange *)t;
    ferr e = {0};
    store_connection c;
    memset(&c, 0, sizeof c);
    int ok = 0;
    if (!transport && status >= 200 && status < 300 && doc_str(doc, "access_token")) {
        ok = store_exchange(t->o, x, doc, &c, &e) == 0;
    } else {
        token_error("exchanging the authorization code", x->st.slug, status, doc, transport, &e);
    }
    log_line *l = log_begin(ok ? LOG_INFO : LOG_WARN, ok ? "oauth connected" : "oauth exchange failed");
    log_str(l, "integration", x->st.slug);
    log_str(l, "connection", ok ? c.id : NULL);
    log_str(l, "user", t->user);
    if (!ok)
        log_str(l, "error", e.message);
    log_end(l);
    x->done(x->arg, ok ? &c : NULL, ok ? NULL : &e);
    if (ok)
        store_connection_clear(&c);
    ferr_clear(&e);
    vault_wipe(&x->st, sizeof x->st);
    json_decref(x->settings);
    free(x);
}

/* The settings a provider reads from its callback's parameters. */
static json_t *callback_settings(const provider *p, const oauth_callback_args *cb)
{
    if (!p->authn.callback_settings || !cb->param)
        return NULL;
    json_t *out = json_object();
    const char *name;
    json_t *param;
    json_object_foreach(p->authn.callback_settings, name, param) {
        const char *v = cb->param(cb->param_ud, json_string_value(param));
        if (v && *v && strlen(v) <= 256)
            json_object_set_new(out, name, json_string(v));
    }
    if (json_object_size(out) == 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

int oauth_callback(oauth *o, const oauth_callback_args *cb, oauth_connected_fn done, void *arg, ferr *err)
{
    const char *state = cb->state, *code = cb->code, *error = cb->error,
               *error_description = cb->error_description;
    prune_states(o);
    auth_state *s = NULL;
    for (auth_state **pp = &o->states; state && *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->state, state) == 0) {
            s = *pp;
            *pp = s->next;   /* single use, whatever happens next */
            o->nstates--;
            break;
        }
    if (!s)
        return ferr_set(err, FERR_BAD_REQUEST,
                        "this sign-in is unknown, already finished or expired (10 minutes): start it again");
    const provider *p = providers_find(o->d.providers, s->slug);
    int rc = -1;
    if (error) {
        ferr_set(err, FERR_FORBIDDEN, "%s did not grant access (%.64s%s%.200s)", p ? p->name : s->slug, error,
                 error_description ? ": " : "", error_description ? error_description : "");
        ferr_detail(err, "provider_error", json_string(error));
        ferr_detail(err, "integration", json_string(s->slug));
    } else if (!code || !*code) {
        ferr_set(err, FERR_BAD_REQUEST, "the provider sent no authorization code");
    } else {
        client_info ci;
        exchange *x = calloc(1, sizeof *x);
        if (!x) {
            ferr_set(err, FERR_INTERNAL, "out of memory");
        } else if (!p || client_open(o->d.db, o->d.vault, p, s->team_id, 1, &ci, err) < 0) {
            if (!p)
                ferr_set(err, FERR_NOT_FOUND, "there is no integration named '%s'", s->slug);
            free(x);
        } else {
            x->st = *s;
            x->settings = callback_settings(p, cb);
            x->done = done;
            x->arg = arg;
            req_init(o, &x->t, REQ_EXCHANGE, "oauth.exchange", s->slug, s->connection_id, s->user_id, s->team_id);
            x->t.done = on_exchange_answer;
            text form = {0};
            text_param(&form, "grant_type", "authorization_code");
            text_param(&form, "code", code);
            text_param(&form, "redirect_uri", o->redirect_uri);
            text_param(&form, "code_verifier", s->verifier);
            rc = req_post(&x->t, ci.token_url, ci.token_private, ci.client_id, ci.secret, p->authn.client_auth_body,
                          &form, err);
            text_wipe(&form);
            client_close(&ci);
            if (rc < 0) {
                vault_wipe(&x->st, sizeof x->st);
                json_decref(x->settings);
                free(x);
            }
        }
    }
    vault_wipe(s, sizeof *s);
    free(s);
    return rc;
}

/* ---- revocation ---- */

static void on_revoke_answer(token_req *t, long status, json_t *doc, const ferr *transport)
{
    (void)doc;
    int ok = !transport && status >= 200 && status < 300;
    log_line *l = log_begin(ok ? LOG_INFO : LOG_WARN, ok ? "oauth grant revoked" : "oauth revocation failed");
    log_str(l, "integration", t->integration);
    log_str(l, "connection", t->connection_id);
    log_int(l, "status", status);
    if (transport)
        log_str(l, "error", transport->message);
    log_end(l);
    free(t);
}

void oauth_revoke(oauth *o, const store_connection *c, const credentials *creds)
{
    const provider *p = providers_find(o->d.providers, c->integration);
    if (!p || p->authn.kind != AUTH_OAUTH2)
        return;
    client_info ci;
    ferr err = {0};
    /* The secret when the integration has a client; some revocation
     * endpoints (Google's) need none. */
    if (client_open(o->d.db, o->d.vault, p, c->team_id, 0, &ci, &err) < 0) {
        ferr_clear(&err);
        return;
    }
    if (ci.has_row) {
        client_close(&ci);
        if (client_open(o->d.db, o->d.vault, p, c->team_id, 1, &ci, &err) < 0) {
            ferr_clear(&err);
            return;
        }
    }
    const credential *refresh = credentials_get(creds, "refresh_token"), *access = credentials_get(creds, "access_token");
    const credential *token = refresh ? refresh : access;
    token_req *t = ci.revoke_url && token ? calloc(1, sizeof *t) : NULL;
    if (t) {
        req_init(o, t, REQ_REVOKE, "oauth.revoke", c->integration, c->id, c->user_id, c->team_id);
        t->done = on_revoke_answer;
        text form = {0};
        text_param(&form, "token", token->value);
        text_param(&form, "token_type_hint", refresh ? "refresh_token" : "access_token");
        const char *id = ci.client_id, *secret = ci.secret;
        if (p->authn.client_credentials) {
            const credential *cid = credentials_get(creds, "client_id"), *cs = credentials_get(creds, "client_secret");
            id = cid ? cid->value : NULL;
            secret = cs ? cs->value : NULL;
        }
        if (req_post(t, ci.revoke_url, ci.revoke_private, id, secret, p->authn.client_auth_body, &form, &err) < 0) {
            log_line *l = log_begin(LOG_WARN, "oauth revocation failed");
            log_str(l, "connection", c->id);
            log_str(l, "error", err.message);
            log_end(l);
            free(t);
        }
        text_wipe(&form);
    }
    ferr_clear(&err);
    client_close(&ci);
}
