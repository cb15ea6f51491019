-- luacheck: std lua51+busted
-- ferry.errors presets: Slack's ok:false, QuickBooks' Fault, Google's error object, GraphQL's errors.
local errors = require "ferry.errors"

local function response(status, body, headers)
  return {status = status, ok = status >= 200 and status < 300, headers = headers or {},
          body = body and "json" or "", json = function() return body end}
end

describe("ferry.errors.slack", function()
  local API = errors.slack()

  it("passes ok:true and maps ok:false to upstream_error with Slack's code", function()
    assert.is_nil(errors.from_response(response(200, {ok = true, channels = {}}), API))
    local err = errors.from_response(response(200, {ok = false, error = "channel_not_found"}), API)
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("Slack reported an error: channel_not_found", err.message)
    assert.are.equal("channel_not_found", err.upstream_code)
  end)

  it("maps auth errors to reconnect_required", function()
    for _, code in ipairs({"invalid_auth", "not_authed", "token_revoked", "missing_scope", "account_inactive"}) do
      local err = errors.from_response(response(200, {ok = false, error = code}), API)
      assert.are.equal("reconnect_required", err.code, code)
      assert.are.equal("Slack rejected the credential: " .. code, err.message)
    end
  end)

  it("maps HTTP 429 with Retry-After, and ratelimited in the body", function()
    local err = errors.from_response(response(429, {ok = false, error = "ratelimited"}, {["retry-after"] = "30"}), API)
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(30, err.retry_after)
    err = errors.from_response(response(200, {ok = false, error = "ratelimited"}, {["retry-after"] = "5"}), API)
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(5, err.retry_after)
    assert.are.equal("Slack is rate limiting requests; retry after 5 s: ratelimited", err.message)
  end)

  it("adds Slack's detail and takes overrides", function()
    local err = errors.from_response(response(200, {ok = false, error = "invalid_arguments",
      response_metadata = {messages = {"[ERROR] missing required field: channel"}}}),
      errors.slack{service = "Acme Slack"})
    assert.are.equal("Acme Slack reported an error: invalid_arguments ([ERROR] missing required field: channel)",
                     err.message)
  end)
end)

describe("ferry.errors.quickbooks", function()
  local API = errors.quickbooks()
  local function fault(kind, code, message, detail)
    return {Fault = {Error = {{Message = message, Detail = detail, code = code, element = ""}}, type = kind},
            time = "2024-05-01T10:00:00.000-07:00"}
  end

  it("maps a ValidationFault to upstream_error with its message, detail and code", function()
    local err = errors.from_response(response(400, fault("ValidationFault", "610", "Object Not Found",
      "Something you're trying to use has been made inactive.")), API)
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("QuickBooks answered HTTP 400: Object Not Found: Something you're trying to use has been " ..
                     "made inactive.", err.message)
    assert.are.equal("610", err.upstream_code)
  end)

  it("maps AUTHENTICATION and AuthorizationFault to reconnect_required", function()
    local err = errors.from_response(response(401, fault("AUTHENTICATION", "3200",
      "message=AuthenticationFailed; errorCode=003200; statusCode=401")), API)
    assert.are.equal("reconnect_required", err.code)
    err = errors.from_response(response(403, fault("AuthorizationFault", "003100", "ApplicationAuthorizationFailed")),
                               API)
    assert.are.equal("reconnect_required", err.code)
  end)

  it("finds a Fault inside a 200 and maps throttling", function()
    local err = errors.from_response(response(200, fault("SystemFault", "10000", "An application error has occurred")),
                                     API)
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("QuickBooks reported an error: An application error has occurred", err.message)
    assert.is_nil(errors.from_response(response(200, {QueryResponse = {}}), API))
    err = errors.from_response(response(429, fault("ThrottleExceeded", "003001", "ThrottleExceeded")), API)
    assert.are.equal("upstream_rate_limited", err.code)
  end)

  it("reads a plain-text error without a Fault", function()
    local resp = response(500, nil)
    resp.body = "Internal failure"
    resp.json = function() return nil, "not JSON" end
    assert.are.equal("QuickBooks answered HTTP 500: Internal failure", errors.from_response(resp, API).message)
  end)
end)

