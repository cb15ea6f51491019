-- luacheck: std lua51+busted
local data = require "ferry.data"

local null = io.stdout   -- a userdata, as json.null is in ferry

describe("ferry.data.get", function()
  local body = {
    paging = {next = {after = "NTI1"}},
    errors = {{message = "first"}, {message = "second"}},
    ["1"] = "string key",
    gone = null,
    list = {"a", "b"},
  }

  it("follows dotted paths", function()
    assert.are.equal("NTI1", data.get(body, "paging.next.after"))
    assert.are.equal("second", data.get(body, "errors.2.message"))
    assert.are.equal("b", data.get(body, "list.2"))
  end)

  it("takes a list of steps", function()
    assert.are.equal("first", data.get(body, {"errors", 1, "message"}))
  end)

  it("falls back to a string key for digits", function()
    assert.are.equal("string key", data.get(body, "1"))
  end)

  it("gives nil for missing steps, non-tables on the way and JSON null", function()
    assert.is_nil(data.get(body, "paging.prev.before"))
    assert.is_nil(data.get(body, "list.2.x"))
    assert.is_nil(data.get(body, "gone"))
    assert.is_nil(data.get(body, "gone.x"))
    assert.is_nil(data.get(nil, "a"))
    assert.is_nil(data.get("text", "a"))
  end)
end)

describe("ferry.data.first", function()
  it("returns the first non-empty string or number, as text", function()
    assert.are.equal("x", data.first({a = "", b = "  ", c = "x"}, {"a", "b", "c"}))
    assert.are.equal("-100", data.first({code = -100}, {"code"}))
    assert.is_nil(data.first({a = {}}, {"a", "b"}))
  end)
end)

describe("ferry.data.value, array and map", function()
  it("reads JSON null as nil", function()
    assert.is_nil(data.value(null))
    assert.are.equal(false, data.value(false))
    assert.are.equal(0, data.value(0))
  end)

  it("returns the table it marks, or a new one", function()
    local t = {1, 2}
    assert.are.equal(t, data.array(t))
    assert.are.same({}, data.array())
  end)

  it("maps a list, skipping nil results and non-tables", function()
    assert.are.same({2, 6}, data.map({1, 2, 3}, function(v) if v ~= 2 then return v * 2 end end))
    assert.are.same({}, data.map(nil, tostring))
    assert.are.same({}, data.map(null, tostring))
  end)
end)

describe("ferry.data.compact", function()
  it("drops JSON null members and copies the rest", function()
    local t = {a = 1, b = null, c = false}
    local c = data.compact(t)
    assert.are.same({a = 1, c = false}, c)
    assert.are_not.equal(t, c)
    assert.is_nil(data.compact("x"))
  end)
end)
