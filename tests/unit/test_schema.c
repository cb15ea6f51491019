/* test_schema — the JSON Schema subset: compile problems, validation
 * failures (path and message), $ref and its cycles, and redaction.
 *
 * Schemas and instances are written with single quotes for readability;
 * the helpers swap ' and " before parsing, so a literal ' inside a JSON
 * string is written as ". */
#include "schema.h"
#include "testutil.h"

typedef struct problems {
    int count;
    char text[4096];
} problems;

static void collect(void *arg, const char *path, const char *message)
{
    problems *p = arg;
    size_t used = strlen(p->text);
    p->count++;
    snprintf(p->text + used, sizeof p->text - used, "%s: %s\n", path, message);
}

static json_t *parse(const char *text)
{
    char *swapped = strdup(text);
    for (char *c = swapped; *c; c++)
        *c = *c == '\'' ? '"' : *c == '"' ? '\'' : *c;
    json_error_t jerr;
    json_t *value = json_loads(swapped, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!value)
        fprintf(stderr, "bad test JSON %s: %s\n", swapped, jerr.text);
    free(swapped);
    return value;
}

/* Compiles `text`; NULL with `out` filled when it has problems. Problems the
 * test did not ask for (out == NULL) are printed. */
static schema *compile_text(const char *text, problems *out)
{
    problems local;
    problems *p = out ? out : &local;
    memset(p, 0, sizeof *p);
    json_t *doc = parse(text);
    schema *s = schema_compile(doc, collect, p);
    json_decref(doc); /* the schema holds its own reference */
    if (!s && !out)
        fprintf(stderr, "unexpected problems in %s:\n%s", text, p->text);
    return s;
}

static int validate_text(const schema *s, const char *text, schema_error *err)
{
    json_t *instance = parse(text);
    int rc = schema_validate(s, instance, err);
    json_decref(instance);
    return rc;
}

#define EXPECT_VALID(s, text)                                                \
    do {                                                                     \
        schema_error e_;                                                     \
        int rc_ = validate_text(s, text, &e_);                               \
        if (rc_ != 0)                                                        \
            fprintf(stderr, "  %s -> %s: %s\n", text, e_.path, e_.message);  \
        CHECK_INT(rc_, 0);                                                   \
    } while (0)

#define EXPECT_INVALID(s, text, want_path, want_message)                     \
    do {                                                                     \
        schema_error e_;                                                     \
        CHECK_INT(validate_text(s, text, &e_), -1);                          \
        CHECK_STR(e_.path, want_path);                                       \
        CHECK_STR(e_.message, want_message);                                 \
    } while (0)

/* A problem line "path: message" was reported. */
#define EXPECT_PROBLEM(p, line) CHECK_CONTAINS((p).text, line "\n")

/* ---- type ---------------------------------------------------------- */

static void type_accepts_a_name_or_a_list(void)
{
    schema *s = compile_text("{'type':'string'}", NULL);
    EXPECT_VALID(s, "'x'");
    EXPECT_INVALID(s, "3", "$", "expected string, got integer");
    schema_free(s);

    s = compile_text("{'type':['string','null']}", NULL);
    EXPECT_VALID(s, "null");
    EXPECT_INVALID(s, "true", "$", "expected string or null, got boolean");
    schema_free(s);

    s = compile_text("{'type':['string','integer','null']}", NULL);
    EXPECT_INVALID(s, "2.5", "$", "expected string, integer or null, got number");
    EXPECT_INVALID(s, "{}", "$", "expected string, integer or null, got object");
    EXPECT_INVALID(s, "[]", "$", "expected string, integer or null, got array");
    schema_free(s);
}

static void integer_accepts_integral_reals(void)
{
    schema *s = compile_text("{'type':'integer'}", NULL);
    EXPECT_VALID(s, "3");
    EXPECT_VALID(s, "3.0");
    EXPECT_INVALID(s, "3.5", "$", "expected integer, got number");
    EXPECT_INVALID(s, "'3'", "$", "expected integer, got string");
    schema_free(s);

    s = compile_text("{'type':'number'}", NULL);
    EXPECT_VALID(s, "3");
    EXPECT_VALID(s, "-0.25");
    schema_free(s);
}

/* ---- objects ------------------------------------------------------- */

static void object_errors_point_into_the_instance(void)
{
    schema *s = compile_text(
        "{'type':'object','required':['query'],'properties':{"
        "  'query':{'type':'string'},"
        "  'customer':{'type':'object','properties':{"
        "    'email':{'type':'string','format':'email'}}}}}", NULL);
    EXPECT_VALID(s, "{'query':'q','customer':{'email':'a@b.io'}}");
    EXPECT_INVALID(s, "{}", "$", "missing required property 'query'");
    EXPECT_INVALID(s, "{'query':1}", "$.query", "expected string, got integer");
    EXPECT_INVALID(s, "{'query':'q','customer':{'email':'nope'}}",
                   "$.customer.email", "not a valid email address");
    schema_free(s);
}

static void required_is_checked_before_properties(void)
{
    schema *s = compile_text(
        "{'required':['a','b'],'properties':{'c':{'type':'string'}}}", NULL);
    EXPECT_INVALID(s, "{'c':1}", "$", "missing required property 'a'");
    EXPECT_INVALID(s, "{'a':1,'c':1}", "$", "missing required property 'b'");
    schema_free(s);
}

