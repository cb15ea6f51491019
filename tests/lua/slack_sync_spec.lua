-- luacheck: std lua51+busted
-- providers/slack.lua's `messages` sync against a small model of Slack and
-- of the sync contract:
--   * `slack` answers auth.test, conversations.list and conversations.history
--     the way Slack does (newest first, `oldest` exclusive, pages of at most
--     `page_size` with has_more and response_metadata.next_cursor, ok:false
--     errors, 429 with Retry-After), so a run pages through real state;
--   * the ctx keeps records the way the sync engine promises: upserts and
--     deletions are staged and committed only by ctx.checkpoint(cursor),
--     together with the cursor; a run that fails or crashes loses what it
--     staged after its last checkpoint, and the next run starts from that
--     checkpoint's cursor (as the engine's runner does after a 429 or a
--     crash). Records are keyed by (kind, external_id), so a replayed page
--     overwrites instead of adding.
local cjson = require "cjson"

local slack = dofile("providers/slack.lua")
local sync = slack.syncs.messages

local NOW = 1714982400                 -- 2024-05-06T08:00:00Z
local HOUR, DAY = 3600, 86400

local function ts(t, micro) return string.format("%d.%06d", t, micro or 0) end
local function copy(v) return cjson.decode(cjson.encode(v)) end

---------------------------------------------------------------------------
-- A workspace: channels with messages, answering like Slack.

