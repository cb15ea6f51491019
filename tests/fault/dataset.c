/*
 * dataset.c: named record sets with a change feed, for sync tests.
 *
 * Every change to a record (create, update, delete) gives it the next
 * sequence number of its set; the feed lists records by their latest
 * sequence number, deleted ones as tombstones.  A client that pages with
 * `after` = the last sequence number it has seen, and keeps going until
 * has_more is false, has seen every record's latest state even when the
 * set changes while it pages — the pattern real incremental APIs follow
 * (Google's sync tokens, Graph's delta links).
 *
 * Routes (all take ?set=NAME, default "main"):
 *   POST /dataset/reset?size=N&seed=S&text=BYTES   N records r000001.., text of about BYTES
 *   POST /dataset/load        body {"items":[{"id","title","text"}]}: exactly these records
 *   POST /dataset/mutate?n=M  M changes: half updates, a quarter deletes, a quarter inserts
 *   POST /dataset/faults?...  on /changes requests counted from this call on:
 *        rate_limit_every=K&retry_after=S[&rate_status=503]  every Kth answers 429 (or 503) + Retry-After
 *        error_every=K        every Kth answers 500
 *        slow_every=K&slow_ms=D  every Kth answers after D ms
 *        delay_ms=D           every answer waits D ms
 *        mutate_every=K&mutate_n=M  before every Kth answer, M changes
 *        (parameters not given are turned off)
 *   GET  /dataset/changes?after=A&limit=L  {"items":[...], "next_after", "has_more"}
 *   GET  /dataset/state       {"seq", "items":[{"id","seq","rev","deleted","title","updated_at"}]} (no text)
 *   GET  /dataset/log         {"requests":[{"t_ms","after","limit","status","items"}], "max_inflight", "count"}
 *
 * Deterministic: the same seed and the same calls give the same records.
 */
#include "dataset.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#define MAX_SETS 8
#define MAX_LOG 100000
#define BASE_TIME 1704067200 /* 2024-01-01T00:00:00Z: updated_at is this plus the change's number */

struct item {
    char id[24];
    uint64_t seq;
    int rev;
    int deleted;
    char *title;
    char *text;
};

struct change {
    uint64_t seq;
    size_t item;
};

struct log_entry {
    int64_t t_ms;
    uint64_t after;
    long limit;
    int status;
    int items;
};

struct set {
    char name[32];
    struct item *items;
    size_t n, cap;
    struct change *changes; /* in seq order; stale once the item changed again */
    size_t nchanges, changes_cap;
    uint64_t seq;
    uint64_t rng;
    long text_bytes;
    uint64_t next_id;
    /* faults */
    long rate_limit_every, rate_status, error_every, slow_every, slow_ms, delay_ms, mutate_every, mutate_n;
    double retry_after;
    uint64_t requests;
    struct log_entry *log;
    size_t nlog;
    int inflight, max_inflight;
};

struct delayed {
    struct datasets *d;
    struct set *set;
    struct evhttp_request *req;
    struct event *ev;
    json_t *doc;
    int status;
    LIST_ENTRY(delayed) link;
};

struct datasets {
    struct event_base *base;
    struct set *sets[MAX_SETS];
    int nsets;
    LIST_HEAD(, delayed) delayed;
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* xorshift64*: deterministic text and choices */
static uint64_t next_rand(struct set *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return s->rng * 2685821657736338717ULL;
}

static const char *const SYLLABLES[] = {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "po", "de",
                                        "an", "or", "el", "us", "ti", "ba", "qu", "en", "ri", "co"};
static const char *const WORDS[] = {"invoice", "meeting", "project", "budget", "launch", "review",
                                    "customer", "payment", "roadmap", "quarter", "contract", "design"};

/* About `bytes` of sentences. */
static char *make_text(struct set *s, long bytes)
{
    long target = bytes / 2 + (long)(next_rand(s) % (uint64_t)(bytes + 1));
    char *out = malloc((size_t)target + 64);
    long n = 0;
    int in_sentence = 0;
    while (out && n < target) {
        char word[40];
        int wl = 0;
        if (next_rand(s) % 8 == 0) {
            wl = snprintf(word, sizeof word, "%s", WORDS[next_rand(s) % 12]);
        } else {
            int syl = 2 + (int)(next_rand(s) % 3);
            for (int k = 0; k < syl; k++)
                wl += snprintf(word + wl, sizeof word - (size_t)wl, "%s", SYLLABLES[next_rand(s) % 20]);
        }
        if (!in_sentence)
            word[0] = (char)(word[0] - 'a' + 'A');
        memcpy(out + n, word, (size_t)wl);
        n += wl;
        in_sentence = next_rand(s) % 12 != 0;
        out[n++] = in_sentence ? ' ' : '.';
        if (!in_sentence)
            out[n++] = ' ';
    }
    if (out)
        out[n > 0 ? n - 1 : 0] = 0;
    return out;
}

static struct set *find_set(struct datasets *d, const char *name, int create)
{
    for (int i = 0; i < d->nsets; i++)
        if (strcmp(d->sets[i]->name, name) == 0)
            return d->sets[i];
    if (!create || d->nsets == MAX_SETS)
        return NULL;
    struct set *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->name, sizeof s->name, "%s", name);
    s->rng = 0x9E3779B97F4A7C15ULL;
    s->text_bytes = 600;
    d->sets[d->nsets++] = s;
    return s;
}

