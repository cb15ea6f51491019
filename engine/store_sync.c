/* store_sync.c — the store's SQL for the scheduler, sync runs, records,
 * chunks and search (see store_sync.h). Statements are prepared on first
 * use and kept for the store's life.
 *
 * The commit of a sync page writes FTS rows one at a time with plain
 * INSERT ... VALUES, never through triggers or INSERT ... SELECT: anything
 * that opens a statement journal inside the write transaction makes FTS5
 * flush a segment per row, which halves the write rate. */
#include "store_sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "store_internal.h"

enum sync_stmt {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_JOB_ENSURE,
    Q_JOB_DELETE,
    Q_JOB_GET,
    Q_JOB_LIST,
    Q_JOB_DUE,
    Q_JOB_REQUEST,
    Q_JOB_FINISH,
    Q_LEASE_GET,
    Q_LEASE_PUT,
    Q_LEASE_RENEW,
    Q_LEASE_RELEASE,
    Q_LEASE_DELETE,
    Q_RUN_INSERT,
    Q_RUN_UPDATE,
    Q_RUN_GET,
    Q_RUN_LIST,
    Q_RUN_INTERRUPT_ONE,
    Q_RUN_INTERRUPT_ORPHANS,
    Q_RUN_ADD_PAGE,
    Q_STATE_GET,
    Q_STATE_PUT,
    Q_STATE_ADJUST,
    Q_REC_FIND,
    Q_REC_INSERT,
    Q_REC_UPDATE,
    Q_REC_DELETE,
    Q_CHUNKS_OF,
    Q_CHUNK_DELETE,
    Q_CHUNK_INSERT,
    Q_FTS_INSERT,
    Q_FTS_DELETE,
    Q_CONN_SYNCED,
    Q_FORGET_FTS,
    Q_FORGET_CHUNKS,
    Q_FORGET_RECORDS,
    Q_FORGET_STATE,
    Q_FORGET_RUNS,
    Q_FORGET_LEASES,
    Q_FORGET_JOBS,
    Q_SYNCS_LIST,
    Q_SEARCH,
    Q_CONNECTIONS,
    Q_COUNT
};

#define JOB_COLUMNS                                                                                        \
    "j.id, j.kind, j.subject, j.name, j.schedule, j.next_run_at, j.failures, j.last_started_at, j.last_ended_at," \
    " j.last_status, j.last_error"
#define RUN_COLUMNS                                                                                         \
    "r.id, r.connection_id, r.sync, r.trigger, r.owner, r.started_at, r.ended_at, r.status, r.attempts, r.pages," \
    " r.requests, r.added, r.updated, r.deleted, r.unchanged, r.waited_ms, r.error_code, r.error"
#define INTERRUPTED                                                                                          \
    "UPDATE sync_runs SET status = CASE WHEN pages > 0 THEN 'partial' ELSE 'failed' END, ended_at = ?2,"       \
    " error_code = 'internal', error = ?3"

