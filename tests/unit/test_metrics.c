/* test_metrics — the Prometheus exposition: counters per label set,
 * gauges, histogram buckets/sum/count, and label value escaping. Each test
 * ends with metrics_reset() so the next starts from nothing. */
#include "metrics.h"
#include "testutil.h"

#include <event2/buffer.h>

/* The whole exposition as a NUL-terminated string; free() it. */
static char *render(void)
{
    struct evbuffer *b = evbuffer_new();
    metrics_render(b);
    size_t n = evbuffer_get_length(b);
    char *text = malloc(n + 1);
    evbuffer_remove(b, text, n);
    text[n] = 0;
    evbuffer_free(b);
    return text;
}

/* The exposition has this exact line. */
#define CHECK_LINE(text, line) CHECK_CONTAINS(text, "\n" line "\n")
#define CHECK_NO_LINE(text, line)                                                             \
    do {                                                                                      \
        if (strstr(text, "\n" line "\n")) {                                                   \
            fprintf(stderr, "%s:%d: unexpected line: %s\n", __FILE__, __LINE__, line);        \
            tu_failures++;                                                                    \
        }                                                                                     \
    } while (0)

static void counters_are_kept_per_label_set(void)
{
    metrics_add(METRIC_TOOL_CALLS, 1, "sample__echo", "ok");
    metrics_add(METRIC_TOOL_CALLS, 1, "sample__echo", "ok");
    metrics_add(METRIC_TOOL_CALLS, 1, "sample__echo", "invalid_arguments");
    metrics_add(METRIC_TOOL_CALLS, 3, "sample__get", "ok");
    CHECK(metrics_get(METRIC_TOOL_CALLS, "sample__echo", "ok") == 2);
    CHECK(metrics_get(METRIC_TOOL_CALLS, "sample__echo", "invalid_arguments") == 1);
    CHECK(metrics_get(METRIC_TOOL_CALLS, "sample__get", "ok") == 3);
    CHECK(metrics_get(METRIC_TOOL_CALLS, "sample__get", "invalid_arguments") == 0);
    CHECK(metrics_get(METRIC_TOOL_CALLS, "nope", "ok") == 0);
    /* The same values in another family are another series. */
    CHECK(metrics_get(METRIC_HTTP_REQUESTS, "sample__echo", "ok") == 0);

    char *text = render();
    CHECK_CONTAINS(text, "# TYPE ferry_tool_calls_total counter\n");
    CHECK_CONTAINS(text, "# HELP ferry_tool_calls_total ");
    CHECK_LINE(text, "ferry_tool_calls_total{tool=\"sample__echo\",outcome=\"ok\"} 2");
    CHECK_LINE(text, "ferry_tool_calls_total{tool=\"sample__echo\",outcome=\"invalid_arguments\"} 1");
    CHECK_LINE(text, "ferry_tool_calls_total{tool=\"sample__get\",outcome=\"ok\"} 3");
    free(text);
    metrics_reset();
}

static void label_values_do_not_collide(void)
{
    /* ("a", "b c") and ("a b", "c") are different series. */
    metrics_add(METRIC_HTTP_REQUESTS, 1, "a", "b c");
    metrics_add(METRIC_HTTP_REQUESTS, 10, "a b", "c");
    CHECK(metrics_get(METRIC_HTTP_REQUESTS, "a", "b c") == 1);
    CHECK(metrics_get(METRIC_HTTP_REQUESTS, "a b", "c") == 10);
    /* NULL labels read as empty ones. */
    metrics_add(METRIC_HTTP_REQUESTS, 4, NULL, NULL);
    CHECK(metrics_get(METRIC_HTTP_REQUESTS, "", "") == 4);
    metrics_reset();
}

static void counters_accept_fractional_deltas(void)
{
    metrics_add(METRIC_UPSTREAM_REQUESTS, 0.5, "api.example.com", "200");
    metrics_add(METRIC_UPSTREAM_REQUESTS, 0.25, "api.example.com", "200");
    CHECK(metrics_get(METRIC_UPSTREAM_REQUESTS, "api.example.com", "200") == 0.75);
    char *text = render();
    CHECK_LINE(text, "ferry_upstream_requests_total{host=\"api.example.com\",status=\"200\"} 0.75");
    free(text);
    metrics_reset();
}

