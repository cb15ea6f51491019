#include "mcpc_registry.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "jsonfmt.h"
#include "log.h"
#include "mcpc_proto.h"
#include "mcpc_session.h"
#include "mcpc_stdio.h"
#include "schema.h"
#include "store_mcp.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_SYNC_INTERVAL_S 900
#define MAX_TOOL_NAME 64               /* API.md: what every agent API accepts */
#define LIST_CHANGED_DEBOUNCE_MS 1000
#define JOB_KIND "mcp"
/* Periodic syncs at once in one process: they are short, and a slow server
 * must not hold up the others for long. */
#define JOB_MAX_RUNNING 2
#define ERROR_TEXT_MAX 300
/* Executions are written in batches, as the call log is: every 100 ms or
 * 256 rows, and at exit. */
#define EXEC_BATCH 256
#define EXEC_FLUSH_MS 100

typedef struct srv srv;
typedef struct run run;
typedef struct job_run job_run;

typedef struct waiter {
    struct waiter *next;
    mcpc_registry_fn done;
    void *arg;
} waiter;

/* One registered server, as the loop knows it (the row is the truth). */
struct srv {
    srv *next;
    mcpc_registry *reg;
    char id[40];
    int64_t team_id;
    char slug[64];
    char status[16];
    mcpc_session *session;         /* made on first use */
    mcpc_call *sync;               /* tools/list in flight */
    int64_t sync_intent;
    struct timespec sync_started;
    char sync_request_id[17];
    waiter *waiters;
    int resync;                    /* another sync was asked for meanwhile */
    int has_job;                   /* mcp:<id>:tools exists: periodic syncs are its runs */
    job_run *job;                  /* its run in progress here, if any */
    struct event *changed_timer;   /* list_changed, debounced */
    run *runs;
    /* what the last connection learned */
    char version[16];
    char transport[24];
    json_t *server_info, *capabilities;
};

/* A tool call in flight (calls.c's provider_run). */
struct run {
    run *prev, *next;
    srv *s;
    mcpc_call *call;
    provider_run_done_fn done;
    void *arg;
    char tool_id[40];
    char tool_name[128];
    int64_t team_id, user_id;
    char request_id[17];
    char approval_id[40];
    char *arguments;               /* redacted */
    struct timespec started;
};

/* A run of a server's job: the sync it waits for. */
struct job_run {
    srv *s;
    sched_run *sr;
};

struct mcpc_registry {
    mcpc_registry_config cfg;
    sched *sched;                      /* periodic syncs (serve): mcpc_registry_schedule */
    sched_kind kind;
    char **stdio_commands;
    char *data_dir;
    srv *servers;
    provider_runner runner;
    mcp_execution_row execs[EXEC_BATCH];   /* waiting to be written; strings owned */
    size_t nexecs;
    struct event *exec_timer;
};

static int run_start(void *ctx, const provider_run_request *req, provider_run_done_fn done, void *arg,
                     provider_run **out, ferr *err);
static void run_cancel(void *ctx, provider_run *pr);
static int start_sync(srv *s, const char *request_id, mcpc_registry_fn done, void *arg, ferr *err);

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) * 1e3 + (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}



static void new_id(const char *prefix, char out[40])
{
    unsigned char raw[8];
    RAND_bytes(raw, sizeof raw);
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(prefix);
    memcpy(out, prefix, n);
    for (int i = 0; i < 8; i++) {
        out[n + 2 * i] = hex[raw[i] >> 4];
        out[n + 2 * i + 1] = hex[raw[i] & 15];
    }
    out[n + 16] = 0;
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static srv *find_srv(mcpc_registry *r, const char *id)
{
    for (srv *s = r->servers; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static srv *find_slug(mcpc_registry *r, const char *slug)
{
    for (srv *s = r->servers; s; s = s->next)
        if (strcmp(s->slug, slug) == 0)
            return s;
    return NULL;
}

/* A server `who` may manage: their team's, as an admin. */
static srv *visible_srv(mcpc_registry *r, const principal *who, const char *id, ferr *err)
{
    srv *s = id ? find_srv(r, id) : NULL;
    if (!s || (who && s->team_id != who->team_id)) {
        ferr_set(err, FERR_NOT_FOUND, "no MCP server %s", id ? id : "");
        return NULL;
    }
    return s;
}

static int require_admin(const principal *who, ferr *err)
{
    if (who && !who->is_admin)
        return ferr_set(err, FERR_FORBIDDEN, "only a team admin manages MCP servers");
    return 0;
}

static void audit_admin(mcpc_registry *r, const principal *who, srv *s, const char *slug, const char *operation,
                        const char *detail, const char *request_id)
{
    if (!r->cfg.audit)
        return;
    audit_row row = {
        .user_id = who ? who->user_id : 0, .user = who ? who->user : NULL, .team_id = s ? s->team_id : who ? who->team_id : 0,
        .team = who ? who->team : NULL, .integration = slug, .operation = operation, .outcome = "ok",
        .request_id = request_id, .detail = detail,
    };
    ferr e = {0};
    if (audit_event(r->cfg.audit, &row, &e) < 0) {
        log_line *l = log_begin(LOG_ERROR, "audit write failed");
        log_str(l, "error", e.message);
        log_end(l);
    }
    ferr_clear(&e);
}

/* ---- credentials ---- */

/* The server's sealed credentials, opened: {url?, headers, bearer_token?,
 * env}. The caller wipes and frees the text (*plain). */
static json_t *open_credentials(mcpc_registry *r, const mcp_server_row *row, char **plain, size_t *plain_len,
                                ferr *err)
{
    unsigned char dek[VAULT_KEY_LEN];
    *plain = NULL;
    if (vault_data_key(r->cfg.vault, row->id, row->wrapped_key, row->wrapped_len, dek, err) < 0)
        return NULL;
    int rc = vault_unseal(dek, row->id, "credentials", row->sealed, row->sealed_len, plain, plain_len, err);
    vault_wipe(dek, sizeof dek);
    if (rc < 0)
        return NULL;
    json_t *c = json_loadb(*plain, *plain_len, 0, NULL);
    if (!c)
        ferr_set(err, FERR_INTERNAL, "the MCP server's credentials do not open");
    return c;
}

static void wipe_json_strings(json_t *v)
{
    if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach(v, k, item) wipe_json_strings(item);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) wipe_json_strings(item);
    } else if (json_is_string(v)) {
        vault_wipe((void *)json_string_value(v), json_string_length(v));
    }
}

/* NULL-terminated list of malloc'd strings. */
typedef struct strlist {
    char **items;
    size_t n;
} strlist;

static void sl_add(strlist *l, char *owned)
{
    char **n = realloc(l->items, (l->n + 2) * sizeof *n);
    if (!n) {
        free(owned);
        return;
    }
    l->items = n;
    l->items[l->n++] = owned;
    l->items[l->n] = NULL;
}

static void sl_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        vault_wipe(l->items[i], strlen(l->items[i]));
        free(l->items[i]);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static char *joined(const char *a, const char *sep, const char *b)
{
    size_t n = strlen(a) + strlen(sep) + strlen(b) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, sep, b);
    return s;
}

/* ---- sessions ---- */

static void on_connected(void *arg, const mcpc_state *st)
{
    srv *s = arg;
    snprintf(s->version, sizeof s->version, "%s", st->version);
    snprintf(s->transport, sizeof s->transport, "%s", st->transport);
    json_decref(s->server_info);
    json_decref(s->capabilities);
    s->server_info = st->server_info ? json_incref(st->server_info) : NULL;
    s->capabilities = st->capabilities ? json_incref(st->capabilities) : NULL;
}

static void job_id_of(const srv *s, char out[64])
{
    snprintf(out, 64, JOB_KIND ":%s:tools", s->id);
}

static void on_changed_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    srv *s = arg;
    mcpc_registry *r = s->reg;
    ferr e = {0};
    /* Through the server's job when it has one, so that of the ferry
     * processes hearing the same notification one syncs (and the next
     * periodic sync counts from this one). A sync running here already
     * looks again when it ends (start_sync's resync); one running in
     * another process heard the notification too. */
    if (s->has_job && !s->sync && r->sched) {
        char id[64], run_id[40];
        int started = 0;
        job_id_of(s, id);
        if (sched_run_now(r->sched, id, run_id, &started, &e) == 0)
            return;
        ferr_clear(&e);
    }
    start_sync(s, NULL, NULL, NULL, &e);
    ferr_clear(&e);
}

static void on_list_changed(void *arg)
{
    srv *s = arg;
    if (!s->reg->cfg.background)
        return;
    /* A burst of notifications is one sync. */
    if (!s->changed_timer)
        s->changed_timer = evtimer_new(s->reg->cfg.base, on_changed_timer, s);
    if (s->changed_timer && !evtimer_pending(s->changed_timer, NULL)) {
        struct timeval tv = {0, LIST_CHANGED_DEBOUNCE_MS * 1000};
        evtimer_add(s->changed_timer, &tv);
    }
}

static mcpc_transport transport_of(const char *t)
{
    if (strcmp(t, "stdio") == 0)
        return MCPC_TRANSPORT_STDIO;
    if (strcmp(t, "sse") == 0)
        return MCPC_TRANSPORT_SSE;
    if (strcmp(t, "streamable_http") == 0)
        return MCPC_TRANSPORT_HTTP;
    return MCPC_TRANSPORT_AUTO;
}

/* What a log line may show of a URL's path: segments long enough to be a
 * key (Zapier's MCP URLs carry one) are left out. */
static void display_path(const char *path, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = 0;
    const char *p = path && *path ? path : "/";
    while (*p && o + 4 < cap) {
        if (*p == '/') {
            out[o++] = *p++;
            continue;
        }
        size_t n = strcspn(p, "/");
        if (n > 24) {
            o += (size_t)snprintf(out + o, cap - o, "...");
        } else {
            o += (size_t)snprintf(out + o, cap - o, "%.*s", (int)n, p);
        }
        if (o >= cap)
            o = cap - 1;
        p += n;
    }
    out[o] = 0;
}

/* scheme://host[:port]/path with long segments left out; NULL when it is
 * not a usable URL. */
