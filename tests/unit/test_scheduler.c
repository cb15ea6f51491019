/* test_scheduler — when a job runs next: every period from its last start
 * (at once when a run outlasted its period), cron slots, and the jitter
 * that spreads jobs of many connections: up to a tenth of the period,
 * capped. */
#include "scheduler.h"
#include "testutil.h"

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

TESTS(TEST(intervals_count_from_the_start_of_the_last_run), TEST(jitter_is_a_tenth_of_the_period_at_most_and_capped),
      TEST(cron_slots_with_jitter), TEST(bad_schedules_have_no_next_time))
