/* main.c — the ferry command line (API.md): serve, keys, providers, tool,
 * migrate. Exit status: 0 success, 1 a user error (message on stderr),
 * 2 usage. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app.h"
#include "connections.h"
#include "keys.h"
#include "kit.h"
#include "log.h"
#include "provider.h"
#include "search.h"
#include "store_sync.h"
#include "vault.h"

#define EXIT_USER 1
#define EXIT_USAGE 2
#define MAX_LIST 64

typedef struct list {
    const char *items[MAX_LIST + 1];
    int n;
} list;

static int list_add(list *l, const char *v)
{
    if (l->n == MAX_LIST) {
        fprintf(stderr, "ferry: too many repeated options\n");
        return -1;
    }
    l->items[l->n++] = v;
    l->items[l->n] = NULL;
    return 0;
}

static int user_error(const ferr *e)
{
    fprintf(stderr, "ferry: %s\n", e->message);
    return EXIT_USER;
}

/* Options every command that opens the engine understands. */
typedef struct common {
    app_config cfg;
    int rates_given;
    list providers;
    list base_urls;
    const char *log_level;
} common;

enum {
    OPT_DATA = 1000, OPT_PROVIDERS, OPT_BASE_URL, OPT_LOG_LEVEL, OPT_LISTEN, OPT_MAX_BODY, OPT_MAX_RESPONSE,
    OPT_CPU, OPT_MEMORY, OPT_DRAIN, OPT_MAX_IN_FLIGHT, OPT_CA_FILE, OPT_METRICS_PUBLIC, OPT_USER, OPT_TEAM,
    OPT_ROLE, OPT_CONNECTION, OPT_HELP, OPT_USER_RATE, OPT_USER_BURST, OPT_TEAM_RATE, OPT_TEAM_BURST, OPT_APPROVAL_TTL,
    OPT_BUSY_TIMEOUT, OPT_PUBLIC_URL, OPT_REFRESH_MARGIN, OPT_REFRESH_INTERVAL, OPT_CLIENT_ID, OPT_CLIENT_SECRET,
    OPT_AUTHORIZE_URL, OPT_TOKEN_URL, OPT_REVOKE_URL, OPT_MCP_ORIGIN, OPT_MCP_PAGE_SIZE, OPT_SCHED_TICK,
    OPT_SYNC_LEASE, OPT_SYNC_CONCURRENCY, OPT_SYNC_BACKOFF, OPT_SYNC_RETRY, OPT_SYNC_ATTEMPTS, OPT_CHUNK_SIZE,
    OPT_CHUNK_OVERLAP, OPT_CATEGORY, OPT_INTEGRATION_FILTER, OPT_LIMIT, OPT_MCP_ALLOW_PRIVATE,
    OPT_MCP_STDIO_COMMAND
};

/* Options of the commands that run syncs (serve, syncs run). */
#define SYNC_OPTIONS                                                                                  \
    {"sched-tick-ms", required_argument, 0, OPT_SCHED_TICK},                                         \
        {"sync-lease-ms", required_argument, 0, OPT_SYNC_LEASE},                                     \
        {"sync-concurrency", required_argument, 0, OPT_SYNC_CONCURRENCY},                            \
        {"sync-backoff-ms", required_argument, 0, OPT_SYNC_BACKOFF},                                 \
        {"sync-retry-ms", required_argument, 0, OPT_SYNC_RETRY},                                     \
        {"sync-attempts", required_argument, 0, OPT_SYNC_ATTEMPTS},                                  \
        {"chunk-size", required_argument, 0, OPT_CHUNK_SIZE},                                        \
        {"chunk-overlap", required_argument, 0, OPT_CHUNK_OVERLAP}

static const char sync_help[] =
    "  --sched-tick-ms N       how often due jobs (syncs, token refreshes, MCP syncs) are\n"
    "                          looked for (default 1000)\n"
    "  --sync-lease-ms N       a run's lease: another process takes over a run whose\n"
    "                          process stopped after this long (default 60000)\n"
    "  --sync-concurrency N    scheduled sync runs at once in this process (default 4;\n"
    "                          0: none, syncs run only when asked)\n"
    "  --sync-backoff-ms N     wait after a failed run, doubling (default 30000)\n"
    "  --sync-retry-ms N       wait between attempts within a run, doubling (default 1000)\n"
    "  --sync-attempts N       attempts per run for transient errors (default 4)\n"
    "  --chunk-size BYTES      search chunks of record text (default 1000)\n"
    "  --chunk-overlap BYTES   overlap between chunks (default 100)\n";

#define COMMON_OPTIONS                                                                               \
    {"data", required_argument, 0, OPT_DATA}, {"providers", required_argument, 0, OPT_PROVIDERS},    \
        {"base-url", required_argument, 0, OPT_BASE_URL},                                            \
        {"log-level", required_argument, 0, OPT_LOG_LEVEL},                                          \
        {"script-cpu-ms", required_argument, 0, OPT_CPU},                                            \
        {"script-memory-mb", required_argument, 0, OPT_MEMORY},                                      \
        {"max-response-mb", required_argument, 0, OPT_MAX_RESPONSE},                                 \
        {"ca-file", required_argument, 0, OPT_CA_FILE}, {"help", no_argument, 0, OPT_HELP}

static const char common_help[] =
    "  --data DIR              data folder (default ./ferry-data)\n"
    "  --providers DIR         also load every *.lua in DIR (repeatable)\n"
    "  --base-url SLUG=URL     point a provider at another base URL (repeatable)\n"
    "  --script-cpu-ms N       CPU limit per script call (default 1000)\n"
    "  --script-memory-mb N    memory limit per provider state (default 64)\n"
    "  --max-response-mb N     largest upstream response accepted (default 32)\n"
    "  --ca-file FILE          extra CA certificates for upstreams\n"
    "  --log-level LEVEL       debug, info, warn or error\n";

static long parse_positive(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end || v <= 0) {
        fprintf(stderr, "ferry: %s must be a positive integer, not '%s'\n", what, s);
        return -1;
    }
    return v;
}

