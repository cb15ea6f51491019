-- luacheck: std lua51+busted
-- ferry.http with a fake ctx: what reaches ctx.http.request and what the
-- provider gets back.
local http = require "ferry.http"

local function fake_ctx(resp, err)
  local ctx = {sent = {}}
  ctx.http = {request = function(req)
    ctx.sent[#ctx.sent + 1] = req
    return resp, err
  end}
  return ctx
end

local function response(status, body, decoded, headers)
  return {
    status = status, ok = status >= 200 and status < 300, headers = headers or {}, body = body,
    json = function()
      if decoded == nil then return nil, {code = "upstream_error", message = "invalid JSON at line 1"} end
      return decoded
    end,
  }
end

describe("ferry.http.escape and path", function()
  it("percent-encodes all but unreserved characters", function()
    assert.are.equal("a-b_c.d~e", http.escape("a-b_c.d~e"))
    assert.are.equal("ada%40example.com", http.escape("ada@example.com"))
    assert.are.equal("..%2F..%2Fadmin%3Fx%3D1%23f", http.escape("../../admin?x=1#f"))
    assert.are.equal("%C3%A9%20", http.escape("é "))
    assert.are.equal("42", http.escape(42))
  end)

  it("fills a template", function()
    assert.are.equal("/projects/1331/tasks", http.path("/projects/{project_gid}/tasks", {project_gid = "1331"}))
    assert.are.equal("/a/x%2Fy/b/2", http.path("/a/{one}/b/{two}", {one = "x/y", two = 2}))
  end)

  it("raises for a missing value", function()
    assert.has_error(function() http.path("/a/{id}", {}) end, nil)
    assert.has_error(function() http.path("/a/{id}", {id = io.stdout}) end, nil)
  end)
end)

describe("ferry.http.request", function()
  it("passes the request through and returns the decoded body and the response", function()
    local resp = response(200, '{"a":1}', {a = 1})
    local ctx = fake_ctx(resp)
    local req = {method = "POST", path = "/x", json = {q = 1}}
    local body, r = http.request(ctx, req, {service = "X"})
    assert.are.same({a = 1}, body)
    assert.are.equal(resp, r)
    assert.are.equal(req, ctx.sent[1])
  end)

  it("returns the transport's error unchanged", function()
    local failure = {code = "upstream_timeout", message = "deadline passed"}
    local body, err = http.request(fake_ctx(nil, failure), {path = "/"})
    assert.is_nil(body)
    assert.are.equal(failure, err)
  end)

  it("maps error statuses through ferry.errors", function()
    local body, err = http.request(fake_ctx(response(401, '{"message":"bad token"}', {message = "bad token"})),
                                   {path = "/"}, {service = "HubSpot"})
    assert.is_nil(body)
    assert.are.equal("reconnect_required", err.code)
    assert.are.equal("HubSpot rejected the credential (HTTP 401): bad token", err.message)
  end)

  it("gives an empty table for an empty 2xx body", function()
    local body, resp = http.request(fake_ctx(response(204, "")), {path = "/"})
    assert.are.same({}, body)
    assert.are.equal(204, resp.status)
  end)

  it("reads a JSON null body as empty", function()
    local body = http.request(fake_ctx(response(200, "null", io.stdout)), {path = "/"})
    assert.are.same({}, body)
  end)

  it("fails a 2xx whose body is not JSON", function()
    local body, err = http.request(fake_ctx(response(200, "<html>", nil)), {path = "/"}, {service = "Notion"})
    assert.is_nil(body)
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("Notion answered HTTP 200 with a body that is not JSON (invalid JSON at line 1)", err.message)
  end)

  it("applies body-level error tests", function()
    local errors = require "ferry.errors"
    local decoded = {status = "error", message = "Invalid API key", name = "Invalid_Key"}
    local _, err = http.request(fake_ctx(response(200, "{}", decoded)), {path = "/"},
                                {service = "Mandrill", body_error = errors.when("status", "error")})
    assert.are.equal("Mandrill reported an error: Invalid API key", err.message)
  end)
end)

describe("ferry.sdk", function()
  it("gathers the modules", function()
    local sdk = require "ferry.sdk"
    assert.are.equal(require "ferry.errors", sdk.errors)
    assert.are.equal(require "ferry.paginate", sdk.paginate)
    assert.are.equal(require "ferry.schema", sdk.schema)
    assert.are.equal(require "ferry.data", sdk.data)
    assert.are.equal(http.request, sdk.request)
  end)
end)
