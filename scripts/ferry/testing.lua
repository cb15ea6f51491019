-- ferry.testing: run a provider's tools in-process, under busted, the way
-- ferry runs them.
--
--   local testing = require "ferry.testing"
--   local provider = testing.load("providers/acme.lua")   -- in a sandbox-like environment
--   local h = testing.new(provider, {
--     base_url = prism.url,                 -- where requests go: Prism, a fault server, the real API
--     credentials = {token = "test"},       -- injected as the provider's auth says
--     settings = {workspace = "w1"},        -- ctx.connection.settings
--   })
--   local result, err = h:call("search", {query = "ada"})   -- err: {code, message, details}
--   h.requests[1].path, h.requests[1].query.limit, h:last_request().json
--
-- Without a network:
--   testing.new(provider, {responses = {{status = 429, headers = {["Retry-After"] = "3"}}}})
--   testing.new(provider, {respond = function(req) return {status = 200, json = {...}} end})
--   testing.new(provider, {base_url = ..., fixtures = "spec/fixtures/acme.json"})
--     records real answers when FERRY_RECORD=1 (or record = true), replays them otherwise
--
-- What it mirrors: arguments are validated against the tool's input schema
-- first (invalid_arguments, details.path, as ferry says it); arguments and
-- results go through JSON; errors come back as ferry shapes them (a string
-- is upstream_error, an unknown code is upstream_error with details.code, a
-- raised error is script_error with details.file and line); the provider's
-- auth is injected and its hosts enforced (egress_denied); redirects are not
-- followed; credentials echoed by the upstream are [redacted]; globals are
-- sealed after loading. What it cannot mirror: the CPU and memory caps, and
-- Lua 5.4-only code (busted runs on Lua 5.1 here: keep providers to the
-- common subset, or run them for real with `ferry tool call`).
--
-- luasocket is needed for real HTTP (lua-sec too for https); replaying
-- fixtures and fake responses need nothing. Lua 5.1 to 5.4.
local validate = require "ferry.validate"

local M = {}

-- ---- JSON (pure Lua: decoded arrays stay arrays, null is a sentinel) --------------

local array_marks = setmetatable({}, {__mode = "k"})

local null
do
  local ok, cjson = pcall(require, "cjson")
  if ok and type(cjson) == "table" and cjson.null ~= nil then
    null = cjson.null
  elseif newproxy then                     -- luacheck: ignore 113
    null = newproxy(false)                 -- luacheck: ignore 113
  else
    null = io.stdout   -- any userdata works: the SDK reads every userdata as JSON null
  end
end

local json = {null = null}
M.json = json

function json.array(t)
  t = t or {}
  array_marks[t] = true
  validate.mark_array(t)
  return t
end

function json.is_array(t) return array_marks[t] == true end

local function is_array(t)
  if array_marks[t] then return true, #t end
  local n, count = #t, 0
  for k in pairs(t) do
    if type(k) ~= "number" then return false end
    count = count + 1
  end
  if count == 0 then return false end
  if count ~= n then return nil end
  return true, n
end

local ESC = {['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
             ["\t"] = "\\t"}
local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return ESC[c] or ("\\u%04x"):format(c:byte()) end) .. '"'
end

local function encode_number(x, path)
  if x ~= x or x == math.huge or x == -math.huge then
    error({json_path = path, message = "a number that JSON cannot hold (NaN or infinity)"})
  end
  if math.floor(x) == x and math.abs(x) < 2 ^ 63 then return ("%d"):format(x) end
  return ("%.17g"):format(x)
end

