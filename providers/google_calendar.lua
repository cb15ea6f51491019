-- Google Calendar: the user's calendars and events (read-only).
--
-- HTTP shapes follow Google's Calendar API v3 description (APIs-guru
-- openapi-directory, googleapis.com/calendar/v3/openapi.yaml; server
-- https://www.googleapis.com/calendar/v3, the paths below are relative to it):
--   list_calendars    GET /users/me/calendarList                      (calendar.calendarList.list)
--   list_events       GET /calendars/{calendarId}/events              (calendar.events.list)
--                     singleEvents=true&orderBy=startTime, timeMin/timeMax, pageToken
--   get_event         GET /calendars/{calendarId}/events/{eventId}    (calendar.events.get)
--   check             GET /calendars/primary                          (calendar.calendars.get)
--   upcoming_events   events.list on the primary calendar
--   syncs.upcoming    events.list on the primary calendar, then syncToken (below)
-- Lists page with maxResults and pageToken, the next token in nextPageToken.
-- Errors are {"error": {"code", "message", "status", "errors": [{"reason"}]}};
-- Google answers some quota errors with 403 (reason rateLimitExceeded), which
-- must not pass for a refused credential.
--
-- Written in the common subset of Lua 5.1 and 5.4 (no bit operators, no
-- goto) so tests/lua can run its functions under busted.
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

-- Google's error object, with its 403s that mean "slow down" or "API not
-- enabled" rather than a refused credential (ferry.errors.google).
local API = sdk.errors.google{service = "Google Calendar"}

local PAGE_MAX = 250            -- events.list allows 2500, calendarList.list 250
local DAY = 86400
local DEFAULT_SPAN = 7 * DAY    -- list_events without time_max
local LIST_DESCRIPTION_MAX = 500
local LIST_ATTENDEES_MAX = 25

-- The sync keeps the events from a day ago to HORIZON ahead; after REFRESH
-- the window is moved forward with a fresh full listing.
local SYNC_LOOKBACK = DAY
local SYNC_HORIZON = 30 * DAY
local SYNC_REFRESH = DAY

---------------------------------------------------------------------------
-- Time: RFC 3339 <-> seconds since the epoch (UTC), from the SDK.

local parse_time, format_time = sdk.time.parse, sdk.time.format

---------------------------------------------------------------------------
-- Text

