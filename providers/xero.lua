-- Xero Accounting: a Xero organisation's sales invoices and bills, and its
-- contacts; new invoices (with approval).
--
-- HTTP shapes follow Xero's own description (XeroAPI/Xero-OpenAPI,
-- xero_accounting.yaml; server https://api.xero.com/api.xro/2.0). Every
-- operation requires the `xero-tenant-id` header: the connection's
-- `tenant_id` setting (the organisation's id from GET
-- https://api.xero.com/connections after consent).
--   list_invoices    GET /Invoices?page=&pageSize=&where=&Statuses=&ContactIDs=&order=   (getInvoices)
--   get_invoice      GET /Invoices/{InvoiceID}                                        (getInvoice)
--                    or GET /Invoices?InvoiceNumbers=... by number                    (getInvoices)
--   list_contacts    GET /Contacts?page=&pageSize=&where=&searchTerm=&order=          (getContacts)
--   create_invoice   PUT /Invoices  {"Invoices": [Invoice]}, Idempotency-Key         (createInvoices)
--                    (Xero's PUT creates; POST /Invoices would create *or update*)
--   check            GET /Organisation                                                (getOrganisations)
--                    (needs accounting.settings.read, hence that scope)
--
-- Filters: statuses go in `Statuses` (the description recommends the explicit
-- parameters over OR conditions in `where`); type, dates and amounts are
-- `where` conditions the tool writes itself (Type=="ACCREC" AND
-- Date>=DateTime(2024,05,01) AND AmountDue>0) from validated arguments — no
-- raw `where` text is taken from the agent.
--
-- Dates: Xero answers MS-JSON dates, "/Date(1552522535440+0000)/" (epoch
-- milliseconds, UTC; the offset only says which zone it was written in).
-- Results carry ISO 8601 instead: plain dates (x-is-msdate fields: Date,
-- DueDate, FullyPaidOnDate, ...) as YYYY-MM-DD, timestamps (x-is-msdate-time:
-- UpdatedDateUTC) as YYYY-MM-DDThh:mm:ss[.mmm]Z.
--
-- Errors: {"ErrorNumber", "Type", "Message", "Elements": [{"ValidationErrors":
-- [{"Message"}]}]} for 400s, {"Title", "Detail", "Status"} for 401/403, plain
-- text for 404. 401/403 → reconnect_required; 429 (with Retry-After and
-- X-Rate-Limit-Problem: minute, day, concurrent or appminute) →
-- upstream_rate_limited.
--
-- Rate limits (developer.xero.com/documentation/guides/oauth2/limits/, "API
-- rate limits"): per tenant 60 calls a minute, 5 in flight at once and 5,000
-- a day; 10,000 a minute per app across tenants. One connection is one
-- tenant; the per-minute limit is declared (the daily one the engine cannot
-- express next to it).
--
-- Common subset of Lua 5.1 and 5.4 (tests/lua runs it under busted).
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

local UUID = "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"
local UUID_LUA = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local PAGE_SIZE_MAX = 1000          -- pageSize: "Up to 1000"; 100 when not given
local STATUSES = {"DRAFT", "SUBMITTED", "AUTHORISED", "PAID", "VOIDED", "DELETED"}
local TYPES = {sales = "ACCREC", bills = "ACCPAY"}

local function str(v)
  v = data.value(v)
  if type(v) == "number" then return tostring(v) end
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function num(v)
  v = data.value(v)
  if type(v) == "number" then return v end
  if type(v) == "string" then return tonumber(v) end
  return nil
end

local function bool(v)
  v = data.value(v)
  if type(v) == "boolean" then return v end
  return nil
end

---------------------------------------------------------------------------
-- MS-JSON dates

-- Year, month, day of a count of days since 1970-01-01 (H. Hinnant's
-- civil_from_days), in plain arithmetic so negative days work too.
local function civil_from_days(z)
  z = z + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- "/Date(1552522535440+0000)/" → "2019-03-14T00:15:35.440Z" (or, with
-- date_only, "2019-03-14"). Epoch milliseconds are UTC whatever the offset
-- says. Anything else comes back as it was (an ISO string stays one), nil
-- for nil.
local function iso_date(v, date_only)
  v = data.value(v)
  if type(v) ~= "string" then return v end
  local ms = v:match("^/Date%((%-?%d+)[%+%-]?%d*%)/$")
  if not ms or #ms > 16 then
    if date_only and v:match("^%d%d%d%d%-%d%d%-%d%dT") then return v:sub(1, 10) end
    return v
  end
  ms = tonumber(ms)
  local secs = math.floor(ms / 1000)
  local frac = ms - secs * 1000
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local y, m, d = civil_from_days(days)
  if date_only then return ("%04d-%02d-%02d"):format(y, m, d) end
  local text = ("%04d-%02d-%02dT%02d:%02d:%02d"):format(y, m, d, math.floor(rem / 3600),
    math.floor(rem % 3600 / 60), rem % 60)
  if frac > 0 then text = text .. (".%03d"):format(frac) end
  return text .. "Z"
end

local function day(v) return iso_date(v, true) end
local function timestamp(v) return iso_date(v, false) end

local function today() return os.date("!%Y-%m-%d") end

-- "2024-05-01" → "DateTime(2024,05,01)" for a where condition.
local function where_date(d)
  local y, m, dd = d:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  return ("DateTime(%s,%s,%s)"):format(y, m, dd)
end

---------------------------------------------------------------------------
-- Requests and errors

local function validation_messages(body)
  local out = {}
  local function add(list)
    if type(list) ~= "table" then return end
    for _, e in ipairs(list) do
      local m = type(e) == "table" and str(e.Message) or nil
      if m and #out < 5 then out[#out + 1] = m end
    end
  end
  for _, el in ipairs(type(data.get(body, "Elements")) == "table" and body.Elements or {}) do
    if type(el) == "table" then add(el.ValidationErrors) end
  end
  return out
end

local API = {
  service = "Xero",
  message = function(body, resp)
    if type(body) ~= "table" then
      if type(resp.body) == "string" and resp.body ~= "" and #resp.body < 500 and not resp.body:find("<", 1, true) then
        return resp.body
      end
      return nil
    end
    local msg = str(body.Message) or str(body.Detail) or str(body.Title)
    local details = validation_messages(body)
    if #details > 0 then
      return (msg and msg .. ": " or "") .. table.concat(details, "; ")
    end
    return msg
  end,
  code = function(body)
    return type(body) == "table" and (str(body.Type) or str(body.Title)) or nil
  end,
  classify = function(resp)
    local problem = resp.headers and resp.headers["x-rate-limit-problem"]
    if resp.status == 429 then return "upstream_rate_limited", {rate_limit_problem = problem} end
    return nil
  end,
}

local function tenant(ctx)
  local settings = ctx.connection and ctx.connection.settings or {}
  local id = str(settings.tenant_id)
  if id == nil then
    return nil, sdk.errors.invalid_arguments("this Xero connection has no tenant_id setting (the organisation's " ..
      "id): connect it again with settings.tenant_id", "$")
  end
  if not id:match(UUID_LUA) then
    return nil, sdk.errors.invalid_arguments("the connection's tenant_id setting must be the organisation's id " ..
      "(a UUID)", "$")
  end
  return id
end

-- sdk.request with the tenant header and Accept: application/json.
local function xero(ctx, req)
  local tenant_id, terr = tenant(ctx)
  if not tenant_id then return nil, terr end
  local headers = {["xero-tenant-id"] = tenant_id, Accept = "application/json"}
  for k, v in pairs(req.headers or {}) do headers[k] = v end
  req.headers = headers
  return sdk.request(ctx, req, API)
end

---------------------------------------------------------------------------
-- Shaping results

local function contact_ref(c)
  if type(c) ~= "table" then return nil end
  local out = {id = str(c.ContactID), name = str(c.Name)}
  if next(out) == nil then return nil end
  return out
end

local function line_item(l)
  if type(l) ~= "table" then return nil end
  return {
    id = str(l.LineItemID), description = str(l.Description), quantity = num(l.Quantity),
    unit_amount = num(l.UnitAmount), line_amount = num(l.LineAmount), tax_amount = num(l.TaxAmount),
    tax_type = str(l.TaxType), account_code = str(l.AccountCode), item_code = str(l.ItemCode),
    discount_rate = num(l.DiscountRate), discount_amount = num(l.DiscountAmount),
  }
end

local function payment(p)
  if type(p) ~= "table" then return nil end
  return {id = str(p.PaymentID), date = day(p.Date), amount = num(p.Amount), reference = str(p.Reference)}
end

local function invoice(inv, full)
  if type(inv) ~= "table" then return nil end
  local status, due = str(inv.Status), day(inv.DueDate) or day(inv.DueDateString)
  local amount_due = num(inv.AmountDue)
  local kind = str(inv.Type)
  local out = {
    id = str(inv.InvoiceID),
    number = str(inv.InvoiceNumber),
    type = kind,
    kind = kind == "ACCREC" and "sales" or kind == "ACCPAY" and "bill" or nil,
    status = status,
    reference = str(inv.Reference),
    contact = contact_ref(inv.Contact),
    date = day(inv.Date) or day(inv.DateString),
    due_date = due,
    currency = str(inv.CurrencyCode),
    currency_rate = num(inv.CurrencyRate),
    line_amount_types = str(inv.LineAmountTypes),
    sub_total = num(inv.SubTotal),
    total_tax = num(inv.TotalTax),
    total = num(inv.Total),
    total_discount = num(inv.TotalDiscount),
    amount_due = amount_due,
    amount_paid = num(inv.AmountPaid),
    amount_credited = num(inv.AmountCredited),
    fully_paid_on = day(inv.FullyPaidOnDate),
    expected_payment_date = day(inv.ExpectedPaymentDate),
    planned_payment_date = day(inv.PlannedPaymentDate),
    sent_to_contact = bool(inv.SentToContact),
    has_attachments = bool(inv.HasAttachments),
    url = str(inv.Url),
    updated_at = timestamp(inv.UpdatedDateUTC),
  }
  if status == "AUTHORISED" and type(amount_due) == "number" and amount_due > 0 and type(due) == "string" then
    out.overdue = due < today()
  end
  local payments = data.map(type(inv.Payments) == "table" and inv.Payments or {}, payment)
  if #payments > 0 then out.payments = payments end
  local lines = type(inv.LineItems) == "table" and inv.LineItems or {}
  if full then
    out.lines = data.map(lines, line_item)
  elseif #lines > 0 then
    out.line_count = #lines
  end
  return out
end

local function phone(p)
  if type(p) ~= "table" then return nil end
  local number = str(p.PhoneNumber)
  if not number then return nil end
  local parts = {}
  if str(p.PhoneCountryCode) then parts[#parts + 1] = str(p.PhoneCountryCode) end
  if str(p.PhoneAreaCode) then parts[#parts + 1] = str(p.PhoneAreaCode) end
  parts[#parts + 1] = number
  return {type = str(p.PhoneType), number = table.concat(parts, " ")}
end

local function address(a)
  if type(a) ~= "table" then return nil end
  local out = {line1 = str(a.AddressLine1), line2 = str(a.AddressLine2), line3 = str(a.AddressLine3),
               line4 = str(a.AddressLine4), city = str(a.City), region = str(a.Region),
               postal_code = str(a.PostalCode), country = str(a.Country), attention_to = str(a.AttentionTo)}
  if next(out) == nil then return nil end
  out.type = str(a.AddressType)
  return out
end

local function balance(b)
  if type(b) ~= "table" then return nil end
  local out = {outstanding = num(b.Outstanding), overdue = num(b.Overdue)}
  if next(out) == nil then return nil end
  return out
end

local function contact(c)
  if type(c) ~= "table" then return nil end
  local out = {
    id = str(c.ContactID),
    name = str(c.Name),
    first_name = str(c.FirstName),
    last_name = str(c.LastName),
    email = str(c.EmailAddress),
    contact_number = str(c.ContactNumber),
    account_number = str(c.AccountNumber),
    company_number = str(c.CompanyNumber),
    status = str(c.ContactStatus),
    is_customer = bool(c.IsCustomer),
    is_supplier = bool(c.IsSupplier),
    tax_number = str(c.TaxNumber),
    default_currency = str(c.DefaultCurrency),
    website = str(c.Website),
    updated_at = timestamp(c.UpdatedDateUTC),
  }
  local phones = data.map(type(c.Phones) == "table" and c.Phones or {}, phone)
  if #phones > 0 then out.phones = phones end
  local addresses = data.map(type(c.Addresses) == "table" and c.Addresses or {}, address)
  if #addresses > 0 then out.addresses = addresses end
  local receivable, payable = balance(data.get(c, "Balances.AccountsReceivable")),
                              balance(data.get(c, "Balances.AccountsPayable"))
  if receivable or payable then out.balances = {receivable = receivable, payable = payable} end
  return out
end

-- One page of a list endpoint, walked with ferry.paginate's page-number
-- style: Xero's `pagination` block (pageCount) says whether there are more,
-- and without it a full page means there may be. One call reads one page
-- (max_pages = 1); {items (raw), page, page_size, page_count, item_count,
-- next_page} or nil, err.
local function list_page(ctx, path, query, headers, items, page, page_size)
  local body
  local got, err = paginate.collect{
    style = "pages", first = 1, start = page, page_size = page_size, max_pages = 1,
    items = items, total_pages = "pagination.pageCount",
    fetch = function(number)
      query.page, query.pageSize = number, page_size
      local ferr
      body, ferr = xero(ctx, {path = path, query = query, headers = headers})
      return body, ferr
    end,
  }
  if not got then return nil, err end
  local p = type(data.get(body, "pagination")) == "table" and body.pagination or {}
  return {items = got.items, page = num(p.page) or page, page_size = num(p.pageSize) or page_size,
          page_count = num(p.pageCount), item_count = num(p.itemCount), next_page = tonumber(got.next)}
end

---------------------------------------------------------------------------
-- Tools

local function order_text(field, descending)
  if not field then return nil end
  return field .. (descending and " DESC" or " ASC")
end

local function list_invoices(ctx, args)
  if args.date_from and args.date_to and args.date_to < args.date_from then
    return nil, sdk.errors.invalid_arguments("date_to is before date_from", "$.date_to")
  end
  local statuses = args.statuses
  if args.overdue then
    if statuses then
      return nil, sdk.errors.invalid_arguments("overdue picks the statuses itself (AUTHORISED): leave statuses out",
        "$.statuses")
    end
    statuses = {"AUTHORISED"}
  end
  local where = {}
  if args.type then where[#where + 1] = ('Type=="%s"'):format(TYPES[args.type]) end
  if args.date_from then where[#where + 1] = "Date>=" .. where_date(args.date_from) end
  if args.date_to then where[#where + 1] = "Date<=" .. where_date(args.date_to) end
  if args.due_from then where[#where + 1] = "DueDate>=" .. where_date(args.due_from) end
  if args.due_to then where[#where + 1] = "DueDate<=" .. where_date(args.due_to) end
  if args.overdue then
    where[#where + 1] = "AmountDue>0"
    where[#where + 1] = "DueDate<" .. where_date(args.as_of or today())
  end
  local query = {
    where = #where > 0 and table.concat(where, " AND ") or nil,
    Statuses = statuses and table.concat(statuses, ",") or nil,
    ContactIDs = args.contact_ids and table.concat(args.contact_ids, ",") or nil,
    InvoiceNumbers = args.invoice_numbers and table.concat(args.invoice_numbers, ",") or nil,
    searchTerm = args.search,
    order = order_text(args.order_by, args.descending),
    includeArchived = args.include_archived,
  }
  local headers = args.modified_since and {["If-Modified-Since"] = args.modified_since} or nil
  local out, err = list_page(ctx, "/Invoices", query, headers, "Invoices", args.page or 1, args.page_size or 100)
  if not out then return nil, err end
  out.invoices = data.map(out.items, function(x) return invoice(x, false) end)
  out.items = nil
  out.count = #out.invoices
  local due = 0
  for _, inv in ipairs(out.invoices) do due = due + (inv.amount_due or 0) end
  out.total_amount_due = due
  out.where = query.where
  return out
end

local function get_invoice(ctx, args)
  local body, err
  if args.invoice_id then
    body, err = xero(ctx, {path = sdk.http.path("/Invoices/{id}", {id = args.invoice_id})})
  else
    body, err = xero(ctx, {path = "/Invoices", query = {InvoiceNumbers = args.invoice_number, page = 1}})
  end
  if not body then return nil, err end
  local inv = data.get(body, "Invoices.1")
  if type(inv) ~= "table" then
    return nil, sdk.errors.new("not_found", "Xero has no invoice " .. (args.invoice_id or args.invoice_number))
  end
  return invoice(inv, true)
end

local function list_contacts(ctx, args)
  local where = {}
  if args.is_customer ~= nil then where[#where + 1] = "IsCustomer==" .. tostring(args.is_customer) end
  if args.is_supplier ~= nil then where[#where + 1] = "IsSupplier==" .. tostring(args.is_supplier) end
  local query = {
    where = #where > 0 and table.concat(where, " AND ") or nil,
    searchTerm = args.search,
    IDs = args.ids and table.concat(args.ids, ",") or nil,
    includeArchived = args.include_archived,
    order = order_text(args.order_by, args.descending),
  }
  local out, err = list_page(ctx, "/Contacts", query, nil, "Contacts", args.page or 1, args.page_size or 100)
  if not out then return nil, err end
  out.contacts = data.map(out.items, contact)
  out.items = nil
  out.count = #out.contacts
  return out
end

local function create_invoice(ctx, args)
  if args.due_date and args.date and args.due_date < args.date then
    return nil, sdk.errors.invalid_arguments("due_date is before date", "$.due_date")
  end
  local lines = {}
  for i, l in ipairs(args.lines) do
    if l.unit_amount == nil and l.line_amount == nil and l.quantity ~= nil then
      return nil, sdk.errors.invalid_arguments("a line with a quantity needs unit_amount or line_amount",
        ("$.lines[%d]"):format(i - 1))
    end
    lines[i] = {Description = l.description, Quantity = l.quantity, UnitAmount = l.unit_amount,
                LineAmount = l.line_amount, AccountCode = l.account_code, ItemCode = l.item_code,
                TaxType = l.tax_type, DiscountRate = l.discount_rate}
  end
  local inv = {
    Type = TYPES[args.type or "sales"],
    Contact = {ContactID = args.contact_id},
    LineItems = data.array(lines),
    Date = args.date,
    DueDate = args.due_date,
    Reference = args.reference,
    InvoiceNumber = args.invoice_number,
    Status = args.status or "DRAFT",
    LineAmountTypes = args.line_amount_types,
    CurrencyCode = args.currency,
  }
  local headers = ctx.request_id and {["Idempotency-Key"] = ("ferry-%s"):format(ctx.request_id):sub(1, 128)} or nil
  local body, err = xero(ctx, {method = "PUT", path = "/Invoices", headers = headers,
                               json = {Invoices = data.array{inv}}})
  if not body then return nil, err end
  local created = data.get(body, "Invoices.1")
  if type(created) ~= "table" then
    return nil, sdk.errors.new("upstream_error", "Xero answered without the created invoice")
  end
  -- With summarizeErrors=false Xero answers 200 and puts the errors on the invoice.
  if bool(created.HasErrors) then
    local msgs = {}
    for _, e in ipairs(type(created.ValidationErrors) == "table" and created.ValidationErrors or {}) do
      local m = type(e) == "table" and str(e.Message) or nil
      if m then msgs[#msgs + 1] = m end
    end
    return nil, sdk.errors.new("upstream_error", "Xero refused the invoice: " ..
      (#msgs > 0 and table.concat(msgs, "; ") or "validation errors"), {status = 200})
  end
  return invoice(created, true)
end

---------------------------------------------------------------------------
-- Schemas

local function uuid(what, opts)
  opts = opts or {}
  opts[1] = what
  opts.pattern = UUID
  return s.string(opts)
end
local function date_arg(what) return s.string{what, format = "date"} end
local page_arg = s.integer{"Page number, from 1 (default 1); next_page from an earlier call.", minimum = 1,
                           maximum = 100000}
local page_size_arg = s.integer{"Records per page (default 100, at most 1000).", minimum = 1,
                                maximum = PAGE_SIZE_MAX}

local line_arg = s.object{
  description = s.string{"Text on the line (at least one character).", minLength = 1, maxLength = 4000},
  quantity = s.number{"Quantity (default 1).", minimum = 0, maximum = 1e9},
  unit_amount = s.number{"Price per unit.", minimum = -1e12, maximum = 1e12},
  line_amount = s.number{"Line total, when quantity or unit_amount is left out (Xero computes the other).",
                         minimum = -1e12, maximum = 1e12},
  account_code = s.string{"Code of the revenue (or, for bills, expense) account, e.g. 200.", minLength = 1,
                          maxLength = 10},
  item_code = s.string{"Code of an inventory item.", minLength = 1, maxLength = 30},
  tax_type = s.string{"Tax type from the organisation's tax rates, e.g. OUTPUT2, NONE.", minLength = 1,
                      maxLength = 50},
  discount_rate = s.number{"Discount in percent (sales invoices only).", minimum = 0, maximum = 100},
}

---------------------------------------------------------------------------

return {
  slug = "xero",
  name = "Xero",
  category = "accounting",
  description = "A Xero organisation's sales invoices and bills (filter by status, type, dates, contact; " ..
                "overdue ones), one invoice with its lines and payments, contacts with balances, and new " ..
                "invoices.",
  base_url = "https://api.xero.com/api.xro/2.0",
  hosts = {"api.xero.com", "login.xero.com", "identity.xero.com"},
  auth = {
    type = "oauth2",
    authorize_url = "https://login.xero.com/identity/connect/authorize",
    token_url = "https://identity.xero.com/connect/token",
    revoke_url = "https://identity.xero.com/connect/revocation",
    scopes = {"openid", "profile", "email", "accounting.transactions.read", "accounting.transactions",
              "accounting.contacts.read", "accounting.settings.read", "offline_access"},
    settings = {"tenant_id"},
    instructions = "Sign in with Xero and allow ferry access to one organisation; ferry keeps the " ..
                   "organisation's id as the connection's tenant_id. An administrator first creates an app at " ..
                   "developer.xero.com/app/manage (Web app, ferry's /oauth/callback as redirect URI) and " ..
                   "registers its client id and secret with `ferry oauth set-client xero`. To import existing " ..
                   "tokens instead, POST /v1/connections with credentials {access_token, refresh_token} and " ..
                   "settings {tenant_id}: the tenantId that GET https://api.xero.com/connections lists for the " ..
                   "organisation.",
  },
  data_categories = {"financial"},
  docs_url = "https://developer.xero.com/documentation/api/accounting/invoices",
  rate_limits = {requests = 60, per = "1m"},

  -- Right after an OAuth sign-in the connection has no tenant yet: Xero's
  -- connections endpoint (at the API host's root, two levels above the
  -- accounting base URL) lists the organisations the user allowed; the
  -- first one becomes the tenant_id setting the engine keeps.
  check = function(ctx)
    local settings, learnt = nil, nil
    if str((ctx.connection.settings or {}).tenant_id) == nil then
      local list, lerr = sdk.request(ctx, {path = "../../connections", headers = {Accept = "application/json"}}, API)
      if not list then return nil, lerr end
      for _, t in ipairs(type(list) == "table" and list or {}) do
        local id = str(t.tenantId)
        if id and id:match(UUID_LUA) and (t.tenantType or "ORGANISATION") == "ORGANISATION" then
          learnt = id
          break
        end
      end
      if not learnt then
        return nil, sdk.errors.invalid_arguments("the Xero sign-in gave access to no organisation", "$")
      end
      settings = {tenant_id = learnt}
    end
    local req = {path = "/Organisation"}
    if learnt then req.headers = {["xero-tenant-id"] = learnt} end
    local body, err
    if learnt then
      req.headers.Accept = "application/json"
      body, err = sdk.request(ctx, req, API)
    else
      body, err = xero(ctx, req)
    end
    if not body then return nil, err end
    local org = data.get(body, "Organisations.1") or {}
    return {account_label = str(org.Name) or str(org.LegalName), settings = settings}
  end,

  tools = {
    list_invoices = {
      title = "List Xero invoices",
      description = "Sales invoices (type sales, ACCREC) and bills (type bills, ACCPAY), newest pages first as " ..
                    "Xero orders them unless order_by is given. Filter by statuses, type, contact, invoice " ..
                    "numbers, invoice date and due date ranges, text, or overdue = true (authorised, money " ..
                    "still due, due date passed). Each has number, contact, dates (YYYY-MM-DD), totals, amount " ..
                    "due and status; total_amount_due sums the page. next_page when there are more.",
      access = "read",
      input = s.object{
        statuses = s.array(s.enum(STATUSES), {"Only these statuses.", minItems = 1, maxItems = 6,
                                              uniqueItems = true}),
        type = s.enum({"sales", "bills"}, {"Sales invoices (ACCREC) or bills (ACCPAY); default both."}),
        overdue = s.boolean "Only authorised invoices with money due and a due date before today (or as_of).",
        as_of = date_arg "The day overdue is measured against (default today, UTC).",
        contact_ids = s.array(uuid "A contact's id.", {"Only invoices of these contacts.", minItems = 1,
                                                          maxItems = 50}),
        invoice_numbers = s.array(s.string{minLength = 1, maxLength = 255, pattern = "^[^,]+$"},
                                  {"Only these invoice numbers.", minItems = 1, maxItems = 50}),
        date_from = date_arg "Invoice date on or after (YYYY-MM-DD).",
        date_to = date_arg "Invoice date on or before (YYYY-MM-DD).",
        due_from = date_arg "Due date on or after (YYYY-MM-DD).",
        due_to = date_arg "Due date on or before (YYYY-MM-DD).",
        search = s.string{"Text to look for in invoice number and reference.", minLength = 1, maxLength = 200},
        modified_since = s.string{"Only invoices created or changed since (RFC 3339).", format = "date-time"},
        include_archived = s.boolean "Include archived invoices.",
        order_by = s.enum({"Date", "DueDate", "InvoiceNumber", "Total", "AmountDue", "UpdatedDateUTC"},
                          {"Sort field."}),
        descending = s.boolean "Sort descending (with order_by).",
        page = page_arg,
        page_size = page_size_arg,
      },
      run = list_invoices,
    },

    get_invoice = {
      title = "Get a Xero invoice",
      description = "One invoice or bill by id or by number, with its lines (description, quantity, unit " ..
                    "amount, account, tax), payments, totals, amount due and dates.",
      access = "read",
      input = s.object({
        invoice_id = uuid "The invoice's id (InvoiceID).",
        invoice_number = s.string{"The invoice number, e.g. INV-0042.", minLength = 1, maxLength = 255,
                                  pattern = "^[^,]+$"},
      }, {oneOf = {{required = {"invoice_id"}}, {required = {"invoice_number"}}}}),
      run = get_invoice,
    },

    list_contacts = {
      title = "List Xero contacts",
      description = "Contacts (customers and suppliers) with email, phones, addresses and their outstanding " ..
                    "and overdue balances. Filter by text, customer/supplier, ids. next_page when there are more.",
      access = "read",
      input = s.object{
        search = s.string{"Text to look for in name, first and last name, contact number and email.",
                          minLength = 1, maxLength = 200},
        is_customer = s.boolean "Only contacts that are (true) or are not (false) customers.",
        is_supplier = s.boolean "Only contacts that are (true) or are not (false) suppliers.",
        ids = s.array(uuid "A contact's id.", {"Only these contacts.", minItems = 1, maxItems = 50}),
        include_archived = s.boolean "Include archived contacts.",
        order_by = s.enum({"Name", "UpdatedDateUTC", "ContactNumber"}, {"Sort field (default Name)."}),
        descending = s.boolean "Sort descending (with order_by).",
        page = page_arg,
        page_size = page_size_arg,
      },
      run = list_contacts,
    },

    create_invoice = {
      title = "Create a Xero invoice",
      description = "Create a sales invoice (or, with type bills, a bill) for a contact, with line items. " ..
                    "It is a DRAFT unless status says SUBMITTED or AUTHORISED. Returns the new invoice.",
      access = "write",
      summary = "Create an invoice for {contact_id}",
      input = s.object{
        contact_id = uuid("The contact's id (from list_contacts).", {required = true}),
        lines = s.array(line_arg, {"Line items.", required = true, minItems = 1, maxItems = 500}),
        type = s.enum({"sales", "bills"}, {"sales (ACCREC, default) or bills (ACCPAY)."}),
        date = date_arg "Invoice date (default today in the organisation's time zone).",
        due_date = date_arg "Due date.",
        reference = s.string{"Reference shown on the invoice.", maxLength = 255},
        invoice_number = s.string{"Invoice number (default: Xero numbers it).", minLength = 1, maxLength = 255},
        status = s.enum({"DRAFT", "SUBMITTED", "AUTHORISED"}, {"Status to create it in (default DRAFT)."}),
        line_amount_types = s.enum({"Exclusive", "Inclusive", "NoTax"},
                                   {"Whether line amounts include tax (default Exclusive)."}),
        currency = s.string{"ISO 4217 currency code (default the organisation's).", pattern = "^[A-Z]{3}$"},
      },
      run = create_invoice,
    },
  },
}
