/* jsonfmt — how ferry writes JSON text. Reals get 15 significant digits:
 * every decimal a person or an API wrote with up to 15 digits (1234.56)
 * comes out as written, where jansson's default of 17 would print
 * 1234.5599999999999 — exact, but noise to an agent. Keys are sorted, so
 * the same data is always the same text (tool lists stay cacheable in an
 * agent's prompt; Lua's table order varies from run to run). */
#ifndef FERRY_JSONFMT_H
#define FERRY_JSONFMT_H

#include <jansson.h>
#include <stdint.h>

#define JSON_TEXT (JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))

/* A JSON string of `s`, with invalid UTF-8 replaced by U+FFFD rather than
 * failing: one bad byte from an upstream must not cost a whole answer. */
json_t *jsonfmt_string(const char *s, size_t n);

/* The length of the longest prefix of s[0..n) that does not end inside a
 * UTF-8 sequence (for cutting text to a buffer). */
size_t jsonfmt_utf8_cut(const char *s, size_t n);

/* A time in milliseconds since the epoch as RFC 3339 UTC to the second
 * ("2026-11-25T21:50:00Z"); null for 0 (a time not set). */
json_t *jsonfmt_time(int64_t ms);

/* The JSON value of `text` (a stored JSON column); null when it is NULL or
 * does not parse. */
json_t *jsonfmt_parsed(const char *text);

#endif
