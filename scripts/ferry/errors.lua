-- ferry.errors: turning an upstream's answer into a ferry error.
--
--   local errors = require "ferry.errors"
--   local API = {
--     service = "HubSpot",                         -- named in messages
--     message = {"message", "errors.1.message"},   -- where the provider puts its message
--     code = {"category"},                         -- its own error code (details.upstream_code)
--   }
--   local failure = errors.from_response(resp, API)   -- nil when resp is a success
--   if failure then return nil, failure end
--
-- Mapping (API.md's stable codes):
--   401, 403                     reconnect_required   the credential is bad, revoked or lacks a scope
--   429; 503 with Retry-After    upstream_rate_limited, retry_after = seconds (number or HTTP-date)
--   any other status >= 300      upstream_error, with the provider's message and status
--   2xx whose body says failure  upstream_error (opts.body_error; Mandrill, Slack's ok:false)
-- opts.classify(resp, body) may return a code to override the mapping (a 500
-- that means "bad key" is reconnect_required).
-- Common subset of Lua 5.1 and 5.4.
local data = require "ferry.data"

local M = {}

local DEFAULT_MESSAGE_PATHS = {
  "message", "error.message", "error_description", "error", "errors.1.message", "detail", "title",
}
local MAX_MESSAGE = 500

-- A ferry error table: {code = ..., message = ..., <details>...}.
function M.new(code, message, details)
  local err = {}
  for k, v in pairs(details or {}) do err[k] = v end
  err.code = code
  err.message = message
  return err
end

-- For a run function that finds its arguments unusable after the schema
-- passed them (two fields that only make sense together, a missing default).
function M.invalid_arguments(message, path)
  return M.new("invalid_arguments", message, {path = path})
end

-- ---- Retry-After ----------------------------------------------------------

local MONTHS = {jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6,
                jul = 7, aug = 8, sep = 9, oct = 10, nov = 11, dec = 12}

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function epoch(y, mon, d, hh, mm, ss)
  local m = MONTHS[string.lower(mon)]
  y, d, hh, mm, ss = tonumber(y), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss)
  if not m or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
end

-- Seconds since the epoch of an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate and
-- the two obsolete forms every recipient must accept), or nil.
function M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  -- Sun, 06 Nov 1994 08:49:37 GMT
  local d, mon, y, hh, mm, ss = s:match("^%s*%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if d then return epoch(y, mon, d, hh, mm, ss) end
  -- Sunday, 06-Nov-94 08:49:37 GMT (two-digit years: 70-99 → 19xx, else 20xx)
  d, mon, y, hh, mm, ss = s:match("^%s*%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if d then
    y = tonumber(y)
    return epoch(y >= 70 and 1900 + y or 2000 + y, mon, d, hh, mm, ss)
  end
  -- Sun Nov  6 08:49:37 1994
  mon, d, hh, mm, ss, y = s:match("^%s*%a+ (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)%s*$")
  if mon then return epoch(y, mon, d, hh, mm, ss) end
  return nil
end

-- Whole seconds to wait from a Retry-After value: delay-seconds or an
-- HTTP-date (relative to `now`, default os.time()). nil when unusable.
function M.retry_after(value, now)
  if type(value) == "number" then
    if value ~= value or value < 0 or value == math.huge then return nil end
    return math.ceil(value)
  end
  if type(value) ~= "string" then return nil end
  local digits = value:match("^%s*(%d+)%s*$") or value:match("^%s*(%d+%.%d+)%s*$")
  if digits then return math.ceil(tonumber(digits)) end
  local at = M.parse_http_date(value)
  if not at then return nil end
  local wait = at - (now or os.time())
  if wait < 0 then return 0 end
  return wait
end

-- ---- messages ---------------------------------------------------------------

local function shorten(s)
  s = s:gsub("^%s+", ""):gsub("%s+$", ""):gsub("%s+", " ")
  if #s <= MAX_MESSAGE then return s end
  local cut = MAX_MESSAGE
  -- do not split a UTF-8 sequence: back off over continuation bytes
  while cut > 1 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do cut = cut - 1 end
  return s:sub(1, cut) .. "…"
end

-- The provider's own message: opts.message is a function(body, resp) or a
-- list of paths; a short plain-text body is used when there is no JSON.
local function provider_message(opts, resp, body)
  local msg
  if type(opts.message) == "function" then
    msg = opts.message(body, resp)
  elseif type(body) == "table" then
    msg = data.first(body, opts.message or DEFAULT_MESSAGE_PATHS)
  elseif type(body) == "string" then
    msg = body
  end
  if msg == nil and body == nil and type(resp.body) == "string" and not resp.body:find("<", 1, true) then
    msg = resp.body
  end
  if type(msg) ~= "string" or not msg:match("%S") then return nil end
  return shorten(msg)
end

local function provider_code(opts, body)
  if type(opts.code) == "function" then return opts.code(body) end
  if opts.code and type(body) == "table" then return data.first(body, opts.code) end
  return nil
end

-- A response header by its lowercase name (ferry gives lowercase names;
-- other spellings are found too, for responses built by hand).
local function header(resp, name)
  local h = resp.headers
  if type(h) ~= "table" then return nil end
  if h[name] ~= nil then return h[name] end
  for k, v in pairs(h) do
    if type(k) == "string" and k:lower() == name then return v end
  end
  return nil
end

local function decode(resp)
  if type(resp.body) == "string" and not resp.body:match("%S") then return nil end
  if type(resp.json) ~= "function" then return nil end
  return data.value((resp.json(resp)))
end

-- ---- body-level failures ------------------------------------------------------

-- A body_error test for APIs that answer 2xx with a failure inside:
-- errors.when("status", "error") (Mandrill), errors.when("ok", false) (Slack).
function M.when(path, value)
  return function(body)
    if type(body) ~= "table" then return false end
    local v = body
    for step in string.gmatch(path, "[^%.]+") do
      if type(v) ~= "table" then return false end
      v = v[step]
    end
    return v == value
  end
end

-- ---- the mapping ------------------------------------------------------------

local function mapped_code(status, retry)
  if status == 401 or status == 403 then return "reconnect_required" end
  if status == 429 or (status == 503 and retry ~= nil) then return "upstream_rate_limited" end
  return "upstream_error"
end

local function describe(code, service, status, msg, retry)
  local text
  if code == "reconnect_required" then
    text = ("%s rejected the credential (HTTP %d)"):format(service, status)
  elseif code == "upstream_rate_limited" then
    text = ("%s is rate limiting requests (HTTP %d)"):format(service, status)
    if retry then text = text .. ("; retry after %d s"):format(retry) end
  else
    text = ("%s answered HTTP %d"):format(service, status)
  end
  if msg then text = text .. ": " .. msg end
  return text
end

-- nil when `resp` is a success, else a ferry error table. `body` is the
-- decoded body when the caller already has it (decoded again otherwise).
function M.from_response(resp, opts, body)
  opts = opts or {}
  local service = opts.service or "the upstream"
  local status = tonumber(resp.status) or 0
  local ok = resp.ok
  if ok == nil then ok = status >= 200 and status < 300 end
  if ok and not opts.body_error then return nil end
  if body == nil then body = decode(resp) end

  if ok then
    local failed = opts.body_error(body, resp)
    if not failed then return nil end
    local msg = type(failed) == "string" and shorten(failed) or provider_message(opts, resp, body)
    local code = opts.classify and opts.classify(resp, body) or "upstream_error"
    return M.new(code, ("%s reported an error%s"):format(service, msg and (": " .. msg) or ""),
                 {status = status, upstream_code = provider_code(opts, body)})
  end

  local retry = M.retry_after(header(resp, "retry-after"), opts.now)
  local code = opts.classify and opts.classify(resp, body) or mapped_code(status, retry)
  local msg = provider_message(opts, resp, body)
  local err = M.new(code, describe(code, service, status, msg, retry),
                    {status = status, upstream_code = provider_code(opts, body)})
  if code == "upstream_rate_limited" then err.retry_after = retry end
  return err
end

return M
