-- Slack's messages sync (providers/slack.lua, the bundled provider as it
-- ships) in the real engine, against the fault server's Slack workspace
-- (tests/fault/slack.c: auth.test, conversations.list and .history with
-- Slack's cursors, a Bearer token check, and 429s, hangs and new posts on
-- request). Issue 8's "done means": a Slack connection syncs on its
-- schedule, survives kill -9 without losing or duplicating a message, obeys
-- Retry-After mid-sync, and its messages are found by /v1/search, but only
-- by users allowed to see them; the bot token is nowhere it should not be.
local h = require "helper"
local S = require "sync_helper"
local mime = require "mime"
local json = h.json

local TOKEN = "xoxb-7781-4410-synctestq8v2"
local TEAM_URL = "https://acme-test.slack.com/"

-- Set FERRY_TEST_SEED to replay a failing run's random moments.
local SEED = tonumber(os.getenv("FERRY_TEST_SEED") or "") or os.time()

local function query(params)
  local parts = {}
  for k, v in pairs(params or {}) do parts[#parts + 1] = k .. "=" .. tostring(v) end
  table.sort(parts)
  return table.concat(parts, "&")
end

-- POST /slack/control/<what>?params; the decoded answer.
local function control(fault, what, params)
  local status, text = h.request("POST", fault.url .. "/slack/control/" .. what .. "?" .. query(params), {body = ""})
  assert(status == 200, "slack " .. what .. ": " .. tostring(status) .. " " .. tostring(text))
  return json.decode(text)
end

local function upstream(fault, what)
  local status, text = h.request("GET", fault.url .. "/slack/control/" .. what)
  assert(status == 200, "slack " .. what .. ": " .. tostring(status))
  return json.decode(text)
end

-- The workspace's requests of one method, oldest first.
local function requests(fault, method)
  local out = {}
  for _, r in ipairs(upstream(fault, "log").requests) do
    if not method or r.method == method then out[#out + 1] = r end
  end
  return out
end

-- Slack's markup as the provider makes it plain (the workspace writes
-- mentions and &amp; only).
local function plain(text)
  return (text:gsub("<@(U%w+)>", "@%1"):gsub("&amp;", "&"))
end

-- {["<channel>:<ts>"] = plain text} of what the sync must store: the
-- messages of the channels the app is a member of, housekeeping left out.
local function expected(fault)
  local out, n = {}, 0
  for _, c in ipairs(upstream(fault, "state").channels) do
    if c.is_member then
      for _, m in ipairs(c.messages) do
        if m.subtype == nil then
          out[c.id .. ":" .. m.ts] = plain(m.text)
          n = n + 1
        end
      end
    end
  end
  return out, n
end

-- {[external_id] = text} of a connection's message records; fails on a
-- record stored twice.
local function stored(data, conn)
  local rows = h.sql(data, ("SELECT external_id, kind, json_extract(data, '$.text') FROM records" ..
                            " WHERE connection_id = '%s'"):format(conn))
  local out, n = {}, 0
  for _, r in ipairs(rows) do
    assert(out[r[1]] == nil, "message " .. r[1] .. " is stored twice")
    assert(r[2] == "message", "a record of kind " .. r[2])
    out[r[1]] = r[3]
    n = n + 1
  end
  return out, n
end

-- The records are exactly the upstream's member-channel messages.
local function assert_exact(fault, data, conn)
  local want, n = expected(fault)
  local have, m = stored(data, conn)
  for id, text in pairs(want) do
    assert(have[id], "message " .. id .. " is missing")
    assert(have[id] == text, "message " .. id .. " is stored with another text")
  end
  for id in pairs(have) do assert(want[id], id .. " is stored but is no member-channel message upstream") end
  assert.are.equal(n, m)
  return n
end

-- Slack's cursor "base64(next_ts:<ts>)" → "<ts>".
local function cursor_ts(cursor)
  local decoded = cursor and mime.unb64(cursor) or nil
  return decoded and decoded:match("^next_ts:(%d+%.%d+)$")
end

local function ts_le(a, b)
  local aw, af = a:match("^(%d+)%.(%d+)$")
  local bw, bf = b:match("^(%d+)%.(%d+)$")
  if aw ~= bw then return tonumber(aw) < tonumber(bw) end
  return af <= bf
end

-- What a crash may leave: every stored record is an upstream message (none
-- twice), and every promise of the committed cursor holds — a channel's
-- high-water mark means every message up to it is stored, a walk under way
-- means every message from its next cursor up to the newest it saw is.
local function assert_consistent(fault, data, conn)
  local state = upstream(fault, "state")
  local have = stored(data, conn)
  local all = {}
  for _, c in ipairs(state.channels) do
    for _, m in ipairs(c.messages) do all[c.id .. ":" .. m.ts] = plain(m.text) end
  end
  for id, text in pairs(have) do
    assert(all[id], id .. " is stored but the upstream never had it")
    assert(all[id] == text, id .. " is stored with a text the upstream never had")
  end
  local cursor = S.db_cursor(data, conn, "messages")
  local promises = 0
  for _, c in ipairs(state.channels) do
    local st = cursor and cursor.channels and cursor.channels[c.id]
    local walk = st and type(st.walk) == "table" and st.walk or nil
    -- The walk's committed pages: from its newest message down to (not
    -- including) the ts its next cursor starts at.
    local below = walk and cursor_ts(walk.cursor)
    for _, m in ipairs(st and c.messages or {}) do
      local id = c.id .. ":" .. m.ts
      local promised = (st.oldest and ts_le(m.ts, st.oldest)) or
                       (below and walk.newest and not ts_le(m.ts, below) and ts_le(m.ts, walk.newest))
      if promised and m.subtype == nil then
        assert(have[id], id .. " is promised by the committed cursor but missing: " .. json.encode(st))
        promises = promises + 1
      end
    end
  end
  return promises
