-- The provider kit: `ferry providers new` (its starter passes check, busted
-- and luacheck as written), `ferry providers docs` (docs/providers is what
-- the bundled providers generate), and ferry.testing against real servers
-- (the fault server, Prism), answering as the engine does for the same calls.
local h = require "helper"

package.path = h.root .. "/scripts/?.lua;" .. h.root .. "/scripts/?/init.lua;" .. package.path
local testing = require "ferry.testing"

local LPATH = h.root .. "/scripts/?.lua;" .. h.root .. "/scripts/?/init.lua"

local function ferry(args, cwd)
  if not cwd then return h.ferry(args) end
  local argv = {"sh", "-c", 'cd "$1" && shift && exec "$@"', "ferry", cwd, h.bin}
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return h.run(argv)
end

local function list_dir(dir)
  local out = {}
  local p = io.popen('ls -A "' .. dir .. '" 2>/dev/null')
  for name in p:read("*a"):gmatch("[^\n]+") do out[#out + 1] = name end
  p:close()
  table.sort(out)
  return out
end

describe("ferry providers new", function()
  local dir

  before_each(function() dir = h.tmpdir() end)

  it("writes a starter provider and spec that pass check, busted and luacheck as written", function()
    local code, out, err = ferry({"providers", "new", "acme_crm"}, dir)
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("wrote    providers/acme_crm.lua", 1, true), out)
    assert.are.same({".busted", ".luacheckrc", "providers", "spec"}, list_dir(dir))
    assert.are.same({"acme_crm_spec.lua"}, list_dir(dir .. "/spec"))

    local provider = dir .. "/providers/acme_crm.lua"
    code, out = h.ferry({"providers", "check", provider})
    assert.are.equal(0, code, out)
    assert.is_truthy(out:find("ok: acme_crm, 3 tools, 0 syncs", 1, true), out)
    local text = h.read_file(provider)
    assert.is_falsy(text:find("{{", 1, true), "every placeholder filled")
    assert.is_truthy(text:find('name = "Acme Crm"', 1, true))

    code, out, err = h.run({"sh", "-c", 'cd "$1" && lua5.1 /usr/bin/busted --lpath="$2" -o utfTerminal', "busted",
                            dir, LPATH})
    assert.are.equal(0, code, out .. err)
    assert.is_truthy(out:find("6 successes / 0 failures / 0 errors", 1, true), out)

    code, out = h.run({"sh", "-c", 'cd "$1" && luacheck --no-color providers spec', "luacheck", dir})
    assert.are.equal(0, code, out)

    -- and ferry serves it
    code, out = h.ferry({"providers", "list", "--providers", dir .. "/providers"})
    assert.are.equal(0, code, out)
    assert.is_truthy(out:find("acme_crm", 1, true), out)
  end)

  it("writes a starter that stays within luacheck's line length for the longest slug", function()
    local slug = string.rep("long_", 7) .. "slug_"   -- 40 characters
    assert.are.equal(0, (h.ferry({"providers", "new", slug, "--dir", dir})))
    assert.are.equal(0, (h.ferry({"providers", "check", dir .. "/providers/" .. slug .. ".lua"})))
    local code, out = h.run({"sh", "-c", 'cd "$1" && luacheck --no-color providers spec', "luacheck", dir})
    assert.are.equal(0, code, out)
  end)

  it("writes under --dir and keeps an existing .busted and .luacheckrc", function()
    h.write_file(dir .. "/.luacheckrc", "-- mine\n")
    local code, out, err = h.ferry({"providers", "new", "x-2", "--dir", dir})
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("kept     " .. dir .. "/.luacheckrc", 1, true), out)
    assert.are.equal("-- mine\n", h.read_file(dir .. "/.luacheckrc"))
    assert.is_truthy(h.read_file(dir .. "/providers/x-2.lua"))
    assert.is_truthy(h.read_file(dir .. "/spec/x-2_spec.lua"))
  end)

  it("refuses to overwrite a provider or its spec", function()
    assert.are.equal(0, (h.ferry({"providers", "new", "acme", "--dir", dir})))
    h.write_file(dir .. "/providers/acme.lua", "-- edited\n")
    local code, _, err = h.ferry({"providers", "new", "acme", "--dir", dir})
    assert.are.equal(1, code)
    assert.is_truthy(err:find("providers/acme.lua exists; not overwriting it", 1, true), err)
    assert.are.equal("-- edited\n", h.read_file(dir .. "/providers/acme.lua"))
    os.remove(dir .. "/providers/acme.lua")
    code, _, err = h.ferry({"providers", "new", "acme", "--dir", dir})
    assert.are.equal(1, code, "the spec is still there")
    assert.is_truthy(err:find("spec/acme_spec.lua exists", 1, true), err)
    assert.is_nil(h.read_file(dir .. "/providers/acme.lua"), "nothing written when refusing")
  end)

  it("refuses bad slugs and bad usage", function()
    for _, slug in ipairs({"Acme", "a__b", "_x", "a b", "a.b", string.rep("a", 41)}) do
      local code, _, err = h.ferry({"providers", "new", slug, "--dir", dir})
      assert.are.equal(1, code, slug)
      assert.is_truthy(err:find("not a valid slug", 1, true), err)
    end
    assert.are.equal(2, (h.ferry({"providers", "new"})))
    assert.are.equal(2, (h.ferry({"providers", "new", "a", "b"})))
    assert.are.equal(2, (h.ferry({"providers", "new", "a", "--force"})))
    local code, out = h.ferry({"providers", "new", "--help"})
    assert.are.equal(0, code)
    assert.is_truthy(out:find("usage: ferry providers new SLUG", 1, true))
    assert.are.same({}, list_dir(dir))
  end)
