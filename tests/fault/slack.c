/*
 * slack.c: a Slack workspace small enough to reason about, for the Slack
 * sync's tests in the real engine.  Fault injection, not a Slack clone: it
 * answers the three Web API methods the sync uses the way Slack documents
 * them, and lets a test reset it, post into it, break it and read it back.
 *
 * Web API (under /slack/api/, `Authorization: Bearer TOKEN`; a missing or
 * wrong token is HTTP 200 {"ok":false,"error":"not_authed"|"invalid_auth"}):
 *   auth.test              {"ok","url":"https://acme-test.slack.com/","team","user","team_id","user_id","bot_id"}
 *   conversations.list     ?limit&cursor   every channel, by id, is_member as set;
 *                          response_metadata.next_cursor (empty on the last page)
 *   conversations.history  ?channel&oldest&latest&inclusive&limit&cursor
 *                          the channel's messages in (oldest, latest), newest
 *                          first, at most min(limit, page_max); has_more and
 *                          response_metadata.next_cursor, an opaque
 *                          base64("next_ts:<ts>") as Slack's is, so it stays
 *                          valid while messages are posted at the newest end.
 *                          An unknown channel: channel_not_found; a cursor that
 *                          does not decode: invalid_cursor.
 *
 * Control (not counted, no token):
 *   POST /slack/control/reset?channels=C&members=M&messages=N&seed=S&start=T&step=SEC&page_max=P&token=TOK&text=B
 *        C channels C0000001.. (the first M with is_member true), N messages
 *        each, ts from T (default two days ago) every SEC seconds, about B
 *        bytes of text; every 40th message or so is a channel_join.  Clears the log.
 *   POST /slack/control/post?n=K[&channel=ID]  K new messages in each channel (or
 *        that one), at the newest end: ts = max(now, last + 1 µs)
 *   POST /slack/control/faults?...  on history requests counted from this call on:
 *        rate_limit_at=N | rate_limit_every=K, retry_after=S   429 + Retry-After: S
 *        hang_at=N, hang_ms=D (15000)  the Nth answers only after D ms
 *        delay_ms=D                    every answer waits D ms
 *        post_every=K, post_n=M        before every Kth answer, M new posts in its channel
 *        (parameters not given are turned off)
 *   GET  /slack/control/state  {"channels":[{"id","name","is_member","messages":[{"ts","user","text","subtype"}]}]}
 *        (messages oldest first)
 *   GET  /slack/control/log    {"requests":[{"t_ms","method","auth","channel","cursor","oldest","limit",
 *        "status","error","messages","next_cursor"}], "history": N}   (the token is never logged)
 *
 * Deterministic: the same reset and the same calls give the same workspace
 * (posts take the clock's time, as Slack's would).
 */
#include "slack.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#define MAX_CHANNELS 16
#define MAX_LOG 20000
#define HISTORY_MAX 999 /* Slack's largest conversations.history limit */
#define TEAM_URL "https://acme-test.slack.com/"

static const char *const NAMES[] = {"general", "random", "engineering", "sales", "support", "design", "ops",
                                    "finance", "hiring", "launch", "legal", "infra", "qa", "docs", "data", "misc"};
static const char *const SYLLABLES[] = {"ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "po", "de",
                                        "an", "or", "el", "us", "ti", "ba", "qu", "en", "ri", "co"};
static const char *const WORDS[] = {"invoice", "meeting", "deploy", "budget", "launch", "review",
                                    "customer", "outage", "roadmap", "standup", "contract", "design"};

struct message {
    int64_t ts_us; /* the ts as microseconds since the epoch */
    char user[12];
    int join;      /* a channel_join: housekeeping the sync leaves out */
    char *text;
};

struct channel {
    char id[16];
    const char *name;
    int member;
    struct message *msgs; /* oldest first, ts strictly increasing */
    size_t n, cap;
};

struct log_entry {
    int64_t t_ms;
    char method[24];
    const char *auth;
    char channel[16];
    char cursor[64];
    char oldest[24];
    long limit;
    int status;
    const char *error;
    int messages;
    char next_cursor[64];
};

