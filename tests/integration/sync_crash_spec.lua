-- Syncs the hard way: ferry killed with SIGKILL at random moments while a
-- sync pages through a few thousand records that keep changing upstream,
-- restarted each time; and two ferry processes on one database. After
-- every kill the database holds exactly what the upstream had up to the
-- committed cursor (nothing lost, nothing duplicated, the index intact);
-- at the end it holds exactly the upstream's records.
local h = require "helper"
local S = require "sync_helper"

-- Set FERRY_TEST_SEED to replay a failing run's random moments.
local SEED = tonumber(os.getenv("FERRY_TEST_SEED") or "") or os.time()

local function wait_exit(pid)
  local how = h.wait_exit(pid, 20)
  assert(how, "ferry did not exit after SIGKILL")
end

describe("sync crash safety", function()
  local fault

  before_each(function() fault = h.start_fault() end)
  after_each(function() fault.stop() end)

  it("survives kill -9 at 25 random moments without losing or duplicating a record", function()
    print("\nsync crash seed " .. SEED .. " (FERRY_TEST_SEED replays it)")
    math.randomseed(SEED)
    S.dataset(fault, "reset", {size = 3000, seed = SEED % 1000, text = 700})
    -- Changes keep coming while the sync pages: 40 of them before every
    -- other page; pages take 40 ms to come, so runs last long enough to be
    -- killed in the middle.
    S.dataset(fault, "faults", {mutate_every = 2, mutate_n = 40, delay_ms = 40})
    local data = h.tmpdir() .. "/data"
    local opts = {data = data, args = {"--sync-lease-ms", "600", "--sched-tick-ms", "50"}}
    local srv = S.start(fault, opts)
    local key = srv.key("ada", "acme", "admin")
    local conn = S.connect(srv, key, {page_size = 200})
    srv.stop()

    local kills, mid_run = 0, 0
    for i = 1, 25 do
      srv = S.start(fault, opts)
      local before = S.upstream_log(fault).count
      -- Make the sync due (a killed run is due already: the new process
      -- takes it over once the dead one's lease expires).
      S.post(srv, key, "/v1/syncs/" .. conn .. "/items/run")
      -- Wait until it is at work here, then kill at a random moment.
      local deadline = h.now() + 5
      while S.upstream_log(fault).count == before and h.now() < deadline do h.sleep(0.01) end
      h.sleep(math.random() * 0.25)
      local running = S.sync(srv, key, conn, "items").status == "running"
      h.kill(srv.pid, h.SIGKILL)
      wait_exit(srv.pid)
      kills = kills + 1
      if running then mid_run = mid_run + 1 end
      -- Whatever was committed is consistent with the cursor committed with it.
      S.check_against(fault, data, conn, "items", "main", false)
      S.check_integrity(data, conn, "items")
      -- And the upstream moves on while ferry is down.
      S.dataset(fault, "mutate", {n = math.random(100, 600)})
      if i % 5 == 0 then print(("  %d kills, %d in the middle of a run"):format(kills, mid_run)) end
    end
    assert.are.equal(25, kills)
    assert.is_true(mid_run >= 12, "only " .. mid_run .. " kills landed while a run was in progress")

    -- A last, undisturbed run: exactly the upstream's records.
    S.dataset(fault, "faults", {})
    srv = S.start(fault, opts)
    -- The run the last kill interrupted is taken over and finishes.
    S.wait_sync(srv, key, conn, "items", function(x)
      return x.status == "idle" and type(x.last_run) == "table" and x.last_run.status == "succeeded"
    end, 30)
    -- Run once more, so the cursor is surely at the very end.
    local run = S.run(srv, key, conn, "items", 30)
    assert.are.equal("succeeded", run.status)
    local n = S.check_against(fault, data, conn, "items", "main", true)
    assert.are.equal(n, S.check_integrity(data, conn, "items"))
    assert.are.equal(n, S.sync(srv, key, conn, "items").records)
    -- Runs the kills interrupted were ended by whoever took over.
    local rows = h.sql(data, "SELECT count(*) FROM sync_runs WHERE status = 'running'")
    assert.are.equal("0", rows[1][1])
    rows = h.sql(data, "SELECT count(*) FROM sync_runs WHERE error LIKE '%stopped%'")
    assert.is_true(tonumber(rows[1][1]) >= 10, rows[1][1] .. " runs marked as interrupted")
    srv.stop()
  end)

  it("stops runs at SIGTERM and the next process resumes them at once", function()
    S.dataset(fault, "reset", {size = 1000, seed = 3, text = 300})
    S.dataset(fault, "faults", {delay_ms = 100})
    local data = h.tmpdir() .. "/data"
    local opts = {data = data, args = {"--sched-tick-ms", "50"}}
    local srv = S.start(fault, opts)
    local key = srv.key("ada", "acme", "admin")
    local conn = S.connect(srv, key, {page_size = 100})
    local _, body = S.post(srv, key, "/v1/syncs/" .. conn .. "/items/run")
    S.wait_sync(srv, key, conn, "items", function(x) return type(x.cursor) == "table" and x.cursor.after >= 200 end)
    srv.stop()
    local rows = h.sql(data, "SELECT status, error FROM sync_runs WHERE id = '" .. body.run.id .. "'")
    assert.are.equal("partial", rows[1][1])
    assert.matches("ferry is shutting down; the run resumes from its last checkpoint", rows[1][2])
    local cursor = S.db_cursor(data, conn, "items")
    S.check_against(fault, data, conn, "items", "main", false)

    -- The next process runs it without waiting for its schedule or a lease.
    local t0 = h.now()
    srv = S.start(fault, opts)
    local s = S.wait_sync(srv, key, conn, "items", function(x)
      return type(x.last_run) == "table" and x.last_run.id ~= body.run.id and x.last_run.status == "succeeded"
    end, 20)
    assert.are.equal("schedule", s.last_run.trigger)
    assert.is_true(h.now() - t0 < 5)
    -- It resumed: it did not read the pages before the cursor again.
    assert.are.equal(cursor.after, S.upstream_log(fault).requests[#S.upstream_log(fault).requests -
      s.last_run.requests + 1].after)
    S.check_against(fault, data, conn, "items", "main", true)
    srv.stop()
  end)

  it("never runs one job in two ferry processes at once, and takes over from one that dies", function()
    S.dataset(fault, "reset", {size = 400, seed = 4, text = 300})
    -- Slow pages, so a run lasts a while and overlapping runs would show
    -- as overlapping requests upstream.
    S.dataset(fault, "faults", {delay_ms = 60})
    local data = h.tmpdir() .. "/data"
    local dir = S.provider_dir("1s")
    local opts = {data = data, providers = dir, args = {"--sync-lease-ms", "1000", "--sched-tick-ms", "50"}}
    local a = S.start(fault, opts)
    local key = a.key("ada", "acme", "admin")
    local b = S.start(fault, opts)
    local conn = S.connect(a, key, {page_size = 100})
    local procs = {[a.pid] = a, [b.pid] = b}

    -- Both look for due jobs every 50 ms for six seconds, while the
    -- upstream changes.
    local t0 = h.now()
    while h.now() - t0 < 6 do
      S.dataset(fault, "mutate", {n = 30})
      h.sleep(0.25)
    end
    -- Kill whichever process is running the sync right now; the other one
    -- takes over once its lease expires.
    local victim
    local deadline = h.now() + 5
    repeat
      local s = S.sync(b, key, conn, "items")
      if s.running_run_id ~= h.json.null then
        local rows = h.sql(data, "SELECT owner FROM sync_runs WHERE id = '" .. s.running_run_id .. "'")
        victim = procs[S.owner_pid(rows[1] and rows[1][1])]
      end
      if not victim then h.sleep(0.02) end
    until victim or h.now() > deadline
    assert.is_table(victim, "no run caught in progress")
    local survivor = victim == a and b or a
    h.kill(victim.pid, h.SIGKILL)
    wait_exit(victim.pid)
    local killed_at = h.now()
    t0 = h.now()
    while h.now() - t0 < 3 do
      S.dataset(fault, "mutate", {n = 30})
      h.sleep(0.25)
    end
    -- Let it catch up, then compare.
    S.wait_sync(survivor, key, conn, "items", function(x)
      return x.status == "idle" and type(x.last_run) == "table" and x.last_run.status == "succeeded" and
             x.cursor.after == S.upstream_state(fault).seq
    end, 20)
    survivor.stop()
    local elapsed = h.now() - killed_at + 6

    -- Never two requests of the sync in flight at once upstream.
    assert.are.equal(1, S.upstream_log(fault).max_inflight)
    -- Runs never overlapped: each began after the one before ended.
    local runs = h.sql(data, "SELECT id, owner, started_at, ended_at, status FROM sync_runs" ..
                             " WHERE sync = 'items' ORDER BY started_at, rowid")
    local owners, prev = {}, nil
    for _, r in ipairs(runs) do
      owners[S.owner_pid(r[2])] = true
      assert.are_not.equal("running", r[5])
      if prev then
        assert.is_true(tonumber(r[3]) >= tonumber(prev[4]),
          ("run %s started at %s, before %s ended at %s"):format(r[1], r[3], prev[1], prev[4]))
      end
      prev = r
    end
    assert.is_true(owners[a.pid] and owners[b.pid], "both processes ran the job")
    -- One run per slot of its schedule, not one per process: at most one
    -- a second (plus the lease's wait and a little jitter).
    assert.is_true(#runs <= elapsed + 3, #runs .. " runs in " .. elapsed .. " s")
    assert.is_true(#runs >= 5, "only " .. #runs .. " runs")
    -- The run the kill interrupted was ended by the survivor.
    local interrupted = h.sql(data, "SELECT count(*) FROM sync_runs WHERE error LIKE '%taken over%'")
    assert.are.equal("1", interrupted[1][1])
    S.check_against(fault, data, conn, "items", "main", true)
    S.check_integrity(data, conn, "items")
  end)
end)
