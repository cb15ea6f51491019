/* store — everything ferry keeps on disk, in one SQLite database
 * (<data dir>/ferry.db) in WAL mode.
 *
 * SQL lives only here: other modules call store_* functions, so that moving
 * to a shared PostgreSQL later touches this module alone. Statements are
 * prepared once at open. Migrations are versioned by PRAGMA user_version and
 * applied at open, each in its own transaction. The store is used from the
 * event loop's thread only. */
#ifndef FERRY_STORE_H
#define FERRY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "ferr.h"

typedef struct store store;

/* Creates `data_dir` (mode 0700) if needed, opens ferry.db and migrates it.
 * `from`/`to` (may be NULL) receive the schema versions before and after. */
int store_open(const char *data_dir, store **out, int *from, int *to, ferr *err);
void store_close(store *s);
int store_schema_version(void);

/* Who a request acts as: a user in a team, with a role there. */
typedef struct principal {
    int64_t user_id;
    int64_t team_id;
    char user[65];
    char team[65];
    int is_admin;
    char key_id[33];      /* the API key used; "" for local CLI use */
} principal;

/* Creates the user, team and membership as needed and stores a key whose
 * secret hashes to `hash`. `role` NULL keeps an existing membership's role
 * (new memberships are members); "member"/"admin" sets it. */
int store_key_create(store *s, const char *user, const char *team, const char *role,
                     const char *key_id, const unsigned char hash[32],
                     principal *out, ferr *err);
/* not_found when no active key has this id. */
int store_key_revoke(store *s, const char *key_id, ferr *err);
/* 0 and the stored hash + principal for an active key; 1 when there is no
 * such active key; -1 on a database error. */
int store_key_lookup(store *s, const char *key_id, unsigned char hash[32], principal *out);
/* The membership of `user` in `team`: 0, 1 when absent, -1 on error. */
int store_principal_find(store *s, const char *user, const char *team, principal *out);

/* One row of the call log. Strings are borrowed. */
typedef struct call_record {
    int64_t ts_ms;
    const char *request_id;
    int64_t user_id;          /* 0 when unknown (local CLI without --user) */
    int64_t team_id;
    const char *tool;
    const char *connection_id;
    const char *outcome;      /* "ok" or an error code */
    int http_status;
    double duration_ms;
    const char *arguments;    /* JSON with secrets already removed */
    const char *error_message;
} call_record;

/* Appends rows in one transaction. */
int store_call_log_append(store *s, const call_record *rows, size_t n, ferr *err);
/* Number of rows (tests and diagnostics). */
int64_t store_call_log_count(store *s);

/* Per-connection script state for ctx.store: JSON text values. */
int store_kv_get(store *s, const char *provider, const char *connection,
                 const char *key, char **value_out, ferr *err);   /* *value_out NULL when absent; free() it */
int store_kv_set(store *s, const char *provider, const char *connection,
                 const char *key, const char *value, ferr *err);  /* value NULL deletes */

#endif
