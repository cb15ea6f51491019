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
/* The membership by ids: 0, 1 when absent, -1 on error. */
int store_principal_by_ids(store *s, int64_t user_id, int64_t team_id, principal *out);
/* A team's id by name: 0, 1 when absent, -1 on error. */
int store_team_find(store *s, const char *team, int64_t *id);
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
    const char *integration;  /* counted in integration_usage; may be NULL */
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

/* ---- the vault's rows (the crypto is in vault.c) ---- */

/* 1 and the current generation and key check; 0 when the vault was never
 * set up; -1 on error. *key_check is malloc'd. */
int store_vault_get(store *s, int64_t *generation, unsigned char **key_check, size_t *len, ferr *err);
int store_vault_init(store *s, const unsigned char *key_check, size_t len, ferr *err);
/* Re-wraps every connection's data key and replaces the key check, in one
 * transaction (all or nothing); the generation goes up by one. */
typedef int (*store_rewrap_fn)(void *ud, const char *connection_id, const unsigned char *wrapped, size_t len,
                               unsigned char **out, size_t *outlen, ferr *err);
int store_vault_rewrap(store *s, store_rewrap_fn rewrap, void *ud, const unsigned char *key_check, size_t len,
                       ferr *err);

/* ---- connections ---- */

typedef struct store_connection {
    char id[40];
    char integration[64];
    int64_t team_id;
    int64_t user_id;
    char user[65];                 /* who connected it */
    char scope[8];                 /* user | team */
    char label[128];
    char account_label[256];
    char status[24];               /* active, error, reconnect_required, disabled */
    char *settings;                /* JSON object text of non-secret settings, or NULL; owned */
    unsigned char wrapped_key[128];
    size_t wrapped_len;
    int64_t connected_at, credential_set_at, last_used_at, last_synced_at, usage_count;
    char last_error[512];
    int64_t token_expires_at;      /* OAuth: when the access token expires (0: unknown) */
} store_connection;

typedef struct store_secret {
    const char *field;
    const unsigned char *sealed;
    size_t len;
} store_secret;

void store_connection_clear(store_connection *c);
/* The connection row and its sealed secrets, in one transaction. */
int store_connection_insert(store *s, const store_connection *c, const store_secret *secrets, size_t n,
                            ferr *err);
/* 0 found, 1 absent, -1 error; clear *out with store_connection_clear. */
int store_connection_get(store *s, const char *id, store_connection *out, ferr *err);
/* The connection a call by user in team uses for `integration`: the user's
 * own first, then the team's shared one, newest first. */
int store_connection_pick(store *s, int64_t team_id, int64_t user_id, const char *integration,
                          store_connection *out, ferr *err);
/* Connections a member sees: the team's shared ones and their own. */
typedef void (*store_connection_fn)(void *ud, const store_connection *c);
int store_connections_list(store *s, int64_t team_id, int64_t user_id, store_connection_fn fn, void *ud,
                           ferr *err);
/* not_found when absent. Secrets go with it (overwritten: secure_delete). */
int store_connection_delete(store *s, const char *id, ferr *err);
/* fn returns non-zero to stop (then this returns -1 without touching err). */
typedef int (*store_secret_fn)(void *ud, const char *field, const void *sealed, size_t len);
int store_connection_secrets(store *s, const char *id, store_secret_fn fn, void *ud, ferr *err);
int store_connection_set_status(store *s, const char *id, const char *status, const char *last_error, ferr *err);
int store_connection_set_account(store *s, const char *id, const char *account_label, ferr *err);
/* settings: JSON object text, or NULL for none. */
int store_connection_set_settings(store *s, const char *id, const char *settings, ferr *err);

/* ---- discovery ---- */

typedef void (*store_usage_fn)(void *ud, const char *integration, int64_t calls);
int store_integration_usage(store *s, store_usage_fn fn, void *ud, ferr *err);
int store_dismiss(store *s, int64_t user_id, int64_t team_id, const char *integration, ferr *err);
typedef void (*store_name_fn)(void *ud, const char *name);
int store_dismissed(store *s, int64_t user_id, int64_t team_id, store_name_fn fn, void *ud, ferr *err);
/* Rotation policy of a team (every_days 0 deletes); "*" is team-wide. */
int store_policy_set(store *s, int64_t team_id, const char *integration, int every_days, ferr *err);
/* Days, or 0 when the team has no policy for it. */
int store_policy_get(store *s, int64_t team_id, const char *integration);

/* How long a write waits for a lock before failing (default 5000 ms). */
void store_set_busy_timeout(store *s, int ms);

/* ---- audit (the chain itself is computed by audit.c) ---- */

typedef struct audit_row {
    int64_t id;
    int64_t ts_ms;
    int64_t user_id;
    const char *user;
    int64_t team_id;
    const char *team;
    const char *integration;
    const char *connection_id;
    const char *operation;
    const char *access;          /* read | write | NULL */
    const char *outcome;         /* ok or an error code */
    int http_status;
    double duration_ms;
    const char *approval_id;
    const char *request_id;
    const char *arguments;       /* redacted JSON */
    const char *detail;
    const char *prev_hash;
    const char *hash;
} audit_row;

/* Records the intent of an external call before it is made; failing here
 * means the call must not be made (the audit fails closed). */
int store_audit_intent(store *s, int64_t team_id, const char *operation, const char *request_id, int64_t *id,
                       ferr *err);
/* hash_fn(row with its id, prev hash, out[65]) */
typedef void (*store_hash_fn)(const audit_row *r, const char *prev, char out[80]);
/* Appends rows to the chain in one transaction, reading the last hash
 * inside it; intents[i] (may be NULL or 0) are cleared with their row. */
