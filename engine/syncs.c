#include "syncs.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <lauxlib.h>
#include <openssl/evp.h>

#include "chunker.h"
#include "connections.h"
#include "jsonfmt.h"
#include "log.h"
#include "lua_json.h"
#include "metrics.h"
#include "oauth.h"

#define DEFAULT_CHUNK_SIZE 1000
#define DEFAULT_OVERLAP 100
#define DEFAULT_ATTEMPTS 4
#define DEFAULT_RETRY_BASE_MS 1000
#define DEFAULT_MAX_WAIT_MS 3600000
#define MAX_RETRY_AFTER_S 86400.0
#define DEFAULT_CPU_MS 600000u
#define DEFAULT_SLICE_MS 1000u
#define DEFAULT_MAX_PENDING 50000
#define DEFAULT_MAX_PENDING_BYTES ((size_t)256 << 20)
#define RECONCILE_EVERY_S 15
#define JOB_KIND "sync"

/* A change held until the next checkpoint; its strings follow it in one
 * allocation. */
typedef struct pending_op {
    int is_delete;
    unsigned char hash[16];
    int64_t updated_ms;
    const char *kind, *external_id, *title, *url, *updated_at, *data, *text;
    size_t text_len;
    size_t bytes;
    char block[];
} pending_op;

struct syncs {
    syncs_config cfg;
    sched_kind kind;
    sync_run *runs;
    size_t nruns;
    EVP_MD_CTX *md_ctx;
    EVP_MD *md;
    syncs_ended_fn ended;
    void *ended_ud;
    struct event *reconcile_timer;
    /* Scratch for commits, reused: the loop runs one at a time. */
    store_record_op *ops;
    size_t ops_cap;
    chunk_span *spans;
    size_t spans_cap;
    size_t *span_start;
    size_t span_start_cap;
};

struct sync_run {
    syncs *y;
    sync_run *prev, *next;
    sched_run *sr;
    provider *p;
    provider_sync *ps;
    char job_id[200];
    char label[200];              /* "<slug>:sync:<name>": audit operation, log and metrics label */
    store_connection conn;
    int has_conn;
    credentials creds;
    principal owner;
    int has_owner;
    lua_ctx lctx;
    lhost_task *task;
    oauth_waiter *refresh;
    struct event *timer;          /* waiting before the next attempt */
    int64_t wait_ms;
    double wait_until;            /* monotonic ms */
    store_sync_run rec;
    char *cursor;                 /* the committed cursor, JSON text (NULL: none) */
    pending_op **ops;
    size_t nops, cap, pending_bytes;
    int64_t audit_intent;
    int audited;
    int lost;                     /* the lease is gone: nothing more may be committed */
    int transient;                /* transient failures in a row */
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static json_t *iso(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[64];
    snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
}

int64_t syncs_parse_time(const char *text)
{
    if (!text)
        return 0;
    int y, mo, d, h = 0, mi = 0, s = 0, n = 0;
    if (sscanf(text, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return 0;
    const char *p = text + 10;
    int64_t frac = 0, offset = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        int m = 0;
        if (sscanf(p + 1, "%2d:%2d:%2d%n", &h, &mi, &s, &m) != 3 || m != 8)
            return 0;
        p += 9;
        if (*p == '.') {
            int64_t scale = 100;
            for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
                frac += scale > 0 ? (*p - '0') * scale : 0;
        }
        if (*p == 'Z' || *p == 'z')
            p++;
        else if (*p == '+' || *p == '-') {
            int oh, om, k = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5)
                return 0;
            offset = (int64_t)(oh * 60 + om) * 60000 * (*p == '-' ? -1 : 1);
            p += 6;
        } else
            return 0;
    }
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
        return 0;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = s};
    return (int64_t)timegm(&tm) * 1000 + frac - offset;
}

/* ---- the run's record ---- */

json_t *syncs_run_json(const store_sync_run *r)
{
    int64_t end = r->ended_at ? r->ended_at : now_ms();
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:s}",
                          "id", r->id, "connection_id", r->connection_id, "sync", r->sync, "trigger", r->trigger,
                          "status", r->status, "started_at", iso(r->started_at), "ended_at", iso(r->ended_at),
                          "duration_ms", (json_int_t)(end - r->started_at), "attempts", (json_int_t)r->attempts,
                          "pages", (json_int_t)r->pages, "requests", (json_int_t)r->requests, "records", "added",
                          (json_int_t)r->added, "updated", (json_int_t)r->updated, "deleted", (json_int_t)r->deleted,
                          "unchanged", (json_int_t)r->unchanged, "waited_ms", (json_int_t)r->waited_ms, "owner",
                          r->owner);
    json_object_set_new(o, "error", r->error[0] || r->error_code[0]
                                        ? json_pack("{s:s, s:s}", "code", r->error_code[0] ? r->error_code : "internal",
                                                    "message", r->error)
                                        : json_null());
    return o;
}

/* ---- pending changes ---- */

static void drop_pending(sync_run *r)
{
    for (size_t i = 0; i < r->nops; i++)
        free(r->ops[i]);
    r->nops = 0;
    r->pending_bytes = 0;
}

static int room_for(sync_run *r, size_t bytes, ferr *err)
{
    syncs *y = r->y;
    if (r->lost)
        return ferr_set(err, FERR_INTERNAL, "this sync run lost its lease to another ferry process; it cannot "
                        "write any more");
    if (r->nops >= y->cfg.max_pending || r->pending_bytes + bytes > y->cfg.max_pending_bytes)
        return ferr_set(err, FERR_SCRIPT_ERROR, "too many records since the last ctx.checkpoint (at most %zu "
                        "records or %zu MiB): checkpoint after every page", y->cfg.max_pending,
                        y->cfg.max_pending_bytes >> 20);
    if (r->nops == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        pending_op **p = realloc(r->ops, cap * sizeof *p);
        if (!p)
            return ferr_set(err, FERR_INTERNAL, "out of memory");
        r->ops = p;
        r->cap = cap;
    }
    return 0;
}

