#include "store_mcp.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "store_internal.h"

enum {
    SL_SERVER_INSERT = STORE_SLOTS_MCP,
    SL_SERVER_GET,
    SL_SERVER_SLUG,
    SL_SERVER_LIST,
    SL_SERVER_DECIDE,
    SL_SERVER_SYNCED,
    SL_SERVER_UPDATE,
    SL_SERVER_UPDATE_CREDS,
    SL_SERVER_DELETE,
    SL_TOOLS_LIST,
    SL_TOOL_GET,
    SL_TOOL_UPSERT,
    SL_TOOL_REMOVED,
    SL_TOOL_DECIDE,
    SL_EXEC_INSERT,
    SL_EXEC_LIST,
    SL_BEGIN,
    SL_COMMIT,
    SL_ROLLBACK,
};

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int fail(store *s, ferr *err, const char *what)
{
    return ferr_set(err, FERR_INTERNAL, "store: %s: %s", what, sqlite3_errmsg(store_sqlite(s)));
}

static sqlite3_stmt *st(store *s, int slot, const char *sql, ferr *err)
{
    sqlite3_stmt *q = store__stmt(s, slot, sql);
    if (!q)
        fail(s, err, "preparing a statement");
    return q;
}

static void text(sqlite3_stmt *q, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(q, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, i);
}

static void int_or_null(sqlite3_stmt *q, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(q, i, v);
    else
        sqlite3_bind_null(q, i);
}

static char *col(sqlite3_stmt *q, int i)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    return t ? strdup((const char *)t) : NULL;
}

static int step_done(store *s, sqlite3_stmt *q, ferr *err, const char *what)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : fail(s, err, what);
}

/* ---- servers ---- */

#define SERVER_COLUMNS                                                                                             \
    "m.id, m.team_id, m.slug, m.name, m.description, m.transport, m.url_display, m.command, m.header_names,"      \
    " m.env_names, m.has_bearer_token, m.wrapped_key, m.sealed_credentials, m.data_category, m.timeout_ms,"      \
    " m.sync_interval_s, m.status, m.created_by, c.name, m.created_at, d.name, m.decided_at, m.reason,"          \
    " m.protocol_version, m.detected_transport, m.server_info, m.capabilities, m.last_synced_at,"                \
    " m.last_sync_status, m.last_error FROM mcp_servers m JOIN users c ON c.id = m.created_by"                   \
    " LEFT JOIN users d ON d.id = m.decided_by"

static void read_server(sqlite3_stmt *q, mcp_server_row *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(q, 0));
    r->team_id = sqlite3_column_int64(q, 1);
    r->slug = col(q, 2);
    r->name = col(q, 3);
    r->description = col(q, 4);
    r->transport = col(q, 5);
    r->url_display = col(q, 6);
    r->command = col(q, 7);
    r->header_names = col(q, 8);
    r->env_names = col(q, 9);
    r->has_bearer_token = sqlite3_column_int(q, 10);
    int wl = sqlite3_column_bytes(q, 11);
    if (wl > 0 && (size_t)wl <= sizeof r->wrapped_key) {
        memcpy(r->wrapped_key, sqlite3_column_blob(q, 11), (size_t)wl);
        r->wrapped_len = (size_t)wl;
    }
    int sl = sqlite3_column_bytes(q, 12);
    if (sl > 0 && (r->sealed = malloc((size_t)sl))) {
        memcpy(r->sealed, sqlite3_column_blob(q, 12), (size_t)sl);
        r->sealed_len = (size_t)sl;
    }
    r->data_category = col(q, 13);
    r->timeout_ms = sqlite3_column_int64(q, 14);
    r->sync_interval_s = sqlite3_column_int64(q, 15);
    r->status = col(q, 16);
    r->created_by = sqlite3_column_int64(q, 17);
    r->created_by_name = col(q, 18);
    r->created_at = sqlite3_column_int64(q, 19);
    r->decided_by_name = col(q, 20);
    r->decided_at = sqlite3_column_int64(q, 21);
    r->reason = col(q, 22);
    r->protocol_version = col(q, 23);
    r->detected_transport = col(q, 24);
    r->server_info = col(q, 25);
    r->capabilities = col(q, 26);
    r->last_synced_at = sqlite3_column_int64(q, 27);
    r->last_sync_status = col(q, 28);
    r->last_error = col(q, 29);
}

