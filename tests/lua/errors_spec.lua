-- luacheck: std lua51+busted
-- ferry.errors: status mapping, provider messages, Retry-After, body-level failures.
local errors = require "ferry.errors"

-- A response as ctx.http.request gives it, with json() over a fixed value.
local function response(status, decoded, headers, raw)
  return {
    status = status,
    ok = status >= 200 and status < 300,
    headers = headers or {},
    body = raw or (decoded ~= nil and "{...}" or ""),
    json = function() return decoded end,
  }
end

describe("ferry.errors.from_response", function()
  it("returns nil for a success", function()
    assert.is_nil(errors.from_response(response(200, {results = {}})))
    assert.is_nil(errors.from_response(response(201, {id = "1"})))
    assert.is_nil(errors.from_response(response(204, nil)))
  end)

  it("works out ok from the status when the response has no ok field", function()
    local resp = response(404, {message = "gone"})
    resp.ok = nil
    assert.are.equal("upstream_error", errors.from_response(resp).code)
    resp = response(200, {})
    resp.ok = nil
    assert.is_nil(errors.from_response(resp))
  end)

  it("maps 401 and 403 to reconnect_required", function()
    for _, status in ipairs({401, 403}) do
      local err = errors.from_response(response(status, {message = "token revoked"}), {service = "HubSpot"})
      assert.are.equal("reconnect_required", err.code)
      assert.are.equal(status, err.status)
      assert.are.equal(("HubSpot rejected the credential (HTTP %d): token revoked"):format(status), err.message)
    end
  end)

  it("maps 429 to upstream_rate_limited with retry_after in seconds", function()
    local err = errors.from_response(response(429, {message = "slow down"}, {["retry-after"] = "30"}),
                                     {service = "Asana"})
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(30, err.retry_after)
    assert.are.equal(429, err.status)
    assert.are.equal("Asana is rate limiting requests (HTTP 429); retry after 30 s: slow down", err.message)
  end)

  it("keeps 429 rate limited without a usable Retry-After", function()
    local err = errors.from_response(response(429, nil, {}))
    assert.are.equal("upstream_rate_limited", err.code)
    assert.is_nil(err.retry_after)
    err = errors.from_response(response(429, nil, {["retry-after"] = "soon"}))
    assert.are.equal("upstream_rate_limited", err.code)
    assert.is_nil(err.retry_after)
  end)

  it("caps an absurd Retry-After at a day, so nothing is paused for good", function()
    local err = errors.from_response(response(429, nil, {["retry-after"] = "99999999999999999999999"}))
    assert.are.equal(86400, err.retry_after)
    assert.are.equal(86400, errors.retry_after(1e300))
    assert.are.equal(86400, errors.retry_after("Fri, 31 Dec 9999 23:59:59 GMT", 784111777))
  end)

  it("maps 503 to upstream_rate_limited only with Retry-After", function()
    local now = 784111777   -- Sun, 06 Nov 1994 08:49:37 GMT
    local err = errors.from_response(response(503, nil, {["retry-after"] = "Sun, 06 Nov 1994 08:50:37 GMT"}),
                                     {now = now})
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(60, err.retry_after)
    err = errors.from_response(response(503, {message = "maintenance"}))
    assert.are.equal("upstream_error", err.code)
    assert.is_nil(err.retry_after)
  end)

  it("maps other statuses to upstream_error with the provider's message and status", function()
    local err = errors.from_response(response(404, {errors = {{message = "project: Not a recognized ID"}}}),
                                     {service = "Asana", message = {"errors.1.message"}})
    assert.are.equal("upstream_error", err.code)
    assert.are.equal(404, err.status)
    assert.are.equal("Asana answered HTTP 404: project: Not a recognized ID", err.message)
    err = errors.from_response(response(500, nil, {}, ""), {service = "X"})
    assert.are.equal("X answered HTTP 500", err.message)
    err = errors.from_response(response(302, nil, {location = "https://elsewhere"}, ""))
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("the upstream answered HTTP 302", err.message)
  end)

  it("tries the message paths in order and skips empty and null values", function()
    local null = io.stdout   -- a userdata, as json.null is in ferry (a light userdata)
    local body = {message = "", error = {message = "inner"}, detail = "d"}
    local err = errors.from_response(response(400, body), {message = {"message", "error.message", "detail"}})
    assert.are.equal("the upstream answered HTTP 400: inner", err.message)
    err = errors.from_response(response(400, {message = null, detail = "d"}), {message = {"message", "detail"}})
    assert.are.equal("the upstream answered HTTP 400: d", err.message)
  end)

  it("uses the default message paths", function()
    assert.are.equal("the upstream answered HTTP 400: bad filter",
      errors.from_response(response(400, {message = "bad filter"})).message)
    assert.are.equal("the upstream answered HTTP 400: invalid_grant",
      errors.from_response(response(400, {error = "invalid_grant"})).message)
    assert.are.equal("the upstream answered HTTP 422: nope",
      errors.from_response(response(422, {errors = {{message = "nope"}}})).message)
  end)

  it("accepts a message function", function()
    local err = errors.from_response(response(400, {a = {b = "x"}}), {
      message = function(body, resp) return body.a.b .. "/" .. resp.status end,
    })
    assert.are.equal("the upstream answered HTTP 400: x/400", err.message)
  end)

  it("uses a short plain-text body when there is no JSON, but never HTML", function()
    local resp = response(502, nil, {}, "Bad gateway from the edge\n")
    assert.are.equal("the upstream answered HTTP 502: Bad gateway from the edge", errors.from_response(resp).message)
    resp = response(502, nil, {}, "<html><body>502</body></html>")
    assert.are.equal("the upstream answered HTTP 502", errors.from_response(resp).message)
  end)

  it("shortens long messages without splitting a UTF-8 character", function()
    local long = string.rep("é", 400)   -- 800 bytes
    local err = errors.from_response(response(400, {message = long}))
    local msg = err.message:match(": (.*)$")
    assert.is_true(#msg <= 503)
    assert.is_truthy(msg:match("…$"))
    local head = msg:sub(1, -4)
    assert.are.equal(0, #head % 2, "whole two-byte characters only")
  end)

  it("records the provider's own error code", function()
    local err = errors.from_response(response(400, {category = "VALIDATION_ERROR", message = "m"}),
                                     {code = {"category"}})
    assert.are.equal("VALIDATION_ERROR", err.upstream_code)
    err = errors.from_response(response(500, {code = -1, message = "m"}), {code = {"code"}})
    assert.are.equal("-1", err.upstream_code)
  end)

  it("lets classify override the mapping", function()
    local opts = {classify = function(_, body)
      if body and body.name == "Invalid_Key" then return "reconnect_required" end
    end}
    assert.are.equal("reconnect_required",
      errors.from_response(response(500, {name = "Invalid_Key", message = "Invalid API key"}), opts).code)
    assert.are.equal("upstream_error", errors.from_response(response(500, {name = "GeneralError"}), opts).code)
  end)

  it("flags body-level errors on a 2xx", function()
    local opts = {service = "Mandrill", body_error = errors.when("status", "error"), code = {"name"}}
    local err = errors.from_response(response(200, {status = "error", name = "ValidationError",
                                                    message = "You must specify a key value"}), opts)
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("Mandrill reported an error: You must specify a key value", err.message)
    assert.are.equal("ValidationError", err.upstream_code)
    assert.are.equal(200, err.status)
    assert.is_nil(errors.from_response(response(200, {{email = "a@b.c", status = "sent"}}), opts))
    assert.is_nil(errors.from_response(response(200, "PONG!"), opts))
  end)

  it("takes a message from body_error, and classify applies to body-level errors", function()
    local opts = {service = "Slack", body_error = function(body)
      if body.ok == false then return body.error end
    end, classify = function(_, body) if body.error == "invalid_auth" then return "reconnect_required" end end}
    local err = errors.from_response(response(200, {ok = false, error = "channel_not_found"}), opts)
    assert.are.equal("Slack reported an error: channel_not_found", err.message)
    assert.are.equal("upstream_error", err.code)
    err = errors.from_response(response(200, {ok = false, error = "invalid_auth"}), opts)
    assert.are.equal("reconnect_required", err.code)
    assert.is_nil(errors.from_response(response(200, {ok = true}), opts))
  end)

  it("does not decode the body of a success when there is no body test", function()
    local resp = response(200, nil)
    resp.json = function() error("must not be called") end
    assert.is_nil(errors.from_response(resp, {}))
  end)

  it("uses a body the caller decoded already", function()
    local resp = response(400, nil)
    resp.json = function() error("must not be called") end
    assert.are.equal("the upstream answered HTTP 400: given",
      errors.from_response(resp, {}, {message = "given"}).message)
  end)
end)

describe("ferry.errors.when", function()
  it("compares the value at a dotted path", function()
    assert.is_true(errors.when("ok", false)({ok = false}))
    assert.is_false(errors.when("ok", false)({ok = true}))
    assert.is_false(errors.when("ok", false)({}))
    assert.is_true(errors.when("result.state", "failed")({result = {state = "failed"}}))
    assert.is_false(errors.when("result.state", "failed")({result = "failed"}))
    assert.is_false(errors.when("status", "error")("PONG!"))
  end)
end)

describe("ferry.errors.retry_after", function()
  local now = 784111777   -- Sun, 06 Nov 1994 08:49:37 GMT

  it("reads delay-seconds", function()
    assert.are.equal(120, errors.retry_after("120", now))
    assert.are.equal(0, errors.retry_after("0", now))
    assert.are.equal(5, errors.retry_after(" 5 ", now))
    assert.are.equal(2, errors.retry_after("1.5", now))
    assert.are.equal(7, errors.retry_after(7, now))
  end)

  it("reads the three HTTP-date forms, relative to now", function()
    assert.are.equal(60, errors.retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now))
    assert.are.equal(3600, errors.retry_after("Sunday, 06-Nov-94 09:49:37 GMT", now))
    assert.are.equal(86400, errors.retry_after("Mon Nov  7 08:49:37 1994", now))
  end)

  it("gives 0 for a date in the past", function()
    assert.are.equal(0, errors.retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now))
  end)

  it("rejects what is neither", function()
    for _, v in ipairs({"", "soon", "-5", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 06 Foo 1994 08:49:37 GMT",
                        "Sun, 06 Nov 1994 25:49:37 GMT", {}, -1}) do
      assert.is_nil(errors.retry_after(v, now), tostring(v))
    end
    assert.is_nil(errors.retry_after(nil, now))
  end)

  it("uses the clock when now is not given", function()
    local later = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 100)
    local wait = errors.retry_after(later)
    assert.is_true(wait >= 98 and wait <= 100, tostring(wait))
  end)
end)

describe("ferry.errors.parse_http_date", function()
  it("agrees with known epochs", function()
    assert.are.equal(0, errors.parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"))
    assert.are.equal(784111777, errors.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.are.equal(951782400, errors.parse_http_date("Tue, 29 Feb 2000 00:00:00 GMT"))
    assert.are.equal(1445412480, errors.parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"))
    assert.are.equal(4102444800, errors.parse_http_date("Fri, 01 Jan 2100 00:00:00 GMT"))
  end)
end)

describe("ferry.errors.new and invalid_arguments", function()
  it("build error tables", function()
    assert.are.same({code = "upstream_error", message = "m", status = 500},
                    errors.new("upstream_error", "m", {status = 500}))
    assert.are.same({code = "invalid_arguments", message = "give a workspace", path = "$.workspace_gid"},
                    errors.invalid_arguments("give a workspace", "$.workspace_gid"))
  end)
end)

describe("ferry.errors header lookup", function()
  it("finds Retry-After whatever its case", function()
    local err = errors.from_response(response(429, nil, {["Retry-After"] = "4"}))
    assert.are.equal(4, err.retry_after)
  end)
end)
