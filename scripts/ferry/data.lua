-- ferry.data: reading decoded JSON without tripping over missing fields.
--
--   local data = require "ferry.data"
--   data.get(body, "paging.next.after")      -- nil when any step is missing
--   data.get(body, "errors.1.message")       -- digits index arrays (1-based)
--   data.get(body, {"results", 1, "id"})     -- or give the steps as a list
--   data.first(body, {"message", "error.message"})
--   data.array(list)                         -- encodes as a JSON array even when empty
--   data.compact(t)                          -- t without its JSON null members
--   data.map(list, fn)                       -- {fn(item)...}, nils skipped, a JSON array
--
-- JSON null (json.null, a light userdata) reads as nil everywhere here.
-- Written in the common subset of Lua 5.1 and 5.4 so busted can test it.
local M = {}

-- json is a sandbox global; under plain Lua (the unit tests) it is absent.
local json_lib = json
local mark_array = json_lib and json_lib.array or function(t) return t end

-- nil for JSON null (and any other userdata), the value otherwise.
function M.value(v)
  if type(v) == "userdata" then return nil end
  return v
end

local function steps(path)
  if type(path) == "table" then return path end
  local out = {}
  for step in string.gmatch(tostring(path), "[^%.]+") do out[#out + 1] = step end
  return out
end

-- The value at `path` inside `root`, or nil.
function M.get(root, path)
  local v = root
  for _, step in ipairs(steps(path)) do
    if type(v) ~= "table" then return nil end
    local nextv
    if type(step) == "string" and step:match("^%d+$") then nextv = v[tonumber(step)] end
    if nextv == nil then nextv = v[step] end
    v = nextv
  end
  return M.value(v)
end

-- The first of `paths` that holds a non-empty string (or a number, as text).
function M.first(root, paths)
  for _, path in ipairs(paths) do
    local v = M.get(root, path)
    if type(v) == "number" then return tostring(v) end
    if type(v) == "string" and v:match("%S") then return v end
  end
  return nil
end

-- Marks `t` (default: a new table) as a JSON array, so `{}` encodes as [].
function M.array(t)
  return mark_array(t or {})
end

-- A shallow copy of the table `t` without its JSON null members (nil for a non-table).
function M.compact(t)
  if type(t) ~= "table" then return nil end
  local out = {}
  for k, v in pairs(t) do
    if type(v) ~= "userdata" then out[k] = v end
  end
  return out
end

-- A list of `fn(item)` for every item of `list` (nil results are skipped).
function M.map(list, fn)
  local out = {}
  if type(list) == "table" then
    for i = 1, #list do
      local v = fn(list[i])
      if v ~= nil then out[#out + 1] = v end
    end
  end
  return M.array(out)
end

return M
