-- ferry.http: one upstream request, decoded and checked.
--
--   local http = require "ferry.http"
--   local body, resp = http.request(ctx, {
--     method = "GET",
--     path = http.path("/projects/{project_gid}/tasks", args),   -- segments percent-encoded
--     query = {limit = 20},
--   }, API)                          -- API: the ferry.errors options of the provider
--   if not body then return nil, resp end     -- resp is then the ferry error
--
-- request returns the decoded JSON body (JSON null reads as nil; an empty
-- 2xx body gives an empty table) and the response, or nil and a ferry error:
-- the transport's own (upstream_timeout, egress_denied, ...), the mapping of
-- ferry.errors.from_response, or upstream_error for a 2xx that is not JSON.
-- Common subset of Lua 5.1 and 5.4.
local errors = require "ferry.errors"
local data = require "ferry.data"

local M = {}

-- Percent-encodes everything but RFC 3986's unreserved characters, so a
-- value cannot add path segments, a query or a fragment.
function M.escape(value)
  return (tostring(value):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- Fills {name} placeholders of a path template from `values`, escaped.
function M.path(template, values)
  local missing
  local out = template:gsub("{([%w_]+)}", function(name)
    local v = values[name]
    if v == nil or type(v) == "userdata" then
      missing = missing or name
      return ""
    end
    return M.escape(v)
  end)
  if missing then error("ferry.http.path: no value for {" .. missing .. "} in " .. template, 2) end
  return out
end

local function decode(resp)
  if type(resp.body) ~= "string" or not resp.body:match("%S") then return nil, nil end
  local v, err = resp.json(resp)
  if v == nil then return nil, err or "invalid JSON" end
  return data.value(v), nil
end

function M.request(ctx, req, opts)
  opts = opts or {}
  local resp, err = ctx.http.request(req)
  if not resp then return nil, err end
  local body, jerr = decode(resp)
  local failure = errors.from_response(resp, opts, body)
  if failure then return nil, failure end
  if body == nil then
    if jerr == nil then return {}, resp end
    local why = type(jerr) == "table" and jerr.message or tostring(jerr)
    return nil, errors.new("upstream_error",
      ("%s answered HTTP %d with a body that is not JSON (%s)"):format(opts.service or "the upstream",
        resp.status, why), {status = resp.status})
  end
  return body, resp
end

return M
