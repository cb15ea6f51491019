/* store_sync — the store's tables for the scheduler, syncs, records and
 * search (store_sync.c; part of the store module: its SQL lives only
 * there). See docs/sync.md for what the rows mean.
 *
 *   sched_jobs, sched_leases   jobs, when they run next, who runs them now
 *   sync_runs, sync_state      each run's counts; each sync's cursor
 *   records, document_chunks   synced records, their text in chunks, and
 *   document_chunks_fts        the FTS5 index over the chunks
 *
 * Functions return 0 on success and -1 with `err` on a database error,
 * unless they say otherwise. Strings in rows handed to callbacks are
 * borrowed for the duration of the callback. */
#ifndef FERRY_STORE_SYNC_H
#define FERRY_STORE_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "chunker.h"
#include "store.h"

/* ---- scheduler jobs and leases ---- */

/* Connections as (id, integration): all of them, or (only_without_jobs)
 * those that have no job of `kind` yet. */
typedef void (*store_connection_ref_fn)(void *ud, const char *id, const char *integration);
int store_sync_connections(store *s, const char *kind, int only_without_jobs, store_connection_ref_fn fn, void *ud,
                           ferr *err);

typedef struct store_job {
    char id[200];
    char kind[24];
    char subject[64];
    char name[64];
    char schedule[128];
    int64_t next_run_at;
    int failures;
    int64_t last_started_at, last_ended_at;
    char last_status[16];
    char last_error[512];
} store_job;

typedef void (*store_job_fn)(void *ud, const store_job *j);

/* Creates the job if it is new (first run at first_run_at); an existing
 * job keeps its next run and gets the schedule given. */
int store_job_ensure(store *s, const char *id, const char *kind, const char *subject, const char *name,
                     const char *schedule, int64_t first_run_at, ferr *err);
/* Deletes a job and its lease. */
int store_job_delete(store *s, const char *id, ferr *err);
/* 0 found, 1 absent, -1 error. */
int store_job_get(store *s, const char *id, store_job *out, ferr *err);
/* Every job of a kind. */
int store_jobs_list(store *s, const char *kind, store_job_fn fn, void *ud, ferr *err);
/* Jobs of `kinds` (a JSON array of names) due at `now` whose lease is free
 * or expired, soonest first. */
int store_jobs_due(store *s, int64_t now, const char *kinds, int limit, store_job_fn fn, void *ud, ferr *err);
/* Makes a job due now (a manual run). not_found when there is no such job. */
int store_job_request(store *s, const char *id, int64_t now, ferr *err);

typedef struct store_lease {
    int acquired;          /* 1: the caller holds it now */
    char holder[96];       /* else who does ("" when the job was simply not due) */
    char holder_run[40];   /* and the run it covers */
    char stale_run[40];    /* acquired over an expired lease: the run its holder left behind */
} store_lease;

/* In one transaction: if the job exists and is due (next_run_at <= now),
 * and its lease is free, expired, or already the owner's, the owner takes
 * it until now + ttl_ms for run `run_id`. */
int store_lease_acquire(store *s, const char *job_id, const char *owner, const char *run_id, int64_t now,
                        int64_t ttl_ms, store_lease *out, ferr *err);
/* Extends the owner's lease: 0, 1 when it is no longer theirs, -1. */
int store_lease_renew(store *s, const char *job_id, const char *owner, int64_t expires_at, ferr *err);

typedef struct store_job_outcome {
    int64_t next_run_at;
    int failures;
    int64_t started_at, ended_at;
    const char *status;    /* succeeded, partial, failed, skipped */
    const char *error;     /* NULL when none */
} store_job_outcome;

/* Records how a run ended and releases the lease, in one transaction, if
 * the lease is still the owner's: 0; 1 when it is not (nothing changed);
 * -1 on error. */
int store_job_finish(store *s, const char *job_id, const char *owner, const store_job_outcome *o, ferr *err);

/* ---- sync runs and state ---- */

typedef struct store_sync_run {
    char id[40];
    char connection_id[40];
    char sync[64];
    char trigger[16];      /* schedule | manual */
    char owner[96];
    int64_t started_at, ended_at;
    char status[16];       /* running, succeeded, partial, failed */
    int64_t attempts, pages, requests, added, updated, deleted, unchanged, waited_ms;
    char error_code[32];
    char error[512];
} store_sync_run;

int store_sync_run_insert(store *s, const store_sync_run *r, ferr *err);
/* Writes status, end, attempts, requests, waited_ms and error (the counts
 * of records and pages are written by store_sync_commit). */
