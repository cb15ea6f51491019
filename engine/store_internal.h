/* store_internal — what the store's own files share (store.c and
 * store_sync.c); no other module includes it. */
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

#endif