static void properties_are_checked_in_schema_order(void)
{
    schema *s = compile_text(
        "{'properties':{'b':{'type':'string'},'a':{'type':'string'}}}", NULL);
    EXPECT_INVALID(s, "{'a':1,'b':1}", "$.b", "expected string, got integer");
    schema_free(s);
}

static void additional_properties_false_or_schema(void)
{
    schema *s = compile_text(
        "{'properties':{'a':{}},'additionalProperties':false}", NULL);
    EXPECT_VALID(s, "{'a':1}");
    EXPECT_INVALID(s, "{'a':1,'foo':2}", "$", "property 'foo' is not allowed");
    schema_free(s);

    s = compile_text(
        "{'properties':{'a':{}},'additionalProperties':{'type':'integer'}}", NULL);
    EXPECT_VALID(s, "{'a':'x','n':2}");
    EXPECT_INVALID(s, "{'a':'x','n':'y'}", "$.n", "expected integer, got string");
    schema_free(s);
}

static void property_counts(void)
{
    schema *s = compile_text("{'minProperties':1,'maxProperties':2}", NULL);
    EXPECT_VALID(s, "{'a':1}");
    EXPECT_INVALID(s, "{}", "$", "object has 0 properties, below minProperties 1");
    EXPECT_INVALID(s, "{'a':1,'b':2,'c':3}", "$",
                   "object has 3 properties, above maxProperties 2");
    schema_free(s);
}

static void odd_keys_are_quoted_in_paths(void)
{
    schema *s = compile_text("{'properties':{'a b':{'type':'string'},"
                             "'x-id':{'type':'string'}}}", NULL);
    EXPECT_INVALID(s, "{'a b':1}", "$[\"a b\"]", "expected string, got integer");
    EXPECT_INVALID(s, "{'x-id':1}", "$.x-id", "expected string, got integer");
    schema_free(s);
}

/* ---- arrays -------------------------------------------------------- */

static void array_items_are_located_by_index(void)
{
    schema *s = compile_text(
        "{'properties':{'items':{'type':'array','items':{"
        "  'type':'object','required':['name'],"
        "  'properties':{'name':{'type':'string'}}}}}}", NULL);
    EXPECT_VALID(s, "{'items':[{'name':'a'},{'name':'b'}]}");
    EXPECT_INVALID(s, "{'items':[{'name':'a'},{'name':'b'},{'name':5}]}",
                   "$.items[2].name", "expected string, got integer");
    EXPECT_INVALID(s, "{'items':[{'name':'a'},{}]}",
                   "$.items[1]", "missing required property 'name'");
    schema_free(s);
}

static void array_counts_and_unique_items(void)
{
    schema *s = compile_text("{'minItems':1,'maxItems':3,'uniqueItems':true}", NULL);
    EXPECT_VALID(s, "[1,2,3]");
    EXPECT_VALID(s, "[{'a':1},{'a':2}]");
    EXPECT_INVALID(s, "[]", "$", "array length 0 is below minItems 1");
    EXPECT_INVALID(s, "[1,2,3,4]", "$", "array length 4 is above maxItems 3");
    EXPECT_INVALID(s, "[1,2,1]", "$", "items [0] and [2] are equal, but uniqueItems is set");
    /* 1 and 1.0 are the same number to JSON Schema. */
    EXPECT_INVALID(s, "[1,1.0]", "$", "items [0] and [1] are equal, but uniqueItems is set");
    EXPECT_INVALID(s, "[{'a':[1]},{'a':[1]}]", "$",
                   "items [0] and [1] are equal, but uniqueItems is set");
    schema_free(s);

    s = compile_text("{'uniqueItems':false}", NULL);
    EXPECT_VALID(s, "[1,1]");
    schema_free(s);
}

/* ---- strings ------------------------------------------------------- */

static void string_length_counts_code_points(void)
{
    schema *s = compile_text("{'type':'string','minLength':3,'maxLength':4}", NULL);
    EXPECT_VALID(s, "'abc'");
    EXPECT_VALID(s, "'h\\u00e9\\u00e9'");             /* 3 code points, 5 bytes */
    EXPECT_VALID(s, "'\\u00e9\\u00e9\\u00e9\\u00e9'"); /* 4 code points, 8 bytes */
    EXPECT_VALID(s, "'\\ud83d\\ude00ab'");            /* emoji is one code point */
    EXPECT_INVALID(s, "'\\u65e5\\u672c'", "$", "length 2 is below minLength 3");
    EXPECT_INVALID(s, "'abcde'", "$", "length 5 is above maxLength 4");
    schema_free(s);
}

static void pattern_is_a_posix_extended_regex(void)
{
    schema *s = compile_text("{'pattern':'^[a-z]+$'}", NULL);
    EXPECT_VALID(s, "'abc'");
    EXPECT_VALID(s, "12"); /* pattern constrains strings only */
    EXPECT_INVALID(s, "'aB'", "$", "does not match pattern '^[a-z]+$'");
    /* regexec would stop at the NUL and match "ab". */
    EXPECT_INVALID(s, "'ab\\u0000!'", "$",
                   "does not match pattern '^[a-z]+$' (contains a NUL character)");
    schema_free(s);

    s = compile_text("{'pattern':'x[0-9]{2}'}", NULL); /* unanchored: a search */
    EXPECT_VALID(s, "'ax12b'");
    EXPECT_INVALID(s, "'ax1b'", "$", "does not match pattern 'x[0-9]{2}'");
    schema_free(s);
}

