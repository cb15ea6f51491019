#include "connections.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define MAX_SECRET_LEN 8192
#define DAY_MS (24LL * 3600 * 1000)

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void credentials_wipe(credentials *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->items[i].field);
        vault_wipe(c->items[i].value, c->items[i].len);
        free(c->items[i].value);
    }
    for (size_t i = 0; i < c->nmasks; i++) {
        vault_wipe(c->masks[i], c->mask_len[i]);
        free(c->masks[i]);
    }
    memset(c, 0, sizeof *c);
}

/* Too short a value would mask ordinary text; real credentials are long. */
#define MIN_MASK 6

static void add_mask(credentials *c, const char *s, size_t n)
{
    if (n < MIN_MASK || c->nmasks == sizeof c->masks / sizeof c->masks[0])
        return;
    char *m = malloc(n + 1);
    if (!m)
        return;
    memcpy(m, s, n);
    m[n] = 0;
    c->masks[c->nmasks] = m;
    c->mask_len[c->nmasks++] = n;
}

static void build_masks(credentials *c)
{
    const credential *user = credentials_get(c, "username"), *pass = credentials_get(c, "password");
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].field, "username") != 0)   /* a name is not a secret */
            add_mask(c, c->items[i].value, c->items[i].len);
    if (user && pass) {
        size_t plen = user->len + 1 + pass->len;
        char *pair = malloc(plen + 1);
        char *b64 = malloc(4 * (plen / 3 + 1) + 1);
        if (pair && b64) {
            memcpy(pair, user->value, user->len);
            pair[user->len] = ':';
            memcpy(pair + user->len + 1, pass->value, pass->len);
            int n = EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)pair, (int)plen);
            if (n > 0)
                add_mask(c, b64, (size_t)n);
        }
        if (pair)
            vault_wipe(pair, plen);
        if (b64)
            vault_wipe(b64, 4 * (plen / 3 + 1) + 1);
        free(pair);
        free(b64);
    }
}

char *credentials_mask(const credentials *c, const char *text, size_t n, size_t *out_len)
{
    static const char replacement[] = "[redacted]";
    if (!c || c->nmasks == 0)
        return NULL;
    char *out = NULL;
    const char *src = text;
    size_t len = n;
    for (size_t m = 0; m < c->nmasks; m++) {
        const char *hit = memmem(src, len, c->masks[m], c->mask_len[m]);
        if (!hit)
            continue;
        /* Worst case every byte starts a match: bounded by len/mask. */
        size_t cap = len + (len / c->mask_len[m] + 1) * sizeof replacement;
        char *next = malloc(cap);
        if (!next)
            break;
        size_t o = 0, i = 0;
        while (hit) {
            size_t skip = (size_t)(hit - (src + i));
            memcpy(next + o, src + i, skip);
            o += skip;
            memcpy(next + o, replacement, sizeof replacement - 1);
            o += sizeof replacement - 1;
            i += skip + c->mask_len[m];
            hit = memmem(src + i, len - i, c->masks[m], c->mask_len[m]);
        }
        memcpy(next + o, src + i, len - i);
        o += len - i;
        next[o] = 0;
        if (out) {
            vault_wipe(out, len);
            free(out);
        }
        out = next;
        src = out;
        len = o;
    }
    if (out)
        *out_len = len;
    return out;
}

const credential *credentials_get(const credentials *c, const char *field)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].field, field) == 0)
            return &c->items[i];
    return NULL;
}

/* The secret fields a provider's auth declaration asks for; the first
 * *required of them must be given, the rest may be. */
#define MAX_SECRET_FIELDS (2 + PROVIDER_MAX_TOKEN_FIELDS)

static size_t secret_fields(const provider *p, const char *out[MAX_SECRET_FIELDS], size_t *required)
{
    switch (p->authn.kind) {
    case AUTH_API_KEY:
        out[0] = p->authn.field;
        return *required = 1;
    case AUTH_BASIC:
        out[0] = "username";
        out[1] = "password";
        return *required = 2;
    case AUTH_OAUTH2: {
        if (p->authn.client_credentials) {
            /* Server to server: the client's own credentials; ferry gets
             * and renews the access token itself. */
            out[0] = "client_id";
            out[1] = "client_secret";
            return *required = 2;
        }
        /* Tokens issued elsewhere, imported as they are; the usual way in
         * is the OAuth flow. */
        out[0] = "access_token";
        out[1] = "refresh_token";
        *required = 1;
        size_t n = 2;
        const char *name;
        json_t *path;
        json_object_foreach(p->authn.token_fields, name, path) {
            (void)path;
            if (n < MAX_SECRET_FIELDS)
                out[n++] = name;   /* more tokens, e.g. Slack's user token */
        }
        return n;
    }
    default:
        return *required = 0;
    }
}

