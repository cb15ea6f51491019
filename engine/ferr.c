#include "ferr.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jsonfmt.h"

static const struct {
    const char *name;
    int status;
} codes[FERR_CODE_COUNT] = {
    [FERR_OK] = {"ok", 200},
    [FERR_BAD_REQUEST] = {"bad_request", 400},
    [FERR_UNAUTHORIZED] = {"unauthorized", 401},
    [FERR_FORBIDDEN] = {"forbidden", 403},
    [FERR_NOT_FOUND] = {"not_found", 404},
    [FERR_UNKNOWN_TOOL] = {"unknown_tool", 404},
    [FERR_INVALID_ARGUMENTS] = {"invalid_arguments", 400},
    [FERR_RATE_LIMITED] = {"rate_limited", 429},
    [FERR_UPSTREAM_ERROR] = {"upstream_error", 502},
    [FERR_UPSTREAM_TIMEOUT] = {"upstream_timeout", 504},
    /* The caller should back off too, so it is a 429 like ours. */
    [FERR_UPSTREAM_RATE_LIMITED] = {"upstream_rate_limited", 429},
    /* A provider reaching an undeclared host is the provider's fault. */
    [FERR_EGRESS_DENIED] = {"egress_denied", 500},
    [FERR_SCRIPT_ERROR] = {"script_error", 500},
    [FERR_SCRIPT_TIMEOUT] = {"script_timeout", 500},
    [FERR_SCRIPT_MEMORY] = {"script_memory", 500},
    /* Not 401: that would read as "your ferry API key is bad". */
    [FERR_RECONNECT_REQUIRED] = {"reconnect_required", 409},
    [FERR_APPROVAL_REQUIRED] = {"approval_required", 403},
    [FERR_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413},
    [FERR_INTERNAL] = {"internal", 500},
};

const char *ferr_code_name(ferr_code code)
{
    if ((int)code < 0 || code >= FERR_CODE_COUNT)
        return NULL;
    return codes[code].name;
}

ferr_code ferr_code_from_name(const char *name)
{
    if (!name)
        return FERR_OK;
    for (int i = 1; i < FERR_CODE_COUNT; i++)
        if (strcmp(codes[i].name, name) == 0)
            return (ferr_code)i;
    return FERR_OK;
}

int ferr_code_status(ferr_code code)
{
    if ((int)code < 0 || code >= FERR_CODE_COUNT)
        return 500;
    return codes[code].status;
}

int ferr_set(ferr *e, ferr_code code, const char *fmt, ...)
{
    if (!e)
        return -1;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    /* A cut message must not end inside a UTF-8 sequence. */
    if (n >= (int)sizeof e->message) {
        size_t len = strlen(e->message);
        e->message[jsonfmt_utf8_cut(e->message, len)] = 0;
    }
    return -1;
}

void ferr_detail(ferr *e, const char *key, json_t *value)
{
    if (!e || !value) {
        json_decref(value);
        return;
    }
    if (!e->details)
        e->details = json_object();
    json_object_set_new(e->details, key, value);
}

int ferr_status(const ferr *e)
{
    return e->status ? e->status : ferr_code_status(e->code);
}

json_t *ferr_to_json(const ferr *e)
{
    json_t *err = json_pack("{s:s, s:o}", "code",
                            ferr_code_name(e->code) ? ferr_code_name(e->code) : "internal",
                            "message", jsonfmt_string(e->message, strlen(e->message)));
    if (e->details)
        json_object_set(err, "details", e->details);
    return json_pack("{s:o}", "error", err);
}

void ferr_move(ferr *dst, ferr *src)
{
    json_decref(dst->details);
    *dst = *src;
    memset(src, 0, sizeof *src);
}

void ferr_clear(ferr *e)
{
    json_decref(e->details);
    memset(e, 0, sizeof *e);
}