describe("ferry.errors.google", function()
  local API = errors.google{service = "Gmail"}
  local function google_error(code, status, reason, message)
    return {error = {code = code, message = message, status = status,
                     errors = {{reason = reason, domain = "global", message = message}}}}
  end

  it("maps a refused credential or scope to reconnect_required", function()
    local err = errors.from_response(response(401, google_error(401, "UNAUTHENTICATED", "authError",
      "Request had invalid authentication credentials.")), API)
    assert.are.equal("reconnect_required", err.code)
    assert.are.equal("Gmail rejected the credential (HTTP 401): Request had invalid authentication credentials.",
                     err.message)
    err = errors.from_response(response(403, google_error(403, "PERMISSION_DENIED", "insufficientPermissions",
      "Request had insufficient authentication scopes.")), API)
    assert.are.equal("reconnect_required", err.code)
    assert.are.equal("insufficientPermissions", err.upstream_code)
  end)

  it("maps quota 403s to upstream_rate_limited, by reason or by status", function()
    for _, reason in ipairs({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}) do
      local err = errors.from_response(response(403, google_error(403, "PERMISSION_DENIED", reason, "Slow down")),
                                       API)
      assert.are.equal("upstream_rate_limited", err.code, reason)
      assert.are.equal(reason, err.upstream_code)
    end
    local err = errors.from_response(response(403, {error = {code = 403, status = "RESOURCE_EXHAUSTED",
                                                             message = "Quota exceeded"}},
                                              {["retry-after"] = "7"}), API)
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(7, err.retry_after)
    assert.are.equal("RESOURCE_EXHAUSTED", err.upstream_code)
  end)

  it("maps an API not enabled for the client to upstream_error, not to a reconnect", function()
    local err = errors.from_response(response(403, google_error(403, "PERMISSION_DENIED", "accessNotConfigured",
      "Gmail API has not been used in project 123 before or it is disabled.")), API)
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("Gmail answered HTTP 403: Gmail API has not been used in project 123 before or it is disabled.",
                     err.message)
    err = errors.from_response(response(403, {error = {code = 403, status = "FAILED_PRECONDITION",
                                                       message = "Mail service not enabled"}}), API)
    assert.are.equal("upstream_error", err.code)
  end)

  it("maps other statuses as usual, with Google's message and the first reason", function()
    local err = errors.from_response(response(404, google_error(404, "NOT_FOUND", "notFound", "Not Found")), API)
    assert.are.equal("upstream_error", err.code)
    assert.are.equal(404, err.status)
    assert.are.equal("Gmail answered HTTP 404: Not Found", err.message)
    assert.are.equal("notFound", err.upstream_code)
    err = errors.from_response(response(429, google_error(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "x")),
                               errors.google())
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal("Google is rate limiting requests (HTTP 429): x", err.message)
  end)
end)

describe("ferry.errors.graphql", function()
  local API = errors.graphql{service = "Fireflies"}

  it("passes data without errors", function()
    assert.is_nil(errors.from_response(response(200, {data = {user = {id = "1"}}}), API))
    assert.is_nil(errors.from_response(response(200, {data = {}, errors = {}}), API))
  end)

  it("fails on errors, joining up to three messages", function()
    local err = errors.from_response(response(200, {data = nil, errors = {
      {message = "Cannot query field \"x\"", extensions = {code = "GRAPHQL_VALIDATION_FAILED"}},
      {message = "second"}, {message = "third"}, {message = "fourth"},
    }}), API)
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("Fireflies reported an error: Cannot query field \"x\"; second; third; (1 more)", err.message)
    assert.are.equal("GRAPHQL_VALIDATION_FAILED", err.upstream_code)
  end)

  it("maps auth and rate limit codes, with the delay from extensions", function()
    local err = errors.from_response(response(200, {errors = {{message = "Invalid API key",
      extensions = {code = "UNAUTHENTICATED"}}}}), API)
    assert.are.equal("reconnect_required", err.code)
    err = errors.from_response(response(200, {errors = {{message = "Complexity budget exhausted",
      extensions = {code = "ComplexityException", retry_in_seconds = 12}}}}), API)
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(12, err.retry_after)
    err = errors.from_response(response(200, {errors = {{message = "Too many", extensions = {status = 429}}}},
                                        {["retry-after"] = "3"}), API)
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(3, err.retry_after)
  end)

  it("maps HTTP statuses as usual, with the GraphQL message", function()
    local err = errors.from_response(response(401, {errors = {{message = "Unauthorized"}}}), API)
    assert.are.equal("reconnect_required", err.code)
    assert.are.equal("Fireflies rejected the credential (HTTP 401): Unauthorized", err.message)
    err = errors.from_response(response(500, {error_message = "Internal", error_code = "X"}), API)
    assert.are.equal("Fireflies answered HTTP 500: Internal", err.message)
  end)

  it("lets partial answers through when asked, and adds codes", function()
    local partial = errors.graphql{partial = true, auth_codes = {"invalid_api_key"}}
    assert.is_nil(errors.from_response(response(200, {data = {a = 1}, errors = {{message = "one field failed"}}}),
                                       partial))
    assert.is_table(errors.from_response(response(200, {errors = {{message = "all failed"}}}), partial))
    local err = errors.from_response(response(200, {errors = {{message = "bad", code = "invalid_api_key"}}}), partial)
    assert.are.equal("reconnect_required", err.code)
    assert.is_nil(partial.auth_codes)
  end)
end)

describe("ferry.errors classify with extra fields", function()
  it("adds the fields classify returns, retry_after included", function()
    local err = errors.from_response(response(400, {message = "slow"}), {classify = function()
      return "upstream_rate_limited", {retry_after = 9, hint = "x"}
    end})
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(9, err.retry_after)
    assert.are.equal("x", err.hint)
  end)
end)
