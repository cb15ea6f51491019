-- The scheduler's other job kinds across two ferry processes on one
-- database: token refreshes (one job, oauth:refresh) against a real
-- identity provider (oidc-provider, tests/peers/oidc_server.mjs), and an
-- MCP server's periodic tool re-sync (mcp:<server>:tools) against the MCP
-- fault server. Both processes run with scheduled syncs off
-- (--sync-concurrency 0, the helper's default): these kinds have limits of
-- their own.
local h = require "helper"
local mcp = require "mcp_helper"

local SLUG = "idp_profile"

local function now_ms() return math.floor(h.now() * 1000) end

local function job(data, id)
  local rows = h.sql(data, "SELECT kind, subject, schedule, next_run_at, failures, COALESCE(last_started_at, 0),"
    .. " COALESCE(last_ended_at, 0), COALESCE(last_status, ''), COALESCE(last_error, '') FROM sched_jobs WHERE id = '"
    .. id .. "'")
  local r = rows[1]
  if not r then return nil end
  return {kind = r[1], subject = r[2], schedule = r[3], next_run_at = tonumber(r[4]), failures = tonumber(r[5]),
          last_started_at = tonumber(r[6]), last_ended_at = tonumber(r[7]), last_status = r[8], last_error = r[9]}
end

local function wait_until(fn, timeout, what)
  local deadline = h.now() + (timeout or 10)
  local v = fn()
  while not v and h.now() < deadline do
    h.sleep(0.05)
    v = fn()
  end
  assert(v, "timed out: " .. what)
  return v
end

describe("token refreshes as a scheduler job", function()
  it("refresh a token inside the margin exactly once across two processes, usable by both", function()
    local port = h.free_port()
    local callback = "http://127.0.0.1:" .. port .. "/oauth/callback"
    local idp = h.start_idp({redirect_uri = callback})   -- 60-second access tokens
    local data = h.tmpdir() .. "/data"
    local code, _, err = h.run({"sh", "-c", 'printf "s3cret\\n" | "$0" oauth set-client idp_profile'
      .. ' --client-id ferry-test --client-secret - --authorize-url "$1/auth" --token-url "$1/token"'
      .. ' --revoke-url "$1/token/revocation" --data "$2" --providers "$3"',
      h.bin, idp.url, data, h.root .. "/tests/providers"})
    assert.are.equal(0, code, err)
    local common = {"--oauth-refresh-interval-seconds", "1", "--sched-tick-ms", "50"}
    local a = h.start_ferry({data = data, base_urls = {[SLUG] = idp.url},
                             args = {"--listen", "127.0.0.1:" .. port, common[1], common[2], common[3], common[4]}})
    local b = h.start_ferry({data = data, base_urls = {[SLUG] = idp.url}, args = common})
    local key = a.key("ann", "acme")

    -- One job for both, every second, exactly (no jitter).
    local j = job(data, "oauth:refresh")
    assert.are.equal("oauth", j.kind)
    assert.are.equal("1s", j.schedule)

    local url = (select(2, a.get("/oauth/" .. SLUG .. "/start?format=json", key))).authorize_url
    local status, text = h.request("GET", h.browser_sign_in(url, {stop_at = callback}),
                                   {headers = {accept = "application/json"}})
    assert.are.equal(201, status, text)
    local conn = h.decode(text)
    local before = idp.counters().token.refresh_token or 0
    -- A slow token endpoint: a refresh takes 2.5 s, more than two periods of
    -- the job, so a process that refreshed on a timer of its own would
    -- start a second refresh while the first is out; the job's lease holds
    -- until the refreshes it started end.
    idp.token_delay(2500)
    -- The token (still good at the IdP) is now inside the margin: the job
    -- refreshes it, whichever process runs it.
    h.sql(data, "UPDATE connections SET token_expires_at = credential_set_at + 1000 WHERE id = '" .. conn.id .. "'")
    wait_until(function() return (idp.counters().token.refresh_token or 0) > before end, 15, "a refresh")
    idp.token_delay(0)
    -- Both processes go on running the job every second for a while.
    local seen = job(data, "oauth:refresh").last_started_at
    h.sleep(3)
    assert.are.equal(before + 1, idp.counters().token.refresh_token)
    local log = h.sql(data, "SELECT outcome FROM token_refresh_logs WHERE connection_id = '" .. conn.id .. "'")
    assert.are.same({{"ok"}}, log)
    j = job(data, "oauth:refresh")
    assert.is_true(j.last_started_at > seen, "the job kept running")
    assert.are.equal("succeeded", j.last_status)
    assert.are.equal(0, j.failures)
    -- The new expiry is the IdP's 60 s away, not the one set above.
    local expires = tonumber(h.sql(data, "SELECT token_expires_at FROM connections WHERE id = '" .. conn.id
      .. "'")[1][1])
    assert.is_true(expires > now_ms() + 50000)
    -- The new token works through either process, with no refresh of their own.
    for _, srv in ipairs({a, b}) do
      local st, body = srv.call(key, SLUG .. "__whoami", {})
      assert.are.equal(200, st, h.json.encode(body))
      assert.are.equal("ann", body.result.sub)
    end
    assert.are.equal(before + 1, idp.counters().token.refresh_token)
    local _, listing = b.get("/v1/connections", key)
    assert.are.equal("active", listing.connections[1].status)
    a.stop()
    b.stop()
    idp.stop()
  end)
end)

describe("MCP servers' periodic syncs as scheduler jobs", function()
  local fault, a, b, admin, data, id

  setup(function()
    fault = mcp.start_fault()
    data = h.tmpdir() .. "/data"
    local args = {"--mcp-allow-private", "--sched-tick-ms", "50"}
    a = h.start_ferry({data = data, args = args})
    b = h.start_ferry({data = data, args = args})   -- started before the server exists
    admin = a.key("ada", "acme", "admin")
  end)

  teardown(function()
    if a then a.stop() end
    if b then b.stop() end
    if fault then fault.stop() end
  end)

  -- Syncs that reached the server: tools/list requests for a first page.
  local function syncs_seen()
    local n = 0
    for _, e in ipairs(fault.events("http")) do
      if e.body and e.body.method == "tools/list" and not (e.body.params and e.body.params.cursor) then n = n + 1 end
    end
    return n
  end

  it("has a job only while the server is approved with an interval", function()
    local body = mcp.register_ok(a, admin, {name = "Faulty", url = fault.url .. "/mcp", sync_interval_s = 60,
                                            bearer_token = "fault-bearer-token-9876"})
    id = body.server.id
    assert.is_nil(job(data, "mcp:" .. id .. ":tools"), "a pending server has no job")
    mcp.approve_server(a, admin, id)
    local j = job(data, "mcp:" .. id .. ":tools")
    assert.are.equal("mcp", j.kind)
    assert.are.equal(id, j.subject)
    assert.are.equal("60s", j.schedule)
    -- Synced at registration: the first periodic sync is an interval away.
    assert.is_true(math.abs(j.next_run_at - (now_ms() + 60000)) < 5000, tostring(j.next_run_at - now_ms()))
    -- No periodic sync, no job; an interval again, a job again.
    local st, out = h.request("PATCH", a.url .. "/v1/mcp-servers/" .. id, {
      headers = {authorization = "Bearer " .. admin, ["content-type"] = "application/json"},
      body = h.json.encode({sync_interval_s = 0})})
    assert.are.equal(200, st, out)
    assert.is_nil(job(data, "mcp:" .. id .. ":tools"))
    st, out = h.request("PATCH", a.url .. "/v1/mcp-servers/" .. id, {
      headers = {authorization = "Bearer " .. admin, ["content-type"] = "application/json"},
      body = h.json.encode({sync_interval_s = 120})})
    assert.are.equal(200, st, out)
    assert.are.equal("120s", job(data, "mcp:" .. id .. ":tools").schedule)
  end)

  it("runs a due re-sync once across two processes and records its outcome", function()
    local jid = "mcp:" .. id .. ":tools"
    for round = 1, 3 do
      local before = syncs_seen()
      local audits = tonumber(h.sql(data, "SELECT count(*) FROM audit_log WHERE operation = 'mcp.sync'")[1][1])
      local t0 = now_ms()
      h.sql(data, "UPDATE sched_jobs SET next_run_at = 0 WHERE id = '" .. jid .. "'")
      local j = wait_until(function()
        local x = job(data, jid)
        return x.last_ended_at >= t0 and x.last_status ~= "" and x
      end, 10, "the job's run " .. round)
      assert.are.equal("succeeded", j.last_status, j.last_error)
      -- Both processes looked for it every 50 ms; one ran it, once.
      h.sleep(0.5)
      assert.are.equal(before + 1, syncs_seen())
      assert.are.equal(audits + 1,
        tonumber(h.sql(data, "SELECT count(*) FROM audit_log WHERE operation = 'mcp.sync'")[1][1]))
      -- Next an interval (plus at most a tenth of it in jitter) after it began.
      j = job(data, jid)
      local ahead = j.next_run_at - j.last_started_at
      assert.is_true(ahead >= 120000 and ahead <= 132000, tostring(ahead))
    end
    -- The server's own record shows the sync.
    local st, body = h.request("GET", a.url .. "/v1/mcp-servers/" .. id,
                               {headers = {authorization = "Bearer " .. admin}})
    assert.are.equal(200, st)
    assert.are.equal("ok", h.json.decode(body).server.last_sync_status)
  end)

  it("records a failed re-sync on the job, and removes the job with the server", function()
    local jid = "mcp:" .. id .. ":tools"
    fault.stop()
    fault = nil
    local t0 = now_ms()
    h.sql(data, "UPDATE sched_jobs SET next_run_at = 0 WHERE id = '" .. jid .. "'")
    local j = wait_until(function()
      local x = job(data, jid)
      return x.last_ended_at >= t0 and x.last_status ~= "" and x
    end, 20, "the failed run")
    assert.are.equal("failed", j.last_status)
    assert.are.equal(1, j.failures)
    assert.is_true(#j.last_error > 0)
    -- Retried with backoff, before its schedule's next slot.
    assert.is_true(j.next_run_at - j.last_ended_at <= 120000)
    local st = h.request("DELETE", a.url .. "/v1/mcp-servers/" .. id, {headers = {authorization = "Bearer " .. admin}})
    assert.are.equal(204, st)
    assert.is_nil(job(data, jid))
  end)
end)