/* 1 handled, 0 not a common option, -1 bad value. */
static int common_option(common *c, int opt, const char *arg)
{
    long v;
    switch (opt) {
    case OPT_DATA: c->cfg.data_dir = arg; return 1;
    case OPT_PROVIDERS: return list_add(&c->providers, arg) < 0 ? -1 : 1;
    case OPT_BASE_URL: return list_add(&c->base_urls, arg) < 0 ? -1 : 1;
    case OPT_LOG_LEVEL: c->log_level = arg; return 1;
    case OPT_CA_FILE: c->cfg.ca_file = arg; return 1;
    case OPT_CPU:
        if ((v = parse_positive(arg, "--script-cpu-ms")) < 0)
            return -1;
        c->cfg.script_cpu_ms = (unsigned)v;
        return 1;
    case OPT_MEMORY:
        if ((v = parse_positive(arg, "--script-memory-mb")) < 0)
            return -1;
        c->cfg.script_memory = (size_t)v << 20;
        return 1;
    case OPT_MAX_RESPONSE:
        if ((v = parse_positive(arg, "--max-response-mb")) < 0)
            return -1;
        c->cfg.max_response = (size_t)v << 20;
        return 1;
    }
    return 0;
}

/* 1 handled, 0 not a sync option, -1 bad value. */
static int sync_option(common *c, int opt, const char *arg)
{
    long v;
    if (opt == OPT_SYNC_CONCURRENCY) {
        char *end;
        v = strtol(arg, &end, 10);
        if (!*arg || *end || v < 0) {
            fprintf(stderr, "ferry: --sync-concurrency must be an integer >= 0\n");
            return -1;
        }
        c->cfg.sync_concurrency = v ? (int)v : -1;
        return 1;
    }
    if (opt == OPT_CHUNK_OVERLAP) {
        char *end;
        v = strtol(arg, &end, 10);
        if (!*arg || *end || v < 0) {
            fprintf(stderr, "ferry: --chunk-overlap must be an integer >= 0\n");
            return -1;
        }
        c->cfg.chunk_overlap = v ? v : -1;
        return 1;
    }
    static const struct {
        int opt;
        const char *name;
    } names[] = {{OPT_SCHED_TICK, "--sched-tick-ms"},     {OPT_SYNC_LEASE, "--sync-lease-ms"},
                 {OPT_SYNC_BACKOFF, "--sync-backoff-ms"},
                 {OPT_SYNC_RETRY, "--sync-retry-ms"},      {OPT_SYNC_ATTEMPTS, "--sync-attempts"},
                 {OPT_CHUNK_SIZE, "--chunk-size"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (names[i].opt != opt)
            continue;
        if ((v = parse_positive(arg, names[i].name)) < 0)
            return -1;
        switch (opt) {
        case OPT_SCHED_TICK: c->cfg.sched_tick_ms = v; break;
        case OPT_SYNC_LEASE: c->cfg.sync_lease_ms = v; break;
        case OPT_SYNC_BACKOFF: c->cfg.sync_backoff_ms = v; break;
        case OPT_SYNC_RETRY: c->cfg.sync_retry_ms = v; break;
        case OPT_SYNC_ATTEMPTS: c->cfg.sync_attempts = (int)v; break;
        default: c->cfg.chunk_size = (size_t)v; break;
        }
        return 1;
    }
    return 0;
}

static int common_finish(common *c, const char *default_level)
{
    if (!c->rates_given)
        c->cfg.rates.user_rate = -1;   /* the built-in defaults */
    log_level level;
    const char *name = c->log_level ? c->log_level : default_level;
    if (log_parse_level(name, &level) < 0) {
        fprintf(stderr, "ferry: unknown log level '%s'\n", name);
        return -1;
    }
    log_set_level(level);
    c->cfg.provider_dirs = c->providers.n ? c->providers.items : NULL;
    c->cfg.base_urls = c->base_urls.n ? c->base_urls.items : NULL;
    return 0;
}

/* ---- serve ---- */

static const char serve_help[] =
    "usage: ferry serve [options]\n"
    "Serve the HTTP API until SIGINT or SIGTERM (which drain calls in flight).\n"
    "  --listen HOST:PORT      default 127.0.0.1:8700 (port 0 picks a free one)\n"
    "  --max-body BYTES        largest request body (default 1048576)\n"
    "  --drain-timeout-ms N    how long calls may finish at shutdown (default 10000)\n"
    "  --max-in-flight N       concurrent tool calls before 429 (default: half the\n"
    "                          open-files limit, at most 20000)\n"
    "  --metrics-public        serve /metrics to non-loopback clients\n"
    "  --user-rate N, --user-burst N   calls per second (and burst) per user and\n"
    "                          integration (default 10, 50; 0: no limit)\n"
    "  --team-rate N, --team-burst N   the same per team (default 50, 200)\n"
    "  --approval-ttl-seconds N  how long a write waits for approval (default 86400: 24 h)\n"
    "  --db-busy-timeout-ms N  how long a database write waits for a lock (default 5000)\n"
    "  --public-url URL        where browsers reach ferry: OAuth providers send them back to\n"
    "                          URL/oauth/callback (default http://<listen address>)\n"
    "  --oauth-refresh-margin-seconds N   refresh OAuth tokens this long before they\n"
    "                          expire (default 300; at most half a token's life)\n"
    "  --oauth-refresh-interval-seconds N how often the refresh job looks for expiring\n"
    "                          tokens (default 60)\n"
    "  --mcp-allowed-origin ORIGIN  also accept this browser Origin (scheme://host[:port]) on\n"
    "                          /mcp (repeatable; ferry's own origins are always accepted)\n"
    "  --mcp-page-size N       tools per MCP tools/list page (default 100)\n"
    "  --mcp-allow-private     MCP server URLs that admins register may be loopback or\n"
    "                          private addresses (default: public addresses only)\n"
    "  --mcp-stdio-command PATH  a program admins may register as an MCP server run over\n"
    "                          stdio, by its absolute path (repeatable; default: none)\n";

static int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        COMMON_OPTIONS,
        {"listen", required_argument, 0, OPT_LISTEN},
        {"max-body", required_argument, 0, OPT_MAX_BODY},
        {"drain-timeout-ms", required_argument, 0, OPT_DRAIN},
        {"max-in-flight", required_argument, 0, OPT_MAX_IN_FLIGHT},
        {"metrics-public", no_argument, 0, OPT_METRICS_PUBLIC},
        {"user-rate", required_argument, 0, OPT_USER_RATE},
        {"user-burst", required_argument, 0, OPT_USER_BURST},
        {"team-rate", required_argument, 0, OPT_TEAM_RATE},
        {"team-burst", required_argument, 0, OPT_TEAM_BURST},
        {"approval-ttl-seconds", required_argument, 0, OPT_APPROVAL_TTL},
        {"db-busy-timeout-ms", required_argument, 0, OPT_BUSY_TIMEOUT},
        {"public-url", required_argument, 0, OPT_PUBLIC_URL},
        {"oauth-refresh-margin-seconds", required_argument, 0, OPT_REFRESH_MARGIN},
        {"oauth-refresh-interval-seconds", required_argument, 0, OPT_REFRESH_INTERVAL},
        {"mcp-allowed-origin", required_argument, 0, OPT_MCP_ORIGIN},
        {"mcp-page-size", required_argument, 0, OPT_MCP_PAGE_SIZE},
        {"mcp-allow-private", no_argument, 0, OPT_MCP_ALLOW_PRIVATE},
        {"mcp-stdio-command", required_argument, 0, OPT_MCP_STDIO_COMMAND},
        SYNC_OPTIONS,
        {0, 0, 0, 0}};
    common c = {0};
    list origins = {0};
    list stdio_commands = {0};
    int opt;
    long v;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int handled = common_option(&c, opt, optarg);
        if (!handled)
            handled = sync_option(&c, opt, optarg);
        if (handled < 0)
            return EXIT_USAGE;
        if (handled)
            continue;
        switch (opt) {
        case OPT_LISTEN: c.cfg.listen = optarg; break;
        case OPT_MAX_BODY:
            if ((v = parse_positive(optarg, "--max-body")) < 0)
                return EXIT_USAGE;
            c.cfg.max_body = (size_t)v;
            break;
        case OPT_DRAIN:
            if ((v = parse_positive(optarg, "--drain-timeout-ms")) < 0)
                return EXIT_USAGE;
            c.cfg.drain_timeout_ms = (unsigned)v;
            break;
        case OPT_MAX_IN_FLIGHT:
            if ((v = parse_positive(optarg, "--max-in-flight")) < 0)
                return EXIT_USAGE;
            c.cfg.max_in_flight = (size_t)v;
            break;
        case OPT_METRICS_PUBLIC: c.cfg.metrics_public = 1; break;
        case OPT_USER_RATE:
        case OPT_USER_BURST:
        case OPT_TEAM_RATE:
        case OPT_TEAM_BURST: {
            char *end;
            double d = strtod(optarg, &end);
            if (*optarg == 0 || *end || d < 0) {
                fprintf(stderr, "ferry serve: rates and bursts are numbers >= 0 (0: no limit)\n");
                return EXIT_USAGE;
            }
            if (!c.rates_given)
                c.cfg.rates = (rate_policy){10, 50, 50, 200};
            c.rates_given = 1;
            double *field = opt == OPT_USER_RATE ? &c.cfg.rates.user_rate : opt == OPT_USER_BURST ? &c.cfg.rates.user_burst
                          : opt == OPT_TEAM_RATE ? &c.cfg.rates.team_rate : &c.cfg.rates.team_burst;
            *field = d;
            break;
        }
        case OPT_APPROVAL_TTL:
            if ((v = parse_positive(optarg, "--approval-ttl-seconds")) < 0)
                return EXIT_USAGE;
            c.cfg.approval_ttl_seconds = (int)v;
            break;
        case OPT_BUSY_TIMEOUT:
            if ((v = parse_positive(optarg, "--db-busy-timeout-ms")) < 0)
                return EXIT_USAGE;
            c.cfg.db_busy_timeout_ms = (int)v;
            break;
        case OPT_PUBLIC_URL:
            if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0) {
                fprintf(stderr, "ferry serve: --public-url must be an http(s) URL\n");
                return EXIT_USAGE;
            }
            c.cfg.public_url = optarg;
            break;
        case OPT_REFRESH_MARGIN:
        case OPT_REFRESH_INTERVAL:
            if ((v = parse_positive(optarg, opt == OPT_REFRESH_MARGIN ? "--oauth-refresh-margin-seconds"
                                                                       : "--oauth-refresh-interval-seconds")) < 0)
                return EXIT_USAGE;
            if (opt == OPT_REFRESH_MARGIN)
                c.cfg.oauth_refresh_margin_s = (int)v;
            else
                c.cfg.oauth_refresh_interval_s = (int)v;
            break;
        case OPT_MCP_ORIGIN:
            if (list_add(&origins, optarg) < 0)
                return EXIT_USAGE;
            break;
        case OPT_MCP_PAGE_SIZE:
            if ((v = parse_positive(optarg, "--mcp-page-size")) < 0)
                return EXIT_USAGE;
            c.cfg.mcp_page_size = (size_t)v;
            break;
        case OPT_MCP_ALLOW_PRIVATE: c.cfg.mcp_allow_private = 1; break;
        case OPT_MCP_STDIO_COMMAND:
            if (optarg[0] != '/') {
                fprintf(stderr, "ferry serve: --mcp-stdio-command wants an absolute path\n");
                return EXIT_USAGE;
            }
            if (list_add(&stdio_commands, optarg) < 0)
                return EXIT_USAGE;
            break;
        case OPT_HELP: printf("%s%s%s", serve_help, sync_help, common_help); return 0;
        default: fprintf(stderr, "%s", serve_help); return EXIT_USAGE;
        }
    }
    c.cfg.mcp_allowed_origins = origins.n ? origins.items : NULL;
    c.cfg.mcp_stdio_commands = stdio_commands.n ? stdio_commands.items : NULL;
    c.cfg.mcp_background = 1;
    if (optind < argc) {
        fprintf(stderr, "ferry serve: unexpected argument '%s'\n%s", argv[optind], serve_help);
        return EXIT_USAGE;
    }
    if (common_finish(&c, "info") < 0)
        return EXIT_USAGE;
    app a;
    ferr e = {0};
    int rc = 0;
    if (app_open(&a, &c.cfg, &e) < 0 || app_serve(&a, &e) < 0)
        rc = user_error(&e);
    app_close(&a);
    ferr_clear(&e);
    return rc;
}