static char *display_url(const char *url, char *path_out, size_t path_cap)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        curl_url_get(u, CURLUPART_PATH, &path, 0);
        char shown[512];
        display_path(path, shown, sizeof shown);
        if (path_out)
            snprintf(path_out, path_cap, "%s", shown);
        size_t n = strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) + strlen(shown) + 8;
        out = malloc(n);
        if (out)
            snprintf(out, n, "%s://%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "", shown);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return out;
}

/* What may be a key in a server's URL, added to `secrets`: path segments
 * display_path leaves out (Zapier's /s/<key>/mcp) and query values, so a
 * server echoing its own URL does not hand the key on. */
static void url_secrets(const char *url, strlist *secrets)
{
    CURLU *u = curl_url();
    char *path = NULL, *query = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
            for (const char *p = path; *p; p += strspn(p, "/")) {
                size_t n = strcspn(p, "/");
                if (n > 24)
                    sl_add(secrets, strndup(p, n));
                p += n;
            }
        }
        if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
            for (const char *p = query; *p; p += strspn(p, "&")) {
                size_t n = strcspn(p, "&");
                const char *eq = memchr(p, '=', n);
                if (eq && (size_t)(p + n - eq - 1) > 0)
                    sl_add(secrets, strndup(eq + 1, (size_t)(p + n - eq - 1)));
                p += n;
            }
        }
    }
    if (path)
        OPENSSL_cleanse(path, strlen(path));
    if (query)
        OPENSSL_cleanse(query, strlen(query));
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
}

/* Variables a team admin may not set for a program run on ferry's host:
 * the operator allowed a command, not what runs inside it. These make a
 * dynamic loader, interpreter or shell load or run other code (LD_PRELOAD,
 * NODE_OPTIONS, PYTHONSTARTUP, BASH_ENV...), or are the variables ferry
 * passes on itself (PATH, HOME...), which must come first. Matched without
 * regard to case. */
static int env_name_refused(const char *name)
{
    static const char *const prefixes[] = {"LD_", "DYLD_", "NODE_", "NPM_", "PYTHON", "PERL", "RUBY", "JAVA_",
                                           "_JAVA_", "JDK_", "LUA_", "GCONV_", "MALLOC_", "GLIBC_", "LC_", "BASH_",
                                           "DENO_", "BUN_", "PHP", "GEM_", "GIT_", "OPENSSL_", "SSL_", NULL};
    static const char *const names[] = {"ENV", "SHELLOPTS", "PS4", "IFS", "CDPATH", "NLSPATH", "HOSTALIASES",
                                        "LOCALDOMAIN", "RES_OPTIONS", "CLASSPATH", "RUSTC_WRAPPER",
                                        "CURL_CA_BUNDLE", NULL};
    char up[128];
    size_t n = 0;
    for (; name[n] && n < sizeof up - 1; n++)
        up[n] = (char)toupper((unsigned char)name[n]);
    up[n] = 0;
    for (size_t i = 0; prefixes[i]; i++)
        if (strncmp(up, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    for (size_t i = 0; names[i]; i++)
        if (strcmp(up, names[i]) == 0)
            return 1;
    return mcpc_stdio_inherits(up) || strstr(up, "_OPTIONS") != NULL || strstr(up, "PRELOAD") != NULL ||
           strncmp(up, "FERRY_", 6) == 0;
}

static mcpc_session *ensure_session(srv *s, ferr *err)
{
    if (s->session)
        return s->session;
    mcpc_registry *r = s->reg;
    mcp_server_row row;
    int found = store_mcp_server_get(r->cfg.db, s->id, &row, err);
    if (found != 0) {
        if (found == 1)
            ferr_set(err, FERR_NOT_FOUND, "no MCP server %s", s->id);
        return NULL;
    }
    char *plain = NULL;
    size_t plain_len = 0;
    json_t *creds = open_credentials(r, &row, &plain, &plain_len, err);
    if (!creds) {
        store_mcp_server_clear(&row);
        if (plain) {
            vault_wipe(plain, plain_len);
            free(plain);
        }
        return NULL;
    }
    strlist headers = {0}, env = {0}, secrets = {0}, argv = {0};
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(creds, "headers"), k, v) {
        sl_add(&headers, joined(k, ": ", json_string_value(v)));
        sl_add(&secrets, strdup(json_string_value(v)));
    }
    const char *token = json_string_value(json_object_get(creds, "bearer_token"));
    if (token) {
        sl_add(&headers, joined("Authorization", ": Bearer ", token));
        sl_add(&secrets, strdup(token));
    }
    json_object_foreach(json_object_get(creds, "env"), k, v) {
        sl_add(&env, joined(k, "=", json_string_value(v)));
        sl_add(&secrets, strdup(json_string_value(v)));
    }
    json_t *cmd = jsonfmt_parsed(row.command);
    size_t i;
    json_array_foreach(cmd, i, v) sl_add(&argv, strdup(json_string_value(v)));
    json_decref(cmd);
    const char *url = json_string_value(json_object_get(creds, "url"));
    if (url)
        url_secrets(url, &secrets);
    char log_path[512] = "/";
    char *shown = url ? display_url(url, log_path, sizeof log_path) : NULL;
    free(shown);
    char cwd[4096] = "";
    if (strcmp(row.transport, "stdio") == 0 && r->data_dir) {
        snprintf(cwd, sizeof cwd, "%s/mcp", r->data_dir);
        mkdir(cwd, 0700);
        snprintf(cwd, sizeof cwd, "%s/mcp/%s", r->data_dir, s->id);
        mkdir(cwd, 0700);
    }
    static const char *const none[] = {NULL};
    mcpc_config cfg = {
        .base = r->cfg.base,
        .http = r->cfg.http,
        .label = s->slug,
        .transport = transport_of(row.transport),
        .url = url,
        .log_path = log_path,
        .headers = headers.items ? (const char *const *)headers.items : none,
        .argv = argv.items ? (const char *const *)argv.items : none,
        .env = env.items ? (const char *const *)env.items : none,
        .cwd = cwd[0] ? cwd : NULL,
        .secrets = secrets.items ? (const char *const *)secrets.items : none,
        .allow_private = r->cfg.allow_private,
        .timeout_ms = (long)row.timeout_ms,
        .arg = s,
        .on_connected = on_connected,
        .on_list_changed = on_list_changed,
    };
    s->session = mcpc_session_new(&cfg);
    sl_free(&headers);
    sl_free(&env);
    sl_free(&secrets);
    sl_free(&argv);
    wipe_json_strings(creds);
    json_decref(creds);
    vault_wipe(plain, plain_len);
    free(plain);
    store_mcp_server_clear(&row);
    if (!s->session) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        return NULL;
    }
    if (r->cfg.background && strcmp(s->status, "approved") == 0)
        mcpc_session_listen(s->session, 1);
    return s->session;
}

/* ---- the provider the agent sees ---- */

/* The copy of an MCP inputSchema ferry validates with: JSON Schema
 * 2020-12 patterns are ECMA-262 regular expressions, which ferry's POSIX
 * matcher would misread, so they are left to the server (which MUST
 * validate its inputs anyway). */
static json_t *without_patterns(const json_t *v)
{
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *item;
        json_object_foreach((json_t *)v, k, item) {
            if (strcmp(k, "pattern") == 0 && json_is_string(item))
                continue;
            json_object_set_new(o, k, without_patterns(item));
        }
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) json_array_append_new(a, without_patterns(item));
        return a;
    }
    return json_deep_copy(v);
}

typedef struct tool_list {
    mcp_tool_row *rows;
    size_t n;
} tool_list;

static void keep_tool(void *ud, const mcp_tool_row *t)
{
    tool_list *l = ud;
    mcp_tool_row *n = realloc(l->rows, (l->n + 1) * sizeof *n);
    if (!n)
        return;
    l->rows = n;
    mcp_tool_row *c = &l->rows[l->n++];
    memset(c, 0, sizeof *c);
    memcpy(c->id, t->id, sizeof c->id);
    memcpy(c->server_id, t->server_id, sizeof c->server_id);
#define DUP(f) c->f = t->f ? strdup(t->f) : NULL
    DUP(name);
    DUP(full_name);
    DUP(title);
    DUP(description);
    DUP(input_schema);
    DUP(output_schema);
    DUP(annotations);
    DUP(definition_hash);
    DUP(access);
    DUP(status);
    DUP(problem);
    DUP(decided_by_name);
    DUP(reason);
#undef DUP
    c->first_seen_at = t->first_seen_at;
    c->last_seen_at = t->last_seen_at;
    c->changed_at = t->changed_at;
    c->decided_at = t->decided_at;
}

static void tool_list_free(tool_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        store_mcp_tool_clear(&l->rows[i]);
    free(l->rows);
    l->rows = NULL;
    l->n = 0;
}

static int fill_tool(provider *p, provider_tool *t, const mcp_tool_row *row)
{
    t->p = p;
    t->name = strdup(row->full_name + strlen(p->slug) + 2);
    t->full_name = strdup(row->full_name);
    const char *desc = row->description && *row->description ? row->description
                       : row->title                          ? row->title
                                                             : row->name;
    t->description = strdup(desc);
    t->is_write = strcmp(row->access, "write") == 0;
    t->input = jsonfmt_parsed(row->input_schema);
    json_t *out = jsonfmt_parsed(row->output_schema);
    t->output = json_is_object(out) ? out : NULL;
    if (!t->output)
        json_decref(out);
    json_t *lenient = without_patterns(t->input);
    t->input_schema = schema_compile(lenient, NULL, NULL);
    json_decref(lenient);
    if (!t->input_schema) {
        /* Keywords ferry's subset lacks: the server validates; ferry only
         * insists on an object. */
        json_t *any = json_pack("{s:s}", "type", "object");
        t->input_schema = schema_compile(any, NULL, NULL);
        json_decref(any);
    }
    t->run_ref = LUA_NOREF;
    t->remote_name = strdup(row->name);
    t->remote = json_pack("{s:s, s:o}", "tool_id", row->id, "param_headers", mcpc_proto_param_headers(t->input));
    return t->name && t->full_name && t->description && t->input_schema && t->remote_name && t->remote ? 0 : -1;
}

/* Puts the server's approved tools into the provider index, or takes the
 * server out when it is not approved. */
