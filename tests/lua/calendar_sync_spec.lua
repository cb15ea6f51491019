-- luacheck: std lua51+busted
-- The calendar providers' upcoming_events (for /v1/context) and their
-- `upcoming` sync, run with a fake ctx: the requests they make, the events
-- they return, and the ctx.records.upsert / ctx.records.delete /
-- ctx.checkpoint calls of a sync run (the engine's side of that contract is
-- docs/sync.md, tested in tests/integration/sync_spec.lua).
local cjson = require "cjson"

local google = dofile("providers/google_calendar.lua")
local outlook = dofile("providers/outlook_calendar.lua")

local NOW = 1714982400                 -- 2024-05-06T08:00:00Z
local DAY = 86400

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

-- A ctx answering from a queue of {status, body}; it records requests,
-- upserts, deletions and checkpoints.
local function fake_ctx(answers)
  local ctx = {sent = {}, upserts = {}, deletes = {}, checkpoints = {}}
  ctx.http = {request = function(req)
    ctx.sent[#ctx.sent + 1] = req
    local a = table.remove(answers, 1) or {500, {error = {message = "no answer queued"}}}
    local text = cjson.encode(a[2])
    return {status = a[1], ok = a[1] >= 200 and a[1] < 300, headers = a[3] or {}, body = text,
            json = function() return cjson.decode(text) end}
  end}
  ctx.records = {
    upsert = function(kind, id, fields)
      ctx.upserts[#ctx.upserts + 1] = {kind = kind, id = id, fields = fields}
      return true
    end,
    delete = function(kind, id)
      ctx.deletes[#ctx.deletes + 1] = {kind = kind, id = id}
      return true
    end,
  }
  ctx.checkpoint = function(cursor) ctx.checkpoints[#ctx.checkpoints + 1] = cursor end
  return ctx
end

local real_time = os.time
before_each(function()
  os.time = function(t) if t then return real_time(t) end return NOW end   -- luacheck: ignore 122
end)
after_each(function()
  os.time = real_time   -- luacheck: ignore 122
end)

---------------------------------------------------------------------------

describe("google_calendar", function()
  local function gevent(id, summary, extra)
    local e = {id = id, status = "confirmed", summary = summary, htmlLink = "https://calendar.google.com/e/" .. id,
               start = {dateTime = "2024-05-06T09:00:00Z"}, ["end"] = {dateTime = "2024-05-06T10:00:00Z"},
               updated = "2024-05-01T00:00:00.000Z"}
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  describe("upcoming_events", function()
    it("lists the primary calendar's next events in order, without declined or cancelled ones", function()
      local ctx = fake_ctx({{200, {summary = "ada@example.com", items = {
        gevent("e1", "Standup", {hangoutLink = "https://meet.google.com/x"}),
        gevent("e2", "Declined", {attendees = {{email = "ada@example.com", self = true, responseStatus = "declined"}}}),
        gevent("e3", "Offsite", {start = {date = "2024-05-07"}, ["end"] = {date = "2024-05-08"}, location = "Lisbon"}),
        gevent("e4", "Cancelled", {status = "cancelled"}),
        gevent("e5", "Review"),
      }}}})
      local result = google.upcoming_events(ctx, {from = "2024-05-06T08:00:00Z", to = "2024-05-08T08:00:00Z",
                                                  limit = 2})
      assert.are.same({events = {
        {id = "e1", title = "Standup", start = "2024-05-06T09:00:00Z", ["end"] = "2024-05-06T10:00:00Z",
         all_day = false, url = "https://calendar.google.com/e/e1", meeting_url = "https://meet.google.com/x",
         calendar = "ada@example.com"},
        {id = "e3", title = "Offsite", start = "2024-05-07", ["end"] = "2024-05-08", all_day = true,
         location = "Lisbon",
         url = "https://calendar.google.com/e/e3", calendar = "ada@example.com"},
      }}, result)
      assert.are.equal("/calendars/primary/events", ctx.sent[1].path)
      assert.are.same({timeMin = "2024-05-06T08:00:00Z", timeMax = "2024-05-08T08:00:00Z", singleEvents = true,
                       orderBy = "startTime", maxResults = 12}, ctx.sent[1].query)
    end)

    it("defaults to the next day and ten events", function()
      local ctx = fake_ctx({{200, {items = {}}}})
      local result = google.upcoming_events(ctx, {})
      assert.are.same({}, result.events)
      assert.are.equal(iso(NOW), ctx.sent[1].query.timeMin)
      assert.are.equal(iso(NOW + DAY), ctx.sent[1].query.timeMax)
      assert.are.equal(20, ctx.sent[1].query.maxResults)
    end)

    it("passes upstream errors on", function()
      local ctx = fake_ctx({{401, {error = {code = 401, message = "Invalid Credentials", status = "UNAUTHENTICATED"}}}})
      local result, err = google.upcoming_events(ctx, {})
      assert.is_nil(result)
      assert.are.equal("reconnect_required", err.code)
    end)
  end)

  describe("syncs.upcoming", function()
    local run = google.syncs.upcoming.run
    local WINDOW = {window_start = iso(NOW - DAY), window_end = iso(NOW + 30 * DAY)}

    it("declares a 15 minute meetings sync", function()
      assert.are.equal("15m", google.syncs.upcoming.every)
      assert.are.equal("meetings", google.syncs.upcoming.category)
    end)

    it("first run: lists the window page by page, upserts every event and checkpoints the sync token", function()
      local ctx = fake_ctx({
        {200, {items = {gevent("e1", "Standup", {description = "Daily", location = "Room 4",
                                                  organizer = {email = "grace@example.com", displayName = "Grace"},
                                                  attendees = {{email = "ada@example.com"}, {email = "bob@example.com",
                                                               displayName = "Bob"}}}),
                        gevent("e2", "Review")}, nextPageToken = "p2"}},
        {200, {items = {gevent("e3", "Retro")}, nextSyncToken = "sync-1"}},
      })
      local stats = run(ctx, nil)
      assert.are.same({upserted = 3, deleted = 0, full = true}, stats)
      assert.are.equal(2, #ctx.sent)
      assert.are.same({timeMin = iso(NOW - DAY), timeMax = iso(NOW + 30 * DAY), singleEvents = true,
                       maxResults = 250}, ctx.sent[1].query)
      assert.are.equal("p2", ctx.sent[2].query.pageToken)
      assert.are.same({"e1", "e2", "e3"}, {ctx.upserts[1].id, ctx.upserts[2].id, ctx.upserts[3].id})
      local first = ctx.upserts[1]
      assert.are.equal("event", first.kind)
      assert.are.equal("Standup", first.fields.title)
      assert.are.equal("https://calendar.google.com/e/e1", first.fields.url)
      assert.are.equal("2024-05-01T00:00:00.000Z", first.fields.updated_at)
      assert.are.equal("Standup\nWhen: 2024-05-06T09:00:00Z – 2024-05-06T10:00:00Z\nWhere: Room 4\n" ..
                       "Organizer: Grace\nAttendees: ada@example.com, Bob\n\nDaily", first.fields.text)
      assert.are.equal("e1", first.fields.data.id)
      assert.are.same({{sync_token = "sync-1", window_start = WINDOW.window_start, window_end = WINDOW.window_end}},
                      ctx.checkpoints)
    end)

    it("later runs ask only for changes and delete cancelled events", function()
      local cursor = {sync_token = "sync-1", window_start = WINDOW.window_start, window_end = WINDOW.window_end}
      local ctx = fake_ctx({{200, {items = {gevent("e2", "Review v2"), {id = "e3", status = "cancelled"}},
                                   nextSyncToken = "sync-2"}}})
      local stats = run(ctx, cursor)
      assert.are.same({upserted = 1, deleted = 1, full = false}, stats)
      assert.are.same({syncToken = "sync-1", singleEvents = true, maxResults = 250}, ctx.sent[1].query)
      assert.are.same({{kind = "event", id = "e3"}}, ctx.deletes)
      assert.are.same({{sync_token = "sync-2", window_start = cursor.window_start, window_end = cursor.window_end}},
                      ctx.checkpoints)
    end)

    it("moves a day-old window forward: pending changes first, then a new full listing", function()
      local cursor = {sync_token = "sync-1", window_start = iso(NOW - 3 * DAY), window_end = iso(NOW + 28 * DAY)}
      local ctx = fake_ctx({
        {200, {items = {{id = "old", status = "cancelled"}}, nextSyncToken = "sync-2"}},
        {200, {items = {gevent("e9", "Planning")}, nextSyncToken = "sync-3"}},
      })
      local stats = run(ctx, cursor)
      assert.are.same({upserted = 1, deleted = 1, full = true}, stats)
      assert.are.equal("sync-1", ctx.sent[1].query.syncToken)
      assert.are.equal(iso(NOW - DAY), ctx.sent[2].query.timeMin)
      assert.are.same({{sync_token = "sync-3", window_start = WINDOW.window_start, window_end = WINDOW.window_end}},
                      ctx.checkpoints)
    end)

    it("follows nextPageToken past empty pages: only nextSyncToken ends a round", function()
      local cursor = {sync_token = "sync-1", window_start = WINDOW.window_start, window_end = WINDOW.window_end}
      local ctx = fake_ctx({
        {200, {items = {}, nextPageToken = "p2"}},
        {200, {nextPageToken = "p3"}},
        {200, {items = {gevent("e4", "Moved")}, nextSyncToken = "sync-2"}},
      })
      assert.are.same({upserted = 1, deleted = 0, full = false}, run(ctx, cursor))
      assert.are.same({"sync-1", "sync-1", "sync-1"},
                      {ctx.sent[1].query.syncToken, ctx.sent[2].query.syncToken, ctx.sent[3].query.syncToken})
      assert.are.same({"p2", "p3"}, {ctx.sent[2].query.pageToken, ctx.sent[3].query.pageToken})
      assert.are.equal("sync-2", ctx.checkpoints[1].sync_token)

      -- a page token Google repeats ends the round without a sync token: a full listing follows
      ctx = fake_ctx({
        {200, {items = {}, nextPageToken = "same"}},
        {200, {items = {}, nextPageToken = "same"}},
        {200, {items = {gevent("e1", "Standup")}, nextSyncToken = "fresh"}},
      })
      assert.are.same({upserted = 1, deleted = 0, full = true}, run(ctx, cursor))
      assert.are.equal(3, #ctx.sent)
      assert.are.equal(WINDOW.window_start, ctx.sent[3].query.timeMin)
      assert.are.same({{sync_token = "fresh", window_start = WINDOW.window_start, window_end = WINDOW.window_end}},
                      ctx.checkpoints)
    end)

    it("starts over when Google says the sync token is gone (410)", function()
      local cursor = {sync_token = "expired", window_start = WINDOW.window_start, window_end = WINDOW.window_end}
      local ctx = fake_ctx({
        {410, {error = {code = 410, message = "Sync token is no longer valid, a full sync is required.",
                        errors = {{reason = "fullSyncRequired"}}}}},
        {200, {items = {gevent("e1", "Standup")}, nextSyncToken = "fresh"}},
      })
      local stats = run(ctx, cursor)
      assert.are.same({upserted = 1, deleted = 0, full = true}, stats)
      assert.are.equal("fresh", ctx.checkpoints[1].sync_token)
    end)

    it("keeps the cursor when a run fails, and does a full listing again when no token came back", function()
      local cursor = {sync_token = "sync-1", window_start = WINDOW.window_start, window_end = WINDOW.window_end}
      local ctx = fake_ctx({{429, {error = {code = 429, message = "Rate Limit Exceeded"}}, {["retry-after"] = "20"}}})
      local stats, err = run(ctx, cursor)
      assert.is_nil(stats)
      assert.are.equal("upstream_rate_limited", err.code)
      assert.are.equal(20, err.retry_after)
      assert.are.same({}, ctx.checkpoints)

      ctx = fake_ctx({{200, {items = {}}}})
      assert.is_table(run(ctx, nil))
      assert.are.same({{window_start = WINDOW.window_start, window_end = WINDOW.window_end}}, ctx.checkpoints)
    end)

    it("stops when the record store fails", function()
      local ctx = fake_ctx({{200, {items = {gevent("e1", "Standup")}, nextSyncToken = "s"}}})
      ctx.records.upsert = function() return nil, {code = "internal", message = "disk full"} end
      local stats, err = run(ctx, nil)
      assert.is_nil(stats)
      assert.are.equal("disk full", err.message)
      assert.are.same({}, ctx.checkpoints)
    end)
  end)
end)

---------------------------------------------------------------------------

describe("outlook_calendar", function()
  local GRAPH = "https://graph.microsoft.com/v1.0"

  local function oevent(id, subject, extra)
    local e = {id = id, subject = subject, isAllDay = false, isCancelled = false, webLink = "https://outlook/" .. id,
               start = {dateTime = "2024-05-06T09:00:00.0000000", timeZone = "UTC"},
               ["end"] = {dateTime = "2024-05-06T09:30:00.0000000", timeZone = "UTC"},
               lastModifiedDateTime = "2024-05-01T00:00:00.1234567Z", responseStatus = {response = "accepted"}}
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  describe("upcoming_events", function()
    it("reads the calendar view in UTC, without declined or cancelled events", function()
      local ctx = fake_ctx({{200, {value = {
        oevent("o1", "Standup", {onlineMeeting = {joinUrl = "https://teams/x"}, location = {displayName = "Room 4"}}),
        oevent("o2", "Nope", {responseStatus = {response = "declined"}}),
        oevent("o3", "Gone", {isCancelled = true}),
        oevent("o4", "Holiday", {isAllDay = true, start = {dateTime = "2024-05-07T00:00:00.0000000", timeZone = "UTC"},
                                 ["end"] = {dateTime = "2024-05-08T00:00:00.0000000", timeZone = "UTC"}}),
      }}}})
      local result = outlook.upcoming_events(ctx, {from = "2024-05-06T08:00:00Z", to = "2024-05-08T08:00:00Z",
                                                   limit = 5})
      assert.are.same({events = {
        {id = "o1", title = "Standup", start = "2024-05-06T09:00:00Z", ["end"] = "2024-05-06T09:30:00Z",
         all_day = false, location = "Room 4", url = "https://outlook/o1", meeting_url = "https://teams/x",
         calendar = "Outlook"},
        {id = "o4", title = "Holiday", start = "2024-05-07", ["end"] = "2024-05-08", all_day = true,
         url = "https://outlook/o4", calendar = "Outlook"},
      }}, result)
      local req = ctx.sent[1]
      assert.are.equal("/me/calendarView", req.path)
      assert.are.equal('outlook.timezone="UTC"', req.headers.Prefer)
      assert.are.equal("2024-05-06T08:00:00Z", req.query.startDateTime)
      assert.are.equal("2024-05-08T08:00:00Z", req.query.endDateTime)
      assert.are.equal("start/dateTime", req.query["$orderby"])
      assert.are.equal(15, req.query["$top"])
    end)
  end)

  describe("syncs.upcoming", function()
    local run = outlook.syncs.upcoming.run
    local WINDOW = {window_start = iso(NOW - DAY), window_end = iso(NOW + 30 * DAY)}

    it("first run: a calendarView delta round over the window, checkpointing its deltaLink as a path", function()
      local ctx = fake_ctx({
        {200, {value = {oevent("o1", "Standup", {bodyPreview = "Daily"})},
               ["@odata.nextLink"] = GRAPH .. "/me/calendarView/delta?$skiptoken=s2"}},
        {200, {value = {oevent("o2", "Review")},
               ["@odata.deltaLink"] = GRAPH .. "/me/calendarView/delta?$deltatoken=d1"}},
      })
      local stats = run(ctx, nil)
      assert.are.same({upserted = 2, deleted = 0, full = true}, stats)
      assert.are.equal("/me/calendarView/delta", ctx.sent[1].path)
      assert.are.same({startDateTime = WINDOW.window_start, endDateTime = WINDOW.window_end}, ctx.sent[1].query)
      assert.are.equal('outlook.timezone="UTC", odata.maxpagesize=100', ctx.sent[1].headers.Prefer)
      assert.are.equal("/me/calendarView/delta?$skiptoken=s2", ctx.sent[2].path)
      assert.is_nil(ctx.sent[2].query)
      local first = ctx.upserts[1]
      assert.are.equal("event", first.kind)
      assert.are.equal("o1", first.id)
      assert.are.equal("2024-05-01T00:00:00Z", first.fields.updated_at)
      assert.are.equal("Standup\nWhen: 2024-05-06T09:00:00Z – 2024-05-06T09:30:00Z\n\nDaily", first.fields.text)
      assert.are.same({{delta_link = "/me/calendarView/delta?$deltatoken=d1", window_start = WINDOW.window_start,
                        window_end = WINDOW.window_end}}, ctx.checkpoints)
    end)

    it("later runs follow the deltaLink; removed and cancelled events are deleted", function()
      local cursor = {delta_link = "/me/calendarView/delta?$deltatoken=d1", window_start = WINDOW.window_start,
                      window_end = WINDOW.window_end}
      local ctx = fake_ctx({{200, {value = {
        {["@odata.type"] = "#microsoft.graph.event", id = "o1", ["@removed"] = {reason = "deleted"}},
        oevent("o2", "Review", {isCancelled = true}),
        oevent("o5", "New"),
      }, ["@odata.deltaLink"] = GRAPH .. "/me/calendarView/delta?$deltatoken=d2"}}})
      local stats = run(ctx, cursor)
      assert.are.same({upserted = 1, deleted = 2, full = false}, stats)
      assert.are.equal("/me/calendarView/delta?$deltatoken=d1", ctx.sent[1].path)
      assert.are.same({{kind = "event", id = "o1"}, {kind = "event", id = "o2"}}, ctx.deletes)
      assert.are.equal("/me/calendarView/delta?$deltatoken=d2", ctx.checkpoints[1].delta_link)
      assert.are.equal(cursor.window_start, ctx.checkpoints[1].window_start)
    end)

    it("follows @odata.nextLink past empty pages until the deltaLink (an empty calendar)", function()
      local ctx = fake_ctx({
        {200, {value = {}, ["@odata.nextLink"] = GRAPH .. "/me/calendarView/delta?$skiptoken=s2"}},
        {200, {value = {}, ["@odata.deltaLink"] = GRAPH .. "/me/calendarView/delta?$deltatoken=d1"}},
      })
      assert.are.same({upserted = 0, deleted = 0, full = true}, run(ctx, nil))
      assert.are.equal(2, #ctx.sent)
      assert.are.equal("/me/calendarView/delta?$skiptoken=s2", ctx.sent[2].path)
      assert.are.equal('outlook.timezone="UTC", odata.maxpagesize=100', ctx.sent[2].headers.Prefer)
      assert.are.equal("/me/calendarView/delta?$deltatoken=d1", ctx.checkpoints[1].delta_link)
    end)

    it("ends a round on a link that repeats or is not Graph's, keeping no delta link", function()
      local cursor = {delta_link = "/me/calendarView/delta?$deltatoken=d1", window_start = WINDOW.window_start,
                      window_end = WINDOW.window_end}
      local ctx = fake_ctx({
        {200, {value = {}, ["@odata.nextLink"] = GRAPH .. "/me/calendarView/delta?$deltatoken=d1"}},
        {200, {value = {oevent("o1", "Standup")},
               ["@odata.deltaLink"] = GRAPH .. "/me/calendarView/delta?$deltatoken=n1"}},
      })
      -- the delta round repeats its own link: it ends without a delta link, and a full round follows
      assert.are.same({upserted = 1, deleted = 0, full = true}, run(ctx, cursor))
      assert.are.equal("/me/calendarView/delta", ctx.sent[2].path)
      assert.are.equal("/me/calendarView/delta?$deltatoken=n1", ctx.checkpoints[1].delta_link)

      ctx = fake_ctx({{200, {value = {oevent("o1", "Standup")}, ["@odata.nextLink"] = "https://evil.example/x"}}})
      assert.are.same({upserted = 1, deleted = 0, full = true}, run(ctx, nil))
      assert.are.equal(1, #ctx.sent)
      assert.are.same({{window_start = WINDOW.window_start, window_end = WINDOW.window_end}}, ctx.checkpoints)
    end)

    it("starts a new round when the window is a day old or the delta token expired (410)", function()
      local stale = {delta_link = "/me/calendarView/delta?$deltatoken=d1", window_start = iso(NOW - 3 * DAY),
                     window_end = iso(NOW + 28 * DAY)}
      local ctx = fake_ctx({
        {200, {value = {}, ["@odata.deltaLink"] = GRAPH .. "/me/calendarView/delta?$deltatoken=d2"}},
        {200, {value = {oevent("o1", "Standup")},
               ["@odata.deltaLink"] = GRAPH .. "/me/calendarView/delta?$deltatoken=n1"}},
      })
      assert.are.same({upserted = 1, deleted = 0, full = true}, run(ctx, stale))
      assert.are.equal(WINDOW.window_start, ctx.sent[2].query.startDateTime)
      assert.are.same({{delta_link = "/me/calendarView/delta?$deltatoken=n1", window_start = WINDOW.window_start,
                        window_end = WINDOW.window_end}}, ctx.checkpoints)

      ctx = fake_ctx({
        {410, {error = {code = "SyncStateNotFound", message = "The sync state generation is not found."}}},
        {200, {value = {}, ["@odata.deltaLink"] = GRAPH .. "/me/calendarView/delta?$deltatoken=n2"}},
      })
      assert.is_table(run(ctx, {delta_link = "/me/calendarView/delta?$deltatoken=old",
                                window_start = WINDOW.window_start, window_end = WINDOW.window_end}))
      assert.are.equal("/me/calendarView/delta?$deltatoken=n2", ctx.checkpoints[1].delta_link)
    end)

    it("fails without a checkpoint on other errors", function()
      local ctx = fake_ctx({{401, {error = {code = "InvalidAuthenticationToken", message = "expired"}}}})
      local stats, err = run(ctx, nil)
      assert.is_nil(stats)
      assert.are.equal("reconnect_required", err.code)
      assert.are.same({}, ctx.checkpoints)
    end)
  end)
end)