static void format_date(void)
{
    schema *s = compile_text("{'format':'date'}", NULL);
    EXPECT_VALID(s, "'2024-02-29'");
    EXPECT_VALID(s, "'1999-12-31'");
    EXPECT_VALID(s, "5"); /* formats constrain strings only */
    EXPECT_INVALID(s, "'2023-02-29'", "$", "not a valid date (YYYY-MM-DD)");
    EXPECT_INVALID(s, "'1900-02-29'", "$", "not a valid date (YYYY-MM-DD)");
    EXPECT_INVALID(s, "'2024-13-01'", "$", "not a valid date (YYYY-MM-DD)");
    EXPECT_INVALID(s, "'2024-04-31'", "$", "not a valid date (YYYY-MM-DD)");
    EXPECT_INVALID(s, "'2024-00-10'", "$", "not a valid date (YYYY-MM-DD)");
    EXPECT_INVALID(s, "'2024-1-01'", "$", "not a valid date (YYYY-MM-DD)");
    EXPECT_INVALID(s, "'2024-01-01x'", "$", "not a valid date (YYYY-MM-DD)");
    schema_free(s);
}

static void format_date_time(void)
{
    const char *bad = "not a valid date-time (RFC 3339, e.g. 2024-05-01T12:00:00Z)";
    schema *s = compile_text("{'format':'date-time'}", NULL);
    EXPECT_VALID(s, "'2024-05-01T12:00:00Z'");
    EXPECT_VALID(s, "'2024-05-01T12:00:00.123+02:00'");
    EXPECT_VALID(s, "'2016-12-31t23:59:60z'");
    EXPECT_VALID(s, "'2024-05-01T00:00:00-05:30'");
    EXPECT_INVALID(s, "'2024-05-01 12:00:00Z'", "$", bad);
    EXPECT_INVALID(s, "'2024-05-01T12:00:00'", "$", bad);
    EXPECT_INVALID(s, "'2024-05-01T24:00:00Z'", "$", bad);
    EXPECT_INVALID(s, "'2024-05-01T12:00:00+0200'", "$", bad);
    EXPECT_INVALID(s, "'2024-05-01T12:00:00.Z'", "$", bad);
    EXPECT_INVALID(s, "'2024-02-30T12:00:00Z'", "$", bad);
    EXPECT_INVALID(s, "'2024-05-01'", "$", bad);
    schema_free(s);
}

static void format_email_and_uuid(void)
{
    schema *s = compile_text("{'format':'email'}", NULL);
    EXPECT_VALID(s, "'a@b.co'");
    EXPECT_VALID(s, "'first.last+tag@mail.example.org'");
    EXPECT_INVALID(s, "'a b@c.de'", "$", "not a valid email address");
    EXPECT_INVALID(s, "'ab.c'", "$", "not a valid email address");
    EXPECT_INVALID(s, "'a@b'", "$", "not a valid email address");
    EXPECT_INVALID(s, "'@b.c'", "$", "not a valid email address");
    EXPECT_INVALID(s, "'a@b.'", "$", "not a valid email address");
    EXPECT_INVALID(s, "'a@b@c.d'", "$", "not a valid email address");
    schema_free(s);

    s = compile_text("{'format':'uuid'}", NULL);
    EXPECT_VALID(s, "'123e4567-e89b-12d3-a456-426614174000'");
    EXPECT_VALID(s, "'123E4567-E89B-12D3-A456-426614174000'");
    EXPECT_INVALID(s, "'123e4567e89b12d3a456426614174000'", "$",
                   "not a valid uuid (8-4-4-4-12 hex digits)");
    EXPECT_INVALID(s, "'123e4567-e89b-12d3-a456-42661417400g'", "$",
                   "not a valid uuid (8-4-4-4-12 hex digits)");
    schema_free(s);
}

static void unknown_formats_are_annotations(void)
{
    schema *s = compile_text("{'type':'string','format':'hostname'}", NULL);
    CHECK(s != NULL);
    EXPECT_VALID(s, "'not a hostname at all!'");
    schema_free(s);
}

/* ---- numbers ------------------------------------------------------- */

static void inclusive_bounds(void)
{
    schema *s = compile_text("{'minimum':1,'maximum':10}", NULL);
    EXPECT_VALID(s, "1");
    EXPECT_VALID(s, "10");
    EXPECT_VALID(s, "'strings are not numbers'");
    EXPECT_INVALID(s, "0", "$", "value 0 is below minimum 1");
    EXPECT_INVALID(s, "0.5", "$", "value 0.5 is below minimum 1");
    EXPECT_INVALID(s, "11", "$", "value 11 is above maximum 10");
    schema_free(s);
}

static void exclusive_bounds_numeric_and_draft4(void)
{
    schema *s = compile_text("{'exclusiveMinimum':0,'exclusiveMaximum':1}", NULL);
    EXPECT_VALID(s, "0.5");
    EXPECT_INVALID(s, "0", "$", "value 0 is not above exclusiveMinimum 0");
    EXPECT_INVALID(s, "1", "$", "value 1 is not below exclusiveMaximum 1");
    schema_free(s);

    s = compile_text("{'minimum':0,'exclusiveMinimum':true,"
                     "'maximum':5,'exclusiveMaximum':true}", NULL);
    EXPECT_VALID(s, "4.5");
    EXPECT_INVALID(s, "0", "$", "value 0 is not above exclusive minimum 0");
    EXPECT_INVALID(s, "5", "$", "value 5 is not below exclusive maximum 5");
    schema_free(s);

    s = compile_text("{'minimum':0,'exclusiveMinimum':false}", NULL);
    EXPECT_VALID(s, "0");
    schema_free(s);
}