static const char *const sql[Q_COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_JOB_ENSURE] = "INSERT INTO sched_jobs(id, kind, subject, name, schedule, next_run_at, created_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                     " ON CONFLICT(id) DO UPDATE SET schedule = excluded.schedule"
                     " WHERE sched_jobs.schedule <> excluded.schedule",
    [Q_JOB_DELETE] = "DELETE FROM sched_jobs WHERE id = ?1",
    [Q_JOB_GET] = "SELECT " JOB_COLUMNS " FROM sched_jobs j WHERE j.id = ?1",
    [Q_JOB_LIST] = "SELECT " JOB_COLUMNS " FROM sched_jobs j WHERE j.kind = ?1 ORDER BY j.id",
    [Q_JOB_DUE] = "SELECT " JOB_COLUMNS " FROM sched_jobs j LEFT JOIN sched_leases l ON l.job_id = j.id"
                  " WHERE j.next_run_at <= ?1 AND (l.job_id IS NULL OR l.expires_at <= ?1)"
                  " AND j.kind IN (SELECT value FROM json_each(?3)) ORDER BY j.next_run_at LIMIT ?2",
    [Q_JOB_REQUEST] = "UPDATE sched_jobs SET next_run_at = min(next_run_at, ?2) WHERE id = ?1",
    [Q_JOB_FINISH] = "UPDATE sched_jobs SET next_run_at = ?2, failures = ?3, last_started_at = ?4,"
                     " last_ended_at = ?5, last_status = ?6, last_error = ?7 WHERE id = ?1",
    [Q_LEASE_GET] = "SELECT owner, run_id, expires_at FROM sched_leases WHERE job_id = ?1",
    [Q_LEASE_PUT] = "INSERT INTO sched_leases(job_id, owner, run_id, acquired_at, expires_at)"
                    " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(job_id) DO UPDATE SET owner = excluded.owner,"
                    " run_id = excluded.run_id, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at",
    [Q_LEASE_RENEW] = "UPDATE sched_leases SET expires_at = ?3 WHERE job_id = ?1 AND owner = ?2",
    [Q_LEASE_RELEASE] = "DELETE FROM sched_leases WHERE job_id = ?1 AND owner = ?2",
    [Q_LEASE_DELETE] = "DELETE FROM sched_leases WHERE job_id = ?1",
    [Q_RUN_INSERT] = "INSERT INTO sync_runs(id, connection_id, sync, trigger, owner, started_at, status)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running')",
    [Q_RUN_UPDATE] = "UPDATE sync_runs SET status = ?2, ended_at = ?3, attempts = ?4, requests = ?5, waited_ms = ?6,"
                     " error_code = ?7, error = ?8 WHERE id = ?1",
    [Q_RUN_GET] = "SELECT " RUN_COLUMNS " FROM sync_runs r WHERE r.id = ?1",
    [Q_RUN_LIST] = "SELECT " RUN_COLUMNS " FROM sync_runs r WHERE r.connection_id = ?1 AND r.sync = ?2"
                   " ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?3",
    [Q_RUN_INTERRUPT_ONE] = INTERRUPTED " WHERE id = ?1 AND status = 'running'",
    [Q_RUN_INTERRUPT_ORPHANS] = INTERRUPTED " WHERE status = 'running' AND id NOT IN"
                                " (SELECT run_id FROM sched_leases WHERE expires_at > ?1 AND run_id IS NOT NULL)",
    [Q_RUN_ADD_PAGE] = "UPDATE sync_runs SET pages = pages + 1, added = added + ?2, updated = updated + ?3,"
                       " deleted = deleted + ?4, unchanged = unchanged + ?5 WHERE id = ?1",
    [Q_STATE_GET] = "SELECT cursor, records FROM sync_state WHERE connection_id = ?1 AND sync = ?2",
    [Q_STATE_PUT] = "INSERT INTO sync_state(connection_id, sync, cursor, records, updated_at, run_id)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(connection_id, sync) DO UPDATE SET"
                    " cursor = CASE WHEN ?7 THEN excluded.cursor ELSE sync_state.cursor END,"
                    " records = sync_state.records + excluded.records, updated_at = excluded.updated_at,"
                    " run_id = excluded.run_id",
    [Q_STATE_ADJUST] = "UPDATE sync_state SET records = records + ?3 WHERE connection_id = ?1 AND sync = ?2",
    [Q_REC_FIND] = "SELECT id, content_hash, sync FROM records WHERE connection_id = ?1 AND kind = ?2"
                   " AND external_id = ?3",
    [Q_REC_INSERT] = "INSERT INTO records(connection_id, kind, external_id, sync, integration, doc_category, team_id,"
                     " user_id, title, url, updated_at, updated_ms, data, content_hash, created_at, modified_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?15)",
    [Q_REC_UPDATE] = "UPDATE records SET sync = ?2, doc_category = ?3, title = ?4, url = ?5, updated_at = ?6,"
                     " updated_ms = ?7, data = ?8, content_hash = ?9, modified_at = ?10 WHERE id = ?1",
    [Q_REC_DELETE] = "DELETE FROM records WHERE id = ?1",
    [Q_CHUNKS_OF] = "SELECT id, title, body FROM document_chunks WHERE record_id = ?1",
    [Q_CHUNK_DELETE] = "DELETE FROM document_chunks WHERE id = ?1",
    [Q_CHUNK_INSERT] = "INSERT INTO document_chunks(record_id, seq, doc_category, integration, connection_id,"
                       " team_id, user_id, url, ts, title, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [Q_FTS_INSERT] = "INSERT INTO document_chunks_fts(rowid, title, body) VALUES (?1, ?2, ?3)",
    [Q_FTS_DELETE] = "INSERT INTO document_chunks_fts(document_chunks_fts, rowid, title, body)"
                     " VALUES ('delete', ?1, ?2, ?3)",
    [Q_CONN_SYNCED] = "UPDATE connections SET last_synced_at = coalesce(?2, last_synced_at), last_error = ?3"
                      " WHERE id = ?1",
    [Q_FORGET_FTS] = "INSERT INTO document_chunks_fts(document_chunks_fts, rowid, title, body)"
                     " SELECT 'delete', c.id, c.title, c.body FROM document_chunks c"
                     " WHERE c.record_id IN (SELECT id FROM records WHERE connection_id = ?1)",
    [Q_FORGET_CHUNKS] = "DELETE FROM document_chunks WHERE record_id IN"
                        " (SELECT id FROM records WHERE connection_id = ?1)",
    [Q_FORGET_RECORDS] = "DELETE FROM records WHERE connection_id = ?1",
    [Q_FORGET_STATE] = "DELETE FROM sync_state WHERE connection_id = ?1",
    [Q_FORGET_RUNS] = "DELETE FROM sync_runs WHERE connection_id = ?1",
    [Q_FORGET_LEASES] = "DELETE FROM sched_leases WHERE job_id IN (SELECT id FROM sched_jobs WHERE subject = ?1)",
    [Q_FORGET_JOBS] = "DELETE FROM sched_jobs WHERE subject = ?1",
    [Q_SYNCS_LIST] =
        "SELECT " JOB_COLUMNS ", c.integration, st.cursor, st.records, st.updated_at,"
        " CASE WHEN l.expires_at > ?4 THEN l.run_id END, CASE WHEN l.expires_at > ?4 THEN l.owner END, " RUN_COLUMNS
        " FROM sched_jobs j JOIN connections c ON c.id = j.subject"
        " LEFT JOIN sync_state st ON st.connection_id = j.subject AND st.sync = j.name"
        " LEFT JOIN sched_leases l ON l.job_id = j.id"
        " LEFT JOIN sync_runs r ON r.id = (SELECT x.id FROM sync_runs x WHERE x.connection_id = j.subject"
        "   AND x.sync = j.name ORDER BY x.started_at DESC, x.rowid DESC LIMIT 1)"
        " WHERE j.kind = 'sync' AND c.team_id = ?1 AND (c.scope = 'team' OR c.user_id = ?2)"
        " AND (?3 IS NULL OR j.subject = ?3) ORDER BY c.connected_at, c.id, j.name",
    /* Rank order comes from FTS5 (ORDER BY rank lets it sort; the rank
     * function is bm25 with titles weighing double, set in the migration). */
    [Q_SEARCH] =
        "SELECT c.id, c.record_id, r.kind, r.external_id, r.title,"
        " snippet(document_chunks_fts, -1, '**', '**', '…', 24), c.url, c.doc_category, c.integration,"
        " c.connection_id, r.updated_at, document_chunks_fts.rank"
        " FROM document_chunks_fts JOIN document_chunks c ON c.id = document_chunks_fts.rowid"
        " JOIN records r ON r.id = c.record_id"
        " WHERE document_chunks_fts MATCH ?1 AND c.team_id = ?2 AND (c.user_id IS NULL OR c.user_id = ?3)"
        " AND c.doc_category IN (SELECT value FROM json_each(?4))"
        " AND (?5 IS NULL OR c.doc_category = ?5) AND (?6 IS NULL OR c.integration = ?6)"
        " ORDER BY document_chunks_fts.rank LIMIT ?7",
    [Q_CONNECTIONS] = "SELECT c.id, c.integration FROM connections c WHERE ?2 = 0 OR NOT EXISTS"
                      " (SELECT 1 FROM sched_jobs j WHERE j.subject = c.id AND j.kind = ?1) ORDER BY c.id",
};


