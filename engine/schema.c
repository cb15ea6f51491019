/* schema — the JSON Schema subset that tool inputs are written in.
 *
 * Owns four things: the shape check of a schema document (schema_compile
 * reports every problem, each with a path into the document), the compiled
 * form (a reference to the document plus one regex_t per "pattern"),
 * validation of an instance (the first failure, with a path into the
 * instance), and redaction of secret values before anything is logged.
 *
 * The validator walks the JSON document itself rather than a translated
 * tree: compile has proved every keyword well-formed, so validation trusts
 * the shapes it reads. That is why the document must not be modified after
 * schema_compile, and why a compiled regex is found by the address of the
 * "pattern" string it came from. */
#include "schema.h"

#include <ctype.h>
#include <math.h> /* isfinite only, a macro: no -lm needed */
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHEMA_PATH_MAX 512
/* $ref hops allowed without descending into the instance. A legitimate
 * recursive schema (a tree, a linked list) moves one level down the instance
 * between hops, so only a cycle that never consumes input gets this deep. */
#define SCHEMA_REF_HOPS_MAX 64
#define SCHEMA_REDACTED "[redacted]"

typedef struct schema_pattern {
    const json_t *source; /* the "pattern" string inside the document */
    regex_t re;
} schema_pattern;

struct schema {
    json_t *doc; /* own reference */
    schema_pattern *patterns;
    size_t npatterns, cap;
};

/* ------------------------------------------------------------------ */
/* Paths: "$", "$.properties.limit", "$.items[2]", "$[\"a b\"]".       */

typedef struct spath {
    char buf[SCHEMA_PATH_MAX];
    size_t len;
} spath;

static void spath_init(spath *p)
{
    strcpy(p->buf, "$");
    p->len = 1;
}

/* Appends what fits; a path too long to show whole is cut, never overrun. */
static void spath_putc(spath *p, char ch)
{
    if (p->len + 1 >= sizeof p->buf)
        return;
    p->buf[p->len++] = ch;
    p->buf[p->len] = '\0';
}

static void spath_puts(spath *p, const char *s)
{
    while (*s)
        spath_putc(p, *s++);
}

static void spath_restore(spath *p, size_t mark)
{
    p->len = mark;
    p->buf[mark] = '\0';
}

/* Keys that read unambiguously after a dot; others get the ["..."] form. */
static bool key_is_simple(const char *key)
{
    unsigned char ch = (unsigned char)*key;
    if (!isalpha(ch) && ch != '_' && ch != '$')
        return false;
    for (key++; *key; key++) {
        ch = (unsigned char)*key;
        if (!isalnum(ch) && ch != '_' && ch != '$' && ch != '-')
            return false;
    }
    return true;
}

/* Appends `key` and returns the length to restore afterwards. */
static size_t spath_key(spath *p, const char *key)
{
    size_t mark = p->len;
    if (key_is_simple(key)) {
        spath_putc(p, '.');
        spath_puts(p, key);
        return mark;
    }
    spath_puts(p, "[\"");
    for (; *key; key++) {
        unsigned char ch = (unsigned char)*key;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            spath_putc(p, '\\');
            spath_putc(p, (char)ch);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            spath_puts(p, esc);
        } else {
            spath_putc(p, (char)ch);
        }
    }
    spath_puts(p, "\"]");
    return mark;
}

static size_t spath_index(spath *p, size_t index)
{
    size_t mark = p->len;
    char buf[32];
    snprintf(buf, sizeof buf, "[%zu]", index);
    spath_puts(p, buf);
    return mark;
}

/* ------------------------------------------------------------------ */
/* Small helpers shared by compile, validate and redact.               */

static bool real_is_integral(double d)
{
    /* Every double this large is an integer; below it the cast is exact. */
    if (d >= 9007199254740992.0 || d <= -9007199254740992.0)
        return true;
    return d == (double)(long long)d;
}

static bool json_is_nonneg_integral(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v) >= 0;
    return json_is_real(v) && json_real_value(v) >= 0 &&
           real_is_integral(json_real_value(v));
}

/* The definition `ref` names in `root`, or NULL. Only "#/definitions/NAME"
 * and "#/$defs/NAME" are understood (`*supported` says whether `ref` had
 * that form); NAME may use the JSON Pointer escapes ~0 and ~1. */
static const json_t *ref_resolve(const json_t *root, const char *ref,
                                 bool *supported)
{
    static const char *const containers[] = {"definitions", "$defs"};
    *supported = false;
    if (!ref || strncmp(ref, "#/", 2) != 0)
        return NULL;
    for (size_t i = 0; i < sizeof containers / sizeof containers[0]; i++) {
        size_t n = strlen(containers[i]);
        const char *name = ref + 2 + n;
        if (strncmp(ref + 2, containers[i], n) != 0 || *name != '/')
            continue;
        name++;
        char decoded[256];
        size_t len = 0;
        for (; *name && len + 1 < sizeof decoded; name++) {
            if (*name == '/')
                return NULL; /* a path deeper than one definition */
            if (*name == '~') {
                name++;
                if (*name != '0' && *name != '1')
                    return NULL;
                decoded[len++] = *name == '0' ? '~' : '/';
            } else {
                decoded[len++] = *name;
            }
        }
        if (*name || len == 0)
            return NULL;
        decoded[len] = '\0';
        *supported = true;
        return json_object_get(json_object_get(root, containers[i]), decoded);
    }
    return NULL;
}

