-- providers/notion.lua against a Prism mock of the Notion description
-- shipped with Notion's MCP server (2025-09-03 data source edition), through
-- the recording tap proxy. Static mode: the description's success responses
-- are bare {"type": "object"}, so Prism answers {} and the result shapes are
-- checked with canned replies shaped like Notion's documented objects; the
-- requests themselves always go through Prism's validation first.
local h = require "helper"

local SLUG = "notion"
local TOKEN = "ntn_test_5e6f7a8b"
local PAGE_ID = "59833787-2cf9-4fdf-8782-e53db20768a5"
local DS_ID = "248104cd477e80afbc30000bd28de8f9"

local function rich(text) return {{type = "text", text = {content = text}, plain_text = text}} end

local PAGE = {
  object = "page", id = PAGE_ID, url = "https://www.notion.so/Tuscan-kale-598337872cf94fdf8782e53db20768a5",
  created_time = "2022-03-01T19:05:00.000Z", last_edited_time = "2022-07-06T20:25:00.000Z",
  in_trash = false, parent = {type = "data_source_id", data_source_id = DS_ID},
  properties = {
    Name = {id = "title", type = "title", title = rich("Tuscan kale")},
    Notes = {id = "n", type = "rich_text", rich_text = {rich("Leafy ")[1], rich("green")[1]}},
    Price = {id = "p", type = "number", number = 2.5},
    Stock = {id = "s", type = "checkbox", checkbox = false},
    Aisle = {id = "a", type = "select", select = {id = "x", name = "Produce", color = "green"}},
    Tags = {id = "t", type = "multi_select", multi_select = {{name = "Vegetable"}, {name = "Organic"}}},
    Status = {id = "st", type = "status", status = {name = "In stock"}},
    Due = {id = "d", type = "date", date = {start = "2022-07-10", ["end"] = h.json.null, time_zone = h.json.null}},
    Owner = {id = "o", type = "people", people = {{object = "user", id = "u1", name = "Ada"},
                                                   {object = "user", id = "u2"}}},
    Related = {id = "r", type = "relation", relation = {{id = "r1"}, {id = "r2"}}},
    Link = {id = "l", type = "url", url = "https://example.com"},
    Total = {id = "f", type = "formula", formula = {type = "number", number = 12}},
    Ticket = {id = "u", type = "unique_id", unique_id = {prefix = "KAL", number = 7}},
    Photo = {id = "ph", type = "files", files = {{name = "kale.png", type = "external",
                                                  external = {url = "https://example.com/kale.png"}}}},
    Empty = {id = "e", type = "email", email = h.json.null},
  },
}

local DATA_SOURCE = {
  object = "data_source", id = DS_ID, title = rich("Grocery list"), url = "https://www.notion.so/grocery",
  last_edited_time = "2022-07-06T20:25:00.000Z", parent = {type = "database_id", database_id = "db1"},
  properties = {Name = {id = "title", type = "title", title = {}}, Price = {id = "p", type = "number", number = {}}},
}

