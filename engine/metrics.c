#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 2
#define NBUCKETS 14

/* Seconds; covers a fast local call (1 ms) up to the longest deadline. */
static const double bucket_bounds[NBUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,  0.5,    1,     2.5,  5,     10,  30};

typedef enum { COUNTER, GAUGE, HISTOGRAM } family_type;

typedef struct family_def {
    const char *name;
    const char *help;
    family_type type;
    int nlabels;
    const char *labels[MAX_LABELS];
} family_def;

static const family_def defs[METRIC_COUNT] = {
    [METRIC_TOOL_CALLS] = {"ferry_tool_calls_total", "Tool calls by tool and outcome (ok or an error code).",
                           COUNTER, 2, {"tool", "outcome"}},
    [METRIC_TOOL_CALL_SECONDS] = {"ferry_tool_call_duration_seconds", "Tool call latency.", HISTOGRAM, 1,
                                  {"tool"}},
    [METRIC_CALLS_IN_FLIGHT] = {"ferry_tool_calls_in_flight", "Tool calls currently running.", GAUGE, 0, {0}},
    [METRIC_UPSTREAM_REQUESTS] = {"ferry_upstream_requests_total",
                                  "Outbound HTTP requests by host and status (HTTP status or error code).",
                                  COUNTER, 2, {"host", "status"}},
    [METRIC_UPSTREAM_SECONDS] = {"ferry_upstream_request_duration_seconds", "Outbound HTTP request latency.",
                                 HISTOGRAM, 1, {"host"}},
    [METRIC_HTTP_REQUESTS] = {"ferry_http_requests_total", "Requests served by route and status.", COUNTER, 2,
                              {"route", "status"}},
    [METRIC_LUA_MEMORY_BYTES] = {"ferry_lua_memory_bytes", "Memory held by each provider's Lua state.", GAUGE,
                                 1, {"provider"}},
    [METRIC_SYNC_RUNS] = {"ferry_sync_runs_total", "Sync runs by sync (<slug>:sync:<name>) and how they ended.",
                          COUNTER, 2, {"sync", "status"}},
    [METRIC_SYNC_RECORDS] = {"ferry_sync_records_total", "Records committed by syncs: added, updated, deleted.",
                             COUNTER, 2, {"sync", "change"}},
    [METRIC_SYNCS_RUNNING] = {"ferry_syncs_running", "Sync runs in progress in this process.", GAUGE, 0, {0}},
};

typedef struct series {
    char *labels[MAX_LABELS];
    double value;                   /* counter/gauge; histogram sum */
    unsigned long long count;       /* histogram */
    unsigned long long buckets[NBUCKETS];
} series;

typedef struct family {
    series *items;
    size_t n, cap;
} family;

static family families[METRIC_COUNT];

static int same_labels(const series *s, int nl, const char *const *vals)
{
    for (int i = 0; i < nl; i++)
        if (strcmp(s->labels[i], vals[i]) != 0)
            return 0;
    return 1;
}

static series *find(metric_id id, const char *l1, const char *l2, int create)
{
    family *f = &families[id];
    const char *vals[MAX_LABELS] = {l1 ? l1 : "", l2 ? l2 : ""};
    int nl = defs[id].nlabels;
    /* Families hold tens of series, and this runs several times per call:
     * a linear scan comparing labels beats hashing or building keys. */
    for (size_t i = 0; i < f->n; i++)
        if (same_labels(&f->items[i], nl, vals))
            return &f->items[i];
    if (!create)
        return NULL;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        series *items = realloc(f->items, cap * sizeof *items);
        if (!items)
            return NULL;
        f->items = items;
        f->cap = cap;
    }
    series *s = &f->items[f->n];
    memset(s, 0, sizeof *s);
    for (int i = 0; i < nl; i++)
        s->labels[i] = strdup(vals[i]);
    f->n++;
    return s;
}

void metrics_add(metric_id id, double delta, const char *l1, const char *l2)
{
    series *s = find(id, l1, l2, 1);
    if (s)
        s->value += delta;
}

void metrics_set(metric_id id, double value, const char *l1, const char *l2)
{
    series *s = find(id, l1, l2, 1);
    if (s)
        s->value = value;
}

void metrics_observe(metric_id id, double seconds, const char *l1)
{
    series *s = find(id, l1, NULL, 1);
    if (!s)
        return;
    s->value += seconds;
    s->count++;
    for (int i = 0; i < NBUCKETS; i++)
        if (seconds <= bucket_bounds[i])
            s->buckets[i]++;
}

double metrics_get(metric_id id, const char *l1, const char *l2)
{
    series *s = find(id, l1, l2, 0);
    return s ? s->value : 0;
}

static void add_label_value(struct evbuffer *out, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(out, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, v, 1);
    }
}

/* {a="x",b="y"} plus an optional extra label (le for buckets). */
static void add_labels(struct evbuffer *out, const family_def *d, const series *s, const char *extra_name,
                       const char *extra_value)
{
    if (d->nlabels == 0 && !extra_name)
        return;
    evbuffer_add(out, "{", 1);
    for (int i = 0; i < d->nlabels; i++) {
        evbuffer_add_printf(out, "%s%s=\"", i ? "," : "", d->labels[i]);
        add_label_value(out, s->labels[i]);
        evbuffer_add(out, "\"", 1);
    }
    if (extra_name)
        evbuffer_add_printf(out, "%s%s=\"%s\"", d->nlabels ? "," : "", extra_name, extra_value);
    evbuffer_add(out, "}", 1);
}

void metrics_render(struct evbuffer *out)
{
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    for (int id = 0; id < METRIC_COUNT; id++) {
        const family_def *d = &defs[id];
        family *f = &families[id];
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
                            type_names[d->type]);
        if (d->nlabels == 0 && f->n == 0)
            evbuffer_add_printf(out, "%s 0\n", d->name);
        for (size_t i = 0; i < f->n; i++) {
            series *s = &f->items[i];
            if (d->type != HISTOGRAM) {
                evbuffer_add_printf(out, "%s", d->name);
                add_labels(out, d, s, NULL, NULL);
                evbuffer_add_printf(out, " %.17g\n", s->value);
                continue;
            }
            for (int b = 0; b < NBUCKETS; b++) {
                char le[32];
                snprintf(le, sizeof le, "%g", bucket_bounds[b]);
                evbuffer_add_printf(out, "%s_bucket", d->name);
                add_labels(out, d, s, "le", le);
                evbuffer_add_printf(out, " %llu\n", s->buckets[b]);
            }
            evbuffer_add_printf(out, "%s_bucket", d->name);
            add_labels(out, d, s, "le", "+Inf");
            evbuffer_add_printf(out, " %llu\n%s_sum", s->count, d->name);
            add_labels(out, d, s, NULL, NULL);
            evbuffer_add_printf(out, " %.17g\n%s_count", s->value, d->name);
            add_labels(out, d, s, NULL, NULL);
            evbuffer_add_printf(out, " %llu\n", s->count);
        }
    }
}

void metrics_reset(void)
{
    for (int id = 0; id < METRIC_COUNT; id++) {
        family *f = &families[id];
        for (size_t i = 0; i < f->n; i++) {
            for (int l = 0; l < MAX_LABELS; l++)
                free(f->items[i].labels[l]);
        }
        free(f->items);
        memset(f, 0, sizeof *f);
    }
}
