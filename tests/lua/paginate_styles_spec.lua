-- luacheck: std lua51+busted
-- ferry.paginate's other styles: offset, Link header, page numbers, time
-- windows, and collect over any of them.
local paginate = require "ferry.paginate"

local function walk(iter)
  local pages = {}
  for page, err in iter do
    if not page then return pages, err end
    pages[#pages + 1] = page
  end
  return pages
end

local function items_of(pages)
  local out = {}
  for _, p in ipairs(pages) do
    for _, item in ipairs(p.items) do out[#out + 1] = item end
  end
  return out
end

describe("ferry.paginate.offset", function()
  -- an API over 1..n that honours offset and limit
  local function api(n, opts)
    opts = opts or {}
    local calls = {}
    local function fetch(offset, remaining)
      calls[#calls + 1] = {offset = offset, remaining = remaining}
      local size = math.min(remaining or opts.size or 3, opts.size or 3)
      local data = {}
      for i = offset + 1, math.min(offset + size, n) do data[#data + 1] = i end
      return {data = data, total = n, has_more = offset + size < n}
    end
    return fetch, calls
  end

  it("counts offsets until the total", function()
    local fetch, calls = api(7)
    local pages = walk(paginate.offset{fetch = fetch, items = "data", total = "total"})
    assert.are.same({1, 2, 3, 4, 5, 6, 7}, items_of(pages))
    assert.are.same({0, 3, 6}, {calls[1].offset, calls[2].offset, calls[3].offset})
    assert.is_nil(pages[3].next)
  end)

  it("stops on has_more false", function()
    local fetch, calls = api(4)
    walk(paginate.offset{fetch = fetch, items = "data", has_more = "has_more"})
    assert.are.equal(2, #calls)
  end)

  it("stops on a short page when page_size is given, and on an empty page", function()
    local fetch, calls = api(5)
    walk(paginate.offset{fetch = fetch, items = "data", page_size = 3})
    assert.are.equal(2, #calls)
    fetch, calls = api(6)
    walk(paginate.offset{fetch = fetch, items = "data"})
    assert.are.equal(3, #calls, "the third page is empty")
  end)

  it("stops at the limit and continues exactly where it stopped", function()
    local fetch = api(20, {size = 10})
    local got = paginate.collect{style = "offset", fetch = fetch, items = "data", limit = 4}
    assert.are.same({1, 2, 3, 4}, got.items)
    assert.are.equal("4", got.next)
    got = paginate.collect{style = "offset", fetch = fetch, items = "data", limit = 3, start = got.next}
    assert.are.same({5, 6, 7}, got.items)
  end)

  it("cuts a page the API made longer than asked, and continues inside it", function()
    local fetch = api(20, {size = 5})
    local pages = walk(paginate.offset{fetch = function(o) return fetch(o, nil) end, items = "data", limit = 7})
    assert.are.same({1, 2, 3, 4, 5, 6, 7}, items_of(pages))
    assert.are.equal(7, pages[2].next)
  end)

  it("stops when the API ignores the offset and answers the same page", function()
    local calls = 0
    local pages = walk(paginate.offset{items = "data", fetch = function()
      calls = calls + 1
      return {data = {"a", "b"}}
    end})
    assert.are.equal(2, calls)
    assert.are.same({"a", "b"}, items_of(pages))
  end)
end)

describe("ferry.paginate.parse_link", function()
  it("reads several links, quoted parameters and several relation types", function()
    local links = paginate.parse_link('<https://api.x.io/items?page=2&per_page=5>; rel="next", ' ..
      '<https://api.x.io/items?page=9>; rel="last", <https://api.x.io/a,b>; title="x, y; z"; rel="prev first"')
    assert.are.equal(3, #links)
    assert.are.equal("https://api.x.io/items?page=2&per_page=5", links.by_rel.next.uri)
    assert.are.equal("https://api.x.io/items?page=9", links.by_rel.last.uri)
    assert.are.equal("https://api.x.io/a,b", links.by_rel.prev.uri)
    assert.are.equal(links.by_rel.prev, links.by_rel.first)
    assert.are.equal("x, y; z", links[3].params.title)
  end)

  it("is case-insensitive for rel and parameter names, and takes unquoted values", function()
    local links = paginate.parse_link("</p2>; REL=Next")
    assert.are.equal("/p2", links.by_rel.next.uri)
  end)

  it("gives nothing for no header or garbage", function()
    assert.are.same({by_rel = {}}, paginate.parse_link(nil))
    assert.is_nil(paginate.parse_link("garbage").by_rel.next)
    assert.is_nil(paginate.parse_link("<unterminated; rel=next").by_rel.next)
  end)
end)

describe("ferry.paginate.resolve", function()
  it("resolves relative references against a base URL", function()
    local base = "https://api.x.io/v2/items?page=1"
    assert.are.equal("https://o.io/x", paginate.resolve(base, "https://o.io/x"))
    assert.are.equal("https://cdn.x.io/p", paginate.resolve(base, "//cdn.x.io/p"))
    assert.are.equal("https://api.x.io/v3/items?page=2", paginate.resolve(base, "/v3/items?page=2"))
    assert.are.equal("https://api.x.io/v2/items?page=2", paginate.resolve(base, "items?page=2"))
  end)
end)

describe("ferry.paginate.relative", function()
  it("gives the path of a URL under the base, nil for one elsewhere", function()
    local base = "https://graph.microsoft.com/v1.0"
    assert.are.equal("/me/messages?$skip=10", paginate.relative(base, base .. "/me/messages?$skip=10"))
    assert.are.equal("/me/messages", paginate.relative(base .. "/", base .. "/me/messages"))
    assert.is_nil(paginate.relative(base, "https://graph.microsoft.com/beta/me/messages"))
    assert.is_nil(paginate.relative(base, "https://graph.microsoft.com/v1.0x/me"), "a prefix that is not a segment")
    assert.is_nil(paginate.relative(base, "https://evil.example/v1.0/me"))
    assert.is_nil(paginate.relative(base, base), "the base itself is no path")
    assert.is_nil(paginate.relative(base, nil))
    assert.is_nil(paginate.relative(base, io.stdout))   -- JSON null
    assert.is_nil(paginate.relative("", "/me"))
  end)

  it("undoes resolve", function()
    local base = "https://api.example.com/v2"
    assert.are.equal("/items?page=2", paginate.relative(base, paginate.resolve(base .. "/items", "/v2/items?page=2")))
  end)
end)

describe("ferry.paginate.link", function()
  -- pages of the Link API: [url] = {items, next url}
  local function api(pages)
    local calls = {}
    local function fetch(url)
      calls[#calls + 1] = url or "first"
      local page = pages[url or "first"]
      local headers = {}
      if page[2] then headers.link = "<" .. page[2] .. '>; rel="next", <https://a.io/last>; rel="last"' end
      return page[1], {status = 200, headers = headers}
    end
    return fetch, calls
  end

  it("follows rel=next until there is none (the body is the list)", function()
    local fetch, calls = api{
      first = {{1, 2}, "https://a.io/i?page=2"},
      ["https://a.io/i?page=2"] = {{3, 4}, "https://a.io/i?page=3"},
      ["https://a.io/i?page=3"] = {{5}},
    }
    local pages = walk(paginate.link{fetch = fetch})
    assert.are.same({1, 2, 3, 4, 5}, items_of(pages))
    assert.are.same({"first", "https://a.io/i?page=2", "https://a.io/i?page=3"}, calls)
  end)

  it("stops on a repeated link and on an empty page", function()
    local fetch, calls = api{first = {{1}, "https://a.io/x"}, ["https://a.io/x"] = {{2}, "https://a.io/x"}}
    walk(paginate.link{fetch = fetch})
    assert.are.equal(2, #calls)
    fetch, calls = api{first = {{1}, "https://a.io/y"}, ["https://a.io/y"] = {{}, "https://a.io/z"}}
    walk(paginate.link{fetch = fetch})
    assert.are.equal(2, #calls)
  end)

  it("resolves relative links with base_url and reads items at a path", function()
    local seen = {}
    local iter = paginate.link{base_url = "https://a.io/v1/items", items = "data", fetch = function(url)
      seen[#seen + 1] = url
      if url then return {data = {2}}, {headers = {}} end
      return {data = {1}}, {headers = {Link = '</v1/items?after=1>; rel="next"'}}
    end}
    assert.are.same({1, 2}, items_of(walk(iter)))
    assert.are.same({"https://a.io/v1/items?after=1"}, seen, "the first call has no URL")
  end)

  it("stops at the limit inside a page and continues there with a #skip cursor", function()
    local fetch = api{
      first = {{1, 2, 3}, "https://a.io/p2"},
      ["https://a.io/p2"] = {{4, 5, 6}, "https://a.io/p3"},
      ["https://a.io/p3"] = {{7}},
    }
    local got = paginate.collect{style = "link", fetch = fetch, limit = 4}
    assert.are.same({1, 2, 3, 4}, got.items)
    assert.are.equal("https://a.io/p2#skip=1", got.next)
    got = paginate.collect{style = "link", fetch = fetch, start = got.next}
    assert.are.same({5, 6, 7}, got.items)
    assert.is_nil(got.next)
  end)
end)

describe("ferry.paginate.pages", function()
  local function api(n, size)
    local calls = {}
    return function(page)
      calls[#calls + 1] = page
      local out = {}
      for i = (page - 1) * size + 1, math.min(page * size, n) do out[#out + 1] = i end
      return {results = out, total_pages = math.ceil(n / size), page = page}
    end, calls
  end

  it("counts pages from 1 until total_pages", function()
    local fetch, calls = api(7, 3)
    local pages = walk(paginate.pages{fetch = fetch, total_pages = "total_pages"})
    assert.are.same({1, 2, 3, 4, 5, 6, 7}, items_of(pages))
    assert.are.same({1, 2, 3}, calls)
  end)

  it("stops on a short page with page_size, on an empty page, and at first = 0", function()
    local fetch, calls = api(7, 3)
    walk(paginate.pages{fetch = fetch, page_size = 3})
    assert.are.equal(3, #calls)
    fetch, calls = api(6, 3)
    walk(paginate.pages{fetch = fetch})
    assert.are.same({1, 2, 3}, calls)
    local seen = {}
    walk(paginate.pages{first = 0, fetch = function(p)
      seen[#seen + 1] = p
      return {results = p < 2 and {p} or {}}
    end})
    assert.are.same({0, 1, 2}, seen)
  end)

  it("follows the API's own next page number, stopping when it is missing or repeats", function()
    local seen = {}
    walk(paginate.pages{next = "next_page", fetch = function(p)
      seen[#seen + 1] = p
      local nexts = {[1] = 5, [5] = 5}
      return {results = {p}, next_page = nexts[p]}
    end})
    assert.are.same({1, 5}, seen)
  end)

  it("stops when the API ignores the page number", function()
    local calls = 0
    local pages = walk(paginate.pages{fetch = function()
      calls = calls + 1
      return {results = {{id = 1}, {id = 2}}}
    end})
    assert.are.equal(2, calls)
    assert.are.equal(2, #items_of(pages))
  end)

  it("stops at the limit inside a page and continues there", function()
    local fetch = api(10, 4)
    local got = paginate.collect{style = "pages", fetch = fetch, limit = 6}
    assert.are.same({1, 2, 3, 4, 5, 6}, got.items)
    assert.are.equal("2#skip=2", got.next)
    got = paginate.collect{style = "pages", fetch = fetch, start = got.next, limit = 3}
    assert.are.same({7, 8, 9}, got.items)
    assert.are.equal("3#skip=1", got.next)
  end)
end)

describe("ferry.paginate.window", function()
  -- Slack-like history: messages newest first, `latest` exclusive
  local messages = {}
  for i = 10, 1, -1 do messages[#messages + 1] = {ts = ("17000000%02d.000100"):format(i), text = "m" .. i} end
  local function history(size)
    local calls = {}
    return function(latest, remaining)
      calls[#calls + 1] = {latest = latest, remaining = remaining}
      local out = {}
      for _, m in ipairs(messages) do
        if (latest == nil or tonumber(m.ts) < tonumber(latest)) and #out < math.min(size, remaining or size) then
          out[#out + 1] = m
        end
      end
      local more = #out > 0 and tonumber(out[#out].ts) > tonumber(messages[#messages].ts)
      return {messages = out, has_more = more}
    end, calls
  end

  it("walks backwards in time: the next latest is the oldest time on the page", function()
    local fetch, calls = history(4)
    local pages = walk(paginate.window{fetch = fetch, items = "messages", time = "ts", has_more = "has_more"})
    assert.are.equal(10, #items_of(pages))
    assert.are.equal(3, #calls)
    assert.are.equal("1700000007.000100", calls[2].latest)
    assert.are.equal("1700000010.000100", pages[3].newest)
  end)

  it("stops at the limit; next is the oldest item returned", function()
    local fetch = history(4)
    local got = paginate.collect{style = "window", fetch = fetch, items = "messages", time = "ts", limit = 5}
    assert.are.equal(5, #got.items)
    assert.are.equal("1700000006.000100", got.next)
    got = paginate.collect{style = "window", fetch = fetch, items = "messages", time = "ts", start = got.next}
    assert.are.equal("m5", got.items[1].text)
    assert.are.equal(5, #got.items)
  end)

  it("walks forwards with updated_since, dropping repeats of an inclusive bound", function()
    local rows = {{id = "a", updated = "2024-01-01T00:00:00Z"}, {id = "b", updated = "2024-01-02T00:00:00Z"},
                  {id = "c", updated = "2024-01-02T00:00:00Z"}, {id = "d", updated = "2024-01-03T00:00:00Z"}}
    local calls = {}
    local function fetch(since)
      calls[#calls + 1] = since or "start"
      local out = {}
      for _, r in ipairs(rows) do
        if (since == nil or r.updated >= since) and #out < 3 then out[#out + 1] = r end
      end
      return {results = out}
    end
    local got = paginate.collect{style = "window", order = "ascending", fetch = fetch, time = "updated", key = "id"}
    local ids = {}
    for i, r in ipairs(got.items) do ids[i] = r.id end
    assert.are.same({"a", "b", "c", "d"}, ids)
    assert.are.equal("2024-01-03T00:00:00Z", got.newest)
    assert.are.same({"start", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"}, {calls[1], calls[2], calls[3]})
  end)

  it("stops when the bound does not move", function()
    local calls = 0
    walk(paginate.window{time = "t", start = 5, fetch = function()
      calls = calls + 1
      return {results = {{t = 5}, {t = 5}}}
    end})
    assert.are.equal(1, calls)
  end)

  it("requires time and a known order", function()
    assert.has_error(function() paginate.window{fetch = function() end} end)
    assert.has_error(function() paginate.window{fetch = function() end, time = "t", order = "up"} end)
  end)
end)

describe("ferry.paginate.collect", function()
  it("collects an iterator made by any style, and refuses unknown styles", function()
    local got = paginate.collect(paginate.pages{fetch = function(p) return {results = p == 1 and {"x"} or {}} end})
    assert.are.same({"x"}, got.items)
    assert.are.equal(2, got.pages)
    assert.has_error(function() paginate.collect{style = "nope", fetch = function() end} end)
  end)

  it("passes a failed page's error through", function()
    local got, err = paginate.collect{style = "offset", fetch = function() return nil, {code = "upstream_timeout"} end}
    assert.is_nil(got)
    assert.are.equal("upstream_timeout", err.code)
  end)
end)
