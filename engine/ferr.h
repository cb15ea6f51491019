/* ferr — errors as values: a stable machine-readable code (the list in
 * API.md), a human message, optional JSON details, and the HTTP status that
 * fits. Every layer, from the C core up to the HTTP response, passes these. */
#ifndef FERRY_FERR_H
#define FERRY_FERR_H

#include <jansson.h>

typedef enum ferr_code {
    FERR_OK = 0,
    FERR_BAD_REQUEST,
    FERR_UNAUTHORIZED,
    FERR_FORBIDDEN,
    FERR_NOT_FOUND,
    FERR_UNKNOWN_TOOL,
    FERR_INVALID_ARGUMENTS,
    FERR_RATE_LIMITED,
    FERR_UPSTREAM_ERROR,
    FERR_UPSTREAM_TIMEOUT,
    FERR_UPSTREAM_RATE_LIMITED,
    FERR_EGRESS_DENIED,
    FERR_SCRIPT_ERROR,
    FERR_SCRIPT_TIMEOUT,
    FERR_SCRIPT_MEMORY,
    FERR_RECONNECT_REQUIRED,
    FERR_APPROVAL_REQUIRED,
    FERR_PAYLOAD_TOO_LARGE,
    FERR_INTERNAL,
    FERR_CODE_COUNT
} ferr_code;

typedef struct ferr {
    ferr_code code;
    int status;          /* HTTP status; 0 means ferr_code_status(code) */
    char message[512];
    json_t *details;     /* owned; NULL when there are none */
} ferr;

/* "invalid_arguments" for FERR_INVALID_ARGUMENTS; NULL for out-of-range. */
const char *ferr_code_name(ferr_code code);
/* The code named `name`, or FERR_OK when no stable code has that name. */
ferr_code ferr_code_from_name(const char *name);
/* The HTTP status that fits a code (400, 401, 403, 404, 413, 429, 5xx). */
int ferr_code_status(ferr_code code);

/* Fills `e` (code + printf-style message) and returns -1, so callers can
 * `return ferr_set(e, FERR_X, "...")`. Existing details are kept. */
int ferr_set(ferr *e, ferr_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adds one detail (steals `value`). */
void ferr_detail(ferr *e, const char *key, json_t *value);
/* The HTTP status to answer with. */
int ferr_status(const ferr *e);
/* {"error":{"code","message","details"?}} — new reference. */
json_t *ferr_to_json(const ferr *e);
/* Moves `src` into `dst` (dst's old details are released). */
void ferr_move(ferr *dst, ferr *src);
void ferr_clear(ferr *e);

#endif