end)

describe("ferry providers docs", function()
  it("docs/providers is what the bundled providers generate (regenerate with `ferry providers docs`)", function()
    local out_dir = h.tmpdir() .. "/providers"
    local code, out, err = h.ferry({"providers", "docs", "--out", out_dir})
    assert.are.equal(0, code, out .. err)
    local committed = h.root .. "/docs/providers"
    local want, have = list_dir(out_dir), list_dir(committed)
    assert.are.same(want, have, "docs/providers has other files than the generator writes: run " ..
                    "`build/ferry providers docs`")
    for _, name in ipairs(want) do
      assert.are.equal(h.read_file(out_dir .. "/" .. name), h.read_file(committed .. "/" .. name),
                       "docs/providers/" .. name .. " is out of date: run `build/ferry providers docs`")
    end
  end)

  it("renders a provider's connection, tools, arguments and syncs", function()
    local dir = h.tmpdir()
    h.write_file(dir .. "/docs_demo.lua", [[
local s = require "ferry.schema"
return {
  slug = "docs_demo", name = "Docs Demo", category = "custom", description = "A provider | with a pipe.",
  base_url = "https://api.demo.test", hosts = {"api.demo.test"}, docs_url = "https://demo.test/api",
  auth = {type = "api_key", field = "key", query = "api_key", settings = {"region"},
          instructions = "Ask the demo team."},
  data_categories = {"documents"},
  tools = {
    find = {title = "Find things", description = "Find.", access = "read",
      input = s.object({
        q = s.string{"Query.", required = true, minLength = 2},
        kind = s.enum{"a", "b", description = "Kind."},
        when = s.date "Day.",
        n = s.limit{maximum = 50},
        rows = s.array(s.object{id = s.id{"Row id.", required = true}}, {"Rows.", maxItems = 3}),
      }, {["not"] = {required = {"kind", "when"}}}),
      run = function() end},
    make = {description = "Make.", access = "write", run = function() end},
  },
  syncs = {things = {every = "1h", category = "documents", description = "All things.", run = function() end}},
}
]])
    local out_dir = h.tmpdir()
    h.write_file(out_dir .. "/gone.md", "<!-- Generated by ferry providers docs from x; -->\n")
    h.write_file(out_dir .. "/notes.md", "mine\n")
    local code, out, err = h.ferry({"providers", "docs", "--out", out_dir, "--providers", dir})
    assert.are.equal(0, code, out .. err)
    assert.is_truthy(out:find("removed  " .. out_dir .. "/gone.md", 1, true), out)
    assert.is_nil(h.read_file(out_dir .. "/gone.md"), "a page of a provider that is gone is removed")
    assert.are.equal("mine\n", h.read_file(out_dir .. "/notes.md"), "other files are kept")
    local page = h.read_file(out_dir .. "/docs_demo.md")
    for _, want in ipairs({
      "# Docs Demo", "A provider \\| with a pipe.", "| API reference | https://demo.test/api |",
      "as the query parameter `api_key`", "**How to get the credential:** Ask the demo team.",
      "Settings (not secret, per connection): `region`.", '"credentials": {"key": "..."}',
      "### `docs_demo__find`", "**Find things** · read: runs at once",
      "| `q` | string, at least 2 characters | yes | Query. |",
      "| `kind` | one of `a`, `b` |  | Kind. |",
      "| `when` | string (date: YYYY-MM-DD) |  | Day. |",
      "| `n` | integer, 1–50 |  | How many to return (default 20, at most 50). Default: `20`. |",
      "| `rows` | list of objects (at most 3 items) |  | Rows. |",
      "| `rows[].id` | string, 1–255 characters | yes | Row id. |",
      "Do not give `kind` and `when` together.",
      "### `docs_demo__make`", "write: each call waits for a person's approval", "No arguments.",
      "| `things` | `1h` | documents | All things. |",
    }) do
      assert.is_truthy(page:find(want, 1, true), want .. "\n---\n" .. page)
    end
    local index = h.read_file(out_dir .. "/README.md")
    assert.is_truthy(index:find("| [Docs Demo](docs_demo.md) | custom | API key | 2 | 1 | documents |", 1, true),
                     index)
    assert.is_truthy(index:find("| [HubSpot](hubspot.md) |", 1, true), "bundled providers are in the index too")

    -- a provider that does not load is named, and the command fails
    h.write_file(dir .. "/broken.lua", "return {slug = 'broken'}\n")
    local _
    code, _, err = h.ferry({"providers", "docs", "--out", out_dir, "--providers", dir})
    assert.are.equal(1, code)
    assert.is_truthy(err:find("skipped " .. dir .. "/broken.lua", 1, true), err)
    assert.are.equal(2, (h.ferry({"providers", "docs", "--bogus"})))
  end)
end)

