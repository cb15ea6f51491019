/* test_chunker — how record text becomes document_chunks: sizes and
 * overlap, cuts at paragraph, line and word breaks, never inside a UTF-8
 * character, every byte covered, progress on text without spaces. */
#include "chunker.h"
#include "testutil.h"

/* Every chunk within size, consecutive chunks overlapping or touching, the
 * whole text covered, and no chunk starting or ending inside a UTF-8
 * sequence. */
static void check_cover(const char *text, size_t len, const chunk_span *s, size_t n, size_t size)
{
    CHECK(n > 0);
    CHECK_INT(s[0].off, 0);
    CHECK_INT(s[n - 1].off + s[n - 1].len, len);
    for (size_t i = 0; i < n; i++) {
        CHECK(s[i].len > 0 && s[i].len <= size);
        CHECK(((unsigned char)text[s[i].off] & 0xC0) != 0x80);
        size_t end = s[i].off + s[i].len;
        CHECK(end == len || ((unsigned char)text[end] & 0xC0) != 0x80);
        if (i > 0) {
            CHECK(s[i].off > s[i - 1].off);
            CHECK(s[i].off <= s[i - 1].off + s[i - 1].len);
        }
    }
}

static void short_text_is_one_chunk(void)
{
    chunk_span *s = NULL;
    size_t cap = 0;
    CHECK_INT(chunker_split("hello world", 11, 1000, 100, &s, &cap), 1);
    CHECK_INT(s[0].off, 0);
    CHECK_INT(s[0].len, 11);
    CHECK_INT(chunker_split("", 0, 1000, 100, &s, &cap), 0);
    free(s);
}

static void long_text_cuts_at_spaces_with_overlap(void)
{
    char text[5000];
    size_t len = 0;
    for (int i = 0; len < 4000; i++)
        len += (size_t)snprintf(text + len, sizeof text - len, "word%d ", i);
    chunk_span *s = NULL;
    size_t cap = 0;
    size_t n = chunker_split(text, len, 500, 60, &s, &cap);
    CHECK(n >= 8 && n <= 11);
    check_cover(text, len, s, n, 500);
    for (size_t i = 0; i + 1 < n; i++) {
        size_t end = s[i].off + s[i].len;
        CHECK(text[end - 1] == ' ');                       /* cut after a space */
        CHECK(s[i + 1].off < end);                          /* overlapping */
        CHECK(end - s[i + 1].off <= 60);
        CHECK(text[s[i + 1].off - 1] == ' ');               /* the next one starts at a word */
    }
    free(s);
}

static void prefers_paragraphs_then_lines(void)
{
    char text[600];
    memset(text, 'a', sizeof text);
    /* A space late, a line break a bit earlier, a paragraph break earlier
     * still: all within the last quarter of a 400-byte chunk. */
    text[320] = '\n';
    text[321] = '\n';
    text[350] = '\n';
    text[390] = ' ';
    chunk_span *s = NULL;
    size_t cap = 0;
    size_t n = chunker_split(text, sizeof text, 400, 0, &s, &cap);
    CHECK(n >= 2);
    CHECK_INT(s[0].len, 322);
    text[321] = 'a';
    n = chunker_split(text, sizeof text, 400, 0, &s, &cap);
    CHECK_INT(s[0].len, 351);
    text[350] = 'a';
    text[320] = 'a';
    n = chunker_split(text, sizeof text, 400, 0, &s, &cap);
    CHECK_INT(s[0].len, 391);
    free(s);
}

static void never_splits_a_utf8_character(void)
{
    /* "é" is two bytes, "€" three: no space anywhere. */
    char text[3000];
    size_t len = 0;
    while (len + 5 < sizeof text) {
        memcpy(text + len, "\xc3\xa9\xe2\x82\xac", 5);
        len += 5;
    }
    chunk_span *s = NULL;
    size_t cap = 0;
    size_t n = chunker_split(text, len, 256, 32, &s, &cap);
    CHECK(n > 10);
    check_cover(text, len, s, n, 256);
    free(s);
}

static void sizes_are_clamped(void)
{
    char text[1000];
    memset(text, 'x', sizeof text);
    chunk_span *s = NULL;
    size_t cap = 0;
    /* Below the minimum size: 64-byte chunks; an overlap over a quarter of
     * the size is cut to a quarter, so it still moves forward. */
    size_t n = chunker_split(text, sizeof text, 10, 500, &s, &cap);
    check_cover(text, sizeof text, s, n, CHUNKER_MIN_SIZE);
    for (size_t i = 0; i + 1 < n; i++)
        CHECK(s[i].off + s[i].len - s[i + 1].off <= CHUNKER_MIN_SIZE / 4);
    free(s);
}

TESTS(TEST(short_text_is_one_chunk), TEST(long_text_cuts_at_spaces_with_overlap), TEST(prefers_paragraphs_then_lines),
      TEST(never_splits_a_utf8_character), TEST(sizes_are_clamped))
