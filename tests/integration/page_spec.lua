-- The Connected Apps page (GET /) in a real browser: Debian's Chromium
-- driven by playwright-core (tests/peers/page_check.mjs) against the real
-- ferry, as a team's admin and member use it. The Lua side arranges what the
-- page should show (a connection past the team's rotation policy, a
-- connection shared with the team), runs the browser once, and checks what
-- it reports; page_check.mjs itself fails on console errors, page errors,
-- failed requests, unexpected HTTP errors, requests leaving ferry and CSP
-- violations.
local h = require "helper"

local CHROMIUM = os.getenv("CHROMIUM") or "/usr/bin/chromium"
local PAGE_CHECK = h.root .. "/tests/peers/page_check.mjs"
local TOKEN = "page-token-SECRET-4b7d21"   -- typed into the page's password field

describe("the Connected Apps page in Chromium", function()
  local fault, srv, admin, member, dir, report, stderr

  local function find(list, value)
    for _, v in ipairs(list or {}) do if v == value then return true end end
    return false
  end

  setup(function()
    assert(h.read_file(CHROMIUM) ~= nil, CHROMIUM .. " not found: scripts/install-deps --test installs chromium")
    assert(h.read_file(h.root .. "/tests/peers/node_modules/playwright-core/package.json"),
      "playwright-core not installed: run tests/peers/install")
    fault = h.start_fault()
    srv = h.start_ferry({base_urls = {keyed_header = fault.url, keyed_query = fault.url, keyed_basic = fault.url}})
    admin = srv.key("alice", "acme", "admin")
    member = srv.key("bob", "acme")

    -- alice's own keyed_query connection, set 10 days ago under a team
    -- policy of 7 days (the provider advises 30): due for rotation.
    local status, body = h.connect(srv, admin, {integration = "keyed_query", credentials = {api_key = "q-key"},
                                                label = "Old query key"})
    assert.are.equal(201, status, h.json.encode(body))
    local st = h.request("PUT", srv.url .. "/v1/policies/rotation",
      {json = {integration = "keyed_query", every_days = 7}, headers = {authorization = "Bearer " .. admin}})
    assert.are.equal(200, st)
    h.sql(srv.data, ("UPDATE connections SET credential_set_at = credential_set_at - 10 * 86400000 " ..
      "WHERE id = '%s'"):format(body.id))   -- milliseconds
    -- a connection alice shares with the team: bob sees it, may not delete it
    status, body = h.connect(srv, admin, {integration = "keyed_basic", scope = "team", label = "Team basic",
                                          credentials = {username = "team", password = "team-pass"}})
    assert.are.equal(201, status, h.json.encode(body))

    dir = h.tmpdir()
    local code, out, err = h.run({"node", PAGE_CHECK}, {
      FERRY_URL = srv.url, FERRY_KEY = admin, FERRY_MEMBER_KEY = member,
      FERRY_CONNECT = h.json.encode({name = "Keyed (header)", slug = "keyed_header", label = "Page check",
                                     fields = {token = TOKEN, workspace = "ws-page"}, account_label = "echo account"}),
      FERRY_DUE = "Keyed (query)", FERRY_MEMBER_DISCONNECT = "Keyed (basic)",
      FERRY_PAGE_DIR = dir,
      -- node, Chromium and Playwright write nothing outside the test folder
      TMPDIR = dir .. "/tmp", XDG_CONFIG_HOME = dir .. "/config", XDG_CACHE_HOME = dir .. "/cache",
    })
    stderr = err or ""
    local line = (out or ""):match("[^\n]+")
    report = h.decode(line)
    if line then h.write_file(dir .. "/report.json", line .. "\n") end
    assert(type(report) == "table", "page_check.mjs printed no JSON (exit " .. tostring(code) .. "):\n" ..
      tostring(out) .. "\n" .. stderr)
    print(("page_check: %s ms; report %s/report.json; screenshot %s"):format(tostring(report.ms), dir,
      tostring(report.screenshot)))
    assert(code == 0 and report.ok,
      "page_check.mjs failed (exit " .. tostring(code) .. "):\n" .. line .. "\n" .. stderr)
  end)

  teardown(function()
    if srv then srv.stop() end
    if fault then fault.stop() end
    -- Chromium's profile and caches go; the screenshots stay for a look.
    if dir then os.execute(("rm -rf '%s/tmp' '%s/config' '%s/cache' '%s/home'"):format(dir, dir, dir, dir)) end
  end)

  it("serves the page under its CSP, with nothing refused, failing or leaving ferry", function()
    assert.are.equal(200, report.page_status)
    assert.is_truthy(report.csp_header:find("default-src 'none'", 1, true))
    assert.are.same({}, report.problems)
    assert.is_true(report.csp_canary_caught, "the CSP listener itself works")
    -- the only errors were the ones steps provoked: the member's 403, the wrong key's 401s
    for _, e in ipairs(report.expected_errors) do
      assert.is_truthy(e.step == "wrong key" or e.step == "member disconnects a team connection"
        or e.step == "csp canary", h.json.encode(e))
    end
  end)

  it("asks for a key first", function()
    local s = report.signin
    assert.is_true(s.shown)
    assert.are.equal("Connected Apps · ferry", s.title)
    assert.is_true(s.who_empty)
    assert.is_true(s.signout_hidden)
    assert.is_true(s.attention_hidden)
    assert.are.equal(0, s.cards)
  end)

  it("shows the admin who they are, their integrations, and the connection due for rotation", function()
    local a = report.admin
    assert.are.equal("alice · acme · admin", a.who)
    assert.is_true(a.signout_visible)
    assert.is_true(a.key_in_session)
    assert.are.same({"Needs attention", "Connected", "Available"}, a.headings)
    assert.is_true(find(a.connected, "Keyed (query)"))
    assert.is_true(find(a.connected, "Keyed (basic)"), "the team's shared connection")
    assert.is_true(find(a.available, "Keyed (header)"))
    assert.is_true(find(a.available, "Sample"))
    assert.are.same({connect_form = false, meta = "developer · none · 5 tools · no credentials needed"},
      a.cards.Sample, "nothing to connect for an integration without credentials")
    assert.are.same({connect_form = true, meta = "developer · api_key · 3 tools"}, a.cards["Keyed (header)"])
    assert.are.equal("developer · none · 1 tool · no credentials needed", a.cards.Egress.meta)
    assert.is_false(find(a.available, "Keyed (query)"))
    assert.are.equal(1, #a.attention, h.json.encode(a.attention))
    assert.is_truthy(a.attention[1]:find("^Keyed %(query%): credential due for rotation since "), a.attention[1])
    assert.are.equal("rotation due", a.due.badge)
    assert.is_truthy(a.due.item:find("rotation due Old query key (echo account)", 1, true), a.due.item)
    assert.is_true(a.no_overflow, "nothing wider than the window")
  end)

  it("connects through the card's form and shows the account the provider's check found", function()
    local c = report.connect
    assert.are.same({{name = "c_token", type = "password", label = "token"},
                     {name = "s_workspace", type = "text", label = "workspace"}}, c.inputs)
    assert.are.equal("Any string; the fault server echoes it back.", c.instructions)
    assert.is_true(c.team_scope_visible, "an admin may share with the team")
    assert.are.same({text = "Keyed (header) connected.", error = false}, c.message)
    -- the label typed in the form, and the account the provider's check found
    assert.is_truthy(c.item:find("active Page check (echo account)", 1, true), c.item)
    -- (the provider's check is logged as a call, so "used" may already say 1×)
    assert.is_truthy(c.item:find("yours · used %d+× · last used "), c.item)
    assert.are.equal("active", c.badge)
    assert.is_false(c.in_available)
    assert.are.equal(1, #c.attention, "a fresh credential is not due")
    assert.is_false(c.secret_on_page)
    assert.are.equal(1, #c.api)
    assert.are.same({workspace = "ws-page"}, c.api[1].settings)
    assert.are.equal("Page check", c.api[1].label)
    assert.are.equal("user", c.api[1].scope)
    assert.are.equal("echo account", c.api[1].account_label)
  end)

  it("disconnects after the confirm dialog, and not when it is cancelled", function()
    local d = report.disconnect
    assert.are.equal(2, #d.dialogs)
    assert.are.equal("confirm", d.dialogs[1].type)
    assert.are.equal("Disconnect Keyed (header): Page check (echo account)? Its credentials are destroyed.",
      d.dialogs[1].text)
    assert.is_true(d.kept_after_cancel)
    assert.are.same({text = "Disconnected.", error = false}, d.message)
    assert.is_false(d.in_connected)
    -- and ferry agrees: the connection is gone, the others are not
    local _, list = srv.get("/v1/connections", admin)
    local left = {}
    for _, c in ipairs(list.connections) do left[#left + 1] = c.integration end
    table.sort(left)
    assert.are.same({"keyed_basic", "keyed_query"}, left)
  end)

  it("shows a member their view: the team's connection, not the admin's own, no team sharing", function()
    local m = report.member
    assert.is_true(m.key_cleared_by_signout)
    assert.are.equal("bob · acme · member", m.who)
    assert.are.same({"Keyed (basic)"}, m.connected)
    assert.are.same({}, m.attention)
    assert.is_false(m.team_scope_visible)
    assert.is_truthy(m.team_item:find("Team basic (echo account)", 1, true), m.team_item)
    assert.is_truthy(m.team_item:find("team · used", 1, true), m.team_item)
    assert.is_true(m.refused.error)
    assert.is_true(#m.refused.text > 0)
    assert.is_true(m.still_connected)
  end)

  it("shows the sign-in form again with an error for a wrong key", function()
    local w = report.wrong_key
    assert.is_true(w.signin_shown)
    assert.is_true(w.message.error)
    assert.is_truthy(w.message.text:lower():find("key"), w.message.text)
    assert.is_true(w.key_cleared)
    assert.are.equal("", w.who)
    assert.is_true(w.signout_hidden)
    assert.are.equal(0, w.cards)
  end)

  it("takes screenshots, and the token typed into the page never leaves the vault", function()
    for _, path in ipairs(report.screenshots) do
      assert.are.equal("\137PNG\r\n\26\n", (h.read_file(path) or ""):sub(1, 8), path)
    end
    for _, f in ipairs({srv.log, srv.data .. "/ferry.db", srv.data .. "/ferry.db-wal"}) do
      assert.is_nil((h.read_file(f) or ""):find(TOKEN, 1, true), "token in " .. f)
    end
  end)
end)