struct delayed {
    struct slack_ws *w;
    struct evhttp_request *req;
    struct event *ev;
    json_t *doc;
    int status;
    LIST_ENTRY(delayed) link;
};

struct slack_ws {
    struct event_base *base;
    struct channel ch[MAX_CHANNELS];
    int nch;
    char token[128];
    long page_max, text_bytes;
    uint64_t rng;
    /* faults, on history requests counted from the last /faults */
    long rate_limit_at, rate_limit_every, hang_at, hang_ms, delay_ms, post_every, post_n;
    double retry_after;
    uint64_t history;
    struct log_entry *log;
    size_t nlog;
    LIST_HEAD(, delayed) delayed;
};

static int64_t now_us(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
}

/* xorshift64*: deterministic text and choices */
static uint64_t next_rand(struct slack_ws *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 2685821657736338717ULL;
}

static void ts_text(int64_t us, char out[24])
{
    snprintf(out, 24, "%" PRId64 ".%06" PRId64, us / 1000000, us % 1000000);
}

/* "1512085950.000216" or "1512085950" → microseconds; -1 when neither. */
static int64_t parse_ts(const char *s)
{
    if (!s || !*s)
        return -1;
    int64_t whole = 0, frac = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++)
        whole = whole * 10 + (*p - '0');
    if (p == s)
        return -1;
    int digits = 0;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
            frac = frac * 10 + (*p - '0');
    if (*p)
        return -1;
    for (; digits < 6; digits++)
        frac *= 10;
    return whole * 1000000 + frac;
}

/* ---- base64, for cursors that look like Slack's ---- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(const char *in, char *out, size_t cap)
{
    size_t len = strlen(in), o = 0;
    for (size_t i = 0; i < len && o + 5 < cap; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)in[i + 2];
        out[o++] = B64[(v >> 18) & 63];
        out[o++] = B64[(v >> 12) & 63];
        out[o++] = i + 1 < len ? B64[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? B64[v & 63] : '=';
    }
    out[o] = 0;
}

/* Returns 0, or -1 when `in` is not base64. */
static int b64_decode(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (const char *p = in; *p && *p != '='; p++) {
        const char *at = strchr(B64, *p);
        if (!at || !*p)
            return -1;
        acc = (acc << 6) | (uint32_t)(at - B64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    out[o] = 0;
    return 0;
}

/* ---- the workspace ---- */

static void clear_workspace(struct slack_ws *w)
{
    for (int i = 0; i < w->nch; i++) {
        for (size_t k = 0; k < w->ch[i].n; k++)
            free(w->ch[i].msgs[k].text);
        free(w->ch[i].msgs);
    }
    memset(w->ch, 0, sizeof w->ch);
    w->nch = 0;
    w->nlog = 0;
    w->history = 0;
}

/* About `bytes` of words: syllable words, now and then a common word, a
 * mention or an escaped ampersand (Slack's markup, which the provider makes plain). */
static char *make_text(struct slack_ws *w, long bytes)
{
    long target = bytes / 2 + (long)(next_rand(w) % (uint64_t)(bytes + 1));
    char *out = malloc((size_t)target + 64);
    long n = 0;
    while (out && n < target) {
        char word[40];
        int wl = 0;
        unsigned r = (unsigned)(next_rand(w) % 40);
        if (r < 5) {
            wl = snprintf(word, sizeof word, "%s", WORDS[next_rand(w) % 12]);
        } else if (r == 5) {
            wl = snprintf(word, sizeof word, "<@U%07u>", (unsigned)(next_rand(w) % 5) + 1);
        } else if (r == 6) {
            wl = snprintf(word, sizeof word, "&amp;");
        } else {
            int syl = 2 + (int)(next_rand(w) % 3);
            for (int k = 0; k < syl; k++)
                wl += snprintf(word + wl, sizeof word - (size_t)wl, "%s", SYLLABLES[next_rand(w) % 20]);
        }
        memcpy(out + n, word, (size_t)wl);
        n += wl;
        out[n++] = ' ';
    }
    if (out)
        out[n > 0 ? n - 1 : 0] = 0;
    return out;
}

static int add_message(struct slack_ws *w, struct channel *c, int64_t ts_us, int join)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 256;
        struct message *m = realloc(c->msgs, cap * sizeof *m);
        if (!m)
            return -1;
        c->msgs = m;
        c->cap = cap;
    }
    struct message *m = &c->msgs[c->n];
    memset(m, 0, sizeof *m);
    m->ts_us = ts_us;
    snprintf(m->user, sizeof m->user, "U%07u", (unsigned)(next_rand(w) % 5) + 1);
    m->join = join;
    if (join) {
        char buf[48];
        snprintf(buf, sizeof buf, "<@%s> has joined the channel", m->user);
        m->text = strdup(buf);
    } else {
        m->text = make_text(w, w->text_bytes);
    }
    if (!m->text)
        return -1;
    c->n++;
    return 0;
}

