/*
 * loadgen: the HTTP load generator every ferry benchmark uses, so ferry and
 * its baseline are measured with the same client sending the same traffic.
 *
 *   loadgen --url URL [--method GET|POST] [--header 'K: V']...
 *           [--body STRING | --body-file F] [--concurrency C]
 *           (--requests N | --duration SECONDS) [--warmup SECONDS]
 *           [--timeout-ms MS] [--expect-status 200] [--json]
 *
 * C slots each keep one request in flight.  A slot owns one curl easy handle
 * and re-adds it when its request completes, so the connection it used is
 * reused (keep-alive).  --requests N with --concurrency N therefore fires all
 * N at once; --duration keeps C in flight until the time is up.
 *
 * libcurl multi runs on one libevent loop with curl_multi_socket_action (the
 * shape of curl's hiperfifo example): a socket callback keeps one event per
 * socket, a timer callback arms one timer, and check_done drains finished
 * transfers, finding their slot through CURLINFO_PRIVATE.
 *
 * Slots are split into shards of SHARD_SLOTS, each with its own multi handle
 * and so its own connection cache.  libcurl 7.88 walks a multi handle's whole
 * connection cache when it looks for a connection to reuse and when it
 * removes a finished handle; with one multi handle for 10,000 slots those
 * walks made the load generator quadratic and its own bottleneck.
 *
 * Figures: a request's latency runs from when its handle is added to a multi
 * handle to when its completion is seen, so client-side queueing is included
 * and both targets pay it alike.  Latency percentiles are over successful
 * requests; errors (transport failures by curl code, statuses other than
 * --expect-status) are counted apart.  wall_seconds runs from the first
 * measured request's start to the last completion.  With --warmup, traffic
 * runs that long first, in-flight requests drain, and only then does the
 * measured run start on the warmed connections; warm-up requests count
 * nowhere.  cpu_seconds is this process's user + system CPU (getrusage) over
 * the measured run.
 *
 * Exit status: 0 when the run completed (errors or not: read "errors"),
 * 1 on bad usage or when it could not set up.
 */

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#define SHARD_SLOTS 32      /* slots (and connections) per multi handle */
#define MAX_ERROR_KINDS 64

struct loadgen;

/* One multi handle and the timer libcurl asks it for. */
struct shard {
    struct loadgen *lg;
    CURLM *multi;
    struct event *timer;
};

/* One request kept in flight. */
struct slot {
    struct shard *shard;
    CURL *easy;
    uint64_t started_ns;
    int attached;     /* added to its multi handle */
};

/* libevent's view of one socket that libcurl asked to watch. */
struct sock {
    struct event *ev;
    struct sock *prev, *next; /* so anything left is freed at exit */
};

/* Errors of one kind: curl code (status 0) or HTTP status (code 0). */
struct error_kind {
    int curl_code;
    long status;
    uint64_t count;
};

struct options {
    const char *url;
    const char *method;
    struct curl_slist *headers;
    struct curl_slist *resolve; /* the URL's host, resolved once */
    char *body;                 /* owned; NULL when no body */
    size_t body_len;
    long concurrency;
    long requests;              /* > 0 in --requests mode */
    double duration;            /* > 0 in --duration mode */
    double warmup;
    long timeout_ms;
    long expect_status;
    int json;
};

enum phase { PHASE_WARMUP, PHASE_MEASURE };

struct loadgen {
    const struct options *opt;
    struct event_base *base;
    struct shard *shards;
    long nshards;
    struct slot *slots;
    struct sock *socks;

    enum phase phase;
    uint64_t phase_end_ns;  /* stop starting requests after this (0 = none) */
    long issued;            /* requests started in this phase */
    long in_flight;

