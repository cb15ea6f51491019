-- luacheck: std lua51+busted
-- ferry.testing: the in-process harness for provider specs (no network here;
-- tests/integration/kit_spec.lua drives it against real servers).
local testing = require "ferry.testing"

local dir
local function write(name, text)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(text)
  f:close()
  return dir .. "/" .. name
end

local PROVIDER = [[
local sdk = require "ferry.sdk"
local helper = require "acme_helper"
local API = {service = "Acme"}
return {
  slug = "acme", name = "Acme", category = "custom", description = "Test provider.",
  base_url = "https://api.acme.test/v1", hosts = {"api.acme.test"},
  auth = {type = "api_key", field = "token", header = "Authorization", prefix = "Bearer "},
  data_categories = {"documents"},
  tools = {
    get = {description = "Get.", access = "read",
      input = {type = "object", properties = {id = {type = "string", minLength = 1}}, required = {"id"},
               additionalProperties = false},
      run = function(ctx, args)
        local body, err = sdk.request(ctx, {path = sdk.http.path("/things/{id}", args), query = {full = true}}, API)
        if not body then return nil, err end
        return {id = body.id, shout = helper.shout(body.name or ""), list = sdk.data.array()}
      end},
    far = {description = "Far.", access = "read",
      run = function(ctx) return ctx.http.request{url = "https://elsewhere.test/x"} end},
    fails = {description = "Fails.", access = "write",
      input = {type = "object", properties = {how = {type = "string"}}},
      run = function(_, args)
        if args.how == "string" then return nil, "plain words" end
        if args.how == "custom" then return nil, {code = "no_such_thing", message = "gone", extra = 1} end
        if args.how == "raise" then error("broken here") end
        if args.how == "raise_table" then error({code = "upstream_timeout", message = "slow"}) end
        if args.how == "global" then return io.open("x") end
        if args.how == "function" then return {f = function() end} end
        return {ok = true}
      end},
    remember = {description = "Store.", access = "write",
      run = function(ctx)
        local n = (ctx.store.get("n") or 0) + 1
        ctx.store.set("n", n)
        ctx.log.info("counted", {n = n})
        return {n = n, user = ctx.caller.user, settings = ctx.connection.settings}
      end},
  },
}
]]