/* Copies s (may be NULL) into the op's block. */
static const char *put(char **at, const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *dst = *at;
    memcpy(dst, s, n);
    dst[n] = 0;
    *at += n + 1;
    return dst;
}

static size_t len0(const char *s) { return s ? strlen(s) + 1 : 0; }

static void hash_field(EVP_MD_CTX *m, const char *s, size_t n)
{
    /* Length-prefixed, with absent distinct from empty. */
    unsigned char len[9];
    uint64_t v = s ? (uint64_t)n : UINT64_MAX;
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)(v >> (8 * i));
    len[8] = s ? 1 : 0;
    EVP_DigestUpdate(m, len, sizeof len);
    if (s && n)
        EVP_DigestUpdate(m, s, n);
}

int sync_run_upsert(sync_run *r, const sync_record *rec, ferr *err)
{
    size_t text_len = rec->text ? rec->text_len : 0;
    size_t bytes = strlen(rec->kind) + 1 + strlen(rec->external_id) + 1 + len0(rec->title) + len0(rec->url) +
                   len0(rec->updated_at) + len0(rec->data) + (rec->text ? text_len + 1 : 0);
    if (room_for(r, bytes, err) < 0)
        return -1;
    pending_op *op = malloc(sizeof *op + bytes);
    if (!op)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    char *at = op->block;
    op->is_delete = 0;
    op->updated_ms = rec->updated_ms;
    op->kind = put(&at, rec->kind, strlen(rec->kind));
    op->external_id = put(&at, rec->external_id, strlen(rec->external_id));
    op->title = put(&at, rec->title, rec->title ? strlen(rec->title) : 0);
    op->url = put(&at, rec->url, rec->url ? strlen(rec->url) : 0);
    op->updated_at = put(&at, rec->updated_at, rec->updated_at ? strlen(rec->updated_at) : 0);
    op->data = put(&at, rec->data, rec->data ? strlen(rec->data) : 0);
    op->text = put(&at, rec->text, text_len);
    op->text_len = text_len;
    op->bytes = bytes;
    /* What makes a replayed page a no-op: the content and where it goes. */
    syncs *y = r->y;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    EVP_DigestInit_ex(y->md_ctx, y->md, NULL);
    hash_field(y->md_ctx, r->ps->category, strlen(r->ps->category));
    hash_field(y->md_ctx, op->title, op->title ? strlen(op->title) : 0);
    hash_field(y->md_ctx, op->url, op->url ? strlen(op->url) : 0);
    hash_field(y->md_ctx, op->updated_at, op->updated_at ? strlen(op->updated_at) : 0);
    hash_field(y->md_ctx, op->data, op->data ? strlen(op->data) : 0);
    hash_field(y->md_ctx, op->text, text_len);
    EVP_DigestFinal_ex(y->md_ctx, digest, &dlen);
    memcpy(op->hash, digest, sizeof op->hash);
    r->ops[r->nops++] = op;
    r->pending_bytes += bytes;
    return 0;
}