    /* Measured phase only. */
    double cpu_start;       /* cpu_seconds() when it began */
    uint64_t first_start_ns, last_done_ns;
    uint64_t completed, errors, bytes;
    uint64_t *lat_ns;       /* successful requests' latencies */
    size_t lat_len, lat_cap;
    struct error_kind kinds[MAX_ERROR_KINDS];
    size_t nkinds;
    uint64_t other_errors;  /* kinds past MAX_ERROR_KINDS */
    int oom;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------------ */
/* Recording results                                                         */

static void record_error(struct loadgen *lg, int curl_code, long status)
{
    lg->errors++;
    for (size_t i = 0; i < lg->nkinds; i++) {
        if (lg->kinds[i].curl_code == curl_code && lg->kinds[i].status == status) {
            lg->kinds[i].count++;
            return;
        }
    }
    if (lg->nkinds == MAX_ERROR_KINDS) {
        lg->other_errors++;
        return;
    }
    lg->kinds[lg->nkinds++] = (struct error_kind){ curl_code, status, 1 };
}

static void record_latency(struct loadgen *lg, uint64_t ns)
{
    if (lg->lat_len == lg->lat_cap) {
        size_t cap = lg->lat_cap ? lg->lat_cap * 2 : 4096;
        uint64_t *p = realloc(lg->lat_ns, cap * sizeof(*p));
        if (p == NULL) {
            lg->oom = 1;
            return;
        }
        lg->lat_ns = p;
        lg->lat_cap = cap;
    }
    lg->lat_ns[lg->lat_len++] = ns;
}

/* ------------------------------------------------------------------------ */
/* Slots                                                                     */

static size_t discard_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct loadgen *lg = arg;
    (void)data;
    if (lg->phase == PHASE_MEASURE)
        lg->bytes += size * nmemb;
    return size * nmemb;
}

/* Configures s's easy handle once; every request of the slot reuses it. */
static int slot_init(struct loadgen *lg, struct slot *s, struct shard *shard)
{
    const struct options *o = lg->opt;
    CURL *e = curl_easy_init();

    if (e == NULL)
        return -1;
    s->shard = shard;
    s->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, s);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, lg);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->headers);
    if (o->resolve != NULL)
        curl_easy_setopt(e, CURLOPT_RESOLVE, o->resolve);
    if (o->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    if (strcmp(o->method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body != NULL ? o->body : "");
    } else if (strcmp(o->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method);
        if (o->body != NULL) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body);
        }
    }
    return 0;
}

/* Whether the current phase wants another request started now. */
static int want_more(struct loadgen *lg)
{
    if (lg->phase_end_ns != 0)
        return now_ns() < lg->phase_end_ns;
    return lg->issued < lg->opt->requests;
}

static int slot_start(struct loadgen *lg, struct slot *s)
{
    s->started_ns = now_ns();
    if (curl_multi_add_handle(s->shard->multi, s->easy) != CURLM_OK)
        return -1;
    if (lg->phase == PHASE_MEASURE && lg->issued == 0)
        lg->first_start_ns = s->started_ns;
    s->attached = 1;
    lg->issued++;
    lg->in_flight++;
    return 0;
}

/* Starts as many slots as the phase allows.  Returns 0 or -1. */
static int start_phase(struct loadgen *lg, enum phase phase)
{
    const struct options *o = lg->opt;
    long n = o->concurrency;

    lg->phase = phase;
    lg->issued = 0;
    if (phase == PHASE_WARMUP) {
        lg->phase_end_ns = now_ns() + (uint64_t)(o->warmup * 1e9);
    } else {
        lg->cpu_start = cpu_seconds();
        lg->phase_end_ns = o->duration > 0 ? now_ns() + (uint64_t)(o->duration * 1e9) : 0;
    }
    if (lg->phase_end_ns == 0 && o->requests < n)
        n = o->requests;
    for (long i = 0; i < n; i++) {
        if (slot_start(lg, &lg->slots[i]) != 0)
            return -1;
    }
    return 0;
}

/* A slot's request finished: record it (when measured), then restart the
 * slot or, when the phase is over and nothing is in flight, move on. */
