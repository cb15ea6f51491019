#include "mcpc_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

/* Legacy (handshake) revisions, newest first. */
static const char *const legacy_versions[] = {"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", NULL};

/* JavaScript's safe integers: what x-mcp-header integers must stay within. */
#define SAFE_INTEGER 9007199254740991LL

int mcpc_proto_is_legacy(const char *version)
{
    for (int i = 0; version && legacy_versions[i]; i++)
        if (strcmp(version, legacy_versions[i]) == 0)
            return 1;
    return 0;
}

static void say(char *why, size_t cap, const char *text)
{
    if (why && cap)
        snprintf(why, cap, "%s", text);
}

static int is_id(const json_t *id) { return json_is_string(id) || json_is_integer(id); }

mcpc_msg_kind mcpc_proto_classify(const json_t *m, char *why, size_t cap)
{
    if (json_is_array(m))
        return MCPC_MSG_BATCH;
    if (!json_is_object(m)) {
        say(why, cap, "a message must be a JSON object");
        return MCPC_MSG_INVALID;
    }
    const char *v = json_string_value(json_object_get(m, "jsonrpc"));
    if (!v || strcmp(v, "2.0") != 0) {
        say(why, cap, "jsonrpc must be \"2.0\"");
        return MCPC_MSG_INVALID;
    }
    json_t *id = json_object_get(m, "id");
    json_t *method = json_object_get(m, "method");
    if (method) {
        if (!json_is_string(method)) {
            say(why, cap, "method must be a string");
            return MCPC_MSG_INVALID;
        }
        json_t *params = json_object_get(m, "params");
        if (params && !json_is_object(params)) {
            say(why, cap, "params must be an object");
            return MCPC_MSG_INVALID;
        }
        if (!id)
            return MCPC_MSG_NOTIFICATION;
        if (!is_id(id)) {
            say(why, cap, "a request's id must be a string or an integer");
            return MCPC_MSG_INVALID;
        }
        return MCPC_MSG_REQUEST;
    }
    json_t *result = json_object_get(m, "result"), *error = json_object_get(m, "error");
    if (result && error) {
        say(why, cap, "a response has result or error, not both");
        return MCPC_MSG_INVALID;
    }
    if (error) {
        if (!json_is_object(error) || !json_is_integer(json_object_get(error, "code")) ||
            !json_is_string(json_object_get(error, "message"))) {
            say(why, cap, "an error needs an integer code and a string message");
            return MCPC_MSG_INVALID;
        }
        if (id && !json_is_null(id) && !is_id(id)) {
            say(why, cap, "a response's id must be a string or an integer");
            return MCPC_MSG_INVALID;
        }
        return MCPC_MSG_ERROR;
    }
    if (result) {
        if (!is_id(id)) {
            say(why, cap, "a result needs the id of its request");
            return MCPC_MSG_INVALID;
        }
        if (!json_is_object(result)) {
            say(why, cap, "a result must be an object");
            return MCPC_MSG_INVALID;
        }
        return MCPC_MSG_RESULT;
    }
    say(why, cap, "neither a request, a notification nor a response");
    return MCPC_MSG_INVALID;
}

json_int_t mcpc_proto_id(const json_t *m)
{
    json_t *id = json_object_get(m, "id");
    return json_is_integer(id) && json_integer_value(id) >= 0 ? json_integer_value(id) : -1;
}

static json_t *client_info(void) { return json_pack("{s:s, s:s}", "name", "ferry", "version", FERRY_VERSION); }

json_t *mcpc_proto_request(json_int_t id, const char *method, json_t *params, const char *modern)
{
    if (!params)
        params = json_object();
    if (modern) {
        json_t *meta = json_object_get(params, "_meta");
        if (!json_is_object(meta)) {
            meta = json_object();
            json_object_set_new(params, "_meta", meta);
        }
        json_object_set_new(meta, "io.modelcontextprotocol/protocolVersion", json_string(modern));
        json_object_set_new(meta, "io.modelcontextprotocol/clientInfo", client_info());
        /* ferry fulfils no server requests (sampling, elicitation, roots). */
        json_object_set_new(meta, "io.modelcontextprotocol/clientCapabilities", json_object());
    }
    return json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id", (json_int_t)id, "method", method, "params",
                     params);
}

