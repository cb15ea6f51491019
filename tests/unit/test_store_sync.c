/* test_store_sync — the store's side of syncs: leases taken once and only
 * while a job is due, expired leases taken over, commits fenced on the
 * lease, idempotent upserts (a replayed page changes nothing), deletes,
 * chunks and the FTS index kept in step, record counts per sync, and a
 * connection's deletion taking everything of it. */
#include "store_internal.h"
#include "store_sync.h"
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp[64], data[128];

static store *open_fresh(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/ferry-test-sync-XXXXXX");
    if (!mkdtemp(tmp))
        exit(2);
    snprintf(data, sizeof data, "%s/data", tmp);
    store *s = NULL;
    ferr err = {0};
    if (store_open(data, &s, NULL, NULL, &err) != 0) {
        fprintf(stderr, "store_open: %s\n", err.message);
        exit(2);
    }
    return s;
}

static void close_and_remove(store *s)
{
    store_close(s);
    char path[256];
    const char *files[] = {"ferry.db", "ferry.db-wal", "ferry.db-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", data, files[i]);
        unlink(path);
    }
    rmdir(data);
    rmdir(tmp);
}

static int64_t scalar(store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(store_sqlite(s), sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void leases_are_taken_once_while_due_and_taken_over_when_expired(void)
{
    store *s = open_fresh();
    ferr err = {0};
    CHECK_INT(store_job_ensure(s, "sync:c1:items", "sync", "c1", "items", "15m", 1000, &err), 0);
    store_lease l;
    /* Not due yet. */
    CHECK_INT(store_lease_acquire(s, "sync:c1:items", "A", "run_1", 999, 60000, &l, &err), 0);
    CHECK_INT(l.acquired, 0);
    CHECK_STR(l.holder, "");
    /* Due: A takes it; B cannot while it lives. */
    CHECK_INT(store_lease_acquire(s, "sync:c1:items", "A", "run_1", 1000, 60000, &l, &err), 0);
    CHECK_INT(l.acquired, 1);
    CHECK_INT(store_lease_acquire(s, "sync:c1:items", "B", "run_2", 2000, 60000, &l, &err), 0);
    CHECK_INT(l.acquired, 0);
    CHECK_STR(l.holder, "A");
    CHECK_STR(l.holder_run, "run_1");
    /* Renewing works for the holder only. */
    CHECK_INT(store_lease_renew(s, "sync:c1:items", "A", 70000, &err), 0);
    CHECK_INT(store_lease_renew(s, "sync:c1:items", "B", 70000, &err), 1);
    /* Expired: B takes over and learns which run A left behind. */
    CHECK_INT(store_lease_acquire(s, "sync:c1:items", "B", "run_2", 70001, 60000, &l, &err), 0);
    CHECK_INT(l.acquired, 1);
    CHECK_STR(l.stale_run, "run_1");
    /* A's finish changes nothing now; B's moves the job on. */
    store_job_outcome o = {.next_run_at = 500000, .status = "succeeded"};
    CHECK_INT(store_job_finish(s, "sync:c1:items", "A", &o, &err), 1);
    CHECK_INT(store_job_finish(s, "sync:c1:items", "B", &o, &err), 0);
    /* Not due any more: this occurrence ran once. */
    CHECK_INT(store_lease_acquire(s, "sync:c1:items", "A", "run_3", 70002, 60000, &l, &err), 0);
    CHECK_INT(l.acquired, 0);
    store_job j;
    CHECK_INT(store_job_get(s, "sync:c1:items", &j, &err), 0);
    CHECK_INT(j.next_run_at, 500000);
    CHECK_STR(j.last_status, "succeeded");
    ferr_clear(&err);
    close_and_remove(s);
}

static const unsigned char H1[16] = {1}, H2[16] = {2};

static store_sync_page page(const char *owner, const char *sync, const char *cursor, store_record_op *ops, size_t n)
{
    return (store_sync_page){.job_id = "sync:c1:items", .owner = owner, .lease_until = 1LL << 50,
                             .run_id = "run_1", .connection_id = "c1", .sync = sync, .integration = "acme",
                             .category = "projects", .team_id = 1, .user_id = 7, .set_cursor = 1,
                             .cursor = cursor, .ops = ops, .nops = n};
}

static void commits_are_fenced_idempotent_and_keep_chunks_in_step(void)
{
    store *s = open_fresh();
    ferr err = {0};
    store_job_ensure(s, "sync:c1:items", "sync", "c1", "items", "15m", 0, &err);
    store_lease l;
    store_lease_acquire(s, "sync:c1:items", "A", "run_1", 1, 1LL << 50, &l, &err);
    store_sync_run run = {.id = "run_1", .connection_id = "c1", .sync = "items", .trigger = "manual", .owner = "A"};
    store_sync_run_insert(s, &run, &err);

    chunk_span two[2] = {{0, 5}, {6, 5}};
    store_record_op ops[3] = {
        {.kind = "doc", .external_id = "1", .title = "First", .hash = H1, .text = "alpha bravo", .chunks = two,
         .nchunks = 2},
        {.kind = "doc", .external_id = "2", .title = "Second", .hash = H1, .text = "charlie", .chunks = two,
         .nchunks = 1},
        {.kind = "doc", .external_id = "3", .title = "Only a title", .hash = H1},
    };
    store_sync_page p = page("A", "items", "{\"after\":3}", ops, 3);
    store_sync_counts n;
    CHECK_INT(store_sync_commit(s, &p, &n, &err), 0);
    CHECK_INT(n.added, 3);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks"), 4);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'bravo'"), 1);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'title'"), 1);

    /* The same page again (a replay after a crash): nothing changes. */
    CHECK_INT(store_sync_commit(s, &p, &n, &err), 0);
    CHECK_INT(n.added, 0);
    CHECK_INT(n.unchanged, 3);
    CHECK_INT(scalar(s, "SELECT count(*) FROM records"), 3);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks"), 4);

    /* An update replaces the record's chunks; a delete removes them. */
    store_record_op next[2] = {
        {.kind = "doc", .external_id = "1", .title = "First v2", .hash = H2, .text = "delta", .chunks = two,
         .nchunks = 1},
        {.is_delete = 1, .kind = "doc", .external_id = "2"},
    };
    p = page("A", "items", "{\"after\":5}", next, 2);
    CHECK_INT(store_sync_commit(s, &p, &n, &err), 0);
    CHECK_INT(n.updated, 1);
    CHECK_INT(n.deleted, 1);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks"), 2);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'bravo'"), 0);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'delta'"), 1);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'charlie'"), 0);
    char *cursor = NULL;
    int64_t records = 0;
    store_sync_state_get(s, "c1", "items", &cursor, &records, &err);
    CHECK_STR(cursor, "{\"after\":5}");
    CHECK_INT(records, 2);
    free(cursor);
    store_sync_run back;
    store_sync_run_get(s, "run_1", &back, &err);
    CHECK_INT(back.pages, 3);
    CHECK_INT(back.added, 3);
    CHECK_INT(back.updated, 1);
    CHECK_INT(back.deleted, 1);

    /* A record another sync upserts moves its count over. */
    p = page("A", "other", NULL, next, 1);
    CHECK_INT(store_sync_commit(s, &p, &n, &err), 0);
    store_sync_state_get(s, "c1", "items", &cursor, &records, &err);
    CHECK_INT(records, 1);
    free(cursor);
    store_sync_state_get(s, "c1", "other", &cursor, &records, &err);
    CHECK_INT(records, 1);
    free(cursor);

    /* Fencing: once B holds the lease, A's pages are refused whole. */
    store_lease_renew(s, "sync:c1:items", "A", 10, &err);
    store_lease_acquire(s, "sync:c1:items", "B", "run_2", 11, 60000, &l, &err);
    CHECK_INT(l.acquired, 1);
    store_record_op late[1] = {{.kind = "doc", .external_id = "9", .title = "late", .hash = H1}};
    p = page("A", "items", "{\"after\":99}", late, 1);
    CHECK_INT(store_sync_commit(s, &p, &n, &err), 1);
    CHECK_INT(scalar(s, "SELECT count(*) FROM records WHERE external_id = '9'"), 0);
    store_sync_state_get(s, "c1", "items", &cursor, &records, &err);
    CHECK_STR(cursor, "{\"after\":5}");
    free(cursor);

    /* Deleting the connection takes everything of it. */
    CHECK_INT(store_sync_forget_connection(s, "c1"), 0);
    CHECK_INT(scalar(s, "SELECT count(*) FROM records"), 0);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks"), 0);
    CHECK_INT(scalar(s, "SELECT count(*) FROM sched_jobs"), 0);
    CHECK_INT(scalar(s, "SELECT count(*) FROM sched_leases"), 0);
    CHECK_INT(scalar(s, "SELECT count(*) FROM sync_runs"), 0);
    CHECK_INT(scalar(s, "SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'delta'"), 0);
    CHECK_INT(sqlite3_exec(store_sqlite(s), "INSERT INTO document_chunks_fts(document_chunks_fts)"
                                            " VALUES ('integrity-check')", NULL, NULL, NULL), SQLITE_OK);
    ferr_clear(&err);
    close_and_remove(s);
}

TESTS(TEST(leases_are_taken_once_while_due_and_taken_over_when_expired),
      TEST(commits_are_fenced_idempotent_and_keep_chunks_in_step))
