/* test_mcpc_proto — MCP messages as data: JSON-RPC classification, requests
 * with 2026-07-28's per-request _meta, version selection from an
 * UnsupportedProtocolVersionError, tool definition checks (x-mcp-header
 * rules), header value encoding (the spec's own examples), and tool
 * results. */
#include "mcpc_proto.h"
#include "testutil.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);
    if (!v)
        fprintf(stderr, "bad test JSON: %s: %s\n", text, e.text);
    return v;
}

static mcpc_msg_kind kind_of(const char *text)
{
    json_t *m = J(text);
    char why[128] = "";
    mcpc_msg_kind k = mcpc_proto_classify(m, why, sizeof why);
    json_decref(m);
    return k;
}

static void messages_are_classified_by_the_json_rpc_rules(void)
{
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"), MCPC_MSG_REQUEST);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"ping\",\"params\":{}}"), MCPC_MSG_REQUEST);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}"), MCPC_MSG_NOTIFICATION);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}"), MCPC_MSG_RESULT);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-1,\"message\":\"x\"}}"), MCPC_MSG_ERROR);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\"message\":\"x\"}}"),
              MCPC_MSG_ERROR);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"x\"}}"), MCPC_MSG_ERROR);
    CHECK_INT(kind_of("[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]"), MCPC_MSG_BATCH);
    /* What must be refused. */
    CHECK_INT(kind_of("{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":{}}"), MCPC_MSG_INVALID);
    CHECK_INT(kind_of("{\"id\":1,\"result\":{}}"), MCPC_MSG_INVALID);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}"), MCPC_MSG_INVALID);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"result\":{}}"), MCPC_MSG_INVALID);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{},\"error\":{\"code\":1,\"message\":\"\"}}"),
              MCPC_MSG_INVALID);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"x\",\"message\":\"m\"}}"),
              MCPC_MSG_INVALID);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[]}"), MCPC_MSG_INVALID);
    CHECK_INT(kind_of("{\"jsonrpc\":\"2.0\",\"id\":1}"), MCPC_MSG_INVALID);
    CHECK_INT(kind_of("\"text\""), MCPC_MSG_INVALID);
}

static void modern_requests_carry_version_identity_and_capabilities_in_meta(void)
{
    json_t *r = mcpc_proto_request(7, "tools/list", json_pack("{s:s}", "cursor", "c1"), MCPC_MODERN_VERSION);
    json_t *meta = json_object_get(json_object_get(r, "params"), "_meta");
    CHECK_STR(json_string_value(json_object_get(r, "jsonrpc")), "2.0");
    CHECK_INT(json_integer_value(json_object_get(r, "id")), 7);
    CHECK_STR(json_string_value(json_object_get(json_object_get(r, "params"), "cursor")), "c1");
    CHECK_STR(json_string_value(json_object_get(meta, "io.modelcontextprotocol/protocolVersion")), "2026-07-28");
    CHECK(json_is_object(json_object_get(meta, "io.modelcontextprotocol/clientCapabilities")));
    CHECK_STR(json_string_value(json_object_get(json_object_get(meta, "io.modelcontextprotocol/clientInfo"), "name")),
              "ferry");
    json_decref(r);
    json_t *legacy = mcpc_proto_request(1, "tools/list", NULL, NULL);
    CHECK(json_object_get(json_object_get(legacy, "params"), "_meta") == NULL);
    json_decref(legacy);
}

static void an_unsupported_version_error_picks_the_best_common_version(void)
{
    json_t *e = J("{\"code\":-32022,\"message\":\"x\",\"data\":{\"supported\":[\"2024-11-05\",\"2025-11-25\"],"
                  "\"requested\":\"2026-07-28\"}}");
    CHECK(mcpc_proto_is_modern_error(e));
    CHECK_STR(mcpc_proto_pick_version(e), "2025-11-25");
    json_decref(e);
    e = J("{\"code\":-32022,\"message\":\"x\",\"data\":{\"supported\":[\"1999-01-01\"]}}");
    CHECK(mcpc_proto_pick_version(e) == NULL);
    json_decref(e);
    /* server-everything's answer to a modern request is not a modern error. */
    e = J("{\"code\":-32000,\"message\":\"Bad Request: Server not initialized\"}");
    CHECK(!mcpc_proto_is_modern_error(e));
    json_decref(e);
    e = J("{\"code\":-32022,\"message\":\"no data\"}");
    CHECK(!mcpc_proto_is_modern_error(e));
    json_decref(e);
    CHECK(mcpc_proto_is_legacy("2024-11-05"));
    CHECK(mcpc_proto_is_legacy("2025-11-25"));
    CHECK(!mcpc_proto_is_legacy("2026-07-28"));
    CHECK(!mcpc_proto_is_legacy("2024-10-07"));
}

