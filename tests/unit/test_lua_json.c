/* test_lua_json — JSON between Lua and jansson: integers and floats keep
 * their kind, empty tables and the array mark, json.null, the errors for
 * values without a JSON form (with their path), invalid UTF-8, decode
 * errors, and json.encode/json.decode as scripts see them.
 *
 * A plain lua_State with the standard libraries is enough here; the
 * sandbox is test_lhost's concern. */
#include "lua_json.h"
#include "testutil.h"

#include <lauxlib.h>
#include <lualib.h>

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    lua_json_open(L);
    lua_setglobal(L, "json");
    return L;
}

/* Runs `code` and leaves its single result on the stack; NULL-safe
 * reporting of errors. */
static int run(lua_State *L, const char *code)
{
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "  lua error in [%s]: %s\n", code, lua_tostring(L, -1));
        return -1;
    }
    return 0;
}

/* Evaluates the Lua expression `expr` and returns the compact JSON text
 * lua_json_from makes of it (malloc'ed), or NULL with `err` filled. */
static char *to_json_text(lua_State *L, const char *expr, ferr *err)
{
    char code[2048];
    snprintf(code, sizeof code, "return %s", expr);
    int top = lua_gettop(L);
    if (run(L, code) < 0) {
        lua_settop(L, top);
        return NULL;
    }
    json_t *v = lua_json_from(L, -1, err);
    if (lua_gettop(L) != top + 1)
        fprintf(stderr, "  lua_json_from changed the stack\n");
    CHECK_INT(lua_gettop(L), top + 1);
    lua_settop(L, top);
    if (!v)
        return NULL;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    json_decref(v);
    return text;
}

#define EXPECT_JSON(L, expr, want)                                                           \
    do {                                                                                     \
        ferr e_ = {0};                                                                       \
        char *t_ = to_json_text(L, expr, &e_);                                               \
        if (!t_)                                                                             \
            fprintf(stderr, "  %s -> error: %s\n", expr, e_.message);                        \
        CHECK_STR(t_, want);                                                                 \
        free(t_);                                                                            \
        ferr_clear(&e_);                                                                     \
    } while (0)

#define EXPECT_ERROR(L, expr, want_message)                                                  \
    do {                                                                                     \
        ferr e_ = {0};                                                                       \
        char *t_ = to_json_text(L, expr, &e_);                                               \
        if (t_)                                                                              \
            fprintf(stderr, "  %s -> %s (expected an error)\n", expr, t_);                   \
        CHECK(t_ == NULL);                                                                   \
        free(t_);                                                                            \
        CHECK_INT(e_.code, FERR_SCRIPT_ERROR);                                               \
        CHECK_STR(e_.message, want_message);                                                 \
        ferr_clear(&e_);                                                                     \
    } while (0)

#define EXPECT_ERROR_CONTAINS(L, expr, want)                                                 \
    do {                                                                                     \
        ferr e_ = {0};                                                                       \
        char *t_ = to_json_text(L, expr, &e_);                                               \
        CHECK(t_ == NULL);                                                                   \
        free(t_);                                                                            \
        CHECK_INT(e_.code, FERR_SCRIPT_ERROR);                                               \
        CHECK_CONTAINS(e_.message, want);                                                    \
        ferr_clear(&e_);                                                                     \
    } while (0)

/* Evaluates a Lua expression that must yield a string, compared to `want`. */
#define EXPECT_LUA_STRING(L, expr, want)                                                     \
    do {                                                                                     \
        char code_[2048];                                                                    \
        snprintf(code_, sizeof code_, "return %s", expr);                                    \
        int top_ = lua_gettop(L);                                                            \
        if (run(L, code_) == 0)                                                              \
            CHECK_STR(lua_tostring(L, -1), want);                                            \
        else                                                                                 \
            tu_failures++;                                                                   \
        lua_settop(L, top_);                                                                 \
    } while (0)

/* ---- numbers -------------------------------------------------------- */