static void multiple_of_tolerates_float_error(void)
{
    schema *s = compile_text("{'multipleOf':0.1}", NULL);
    EXPECT_VALID(s, "0.3");  /* 0.3 / 0.1 == 2.9999999999999996 */
    EXPECT_VALID(s, "1.1");
    EXPECT_VALID(s, "-4.2");
    EXPECT_INVALID(s, "0.35", "$", "value 0.35 is not a multiple of 0.1");
    schema_free(s);

    s = compile_text("{'multipleOf':3}", NULL);
    EXPECT_VALID(s, "9");
    EXPECT_VALID(s, "9.0");
    EXPECT_INVALID(s, "7", "$", "value 7 is not a multiple of 3");
    schema_free(s);

    /* Integers are divided exactly, even past double precision. */
    s = compile_text("{'multipleOf':2}", NULL);
    EXPECT_INVALID(s, "9007199254740993", "$", "value 9007199254740993 is not a multiple of 2");
    schema_free(s);
}

/* ---- enum, const --------------------------------------------------- */

static void enum_and_const(void)
{
    schema *s = compile_text("{'enum':['asc','desc']}", NULL);
    EXPECT_VALID(s, "'asc'");
    EXPECT_INVALID(s, "'up'", "$", "must be one of: \"asc\", \"desc\"");
    schema_free(s);

    s = compile_text("{'enum':[1,2,{'a':[true]}]}", NULL);
    EXPECT_VALID(s, "1.0");
    EXPECT_VALID(s, "{'a':[true]}");
    EXPECT_INVALID(s, "3", "$", "must be one of: 1, 2, {\"a\":[true]}");
    schema_free(s);

    s = compile_text("{'const':'x'}", NULL);
    EXPECT_VALID(s, "'x'");
    EXPECT_INVALID(s, "'y'", "$", "must be exactly \"x\"");
    schema_free(s);

    s = compile_text("{'const':null}", NULL);
    EXPECT_VALID(s, "null");
    EXPECT_INVALID(s, "0", "$", "must be exactly null");
    schema_free(s);
}

static void long_enum_lists_are_cut_not_overrun(void)
{
    json_t *options = json_array();
    for (int i = 0; i < 40; i++) {
        char name[64];
        snprintf(name, sizeof name, "a-rather-long-option-name-number-%d", i);
        json_array_append_new(options, json_string(name));
    }
    json_t *doc = json_pack("{s:o}", "enum", options);
    schema *s = schema_compile(doc, NULL, NULL);
    json_decref(doc);
    schema_error e;
    json_t *bad = json_string("nope");
    CHECK_INT(schema_validate(s, bad, &e), -1);
    CHECK_CONTAINS(e.message, "must be one of: \"a-rather-long-option-name-number-0\"");
    CHECK_CONTAINS(e.message, "...");
    CHECK(strlen(e.message) < sizeof e.message);
    json_decref(bad);
    schema_free(s);
}

/* ---- combinators --------------------------------------------------- */

static void any_of_needs_one_match(void)
{
    schema *s = compile_text(
        "{'properties':{'v':{'anyOf':[{'type':'string'},{'type':'integer'}]}}}", NULL);
    EXPECT_VALID(s, "{'v':'x'}");
    EXPECT_VALID(s, "{'v':1}");
    EXPECT_INVALID(s, "{'v':true}", "$.v", "matches none of anyOf");
    schema_free(s);
}

static void one_of_counts_matches(void)
{
    schema *s = compile_text("{'oneOf':[{'type':'integer'},{'type':'number'}]}", NULL);
    EXPECT_VALID(s, "1.5");
    EXPECT_INVALID(s, "1", "$", "matches 2 schemas of oneOf, expected exactly 1");
    EXPECT_INVALID(s, "'x'", "$", "matches none of oneOf");
    schema_free(s);

    s = compile_text("{'oneOf':[{'minimum':0},{'minimum':1},{'minimum':2}]}", NULL);
    EXPECT_INVALID(s, "5", "$", "matches 3 schemas of oneOf, expected exactly 1");
    schema_free(s);
}

static void all_of_reports_the_failing_part(void)
{
    schema *s = compile_text("{'allOf':[{'minimum':1},{'maximum':3}]}", NULL);
    EXPECT_VALID(s, "2");
    EXPECT_INVALID(s, "5", "$", "value 5 is above maximum 3");
    schema_free(s);
}

static void not_inverts(void)
{
    schema *s = compile_text("{'not':{'type':'string'}}", NULL);
    EXPECT_VALID(s, "1");
    EXPECT_INVALID(s, "'x'", "$", "must not match the schema in 'not'");
    schema_free(s);
}

/* ---- $ref ---------------------------------------------------------- */

static void refs_resolve_definitions_and_defs(void)
{
    schema *s = compile_text(
        "{'definitions':{'pos':{'type':'integer','minimum':0},"
        "                'a/b':{'type':'boolean'}},"
        " '$defs':{'name':{'type':'string'}},"
        " 'properties':{'n':{'$ref':'#/definitions/pos'},"
        "               's':{'$ref':'#/$defs/name'},"
        "               'b':{'$ref':'#/definitions/a~1b'}}}", NULL);
    EXPECT_VALID(s, "{'n':3,'s':'x','b':true}");
    EXPECT_INVALID(s, "{'n':-1}", "$.n", "value -1 is below minimum 0");
    EXPECT_INVALID(s, "{'s':1}", "$.s", "expected string, got integer");
    EXPECT_INVALID(s, "{'b':1}", "$.b", "expected boolean, got integer");
    schema_free(s);
}