static void publish(srv *s)
{
    mcpc_registry *r = s->reg;
    if (strcmp(s->status, "approved") != 0) {
        providers_remove(r->cfg.providers, s->slug);
        return;
    }
    mcp_server_row row;
    ferr e = {0};
    if (store_mcp_server_get(r->cfg.db, s->id, &row, &e) != 0) {
        ferr_clear(&e);
        return;
    }
    tool_list tl = {0};
    store_mcp_tools_list(r->cfg.db, s->id, keep_tool, &tl, &e);
    provider *p = calloc(1, sizeof *p);
    size_t offered = 0;
    for (size_t i = 0; i < tl.n; i++)
        offered += strcmp(tl.rows[i].status, "approved") == 0 && !tl.rows[i].problem;
    int ok = p != NULL;
    if (ok) {
        char source[64];
        snprintf(source, sizeof source, "mcp:%s", s->id);
        p->source = strdup(source);
        p->slug = strdup(s->slug);
        p->name = strdup(row.name);
        p->category = strdup("mcp");
        p->description = strdup(row.description && *row.description ? row.description : row.name);
        p->auth_type = strdup("none");
        p->authn.kind = AUTH_NONE;
        p->check_ref = p->events_ref = p->table_ref = LUA_NOREF;
        p->data_categories = calloc(1, sizeof *p->data_categories);
        if (p->data_categories) {
            p->data_categories[0] = strdup(row.data_category);
            p->ncategories = 1;
        }
        p->tools = calloc(offered ? offered : 1, sizeof *p->tools);
        p->runner = &r->runner;
        p->team_id = s->team_id;
        ok = p->source && p->slug && p->name && p->category && p->description && p->auth_type && p->tools &&
             p->ncategories && p->data_categories[0];
    }
    for (size_t i = 0; ok && i < tl.n; i++) {
        if (strcmp(tl.rows[i].status, "approved") != 0 || tl.rows[i].problem)
            continue;
        provider_tool *t = &p->tools[p->ntools++];
        ok = fill_tool(p, t, &tl.rows[i]) == 0;
    }
    tool_list_free(&tl);
    store_mcp_server_clear(&row);
    if (ok && providers_put(r->cfg.providers, p, &e) == 0) {
        ferr_clear(&e);
        return;
    }
    log_line *l = log_begin(LOG_ERROR, "mcp server could not be offered");
    log_str(l, "mcp_server", s->slug);
    log_str(l, "error", e.code ? e.message : "out of memory");
    log_end(l);
    ferr_clear(&e);
    provider_free(p);
}

/* ---- JSON views ---- */

static json_t *server_json(srv *s, const mcp_server_row *row)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:b, s:s, s:I, s:I, s:s}", "id", row->id,
                          "slug", row->slug, "name", row->name, "description", str_or_null(row->description),
                          "transport", row->transport, "url", str_or_null(row->url_display), "command",
                          jsonfmt_parsed(row->command), "headers", jsonfmt_parsed(row->header_names), "env", jsonfmt_parsed(row->env_names),
                          "has_bearer_token", row->has_bearer_token, "data_category", row->data_category,
                          "timeout_ms", (json_int_t)row->timeout_ms, "sync_interval_s",
                          (json_int_t)row->sync_interval_s, "status", row->status);
    json_object_set_new(o, "created_by", str_or_null(row->created_by_name));
    json_object_set_new(o, "created_at", jsonfmt_time(row->created_at));
    json_object_set_new(o, "decided_by", str_or_null(row->decided_by_name));
    json_object_set_new(o, "decided_at", jsonfmt_time(row->decided_at));
    json_object_set_new(o, "reason", str_or_null(row->reason));
    json_object_set_new(o, "protocol_version", str_or_null(row->protocol_version));
    json_object_set_new(o, "detected_transport", str_or_null(row->detected_transport));
    json_object_set_new(o, "server_info", jsonfmt_parsed(row->server_info));
    json_object_set_new(o, "last_synced_at", jsonfmt_time(row->last_synced_at));
    json_object_set_new(o, "last_sync_status", str_or_null(row->last_sync_status));
    json_object_set_new(o, "last_error", str_or_null(row->last_error));
    if (s) {
        /* What the agent can use of it now. */
        provider *p = providers_find(s->reg->cfg.providers, s->slug);
        json_object_set_new(o, "offered_tools", json_integer(p && p->runner ? (json_int_t)p->ntools : 0));
    }
    return o;
}

static json_t *tool_json(const mcp_tool_row *t)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:s}", "id", t->id, "name", t->name,
                          "full_name", t->full_name, "title", str_or_null(t->title), "description",
                          str_or_null(t->description), "input_schema", jsonfmt_parsed(t->input_schema), "output_schema",
                          jsonfmt_parsed(t->output_schema), "annotations", jsonfmt_parsed(t->annotations), "access", t->access,
                          "status", t->status);
    json_object_set_new(o, "problem", str_or_null(t->problem));
    json_object_set_new(o, "first_seen_at", jsonfmt_time(t->first_seen_at));
    json_object_set_new(o, "last_seen_at", jsonfmt_time(t->last_seen_at));
    json_object_set_new(o, "changed_at", jsonfmt_time(t->changed_at));
    json_object_set_new(o, "decided_by", str_or_null(t->decided_by_name));
    json_object_set_new(o, "decided_at", jsonfmt_time(t->decided_at));
    json_object_set_new(o, "reason", str_or_null(t->reason));
    return o;
}

static void add_tool_json(void *ud, const mcp_tool_row *t) { json_array_append_new(ud, tool_json(t)); }

static json_t *server_by_id(srv *s, ferr *err)
{
    mcp_server_row row;
    int found = store_mcp_server_get(s->reg->cfg.db, s->id, &row, err);
    if (found != 0) {
        if (found == 1)
            ferr_set(err, FERR_NOT_FOUND, "no MCP server %s", s->id);
        return NULL;
    }
    json_t *o = server_json(s, &row);
    store_mcp_server_clear(&row);
    return o;
}

static json_t *tools_of(srv *s, ferr *err)
{
    json_t *list = json_array();
    if (store_mcp_tools_list(s->reg->cfg.db, s->id, add_tool_json, list, err) < 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}

/* ---- syncing ---- */

static void definition_hash(const json_t *tool, char out[65])
{
    json_t *def = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?}", "title", json_object_get(tool, "title"), "description",
                            json_object_get(tool, "description"), "inputSchema", json_object_get(tool, "inputSchema"),
                            "outputSchema", json_object_get(tool, "outputSchema"), "annotations",
                            json_object_get(tool, "annotations"));
    char *text = json_dumps(def, JSON_COMPACT | JSON_SORT_KEYS);
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(text ? text : "", text ? strlen(text) : 0, md, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    free(text);
    json_decref(def);
}

/* The name an agent API accepts: letters, digits, '_' and '-'. */
static void ferry_name(const char *name, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *c = name; *c && o + 1 < cap; c++)
        out[o++] = isalnum((unsigned char)*c) || *c == '_' || *c == '-' ? *c : '_';
    out[o] = 0;
}

static char *dumps_or_null(const json_t *v) { return v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS) : NULL; }

typedef struct changes {
    int added, changed, removed;
} changes;

/* Compares what the server lists with what is stored: new tools and tools
 * whose definition changed wait for approval; tools gone are removed. */
static int apply_tools(srv *s, json_t *tools, changes *ch, ferr *err)
{
    mcpc_registry *r = s->reg;
    tool_list old = {0};
    if (store_mcp_tools_list(r->cfg.db, s->id, keep_tool, &old, err) < 0)
        return -1;
    size_t n = json_array_size(tools);
    mcp_tool_row *rows = calloc(n ? n : 1, sizeof *rows);
    char **removed = calloc(old.n ? old.n : 1, sizeof *removed);
    char (*hashes)[65] = calloc(n ? n : 1, sizeof *hashes);
    char (*names)[256] = calloc(n ? n : 1, sizeof *names);
    char (*problems)[512] = calloc(n ? n : 1, sizeof *problems);
    char **texts = calloc(n ? 3 * n : 1, sizeof *texts);
    int *seen = calloc(old.n ? old.n : 1, sizeof *seen);
    size_t nremoved = 0;
    int rc = -1;
    if (!rows || !removed || !hashes || !names || !problems || !texts || !seen) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        goto out;
    }
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tools, i);
        const char *name = json_string_value(json_object_get(t, "name"));
        char fname[160];
        ferry_name(name, fname, sizeof fname);
        snprintf(names[i], sizeof names[i], "%s__%s", s->slug, fname);
        if (strlen(s->slug) + 2 + strlen(fname) > MAX_TOOL_NAME)
            snprintf(problems[i], sizeof problems[i], "its name is too long for agents: %s__%s would exceed %d "
                     "characters", s->slug, fname, MAX_TOOL_NAME);
        for (size_t k = 0; k < i && !problems[i][0]; k++)
            if (strcmp(names[k], names[i]) == 0)
                snprintf(problems[i], sizeof problems[i], "its name becomes %s like another tool's", names[i]);
        provider_tool *other = providers_find_tool(r->cfg.providers, names[i]);
        if (!problems[i][0] && other && strcmp(other->p->slug, s->slug) != 0)
            snprintf(problems[i], sizeof problems[i], "%s is already a tool of %s", names[i], other->p->slug);
        definition_hash(t, hashes[i]);
        mcp_tool_row *row = &rows[i];
        const mcp_tool_row *was = NULL;
        for (size_t k = 0; k < old.n; k++)
            if (strcmp(old.rows[k].name, name) == 0) {
                was = &old.rows[k];
                seen[k] = 1;
            }
        const char *access = mcpc_proto_is_read_only(t) ? "read" : "write";
        if (was) {
            memcpy(row->id, was->id, sizeof row->id);
            row->first_seen_at = was->first_seen_at;
            if (strcmp(was->definition_hash, hashes[i]) == 0) {
                /* Unchanged: what a person decided stands (their access too). */
                row->status = strcmp(was->status, "removed") == 0 ? "pending" : was->status;
                row->access = was->access;
                if (strcmp(was->status, "removed") == 0)
                    ch->added++;
            } else {
                /* Changed: approved for what it was, not for what it is. */
                row->status = "pending";
                row->access = (char *)access;
                row->changed_at = now;
                ch->changed++;
            }
        } else {
            new_id("mct_", row->id);
            row->first_seen_at = now;
            row->status = "pending";
            row->access = (char *)access;
            ch->added++;
        }
        memcpy(row->server_id, s->id, sizeof row->server_id);
        row->name = (char *)name;
        row->full_name = names[i];
        row->title = (char *)json_string_value(json_object_get(t, "title"));
        if (!row->title)
            row->title = (char *)json_string_value(json_object_get(json_object_get(t, "annotations"), "title"));
        row->description = (char *)json_string_value(json_object_get(t, "description"));
        row->input_schema = texts[3 * i] = dumps_or_null(json_object_get(t, "inputSchema"));
        row->output_schema = texts[3 * i + 1] = dumps_or_null(json_object_get(t, "outputSchema"));
        row->annotations = texts[3 * i + 2] = dumps_or_null(json_object_get(t, "annotations"));
        row->definition_hash = hashes[i];
        row->problem = problems[i][0] ? problems[i] : NULL;
        row->last_seen_at = now;
    }
    for (size_t k = 0; k < old.n; k++)
        if (!seen[k] && strcmp(old.rows[k].status, "removed") != 0) {
            removed[nremoved++] = old.rows[k].id;
            ch->removed++;
        }
    rc = store_mcp_tools_apply(r->cfg.db, rows, n, (const char *const *)removed, nremoved, err);