static int in_names(const char *name, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return 1;
    return 0;
}

/* Exactly the declared names, each a non-empty string: else
 * invalid_arguments naming what is missing and what is extra. */
static int check_fields(const char *what, json_t *given, const char *const *names, size_t n, int secret,
                        size_t required, ferr *err)
{
    if (given && !json_is_object(given))
        return ferr_set(err, FERR_INVALID_ARGUMENTS, "%s must be a JSON object", what);
    json_t *missing = json_array(), *extra = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *v = given ? json_object_get(given, names[i]) : NULL;
        if (!v && i >= required)
            continue;
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            (secret && json_string_length(v) > MAX_SECRET_LEN))
            json_array_append_new(missing, json_string(names[i]));
    }
    const char *key;
    json_t *v;
    if (given)
        json_object_foreach(given, key, v) if (!in_names(key, names, n)) json_array_append_new(extra, json_string(key));
    if (json_array_size(missing) == 0 && json_array_size(extra) == 0) {
        json_decref(missing);
        json_decref(extra);
        return 0;
    }
    ferr_set(err, FERR_INVALID_ARGUMENTS, "%s: %s%s%s", what,
             json_array_size(missing) ? "missing or empty fields" : "",
             json_array_size(missing) && json_array_size(extra) ? " and " : "",
             json_array_size(extra) ? "fields not declared by the integration" : "");
    ferr_detail(err, "missing", missing);
    ferr_detail(err, "extra", extra);
    json_t *expected = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(expected, json_string(names[i]));
    ferr_detail(err, "expected", expected);
    return -1;
}

static void new_id(char out[40])
{
    unsigned char raw[8];
    RAND_bytes(raw, sizeof raw);
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "conn_", 5);
    for (int i = 0; i < 8; i++) {
        out[5 + 2 * i] = hex[raw[i] >> 4];
        out[6 + 2 * i] = hex[raw[i] & 15];
    }
    out[21] = 0;
}