static void slot_done(struct loadgen *lg, struct slot *s, CURLcode rc)
{
    uint64_t done = now_ns();
    long status = 0;

    curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(s->shard->multi, s->easy);
    s->attached = 0;
    lg->in_flight--;
    if (lg->phase == PHASE_MEASURE) {
        lg->completed++;
        lg->last_done_ns = done;
        if (rc != CURLE_OK)
            record_error(lg, (int)rc, 0);
        else if (status != lg->opt->expect_status)
            record_error(lg, 0, status);
        else
            record_latency(lg, done - s->started_ns);
    }
    if (want_more(lg)) {
        if (slot_start(lg, s) == 0)
            return;
        fprintf(stderr, "loadgen: cannot start a request\n");
    }
    if (lg->in_flight > 0)
        return;
    if (lg->phase == PHASE_WARMUP && start_phase(lg, PHASE_MEASURE) == 0)
        return;
    event_base_loopbreak(lg->base);
}

/* ------------------------------------------------------------------------ */
/* libcurl multi on libevent                                                 */

static void check_done(struct shard *sh)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(sh->multi, &left)) != NULL) {
        char *priv = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        slot_done(sh->lg, (struct slot *)priv, msg->data.result);
    }
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct shard *sh = arg;
    int running;
    int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) |
                ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(sh->multi, fd, flags, &running);
    check_done(sh);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct shard *sh = arg;
    int running;

    (void)fd;
    (void)what;
    curl_multi_socket_action(sh->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(sh);
}

/* CURLMOPT_TIMERFUNCTION: one timer per multi handle, re-armed or
 * cancelled on request. */
static int timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
    struct shard *sh = arg;
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

    (void)multi;
    if (timeout_ms < 0)
        return evtimer_del(sh->timer);
    return evtimer_add(sh->timer, &tv);
}

static void sock_free(struct loadgen *lg, struct sock *sk)
{
    if (sk->prev != NULL)
        sk->prev->next = sk->next;
    else
        lg->socks = sk->next;
    if (sk->next != NULL)
        sk->next->prev = sk->prev;
    event_free(sk->ev);
    free(sk);
}

/* CURLMOPT_SOCKETFUNCTION: keep one persistent event per socket matching
 * what libcurl waits for. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *arg, void *sockp)
{
    struct shard *sh = arg;
    struct loadgen *lg = sh->lg;
    struct sock *sk = sockp;
    short kind;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL)
            sock_free(lg, sk);
        curl_multi_assign(sh->multi, fd, NULL);
        return 0;
    }
    kind = (short)(EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                   ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (sk == NULL) {
        sk = calloc(1, sizeof(*sk));
        if (sk == NULL)
            return -1;
        sk->ev = event_new(lg->base, fd, kind, on_socket_event, sh);
        if (sk->ev == NULL) {
            free(sk);
            return -1;
        }
        sk->next = lg->socks;
        if (lg->socks != NULL)
            lg->socks->prev = sk;
        lg->socks = sk;
        curl_multi_assign(sh->multi, fd, sk);
    } else {
        event_del(sk->ev);
        event_assign(sk->ev, lg->base, fd, kind, on_socket_event, sh);
    }
    return event_add(sk->ev, NULL);
}

static int shard_init(struct loadgen *lg, struct shard *sh, long nslots)
{
    sh->lg = lg;
    sh->multi = curl_multi_init();
    sh->timer = evtimer_new(lg->base, on_timer, sh);
    if (sh->multi == NULL || sh->timer == NULL)
        return -1;
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_SOCKETDATA, sh);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(sh->multi, CURLMOPT_TIMERDATA, sh);
    /* One connection per slot, all kept open between requests. */
    curl_multi_setopt(sh->multi, CURLMOPT_MAXCONNECTS, nslots);
    curl_multi_setopt(sh->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, nslots);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Report                                                                    */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of the sorted latencies, in milliseconds. */
static double percentile_ms(const struct loadgen *lg, double p)
{
    size_t rank;

    if (lg->lat_len == 0)
        return 0.0;
    rank = (size_t)(p / 100.0 * (double)lg->lat_len + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > lg->lat_len)
        rank = lg->lat_len;
    return (double)lg->lat_ns[rank - 1] / 1e6;
}