/* A new message at the newest end of c, at the clock's time. */
static void post(struct slack_ws *w, struct channel *c)
{
    int64_t ts = now_us();
    if (c->n && ts <= c->msgs[c->n - 1].ts_us)
        ts = c->msgs[c->n - 1].ts_us + 1;
    add_message(w, c, ts, 0);
}

static struct channel *find_channel(struct slack_ws *w, const char *id)
{
    for (int i = 0; id && i < w->nch; i++)
        if (strcmp(w->ch[i].id, id) == 0)
            return &w->ch[i];
    return NULL;
}

/* ---- replies ---- */

static int dump_cb(const char *buf, size_t size, void *data)
{
    return evbuffer_add(data, buf, size);
}

static void send_doc(struct evhttp_request *req, int status, json_t *doc)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json; charset=utf-8");
    if (doc)
        json_dump_callback(doc, dump_cb, evhttp_request_get_output_buffer(req), JSON_COMPACT);
    json_decref(doc);
    evhttp_send_reply(req, status, NULL, NULL);
}

static void delayed_fire(evutil_socket_t fd, short what, void *arg)
{
    struct delayed *dl = arg;
    (void)fd;
    (void)what;
    LIST_REMOVE(dl, link);
    event_free(dl->ev);
    /* Safe even if the client left: evhttp frees req on the write error. */
    send_doc(dl->req, dl->status, dl->doc);
    free(dl);
}

/* Answers now, or after ms on a timer. */
static void answer(struct slack_ws *w, struct evhttp_request *req, int status, json_t *doc, long ms)
{
    struct delayed *dl = ms > 0 ? calloc(1, sizeof *dl) : NULL;
    if (dl)
        dl->ev = evtimer_new(w->base, delayed_fire, dl);
    if (!dl || !dl->ev) {
        free(dl);
        send_doc(req, status, doc);
        return;
    }
    dl->w = w;
    dl->req = req;
    dl->doc = doc;
    dl->status = status;
    LIST_INSERT_HEAD(&w->delayed, dl, link);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(dl->ev, &tv);
}

static json_t *slack_error(const char *code)
{
    return json_pack("{s:b, s:s}", "ok", 0, "error", code);
}

static struct log_entry *log_add(struct slack_ws *w, const char *method, const char *auth)
{
    if (!w->log)
        w->log = calloc(MAX_LOG, sizeof *w->log);
    if (!w->log || w->nlog == MAX_LOG)
        return NULL;
    struct log_entry *e = &w->log[w->nlog++];
    memset(e, 0, sizeof *e);
    e->t_ms = now_us() / 1000;
    snprintf(e->method, sizeof e->method, "%s", method);
    e->auth = auth;
    e->status = 200;
    return e;
}

static long qlong(struct evkeyvalq *q, const char *key, long def)
{
    const char *v = evhttp_find_header(q, key);
    return v ? strtol(v, NULL, 10) : def;
}