json_t *mcpc_proto_notification(const char *method, json_t *params)
{
    json_t *n = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", method);
    if (params)
        json_object_set_new(n, "params", params);
    return n;
}

json_t *mcpc_proto_result(json_t *id, json_t *result)
{
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result ? result : json_object());
}

json_t *mcpc_proto_error(json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code", code, "message",
                     message);
}

json_t *mcpc_proto_initialize_params(const char *version)
{
    return json_pack("{s:s, s:{}, s:o}", "protocolVersion", version, "capabilities", "clientInfo", client_info());
}

int mcpc_proto_is_modern_error(const json_t *error)
{
    json_int_t code = json_integer_value(json_object_get(error, "code"));
    if (code == MCPC_UNSUPPORTED_VERSION)
        return json_is_array(json_object_get(json_object_get(error, "data"), "supported"));
    return code == MCPC_HEADER_MISMATCH || code == MCPC_MISSING_CAPABILITY;
}

const char *mcpc_proto_pick_version(const json_t *error)
{
    json_t *supported = json_object_get(json_object_get(error, "data"), "supported");
    size_t i;
    json_t *v;
    json_array_foreach(supported, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), MCPC_MODERN_VERSION) == 0)
            return MCPC_MODERN_VERSION;
    }
    for (int k = 0; legacy_versions[k]; k++)
        json_array_foreach(supported, i, v) {
            if (json_is_string(v) && strcmp(json_string_value(v), legacy_versions[k]) == 0)
                return legacy_versions[k];
        }
    return NULL;
}

/* ---- tool definitions ---- */

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

typedef struct header_walk {
    json_t *found;      /* [{path, name, type}] */
    char *why;
    size_t cap;
    int bad;
} header_walk;

/* Keywords whose values are data, not schemas: an "x-mcp-header" key
 * inside them is not an annotation. */
static int is_data_keyword(const char *k)
{
    return strcmp(k, "default") == 0 || strcmp(k, "const") == 0 || strcmp(k, "enum") == 0 ||
           strcmp(k, "examples") == 0 || strcmp(k, "example") == 0;
}

static void walk_value(header_walk *w, const json_t *v, json_t *path, int reachable);

/* A schema object at `path` (a chain of properties keys while `reachable`). */
static void walk_schema(header_walk *w, const json_t *schema, json_t *path, int reachable)
{
    if (w->bad || !json_is_object(schema))
        return;
    json_t *ann = json_object_get(schema, "x-mcp-header");
    if (ann) {
        char where[160] = "";
        size_t i;
        json_t *seg;
        json_array_foreach(path, i, seg) {
            size_t o = strlen(where);
            snprintf(where + o, sizeof where - o, "%s%s", o ? "." : "", json_string_value(seg));
        }
        const char *name = json_string_value(ann);
        const char *type = json_string_value(json_object_get(schema, "type"));
        if (!reachable || json_array_size(path) == 0) {
            snprintf(w->why, w->cap, "x-mcp-header is only allowed on properties reached through properties alone");
            w->bad = 1;
            return;
        }
        if (!name || !*name) {
            snprintf(w->why, w->cap, "x-mcp-header of %s must be a non-empty string", where);
            w->bad = 1;
            return;
        }
        for (const char *c = name; *c; c++)
            if (!is_tchar((unsigned char)*c)) {
                snprintf(w->why, w->cap, "x-mcp-header of %s is not an HTTP field-name token", where);
                w->bad = 1;
                return;
            }
        if (!type || (strcmp(type, "string") != 0 && strcmp(type, "integer") != 0 && strcmp(type, "boolean") != 0)) {
            snprintf(w->why, w->cap, "x-mcp-header of %s needs a property of type string, integer or boolean", where);
            w->bad = 1;
            return;
        }
        json_t *f;
        json_array_foreach(w->found, i, f) {
            if (strcasecmp(json_string_value(json_object_get(f, "name")), name) == 0) {
                snprintf(w->why, w->cap, "x-mcp-header '%s' is used twice", name);
                w->bad = 1;
                return;
            }
        }
        json_array_append_new(w->found, json_pack("{s:O, s:s, s:s}", "path", path, "name", name, "type", type));
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)schema, k, v) {
        if (strcmp(k, "x-mcp-header") == 0 || is_data_keyword(k))
            continue;
        if (strcmp(k, "properties") == 0 && json_is_object(v)) {
            const char *pname;
            json_t *sub;
            json_object_foreach(v, pname, sub) {
                json_t *p = json_copy(path);
                json_array_append_new(p, json_string(pname));
                walk_schema(w, sub, p, reachable);
                json_decref(p);
            }
        } else {
            walk_value(w, v, path, 0);
        }
    }
}