static void copy_truncated(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* Compile: check the shape of every keyword, compile every pattern.   */

typedef struct compiler {
    schema *s;
    schema_problem_fn problem;
    void *arg;
    spath path;
    int problems;
} compiler;

static void compile_problem(compiler *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void compile_problem(compiler *c, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    c->problems++;
    if (c->problem)
        c->problem(c->arg, c->path.buf, message);
}

static void compile_schema(compiler *c, json_t *node);

/* Each keyword's shape check; `parent` is the schema object holding it. */
typedef void (*keyword_check)(compiler *c, const json_t *parent,
                              const char *key, json_t *value);

static const char *const type_names[] = {
    "object", "array", "string", "number", "integer", "boolean", "null",
};

static bool type_name_known(const char *name)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++)
        if (strcmp(type_names[i], name) == 0)
            return true;
    return false;
}

static void check_type(compiler *c, const json_t *parent, const char *key,
                       json_t *value)
{
    (void)parent;
    if (json_is_string(value)) {
        if (!type_name_known(json_string_value(value)))
            compile_problem(c, "unknown type '%s'", json_string_value(value));
        return;
    }
    if (!json_is_array(value) || json_array_size(value) == 0) {
        compile_problem(c, "%s must be a type name or a non-empty array of them", key);
        return;
    }
    size_t i;
    json_t *name;
    json_array_foreach(value, i, name) {
        size_t mark = spath_index(&c->path, i);
        if (!json_is_string(name))
            compile_problem(c, "type names must be strings");
        else if (!type_name_known(json_string_value(name)))
            compile_problem(c, "unknown type '%s'", json_string_value(name));
        spath_restore(&c->path, mark);
    }
}

/* properties, definitions, $defs: an object whose values are schemas. */
static void check_schema_map(compiler *c, const json_t *parent,
                             const char *key, json_t *value)
{
    (void)parent;
    if (!json_is_object(value)) {
        compile_problem(c, "%s must be an object of schemas", key);
        return;
    }
    const char *name;
    json_t *sub;
    json_object_foreach(value, name, sub) {
        size_t mark = spath_key(&c->path, name);
        compile_schema(c, sub);
        spath_restore(&c->path, mark);
    }
}

/* additionalProperties, not: one schema (true/false included). */
static void check_subschema(compiler *c, const json_t *parent,
                            const char *key, json_t *value)
{
    (void)parent;
    (void)key;
    compile_schema(c, value);
}

static void check_items(compiler *c, const json_t *parent, const char *key,
                        json_t *value)
{
    if (json_is_array(value)) {
        compile_problem(c, "the tuple form of items (an array of schemas) is "
                           "not supported; use one schema for every item");
        return;
    }
    check_subschema(c, parent, key, value);
}

/* anyOf, oneOf, allOf: a non-empty array of schemas. */
static void check_schema_list(compiler *c, const json_t *parent,
                              const char *key, json_t *value)
{
    (void)parent;
    if (!json_is_array(value) || json_array_size(value) == 0) {
        compile_problem(c, "%s must be a non-empty array of schemas", key);
        return;
    }
    size_t i;
    json_t *sub;
    json_array_foreach(value, i, sub) {
        size_t mark = spath_index(&c->path, i);
        compile_schema(c, sub);
        spath_restore(&c->path, mark);
    }
}

static void check_required(compiler *c, const json_t *parent,
                           const char *key, json_t *value)
{
    (void)parent;
    if (!json_is_array(value)) {
        compile_problem(c, "%s must be an array of property names", key);
        return;
    }
    size_t i;
    json_t *name;
    json_array_foreach(value, i, name) {
        size_t mark = spath_index(&c->path, i);
        if (!json_is_string(name)) {
            compile_problem(c, "property names in %s must be strings", key);
        } else {
            for (size_t j = 0; j < i; j++)
                if (json_equal(name, json_array_get(value, j))) {
                    compile_problem(c, "'%s' is listed twice", json_string_value(name));
                    break;
                }
        }
        spath_restore(&c->path, mark);
    }
}

/* minLength, maxLength, minItems, maxItems, minProperties, maxProperties. */
static void check_count(compiler *c, const json_t *parent, const char *key,
                        json_t *value)
{
    (void)parent;
    if (!json_is_nonneg_integral(value))
        compile_problem(c, "%s must be a non-negative integer", key);
}

static void check_number(compiler *c, const json_t *parent, const char *key,
                         json_t *value)
{
    (void)parent;
    if (!json_is_number(value))
        compile_problem(c, "%s must be a number", key);
}

static void check_multiple_of(compiler *c, const json_t *parent,
                              const char *key, json_t *value)
{
    (void)parent;
    if (!json_is_number(value) || json_number_value(value) <= 0)
        compile_problem(c, "%s must be a number greater than 0", key);
}

/* Draft 6+ gives the bound itself; draft 4 gives a boolean that makes the
 * sibling minimum/maximum exclusive, which means nothing without it. */
