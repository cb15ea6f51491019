/* schema — the subset of JSON Schema that tool inputs are written in.
 *
 * A provider's `input` schema is compiled once when the provider loads
 * (schema_compile lists every problem with it), then each call's arguments
 * are validated against it before any script runs. Unsupported keywords are
 * problems, not silently ignored, so an integrator never believes a
 * constraint holds when it does not. See docs/schema.md for the subset. */
#ifndef FERRY_SCHEMA_H
#define FERRY_SCHEMA_H

#include <jansson.h>

typedef struct schema schema;

/* Called once per problem: `path` locates it in the schema ("$.properties.limit.type"). */
typedef void (*schema_problem_fn)(void *arg, const char *path, const char *message);

/* Compiles `doc` (borrowed; the compiled schema keeps its own reference).
 * Returns NULL after reporting every problem through `problem` (may be NULL). */
schema *schema_compile(json_t *doc, schema_problem_fn problem, void *arg);
void schema_free(schema *s);

/* The document it was compiled from (borrowed). */
json_t *schema_doc(const schema *s);

typedef struct schema_error {
    char path[256];      /* where in the instance: "$", "$.customer.email", "$.items[2]" */
    char message[256];   /* e.g. "expected integer, got string" */
} schema_error;

/* 0 when `instance` is valid; -1 with the first failure in `err`. */
int schema_validate(const schema *s, const json_t *instance, schema_error *err);

/* A deep copy of `instance` with secret values replaced by "[redacted]":
 * properties the schema marks secret (writeOnly: true, format: "password",
 * "x-secret": true) and, anywhere, keys whose names look like credentials
 * (password, secret, token, api_key, apikey, authorization, ...).
 * New reference; `s` may be NULL (name heuristics only). */
json_t *schema_redact(const schema *s, const json_t *instance);

#endif