static void clear_items(struct set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].title);
        free(s->items[i].text);
    }
    s->n = 0;
    s->nchanges = 0;
    s->seq = 0;
    s->next_id = 1;
    s->requests = 0;
    s->nlog = 0;
    s->max_inflight = s->inflight;
}

static void free_set(struct set *s)
{
    clear_items(s);
    free(s->items);
    free(s->changes);
    free(s->log);
    free(s);
}

static int record_change(struct set *s, size_t idx)
{
    if (s->nchanges == s->changes_cap) {
        size_t cap = s->changes_cap ? s->changes_cap * 2 : 1024;
        struct change *c = realloc(s->changes, cap * sizeof *c);
        if (!c)
            return -1;
        s->changes = c;
        s->changes_cap = cap;
    }
    s->items[idx].seq = ++s->seq;
    s->changes[s->nchanges++] = (struct change){s->seq, idx};
    return 0;
}

/* A new live record; its id is given or the next rNNNNNN. */
static int add_item(struct set *s, const char *id, const char *title, const char *text)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        struct item *it = realloc(s->items, cap * sizeof *it);
        if (!it)
            return -1;
        s->items = it;
        s->cap = cap;
    }
    struct item *it = &s->items[s->n];
    memset(it, 0, sizeof *it);
    if (id)
        snprintf(it->id, sizeof it->id, "%s", id);
    else
        snprintf(it->id, sizeof it->id, "r%06" PRIu64, s->next_id++);
    it->rev = 1;
    if (title) {
        it->title = strdup(title);
    } else {
        char buf[96];
        char *words = make_text(s, 24);
        snprintf(buf, sizeof buf, "Item %s: %.60s", it->id, words ? words : "");
        free(words);
        it->title = strdup(buf);
    }
    it->text = text ? strdup(text) : make_text(s, s->text_bytes);
    s->n++;
    return record_change(s, s->n - 1);
}

static size_t pick_live(struct set *s)
{
    for (int tries = 0; tries < 64 && s->n; tries++) {
        size_t i = (size_t)(next_rand(s) % s->n);
        if (!s->items[i].deleted)
            return i;
    }
    for (size_t i = 0; i < s->n; i++)
        if (!s->items[i].deleted)
            return i;
    return (size_t)-1;
}

static void mutate(struct set *s, long count)
{
    for (long k = 0; k < count; k++) {
        unsigned r = (unsigned)(next_rand(s) % 100);
        size_t i = pick_live(s);
        if (i == (size_t)-1 || r >= 75) {
            add_item(s, NULL, NULL, NULL);
        } else if (r < 50) {
            struct item *it = &s->items[i];
            it->rev++;
            free(it->text);
            it->text = make_text(s, s->text_bytes);
            char buf[96];
            snprintf(buf, sizeof buf, "Item %s rev %d", it->id, it->rev);
            free(it->title);
            it->title = strdup(buf);
            record_change(s, i);
        } else {
            struct item *it = &s->items[i];
            it->deleted = 1;
            it->rev++;
            free(it->text);
            it->text = NULL;
            record_change(s, i);
        }
    }
}

static void updated_at(uint64_t seq, char out[32])
{
    time_t t = (time_t)(BASE_TIME + seq);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *item_json(const struct item *it, int with_text)
{
    json_t *o = json_pack("{s:s, s:I, s:i, s:b}", "id", it->id, "seq", (json_int_t)it->seq, "rev", it->rev,
                          "deleted", it->deleted);
    if (!it->deleted) {
        char ts[32];
        updated_at(it->seq, ts);
        json_object_set_new(o, "title", json_string(it->title ? it->title : ""));
        json_object_set_new(o, "updated_at", json_string(ts));
        if (with_text) {
            char url[64];
            snprintf(url, sizeof url, "https://records.example/items/%s", it->id);
            json_object_set_new(o, "text", json_string(it->text ? it->text : ""));
            json_object_set_new(o, "url", json_string(url));
        }
    }
    return o;
}

/* ---- replies ---- */

static int dump_cb(const char *buf, size_t size, void *data)
{
    return evbuffer_add(data, buf, size);
}

static void send_doc(struct evhttp_request *req, int status, json_t *doc)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    if (doc)
        json_dump_callback(doc, dump_cb, evhttp_request_get_output_buffer(req), JSON_COMPACT);
    json_decref(doc);
    evhttp_send_reply(req, status, NULL, NULL);
}