void store_mcp_server_clear(mcp_server_row *r)
{
    free(r->slug);
    free(r->name);
    free(r->description);
    free(r->transport);
    free(r->url_display);
    free(r->command);
    free(r->header_names);
    free(r->env_names);
    free(r->sealed);
    free(r->data_category);
    free(r->status);
    free(r->created_by_name);
    free(r->decided_by_name);
    free(r->reason);
    free(r->protocol_version);
    free(r->detected_transport);
    free(r->server_info);
    free(r->capabilities);
    free(r->last_sync_status);
    free(r->last_error);
    memset(r, 0, sizeof *r);
}

int store_mcp_server_insert(store *s, const mcp_server_row *r, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_SERVER_INSERT,
                         "INSERT INTO mcp_servers(id, team_id, slug, name, description, transport, url_display, command,"
                         " header_names, env_names, has_bearer_token, wrapped_key, sealed_credentials, data_category,"
                         " timeout_ms, sync_interval_s, status, created_by, created_at)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 'pending',"
                         " ?17, ?18)",
                         err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, r->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, r->team_id);
    text(q, 3, r->slug);
    text(q, 4, r->name);
    text(q, 5, r->description);
    text(q, 6, r->transport);
    text(q, 7, r->url_display);
    text(q, 8, r->command);
    text(q, 9, r->header_names ? r->header_names : "[]");
    text(q, 10, r->env_names ? r->env_names : "[]");
    sqlite3_bind_int(q, 11, r->has_bearer_token);
    sqlite3_bind_blob(q, 12, r->wrapped_key, (int)r->wrapped_len, SQLITE_TRANSIENT);
    sqlite3_bind_blob(q, 13, r->sealed, (int)r->sealed_len, SQLITE_TRANSIENT);
    text(q, 14, r->data_category);
    sqlite3_bind_int64(q, 15, r->timeout_ms);
    sqlite3_bind_int64(q, 16, r->sync_interval_s);
    sqlite3_bind_int64(q, 17, r->created_by);
    sqlite3_bind_int64(q, 18, r->created_at ? r->created_at : now_ms());
    return step_done(s, q, err, "registering an MCP server");
}

int store_mcp_server_get(store *s, const char *id, mcp_server_row *out, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_SERVER_GET, "SELECT " SERVER_COLUMNS " WHERE m.id = ?1", err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        read_server(q, out);
    sqlite3_reset(q);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return 1;
    return fail(s, err, "reading an MCP server");
}

int store_mcp_slug_taken(store *s, const char *slug)
{
    ferr ignore = {0};
    sqlite3_stmt *q = st(s, SL_SERVER_SLUG, "SELECT 1 FROM mcp_servers WHERE slug = ?1", &ignore);
    ferr_clear(&ignore);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, slug, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

int store_mcp_servers_list(store *s, int64_t team_id, store_mcp_server_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_SERVER_LIST,
                         "SELECT " SERVER_COLUMNS " WHERE (?1 = 0 OR m.team_id = ?1) ORDER BY m.created_at, m.id", err);
    if (!q)
        return -1;
    sqlite3_bind_int64(q, 1, team_id);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        mcp_server_row r;
        read_server(q, &r);
        fn(ud, &r);
        store_mcp_server_clear(&r);
    }
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : fail(s, err, "listing MCP servers");
}

int store_mcp_server_decide(store *s, const char *id, const char *status, int64_t decided_by, const char *reason,
                            ferr *err)
{
    sqlite3_stmt *q = st(s, SL_SERVER_DECIDE,
                         "UPDATE mcp_servers SET status = ?2, decided_by = ?3, decided_at = ?4, reason = ?5 WHERE id = ?1",
                         err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    text(q, 2, status);
    sqlite3_bind_int64(q, 3, decided_by);
    sqlite3_bind_int64(q, 4, now_ms());
    text(q, 5, reason);
    return step_done(s, q, err, "deciding on an MCP server");
}

int store_mcp_server_synced(store *s, const char *id, const char *outcome, const char *error, const char *version,
                            const char *transport, const char *server_info, const char *capabilities, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_SERVER_SYNCED,
                         "UPDATE mcp_servers SET last_synced_at = ?2, last_sync_status = ?3, last_error = ?4,"
                         " protocol_version = coalesce(?5, protocol_version),"
                         " detected_transport = coalesce(?6, detected_transport),"
                         " server_info = coalesce(?7, server_info), capabilities = coalesce(?8, capabilities)"
                         " WHERE id = ?1",
                         err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 2, now_ms());
    text(q, 3, outcome);
    text(q, 4, error);
    text(q, 5, version);
    text(q, 6, transport);
    text(q, 7, server_info);
    text(q, 8, capabilities);
    return step_done(s, q, err, "recording an MCP sync");
}