static void print_json_string(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void report(struct loadgen *lg, double cpu)
{
    const struct options *o = lg->opt;
    double wall = lg->completed ? (double)(lg->last_done_ns - lg->first_start_ns) / 1e9 : 0.0;
    double rps = wall > 0 ? (double)lg->completed / wall : 0.0;
    double cpu_us = lg->completed ? cpu * 1e6 / (double)lg->completed : 0.0;
    double p50, p90, p99, max;

    if (lg->lat_len > 0)
        qsort(lg->lat_ns, lg->lat_len, sizeof(*lg->lat_ns), cmp_u64);
    p50 = percentile_ms(lg, 50);
    p90 = percentile_ms(lg, 90);
    p99 = percentile_ms(lg, 99);
    max = percentile_ms(lg, 100);

    if (o->json) {
        const char *sep = "";
        printf("{\"url\":");
        print_json_string(o->url);
        printf(",\"concurrency\":%ld,\"requests\":%llu,\"ok\":%llu,\"errors\":%llu,"
               "\"error_breakdown\":{\"curl\":{",
               o->concurrency, (unsigned long long)lg->completed,
               (unsigned long long)lg->lat_len, (unsigned long long)lg->errors);
        for (size_t i = 0; i < lg->nkinds; i++) {
            if (lg->kinds[i].status != 0)
                continue;
            printf("%s\"%d\":%llu", sep, lg->kinds[i].curl_code,
                   (unsigned long long)lg->kinds[i].count);
            sep = ",";
        }
        printf("},\"status\":{");
        sep = "";
        for (size_t i = 0; i < lg->nkinds; i++) {
            if (lg->kinds[i].status == 0)
                continue;
            printf("%s\"%ld\":%llu", sep, lg->kinds[i].status,
                   (unsigned long long)lg->kinds[i].count);
            sep = ",";
        }
        printf("},\"other\":%llu},", (unsigned long long)lg->other_errors);
        printf("\"wall_seconds\":%.6f,\"throughput_rps\":%.1f,"
               "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
               "\"bytes_received\":%llu,\"cpu_seconds\":%.6f,\"cpu_us_per_request\":%.2f}\n",
               wall, rps, p50, p90, p99, max, (unsigned long long)lg->bytes, cpu, cpu_us);
    } else {
        printf("url          %s\n", o->url);
        printf("concurrency  %ld\n", o->concurrency);
        printf("requests     %llu (%llu ok, %llu errors)\n", (unsigned long long)lg->completed,
               (unsigned long long)lg->lat_len, (unsigned long long)lg->errors);
        for (size_t i = 0; i < lg->nkinds; i++) {
            const struct error_kind *k = &lg->kinds[i];
            if (k->status != 0)
                printf("  status %ld: %llu\n", k->status, (unsigned long long)k->count);
            else
                printf("  curl %d (%s): %llu\n", k->curl_code,
                       curl_easy_strerror((CURLcode)k->curl_code),
                       (unsigned long long)k->count);
        }
        if (lg->other_errors)
            printf("  other kinds: %llu\n", (unsigned long long)lg->other_errors);
        printf("wall         %.3f s\n", wall);
        printf("throughput   %.1f req/s\n", rps);
        printf("latency ms   p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n", p50, p90, p99, max);
        printf("received     %llu bytes\n", (unsigned long long)lg->bytes);
        printf("loadgen cpu  %.3f s (%.2f us/request)\n", cpu, cpu_us);
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --url URL [--method GET|POST] [--header 'K: V']...\n"
            "               [--body STRING | --body-file F] [--concurrency C]\n"
            "               (--requests N | --duration SECONDS) [--warmup SECONDS]\n"
            "               [--timeout-ms MS] [--expect-status 200] [--json]\n");
}

/* Reads all of path into *out (owned by the caller).  Returns 0 or -1. */
static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, got;

    if (f == NULL)
        return -1;
    do {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 65536;
            char *p = realloc(buf, ncap);
            if (p == NULL)
                goto err;
            buf = p;
            cap = ncap;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    if (ferror(f))
        goto err;
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
err:
    free(buf);
    fclose(f);
    return -1;
}

static int parse_long(const char *s, long min, long *out)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min)
        return -1;
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0.0))
        return -1;
    *out = v;
    return 0;
}

