/* store_internal — what the store's own files share (store_mcp.c), never
 * other modules: the database handle and statements prepared on first use
 * and kept, by slot (each file owns a range of slots). */
#ifndef FERRY_STORE_INTERNAL_H
#define FERRY_STORE_INTERNAL_H

#include <sqlite3.h>

#include "store.h"

#define STORE_EXTRA_SLOTS 64
/* store_mcp.c's statements take slots from here. */
#define STORE_SLOTS_MCP 0

/* The statement in `slot` (prepared from `sql` the first time), reset and
 * without bindings; NULL when it does not prepare. */
sqlite3_stmt *store__stmt(store *s, int slot, const char *sql);
sqlite3 *store__db(store *s);

#endif
