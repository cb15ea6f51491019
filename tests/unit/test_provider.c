/* test_provider — loading provider scripts from source text: the C
 * description of a valid provider, every problem of a broken one, the slug
 * and file name check, empty arrays in schemas, and the egress host list
 * (exact and wildcard hosts, base URL overrides). */
#include "provider.h"
#include "testutil.h"

#include <lauxlib.h>

#define VALID                                                                                \
    "local function helper(x) return x end\n"                                                \
    "return {\n"                                                                             \
    "  slug = 'acme',\n"                                                                     \
    "  name = 'Acme',\n"                                                                     \
    "  category = 'crm',\n"                                                                  \
    "  description = 'The Acme CRM.',\n"                                                     \
    "  base_url = 'https://api.acme.test/v1',\n"                                             \
    "  hosts = {'api.acme.test', '*.acme-cdn.test'},\n"                                      \
    "  auth = {type = 'api_key', header = 'X-Api-Key'},\n"                                   \
    "  data_categories = {'contacts', 'deals'},\n"                                           \
    "  tools = {\n"                                                                          \
    "    search = {\n"                                                                       \
    "      description = 'Finds contacts.',\n"                                               \
    "      access = 'read',\n"                                                               \
    "      input = {\n"                                                                      \
    "        type = 'object',\n"                                                             \
    "        properties = {query = {type = 'string', minLength = 1},\n"                      \
    "                      limit = {type = 'integer', minimum = 1, maximum = 100}},\n"       \
    "        required = {'query'},\n"                                                        \
    "        additionalProperties = false,\n"                                                \
    "      },\n"                                                                             \
    "      output = {type = 'object'},\n"                                                    \
    "      run = function(ctx, args) return helper({query = args.query}) end,\n"             \
    "    },\n"                                                                               \
    "    create_deal = {\n"                                                                  \
    "      description = 'Creates a deal.',\n"                                               \
    "      access = 'write',\n"                                                              \
    "      input = {type = 'object', properties = {title = {type = 'string'}}},\n"           \
    "      run = function(ctx, args) return {id = 1} end,\n"                                 \
    "    },\n"                                                                               \
    "    ping = {\n"                                                                         \
    "      description = 'No arguments.',\n"                                                 \
    "      access = 'read',\n"                                                               \
    "      run = function() return undeclared_global end,\n"                                 \
    "    },\n"                                                                               \
    "  },\n"                                                                                 \
    "  syncs = {\n"                                                                          \
    "    contacts = {every = '15m', category = 'contacts', run = function() end},\n"         \
    "    nightly = {every = '0 3 * * *', category = 'deals', run = function() end},\n"       \
    "  },\n"                                                                                 \
    "}\n"

static provider *load(const char *source, const char *src, json_t *problems)
{
    provider *p = (provider *)problems;   /* must be overwritten */
    int rc = provider_load(source, src, strlen(src), NULL, &p, problems);
    CHECK(rc == 0 ? p != NULL : p == NULL);
    return p;
}

static provider *load_ok(const char *source, const char *src)
{
    json_t *problems = json_array();
    provider *p = load(source, src, problems);
    if (!p || json_array_size(problems)) {
        char *text = json_dumps(problems, JSON_INDENT(2));
        fprintf(stderr, "  unexpected problems: %s\n", text);
        free(text);
    }
    CHECK(p != NULL);
    CHECK_INT(json_array_size(problems), 0);
    json_decref(problems);
    return p;
}

/* Whether one problem contains `needle`. */
static int has_problem(json_t *problems, const char *needle)
{
    size_t i;
    json_t *v;
    json_array_foreach(problems, i, v) if (strstr(json_string_value(v), needle)) return 1;
    return 0;
}