static void integers_stay_integers_both_ways(void)
{
    lua_State *L = new_state();
    EXPECT_JSON(L, "9007199254740993", "9007199254740993");
    EXPECT_JSON(L, "math.maxinteger", "9223372036854775807");
    EXPECT_JSON(L, "math.mininteger", "-9223372036854775808");
    EXPECT_JSON(L, "{id = 9007199254740993}", "{\"id\":9007199254740993}");

    CHECK_INT(lua_json_decode_push(L, "9007199254740993", 16), 1);
    CHECK(lua_isinteger(L, -1));
    CHECK_INT(lua_tointeger(L, -1), 9007199254740993LL);
    lua_pop(L, 1);

    /* Through Lua code: the id survives decode + arithmetic + encode. */
    EXPECT_LUA_STRING(L, "json.encode(json.decode('{\"id\":9007199254740993}').id + 0)", "9007199254740993");
    EXPECT_LUA_STRING(L, "math.type(json.decode('[123]')[1])", "integer");
    EXPECT_LUA_STRING(L, "json.encode(123)", "123");
    lua_close(L);
}

static void floats_stay_floats_both_ways(void)
{
    lua_State *L = new_state();
    EXPECT_JSON(L, "1.0", "1.0");
    EXPECT_JSON(L, "1234.56", "1234.56");
    EXPECT_JSON(L, "-0.5", "-0.5");
    EXPECT_JSON(L, "1e300", "1e300");

    CHECK_INT(lua_json_decode_push(L, "1.0", 3), 1);
    CHECK(!lua_isinteger(L, -1));
    CHECK(lua_tonumber(L, -1) == 1.0);
    lua_pop(L, 1);
    EXPECT_LUA_STRING(L, "math.type(json.decode('2.0'))", "float");
    EXPECT_LUA_STRING(L, "json.encode(json.decode('[2.0, 2]'))", "[2.0,2]");
    EXPECT_LUA_STRING(L, "json.encode(0.1)", "0.1");
    lua_close(L);
}

static void nan_and_infinity_are_errors(void)
{
    lua_State *L = new_state();
    EXPECT_ERROR(L, "0/0", "cannot encode $ as JSON: NaN and infinity have no JSON form");
    EXPECT_ERROR(L, "math.huge", "cannot encode $ as JSON: NaN and infinity have no JSON form");
    EXPECT_ERROR(L, "{x = -math.huge}", "cannot encode $.x as JSON: NaN and infinity have no JSON form");
    lua_close(L);
}

/* ---- tables, arrays and null ---------------------------------------- */

static void empty_table_is_an_object_and_json_array_marks_arrays(void)
{
    lua_State *L = new_state();
    EXPECT_JSON(L, "{}", "{}");
    EXPECT_JSON(L, "json.array({})", "[]");
    EXPECT_JSON(L, "json.array()", "[]");
    EXPECT_JSON(L, "{list = json.array{}, obj = {}}", "{\"list\":[],\"obj\":{}}");
    EXPECT_JSON(L, "json.array{1, 2}", "[1,2]");
    EXPECT_JSON(L, "{1, 2, 3}", "[1,2,3]");
    EXPECT_JSON(L, "{'a', {b = true}}", "[\"a\",{\"b\":true}]");
    /* String keys that look like numbers are still object keys. */
    EXPECT_JSON(L, "{['1'] = 'a'}", "{\"1\":\"a\"}");
    /* json.array returns the very table it marked. */
    EXPECT_LUA_STRING(L, "(function() local t = {} return tostring(json.array(t) == t) end)()", "true");
    lua_close(L);
}

static void decoded_arrays_round_trip_as_arrays_even_when_empty(void)
{
    lua_State *L = new_state();
    EXPECT_LUA_STRING(L, "json.encode(json.decode('[]'))", "[]");
    EXPECT_LUA_STRING(L, "json.encode(json.decode('{}'))", "{}");
    EXPECT_LUA_STRING(L, "json.encode(json.decode('{\"a\":[],\"b\":{},\"c\":[[]]}'))",
                      "{\"a\":[],\"b\":{},\"c\":[[]]}");
    /* Emptied by the script, still an array. */
    EXPECT_LUA_STRING(L, "(function() local t = json.decode('[1,2]') t[2] = nil t[1] = nil return json.encode(t) end)()",
                      "[]");
    /* lua_json_push from C marks arrays the same way. */
    json_t *doc = json_loads("{\"items\":[],\"n\":[1,2]}", 0, NULL);
    lua_json_push(L, doc);
    json_decref(doc);
    lua_setglobal(L, "doc");
    EXPECT_LUA_STRING(L, "json.encode(doc)", "{\"items\":[],\"n\":[1,2]}");
    EXPECT_LUA_STRING(L, "tostring(#doc.n)", "2");
    lua_close(L);
}