/* Anything under another keyword (items, anyOf, $defs...): schemas found
 * there are not statically reachable. */
static void walk_value(header_walk *w, const json_t *v, json_t *path, int reachable)
{
    if (json_is_object(v)) {
        walk_schema(w, v, path, reachable);
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item) walk_value(w, item, path, reachable);
    }
}

int mcpc_proto_check_tool(const json_t *tool, int check_headers, char *why, size_t cap)
{
    if (!json_is_object(tool)) {
        say(why, cap, "a tool must be an object");
        return -1;
    }
    const char *name = json_string_value(json_object_get(tool, "name"));
    if (!name || !*name || strlen(name) > 128) {
        say(why, cap, "a tool needs a name of 1 to 128 characters");
        return -1;
    }
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        if (*c < 0x20 || *c == 0x7f) {
            say(why, cap, "a tool name must not contain control characters");
            return -1;
        }
    json_t *desc = json_object_get(tool, "description");
    if (desc && !json_is_string(desc)) {
        say(why, cap, "description must be a string");
        return -1;
    }
    json_t *schema = json_object_get(tool, "inputSchema");
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (!json_is_object(schema) || !type || strcmp(type, "object") != 0) {
        say(why, cap, "inputSchema must be a JSON Schema object with \"type\": \"object\"");
        return -1;
    }
    json_t *out = json_object_get(tool, "outputSchema");
    if (out && !json_is_object(out)) {
        say(why, cap, "outputSchema must be an object");
        return -1;
    }
    json_t *ann = json_object_get(tool, "annotations");
    if (ann && !json_is_object(ann)) {
        say(why, cap, "annotations must be an object");
        return -1;
    }
    if (check_headers) {
        char reason[200] = "";
        header_walk w = {.found = json_array(), .why = reason, .cap = sizeof reason};
        json_t *root = json_array();
        walk_schema(&w, schema, root, 1);
        json_decref(root);
        json_decref(w.found);
        if (w.bad) {
            say(why, cap, reason);
            return -1;
        }
    }
    return 0;
}

json_t *mcpc_proto_param_headers(const json_t *input_schema)
{
    char reason[200];
    header_walk w = {.found = json_array(), .why = reason, .cap = sizeof reason};
    json_t *root = json_array();
    walk_schema(&w, input_schema, root, 1);
    json_decref(root);
    if (w.bad)
        json_array_clear(w.found);
    return w.found;
}

