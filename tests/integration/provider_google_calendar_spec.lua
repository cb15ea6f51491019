-- providers/google_calendar.lua against a Prism mock of Google's Calendar
-- API v3 description (APIs-guru conversion of the Discovery document),
-- through the recording tap proxy.
--
-- Static mode: the description has no examples, so Prism answers bodies
-- built from the schemas ("string" placeholders, nextPageToken "string"):
-- good for request validation and result shapes; values are checked with
-- canned replies shaped like Google's documented objects. The server URL's
-- path (/calendar/v3) is not served by Prism, so ferry's base URL for the
-- provider is the tap's bare address and the paths arrive as the
-- description writes them (/calendars/{calendarId}/events). The
-- description has no error responses: 401, 403 and 429 are canned, with
-- Google's error body.
--
-- upcoming_events and the sync are not reachable over HTTP yet (the engine
-- does not call them); tests/lua/calendar_sync_spec.lua runs them.
local h = require "helper"

local SLUG = "google_calendar"
local TOKEN = "ya29.test-access-7c1d"
local REFRESH = "1//test-refresh-9e2f"

local function google_error(code, status, reason, message)
  return {error = {code = code, message = message, status = status,
                   errors = {{message = message, domain = "global", reason = reason}}}}
end

local EVENT = {
  kind = "calendar#event", id = "evt1_20240506T090000Z", status = "confirmed",
  htmlLink = "https://www.google.com/calendar/event?eid=ZXZ0MQ", summary = "Weekly planning",
  description = "Agenda:\n1. Roadmap\n2. Hiring", location = "Room 4",
  created = "2024-04-01T08:00:00.000Z", updated = "2024-05-02T10:00:00.000Z",
  creator = {email = "ada@example.com", self = true},
  organizer = {email = "grace@example.com", displayName = "Grace Hopper"},
  start = {dateTime = "2024-05-06T09:00:00Z", timeZone = "Europe/London"},
  ["end"] = {dateTime = "2024-05-06T10:00:00Z", timeZone = "Europe/London"},
  recurringEventId = "evt1", iCalUID = "evt1@google.com", eventType = "default",
  hangoutLink = "https://meet.google.com/abc-defg-hij",
  attendees = {
    {email = "grace@example.com", displayName = "Grace Hopper", organizer = true, responseStatus = "accepted"},
    {email = "ada@example.com", self = true, responseStatus = "tentative"},
    {email = "room4@resource.calendar.google.com", resource = true, responseStatus = "accepted"},
  },
}

local ALL_DAY = {
  kind = "calendar#event", id = "holiday1", status = "confirmed", summary = "Bank holiday",
  htmlLink = "https://www.google.com/calendar/event?eid=aG9s", transparency = "transparent",
  start = {date = "2024-05-27"}, ["end"] = {date = "2024-05-28"}, updated = "2024-01-01T00:00:00.000Z",
}