int store_mcp_server_update(store *s, const mcp_server_row *r, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_SERVER_UPDATE,
                         "UPDATE mcp_servers SET description = ?2, data_category = ?3, timeout_ms = ?4,"
                         " sync_interval_s = ?5 WHERE id = ?1",
                         err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, r->id, -1, SQLITE_TRANSIENT);
    text(q, 2, r->description);
    text(q, 3, r->data_category);
    sqlite3_bind_int64(q, 4, r->timeout_ms);
    sqlite3_bind_int64(q, 5, r->sync_interval_s);
    if (step_done(s, q, err, "updating an MCP server") < 0)
        return -1;
    if (!r->sealed)
        return 0;
    q = st(s, SL_SERVER_UPDATE_CREDS,
           "UPDATE mcp_servers SET sealed_credentials = ?2, wrapped_key = ?3, header_names = ?4, env_names = ?5,"
           " has_bearer_token = ?6, url_display = coalesce(?7, url_display) WHERE id = ?1",
           err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, r->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(q, 2, r->sealed, (int)r->sealed_len, SQLITE_TRANSIENT);
    sqlite3_bind_blob(q, 3, r->wrapped_key, (int)r->wrapped_len, SQLITE_TRANSIENT);
    text(q, 4, r->header_names ? r->header_names : "[]");
    text(q, 5, r->env_names ? r->env_names : "[]");
    sqlite3_bind_int(q, 6, r->has_bearer_token);
    text(q, 7, r->url_display);
    return step_done(s, q, err, "updating an MCP server's credentials");
}

int store_mcp_server_delete(store *s, const char *id, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_SERVER_DELETE, "DELETE FROM mcp_servers WHERE id = ?1", err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    if (step_done(s, q, err, "deleting an MCP server") < 0)
        return -1;
    if (sqlite3_changes(store_sqlite(s)) == 0)
        return ferr_set(err, FERR_NOT_FOUND, "no MCP server %s", id);
    return 0;
}

/* ---- tools ---- */

#define TOOL_COLUMNS                                                                                             \
    "t.id, t.server_id, t.name, t.full_name, t.title, t.description, t.input_schema, t.output_schema,"          \
    " t.annotations, t.definition_hash, t.access, t.status, t.problem, t.first_seen_at, t.last_seen_at,"       \
    " t.changed_at, d.name, t.decided_at, t.reason FROM mcp_tools t LEFT JOIN users d ON d.id = t.decided_by"

static void read_tool(sqlite3_stmt *q, mcp_tool_row *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", (const char *)sqlite3_column_text(q, 0));
    snprintf(r->server_id, sizeof r->server_id, "%s", (const char *)sqlite3_column_text(q, 1));
    r->name = col(q, 2);
    r->full_name = col(q, 3);
    r->title = col(q, 4);
    r->description = col(q, 5);
    r->input_schema = col(q, 6);
    r->output_schema = col(q, 7);
    r->annotations = col(q, 8);
    r->definition_hash = col(q, 9);
    r->access = col(q, 10);
    r->status = col(q, 11);
    r->problem = col(q, 12);
    r->first_seen_at = sqlite3_column_int64(q, 13);
    r->last_seen_at = sqlite3_column_int64(q, 14);
    r->changed_at = sqlite3_column_int64(q, 15);
    r->decided_by_name = col(q, 16);
    r->decided_at = sqlite3_column_int64(q, 17);
    r->reason = col(q, 18);
}

void store_mcp_tool_clear(mcp_tool_row *r)
{
    free(r->name);
    free(r->full_name);
    free(r->title);
    free(r->description);
    free(r->input_schema);
    free(r->output_schema);
    free(r->annotations);
    free(r->definition_hash);
    free(r->access);
    free(r->status);
    free(r->problem);
    free(r->decided_by_name);
    free(r->reason);
    memset(r, 0, sizeof *r);
}

