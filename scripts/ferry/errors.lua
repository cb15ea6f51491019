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
-- that means "bad key" is reconnect_required), and a table of extra fields.
-- Presets for common styles: errors.slack(), errors.quickbooks(),
-- errors.google(), errors.graphql() (each takes overrides:
-- errors.graphql{service = "Monday"}).
-- Common subset of Lua 5.1 and 5.4.
local data = require "ferry.data"
local time = require "ferry.time"

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

local function epoch(y, mon, d, hh, mm, ss)
  local m = MONTHS[string.lower(mon)]
  y, d, hh, mm, ss = tonumber(y), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss)
  if not m or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return time.days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
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
-- At most a day: a larger delay is an upstream's mistake, and would stop a
-- connection's budget or a sync for good.
local MAX_RETRY_AFTER = 86400

function M.retry_after(value, now)
  if type(value) == "number" then
    if value ~= value or value < 0 or value == math.huge then return nil end
    return math.min(math.ceil(value), MAX_RETRY_AFTER)
  end
  if type(value) ~= "string" then return nil end
  local digits = value:match("^%s*(%d+)%s*$") or value:match("^%s*(%d+%.%d+)%s*$")
  if digits then return math.min(math.ceil(tonumber(digits)), MAX_RETRY_AFTER) end
  local at = M.parse_http_date(value)
  if not at then return nil end
  local wait = at - (now or os.time())
  if wait < 0 then return 0 end
  return math.min(wait, MAX_RETRY_AFTER)
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

-- The delay an upstream asks for: opts.retry_after(resp, body) when given
-- (a body field, GraphQL extensions), else the Retry-After header.
local function wanted_delay(opts, resp, body)
  if type(opts.retry_after) == "function" then
    local v = M.retry_after(opts.retry_after(resp, body), opts.now)
    if v ~= nil then return v end
  end
  return M.retry_after(header(resp, "retry-after"), opts.now)
end

-- opts.classify(resp, body) → code[, extra]: `extra` (a table) adds fields
-- to the error, e.g. {retry_after = 30}.
local function classified(opts, resp, body)
  if not opts.classify then return nil, nil end
  local code, extra = opts.classify(resp, body)
  if type(extra) ~= "table" then extra = nil end
  return code, extra
end

local function finish(err, code, retry, extra)
  if extra then
    for k, v in pairs(extra) do
      if k ~= "code" and k ~= "message" then err[k] = v end
    end
  end
  if code == "upstream_rate_limited" and err.retry_after == nil then err.retry_after = retry end
  return err
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
    local code, extra = classified(opts, resp, body)
    code = code or "upstream_error"
    local retry = code == "upstream_rate_limited" and wanted_delay(opts, resp, body) or nil
    if extra and extra.retry_after ~= nil then retry = M.retry_after(extra.retry_after, opts.now) end
    local text
    if code == "reconnect_required" then
      text = ("%s rejected the credential"):format(service)
    elseif code == "upstream_rate_limited" then
      text = ("%s is rate limiting requests"):format(service)
      if retry then text = text .. ("; retry after %d s"):format(retry) end
    else
      text = ("%s reported an error"):format(service)
    end
    if msg then text = text .. ": " .. msg end
    local err = M.new(code, text, {status = status, upstream_code = provider_code(opts, body)})
    if extra then extra.retry_after = nil end
    return finish(err, code, retry, extra)
  end

  local retry = wanted_delay(opts, resp, body)
  local code, extra = classified(opts, resp, body)
  code = code or mapped_code(status, retry)
  if extra and extra.retry_after ~= nil then
    retry = M.retry_after(extra.retry_after, opts.now)
    extra.retry_after = nil
  end
  local msg = provider_message(opts, resp, body)
  local err = M.new(code, describe(code, service, status, msg, retry),
                    {status = status, upstream_code = provider_code(opts, body)})
  return finish(err, code, retry, extra)
end

-- ---- how common APIs report errors --------------------------------------------
-- Each returns a complete options table for from_response / sdk.request;
-- `overrides` (optional) replaces any of its fields (service, message...).

local function with(base, overrides)
  for k, v in pairs(overrides or {}) do base[k] = v end
  return base
end

local function set(list)
  local out = {}
  for _, v in ipairs(list) do out[v] = true end
  return out
end

