#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <openssl/rand.h>

struct log_line {
    char buf[8192];
    size_t len;
    int truncated;
};

static log_level min_level = LOG_INFO;
/* The loop is single-threaded, so one line buffer is enough. */
static log_line the_line;
static int line_busy;

static const char *level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level level) { min_level = level; }

int log_parse_level(const char *name, log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    return -1;
}

int log_enabled(log_level level) { return level >= min_level; }

static void put(log_line *l, const char *s, size_t n)
{
    /* Keep 2 bytes for the closing "}\n". */
    if (l->len + n + 2 > sizeof l->buf) {
        l->truncated = 1;
        return;
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_escaped(log_line *l, const char *s, size_t n)
{
    put(l, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(l, esc, 2);
        } else if (c == '\n') {
            put(l, "\\n", 2);
        } else if (c == '\t') {
            put(l, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(l, esc, 6);
        } else {
            put(l, (const char *)&s[i], 1);
        }
    }
    put(l, "\"", 1);
}

static void put_key(log_line *l, const char *key)
{
    put(l, ",", 1);
    put_escaped(l, key, strlen(key));
    put(l, ":", 1);
}

log_line *log_begin(log_level level, const char *msg)
{
    if (level < min_level)
        return NULL;
    return log_begin_always(level, msg);
}

log_line *log_begin_always(log_level level, const char *msg)
{
    if (line_busy)
        return NULL;
    log_line *l = &the_line;
    line_busy = 1;
    l->len = 0;
    l->truncated = 0;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    int n = snprintf(ts, sizeof ts, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
    put(l, ts, (size_t)n);
    log_str(l, "level", level_names[level]);
    log_str(l, "msg", msg);
    return l;
}

void log_str(log_line *l, const char *key, const char *value)
{
    if (!l || !value)
        return;
    log_strn(l, key, value, strlen(value));
}

void log_strn(log_line *l, const char *key, const char *value, size_t len)
{
    if (!l || !value)
        return;
    put_key(l, key);
    put_escaped(l, value, len);
}

void log_int(log_line *l, const char *key, long long value)
{
    if (!l)
        return;
    char num[32];
    int n = snprintf(num, sizeof num, "%lld", value);
    put_key(l, key);
    put(l, num, (size_t)n);
}

void log_num(log_line *l, const char *key, double value)
{
    if (!l)
        return;
    char num[64];
    int n = snprintf(num, sizeof num, "%.3f", value);
    put_key(l, key);
    put(l, num, (size_t)n);
}

void log_bool(log_line *l, const char *key, int value)
{
    if (!l)
        return;
    put_key(l, key);
    put(l, value ? "true" : "false", value ? 4 : 5);
}

void log_end(log_line *l)
{
    if (!l)
        return;
    if (l->truncated) {
        /* Room was kept for this marker and the closing brace. */
        static const char mark[] = ",\"truncated\":true";
        if (l->len + sizeof mark + 1 <= sizeof l->buf) {
            memcpy(l->buf + l->len, mark, sizeof mark - 1);
            l->len += sizeof mark - 1;
        }
    }
    l->buf[l->len++] = '}';
    l->buf[l->len++] = '\n';
    size_t off = 0;
    while (off < l->len) {
        ssize_t w = write(STDERR_FILENO, l->buf + off, l->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    line_busy = 0;
}

void log_msg(log_level level, const char *msg)
{
    log_end(log_begin(level, msg));
}

/* Request ids only need to be unique, not secret: a xorshift generator
 * seeded once from the system's randomness. (RAND_bytes per request cost a
 * getpid system call each, for OpenSSL's fork check.) */
void log_new_request_id(char out[17])
{
    static uint64_t state;
    if (state == 0 && (RAND_bytes((unsigned char *)&state, sizeof state) != 1 || state == 0))
        state = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull | 1;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    static const char hex[] = "0123456789abcdef";
    uint64_t v = state;
    for (int i = 15; i >= 0; i--) {
        out[i] = hex[v & 15];
        v >>= 4;
    }
    out[16] = 0;
}
