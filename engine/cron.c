#include "cron.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MINUTE_MS 60000LL
/* Far enough for any expression that fires at all (a leap day on a given
 * weekday recurs within 28 years, but cron ORs the day fields, so eight
 * years covers every satisfiable combination of month and day-of-month). */
#define SEARCH_DAYS (8 * 366)

static int fail(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t n, const char *fmt, ...)
{
    if (why && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

typedef struct field_spec {
    const char *name;
    int lo, hi;
    const char *const *names;   /* names[i] is lo + i */
} field_spec;

static const field_spec fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},
    {"month", 1, 12, month_names},
    {"day of week", 0, 7, day_names},   /* 7 is Sunday again */
};

/* A number or (for months and weekdays) a three-letter name at *p. */
static int parse_value(const char **p, const field_spec *f, int *out, char *why, size_t n)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        char *end;
        long v = strtol(s, &end, 10);
        if (v < f->lo || v > f->hi)
            return fail(why, n, "%s %ld is out of range (%d-%d)", f->name, v, f->lo, f->hi);
        *out = (int)v;
        *p = end;
        return 0;
    }
    if (f->names && isalpha((unsigned char)s[0]) && isalpha((unsigned char)s[1]) && isalpha((unsigned char)s[2]))
        for (int i = 0; f->names[i]; i++)
            if (strncasecmp(s, f->names[i], 3) == 0) {
                *out = f->lo + i;
                *p = s + 3;
                return 0;
            }
    return fail(why, n, "%s: expected a number%s at \"%.12s\"", f->name, f->names ? " or a name" : "", s);
}

/* One field ("*", "1,5-9/2", "mon-fri") into a bit set. */
static int parse_field(const char *text, size_t len, const field_spec *f, uint64_t *bits, int *star, char *why,
                       size_t n)
{
    char buf[128];
    if (len == 0 || len >= sizeof buf)
        return fail(why, n, "%s: empty or too long", f->name);
    memcpy(buf, text, len);
    buf[len] = 0;
    *bits = 0;
    *star = buf[0] == '*';
    for (char *item = buf, *next; item; item = next) {
        next = strchr(item, ',');
        if (next)
            *next++ = 0;
        const char *p = item;
        int lo, hi, step = 1;
        if (*p == '*') {
            lo = f->lo;
            hi = f->hi == 7 ? 6 : f->hi;
            p++;
        } else {
            if (parse_value(&p, f, &lo, why, n) < 0)
                return -1;
            hi = lo;
            if (*p == '-') {
                p++;
                if (parse_value(&p, f, &hi, why, n) < 0)
                    return -1;
                if (hi < lo)
                    return fail(why, n, "%s: range %d-%d runs backwards", f->name, lo, hi);
            }
        }
        if (*p == '/') {
            p++;
            char *end;
            long s = strtol(p, &end, 10);
            if (end == p || s <= 0 || s > f->hi)
                return fail(why, n, "%s: step must be a number from 1 to %d", f->name, f->hi);
            step = (int)s;
            p = end;
            /* "5/15" means 5-max/15. */
            if (item[0] != '*' && !strchr(item, '-'))
                hi = f->hi == 7 ? 6 : f->hi;
        }
        if (*p)
            return fail(why, n, "%s: unexpected \"%s\"", f->name, p);
        for (int v = lo; v <= hi; v += step)
            *bits |= 1ULL << (f->hi == 7 && v == 7 ? 0 : v);
    }
    return 0;
}

static int parse_interval(const char *s, int64_t *ms)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v <= 0 || !end[0] || end[1])
        return -1;
    long long unit = end[0] == 's' ? 1000 : end[0] == 'm' ? MINUTE_MS : end[0] == 'h' ? 3600000LL
                   : end[0] == 'd' ? 86400000LL : 0;
    if (!unit || v > 366LL * 86400000LL / unit)
        return -1;
    *ms = v * unit;
    return 0;
}

int cron_parse(const char *text, cron_schedule *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    if (!text || !*text)
        return fail(why, why_len, "the schedule is empty");
    if (text[0] != '@' && !strchr(text, ' ') && !strchr(text, '\t')) {
        if (parse_interval(text, &out->every_ms) < 0)
            return fail(why, why_len, "\"%s\" is neither an interval like \"90s\", \"15m\", \"1h\" or \"1d\" "
                        "(at most a year) nor a 5-field cron expression", text);
        return 0;
    }
    static const struct {
        const char *name, *expr;
    } macros[] = {{"@hourly", "0 * * * *"},  {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
                  {"@weekly", "0 0 * * 0"},  {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
                  {"@annually", "0 0 1 1 *"}};
    if (text[0] == '@') {
        for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
            if (strcasecmp(text, macros[i].name) == 0)
                return cron_parse(macros[i].expr, out, why, why_len);
        return fail(why, why_len, "unknown shorthand \"%s\"", text);
    }
    const char *p = text;
    uint64_t bits[5];
    int stars[5];
    for (int i = 0; i < 5; i++) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p)
            return fail(why, why_len, "a cron expression has 5 fields (minute hour day month weekday), "
                        "\"%s\" has %d", text, i);
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        if (parse_field(start, (size_t)(p - start), &fields[i], &bits[i], &stars[i], why, why_len) < 0)
            return -1;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p)
        return fail(why, why_len, "a cron expression has 5 fields, \"%s\" has more", text);
    out->minutes = bits[0];
    out->hours = (uint32_t)bits[1];
    out->mdays = (uint32_t)bits[2];
    out->months = (uint16_t)bits[3];
    out->wdays = (uint8_t)bits[4];
    out->mday_star = stars[2];
    out->wday_star = stars[4];
    return 0;
}

static int day_matches(const cron_schedule *s, const struct tm *tm)
{
    int mday = (s->mdays >> tm->tm_mday) & 1;
    int wday = (s->wdays >> tm->tm_wday) & 1;
    if (s->mday_star || s->wday_star)
        return mday && wday;
    return mday || wday;
}

int64_t cron_next(const cron_schedule *s, int64_t after_ms)
{
    if (s->every_ms > 0)
        return after_ms + s->every_ms;
    /* The next whole minute after after_ms. */
    int64_t minute = after_ms >= 0 ? after_ms / MINUTE_MS + 1 : -((-after_ms) / MINUTE_MS);
    time_t t = (time_t)(minute * 60);
    struct tm tm;
    gmtime_r(&t, &tm);
    int days = 0;
    for (;;) {
        if (!((s->months >> (tm.tm_mon + 1)) & 1) || !day_matches(s, &tm)) {
            /* Skip to the next day at 00:00. */
            if (++days > SEARCH_DAYS)
                return -1;
            tm.tm_mday++;
            tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
            t = timegm(&tm);
            gmtime_r(&t, &tm);
            continue;
        }
        if (!((s->hours >> tm.tm_hour) & 1)) {
            tm.tm_hour++;
            tm.tm_min = 0;
            t = timegm(&tm);
            gmtime_r(&t, &tm);
            continue;
        }
        if (!((s->minutes >> tm.tm_min) & 1)) {
            tm.tm_min++;
            t = timegm(&tm);
            gmtime_r(&t, &tm);
            continue;
        }
        return (int64_t)t * 1000;
    }
}

int64_t cron_period_ms(const cron_schedule *s, int64_t at_ms)
{
    if (s->every_ms > 0)
        return s->every_ms;
    int64_t a = cron_next(s, at_ms);
    int64_t b = a < 0 ? -1 : cron_next(s, a);
    return b < 0 ? 0 : b - a;
}
