/* audit — the hash-chained record of every external call ferry makes (tool
 * calls, and later sync requests, OAuth exchanges, MCP calls) and of every
 * decision about them (approvals, policy changes).
 *
 * Each row stores the SHA-256 of its content and of the previous row's
 * hash, so editing, inserting or deleting a row breaks the chain at that
 * point; audit_verify finds the first broken link.
 *
 * It fails closed: before an external call, audit_begin writes the call's
 * intent; if that write fails (disk full, database locked past its
 * timeout) the call must not be made. The full row is appended to the
 * chain when the call ends, in batches. */
#ifndef FERRY_AUDIT_H
#define FERRY_AUDIT_H

#include <event2/event.h>
#include <jansson.h>

#include "store.h"

typedef struct audit audit;

/* `base` may be NULL: rows are then written at once (CLI use). */
audit *audit_new(store *db, struct event_base *base);
/* Writes what is queued, then frees. */
void audit_free(audit *a);

/* Records the intent of an external call; -1 (err: internal, 503) means
 * the call must not be made. */
int audit_begin(audit *a, int64_t team_id, const char *operation, const char *request_id, int64_t *intent,
                ferr *err);
/* The call ended: its row joins the chain (copied; written within 100 ms). */
void audit_end(audit *a, int64_t intent, const audit_row *row);
/* A decision or a setting change: chained and written now. */
int audit_event(audit *a, const audit_row *row, ferr *err);
void audit_flush(audit *a);

/* {ok, rows, broken: {id, reason}?} over the whole chain. */
json_t *audit_verify(store *db, ferr *err);
/* The hash of a row given the previous hash (hex, 64 characters). */
void audit_hash(const audit_row *r, const char *prev, char out[80]);

#endif
