-- HubSpot CRM contacts.
--
-- HTTP shapes follow HubSpot's OpenAPI description "CRM Contacts v3"
-- (HubSpot-public-api-spec-collection, PublicApiSpecs/CRM/Contacts/.../v3/contacts.json):
--   search_contacts   POST /crm/v3/objects/contacts/search   (PublicObjectSearchRequest)
--   get_contact       GET  /crm/v3/objects/contacts/{contactId}
--   create_contact    POST /crm/v3/objects/contacts          (SimplePublicObjectInputForCreate)
--   check             GET  /crm/v3/objects/contacts?limit=1
-- Every operation takes an OAuth2-style bearer token; service keys and
-- private app access tokens are sent the same way (Authorization: Bearer).
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

local API = {service = "HubSpot", message = {"message"}, code = {"category"}}
local CONTACTS = "/crm/v3/objects/contacts"
local SEARCH_PAGE_MAX = 200        -- PublicObjectSearchRequest.limit: "up to 200 objects"

local DEFAULT_PROPERTIES = {
  "email", "firstname", "lastname", "phone", "company", "jobtitle", "lifecyclestage",
  "createdate", "lastmodifieddate",
}

local OPERATORS = {
  "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
  "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
}

-- Contact properties create_contact takes as arguments of their own
-- (HubSpot's default contact properties); others go in `properties`.
local NAMED_FIELDS = {"email", "firstname", "lastname", "phone", "company", "jobtitle", "website", "lifecyclestage"}

---------------------------------------------------------------------------
-- Shaping results

-- {companies = {"12", "34"}} from HubSpot's {companies = {results = {{id, type}...}}}.
local function association_ids(assoc)
  if type(assoc) ~= "table" then return nil end
  local out = {}
  for object_type, collection in pairs(assoc) do
    local ids, seen = data.array(), {}
    for _, link in ipairs(data.get(collection, "results") or {}) do
      local id = data.value(link.id)
      if id ~= nil and not seen[id] then
        seen[id] = true
        ids[#ids + 1] = id
      end
    end
    out[object_type] = ids
  end
  return out
end

local function contact(obj)
  return {
    id = data.value(obj.id),
    properties = data.compact(obj.properties) or {},
    created_at = data.value(obj.createdAt),
    updated_at = data.value(obj.updatedAt),
    archived = data.value(obj.archived),
    url = data.value(obj.url),
    associations = association_ids(data.value(obj.associations)),
  }
end

---------------------------------------------------------------------------
-- Requests

-- HubSpot's Filter from the tool's {property, operator, value, values, high_value}.
local function hubspot_filter(f, i)
  local path = ("$.filters[%d]"):format(i - 1)
  if f.operator == "BETWEEN" and (f.value == nil or f.high_value == nil) then
    return nil, sdk.errors.invalid_arguments("BETWEEN needs value (low end) and high_value", path)
  end
  if (f.operator == "IN" or f.operator == "NOT_IN") and f.values == nil then
    return nil, sdk.errors.invalid_arguments(f.operator .. " needs values", path)
  end
  local needs_value = not (f.operator == "HAS_PROPERTY" or f.operator == "NOT_HAS_PROPERTY" or
                           f.operator == "BETWEEN" or f.operator == "IN" or f.operator == "NOT_IN")
  if needs_value and f.value == nil then
    return nil, sdk.errors.invalid_arguments(f.operator .. " needs value", path)
  end
  return {propertyName = f.property, operator = f.operator, value = f.value, values = f.values,
          highValue = f.high_value}
end

local function filter_groups(filters)
  if not filters or #filters == 0 then return data.array() end
  local out = {}
  for i, f in ipairs(filters) do
    local hf, err = hubspot_filter(f, i)
    if not hf then return nil, err end
    out[i] = hf
  end
  return data.array{{filters = out}}
end

local function search(ctx, args)
  local groups, err = filter_groups(args.filters)
  if not groups then return nil, err end
  local properties = args.properties or DEFAULT_PROPERTIES
  local total
  local got, perr = paginate.collect{
    limit = args.limit or 20,
    start = args.cursor,
    items = "results",
    next = "paging.next.after",
    fetch = function(cursor, remaining)
      local body, ferr = sdk.request(ctx, {method = "POST", path = CONTACTS .. "/search", json = {
        query = args.query,
        filterGroups = groups,
        properties = data.array(properties),
        sorts = data.array(),
        limit = math.min(remaining, SEARCH_PAGE_MAX),
        after = cursor and tostring(cursor) or "0",   -- required by the spec; "0" is the first page
      }}, API)
      if body and total == nil then total = data.value(body.total) end
      return body, ferr
    end,
  }
  if not got then return nil, perr end
  return {total = total, contacts = data.map(got.items, contact), next_cursor = got.next}
end

local function get_contact(ctx, args)
  local obj, err = sdk.request(ctx, {
    path = sdk.http.path(CONTACTS .. "/{contactId}", {contactId = args.contact_id}),
    query = {
      properties = args.properties or DEFAULT_PROPERTIES,
      associations = args.associations,
      idProperty = args.id_property,
    },
  }, API)
  if not obj then return nil, err end
  return contact(obj)
end

local function create_contact(ctx, args)
  local properties = {}
  for name, value in pairs(args.properties or {}) do properties[name] = value end
  for _, name in ipairs(NAMED_FIELDS) do
    if args[name] ~= nil then properties[name] = args[name] end
  end
  local obj, err = sdk.request(ctx, {method = "POST", path = CONTACTS, json = {
    properties = properties,
    associations = data.array(),
  }}, API)
  if not obj then return nil, err end
  return contact(obj)
end

---------------------------------------------------------------------------
-- Schemas

local properties_arg = s.array(s.string{minLength = 1}, {
  "Internal names of the properties to return (default: " .. table.concat(DEFAULT_PROPERTIES, ", ") .. ").",
  minItems = 1, maxItems = 100,
})

local function text(description) return s.string{description, minLength = 1} end

local create_input = s.object({
  email = s.string{"Email address.", format = "email"},
  firstname = text "First name.",
  lastname = text "Last name.",
  phone = text "Phone number.",
  company = text "Company name (the contact's own property, not an associated company record).",
  jobtitle = text "Job title.",
  website = text "Website URL.",
  lifecyclestage = text("Lifecycle stage: subscriber, lead, marketingqualifiedlead, salesqualifiedlead, " ..
                        "opportunity, customer, evangelist, other, or a custom stage's id."),
  properties = s.map(s.string(), "Other properties by internal name (custom properties included)."),
}, {anyOf = {{required = {"email"}}, {required = {"firstname"}}, {required = {"lastname"}}}})

---------------------------------------------------------------------------

return {
  slug = "hubspot",
  name = "HubSpot",
  category = "crm",
  description = "Contacts in HubSpot CRM: search them, read one with its associations, create new ones.",
  base_url = "https://api.hubapi.com",
  hosts = {"api.hubapi.com"},
  auth = {
    type = "api_key", field = "token", header = "Authorization", prefix = "Bearer ",
    instructions = "In HubSpot, go to Development → Keys → Service keys, create a key with the " ..
                   "crm.objects.contacts.read and crm.objects.contacts.write scopes, and paste it here " ..
                   "(an existing private app's access token works too).",
  },
  data_categories = {"crm"},
  docs_url = "https://developers.hubspot.com/docs/api/crm/contacts",

  -- A cheap authenticated read: proves the token works and can read contacts.
  check = function(ctx)
    local body, err = sdk.request(ctx, {path = CONTACTS, query = {limit = 1, archived = false}}, API)
    if not body then return nil, err end
    return {}
  end,

  tools = {
    search_contacts = {
      title = "Search HubSpot contacts",
      description = "Find contacts by free text (name, email, phone, company) and/or property filters. " ..
                    "Filters all have to match. Returns the contacts with the requested properties, the " ..
                    "total number of matches and next_cursor when there are more.",
      access = "read",
      input = s.object{
        query = s.string{"Text to look for in the default searchable properties.", minLength = 1,
                         maxLength = 3000},
        filters = s.array(s.object({
          property = s.string{"Internal property name, e.g. email, lifecyclestage, createdate.", required = true,
                              minLength = 1},
          operator = s.enum(OPERATORS, {required = true, "Comparison. HAS_PROPERTY and NOT_HAS_PROPERTY " ..
                            "take no value; BETWEEN takes value and high_value; IN and NOT_IN take values."}),
          value = s.string("Value to compare with. Dates and times are epoch milliseconds or YYYY-MM-DD."),
          values = s.array(s.string(), {"Values for IN and NOT_IN.", minItems = 1, maxItems = 100}),
          high_value = s.string("Upper bound for BETWEEN."),
        }, "One condition."), {"Conditions that must all hold.", minItems = 1, maxItems = 6}),
        properties = properties_arg,
        limit = s.integer{"How many contacts to return (default 20).", minimum = 1, maximum = 500},
        cursor = s.string{"next_cursor from an earlier call, to get the following contacts.", minLength = 1},
      },
      run = search,
    },

    get_contact = {
      title = "Get a HubSpot contact",
      description = "Read one contact by its id (or by email with id_property = \"email\"), with the " ..
                    "requested properties and the ids of associated records.",
      access = "read",
      input = s.object{
        contact_id = s.string{"The contact's id (hs_object_id), or the value of id_property.", required = true,
                              minLength = 1, maxLength = 254},
        id_property = s.string{"A unique property contact_id holds instead of the id, e.g. email.",
                               minLength = 1},
        properties = properties_arg,
        associations = s.array(s.string{minLength = 1}, {
          "Object types whose associated ids to return, e.g. companies, deals, tickets.", maxItems = 20,
        }),
      },
      run = get_contact,
    },

    create_contact = {
      title = "Create a HubSpot contact",
      description = "Create a contact. Give at least an email or a name; other properties by internal " ..
                    "name in properties. Fails if a contact with the same email exists.",
      access = "write",
      input = create_input,
      run = create_contact,
    },
  },
}