#define EXPECT_PROBLEM(problems, needle)                                                     \
    do {                                                                                     \
        if (!has_problem(problems, needle)) {                                                \
            char *t_ = json_dumps(problems, JSON_INDENT(2));                                 \
            fprintf(stderr, "%s:%d: no problem contains \"%s\" in %s\n", __FILE__, __LINE__, \
                    needle, t_);                                                             \
            free(t_);                                                                        \
            tu_failures++;                                                                   \
        }                                                                                    \
    } while (0)

static int validate(provider_tool *t, const char *json)
{
    json_t *v = json_loads(json, 0, NULL);
    schema_error e;
    int rc = schema_validate(t->input_schema, v, &e);
    json_decref(v);
    return rc;
}

/* ---- a valid provider ----------------------------------------------- */

static void valid_provider_is_described_in_c(void)
{
    provider *p = load_ok("providers/acme.lua", VALID);
    if (!p)
        return;
    CHECK_STR(p->source, "providers/acme.lua");
    CHECK_STR(p->slug, "acme");
    CHECK_STR(p->name, "Acme");
    CHECK_STR(p->category, "crm");
    CHECK_STR(p->description, "The Acme CRM.");
    CHECK_STR(p->base_url, "https://api.acme.test/v1");
    CHECK_INT(p->nhosts, 2);
    CHECK_STR(p->hosts[0], "api.acme.test");
    CHECK_STR(p->hosts[1], "*.acme-cdn.test");
    CHECK_STR(p->auth_type, "api_key");
    CHECK_STR(json_string_value(json_object_get(p->auth, "header")), "X-Api-Key");
    CHECK_INT(p->ncategories, 2);
    CHECK_STR(p->data_categories[1], "deals");
    CHECK_INT(p->ntools, 3);
    CHECK_INT(p->nsyncs, 2);
    CHECK(p->host != NULL);
    CHECK(lhost_userdata(p->host) == p);
    provider_free(p);
}

static void tools_have_full_names_access_and_compiled_schemas(void)
{
    provider *p = load_ok("providers/acme.lua", VALID);
    if (!p)
        return;
    provider_tool *search = provider_tool_find(p, "search");
    provider_tool *create = provider_tool_find(p, "create_deal");
    provider_tool *ping = provider_tool_find(p, "ping");
    CHECK(provider_tool_find(p, "acme__search") == NULL);   /* found by declared name */
    CHECK(provider_tool_find(p, "nope") == NULL);
    CHECK(search && create && ping);
    if (!search || !create || !ping) {
        provider_free(p);
        return;
    }
    CHECK_STR(search->full_name, "acme__search");
    CHECK_STR(create->full_name, "acme__create_deal");
    CHECK_STR(search->description, "Finds contacts.");
    CHECK(search->p == p);
    CHECK_INT(search->is_write, 0);
    CHECK_INT(create->is_write, 1);
    CHECK_INT(ping->is_write, 0);

    /* The input schema is compiled and enforces what was declared. */
    CHECK(search->input_schema != NULL);
    CHECK_INT(validate(search, "{\"query\":\"bob\",\"limit\":5}"), 0);
    CHECK_INT(validate(search, "{\"limit\":5}"), -1);                  /* required */
    CHECK_INT(validate(search, "{\"query\":\"bob\",\"limit\":0}"), -1);  /* minimum */
    CHECK_INT(validate(search, "{\"query\":\"bob\",\"x\":1}"), -1);      /* additionalProperties */
    CHECK(json_is_array(json_object_get(search->input, "required")));
    CHECK(search->output != NULL);
    CHECK(create->output == NULL);

    /* No input declared: the tool takes no arguments at all. */
    CHECK(ping->input_schema != NULL);
    CHECK_INT(validate(ping, "{}"), 0);
    CHECK_INT(validate(ping, "{\"x\":1}"), -1);

    /* run is a function in the registry. */
    lua_State *L = lhost_state(p->host);
    CHECK_INT(lua_rawgeti(L, LUA_REGISTRYINDEX, search->run_ref), LUA_TFUNCTION);
    lua_pop(L, 1);
    provider_free(p);
}

