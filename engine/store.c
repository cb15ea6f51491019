#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <sqlite3.h>

#include "store_internal.h"

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

    /* 1 → 2: the vault, connections (the brief's user_integrations), and
     * what discovery needs: dismissed suggestions, usage, rotation policy. */
    "CREATE TABLE vault_meta ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  generation INTEGER NOT NULL,"
    "  key_check BLOB NOT NULL,"
    "  rotated_at INTEGER NOT NULL);"
    "CREATE TABLE connections ("
    "  id TEXT PRIMARY KEY,"
    "  integration TEXT NOT NULL,"
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  scope TEXT NOT NULL CHECK (scope IN ('user','team')),"
    "  label TEXT,"
    "  account_label TEXT,"
    "  status TEXT NOT NULL DEFAULT 'active'"
    "    CHECK (status IN ('active','error','reconnect_required','disabled')),"
    "  settings TEXT,"
    "  wrapped_key BLOB NOT NULL,"
    "  connected_at INTEGER NOT NULL,"
    "  credential_set_at INTEGER NOT NULL,"
    "  last_used_at INTEGER,"
    "  last_synced_at INTEGER,"
    "  usage_count INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT);"
    "CREATE INDEX connections_team ON connections(team_id, integration);"
    "CREATE TABLE connection_secrets ("
    "  connection_id TEXT NOT NULL REFERENCES connections(id) ON DELETE CASCADE,"
    "  field TEXT NOT NULL,"
    "  sealed BLOB NOT NULL,"
    "  PRIMARY KEY (connection_id, field));"
    "CREATE TABLE suggestion_dismissals ("
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  integration TEXT NOT NULL,"
    "  dismissed_at INTEGER NOT NULL,"
    "  PRIMARY KEY (user_id, team_id, integration));"
    "CREATE TABLE integration_usage ("
    "  integration TEXT PRIMARY KEY,"
    "  calls INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE rotation_policies ("
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  integration TEXT NOT NULL,"
    "  every_days INTEGER NOT NULL CHECK (every_days > 0),"
    "  PRIMARY KEY (team_id, integration));",

    /* 2 → 3: governance. The audit log is append-only and hash-chained in
     * id order; audit_pending holds the intent of calls in flight (written
     * before the call: fail closed). */
    "CREATE TABLE audit_log ("
    "  id INTEGER PRIMARY KEY,"
    "  ts INTEGER NOT NULL,"
    "  user_id INTEGER, user_name TEXT,"
    "  team_id INTEGER, team_name TEXT,"
    "  integration TEXT,"
    "  connection_id TEXT,"
    "  operation TEXT NOT NULL,"
    "  access TEXT,"
    "  outcome TEXT NOT NULL,"
    "  http_status INTEGER,"
    "  duration_ms REAL,"
    "  approval_id TEXT,"
    "  request_id TEXT,"
    "  arguments TEXT,"
    "  detail TEXT,"
    "  prev_hash TEXT NOT NULL,"
    "  hash TEXT NOT NULL);"
    "CREATE INDEX audit_log_ts ON audit_log(ts);"
    "CREATE INDEX audit_log_team ON audit_log(team_id, id);"
    "CREATE TABLE audit_pending ("
    "  id INTEGER PRIMARY KEY,"
    "  ts INTEGER NOT NULL,"
    "  team_id INTEGER,"
    "  operation TEXT NOT NULL,"
    "  request_id TEXT);"
    "CREATE TABLE approvals ("
    "  id TEXT PRIMARY KEY,"
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  user_id INTEGER NOT NULL REFERENCES users(id),"
    "  tool TEXT NOT NULL,"
    "  integration TEXT NOT NULL,"
    "  connection_id TEXT,"
    "  wrapped_key BLOB,"                          /* the arguments' data key; NULL once decided */
    "  sealed_arguments BLOB,"                     /* the real arguments, sealed; NULL once decided */
    "  redacted_arguments TEXT NOT NULL,"
    "  summary TEXT,"
    "  status TEXT NOT NULL CHECK (status IN ('pending','approved','running','succeeded','failed','rejected','expired')),"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  decided_by INTEGER REFERENCES users(id),"
    "  decided_at INTEGER,"
    "  reason TEXT,"
    "  result TEXT,"
    "  error TEXT);"
    "CREATE INDEX approvals_team ON approvals(team_id, status);"
    "CREATE TABLE permissions ("
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  subject TEXT NOT NULL,"                     /* 'role:member', 'role:admin' or 'user:<id>' */
    "  category TEXT NOT NULL,"
    "  allowed INTEGER NOT NULL,"
    "  PRIMARY KEY (team_id, subject, category));"
    "CREATE TABLE rate_limit_policies ("
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  integration TEXT NOT NULL,"
    "  per_user_rate REAL NOT NULL, per_user_burst REAL NOT NULL,"
    "  per_team_rate REAL NOT NULL, per_team_burst REAL NOT NULL,"
    "  PRIMARY KEY (team_id, integration));"
    "CREATE TABLE rate_buckets ("
    "  key TEXT PRIMARY KEY,"
    "  tokens REAL NOT NULL,"
    "  updated_ms INTEGER NOT NULL);"
    "CREATE TABLE write_allowlist ("
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  tool TEXT NOT NULL,"
    "  PRIMARY KEY (team_id, tool));",

    /* 3 → 4: OAuth. Client credentials per integration (team 0: the
     * operator's default for every team), the brief's token_refresh_logs,
     * and when a connection's access token expires. */
    "CREATE TABLE oauth_clients ("
    "  id TEXT PRIMARY KEY,"                       /* 'oac_<random>', new with each secret: the vault's key id */
    "  team_id INTEGER NOT NULL,"
    "  integration TEXT NOT NULL,"
    "  client_id TEXT NOT NULL,"
    "  wrapped_key BLOB NOT NULL,"
    "  sealed_secret BLOB NOT NULL,"
    "  authorize_url TEXT,"
    "  token_url TEXT,"
    "  revoke_url TEXT,"
    "  set_by_operator INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  UNIQUE (team_id, integration));"
    "CREATE TABLE token_refresh_logs ("
    "  id INTEGER PRIMARY KEY,"
    "  connection_id TEXT NOT NULL,"
    "  outcome TEXT NOT NULL,"
    "  error TEXT,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX token_refresh_logs_connection ON token_refresh_logs(connection_id, id);"
    "ALTER TABLE connections ADD COLUMN token_expires_at INTEGER;",

    /* 4 → 5: the scheduler, syncs, records and search (docs/sync.md).
     * sched_jobs: what runs when (syncs now; MCP re-syncs plug in with a
     * kind of their own); sched_leases: at most one run per job, held by a
     * process until it expires (a crashed run is taken over). records are
     * unique per (connection, kind, external_id); their text is split into
     * document_chunks, indexed by an FTS5 table over them (external
     * content: written row by row by the store, never by triggers). */
    "CREATE TABLE sched_jobs ("
    "  id TEXT PRIMARY KEY,"                       /* 'sync:<connection>:<sync>' */
    "  kind TEXT NOT NULL,"
    "  subject TEXT NOT NULL,"                     /* the connection (or server) the job serves */
    "  name TEXT NOT NULL,"
    "  schedule TEXT NOT NULL,"
    "  next_run_at INTEGER NOT NULL,"
    "  failures INTEGER NOT NULL DEFAULT 0,"       /* consecutive failed runs: the backoff */
    "  last_started_at INTEGER,"
    "  last_ended_at INTEGER,"
    "  last_status TEXT,"
    "  last_error TEXT,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX sched_jobs_due ON sched_jobs(next_run_at);"
    "CREATE INDEX sched_jobs_subject ON sched_jobs(subject);"
    "CREATE TABLE sched_leases ("
    "  job_id TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL,"                       /* the process: host/pid/random */
    "  run_id TEXT,"
    "  acquired_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL);"
    "CREATE TABLE sync_runs ("
    "  id TEXT PRIMARY KEY,"
    "  connection_id TEXT NOT NULL,"
    "  sync TEXT NOT NULL,"
    "  trigger TEXT NOT NULL,"                     /* schedule | manual */
    "  owner TEXT,"
    "  started_at INTEGER NOT NULL,"
    "  ended_at INTEGER,"
    "  status TEXT NOT NULL CHECK (status IN ('running','succeeded','partial','failed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  pages INTEGER NOT NULL DEFAULT 0,"          /* checkpoints committed */
    "  requests INTEGER NOT NULL DEFAULT 0,"
    "  added INTEGER NOT NULL DEFAULT 0,"
    "  updated INTEGER NOT NULL DEFAULT 0,"
    "  deleted INTEGER NOT NULL DEFAULT 0,"
    "  unchanged INTEGER NOT NULL DEFAULT 0,"
    "  waited_ms INTEGER NOT NULL DEFAULT 0,"      /* waiting for Retry-After and retries */
    "  error_code TEXT,"
    "  error TEXT);"
    "CREATE INDEX sync_runs_job ON sync_runs(connection_id, sync, started_at);"
    "CREATE INDEX sync_runs_running ON sync_runs(status) WHERE status = 'running';"
    "CREATE TABLE sync_state ("
    "  connection_id TEXT NOT NULL,"
    "  sync TEXT NOT NULL,"
    "  cursor TEXT,"                               /* JSON, committed with the records */
    "  records INTEGER NOT NULL DEFAULT 0,"
    "  updated_at INTEGER NOT NULL,"
    "  run_id TEXT,"
    "  PRIMARY KEY (connection_id, sync));"
    "CREATE TABLE records ("
    "  id INTEGER PRIMARY KEY,"
    "  connection_id TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  external_id TEXT NOT NULL,"
    "  sync TEXT NOT NULL,"
    "  integration TEXT NOT NULL,"
    "  doc_category TEXT NOT NULL,"
    "  team_id INTEGER NOT NULL,"
    "  user_id INTEGER,"                           /* NULL: shared with the team */
    "  title TEXT,"
    "  url TEXT,"
    "  updated_at TEXT,"
    "  updated_ms INTEGER,"
    "  data TEXT,"
    "  content_hash BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  modified_at INTEGER NOT NULL,"
    "  UNIQUE (connection_id, kind, external_id));"
    "CREATE TABLE document_chunks ("
    "  id INTEGER PRIMARY KEY,"
    "  record_id INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  doc_category TEXT NOT NULL,"
    "  integration TEXT NOT NULL,"
    "  connection_id TEXT NOT NULL,"
    "  team_id INTEGER NOT NULL,"
    "  user_id INTEGER,"
    "  url TEXT,"
    "  ts INTEGER,"                                /* the record's time, ms */
    "  title TEXT,"
    "  body TEXT NOT NULL);"
    "CREATE INDEX document_chunks_record ON document_chunks(record_id);"
    "CREATE VIRTUAL TABLE document_chunks_fts USING fts5(title, body, content='document_chunks',"
    "  content_rowid='id', tokenize='porter unicode61');"
    /* A title match weighs twice a body match; ORDER BY rank uses it. */
    "INSERT INTO document_chunks_fts(document_chunks_fts, rank) VALUES ('rank', 'bm25(2.0, 1.0)');",

    /* 5 → 6: remote MCP servers (the brief's mcp_servers, mcp_tools and
     * mcp_tool_executions). A server belongs to the team whose admin
     * registered it; its URL, headers, bearer token and environment are
     * sealed together under the server's own data key (its id is the key
     * id); a tool is offered once the server and the tool are approved. */
    "CREATE TABLE mcp_servers ("
    "  id TEXT PRIMARY KEY,"                       /* 'mcp_<random>' */
    "  team_id INTEGER NOT NULL REFERENCES teams(id),"
    "  slug TEXT NOT NULL UNIQUE,"                 /* tools are '<slug>__<tool>' */
    "  name TEXT NOT NULL,"
    "  description TEXT,"
    "  transport TEXT NOT NULL CHECK (transport IN ('auto','streamable_http','sse','stdio')),"
    "  url_display TEXT,"                          /* the URL without what may be secret in it */
    "  command TEXT,"                              /* stdio: the argv, JSON */
    "  header_names TEXT NOT NULL DEFAULT '[]',"   /* names only: the values are sealed */
    "  env_names TEXT NOT NULL DEFAULT '[]',"
    "  has_bearer_token INTEGER NOT NULL DEFAULT 0,"
    "  wrapped_key BLOB NOT NULL,"
    "  sealed_credentials BLOB NOT NULL,"          /* {url, headers, bearer_token, env} */
    "  data_category TEXT NOT NULL,"
    "  timeout_ms INTEGER NOT NULL,"
    "  sync_interval_s INTEGER NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('pending','approved','rejected')),"
    "  created_by INTEGER NOT NULL REFERENCES users(id),"
    "  created_at INTEGER NOT NULL,"
    "  decided_by INTEGER REFERENCES users(id),"
    "  decided_at INTEGER,"
    "  reason TEXT,"
    "  protocol_version TEXT,"
    "  detected_transport TEXT,"
    "  server_info TEXT,"
    "  capabilities TEXT,"
    "  last_synced_at INTEGER,"
    "  last_sync_status TEXT,"                     /* 'ok' or an error code */
    "  last_error TEXT);"
    "CREATE INDEX mcp_servers_team ON mcp_servers(team_id);"
    "CREATE TABLE mcp_tools ("
    "  id TEXT PRIMARY KEY,"                       /* 'mct_<random>' */
    "  server_id TEXT NOT NULL REFERENCES mcp_servers(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"                        /* as the server names it */
    "  full_name TEXT NOT NULL,"                   /* as the agent calls it */
    "  title TEXT,"
    "  description TEXT,"
    "  input_schema TEXT NOT NULL,"
    "  output_schema TEXT,"
    "  annotations TEXT,"
    "  definition_hash TEXT NOT NULL,"             /* SHA-256 of what an approval approved */
    "  access TEXT NOT NULL CHECK (access IN ('read','write')),"
    "  status TEXT NOT NULL CHECK (status IN ('pending','approved','rejected','removed')),"
    "  problem TEXT,"                              /* why ferry cannot offer it, or NULL */
    "  first_seen_at INTEGER NOT NULL,"
    "  last_seen_at INTEGER NOT NULL,"
    "  changed_at INTEGER,"
    "  decided_by INTEGER REFERENCES users(id),"
    "  decided_at INTEGER,"
    "  reason TEXT,"
    "  UNIQUE (server_id, name));"
    "CREATE TABLE mcp_tool_executions ("
    "  id INTEGER PRIMARY KEY,"
    "  server_id TEXT NOT NULL,"                   /* no foreign key: the history outlives the server */
    "  tool_id TEXT,"
    "  tool_name TEXT NOT NULL,"
    "  team_id INTEGER,"
    "  user_id INTEGER,"
    "  request_id TEXT,"
    "  approval_id TEXT,"
    "  arguments TEXT,"                            /* with secrets redacted */
    "  status TEXT NOT NULL CHECK (status IN ('success','tool_error','jsonrpc_error','timeout','transport_error',"
    "                                          'protocol_error','cancelled')),"
    "  error_code TEXT,"
    "  error_message TEXT,"
    "  jsonrpc_code INTEGER,"
    "  result_bytes INTEGER,"
    "  duration_ms REAL NOT NULL,"
    "  executed_at INTEGER NOT NULL);"
    "CREATE INDEX mcp_tool_executions_server ON mcp_tool_executions(server_id, id);",
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
    ST_VAULT_GET,
    ST_VAULT_INIT,
    ST_VAULT_UPDATE,
    ST_CONN_INSERT,
    ST_SECRET_PUT,
    ST_CONN_GET,
    ST_CONN_LIST,
    ST_CONN_PICK,
    ST_CONN_DELETE,
    ST_CONN_WRAPPED_ALL,
    ST_CONN_REWRAP,
    ST_SECRETS_GET,
    ST_CONN_STATUS,
    ST_CONN_ACCOUNT,
    ST_CONN_SETTINGS,
    ST_CONN_USED,
    ST_USAGE_ADD,
    ST_USAGE_ALL,
    ST_DISMISS,
    ST_DISMISSED,
    ST_POLICY_SET,
    ST_POLICY_DELETE,
    ST_POLICY_GET,
    ST_AUDIT_PENDING_INSERT,
    ST_AUDIT_PENDING_DELETE,
    ST_AUDIT_LAST_HASH,
    ST_AUDIT_INSERT,
    ST_AUDIT_QUERY,
    ST_AUDIT_ALL,
    ST_APPROVAL_INSERT,
    ST_APPROVAL_GET,
    ST_APPROVAL_LIST,
    ST_APPROVAL_DECIDE,
    ST_APPROVAL_FINISH,
    ST_APPROVAL_EXPIRE,
    ST_PERM_SET,
    ST_PERM_DELETE,
    ST_PERM_GET,
    ST_PERM_LIST,
    ST_RATE_POLICY_SET,
    ST_RATE_POLICY_GET,
    ST_BUCKETS_ALL,
    ST_BUCKET_SAVE,
    ST_ALLOW_SET,
    ST_ALLOW_DELETE,
    ST_ALLOW_GET,
    ST_OAC_SET,
    ST_OAC_GET,
    ST_REFRESH_LOG,
    ST_SECRET_REPLACE,
    ST_CONN_TOKENS,
    ST_CONN_EXPIRING,
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
    [ST_VAULT_GET] = "SELECT generation, key_check FROM vault_meta WHERE id = 1",
    [ST_VAULT_INIT] = "INSERT INTO vault_meta(id, generation, key_check, rotated_at) VALUES (1, 1, ?1, ?2)",
    [ST_VAULT_UPDATE] = "UPDATE vault_meta SET generation = generation + 1, key_check = ?1, rotated_at = ?2 WHERE id = 1",
    [ST_CONN_INSERT] = "INSERT INTO connections(id, integration, team_id, user_id, scope, label, account_label,"
                       " settings, wrapped_key, connected_at, credential_set_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    [ST_SECRET_PUT] = "INSERT INTO connection_secrets(connection_id, field, sealed) VALUES (?1, ?2, ?3)",
