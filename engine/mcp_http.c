#include "mcp_http.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#define MAX_DEPTH 32
/* Header names have to end somewhere; Mcp-Param-{name} stays well under 128. */
#define MAX_NAME 100

/* ---- header values ---- */

static int is_ows(char c) { return c == ' ' || c == '\t'; }

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* Strict Base64 (RFC 4648 §4): whole quanta, padding only at the end. The
 * decoding itself is OpenSSL's; the checks are what it lets through. */
static char *b64_decode(const char *s, size_t n, size_t *len)
{
    if (n % 4 != 0)
        return NULL;
    size_t pad = 0;
    while (pad < 2 && pad < n && s[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (!is_b64(s[i]))
            return NULL;
    unsigned char *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return NULL;
    int got = n ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : 0;
    if (got < 0 || (size_t)got < pad) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    *len = (size_t)got - pad;
    out[*len] = 0;
    return (char *)out;
}

char *mcp_header_decode(const char *raw, size_t *len)
{
    size_t dummy;
    if (!len)
        len = &dummy;
    if (!raw)
        return NULL;
    while (is_ows(*raw))
        raw++;
    size_t n = strlen(raw);
    while (n && is_ows(raw[n - 1]))
        n--;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)raw[i];
        if (!(c == '\t' || (c >= 0x20 && c <= 0x7e)))
            return NULL;
    }
    static const char open[] = "=?base64?", close[] = "?=";
    size_t lo = sizeof open - 1, lc = sizeof close - 1;
    if (n >= lo + lc && memcmp(raw, open, lo) == 0 && memcmp(raw + n - lc, close, lc) == 0)
        return b64_decode(raw + lo, n - lo - lc, len);
    char *out = strndup(raw, n);
    if (out)
        *len = n;
    return out;
}

/* ---- x-mcp-header annotations ---- */

typedef struct reader {
    mcp_param_header *items;
    size_t n;
    const char *path[MAX_DEPTH];
    size_t depth;
    char *why;
    size_t why_len;
    int failed;
} reader;

static void problem(reader *rd, const char *fmt, const char *arg)
{
    if (rd->failed)
        return;
    rd->failed = 1;
    snprintf(rd->why, rd->why_len, fmt, arg);
}

/* RFC 9110 §5.6.2 tchar. */
static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return 0;
    return 1;
}

static void declare(reader *rd, const json_t *node, const json_t *value)
{
    const char *where = rd->depth ? rd->path[rd->depth - 1] : "(root)";
    if (!json_is_string(value) || !is_token(json_string_value(value)) || json_string_length(value) > MAX_NAME) {
        problem(rd, "x-mcp-header on '%s' must be a non-empty HTTP token (at most 100 characters)", where);
        return;
    }
    const char *name = json_string_value(value);
    const char *type = json_string_value(json_object_get(node, "type"));
    mcp_param_type t;
    if (type && strcmp(type, "string") == 0)
        t = MCP_PARAM_STRING;
    else if (type && strcmp(type, "integer") == 0)
        t = MCP_PARAM_INTEGER;
    else if (type && strcmp(type, "boolean") == 0)
        t = MCP_PARAM_BOOLEAN;
    else {
        problem(rd, "x-mcp-header on '%s' needs type string, integer or boolean", where);
        return;
    }
    for (size_t i = 0; i < rd->n; i++)
        if (strcasecmp(rd->items[i].name, name) == 0) {
            problem(rd, "x-mcp-header '%s' is declared twice (names are compared without case)", name);
            return;
        }
    mcp_param_header *grown = realloc(rd->items, (rd->n + 1) * sizeof *grown);
    if (!grown) {
        problem(rd, "%s", "out of memory");
        return;
    }
    rd->items = grown;
    mcp_param_header *h = &rd->items[rd->n++];
    h->name = strdup(name);
    h->type = t;
    h->depth = rd->depth;
    h->path = calloc(rd->depth ? rd->depth : 1, sizeof *h->path);
    for (size_t i = 0; h->path && i < rd->depth; i++)
        h->path[i] = strdup(rd->path[i]);
}

static void walk_any(reader *rd, const json_t *v);

/* A schema node; `reachable`: the chain from the root to it is made of
 * `properties` keys alone (where an annotation may sit). */
static void walk_schema(reader *rd, const json_t *node, int reachable)
{
    if (!json_is_object(node) || rd->failed)
        return;
    json_t *mark = json_object_get(node, "x-mcp-header");
    if (mark) {
        if (!reachable || rd->depth == 0)
            problem(rd, "x-mcp-header under '%s' is not on a property reached from the root through "
                        "properties alone", rd->depth ? rd->path[rd->depth - 1] : "(root)");
        else
            declare(rd, node, mark);
    }
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)node, key, value) {
        if (strcmp(key, "x-mcp-header") == 0)
            continue;
        /* Values, not schemas: an object in them is data. */
        if (strcmp(key, "enum") == 0 || strcmp(key, "const") == 0 || strcmp(key, "default") == 0 ||
            strcmp(key, "examples") == 0 || strcmp(key, "example") == 0)
            continue;
        if (strcmp(key, "properties") == 0 && json_is_object(value)) {
            const char *prop;
            json_t *sub;
            json_object_foreach(value, prop, sub) {
                if (rd->depth == MAX_DEPTH) {
                    problem(rd, "%s", "the schema nests properties too deeply");
                    return;
                }
                rd->path[rd->depth++] = prop;
                walk_schema(rd, sub, reachable);
                rd->depth--;
            }
            continue;
        }
        /* Anything else (items, anyOf, $defs, ...) leaves the plain chain. */
        size_t saved = rd->depth;
        walk_any(rd, value);
        rd->depth = saved;
    }
}

static void walk_any(reader *rd, const json_t *v)
{
    if (json_is_object(v)) {
        walk_schema(rd, v, 0);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) walk_any(rd, item);
    }
}

int mcp_param_headers_read(const json_t *input_schema, mcp_param_header **out, size_t *n, char *why, size_t why_len)
{
    reader rd = {.why = why, .why_len = why_len};
    walk_schema(&rd, input_schema, 1);
    if (rd.failed) {
        mcp_param_headers_free(rd.items, rd.n);
        *out = NULL;
        *n = 0;
        return -1;
    }
    *out = rd.items;
    *n = rd.n;
    return 0;
}

void mcp_param_headers_free(mcp_param_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; h[i].path && k < h[i].depth; k++)
            free(h[i].path[k]);
        free(h[i].path);
        free(h[i].name);
    }
    free(h);
}

json_t *mcp_param_value(const mcp_param_header *h, const json_t *arguments)
{
    const json_t *v = arguments;
    for (size_t i = 0; v && i < h->depth; i++)
        v = json_is_object(v) ? json_object_get(v, h->path[i]) : NULL;
    return json_is_null(v) ? NULL : (json_t *)v;
}

int mcp_param_matches(const mcp_param_header *h, const char *header_value, size_t len, const json_t *value)
{
    (void)h;
    if (json_is_string(value))
        return len == json_string_length(value) && memcmp(header_value, json_string_value(value), len) == 0;
    if (json_is_boolean(value))
        return strcmp(header_value, json_is_true(value) ? "true" : "false") == 0 &&
               len == strlen(header_value);
    if (json_is_number(value)) {
        /* "42" and 42.0 are the same integer: compare as numbers. */
        char *end;
        if (len == 0 || strlen(header_value) != len || strspn(header_value, "0123456789+-.eE") != len)
            return 0;
        double d = strtod(header_value, &end);
        return *end == 0 && isfinite(d) && d == json_number_value(value);
    }
    return 0;
}
