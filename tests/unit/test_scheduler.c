/* test_scheduler — when a job runs next: every period from its last start
 * (at once when a run outlasted its period), cron slots, and the jitter
 * that spreads jobs of many connections: up to a tenth of the period,
 * capped. Then a scheduler on a real store and loop: each kind's own limit
 * of runs at once (a kind with one runs while the scheduler's own limit
 * runs nothing), no jitter for a kind that asks, and an interval counted
 * from when the run was due. */
#include "scheduler.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <unistd.h>

#define MIN 60000LL

static void intervals_count_from_the_start_of_the_last_run(void)
{
    CHECK_INT(sched_next_time("15m", 1000, 5000, 0, 300000), 1000 + 15 * MIN);
    /* A run longer than its period: the next one comes at once. */
    CHECK_INT(sched_next_time("1m", 1000, 1000 + 5 * MIN, 0, 300000), 1000 + 5 * MIN);
}

static void jitter_is_a_tenth_of_the_period_at_most_and_capped(void)
{
    /* 15 minutes: up to 90 s later. */
    CHECK_INT(sched_next_time("15m", 0, 0, 0.5, 300000), 15 * MIN + 45000);
    int64_t late = sched_next_time("15m", 0, 0, 0.999999, 300000);
    CHECK(late > 15 * MIN + 89000 && late < 15 * MIN + 90000);
    /* A day: a tenth would be 2.4 h, the cap keeps it within 5 minutes. */
    CHECK_INT(sched_next_time("1d", 0, 0, 0.5, 300000), 1440 * MIN + 150000);
}

static void cron_slots_with_jitter(void)
{
    /* Hourly at :00 (epoch 0 is a Thursday at midnight, UTC). */
    CHECK_INT(sched_next_time("0 * * * *", 0, 10 * MIN, 0, 300000), 60 * MIN);
    CHECK_INT(sched_next_time("0 * * * *", 0, 10 * MIN, 0.5, 300000), 60 * MIN + 150000);
    /* Every 5 minutes: jitter of at most 30 s. */
    CHECK_INT(sched_next_time("*/5 * * * *", 0, 1 * MIN, 0.5, 300000), 5 * MIN + 15000);
}

static void bad_schedules_have_no_next_time(void)
{
    CHECK_INT(sched_next_time("sometimes", 0, 0, 0, 300000), -1);
    CHECK_INT(sched_next_time("0 0 30 2 *", 0, 0, 0, 300000), -1);
}

/* A kind whose runs stay open until the test ends them. */
typedef struct held {
    sched_run *runs[8];
    int n;
} held;

static void held_start(void *ud, sched_run *r, const store_job *j, int manual)
{
    (void)j;
    (void)manual;
    held *h = ud;
    if (h->n < 8)
        h->runs[h->n++] = r;
}

static void held_stop(void *ud, sched_run *r, const char *why)
{
    held *h = ud;
    for (int i = 0; i < h->n; i++)
        if (h->runs[i] == r) {
            h->runs[i] = h->runs[--h->n];
            break;
        }
    sched_outcome o = {.status = "failed", .error = why};
    sched_done(r, &o);
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void run_loop_ms(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void each_kind_has_its_own_limit_and_may_go_without_jitter(void)
{
    char dir[64] = "/tmp/ferry-test-sched-XXXXXX", data[128];
    if (!mkdtemp(dir))
        exit(2);
    snprintf(data, sizeof data, "%s/data", dir);
    store *db = NULL;
    ferr err = {0};
    CHECK_INT(store_open(data, &db, NULL, NULL, &err), 0);
    struct event_base *base = event_base_new();
    /* No scheduled runs for kinds without a limit of their own, as
     * --sync-concurrency 0 sets it. */
    sched_config cfg = {.base = base, .db = db, .tick_ms = 50, .max_running = -1};
    sched *s = sched_new(&cfg);
    held capped = {0}, shared = {0};
    sched_kind one = {.name = "one", .ud = &capped, .max_running = 1, .no_jitter = 1, .start = held_start,
                      .stop = held_stop};
    sched_kind rest = {.name = "rest", .ud = &shared, .start = held_start, .stop = held_stop};
    CHECK_INT(sched_register(s, &one), 0);
    CHECK_INT(sched_register(s, &rest), 0);
    CHECK_INT(sched_ensure_job_in(s, "one:a", "one", "", "a", "1h", 0, &err), 0);
    CHECK_INT(sched_ensure_job_in(s, "one:b", "one", "", "b", "1h", 0, &err), 0);
    CHECK_INT(sched_ensure_job_in(s, "rest:a", "rest", "", "a", "1h", 0, &err), 0);
    CHECK_INT(sched_start(s, &err), 0);
    run_loop_ms(base, 200);
    CHECK_INT(capped.n, 1);    /* its own limit: one at a time, however many are due */
    CHECK_INT(shared.n, 0);    /* the scheduler's: none */
    /* Ended, the next due one of its kind starts; the first is due an hour
     * after it was due, to the millisecond (no jitter, and the tick's delay
     * does not count). */
    store_job j = *sched_run_job(capped.runs[0]);
    sched_outcome ok = {.status = "succeeded"};
    sched_done(capped.runs[0], &ok);
    capped.n = 0;
    run_loop_ms(base, 200);
    CHECK_INT(capped.n, 1);
    CHECK(strcmp(sched_run_job(capped.runs[0])->id, j.id) != 0);
    store_job after;
    CHECK_INT(store_job_get(db, j.id, &after, &err), 0);
    CHECK_INT(after.next_run_at, j.next_run_at + 3600000);
    CHECK_STR(after.last_status, "succeeded");
    /* A job due later than a new, shorter interval allows comes sooner. */
    int64_t t = wall_ms();
    CHECK_INT(sched_ensure_job_in(s, j.id, "one", "", "a", "1m", 60000, &err), 0);
    CHECK_INT(store_job_get(db, j.id, &after, &err), 0);
    CHECK(after.next_run_at >= t + 60000 && after.next_run_at <= wall_ms() + 60000);
    CHECK_STR(after.schedule, "1m");
    CHECK_INT(sched_delete_job(s, j.id, &err), 0);
    CHECK_INT(store_job_get(db, j.id, &after, &err), 1);
    sched_free(s);
    CHECK_INT(capped.n, 0);
    event_base_free(base);
    store_close(db);
    char path[256];
    const char *files[] = {"ferry.db", "ferry.db-wal", "ferry.db-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", data, files[i]);
        unlink(path);
    }
    rmdir(data);
    rmdir(dir);
}

TESTS(TEST(intervals_count_from_the_start_of_the_last_run), TEST(jitter_is_a_tenth_of_the_period_at_most_and_capped),
      TEST(cron_slots_with_jitter), TEST(bad_schedules_have_no_next_time),
      TEST(each_kind_has_its_own_limit_and_may_go_without_jitter))
