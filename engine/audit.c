#include "audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <openssl/evp.h>

#include "log.h"

#define FLUSH_MS 100
#define BATCH_MAX 512

typedef struct queued {
    audit_row row;
    int64_t intent;
} queued;

struct audit {
    store *db;
    struct event *timer;
    queued *items;
    size_t n, cap;
};

static char *dup(const char *s) { return s ? strdup(s) : NULL; }

static void free_row(audit_row *r)
{
    free((char *)r->user);
    free((char *)r->team);
    free((char *)r->integration);
    free((char *)r->connection_id);
    free((char *)r->operation);
    free((char *)r->access);
    free((char *)r->outcome);
    free((char *)r->approval_id);
    free((char *)r->request_id);
    free((char *)r->arguments);
    free((char *)r->detail);
}

static void copy_row(audit_row *dst, const audit_row *src)
{
    *dst = *src;
    dst->user = dup(src->user);
    dst->team = dup(src->team);
    dst->integration = dup(src->integration);
    dst->connection_id = dup(src->connection_id);
    dst->operation = dup(src->operation);
    dst->access = dup(src->access);
    dst->outcome = dup(src->outcome);
    dst->approval_id = dup(src->approval_id);
    dst->request_id = dup(src->request_id);
    dst->arguments = dup(src->arguments);
    dst->detail = dup(src->detail);
    dst->prev_hash = dst->hash = NULL;
}

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Each field as "<length>:<value>" (or "-" for none), so no choice of
 * values can make two different rows hash alike. */
static void feed(EVP_MD_CTX *md, const char *s)
{
    char len[24];
    if (!s) {
        EVP_DigestUpdate(md, "-;", 2);
        return;
    }
    int n = snprintf(len, sizeof len, "%zu:", strlen(s));
    EVP_DigestUpdate(md, len, (size_t)n);
    EVP_DigestUpdate(md, s, strlen(s));
    EVP_DigestUpdate(md, ";", 1);
}

static void feed_int(EVP_MD_CTX *md, long long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    feed(md, buf);
}

void audit_hash(const audit_row *r, const char *prev, char out[80])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char digest[32];
    unsigned int len = 0;
    char duration[40];
    snprintf(duration, sizeof duration, "%.3f", r->duration_ms);
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    feed(md, prev);
    feed_int(md, r->id);
    feed_int(md, r->ts_ms);
    feed_int(md, r->user_id);
    feed(md, r->user);
    feed_int(md, r->team_id);
    feed(md, r->team);
    feed(md, r->integration);
    feed(md, r->connection_id);
    feed(md, r->operation);
    feed(md, r->access);
    feed(md, r->outcome);
    feed_int(md, r->http_status);
    feed(md, duration);
    feed(md, r->approval_id);
    feed(md, r->request_id);
    feed(md, r->arguments);
    feed(md, r->detail);
    EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = 0;
}

void audit_flush(audit *a)
{
    if (!a || a->n == 0)
        return;
    size_t n = a->n < BATCH_MAX ? a->n : BATCH_MAX;
    audit_row *rows = malloc(n * sizeof *rows);
    int64_t *intents = malloc(n * sizeof *intents);
    if (!rows || !intents) {
        free(rows);
        free(intents);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        rows[i] = a->items[i].row;
        intents[i] = a->items[i].intent;
    }
    ferr err = {0};
    if (store_audit_append(a->db, rows, n, intents, audit_hash, &err) == 0) {
        for (size_t i = 0; i < n; i++)
            free_row(&a->items[i].row);
        memmove(a->items, a->items + n, (a->n - n) * sizeof *a->items);
        a->n -= n;
    } else {
        /* Kept for the next attempt: the calls happened and are recorded
         * as intents already. */
        log_line *l = log_begin(LOG_ERROR, "audit write failed; will retry");
        log_str(l, "error", err.message);
        log_int(l, "queued", (long long)a->n);
        log_end(l);
    }
    ferr_clear(&err);
    free(rows);
    free(intents);
    if (a->n && a->timer) {
        struct timeval tv = {0, FLUSH_MS * 1000};
        evtimer_add(a->timer, &tv);
    }
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    audit_flush(arg);
}

audit *audit_new(store *db, struct event_base *base)
{
    audit *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->db = db;
    if (base)
        a->timer = evtimer_new(base, on_timer, a);
    return a;
}

void audit_free(audit *a)
{
    if (!a)
        return;
    for (int tries = 0; a->n && tries < 3; tries++)
        audit_flush(a);
    for (size_t i = 0; i < a->n; i++)
        free_row(&a->items[i].row);
    free(a->items);
    if (a->timer)
        event_free(a->timer);
    free(a);
}

int audit_begin(audit *a, int64_t team_id, const char *operation, const char *request_id, int64_t *intent,
                ferr *err)
{
    *intent = 0;
    if (store_audit_intent(a->db, team_id, operation, request_id, intent, err) < 0) {
        err->status = 503;
        ferr_set(err, FERR_INTERNAL, "the audit log cannot be written, so the call was not made");
        return -1;
    }
    return 0;
}

void audit_end(audit *a, int64_t intent, const audit_row *row)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        queued *items = realloc(a->items, cap * sizeof *items);
        if (!items)
            return;
        a->items = items;
        a->cap = cap;
    }
    queued *q = &a->items[a->n++];
    copy_row(&q->row, row);
    if (!q->row.ts_ms)
        q->row.ts_ms = now_ms();
    q->intent = intent;
    if (!a->timer) {
        audit_flush(a);
    } else if (a->n == 1 || a->n >= BATCH_MAX) {
        struct timeval tv = {0, a->n >= BATCH_MAX ? 0 : FLUSH_MS * 1000};
        evtimer_add(a->timer, &tv);
    }
}

int audit_event(audit *a, const audit_row *row, ferr *err)
{
    audit_row r = *row;
    if (!r.ts_ms)
        r.ts_ms = now_ms();
    /* Keep the chain in order: what is queued goes first. */
    audit_flush(a);
    if (store_audit_append(a->db, &r, 1, NULL, audit_hash, err) < 0) {
        err->status = 503;
        return -1;
    }
    return 0;
}

typedef struct verify_ctx {
    char expected_prev[80];
    int64_t rows;
    int64_t broken_id;
    const char *reason;
} verify_ctx;

static int verify_one(void *ud, const audit_row *r)
{
    verify_ctx *v = ud;
    v->rows++;
    if (!r->prev_hash || strcmp(r->prev_hash, v->expected_prev) != 0) {
        v->broken_id = r->id;
        v->reason = "its link to the previous row does not match (a row before it was changed, removed or added)";
        return 1;
    }
    char hash[80];
    audit_hash(r, r->prev_hash, hash);
    if (!r->hash || strcmp(hash, r->hash) != 0) {
        v->broken_id = r->id;
        v->reason = "its content does not match its hash (the row was changed)";
        return 1;
    }
    snprintf(v->expected_prev, sizeof v->expected_prev, "%s", r->hash);
    return 0;
}

json_t *audit_verify(store *db, ferr *err)
{
    verify_ctx v = {.expected_prev = "0"};
    if (store_audit_walk(db, verify_one, &v, err) < 0)
        return NULL;
    json_t *out = json_pack("{s:b, s:I}", "ok", v.broken_id == 0, "rows_checked", (json_int_t)v.rows);
    if (v.broken_id)
        json_object_set_new(out, "broken", json_pack("{s:I, s:s}", "id", (json_int_t)v.broken_id, "reason", v.reason));
    return out;
}
