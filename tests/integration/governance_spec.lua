-- Governance, as a team meets it: members do not see financial data unless
-- granted, callers hit their rate limits with a 429 and Retry-After (even
-- across a restart), writes wait for a person and run exactly once, and the
-- audit chain verifies until someone edits it. The audit fails closed.
local h = require "helper"

describe("governance", function()
  local fault

  setup(function() fault = h.start_fault() end)
  teardown(function() fault.stop() end)

  local function tool_names(srv, key)
    local _, body = srv.get("/v1/tools", key)
    local names = {}
    for _, t in ipairs(body.tools) do names[t.name] = true end
    return names
  end

  describe("permissions", function()
    local srv, admin, member, outsider

    setup(function()
      srv = h.start_ferry({base_urls = {ledger = fault.url, sample = fault.url}})
      admin = srv.key("ada", "books", "admin")
      member = srv.key("mo", "books")
      outsider = srv.key("olga", "other", "admin")
    end)
    teardown(function() srv.stop() end)

    it("hides financial tools from members and refuses their calls", function()
      assert.is_true(tool_names(srv, admin).ledger__balance)
      assert.is_nil(tool_names(srv, member).ledger__balance)
      assert.is_true(tool_names(srv, member).sample__echo)
      local status, body = srv.call(member, "ledger__balance", {})
      assert.are.equal(403, status)
      assert.are.equal("forbidden", body.error.code)
      assert.are.equal("financial", body.error.details.category)
      assert.are.equal(200, (srv.call(admin, "ledger__balance", {})))
      local _, ctx = srv.get("/v1/context", member)
      assert.is_nil(ctx.text:find("ledger__balance", 1, true))
    end)

    it("lets an admin grant and revoke a category per user, and per role", function()
      local function set(key, body)
        return h.request("POST", srv.url .. "/v1/permissions",
          {json = body, headers = {authorization = "Bearer " .. key}})
      end
      assert.are.equal(403, (set(member, {user = "mo", category = "financial", allow = true})))
      assert.are.equal(404, (set(admin, {user = "olga", category = "financial", allow = true})), "not in the team")
      assert.are.equal(200, (set(admin, {user = "mo", category = "financial", allow = true})))
      assert.are.equal(200, (srv.call(member, "ledger__balance", {})))
      local _, perms = srv.get("/v1/permissions", member)
      assert.is_true(perms.effective.financial)
      assert.are.equal(200, (set(admin, {user = "mo", category = "financial", allow = false})))
      assert.are.equal(403, (srv.call(member, "ledger__balance", {})))
      -- a role rule: members may not use projects data (sample's category)
      assert.are.equal(200, (set(admin, {role = "member", category = "projects", allow = false})))
      assert.are.equal(403, (srv.call(member, "sample__echo", {text = "x"})))
      -- no allow: back to the default
      assert.are.equal(200, (set(admin, {role = "member", category = "projects"})))
      assert.are.equal(200, (srv.call(member, "sample__echo", {text = "x"})))
      local _, admin_view = srv.get("/v1/permissions", admin)
      assert.is_table(admin_view.rules)
      -- another team is untouched
      assert.are.equal(200, (srv.call(outsider, "ledger__balance", {})))
    end)
  end)

  describe("rate limits", function()
    it("answers 429 with Retry-After past a team's limit, and keeps counting across a restart", function()
      local srv = h.start_ferry({base_urls = {sample = fault.url, ledger = fault.url}, rate_limits = true})
      local admin = srv.key("ada", "books", "admin")
      local st = h.request("PUT", srv.url .. "/v1/policies/rate-limits", {
        json = {integration = "sample", per_user = {rate = 0.05, burst = 3}, per_team = {rate = 100, burst = 100}},
        headers = {authorization = "Bearer " .. admin}})
      assert.are.equal(200, st)
      for _ = 1, 3 do assert.are.equal(200, (srv.call(admin, "sample__echo", {text = "x"}))) end
      local status, body, headers = srv.call(admin, "sample__echo", {text = "x"})
      assert.are.equal(429, status)
      assert.are.equal("rate_limited", body.error.code)
      assert.is_truthy(tonumber(headers["retry-after"]) >= 10, headers["retry-after"])
      assert.are.equal(tonumber(headers["retry-after"]), body.error.details.retry_after)
      -- other integrations have their own buckets
      assert.are.equal(200, (srv.call(admin, "ledger__balance", {})))
      h.sleep(1.2)   -- the buckets are saved every second
      srv.stop()
      srv = h.start_ferry({data = srv.data, base_urls = {sample = fault.url}, rate_limits = true})
      status = srv.call(admin, "sample__echo", {text = "x"})
      assert.are.equal(429, status, "a restart does not hand out a fresh burst")
      srv.stop()
    end)
  end)

  describe("approvals", function()
    local srv, admin, member, outsider

    setup(function()
      srv = h.start_ferry({base_urls = {ledger = fault.url}})
      admin = srv.key("ada", "books", "admin")
      member = srv.key("mo", "books")
      outsider = srv.key("olga", "other", "admin")
      assert.are.equal(200, (h.request("POST", srv.url .. "/v1/permissions",
        {json = {user = "mo", category = "financial", allow = true}, headers = {authorization = "Bearer " .. admin}})))
    end)
    teardown(function() srv.stop() end)

    local function ask(key, amount)
      local status, body = srv.call(key, "ledger__pay", {to = "acme", amount = amount})
      assert.are.equal(202, status, h.json.encode(body))
      return body.approval
    end

    local function decide(key, id, verb, reason)
      local st, text = h.request("POST", srv.url .. "/v1/approvals/" .. id .. "/" .. verb,
        {json = {reason = reason}, headers = {authorization = "Bearer " .. key}})
      return st, h.decode(text)
    end

    it("holds a write for approval with a summary, then runs it once", function()
      local before = fault.count()
      local a = ask(member, 42)
      assert.are.equal("pending", a.status)
      assert.are.equal("Pay 42 to acme", a.summary)
      assert.are.equal("mo", a.requested_by)
      assert.are.equal("ledger__pay", a.tool)
      assert.is_string(a.expires_at)
      assert.are.equal(before, fault.count(), "nothing ran yet")
      local _, listed = srv.get("/v1/approvals?status=pending", admin)
      local found = false
      for _, x in ipairs(listed.approvals) do found = found or x.id == a.id end
      assert.is_true(found)

      assert.are.equal(404, (decide(outsider, a.id, "approve")))
      local st, body = decide(admin, a.id, "approve")
      assert.are.equal(200, st)
      assert.are.equal("succeeded", body.approval.status)
      assert.are.equal(42, body.approval.result.paid)
      assert.are.equal("ada", body.approval.decided_by)
      assert.are.equal(before + 1, fault.count(), "ran exactly once")

      st, body = decide(admin, a.id, "approve")
      assert.are.equal(409, st)
      assert.are.equal("succeeded", body.error.details.status)
      assert.are.equal(before + 1, fault.count())
    end)

    it("runs once when many approve at the same moment", function()
      local a = ask(member, 7)
      local before = fault.count()
      local procs = {}
      for i = 1, 6 do
        procs[i] = h.spawn({"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
          "-H", "Authorization: Bearer " .. (i % 2 == 0 and admin or member), "-d", "{}",
          srv.url .. "/v1/approvals/" .. a.id .. "/approve"})
      end
      local codes = {}
      for i = 1, 6 do
        h.wait_exit(procs[i].pid, 20)
        local code = h.read_file(procs[i].stdout)
        codes[code] = (codes[code] or 0) + 1
      end
      assert.are.equal(1, codes["200"], h.json.encode(codes))
      assert.are.equal(5, codes["409"], h.json.encode(codes))
      assert.are.equal(before + 1, fault.count(), "the payment ran exactly once")
    end)

    it("stores a rejection's reason, and a rejected one cannot be approved", function()
      local a = ask(member, 9)
      local st, body = decide(member, a.id, "reject", "wrong amount")
      assert.are.equal(200, st)
      assert.are.equal("rejected", body.approval.status)
      assert.are.equal("wrong amount", body.approval.reason)
      st, body = decide(admin, a.id, "approve")
      assert.are.equal(409, st)
      assert.are.equal("rejected", body.error.details.status)
    end)

    it("lets only the requester or an admin decide", function()
      local other = srv.key("max", "books")
      assert.are.equal(200, (h.request("POST", srv.url .. "/v1/permissions",
        {json = {user = "max", category = "financial", allow = true}, headers = {authorization = "Bearer " .. admin}})))
      local a = ask(member, 3)
      assert.are.equal(404, (decide(other, a.id, "approve")), "a member does not see another's approval")
      assert.are.equal(200, (decide(member, a.id, "approve")))
    end)

    it("runs an approved write only if the requester may still use the tool", function()
      local pat = srv.key("pat", "books")
      local function allow(yes)
        assert.are.equal(200, (h.request("POST", srv.url .. "/v1/permissions", {
          json = {user = "pat", category = "financial", allow = yes},
          headers = {authorization = "Bearer " .. admin}})))
      end
      allow(true)
      local a = ask(pat, 7)
      allow(false)                          -- revoked while the write waits
      local before = fault.count()
      for _, key in ipairs({pat, admin}) do
        local st, body = decide(key, a.id, "approve")
        assert.are.equal(403, st, h.json.encode(body))
        assert.are.equal("forbidden", body.error.code)
        assert.is_truthy(body.error.message:find("no longer use ledger__pay", 1, true), body.error.message)
      end
      assert.are.equal(before, fault.count(), "the payment was not sent")
      local _, shown = srv.get("/v1/approvals/" .. a.id, admin)
      assert.are.equal("pending", shown.approval.status)
      allow(true)                           -- restored: the same approval runs, once
      local st = decide(pat, a.id, "approve")
      assert.are.equal(200, st)
      assert.are.equal(before + 1, fault.count())
    end)

    it("lets an admin allow-list a write tool, audited", function()
      local st = h.request("PUT", srv.url .. "/v1/policies/write-tools",
        {json = {tool = "ledger__pay", require_approval = false}, headers = {authorization = "Bearer " .. member}})
      assert.are.equal(403, st)
      st = h.request("PUT", srv.url .. "/v1/policies/write-tools",
        {json = {tool = "ledger__pay", require_approval = false}, headers = {authorization = "Bearer " .. admin}})
      assert.are.equal(200, st)
      local status, body = srv.call(member, "ledger__pay", {to = "acme", amount = 1})
      assert.are.equal(200, status, h.json.encode(body))
      assert.are.equal(1, body.result.paid)
      h.request("PUT", srv.url .. "/v1/policies/write-tools",
        {json = {tool = "ledger__pay", require_approval = true}, headers = {authorization = "Bearer " .. admin}})
      assert.are.equal(202, (srv.call(member, "ledger__pay", {to = "acme", amount = 1})))
      local _, audit = srv.get("/v1/audit?limit=1000", admin)
      local ops = {}
      for _, row in ipairs(audit.entries) do ops[row.operation] = true end
      assert.is_true(ops["policy.write_tools"])
      assert.is_true(ops["approval.requested"])
      assert.is_true(ops["approval.approved"])
      assert.is_true(ops["approval.rejected"])
    end)

    it("expires approvals", function()
      local quick = h.start_ferry({base_urls = {ledger = fault.url}, args = {"--approval-ttl-seconds", "1"}})
      local key = quick.key("ada", "books", "admin")
      local status, body = quick.call(key, "ledger__pay", {to = "x", amount = 1})
      assert.are.equal(202, status)
      h.sleep(1.3)
      local _, shown = quick.get("/v1/approvals/" .. body.approval.id, key)
      assert.are.equal("expired", shown.approval.status)
      local st, text = h.request("POST", quick.url .. "/v1/approvals/" .. body.approval.id .. "/approve",
        {json = {}, headers = {authorization = "Bearer " .. key}})
      assert.are.equal(409, st)
      assert.are.equal("expired", h.decode(text).error.details.status)
      -- Expired like the sweep expires them: the real arguments are gone with their key.
      assert.are.same({{"expired", "1", "1"}}, h.sql(quick.data, "SELECT status, sealed_arguments IS NULL," ..
        " wrapped_key IS NULL FROM approvals WHERE id = '" .. body.approval.id .. "'"))
      quick.stop()
    end)
  end)

  describe("the audit trail", function()
    it("records every call, is admin-only, and verify points at a tampered row", function()
      local srv = h.start_ferry({base_urls = {sample = fault.url}})
      local admin = srv.key("ada", "books", "admin")
      local member = srv.key("mo", "books")
      srv.call(member, "sample__get", {path = "/ok"})
      srv.call(member, "sample__get", {path = "/status/500"})
      srv.call(member, "sample__echo", {text = "x"})
      assert.are.equal(403, (srv.get("/v1/audit", member)))
      local status, audit = srv.get("/v1/audit?user=mo&limit=10", admin)
      assert.are.equal(200, status)
      assert.are.equal(3, #audit.entries)
      local row = audit.entries[2]   -- newest first: the 500
      assert.are.equal("sample__get", row.operation)
      assert.are.equal("upstream_error", row.outcome)
      assert.are.equal(502, row.http_status)
      assert.are.equal("read", row.access)
      assert.are.equal("mo", row.user)
      assert.are.equal("books", row.team)
      assert.are.equal("sample", row.integration)
      assert.is_number(row.duration_ms)
      local _, filtered = srv.get("/v1/audit?outcome=upstream_error", admin)
      assert.are.equal(1, #filtered.entries)
      local _, verify = srv.get("/v1/audit/verify", admin)
      assert.is_true(verify.ok)
      assert.is_true(verify.rows_checked >= 3)

      -- someone edits a row in the database
      h.sql(srv.data, "UPDATE audit_log SET outcome = 'ok' WHERE id = " .. row.id)
      _, verify = srv.get("/v1/audit/verify", admin)
      assert.is_false(verify.ok)
      assert.are.equal(row.id, verify.broken.id)
      -- or deletes one: the chain breaks at the row after it
      h.sql(srv.data, "UPDATE audit_log SET outcome = 'upstream_error' WHERE id = " .. row.id)
      _, verify = srv.get("/v1/audit/verify", admin)
      assert.is_true(verify.ok)
      h.sql(srv.data, "DELETE FROM audit_log WHERE id = " .. row.id)
      _, verify = srv.get("/v1/audit/verify", admin)
      assert.is_false(verify.ok)
      assert.are.equal(row.id + 1, verify.broken.id)
      srv.stop()
    end)

    it("fails closed: no audit row, no call", function()
      local srv = h.start_ferry({base_urls = {sample = fault.url}, args = {"--db-busy-timeout-ms", "200"}})
      local key = srv.key("ada", "books", "admin")
      srv.key("nat", "books")
      assert.are.equal(200, (srv.call(key, "sample__get", {path = "/ok"})))
      -- another process holds the database's write lock for a few seconds
      local locker = h.spawn({"sqlite3", srv.data .. "/ferry.db",
        "BEGIN IMMEDIATE; INSERT INTO audit_pending(ts, operation) VALUES (0, 'lock');" ..
        " WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 40000000) SELECT count(*) FROM c;" ..
        " ROLLBACK;"})
      h.sleep(0.3)
      local before = fault.count()
      local status, body = srv.call(key, "sample__get", {path = "/ok"})
      assert.are.equal(503, status, h.json.encode(body))
      assert.are.equal("internal", body.error.code)
      assert.is_truthy(body.error.message:find("audit", 1, true))
      assert.are.equal(before, fault.count(), "the upstream was never called")
      -- A policy change is not made without its audit row either.
      local st, text = h.request("POST", srv.url .. "/v1/permissions", {
        json = {user = "nat", category = "financial", allow = true}, headers = {authorization = "Bearer " .. key}})
      assert.are.equal(503, st, text)
      assert.is_truthy(h.decode(text).error.message:find("audit", 1, true))
      h.wait_exit(locker.pid, 60)
      assert.are.same({}, h.sql(srv.data, "SELECT subject FROM permissions WHERE category = 'financial'" ..
        " AND subject LIKE 'user:%'"))
      assert.are.equal(200, (srv.call(key, "sample__get", {path = "/ok"})))
      srv.stop()
    end)
  end)
end)
