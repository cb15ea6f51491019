#include "calllog.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

#define BATCH_ROWS 256
#define FLUSH_MS 100

struct calllog {
    store *db;
    struct event *timer;
    call_record rows[BATCH_ROWS];
    size_t n;
};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void free_row(call_record *r)
{
    free((char *)r->request_id);
    free((char *)r->tool);
    free((char *)r->connection_id);
    free((char *)r->outcome);
    free((char *)r->arguments);
    free((char *)r->error_message);
    free((char *)r->integration);
}

void calllog_flush(calllog *cl)
{
    if (!cl || cl->n == 0)
        return;
    ferr err = {0};
    if (store_call_log_append(cl->db, cl->rows, cl->n, &err) < 0) {
        log_line *l = log_begin(LOG_ERROR, "call log write failed");
        log_str(l, "error", err.message);
        log_int(l, "rows_lost", (long long)cl->n);
        log_end(l);
        ferr_clear(&err);
    }
    for (size_t i = 0; i < cl->n; i++)
        free_row(&cl->rows[i]);
    cl->n = 0;
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    calllog_flush(arg);
}

calllog *calllog_new(store *db, struct event_base *base)
{
    calllog *cl = calloc(1, sizeof *cl);
    if (!cl)
        return NULL;
    cl->db = db;
    if (base)
        cl->timer = evtimer_new(base, on_timer, cl);
    return cl;
}

void calllog_free(calllog *cl)
{
    if (!cl)
        return;
    calllog_flush(cl);
    if (cl->timer)
        event_free(cl->timer);
    free(cl);
}

void calllog_append(calllog *cl, const call_record *row)
{
    if (!cl)
        return;
    call_record *r = &cl->rows[cl->n++];
    *r = *row;
    r->request_id = dup_or_null(row->request_id);
    r->tool = dup_or_null(row->tool);
    r->connection_id = dup_or_null(row->connection_id);
    r->outcome = dup_or_null(row->outcome);
    r->arguments = dup_or_null(row->arguments);
    r->error_message = dup_or_null(row->error_message);
    /* Copied too: a provider that came at run time (an MCP server) may be
     * gone before the batch is written. */
    r->integration = dup_or_null(row->integration);
    if (!cl->timer || cl->n == BATCH_ROWS) {
        calllog_flush(cl);
        return;
    }
    if (cl->n == 1) {
        struct timeval tv = {0, FLUSH_MS * 1000};
        evtimer_add(cl->timer, &tv);
    }
}
