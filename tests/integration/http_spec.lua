-- The agent-facing HTTP API of the real binary: health, auth, tool
-- discovery, tool calls, and every malformed request getting its coded
-- error while the server keeps serving.
local h = require "helper"

describe("HTTP API", function()
  local srv, key

  setup(function()
    srv = h.start_ferry()
    key = srv.key("alice", "acme")
  end)

  teardown(function()
    local how, code = srv.stop()
    assert.are.equal("exited", how)
    assert.are.equal(0, code)
  end)

  after_each(function()
    assert.is_true(srv.healthy(), "the server must keep serving")
  end)

  it("answers /healthz without a key", function()
    local status, body = srv.get("/healthz")
    assert.are.equal(200, status)
    assert.are.equal("ok", body.status)
    assert.is_string(body.version)
  end)

  it("refuses /v1 routes without a key, with a bad key, and with a revoked key", function()
    local status, body, headers = srv.get("/v1/tools")
    assert.are.equal(401, status)
    assert.are.equal("unauthorized", body.error.code)
    assert.are.equal("Bearer", headers["www-authenticate"])

    status, body = srv.get("/v1/tools", "fry_0123456789abcdef_notthesecret")
    assert.are.equal(401, status)
    assert.are.equal("unauthorized", body.error.code)

    status, body = srv.get("/v1/tools", "not-even-a-key")
    assert.are.equal(401, status)
    assert.are.equal("malformed API key", body.error.message)

    local doomed = srv.key("bob", "acme")
    assert.are.equal(200, (srv.get("/v1/tools", doomed)))
    local key_id = doomed:match("^fry_(%x+)_")
    local code = h.ferry({"keys", "revoke", key_id, "--data", srv.data})
    assert.are.equal(0, code)
    h.sleep(1.1)   -- verified keys are cached for a second (docs/operations.md)
    status, body = srv.get("/v1/tools", doomed)
    assert.are.equal(401, status)
    assert.are.equal("unauthorized", body.error.code)
    assert.is_nil(body.error.message:find(doomed, 1, true), "the key is never echoed")
  end)

  it("lists the tools of loaded providers with their schemas", function()
    local status, body = srv.get("/v1/tools", key)
    assert.are.equal(200, status)
    local by_name = {}
    for _, t in ipairs(body.tools) do by_name[t.name] = t end
    local echo = by_name["sample__echo"]
    assert.is_table(echo)
    assert.are.equal("read", echo.access)
    assert.are.equal("sample", echo.integration)
    assert.are.equal("object", echo.input_schema.type)
    assert.are.same({"text"}, echo.input_schema.required)
    assert.are.equal("write", by_name["sample__post_echo"].access)
    for name in pairs(by_name) do
      assert.is_truthy(name:match("^[%w_%-]+$") and #name <= 64, name)
    end
  end)

  it("calls a tool and returns result, content and duration", function()
    local status, body = srv.call(key, "sample__echo", {text = "ab", times = 2})
    assert.are.equal(200, status)
    assert.are.equal("abab", body.result.text)
    assert.are.equal("text", body.content[1].type)
    assert.are.same(body.result, h.json.decode(body.content[1].text))
    assert.is_number(body.duration_ms)
  end)

  it("carries the caller's X-Request-Id into the script and back", function()
    local status, body, headers = srv.call(key, "sample__echo", {text = "x"}, {["x-request-id"] = "req-from-agent-1"})
    assert.are.equal(200, status)
    assert.are.equal("req-from-agent-1", body.result.request_id)
    assert.are.equal("req-from-agent-1", headers["x-request-id"])
  end)

  it("rejects malformed JSON with bad_request", function()
    local status, text = h.request("POST", srv.url .. "/v1/tools/call",
      {body = '{"name": "sample__echo", "arguments": {', headers = {authorization = "Bearer " .. key}})
    local body = h.decode(text)
    assert.are.equal(400, status)
    assert.are.equal("bad_request", body.error.code)
    assert.is_number(body.error.details.line)
  end)

  it("rejects a body that is not an object, and a name that is not a string", function()
    local status, text = h.request("POST", srv.url .. "/v1/tools/call",
      {body = '[1,2,3]', headers = {authorization = "Bearer " .. key}})
    assert.are.equal(400, status)
    assert.are.equal("bad_request", h.decode(text).error.code)
    status, text = h.request("POST", srv.url .. "/v1/tools/call",
      {json = {name = 5}, headers = {authorization = "Bearer " .. key}})
    assert.are.equal(400, status)
    assert.are.equal("bad_request", h.decode(text).error.code)
  end)

  it("answers an unknown tool with unknown_tool", function()
    local status, body = srv.call(key, "sample__nope", {})
    assert.are.equal(404, status)
    assert.are.equal("unknown_tool", body.error.code)
    assert.are.equal("sample__nope", body.error.details.name)
  end)

  it("validates arguments against the tool's schema before the script runs", function()
    local cases = {
      {{}, "$", "missing required property 'text'"},
      {{text = 5}, "$.text", "expected string"},
      {{text = ""}, "$.text", "minLength"},
      {{text = "a", times = 9}, "$.times", "maximum"},
      {{text = "a", extra = true}, "$", "'extra'"},
    }
    for _, c in ipairs(cases) do
      local status, body = srv.call(key, "sample__echo", c[1])
      assert.are.equal(400, status)
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[2], body.error.details.path)
      assert.is_truthy(body.error.message:find(c[3], 1, true), body.error.message)
    end
    local status, text = h.request("POST", srv.url .. "/v1/tools/call",
      {body = '{"name":"sample__echo","arguments":[1]}', headers = {authorization = "Bearer " .. key}})
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", h.decode(text).error.code)
  end)

  it("answers an oversized body with payload_too_large", function()
    local big = '{"name":"sample__echo","arguments":{"text":"' .. string.rep("a", 2 * 1024 * 1024) .. '"}}'
    local status, text = h.request("POST", srv.url .. "/v1/tools/call",
      {body = big, headers = {authorization = "Bearer " .. key}})
    assert.are.equal(413, status)
    assert.are.equal("payload_too_large", h.decode(text).error.code)
  end)

  it("answers unknown routes with not_found and wrong methods with 405", function()
    local status, body = srv.get("/v1/nothing-here", key)
    assert.are.equal(404, status)
    assert.are.equal("not_found", body.error.code)
    local st = h.request("DELETE", srv.url .. "/v1/tools", {headers = {authorization = "Bearer " .. key}})
    assert.are.equal(405, st)
  end)

  it("serves the Connected Apps page with a strict content security policy", function()
    local status, text, headers = h.request("GET", srv.url .. "/")
    assert.are.equal(200, status)
    assert.is_truthy(headers["content-type"]:find("text/html", 1, true))
    assert.is_truthy(text:find("<title>Connected Apps", 1, true))
    local csp = headers["content-security-policy"]
    assert.is_truthy(csp:find("default-src 'none'", 1, true))
    assert.is_truthy(csp:find("script-src 'self'", 1, true))
    assert.is_nil(text:find("<script>", 1, true), "no inline script")
    assert.are.equal("nosniff", headers["x-content-type-options"])
    local js_status, js, js_headers = h.request("GET", srv.url .. "/app.js")
    assert.are.equal(200, js_status)
    assert.is_truthy(js_headers["content-type"]:find("javascript", 1, true))
    assert.is_truthy(js:find("/v1/connections", 1, true))
    assert.are.equal(200, (h.request("GET", srv.url .. "/app.css")))
  end)

  it("tells a key who it acts as", function()
    local status, body = srv.get("/v1/me", key)
    assert.are.equal(200, status)
    assert.are.same({user = "alice", team = "acme", role = "member", key_id = key:match("^fry_(%x+)_")}, body)
  end)

  it("exposes Prometheus metrics on loopback", function()
    srv.call(key, "sample__echo", {text = "m"})
    srv.call(key, "sample__echo", {})
    local status, _, headers, text = srv.get("/metrics")
    assert.are.equal(200, status)
    assert.is_truthy(headers["content-type"]:find("text/plain", 1, true))
    assert.is_truthy(text:find('ferry_tool_calls_total{tool="sample__echo",outcome="ok"}', 1, true))
    assert.is_truthy(text:find("# TYPE ferry_tool_call_duration_seconds histogram", 1, true))
    assert.is_truthy(text:find('ferry_tool_call_duration_seconds_bucket{tool="sample__echo",le="+Inf"}', 1, true))
    assert.is_truthy(text:find("ferry_tool_calls_in_flight 0", 1, true))
    assert.is_truthy(text:find('ferry_lua_memory_bytes{provider="sample"}', 1, true))
    assert.is_truthy(text:find('ferry_http_requests_total{route="tools_call",status="400"}', 1, true))
  end)
end)