static void check_exclusive(compiler *c, const json_t *parent,
                            const char *key, json_t *value)
{
    const char *bound = strcmp(key, "exclusiveMinimum") == 0 ? "minimum" : "maximum";
    if (json_is_number(value))
        return;
    if (!json_is_boolean(value)) {
        compile_problem(c, "%s must be a number (or, draft-4 style, a boolean)", key);
        return;
    }
    if (json_is_true(value) && !json_is_number(json_object_get(parent, bound)))
        compile_problem(c, "%s: true needs a numeric '%s' beside it", key, bound);
}

static void check_boolean(compiler *c, const json_t *parent, const char *key,
                          json_t *value)
{
    (void)parent;
    if (!json_is_boolean(value))
        compile_problem(c, "%s must be true or false", key);
}

static void check_string(compiler *c, const json_t *parent, const char *key,
                         json_t *value)
{
    (void)parent;
    if (!json_is_string(value))
        compile_problem(c, "%s must be a string", key);
}

static void check_enum(compiler *c, const json_t *parent, const char *key,
                       json_t *value)
{
    (void)parent;
    if (!json_is_array(value) || json_array_size(value) == 0)
        compile_problem(c, "%s must be a non-empty array of values", key);
}

static int schema_grow_patterns(schema *s)
{
    size_t cap = s->cap ? s->cap * 2 : 4;
    schema_pattern *grown = realloc(s->patterns, cap * sizeof *grown);
    if (!grown)
        return -1;
    s->patterns = grown;
    s->cap = cap;
    return 0;
}

static void check_pattern(compiler *c, const json_t *parent, const char *key,
                          json_t *value)
{
    (void)parent;
    if (!json_is_string(value)) {
        compile_problem(c, "%s must be a string", key);
        return;
    }
    schema *s = c->s;
    if (s->npatterns == s->cap && schema_grow_patterns(s) < 0) {
        compile_problem(c, "out of memory compiling the pattern");
        return;
    }
    schema_pattern *p = &s->patterns[s->npatterns];
    int rc = regcomp(&p->re, json_string_value(value), REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char why[128];
        regerror(rc, &p->re, why, sizeof why);
        compile_problem(c, "invalid pattern (POSIX extended regular expression): %s", why);
        return;
    }
    p->source = value;
    s->npatterns++;
}

static void check_ref(compiler *c, const json_t *parent, const char *key,
                      json_t *value)
{
    (void)parent;
    if (!json_is_string(value)) {
        compile_problem(c, "%s must be a string", key);
        return;
    }
    const char *ref = json_string_value(value);
    bool supported;
    const json_t *target = ref_resolve(c->s->doc, ref, &supported);
    if (!supported)
        compile_problem(c, "only local references '#/definitions/NAME' or "
                           "'#/$defs/NAME' are supported, not '%s'", ref);
    else if (!target)
        compile_problem(c, "'%s' does not resolve: no such definition", ref);
}

/* Every keyword the subset knows. A NULL check accepts any value: the
 * annotations, and const (any JSON value is a valid constant). */
static const struct keyword {
    const char *name;
    keyword_check check;
} keywords[] = {
    {"type", check_type},
    {"properties", check_schema_map},
    {"required", check_required},
    {"additionalProperties", check_subschema},
    {"minProperties", check_count},
    {"maxProperties", check_count},
    {"items", check_items},
    {"minItems", check_count},
    {"maxItems", check_count},
    {"uniqueItems", check_boolean},
    {"minLength", check_count},
    {"maxLength", check_count},
    {"pattern", check_pattern},
    {"format", check_string},
    {"minimum", check_number},
    {"maximum", check_number},
    {"exclusiveMinimum", check_exclusive},
    {"exclusiveMaximum", check_exclusive},
    {"multipleOf", check_multiple_of},
    {"enum", check_enum},
    {"const", NULL},
    {"anyOf", check_schema_list},
    {"oneOf", check_schema_list},
    {"allOf", check_schema_list},
    {"not", check_subschema},
    {"$ref", check_ref},
    /* Annotations that change behaviour must be well-typed. */
    {"nullable", check_boolean},
    {"writeOnly", check_boolean},
    {"x-secret", check_boolean},
    {"definitions", check_schema_map},
    {"$defs", check_schema_map},
    {"title", NULL},
    {"description", NULL},
    {"default", NULL},
    {"examples", NULL},
    {"example", NULL},
    {"$schema", NULL},
    {"$id", NULL},
    {"$comment", NULL},
    {"deprecated", NULL},
    {"readOnly", NULL},
};

static const struct keyword *keyword_find(const char *name)
{
    for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
        if (strcmp(keywords[i].name, name) == 0)
            return &keywords[i];
    return NULL;
}

static void compile_keyword(compiler *c, const json_t *parent,
                            const char *key, json_t *value)
{
    const struct keyword *kw = keyword_find(key);
    if (kw) {
        if (kw->check)
            kw->check(c, parent, key, value);
        return;
    }
    if (strncmp(key, "x-", 2) == 0)
        return; /* vendor extensions are annotations */
    compile_problem(c, "unsupported keyword '%s'", key);
}