/* ---- keys ---- */

static const char keys_help[] =
    "usage: ferry keys create --user NAME --team NAME [--role member|admin] [--data DIR]\n"
    "       ferry keys revoke KEY_ID [--data DIR]\n"
    "create prints the new API key once; only its hash is stored.\n";

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20)
            return 0;
    return 1;
}

static int cmd_keys(int argc, char **argv)
{
    static const struct option opts[] = {{"user", required_argument, 0, OPT_USER},
                                         {"team", required_argument, 0, OPT_TEAM},
                                         {"role", required_argument, 0, OPT_ROLE},
                                         {"data", required_argument, 0, OPT_DATA},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    const char *user = NULL, *team = NULL, *role = NULL, *data = "./ferry-data";
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case OPT_USER: user = optarg; break;
        case OPT_TEAM: team = optarg; break;
        case OPT_ROLE: role = optarg; break;
        case OPT_DATA: data = optarg; break;
        case OPT_HELP: printf("%s", keys_help); return 0;
        default: fprintf(stderr, "%s", keys_help); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "%s", keys_help);
        return EXIT_USAGE;
    }
    const char *sub = argv[optind];
    log_set_level(LOG_WARN);
    store *db = NULL;
    ferr e = {0};
    int rc = 0;
    if (strcmp(sub, "create") == 0) {
        if (!user || !team || optind + 1 != argc) {
            fprintf(stderr, "%s", keys_help);
            return EXIT_USAGE;
        }
        if (role && strcmp(role, "member") != 0 && strcmp(role, "admin") != 0) {
            fprintf(stderr, "ferry keys create: --role must be member or admin\n");
            return EXIT_USAGE;
        }
        if (!valid_name(user) || !valid_name(team)) {
            fprintf(stderr, "ferry keys create: names must be 1 to 64 printable characters\n");
            return EXIT_USAGE;
        }
        char key[KEYS_MAX_LEN];
        principal who;
        if (store_open(data, &db, NULL, NULL, &e) < 0 || keys_create(db, user, team, role, key, &who, &e) < 0) {
            rc = user_error(&e);
        } else {
            printf("%s\n", key);
            fprintf(stderr, "key %s for %s in team %s (%s); store it now, it is not shown again\n", who.key_id,
                    who.user, who.team, who.is_admin ? "admin" : "member");
        }
        memset(key, 0, sizeof key);
    } else if (strcmp(sub, "revoke") == 0) {
        if (optind + 2 != argc) {
            fprintf(stderr, "%s", keys_help);
            return EXIT_USAGE;
        }
        if (store_open(data, &db, NULL, NULL, &e) < 0 || keys_revoke(db, argv[optind + 1], &e) < 0)
            rc = user_error(&e);
        else
            fprintf(stderr, "revoked %s\n", argv[optind + 1]);
    } else {
        fprintf(stderr, "%s", keys_help);
        return EXIT_USAGE;
    }
    store_close(db);
    ferr_clear(&e);
    return rc;
}

