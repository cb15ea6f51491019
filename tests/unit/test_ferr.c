/* test_ferr — error values: every code's name round-trips, the HTTP status
 * each code maps to, ferr_set/ferr_detail, the JSON shape answered to
 * clients, and moving an error between owners. */
#include "ferr.h"
#include "testutil.h"

static void every_code_name_round_trips(void)
{
    for (int i = 1; i < FERR_CODE_COUNT; i++) {
        const char *name = ferr_code_name((ferr_code)i);
        CHECK(name != NULL);
        if (!name)
            continue;
        CHECK_INT(ferr_code_from_name(name), i);
        /* Names are the stable snake_case codes of API.md. */
        for (const char *c = name; *c; c++)
            CHECK((*c >= 'a' && *c <= 'z') || *c == '_');
    }
    CHECK_STR(ferr_code_name(FERR_OK), "ok");
}

static void code_names_are_distinct(void)
{
    for (int i = 0; i < FERR_CODE_COUNT; i++)
        for (int j = i + 1; j < FERR_CODE_COUNT; j++)
            CHECK(strcmp(ferr_code_name((ferr_code)i), ferr_code_name((ferr_code)j)) != 0);
}

static void known_names_map_to_their_codes(void)
{
    CHECK_STR(ferr_code_name(FERR_INVALID_ARGUMENTS), "invalid_arguments");
    CHECK_STR(ferr_code_name(FERR_UPSTREAM_RATE_LIMITED), "upstream_rate_limited");
    CHECK_STR(ferr_code_name(FERR_SCRIPT_TIMEOUT), "script_timeout");
    CHECK_INT(ferr_code_from_name("forbidden"), FERR_FORBIDDEN);
    CHECK_INT(ferr_code_from_name("payload_too_large"), FERR_PAYLOAD_TOO_LARGE);
}

static void unknown_names_and_codes_are_rejected(void)
{
    CHECK_INT(ferr_code_from_name(NULL), FERR_OK);
    CHECK_INT(ferr_code_from_name(""), FERR_OK);
    CHECK_INT(ferr_code_from_name("no_such_code"), FERR_OK);
    CHECK_INT(ferr_code_from_name("Forbidden"), FERR_OK);   /* names are exact */
    /* "ok" is not an error code a script can raise. */
    CHECK_INT(ferr_code_from_name("ok"), FERR_OK);
    CHECK(ferr_code_name(FERR_CODE_COUNT) == NULL);
    CHECK_INT(ferr_code_status(FERR_CODE_COUNT), 500);
}

static void codes_map_to_http_statuses(void)
{
    CHECK_INT(ferr_code_status(FERR_OK), 200);
    CHECK_INT(ferr_code_status(FERR_BAD_REQUEST), 400);
    CHECK_INT(ferr_code_status(FERR_UNAUTHORIZED), 401);
    CHECK_INT(ferr_code_status(FERR_FORBIDDEN), 403);
    CHECK_INT(ferr_code_status(FERR_NOT_FOUND), 404);
    CHECK_INT(ferr_code_status(FERR_UNKNOWN_TOOL), 404);
    CHECK_INT(ferr_code_status(FERR_INVALID_ARGUMENTS), 400);
    CHECK_INT(ferr_code_status(FERR_RATE_LIMITED), 429);
    CHECK_INT(ferr_code_status(FERR_UPSTREAM_ERROR), 502);
    CHECK_INT(ferr_code_status(FERR_UPSTREAM_TIMEOUT), 504);
    CHECK_INT(ferr_code_status(FERR_UPSTREAM_RATE_LIMITED), 429);
    CHECK_INT(ferr_code_status(FERR_EGRESS_DENIED), 500);
    CHECK_INT(ferr_code_status(FERR_SCRIPT_ERROR), 500);
    CHECK_INT(ferr_code_status(FERR_SCRIPT_TIMEOUT), 500);
    CHECK_INT(ferr_code_status(FERR_SCRIPT_MEMORY), 500);
    CHECK_INT(ferr_code_status(FERR_RECONNECT_REQUIRED), 409);
    CHECK_INT(ferr_code_status(FERR_APPROVAL_REQUIRED), 403);
    CHECK_INT(ferr_code_status(FERR_PAYLOAD_TOO_LARGE), 413);
    CHECK_INT(ferr_code_status(FERR_INTERNAL), 500);
    /* Every error code is an HTTP error. */
    for (int i = 1; i < FERR_CODE_COUNT; i++) {
        int s = ferr_code_status((ferr_code)i);
        CHECK(s >= 400 && s <= 599);
    }
}