describe("ferry.testing against real servers", function()
  local fault, dir, provider, data_dir

  -- The same provider for the harness and for `ferry tool call`.
  local FAULTY = [[
local sdk = require "ferry.sdk"
local API = {service = "Faulty"}
return {
  slug = "faulty", name = "Faulty", category = "custom", description = "Calls the fault server.",
  base_url = "https://faulty.test", hosts = {"faulty.test"}, auth = {type = "none"},
  data_categories = {"documents"},
  tools = {
    get = {description = "GET a route.", access = "read",
      input = {type = "object", properties = {route = {type = "string"}, timeout_ms = {type = "integer"},
               q = {type = "object", additionalProperties = true}},
               required = {"route"}, additionalProperties = false},
      run = function(ctx, args)
        local body, err = sdk.request(ctx, {path = args.route, query = args.q, timeout_ms = args.timeout_ms}, API)
        if not body then return nil, err end
        return body
      end},
    shape = {description = "Validates arguments only.", access = "read",
      input = {type = "object", additionalProperties = false, required = {"name"},
        properties = {
          name = {type = "string", minLength = 2, maxLength = 4, pattern = "^[a-z]+$"},
          n = {type = "integer", minimum = 1, maximum = 10},
          r = {type = "number", exclusiveMaximum = 1, multipleOf = 0.25},
          e = {enum = {"x", "y", 3}},
          d = {type = "string", format = "date-time"},
          tags = {type = "array", items = {type = "string"}, maxItems = 2, uniqueItems = true},
          deep = {type = "object", required = {"k"}, properties = {k = {type = {"string", "null"}}},
                  additionalProperties = false},
          list = {type = "array", items = {type = "object", properties = {v = {type = "boolean"}}}},
        },
        anyOf = {{required = {"n"}}, {required = {"r"}}, {required = {"e"}}}},
      run = function() return {ok = true} end},
  },
}
]]

  setup(function()
    fault = h.start_fault()
    dir = h.tmpdir()
    data_dir = h.tmpdir() .. "/data"
    h.write_file(dir .. "/faulty.lua", FAULTY)
    provider = testing.load(dir .. "/faulty.lua")
  end)

  teardown(function() if fault then fault.stop() end end)

  -- `ferry tool call` of the same tool: the decoded answer.
  local function engine(tool, args)
    local _, out = h.ferry({"tool", "call", "faulty__" .. tool, h.json.encode(args), "--providers", dir,
                            "--base-url", "faulty=" .. fault.url, "--data", data_dir})
    return h.decode(out)
  end

  it("sends real requests to the base URL and maps what comes back as ferry does", function()
    local t = testing.new(provider, {base_url = fault.url})
    local cases = {
      {{route = "/status/429", q = {retry_after = "3"}}, "upstream_rate_limited"},
      {{route = "/status/401"}, "reconnect_required"},
      {{route = "/status/500"}, "upstream_error"},
      {{route = "/hang", timeout_ms = 300}, "upstream_timeout"},
      {{route = "/reset"}, "upstream_error"},
      {{route = "/invalid-json"}, "upstream_error"},
      {{route = "/nope"}, "upstream_error"},
    }
    for _, c in ipairs(cases) do
      local result, err = t:call("get", c[1])
      assert.is_nil(result)
      assert.are.equal(c[2], err.code, c[1].route .. ": " .. tostring(err.message))
      local want = engine("get", c[1])
      assert.are.equal(want.error.code, err.code, c[1].route)
      if err.code == "upstream_rate_limited" then
        assert.are.equal(3, err.details.retry_after)
        assert.are.equal(want.error.details.retry_after, err.details.retry_after)
      end
    end
    local result = t:call("get", {route = "/json", q = {n = "2"}})
    assert.are.same(engine("get", {route = "/json", q = {n = "2"}}).result, result)
    assert.are.equal(2, #result.items)
  end)

  it("injects the credential where auth says, as the upstream sees it", function()
    local keyed = {}
    for k, v in pairs(provider) do keyed[k] = v end
    keyed.auth = {type = "api_key", field = "token", header = "X-Api-Key", prefix = "Key "}
    local t = testing.new(keyed, {base_url = fault.url, credentials = {token = "s3cret-token"}})
    local echo = t:call("get", {route = "/echo", q = {a = "1 2", b = "x"}})
    assert.are.equal("GET", echo.method)
    assert.are.equal("Key [redacted]", echo.headers["x-api-key"], "echoed credentials are redacted")
    assert.are.equal("Key s3cret-token", t:last_request().headers["x-api-key"])
    assert.are.same({a = "1 2", b = "x"}, echo.query)
  end)

  it("validates arguments with the engine's paths and messages", function()
    local t = testing.new(provider, {responses = {}})
    local cases = {
      {}, {name = 5}, {name = "a"}, {name = "abcde"}, {name = "AB", n = 1}, {name = "ab"},
      {name = "ab", n = 0}, {name = "ab", n = 1.5}, {name = "ab", r = 1}, {name = "ab", r = 0.3},
      {name = "ab", e = "z"}, {name = "ab", e = 3, d = "yesterday"}, {name = "ab", n = 1, tags = {"a", "a"}},
      {name = "ab", n = 1, tags = {"a", "b", "c"}}, {name = "ab", n = 1, deep = {}},
      {name = "ab", n = 1, deep = {k = 1}},
      {name = "ab", n = 1, list = {{v = true}, {v = "no"}}}, {name = "ab", n = 1, other = true},
    }
    for _, args in ipairs(cases) do
      local want = engine("shape", args)
      local result, err = t:call("shape", args)
      local label = h.json.encode(args)
      if want.error then
        assert.is_nil(result, label)
        assert.are.equal(want.error.code, err.code, label)
        assert.are.equal(want.error.message, err.message, label)
        assert.are.equal(want.error.details.path, err.details.path, label)
      else
        assert.is_nil(err, label .. " " .. tostring(err and err.message))
        assert.are.same(want.result, result, label)
      end
    end
  end)

  it("records real answers once and replays them offline", function()
    local fixtures = h.tmpdir() .. "/faulty.json"
    local rec = testing.new(provider, {base_url = fault.url .. "/", fixtures = fixtures, record = true})
    local first = rec:call("get", {route = "/json", q = {n = "3"}})
    local _, err = rec:call("get", {route = "/status/404"})
    assert.are.equal(3, #first.items)
    assert.are.equal("upstream_error", err.code)
    local text = h.read_file(fixtures)
    assert.is_truthy(text:find('"key": "GET /json?n=3"', 1, true), text)

    fault.stop()
    fault = nil
    local replay = testing.new(provider, {fixtures = fixtures, record = false})
    assert.are.same(first, (replay:call("get", {route = "/json", q = {n = "3"}})))
    local _, again = replay:call("get", {route = "/status/404"})
    assert.are.same(err, again)
    assert.are.equal("https://faulty.test/json?n=3", replay.requests[1].url, "replays send nothing")
    assert.has_error(function() replay:call("get", {route = "/json", q = {n = "4"}}) end)
    fault = h.start_fault()
  end)
end)

describe("ferry.testing with Prism", function()
  it("runs a bundled provider against the API description it was written from", function()
    local prism = testing.prism(h.api_spec("hubspot/contacts.json"), {bin = h.prism_bin, dynamic = true})
    local ok, err = pcall(function()
      local t = testing.new(testing.load(h.root .. "/providers/hubspot.lua"),
                            {base_url = prism.url, credentials = {token = "pat-test"}})
      local result, cerr = t:call("search_contacts", {query = "ada", limit = 2})
      assert.is_nil(cerr, cerr and cerr.message)
      assert.is_table(result.contacts)
      assert.are.equal("Bearer pat-test", t:last_request().headers.authorization)
      result, cerr = t:call("get_contact", {contact_id = "42"})
      assert.is_nil(cerr, cerr and cerr.message)
      assert.is_string(result.id)
    end)
    prism.stop()
    assert(ok, err)
  end)
end)
