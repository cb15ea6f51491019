/* lua_json — JSON for scripts, and between Lua values and jansson.
 *
 * Scripts get the module `json` (also `require "json"`):
 *   json.encode(v)  → string | nil, err     json.decode(s) → value | nil, err
 *   json.null (a JSON null; also what null decodes to)
 *   json.array(t)   marks t as an array, so an empty one encodes as [].
 * Integers stay integers both ways (lua-cjson 2.1.0 turns 123 into 123.0
 * and rounds ids above 2^53 under Lua 5.4; see docs/decisions.md).
 * Decoded arrays carry the array mark, so they round-trip. */
#ifndef FERRY_LUA_JSON_H
#define FERRY_LUA_JSON_H

#include <jansson.h>
#include <lua.h>

#include "ferr.h"

/* Pushes the module table. */
void lua_json_open(lua_State *L);

/* Pushes `v` as a Lua value. May raise (memory): call in protected mode. */
void lua_json_push(lua_State *L, const json_t *v);

/* The JSON form of the value at `idx` (new reference), or NULL with a
 * script_error in err (functions, cycles, mixed or sparse tables, NaN).
 * Never raises and never runs script code (raw access only), so it is safe
 * on any thread at any time. Invalid UTF-8 in strings becomes U+FFFD. */
json_t *lua_json_from(lua_State *L, int idx, ferr *err);

/* Decodes JSON text and pushes the value (1), or pushes a message and
 * returns 0 when the text is not JSON. Raises only on memory, leaking
 * nothing. */
int lua_json_decode_push(lua_State *L, const char *s, size_t n);

/* Pushes the compact JSON text of the value at `idx`; raises with a clear
 * message when it has no JSON form. Leaks nothing when it raises. */
void lua_json_encode_push(lua_State *L, int idx);

/* Pushes the shared array metatable. */
void lua_json_push_array_mt(lua_State *L);

#endif