-- `text` cut to at most `max` bytes on a UTF-8 boundary, with "…" when cut.
local function cut(text, max)
  if type(text) ~= "string" or #text <= max then return text end
  local n = max
  while n > 0 do
    local b = text:byte(n + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    n = n - 1
  end
  return text:sub(1, n) .. "…"
end

local function str(v)
  v = data.value(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

---------------------------------------------------------------------------
-- Shaping results

local function person(p)
  if type(p) ~= "table" then return nil end
  local out = {name = str(p.displayName), email = str(p.email), self = data.value(p.self) == true or nil}
  if not out.name and not out.email then return nil end
  return out
end

-- EventDateTime → (text, all_day): dateTime for timed events, date for all-day ones.
local function when(dt)
  local at = str(data.get(dt, "dateTime"))
  if at then return at, false end
  local day = str(data.get(dt, "date"))
  if day then return day, true end
  return nil, nil
end

-- The link to join: Meet's hangoutLink, else the conference's video entry point.
local function meeting_url(e)
  local link = str(e.hangoutLink)
  if link then return link end
  local points = data.get(e, "conferenceData.entryPoints")
  if type(points) ~= "table" then return nil end
  for _, p in ipairs(points) do
    if data.get(p, "entryPointType") == "video" and str(data.get(p, "uri")) then return data.get(p, "uri") end
  end
  return nil
end

local function attendee(a)
  local out = person(a)
  if not out then return nil end
  out.response = str(a.responseStatus)
  out.optional = data.value(a.optional) == true or nil
  out.organizer = data.value(a.organizer) == true or nil
  out.resource = data.value(a.resource) == true or nil
  return out
end

-- An event for an agent; `full` keeps the whole description and every attendee.
local function event(e, full)
  if type(e) ~= "table" then return nil end
  local start, all_day = when(e.start)
  local finish = when(e["end"])
  local out = {
    id = str(e.id), title = str(e.summary), start = start, ["end"] = finish, all_day = all_day,
    time_zone = str(data.get(e, "start.timeZone")),
    location = str(e.location), url = str(e.htmlLink), meeting_url = meeting_url(e),
    status = str(e.status), event_type = str(e.eventType),
    busy = data.value(e.transparency) ~= "transparent",
    organizer = person(data.value(e.organizer)),
    recurring_event_id = str(e.recurringEventId),
    created = str(e.created), updated = str(e.updated),
  }
  local description = str(e.description)
  out.description = full and description or cut(description, LIST_DESCRIPTION_MAX)
  local list = data.value(e.attendees)
  if type(list) == "table" and #list > 0 then
    local attendees = data.array()
    for _, a in ipairs(list) do
      local shaped = attendee(a)
      if shaped and shaped.self then out.my_response = shaped.response end
      if shaped and (full or #attendees < LIST_ATTENDEES_MAX) then attendees[#attendees + 1] = shaped end
    end
    out.attendees = attendees
    out.attendee_count = #list
  end
  return out
end

local function calendar(c)
  return {
    id = str(c.id), name = str(c.summaryOverride) or str(c.summary), description = str(c.description),
    time_zone = str(c.timeZone), primary = data.value(c.primary) == true, access_role = str(c.accessRole),
    color = str(c.backgroundColor), hidden = data.value(c.hidden) == true, selected = data.value(c.selected) == true,
  }
end

-- Whether the signed-in user declined the event (left out of upcoming events).
local function declined(e)
  for _, a in ipairs(type(data.value(e.attendees)) == "table" and e.attendees or {}) do
    if data.get(a, "self") == true then return data.get(a, "responseStatus") == "declined" end
  end
  return false
end

---------------------------------------------------------------------------
-- Requests

local function request(ctx, req)
  return sdk.request(ctx, req, API)
end

-- events.list over pages: {items, next} or nil, err. `query` gets pageToken
-- and maxResults added per page.
local function list_event_pages(ctx, calendar_id, query, limit, start)
  local path = sdk.http.path("/calendars/{calendarId}/events", {calendarId = calendar_id})
  local summary, time_zone
  local got, err = paginate.collect{
    limit = limit, start = start, items = "items", next = "nextPageToken",
    fetch = function(cursor, remaining)
      local q = {}
      for k, v in pairs(query) do q[k] = v end
      q.pageToken = cursor
      q.maxResults = math.min(remaining or PAGE_MAX, PAGE_MAX)
      local body, ferr = request(ctx, {path = path, query = q})
      if body and summary == nil then
        summary, time_zone = str(body.summary), str(body.timeZone)
      end
      return body, ferr
    end,
  }
  if not got then return nil, err end
  got.summary, got.time_zone = summary, time_zone
  return got
end

-- time_min/time_max arguments (defaults: now, and a week after time_min),
-- checked against each other before any request.
local function window(args, default_span)
  local now = os.time()
  local min_text = args.time_min or format_time(now)
  local min_t = parse_time(min_text)
  if not min_t then return nil, sdk.errors.invalid_arguments("time_min is not an RFC 3339 date-time", "$.time_min") end
  local max_text = args.time_max or format_time(min_t + default_span)
  local max_t = parse_time(max_text)
  if not max_t then return nil, sdk.errors.invalid_arguments("time_max is not an RFC 3339 date-time", "$.time_max") end
  if max_t <= min_t then
    return nil, sdk.errors.invalid_arguments("time_max must be later than time_min", "$.time_max")
  end
  return {min = min_text, max = max_text}
end

local function list_calendars(ctx, args)
  local got, err = paginate.collect{
    limit = args.limit or 100, start = args.cursor, items = "items", next = "nextPageToken",
    fetch = function(cursor, remaining)
      return request(ctx, {path = "/users/me/calendarList", query = {
        maxResults = math.min(remaining, PAGE_MAX), pageToken = cursor,
        minAccessRole = args.min_access_role, showHidden = args.show_hidden,
      }})
    end,
  }
  if not got then return nil, err end
  return {calendars = data.map(got.items, calendar), next_cursor = got.next}
end

local function list_events(ctx, args)
  local span, err = window(args, DEFAULT_SPAN)
  if not span then return nil, err end
  local calendar_id = args.calendar_id or "primary"
  local got, lerr = list_event_pages(ctx, calendar_id, {
    timeMin = span.min, timeMax = span.max, singleEvents = true, orderBy = "startTime",
    q = args.query, timeZone = args.time_zone,
  }, args.limit or 50, args.cursor)
  if not got then return nil, lerr end
  return {
    calendar_id = calendar_id, calendar = got.summary, time_zone = got.time_zone,
    time_min = span.min, time_max = span.max,
    events = data.map(got.items, function(e) return event(e, false) end),
    next_cursor = got.next,
  }
end

local function get_event(ctx, args)
  local e, err = request(ctx, {
    path = sdk.http.path("/calendars/{calendarId}/events/{eventId}",
                         {calendarId = args.calendar_id or "primary", eventId = args.event_id}),
    query = {timeZone = args.time_zone},
  })
  if not e then return nil, err end
  return event(e, true)
end

-- The engine's /v1/context: the user's next events on the primary calendar.
local function upcoming_events(ctx, args)
  args = args or {}
  local now = os.time()
  local from = args.from or format_time(now)
  local to = args.to or format_time((parse_time(from) or now) + DAY)
  local limit = math.max(1, math.min(tonumber(args.limit) or 10, PAGE_MAX))
  local got, err = list_event_pages(ctx, "primary", {
    timeMin = from, timeMax = to, singleEvents = true, orderBy = "startTime",
  }, limit + 10)   -- a few spare for the declined ones left out
  if not got then return nil, err end
  local events = data.array()
  for _, e in ipairs(got.items) do
    if #events >= limit then break end
    if data.value(e.status) ~= "cancelled" and not declined(e) then
      local start, all_day = when(e.start)
      events[#events + 1] = {
        id = str(e.id), title = str(e.summary) or "(no title)", start = start, ["end"] = (when(e["end"])),
        all_day = all_day, location = str(e.location), url = str(e.htmlLink), meeting_url = meeting_url(e),
        calendar = got.summary or "primary",
      }
    end
  end
  return {events = events}
end

---------------------------------------------------------------------------
-- Sync: the primary calendar's events from a day ago to 30 days ahead.
--
-- A full listing of the window (singleEvents, so recurring events arrive as
-- their instances) ends with a nextSyncToken; later runs list only what
-- changed since (syncToken, cancelled events included, which become
-- deletions). Google allows no time bounds next to a syncToken, so the window
-- cannot slide: once it is a day old the pending changes are applied and a
-- new full listing starts. A 410 means the token expired: list again.
-- cursor = {sync_token, window_start, window_end} (RFC 3339 texts).

local function record_text(e)
  local lines = {e.title or "(no title)"}
  local function add(label, value) if value then lines[#lines + 1] = label .. ": " .. value end end
  add("When", e.start and (e.start .. (e["end"] and (" – " .. e["end"]) or "")))
  add("Where", e.location)
  add("Join", e.meeting_url)
  if e.organizer then add("Organizer", e.organizer.name or e.organizer.email) end
  if e.attendees then
    local names = {}
    for _, a in ipairs(e.attendees) do names[#names + 1] = a.name or a.email end
    add("Attendees", table.concat(names, ", "))
  end
  if e.description then lines[#lines + 1] = "\n" .. e.description end
  return table.concat(lines, "\n")
end

-- Applies one page of events: cancelled ones are deleted, the rest upserted.
local function apply(ctx, items, stats)
  for _, raw in ipairs(items) do
    local id = str(data.get(raw, "id"))
    if id then
      if data.get(raw, "status") == "cancelled" then
        local _, err = ctx.records.delete("event", id)
        if err then return nil, err end
        stats.deleted = stats.deleted + 1
      else
        local e = event(raw, true)
        local _, err = ctx.records.upsert("event", id, {
          title = e.title or "(no title)", text = record_text(e), url = e.url,
          updated_at = e.updated, data = e,
        })
        if err then return nil, err end
        stats.upserted = stats.upserted + 1
      end
    end
  end
  return true
end

-- Walks events.list pages from `query`, applying each; returns the
-- nextSyncToken of the last page, false when none came (max pages reached),
-- or nil, err (err.status 410: token gone). A round may hold empty pages
-- before its end (follow_empty); only nextSyncToken closes it.
local function walk(ctx, query, stats)
  local token
  for page, err in paginate.cursor{
    items = "items", next = "nextPageToken", follow_empty = true, max_pages = 200,
    fetch = function(page_token)
      local q = {}
      for k, v in pairs(query) do q[k] = v end
      q.pageToken, q.maxResults = page_token, PAGE_MAX
      return request(ctx, {path = "/calendars/primary/events", query = q})
    end,
  } do
    if not page then return nil, err end
    local ok, aerr = apply(ctx, page.items, stats)
    if not ok then return nil, aerr end
    token = str(page.body.nextSyncToken) or token
  end
  return token or false
end

local function sync_upcoming(ctx, cursor)
  local now = os.time()
  local stats = {upserted = 0, deleted = 0, full = false}
  if type(cursor) == "table" and str(cursor.sync_token) then
    local token, err = walk(ctx, {syncToken = cursor.sync_token, singleEvents = true}, stats)
    if token == nil and not (type(err) == "table" and err.status == 410) then return nil, err end
    local started = parse_time(cursor.window_start)
    if token and started and started + SYNC_LOOKBACK + SYNC_REFRESH > now then
      ctx.checkpoint({sync_token = token, window_start = cursor.window_start, window_end = cursor.window_end})
      return stats
    end
  end
  stats.full = true
  local window_start, window_end = format_time(now - SYNC_LOOKBACK), format_time(now + SYNC_HORIZON)
  local token, err = walk(ctx, {timeMin = window_start, timeMax = window_end, singleEvents = true}, stats)
  if token == nil then return nil, err end
  ctx.checkpoint({sync_token = token or nil, window_start = window_start, window_end = window_end})
  return stats
end

---------------------------------------------------------------------------
-- Schemas

local calendar_id = s.string{"The calendar's id from list_calendars (default: primary, the user's own).",
                             minLength = 1, maxLength = 1024}
local time_zone = s.string{"IANA time zone for the times in the answer, e.g. Europe/Berlin (default: the " ..
                           "calendar's).", minLength = 1, maxLength = 64, pattern = "^[A-Za-z0-9_+/-]+$"}
local cursor_arg = s.string{"next_cursor from an earlier call, to get the following results.", minLength = 1}

---------------------------------------------------------------------------

return {
  slug = "google_calendar",
  name = "Google Calendar",
  category = "calendar",
  description = "The user's Google calendars and events: list calendars, events in a time window " ..
                "(recurring events expanded, ordered by start), one event with attendees and description.",
  base_url = "https://www.googleapis.com/calendar/v3",
  hosts = {"www.googleapis.com", "accounts.google.com", "oauth2.googleapis.com"},
  auth = {
    type = "oauth2",
    authorize_url = "https://accounts.google.com/o/oauth2/v2/auth",
    token_url = "https://oauth2.googleapis.com/token",
    revoke_url = "https://oauth2.googleapis.com/revoke",
    scopes = {"https://www.googleapis.com/auth/calendar.readonly"},
    -- a refresh token comes only with offline access, and only on consent
    extra_authorize_params = {access_type = "offline", prompt = "consent"},
    instructions = "Sign in with Google and allow ferry to see your calendars (read-only). An administrator " ..
                   "first registers a Google OAuth client (Google Cloud console → APIs & Services → " ..
                   "Credentials, type Web application, with ferry's /oauth/callback as redirect URI, and the " ..
                   "Google Calendar API enabled) with `ferry oauth set-client google_calendar`.",
  },
  data_categories = {"meetings"},
  docs_url = "https://developers.google.com/calendar/api/v3/reference",

  -- The primary calendar's id is the account's email address.
  check = function(ctx)
    local cal, err = request(ctx, {path = "/calendars/primary"})
    if not cal then return nil, err end
    return {account_label = str(cal.id) or str(cal.summary)}
  end,

  upcoming_events = upcoming_events,

  tools = {
    list_calendars = {
      title = "List Google calendars",
      description = "The calendars on the user's calendar list (their own, shared and subscribed ones) with " ..
                    "id, name, time zone, whether it is the primary calendar and the user's access role. " ..
                    "Use an id as calendar_id in list_events.",
      access = "read",
      input = s.object{
        min_access_role = s.enum{"freeBusyReader", "reader", "writer", "owner",
                                 description = "Only calendars where the user has at least this role."},
        show_hidden = s.boolean "Include calendars hidden from the list.",
        limit = s.integer{"How many calendars to return (default 100).", minimum = 1, maximum = 500},
        cursor = cursor_arg,
      },
      run = list_calendars,
    },

    list_events = {
      title = "List Google Calendar events",
      description = "Events that overlap a time window, ordered by start time, recurring events expanded " ..
                    "into their occurrences. Default window: from now for 7 days. Each event has title, " ..
                    "start/end (RFC 3339, or dates for all-day events), location, meeting link, organizer, " ..
                    "attendees with their responses and a shortened description (get_event has all of it).",
      access = "read",
      input = s.object{
        calendar_id = calendar_id,
        time_min = s.string{"Start of the window (RFC 3339 with offset, e.g. 2024-05-01T00:00:00Z); events " ..
                            "ending after it are returned. Default: now.", format = "date-time"},
        time_max = s.string{"End of the window (RFC 3339); events starting before it are returned. Default: " ..
                            "7 days after time_min.", format = "date-time"},
        query = s.string{"Free text to match in title, description, location and attendees.", minLength = 1,
                         maxLength = 500},
        time_zone = time_zone,
        limit = s.integer{"How many events to return (default 50).", minimum = 1, maximum = 1000},
        cursor = cursor_arg,
      },
      run = list_events,
    },

    get_event = {
      title = "Get a Google Calendar event",
      description = "One event by id, with its full description, every attendee and their responses, " ..
                    "the organizer, meeting link and recurrence.",
      access = "read",
      input = s.object{
        event_id = s.string{"The event's id (from list_events).", required = true, minLength = 1,
                            maxLength = 1024},
        calendar_id = calendar_id,
        time_zone = time_zone,
      },
      run = get_event,
    },
  },

  syncs = {
    upcoming = {
      description = "Events of the primary calendar from a day ago to 30 days ahead, as `event` records.",
      every = "15m",
      category = "meetings",
      run = sync_upcoming,
    },
  },
}
