-- ingest_bench: the Lua side of bench/ingest. Its sync writes N records
-- (connection settings: count, seed, batch; dry = "1" only generates them)
-- through ctx.records.upsert and
-- ctx.checkpoint, one checkpoint per batch, with realistic text (sentences
-- of business words, 200 to 2,200 bytes, about 1.2 KB on average).
-- bench/ingest_baseline.c builds exactly the same rows with the same
-- generator (splitmix64 over a pool of 256 sentences) and writes them from
-- C, so both sides do the same work.
local VOCAB = {
  "invoice", "payment", "customer", "project", "meeting", "budget", "roadmap", "launch",
  "review", "quarter", "contract", "design", "report", "revenue", "forecast", "hiring",
  "vendor", "order", "shipment", "delivery", "support", "ticket", "release", "sprint",
  "campaign", "email", "lead", "deal", "pipeline", "account", "renewal", "pricing",
  "discount", "approval", "policy", "audit", "expense", "receipt", "payroll", "tax",
  "ledger", "balance", "cash", "margin", "growth", "churn", "retention", "onboarding",
  "training", "workshop", "agenda", "minutes", "decision", "action", "owner", "deadline",
  "risk", "issue", "blocker", "update", "status", "milestone", "goal", "metric",
}
local POOL_SIZE = 256
local GOLDEN = 0x9E3779B97F4A7C15

local function mix(z)
  z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
  z = (z ~ (z >> 27)) * 0x94D049BB133111EB
  return z ~ (z >> 31)
end

local pools = {}

-- 256 sentences of 6 to 16 words, from the seed.
local function pool_for(seed)
  if pools[seed] then return pools[seed] end
  local state, pool = seed, {}
  for s = 1, POOL_SIZE do
    state = state + GOLDEN
    local nwords = 6 + (mix(state) >> 33) % 11
    local words = {}
    for w = 1, nwords do
      state = state + GOLDEN
      local word = VOCAB[(mix(state) >> 33) % 64 + 1]
      if w == 1 then word = word:sub(1, 1):upper() .. word:sub(2) end
      words[w] = word
    end
    pool[s] = table.concat(words, " ") .. "."
  end
  pools[seed] = pool
  return pool
end

-- Record k: a title and a text of 200 + (r % 2000) bytes or a sentence more.
local function record(pool, seed, k)
  local state = seed * 1000003 + k
  state = state + GOLDEN
  local r = mix(state)
  local target = 200 + (r >> 33) % 2000
  state = state + GOLDEN
  local title = "Record " .. k .. ": " .. pool[(mix(state) >> 33) % POOL_SIZE + 1]
  local parts, len = {}, 0
  while len < target do
    state = state + GOLDEN
    local s = pool[(mix(state) >> 33) % POOL_SIZE + 1]
    parts[#parts + 1] = s
    len = len + #s + 1
  end
  return title, table.concat(parts, " ")
end

return {
  slug = "ingest_bench",
  name = "Ingest benchmark",
  category = "developer",
  description = "Benchmark provider: a sync that writes generated records.",
  hosts = {"ingest.invalid"},
  auth = {type = "api_key", field = "token", header = "Authorization",
          settings = {"count", "seed", "batch", "dry"}},
  data_categories = {"projects"},
  tools = {
    sample = {
      description = "One generated record.",
      access = "read",
      input = {type = "object", properties = {n = {type = "integer", minimum = 1}}, required = {"n"}},
      run = function(ctx, args)
        local seed = tonumber(ctx.connection.settings.seed) or 1
        local title, text = record(pool_for(seed), seed, args.n)
        return {title = title, text = text}
      end,
    },
  },
  syncs = {
    records = {
      every = "1d",
      category = "projects",
      run = function(ctx, cursor)
        local settings = ctx.connection.settings
        local n = tonumber(settings.count) or 200000
        local seed = tonumber(settings.seed) or 1
        local batch = tonumber(settings.batch) or 1000
        local dry = settings.dry == "1"   -- generate only: what the Lua side costs
        local pool = pool_for(seed)
        local k = type(cursor) == "table" and cursor.next or 1
        while k <= n do
          local last = math.min(k + batch - 1, n)
          for i = k, last do
            local title, text = record(pool, seed, i)
            if not dry then
              local ok, err = ctx.records.upsert("doc", "d" .. i, {
                title = title, text = text, updated_at = "2024-05-01T00:00:00Z", data = {n = i},
              })
              if not ok then return nil, err end
            end
          end
          k = last + 1
          local ok, err = ctx.checkpoint({next = k})
          if not ok then return nil, err end
        end
        return {records = n}
      end,
    },
  },
}
