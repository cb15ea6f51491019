-- QuickBooks Online: invoices and customers of one company (realm), read
-- through QuickBooks' query language, and new invoices (with approval).
--
-- HTTP shapes follow the QuickBooks Online description in tests/specs
-- (ballerina-platform/openapi-connectors, openapi/quickbooks.online; Intuit
-- publishes none). Every path is under /v3/company/{realm-id}, the realm id
-- being the connection's `realm_id` setting; every operation takes
-- `Accept: application/json`:
--   query            GET  /v3/company/{realm}/query?query=...               ("Query Entity")
--   list_invoices    GET  /v3/company/{realm}/query?query=SELECT * FROM Invoice ...   ("Query Entity")
--   get_invoice      GET  /v3/company/{realm}/invoice/{invoice-id}          ("Read Invoice")
--   get_customer     GET  /v3/company/{realm}/customer/{customer-id}        ("Read Customer")
--   create_invoice   POST /v3/company/{realm}/invoice   (InvoiceCreateObject) ("Create or Update Invoice")
--   check            GET  /v3/company/{realm}/query?query=SELECT * FROM CompanyInfo
--                    (/companyinfo/{id} is not in the description; the query is)
-- The description declares no `minorversion` parameter, so none is sent
-- (Intuit serves minor version 75 to requests without one since 2025).
--
-- Queries: tools never take raw query text. `query` builds
--   SELECT * FROM <Entity> [WHERE a op v AND ...] [ORDERBY f ASC|DESC] STARTPOSITION n MAXRESULTS m
-- (or SELECT COUNT(*) ...) from structured arguments: the entity from an
-- enum of the description's entities, field names matching
-- ^Name(.Name)?$, operators from QuickBooks' own list (=, <, >, <=, >=, IN,
-- LIKE; the language has no OR, NOT or !=), and values quoted by the tool
-- (strings and numbers in single quotes, a quote escaped as \', booleans
-- bare). A value with a backslash or a control character is refused, so no
-- argument can end the literal and add clauses of its own.
--
-- Errors: Intuit's Fault bodies ({"Fault": {"Error": [{"Message", "Detail",
-- "code"}], "type"}}, sometimes lower-case, sometimes inside a 200) through
-- ferry.errors' QuickBooks preset: AUTHENTICATION / code 3200 → reconnect_required,
-- ThrottleExceeded (003001) and 429 → upstream_rate_limited.
--
-- Rate limit: "API calls are throttled at 500 requests per minute per
-- realmId, including batch requests", and at most 10 concurrent requests per
-- realm (Intuit Developer blog, 2016-08-08, "QuickBooks Online API throttling
-- changes"; developer.intuit.com → QuickBooks Online → Learn → REST API
-- features → Limits and throttles). One connection is one realm.
--
-- Common subset of Lua 5.1 and 5.4 (tests/lua runs it under busted).
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

local API = sdk.errors.quickbooks()
local ACCEPT = {Accept = "application/json"}

-- The entities the description has operations for.
local ENTITIES = {"Account", "Bill", "Customer", "Estimate", "Invoice", "Payment", "Vendor"}
local OPERATORS = {"=", "<", ">", "<=", ">=", "IN", "LIKE"}
-- A field name, or one step into a sub-object (MetaData.CreateTime); without
-- a group, so ferry.testing's validator can check it too. field_ok below
-- refuses a stray dot.
local FIELD_PATTERN = "^[A-Za-z][A-Za-z0-9]*[.]?[A-Za-z0-9]*$"
local MAX_RESULTS = 1000            -- QuickBooks' ceiling for MAXRESULTS

---------------------------------------------------------------------------
-- Small helpers

local function str(v)
  v = data.value(v)
  if v == nil then return nil end
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

-- A number as query text: integers without a fraction, others in full.
local function number_text(n)
  if n == math.floor(n) and math.abs(n) < 1e15 then return ("%d"):format(n) end
  return ("%.15g"):format(n)
end

-- Today's date in UTC (QuickBooks compares plain dates).
local function today()
  return os.date("!%Y-%m-%d")
end

-- {id, name} from a ReferenceType {value, name}.
local function ref(r)
  if type(r) ~= "table" then return nil end
  local id = str(r.value)
  if id == nil and str(r.name) == nil then return nil end
  return {id = id, name = str(r.name)}
end