int sync_run_delete(sync_run *r, const char *kind, const char *external_id, ferr *err)
{
    size_t bytes = strlen(kind) + 1 + strlen(external_id) + 1;
    if (room_for(r, bytes, err) < 0)
        return -1;
    pending_op *op = calloc(1, sizeof *op + bytes);
    if (!op)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    char *at = op->block;
    op->is_delete = 1;
    op->kind = put(&at, kind, strlen(kind));
    op->external_id = put(&at, external_id, strlen(external_id));
    op->bytes = bytes;
    r->ops[r->nops++] = op;
    r->pending_bytes += bytes;
    return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Commits what is pending; set_cursor with `cursor`. */
static int commit(sync_run *r, int set_cursor, const char *cursor, ferr *err)
{
    syncs *y = r->y;
    if (r->lost)
        return ferr_set(err, FERR_INTERNAL, "this sync run lost its lease to another ferry process; it cannot "
                        "write any more");
    if (grow((void **)&y->ops, &y->ops_cap, r->nops + 1, sizeof *y->ops) < 0 ||
        grow((void **)&y->span_start, &y->span_start_cap, r->nops + 1, sizeof *y->span_start) < 0)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    /* Chunk every record first (the span array may move while it grows),
     * then point each op at its spans. */
    size_t nspans = 0;
    for (size_t i = 0; i < r->nops; i++) {
        pending_op *op = r->ops[i];
        y->span_start[i] = nspans;
        if (op->is_delete || !op->text_len)
            continue;
        chunk_span *tmp = NULL;
        size_t tcap = 0;
        size_t n = chunker_split(op->text, op->text_len, y->cfg.chunk_size, (size_t)y->cfg.chunk_overlap, &tmp,
                                 &tcap);
        if (n == (size_t)-1 ||
            grow((void **)&y->spans, &y->spans_cap, nspans + n + 1, sizeof *y->spans) < 0) {
            free(tmp);
            return ferr_set(err, FERR_INTERNAL, "out of memory");
        }
        memcpy(y->spans + nspans, tmp, n * sizeof *tmp);
        free(tmp);
        nspans += n;
    }
    y->span_start[r->nops] = nspans;
    for (size_t i = 0; i < r->nops; i++) {
        pending_op *op = r->ops[i];
        y->ops[i] = (store_record_op){
            .is_delete = op->is_delete, .kind = op->kind, .external_id = op->external_id, .title = op->title,
            .url = op->url, .updated_at = op->updated_at, .data = op->data, .updated_ms = op->updated_ms,
            .hash = op->hash, .text = op->text, .chunks = y->spans + y->span_start[i],
            .nchunks = y->span_start[i + 1] - y->span_start[i],
        };
    }
    store_sync_page page = {
        .job_id = r->job_id, .owner = sched_owner(y->cfg.sched), .lease_until = sched_lease_until(y->cfg.sched),
        .run_id = r->rec.id, .connection_id = r->conn.id, .sync = r->ps->name, .integration = r->p->slug,
        .category = r->ps->category, .team_id = r->conn.team_id,
        .user_id = strcmp(r->conn.scope, "team") == 0 ? 0 : r->conn.user_id,
        .set_cursor = set_cursor, .cursor = cursor, .ops = y->ops, .nops = r->nops,
    };
    store_sync_counts n;
    int rc = store_sync_commit(y->cfg.svc.db, &page, &n, err);
    if (rc > 0) {
        r->lost = 1;
        drop_pending(r);
        return ferr_set(err, FERR_INTERNAL, "this sync run lost its lease to another ferry process; its last "
                        "page was not written");
    }
    if (rc < 0)
        return -1;   /* kept: the next checkpoint may still commit it */
    drop_pending(r);
    r->transient = 0;   /* progress: the attempts limit counts failures in a row */
    r->rec.pages++;
    r->rec.added += n.added;
    r->rec.updated += n.updated;
    r->rec.deleted += n.deleted;
    r->rec.unchanged += n.unchanged;
    metrics_add(METRIC_SYNC_RECORDS, (double)n.added, r->label, "added");
    metrics_add(METRIC_SYNC_RECORDS, (double)n.updated, r->label, "updated");
    metrics_add(METRIC_SYNC_RECORDS, (double)n.deleted, r->label, "deleted");
    if (set_cursor) {
        char *copy = cursor ? strdup(cursor) : NULL;
        if (cursor && !copy)
            return ferr_set(err, FERR_INTERNAL, "out of memory");
        free(r->cursor);
        r->cursor = copy;
    }
    return 0;
}

int sync_run_checkpoint(sync_run *r, const char *cursor, ferr *err)
{
    return commit(r, 1, cursor, err);
}

/* ---- the life of a run ---- */

static void unlink_run(sync_run *r)
{
    syncs *y = r->y;
    if (r->prev)
        r->prev->next = r->next;
    else
        y->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    y->nruns--;
}

static void free_run(sync_run *r)
{
    drop_pending(r);
    free(r->ops);
    free(r->cursor);
    credentials_wipe(&r->creds);
    if (r->has_conn)
        store_connection_clear(&r->conn);
    free(r);
}

/* Ends the run: its row, audit, the connection, metrics, a log line, the
 * scheduler. `e` NULL on success. */
static void finish(sync_run *r, const char *status, const ferr *e, int64_t retry_at)
{
    syncs *y = r->y;
    store *db = y->cfg.svc.db;
    int64_t now = now_ms();
    snprintf(r->rec.status, sizeof r->rec.status, "%s", status);
    r->rec.ended_at = now;
    r->rec.requests = (int64_t)r->lctx.requests;
    if (e) {
        snprintf(r->rec.error_code, sizeof r->rec.error_code, "%s", ferr_code_name(e->code));
        snprintf(r->rec.error, sizeof r->rec.error, "%s", e->message);
    }
    ferr ignore = {0};
    store_sync_run_update(db, &r->rec, &ignore);
    ferr_clear(&ignore);
    const char *outcome = e ? ferr_code_name(e->code) : "ok";
    if (r->audited && y->cfg.audit) {
        char args[600];
        snprintf(args, sizeof args,
                 "{\"added\":%lld,\"attempts\":%lld,\"deleted\":%lld,\"pages\":%lld,\"requests\":%lld,\"run_id\":\"%s\","
                 "\"status\":\"%s\",\"sync\":\"%s\",\"updated\":%lld}",
                 (long long)r->rec.added, (long long)r->rec.attempts, (long long)r->rec.deleted,
                 (long long)r->rec.pages, (long long)r->rec.requests, r->rec.id, status, r->ps->name,
                 (long long)r->rec.updated);
        audit_row row = {
            .user_id = r->has_owner ? r->owner.user_id : 0,
            .user = r->has_owner ? r->owner.user : NULL,
            .team_id = r->has_owner ? r->owner.team_id : r->conn.team_id,
            .team = r->has_owner ? r->owner.team : NULL,
            .integration = r->p->slug,
            .connection_id = r->conn.id,
            .operation = r->label,
            .access = "read",
            .outcome = outcome,
            .http_status = e ? ferr_status(e) : 200,
            .duration_ms = (double)(now - r->rec.started_at),
            .request_id = r->rec.id,
            .arguments = args,
            .detail = e ? e->message : NULL,
        };
        audit_end(y->cfg.audit, r->audit_intent, &row);
    }
    if (!r->lost) {
        char msg[600];
        if (e)
            snprintf(msg, sizeof msg, "sync %s: %s", r->ps->name, e->message);
        store_connection_sync_result(db, r->conn.id, strcmp(status, "succeeded") == 0 ? now : 0, e ? msg : NULL,
                                     &ignore);
        ferr_clear(&ignore);
        if (e && e->code == FERR_RECONNECT_REQUIRED) {
            store_connection_set_status(db, r->conn.id, "reconnect_required", e->message, &ignore);
            ferr_clear(&ignore);
        }
    }
    metrics_add(METRIC_SYNC_RUNS, 1, r->label, status);
    metrics_add(METRIC_SYNCS_RUNNING, -1, NULL, NULL);
    log_line *l = log_begin(e ? LOG_WARN : LOG_INFO, "sync run");
    log_str(l, "run", r->rec.id);
    log_str(l, "sync", r->label);
    log_str(l, "connection", r->conn.id);
    log_str(l, "status", status);
    log_int(l, "attempts", r->rec.attempts);
    log_int(l, "pages", r->rec.pages);
    log_int(l, "requests", r->rec.requests);
    log_int(l, "added", r->rec.added);
    log_int(l, "updated", r->rec.updated);
    log_int(l, "deleted", r->rec.deleted);
    log_int(l, "waited_ms", r->rec.waited_ms);
    log_num(l, "duration_ms", (double)(now - r->rec.started_at));
    if (e)
        log_str(l, "error", e->message);
    log_end(l);

    unlink_run(r);
    char run_id[40];
    snprintf(run_id, sizeof run_id, "%s", r->rec.id);
    sched_outcome o = {.status = status, .error = e ? e->message : NULL, .retry_at_ms = retry_at};
    sched_run *sr = r->sr;
    free_run(r);
    sched_done(sr, &o);
    if (y->ended)
        y->ended(y->ended_ud, run_id);
}

static void attempt(sync_run *r);

static double precise_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int arm_wait(sync_run *r, double ms)
{
    /* libevent's timers run on a coarse clock and may fire a few ms early;
     * an upstream asked for at least this long, so the wait is checked on
     * the precise clock and topped up. */
    event_base_update_cache_time(r->y->cfg.svc.base);
    int64_t us = (int64_t)(ms * 1000.0) + 1000;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    return evtimer_add(r->timer, &tv);
}

static void on_wait_over(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    sync_run *r = arg;
    double left = r->wait_until - precise_ms();
    if (left > 0 && arm_wait(r, left) == 0)
        return;
    event_free(r->timer);
    r->timer = NULL;
    r->rec.waited_ms += r->wait_ms;
    attempt(r);
}

static void wait_then_retry(sync_run *r, int64_t ms)
{
    r->wait_ms = ms;
    r->wait_until = precise_ms() + (double)ms;
    r->timer = evtimer_new(r->y->cfg.svc.base, on_wait_over, r);
    if (!r->timer || arm_wait(r, (double)ms) < 0) {
        ferr e = {0};
        ferr_set(&e, FERR_INTERNAL, "cannot wait before retrying the sync");
        finish(r, r->rec.pages ? "partial" : "failed", &e, 0);
        ferr_clear(&e);
    }
}

static int transient(ferr_code c)
{
    return c == FERR_UPSTREAM_ERROR || c == FERR_UPSTREAM_TIMEOUT || c == FERR_INTERNAL ||
           c == FERR_UPSTREAM_RATE_LIMITED;
}

/* An attempt failed: what was not checkpointed is dropped, and the run
 * resumes from its last checkpoint, later, or ends. */
static void failed_attempt(sync_run *r, ferr *e)
{
    syncs *y = r->y;
    drop_pending(r);
    const char *ended = r->rec.pages ? "partial" : "failed";
    if (r->lost) {
        finish(r, "failed", e, 0);
        return;
    }
    json_t *ra = e->details ? json_object_get(e->details, "retry_after") : NULL;
    double retry_after = json_is_number(ra) ? json_number_value(ra) : 0;
    /* A Retry-After beyond a day is an upstream's mistake (or a hostile
     * one): a day, so the job still comes back. */
    if (!(retry_after <= MAX_RETRY_AFTER_S))
        retry_after = MAX_RETRY_AFTER_S;
    if (e->code == FERR_UPSTREAM_RATE_LIMITED && retry_after > 0) {
        /* The upstream said exactly how long: wait that long, then resume
         * from the last checkpoint. This is not a failure. */
        int64_t ms = (int64_t)(retry_after * 1000.0 + 0.5);
        if (r->rec.waited_ms + ms > y->cfg.max_wait_ms) {
            finish(r, ended, e, now_ms() + ms);
            return;
        }
        log_line *l = log_begin(LOG_INFO, "sync waits for the upstream's Retry-After");
        log_str(l, "run", r->rec.id);
        log_str(l, "sync", r->label);
        log_int(l, "wait_ms", ms);
        log_end(l);
        wait_then_retry(r, ms);
        return;
    }
    if (transient(e->code) && ++r->transient < y->cfg.max_attempts) {
        /* Exponential backoff with full jitter on the upper half. */
        double base = (double)y->cfg.retry_base_ms * (double)(1LL << (r->transient - 1 < 16 ? r->transient - 1 : 16));
        int64_t ms = (int64_t)(base * (0.5 + 0.5 * ((double)random() / (double)RAND_MAX)));
        log_line *l = log_begin(LOG_INFO, "sync retries after an error");
        log_str(l, "run", r->rec.id);
        log_str(l, "sync", r->label);
        log_str(l, "error", e->message);
        log_int(l, "wait_ms", ms);
        log_end(l);
        wait_then_retry(r, ms);
        return;
    }
    finish(r, ended, e, 0);
}

/* `return nil, err` from run: a string or {code=, message=, ...}. */
static void error_from_value(lua_State *L, int idx, ferr *e)
{
    if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
        ferr_set(e, FERR_UPSTREAM_ERROR, "%s", lua_tostring(L, idx));
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE) {
        ferr_set(e, FERR_SCRIPT_ERROR, "the sync returned an error of type %s", luaL_typename(L, idx));
        return;
    }
    /* Raw reads: no metamethod of the script's runs here, outside its task. */
    if (!lua_checkstack(L, 3)) {
        ferr_set(e, FERR_SCRIPT_ERROR, "the sync returned an error");
        return;
    }
    lua_pushliteral(L, "code");
    lua_rawget(L, idx);
    lua_pushliteral(L, "message");
    lua_rawget(L, idx);
    lua_pushliteral(L, "retry_after");
    lua_rawget(L, idx);
    const char *code = lua_type(L, -3) == LUA_TSTRING ? lua_tostring(L, -3) : NULL;
    const char *msg = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
    ferr_code c = ferr_code_from_name(code);
    ferr_set(e, c ? c : FERR_UPSTREAM_ERROR, "%s", msg ? msg : code ? code : "the sync failed");
    if (code && !c)
        ferr_detail(e, "code", json_string(code));
    if (lua_type(L, -1) == LUA_TNUMBER)
        ferr_detail(e, "retry_after", json_real(lua_tonumber(L, -1)));
    lua_pop(L, 3);
}

