-- Syncs through the real binary: a connection of the records_source test
-- provider syncs the fault server's change feed on its schedule and on
-- demand, waits out an upstream's Retry-After and resumes from its last
-- checkpoint, retries transient errors with backoff, fails visibly when an
-- upstream keeps failing (and recovers on its own), is audited without
-- secrets, and leaves nothing behind when its connection is deleted.
local h = require "helper"
local S = require "sync_helper"

local SECRET = "rs-secret-token-1234"

describe("syncs", function()
  local fault, srv, admin

  local function start(args, providers)
    srv = S.start(fault, {providers = providers, args = args})
    admin = srv.key("ada", "acme", "admin")
  end

  before_each(function()
    fault = h.start_fault()
  end)

  after_each(function()
    if srv then srv.stop() end
    srv = nil
    fault.stop()
  end)

  it("runs on its schedule, then incrementally, with its cursor, counts and runs in /v1/syncs", function()
    S.dataset(fault, "reset", {size = 250, seed = 5, text = 500})
    start({"--sched-tick-ms", "100"}, S.provider_dir("2s"))
    local conn = S.connect(srv, admin, {page_size = 100})

    -- The first run comes on its own, soon after connecting.
    local s = S.wait_sync(srv, admin, conn, "items", function(x)
      return type(x.last_run) == "table" and x.last_run.status == "succeeded"
    end, 10)
    local first = s.last_run
    assert.are.equal("schedule", first.trigger)
    assert.are.same({added = 250, updated = 0, deleted = 0, unchanged = 0}, first.records)
    assert.are.equal(3, first.pages)
    assert.are.equal(3, first.requests)
    assert.are.equal("projects", s.category)
    assert.are.equal("2s", s.schedule)
    assert.are.equal(250, s.records)
    assert.are.same({after = 250}, s.cursor)
    S.check_against(fault, srv.data, conn, "items", "main", true)
    assert.are.equal(250, S.check_integrity(srv.data, conn, "items"))

    -- Changes upstream arrive with the next scheduled run, and only they
    -- are read: the run starts from the cursor.
    local changed = S.dataset(fault, "mutate", {n = 40})
    s = S.wait_sync(srv, admin, conn, "items", function(x)
      return x.last_run and x.last_run.id ~= first.id and x.last_run.status == "succeeded"
    end, 10)
    local second = s.last_run
    assert.are.equal("schedule", second.trigger)
    -- Each record changed since the cursor comes once, however often it changed.
    local touched = 0
    for _, item in ipairs(S.upstream_state(fault).items) do
      if item.seq > 250 then touched = touched + 1 end
    end
    assert.are.equal(touched, second.records.added + second.records.updated + second.records.deleted)
    assert.are.equal(1, second.requests)
    assert.are.same({after = changed.seq}, s.cursor)
    S.check_against(fault, srv.data, conn, "items", "main", true)
    S.check_integrity(srv.data, conn, "items")

    -- Every two seconds from when the last run was due (found due up to
    -- a tick, 100 ms, before it started), give or take a tenth.
    local function ms(iso)
      local y, mo, d, hh, mi, ss, frac = iso:match("(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)%.(%d+)Z")
      return os.time{year = y, month = mo, day = d, hour = hh, min = mi, sec = ss} * 1000 + tonumber(frac)
    end
    local gap = ms(second.started_at) - ms(first.started_at)
    assert.is_true(gap >= 1800 and gap <= 2500, "runs " .. gap .. " ms apart")
    local ahead = ms(s.next_run_at) - ms(second.started_at)
    assert.is_true(ahead >= 1800 and ahead <= 2250, "next run " .. ahead .. " ms after the last start")

    -- The list shows both syncs of the connection; the connection was synced.
    local status, list = S.get(srv, admin, "/v1/syncs?connection_id=" .. conn)
    assert.are.equal(200, status)
    assert.are.equal(2, #list.syncs)
    local _, conns = S.get(srv, admin, "/v1/connections")
    assert.is_string(conns.connections[1].last_synced_at)
    assert.are.equal(h.json.null, conns.connections[1].last_error)
  end)

  it("runs on demand; asking again while it runs returns the same run", function()
    S.dataset(fault, "reset", {size = 300, seed = 6, text = 300})
    S.dataset(fault, "faults", {delay_ms = 150})
    start()
    local conn = S.connect(srv, admin, {page_size = 100})
    local status, body = S.post(srv, admin, "/v1/syncs/" .. conn .. "/items/run")
    assert.are.equal(202, status)
    assert.is_true(body.started)
    assert.are.equal("manual", body.run.trigger)
    local again_status, again = S.post(srv, admin, "/v1/syncs/" .. conn .. "/items/run")
    assert.are.equal(202, again_status)
    assert.is_false(again.started)
    assert.are.equal(body.run.id, again.run.id)
    assert.are.equal("running", again.run.status)
    local s = S.wait_sync(srv, admin, conn, "items", function(x)
      return type(x.last_run) == "table" and x.last_run.status ~= "running"
    end)
    assert.are.equal("succeeded", s.last_run.status)
    assert.are.equal(300, s.records)

    -- What cannot be run says why.
    assert.are.equal(404, (S.post(srv, admin, "/v1/syncs/" .. conn .. "/nope/run")))
    assert.are.equal(404, (S.post(srv, admin, "/v1/syncs/conn_missing/items/run")))
    local other = srv.key("mo", "acme")
    local st, err = S.post(srv, other, "/v1/syncs/" .. conn .. "/items/run")
    assert.are.equal(404, st)   -- another member's own connection does not exist for them
    assert.are.equal("not_found", err.error.code)
  end)

  it("waits exactly the upstream's Retry-After mid-sync and resumes from the last checkpoint", function()
    S.dataset(fault, "reset", {size = 600, seed = 7, text = 300})
    -- The 4th page request is refused with 429 and Retry-After: 2.
    S.dataset(fault, "faults", {rate_limit_every = 4, retry_after = 2})
    start()
    local conn = S.connect(srv, admin, {page_size = 100})
    local run = S.run(srv, admin, conn, "items")
    assert.are.equal("succeeded", run.status)
    assert.are.equal(2, run.attempts)
    assert.is_true(run.waited_ms >= 2000 and run.waited_ms < 2100, "waited " .. run.waited_ms)
    assert.are.equal(6, run.pages)
    assert.are.same({added = 600, updated = 0, deleted = 0, unchanged = 0}, run.records)

    local log = S.upstream_log(fault).requests
    assert.are.equal(429, log[4].status)
    -- The next request comes Retry-After later, and asks for what the 429
    -- refused: the page after the last checkpoint (nothing replayed).
    local gap = log[5].t_ms - log[4].t_ms
    assert.is_true(gap >= 2000 and gap < 2400, "the retry came " .. gap .. " ms after the 429")
    assert.are.equal(log[4].after, log[5].after)
    assert.are.equal(300, log[5].after)
    S.check_against(fault, srv.data, conn, "items", "main", true)
  end)

  it("treats a 503 with Retry-After the same way, and replays uncheckpointed work idempotently", function()
    S.dataset(fault, "reset", {size = 300, seed = 8, text = 300})
    S.dataset(fault, "faults", {rate_limit_every = 2, retry_after = 1, rate_status = 503})
    start()
    local conn = S.connect(srv, admin, {page_size = 100})
    local run = S.run(srv, admin, conn, "items")
    assert.are.equal("succeeded", run.status)
    assert.is_true(run.waited_ms >= 2000 and run.waited_ms < 2200, "waited " .. run.waited_ms)
    local log = S.upstream_log(fault).requests
    assert.are.equal(503, log[2].status)
    assert.are.equal(300, run.records.added)
    S.check_against(fault, srv.data, conn, "items", "main", true)
  end)

  it("retries transient errors with backoff; a sync that keeps failing fails visibly and recovers on its own",
    function()
    S.dataset(fault, "reset", {size = 300, seed = 9, text = 300})
    -- Every 3rd request fails (500) and every 5th is slower than the
    -- provider's 2 s timeout: each attempt resumes from its checkpoint.
    S.dataset(fault, "faults", {error_every = 3, slow_every = 5, slow_ms = 2500})
    start({"--sync-retry-ms", "100", "--sync-attempts", "3", "--sync-backoff-ms", "1500", "--sched-tick-ms", "100"})
    local conn = S.connect(srv, admin, {page_size = 50})
    local run = S.run(srv, admin, conn, "items")
    assert.are.equal("succeeded", run.status)
    assert.is_true(run.attempts >= 3, "attempts: " .. run.attempts)
    S.check_against(fault, srv.data, conn, "items", "main", true)

    -- Now every request fails: three attempts, then the run is failed with
    -- its error, and so is the connection's last_error.
    S.dataset(fault, "mutate", {n = 20})
    S.dataset(fault, "faults", {error_every = 1})
    local failed = S.run(srv, admin, conn, "items")
    assert.are.equal("failed", failed.status)
    assert.are.equal(3, failed.attempts)
    assert.are.equal("upstream_error", failed.error.code)
    local _, conns = S.get(srv, admin, "/v1/connections")
    assert.matches("^sync items: ", conns.connections[1].last_error)
    assert.are.equal("active", conns.connections[1].status)
    local s = S.sync(srv, admin, conn, "items")
    assert.are.equal(1, s.failures)

    -- The scheduler retries it after the backoff (not an hour later), and
    -- once the upstream recovers the sync and the connection are well.
    S.dataset(fault, "faults", {})
    s = S.wait_sync(srv, admin, conn, "items", function(x)
      return x.last_run.id ~= failed.id and x.last_run.status == "succeeded"
    end, 10)
    assert.are.equal("schedule", s.last_run.trigger)
    assert.are.equal(0, s.failures)
    _, conns = S.get(srv, admin, "/v1/connections")
    assert.are.equal(h.json.null, conns.connections[1].last_error)
    S.check_against(fault, srv.data, conn, "items", "main", true)
  end)

  it("refuses records it cannot store as given: proxy fields, a time past the year 9999", function()
    S.dataset(fault, "reset", {size = 20, seed = 3, text = 100})
    start()
    for _, misuse in ipairs({"proxy", "far_time"}) do
      local status, body, text = h.connect(srv, admin, {
        integration = "records_source", credentials = {token = SECRET}, label = misuse,
        settings = {page_size = "10", misuse = misuse}})
      assert.are.equal(201, status, text)
      local run = S.run(srv, admin, body.id, "items")
      assert.are.equal("failed", run.status, h.json.encode(run))
      assert.are.equal("script_error", run.error.code)
      assert.matches(misuse == "proxy" and "plain table" or "year 9999", run.error.message)
      assert.are.same({{"0"}},
                      h.sql(srv.data, "SELECT count(*) FROM records WHERE connection_id = '" .. body.id .. "'"))
    end
  end)

  it("audits each run as one operation, never with the credential", function()
    S.dataset(fault, "reset", {size = 120, seed = 10, text = 200})
    start()
    local conn = S.connect(srv, admin, {page_size = 50})
    local run = S.run(srv, admin, conn, "items")
    assert.are.equal("succeeded", run.status)
    local audit
    for _ = 1, 50 do   -- audit rows are written in batches
      local _, body = S.get(srv, admin, "/v1/audit?integration=records_source")
      for _, row in ipairs(body.rows or body.entries or body.audit or {}) do
        if row.operation == "records_source:sync:items" then audit = row end
      end
      if audit then break end
      h.sleep(0.05)
    end
    assert.is_table(audit, "no audit row for the sync run")
    assert.are.equal("ok", audit.outcome)
    assert.are.equal(conn, audit.connection_id)
    assert.are.equal("ada", audit.user)
    local _, verify = S.get(srv, admin, "/v1/audit/verify")
    assert.is_true(verify.ok)

    -- The token is in no answer, log, audit row or stored record.
    local _, _, text = S.get(srv, admin, "/v1/syncs/" .. conn .. "/items")
    assert.is_nil(text:find(SECRET, 1, true))
    local _, _, audit_text = S.get(srv, admin, "/v1/audit")
    assert.is_nil(audit_text:find(SECRET, 1, true))
    assert.is_nil((h.read_file(srv.log) or ""):find(SECRET, 1, true))
    local rows = h.sql(srv.data, "SELECT count(*) FROM records WHERE data LIKE '%" .. SECRET .. "%'" ..
                                 " OR title LIKE '%" .. SECRET .. "%'")
    assert.are.equal("0", rows[1][1])
  end)

  it("deleting a connection deletes its records, chunks, jobs, runs and cursors", function()
    S.dataset(fault, "reset", {size = 200, seed = 12, text = 1500})
    start()
    local conn = S.connect(srv, admin, {page_size = 100})
    assert.are.equal("succeeded", S.run(srv, admin, conn, "items").status)
    local _, found = S.get(srv, admin, "/v1/search?q=invoice")
    assert.is_true(found.count > 0)
    local count = function(sql) return tonumber(h.sql(srv.data, sql)[1][1]) end
    assert.is_true(count("SELECT count(*) FROM document_chunks") > 200)

    local status = h.request("DELETE", srv.url .. "/v1/connections/" .. conn,
                             {headers = {authorization = "Bearer " .. admin}})
    assert.are.equal(204, status)
    assert.are.equal(0, count("SELECT count(*) FROM records"))
    assert.are.equal(0, count("SELECT count(*) FROM document_chunks"))
    assert.are.equal(0, count("SELECT count(*) FROM sched_jobs WHERE subject = '" .. conn .. "'"))
    assert.are.equal(0, count("SELECT count(*) FROM sync_runs"))
    assert.are.equal(0, count("SELECT count(*) FROM sync_state"))
    -- The index forgot them too.
    assert.are.equal(0, count("SELECT count(*) FROM document_chunks_fts WHERE document_chunks_fts MATCH 'invoice'"))
    h.sql(srv.data, "INSERT INTO document_chunks_fts(document_chunks_fts) VALUES ('integrity-check')")
    local _, after = S.get(srv, admin, "/v1/search?q=invoice")
    assert.are.equal(0, after.count)
    assert.are.equal(404, (S.get(srv, admin, "/v1/syncs/" .. conn .. "/items")))
  end)

  it("ferry syncs run and ferry syncs list do the same from the command line", function()
    S.dataset(fault, "reset", {size = 150, seed = 13, text = 200})
    start()
    local conn = S.connect(srv, admin, {page_size = 100})
    srv.stop()
    local dir = h.root .. "/tests/providers"
    local base = {"--data", srv.data, "--providers", dir, "--base-url", "records_source=" .. fault.url}
    local args = {"syncs", "run", conn, "items"}
    for _, a in ipairs(base) do args[#args + 1] = a end
    local code, out, err = h.ferry(args)
    assert.are.equal(0, code, err)
    local run = h.json.decode(out).run
    assert.are.equal("succeeded", run.status)
    assert.are.equal(150, run.records.added)
    args = {"syncs", "list", "--user", "ada", "--team", "acme"}
    for _, a in ipairs(base) do args[#args + 1] = a end
    code, out, err = h.ferry(args)
    assert.are.equal(0, code, err)
    local list = h.json.decode(out).syncs
    assert.are.equal(2, #list)
    args = {"syncs", "run", conn, "nope"}
    for _, a in ipairs(base) do args[#args + 1] = a end
    code, out, err = h.ferry(args)
    assert.are.equal(1, code, out)
    assert.matches("no sync named 'nope'", err)
    srv = nil
  end)
end)
