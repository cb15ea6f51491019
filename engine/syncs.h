/* syncs — running providers' syncs: `syncs = {name = {every, category,
 * run = function(ctx, cursor)}}` (API.md), each a job of the scheduler
 * per connection.
 *
 * A run is a task in the provider's Lua state, like a tool call, with the
 * connection's credentials and ctx.records / ctx.checkpoint (lua_records.c).
 * Records a script upserts or deletes are held in memory until
 * ctx.checkpoint(cursor) commits them, chunked and indexed, together with
 * the cursor, in one transaction fenced on the run's lease. So a run that
 * dies anywhere resumes from the last checkpoint and replays at most the
 * pages after it; upserts are idempotent on (connection, kind, external_id).
 *
 * A run that fails is resumed from its last checkpoint within the same run:
 * after exactly the Retry-After of an upstream 429/503
 * (upstream_rate_limited with retry_after), or after a jittered exponential
 * backoff for transient errors (upstream_error, upstream_timeout, a busy
 * store), up to a number of attempts; then it ends failed (or partial when
 * it committed pages), with its error on the run and the connection's
 * last_error, and the scheduler retries it later with backoff.
 *
 * Each run is one audited operation ("<slug>:sync:<name>"): its intent is
 * written before any request (fail closed), its row when it ends, with the
 * counts. Runs are recorded in sync_runs; docs/sync.md has the details. */
#ifndef FERRY_SYNCS_H
#define FERRY_SYNCS_H

#include <jansson.h>

#include "audit.h"
#include "lua_ctx.h"
#include "providers.h"
#include "scheduler.h"

typedef struct syncs syncs;
typedef struct sync_run sync_run;

typedef struct syncs_config {
    providers *providers;
    lua_ctx_services svc;          /* what primitives use (HTTP client, store, budgets, OAuth) */
    vault *vault;
    audit *audit;                  /* may be NULL (then runs are not audited) */
    sched *sched;
    size_t chunk_size;             /* bytes per chunk; 0 → 1000 */
    long chunk_overlap;            /* bytes; negative → 100 */
    int max_attempts;              /* attempts per run for transient errors; 0 → 4 */
    int64_t retry_base_ms;         /* first wait between attempts, doubling; 0 → 1000 */
    int64_t max_wait_ms;           /* Retry-After waits a run may sit through; 0 → 3600000 */
    unsigned cpu_ms;               /* CPU of a whole run; 0 → 600000 */
    unsigned slice_ms;             /* CPU between two waits (requests, checkpoints); 0 → 1000 */
    size_t max_pending;            /* records between checkpoints; 0 → 50000 */
    size_t max_pending_bytes;      /* their bytes; 0 → 256 MiB */
} syncs_config;

/* Registers the "sync" job kind with cfg->sched. */
syncs *syncs_new(const syncs_config *cfg);
/* Stops runs in progress (their uncommitted pages are dropped) and frees. */
void syncs_free(syncs *y);

/* Reconciles every job (below) and then, every 15 s, gives new
 * connections theirs (serve). */
int syncs_start(syncs *y, ferr *err);

/* Makes sure every connection has a job for each sync of its provider:
 * only connections without any (cheap, periodic), or all of them (full: at
 * start, also updating schedules and removing syncs a provider dropped). */
int syncs_reconcile(syncs *y, int full, ferr *err);

/* Runs a sync of a connection now. `who` must see the connection (NULL:
 * the operator at the command line). *out: {"run": {...}, "started": bool}
 * (false when a run already holds it; that run is returned). */
int syncs_run_now(syncs *y, const principal *who, const char *connection_id, const char *sync, json_t **out,
                  ferr *err);

/* GET /v1/syncs: {"syncs": [...]} of the connections `who` sees. */
json_t *syncs_list(syncs *y, const principal *who, const char *connection_id, ferr *err);
/* One sync with its latest runs. */
json_t *syncs_get(syncs *y, const principal *who, const char *connection_id, const char *sync, int limit,
                  ferr *err);
/* A run as the API shows it. */
json_t *syncs_run_json(const store_sync_run *r);

/* Called when any run of this process ends (the CLI waits on it). */
typedef void (*syncs_ended_fn)(void *ud, const char *run_id);
void syncs_on_end(syncs *y, syncs_ended_fn fn, void *ud);
size_t syncs_running(const syncs *y);

/* ---- for ctx.records and ctx.checkpoint (lua_records.c) ---- */

typedef struct sync_record {
    const char *kind, *external_id;
    const char *title, *url, *updated_at, *data;   /* NULL when absent; data is JSON text */
    const char *text;                              /* may be NULL */
    size_t text_len;
    int64_t updated_ms;                            /* 0 when unknown */
} sync_record;

/* Held until the next checkpoint. -1 with err (the run's limits, or a run
 * that can no longer commit). */
int sync_run_upsert(sync_run *r, const sync_record *rec, ferr *err);
int sync_run_delete(sync_run *r, const char *kind, const char *external_id, ferr *err);
/* Commits what is held with the new cursor (JSON text; NULL: null) in one
 * transaction. -1 with err: nothing was committed. */
int sync_run_checkpoint(sync_run *r, const char *cursor, ferr *err);

/* Milliseconds since the epoch of an RFC 3339 date-time or a YYYY-MM-DD
 * date; 0 when it is neither. */
int64_t syncs_parse_time(const char *text);

#endif
