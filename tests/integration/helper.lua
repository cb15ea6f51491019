-- helper: what every integration spec needs to run the real ferry binary
-- and the fault-injection upstream as separate processes and talk HTTP to
-- them. Runs under busted on Lua 5.1 (luasocket, luaposix, lua-cjson).
local http = require "socket.http"
local ltn12 = require "ltn12"
local socket = require "socket"
local json = require "cjson"
local unistd = require "posix.unistd"
local fcntl = require "posix.fcntl"
local wait = require "posix.sys.wait"
local signal = require "posix.signal"
local stdlib = require "posix.stdlib"

http.TIMEOUT = 30

local M = {json = json}

M.root = os.getenv("FERRY_SOURCE") or "."
M.bin = os.getenv("FERRY_BIN") or (M.root .. "/build/ferry")
M.fault_bin = os.getenv("FAULT_SERVER") or (M.root .. "/build/fault_server")
M.loadgen_bin = os.getenv("LOADGEN") or (M.root .. "/build/loadgen")

function M.sleep(seconds) socket.sleep(seconds) end
function M.now() return socket.gettime() end

function M.tmpdir()
  return assert(stdlib.mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/ferry-test-XXXXXX"))
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Starts argv[1] with the rest as arguments; stdout and stderr go to files.
-- Returns {pid, stdout, stderr}.
function M.spawn(argv, env)
  local dir = M.tmpdir()
  local out, err = dir .. "/stdout", dir .. "/stderr"
  local pid = assert(unistd.fork())
  if pid == 0 then
    local o = fcntl.open(out, fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC, 420)
    local e = fcntl.open(err, fcntl.O_WRONLY + fcntl.O_CREAT + fcntl.O_TRUNC, 420)
    unistd.dup2(o, 1)
    unistd.dup2(e, 2)
    for k, v in pairs(env or {}) do stdlib.setenv(k, v) end
    local args = {}
    for i = 2, #argv do args[i - 1] = argv[i] end
    args[0] = argv[1]
    unistd.execp(argv[1], args)
    unistd._exit(127)
  end
  return {pid = pid, stdout = out, stderr = err, dir = dir}
end

-- Waits for a process to exit; returns how ("exited"/"killed") and code.
function M.wait_exit(pid, timeout)
  local deadline = M.now() + (timeout or 20)
  repeat
    local p, how, code = wait.wait(pid, wait.WNOHANG)
    if p == pid then return how, code end
    M.sleep(0.02)
  until M.now() > deadline
  return nil, "still running"
end

function M.kill(pid, sig)
  signal.kill(pid, sig or signal.SIGTERM)
end
M.SIGTERM, M.SIGINT, M.SIGKILL = signal.SIGTERM, signal.SIGINT, signal.SIGKILL

-- Polls `path` until a line matches `pattern`; returns the capture(s).
function M.wait_for(path, pattern, timeout)
  local deadline = M.now() + (timeout or 15)
  repeat
    local text = M.read_file(path) or ""
    for line in text:gmatch("[^\n]+") do
      local a, b = line:match(pattern)
      if a then return a, b end
    end
    M.sleep(0.02)
  until M.now() > deadline
  error("timed out waiting for " .. pattern .. " in " .. path .. ":\n" .. (M.read_file(path) or ""))
end

-- Runs a command to completion: returns exit code, stdout, stderr.
function M.run(argv, env)
  local p = M.spawn(argv, env)
  local how, code = M.wait_exit(p.pid, 60)
  assert(how, "command did not finish: " .. table.concat(argv, " "))
  return how == "exited" and code or 128 + code, M.read_file(p.stdout), M.read_file(p.stderr)
end

-- The ferry CLI with a data folder.
function M.ferry(args)
  local argv = {M.bin}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return M.run(argv)
end

-- Every JSON log line in a file, decoded.
function M.log_lines(path)
  local lines = {}
  for line in (M.read_file(path) or ""):gmatch("[^\n]+") do
    local ok, v = pcall(json.decode, line)
    if ok and type(v) == "table" then lines[#lines + 1] = v end
  end
  return lines
end

-- HTTP: returns status, body text, headers (lowercased names).
function M.request(method, url, opts)
  opts = opts or {}
  local headers = {}
  for k, v in pairs(opts.headers or {}) do headers[k:lower()] = v end
  local body = opts.body
  if opts.json ~= nil then
    body = json.encode(opts.json)
    headers["content-type"] = headers["content-type"] or "application/json"
  end
  if body then headers["content-length"] = tostring(#body) end
  local chunks = {}
  local ok, status, rh = http.request{
    url = url, method = method, headers = headers, redirect = opts.redirect,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(chunks),
  }
  if not ok then return nil, status end
  return status, table.concat(chunks), rh
end

function M.decode(text)
  local ok, v = pcall(json.decode, text or "")
  if ok then return v end
  return nil
end

-- A running fault server: {url, port, pid, stop()}.
function M.start_fault()
  local p = M.spawn({M.fault_bin, "--listen", "127.0.0.1:0"})
  local port = M.wait_for(p.stdout, "^listening 127%.0%.0%.1:(%d+)")
  local fault = {pid = p.pid, port = tonumber(port), url = "http://127.0.0.1:" .. port, proc = p}
  function fault.stop()
    M.kill(fault.pid, M.SIGTERM)
    local how, code = M.wait_exit(fault.pid, 10)
    assert(how == "exited" and code == 0, "fault_server did not exit cleanly: " .. tostring(how) .. " " ..
      tostring(code) .. "\n" .. (M.read_file(fault.proc.stderr) or ""))
  end
  function fault.count()
    local _, body = M.request("GET", fault.url .. "/count")
    return M.decode(body).requests
  end
  return fault
end

-- A running ferry: opts.data, opts.providers (list of dirs), opts.base_urls
-- (slug → url), opts.args (extra arguments). Returns a server object.
function M.start_ferry(opts)
  opts = opts or {}
  local data = opts.data or (M.tmpdir() .. "/data")
  local argv = {M.bin, "serve", "--listen", "127.0.0.1:0", "--data", data}
  for _, d in ipairs(opts.providers or {M.root .. "/tests/providers"}) do
    argv[#argv + 1] = "--providers"
    argv[#argv + 1] = d
  end
  for slug, url in pairs(opts.base_urls or {}) do
    argv[#argv + 1] = "--base-url"
    argv[#argv + 1] = slug .. "=" .. url
  end
  -- Rate limits would get in the way of specs about something else; the
  -- ones about limits ask for them with opts.rate_limits.
  if not opts.rate_limits then
    for _, a in ipairs({"--user-rate", "0", "--team-rate", "0"}) do argv[#argv + 1] = a end
  end
  -- Likewise scheduled syncs: a connection's first sync would send requests
  -- specs about tools do not expect. Sync specs ask with opts.syncs.
  if not opts.syncs then
    for _, a in ipairs({"--sync-concurrency", "0"}) do argv[#argv + 1] = a end
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  local p = M.spawn(argv, opts.env)
  local port = M.wait_for(p.stderr, '"msg":"listening","addr":"127%.0%.0%.1:(%d+)"')
  local srv = {pid = p.pid, port = tonumber(port), url = "http://127.0.0.1:" .. port, data = data,
               log = p.stderr, proc = p}

  function srv.key(user, team, role)
    local args = {"keys", "create", "--user", user or "alice", "--team", team or "acme", "--data", data}
    if role then args[#args + 1] = "--role"; args[#args + 1] = role end
    local code, out, err = M.ferry(args)
    assert(code == 0, "keys create failed: " .. tostring(err))
    return (out:gsub("%s+$", ""))
  end

  -- POST /v1/tools/call; returns status, decoded body, headers.
  function srv.call(key, name, arguments, extra)
    local headers = {authorization = "Bearer " .. key}
    for k, v in pairs(extra or {}) do headers[k] = v end
    local status, body, h = M.request("POST", srv.url .. "/v1/tools/call",
      {json = {name = name, arguments = arguments or {}}, headers = headers})
    return status, M.decode(body), h, body
  end

  -- POST /v1/tools/call with a body written by hand (exact numbers).
  function srv.call_text(key, text)
    local status, body, h = M.request("POST", srv.url .. "/v1/tools/call",
      {body = text, headers = {authorization = "Bearer " .. key}})
    return status, M.decode(body), h, body
  end

  function srv.get(path, key)
    local status, body, h = M.request("GET", srv.url .. path,
      {headers = key and {authorization = "Bearer " .. key} or nil})
    return status, M.decode(body), h, body
  end

  function srv.healthy()
    local status = M.request("GET", srv.url .. "/healthz")
    return status == 200
  end

  -- Stops the server and insists on a clean exit (status 0): under the
  -- sanitizers that is also where leaks would show.
  function srv.stop(sig)
    M.kill(srv.pid, sig or M.SIGTERM)
    local how, code = M.wait_exit(srv.pid, 30)
    if how ~= "exited" or code ~= 0 then
      error(("ferry did not exit cleanly (%s %s):\n%s"):format(tostring(how), tostring(code),
        (M.read_file(srv.log) or ""):sub(-3000)))
    end
    return how, code
  end

  function srv.logs() return M.log_lines(srv.log) end
  return srv
end

-- Runs `sql` against a ferry database with the sqlite3 shell; returns rows
-- as lists of strings (fields separated by \x1f).
function M.sql(data_dir, sql)
  local code, out, err = M.run({"sqlite3", "-separator", "\31", data_dir .. "/ferry.db", sql})
  assert(code == 0, "sqlite3 failed: " .. tostring(err))
  local rows = {}
  for line in out:gmatch("[^\n]+") do
    local row = {}
    for field in (line .. "\31"):gmatch("(.-)\31") do row[#row + 1] = field end
    rows[#rows + 1] = row
  end
  return rows
end

-- Runs the load generator; returns its JSON report.
function M.loadgen(args)
  local argv = {M.loadgen_bin, "--json"}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local code, out, err = M.run(argv)
  assert(code == 0, "loadgen failed: " .. tostring(err) .. tostring(out))
  return json.decode(out)
end


-- ---- Provider specs: mock upstreams from API descriptions (tests/peers) ----

-- The official API descriptions the provider specs mock, unmodified
-- (tests/specs/README.md says where each comes from), and the Prism that
-- tests/peers/install puts in tests/peers/node_modules.
M.api_specs = os.getenv("FERRY_API_SPECS") or (M.root .. "/tests/specs")
M.prism_bin = os.getenv("PRISM") or (M.root .. "/tests/peers/node_modules/.bin/prism")

-- The path of one API description; fails clearly when it is absent.
function M.api_spec(rel)
  local path = M.api_specs .. "/" .. rel
  assert(M.read_file(path), "API description " .. path .. " not found (set FERRY_API_SPECS)")
  return path
end

-- A running Prism mock of `spec`: {url, port, pid, stop()}. opts.dynamic
-- generates bodies from the schemas (-d, seeded with opts.seed or "ferry")
-- instead of answering the examples; opts.errors adds --errors. Prism
-- validates every request against the description and answers an invalid
-- one with an error status.
function M.start_prism(spec, opts)
  opts = opts or {}
  assert(unistd.access(M.prism_bin, "x"), "Prism not installed at " .. M.prism_bin .. ": run tests/peers/install")
  local argv = {M.prism_bin, "mock", "-h", "127.0.0.1", "-p", "0"}
  if opts.dynamic then
    for _, a in ipairs({"-d", "--seed", opts.seed or "ferry"}) do argv[#argv + 1] = a end
  end
  if opts.errors then argv[#argv + 1] = "--errors" end
  argv[#argv + 1] = spec
  local p = M.spawn(argv)
  local port = M.wait_for(p.stdout, "Prism is listening on http://127%.0%.0%.1:(%d+)", opts.timeout or 120)
  local prism = {pid = p.pid, port = tonumber(port), url = "http://127.0.0.1:" .. port, proc = p}
  function prism.stop()
    M.kill(prism.pid, M.SIGTERM)
    if not M.wait_exit(prism.pid, 10) then
      M.kill(prism.pid, M.SIGKILL)
      M.wait_exit(prism.pid, 10)
    end
  end
  function prism.log() return M.read_file(p.stdout) or "" end
  return prism
end

-- A running tests/peers/tap_proxy.lua in front of `upstream`: records what
-- reaches it and can add a Prefer header (or other headers and query
-- parameters) or answer canned replies.
-- {url, pid, requests(), clear(), prefer(value), add(spec), replies(list), stop()}.
function M.start_tap(upstream)
  local lua = os.getenv("LUA51") or "lua5.1"
  local p = M.spawn({lua, M.root .. "/tests/peers/tap_proxy.lua", "--upstream", upstream})
  local port = M.wait_for(p.stdout, "^listening 127%.0%.0%.1:(%d+)")
  local tap = {pid = p.pid, port = tonumber(port), url = "http://127.0.0.1:" .. port, proc = p}
  local function control(method, what, body)
    local status, text = M.request(method, tap.url .. "/__tap/" .. what, {body = body or ""})
    assert(status == 200 or status == 204, "tap_proxy " .. what .. ": " .. tostring(status) .. " " .. tostring(text))
    return text
  end
  -- Requests seen since the last clear(), oldest first; each has its
  -- decoded JSON body as .json when it had one.
  function tap.requests()
    local list = json.decode(control("GET", "requests"))
    for _, r in ipairs(list) do
      local ok, v = pcall(json.decode, r.body or "")
      if ok then r.json = v end
    end
    return list
  end
  function tap.last() local list = tap.requests(); return list[#list] end
  function tap.clear() control("DELETE", "requests") end
  function tap.prefer(value) control("PUT", "prefer", value or "") end
  -- spec = {headers = {...}, query = {...}} added to what is forwarded
  -- (not to what is recorded); {} stops it.
  function tap.add(spec) control("PUT", "add", json.encode(spec or {})) end
  function tap.replies(list) control("PUT", "replies", #list > 0 and json.encode(list) or "[]") end
  function tap.stop()
    M.kill(tap.pid, M.SIGTERM)
    M.wait_exit(tap.pid, 10)
  end
  return tap
end

-- POST /v1/connections as `key`; returns status and the decoded body.
function M.connect(srv, key, body)
  local status, text = M.request("POST", srv.url .. "/v1/connections",
    {json = body, headers = {authorization = "Bearer " .. key}})
  return status, M.decode(text), text
end

-- POST /v1/tools/call as `key` with opts.connection_id; returns status,
-- decoded body, headers. A write tool that answers 202 (waiting for
-- approval) is approved with opts.approver (an admin key) and the stored
-- outcome returned as a direct call's would be ({result} or {error}).
function M.call_tool(srv, key, name, arguments, opts)
  opts = opts or {}
  local status, text, headers = M.request("POST", srv.url .. "/v1/tools/call", {
    json = {name = name, arguments = arguments or {}, connection_id = opts.connection_id},
    headers = {authorization = "Bearer " .. key},
  })
  local body = M.decode(text)
  if status ~= 202 or type(body) ~= "table" or type(body.approval) ~= "table" then return status, body, headers end
  local id = body.approval.id
  local approver = assert(opts.approver, name .. " needs approval: give opts.approver")
  local st, answer = M.request("POST", srv.url .. "/v1/approvals/" .. id .. "/approve",
    {json = {reason = "integration test"}, headers = {authorization = "Bearer " .. approver}})
  assert(st == 200, "approving " .. id .. " failed: " .. tostring(st) .. " " .. tostring(answer))
  local _, approval = srv.get("/v1/approvals/" .. id, approver)
  approval = type(approval) == "table" and (approval.approval or approval) or {}
  if approval.error ~= nil then return approval.error.status or 502, {error = approval.error}, {} end
  return 200, {result = approval.result}, {}
end

-- A query string as {name = {value, ...}}, percent-decoded ('+' is a space).
function M.parse_query(q)
  local out = {}
  local function unescape(s)
    return (s:gsub("+", " "):gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
  end
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k = unescape(k)
    out[k] = out[k] or {}
    table.insert(out[k], unescape(v))
  end
  return out
end



-- ---- OAuth: a real identity provider and a scripted browser ----

M.node_bin = os.getenv("NODE") or "node"

-- A free loopback port (the kernel's pick, released at once).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

-- oidc-provider from tests/peers (tests/peers/oidc_server.mjs): one
-- confidential client ferry-test / s3cret whose redirect URI is
-- opts.redirect_uri, PKCE required, rotating refresh tokens. opts.access_ttl
-- and opts.refresh_ttl in seconds. {url, port, counters(), revoke_grants(),
-- log(), stop()}.
function M.start_idp(opts)
  local port = M.free_port()
  local p = M.spawn({M.node_bin, M.root .. "/tests/peers/oidc_server.mjs"}, {
    PORT = tostring(port), REDIRECT_URI = assert(opts.redirect_uri),
    ACCESS_TTL = tostring(opts.access_ttl or 60), REFRESH_TTL = tostring(opts.refresh_ttl or 3600),
    EXTRA_SCOPES = opts.extra_scopes or "",
    NODE_PATH = M.root .. "/tests/peers/node_modules",
  })
  M.wait_for(p.stderr, "%[idp%] issuer (%S+) ready", 60)
  local idp = {pid = p.pid, port = port, url = "http://127.0.0.1:" .. port, proc = p}
  function idp.counters()
    local status, body = M.request("GET", idp.url .. "/test/counters")
    assert(status == 200, "idp counters: " .. tostring(status))
    return json.decode(body)
  end
  -- The token endpoint answers `ms` late from now on (a slow identity provider).
  function idp.token_delay(ms)
    local status = M.request("POST", idp.url .. "/test/token-delay?ms=" .. tostring(ms), {body = ""})
    assert(status == 200, "token-delay: " .. tostring(status))
  end

  function idp.revoke_grants()
    local status, body = M.request("POST", idp.url .. "/test/revoke-grants", {body = ""})
    assert(status == 200, "idp revoke: " .. tostring(status))
    return json.decode(body)
  end
  function idp.log() return M.read_file(p.stderr) or "" end
  function idp.stop()
    M.kill(idp.pid, M.SIGTERM)
    if not M.wait_exit(idp.pid, 10) then
      M.kill(idp.pid, M.SIGKILL)
      M.wait_exit(idp.pid, 10)
    end
  end
  return idp
end

-- A browser signing in: follows redirects from `url` with a cookie jar
-- (curl), fills the identity provider's login form (any user and password)
-- and its consent form, or aborts consent with opts.deny, until a redirect
-- leads to a URL starting with opts.stop_at (ferry's callback), which is
-- returned without being visited.
function M.browser_sign_in(url, opts)
  local dir = M.tmpdir()
  local jar, page = dir .. "/cookies", dir .. "/page"
  local function go(target, form)
    local argv = {"curl", "-s", "-c", jar, "-b", jar, "-o", page, "-w", "%{http_code} %{redirect_url}", target}
    for _, kv in ipairs(form or {}) do
      argv[#argv + 1] = "--data-urlencode"
      argv[#argv + 1] = kv
    end
    local code, out, err = M.run(argv)
    assert(code == 0, "curl failed: " .. tostring(err))
    local status, location = out:match("^(%d+) ?(.*)$")
    return tonumber(status), location, M.read_file(page) or ""
  end
  for _ = 1, 16 do
    if url:sub(1, #opts.stop_at) == opts.stop_at then return url end
    local status, location, body = go(url)
    if status == 200 then
      local prompt = body:match('name="prompt" value="(%w+)"')
      local action = body:match('<form[^>]- action="([^"]+)"')
      assert(prompt and action, "the identity provider showed a page without a form:\n" .. body:sub(1, 2000))
      if prompt == "consent" and opts.deny then
        local abort = assert(body:match('href="([^"]*/abort)"'), "no abort link on the consent page")
        if abort:sub(1, 1) == "/" then abort = url:match("^(https?://[^/]+)") .. abort end
        status, location = go(abort)
      elseif prompt == "login" then
        status, location = go(action, {"prompt=login", "login=" .. (opts.login or "ann"), "password=any"})
      else
        status, location = go(action, {"prompt=" .. prompt})
      end
    end
    assert(status >= 300 and status < 400 and location ~= "",
      "the sign-in stopped at HTTP " .. tostring(status) .. " on " .. url)
    url = location
  end
  error("the sign-in went round in circles")
end

return M