struct store_sync_stmts {
    sqlite3_stmt *st[Q_COUNT];
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int db_fail(store *s, ferr *err, const char *what)
{
    return ferr_set(err, FERR_INTERNAL, "store: %s: %s", what, sqlite3_errmsg(store_sqlite(s)));
}

void store_sync_release(store *s)
{
    store_sync_stmts **slot = store_sync_slot(s);
    if (!*slot)
        return;
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize((*slot)->st[i]);
    free(*slot);
    *slot = NULL;
}

/* A statement ready for new bindings, or NULL when preparing failed. */
static sqlite3_stmt *q(store *s, enum sync_stmt id)
{
    store_sync_stmts **slot = store_sync_slot(s);
    if (!*slot) {
        *slot = calloc(1, sizeof **slot);
        if (!*slot)
            return NULL;
    }
    sqlite3_stmt *st = (*slot)->st[id];
    if (!st) {
        if (sqlite3_prepare_v3(store_sqlite(s), sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
            return NULL;
        (*slot)->st[id] = st;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Steps a statement that returns no rows: 0 or -1. */
static int run(sqlite3_stmt *st)
{
    if (!st)
        return -1;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_time(sqlite3_stmt *st, int i, int64_t ms)
{
    if (ms)
        sqlite3_bind_int64(st, i, ms);
    else
        sqlite3_bind_null(st, i);
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", v ? (const char *)v : "");
}

static int begin(store *s) { return run(q(s, Q_BEGIN)); }
static void rollback(store *s) { run(q(s, Q_ROLLBACK)); }
static int commit(store *s) { return run(q(s, Q_COMMIT)); }

/* ---- jobs and leases ---- */

int store_sync_connections(store *s, const char *kind, int only_without_jobs, store_connection_ref_fn fn, void *ud,
                           ferr *err)
{
    sqlite3_stmt *st = q(s, Q_CONNECTIONS);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, only_without_jobs);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "listing connections");
}

static void read_job(sqlite3_stmt *st, int c, store_job *j)
{
    memset(j, 0, sizeof *j);
    copy_col(j->id, sizeof j->id, st, c);
    copy_col(j->kind, sizeof j->kind, st, c + 1);
    copy_col(j->subject, sizeof j->subject, st, c + 2);
    copy_col(j->name, sizeof j->name, st, c + 3);
    copy_col(j->schedule, sizeof j->schedule, st, c + 4);
    j->next_run_at = sqlite3_column_int64(st, c + 5);
    j->failures = sqlite3_column_int(st, c + 6);
    j->last_started_at = sqlite3_column_int64(st, c + 7);
    j->last_ended_at = sqlite3_column_int64(st, c + 8);
    copy_col(j->last_status, sizeof j->last_status, st, c + 9);
    copy_col(j->last_error, sizeof j->last_error, st, c + 10);
}

int store_job_ensure(store *s, const char *id, const char *kind, const char *subject, const char *name,
                     const char *schedule, int64_t first_run_at, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_JOB_ENSURE);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, schedule, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, first_run_at);
    sqlite3_bind_int64(st, 7, now_ms());
    return run(st) == 0 ? 0 : db_fail(s, err, "saving a job");
}

int store_job_delete(store *s, const char *id, ferr *err)
{
    if (begin(s) < 0)
        return db_fail(s, err, "begin");
    sqlite3_stmt *a = q(s, Q_JOB_DELETE);
    if (a)
        sqlite3_bind_text(a, 1, id, -1, SQLITE_STATIC);
    int ok = run(a) == 0;
    sqlite3_stmt *b = ok ? q(s, Q_LEASE_DELETE) : NULL;
    if (b)
        sqlite3_bind_text(b, 1, id, -1, SQLITE_STATIC);
    if (ok && run(b) == 0 && commit(s) == 0)
        return 0;
    db_fail(s, err, "deleting a job");
    rollback(s);
    return -1;
}

int store_job_get(store *s, const char *id, store_job *out, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_JOB_GET);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_job(st, 0, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(s, err, "reading a job");
    return rc == SQLITE_ROW ? 0 : 1;
}

static int each_job(store *s, sqlite3_stmt *st, store_job_fn fn, void *ud, ferr *err)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_job j;
        read_job(st, 0, &j);
        fn(ud, &j);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "listing jobs");
}