#define CONN_COLUMNS                                                                                  \
    "c.id, c.integration, c.team_id, c.user_id, u.name, c.scope, c.label, c.account_label, c.status,"  \
    " c.settings, c.wrapped_key, c.connected_at, c.credential_set_at, c.last_used_at, c.last_synced_at," \
    " c.usage_count, c.last_error, c.token_expires_at FROM connections c JOIN users u ON u.id = c.user_id"
    [ST_CONN_GET] = "SELECT " CONN_COLUMNS " WHERE c.id = ?1",
    [ST_CONN_LIST] = "SELECT " CONN_COLUMNS " WHERE c.team_id = ?1 AND (c.scope = 'team' OR c.user_id = ?2)"
                     " ORDER BY c.connected_at, c.id",
    /* The caller's own connection first, then the team's, newest first. */
    [ST_CONN_PICK] = "SELECT " CONN_COLUMNS " WHERE c.team_id = ?1 AND c.integration = ?3"
                     " AND (c.scope = 'team' OR c.user_id = ?2)"
                     " ORDER BY (c.user_id = ?2 AND c.scope = 'user') DESC, c.connected_at DESC LIMIT 1",
    [ST_CONN_DELETE] = "DELETE FROM connections WHERE id = ?1",
    /* Every data key the master key wraps: connections' and pending
     * approvals'. */
    [ST_CONN_WRAPPED_ALL] = "SELECT id, wrapped_key FROM connections"
                            " UNION ALL SELECT id, wrapped_key FROM approvals WHERE wrapped_key IS NOT NULL"
                            " UNION ALL SELECT id, wrapped_key FROM oauth_clients"
                            " UNION ALL SELECT id, wrapped_key FROM mcp_servers",
    [ST_CONN_REWRAP] = "UPDATE connections SET wrapped_key = ?2 WHERE id = ?1",
    [ST_SECRETS_GET] = "SELECT field, sealed FROM connection_secrets WHERE connection_id = ?1 ORDER BY field",
    [ST_CONN_STATUS] = "UPDATE connections SET status = ?2, last_error = ?3 WHERE id = ?1",
    [ST_CONN_ACCOUNT] = "UPDATE connections SET account_label = ?2 WHERE id = ?1",
    [ST_CONN_SETTINGS] = "UPDATE connections SET settings = ?2 WHERE id = ?1",
    [ST_CONN_USED] = "UPDATE connections SET usage_count = usage_count + 1, last_used_at = ?2 WHERE id = ?1",
    [ST_USAGE_ADD] = "INSERT INTO integration_usage(integration, calls) VALUES (?1, 1)"
                     " ON CONFLICT(integration) DO UPDATE SET calls = calls + 1",
    [ST_USAGE_ALL] = "SELECT integration, calls FROM integration_usage",
    [ST_DISMISS] = "INSERT INTO suggestion_dismissals(user_id, team_id, integration, dismissed_at)"
                   " VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    [ST_DISMISSED] = "SELECT integration FROM suggestion_dismissals WHERE user_id = ?1 AND team_id = ?2",
    [ST_POLICY_SET] = "INSERT INTO rotation_policies(team_id, integration, every_days) VALUES (?1, ?2, ?3)"
                      " ON CONFLICT(team_id, integration) DO UPDATE SET every_days = excluded.every_days",
    [ST_POLICY_DELETE] = "DELETE FROM rotation_policies WHERE team_id = ?1 AND integration = ?2",
    /* The integration's own policy wins over the team-wide '*'. */
    [ST_POLICY_GET] = "SELECT every_days FROM rotation_policies WHERE team_id = ?1 AND integration IN (?2, '*')"
                      " ORDER BY integration = '*' LIMIT 1",
    [ST_AUDIT_PENDING_INSERT] = "INSERT INTO audit_pending(ts, team_id, operation, request_id) VALUES (?1, ?2, ?3, ?4)",
    [ST_AUDIT_PENDING_DELETE] = "DELETE FROM audit_pending WHERE id = ?1",
    [ST_AUDIT_LAST_HASH] = "SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1",
