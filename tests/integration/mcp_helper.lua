-- mcp_helper: what the MCP client specs share: the MCP servers they talk
-- to (server-everything from npm, and tests/peers/mcp_fault_server.mjs for
-- faults) and the admin API of /v1/mcp-servers. Runs under busted on Lua
-- 5.1, beside helper.lua.
local h = require "helper"
local stdlib = require "posix.stdlib"
local json = h.json

local M = {}

local function absolute(path) return stdlib.realpath(path) or path end

M.peers = absolute(h.root .. "/tests/peers")
M.everything_bin = M.peers .. "/node_modules/.bin/mcp-server-everything"
M.fault_script = M.peers .. "/mcp_fault_server.mjs"

function M.require_everything()
  assert(h.read_file(M.everything_bin), "server-everything is not installed at " .. M.everything_bin ..
    ": run tests/peers/install")
end

-- server-everything's HTTP modes listen on every interface: they may only
-- run where loopback is the only network (scripts/test runs the suite
-- under unshare -n; by hand: unshare -n bash -c 'ip link set lo up; ...').
function M.require_loopback_only()
  -- netlink, not /sys: sysfs keeps showing the namespace it was mounted in.
  local code, out = h.run({"ip", "-o", "link", "show"})
  assert(code == 0, "cannot list network interfaces (ip -o link show)")
  for name in out:gmatch("%d+: ([^:@]+)") do
    assert(name == "lo", "server-everything binds every interface: run this spec inside a network namespace " ..
      "with only loopback (unshare -n bash -c 'ip link set lo up; cd build && ctest -R mcp')")
  end
end

-- server-everything over HTTP: mode "streamableHttp" (/mcp) or "sse" (/sse).
-- opts.port to reuse a port (a restarted server). {url, port, pid, stop()}.
function M.start_everything(mode, opts)
  opts = opts or {}
  M.require_everything()
  M.require_loopback_only()
  local port = opts.port or h.free_port()
  local p = h.spawn({M.everything_bin, mode}, {PORT = tostring(port)})
  local deadline = h.now() + 30
  while h.now() < deadline do
    local status = h.request("GET", "http://127.0.0.1:" .. port .. "/unused-path")
    if status then break end
    h.sleep(0.1)
  end
  local e = {pid = p.pid, port = port, proc = p,
             url = "http://127.0.0.1:" .. port .. (mode == "sse" and "/sse" or "/mcp")}
  function e.stop()
    h.kill(e.pid, h.SIGTERM)
    if not h.wait_exit(e.pid, 10) then
      h.kill(e.pid, h.SIGKILL)
      h.wait_exit(e.pid, 10)
    end
  end
  return e
end