int store_jobs_list(store *s, const char *kind, store_job_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_JOB_LIST);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    return each_job(s, st, fn, ud, err);
}

int store_jobs_due(store *s, int64_t now, const char *kinds, int limit, store_job_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_JOB_DUE);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, limit);
    sqlite3_bind_text(st, 3, kinds, -1, SQLITE_STATIC);
    return each_job(s, st, fn, ud, err);
}

int store_job_request(store *s, const char *id, int64_t now, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_JOB_REQUEST);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    if (run(st) < 0)
        return db_fail(s, err, "requesting a run");
    if (sqlite3_changes(store_sqlite(s)) == 0)
        return ferr_set(err, FERR_NOT_FOUND, "no job %s", id);
    return 0;
}

int store_lease_acquire(store *s, const char *job_id, const char *owner, const char *run_id, int64_t now,
                        int64_t ttl_ms, store_lease *out, ferr *err)
{
    memset(out, 0, sizeof *out);
    if (begin(s) < 0)
        return db_fail(s, err, "begin");
    store_job j;
    ferr ignore = {0};
    int found = store_job_get(s, job_id, &j, &ignore);
    ferr_clear(&ignore);
    if (found < 0)
        goto fail;
    /* Due is checked inside the transaction: a run another process just
     * finished has moved next_run_at on, so this occurrence runs once. */
    if (found == 1 || j.next_run_at > now) {
        rollback(s);
        return 0;
    }
    sqlite3_stmt *st = q(s, Q_LEASE_GET);
    if (!st)
        goto fail;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *holder = (const char *)sqlite3_column_text(st, 0);
        int mine = holder && strcmp(holder, owner) == 0;
        if (sqlite3_column_int64(st, 2) > now && !mine) {
            copy_col(out->holder, sizeof out->holder, st, 0);
            copy_col(out->holder_run, sizeof out->holder_run, st, 1);
            sqlite3_reset(st);
            rollback(s);
            return 0;
        }
        copy_col(out->stale_run, sizeof out->stale_run, st, 1);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        goto fail;
    st = q(s, Q_LEASE_PUT);
    if (!st)
        goto fail;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
    bind_text(st, 3, run_id);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now + ttl_ms);
    if (run(st) < 0 || commit(s) < 0)
        goto fail;
    out->acquired = 1;
    return 0;
