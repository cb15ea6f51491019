#include "app.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <curl/curl.h>

#include "log.h"
#include "metrics.h"

#define DEFAULT_DRAIN_MS 10000u
#define DRAIN_POLL_MS 20
#define FLUSH_GRACE_MS 500

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Thousands of calls in flight need thousands of sockets each way. Returns
 * the limit now in force. */
static size_t raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur == RLIM_INFINITY ? 1u << 20 : (size_t)rl.rlim_cur;
}

int app_open(app *a, const app_config *cfg, ferr *err)
{
    memset(a, 0, sizeof *a);
    a->cfg = *cfg;
    if (!a->cfg.data_dir)
        a->cfg.data_dir = "./ferry-data";
    if (!a->cfg.listen)
        a->cfg.listen = "127.0.0.1:8700";
    if (!a->cfg.drain_timeout_ms)
        a->cfg.drain_timeout_ms = DEFAULT_DRAIN_MS;
    signal(SIGPIPE, SIG_IGN);
    size_t fds = raise_fd_limit();
    /* A call in flight may hold a socket from its client and one to its
     * upstream: past half the descriptors, a clean 429 beats a failure to
     * accept or connect. */
    if (!a->cfg.max_in_flight)
        a->cfg.max_in_flight = fds / 2 < 20000 ? fds / 2 : 20000;
    curl_global_init(CURL_GLOBAL_DEFAULT);

    a->base = event_base_new();
    if (!a->base)
        return ferr_set(err, FERR_INTERNAL, "cannot create the event loop");
    if (store_open(a->cfg.data_dir, &a->db, NULL, NULL, err) < 0)
        return -1;
    if (a->cfg.db_busy_timeout_ms > 0)
        store_set_busy_timeout(a->db, a->cfg.db_busy_timeout_ms);
    if (vault_open(a->cfg.data_dir, a->db, &a->vault, err) < 0)
        return -1;
    providers_options po = {
        .dirs = a->cfg.provider_dirs,
        .base_urls = a->cfg.base_urls,
        .limits = {.memory_bytes = a->cfg.script_memory, .cpu_ms = a->cfg.script_cpu_ms},
    };
    lhost_set_module_dirs(a->cfg.provider_dirs);
    if (providers_load(&po, &a->providers, err) < 0)
        return -1;
    hclient_config hc = {.max_response_bytes = a->cfg.max_response, .ca_file = a->cfg.ca_file};
    a->http = hclient_new(a->base, &hc);
    a->budget = budget_new();
    a->log = calllog_new(a->db, a->base);
    a->audit = audit_new(a->db, a->base);
    /* Defaults documented in docs/governance.md: per user 10 calls/s with
     * bursts of 50, per team 50/s with bursts of 200, per integration. */
    policy_config pc = {.defaults = a->cfg.rates};
    if (pc.defaults.user_rate < 0)
        pc.defaults = (rate_policy){.user_rate = 10, .user_burst = 50, .team_rate = 50, .team_burst = 200};
    a->policy = policy_new(a->db, a->base, &pc);
    if (!a->http || !a->log || !a->audit || !a->policy)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    oauth_deps od = {.base = a->base, .db = a->db, .vault = a->vault, .providers = a->providers, .http = a->http,
                     .audit = a->audit, .refresh_margin_s = a->cfg.oauth_refresh_margin_s,
                     .refresh_interval_s = a->cfg.oauth_refresh_interval_s};
    a->oauth = oauth_new(&od);
    if (!a->oauth)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    /* Approved MCP servers join the provider index before anything looks
     * tools up. */
    mcpc_registry_config mc = {.base = a->base, .db = a->db, .vault = a->vault, .http = a->http,
                               .providers = a->providers, .audit = a->audit,
                               .allow_private = a->cfg.mcp_allow_private,
                               .stdio_commands = a->cfg.mcp_stdio_commands, .background = a->cfg.mcp_background,
                               .data_dir = a->cfg.data_dir};
    a->mcpc = mcpc_registry_new(&mc, err);
    if (!a->mcpc)
        return -1;
    if (a->cfg.public_url)
        oauth_set_public_url(a->oauth, a->cfg.public_url);
    calls_config cc = {
        .providers = a->providers,
        .svc = {.base = a->base, .http = a->http, .db = a->db, .budget = a->budget, .vault = a->vault,
                .oauth = a->oauth},
        .log = a->log,
        .vault = a->vault,
        .audit = a->audit,
        .max_in_flight = a->cfg.max_in_flight,
    };
    a->calls = calls_new(&cc);
    if (!a->calls)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    a->approvals = approvals_new(a->db, a->vault, a->audit, a->calls, a->providers, a->policy, a->base,
                                 a->cfg.approval_ttl_seconds);
    if (!a->approvals)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    sched_config sc = {.base = a->base, .db = a->db, .tick_ms = a->cfg.sched_tick_ms,
                       .lease_ms = a->cfg.sync_lease_ms, .max_running = a->cfg.sync_concurrency,
                       .backoff_base_ms = a->cfg.sync_backoff_ms};
    a->sched = sched_new(&sc);
    if (!a->sched)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    syncs_config yc = {
        .providers = a->providers,
        .svc = cc.svc,
        .vault = a->vault,
        .audit = a->audit,
        .sched = a->sched,
        .chunk_size = a->cfg.chunk_size,
        .chunk_overlap = a->cfg.chunk_overlap == 0 ? -1 : a->cfg.chunk_overlap < 0 ? 0 : a->cfg.chunk_overlap,
        .max_attempts = a->cfg.sync_attempts,
        .retry_base_ms = a->cfg.sync_retry_ms,
        .slice_ms = a->cfg.script_cpu_ms,
    };
    a->syncs = syncs_new(&yc);
    if (!a->syncs)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    a->agent = (agent_deps){.db = a->db, .providers = a->providers, .calls = a->calls, .policy = a->policy,
                            .approvals = a->approvals};
    return 0;
}