end

-- A sync is complete when no walk is under way and no channel waits its turn.
local function complete(cursor)
  if type(cursor) ~= "table" or cursor.resume_after ~= nil then return false end
  for _, st in pairs(cursor.channels or {}) do
    if type(st) == "table" and st.walk ~= nil then return false end
  end
  return true
end

-- The token is nowhere in the database files, the log or the given texts.
local function assert_no_token(srv, texts)
  for _, f in ipairs({"/ferry.db", "/ferry.db-wal"}) do
    local bytes = h.read_file(srv.data .. f) or ""
    assert.is_nil(bytes:find(TOKEN, 1, true), "the token is in " .. f)
  end
  assert.is_nil((h.read_file(srv.log) or ""):find(TOKEN, 1, true), "the token is in ferry's log")
  assert.is_nil((h.read_file(srv.proc.stdout) or ""):find(TOKEN, 1, true), "the token is in ferry's stdout")
  for _, t in ipairs(texts or {}) do assert.is_nil(t:find(TOKEN, 1, true), "the token is in a response") end
end

local function start_ferry(fault, opts)
  opts = opts or {}
  local args = {"--sched-tick-ms", "50"}
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  return h.start_ferry{data = opts.data, providers = {}, base_urls = {slack = fault.url .. "/slack/api"},
                       syncs = true, args = args}
end

-- POST /v1/connections for Slack with the imported bot token; the id.
local function connect(srv, key, scope, label)
  local status, body, text = h.connect(srv, key, {integration = "slack", credentials = {access_token = TOKEN},
                                                  scope = scope or "user", label = label})
  assert(status == 201, "connect: " .. tostring(status) .. " " .. tostring(text))
  assert.is_nil(text:find(TOKEN, 1, true))
  return body.id, text
end

local function ended(run) return type(run) == "table" and run.status ~= "running" end