fail:
    db_fail(s, err, "taking a job's lease");
    rollback(s);
    return -1;
}

int store_lease_renew(store *s, const char *job_id, const char *owner, int64_t expires_at, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_LEASE_RENEW);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, expires_at);
    if (run(st) < 0)
        return db_fail(s, err, "renewing a lease");
    return sqlite3_changes(store_sqlite(s)) == 1 ? 0 : 1;
}

int store_job_finish(store *s, const char *job_id, const char *owner, const store_job_outcome *o, ferr *err)
{
    if (begin(s) < 0)
        return db_fail(s, err, "begin");
    sqlite3_stmt *st = q(s, Q_LEASE_RELEASE);
    if (!st)
        goto fail;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
    if (run(st) < 0)
        goto fail;
    if (sqlite3_changes(store_sqlite(s)) != 1) {
        /* Someone else holds it now: their run decides what comes next. */
        rollback(s);
        return 1;
    }
    st = q(s, Q_JOB_FINISH);
    if (!st)
        goto fail;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, o->next_run_at);
    sqlite3_bind_int(st, 3, o->failures);
    bind_time(st, 4, o->started_at);
    bind_time(st, 5, o->ended_at);
    bind_text(st, 6, o->status);
    bind_text(st, 7, o->error);
    if (run(st) < 0 || commit(s) < 0)
        goto fail;
    return 0;
fail:
    db_fail(s, err, "finishing a job");
    rollback(s);
    return -1;
}

/* ---- runs and state ---- */

static void read_run(sqlite3_stmt *st, int c, store_sync_run *r)
{
    memset(r, 0, sizeof *r);
    copy_col(r->id, sizeof r->id, st, c);
    copy_col(r->connection_id, sizeof r->connection_id, st, c + 1);
    copy_col(r->sync, sizeof r->sync, st, c + 2);
    copy_col(r->trigger, sizeof r->trigger, st, c + 3);
    copy_col(r->owner, sizeof r->owner, st, c + 4);
    r->started_at = sqlite3_column_int64(st, c + 5);
    r->ended_at = sqlite3_column_int64(st, c + 6);
    copy_col(r->status, sizeof r->status, st, c + 7);
    int64_t *counts[] = {&r->attempts, &r->pages, &r->requests, &r->added, &r->updated,
                         &r->deleted,  &r->unchanged, &r->waited_ms};
    for (int i = 0; i < 8; i++)
        *counts[i] = sqlite3_column_int64(st, c + 8 + i);
    copy_col(r->error_code, sizeof r->error_code, st, c + 16);
    copy_col(r->error, sizeof r->error, st, c + 17);
}

int store_sync_run_insert(store *s, const store_sync_run *r, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_RUN_INSERT);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->connection_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->sync, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->trigger, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, r->started_at);
    return run(st) == 0 ? 0 : db_fail(s, err, "recording a run");
}

int store_sync_run_update(store *s, const store_sync_run *r, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_RUN_UPDATE);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->status, -1, SQLITE_STATIC);
    bind_time(st, 3, r->ended_at);
    sqlite3_bind_int64(st, 4, r->attempts);
    sqlite3_bind_int64(st, 5, r->requests);
    sqlite3_bind_int64(st, 6, r->waited_ms);
    bind_text(st, 7, r->error_code[0] ? r->error_code : NULL);
    bind_text(st, 8, r->error[0] ? r->error : NULL);
    return run(st) == 0 ? 0 : db_fail(s, err, "recording a run");
}

int store_sync_run_get(store *s, const char *id, store_sync_run *out, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_RUN_GET);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_run(st, 0, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(s, err, "reading a run");
    return rc == SQLITE_ROW ? 0 : 1;
}

int store_sync_runs_list(store *s, const char *connection_id, const char *sync, int limit, store_sync_run_fn fn,
                         void *ud, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_RUN_LIST);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, connection_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sync, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_sync_run r;
        read_run(st, 0, &r);
        fn(ud, &r);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "listing runs");
}