local function encode_value(v, path, indent, level, out)
  local t = type(v)
  if v == nil or v == null then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then out[#out + 1] = encode_number(v, path)
  elseif t == "string" then out[#out + 1] = encode_string(v)
  elseif t == "table" then
    local arr, n = is_array(v)
    local nl = indent and ("\n" .. string.rep(indent, level + 1)) or ""
    local close = indent and ("\n" .. string.rep(indent, level)) or ""
    if arr == nil then
      error({json_path = path, message = "a table with both array and other keys, or holes in an array"})
    elseif arr then
      if n == 0 then out[#out + 1] = "[]"; return end
      out[#out + 1] = "["
      for i = 1, n do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = nl
        encode_value(v[i], path .. "[" .. (i - 1) .. "]", indent, level + 1, out)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          error({json_path = path, message = "a table with a key of type " .. type(k)})
        end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      if #keys == 0 then out[#out + 1] = "{}"; return end
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = nl .. encode_string(k) .. (indent and ": " or ":")
        encode_value(v[k], path .. "." .. k, indent, level + 1, out)
      end
      out[#out + 1] = close .. "}"
    end
  elseif t == "userdata" then out[#out + 1] = "null"
  else
    error({json_path = path, message = "a value of type " .. t})
  end
end

-- Text, or nil and why (with the path of the offending value).
function json.encode(v, opts)
  local out = {}
  local ok, err = pcall(encode_value, v, "$", opts and opts.indent, 0, out)
  if not ok then
    if type(err) == "table" then return nil, err.json_path .. ": " .. err.message end
    return nil, tostring(err)
  end
  return table.concat(out)
end

local function decode_error(s, i, what)
  local line = 1
  for _ in s:sub(1, i):gmatch("\n") do line = line + 1 end
  error({json_decode = true, message = ("%s at line %d (byte %d)"):format(what, line, i)})
end

local function skip_ws(s, i)
  return (s:find("[^ \t\r\n]", i)) or (#s + 1)
end

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64) end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
  end
  return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
                     0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

local decode_value

local function decode_string(s, i)
  local buf, j = {}, i + 1
  while true do
    local c = s:sub(j, j)
    if c == "" then decode_error(s, j, "unterminated string") end
    if c == '"' then return table.concat(buf), j + 1 end
    if c == "\\" then
      local e = s:sub(j + 1, j + 1)
      local map = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}
      if map[e] then
        buf[#buf + 1] = map[e]
        j = j + 2
      elseif e == "u" then
        local hex = s:sub(j + 2, j + 5)
        if not hex:match("^%x%x%x%x$") then decode_error(s, j, "bad \\u escape") end
        local cp = tonumber(hex, 16)
        j = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF and s:sub(j, j + 1) == "\\u" then
          local lo = tonumber(s:sub(j + 2, j + 5), 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then
            cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
            j = j + 6
          end
        end
        buf[#buf + 1] = utf8_char(cp)
      else
        decode_error(s, j, "bad escape")
      end
    else
      local k = s:find('["\\]', j)
      if not k then decode_error(s, j, "unterminated string") end
      buf[#buf + 1] = s:sub(j, k - 1)
      j = k
    end
  end
end

decode_value = function(s, i)
  i = skip_ws(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local obj = {}
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "}" then return obj, i + 1 end
    while true do
      if s:sub(i, i) ~= '"' then decode_error(s, i, "expected a string key") end
      local k
      k, i = decode_string(s, i)
      i = skip_ws(s, i)
      if s:sub(i, i) ~= ":" then decode_error(s, i, "expected ':'") end
      local v
      v, i = decode_value(s, i + 1)
      obj[k] = v
      i = skip_ws(s, i)
      local d = s:sub(i, i)
      if d == "}" then return obj, i + 1 end
      if d ~= "," then decode_error(s, i, "expected ',' or '}'") end
      i = skip_ws(s, i + 1)
    end
  elseif c == "[" then
    local arr = json.array({})
    i = skip_ws(s, i + 1)
    if s:sub(i, i) == "]" then return arr, i + 1 end
    while true do
      local v
      v, i = decode_value(s, i)
      arr[#arr + 1] = v
      i = skip_ws(s, i)
      local d = s:sub(i, i)
      if d == "]" then return arr, i + 1 end
      if d ~= "," then decode_error(s, i, "expected ',' or ']'") end
      i = i + 1
    end
  elseif c == '"' then
    return decode_string(s, i)
  elseif s:sub(i, i + 3) == "true" then return true, i + 4
  elseif s:sub(i, i + 4) == "false" then return false, i + 5
  elseif s:sub(i, i + 3) == "null" then return null, i + 4
  else
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
    if not num or num == "" or num == "-" then decode_error(s, i, "unexpected character") end
    local v = tonumber(num)
    if v == nil then decode_error(s, i, "bad number") end
    return v, i + #num
  end
end

-- Value, or nil and why. Arrays are marked (json.array), null is json.null.
function json.decode(s)
  if type(s) ~= "string" then return nil, "expected a string to decode" end
  local ok, v, i = pcall(decode_value, s, 1)
  if not ok then
    if type(v) == "table" and v.json_decode then return nil, v.message end
    error(v, 0)
  end
  if skip_ws(s, i) <= #s then return nil, ("trailing text at byte %d"):format(i) end
  return v
end

-- A deep copy through JSON, or an error naming the path that has no JSON form.
local function through_json(v, what)
  if v == nil then return nil end
  local text, err = json.encode(v)
  if not text then return nil, what .. " has no JSON form: " .. err end
  local copy = json.decode(text)
  if copy == null then return nil end
  return copy
end

-- ---- files --------------------------------------------------------------------------

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- ---- loading a provider in a sandbox-like environment --------------------------------

local SANDBOX_BASE = {
  "assert", "error", "ipairs", "next", "pairs", "pcall", "select", "tonumber", "tostring", "type", "xpcall",
  "rawequal", "rawget", "rawset", "getmetatable", "setmetatable", "_VERSION", "collectgarbage", "print",
}

local function copy(t, names)
  local out = {}
  if names then
    for _, n in ipairs(names) do out[n] = t[n] end
  else
    for k, v in pairs(t) do out[k] = v end
  end
  return out
end

local function load_text(src, chunkname, env)
  if setfenv and loadstring then          -- luacheck: ignore 113
    local fn, err = loadstring(src, chunkname)   -- luacheck: ignore 113
    if not fn then return nil, err end
    setfenv(fn, env)                     -- luacheck: ignore 113
    return fn
  end
  return load(src, chunkname, "t", env)
end

-- The file of a module on package.path, or nil.
local function find_module(name)
  local rel = name:gsub("%.", "/")
  for template in package.path:gmatch("[^;]+") do
    local path = template:gsub("%?", rel)
    local f = io.open(path, "rb")
    if f then
      f:close()
      return path
    end
  end
  return nil
end

-- A fresh environment with the sandbox's globals (docs/sandbox.md). Modules
-- required from it load into it too (ferry does the same), so the SDK sees
-- the sandbox's `json`; `dirs` are searched first (a providers folder).
local function sandbox_env(dirs)
  local env = copy(_G, SANDBOX_BASE)
  env._G = env
  env.rawlen = rawlen or function(t) return #t end        -- luacheck: ignore 113
  env.unpack = table.unpack or unpack                     -- luacheck: ignore 113
  env.string = copy(string)
  env.string.dump = nil
  env.table = copy(table)
  env.table.unpack = env.table.unpack or unpack           -- luacheck: ignore 113
  env.math = copy(math)
  env.math.type = env.math.type or function(x)
    if type(x) ~= "number" then return nil end
    return math.floor(x) == x and "integer" or "float"
  end
  env.utf8 = utf8 and copy(utf8) or nil                   -- luacheck: ignore 113
  env.os = copy(os, {"time", "clock", "date", "difftime"})
  env.coroutine = copy(coroutine)
  env.json = json
  env.load = function(chunk, chunkname, mode, e)
    if type(chunk) ~= "string" then error("load: only text chunks are allowed here", 2) end
    if mode ~= nil and mode ~= "t" then error("load: binary chunks are not allowed", 2) end
    return load_text(chunk, chunkname or "=(load)", e or env)
  end
  local loaded = {json = json}
  env.require = function(name)
    if loaded[name] ~= nil then return loaded[name] end
    if name == "cjson" then
      local ok, cjson = pcall(require, "cjson")
      if ok then loaded[name] = cjson; return cjson end
    end
    local path
    for _, d in ipairs(dirs or {}) do
      local candidate = d .. "/" .. name:gsub("%.", "/") .. ".lua"
      local f = io.open(candidate, "rb")
      if f then f:close(); path = candidate; break end
    end
    path = path or find_module(name)
    if not path then
      error("module '" .. name .. "' not found (scripts may require ferry's bundled modules only)", 2)
    end
    local src = assert(read_file(path))
    local fn, err = load_text(src, "@" .. path, env)
    if not fn then error(err, 0) end
    local v = fn(name)
    if v == nil then v = true end
    loaded[name] = v
    return v
  end
  return env
end

-- After loading, reading or assigning an undeclared global raises, as in ferry.
local function seal(env)
  setmetatable(env, {
    __index = function(_, k) error("undeclared global '" .. tostring(k) .. "' (globals are sealed; use local)", 2) end,
    __newindex = function(_, k) error("assignment to undeclared global '" .. tostring(k) ..
                                      "' (globals are sealed; use local)", 2) end,
  })
end

-- Loads a provider file the way ferry does (its own environment, the
-- sandbox's globals, globals sealed after the chunk ran) and returns its
-- table. Raises with the reason when it does not load.
function M.load(path, opts)
  opts = opts or {}
  local src, err = read_file(path)
  if not src then error("ferry.testing.load: cannot read " .. path .. ": " .. tostring(err), 2) end
  local dir = path:match("^(.*)/[^/]*$") or "."
  local dirs = {dir}
  for _, d in ipairs(opts.module_dirs or {}) do dirs[#dirs + 1] = d end
  local env = sandbox_env(dirs)
  local fn, lerr = load_text(src, "@" .. path, env)
  if not fn then error(lerr, 0) end
  local provider = fn()
  if type(provider) ~= "table" then
    error("ferry.testing.load: " .. path .. " must return a table (it returned " .. type(provider) .. ")", 2)
  end
  seal(env)
  local problems = M.problems(provider, path)
  if #problems > 0 then
    error("ferry.testing.load: " .. path .. ":\n  " .. table.concat(problems, "\n  "), 2)
  end
  return provider
end

-- A quick look at the contract (ferry providers check is the full one).
function M.problems(p, path)
  local out = {}
  local function need(cond, msg) if not cond then out[#out + 1] = msg end end
  need(type(p.slug) == "string" and p.slug:match("^[a-z0-9][a-z0-9_-]*$") and not p.slug:find("__", 1, true),
       "slug: lowercase letters, digits, '_' or '-' (no '__')")
  if path and type(p.slug) == "string" then
    local base = path:match("([^/]+)%.lua$")
    need(base == nil or base == p.slug, ("slug: '%s' does not match the file name '%s.lua'"):format(p.slug, base))
  end
  for _, f in ipairs({"name", "category", "description"}) do
    need(type(p[f]) == "string" and p[f] ~= "", f .. ": required string is missing")
  end
  need(type(p.hosts) == "table", "hosts: must be an array of strings")
  need(type(p.auth) == "table" and type(p.auth.type) == "string", "auth: must be a table like {type = \"none\"}")
  need(type(p.tools) == "table", "tools: must be a table of tools")
  for name, tool in pairs(type(p.tools) == "table" and p.tools or {}) do
    need(type(tool) == "table", "tools." .. tostring(name) .. ": must be a table")
    if type(tool) == "table" then
      need(tool.access == "read" or tool.access == "write",
           "tools." .. name .. ".access: must be \"read\" or \"write\"")
      need(type(tool.description) == "string" and tool.description ~= "",
           "tools." .. name .. ".description: required string is missing")
      need(type(tool.run) == "function", "tools." .. name .. ".run: must be a function(ctx, args)")
      need(tool.input == nil or (type(tool.input) == "table" and tool.input.type == "object"),
           "tools." .. name .. ".input: the root schema must have type = \"object\"")
    end
  end
  return out
end

-- ---- URLs -----------------------------------------------------------------------------

local function escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function scalar_text(v)
  if type(v) == "number" then
    if math.floor(v) == v and math.abs(v) < 2 ^ 63 then return ("%d"):format(v) end
    return ("%.17g"):format(v)
  end
  if type(v) == "boolean" then return tostring(v) end
  if type(v) == "string" then return v end
  error("ctx.http.request: query values must be strings, numbers, booleans or lists of them", 4)
end

-- "a=1&b=x&b=y" from {a = 1, b = {"x", "y"}}, names sorted.
local function encode_query(q)
  if q == nil then return "" end
  if type(q) ~= "table" then error("ctx.http.request: query must be a table", 3) end
  local names = {}
  for k in pairs(q) do names[#names + 1] = k end
  table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(names) do
    local v = q[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do parts[#parts + 1] = escape(k) .. "=" .. escape(scalar_text(item)) end
    elseif v ~= null and type(v) ~= "userdata" then
      parts[#parts + 1] = escape(k) .. "=" .. escape(scalar_text(v))
    end
  end
  return table.concat(parts, "&")
end

local function parse_query(s)
  local one, all = {}, {}
  for pair in (s or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = unescape(k), unescape(v)
    if one[k] == nil then one[k] = v end
    all[k] = all[k] or {}
    all[k][#all[k] + 1] = v
  end
  return one, all
end

local function split_url(url)
  local scheme, host, port, rest = url:match("^(%a[%w+.-]*)://([^/:?#]+):?(%d*)([^#]*)")
  if not scheme then return nil end
  local path, query = rest:match("^([^?]*)%??(.*)$")
  if path == "" then path = "/" end
  return {scheme = scheme:lower(), host = host:lower(), port = port ~= "" and tonumber(port) or nil,
          path = path, query = query}
end

local function join(base, path)
  base = base:gsub("/+$", "")
  path = path:gsub("^/+", "")
  return base .. "/" .. path
end

local function host_allowed(hosts, host)
  for _, h in ipairs(hosts) do
    if h:sub(1, 2) == "*." then
      local suffix = h:sub(2)
      if #host > #suffix and host:sub(-#suffix) == suffix then return true end
    elseif h:lower() == host then
      return true
    end
  end
  return false
end

-- ---- base64 (basic auth) ---------------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = {}
    for k = 3, 0, -1 do
      local idx = math.floor(n / 64 ^ k) % 64 + 1
      chars[#chars + 1] = B64:sub(idx, idx)
    end
    if not b then chars[3], chars[4] = "=", "=" elseif not c then chars[4] = "=" end
    out[#out + 1] = table.concat(chars)
  end
  return table.concat(out)
end

-- ---- the harness ---------------------------------------------------------------------------

local Harness = {}
Harness.__index = Harness

local STABLE = {}
for _, c in ipairs({"bad_request", "unauthorized", "forbidden", "not_found", "unknown_tool", "invalid_arguments",
                    "rate_limited", "upstream_error", "upstream_timeout", "upstream_rate_limited", "egress_denied",
                    "script_error", "script_timeout", "script_memory", "reconnect_required", "approval_required",
                    "payload_too_large", "internal", "conflict"}) do
  STABLE[c] = true
end
M.CODES = STABLE

-- A harness failure (a replay miss, no fake answer left): raised out of
-- call(), not turned into a tool error.
local HARNESS = {}
local function harness_error(msg)
  error(setmetatable({message = msg}, HARNESS), 0)
end

local function transport_error(code, message)
  local e = {code = code, message = message}
  return setmetatable(e, {__tostring = function(x) return x.code .. ": " .. x.message end})
end

local function header_get(headers, name)
  name = name:lower()
  for k, v in pairs(headers or {}) do
    if type(k) == "string" and k:lower() == name then return v end
  end
  return nil
end

-- Every secret value of the connection, to redact from what comes back.
local function secrets_of(h)
  local list = {}
  for _, v in pairs(h.credentials or {}) do
    if type(v) == "string" and #v >= 4 then list[#list + 1] = v end
  end
  local c = h.credentials or {}
  if type(c.username) == "string" and type(c.password) == "string" then
    list[#list + 1] = base64(c.username .. ":" .. c.password)
  end
  return list
end

local function redact(text, secrets)
  if type(text) ~= "string" then return text end
  for _, s in ipairs(secrets) do
    local start = 1
    while true do
      local i, j = text:find(s, start, true)
      if not i then break end
      text = text:sub(1, i - 1) .. "[redacted]" .. text:sub(j + 1)
      start = i + #"[redacted]"
    end
  end
  return text
end

local function make_response(status, headers, body, secrets)
  local hs = {}
  for k, v in pairs(headers or {}) do hs[tostring(k):lower()] = redact(tostring(v), secrets) end
  body = redact(body or "", secrets)
  local resp = {status = status, ok = status >= 200 and status < 300, headers = hs, body = body}
  resp.json = function()
    local v, err = json.decode(resp.body)
    if v == nil then
      return nil, transport_error("upstream_error", "the answer is not JSON: " .. tostring(err))
    end
    return v
  end
  return resp
end

-- A canned reply {status, headers, json | body, error = "upstream_timeout"} as a response.
local function reply_response(reply, secrets)
  if type(reply) ~= "table" then harness_error("ferry.testing: a fake reply must be a table") end
  if reply.error then
    return nil, transport_error(reply.error, reply.message or ("fake " .. reply.error))
  end
  local headers = copy(reply.headers or {})
  local body = reply.body
  if reply.json ~= nil then
    body = assert(json.encode(reply.json))
    if header_get(headers, "content-type") == nil then headers["content-type"] = "application/json" end
  end
  return make_response(reply.status or 200, headers, body or "", secrets)
end

-- ---- fixtures -------------------------------------------------------------------------------

local SKIP_HEADERS = {date = true, ["set-cookie"] = true, server = true, connection = true,
                      ["content-length"] = true, ["transfer-encoding"] = true, ["keep-alive"] = true,
                      ["access-control-allow-origin"] = true, vary = true}

local function fixture_key(method, path, query, body)
  local normalized = body
  if type(body) == "string" and body ~= "" then
    local v = json.decode(body)
    if v ~= nil then normalized = json.encode(v) end
  end
  return method .. " " .. path .. (query ~= "" and ("?" .. query) or "") .. (normalized and normalized ~= "" and
    (" " .. normalized) or "")
end

local function load_fixtures(path)
  local text = read_file(path)
  if not text then return {interactions = {}} end
  local doc, err = json.decode(text)
  if type(doc) ~= "table" then error("ferry.testing: " .. path .. " is not a fixture file: " .. tostring(err), 0) end
  doc.interactions = doc.interactions or json.array()
  return doc
end

local function save_fixtures(path, doc)
  write_file(path, assert(json.encode(doc, {indent = "  "})) .. "\n")
end

-- ---- sending -------------------------------------------------------------------------------

local function live_request(url, method, headers, body, timeout_s)
  local is_https = url:match("^https:")
  local ok_mod, http = pcall(require, is_https and "ssl.https" or "socket.http")
  if not ok_mod then
    harness_error("ferry.testing: " .. (is_https and "lua-sec (ssl.https)" or "luasocket") ..
                  " is needed to send real requests (" .. tostring(http) .. ")")
  end
  local ltn12 = require "ltn12"
  local chunks = {}
  local req_headers = copy(headers)
  if body and body ~= "" then req_headers["content-length"] = tostring(#body) end
  local socket_http = require "socket.http"
  local saved = socket_http.TIMEOUT
  socket_http.TIMEOUT = timeout_s
  local ok, code, resp_headers = http.request{
    url = url, method = method, headers = req_headers,
    source = body and body ~= "" and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
    redirect = false,
  }
  socket_http.TIMEOUT = saved
  if not ok then
    local why = tostring(code)
    if why:find("timeout", 1, true) then return nil, transport_error("upstream_timeout", "the request timed out") end
    return nil, transport_error("upstream_error", "the request failed: " .. why)
  end
  return code, resp_headers or {}, table.concat(chunks)
end

-- A request's path relative to the base URL's own path, so answers recorded
-- from one server (Prism at /) replay for another (https://slack.com/api).
function Harness:relative_path(path)
  local base = self.base_url and split_url(self.base_url)
  local prefix = base and base.path:gsub("/+$", "") or ""
  if prefix ~= "" and (path == prefix or path:sub(1, #prefix + 1) == prefix .. "/") then
    path = path:sub(#prefix + 1)
    if path == "" then path = "/" end
  end
  return path
end

-- ctx.http.request for this harness.
function Harness:request(req)
  if type(req) ~= "table" then error("ctx.http.request: give a table {method, url|path, ...}", 2) end
  local p = self.provider
  local method = (req.method or "GET"):upper()
  if not method:match("^%a+$") then
    error("ctx.http.request: method '" .. tostring(req.method) .. "' is not valid", 2)
  end
  local url
  if type(req.url) == "string" then
    url = req.url
  elseif type(req.path) == "string" then
    if not self.base_url then error("ctx.http.request: path given but the provider has no base_url", 2) end
    url = join(self.base_url, req.path)
  else
    error("ctx.http.request: give url or path (a string)", 2)
  end
  local parts = split_url(url)
  if not parts or (parts.scheme ~= "http" and parts.scheme ~= "https") then
    return nil, transport_error("egress_denied", "only http and https URLs may be requested: " .. url)
  end
  if not host_allowed(self.hosts, parts.host) then
    return nil, transport_error("egress_denied", ("host %s is not in the provider's hosts"):format(parts.host))
  end

  local query = {}
  for k, v in pairs(req.query or {}) do query[k] = v end
  local headers = {}
  for k, v in pairs(req.headers or {}) do headers[tostring(k):lower()] = tostring(v) end
  local body = req.body
  local body_json = req.json

  -- the credential, where the provider's auth declaration puts it
  local auth, creds = p.auth or {}, self.credentials
  local injected_query, injected_field
  if creds and auth.type == "api_key" then
    local value = creds[auth.field or "api_key"]
    if value ~= nil then
      if auth.header then
        headers[auth.header:lower()] = (auth.prefix or "") .. value
      elseif auth.query then
        query[auth.query] = value
        injected_query = auth.query
      elseif auth.body then
        injected_field = auth.body
        if body_json == nil and body == nil then body_json = {} end
        if type(body_json) == "table" then
          body_json = copy(body_json)
          body_json[auth.body] = value
        end
      end
    end
  elseif creds and auth.type == "basic" and creds.username then
    headers.authorization = "Basic " .. base64(creds.username .. ":" .. (creds.password or ""))
  elseif creds and auth.type == "oauth2" and creds.access_token then
    -- `token` picks another of the connection's tokens (auth.token_fields), when it has it
    if req.token ~= nil and req.token ~= "access_token" and not (auth.token_fields or {})[req.token] then
      error("ctx.http.request: token '" .. tostring(req.token) .. "' is not access_token or one of the " ..
            "provider's auth.token_fields", 2)
    end
    headers.authorization = "Bearer " .. (req.token and creds[req.token] or creds.access_token)
  end

  if body_json ~= nil then
    local text, err = json.encode(body_json)
    if not text then error("ctx.http.request: json " .. err, 2) end
    body = text
    headers["content-type"] = headers["content-type"] or "application/json"
  elseif body ~= nil and type(body) ~= "string" then
    error("ctx.http.request: body must be a string (use json = ... for a table)", 2)
  end

  local qs = encode_query(query)
  local full_qs = parts.query
  if qs ~= "" then full_qs = (full_qs ~= "" and (full_qs .. "&") or "") .. qs end
  local full_url = url:gsub("[?#].*$", "") .. (full_qs ~= "" and ("?" .. full_qs) or "")

  local one, all = parse_query(full_qs)
  local record = {method = method, url = full_url, path = parts.path, raw_query = full_qs, query = one,
                  query_list = all, headers = headers, body = body}
  if body and headers["content-type"] and headers["content-type"]:find("json", 1, true) then
    record.json = json.decode(body)
  end
  self.requests[#self.requests + 1] = record

  local timeout_s = (tonumber(req.timeout_ms) or 30000) / 1000
  local secrets = secrets_of(self)

  -- fakes
  if self.respond then
    return reply_response(self.respond(record), secrets)
  end
  if self.responses then
    self.answered = self.answered + 1
    local reply = self.responses[self.answered]
    if reply == nil then
      harness_error(("ferry.testing: no fake response left for request %d (%s %s)"):format(self.answered,
                                                                                         method, full_url))
    end
    return reply_response(reply, secrets)
  end

  -- fixtures
  local key
  if self.fixtures then
    local kq = {}
    for k, v in pairs(one) do if k ~= injected_query then kq[k] = all[k] or v end end
    local kbody = body
    if injected_field and record.json then
      local j = copy(record.json)
      j[injected_field] = nil
      kbody = json.encode(j)
    end
    key = fixture_key(method, self:relative_path(parts.path), encode_query(kq), kbody)
    if not self.recording then
      local list = self.fixtures.by_key[key]
      if not list then
        harness_error(("ferry.testing: no recorded response for %s in %s; record it with FERRY_RECORD=1")
                      :format(key, self.fixtures.path))
      end
      local n = (self.fixtures.used[key] or 0) + 1
      if n > #list then n = #list end
      self.fixtures.used[key] = n
      local r = list[n]
      return make_response(r.status, r.headers, r.body, secrets)
    end
  end

  if not self.live then
    harness_error("ferry.testing: no base_url, responses, respond or fixtures: nowhere to send " .. method .. " " ..
                  full_url)
  end
  local status, resp_headers, resp_body = live_request(full_url, method, headers, body, timeout_s)
  if not status then return nil, resp_headers end
  local resp = make_response(status, resp_headers, resp_body, secrets)
  if self.fixtures and self.recording then
    local saved_headers = {}
    for k, v in pairs(resp.headers) do if not SKIP_HEADERS[k] then saved_headers[k] = v end end
    local entry = {request = {method = method, path = self:relative_path(parts.path), key = key},
                   response = {status = status, headers = saved_headers, body = resp.body}}
    local doc = self.fixtures.doc
    doc.interactions[#doc.interactions + 1] = entry
    save_fixtures(self.fixtures.path, doc)
  end
  return resp
end

local function log_fn(h, level)
  return function(msg, fields)
    h.logs[#h.logs + 1] = {level = level, msg = tostring(msg), fields = fields}
  end
end

-- The ctx a run function gets (the same shape as ferry's).
function Harness:ctx(tool)
  local h = self
  local log = setmetatable({
    info = log_fn(h, "info"), warn = log_fn(h, "warn"), error = log_fn(h, "error"), debug = log_fn(h, "debug"),
  }, {__call = function(_, msg, fields) log_fn(h, "info")(msg, fields) end})
  h.request_count = (h.request_count or 0) + 1
  return {
    http = {request = function(req) return h:request(req) end},
    log = log,
    store = {
      get = function(key) return h.store[key] end,
      set = function(key, value)
        if value ~= nil then
          local text, err = json.encode(value)
          if not text then error("ctx.store.set: " .. err, 2) end
          if #text > 65536 then error("ctx.store.set: the value is larger than 64 KiB", 2) end
        end
        h.store[key] = value
      end,
    },
    request_id = "test-" .. h.request_count,
    tool = tool,
    provider = h.provider.slug,
    caller = h.caller,
    connection = h.connection,
  }
end

-- Turns what a run function gave (or raised) into ferry's {code, message, details}.
local function normalize(err, raised)
  if getmetatable(err) == HARNESS then error(err.message, 0) end
  if type(err) == "string" or type(err) == "number" then
    if raised then
      local e = {code = "script_error", message = tostring(err), details = {}}
      local file, line = tostring(err):match("^([^:]+):(%d+):")
      if file then e.details.file, e.details.line = file, tonumber(line) end
      return e
    end
    return {code = "upstream_error", message = tostring(err), details = {}}
  end
  if type(err) ~= "table" then
    return {code = "script_error", message = "the tool returned an error of type " .. type(err), details = {}}
  end
  local code = type(err.code) == "string" and err.code or nil
  local message = type(err.message) == "string" and err.message or nil
  local details = {}
  for k, v in pairs(err) do
    if type(k) == "string" and k ~= "code" and k ~= "message" and not raised then details[k] = v end
  end
  if code and not STABLE[code] then details.code = code end
  local final = code and STABLE[code] and code or (raised and "script_error" or "upstream_error")
  return {code = final, message = message or code or (raised and "script raised an error" or "the tool failed"),
          details = details}
end

local function keep(e) return e end

-- Runs `fn(ctx, arg)`; result, or nil and a ferry error.
local function run(fn, ctx, arg)
  local ok, result, err = xpcall(function() return fn(ctx, arg) end, keep)
  if not ok then return nil, normalize(result, true) end
  if result == nil and err ~= nil then return nil, normalize(err, false) end
  local out, jerr = through_json(result, "the result")
  if jerr then return nil, {code = "script_error", message = jerr, details = {}} end
  return out
end

-- Calls a tool as ferry would: arguments validated against its input
-- schema, then run(ctx, args). Returns the result, or nil and
-- {code, message, details}.
function Harness:call(name, args)
  local tool = self.provider.tools[name]
  if type(tool) ~= "table" then
    return nil, {code = "unknown_tool", message = ("there is no tool named '%s'"):format(tostring(name)),
                 details = {name = name}}
  end
  local copy_args, jerr = through_json(args or {}, "the arguments")
  if jerr then error("ferry.testing: " .. jerr, 2) end
  copy_args = copy_args or {}
  if type(copy_args) ~= "table" or (json.is_array(copy_args) and #copy_args > 0) then
    return nil, {code = "invalid_arguments", message = "arguments must be a JSON object", details = {path = "$"}}
  end
  local schema = tool.input or {type = "object", properties = {}, additionalProperties = false}
  local ok, failure = validate.check(schema, copy_args)
  if not ok then
    return nil, {code = "invalid_arguments", message = failure.path .. ": " .. failure.message,
                 details = {path = failure.path, reason = failure.message}}
  end
  return run(tool.run, self:ctx(name), copy_args)
end

-- The provider's check(ctx), as a new connection runs it.
function Harness:check()
  if type(self.provider.check) ~= "function" then return nil, {code = "internal", message = "no check function"} end
  return run(self.provider.check, self:ctx("check"))
end

-- One run of a sync: run(ctx, cursor).
function Harness:sync(name, cursor)
  local s = self.provider.syncs and self.provider.syncs[name]
  if type(s) ~= "table" then error("ferry.testing: no sync named " .. tostring(name), 2) end
  return run(s.run, self:ctx(name), cursor)
end

function Harness:last_request() return self.requests[#self.requests] end

-- Forgets the requests seen (and rewinds fake responses).
function Harness:reset()
  self.requests = {}
  self.answered = 0
  self.logs = {}
  if self.fixtures then self.fixtures.used = {} end
end

-- Replaces the fake responses (and rewinds them).
function Harness:reply(responses)
  self.responses = responses
  self.respond = nil
  self.answered = 0
end

-- A harness for `provider` (a table from testing.load, or a file path).
-- opts: base_url, credentials, settings, connection, caller, responses,
-- respond, fixtures (a JSON file), record (default: FERRY_RECORD=1).
function M.new(provider, opts)
  if type(provider) == "string" then provider = M.load(provider) end
  opts = opts or {}
  local h = setmetatable({provider = provider, requests = {}, logs = {}, store = {}, answered = 0}, Harness)
  h.base_url = opts.base_url or provider.base_url
  h.hosts = {}
  for _, x in ipairs(provider.hosts or {}) do h.hosts[#h.hosts + 1] = x end
  if opts.base_url then
    local parts = split_url(opts.base_url)
    if not parts then error("ferry.testing.new: base_url must be an http(s) URL", 2) end
    h.hosts[#h.hosts + 1] = parts.host
  end
  h.credentials = opts.credentials
  h.caller = opts.caller or {user = "tester", team = "testers", role = "member"}
  h.connection = opts.connection or {id = "conn_test", integration = provider.slug, scope = "user",
                                     label = "test", settings = opts.settings or {}}
  h.responses = opts.responses
  h.respond = opts.respond
  h.live = opts.base_url ~= nil
  if opts.fixtures then
    local record = opts.record
    if record == nil then record = os.getenv("FERRY_RECORD") == "1" end
    local doc = record and {interactions = json.array(),
                            note = "recorded by ferry.testing; FERRY_RECORD=1 records it again"}
                or load_fixtures(opts.fixtures)
    local by_key = {}
    for _, it in ipairs(doc.interactions) do
      local k = it.request and it.request.key
      if k then
        by_key[k] = by_key[k] or {}
        table.insert(by_key[k], it.response)
      end
    end
    h.fixtures = {path = opts.fixtures, doc = doc, by_key = by_key, used = {}}
    h.recording = record
    if record and not h.live then error("ferry.testing.new: recording needs a base_url to record from", 2) end
  end
  return h
end

-- ---- Prism ----------------------------------------------------------------------------------

local function sleep(s)
  local ok, socket = pcall(require, "socket")
  if ok then socket.sleep(s) else os.execute("sleep " .. s) end
end

local function free_port()
  local socket = require "socket"
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  server:close()
  return tonumber(port)
end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Starts Prism (an OpenAPI mock server) on a free loopback port:
-- {url, stop(), log()}. opts.bin (default $PRISM, else "prism" on PATH),
-- opts.dynamic (generate bodies from schemas: -d), opts.timeout (s, 120).
function M.prism(spec, opts)
  opts = opts or {}
  local bin = opts.bin or os.getenv("PRISM") or "prism"
  local port = free_port()
  local log = os.tmpname()
  local args = {shell_quote(bin), "mock", "-h", "127.0.0.1", "-p", tostring(port)}
  if opts.dynamic then
    for _, a in ipairs({"-d", "--seed", "ferry"}) do args[#args + 1] = a end
  end
  args[#args + 1] = shell_quote(spec)
  local cmd = table.concat(args, " ") .. " >" .. shell_quote(log) .. " 2>&1 </dev/null & echo $!"
  local f = assert(io.popen(cmd))
  local pid = f:read("*l")
  f:close()
  local prism = {url = "http://127.0.0.1:" .. port, port = port, pid = tonumber(pid)}
  function prism.log() return read_file(log) or "" end
  function prism.stop()
    if prism.pid then os.execute("kill " .. prism.pid .. " 2>/dev/null") end
    prism.pid = nil
    os.remove(log)
  end
  local deadline = os.time() + (opts.timeout or 120)
  while true do
    local text = prism.log()
    if text:find("Prism is listening", 1, true) then break end
    if os.time() > deadline or text:find("command not found", 1, true) or text:find("No such file", 1, true) then
      local out = text
      prism.stop()
      error("ferry.testing.prism: Prism did not start (" .. bin .. "):\n" .. out, 2)
    end
    sleep(0.1)
  end
  return prism
end

return M
