#include "jsonrpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jsonfmt.h"

static int fail(jsonrpc_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(jsonrpc_error *err, int code, const char *fmt, ...)
{
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof err->message)
        err->message[jsonfmt_utf8_cut(err->message, strlen(err->message))] = 0;
    return -1;
}

int jsonrpc_id_valid(const json_t *id)
{
    return json_is_string(id) || json_is_integer(id);
}

void jsonrpc_msg_clear(jsonrpc_msg *m)
{
    json_decref(m->doc);
    memset(m, 0, sizeof *m);
}

void jsonrpc_error_clear(jsonrpc_error *e)
{
    json_decref(e->doc);
    memset(e, 0, sizeof *e);
}

/* A response's error member: {code: integer, message: string, data?}. */
static int valid_error_member(const json_t *e)
{
    return json_is_object(e) && json_is_integer(json_object_get(e, "code")) &&
           json_is_string(json_object_get(e, "message"));
}

int jsonrpc_parse(const char *text, size_t len, jsonrpc_msg *out, jsonrpc_error *err)
{
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!doc)
        return fail(err, JSONRPC_PARSE_ERROR, "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                    jerr.column);
    if (json_is_array(doc)) {
        err->is_batch = 1;
        json_decref(doc);
        return fail(err, JSONRPC_INVALID_REQUEST, "a batch (JSON array) where one message was expected");
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        return fail(err, JSONRPC_INVALID_REQUEST, "a JSON-RPC message is a JSON object");
    }
    err->doc = doc;
    json_t *id = json_object_get(doc, "id");
    if (jsonrpc_id_valid(id))
        err->id = id;   /* an answer to an invalid request still names it when it can */

    json_t *version = json_object_get(doc, "jsonrpc");
    if (!json_is_string(version) || strcmp(json_string_value(version), "2.0") != 0)
        return fail(err, JSONRPC_INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\"");
    if (id && !jsonrpc_id_valid(id))
        return fail(err, JSONRPC_INVALID_REQUEST, "\"id\" must be a string or an integer");

    json_t *method = json_object_get(doc, "method");
    if (method) {
        if (!json_is_string(method))
            return fail(err, JSONRPC_INVALID_REQUEST, "\"method\" must be a string");
        json_t *params = json_object_get(doc, "params");
        if (params && !json_is_object(params) && !json_is_array(params))
            return fail(err, JSONRPC_INVALID_REQUEST, "\"params\" must be an object or an array");
        if (json_object_get(doc, "result") || json_object_get(doc, "error"))
            return fail(err, JSONRPC_INVALID_REQUEST, "a request has no \"result\" or \"error\"");
        out->kind = id ? JSONRPC_REQUEST : JSONRPC_NOTIFICATION;
        out->method = json_string_value(method);
        out->params = params;
    } else {
        json_t *result = json_object_get(doc, "result");
        json_t *error = json_object_get(doc, "error");
        if (!result && !error)
            return fail(err, JSONRPC_INVALID_REQUEST, "neither a request (\"method\") nor a response (\"result\" or \"error\")");
        if (result && error)
            return fail(err, JSONRPC_INVALID_REQUEST, "a response has \"result\" or \"error\", not both");
        if (error && !valid_error_member(error))
            return fail(err, JSONRPC_INVALID_REQUEST, "\"error\" must be an object with an integer code and a message");
        if (!id && result)
            return fail(err, JSONRPC_INVALID_REQUEST, "a result needs the \"id\" of its request");
        out->kind = JSONRPC_RESPONSE;
        out->result = result;
        out->error = error;
    }
    out->doc = doc;
    out->id = id;
    err->doc = NULL;
    err->id = NULL;
    return 0;
}

json_t *jsonrpc_result(json_t *id, json_t *result)
{
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result ? result : json_object());
}

json_t *jsonrpc_error_response(json_t *id, int code, const char *message, json_t *data)
{
    json_t *error = json_pack("{s:i, s:o}", "code", code, "message", jsonfmt_string(message, strlen(message)));
    if (data)
        json_object_set_new(error, "data", data);
    json_t *msg = json_pack("{s:s, s:o}", "jsonrpc", "2.0", "error", error);
    if (id)
        json_object_set(msg, "id", id);
    return msg;
}

json_t *jsonrpc_request(json_t *id, const char *method, json_t *params)
{
    json_t *msg = json_pack("{s:s, s:O, s:s}", "jsonrpc", "2.0", "id", id, "method", method);
    if (params)
        json_object_set_new(msg, "params", params);
    return msg;
}

json_t *jsonrpc_notification(const char *method, json_t *params)
{
    json_t *msg = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", method);
    if (params)
        json_object_set_new(msg, "params", params);
    return msg;
}
