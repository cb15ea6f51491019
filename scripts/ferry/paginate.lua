-- ferry.paginate: walking paginated APIs page after page.
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
-- Styles (each a function taking a spec and returning the same iterator):
--   cursor   a cursor in the body: next_cursor, nextPageToken, paging.next.after, next_page.offset
--   offset   offset/limit counting: the next offset is this one plus the items read; has_more or total
--   link     the RFC 8288 Link header's rel="next" URL (GitHub, Shopify, Zendesk incremental)
--   pages    page numbers 1, 2, 3...; total_pages, has_more, a short page or an empty one ends it
--   window   time windows: Slack's oldest/latest, updated_since; the next bound is the page's
--            oldest (descending) or newest (ascending) item time
--
-- Every walk ends on the first of: nothing to continue from (no cursor, no
-- link, has_more false, the total reached, a short page); an empty page
-- (unless `follow_empty`); a cursor seen before or a page identical to the
-- previous one (an API stuck on one page or ignoring the page parameter);
-- `limit` items (the last page is cut to fit); `max_pages` pages (default
-- 100). When it ended on limit or max_pages, `next` (a page's, and
-- collect's) is where a later call continues.
-- `follow_empty = true` keeps going past an empty page that has a next
-- cursor: change feeds say "more" with empty pages (Microsoft Graph's delta
-- queries: "even if the current response contains an empty result"; Google's
-- sync rounds end only with nextSyncToken). The other ends still hold.
-- fetch runs in the caller's coroutine, so ctx.http.request may wait in it.
-- Common subset of Lua 5.1 and 5.4.
local data = require "ferry.data"

local M = {}

local function accessor(spec, what, level)
  if type(spec) == "function" then return spec end
  if type(spec) == "string" or type(spec) == "table" then
    return function(body) return data.get(body, spec) end
  end
  error("ferry.paginate: " .. what .. " must be a path or a function", level or 3)
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

-- A deterministic text of a decoded JSON value, to notice a page that is the
-- same as the one before (an API that ignores the page or offset parameter).
local function fingerprint(v, depth)
  local t = type(v)
  if t == "table" then
    if (depth or 0) > 4 then return "{...}" end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local parts = {}
    for i = 1, #keys do
      parts[i] = tostring(keys[i]) .. "=" .. fingerprint(v[keys[i]], (depth or 0) + 1)
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return t .. ":" .. tostring(v)
end

local SKIP = "#skip="

-- "<cursor>#skip=<n>": continue inside a page the API cannot shorten (page
-- numbers, Link URLs), dropping the n items already returned.
local function encode_resume(cursor, skip)
  if cursor == nil then return nil end
  if not skip or skip <= 0 then return cursor end
  return tostring(cursor) .. SKIP .. skip
end

local function decode_resume(token)
  if type(token) ~= "string" then return token, 0 end
  local cursor, skip = token:match("^(.*)#skip=(%d+)$")
  if cursor then return cursor, tonumber(skip) end
  return token, 0
end

-- The engine every style shares. `style` gives:
--   items_of(body, resp) the page's items (default: spec.items, or style.items)
--   first                the cursor of the first page (after decoding spec.start)
--   skip                 items of the first page to drop (from a resume token)
--   advance(body, resp, list, cursor) → the next cursor, or nil at the end
--   resumable            when the limit cuts a page, next is "<cursor>#skip=n"
--                        (styles whose pages cannot be asked to be shorter)
--   cut_next(cursor, n, list) → the next cursor when the limit cut the page
--                        after its n-th item (offset, window)
--   same_page            end the walk on a page identical to the previous one
--   after_page(page)     adds to the page
local function walk(spec, style)
  local items_of = style.items_of or accessor(spec.items or style.items or "results", "items", 4)
  local more_of = spec.has_more ~= nil and accessor(spec.has_more, "has_more", 4) or nil
  local limit = spec.limit
  local follow_empty = spec.follow_empty == true
  local max_pages = spec.max_pages or 100

  local cursor, skip = style.first, style.skip or 0
  local seen = {}
  if cursor ~= nil then seen[cursor_key(cursor)] = true end
  local count, number, done, previous = 0, 0, false, nil

  return function()
    if done then return nil end
    if (limit and count >= limit) or number >= max_pages then
      done = true
      return nil
    end
    local remaining = limit and (limit - count) or nil
    local body, resp = spec.fetch(cursor, remaining)
    if body == nil then
      done = true
      return false, resp or {code = "upstream_error", message = "a page could not be read"}
    end
    number = number + 1

    local list = items_of(body, resp)
    if type(list) ~= "table" then list = {} end
    local same = false
    if style.same_page and #list > 0 then
      local print = fingerprint(list)
      same = print == previous
      previous = print
    end

    local items = {}
    local last = same and 0 or #list
    if remaining and last - skip > remaining then last = skip + remaining end
    for i = skip + 1, last do items[#items + 1] = list[i] end
    count = count + #items
    local cut = not same and last < #list

    local nxt
    if same or (#list == 0 and not follow_empty) then
      nxt = nil
    elseif cut and style.resumable then
      nxt = encode_resume(cursor, last)
    elseif cut and style.cut_next then
      nxt = cursor_value(style.cut_next(cursor, last, list))
    else
      nxt = cursor_value(style.advance(body, resp, list, cursor))
      if more_of and more_of(body, resp) == false then nxt = nil end
      if nxt ~= nil then
        local key = cursor_key(nxt)
        if seen[key] then nxt = nil else seen[key] = true end
      end
    end
    if nxt == nil then done = true end

    local page = {items = data.array(items), body = body, resp = resp, cursor = cursor, next = nxt,
                  number = number}
    if style.after_page then style.after_page(page) end
    cursor, skip = nxt, 0
    if style.resumable then cursor, skip = decode_resume(nxt) end
    return page
  end
end

local function check(spec, name)
  if type(spec) ~= "table" or type(spec.fetch) ~= "function" then
    error("ferry.paginate." .. name .. ": spec.fetch must be a function", 3)
  end
end

-- ---- cursor in the body ---------------------------------------------------------

function M.cursor(spec)
  check(spec, "cursor")
  if spec.next == nil then error("ferry.paginate.cursor: spec.next is required", 2) end
  local next_of = accessor(spec.next, "next")
  return walk(spec, {
    first = cursor_value(spec.start),
    advance = function(body) return next_of(body) end,
  })
end

-- ---- offset / limit ---------------------------------------------------------------

-- fetch(offset, remaining): offset is 0 (or spec.first) for the first page.
-- The next offset is this one plus the items the page held; the walk also ends
-- when spec.total (path or function) says so, or on a page shorter than
-- spec.page_size.
function M.offset(spec)
  check(spec, "offset")
  local total_of = spec.total ~= nil and accessor(spec.total, "total") or nil
  local page_size = spec.page_size
  local start = tonumber(spec.start) or spec.first or 0
  return walk(spec, {
    first = start,
    advance = function(body, _, list, offset)
      local nxt = offset + #list
      local total = total_of and tonumber(total_of(body)) or nil
      if total and nxt >= total then return nil end
      if page_size and #list < page_size then return nil end
      return nxt
    end,
    cut_next = function(offset, taken) return offset + taken end,
    same_page = true,
  })
end

-- ---- Link header (RFC 8288) ---------------------------------------------------------

local function lower(s) return (s:gsub("%u", string.lower)) end

-- Every link of a Link header value: {{uri = "...", rel = {"next"}, params = {...}}, ...}
-- plus the same by relation type (lowercase): links.by_rel.next.uri. Handles
-- several links in one value, quoted parameters (commas and semicolons
-- inside quotes), rel with several space-separated types, and the RFC 8187
-- `title*` form left as it is.
function M.parse_link(value)
  local links = {by_rel = {}}
  if type(value) == "table" then value = table.concat(value, ", ") end
  if type(value) ~= "string" then return links end
  local i, n = 1, #value
  while i <= n do
    local lt = value:find("<", i, true)
    if not lt then break end
    local gt = value:find(">", lt + 1, true)
    if not gt then break end
    local link = {uri = value:sub(lt + 1, gt - 1), rel = {}, params = {}}
    i = gt + 1
    -- parameters until the next top-level comma
    while i <= n do
      local c = value:sub(i, i)
      if c == "," then i = i + 1; break end
      if c == ";" or c:match("%s") then
        i = i + 1
      else
        local name_end = i
        while name_end <= n and not value:sub(name_end, name_end):match("[=;,%s]") do name_end = name_end + 1 end
        local name = lower(value:sub(i, name_end - 1))
        i = name_end
        while i <= n and value:sub(i, i):match("%s") do i = i + 1 end
        local pval = ""
        if value:sub(i, i) == "=" then
          i = i + 1
          while i <= n and value:sub(i, i):match("%s") do i = i + 1 end
          if value:sub(i, i) == '"' then
            local buf = {}
            i = i + 1
            while i <= n do
              local ch = value:sub(i, i)
              if ch == "\\" then
                buf[#buf + 1] = value:sub(i + 1, i + 1)
                i = i + 2
              elseif ch == '"' then
                i = i + 1
                break
              else
                buf[#buf + 1] = ch
                i = i + 1
              end
            end
            pval = table.concat(buf)
          else
            local v_end = i
            while v_end <= n and not value:sub(v_end, v_end):match("[;,]") do v_end = v_end + 1 end
            pval = value:sub(i, v_end - 1):gsub("%s+$", "")
            i = v_end
          end
        end
        if name ~= "" and link.params[name] == nil then link.params[name] = pval end
      end
    end
    for r in (link.params.rel or ""):gmatch("%S+") do
      r = lower(r)
      link.rel[#link.rel + 1] = r
      if links.by_rel[r] == nil then links.by_rel[r] = link end
    end
    links[#links + 1] = link
  end
  return links
end

-- A URI reference resolved against a base URL (absolute references as they
-- are; "//host/x", "/x" and "x?y" relative to the base).
function M.resolve(base, ref)
  if type(ref) ~= "string" or ref:match("^%a[%w+.-]*:") or type(base) ~= "string" then return ref end
  local scheme, authority, path = base:match("^(%a[%w+.-]*:)//([^/?#]*)([^?#]*)")
  if not scheme then return ref end
  if ref:sub(1, 2) == "//" then return scheme .. ref end
  if ref:sub(1, 1) == "/" then return scheme .. "//" .. authority .. ref end
  local dir = path:match("^(.*/)") or "/"
  return scheme .. "//" .. authority .. dir .. ref
end

-- The inverse of resolve: a URL under `base` as the path to request (what
-- follows base, from its slash), or nil for a URL elsewhere (or not a
-- string). For next links in the body (Graph's @odata.nextLink) followed as
-- paths under the provider's base URL, so a base URL set for tests or for
-- another region still holds.
function M.relative(base, url)
  if type(base) ~= "string" or type(url) ~= "string" then return nil end
  base = base:gsub("/+$", "")
  if base == "" or url:sub(1, #base + 1) ~= base .. "/" then return nil end
  return url:sub(#base + 1)
end

local function header(resp, name)
  local h = type(resp) == "table" and resp.headers
  if type(h) ~= "table" then return nil end
  if h[name] ~= nil then return h[name] end
  for k, v in pairs(h) do
    if type(k) == "string" and lower(k) == name then return v end
  end
  return nil
end

-- fetch(url, remaining) → body, resp: url is nil for the first page (make the
-- request from a path and query), then the next link's URL (request it as it
-- is: it carries the query). items defaults to the body itself (a JSON array).
-- spec.rel (default "next") picks the relation; spec.base_url resolves
-- relative links.
function M.link(spec)
  check(spec, "link")
  local rel = lower(spec.rel or "next")
  local first, skip = decode_resume(cursor_value(spec.start))
  return walk(spec, {
    items = "",
    first = first,
    skip = skip,
    resumable = true,
    advance = function(_, resp)
      local target = M.parse_link(header(resp, "link")).by_rel[rel]
      if not target then return nil end
      return M.resolve(spec.base_url, target.uri)
    end,
  })
end

-- ---- page numbers ------------------------------------------------------------------

-- fetch(page, remaining): page is spec.first (default 1), then 2, 3...
-- Ask for a fixed page size (page boundaries move when it changes); when the
-- limit cuts a page, next is "<page>#skip=<n>" and a walk started from it
-- drops the items already returned. The walk also ends at spec.total_pages
-- (path or function), when spec.next (the API's own next page number) is
-- missing, or on a page shorter than spec.page_size.
function M.pages(spec)
  check(spec, "pages")
  local total_of = spec.total_pages ~= nil and accessor(spec.total_pages, "total_pages") or nil
  local next_of = spec.next ~= nil and accessor(spec.next, "next") or nil
  local page_size = spec.page_size
  local first, skip = decode_resume(spec.start)
  first = tonumber(first) or spec.first or 1
  return walk(spec, {
    first = first,
    skip = skip,
    resumable = true,
    advance = function(body, _, list, page)
      if page_size and #list < page_size then return nil end
      local total = total_of and tonumber(total_of(body)) or nil
      if total and page >= total then return nil end
      if next_of then return tonumber(next_of(body)) end
      return page + 1
    end,
    same_page = true,
  })
end

-- ---- time windows --------------------------------------------------------------------

local function time_less(a, b)
  local na, nb = tonumber(a), tonumber(b)
  if na and nb then return na < nb end
  return tostring(a) < tostring(b)
end

-- fetch(bound, remaining): bound is spec.start (or nil) first, then the time
-- to continue from. spec.time (path or function(item)) is an item's time:
-- a number, a numeric string (Slack's "1712345678.000200") or an ISO 8601
-- string (compared as text: keep one format). spec.order:
--   "descending" (default): newest first (Slack conversations.history); the
--                next bound is the oldest time on the page: send it as `latest`
--   "ascending": oldest first (updated_since, modified_after); the next bound
--                is the newest time on the page: send it as `since`
-- spec.key (path or function(item)) drops items already returned, for APIs
-- whose bound is inclusive. A bound that does not move ends the walk, and so
-- does a page shorter than spec.page_size. Pages (and collect) also carry
-- `newest`, the newest time seen: where a sync starts next time.
function M.window(spec)
  check(spec, "window")
  if spec.time == nil then error("ferry.paginate.window: spec.time is required", 2) end
  if spec.order ~= nil and spec.order ~= "ascending" and spec.order ~= "descending" then
    error("ferry.paginate.window: order must be \"ascending\" or \"descending\"", 2)
  end
  local time_of = accessor(spec.time, "time")
  local key_of = spec.key ~= nil and accessor(spec.key, "key") or nil
  local items_of = accessor(spec.items or "results", "items")
  local ascending = spec.order == "ascending"
  local page_size = spec.page_size
  local newest, keys, raw_count = nil, {}, 0

  -- the oldest (descending) or newest (ascending) time among list[1..n]
  local function bound_of(list, n)
    local b
    for i = 1, n do
      local t = data.value(time_of(list[i]))
      if t ~= nil and (b == nil or (ascending and time_less(b, t)) or (not ascending and time_less(t, b))) then
        b = t
      end
    end
    return b
  end

  return walk(spec, {
    first = cursor_value(spec.start),
    items_of = function(body, resp)
      local list = items_of(body, resp)
      raw_count = type(list) == "table" and #list or 0
      if type(list) ~= "table" or not key_of then return list end
      local out = {}
      for i = 1, #list do
        local k = data.value(key_of(list[i]))
        if k == nil or not keys[cursor_key(k)] then out[#out + 1] = list[i] end
      end
      return out
    end,
    advance = function(_, _, list)
      if page_size and raw_count < page_size then return nil end
      return bound_of(list, #list)
    end,
    cut_next = function(_, n, list) return bound_of(list, n) end,
    after_page = function(page)
      for _, item in ipairs(page.items) do
        local t = data.value(time_of(item))
        if t ~= nil and (newest == nil or time_less(newest, t)) then newest = t end
        if key_of then
          local k = data.value(key_of(item))
          if k ~= nil then keys[cursor_key(k)] = true end
        end
      end
      page.newest = newest
    end,
  })
end

-- ---- collecting ------------------------------------------------------------------------

-- The whole walk: {items = every item in one list, next = where to continue
-- (nil when the walk reached the end), pages = how many, newest = the newest
-- time seen (window style)}, or nil, err. `spec` is a cursor spec, a spec
-- with `style = "offset" | "link" | "pages" | "window" | "cursor"`, or an
-- iterator made by one of the styles.
function M.collect(spec)
  local iter = spec
  if type(spec) == "table" then
    local style = spec.style or "cursor"
    if type(M[style]) ~= "function" or style == "collect" or style == "parse_link" or style == "resolve" or
       style == "relative" then
      error("ferry.paginate.collect: unknown style " .. tostring(style), 2)
    end
    iter = M[style](spec)
  end
  local all, last = {}, nil
  for page, err in iter do
    if not page then return nil, err end
    for i = 1, #page.items do all[#all + 1] = page.items[i] end
    last = page
  end
  local next_cursor = last and last.next or nil
  if type(next_cursor) == "number" then next_cursor = tostring(next_cursor) end
  return {items = data.array(all), next = next_cursor, pages = last and last.number or 0,
          newest = last and last.newest or nil}
end

return M