static void compile_schema(compiler *c, json_t *node)
{
    if (json_is_boolean(node))
        return;
    if (!json_is_object(node)) {
        compile_problem(c, "a schema must be an object or a boolean");
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(node, key, value) {
        size_t mark = spath_key(&c->path, key);
        compile_keyword(c, node, key, value);
        spath_restore(&c->path, mark);
    }
}

/* ------------------------------------------------------------------ */
/* Validate: the first failure, located in the instance.               */

typedef struct validator {
    const schema *s;
    schema_error *err;
    spath path;
    int ref_hops; /* $ref hops since the last step into the instance */
    bool fatal;   /* a failure no combinator may absorb (a $ref cycle) */
} validator;

static int fail(validator *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(validator *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err->message, sizeof v->err->message, fmt, ap);
    va_end(ap);
    copy_truncated(v->err->path, sizeof v->err->path, v->path.buf);
    return -1;
}

static int validate_node(validator *v, const json_t *node, const json_t *inst);

/* Validates a value one level down; `mark` undoes the path step after. */
static int validate_child(validator *v, const json_t *node,
                          const json_t *inst, size_t mark)
{
    int saved_hops = v->ref_hops;
    v->ref_hops = 0;
    int rc = validate_node(v, node, inst);
    v->ref_hops = saved_hops;
    spath_restore(&v->path, mark);
    return rc;
}

/* Runs a branch of anyOf/oneOf/not, whose failure is an answer rather than
 * the error to report, so v->err keeps what it had. A fatal failure is the
 * exception: it is copied out so the caller can stop with it. */
static int validate_branch(validator *v, const json_t *node, const json_t *inst)
{
    schema_error *outer = v->err;
    schema_error scratch;
    v->err = &scratch;
    int rc = validate_node(v, node, inst);
    v->err = outer;
    if (v->fatal)
        *outer = scratch;
    return rc;
}

/* Numbers as a person wrote them: 3, -0.5, 1e+300 — not 0.10000000000000001. */
static const char *number_text(double d, char *buf, size_t size)
{
    if (real_is_integral(d) && d < 1e15 && d > -1e15)
        snprintf(buf, size, "%.0f", d);
    else {
        snprintf(buf, size, "%.15g", d);
        if (strtod(buf, NULL) != d)
            snprintf(buf, size, "%.17g", d);
    }
    return buf;
}

static const char *json_number_text(const json_t *v, char *buf, size_t size)
{
    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return number_text(json_number_value(v), buf, size);
}

/* Equality as JSON Schema means it: 1 and 1.0 are the same number, which
 * json_equal (typed) would deny; containers compare member by member. */
static bool values_equal(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b))
        return json_integer_value(a) == json_integer_value(b);
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_is_array(a) && json_is_array(b)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!values_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a) && json_is_object(b)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *key;
        json_t *value;
        json_object_foreach((json_t *)a, key, value) {
            const json_t *other = json_object_get(b, key);
            if (!other || !values_equal(value, other))
                return false;
        }
        return true;
    }
    return json_equal(a, b);
}

/* Compact JSON for messages. Room for "..." is always kept, and "..." is
 * what gets appended (returning -1) when the value would not fit. */
static int append_json(char *buf, size_t size, const json_t *value)
{
    size_t used = strlen(buf);
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT);
    int rc = 0;
    if (text && used + strlen(text) + 4 < size) {
        strcat(buf, text);
    } else {
        if (used + 4 <= size)
            strcat(buf, "...");
        rc = -1;
    }
    free(text);
    return rc;
}

static void describe_values(const json_t *list, char *buf, size_t size)
{
    buf[0] = '\0';
    for (size_t i = 0; i < json_array_size(list); i++) {
        if (i > 0)
            strcat(buf, ", "); /* fits: append_json keeps 4 bytes spare */
        if (append_json(buf, size, json_array_get(list, i)) < 0)
            return;
    }
}