out:
    for (size_t i = 0; texts && i < 3 * n; i++)
        free(texts[i]);
    free(texts);
    free(rows);
    free(removed);
    free(hashes);
    free(names);
    free(problems);
    free(seen);
    tool_list_free(&old);
    return rc;
}

/* Keeps the server's job as its row says: mcp:<id>:tools every
 * sync_interval_s while it is approved, none otherwise (pending, rejected,
 * or an interval of 0). A new job runs first an interval from now: the
 * server was just synced (registered, or loaded with its tools). */
static void ensure_job(srv *s)
{
    mcpc_registry *r = s->reg;
    if (!r->sched)
        return;
    mcp_server_row row;
    ferr e = {0};
    int found = store_mcp_server_get(r->cfg.db, s->id, &row, &e);
    if (found < 0) {
        ferr_clear(&e);
        return;
    }
    int64_t interval = found == 0 && strcmp(row.status, "approved") == 0 ? row.sync_interval_s : 0;
    if (found == 0)
        store_mcp_server_clear(&row);
    char id[64];
    job_id_of(s, id);
    int rc;
    if (interval > 0) {
        char every[32];
        snprintf(every, sizeof every, "%llds", (long long)interval);
        rc = sched_ensure_job_in(r->sched, id, JOB_KIND, s->id, "tools", every, interval * 1000, &e);
    } else {
        rc = sched_delete_job(r->sched, id, &e);
    }
    if (rc < 0) {
        log_line *l = log_begin(LOG_WARN, "cannot keep an MCP server's sync job");
        log_str(l, "mcp_server", s->slug);
        log_str(l, "error", e.message);
        log_end(l);
    } else {
        s->has_job = interval > 0;
    }
    ferr_clear(&e);
}

static void answer_waiters(srv *s, json_t *out, const ferr *err)
{
    waiter *w = s->waiters;
    s->waiters = NULL;
    while (w) {
        waiter *next = w->next;
        w->done(w->arg, out, err);
        free(w);
        w = next;
    }
}

static void on_synced(void *arg, json_t *tools, json_t *rejected, const ferr *err)
{
    srv *s = arg;
    mcpc_registry *r = s->reg;
    s->sync = NULL;
    ferr e = {0};
    changes ch = {0};
    const ferr *fail = err;
    if (!err && apply_tools(s, tools, &ch, &e) < 0)
        fail = &e;
    char *info = dumps_or_null(s->server_info), *caps = dumps_or_null(s->capabilities);
    ferr ignore = {0};
    store_mcp_server_synced(r->cfg.db, s->id, fail ? ferr_code_name(fail->code) : "ok", fail ? fail->message : NULL,
                            s->version[0] ? s->version : NULL, s->transport[0] ? s->transport : NULL, info, caps,
                            &ignore);
    ferr_clear(&ignore);
    free(info);
    free(caps);
    if (!fail)
        publish(s);
    if (r->cfg.audit) {
        char detail[160];
        snprintf(detail, sizeof detail, "%d added, %d changed, %d removed", ch.added, ch.changed, ch.removed);
        audit_row row = {.team_id = s->team_id, .integration = s->slug, .operation = "mcp.sync", .access = "read",
                         .outcome = fail ? ferr_code_name(fail->code) : "ok",
                         .http_status = fail ? ferr_status(fail) : 200, .duration_ms = ms_since(&s->sync_started),
                         .request_id = s->sync_request_id[0] ? s->sync_request_id : NULL,
                         .detail = fail ? fail->message : detail};
        audit_end(r->cfg.audit, s->sync_intent, &row);
    }
    log_line *l = log_begin(fail ? LOG_WARN : LOG_INFO, "mcp sync");
    log_str(l, "mcp_server", s->slug);
    log_str(l, "outcome", fail ? ferr_code_name(fail->code) : "ok");
    if (fail)
        log_str(l, "error", fail->message);
    log_int(l, "added", ch.added);
    log_int(l, "changed", ch.changed);
    log_int(l, "removed", ch.removed);
    log_end(l);
    if (s->waiters) {
        json_t *out = json_object();
        json_t *server = server_by_id(s, &ignore);
        ferr_clear(&ignore);
        json_object_set_new(out, "server", server ? server : json_null());
        json_t *list = tools_of(s, &ignore);
        ferr_clear(&ignore);
        json_object_set_new(out, "tools", list ? list : json_array());
        if (rejected && json_array_size(rejected))
            json_object_set(out, "rejected", rejected);
        if (!fail)
            json_object_set_new(out, "changes", json_pack("{s:i, s:i, s:i}", "added", ch.added, "changed", ch.changed,
                                                          "removed", ch.removed));
        answer_waiters(s, out, fail);
        json_decref(out);
    }
    ferr_clear(&e);
    if (s->resync) {
        s->resync = 0;
        start_sync(s, NULL, NULL, NULL, &ignore);
        ferr_clear(&ignore);
    }
}

/* Starts a sync (or joins the one running). done (may be NULL) gets the
 * outcome. -1 only when its audit intent cannot be written: nothing ran. */
static int start_sync(srv *s, const char *request_id, mcpc_registry_fn done, void *arg, ferr *err)
{
    mcpc_registry *r = s->reg;
    if (done) {
        waiter *w = calloc(1, sizeof *w);
        if (!w)
            return ferr_set(err, FERR_INTERNAL, "out of memory");
        w->done = done;
        w->arg = arg;
        w->next = s->waiters;
        s->waiters = w;
    }
    if (s->sync) {
        if (!done)
            s->resync = 1;   /* a change arrived during the sync: look again after */
        return 0;
    }
    if (r->cfg.audit && audit_begin(r->cfg.audit, s->team_id, "mcp.sync", request_id, &s->sync_intent, err) < 0) {
        waiter *w = s->waiters;
        if (done && w) {
            s->waiters = w->next;
            free(w);
        }
        return -1;
    }
    snprintf(s->sync_request_id, sizeof s->sync_request_id, "%s", request_id ? request_id : "");
    clock_gettime(CLOCK_MONOTONIC, &s->sync_started);
    mcpc_session *session = ensure_session(s, err);
    if (session)
        s->sync = mcpc_session_list_tools(session, on_synced, s);
    if (!s->sync) {
        ferr e = {0};
        if (!session)
            ferr_move(&e, err);
        else
            ferr_set(&e, FERR_INTERNAL, "out of memory");
        on_synced(s, NULL, NULL, &e);
        ferr_clear(&e);
    }
    return 0;
}

/* ---- tool calls (the provider runner) ---- */

static void run_unlink(run *x)
{
    srv *s = x->s;
    if (x->prev)
        x->prev->next = x->next;
    else if (s->runs == x)
        s->runs = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void exec_flush(mcpc_registry *r)
{
    if (!r->nexecs)
        return;
    ferr e = {0};
    if (store_mcp_executions_append(r->cfg.db, r->execs, r->nexecs, &e) < 0) {
        log_line *l = log_begin(LOG_ERROR, "mcp executions not recorded");
        log_str(l, "error", e.message);
        log_int(l, "rows_lost", (long long)r->nexecs);
        log_end(l);
    }
    ferr_clear(&e);
    for (size_t i = 0; i < r->nexecs; i++) {
        mcp_execution_row *x = &r->execs[i];
        free((char *)x->server_id);
        free((char *)x->tool_id);
        free((char *)x->tool_name);
        free((char *)x->request_id);
        free((char *)x->approval_id);
        free((char *)x->arguments);
        free((char *)x->status);
        free((char *)x->error_code);
        free((char *)x->error_message);
    }
    r->nexecs = 0;
}

static void on_exec_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    exec_flush(arg);
}

/* mcp_tool_executions is analytics, like the call log, so it is batched;
 * the audit row of the same call is what fails closed. */
static void run_record(run *x, const char *status, const ferr *err, json_int_t jsonrpc_code, json_t *result)
{
    mcpc_registry *r = x->s->reg;
    if (r->nexecs == EXEC_BATCH)
        exec_flush(r);
    char *text = result ? json_dumps(result, JSON_COMPACT) : NULL;
    r->execs[r->nexecs++] = (mcp_execution_row){
        .server_id = strdup(x->s->id), .tool_id = x->tool_id[0] ? strdup(x->tool_id) : NULL,
        .tool_name = strdup(x->tool_name), .team_id = x->team_id, .user_id = x->user_id,
        .request_id = x->request_id[0] ? strdup(x->request_id) : NULL,
        .approval_id = x->approval_id[0] ? strdup(x->approval_id) : NULL, .arguments = dup_or_null(x->arguments),
        .status = strdup(status), .error_code = err ? strdup(ferr_code_name(err->code)) : NULL,
        .error_message = err ? strdup(err->message) : NULL, .jsonrpc_code = jsonrpc_code,
        .result_bytes = text ? (int64_t)strlen(text) : -1, .duration_ms = ms_since(&x->started),
        .executed_at = now_ms(),
    };
    free(text);
    if (!r->exec_timer) {
        exec_flush(r);
    } else if (!evtimer_pending(r->exec_timer, NULL)) {
        struct timeval tv = {0, EXEC_FLUSH_MS * 1000};
        evtimer_add(r->exec_timer, &tv);
    }
}

