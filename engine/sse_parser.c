#include "sse_parser.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_EVENT (16u << 20)

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

struct sse_parser {
    size_t max_event;
    sse_event_fn on_event;
    void *arg;
    buf line;               /* the line being read */
    buf data;               /* the event's data, each line followed by LF */
    buf type;               /* the event's type ("" → "message") */
    buf id;                 /* the last event ID buffer: kept across events */
    long retry_ms;
    int bom_seen;           /* bytes of a leading BOM matched so far; 3 once decided */
    int after_cr;           /* the last line ended with CR: an LF next is part of it */
    int stopped;            /* the callback asked to stop */
    int broken;             /* over the size limit */
};

/* Keeps a NUL after the content so the buffer can be used as a string. */
static int buf_add(buf *b, const char *p, size_t n, size_t max)
{
    if (b->len + n > max)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np)
            return -1;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

static void buf_reset(buf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = 0;
}

static int buf_set(buf *b, const char *p, size_t n, size_t max)
{
    buf_reset(b);
    return n ? buf_add(b, p, n, max) : (buf_add(b, "", 0, max));
}

sse_parser *sse_parser_new(size_t max_event, sse_event_fn on_event, void *arg)
{
    sse_parser *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->max_event = max_event ? max_event : DEFAULT_MAX_EVENT;
    p->on_event = on_event;
    p->arg = arg;
    p->retry_ms = -1;
    return p;
}

void sse_parser_free(sse_parser *p)
{
    if (!p)
        return;
    free(p->line.p);
    free(p->data.p);
    free(p->type.p);
    free(p->id.p);
    free(p);
}

long sse_parser_retry_ms(const sse_parser *p) { return p->retry_ms; }
const char *sse_parser_last_id(const sse_parser *p) { return p->id.p ? p->id.p : ""; }

static int dispatch(sse_parser *p)
{
    if (p->data.len == 0) {
        buf_reset(&p->type);
        return 0;
    }
    /* The data buffer ends with the LF the last data line added. */
    p->data.len--;
    p->data.p[p->data.len] = 0;
    sse_event ev = {
        .type = p->type.len ? p->type.p : "message",
        .data = p->data.p,
        .data_len = p->data.len,
        .id = sse_parser_last_id(p),
    };
    int rc = p->on_event(p->arg, &ev);
    buf_reset(&p->data);
    buf_reset(&p->type);
    return rc;
}

static int field_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(name, want, len) == 0;
}

/* One complete line (without its end). Returns <0 over the limit, >0 when
 * the callback stopped. */
static int process_line(sse_parser *p, const char *line, size_t len)
{
    if (len == 0)
        return dispatch(p) ? 1 : 0;
    if (line[0] == ':')
        return 0;   /* a comment, e.g. a keep-alive */
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = colon ? len - name_len - 1 : 0;
    if (value_len && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (field_is(line, name_len, "data")) {
        if (buf_add(&p->data, value, value_len, p->max_event) < 0 || buf_add(&p->data, "\n", 1, p->max_event) < 0)
            return -1;
    } else if (field_is(line, name_len, "event")) {
        if (buf_set(&p->type, value, value_len, p->max_event) < 0)
            return -1;
    } else if (field_is(line, name_len, "id")) {
        if (!memchr(value, 0, value_len) && buf_set(&p->id, value, value_len, p->max_event) < 0)
            return -1;
    } else if (field_is(line, name_len, "retry")) {
        long ms = 0;
        size_t i = 0;
        for (; i < value_len && value[i] >= '0' && value[i] <= '9'; i++)
            if (ms < 100000000)
                ms = ms * 10 + (value[i] - '0');
        if (value_len && i == value_len)
            p->retry_ms = ms;
    }
    /* Any other field is ignored, as the standard says. */
    return 0;
}

/* The leading BOM (EF BB BF) is dropped, even when it arrives split. */
static size_t skip_bom(sse_parser *p, const char *data, size_t len)
{
    static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};
    size_t i = 0;
    while (p->bom_seen < 3 && i < len) {
        if ((unsigned char)data[i] != bom[p->bom_seen]) {
            /* Not a BOM after all: the bytes matched so far are text. */
            buf_add(&p->line, (const char *)bom, (size_t)p->bom_seen, p->max_event);
            p->bom_seen = 3;
            return i;
        }
        p->bom_seen++;
        i++;
    }
    return i;
}

int sse_parser_feed(sse_parser *p, const char *data, size_t len)
{
    if (p->broken)
        return -1;
    if (p->stopped)
        return 1;
    size_t i = p->bom_seen < 3 ? skip_bom(p, data, len) : 0;
    while (i < len) {
        if (p->after_cr) {
            p->after_cr = 0;
            if (data[i] == '\n') {
                i++;
                continue;
            }
        }
        /* The rest of this line in this piece. */
        size_t start = i;
        while (i < len && data[i] != '\n' && data[i] != '\r')
            i++;
        if (i > start && buf_add(&p->line, data + start, i - start, p->max_event) < 0) {
            p->broken = 1;
            return -1;
        }
        if (i == len)
            break;   /* the line goes on in the next piece */
        p->after_cr = data[i] == '\r';
        i++;
        int rc = process_line(p, p->line.p ? p->line.p : "", p->line.len);
        buf_reset(&p->line);
        if (rc < 0) {
            p->broken = 1;
            return -1;
        }
        if (rc > 0) {
            p->stopped = 1;
            return 1;
        }
    }
    return 0;
}
