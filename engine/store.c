#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <sqlite3.h>

/* Migration N takes the schema from version N to N+1. Never edit one that
 * has shipped; append a new one. */
static const char *const migrations[] = {
    /* 0 → 1: principals and the call log. */
    "CREATE TABLE teams ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE memberships ("
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  role TEXT NOT NULL CHECK (role IN ('member','admin')),"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, team_id));"
    "CREATE TABLE api_keys ("
    "  id INTEGER PRIMARY KEY,"
    "  key_id TEXT NOT NULL UNIQUE,"
    "  secret_sha256 BLOB NOT NULL,"
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  created_at INTEGER NOT NULL,"
    "  revoked_at INTEGER);"
    "CREATE TABLE call_log ("
    "  id INTEGER PRIMARY KEY,"
    "  ts INTEGER NOT NULL,"
    "  request_id TEXT,"
    "  user_id INTEGER,"
    "  team_id INTEGER,"
    "  tool TEXT NOT NULL,"
    "  connection_id TEXT,"
    "  outcome TEXT NOT NULL,"
    "  http_status INTEGER,"
    "  duration_ms REAL,"
    "  arguments TEXT,"
    "  error_message TEXT);"
    "CREATE INDEX call_log_ts ON call_log(ts);"
    "CREATE TABLE script_kv ("
    "  provider TEXT NOT NULL,"
    "  connection TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY (provider, connection, key));",
};

