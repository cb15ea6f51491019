-- luacheck: std lua51+busted
-- providers/xero.lua's pure parts, run in-process with ferry.testing and
-- fake answers: MS-JSON dates ("/Date(1552522535440+0000)/") to ISO 8601,
-- the where conditions the tools write, and the shaping of odd answers.
-- tests/integration/provider_xero_spec.lua runs it against Prism.
local testing = require "ferry.testing"

local TENANT = "70784a63-d24b-46a9-a4db-0e70a274b056"
local provider = testing.load("providers/xero.lua")

-- A harness whose every answer is {Invoices = {invoice}} (or `body`).
local function with_answer(body)
  return testing.new(provider, {settings = {tenant_id = TENANT}, credentials = {access_token = "t"},
                                respond = function() return {status = 200, json = body} end})
end

local function invoice_from(fields)
  local h = with_answer({Status = "OK", Invoices = {fields}})
  local r, err = h:call("get_invoice", {invoice_id = "a03ffcd2-5d91-4c7e-b483-318584e9e439"})
  assert.is_nil(err, err and err.message)
  return r, h
end

describe("xero MS-JSON dates", function()
  it("turns timestamps into UTC ISO 8601, keeping milliseconds when there are some", function()
    local cases = {
      {"/Date(1552522535440+0000)/", "2019-03-14T00:15:35.440Z"},
      {"/Date(1573755038314)/", "2019-11-14T18:10:38.314Z"},        -- no offset
      {"/Date(1541176290000+0000)/", "2018-11-02T16:31:30Z"},       -- whole seconds
      {"/Date(1552522535440-0500)/", "2019-03-14T00:15:35.440Z"},   -- the offset does not move the instant
      {"/Date(0)/", "1970-01-01T00:00:00Z"},
      {"/Date(-1)/", "1969-12-31T23:59:59.999Z"},
      {"/Date(951782400000+1300)/", "2000-02-29T00:00:00Z"},
      {"/Date(4102444799999+0000)/", "2099-12-31T23:59:59.999Z"},
    }
    for _, c in ipairs(cases) do
      local r = invoice_from({InvoiceID = "x", UpdatedDateUTC = c[1]})
      assert.are.equal(c[2], r.updated_at, c[1])
    end
  end)

  it("turns dates into YYYY-MM-DD", function()
    local r = invoice_from({
      Date = "/Date(1551916800000+0000)/", DueDate = "/Date(1709164800000+0000)/",
      FullyPaidOnDate = "/Date(-86400000+0000)/", ExpectedPaymentDate = "/Date(951868800000+0000)/",
      PlannedPaymentDate = "/Date(4102444800000+0000)/",
    })
    assert.are.equal("2019-03-07", r.date)
    assert.are.equal("2024-02-29", r.due_date)
    assert.are.equal("1969-12-31", r.fully_paid_on)
    assert.are.equal("2000-03-01", r.expected_payment_date)
    assert.are.equal("2100-01-01", r.planned_payment_date)
  end)

  it("agrees with os.date over four centuries", function()
    local payments, expected = {}, {}
    local ms = -2208988800000          -- 1900-01-01
    local step = 86400000 * 293 + 3600 * 1000 * 7 + 12345
    while ms < 7258118400000 do        -- 2200-01-01
      payments[#payments + 1] = {PaymentID = tostring(#payments), Date = ("/Date(%.0f+0000)/"):format(ms),
                                 Amount = 1}
      expected[#expected + 1] = os.date("!%Y-%m-%d", math.floor(ms / 1000))
      ms = ms + step
    end
    local r = invoice_from({InvoiceID = "x", Payments = payments})
    assert.are.equal(#expected, #r.payments)
    for i, p in ipairs(r.payments) do assert.are.equal(expected[i], p.date, payments[i].Date) end
  end)

  it("keeps what is not an MS date, and falls back to the *String fields", function()
    local r = invoice_from({
      DateString = "2019-03-11T00:00:00", DueDateString = "2019-04-11T00:00:00",
      UpdatedDateUTC = "2019-03-11T17:58:46Z", FullyPaidOnDate = "/Date(soon)/",
    })
    assert.are.equal("2019-03-11", r.date)
    assert.are.equal("2019-04-11", r.due_date)
    assert.are.equal("2019-03-11T17:58:46Z", r.updated_at)
    assert.are.equal("/Date(soon)/", r.fully_paid_on)
    r = invoice_from({InvoiceID = "x", Date = testing.json.null})
    assert.is_nil(r.date)
  end)
end)

describe("xero shaping", function()
  it("marks overdue only authorised invoices with money due past their due date", function()
    local past, future = "/Date(946684800000+0000)/", "/Date(4102444800000+0000)/"
    assert.is_true(invoice_from({Status = "AUTHORISED", AmountDue = 5, DueDate = past}).overdue)
    assert.is_false(invoice_from({Status = "AUTHORISED", AmountDue = 5, DueDate = future}).overdue)
    assert.is_nil(invoice_from({Status = "AUTHORISED", AmountDue = 0, DueDate = past}).overdue)
    assert.is_nil(invoice_from({Status = "DRAFT", AmountDue = 5, DueDate = past}).overdue)
  end)

  it("answers not_found when Xero returns no invoice", function()
    local h = with_answer({Status = "OK", Invoices = testing.json.array()})
    local r, err = h:call("get_invoice", {invoice_number = "INV-1"})
    assert.is_nil(r)
    assert.are.equal("not_found", err.code)
    assert.are.equal("1", h:last_request().query.page)
    assert.are.equal("INV-1", h:last_request().query.InvoiceNumbers)
  end)

  it("skips empty phones and addresses and reads numbers given as text", function()
    local h = with_answer({Contacts = {{ContactID = "c1", Name = "Acme",
      Phones = {{PhoneType = "DEFAULT", PhoneNumber = "", PhoneAreaCode = "09"},
                {PhoneType = "MOBILE", PhoneNumber = "555 1234", PhoneAreaCode = "21", PhoneCountryCode = "64"}},
      Addresses = {{AddressType = "STREET", City = "", Region = ""}},
      Balances = {AccountsReceivable = {Outstanding = "12.50"}}}}})
    local r, err = h:call("list_contacts", {page_size = 1})
    assert.is_nil(err)
    assert.are.same({{type = "MOBILE", number = "64 21 555 1234"}}, r.contacts[1].phones)
    assert.is_nil(r.contacts[1].addresses)
    assert.are.same({receivable = {outstanding = 12.5}}, r.contacts[1].balances)
    assert.are.equal(2, r.next_page, "a full page without pagination may have more")
    assert.are.same({page = "1", pageSize = "1"}, h:last_request().query)
  end)
end)

describe("xero pages", function()
  local function contacts(n)
    local out = {}
    for i = 1, n do out[i] = {ContactID = "c" .. i, Name = "Contact " .. i} end
    return out
  end

  it("reads one page per call and offers the next while Xero's pageCount says there are more", function()
    local h = with_answer({Contacts = contacts(2), pagination = {page = 2, pageSize = 2, pageCount = 3, itemCount = 6}})
    local r = assert(h:call("list_contacts", {page = 2, page_size = 2}))
    assert.are.equal(1, #h.requests, "a full page is not followed by a second request")
    assert.are.same({2, 2, 3, 6, 3}, {r.page, r.page_size, r.page_count, r.item_count, r.next_page})
    assert.are.same({page = "2", pageSize = "2"}, h:last_request().query)
    assert.is_nil(r.items)
  end)

  it("offers no next page at the last page, nor after a short or empty one", function()
    local h = with_answer({Contacts = contacts(2), pagination = {page = 3, pageSize = 2, pageCount = 3, itemCount = 6}})
    assert.is_nil(assert(h:call("list_contacts", {page = 3, page_size = 2})).next_page, "pageCount reached")
    h = with_answer({Invoices = {{InvoiceID = "i1"}}})
    local r = assert(h:call("list_invoices", {page_size = 2}))
    assert.is_nil(r.next_page, "a short page")
    assert.are.same({1, 2}, {r.page, r.page_size})
    h = with_answer({Invoices = testing.json.array()})
    assert.is_nil(assert(h:call("list_invoices", {page = 4, page_size = 2})).next_page, "an empty page")
  end)
end)

describe("xero requests", function()
  it("writes where conditions from the arguments and sends the tenant header", function()
    local h = with_answer({Invoices = testing.json.array()})
    local r, err = h:call("list_invoices", {type = "sales", date_from = "2024-01-01", overdue = true,
                                           as_of = "2024-05-06", page_size = 10})
    assert.is_nil(err)
    assert.are.equal('Type=="ACCREC" AND Date>=DateTime(2024,01,01) AND AmountDue>0 AND ' ..
                     'DueDate<DateTime(2024,05,06)', r.where)
    local req = h:last_request()
    assert.are.equal(TENANT, req.headers["xero-tenant-id"])
    assert.are.equal("Bearer t", req.headers.authorization)
    assert.are.same({where = r.where, Statuses = "AUTHORISED", page = "1", pageSize = "10"}, req.query)
    assert.is_nil(r.next_page)
  end)

  it("refuses a connection without a usable tenant_id before any request", function()
    for _, settings in ipairs({{}, {tenant_id = "acme"}, {tenant_id = TENANT .. "\r\nX: 1"}}) do
      local h = testing.new(provider, {settings = settings, credentials = {access_token = "t"},
                                       respond = function() error("no request expected") end})
      local r, err = h:call("list_contacts", {})
      assert.is_nil(r)
      assert.are.equal("invalid_arguments", err.code)
      assert.are.equal(0, #h.requests)
    end
  end)

  it("sends line items as Xero's LineItems and an Idempotency-Key", function()
    local h = with_answer({Invoices = {{InvoiceID = "n1", Status = "DRAFT", LineItems = testing.json.array()}}})
    local r, err = h:call("create_invoice", {contact_id = TENANT, lines = {{description = "Work", quantity = 3,
                                                                            unit_amount = 19.99}}})
    assert.is_nil(err, err and err.message)
    assert.are.equal("n1", r.id)
    local req = h:last_request()
    assert.are.equal("PUT", req.method)
    assert.are.same({Invoices = {{Type = "ACCREC", Status = "DRAFT", Contact = {ContactID = TENANT},
                                  LineItems = {{Description = "Work", Quantity = 3, UnitAmount = 19.99}}}}},
                    req.json)
  end)
end)