char *mcpc_proto_header_value(const char *value, size_t len)
{
    int plain = 1;
    for (size_t i = 0; i < len && plain; i++) {
        unsigned char c = (unsigned char)value[i];
        if (!(c == '\t' || (c >= 0x20 && c <= 0x7e)))
            plain = 0;
    }
    if (plain && len && (value[0] == ' ' || value[0] == '\t' || value[len - 1] == ' ' || value[len - 1] == '\t'))
        plain = 0;
    /* A plain value that looks like the sentinel is encoded too. */
    if (plain && len >= 11 && strncmp(value, "=?base64?", 9) == 0 && strncmp(value + len - 2, "?=", 2) == 0)
        plain = 0;
    if (plain)
        return strndup(value, len);
    size_t enc = 4 * ((len + 2) / 3);
    char *out = malloc(9 + enc + 2 + 1);
    if (!out)
        return NULL;
    memcpy(out, "=?base64?", 9);
    EVP_EncodeBlock((unsigned char *)out + 9, (const unsigned char *)value, (int)len);
    memcpy(out + 9 + enc, "?=", 3);
    return out;
}

int mcpc_proto_add_param_headers(struct curl_slist **h, const json_t *param_headers, const json_t *args, char *why,
                                 size_t cap)
{
    size_t i;
    json_t *ph;
    json_array_foreach(param_headers, i, ph) {
        const json_t *v = args;
        size_t k;
        json_t *seg;
        json_array_foreach(json_object_get(ph, "path"), k, seg) {
            v = json_is_object(v) ? json_object_get(v, json_string_value(seg)) : NULL;
        }
        char text[64];
        const char *s = NULL;
        size_t len = 0;
        if (json_is_string(v)) {
            s = json_string_value(v);
            len = json_string_length(v);
        } else if (json_is_integer(v)) {
            json_int_t n = json_integer_value(v);
            if (n > SAFE_INTEGER || n < -SAFE_INTEGER) {
                if (why)
                    snprintf(why, cap, "the value for header Mcp-Param-%s is outside the safe integer range",
                             json_string_value(json_object_get(ph, "name")));
                return -1;
            }
            snprintf(text, sizeof text, "%lld", (long long)n);
            s = text;
            len = strlen(text);
        } else if (json_is_boolean(v)) {
            s = json_is_true(v) ? "true" : "false";
            len = strlen(s);
        }
        if (!s)
            continue;   /* absent, null, or not the annotated type: no header */
        char *enc = mcpc_proto_header_value(s, len);
        if (!enc)
            return -1;
        size_t n = strlen(enc) + 128;
        char *line = malloc(n);
        if (line) {
            snprintf(line, n, "Mcp-Param-%s: %s", json_string_value(json_object_get(ph, "name")), enc);
            *h = curl_slist_append(*h, line);
        }
        free(line);
        free(enc);
    }
    return 0;
}

int mcpc_proto_is_read_only(const json_t *tool)
{
    return json_is_true(json_object_get(json_object_get(tool, "annotations"), "readOnlyHint"));
}

int mcpc_proto_call_result(const json_t *result, json_t **out, char *why, size_t cap)
{
    *out = NULL;
    json_t *rt = json_object_get(result, "resultType");
    /* Earlier revisions have no resultType: their results are complete. */
    if (rt && (!json_is_string(rt) || strcmp(json_string_value(rt), "complete") != 0)) {
        if (json_is_string(rt) && strcmp(json_string_value(rt), "input_required") == 0)
            say(why, cap, "the server needs input from the client (elicitation, sampling or roots), which ferry does "
                          "not provide");
        else
            say(why, cap, "the result has a resultType ferry does not know");
        return -1;
    }
    json_t *content = json_object_get(result, "content");
    if (!json_is_array(content)) {
        say(why, cap, "a tool result must have a content array");
        return -1;
    }
    json_t *is_error = json_object_get(result, "isError");
    if (is_error && !json_is_boolean(is_error)) {
        say(why, cap, "isError must be a boolean");
        return -1;
    }
    *out = json_pack("{s:O, s:b}", "content", content, "isError", json_is_true(is_error));
    json_t *sc = json_object_get(result, "structuredContent");
    if (sc)
        json_object_set(*out, "structuredContent", sc);
    return 0;
}
