/* test_search — free text to FTS5 queries: every word a quoted phrase
 * (FTS5 syntax in the words is only text), prefixes, OR between words,
 * quotes doubled, words without letters or digits dropped. */
#include "search.h"
#include "testutil.h"

static void check_query(const char *text, const char *want)
{
    char *got = search_fts_query(text);
    if (want)
        CHECK_STR(got, want);
    else
        CHECK(got == NULL);
    free(got);
}

static void words_become_quoted_phrases(void)
{
    check_query("roadmap", "\"roadmap\"");
    check_query("  roadmap   review ", "\"roadmap\" \"review\"");
    check_query("title:roadmap", "\"title:roadmap\"");
    check_query("NEAR(a b)", "\"NEAR(a\" \"b)\"");
    check_query("roadmap AND -hiring", "\"roadmap\" \"AND\" \"-hiring\"");
}

static void quotes_are_doubled(void)
{
    check_query("\"roadmap", "\"\"\"roadmap\"");
    check_query("say \"hi\"", "\"say\" \"\"\"hi\"\"\"");
}

static void prefixes_and_or(void)
{
    check_query("kanga*", "\"kanga\"*");
    check_query("designer OR kangaroo", "\"designer\" OR \"kangaroo\"");
    /* OR at either end has nothing to join. */
    check_query("OR roadmap OR", "\"roadmap\"");
    check_query("or", "\"or\"");
}

static void no_word_no_query(void)
{
    check_query("", NULL);
    check_query("   ", NULL);
    check_query("*** - ^{}", NULL);
    check_query("OR", NULL);
    /* Letters beyond ASCII are words. */
    check_query("café", "\"café\"");
}

TESTS(TEST(words_become_quoted_phrases), TEST(quotes_are_doubled), TEST(prefixes_and_or), TEST(no_word_no_query))