static void syncs_are_loaded(void)
{
    provider *p = load_ok("providers/acme.lua", VALID);
    if (!p)
        return;
    int seen = 0;
    for (size_t i = 0; i < p->nsyncs; i++) {
        provider_sync *s = &p->syncs[i];
        if (strcmp(s->name, "contacts") == 0) {
            CHECK_STR(s->every, "15m");
            CHECK_STR(s->category, "contacts");
            seen++;
        } else if (strcmp(s->name, "nightly") == 0) {
            CHECK_STR(s->every, "0 3 * * *");
            seen++;
        }
        CHECK(s->run_ref != LUA_NOREF);
    }
    CHECK_INT(seen, 2);
    provider_free(p);
}

static void done_record(lhost_task *t, lua_State *L, int nres, ferr *err, void *arg)
{
    (void)t;
    (void)L;
    (void)nres;
    ferr *out = arg;
    if (err)
        ferr_move(out, err);
}

static void globals_are_sealed_after_loading(void)
{
    provider *p = load_ok("providers/acme.lua", VALID);
    if (!p)
        return;
    provider_tool *ping = provider_tool_find(p, "ping");
    ferr result = {0}, err = {0};
    CHECK_INT(lhost_task_start(p->host, ping->run_ref, NULL, NULL, done_record, &result, NULL, NULL, "ping", NULL,
                               &err),
              0);
    CHECK_INT(result.code, FERR_SCRIPT_ERROR);
    CHECK_CONTAINS(result.message, "undeclared global 'undeclared_global'");
    ferr_clear(&result);
    ferr_clear(&err);
    provider_free(p);
}

/* ---- problems ------------------------------------------------------- */

static void broken_provider_lists_every_problem(void)
{
    const char *src =
        "return {\n"
        "  slug = 'Not A Slug',\n"
        "  name = '',\n"
        "  category = 'nonsense',\n"
        "  description = 42,\n"
        "  base_url = 'http://elsewhere.test/api',\n"
        "  hosts = {'api.example.com', 'UPPER.example.com'},\n"
        "  auth = {type = 'magic'},\n"
        "  data_categories = {'financial', 7},\n"
        "  colour = 'blue',\n"
        "  tools = {\n"
        "    ['bad name!'] = {description = 'x', access = 'read', run = function() end},\n"
        "    no_run = {description = 'has no run', access = 'read'},\n"
        "    bad_access = {description = 'x', access = 'delete', run = function() end},\n"
        "    not_object = {description = 'x', access = 'read', input = {type = 'string'}, run = function() end},\n"
        "    bad_schema = {description = 'x', access = 'read', run = function() end,\n"
        "                  input = {type = 'object', properties = {n = {type = 'integer', minimum = 'zero'}}}},\n"
        "    typo = {description = 'x', acess = 'read', run = function() end},\n"
        "    fn_in_schema = {description = 'x', access = 'read', run = function() end,\n"
        "                    input = {type = 'object', properties = {f = {default = print}}}},\n"
        "  },\n"
        "  syncs = {s = {every = 'sometimes', category = 'deals', run = function() end}},\n"
        "}\n";
    json_t *problems = json_array();
    provider *p = load("providers/broken.lua", src, problems);
    CHECK(p == NULL);
    EXPECT_PROBLEM(problems, "slug: 'Not A Slug' must be lowercase");
    EXPECT_PROBLEM(problems, "name: must be a non-empty string");
    EXPECT_PROBLEM(problems, "category: 'nonsense' is not one of the known categories");
    EXPECT_PROBLEM(problems, "description: must be a non-empty string");
    EXPECT_PROBLEM(problems, "base_url: its host 'elsewhere.test' is not listed in hosts");
    EXPECT_PROBLEM(problems, "hosts[2]: 'UPPER.example.com' is not a valid host name");
    EXPECT_PROBLEM(problems, "auth.type: must be one of none, api_key, basic, oauth2");
    EXPECT_PROBLEM(problems, "data_categories[2]: must be a string");
    EXPECT_PROBLEM(problems, "provider: unknown field 'colour'");
    EXPECT_PROBLEM(problems, "tools.bad name!: tool names may use letters, digits, '_' and '-' only");
    EXPECT_PROBLEM(problems, "tools.no_run.run: must be a function(ctx, args)");
    EXPECT_PROBLEM(problems, "tools.bad_access.access: must be \"read\" or \"write\", not \"delete\"");
    EXPECT_PROBLEM(problems, "tools.not_object.input: the root schema must have type = \"object\"");
    EXPECT_PROBLEM(problems, "tools.bad_schema.input.properties.n.minimum");
    EXPECT_PROBLEM(problems, "tools.typo: unknown field 'acess'");
    EXPECT_PROBLEM(problems, "tools.typo.access: required string is missing");
    EXPECT_PROBLEM(problems, "tools.fn_in_schema.input: cannot encode");
    EXPECT_PROBLEM(problems, "syncs.s.every: \"sometimes\" is neither an interval");
    CHECK(json_array_size(problems) >= 18);
    /* Every entry is a string. */
    size_t i;
    json_t *v;
    json_array_foreach(problems, i, v) CHECK(json_is_string(v));
    json_decref(problems);
}