#define AUDIT_COLUMNS "ts, user_id, user_name, team_id, team_name, integration, connection_id, operation, access," \
                      " outcome, http_status, duration_ms, approval_id, request_id, arguments, detail, prev_hash, hash"
    [ST_AUDIT_INSERT] = "INSERT INTO audit_log(" AUDIT_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                        " ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
    [ST_AUDIT_QUERY] = "SELECT id, " AUDIT_COLUMNS " FROM audit_log WHERE team_id = ?1 AND (?2 IS NULL OR ts >= ?2)"
                       " AND (?3 IS NULL OR user_name = ?3) AND (?4 IS NULL OR integration = ?4)"
                       " AND (?5 IS NULL OR outcome = ?5) AND (?6 IS NULL OR id < ?6) ORDER BY id DESC LIMIT ?7",
    [ST_AUDIT_ALL] = "SELECT id, " AUDIT_COLUMNS " FROM audit_log ORDER BY id",
#define APPROVAL_COLUMNS                                                                                   \
    "a.id, a.team_id, a.user_id, u.name, a.tool, a.integration, a.connection_id, a.sealed_arguments,"         \
    " a.redacted_arguments, a.summary, a.status, a.created_at, a.expires_at, d.name, a.decided_at, a.reason," \
    " a.result, a.error, a.wrapped_key FROM approvals a JOIN users u ON u.id = a.user_id"                       \
    " LEFT JOIN users d ON d.id = a.decided_by"
    [ST_APPROVAL_INSERT] = "INSERT INTO approvals(id, team_id, user_id, tool, integration, connection_id,"
                           " sealed_arguments, redacted_arguments, summary, status, created_at, expires_at,"
                           " wrapped_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', ?10, ?11, ?12)",
    [ST_APPROVAL_GET] = "SELECT " APPROVAL_COLUMNS " WHERE a.id = ?1",
    [ST_APPROVAL_LIST] = "SELECT " APPROVAL_COLUMNS " WHERE a.team_id = ?1 AND (?2 IS NULL OR a.user_id = ?2)"
                         " AND (?3 IS NULL OR a.status = ?3) ORDER BY a.created_at DESC LIMIT ?4",
    /* Compare-and-set: only a row still in status ?2 changes. */
    [ST_APPROVAL_DECIDE] = "UPDATE approvals SET status = ?3, decided_by = ?4, decided_at = ?5, reason = ?6"
                           " WHERE id = ?1 AND status = ?2",
    /* Once decided the real arguments are destroyed with their key. */
    [ST_APPROVAL_FINISH] = "UPDATE approvals SET status = ?2, result = ?3, error = ?4, sealed_arguments = NULL,"
                           " wrapped_key = NULL WHERE id = ?1",
    [ST_APPROVAL_EXPIRE] = "UPDATE approvals SET status = 'expired', sealed_arguments = NULL, wrapped_key = NULL"
                           " WHERE status = 'pending' AND expires_at <= ?1",
    [ST_PERM_SET] = "INSERT INTO permissions(team_id, subject, category, allowed) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT(team_id, subject, category) DO UPDATE SET allowed = excluded.allowed",
    [ST_PERM_DELETE] = "DELETE FROM permissions WHERE team_id = ?1 AND subject = ?2 AND category = ?3",
    [ST_PERM_GET] = "SELECT subject, allowed FROM permissions WHERE team_id = ?1 AND category = ?2"
                    " AND subject IN (?3, ?4)",
    [ST_PERM_LIST] = "SELECT subject, category, allowed FROM permissions WHERE team_id = ?1 ORDER BY subject, category",
    [ST_RATE_POLICY_SET] = "INSERT INTO rate_limit_policies(team_id, integration, per_user_rate, per_user_burst,"
                           " per_team_rate, per_team_burst) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                           " ON CONFLICT(team_id, integration) DO UPDATE SET per_user_rate = excluded.per_user_rate,"
                           " per_user_burst = excluded.per_user_burst, per_team_rate = excluded.per_team_rate,"
                           " per_team_burst = excluded.per_team_burst",
    [ST_RATE_POLICY_GET] = "SELECT per_user_rate, per_user_burst, per_team_rate, per_team_burst FROM rate_limit_policies"
                           " WHERE team_id = ?1 AND integration IN (?2, '*') ORDER BY integration = '*' LIMIT 1",
    [ST_BUCKETS_ALL] = "SELECT key, tokens, updated_ms FROM rate_buckets",
    [ST_BUCKET_SAVE] = "INSERT INTO rate_buckets(key, tokens, updated_ms) VALUES (?1, ?2, ?3)"
                       " ON CONFLICT(key) DO UPDATE SET tokens = excluded.tokens, updated_ms = excluded.updated_ms",
    [ST_ALLOW_SET] = "INSERT INTO write_allowlist(team_id, tool) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    [ST_ALLOW_DELETE] = "DELETE FROM write_allowlist WHERE team_id = ?1 AND tool = ?2",
    [ST_ALLOW_GET] = "SELECT 1 FROM write_allowlist WHERE team_id = ?1 AND tool = ?2",
    [ST_OAC_SET] = "INSERT INTO oauth_clients(id, team_id, integration, client_id, wrapped_key, sealed_secret,"
                   " authorize_url, token_url, revoke_url, set_by_operator, updated_at)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                   " ON CONFLICT(team_id, integration) DO UPDATE SET id = excluded.id, client_id = excluded.client_id,"
                   " wrapped_key = excluded.wrapped_key, sealed_secret = excluded.sealed_secret,"
                   " authorize_url = excluded.authorize_url, token_url = excluded.token_url, revoke_url = excluded.revoke_url,"
                   " set_by_operator = excluded.set_by_operator, updated_at = excluded.updated_at",
    /* The team's own client first, then the operator's default. */
    [ST_OAC_GET] = "SELECT id, team_id, client_id, wrapped_key, sealed_secret, authorize_url, token_url,"
                   " set_by_operator, revoke_url FROM oauth_clients WHERE integration = ?2 AND team_id IN (?1, 0)"
                   " ORDER BY team_id = 0 LIMIT 1",
    [ST_REFRESH_LOG] = "INSERT INTO token_refresh_logs(connection_id, outcome, error, created_at) VALUES (?1, ?2, ?3, ?4)",
    [ST_SECRET_REPLACE] = "INSERT INTO connection_secrets(connection_id, field, sealed) VALUES (?1, ?2, ?3)"
                          " ON CONFLICT(connection_id, field) DO UPDATE SET sealed = excluded.sealed",
    [ST_CONN_TOKENS] = "UPDATE connections SET token_expires_at = ?2, credential_set_at = ?3, status = 'active',"
                       " last_error = NULL WHERE id = ?1",
    [ST_CONN_EXPIRING] = "SELECT id FROM connections WHERE token_expires_at IS NOT NULL AND token_expires_at <= ?1"
                         " AND status = 'active'",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    store_sync_stmts *sync;      /* store_sync.c's statements, prepared on first use */
    sqlite3_stmt *extra[STORE_EXTRA_SLOTS];   /* statements of the store's other files */
};