static void null_round_trips_in_arrays_and_objects(void)
{
    lua_State *L = new_state();
    EXPECT_LUA_STRING(L, "json.encode(json.decode('[1,null,3]'))", "[1,null,3]");
    EXPECT_LUA_STRING(L, "json.encode(json.decode('{\"a\":null}'))", "{\"a\":null}");
    EXPECT_LUA_STRING(L, "json.encode(json.decode('[null]'))", "[null]");
    EXPECT_LUA_STRING(L, "json.encode(json.decode('null'))", "null");
    EXPECT_LUA_STRING(L, "tostring(json.decode('null') == json.null)", "true");
    EXPECT_LUA_STRING(L, "tostring(json.decode('[null]')[1] == json.null)", "true");
    EXPECT_JSON(L, "{1, json.null, 3}", "[1,null,3]");
    EXPECT_JSON(L, "{a = json.null}", "{\"a\":null}");
    EXPECT_JSON(L, "json.null", "null");
    EXPECT_JSON(L, "nil", "null");
    lua_close(L);
}

static void sparse_and_mixed_tables_are_errors_with_a_path(void)
{
    lua_State *L = new_state();
    /* Paths are JSON paths: object keys after '.', array indexes from 0. */
    EXPECT_ERROR(L, "{1, nil, 3}",
                 "cannot encode $ as JSON: an array has holes (use json.null for missing values)");
    EXPECT_ERROR(L, "{items = {1, nil, 3}}",
                 "cannot encode $.items as JSON: an array has holes (use json.null for missing values)");
    EXPECT_ERROR(L, "{1, 2, x = 3}", "cannot encode $ as JSON: a table mixes string keys with other keys");
    EXPECT_ERROR(L, "{value = {items = {{}, {}, {1, n = 2}}}}",
                 "cannot encode $.value.items[2] as JSON: a table mixes string keys with other keys");
    EXPECT_ERROR_CONTAINS(L, "{[0] = 'zero', 'one'}", "cannot encode $ as JSON: ");
    EXPECT_ERROR_CONTAINS(L, "{[1.5] = 1}", "cannot encode $ as JSON: ");
    EXPECT_ERROR_CONTAINS(L, "{[true] = 1}", "cannot encode $ as JSON: ");
    EXPECT_ERROR(L, "{a = {b = print}}", "cannot encode $.a.b as JSON: function");
    EXPECT_ERROR(L, "{io.stdout}", "cannot encode $[0] as JSON: userdata");
    EXPECT_ERROR(L, "{x = coroutine.create(print)}", "cannot encode $.x as JSON: thread");
    lua_close(L);
}