/* "ok", "missing" or "wrong": the request's Bearer token against the workspace's. */
static const char *check_token(struct slack_ws *w, struct evhttp_request *req)
{
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) != 0)
        return "missing";
    return strcmp(h + 7, w->token) == 0 ? "ok" : "wrong";
}

/* ---- Web API ---- */

static json_t *channel_json(const struct channel *c)
{
    return json_pack("{s:s, s:s, s:b, s:b, s:b, s:b, s:i, s:i, s:{s:s}, s:{s:s}}", "id", c->id, "name", c->name,
                     "is_channel", 1, "is_private", 0, "is_archived", 0, "is_member", c->member, "num_members",
                     c->member ? 5 : 4, "created", 1700000000, "topic", "value", "", "purpose", "value", "");
}

static void api_list(struct slack_ws *w, struct evhttp_request *req, struct evkeyvalq *q, struct log_entry *e)
{
    long limit = qlong(q, "limit", 100);
    if (limit < 1 || limit > 1000)
        limit = 100;
    if (w->page_max && limit > w->page_max)
        limit = w->page_max;
    long from = 0;
    const char *cursor = evhttp_find_header(q, "cursor");
    if (cursor && *cursor) {
        char plain[64];
        if (b64_decode(cursor, plain, sizeof plain) != 0 || sscanf(plain, "team:%ld", &from) != 1 || from < 0 ||
            from > w->nch) {
            if (e)
                e->error = "invalid_cursor";
            send_doc(req, 200, slack_error("invalid_cursor"));
            return;
        }
    }
    json_t *list = json_array();
    long i = from;
    for (; i < w->nch && i < from + limit; i++)
        json_array_append_new(list, channel_json(&w->ch[i]));
    char next[64] = "";
    if (i < w->nch) {
        char plain[32];
        snprintf(plain, sizeof plain, "team:%ld", i);
        b64_encode(plain, next, sizeof next);
    }
    if (e) {
        e->messages = (int)json_array_size(list);
        snprintf(e->next_cursor, sizeof e->next_cursor, "%s", next);
    }
    send_doc(req, 200, json_pack("{s:b, s:o, s:{s:s}}", "ok", 1, "channels", list, "response_metadata",
                                 "next_cursor", next));
}

static json_t *message_json(const struct message *m)
{
    char ts[24];
    ts_text(m->ts_us, ts);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "type", "message", "user", m->user, "text", m->text, "ts", ts);
    if (m->join)
        json_object_set_new(o, "subtype", json_string("channel_join"));
    return o;
}

