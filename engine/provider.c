#include "provider.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <lauxlib.h>

#include "cron.h"
#include "lua_json.h"

#define MAX_TOOL_NAME 64

/* Top-level fields of the contract (API.md), including those later
 * features read, so a typo is reported instead of silently ignored. */
static const char *const top_fields[] = {
    "slug", "name", "category", "description", "base_url", "hosts", "auth", "data_categories", "tools",
    "syncs", "version", "logo_url", "docs_url", "setup_instructions", "rate_limits", "check",
    "rotate_every", "upcoming_events", NULL};
static const char *const tool_fields[] = {"description", "access", "input", "output", "run", "title",
                                          "summary", "data_category", NULL};
static const char *const sync_fields[] = {"every", "category", "run", "description", NULL};
/* The brief's provider categories, plus a few its ranked apps need. */
static const char *const categories[] = {"calendar", "crm", "project_management", "communication",
                                         "accounting", "storage", "analytics", "custom", "mcp", "email",
                                         "meetings", "marketing", "hr", "developer", NULL};
static const char *const auth_types[] = {"none", "api_key", "basic", "oauth2", NULL};
static const char *const auth_fields[] = {"type", "field", "header", "query", "body", "prefix", "settings",
                                          "instructions", "scopes", "authorize_url", "token_url", "revoke_url",
                                          "client_auth", "extra_authorize_params", "grant", "callback_settings",
                                          "scope_separator", "token_fields", NULL};

typedef struct loader {
    lua_State *L;
    provider *p;
    json_t *problems;
    const char *source;
} loader;

static void problem(loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(loader *ld, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(ld->problems, json_string(msg));
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* Pushes t[key] without metamethods; returns its type. */
static int raw_field(lua_State *L, int t, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, t);
}

static void check_fields(loader *ld, int t, const char *where, const char *const *allowed)
{
    lua_State *L = ld->L;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            problem(ld, "%s: keys must be strings", where);
        else if (!in_list(lua_tostring(L, -1), allowed))
            problem(ld, "%s: unknown field '%s'", where, lua_tostring(L, -1));
    }
}

/* A string field: required → problem when absent. Returns a copy or NULL. */
static char *string_field(loader *ld, int t, const char *where, const char *key, int required)
{
    lua_State *L = ld->L;
    int type = raw_field(L, t, key);
    char *v = NULL;
    if (type == LUA_TSTRING && lua_rawlen(L, -1) > 0)
        v = strdup(lua_tostring(L, -1));
    else if (type == LUA_TNIL) {
        if (required)
            problem(ld, "%s%s: required string is missing", where, key);
    } else
        problem(ld, "%s%s: must be a non-empty string", where, key);
    lua_pop(L, 1);
    return v;
}

static int valid_slug(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 40 || !(islower((unsigned char)s[0]) || isdigit((unsigned char)s[0])) || strstr(s, "__"))
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int valid_tool_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int valid_host(const char *s)
{
    if (!*s || strlen(s) > 253)
        return 0;
    if (s[0] == '*' && s[1] == '.')
        s += 2;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '.' || *s == '-' ||
              *s == ':' || *s == '[' || *s == ']'))
            return 0;
    return 1;
}