/* ---- providers ---- */

static const char providers_help[] =
    "usage: ferry providers list [--providers DIR]...\n"
    "       ferry providers check FILE.lua...\n"
    "       ferry providers new SLUG [--dir DIR]       a starter provider and its busted spec\n"
    "       ferry providers docs [--out DIR] [--providers DIR]...   docs/providers/<slug>.md\n"
    "check loads each file in the sandbox, validates it against the provider\n"
    "contract and prints every problem; exit 1 when any file has one.\n";

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    return buf;
}

static int providers_check(int argc, char **argv, common *c)
{
    int bad = 0;
    lhost_limits limits = {.memory_bytes = c->cfg.script_memory, .cpu_ms = c->cfg.script_cpu_ms};
    for (int i = 0; i < argc; i++) {
        size_t len;
        char *src = read_all(argv[i], &len);
        if (!src) {
            printf("%s: cannot read the file\n", argv[i]);
            bad = 1;
            continue;
        }
        json_t *problems = json_array();
        provider *p = NULL;
        if (provider_load(argv[i], src, len, &limits, &p, problems) == 0) {
            printf("%s: ok: %s, %zu tool%s, %zu sync%s\n", argv[i], p->slug, p->ntools, p->ntools == 1 ? "" : "s",
                   p->nsyncs, p->nsyncs == 1 ? "" : "s");
        } else {
            bad = 1;
            size_t k;
            json_t *msg;
            json_array_foreach(problems, k, msg) printf("%s: %s\n", argv[i], json_string_value(msg));
        }
        provider_free(p);
        json_decref(problems);
        free(src);
    }
    return bad ? EXIT_USER : 0;
}

static int providers_list(common *c)
{
    lhost_limits limits = {.memory_bytes = c->cfg.script_memory, .cpu_ms = c->cfg.script_cpu_ms};
    providers_options po = {.dirs = c->cfg.provider_dirs, .base_urls = c->cfg.base_urls, .limits = limits};
    lhost_set_module_dirs(c->cfg.provider_dirs);
    providers *ps = NULL;
    ferr e = {0};
    int rc = 0;
    if (providers_load(&po, &ps, &e) < 0) {
        rc = user_error(&e);
    } else {
        for (size_t i = 0; i < providers_count(ps); i++) {
            provider *p = providers_at(ps, i);
            printf("%-24s %-20s %-8s %3zu tools  %s\n", p->slug, p->category, p->auth_type, p->ntools, p->source);
        }
        size_t k;
        json_t *b;
        json_array_foreach(providers_broken(ps), k, b) {
            printf("%-24s %s (%zu problems; run ferry providers check)\n", "(skipped)",
                   json_string_value(json_object_get(b, "source")),
                   json_array_size(json_object_get(b, "problems")));
        }
    }
    providers_free(ps);
    ferr_clear(&e);
    return rc;
}

static int cmd_providers(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "new") == 0)
        return kit_new(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "docs") == 0)
        return kit_docs(argc - 1, argv + 1);
    static const struct option opts[] = {COMMON_OPTIONS, {0, 0, 0, 0}};
    common c = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int handled = common_option(&c, opt, optarg);
        if (handled < 0)
            return EXIT_USAGE;
        if (!handled && opt == OPT_HELP) {
            printf("%s%s", providers_help, common_help);
            return 0;
        }
        if (!handled) {
            fprintf(stderr, "%s", providers_help);
            return EXIT_USAGE;
        }
    }
    if (common_finish(&c, "error") < 0 || optind >= argc) {
        fprintf(stderr, "%s", providers_help);
        return EXIT_USAGE;
    }
    const char *sub = argv[optind];
    if (strcmp(sub, "list") == 0 && optind + 1 == argc)
        return providers_list(&c);
    if (strcmp(sub, "check") == 0 && optind + 1 < argc)
        return providers_check(argc - optind - 1, argv + optind + 1, &c);
    fprintf(stderr, "%s", providers_help);
    return EXIT_USAGE;
}

