/* test_store — the SQLite store: where the database lives, migrations and
 * their version check, WAL mode, API keys and roles, principals, the call
 * log, and script key/value state. Each test works in its own mkdtemp
 * directory and removes it afterwards. */
#include "store.h"
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

/* A fresh temporary directory; `data` receives "<dir>/data", which does not
 * exist yet (store_open creates it). */
static void make_dirs(char tmp[64], char data[128])
{
    snprintf(tmp, 64, "/tmp/ferry-test-store-XXXXXX");
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(data, 128, "%s/data", tmp);
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
                remove_tree(path);
            else
                unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static store *open_store(const char *data)
{
    store *s = NULL;
    ferr err = {0};
    if (store_open(data, &s, NULL, NULL, &err) != 0)
        fprintf(stderr, "store_open(%s): %s\n", data, err.message);
    ferr_clear(&err);
    return s;
}

static void fake_hash(unsigned char hash[32], unsigned char seed)
{
    for (int i = 0; i < 32; i++)
        hash[i] = (unsigned char)(seed + i);
}

/* Runs one SQL statement on the database file directly; the first column
 * of its first row is copied to `out` when given. */
static int raw_sql(const char *data, const char *sql, char *out, size_t cap)
{
    char path[256];
    snprintf(path, sizeof path, "%s/ferry.db", data);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && out)
            snprintf(out, cap, "%s", sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (rc != SQLITE_OK)
        fprintf(stderr, "raw_sql(%s): %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* ---- opening and migrating ------------------------------------------ */

static void open_creates_the_data_dir_and_ferry_db(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    int from = -1, to = -1;
    store *s = NULL;
    ferr err = {0};
    CHECK_INT(store_open(data, &s, &from, &to, &err), 0);
    CHECK(s != NULL);
    CHECK_INT(from, 0);
    CHECK_INT(to, store_schema_version());
    CHECK(store_schema_version() >= 1);

    struct stat st;
    CHECK_INT(stat(data, &st), 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK_INT(st.st_mode & 0777, 0700);   /* the database holds key hashes */
    char path[256];
    snprintf(path, sizeof path, "%s/ferry.db", data);
    CHECK_INT(stat(path, &st), 0);
    CHECK(S_ISREG(st.st_mode));

    store_close(s);
    ferr_clear(&err);
    remove_tree(tmp);
}

static void open_twice_migrates_only_once(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    unsigned char hash[32];
    fake_hash(hash, 1);
    ferr err = {0};
    CHECK_INT(store_key_create(s, "alice", "acme", NULL, "00aa", hash, NULL, &err), 0);
    store_close(s);

    int from = -1, to = -1;
    s = NULL;
    CHECK_INT(store_open(data, &s, &from, &to, &err), 0);
    CHECK_INT(from, store_schema_version());
    CHECK_INT(to, store_schema_version());
    /* The data survived the reopen. */
    principal who;
    unsigned char got[32];
    CHECK_INT(store_key_lookup(s, "00aa", got, &who), 0);
    CHECK(memcmp(got, hash, 32) == 0);
    store_close(s);

    char version[32] = "";
    raw_sql(data, "PRAGMA user_version", version, sizeof version);
    CHECK_INT(atoi(version), store_schema_version());
    ferr_clear(&err);
    remove_tree(tmp);
}

static void database_is_in_wal_mode(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    CHECK(s != NULL);
    char mode[32] = "";
    /* journal_mode = WAL is persistent, so a second connection sees it. */
    CHECK_INT(raw_sql(data, "PRAGMA journal_mode", mode, sizeof mode), 0);
    CHECK_STR(mode, "wal");
    store_close(s);
    remove_tree(tmp);
}

static void open_refuses_a_newer_schema(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    store_close(s);
    CHECK_INT(raw_sql(data, "PRAGMA user_version = 999", NULL, 0), 0);

    int from = -1, to = -1;
    s = (store *)&from;   /* must be reset to NULL */
    ferr err = {0};
    CHECK_INT(store_open(data, &s, &from, &to, &err), -1);
    CHECK(s == NULL);
    CHECK_INT(from, 999);
    CHECK_INT(to, -1);
    CHECK_INT(err.code, FERR_INTERNAL);
    CHECK_CONTAINS(err.message, "999");
    CHECK_CONTAINS(err.message, "newer");
    ferr_clear(&err);

    /* Nothing was changed: the version is still the newer one. */
    char version[32] = "";
    raw_sql(data, "PRAGMA user_version", version, sizeof version);
    CHECK_STR(version, "999");
    remove_tree(tmp);
}

static void open_fails_when_the_data_dir_is_a_file(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    FILE *f = fopen(data, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    store *s = NULL;
    ferr err = {0};
    CHECK_INT(store_open(data, &s, NULL, NULL, &err), -1);
    CHECK(s == NULL);
    CHECK_INT(err.code, FERR_INTERNAL);
    CHECK(err.message[0] != 0);
    ferr_clear(&err);
    remove_tree(tmp);
}

static void close_accepts_null(void) { store_close(NULL); }

/* ---- keys and principals -------------------------------------------- */

static void key_create_then_lookup_returns_hash_and_principal(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    unsigned char hash[32], got[32];
    fake_hash(hash, 7);
    principal created, who;
    ferr err = {0};
    CHECK_INT(store_key_create(s, "alice", "acme", NULL, "0123456789abcdef", hash, &created, &err), 0);
    CHECK_STR(created.user, "alice");
    CHECK_STR(created.team, "acme");
    CHECK_STR(created.key_id, "0123456789abcdef");
    CHECK_INT(created.is_admin, 0);
    CHECK(created.user_id > 0);
    CHECK(created.team_id > 0);

    memset(got, 0, sizeof got);
    CHECK_INT(store_key_lookup(s, "0123456789abcdef", got, &who), 0);
    CHECK(memcmp(got, hash, 32) == 0);
    CHECK_STR(who.user, "alice");
    CHECK_STR(who.team, "acme");
    CHECK_STR(who.key_id, "0123456789abcdef");
    CHECK_INT(who.user_id, created.user_id);
    CHECK_INT(who.team_id, created.team_id);
    CHECK_INT(who.is_admin, 0);

    CHECK_INT(store_key_lookup(s, "ffffffffffffffff", got, &who), 1);
    store_close(s);
    ferr_clear(&err);
    remove_tree(tmp);
}

static void revoked_key_is_no_longer_found(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    unsigned char hash[32], got[32];
    fake_hash(hash, 3);
    principal who;
    ferr err = {0};
    CHECK_INT(store_key_create(s, "bob", "acme", NULL, "aaaa", hash, NULL, &err), 0);
    CHECK_INT(store_key_create(s, "bob", "acme", NULL, "bbbb", hash, NULL, &err), 0);
    CHECK_INT(store_key_revoke(s, "aaaa", &err), 0);
    CHECK_INT(store_key_lookup(s, "aaaa", got, &who), 1);
    /* Other keys of the same user still work. */
    CHECK_INT(store_key_lookup(s, "bbbb", got, &who), 0);

    /* Revoking again, or an unknown id, is not_found. */
    ferr_clear(&err);
    CHECK_INT(store_key_revoke(s, "aaaa", &err), -1);
    CHECK_INT(err.code, FERR_NOT_FOUND);
    CHECK_CONTAINS(err.message, "aaaa");
    ferr_clear(&err);
    CHECK_INT(store_key_revoke(s, "cccc", &err), -1);
    CHECK_INT(err.code, FERR_NOT_FOUND);
    store_close(s);
    ferr_clear(&err);
    remove_tree(tmp);
}

static void role_null_keeps_the_existing_role(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    unsigned char hash[32], got[32];
    fake_hash(hash, 9);
    principal p, who;
    ferr err = {0};

    /* New memberships are members. */
    CHECK_INT(store_key_create(s, "carol", "acme", NULL, "01", hash, &p, &err), 0);
    CHECK_INT(p.is_admin, 0);
    /* "admin" promotes... */
    CHECK_INT(store_key_create(s, "carol", "acme", "admin", "02", hash, &p, &err), 0);
    CHECK_INT(p.is_admin, 1);
    /* ...NULL keeps it... */
    CHECK_INT(store_key_create(s, "carol", "acme", NULL, "03", hash, &p, &err), 0);
    CHECK_INT(p.is_admin, 1);
    /* ...and the role belongs to the membership, so older keys see it too. */
    CHECK_INT(store_key_lookup(s, "01", got, &who), 0);
    CHECK_INT(who.is_admin, 1);
    /* "member" demotes. */
    CHECK_INT(store_key_create(s, "carol", "acme", "member", "04", hash, &p, &err), 0);
    CHECK_INT(p.is_admin, 0);
    CHECK_INT(store_key_lookup(s, "02", got, &who), 0);
    CHECK_INT(who.is_admin, 0);

    /* A role in another team is separate; an admin created directly is admin. */
    CHECK_INT(store_key_create(s, "carol", "other", "admin", "05", hash, &p, &err), 0);
    CHECK_INT(p.is_admin, 1);
    CHECK_INT(store_key_lookup(s, "04", got, &who), 0);
    CHECK_INT(who.is_admin, 0);
    store_close(s);
    ferr_clear(&err);
    remove_tree(tmp);
}

static void failed_key_create_rolls_back_and_leaves_no_transaction(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    unsigned char hash[32], got[32];
    fake_hash(hash, 5);
    principal who;
    ferr err = {0};

    /* An unknown role breaks the membership's CHECK constraint. */
    CHECK_INT(store_key_create(s, "dave", "newteam", "owner", "d1", hash, NULL, &err), -1);
    CHECK_INT(err.code, FERR_INTERNAL);
    ferr_clear(&err);
    CHECK_INT(store_key_lookup(s, "d1", got, &who), 1);
    CHECK_INT(store_principal_find(s, "dave", "newteam", &who), 1);

    /* A duplicate key id fails too, and creates no user. */
    CHECK_INT(store_key_create(s, "erin", "acme", NULL, "e1", hash, NULL, &err), 0);
    CHECK_INT(store_key_create(s, "frank", "acme", NULL, "e1", hash, NULL, &err), -1);
    ferr_clear(&err);
    CHECK_INT(store_principal_find(s, "frank", "acme", &who), 1);

    /* The store is still usable: no transaction was left open. */
    CHECK_INT(store_key_create(s, "dave", "newteam", NULL, "d2", hash, NULL, &err), 0);
    CHECK_INT(store_key_lookup(s, "d2", got, &who), 0);
    store_close(s);
    ferr_clear(&err);
    remove_tree(tmp);
}

static void principal_find_reports_memberships(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    unsigned char hash[32];
    fake_hash(hash, 11);
    principal created, who;
    ferr err = {0};
    CHECK_INT(store_key_create(s, "gina", "acme", "admin", "9a", hash, &created, &err), 0);

    memset(&who, 0x55, sizeof who);
    CHECK_INT(store_principal_find(s, "gina", "acme", &who), 0);
    CHECK_STR(who.user, "gina");
    CHECK_STR(who.team, "acme");
    CHECK_INT(who.user_id, created.user_id);
    CHECK_INT(who.team_id, created.team_id);
    CHECK_INT(who.is_admin, 1);
    CHECK_STR(who.key_id, "");   /* not acting through a key */

    CHECK_INT(store_principal_find(s, "gina", "other", &who), 1);
    CHECK_INT(store_principal_find(s, "nobody", "acme", &who), 1);
    store_close(s);
    ferr_clear(&err);
    remove_tree(tmp);
}

/* ---- call log ------------------------------------------------------- */

static void call_log_appends_batches_and_counts_rows(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    ferr err = {0};
    CHECK_INT(store_call_log_count(s), 0);

    enum { N = 50 };
    call_record rows[N];
    char ids[N][17];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "req%d", i);
        rows[i] = (call_record){
            .ts_ms = 1700000000000LL + i,
            .request_id = ids[i],
            .user_id = i % 2 ? 1 : 0,
            .team_id = i % 2 ? 1 : 0,
            .tool = "sample__echo",
            .connection_id = i % 3 ? "conn" : NULL,
            .outcome = i % 5 ? "ok" : "upstream_error",
            .http_status = i % 5 ? 200 : 502,
            .duration_ms = 1.5 * i,
            .arguments = i % 4 ? "{\"text\":\"hi\"}" : NULL,
            .error_message = i % 5 ? NULL : "refused",
        };
    }
    CHECK_INT(store_call_log_append(s, rows, N, &err), 0);
    CHECK_INT(store_call_log_count(s), N);
    CHECK_INT(store_call_log_append(s, rows, 0, &err), 0);
    CHECK_INT(store_call_log_count(s), N);
    CHECK_INT(store_call_log_append(s, rows, 3, &err), 0);
    CHECK_INT(store_call_log_count(s), N + 3);
    store_close(s);

    char value[64] = "";
    raw_sql(data, "SELECT count(*) FROM call_log WHERE outcome = 'upstream_error'", value, sizeof value);
    CHECK_INT(atoi(value), N / 5 + 1);
    raw_sql(data, "SELECT count(*) FROM call_log WHERE user_id IS NULL", value, sizeof value);
    CHECK_INT(atoi(value), N / 2 + 2);   /* 0 means unknown: stored as NULL */
    raw_sql(data, "SELECT error_message FROM call_log WHERE request_id = 'req5'", value, sizeof value);
    CHECK_STR(value, "refused");
    ferr_clear(&err);
    remove_tree(tmp);
}

/* ---- script state --------------------------------------------------- */

static void kv_get_set_and_delete(void)
{
    char tmp[64], data[128];
    make_dirs(tmp, data);
    store *s = open_store(data);
    ferr err = {0};
    char *v = (char *)"sentinel";

    CHECK_INT(store_kv_get(s, "sample", "c1", "cursor", &v, &err), 0);
    CHECK(v == NULL);

    CHECK_INT(store_kv_set(s, "sample", "c1", "cursor", "{\"page\":1}", &err), 0);
    CHECK_INT(store_kv_get(s, "sample", "c1", "cursor", &v, &err), 0);
    CHECK_STR(v, "{\"page\":1}");
    free(v);

    /* Overwrite. */
    CHECK_INT(store_kv_set(s, "sample", "c1", "cursor", "2", &err), 0);
    CHECK_INT(store_kv_get(s, "sample", "c1", "cursor", &v, &err), 0);
    CHECK_STR(v, "2");
    free(v);

    /* Keys are scoped by provider and connection. */
    CHECK_INT(store_kv_get(s, "other", "c1", "cursor", &v, &err), 0);
    CHECK(v == NULL);
    CHECK_INT(store_kv_get(s, "sample", "c2", "cursor", &v, &err), 0);
    CHECK(v == NULL);

    /* A NULL connection is the empty one. */
    CHECK_INT(store_kv_set(s, "sample", NULL, "k", "\"x\"", &err), 0);
    CHECK_INT(store_kv_get(s, "sample", "", "k", &v, &err), 0);
    CHECK_STR(v, "\"x\"");
    free(v);

    /* NULL deletes; deleting again is fine. */
    CHECK_INT(store_kv_set(s, "sample", "c1", "cursor", NULL, &err), 0);
    CHECK_INT(store_kv_get(s, "sample", "c1", "cursor", &v, &err), 0);
    CHECK(v == NULL);
    CHECK_INT(store_kv_set(s, "sample", "c1", "cursor", NULL, &err), 0);

    /* Values persist across a reopen. */
    store_close(s);
    s = open_store(data);
    CHECK_INT(store_kv_get(s, "sample", NULL, "k", &v, &err), 0);
    CHECK_STR(v, "\"x\"");
    free(v);
    store_close(s);
    ferr_clear(&err);
    remove_tree(tmp);
}

TESTS(TEST(open_creates_the_data_dir_and_ferry_db), TEST(open_twice_migrates_only_once),
      TEST(database_is_in_wal_mode), TEST(open_refuses_a_newer_schema), TEST(open_fails_when_the_data_dir_is_a_file),
      TEST(close_accepts_null), TEST(key_create_then_lookup_returns_hash_and_principal),
      TEST(revoked_key_is_no_longer_found), TEST(role_null_keeps_the_existing_role),
      TEST(failed_key_create_rolls_back_and_leaves_no_transaction), TEST(principal_find_reports_memberships),
      TEST(call_log_appends_batches_and_counts_rows), TEST(kv_get_set_and_delete))