static void recursive_refs_may_nest_deeper_than_the_hop_limit(void)
{
    schema *s = compile_text(
        "{'$ref':'#/definitions/node','definitions':{'node':{'type':'object',"
        "  'properties':{'v':{'type':'integer'},"
        "                'next':{'$ref':'#/definitions/node'}}}}}", NULL);
    json_t *list = json_pack("{s:i}", "v", 0);
    for (int i = 0; i < 100; i++)
        list = json_pack("{s:i, s:o}", "v", i, "next", list);
    schema_error e;
    CHECK_INT(schema_validate(s, list, &e), 0);

    json_t *deepest = list;
    while (json_object_get(deepest, "next"))
        deepest = json_object_get(deepest, "next");
    json_object_set_new(deepest, "v", json_string("x"));
    CHECK_INT(schema_validate(s, list, &e), -1);
    CHECK(strncmp(e.path, "$.next.next.next.", 17) == 0);
    CHECK_STR(e.message, "expected integer, got string");
    json_decref(list);
    schema_free(s);
}

static void ref_cycles_fail_clearly(void)
{
    const char *defs = "'definitions':{'a':{'$ref':'#/definitions/b'},"
                       "'b':{'$ref':'#/definitions/a'},"
                       "'fork':{'anyOf':[{'$ref':'#/definitions/fork'},"
                       "                 {'$ref':'#/definitions/fork'}]}}";
    char text[512];
    schema_error e;

    snprintf(text, sizeof text, "{'$ref':'#/definitions/a',%s}", defs);
    schema *s = compile_text(text, NULL);
    CHECK(s != NULL); /* a cycle is well-formed; it fails when used */
    CHECK_INT(validate_text(s, "1", &e), -1);
    CHECK_STR(e.path, "$");
    CHECK_CONTAINS(e.message, "reference cycle");
    schema_free(s);

    /* Neither 'not' nor anyOf may turn the cycle into an answer. */
    snprintf(text, sizeof text, "{'not':{'$ref':'#/definitions/a'},%s}", defs);
    s = compile_text(text, NULL);
    CHECK_INT(validate_text(s, "1", &e), -1);
    CHECK_CONTAINS(e.message, "reference cycle");
    schema_free(s);

    snprintf(text, sizeof text,
             "{'anyOf':[{'$ref':'#/definitions/a'},{'type':'integer'}],%s}", defs);
    s = compile_text(text, NULL);
    CHECK_INT(validate_text(s, "1", &e), -1);
    CHECK_CONTAINS(e.message, "reference cycle");
    schema_free(s);

    /* Two branches per hop would be 2^64 paths if the failure were absorbed. */
    snprintf(text, sizeof text, "{'$ref':'#/definitions/fork',%s}", defs);
    s = compile_text(text, NULL);
    CHECK_INT(validate_text(s, "1", &e), -1);
    CHECK_CONTAINS(e.message, "reference cycle");
    schema_free(s);
}

/* ---- nullable, boolean schemas, annotations ------------------------ */

static void nullable_lets_null_through(void)
{
    schema *s = compile_text("{'type':'string','nullable':true}", NULL);
    EXPECT_VALID(s, "null");
    EXPECT_VALID(s, "'x'");
    EXPECT_INVALID(s, "1", "$", "expected string, got integer");
    schema_free(s);

    s = compile_text("{'type':'string','nullable':false}", NULL);
    EXPECT_INVALID(s, "null", "$", "expected string, got null");
    schema_free(s);

    /* Null is accepted whole, not checked against the enum of strings. */
    s = compile_text("{'type':'string','enum':['a'],'nullable':true}", NULL);
    EXPECT_VALID(s, "null");
    EXPECT_INVALID(s, "'b'", "$", "must be one of: \"a\"");
    schema_free(s);
}

static void boolean_schemas(void)
{
    schema *s = compile_text("{'properties':{'a':true,'b':false}}", NULL);
    EXPECT_VALID(s, "{'a':[1,{}]}");
    EXPECT_INVALID(s, "{'b':1}", "$.b", "no value is allowed here");
    schema_free(s);

    s = compile_text("true", NULL);
    EXPECT_VALID(s, "{'anything':1}");
    schema_free(s);

    s = compile_text("false", NULL);
    EXPECT_INVALID(s, "1", "$", "no value is allowed here");
    schema_free(s);
}

static void annotations_are_accepted(void)
{
    schema *s = compile_text(
        "{'type':'integer','title':'t','description':'d','default':1,"
        "'examples':[1],'example':1,"
        "'$schema':'http://json-schema.org/draft-07/schema#','$id':'x',"
        "'$comment':'c','deprecated':true,'readOnly':false,'writeOnly':false,"
        "'nullable':false,'x-anything':{'deep':[1]},'x-secret':false,"
        "'format':'whatever','definitions':{},'$defs':{}}", NULL);
    CHECK(s != NULL);
    EXPECT_VALID(s, "4");
    EXPECT_INVALID(s, "'4'", "$", "expected integer, got string");
    schema_free(s);
}