/* ---- tool call ---- */

static const char tool_help[] =
    "usage: ferry tool call NAME 'JSON' [--connection ID] [--user NAME --team NAME] [options]\n"
    "Runs one tool in this process and prints its JSON result; on failure prints\n"
    "the error JSON and exits 1.\n";

typedef struct cli_call {
    int done;
    int ok;
    json_t *out;
} cli_call;

static void on_cli_call_done(void *arg, const call_result *r)
{
    cli_call *cc = arg;
    cc->done = 1;
    cc->ok = r->err == NULL;
    cc->out = r->err ? ferr_to_json(r->err)
                     : json_pack("{s:O, s:f}", "result", r->result, "duration_ms", r->duration_ms);
}

static int print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    printf("%s\n", s ? s : "null");
    free(s);
    return 0;
}

static int cmd_tool(int argc, char **argv)
{
    static const struct option opts[] = {COMMON_OPTIONS,
                                         {"connection", required_argument, 0, OPT_CONNECTION},
                                         {"user", required_argument, 0, OPT_USER},
                                         {"team", required_argument, 0, OPT_TEAM},
                                         {0, 0, 0, 0}};
    common c = {0};
    const char *connection = NULL, *user = NULL, *team = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int handled = common_option(&c, opt, optarg);
        if (handled < 0)
            return EXIT_USAGE;
        if (handled)
            continue;
        switch (opt) {
        case OPT_CONNECTION: connection = optarg; break;
        case OPT_USER: user = optarg; break;
        case OPT_TEAM: team = optarg; break;
        case OPT_HELP: printf("%s%s", tool_help, common_help); return 0;
        default: fprintf(stderr, "%s", tool_help); return EXIT_USAGE;
        }
    }
    if (optind + 3 != argc || strcmp(argv[optind], "call") != 0 || (!user) != (!team)) {
        fprintf(stderr, "%s", tool_help);
        return EXIT_USAGE;
    }
    if (common_finish(&c, "warn") < 0)
        return EXIT_USAGE;
    c.cfg.oauth_refresh_interval_s = -1;   /* refreshes on demand only */
    json_error_t jerr;
    json_t *args = json_loads(argv[optind + 2], JSON_REJECT_DUPLICATES, &jerr);
    if (!args) {
        ferr e = {0};
        ferr_set(&e, FERR_BAD_REQUEST, "arguments are not valid JSON: %s", jerr.text);
        json_t *out = ferr_to_json(&e);
        print_json(out);
        json_decref(out);
        ferr_clear(&e);
        return EXIT_USER;
    }
    app a;
    ferr e = {0};
    int rc = EXIT_USER;
    principal who;
    const principal *whop = NULL;
    if (app_open(&a, &c.cfg, &e) < 0)
        goto out;
    if (user) {
        int found = store_principal_find(a.db, user, team, &who);
        if (found != 0) {
            ferr_set(&e, FERR_NOT_FOUND, "no user %s in team %s", user, team);
            goto out;
        }
        whop = &who;
    }
    char request_id[17];
    log_new_request_id(request_id);
    cli_call cc = {0};
    call_request req = {.tool = argv[optind + 1], .arguments = args, .connection_id = connection, .who = whop,
                        .request_id = request_id};
    if (calls_start(a.calls, &req, on_cli_call_done, &cc, &e) < 0)
        goto out;
    app_run_until(&a, &cc.done);
    print_json(cc.out);
    json_decref(cc.out);
    rc = cc.ok ? 0 : EXIT_USER;
out:
    if (e.code) {
        json_t *err = ferr_to_json(&e);
        print_json(err);
        json_decref(err);
    }
    app_close(&a);
    json_decref(args);
    ferr_clear(&e);
    return rc;
}

/* ---- connections ---- */

static const char connections_help[] =
    "usage: ferry connections add --user NAME --team NAME --integration SLUG --credentials-file F\n"
    "                             [--scope user|team] [--label L] [--settings JSON] [--data DIR]\n"
    "       ferry connections list --user NAME --team NAME [--data DIR]\n"
    "       ferry connections remove ID --user NAME --team NAME [--data DIR]\n"
    "add reads the credentials as a JSON object from F (\"-\" for standard input),\n"
    "never from the command line, where other users could see them.\n";

static char *read_stream(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (cap - n < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf) {
        buf[n] = 0;
        *len = n;
    }
    return buf;
}

static int print_connection(const store_connection *c)
{
    json_t *j = connections_to_json(c, 0);
    print_json(j);
    json_decref(j);
    return 0;
}

static void print_listed(void *ud, const store_connection *c)
{
    (void)ud;
    printf("%-22s %-24s %-5s %-18s %s\n", c->id, c->integration, c->scope, c->status,
           c->account_label[0] ? c->account_label : c->label);
}

