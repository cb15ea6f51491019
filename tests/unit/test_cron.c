/* test_cron — schedules: intervals, 5-field cron expressions (lists,
 * ranges, steps, names, the day-of-month / day-of-week rule, shorthands),
 * the next firing across month and year ends and leap days, and the
 * reasons given for expressions that do not parse. */
#include "cron.h"
#include "testutil.h"

#include <time.h>

/* Milliseconds of a UTC date-time. */
static int64_t at(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm) * 1000;
}

static int64_t next_of(const char *expr, int64_t after)
{
    cron_schedule s;
    char why[200] = "";
    if (cron_parse(expr, &s, why, sizeof why) < 0) {
        fprintf(stderr, "cron_parse(%s): %s\n", expr, why);
        return -2;
    }
    return cron_next(&s, after);
}

static void intervals(void)
{
    cron_schedule s;
    CHECK_INT(cron_parse("15m", &s, NULL, 0), 0);
    CHECK_INT(s.every_ms, 15 * 60000);
    CHECK_INT(cron_next(&s, 1000), 1000 + 15 * 60000);
    CHECK_INT(cron_period_ms(&s, 0), 15 * 60000);
    CHECK_INT(cron_parse("90s", &s, NULL, 0), 0);
    CHECK_INT(s.every_ms, 90000);
    CHECK_INT(cron_parse("1h", &s, NULL, 0), 0);
    CHECK_INT(s.every_ms, 3600000);
    CHECK_INT(cron_parse("2d", &s, NULL, 0), 0);
    CHECK_INT(s.every_ms, 2 * 86400000LL);
    char why[200];
    CHECK_INT(cron_parse("0m", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "neither an interval");
    CHECK_INT(cron_parse("15x", &s, why, sizeof why), -1);
    CHECK_INT(cron_parse("15mm", &s, why, sizeof why), -1);
    CHECK_INT(cron_parse("400d", &s, why, sizeof why), -1);
    CHECK_INT(cron_parse("", &s, why, sizeof why), -1);
}

static void every_minute_and_fixed_times(void)
{
    CHECK_INT(next_of("* * * * *", at(2024, 5, 6, 8, 0) + 1), at(2024, 5, 6, 8, 1));
    /* Strictly after: a firing time itself is not its own next. */
    CHECK_INT(next_of("* * * * *", at(2024, 5, 6, 8, 0)), at(2024, 5, 6, 8, 1));
    CHECK_INT(next_of("30 9 * * *", at(2024, 5, 6, 8, 0)), at(2024, 5, 6, 9, 30));
    CHECK_INT(next_of("30 9 * * *", at(2024, 5, 6, 9, 30)), at(2024, 5, 7, 9, 30));
    CHECK_INT(next_of("0 0 1 1 *", at(2024, 12, 31, 23, 59)), at(2025, 1, 1, 0, 0));
}

static void lists_ranges_steps(void)
{
    CHECK_INT(next_of("*/15 * * * *", at(2024, 5, 6, 8, 1)), at(2024, 5, 6, 8, 15));
    CHECK_INT(next_of("*/15 * * * *", at(2024, 5, 6, 8, 46)), at(2024, 5, 6, 9, 0));
    CHECK_INT(next_of("5,35 * * * *", at(2024, 5, 6, 8, 6)), at(2024, 5, 6, 8, 35));
    CHECK_INT(next_of("0 8-18/2 * * *", at(2024, 5, 6, 9, 0)), at(2024, 5, 6, 10, 0));
    CHECK_INT(next_of("0 8-18/2 * * *", at(2024, 5, 6, 18, 0)), at(2024, 5, 7, 8, 0));
    /* "10/20" is 10, 30, 50. */
    CHECK_INT(next_of("10/20 * * * *", at(2024, 5, 6, 8, 31)), at(2024, 5, 6, 8, 50));
}

static void names_and_weekdays(void)
{
    /* 2024-05-06 is a Monday. */
    CHECK_INT(next_of("0 9 * * mon-fri", at(2024, 5, 10, 10, 0)), at(2024, 5, 13, 9, 0));
    CHECK_INT(next_of("0 9 * * SAT,sun", at(2024, 5, 6, 10, 0)), at(2024, 5, 11, 9, 0));
    /* 7 is Sunday too. */
    CHECK_INT(next_of("0 0 * * 7", at(2024, 5, 6, 0, 0)), at(2024, 5, 12, 0, 0));
    CHECK_INT(next_of("0 0 1 jun *", at(2024, 5, 6, 0, 0)), at(2024, 6, 1, 0, 0));
}

static void day_fields_or_when_both_restricted(void)
{
    /* The 13th or any Friday (Vixie cron): from Mon 2024-05-06, Friday the 10th comes first. */
    CHECK_INT(next_of("0 0 13 * fri", at(2024, 5, 6, 0, 0)), at(2024, 5, 10, 0, 0));
    CHECK_INT(next_of("0 0 13 * fri", at(2024, 5, 11, 0, 0)), at(2024, 5, 13, 0, 0));
    /* A day field that starts with a star does not count: the 13th, any weekday. */
    CHECK_INT(next_of("0 0 13 * */1", at(2024, 5, 6, 0, 0)), at(2024, 5, 13, 0, 0));
    CHECK_INT(next_of("0 0 * * fri", at(2024, 5, 6, 0, 0)), at(2024, 5, 10, 0, 0));
}

static void month_ends_and_leap_days(void)
{
    CHECK_INT(next_of("0 12 31 * *", at(2024, 4, 1, 0, 0)), at(2024, 5, 31, 12, 0));
    CHECK_INT(next_of("0 0 29 2 *", at(2024, 3, 1, 0, 0)), at(2028, 2, 29, 0, 0));
    /* February 30th never comes. */
    CHECK_INT(next_of("0 0 30 2 *", at(2024, 1, 1, 0, 0)), -1);
}

static void shorthands(void)
{
    CHECK_INT(next_of("@hourly", at(2024, 5, 6, 8, 1)), at(2024, 5, 6, 9, 0));
    CHECK_INT(next_of("@daily", at(2024, 5, 6, 8, 1)), at(2024, 5, 7, 0, 0));
    CHECK_INT(next_of("@weekly", at(2024, 5, 6, 8, 1)), at(2024, 5, 12, 0, 0));
    CHECK_INT(next_of("@monthly", at(2024, 5, 6, 8, 1)), at(2024, 6, 1, 0, 0));
    CHECK_INT(next_of("@yearly", at(2024, 5, 6, 8, 1)), at(2025, 1, 1, 0, 0));
    cron_schedule s;
    CHECK_INT(cron_parse("@hourly", &s, NULL, 0), 0);
    CHECK_INT(cron_period_ms(&s, at(2024, 5, 6, 8, 1)), 3600000);
}

static void bad_expressions_say_why(void)
{
    cron_schedule s;
    char why[200];
    CHECK_INT(cron_parse("61 * * * *", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "minute 61 is out of range");
    CHECK_INT(cron_parse("* 24 * * *", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "hour 24");
    CHECK_INT(cron_parse("* * 0 * *", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "day of month 0");
    CHECK_INT(cron_parse("* * * 13 *", &s, why, sizeof why), -1);
    CHECK_INT(cron_parse("* * * * 8", &s, why, sizeof why), -1);
    CHECK_INT(cron_parse("* * * *", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "has 4");
    CHECK_INT(cron_parse("* * * * * *", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "more");
    CHECK_INT(cron_parse("5-1 * * * *", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "backwards");
    CHECK_INT(cron_parse("*/0 * * * *", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "step");
    CHECK_INT(cron_parse("* * * foo *", &s, why, sizeof why), -1);
    CHECK_INT(cron_parse("1,,2 * * * *", &s, why, sizeof why), -1);
    CHECK_INT(cron_parse("@sometimes", &s, why, sizeof why), -1);
    CHECK_CONTAINS(why, "unknown shorthand");
}

TESTS(TEST(intervals), TEST(every_minute_and_fixed_times), TEST(lists_ranges_steps), TEST(names_and_weekdays),
      TEST(day_fields_or_when_both_restricted), TEST(month_ends_and_leap_days), TEST(shorthands),
      TEST(bad_expressions_say_why))
