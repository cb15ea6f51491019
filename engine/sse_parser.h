/* sse_parser — an incremental parser of Server-Sent Events streams
 * (text/event-stream, as the WHATWG HTML standard's "event stream
 * interpretation" defines it): bytes go in as they arrive, in pieces of any
 * size, and each event comes out as soon as its blank line has been read.
 * Nothing buffers the whole stream: only the line and the event being read.
 *
 * Lines end with CRLF, LF or CR (a CRLF split between two pieces is one
 * line end); a leading UTF-8 BOM is skipped; comment lines (":...") are
 * ignored; fields are data (joined with LF), event, id (ignored when it
 * holds a NUL) and retry (digits only); an event without data is not
 * dispatched; an incomplete event at the end of the stream is dropped. */
#ifndef FERRY_SSE_PARSER_H
#define FERRY_SSE_PARSER_H

#include <stddef.h>

typedef struct sse_parser sse_parser;

/* Borrowed for the duration of the callback. */
typedef struct sse_event {
    const char *type;        /* "message" unless an event field said otherwise */
    const char *data;        /* NUL-terminated; may contain LFs */
    size_t data_len;
    const char *id;          /* the last event ID so far ("" when none) */
} sse_event;

/* Returns 0 to go on, non-zero to stop parsing (sse_parser_feed then
 * returns 1 and takes no more input). */
typedef int (*sse_event_fn)(void *arg, const sse_event *ev);

/* `max_event` bounds a line and an event's data (bytes); 0 → 16 MiB. */
sse_parser *sse_parser_new(size_t max_event, sse_event_fn on_event, void *arg);
void sse_parser_free(sse_parser *p);

/* 0 when all was consumed, 1 when the callback stopped parsing, -1 when a
 * line or an event went over max_event (the stream is then unusable). */
int sse_parser_feed(sse_parser *p, const char *data, size_t len);

/* The reconnection time the stream asked for (retry field), or -1. */
long sse_parser_retry_ms(const sse_parser *p);
/* The last event ID ("" when none): what Last-Event-ID resumes from. */
const char *sse_parser_last_id(const sse_parser *p);

#endif