static int cmd_connections(int argc, char **argv)
{
    enum { OPT_INTEGRATION = 2000, OPT_CREDS, OPT_SCOPE, OPT_LABEL, OPT_SETTINGS };
    static const struct option opts[] = {COMMON_OPTIONS,
                                         {"user", required_argument, 0, OPT_USER},
                                         {"team", required_argument, 0, OPT_TEAM},
                                         {"integration", required_argument, 0, OPT_INTEGRATION},
                                         {"credentials-file", required_argument, 0, OPT_CREDS},
                                         {"scope", required_argument, 0, OPT_SCOPE},
                                         {"label", required_argument, 0, OPT_LABEL},
                                         {"settings", required_argument, 0, OPT_SETTINGS},
                                         {0, 0, 0, 0}};
    common c = {0};
    const char *user = NULL, *team = NULL, *integration = NULL, *creds_file = NULL, *scope = NULL, *label = NULL,
               *settings_text = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int handled = common_option(&c, opt, optarg);
        if (handled < 0)
            return EXIT_USAGE;
        if (handled)
            continue;
        switch (opt) {
        case OPT_USER: user = optarg; break;
        case OPT_TEAM: team = optarg; break;
        case OPT_INTEGRATION: integration = optarg; break;
        case OPT_CREDS: creds_file = optarg; break;
        case OPT_SCOPE: scope = optarg; break;
        case OPT_LABEL: label = optarg; break;
        case OPT_SETTINGS: settings_text = optarg; break;
        case OPT_HELP: printf("%s%s", connections_help, common_help); return 0;
        default: fprintf(stderr, "%s", connections_help); return EXIT_USAGE;
        }
    }
    if (optind >= argc || !user || !team) {
        fprintf(stderr, "%s", connections_help);
        return EXIT_USAGE;
    }
    const char *sub = argv[optind];
    int add = strcmp(sub, "add") == 0, list = strcmp(sub, "list") == 0, remove = strcmp(sub, "remove") == 0;
    if (!(add && optind + 1 == argc && integration && creds_file) && !(list && optind + 1 == argc) &&
        !(remove && optind + 2 == argc)) {
        fprintf(stderr, "%s", connections_help);
        return EXIT_USAGE;
    }
    if (common_finish(&c, "warn") < 0)
        return EXIT_USAGE;
    c.cfg.oauth_refresh_interval_s = -1;
    app a;
    ferr e = {0};
    int rc = EXIT_USER;
    json_t *creds = NULL, *settings = NULL;
    principal who;
    if (app_open(&a, &c.cfg, &e) < 0)
        goto out;
    if (store_principal_find(a.db, user, team, &who) != 0) {
        ferr_set(&e, FERR_NOT_FOUND, "no user %s in team %s (ferry keys create makes them)", user, team);
        goto out;
    }
    if (list) {
        rc = store_connections_list(a.db, who.team_id, who.user_id, print_listed, NULL, &e) < 0 ? EXIT_USER : 0;
    } else if (remove) {
        rc = connections_delete(a.db, a.vault, &who, argv[optind + 1], &e) < 0 ? EXIT_USER : 0;
    } else {
        FILE *f = strcmp(creds_file, "-") == 0 ? stdin : fopen(creds_file, "rb");
        size_t len = 0;
        char *text = f ? read_stream(f, &len) : NULL;
        if (f && f != stdin)
            fclose(f);
        json_error_t jerr;
        creds = text ? json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
        if (text) {
            vault_wipe(text, len);
            free(text);
        }
        settings = settings_text ? json_loads(settings_text, 0, &jerr) : NULL;
        if (!creds || (settings_text && !settings)) {
            ferr_set(&e, FERR_BAD_REQUEST, "%s is not a JSON object", !creds ? creds_file : "--settings");
            goto out;
        }
        connection_spec spec = {.integration = integration, .credentials = creds, .settings = settings,
                                .scope = scope, .label = label};
        store_connection conn;
        if (connections_create(a.db, a.vault, a.providers, &who, &spec, &conn, &e) == 0) {
            print_connection(&conn);
            store_connection_clear(&conn);
            rc = 0;
        }
    }
out:
    if (e.code)
        fprintf(stderr, "ferry: %s\n", e.message);
    json_decref(creds);
    json_decref(settings);
    app_close(&a);
    ferr_clear(&e);
    return rc;
}

/* ---- oauth ---- */

static const char oauth_help[] =
    "usage: ferry oauth set-client SLUG --client-id ID --client-secret SECRET|-\n"
    "                             [--authorize-url U --token-url U --revoke-url U] [--team NAME]\n"
    "Sets the OAuth client ferry uses for an integration: every team's default, or\n"
    "one team's own with --team. The secret is sealed in the vault; '-' reads it from\n"
    "standard input (keeps it out of the process list). The URLs override the\n"
    "provider's (a self-hosted identity provider); set here they may point at private\n"
    "addresses. Register <public URL>/oauth/callback as the redirect URI.\n";

/* The first line of standard input, without its line ending. */
static char *read_secret_line(void)
{
    char buf[4200];
    if (!fgets(buf, sizeof buf, stdin))
        return NULL;
    buf[strcspn(buf, "\r\n")] = 0;
    char *out = strdup(buf);
    vault_wipe(buf, sizeof buf);
    return out;
}

static int cmd_oauth(int argc, char **argv)
{
    static const struct option opts[] = {COMMON_OPTIONS,
                                         {"client-id", required_argument, 0, OPT_CLIENT_ID},
                                         {"client-secret", required_argument, 0, OPT_CLIENT_SECRET},
                                         {"authorize-url", required_argument, 0, OPT_AUTHORIZE_URL},
                                         {"token-url", required_argument, 0, OPT_TOKEN_URL},
                                         {"revoke-url", required_argument, 0, OPT_REVOKE_URL},
                                         {"team", required_argument, 0, OPT_TEAM},
                                         {0, 0, 0, 0}};
    common c = {0};
    oauth_client_spec spec = {0};
    const char *team = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int handled = common_option(&c, opt, optarg);
        if (handled < 0)
            return EXIT_USAGE;
        if (handled)
            continue;
        switch (opt) {
        case OPT_CLIENT_ID: spec.client_id = optarg; break;
        case OPT_CLIENT_SECRET: spec.client_secret = optarg; break;
        case OPT_AUTHORIZE_URL: spec.authorize_url = optarg; break;
        case OPT_TOKEN_URL: spec.token_url = optarg; break;
        case OPT_REVOKE_URL: spec.revoke_url = optarg; break;
        case OPT_TEAM: team = optarg; break;
        case OPT_HELP: printf("%s%s", oauth_help, common_help); return 0;
        default: fprintf(stderr, "%s", oauth_help); return EXIT_USAGE;
        }
    }
    if (optind + 2 != argc || strcmp(argv[optind], "set-client") != 0 || !spec.client_id || !spec.client_secret) {
        fprintf(stderr, "%s", oauth_help);
        return EXIT_USAGE;
    }
    if (common_finish(&c, "warn") < 0)
        return EXIT_USAGE;
    c.cfg.oauth_refresh_interval_s = -1;
    char *secret = NULL;
    if (strcmp(spec.client_secret, "-") == 0) {
        secret = read_secret_line();
        if (!secret || !*secret) {
            fprintf(stderr, "ferry oauth: no client secret on standard input\n");
            free(secret);
            return EXIT_USER;
        }
        spec.client_secret = secret;
    }
    app a;
    ferr e = {0};
    int rc = EXIT_USER;
    int64_t team_id = 0;
    if (app_open(&a, &c.cfg, &e) < 0)
        goto out;
    if (team) {
        int found = store_team_find(a.db, team, &team_id);
        if (found != 0) {
            ferr_set(&e, FERR_NOT_FOUND, "no team %s", team);
            goto out;
        }
    }
    if (oauth_set_client(a.db, a.vault, a.providers, team_id, argv[optind + 1], &spec, 1, &e) < 0)
        goto out;
    audit_row row = {.team_id = team_id, .team = team, .integration = argv[optind + 1],
                     .operation = "oauth.set_client", .access = "write", .outcome = "ok", .http_status = 200,
                     .detail = spec.client_id};
    if (audit_event(a.audit, &row, &e) < 0)
        goto out;
    fprintf(stderr, "OAuth client for %s set%s%s; redirect URI: <public URL>/oauth/callback\n", argv[optind + 1],
            team ? " for team " : " as the default for every team", team ? team : "");
    rc = 0;