static void run_free(run *x)
{
    free(x->arguments);
    free(x);
}

/* The first text block of a result, for an error message. */
static void result_text(json_t *result, char *out, size_t cap)
{
    size_t i;
    json_t *block;
    out[0] = 0;
    json_array_foreach(json_object_get(result, "content"), i, block) {
        const char *t = json_string_value(json_object_get(block, "text"));
        if (t) {
            size_t n = jsonfmt_utf8_cut(t, strlen(t) < cap - 1 ? strlen(t) : cap - 1);
            memcpy(out, t, n);
            out[n] = 0;
            return;
        }
    }
    snprintf(out, cap, "(no text)");
}

static void on_run_called(void *arg, json_t *result, const ferr *err)
{
    run *x = arg;
    x->call = NULL;
    ferr e = {0};
    const char *status = "success";
    json_int_t jsonrpc_code = 0;
    if (err) {
        const char *kind = json_string_value(json_object_get(err->details, "mcp_error"));
        status = !kind                              ? "transport_error"
                 : strcmp(kind, "timeout") == 0     ? "timeout"
                 : strcmp(kind, "jsonrpc") == 0     ? "jsonrpc_error"
                 : strcmp(kind, "protocol") == 0 || strcmp(kind, "version") == 0 ? "protocol_error"
                                                                                 : "transport_error";
        jsonrpc_code = json_integer_value(json_object_get(err->details, "jsonrpc_code"));
        ferr_set(&e, err->code, "%s", err->message);
        e.status = err->status;
        e.details = err->details ? json_deep_copy(err->details) : NULL;
    } else if (json_is_true(json_object_get(result, "isError"))) {
        /* The tool ran and says it failed: a coded error that still
         * carries what it said (content, structuredContent), so the agent
         * can correct itself. */
        status = "tool_error";
        char text[ERROR_TEXT_MAX];
        result_text(result, text, sizeof text);
        ferr_set(&e, FERR_UPSTREAM_ERROR, "the MCP tool %s reported an error: %s", x->tool_name, text);
        ferr_detail(&e, "mcp_error", json_string("tool_error"));
        ferr_detail(&e, "result", json_deep_copy(result));
    }
    run_record(x, status, e.code ? &e : NULL, jsonrpc_code, result);
    run_unlink(x);
    x->done(x->arg, e.code ? NULL : result, &e);
    ferr_clear(&e);
    run_free(x);
}

static int run_start(void *ctx, const provider_run_request *req, provider_run_done_fn done, void *arg,
                     provider_run **out, ferr *err)
{
    mcpc_registry *r = ctx;
    srv *s = find_slug(r, req->p->slug);
    if (!s || strcmp(s->status, "approved") != 0)
        return ferr_set(err, FERR_UNKNOWN_TOOL, "the MCP server behind %s is no longer approved", req->tool->full_name);
    mcpc_session *session = ensure_session(s, err);
    if (!session)
        return -1;
    run *x = calloc(1, sizeof *x);
    if (!x)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    x->s = s;
    x->done = done;
    x->arg = arg;
    snprintf(x->tool_id, sizeof x->tool_id, "%s", json_string_value(json_object_get(req->tool->remote, "tool_id")));
    snprintf(x->tool_name, sizeof x->tool_name, "%s", req->tool->full_name);
    x->team_id = req->who ? req->who->team_id : 0;
    x->user_id = req->who ? req->who->user_id : 0;
    snprintf(x->request_id, sizeof x->request_id, "%s", req->request_id ? req->request_id : "");
    snprintf(x->approval_id, sizeof x->approval_id, "%s", req->approval_id ? req->approval_id : "");
    json_t *redacted = schema_redact(req->tool->input_schema, req->arguments);
    x->arguments = redacted ? json_dumps(redacted, JSON_TEXT) : NULL;
    json_decref(redacted);
    clock_gettime(CLOCK_MONOTONIC, &x->started);
    x->call = mcpc_session_call_tool(session, req->tool->remote_name, req->arguments,
                                     json_object_get(req->tool->remote, "param_headers"), 0, on_run_called, x);
    if (!x->call) {
        run_free(x);
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    }
    x->next = s->runs;
    if (s->runs)
        s->runs->prev = x;
    s->runs = x;
    *out = (provider_run *)x;
    return 0;
}

static void run_cancel(void *ctx, provider_run *pr)
{
    (void)ctx;
    run *x = (run *)pr;
    mcpc_call_cancel(x->call);
    x->call = NULL;
    ferr e = {0};
    ferr_set(&e, FERR_INTERNAL, "the call was ended before the MCP server answered");
    run_record(x, "cancelled", &e, 0, NULL);
    ferr_clear(&e);
    run_unlink(x);
    run_free(x);
}

/* Ends the calls running on a server that is going away or changing. */
static void end_runs(srv *s, const char *why)
{
    while (s->runs) {
        run *x = s->runs;
        mcpc_call_cancel(x->call);
        x->call = NULL;
        ferr e = {0};
        ferr_set(&e, FERR_UPSTREAM_ERROR, "%s", why);
        ferr_detail(&e, "mcp_error", json_string("transport"));
        run_record(x, "cancelled", &e, 0, NULL);
        run_unlink(x);
        x->done(x->arg, NULL, &e);
        ferr_clear(&e);
        run_free(x);
    }
}

/* ---- servers ---- */

static srv *srv_new(mcpc_registry *r, const mcp_server_row *row)
{
    srv *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->reg = r;
    snprintf(s->id, sizeof s->id, "%s", row->id);
    s->team_id = row->team_id;
    snprintf(s->slug, sizeof s->slug, "%s", row->slug);
    snprintf(s->status, sizeof s->status, "%s", row->status);
    snprintf(s->version, sizeof s->version, "%s", row->protocol_version ? row->protocol_version : "");
    snprintf(s->transport, sizeof s->transport, "%s", row->detected_transport ? row->detected_transport : "");
    s->next = r->servers;
    r->servers = s;
    return s;
}

static void srv_close_session(srv *s)
{
    if (s->sync) {
        mcpc_call_cancel(s->sync);
        s->sync = NULL;
        ferr e = {0};
        ferr_set(&e, FERR_INTERNAL, "the MCP server was changed or deleted during the sync");
        if (s->reg->cfg.audit) {
            audit_row row = {.team_id = s->team_id, .integration = s->slug, .operation = "mcp.sync",
                             .access = "read", .outcome = "internal", .http_status = 500,
                             .duration_ms = ms_since(&s->sync_started), .detail = e.message};
            audit_end(s->reg->cfg.audit, s->sync_intent, &row);
        }
        answer_waiters(s, NULL, &e);
        ferr_clear(&e);
    }
    mcpc_session_free(s->session);
    s->session = NULL;
}

static void srv_free(srv *s)
{
    end_runs(s, "the MCP server was removed while the call ran");
    srv_close_session(s);
    if (s->changed_timer)
        event_free(s->changed_timer);
    json_decref(s->server_info);
    json_decref(s->capabilities);
    free(s);
}

static void load_one(void *ud, const mcp_server_row *row)
{
    mcpc_registry *r = ud;
    srv *s = srv_new(r, row);
    if (!s)
        return;
    publish(s);
}

mcpc_registry *mcpc_registry_new(const mcpc_registry_config *cfg, ferr *err)
{
    mcpc_registry *r = calloc(1, sizeof *r);
    if (!r) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    size_t n = 0;
    while (cfg->stdio_commands && cfg->stdio_commands[n])
        n++;
    r->stdio_commands = calloc(n + 1, sizeof *r->stdio_commands);
    for (size_t i = 0; r->stdio_commands && i < n; i++)
        r->stdio_commands[i] = strdup(cfg->stdio_commands[i]);
    r->data_dir = cfg->data_dir ? strdup(cfg->data_dir) : NULL;
    r->cfg.stdio_commands = NULL;
    r->runner = (provider_runner){.method = "mcp", .ctx = r, .start = run_start, .cancel = run_cancel};
    r->exec_timer = evtimer_new(r->cfg.base, on_exec_timer, r);
    if (!r->stdio_commands || store_mcp_servers_list(r->cfg.db, 0, load_one, r, err) < 0) {
        if (!err->code)
            ferr_set(err, FERR_INTERNAL, "out of memory");
        mcpc_registry_free(r);
        return NULL;
    }
    return r;
}

void mcpc_registry_free(mcpc_registry *r)
{
    if (!r)
        return;
    while (r->servers) {
        srv *s = r->servers;
        r->servers = s->next;
        srv_free(s);
    }
    exec_flush(r);
    if (r->exec_timer)
        event_free(r->exec_timer);
    mcpc_session_shutdown();
    mcpc_stdio_shutdown();
    for (size_t i = 0; r->stdio_commands && r->stdio_commands[i]; i++)
        free(r->stdio_commands[i]);
    free(r->stdio_commands);
    free(r->data_dir);
    free(r);
}

/* ---- registration ---- */

static int bad(ferr *err, const char *path, const char *fmt, const char *arg)
{
    ferr_set(err, FERR_INVALID_ARGUMENTS, fmt, arg);
    ferr_detail(err, "path", json_string(path));
    return -1;
}

static int valid_slug(const char *s)
{
    size_t n = strlen(s);
    if (n < 2 || n > 40 || !islower((unsigned char)s[0]) || strstr(s, "__") || s[n - 1] == '_')
        return 0;
    for (const char *c = s; *c; c++)
        if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_'))
            return 0;
    return 1;
}

static int slug_free(mcpc_registry *r, const char *slug)
{
    return !providers_find(r->cfg.providers, slug) && store_mcp_slug_taken(r->cfg.db, slug) == 0;
}