#define MIGRATION_COUNT ((int)(sizeof migrations / sizeof migrations[0]))

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_TEAM_UPSERT,
    ST_TEAM_ID,
    ST_USER_UPSERT,
    ST_USER_ID,
    ST_MEMBER_INSERT,
    ST_MEMBER_SET_ROLE,
    ST_MEMBER_ROLE,
    ST_KEY_INSERT,
    ST_KEY_REVOKE,
    ST_KEY_LOOKUP,
    ST_CALL_INSERT,
    ST_CALL_COUNT,
    ST_KV_GET,
    ST_KV_SET,
    ST_KV_DELETE,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_TEAM_UPSERT] = "INSERT INTO teams(name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
    [ST_TEAM_ID] = "SELECT id FROM teams WHERE name = ?1",
    [ST_USER_UPSERT] = "INSERT INTO users(name, created_at) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
    [ST_USER_ID] = "SELECT id FROM users WHERE name = ?1",
    [ST_MEMBER_INSERT] = "INSERT INTO memberships(user_id, team_id, role, created_at) VALUES (?1, ?2, ?3, ?4)"
                         " ON CONFLICT(user_id, team_id) DO NOTHING",
    [ST_MEMBER_SET_ROLE] = "UPDATE memberships SET role = ?3 WHERE user_id = ?1 AND team_id = ?2",
    [ST_MEMBER_ROLE] = "SELECT m.role, u.id, t.id FROM memberships m JOIN users u ON u.id = m.user_id"
                       " JOIN teams t ON t.id = m.team_id WHERE u.name = ?1 AND t.name = ?2",
    [ST_KEY_INSERT] = "INSERT INTO api_keys(key_id, secret_sha256, user_id, team_id, created_at)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_KEY_REVOKE] = "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
    [ST_KEY_LOOKUP] = "SELECT k.secret_sha256, u.id, u.name, t.id, t.name, m.role FROM api_keys k"
                      " JOIN users u ON u.id = k.user_id JOIN teams t ON t.id = k.team_id"
                      " JOIN memberships m ON m.user_id = k.user_id AND m.team_id = k.team_id"
                      " WHERE k.key_id = ?1 AND k.revoked_at IS NULL",
    [ST_CALL_INSERT] = "INSERT INTO call_log(ts, request_id, user_id, team_id, tool, connection_id, outcome,"
                       " http_status, duration_ms, arguments, error_message)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_CALL_COUNT] = "SELECT count(*) FROM call_log",
    [ST_KV_GET] = "SELECT value FROM script_kv WHERE provider = ?1 AND connection = ?2 AND key = ?3",
    [ST_KV_SET] = "INSERT INTO script_kv(provider, connection, key, value, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)"
                  " ON CONFLICT(provider, connection, key) DO UPDATE SET value = excluded.value,"
                  " updated_at = excluded.updated_at",
    [ST_KV_DELETE] = "DELETE FROM script_kv WHERE provider = ?1 AND connection = ?2 AND key = ?3",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int db_fail(store *s, ferr *err, const char *what)
{
    return ferr_set(err, FERR_INTERNAL, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

/* A statement ready for new bindings. */
static sqlite3_stmt *stmt(store *s, enum stmt_id id)
{
    sqlite3_stmt *st = s->st[id];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

static int exec_simple(store *s, enum stmt_id id)
{
    sqlite3_stmt *st = stmt(s, id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int migrate(store *s, int *from, int *to, ferr *err)
{
    sqlite3_stmt *q = NULL;
    int version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK)
        return db_fail(s, err, "reading schema version");
    if (sqlite3_step(q) == SQLITE_ROW)
        version = sqlite3_column_int(q, 0);
    sqlite3_finalize(q);
    if (from)
        *from = version;
    if (version > MIGRATION_COUNT)
        return ferr_set(err, FERR_INTERNAL,
                        "store: database schema version %d is newer than this ferry (%d)",
                        version, MIGRATION_COUNT);
    for (; version < MIGRATION_COUNT; version++) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", version + 1);
        char *msg = NULL;
        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, migrations[version], NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, pragma, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            ferr_set(err, FERR_INTERNAL, "store: migration %d failed: %s", version + 1,
                     msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    if (to)
        *to = version;
    return 0;
}

int store_schema_version(void) { return MIGRATION_COUNT; }

int store_open(const char *data_dir, store **out, int *from, int *to, ferr *err)
{
    *out = NULL;
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST)
        return ferr_set(err, FERR_INTERNAL, "cannot create data directory %s: %s", data_dir,
                        strerror(errno));
    char path[4096];
    if (snprintf(path, sizeof path, "%s/ferry.db", data_dir) >= (int)sizeof path)
        return ferr_set(err, FERR_INTERNAL, "data directory path too long");

    store *s = calloc(1, sizeof *s);
    if (!s)
        return ferr_set(err, FERR_INTERNAL, "out of memory");
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        ferr_set(err, FERR_INTERNAL, "cannot open %s: %s", path,
                 s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    /* WAL lets readers (other ferry commands, backups) run beside the
     * server; NORMAL sync is durable across process crashes, which is the
     * failure we design for. The busy timeout covers a CLI command writing
     * while serve holds the lock. */
    char *msg = NULL;
    if (sqlite3_exec(s->db,
                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                     " PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                     NULL, NULL, &msg) != SQLITE_OK) {
        ferr_set(err, FERR_INTERNAL, "store: configuring %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        goto fail;
    }
    if (migrate(s, from, to, err) < 0)
        goto fail;
    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) !=
            SQLITE_OK) {
            db_fail(s, err, stmt_sql[i]);
            goto fail;
        }
    *out = s;
    return 0;
fail:
    store_close(s);
    return -1;
}

void store_close(store *s)
{
    if (!s)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    free(s);
}

static int64_t id_by_name(store *s, enum stmt_id id, const char *name)
{
    sqlite3_stmt *st = stmt(s, id);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return v;
}

static int upsert_name(store *s, enum stmt_id id, const char *name, int64_t ts)
{
    sqlite3_stmt *st = stmt(s, id);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, ts);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static void copy_name(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

int store_principal_find(store *s, const char *user, const char *team, principal *out)
{
    sqlite3_stmt *st = stmt(s, ST_MEMBER_ROLE);
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, team, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->is_admin = strcmp((const char *)sqlite3_column_text(st, 0), "admin") == 0;
        out->user_id = sqlite3_column_int64(st, 1);
        out->team_id = sqlite3_column_int64(st, 2);
        snprintf(out->user, sizeof out->user, "%s", user);
        snprintf(out->team, sizeof out->team, "%s", team);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

int store_key_create(store *s, const char *user, const char *team, const char *role,
                     const char *key_id, const unsigned char hash[32], principal *out, ferr *err)
{
    int64_t ts = now_ms();
    if (exec_simple(s, ST_BEGIN) < 0)
        return db_fail(s, err, "begin");
    if (upsert_name(s, ST_TEAM_UPSERT, team, ts) < 0 || upsert_name(s, ST_USER_UPSERT, user, ts) < 0)
        goto fail;
    int64_t team_id = id_by_name(s, ST_TEAM_ID, team);
    int64_t user_id = id_by_name(s, ST_USER_ID, user);
    if (!team_id || !user_id)
        goto fail;

    sqlite3_stmt *st = stmt(s, ST_MEMBER_INSERT);
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, team_id);
    sqlite3_bind_text(st, 3, role ? role : "member", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, ts);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    if (role) {
        st = stmt(s, ST_MEMBER_SET_ROLE);
        sqlite3_bind_int64(st, 1, user_id);
        sqlite3_bind_int64(st, 2, team_id);
        sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto fail;
    }
    st = stmt(s, ST_KEY_INSERT);
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, hash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, user_id);
    sqlite3_bind_int64(st, 4, team_id);
    sqlite3_bind_int64(st, 5, ts);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    if (exec_simple(s, ST_COMMIT) < 0)
        goto fail;
    if (out && store_principal_find(s, user, team, out) != 0)
        return db_fail(s, err, "reading the new membership");
    if (out)
        snprintf(out->key_id, sizeof out->key_id, "%s", key_id);
    return 0;
fail:
    db_fail(s, err, "creating key");
    exec_simple(s, ST_ROLLBACK);
    return -1;
}

int store_key_revoke(store *s, const char *key_id, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_KEY_REVOKE);
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(s, err, "revoking key");
    if (sqlite3_changes(s->db) == 0)
        return ferr_set(err, FERR_NOT_FOUND, "no active API key with id %s", key_id);
    return 0;
}

int store_key_lookup(store *s, const char *key_id, unsigned char hash[32], principal *out)
{
    sqlite3_stmt *st = stmt(s, ST_KEY_LOOKUP);
    sqlite3_bind_text(st, 1, key_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int result = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != 32) {
            result = 1;
        } else {
            memcpy(hash, sqlite3_column_blob(st, 0), 32);
            memset(out, 0, sizeof *out);
            out->user_id = sqlite3_column_int64(st, 1);
            copy_name(out->user, sizeof out->user, sqlite3_column_text(st, 2));
            out->team_id = sqlite3_column_int64(st, 3);
            copy_name(out->team, sizeof out->team, sqlite3_column_text(st, 4));
            out->is_admin = strcmp((const char *)sqlite3_column_text(st, 5), "admin") == 0;
            snprintf(out->key_id, sizeof out->key_id, "%s", key_id);
        }
    }
    sqlite3_reset(st);
    return result;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int store_call_log_append(store *s, const call_record *rows, size_t n, ferr *err)
{
    if (n == 0)
        return 0;
    if (exec_simple(s, ST_BEGIN) < 0)
        return db_fail(s, err, "begin");
    for (size_t i = 0; i < n; i++) {
        const call_record *r = &rows[i];
        sqlite3_stmt *st = stmt(s, ST_CALL_INSERT);
        sqlite3_bind_int64(st, 1, r->ts_ms);
        bind_text_or_null(st, 2, r->request_id);
        if (r->user_id)
            sqlite3_bind_int64(st, 3, r->user_id);
        if (r->team_id)
            sqlite3_bind_int64(st, 4, r->team_id);
        sqlite3_bind_text(st, 5, r->tool, -1, SQLITE_STATIC);
        bind_text_or_null(st, 6, r->connection_id);
        sqlite3_bind_text(st, 7, r->outcome, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 8, r->http_status);
        sqlite3_bind_double(st, 9, r->duration_ms);
        bind_text_or_null(st, 10, r->arguments);
        bind_text_or_null(st, 11, r->error_message);
        if (sqlite3_step(st) != SQLITE_DONE) {
            db_fail(s, err, "writing the call log");
            sqlite3_reset(st);
            exec_simple(s, ST_ROLLBACK);
            return -1;
        }
    }
    sqlite3_reset(s->st[ST_CALL_INSERT]);
    if (exec_simple(s, ST_COMMIT) < 0) {
        db_fail(s, err, "commit");
        exec_simple(s, ST_ROLLBACK);
        return -1;
    }
    return 0;
}

int64_t store_call_log_count(store *s)
{
    sqlite3_stmt *st = stmt(s, ST_CALL_COUNT);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    return n;
}

int store_kv_get(store *s, const char *provider, const char *connection, const char *key,
                 char **value_out, ferr *err)
{
    *value_out = NULL;
    sqlite3_stmt *st = stmt(s, ST_KV_GET);
    sqlite3_bind_text(st, 1, provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, connection ? connection : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        *value_out = strdup(v ? v : "null");
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(s, err, "reading script state");
    return 0;
}

int store_kv_set(store *s, const char *provider, const char *connection, const char *key,
                 const char *value, ferr *err)
{
    sqlite3_stmt *st = stmt(s, value ? ST_KV_SET : ST_KV_DELETE);
    sqlite3_bind_text(st, 1, provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, connection ? connection : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
    if (value) {
        sqlite3_bind_text(st, 4, value, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, now_ms());
    }
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "writing script state");
}
