/*
 * ingest_baseline: the baseline of bench/ingest. It writes the same N
 * records as the ingest_bench provider's Lua sync (the same generator:
 * splitmix64 over a pool of 256 sentences) into a database ferry has
 * migrated (the same tables, indexes and FTS5 table), doing what ferry's
 * commit does per record, straight from C with prepared statements in
 * batches: look the record up by its unique key, hash its content, insert
 * it, split its text with ferry's chunker and insert each chunk and its
 * FTS5 row; per batch, the cursor row, one transaction.
 *
 *   ingest_baseline DB COUNT SEED CHUNK_SIZE OVERLAP BATCH
 *
 * Prints one line of JSON: {"records", "chunks", "seconds", "records_per_s"}.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "chunker.h"

static const char *const VOCAB[64] = {
    "invoice", "payment", "customer", "project", "meeting", "budget", "roadmap", "launch",
    "review", "quarter", "contract", "design", "report", "revenue", "forecast", "hiring",
    "vendor", "order", "shipment", "delivery", "support", "ticket", "release", "sprint",
    "campaign", "email", "lead", "deal", "pipeline", "account", "renewal", "pricing",
    "discount", "approval", "policy", "audit", "expense", "receipt", "payroll", "tax",
    "ledger", "balance", "cash", "margin", "growth", "churn", "retention", "onboarding",
    "training", "workshop", "agenda", "minutes", "decision", "action", "owner", "deadline",
    "risk", "issue", "blocker", "update", "status", "milestone", "goal", "metric",
};
#define POOL_SIZE 256
#define GOLDEN 0x9E3779B97F4A7C15ULL

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static char *pool[POOL_SIZE];
static size_t pool_len[POOL_SIZE];

static void build_pool(uint64_t seed)
{
    uint64_t state = seed;
    for (int s = 0; s < POOL_SIZE; s++) {
        state += GOLDEN;
        int nwords = 6 + (int)((mix(state) >> 33) % 11);
        char buf[512];
        size_t n = 0;
        for (int w = 0; w < nwords; w++) {
            state += GOLDEN;
            const char *word = VOCAB[(mix(state) >> 33) % 64];
            size_t wl = strlen(word);
            if (w)
                buf[n++] = ' ';
            memcpy(buf + n, word, wl);
            if (w == 0)
                buf[n] = (char)toupper((unsigned char)buf[n]);
            n += wl;
        }
        buf[n++] = '.';
        buf[n] = 0;
        pool[s] = strdup(buf);
        pool_len[s] = n;
    }
}

/* Record k, as the Lua sync makes it. */
static void make_record(uint64_t seed, int64_t k, char *title, size_t title_cap, char **text, size_t *text_len,
                        size_t *cap)
{
    uint64_t state = seed * 1000003ULL + (uint64_t)k;
    state += GOLDEN;
    uint64_t target = 200 + (mix(state) >> 33) % 2000;
    state += GOLDEN;
    snprintf(title, title_cap, "Record %lld: %s", (long long)k, pool[(mix(state) >> 33) % POOL_SIZE]);
    size_t len = 0, n = 0;
    while (len < target) {
        state += GOLDEN;
        size_t i = (mix(state) >> 33) % POOL_SIZE;
        if (n + pool_len[i] + 2 > *cap) {
            *cap = (*cap + pool_len[i]) * 2;
            *text = realloc(*text, *cap);
        }
        if (n)
            (*text)[n++] = ' ';
        memcpy(*text + n, pool[i], pool_len[i]);
        n += pool_len[i];
        len += pool_len[i] + 1;
    }
    (*text)[n] = 0;
    *text_len = n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "ingest_baseline: %s: %s\n", sql, sqlite3_errmsg(db));
        exit(1);
    }
    return st;
}