static void send_error(struct evhttp_request *req, int status, const char *msg)
{
    send_doc(req, status, json_pack("{s:s}", "error", msg));
}

static void delayed_fire(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *dl = arg;
    (void)fd;
    (void)what;
    LIST_REMOVE(dl, link);
    event_free(dl->ev);
    dl->set->inflight--;
    /* Safe even if the client left: evhttp frees req on the write error. */
    send_doc(dl->req, dl->status, dl->doc);
    free(dl);
}

/* Answers a /changes request now or after ms. */
static void answer_changes(struct datasets *d, struct set *s, struct evhttp_request *req, int status, json_t *doc,
                           long ms)
{
    if (ms <= 0) {
        s->inflight--;
        send_doc(req, status, doc);
        return;
    }
    struct delayed *dl = calloc(1, sizeof *dl);
    if (dl)
        dl->ev = evtimer_new(d->base, delayed_fire, dl);
    if (!dl || !dl->ev) {
        free(dl);
        s->inflight--;
        send_doc(req, status, doc);
        return;
    }
    dl->d = d;
    dl->set = s;
    dl->req = req;
    dl->doc = doc;
    dl->status = status;
    LIST_INSERT_HEAD(&d->delayed, dl, link);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(dl->ev, &tv);
}

static long qlong(struct evkeyvalq *q, const char *key, long def)
{
    const char *v = evhttp_find_header(q, key);
    return v ? strtol(v, NULL, 10) : def;
}

static void log_request(struct set *s, uint64_t after, long limit, int status, int items)
{
    if (s->nlog == MAX_LOG)
        return;
    if (!s->log)
        s->log = malloc(MAX_LOG * sizeof *s->log);
    if (!s->log)
        return;
    s->log[s->nlog++] = (struct log_entry){now_ms(), after, limit, status, items};
}