/* An array of strings; each element checked by `valid` when given. */
static char **string_list(loader *ld, int t, const char *key, size_t *count, int (*valid)(const char *),
                          const char *what)
{
    lua_State *L = ld->L;
    *count = 0;
    int type = raw_field(L, t, key);
    if (type != LUA_TTABLE) {
        problem(ld, "%s: must be an array of strings%s", key, type == LUA_TNIL ? " (it is missing)" : "");
        lua_pop(L, 1);
        return NULL;
    }
    int arr = lua_gettop(L);
    size_t n = lua_rawlen(L, arr);
    char **items = calloc(n + 1, sizeof *items);
    for (size_t i = 1; i <= n && items; i++) {
        if (lua_rawgeti(L, arr, (lua_Integer)i) != LUA_TSTRING) {
            problem(ld, "%s[%zu]: must be a string", key, i);
        } else if (valid && !valid(lua_tostring(L, -1))) {
            problem(ld, "%s[%zu]: '%s' is not a valid %s", key, i, lua_tostring(L, -1), what);
        } else {
            items[(*count)++] = strdup(lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return items;
}

static int valid_category_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

/* Lua cannot tell an empty array from an empty object; where the schema
 * language expects arrays, an empty table means an empty array. Keys of
 * maps of schemas (properties, definitions) are names, not keywords. */
static void fix_empty_arrays(json_t *schema);

static void fix_schema_map(json_t *map)
{
    const char *name;
    json_t *sub;
    json_object_foreach(map, name, sub) fix_empty_arrays(sub);
}

static void fix_empty_arrays(json_t *schema)
{
    static const char *const array_keys[] = {"required", "enum", "examples", "anyOf", "oneOf", "allOf", NULL};
    static const char *const map_keys[] = {"properties", "patternProperties", "definitions", "$defs", NULL};
    if (json_is_array(schema)) {
        size_t i;
        json_t *v;
        json_array_foreach(schema, i, v) fix_empty_arrays(v);
        return;
    }
    if (!json_is_object(schema))
        return;
    const char *key;
    json_t *v;
    json_object_foreach(schema, key, v) {
        if (in_list(key, array_keys) && json_is_object(v) && json_object_size(v) == 0)
            json_object_set_new(schema, key, json_array());
        else if (in_list(key, map_keys) && json_is_object(v))
            fix_schema_map(v);
        else
            fix_empty_arrays(v);
    }
}

typedef struct schema_problem_ctx {
    loader *ld;
    const char *prefix;
} schema_problem_ctx;

static void on_schema_problem(void *arg, const char *path, const char *message)
{
    schema_problem_ctx *c = arg;
    /* path starts with "$" */
    problem(c->ld, "%s%s: %s", c->prefix, path[0] == '$' ? path + 1 : path, message);
}

/* Converts the table at the top to a JSON Schema; NULL after a problem. */
static json_t *schema_from_table(loader *ld, const char *where)
{
    ferr err = {0};
    json_t *doc = lua_json_from(ld->L, -1, &err);
    if (!doc) {
        problem(ld, "%s: %s", where, err.message);
        ferr_clear(&err);
        return NULL;
    }
    fix_empty_arrays(doc);
    return doc;
}

static void load_tool(loader *ld, int tool, const char *name, provider_tool *out)
{
    lua_State *L = ld->L;
    char where[160];
    snprintf(where, sizeof where, "tools.%s.", name);
    out->p = ld->p;
    out->run_ref = LUA_NOREF;
    out->name = strdup(name);
    if (!valid_tool_name(name))
        problem(ld, "tools.%s: tool names may use letters, digits, '_' and '-' only", name);
    if (ld->p->slug) {
        size_t n = strlen(ld->p->slug) + 2 + strlen(name);
        out->full_name = malloc(n + 1);
        snprintf(out->full_name, n + 1, "%s__%s", ld->p->slug, name);
        if (n > MAX_TOOL_NAME)
            problem(ld, "tools.%s: the full tool name '%s' is longer than %d characters", name, out->full_name,
                    MAX_TOOL_NAME);
    }
    snprintf(where, sizeof where, "tools.%s", name);
    check_fields(ld, tool, where, tool_fields);
    snprintf(where, sizeof where, "tools.%s.", name);
    out->description = string_field(ld, tool, where, "description", 1);

    char *access = string_field(ld, tool, where, "access", 1);
    if (access && strcmp(access, "read") != 0 && strcmp(access, "write") != 0)
        problem(ld, "tools.%s.access: must be \"read\" or \"write\", not \"%s\"", name, access);
    out->is_write = access && strcmp(access, "write") == 0;
    free(access);
    out->data_category = string_field(ld, tool, where, "data_category", 0);
    if (out->data_category && !valid_category_name(out->data_category))
        problem(ld, "tools.%s.data_category: '%s' must be lowercase letters and '_'", name, out->data_category);
    out->summary = string_field(ld, tool, where, "summary", 0);

    int type = raw_field(L, tool, "input");
    if (type == LUA_TTABLE) {
        snprintf(where, sizeof where, "tools.%s.input", name);
        out->input = schema_from_table(ld, where);
    } else if (type == LUA_TNIL) {
        /* No input declared: the tool takes no arguments. */
        out->input = json_pack("{s:s, s:{}, s:b}", "type", "object", "properties", "additionalProperties", 0);
    } else {
        problem(ld, "tools.%s.input: must be a JSON Schema table", name);
    }
    lua_pop(L, 1);
    if (out->input) {
        json_t *root_type = json_object_get(out->input, "type");
        if (!json_is_string(root_type) || strcmp(json_string_value(root_type), "object") != 0)
            problem(ld, "tools.%s.input: the root schema must have type = \"object\"", name);
        snprintf(where, sizeof where, "tools.%s.input", name);
        schema_problem_ctx c = {ld, where};
        out->input_schema = schema_compile(out->input, on_schema_problem, &c);
    }

    type = raw_field(L, tool, "output");
    if (type == LUA_TTABLE) {
        snprintf(where, sizeof where, "tools.%s.output", name);
        out->output = schema_from_table(ld, where);
        schema_problem_ctx c = {ld, where};
        schema *s = out->output ? schema_compile(out->output, on_schema_problem, &c) : NULL;
        schema_free(s);
    } else if (type != LUA_TNIL) {
        problem(ld, "tools.%s.output: must be a JSON Schema table", name);
    }
    lua_pop(L, 1);

    if (raw_field(L, tool, "run") == LUA_TFUNCTION)
        out->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else {
        problem(ld, "tools.%s.run: must be a function(ctx, args)", name);
        lua_pop(L, 1);
    }
}

static void load_sync(loader *ld, int sync, const char *name, provider_sync *out)
{
    lua_State *L = ld->L;
    char where[160];
    out->run_ref = LUA_NOREF;
    out->name = strdup(name);
    snprintf(where, sizeof where, "syncs.%s", name);
    check_fields(ld, sync, where, sync_fields);
    snprintf(where, sizeof where, "syncs.%s.", name);
    out->every = string_field(ld, sync, where, "every", 1);
    cron_schedule when;
    char why[200];
    if (out->every && cron_parse(out->every, &when, why, sizeof why) < 0)
        problem(ld, "syncs.%s.every: %s", name, why);
    out->category = string_field(ld, sync, where, "category", 1);
    out->description = string_field(ld, sync, where, "description", 0);
    if (raw_field(L, sync, "run") == LUA_TFUNCTION)
        out->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else {
        problem(ld, "syncs.%s.run: must be a function(ctx, cursor)", name);
        lua_pop(L, 1);
    }
}

/* Counts string-keyed entries of the table at the top (raw). */
static size_t count_entries(lua_State *L, int t)
{
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        n++;
    }
    return n;
}

static void load_tools(loader *ld, int t)
{
    lua_State *L = ld->L;
    provider *p = ld->p;
    int type = raw_field(L, t, "tools");
    if (type != LUA_TTABLE) {
        problem(ld, "tools: must be a table of tools%s", type == LUA_TNIL ? " (it is missing)" : "");
        lua_pop(L, 1);
        return;
    }
    int tools = lua_gettop(L);
    size_t n = count_entries(L, tools);
    p->tools = calloc(n ? n : 1, sizeof *p->tools);
    lua_pushnil(L);
    while (lua_next(L, tools)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            problem(ld, "tools: keys must be tool names (strings)");
        else if (lua_type(L, -1) != LUA_TTABLE)
            problem(ld, "tools.%s: must be a table", lua_tostring(L, -2));
        else
            load_tool(ld, lua_gettop(L), lua_tostring(L, -2), &p->tools[p->ntools++]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (p->ntools == 0 && n == 0)
        problem(ld, "tools: a provider needs at least one tool");
}

static void load_syncs(loader *ld, int t)
{
    lua_State *L = ld->L;
    provider *p = ld->p;
    int type = raw_field(L, t, "syncs");
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    if (type != LUA_TTABLE) {
        problem(ld, "syncs: must be a table of syncs");
        lua_pop(L, 1);
        return;
    }
    int syncs = lua_gettop(L);
    p->syncs = calloc(count_entries(L, syncs) + 1, sizeof *p->syncs);
    lua_pushnil(L);
    while (lua_next(L, syncs)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TTABLE)
            problem(ld, "syncs: each entry must be name = {every, category, run}");
        else
            load_sync(ld, lua_gettop(L), lua_tostring(L, -2), &p->syncs[p->nsyncs++]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void check_base_url(loader *ld)
{
    provider *p = ld->p;
    if (!p->base_url)
        return;
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    if (!u || curl_url_set(u, CURLUPART_URL, p->base_url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        problem(ld, "base_url: '%s' is not a valid URL", p->base_url);
    } else if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        problem(ld, "base_url: only http and https are allowed");
    } else if (!provider_allows_host(p, host)) {
        problem(ld, "base_url: its host '%s' is not listed in hosts", host);
    }
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
}

static void check_slug_matches_file(loader *ld)
{
    const char *base = strrchr(ld->source, '/');
    base = base ? base + 1 : ld->source;
    size_t n = strlen(base);
    if (n < 5 || strcmp(base + n - 4, ".lua") != 0)
        return;
    if (strlen(ld->p->slug) != n - 4 || strncmp(base, ld->p->slug, n - 4) != 0)
        problem(ld, "slug: '%s' does not match the file name '%s'", ld->p->slug, base);
}

static char *json_str_dup(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

static int valid_header_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static int http_url(const char *u)
{
    return u && (strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0);
}

static void parse_oauth(loader *ld, json_t *auth, provider_auth *a)
{
    a->authorize_url = json_str_dup(auth, "authorize_url");
    a->token_url = json_str_dup(auth, "token_url");
    a->revoke_url = json_str_dup(auth, "revoke_url");
    const char *grant = json_string_value(json_object_get(auth, "grant"));
    a->client_credentials = grant && strcmp(grant, "client_credentials") == 0;
    if (grant && !a->client_credentials && strcmp(grant, "authorization_code") != 0)
        problem(ld, "auth.grant: \"authorization_code\" (the default) or \"client_credentials\"");
    const char *client_auth = json_string_value(json_object_get(auth, "client_auth"));
    a->client_auth_body = client_auth && strcmp(client_auth, "body") == 0;
    if (client_auth && !a->client_auth_body && strcmp(client_auth, "basic") != 0)
        problem(ld, "auth.client_auth: \"basic\" (the default) or \"body\"");
    if (!http_url(a->token_url))
        problem(ld, "auth.token_url: an oauth2 provider needs its token endpoint's http(s) URL");
    if (!a->client_credentials && !http_url(a->authorize_url))
        problem(ld, "auth.authorize_url: an oauth2 provider needs its authorization endpoint's http(s) URL");
    if (a->revoke_url && !http_url(a->revoke_url))
        problem(ld, "auth.revoke_url: must be an http(s) URL");
    json_t *scopes = json_object_get(auth, "scopes");
    if (scopes && !json_is_array(scopes))
        problem(ld, "auth.scopes: must be an array of scope strings");
    size_t i, len = 0;
    json_t *v;
    json_array_foreach(scopes, i, v) {
        if (!json_is_string(v))
            problem(ld, "auth.scopes[%zu]: must be a string", i + 1);
        else
            len += json_string_length(v) + 1;
    }
    /* RFC 6749 separates scopes with spaces; some providers (Slack) document commas. */
    const char *separator = json_string_value(json_object_get(auth, "scope_separator"));
    if (separator && strcmp(separator, " ") != 0 && strcmp(separator, ",") != 0)
        problem(ld, "auth.scope_separator: \" \" (the default) or \",\"");
    if (!separator || strcmp(separator, ",") != 0)
        separator = " ";
    a->scopes = calloc(1, len + 1);
    json_array_foreach(scopes, i, v) {
        if (json_is_string(v) && a->scopes) {
            if (*a->scopes)
                strcat(a->scopes, separator);
            strcat(a->scopes, json_string_value(v));
        }
    }
    json_t *extra = json_object_get(auth, "extra_authorize_params");
    if (extra && !json_is_object(extra))
        problem(ld, "auth.extra_authorize_params: must be a table of strings");
    else if (extra)
        a->extra_authorize_params = json_incref(extra);
    json_t *cb = json_object_get(auth, "callback_settings");
    const char *name;
    json_t *param;
    if (cb && !json_is_object(cb)) {
        problem(ld, "auth.callback_settings: a table {setting = \"callback parameter\"}");
    } else if (cb) {
        json_object_foreach(cb, name, param) {
            int declared = 0;
            for (size_t k = 0; k < a->nsettings; k++)
                declared |= strcmp(a->settings[k], name) == 0;
            if (!declared || !json_is_string(param))
                problem(ld, "auth.callback_settings.%s: must name a declared setting and a callback parameter", name);
        }
        a->callback_settings = json_incref(cb);
    }
    json_t *tf = json_object_get(auth, "token_fields");
    if (tf && (!json_is_object(tf) || json_object_size(tf) > PROVIDER_MAX_TOKEN_FIELDS)) {
        problem(ld, "auth.token_fields: a table {field = \"path.in.the.token.answer\"}, at most %d",
                PROVIDER_MAX_TOKEN_FIELDS);
    } else if (tf) {
        json_object_foreach(tf, name, param) {
            int reserved = strcmp(name, "access_token") == 0 || strcmp(name, "refresh_token") == 0 ||
                           strcmp(name, "client_id") == 0 || strcmp(name, "client_secret") == 0;
            if (reserved || !name[0] || strspn(name, "abcdefghijklmnopqrstuvwxyz_") != strlen(name) ||
                strlen(name) > 32 || !json_is_string(param) || !json_string_length(param))
                problem(ld, "auth.token_fields.%s: a lower-case field name (not access_token, refresh_token, "
                            "client_id or client_secret) and a dotted path into the token answer", name);
        }
        a->token_fields = json_incref(tf);
    }
}

/* The auth declaration as C data: where the core injects the credential. */
static void parse_auth(loader *ld, json_t *auth)
{
    provider_auth *a = &ld->p->authn;
    const char *type = json_string_value(json_object_get(auth, "type"));
    const char *key;
    json_t *v;
    json_object_foreach(auth, key, v) {
        if (!in_list(key, auth_fields))
            problem(ld, "auth: unknown field '%s'", key);
        else if (strcmp(key, "settings") != 0 && strcmp(key, "scopes") != 0 &&
                 strcmp(key, "extra_authorize_params") != 0 && strcmp(key, "callback_settings") != 0 &&
                 strcmp(key, "token_fields") != 0 && !json_is_string(v))
            problem(ld, "auth.%s: must be a string", key);
    }
    a->kind = strcmp(type, "api_key") == 0 ? AUTH_API_KEY : strcmp(type, "basic") == 0 ? AUTH_BASIC
              : strcmp(type, "oauth2") == 0 ? AUTH_OAUTH2 : AUTH_NONE;
    a->prefix = json_str_dup(auth, "prefix");
    a->instructions = json_str_dup(auth, "instructions");
    json_t *settings = json_object_get(auth, "settings");
    if (settings && !json_is_array(settings))
        problem(ld, "auth.settings: must be an array of setting names");
    else if (settings) {
        a->settings = calloc(json_array_size(settings) + 1, sizeof *a->settings);
        size_t i;
        json_array_foreach(settings, i, v) {
            if (!json_is_string(v) || !valid_tool_name(json_string_value(v)))
                problem(ld, "auth.settings[%zu]: must be a name (letters, digits, '_', '-')", i + 1);
            else
                a->settings[a->nsettings++] = strdup(json_string_value(v));
        }
    }
    if (a->kind == AUTH_OAUTH2)
        parse_oauth(ld, auth, a);
    if (a->kind != AUTH_API_KEY) {
        if (json_object_get(auth, "header") || json_object_get(auth, "query") || json_object_get(auth, "body"))
            problem(ld, "auth: header, query and body apply to type = \"api_key\" only");
        return;
    }
    a->field = json_str_dup(auth, "field");
    if (!a->field)
        a->field = strdup("api_key");
    else if (!valid_tool_name(a->field))
        problem(ld, "auth.field: '%s' must be a name (letters, digits, '_', '-')", a->field);
    int places = 0;
    static const char *const names[] = {"header", "query", "body"};
    for (int i = 0; i < 3; i++) {
        const char *name = json_string_value(json_object_get(auth, names[i]));
        if (!name)
            continue;
        places++;
        free(a->name);
        a->name = strdup(name);
        a->place = (auth_place)i;
    }
    if (places != 1)
        problem(ld, "auth: an api_key goes in exactly one of header, query or body");
    else if (a->place == AUTH_IN_HEADER && !valid_header_name(a->name))
        problem(ld, "auth.header: '%s' is not a valid header name", a->name);
    else if (!*a->name)
        problem(ld, "auth: the %s name is empty", names[a->place]);
}

/* "10s", "1m", "1h", "1d" → seconds; 0 when unparseable. */
static double parse_period(const char *s)
{
    char *end;
    double n = strtod(s, &end);
    if (end == s || n <= 0 || end[0] == 0 || end[1] != 0)
        return 0;
    switch (*end) {
    case 's': return n;
    case 'm': return n * 60;
    case 'h': return n * 3600;
    case 'd': return n * 86400;
    default: return 0;
    }
}

/* {requests = N, per = "10s"} → rate and burst. */
static int parse_budget(json_t *o, provider_budget *b)
{
    json_t *req = json_object_get(o, "requests"), *per = json_object_get(o, "per");
    double seconds = json_is_string(per) ? parse_period(json_string_value(per)) : 0;
    if (!json_is_number(req) || json_number_value(req) < 1 || seconds <= 0)
        return -1;
    b->burst = json_number_value(req);
    b->rate = b->burst / seconds;
    return 0;
}

static void parse_rate_limits(loader *ld, json_t *rl)
{
    provider *p = ld->p;
    const char *key;
    json_t *v;
    json_object_foreach(rl, key, v) {
        if (strcmp(key, "requests") != 0 && strcmp(key, "per") != 0 && strcmp(key, "tiers") != 0)
            problem(ld, "rate_limits: unknown field '%s'", key);
    }
    if ((json_object_get(rl, "requests") || json_object_get(rl, "per")) && parse_budget(rl, &p->budget) < 0)
        problem(ld, "rate_limits: want {requests = N, per = \"10s\" | \"1m\" | \"1h\"}");
    json_t *tiers = json_object_get(rl, "tiers");
    if (!tiers)
        return;
    if (!json_is_object(tiers)) {
        problem(ld, "rate_limits.tiers: want {name = {requests = N, per = \"1m\"}, ...}");
        return;
    }
    p->tiers = calloc(json_object_size(tiers) + 1, sizeof *p->tiers);
    json_object_foreach(tiers, key, v) {
        provider_budget b = {0};
        if (parse_budget(v, &b) < 0) {
            problem(ld, "rate_limits.tiers.%s: want {requests = N, per = \"1m\"}", key);
            continue;
        }
        b.name = strdup(key);
        p->tiers[p->ntiers++] = b;
    }
}

/* "90d", "12w", "6m" (30-day months) → days; 0 when unparseable. */
static int parse_days(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || n <= 0 || n > 3650 || end[1] != 0)
        return 0;
    switch (*end) {
    case 'd': return (int)n;
    case 'w': return (int)n * 7;
    case 'm': return (int)n * 30;
    case 'y': return (int)n * 365;
    default: return 0;
    }
}

/* Reads the provider table (at index 2) in protected mode, so a memory
 * error while reading is a problem, not a crash. */
static int extract(lua_State *L)
{
    loader *ld = lua_touserdata(L, 1);
    provider *p = ld->p;
    const int t = 2;
    check_fields(ld, t, "provider", top_fields);

    p->slug = string_field(ld, t, "", "slug", 1);
    if (p->slug && !valid_slug(p->slug))
        problem(ld, "slug: '%s' must be lowercase letters, digits, '_' or '-' (no '__'), at most 40 characters",
                p->slug);
    else if (p->slug)
        check_slug_matches_file(ld);
    p->name = string_field(ld, t, "", "name", 1);
    p->category = string_field(ld, t, "", "category", 1);
    if (p->category && !in_list(p->category, categories))
        problem(ld, "category: '%s' is not one of the known categories (see docs/providers.md)", p->category);
    p->description = string_field(ld, t, "", "description", 1);
    p->base_url = string_field(ld, t, "", "base_url", 0);
    p->hosts = string_list(ld, t, "hosts", &p->nhosts, valid_host, "host name");
    p->data_categories = string_list(ld, t, "data_categories", &p->ncategories, valid_category_name,
                                     "data category (lowercase letters and '_')");

    int type = raw_field(L, t, "auth");
    if (type == LUA_TTABLE) {
        ferr err = {0};
        p->auth = lua_json_from(L, -1, &err);
        if (!p->auth) {
            problem(ld, "auth: %s", err.message);
            ferr_clear(&err);
        } else {
            json_t *at = json_object_get(p->auth, "type");
            if (!json_is_string(at) || !in_list(json_string_value(at), auth_types))
                problem(ld, "auth.type: must be one of none, api_key, basic, oauth2");
            else {
                p->auth_type = strdup(json_string_value(at));
                parse_auth(ld, p->auth);
            }
        }
    } else {
        problem(ld, "auth: must be a table like {type = \"none\"}%s", type == LUA_TNIL ? " (it is missing)" : "");
    }
    lua_pop(L, 1);

    type = raw_field(L, t, "check");
    if (type == LUA_TFUNCTION)
        p->check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else {
        if (type != LUA_TNIL)
            problem(ld, "check: must be a function(ctx) verifying a new connection");
        lua_pop(L, 1);
    }
    type = raw_field(L, t, "upcoming_events");
    if (type == LUA_TFUNCTION)
        p->events_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    else {
        if (type != LUA_TNIL)
            problem(ld, "upcoming_events: must be a function(ctx, {from, to, limit})");
        lua_pop(L, 1);
    }
    type = raw_field(L, t, "rate_limits");
    if (type == LUA_TTABLE) {
        ferr rerr = {0};
        json_t *rl = lua_json_from(L, -1, &rerr);
        if (json_is_object(rl))
            parse_rate_limits(ld, rl);
        else
            problem(ld, "rate_limits: want {requests = N, per = \"10s\", tiers = {...}}");
        json_decref(rl);
        ferr_clear(&rerr);
    } else if (type != LUA_TNIL) {
        problem(ld, "rate_limits: want {requests = N, per = \"10s\", tiers = {...}}");
    }
    lua_pop(L, 1);
    char *rotate = string_field(ld, t, "", "rotate_every", 0);
    if (rotate && !(p->rotate_every_days = parse_days(rotate)))
        problem(ld, "rotate_every: '%s' must be a count of days, weeks, months or years: \"90d\", \"12w\"", rotate);
    free(rotate);

    check_base_url(ld);
    load_tools(ld, t);
    load_syncs(ld, t);
    return 0;
}

int provider_load(const char *source, const char *src, size_t len, const lhost_limits *limits, provider **out,
                  json_t *problems)
{
    *out = NULL;
    provider *p = calloc(1, sizeof *p);
    if (!p) {
        json_array_append_new(problems, json_string("out of memory"));
        return -1;
    }
    p->source = strdup(source);
    p->table_ref = LUA_NOREF;
    p->check_ref = LUA_NOREF;
    p->events_ref = LUA_NOREF;
    p->host = lhost_new(source, limits);
    if (!p->host) {
        json_array_append_new(problems, json_string("cannot create a Lua state"));
        provider_free(p);
        return -1;
    }
    lhost_set_userdata(p->host, p);
    lua_State *L = lhost_state(p->host);
    size_t before = json_array_size(problems);

    char chunkname[1024];
    snprintf(chunkname, sizeof chunkname, "@%s", source);
    ferr err = {0};
    if (lhost_run_chunk(p->host, src, len, chunkname, &err) < 0) {
        json_array_append_new(problems, json_string(err.message));
        ferr_clear(&err);
        provider_free(p);
        return -1;
    }
    if (!lua_istable(L, -1)) {
        json_array_append_new(problems, json_sprintf("the script must return a table (it returned %s)",
                                                     luaL_typename(L, -1)));
        lua_pop(L, 1);
        provider_free(p);
        return -1;
    }
    loader ld = {.L = L, .p = p, .problems = problems, .source = source};
    lua_pushcfunction(L, extract);
    lua_pushlightuserdata(L, &ld);
    lua_pushvalue(L, -3);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
        json_array_append_new(problems, json_sprintf("reading the provider table failed: %s",
                                                     lua_tostring(L, -1) ? lua_tostring(L, -1) : "?"));
        lua_pop(L, 1);
    }
    if (json_array_size(problems) > before) {
        lua_pop(L, 1);
        provider_free(p);
        return -1;
    }
    p->table_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lhost_seal_globals(p->host);
    *out = p;
    return 0;
}

static void free_list(char **items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

void provider_free(provider *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->ntools; i++) {
        provider_tool *t = &p->tools[i];
        free(t->name);
        free(t->full_name);
        free(t->description);
        free(t->data_category);
        free(t->summary);
        json_decref(t->input);
        json_decref(t->output);
        schema_free(t->input_schema);
        free(t->remote_name);
        json_decref(t->remote);
    }
    free(p->tools);
    for (size_t i = 0; i < p->nsyncs; i++) {
        free(p->syncs[i].name);
        free(p->syncs[i].every);
        free(p->syncs[i].category);
        free(p->syncs[i].description);
    }
    free(p->syncs);
    free_list(p->hosts, p->nhosts);
    free_list(p->operator_hosts, p->noperator_hosts);
    free_list(p->data_categories, p->ncategories);
    json_decref(p->auth);
    free(p->auth_type);
    free(p->authn.field);
    free(p->authn.name);
    free(p->authn.prefix);
    free(p->authn.instructions);
    free(p->authn.authorize_url);
    free(p->authn.token_url);
    free(p->authn.revoke_url);
    free(p->authn.scopes);
    json_decref(p->authn.extra_authorize_params);
    json_decref(p->authn.callback_settings);
    json_decref(p->authn.token_fields);
    free_list(p->authn.settings, p->authn.nsettings);
    for (size_t i = 0; i < p->ntiers; i++)
        free(p->tiers[i].name);
    free(p->tiers);
    free(p->source);
    free(p->slug);
    free(p->name);
    free(p->category);
    free(p->description);
    free(p->base_url);
    lhost_free(p->host);   /* releases every registry reference too */
    free(p);
}

void provider_ref(provider *p) { p->refs++; }

void provider_unref(provider *p)
{
    if (p && --p->refs <= 0)
        provider_free(p);
}

int provider_allows_host(const provider *p, const char *host)
{
    for (size_t i = 0; i < p->nhosts; i++) {
        const char *h = p->hosts[i];
        if (h[0] == '*' && h[1] == '.') {
            size_t hl = strlen(host), sl = strlen(h + 1);   /* ".example.com" */
            if (hl > sl && strcasecmp(host + hl - sl, h + 1) == 0)
                return 1;
        } else if (strcasecmp(h, host) == 0) {
            return 1;
        }
    }
    return 0;
}

int provider_override_base_url(provider *p, const char *url, ferr *err)
{
    CURLU *u = curl_url();
    char *host = NULL, *scheme = NULL;
    int rc = -1;
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        ferr_set(err, FERR_BAD_REQUEST, "'%s' is not an http(s) URL", url);
        goto out;
    }
    free(p->base_url);
    p->base_url = strdup(url);
    if (!provider_allows_host(p, host)) {
        char **hosts = realloc(p->hosts, (p->nhosts + 1) * sizeof *hosts);
        if (!hosts) {
            ferr_set(err, FERR_INTERNAL, "out of memory");
            goto out;
        }
        p->hosts = hosts;
        p->hosts[p->nhosts++] = strdup(host);
    }
    char **ops = realloc(p->operator_hosts, (p->noperator_hosts + 1) * sizeof *ops);
    if (!ops) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        goto out;
    }
    p->operator_hosts = ops;
    p->operator_hosts[p->noperator_hosts++] = strdup(host);
    rc = 0;
out:
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

const provider_budget *provider_budget_for(const provider *p, const char *tier)
{
    if (!tier)
        return &p->budget;
    for (size_t i = 0; i < p->ntiers; i++)
        if (strcmp(p->tiers[i].name, tier) == 0)
            return &p->tiers[i];
    return NULL;
}

int provider_allows_private(const provider *p, const char *host)
{
    unsigned char addr[16];
    char bare[64];
    size_t n = strlen(host);
    /* curl writes IPv6 hosts in brackets. */
    if (n > 2 && n < sizeof bare + 2 && host[0] == '[' && host[n - 1] == ']') {
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = 0;
        if (inet_pton(AF_INET6, bare, addr) == 1)
            return 1;
    }
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
        return 1;
    for (size_t i = 0; i < p->noperator_hosts; i++)
        if (strcasecmp(p->operator_hosts[i], host) == 0)
            return 1;
    return 0;
}

provider_tool *provider_tool_find(provider *p, const char *name)
{
    for (size_t i = 0; i < p->ntools; i++)
        if (strcmp(p->tools[i].name, name) == 0)
            return &p->tools[i];
    return NULL;
}