sqlite3 *store_sqlite(store *s) { return s->db; }
store_sync_stmts **store_sync_slot(store *s) { return &s->sync; }

sqlite3_stmt *store__stmt(store *s, int slot, const char *sql)
{
    if (slot < 0 || slot >= STORE_EXTRA_SLOTS)
        return NULL;
    if (!s->extra[slot] &&
        sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->extra[slot], NULL) != SQLITE_OK)
        return NULL;
    sqlite3_reset(s->extra[slot]);
    sqlite3_clear_bindings(s->extra[slot]);
    return s->extra[slot];
}


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
                     " PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;"
                     /* Deleted rows (a removed connection's sealed
                      * secrets) are overwritten, not left in free pages. */
                     " PRAGMA secure_delete = ON;",
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
    store_sync_release(s);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    for (int i = 0; i < STORE_EXTRA_SLOTS; i++)
        sqlite3_finalize(s->extra[i]);
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

int store_principal_by_ids(store *s, int64_t user_id, int64_t team_id, principal *out)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT m.role, u.name, t.name FROM memberships m JOIN users u ON u.id = m.user_id"
                           " JOIN teams t ON t.id = m.team_id WHERE m.user_id = ?1 AND m.team_id = ?2",
                           -1, &q, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(q, 1, user_id);
    sqlite3_bind_int64(q, 2, team_id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->user_id = user_id;
        out->team_id = team_id;
        out->is_admin = strcmp((const char *)sqlite3_column_text(q, 0), "admin") == 0;
        copy_name(out->user, sizeof out->user, sqlite3_column_text(q, 1));
        copy_name(out->team, sizeof out->team, sqlite3_column_text(q, 2));
    }
    sqlite3_finalize(q);
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
        /* Usage rides in the same transaction: no write per call. */
        if (r->connection_id) {
            sqlite3_stmt *u = stmt(s, ST_CONN_USED);
            sqlite3_bind_text(u, 1, r->connection_id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(u, 2, r->ts_ms);
            sqlite3_step(u);
            sqlite3_reset(u);
        }
        if (r->integration) {
            sqlite3_stmt *u = stmt(s, ST_USAGE_ADD);
            sqlite3_bind_text(u, 1, r->integration, -1, SQLITE_STATIC);
            sqlite3_step(u);
            sqlite3_reset(u);
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

/* ---- the vault's rows ---- */

int store_vault_get(store *s, int64_t *generation, unsigned char **key_check, size_t *len, ferr *err)
{
    *key_check = NULL;
    *len = 0;
    *generation = 0;
    sqlite3_stmt *st = stmt(s, ST_VAULT_GET);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *generation = sqlite3_column_int64(st, 0);
        int n = sqlite3_column_bytes(st, 1);
        *key_check = malloc(n > 0 ? (size_t)n : 1);
        if (*key_check) {
            memcpy(*key_check, sqlite3_column_blob(st, 1), (size_t)n);
            *len = (size_t)n;
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(s, err, "reading the vault");
    return rc == SQLITE_ROW ? 1 : 0;
}

int store_vault_init(store *s, const unsigned char *key_check, size_t len, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_VAULT_INIT);
    sqlite3_bind_blob(st, 1, key_check, (int)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "initialising the vault");
}

int store_vault_rewrap(store *s, store_rewrap_fn rewrap, void *ud, const unsigned char *key_check, size_t len,
                       ferr *err)
{
    if (exec_simple(s, ST_BEGIN) < 0)
        return db_fail(s, err, "begin");
    /* Collect first: updating rows while stepping the same table's select
     * is legal in SQLite but harder to reason about. */
    typedef struct item {
        char *id;
        unsigned char *blob;
        int n;
    } item;
    item *items = NULL;
    size_t n = 0, cap = 0;
    int ok = 1;
    sqlite3_stmt *st = stmt(s, ST_CONN_WRAPPED_ALL);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            item *ni = realloc(items, cap * sizeof *ni);
            if (!ni) {
                ok = 0;
                break;
            }
            items = ni;
        }
        items[n].id = strdup((const char *)sqlite3_column_text(st, 0));
        items[n].n = sqlite3_column_bytes(st, 1);
        items[n].blob = malloc(items[n].n > 0 ? (size_t)items[n].n : 1);
        memcpy(items[n].blob, sqlite3_column_blob(st, 1), (size_t)items[n].n);
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        ok = 0;
    if (!ok)
        db_fail(s, err, "reading data keys");
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char *out = NULL;
        size_t outlen = 0;
        if (rewrap(ud, items[i].id, items[i].blob, (size_t)items[i].n, &out, &outlen, err) < 0) {
            ok = 0;
            break;
        }
        if (strncmp(items[i].id, "apr_", 4) == 0 || strncmp(items[i].id, "oac_", 4) == 0 ||
            strncmp(items[i].id, "mcp_", 4) == 0) {
            sqlite3_stmt *q = NULL;
            ok = sqlite3_prepare_v2(s->db,
                                    strncmp(items[i].id, "apr_", 4) == 0
                                        ? "UPDATE approvals SET wrapped_key = ?2 WHERE id = ?1"
                                        : strncmp(items[i].id, "oac_", 4) == 0
                                              ? "UPDATE oauth_clients SET wrapped_key = ?2 WHERE id = ?1"
                                              : "UPDATE mcp_servers SET wrapped_key = ?2 WHERE id = ?1",
                                    -1, &q, NULL) == SQLITE_OK;
            if (ok) {
                sqlite3_bind_text(q, 1, items[i].id, -1, SQLITE_STATIC);
                sqlite3_bind_blob(q, 2, out, (int)outlen, SQLITE_STATIC);
                ok = sqlite3_step(q) == SQLITE_DONE;
            }
            sqlite3_finalize(q);
            if (!ok)
                db_fail(s, err, "re-wrapping a data key");
        } else {
            st = stmt(s, ST_CONN_REWRAP);
            sqlite3_bind_text(st, 1, items[i].id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(st, 2, out, (int)outlen, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE) {
                db_fail(s, err, "re-wrapping a data key");
                ok = 0;
            }
            sqlite3_reset(st);
        }
        free(out);
    }
    if (ok) {
        st = stmt(s, ST_VAULT_UPDATE);
        sqlite3_bind_blob(st, 1, key_check, (int)len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now_ms());
        if (sqlite3_step(st) != SQLITE_DONE || sqlite3_changes(s->db) != 1) {
            db_fail(s, err, "updating the vault");
            ok = 0;
        }
        sqlite3_reset(st);
    }
    for (size_t i = 0; i < n; i++) {
        free(items[i].id);
        free(items[i].blob);
    }
    free(items);
    if (ok && exec_simple(s, ST_COMMIT) == 0)
        return 0;
    if (ok)
        db_fail(s, err, "commit");
    exec_simple(s, ST_ROLLBACK);
    return -1;
}

/* ---- connections ---- */

static void read_connection(sqlite3_stmt *st, store_connection *c)
{
    memset(c, 0, sizeof *c);
    copy_name(c->id, sizeof c->id, sqlite3_column_text(st, 0));
    copy_name(c->integration, sizeof c->integration, sqlite3_column_text(st, 1));
    c->team_id = sqlite3_column_int64(st, 2);
    c->user_id = sqlite3_column_int64(st, 3);
    copy_name(c->user, sizeof c->user, sqlite3_column_text(st, 4));
    copy_name(c->scope, sizeof c->scope, sqlite3_column_text(st, 5));
    copy_name(c->label, sizeof c->label, sqlite3_column_text(st, 6));
    copy_name(c->account_label, sizeof c->account_label, sqlite3_column_text(st, 7));
    copy_name(c->status, sizeof c->status, sqlite3_column_text(st, 8));
    const unsigned char *settings = sqlite3_column_text(st, 9);
    c->settings = settings ? strdup((const char *)settings) : NULL;
    int n = sqlite3_column_bytes(st, 10);
    if (n > 0 && (size_t)n <= sizeof c->wrapped_key) {
        memcpy(c->wrapped_key, sqlite3_column_blob(st, 10), (size_t)n);
        c->wrapped_len = (size_t)n;
    }
    c->connected_at = sqlite3_column_int64(st, 11);
    c->credential_set_at = sqlite3_column_int64(st, 12);
    c->last_used_at = sqlite3_column_int64(st, 13);
    c->last_synced_at = sqlite3_column_int64(st, 14);
    c->usage_count = sqlite3_column_int64(st, 15);
    copy_name(c->last_error, sizeof c->last_error, sqlite3_column_text(st, 16));
    c->token_expires_at = sqlite3_column_int64(st, 17);
}

void store_connection_clear(store_connection *c)
{
    free(c->settings);
    c->settings = NULL;
}

int store_connection_insert(store *s, const store_connection *c, const store_secret *secrets, size_t n, ferr *err)
{
    if (exec_simple(s, ST_BEGIN) < 0)
        return db_fail(s, err, "begin");
    int64_t ts = c->connected_at ? c->connected_at : now_ms();
    sqlite3_stmt *st = stmt(s, ST_CONN_INSERT);
    sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->integration, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, c->team_id);
    sqlite3_bind_int64(st, 4, c->user_id);
    sqlite3_bind_text(st, 5, c->scope, -1, SQLITE_STATIC);
    bind_text_or_null(st, 6, c->label[0] ? c->label : NULL);
    bind_text_or_null(st, 7, c->account_label[0] ? c->account_label : NULL);
    bind_text_or_null(st, 8, c->settings);
    sqlite3_bind_blob(st, 9, c->wrapped_key, (int)c->wrapped_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 10, ts);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_reset(st);
    for (size_t i = 0; ok && i < n; i++) {
        st = stmt(s, ST_SECRET_PUT);
        sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, secrets[i].field, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, secrets[i].sealed, (int)secrets[i].len, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
    }
    if (ok && exec_simple(s, ST_COMMIT) == 0)
        return 0;
    db_fail(s, err, "storing the connection");
    exec_simple(s, ST_ROLLBACK);
    return -1;
}