local function address(a)
  if type(a) ~= "table" then return nil end
  local out = {
    line1 = str(a.Line1), line2 = str(a.Line2), line3 = str(a.Line3), line4 = str(a.Line4), line5 = str(a.Line5),
    city = str(a.City), region = str(a.CountrySubDivisionCode), postal_code = str(a.PostalCode),
    country = str(a.Country),
  }
  if next(out) == nil then return nil end
  return out
end

local function realm(ctx)
  local settings = ctx.connection and ctx.connection.settings or {}
  local id = str(settings.realm_id)
  if id == nil then
    return nil, sdk.errors.invalid_arguments("this QuickBooks connection has no realm_id setting (the company " ..
      "id): connect it again with settings.realm_id", "$")
  end
  if not id:match("^[0-9]+$") then
    return nil, sdk.errors.invalid_arguments("the connection's realm_id setting must be the company id's digits", "$")
  end
  return id
end

local function company_path(realm_id, template, values)
  values = values or {}
  values.realm = realm_id
  return sdk.http.path("/v3/company/{realm}" .. template, values)
end

---------------------------------------------------------------------------
-- Shaping results

local function invoice_status(balance, total, due_date, as_of)
  if type(balance) ~= "number" then return nil end
  if balance <= 0 then
    if total == 0 then return "zero" end
    return "paid"
  end
  if type(due_date) == "string" and due_date:match("^%d%d%d%d%-%d%d%-%d%d$") and due_date < (as_of or today()) then
    return "overdue"
  end
  if total ~= nil and balance < total then return "partially_paid" end
  return "open"
end

local function line_item(l)
  if type(l) ~= "table" then return nil end
  local detail = type(l.SalesItemLineDetail) == "table" and l.SalesItemLineDetail or {}
  local discount = type(l.DiscountLineDetail) == "table" and l.DiscountLineDetail or {}
  return {
    id = str(l.Id), line_number = num(l.LineNum), type = str(l.DetailType), description = str(l.Description),
    amount = num(l.Amount), item = ref(detail.ItemRef), quantity = num(detail.Qty), unit_price = num(detail.UnitPrice),
    service_date = str(detail.ServiceDate), tax_code = str(data.get(detail, "TaxCodeRef.value")),
    discount_percent = num(discount.DiscountPercent),
  }
end

local function invoice(inv, full)
  if type(inv) ~= "table" then return nil end
  local total, balance, due = num(inv.TotalAmt), num(inv.Balance), str(inv.DueDate)
  local out = {
    id = str(inv.Id),
    doc_number = str(inv.DocNumber),
    customer = ref(inv.CustomerRef),
    txn_date = str(inv.TxnDate),
    due_date = due,
    total = total,
    balance = balance,
    status = invoice_status(balance, total, due),
    currency = str(data.get(inv, "CurrencyRef.value")),
    exchange_rate = num(inv.ExchangeRate),
    home_total = num(inv.HomeTotalAmt),
    home_balance = num(inv.HomeBalance),
    deposit = num(inv.Deposit),
    total_tax = num(data.get(inv, "TxnTaxDetail.TotalTax")),
    email_status = str(inv.EmailStatus),
    print_status = str(inv.PrintStatus),
    bill_email = str(data.get(inv, "BillEmail.Address")),
    customer_memo = str(data.get(inv, "CustomerMemo.value")),
    private_note = str(inv.PrivateNote),
    sales_term = ref(inv.SalesTermRef),
    invoice_link = str(inv.InvoiceLink),
    created_at = str(data.get(inv, "MetaData.CreateTime")),
    updated_at = str(data.get(inv, "MetaData.LastUpdatedTime")),
    sync_token = str(inv.SyncToken),
  }
  local linked = data.map(type(inv.LinkedTxn) == "table" and inv.LinkedTxn or {}, function(t)
    if type(t) ~= "table" then return nil end
    return {id = str(t.TxnId), type = str(t.TxnType)}
  end)
  if #linked > 0 then out.linked = linked end
  local lines = type(inv.Line) == "table" and inv.Line or {}
  if full then
    out.lines = data.map(lines, line_item)
    out.bill_address = address(inv.BillAddr)
    out.ship_address = address(inv.ShipAddr)
    out.ship_date = str(inv.ShipDate)
    out.tracking_number = str(inv.TrackingNum)
  else
    local n = 0
    for _, l in ipairs(lines) do
      if type(l) == "table" and l.DetailType ~= "SubTotalLineDetail" then n = n + 1 end
    end
    out.line_count = n
  end
  return out
