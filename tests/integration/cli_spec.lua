-- The command line of API.md: every command's --help, usage errors exit 2,
-- user errors exit 1 with a message, and the commands do their work.
local h = require "helper"

describe("the ferry command line", function()
  local data

  setup(function() data = h.tmpdir() .. "/data" end)

  it("prints help for every command and exits 0", function()
    for _, args in ipairs({{"--help"}, {"serve", "--help"}, {"keys", "--help"}, {"providers", "--help"},
                           {"tool", "--help"}, {"migrate", "--help"}}) do
      local code, out = h.ferry(args)
      assert.are.equal(0, code, table.concat(args, " "))
      assert.is_truthy(out:find("usage", 1, true), table.concat(args, " "))
    end
  end)

  it("exits 2 on usage errors", function()
    for _, args in ipairs({{}, {"frobnicate"}, {"keys"}, {"keys", "create"}, {"keys", "create", "--user", "a"},
                           {"keys", "create", "--user", "a", "--team", "t", "--role", "owner"},
                           {"providers"}, {"tool", "call"}, {"serve", "--bogus"}, {"serve", "--max-body", "x"}}) do
      local code = h.ferry(args)
      assert.are.equal(2, code, table.concat(args, " "))
    end
  end)

  it("migrates a new data folder and reports nothing to do the second time", function()
    local code, out = h.ferry({"migrate", "--data", data})
    assert.are.equal(0, code)
    assert.is_truthy(out:find("migrated schema from version 0", 1, true), out)
    code, out = h.ferry({"migrate", "--data", data})
    assert.are.equal(0, code)
    assert.is_truthy(out:find("nothing to do", 1, true), out)
  end)

  it("creates keys shown once, and revokes them", function()
    local code, out, err = h.ferry({"keys", "create", "--user", "carol", "--team", "acme", "--role", "admin",
                                    "--data", data})
    assert.are.equal(0, code)
    local id = out:match("^fry_(%x+)_[%w_%-]+\n$")
    assert.is_string(id, out)
    assert.is_truthy(err:find("admin", 1, true))
    assert.is_nil(err:find(out:sub(1, -2), 1, true), "the key is printed on stdout only")
    local rows = h.sql(data, "SELECT key_id, hex(secret_sha256) FROM api_keys WHERE key_id = '" .. id .. "'")
    assert.are.equal(1, #rows)
    assert.are.equal(64, #rows[1][2])
    assert.are.equal(0, (h.ferry({"keys", "revoke", id, "--data", data})))
    local _
    code, _, err = h.ferry({"keys", "revoke", id, "--data", data})
    assert.are.equal(1, code)
    assert.is_truthy(err:find("no active API key", 1, true))
  end)

  it("checks provider files, listing every problem and exiting 1 for broken ones", function()
    local code, out = h.ferry({"providers", "check", "tests/providers/sample.lua"})
    assert.are.equal(0, code)
    assert.is_truthy(out:find("ok: sample, 5 tools", 1, true), out)

    code, out = h.ferry({"providers", "check", "tests/providers-broken/contract.lua"})
    assert.are.equal(1, code)
    for _, expected in ipairs({"unknown field 'colour'", "slug: 'Not A Slug'", "name: must be",
                               "category: 'nonsense'", "hosts[2]", "data_categories[2]", "auth.type",
                               "base_url: its host 'example.com'", "tools.no_run.run",
                               "unsupported keyword 'wat'", "minimum must be a number",
                               "unknown field 'acess'", "not \"delete\"", "tools.bad name!",
                               "root schema must have type = \"object\"", "syncs.s.every"}) do
      assert.is_truthy(out:find(expected, 1, true), "missing problem: " .. expected .. "\n" .. out)
    end

    code, out = h.ferry({"providers", "check", "tests/providers-broken/syntax.lua"})
    assert.are.equal(1, code)
    assert.is_truthy(out:find("syntax.lua:5:", 1, true), out)

    code, out = h.ferry({"providers", "check", "--script-cpu-ms", "200", "tests/providers-broken/loops.lua"})
    assert.are.equal(1, code)
    assert.is_truthy(out:find("CPU limit", 1, true), out)

    code, out = h.ferry({"providers", "check", "tests/providers-broken/returns_string.lua"})
    assert.are.equal(1, code)
    assert.is_truthy(out:find("must return a table", 1, true), out)
  end)

  it("lists loaded providers and the ones it skipped", function()
    local code, out = h.ferry({"providers", "list", "--providers", "tests/providers",
                               "--providers", "tests/providers-broken", "--script-cpu-ms", "200"})
    assert.are.equal(0, code)
    assert.is_truthy(out:match("sample%s+developer%s+none%s+5 tools"), out)
    assert.is_truthy(out:find("(skipped)", 1, true), out)
    assert.is_truthy(out:find("tests/providers-broken/syntax.lua", 1, true), out)
  end)

  it("runs a tool in-process and prints its JSON result", function()
    local code, out = h.ferry({"tool", "call", "sample__echo", '{"text":"cli"}', "--providers", "tests/providers",
                               "--data", data})
    assert.are.equal(0, code)
    assert.are.equal("cli", h.json.decode(out).result.text)
  end)

  it("prints the error JSON and exits 1 when a tool call fails", function()
    local cases = {
      {{"sample__echo", '{"text":5}'}, "invalid_arguments"},
      {{"sample__nope", "{}"}, "unknown_tool"},
      {{"sample__echo", "{not json"}, "bad_request"},
      {{"misbehave__raise", "{}"}, "script_error"},
    }
    for _, c in ipairs(cases) do
      local code, out = h.ferry({"tool", "call", c[1][1], c[1][2], "--providers", "tests/providers", "--data", data})
      assert.are.equal(1, code)
      assert.are.equal(c[2], h.json.decode(out).error.code)
    end
  end)

  it("runs a tool as a given user, and refuses an unknown one", function()
    h.ferry({"keys", "create", "--user", "dave", "--team", "acme", "--data", data})
    local code = h.ferry({"tool", "call", "sample__echo", '{"text":"x"}', "--providers", "tests/providers",
                          "--data", data, "--user", "dave", "--team", "acme"})
    assert.are.equal(0, code)
    local out
    code, out = h.ferry({"tool", "call", "sample__echo", '{"text":"x"}', "--providers", "tests/providers",
                         "--data", data, "--user", "nobody", "--team", "acme"})
    assert.are.equal(1, code)
    assert.are.equal("not_found", h.json.decode(out).error.code)
  end)
end)