static void cycles_and_deep_nesting_are_errors(void)
{
    lua_State *L = new_state();
    ferr e = {0};
    char *t = to_json_text(L, "(function() local t = {} t.self = t return t end)()", &e);
    CHECK(t == NULL);
    CHECK_INT(e.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(e.message, "nested too deeply");
    ferr_clear(&e);

    t = to_json_text(L, "(function() local t = json.array{} t[1] = t return t end)()", &e);
    CHECK(t == NULL);
    CHECK_CONTAINS(e.message, "nested too deeply");
    ferr_clear(&e);

    t = to_json_text(L, "(function() local t = {} for i = 1, 1000 do t = {t} end return t end)()", &e);
    CHECK(t == NULL);
    CHECK_CONTAINS(e.message, "nested too deeply");
    ferr_clear(&e);

    /* 100 levels are fine. */
    t = to_json_text(L, "(function() local t = {} for i = 1, 100 do t = {t} end return t end)()", &e);
    CHECK(t != NULL);
    free(t);
    ferr_clear(&e);

    /* The same table twice (not a cycle) is fine. */
    EXPECT_JSON(L, "(function() local x = {1} return {a = x, b = x} end)()", "{\"a\":[1],\"b\":[1]}");
    lua_close(L);
}

static void conversion_never_runs_metamethods(void)
{
    lua_State *L = new_state();
    EXPECT_JSON(L, "setmetatable({}, {__index = function() error('ran __index') end, "
                   "__pairs = function() error('ran __pairs') end, __len = function() error('ran __len') end})",
                "{}");
    EXPECT_JSON(L, "setmetatable({a = 1}, {__index = {b = 2}})", "{\"a\":1}");
    lua_close(L);
}

/* ---- strings -------------------------------------------------------- */

static void invalid_utf8_becomes_replacement_characters(void)
{
    lua_State *L = new_state();
    EXPECT_JSON(L, "'a\\xffb'", "\"a\xef\xbf\xbd" "b\"");
    /* A truncated sequence at the end. */
    EXPECT_JSON(L, "'ab\\xe2\\x82'", "\"ab\xef\xbf\xbd\xef\xbf\xbd\"");
    /* An overlong encoding of '/'. */
    EXPECT_JSON(L, "'\\xc0\\xaf'", "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    /* Valid multi-byte text is kept as is, next to the bad byte. */
    EXPECT_JSON(L, "'\\u{e9}\\x80\\u{1F600}'", "\"\xc3\xa9\xef\xbf\xbd\xf0\x9f\x98\x80\"");
    /* In values nested in tables too. */
    EXPECT_JSON(L, "{s = '\\xff'}", "{\"s\":\"\xef\xbf\xbd\"}");
    /* Strings may hold NUL bytes. */
    EXPECT_JSON(L, "'a\\0b'", "\"a\\u0000b\"");
    lua_close(L);
}

static void invalid_utf8_in_a_key_is_an_error(void)
{
    lua_State *L = new_state();
    EXPECT_ERROR(L, "{['\\xff'] = 1}", "cannot encode $ as JSON: a key is not valid UTF-8");
    lua_close(L);
}

/* ---- text: decode and encode ---------------------------------------- */

static void decode_errors_report_line_and_column(void)
{
    lua_State *L = new_state();
    const char *bad = "{\n  \"a\": 1,\n  \"b\": }";
    int top = lua_gettop(L);
    CHECK_INT(lua_json_decode_push(L, bad, strlen(bad)), 0);
    CHECK_INT(lua_gettop(L), top + 1);
    CHECK_CONTAINS(lua_tostring(L, -1), "invalid JSON at line 3, column ");
    lua_pop(L, 1);

    CHECK_INT(lua_json_decode_push(L, "", 0), 0);
    CHECK_CONTAINS(lua_tostring(L, -1), "invalid JSON at line");
    lua_pop(L, 1);
    /* Integers beyond 64 bits are not silently rounded. */
    CHECK_INT(lua_json_decode_push(L, "18446744073709551616", 20), 0);
    lua_pop(L, 1);
    /* Only the given length is read. */
    CHECK_INT(lua_json_decode_push(L, "[1]garbage", 3), 1);
    lua_pop(L, 1);
    CHECK_INT(lua_gettop(L), top);
    lua_close(L);
}

static void decode_of_deep_nesting_fails_cleanly(void)
{
    lua_State *L = new_state();
    size_t n = 5000;
    char *deep = malloc(2 * n + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = 0;
    int rc = lua_json_decode_push(L, deep, 2 * n);
    CHECK_INT(rc, 0);
    lua_pop(L, 1);
    free(deep);
    lua_close(L);
}

static void decode_pushes_every_json_type(void)
{
    lua_State *L = new_state();
    const char *doc = "{\"s\":\"x\\ny\",\"t\":true,\"f\":false,\"i\":-7,\"r\":2.5,\"a\":[1,\"2\"],\"o\":{\"k\":\"v\"}}";
    CHECK_INT(lua_json_decode_push(L, doc, strlen(doc)), 1);
    lua_setglobal(L, "d");
    EXPECT_LUA_STRING(L, "d.s", "x\ny");
    EXPECT_LUA_STRING(L, "tostring(d.t) .. tostring(d.f)", "truefalse");
    EXPECT_LUA_STRING(L, "math.type(d.i) .. d.i", "integer-7");
    EXPECT_LUA_STRING(L, "math.type(d.r) .. d.r", "float2.5");
    EXPECT_LUA_STRING(L, "d.a[2] .. #d.a", "22");
    EXPECT_LUA_STRING(L, "d.o.k", "v");
    /* Keys come out sorted, so equal data is equal text. */
    EXPECT_LUA_STRING(L, "json.encode(d)",
                      "{\"a\":[1,\"2\"],\"f\":false,\"i\":-7,\"o\":{\"k\":\"v\"},\"r\":2.5,\"s\":\"x\\ny\",\"t\":true}");
    lua_close(L);
}

static int encode_at_1(lua_State *L)
{
    lua_json_encode_push(L, 1);
    return 1;
}

static void encode_push_pushes_text_or_raises(void)
{
    lua_State *L = new_state();
    int top = lua_gettop(L);
    lua_pushcfunction(L, encode_at_1);
    run(L, "return {b = 1, a = {true, 'x'}}");
    CHECK_INT(lua_pcall(L, 1, 1, 0), LUA_OK);
    CHECK_STR(lua_tostring(L, -1), "{\"a\":[true,\"x\"],\"b\":1}");
    lua_settop(L, top);

    lua_pushcfunction(L, encode_at_1);
    run(L, "return {f = print}");
    CHECK_INT(lua_pcall(L, 1, 1, 0), LUA_ERRRUN);
    CHECK_STR(lua_tostring(L, -1), "cannot encode $.f as JSON: function");
    lua_settop(L, top);
    /* The failed encoding's jansson tree was released (checked by ASan). */
    lua_gc(L, LUA_GCCOLLECT, 0);
    lua_close(L);
}

/* ---- the script module ---------------------------------------------- */

static void script_encode_and_decode_return_nil_and_message_on_failure(void)
{
    lua_State *L = new_state();
    const char *code =
        "local v, err = json.decode('{\"a\":')\n"
        "assert(v == nil and type(err) == 'string', 'decode should fail')\n"
        "assert(err:find('invalid JSON at line 1, column', 1, true), err)\n"
        "local s, err2 = json.encode({f = function() end})\n"
        "assert(s == nil, 'encode should fail')\n"
        "assert(err2 == 'cannot encode $.f as JSON: function', err2)\n"
        "local s3, err3 = json.encode(0/0)\n"
        "assert(s3 == nil and err3:find('NaN', 1, true), tostring(err3))\n"
        "assert(json.decode(json.encode({x = {1, 2, {y = 'z'}}})).x[3].y == 'z')\n"
        "assert(not pcall(json.decode), 'decode needs a string')\n"
        "assert(not pcall(json.encode), 'encode needs a value')\n"
        "assert(not pcall(json.array, 5), 'json.array needs a table')\n"
        "return 'ok'";
    int top = lua_gettop(L);
    CHECK_INT(luaL_dostring(L, code), LUA_OK);
    CHECK_STR(lua_tostring(L, -1), "ok");
    lua_settop(L, top);
    lua_close(L);
}

static void module_can_be_opened_in_several_states(void)
{
    /* The array metatable lives in each state's registry. */
    lua_State *a = new_state(), *b = new_state();
    EXPECT_LUA_STRING(a, "json.encode(json.array{})", "[]");
    EXPECT_LUA_STRING(b, "json.encode(json.array{})", "[]");
    /* Opening twice in one state keeps a single array metatable. */
    lua_json_open(a);
    lua_setglobal(a, "json2");
    EXPECT_LUA_STRING(a, "json.encode(json2.array{})", "[]");
    lua_close(a);
    lua_close(b);
}

TESTS(TEST(integers_stay_integers_both_ways), TEST(floats_stay_floats_both_ways), TEST(nan_and_infinity_are_errors),
      TEST(empty_table_is_an_object_and_json_array_marks_arrays),
      TEST(decoded_arrays_round_trip_as_arrays_even_when_empty), TEST(null_round_trips_in_arrays_and_objects),
      TEST(sparse_and_mixed_tables_are_errors_with_a_path), TEST(cycles_and_deep_nesting_are_errors),
      TEST(conversion_never_runs_metamethods), TEST(invalid_utf8_becomes_replacement_characters),
      TEST(invalid_utf8_in_a_key_is_an_error), TEST(decode_errors_report_line_and_column),
      TEST(decode_of_deep_nesting_fails_cleanly), TEST(decode_pushes_every_json_type),
      TEST(encode_push_pushes_text_or_raises), TEST(script_encode_and_decode_return_nil_and_message_on_failure),
      TEST(module_can_be_opened_in_several_states))