int store_mcp_tools_list(store *s, const char *server_id, store_mcp_tool_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_TOOLS_LIST,
                         "SELECT " TOOL_COLUMNS " WHERE t.server_id = ?1 ORDER BY t.first_seen_at, t.rowid", err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, server_id, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        mcp_tool_row r;
        read_tool(q, &r);
        fn(ud, &r);
        store_mcp_tool_clear(&r);
    }
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : fail(s, err, "listing MCP tools");
}

int store_mcp_tool_get(store *s, const char *id, mcp_tool_row *out, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_TOOL_GET, "SELECT " TOOL_COLUMNS " WHERE t.id = ?1", err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        read_tool(q, out);
    sqlite3_reset(q);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return 1;
    return fail(s, err, "reading an MCP tool");
}

static int exec_slot(store *s, int slot, const char *sql)
{
    ferr ignore = {0};
    sqlite3_stmt *q = st(s, slot, sql, &ignore);
    ferr_clear(&ignore);
    if (!q)
        return -1;
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_mcp_tools_apply(store *s, const mcp_tool_row *rows, size_t n, const char *const *removed, size_t nremoved,
                          ferr *err)
{
    if (exec_slot(s, SL_BEGIN, "BEGIN IMMEDIATE") < 0)
        return fail(s, err, "begin");
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++) {
        const mcp_tool_row *r = &rows[i];
        sqlite3_stmt *q = st(s, SL_TOOL_UPSERT,
                             "INSERT INTO mcp_tools(id, server_id, name, full_name, title, description, input_schema,"
                             " output_schema, annotations, definition_hash, access, status, problem, first_seen_at,"
                             " last_seen_at, changed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                             " ?13, ?14, ?15, ?16)"
                             " ON CONFLICT(id) DO UPDATE SET full_name = excluded.full_name, title = excluded.title,"
                             " description = excluded.description, input_schema = excluded.input_schema,"
                             " output_schema = excluded.output_schema, annotations = excluded.annotations,"
                             " definition_hash = excluded.definition_hash, access = excluded.access,"
                             " status = excluded.status, problem = excluded.problem,"
                             " last_seen_at = excluded.last_seen_at,"
                             " changed_at = coalesce(excluded.changed_at, changed_at)",
                             err);
        if (!q) {
            ok = 0;
            break;
        }
        sqlite3_bind_text(q, 1, r->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, r->server_id, -1, SQLITE_TRANSIENT);
        text(q, 3, r->name);
        text(q, 4, r->full_name);
        text(q, 5, r->title);
        text(q, 6, r->description);
        text(q, 7, r->input_schema);
        text(q, 8, r->output_schema);
        text(q, 9, r->annotations);
        text(q, 10, r->definition_hash);
        text(q, 11, r->access);
        text(q, 12, r->status);
        text(q, 13, r->problem);
        sqlite3_bind_int64(q, 14, r->first_seen_at);
        sqlite3_bind_int64(q, 15, r->last_seen_at);
        int_or_null(q, 16, r->changed_at);
        ok = step_done(s, q, err, "writing an MCP tool") == 0;
    }
    for (size_t i = 0; ok && i < nremoved; i++) {
        sqlite3_stmt *q = st(s, SL_TOOL_REMOVED, "UPDATE mcp_tools SET status = 'removed', changed_at = ?2 WHERE id = ?1",
                             err);
        if (!q) {
            ok = 0;
            break;
        }
        sqlite3_bind_text(q, 1, removed[i], -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, now_ms());
        ok = step_done(s, q, err, "marking an MCP tool removed") == 0;
    }
    if (ok && exec_slot(s, SL_COMMIT, "COMMIT") == 0)
        return 0;
    if (ok)
        fail(s, err, "commit");
    exec_slot(s, SL_ROLLBACK, "ROLLBACK");
    return -1;
}

int store_mcp_tool_decide(store *s, const char *id, const char *status, const char *access, int64_t decided_by,
                          const char *reason, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_TOOL_DECIDE,
                         "UPDATE mcp_tools SET status = ?2, access = coalesce(?3, access), decided_by = ?4,"
                         " decided_at = ?5, reason = ?6 WHERE id = ?1",
                         err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
    text(q, 2, status);
    text(q, 3, access);
    sqlite3_bind_int64(q, 4, decided_by);
    sqlite3_bind_int64(q, 5, now_ms());
    text(q, 6, reason);
    return step_done(s, q, err, "deciding on an MCP tool");
}

