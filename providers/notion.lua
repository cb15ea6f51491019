-- Notion: search, read pages, query data sources (databases).
--
-- HTTP shapes follow the OpenAPI description shipped with Notion's MCP
-- server (makenotion/notion-mcp-server, scripts/notion-openapi.json), the
-- "2025-09-03 - Data Source Edition":
--   search              POST /v1/search                               (post-search)
--   get_page            GET  /v1/pages/{page_id}                      (retrieve-a-page)
--   query_data_source   POST /v1/data_sources/{data_source_id}/query  (query-data-source)
--   check               GET  /v1/users/me                             (get-self)
-- Every request carries Notion-Version: 2025-09-03 (the spec's notionVersion
-- parameter; the real API requires it). Lists page with start_cursor and
-- page_size (at most 100), answering next_cursor and has_more.
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

local API = {service = "Notion", message = {"message"}, code = {"code"}}
local HEADERS = {["Notion-Version"] = "2025-09-03"}
local PAGE_MAX = 100

local function request(ctx, req)
  req.headers = HEADERS
  return sdk.request(ctx, req, API)
end

---------------------------------------------------------------------------
-- Shaping results: Notion's rich objects become plain values.

local function plain_text(rich)
  if type(rich) ~= "table" then return nil end
  local parts = {}
  for _, piece in ipairs(rich) do
    local text = data.get(piece, "plain_text") or data.get(piece, "text.content")
    if type(text) == "string" then parts[#parts + 1] = text end
  end
  return table.concat(parts)
end

local function user_name(u) return data.get(u, "name") or data.get(u, "id") end

local function file_link(f)
  return {name = data.get(f, "name"), url = data.get(f, "file.url") or data.get(f, "external.url")}
end

-- A decoded JSON object to iterate ({} for anything else).
local function members(t) return type(t) == "table" and t or {} end

-- The member named by an object's own "type" ({type = "number", number = 3} → 3).
local function typed_value(v)
  local kind = data.get(v, "type")
  if type(kind) ~= "string" then return nil end
  return data.get(v, {kind})
end

-- A page property's value, by its type; unknown types keep Notion's own value.
local simplify
local VALUE_OF = {
  title = plain_text,
  rich_text = plain_text,
  select = function(v) return data.get(v, "name") end,
  status = function(v) return data.get(v, "name") end,
  multi_select = function(v) return data.map(v, function(o) return data.get(o, "name") end) end,
  people = function(v) return data.map(v, user_name) end,
  relation = function(v) return data.map(v, function(r) return data.get(r, "id") end) end,
  files = function(v) return data.map(v, file_link) end,
  date = function(v) return data.compact(v) end,
  created_by = user_name,
  last_edited_by = user_name,
  formula = typed_value,
  rollup = function(v)
    if data.get(v, "type") == "array" then return data.map(data.get(v, "array"), simplify) end
    return typed_value(v)
  end,
  unique_id = function(v)
    local prefix, number = data.get(v, "prefix"), data.get(v, "number")
    if number == nil then return nil end
    return prefix and (prefix .. "-" .. tostring(number)) or number
  end,
  verification = function(v) return data.get(v, "state") end,
}

simplify = function(prop)
  local value = typed_value(prop)
  local fn = VALUE_OF[data.get(prop, "type")]
  if fn then return fn(value) end
  return value
end

local function page_title(properties)
  for _, prop in pairs(members(properties)) do
    if data.get(prop, "type") == "title" then return plain_text(prop.title) end
  end
  return nil
end

-- {type = "page_id", id = "..."}; a workspace parent has no id.
local function parent(p)
  local kind = data.get(p, "type")
  if type(kind) ~= "string" then return nil end
  local id = data.get(p, kind)
  return {type = kind, id = type(id) == "string" and id or nil}
end

local function summary(obj)
  local kind = data.value(obj.object)
  local out = {
    id = data.value(obj.id), object = kind, url = data.value(obj.url),
    created_time = data.value(obj.created_time), last_edited_time = data.value(obj.last_edited_time),
    parent = parent(obj.parent),
  }
  out.in_trash = data.value(obj.in_trash)
  if out.in_trash == nil then out.in_trash = data.value(obj.archived) end
  if kind == "data_source" or kind == "database" then
    out.title = plain_text(obj.title)
    -- the columns an agent can filter and sort on: name → type
    local columns = {}
    for name, col in pairs(members(obj.properties)) do columns[name] = data.get(col, "type") end
    out.properties = columns
  else
    out.title = page_title(obj.properties)
  end
  return out
end

local function page(obj)
  local out = summary(obj)
  local values = {}
  for name, prop in pairs(members(obj.properties)) do values[name] = simplify(prop) end
  out.properties = values
  return out
end

---------------------------------------------------------------------------
-- Requests

-- A Notion list endpoint walked with ferry.paginate ({items, next} or nil, err);
-- make_request(cursor, page_size) builds each page's request.
local function list(ctx, args, make_request)
  return paginate.collect{
    limit = args.limit or 20,
    start = args.cursor,
    items = "results",
    next = "next_cursor",
    has_more = "has_more",
    fetch = function(cursor, remaining)
      return request(ctx, make_request(cursor, math.min(remaining, PAGE_MAX)))
    end,
  }
end

local function search(ctx, args)
  local got, err = list(ctx, args, function(cursor, page_size)
    return {method = "POST", path = "/v1/search", json = {
      query = args.query,
      filter = args.type and {property = "object", value = args.type} or nil,
      sort = args.sort and {timestamp = "last_edited_time", direction = args.sort} or nil,
      start_cursor = cursor,
      page_size = page_size,
    }}
  end)
  if not got then return nil, err end
  return {results = data.map(got.items, summary), next_cursor = got.next}
end

local function get_page(ctx, args)
  local obj, err = request(ctx, {path = sdk.http.path("/v1/pages/{page_id}", args)})
  if not obj then return nil, err end
  return page(obj)
end

local function query_data_source(ctx, args)
  local path = sdk.http.path("/v1/data_sources/{data_source_id}/query", args)
  local got, err = list(ctx, args, function(cursor, page_size)
    return {method = "POST", path = path, json = {
      filter = args.filter,
      sorts = args.sorts,
      in_trash = args.in_trash,
      start_cursor = cursor,
      page_size = page_size,
    }}
  end)
  if not got then return nil, err end
  return {results = data.map(got.items, page), next_cursor = got.next}
end

---------------------------------------------------------------------------
-- Schemas

local UUID = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
local function notion_id(description) return s.string{description, required = true, pattern = UUID} end

local limit = s.integer{"How many results to return (default 20).", minimum = 1, maximum = 500}
local cursor = s.string{"next_cursor from an earlier call, to get the following results.", minLength = 1}

---------------------------------------------------------------------------

return {
  slug = "notion",
  name = "Notion",
  category = "project_management",
  description = "Notion pages and data sources (databases): search by title, read a page's properties, " ..
                "query a data source with filters and sorts.",
  base_url = "https://api.notion.com",
  hosts = {"api.notion.com"},
  auth = {
    type = "api_key", field = "token", header = "Authorization", prefix = "Bearer ",
    instructions = "Create an internal integration at https://www.notion.so/profile/integrations, copy its " ..
                   "Internal Integration Secret, and share the pages and databases it may read with it " ..
                   "(••• → Connections).",
  },
  data_categories = {"documents", "projects"},
  docs_url = "https://developers.notion.com/reference/intro",

  check = function(ctx)
    local me, err = request(ctx, {path = "/v1/users/me"})
    if not me then return nil, err end
    return {account_label = data.get(me, "bot.workspace_name") or data.get(me, "name")}
  end,

  tools = {
    search = {
      title = "Search Notion",
      description = "Find pages and data sources shared with the integration whose title matches the " ..
                    "query (all of them without one), most recently edited first. Data sources come " ..
                    "with their columns (name → type) for query_data_source.",
      access = "read",
      input = s.object{
        query = s.string{"Text to match against titles.", maxLength = 1000},
        type = s.enum{"page", "data_source", description = "Only pages, or only data sources (databases)."},
        sort = s.enum{"descending", "ascending", description = "Order by last edit time (default descending)."},
        limit = limit,
        cursor = cursor,
      },
      run = search,
    },

    get_page = {
      title = "Get a Notion page",
      description = "A page's title, link, parent, timestamps and property values (as plain values: " ..
                    "text, numbers, names, dates, ids). The page's content blocks are not included.",
      access = "read",
      input = s.object{page_id = notion_id "The page's id (a UUID, with or without dashes)."},
      run = get_page,
    },

    query_data_source = {
      title = "Query a Notion data source",
      description = "Pages (rows) of a data source (database), optionally filtered and sorted, with " ..
                    "their property values. Filters use Notion's filter syntax, e.g. " ..
                    "{\"property\": \"Status\", \"status\": {\"equals\": \"Done\"}} or {\"and\": [...]}.",
      access = "read",
      input = s.object{
        data_source_id = notion_id "The data source's id (search with type = data_source finds it).",
        filter = s.map(nil, "A Notion filter object."),
        sorts = s.array(s.object{
          property = s.string{"Property (column) name.", required = true, minLength = 1},
          direction = s.enum{"ascending", "descending", required = true},
        }, {"Sort order, first key first.", maxItems = 10}),
        in_trash = s.boolean "Return pages in the trash instead.",
        limit = limit,
        cursor = cursor,
      },
      run = query_data_source,
    },
  },
}
