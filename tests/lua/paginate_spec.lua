-- luacheck: std lua51+busted
local paginate = require "ferry.paginate"

-- A fake API: pages[cursor or "first"] is the body for that cursor; every
-- fetch is recorded as {cursor, remaining}.
local function api(pages)
  local calls = {}
  local function fetch(cursor, remaining)
    calls[#calls + 1] = {cursor = cursor, remaining = remaining}
    local body = pages[cursor or "first"]
    if type(body) == "function" then return body() end
    return body
  end
  return fetch, calls
end

local function walk(spec)
  local pages = {}
  for page, err in paginate.cursor(spec) do
    if not page then return pages, err end
    pages[#pages + 1] = page
  end
  return pages
end

describe("ferry.paginate.cursor", function()
  it("follows a cursor in the body until there is none (HubSpot paging.next.after)", function()
    local fetch, calls = api{
      first = {results = {1, 2}, paging = {next = {after = "c2"}}},
      c2 = {results = {3, 4}, paging = {next = {after = "c3"}}},
      c3 = {results = {5}},
    }
    local pages = walk{fetch = fetch, next = "paging.next.after"}
    assert.are.equal(3, #pages)
    assert.are.same({1, 2}, pages[1].items)
    assert.are.same({5}, pages[3].items)
    assert.is_nil(pages[1].cursor)
    assert.are.equal("c2", pages[1].next)
    assert.are.equal("c2", pages[2].cursor)
    assert.is_nil(pages[3].next)
    assert.are.same({1, 2, 3}, {pages[1].number, pages[2].number, pages[3].number})
    assert.are.same({{}, {cursor = "c2"}, {cursor = "c3"}}, calls)
  end)

  it("stops when has_more is false even with a cursor (Notion)", function()
    local fetch, calls = api{
      first = {results = {"a"}, has_more = true, next_cursor = "n2"},
      n2 = {results = {"b"}, has_more = false, next_cursor = "n3"},
    }
    local pages = walk{fetch = fetch, next = "next_cursor", has_more = "has_more"}
    assert.are.equal(2, #pages)
    assert.is_nil(pages[2].next)
    assert.are.equal(2, #calls)
  end)

  it("reads items and cursor at other paths (Asana data / next_page.offset)", function()
    local fetch = api{
      first = {data = {{gid = "1"}}, next_page = {offset = "o2"}},
      o2 = {data = {{gid = "2"}}, next_page = io.stdout},   -- JSON null
    }
    local pages = walk{fetch = fetch, items = "data", next = "next_page.offset"}
    assert.are.equal(2, #pages)
    assert.are.equal("2", pages[2].items[1].gid)
  end)

  it("stops on a repeated cursor", function()
    local fetch, calls = api{
      first = {results = {1}, next = "same"},
      same = {results = {2}, next = "same"},
    }
    local pages = walk{fetch = fetch, next = "next"}
    assert.are.equal(2, #pages)
    assert.is_nil(pages[2].next)
    assert.are.equal(2, #calls)
  end)

  it("treats the start cursor as seen", function()
    local fetch, calls = api{s = {results = {1}, next = "s"}}
    local pages = walk{fetch = fetch, next = "next", start = "s"}
    assert.are.equal(1, #pages)
    assert.are.equal("s", calls[1].cursor)
  end)

  it("stops on an empty page even with a cursor", function()
    local fetch, calls = api{
      first = {results = {1}, next = "c2"},
      c2 = {results = {}, next = "c3"},
    }
    local pages = walk{fetch = fetch, next = "next"}
    assert.are.equal(2, #pages)
    assert.are.equal(2, #calls)
    assert.is_nil(pages[2].next)
  end)

  it("follows a cursor past empty pages with follow_empty (change feeds), still stopping on a repeat", function()
    local fetch, calls = api{
      first = {results = {}, next = "c2"},
      c2 = {results = {1}, next = "c3"},
      c3 = {results = {}, next = "c4"},
      c4 = {results = {}, sync = "token"},
    }
    local pages = walk{fetch = fetch, next = "next", follow_empty = true}
    assert.are.equal(4, #pages)
    assert.are.same({"c2", "c3", "c4"}, {pages[1].next, pages[2].next, pages[3].next})
    assert.is_nil(pages[4].next)
    assert.are.equal("token", pages[4].body.sync)
    assert.are.equal(4, #calls)

    fetch, calls = api{first = {results = {}, next = "loop"}, loop = {results = {}, next = "loop"}}
    pages = walk{fetch = fetch, next = "next", follow_empty = true}
    assert.are.equal(2, #pages, "a repeated cursor still ends the walk")
    assert.are.equal(2, #calls)

    local n = 0
    pages = walk{fetch = function() n = n + 1; return {results = {}, next = "e" .. n} end, next = "next",
                 follow_empty = true, max_pages = 5}
    assert.are.equal(5, #pages, "and so does max_pages")
  end)

  it("stops at the limit, asks only for what remains and keeps the cursor to continue", function()
    local fetch, calls = api{
      first = {results = {1, 2, 3}, next = "c2"},
      c2 = {results = {4, 5, 6}, next = "c3"},
    }
    local pages = walk{fetch = fetch, next = "next", limit = 5}
    assert.are.equal(2, #pages)
    assert.are.same({4, 5}, pages[2].items, "the last page is cut to the limit")
    assert.are.equal("c3", pages[2].next)
    assert.are.same({{remaining = 5}, {cursor = "c2", remaining = 2}}, calls)
  end)

  it("stops after max_pages", function()
    local n = 0
    local function fetch()
      n = n + 1
      return {results = {n}, next = "c" .. n}
    end
    local pages = walk{fetch = fetch, next = "next", max_pages = 3}
    assert.are.equal(3, #pages)
    assert.are.equal("c3", pages[3].next)
  end)

  it("accepts functions for items, next and has_more", function()
    local fetch = api{first = {rows = {1}, meta = {cursor = 7}}, [7] = {rows = {2}, meta = {}}}
    local pages = walk{
      fetch = fetch,
      items = function(body) return body.rows end,
      next = function(body) return body.meta.cursor end,
      has_more = function(body) return body.meta.cursor ~= nil end,
    }
    assert.are.equal(2, #pages)
    assert.are.equal(7, pages[2].cursor)
  end)

  it("ignores cursors that are empty strings or not strings or numbers", function()
    for _, bad in ipairs({"", {}, true, io.stdout}) do
      local fetch, calls = api{first = {results = {1}, next = bad}}
      assert.are.equal(1, #walk{fetch = fetch, next = "next"})
      assert.are.equal(1, #calls)
    end
  end)

  it("treats a page without an items list as empty", function()
    local fetch = api{first = {next = "c2"}}
    local pages = walk{fetch = fetch, next = "next"}
    assert.are.equal(1, #pages)
    assert.are.same({}, pages[1].items)
  end)

  it("yields false, err for a failed page and then ends", function()
    local failure = {code = "upstream_error", message = "boom"}
    local fetch = api{first = {results = {1}, next = "c2"}, c2 = function() return nil, failure end}
    local it = paginate.cursor{fetch = fetch, next = "next"}
    assert.is_table(it())
    local page, err = it()
    assert.is_false(page)
    assert.are.equal(failure, err)
    assert.is_nil(it())
  end)

  it("gives a generic error when fetch fails without one", function()
    local it = paginate.cursor{fetch = function() return nil end, next = "next"}
    local page, err = it()
    assert.is_false(page)
    assert.are.equal("upstream_error", err.code)
  end)

  it("insists on fetch and next", function()
    assert.has_error(function() paginate.cursor{next = "n"} end)
    assert.has_error(function() paginate.cursor{fetch = function() end} end)
    assert.has_error(function() paginate.cursor{fetch = function() end, next = 5} end)
  end)
end)

describe("ferry.paginate.collect", function()
  it("returns every item and no cursor when the walk reached the end", function()
    local fetch = api{first = {results = {1, 2}, next = "c2"}, c2 = {results = {3}}}
    local got = paginate.collect{fetch = fetch, next = "next"}
    assert.are.same({items = {1, 2, 3}, pages = 2}, got)
  end)

  it("returns the cursor to continue from when the limit ended the walk", function()
    local fetch = api{first = {results = {1, 2}, next = "c2"}, c2 = {results = {3, 4}, next = "c3"}}
    local got = paginate.collect{fetch = fetch, next = "next", limit = 2}
    assert.are.same({items = {1, 2}, next = "c2", pages = 1}, got)
  end)

  it("returns nil, err when a page fails", function()
    local fetch = api{first = function() return nil, {code = "upstream_timeout", message = "late"} end}
    local got, err = paginate.collect{fetch = fetch, next = "next"}
    assert.is_nil(got)
    assert.are.equal("upstream_timeout", err.code)
  end)

  it("returns an empty list for an empty first page", function()
    local got = paginate.collect{fetch = api{first = {results = {}, next = "x"}}, next = "next"}
    assert.are.same({items = {}, pages = 1}, got)
  end)
end)