/* Resolves the URL's host once, for CURLOPT_RESOLVE: otherwise each of
 * thousands of handles starting at once would run its own lookup (libcurl's
 * threaded resolver: one thread each) and name resolution would be part of
 * what is measured.  A numeric host needs nothing.  Returns 0 or -1. */
static int resolve_once(struct options *o)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, entry[512];
    struct addrinfo hints, *ai = NULL;
    char addr[128];
    int rc = -1;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, o->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        fprintf(stderr, "loadgen: cannot parse --url %s\n", o->url);
        goto out;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST;
    if (host[0] == '[' || getaddrinfo(host, NULL, &hints, &ai) == 0) {
        rc = 0; /* already an address */
        goto out;
    }
    hints.ai_flags = 0;
    if (getaddrinfo(host, NULL, &hints, &ai) != 0 ||
        getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0,
                    NI_NUMERICHOST) != 0) {
        fprintf(stderr, "loadgen: cannot resolve %s\n", host);
        goto out;
    }
    snprintf(entry, sizeof(entry), "%s:%s:%s%s%s", host, port,
             ai->ai_family == AF_INET6 ? "[" : "", addr, ai->ai_family == AF_INET6 ? "]" : "");
    o->resolve = curl_slist_append(NULL, entry);
    rc = o->resolve != NULL ? 0 : -1;
out:
    if (ai != NULL)
        freeaddrinfo(ai);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

