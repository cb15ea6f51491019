-- providers/outlook_calendar.lua against a Prism mock of Microsoft Graph
-- v1.0's Calendar module (msgraph-sdk-powershell's openApiDocs/v1.0/Calendar.yml),
-- through the recording tap proxy.
--
-- Two things of that description shape this spec:
--  * it has no /me paths: every path is under /users/{user-id}, /me being
--    Graph's alias for the signed-in user. ferry's base URL for the
--    provider is the tap's address plus "/users", so the provider's /me/...
--    arrives as /users/me/... and Prism validates it against
--    /users/{user-id}/... with user-id = "me".
--  * its $orderby enum for calendarView lists "start", which Graph itself
--    refuses (an order key must be primitive); the provider sends Graph's
--    documented start/dateTime, which Prism answers with 422. list_events is
--    therefore answered by canned replies, and the recorded request is
--    replayed to Prism without $orderby to show the rest of it is valid.
-- Static mode (dynamic mode fails on some Graph paths); bodies are Prism's
-- "string" placeholders, values are checked with canned replies shaped like
-- Graph's documented events. Errors (Graph's {"error": {"code", "message"}})
-- are canned too. The description is 1.4 MB: Prism takes a while to start.
--
-- The `upcoming` sync runs in the engine (POST /v1/syncs/...): the
-- description has no calendarView/delta, so its pages are canned replies
-- shaped like Graph's delta answers; its logic in detail is in
-- tests/lua/calendar_sync_spec.lua.
local h = require "helper"

local SLUG = "outlook_calendar"
local TOKEN = "EwBwA8l6test-graph-token"
local GRAPH = "https://graph.microsoft.com/v1.0"

local SELECT = "id,subject,bodyPreview,start,end,isAllDay,isCancelled,location,organizer,attendees,webLink," ..
               "onlineMeeting,onlineMeetingUrl,showAs,responseStatus,seriesMasterId,type,createdDateTime," ..
               "lastModifiedDateTime,categories,importance,sensitivity"

local function graph_error(code, message)
  return {error = {code = code, message = message,
                   innerError = {date = "2024-05-06T09:00:00", ["request-id"] = "8c1e",
                                 ["client-request-id"] = "8c1e"}}}
end

local EVENT = {
  ["@odata.etag"] = "W/\"ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ==\"",
  id = "AAMkAGI1AAAt9AHjAAA=", subject = "Weekly planning", bodyPreview = "Agenda: roadmap, hiring",
  start = {dateTime = "2024-05-06T09:00:00.0000000", timeZone = "UTC"},
  ["end"] = {dateTime = "2024-05-06T10:00:00.0000000", timeZone = "UTC"},
  isAllDay = false, isCancelled = false, showAs = "busy", type = "occurrence", seriesMasterId = "AAMkSeries=",
  importance = "normal", sensitivity = "normal", categories = {"Planning"},
  createdDateTime = "2024-04-01T08:00:00.1234567Z", lastModifiedDateTime = "2024-05-02T10:00:00.7654321Z",
  location = {displayName = "Room 4", locationType = "default"},
  webLink = "https://outlook.office365.com/owa/?itemid=AAMkAGI1AAAt9AHjAAA%3D&exvsurl=1&path=/calendar/item",
  onlineMeeting = {joinUrl = "https://teams.microsoft.com/l/meetup-join/19%3ameeting"},
  responseStatus = {response = "tentativelyAccepted", time = "2024-05-01T12:00:00Z"},
  organizer = {emailAddress = {name = "Grace Hopper", address = "grace@contoso.com"}},
  attendees = {
    {type = "required", status = {response = "accepted", time = "2024-05-01T12:00:00Z"},
     emailAddress = {name = "Grace Hopper", address = "grace@contoso.com"}},
    {type = "optional", status = {response = "none", time = "0001-01-01T00:00:00Z"},
     emailAddress = {name = "Ada Lovelace", address = "ada@contoso.com"}},
  },
}

