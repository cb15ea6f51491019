-- providers/hubspot.lua against a Prism mock of HubSpot's "CRM Contacts v3"
-- description, through the recording tap proxy.
--
-- Prism runs in dynamic mode (-d, seeded): the description's examples are
-- all `null`, so static mode would answer a literal null body; dynamic mode
-- generates bodies from the schemas instead (random values: the assertions
-- are about shapes). Error answers cannot come from Prism: HubSpot's error
-- response is `default` with media type */*, which Prism cannot serialise
-- (it answers its own 500), so the error cases use canned replies carrying
-- the description's Error example.
local h = require "helper"

local SLUG = "hubspot"
local TOKEN = "pat-na1-test-7d1c2e"

local function contact(id, email)
  return {id = id, properties = {email = email, firstname = "F" .. id, phone = h.json.null},
          createdAt = "2024-05-01T10:00:00Z", updatedAt = "2024-05-02T10:00:00Z", archived = false}
end

describe("provider hubspot", function()
  local prism, tap, srv, key, admin, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args,
                       {connection_id = connection_id or conn.id, approver = admin})
  end

  setup(function()
    prism = h.start_prism(h.api_spec("hubspot/contacts.json"), {dynamic = true})
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("alice", "acme")
    admin = srv.key("root", "acme", "admin")
    connected = {h.connect(srv, key, {integration = SLUG, credentials = {token = TOKEN},
                                      scope = "user", label = "HubSpot test"})}
    conn = connected[2]
    connected.requests = tap.requests()
  end)

  teardown(function()
    if srv then srv.stop() end
    if tap then tap.stop() end
    if prism then prism.stop() end
  end)

  before_each(function()
    tap.prefer(nil)
    tap.replies({})
    tap.clear()
  end)

  it("connects after the provider's check reads one contact with the bearer token", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    local sent = connected.requests
    assert.are.equal(1, #sent)
    assert.are.equal("GET", sent[1].method)
    assert.are.equal("/crm/v3/objects/contacts", sent[1].path)
    assert.is_truthy(sent[1].query:find("limit=1", 1, true))
    assert.are.equal("Bearer " .. TOKEN, sent[1].headers.authorization)
  end)

  it("search_contacts sends a PublicObjectSearchRequest and shapes the contacts", function()
    local status, body = call("search_contacts", {
      query = "ada",
      filters = {{property = "lifecyclestage", operator = "EQ", value = "customer"},
                 {property = "createdate", operator = "BETWEEN", value = "2024-01-01", high_value = "2024-12-31"}},
      properties = {"email", "firstname"},
      limit = 3,
    })
    assert.are.equal(200, status, h.json.encode(body))
    local result = body.result
    assert.is_number(result.total)
    assert.is_table(result.contacts)
    assert.is_true(#result.contacts <= 3)
    for _, c in ipairs(result.contacts) do
      assert.is_string(c.id)
      assert.is_table(c.properties)
      assert.is_string(c.created_at)
    end

    local sent = tap.requests()
    assert.is_true(#sent >= 1)
    local first = sent[1]
    assert.are.equal("POST", first.method)
    assert.are.equal("/crm/v3/objects/contacts/search", first.path)
    assert.are.equal("Bearer " .. TOKEN, first.headers.authorization)
    assert.are.equal("ada", first.json.query)
    assert.are.equal("0", first.json.after)
    assert.are.equal(3, first.json.limit)
    assert.are.same({"email", "firstname"}, first.json.properties)
    assert.are.same({{propertyName = "lifecyclestage", operator = "EQ", value = "customer"},
                     {propertyName = "createdate", operator = "BETWEEN", value = "2024-01-01",
                      highValue = "2024-12-31"}}, first.json.filterGroups[1].filters)
    assert.is_truthy(first.body:find('"sorts":[]', 1, true))
  end)

  it("search_contacts follows paging.next.after up to the limit and returns where to continue", function()
    tap.replies({
      {status = 200, json = {total = 5, results = {contact("1", "a@x.io"), contact("2", "b@x.io")},
                             paging = {next = {after = "p2"}}}},
      {status = 200, json = {total = 5, results = {contact("3", "c@x.io"), contact("4", "d@x.io")},
                             paging = {next = {after = "p3"}}}},
    })
    local status, body = call("search_contacts", {limit = 3})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(5, body.result.total)
    local ids = {}
    for i, c in ipairs(body.result.contacts) do ids[i] = c.id end
    assert.are.same({"1", "2", "3"}, ids)
    assert.are.equal("p3", body.result.next_cursor)
    assert.are.same({email = "a@x.io", firstname = "F1"}, body.result.contacts[1].properties,
                    "null properties are dropped")

    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert.are.same({"0", 3}, {sent[1].json.after, sent[1].json.limit})
    assert.are.same({"p2", 1}, {sent[2].json.after, sent[2].json.limit}, "asks only for what is left")
  end)

  it("search_contacts continues from a cursor and stops on a repeated one", function()
    tap.replies({
      {status = 200, json = {total = 5, results = {contact("5", "e@x.io")}, paging = {next = {after = "p3"}}}},
    })
    local status, body = call("search_contacts", {cursor = "p3", limit = 10})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(1, #body.result.contacts)
    assert.is_nil(body.result.next_cursor)
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert.are.equal("p3", sent[1].json.after)
  end)

  it("get_contact reads by email with properties and associations", function()
    local status, body = call("get_contact", {contact_id = "ada@example.com", id_property = "email",
                                              properties = {"email", "phone"}, associations = {"companies", "deals"}})
    assert.are.equal(200, status, h.json.encode(body))
    local c = body.result
    assert.is_string(c.id)
    assert.is_table(c.properties)
    if c.associations then
      for _, ids in pairs(c.associations) do assert.is_table(ids) end
    end
    local sent = tap.last()
    assert.are.equal("GET", sent.method)
    assert.are.equal("/crm/v3/objects/contacts/ada%40example.com", sent.path)
    for _, part in ipairs({"idProperty=email", "properties=email", "properties=phone", "associations=companies",
                           "associations=deals"}) do
      assert.is_truthy(("&" .. sent.query .. "&"):find("&" .. part .. "&", 1, true), part .. " in " .. sent.query)
    end
  end)

  it("get_contact turns associations into lists of ids", function()
    tap.replies({{status = 200, json = {
      id = "7", properties = {email = "g@x.io"}, createdAt = "2024-05-01T10:00:00Z", updatedAt = "2024-05-01T10:00:00Z",
      archived = false,
      associations = {companies = {results = {{id = "c1", type = "contact_to_company"},
                                              {id = "c1", type = "contact_to_company_unlabeled"},
                                              {id = "c2", type = "contact_to_company"}}}},
    }}})
    local status, body = call("get_contact", {contact_id = "7"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({companies = {"c1", "c2"}}, body.result.associations)
    assert.are.equal("/crm/v3/objects/contacts/7", tap.last().path)
  end)

  it("create_contact posts the properties (and the required empty associations)", function()
    local status, body = call("create_contact", {email = "new@example.com", firstname = "New", lastname = "Person",
                                                 properties = {favourite_colour = "teal"}})
    assert.are.equal(200, status, h.json.encode(body))
    assert.is_string(body.result.id)
    assert.is_table(body.result.properties)
    local sent = tap.last()
    assert.are.equal("POST", sent.method)
    assert.are.equal("/crm/v3/objects/contacts", sent.path)
    assert.are.same({email = "new@example.com", firstname = "New", lastname = "Person", favourite_colour = "teal"},
                    sent.json.properties)
    assert.is_truthy(sent.body:find('"associations":[]', 1, true))
  end)

  it("rejects invalid arguments before any request", function()
    local cases = {
      {"search_contacts", {filters = {{property = "email", operator = "LIKE", value = "x"}}}, "$.filters[0].operator"},
      {"search_contacts", {filters = {{property = "createdate", operator = "BETWEEN", value = "1"}}}, "$.filters[0]"},
      {"search_contacts", {filters = {{property = "email", operator = "IN"}}}, "$.filters[0]"},
      {"search_contacts", {filters = {{property = "email", operator = "EQ"}}}, "$.filters[0]"},
      {"search_contacts", {limit = 0}, "$.limit"},
      {"search_contacts", {sort = "email"}, "$"},
      {"get_contact", {}, "$"},
      {"create_contact", {phone = "123"}, "$"},
      {"create_contact", {email = "not an email"}, "$.email"},
      {"create_contact", {email = "a@b.io", properties = {n = 5}}, "$.properties.n"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("maps HubSpot's error body to upstream_error with its message and category", function()
    tap.replies({{status = 404, json = {status = "error", message = "resource not found",
                                        correlationId = "aeb5f871-7f07-4993-9211-075dc63e7cbf",
                                        category = "OBJECT_NOT_FOUND"}}})
    local status, body = call("get_contact", {contact_id = "404"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("HubSpot answered HTTP 404: resource not found", body.error.message)
    assert.are.equal(404, body.error.details.status)
    assert.are.equal("OBJECT_NOT_FOUND", body.error.details.upstream_code)
  end)

  it("maps 429 to upstream_rate_limited with Retry-After", function()
    tap.replies({{status = 429, headers = {["Retry-After"] = "10"},
                  json = {status = "error", message = "You have reached your ten_secondly_rolling limit.",
                          category = "RATE_LIMITS"}}})
    local status, body, headers = call("search_contacts", {query = "x"})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(10, body.error.details.retry_after)
    assert.are.equal("10", headers["retry-after"])
  end)

  it("maps 401 to reconnect_required", function()
    local st, spare = h.connect(srv, key, {integration = SLUG, credentials = {token = "revoked"}, scope = "user",
                                          label = "revoked", verify = false})
    assert.are.equal(201, st)
    tap.replies({{status = 401, json = {status = "error", category = "INVALID_AUTHENTICATION",
                                        message = "Authentication credentials not found.",
                                        correlationId = "aeb5f871-7f07-4993-9211-075dc63e7cbf"}}})
    local status, body = call("get_contact", {contact_id = "1"}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.is_truthy(body.error.message:find("Authentication credentials not found.", 1, true))
    assert.are.equal(spare.id, body.error.details.connection_id)
    assert.is_string(body.error.details.reconnect_url)

    -- the connection now says so, and the next call does not reach HubSpot
    tap.clear()
    status, body = call("get_contact", {contact_id = "1"}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.are.equal(spare.id, body.error.details.connection_id)
    assert.are.same({}, tap.requests())
    local _, list = srv.get("/v1/connections", key)
    for _, c in ipairs(list.connections) do
      if c.id == spare.id then assert.are.equal("reconnect_required", c.status) end
    end
    -- deleting it clears the way
    assert.are.equal(204, (h.request("DELETE", srv.url .. "/v1/connections/" .. spare.id,
      {headers = {authorization = "Bearer " .. key}})))
  end)
end)