static void step(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        fprintf(stderr, "ingest_baseline: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: ingest_baseline DB COUNT SEED CHUNK_SIZE OVERLAP BATCH\n");
        return 2;
    }
    const char *path = argv[1];
    int64_t count = atoll(argv[2]);
    uint64_t seed = (uint64_t)atoll(argv[3]);
    size_t chunk_size = (size_t)atol(argv[4]), overlap = (size_t)atol(argv[5]);
    int64_t batch = atoll(argv[6]);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return 1;
    /* The same settings ferry's store uses. */
    sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
                     " PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;", NULL, NULL, NULL);
    sqlite3_stmt *begin = prep(db, "BEGIN IMMEDIATE"), *commit = prep(db, "COMMIT");
    sqlite3_stmt *find = prep(db, "SELECT id, content_hash FROM records WHERE connection_id = ?1 AND kind = ?2"
                                  " AND external_id = ?3");
    sqlite3_stmt *ins = prep(db, "INSERT INTO records(connection_id, kind, external_id, sync, integration,"
                                 " doc_category, team_id, user_id, title, url, updated_at, updated_ms, data,"
                                 " content_hash, created_at, modified_at) VALUES (?1, ?2, ?3, 'records',"
                                 " 'ingest_bench', 'projects', 1, 1, ?4, NULL, ?5, ?6, ?7, ?8, ?9, ?9)");
    sqlite3_stmt *chunk = prep(db, "INSERT INTO document_chunks(record_id, seq, doc_category, integration,"
                                   " connection_id, team_id, user_id, url, ts, title, body)"
                                   " VALUES (?1, ?2, 'projects', 'ingest_bench', ?3, 1, 1, NULL, ?4, ?5, ?6)");
    sqlite3_stmt *fts = prep(db, "INSERT INTO document_chunks_fts(rowid, title, body) VALUES (?1, ?2, ?3)");
    sqlite3_stmt *state = prep(db, "INSERT INTO sync_state(connection_id, sync, cursor, records, updated_at)"
                                   " VALUES ('baseline', 'records', ?1, ?2, ?3) ON CONFLICT(connection_id, sync)"
                                   " DO UPDATE SET cursor = excluded.cursor, records = records + excluded.records,"
                                   " updated_at = excluded.updated_at");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_MD *sha = EVP_MD_fetch(NULL, "SHA256", NULL);

    build_pool(seed);
    char title[600], id[32], data[48];
    char *text = NULL;
    size_t text_len = 0, text_cap = 0, span_cap = 0;
    chunk_span *spans = NULL;
    int64_t chunks = 0;
    double t0 = now_s();
    for (int64_t k = 1; k <= count;) {
        int64_t last = k + batch - 1 < count ? k + batch - 1 : count;
        step(db, begin);
        sqlite3_reset(begin);
        int64_t added = 0;
        for (int64_t i = k; i <= last; i++) {
            make_record(seed, i, title, sizeof title, &text, &text_len, &text_cap);
            snprintf(id, sizeof id, "d%lld", (long long)i);
            snprintf(data, sizeof data, "{\"n\":%lld}", (long long)i);
            unsigned char digest[EVP_MAX_MD_SIZE];
            unsigned dlen;
            EVP_DigestInit_ex(md, sha, NULL);
            EVP_DigestUpdate(md, title, strlen(title));
            EVP_DigestUpdate(md, text, text_len);
            EVP_DigestUpdate(md, data, strlen(data));
            EVP_DigestFinal_ex(md, digest, &dlen);

            sqlite3_bind_text(find, 1, "baseline", -1, SQLITE_STATIC);
            sqlite3_bind_text(find, 2, "doc", -1, SQLITE_STATIC);
            sqlite3_bind_text(find, 3, id, -1, SQLITE_STATIC);
            int exists = sqlite3_step(find) == SQLITE_ROW;
            sqlite3_reset(find);
            if (exists)
                continue;   /* a fresh database: never, as on ferry's side */
            sqlite3_bind_text(ins, 1, "baseline", -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 2, "doc", -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 3, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 4, title, -1, SQLITE_STATIC);
            sqlite3_bind_text(ins, 5, "2024-05-01T00:00:00Z", -1, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 6, 1714521600000LL);
            sqlite3_bind_text(ins, 7, data, -1, SQLITE_STATIC);
            sqlite3_bind_blob(ins, 8, digest, 16, SQLITE_STATIC);
            sqlite3_bind_int64(ins, 9, (int64_t)(now_s() * 1000));
            step(db, ins);
            sqlite3_reset(ins);
            int64_t rid = sqlite3_last_insert_rowid(db);
            added++;
            size_t n = chunker_split(text, text_len, chunk_size, overlap, &spans, &span_cap);
            for (size_t c = 0; c < n; c++) {
                sqlite3_bind_int64(chunk, 1, rid);
                sqlite3_bind_int(chunk, 2, (int)c);
                sqlite3_bind_text(chunk, 3, "baseline", -1, SQLITE_STATIC);
                sqlite3_bind_int64(chunk, 4, 1714521600000LL);
                sqlite3_bind_text(chunk, 5, title, -1, SQLITE_STATIC);
                sqlite3_bind_text(chunk, 6, text + spans[c].off, (int)spans[c].len, SQLITE_STATIC);
                step(db, chunk);
                sqlite3_reset(chunk);
                int64_t cid = sqlite3_last_insert_rowid(db);
                sqlite3_bind_int64(fts, 1, cid);
                sqlite3_bind_text(fts, 2, title, -1, SQLITE_STATIC);
                sqlite3_bind_text(fts, 3, text + spans[c].off, (int)spans[c].len, SQLITE_STATIC);
                step(db, fts);
                sqlite3_reset(fts);
                chunks++;
            }
        }
        char cursor[48];
        snprintf(cursor, sizeof cursor, "{\"next\":%lld}", (long long)(last + 1));
        sqlite3_bind_text(state, 1, cursor, -1, SQLITE_STATIC);
        sqlite3_bind_int64(state, 2, added);
        sqlite3_bind_int64(state, 3, (int64_t)(now_s() * 1000));
        step(db, state);
        sqlite3_reset(state);
        step(db, commit);
        sqlite3_reset(commit);
        k = last + 1;
    }
    double secs = now_s() - t0;
    printf("{\"records\":%lld,\"chunks\":%lld,\"seconds\":%.3f,\"records_per_s\":%.0f}\n", (long long)count,
           (long long)chunks, secs, (double)count / secs);
    sqlite3_stmt *sts[] = {begin, commit, find, ins, chunk, fts, state};
    for (size_t i = 0; i < sizeof sts / sizeof sts[0]; i++)
        sqlite3_finalize(sts[i]);
    sqlite3_close(db);
    EVP_MD_CTX_free(md);
    EVP_MD_free(sha);
    free(text);
    free(spans);
    for (int s = 0; s < POOL_SIZE; s++)
        free(pool[s]);
    return 0;
}