out:
    if (e.code)
        fprintf(stderr, "ferry: %s\n", e.message);
    app_close(&a);
    ferr_clear(&e);
    if (secret) {
        vault_wipe(secret, strlen(secret));
        free(secret);
    }
    return rc;
}

/* ---- vault ---- */

static int cmd_vault(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, 0, OPT_DATA},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    static const char help[] =
        "usage: ferry vault rotate [--data DIR]\n"
        "Creates a new master key and re-wraps every connection's data key with it, in\n"
        "one transaction; ferry serve keeps answering. With a key file the new key\n"
        "replaces it; with FERRY_MASTER_KEY the new key is printed, to be set before\n"
        "ferry next starts.\n";
    const char *data = "./ferry-data";
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == OPT_DATA)
            data = optarg;
        else if (opt == OPT_HELP) {
            printf("%s", help);
            return 0;
        } else {
            fprintf(stderr, "%s", help);
            return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc || strcmp(argv[optind], "rotate") != 0) {
        fprintf(stderr, "%s", help);
        return EXIT_USAGE;
    }
    log_set_level(LOG_WARN);
    store *db = NULL;
    ferr e = {0};
    char fresh[65];
    int from_env = 0, rc = 0;
    if (store_open(data, &db, NULL, NULL, &e) < 0 || vault_rotate(data, db, fresh, &from_env, &e) < 0) {
        rc = user_error(&e);
    } else if (from_env) {
        printf("%s\n", fresh);
        fprintf(stderr, "rotated; set FERRY_MASTER_KEY to the key above before ferry next starts "
                        "(a running serve needs a restart with it)\n");
    } else {
        fprintf(stderr, "rotated; %s/master.key holds the new key\n", data);
    }
    vault_wipe(fresh, sizeof fresh);
    store_close(db);
    ferr_clear(&e);
    return rc;
}

/* ---- migrate ---- */

static int cmd_migrate(int argc, char **argv)
{
    static const struct option opts[] = {{"data", required_argument, 0, OPT_DATA},
                                         {"help", no_argument, 0, OPT_HELP},
                                         {0, 0, 0, 0}};
    const char *data = "./ferry-data";
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (opt == OPT_DATA)
            data = optarg;
        else if (opt == OPT_HELP) {
            printf("usage: ferry migrate [--data DIR]\nApplies store migrations and exits.\n");
            return 0;
        } else
            return EXIT_USAGE;
    }
    if (optind != argc)
        return EXIT_USAGE;
    log_set_level(LOG_WARN);
    store *db = NULL;
    ferr e = {0};
    int from = 0, to = 0;
    if (store_open(data, &db, &from, &to, &e) < 0) {
        int rc = user_error(&e);
        ferr_clear(&e);
        return rc;
    }
    store_close(db);
    if (from == to)
        printf("schema is at version %d; nothing to do\n", to);
    else
        printf("migrated schema from version %d to %d\n", from, to);
    return 0;
}

/* ---- syncs and search ---- */

static const char syncs_help[] =
    "usage: ferry syncs list --user NAME --team NAME [--connection ID]\n"
    "       ferry syncs show CONNECTION SYNC --user NAME --team NAME\n"
    "       ferry syncs run CONNECTION SYNC [--user NAME --team NAME]\n"
    "list and show print sync jobs (cursor, records, last run) as JSON; run runs one\n"
    "sync now in this process, waits for it and prints the run (exit 1 unless it\n"
    "succeeded, or when a run already holds it, here or in a serving ferry).\n";

typedef struct cli_sync {
    int ended;
} cli_sync;

static void on_cli_sync_end(void *ud, const char *run_id)
{
    (void)run_id;
    ((cli_sync *)ud)->ended = 1;
}

static int cmd_syncs(int argc, char **argv)
{
    static const struct option opts[] = {COMMON_OPTIONS, SYNC_OPTIONS,
                                         {"user", required_argument, 0, OPT_USER},
                                         {"team", required_argument, 0, OPT_TEAM},
                                         {"connection", required_argument, 0, OPT_CONNECTION},
                                         {0, 0, 0, 0}};
    common c = {0};
    const char *user = NULL, *team = NULL, *connection = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int handled = common_option(&c, opt, optarg);
        if (!handled)
            handled = sync_option(&c, opt, optarg);
        if (handled < 0)
            return EXIT_USAGE;
        if (handled)
            continue;
        switch (opt) {
        case OPT_USER: user = optarg; break;
        case OPT_TEAM: team = optarg; break;
        case OPT_CONNECTION: connection = optarg; break;
        case OPT_HELP: printf("%s%s%s", syncs_help, sync_help, common_help); return 0;
        default: fprintf(stderr, "%s", syncs_help); return EXIT_USAGE;
        }
    }
    const char *sub = optind < argc ? argv[optind] : "";
    int list = strcmp(sub, "list") == 0 && optind + 1 == argc;
    int show = strcmp(sub, "show") == 0 && optind + 3 == argc;
    int run = strcmp(sub, "run") == 0 && optind + 3 == argc;
    if ((!list && !show && !run) || (!user) != (!team) || (!run && !user)) {
        fprintf(stderr, "%s", syncs_help);
        return EXIT_USAGE;
    }
    if (common_finish(&c, "warn") < 0)
        return EXIT_USAGE;
    c.cfg.oauth_refresh_interval_s = -1;
    app a;
    ferr e = {0};
    int rc = EXIT_USER;
    principal who;
    json_t *out = NULL;
    if (app_open(&a, &c.cfg, &e) < 0)
        goto done;
    if (user && store_principal_find(a.db, user, team, &who) != 0) {
        ferr_set(&e, FERR_NOT_FOUND, "no user %s in team %s", user, team);
        goto done;
    }
    if (list) {
        out = syncs_list(a.syncs, &who, connection, &e);
        rc = out ? 0 : EXIT_USER;
    } else if (show) {
        out = syncs_get(a.syncs, &who, argv[optind + 1], argv[optind + 2], 20, &e);
        rc = out ? 0 : EXIT_USER;
    } else {
        cli_sync st = {0};
        syncs_on_end(a.syncs, on_cli_sync_end, &st);
        json_t *started = NULL;
        if (syncs_run_now(a.syncs, user ? &who : NULL, argv[optind + 1], argv[optind + 2], &started, &e) < 0)
            goto done;
        json_t *runj = json_object_get(started, "run");
        char run_id[40];
        snprintf(run_id, sizeof run_id, "%s", json_string_value(json_object_get(runj, "id")));
        if (!json_is_true(json_object_get(started, "started"))) {
            fprintf(stderr, "ferry: run %s of this sync is in progress already\n", run_id);
            out = started;
            goto done;
        }
        json_decref(started);
        app_run_until(&a, &st.ended);
        store_sync_run rec;
        if (store_sync_run_get(a.db, run_id, &rec, &e) == 0) {
            out = json_pack("{s:o}", "run", syncs_run_json(&rec));
            rc = strcmp(rec.status, "succeeded") == 0 ? 0 : EXIT_USER;
        }
    }