static int tool_ok(const char *text, int headers, char *why, size_t cap)
{
    json_t *t = J(text);
    int rc = mcpc_proto_check_tool(t, headers, why, cap);
    json_decref(t);
    return rc;
}

static void tool_definitions_need_a_name_and_an_object_input_schema(void)
{
    char why[200];
    CHECK_INT(tool_ok("{\"name\":\"echo\",\"inputSchema\":{\"type\":\"object\"}}", 1, why, sizeof why), 0);
    CHECK_INT(tool_ok("{\"name\":\"\",\"inputSchema\":{\"type\":\"object\"}}", 0, why, sizeof why), -1);
    CHECK_INT(tool_ok("{\"name\":\"x\"}", 0, why, sizeof why), -1);
    CHECK_CONTAINS(why, "inputSchema");
    CHECK_INT(tool_ok("{\"name\":\"x\",\"inputSchema\":{\"type\":\"string\"}}", 0, why, sizeof why), -1);
    CHECK_INT(tool_ok("{\"name\":\"x\\n\",\"inputSchema\":{\"type\":\"object\"}}", 0, why, sizeof why), -1);
    CHECK_INT(tool_ok("{\"name\":\"x\",\"description\":5,\"inputSchema\":{\"type\":\"object\"}}", 0, why, sizeof why),
              -1);
}

static void x_mcp_header_rules_reject_the_tool_definition(void)
{
    char why[200];
    const char *good = "{\"name\":\"sql\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
                       "\"region\":{\"type\":\"string\",\"x-mcp-header\":\"Region\"},"
                       "\"opts\":{\"type\":\"object\",\"properties\":{\"dry\":{\"type\":\"boolean\",\"x-mcp-header\":\"Dry-Run\"}}}}}}";
    CHECK_INT(tool_ok(good, 1, why, sizeof why), 0);
    /* Under items, or a number, or twice (case-insensitively), or not a token. */
    CHECK_INT(tool_ok("{\"name\":\"t\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"l\":{\"type\":\"array\","
                      "\"items\":{\"type\":\"string\",\"x-mcp-header\":\"L\"}}}}}", 1, why, sizeof why), -1);
    CHECK_CONTAINS(why, "reached through properties");
    CHECK_INT(tool_ok("{\"name\":\"t\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\","
                      "\"x-mcp-header\":\"N\"}}}}", 1, why, sizeof why), -1);
    CHECK_INT(tool_ok("{\"name\":\"t\",\"inputSchema\":{\"type\":\"object\",\"properties\":{"
                      "\"a\":{\"type\":\"string\",\"x-mcp-header\":\"Name\"},\"b\":{\"type\":\"string\",\"x-mcp-header\":\"NAME\"}}}}",
                      1, why, sizeof why), -1);
    CHECK_CONTAINS(why, "twice");
    CHECK_INT(tool_ok("{\"name\":\"t\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\","
                      "\"x-mcp-header\":\"Bad Name\"}}}}", 1, why, sizeof why), -1);
    CHECK_INT(tool_ok("{\"name\":\"t\",\"inputSchema\":{\"type\":\"object\",\"anyOf\":[{\"properties\":{\"a\":{"
                      "\"type\":\"string\",\"x-mcp-header\":\"A\"}}}]}}", 1, why, sizeof why), -1);
    /* Over stdio the annotations may be ignored; a "default" that merely
     * contains the key is data, not an annotation. */
    CHECK_INT(tool_ok("{\"name\":\"t\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"number\","
                      "\"x-mcp-header\":\"N\"}}}}", 0, why, sizeof why), 0);
    CHECK_INT(tool_ok("{\"name\":\"t\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"o\":{\"type\":\"object\","
                      "\"default\":{\"x-mcp-header\":1}}}}}", 1, why, sizeof why), 0);
}

