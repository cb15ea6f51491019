-- Tests of providers/{{slug}}.lua. Run them with `busted` in this folder.
--
-- ferry.testing loads the provider as ferry does and runs its tools in this
-- process: arguments are validated against the tool's input schema, the
-- credential is injected as `auth` says, errors come back as ferry's
-- {code, message, details}. Here the API's answers are canned (no network);
-- give testing.new a base_url to test against Prism serving the API's
-- OpenAPI description or against the API itself, and a fixtures file to
-- record real answers once and replay them offline (docs/writing-a-provider.md).
local testing = require "ferry.testing"

describe("{{slug}}", function()
  local provider = testing.load("providers/{{slug}}.lua")

  -- A harness whose requests are answered, in order, by `responses`.
  local function harness(responses)
    return testing.new(provider, {credentials = {token = "test-token"}, responses = responses})
  end

  it("lists items page after page up to the limit, and says where to continue", function()
    local h = harness{
      {status = 200, json = {items = {{id = "1", name = "One"}, {id = "2", name = "Two"}}, next_cursor = "c2"}},
      {status = 200, json = {items = {{id = "3", name = "Three"}}, next_cursor = "c3"}},
    }
    local result, err = h:call("list_items", {query = "o", limit = 3})
    assert.is_nil(err)
    assert.are.same({{id = "1", name = "One"}, {id = "2", name = "Two"}, {id = "3", name = "Three"}}, result.items)
    assert.are.equal("c3", result.next_cursor)

    assert.are.equal(2, #h.requests)
    local first, second = h.requests[1], h.requests[2]
    assert.are.equal("GET", first.method)
    assert.are.equal("/v1/items", first.path)
    assert.are.same({q = "o", limit = "3"}, first.query)
    assert.are.equal("Bearer test-token", first.headers.authorization)
    assert.are.same({q = "o", cursor = "c2", limit = "1"}, second.query, "asks only for what is left")
  end)

  it("rejects invalid arguments before any request", function()
    local h = harness{}
    local _, err = h:call("list_items", {limit = 0})
    assert.are.equal("invalid_arguments", err.code)
    assert.are.equal("$.limit", err.details.path)
    _, err = h:call("list_items", {colour = "red"})
    assert.are.equal("invalid_arguments", err.code)
    _, err = h:call("create_item", {})
    assert.are.equal("invalid_arguments", err.code)
    assert.are.same({}, h.requests)
  end)

  it("reads one item, its id percent-encoded into the path", function()
    local h = harness{{status = 200, json = {id = "a/b", name = "Slashed", notes = testing.json.null}}}
    local result, err = h:call("get_item", {id = "a/b"})
    assert.is_nil(err)
    assert.are.same({id = "a/b", name = "Slashed"}, result)
    assert.are.equal("/v1/items/a%2Fb", h:last_request().path)
  end)

  it("creates an item with a JSON body", function()
    local h = harness{{status = 201, json = {id = "9", name = "New"}}}
    local result, err = h:call("create_item", {name = "New", notes = "from the spec"})
    assert.is_nil(err)
    assert.are.equal("9", result.id)
    local sent = h:last_request()
    assert.are.equal("POST", sent.method)
    assert.are.same({name = "New", notes = "from the spec"}, sent.json)
  end)

  it("turns the API's errors into ferry's codes", function()
    local h = harness{
      {status = 429, headers = {["Retry-After"] = "30"}, json = {error = {message = "Slow down"}}},
      {status = 401, json = {error = {message = "Invalid token", code = "unauthorized"}}},
      {status = 404, json = {error = {message = "No such item", code = "not_found"}}},
      {error = "upstream_timeout"},
    }
    local _, err = h:call("get_item", {id = "1"})
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(30, err.details.retry_after)
    _, err = h:call("get_item", {id = "1"})
    assert.are.equal("reconnect_required", err.code)
    _, err = h:call("get_item", {id = "1"})
    assert.are.equal("upstream_error", err.code)
    assert.are.equal("{{name}} answered HTTP 404: No such item", err.message)
    assert.are.equal("not_found", err.details.upstream_code)
    _, err = h:call("get_item", {id = "1"})
    assert.are.equal("upstream_timeout", err.code)
  end)

  it("checks a new connection and names its account", function()
    local h = harness{{status = 200, json = {name = "Ada Lovelace"}}}
    local result, err = h:check()
    assert.is_nil(err)
    assert.are.equal("Ada Lovelace", result.account_label)
    assert.are.equal("/v1/me", h:last_request().path)
  end)
end)