done:
    if (out)
        print_json(out);
    json_decref(out);
    if (e.code)
        fprintf(stderr, "ferry: %s\n", e.message);
    app_close(&a);
    ferr_clear(&e);
    return rc;
}

static const char search_help[] =
    "usage: ferry search 'WORDS' --user NAME --team NAME [--category C] [--integration SLUG] [--limit N]\n"
    "Searches synced records as that user would (their permissions apply) and\n"
    "prints the ranked hits as JSON.\n";

static int cmd_search(int argc, char **argv)
{
    static const struct option opts[] = {COMMON_OPTIONS,
                                         {"user", required_argument, 0, OPT_USER},
                                         {"team", required_argument, 0, OPT_TEAM},
                                         {"category", required_argument, 0, OPT_CATEGORY},
                                         {"integration", required_argument, 0, OPT_INTEGRATION_FILTER},
                                         {"limit", required_argument, 0, OPT_LIMIT},
                                         {0, 0, 0, 0}};
    common c = {0};
    const char *user = NULL, *team = NULL;
    search_request req = {0};
    int opt;
    long v;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int handled = common_option(&c, opt, optarg);
        if (handled < 0)
            return EXIT_USAGE;
        if (handled)
            continue;
        switch (opt) {
        case OPT_USER: user = optarg; break;
        case OPT_TEAM: team = optarg; break;
        case OPT_CATEGORY: req.category = optarg; break;
        case OPT_INTEGRATION_FILTER: req.integration = optarg; break;
        case OPT_LIMIT:
            if ((v = parse_positive(optarg, "--limit")) < 0)
                return EXIT_USAGE;
            req.limit = (int)v;
            break;
        case OPT_HELP: printf("%s%s", search_help, common_help); return 0;
        default: fprintf(stderr, "%s", search_help); return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc || !user || !team) {
        fprintf(stderr, "%s", search_help);
        return EXIT_USAGE;
    }
    req.q = argv[optind];
    if (common_finish(&c, "warn") < 0)
        return EXIT_USAGE;
    c.cfg.oauth_refresh_interval_s = -1;
    app a;
    ferr e = {0};
    int rc = EXIT_USER;
    principal who;
    if (app_open(&a, &c.cfg, &e) == 0) {
        if (store_principal_find(a.db, user, team, &who) != 0)
            ferr_set(&e, FERR_NOT_FOUND, "no user %s in team %s", user, team);
        else {
            json_t *out = search_run(a.db, a.policy, a.providers, &who, &req, &e);
            if (out) {
                print_json(out);
                json_decref(out);
                rc = 0;
            }
        }
    }
    if (e.code)
        fprintf(stderr, "ferry: %s\n", e.message);
    app_close(&a);
    ferr_clear(&e);
    return rc;
}

static const char main_help[] =
    "usage: ferry COMMAND [options]   (ferry COMMAND --help for more)\n"
    "  serve                      serve the HTTP API\n"
    "  keys create|revoke         manage API keys\n"
    "  providers list|check|new|docs  list, validate, start or document providers\n"
    "  tool call NAME 'JSON'      run one tool locally and print its result\n"
    "  connections add|list|remove  manage connections to integrations\n"
    "  oauth set-client SLUG      set an integration's OAuth client\n"
    "  syncs list|show|run        sync jobs: their state, and running one now\n"
    "  search 'WORDS'             search synced records as a user\n"
    "  vault rotate               new master key, every data key re-wrapped\n"
    "  migrate                    apply store migrations and exit\n"
    "  version                    print the version\n";

int main(int argc, char **argv)
{
    /* Everything ferry writes (the database, its WAL, the master key) is
     * for its own user only. */
    umask(077);
    if (argc < 2) {
        fprintf(stderr, "%s", main_help);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    /* Commands parse their own options from argv[1] on. */
    argc--;
    argv++;
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc, argv);
    if (strcmp(cmd, "keys") == 0)
        return cmd_keys(argc, argv);
    if (strcmp(cmd, "providers") == 0)
        return cmd_providers(argc, argv);
    if (strcmp(cmd, "tool") == 0)
        return cmd_tool(argc, argv);
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(argc, argv);
    if (strcmp(cmd, "connections") == 0)
        return cmd_connections(argc, argv);
    if (strcmp(cmd, "vault") == 0)
        return cmd_vault(argc, argv);
    if (strcmp(cmd, "oauth") == 0)
        return cmd_oauth(argc, argv);
    if (strcmp(cmd, "syncs") == 0)
        return cmd_syncs(argc, argv);
    if (strcmp(cmd, "search") == 0)
        return cmd_search(argc, argv);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("ferry %s\n", FERRY_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        printf("%s", main_help);
        return 0;
    }
    fprintf(stderr, "ferry: unknown command '%s'\n%s", cmd, main_help);
    return EXIT_USAGE;
}
