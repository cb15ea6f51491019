-- luacheck: std lua51+busted
-- ferry.validate: the engine's schema subset, paths and messages (docs/schema.md).
local validate = require "ferry.validate"
local s = require "ferry.schema"

local function failure(schema, value)
  local ok, f = validate.check(schema, value)
  if ok then return nil end
  return f.path .. ": " .. f.message
end

describe("ferry.validate", function()
  local schema = s.object({
    query = s.string{required = true, minLength = 2, maxLength = 5},
    limit = s.integer{minimum = 1, maximum = 10},
    ratio = s.number{exclusiveMinimum = 0, multipleOf = 0.1},
    sort = s.enum{"asc", "desc"},
    when = s.date(),
    at = s.datetime(),
    email = s.email(),
    id = s.uuid(),
    code = s.string{pattern = "^[a-z]{2,3}-[0-9]+$"},
    tags = s.array(s.string{minLength = 1}, {maxItems = 2, uniqueItems = true}),
    filters = s.array(s.object{field = s.string{required = true}}),
    meta = s.map(s.integer()),
    ["odd key"] = s.boolean(),
  })

  it("accepts valid arguments", function()
    assert.is_true(validate.check(schema, {query = "ada", limit = 3, ratio = 0.3, sort = "asc", when = "2024-02-29",
      at = "2024-05-01T12:00:00.5+02:00", email = "a@b.io", id = "123e4567-e89b-12d3-a456-426614174000",
      code = "ab-12", tags = {"x", "y"}, filters = {{field = "f"}}, meta = {a = 1}, ["odd key"] = true}))
    assert.is_true(validate(schema, {query = "ab"}))
  end)

  it("reports the first failure with ferry's path and message", function()
    local cases = {
      {{}, "$: missing required property 'query'"},
      {{query = 5}, "$.query: expected string, got integer"},
      {{query = "a"}, "$.query: length 1 is below minLength 2"},
      {{query = "日本語日本語"}, "$.query: length 6 is above maxLength 5"},
      {{query = "ab", limit = 0}, "$.limit: value 0 is below minimum 1"},
      {{query = "ab", limit = 2.5}, "$.limit: expected integer, got number"},
      {{query = "ab", ratio = 0}, "$.ratio: value 0 is not above exclusiveMinimum 0"},
      {{query = "ab", ratio = 0.25}, "$.ratio: value 0.25 is not a multiple of 0.1"},
      {{query = "ab", sort = "up"}, '$.sort: must be one of: "asc", "desc"'},
      {{query = "ab", when = "2023-02-29"}, "$.when: not a valid date (YYYY-MM-DD)"},
      {{query = "ab", at = "2024-05-01 12:00"}, "$.at: not a valid date-time (RFC 3339, e.g. 2024-05-01T12:00:00Z)"},
      {{query = "ab", email = "ada"}, "$.email: not a valid email address"},
      {{query = "ab", id = "nope"}, "$.id: not a valid uuid (8-4-4-4-12 hex digits)"},
      {{query = "ab", code = "abcd-1"}, "$.code: does not match pattern '^[a-z]{2,3}-[0-9]+$'"},
      {{query = "ab", tags = {"a", "b", "c"}}, "$.tags: array length 3 is above maxItems 2"},
      {{query = "ab", tags = {"a", "a"}}, "$.tags: items [0] and [1] are equal, but uniqueItems is set"},
      {{query = "ab", tags = {"a", ""}}, "$.tags[1]: length 0 is below minLength 1"},
      {{query = "ab", filters = {{}}}, "$.filters[0]: missing required property 'field'"},
      {{query = "ab", meta = {n = "x"}}, "$.meta.n: expected integer, got string"},
      {{query = "ab", ["odd key"] = 1}, '$["odd key"]: expected boolean, got integer'},
      {{query = "ab", colour = "red"}, "$: property 'colour' is not allowed"},
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[2], failure(schema, c[1]))
    end
  end)

  it("handles combinators, const, nullable and $ref", function()
    local one = {type = "object", properties = {a = {type = "string"}, b = {type = "string"}},
                 anyOf = {{required = {"a"}}, {required = {"b"}}}}
    assert.are.equal("$: matches none of anyOf", failure(one, {}))
    assert.is_nil(failure(one, {b = "x"}))
    local xor = {type = "object", oneOf = {{required = {"a"}}, {required = {"b"}}}}
    assert.are.equal("$: matches 2 schemas of oneOf, expected exactly 1", failure(xor, {a = 1, b = 2}))
    local never = {type = "object", ["not"] = {required = {"a", "b"}}}
    assert.are.equal("$: must not match the schema in 'not'", failure(never, {a = 1, b = 2}))
    assert.are.equal('$.v: must be exactly "x"',
                     failure({type = "object", properties = {v = {const = "x"}}}, {v = "y"}))
    local refs = {type = "object", properties = {n = {["$ref"] = "#/definitions/node"}},
                  definitions = {node = {type = "object", properties = {kids = {type = "array",
                    items = {["$ref"] = "#/definitions/node"}}, name = {type = "string"}}}}}
    assert.is_nil(failure(refs, {n = {kids = {{kids = {{name = "deep"}}}}}}))
    assert.are.equal("$.n.kids[0].kids[0].name: expected string, got integer",
                     failure(refs, {n = {kids = {{kids = {{name = 1}}}}}}))
    local loop = {type = "object", properties = {x = {["$ref"] = "#/definitions/a"}},
                  definitions = {a = {["$ref"] = "#/definitions/b"}, b = {["$ref"] = "#/definitions/a"}}}
    assert.truthy(failure(loop, {x = 1}):find("reference cycle", 1, true))
    assert.is_nil(failure({type = "object", properties = {v = {type = "string", nullable = true}}}, {v = io.stdout}))
    assert.are.equal("$.v: expected string or null, got integer",
                     failure({type = "object", properties = {v = {type = {"string", "null"}}}}, {v = 1}))
  end)

  it("reads an empty table as an empty array or object, whichever the schema wants", function()
    assert.is_nil(failure({type = "object", properties = {l = {type = "array", minItems = 0}}}, {l = {}}))
    assert.is_nil(failure({type = "object"}, {}))
  end)

  it("translates POSIX patterns it can, and leaves the others to ferry", function()
    assert.are.equal("^[%w_]+$", validate.lua_pattern("^[[:alnum:]_]+$"))
    assert.are.equal("^[%x][%x]%-?[%x]$", validate.lua_pattern("^[[:xdigit:]]{2}-?[[:xdigit:]]$"))
    assert.are.equal("^aa?a?%.b*$", validate.lua_pattern("^a{1,3}\\.b*$"))
    assert.is_false(validate.lua_pattern("^(a|b)$"))
    assert.is_nil(failure({type = "object", properties = {v = {type = "string", pattern = "^(a|b)$"}}}, {v = "zzz"}))
  end)
end)
