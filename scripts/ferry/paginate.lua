-- ferry.paginate: walking APIs that return a cursor in the response body.
--
--   local paginate = require "ferry.paginate"
--   for page, err in paginate.cursor{
--     fetch = function(cursor, remaining)          -- one request; nil, err on failure
--       return sdk.request(ctx, {path = "/items", query = {after = cursor, limit = remaining}}, API)
--     end,
--     items = "results",                            -- path (or function(body)) of the page's items
--     next = "paging.next.after",                   -- path (or function(body)) of the next cursor
--     has_more = "has_more",                        -- optional: false ends the walk (Notion)
--     limit = 50,                                   -- optional: stop after this many items
--     start = args.cursor,                          -- optional: continue an earlier walk
--   } do
--     if not page then return nil, err end          -- a failed page ends the walk
--     ... page.items, page.next, page.body, page.cursor, page.number ...
--   end
--
--   local got, err = paginate.collect{...}   -- {items, next, pages} or nil, err
--
-- The walk ends on the first of: no next cursor; has_more false; an empty
-- page; a cursor seen before (an API stuck on one page); `limit` items
-- (the last page is cut to fit); `max_pages` pages (default 100). When it
-- ended on limit or max_pages, the last page's `next` is where to continue.
-- fetch runs in the caller's coroutine, so ctx.http.request may wait in it.
-- Common subset of Lua 5.1 and 5.4.
local data = require "ferry.data"

local M = {}

local function accessor(spec, what)
  if type(spec) == "function" then return spec end
  if type(spec) == "string" or type(spec) == "table" then
    return function(body) return data.get(body, spec) end
  end
  error("ferry.paginate: " .. what .. " must be a path or a function", 3)
end

-- A usable cursor: a non-empty string or a number; anything else is "none".
local function cursor_value(v)
  if type(v) == "number" then return v end
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function cursor_key(v)
  return type(v) .. ":" .. tostring(v)
end

function M.cursor(spec)
  if type(spec) ~= "table" or type(spec.fetch) ~= "function" then
    error("ferry.paginate.cursor: spec.fetch must be a function", 2)
  end
  if spec.next == nil then error("ferry.paginate.cursor: spec.next is required", 2) end
  local items_of = accessor(spec.items or "results", "items")
  local next_of = accessor(spec.next, "next")
  local more_of = spec.has_more ~= nil and accessor(spec.has_more, "has_more") or nil
  local limit = spec.limit
  local max_pages = spec.max_pages or 100

  local cursor = cursor_value(spec.start)
  local seen = {}
  if cursor ~= nil then seen[cursor_key(cursor)] = true end
  local count, number, done = 0, 0, false

  return function()
    if done then return nil end
    if (limit and count >= limit) or number >= max_pages then
      done = true
      return nil
    end
    local remaining = limit and (limit - count) or nil
    local body, err = spec.fetch(cursor, remaining)
    if body == nil then
      done = true
      return false, err or {code = "upstream_error", message = "a page could not be read"}
    end
    number = number + 1

    local list = items_of(body)
    if type(list) ~= "table" then list = {} end
    local items = {}
    local take = #list
    if remaining and take > remaining then take = remaining end
    for i = 1, take do items[i] = list[i] end
    count = count + take

    local nxt = cursor_value(next_of(body))
    if more_of and more_of(body) == false then nxt = nil end
    if #list == 0 then nxt = nil end
    if nxt ~= nil then
      local key = cursor_key(nxt)
      if seen[key] then nxt = nil else seen[key] = true end
    end
    if nxt == nil then done = true end

    local page = {items = data.array(items), body = body, cursor = cursor, next = nxt, number = number}
    cursor = nxt
    return page
  end
end

-- The whole walk: {items = every item in one list, next = the cursor to
-- continue from (nil when the walk reached the end), pages = how many}, or
-- nil, err.
function M.collect(spec)
  local all, last = {}, nil
  for page, err in M.cursor(spec) do
    if not page then return nil, err end
    for i = 1, #page.items do all[#all + 1] = page.items[i] end
    last = page
  end
  return {items = data.array(all), next = last and last.next or nil, pages = last and last.number or 0}
end

return M