int store_sync_runs_interrupt(store *s, const char *run_id, int64_t now, const char *why, ferr *err)
{
    sqlite3_stmt *st = q(s, run_id ? Q_RUN_INTERRUPT_ONE : Q_RUN_INTERRUPT_ORPHANS);
    if (!st)
        return db_fail(s, err, "preparing");
    if (run_id)
        sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, why, -1, SQLITE_STATIC);
    if (run(st) < 0)
        return db_fail(s, err, "ending interrupted runs");
    return sqlite3_changes(store_sqlite(s));
}

int store_sync_state_get(store *s, const char *connection_id, const char *sync, char **cursor, int64_t *records,
                         ferr *err)
{
    *cursor = NULL;
    if (records)
        *records = 0;
    sqlite3_stmt *st = q(s, Q_STATE_GET);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, connection_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sync, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *c = sqlite3_column_text(st, 0);
        *cursor = c ? strdup((const char *)c) : NULL;
        if (records)
            *records = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_fail(s, err, "reading a cursor");
}

int store_connection_sync_result(store *s, const char *connection_id, int64_t synced_at, const char *last_error,
                                 ferr *err)
{
    sqlite3_stmt *st = q(s, Q_CONN_SYNCED);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, connection_id, -1, SQLITE_STATIC);
    bind_time(st, 2, synced_at);
    bind_text(st, 3, last_error);
    return run(st) == 0 ? 0 : db_fail(s, err, "updating the connection");
}

/* ---- records ---- */

/* Removes a record's chunks from the index and the table. */
static int drop_chunks(store *s, int64_t record_id)
{
    sqlite3_stmt *list = q(s, Q_CHUNKS_OF);
    if (!list)
        return -1;
    sqlite3_bind_int64(list, 1, record_id);
    int rc;
    while ((rc = sqlite3_step(list)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(list, 0);
        /* External content: the index is told the old text to remove. */
        sqlite3_stmt *fts = q(s, Q_FTS_DELETE);
        sqlite3_stmt *del = q(s, Q_CHUNK_DELETE);
        if (!fts || !del)
            break;
        sqlite3_bind_int64(fts, 1, id);
        sqlite3_bind_value(fts, 2, sqlite3_column_value(list, 1));
        sqlite3_bind_value(fts, 3, sqlite3_column_value(list, 2));
        if (run(fts) < 0)
            break;
        sqlite3_bind_int64(del, 1, id);
        if (run(del) < 0)
            break;
    }
    sqlite3_reset(list);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int add_chunks(store *s, const store_sync_page *c, const store_record_op *op, int64_t record_id)
{
    for (size_t i = 0; i < op->nchunks || (i == 0 && op->nchunks == 0 && op->title); i++) {
        /* A record with a title and no text still gets one chunk, so its
         * title is found. */
        const char *body = op->nchunks ? op->text + op->chunks[i].off : "";
        int len = op->nchunks ? (int)op->chunks[i].len : 0;
        sqlite3_stmt *st = q(s, Q_CHUNK_INSERT);
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, record_id);
        sqlite3_bind_int(st, 2, (int)i);
        sqlite3_bind_text(st, 3, c->category, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, c->integration, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, c->connection_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, c->team_id);
        if (c->user_id)
            sqlite3_bind_int64(st, 7, c->user_id);
        bind_text(st, 8, op->url);
        bind_time(st, 9, op->updated_ms);
        bind_text(st, 10, op->title);
        sqlite3_bind_text(st, 11, body, len, SQLITE_STATIC);
        if (run(st) < 0)
            return -1;
        int64_t chunk_id = sqlite3_last_insert_rowid(store_sqlite(s));
        st = q(s, Q_FTS_INSERT);
        if (!st)
            return -1;
        sqlite3_bind_int64(st, 1, chunk_id);
        bind_text(st, 2, op->title);
        sqlite3_bind_text(st, 3, body, len, SQLITE_STATIC);
        if (run(st) < 0)
            return -1;
    }
    return 0;
}

/* records_delta[i]: how the record count of another sync changed (a record
 * moved from it to this one). */
typedef struct moved {
    char sync[64];
    int64_t delta;
} moved;

static int note_move(moved *m, size_t *n, size_t cap, const char *sync)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(m[i].sync, sync) == 0) {
            m[i].delta--;
            return 0;
        }
    if (*n == cap)
        return 0;   /* more than cap other syncs in one page: counts drift a little */
    snprintf(m[*n].sync, sizeof m[*n].sync, "%s", sync);
    m[(*n)++].delta = -1;
    return 0;
}

