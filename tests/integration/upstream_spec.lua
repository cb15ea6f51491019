-- ctx.http.request against the fault-injection upstream: real answers,
-- and every way an upstream fails becomes its coded error while the
-- server keeps serving.
local h = require "helper"

describe("upstream calls", function()
  local srv, fault, key

  setup(function()
    fault = h.start_fault()
    srv = h.start_ferry({base_urls = {sample = fault.url},
                         args = {"--max-response-mb", "1"}})
    key = srv.key()
  end)

  teardown(function()
    srv.stop()
    fault.stop()
  end)

  after_each(function()
    assert.is_true(srv.healthy(), "the server must keep serving")
  end)

  it("returns the upstream's JSON", function()
    local status, body = srv.call(key, "sample__get", {path = "/json", query = {n = 3}})
    assert.are.equal(200, status)
    assert.are.equal(3, #body.result.items)
    assert.are.equal(1, body.result.items[1].id)
    assert.are.equal("item 1", body.result.items[1].name)
  end)

  it("sends method, JSON body, headers and encoded query parameters", function()
    -- a write: it waits for approval, then runs once approved
    local status, body = srv.call_text(key, '{"name":"sample__post_echo","arguments":{"payload":' ..
      '{"n":42,"big":9007199254740993,"price":1234.56,"list":[1,2]}}}')
    assert.are.equal(202, status)
    local st, text = h.request("POST", srv.url .. "/v1/approvals/" .. body.approval.id .. "/approve",
      {json = {}, headers = {authorization = "Bearer " .. key}})
    assert.are.equal(200, st, text)
    body = h.decode(text).approval
    assert.are.equal("succeeded", body.status)
    local seen = body.result
    assert.are.equal("POST", seen.method)
    assert.are.equal("/echo", seen.path)
    assert.are.equal("yes", seen.headers["x-sample"])
    assert.are.equal("application/json", seen.headers["content-type"])
    -- integers stay integers, exactly, and decimals stay as written
    assert.are.equal('{"big":9007199254740993,"list":[1,2],"n":42,"price":1234.56}', seen.body)

    status, body = srv.call(key, "sample__get", {path = "/echo", query = {q = "a b&c=d", tag = "ü"}})
    assert.are.equal(200, status)
    assert.are.equal("a b&c=d", body.result.query.q)
    assert.are.equal("ü", body.result.query.tag)
  end)

  it("decodes gzip answers", function()
    local status, body = srv.call(key, "sample__get", {path = "/gzip"})
    assert.are.equal(200, status)
    assert.is_table(body.result)
  end)

  it("keeps waits inside a script's own coroutine working", function()
    local status, body = srv.call(key, "sample__sequence", {count = 4})
    assert.are.equal(200, status)
    assert.are.equal(1 + 2 + 3 + 4, body.result.items)
  end)

  it("ends a request past its deadline with upstream_timeout", function()
    local status, body = srv.call(key, "sample__get", {path = "/hang", timeout_ms = 300})
    assert.are.equal(504, status)
    assert.are.equal("upstream_timeout", body.error.code)
    status, body = srv.call(key, "sample__get", {path = "/delay", query = {ms = 2000}, timeout_ms = 200})
    assert.are.equal(504, status)
    assert.are.equal("upstream_timeout", body.error.code)
  end)

  it("maps an upstream 500 to upstream_error", function()
    local status, body = srv.call(key, "sample__get", {path = "/status/500"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal(500, body.error.details.status)
  end)

  it("maps an upstream 429 to upstream_rate_limited with Retry-After", function()
    local status, body, headers = srv.call(key, "sample__get", {path = "/status/429", query = {retry_after = 7}})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(7, body.error.details.retry_after)
    assert.are.equal("7", headers["retry-after"])
  end)

  it("reports a reset connection as upstream_error", function()
    local status, body = srv.call(key, "sample__get", {path = "/reset"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
  end)

  it("reports a truncated body as upstream_error", function()
    local status, body = srv.call(key, "sample__get", {path = "/truncated"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.is_truthy(body.error.message:find("closed the connection", 1, true), body.error.message)
  end)

  it("reports invalid JSON from the upstream as upstream_error", function()
    local status, body = srv.call(key, "sample__get", {path = "/invalid-json"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.is_truthy(body.error.message:find("not valid JSON", 1, true), body.error.message)
  end)

  it("refuses a response over the size cap with payload_too_large", function()
    local status, body = srv.call(key, "sample__get", {path = "/huge", query = {mb = 3}})
    assert.are.equal("payload_too_large", body.error.code)
    assert.are.equal(502, status, "a too-large upstream answer is not the caller's too-large request")
  end)

  it("reports a refused connection as upstream_error", function()
    -- misbehave keeps its declared base URL, port 9, where nobody listens
    local status, body = srv.call(key, "misbehave__slow_count", {ms = 1})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.is_truthy(body.error.message:find("failed", 1, true), body.error.message)
  end)

  it("counts upstream requests by host and status in /metrics", function()
    srv.call(key, "sample__get", {path = "/status/500"})
    local _, _, _, text = srv.get("/metrics")
    assert.is_truthy(text:find('ferry_upstream_requests_total{host="127.0.0.1",status="500"}', 1, true))
    assert.is_truthy(text:find('ferry_upstream_requests_total{host="127.0.0.1",status="upstream_timeout"}', 1, true))
  end)
end)