static void missing_fields_are_each_reported(void)
{
    json_t *problems = json_array();
    CHECK(load("providers/x.lua", "return {}", problems) == NULL);
    EXPECT_PROBLEM(problems, "slug: required string is missing");
    EXPECT_PROBLEM(problems, "name: required string is missing");
    EXPECT_PROBLEM(problems, "category: required string is missing");
    EXPECT_PROBLEM(problems, "description: required string is missing");
    EXPECT_PROBLEM(problems, "hosts: must be an array of strings (it is missing)");
    EXPECT_PROBLEM(problems, "auth: must be a table like {type = \"none\"} (it is missing)");
    EXPECT_PROBLEM(problems, "tools: must be a table of tools (it is missing)");
    json_decref(problems);

    problems = json_array();
    CHECK(load("providers/x.lua",
               "return {slug = 'x', name = 'X', category = 'crm', description = 'd', hosts = {}, "
               "data_categories = {}, auth = {type = 'none'}, tools = {}}",
               problems) == NULL);
    EXPECT_PROBLEM(problems, "tools: a provider needs at least one tool");
    CHECK_INT(json_array_size(problems), 1);
    json_decref(problems);
}

static void scripts_that_do_not_load_are_one_problem(void)
{
    json_t *problems = json_array();
    CHECK(load("providers/x.lua", "return 'a string'", problems) == NULL);
    EXPECT_PROBLEM(problems, "the script must return a table (it returned string)");
    json_decref(problems);

    problems = json_array();
    CHECK(load("providers/x.lua", "return {", problems) == NULL);
    EXPECT_PROBLEM(problems, "providers/x.lua:1:");
    json_decref(problems);

    problems = json_array();
    CHECK(load("providers/x.lua", "error('no thanks')", problems) == NULL);
    EXPECT_PROBLEM(problems, "no thanks");
    json_decref(problems);

    /* A script that never finishes loading is stopped by the CPU cap. */
    problems = json_array();
    lhost_limits lim = {.cpu_ms = 100};
    provider *p = NULL;
    const char *loop = "while true do end";
    CHECK_INT(provider_load("providers/x.lua", loop, strlen(loop), &lim, &p, problems), -1);
    CHECK(p == NULL);
    EXPECT_PROBLEM(problems, "CPU");
    json_decref(problems);
}

static void problems_are_appended_to_an_existing_array(void)
{
    json_t *problems = json_array();
    json_array_append_new(problems, json_string("earlier"));
    CHECK(load("providers/x.lua", "return 1", problems) == NULL);
    CHECK_INT(json_array_size(problems), 2);
    CHECK_STR(json_string_value(json_array_get(problems, 0)), "earlier");
    /* A valid provider still loads when the array already holds entries. */
    provider *p = load("providers/acme.lua", VALID, problems);
    CHECK(p != NULL);
    CHECK_INT(json_array_size(problems), 2);
    provider_free(p);
    json_decref(problems);
}

