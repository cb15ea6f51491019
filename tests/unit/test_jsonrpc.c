/* test_jsonrpc — reading JSON-RPC 2.0 messages: requests, notifications
 * and responses told apart, every malformed shape refused with its code
 * (and the id kept when it can be read), and the messages built to send. */
#include "jsonrpc.h"
#include "testutil.h"

static int parse(const char *text, jsonrpc_msg *m, jsonrpc_error *e)
{
    return jsonrpc_parse(text, strlen(text), m, e);
}

static void reads_a_request_with_params(void)
{
    jsonrpc_msg m;
    jsonrpc_error e;
    CHECK_INT(parse("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\",\"params\":{\"cursor\":\"x\"}}", &m, &e), 0);
    CHECK_INT(m.kind, JSONRPC_REQUEST);
    CHECK_STR(m.method, "tools/list");
    CHECK_INT(json_integer_value(m.id), 7);
    CHECK_STR(json_string_value(json_object_get(m.params, "cursor")), "x");
    jsonrpc_msg_clear(&m);
}

static void reads_a_notification_and_a_string_id(void)
{
    jsonrpc_msg m;
    jsonrpc_error e;
    CHECK_INT(parse("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", &m, &e), 0);
    CHECK_INT(m.kind, JSONRPC_NOTIFICATION);
    CHECK(m.id == NULL);
    CHECK(m.params == NULL);
    jsonrpc_msg_clear(&m);
    CHECK_INT(parse("{\"jsonrpc\":\"2.0\",\"id\":\"a-1\",\"method\":\"ping\",\"params\":[]}", &m, &e), 0);
    CHECK_STR(json_string_value(m.id), "a-1");
    CHECK(json_is_array(m.params));
    jsonrpc_msg_clear(&m);
}

static void reads_responses(void)
{
    jsonrpc_msg m;
    jsonrpc_error e;
    CHECK_INT(parse("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", &m, &e), 0);
    CHECK_INT(m.kind, JSONRPC_RESPONSE);
    CHECK(json_is_object(m.result));
    jsonrpc_msg_clear(&m);
    /* An error whose request id could not be read has none. */
    CHECK_INT(parse("{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"x\"}}", &m, &e), 0);
    CHECK_INT(m.kind, JSONRPC_RESPONSE);
    CHECK(m.id == NULL);
    CHECK_INT(json_integer_value(json_object_get(m.error, "code")), -32700);
    jsonrpc_msg_clear(&m);
}

static void refuses_text_that_is_not_json_with_a_parse_error(void)
{
    jsonrpc_msg m;
    jsonrpc_error e;
    CHECK_INT(parse("{\"jsonrpc\":\"2.0\",", &m, &e), -1);
    CHECK_INT(e.code, JSONRPC_PARSE_ERROR);
    CHECK(e.id == NULL);
    CHECK_CONTAINS(e.message, "not valid JSON");
    jsonrpc_error_clear(&e);
    CHECK_INT(parse("{\"id\":1,\"id\":2}", &m, &e), -1);   /* which id? */
    CHECK_INT(e.code, JSONRPC_PARSE_ERROR);
    jsonrpc_error_clear(&e);
}

static void refuses_batches_and_says_so(void)
{
    jsonrpc_msg m;
    jsonrpc_error e;
    CHECK_INT(parse("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", &m, &e), -1);
    CHECK_INT(e.code, JSONRPC_INVALID_REQUEST);
    CHECK_INT(e.is_batch, 1);
    jsonrpc_error_clear(&e);
}

static void refuses_malformed_messages_keeping_a_readable_id(void)
{
    static const struct {
        const char *text;
        long long id;      /* -1: none */
        const char *says;
    } cases[] = {
        {"\"ping\"", -1, "object"},
        {"{\"id\":3,\"method\":\"ping\"}", 3, "jsonrpc"},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"ping\"}", -1, "id"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"ping\"}", -1, "id"},
        {"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", -1, "id"},
        {"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":7}", 4, "method"},
        {"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"x\",\"params\":1}", 5, "params"},
        {"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"x\",\"result\":{}}", 6, "result"},
        {"{\"jsonrpc\":\"2.0\",\"id\":8}", 8, "neither"},
        {"{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":1,\"error\":{\"code\":1,\"message\":\"m\"}}", 9, "not both"},
        {"{\"jsonrpc\":\"2.0\",\"id\":10,\"error\":{\"code\":\"x\",\"message\":\"m\"}}", 10, "integer code"},
        {"{\"jsonrpc\":\"2.0\",\"result\":{}}", -1, "id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jsonrpc_msg m;
        jsonrpc_error e;
        CHECK_INT(parse(cases[i].text, &m, &e), -1);
        CHECK_INT(e.code, JSONRPC_INVALID_REQUEST);
        CHECK_CONTAINS(e.message, cases[i].says);
        if (cases[i].id < 0)
            CHECK(e.id == NULL);
        else
            CHECK_INT(json_integer_value(e.id), cases[i].id);
        jsonrpc_error_clear(&e);
    }
}

static void builds_messages(void)
{
    json_t *id = json_integer(3);
    json_t *r = jsonrpc_result(id, json_pack("{s:b}", "ok", 1));
    char *text = json_dumps(r, JSON_SORT_KEYS | JSON_COMPACT);
    CHECK_STR(text, "{\"id\":3,\"jsonrpc\":\"2.0\",\"result\":{\"ok\":true}}");
    free(text);
    json_decref(r);

    r = jsonrpc_error_response(NULL, JSONRPC_PARSE_ERROR, "bad", NULL);
    text = json_dumps(r, JSON_SORT_KEYS | JSON_COMPACT);
    CHECK_STR(text, "{\"error\":{\"code\":-32700,\"message\":\"bad\"},\"jsonrpc\":\"2.0\"}");
    free(text);
    json_decref(r);

    r = jsonrpc_error_response(id, -32022, "v", json_pack("{s:s}", "requested", "x"));
    CHECK_STR(json_string_value(json_object_get(json_object_get(json_object_get(r, "error"), "data"), "requested")),
              "x");
    CHECK(json_object_get(r, "id") == id);
    json_decref(r);

    r = jsonrpc_request(id, "tools/list", NULL);
    CHECK(json_object_get(r, "params") == NULL);
    CHECK_STR(json_string_value(json_object_get(r, "method")), "tools/list");
    json_decref(r);
    r = jsonrpc_notification("notifications/initialized", json_object());
    CHECK(json_object_get(r, "id") == NULL);
    CHECK(json_is_object(json_object_get(r, "params")));
    json_decref(r);
    json_decref(id);
}

TESTS(TEST(reads_a_request_with_params), TEST(reads_a_notification_and_a_string_id), TEST(reads_responses),
      TEST(refuses_text_that_is_not_json_with_a_parse_error), TEST(refuses_batches_and_says_so),
      TEST(refuses_malformed_messages_keeping_a_readable_id), TEST(builds_messages))
