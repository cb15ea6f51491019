-- ferry.validate: arguments against a tool's input schema, as ferry checks
-- them before `run` (docs/schema.md): the same subset of JSON Schema, the
-- same order of checks, the same paths ($.filters[0].operator) and messages.
--
--   local validate = require "ferry.validate"
--   local ok, failure = validate(schema, args)   -- true, or false, {path = "$.limit", message = "..."}
--
-- Used by ferry.testing so a provider's tests see invalid_arguments where
-- ferry would. Differences from the engine, all on the lenient side:
--   * `pattern` is a POSIX extended regular expression in ferry; here it is
--     translated to a Lua pattern when it can be (classes, ranges, anchors,
--     ?, *, +, {n,m} on one character). A pattern with groups or
--     alternatives (|) is not checked here: `ferry tool call` checks it;
--   * Lua tables cannot tell [] from {}: an empty table passes as both.
-- Common subset of Lua 5.1 and 5.4.
local M = {}

local json_lib = json   -- the sandbox's, when there is one
local null = json_lib and json_lib.null

-- ---- JSON types of Lua values -------------------------------------------------

local array_marks = setmetatable({}, {__mode = "k"})

-- Marks a table as a JSON array (what json.array does in the sandbox).
function M.mark_array(t)
  array_marks[t] = true
  return t
end

local function is_null(v)
  return v == nil or (null ~= nil and v == null) or type(v) == "userdata"
end

-- "array" | "object" | "empty" (an empty table: both) | "mixed" for a table.
local function table_kind(t)
  if array_marks[t] then return "array" end
  if json_lib and json_lib.is_array and json_lib.is_array(t) then return "array" end
  local n, count, numeric = #t, 0, true
  for k in pairs(t) do
    count = count + 1
    if type(k) ~= "number" then numeric = false end
  end
  if count == 0 then return "empty" end
  if numeric and count == n then return "array" end
  if not numeric then
    for k in pairs(t) do if type(k) ~= "string" then return "mixed" end end
    return "object"
  end
  return "mixed"
end

local function is_integral(x)
  return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge and math.floor(x) == x
end

local function json_type(v)
  local t = type(v)
  if is_null(v) then return "null" end
  if t == "boolean" then return "boolean" end
  if t == "string" then return "string" end
  if t == "number" then return is_integral(v) and "integer" or "number" end
  if t == "table" then
    local k = table_kind(v)
    if k == "empty" then return "object" end
    if k == "mixed" then return "object" end
    return k
  end
  return t
end
M.json_type = json_type

local function type_matches(want, v)
  if want == "integer" then return type(v) == "number" and is_integral(v) end
  if want == "number" then return type(v) == "number" end
  if type(v) == "table" and table_kind(v) == "empty" then return want == "array" or want == "object" end
  return json_type(v) == want
end

local function is_array(v) return type(v) == "table" and (table_kind(v) == "array" or table_kind(v) == "empty") end
local function is_object(v)
  return type(v) == "table" and (table_kind(v) == "object" or table_kind(v) == "empty" or table_kind(v) == "mixed")
end

-- As the engine prints numbers: integers whole, others in the shortest of
-- %.15g and %.17g that reads back the same.
local function num_text(x)
  if is_integral(x) and math.abs(x) < 1e15 then return ("%d"):format(x) end
  local t = ("%.15g"):format(x)
  if tonumber(t) ~= x then t = ("%.17g"):format(x) end
  return t
end