-- The fault server over HTTP (it binds 127.0.0.1 only). {url, port, pid,
-- log(), control(path), stop()}.
function M.start_fault()
  local p = h.spawn({h.node_bin, M.fault_script, "--port", "0"})
  local port = h.wait_for(p.stdout, "^listening 127%.0%.0%.1:(%d+)", 30)
  local f = {pid = p.pid, port = tonumber(port), url = "http://127.0.0.1:" .. port, proc = p}
  function f.log()
    local status, body = h.request("GET", f.url .. "/control/log")
    assert(status == 200, "fault server log: " .. tostring(status))
    return json.decode(body)
  end
  function f.control(what)
    local status, body = h.request("POST", f.url .. "/control/" .. what, {body = ""})
    assert(status == 200, "fault server control " .. what .. ": " .. tostring(status))
    return json.decode(body)
  end
  -- Log entries of one kind.
  function f.events(kind)
    local out = {}
    for _, e in ipairs(f.log()) do if e.kind == kind then out[#out + 1] = e end end
    return out
  end
  function f.stop()
    h.kill(f.pid, h.SIGTERM)
    if not h.wait_exit(f.pid, 10) then
      h.kill(f.pid, h.SIGKILL)
      h.wait_exit(f.pid, 10)
    end
  end
  return f
end

-- A wrapper that runs the fault server over stdio (ferry runs commands by
-- absolute path only): a shell script passing `args` and logging to
-- `log`. Returns the script's path.
function M.fault_stdio_command(dir, args, log)
  local path = dir .. "/fault-stdio.sh"
  -- PATH is one of the few variables ferry passes to a server process.
  h.write_file(path, "#!/bin/sh\nexec " .. h.node_bin .. " " .. M.fault_script .. " --stdio --log " .. log .. " " ..
    table.concat(args or {}, " ") .. "\n")
  assert(h.run({"chmod", "700", path}) == 0)
  return path
end

-- JSON lines of a --log file, decoded.
function M.read_log(path)
  local out = {}
  for line in (h.read_file(path) or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(line) end
  return out
end

-- ---- the admin API ----

local function call(srv, method, path, key, body)
  local status, text = h.request(method, srv.url .. path, {json = body, headers = {authorization = "Bearer " .. key}})
  return status, h.decode(text), text
end
M.api = call

function M.register(srv, key, spec) return call(srv, "POST", "/v1/mcp-servers", key, spec) end

-- Registers and asserts it worked; returns the answer's body.
function M.register_ok(srv, key, spec)
  local status, body, text = M.register(srv, key, spec)
  assert(status == 201, "registration failed: " .. tostring(status) .. " " .. tostring(text))
  assert(body.sync_error == nil, "the first sync failed: " .. tostring(text))
  return body
end

function M.approve_server(srv, key, id)
  local status, body, text = call(srv, "POST", "/v1/mcp-servers/" .. id .. "/approve", key, {})
  assert(status == 200, "approving the server failed: " .. tostring(text))
  return body.server
end

function M.tools(srv, key, id)
  local status, body, text = call(srv, "GET", "/v1/mcp-servers/" .. id .. "/tools", key)
  assert(status == 200, "listing tools failed: " .. tostring(text))
  return body.tools
end

function M.tool_named(srv, key, id, name)
  for _, t in ipairs(M.tools(srv, key, id)) do if t.name == name then return t end end
  error("no tool " .. name)
end

-- Approves the server's tools called `names` (opts.access to override).
function M.approve_tools(srv, key, id, names, opts)
  for _, name in ipairs(names) do
    local t = M.tool_named(srv, key, id, name)
    local status, _, text = call(srv, "POST", "/v1/mcp-tools/" .. t.id .. "/approve", key,
      {access = opts and opts.access or nil})
    assert(status == 200, "approving " .. name .. " failed: " .. tostring(text))
  end
end

function M.sync(srv, key, id) return call(srv, "POST", "/v1/mcp-servers/" .. id .. "/sync", key, {}) end

-- Names of the tools the caller's agent sees, of one integration.
function M.agent_tools(srv, key, slug)
  local _, body = srv.get("/v1/tools", key)
  local names = {}
  for _, t in ipairs(body.tools) do
    if t.integration == slug then names[#names + 1] = t.name end
  end
  table.sort(names)
  return names, body.tools
end

function M.executions(srv, key, id)
  local status, body, text = call(srv, "GET", "/v1/mcp-servers/" .. id .. "/executions", key)
  assert(status == 200, "listing executions failed: " .. tostring(text))
  return body.executions
end

-- Polls fn() until it returns a true value (or fails after `timeout`).
function M.eventually(fn, timeout, what)
  local deadline = h.now() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    h.sleep(0.1)
  until h.now() > deadline
  error("timed out waiting for " .. (what or "a condition"))
end

-- The children of a process (pids), from /proc.
function M.children(pid)
  local code, out = h.run({"ps", "-o", "pid=", "--ppid", tostring(pid)})
  local list = {}
  if code == 0 then for p in out:gmatch("%d+") do list[#list + 1] = tonumber(p) end end
  return list
end

function M.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*a")
  f:close()
  return not stat:match("^%d+ %b() Z")   -- a zombie is not alive
end

return M
