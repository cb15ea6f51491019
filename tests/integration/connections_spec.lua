-- Connections as a team sees them: credentials checked against the
-- provider's auth declaration, sealed, injected by the core where the
-- provider says (never seen by the script), visible to the right people
-- only, and never showing up in a response, a log or the database.
local h = require "helper"

local SECRETS = {"HEADER-SECRET-8f3a91", "QUERY-SECRET-77be02", "BODY-SECRET-c0ffee1", "BASIC-PASS-5d5d5d",
                 "TEAM-SECRET-a1a1a1"}

describe("connections", function()
  local fault, srv, alice, bob, carol
  local responses = {}

  local function post(key, body)
    local status, text = h.request("POST", srv.url .. "/v1/connections",
      {json = body, headers = {authorization = "Bearer " .. key}})
    responses[#responses + 1] = text
    return status, h.decode(text)
  end

  local function call(key, name, args, extra)
    local status, body, headers, raw = srv.call(key, name, args, extra)
    responses[#responses + 1] = raw
    return status, body, headers
  end

  local function get(path, key)
    local status, body, headers, raw = srv.get(path, key)
    responses[#responses + 1] = raw
    return status, body, headers
  end

  setup(function()
    fault = h.start_fault()
    local urls = {}
    for _, k in ipairs({"header", "query", "body", "basic"}) do urls["keyed_" .. k] = fault.url end
    srv = h.start_ferry({base_urls = urls})
    alice = srv.key("alice", "acme", "admin")
    bob = srv.key("bob", "acme")
    carol = srv.key("carol", "globex", "admin")
  end)

  teardown(function()
    srv.stop()
    fault.stop()
    -- Nothing ferry wrote holds a secret: every response, the log, the
    -- database and its WAL.
    local files = {srv.log, srv.data .. "/ferry.db", srv.data .. "/ferry.db-wal"}
    for _, secret in ipairs(SECRETS) do
      for _, text in ipairs(responses) do
        assert.is_nil((text or ""):find(secret, 1, true), "secret in a response: " .. secret)
      end
      for _, f in ipairs(files) do
        assert.is_nil((h.read_file(f) or ""):find(secret, 1, true), "secret in " .. f .. ": " .. secret)
      end
    end
  end)

  it("refuses unknown integrations, missing and extra fields, and scripts that need none", function()
    local status, body = post(alice, {integration = "nope", credentials = {token = "x"}})
    assert.are.equal(404, status)
    assert.are.equal("not_found", body.error.code)

    status, body = post(alice, {integration = "keyed_header", credentials = {}})
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.same({"token"}, body.error.details.missing)

    status, body = post(alice, {integration = "keyed_header", credentials = {token = "x", password = "y"}})
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.same({"password"}, body.error.details.extra)

    status, body = post(alice, {integration = "keyed_basic", credentials = {username = "u"}})
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.same({"password"}, body.error.details.missing)

    status, body = post(alice, {integration = "sample", credentials = {}})
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)

    status, body = post(bob, {integration = "keyed_header", credentials = {token = "x"}, scope = "team",
                              settings = {workspace = "w"}})
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)

    status, body = post(alice, {integration = "keyed_header", credentials = {token = "x"}, settings = {colour = "x"}})
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.same({"colour"}, body.error.details.extra)
  end)

  it("injects each kind of credential where the provider declares, and the script never sees it", function()
    local status, conn = post(bob, {integration = "keyed_header", credentials = {token = SECRETS[1]},
                                    settings = {workspace = "ws-1"}, label = "bob's"})
    assert.are.equal(201, status)
    assert.is_truthy(conn.id:match("^conn_%x+$"))
    assert.are.equal("echo account", conn.account_label)   -- from the provider's check
    assert.are.equal("active", conn.status)
    assert.are.same({workspace = "ws-1"}, conn.settings)

    -- The upstream (fault server /echo) answers with what it received. It
    -- received the credential, not the script's spoofed header; and what it
    -- echoes reaches the script with the secret masked: only a secret value
    -- becomes "[redacted]".
    local _, body = call(bob, "keyed_header__echo", {})
    assert.are.equal("Token [redacted]", body.result.headers["x-api-token"])

    assert.are.equal(201, (post(bob, {integration = "keyed_query", credentials = {api_key = SECRETS[2]}})))
    _, body = call(bob, "keyed_query__echo", {})
    assert.are.equal("[redacted]", body.result.query.key)

    assert.are.equal(201, (post(bob, {integration = "keyed_body", credentials = {key = SECRETS[3]}})))
    _, body = call(bob, "keyed_body__echo", {note = "n"})
    local sent = h.json.decode(body.result.body)
    assert.are.equal("n", sent.note)
    assert.are.equal("[redacted]", sent.key)

    assert.are.equal(201, (post(bob, {integration = "keyed_basic",
                                      credentials = {username = "bob", password = SECRETS[4]}})))
    _, body = call(bob, "keyed_basic__echo", {})
    assert.are.equal("Basic [redacted]", body.result.headers.authorization)

    -- what the script can see: everything but secrets
    local _, who = call(bob, "keyed_header__whoami", {})
    assert.are.equal(conn.id, who.result.connection.id)
    assert.are.same({workspace = "ws-1"}, who.result.connection.settings)
    assert.are.equal("bob", who.result.caller.user)
    local text = h.json.encode(who.result)
    assert.is_nil(text:find(SECRETS[1], 1, true))
  end)

  it("shows a member the team's shared connections and their own, never another team's", function()
    local status, shared = post(alice, {integration = "keyed_query", credentials = {api_key = SECRETS[5]},
                                        scope = "team"})
    assert.are.equal(201, status)
    local _, mine = post(alice, {integration = "keyed_body", credentials = {key = "alice-own"}})

    local _, list = get("/v1/connections", bob)
    local ids = {}
    for _, c in ipairs(list.connections) do ids[c.id] = c end
    assert.is_table(ids[shared.id], "bob sees the team's connection")
    assert.is_nil(ids[mine.id], "bob does not see alice's own")
    for _, c in ipairs(list.connections) do
      assert.is_nil(c.credentials)
      assert.is_nil(h.json.encode(c):find("SECRET", 1, true))
    end

    local _, theirs = get("/v1/connections", carol)
    assert.are.equal(0, #theirs.connections)
    local st, err = h.request("DELETE", srv.url .. "/v1/connections/" .. shared.id,
      {headers = {authorization = "Bearer " .. carol}})
    assert.are.equal(404, st, err)
    local _, tools = get("/v1/tools", carol)
    for _, t in ipairs(tools.tools) do assert.is_nil(t.name:match("^keyed_"), t.name) end
    local s2, b2 = call(carol, "keyed_query__echo", {})
    assert.are.equal(403, s2)
    assert.are.equal("forbidden", b2.error.code)
    assert.is_truthy(b2.error.message:find("keyed_query", 1, true))

    -- a member cannot delete the team's shared connection; its admin can
    st = h.request("DELETE", srv.url .. "/v1/connections/" .. shared.id,
      {headers = {authorization = "Bearer " .. bob}})
    assert.are.equal(403, st)
  end)

  it("lists only usable tools, with the connection they would use, and suggests the rest", function()
    local _, body = get("/v1/tools?suggest=1", bob)
    local by = {}
    for _, t in ipairs(body.tools) do by[t.name] = t end
    assert.is_table(by["keyed_header__echo"])
    assert.is_truthy(by["keyed_header__echo"].connection_id:match("^conn_"))
    assert.is_table(by["sample__echo"], "providers without credentials are usable as they are")
    assert.is_table(body.suggestions)
    local _, integ = get("/v1/integrations", bob)
    local seen = {}
    for _, i in ipairs(integ.integrations) do seen[i.slug] = i end
    assert.is_true(seen.keyed_header.connected)
    assert.are.equal("api_key", seen.keyed_header.method)
    assert.are.same({"token"}, seen.keyed_header.connect.credentials)
    assert.is_number(seen.keyed_header.popularity)
  end)

  it("counts calls as popularity and usage", function()
    h.sleep(0.3)   -- the call log is written in batches every 100 ms
    local _, integ = get("/v1/integrations", bob)
    for _, i in ipairs(integ.integrations) do
      if i.slug == "keyed_header" then assert.is_true(i.popularity >= 2, tostring(i.popularity)) end
    end
    local _, list = get("/v1/connections", bob)
    for _, c in ipairs(list.connections) do
      if c.integration == "keyed_header" then
        assert.is_true(c.usage_count >= 2)
        assert.is_string(c.last_used_at)
      end
    end
  end)

  it("builds a context block, and stops suggesting what the user dismissed", function()
    local status, ctx = get("/v1/context", bob)
    assert.are.equal(200, status)
    assert.is_truthy(ctx.text:find("Keyed (header)", 1, true), ctx.text)
    assert.is_truthy(ctx.text:find("keyed_header__echo", 1, true))
    local connected = {}
    for _, c in ipairs(ctx.connected) do connected[c.integration] = c end
    assert.is_table(connected.keyed_header)
    assert.are.same({}, ctx.upcoming_events)

    local _, before = get("/v1/tools?suggest=1", carol)
    local suggested = {}
    for _, s in ipairs(before.suggestions) do suggested[s.integration] = true end
    assert.is_true(suggested.keyed_basic)
    local st = h.request("POST", srv.url .. "/v1/suggestions/keyed_basic/dismiss",
      {headers = {authorization = "Bearer " .. carol}})
    assert.are.equal(204, st)
    local _, after = get("/v1/tools?suggest=1", carol)
    for _, s in ipairs(after.suggestions) do assert.are_not.equal("keyed_basic", s.integration) end
    local _, cctx = get("/v1/context", carol)
    for _, s in ipairs(cctx.available) do assert.are_not.equal("keyed_basic", s.integration) end
    st = h.request("POST", srv.url .. "/v1/suggestions/nope/dismiss", {headers = {authorization = "Bearer " .. carol}})
    assert.are.equal(404, st)
  end)

  it("flags connections due for rotation to the admin", function()
    local st, body = h.request("PUT", srv.url .. "/v1/policies/rotation",
      {json = {integration = "*", every_days = 7}, headers = {authorization = "Bearer " .. bob}})
    assert.are.equal(403, st, body)
    st = h.request("PUT", srv.url .. "/v1/policies/rotation",
      {json = {integration = "keyed_query", every_days = 7}, headers = {authorization = "Bearer " .. alice}})
    assert.are.equal(200, st)
    -- the team's credential was set long ago
    h.sql(srv.data, "UPDATE connections SET credential_set_at = 1000 " ..
      "WHERE integration = 'keyed_query' AND scope = 'team'")
    local _, list = get("/v1/connections", alice)
    local found
    for _, c in ipairs(list.connections) do
      if c.integration == "keyed_query" and c.scope == "team" then found = c end
    end
    assert.are.equal(7, found.rotation.every_days)
    assert.is_true(found.rotation.overdue)
    local _, ctx = get("/v1/context", alice)
    assert.is_truthy(ctx.text:find("due for rotation", 1, true), ctx.text)
    local _, member_ctx = get("/v1/context", bob)
    assert.is_nil(member_ctx.text:find("due for rotation", 1, true))
  end)

  it("deletes a connection once; a call after that is told to connect", function()
    local _, conn = post(carol, {integration = "keyed_header", credentials = {token = "carol-token"},
                                 settings = {workspace = "g"}})
    assert.are.equal(200, (call(carol, "keyed_header__whoami", {})))
    local st = h.request("DELETE", srv.url .. "/v1/connections/" .. conn.id,
      {headers = {authorization = "Bearer " .. carol}})
    assert.are.equal(204, st)
    local st2, text = h.request("DELETE", srv.url .. "/v1/connections/" .. conn.id,
      {headers = {authorization = "Bearer " .. carol}})
    assert.are.equal(404, st2)
    assert.are.equal("not_found", h.decode(text).error.code)
    local status, body = call(carol, "keyed_header__whoami", {})
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    local rows = h.sql(srv.data, "SELECT count(*) FROM connection_secrets WHERE connection_id = '" .. conn.id .. "'")
    assert.are.equal("0", rows[1][1])
  end)

  it("refuses a connection whose check fails, and keeps nothing of it", function()
    -- the fault server answers /echo; make the check fail by pointing at a dead port
    local dead = h.start_ferry({base_urls = {keyed_header = "http://127.0.0.1:9"}, data = srv.data .. "-check"})
    local key = dead.key("dora", "acme")
    local status, text = h.request("POST", dead.url .. "/v1/connections",
      {json = {integration = "keyed_header", credentials = {token = "t"}, settings = {workspace = "w"}},
       headers = {authorization = "Bearer " .. key}})
    local body = h.decode(text)
    assert.are.equal(502, status, text)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("upstream_error", body.error.details.check_code)
    local _, list = dead.get("/v1/connections", key)
    assert.are.equal(0, #list.connections)
    -- verify = false skips the check
    status = h.request("POST", dead.url .. "/v1/connections",
      {json = {integration = "keyed_header", credentials = {token = "t"}, settings = {workspace = "w"}, verify = false},
       headers = {authorization = "Bearer " .. key}})
    assert.are.equal(201, status)
    dead.stop()
  end)
end)