/* ---- executions ---- */

int store_mcp_execution_insert(store *s, const mcp_execution_row *r, ferr *err)
{
    sqlite3_stmt *q = st(s, SL_EXEC_INSERT,
                         "INSERT INTO mcp_tool_executions(server_id, tool_id, tool_name, team_id, user_id, request_id,"
                         " approval_id, arguments, status, error_code, error_message, jsonrpc_code, result_bytes,"
                         " duration_ms, executed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,"
                         " ?14, ?15)",
                         err);
    if (!q)
        return -1;
    text(q, 1, r->server_id);
    text(q, 2, r->tool_id);
    text(q, 3, r->tool_name);
    int_or_null(q, 4, r->team_id);
    int_or_null(q, 5, r->user_id);
    text(q, 6, r->request_id);
    text(q, 7, r->approval_id);
    text(q, 8, r->arguments);
    text(q, 9, r->status);
    text(q, 10, r->error_code);
    text(q, 11, r->error_message);
    int_or_null(q, 12, r->jsonrpc_code);
    if (r->result_bytes >= 0)
        sqlite3_bind_int64(q, 13, r->result_bytes);
    else
        sqlite3_bind_null(q, 13);
    sqlite3_bind_double(q, 14, r->duration_ms);
    sqlite3_bind_int64(q, 15, r->executed_at ? r->executed_at : now_ms());
    return step_done(s, q, err, "recording an MCP tool execution");
}

int store_mcp_executions_append(store *s, const mcp_execution_row *rows, size_t n, ferr *err)
{
    if (exec_slot(s, SL_BEGIN, "BEGIN IMMEDIATE") < 0)
        return fail(s, err, "begin");
    for (size_t i = 0; i < n; i++)
        if (store_mcp_execution_insert(s, &rows[i], err) < 0) {
            exec_slot(s, SL_ROLLBACK, "ROLLBACK");
            return -1;
        }
    if (exec_slot(s, SL_COMMIT, "COMMIT") == 0)
        return 0;
    fail(s, err, "commit");
    exec_slot(s, SL_ROLLBACK, "ROLLBACK");
    return -1;
}

int store_mcp_executions_list(store *s, const char *server_id, int limit, store_mcp_execution_fn fn, void *ud,
                              ferr *err)
{
    sqlite3_stmt *q = st(s, SL_EXEC_LIST,
                         "SELECT e.id, e.server_id, e.tool_id, e.tool_name, e.team_id, e.user_id, e.request_id,"
                         " e.approval_id, e.arguments, e.status, e.error_code, e.error_message, e.jsonrpc_code,"
                         " e.result_bytes, e.duration_ms, e.executed_at, u.name FROM mcp_tool_executions e"
                         " LEFT JOIN users u ON u.id = e.user_id WHERE e.server_id = ?1 ORDER BY e.id DESC LIMIT ?2",
                         err);
    if (!q)
        return -1;
    sqlite3_bind_text(q, 1, server_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(q, 2, limit);
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        mcp_execution_row r = {
            .id = sqlite3_column_int64(q, 0),
            .server_id = (const char *)sqlite3_column_text(q, 1),
            .tool_id = (const char *)sqlite3_column_text(q, 2),
            .tool_name = (const char *)sqlite3_column_text(q, 3),
            .team_id = sqlite3_column_int64(q, 4),
            .user_id = sqlite3_column_int64(q, 5),
            .request_id = (const char *)sqlite3_column_text(q, 6),
            .approval_id = (const char *)sqlite3_column_text(q, 7),
            .arguments = (const char *)sqlite3_column_text(q, 8),
            .status = (const char *)sqlite3_column_text(q, 9),
            .error_code = (const char *)sqlite3_column_text(q, 10),
            .error_message = (const char *)sqlite3_column_text(q, 11),
            .jsonrpc_code = sqlite3_column_int64(q, 12),
            .result_bytes = sqlite3_column_type(q, 13) == SQLITE_NULL ? -1 : sqlite3_column_int64(q, 13),
            .duration_ms = sqlite3_column_double(q, 14),
            .executed_at = sqlite3_column_int64(q, 15),
            .user_name = (const char *)sqlite3_column_text(q, 16),
        };
        fn(ud, &r);
    }
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? 0 : fail(s, err, "listing MCP tool executions");
}
