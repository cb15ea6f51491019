-- providers/xero.lua against a Prism mock of Xero's own Accounting
-- description (XeroAPI/Xero-OpenAPI, xero_accounting.yaml), through the
-- recording tap proxy.
--
-- The description's examples are real-looking, so static mode answers with
-- Xero's documented invoices, contacts and organisation (MS-JSON dates
-- included) and the assertions check exact shaping. Prism validates every
-- request: the required xero-tenant-id header, the query parameters, UUID
-- path parameters and the PUT body. Prism serves paths without the server's
-- /api.xro/2.0 part, so ferry's base URL for xero is the tap's bare address.
-- Errors (ValidationException, 401, 404's plain text, 429 with
-- X-Rate-Limit-Problem) are canned replies. The description is 0.9 MB:
-- Prism takes about half a minute to start.
-- Financial data: the caller is an admin (admins may use every category);
-- a member without the financial grant is refused.
local h = require "helper"

local SLUG = "xero"
local TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjFDQUY4RTY2NzcyRDZEQzAyOEQ2NzI2RkQwMjYxNTgx-xero"
local TENANT = "70784a63-d24b-46a9-a4db-0e70a274b056"
local CONTACT = "430fa14a-f945-44d3-9f97-5df5e28441b8"

describe("provider xero", function()
  local prism, tap, srv, key, member, conn, connected

  local function call(tool, args, connection_id)
    return h.call_tool(srv, key, SLUG .. "__" .. tool, args, {connection_id = connection_id or conn.id, approver = key})
  end

  local function assert_xero(sent, method, path)
    assert.are.equal(method, sent.method)
    assert.are.equal(path, sent.path)
    assert.are.equal("Bearer " .. TOKEN, sent.headers.authorization)
    assert.are.equal(TENANT, sent.headers["xero-tenant-id"])
    assert.are.equal("application/json", sent.headers.accept)
  end

  local function spare(label, settings)
    local st, c = h.connect(srv, key, {integration = SLUG, scope = "user", label = label, verify = false,
                                       credentials = {access_token = TOKEN, refresh_token = "xero-refresh"},
                                       settings = settings or {tenant_id = TENANT}})
    assert.are.equal(201, st, h.json.encode(c))
    return c
  end

  setup(function()
    prism = h.start_prism(h.api_spec("xero/xero_accounting.yaml"), {timeout = 300})
    tap = h.start_tap(prism.url)
    srv = h.start_ferry{providers = {}, base_urls = {[SLUG] = tap.url}}
    key = srv.key("ann", "acme", "admin")
    member = srv.key("mo", "acme")
    connected = {h.connect(srv, key, {integration = SLUG, scope = "user", label = "Xero test",
                                      credentials = {access_token = TOKEN, refresh_token = "xero-refresh"},
                                      settings = {tenant_id = TENANT}})}
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

  it("connects after reading the organisation with the tenant header", function()
    assert.are.equal(201, connected[1], connected[3])
    assert.are.equal("active", conn.status)
    assert.are.equal("Dev Evangelist - Sid Test 3 (NZ-2016-02)", conn.account_label)
    assert.are.equal(1, #connected.requests)
    assert_xero(connected.requests[1], "GET", "/Organisation")
  end)

  it("is financial data: a member without the category is refused before any request", function()
    local status, body = srv.call(member, SLUG .. "__list_invoices", {})
    assert.are.equal(403, status)
    assert.are.equal("forbidden", body.error.code)
    assert.are.equal("financial", body.error.details.category)
    assert.are.same({}, tap.requests())
  end)

  it("list_invoices shapes Xero's invoices with ISO dates and numbers", function()
    local status, body = call("list_invoices", {})
    assert.are.equal(200, status, h.json.encode(body))
    local r = body.result
    assert.are.equal(3, r.count)
    assert.are.same({1, 100, 1, 3}, {r.page, r.page_size, r.page_count, r.item_count})
    assert.is_nil(r.next_page)
    assert.are.equal(115, r.total_amount_due)
    assert.are.same({
      id = "046d8a6d-1ae1-4b4d-9340-5601bdf41b87", number = "INV-0002", type = "ACCREC", kind = "sales",
      status = "PAID", reference = "Red Fish, Blue Fish",
      contact = {id = "a3675fc4-f8dd-4f03-ba5b-f1870566bcd7", name = "Barney Rubble-83203"},
      date = "2018-10-20", due_date = "2018-12-30", currency = "NZD", currency_rate = 1,
      line_amount_types = "Exclusive", sub_total = 40, total_tax = 6, total = 46, amount_due = 0, amount_paid = 46,
      amount_credited = 0, fully_paid_on = "2018-11-29", sent_to_contact = true, has_attachments = false,
      updated_at = "2018-11-02T16:36:32.690Z",
      payments = {{id = "99ea7f6b-c513-4066-bc27-b7c65dcd76c2", date = "2018-11-29", amount = 46}},
    }, r.invoices[2])
    assert.is_true(r.invoices[3].overdue)           -- AUTHORISED, 115 due since 2018-11-07
    assert.are.equal("2018-11-07", r.invoices[3].due_date)
    assert.is_nil(r.invoices[1].overdue)            -- VOIDED
    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_xero(sent[1], "GET", "/Invoices")
    assert.are.same({page = {"1"}, pageSize = {"100"}}, h.parse_query(sent[1].query))
  end)

  it("list_invoices puts statuses, contacts and numbers in their parameters and the rest in where", function()
    local status, body = call("list_invoices", {
      statuses = {"AUTHORISED", "PAID"}, type = "sales", contact_ids = {CONTACT},
      invoice_numbers = {"INV-0001", "INV-0002"}, date_from = "2018-01-01", date_to = "2018-12-31",
      due_from = "2018-02-01", due_to = "2019-01-31", search = "Fish", include_archived = true,
      order_by = "Date", descending = true, page = 2, page_size = 50,
      modified_since = "2018-10-01T00:00:00Z",
    })
    assert.are.equal(200, status, h.json.encode(body))   -- Prism accepted every parameter
    local where = 'Type=="ACCREC" AND Date>=DateTime(2018,01,01) AND Date<=DateTime(2018,12,31) AND ' ..
                  'DueDate>=DateTime(2018,02,01) AND DueDate<=DateTime(2019,01,31)'
    assert.are.equal(where, body.result.where)
    local sent = tap.last()
    assert_xero(sent, "GET", "/Invoices")
    assert.are.same({
      page = {"2"}, pageSize = {"50"}, where = {where}, Statuses = {"AUTHORISED,PAID"}, ContactIDs = {CONTACT},
      InvoiceNumbers = {"INV-0001,INV-0002"}, searchTerm = {"Fish"}, includeArchived = {"true"},
      order = {"Date DESC"},
    }, h.parse_query(sent.query))
    assert.are.equal("2018-10-01T00:00:00Z", sent.headers["if-modified-since"])
  end)

  it("list_invoices overdue asks for authorised invoices with money due past the day", function()
    local status, body = call("list_invoices", {overdue = true, type = "bills", as_of = "2024-05-06"})
    assert.are.equal(200, status, h.json.encode(body))
    local q = h.parse_query(tap.last().query)
    assert.are.same({'Type=="ACCPAY" AND AmountDue>0 AND DueDate<DateTime(2024,05,06)'}, q.where)
    assert.are.same({"AUTHORISED"}, q.Statuses)
  end)

  it("list_invoices hands back the next page from Xero's pagination", function()
    tap.replies({{status = 200, json = {Status = "OK", pagination = {page = 1, pageSize = 2, pageCount = 3,
                                                                    itemCount = 5},
                                        Invoices = {{InvoiceID = "a1", Type = "ACCPAY", AmountDue = 10.5,
                                                     Date = "/Date(1714953600000+0000)/"},
                                                    {InvoiceID = "a2", Type = "ACCPAY", AmountDue = 2}}}}})
    local status, body = call("list_invoices", {page_size = 2})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal(2, body.result.next_page)
    assert.are.equal(3, body.result.page_count)
    assert.are.equal(12.5, body.result.total_amount_due)
    assert.are.same({id = "a1", type = "ACCPAY", kind = "bill", amount_due = 10.5, date = "2024-05-06"},
                    body.result.invoices[1])
  end)

  it("get_invoice reads one invoice by id with its lines and payments", function()
    local id = "a03ffcd2-5d91-4c7e-b483-318584e9e439"
    local status, body = call("get_invoice", {invoice_id = id})
    assert.are.equal(200, status, h.json.encode(body))
    assert_xero(tap.last(), "GET", "/Invoices/" .. id)
    local r = body.result
    assert.are.equal("INV-0006", r.number)
    assert.are.equal("2019-03-07", r.date)
    assert.are.equal("2019-03-13", r.due_date)
    assert.are.equal("2019-03-19", r.fully_paid_on)
    assert.are.equal("2019-03-07T17:59:28.133Z", r.updated_at)
    assert.are.equal(148062.76, r.total)
    assert.are.same({id = "430fa14a-f945-44d3-9f97-5df5e28441b8", name = "Liam Gallagher"}, r.contact)
    assert.are.same({{id = "b18f39d9-7739-4246-9288-72afe939d2d5", description = "Guitars Fender Strat",
                      quantity = 1, unit_amount = 148062.76, line_amount = 148062.76, tax_amount = 0,
                      tax_type = "NONE", account_code = "200", item_code = "123"}}, r.lines)
    assert.are.same({{id = "38928000-e9a0-420c-8884-f624bab2a351", date = "2019-03-19", amount = 148062.76,
                      reference = "Yahoo"}}, r.payments)
  end)

  it("get_invoice by number filters the list; an empty answer is not_found", function()
    local status, body = call("get_invoice", {invoice_number = "INV-0001"})
    assert.are.equal(200, status, h.json.encode(body))
    assert.are.equal("INV-0001", body.result.number)
    local sent = tap.last()
    assert_xero(sent, "GET", "/Invoices")
    assert.are.same({InvoiceNumbers = {"INV-0001"}, page = {"1"}}, h.parse_query(sent.query))

    tap.replies({{status = 200, json = {Status = "OK", Invoices = {}}}})
    status, body = call("get_invoice", {invoice_number = "INV-9999"})
    assert.are.equal(404, status)
    assert.are.equal("not_found", body.error.code)
  end)

  it("list_contacts filters customers and shapes phones, addresses and balances", function()
    local status, body = call("list_contacts", {is_customer = true, search = "war", order_by = "Name", page_size = 20})
    assert.are.equal(200, status, h.json.encode(body))
    local sent = tap.last()
    assert_xero(sent, "GET", "/Contacts")
    assert.are.same({page = {"1"}, pageSize = {"20"}, where = {"IsCustomer==true"}, searchTerm = {"war"},
                     order = {"Name ASC"}}, h.parse_query(sent.query))
    assert.are.equal(2, body.result.count)
    assert.is_nil(body.result.next_page)
    assert.are.same({
      id = "5cc8cf28-567e-4d43-b287-687cfcaec47c", name = "Katherine Warren", first_name = "Katherine",
      last_name = "Warren", email = "kat.warren@clampett.com", company_number = "NumberBusiness1234",
      status = "ACTIVE", is_customer = true, is_supplier = true, updated_at = "2017-08-21T20:49:04.227Z",
      phones = {{type = "DEFAULT", number = "(626) 847-1294"}},
      addresses = {{type = "POBOX", city = "Palo Alto", region = "CA", postal_code = "94020",
                    country = "United States"}},
      balances = {receivable = {outstanding = 760, overdue = 920}, payable = {outstanding = 231.6, overdue = 360}},
    }, body.result.contacts[1])
  end)

  it("create_invoice waits for approval, then PUTs {Invoices: [...]} (Prism validates it)", function()
    local args = {contact_id = CONTACT, date = "2024-05-06", due_date = "2024-06-05", reference = "Website Design",
                  status = "AUTHORISED", line_amount_types = "Exclusive", currency = "NZD",
                  lines = {{description = "Acme Tires", quantity = 2, unit_amount = 20, account_code = "200",
                            tax_type = "NONE"},
                           {description = "Fitting", line_amount = 15.5, discount_rate = 10}}}
    local status, pending = h.request("POST", srv.url .. "/v1/tools/call", {
      json = {name = SLUG .. "__create_invoice", arguments = args, connection_id = conn.id},
      headers = {authorization = "Bearer " .. key}})
    pending = h.decode(pending)
    assert.are.equal(202, status, h.json.encode(pending))
    assert.are.equal("Create an invoice for " .. CONTACT, pending.approval.summary)
    assert.are.same({}, tap.requests(), "nothing is sent before the approval")
    assert.are.equal(200, (h.request("POST", srv.url .. "/v1/approvals/" .. pending.approval.id .. "/approve",
      {json = {}, headers = {authorization = "Bearer " .. key}})))
    local _, decided = srv.get("/v1/approvals/" .. pending.approval.id, key)
    decided = decided.approval or decided
    assert.are.equal("succeeded", decided.status, h.json.encode(decided))
    local r = decided.result
    assert.are.equal("ed255415-e141-4150-aab7-89c3bbbb851c", r.id)     -- the description's example
    assert.are.equal("INV-0007", r.number)
    assert.are.equal("2019-03-11", r.date)
    assert.are.equal(40, r.amount_due)
    assert.are.equal(1, #r.lines)

    local sent = tap.requests()
    assert.are.equal(1, #sent)
    assert_xero(sent[1], "PUT", "/Invoices")
    assert.are.equal("application/json", sent[1].headers["content-type"])
    assert.is_truthy((sent[1].headers["idempotency-key"] or ""):match("^ferry%-."), "an Idempotency-Key")
    assert.are.same({Invoices = {{
      Type = "ACCREC", Contact = {ContactID = CONTACT}, Date = "2024-05-06", DueDate = "2024-06-05",
      Reference = "Website Design", Status = "AUTHORISED", LineAmountTypes = "Exclusive", CurrencyCode = "NZD",
      LineItems = {{Description = "Acme Tires", Quantity = 2, UnitAmount = 20, AccountCode = "200", TaxType = "NONE"},
                   {Description = "Fitting", LineAmount = 15.5, DiscountRate = 10}},
    }}}, sent[1].json)
  end)

  it("create_invoice defaults to a DRAFT sales invoice and reports errors Xero puts on the invoice", function()
    local status, body = call("create_invoice", {contact_id = CONTACT, type = "bills",
                                                 lines = {{description = "Paper", quantity = 1, unit_amount = 9}}})
    assert.are.equal(200, status, h.json.encode(body))
    local sent = tap.last().json.Invoices[1]
    assert.are.same({"ACCPAY", "DRAFT"}, {sent.Type, sent.Status})

    tap.replies({{status = 200, json = {Status = "OK", Invoices = {{InvoiceID = "00000000-0000-0000-0000-000000000000",
      HasErrors = true, StatusAttributeString = "ERROR",
      ValidationErrors = {{Message = "Account code '999' is not a valid code for this document."}}}}}}})
    status, body = call("create_invoice", {contact_id = CONTACT, lines = {{description = "x", account_code = "999"}}})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Xero refused the invoice: Account code '999' is not a valid code for this document.",
                     body.error.message)
  end)

  it("refuses invalid arguments before any request", function()
    local cases = {
      {"list_invoices", {statuses = {"OPEN"}}, "$.statuses[0]"},
      {"list_invoices", {type = "ACCREC"}, "$.type"},
      {"list_invoices", {contact_ids = {"not-a-uuid"}}, "$.contact_ids[0]"},
      {"list_invoices", {invoice_numbers = {"INV-1,INV-2"}}, "$.invoice_numbers[0]"},
      {"list_invoices", {date_from = "2024-02-30"}, "$.date_from"},
      {"list_invoices", {date_from = "2024-05-01", date_to = "2024-04-01"}, "$.date_to"},
      {"list_invoices", {overdue = true, statuses = {"PAID"}}, "$.statuses"},
      {"list_invoices", {page = 0}, "$.page"},
      {"list_invoices", {page_size = 1001}, "$.page_size"},
      {"list_invoices", {where = "Total>0"}, "$"},
      {"get_invoice", {}, "$"},
      {"get_invoice", {invoice_id = "a03ffcd2-5d91-4c7e-b483-318584e9e439", invoice_number = "INV-1"}, "$"},
      {"get_invoice", {invoice_id = "../Contacts"}, "$.invoice_id"},
      {"list_contacts", {is_customer = "yes"}, "$.is_customer"},
      {"create_invoice", {contact_id = CONTACT}, "$"},
      {"create_invoice", {contact_id = "Liam", lines = {{description = "x"}}}, "$.contact_id"},
      {"create_invoice", {contact_id = CONTACT, lines = {{description = ""}}}, "$.lines[0].description"},
      {"create_invoice", {contact_id = CONTACT, lines = {{quantity = 2}}}, "$.lines[0]"},
      {"create_invoice", {contact_id = CONTACT, lines = {{description = "x"}}, status = "PAID"}, "$.status"},
      {"create_invoice", {contact_id = CONTACT, lines = {{description = "x"}}, date = "2024-05-06",
                          due_date = "2024-05-01"}, "$.due_date"},
    }
    for _, c in ipairs(cases) do
      local status, body = call(c[1], c[2])
      assert.are.equal(400, status, c[1] .. " " .. h.json.encode(c[2]) .. " " .. h.json.encode(body))
      assert.are.equal("invalid_arguments", body.error.code)
      assert.are.equal(c[3], body.error.details.path, body.error.message)
    end
    assert.are.same({}, tap.requests())
  end)

  it("answers invalid_arguments without a request when the connection has no tenant_id", function()
    local c = spare("no tenant", {})
    local status, body = call("list_contacts", {}, c.id)
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.is_truthy(body.error.message:find("tenant_id", 1, true))
    local c2 = spare("bad tenant", {tenant_id = "acme\r\nX-Evil: 1"})
    status, body = call("list_invoices", {}, c2.id)
    assert.are.equal(400, status)
    assert.are.equal("invalid_arguments", body.error.code)
    assert.are.same({}, tap.requests())
  end)

  it("maps a ValidationException to upstream_error with the validation messages", function()
    tap.replies({{status = 400, json = {ErrorNumber = 10, Type = "ValidationException",
      Message = "A validation exception occurred",
      Elements = {{InvoiceID = "00000000-0000-0000-0000-000000000000", ValidationErrors = {
        {Message = "Email address must be valid."}, {Message = "Invoice not of valid status for modification"}}}}}}})
    local status, body = call("create_invoice", {contact_id = CONTACT, lines = {{description = "x"}}})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Xero answered HTTP 400: A validation exception occurred: Email address must be valid.; " ..
                     "Invoice not of valid status for modification", body.error.message)
    assert.are.equal("ValidationException", body.error.details.upstream_code)
  end)

  it("maps a 404's plain text to upstream_error", function()
    tap.replies({{status = 404, headers = {["Content-Type"] = "text/plain"},
                  body = "The resource you're looking for cannot be found"}})
    local status, body = call("get_invoice", {invoice_id = "a03ffcd2-5d91-4c7e-b483-318584e9e439"})
    assert.are.equal(502, status)
    assert.are.equal("upstream_error", body.error.code)
    assert.are.equal("Xero answered HTTP 404: The resource you're looking for cannot be found", body.error.message)
  end)

  it("maps 429 to upstream_rate_limited with Retry-After and which limit", function()
    local c = spare("throttled")
    tap.replies({{status = 429, headers = {["Retry-After"] = "12", ["X-Rate-Limit-Problem"] = "minute"},
                  body = ""}})
    local status, body, headers = call("list_invoices", {}, c.id)
    assert.are.equal(429, status)
    assert.are.equal("upstream_rate_limited", body.error.code)
    assert.are.equal(12, body.error.details.retry_after)
    assert.are.equal("minute", body.error.details.rate_limit_problem)
    assert.are.equal("12", headers["retry-after"])
  end)

  it("maps 401 to reconnect_required", function()
    local c = spare("expired")
    tap.replies({{status = 401, json = {Type = h.json.null, Title = "Unauthorized", Status = 401,
                                        Detail = "AuthenticationUnsuccessful",
                                        Instance = "3a2c7f2e-6a4c-4a8c-8fb2-4b0c7b8a2b1e"}}})
    local status, body = call("list_contacts", {}, c.id)
    assert.are.equal(409, status, h.json.encode(body))
    assert.are.equal("reconnect_required", body.error.code)
    -- (the engine words the message: no OAuth client is set up to refresh the token)
    assert.is_truthy(body.error.message:find("reconnect", 1, true), body.error.message)
    assert.is_string(body.error.details.reconnect_url)
    assert.are.equal(c.id, body.error.details.connection_id)
  end)
end)