/* Ends the calls still running; their answers still get written, for a
 * short grace period, before the loop stops. */
static void abort_calls(app *a)
{
    log_line *l = log_begin(LOG_WARN, "drain timed out; ending calls still running");
    log_int(l, "calls", (long long)calls_in_flight(a->calls));
    log_end(l);
    calls_abort_all(a->calls, FERR_INTERNAL, "ferry is shutting down");
    a->aborted = 1;
    a->drain_deadline_ms = now_ms() + FLUSH_GRACE_MS;
}

static void on_drain_tick(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    app *a = arg;
    if (calls_in_flight(a->calls) == 0 && hserver_open_requests(a->server) == 0) {
        event_base_loopbreak(a->base);
        return;
    }
    if (now_ms() >= a->drain_deadline_ms) {
        if (a->aborted) {
            event_base_loopbreak(a->base);
            return;
        }
        abort_calls(a);
    }
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    evtimer_add(a->drain_timer, &tv);
}

static void on_signal(evutil_socket_t sig, short events, void *arg)
{
    (void)events;
    app *a = arg;
    if (a->draining) {
        /* A second signal: stop waiting for calls. */
        if (!a->aborted)
            abort_calls(a);
        return;
    }
    a->draining = 1;
    /* Sync runs stop now, not when they finish: what they have not
     * checkpointed is replayed by the next run, which may start at once in
     * another process. */
    sched_stop(a->sched, "ferry is shutting down");
    log_line *l = log_begin(LOG_INFO, "draining");
    log_str(l, "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    log_int(l, "calls_in_flight", (long long)calls_in_flight(a->calls));
    log_int(l, "timeout_ms", a->cfg.drain_timeout_ms);
    log_end(l);
    hserver_drain(a->server);
    a->drain_deadline_ms = now_ms() + a->cfg.drain_timeout_ms;
    on_drain_tick(-1, 0, a);
}

int app_serve(app *a, ferr *err)
{
    hserver_config hc = {.listen = a->cfg.listen, .max_body = a->cfg.max_body,
                         .metrics_public = a->cfg.metrics_public};
    a->server = hserver_new(a->base, a->db, &hc, a, err);
    if (!a->server)
        return -1;
    api_register(a->server);
    api_connections_register(a->server);
    api_context_register(a->server);
    api_governance_register(a->server);
    api_oauth_register(a->server);
    mcp_server_config mc = {.allowed_origins = a->cfg.mcp_allowed_origins,
                            .listen_address = hserver_address(a->server), .public_url = a->cfg.public_url,
                            .page_size = a->cfg.mcp_page_size};
    a->mcp = mcp_server_new(&a->agent, &mc, err);
    if (!a->mcp)
        return -1;
    mcp_server_register(a->server);
    api_syncs_register(a->server);
    /* Token refreshes and MCP servers' periodic syncs are jobs too, each
     * kind with its own limit of runs at once (docs/sync.md). */
    if (oauth_schedule(a->oauth, a->sched, err) < 0 || mcpc_registry_schedule(a->mcpc, a->sched, err) < 0 ||
        syncs_start(a->syncs, err) < 0 || sched_start(a->sched, err) < 0)
        return -1;
    api_mcp_servers_register(a->server);
    if (!a->cfg.public_url) {
        char url[300];
        snprintf(url, sizeof url, "http://%s", hserver_address(a->server));
        oauth_set_public_url(a->oauth, url);
    }
    a->sigint = evsignal_new(a->base, SIGINT, on_signal, a);
    a->sigterm = evsignal_new(a->base, SIGTERM, on_signal, a);
    a->drain_timer = evtimer_new(a->base, on_drain_tick, a);
    evsignal_add(a->sigint, NULL);
    evsignal_add(a->sigterm, NULL);

    size_t ntools = 0;
    for (size_t i = 0; i < providers_count(a->providers); i++)
        ntools += providers_at(a->providers, i)->ntools;
    log_line *l = log_begin_always(LOG_INFO, "listening");
    log_str(l, "addr", hserver_address(a->server));
    log_str(l, "version", FERRY_VERSION);
    log_str(l, "data", a->cfg.data_dir);
    log_str(l, "oauth_redirect_uri", oauth_redirect_uri(a->oauth));
    log_int(l, "providers", (long long)providers_count(a->providers));
    log_int(l, "providers_skipped", (long long)json_array_size(providers_broken(a->providers)));
    log_int(l, "tools", (long long)ntools);
    log_end(l);

    event_base_dispatch(a->base);
    log_msg(LOG_INFO, "stopped");
    return 0;
}

static void on_check_done(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    (void)arg;
}

void app_run_until(app *a, const int *done)
{
    /* A periodic no-op timer makes the loop come back often enough to
     * notice *done without busy-waiting. */
    struct event *tick = event_new(a->base, -1, EV_PERSIST, on_check_done, NULL);
    struct timeval tv = {0, 10000};
    event_add(tick, &tv);
    while (!*done)
        event_base_loop(a->base, EVLOOP_ONCE);
    event_free(tick);
}

void app_close(app *a)
{
    if (a->sigint)
        event_free(a->sigint);
    if (a->sigterm)
        event_free(a->sigterm);
    if (a->drain_timer)
        event_free(a->drain_timer);
    /* Sync runs first (they stop, and record how), then the scheduler. */
    syncs_free(a->syncs);
    sched_free(a->sched);
    /* Calls next: ending one answers its HTTP request, which must still
     * exist. */
    calls_free(a->calls);
    /* MCP syncs an admin waits for answer; server processes are stopped. */
    mcpc_registry_free(a->mcpc);
    /* Then sign-ins still exchanging their code: they answer too. */
    oauth_free(a->oauth);
    hserver_free(a->server);
    /* After the calls and requests it answers. */
    mcp_server_free(a->mcp);
    approvals_free(a->approvals);
    audit_free(a->audit);
    policy_free(a->policy);
    calllog_free(a->log);
    hclient_free(a->http);
    budget_free(a->budget);
    providers_free(a->providers);
    vault_close(a->vault);
    store_close(a->db);
    if (a->base)
        event_base_free(a->base);
    metrics_reset();
    curl_global_cleanup();
    memset(a, 0, sizeof *a);
}
