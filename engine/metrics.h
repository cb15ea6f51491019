/* metrics — counters, gauges and histograms kept in memory and rendered in
 * the Prometheus text format for GET /metrics.
 *
 * The set of metric families is fixed here; series (label values) are
 * created on first use. Label values come from bounded sets (tool names,
 * declared hosts, error codes, HTTP statuses), never from user input. */
#ifndef FERRY_METRICS_H
#define FERRY_METRICS_H

#include <stddef.h>

#include <event2/buffer.h>

typedef enum metric_id {
    METRIC_TOOL_CALLS,          /* counter  {tool, outcome} */
    METRIC_TOOL_CALL_SECONDS,   /* histogram {tool} */
    METRIC_CALLS_IN_FLIGHT,     /* gauge */
    METRIC_UPSTREAM_REQUESTS,   /* counter  {host, status} */
    METRIC_UPSTREAM_SECONDS,    /* histogram {host} */
    METRIC_HTTP_REQUESTS,       /* counter  {route, status} */
    METRIC_LUA_MEMORY_BYTES,    /* gauge    {provider} */
    METRIC_SYNC_RUNS,           /* counter  {sync, status} */
    METRIC_SYNC_RECORDS,        /* counter  {sync, change} */
    METRIC_SYNCS_RUNNING,       /* gauge */
    METRIC_COUNT
} metric_id;

/* Adds `delta` to a counter or gauge; labels are values in the family's
 * label order (NULL-terminated list not needed: the count is fixed). */
void metrics_add(metric_id id, double delta, const char *l1, const char *l2);
void metrics_set(metric_id id, double value, const char *l1, const char *l2);
void metrics_observe(metric_id id, double seconds, const char *l1);

/* Current value of a counter/gauge series (tests). */
double metrics_get(metric_id id, const char *l1, const char *l2);

/* Appends the whole exposition to `out`. */
void metrics_render(struct evbuffer *out);

/* Frees every series (at exit, and between unit tests). */
void metrics_reset(void);

#endif