int store_audit_append(store *s, const audit_row *rows, size_t n, const int64_t *intents, store_hash_fn hash_fn,
                       ferr *err);

typedef struct audit_filter {
    int64_t team_id;
    int64_t since_ms;            /* 0: any */
    const char *user;
    const char *integration;
    const char *outcome;
    int64_t before_id;           /* 0: from the newest */
    int limit;
} audit_filter;

/* Rows are borrowed for the duration of the callback; fn returns non-zero
 * to stop (walk only). */
typedef int (*store_audit_fn)(void *ud, const audit_row *r);
int store_audit_query(store *s, const audit_filter *f, store_audit_fn fn, void *ud, ferr *err);
/* Every row in chain order. */
int store_audit_walk(store *s, store_audit_fn fn, void *ud, ferr *err);

/* ---- approvals ---- */

typedef struct approval_row {
    char *id;
    int64_t team_id;
    int64_t user_id;
    char *user;                  /* who asked */
    char *tool;
    char *integration;
    char *connection_id;
    unsigned char *sealed_arguments;   /* the real ones, sealed, while pending; NULL once decided */
    size_t sealed_len;
    unsigned char wrapped_key[128];    /* their data key, wrapped by the master key */
    size_t wrapped_len;
    char *redacted_arguments;
    char *summary;
    char *status;                /* pending approved running succeeded failed rejected expired */
    int64_t created_at, expires_at, decided_at;
    char *decided_by;
    char *reason;
    char *result;                /* JSON text */
    char *error;                 /* JSON text */
} approval_row;

void store_approval_clear(approval_row *a);
int store_approval_insert(store *s, const approval_row *a, ferr *err);
/* 0 found, 1 absent, -1 error. */
int store_approval_get(store *s, const char *id, approval_row *out, ferr *err);
typedef void (*store_approval_fn)(void *ud, const approval_row *a);
/* user_id 0: the whole team; status NULL: any. Newest first. */
int store_approval_list(store *s, int64_t team_id, int64_t user_id, const char *status, int limit,
                        store_approval_fn fn, void *ud, ferr *err);
/* Moves an approval from status `from` to `to` only if it is still in
 * `from`: 0 moved, 1 it was not (someone else decided first), -1 error. */
int store_approval_decide(store *s, const char *id, const char *from, const char *to, int64_t decided_by,
                          const char *reason, ferr *err);
int store_approval_finish(store *s, const char *id, const char *status, const char *result, const char *error,
                          ferr *err);
/* Marks pending approvals past their expiry; returns how many (or -1). */
int store_approvals_expire(store *s, int64_t now, ferr *err);

/* ---- permissions, rate limits, the write allow-list ---- */

/* subject: "role:member", "role:admin" or "user:<id>"; allowed -1 deletes. */
int store_permission_set(store *s, int64_t team_id, const char *subject, const char *category, int allowed,
                         ferr *err);
/* -1 where there is no row. */
int store_permission_get(store *s, int64_t team_id, const char *user_subject, const char *role_subject,
                         const char *category, int *user_allowed, int *role_allowed);
typedef void (*store_permission_fn)(void *ud, const char *subject, const char *category, int allowed);
int store_permission_list(store *s, int64_t team_id, store_permission_fn fn, void *ud, ferr *err);

/* Calls per second and burst, per user and per team. */
typedef struct rate_policy {
    double user_rate, user_burst, team_rate, team_burst;
} rate_policy;
int store_rate_policy_set(store *s, int64_t team_id, const char *integration, const rate_policy *p, ferr *err);
/* 0 found (the integration's, else the team-wide "*"), 1 none. */
int store_rate_policy_get(store *s, int64_t team_id, const char *integration, rate_policy *out);
typedef void (*store_bucket_fn)(void *ud, const char *key, double tokens, int64_t updated_ms);
int store_buckets_load(store *s, store_bucket_fn fn, void *ud);
int store_buckets_save(store *s, const char *const *keys, const double *tokens, const int64_t *updated, size_t n,
                       ferr *err);

int store_allowlist_set(store *s, int64_t team_id, const char *tool, int allowed, ferr *err);
int store_allowlist_has(store *s, int64_t team_id, const char *tool);

/* ---- OAuth ---- */

typedef struct oauth_client_row {
    char *id;                      /* "oac_<random>", new with each secret: its vault key id */
    int64_t team_id;               /* 0: the operator's default for every team */
    char *integration;
    char *client_id;
    unsigned char wrapped_key[128];
    size_t wrapped_len;
    unsigned char *sealed_secret;
    size_t sealed_len;
    char *authorize_url;           /* overrides; NULL: the provider's */
    char *token_url;
    char *revoke_url;
    int set_by_operator;           /* set with the CLI: its URLs may be non-public addresses */
} oauth_client_row;

int store_oauth_client_set(store *s, const oauth_client_row *c, ferr *err);
/* The team's client, else the operator's default: 0, 1 none, -1 error. */
int store_oauth_client_get(store *s, int64_t team_id, const char *integration, oauth_client_row *out, ferr *err);
void store_oauth_client_clear(oauth_client_row *c);
/* The brief's token_refresh_logs: one row per refresh attempt. */
int store_refresh_log(store *s, const char *connection_id, const char *outcome, const char *error);
/* New tokens and their expiry, in one transaction (a rotated refresh token
 * is never separated from its access token); the connection turns active. */
int store_connection_set_tokens(store *s, const char *id, const store_secret *secrets, size_t n,
                                int64_t expires_at, ferr *err);
/* Active connections whose access token expires before `before_ms`. */
int store_connections_expiring(store *s, int64_t before_ms, store_name_fn fn, void *ud);

#endif
