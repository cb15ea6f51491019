-- sync_helper: what the sync specs share — the fault server's dataset
-- (tests/fault/dataset.c), the records_source test provider, runs through
-- the API, and checks of the database against the upstream.
local h = require "helper"
local json = h.json

local M = {}

M.provider_file = h.root .. "/tests/providers/records_source.lua"

-- A folder holding records_source.lua with its syncs' `every` replaced
-- (the bundled test provider syncs every hour).
function M.provider_dir(every)
  local dir = h.tmpdir()
  local src = assert(h.read_file(M.provider_file))
  if every then src = src:gsub('every = "1h"', 'every = "' .. every .. '"') end
  h.write_file(dir .. "/records_source.lua", src)
  return dir
end

local function query(params)
  local parts = {}
  for k, v in pairs(params or {}) do parts[#parts + 1] = k .. "=" .. tostring(v) end
  table.sort(parts)
  return table.concat(parts, "&")
end

-- POST /dataset/<what>?set=..&params on the fault server; the decoded answer.
function M.dataset(fault, what, params, body)
  params = params or {}
  params.set = params.set or "main"
  local status, text = h.request("POST", fault.url .. "/dataset/" .. what .. "?" .. query(params),
                                 {body = body and json.encode(body) or ""})
  assert(status == 200, "dataset " .. what .. ": " .. tostring(status) .. " " .. tostring(text))
  return json.decode(text)
end

function M.upstream_state(fault, set)
  local status, text = h.request("GET", fault.url .. "/dataset/state?set=" .. (set or "main"))
  assert(status == 200, "dataset state: " .. tostring(status))
  return json.decode(text)
end

function M.upstream_log(fault, set)
  local status, text = h.request("GET", fault.url .. "/dataset/log?set=" .. (set or "main"))
  assert(status == 200, "dataset log: " .. tostring(status))
  return json.decode(text)
end

-- A ferry whose records_source talks to `fault`.
function M.start(fault, opts)
  opts = opts or {}
  return h.start_ferry{data = opts.data, providers = {opts.providers or (h.root .. "/tests/providers")},
                       base_urls = {records_source = fault.url}, args = opts.args, env = opts.env, syncs = true}
end

-- POST /v1/connections for records_source; returns the connection id.
function M.connect(srv, key, opts)
  opts = opts or {}
  local status, body, text = h.connect(srv, key, {
    integration = "records_source", credentials = {token = opts.token or "rs-secret-token-1234"},
    settings = {page_size = tostring(opts.page_size or 100)}, scope = opts.scope, label = opts.label,
  })
  assert(status == 201, "connect: " .. tostring(status) .. " " .. tostring(text))
  return body.id
end

function M.get(srv, key, path)
  local status, body, _, text = srv.get(path, key)
  return status, body, text
end

function M.post(srv, key, path, payload)
  local status, text = h.request("POST", srv.url .. path,
                                 {json = payload or {}, headers = {authorization = "Bearer " .. key}})
  return status, h.decode(text), text
end

-- GET /v1/syncs/{conn}/{sync}: the sync with its latest runs.
function M.sync(srv, key, conn, sync)
  local status, body, text = M.get(srv, key, "/v1/syncs/" .. conn .. "/" .. sync)
  assert(status == 200, "GET sync: " .. tostring(status) .. " " .. tostring(text))
  return body.sync
end

-- Polls the sync until pred(sync) is true; returns the sync.
function M.wait_sync(srv, key, conn, sync, pred, timeout)
  local deadline = h.now() + (timeout or 20)
  local last
  repeat
    last = M.sync(srv, key, conn, sync)
    if pred(last) then return last end
    h.sleep(0.05)
  until h.now() > deadline
  error("timed out waiting on sync " .. sync .. ": " .. json.encode(last))
end

-- A run by id, from the sync's latest runs.
function M.find_run(s, id)
  for _, r in ipairs(s.runs or {}) do
    if r.id == id then return r end
  end
end

-- POST .../run, then waits for that run to end; returns the run.
function M.run(srv, key, conn, sync, timeout)
  local status, body, text = M.post(srv, key, "/v1/syncs/" .. conn .. "/" .. sync .. "/run")
  assert(status == 202, "run: " .. tostring(status) .. " " .. tostring(text))
  local id = body.run.id
  local s = M.wait_sync(srv, key, conn, sync, function(x)
    local r = M.find_run(x, id)
    return r and r.status ~= "running"
  end, timeout)
  return M.find_run(s, id), body
end

-- ---- the database ----

-- {external_id = {rev, title, updated_at}} of a connection's records.
function M.db_records(data, conn, sync)
  local rows = h.sql(data, ("SELECT external_id, json_extract(data, '$.rev'), title, updated_at FROM records" ..
    " WHERE connection_id = '%s'%s"):format(conn, sync and (" AND sync = '" .. sync .. "'") or ""))
  local out, n = {}, 0
  for _, r in ipairs(rows) do
    assert(out[r[1]] == nil, "record " .. r[1] .. " is there twice")
    out[r[1]] = {rev = tonumber(r[2]), title = r[3], updated_at = r[4]}
    n = n + 1
  end
  return out, n
end

function M.db_cursor(data, conn, sync)
  local rows = h.sql(data, ("SELECT cursor, records FROM sync_state WHERE connection_id = '%s' AND sync = '%s'")
    :format(conn, sync))
  if not rows[1] or rows[1][1] == "" then return nil, 0 end
  return json.decode(rows[1][1]), tonumber(rows[1][2])
end

-- Chunks and the index agree with the records: every record has chunks,
-- no chunk is left without its record, the FTS index matches its content
-- and the sync's record count is right.
function M.check_integrity(data, conn, sync)
  local rows = h.sql(data, ([[
    SELECT
      (SELECT count(*) FROM records r WHERE r.connection_id = '%s'
         AND NOT EXISTS (SELECT 1 FROM document_chunks c WHERE c.record_id = r.id)),
      (SELECT count(*) FROM document_chunks c WHERE NOT EXISTS (SELECT 1 FROM records r WHERE r.id = c.record_id)),
      (SELECT count(*) FROM (SELECT record_id, seq FROM document_chunks GROUP BY record_id, seq HAVING count(*) > 1)),
      (SELECT count(*) FROM records WHERE connection_id = '%s' AND sync = '%s');
    INSERT INTO document_chunks_fts(document_chunks_fts) VALUES ('integrity-check');]]):format(conn, conn, sync))
  local r = rows[1]
  assert(tonumber(r[1]) == 0, r[1] .. " records have no chunk")
  assert(tonumber(r[2]) == 0, r[2] .. " chunks have no record")
  assert(tonumber(r[3]) == 0, r[3] .. " chunk positions are duplicated")
  local _, counted = M.db_cursor(data, conn, sync)
  assert(counted == tonumber(r[4]), ("sync_state counts %s records, the table has %s"):format(counted, r[4]))
  return tonumber(r[4])
end

-- The database against the upstream, for a cursor {after = N}: every
-- upstream change at or before N is reflected exactly (live records with
-- their revision, deleted ones absent); records changed after N may be
-- older or missing, never newer, and nothing is there that the upstream
-- never had. exact: the cursor is at the upstream's last change and the
-- record sets are equal. Returns the number of records checked.
function M.check_against(fault, data, conn, sync, set, exact)
  local state = M.upstream_state(fault, set)
  local cursor = M.db_cursor(data, conn, sync)
  local after = cursor and cursor.after or 0
  assert(after <= state.seq, "the cursor " .. after .. " is ahead of the upstream " .. state.seq)
  local db, n = M.db_records(data, conn, sync)
  local upstream, live = {}, 0
  for _, item in ipairs(state.items) do
    upstream[item.id] = item
    local mine = db[item.id]
    if item.seq <= after then
      if item.deleted then
        assert(mine == nil, item.id .. " was deleted upstream at " .. item.seq .. " (cursor " .. after ..
          ") but is still stored")
      else
        assert(mine, item.id .. " (change " .. item.seq .. ", cursor " .. after .. ") is missing")
        assert(mine.rev == item.rev, item.id .. " is stored at rev " .. tostring(mine.rev) .. ", upstream has " ..
          item.rev .. " (change " .. item.seq .. ", cursor " .. after .. ")")
        assert(mine.title == item.title, item.id .. " has a stale title")
        assert(mine.updated_at == item.updated_at, item.id .. " has a stale updated_at")
      end
    elseif mine then
      assert(mine.rev <= item.rev, item.id .. " is stored at a revision the upstream never had")
    end
    if not item.deleted then live = live + 1 end
  end
  for id in pairs(db) do assert(upstream[id], id .. " is stored but the upstream never had it") end
  if exact then
    assert(after == state.seq, "the cursor " .. after .. " is not at the upstream's last change " .. state.seq)
    assert(n == live, ("%d records stored, the upstream has %d"):format(n, live))
  end
  return n
end

-- The pid in a lease owner "host/pid/tag".
function M.owner_pid(owner)
  return tonumber((owner or ""):match("^[^/]*/(%d+)/"))
end

return M