static void gauges_are_set_and_added(void)
{
    metrics_set(METRIC_LUA_MEMORY_BYTES, 1048576, "sample", NULL);
    metrics_set(METRIC_LUA_MEMORY_BYTES, 2048, "sample", NULL);
    metrics_set(METRIC_LUA_MEMORY_BYTES, 4096, "other", NULL);
    CHECK(metrics_get(METRIC_LUA_MEMORY_BYTES, "sample", NULL) == 2048);
    CHECK(metrics_get(METRIC_LUA_MEMORY_BYTES, "other", NULL) == 4096);

    /* A label-less gauge: up and down. */
    metrics_add(METRIC_CALLS_IN_FLIGHT, 1, NULL, NULL);
    metrics_add(METRIC_CALLS_IN_FLIGHT, 1, NULL, NULL);
    metrics_add(METRIC_CALLS_IN_FLIGHT, -1, NULL, NULL);
    CHECK(metrics_get(METRIC_CALLS_IN_FLIGHT, NULL, NULL) == 1);

    char *text = render();
    CHECK_CONTAINS(text, "# TYPE ferry_lua_memory_bytes gauge\n");
    CHECK_LINE(text, "ferry_lua_memory_bytes{provider=\"sample\"} 2048");
    CHECK_LINE(text, "ferry_lua_memory_bytes{provider=\"other\"} 4096");
    CHECK_CONTAINS(text, "# TYPE ferry_tool_calls_in_flight gauge\n");
    CHECK_LINE(text, "ferry_tool_calls_in_flight 1");
    free(text);
    metrics_reset();
}

static void empty_registry_renders_families_and_zero_gauge(void)
{
    char *text = render();
    /* Every family is announced; a label-less one reads 0 before any use. */
    const char *families[] = {"ferry_tool_calls_total", "ferry_tool_call_duration_seconds",
                              "ferry_tool_calls_in_flight", "ferry_upstream_requests_total",
                              "ferry_upstream_request_duration_seconds", "ferry_http_requests_total",
                              "ferry_lua_memory_bytes", NULL};
    for (const char **f = families; *f; f++) {
        char line[128];
        snprintf(line, sizeof line, "# TYPE %s ", *f);
        CHECK_CONTAINS(text, line);
    }
    CHECK_LINE(text, "ferry_tool_calls_in_flight 0");
    CHECK(strstr(text, "ferry_tool_calls_total{") == NULL);
    /* Prometheus text ends each line with \n. */
    CHECK(text[strlen(text) - 1] == '\n');
    free(text);
    metrics_reset();
}

static void histogram_counts_buckets_sum_and_count(void)
{
    metrics_observe(METRIC_TOOL_CALL_SECONDS, 0.003, "sample__echo");   /* le 0.005 and up */
    metrics_observe(METRIC_TOOL_CALL_SECONDS, 0.2, "sample__echo");     /* le 0.25 and up */
    metrics_observe(METRIC_TOOL_CALL_SECONDS, 0.5, "sample__echo");     /* exactly a bound: le 0.5 */
    metrics_observe(METRIC_TOOL_CALL_SECONDS, 100, "sample__echo");     /* only +Inf */
    metrics_observe(METRIC_TOOL_CALL_SECONDS, 0.001, "other");

    char *text = render();
    CHECK_CONTAINS(text, "# TYPE ferry_tool_call_duration_seconds histogram\n");
#define B(le, n) "ferry_tool_call_duration_seconds_bucket{tool=\"sample__echo\",le=\"" le "\"} " #n
    CHECK_LINE(text, B("0.001", 0));
    CHECK_LINE(text, B("0.0025", 0));
    CHECK_LINE(text, B("0.005", 1));
    CHECK_LINE(text, B("0.01", 1));
    CHECK_LINE(text, B("0.1", 1));
    CHECK_LINE(text, B("0.25", 2));
    CHECK_LINE(text, B("0.5", 3));
    CHECK_LINE(text, B("1", 3));
    CHECK_LINE(text, B("30", 3));
    CHECK_LINE(text, B("+Inf", 4));
#undef B
    const char *sum = strstr(text, "\nferry_tool_call_duration_seconds_sum{tool=\"sample__echo\"} ");
    CHECK(sum != NULL);
    if (sum) {
        double v = strtod(strchr(sum + 1, ' ') + 1, NULL);
        CHECK(v > 100.7029 && v < 100.7031);
    }
    CHECK_LINE(text, "ferry_tool_call_duration_seconds_count{tool=\"sample__echo\"} 4");
    CHECK_LINE(text, "ferry_tool_call_duration_seconds_bucket{tool=\"other\",le=\"0.001\"} 1");
    CHECK_LINE(text, "ferry_tool_call_duration_seconds_bucket{tool=\"other\",le=\"+Inf\"} 1");
    CHECK_LINE(text, "ferry_tool_call_duration_seconds_count{tool=\"other\"} 1");

    /* Buckets are cumulative: counts never decrease along a series. */
    const char *p = text;
    unsigned long long last = 0;
    const char *prefix = "ferry_tool_call_duration_seconds_bucket{tool=\"sample__echo\"";
    int buckets = 0;
    while ((p = strstr(p, prefix))) {
        const char *sp = strchr(p, ' ');
        unsigned long long n = strtoull(sp + 1, NULL, 10);
        CHECK(n >= last);
        last = n;
        buckets++;
        p = sp;
    }
    CHECK_INT(buckets, 15);   /* 14 bounds + +Inf */
    free(text);
    metrics_reset();
}