static void on_task_done(lhost_task *t, lua_State *L, int nres, ferr *err, void *arg)
{
    (void)t;
    sync_run *r = arg;
    r->task = NULL;
    ferr e = {0};
    if (err)
        ferr_move(&e, err);
    else {
        int base = lua_gettop(L) - nres + 1;
        if (nres >= 2 && lua_isnil(L, base) && !lua_isnil(L, base + 1))
            error_from_value(L, base + 1, &e);
    }
    if (!e.code && r->nops > 0)
        commit(r, 0, NULL, &e);   /* returned without a last checkpoint: keep the cursor, commit the records */
    if (e.code)
        failed_attempt(r, &e);
    else
        finish(r, "succeeded", NULL, 0);
    ferr_clear(&e);
}

static int push_run_args(lua_State *L, void *ud)
{
    sync_run *r = ud;
    lua_ctx_push(L, &r->lctx);
    if (!r->cursor || !lua_json_decode_push(L, r->cursor, strlen(r->cursor))) {
        if (r->cursor)
            lua_pop(L, 1);
        lua_pushnil(L);
    }
    return 2;
}

static void attempt(sync_run *r)
{
    syncs *y = r->y;
    r->rec.attempts++;
    lhost_task_limits limits = {.cpu_ms = y->cfg.cpu_ms, .slice_ms = y->cfg.slice_ms};
    ferr e = {0};
    if (lhost_task_start_limited(r->p->host, r->ps->run_ref, push_run_args, r, on_task_done, r, &r->lctx,
                                 r->rec.id + 4, r->label, &limits, &r->task, &e) < 0) {
        finish(r, r->rec.pages ? "partial" : "failed", &e, 0);
        ferr_clear(&e);
    }
}