static int apply_op(store *s, const store_sync_page *c, const store_record_op *op, store_sync_counts *n,
                    int64_t *records_delta, moved *mv, size_t *nmv, int64_t ts)
{
    sqlite3_stmt *find = q(s, Q_REC_FIND);
    if (!find)
        return -1;
    sqlite3_bind_text(find, 1, c->connection_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(find, 2, op->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(find, 3, op->external_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(find);
    int64_t id = 0;
    int same = 0, other_sync = 0;
    char prev_sync[64] = "";
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(find, 0);
        same = !op->is_delete && sqlite3_column_bytes(find, 1) == 16 &&
               memcmp(sqlite3_column_blob(find, 1), op->hash, 16) == 0;
        copy_col(prev_sync, sizeof prev_sync, find, 2);
        other_sync = strcmp(prev_sync, c->sync) != 0;
    }
    sqlite3_reset(find);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -1;

    if (op->is_delete) {
        if (!id)
            return 0;   /* already gone: deleting is idempotent too */
        if (drop_chunks(s, id) < 0)
            return -1;
        sqlite3_stmt *del = q(s, Q_REC_DELETE);
        if (!del)
            return -1;
        sqlite3_bind_int64(del, 1, id);
        if (run(del) < 0)
            return -1;
        n->deleted++;
        if (other_sync)
            note_move(mv, nmv, 8, prev_sync);
        else
            (*records_delta)--;
        return 0;
    }
    if (id && same && !other_sync) {
        n->unchanged++;   /* a replayed page: nothing to write */
        return 0;
    }
    if (id) {
        sqlite3_stmt *up = q(s, Q_REC_UPDATE);
        if (!up)
            return -1;
        sqlite3_bind_int64(up, 1, id);
        sqlite3_bind_text(up, 2, c->sync, -1, SQLITE_STATIC);
        sqlite3_bind_text(up, 3, c->category, -1, SQLITE_STATIC);
        bind_text(up, 4, op->title);
        bind_text(up, 5, op->url);
        bind_text(up, 6, op->updated_at);
        bind_time(up, 7, op->updated_ms);
        bind_text(up, 8, op->data);
        sqlite3_bind_blob(up, 9, op->hash, 16, SQLITE_STATIC);
        sqlite3_bind_int64(up, 10, ts);
        if (run(up) < 0 || drop_chunks(s, id) < 0)
            return -1;
        n->updated++;
        if (other_sync) {
            note_move(mv, nmv, 8, prev_sync);
            (*records_delta)++;
        }
    } else {
        sqlite3_stmt *ins = q(s, Q_REC_INSERT);
        if (!ins)
            return -1;
        sqlite3_bind_text(ins, 1, c->connection_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 2, op->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 3, op->external_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 4, c->sync, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 5, c->integration, -1, SQLITE_STATIC);
        sqlite3_bind_text(ins, 6, c->category, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 7, c->team_id);
        if (c->user_id)
            sqlite3_bind_int64(ins, 8, c->user_id);
        bind_text(ins, 9, op->title);
        bind_text(ins, 10, op->url);
        bind_text(ins, 11, op->updated_at);
        bind_time(ins, 12, op->updated_ms);
        bind_text(ins, 13, op->data);
        sqlite3_bind_blob(ins, 14, op->hash, 16, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 15, ts);
        if (run(ins) < 0)
            return -1;
        id = sqlite3_last_insert_rowid(store_sqlite(s));
        n->added++;
        (*records_delta)++;
    }
    return add_chunks(s, c, op, id);
}

int store_sync_commit(store *s, const store_sync_page *c, store_sync_counts *out, ferr *err)
{
    memset(out, 0, sizeof *out);
    if (begin(s) < 0)
        return db_fail(s, err, "begin");
    /* Fencing: only the lease holder's pages land. A process whose lease
     * expired and was taken over writes nothing more. */
    if (store_lease_renew(s, c->job_id, c->owner, c->lease_until, err) != 0) {
        rollback(s);
        return err->code ? -1 : 1;
    }
    int64_t ts = now_ms();
    int64_t delta = 0;
    moved mv[8];
    size_t nmv = 0;
    for (size_t i = 0; i < c->nops; i++)
        if (apply_op(s, c, &c->ops[i], out, &delta, mv, &nmv, ts) < 0)
            goto fail;
    sqlite3_stmt *st = q(s, Q_STATE_PUT);
    if (!st)
        goto fail;
    sqlite3_bind_text(st, 1, c->connection_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->sync, -1, SQLITE_STATIC);
    bind_text(st, 3, c->set_cursor ? c->cursor : NULL);
    sqlite3_bind_int64(st, 4, delta);
    sqlite3_bind_int64(st, 5, ts);
    bind_text(st, 6, c->run_id);
    sqlite3_bind_int(st, 7, c->set_cursor);
    if (run(st) < 0)
        goto fail;
    for (size_t i = 0; i < nmv; i++) {
        st = q(s, Q_STATE_ADJUST);
        if (!st)
            goto fail;
        sqlite3_bind_text(st, 1, c->connection_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, mv[i].sync, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, mv[i].delta);
        if (run(st) < 0)
            goto fail;
    }
    st = q(s, Q_RUN_ADD_PAGE);
    if (!st)
        goto fail;
    sqlite3_bind_text(st, 1, c->run_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, out->added);
    sqlite3_bind_int64(st, 3, out->updated);
    sqlite3_bind_int64(st, 4, out->deleted);
    sqlite3_bind_int64(st, 5, out->unchanged);
    if (run(st) < 0 || commit(s) < 0)
        goto fail;
    return 0;
fail:
    db_fail(s, err, "committing synced records");
    rollback(s);
    memset(out, 0, sizeof *out);
    return -1;
}

int store_sync_forget_connection(store *s, const char *connection_id)
{
    static const enum sync_stmt steps[] = {Q_FORGET_FTS,  Q_FORGET_CHUNKS, Q_FORGET_RECORDS, Q_FORGET_STATE,
                                           Q_FORGET_RUNS, Q_FORGET_LEASES, Q_FORGET_JOBS};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        sqlite3_stmt *st = q(s, steps[i]);
        if (!st)
            return -1;
        sqlite3_bind_text(st, 1, connection_id, -1, SQLITE_STATIC);
        if (run(st) < 0)
            return -1;
    }
    return 0;
}

/* ---- listing and search ---- */

int store_syncs_list(store *s, int64_t team_id, int64_t user_id, const char *connection_id, int64_t now,
                     store_sync_row_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_SYNCS_LIST);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_int64(st, 2, user_id);
    bind_text(st, 3, connection_id);
    sqlite3_bind_int64(st, 4, now);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_sync_row r;
        memset(&r, 0, sizeof r);
        read_job(st, 0, &r.job);
        copy_col(r.integration, sizeof r.integration, st, 11);
        r.cursor = (const char *)sqlite3_column_text(st, 12);
        r.records = sqlite3_column_int64(st, 13);
        r.cursor_updated_at = sqlite3_column_int64(st, 14);
        copy_col(r.running_run, sizeof r.running_run, st, 15);
        copy_col(r.running_owner, sizeof r.running_owner, st, 16);
        if (sqlite3_column_type(st, 17) != SQLITE_NULL) {
            r.has_last = 1;
            read_run(st, 17, &r.last);
        }
        fn(ud, &r);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "listing syncs");
}