static void histogram_sum_is_what_metrics_get_reads(void)
{
    metrics_observe(METRIC_UPSTREAM_SECONDS, 0.25, "api.example.com");
    metrics_observe(METRIC_UPSTREAM_SECONDS, 0.5, "api.example.com");
    CHECK(metrics_get(METRIC_UPSTREAM_SECONDS, "api.example.com", NULL) == 0.75);
    metrics_reset();
}

static void label_values_are_escaped(void)
{
    metrics_add(METRIC_HTTP_REQUESTS, 1, "/a\"b", "x\\y");
    metrics_add(METRIC_HTTP_REQUESTS, 2, "line1\nline2", "ok");
    char *text = render();
    CHECK_LINE(text, "ferry_http_requests_total{route=\"/a\\\"b\",status=\"x\\\\y\"} 1");
    CHECK_LINE(text, "ferry_http_requests_total{route=\"line1\\nline2\",status=\"ok\"} 2");
    /* No raw newline may split a sample line. */
    CHECK(strstr(text, "line1\nline2") == NULL);
    free(text);
    metrics_reset();
}

static void reset_forgets_every_series(void)
{
    metrics_add(METRIC_TOOL_CALLS, 5, "t", "ok");
    metrics_observe(METRIC_TOOL_CALL_SECONDS, 1, "t");
    metrics_reset();
    CHECK(metrics_get(METRIC_TOOL_CALLS, "t", "ok") == 0);
    char *text = render();
    CHECK(strstr(text, "tool=\"t\"") == NULL);
    free(text);
    /* And the registry is usable again. */
    metrics_add(METRIC_TOOL_CALLS, 1, "t", "ok");
    CHECK(metrics_get(METRIC_TOOL_CALLS, "t", "ok") == 1);
    metrics_reset();
}

static void many_series_grow_the_family(void)
{
    char tool[32];
    for (int i = 0; i < 100; i++) {
        snprintf(tool, sizeof tool, "p__t%d", i);
        metrics_add(METRIC_TOOL_CALLS, i, tool, "ok");
    }
    for (int i = 0; i < 100; i++) {
        snprintf(tool, sizeof tool, "p__t%d", i);
        CHECK(metrics_get(METRIC_TOOL_CALLS, tool, "ok") == i);
    }
    char *text = render();
    CHECK_LINE(text, "ferry_tool_calls_total{tool=\"p__t99\",outcome=\"ok\"} 99");
    free(text);
    metrics_reset();
}

TESTS(TEST(counters_are_kept_per_label_set), TEST(label_values_do_not_collide), TEST(counters_accept_fractional_deltas),
      TEST(gauges_are_set_and_added), TEST(empty_registry_renders_families_and_zero_gauge),
      TEST(histogram_counts_buckets_sum_and_count), TEST(histogram_sum_is_what_metrics_get_reads),
      TEST(label_values_are_escaped), TEST(reset_forgets_every_series), TEST(many_series_grow_the_family))