static int one_connection(store *s, sqlite3_stmt *st, store_connection *out, ferr *err)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_connection(st, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(s, err, "reading connections");
    return rc == SQLITE_ROW ? 0 : 1;
}

int store_connection_get(store *s, const char *id, store_connection *out, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_CONN_GET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    return one_connection(s, st, out, err);
}

int store_connection_pick(store *s, int64_t team_id, int64_t user_id, const char *integration,
                          store_connection *out, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_CONN_PICK);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_int64(st, 2, user_id);
    sqlite3_bind_text(st, 3, integration, -1, SQLITE_STATIC);
    return one_connection(s, st, out, err);
}

int store_connections_list(store *s, int64_t team_id, int64_t user_id, store_connection_fn fn, void *ud,
                           ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_CONN_LIST);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_int64(st, 2, user_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_connection c;
        read_connection(st, &c);
        fn(ud, &c);
        store_connection_clear(&c);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "listing connections");
}

int store_connection_delete(store *s, const char *id, ferr *err)
{
    /* Its synced records, chunks, jobs and runs go with it, in the same
     * transaction: nothing of a deleted connection stays searchable. */
    if (exec_simple(s, ST_BEGIN) < 0)
        return db_fail(s, err, "begin");
    sqlite3_stmt *st = stmt(s, ST_CONN_DELETE);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        db_fail(s, err, "deleting the connection");
        exec_simple(s, ST_ROLLBACK);
        return -1;
    }
    if (sqlite3_changes(s->db) == 0) {
        exec_simple(s, ST_ROLLBACK);
        return ferr_set(err, FERR_NOT_FOUND, "no connection %s", id);
    }
    if (store_sync_forget_connection(s, id) < 0 || exec_simple(s, ST_COMMIT) < 0) {
        db_fail(s, err, "deleting the connection's records");
        exec_simple(s, ST_ROLLBACK);
        return -1;
    }
    return 0;
}