static const char *instance_type(const json_t *inst)
{
    switch (json_typeof(inst)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static bool type_matches(const char *type, const json_t *inst)
{
    if (strcmp(type, "integer") == 0)
        return json_is_integer(inst) ||
               (json_is_real(inst) && real_is_integral(json_real_value(inst)));
    if (strcmp(type, "number") == 0)
        return json_is_number(inst);
    return strcmp(type, instance_type(inst)) == 0;
}

/* "string", "string or null", "string, integer or null". */
static void describe_types(const json_t *type, char *buf, size_t size)
{
    if (json_is_string(type)) {
        copy_truncated(buf, size, json_string_value(type));
        return;
    }
    buf[0] = '\0';
    size_t n = json_array_size(type);
    for (size_t i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : i + 1 == n ? " or " : ", ";
        size_t used = strlen(buf);
        snprintf(buf + used, size - used, "%s%s", sep,
                 json_string_value(json_array_get(type, i)));
    }
}

static int validate_type(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *type = json_object_get(node, "type");
    if (!type)
        return 0;
    if (json_is_string(type) && type_matches(json_string_value(type), inst))
        return 0;
    for (size_t i = 0; i < json_array_size(type); i++)
        if (type_matches(json_string_value(json_array_get(type, i)), inst))
            return 0;
    char expected[128];
    describe_types(type, expected, sizeof expected);
    return fail(v, "expected %s, got %s", expected, instance_type(inst));
}

static int validate_ref(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *ref = json_object_get(node, "$ref");
    if (!ref)
        return 0;
    bool supported;
    const char *name = json_string_value(ref);
    const json_t *target = ref_resolve(v->s->doc, name, &supported);
    if (!target)
        return fail(v, "$ref '%s' does not resolve", name ? name : "");
    if (v->ref_hops >= SCHEMA_REF_HOPS_MAX) {
        v->fatal = true;
        return fail(v, "$ref '%s' nests more than %d deep without reaching a "
                       "value (reference cycle in the schema)",
                    name, SCHEMA_REF_HOPS_MAX);
    }
    v->ref_hops++;
    int rc = validate_node(v, target, inst);
    v->ref_hops--;
    return rc;
}

static int validate_enum(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *options = json_object_get(node, "enum");
    if (!options)
        return 0;
    for (size_t i = 0; i < json_array_size(options); i++)
        if (values_equal(json_array_get(options, i), inst))
            return 0;
    char list[200];
    describe_values(options, list, sizeof list);
    return fail(v, "must be one of: %s", list);
}

static int validate_const(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *expected = json_object_get(node, "const");
    if (!expected || values_equal(expected, inst))
        return 0;
    char text[200] = "";
    append_json(text, sizeof text, expected);
    return fail(v, "must be exactly %s", text);
}

static bool is_multiple_of(const json_t *inst, const json_t *divisor)
{
    if (json_is_integer(inst) && json_is_integer(divisor))
        return json_integer_value(inst) % json_integer_value(divisor) == 0;
    double q = json_number_value(inst) / json_number_value(divisor);
    /* Past 2^53 a double has no fraction left to judge by. */
    if (!isfinite(q) || q >= 9007199254740992.0 || q <= -9007199254740992.0)
        return true;
    double nearest = (double)(long long)(q < 0 ? q - 0.5 : q + 0.5);
    double off = q > nearest ? q - nearest : nearest - q;
    double scale = q < 0 ? -q : q;
    /* 0.3 / 0.1 is 2.9999999999999996: allow a few ulps of the quotient. */
    return off <= 1e-9 + scale * 1e-15;
}

static int validate_lower_bound(validator *v, const json_t *node,
                                const json_t *inst)
{
    const json_t *min = json_object_get(node, "minimum");
    const json_t *emin = json_object_get(node, "exclusiveMinimum");
    double x = json_number_value(inst);
    char a[40], b[40];
    if (min && json_is_true(emin) && x <= json_number_value(min))
        return fail(v, "value %s is not above exclusive minimum %s",
                    json_number_text(inst, a, sizeof a), json_number_text(min, b, sizeof b));
    if (min && x < json_number_value(min))
        return fail(v, "value %s is below minimum %s",
                    json_number_text(inst, a, sizeof a), json_number_text(min, b, sizeof b));
    if (json_is_number(emin) && x <= json_number_value(emin))
        return fail(v, "value %s is not above exclusiveMinimum %s",
                    json_number_text(inst, a, sizeof a), json_number_text(emin, b, sizeof b));
    return 0;
}

static int validate_upper_bound(validator *v, const json_t *node,
                                const json_t *inst)
{
    const json_t *max = json_object_get(node, "maximum");
    const json_t *emax = json_object_get(node, "exclusiveMaximum");
    double x = json_number_value(inst);
    char a[40], b[40];
    if (max && json_is_true(emax) && x >= json_number_value(max))
        return fail(v, "value %s is not below exclusive maximum %s",
                    json_number_text(inst, a, sizeof a), json_number_text(max, b, sizeof b));
    if (max && x > json_number_value(max))
        return fail(v, "value %s is above maximum %s",
                    json_number_text(inst, a, sizeof a), json_number_text(max, b, sizeof b));
    if (json_is_number(emax) && x >= json_number_value(emax))
        return fail(v, "value %s is not below exclusiveMaximum %s",
                    json_number_text(inst, a, sizeof a), json_number_text(emax, b, sizeof b));
    return 0;
}

static int validate_number(validator *v, const json_t *node, const json_t *inst)
{
    if (!json_is_number(inst))
        return 0;
    if (validate_lower_bound(v, node, inst) < 0 || validate_upper_bound(v, node, inst) < 0)
        return -1;
    const json_t *divisor = json_object_get(node, "multipleOf");
    char a[40], b[40];
    if (divisor && !is_multiple_of(inst, divisor))
        return fail(v, "value %s is not a multiple of %s",
                    json_number_text(inst, a, sizeof a),
                    json_number_text(divisor, b, sizeof b));
    return 0;
}

/* Code points, not bytes: every byte except a UTF-8 continuation starts one. */
static size_t utf8_length(const char *s, size_t bytes)
{
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

static int two_digits(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

/* YYYY-MM-DD with a month that exists and a day that exists in it. */
static bool is_date(const char *s, size_t len)
{
    if (len != 10 || s[4] != '-' || s[7] != '-' || !all_digits(s, 4) ||
        !all_digits(s + 5, 2) || !all_digits(s + 8, 2))
        return false;
    int year = two_digits(s) * 100 + two_digits(s + 2);
    int month = two_digits(s + 5), day = two_digits(s + 8);
    return month >= 1 && month <= 12 && day >= 1 && day <= days_in_month(year, month);
}

/* hh:mm at `s`, within 00:00..23:59. */
static bool is_hour_minute(const char *s)
{
    return all_digits(s, 2) && s[2] == ':' && all_digits(s + 3, 2) &&
           two_digits(s) <= 23 && two_digits(s + 3) <= 59;
}

/* RFC 3339 full-time: hh:mm:ss[.frac](Z|±hh:mm); second 60 is a leap second. */
static bool is_time(const char *s, size_t len)
{
    if (len < 9 || !is_hour_minute(s) || s[5] != ':' || !all_digits(s + 6, 2) ||
        two_digits(s + 6) > 60)
        return false;
    size_t i = 8;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
        if (i == start)
            return false;
    }
    if (i + 1 == len && (s[i] == 'Z' || s[i] == 'z'))
        return true;
    return i + 6 == len && (s[i] == '+' || s[i] == '-') && is_hour_minute(s + i + 1);
}

static bool is_date_time(const char *s, size_t len)
{
    return len > 11 && is_date(s, 10) && (s[10] == 'T' || s[10] == 't') &&
           is_time(s + 11, len - 11);
}

/* Deliberately loose: local@domain.tld with no spaces. Deliverability is the
 * upstream's business; this catches a name or a phone number in the field. */
static bool is_email(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (!at || at == s)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f || (s[i] == '@' && s + i != at))
            return false;
    const char *domain = at + 1, *end = s + len;
    const char *dot = memchr(domain, '.', (size_t)(end - domain));
    if (!dot || dot == domain || end[-1] == '.')
        return false;
    return true;
}

static bool is_uuid(const char *s, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* Formats that are checked; any other is an annotation. */
static const struct format {
    const char *name;
    bool (*valid)(const char *s, size_t len);
    const char *message;
} formats[] = {
    {"date", is_date, "not a valid date (YYYY-MM-DD)"},
    {"date-time", is_date_time, "not a valid date-time (RFC 3339, e.g. 2024-05-01T12:00:00Z)"},
    {"email", is_email, "not a valid email address"},
    {"uuid", is_uuid, "not a valid uuid (8-4-4-4-12 hex digits)"},
};

static int validate_format(validator *v, const json_t *node, const json_t *inst)
{
    const char *name = json_string_value(json_object_get(node, "format"));
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (strcmp(formats[i].name, name) == 0 &&
            !formats[i].valid(json_string_value(inst), json_string_length(inst)))
            return fail(v, "%s", formats[i].message);
    return 0;
}

static const regex_t *schema_find_pattern(const schema *s, const json_t *source)
{
    /* Linear: a tool schema has a handful of patterns. */
    for (size_t i = 0; i < s->npatterns; i++)
        if (s->patterns[i].source == source)
            return &s->patterns[i].re;
    return NULL;
}

static int validate_pattern(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *pattern = json_object_get(node, "pattern");
    if (!pattern)
        return 0;
    const char *text = json_string_value(pattern);
    const regex_t *re = schema_find_pattern(v->s, pattern);
    if (!re)
        return fail(v, "pattern '%s' was not compiled", text);
    const char *str = json_string_value(inst);
    /* regexec stops at a NUL, so a string hiding one would match on a prefix. */
    if (strlen(str) != json_string_length(inst))
        return fail(v, "does not match pattern '%s' (contains a NUL character)", text);
    if (regexec(re, str, 0, NULL, 0) != 0)
        return fail(v, "does not match pattern '%s'", text);
    return 0;
}

static int validate_string(validator *v, const json_t *node, const json_t *inst)
{
    if (!json_is_string(inst))
        return 0;
    size_t len = utf8_length(json_string_value(inst), json_string_length(inst));
    const json_t *min = json_object_get(node, "minLength");
    const json_t *max = json_object_get(node, "maxLength");
    char b[40];
    if (min && (double)len < json_number_value(min))
        return fail(v, "length %zu is below minLength %s", len, json_number_text(min, b, sizeof b));
    if (max && (double)len > json_number_value(max))
        return fail(v, "length %zu is above maxLength %s", len, json_number_text(max, b, sizeof b));
    if (validate_pattern(v, node, inst) < 0)
        return -1;
    return validate_format(v, node, inst);
}

static int validate_unique(validator *v, const json_t *inst)
{
    size_t n = json_array_size(inst);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (values_equal(json_array_get(inst, i), json_array_get(inst, j)))
                return fail(v, "items [%zu] and [%zu] are equal, but uniqueItems is set", i, j);
    return 0;
}

static int validate_array(validator *v, const json_t *node, const json_t *inst)
{
    if (!json_is_array(inst))
        return 0;
    size_t n = json_array_size(inst);
    const json_t *min = json_object_get(node, "minItems");
    const json_t *max = json_object_get(node, "maxItems");
    const json_t *items = json_object_get(node, "items");
    char b[40];
    if (min && (double)n < json_number_value(min))
        return fail(v, "array length %zu is below minItems %s", n,
                    json_number_text(min, b, sizeof b));
    if (max && (double)n > json_number_value(max))
        return fail(v, "array length %zu is above maxItems %s", n,
                    json_number_text(max, b, sizeof b));
    if (json_is_true(json_object_get(node, "uniqueItems")) && validate_unique(v, inst) < 0)
        return -1;
    for (size_t i = 0; items && i < n; i++)
        if (validate_child(v, items, json_array_get(inst, i), spath_index(&v->path, i)) < 0)
            return -1;
    return 0;
}

static int validate_property_count(validator *v, const json_t *node,
                                   const json_t *inst)
{
    size_t n = json_object_size(inst);
    const json_t *min = json_object_get(node, "minProperties");
    const json_t *max = json_object_get(node, "maxProperties");
    char b[40];
    if (min && (double)n < json_number_value(min))
        return fail(v, "object has %zu properties, below minProperties %s", n,
                    json_number_text(min, b, sizeof b));
    if (max && (double)n > json_number_value(max))
        return fail(v, "object has %zu properties, above maxProperties %s", n,
                    json_number_text(max, b, sizeof b));
    return 0;
}

/* Properties the schema does not name, in the instance's order. */
static int validate_additional(validator *v, const json_t *node,
                               const json_t *inst)
{
    const json_t *extra = json_object_get(node, "additionalProperties");
    const json_t *props = json_object_get(node, "properties");
    if (!extra || json_is_true(extra))
        return 0;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)inst, key, value) {
        if (json_object_get(props, key))
            continue;
        if (json_is_false(extra))
            return fail(v, "property '%s' is not allowed", key);
        if (validate_child(v, extra, value, spath_key(&v->path, key)) < 0)
            return -1;
    }
    return 0;
}

static int validate_object(validator *v, const json_t *node, const json_t *inst)
{
    if (!json_is_object(inst))
        return 0;
    const json_t *required = json_object_get(node, "required");
    for (size_t i = 0; i < json_array_size(required); i++) {
        const char *name = json_string_value(json_array_get(required, i));
        if (!json_object_get(inst, name))
            return fail(v, "missing required property '%s'", name);
    }
    if (validate_property_count(v, node, inst) < 0)
        return -1;
    json_t *props = json_object_get(node, "properties");
    const char *key;
    json_t *sub;
    json_object_foreach(props, key, sub) {
        const json_t *value = json_object_get(inst, key);
        if (value && validate_child(v, sub, value, spath_key(&v->path, key)) < 0)
            return -1;
    }
    return validate_additional(v, node, inst);
}

static int validate_all_of(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *list = json_object_get(node, "allOf");
    for (size_t i = 0; i < json_array_size(list); i++)
        if (validate_node(v, json_array_get(list, i), inst) < 0)
            return -1;
    return 0;
}

static int validate_any_of(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *list = json_object_get(node, "anyOf");
    if (!list)
        return 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        if (validate_branch(v, json_array_get(list, i), inst) == 0)
            return 0;
        if (v->fatal)
            return -1;
    }
    return fail(v, "matches none of anyOf");
}

