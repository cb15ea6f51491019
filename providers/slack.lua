-- Slack: a workspace's channels and messages, message search, and posting
-- (with approval), through Slack's Web API; and a sync of channel messages
-- into `message` records.
--
-- HTTP shapes follow Slack's Web API description (slackapi/slack-api-specs,
-- web-api/slack_web_openapi_v2.json, a copy in tests/specs/slack; host
-- slack.com, basePath /api). Methods used, with Slack's rate tier:
--   list_channels     GET  /conversations.list      tier 2   cursor: response_metadata.next_cursor
--   channel_history   GET  /conversations.history   tier 3   cursor, newest first; oldest/latest bound it
--   thread_replies    GET  /conversations.replies   tier 3   cursor
--   search_messages   GET  /search.messages         tier 2   page/count (paging.pages)
--   post_message      POST /chat.postMessage        1 per second per channel (form-encoded body)
--   check             GET  /auth.test               generous ("special"; counted here as tier 4)
--   syncs.messages    conversations.list, then conversations.history per channel
-- The token travels as `Authorization: Bearer` (ferry injects it). The
-- description also models it as a `token` header or query parameter, which
-- Slack accepts but does not need.
--
-- Errors: Slack answers HTTP 200 with {"ok": false, "error": "channel_not_found"};
-- ferry.errors' Slack preset maps invalid_auth, token_revoked, missing_scope...
-- to reconnect_required, ratelimited and HTTP 429 to upstream_rate_limited
-- (Retry-After), the rest to upstream_error with Slack's code in
-- details.upstream_code.
--
-- Rate limits: Slack counts per method, per workspace, per app; the tiers
-- below are the floors of Slack's published ranges (Tier 2: 20+ a minute,
-- Tier 3: 50+, Tier 4: 100+; chat.postMessage about one message a second per
-- channel), declared as ferry's upstream budget so tool calls and syncs
-- through one connection together stay under them. Commercially distributed
-- apps not approved for the Slack Marketplace and created after 2025-05-29
-- get far less for conversations.history/replies (1 a minute, 15 messages a
-- page); an app a team registers for itself is not affected.
--
-- Common subset of Lua 5.1 and 5.4 (tests/lua runs it under busted).
local sdk = require "ferry.sdk"
local s, data, paginate, errors = sdk.schema, sdk.data, sdk.paginate, sdk.errors

local API = errors.slack()

-- search.messages works with user tokens only: with a bot token Slack answers
-- not_allowed_token_type, which the preset reads as a bad credential. Here it
-- is not: the connection is fine for everything else, and reconnecting
-- would give the same kind of token.
local SEARCH_API = errors.slack{
  classify = function(resp, body)
    if data.get(body, "error") == "not_allowed_token_type" then return "upstream_error" end
    return API.classify(resp, body)
  end,
}

local TIMEOUT_MS = 10000   -- per request: Slack answers in well under a second
local PAGE_MAX = 200       -- Slack's advice for conversations.* pages ("no more than 200")
local SEARCH_PAGE = 100    -- search.messages' largest `count`; fixed, so page numbers stay valid cursors
local DAY = 86400

-- Timestamps: Slack's message ids ("1512085950.000216") or RFC 3339.
local TS_PATTERN = "^[0-9]{1,11}[.]?[0-9]{0,6}$"

---------------------------------------------------------------------------
-- Small helpers

