-- providers/quickbooks.lua against a Prism mock of the QuickBooks Online
-- description in tests/specs (Ballerina's community spec), through the
-- recording tap proxy.
--
-- What the description gives and does not:
--  * static mode answers Read Invoice / Read Customer / Create or Update
--    Invoice with schema placeholders ("string", 0, "Line": [null]), and
--    Query Entity with a literal `null` (its response schema is `{}`). Prism
--    still validates every request (path, the query parameter, the body), so
--    the request shapes are checked by Prism and by the tap; realistic
--    answers (QueryResponse pages, Faults) are canned replies shaped like
--    Intuit's documented ones.
--  * no error responses at all: Faults (ValidationFault, AUTHENTICATION,
--    ThrottleExceeded) are canned.
-- Financial data: the caller is a member granted the `financial` category by
-- an admin (another member without it is refused); writes are approved by
-- that admin.
local h = require "helper"

local SLUG = "quickbooks"
local TOKEN = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2qbo-access"
local REALM = "9130349217371286"
local BASE = "/v3/company/" .. REALM

local function fault(kind, code, message, detail)
  return {Fault = {Error = {{Message = message, Detail = detail, code = code, element = ""}}, type = kind},
          time = "2024-05-06T09:00:00.000-07:00"}
end

local INV = {
  Id = "130", SyncToken = "2", DocNumber = "1037", TxnDate = "2024-04-02", DueDate = "2024-05-02",
  CustomerRef = {value = "58", name = "Sonnenschein Family Store"},
  CurrencyRef = {value = "USD", name = "United States Dollar"},
  TotalAmt = 362.07, Balance = 362.07, EmailStatus = "NotSet", PrintStatus = "NeedToPrint",
  BillEmail = {Address = "Familiystore@intuit.com"}, CustomerMemo = {value = "Thank you for your business"},
  TxnTaxDetail = {TotalTax = 26.82},
  SalesTermRef = {value = "3", name = "Net 30"},
  MetaData = {CreateTime = "2024-04-02T16:07:49-07:00", LastUpdatedTime = "2024-04-03T10:00:00-07:00"},
  BillAddr = {Id = "95", Line1 = "Russ Sonnenschein", Line2 = "5647 Cypress Hill Ave.", City = "Middlefield",
              CountrySubDivisionCode = "CA", PostalCode = "94303"},
  LinkedTxn = {{TxnId = "100", TxnType = "Estimate"}},
  Line = {
    {Id = "1", LineNum = 1, Description = "Rock Fountain", Amount = 275.0, DetailType = "SalesItemLineDetail",
     SalesItemLineDetail = {ItemRef = {value = "5", name = "Rock Fountain"}, UnitPrice = 275, Qty = 1,
                            TaxCodeRef = {value = "TAX"}}},
    {Id = "2", LineNum = 2, Description = "Fountain Pump", Amount = 12.75, DetailType = "SalesItemLineDetail",
     SalesItemLineDetail = {ItemRef = {value = "11", name = "Pump"}, UnitPrice = 12.75, Qty = 1,
                            ServiceDate = "2024-04-01"}},
    {Amount = 287.75, DetailType = "SubTotalLineDetail", SubTotalLineDetail = {}},
  },
}

local PAID = {Id = "129", DocNumber = "1036", TxnDate = "2024-03-01", DueDate = "2024-03-31",
              CustomerRef = {value = "58", name = "Sonnenschein Family Store"}, TotalAmt = 50, Balance = 0,
              Line = {{Amount = 50, DetailType = "SalesItemLineDetail", SalesItemLineDetail = {}}}}

local CUSTOMER = {
  Id = "58", SyncToken = "0", DisplayName = "Sonnenschein Family Store", CompanyName = "Sonnenschein Family Store",
  GivenName = "Russ", FamilyName = "Sonnenschein", FullyQualifiedName = "Sonnenschein Family Store",
  PrimaryEmailAddr = {Address = "Familiystore@intuit.com"}, PrimaryPhone = {FreeFormNumber = "(650) 557-8463"},
  Balance = 362.07, BalanceWithJobs = 362.07, CurrencyRef = {value = "USD", name = "United States Dollar"},
  Active = true, Taxable = true, Job = false,
  BillAddr = {Id = "95", Line1 = "5647 Cypress Hill Ave.", City = "Middlefield", CountrySubDivisionCode = "CA",
              PostalCode = "94303"},
  MetaData = {CreateTime = "2024-01-10T16:07:49-07:00", LastUpdatedTime = "2024-04-03T10:00:00-07:00"},
}

describe("provider quickbooks", function()
  local prism, tap, srv, admin, key, outsider, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args,
                       {connection_id = connection_id or conn.id, approver = admin})
  end

  local function q(sent) return h.parse_query(sent.query).query[1] end

  local function assert_qbo(sent, method, path)
    assert.are.equal(method, sent.method)
    assert.are.equal(path, sent.path)
    assert.are.equal("Bearer " .. TOKEN, sent.headers.authorization)
    assert.are.equal("application/json", sent.headers.accept)
  end

  local function spare(label, settings)
    local st, c = h.connect(srv, key, {integration = SLUG, scope = "user", label = label, verify = false,
                                       credentials = {access_token = TOKEN, refresh_token = "AB11-refresh"},
                                       settings = settings or {realm_id = REALM}})
    assert.are.equal(201, st, h.json.encode(c))
    return c
  end

  setup(function()
    prism = h.start_prism(h.api_spec("quickbooks/openapi.yaml"))
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    admin = srv.key("ann", "acme", "admin")
    key = srv.key("mo", "acme")
    outsider = srv.key("pat", "acme")
    assert.are.equal(200, (h.request("POST", srv.url .. "/v1/permissions", {
      json = {user = "mo", category = "financial", allow = true}, headers = {authorization = "Bearer " .. admin}})))
    connected = {h.connect(srv, key, {integration = SLUG, scope = "user", label = "QuickBooks test",
                                      credentials = {access_token = TOKEN, refresh_token = "AB11-refresh"},
                                      settings = {realm_id = REALM}})}
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

  it("connects with imported tokens after a CompanyInfo query for the realm", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal(1, #connected.requests)
    local sent = connected.requests[1]
    assert_qbo(sent, "GET", BASE .. "/query")
    assert.are.equal("SELECT * FROM CompanyInfo", q(sent))

    -- the company's name becomes the account label
    tap.replies({{status = 200, json = {QueryResponse = {CompanyInfo = {{CompanyName = "Craig's Design and " ..
      "Landscaping Services", LegalName = "Craig's Design", Id = "1"}}, startPosition = 1, maxResults = 1}}}})
    local st, c = h.connect(srv, key, {integration = SLUG, scope = "user", label = "named",
                                       credentials = {access_token = TOKEN, refresh_token = "r"},
                                       settings = {realm_id = REALM}})
    assert.are.equal(201, st, h.json.encode(c))
    assert.are.equal("Craig's Design and Landscaping Services", c.account_label)
  end)

  it("is financial data: a member without the category is refused before any request", function()
    local status, body = srv.call(outsider, SLUG .. "__get_invoice", {invoice_id = "130"})
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    assert.are.equal("financial", body.error.details.category)
    assert.are.same({}, tap.requests())
  end)

  it("query builds the QuickBooks query from structured conditions (Prism accepts it)", function()
    local status, body = call("query", {
      entity = "Customer",
      where = {{field = "DisplayName", op = "LIKE", value = "O'Brien%"},
               {field = "Active", op = "=", value = true},
               {field = "Balance", op = ">", value = 100.5},
               {field = "Id", op = "IN", values = {"58", 7}},
               {field = "MetaData.LastUpdatedTime", op = ">=", value = "2024-01-01"}},
      order_by = "DisplayName", descending = true, start_position = 11, max_results = 5,
    })
    assert.are.equal(200, status, h.json.encode(body))
    local expected = "SELECT * FROM Customer WHERE DisplayName LIKE 'O\\'Brien%' AND Active = true AND " ..
                     "Balance > '100.5' AND Id IN ('58', '7') AND MetaData.LastUpdatedTime >= '2024-01-01' " ..
                     "ORDERBY DisplayName DESC STARTPOSITION 11 MAXRESULTS 5"
    assert.are.equal(expected, body.result.query)
    assert.are.same({}, body.result.items)            -- Prism answers null: no QueryResponse
    assert.are.equal(0, body.result.count)
    assert.is_nil(body.result.next_start_position)
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_qbo(sent[1], "GET", BASE .. "/query")
    assert.are.same({query = {expected}}, h.parse_query(sent[1].query))

    -- a quote in a value stays inside the literal
    tap.clear()
    status, body = call("query", {entity = "Invoice", where = {{field = "Id", op = "=", value = "1' OR Id > '0"}}})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("SELECT * FROM Invoice WHERE Id = '1\\' OR Id > \\'0' STARTPOSITION 1 MAXRESULTS 100",
                     q(tap.last()))
  end)

  it("query shapes invoices and customers, passes other entities through, and pages", function()
    tap.replies({
      {status = 200, json = {QueryResponse = {Invoice = {INV, PAID}, startPosition = 1, maxResults = 2},
                             time = "2024-05-06T09:00:00.000-07:00"}},
      {status = 200, json = {QueryResponse = {Vendor = {{Id = "56", DisplayName = "Bob's Burger Joint",
                                                         Balance = 0, Active = true}}, startPosition = 1,
                                              maxResults = 1}}},
      {status = 200, json = {QueryResponse = {}, time = "2024-05-06T09:00:00.000-07:00"}},
    })
    local status, body = call("query", {entity = "Invoice", max_results = 2})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal("SELECT * FROM Invoice STARTPOSITION 1 MAXRESULTS 2", r.query)
    assert.are.equal(2, r.count)
    assert.are.equal(3, r.next_start_position)
    assert.are.equal("130", r.items[1].id)
    assert.are.equal(362.07, r.items[1].balance)
    assert.are.equal(2, r.items[1].line_count)
    assert.are.equal("paid", r.items[2].status)

    status, body = call("query", {entity = "Vendor", max_results = 10})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({{Id = "56", DisplayName = "Bob's Burger Joint", Balance = 0, Active = true}}, body.result.items)
    assert.is_nil(body.result.next_start_position)

    status, body = call("query", {entity = "Bill", where = {{field = "TxnDate", op = "<", value = "2020-01-01"}}})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({}, body.result.items)
    assert.are.equal("SELECT * FROM Bill WHERE TxnDate < '2020-01-01' STARTPOSITION 1 MAXRESULTS 100",
                     q(tap.last()))
  end)

  it("query count_only asks SELECT COUNT(*)", function()
    tap.replies({{status = 200, json = {QueryResponse = {totalCount = 42}}}})
    local status, body = call("query", {entity = "Estimate", count_only = true,
                                        where = {{field = "TxnStatus", op = "=", value = "Pending"}}})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({entity = "Estimate", total_count = 42,
                     query = "SELECT COUNT(*) FROM Estimate WHERE TxnStatus = 'Pending'"}, body.result)
    assert.are.equal("SELECT COUNT(*) FROM Estimate WHERE TxnStatus = 'Pending'", q(tap.last()))
  end)

  it("list_invoices asks for overdue invoices by due date and derives each status", function()
    tap.replies({{status = 200, json = {QueryResponse = {Invoice = {INV}, startPosition = 1, maxResults = 1}}}})
    local status, body = call("list_invoices", {status = "overdue", customer_id = "58", as_of = "2024-05-06",
                                                from_date = "2024-01-01", to_date = "2024-04-30", limit = 25})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    local expected = "SELECT * FROM Invoice WHERE Balance > '0' AND DueDate < '2024-05-06' AND CustomerRef = '58' " ..
                     "AND TxnDate >= '2024-01-01' AND TxnDate <= '2024-04-30' ORDERBY DueDate ASC " ..
                     "STARTPOSITION 1 MAXRESULTS 25"
    assert.are.equal(expected, q(tap.last()))
    assert.are.equal(expected, r.query)
    assert.are.equal(1, r.count)
    assert.are.equal(362.07, r.total_balance)
    assert.are.equal("2024-05-06", r.as_of)
    assert.are.same({
      id = "130", doc_number = "1037", customer = {id = "58", name = "Sonnenschein Family Store"},
      txn_date = "2024-04-02", due_date = "2024-05-02", total = 362.07, balance = 362.07, status = "overdue",
      currency = "USD", total_tax = 26.82, email_status = "NotSet", print_status = "NeedToPrint",
      bill_email = "Familiystore@intuit.com", customer_memo = "Thank you for your business",
      sales_term = {id = "3", name = "Net 30"}, created_at = "2024-04-02T16:07:49-07:00",
      updated_at = "2024-04-03T10:00:00-07:00", sync_token = "2", linked = {{id = "100", type = "Estimate"}},
      line_count = 2,
    }, r.invoices[1])

    -- unpaid, newest first; Prism validates the request
    tap.clear()
    status, body = call("list_invoices", {status = "unpaid"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("SELECT * FROM Invoice WHERE Balance > '0' ORDERBY TxnDate DESC STARTPOSITION 1 MAXRESULTS 50",
                     q(tap.last()))
    assert.are.same({}, body.result.invoices)
    assert.are.equal(0, body.result.total_balance)
  end)

  it("get_invoice reads the invoice (Prism's placeholders) and shapes lines", function()
    local status, body = call("get_invoice", {invoice_id = "130"})
    assert.are.equal(200, status, h.json.encode(body))
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_qbo(sent[1], "GET", BASE .. "/invoice/130")
    assert.are.equal("", sent[1].query or "")
    local r = body.result
    assert.are.equal("string", r.id)
    assert.are.equal(0, r.total)
    assert.are.equal("zero", r.status)
    assert.are.same({}, r.lines)                 -- "Line": [null]

    tap.replies({{status = 200, json = {Invoice = INV, time = "2024-05-06T09:00:00.000-07:00"}}})
    status, body = call("get_invoice", {invoice_id = "130"})
    assert.are.equal(200, status, h.json.encode(body))
    r = body.result
    assert.are.same({
      {id = "1", line_number = 1, type = "SalesItemLineDetail", description = "Rock Fountain", amount = 275,
       item = {id = "5", name = "Rock Fountain"}, quantity = 1, unit_price = 275, tax_code = "TAX"},
      {id = "2", line_number = 2, type = "SalesItemLineDetail", description = "Fountain Pump", amount = 12.75,
       item = {id = "11", name = "Pump"}, quantity = 1, unit_price = 12.75, service_date = "2024-04-01"},
      {type = "SubTotalLineDetail", amount = 287.75},
    }, r.lines)
    assert.are.same({line1 = "Russ Sonnenschein", line2 = "5647 Cypress Hill Ave.", city = "Middlefield",
                     region = "CA", postal_code = "94303"}, r.bill_address)
    assert.is_nil(r.line_count)
  end)

  it("get_customer reads the customer and shapes it", function()
    local status, body = call("get_customer", {customer_id = "58"})
    assert.are.equal(200, status, h.json.encode(body))
    assert_qbo(tap.last(), "GET", BASE .. "/customer/58")
    assert.are.equal("string", body.result.display_name)

    tap.replies({{status = 200, json = {Customer = CUSTOMER}}})
    status, body = call("get_customer", {customer_id = "58"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.same({
      id = "58", display_name = "Sonnenschein Family Store", company_name = "Sonnenschein Family Store",
      given_name = "Russ", family_name = "Sonnenschein", fully_qualified_name = "Sonnenschein Family Store",
      email = "Familiystore@intuit.com", phone = "(650) 557-8463", balance = 362.07, balance_with_jobs = 362.07,
      currency = "USD", active = true, taxable = true, is_job = false,
      billing_address = {line1 = "5647 Cypress Hill Ave.", city = "Middlefield", region = "CA",
                         postal_code = "94303"},
      created_at = "2024-01-10T16:07:49-07:00", updated_at = "2024-04-03T10:00:00-07:00", sync_token = "0",
    }, body.result)
  end)

  it("create_invoice waits for approval, then posts an InvoiceCreateObject (Prism validates it)", function()
    local args = {customer_id = "58", txn_date = "2024-05-06", due_date = "2024-06-05", doc_number = "1040",
                  customer_memo = "Thanks!", bill_email = "Familiystore@intuit.com",
                  lines = {{item_id = "5", description = "Rock Fountain", quantity = 2, unit_price = 137.5},
                           {amount = 12.75, description = "Pump"},
                           {description = "Delivered on site"}}}
    -- first the approval, with the summary a person reads
    local status, pending = h.request("POST", srv.url .. "/v1/tools/call", {
      json = {name = SLUG .. "__create_invoice", arguments = args, connection_id = conn.id},
      headers = {authorization = "Bearer " .. key}})
    pending = h.decode(pending)
    assert.are.equal(202, status, h.json.encode(pending))
    assert.are.equal("pending", pending.approval.status)
    assert.are.equal("Create an invoice for 58", pending.approval.summary)
    assert.are.same({}, tap.requests(), "nothing is sent before the approval")

    local st = h.request("POST", srv.url .. "/v1/approvals/" .. pending.approval.id .. "/approve",
      {json = {reason = "ok"}, headers = {authorization = "Bearer " .. admin}})
    assert.are.equal(200, st)
    local _, decided = srv.get("/v1/approvals/" .. pending.approval.id, admin)
    decided = decided.approval or decided
    assert.are.equal("succeeded", decided.status, h.json.encode(decided))
    assert.are.equal("string", decided.result.id)        -- Prism's InvoiceResponse placeholder

    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_qbo(sent[1], "POST", BASE .. "/invoice")
    assert.are.equal("application/json", sent[1].headers["content-type"])
    assert.are.same({
      CustomerRef = {value = "58"}, TxnDate = "2024-05-06", DueDate = "2024-06-05", DocNumber = "1040",
      CustomerMemo = {value = "Thanks!"}, BillEmail = {Address = "Familiystore@intuit.com"},
      Line = {
        {DetailType = "SalesItemLineDetail", Amount = 275, Description = "Rock Fountain",
         SalesItemLineDetail = {ItemRef = {value = "5"}, Qty = 2, UnitPrice = 137.5}},
        {DetailType = "SalesItemLineDetail", Amount = 12.75, Description = "Pump", SalesItemLineDetail = {}},
        {DetailType = "DescriptionOnly", Description = "Delivered on site", DescriptionLineDetail = {}},
      },
    }, sent[1].json)
  end)

  it("create_invoice returns the created invoice shaped (through h.call_tool)", function()
    tap.replies({{status = 200, json = {Invoice = INV, time = "2024-05-06T09:00:00.000-07:00"}}})
    local status, body = call("create_invoice", {customer_id = "58", lines = {{amount = 275}}})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("130", body.result.id)
    assert.are.equal(3, #body.result.lines)
    assert.are.same({CustomerRef = {value = "58"},
                     Line = {{DetailType = "SalesItemLineDetail", Amount = 275, SalesItemLineDetail = {}}}},
                    tap.last().json)
  end)

  it("refuses invalid arguments before any request", function()
    local cases = {
      {"query", {}, "$"},
      {"query", {entity = "CompanyInfo"}, "$.entity"},
      {"query", {entity = "Invoice", where = {{field = "Id; DROP", op = "=", value = "1"}}}, "$.where[0].field"},
      {"query", {entity = "Invoice", where = {{field = "Id", op = "!=", value = "1"}}}, "$.where[0].op"},
      {"query", {entity = "Invoice", where = {{field = "Id", op = "=", value = "1\nOR"}}}, "$.where[0].value"},
      {"query", {entity = "Invoice", where = {{field = "Id", op = "=", value = "a\\"}}}, "$.where[0].value"},
      {"query", {entity = "Invoice", where = {{field = "Id", op = "IN", value = "1"}}}, "$.where[0]"},
      {"query", {entity = "Invoice", where = {{field = "Id", op = "=", values = {"1"}}}}, "$.where[0]"},
      {"query", {entity = "Invoice", where = {{field = "Active", op = ">", value = true}}}, "$.where[0].op"},
      {"query", {entity = "Invoice", where = {{field = "Name", op = "LIKE", value = 5}}}, "$.where[0].value"},
      {"query", {entity = "Invoice", where = {{field = "Name", op = "=", value = {1}}}}, "$.where[0].value"},
      {"query", {entity = "Invoice", max_results = 1001}, "$.max_results"},
      {"query", {entity = "Invoice", count_only = true, max_results = 5}, "$"},
      {"list_invoices", {status = "late"}, "$.status"},
      {"list_invoices", {from_date = "2024-13-01"}, "$.from_date"},
      {"list_invoices", {customer_id = "58' OR '1'='1"}, "$.customer_id"},
      {"get_invoice", {}, "$"},
      {"get_invoice", {invoice_id = "../customer/1"}, "$.invoice_id"},
      {"get_customer", {customer_id = ""}, "$.customer_id"},
      {"create_invoice", {customer_id = "58"}, "$"},
      {"create_invoice", {customer_id = "58", lines = {}}, "$.lines"},
      {"create_invoice", {customer_id = "58", lines = {{quantity = 2}}}, "$.lines[0]"},
      {"create_invoice", {customer_id = "58", lines = {{description = "only text"}}}, "$.lines"},
      {"create_invoice", {customer_id = "58", lines = {{amount = 10, quantity = 2, unit_price = 3}}},
       "$.lines[0].amount"},
      {"create_invoice", {customer_id = "58", lines = {{amount = 1}}, txn_date = "2024-05-06",
                          due_date = "2024-05-01"}, "$.due_date"},
      {"create_invoice", {customer_id = "58", lines = {{amount = 1}}, bill_email = "nope"}, "$.bill_email"},
      {"create_invoice", {customer_id = "58", lines = {{amount = 1, colour = "red"}}}, "$.lines[0]"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(c[2]) .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("answers invalid_arguments without a request when the connection has no realm_id", function()
    local c = spare("no realm", {})
    local status, body = call("get_invoice", {invoice_id = "130"}, c.id)
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.is_truthy(body.error.message:find("realm_id", 1, true))
    local c2 = spare("bad realm", {realm_id = "../../v2"})
    status, body = call("list_invoices", {}, c2.id)
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.same({}, tap.requests())
  end)

  it("maps a ValidationFault to upstream_error with Intuit's message, detail and code", function()
    tap.replies({{status = 400, json = fault("ValidationFault", "610", "Object Not Found",
      "Object Not Found : Something you're trying to use has been made inactive.")}})
    local status, body = call("get_invoice", {invoice_id = "999"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("QuickBooks answered HTTP 400: Object Not Found: Object Not Found : Something you're trying " ..
                     "to use has been made inactive.", body.error.message)
    assert.are.equal(400, body.error.details.status)
    assert.are.equal("610", body.error.details.upstream_code)
  end)

  it("maps a Fault inside a 200 (query parse errors) to upstream_error", function()
    tap.replies({{status = 200, json = fault("ValidationFault", "4000", "Error parsing query",
                                             "QueryParserError: Encountered \" <ID> \"Foo \"\" at line 1")}})
    local status, body = call("query", {entity = "Invoice", order_by = "Foo"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.is_truthy(body.error.message:find("Error parsing query", 1, true), body.error.message)
    assert.are.equal("4000", body.error.details.upstream_code)
  end)

  it("maps 429 ThrottleExceeded to upstream_rate_limited with Retry-After", function()
    local c = spare("throttled")
    tap.replies({{status = 429, headers = {["Retry-After"] = "7"},
                  json = fault("SERVICE", "3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                               "The request limit was reached.")}})
    local status, body, headers = call("list_invoices", {status = "unpaid"}, c.id)
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(7, body.error.details.retry_after)
    assert.are.equal("7", headers["retry-after"])
    assert.are.equal("3001", body.error.details.upstream_code)
  end)

  it("maps a 401 AUTHENTICATION fault to reconnect_required", function()
    local c = spare("revoked")
    tap.replies({{status = 401, json = {fault = {error = {{message = "message=AuthenticationFailed; " ..
      "errorCode=003200; statusCode=401", detail = "Authentication failed", code = "3200"}}, type = "AUTHENTICATION"},
      time = "2024-05-06T09:00:00.000-07:00"}}})
    local status, body = call("get_customer", {customer_id = "58"}, c.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    -- (the engine words the message: no OAuth client is set up to refresh the token)
    assert.is_truthy(body.error.message:find("reconnect", 1, true), body.error.message)
    assert.is_string(body.error.details.reconnect_url)
    assert.are.equal(c.id, body.error.details.connection_id)
    tap.clear()
    status, body = call("get_customer", {customer_id = "58"}, c.id)
    assert.are.equal(409, status)
    assert.are.equal("reconnect_required", body.error.code)
    assert.are.same({}, tap.requests())
  end)
end)
