-- Outlook Calendar (Microsoft 365 and outlook.com) through Microsoft Graph, read-only.
--
-- HTTP shapes follow Microsoft Graph v1.0's Calendar module as exported for
-- the PowerShell SDK (msgraph-sdk-powershell, openApiDocs/v1.0/Calendar.yml;
-- server https://graph.microsoft.com/v1.0). That description writes every
-- path under /users/{user-id}; the signed-in user's /me is Graph's alias for
-- /users/{their id}, and is what a delegated token uses:
--   list_calendars    GET /me/calendars                 (users_ListCalendars)
--   list_events       GET /me/calendarView              (users_ListCalendarView)
--                     GET /me/calendars/{id}/calendarView  (users.calendars_ListCalendarView)
--                     startDateTime/endDateTime, $orderby=start/dateTime, $top, $select
--   get_event         GET /me/events/{event-id}         (users_GetEvents)
--   check             GET /me/calendar?$select=name,owner  (users_GetCalendar): the owner's address
--   upcoming_events   calendarView of the default calendar
--   syncs.upcoming    GET /me/calendarView/delta (Graph's incremental sync; not in that module)
-- Pages: the whole URL of the next page comes in @odata.nextLink; it is
-- followed as a path under the base URL (so a test's base URL override
-- holds), and handed to agents as next_cursor without the base.
-- Times: `Prefer: outlook.timezone="UTC"` makes Graph answer dateTime values
-- in UTC (as "2024-05-06T09:00:00.0000000" + timeZone "UTC"), returned here
-- as RFC 3339 ("2024-05-06T09:00:00Z").
-- Quirk: the description's $orderby enum offers "start", which Graph refuses
-- (an order key must be a primitive property); Graph's documented form is
-- start/dateTime, which is what is sent.
--
-- Common subset of Lua 5.1 and 5.4, so tests/lua can run its functions.
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

local GRAPH = "https://graph.microsoft.com/v1.0"
local API = {service = "Microsoft Graph", message = {"error.message"}, code = {"error.code"}}

local PAGE_MAX = 100
local DAY = 86400
local DEFAULT_SPAN = 7 * DAY
local LIST_DESCRIPTION_MAX = 500
local LIST_ATTENDEES_MAX = 25

local SYNC_LOOKBACK = DAY
local SYNC_HORIZON = 30 * DAY
local SYNC_REFRESH = DAY

local EVENT_FIELDS = {
  "id", "subject", "bodyPreview", "start", "end", "isAllDay", "isCancelled", "location", "organizer",
  "attendees", "webLink", "onlineMeeting", "onlineMeetingUrl", "showAs", "responseStatus", "seriesMasterId",
  "type", "createdDateTime", "lastModifiedDateTime", "categories", "importance", "sensitivity",
}
local CALENDAR_FIELDS = {"id", "name", "color", "hexColor", "isDefaultCalendar", "canEdit", "owner"}

local function select_list(fields, extra)
  local out = table.concat(fields, ",")
  if extra then out = out .. "," .. extra end
  return out
end

---------------------------------------------------------------------------
-- Time: RFC 3339 <-> seconds since the epoch (UTC), from the SDK.

local parse_time, format_time = sdk.time.parse, sdk.time.format

local function str(v)
  v = data.value(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

-- Graph's dateTimeTimeZone → RFC 3339 when in UTC ("…T09:00:00Z"), else the
-- local time without its fraction; all-day events give their date.
local function graph_time(dt, all_day)
  local at = str(data.get(dt, "dateTime"))
  if not at then return nil end
  local date, clock = at:match("^(%d%d%d%d%-%d%d%-%d%d)T(%d%d:%d%d:%d%d)")
  if not date then return at end
  if all_day then return date end
  local zone = str(data.get(dt, "timeZone"))
  if zone == "UTC" or zone == "Etc/UTC" or zone == "GMT" then return date .. "T" .. clock .. "Z" end
  return date .. "T" .. clock
end

-- "2024-05-02T10:00:00.1234567Z" → "2024-05-02T10:00:00Z".
local function stamp(v)
  v = str(v)
  if not v then return nil end
  local date = v:match("^(%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d)%.?%d*Z$")
  return date and (date .. "Z") or v
end

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

---------------------------------------------------------------------------
-- Shaping results

local function address(holder)
  local ea = data.get(holder, "emailAddress")
  if type(ea) ~= "table" then return nil end
  local out = {name = str(ea.name), email = str(ea.address)}
  if not out.name and not out.email then return nil end
  return out
end

local function attendee(a)
  local out = address(a)
  if not out then return nil end
  out.response = str(data.get(a, "status.response"))
  out.type = str(data.get(a, "type"))
  return out
end

local function event(e, full)
  if type(e) ~= "table" then return nil end
  local all_day = data.value(e.isAllDay) == true
  local show_as = str(e.showAs)
  local out = {
    id = str(e.id), title = str(e.subject),
    start = graph_time(e.start, all_day), ["end"] = graph_time(e["end"], all_day), all_day = all_day,
    time_zone = str(data.get(e, "start.timeZone")),
    location = str(data.get(e, "location.displayName")), url = str(e.webLink),
    meeting_url = str(data.get(e, "onlineMeeting.joinUrl")) or str(e.onlineMeetingUrl),
    cancelled = data.value(e.isCancelled) == true, show_as = show_as,
    busy = show_as ~= "free" and show_as ~= "workingElsewhere",
    organizer = address(data.value(e.organizer)), my_response = str(data.get(e, "responseStatus.response")),
    type = str(e.type), series_master_id = str(e.seriesMasterId),
    importance = str(e.importance), sensitivity = str(e.sensitivity),
    created = stamp(e.createdDateTime), updated = stamp(e.lastModifiedDateTime),
  }
  local cats = data.value(e.categories)
  if type(cats) == "table" and #cats > 0 then out.categories = data.map(cats, str) end
  local body = str(data.get(e, "body.content"))
  if full and body then
    out.description = body
  else
    out.description = cut(str(e.bodyPreview), LIST_DESCRIPTION_MAX)
  end
  local list = data.value(e.attendees)
  if type(list) == "table" and #list > 0 then
    local attendees = data.array()
    for _, a in ipairs(list) do
      local shaped = attendee(a)
      if shaped and (full or #attendees < LIST_ATTENDEES_MAX) then attendees[#attendees + 1] = shaped end
    end
    out.attendees = attendees
    out.attendee_count = #list
  end
  return out
end

local function calendar(c)
  return {
    id = str(c.id), name = str(c.name), color = str(c.hexColor) or str(c.color),
    is_default = data.value(c.isDefaultCalendar) == true, can_edit = data.value(c.canEdit) == true,
    owner = (function()
      local o = data.value(c.owner)
      if type(o) ~= "table" then return nil end
      local out = {name = str(o.name), email = str(o.address)}
      if not out.name and not out.email then return nil end
      return out
    end)(),
  }
end

---------------------------------------------------------------------------
-- Requests

local function prefer(time_zone, text_body)
  local parts = {('outlook.timezone="%s"'):format(time_zone or "UTC")}
  if text_body then parts[#parts + 1] = 'outlook.body-content-type="text"' end
  return {Prefer = table.concat(parts, ", ")}
end

local function request(ctx, req)
  return sdk.request(ctx, req, API)
end

-- @odata.nextLink or @odata.deltaLink (an absolute Graph URL) as a path
-- under the base URL, or nil.
local function link_path(body, name)
  return paginate.relative(GRAPH, data.get(body, {name}))
end

-- A next_cursor an agent hands back: a path from an earlier answer, for the
-- same kind of list (`resources`: Lua patterns of what follows the user),
-- else false.
local function cursor_path(cursor, resources)
  if cursor == nil then return nil end
  local rest = cursor:match("^/me(/.*)$") or cursor:match("^/users/[^/?]+(/.*)$")
  if not rest or cursor:find("[%s#]") then return false end
  for _, pattern in ipairs(resources) do
    if rest:match(pattern) then return cursor end
  end
  return false
end

local function bad_cursor()
  return sdk.errors.invalid_arguments("cursor is not a next_cursor of this tool", "$.cursor")
end

-- A Graph list: the first page from `first` (a request), the next ones
-- from @odata.nextLink; {items, next} or nil, err.
local function list(ctx, first, limit, start, headers)
  return paginate.collect{
    limit = limit, start = start, items = "value",
    next = function(body) return link_path(body, "@odata.nextLink") end,
    fetch = function(cursor, remaining)
      if cursor then return request(ctx, {path = cursor, headers = headers}) end
      local req = first(math.min(remaining or PAGE_MAX, PAGE_MAX))
      req.headers = headers
      return request(ctx, req)
    end,
  }
end

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
  local start = cursor_path(args.cursor, {"^/calendars%?"})
  if start == false then return nil, bad_cursor() end
  local got, err = list(ctx, function(top)
    return {path = "/me/calendars", query = {["$top"] = top, ["$select"] = select_list(CALENDAR_FIELDS)}}
  end, args.limit or 100, start)
  if not got then return nil, err end
  return {calendars = data.map(got.items, calendar), next_cursor = got.next}
end

local function list_events(ctx, args)
  local span, err = window(args, DEFAULT_SPAN)
  if not span then return nil, err end
  local start = cursor_path(args.cursor, {"^/calendarView%?", "^/calendars/[^/?]+/calendarView%?"})
  if start == false then return nil, bad_cursor() end
  local path = "/me/calendarView"
  if args.calendar_id then
    path = sdk.http.path("/me/calendars/{id}/calendarView", {id = args.calendar_id})
  end
  local got, lerr = list(ctx, function(top)
    return {path = path, query = {
      startDateTime = span.min, endDateTime = span.max, ["$top"] = top,
      ["$orderby"] = "start/dateTime", ["$select"] = select_list(EVENT_FIELDS),
    }}
  end, args.limit or 50, start, prefer(args.time_zone))
  if not got then return nil, lerr end
  return {
    calendar_id = args.calendar_id, time_min = span.min, time_max = span.max,
    time_zone = args.time_zone or "UTC",
    events = data.map(got.items, function(e) return event(e, false) end),
    next_cursor = got.next,
  }
end

local function get_event(ctx, args)
  local e, err = request(ctx, {
    path = sdk.http.path("/me/events/{id}", {id = args.event_id}),
    query = {["$select"] = select_list(EVENT_FIELDS, "body")},
    headers = prefer(args.time_zone, true),
  })
  if not e then return nil, err end
  return event(e, true)
end

local function upcoming_events(ctx, args)
  args = args or {}
  local now = os.time()
  local from = args.from or format_time(now)
  local to = args.to or format_time((parse_time(from) or now) + DAY)
  local limit = math.max(1, math.min(tonumber(args.limit) or 10, PAGE_MAX))
  local got, err = list(ctx, function(top)
    return {path = "/me/calendarView", query = {
      startDateTime = from, endDateTime = to, ["$top"] = top, ["$orderby"] = "start/dateTime",
      ["$select"] = "id,subject,start,end,isAllDay,isCancelled,location,webLink,onlineMeeting,responseStatus",
    }}
  end, limit + 10, nil, prefer())
  if not got then return nil, err end
  local events = data.array()
  for _, e in ipairs(got.items) do
    if #events >= limit then break end
    if data.value(e.isCancelled) ~= true and data.get(e, "responseStatus.response") ~= "declined" then
      local all_day = data.value(e.isAllDay) == true
      events[#events + 1] = {
        id = str(e.id), title = str(e.subject) or "(no title)", start = graph_time(e.start, all_day),
        ["end"] = graph_time(e["end"], all_day), all_day = all_day,
        location = str(data.get(e, "location.displayName")), url = str(e.webLink),
        meeting_url = str(data.get(e, "onlineMeeting.joinUrl")), calendar = "Outlook",
      }
    end
  end
  return {events = events}
end

---------------------------------------------------------------------------
-- Sync: the default calendar's events from a day ago to 30 days ahead,
-- through Graph's calendarView delta query. A first round lists the window
-- (pages by @odata.nextLink) and ends with an @odata.deltaLink; later runs
-- follow it and get only what changed, deleted events as {"@removed": ...}.
-- A delta round keeps its window, so once the window is a day old the
-- pending changes are applied and a new round starts. 410 Gone means the
-- delta token expired: start again.
-- cursor = {delta_link (a path under the base URL), window_start, window_end}.

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

local function apply(ctx, items, stats)
  for _, raw in ipairs(items) do
    local id = type(raw) == "table" and str(raw.id) or nil
    if id then
      if raw["@removed"] ~= nil or data.value(raw.isCancelled) == true then
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

-- Follows a delta round to its deltaLink (returned as a path), applying
-- every page: from `start` (the path of an earlier deltaLink) or, without
-- one, from the request `first`. false when it did not end (max pages
-- reached, a link that was not Graph's), nil, err on failure. Pages come by
-- @odata.nextLink, empty ones included (follow_empty: "there are more pages
-- of data to retrieve in the session, even if the current response contains
-- an empty result", Graph's delta query overview); the deltaLink ends it.
local function walk(ctx, stats, start, first)
  local headers = {Prefer = 'outlook.timezone="UTC", odata.maxpagesize=100'}
  local delta
  for page, err in paginate.cursor{
    items = "value", follow_empty = true, max_pages = 200, start = start,
    next = function(body)
      if link_path(body, "@odata.deltaLink") then return nil end
      return link_path(body, "@odata.nextLink")
    end,
    fetch = function(path)
      if path then return request(ctx, {path = path, headers = headers}) end
      first.headers = headers
      return request(ctx, first)
    end,
  } do
    if not page then return nil, err end
    local ok, aerr = apply(ctx, page.items, stats)
    if not ok then return nil, aerr end
    delta = link_path(page.body, "@odata.deltaLink")
  end
  return delta or false
end

local function sync_upcoming(ctx, cursor)
  local now = os.time()
  local stats = {upserted = 0, deleted = 0, full = false}
  if type(cursor) == "table" and str(cursor.delta_link) then
    local delta, err = walk(ctx, stats, cursor.delta_link)
    if delta == nil and not (type(err) == "table" and err.status == 410) then return nil, err end
    local started = parse_time(cursor.window_start)
    if delta and started and started + SYNC_LOOKBACK + SYNC_REFRESH > now then
      ctx.checkpoint({delta_link = delta, window_start = cursor.window_start, window_end = cursor.window_end})
      return stats
    end
  end
  stats.full = true
  local window_start, window_end = format_time(now - SYNC_LOOKBACK), format_time(now + SYNC_HORIZON)
  local delta, err = walk(ctx, stats, nil, {path = "/me/calendarView/delta",
                                            query = {startDateTime = window_start, endDateTime = window_end}})
  if delta == nil then return nil, err end
  ctx.checkpoint({delta_link = delta or nil, window_start = window_start, window_end = window_end})
  return stats
end

---------------------------------------------------------------------------
-- Schemas

local time_zone = s.string{"Time zone for the times in the answer: IANA (Europe/Berlin) or Windows (W. Europe " ..
                           "Standard Time) name. Default UTC, with times in RFC 3339.", minLength = 1,
                           maxLength = 64, pattern = "^[A-Za-z0-9_+/ .()-]+$"}
local cursor_arg = s.string{"next_cursor from an earlier call, to get the following results.", minLength = 1,
                            maxLength = 4096}

---------------------------------------------------------------------------

return {
  slug = "outlook_calendar",
  name = "Outlook Calendar",
  category = "calendar",
  description = "The user's Outlook (Microsoft 365 / outlook.com) calendars and events through Microsoft " ..
                "Graph: list calendars, events in a time window (recurring events expanded, ordered by " ..
                "start), one event with attendees and body.",
  base_url = GRAPH,
  hosts = {"graph.microsoft.com", "login.microsoftonline.com"},
  auth = {
    type = "oauth2",
    authorize_url = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
    token_url = "https://login.microsoftonline.com/common/oauth2/v2.0/token",
    -- offline_access is what brings a refresh token
    scopes = {"Calendars.Read", "offline_access"},
    instructions = "Sign in with Microsoft and allow ferry to read your calendars. An administrator first " ..
                   "registers an application in Microsoft Entra ID (App registrations → New registration, " ..
                   "accounts in any organizational directory and personal Microsoft accounts, Web redirect " ..
                   "URI ferry's /oauth/callback, delegated Graph permission Calendars.Read, and a client " ..
                   "secret) and saves it with `ferry oauth set-client outlook_calendar`.",
  },
  data_categories = {"meetings"},
  docs_url = "https://learn.microsoft.com/graph/api/resources/calendar-overview",

  -- Calendars.Read alone cannot read /me (that takes User.Read); the
  -- default calendar's owner is the account.
  check = function(ctx)
    local cal, err = request(ctx, {path = "/me/calendar", query = {["$select"] = "name,owner"}})
    if not cal then return nil, err end
    return {account_label = str(data.get(cal, "owner.address")) or str(data.get(cal, "owner.name"))}
  end,

  upcoming_events = upcoming_events,

  tools = {
    list_calendars = {
      title = "List Outlook calendars",
      description = "The user's calendars with id, name, colour, owner, whether it is the default calendar " ..
                    "and whether the user can edit it. Use an id as calendar_id in list_events.",
      access = "read",
      input = s.object{
        limit = s.integer{"How many calendars to return (default 100).", minimum = 1, maximum = 500},
        cursor = cursor_arg,
      },
      run = list_calendars,
    },

    list_events = {
      title = "List Outlook Calendar events",
      description = "Events that overlap a time window (Graph's calendar view: recurring events expanded " ..
                    "into occurrences), ordered by start time. Default window: from now for 7 days, on the " ..
                    "default calendar. Each event has title, start/end, location, online meeting link, " ..
                    "organizer, attendees with their responses and a body preview (get_event has the body).",
      access = "read",
      input = s.object{
        calendar_id = s.string{"A calendar's id from list_calendars (default: the default calendar).",
                               minLength = 1, maxLength = 512},
        time_min = s.string{"Start of the window (RFC 3339, e.g. 2024-05-01T00:00:00Z). Default: now.",
                            format = "date-time"},
        time_max = s.string{"End of the window (RFC 3339). Default: 7 days after time_min.", format = "date-time"},
        time_zone = time_zone,
        limit = s.integer{"How many events to return (default 50).", minimum = 1, maximum = 1000},
        cursor = cursor_arg,
      },
      run = list_events,
    },

    get_event = {
      title = "Get an Outlook Calendar event",
      description = "One event by id with its body as plain text, every attendee and their responses, " ..
                    "the organizer and the online meeting link.",
      access = "read",
      input = s.object{
        event_id = s.string{"The event's id (from list_events).", required = true, minLength = 1,
                            maxLength = 512},
        time_zone = time_zone,
      },
      run = get_event,
    },
  },

  syncs = {
    upcoming = {
      description = "Events of the default calendar from a day ago to 30 days ahead, as `event` records.",
      every = "15m",
      category = "meetings",
      run = sync_upcoming,
    },
  },
}