static void status_defaults_to_the_code_and_can_be_overridden(void)
{
    ferr e = {0};
    ferr_set(&e, FERR_UPSTREAM_TIMEOUT, "slow");
    CHECK_INT(ferr_status(&e), 504);
    e.status = 503;
    CHECK_INT(ferr_status(&e), 503);
    ferr_clear(&e);
}

static void set_formats_the_message_and_returns_minus_one(void)
{
    ferr e = {0};
    CHECK_INT(ferr_set(&e, FERR_NOT_FOUND, "no tool %s (%d)", "x__y", 7), -1);
    CHECK_INT(e.code, FERR_NOT_FOUND);
    CHECK_STR(e.message, "no tool x__y (7)");
    CHECK(e.details == NULL);
    /* NULL is allowed, for callers that do not want the error. */
    CHECK_INT(ferr_set(NULL, FERR_INTERNAL, "ignored"), -1);
    ferr_clear(&e);
}

static void set_truncates_long_messages(void)
{
    ferr e = {0};
    char big[2000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    ferr_set(&e, FERR_INTERNAL, "%s", big);
    CHECK_INT(strlen(e.message), sizeof e.message - 1);
    ferr_clear(&e);
}

static void set_keeps_existing_details(void)
{
    ferr e = {0};
    ferr_detail(&e, "host", json_string("api.example.com"));
    ferr_set(&e, FERR_UPSTREAM_ERROR, "refused");
    CHECK(e.details != NULL);
    CHECK_STR(json_string_value(json_object_get(e.details, "host")), "api.example.com");
    ferr_clear(&e);
}

static void detail_adds_and_replaces_keys(void)
{
    ferr e = {0};
    ferr_detail(&e, "line", json_integer(3));
    ferr_detail(&e, "file", json_string("a.lua"));
    ferr_detail(&e, "line", json_integer(4));
    CHECK_INT(json_object_size(e.details), 2);
    CHECK_INT(json_integer_value(json_object_get(e.details, "line")), 4);
    /* A NULL value (a failed json_* constructor) is ignored. */
    ferr_detail(&e, "nothing", NULL);
    CHECK_INT(json_object_size(e.details), 2);
    /* A NULL error releases the value it was given. */
    ferr_detail(NULL, "x", json_string("leaks if kept"));
    ferr_clear(&e);
    CHECK(e.details == NULL);
    CHECK_INT(e.code, FERR_OK);
    CHECK_STR(e.message, "");
}

static void to_json_without_details_has_code_and_message(void)
{
    ferr e = {0};
    ferr_set(&e, FERR_INVALID_ARGUMENTS, "bad %s", "text");
    json_t *j = ferr_to_json(&e);
    CHECK(json_is_object(j));
    CHECK_INT(json_object_size(j), 1);
    json_t *err = json_object_get(j, "error");
    CHECK(json_is_object(err));
    CHECK_INT(json_object_size(err), 2);
    CHECK_STR(json_string_value(json_object_get(err, "code")), "invalid_arguments");
    CHECK_STR(json_string_value(json_object_get(err, "message")), "bad text");
    CHECK(json_object_get(err, "details") == NULL);
    json_decref(j);
    ferr_clear(&e);
}

static void to_json_includes_details(void)
{
    ferr e = {0};
    ferr_set(&e, FERR_SCRIPT_ERROR, "boom");
    ferr_detail(&e, "file", json_string("providers/x.lua"));
    ferr_detail(&e, "line", json_integer(12));
    json_t *j = ferr_to_json(&e);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(text, "{\"error\":{\"code\":\"script_error\",\"details\":{\"file\":\"providers/x.lua\","
                    "\"line\":12},\"message\":\"boom\"}}");
    free(text);
    /* The JSON shares nothing the error frees: both can be released in any order. */
    ferr_clear(&e);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(json_object_get(j, "error"), "details"),
                                                 "line")),
              12);
    json_decref(j);
}

