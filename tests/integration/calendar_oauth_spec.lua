-- Issue 7's "done means", end to end: a user connects Google Calendar
-- through the OAuth flow against the test identity provider (oidc-provider,
-- set up as the calendar's OAuth client by the operator), the agent lists
-- the next events (a tool, and /v1/context), the token is refreshed ahead of
-- expiry exactly once under load, and a revoked grant produces
-- reconnect_required with a URL; its `upcoming` sync runs in the engine
-- (first a window, then only changes) into search. The Calendar API is Prism serving Google's
-- description (requests validated), behind the recording tap; event lists
-- with real values are canned replies shaped like Google's.
local h = require "helper"

local SLUG = "google_calendar"
local SCOPE = "https://www.googleapis.com/auth/calendar.readonly"

local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%SZ", t) end

local function event(id, title, start_in, minutes)
  local now = os.time()
  return {kind = "calendar#event", id = id, status = "confirmed", summary = title,
          htmlLink = "https://www.google.com/calendar/event?eid=" .. id, location = "Room 4",
          start = {dateTime = iso(now + start_in)}, ["end"] = {dateTime = iso(now + start_in + minutes * 60)},
          updated = iso(now - 3600)}
end

describe("Google Calendar through OAuth", function()
  local prism, tap, idp, srv, key, callback

  lazy_setup(function()
    prism = h.start_prism(h.api_spec("google-calendar/openapi.yaml"))
    tap = h.start_tap(prism.url)
    local port = h.free_port()
    callback = "http://127.0.0.1:" .. port .. "/oauth/callback"
    idp = h.start_idp({redirect_uri = callback, access_ttl = 4, extra_scopes = SCOPE})
    local data = h.tmpdir() .. "/data"
    local code, _, err = h.ferry({"oauth", "set-client", SLUG, "--client-id", "ferry-test", "--client-secret",
      "s3cret", "--authorize-url", idp.url .. "/auth", "--token-url", idp.url .. "/token", "--data", data})
    assert(code == 0, err)
    srv = h.start_ferry({data = data, providers = {}, base_urls = {[SLUG] = tap.url},
                         args = {"--listen", "127.0.0.1:" .. port, "--oauth-refresh-interval-seconds", "3600"}})
    key = srv.key("alice", "acme")
  end)

  lazy_teardown(function()
    if srv then srv.stop() end
    if idp then idp.stop() end
    if tap then tap.stop() end
    if prism then prism.stop() end
  end)

  local conn

  it("connects through the sign-in flow with the calendar scope", function()
    local _, started = srv.get("/oauth/" .. SLUG .. "/start?format=json", key)
    local q = h.parse_query(started.authorize_url:match("%?(.*)$"))
    assert.are.equal(SCOPE, q.scope[1])
    assert.are.equal("offline", q.access_type[1])       -- the provider's extra parameters
    local back = h.browser_sign_in(started.authorize_url, {stop_at = callback})
    tap.clear()
    local status, text = h.request("GET", back, {headers = {accept = "application/json"}})
    conn = h.decode(text)
    assert.are.equal(201, status, text)
    assert.are.equal("active", conn.status)
    -- The provider's check ran against the Calendar API with the new token.
    local sent = tap.last()
    assert.are.equal("/calendars/primary", sent.path)
    local token = sent.headers.authorization:match("^Bearer (.+)$")
    local st, info = h.request("POST", idp.url .. "/token/introspection", {body = "token=" .. token,
      headers = {["content-type"] = "application/x-www-form-urlencoded",
                 authorization = "Basic " .. (require "mime").b64("ferry-test:s3cret")}})
    assert.are.equal(200, st)
    info = h.json.decode(info)
    assert.is_true(info.active)
    assert.are.equal(SCOPE, info.scope)
  end)

  it("lists the next events, with a tool and in /v1/context", function()
    local first, second = event("e1", "Board meeting", 2 * 3600, 60), event("e2", "Standup", 1800, 15)
    local list = {kind = "calendar#events", items = {second, first}}
    tap.replies({{status = 200, json = list}, {status = 200, json = list}})
    local status, body = h.call_tool(srv, key, SLUG .. "__list_events", {})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(2, #body.result.events)
    local _, ctx = srv.get("/v1/context", key)
    assert.are.equal(2, #ctx.upcoming_events)
    assert.are.equal("Standup", ctx.upcoming_events[1].title)        -- soonest first
    assert.are.equal("Board meeting", ctx.upcoming_events[2].title)
    assert.are.equal(SLUG, ctx.upcoming_events[1].integration)
    assert.is_truthy(ctx.text:find("Upcoming events in the next 24 h", 1, true))
    assert.is_truthy(ctx.text:find("Standup", 1, true))
    -- It asked Google for the next 24 hours of the primary calendar.
    local sent = tap.last()
    assert.are.equal("/calendars/primary/events", sent.path)
    local q = h.parse_query(sent.query)
    assert.are.equal("true", q.singleEvents[1])
    assert.is_truthy(q.timeMin[1]:match("^%d%d%d%d%-%d%d%-%d%dT"))
  end)

  it("syncs upcoming events through the engine, then only the changes, into search", function()
    local S = require "sync_helper"
    local board, standup = event("e1", "Board meeting", 2 * 3600, 60), event("e2", "Standup", 1800, 15)
    tap.clear()
    tap.replies({{status = 200, json = {kind = "calendar#events", items = {standup, board},
                                        nextSyncToken = "sync-token-1"}}})
    local run = S.run(srv, key, conn.id, "upcoming")
    assert.are.equal("succeeded", run.status, h.json.encode(run))
    assert.are.same({added = 2, updated = 0, deleted = 0, unchanged = 0}, run.records)
    local q = h.parse_query(tap.last().query)
    assert.are.equal("/calendars/primary/events", tap.last().path)
    assert.is_truthy(q.timeMin and q.timeMax, "the first run lists a window")
    local status, found = srv.get("/v1/search?q=board&category=meetings", key)
    assert.are.equal(200, status, h.json.encode(found))
    assert.are.equal(1, #found.results)
    assert.are.equal("e1", found.results[1].external_id)
    assert.are.equal(SLUG, found.results[1].integration)

    -- The next run asks only for what changed since (Google's sync token):
    -- the board meeting was cancelled, so its record goes.
    local cancelled = {kind = "calendar#event", id = "e1", status = "cancelled"}
    tap.replies({{status = 200, json = {kind = "calendar#events", items = {cancelled},
                                        nextSyncToken = "sync-token-2"}}})
    run = S.run(srv, key, conn.id, "upcoming")
    assert.are.equal("succeeded", run.status, h.json.encode(run))
    assert.are.equal(1, run.records.deleted)
    assert.are.equal("sync-token-1", h.parse_query(tap.last().query).syncToken[1])
    assert.are.equal("sync-token-2", S.db_cursor(srv.data, conn.id, "upcoming").sync_token)
    status, found = srv.get("/v1/search?q=board", key)
    assert.are.equal(200, status)
    assert.are.same({}, found.results)
    status, found = srv.get("/v1/search?q=standup", key)
    assert.are.equal(200, status)
    assert.are.equal(1, #found.results)
  end)

  it("refreshes the token ahead of expiry exactly once under load", function()
    h.sleep(4.2)
    tap.clear()
    local before = idp.counters().token.refresh_token or 0
    local report = h.loadgen({"--url", srv.url .. "/v1/tools/call", "--method", "POST",
      "--header", "Authorization: Bearer " .. key, "--header", "Content-Type: application/json",
      "--body", '{"name":"google_calendar__list_calendars","arguments":{}}',
      "--concurrency", "50", "--requests", "50", "--timeout-ms", "30000"})
    assert.are.equal(0, report.errors, h.json.encode(report.error_breakdown))
    assert.are.equal(before + 1, idp.counters().token.refresh_token)
    -- All fifty went out with the one new token.
    local tokens = {}
    for _, r in ipairs(tap.requests()) do tokens[r.headers.authorization] = true end
    local n = 0
    for _ in pairs(tokens) do n = n + 1 end
    assert.are.equal(1, n)
  end)

  it("turns a revoked grant into reconnect_required with a URL, never a silent failure", function()
    idp.revoke_grants()
    -- Google refuses the revoked token; ferry tries its refresh token once,
    -- which the identity provider refuses too.
    tap.replies({{status = 401, json = {error = {code = 401, status = "UNAUTHENTICATED",
                                                 message = "Request had invalid authentication credentials."}}}})
    local status, body = h.call_tool(srv, key, SLUG .. "__list_calendars", {})
    assert.are.equal(409, status, h.json.encode(body))
    assert.are.equal("reconnect_required", body.error.code)
    assert.are.equal("/oauth/" .. SLUG .. "/start?connection_id=" .. conn.id, body.error.details.reconnect_url)
    local _, ctx = srv.get("/v1/context", key)
    assert.is_truthy(ctx.text:find("Google Calendar must be reconnected", 1, true))
    local _, listing = srv.get("/v1/connections", key)
    assert.are.equal("reconnect_required", listing.connections[1].status)
  end)
end)