/* The connection's OAuth token was refreshed before the run (or not). */
static void on_refreshed(void *arg, const ferr *rerr)
{
    sync_run *r = arg;
    syncs *y = r->y;
    r->refresh = NULL;
    ferr e = {0};
    if (rerr) {
        ferr_set(&e, rerr->code, "%s", rerr->message);
    } else {
        char id[40];
        snprintf(id, sizeof id, "%s", r->conn.id);
        credentials_wipe(&r->creds);
        store_connection_clear(&r->conn);
        if (store_connection_get(y->cfg.svc.db, id, &r->conn, &e) != 0) {
            if (!e.code)
                ferr_set(&e, FERR_NOT_FOUND, "connection %s was deleted", id);
        } else {
            connections_open(y->cfg.svc.db, y->cfg.vault, &r->conn, &r->creds, &e);
        }
    }
    if (e.code)
        finish(r, "failed", &e, 0);
    else
        attempt(r);
    ferr_clear(&e);
}

/* Skips a run without recording one: nothing could be done (the
 * connection needs a person, or the provider is gone). */
static void skip(sched_run *sr, const char *why)
{
    sched_outcome o = {.status = "skipped", .error = why};
    sched_done(sr, &o);
}

static void kind_start(void *ud, sched_run *sr, const store_job *j, int manual)
{
    syncs *y = ud;
    store *db = y->cfg.svc.db;
    store_connection conn;
    ferr e = {0};
    int found = store_connection_get(db, j->subject, &conn, &e);
    ferr_clear(&e);
    if (found != 0) {
        char id[200];
        snprintf(id, sizeof id, "%s", j->id);
        skip(sr, "the connection no longer exists");
        store_job_delete(db, id, &e);
        ferr_clear(&e);
        return;
    }
    provider *p = providers_find(y->cfg.providers, conn.integration);
    provider_sync *ps = NULL;
    for (size_t i = 0; p && i < p->nsyncs; i++)
        if (strcmp(p->syncs[i].name, j->name) == 0)
            ps = &p->syncs[i];
    if (!ps || ps->run_ref == LUA_NOREF) {
        store_connection_clear(&conn);
        skip(sr, p ? "the provider no longer declares this sync" : "the provider is not loaded");
        return;
    }
    if (strcmp(conn.status, "reconnect_required") == 0 || strcmp(conn.status, "disabled") == 0) {
        store_connection_clear(&conn);
        skip(sr, "the connection needs to be reconnected");
        return;
    }

    sync_run *r = calloc(1, sizeof *r);
    if (!r) {
        store_connection_clear(&conn);
        skip(sr, "out of memory");
        return;
    }
    r->y = y;
    r->sr = sr;
    r->p = p;
    r->ps = ps;
    r->conn = conn;
    r->has_conn = 1;
    snprintf(r->job_id, sizeof r->job_id, "%s", j->id);
    snprintf(r->label, sizeof r->label, "%s:sync:%s", p->slug, ps->name);
    r->next = y->runs;
    if (y->runs)
        y->runs->prev = r;
    y->runs = r;
    y->nruns++;
    metrics_add(METRIC_SYNCS_RUNNING, 1, NULL, NULL);

    store_sync_run *rec = &r->rec;
    snprintf(rec->id, sizeof rec->id, "%s", sched_run_id(sr));
    snprintf(rec->connection_id, sizeof rec->connection_id, "%s", conn.id);
    snprintf(rec->sync, sizeof rec->sync, "%s", ps->name);
    snprintf(rec->trigger, sizeof rec->trigger, "%s", manual ? "manual" : "schedule");
    snprintf(rec->owner, sizeof rec->owner, "%s", sched_owner(y->cfg.sched));
    snprintf(rec->status, sizeof rec->status, "running");
    rec->started_at = now_ms();
    if (store_sync_run_insert(db, rec, &e) < 0 ||
        store_sync_state_get(db, conn.id, ps->name, &r->cursor, NULL, &e) < 0)
        goto fail;
    r->has_owner = store_principal_by_ids(db, conn.user_id, conn.team_id, &r->owner) == 0;
    /* Fail closed: no audit intent, no requests. */
    if (y->cfg.audit) {
        if (audit_begin(y->cfg.audit, conn.team_id, r->label, rec->id, &r->audit_intent, &e) < 0)
            goto fail;
        r->audited = 1;
    }
    if (p->authn.kind != AUTH_NONE && connections_open(db, y->cfg.vault, &r->conn, &r->creds, &e) < 0)
        goto fail;
    r->lctx = (lua_ctx){
        .svc = &y->cfg.svc, .provider = p, .request_id = rec->id + 4, .tool = r->label,
        .connection_id = r->conn.id, .who = r->has_owner ? &r->owner : NULL, .conn = &r->conn,
        .creds = p->authn.kind != AUTH_NONE ? &r->creds : NULL, .sync = r, .sync_name = ps->name,
        .run_id = rec->id,
    };
    oauth *o = y->cfg.svc.oauth;
    if (o && p->authn.kind == AUTH_OAUTH2 && oauth_needs_refresh(o, p, &r->conn)) {
        oauth_waiter *w = oauth_refresh(o, &r->conn, on_refreshed, r);
        if (w)
            r->refresh = w;   /* else on_refreshed has run already */
        return;
    }
    attempt(r);
    return;
fail:
    finish(r, "failed", &e, 0);
    ferr_clear(&e);
}