local function workspace()
  local w = {
    page_size = 3, url = "https://acme.slack.com/", team = "Acme", user = "ferrybot",
    channels = {}, order = {},
    fail = {},          -- request number → {status, body, headers} or "timeout" or "crash"
    requests = {},
  }
  function w.channel(id, name, member)
    w.channels[id] = {id = id, name = name, is_member = member ~= false, messages = {}}
    w.order[#w.order + 1] = id
    return w.channels[id]
  end
  function w.post(id, t, text, extra)
    local m = {type = "message", ts = t, user = "U1", text = text}
    for k, v in pairs(extra or {}) do m[k] = v end
    table.insert(w.channels[id].messages, m)
    return m
  end
  function w.find(id, t)
    for i, m in ipairs(w.channels[id].messages) do
      if m.ts == t then return m, i end
    end
  end
  function w.remove(id, t)
    local _, i = w.find(id, t)
    table.remove(w.channels[id].messages, i)
  end

  local function history(q)
    local c = w.channels[q.channel]
    if not c then return {ok = false, error = "channel_not_found"} end
    if not c.is_member then return {ok = false, error = "not_in_channel"} end
    local list = {}
    for _, m in ipairs(c.messages) do
      if not q.oldest or tonumber(m.ts) > tonumber(q.oldest) then list[#list + 1] = m end
    end
    table.sort(list, function(a, b) return tonumber(a.ts) > tonumber(b.ts) end)
    local start = 1
    if q.cursor then
      local before = q.cursor:match("^next_ts:(.+)$")
      if not before then return {ok = false, error = "invalid_cursor"} end
      start = #list + 1
      for i, m in ipairs(list) do
        if tonumber(m.ts) < tonumber(before) then start = i; break end
      end
    end
    local n = math.min(q.limit or 100, w.page_size)
    local page = {}
    for i = start, math.min(start + n - 1, #list) do page[#page + 1] = copy(list[i]) end
    local more = start + n - 1 < #list
    return {ok = true, messages = page, has_more = more,
            response_metadata = {next_cursor = more and ("next_ts:" .. page[#page].ts) or ""}}
  end

  local function list()
    local out = {}
    for _, id in ipairs(w.order) do
      local c = w.channels[id]
      if c then out[#out + 1] = {id = c.id, name = c.name, is_channel = true, is_member = c.is_member} end
    end
    return {ok = true, channels = out, response_metadata = {next_cursor = ""}}
  end

  function w.answer(req)
    w.requests[#w.requests + 1] = req
    local f = w.fail[#w.requests]
    if f == "crash" then error("the process died here") end
    if f == "timeout" then return nil, {code = "upstream_timeout", message = "Slack did not answer in time"} end
    local status, headers, body = 200, {}
    if f then
      status, body, headers = f[1], f[2], f[3] or {}
    elseif req.path == "/auth.test" then
      body = {ok = true, url = w.url, team = w.team, user = w.user}
    elseif req.path == "/conversations.list" then
      body = list()
    elseif req.path == "/conversations.history" then
      body = history(req.query)
    else
      status, body = 404, {ok = false, error = "unknown_method"}
    end
    local text = cjson.encode(body)
    return {status = status, ok = status >= 200 and status < 300, headers = headers, body = text,
            json = function() return cjson.decode(text) end}
  end
  return w
end

---------------------------------------------------------------------------
-- The sync contract: staged writes, committed with the cursor.

local function store()
  local st = {records = {}, cursor = nil, checkpoints = {}, writes = {}}
  local staged = {}
  local function key(kind, id) return kind .. "|" .. id end
  function st.ctx(w)
    return {
      http = {request = w.answer},
      records = {
        upsert = function(kind, id, fields)
          staged[#staged + 1] = {op = "upsert", key = key(kind, id), fields = copy(fields)}
          return true
        end,
        delete = function(kind, id)
          staged[#staged + 1] = {op = "delete", key = key(kind, id)}
          return true
        end,
      },
      checkpoint = function(cursor)
        for _, s in ipairs(staged) do
          st.writes[#st.writes + 1] = s
          if s.op == "upsert" then st.records[s.key] = s.fields else st.records[s.key] = nil end
        end
        staged = {}
        st.cursor = copy(cursor)
        st.checkpoints[#st.checkpoints + 1] = st.cursor
      end,
    }
  end
  -- One run as the engine's runner does it: from the last committed cursor;
  -- a failure or crash rolls back what was staged since.
  function st.run(w)
    local ok, stats, err = pcall(sync.run, st.ctx(w), st.cursor and copy(st.cursor) or nil)
    staged = {}
    if not ok then return nil, {code = "crash", message = tostring(stats)} end
    return stats, err
  end
  function st.ids()
    local out = {}
    for k in pairs(st.records) do out[#out + 1] = k end
    table.sort(out)
    return out
  end
  return st
end

local function ids(channel, list)
  local out = {}
  for _, t in ipairs(list) do out[#out + 1] = "message|" .. channel .. ":" .. t end
  table.sort(out)
  return out
end

local function history_requests(w)
  local out = {}
  for _, r in ipairs(w.requests) do
    if r.path == "/conversations.history" then out[#out + 1] = r end
  end
  return out
end

local real_time = os.time
local clock = NOW
before_each(function()
  clock = NOW
  os.time = function(t) if t then return real_time(t) end return clock end   -- luacheck: ignore 122
end)
after_each(function()
  os.time = real_time   -- luacheck: ignore 122
end)

---------------------------------------------------------------------------

describe("slack sync `messages`", function()
  it("is a 15 minute communications sync", function()
    assert.are.equal("15m", sync.every)
    assert.are.equal("communications", sync.category)
  end)

  it("first run: member channels only, 30 days back, page by page with a checkpoint after each", function()
    local w = workspace()
    w.channel("C2", "random")
    w.channel("C1", "general")
    w.channel("C9", "secret", false)            -- not a member: not read
    for i = 1, 7 do w.post("C1", ts(NOW - i * 60), "general " .. i) end
    w.post("C1", ts(NOW - 40 * DAY), "too old")
    w.post("C1", ts(NOW - 30), "joined", {subtype = "channel_join"})
    w.post("C2", ts(NOW - 10, 5), "hello <@U2> see <https://example.com/a|the doc> &amp; <#C1|general>",
           {user = "U7", edited = {user = "U7", ts = ts(NOW - 5)}, thread_ts = ts(NOW - 10, 5), reply_count = 2,
            files = {{name = "plan.pdf", title = "Plan", filetype = "pdf"}}})
    local st = store()
    local stats, err = st.run(w)
    assert.is_nil(err)
    assert.are.same({channels = 2, pages = 4, upserted = 8, deleted = 0, skipped = 0, more = false}, stats)

    -- auth.test once (the permalink base), the list, then C1's three pages and C2's one
    local paths = {}
    for i, r in ipairs(w.requests) do paths[i] = r.path .. (r.query and r.query.channel and (" " .. r.query.channel)
                                                              or "") end
    assert.are.same({"/auth.test", "/conversations.list", "/conversations.history C1", "/conversations.history C1",
                     "/conversations.history C1", "/conversations.history C2"}, paths)
    local list = w.requests[2]
    assert.are.same({types = "public_channel,private_channel", exclude_archived = true, limit = 200}, list.query)
    assert.are.equal("tier2", list.tier)
    local h = history_requests(w)
    assert.are.same({channel = "C1", oldest = ts(NOW - 30 * DAY), limit = 200}, h[1].query)
    assert.are.equal("tier3", h[1].tier)
    assert.are.equal(10000, h[1].timeout_ms)
    assert.are.equal("next_ts:" .. ts(NOW - 120), h[2].query.cursor)
    assert.are.equal("next_ts:" .. ts(NOW - 300), h[3].query.cursor)

    local want = ids("C1", {ts(NOW - 60), ts(NOW - 120), ts(NOW - 180), ts(NOW - 240), ts(NOW - 300), ts(NOW - 360),
                            ts(NOW - 420)})
    want[#want + 1] = "message|C2:" .. ts(NOW - 10, 5)
    table.sort(want)
    assert.are.same(want, st.ids())

    local r = st.records["message|C2:" .. ts(NOW - 10, 5)]
    assert.are.equal("#random: hello @U2 see the doc (https://example.com/a) & #general", r.title)
    assert.are.equal("U7 in #random at 2024-05-06T07:59:50Z:\nhello @U2 see the doc (https://example.com/a) & " ..
                     "#general\nFiles: Plan", r.text)
    assert.are.equal("https://acme.slack.com/archives/C2/p1714982390000005", r.url)
    assert.are.equal("2024-05-06T07:59:55Z", r.updated_at)
    assert.are.same({ts = ts(NOW - 10, 5), time = "2024-05-06T07:59:50Z", user = "U7", channel_id = "C2",
                     channel = "random", text = "hello @U2 see the doc (https://example.com/a) & #general",
                     thread_ts = ts(NOW - 10, 5), reply_count = 2, edited_at = "2024-05-06T07:59:55Z",
                     files = {{name = "plan.pdf", title = "Plan", type = "pdf"}},
                     permalink = "https://acme.slack.com/archives/C2/p1714982390000005"}, r.data)

    -- one checkpoint per page, and one at the end; walks in progress are in them
    assert.are.equal(5, #st.checkpoints)
    assert.are.same({from = ts(NOW - 30 * DAY), started = NOW, cursor = "next_ts:" .. ts(NOW - 120),
                     newest = ts(NOW - 30), seen = {ts(NOW - 60), ts(NOW - 120)}},
                    st.checkpoints[1].channels.C1.walk)
    local final = st.cursor
    assert.are.equal("https://acme.slack.com/", final.team_url)
    assert.is_nil(final.resume_after)
    assert.are.same({oldest = ts(NOW - 30), recent = {ts(NOW - 420), ts(NOW - 360), ts(NOW - 300), ts(NOW - 240),
                                                       ts(NOW - 180), ts(NOW - 120), ts(NOW - 60)}},
                    final.channels.C1)
    assert.are.equal(ts(NOW - 10, 5), final.channels.C2.oldest)
    assert.is_nil(final.channels.C9)
  end)

  it("later runs read what is new plus the last hour again: recent edits and deletions are followed", function()
    local w = workspace()
    w.channel("C1", "general")
    local old = w.post("C1", ts(NOW - 3 * HOUR), "old message")
    w.post("C1", ts(NOW - 40 * 60), "to be deleted")
    local recent = w.post("C1", ts(NOW - 20 * 60), "to be edited")
    w.post("C1", ts(NOW - 10 * 60), "stays")
    local st = store()
    assert.is_table(st.run(w))
    assert.are.equal(4, #st.ids())

    clock = NOW + 15 * 60
    old.text = "old message, edited"            -- too old to be read again: not seen
    recent.text = "edited"
    recent.edited = {user = "U1", ts = ts(clock - 60)}
    w.remove("C1", ts(NOW - 40 * 60))
    w.post("C1", ts(clock - 30), "new")
    w.requests = {}
    local stats, err = st.run(w)
    assert.is_nil(err)
    assert.are.same({channels = 1, pages = 1, upserted = 3, deleted = 1, skipped = 0, more = false}, stats)
    -- oldest is an hour before now (older than the high-water mark); no auth.test again
    assert.are.same({"/conversations.list", "/conversations.history"}, {w.requests[1].path, w.requests[2].path})
    assert.are.equal(ts(clock - HOUR), w.requests[2].query.oldest)
    assert.are.same(ids("C1", {ts(NOW - 3 * HOUR), ts(NOW - 20 * 60), ts(NOW - 10 * 60), ts(clock - 30)}), st.ids())
    assert.are.equal("edited", st.records["message|C1:" .. ts(NOW - 20 * 60)].data.text)
    assert.are.equal("old message", st.records["message|C1:" .. ts(NOW - 3 * HOUR)].data.text)
    assert.are.same({oldest = ts(clock - 30), recent = {ts(NOW - 20 * 60), ts(NOW - 10 * 60), ts(clock - 30)}},
                    st.cursor.channels.C1)

    -- a quiet channel: only after its high-water mark once that is older than an hour
    clock = NOW + 3 * HOUR
    w.requests = {}
    stats = st.run(w)
    assert.are.same({channels = 1, pages = 1, upserted = 0, deleted = 0, skipped = 0, more = false}, stats)
    assert.are.equal(ts(NOW + 15 * 60 - 30), w.requests[2].query.oldest)
    assert.are.same({oldest = ts(NOW + 15 * 60 - 30), recent = {}}, st.cursor.channels.C1)
  end)

  it("a crash between pages resumes at the checkpointed cursor, without duplicates or a gap", function()
    local w = workspace()
    w.channel("C1", "general")
    local all = {}
    for i = 1, 8 do
      w.post("C1", ts(NOW - i * 60), "m" .. i)
      all[#all + 1] = ts(NOW - i * 60)
    end
    w.fail[5] = "crash"                         -- auth.test, list, page 1, page 2, then page 3 dies
    local st = store()
    local stats, err = st.run(w)
    assert.is_nil(stats)
    assert.are.equal("crash", err.code)
    -- two pages committed with their cursor
    assert.are.same(ids("C1", {all[1], all[2], all[3], all[4], all[5], all[6]}), st.ids())
    assert.are.equal("next_ts:" .. all[6], st.cursor.channels.C1.walk.cursor)

    w.requests, w.fail = {}, {}
    stats, err = st.run(w)
    assert.is_nil(err)
    assert.are.same({channels = 1, pages = 1, upserted = 2, deleted = 0, skipped = 0, more = false}, stats)
    local h = history_requests(w)
    assert.are.equal(1, #h, "only the page that was lost is read again")
    assert.are.equal("next_ts:" .. all[6], h[1].query.cursor)
    assert.are.equal(ts(NOW - 30 * DAY), h[1].query.oldest, "the walk keeps its lower bound")
    assert.are.same(ids("C1", all), st.ids())
    assert.are.equal(8, #st.ids())
    assert.are.same({oldest = all[1], recent = {all[8], all[7], all[6], all[5], all[4], all[3], all[2], all[1]}},
                    st.cursor.channels.C1)
  end)

  it("a crash after writing a page but before its checkpoint replays that page; each record is committed once",
     function()
    local w = workspace()
    w.channel("C1", "general")
    for i = 1, 4 do w.post("C1", ts(NOW - i * 60), "m" .. i) end
    local st = store()
    local ctx_of = st.ctx
    local checkpoints = 0
    st.ctx = function(world)
      local ctx = ctx_of(world)
      local commit = ctx.checkpoint
      ctx.checkpoint = function(cursor)
        checkpoints = checkpoints + 1
        if checkpoints == 2 then error("killed before the commit") end
        return commit(cursor)
      end
      return ctx
    end
    assert.is_nil(st.run(w))
    assert.are.equal(3, #st.ids())             -- page 1 only

    local stats = st.run(w)
    assert.are.same({channels = 1, pages = 1, upserted = 1, deleted = 0, skipped = 0, more = false}, stats)
    assert.are.equal(4, #st.ids())
    local upserts = {}
    for _, wr in ipairs(st.writes) do
      if wr.op == "upsert" then upserts[wr.key] = (upserts[wr.key] or 0) + 1 end
    end
    for k, n in pairs(upserts) do assert.are.equal(1, n, k .. " committed once") end
  end)

  it("a 429 mid-pagination fails the run with retry_after; the next run goes on from that page", function()
    local w = workspace()
    w.channel("C1", "general")
    for i = 1, 5 do w.post("C1", ts(NOW - i * 60), "m" .. i) end
    w.fail[4] = {429, {ok = false, error = "ratelimited"}, {["retry-after"] = "30"}}
    local st = store()
    local stats, err = st.run(w)
    assert.is_nil(stats)
    assert.are.equal("upstream_rate_limited", err.code)
    assert.are.equal(30, err.retry_after)
    assert.are.equal(3, #st.ids())
    local lost = history_requests(w)[2].query.cursor

    w.requests, w.fail = {}, {}
    stats = st.run(w)
    assert.is_table(stats)
    assert.are.equal(lost, history_requests(w)[1].query.cursor)
    assert.are.equal(5, #st.ids())
  end)

  it("a page that times out fails the run the same way", function()
    local w = workspace()
    w.channel("C1", "general")
    for i = 1, 5 do w.post("C1", ts(NOW - i * 60), "m" .. i) end
    w.fail[4] = "timeout"
    local st = store()
    local stats, err = st.run(w)
    assert.is_nil(stats)
    assert.are.equal("upstream_timeout", err.code)
    w.requests, w.fail = {}, {}
    assert.is_table(st.run(w))
    assert.are.equal(5, #st.ids())
  end)

  it("skips a channel it can no longer read and keeps syncing the others", function()
    local w = workspace()
    w.channel("C1", "general")
    w.channel("C2", "random")
    w.post("C1", ts(NOW - 60), "a")
    w.post("C2", ts(NOW - 60), "b")
    local st = store()
    assert.is_table(st.run(w))
    clock = NOW + 900
    w.fail[2] = {200, {ok = false, error = "not_in_channel"}}   -- C1's history
    w.requests = {}
    local stats = st.run(w)
    assert.are.same({channels = 2, pages = 1, upserted = 1, deleted = 0, skipped = 1, more = false}, stats)
    assert.is_nil(st.cursor.channels.C1)
    assert.is_table(st.cursor.channels.C2)
    assert.are.equal(2, #st.ids(), "its records stay")

    -- a channel that drops out of the list (left, archived) is forgotten too
    w.channels.C2 = nil
    stats = st.run(w)
    assert.are.equal(1, stats.channels)
    assert.is_nil(st.cursor.channels.C2)
  end)

  it("reads the span again when Slack refuses a stale cursor", function()
    local w = workspace()
    w.channel("C1", "general")
    for i = 1, 5 do w.post("C1", ts(NOW - i * 60), "m" .. i) end
    w.fail[4] = "crash"
    local st = store()
    st.run(w)
    st.cursor.channels.C1.walk.cursor = "expired"
    w.requests, w.fail = {}, {}
    local stats = st.run(w)
    assert.is_table(stats)
    local h = history_requests(w)
    assert.are.equal("expired", h[1].query.cursor)
    assert.is_nil(h[2].query.cursor)
    assert.are.equal(5, #st.ids())
  end)

  it("limits pages per channel and per run, and starts the next run where this one stopped", function()
    local w = workspace()
    w.page_size = 1
    for n = 1, 9 do
      local id = "C" .. n
      w.channel(id, "ch" .. n)
      for i = 1, 6 do w.post(id, ts(NOW - i * 60), id .. " " .. i) end
    end
    local st = store()
    local stats = st.run(w)
    -- five pages each for channels 1..8 (40 pages), none for C9
    assert.are.same({channels = 9, pages = 40, upserted = 40, deleted = 0, skipped = 0, more = true}, stats)
    assert.are.equal("C8", st.cursor.resume_after)
    assert.is_nil(st.cursor.channels.C9)
    assert.is_table(st.cursor.channels.C1.walk)

    w.requests = {}
    stats = st.run(w)
    local order = {}
    for _, r in ipairs(history_requests(w)) do
      if order[#order] ~= r.query.channel then order[#order + 1] = r.query.channel end
    end
    assert.are.same({"C9", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8"}, order)
    assert.are.equal(13, stats.pages)          -- C9's first five, the last page of the others
    assert.is_true(stats.more)
    assert.are.equal(53, #st.ids())

    clock = NOW + 2 * HOUR                     -- nothing new, nothing recent to read again
    w.requests = {}
    stats = st.run(w)
    assert.are.same({channels = 9, pages = 9, upserted = 1, deleted = 0, skipped = 0, more = false}, stats)
    assert.are.equal("C9", history_requests(w)[1].query.channel)
    assert.is_nil(st.cursor.resume_after)
    assert.are.equal(54, #st.ids())
  end)

  it("deletes tombstones and leaves channel housekeeping out", function()
    local w = workspace()
    w.channel("C1", "general")
    w.post("C1", ts(NOW - 60), "This message was deleted.", {subtype = "tombstone"})
    w.post("C1", ts(NOW - 30), "", {subtype = "channel_topic"})
    local st = store()
    local stats = st.run(w)
    assert.are.same({channels = 1, pages = 1, upserted = 0, deleted = 1, skipped = 0, more = false}, stats)
    assert.are.same({{op = "delete", key = "message|C1:" .. ts(NOW - 60)}}, st.writes)
  end)

  it("fails without a checkpoint on a bad token, and when the record store fails", function()
    local w = workspace()
    w.channel("C1", "general")
    w.post("C1", ts(NOW - 60), "a")
    w.fail[1] = {200, {ok = false, error = "invalid_auth"}}
    local st = store()
    local stats, err = st.run(w)
    assert.is_nil(stats)
    assert.are.equal("reconnect_required", err.code)
    assert.are.same({}, st.checkpoints)

    w.requests, w.fail = {}, {}
    local ctx = st.ctx(w)
    ctx.records.upsert = function() return nil, {code = "internal", message = "disk full"} end
    stats, err = sync.run(ctx, nil)
    assert.is_nil(stats)
    assert.are.equal("disk full", err.message)
    assert.are.same({}, st.checkpoints)
  end)
end)
