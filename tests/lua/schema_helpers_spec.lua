-- luacheck: std lua51+busted
-- ferry.schema's helpers for dates, ids and the usual paging arguments.
local s = require "ferry.schema"

describe("ferry.schema date, datetime, id, email, uuid", function()
  it("build strings with the format ferry checks", function()
    assert.are.same({type = "string", format = "date", description = "Due."}, s.date "Due.")
    assert.are.same({type = "string", format = "date-time"}, s.datetime())
    assert.are.same(s.datetime(), s.date_time())
    assert.are.same({type = "string", format = "email", description = "To."}, s.email{"To."})
    assert.are.same({type = "string", format = "uuid"}, s.uuid())
  end)

  it("make ids non-empty strings, with options kept and required passed up", function()
    assert.are.same({type = "string", minLength = 1, maxLength = 255, description = "The id.", pattern = "^[0-9]+$"},
                    s.id{"The id.", pattern = "^[0-9]+$"})
    local obj = s.object{id = s.id{"x", required = true}, when = s.date{required = true}}
    assert.are.same({"id", "when"}, obj.required)
    assert.is_nil(obj.properties.id.required)
  end)
end)

describe("ferry.schema limit and cursor", function()
  it("describe the usual paging arguments", function()
    assert.are.same({type = "integer", minimum = 1, maximum = 100, default = 20,
                     description = "How many to return (default 20, at most 100)."}, s.limit())
    assert.are.same({type = "integer", minimum = 1, maximum = 500, default = 50, description = "How many."},
                    s.limit{"How many.", maximum = 500, default = 50})
    assert.are.same({type = "string", minLength = 1,
                     description = "next_cursor from an earlier call, to get the following results."}, s.cursor())
  end)
end)