static sync_run *find_run(syncs *y, sched_run *sr)
{
    for (sync_run *r = y->runs; r; r = r->next)
        if (r->sr == sr)
            return r;
    return NULL;
}

static void kind_stop(void *ud, sched_run *sr, const char *why)
{
    syncs *y = ud;
    sync_run *r = find_run(y, sr);
    if (!r) {
        sched_outcome o = {.status = "failed", .error = why};
        sched_done(sr, &o);
        return;
    }
    if (r->refresh)
        oauth_cancel(r->refresh);
    r->refresh = NULL;
    if (r->task)
        lhost_task_abort(r->task);
    r->task = NULL;
    if (r->timer)
        event_free(r->timer);
    r->timer = NULL;
    drop_pending(r);
    /* Not the connection's fault: its last_error and status stay as they are. */
    r->lost = 1;
    ferr e = {0};
    ferr_set(&e, FERR_INTERNAL, "%s; the run resumes from its last checkpoint", why);
    /* Stopping for shutdown: due again at once, so the next process (or
     * this one after a restart) picks it up without waiting. */
    finish(r, r->rec.pages ? "partial" : "failed", &e, now_ms());
    ferr_clear(&e);
}

static void kind_interrupted(void *ud, const char *run_id, const char *why)
{
    syncs *y = ud;
    ferr e = {0};
    int n = store_sync_runs_interrupt(y->cfg.svc.db, run_id, now_ms(), why, &e);
    if (n > 0) {
        log_line *l = log_begin(LOG_WARN, "sync runs interrupted by a stopped process");
        log_str(l, "run", run_id);
        log_int(l, "runs", n);
        log_end(l);
    }
    ferr_clear(&e);
}

/* ---- setup ---- */

syncs *syncs_new(const syncs_config *cfg)
{
    syncs *y = calloc(1, sizeof *y);
    if (!y)
        return NULL;
    y->cfg = *cfg;
    if (!y->cfg.chunk_size)
        y->cfg.chunk_size = DEFAULT_CHUNK_SIZE;
    if (y->cfg.chunk_overlap < 0)
        y->cfg.chunk_overlap = DEFAULT_OVERLAP;
    if (y->cfg.max_attempts <= 0)
        y->cfg.max_attempts = DEFAULT_ATTEMPTS;
    if (y->cfg.retry_base_ms <= 0)
        y->cfg.retry_base_ms = DEFAULT_RETRY_BASE_MS;
    if (y->cfg.max_wait_ms <= 0)
        y->cfg.max_wait_ms = DEFAULT_MAX_WAIT_MS;
    if (!y->cfg.cpu_ms)
        y->cfg.cpu_ms = DEFAULT_CPU_MS;
    if (!y->cfg.slice_ms)
        y->cfg.slice_ms = DEFAULT_SLICE_MS;
    if (!y->cfg.max_pending)
        y->cfg.max_pending = DEFAULT_MAX_PENDING;
    if (!y->cfg.max_pending_bytes)
        y->cfg.max_pending_bytes = DEFAULT_MAX_PENDING_BYTES;
    y->md_ctx = EVP_MD_CTX_new();
    y->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    y->kind = (sched_kind){.name = JOB_KIND, .ud = y, .start = kind_start, .stop = kind_stop,
                           .interrupted = kind_interrupted};
    if (!y->md_ctx || !y->md || sched_register(cfg->sched, &y->kind) < 0) {
        EVP_MD_CTX_free(y->md_ctx);
        EVP_MD_free(y->md);
        free(y);
        return NULL;
    }
    return y;
}