int connections_create(store *db, vault *v, providers *ps, const principal *who, const connection_spec *spec,
                       store_connection *out, ferr *err)
{
    memset(out, 0, sizeof *out);
    const provider *p = spec->integration ? providers_find(ps, spec->integration) : NULL;
    if (!p) {
        ferr_set(err, FERR_NOT_FOUND, "there is no integration named '%s'", spec->integration ? spec->integration : "");
        ferr_detail(err, "integration", json_string(spec->integration ? spec->integration : ""));
        return -1;
    }
    if (p->authn.kind == AUTH_NONE)
        return ferr_set(err, FERR_INVALID_ARGUMENTS, "%s needs no connection: its tools are available as they are",
                        p->slug);
    const char *scope = spec->scope ? spec->scope : "user";
    if (strcmp(scope, "user") != 0 && strcmp(scope, "team") != 0)
        return ferr_set(err, FERR_INVALID_ARGUMENTS, "scope must be \"user\" or \"team\"");
    if (strcmp(scope, "team") == 0 && !who->is_admin)
        return ferr_set(err, FERR_FORBIDDEN, "only a team admin can share a connection with the team");

    const char *fields[MAX_SECRET_FIELDS];
    size_t required = 0, nfields = secret_fields(p, fields, &required);
    if (check_fields("credentials", spec->credentials, fields, nfields, 1, required, err) < 0)
        return -1;
    /* Settings are optional; an undeclared one is still an error. */
    if (check_fields("settings", spec->settings, (const char *const *)p->authn.settings, p->authn.nsettings, 0, 0,
                     err) < 0)
        return -1;

    new_id(out->id);
    snprintf(out->integration, sizeof out->integration, "%s", p->slug);
    out->team_id = who->team_id;
    out->user_id = who->user_id;
    snprintf(out->user, sizeof out->user, "%s", who->user);
    snprintf(out->scope, sizeof out->scope, "%s", scope);
    snprintf(out->label, sizeof out->label, "%s", spec->label ? spec->label : "");
    snprintf(out->status, sizeof out->status, "active");
    out->settings = spec->settings && json_object_size(spec->settings) ? json_dumps(spec->settings, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    out->connected_at = out->credential_set_at = now_ms();

    unsigned char dek[VAULT_KEY_LEN];
    if (vault_new_data_key(v, out->id, dek, out->wrapped_key, &out->wrapped_len, err) < 0) {
        store_connection_clear(out);
        return -1;
    }
    store_secret sealed[MAX_SECRET_FIELDS] = {{0}};
    size_t nsealed = 0;
    int rc = 0;
    for (size_t i = 0; i < nfields && rc == 0; i++) {
        json_t *val = json_object_get(spec->credentials, fields[i]);
        if (!val)
            continue;   /* an optional field not given */
        sealed[nsealed].field = fields[i];
        unsigned char *box = NULL;
        rc = vault_seal(dek, out->id, fields[i], json_string_value(val), json_string_length(val), &box,
                        &sealed[nsealed].len, err);
        sealed[nsealed++].sealed = box;
    }
    vault_wipe(dek, sizeof dek);
    if (rc == 0)
        rc = store_connection_insert(db, out, sealed, nsealed, err);
    for (size_t i = 0; i < nsealed; i++)
        free((void *)sealed[i].sealed);
    if (rc < 0) {
        vault_forget(v, out->id);
        store_connection_clear(out);
    }
    return rc;
}

static int visible(const principal *who, const store_connection *c)
{
    return c->team_id == who->team_id && (strcmp(c->scope, "team") == 0 || c->user_id == who->user_id);
}

int connections_get_visible(store *db, const principal *who, const char *id, store_connection *out, ferr *err)
{
    int found = store_connection_get(db, id, out, err);
    if (found < 0)
        return -1;
    if (found == 1 || !visible(who, out)) {
        if (found == 0)
            store_connection_clear(out);
        memset(out, 0, sizeof *out);
        return ferr_set(err, FERR_NOT_FOUND, "no connection %s", id);
    }
    return 0;
}

int connections_for_call(store *db, const principal *who, const provider *p, const char *id,
                         store_connection *out, ferr *err)
{
    if (id) {
        if (connections_get_visible(db, who, id, out, err) < 0)
            return -1;
        if (strcmp(out->integration, p->slug) != 0) {
            store_connection_clear(out);
            return ferr_set(err, FERR_INVALID_ARGUMENTS, "connection %s belongs to %s, not %s", id,
                            out->integration, p->slug);
        }
    } else {
        int found = store_connection_pick(db, who->team_id, who->user_id, p->slug, out, err);
        if (found < 0)
            return -1;
        if (found == 1) {
            memset(out, 0, sizeof *out);
            ferr_set(err, FERR_FORBIDDEN, "%s is not connected: connect %s first (POST /v1/connections)",
                     p->name, p->slug);
            ferr_detail(err, "integration", json_string(p->slug));
            return -1;
        }
    }
    if (strcmp(out->status, "reconnect_required") == 0) {
        ferr_set(err, FERR_RECONNECT_REQUIRED, "the %s connection %s needs to be reconnected by a person", p->name,
                 out->id);
        connections_reconnect_details(p, out->id, err);
        store_connection_clear(out);
        return -1;
    }
    if (strcmp(out->status, "disabled") == 0) {
        ferr_set(err, FERR_FORBIDDEN, "the %s connection %s is disabled", p->name, out->id);
        store_connection_clear(out);
        return -1;
    }
    return 0;
}

void connections_reconnect_details(const provider *p, const char *connection_id, ferr *err)
{
    /* OAuth reconnects through its start route; a key is replaced on the
     * Connected Apps page. */
    char url[200];
    if (p->authn.kind == AUTH_OAUTH2 && !p->authn.client_credentials)
        snprintf(url, sizeof url, "/oauth/%s/start?connection_id=%s", p->slug, connection_id);
    else
        snprintf(url, sizeof url, "/#%s", p->slug);
    ferr_detail(err, "reconnect_url", json_string(url));
    ferr_detail(err, "connection_id", json_string(connection_id));
    ferr_detail(err, "integration", json_string(p->slug));
}

int connections_delete(store *db, vault *v, const principal *who, const char *id, ferr *err)
{
    store_connection c;
    if (connections_get_visible(db, who, id, &c, err) < 0)
        return -1;
    int mine = c.user_id == who->user_id;
    store_connection_clear(&c);
    if (!mine && !who->is_admin)
        return ferr_set(err, FERR_FORBIDDEN, "only its owner or a team admin can delete connection %s", id);
    if (store_connection_delete(db, id, err) < 0)
        return -1;
    vault_forget(v, id);
    return 0;
}

typedef struct open_ctx {
    vault *v;
    const store_connection *c;
    unsigned char dek[VAULT_KEY_LEN];
    credentials *out;
    ferr *err;
} open_ctx;

static int open_one(void *ud, const char *field, const void *sealed, size_t len)
{
    open_ctx *o = ud;
    if (o->out->n == sizeof o->out->items / sizeof o->out->items[0])
        return 0;
    credential *cr = &o->out->items[o->out->n];
    if (vault_unseal(o->dek, o->c->id, field, sealed, len, &cr->value, &cr->len, o->err) < 0)
        return 1;
    cr->field = strdup(field);
    o->out->n++;
    return 0;
}

int connections_open(store *db, vault *v, const store_connection *c, credentials *out, ferr *err)
{
    memset(out, 0, sizeof *out);
    open_ctx o = {.v = v, .c = c, .out = out, .err = err};
    if (vault_data_key(v, c->id, c->wrapped_key, c->wrapped_len, o.dek, err) < 0)
        return -1;
    int rc = store_connection_secrets(db, c->id, open_one, &o, err);
    vault_wipe(o.dek, sizeof o.dek);
    if (rc == 0)
        build_masks(out);
    if (rc < 0) {
        credentials_wipe(out);
        /* A credential that fails its check is unusable until replaced. */
        ferr ignore = {0};
        store_connection_set_status(db, c->id, "error", err->message, &ignore);
        ferr_clear(&ignore);
        return -1;
    }
    return 0;
}

int connections_store_tokens(store *db, vault *v, const store_connection *c, const char *const *fields,
                             const char *const *values, size_t n, int64_t expires_at, ferr *err)
{
    unsigned char dek[VAULT_KEY_LEN];
    if (n > MAX_SECRET_FIELDS)
        return ferr_set(err, FERR_INTERNAL, "too many token fields");
    if (vault_data_key(v, c->id, c->wrapped_key, c->wrapped_len, dek, err) < 0)
        return -1;
    store_secret sealed[MAX_SECRET_FIELDS] = {{0}};
    size_t nsealed = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!values[i])
            continue;
        unsigned char *box = NULL;
        sealed[nsealed].field = fields[i];
        rc = vault_seal(dek, c->id, fields[i], values[i], strlen(values[i]), &box, &sealed[nsealed].len, err);
        sealed[nsealed++].sealed = box;
    }
    vault_wipe(dek, sizeof dek);
    if (rc == 0)
        rc = store_connection_set_tokens(db, c->id, sealed, nsealed, expires_at, err);
    for (size_t i = 0; i < nsealed; i++)
        free((void *)sealed[i].sealed);
    return rc;
}

