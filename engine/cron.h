/* cron — when a schedule fires. A schedule is an interval ("90s", "15m",
 * "1h", "1d") or a 5-field cron expression
 *
 *     minute hour day-of-month month day-of-week       (UTC)
 *
 * with `*`, lists (1,15), ranges (1-5), steps (*\/10, 8-18/2), month and
 * weekday names (jan..dec, sun..sat; 7 is Sunday too) and the shorthands
 * @hourly, @daily (@midnight), @weekly, @monthly, @yearly (@annually).
 * As in Vixie cron, when both day fields are restricted (neither starts
 * with `*`) a day matches if either does.
 *
 * Pure functions: no clock, no allocation. Times are milliseconds since the
 * epoch. */
#ifndef FERRY_CRON_H
#define FERRY_CRON_H

#include <stddef.h>
#include <stdint.h>

typedef struct cron_schedule {
    int64_t every_ms;       /* > 0: an interval; the fields below are unused */
    uint64_t minutes;       /* bit i set: minute i fires (0..59) */
    uint32_t hours;         /* bits 0..23 */
    uint32_t mdays;         /* bits 1..31 */
    uint16_t months;        /* bits 1..12 */
    uint8_t wdays;          /* bits 0..6, Sunday is 0 */
    int mday_star;          /* the field started with `*` (the day rule above) */
    int wday_star;
} cron_schedule;

/* 0 and *out, or -1 with a reason in why ("minute 61 is out of range"). */
int cron_parse(const char *text, cron_schedule *out, char *why, size_t why_len);

/* The first firing strictly after `after_ms` (an interval: after_ms +
 * every_ms). For cron, whole minutes; -1 when the expression never fires
 * within eight years (February 30th). */
int64_t cron_next(const cron_schedule *s, int64_t after_ms);

/* How long a schedule's period is around `at_ms`: the interval, or the gap
 * between the next two firings (what jitter and retry caps scale with). */
int64_t cron_period_ms(const cron_schedule *s, int64_t at_ms);

#endif