static void slug_must_match_the_file_name(void)
{
    char *src = strdup(VALID);
    json_t *problems = json_array();
    CHECK(load("providers/foo.lua", src, problems) == NULL);
    EXPECT_PROBLEM(problems, "slug: 'acme' does not match the file name 'foo.lua'");
    CHECK_INT(json_array_size(problems), 1);
    json_decref(problems);

    /* Only the base name counts, wherever the file lives. */
    provider *p = load_ok("/srv/ferry/custom/acme.lua", src);
    provider_free(p);
    /* A slug that merely starts like the file name is not a match. */
    problems = json_array();
    CHECK(load("providers/acme2.lua", src, problems) == NULL);
    EXPECT_PROBLEM(problems, "does not match the file name 'acme2.lua'");
    json_decref(problems);
    /* A source that is not a .lua file name is not checked. */
    p = load_ok("inline provider", src);
    provider_free(p);
    free(src);
}

static void long_full_tool_names_are_a_problem(void)
{
    char src[2048];
    const char *slug = "a-very-long-provider-slug-of-forty-chars";   /* 40 */
    snprintf(src, sizeof src,
             "return {slug = '%s', name = 'L', category = 'crm', description = 'd', hosts = {'x.test'},"
             " data_categories = {}, auth = {type = 'none'}, tools = {"
             " short = {description = 'd', access = 'read', run = function() end},"
             " a_tool_name_that_is_too_long = {description = 'd', access = 'read', run = function() end}}}",
             slug);
    json_t *problems = json_array();
    CHECK(load("inline", src, problems) == NULL);
    EXPECT_PROBLEM(problems, "tools.a_tool_name_that_is_too_long: the full tool name");
    EXPECT_PROBLEM(problems, "is longer than 64 characters");
    CHECK_INT(json_array_size(problems), 1);
    json_decref(problems);
}

/* ---- schemas: empty tables ------------------------------------------ */

#define MINIMAL_WITH_INPUT(input)                                                            \
    "return {slug = 'mini', name = 'M', category = 'crm', description = 'd', hosts = {'x.test'}," \
    " data_categories = {}, auth = {type = 'none'}, tools = {"                               \
    " t = {description = 'd', access = 'read', input = " input ", run = function() end}}}"

static void empty_required_is_an_empty_array(void)
{
    provider *p = load_ok("providers/mini.lua",
                          MINIMAL_WITH_INPUT("{type = 'object', properties = {a = {type = 'string'}}, required = {}}"));
    if (!p)
        return;
    provider_tool *t = provider_tool_find(p, "t");
    json_t *required = json_object_get(t->input, "required");
    CHECK(json_is_array(required));
    CHECK_INT(json_array_size(required), 0);
    /* An empty properties table stays an object. */
    CHECK(json_is_object(json_object_get(t->input, "properties")));
    CHECK_INT(validate(t, "{}"), 0);
    provider_free(p);

    /* Nested schemas get the same treatment. */
    p = load_ok("providers/mini.lua",
                MINIMAL_WITH_INPUT("{type = 'object', properties = {o = {type = 'object', properties = {}, required = {}}}}"));
    if (!p)
        return;
    t = provider_tool_find(p, "t");
    json_t *inner = json_object_get(json_object_get(json_object_get(t->input, "properties"), "o"), "required");
    CHECK(json_is_array(inner));
    provider_free(p);
}

/* Under `properties`, keys are property names, not keywords: a property
 * called "required" whose schema is {} (any value) is not an array. */