void syncs_free(syncs *y)
{
    if (!y)
        return;
    /* The scheduler stops the runs (kind_stop); it must still exist. */
    sched_stop(y->cfg.sched, "ferry is shutting down");
    if (y->reconcile_timer)
        event_free(y->reconcile_timer);
    EVP_MD_CTX_free(y->md_ctx);
    EVP_MD_free(y->md);
    free(y->ops);
    free(y->spans);
    free(y->span_start);
    free(y);
}

void syncs_on_end(syncs *y, syncs_ended_fn fn, void *ud)
{
    y->ended = fn;
    y->ended_ud = ud;
}

size_t syncs_running(const syncs *y) { return y->nruns; }

/* ---- jobs for connections ---- */

static void job_id_of(char *out, size_t n, const char *connection_id, const char *sync)
{
    snprintf(out, n, JOB_KIND ":%s:%s", connection_id, sync);
}

typedef struct conn_ref {
    char id[40];
    provider *p;
} conn_ref;

typedef struct conn_list {
    syncs *y;
    conn_ref *items;
    size_t n, cap;
} conn_list;

/* Connections whose provider has syncs (collected first: jobs are written
 * after the query is done). */
static void collect_connection(void *ud, const char *id, const char *integration)
{
    conn_list *l = ud;
    provider *p = providers_find(l->y->cfg.providers, integration);
    if (!p || !p->nsyncs)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *q = realloc(l->items, cap * sizeof *l->items);
        if (!q)
            return;
        l->items = q;
        l->cap = cap;
    }
    snprintf(l->items[l->n].id, sizeof l->items[l->n].id, "%s", id);
    l->items[l->n++].p = p;
}

typedef struct prune_list {
    char (*ids)[200];
    size_t n, cap;
    syncs *y;
} prune_list;

static void collect_stale(void *ud, const store_job *j)
{
    prune_list *l = ud;
    store_connection conn;
    ferr e = {0};
    int found = store_connection_get(l->y->cfg.svc.db, j->subject, &conn, &e);
    ferr_clear(&e);
    int stale = found == 1;
    if (found == 0) {
        provider *p = providers_find(l->y->cfg.providers, conn.integration);
        stale = p != NULL;   /* a provider that is not loaded keeps its jobs: it may come back */
        for (size_t i = 0; p && i < p->nsyncs; i++)
            if (strcmp(p->syncs[i].name, j->name) == 0)
                stale = 0;
        store_connection_clear(&conn);
    }
    if (!stale)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->ids, cap * sizeof *l->ids);
        if (!p)
            return;
        l->ids = p;
        l->cap = cap;
    }
    snprintf(l->ids[l->n++], 200, "%s", j->id);
}

int syncs_reconcile(syncs *y, int full, ferr *err)
{
    store *db = y->cfg.svc.db;
    conn_list c = {.y = y};
    int rc = store_sync_connections(db, JOB_KIND, !full, collect_connection, &c, err);
    for (size_t i = 0; rc == 0 && i < c.n; i++)
        for (size_t k = 0; rc == 0 && k < c.items[i].p->nsyncs; k++) {
            provider_sync *ps = &c.items[i].p->syncs[k];
            char id[200];
            job_id_of(id, sizeof id, c.items[i].id, ps->name);
            rc = sched_ensure_job(y->cfg.sched, id, JOB_KIND, c.items[i].id, ps->name, ps->every, err);
        }
    free(c.items);
    if (rc < 0 || !full)
        return rc;
    prune_list l = {.y = y};
    if (store_jobs_list(db, JOB_KIND, collect_stale, &l, err) < 0) {
        free(l.ids);
        return -1;
    }
    for (size_t i = 0; i < l.n && rc == 0; i++)
        rc = store_job_delete(db, l.ids[i], err);
    free(l.ids);
    return rc;
}

static void on_reconcile(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    syncs *y = arg;
    ferr e = {0};
    if (syncs_reconcile(y, 0, &e) < 0) {
        log_line *l = log_begin(LOG_WARN, "cannot create sync jobs for new connections");
        log_str(l, "error", e.message);
        log_end(l);
    }
    ferr_clear(&e);
}

int syncs_start(syncs *y, ferr *err)
{
    if (syncs_reconcile(y, 1, err) < 0)
        return -1;
    y->reconcile_timer = event_new(y->cfg.svc.base, -1, EV_PERSIST, on_reconcile, y);
    struct timeval tv = {RECONCILE_EVERY_S, 0};
    if (!y->reconcile_timer || event_add(y->reconcile_timer, &tv) < 0)
        return ferr_set(err, FERR_INTERNAL, "cannot start the sync reconciler");
    return 0;
}

/* ---- the API's view ---- */

static provider_sync *find_sync(syncs *y, const char *integration, const char *name, provider **pout)
{
    provider *p = providers_find(y->cfg.providers, integration);
    if (pout)
        *pout = p;
    for (size_t i = 0; p && i < p->nsyncs; i++)
        if (strcmp(p->syncs[i].name, name) == 0)
            return &p->syncs[i];
    return NULL;
}