end

local function customer(c)
  if type(c) ~= "table" then return nil end
  return {
    id = str(c.Id),
    display_name = str(c.DisplayName),
    company_name = str(c.CompanyName),
    given_name = str(c.GivenName),
    family_name = str(c.FamilyName),
    fully_qualified_name = str(c.FullyQualifiedName),
    email = str(data.get(c, "PrimaryEmailAddr.Address")),
    phone = str(data.get(c, "PrimaryPhone.FreeFormNumber")),
    mobile = str(data.get(c, "Mobile.FreeFormNumber")),
    website = str(data.get(c, "WebAddr.URI")),
    balance = num(c.Balance),
    balance_with_jobs = num(c.BalanceWithJobs),
    currency = str(data.get(c, "CurrencyRef.value")),
    active = bool(c.Active),
    taxable = bool(c.Taxable),
    is_job = bool(c.Job),
    parent = ref(c.ParentRef),
    sales_term = ref(c.SalesTermRef),
    billing_address = address(c.BillAddr),
    shipping_address = address(c.ShipAddr),
    notes = str(c.Notes),
    created_at = str(data.get(c, "MetaData.CreateTime")),
    updated_at = str(data.get(c, "MetaData.LastUpdatedTime")),
    sync_token = str(c.SyncToken),
  }
end

local SHAPERS = {Invoice = function(x) return invoice(x, false) end, Customer = customer}

---------------------------------------------------------------------------
-- Building queries

-- A value as a query literal, or nil and why not.
local function literal(v)
  if type(v) == "boolean" then return v and "true" or "false" end
  if type(v) == "number" then return "'" .. number_text(v) .. "'" end
  if type(v) ~= "string" then return nil, "must be a string, number or boolean" end
  if v:find("\\", 1, true) then return nil, "may not contain a backslash" end
  if v:find("%c") then return nil, "may not contain control characters" end
  return "'" .. (v:gsub("'", "\\'")) .. "'"
end

local function field_ok(name)
  return name:match("^%a%w*$") ~= nil or name:match("^%a%w*%.%a%w*$") ~= nil
end

-- "Field op value" from {field, op, value | values}; nil, err for misuse.
local function condition(c, path)
  if not field_ok(c.field) then
    return nil, sdk.errors.invalid_arguments("field must be a name or Name.Name", path .. ".field")
  end
  if c.op == "IN" then
    if c.values == nil or c.value ~= nil then
      return nil, sdk.errors.invalid_arguments("IN takes values (a list), not value", path)
    end
    local parts = {}
    for i, v in ipairs(c.values) do
      local text, why = literal(v)
      if not text then return nil, sdk.errors.invalid_arguments(("value %s"):format(why), path .. ".values[" ..
        (i - 1) .. "]") end
      parts[i] = text
    end
    return c.field .. " IN (" .. table.concat(parts, ", ") .. ")"
  end
  if c.value == nil or c.values ~= nil then
    return nil, sdk.errors.invalid_arguments(c.op .. " takes value, not values", path)
  end
  if c.op == "LIKE" and type(c.value) ~= "string" then
    return nil, sdk.errors.invalid_arguments("LIKE compares with a string (% matches any text)", path .. ".value")
  end
  if type(c.value) == "boolean" and c.op ~= "=" then
    return nil, sdk.errors.invalid_arguments("a boolean can only be compared with =", path .. ".op")
  end
  local text, why = literal(c.value)
  if not text then return nil, sdk.errors.invalid_arguments("value " .. why, path .. ".value") end
  return c.field .. " " .. c.op .. " " .. text
end