static void property_named_like_a_keyword_keeps_its_empty_schema(void)
{
    provider *p = load_ok("providers/mini.lua",
                          MINIMAL_WITH_INPUT("{type = 'object', properties = {required = {}, enum = {}}}"));
    if (!p)
        return;
    provider_tool *t = provider_tool_find(p, "t");
    json_t *props = json_object_get(t->input, "properties");
    CHECK(json_is_object(json_object_get(props, "required")));
    CHECK(json_is_object(json_object_get(props, "enum")));
    CHECK_INT(validate(t, "{\"required\":[1,2],\"enum\":\"x\"}"), 0);
    provider_free(p);
}

/* ---- hosts ---------------------------------------------------------- */

#define WITH_HOSTS(hosts, base_url)                                                          \
    "return {slug = 'h', name = 'H', category = 'crm', description = 'd', hosts = " hosts    \
    ", base_url = " base_url ", data_categories = {}, auth = {type = 'none'}, tools = {"     \
    " t = {description = 'd', access = 'read', run = function() end}}}"

static void allows_host_matches_exact_and_wildcard_hosts(void)
{
    provider *p = load_ok("inline", WITH_HOSTS("{'api.example.org', '*.example.com'}", "'https://api.example.org/'"));
    if (!p)
        return;
    CHECK(provider_allows_host(p, "api.example.org"));
    CHECK(provider_allows_host(p, "API.Example.ORG"));   /* host names are case-insensitive */
    CHECK(!provider_allows_host(p, "example.org"));
    CHECK(!provider_allows_host(p, "x.api.example.org"));   /* exact means exact */
    CHECK(!provider_allows_host(p, "api.example.org.evil.test"));

    CHECK(provider_allows_host(p, "a.example.com"));
    CHECK(provider_allows_host(p, "eu.example.com"));
    CHECK(!provider_allows_host(p, "example.com"));        /* the wildcard needs a label */
    CHECK(!provider_allows_host(p, "evil-example.com"));
    CHECK(!provider_allows_host(p, "aexample.com"));
    CHECK(!provider_allows_host(p, ".example.com.evil.test"));
    CHECK(!provider_allows_host(p, "example.com.evil.test"));
    CHECK(!provider_allows_host(p, ""));
    provider_free(p);
}

static void base_url_host_must_be_declared_and_may_be_a_wildcard(void)
{
    provider *p = load_ok("inline", WITH_HOSTS("{'*.example.com'}", "'https://eu.example.com/v2'"));
    provider_free(p);
    json_t *problems = json_array();
    CHECK(load("inline", WITH_HOSTS("{'*.example.com'}", "'https://example.com/v2'"), problems) == NULL);
    EXPECT_PROBLEM(problems, "base_url: its host 'example.com' is not listed in hosts");
    json_decref(problems);
    problems = json_array();
    CHECK(load("inline", WITH_HOSTS("{'example.com'}", "'ftp://example.com/'"), problems) == NULL);
    EXPECT_PROBLEM(problems, "base_url: only http and https are allowed");
    json_decref(problems);
    problems = json_array();
    CHECK(load("inline", WITH_HOSTS("{'example.com'}", "'not a url'"), problems) == NULL);
    EXPECT_PROBLEM(problems, "base_url: 'not a url' is not a valid URL");
    json_decref(problems);
}

static void override_base_url_adds_its_host(void)
{
    provider *p = load_ok("inline", WITH_HOSTS("{'api.example.org'}", "'https://api.example.org/'"));
    if (!p)
        return;
    ferr err = {0};
    CHECK(!provider_allows_host(p, "127.0.0.1"));
    CHECK_INT(provider_override_base_url(p, "http://127.0.0.1:8080/mock", &err), 0);
    CHECK_STR(p->base_url, "http://127.0.0.1:8080/mock");
    CHECK(provider_allows_host(p, "127.0.0.1"));
    CHECK(provider_allows_host(p, "api.example.org"));   /* the declared ones stay */
    CHECK_INT(p->nhosts, 2);

    /* A host already allowed is not added twice. */
    CHECK_INT(provider_override_base_url(p, "https://api.example.org/v9", &err), 0);
    CHECK_INT(p->nhosts, 2);
    CHECK_STR(p->base_url, "https://api.example.org/v9");

    /* Only http(s) URLs; a refused override changes nothing. */
    CHECK_INT(provider_override_base_url(p, "ftp://files.example.org/", &err), -1);
    CHECK_INT(err.code, FERR_BAD_REQUEST);
    ferr_clear(&err);
    CHECK_INT(provider_override_base_url(p, "::not a url::", &err), -1);
    CHECK_INT(err.code, FERR_BAD_REQUEST);
    ferr_clear(&err);
    CHECK_STR(p->base_url, "https://api.example.org/v9");
    CHECK(!provider_allows_host(p, "files.example.org"));
    CHECK_INT(p->nhosts, 2);
    provider_free(p);
}