int store_sync_run_update(store *s, const store_sync_run *r, ferr *err);
/* 0 found, 1 absent, -1 error. */
int store_sync_run_get(store *s, const char *id, store_sync_run *out, ferr *err);
typedef void (*store_sync_run_fn)(void *ud, const store_sync_run *r);
/* The latest runs of one sync, newest first. */
int store_sync_runs_list(store *s, const char *connection_id, const char *sync, int limit, store_sync_run_fn fn,
                         void *ud, ferr *err);
/* Ends runs left `running` by a process that stopped: run `run_id`, or
 * (NULL) every running run whose lease is no longer live at `now`. They
 * become partial when they committed a page, else failed, with `why`.
 * Returns how many (or -1). */
int store_sync_runs_interrupt(store *s, const char *run_id, int64_t now, const char *why, ferr *err);

/* The committed cursor (JSON text, malloc'd; NULL when none) and record
 * count of a sync. */
int store_sync_state_get(store *s, const char *connection_id, const char *sync, char **cursor, int64_t *records,
                         ferr *err);

/* ---- records ---- */

typedef struct store_record_op {
    int is_delete;
    const char *kind, *external_id;
    /* upserts: */
    const char *title, *url, *updated_at, *data;   /* NULL: none; data is JSON */
    int64_t updated_ms;                             /* 0: unknown */
    const unsigned char *hash;                      /* 16 bytes: what makes a replay a no-op */
    const char *text;
    const chunk_span *chunks;
    size_t nchunks;
} store_record_op;

typedef struct store_sync_page {
    const char *job_id, *owner;        /* the lease this commit must still hold (fencing) */
    int64_t lease_until;               /* and how long it is extended */
    const char *run_id;
    const char *connection_id, *sync, *integration, *category;
    int64_t team_id;
    int64_t user_id;                   /* 0: the connection is shared with the team */
    int set_cursor;                    /* 0: keep the cursor */
    const char *cursor;                /* JSON text; NULL: null */
    const store_record_op *ops;
    size_t nops;
} store_sync_page;

typedef struct store_sync_counts {
    int64_t added, updated, deleted, unchanged;
} store_sync_counts;

/* Applies ops in order, moves the cursor and adds a page and the counts to
 * the run, in one transaction, if the owner still holds the job's lease:
 * 0; 1 when the lease is gone (nothing written); -1 on error (nothing
 * written). Upserts are idempotent on (connection, kind, external_id): a
 * record whose hash is unchanged is left alone. */
int store_sync_commit(store *s, const store_sync_page *c, store_sync_counts *out, ferr *err);

/* The connection's sync outcome: last_synced_at (0: keep) and last_error
 * (NULL clears it). */
int store_connection_sync_result(store *s, const char *connection_id, int64_t synced_at, const char *last_error,
                                 ferr *err);

/* ---- listing syncs ---- */

typedef struct store_sync_row {
    store_job job;
    char integration[64];
    const char *cursor;            /* JSON text or NULL */
    int64_t records;
    int64_t cursor_updated_at;
    char running_run[40];          /* a live lease's run, or "" */
    char running_owner[96];
    int has_last;
    store_sync_run last;           /* the newest run */
} store_sync_row;

typedef void (*store_sync_row_fn)(void *ud, const store_sync_row *r);
/* Sync jobs of the connections a member sees (the team's shared ones and
 * their own); connection_id (may be NULL) narrows to one. */
int store_syncs_list(store *s, int64_t team_id, int64_t user_id, const char *connection_id, int64_t now,
                     store_sync_row_fn fn, void *ud, ferr *err);

/* ---- search ---- */

typedef struct store_search_query {
    const char *match;             /* an FTS5 query */
    int64_t team_id, user_id;      /* what the caller sees: the team's shared records and their own */
    const char *categories;        /* JSON array of the categories they may see */
    const char *category;          /* NULL: any of those */
    const char *integration;       /* NULL: any */
    int limit;                     /* chunks to rank */
} store_search_query;

typedef struct store_search_hit {
    int64_t chunk_id, record_id;
    const char *kind, *external_id, *title, *snippet, *url, *category, *integration, *connection_id, *updated_at;
    double score;                  /* bm25: lower is better */
} store_search_hit;

/* Hits in rank order; fn returns non-zero to stop. A query FTS5 cannot
 * parse is bad_request. */
typedef int (*store_search_fn)(void *ud, const store_search_hit *h);
int store_search(store *s, const store_search_query *q, store_search_fn fn, void *ud, ferr *err);

#endif
