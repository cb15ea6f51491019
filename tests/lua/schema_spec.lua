-- luacheck: std lua51+busted
local s = require "ferry.schema"

describe("ferry.schema", function()
  it("builds scalar schemas with a positional or string description", function()
    assert.are.same({type = "string", description = "Email", format = "email"},
                    s.string{"Email", format = "email"})
    assert.are.same({type = "string", description = "Email"}, s.string "Email")
    assert.are.same({type = "integer", minimum = 1, maximum = 100, default = 20},
                    s.integer{minimum = 1, maximum = 100, default = 20})
    assert.are.same({type = "number"}, s.number())
    assert.are.same({type = "boolean", description = "d"}, s.boolean{description = "d"})
  end)

  it("prefers a named description over the positional one", function()
    assert.are.equal("named", s.string{"positional", description = "named"}.description)
  end)

  it("builds objects that reject undeclared properties, with sorted required", function()
    local schema = s.object{
      query = s.string{"q", required = true},
      limit = s.integer(),
      after = s.string{required = true},
    }
    assert.are.same({
      type = "object",
      properties = {query = {type = "string", description = "q"}, limit = {type = "integer"},
                    after = {type = "string"}},
      required = {"after", "query"},
      additionalProperties = false,
    }, schema)
  end)

  it("leaves required out when nothing is required", function()
    local schema = s.object{a = s.string()}
    assert.is_nil(schema.required)
  end)

  it("accepts object options: description, additionalProperties, an own required list", function()
    local schema = s.object({a = s.string(), b = s.string{required = true}},
                            {"An address.", additionalProperties = true, required = {"a"}})
    assert.are.equal("An address.", schema.description)
    assert.is_true(schema.additionalProperties)
    table.sort(schema.required)
    assert.are.same({"a", "b"}, schema.required)
  end)

  it("marks nested objects required in their parent and keeps their own list", function()
    local inner = s.object({x = s.string{required = true}}, {required = true})
    local outer = s.object{inner = inner}
    assert.are.same({"inner"}, outer.required)
    assert.are.same({"x"}, inner.required)
  end)

  it("does not change shared property schemas", function()
    local id = s.string{"An id", required = true}
    s.object{a = id}
    s.object{b = id}
    assert.are.same({type = "string", description = "An id"}, id)
  end)

  it("builds arrays and maps", function()
    assert.are.same({type = "array", items = {type = "string"}, maxItems = 3, description = "tags"},
                    s.array(s.string(), {"tags", maxItems = 3}))
    assert.are.same({type = "array", items = {type = "integer"}, description = "ids"}, s.array(s.integer(), "ids"))
    assert.are.same({type = "object", additionalProperties = {type = "string"}, description = "extra"},
                    s.map(s.string(), "extra"))
    assert.are.same({type = "object", additionalProperties = true}, s.map())
  end)

  it("builds enums and infers their type", function()
    assert.are.same({type = "string", enum = {"page", "data_source"}, description = "kind"},
                    s.enum{"page", "data_source", description = "kind"})
    assert.are.same({type = "integer", enum = {1, 2}}, s.enum{1, 2})
    assert.are.same({type = "number", enum = {1, 2.5}}, s.enum{1, 2.5})
    assert.are.same({enum = {"a", 1}}, s.enum{"a", 1})
    assert.are.same({type = {"string", "null"}, enum = {"a"}}, s.enum{"a", type = {"string", "null"}})
    assert.has_error(function() s.enum{} end)
  end)

  it("passes a required enum to its parent", function()
    assert.are.same({"dir"}, s.object{dir = s.enum{"asc", "desc", required = true}}.required)
  end)

  it("rejects options of the wrong type", function()
    assert.has_error(function() s.string(5) end)
    assert.has_error(function() s.object{[1] = s.string()} end)
  end)
end)

describe("ferry.schema.enum with a separate list", function()
  it("takes the values from the first argument and options from the second", function()
    local ops = {"EQ", "NEQ"}
    assert.are.same({type = "string", enum = {"EQ", "NEQ"}, description = "Comparison."},
                    s.enum(ops, {"Comparison."}))
    assert.are.same({type = "string", enum = {"EQ", "NEQ"}, description = "d"}, s.enum(ops, "d"))
    assert.are.same({"op"}, s.object{op = s.enum(ops, {required = true})}.required)
    assert.are.same({"EQ", "NEQ"}, ops, "the list is not changed")
    assert.has_error(function() s.enum("EQ", {}) end)
  end)
end)
