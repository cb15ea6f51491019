/* search — GET /v1/search over synced records: the caller's words turned
 * into an FTS5 query that cannot be malformed, chunks ranked by BM25
 * (titles weigh double), one hit per record with a snippet, and only what
 * the caller may see: their team's shared connections and their own (never
 * another member's), in data categories their permissions allow (a member
 * without financial never sees a financial chunk). */
#ifndef FERRY_SEARCH_H
#define FERRY_SEARCH_H

#include <jansson.h>

#include "policy.h"
#include "providers.h"
#include "store.h"

#define SEARCH_MAX_QUERY 500
#define SEARCH_MAX_LIMIT 50

typedef struct search_request {
    const char *q;
    const char *category;       /* NULL: every category the caller may see */
    const char *integration;    /* NULL: any */
    int limit;                  /* 0 → 10; at most SEARCH_MAX_LIMIT */
} search_request;

/* {"query", "results": [{record_id, kind, external_id, title, snippet, url,
 * doc_category, integration, connection_id, updated_at, score}], "count"}.
 * bad_request for an empty or unusable query, forbidden for a category the
 * caller may not see. */
json_t *search_run(store *db, policy *pol, providers *ps, const principal *who, const search_request *req,
                   ferr *err);

/* The FTS5 query for free text: each word a quoted phrase (so nothing in
 * it is FTS5 syntax), all required; a trailing * makes a prefix search and
 * OR between two words makes either enough. NULL when there is no word
 * (malloc'd otherwise). */
char *search_fts_query(const char *text);

#endif
