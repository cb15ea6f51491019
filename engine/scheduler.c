#include "scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "cron.h"
#include "log.h"

#define MAX_KINDS 8
#define SWEEP_EVERY_MS 60000
/* A new job's first run comes within this (plus jitter at most a tenth of
 * its period): a new connection should sync soon, not at the next slot. */
#define FIRST_RUN_SPREAD_MS 10000

struct sched_run {
    sched *s;
    sched_run *prev, *next;
    const sched_kind *kind;
    store_job job;
    char run_id[40];
    int64_t started_at;
    int64_t renewed_at;
    int stopping;
};

struct sched {
    sched_config cfg;
    const sched_kind *kinds[MAX_KINDS];
    int nkinds;
    char owner[96];
    struct event *timer;
    int ticking;
    int stopped;
    sched_run *runs;
    size_t nruns;
    int64_t last_sweep;
    uint64_t rng;
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Jitter needs spread, not secrecy: xorshift64*, seeded at random. */
static double rnd(sched *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static void random_hex(char *out, size_t bytes)
{
    unsigned char raw[16];
    if (bytes > sizeof raw)
        bytes = sizeof raw;
    if (RAND_bytes(raw, (int)bytes) != 1)
        for (size_t i = 0; i < bytes; i++)
            raw[i] = (unsigned char)(random() & 0xff);
    for (size_t i = 0; i < bytes; i++)
        sprintf(out + 2 * i, "%02x", raw[i]);
}

sched *sched_new(const sched_config *cfg)
{
    sched *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    if (s->cfg.tick_ms <= 0)
        s->cfg.tick_ms = 1000;
    if (s->cfg.lease_ms <= 0)
        s->cfg.lease_ms = 60000;
    if (s->cfg.max_running == 0)
        s->cfg.max_running = 4;   /* negative: no scheduled runs, only sched_run_now */
    if (s->cfg.backoff_base_ms <= 0)
        s->cfg.backoff_base_ms = 30000;
    if (s->cfg.backoff_max_ms <= 0)
        s->cfg.backoff_max_ms = 3600000;
    if (s->cfg.max_jitter_ms <= 0)
        s->cfg.max_jitter_ms = 300000;
    char host[64] = "host", tag[17];
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    random_hex(tag, 8);
    snprintf(s->owner, sizeof s->owner, "%.60s/%ld/%s", host, (long)getpid(), tag);
    if (RAND_bytes((unsigned char *)&s->rng, sizeof s->rng) != 1 || !s->rng)
        s->rng = (uint64_t)now_ms() * 2654435761u + (uint64_t)getpid();
    return s;
}

int sched_register(sched *s, const sched_kind *k)
{
    if (s->nkinds == MAX_KINDS)
        return -1;
    s->kinds[s->nkinds++] = k;
    return 0;
}

const char *sched_owner(const sched *s) { return s->owner; }
size_t sched_running(const sched *s) { return s->nruns; }
int64_t sched_lease_until(const sched *s) { return now_ms() + s->cfg.lease_ms; }
const char *sched_run_id(const sched_run *r) { return r->run_id; }
const store_job *sched_run_job(const sched_run *r) { return &r->job; }

static const sched_kind *find_kind(sched *s, const char *name)
{
    for (int i = 0; i < s->nkinds; i++)
        if (strcmp(s->kinds[i]->name, name) == 0)
            return s->kinds[i];
    return NULL;
}

static sched_run *running_job(sched *s, const char *job_id)
{
    for (sched_run *r = s->runs; r; r = r->next)
        if (strcmp(r->job.id, job_id) == 0)
            return r;
    return NULL;
}

int64_t sched_next_time(const char *schedule, int64_t started_ms, int64_t now_ms_, double rnd_, int64_t max_jitter_ms)
{
    cron_schedule when;
    if (cron_parse(schedule, &when, NULL, 0) < 0)
        return -1;
    int64_t next;
    if (when.every_ms > 0) {
        /* Every period from the run's start; a run longer than its period
         * is followed by the next one at once. */
        next = started_ms + when.every_ms;
        if (next < now_ms_)
            next = now_ms_;
    } else {
        next = cron_next(&when, now_ms_);
        if (next < 0)
            return -1;
    }
    int64_t period = cron_period_ms(&when, now_ms_);
    int64_t spread = period / 10 < max_jitter_ms ? period / 10 : max_jitter_ms;
    return next + (int64_t)(rnd_ * (double)spread);
}

static void unlink_run(sched_run *r)
{
    sched *s = r->s;
    if (r->prev)
        r->prev->next = r->next;
    else
        s->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    s->nruns--;
}

void sched_done(sched_run *r, const sched_outcome *o)
{
    sched *s = r->s;
    int64_t now = now_ms();
    int failed = strcmp(o->status, "failed") == 0 || strcmp(o->status, "partial") == 0;
    int failures = failed ? r->job.failures + 1 : 0;
    /* An interval counts from when the run was due, so that the tick's
     * granularity does not stretch it (a 1 s job found due up to a tick
     * late would otherwise run every 2 s); a run that started later than
     * two ticks (ferry was down, or the job was requested) counts from its
     * start. */
    int64_t from = r->started_at;
    if (r->job.next_run_at < from && r->job.next_run_at >= from - 2 * s->cfg.tick_ms)
        from = r->job.next_run_at;
    int64_t next = sched_next_time(r->job.schedule, from, now, r->kind->no_jitter ? 0 : rnd(s),
                                   s->cfg.max_jitter_ms);
    if (next < 0)
        next = now + 3600000;   /* an expression that never fires again: look once an hour */
    if (failed) {
        /* Exponential backoff with jitter, never later than the schedule's
         * own next slot. */
        int shift = failures - 1 < 20 ? failures - 1 : 20;
        double delay = (double)s->cfg.backoff_base_ms * (double)(1LL << shift);
        if (delay > (double)s->cfg.backoff_max_ms)
            delay = (double)s->cfg.backoff_max_ms;
        int64_t retry = now + (int64_t)(delay * (0.5 + 0.5 * rnd(s)));
        if (retry < next)
            next = retry;
    }
    /* A kind's "run again exactly then", within a day. */
    if (o->retry_at_ms > 0)
        next = o->retry_at_ms < now + 86400000 ? o->retry_at_ms : now + 86400000;
    store_job_outcome out = {.next_run_at = next, .failures = failures, .started_at = r->started_at,
                             .ended_at = now, .status = o->status, .error = o->error};
    ferr err = {0};
    int rc = store_job_finish(s->cfg.db, r->job.id, s->owner, &out, &err);
    if (rc != 0) {
        log_line *l = log_begin(LOG_WARN, rc > 0 ? "job lease lost before the run ended" : "cannot finish a job");
        log_str(l, "job", r->job.id);
        log_str(l, "run", r->run_id);
        if (rc < 0)
            log_str(l, "error", err.message);
        log_end(l);
    }
    ferr_clear(&err);
    unlink_run(r);
    free(r);
}

/* Takes the job's lease and starts its run. 1 started, 0 not (busy or not
 * due: holder_run says which run holds it), -1 error. */
static int try_start(sched *s, const store_job *j, int manual, char run_id[40], char holder_run[40], ferr *err)
{
    const sched_kind *k = find_kind(s, j->kind);
    if (!k)
        return 0;
    sched_run *local = running_job(s, j->id);
    if (local) {
        snprintf(holder_run, 40, "%s", local->run_id);
        return 0;
    }
    char id[40] = "run_";
    random_hex(id + 4, 8);
    int64_t now = now_ms();
    store_lease lease;
    if (store_lease_acquire(s->cfg.db, j->id, s->owner, id, now, s->cfg.lease_ms, &lease, err) < 0)
        return -1;
    if (!lease.acquired) {
        snprintf(holder_run, 40, "%s", lease.holder_run);
        return 0;
    }
    if (lease.stale_run[0] && k->interrupted)
        k->interrupted(k->ud, lease.stale_run, "the ferry process running it stopped; taken over");
    sched_run *r = calloc(1, sizeof *r);
    if (!r) {
        store_lease_renew(s->cfg.db, j->id, s->owner, 0, err);   /* let it go at once */
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    }
    r->s = s;
    r->kind = k;
    r->job = *j;
    snprintf(r->run_id, sizeof r->run_id, "%s", id);
    r->started_at = r->renewed_at = now;
    r->next = s->runs;
    if (s->runs)
        s->runs->prev = r;
    s->runs = r;
    s->nruns++;
    snprintf(run_id, 40, "%s", id);
    k->start(k->ud, r, &r->job, manual);   /* may call sched_done before returning */
    return 1;
}

typedef struct due_list {
    store_job *jobs;
    size_t n, cap;
} due_list;

static void collect_due(void *ud, const store_job *j)
{
    due_list *l = ud;
    if (l->n < l->cap)
        l->jobs[l->n++] = *j;
}

/* Renews the leases of runs in progress; a run whose lease is gone stops. */
static void heartbeat(sched *s, int64_t now)
{
    for (sched_run *r = s->runs, *next; r; r = next) {
        next = r->next;
        if (r->stopping || now - r->renewed_at < s->cfg.lease_ms / 3)
            continue;
        ferr err = {0};
        int rc = store_lease_renew(s->cfg.db, r->job.id, s->owner, now + s->cfg.lease_ms, &err);
        if (rc == 0)
            r->renewed_at = now;
        else if (rc > 0) {
            r->stopping = 1;
            r->kind->stop(r->kind->ud, r, "its lease was lost (taken over by another process, or the job was deleted)");
        }
        /* A database error: try again at the next tick; fencing keeps the
         * run's writes safe if the lease expires meanwhile. */
        ferr_clear(&err);
    }
}

static void sweep(sched *s, int64_t now)
{
    s->last_sweep = now;
    for (int i = 0; i < s->nkinds; i++)
        if (s->kinds[i]->interrupted)
            s->kinds[i]->interrupted(s->kinds[i]->ud, NULL, "the ferry process running it stopped");
}

static int kind_limit(const sched *s, const sched_kind *k)
{
    return k->max_running ? k->max_running : s->cfg.max_running;
}

static int kind_running(const sched *s, const sched_kind *k)
{
    int n = 0;
    for (const sched_run *r = s->runs; r; r = r->next)
        n += r->kind == k;
    return n;
}

/* Starts the due jobs of one kind, as many as it has room for. */
static void start_due(sched *s, const sched_kind *k, int64_t now)
{
    int room = kind_limit(s, k) - kind_running(s, k);
    if (room <= 0)
        return;
    store_job jobs[16];
    due_list l = {jobs, 0, (size_t)(room < 16 ? room : 16)};
    ferr err = {0};
    /* Kind by kind: a job of a kind this process does not run, or of a
     * busy kind, must not take the places of the others. */
    char kinds[48];
    snprintf(kinds, sizeof kinds, "[\"%.30s\"]", k->name);
    if (store_jobs_due(s->cfg.db, now, kinds, (int)l.cap, collect_due, &l, &err) < 0) {
        log_line *line = log_begin(LOG_WARN, "scheduler cannot read due jobs");
        log_str(line, "kind", k->name);
        log_str(line, "error", err.message);
        log_end(line);
    }
    ferr_clear(&err);
    for (size_t i = 0; i < l.n && !s->stopped && kind_running(s, k) < kind_limit(s, k); i++) {
        char run_id[40], holder[40] = "";
        if (try_start(s, &l.jobs[i], 0, run_id, holder, &err) < 0) {
            log_line *line = log_begin(LOG_WARN, "scheduler cannot start a job");
            log_str(line, "job", l.jobs[i].id);
            log_str(line, "error", err.message);
            log_end(line);
        }
        ferr_clear(&err);
    }
}

static void on_tick(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    sched *s = arg;
    int64_t now = now_ms();
    heartbeat(s, now);
    if (!s->ticking || s->stopped)
        return;
    if (now - s->last_sweep >= SWEEP_EVERY_MS)
        sweep(s, now);
    for (int i = 0; i < s->nkinds && !s->stopped; i++)
        start_due(s, s->kinds[i], now);
}

static int arm(sched *s)
{
    if (s->timer)
        return 0;
    s->timer = event_new(s->cfg.base, -1, EV_PERSIST, on_tick, s);
    struct timeval tv = {(time_t)(s->cfg.tick_ms / 1000), (suseconds_t)((s->cfg.tick_ms % 1000) * 1000)};
    if (!s->timer || event_add(s->timer, &tv) < 0)
        return -1;
    return 0;
}

int sched_start(sched *s, ferr *err)
{
    s->ticking = 1;
    if (arm(s) < 0)
        return ferr_set(err, FERR_INTERNAL, "cannot start the scheduler's timer");
    sweep(s, now_ms());
    return 0;
}

void sched_stop(sched *s, const char *why)
{
    s->stopped = 1;
    while (s->runs) {
        sched_run *r = s->runs;
        size_t before = s->nruns;
        r->stopping = 1;
        r->kind->stop(r->kind->ud, r, why);
        if (s->nruns == before) {
            /* A kind that did not end its run: end it here. */
            sched_outcome o = {.status = "failed", .error = why, .retry_at_ms = now_ms()};
            sched_done(r, &o);
        }
    }
}

void sched_free(sched *s)
{
    if (!s)
        return;
    sched_stop(s, "ferry is shutting down");
    if (s->timer)
        event_free(s->timer);
    free(s);
}

int sched_ensure_job(sched *s, const char *id, const char *kind, const char *subject, const char *name,
                     const char *schedule, ferr *err)
{
    int64_t now = now_ms();
    cron_schedule when;
    int64_t period = cron_parse(schedule, &when, NULL, 0) == 0 ? cron_period_ms(&when, now) : 0;
    int64_t spread = period / 10;
    if (spread > s->cfg.max_jitter_ms)
        spread = s->cfg.max_jitter_ms;
    if (spread > FIRST_RUN_SPREAD_MS)
        spread = FIRST_RUN_SPREAD_MS;
    int64_t first = now + (int64_t)(rnd(s) * (double)spread);
    return store_job_ensure(s->cfg.db, id, kind, subject, name, schedule, first, err);
}

int sched_ensure_job_in(sched *s, const char *id, const char *kind, const char *subject, const char *name,
                        const char *schedule, int64_t first_in_ms, ferr *err)
{
    int64_t first = now_ms() + (first_in_ms > 0 ? first_in_ms : 0);
    if (store_job_ensure(s->cfg.db, id, kind, subject, name, schedule, first, err) < 0)
        return -1;
    /* An existing job due later than that (a longer interval before) runs
     * by then. */
    return store_job_request(s->cfg.db, id, first, err);
}

int sched_delete_job(sched *s, const char *id, ferr *err)
{
    return store_job_delete(s->cfg.db, id, err);
}

int sched_run_now(sched *s, const char *job_id, char run_id[40], int *started, ferr *err)
{
    *started = 0;
    run_id[0] = 0;
    if (s->stopped)
        return ferr_set(err, FERR_INTERNAL, "ferry is shutting down");
    if (arm(s) < 0)
        return ferr_set(err, FERR_INTERNAL, "cannot start the scheduler's timer");
    store_job j;
    int found = store_job_get(s->cfg.db, job_id, &j, err);
    if (found < 0)
        return -1;
    if (found == 1 || !find_kind(s, j.kind))
        return ferr_set(err, FERR_NOT_FOUND, "no job %s", job_id);
    sched_run *local = running_job(s, job_id);
    if (local) {
        snprintf(run_id, 40, "%s", local->run_id);
        return 0;
    }
    int64_t now = now_ms();
    if (store_job_request(s->cfg.db, job_id, now, err) < 0)
        return -1;
    j.next_run_at = now;
    char holder[40] = "";
    int rc = try_start(s, &j, 1, run_id, holder, err);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        snprintf(run_id, 40, "%s", holder);
        return 0;
    }
    *started = 1;
    return 0;
}