static json_t *sync_row_json(syncs *y, const store_sync_row *r)
{
    provider_sync *ps = find_sync(y, r->integration, r->job.name, NULL);
    json_t *cursor = r->cursor ? json_loads(r->cursor, JSON_DECODE_ANY, NULL) : NULL;
    json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:o, s:i, s:o, s:I, s:o, s:o, s:o}",
                          "connection_id", r->job.subject, "integration", r->integration, "sync", r->job.name,
                          "category", ps ? json_string(ps->category) : json_null(), "schedule", r->job.schedule,
                          "status", r->running_run[0] ? "running" : "idle", "next_run_at", iso(r->job.next_run_at),
                          "failures", r->job.failures, "cursor", cursor ? cursor : json_null(), "records",
                          (json_int_t)r->records, "cursor_updated_at", iso(r->cursor_updated_at), "running_run_id",
                          r->running_run[0] ? json_string(r->running_run) : json_null(), "last_run",
                          r->has_last ? syncs_run_json(&r->last) : json_null());
    if (ps && ps->description)
        json_object_set_new(o, "description", json_string(ps->description));
    if (r->job.last_status[0] && strcmp(r->job.last_status, "skipped") == 0)
        json_object_set_new(o, "skipped", json_string(r->job.last_error));
    return o;
}

typedef struct list_ctx {
    syncs *y;
    json_t *items;
} list_ctx;

static void add_row(void *ud, const store_sync_row *r)
{
    list_ctx *c = ud;
    json_array_append_new(c->items, sync_row_json(c->y, r));
}

json_t *syncs_list(syncs *y, const principal *who, const char *connection_id, ferr *err)
{
    if (connection_id) {
        store_connection conn;
        if (connections_get_visible(y->cfg.svc.db, who, connection_id, &conn, err) < 0)
            return NULL;
        store_connection_clear(&conn);
    }
    list_ctx c = {y, json_array()};
    if (store_syncs_list(y->cfg.svc.db, who->team_id, who->user_id, connection_id, now_ms(), add_row, &c, err) < 0) {
        json_decref(c.items);
        return NULL;
    }
    return json_pack("{s:o}", "syncs", c.items);
}

static void add_run(void *ud, const store_sync_run *r)
{
    json_array_append_new(ud, syncs_run_json(r));
}

/* The connection `who` may see (any when who is NULL), and its sync. */
static int resolve(syncs *y, const principal *who, const char *connection_id, const char *sync,
                   store_connection *conn, provider_sync **ps, provider **p, ferr *err)
{
    int rc = who ? connections_get_visible(y->cfg.svc.db, who, connection_id, conn, err)
                 : store_connection_get(y->cfg.svc.db, connection_id, conn, err);
    if (rc != 0) {
        if (rc == 1)
            ferr_set(err, FERR_NOT_FOUND, "no connection %s", connection_id);
        return -1;
    }
    *ps = find_sync(y, conn->integration, sync, p);
    if (!*ps) {
        ferr_set(err, FERR_NOT_FOUND, "%s has no sync named '%s'", conn->integration, sync);
        ferr_detail(err, "sync", json_string(sync));
        store_connection_clear(conn);
        return -1;
    }
    return 0;
}

json_t *syncs_get(syncs *y, const principal *who, const char *connection_id, const char *sync, int limit,
                  ferr *err)
{
    store_connection conn;
    provider_sync *ps;
    provider *p;
    if (resolve(y, who, connection_id, sync, &conn, &ps, &p, err) < 0)
        return NULL;
    store_connection_clear(&conn);
    list_ctx c = {y, json_array()};
    json_t *runs = json_array();
    json_t *out = NULL;
    if (store_syncs_list(y->cfg.svc.db, who->team_id, who->user_id, connection_id, now_ms(), add_row, &c, err) == 0 &&
        store_sync_runs_list(y->cfg.svc.db, connection_id, sync, limit, add_run, runs, err) == 0) {
        json_t *found = NULL;
        size_t i;
        json_t *v;
        json_array_foreach(c.items, i, v) if (strcmp(json_string_value(json_object_get(v, "sync")), sync) == 0)
            found = v;
        if (found) {
            json_object_set(found, "runs", runs);
            out = json_pack("{s:O}", "sync", found);
        } else {
            ferr_set(err, FERR_NOT_FOUND, "the sync %s of connection %s has no job yet", sync, connection_id);
        }
    }
    json_decref(runs);
    json_decref(c.items);
    return out;
}

int syncs_run_now(syncs *y, const principal *who, const char *connection_id, const char *sync, json_t **out,
                  ferr *err)
{
    *out = NULL;
    store_connection conn;
    provider_sync *ps;
    provider *p;
    if (resolve(y, who, connection_id, sync, &conn, &ps, &p, err) < 0)
        return -1;
    if (strcmp(conn.status, "reconnect_required") == 0) {
        ferr_set(err, FERR_RECONNECT_REQUIRED, "connection %s must be reconnected before it can sync", conn.id);
        connections_reconnect_details(p, conn.id, err);
        store_connection_clear(&conn);
        return -1;
    }
    store_connection_clear(&conn);
    char id[200], run_id[40];
    job_id_of(id, sizeof id, connection_id, sync);
    int started = 0;
    if (sched_ensure_job(y->cfg.sched, id, JOB_KIND, connection_id, sync, ps->every, err) < 0 ||
        sched_run_now(y->cfg.sched, id, run_id, &started, err) < 0)
        return -1;
    store_sync_run rec;
    if (!run_id[0] || store_sync_run_get(y->cfg.svc.db, run_id, &rec, err) != 0) {
        if (!err->code)
            ferr_set(err, FERR_INTERNAL, "the run of %s did not start", id);
        return -1;
    }
    *out = json_pack("{s:o, s:b}", "run", syncs_run_json(&rec), "started", started);
    return 0;
}