int connections_adopt_settings(store *db, const provider *p, store_connection *c, json_t *given)
{
    if (!p || !json_is_object(given))
        return 0;
    json_t *have = c->settings ? json_loads(c->settings, 0, NULL) : NULL;
    if (!json_is_object(have)) {
        json_decref(have);
        have = json_object();
    }
    int added = 0;
    for (size_t i = 0; i < p->authn.nsettings; i++) {
        const char *name = p->authn.settings[i];
        json_t *v = json_object_get(given, name);
        if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) <= 256 &&
            !json_object_get(have, name)) {
            json_object_set(have, name, v);
            added++;
        }
    }
    if (added) {
        char *text = json_dumps(have, JSON_COMPACT | JSON_SORT_KEYS);
        ferr err = {0};
        if (text && store_connection_set_settings(db, c->id, text, &err) == 0) {
            free(c->settings);
            c->settings = text;
        } else {
            free(text);
            added = 0;
        }
        ferr_clear(&err);
    }
    json_decref(have);
    return added;
}

static json_t *time_or_null(int64_t ms)
{
    if (!ms)
        return json_null();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

json_t *connections_to_json(const store_connection *c, int policy_days)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:I, s:o, s:s}", "id", c->id,
                          "integration", c->integration, "scope", c->scope, "status", c->status, "label",
                          c->label[0] ? json_string(c->label) : json_null(), "account_label",
                          c->account_label[0] ? json_string(c->account_label) : json_null(), "connected_at",
                          time_or_null(c->connected_at), "last_synced_at", time_or_null(c->last_synced_at),
                          "last_used_at", time_or_null(c->last_used_at), "usage_count", (json_int_t)c->usage_count,
                          "last_error", c->last_error[0] ? json_string(c->last_error) : json_null(), "connected_by",
                          c->user);
    json_t *settings = c->settings ? json_loads(c->settings, 0, NULL) : NULL;
    json_object_set_new(o, "settings", settings ? settings : json_object());
    if (policy_days > 0) {
        int64_t due = c->credential_set_at + policy_days * DAY_MS;
        json_object_set_new(o, "rotation", json_pack("{s:i, s:o, s:b}", "every_days", policy_days, "due_at",
                                                     time_or_null(due), "overdue", now_ms() >= due));
    }
    return o;
}

int connections_rotation_days(store *db, const store_connection *c, const provider *p)
{
    int days = store_policy_get(db, c->team_id, c->integration);
    if (days > 0)
        return days;
    return p ? p->rotate_every_days : 0;
}
