/* test_mcp_http — MCP's Streamable HTTP header rules (2026-07-28): header
 * values trimmed and Base64-sentinel decoded strictly, the x-mcp-header
 * constraints, and how a header value is compared with its argument. */
#include "mcp_http.h"
#include "testutil.h"

static char *decode(const char *raw)
{
    return mcp_header_decode(raw, NULL);
}

static void plain_values_are_trimmed_and_kept(void)
{
    char *v = decode("  us-west1 \t");
    CHECK_STR(v, "us-west1");
    free(v);
    v = decode("a b");
    CHECK_STR(v, "a b");
    free(v);
    /* Without both markers it is a literal. */
    v = decode("=?base64?SGVsbG8=");
    CHECK_STR(v, "=?base64?SGVsbG8=");
    free(v);
    v = decode("SGVsbG8=?=");
    CHECK_STR(v, "SGVsbG8=?=");
    free(v);
}

static void sentinel_values_are_decoded(void)
{
    size_t len;
    char *v = mcp_header_decode("=?base64?SGVsbG8sIOS4lueVjA==?=", &len);
    CHECK_STR(v, "Hello, \xe4\xb8\x96\xe7\x95\x8c");
    CHECK_INT(len, 13);
    free(v);
    v = mcp_header_decode("=?base64?bGluZTEKbGluZTI=?=", &len);
    CHECK_STR(v, "line1\nline2");
    free(v);
    v = mcp_header_decode("=?base64?" "?=", &len);   /* split: "??=" is a trigraph */
    CHECK_STR(v, "");
    CHECK_INT(len, 0);
    free(v);
}

static void malformed_values_are_refused(void)
{
    CHECK(decode("=?base64?SGVsbG8?=") == NULL);       /* padding missing */
    CHECK(decode("=?base64?SGVs!!!bG8=?=") == NULL);   /* not the alphabet */
    CHECK(decode("=?base64?SGVsbG8===?=") == NULL);
    CHECK(decode("=?base64?SG=sbG8=?=") == NULL);      /* padding inside */
    CHECK(decode("caf\xc3\xa9") == NULL);              /* not ASCII: must be encoded */
    CHECK(decode("a\x01z") == NULL);
    CHECK(decode(NULL) == NULL);
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fprintf(stderr, "bad test JSON: %s\n", jerr.text);
    return v;
}

static int read_headers(const char *schema_text, mcp_param_header **h, size_t *n, char *why)
{
    json_t *schema = parse(schema_text);
    int rc = mcp_param_headers_read(schema, h, n, why, 256);
    json_decref(schema);
    return rc;
}

static void declarations_are_read_with_their_paths(void)
{
    mcp_param_header *h;
    size_t n;
    char why[256] = "";
    CHECK_INT(read_headers("{\"type\":\"object\",\"properties\":{"
                           "\"region\":{\"type\":\"string\",\"x-mcp-header\":\"Region\"},"
                           "\"opts\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"x-mcp-header\":\"N\"}}},"
                           "\"q\":{\"type\":\"string\",\"default\":{\"x-mcp-header\":\"data, not a schema\"}}}}",
                           &h, &n, why), 0);
    CHECK_INT(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(h[i].name, "Region") == 0) {
            CHECK_INT(h[i].depth, 1);
            CHECK_STR(h[i].path[0], "region");
            CHECK_INT(h[i].type, MCP_PARAM_STRING);
        } else {
            CHECK_STR(h[i].name, "N");
            CHECK_INT(h[i].depth, 2);
            CHECK_STR(h[i].path[1], "n");
            CHECK_INT(h[i].type, MCP_PARAM_INTEGER);
        }
    }
    json_t *args = parse("{\"region\":\"eu\",\"opts\":{\"n\":3}}");
    for (size_t i = 0; i < n; i++)
        CHECK(mcp_param_value(&h[i], args) != NULL);
    json_decref(args);
    mcp_param_headers_free(h, n);

    CHECK_INT(read_headers("{\"type\":\"object\"}", &h, &n, why), 0);
    CHECK_INT(n, 0);
    mcp_param_headers_free(h, n);
}

static void constraint_violations_are_refused(void)
{
    static const struct {
        const char *schema;
        const char *says;
    } cases[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"x-mcp-header\":\"\"}}}", "token"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"x-mcp-header\":\"A B\"}}}", "token"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"x-mcp-header\":7}}}", "token"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\",\"x-mcp-header\":\"A\"}}}", "type"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"x-mcp-header\":\"A\"}}}", "type"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"x-mcp-header\":\"Dup\"},"
         "\"b\":{\"type\":\"string\",\"x-mcp-header\":\"dup\"}}}", "twice"},
        {"{\"type\":\"object\",\"x-mcp-header\":\"Root\"}", "root"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\",\"items\":{\"type\":\"string\","
         "\"x-mcp-header\":\"A\"}}}}", "properties alone"},
        {"{\"type\":\"object\",\"anyOf\":[{\"properties\":{\"a\":{\"type\":\"string\",\"x-mcp-header\":\"A\"}}}]}",
         "properties alone"},
        {"{\"type\":\"object\",\"$defs\":{\"x\":{\"type\":\"string\",\"x-mcp-header\":\"A\"}}}", "properties alone"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mcp_param_header *h = (mcp_param_header *)1;
        size_t n = 99;
        char why[256] = "";
        CHECK_INT(read_headers(cases[i].schema, &h, &n, why), -1);
        CHECK_CONTAINS(why, cases[i].says);
        CHECK(h == NULL);
        CHECK_INT(n, 0);
    }
}

static void values_compare_as_the_specification_converts_them(void)
{
    mcp_param_header h = {.type = MCP_PARAM_INTEGER};
    json_t *v = json_integer(42);
    CHECK(mcp_param_matches(&h, "42", 2, v));
    CHECK(mcp_param_matches(&h, "42.0", 4, v));
    CHECK(!mcp_param_matches(&h, "0x2A", 4, v));
    CHECK(!mcp_param_matches(&h, "43", 2, v));
    CHECK(!mcp_param_matches(&h, "", 0, v));
    json_decref(v);
    v = json_true();
    CHECK(mcp_param_matches(&h, "true", 4, v));
    CHECK(!mcp_param_matches(&h, "True", 4, v));
    json_decref(v);
    v = json_string("us-west1");
    CHECK(mcp_param_matches(&h, "us-west1", 8, v));
    CHECK(!mcp_param_matches(&h, "us-west", 7, v));
    json_decref(v);
}

TESTS(TEST(plain_values_are_trimmed_and_kept), TEST(sentinel_values_are_decoded), TEST(malformed_values_are_refused),
      TEST(declarations_are_read_with_their_paths), TEST(constraint_violations_are_refused),
      TEST(values_compare_as_the_specification_converts_them))