describe("Slack messages sync in the engine", function()
  local fault, srv

  before_each(function() fault = h.start_fault() end)
  after_each(function()
    if srv then pcall(srv.stop) end
    srv = nil
    fault.stop()
  end)

  describe("on its schedule, then in search", function()
    it("syncs by itself, only member channels, and search shows it to whom it may", function()
      -- Four channels, the app a member of three; pages of 50 (Slack may
      -- answer fewer than `limit`).
      control(fault, "reset", {channels = 4, members = 3, messages = 120, page_max = 50, seed = 11, token = TOKEN})
      srv = start_ferry(fault)
      local ann = srv.key("ann", "acme")
      local bob = srv.key("bob", "acme")
      local root = srv.key("root", "acme", "admin")
      local oz = srv.key("oz", "globex", "admin")
      local texts = {}
      local personal
      personal, texts[#texts + 1] = connect(srv, ann, "user", "ann's Slack")

      -- No manual run: the new connection's first run comes within 10 s.
      local t0 = h.now()
      local s = S.wait_sync(srv, ann, personal, "messages", function(x) return ended(x.last_run) end, 20)
      assert.is_true(h.now() - t0 < 12, "the first scheduled run took " .. (h.now() - t0) .. " s")
      local run = s.last_run
      assert.are.equal("succeeded", run.status, json.encode(run))
      assert.are.equal("schedule", run.trigger)
      assert.are.equal("15m", s.schedule)
      assert.are.equal("communications", s.category)
      local n = assert_exact(fault, srv.data, personal)
      assert.is_true(n > 300)
      assert.are.same({added = n, updated = 0, deleted = 0, unchanged = 0}, run.records)
      assert.are.equal(n, s.records)
      -- 120 messages a channel in pages of 50: three pages each, a
      -- checkpoint after each and one at the end.
      assert.are.equal(10, run.pages)
      assert.is_true(complete(s.cursor))
      assert.are.equal(TEAM_URL, s.cursor.team_url)
      -- The non-member channel was never read; every request carried the token.
      for _, r in ipairs(requests(fault)) do
        assert.are.equal("ok", r.auth)
        assert.are_not.equal("C0000004", r.channel)
      end
      -- The next run is the schedule's: 15 minutes after this one started, plus jitter.
      local _, list = S.get(srv, ann, "/v1/syncs?connection_id=" .. personal)
      assert.are.equal(1, #list.syncs)
      assert.are.equal("idle", list.syncs[1].status)
      assert.are.equal("succeeded", list.syncs[1].last_run.status)
      local gap = tonumber(h.sql(srv.data, ("SELECT j.next_run_at - r.started_at FROM sched_jobs j JOIN sync_runs r" ..
        " ON r.id = '%s' WHERE j.id = 'sync:%s:messages'"):format(run.id, personal))[1][1])
      assert.is_true(gap >= 900000 and gap <= 990000, "next run " .. gap .. " ms after this one started")

      -- A word found in exactly one message of a member channel.
      local state = upstream(fault, "state")
      local count, where = {}, {}
      for _, c in ipairs(state.channels) do
        for _, m in ipairs(c.messages) do
          for w in plain(m.text):lower():gmatch("%a+") do
            count[w] = (count[w] or 0) + 1
            where[w] = {channel = c, message = m}
          end
        end
      end
      local word, hidden
      for w, k in pairs(count) do
        if k == 1 and #w >= 8 then
          if where[w].channel.is_member and where[w].message.subtype == nil then
            if not word or w < word then word = w end
          elseif not where[w].channel.is_member and (not hidden or w < hidden) then
            hidden = w
          end
        end
      end
      assert.is_string(word, "no word unique to one message")
      assert.is_string(hidden, "no word unique to the non-member channel")
      local at = where[word]
      local external_id = at.channel.id .. ":" .. at.message.ts
      local permalink = TEAM_URL .. "archives/" .. at.channel.id .. "/p" .. at.message.ts:gsub("%.", "")

      local function search(key, q)
        local status, body, text = S.get(srv, key, "/v1/search?q=" .. q)
        texts[#texts + 1] = text
        return status, body
      end
      local function hits(key, q)
        local status, body = search(key, q)
        assert.are.equal(200, status, json.encode(body))
        local out = {}
        for _, r in ipairs(body.results) do out[#out + 1] = r end
        return out
      end

      -- The owner finds it, with a snippet and the message's permalink.
      local found = hits(ann, word)
      assert.are.equal(1, #found)
      assert.are.equal(external_id, found[1].external_id)
      assert.are.equal("message", found[1].kind)
      assert.are.equal(personal, found[1].connection_id)
      assert.are.equal("slack", found[1].integration)
      assert.are.equal("communications", found[1].doc_category)
      assert.are.equal(permalink, found[1].url)
      assert.matches("%*%*" .. word .. "%*%*", found[1].snippet:lower())
      assert.matches("^#" .. at.channel.name .. ": ", found[1].title)
      -- Nobody finds what is only in a channel the app is not in.
      assert.are.same({}, hits(ann, hidden))
      -- Another member of the team does not see ann's personal connection,
      -- an admin neither, another team never.
      assert.are.same({}, hits(bob, word))
      assert.are.same({}, hits(root, word))
      assert.are.same({}, hits(oz, word))

      -- A connection shared with the team: its messages are the team's.
      local shared
      shared, texts[#texts + 1] = connect(srv, root, "team", "team Slack")
      local run2 = S.run(srv, root, shared, "messages")
      assert.are.equal("succeeded", run2.status, json.encode(run2))
      assert_exact(fault, srv.data, shared)
      local function connections_of(results)
        local out = {}
        for _, r in ipairs(results) do out[#out + 1] = r.connection_id .. " " .. r.external_id end
        table.sort(out)
        return out
      end
      local both = {personal .. " " .. external_id, shared .. " " .. external_id}
      table.sort(both)
      assert.are.same(both, connections_of(hits(ann, word)))
      assert.are.same({shared .. " " .. external_id}, connections_of(hits(bob, word)))
      assert.are.same({shared .. " " .. external_id}, connections_of(hits(root, word)))
      assert.are.same({}, hits(oz, word))

      -- Without the communications category, bob sees none of it; asking
      -- for it by name is forbidden. With it back, he sees it again.
      local st = S.post(srv, root, "/v1/permissions", {user = "bob", category = "communications", allow = false})
      assert.are.equal(200, st)
      assert.are.same({}, hits(bob, word))
      local status, body = search(bob, word .. "&category=communications")
      assert.are.equal(403, status)
      assert.are.equal("forbidden", body.error.code)
      assert.are.equal(2, #hits(ann, word), "ann's own permissions are untouched")
      st = S.post(srv, root, "/v1/permissions", {user = "bob", category = "communications"})
      assert.are.equal(200, st)
      assert.are.same({shared .. " " .. external_id}, connections_of(hits(bob, word)))

      -- GET /v1/syncs and the sync's runs never carry the token either.
      for _, path in ipairs({"/v1/syncs", "/v1/syncs/" .. personal .. "/messages", "/v1/connections"}) do
        local _, _, text = S.get(srv, ann, path)
        texts[#texts + 1] = text
      end
      srv.stop()
      assert_no_token(srv, texts)
      srv = nil
    end)

    it("refuses a token Slack refuses (HTTP 200, invalid_auth): no connection, nothing stored", function()
      control(fault, "reset", {channels = 2, members = 2, messages = 10, token = TOKEN})
      srv = start_ferry(fault)
      local ann = srv.key("ann", "acme")
      local status, body, text = h.connect(srv, ann, {integration = "slack", scope = "user",
                                                      credentials = {access_token = "xoxb-wrong-token-0000"}})
      -- docs/connections.md: a failed check deletes the connection; a
      -- refused credential is invalid_arguments.
      assert.are.equal(400, status, text)
      assert.are.equal("invalid_arguments", body.error.code)
      local _, list = S.get(srv, ann, "/v1/connections")
      assert.are.same({}, list.connections)
      local log = requests(fault)
      assert.are.equal(1, #log)
      assert.are.same({"auth.test", "wrong", "invalid_auth"}, {log[1].method, log[1].auth, log[1].error})
      assert.are.equal("0", h.sql(srv.data, "SELECT count(*) FROM records")[1][1])
    end)
  end)

  it("survives kill -9 at random moments without losing or duplicating a message", function()
    print("\nslack sync crash seed " .. SEED .. " (FERRY_TEST_SEED replays it)")
    math.randomseed(SEED)
    -- 2,700 messages in three member channels (and 900 in a fourth the app
    -- is not in), pages of 50: 54 pages, at most 5 a channel and 40 a run,
    -- so walks span runs. Pages take 30 ms; new messages are posted while
    -- the sync pages (3 before every 7th page) and while ferry is down.
    control(fault, "reset", {channels = 4, members = 3, messages = 900, page_max = 50, seed = SEED % 1000,
                             text = 200, token = TOKEN})
    control(fault, "faults", {delay_ms = 30, post_every = 7, post_n = 3})
    local data = h.tmpdir() .. "/data"
    local opts = {data = data, args = {"--sync-lease-ms", "600"}}
    srv = start_ferry(fault, opts)
    local key = srv.key("ada", "acme", "admin")
    local conn = connect(srv, key, "user", "crash")
    srv.stop()

    local kills, mid_run, promises = 0, 0, 0
    for _ = 1, 16 do
      srv = start_ferry(fault, opts)
      local before = upstream(fault, "log").history
      -- Make the sync due (a killed run is due already: this process takes
      -- it over once the dead one's lease expires).
      S.post(srv, key, "/v1/syncs/" .. conn .. "/messages/run")
      local deadline = h.now() + 5
      while upstream(fault, "log").history == before and h.now() < deadline do h.sleep(0.01) end
      h.sleep(math.random() * 0.4)
      local running = S.sync(srv, key, conn, "messages").status == "running"
      h.kill(srv.pid, h.SIGKILL)
      assert(h.wait_exit(srv.pid, 20), "ferry did not exit after SIGKILL")
      kills = kills + 1
      if running then mid_run = mid_run + 1 end
      -- What was committed keeps the cursor's promises, with nothing twice.
      promises = promises + assert_consistent(fault, data, conn)
      S.check_integrity(data, conn, "messages")
      -- And people keep posting while ferry is down.
      control(fault, "post", {n = math.random(1, 4)})
    end
    print(("  %d kills, %d in the middle of a run, %d promises checked"):format(kills, mid_run, promises))
    assert.is_true(mid_run >= 8, "only " .. mid_run .. " kills landed while a run was in progress")
    assert.is_true(promises > 0)

    -- Undisturbed: the interrupted run is taken over, then runs until the
    -- walks are done, then one more that starts fresh after the last post.
    control(fault, "faults", {})
    srv = start_ferry(fault, opts)
    local s = S.wait_sync(srv, key, conn, "messages", function(x)
      return x.status == "idle" and ended(x.last_run)
    end, 30)
    for _ = 1, 12 do
      if complete(s.cursor) then break end
      local run = S.run(srv, key, conn, "messages", 60)
      assert.are.equal("succeeded", run.status, json.encode(run))
      s = S.sync(srv, key, conn, "messages")
    end
    assert.is_true(complete(s.cursor), "the walks did not finish: " .. json.encode(s.cursor))
    local run = S.run(srv, key, conn, "messages", 60)
    assert.are.equal("succeeded", run.status, json.encode(run))
    local n = assert_exact(fault, data, conn)
    assert.are.equal(n, S.check_integrity(data, conn, "messages"))
    assert.are.equal(n, S.sync(srv, key, conn, "messages").records)
    local rows = h.sql(data, "SELECT count(*) FROM records GROUP BY connection_id, kind, external_id" ..
                             " HAVING count(*) > 1")
    assert.are.same({}, rows)
    assert.are.equal("0", h.sql(data, "SELECT count(*) FROM sync_runs WHERE status = 'running'")[1][1])
    local interrupted = tonumber(h.sql(data, "SELECT count(*) FROM sync_runs WHERE error LIKE '%stopped%'")[1][1])
    assert.is_true(interrupted >= 5, interrupted .. " runs marked as interrupted")
    srv.stop()
    assert_no_token(srv)
    srv = nil
  end)

  it("waits out a 429's Retry-After mid-sync and asks again for the page refused", function()
    control(fault, "reset", {channels = 2, members = 2, messages = 250, page_max = 100, seed = 5, token = TOKEN})
    -- The third history request (the first channel's third page) is refused.
    control(fault, "faults", {rate_limit_at = 3, retry_after = 2})
    srv = start_ferry(fault)
    local key = srv.key("ann", "acme")
    local conn = connect(srv, key)
    local run = S.run(srv, key, conn, "messages", 30)
    assert.are.equal("succeeded", run.status, json.encode(run))
    assert.are.equal(2000, run.waited_ms)
    -- Two starts of run: the first, and the resume after the wait (which
    -- does not count toward --sync-attempts).
    assert.are.equal(2, run.attempts)
    assert.is_nil(run.error ~= h.json.null and run.error or nil)
    assert_exact(fault, srv.data, conn)

    local log = requests(fault)
    local refused
    for i, r in ipairs(log) do
      if r.status == 429 then
        assert.is_nil(refused, "one 429 only")
        refused = i
      end
    end
    assert.is_number(refused)
    local r429 = log[refused]
    assert.are.equal("conversations.history", r429.method)
    -- Nothing is sent before the wait is over.
    assert.is_true(log[refused + 1].t_ms - r429.t_ms >= 2000,
      "the next request came " .. (log[refused + 1].t_ms - r429.t_ms) .. " ms after the 429")
    -- The resumed run asks for the very page refused (same channel, cursor
    -- and lower bound), and no page is read twice.
    local retry
    for i = refused + 1, #log do
      if log[i].method == "conversations.history" then retry = log[i]; break end
    end
    assert.are.same({r429.channel, r429.cursor, r429.oldest}, {retry.channel, retry.cursor, retry.oldest})
    local pages = {}
    for _, r in ipairs(log) do
      if r.method == "conversations.history" and r.status == 200 then
        local k = r.channel .. " " .. (r.cursor or "")
        assert.is_nil(pages[k], "page " .. k .. " read twice")
        pages[k] = true
      end
    end
    -- 250 messages in pages of 100: three pages a channel, all read once.
    assert.are.equal(6, #requests(fault, "conversations.history") - 1)
    assert.are.equal(7, run.pages, "six pages and the last checkpoint")
    assert.are.equal(1, #requests(fault, "auth.test") - 1, "auth.test once at connect, once in the run")
  end)

  it("retries a page that hangs past the 10 s deadline and still completes the run", function()
    control(fault, "reset", {channels = 2, members = 2, messages = 150, page_max = 100, seed = 6, token = TOKEN})
    control(fault, "faults", {hang_at = 2, hang_ms = 15000})
    srv = start_ferry(fault)
    local key = srv.key("ann", "acme")
    local conn = connect(srv, key)
    local run = S.run(srv, key, conn, "messages", 40)
    -- docs/sync.md: upstream_timeout is transient; the run resumes from its
    -- last checkpoint after --sync-retry-ms (1 s, jittered) and succeeds.
    assert.are.equal("succeeded", run.status, json.encode(run))
    assert.are.equal(2, run.attempts)
    -- The backoff: --sync-retry-ms (1 s), jittered to half to all of it.
    assert.is_true(run.waited_ms >= 500 and run.waited_ms <= 1000, "waited " .. run.waited_ms .. " ms")
    assert_exact(fault, srv.data, conn)
    local history = requests(fault, "conversations.history")
    local hung, retry = history[2], history[3]
    assert.is_true(retry.t_ms - hung.t_ms >= 10000, "retried " .. (retry.t_ms - hung.t_ms) .. " ms after")
    assert.is_true(retry.t_ms - hung.t_ms < 12500, "retried " .. (retry.t_ms - hung.t_ms) .. " ms after")
    assert.are.same({hung.channel, hung.cursor, hung.oldest}, {retry.channel, retry.cursor, retry.oldest})
    -- Two channels of two pages, the hung one asked twice.
    assert.are.equal(5, #history)
    srv.stop()
    -- One audit row for the run, with its attempts.
    local rows = h.sql(srv.data, "SELECT outcome, arguments FROM audit_log WHERE operation = 'slack:sync:messages'")
    assert.are.equal(1, #rows)
    assert.are.equal("ok", rows[1][1])
    local audited = json.decode(rows[1][2])
    assert.are.same({2, "succeeded", 4}, {audited.attempts, audited.status, audited.pages - 1})
    assert_no_token(srv)
    srv = nil
  end)
end)
