-- {{name}}: a ferry provider.
-- Written by `ferry providers new {{slug}}`; make it yours.
--
-- A provider is one Lua file that returns a table. ferry loads it in a
-- sandbox, checks it (`ferry providers check providers/{{slug}}.lua` lists
-- every problem) and offers each tool to agents as {{slug}}__<tool>.
-- The walk-through: docs/writing-a-provider.md; the contract:
-- docs/providers.md; the SDK: scripts/ferry/README.md (in ferry's sources).
--
-- This starter talks to an example API (https://api.example.com/v1, with
-- /items and /me): replace the URLs, paths and fields with your API's, and
-- keep spec/{{slug}}_spec.lua passing as you go (`busted`).
--
-- Write in the common subset of Lua 5.1 and 5.4: busted runs the spec on
-- Lua 5.1, ferry runs this file on 5.4. To run a tool in the real sandbox,
-- once a connection holds a token (docs/writing-a-provider.md, step 7):
--   ferry tool call {{slug}}__list_items '{"limit": 5}' \
--     --providers providers --user you --team yours
local sdk = require "ferry.sdk"
local s, data, paginate = sdk.schema, sdk.data, sdk.paginate

-- How the API reports errors, declared once (the options of ferry.errors).
-- Statuses are mapped for you: 401 and 403 → reconnect_required, 429 →
-- upstream_rate_limited with Retry-After's delay, anything else →
-- upstream_error carrying the API's own message, read from these paths.
-- APIs that answer 200 with a failure inside have presets:
-- sdk.errors.slack(), sdk.errors.quickbooks(), sdk.errors.graphql().
local API = {
  service = "{{name}}",
  message = {"error.message", "message"},
  code = {"error.code"},
}

local PAGE_MAX = 100   -- the most items the API returns in one page

-- What agents see of an item: pick and rename the fields that matter
-- (data.value turns JSON null into nil, so absent fields stay out).
local function item(raw)
  return {
    id = data.value(raw.id),
    name = data.value(raw.name),
    notes = data.value(raw.notes),
    updated_at = data.value(raw.updated_at),
  }
end

-- GET /items?q=&cursor=&limit= → {"items": [...], "next_cursor": "..."}
-- paginate.collect asks page after page until `limit` items, the last page,
-- an empty page or a repeated cursor; next_cursor lets the agent continue.
-- Other styles: paginate.offset, .pages, .link (Link header), .window (time).
local function list_items(ctx, args)
  local got, err = paginate.collect{
    limit = args.limit or 20,
    start = args.cursor,
    items = "items",              -- where a page's items are
    next = "next_cursor",         -- where the next page's cursor is (absent on the last page)
    fetch = function(cursor, remaining)
      return sdk.request(ctx, {path = "/items", query = {
        q = args.query,
        cursor = cursor,
        limit = math.min(remaining, PAGE_MAX),
      }}, API)
    end,
  }
  if not got then return nil, err end
  return {items = data.map(got.items, item), next_cursor = got.next}
end

-- GET /items/{id}: sdk.http.path percent-encodes the id, so an argument
-- cannot add path segments.
local function get_item(ctx, args)
  local body, err = sdk.request(ctx, {path = sdk.http.path("/items/{id}", args)}, API)
  if not body then return nil, err end
  return item(body)
end

-- POST /items {"name": ..., "notes": ...}
local function create_item(ctx, args)
  local body, err = sdk.request(ctx, {method = "POST", path = "/items",
                                      json = {name = args.name, notes = args.notes}}, API)
  if not body then return nil, err end
  return item(body)
end

return {
  -- the file's name; agents call the tools {{slug}}__<tool>
  slug = "{{slug}}",
  name = "{{name}}",
  category = "custom",                   -- crm, calendar, project_management, communication, accounting, ...
  description = "Items in {{name}}: list and search them, read one, create new ones.",
  base_url = "https://api.example.com/v1",   -- ctx.http.request{path = ...} is relative to it
  hosts = {"api.example.com"},           -- the only hosts requests may reach
  -- Where the core puts the credential: scripts never see it. The user
  -- pastes a `token` when connecting; `instructions` tell them where to get it.
  auth = {
    type = "api_key", field = "token", header = "Authorization", prefix = "Bearer ",
    instructions = "In {{name}}, open Settings → API tokens, create a token " ..
                   "and paste it here.",
  },
  data_categories = {"documents"},

  -- Runs when a connection is made: a cheap authenticated call. Its
  -- account_label names the connection.
  check = function(ctx)
    local me, err = sdk.request(ctx, {path = "/me"}, API)
    if not me then return nil, err end
    return {account_label = data.value(me.name) or data.value(me.email)}
  end,

  tools = {
    list_items = {
      title = "List {{name}} items",
      description = "Items, newest first, optionally matching a text query. Returns next_cursor when there " ..
                    "are more.",
      access = "read",                   -- read runs at once; write waits for a person's approval
      -- Arguments are checked against this JSON Schema before run is called.
      input = s.object{
        query = s.string{"Text to look for in item names.", minLength = 1, maxLength = 200},
        limit = s.limit{maximum = 500},
        cursor = s.cursor(),
      },
      run = list_items,
    },

    get_item = {
      title = "Get a {{name}} item",
      description = "One item by its id.",
      access = "read",
      input = s.object{id = s.id{"The item's id.", required = true}},
      run = get_item,
    },

    create_item = {
      title = "Create a {{name}} item",
      description = "Create an item. Returns it with its id.",
      access = "write",
      input = s.object{
        name = s.string{"The item's name.", required = true, minLength = 1, maxLength = 200},
        notes = s.string{"Longer text about it.", maxLength = 10000},
      },
      run = create_item,
    },
  },

  -- Syncs copy records into ferry on a schedule (search and context):
  -- syncs = {
  --   items = {every = "1h", category = "documents", run = function(ctx, cursor) ... end},
  -- },
}