-- The query text from {entity, where, extra, order_by, descending, count_only},
-- without its page (paged adds STARTPOSITION and MAXRESULTS).
local function build_query(q)
  local parts = {q.count_only and "SELECT COUNT(*) FROM" or "SELECT * FROM", q.entity}
  local conds = {}
  for i, c in ipairs(q.where or {}) do
    local text, err = condition(c, ("$.where[%d]"):format(i - 1))
    if not text then return nil, err end
    conds[i] = text
  end
  for _, text in ipairs(q.extra or {}) do conds[#conds + 1] = text end
  if #conds > 0 then parts[#parts + 1] = "WHERE " .. table.concat(conds, " AND ") end
  if q.count_only then return table.concat(parts, " ") end
  if q.order_by then
    if not field_ok(q.order_by) then
      return nil, sdk.errors.invalid_arguments("order_by must be a name or Name.Name", "$.order_by")
    end
    parts[#parts + 1] = "ORDERBY " .. q.order_by .. (q.descending and " DESC" or " ASC")
  end
  return table.concat(parts, " ")
end

local function paged(text, start, max)
  return ("%s STARTPOSITION %d MAXRESULTS %d"):format(text, start, max)
end

local function run_query(ctx, realm_id, text)
  return sdk.request(ctx, {path = company_path(realm_id, "/query"), query = {query = text}, headers = ACCEPT}, API)
end

-- One page of a query, walked with ferry.paginate's offset style (1-based
-- STARTPOSITION, a full page of MAXRESULTS meaning there may be more):
-- {items (shaped), count, start_position, max_results, next_start_position,
-- query} or nil, err. One call reads one page (max_pages = 1); its next
-- offset is where the agent's next call starts.
local function query_page(ctx, realm_id, text, entity, start, max, shape)
  local sent, response
  local got, err = paginate.collect{
    style = "offset", first = 1, start = start, page_size = max, max_pages = 1,
    items = function(body)
      local raw = data.get(body, "QueryResponse." .. entity)
      return type(raw) == "table" and raw or {}
    end,
    fetch = function(offset)
      sent = paged(text, offset, max)
      local body, ferr = run_query(ctx, realm_id, sent)
      response = body
      return body, ferr
    end,
  }
  if not got then return nil, err end
  local qr = data.get(response, "QueryResponse")
  if type(qr) ~= "table" then qr = {} end
  local items = data.map(got.items, shape or function(x)
    if type(x) ~= "table" then return nil end
    return x
  end)
  return {items = items, count = #items, start_position = num(qr.startPosition) or start,
          max_results = num(qr.maxResults) or max, next_start_position = tonumber(got.next), query = sent}
end

---------------------------------------------------------------------------
-- Tools

local function query(ctx, args)
  local realm_id, rerr = realm(ctx)
  if not realm_id then return nil, rerr end
  if args.count_only and (args.order_by or args.start_position or args.max_results) then
    return nil, sdk.errors.invalid_arguments("count_only takes no order_by, start_position or max_results", "$")
  end
  local text, qerr = build_query{entity = args.entity, where = args.where, order_by = args.order_by,
                                  descending = args.descending, count_only = args.count_only}
  if not text then return nil, qerr end
  if args.count_only then
    local body, err = run_query(ctx, realm_id, text)
    if not body then return nil, err end
    return {entity = args.entity, query = text, total_count = num(data.get(body, "QueryResponse.totalCount")) or 0}
  end
  local page, err = query_page(ctx, realm_id, text, args.entity, args.start_position or 1, args.max_results or 100,
                               SHAPERS[args.entity])
  if not page then return nil, err end
  page.entity = args.entity
  return page
end

local function list_invoices(ctx, args)
  local realm_id, rerr = realm(ctx)
  if not realm_id then return nil, rerr end
  local as_of = args.as_of or today()
  local extra = {}
  local status = args.status or "any"
  if status == "unpaid" then
    extra[#extra + 1] = "Balance > '0'"
  elseif status == "overdue" then
    extra[#extra + 1] = "Balance > '0'"
    extra[#extra + 1] = "DueDate < '" .. as_of .. "'"
  elseif status == "paid" then
    extra[#extra + 1] = "Balance = '0'"
  end
  if args.customer_id then extra[#extra + 1] = "CustomerRef = " .. literal(args.customer_id) end
  if args.from_date then extra[#extra + 1] = "TxnDate >= '" .. args.from_date .. "'" end
  if args.to_date then extra[#extra + 1] = "TxnDate <= '" .. args.to_date .. "'" end
  local order = status == "overdue" and "DueDate" or "TxnDate"
  local text = build_query{entity = "Invoice", extra = extra, order_by = order, descending = status ~= "overdue"}
  local page, err = query_page(ctx, realm_id, text, "Invoice", args.start_position or 1, args.limit or 50,
                               function(x) return invoice(x, false) end)
  if not page then return nil, err end
  for _, inv in ipairs(page.items) do inv.status = invoice_status(inv.balance, inv.total, inv.due_date, as_of) end
  local total_balance = 0
  for _, inv in ipairs(page.items) do total_balance = total_balance + (inv.balance or 0) end
  return {invoices = page.items, count = page.count, total_balance = total_balance, as_of = as_of,
          start_position = page.start_position, next_start_position = page.next_start_position, query = page.query}
end

local function get_invoice(ctx, args)
  local realm_id, rerr = realm(ctx)
  if not realm_id then return nil, rerr end
  local body, err = sdk.request(ctx, {
    path = company_path(realm_id, "/invoice/{id}", {id = args.invoice_id}), headers = ACCEPT,
  }, API)
  if not body then return nil, err end
  return invoice(data.get(body, "Invoice") or {}, true)
end

local function get_customer(ctx, args)
  local realm_id, rerr = realm(ctx)
  if not realm_id then return nil, rerr end
  local body, err = sdk.request(ctx, {
    path = company_path(realm_id, "/customer/{id}", {id = args.customer_id}), headers = ACCEPT,
  }, API)
  if not body then return nil, err end
  return customer(data.get(body, "Customer") or {})
end

local function round2(n) return math.floor(n * 100 + 0.5) / 100 end

-- A SalesItemLine (or DescriptionOnly line) from the tool's line.
local function invoice_line(l, i)
  local path = ("$.lines[%d]"):format(i - 1)
  local amount = l.amount
  if amount == nil and l.quantity ~= nil and l.unit_price ~= nil then amount = round2(l.quantity * l.unit_price) end
  if amount == nil then
    if l.item_id or l.quantity or l.unit_price or l.service_date then
      return nil, sdk.errors.invalid_arguments("a line needs amount, or quantity and unit_price", path)
    end
    return {DetailType = "DescriptionOnly", Description = l.description, DescriptionLineDetail = {}}
  end
  if l.quantity ~= nil and l.unit_price ~= nil and l.amount ~= nil and
     math.abs(round2(l.quantity * l.unit_price) - l.amount) > 0.005 then
    return nil, sdk.errors.invalid_arguments("amount must equal quantity × unit_price", path .. ".amount")
  end
  local detail = {Qty = l.quantity, UnitPrice = l.unit_price, ServiceDate = l.service_date,
                  ItemRef = l.item_id and {value = l.item_id} or nil,
                  TaxCodeRef = l.tax_code and {value = l.tax_code} or nil}
  return {DetailType = "SalesItemLineDetail", Amount = amount, Description = l.description,
          SalesItemLineDetail = detail}
end

local function create_invoice(ctx, args)
  local realm_id, rerr = realm(ctx)
  if not realm_id then return nil, rerr end
  local lines = {}
  local has_amount = false
  for i, l in ipairs(args.lines) do
    local line, lerr = invoice_line(l, i)
    if not line then return nil, lerr end
    if line.Amount then has_amount = true end
    lines[i] = line
  end
  if not has_amount then
    return nil, sdk.errors.invalid_arguments("at least one line needs an amount", "$.lines")
  end
  if args.due_date and args.txn_date and args.due_date < args.txn_date then
    return nil, sdk.errors.invalid_arguments("due_date is before txn_date", "$.due_date")
  end
  local body = {
    CustomerRef = {value = args.customer_id},
    Line = data.array(lines),
    TxnDate = args.txn_date,
    DueDate = args.due_date,
    DocNumber = args.doc_number,
    PrivateNote = args.private_note,
    CustomerMemo = args.customer_memo and {value = args.customer_memo} or nil,
    BillEmail = args.bill_email and {Address = args.bill_email} or nil,
    CurrencyRef = args.currency and {value = args.currency} or nil,
    SalesTermRef = args.sales_term_id and {value = args.sales_term_id} or nil,
  }
  local created, err = sdk.request(ctx, {method = "POST", path = company_path(realm_id, "/invoice"),
                                         headers = ACCEPT, json = body}, API)
  if not created then return nil, err end
  return invoice(data.get(created, "Invoice") or {}, true)
end

---------------------------------------------------------------------------
-- Schemas

local id_arg = function(what)
  return s.string{what, required = true, minLength = 1, maxLength = 64, pattern = "^[0-9A-Za-z_-]+$"}
end
local date_arg = function(what) return s.string{what, format = "date"} end
local value_types = {"string", "number", "boolean"}

local where_arg = s.array(s.object{
  field = s.string{"Field name, e.g. DisplayName, TotalAmt, Balance, DueDate, TxnDate, CustomerRef, Active, " ..
                   "MetaData.LastUpdatedTime. Only fields QuickBooks marks filterable work.", required = true,
                   pattern = FIELD_PATTERN, maxLength = 64},
  op = s.enum(OPERATORS, {"Comparison: =, <, >, <=, >=, IN (with values), LIKE (with value; % matches any " ..
                          "text, e.g. 'Acme%').", required = true}),
  value = {type = value_types, description = "Value to compare with: text, a number or a boolean. Dates as " ..
           "YYYY-MM-DD; references (CustomerRef) by id."},
  values = s.array({type = value_types}, {"Values for IN.", minItems = 1, maxItems = 100}),
}, {"Conditions that must all hold (QuickBooks has no OR).", maxItems = 10})

local line_arg = s.object{
  amount = s.number{"Line amount (quantity × unit price). Computed from quantity and unit_price when left out.",
                    minimum = -1e12, maximum = 1e12},
  description = s.string{"Text on the line. A line with only a description is a description-only line.",
                         maxLength = 4000},
  item_id = s.string{"Id of the product/service Item (query entity Item is not offered: ask the user, or leave " ..
                     "out for QuickBooks' default item).", minLength = 1, maxLength = 64, pattern = "^[0-9A-Za-z_-]+$"},
  quantity = s.number{"Quantity.", minimum = 0, maximum = 1e9},
  unit_price = s.number{"Price per unit.", minimum = -1e12, maximum = 1e12},
  service_date = date_arg "Date the service was performed (YYYY-MM-DD).",
  tax_code = s.string{"Tax code id (US: TAX or NON).", minLength = 1, maxLength = 32},
}

---------------------------------------------------------------------------

return {
  slug = "quickbooks",
  name = "QuickBooks Online",
  category = "accounting",
  description = "A QuickBooks Online company's invoices and customers: list unpaid or overdue invoices, read one " ..
                "invoice or customer, query accounts, bills, estimates, payments and vendors, and create invoices.",
  base_url = "https://quickbooks.api.intuit.com",
  hosts = {"quickbooks.api.intuit.com", "sandbox-quickbooks.api.intuit.com", "appcenter.intuit.com",
           "oauth.platform.intuit.com", "developer.api.intuit.com"},
  auth = {
    type = "oauth2",
    authorize_url = "https://appcenter.intuit.com/connect/oauth2",
    token_url = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
    revoke_url = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
    scopes = {"com.intuit.quickbooks.accounting"},
    settings = {"realm_id"},
    -- Intuit sends the chosen company's id with the browser, as realmId.
    callback_settings = {realm_id = "realmId"},
    instructions = "Sign in with Intuit and pick the QuickBooks company to connect; ferry keeps the company id " ..
                   "(realmId) as the connection's realm_id. An administrator first creates an app on " ..
                   "developer.intuit.com (Dashboard → Create an app → QuickBooks Online and Payments, scope " ..
                   "com.intuit.quickbooks.accounting, ferry's /oauth/callback as redirect URI under Keys & OAuth) " ..
                   "and registers its production keys with `ferry oauth set-client quickbooks`. To import existing " ..
                   "tokens instead, POST /v1/connections with credentials {access_token, refresh_token} and " ..
                   "settings {realm_id}; the company id is shown in QuickBooks under Settings → Account and " ..
                   "settings → Billing & subscription.",
  },
  data_categories = {"financial"},
  docs_url = "https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/invoice",
  rate_limits = {requests = 500, per = "1m"},

  check = function(ctx)
    local realm_id, rerr = realm(ctx)
    if not realm_id then return nil, rerr end
    local body, err = run_query(ctx, realm_id, "SELECT * FROM CompanyInfo")
    if not body then return nil, err end
    local info = data.get(body, "QueryResponse.CompanyInfo.1") or {}
    return {account_label = str(info.CompanyName) or str(info.LegalName)}
  end,

  tools = {
    query = {
      title = "Query QuickBooks records",
      description = "Read QuickBooks records of one type with conditions, built into a QuickBooks query " ..
                    "(SELECT * FROM <entity> WHERE ... ORDERBY ... STARTPOSITION ... MAXRESULTS ...; the text " ..
                    "sent is returned as `query`). Invoices and customers come back shaped like list_invoices " ..
                    "and get_customer; other entities as QuickBooks returns them. When a full page comes back, " ..
                    "next_start_position is where the next page starts. count_only returns just the number " ..
                    "of matches.",
      access = "read",
      input = s.object{
        entity = s.enum(ENTITIES, {"The record type.", required = true}),
        where = where_arg,
        order_by = s.string{"Field to sort by, e.g. TxnDate, DisplayName, MetaData.LastUpdatedTime.",
                            pattern = FIELD_PATTERN, maxLength = 64},
        descending = s.boolean "Sort in descending order (with order_by).",
        start_position = s.integer{"1-based position of the first record (default 1).", minimum = 1},
        max_results = s.integer{"How many records (default 100, at most 1000).", minimum = 1,
                                maximum = MAX_RESULTS},
        count_only = s.boolean "Return only the number of matching records.",
      },
      run = query,
    },

    list_invoices = {
      title = "List QuickBooks invoices",
      description = "Invoices with their customer, dates, total, open balance and a status (open, " ..
                    "partially_paid, overdue, paid). status = unpaid keeps those with a balance, overdue " ..
                    "those with a balance past their due date (as of today, UTC, or as_of). Newest first; " ..
                    "overdue ones by due date, oldest first. total_balance sums the listed balances.",
      access = "read",
      input = s.object{
        status = s.enum({"any", "unpaid", "overdue", "paid"}, {"Which invoices (default any)."}),
        customer_id = s.string{"Only this customer's invoices (the customer's id).", minLength = 1,
                               maxLength = 64, pattern = "^[0-9A-Za-z_-]+$"},
        from_date = date_arg "Only invoices dated on or after this day (YYYY-MM-DD).",
        to_date = date_arg "Only invoices dated on or before this day (YYYY-MM-DD).",
        as_of = date_arg "The day overdue is measured against (default today, UTC).",
        limit = s.integer{"How many invoices (default 50, at most 1000).", minimum = 1, maximum = MAX_RESULTS},
        start_position = s.integer{"next_start_position from an earlier call, for the next page.", minimum = 1},
      },
      run = list_invoices,
    },

    get_invoice = {
      title = "Get a QuickBooks invoice",
      description = "One invoice by id with its lines (description, item, quantity, unit price, amount), " ..
                    "customer, dates, total, balance, status, addresses and linked payments.",
      access = "read",
      input = s.object{invoice_id = id_arg "The invoice's id (Id, not its DocNumber)."},
      run = get_invoice,
    },

    get_customer = {
      title = "Get a QuickBooks customer",
      description = "One customer by id: names, email, phones, addresses, open balance, currency and whether " ..
                    "it is active.",
      access = "read",
      input = s.object{customer_id = id_arg "The customer's id."},
      run = get_customer,
    },

    create_invoice = {
      title = "Create a QuickBooks invoice",
      description = "Create an invoice for a customer with one or more lines. A line has an amount (or " ..
                    "quantity and unit_price), optionally an item and a description. Returns the new invoice.",
      access = "write",
      summary = "Create an invoice for {customer_id}",
      input = s.object{
        customer_id = id_arg "The customer's id (from query on Customer or get_customer).",
        lines = s.array(line_arg, {"The invoice lines.", required = true, minItems = 1, maxItems = 250}),
        txn_date = date_arg "Invoice date (default today).",
        due_date = date_arg "Due date (default: from the customer's terms).",
        doc_number = s.string{"Invoice number (default: QuickBooks numbers it).", minLength = 1, maxLength = 21},
        customer_memo = s.string{"Message to the customer, shown on the invoice.", maxLength = 1000},
        private_note = s.string{"Internal note, not shown to the customer.", maxLength = 4000},
        bill_email = s.string{"Email address the invoice is for.", format = "email", maxLength = 100},
        currency = s.string{"ISO 4217 currency code (companies with multicurrency).", pattern = "^[A-Z]{3}$"},
        sales_term_id = s.string{"Id of the payment terms (Term).", minLength = 1, maxLength = 64,
                                 pattern = "^[0-9A-Za-z_-]+$"},
      },
      run = create_invoice,
    },
  },
}