describe("provider notion", function()
  local prism, tap, srv, key, admin, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args,
                       {connection_id = connection_id or conn.id, approver = admin})
  end

  local function assert_notion_request(sent, method, path)
    assert.are.equal(method, sent.method)
    assert.are.equal(path, sent.path)
    assert.are.equal("2025-09-03", sent.headers["notion-version"])
    assert.are.equal("Bearer " .. TOKEN, sent.headers.authorization)
  end

  setup(function()
    prism = h.start_prism(h.api_spec("notion/notion-openapi.json"))
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("alice", "acme")
    admin = srv.key("root", "acme", "admin")
    connected = {h.connect(srv, key, {integration = SLUG, credentials = {token = TOKEN}, scope = "user",
                                      label = "Notion test"})}
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

  it("connects after the provider's check reads /v1/users/me with Notion-Version", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal("pied piper", conn.account_label)   -- the spec's example bot
    assert.are.equal(1, #connected.requests)
    assert_notion_request(connected.requests[1], "GET", "/v1/users/me")
  end)

  it("search sends the spec's body and copes with Prism's empty answer", function()
    local status, body = call("search", {query = "kale", type = "page", sort = "ascending", limit = 5})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({}, body.result.results)
    assert.is_nil(body.result.next_cursor)
    local sent = tap.last()
    assert_notion_request(sent, "POST", "/v1/search")
    assert.are.same({query = "kale", filter = {property = "object", value = "page"},
                     sort = {timestamp = "last_edited_time", direction = "ascending"}, page_size = 5}, sent.json)
  end)

  it("search pages with start_cursor until has_more is false and shapes pages and data sources", function()
    tap.replies({
      {status = 200, json = {object = "list", results = {PAGE, DATA_SOURCE}, next_cursor = "c2", has_more = true}},
      {status = 200, json = {object = "list", results = {PAGE}, next_cursor = "c3", has_more = false}},
    })
    local status, body = call("search", {})
    assert.are.equal(200, status, h.json.encode(body))
    local results = body.result.results
    assert.are.equal(3, #results)
    assert.is_nil(body.result.next_cursor)
    assert.are.same({id = PAGE_ID, object = "page", title = "Tuscan kale", url = PAGE.url,
                     created_time = PAGE.created_time, last_edited_time = PAGE.last_edited_time, in_trash = false,
                     parent = {type = "data_source_id", id = DS_ID}}, results[1])
    assert.are.same({id = DS_ID, object = "data_source", title = "Grocery list", url = DATA_SOURCE.url,
                     last_edited_time = DATA_SOURCE.last_edited_time, parent = {type = "database_id", id = "db1"},
                     properties = {Name = "title", Price = "number"}}, results[2])
    local sent = tap.requests()
    assert.are.equal(2, #sent)
    assert.are.equal(20, sent[1].json.page_size)
    assert.is_nil(sent[1].json.start_cursor)
    assert.are.equal("c2", sent[2].json.start_cursor)
    assert.are.equal(18, sent[2].json.page_size)
  end)

  it("get_page reads the page (Prism answers {})", function()
    local status, body = call("get_page", {page_id = PAGE_ID})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({properties = {}}, body.result)
    assert_notion_request(tap.last(), "GET", "/v1/pages/" .. PAGE_ID)
  end)

  it("get_page turns property values into plain values", function()
    tap.replies({{status = 200, json = PAGE}})
    local status, body = call("get_page", {page_id = (PAGE_ID:gsub("-", ""))})
    assert.are.equal(200, status, h.json.encode(body))
    local page = body.result
    assert.are.equal("Tuscan kale", page.title)
    assert.are.same({
      Name = "Tuscan kale", Notes = "Leafy green", Price = 2.5, Stock = false, Aisle = "Produce",
      Tags = {"Vegetable", "Organic"}, Status = "In stock", Due = {start = "2022-07-10"}, Owner = {"Ada", "u2"},
      Related = {"r1", "r2"}, Link = "https://example.com", Total = 12, Ticket = "KAL-7",
      Photo = {{name = "kale.png", url = "https://example.com/kale.png"}},
    }, page.properties)
  end)

  it("query_data_source posts filter, sorts and page_size to the data source", function()
    local filter = {["and"] = {{property = "Price", number = {greater_than = 2}},
                               {property = "Status", status = {equals = "In stock"}}}}
    local status, body = call("query_data_source", {data_source_id = DS_ID, filter = filter,
                                                    sorts = {{property = "Price", direction = "descending"}},
                                                    limit = 10})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({}, body.result.results)
    local sent = tap.last()
    assert_notion_request(sent, "POST", "/v1/data_sources/" .. DS_ID .. "/query")
    assert.are.same({filter = filter, sorts = {{property = "Price", direction = "descending"}}, page_size = 10},
                    sent.json)
  end)

  it("query_data_source returns rows with their values and where to continue", function()
    tap.replies({{status = 200, json = {object = "list", results = {PAGE}, next_cursor = "n2", has_more = true}}})
    local status, body = call("query_data_source", {data_source_id = DS_ID, limit = 1})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(1, #body.result.results)
    assert.are.equal("Tuscan kale", body.result.results[1].properties.Name)
    assert.are.equal("n2", body.result.next_cursor)
  end)

  it("rejects invalid arguments before any request", function()
    local cases = {
      {"get_page", {page_id = "../users/me"}, "$.page_id"},
      {"get_page", {}, "$"},
      {"search", {type = "database"}, "$.type"},
      {"search", {limit = 0}, "$.limit"},
      {"query_data_source", {data_source_id = DS_ID, sorts = {{property = "Price"}}}, "$.sorts[0]"},
      {"query_data_source", {data_source_id = DS_ID, filter = "Price > 2"}, "$.filter"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("maps the spec's 400 answer to upstream_error with Notion's message and code", function()
    tap.prefer("code=400")
    local status, body = call("search", {query = "x"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Notion answered HTTP 400: string", body.error.message)   -- the spec's example
    assert.are.equal(400, body.error.details.status)
    assert.are.equal("string", body.error.details.upstream_code)
  end)

  it("maps 429 rate_limited with Retry-After", function()
    tap.replies({{status = 429, headers = {["Retry-After"] = "3"},
                  json = {object = "error", status = 429, code = "rate_limited",
                          message = "You have been rate limited. Please try again in a few minutes."}}})
    local status, body, headers = call("get_page", {page_id = PAGE_ID})
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(3, body.error.details.retry_after)
    assert.are.equal("rate_limited", body.error.details.upstream_code)
    assert.are.equal("3", headers["retry-after"])
  end)

  it("maps 401 unauthorized to reconnect_required", function()
    local _, spare = h.connect(srv, key, {integration = SLUG, credentials = {token = "revoked"}, scope = "user",
                                         label = "revoked", verify = false})
    tap.replies({{status = 401, json = {object = "error", status = 401, code = "unauthorized",
                                        message = "API token is invalid."}}})
    local status, body = call("search", {}, spare.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.are.equal("Notion rejected the credential (HTTP 401): API token is invalid.", body.error.message)
  end)
end)