local ALL_DAY = {
  id = "AAMkHoliday=", subject = "Bank holiday", isAllDay = true, isCancelled = false, showAs = "free",
  start = {dateTime = "2024-05-27T00:00:00.0000000", timeZone = "UTC"},
  ["end"] = {dateTime = "2024-05-28T00:00:00.0000000", timeZone = "UTC"},
  webLink = "https://outlook.office365.com/owa/?itemid=AAMkHoliday%3D", type = "singleInstance",
}

describe("provider outlook_calendar", function()
  local prism, tap, srv, key, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args, {connection_id = connection_id or conn.id})
  end

  local function assert_graph_request(sent, path)
    assert.are.equal("GET", sent.method)
    assert.are.equal(path, sent.path)
    assert.are.equal("Bearer " .. TOKEN, sent.headers.authorization)
  end

  -- Replays a recorded request to Prism without the query parameters named
  -- in `drop`; returns Prism's status and body.
  local function replay(sent, drop)
    local kept = {}
    for pair in (sent.query or ""):gmatch("[^&]+") do
      local name = h.parse_query(pair)
      local skip = false
      for n in pairs(name) do if drop[n] then skip = true end end
      if not skip then kept[#kept + 1] = pair end
    end
    local status, text = h.request(sent.method, prism.url .. sent.path .. "?" .. table.concat(kept, "&"),
      {headers = {authorization = sent.headers.authorization, prefer = sent.headers.prefer}})
    return status, text
  end

  setup(function()
    prism = h.start_prism(h.api_spec("microsoft-graph/Calendar.yml"), {timeout = 300})
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url .. "/users"}}
    key = srv.key("alice", "acme")
    connected = {h.connect(srv, key, {integration = SLUG, scope = "user", label = "Outlook test",
                                      credentials = {access_token = TOKEN, refresh_token = "M.R3_refresh"}})}
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

  it("connects after reading the default calendar's owner", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal("string", conn.account_label)   -- Prism's placeholder for owner.address
    assert.are.equal(1, #connected.requests)
    local sent = connected.requests[1]
    assert_graph_request(sent, "/users/me/calendar")
    assert.are.same({["$select"] = {"name,owner"}}, h.parse_query(sent.query))
  end)

  it("list_calendars selects the calendar fields (Prism validates) and ignores a next link off Graph", function()
    local status, body = call("list_calendars", {})
    assert.are.equal(200, status, h.json.encode(body))
    local cals = body.result.calendars
    assert.is_true(#cals >= 1)
    assert.are.same({id = "string", name = "string", color = "string", is_default = true, can_edit = true,
                     owner = {name = "string", email = "string"}}, cals[1])
    assert.is_nil(body.result.next_cursor)   -- Prism's @odata.nextLink is "string": not a Graph URL
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_graph_request(sent[1], "/users/me/calendars")
    assert.are.same({["$top"] = {"100"}, ["$select"] = {"id,name,color,hexColor,isDefaultCalendar,canEdit,owner"}},
                    h.parse_query(sent[1].query))
  end)

  it("list_calendars follows @odata.nextLink under the base URL and hands back a cursor", function()
    tap.replies({
      {status = 200, json = {value = {{id = "AAMkCal1=", name = "Calendar", isDefaultCalendar = true, canEdit = true,
                                       hexColor = "#e3008c", owner = {name = "Ada", address = "ada@contoso.com"}}},
                             ["@odata.nextLink"] = GRAPH .. "/me/calendars?%24top=1&%24skip=1"}},
      {status = 200, json = {value = {{id = "AAMkCal2=", name = "Birthdays", canEdit = false}},
                             ["@odata.nextLink"] = GRAPH .. "/me/calendars?%24top=1&%24skip=2"}},
    })
    local status, body = call("list_calendars", {limit = 2})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({
      {id = "AAMkCal1=", name = "Calendar", color = "#e3008c", is_default = true, can_edit = true,
       owner = {name = "Ada", email = "ada@contoso.com"}},
      {id = "AAMkCal2=", name = "Birthdays", is_default = false, can_edit = false},
    }, body.result.calendars)
    assert.are.equal("/me/calendars?%24top=1&%24skip=2", body.result.next_cursor)
    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert_graph_request(sent[2], "/users/me/calendars")
    assert.are.equal("%24top=1&%24skip=1", sent[2].query)

    tap.clear()
    tap.replies({{status = 200, json = {value = {}}}})
    status, body = call("list_calendars", {cursor = "/me/calendars?%24top=1&%24skip=2"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({}, body.result.calendars)
    assert.are.equal("%24top=1&%24skip=2", tap.last().query)
  end)

  it("list_events asks the calendar view for the window in UTC, ordered by start/dateTime", function()
    local link = GRAPH .. "/me/calendarView?startDateTime=2024-05-06T00%3a00%3a00Z&endDateTime=" ..
                 "2024-05-13T00%3a00%3a00Z&%24top=3&%24orderby=start%2fdateTime&%24skiptoken=p2"
    tap.replies({
      {status = 200, json = {value = {EVENT, ALL_DAY}, ["@odata.nextLink"] = link}},
      {status = 200, json = {value = {ALL_DAY}}},
    })
    local status, body = call("list_events", {time_min = "2024-05-06T00:00:00Z", time_max = "2024-05-13T00:00:00Z",
                                              limit = 3})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal("2024-05-06T00:00:00Z", r.time_min)
    assert.are.equal("UTC", r.time_zone)
    assert.are.equal(3, #r.events)
    assert.is_nil(r.next_cursor)
    assert.are.same({
      id = "AAMkAGI1AAAt9AHjAAA=", title = "Weekly planning", start = "2024-05-06T09:00:00Z",
      ["end"] = "2024-05-06T10:00:00Z", all_day = false, time_zone = "UTC", location = "Room 4",
      url = EVENT.webLink, meeting_url = EVENT.onlineMeeting.joinUrl, cancelled = false, show_as = "busy",
      busy = true, organizer = {name = "Grace Hopper", email = "grace@contoso.com"},
      my_response = "tentativelyAccepted", type = "occurrence", series_master_id = "AAMkSeries=",
      importance = "normal", sensitivity = "normal", categories = {"Planning"},
      created = "2024-04-01T08:00:00Z", updated = "2024-05-02T10:00:00Z",
      description = "Agenda: roadmap, hiring", attendee_count = 2,
      attendees = {{name = "Grace Hopper", email = "grace@contoso.com", response = "accepted", type = "required"},
                   {name = "Ada Lovelace", email = "ada@contoso.com", response = "none", type = "optional"}},
    }, r.events[1])
    assert.are.same({id = "AAMkHoliday=", title = "Bank holiday", start = "2024-05-27", ["end"] = "2024-05-28",
                     all_day = true, time_zone = "UTC", url = ALL_DAY.webLink, cancelled = false, show_as = "free",
                     busy = false, type = "singleInstance"}, r.events[2])

    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert_graph_request(sent[1], "/users/me/calendarView")
    assert.are.equal('outlook.timezone="UTC"', sent[1].headers.prefer)
    assert.are.same({startDateTime = {"2024-05-06T00:00:00Z"}, endDateTime = {"2024-05-13T00:00:00Z"},
                     ["$top"] = {"3"}, ["$orderby"] = {"start/dateTime"}, ["$select"] = {SELECT}},
                    h.parse_query(sent[1].query))
    -- the next page is Graph's own link, under the base URL, with the same preference
    assert_graph_request(sent[2], "/users/me/calendarView")
    assert.are.equal(link:match("%?(.*)$"), sent[2].query)
    assert.are.equal('outlook.timezone="UTC"', sent[2].headers.prefer)

    -- Prism: the description's enum refuses start/dateTime; everything else is valid
    local refused = replay(sent[1], {})
    assert.are.equal(422, refused)
    local accepted, text = replay(sent[1], {["$orderby"] = true})
    assert.are.equal(200, accepted, text)
  end)

  it("list_events on another calendar in another time zone, continued from a cursor", function()
    local next_link = GRAPH .. "/me/calendars/AAMk%3D%3D/calendarView?startDateTime=x&%24skiptoken=q3"
    tap.replies({{status = 200, json = {value = {EVENT}, ["@odata.nextLink"] = next_link}}})
    local status, body = call("list_events", {calendar_id = "AAMk==", time_zone = "Europe/Berlin", limit = 1,
                                              time_min = "2024-05-06T00:00:00+02:00"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("/me/calendars/AAMk%3D%3D/calendarView?startDateTime=x&%24skiptoken=q3", body.result.next_cursor)
    assert.are.equal("AAMk==", body.result.calendar_id)
    assert.are.equal("2024-05-12T22:00:00Z", body.result.time_max, "seven days after time_min")
    local sent = tap.last()
    assert_graph_request(sent, "/users/me/calendars/AAMk%3D%3D/calendarView")
    assert.are.equal('outlook.timezone="Europe/Berlin"', sent.headers.prefer)
    local accepted, text = replay(sent, {["$orderby"] = true})
    assert.are.equal(200, accepted, text)

    -- times in a zone other than UTC come back as local times, with the zone named
    local berlin = {}
    for k, v in pairs(EVENT) do berlin[k] = v end
    berlin.start = {dateTime = "2024-05-06T11:00:00.0000000", timeZone = "Europe/Berlin"}
    tap.clear()
    tap.replies({{status = 200, json = {value = {berlin}}}})
    status, body = call("list_events", {cursor = body.result.next_cursor, time_zone = "Europe/Berlin"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("2024-05-06T11:00:00", body.result.events[1].start)
    assert.are.equal("Europe/Berlin", body.result.events[1].time_zone)
    assert.are.equal("/users/me/calendars/AAMk%3D%3D/calendarView", tap.last().path)
    assert.are.equal("startDateTime=x&%24skiptoken=q3", tap.last().query)
  end)

  it("get_event reads the event with its body as text (Prism validates)", function()
    local status, body = call("get_event", {event_id = "AAMkAGI1AAAt9AHjAAA="})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("string", body.result.id)
    local sent = tap.last()
    assert_graph_request(sent, "/users/me/events/AAMkAGI1AAAt9AHjAAA%3D")
    assert.are.equal('outlook.timezone="UTC", outlook.body-content-type="text"', sent.headers.prefer)
    assert.are.same({["$select"] = {SELECT .. ",body"}}, h.parse_query(sent.query))

    local full = {}
    for k, v in pairs(EVENT) do full[k] = v end
    full.body = {contentType = "text", content = "Agenda:\r\n1. Roadmap\r\n2. Hiring"}
    tap.replies({{status = 200, json = full}})
    status, body = call("get_event", {event_id = "AAMkAGI1AAAt9AHjAAA="})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("Agenda:\r\n1. Roadmap\r\n2. Hiring", body.result.description)
    assert.are.equal("Weekly planning", body.result.title)
  end)

  it("rejects invalid arguments and foreign cursors before any request", function()
    local cases = {
      {"list_events", {time_min = "2024-05-06T10:00:00Z", time_max = "2024-05-06T10:00:00Z"}, "$.time_max"},
      {"list_events", {time_min = "tomorrow"}, "$.time_min"},
      {"list_events", {time_zone = 'UTC"; x'}, "$.time_zone"},
      {"list_events", {cursor = GRAPH .. "/me/calendarView?%24skiptoken=1"}, "$.cursor"},
      {"list_events", {cursor = "/me/messages?%24skip=10"}, "$.cursor"},
      {"list_events", {cursor = "/me/calendars?%24skip=10"}, "$.cursor"},
      {"list_calendars", {cursor = "/me/calendarView?%24skip=10"}, "$.cursor"},
      {"list_calendars", {limit = 501}, "$.limit"},
      {"get_event", {}, "$"},
      {"get_event", {event_id = "x", calendar_id = "y"}, "$"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("maps Graph's error body to upstream_error with its code", function()
    tap.replies({{status = 404, json = graph_error("ErrorItemNotFound",
                                                  "The specified object was not found in the store.")}})
    local status, body = call("get_event", {event_id = "AAMkGone="})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Microsoft Graph answered HTTP 404: The specified object was not found in the store.",
                     body.error.message)
    assert.are.equal("ErrorItemNotFound", body.error.details.upstream_code)
  end)

  it("maps 429 and 503 with Retry-After to upstream_rate_limited", function()
    tap.replies({{status = 429, headers = {["Retry-After"] = "7"},
                  json = graph_error("ApplicationThrottled", "Application is over its MailboxConcurrency limit.")}})
    local status, body, headers = call("list_calendars", {})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(7, body.error.details.retry_after)
    assert.are.equal("7", headers["retry-after"])

    tap.replies({{status = 503, headers = {["Retry-After"] = "2"},
                  json = graph_error("serviceNotAvailable", "Service unavailable")}})
    status, body = call("list_events", {})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(2, body.error.details.retry_after)
  end)

  it("syncs upcoming events in the engine with Graph's delta query, then only the changes", function()
    local S = require "sync_helper"
    local base = GRAPH        -- Graph's links are absolute; ferry maps them to the base URL override
    tap.replies({
      {status = 200, json = {value = {EVENT}, ["@odata.nextLink"] = base .. "/me/calendarView/delta?$skiptoken=p2"}},
      {status = 200, json = {value = {ALL_DAY},
                             ["@odata.deltaLink"] = base .. "/me/calendarView/delta?$deltatoken=d1"}},
    })
    local run = S.run(srv, key, conn.id, "upcoming")
    assert.are.equal("succeeded", run.status, h.json.encode(run))
    assert.are.same({added = 2, updated = 0, deleted = 0, unchanged = 0}, run.records)
    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert_graph_request(sent[1], "/users/me/calendarView/delta")
    local q = h.parse_query(sent[1].query)
    assert.is_truthy(q.startDateTime[1]:match("^%d%d%d%d%-%d%d%-%d%dT"))
    assert.is_truthy(q.endDateTime[1]:match("^%d%d%d%d%-%d%d%-%d%dT"))
    assert_graph_request(sent[2], "/users/me/calendarView/delta")
    assert.are.equal("p2", h.parse_query(sent[2].query)["$skiptoken"][1])
    local status, found = srv.get("/v1/search?q=roadmap&integration=" .. SLUG, key)
    assert.are.equal(200, status, h.json.encode(found))
    assert.are.equal(1, #found.results)
    assert.are.equal(EVENT.id, found.results[1].external_id)
    assert.are.equal("meetings", found.results[1].doc_category)

    -- The next run follows the stored delta link: the planning meeting was removed.
    tap.clear()
    tap.replies({{status = 200, json = {value = {{id = EVENT.id, ["@removed"] = {reason = "deleted"}}},
                                        ["@odata.deltaLink"] = base .. "/me/calendarView/delta?$deltatoken=d2"}}})
    run = S.run(srv, key, conn.id, "upcoming")
    assert.are.equal("succeeded", run.status, h.json.encode(run))
    assert.are.equal(1, run.records.deleted)
    assert.are.equal("d1", h.parse_query(tap.last().query)["$deltatoken"][1])
    status, found = srv.get("/v1/search?q=roadmap", key)
    assert.are.equal(200, status)
    assert.are.same({}, found.results)
    status, found = srv.get("/v1/search?q=holiday", key)
    assert.are.equal(200, status)
    assert.are.equal(1, #found.results)
  end)

  it("maps 401 to reconnect_required with a reconnect URL", function()
    local st, spare = h.connect(srv, key, {integration = SLUG, credentials = {access_token = "stale-token-41"},
                                          scope = "user", label = "expired", verify = false})
    assert.are.equal(201, st)
    tap.replies({{status = 401, headers = {["WWW-Authenticate"] = 'Bearer realm=""'},
                  json = graph_error("InvalidAuthenticationToken", "Access token has expired or is not yet valid.")}})
    local status, body = call("list_calendars", {}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.is_truthy(body.error.message:find("Access token has expired", 1, true), body.error.message)
    assert.are.equal("InvalidAuthenticationToken", body.error.details.upstream_code)
    assert.is_string(body.error.details.reconnect_url)
    assert.are.equal("Bearer stale-token-41", tap.last().headers.authorization)
    assert.are.equal(204, (h.request("DELETE", srv.url .. "/v1/connections/" .. spare.id,
      {headers = {authorization = "Bearer " .. key}})))
  end)
end)