int store_connection_secrets(store *s, const char *id, store_secret_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_SECRETS_GET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW)
        stop = fn(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_blob(st, 1),
                  (size_t)sqlite3_column_bytes(st, 1));
    sqlite3_reset(st);
    if (stop)
        return -1;
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "reading sealed credentials");
}

int store_connection_set_status(store *s, const char *id, const char *status, const char *last_error, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_CONN_STATUS);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, last_error);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "updating the connection");
}

int store_connection_set_settings(store *s, const char *id, const char *settings, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_CONN_SETTINGS);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    bind_text_or_null(st, 2, settings);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "storing connection settings");
}

int store_connection_set_account(store *s, const char *id, const char *account_label, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_CONN_ACCOUNT);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    bind_text_or_null(st, 2, account_label);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "updating the connection");
}

/* ---- discovery ---- */

int store_integration_usage(store *s, store_usage_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_USAGE_ALL);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "reading usage");
}

int store_dismiss(store *s, int64_t user_id, int64_t team_id, const char *integration, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_DISMISS);
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, team_id);
    sqlite3_bind_text(st, 3, integration, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "dismissing");
}

int store_dismissed(store *s, int64_t user_id, int64_t team_id, store_name_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_DISMISSED);
    sqlite3_bind_int64(st, 1, user_id);
    sqlite3_bind_int64(st, 2, team_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "reading dismissals");
}

int store_policy_set(store *s, int64_t team_id, const char *integration, int every_days, ferr *err)
{
    sqlite3_stmt *st = stmt(s, every_days > 0 ? ST_POLICY_SET : ST_POLICY_DELETE);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, integration, -1, SQLITE_STATIC);
    if (every_days > 0)
        sqlite3_bind_int(st, 3, every_days);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "setting the rotation policy");
}

int store_policy_get(store *s, int64_t team_id, const char *integration)
{
    sqlite3_stmt *st = stmt(s, ST_POLICY_GET);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, integration, -1, SQLITE_STATIC);
    int days = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
    sqlite3_reset(st);
    return days;
}

/* ---- audit ---- */

void store_set_busy_timeout(store *s, int ms)
{
    sqlite3_busy_timeout(s->db, ms);
}

int store_audit_intent(store *s, int64_t team_id, const char *operation, const char *request_id, int64_t *id,
                       ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_AUDIT_PENDING_INSERT);
    sqlite3_bind_int64(st, 1, now_ms());
    if (team_id)
        sqlite3_bind_int64(st, 2, team_id);
    sqlite3_bind_text(st, 3, operation, -1, SQLITE_STATIC);
    bind_text_or_null(st, 4, request_id);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return ferr_set(err, FERR_INTERNAL, "the audit log cannot be written (%s)", sqlite3_errmsg(s->db));
    *id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

static void bind_audit(sqlite3_stmt *st, const audit_row *r, const char *prev, const char *hash)
{
    sqlite3_bind_int64(st, 1, r->ts_ms);
    if (r->user_id)
        sqlite3_bind_int64(st, 2, r->user_id);
    bind_text_or_null(st, 3, r->user);
    if (r->team_id)
        sqlite3_bind_int64(st, 4, r->team_id);
    bind_text_or_null(st, 5, r->team);
    bind_text_or_null(st, 6, r->integration);
    bind_text_or_null(st, 7, r->connection_id);
    sqlite3_bind_text(st, 8, r->operation, -1, SQLITE_STATIC);
    bind_text_or_null(st, 9, r->access);
    sqlite3_bind_text(st, 10, r->outcome, -1, SQLITE_STATIC);
    if (r->http_status)
        sqlite3_bind_int(st, 11, r->http_status);
    sqlite3_bind_double(st, 12, r->duration_ms);
    bind_text_or_null(st, 13, r->approval_id);
    bind_text_or_null(st, 14, r->request_id);
    bind_text_or_null(st, 15, r->arguments);
    bind_text_or_null(st, 16, r->detail);
    sqlite3_bind_text(st, 17, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 18, hash, -1, SQLITE_STATIC);
}