static void route_changes(struct datasets *d, struct set *s, struct evhttp_request *req, struct evkeyvalq *q)
{
    uint64_t after = (uint64_t)qlong(q, "after", 0);
    long limit = qlong(q, "limit", 100);
    if (limit < 1 || limit > 10000) {
        send_error(req, 400, "limit must be 1..10000");
        return;
    }
    uint64_t n = ++s->requests;
    s->inflight++;
    if (s->inflight > s->max_inflight)
        s->max_inflight = s->inflight;
    long wait = s->delay_ms;
    if (s->slow_every && n % (uint64_t)s->slow_every == 0)
        wait += s->slow_ms;
    if (s->rate_limit_every && n % (uint64_t)s->rate_limit_every == 0) {
        char ra[32];
        snprintf(ra, sizeof ra, "%g", s->retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
        int status = s->rate_status ? (int)s->rate_status : 429;
        log_request(s, after, limit, status, 0);
        answer_changes(d, s, req, status, json_pack("{s:s}", "error", "slow down"), wait);
        return;
    }
    if (s->error_every && n % (uint64_t)s->error_every == 0) {
        log_request(s, after, limit, 500, 0);
        answer_changes(d, s, req, 500, json_pack("{s:s}", "error", "internal error"), wait);
        return;
    }
    if (s->mutate_every && n % (uint64_t)s->mutate_every == 0)
        mutate(s, s->mutate_n);
    /* The first change after `after`: binary search, then skip stale ones. */
    size_t lo = 0, hi = s->nchanges;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->changes[mid].seq <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    json_t *items = json_array();
    uint64_t last = after;
    size_t i = lo;
    for (; i < s->nchanges && (long)json_array_size(items) < limit; i++) {
        const struct change *c = &s->changes[i];
        if (s->items[c->item].seq != c->seq)
            continue;
        json_array_append_new(items, item_json(&s->items[c->item], 1));
        last = c->seq;
    }
    int more = 0;
    for (; i < s->nchanges && !more; i++)
        more = s->items[s->changes[i].item].seq == s->changes[i].seq;
    log_request(s, after, limit, 200, (int)json_array_size(items));
    answer_changes(d, s, req, 200,
                   json_pack("{s:o, s:I, s:b}", "items", items, "next_after", (json_int_t)last, "has_more", more),
                   wait);
}

static void route_state(struct set *s, struct evhttp_request *req)
{
    json_t *items = json_array();
    for (size_t i = 0; i < s->n; i++)
        json_array_append_new(items, item_json(&s->items[i], 0));
    send_doc(req, 200, json_pack("{s:I, s:o}", "seq", (json_int_t)s->seq, "items", items));
}

static void route_log(struct set *s, struct evhttp_request *req)
{
    json_t *list = json_array();
    for (size_t i = 0; i < s->nlog; i++) {
        const struct log_entry *e = &s->log[i];
        json_array_append_new(list, json_pack("{s:I, s:I, s:I, s:i, s:i}", "t_ms", (json_int_t)e->t_ms, "after",
                                              (json_int_t)e->after, "limit", (json_int_t)e->limit, "status",
                                              e->status, "items", e->items));
    }
    send_doc(req, 200, json_pack("{s:o, s:i, s:I}", "requests", list, "max_inflight", s->max_inflight, "count",
                                 (json_int_t)s->requests));
}

static void route_load(struct set *s, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *text = malloc(len + 1);
    if (!text) {
        send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_copyout(in, text, len);
    text[len] = 0;
    json_t *doc = json_loads(text, 0, NULL);
    free(text);
    json_t *items = json_object_get(doc, "items");
    if (!json_is_array(items)) {
        json_decref(doc);
        send_error(req, 400, "the body must be {\"items\": [{\"id\", \"title\", \"text\"}]}");
        return;
    }
    clear_items(s);
    size_t i;
    json_t *v;
    json_array_foreach(items, i, v) add_item(s, json_string_value(json_object_get(v, "id")),
                                             json_string_value(json_object_get(v, "title")),
                                             json_string_value(json_object_get(v, "text")));
    json_decref(doc);
    send_doc(req, 200, json_pack("{s:I}", "seq", (json_int_t)s->seq));
}

void datasets_route(struct datasets *d, struct evhttp_request *req, const char *path)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (qs && evhttp_parse_query_str(qs, &q) != 0) {
        send_error(req, 400, "malformed query string");
        return;
    }
    const char *name = evhttp_find_header(&q, "set");
    struct set *s = find_set(d, name ? name : "main", 1);
    const char *what = path + strlen("/dataset/");
    if (!s) {
        send_error(req, 500, "too many sets");
    } else if (strcmp(what, "changes") == 0) {
        route_changes(d, s, req, &q);
    } else if (strcmp(what, "state") == 0) {
        route_state(s, req);
    } else if (strcmp(what, "log") == 0) {
        route_log(s, req);
    } else if (strcmp(what, "reset") == 0) {
        clear_items(s);
        s->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)qlong(&q, "seed", 1) * 0xBF58476D1CE4E5B9ULL;
        s->text_bytes = qlong(&q, "text", 600);
        if (s->text_bytes < 1)
            s->text_bytes = 1;
        long size = qlong(&q, "size", 100);
        for (long k = 0; k < size; k++)
            add_item(s, NULL, NULL, NULL);
        send_doc(req, 200, json_pack("{s:I}", "seq", (json_int_t)s->seq));
    } else if (strcmp(what, "load") == 0) {
        route_load(s, req);
    } else if (strcmp(what, "mutate") == 0) {
        mutate(s, qlong(&q, "n", 1));
        send_doc(req, 200, json_pack("{s:I}", "seq", (json_int_t)s->seq));
    } else if (strcmp(what, "faults") == 0) {
        s->rate_limit_every = qlong(&q, "rate_limit_every", 0);
        const char *ra = evhttp_find_header(&q, "retry_after");
        s->retry_after = ra ? strtod(ra, NULL) : 1;
        s->rate_status = qlong(&q, "rate_status", 429);
        s->error_every = qlong(&q, "error_every", 0);
        s->slow_every = qlong(&q, "slow_every", 0);
        s->slow_ms = qlong(&q, "slow_ms", 0);
        s->delay_ms = qlong(&q, "delay_ms", 0);
        s->mutate_every = qlong(&q, "mutate_every", 0);
        s->mutate_n = qlong(&q, "mutate_n", 1);
        s->requests = 0;
        send_doc(req, 200, json_pack("{s:b}", "ok", 1));
    } else {
        send_error(req, 404, "not found");
    }
    evhttp_clear_headers(&q);
}

struct datasets *datasets_new(struct event_base *base)
{
    struct datasets *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->base = base;
    LIST_INIT(&d->delayed);
    return d;
}

void datasets_free(struct datasets *d)
{
    if (!d)
        return;
    while (!LIST_EMPTY(&d->delayed)) {
        struct delayed *dl = LIST_FIRST(&d->delayed);
        LIST_REMOVE(dl, link);
        event_free(dl->ev);
        if (evhttp_request_get_connection(dl->req) == NULL)
            evhttp_request_free(dl->req);
        json_decref(dl->doc);
        free(dl);
    }
    for (int i = 0; i < d->nsets; i++)
        free_set(d->sets[i]);
    free(d);
}