int store_search(store *s, const store_search_query *qy, store_search_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = q(s, Q_SEARCH);
    if (!st)
        return db_fail(s, err, "preparing");
    sqlite3_bind_text(st, 1, qy->match, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, qy->team_id);
    sqlite3_bind_int64(st, 3, qy->user_id);
    sqlite3_bind_text(st, 4, qy->categories, -1, SQLITE_STATIC);
    bind_text(st, 5, qy->category);
    bind_text(st, 6, qy->integration);
    sqlite3_bind_int(st, 7, qy->limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_search_hit h = {
            .chunk_id = sqlite3_column_int64(st, 0),
            .record_id = sqlite3_column_int64(st, 1),
            .kind = (const char *)sqlite3_column_text(st, 2),
            .external_id = (const char *)sqlite3_column_text(st, 3),
            .title = (const char *)sqlite3_column_text(st, 4),
            .snippet = (const char *)sqlite3_column_text(st, 5),
            .url = (const char *)sqlite3_column_text(st, 6),
            .category = (const char *)sqlite3_column_text(st, 7),
            .integration = (const char *)sqlite3_column_text(st, 8),
            .connection_id = (const char *)sqlite3_column_text(st, 9),
            .updated_at = (const char *)sqlite3_column_text(st, 10),
            .score = sqlite3_column_double(st, 11),
        };
        if (fn(ud, &h))
            break;
    }
    int failed = rc != SQLITE_ROW && rc != SQLITE_DONE;
    if (failed) {
        /* The query text comes from the caller: a syntax FTS5 rejects is
         * their mistake, not ours. */
        const char *msg = sqlite3_errmsg(store_sqlite(s));
        if (strstr(msg, "fts5") || strstr(msg, "syntax"))
            ferr_set(err, FERR_BAD_REQUEST, "the search query cannot be read: %s", msg);
        else
            db_fail(s, err, "searching");
    }
    sqlite3_reset(st);
    return failed ? -1 : 0;
}
