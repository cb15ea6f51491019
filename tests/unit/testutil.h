/* testutil — the few macros ferry's C unit tests use. A test file defines
 * test functions, lists them in TESTS(...), and exits non-zero on failure. */
#ifndef FERRY_TESTUTIL_H
#define FERRY_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tu_failures;
static const char *tu_current;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__,       \
                    __LINE__, tu_current, #cond);                            \
            tu_failures++;                                                   \
        }                                                                    \
    } while (0)

#define CHECK_INT(a, b)                                                      \
    do {                                                                     \
        long long tu_a = (long long)(a), tu_b = (long long)(b);              \
        if (tu_a != tu_b) {                                                  \
            fprintf(stderr, "%s:%d: %s: %s == %lld, expected %lld\n",        \
                    __FILE__, __LINE__, tu_current, #a, tu_a, tu_b);         \
            tu_failures++;                                                   \
        }                                                                    \
    } while (0)

#define CHECK_STR(a, b)                                                      \
    do {                                                                     \
        const char *tu_a = (a), *tu_b = (b);                                 \
        if (!tu_a || !tu_b || strcmp(tu_a, tu_b) != 0) {                     \
            fprintf(stderr, "%s:%d: %s: %s == \"%s\", expected \"%s\"\n",    \
                    __FILE__, __LINE__, tu_current, #a,                      \
                    tu_a ? tu_a : "(null)", tu_b ? tu_b : "(null)");         \
            tu_failures++;                                                   \
        }                                                                    \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                          \
    do {                                                                     \
        const char *tu_h = (hay), *tu_n = (needle);                          \
        if (!tu_h || !strstr(tu_h, tu_n)) {                                  \
            fprintf(stderr, "%s:%d: %s: \"%s\" does not contain \"%s\"\n",   \
                    __FILE__, __LINE__, tu_current, tu_h ? tu_h : "(null)",  \
                    tu_n);                                                   \
            tu_failures++;                                                   \
        }                                                                    \
    } while (0)

typedef void (*tu_fn)(void);
typedef struct { const char *name; tu_fn fn; } tu_case;
#define TEST(fn) {#fn, fn}

/* TESTS(TEST(a), TEST(b)) defines main(): runs all, or the one named in argv[1]. */
#define TESTS(...)                                                           \
    int main(int argc, char **argv)                                          \
    {                                                                        \
        static const tu_case cases[] = {__VA_ARGS__};                        \
        int ran = 0;                                                         \
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {        \
            if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)             \
                continue;                                                    \
            tu_current = cases[i].name;                                      \
            int before = tu_failures;                                        \
            cases[i].fn();                                                   \
            ran++;                                                           \
            fprintf(stderr, "%s %s\n", tu_failures == before ? "ok  " : "FAIL", \
                    cases[i].name);                                          \
        }                                                                    \
        if (ran == 0) {                                                      \
            fprintf(stderr, "no test ran\n");                                \
            return 2;                                                        \
        }                                                                    \
        return tu_failures ? 1 : 0;                                          \
    }

#endif
