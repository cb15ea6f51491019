/* store_mcp — the store's rows for remote MCP servers: mcp_servers,
 * mcp_tools and mcp_tool_executions (part of the store module: SQL lives
 * in store_mcp.c, beside store.c). Strings in rows read back are malloc'd
 * and freed by the matching _clear. */
#ifndef FERRY_STORE_MCP_H
#define FERRY_STORE_MCP_H

#include <stddef.h>
#include <stdint.h>

#include "ferr.h"
#include "store.h"

typedef struct mcp_server_row {
    char id[40];
    int64_t team_id;
    char *slug, *name, *description;
    char *transport;               /* auto, streamable_http, sse, stdio */
    char *url_display;             /* NULL for stdio */
    char *command;                 /* JSON argv, or NULL */
    char *header_names, *env_names;    /* JSON arrays of names */
    int has_bearer_token;
    unsigned char wrapped_key[128];
    size_t wrapped_len;
    unsigned char *sealed;         /* the credentials, sealed */
    size_t sealed_len;
    char *data_category;
    int64_t timeout_ms, sync_interval_s;
    char *status;                  /* pending, approved, rejected */
    int64_t created_by;
    char *created_by_name;         /* read only */
    int64_t created_at;
    char *decided_by_name;         /* read only */
    int64_t decided_at;
    char *reason;
    char *protocol_version, *detected_transport, *server_info, *capabilities;
    int64_t last_synced_at;
    char *last_sync_status, *last_error;
} mcp_server_row;

void store_mcp_server_clear(mcp_server_row *r);
int store_mcp_server_insert(store *s, const mcp_server_row *r, ferr *err);
/* 0 found, 1 absent, -1 error. */
int store_mcp_server_get(store *s, const char *id, mcp_server_row *out, ferr *err);
/* 1 when a server already has this slug, 0 when none, -1 on error. */
int store_mcp_slug_taken(store *s, const char *slug);
typedef void (*store_mcp_server_fn)(void *ud, const mcp_server_row *r);
/* team_id 0: every team's (at start). Oldest first. */
int store_mcp_servers_list(store *s, int64_t team_id, store_mcp_server_fn fn, void *ud, ferr *err);
int store_mcp_server_decide(store *s, const char *id, const char *status, int64_t decided_by, const char *reason,
                            ferr *err);
/* After a sync: its outcome ("ok" or an error code), and what the
 * connection learned (each may be NULL: kept as it was). */
int store_mcp_server_synced(store *s, const char *id, const char *outcome, const char *error, const char *version,
                            const char *transport, const char *server_info, const char *capabilities, ferr *err);
/* PATCH: settings and, when sealed is set, new credentials. */
int store_mcp_server_update(store *s, const mcp_server_row *r, ferr *err);
/* not_found when absent; its tools go with it, its sealed credentials are
 * overwritten (secure_delete). Executions stay. */
int store_mcp_server_delete(store *s, const char *id, ferr *err);

typedef struct mcp_tool_row {
    char id[40];
    char server_id[40];
    char *name, *full_name, *title, *description;
    char *input_schema, *output_schema, *annotations;    /* JSON text; the last two may be NULL */
    char *definition_hash;
    char *access;                  /* read, write */
    char *status;                  /* pending, approved, rejected, removed */
    char *problem;                 /* NULL when ferry can offer it */
    int64_t first_seen_at, last_seen_at, changed_at;
    char *decided_by_name;         /* read only */
    int64_t decided_at;
    char *reason;
} mcp_tool_row;

void store_mcp_tool_clear(mcp_tool_row *r);
typedef void (*store_mcp_tool_fn)(void *ud, const mcp_tool_row *r);
/* In the server's order of first sight. */
int store_mcp_tools_list(store *s, const char *server_id, store_mcp_tool_fn fn, void *ud, ferr *err);
int store_mcp_tool_get(store *s, const char *id, mcp_tool_row *out, ferr *err);
/* One sync's outcome in one transaction: every row in `rows` written
 * (inserted, or updated by id keeping what a person decided unless the
 * row's status says otherwise), and the tools in `removed` (ids) marked
 * removed. */
int store_mcp_tools_apply(store *s, const mcp_tool_row *rows, size_t n, const char *const *removed, size_t nremoved,
                          ferr *err);
int store_mcp_tool_decide(store *s, const char *id, const char *status, const char *access, int64_t decided_by,
                          const char *reason, ferr *err);

typedef struct mcp_execution_row {
    int64_t id;                    /* read only */
    const char *server_id, *tool_id, *tool_name;
    int64_t team_id, user_id;
    const char *request_id, *approval_id;
    const char *arguments;         /* redacted JSON */
    const char *status;            /* success, tool_error, jsonrpc_error, timeout, transport_error,
                                      protocol_error, cancelled */
    const char *error_code, *error_message;
    int64_t jsonrpc_code;          /* 0: none */
    int64_t result_bytes;          /* -1: none */
    double duration_ms;
    int64_t executed_at;
    const char *user_name;         /* read only */
} mcp_execution_row;

int store_mcp_execution_insert(store *s, const mcp_execution_row *r, ferr *err);
/* Several in one transaction (a batch). */
int store_mcp_executions_append(store *s, const mcp_execution_row *rows, size_t n, ferr *err);
typedef void (*store_mcp_execution_fn)(void *ud, const mcp_execution_row *r);
/* Newest first. */
int store_mcp_executions_list(store *s, const char *server_id, int limit, store_mcp_execution_fn fn, void *ud,
                              ferr *err);

#endif
