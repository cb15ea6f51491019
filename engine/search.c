#include "search.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "store_sync.h"

#define MAX_TERMS 32
/* Chunks ranked per requested hit: a record with several matching chunks
 * still leaves room for others. */
#define CHUNKS_PER_HIT 4

static int has_word_char(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isalnum((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80)
            return 1;
    return 0;
}

char *search_fts_query(const char *text)
{
    size_t cap = strlen(text) * 2 + 16, n = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    int terms = 0, pending_or = 0;
    const char *p = text;
    while (*p && terms < MAX_TERMS) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char *start = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        size_t len = (size_t)(p - start);
        if (!len)
            break;
        if (len == 2 && memcmp(start, "OR", 2) == 0) {
            pending_or = terms > 0;
            continue;
        }
        int prefix = start[len - 1] == '*';
        if (prefix)
            len--;
        if (!has_word_char(start, len))
            continue;
        if (terms)
            n += (size_t)snprintf(out + n, cap - n, pending_or ? " OR " : " ");
        pending_or = 0;
        out[n++] = '"';
        for (size_t i = 0; i < len; i++) {
            if (start[i] == '"')
                out[n++] = '"';
            out[n++] = start[i];
        }
        out[n++] = '"';
        if (prefix)
            out[n++] = '*';
        out[n] = 0;
        terms++;
    }
    if (!terms) {
        free(out);
        return NULL;
    }
    return out;
}

typedef struct collect {
    json_t *results;
    int limit;
    int64_t *seen;
    size_t nseen;
} collect;

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static int add_hit(void *ud, const store_search_hit *h)
{
    collect *c = ud;
    for (size_t i = 0; i < c->nseen; i++)
        if (c->seen[i] == h->record_id)
            return 0;   /* its best chunk is listed already */
    c->seen[c->nseen++] = h->record_id;
    json_t *o = json_pack("{s:I, s:s, s:s, s:o, s:o, s:o, s:s, s:s, s:s, s:o, s:f}", "record_id",
                          (json_int_t)h->record_id, "kind", h->kind, "external_id", h->external_id, "title",
                          str_or_null(h->title), "snippet", str_or_null(h->snippet), "url", str_or_null(h->url),
                          "doc_category", h->category, "integration", h->integration, "connection_id",
                          h->connection_id, "updated_at", str_or_null(h->updated_at), "score", -h->score);
    json_array_append_new(c->results, o);
    return (int)json_array_size(c->results) >= c->limit;
}

json_t *search_run(store *db, policy *pol, providers *ps, const principal *who, const search_request *req,
                   ferr *err)
{
    if (!req->q || !*req->q)
        return ferr_set(err, FERR_BAD_REQUEST, "q is required: the words to search for"), NULL;
    if (strlen(req->q) > SEARCH_MAX_QUERY)
        return ferr_set(err, FERR_BAD_REQUEST, "q is longer than %d characters", SEARCH_MAX_QUERY), NULL;
    int limit = req->limit ? req->limit : 10;
    if (limit < 1 || limit > SEARCH_MAX_LIMIT)
        return ferr_set(err, FERR_BAD_REQUEST, "limit must be between 1 and %d", SEARCH_MAX_LIMIT), NULL;

    /* The categories the caller may see, among those syncs write. */
    json_t *cats = json_array();
    if (req->category) {
        if (!policy_allowed(pol, who, req->category)) {
            json_decref(cats);
            ferr_set(err, FERR_FORBIDDEN, "you may not see %s data", req->category);
            ferr_detail(err, "category", json_string(req->category));
            return NULL;
        }
        json_array_append_new(cats, json_string(req->category));
    } else {
        for (size_t i = 0; i < providers_count(ps); i++) {
            provider *p = providers_at(ps, i);
            for (size_t k = 0; k < p->nsyncs; k++) {
                const char *c = p->syncs[k].category;
                int dup = 0;
                size_t j;
                json_t *v;
                json_array_foreach(cats, j, v) if (strcmp(json_string_value(v), c) == 0) dup = 1;
                if (!dup && policy_allowed(pol, who, c))
                    json_array_append_new(cats, json_string(c));
            }
        }
    }
    json_t *out = json_pack("{s:s, s:[]}", "query", req->q, "results");
    char *match = search_fts_query(req->q);
    if (!match) {
        json_decref(cats);
        json_decref(out);
        return ferr_set(err, FERR_BAD_REQUEST, "q has no word to search for"), NULL;
    }
    char *cats_text = json_dumps(cats, JSON_COMPACT);
    json_decref(cats);
    collect c = {.results = json_object_get(out, "results"), .limit = limit,
                 .seen = calloc((size_t)limit * CHUNKS_PER_HIT + 1, sizeof(int64_t))};
    store_search_query q = {.match = match, .team_id = who->team_id, .user_id = who->user_id,
                            .categories = cats_text, .category = req->category, .integration = req->integration,
                            .limit = limit * CHUNKS_PER_HIT};
    int rc = c.seen && cats_text ? store_search(db, &q, add_hit, &c, err)
                                 : ferr_set(err, FERR_INTERNAL, "out of memory");
    free(c.seen);
    free(cats_text);
    free(match);
    if (rc < 0) {
        json_decref(out);
        return NULL;
    }
    json_object_set_new(out, "count", json_integer((json_int_t)json_array_size(c.results)));
    return out;
}