#define WITH_OAUTH(extra)                                                                    \
    "return {slug = 'o', name = 'O', category = 'crm', description = 'd', hosts = {'o.test'}," \
    " data_categories = {}, tools = {t = {description = 'd', access = 'read', run = function() end}}," \
    " auth = {type = 'oauth2', authorize_url = 'https://o.test/authorize', token_url = 'https://o.test/token'," \
    " scopes = {'a:read', 'b:write'}" extra "}}"

static void oauth_scopes_are_joined_with_the_declared_separator(void)
{
    provider *p = load_ok("inline", WITH_OAUTH(""));
    if (p)
        CHECK_STR(p->authn.scopes, "a:read b:write");   /* RFC 6749's space */
    provider_free(p);
    p = load_ok("inline", WITH_OAUTH(", scope_separator = ','"));
    if (p)
        CHECK_STR(p->authn.scopes, "a:read,b:write");   /* Slack's comma */
    provider_free(p);
    json_t *problems = json_array();
    CHECK(load("inline", WITH_OAUTH(", scope_separator = ';'"), problems) == NULL);
    EXPECT_PROBLEM(problems, "auth.scope_separator: \" \" (the default) or \",\"");
    json_decref(problems);
}

static void oauth_token_fields_name_more_tokens_of_the_answer(void)
{
    provider *p = load_ok("inline", WITH_OAUTH(", token_fields = {user_token = 'authed_user.access_token'}"));
    if (p)
        CHECK_STR(json_string_value(json_object_get(p->authn.token_fields, "user_token")), "authed_user.access_token");
    provider_free(p);
    static const char *const bad[] = {"{access_token = 'x'}", "{User = 'x'}", "{user_token = ''}",
                                      "{user_token = 3}", "'user_token'"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, ", token_fields = %s", bad[i]);
        char script[1024];
        snprintf(script, sizeof script, WITH_OAUTH("%s"), extra);
        json_t *problems = json_array();
        CHECK(load("inline", script, problems) == NULL);
        CHECK(json_array_size(problems) > 0);
        json_decref(problems);
    }
}

static void free_accepts_null(void) { provider_free(NULL); }

TESTS(TEST(valid_provider_is_described_in_c), TEST(oauth_token_fields_name_more_tokens_of_the_answer), TEST(tools_have_full_names_access_and_compiled_schemas),
      TEST(syncs_are_loaded), TEST(globals_are_sealed_after_loading), TEST(broken_provider_lists_every_problem),
      TEST(missing_fields_are_each_reported), TEST(scripts_that_do_not_load_are_one_problem),
      TEST(problems_are_appended_to_an_existing_array), TEST(slug_must_match_the_file_name),
      TEST(long_full_tool_names_are_a_problem), TEST(empty_required_is_an_empty_array),
      TEST(property_named_like_a_keyword_keeps_its_empty_schema),
      TEST(allows_host_matches_exact_and_wildcard_hosts),
      TEST(base_url_host_must_be_declared_and_may_be_a_wildcard), TEST(override_base_url_adds_its_host),
      TEST(oauth_scopes_are_joined_with_the_declared_separator), TEST(free_accepts_null))