int store_audit_append(store *s, const audit_row *rows, size_t n, const int64_t *intents, store_hash_fn hash_fn,
                       ferr *err)
{
    if (n == 0)
        return 0;
    if (exec_simple(s, ST_BEGIN) < 0)
        return ferr_set(err, FERR_INTERNAL, "the audit log cannot be written (%s)", sqlite3_errmsg(s->db));
    /* The last hash is read inside the write transaction: another ferry
     * process may have appended since. */
    char prev[80] = "0";
    sqlite3_stmt *st = stmt(s, ST_AUDIT_LAST_HASH);
    if (sqlite3_step(st) == SQLITE_ROW)
        copy_name(prev, sizeof prev, sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++) {
        audit_row r = rows[i];
        char hash[80];
        /* The id the row will get is part of what is hashed. */
        st = stmt(s, ST_AUDIT_INSERT);
        bind_audit(st, &r, prev, "");
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
        if (!ok)
            break;
        r.id = sqlite3_last_insert_rowid(s->db);
        hash_fn(&r, prev, hash);
        char sql[128];
        snprintf(sql, sizeof sql, "UPDATE audit_log SET hash = '%s' WHERE id = %lld", hash, (long long)r.id);
        ok = sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK;
        snprintf(prev, sizeof prev, "%s", hash);
        if (ok && intents && intents[i]) {
            st = stmt(s, ST_AUDIT_PENDING_DELETE);
            sqlite3_bind_int64(st, 1, intents[i]);
            ok = sqlite3_step(st) == SQLITE_DONE;
            sqlite3_reset(st);
        }
    }
    if (ok && exec_simple(s, ST_COMMIT) == 0)
        return 0;
    ferr_set(err, FERR_INTERNAL, "the audit log cannot be written (%s)", sqlite3_errmsg(s->db));
    exec_simple(s, ST_ROLLBACK);
    return -1;
}

static void read_audit(sqlite3_stmt *st, audit_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(st, 0);
    r->ts_ms = sqlite3_column_int64(st, 1);
    r->user_id = sqlite3_column_int64(st, 2);
    r->user = (const char *)sqlite3_column_text(st, 3);
    r->team_id = sqlite3_column_int64(st, 4);
    r->team = (const char *)sqlite3_column_text(st, 5);
    r->integration = (const char *)sqlite3_column_text(st, 6);
    r->connection_id = (const char *)sqlite3_column_text(st, 7);
    r->operation = (const char *)sqlite3_column_text(st, 8);
    r->access = (const char *)sqlite3_column_text(st, 9);
    r->outcome = (const char *)sqlite3_column_text(st, 10);
    r->http_status = sqlite3_column_int(st, 11);
    r->duration_ms = sqlite3_column_double(st, 12);
    r->approval_id = (const char *)sqlite3_column_text(st, 13);
    r->request_id = (const char *)sqlite3_column_text(st, 14);
    r->arguments = (const char *)sqlite3_column_text(st, 15);
    r->detail = (const char *)sqlite3_column_text(st, 16);
    r->prev_hash = (const char *)sqlite3_column_text(st, 17);
    r->hash = (const char *)sqlite3_column_text(st, 18);
}

int store_audit_query(store *s, const audit_filter *f, store_audit_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_AUDIT_QUERY);
    sqlite3_bind_int64(st, 1, f->team_id);
    if (f->since_ms)
        sqlite3_bind_int64(st, 2, f->since_ms);
    bind_text_or_null(st, 3, f->user);
    bind_text_or_null(st, 4, f->integration);
    bind_text_or_null(st, 5, f->outcome);
    if (f->before_id)
        sqlite3_bind_int64(st, 6, f->before_id);
    sqlite3_bind_int(st, 7, f->limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        audit_row r;
        read_audit(st, &r);
        fn(ud, &r);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "reading the audit log");
}

int store_audit_walk(store *s, store_audit_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_AUDIT_ALL);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        audit_row r;
        read_audit(st, &r);
        if (fn(ud, &r))
            break;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_fail(s, err, "reading the audit log");
}

/* ---- approvals ---- */

int store_approval_insert(store *s, const approval_row *a, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_APPROVAL_INSERT);
    sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, a->team_id);
    sqlite3_bind_int64(st, 3, a->user_id);
    sqlite3_bind_text(st, 4, a->tool, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, a->integration, -1, SQLITE_STATIC);
    bind_text_or_null(st, 6, a->connection_id);
    sqlite3_bind_blob(st, 7, a->sealed_arguments, (int)a->sealed_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, a->redacted_arguments, -1, SQLITE_STATIC);
    bind_text_or_null(st, 9, a->summary);
    sqlite3_bind_int64(st, 10, a->created_at);
    sqlite3_bind_int64(st, 11, a->expires_at);
    sqlite3_bind_blob(st, 12, a->wrapped_key, (int)a->wrapped_len, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "storing the approval");
}

static char *dup_col(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

static void read_approval(sqlite3_stmt *st, approval_row *a)
{
    memset(a, 0, sizeof *a);
    a->id = dup_col(st, 0);
    a->team_id = sqlite3_column_int64(st, 1);
    a->user_id = sqlite3_column_int64(st, 2);
    a->user = dup_col(st, 3);
    a->tool = dup_col(st, 4);
    a->integration = dup_col(st, 5);
    a->connection_id = dup_col(st, 6);
    a->sealed_len = (size_t)sqlite3_column_bytes(st, 7);
    if (a->sealed_len) {
        a->sealed_arguments = malloc(a->sealed_len);
        memcpy(a->sealed_arguments, sqlite3_column_blob(st, 7), a->sealed_len);
    }
    a->redacted_arguments = dup_col(st, 8);
    a->summary = dup_col(st, 9);
    a->status = dup_col(st, 10);
    a->created_at = sqlite3_column_int64(st, 11);
    a->expires_at = sqlite3_column_int64(st, 12);
    a->decided_by = dup_col(st, 13);
    a->decided_at = sqlite3_column_int64(st, 14);
    a->reason = dup_col(st, 15);
    a->result = dup_col(st, 16);
    a->error = dup_col(st, 17);
    a->wrapped_len = (size_t)sqlite3_column_bytes(st, 18);
    if (a->wrapped_len && a->wrapped_len <= sizeof a->wrapped_key)
        memcpy(a->wrapped_key, sqlite3_column_blob(st, 18), a->wrapped_len);
    else
        a->wrapped_len = 0;
}

void store_approval_clear(approval_row *a)
{
    char **fields[] = {&a->id, &a->user, &a->tool, &a->integration, &a->connection_id,
                       &a->redacted_arguments, &a->summary, &a->status, &a->decided_by, &a->reason, &a->result,
                       &a->error};
    free(a->sealed_arguments);
    a->sealed_arguments = NULL;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        free(*fields[i]);
        *fields[i] = NULL;
    }
}

int store_approval_get(store *s, const char *id, approval_row *out, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_APPROVAL_GET);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_approval(st, out);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(s, err, "reading the approval");
    return rc == SQLITE_ROW ? 0 : 1;
}

int store_approval_list(store *s, int64_t team_id, int64_t user_id, const char *status, int limit,
                        store_approval_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_APPROVAL_LIST);
    sqlite3_bind_int64(st, 1, team_id);
    if (user_id)
        sqlite3_bind_int64(st, 2, user_id);
    bind_text_or_null(st, 3, status);
    sqlite3_bind_int(st, 4, limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        approval_row a;
        read_approval(st, &a);
        fn(ud, &a);
        store_approval_clear(&a);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "listing approvals");
}

int store_approval_decide(store *s, const char *id, const char *from, const char *to, int64_t decided_by,
                          const char *reason, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_APPROVAL_DECIDE);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, to, -1, SQLITE_STATIC);
    if (decided_by)
        sqlite3_bind_int64(st, 4, decided_by);
    sqlite3_bind_int64(st, 5, now_ms());
    bind_text_or_null(st, 6, reason);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return db_fail(s, err, "deciding the approval");
    return sqlite3_changes(s->db) == 1 ? 0 : 1;
}

int store_approval_finish(store *s, const char *id, const char *status, const char *result, const char *error,
                          ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_APPROVAL_FINISH);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, result);
    bind_text_or_null(st, 4, error);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "storing the approval's outcome");
}

int store_approvals_expire(store *s, int64_t now, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_APPROVAL_EXPIRE);
    sqlite3_bind_int64(st, 1, now);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? sqlite3_changes(s->db) : db_fail(s, err, "expiring approvals");
}

/* ---- permissions, limits, allow-list ---- */

