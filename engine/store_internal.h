/* store_internal — what the store's own files share (store.c, store_sync.c,
 * store_mcp.c), never other modules: the database handle and statements
 * prepared on first use and kept. */
#ifndef FERRY_STORE_INTERNAL_H
#define FERRY_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store.h"

typedef struct store_sync_stmts store_sync_stmts;

sqlite3 *store_sqlite(store *s);
/* Where store_sync.c keeps its prepared statements. */
store_sync_stmts **store_sync_slot(store *s);
/* Finalizes them (store_close). */
void store_sync_release(store *s);
/* Deletes a connection's records, chunks, jobs, leases, runs and cursors,
 * inside the caller's transaction. 0 or -1. */
int store_sync_forget_connection(store *s, const char *connection_id);

#define STORE_EXTRA_SLOTS 64
/* store_mcp.c's statements take slots from here. */
#define STORE_SLOTS_MCP 0

/* The statement in `slot` (prepared from `sql` the first time), reset and
 * without bindings; NULL when it does not prepare. */
sqlite3_stmt *store__stmt(store *s, int slot, const char *sql);

#endif