/* ---- compile problems ---------------------------------------------- */

static void compile_reports_every_problem(void)
{
    problems p;
    schema *s = compile_text(
        "{'type':'object',"
        " 'properties':{'limit':{'type':'int','minLength':'3'},"
        "               'tags':{'items':[{'type':'string'}]},"
        "               'q':{'pattern':'[a-'}},"
        " 'required':'a','foo':1,'anyOf':[],'additionalProperties':3}", &p);
    CHECK(s == NULL);
    CHECK_INT(p.count, 8);
    EXPECT_PROBLEM(p, "$.properties.limit.type: unknown type 'int'");
    EXPECT_PROBLEM(p, "$.properties.limit.minLength: minLength must be a non-negative integer");
    EXPECT_PROBLEM(p, "$.properties.tags.items: the tuple form of items (an array of "
                      "schemas) is not supported; use one schema for every item");
    CHECK_CONTAINS(p.text, "$.properties.q.pattern: invalid pattern (POSIX extended regular expression): ");
    EXPECT_PROBLEM(p, "$.required: required must be an array of property names");
    EXPECT_PROBLEM(p, "$.foo: unsupported keyword 'foo'");
    EXPECT_PROBLEM(p, "$.anyOf: anyOf must be a non-empty array of schemas");
    EXPECT_PROBLEM(p, "$.additionalProperties: a schema must be an object or a boolean");
}

static void compile_rejects_unsupported_keywords(void)
{
    problems p;
    schema *s = compile_text(
        "{'properties':{'a':{'if':{},'then':{},'prefixItems':[],"
        "'patternProperties':{},'dependentRequired':{}}}}", &p);
    CHECK(s == NULL);
    CHECK_INT(p.count, 5);
    EXPECT_PROBLEM(p, "$.properties.a.if: unsupported keyword 'if'");
    EXPECT_PROBLEM(p, "$.properties.a.patternProperties: unsupported keyword 'patternProperties'");
}

static void compile_checks_refs(void)
{
    problems p;
    schema *s = compile_text(
        "{'definitions':{'ok':{}},'properties':{"
        " 'a':{'$ref':'#/definitions/missing'},"
        " 'b':{'$ref':'http://example.com/s.json'},"
        " 'c':{'$ref':'#/properties/a'},"
        " 'd':{'$ref':'#'},"
        " 'e':{'$ref':'#/definitions/ok/properties'},"
        " 'f':{'$ref':5},"
        " 'g':{'$ref':'#/definitions/ok'}}}", &p);
    CHECK(s == NULL);
    CHECK_INT(p.count, 6);
    EXPECT_PROBLEM(p, "$.properties.a.$ref: '#/definitions/missing' does not resolve: "
                      "no such definition");
    EXPECT_PROBLEM(p, "$.properties.b.$ref: only local references '#/definitions/NAME' "
                      "or '#/$defs/NAME' are supported, not 'http://example.com/s.json'");
    CHECK_CONTAINS(p.text, "$.properties.c.$ref: only local references");
    CHECK_CONTAINS(p.text, "$.properties.d.$ref: only local references");
    CHECK_CONTAINS(p.text, "$.properties.e.$ref: only local references");
    EXPECT_PROBLEM(p, "$.properties.f.$ref: $ref must be a string");
}

static void compile_checks_keyword_values(void)
{
    problems p;
    schema *s = compile_text(
        "{'properties':{"
        " 'a':{'exclusiveMinimum':true},"
        " 'b':{'multipleOf':0},"
        " 'c':{'required':['x','x']},"
        " 'd':{'type':[]},"
        " 'e':{'uniqueItems':'yes'},"
        " 'f':{'enum':[]},"
        " 'g':5,"
        " 'h':{'x-secret':'yes'},"
        " 'i':{'exclusiveMaximum':'1'},"
        " 'j':{'minItems':-1,'maxLength':1.5},"
        " 'k':{'type':['string',3]},"
        " 'l':{'nullable':1,'format':2}},"
        " 'definitions':[]}", &p);
    CHECK(s == NULL);
    CHECK_INT(p.count, 15);
    EXPECT_PROBLEM(p, "$.properties.a.exclusiveMinimum: exclusiveMinimum: true needs "
                      "a numeric 'minimum' beside it");
    EXPECT_PROBLEM(p, "$.properties.b.multipleOf: multipleOf must be a number greater than 0");
    EXPECT_PROBLEM(p, "$.properties.c.required[1]: 'x' is listed twice");
    EXPECT_PROBLEM(p, "$.properties.d.type: type must be a type name or a non-empty array of them");
    EXPECT_PROBLEM(p, "$.properties.e.uniqueItems: uniqueItems must be true or false");
    EXPECT_PROBLEM(p, "$.properties.f.enum: enum must be a non-empty array of values");
    EXPECT_PROBLEM(p, "$.properties.g: a schema must be an object or a boolean");
    EXPECT_PROBLEM(p, "$.properties.h.x-secret: x-secret must be true or false");
    EXPECT_PROBLEM(p, "$.properties.i.exclusiveMaximum: exclusiveMaximum must be a number "
                      "(or, draft-4 style, a boolean)");
    EXPECT_PROBLEM(p, "$.properties.j.minItems: minItems must be a non-negative integer");
    EXPECT_PROBLEM(p, "$.properties.j.maxLength: maxLength must be a non-negative integer");
    EXPECT_PROBLEM(p, "$.properties.k.type[1]: type names must be strings");
    EXPECT_PROBLEM(p, "$.properties.l.nullable: nullable must be true or false");
    EXPECT_PROBLEM(p, "$.properties.l.format: format must be a string");
    EXPECT_PROBLEM(p, "$.definitions: definitions must be an object of schemas");
}