int store_permission_set(store *s, int64_t team_id, const char *subject, const char *category, int allowed,
                         ferr *err)
{
    sqlite3_stmt *st = stmt(s, allowed < 0 ? ST_PERM_DELETE : ST_PERM_SET);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, category, -1, SQLITE_STATIC);
    if (allowed >= 0)
        sqlite3_bind_int(st, 4, allowed);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "setting the permission");
}

int store_permission_get(store *s, int64_t team_id, const char *user_subject, const char *role_subject,
                         const char *category, int *user_allowed, int *role_allowed)
{
    *user_allowed = *role_allowed = -1;
    sqlite3_stmt *st = stmt(s, ST_PERM_GET);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, category, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, user_subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, role_subject, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *subject = (const char *)sqlite3_column_text(st, 0);
        int allowed = sqlite3_column_int(st, 1);
        if (strcmp(subject, user_subject) == 0)
            *user_allowed = allowed;
        else
            *role_allowed = allowed;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_permission_list(store *s, int64_t team_id, store_permission_fn fn, void *ud, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_PERM_LIST);
    sqlite3_bind_int64(st, 1, team_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
           sqlite3_column_int(st, 2));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "listing permissions");
}

int store_rate_policy_set(store *s, int64_t team_id, const char *integration, const rate_policy *p, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_RATE_POLICY_SET);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, integration, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, p->user_rate);
    sqlite3_bind_double(st, 4, p->user_burst);
    sqlite3_bind_double(st, 5, p->team_rate);
    sqlite3_bind_double(st, 6, p->team_burst);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "setting the rate limit");
}

int store_rate_policy_get(store *s, int64_t team_id, const char *integration, rate_policy *out)
{
    sqlite3_stmt *st = stmt(s, ST_RATE_POLICY_GET);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, integration, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    if (found) {
        out->user_rate = sqlite3_column_double(st, 0);
        out->user_burst = sqlite3_column_double(st, 1);
        out->team_rate = sqlite3_column_double(st, 2);
        out->team_burst = sqlite3_column_double(st, 3);
    }
    sqlite3_reset(st);
    return found ? 0 : 1;
}

int store_buckets_load(store *s, store_bucket_fn fn, void *ud)
{
    sqlite3_stmt *st = stmt(s, ST_BUCKETS_ALL);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0), sqlite3_column_double(st, 1), sqlite3_column_int64(st, 2));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_buckets_save(store *s, const char *const *keys, const double *tokens, const int64_t *updated, size_t n,
                       ferr *err)
{
    if (n == 0)
        return 0;
    if (exec_simple(s, ST_BEGIN) < 0)
        return db_fail(s, err, "begin");
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++) {
        sqlite3_stmt *st = stmt(s, ST_BUCKET_SAVE);
        sqlite3_bind_text(st, 1, keys[i], -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 2, tokens[i]);
        sqlite3_bind_int64(st, 3, updated[i]);
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
    }
    if (ok && exec_simple(s, ST_COMMIT) == 0)
        return 0;
    db_fail(s, err, "saving rate limit state");
    exec_simple(s, ST_ROLLBACK);
    return -1;
}

int store_allowlist_set(store *s, int64_t team_id, const char *tool, int allowed, ferr *err)
{
    sqlite3_stmt *st = stmt(s, allowed ? ST_ALLOW_SET : ST_ALLOW_DELETE);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, tool, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "updating the write allow-list");
}

int store_allowlist_has(store *s, int64_t team_id, const char *tool)
{
    sqlite3_stmt *st = stmt(s, ST_ALLOW_GET);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, tool, -1, SQLITE_STATIC);
    int found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

/* ---- OAuth ---- */

int store_team_find(store *s, const char *team, int64_t *id)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM teams WHERE name = ?1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, team, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

int store_oauth_client_set(store *s, const oauth_client_row *c, ferr *err)
{
    sqlite3_stmt *st = stmt(s, ST_OAC_SET);
    sqlite3_bind_text(st, 1, c->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, c->team_id);
    sqlite3_bind_text(st, 3, c->integration, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, c->client_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 5, c->wrapped_key, (int)c->wrapped_len, SQLITE_STATIC);
    sqlite3_bind_blob(st, 6, c->sealed_secret, (int)c->sealed_len, SQLITE_STATIC);
    bind_text_or_null(st, 7, c->authorize_url);
    bind_text_or_null(st, 8, c->token_url);
    bind_text_or_null(st, 9, c->revoke_url);
    sqlite3_bind_int(st, 10, c->set_by_operator);
    sqlite3_bind_int64(st, 11, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_fail(s, err, "storing the OAuth client");
}

int store_oauth_client_get(store *s, int64_t team_id, const char *integration, oauth_client_row *out, ferr *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = stmt(s, ST_OAC_GET);
    sqlite3_bind_int64(st, 1, team_id);
    sqlite3_bind_text(st, 2, integration, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->id = dup_col(st, 0);
        out->team_id = sqlite3_column_int64(st, 1);
        out->integration = strdup(integration);
        out->client_id = dup_col(st, 2);
        out->wrapped_len = (size_t)sqlite3_column_bytes(st, 3);
        if (out->wrapped_len <= sizeof out->wrapped_key)
            memcpy(out->wrapped_key, sqlite3_column_blob(st, 3), out->wrapped_len);
        out->sealed_len = (size_t)sqlite3_column_bytes(st, 4);
        out->sealed_secret = malloc(out->sealed_len + 1);
        if (out->sealed_secret)
            memcpy(out->sealed_secret, sqlite3_column_blob(st, 4), out->sealed_len);
        out->authorize_url = dup_col(st, 5);
        out->token_url = dup_col(st, 6);
        out->set_by_operator = sqlite3_column_int(st, 7);
        out->revoke_url = dup_col(st, 8);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(s, err, "reading the OAuth client");
    return rc == SQLITE_ROW ? 0 : 1;
}

void store_oauth_client_clear(oauth_client_row *c)
{
    free(c->id);
    free(c->integration);
    free(c->client_id);
    free(c->sealed_secret);
    free(c->authorize_url);
    free(c->token_url);
    free(c->revoke_url);
    memset(c, 0, sizeof *c);
}

int store_refresh_log(store *s, const char *connection_id, const char *outcome, const char *error)
{
    sqlite3_stmt *st = stmt(s, ST_REFRESH_LOG);
    sqlite3_bind_text(st, 1, connection_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, outcome, -1, SQLITE_STATIC);
    bind_text_or_null(st, 3, error);
    sqlite3_bind_int64(st, 4, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int store_connection_set_tokens(store *s, const char *id, const store_secret *secrets, size_t n,
                                int64_t expires_at, ferr *err)
{
    if (exec_simple(s, ST_BEGIN) < 0)
        return db_fail(s, err, "begin");
    int ok = 1;
    for (size_t i = 0; ok && i < n; i++) {
        sqlite3_stmt *st = stmt(s, ST_SECRET_REPLACE);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, secrets[i].field, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, secrets[i].sealed, (int)secrets[i].len, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
    }
    if (ok) {
        sqlite3_stmt *st = stmt(s, ST_CONN_TOKENS);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (expires_at)
            sqlite3_bind_int64(st, 2, expires_at);
        sqlite3_bind_int64(st, 3, now_ms());
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
    }
    if (ok && exec_simple(s, ST_COMMIT) == 0)
        return 0;
    db_fail(s, err, "storing new tokens");
    exec_simple(s, ST_ROLLBACK);
    return -1;
}

int store_connections_expiring(store *s, int64_t before_ms, store_name_fn fn, void *ud)
{
    sqlite3_stmt *st = stmt(s, ST_CONN_EXPIRING);
    sqlite3_bind_int64(st, 1, before_ms);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(ud, (const char *)sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}