static void api_history(struct slack_ws *w, struct evhttp_request *req, struct evkeyvalq *q, struct log_entry *e)
{
    uint64_t n = ++w->history;
    const char *cid = evhttp_find_header(q, "channel");
    const char *cursor = evhttp_find_header(q, "cursor");
    const char *oldest_s = evhttp_find_header(q, "oldest");
    if (e) {
        snprintf(e->channel, sizeof e->channel, "%s", cid ? cid : "");
        snprintf(e->cursor, sizeof e->cursor, "%s", cursor ? cursor : "");
        snprintf(e->oldest, sizeof e->oldest, "%s", oldest_s ? oldest_s : "");
    }
    long wait = w->delay_ms;
    if ((w->rate_limit_at && n == (uint64_t)w->rate_limit_at) ||
        (w->rate_limit_every && n % (uint64_t)w->rate_limit_every == 0)) {
        char ra[32];
        snprintf(ra, sizeof ra, "%g", w->retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
        if (e) {
            e->status = 429;
            e->error = "ratelimited";
        }
        answer(w, req, 429, slack_error("ratelimited"), wait);
        return;
    }
    if (w->hang_at && n == (uint64_t)w->hang_at)
        wait += w->hang_ms;
    struct channel *c = find_channel(w, cid);
    if (!c) {
        if (e)
            e->error = "channel_not_found";
        answer(w, req, 200, slack_error("channel_not_found"), wait);
        return;
    }
    if (!c->member) {
        if (e)
            e->error = "not_in_channel";
        answer(w, req, 200, slack_error("not_in_channel"), wait);
        return;
    }
    if (w->post_every && n % (uint64_t)w->post_every == 0)
        for (long k = 0; k < w->post_n; k++)
            post(w, c);
    int inclusive = qlong(q, "inclusive", 0) != 0 || (evhttp_find_header(q, "inclusive") &&
                                                       strcmp(evhttp_find_header(q, "inclusive"), "true") == 0);
    int64_t oldest = oldest_s ? parse_ts(oldest_s) : 0;
    const char *latest_s = evhttp_find_header(q, "latest");
    int64_t latest = latest_s ? parse_ts(latest_s) : INT64_MAX;
    if (oldest < 0 || latest < 0) {
        if (e)
            e->error = "invalid_ts_oldest";
        answer(w, req, 200, slack_error(oldest < 0 ? "invalid_ts_oldest" : "invalid_ts_latest"), wait);
        return;
    }
    int64_t top = latest; /* the newest ts a page may hold, inclusive */
    int top_inclusive = inclusive;
    if (cursor && *cursor) {
        char plain[64];
        int64_t at;
        if (b64_decode(cursor, plain, sizeof plain) != 0 || strncmp(plain, "next_ts:", 8) != 0 ||
            (at = parse_ts(plain + 8)) < 0) {
            if (e)
                e->error = "invalid_cursor";
            answer(w, req, 200, slack_error("invalid_cursor"), wait);
            return;
        }
        top = at;
        top_inclusive = 1;
    }
    long limit = qlong(q, "limit", 100);
    if (limit < 1)
        limit = 100;
    if (limit > HISTORY_MAX)
        limit = HISTORY_MAX;
    if (w->page_max && limit > w->page_max)
        limit = w->page_max;
    if (e)
        e->limit = limit;
    /* The newest message at or under the top, then down while above oldest. */
    size_t lo = 0, hi = c->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int under = top_inclusive ? c->msgs[mid].ts_us <= top : c->msgs[mid].ts_us < top;
        if (under)
            lo = mid + 1;
        else
            hi = mid;
    }
    json_t *list = json_array();
    size_t i = lo; /* one past the next message to give */
#define ABOVE_OLDEST(m) (inclusive ? (m).ts_us >= oldest : (m).ts_us > oldest)
    while (i > 0 && ABOVE_OLDEST(c->msgs[i - 1]) && (long)json_array_size(list) < limit) {
        json_array_append_new(list, message_json(&c->msgs[i - 1]));
        i--;
    }
    int more = i > 0 && ABOVE_OLDEST(c->msgs[i - 1]);
#undef ABOVE_OLDEST
    char next[64] = "";
    if (more) {
        char ts[24], plain[40];
        ts_text(c->msgs[i - 1].ts_us, ts);
        snprintf(plain, sizeof plain, "next_ts:%s", ts);
        b64_encode(plain, next, sizeof next);
    }
    if (e) {
        e->messages = (int)json_array_size(list);
        snprintf(e->next_cursor, sizeof e->next_cursor, "%s", next);
    }
    json_t *doc = json_pack("{s:b, s:o, s:b, s:i}", "ok", 1, "messages", list, "has_more", more, "pin_count", 0);
    if (more)
        json_object_set_new(doc, "response_metadata", json_pack("{s:s}", "next_cursor", next));
    answer(w, req, 200, doc, wait);
}