local function equal(a, b)
  if is_null(a) and is_null(b) then return true end
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not equal(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function quote(s)
  return '"' .. tostring(s):gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function value_text(v)
  if is_null(v) then return "null" end
  if type(v) == "string" then return quote(v) end
  if type(v) == "number" then return num_text(v) end
  if type(v) == "boolean" then return tostring(v) end
  return json_type(v)
end

-- ---- paths ------------------------------------------------------------------------

local function key_path(path, key)
  if type(key) == "string" and key:match("^[%a_][%w_]*$") then return path .. "." .. key end
  return path .. "[" .. quote(key) .. "]"
end

local function index_path(path, i) return path .. "[" .. (i - 1) .. "]" end

-- ---- formats ------------------------------------------------------------------------

local function days_in_month(y, m)
  local days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
  if m == 2 and ((y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0) then return 29 end
  return days[m]
end

local function is_date(s)
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return false end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  return m >= 1 and m <= 12 and d >= 1 and d <= days_in_month(y, m)
end

local function is_hm(h, m) return tonumber(h) <= 23 and tonumber(m) <= 59 end

local function is_date_time(s)
  local date, sep, rest = s:match("^(%d%d%d%d%-%d%d%-%d%d)([Tt])(.+)$")
  if not date or not sep or not is_date(date) then return false end
  local h, mi, sec, tail = rest:match("^(%d%d):(%d%d):(%d%d)(.*)$")
  if not h or not is_hm(h, mi) or tonumber(sec) > 60 then return false end
  local frac = tail:match("^%.(%d+)")
  if frac then tail = tail:sub(#frac + 2) elseif tail:sub(1, 1) == "." then return false end
  if tail == "Z" or tail == "z" then return true end
  local oh, om = tail:match("^[%+%-](%d%d):(%d%d)$")
  return oh ~= nil and is_hm(oh, om)
end

local function is_email(s)
  local at = s:find("@", 1, true)
  if not at or at == 1 then return false end
  if s:find("[%z\1- \127]") or s:find("@", at + 1, true) then return false end
  local domain = s:sub(at + 1)
  local dot = domain:find(".", 1, true)
  return dot ~= nil and dot > 1 and domain:sub(-1) ~= "."
end

local function is_uuid(s)
  return #s == 36 and s:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
end

local FORMATS = {
  date = {is_date, "not a valid date (YYYY-MM-DD)"},
  ["date-time"] = {is_date_time, "not a valid date-time (RFC 3339, e.g. 2024-05-01T12:00:00Z)"},
  email = {is_email, "not a valid email address"},
  uuid = {is_uuid, "not a valid uuid (8-4-4-4-12 hex digits)"},
}

-- ---- POSIX ERE → Lua pattern (the common subset) ---------------------------------------

local CLASSES = {alnum = "%w", alpha = "%a", digit = "%d", lower = "%l", upper = "%u", space = "%s",
                 punct = "%p", xdigit = "%x", cntrl = "%c", blank = " \t", print = "\32-\126",
                 graph = "\33-\126"}
local MAGIC = "^$()%.[]*+-?"

local translated = {}

-- The Lua pattern for an ERE, or false when it uses what Lua patterns lack.
function M.lua_pattern(ere)
  if translated[ere] ~= nil then return translated[ere] end
  local out, i, n = {}, 1, #ere
  local last_atom
  local function lit(c)
    if MAGIC:find(c, 1, true) then return "%" .. c end
    return c
  end
  local ok = true
  while i <= n do
    local c = ere:sub(i, i)
    if c == "^" and i == 1 then
      out[#out + 1] = "^"; last_atom = nil; i = i + 1
    elseif c == "$" and i == n then
      out[#out + 1] = "$"; last_atom = nil; i = i + 1
    elseif c == "." then
      last_atom = "."; out[#out + 1] = last_atom; i = i + 1
    elseif c == "\\" then
      if i == n then ok = false; break end
      last_atom = lit(ere:sub(i + 1, i + 1)); out[#out + 1] = last_atom; i = i + 2
    elseif c == "[" then
      local j = i + 1
      local set = {"["}
      if ere:sub(j, j) == "^" then set[#set + 1] = "^"; j = j + 1 end
      if ere:sub(j, j) == "]" then set[#set + 1] = "%]"; j = j + 1 end
      local closed = false
      while j <= n do
        local d = ere:sub(j, j)
        if d == "]" then closed = true; j = j + 1; break end
        if d == "[" and ere:sub(j + 1, j + 1) == ":" then
          local name, e = ere:match("^%[:(%a+):%]()", j)
          if not name or not CLASSES[name] then ok = false; break end
          set[#set + 1] = CLASSES[name]
          j = e
        elseif d == "%" or d == "]" or d == "[" or d == "^" then
          set[#set + 1] = "%" .. d; j = j + 1
        elseif d == "-" and (j == n or ere:sub(j + 1, j + 1) == "]") then
          set[#set + 1] = "%-"; j = j + 1
        else
          set[#set + 1] = d; j = j + 1
        end
      end
      if not ok or not closed then ok = false; break end
      set[#set + 1] = "]"
      last_atom = table.concat(set)
      out[#out + 1] = last_atom
      i = j
    elseif c == "*" or c == "+" or c == "?" then
      if not last_atom then ok = false; break end
      out[#out + 1] = c == "*" and "*" or c == "+" and "+" or "?"
      last_atom = nil; i = i + 1
    elseif c == "{" then
      local lo, hi, e = ere:match("^{(%d+)(,?%d*)}()", i)
      if not lo or not last_atom then ok = false; break end
      lo = tonumber(lo)
      out[#out] = nil
      for _ = 1, lo do out[#out + 1] = last_atom end
      if hi == "," then
        out[#out + 1] = last_atom .. "*"
      elseif hi ~= "" then
        local h = tonumber(hi:sub(2))
        if not h or h < lo then ok = false; break end
        for _ = lo + 1, h do out[#out + 1] = last_atom .. "?" end
      end
      last_atom = nil
      i = e
    elseif c == "(" or c == ")" or c == "|" or c == "^" or c == "$" then
      ok = false; break
    else
      last_atom = lit(c); out[#out + 1] = last_atom; i = i + 1
    end
  end
  local result = ok and table.concat(out) or false
  translated[ere] = result
  return result
end

-- ---- the validator ------------------------------------------------------------------------

local validate_node

local function utf8_len(s)
  local n = 0
  for i = 1, #s do
    local b = s:byte(i)
    if b < 0x80 or b >= 0xC0 then n = n + 1 end
  end
  return n
end

local function resolve_ref(root, ref)
  if type(ref) ~= "string" then return nil end
  local kind, name = "definitions", ref:match("^#/definitions/(.+)$")
  if not name then kind, name = "$defs", ref:match("^#/%$defs/(.+)$") end
  if not name then return nil end
  name = name:gsub("~1", "/"):gsub("~0", "~")
  local container = root[kind]
  return type(container) == "table" and container[name] or nil
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

local function check_number(node, v)
  if type(v) ~= "number" then return nil end
  local min, emin, max, emax = node.minimum, node.exclusiveMinimum, node.maximum, node.exclusiveMaximum
  if min and emin == true and v <= min then
    return ("value %s is not above exclusive minimum %s"):format(num_text(v), num_text(min))
  end
  if min and v < min then return ("value %s is below minimum %s"):format(num_text(v), num_text(min)) end
  if type(emin) == "number" and v <= emin then
    return ("value %s is not above exclusiveMinimum %s"):format(num_text(v), num_text(emin))
  end
  if max and emax == true and v >= max then
    return ("value %s is not below exclusive maximum %s"):format(num_text(v), num_text(max))
  end
  if max and v > max then return ("value %s is above maximum %s"):format(num_text(v), num_text(max)) end
  if type(emax) == "number" and v >= emax then
    return ("value %s is not below exclusiveMaximum %s"):format(num_text(v), num_text(emax))
  end
  local d = node.multipleOf
  if d then
    local q = v / d
    local nearest = math.floor(q + 0.5)
    if math.abs(q - nearest) > 1e-9 + math.abs(q) * 1e-15 then
      return ("value %s is not a multiple of %s"):format(num_text(v), num_text(d))
    end
  end
  return nil
end

local function check_string(node, v)
  if type(v) ~= "string" then return nil end
  local len = utf8_len(v)
  if node.minLength and len < node.minLength then
    return ("length %d is below minLength %s"):format(len, num_text(node.minLength))
  end
  if node.maxLength and len > node.maxLength then
    return ("length %d is above maxLength %s"):format(len, num_text(node.maxLength))
  end
  if type(node.pattern) == "string" then
    local lp = M.lua_pattern(node.pattern)
    if lp and v:find("%z") then
      return ("does not match pattern '%s' (contains a NUL character)"):format(node.pattern)
    end
    if lp and not v:find(lp) then return ("does not match pattern '%s'"):format(node.pattern) end
  end
  local f = FORMATS[node.format]
  if f and not f[1](v) then return f[2] end
  return nil
end

local function fail(state, path, message)
  state.path, state.message = path, message
  return false
end

-- Runs `fn` on a copy of the state, so a failing branch of anyOf does not
-- become the reported failure.
local function branch(state, node, v, path)
  local sub = {root = state.root, hops = state.hops}
  local ok = validate_node(sub, node, v, path)
  if sub.fatal then state.fatal, state.path, state.message = true, sub.path, sub.message end
  return ok
end

validate_node = function(state, node, v, path)
  if node == true then return true end
  if type(node) ~= "table" then return fail(state, path, "no value is allowed here") end
  if is_null(v) and node.nullable == true then return true end

  if node["$ref"] ~= nil then
    local target = resolve_ref(state.root, node["$ref"])
    if target == nil then return fail(state, path, ("$ref '%s' does not resolve"):format(tostring(node["$ref"]))) end
    if state.hops >= 64 then
      state.fatal = true
      return fail(state, path, ("$ref '%s' nests more than 64 deep without reaching a value (reference cycle " ..
                                "in the schema)"):format(node["$ref"]))
    end
    state.hops = state.hops + 1
    local ok = validate_node(state, target, v, path)
    state.hops = state.hops - 1
    if not ok then return false end
  end

  local t = node.type
  if t ~= nil then
    local list = type(t) == "table" and t or {t}
    local matched = false
    for _, want in ipairs(list) do
      if type_matches(want, v) then matched = true; break end
    end
    if not matched then
      local expected
      if #list == 1 then expected = list[1] else
        expected = table.concat(list, ", ", 1, #list - 1) .. " or " .. list[#list]
      end
      return fail(state, path, ("expected %s, got %s"):format(expected, json_type(v)))
    end
  end

  if type(node.enum) == "table" then
    local found = false
    for _, option in ipairs(node.enum) do
      if equal(option, v) or (type(option) == "number" and option == v) then found = true; break end
    end
    if not found then
      local parts = {}
      for i, option in ipairs(node.enum) do parts[i] = value_text(option) end
      return fail(state, path, "must be one of: " .. table.concat(parts, ", "))
    end
  end
  if node.const ~= nil and not equal(node.const, v) then
    return fail(state, path, "must be exactly " .. value_text(node.const))
  end

  local msg = check_number(node, v) or check_string(node, v)
  if msg then return fail(state, path, msg) end

  if is_array(v) and not (type(v) == "table" and table_kind(v) == "empty" and node.type == "object") then
    local n = #v
    if node.minItems and n < node.minItems then
      return fail(state, path, ("array length %d is below minItems %s"):format(n, num_text(node.minItems)))
    end
    if node.maxItems and n > node.maxItems then
      return fail(state, path, ("array length %d is above maxItems %s"):format(n, num_text(node.maxItems)))
    end
    if node.uniqueItems == true then
      for i = 1, n do
        for j = i + 1, n do
          if equal(v[i], v[j]) then
            return fail(state, path, ("items [%d] and [%d] are equal, but uniqueItems is set"):format(i - 1, j - 1))
          end
        end
      end
    end
    if node.items ~= nil then
      for i = 1, n do
        if not validate_node(state, node.items, v[i], index_path(path, i)) then return false end
      end
    end
  end

  if is_object(v) and not (table_kind(v) == "empty" and node.type == "array") then
    if type(node.required) == "table" then
      for _, name in ipairs(node.required) do
        if v[name] == nil then
          return fail(state, path, ("missing required property '%s'"):format(name))
        end
      end
    end
    local count = 0
    for _ in pairs(v) do count = count + 1 end
    if node.minProperties and count < node.minProperties then
      return fail(state, path, ("object has %d properties, below minProperties %s"):format(count,
                  num_text(node.minProperties)))
    end
    if node.maxProperties and count > node.maxProperties then
      return fail(state, path, ("object has %d properties, above maxProperties %s"):format(count,
                  num_text(node.maxProperties)))
    end
    local props = type(node.properties) == "table" and node.properties or {}
    for _, name in ipairs(sorted_keys(props)) do
      if v[name] ~= nil and not validate_node(state, props[name], v[name], key_path(path, name)) then
        return false
      end
    end
    local extra = node.additionalProperties
    if extra ~= nil and extra ~= true then
      for _, key in ipairs(sorted_keys(v)) do
        if props[key] == nil then
          if extra == false then return fail(state, path, ("property '%s' is not allowed"):format(tostring(key))) end
          if not validate_node(state, extra, v[key], key_path(path, key)) then return false end
        end
      end
    end
  end

  if type(node.allOf) == "table" then
    for _, sub in ipairs(node.allOf) do
      if not validate_node(state, sub, v, path) then return false end
    end
  end
  if type(node.anyOf) == "table" then
    local any = false
    for _, sub in ipairs(node.anyOf) do
      if branch(state, sub, v, path) then any = true; break end
      if state.fatal then return false end
    end
    if not any then return fail(state, path, "matches none of anyOf") end
  end
  if type(node.oneOf) == "table" then
    local matches = 0
    for _, sub in ipairs(node.oneOf) do
      if branch(state, sub, v, path) then matches = matches + 1 end
      if state.fatal then return false end
    end
    if matches == 0 then return fail(state, path, "matches none of oneOf") end
    if matches > 1 then
      return fail(state, path, ("matches %d schemas of oneOf, expected exactly 1"):format(matches))
    end
  end
  if node["not"] ~= nil then
    local matched = branch(state, node["not"], v, path)
    if state.fatal then return false end
    if matched then return fail(state, path, "must not match the schema in 'not'") end
  end
  return true
end

-- true, or false and {path = "$.x", message = "..."}.
function M.check(schema, value)
  local state = {root = schema, hops = 0}
  if validate_node(state, schema, value, "$") then return true end
  return false, {path = state.path, message = state.message}
end

return setmetatable(M, {__call = function(_, schema, value) return M.check(schema, value) end})