-- Slack's Web API: HTTP 200 with {"ok": false, "error": "channel_not_found"};
-- auth failures are error codes, rate limits HTTP 429 with Retry-After.
M.SLACK_AUTH_ERRORS = set{
  "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "no_permission",
  "missing_scope", "not_allowed_token_type", "ekm_access_denied", "org_login_required", "team_access_not_granted",
}

function M.slack(overrides)
  return with({
    service = "Slack",
    message = function(body)
      local code = data.get(body, "error")
      local detail = data.get(body, "detail") or data.get(body, "response_metadata.messages.1")
      if code and detail then return code .. " (" .. detail .. ")" end
      return code or data.get(body, "message")
    end,
    code = {"error"},
    body_error = M.when("ok", false),
    classify = function(resp, body)
      local code = data.get(body, "error")
      if M.SLACK_AUTH_ERRORS[code] then return "reconnect_required" end
      if code == "ratelimited" or code == "rate_limited" or tonumber(resp.status) == 429 then
        return "upstream_rate_limited"
      end
    end,
  }, overrides)
end

-- QuickBooks Online (and Intuit's other v3 APIs): a Fault, with an error
-- status or, in batch and some query answers, inside a 200:
--   {"Fault": {"Error": [{"Message": "...", "Detail": "...", "code": "610"}],
--              "type": "ValidationFault"}, "time": "..."}
-- AUTHENTICATION (code 3200) and AuthorizationFault (3100) mean the
-- connection must be made again; ThrottleExceeded (003001) is a rate limit.
local function fault(body)
  local f = data.get(body, "Fault") or data.get(body, "fault")
  if type(f) ~= "table" then return nil end
  return f
end

local function fault_error(f)
  return data.get(f, "Error.1") or data.get(f, "error.1")
end

function M.quickbooks(overrides)
  return with({
    service = "QuickBooks",
    message = function(body, resp)
      local f = fault(body)
      if not f then
        return data.first(body, DEFAULT_MESSAGE_PATHS) or (type(resp.body) == "string" and
          not resp.body:find("<", 1, true) and resp.body or nil)
      end
      local e = fault_error(f) or {}
      local msg = data.first(e, {"Message", "message"})
      local detail = data.first(e, {"Detail", "detail"})
      if msg and detail and detail ~= msg then return msg .. ": " .. detail end
      return msg or detail
    end,
    code = function(body)
      local e = fault_error(fault(body) or {})
      return e and data.first(e, {"code", "Code"}) or nil
    end,
    body_error = function(body) return fault(body) ~= nil end,
    classify = function(resp, body)
      local f = fault(body)
      local kind = f and data.get(f, "type") or nil
      local e = f and fault_error(f) or nil
      local code = e and data.first(e, {"code", "Code"}) or nil
      code = code and code:gsub("^0+", "") or nil
      if kind == "AUTHENTICATION" or kind == "AuthenticationFault" or kind == "AuthorizationFault" or
         code == "3200" or code == "3100" or code == "100" then
        return "reconnect_required"
      end
      if code == "3001" or tonumber(resp.status) == 429 then return "upstream_rate_limited" end
    end,
  }, overrides)
end

-- Google's APIs (Gmail, Calendar, Drive, Sheets...):
--   {"error": {"code": 403, "message": "...", "status": "PERMISSION_DENIED",
--              "errors": [{"reason": "insufficientPermissions", "message": "..."}]}}
-- 403 is also how Google says "slow down" (reasons rateLimitExceeded,
-- userRateLimitExceeded, quotaExceeded, dailyLimitExceeded; status
-- RESOURCE_EXHAUSTED) and "the API is not enabled for this OAuth client"
-- (accessNotConfigured, FAILED_PRECONDITION): neither may pass for a refused
-- credential, so only the other 403s ask for a reconnect.
M.GOOGLE_RATE_REASONS = set{"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}

function M.google(overrides)
  return with({
    service = "Google",
    message = {"error.message", "error.errors.1.message", "error_description", "detail", "title"},
    code = {"error.errors.1.reason", "error.status"},
    classify = function(resp, body)
      if tonumber(resp.status) ~= 403 then return nil end
      local reason, status = data.get(body, "error.errors.1.reason"), data.get(body, "error.status")
      if M.GOOGLE_RATE_REASONS[reason] or status == "RESOURCE_EXHAUSTED" then return "upstream_rate_limited" end
      if reason == "accessNotConfigured" or status == "FAILED_PRECONDITION" then return "upstream_error" end
      return nil
    end,
  }, overrides)
end

-- GraphQL (Monday, Fireflies, GitHub, Shopify...): usually HTTP 200 with
--   {"data": ..., "errors": [{"message": "...", "extensions": {"code": "..."}}]}
-- Any error fails the call unless opts.partial is true, in which case only an
-- answer without data does. Codes in extensions (or the error itself) pick
-- reconnect_required and upstream_rate_limited; extra ones can be added with
-- auth_codes / rate_codes; the delay comes from extensions.retry_in_seconds,
-- retry_after or retryAfter, else the Retry-After header.
M.GRAPHQL_AUTH_CODES = set{
  "UNAUTHENTICATED", "UNAUTHORIZED", "FORBIDDEN", "AUTHENTICATION_ERROR", "AUTHORIZATION_ERROR",
  "INVALID_TOKEN", "ACCESS_DENIED", "USER_UNAUTHORIZED", "auth_failed", "invalid_token", "not_authorized",
  "forbidden", "unauthorized", "Unauthorized",
}
M.GRAPHQL_RATE_CODES = set{
  "RATE_LIMITED", "RATE_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS", "THROTTLED", "ComplexityException",
  "COMPLEXITY_BUDGET_EXHAUSTED", "DAILY_LIMIT_EXCEEDED", "maxConcurrencyExceeded", "too_many_requests",
  "rate_limited", "Throttled",
}

local function gql_errors(body)
  local list = data.get(body, "errors")
  if type(list) == "table" and #list > 0 then return list end
  return nil
end

local function gql_code(e)
  return data.first(e, {"extensions.code", "extensions.error_code", "code", "error_code", "type"})
end

function M.graphql(overrides)
  overrides = overrides or {}
  local auth_codes, rate_codes = {}, {}
  for k in pairs(M.GRAPHQL_AUTH_CODES) do auth_codes[k] = true end
  for k in pairs(M.GRAPHQL_RATE_CODES) do rate_codes[k] = true end
  for _, c in ipairs(overrides.auth_codes or {}) do auth_codes[c] = true end
  for _, c in ipairs(overrides.rate_codes or {}) do rate_codes[c] = true end
  local partial = overrides.partial

  local function first_error(body)
    local list = gql_errors(body)
    return list and list[1] or nil
  end

  local opts = with({
    service = "the GraphQL API",
    message = function(body, resp)
      local list = gql_errors(body)
      if not list then
        return data.first(body, {"error_message", "message", "error.message", "error"}) or
          (type(resp.body) == "string" and not resp.body:find("<", 1, true) and resp.body or nil)
      end
      local parts = {}
      for i = 1, math.min(#list, 3) do
        local m = data.first(list[i], {"message"})
        if m then parts[#parts + 1] = m end
      end
      if #list > 3 then parts[#parts + 1] = ("(%d more)"):format(#list - 3) end
      if #parts == 0 then return nil end
      return table.concat(parts, "; ")
    end,
    code = function(body)
      local e = first_error(body)
      if e then return gql_code(e) end
      return data.first(body, {"error_code", "code"})
    end,
    body_error = function(body)
      if not gql_errors(body) then return false end
      if partial then return data.get(body, "data") == nil end
      return true
    end,
    retry_after = function(_, body)
      local e = first_error(body)
      return e and (data.get(e, "extensions.retry_in_seconds") or data.get(e, "extensions.retry_after") or
                    data.get(e, "extensions.retryAfter")) or nil
    end,
    classify = function(resp, body)
      local status = tonumber(resp.status)
      local list = gql_errors(body) or {}
      for _, e in ipairs(list) do
        local c = gql_code(e)
        local st = tonumber(data.get(e, "extensions.status") or data.get(e, "extensions.status_code") or
                            data.get(e, "status"))
        if auth_codes[c] or st == 401 or st == 403 then return "reconnect_required" end
        if rate_codes[c] or st == 429 then return "upstream_rate_limited" end
      end
      local c = data.first(body, {"error_code", "code"})
      if auth_codes[c] then return "reconnect_required" end
      if rate_codes[c] or status == 429 then return "upstream_rate_limited" end
    end,
  }, overrides)
  opts.auth_codes, opts.rate_codes, opts.partial = nil, nil, nil
  return opts
end

return M