static void compile_paths_quote_odd_keys(void)
{
    problems p;
    schema *s = compile_text("{'properties':{'a b':{'type':1},'$x':{'type':1}}}", &p);
    CHECK(s == NULL);
    CHECK_INT(p.count, 2);
    EXPECT_PROBLEM(p, "$.properties[\"a b\"].type: type must be a type name or a "
                      "non-empty array of them");
    CHECK_CONTAINS(p.text, "$.properties.$x.type: ");
}

static void compile_handles_odd_arguments(void)
{
    problems p;
    memset(&p, 0, sizeof p);
    CHECK(schema_compile(NULL, collect, &p) == NULL);
    CHECK_INT(p.count, 1);

    json_t *five = json_integer(5);
    CHECK(schema_compile(five, NULL, NULL) == NULL); /* no callback: still NULL */
    json_decref(five);

    schema_free(NULL);
    CHECK(schema_doc(NULL) == NULL);
}

static void compiled_schema_keeps_its_document(void)
{
    json_t *doc = parse("{'type':'string'}");
    schema *s = schema_compile(doc, NULL, NULL);
    CHECK(schema_doc(s) == doc);
    json_decref(doc);
    CHECK(json_is_object(schema_doc(s)));
    EXPECT_VALID(s, "'still works'");
    schema_free(s);
}

static void validate_handles_odd_arguments(void)
{
    schema_error e;
    json_t *one = json_integer(1);
    CHECK_INT(schema_validate(NULL, one, &e), -1);
    CHECK_STR(e.message, "no schema to validate against");
    schema *s = compile_text("{'type':'integer'}", NULL);
    CHECK_INT(schema_validate(s, NULL, &e), -1);
    CHECK_STR(e.message, "no value to validate");
    CHECK_INT(schema_validate(s, one, NULL), 0);  /* err may be NULL */
    json_t *str = json_string("x");
    CHECK_INT(schema_validate(s, str, NULL), -1);
    json_decref(str);
    json_decref(one);
    schema_free(s);
}

/* ---- redaction ----------------------------------------------------- */

/* schema_redact(s, input) equals `expected`; prints both when not. */
static int redacts_to(const schema *s, const char *input, const char *expected)
{
    json_t *in = parse(input), *want = parse(expected);
    char *before = json_dumps(in, JSON_ENCODE_ANY | JSON_COMPACT);
    json_t *got = schema_redact(s, in);
    char *after = json_dumps(in, JSON_ENCODE_ANY | JSON_COMPACT);
    int ok = got && before && after && json_equal(got, want) && strcmp(before, after) == 0;
    if (!ok) {
        char *text = got ? json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        fprintf(stderr, "  redact %s\n    got  %s\n    want %s\n", input,
                text ? text : "(null)", expected);
        free(text);
    }
    free(before);
    free(after);
    json_decref(in);
    json_decref(want);
    json_decref(got);
    return ok;
}

static void redact_values_the_schema_marks(void)
{
    schema *s = compile_text(
        "{'properties':{'user':{'type':'string'},"
        " 'pin':{'type':'string','writeOnly':true},"
        " 'pw':{'type':'string','format':'password'},"
        " 'card':{'type':'object','x-secret':true},"
        " 'list':{'type':'array','items':{'properties':{'otp':{'writeOnly':true}}}}},"
        " 'additionalProperties':{'x-secret':true}}", NULL);
    CHECK(redacts_to(s,
        "{'user':'bob','pin':'1234','pw':'hunter2','card':{'n':1},"
        " 'list':[{'otp':'1','keep':2},{'keep':3}],'other':'x'}",
        "{'user':'bob','pin':'[redacted]','pw':'[redacted]','card':'[redacted]',"
        " 'list':[{'otp':'[redacted]','keep':2},{'keep':3}],'other':'[redacted]'}"));
    schema_free(s);
}

static void redact_follows_refs(void)
{
    schema *s = compile_text(
        "{'definitions':{'cred':{'type':'string','writeOnly':true},"
        "  'box':{'properties':{'inner':{'$ref':'#/definitions/cred'}}}},"
        " 'properties':{'c':{'$ref':'#/definitions/cred'},"
        "  'boxes':{'items':{'$ref':'#/definitions/box'}},"
        "  'marked':{'$ref':'#/definitions/box','x-secret':true}}}", NULL);
    CHECK(redacts_to(s,
        "{'c':'s3cret','boxes':[{'inner':'a','open':'b'}],'marked':{'inner':1}}",
        "{'c':'[redacted]','boxes':[{'inner':'[redacted]','open':'b'}],"
        " 'marked':'[redacted]'}"));
    schema_free(s);
}