static void route_api(struct slack_ws *w, struct evhttp_request *req, const char *method, struct evkeyvalq *q)
{
    const char *auth = check_token(w, req);
    struct log_entry *e = log_add(w, method, auth);
    if (strcmp(auth, "ok") != 0) {
        const char *code = strcmp(auth, "missing") == 0 ? "not_authed" : "invalid_auth";
        if (e)
            e->error = code;
        send_doc(req, 200, slack_error(code));
    } else if (strcmp(method, "auth.test") == 0) {
        send_doc(req, 200, json_pack("{s:b, s:s, s:s, s:s, s:s, s:s, s:s}", "ok", 1, "url", TEAM_URL, "team",
                                     "Acme Test", "user", "ferrybot", "team_id", "T0ACME01", "user_id",
                                     "U0FERRY1", "bot_id", "B0FERRY1"));
    } else if (strcmp(method, "conversations.list") == 0) {
        api_list(w, req, q, e);
    } else if (strcmp(method, "conversations.history") == 0) {
        api_history(w, req, q, e);
    } else {
        if (e)
            e->error = "unknown_method";
        send_doc(req, 404, slack_error("unknown_method"));
    }
}

/* ---- control ---- */

static void control_reset(struct slack_ws *w, struct evhttp_request *req, struct evkeyvalq *q)
{
    clear_workspace(w);
    long channels = qlong(q, "channels", 4), members = qlong(q, "members", 3), messages = qlong(q, "messages", 100);
    if (channels < 1 || channels > MAX_CHANNELS || members < 0 || messages < 0 || messages > 1000000) {
        send_doc(req, 400, json_pack("{s:s}", "error", "channels 1..16, members >= 0, messages 0..1000000"));
        return;
    }
    w->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)qlong(q, "seed", 1) * 0xBF58476D1CE4E5B9ULL;
    w->page_max = qlong(q, "page_max", 0);
    w->text_bytes = qlong(q, "text", 120);
    if (w->text_bytes < 8)
        w->text_bytes = 8;
    const char *tok = evhttp_find_header(q, "token");
    snprintf(w->token, sizeof w->token, "%s", tok ? tok : "xoxb-fault-test");
    int64_t start = qlong(q, "start", (long)(now_us() / 1000000 - 2 * 86400));
    long step = qlong(q, "step", 60);
    if (step < 1)
        step = 1;
    w->nch = (int)channels;
    for (int i = 0; i < w->nch; i++) {
        struct channel *c = &w->ch[i];
        snprintf(c->id, sizeof c->id, "C%07d", i + 1);
        c->name = NAMES[i];
        c->member = i < members;
        for (long k = 0; k < messages; k++) {
            /* Seconds apart, with a microsecond part, so the ts are distinct and increasing. */
            int64_t ts = (start + k * step + i) * 1000000 + (int64_t)(next_rand(w) % 1000000);
            if (add_message(w, c, ts, next_rand(w) % 40 == 0) != 0)
                break;
        }
    }
    send_doc(req, 200, json_pack("{s:i, s:I}", "channels", w->nch, "messages", (json_int_t)(messages * channels)));
}

static void control_state(struct slack_ws *w, struct evhttp_request *req)
{
    json_t *list = json_array();
    for (int i = 0; i < w->nch; i++) {
        const struct channel *c = &w->ch[i];
        json_t *msgs = json_array();
        for (size_t k = 0; k < c->n; k++) {
            char ts[24];
            ts_text(c->msgs[k].ts_us, ts);
            json_t *m = json_pack("{s:s, s:s, s:s}", "ts", ts, "user", c->msgs[k].user, "text", c->msgs[k].text);
            if (c->msgs[k].join)
                json_object_set_new(m, "subtype", json_string("channel_join"));
            json_array_append_new(msgs, m);
        }
        json_array_append_new(list, json_pack("{s:s, s:s, s:b, s:o}", "id", c->id, "name", c->name, "is_member",
                                              c->member, "messages", msgs));
    }
    send_doc(req, 200, json_pack("{s:o}", "channels", list));
}

