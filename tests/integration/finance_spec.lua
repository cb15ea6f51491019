-- Issue 5's "done means", with the financial providers as users meet them:
-- QuickBooks and Xero connected through the OAuth flow (against the test
-- identity provider, the operator's client), their APIs served by Prism
-- from the official descriptions (requests validated) behind the recording
-- tap. An admin and a member of one team and a member of another: the
-- member cannot see financial tools, the other team sees nothing, a write
-- waits for approval and runs once, the rate limit answers 429 with
-- Retry-After, and the audit chain verifies, then fails after tampering.
local h = require "helper"

local REALM = "9130349217371286"
local TENANT = "8d3c39ad-8ae1-4a6e-b2c3-04a7d0bfa1a2"

local function set_client(data, slug, idp)
  local code, _, err = h.ferry({"oauth", "set-client", slug, "--client-id", "ferry-test", "--client-secret", "s3cret",
    "--authorize-url", idp.url .. "/auth", "--token-url", idp.url .. "/token", "--data", data})
  assert(code == 0, err)
end

describe("financial providers under governance", function()
  local qb_prism, qb_tap, xero_prism, xero_tap, idp, srv, admin, member, outsider, callback, qb

  lazy_setup(function()
    qb_prism = h.start_prism(h.api_spec("quickbooks/openapi.yaml"))
    qb_tap = h.start_tap(qb_prism.url)
    xero_prism = h.start_prism(h.api_spec("xero/xero_accounting.yaml"), {timeout = 300})
    xero_tap = h.start_tap(xero_prism.url)
    local port = h.free_port()
    callback = "http://127.0.0.1:" .. port .. "/oauth/callback"
    idp = h.start_idp({redirect_uri = callback,
                       extra_scopes = "com.intuit.quickbooks.accounting profile accounting.transactions.read "
                         .. "accounting.transactions accounting.contacts.read accounting.settings.read"})
    local data = h.tmpdir() .. "/data"
    set_client(data, "quickbooks", idp)
    set_client(data, "xero", idp)
    -- Three calls a burst per user and integration, one more every 2 s.
    srv = h.start_ferry({data = data, providers = {}, rate_limits = true,
                         base_urls = {quickbooks = qb_tap.url, xero = xero_tap.url},
                         args = {"--listen", "127.0.0.1:" .. port, "--user-rate", "0.5", "--user-burst", "3",
                                 "--team-rate", "0"}})
    admin = srv.key("ann", "acme", "admin")
    member = srv.key("bob", "acme")
    outsider = srv.key("carol", "globex", "admin")
  end)

  lazy_teardown(function()
    if srv then srv.stop() end
    for _, p in ipairs({idp, qb_tap, qb_prism, xero_tap, xero_prism}) do p.stop() end
  end)

  it("connects QuickBooks for the team through OAuth, keeping the company id Intuit sends back", function()
    local _, started = srv.get("/oauth/quickbooks/start?format=json&scope=team&label=Books", admin)
    local back = h.browser_sign_in(started.authorize_url, {stop_at = callback})
    -- Intuit's redirect carries the chosen company as realmId.
    local status, text = h.request("GET", back .. "&realmId=" .. REALM, {headers = {accept = "application/json"}})
    qb = h.decode(text)
    assert.are.equal(201, status, text)
    assert.are.equal("team", qb.scope)
    assert.are.equal(REALM, qb.settings.realm_id)
    -- The check (a CompanyInfo query) went to that company, validated by Prism.
    local sent = qb_tap.last()
    assert.are.equal("/v3/company/" .. REALM .. "/query", sent.path)
    assert.is_truthy(sent.headers.authorization:match("^Bearer .+"))
  end)

  it("connects Xero through OAuth, learning the organisation from Xero's connections list", function()
    xero_tap.replies({{status = 200, json = {{id = "b1c2d3e4-0000-4000-8000-000000000001", tenantId = TENANT,
                                              tenantType = "ORGANISATION", tenantName = "Demo Company (UK)"}}}})
    local _, started = srv.get("/oauth/xero/start?format=json", admin)
    local back = h.browser_sign_in(started.authorize_url, {stop_at = callback})
    local status, text = h.request("GET", back, {headers = {accept = "application/json"}})
    local conn = h.decode(text)
    assert.are.equal(201, status, text)
    assert.are.equal(TENANT, conn.settings.tenant_id)
    local sent = xero_tap.requests()
    assert.are.equal("/connections", sent[1].path)
    assert.are.equal("/Organisation", sent[2].path)          -- then the organisation, with its tenant
    assert.are.equal(TENANT, sent[2].headers["xero-tenant-id"])
  end)

  it("hides financial tools from a member and refuses their calls", function()
    local _, tools = srv.get("/v1/tools", member)
    for _, t in ipairs(tools.tools) do
      assert.is_nil(t.name:find("^quickbooks__") or t.name:find("^xero__"), t.name)
    end
    local status, body = srv.call(member, "quickbooks__list_invoices", {})
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    -- The admin sees and uses them.
    local _, mine = srv.get("/v1/tools", admin)
    local seen = false
    for _, t in ipairs(mine.tools) do seen = seen or t.name == "quickbooks__list_invoices" end
    assert.is_true(seen)
  end)

  it("shows another team nothing of it", function()
    local _, conns = srv.get("/v1/connections", outsider)
    assert.are.equal(0, #conns.connections)
    local status, body = srv.call(outsider, "quickbooks__list_invoices", {})
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    assert.are.equal(404, (h.request("DELETE", srv.url .. "/v1/connections/" .. qb.id,
      {headers = {authorization = "Bearer " .. outsider}})))
  end)

  it("runs a write once, and only once a person approves it", function()
    qb_tap.clear()
    local status, pending = srv.call(admin, "quickbooks__create_invoice",
      {customer_id = "58", lines = {{amount = 275, description = "Rock Fountain"}}})
    assert.are.equal(202, status, h.json.encode(pending))
    assert.are.same({}, qb_tap.requests(), "nothing is sent before the approval")
    local id = pending.approval.id
    local approve = function()
      return h.request("POST", srv.url .. "/v1/approvals/" .. id .. "/approve",
        {json = {reason = "ok"}, headers = {authorization = "Bearer " .. admin}})
    end
    assert.are.equal(200, (approve()))
    assert.are.equal(409, (approve()))                        -- decided already
    local posts = 0
    for _, r in ipairs(qb_tap.requests()) do
      if r.method == "POST" and r.path == "/v3/company/" .. REALM .. "/invoice" then posts = posts + 1 end
    end
    assert.are.equal(1, posts)
  end)

  it("answers 429 with Retry-After past the rate limit", function()
    h.sleep(6)   -- a full burst again
    local last, body, headers
    for _ = 1, 4 do last, body, headers = srv.call(admin, "quickbooks__list_invoices", {}) end
    assert.are.equal(429, last, h.json.encode(body))
    assert.are.equal("rate_limited", body.error.code)
    assert.is_truthy(tonumber(headers["retry-after"]) >= 1)
  end)

  it("keeps a verifiable audit chain of all of it, which breaks when a row is edited", function()
    local _, audit = srv.get("/v1/audit?integration=quickbooks&limit=100", admin)
    local ops = {}
    for _, row in ipairs(audit.entries) do ops[row.operation] = (ops[row.operation] or 0) + 1 end
    assert.are.equal(1, ops["quickbooks__create_invoice"])
    assert.is_truthy(ops["oauth.exchange"] >= 1)
    assert.is_truthy(ops["quickbooks:check"] >= 1)
    local _, verify = srv.get("/v1/audit/verify", admin)
    assert.is_true(verify.ok)
    -- Someone hides that the invoice was created.
    local row = h.sql(srv.data, "SELECT id FROM audit_log WHERE operation = 'quickbooks__create_invoice'")[1][1]
    h.sql(srv.data, "UPDATE audit_log SET outcome = 'upstream_error' WHERE id = " .. row)
    _, verify = srv.get("/v1/audit/verify", admin)
    assert.is_false(verify.ok)
    assert.are.equal(tonumber(row), verify.broken.id)
  end)
end)