static void to_json_names_unknown_codes_internal(void)
{
    ferr e = {0};
    e.code = (ferr_code)(FERR_CODE_COUNT + 5);
    snprintf(e.message, sizeof e.message, "odd");
    json_t *j = ferr_to_json(&e);
    CHECK_STR(json_string_value(json_object_get(json_object_get(j, "error"), "code")), "internal");
    CHECK_INT(ferr_status(&e), 500);
    json_decref(j);
}

/* Messages carry text from scripts and upstreams, which is not always
 * valid UTF-8; the error must still reach the client as JSON. */
static void to_json_survives_invalid_utf8_in_the_message(void)
{
    ferr e = {0};
    ferr_set(&e, FERR_SCRIPT_ERROR, "upstream said: %s", "caf\xe9 \xff");
    json_t *j = ferr_to_json(&e);
    CHECK(j != NULL);
    json_t *err = json_object_get(j, "error");
    CHECK_STR(json_string_value(json_object_get(err, "code")), "script_error");
    CHECK_CONTAINS(json_string_value(json_object_get(err, "message")), "upstream said: caf");
    json_decref(j);
    ferr_clear(&e);
}

/* A long message is cut to fit; the cut must not leave half a character. */
static void truncated_message_stays_valid_utf8(void)
{
    ferr e = {0};
    char text[1201];
    for (int i = 0; i < 600; i++)
        memcpy(text + 2 * i, "\xc3\xa9", 2);   /* 600 x U+00E9, 1200 bytes */
    text[1200] = 0;
    ferr_set(&e, FERR_UPSTREAM_ERROR, "%s", text);
    CHECK(strlen(e.message) < sizeof e.message);
    json_t *s = json_string(e.message);
    CHECK(s != NULL);   /* NULL: jansson found invalid UTF-8 */
    json_decref(s);
    json_t *j = ferr_to_json(&e);
    CHECK(j != NULL);
    json_decref(j);
    ferr_clear(&e);
}

static void move_transfers_ownership_and_clears_the_source(void)
{
    ferr src = {0}, dst = {0};
    ferr_set(&dst, FERR_INTERNAL, "old");
    ferr_detail(&dst, "old", json_true());   /* released by the move */
    ferr_set(&src, FERR_FORBIDDEN, "no");
    src.status = 451;
    ferr_detail(&src, "why", json_string("policy"));
    json_t *details = src.details;

    ferr_move(&dst, &src);
    CHECK_INT(dst.code, FERR_FORBIDDEN);
    CHECK_INT(dst.status, 451);
    CHECK_STR(dst.message, "no");
    CHECK(dst.details == details);
    CHECK(json_object_get(dst.details, "old") == NULL);
    CHECK_INT(src.code, FERR_OK);
    CHECK(src.details == NULL);
    CHECK_STR(src.message, "");
    ferr_clear(&src);   /* harmless on a moved-from error */
    ferr_clear(&dst);
}

TESTS(TEST(every_code_name_round_trips), TEST(code_names_are_distinct), TEST(known_names_map_to_their_codes),
      TEST(unknown_names_and_codes_are_rejected), TEST(codes_map_to_http_statuses),
      TEST(status_defaults_to_the_code_and_can_be_overridden), TEST(set_formats_the_message_and_returns_minus_one),
      TEST(set_truncates_long_messages), TEST(set_keeps_existing_details), TEST(detail_adds_and_replaces_keys),
      TEST(to_json_without_details_has_code_and_message), TEST(to_json_includes_details),
      TEST(to_json_names_unknown_codes_internal), TEST(to_json_survives_invalid_utf8_in_the_message),
      TEST(truncated_message_stays_valid_utf8), TEST(move_transfers_ownership_and_clears_the_source))
