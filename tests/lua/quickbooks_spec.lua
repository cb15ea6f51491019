-- luacheck: std lua51+busted
-- providers/quickbooks.lua's pure parts, run in-process with ferry.testing
-- and fake answers: the query text built from structured arguments (quoting,
-- numbers, what is refused), invoice statuses and lines.
-- tests/integration/provider_quickbooks_spec.lua runs it against Prism.
local testing = require "ferry.testing"

local REALM = "4620816365037572"
local provider = testing.load("providers/quickbooks.lua")

local function harness(body, settings)
  return testing.new(provider, {settings = settings or {realm_id = REALM}, credentials = {access_token = "t"},
                                respond = function() return {status = 200, json = body or {QueryResponse = {}}} end})
end

-- The query text a `query` call sends.
local function sent_query(args)
  local h = harness()
  local r, err = h:call("query", args)
  if not r then return nil, err end
  local req = h:last_request()
  assert.are.equal("/v3/company/" .. REALM .. "/query", req.path)
  assert.are.equal("application/json", req.headers.accept)
  assert.are.equal(r.query, req.query.query)
  return r.query
end

describe("quickbooks query text", function()
  it("quotes strings and numbers, escapes quotes, leaves booleans bare", function()
    local cases = {
      {{field = "DisplayName", op = "=", value = "Amy's Bird Sanctuary"}, "DisplayName = 'Amy\\'s Bird Sanctuary'"},
      {{field = "DisplayName", op = "LIKE", value = "%Bird%"}, "DisplayName LIKE '%Bird%'"},
      {{field = "TotalAmt", op = ">=", value = 1000}, "TotalAmt >= '1000'"},
      {{field = "TotalAmt", op = "<", value = 0.1}, "TotalAmt < '0.1'"},
      {{field = "Balance", op = ">", value = -2.5}, "Balance > '-2.5'"},
      {{field = "Id", op = "=", value = 12345678901}, "Id = '12345678901'"},
      {{field = "Active", op = "=", value = false}, "Active = false"},
      {{field = "Id", op = "IN", values = {"1", 2, "O'Neil"}}, "Id IN ('1', '2', 'O\\'Neil')"},
      {{field = "MetaData.CreateTime", op = "<=", value = "2024-05-06T00:00:00-07:00"},
       "MetaData.CreateTime <= '2024-05-06T00:00:00-07:00'"},
      {{field = "Name", op = "=", value = "naïve café"}, "Name = 'naïve café'"},
    }
    for _, c in ipairs(cases) do
      assert.are.equal("SELECT * FROM Customer WHERE " .. c[2] .. " STARTPOSITION 1 MAXRESULTS 100",
                       sent_query({entity = "Customer", where = {c[1]}}))
    end
  end)

  it("orders, pages and counts", function()
    assert.are.equal("SELECT * FROM Payment ORDERBY TxnDate ASC STARTPOSITION 101 MAXRESULTS 1000",
                     sent_query({entity = "Payment", order_by = "TxnDate", start_position = 101, max_results = 1000}))
    assert.are.equal("SELECT * FROM Payment ORDERBY MetaData.LastUpdatedTime DESC STARTPOSITION 1 MAXRESULTS 100",
                     sent_query({entity = "Payment", order_by = "MetaData.LastUpdatedTime", descending = true}))
    assert.are.equal("SELECT COUNT(*) FROM Vendor WHERE Active = true",
                     sent_query({entity = "Vendor", count_only = true,
                                 where = {{field = "Active", op = "=", value = true}}}))
  end)

  it("refuses what could leave the literal or the language", function()
    local cases = {
      {{field = "Name", op = "=", value = "a\\' OR Id > \\'0"}, "$.where[0].value"},
      {{field = "Name", op = "=", value = "line\nbreak"}, "$.where[0].value"},
      {{field = "Name", op = "=", value = "nul\0"}, "$.where[0].value"},
      {{field = "Name", op = "IN", values = {"ok", "bad\\"}}, "$.where[0].values[1]"},
      {{field = "Name) OR (Id", op = "=", value = "1"}, "$.where[0].field"},
      {{field = "Name", op = "OR", value = "1"}, "$.where[0].op"},
      {{field = "Name", op = "<", value = true}, "$.where[0].op"},
      {{field = "MetaData.", op = "=", value = "1"}, "$.where[0].field"},
      {{field = "A.B.C", op = "=", value = "1"}, "$.where[0].field"},
    }
    for _, c in ipairs(cases) do
      local r, err = sent_query({entity = "Customer", where = {c[1]}})
      assert.is_nil(r)
      assert.are.equal("invalid_arguments", err.code)
      assert.are.equal(c[2], err.details.path, err.message)
    end
    local r, err = sent_query({entity = "Customer", order_by = "Name."})
    assert.is_nil(r)
    assert.are.equal("$.order_by", err.details.path)
  end)

  it("reads QueryResponse pages and says where the next one starts", function()
    local h = harness({QueryResponse = {Account = {{Id = "1", Name = "Checking"}, {Id = "2", Name = "Savings"}},
                                        startPosition = 21, maxResults = 2}})
    local r = assert(h:call("query", {entity = "Account", start_position = 21, max_results = 2}))
    assert.are.same({{Id = "1", Name = "Checking"}, {Id = "2", Name = "Savings"}}, r.items)
    assert.are.equal(23, r.next_start_position)
    assert.are.equal(21, r.start_position)
  end)

  it("reads one page per call: a full page says where the next starts, a short or empty one does not", function()
    local function account(i) return {Id = tostring(i), Name = "A" .. i} end
    local h = harness({QueryResponse = {Account = {account(1), account(2), account(3)}}})
    local r = assert(h:call("list_invoices", {limit = 3, start_position = 4}))
    assert.are.equal(1, #h.requests, "a full page is not followed by a second request")
    assert.is_nil(r.next_start_position, "no Invoice in the answer: an empty page")
    r = assert(h:call("query", {entity = "Account", max_results = 3, start_position = 4}))
    assert.are.equal(2, #h.requests)
    assert.are.equal(3, r.count)
    assert.are.equal(7, r.next_start_position)
    assert.are.equal(4, r.start_position, "QueryResponse without startPosition: the one asked for")
    assert.are.equal(3, r.max_results)
    r = assert(h:call("query", {entity = "Account", max_results = 4, start_position = 4}))
    assert.are.equal(3, #h.requests)
    assert.are.equal(3, r.count)
    assert.is_nil(r.next_start_position, "a short page is the last")
    assert.are.equal("SELECT * FROM Account STARTPOSITION 4 MAXRESULTS 4", r.query)
  end)

  it("answers invalid_arguments without a request when the realm is missing or not digits", function()
    for _, settings in ipairs({{}, {realm_id = "abc"}, {realm_id = "1/../2"}}) do
      local h = testing.new(provider, {settings = settings, credentials = {access_token = "t"},
                                       respond = function() error("no request expected") end})
      local r, err = h:call("get_customer", {customer_id = "1"})
      assert.is_nil(r)
      assert.are.equal("invalid_arguments", err.code)
      assert.are.equal(0, #h.requests)
    end
  end)
end)

describe("quickbooks invoices", function()
  it("derives a status from balance, total and due date", function()
    local function status(inv)
      local h = harness({Invoice = inv})
      return assert(h:call("get_invoice", {invoice_id = "1"})).status
    end
    assert.are.equal("paid", status({TotalAmt = 10, Balance = 0, DueDate = "2000-01-01"}))
    assert.are.equal("overdue", status({TotalAmt = 10, Balance = 10, DueDate = "2000-01-01"}))
    assert.are.equal("open", status({TotalAmt = 10, Balance = 10, DueDate = "2999-01-01"}))
    assert.are.equal("partially_paid", status({TotalAmt = 10, Balance = 4, DueDate = "2999-01-01"}))
    assert.are.equal("zero", status({TotalAmt = 0, Balance = 0}))
    assert.is_nil(status({}))
  end)

  it("list_invoices measures overdue against as_of", function()
    local h = harness({QueryResponse = {Invoice = {{Id = "1", TotalAmt = 5, Balance = 5, DueDate = "2024-05-01"},
                                                   {Id = "2", TotalAmt = 5, Balance = 5, DueDate = "2024-05-10"}}}})
    local r = assert(h:call("list_invoices", {as_of = "2024-05-06"}))
    assert.are.same({"overdue", "open"}, {r.invoices[1].status, r.invoices[2].status})
    assert.are.equal(10, r.total_balance)
    assert.are.equal("SELECT * FROM Invoice ORDERBY TxnDate DESC STARTPOSITION 1 MAXRESULTS 50", r.query)
  end)

  it("create_invoice computes line amounts and posts to the realm's invoice path", function()
    local h = harness({Invoice = {Id = "9", TotalAmt = 59.97, Balance = 59.97}})
    local r = assert(h:call("create_invoice", {customer_id = "3", lines = {
      {quantity = 3, unit_price = 19.99, item_id = "2", tax_code = "NON", service_date = "2024-05-01"}}}))
    assert.are.equal("9", r.id)
    local req = h:last_request()
    assert.are.equal("POST", req.method)
    assert.are.equal("/v3/company/" .. REALM .. "/invoice", req.path)
    assert.are.same({CustomerRef = {value = "3"}, Line = {{DetailType = "SalesItemLineDetail", Amount = 59.97,
      SalesItemLineDetail = {Qty = 3, UnitPrice = 19.99, ItemRef = {value = "2"}, TaxCodeRef = {value = "NON"},
                             ServiceDate = "2024-05-01"}}}}, req.json)
  end)
end)
