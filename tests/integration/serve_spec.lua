-- serve as an operator sees it: broken providers are reported and skipped
-- while the rest load; SIGTERM drains calls in flight; logs are JSON lines
-- that carry the request id into upstream calls and never a secret.
local h = require "helper"

local function find_line(lines, pred)
  for _, l in ipairs(lines) do
    if pred(l) then return l end
  end
end

describe("ferry serve", function()
  local fault

  setup(function() fault = h.start_fault() end)
  teardown(function() fault.stop() end)

  it("skips broken providers, reports each one, and serves the others", function()
    local srv = h.start_ferry({providers = {h.root .. "/tests/providers", h.root .. "/tests/providers-broken"},
                               args = {"--script-cpu-ms", "200"}})
    local key = srv.key()
    local status, body = srv.get("/v1/tools", key)
    assert.are.equal(200, status)
    local names = {}
    for _, t in ipairs(body.tools) do names[t.name] = true end
    assert.is_true(names["sample__echo"])
    assert.is_nil(names["syntax__oops"])
    local logs = srv.logs()
    for _, file in ipairs({"syntax.lua", "contract.lua", "loops.lua", "returns_string.lua"}) do
      local line = find_line(logs, function(l)
        return l.msg == "provider skipped" and l.source:find(file, 1, true)
      end)
      assert.is_table(line, "no 'provider skipped' line for " .. file)
      assert.are.equal("error", line.level)
    end
    local listening = find_line(logs, function(l) return l.msg == "listening" end)
    assert.are.equal(4, listening.providers_skipped)
    assert.are.equal(0, (select(2, srv.stop())))
  end)

  it("drains calls in flight on SIGTERM and exits 0", function()
    local srv = h.start_ferry({base_urls = {sample = fault.url}})
    local key = srv.key()
    local procs = {}
    for i = 1, 5 do
      procs[i] = h.spawn({"curl", "-s", "-H", "Authorization: Bearer " .. key, "-d",
        '{"name":"sample__get","arguments":{"path":"/delay","query":{"ms":700}}}', srv.url .. "/v1/tools/call"})
    end
    h.sleep(0.3)
    h.kill(srv.pid, h.SIGTERM)
    local how, code = h.wait_exit(srv.pid, 15)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    for i = 1, 5 do
      h.wait_exit(procs[i].pid, 10)
      local body = h.decode(h.read_file(procs[i].stdout))
      assert.is_table(body, "call " .. i .. " got no answer")
      assert.are.equal(700, body.result.delayed_ms, "call " .. i .. " finished during the drain")
    end
    local drained = find_line(srv.logs(), function(l) return l.msg == "draining" end)
    assert.are.equal(5, drained.calls_in_flight)
    -- the drained calls are in the call log
    local rows = h.sql(srv.data, "SELECT count(*) FROM call_log WHERE tool = 'sample__get' AND outcome = 'ok'")
    assert.are.equal("5", rows[1][1])
  end)

  it("ends calls still running when the drain times out, and exits 0", function()
    local srv = h.start_ferry({base_urls = {sample = fault.url}, args = {"--drain-timeout-ms", "300"}})
    local key = srv.key()
    local proc = h.spawn({"curl", "-s", "-H", "Authorization: Bearer " .. key, "-d",
      '{"name":"sample__get","arguments":{"path":"/hang","timeout_ms":60000}}', srv.url .. "/v1/tools/call"})
    h.sleep(0.3)
    h.kill(srv.pid, h.SIGINT)
    local how, code = h.wait_exit(srv.pid, 15)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    h.wait_exit(proc.pid, 10)
    local body = h.decode(h.read_file(proc.stdout))
    assert.are.equal("internal", body.error.code)
    assert.is_truthy(body.error.message:find("shutting down", 1, true))
  end)

  it("refuses new connections once draining", function()
    local srv = h.start_ferry({base_urls = {sample = fault.url}})
    local key = srv.key()
    local proc = h.spawn({"curl", "-s", "-H", "Authorization: Bearer " .. key, "-d",
      '{"name":"sample__get","arguments":{"path":"/delay","query":{"ms":800}}}', srv.url .. "/v1/tools/call"})
    h.sleep(0.3)
    h.kill(srv.pid, h.SIGTERM)
    h.sleep(0.2)
    local status = h.request("GET", srv.url .. "/healthz")
    assert.is_nil(status, "a new connection during the drain should be refused")
    local how, code = h.wait_exit(srv.pid, 15)
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
    h.wait_exit(proc.pid, 10)
    assert.are.equal(800, h.decode(h.read_file(proc.stdout)).result.delayed_ms)
  end)

  it("writes JSON log lines that carry the request id into upstream calls", function()
    local srv = h.start_ferry({base_urls = {sample = fault.url}})
    local key = srv.key()
    local status = srv.call(key, "sample__get", {path = "/ok"}, {["x-request-id"] = "trace-me-42"})
    assert.are.equal(200, status)
    srv.stop()
    local logs = srv.logs()
    local upstream = find_line(logs, function(l) return l.msg == "upstream" and l.request_id == "trace-me-42" end)
    assert.is_table(upstream, "no upstream line with the request id")
    assert.are.equal("127.0.0.1", upstream.host)
    assert.are.equal("/ok", upstream.path)
    assert.are.equal("200", upstream.status)
    assert.are.equal("sample", upstream.provider)
    local call = find_line(logs, function(l) return l.msg == "tool call" and l.request_id == "trace-me-42" end)
    assert.are.equal("ok", call.outcome)
    local req = find_line(logs, function(l) return l.msg == "request" and l.request_id == "trace-me-42" end)
    assert.are.equal(200, req.status)
    assert.are.equal("alice", req.user)
  end)

  it("keeps secrets out of logs, the call log and responses", function()
    local srv = h.start_ferry({base_urls = {sample = fault.url}})
    local key = srv.key()
    local secret = "sk_live_SECRET_" .. tostring(math.random(1e9))
    local status, body, _, raw = srv.call(key, "sample__post_echo",
      {payload = {password = secret, note = "hello"}, api_token = secret})
    assert.are.equal(202, status)   -- a write waits for approval
    assert.are.equal("[redacted]", body.approval.arguments.api_token)
    assert.is_nil(raw:find(secret, 1, true), "the approval shows the arguments redacted")
    local st, text = h.request("POST", srv.url .. "/v1/approvals/" .. body.approval.id .. "/approve",
      {json = {}, headers = {authorization = "Bearer " .. key}})
    assert.are.equal(200, st, text)
    -- the upstream saw the password (the script sent it) and echoed it; the
    -- stored result, and so the answer, has what the arguments' redaction
    -- removed masked
    local result = h.decode(text).approval.result
    assert.is_table(result)
    assert.is_nil(text:find(secret, 1, true), "secret in the approval's result")
    assert.is_truthy(result.body:find("[redacted]", 1, true), result.body)
    srv.stop()
    local log = h.read_file(srv.log)
    assert.is_nil(log:find(secret, 1, true), "secret in the log")
    assert.is_nil(log:find(key, 1, true), "API key in the log")
    local key_secret = key:match("^fry_%x+_(.+)$")
    assert.is_nil(log:find(key_secret, 1, true), "API key secret in the log")
    local rows = h.sql(srv.data, "SELECT arguments FROM call_log WHERE tool = 'sample__post_echo'")
    assert.are.equal(1, #rows)
    assert.is_nil(rows[1][1]:find(secret, 1, true), "secret in the call log: " .. rows[1][1])
    local args = h.json.decode(rows[1][1])
    assert.are.equal("[redacted]", args.api_token)
    assert.are.equal("[redacted]", args.payload.password)
    assert.are.equal("hello", args.payload.note)
    for _, file in ipairs({"/ferry.db", "/ferry.db-wal"}) do
      local bytes = h.read_file(srv.data .. file) or ""
      assert.is_nil(bytes:find(secret, 1, true), "secret in " .. file)
      assert.is_nil(bytes:find(key_secret, 1, true), "API key secret in " .. file)
    end
  end)
end)