static int validate_one_of(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *list = json_object_get(node, "oneOf");
    if (!list)
        return 0;
    size_t matches = 0;
    for (size_t i = 0; i < json_array_size(list); i++) {
        if (validate_branch(v, json_array_get(list, i), inst) == 0)
            matches++;
        if (v->fatal)
            return -1;
    }
    if (matches == 0)
        return fail(v, "matches none of oneOf");
    if (matches > 1)
        return fail(v, "matches %zu schemas of oneOf, expected exactly 1", matches);
    return 0;
}

static int validate_not(validator *v, const json_t *node, const json_t *inst)
{
    const json_t *sub = json_object_get(node, "not");
    if (!sub)
        return 0;
    int rc = validate_branch(v, sub, inst);
    if (v->fatal)
        return -1;
    return rc == 0 ? fail(v, "must not match the schema in 'not'") : 0;
}

/* In this order, so the first failure reported is the most telling one:
 * the type before its constraints, structure before combinators. */
static int (*const node_checks[])(validator *, const json_t *, const json_t *) = {
    validate_ref, validate_type, validate_enum, validate_const,
    validate_number, validate_string, validate_array, validate_object,
    validate_all_of, validate_any_of, validate_one_of, validate_not,
};

static int validate_node(validator *v, const json_t *node, const json_t *inst)
{
    if (json_is_true(node))
        return 0;
    if (!json_is_object(node))
        return fail(v, "no value is allowed here");
    /* OpenAPI's nullable: null is welcome wherever this schema is used. */
    if (json_is_null(inst) && json_is_true(json_object_get(node, "nullable")))
        return 0;
    for (size_t i = 0; i < sizeof node_checks / sizeof node_checks[0]; i++)
        if (node_checks[i](v, node, inst) < 0)
            return -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Redact: a copy safe to log.                                         */

/* Exact names, in normalized form (lowercase, '_' for '-'). */
static const char *const secret_names[] = {
    "password", "passwd", "secret", "client_secret", "token", "access_token",
    "refresh_token", "id_token", "api_key", "apikey", "authorization", "auth",
    "cookie", "private_key", "credentials",
};

static const char *const secret_suffixes[] = {
    "_token", "_secret", "_password", "_key",
};

/* Lowercase, '-' as '_', and a '_' at each camelCase hump, so "API-Key",
 * "apiKey" and "api_key" all read "api_key". NULL when out of memory. */
static char *normalize_key(const char *key)
{
    size_t len = strlen(key);
    char *out = malloc(2 * len + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)key[i];
        unsigned char prev = i > 0 ? (unsigned char)key[i - 1] : 0;
        if (isupper(ch) && (islower(prev) || isdigit(prev)))
            out[n++] = '_';
        out[n++] = ch == '-' ? '_' : (char)tolower(ch);
    }
    out[n] = '\0';
    return out;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool key_looks_secret(const char *key)
{
    char *name = normalize_key(key);
    if (!name)
        return true; /* when in doubt, keep it out of the log */
    bool secret = false;
    for (size_t i = 0; !secret && i < sizeof secret_names / sizeof secret_names[0]; i++)
        secret = strcmp(name, secret_names[i]) == 0;
    for (size_t i = 0; !secret && i < sizeof secret_suffixes / sizeof secret_suffixes[0]; i++)
        secret = ends_with(name, secret_suffixes[i]);
    free(name);
    return secret;
}

static bool schema_marks_secret(const json_t *node)
{
    const char *format = json_string_value(json_object_get(node, "format"));
    return json_is_true(json_object_get(node, "writeOnly")) ||
           json_is_true(json_object_get(node, "x-secret")) ||
           (format && strcmp(format, "password") == 0);
}

/* Follows $ref from `node` to the schema that describes the value, setting
 * `*secret` if any schema along the way marks it. Siblings of a $ref other
 * than the markers are not consulted past the hop. */
static const json_t *redact_resolve(const json_t *root, const json_t *node,
                                    bool *secret)
{
    for (int hops = 0; json_is_object(node); hops++) {
        if (schema_marks_secret(node))
            *secret = true;
        bool supported;
        const char *ref = json_string_value(json_object_get(node, "$ref"));
        const json_t *target = ref ? ref_resolve(root, ref, &supported) : NULL;
        if (!target || hops >= SCHEMA_REF_HOPS_MAX)
            return node;
        node = target;
    }
    return node;
}

static const json_t *property_schema(const json_t *node, const char *key)
{
    const json_t *sub = json_object_get(json_object_get(node, "properties"), key);
    if (sub)
        return sub;
    const json_t *extra = json_object_get(node, "additionalProperties");
    return json_is_object(extra) ? extra : NULL;
}

static json_t *redact_value(const json_t *root, const json_t *node,
                            const json_t *inst);

static json_t *redact_object(const json_t *root, const json_t *node,
                             const json_t *inst)
{
    json_t *out = json_object();
    if (!out)
        return NULL;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)inst, key, value) {
        json_t *copy = key_looks_secret(key)
                           ? json_string(SCHEMA_REDACTED)
                           : redact_value(root, property_schema(node, key), value);
        if (!copy || json_object_set_new_nocheck(out, key, copy) < 0)
            goto err;
    }
    return out;
