-- tap_proxy: a small recording HTTP proxy that sits between ferry and a mock
-- upstream (Prism) in the provider specs, so a test can see exactly what a
-- provider sent and steer what comes back.
--
--   lua5.1 tests/peers/tap_proxy.lua --upstream http://127.0.0.1:PORT [--listen 127.0.0.1:0]
--
-- Prints one line "listening HOST:PORT" on stdout, then serves one
-- connection at a time (each answered with Connection: close) until killed.
-- Every request is forwarded to the upstream unchanged (hop-by-hop headers
-- aside) and recorded. Control routes, under /__tap/:
--   PUT    /__tap/prefer     body = a Prefer header value added to forwarded
--                            requests (Prism picks the response with it:
--                            "code=401"); an empty body stops adding it
--   PUT    /__tap/add        body = {"headers": {...}, "query": {...}}: added to
--                            every forwarded request (not to the recorded copy),
--                            for parameters a description requires that the real
--                            API does not (Slack's `token`); {} stops adding
--   PUT    /__tap/replies    body = JSON list of canned replies
--                            [{status, headers = {...}, body = "text" | json = value}]
--                            answering the next requests, in order, instead of
--                            the upstream (they are still recorded); {"hang": true}
--                            never answers: the connection is held open (until the
--                            next control request) so the client's deadline passes
--   GET    /__tap/requests   JSON list of the requests seen:
--                            {method, path, query, headers (lowercase names), body}
--   DELETE /__tap/requests   forgets them
-- Lua 5.1 with luasocket and lua-cjson, like the integration suite.
local socket = require "socket"
local json = require "cjson"

local listen, upstream = "127.0.0.1:0", nil
local i = 1
while arg[i] do
  if arg[i] == "--listen" then listen = arg[i + 1]; i = i + 2
  elseif arg[i] == "--upstream" then upstream = arg[i + 1]; i = i + 2
  else io.stderr:write("tap_proxy: unknown argument " .. arg[i] .. "\n"); os.exit(2) end
end
local up_host, up_port = (upstream or ""):match("^http://([^:/]+):(%d+)/?$")
if not up_host then
  io.stderr:write("tap_proxy: --upstream http://HOST:PORT is required\n")
  os.exit(2)
end

local HOP_BY_HOP = {connection = true, ["keep-alive"] = true, ["proxy-connection"] = true, te = true,
                    trailer = true, ["transfer-encoding"] = true, upgrade = true, expect = true,
                    host = true, ["content-length"] = true}
local REASONS = {[200] = "OK", [201] = "Created", [204] = "No Content", [400] = "Bad Request",
                 [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found", [429] = "Too Many Requests",
                 [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable"}

local prefer = nil      -- Prefer header to add
local add = {}          -- {headers = {...}, query = {...}} to add to forwarded requests
local hung = {}         -- connections held open by a {"hang": true} reply
local replies = {}      -- canned replies still to give
local seen = {}         -- recorded requests

local function send_response(client, status, headers, body)
  local lines = {("HTTP/1.1 %d %s"):format(status, REASONS[status] or "Status")}
  for name, value in pairs(headers or {}) do lines[#lines + 1] = name .. ": " .. value end
  lines[#lines + 1] = "Content-Length: " .. #body
  lines[#lines + 1] = "Connection: close"
  client:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
end

-- Reads one request: {method, target, path, query, headers, raw_headers, body} or nil.
local function read_request(client)
  local line = client:receive("*l")
  if not line then return nil end
  local method, target = line:match("^(%u+) (%S+) HTTP/1%.%d$")
  if not method then return nil end
  local headers, raw = {}, {}
  while true do
    local h = client:receive("*l")
    if not h or h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if name then
      headers[name:lower()] = value
      raw[#raw + 1] = {name, value}
    end
  end
  if (headers.expect or ""):lower() == "100-continue" then client:send("HTTP/1.1 100 Continue\r\n\r\n") end
  local body = ""
  local length = tonumber(headers["content-length"] or "0") or 0
  if length > 0 then
    body = client:receive(length) or ""
  elseif (headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) then
    local parts = {}
    while true do
      local size = tonumber((client:receive("*l") or "0"):match("^(%x+)") or "0", 16)
      if size == 0 then client:receive("*l") break end
      parts[#parts + 1] = client:receive(size)
      client:receive("*l")
    end
    body = table.concat(parts)
  end
  local path, query = target:match("^([^?]*)%??(.*)$")
  return {method = method, target = target, path = path, query = query, headers = headers, raw_headers = raw,
          body = body}
end

local function url_escape(value)
  return (tostring(value):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function forward(client, req)
  local up = socket.tcp()
  up:settimeout(60)
  local ok, err = up:connect(up_host, tonumber(up_port))
  if not ok then
    send_response(client, 502, {["Content-Type"] = "text/plain"}, "tap_proxy: upstream unreachable: " .. err)
    return
  end
  local target = req.target
  local extra = {}
  for name, value in pairs(add.query or {}) do
    extra[#extra + 1] = url_escape(name) .. "=" .. url_escape(value)
  end
  if #extra > 0 then
    table.sort(extra)
    local sep = req.query ~= "" and "&" or (target:find("?", 1, true) and "" or "?")
    target = target .. sep .. table.concat(extra, "&")
  end
  local lines = {req.method .. " " .. target .. " HTTP/1.1", "Host: " .. up_host .. ":" .. up_port}
  local added = {}
  for name in pairs(add.headers or {}) do added[name:lower()] = true end
  for _, h in ipairs(req.raw_headers) do
    local lname = h[1]:lower()
    if not HOP_BY_HOP[lname] and not (prefer and lname == "prefer") and not added[lname] then
      lines[#lines + 1] = h[1] .. ": " .. h[2]
    end
  end
  for name, value in pairs(add.headers or {}) do lines[#lines + 1] = name .. ": " .. tostring(value) end
  if prefer then lines[#lines + 1] = "Prefer: " .. prefer end
  if #req.body > 0 or req.method == "POST" or req.method == "PUT" or req.method == "PATCH" then
    lines[#lines + 1] = "Content-Length: " .. #req.body
  end
  lines[#lines + 1] = "Connection: close"
  up:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. req.body)
  local answer, _, partial = up:receive("*a")
  up:close()
  client:send(answer or partial or "")
end

local function control(client, req)
  for _, held in ipairs(hung) do held:close() end
  hung = {}
  local what = req.path:sub(#"/__tap/" + 1)
  if what == "add" and req.method == "PUT" then
    local ok, spec = pcall(json.decode, req.body)
    if not ok or type(spec) ~= "table" then
      send_response(client, 400, {["Content-Type"] = "text/plain"}, "{\"headers\": {...}, \"query\": {...}}")
      return
    end
    add = spec
    send_response(client, 204, {}, "")
  elseif what == "prefer" and req.method == "PUT" then
    prefer = req.body ~= "" and req.body or nil
    send_response(client, 204, {}, "")
  elseif what == "replies" and req.method == "PUT" then
    local ok, list = pcall(json.decode, req.body)
    if not ok or type(list) ~= "table" then
      send_response(client, 400, {["Content-Type"] = "text/plain"}, "a JSON list of replies")
      return
    end
    replies = list
    send_response(client, 204, {}, "")
  elseif what == "requests" and req.method == "GET" then
    local out = {}
    for n, r in ipairs(seen) do
      out[n] = {method = r.method, path = r.path, query = r.query, headers = r.headers, body = r.body}
    end
    send_response(client, 200, {["Content-Type"] = "application/json"},
                  #out > 0 and json.encode(out) or "[]")
  elseif what == "requests" and req.method == "DELETE" then
    seen = {}
    send_response(client, 204, {}, "")
  else
    send_response(client, 404, {["Content-Type"] = "text/plain"}, "unknown tap route")
  end
end

-- Answers a canned reply; false when the reply is to hang (keep the connection).
local function canned(client, reply)
  if reply.hang then
    hung[#hung + 1] = client
    return false
  end
  local headers = {}
  for k, v in pairs(reply.headers or {}) do headers[k] = tostring(v) end
  local body = reply.body or ""
  if reply.json ~= nil then
    body = json.encode(reply.json)
    headers["Content-Type"] = headers["Content-Type"] or "application/json"
  end
  send_response(client, tonumber(reply.status) or 200, headers, body)
  return true
end

local host, port = listen:match("^(.-):(%d+)$")
local server = assert(socket.bind(host, tonumber(port)))
local _, bound = server:getsockname()
io.stdout:write(("listening %s:%d\n"):format(host, bound))
io.stdout:flush()

while true do
  local client = server:accept()
  if client then
    client:settimeout(30)
    local keep = false
    local ok, err = pcall(function()
      local req = read_request(client)
      if not req then return end
      if req.path:sub(1, 7) == "/__tap/" then
        control(client, req)
        return
      end
      seen[#seen + 1] = req
      if #seen > 1000 then table.remove(seen, 1) end
      local reply = table.remove(replies, 1)
      if reply then keep = not canned(client, reply) else forward(client, req) end
    end)
    if not ok then io.stderr:write("tap_proxy: " .. tostring(err) .. "\n") end
    if not keep then client:close() end
  end
end
