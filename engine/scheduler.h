/* scheduler (prefix sched_) — the scheduler: jobs that run on a schedule (an interval or a
 * 5-field cron expression, see cron.h), spread out with jitter, retried
 * with exponential backoff after a failure, and run at most once at a time
 * across every ferry process on one database.
 *
 * Jobs live in the store (sched_jobs: next_run_at, consecutive failures,
 * last outcome). A process runs a due job only while it holds the job's
 * lease (sched_leases), taken in one transaction that also checks the job
 * is still due, so a scheduled occurrence runs once; the lease expires
 * (--sync-lease-ms) unless renewed every third of its life, so a run whose
 * process crashed is taken over, and the work a lease covers must fence its
 * writes on still holding it (store_sync_commit does).
 *
 * What a job does belongs to its kind: syncs (syncs.c), token refreshes
 * (oauth.c) and MCP tool re-syncs (mcpc_registry.c) register one each. A
 * kind starts a run and reports its end with sched_done; the scheduler
 * decides when it runs next, and how many runs of each kind a process runs
 * at once. */
#ifndef FERRY_SCHEDULER_H
#define FERRY_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "ferr.h"
#include "store_sync.h"

typedef struct sched sched;
typedef struct sched_run sched_run;

typedef struct sched_config {
    struct event_base *base;
    store *db;
    int64_t tick_ms;          /* how often due jobs are looked for; 0 → 1000 */
    int64_t lease_ms;         /* a lease's life; 0 → 60000 */
    int max_running;          /* scheduled runs at once in this process of a kind without a
                                 limit of its own (syncs); 0 → 4; negative: none */
    int64_t backoff_base_ms;  /* wait after a first failed run, doubling after each; 0 → 30000 */
    int64_t backoff_max_ms;   /* 0 → 3600000 */
    int64_t max_jitter_ms;    /* at most this much added to a run's time; 0 → 300000 */
} sched_config;

typedef struct sched_kind {
    const char *name;         /* sched_jobs.kind: "sync", "oauth", "mcp" */
    void *ud;
    /* Scheduled runs of this kind at once in this process: its own limit,
     * so one kind's runs never wait for another's slots; 0: the
     * scheduler's max_running. */
    int max_running;
    /* Runs exactly on the schedule, without jitter (a kind with one job
     * per database, where there is no herd to spread). */
    int no_jitter;
    /* Starts run `r` of job `j` (the lease is held). Report the end with
     * sched_done, now or later. */
    void (*start)(void *ud, sched_run *r, const store_job *j, int manual);
    /* Ends `r` at once (its lease was lost, or ferry is stopping): calls
     * sched_done before returning. */
    void (*stop)(void *ud, sched_run *r, const char *why);
    /* Cleans up after runs a stopped process left behind: run `run_id`,
     * or every such run when run_id is NULL. May be NULL. */
    void (*interrupted)(void *ud, const char *run_id, const char *why);
} sched_kind;

typedef struct sched_outcome {
    const char *status;       /* succeeded, partial, failed, skipped */
    const char *error;        /* NULL when none */
    int64_t retry_at_ms;      /* 0: the schedule (and backoff) decide; else run again exactly then */
} sched_outcome;

sched *sched_new(const sched_config *cfg);
/* Stops running runs (kind->stop) and frees. */
void sched_free(sched *s);
/* At most 8 kinds; `k` must outlive the scheduler. */
int sched_register(sched *s, const sched_kind *k);
/* Starts looking for due jobs every tick (serve). Without it, only
 * sched_run_now starts runs (the CLI), and leases are still renewed. */
int sched_start(sched *s, ferr *err);
/* Starts nothing more and stops the runs in progress (drain). */
void sched_stop(sched *s, const char *why);
size_t sched_running(const sched *s);
/* This process in lease rows: "<host>/<pid>/<random>". */
const char *sched_owner(const sched *s);
/* When a lease taken or renewed now expires. */
int64_t sched_lease_until(const sched *s);

/* Creates the job if it is new, to run first within a few seconds (with
 * jitter); an existing job keeps its next run. */
int sched_ensure_job(sched *s, const char *id, const char *kind, const char *subject, const char *name,
                     const char *schedule, ferr *err);
/* The same, for a job whose first run comes a period after now (its work
 * was just done, or a timer's first tick): new jobs run first at
 * now + first_in_ms, existing ones keep their next run unless that is
 * later (a shorter interval applies at once). */
int sched_ensure_job_in(sched *s, const char *id, const char *kind, const char *subject, const char *name,
                        const char *schedule, int64_t first_in_ms, ferr *err);
/* Deletes a job (and its lease; a run in progress here is stopped at its
 * next heartbeat). */
int sched_delete_job(sched *s, const char *id, ferr *err);

/* Runs a job now: *started = 1 and its new run's id; or, when another run
 * holds its lease (here or in another process), *started = 0 and that
 * run's id. not_found for an unknown job. */
int sched_run_now(sched *s, const char *job_id, char run_id[40], int *started, ferr *err);

const char *sched_run_id(const sched_run *r);
const store_job *sched_run_job(const sched_run *r);
/* The run ended; the job's next run is computed and the lease released.
 * `r` is freed. */
void sched_done(sched_run *r, const sched_outcome *o);

/* When a job with `schedule` runs next after a run that started at
 * started_ms and ended at now_ms, with jitter from `rnd` in [0, 1). -1 for
 * a schedule that does not parse or never fires. */
int64_t sched_next_time(const char *schedule, int64_t started_ms, int64_t now_ms, double rnd, int64_t max_jitter_ms);

#endif