static void redact_credential_names_anywhere(void)
{
    CHECK(redacts_to(NULL,
        "{'password':'x','passwd':'x','Authorization':'Bearer t','X-Api-Key':'k',"
        " 'api-key':'k','apikey':'k','apiKey':'k','stripe_key':'k',"
        " 'accessToken':'t','refresh-token':'r','id_token':'i','Cookie':'c',"
        " 'auth':'a','AUTH_TOKEN':'t','private_key':'p','db_password':'p',"
        " 'credentials':{'user':'u','pass':'p'},"
        " 'nested':{'list':[{'client_secret':'s','name':'n'}]}}",
        "{'password':'[redacted]','passwd':'[redacted]','Authorization':'[redacted]',"
        " 'X-Api-Key':'[redacted]','api-key':'[redacted]','apikey':'[redacted]',"
        " 'apiKey':'[redacted]','stripe_key':'[redacted]','accessToken':'[redacted]',"
        " 'refresh-token':'[redacted]','id_token':'[redacted]','Cookie':'[redacted]',"
        " 'auth':'[redacted]','AUTH_TOKEN':'[redacted]','private_key':'[redacted]',"
        " 'db_password':'[redacted]','credentials':'[redacted]',"
        " 'nested':{'list':[{'client_secret':'[redacted]','name':'n'}]}}"));
}

static void redact_leaves_look_alikes(void)
{
    /* Whole names or suffixes after '_' only: a word merely containing
     * "key" or "token" is data, and token counts are worth logging. */
    const char *text =
        "{'keyword':'k','monkey':1,'tokens_used':5,'token_count':3,'author':'a',"
        " 'keys':['a'],'secretary':'s','passwords_changed':2,'oauth_provider':'g',"
        " 'max_tokens':100}";
    CHECK(redacts_to(NULL, text, text));
}

static void redact_never_fails_on_odd_input(void)
{
    CHECK(schema_redact(NULL, NULL) == NULL);
    CHECK(redacts_to(NULL, "5", "5"));
    CHECK(redacts_to(NULL, "'token'", "'token'")); /* a value, not a key */
    CHECK(redacts_to(NULL, "[{'token':1},[{'secret':2}]]",
                     "[{'token':'[redacted]'},[{'secret':'[redacted]'}]]"));

    /* A schema that describes a different shape still yields a copy. */
    schema *s = compile_text("{'type':'object','properties':{'a':{'writeOnly':true}}}", NULL);
    CHECK(redacts_to(s, "['a',1]", "['a',1]"));
    CHECK(redacts_to(s, "null", "null"));
    schema_free(s);

    /* A whole value can be secret. */
    s = compile_text("{'type':'string','format':'password'}", NULL);
    CHECK(redacts_to(s, "'hunter2'", "'[redacted]'"));
    schema_free(s);

    /* A $ref cycle ends the walk instead of looping. */
    s = compile_text("{'$ref':'#/definitions/a','definitions':{"
                     "'a':{'$ref':'#/definitions/b'},'b':{'$ref':'#/definitions/a'}}}", NULL);
    CHECK(redacts_to(s, "{'x':1,'token':2}", "{'x':1,'token':'[redacted]'}"));
    schema_free(s);
}

static void redact_returns_a_deep_copy(void)
{
    json_t *in = parse("{'a':{'b':[1,'x']}}");
    json_t *out = schema_redact(NULL, in);
    CHECK(out != in);
    CHECK(json_object_get(out, "a") != json_object_get(in, "a"));
    json_string_set(json_array_get(json_object_get(json_object_get(out, "a"), "b"), 1), "y");
    CHECK_STR(json_string_value(json_array_get(json_object_get(json_object_get(in, "a"), "b"), 1)), "x");
    json_decref(in);
    json_decref(out);
}

TESTS(TEST(type_accepts_a_name_or_a_list),
      TEST(integer_accepts_integral_reals),
      TEST(object_errors_point_into_the_instance),
      TEST(required_is_checked_before_properties),
      TEST(properties_are_checked_in_schema_order),
      TEST(additional_properties_false_or_schema),
      TEST(property_counts),
      TEST(odd_keys_are_quoted_in_paths),
      TEST(array_items_are_located_by_index),
      TEST(array_counts_and_unique_items),
      TEST(string_length_counts_code_points),
      TEST(pattern_is_a_posix_extended_regex),
      TEST(format_date),
      TEST(format_date_time),
      TEST(format_email_and_uuid),
      TEST(unknown_formats_are_annotations),
      TEST(inclusive_bounds),
      TEST(exclusive_bounds_numeric_and_draft4),
      TEST(multiple_of_tolerates_float_error),
      TEST(enum_and_const),
      TEST(long_enum_lists_are_cut_not_overrun),
      TEST(any_of_needs_one_match),
      TEST(one_of_counts_matches),
      TEST(all_of_reports_the_failing_part),
      TEST(not_inverts),
      TEST(refs_resolve_definitions_and_defs),
      TEST(recursive_refs_may_nest_deeper_than_the_hop_limit),
      TEST(ref_cycles_fail_clearly),
      TEST(nullable_lets_null_through),
      TEST(boolean_schemas),
      TEST(annotations_are_accepted),
      TEST(compile_reports_every_problem),
      TEST(compile_rejects_unsupported_keywords),
      TEST(compile_checks_refs),
      TEST(compile_checks_keyword_values),
      TEST(compile_paths_quote_odd_keys),
      TEST(compile_handles_odd_arguments),
      TEST(compiled_schema_keeps_its_document),
      TEST(validate_handles_odd_arguments),
      TEST(redact_values_the_schema_marks),
      TEST(redact_follows_refs),
      TEST(redact_credential_names_anywhere),
      TEST(redact_leaves_look_alikes),
      TEST(redact_never_fails_on_odd_input),
      TEST(redact_returns_a_deep_copy))
