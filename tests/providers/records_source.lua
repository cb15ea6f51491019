-- records_source: a test provider whose syncs page through the fault
-- server's change feed (tests/fault/dataset.c): GET /dataset/changes?after=
-- returns records by their latest change number, deleted ones as
-- tombstones. Each page is upserted and deleted, then checkpointed with the
-- last change number as the cursor: the incremental pattern the sync
-- contract is built for. `items` reads set "main" as projects data,
-- `ledger` set "ledger" as financial data. The `misuse` setting makes the
-- sync hand ctx.records.upsert what it must refuse: "proxy" fields (a table
-- with an __index metatable), "far_time" (updated_at of 1e300 seconds).
local sdk = require "ferry.sdk"

local API = {service = "Records"}

local function sync_set(set)
  return function(ctx, cursor)
    local after = type(cursor) == "table" and tonumber(cursor.after) or 0
    local limit = tonumber(ctx.connection.settings.page_size) or 100
    local pages = 0
    repeat
      local body, err = sdk.request(ctx, {path = "/dataset/changes", timeout_ms = 2000,
                                          query = {set = set, after = after, limit = limit}}, API)
      if not body then return nil, err end
      for _, item in ipairs(body.items) do
        local ok, werr
        if item.deleted then
          ok, werr = ctx.records.delete("item", item.id)
        else
          local fields = {
            title = item.title, text = item.text, url = item.url, updated_at = item.updated_at,
            data = {rev = item.rev, seq = item.seq},
          }
          local misuse = ctx.connection.settings.misuse
          if misuse == "proxy" then
            fields = setmetatable({}, {__index = function(_, k) return string.rep(k, 5000) end})
          elseif misuse == "far_time" then
            fields.updated_at = 1e300
          end
          ok, werr = ctx.records.upsert("item", item.id, fields)
        end
        if not ok then return nil, werr end
      end
      after = body.next_after
      local ok, cerr = ctx.checkpoint({after = after})
      if not ok then return nil, cerr end
      pages = pages + 1
    until not body.has_more
    return {pages = pages, after = after}
  end
end

return {
  slug = "records_source",
  name = "Records Source",
  category = "developer",
  description = "Test provider: syncs records from the fault server's change feed.",
  base_url = "http://127.0.0.1:9",
  hosts = {"127.0.0.1"},
  auth = {type = "api_key", field = "token", header = "Authorization", prefix = "Bearer ",
          settings = {"page_size", "misuse"}},
  data_categories = {"projects", "financial"},
  tools = {
    count = {
      description = "How many records the upstream's main set has changed.",
      access = "read",
      run = function(ctx)
        local body, err = sdk.request(ctx, {path = "/dataset/state"}, API)
        if not body then return nil, err end
        return {seq = body.seq}
      end,
    },
  },
  syncs = {
    items = {every = "1h", category = "projects", description = "The main set, as projects records.",
             run = sync_set("main")},
    ledger = {every = "1h", category = "financial", description = "The ledger set, as financial records.",
              run = sync_set("ledger")},
  },
}