/* Fills o from argv.  Returns 0, or -1 after printing why. */
static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option opts[] = {
        { "url", required_argument, NULL, 'u' },
        { "method", required_argument, NULL, 'm' },
        { "header", required_argument, NULL, 'H' },
        { "body", required_argument, NULL, 'b' },
        { "body-file", required_argument, NULL, 'B' },
        { "concurrency", required_argument, NULL, 'c' },
        { "requests", required_argument, NULL, 'n' },
        { "duration", required_argument, NULL, 'd' },
        { "warmup", required_argument, NULL, 'w' },
        { "timeout-ms", required_argument, NULL, 't' },
        { "expect-status", required_argument, NULL, 's' },
        { "json", no_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c, has_expect = 0, bad = 0;

    while ((c = getopt_long(argc, argv, "u:m:H:b:B:c:n:d:w:t:s:jh", opts, NULL)) != -1) {
        struct curl_slist *h;
        switch (c) {
        case 'u': o->url = optarg; break;
        case 'm': o->method = optarg; break;
        case 'H':
            if (strncasecmp(optarg, "expect:", 7) == 0)
                has_expect = 1;
            h = curl_slist_append(o->headers, optarg);
            if (h == NULL)
                return -1;
            o->headers = h;
            break;
        case 'b':
            free(o->body);
            o->body_len = strlen(optarg);
            o->body = malloc(o->body_len + 1);
            if (o->body == NULL)
                return -1;
            memcpy(o->body, optarg, o->body_len + 1);
            break;
        case 'B':
            free(o->body);
            o->body = NULL;
            if (read_file(optarg, &o->body, &o->body_len) != 0) {
                fprintf(stderr, "loadgen: cannot read %s: %s\n", optarg, strerror(errno));
                return -1;
            }
            break;
        case 'c': bad |= parse_long(optarg, 1, &o->concurrency); break;
        case 'n': bad |= parse_long(optarg, 1, &o->requests); break;
        case 'd': bad |= parse_seconds(optarg, &o->duration); break;
        case 'w': bad |= parse_seconds(optarg, &o->warmup); break;
        case 't': bad |= parse_long(optarg, 0, &o->timeout_ms); break;
        case 's': bad |= parse_long(optarg, 100, &o->expect_status); break;
        case 'j': o->json = 1; break;
        case 'h': usage(stdout); exit(0);
        default: bad = -1; break;
        }
    }
    if (bad || optind != argc || o->url == NULL ||
        (o->requests > 0) == (o->duration > 0)) {
        usage(stderr);
        return -1;
    }
    /* A POST body over 1 MiB would make curl wait for 100-continue. */
    if (!has_expect) {
        struct curl_slist *h = curl_slist_append(o->headers, "Expect:");
        if (h == NULL)
            return -1;
        o->headers = h;
    }
    return resolve_once(o);
}

/* ------------------------------------------------------------------------ */
/* Main                                                                      */

/* Each in-flight request holds a socket: 10,000 need the hard limit. */
static void raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need > rl.rlim_cur)
        fprintf(stderr, "loadgen: warning: %ld connections but only %llu descriptors\n", need,
                (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv)
{
    struct options opt = { .method = "GET", .concurrency = 1, .timeout_ms = 30000,
                           .expect_status = 200 };
    struct loadgen lg;
    int rc = 1;

    memset(&lg, 0, sizeof(lg));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    if (parse_options(argc, argv, &opt) != 0)
        goto out;
    lg.opt = &opt;
    lg.nshards = (opt.concurrency + SHARD_SLOTS - 1) / SHARD_SLOTS;
    /* Sockets, plus a wake-up socket pair per multi handle. */
    raise_nofile(opt.concurrency + 2 * lg.nshards + 16);
    signal(SIGPIPE, SIG_IGN);

    lg.base = event_base_new();
    lg.shards = calloc((size_t)lg.nshards, sizeof(*lg.shards));
    lg.slots = calloc((size_t)opt.concurrency, sizeof(*lg.slots));
    if (lg.base == NULL || lg.shards == NULL || lg.slots == NULL)
        goto out;
    for (long i = 0; i < lg.nshards; i++) {
        long n = opt.concurrency - i * SHARD_SLOTS;
        if (shard_init(&lg, &lg.shards[i], n < SHARD_SLOTS ? n : SHARD_SLOTS) != 0)
            goto out;
    }
    for (long i = 0; i < opt.concurrency; i++) {
        if (slot_init(&lg, &lg.slots[i], &lg.shards[i / SHARD_SLOTS]) != 0)
            goto out;
    }

    if (start_phase(&lg, opt.warmup > 0 ? PHASE_WARMUP : PHASE_MEASURE) != 0)
        goto out;
    event_base_dispatch(lg.base);
    if (lg.oom)
        fprintf(stderr, "loadgen: out of memory recording latencies; figures are partial\n");
    report(&lg, cpu_seconds() - lg.cpu_start);
    rc = 0;

out:
    /* libcurl's order: handles out of their multi, easy handles, multis. */
    for (long i = 0; lg.slots != NULL && i < opt.concurrency; i++) {
        struct slot *s = &lg.slots[i];
        if (s->attached)
            curl_multi_remove_handle(s->shard->multi, s->easy);
        if (s->easy != NULL)
            curl_easy_cleanup(s->easy);
    }
    for (long i = 0; lg.shards != NULL && i < lg.nshards; i++) {
        if (lg.shards[i].multi != NULL)
            curl_multi_cleanup(lg.shards[i].multi);
        if (lg.shards[i].timer != NULL)
            event_free(lg.shards[i].timer);
    }
    while (lg.socks != NULL)
        sock_free(&lg, lg.socks);
    if (lg.base != NULL)
        event_base_free(lg.base);
    libevent_global_shutdown();
    free(lg.shards);
    free(lg.slots);
    free(lg.lat_ns);
    free(opt.body);
    curl_slist_free_all(opt.headers);
    curl_slist_free_all(opt.resolve);
    curl_global_cleanup();
    return rc;
}