local function str(v)
  v = data.value(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function num(v)
  v = data.value(v)
  if type(v) == "number" then return v end
  return nil
end

local function bool(v)
  v = data.value(v)
  if type(v) == "boolean" then return v end
  return nil
end

-- A Slack timestamp from an argument that is one already or an RFC 3339 time.
local function to_ts(value)
  if value == nil then return nil end
  if value:match("^%d+%.?%d*$") then return value end
  local t = sdk.time.parse(value)
  return t and string.format("%d", t) or nil
end

-- "1512085950.000216" → "2017-11-30T23:52:30Z" (whole seconds), or nil.
local function iso(ts)
  local t = tonumber(data.value(ts))
  if not t then return nil end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- Slack timestamps compared exactly: whole seconds, then microseconds as
-- text (a double cannot be trusted with the sixth decimal).
local function ts_parts(ts)
  local whole, frac = tostring(ts):match("^(%d+)%.?(%d*)$")
  if not whole then return 0, "000000" end
  return tonumber(whole), (frac .. "000000"):sub(1, 6)
end

local function ts_less(a, b)
  local aw, af = ts_parts(a)
  local bw, bf = ts_parts(b)
  if aw ~= bw then return aw < bw end
  return af < bf
end

local function ts_of_time(t)
  return string.format("%d.000000", math.floor(t))
end

-- `text` cut to at most `max` bytes on a UTF-8 boundary, with "…" when cut.
local function cut(text, max)
  if type(text) ~= "string" or #text <= max then return text end
  local n = max
  while n > 0 do
    local b = text:byte(n + 1)
    if not b or b < 0x80 or b >= 0xC0 then break end
    n = n - 1
  end
  return text:sub(1, n) .. "…"
end

-- Slack's markup (mrkdwn) as plain text: <@U123> → @U123, <#C1|general> →
-- #general, <!here> → @here, <https://x|label> → label (https://x), and the
-- three escaped characters back.
local function plain(text)
  if type(text) ~= "string" then return nil end
  text = text:gsub("<([^<>]*)>", function(inner)
    local target, label = inner:match("^([^|]*)|(.*)$")
    target = target or inner
    local first = target:sub(1, 1)
    if first == "@" or first == "#" then return first .. (label or target:sub(2)) end
    if first == "!" then return label or ("@" .. (target:sub(2):match("^[%w_]+") or target:sub(2))) end
    local address = target:gsub("^mailto:", "")
    if label and label ~= "" and label ~= address then return label .. " (" .. address .. ")" end
    return address
  end)
  return (text:gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&"))
end

---------------------------------------------------------------------------
-- Requests

local function call(ctx, method, tier, query, opts, token)
  return sdk.request(ctx, {path = "/" .. method, query = query, tier = tier, timeout_ms = TIMEOUT_MS, token = token},
                     opts or API)
end

-- An application/x-www-form-urlencoded body, keys sorted (the description
-- declares chat.postMessage's arguments as form fields).
local function form(fields)
  local keys = {}
  for k, v in pairs(fields) do
    if v ~= nil then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = sdk.http.escape(k) .. "=" .. sdk.http.escape(tostring(fields[k]))
  end
  return table.concat(parts, "&")
end

---------------------------------------------------------------------------
-- Shaping results

local function channel(c)
  return {
    id = str(c.id), name = str(c.name), topic = str(data.get(c, "topic.value")),
    purpose = str(data.get(c, "purpose.value")), members = num(c.num_members),
    private = bool(c.is_private), archived = bool(c.is_archived), is_member = bool(c.is_member),
    created = iso(c.created), im = bool(c.is_im) or nil, user = str(c.user),
  }
end

local function files_of(m)
  local list = data.value(m.files)
  if type(list) ~= "table" or #list == 0 then return nil end
  return data.map(list, function(f)
    return {name = str(data.get(f, "name")), title = str(data.get(f, "title")),
            type = str(data.get(f, "filetype")), url = str(data.get(f, "permalink"))}
  end)
end

local function reactions_of(m)
  local list = data.value(m.reactions)
  if type(list) ~= "table" or #list == 0 then return nil end
  return data.map(list, function(r) return {name = str(data.get(r, "name")), count = num(data.get(r, "count"))} end)
end

local function message(m)
  return {
    ts = str(m.ts), time = iso(m.ts), user = str(m.user),
    username = str(m.username) or str(data.get(m, "bot_profile.name")), bot_id = str(m.bot_id),
    subtype = str(m.subtype), text = plain(str(m.text)),
    thread_ts = str(m.thread_ts), reply_count = num(m.reply_count), latest_reply = str(m.latest_reply),
    edited_at = iso(data.get(m, "edited.ts")), files = files_of(m), reactions = reactions_of(m),
  }
end

---------------------------------------------------------------------------
-- Tools

local function list_channels(ctx, args)
  local types = args.types and table.concat(args.types, ",") or "public_channel,private_channel"
  local got, err = paginate.collect{
    limit = args.limit or 100,
    start = args.cursor,
    next = "response_metadata.next_cursor",
    items = function(body)
      local list = data.value(body.channels) or {}
      if not args.member_only then return list end
      local mine = {}
      for _, c in ipairs(list) do
        if data.get(c, "is_member") == true or data.get(c, "is_im") == true then mine[#mine + 1] = c end
      end
      return mine
    end,
    fetch = function(cursor, remaining)
      return call(ctx, "conversations.list", "tier2", {
        types = types, exclude_archived = not args.include_archived,
        limit = math.min(remaining, PAGE_MAX), cursor = cursor,
      })
    end,
  }
  if not got then return nil, err end
  return {channels = data.map(got.items, channel), next_cursor = got.next}
end

-- conversations.history and conversations.replies page alike.
local function message_pages(ctx, method, query, limit, start)
  return paginate.collect{
    limit = limit,
    start = start,
    items = "messages",
    next = "response_metadata.next_cursor",
    has_more = "has_more",
    fetch = function(cursor, remaining)
      local q = {limit = math.min(remaining, PAGE_MAX), cursor = cursor}
      for k, v in pairs(query) do q[k] = v end
      return call(ctx, method, "tier3", q)
    end,
  }
end

-- oldest/latest arguments as Slack timestamps, oldest before latest.
local function bounds(args)
  local oldest, latest = to_ts(args.oldest), to_ts(args.latest)
  if args.oldest and not oldest then return nil, errors.invalid_arguments("oldest is not a time", "$.oldest") end
  if args.latest and not latest then return nil, errors.invalid_arguments("latest is not a time", "$.latest") end
  if oldest and latest and not ts_less(oldest, latest) then
    return nil, errors.invalid_arguments("latest must be later than oldest", "$.latest")
  end
  return {oldest = oldest, latest = latest}
end

local function channel_history(ctx, args)
  local b, berr = bounds(args)
  if not b then return nil, berr end
  local got, err = message_pages(ctx, "conversations.history", {
    channel = args.channel, oldest = b.oldest, latest = b.latest, inclusive = args.inclusive,
  }, args.limit or 50, args.cursor)
  if not got then return nil, err end
  return {channel = args.channel, messages = data.map(got.items, message), next_cursor = got.next}
end

local function thread_replies(ctx, args)
  local b, berr = bounds(args)
  if not b then return nil, berr end
  local got, err = message_pages(ctx, "conversations.replies", {
    channel = args.channel, ts = args.thread_ts, oldest = b.oldest, latest = b.latest,
  }, args.limit or 100, args.cursor)
  if not got then return nil, err end
  return {channel = args.channel, thread_ts = args.thread_ts, messages = data.map(got.items, message),
          next_cursor = got.next}
end

local function search_match(m)
  return {
    channel_id = str(data.get(m, "channel.id")), channel = str(data.get(m, "channel.name")),
    ts = str(m.ts), time = iso(m.ts), user = str(m.user), username = str(m.username),
    text = plain(str(m.text)), permalink = str(m.permalink),
  }
end

local function search_messages(ctx, args)
  local total
  local got, err = paginate.collect{
    style = "pages",
    limit = args.limit or 20,
    start = args.cursor,
    page_size = SEARCH_PAGE,
    items = "messages.matches",
    total_pages = "messages.paging.pages",
    fetch = function(page)
      -- the user token when the connection has one (the OAuth flow asks for search:read as user_scope)
      local body, ferr = call(ctx, "search.messages", "tier2", {
        query = args.query, sort = args.sort, sort_dir = args.sort_dir, count = SEARCH_PAGE, page = page,
      }, SEARCH_API, "user_token")
      if body and total == nil then total = num(data.get(body, "messages.total")) end
      return body, ferr
    end,
  }
  if not got then
    if err.upstream_code == "not_allowed_token_type" then
      err.message = "Slack searches messages only with a user token (xoxp-...) that has the search:read scope; " ..
                    "this connection has only a bot token: reconnect it through ferry's sign-in (which asks " ..
                    "for search:read for the user too), or import one as credentials.user_token"
    end
    return nil, err
  end
  return {query = args.query, total = total, matches = data.map(got.items, search_match), next_cursor = got.next}
end

local function post_message(ctx, args)
  if args.reply_broadcast and not args.thread_ts then
    return nil, errors.invalid_arguments("reply_broadcast needs thread_ts", "$.reply_broadcast")
  end
  local body, err = sdk.request(ctx, {
    method = "POST", path = "/chat.postMessage", tier = "post", timeout_ms = TIMEOUT_MS,
    headers = {["Content-Type"] = "application/x-www-form-urlencoded"},
    body = form{
      channel = args.channel, text = args.text, thread_ts = args.thread_ts, reply_broadcast = args.reply_broadcast,
      unfurl_links = args.unfurl_links, unfurl_media = args.unfurl_media, mrkdwn = args.mrkdwn,
    },
  }, API)
  if not body then return nil, err end
  return {channel = str(body.channel), ts = str(body.ts), thread_ts = args.thread_ts,
          text = plain(str(data.get(body, "message.text")))}
end

---------------------------------------------------------------------------
-- Sync: every channel the app is a member of, its messages as `message`
-- records (external id "<channel>:<ts>").
--
-- conversations.history pages newest first, with a cursor, down to
-- `oldest`. Each channel has a high-water mark (`oldest`: the newest ts
-- stored) and, while a walk is under way, the walk: its lower bound `from`,
-- Slack's next_cursor, the newest ts seen and the ts seen lately. The
-- cursor is checkpointed after every page with the records of that page,
-- so a crash, a 429 or a timeout loses at most the page in flight, which the
-- next run reads again from the checkpointed next_cursor (upserts are
-- idempotent). A walk ends on the last page; only then does the high-water
-- mark move, because the newest messages come first.
--
-- What a sync can see: new messages, always. Edits and deletions only in
-- the last REVISIT seconds: each walk starts REVISIT before now (or at the
-- high-water mark, whichever is older), so recent messages are read again
-- and their edits upserted; a message stored in that span that does not come
-- back is deleted (the ts of recent records are kept in the cursor, at most
-- RECENT_MAX). Edits and deletions of older messages, and thread replies
-- (conversations.history returns the parents; thread_replies reads them)
-- are not seen: that needs Slack's Events API. A channel the app leaves or
-- that is archived drops out of the list; its records stay.
-- cursor = {team_url, resume_after, channels = {[id] = {oldest, recent = {ts...},
--           walk = {from, started, cursor, newest, seen = {ts...}, overflow}}}}

local SYNC_LOOKBACK = 30 * DAY   -- a channel's first walk goes this far back
local REVISIT = 3600
local RECENT_MAX = 500
local PAGES_PER_CHANNEL = 5      -- per run, so one busy channel cannot starve the others
local PAGES_PER_RUN = 40         -- under a minute of tier 3, leaving room for the agent's calls

-- Message subtypes that are channel housekeeping, not conversation.
local NOISE = {channel_join = true, channel_leave = true, channel_topic = true, channel_purpose = true,
               channel_name = true, channel_archive = true, channel_unarchive = true, group_join = true,
               group_leave = true, group_topic = true, group_purpose = true, group_name = true,
               group_archive = true, group_unarchive = true, pinned_item = true, unpinned_item = true}
-- History errors that mean "this channel is gone for us": skip it, keep syncing the rest.
local GONE = {channel_not_found = true, not_in_channel = true, is_archived = true, access_denied = true}

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = deep_copy(x) end
  return out
end

-- The cursor given to a run, copied (the caller's table stays as it was),
-- its lists marked as such so they are stored as JSON arrays even when empty.
local function load_state(cursor)
  local state = type(cursor) == "table" and deep_copy(cursor) or {}
  if type(state.channels) ~= "table" then state.channels = {} end
  for id, st in pairs(state.channels) do
    if type(st) ~= "table" then
      state.channels[id] = nil
    else
      if st.recent then st.recent = data.array(st.recent) end
      if type(st.walk) == "table" then st.walk.seen = data.array(st.walk.seen or {}) else st.walk = nil end
    end
  end
  return state
end

local function permalink(team_url, channel_id, ts, thread_ts)
  if not team_url then return nil end
  local base = team_url:gsub("/+$", "") .. "/"
  local link = base .. "archives/" .. channel_id .. "/p" .. ts:gsub("%.", "")
  if thread_ts and thread_ts ~= ts then link = link .. "?thread_ts=" .. thread_ts .. "&cid=" .. channel_id end
  return link
end

local function record_fields(m, c, team_url)
  local shaped = message(m)
  shaped.channel_id, shaped.channel = c.id, c.name
  shaped.permalink = permalink(team_url, c.id, shaped.ts, shaped.thread_ts)
  local author = shaped.username or shaped.user or shaped.bot_id or "someone"
  local body = shaped.text or ""
  if shaped.files then
    local names = {}
    for _, f in ipairs(shaped.files) do names[#names + 1] = f.title or f.name end
    if #names > 0 then body = body .. (body ~= "" and "\n" or "") .. "Files: " .. table.concat(names, ", ") end
  end
  local first_line = (shaped.text or ""):match("^[^\n]*") or ""
  if first_line == "" and shaped.files then first_line = "(files)" end
  return {
    title = "#" .. (c.name or c.id) .. ": " .. cut(first_line, 80),
    text = author .. " in #" .. (c.name or c.id) .. " at " .. (shaped.time or "?") .. ":\n" .. body,
    url = shaped.permalink,
    updated_at = shaped.edited_at or shaped.time,
    data = shaped,
  }
end

-- The channels the app is a member of, sorted by id, each once: {{id, name}, ...}.
local function member_channels(ctx)
  local out, seen = {}, {}
  for page, err in paginate.cursor{
    items = "channels", next = "response_metadata.next_cursor", max_pages = 50,
    fetch = function(cursor)
      return call(ctx, "conversations.list", "tier2", {
        types = "public_channel,private_channel", exclude_archived = true, limit = PAGE_MAX, cursor = cursor,
      })
    end,
  } do
    if not page then return nil, err end
    for _, c in ipairs(page.items) do
      local id = str(data.get(c, "id"))
      if id and not seen[id] and data.get(c, "is_member") == true then
        seen[id] = true
        out[#out + 1] = {id = id, name = str(data.get(c, "name"))}
      end
    end
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

-- Commits the records written since the last checkpoint with `state`, which
-- is stored as it is now (the engine encodes it in the call).
local function checkpoint(ctx, state)
  local ok, err = ctx.checkpoint(state)
  if ok == nil and err ~= nil then return nil, err end
  return true
end

-- The end of a walk: deletions in the revisited span, the new high-water
-- mark and the recent ts to compare with next time.
local function finish_walk(ctx, c, st, now, stats)
  local walk = st.walk
  local seen = {}
  for _, ts in ipairs(walk.seen) do seen[ts] = true end
  if not walk.overflow then
    for _, ts in ipairs(st.recent or {}) do
      if ts_less(walk.from, ts) and not seen[ts] then
        local _, err = ctx.records.delete("message", c.id .. ":" .. ts)
        if err then return nil, err end
        stats.deleted = stats.deleted + 1
      end
    end
  end
  if walk.newest and (not st.oldest or ts_less(st.oldest, walk.newest)) then st.oldest = walk.newest end
  if not st.oldest then st.oldest = walk.from end
  local recent, floor = {}, ts_of_time(now - REVISIT)
  for _, ts in ipairs(walk.seen) do
    if ts_less(floor, ts) then recent[#recent + 1] = ts end
  end
  table.sort(recent, ts_less)
  while #recent > RECENT_MAX do table.remove(recent, 1) end
  st.recent = data.array(recent)
  st.walk = nil
  return true
end

-- One page of history: housekeeping skipped, tombstones deleted, the rest upserted.
local function apply_page(ctx, c, st, team_url, messages, stats)
  local walk = st.walk
  local revisit_floor = ts_of_time(walk.started - REVISIT)
  for _, m in ipairs(messages) do
    local ts = str(data.get(m, "ts"))
    if ts then
      if not walk.newest or ts_less(walk.newest, ts) then walk.newest = ts end
      local subtype = str(data.get(m, "subtype"))
      if subtype == "tombstone" then
        local _, err = ctx.records.delete("message", c.id .. ":" .. ts)
        if err then return nil, err end
        stats.deleted = stats.deleted + 1
      elseif not NOISE[subtype] then
        local _, err = ctx.records.upsert("message", c.id .. ":" .. ts, record_fields(m, c, team_url))
        if err then return nil, err end
        stats.upserted = stats.upserted + 1
        if ts_less(revisit_floor, ts) then
          if #walk.seen < RECENT_MAX then walk.seen[#walk.seen + 1] = ts else walk.overflow = true end
        end
      end
    end
  end
  return true
end

-- Walks one channel for at most max_pages pages; the number of requests made.
local function sync_channel(ctx, state, c, now, stats, max_pages)
  local st = state.channels[c.id] or {}
  state.channels[c.id] = st
  if not st.walk then
    local from = st.oldest and st.oldest or ts_of_time(now - SYNC_LOOKBACK)
    local revisit_from = ts_of_time(now - REVISIT)
    if st.oldest and ts_less(revisit_from, from) then from = revisit_from end
    st.walk = {from = from, started = now, seen = data.array()}
  end
  local walk = st.walk
  local requests, restarted = 0, false
  while requests < max_pages do
    local body, err = call(ctx, "conversations.history", "tier3",
                           {channel = c.id, oldest = walk.from, limit = PAGE_MAX, cursor = walk.cursor})
    requests = requests + 1
    if not body then
      local code = type(err) == "table" and err.upstream_code or nil
      if GONE[code] then
        state.channels[c.id] = nil
        stats.skipped = stats.skipped + 1
        return requests
      end
      if code == "invalid_cursor" and walk.cursor and not restarted then
        walk.cursor, restarted = nil, true   -- a stale cursor: read the span again (upserts are idempotent)
      else
        return nil, err
      end
    else
      local ok, aerr = apply_page(ctx, c, st, state.team_url, data.value(body.messages) or {}, stats)
      if not ok then return nil, aerr end
      stats.pages = stats.pages + 1
      local next_cursor = str(data.get(body, "response_metadata.next_cursor"))
      if data.value(body.has_more) == false or not next_cursor or next_cursor == walk.cursor then
        local fok, ferr = finish_walk(ctx, c, st, now, stats)
        if not fok then return nil, ferr end
        local cok, cerr = checkpoint(ctx, state)
        if not cok then return nil, cerr end
        return requests
      end
      walk.cursor = next_cursor
      local cok, cerr = checkpoint(ctx, state)
      if not cok then return nil, cerr end
    end
  end
  stats.more = true
  return requests
end

local function sync_messages(ctx, cursor)
  local now = os.time()
  local state = load_state(cursor)
  local stats = {channels = 0, pages = 0, upserted = 0, deleted = 0, skipped = 0, more = false}

  if not state.team_url then
    local who, err = call(ctx, "auth.test", "tier4")
    if not who then return nil, err end
    state.team_url = str(who.url)
  end
  local channels, lerr = member_channels(ctx)
  if not channels then return nil, lerr end
  stats.channels = #channels

  local listed = {}
  for _, c in ipairs(channels) do listed[c.id] = true end
  for id in pairs(state.channels) do
    if not listed[id] then state.channels[id] = nil end
  end

  -- Start after the channel where the last run ran out of pages.
  local order, start = {}, 1
  if state.resume_after then
    for i, c in ipairs(channels) do
      if c.id > state.resume_after then start = i; break end
    end
  end
  for i = 0, #channels - 1 do order[#order + 1] = channels[(start - 1 + i) % #channels + 1] end

  local left, stopped_after = PAGES_PER_RUN, nil
  for _, c in ipairs(order) do
    if left <= 0 then
      stats.more = true
      break
    end
    local used, err = sync_channel(ctx, state, c, now, stats, math.min(left, PAGES_PER_CHANNEL))
    if not used then return nil, err end
    left = left - used
    stopped_after = c.id
  end
  state.resume_after = stats.more and stopped_after or nil
  local ok, err = checkpoint(ctx, state)
  if not ok then return nil, err end
  return stats
end

---------------------------------------------------------------------------
-- Schemas

local channel_id = s.string{"The conversation's id (list_channels shows them), e.g. C012AB3CD.", required = true,
                            pattern = "^[CGD][A-Z0-9]{2,}$", maxLength = 32}
local function time_arg(description)
  return {type = "string", description = description .. " A Slack timestamp (1512085950.000216) or an RFC 3339 " ..
                                          "date-time (2024-05-01T09:00:00Z).",
          anyOf = {{pattern = TS_PATTERN}, {format = "date-time"}}}
end
local cursor_arg = s.cursor{"next_cursor from an earlier call with the same arguments, to read on.", maxLength = 512}

---------------------------------------------------------------------------

return {
  slug = "slack",
  name = "Slack",
  category = "communication",
  description = "A Slack workspace's channels and messages: list channels, read a channel's history or a thread, " ..
                "search messages, post a message (with approval); syncs channel messages for search.",
  base_url = "https://slack.com/api",
  hosts = {"slack.com"},
  auth = {
    type = "oauth2",
    authorize_url = "https://slack.com/oauth/v2/authorize",
    token_url = "https://slack.com/api/oauth.v2.access",
    -- bot token scopes; search.messages needs a user token (search:read), see search_messages
    scopes = {"channels:read", "groups:read", "channels:history", "groups:history", "chat:write"},
    scope_separator = ",",   -- Slack's authorize URL takes a comma-separated list
    -- search.messages takes only a user token: asked for as user_scope, answered in authed_user
    extra_authorize_params = {user_scope = "search:read"},
    token_fields = {user_token = "authed_user.access_token"},
    -- no revoke_url: Slack's auth.revoke is called with the token itself, not RFC 7009's form
    instructions = "Install ferry's Slack app in your workspace; ferry keeps its bot token (xoxb-...) and, for " ..
                   "message search, your user token (xoxp-..., scope search:read). Invite the app to the " ..
                   "channels it should read (/invite @app): a bot reads only channels it is a member of. An " ..
                   "administrator first creates a Slack app (api.slack.com/apps → Create New App; OAuth & " ..
                   "Permissions: ferry's /oauth/callback as redirect URL, bot token scopes channels:read, " ..
                   "groups:read, channels:history, groups:history, chat:write, user token scope search:read) " ..
                   "and registers its client id and secret with `ferry oauth set-client slack`. To import " ..
                   "tokens instead, POST /v1/connections with credentials {access_token, user_token}; message " ..
                   "search works only with the user token.",
  },
  data_categories = {"communications"},
  docs_url = "https://api.slack.com/methods",
  rate_limits = {tiers = {
    tier2 = {requests = 20, per = "1m"},
    tier3 = {requests = 50, per = "1m"},
    tier4 = {requests = 100, per = "1m"},
    post = {requests = 1, per = "1s"},
  }},

  check = function(ctx)
    local who, err = call(ctx, "auth.test", "tier4")
    if not who then return nil, err end
    local team, user = str(who.team), str(who.user)
    return {account_label = team and user and (team .. " (" .. user .. ")") or team or user}
  end,

  tools = {
    list_channels = {
      title = "List Slack channels",
      description = "Channels of the workspace the app can see, with topic, purpose, member count and whether " ..
                    "the app is a member (it can read the history of those only). Returns next_cursor when " ..
                    "there are more.",
      access = "read",
      input = s.object{
        types = s.array(s.enum{"public_channel", "private_channel", "mpim", "im"},
                        {"Kinds of conversation (default public and private channels).", minItems = 1,
                         uniqueItems = true}),
        member_only = s.boolean "Only conversations the app is a member of.",
        include_archived = s.boolean "Include archived channels.",
        limit = s.limit{default = 100, maximum = 1000},
        cursor = cursor_arg,
      },
      run = list_channels,
    },

    channel_history = {
      title = "Read a Slack channel",
      description = "Messages of a channel, newest first, optionally between oldest and latest. Each has its ts " ..
                    "(its id), time, author, text (Slack markup made plain: <@U1> → @U1), thread info " ..
                    "(thread_ts, reply_count: read replies with thread_replies), files and reactions. Returns " ..
                    "next_cursor when there are more.",
      access = "read",
      input = s.object{
        channel = channel_id,
        oldest = time_arg("Only messages after this time."),
        latest = time_arg("Only messages before this time."),
        inclusive = s.boolean "Include messages exactly at oldest or latest.",
        limit = s.limit{default = 50, maximum = 1000},
        cursor = cursor_arg,
      },
      run = channel_history,
    },

    thread_replies = {
      title = "Read a Slack thread",
      description = "A thread: its parent message first, then the replies, oldest first. Returns next_cursor " ..
                    "when there are more.",
      access = "read",
      input = s.object{
        channel = channel_id,
        thread_ts = s.string{"The parent message's ts (thread_ts in channel_history).", required = true,
                             pattern = TS_PATTERN},
        oldest = time_arg("Only replies after this time."),
        latest = time_arg("Only replies before this time."),
        limit = s.limit{default = 100, maximum = 1000},
        cursor = cursor_arg,
      },
      run = thread_replies,
    },

    search_messages = {
      title = "Search Slack messages",
      description = "Messages matching a Slack search query across the conversations the token's user can " ..
                    "see. Supports Slack's modifiers: in:#channel, from:@user, before:/after:/on:YYYY-MM-DD, " ..
                    "has:link, \"exact phrase\". Returns the total, matches with channel, author, text and " ..
                    "permalink, and next_cursor. Needs a user token (not a bot token) with search:read.",
      access = "read",
      input = s.object{
        query = s.string{"The search query.", required = true, minLength = 1, maxLength = 500},
        sort = s.enum{"score", "timestamp", description = "Order by relevance (default) or time."},
        sort_dir = s.enum{"desc", "asc", description = "Direction (default desc)."},
        limit = s.limit{default = 20, maximum = 100},
        cursor = cursor_arg,
      },
      run = search_messages,
    },

    post_message = {
      title = "Post a Slack message",
      description = "Post a message to a channel the app is a member of, or reply in a thread (thread_ts). " ..
                    "text uses Slack markup: *bold*, _italic_, <https://example.com|links>, <@U012AB3CD> " ..
                    "mentions. Returns the new message's ts.",
      summary = "Post to Slack channel {channel}: {text}",
      access = "write",
      input = s.object({
        channel = channel_id,
        text = s.string{"The message (at most 40000 characters; Slack advises under 4000).", required = true,
                        minLength = 1, maxLength = 40000},
        thread_ts = s.string{"Reply in the thread of this message (its ts).", pattern = TS_PATTERN},
        reply_broadcast = s.boolean "Also show the thread reply in the channel (needs thread_ts).",
        unfurl_links = s.boolean "Show previews of linked pages.",
        unfurl_media = s.boolean "Show previews of linked media.",
        mrkdwn = s.boolean "Read Slack markup in text (default true).",
      }, {anyOf = {{["not"] = {required = {"reply_broadcast"}}}, {required = {"thread_ts"}}}}),
      run = post_message,
    },
  },

  syncs = {
    messages = {
      description = "Messages of every channel the app is a member of (the last 30 days at first, then what " ..
                    "is new; edits and deletions within the last hour), as `message` records.",
      every = "15m",
      category = "communications",
      run = sync_messages,
    },
  },
}