describe("ferry.testing", function()
  local provider

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    write("acme_helper.lua", "return {shout = function(s) return s:upper() end}\n")
    provider = testing.load(write("acme.lua", PROVIDER))
  end)

  teardown(function() os.execute("rm -rf " .. dir) end)

  it("loads a provider with its own modules and the SDK", function()
    assert.are.equal("acme", provider.slug)
    assert.is_function(provider.tools.get.run)
  end)

  it("refuses a file that breaks the contract, naming the problems", function()
    local path = write("broken.lua", 'return {slug = "other", name = "x", tools = {t = {access = "maybe"}}}\n')
    local ok, err = pcall(testing.load, path)
    assert.is_false(ok)
    assert.truthy(err:find("slug: 'other' does not match the file name 'broken.lua'", 1, true), err)
    assert.truthy(err:find("tools.t.access", 1, true), err)
    assert.truthy(err:find("category: required", 1, true), err)
  end)

  it("runs a tool with the credential injected and records the request", function()
    local h = testing.new(provider, {credentials = {token = "secret-123"},
                                     responses = {{status = 200, json = {id = "a b", name = "Ada"}}}})
    local result, err = h:call("get", {id = "a b"})
    assert.is_nil(err)
    assert.are.same({id = "a b", shout = "ADA", list = {}}, result)
    assert.is_true(testing.json.is_array(result.list), "JSON arrays stay arrays")
    local sent = h:last_request()
    assert.are.equal("GET", sent.method)
    assert.are.equal("https://api.acme.test/v1/things/a%20b?full=true", sent.url)
    assert.are.equal("/v1/things/a%20b", sent.path)
    assert.are.same({full = "true"}, sent.query)
    assert.are.equal("Bearer secret-123", sent.headers.authorization)
  end)

  it("injects query, body, basic and oauth2 credentials as ferry does", function()
    local function with_auth(auth, creds, reply)
      local p = {slug = "x", base_url = "http://h.test", hosts = {"h.test"}, auth = auth, tools = {
        t = {access = "read", description = "t", run = function(ctx)
          return ctx.http.request{method = "POST", path = "/p", json = {a = 1}}
        end}}}
      local h = testing.new(p, {credentials = creds, responses = {reply or {status = 200, body = "ok"}}})
      h:call("t", {})
      return h:last_request()
    end
    local sent = with_auth({type = "api_key", field = "key", query = "api_key"}, {key = "k1"})
    assert.are.equal("k1", sent.query.api_key)
    sent = with_auth({type = "api_key", field = "key", body = "key"}, {key = "k2"})
    assert.are.same({a = 1, key = "k2"}, sent.json)
    sent = with_auth({type = "basic"}, {username = "ada", password = "pw"})
    assert.are.equal("Basic YWRhOnB3", sent.headers.authorization)
    sent = with_auth({type = "oauth2"}, {access_token = "at"})
    assert.are.equal("Bearer at", sent.headers.authorization)
  end)

  it("redacts a credential the upstream echoes", function()
    local h = testing.new(provider, {credentials = {token = "secret-123"}, respond = function(req)
      return {status = 200, json = {id = req.headers.authorization, name = "x"}}
    end})
    local result = h:call("get", {id = "1"})
    assert.are.equal("Bearer [redacted]", result.id)
  end)

  it("validates arguments against the input schema before running", function()
    local h = testing.new(provider, {responses = {}})
    local _, err = h:call("get", {})
    assert.are.same({code = "invalid_arguments", message = "$: missing required property 'id'",
                     details = {path = "$", reason = "missing required property 'id'"}}, err)
    _, err = h:call("get", {id = "x", extra = 1})
    assert.are.equal("$: property 'extra' is not allowed", err.message)
    _, err = h:call("far", {anything = 1})
    assert.are.equal("invalid_arguments", err.code, "no input: no arguments")
    _, err = h:call("nope", {})
    assert.are.equal("unknown_tool", err.code)
    assert.are.same({}, h.requests)
  end)

  it("maps errors as ferry does", function()
    local h = testing.new(provider, {responses = {}})
    local _, err = h:call("fails", {how = "string"})
    assert.are.same({code = "upstream_error", message = "plain words", details = {}}, err)
    _, err = h:call("fails", {how = "custom"})
    assert.are.same({code = "upstream_error", message = "gone", details = {code = "no_such_thing", extra = 1}}, err)
    _, err = h:call("fails", {how = "raise"})
    assert.are.equal("script_error", err.code)
    assert.are.equal(dir .. "/acme.lua", err.details.file)
    assert.is_number(err.details.line)
    _, err = h:call("fails", {how = "raise_table"})
    assert.are.same({code = "upstream_timeout", message = "slow", details = {}}, err)
    _, err = h:call("fails", {how = "global"})
    assert.are.equal("script_error", err.code)
    assert.truthy(err.message:find("undeclared global 'io'", 1, true), err.message)
    _, err = h:call("fails", {how = "function"})
    assert.are.equal("script_error", err.code)
    assert.truthy(err.message:find("$.f", 1, true), err.message)
    assert.are.same({ok = true}, (h:call("fails", {})))
  end)

  it("maps upstream statuses through the SDK, and fake transport errors", function()
    local h = testing.new(provider, {responses = {
      {status = 429, headers = {["Retry-After"] = "9"}, json = {message = "slow"}},
      {error = "upstream_timeout"},
      {status = 200, body = "<html>"},
    }})
    local _, err = h:call("get", {id = "1"})
    assert.are.same({code = "upstream_rate_limited", message = "Acme is rate limiting requests (HTTP 429); retry " ..
                     "after 9 s: slow", details = {status = 429, retry_after = 9}}, err)
    _, err = h:call("get", {id = "1"})
    assert.are.equal("upstream_timeout", err.code)
    _, err = h:call("get", {id = "1"})
    assert.are.equal("upstream_error", err.code)
    assert.has_error(function() h:call("get", {id = "1"}) end,
                     "ferry.testing: no fake response left for request 4 " ..
                     "(GET https://api.acme.test/v1/things/1?full=true)")
  end)

  it("refuses hosts the provider did not declare", function()
    local h = testing.new(provider, {responses = {{status = 200}}})
    local _, err = h:call("far", {})
    assert.are.equal("egress_denied", err.code)
  end)

  it("points the provider at another base URL and allows its host", function()
    local h = testing.new(provider, {base_url = "http://127.0.0.1:9", respond = function()
      return {status = 200, json = {id = "1"}}
    end})
    h:call("get", {id = "1"})
    assert.are.equal("http://127.0.0.1:9/things/1?full=true", h:last_request().url)
  end)

  it("gives tools a ctx with store, log, caller and connection settings", function()
    local h = testing.new(provider, {settings = {workspace = "w1"}, responses = {}})
    assert.are.same({n = 1, user = "tester", settings = {workspace = "w1"}}, (h:call("remember")))
    assert.are.equal(2, h:call("remember").n)
    assert.are.equal("counted", h.logs[1].msg)
    assert.are.same({n = 2}, h.logs[2].fields)
  end)

  it("replays recorded answers offline, and says how to record a missing one", function()
    local fixtures = write("acme_fixtures.json", testing.json.encode({interactions = {
      {request = {method = "GET", path = "/things/1", key = "GET /things/1?full=true"},
       response = {status = 200, headers = {["content-type"] = "application/json"}, body = '{"id":"1","name":"x"}'}},
    }}))
    local h = testing.new(provider, {fixtures = fixtures, record = false})
    assert.are.same({id = "1", shout = "X", list = {}}, (h:call("get", {id = "1"})))
    assert.are.same({id = "1", shout = "X", list = {}}, (h:call("get", {id = "1"})), "replays again")
    assert.has_error(function() h:call("get", {id = "2"}) end,
      "ferry.testing: no recorded response for GET /things/2?full=true in " .. fixtures ..
      "; record it with FERRY_RECORD=1")
    assert.has_error(function() testing.new(provider, {fixtures = fixtures, record = true}) end)
  end)

  it("encodes and decodes JSON like ferry: arrays stay arrays, null is a sentinel", function()
    local v = testing.json.decode('{"a":[],"b":null,"c":[1,2.5,"x"],"d":{"e":true}}')
    assert.is_true(testing.json.is_array(v.a))
    assert.are.equal(testing.json.null, v.b)
    assert.are.equal('{"a":[],"b":null,"c":[1,2.5,"x"],"d":{"e":true}}', testing.json.encode(v))
    assert.are.equal('"\\u00e9\\n"', testing.json.encode("\195\169\n"):gsub("\195\169", "\\u00e9"))
    local text, err = testing.json.encode({1, nil, 3})
    assert.is_nil(text)
    assert.truthy(err:find("holes", 1, true))
    assert.is_nil((testing.json.decode("{")))
    assert.are.equal("é", testing.json.decode('"\\u00e9"'))
  end)
end)
