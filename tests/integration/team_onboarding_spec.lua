-- The whole path a team takes, against Prism serving HubSpot's official
-- description: keys for two teams, HubSpot connected with a token through
-- the API, its tools listed for that team only, a read tool called, no
-- secret anywhere, the master key rotated while calls run, and calls still
-- working after.
local h = require "helper"

local TOKEN = "pat-na1-0b5e7d3c-ONBOARDING-SECRET-91f2"

describe("a team connects HubSpot", function()
  local prism, srv, acme, globex
  local seen = {}

  local function keep(text) seen[#seen + 1] = text or "" return text end

  setup(function()
    prism = h.start_prism(h.api_spec("hubspot/contacts.json"), {dynamic = true})
    srv = h.start_ferry({providers = {}, base_urls = {hubspot = prism.url}})
    acme = srv.key("alice", "acme", "admin")
    globex = srv.key("gus", "globex")
  end)

  teardown(function()
    srv.stop()
    prism.stop()
    for _, text in ipairs(seen) do
      assert.is_nil(text:find(TOKEN, 1, true), "the token in a response")
    end
    for _, f in ipairs({srv.log, srv.data .. "/ferry.db", srv.data .. "/ferry.db-wal"}) do
      assert.is_nil((h.read_file(f) or ""):find(TOKEN, 1, true), "the token in " .. f)
    end
  end)

  it("connects, lists, calls, rotates under load, and calls again", function()
    local status, text = h.request("POST", srv.url .. "/v1/connections",
      {json = {integration = "hubspot", credentials = {token = TOKEN}, scope = "team", label = "Sales"},
       headers = {authorization = "Bearer " .. acme}})
    keep(text)
    assert.are.equal(201, status, text)
    local conn = h.decode(text)
    assert.are.equal("active", conn.status)

    local _, tools, _, raw = srv.get("/v1/tools", acme)
    keep(raw)
    local names = {}
    for _, t in ipairs(tools.tools) do names[t.name] = t end
    assert.is_table(names.hubspot__search_contacts)
    assert.are.equal(conn.id, names.hubspot__search_contacts.connection_id)
    assert.are.equal("write", names.hubspot__create_contact.access)
    local _, other, _, raw2 = srv.get("/v1/tools", globex)
    keep(raw2)
    for _, t in ipairs(other.tools) do assert.is_nil(t.name:match("^hubspot__"), "globex sees no HubSpot tool") end

    local st, body, _, raw3 = srv.call(acme, "hubspot__search_contacts", {query = "ada", limit = 2})
    keep(raw3)
    assert.are.equal(200, st, raw3)
    assert.is_table(body.result.contacts)

    local load = h.spawn({h.loadgen_bin, "--json", "--url", srv.url .. "/v1/tools/call", "--method", "POST",
      "--header", "Authorization: Bearer " .. acme, "--header", "Content-Type: application/json",
      "--body", '{"name":"hubspot__get_contact","arguments":{"contact_id":"1"}}',
      "--concurrency", "4", "--duration", "3"})
    h.sleep(1)
    local code, _, err = h.ferry({"vault", "rotate", "--data", srv.data})
    assert.are.equal(0, code, err)
    h.wait_exit(load.pid, 30)
    local report = h.json.decode(h.read_file(load.stdout))
    assert.is_true(report.requests > 10, h.json.encode(report))
    assert.are.equal(0, report.errors, h.json.encode(report.error_breakdown))

    st, body, _, raw3 = srv.call(acme, "hubspot__get_contact", {contact_id = "1"})
    keep(raw3)
    assert.are.equal(200, st, raw3)
    assert.is_string(body.result.id)
  end)
end)
