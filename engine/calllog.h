/* calllog — the record of every tool call (who, tool, outcome, duration,
 * arguments with secrets removed), written to the store in batches.
 *
 * Rows are queued in memory and committed together every 100 ms or every
 * 256 rows, whichever comes first, and at shutdown: one transaction per
 * batch instead of one per call. A crash loses at most the last batch of
 * this log (the audit trail of issue 5 is written before the call instead,
 * and fails closed). */
#ifndef FERRY_CALLLOG_H
#define FERRY_CALLLOG_H

#include <event2/event.h>

#include "store.h"

typedef struct calllog calllog;

/* `base` may be NULL: then every append is written at once (CLI use). */
calllog *calllog_new(store *db, struct event_base *base);
/* Writes what is queued and frees the log. */
void calllog_free(calllog *cl);
/* Copies the row. */
void calllog_append(calllog *cl, const call_record *row);
void calllog_flush(calllog *cl);

#endif