err:
    json_decref(out);
    return NULL;
}

static json_t *redact_array(const json_t *root, const json_t *node,
                            const json_t *inst)
{
    json_t *out = json_array();
    if (!out)
        return NULL;
    const json_t *items = json_object_get(node, "items");
    for (size_t i = 0; i < json_array_size(inst); i++) {
        json_t *copy = redact_value(root, items, json_array_get(inst, i));
        if (!copy || json_array_append_new(out, copy) < 0)
            goto err;
    }
    return out;
err:
    json_decref(out);
    return NULL;
}

static json_t *redact_value(const json_t *root, const json_t *node,
                            const json_t *inst)
{
    bool secret = false;
    node = redact_resolve(root, node, &secret);
    if (secret)
        return json_string(SCHEMA_REDACTED);
    if (json_is_object(inst))
        return redact_object(root, node, inst);
    if (json_is_array(inst))
        return redact_array(root, node, inst);
    return json_deep_copy(inst);
}

/* ------------------------------------------------------------------ */
/* Public API.                                                         */

schema *schema_compile(json_t *doc, schema_problem_fn problem, void *arg)
{
    compiler c = {.problem = problem, .arg = arg};
    spath_init(&c.path);
    if (!doc) {
        compile_problem(&c, "no schema document");
        return NULL;
    }
    c.s = calloc(1, sizeof *c.s);
    if (!c.s) {
        compile_problem(&c, "out of memory");
        return NULL;
    }
    c.s->doc = json_incref(doc);
    compile_schema(&c, doc);
    if (c.problems)
        goto err;
    return c.s;
err:
    schema_free(c.s);
    return NULL;
}

void schema_free(schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->npatterns; i++)
        regfree(&s->patterns[i].re);
    free(s->patterns);
    json_decref(s->doc);
    free(s);
}

json_t *schema_doc(const schema *s)
{
    return s ? s->doc : NULL;
}

int schema_validate(const schema *s, const json_t *instance, schema_error *err)
{
    schema_error scratch;
    validator v = {.s = s, .err = err ? err : &scratch};
    spath_init(&v.path);
    v.err->path[0] = '\0';
    v.err->message[0] = '\0';
    if (!s)
        return fail(&v, "no schema to validate against");
    if (!instance)
        return fail(&v, "no value to validate");
    return validate_node(&v, s->doc, instance);
}

json_t *schema_redact(const schema *s, const json_t *instance)
{
    if (!instance)
        return NULL;
    const json_t *root = s ? s->doc : NULL;
    return redact_value(root, root, instance);
}
