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
    url = url, method = method, headers = headers,
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

return M