describe("provider google_calendar", function()
  local prism, tap, srv, key, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args, {connection_id = connection_id or conn.id})
  end

  local function assert_google_request(sent, path)
    assert.are.equal("GET", sent.method)
    assert.are.equal(path, sent.path)
    assert.are.equal("Bearer " .. TOKEN, sent.headers.authorization)
  end

  setup(function()
    prism = h.start_prism(h.api_spec("google-calendar/openapi.yaml"))
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("alice", "acme")
    connected = {h.connect(srv, key, {integration = SLUG, scope = "user", label = "Google Calendar test",
                                      credentials = {access_token = TOKEN, refresh_token = REFRESH}})}
    conn = connected[2]
    connected.requests = tap.requests()
  end)

  teardown(function()
    if srv then srv.stop() end
    if tap then tap.stop() end
    if prism then prism.stop() end
  end)

  before_each(function()
    tap.prefer(nil)
    tap.replies({})
    tap.clear()
  end)

  it("is listed as an oauth2 integration that also takes an imported token", function()
    local status, body = srv.get("/v1/integrations", key)
    assert.are.equal(200, status)
    local entry
    for _, i in ipairs(body.integrations or body) do
      if i.slug == SLUG then entry = i end
    end
    assert.is_table(entry)
    assert.are.equal("oauth2", entry.method)
    assert.are.equal("calendar", entry.category)
    assert.are.same({"meetings"}, entry.data_categories)
    assert.are.equal(3, entry.tools_count)
  end)

  it("connects with an imported access token after reading the primary calendar", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal("string", conn.account_label)   -- Prism's placeholder for Calendar.id
    assert.is_nil(conn.credentials)
    assert.are.equal(1, #connected.requests)
    assert_google_request(connected.requests[1], "/calendars/primary")
    assert.are.equal("", connected.requests[1].query)
  end)

  it("list_calendars reads the calendar list (Prism) and walks nextPageToken", function()
    local status, body = call("list_calendars", {min_access_role = "reader", show_hidden = true, limit = 3})
    assert.are.equal(200, status, h.json.encode(body))
    local cals = body.result.calendars
    assert.is_true(#cals >= 1 and #cals <= 3)
    assert.are.same({id = "string", name = "string", description = "string", time_zone = "string",
                     primary = false, access_role = "string", color = "string", hidden = false,
                     selected = false}, cals[1])
    local sent = tap.requests()
    -- Prism's nextPageToken is always "string": the second page repeats it and the walk stops
    assert.are.equal(2, #sent)
    assert_google_request(sent[1], "/users/me/calendarList")
    assert.are.same({maxResults = {"3"}, minAccessRole = {"reader"}, showHidden = {"true"}},
                    h.parse_query(sent[1].query))
    assert.are.same({maxResults = {"2"}, minAccessRole = {"reader"}, showHidden = {"true"}, pageToken = {"string"}},
                    h.parse_query(sent[2].query))
    assert.is_nil(body.result.next_cursor)
  end)

  it("list_calendars shapes Google's entries and returns where to continue", function()
    tap.replies({{status = 200, json = {kind = "calendar#calendarList", nextPageToken = "p2", items = {
      {id = "ada@example.com", summary = "ada@example.com", timeZone = "Europe/London", primary = true,
       accessRole = "owner", backgroundColor = "#9fe1e7", selected = true},
      {id = "team@group.calendar.google.com", summary = "Team", summaryOverride = "My team",
       accessRole = "reader", timeZone = "UTC"},
    }}}})
    local status, body = call("list_calendars", {limit = 2})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({
      {id = "ada@example.com", name = "ada@example.com", time_zone = "Europe/London", primary = true,
       access_role = "owner", color = "#9fe1e7", hidden = false, selected = true},
      {id = "team@group.calendar.google.com", name = "My team", time_zone = "UTC", primary = false,
       access_role = "reader", hidden = false, selected = false},
    }, body.result.calendars)
    assert.are.equal("p2", body.result.next_cursor)
  end)

  it("list_events asks for single events in the window ordered by start time (Prism validates)", function()
    local status, body = call("list_events", {
      calendar_id = "team@group.calendar.google.com", time_min = "2024-05-06T00:00:00Z",
      time_max = "2024-05-13T00:00:00+02:00", query = "planning", time_zone = "Europe/Berlin", limit = 5,
    })
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal("team@group.calendar.google.com", r.calendar_id)
    assert.are.equal("2024-05-06T00:00:00Z", r.time_min)
    assert.are.equal("2024-05-13T00:00:00+02:00", r.time_max)
    assert.is_true(#r.events >= 1)
    local e = r.events[1]
    assert.are.equal("string", e.id)
    assert.are.equal("2019-08-24T14:15:22Z", e.start)   -- Prism fills date-time placeholders
    assert.is_false(e.all_day)
    assert.is_table(e.attendees)

    local sent = tap.requests()
    assert_google_request(sent[1], "/calendars/team%40group.calendar.google.com/events")
    assert.are.same({
      timeMin = {"2024-05-06T00:00:00Z"}, timeMax = {"2024-05-13T00:00:00+02:00"}, singleEvents = {"true"},
      orderBy = {"startTime"}, q = {"planning"}, timeZone = {"Europe/Berlin"}, maxResults = {"5"},
    }, h.parse_query(sent[1].query))
  end)

  it("list_events defaults to the primary calendar from now for seven days", function()
    local before = os.time()
    local status, body = call("list_events", {})
    assert.are.equal(200, status, h.json.encode(body))
    local q = h.parse_query(tap.requests()[1].query)
    assert.are.equal("/calendars/primary/events", tap.requests()[1].path)
    assert.are.same({"50"}, q.maxResults)
    local function epoch(t)
      local y, mo, d, hh, mi, ss = t:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)Z$")
      return os.time{year = y, month = mo, day = d, hour = hh, min = mi, sec = ss, isdst = false}
    end
    local min_t, max_t = epoch(q.timeMin[1]), epoch(q.timeMax[1])
    assert.is_true(math.abs(min_t - before) < 120, q.timeMin[1])
    assert.are.equal(7 * 86400, max_t - min_t)
    assert.are.equal(q.timeMin[1], body.result.time_min)
  end)

  it("list_events shapes events, pages with pageToken and stops at the limit", function()
    local second = {}
    for k, v in pairs(EVENT) do second[k] = v end
    second.id, second.summary = "evt2", "Retro"
    second.attendees = nil
    tap.replies({
      {status = 200, json = {kind = "calendar#events", summary = "ada@example.com", timeZone = "Europe/London",
                             items = {EVENT, ALL_DAY}, nextPageToken = "page-2"}},
      {status = 200, json = {kind = "calendar#events", summary = "ada@example.com", items = {second, ALL_DAY},
                             nextPageToken = "page-3"}},
    })
    local status, body = call("list_events", {time_min = "2024-05-01T00:00:00Z", time_max = "2024-06-01T00:00:00Z",
                                              limit = 3})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal("ada@example.com", r.calendar)
    assert.are.equal("Europe/London", r.time_zone)
    assert.are.equal(3, #r.events)
    assert.are.equal("page-3", r.next_cursor)
    assert.are.same({
      id = "evt1_20240506T090000Z", title = "Weekly planning", start = "2024-05-06T09:00:00Z",
      ["end"] = "2024-05-06T10:00:00Z", all_day = false, time_zone = "Europe/London", location = "Room 4",
      url = EVENT.htmlLink, meeting_url = "https://meet.google.com/abc-defg-hij", status = "confirmed",
      event_type = "default", busy = true, organizer = {name = "Grace Hopper", email = "grace@example.com"},
      recurring_event_id = "evt1", created = EVENT.created, updated = EVENT.updated,
      description = "Agenda:\n1. Roadmap\n2. Hiring", my_response = "tentative", attendee_count = 3,
      attendees = {
        {name = "Grace Hopper", email = "grace@example.com", response = "accepted", organizer = true},
        {email = "ada@example.com", self = true, response = "tentative"},
        {email = "room4@resource.calendar.google.com", response = "accepted", resource = true},
      },
    }, r.events[1])
    assert.are.same({id = "holiday1", title = "Bank holiday", start = "2024-05-27", ["end"] = "2024-05-28",
                     all_day = true, url = ALL_DAY.htmlLink, status = "confirmed", busy = false,
                     updated = ALL_DAY.updated}, r.events[2])
    assert.are.equal("evt2", r.events[3].id)

    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert.is_nil(h.parse_query(sent[1].query).pageToken)
    assert.are.same({"3"}, h.parse_query(sent[1].query).maxResults)
    assert.are.same({"page-2"}, h.parse_query(sent[2].query).pageToken)
    assert.are.same({"1"}, h.parse_query(sent[2].query).maxResults, "asks only for what is left")

    -- the cursor continues the walk
    tap.clear()
    tap.replies({{status = 200, json = {items = {ALL_DAY}}}})
    status, body = call("list_events", {time_min = "2024-05-01T00:00:00Z", time_max = "2024-06-01T00:00:00Z",
                                        cursor = "page-3"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(1, #body.result.events)
    assert.is_nil(body.result.next_cursor)
    assert.are.same({"page-3"}, h.parse_query(tap.last().query).pageToken)
  end)

  it("get_event reads one event with its whole description (Prism validates the path)", function()
    local status, body = call("get_event", {event_id = "evt1_20240506T090000Z", calendar_id = "ada@example.com",
                                            time_zone = "UTC"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("string", body.result.id)
    local sent = tap.last()
    assert_google_request(sent, "/calendars/ada%40example.com/events/evt1_20240506T090000Z")
    assert.are.same({timeZone = {"UTC"}}, h.parse_query(sent.query))

    local long = {}
    for k, v in pairs(EVENT) do long[k] = v end
    long.description = string.rep("x", 2000)
    tap.replies({{status = 200, json = long}})
    status, body = call("get_event", {event_id = "evt1"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(2000, #body.result.description)
    assert.are.equal(3, #body.result.attendees)
    assert.are.equal("/calendars/primary/events/evt1", tap.last().path)

    -- list_events shortens long descriptions
    tap.replies({{status = 200, json = {items = {long}}}})
    status, body = call("list_events", {})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(500 + #"…", #body.result.events[1].description)
  end)

  it("rejects invalid arguments before any request", function()
    local cases = {
      {"list_events", {time_min = "2024-05-06T10:00:00Z", time_max = "2024-05-06T09:00:00Z"}, "$.time_max"},
      {"list_events", {time_min = "2024-05-06T10:00:00Z", time_max = "2024-05-06T12:00:00+03:00"}, "$.time_max"},
      {"list_events", {time_min = "next monday"}, "$.time_min"},
      {"list_events", {time_max = "2024-05-06"}, "$.time_max"},
      {"list_events", {limit = 0}, "$.limit"},
      {"list_events", {time_zone = "Europe/Berlin; drop"}, "$.time_zone"},
      {"list_events", {calendar = "primary"}, "$"},
      {"list_calendars", {min_access_role = "admin"}, "$.min_access_role"},
      {"get_event", {}, "$"},
      {"get_event", {event_id = ""}, "$.event_id"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("maps Google's error body to upstream_error with its message and reason", function()
    tap.replies({{status = 404, json = google_error(404, "NOT_FOUND", "notFound", "Not Found")}})
    local status, body = call("get_event", {event_id = "gone"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Google Calendar answered HTTP 404: Not Found", body.error.message)
    assert.are.equal(404, body.error.details.status)
    assert.are.equal("notFound", body.error.details.upstream_code)
  end)

  it("maps 429 with Retry-After, and 403 rateLimitExceeded, to upstream_rate_limited", function()
    tap.replies({{status = 429, headers = {["Retry-After"] = "30"},
                  json = google_error(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "Rate Limit Exceeded")}})
    local status, body, headers = call("list_events", {})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(30, body.error.details.retry_after)
    assert.are.equal("30", headers["retry-after"])

    -- Google's usual way: 403 with a rate-limit reason; the connection stays active
    tap.replies({{status = 403, json = google_error(403, "PERMISSION_DENIED", "userRateLimitExceeded",
                                                   "User Rate Limit Exceeded")}})
    status, body = call("list_calendars", {})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal("userRateLimitExceeded", body.error.details.upstream_code)
    local _, list = srv.get("/v1/connections", key)
    for _, c in ipairs(list.connections) do
      if c.id == conn.id then assert.are.equal("active", c.status) end
    end
  end)

  it("maps 401 to reconnect_required with a reconnect URL", function()
    local st, spare = h.connect(srv, key, {integration = SLUG, credentials = {access_token = "stale-token-41"},
                                          scope = "user", label = "expired", verify = false})
    assert.are.equal(201, st)
    tap.replies({{status = 401, json = google_error(401, "UNAUTHENTICATED", "authError",
                                                   "Request had invalid authentication credentials.")}})
    local status, body = call("list_events", {}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.is_truthy(body.error.message:find("invalid authentication credentials", 1, true))
    assert.are.equal(spare.id, body.error.details.connection_id)
    assert.is_string(body.error.details.reconnect_url)
    assert.are.equal("Bearer stale-token-41", tap.last().headers.authorization)
    assert.are.equal(204, (h.request("DELETE", srv.url .. "/v1/connections/" .. spare.id,
      {headers = {authorization = "Bearer " .. key}})))
  end)
end)