static void annotated_arguments_become_mcp_param_headers(void)
{
    json_t *schema = J("{\"type\":\"object\",\"properties\":{"
                       "\"region\":{\"type\":\"string\",\"x-mcp-header\":\"Region\"},"
                       "\"greeting\":{\"type\":\"string\",\"x-mcp-header\":\"Greeting\"},"
                       "\"n\":{\"type\":\"integer\",\"x-mcp-header\":\"N\"},"
                       "\"missing\":{\"type\":\"string\",\"x-mcp-header\":\"Missing\"},"
                       "\"opts\":{\"type\":\"object\",\"properties\":{\"dry\":{\"type\":\"boolean\",\"x-mcp-header\":\"Dry\"}}}}}");
    json_t *ph = mcpc_proto_param_headers(schema);
    CHECK_INT(json_array_size(ph), 5);
    json_t *args = J("{\"region\":\"us-west1\",\"greeting\":\"Hello, \xe4\xb8\x96\xe7\x95\x8c\",\"n\":-7,"
                     "\"opts\":{\"dry\":true},\"missing\":null}");
    struct curl_slist *h = NULL;
    char why[200];
    CHECK_INT(mcpc_proto_add_param_headers(&h, ph, args, why, sizeof why), 0);
    int seen = 0;
    for (struct curl_slist *l = h; l; l = l->next) {
        seen++;
        if (strncmp(l->data, "Mcp-Param-Region:", 17) == 0)
            CHECK_STR(l->data, "Mcp-Param-Region: us-west1");
        else if (strncmp(l->data, "Mcp-Param-Greeting:", 19) == 0)
            CHECK_STR(l->data, "Mcp-Param-Greeting: =?base64?SGVsbG8sIOS4lueVjA==?=");
        else if (strncmp(l->data, "Mcp-Param-N:", 12) == 0)
            CHECK_STR(l->data, "Mcp-Param-N: -7");
        else if (strncmp(l->data, "Mcp-Param-Dry:", 14) == 0)
            CHECK_STR(l->data, "Mcp-Param-Dry: true");
        else
            CHECK(!"unexpected header");
    }
    CHECK_INT(seen, 4);   /* null and absent values send no header */
    curl_slist_free_all(h);
    json_decref(args);
    /* An integer JavaScript cannot hold exactly is refused. */
    args = J("{\"n\":9007199254740993}");
    h = NULL;
    CHECK_INT(mcpc_proto_add_param_headers(&h, ph, args, why, sizeof why), -1);
    CHECK_CONTAINS(why, "safe integer");
    curl_slist_free_all(h);
    json_decref(args);
    json_decref(ph);
    json_decref(schema);
}

static void header_values_follow_the_spec_examples(void)
{
    struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"us-west1", "us-west1"},
        {"Hello, \xe4\xb8\x96\xe7\x95\x8c", "=?base64?SGVsbG8sIOS4lueVjA==?="},
        {" padded ", "=?base64?IHBhZGRlZCA=?="},
        {"line1\nline2", "=?base64?bGluZTEKbGluZTI=?="},
        {"=?base64?literal?=", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *v = mcpc_proto_header_value(cases[i].in, strlen(cases[i].in));
        CHECK_STR(v, cases[i].out);
        free(v);
    }
}

static void read_only_needs_the_hint_and_anything_else_is_a_write(void)
{
    json_t *t = J("{\"annotations\":{\"readOnlyHint\":true,\"destructiveHint\":false}}");
    CHECK(mcpc_proto_is_read_only(t));
    json_decref(t);
    t = J("{\"annotations\":{\"destructiveHint\":false}}");
    CHECK(!mcpc_proto_is_read_only(t));
    json_decref(t);
    t = J("{\"name\":\"x\"}");
    CHECK(!mcpc_proto_is_read_only(t));
    json_decref(t);
}

static void tool_results_keep_content_structured_content_and_is_error(void)
{
    char why[200];
    json_t *out = NULL;
    json_t *r = J("{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}],\"structuredContent\":{\"t\":1},\"_meta\":{}}");
    CHECK_INT(mcpc_proto_call_result(r, &out, why, sizeof why), 0);
    CHECK(json_is_false(json_object_get(out, "isError")));
    CHECK_INT(json_integer_value(json_object_get(json_object_get(out, "structuredContent"), "t")), 1);
    CHECK_INT(json_array_size(json_object_get(out, "content")), 1);
    CHECK(json_object_get(out, "_meta") == NULL);
    json_decref(out);
    json_decref(r);
    r = J("{\"resultType\":\"complete\",\"content\":[],\"isError\":true}");
    CHECK_INT(mcpc_proto_call_result(r, &out, why, sizeof why), 0);
    CHECK(json_is_true(json_object_get(out, "isError")));
    json_decref(out);
    json_decref(r);
    r = J("{\"resultType\":\"input_required\",\"inputRequests\":{}}");
    CHECK_INT(mcpc_proto_call_result(r, &out, why, sizeof why), -1);
    CHECK_CONTAINS(why, "needs input");
    json_decref(r);
    r = J("{\"resultType\":\"later\",\"content\":[]}");
    CHECK_INT(mcpc_proto_call_result(r, &out, why, sizeof why), -1);
    json_decref(r);
    r = J("{\"text\":\"no content\"}");
    CHECK_INT(mcpc_proto_call_result(r, &out, why, sizeof why), -1);
    CHECK_CONTAINS(why, "content");
    json_decref(r);
}

TESTS(TEST(messages_are_classified_by_the_json_rpc_rules),
      TEST(modern_requests_carry_version_identity_and_capabilities_in_meta),
      TEST(an_unsupported_version_error_picks_the_best_common_version),
      TEST(tool_definitions_need_a_name_and_an_object_input_schema),
      TEST(x_mcp_header_rules_reject_the_tool_definition), TEST(annotated_arguments_become_mcp_param_headers),
      TEST(header_values_follow_the_spec_examples), TEST(read_only_needs_the_hint_and_anything_else_is_a_write),
      TEST(tool_results_keep_content_structured_content_and_is_error))
