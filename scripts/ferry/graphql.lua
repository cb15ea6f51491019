-- ferry.graphql: GraphQL over ctx.http.request (Monday, Fireflies, GitHub...).
--
--   local graphql = require "ferry.graphql"
--   local API = sdk.errors.graphql{service = "Fireflies"}
--   local result, err = graphql.query(ctx, {
--     query = "query($id: String!) { transcript(id: $id) { id title } }",
--     variables = {id = args.id},
--     -- path (default "/graphql", relative to base_url) or url, operation_name, headers, timeout_ms
--   }, API)
--   if not result then return nil, err end      -- result is the answer's `data`
--
--   -- Relay-style connections ({edges {node}} or {nodes}, pageInfo {hasNextPage endCursor}):
--   local got, err = graphql.collect(ctx, {
--     query = [[query($first: Int, $after: String) {
--       issues(first: $first, after: $after) { nodes { id title } pageInfo { hasNextPage endCursor } } }]],
--     variables = {},
--     connection = "issues",        -- path of the connection inside data
--     limit = args.limit, start = args.cursor, page_size = 50,
--   }, API)                         -- {items, next, pages} like ferry.paginate.collect
--
-- Errors: an HTTP error status is mapped as usual; a 200 with `errors` is an
-- error too (see ferry.errors.graphql for the codes that mean
-- reconnect_required and upstream_rate_limited). Without API options the
-- errors.graphql() defaults are used.
-- Common subset of Lua 5.1 and 5.4.
local http = require "ferry.http"
local errors = require "ferry.errors"
local data = require "ferry.data"
local paginate = require "ferry.paginate"

local M = {}

local default_api

-- data of a query, or nil, err.
function M.query(ctx, req, api)
  if type(req) ~= "table" or type(req.query) ~= "string" then
    error("ferry.graphql.query: req.query must be the query text", 2)
  end
  if api == nil then
    default_api = default_api or errors.graphql()
    api = default_api
  end
  local variables = req.variables
  if variables ~= nil and next(variables) == nil then variables = nil end
  local body, resp = http.request(ctx, {
    method = "POST",
    path = req.path or (req.url == nil and "/graphql" or nil),
    url = req.url,
    headers = req.headers,
    timeout_ms = req.timeout_ms,
    json = {query = req.query, variables = variables, operationName = req.operation_name},
  }, api)
  if not body then return nil, resp end
  local result = data.get(body, "data")
  if result == nil then
    return nil, errors.new("upstream_error", ("%s answered without data"):format(api.service or "the GraphQL API"),
                           {status = resp and resp.status})
  end
  return result, resp
end

-- The items of a connection: nodes, or edges[].node.
local function connection_items(conn)
  local nodes = data.get(conn, "nodes")
  if type(nodes) == "table" then return nodes end
  local edges = data.get(conn, "edges")
  if type(edges) ~= "table" then return {} end
  local out = {}
  for _, e in ipairs(edges) do
    local n = data.get(e, "node")
    if n ~= nil then out[#out + 1] = n end
  end
  return out
end

-- An iterator over the pages of a Relay-style connection (ferry.paginate.cursor).
-- spec: query, variables, connection (path in data), first / after (the
-- variable names, default "first" and "after"), page_size (default 50),
-- limit, start, max_pages.
function M.pages(ctx, spec, api)
  if type(spec.connection) ~= "string" and type(spec.connection) ~= "function" then
    error("ferry.graphql.pages: spec.connection must be the path of the connection in data", 2)
  end
  local conn_of = type(spec.connection) == "function" and spec.connection or function(d)
    return data.get(d, spec.connection)
  end
  local first_var, after_var = spec.first or "first", spec.after or "after"
  local page_size = spec.page_size or 50
  return paginate.cursor{
    limit = spec.limit,
    start = spec.start,
    max_pages = spec.max_pages,
    items = function(d) return connection_items(conn_of(d)) end,
    next = function(d) return data.get(conn_of(d), "pageInfo.endCursor") end,
    has_more = function(d) return data.get(conn_of(d), "pageInfo.hasNextPage") end,
    fetch = function(cursor, remaining)
      local vars = {}
      for k, v in pairs(spec.variables or {}) do vars[k] = v end
      vars[first_var] = remaining and math.min(remaining, page_size) or page_size
      vars[after_var] = cursor
      return M.query(ctx, {query = spec.query, variables = vars, path = spec.path, url = spec.url,
                           headers = spec.headers, operation_name = spec.operation_name}, api)
    end,
  }
end

-- Every item of a connection: {items, next, pages}, or nil, err.
function M.collect(ctx, spec, api)
  return paginate.collect(M.pages(ctx, spec, api))
end

return M
