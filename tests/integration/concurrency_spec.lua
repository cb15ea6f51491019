-- Many tool calls in flight on one thread: each call's coroutine waits on
-- its upstream request while the others run. The provider counts how many
-- of its calls are waiting at once, which is the proof.
local h = require "helper"

describe("calls in flight", function()
  local fault

  setup(function() fault = h.start_fault() end)
  teardown(function() fault.stop() end)

  it("keeps 300 calls waiting on their upstream at the same time", function()
    local srv = h.start_ferry({base_urls = {misbehave = fault.url}, args = {"--log-level", "warn"}})
    local key = srv.key()
    local report = h.loadgen({"--url", srv.url .. "/v1/tools/call", "--method", "POST",
      "--header", "Authorization: Bearer " .. key, "--header", "Content-Type: application/json",
      "--body", '{"name":"misbehave__slow_count","arguments":{"ms":1000}}',
      "--concurrency", "300", "--requests", "300", "--timeout-ms", "20000"})
    assert.are.equal(300, report.requests)
    assert.are.equal(0, report.errors, h.json.encode(report.error_breakdown))
    local status, body = srv.call(key, "misbehave__slow_count", {ms = 1})
    assert.are.equal(200, status)
    assert.are.equal(300, body.result.max_in_flight)
    local _, _, _, metrics = srv.get("/metrics")
    assert.is_truthy(metrics:find('ferry_tool_calls_total{tool="misbehave__slow_count",outcome="ok"} 301', 1, true))
    srv.stop()
  end)

  it("answers rate_limited with Retry-After beyond --max-in-flight", function()
    local srv = h.start_ferry({base_urls = {misbehave = fault.url}, args = {"--max-in-flight", "4"}})
    local key = srv.key()
    local report = h.loadgen({"--url", srv.url .. "/v1/tools/call", "--method", "POST",
      "--header", "Authorization: Bearer " .. key, "--header", "Content-Type: application/json",
      "--body", '{"name":"misbehave__slow_count","arguments":{"ms":500}}',
      "--concurrency", "12", "--requests", "12"})
    assert.are.equal(12, report.requests)
    assert.are.equal(8, report.error_breakdown.status["429"], h.json.encode(report.error_breakdown))
    local procs = {}
    for i = 1, 4 do
      procs[i] = h.spawn({"curl", "-s", "-H", "Authorization: Bearer " .. key, "-d",
        '{"name":"misbehave__slow_count","arguments":{"ms":500}}', srv.url .. "/v1/tools/call"})
    end
    h.sleep(0.2)
    local status, body, headers = srv.call(key, "sample__echo", {text = "x"})
    assert.are.equal(429, status)
    assert.are.equal("rate_limited", body.error.code)
    assert.are.equal("1", headers["retry-after"])
    for i = 1, 4 do h.wait_exit(procs[i].pid, 10) end
    assert.are.equal(200, (srv.call(key, "sample__echo", {text = "x"})))
    srv.stop()
  end)
end)