static void control_log(struct slack_ws *w, struct evhttp_request *req)
{
    json_t *list = json_array();
    for (size_t i = 0; i < w->nlog; i++) {
        const struct log_entry *e = &w->log[i];
        json_t *o = json_pack("{s:I, s:s, s:s, s:i, s:i}", "t_ms", (json_int_t)e->t_ms, "method", e->method, "auth",
                              e->auth, "status", e->status, "messages", e->messages);
        if (e->channel[0])
            json_object_set_new(o, "channel", json_string(e->channel));
        if (e->cursor[0])
            json_object_set_new(o, "cursor", json_string(e->cursor));
        if (e->oldest[0])
            json_object_set_new(o, "oldest", json_string(e->oldest));
        if (e->limit)
            json_object_set_new(o, "limit", json_integer(e->limit));
        if (e->error)
            json_object_set_new(o, "error", json_string(e->error));
        if (e->next_cursor[0])
            json_object_set_new(o, "next_cursor", json_string(e->next_cursor));
        json_array_append_new(list, o);
    }
    send_doc(req, 200, json_pack("{s:o, s:I}", "requests", list, "history", (json_int_t)w->history));
}

static void control(struct slack_ws *w, struct evhttp_request *req, const char *what, struct evkeyvalq *q)
{
    if (strcmp(what, "reset") == 0) {
        control_reset(w, req, q);
    } else if (strcmp(what, "post") == 0) {
        long n = qlong(q, "n", 1);
        const char *id = evhttp_find_header(q, "channel");
        struct channel *only = find_channel(w, id);
        if (id && !only) {
            send_doc(req, 404, json_pack("{s:s}", "error", "no such channel"));
            return;
        }
        for (int i = 0; i < w->nch; i++)
            if (!only || only == &w->ch[i])
                for (long k = 0; k < n; k++)
                    post(w, &w->ch[i]);
        send_doc(req, 200, json_pack("{s:I}", "posted", (json_int_t)n));
    } else if (strcmp(what, "faults") == 0) {
        w->rate_limit_at = qlong(q, "rate_limit_at", 0);
        w->rate_limit_every = qlong(q, "rate_limit_every", 0);
        const char *ra = evhttp_find_header(q, "retry_after");
        w->retry_after = ra ? strtod(ra, NULL) : 1;
        w->hang_at = qlong(q, "hang_at", 0);
        w->hang_ms = qlong(q, "hang_ms", 15000);
        w->delay_ms = qlong(q, "delay_ms", 0);
        w->post_every = qlong(q, "post_every", 0);
        w->post_n = qlong(q, "post_n", 1);
        w->history = 0;
        send_doc(req, 200, json_pack("{s:b}", "ok", 1));
    } else if (strcmp(what, "state") == 0) {
        control_state(w, req);
    } else if (strcmp(what, "log") == 0) {
        control_log(w, req);
    } else {
        send_doc(req, 404, json_pack("{s:s}", "error", "not found"));
    }
}

void slack_route(struct slack_ws *w, struct evhttp_request *req, const char *path)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (qs && evhttp_parse_query_str(qs, &q) != 0) {
        send_doc(req, 400, json_pack("{s:s}", "error", "malformed query string"));
        return;
    }
    if (strncmp(path, "/slack/api/", 11) == 0)
        route_api(w, req, path + 11, &q);
    else if (strncmp(path, "/slack/control/", 15) == 0)
        control(w, req, path + 15, &q);
    else
        send_doc(req, 404, json_pack("{s:s}", "error", "not found"));
    evhttp_clear_headers(&q);
}

struct slack_ws *slack_new(struct event_base *base)
{
    struct slack_ws *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->base = base;
    w->rng = 0x9E3779B97F4A7C15ULL;
    w->text_bytes = 120;
    snprintf(w->token, sizeof w->token, "xoxb-fault-test");
    LIST_INIT(&w->delayed);
    return w;
}

void slack_free(struct slack_ws *w)
{
    if (!w)
        return;
    while (!LIST_EMPTY(&w->delayed)) {
        struct delayed *dl = LIST_FIRST(&w->delayed);
        LIST_REMOVE(dl, link);
        event_free(dl->ev);
        if (evhttp_request_get_connection(dl->req) == NULL)
            evhttp_request_free(dl->req);
        json_decref(dl->doc);
        free(dl);
    }
    clear_workspace(w);
    free(w->log);
    free(w);
}