/* From the server's name: lowercase, '_' between words, unique. */
static void derive_slug(mcpc_registry *r, const char *name, char out[41])
{
    char base[33];
    size_t o = 0;
    int gap = 0;
    for (const char *c = name; *c && o < 24; c++) {
        if (isalnum((unsigned char)*c)) {
            if (gap && o)
                base[o++] = '_';
            gap = 0;
            base[o++] = (char)tolower((unsigned char)*c);
        } else {
            gap = 1;
        }
    }
    base[o] = 0;
    if (o < 2 || !islower((unsigned char)base[0])) {
        char tmp[33];
        snprintf(tmp, sizeof tmp, "mcp_%s", base);
        snprintf(base, sizeof base, "%s", tmp);
        o = strlen(base);
        while (o && base[o - 1] == '_')
            base[--o] = 0;
    }
    snprintf(out, 41, "%s", base);
    for (int i = 2; !slug_free(r, out) && i < 1000; i++)
        snprintf(out, 41, "%s_%d", base, i);
}

static int header_name_ok(const char *name)
{
    if (!*name)
        return 0;
    for (const char *c = name; *c; c++)
        if (!(isalnum((unsigned char)*c) || strchr("!#$%&'*+-.^_`|~", *c)))
            return 0;
    /* What the transport sets itself. */
    static const char *const reserved[] = {"content-type", "content-length", "accept", "host", "mcp-session-id",
                                           "mcp-protocol-version", "mcp-method", "mcp-name", "last-event-id",
                                           "transfer-encoding", "connection", "expect", NULL};
    for (int i = 0; reserved[i]; i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return 0;
    return strncasecmp(name, "mcp-param-", 10) != 0;
}

static int value_ok(const char *v, int allow_empty)
{
    if (!allow_empty && !*v)
        return 0;
    for (const char *c = v; *c; c++)
        if (*c == '\r' || *c == '\n')
            return 0;
    return 1;
}

/* Checks the credential parts of a spec and adds them to `creds`, their
 * names to `header_names`/`env_names`. */
static int take_credentials(const json_t *spec, int stdio, json_t *creds, json_t *header_names, json_t *env_names,
                            int *has_token, ferr *err)
{
    json_t *headers = json_object_get(spec, "headers");
    json_t *token = json_object_get(spec, "bearer_token");
    json_t *env = json_object_get(spec, "env");
    if (headers && !json_is_null(headers)) {
        if (!json_is_object(headers))
            return bad(err, "$.headers", "%s", "headers must be an object of header names to values");
        if (stdio && json_object_size(headers))
            return bad(err, "$.headers", "%s", "headers are for servers reached over HTTP");
        json_t *out = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(headers, k, v) {
            if (!header_name_ok(k)) {
                json_decref(out);
                return bad(err, "$.headers", "'%s' is not a header name ferry lets you set", k);
            }
            if (!json_is_string(v) || !value_ok(json_string_value(v), 0)) {
                json_decref(out);
                return bad(err, "$.headers", "the value of %s must be a non-empty string on one line", k);
            }
            if (json_is_string(token) && strcasecmp(k, "authorization") == 0) {
                json_decref(out);
                return bad(err, "$.headers", "%s", "give either an Authorization header or bearer_token, not both");
            }
            json_object_set(out, k, v);
            json_array_append_new(header_names, json_string(k));
        }
        json_object_set_new(creds, "headers", out);
    }
    if (token && !json_is_null(token)) {
        if (!json_is_string(token) || !value_ok(json_string_value(token), 0))
            return bad(err, "$.bearer_token", "%s", "bearer_token must be a non-empty string on one line");
        if (stdio)
            return bad(err, "$.bearer_token", "%s", "a bearer token is for servers reached over HTTP");
        json_object_set(creds, "bearer_token", token);
        *has_token = 1;
    }
    if (env && !json_is_null(env)) {
        if (!stdio)
            return bad(err, "$.env", "%s", "env is for servers run as a command (stdio)");
        if (!json_is_object(env))
            return bad(err, "$.env", "%s", "env must be an object of variable names to values");
        json_t *out = json_object();
        const char *k;
        json_t *v;
        json_object_foreach(env, k, v) {
            int ok = (isalpha((unsigned char)k[0]) || k[0] == '_');
            for (const char *c = k; ok && *c; c++)
                ok = isalnum((unsigned char)*c) || *c == '_';
            if (!ok || !json_is_string(v) || memchr(json_string_value(v), 0, json_string_length(v))) {
                json_decref(out);
                return bad(err, "$.env", "'%s' must be a variable name with a string value", k);
            }
            if (env_name_refused(k)) {
                json_decref(out);
                return bad(err, "$.env", "'%s' changes how programs load or start (or is ferry's own), so a "
                           "registered server may not set it", k);
            }
            json_object_set(out, k, v);
            json_array_append_new(env_names, json_string(k));
        }
        json_object_set_new(creds, "env", out);
    }
    return 0;
}

static int take_settings(const json_t *spec, mcp_server_row *row, ferr *err)
{
    json_t *v = json_object_get(spec, "description");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) > 2000)
            return bad(err, "$.description", "%s", "description must be a string of at most 2000 characters");
        free(row->description);
        row->description = strdup(json_string_value(v));
    }
    v = json_object_get(spec, "data_category");
    if (v && !json_is_null(v)) {
        const char *c = json_string_value(v);
        int ok = c && islower((unsigned char)c[0]) && strlen(c) <= 40;
        for (const char *p = c; ok && *p; p++)
            ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_';
        if (!ok)
            return bad(err, "$.data_category", "%s", "data_category must be a lowercase word (financial, crm, other...)");
        free(row->data_category);
        row->data_category = strdup(c);
    }
    v = json_object_get(spec, "timeout_ms");
    if (v && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 100 || json_integer_value(v) > 600000)
            return bad(err, "$.timeout_ms", "%s", "timeout_ms must be an integer from 100 to 600000");
        row->timeout_ms = json_integer_value(v);
    }
    v = json_object_get(spec, "sync_interval_s");
    if (v && !json_is_null(v)) {
        json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
        if (n != 0 && (n < 60 || n > 7 * 86400))
            return bad(err, "$.sync_interval_s", "%s",
                       "sync_interval_s must be 0 (no periodic sync) or from 60 to 604800 seconds");
        row->sync_interval_s = n;
    }
    return 0;
}

static int only_known_keys(const json_t *spec, const char *const *known, ferr *err)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)spec, k, v) {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = strcmp(k, known[i]) == 0;
        if (!ok) {
            char path[300];
            snprintf(path, sizeof path, "$.%s", k);
            return bad(err, path, "'%s' is not a setting of an MCP server", k);
        }
    }
    return 0;
}

/* Seals `creds` under a fresh data key for the server `id`. */
static int seal_credentials(mcpc_registry *r, const char *id, json_t *creds, mcp_server_row *row, ferr *err)
{
    char *text = json_dumps(creds, JSON_COMPACT);
    if (!text)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    unsigned char dek[VAULT_KEY_LEN];
    vault_forget(r->cfg.vault, id);
    int rc = vault_new_data_key(r->cfg.vault, id, dek, row->wrapped_key, &row->wrapped_len, err);
    if (rc == 0)
        rc = vault_seal(dek, id, "credentials", text, strlen(text), &row->sealed, &row->sealed_len, err);
    vault_wipe(dek, sizeof dek);
    vault_wipe(text, strlen(text));
    free(text);
    return rc;
}

static int allowed_program(mcpc_registry *r, const char *prog)
{
    for (size_t i = 0; r->stdio_commands[i]; i++)
        if (strcmp(r->stdio_commands[i], prog) == 0)
            return 1;
    return 0;
}

