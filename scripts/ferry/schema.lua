-- ferry.schema: tool input schemas that read like the arguments they describe.
-- Each helper returns a plain JSON Schema table (docs/schema.md lists what
-- ferry validates), so the result can be printed, compared and mixed with
-- hand-written schema.
--
--   local s = require "ferry.schema"
--   input = s.object{
--     query = s.string{"Text to look for.", required = true, minLength = 1},
--     limit = s.integer{"How many to return.", minimum = 1, maximum = 100, default = 20},
--     kind  = s.enum{"page", "data_source", description = "Only this kind of object."},
--     op    = s.enum(OPERATORS, {"Comparison.", required = true}),
--     tags  = s.array(s.string(), {"Labels to add.", maxItems = 10}),
--     extra = s.map(s.string(), "Any other field, by name."),
--     due   = s.date "Due date.",            -- also s.datetime, s.email, s.uuid, s.id
--     limit = s.limit{maximum = 200},       -- and s.cursor(): the usual paging arguments
--   }
--
-- Conventions:
--  * the first array element of the options, or a string given instead of
--    options, is the description (s.string "Email address");
--  * `required = true` in a property's options lists it in the parent
--    object's `required` (an object's own list may also be given as
--    required = {"a", "b"});
--  * objects reject properties they do not declare (additionalProperties =
--    false): an agent that misspells an argument gets invalid_arguments
--    naming it instead of a silently ignored field. Pass
--    {additionalProperties = true} (or a schema) as the object's options to
--    accept free-form members;
--  * any other option is copied as it is (minLength, pattern, format,
--    default, examples, x-secret, ...).
-- Common subset of Lua 5.1 and 5.4.
local M = {}

-- Schemas created with required = true: the parent object lists them in its
-- `required` (kept aside, so the schema itself stays plain JSON Schema).
local required_in_parent = setmetatable({}, {__mode = "k"})

local function options(opts)
  if opts == nil then return {} end
  if type(opts) == "string" then return {description = opts} end
  if type(opts) ~= "table" then error("ferry.schema: options must be a table or a description string", 3) end
  return opts
end

-- A new schema {type = kind} with the options' named fields copied in.
local function build(kind, opts, skip_list)
  opts = options(opts)
  local out = {type = kind}
  for k, v in pairs(opts) do
    if type(k) == "string" and not (k == "required" and type(v) == "boolean") then out[k] = v end
  end
  if opts.required == true then required_in_parent[out] = true end
  if not skip_list and type(opts[1]) == "string" then out.description = out.description or opts[1] end
  return out
end

function M.string(opts) return build("string", opts) end
function M.integer(opts) return build("integer", opts) end
function M.number(opts) return build("number", opts) end
function M.boolean(opts) return build("boolean", opts) end

-- Strings with a meaning ferry checks (docs/schema.md: format date, date-time,
-- email and uuid are validated; the others are annotations):
--   s.date "Due date."          YYYY-MM-DD
--   s.datetime "Since when."    RFC 3339: 2024-05-01T12:00:00Z
--   s.email, s.uuid
--   s.id{"The task's id.", pattern = "^[0-9]+$"}   a non-empty id (at most 255 characters)
local function with_defaults(opts, defaults)
  opts = options(opts)
  local out = {}
  for k, v in pairs(opts) do out[k] = v end
  for k, v in pairs(defaults) do if out[k] == nil then out[k] = v end end
  return out
end

function M.date(opts) return build("string", with_defaults(opts, {format = "date"})) end
function M.datetime(opts) return build("string", with_defaults(opts, {format = "date-time"})) end
M.date_time = M.datetime
function M.email(opts) return build("string", with_defaults(opts, {format = "email"})) end
function M.uuid(opts) return build("string", with_defaults(opts, {format = "uuid"})) end
function M.id(opts) return build("string", with_defaults(opts, {minLength = 1, maxLength = 255})) end

-- The usual paging arguments: s.limit{default = 20, maximum = 100} and
-- s.cursor() ("next_cursor from an earlier call...").
function M.limit(opts)
  opts = options(opts)
  local default, maximum = opts.default or 20, opts.maximum or 100
  local o = with_defaults(opts, {minimum = 1, maximum = maximum})
  if o[1] == nil and o.description == nil then
    o.description = ("How many to return (default %s, at most %s)."):format(default, maximum)
  end
  o.default = default
  return build("integer", o)
end

function M.cursor(opts)
  local o = with_defaults(opts, {minLength = 1})
  if o[1] == nil and o.description == nil then
    o.description = "next_cursor from an earlier call, to get the following results."
  end
  return build("string", o)
end

-- s.enum{"a", "b", description = ...} or s.enum(VALUES, opts): the allowed
-- values; the type follows them (string, integer or number) unless given.
function M.enum(list, opts)
  if opts == nil then opts = options(list) else opts = options(opts) end
  if type(list) ~= "table" then error("ferry.schema.enum: give the values as a list", 2) end
  local values, kind = {}, nil
  for i = 1, #list do
    local v = list[i]
    local k = type(v)
    if k == "number" then k = (math.floor(v) == v) and "integer" or "number" end
    if kind == nil then kind = k elseif kind ~= k then
      kind = (kind == "integer" or kind == "number") and (k == "integer" or k == "number") and "number" or false
    end
    values[i] = v
  end
  if #values == 0 then error("ferry.schema.enum: give at least one value", 2) end
  local out = build(kind or nil, opts, list == opts)   -- opts.type, when given, wins
  out.enum = values
  return out
end

-- s.array(items, opts): a list whose every element matches `items`.
function M.array(items, opts)
  local out = build("array", opts)
  out.items = items
  return out
end

-- s.map(values, opts): an object with free-form keys whose values match `values`.
function M.map(values, opts)
  local out = build("object", opts)
  out.additionalProperties = values == nil and true or values
  return out
end

-- s.object(properties, opts): properties marked required = true are listed in
-- `required` (sorted, so the schema is the same on every load).
function M.object(props, opts)
  local out = build("object", opts)
  if out.additionalProperties == nil then out.additionalProperties = false end
  local properties, required = {}, {}
  for name, schema in pairs(props or {}) do
    if type(name) ~= "string" then error("ferry.schema.object: property names must be strings", 2) end
    if required_in_parent[schema] then required[#required + 1] = name end
    properties[name] = schema
  end
  table.sort(required)
  out.properties = properties
  if #required > 0 then
    if out.required then
      for _, name in ipairs(out.required) do required[#required + 1] = name end
    end
    out.required = required
  end
  return out
end

return M
