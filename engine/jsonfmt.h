/* jsonfmt — how ferry writes JSON text. Reals get 15 significant digits:
 * every decimal a person or an API wrote with up to 15 digits (1234.56)
 * comes out as written, where jansson's default of 17 would print
 * 1234.5599999999999 — exact, but noise to an agent. Keys are sorted, so
 * the same data is always the same text (tool lists stay cacheable in an
 * agent's prompt; Lua's table order varies from run to run). */
#ifndef FERRY_JSONFMT_H
#define FERRY_JSONFMT_H

#include <jansson.h>

#define JSON_TEXT (JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS | JSON_REAL_PRECISION(15))

#endif