int mcpc_registry_register(mcpc_registry *r, const principal *who, json_t *spec, const char *request_id,
                           mcpc_registry_fn done, void *arg, ferr *err)
{
    static const char *const known[] = {"name", "slug", "description", "url", "command", "transport", "headers",
                                        "bearer_token", "env", "data_category", "timeout_ms", "sync_interval_s", NULL};
    if (require_admin(who, err) < 0)
        return -1;
    if (!json_is_object(spec))
        return ferr_set(err, FERR_BAD_REQUEST, "the body must be a JSON object: {name, url | command, ...}");
    if (only_known_keys(spec, known, err) < 0)
        return -1;
    const char *name = json_string_value(json_object_get(spec, "name"));
    if (!name || !*name || strlen(name) > 100)
        return bad(err, "$.name", "%s", "name is required: a string of at most 100 characters");
    json_t *url = json_object_get(spec, "url"), *command = json_object_get(spec, "command");
    const char *transport = json_string_value(json_object_get(spec, "transport"));
    if (json_object_get(spec, "transport") && !transport)
        return bad(err, "$.transport", "%s", "transport must be a string");
    if ((url && !json_is_null(url)) == (command && !json_is_null(command)))
        return bad(err, "$", "%s", "give either url (an HTTP server) or command (a program ferry runs over stdio)");
    int stdio = command && !json_is_null(command);
    if (!transport)
        transport = stdio ? "stdio" : "auto";
    if (stdio ? strcmp(transport, "stdio") != 0
              : (strcmp(transport, "auto") != 0 && strcmp(transport, "streamable_http") != 0 &&
                 strcmp(transport, "sse") != 0))
        return bad(err, "$.transport", "%s",
                   stdio ? "a command runs over stdio" : "transport must be auto, streamable_http or sse");

    json_t *creds = json_object(), *header_names = json_array(), *env_names = json_array();
    mcp_server_row row;
    memset(&row, 0, sizeof row);
    row.timeout_ms = DEFAULT_TIMEOUT_MS;
    row.sync_interval_s = DEFAULT_SYNC_INTERVAL_S;
    row.data_category = strdup("other");
    char *display = NULL, *cmd_text = NULL;
    int rc = -1;
    if (stdio) {
        if (!json_is_array(command) || json_array_size(command) == 0 || json_array_size(command) > 64) {
            bad(err, "$.command", "%s", "command must be an array of 1 to 64 strings: the program and its arguments");
            goto out;
        }
        size_t i;
        json_t *a;
        json_array_foreach(command, i, a) {
            if (!json_is_string(a) || memchr(json_string_value(a), 0, json_string_length(a))) {
                bad(err, "$.command", "%s", "command must be an array of strings");
                goto out;
            }
        }
        const char *prog = json_string_value(json_array_get(command, 0));
        if (prog[0] != '/') {
            bad(err, "$.command[0]", "%s", "the program must be an absolute path");
            goto out;
        }
        if (!allowed_program(r, prog)) {
            ferr_set(err, FERR_FORBIDDEN,
                     "%s is not a program MCP servers may run: the operator allows each one with --mcp-stdio-command "
                     "(it runs on ferry's host)", prog);
            goto out;
        }
        cmd_text = json_dumps(command, JSON_COMPACT);
    } else {
        const char *u = json_string_value(url);
        CURLU *cu = curl_url();
        char *scheme = NULL, *user = NULL, *pass = NULL;
        int ok = u && cu && curl_url_set(cu, CURLUPART_URL, u, 0) == CURLUE_OK &&
                 curl_url_get(cu, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                 (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
        int has_userinfo = ok && (curl_url_get(cu, CURLUPART_USER, &user, 0) == CURLUE_OK ||
                                  curl_url_get(cu, CURLUPART_PASSWORD, &pass, 0) == CURLUE_OK);
        curl_free(scheme);
        curl_free(user);
        curl_free(pass);
        curl_url_cleanup(cu);
        if (!ok) {
            bad(err, "$.url", "%s", "url must be an http or https URL");
            goto out;
        }
        if (has_userinfo) {
            bad(err, "$.url", "%s", "put credentials in headers or bearer_token, not in the URL");
            goto out;
        }
        display = display_url(u, NULL, 0);
        json_object_set(creds, "url", url);
    }
    int has_token = 0;
    if (take_credentials(spec, stdio, creds, header_names, env_names, &has_token, err) < 0 ||
        take_settings(spec, &row, err) < 0)
        goto out;
    char slug[41];
    const char *want = json_string_value(json_object_get(spec, "slug"));
    if (json_object_get(spec, "slug") && !json_is_null(json_object_get(spec, "slug"))) {
        if (!want || !valid_slug(want)) {
            bad(err, "$.slug", "%s",
                "slug must be 2 to 40 lowercase letters, digits and single underscores, starting with a letter");
            goto out;
        }
        if (!slug_free(r, want)) {
            ferr_set(err, FERR_BAD_REQUEST, "the slug '%s' is taken", want);
            err->status = 409;
            ferr_detail(err, "path", json_string("$.slug"));
            goto out;
        }
        snprintf(slug, sizeof slug, "%s", want);
    } else {
        derive_slug(r, name, slug);
    }
    new_id("mcp_", row.id);
    row.team_id = who ? who->team_id : 0;
    row.slug = strdup(slug);
    row.name = strdup(name);
    row.transport = strdup(transport);
    row.url_display = display;
    display = NULL;
    row.command = cmd_text;
    cmd_text = NULL;
    row.header_names = json_dumps(header_names, JSON_COMPACT);
    row.env_names = json_dumps(env_names, JSON_COMPACT);
    row.has_bearer_token = has_token;
    row.created_by = who ? who->user_id : 0;
    row.created_at = now_ms();
    if (!row.slug || !row.name || !row.transport || !row.header_names || !row.env_names) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        goto out;
    }
    if (seal_credentials(r, row.id, creds, &row, err) < 0)
        goto out;
    /* The registration is audited before it exists (fails closed). */
    if (r->cfg.audit) {
        char detail[300];
        snprintf(detail, sizeof detail, "%s (%s)", name, transport);
        audit_row ar = {.user_id = who ? who->user_id : 0, .user = who ? who->user : NULL, .team_id = row.team_id,
                        .team = who ? who->team : NULL, .integration = slug, .operation = "mcp.server.register",
                        .outcome = "pending", .request_id = request_id, .detail = detail};
        if (audit_event(r->cfg.audit, &ar, err) < 0)
            goto out;
    }
    if (store_mcp_server_insert(r->cfg.db, &row, err) < 0)
        goto out;
    char id[40];
    snprintf(id, sizeof id, "%s", row.id);
    store_mcp_server_clear(&row);
    int found = store_mcp_server_get(r->cfg.db, id, &row, err);
    if (found != 0) {
        if (found == 1)
            ferr_set(err, FERR_INTERNAL, "the MCP server just registered is gone");
        goto out;
    }
    srv *s = srv_new(r, &row);
    if (!s) {
        ferr_set(err, FERR_INTERNAL, "out of memory");
        goto out;
    }
    rc = 0;
    /* The first discovery; its audit intent failing is its own failure. */
    ferr serr = {0};
    if (start_sync(s, request_id, done, arg, &serr) < 0) {
        json_t *o = json_pack("{s:o, s:o}", "server", server_by_id(s, err), "tools", json_array());
        done(arg, o, &serr);
        json_decref(o);
    }
    ferr_clear(&serr);
out:
    wipe_json_strings(creds);
    json_decref(creds);
    json_decref(header_names);
    json_decref(env_names);
    free(display);
    free(cmd_text);
    store_mcp_server_clear(&row);
    return rc;
}

int mcpc_registry_sync(mcpc_registry *r, const principal *who, const char *id, const char *request_id,
                       mcpc_registry_fn done, void *arg, ferr *err)
{
    if (require_admin(who, err) < 0)
        return -1;
    srv *s = visible_srv(r, who, id, err);
    if (!s)
        return -1;
    return start_sync(s, request_id, done, arg, err);
}

/* ---- the rest of the API ---- */

typedef struct list_ctx {
    mcpc_registry *r;
    json_t *out;
} list_ctx;

static void add_server(void *ud, const mcp_server_row *row)
{
    list_ctx *c = ud;
    json_array_append_new(c->out, server_json(find_srv(c->r, row->id), row));
}

json_t *mcpc_registry_list(mcpc_registry *r, const principal *who, ferr *err)
{
    if (require_admin(who, err) < 0)
        return NULL;
    list_ctx c = {r, json_array()};
    if (store_mcp_servers_list(r->cfg.db, who ? who->team_id : 0, add_server, &c, err) < 0) {
        json_decref(c.out);
        return NULL;
    }
    return c.out;
}

json_t *mcpc_registry_get(mcpc_registry *r, const principal *who, const char *id, ferr *err)
{
    if (require_admin(who, err) < 0)
        return NULL;
    srv *s = visible_srv(r, who, id, err);
    return s ? server_by_id(s, err) : NULL;
}

json_t *mcpc_registry_tools(mcpc_registry *r, const principal *who, const char *id, ferr *err)
{
    if (require_admin(who, err) < 0)
        return NULL;
    srv *s = visible_srv(r, who, id, err);
    return s ? tools_of(s, err) : NULL;
}

static void add_execution(void *ud, const mcp_execution_row *e)
{
    json_t *o = json_pack("{s:I, s:s, s:o, s:o, s:o, s:s, s:f, s:o}", "id", (json_int_t)e->id, "tool", e->tool_name,
                          "user", str_or_null(e->user_name), "request_id", str_or_null(e->request_id), "approval_id",
                          str_or_null(e->approval_id), "status", e->status, "duration_ms", e->duration_ms,
                          "executed_at", jsonfmt_time(e->executed_at));
    json_object_set_new(o, "arguments", jsonfmt_parsed(e->arguments));
    json_object_set_new(o, "error_code", str_or_null(e->error_code));
    json_object_set_new(o, "error_message", str_or_null(e->error_message));
    json_object_set_new(o, "jsonrpc_code", e->jsonrpc_code ? json_integer(e->jsonrpc_code) : json_null());
    json_object_set_new(o, "result_bytes", e->result_bytes >= 0 ? json_integer(e->result_bytes) : json_null());
    json_array_append_new(ud, o);
}

json_t *mcpc_registry_executions(mcpc_registry *r, const principal *who, const char *id, int limit, ferr *err)
{
    if (require_admin(who, err) < 0)
        return NULL;
    exec_flush(r);   /* what just ran is shown too */
    srv *s = visible_srv(r, who, id, err);
    if (!s)
        return NULL;
    json_t *list = json_array();
    if (store_mcp_executions_list(r->cfg.db, s->id, limit > 0 && limit <= 1000 ? limit : 100, add_execution, list,
                                  err) < 0) {
        json_decref(list);
        return NULL;
    }
    return list;
}

json_t *mcpc_registry_decide_server(mcpc_registry *r, const principal *who, const char *id, int approve,
                                    const char *reason, const char *request_id, ferr *err)
{
    if (require_admin(who, err) < 0)
        return NULL;
    srv *s = visible_srv(r, who, id, err);
    if (!s)
        return NULL;
    const char *status = approve ? "approved" : "rejected";
    audit_admin(r, who, s, s->slug, approve ? "mcp.server.approve" : "mcp.server.reject", reason, request_id);
    if (store_mcp_server_decide(r->cfg.db, s->id, status, who ? who->user_id : 0, reason, err) < 0)
        return NULL;
    snprintf(s->status, sizeof s->status, "%s", status);
    publish(s);
    ensure_job(s);
    if (s->session)
        mcpc_session_listen(s->session, r->cfg.background && approve);
    return server_by_id(s, err);
}

json_t *mcpc_registry_decide_tool(mcpc_registry *r, const principal *who, const char *tool_id, int approve,
                                  const char *access, const char *reason, const char *request_id, ferr *err)
{
    if (require_admin(who, err) < 0)
        return NULL;
    if (access && strcmp(access, "read") != 0 && strcmp(access, "write") != 0) {
        bad(err, "$.access", "%s", "access must be read or write");
        return NULL;
    }
    mcp_tool_row t;
    int found = tool_id ? store_mcp_tool_get(r->cfg.db, tool_id, &t, err) : 1;
    if (found < 0)
        return NULL;
    srv *s = found == 0 ? find_srv(r, t.server_id) : NULL;
    if (found == 1 || !s || (who && s->team_id != who->team_id)) {
        if (found == 0)
            store_mcp_tool_clear(&t);
        ferr_set(err, FERR_NOT_FOUND, "no MCP tool %s", tool_id ? tool_id : "");
        return NULL;
    }
    json_t *out = NULL;
    if (approve && strcmp(t.status, "removed") == 0) {
        ferr_set(err, FERR_BAD_REQUEST, "%s is no longer offered by its server", t.full_name);
        err->status = 409;
    } else if (approve && t.problem) {
        ferr_set(err, FERR_BAD_REQUEST, "%s cannot be offered: %s", t.full_name, t.problem);
        err->status = 409;
    } else {
        audit_admin(r, who, s, s->slug, approve ? "mcp.tool.approve" : "mcp.tool.reject", t.full_name, request_id);
        if (store_mcp_tool_decide(r->cfg.db, t.id, approve ? "approved" : "rejected", approve ? access : NULL,
                                  who ? who->user_id : 0, reason, err) == 0) {
            publish(s);
            mcp_tool_row now;
            if (store_mcp_tool_get(r->cfg.db, t.id, &now, err) == 0) {
                out = tool_json(&now);
                store_mcp_tool_clear(&now);
            }
        }
    }
    store_mcp_tool_clear(&t);
    return out;
}

json_t *mcpc_registry_update(mcpc_registry *r, const principal *who, const char *id, json_t *spec,
                             const char *request_id, ferr *err)
{
    static const char *const known[] = {"description", "url", "headers", "bearer_token", "env", "data_category",
                                        "timeout_ms", "sync_interval_s", NULL};
    if (require_admin(who, err) < 0)
        return NULL;
    srv *s = visible_srv(r, who, id, err);
    if (!s)
        return NULL;
    if (!json_is_object(spec)) {
        ferr_set(err, FERR_BAD_REQUEST, "the body must be a JSON object of settings to change");
        return NULL;
    }
    if (only_known_keys(spec, known, err) < 0)
        return NULL;
    mcp_server_row row;
    if (store_mcp_server_get(r->cfg.db, s->id, &row, err) != 0)
        return NULL;
    json_t *out = NULL, *creds = NULL, *header_names = json_array(), *env_names = json_array();
    char *plain = NULL;
    size_t plain_len = 0;
    int stdio = strcmp(row.transport, "stdio") == 0;
    if (take_settings(spec, &row, err) < 0)
        goto out;
    int new_creds = json_object_get(spec, "url") || json_object_get(spec, "headers") ||
                    json_object_get(spec, "bearer_token") || json_object_get(spec, "env");
    free(row.sealed);
    row.sealed = NULL;
    row.sealed_len = 0;
    if (new_creds) {
        /* New parts replace the old ones; the rest are kept. */
        mcp_server_row cur;
        if (store_mcp_server_get(r->cfg.db, s->id, &cur, err) != 0)
            goto out;
        creds = open_credentials(r, &cur, &plain, &plain_len, err);
        store_mcp_server_clear(&cur);
        if (!creds)
            goto out;
        json_t *u = json_object_get(spec, "url");
        if (u && !json_is_null(u)) {
            char *d = NULL;
            if (stdio || !json_is_string(u) || !(d = display_url(json_string_value(u), NULL, 0))) {
                bad(err, "$.url", "%s", stdio ? "a stdio server has no URL" : "url must be an http or https URL");
                goto out;
            }
            free(row.url_display);
            row.url_display = d;
            json_object_set(creds, "url", u);
        }
        int has_token = row.has_bearer_token;
        json_t *merged = json_deep_copy(spec);
        if (!json_object_get(spec, "headers"))
            json_object_set(merged, "headers", json_object_get(creds, "headers"));
        if (!json_object_get(spec, "env"))
            json_object_set(merged, "env", json_object_get(creds, "env"));
        if (!json_object_get(spec, "bearer_token"))
            json_object_set(merged, "bearer_token", json_object_get(creds, "bearer_token"));
        else
            has_token = 0;
        json_object_del(creds, "headers");
        json_object_del(creds, "env");
        json_object_del(creds, "bearer_token");
        if (json_is_null(json_object_get(spec, "bearer_token")))
            has_token = 0;
        int rc = take_credentials(merged, stdio, creds, header_names, env_names, &has_token, err);
        wipe_json_strings(merged);
        json_decref(merged);
        if (rc < 0)
            goto out;
        free(row.header_names);
        free(row.env_names);
        row.header_names = json_dumps(header_names, JSON_COMPACT);
        row.env_names = json_dumps(env_names, JSON_COMPACT);
        row.has_bearer_token = has_token;
        if (seal_credentials(r, s->id, creds, &row, err) < 0)
            goto out;
    }
    audit_admin(r, who, s, s->slug, "mcp.server.update", new_creds ? "settings and credentials" : "settings",
                request_id);
    if (store_mcp_server_update(r->cfg.db, &row, err) < 0)
        goto out;
    /* The next request connects with what changed. */
    end_runs(s, "the MCP server's settings changed while the call ran");
    srv_close_session(s);
    publish(s);
    ensure_job(s);
    out = server_by_id(s, err);
out:
    if (creds) {
        wipe_json_strings(creds);
        json_decref(creds);
    }
    if (plain) {
        vault_wipe(plain, plain_len);
        free(plain);
    }
    json_decref(header_names);
    json_decref(env_names);
    store_mcp_server_clear(&row);
    return out;
}

int mcpc_registry_delete(mcpc_registry *r, const principal *who, const char *id, const char *request_id, ferr *err)
{
    if (require_admin(who, err) < 0)
        return -1;
    srv *s = visible_srv(r, who, id, err);
    if (!s)
        return -1;
    audit_admin(r, who, s, s->slug, "mcp.server.delete", NULL, request_id);
    exec_flush(r);
    if (store_mcp_server_delete(r->cfg.db, s->id, err) < 0)
        return -1;
    vault_forget(r->cfg.vault, s->id);
    providers_remove(r->cfg.providers, s->slug);
    srv **pp = &r->servers;
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
    /* Its job's run here, if any, ends with the session (srv_free). */
    char job[64];
    job_id_of(s, job);
    srv_free(s);
    if (r->sched) {
        ferr ignore = {0};
        sched_delete_job(r->sched, job, &ignore);
        ferr_clear(&ignore);
    }
    return 0;
}

/* ---- periodic syncs: the scheduler's "mcp" jobs ---- */

static void on_job_synced(void *arg, json_t *out, const ferr *err)
{
    (void)out;
    job_run *x = arg;
    x->s->job = NULL;
    sched_run *sr = x->sr;
    free(x);
    sched_outcome o = {.status = err ? "failed" : "succeeded", .error = err ? err->message : NULL};
    sched_done(sr, &o);
}

static void job_start(void *ud, sched_run *sr, const store_job *j, int manual)
{
    (void)manual;
    mcpc_registry *r = ud;
    sched_outcome skipped = {.status = "skipped"};
    mcp_server_row row;
    ferr e = {0};
    int found = store_mcp_server_get(r->cfg.db, j->subject, &row, &e);
    if (found != 0) {
        char id[200];
        snprintf(id, sizeof id, "%s", j->id);
        skipped.error = found < 0 ? e.message : "the MCP server no longer exists";
        if (found < 0)
            skipped.status = "failed";
        sched_done(sr, &skipped);
        if (found == 1)
            sched_delete_job(r->sched, id, &e);
        ferr_clear(&e);
        return;
    }
    /* The row is the truth: a server registered or decided in another
     * ferry process on this database is taken as it is now. */
    srv *s = find_srv(r, row.id);
    int changed = !s;
    if (!s)
        s = srv_new(r, &row);
    changed = s && (changed || strcmp(s->status, row.status) != 0);
    if (s)
        snprintf(s->status, sizeof s->status, "%s", row.status);
    store_mcp_server_clear(&row);
    if (changed)
        publish(s);
    job_run *x = s && strcmp(s->status, "approved") == 0 ? calloc(1, sizeof *x) : NULL;
    if (!x) {
        skipped.error = !s ? "out of memory" : "the MCP server is not approved";
        sched_done(sr, &skipped);
        return;
    }
    x->s = s;
    x->sr = sr;
    s->job = x;
    /* Joins a sync already running for the server, if any. */
    if (start_sync(s, NULL, on_job_synced, x, &e) < 0) {
        s->job = NULL;
        free(x);
        sched_outcome o = {.status = "failed", .error = e.message};
        sched_done(sr, &o);
    }
    ferr_clear(&e);
}

static void job_stop(void *ud, sched_run *sr, const char *why)
{
    mcpc_registry *r = ud;
    for (srv *s = r->servers; s; s = s->next) {
        job_run *x = s->job;
        if (!x || x->sr != sr)
            continue;
        /* The sync itself goes on (an admin may wait for it); the run no
         * longer does. */
        for (waiter **pw = &s->waiters; *pw; pw = &(*pw)->next)
            if ((*pw)->arg == x) {
                waiter *w = *pw;
                *pw = w->next;
                free(w);
                break;
            }
        s->job = NULL;
        free(x);
        break;
    }
    sched_outcome o = {.status = "failed", .error = why, .retry_at_ms = 0};
    sched_done(sr, &o);
}

typedef struct stale_jobs {
    mcpc_registry *r;
    char (*ids)[200];
    size_t n, cap;
} stale_jobs;

static void collect_stale_job(void *ud, const store_job *j)
{
    stale_jobs *l = ud;
    if (find_srv(l->r, j->subject))
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        void *p = realloc(l->ids, cap * sizeof *l->ids);
        if (!p)
            return;
        l->ids = p;
        l->cap = cap;
    }
    snprintf(l->ids[l->n++], 200, "%s", j->id);
}

int mcpc_registry_schedule(mcpc_registry *r, sched *s, ferr *err)
{
    r->kind = (sched_kind){.name = JOB_KIND, .ud = r, .max_running = JOB_MAX_RUNNING, .start = job_start,
                           .stop = job_stop};
    if (sched_register(s, &r->kind) < 0)
        return ferr_set(err, FERR_INTERNAL, "too many job kinds");
    r->sched = s;
    for (srv *v = r->servers; v; v = v->next)
        ensure_job(v);
    /* Jobs of servers deleted while no process with a scheduler ran. */
    stale_jobs l = {.r = r};
    int rc = store_jobs_list(r->cfg.db, JOB_KIND, collect_stale_job, &l, err);
    for (size_t i = 0; rc == 0 && i < l.n; i++)
        rc = sched_delete_job(s, l.ids[i], err);
    free(l.ids);
    return rc;
}
